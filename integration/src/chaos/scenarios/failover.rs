//! The scenarios that kill a primary for good, so that Redis fails it over to its replica:
//! kill-primary under the key load, and pubsub-kill-primary with a subscriber on the primary's
//! channels; and how they find the primary, kill it and see its replica promoted.

use std::sync::Arc;
use std::time::Duration;

use cluster_launcher::{ClusterNode, wait_until};

use super::checks::{failures, no_stale_reads, split_failures};
use super::harness::Harness;
use crate::chaos::cluster::{ChaosCluster, blocking};
use crate::chaos::load::{LoadResult, OpRecord};
use crate::chaos::pubsub::{Channel, PubsubTraffic};
use crate::chaos::report::{Report, secs};
use crate::chaos::{ChaosOptions, Scenario};
use crate::name_in_slot;

/// SIGKILL the seed primary (the node the client's URL names); Redis promotes its replica.
pub(super) async fn kill_primary(options: &ChaosOptions) -> (Report, LoadResult) {
    let mut run = Harness::start(Scenario::KillPrimary, options, 1_000, &[]).await;
    let cluster = Arc::clone(&run.cluster);
    let (victim, replicas) = seed_primary(&cluster).await;
    let mut avoid = replicas.clone();
    avoid.push(victim.port);
    let owners = run.start_load(None, &avoid).await;
    let fault_at = run.baseline().await;
    kill(&cluster, victim.port).await;
    let failover = await_promotion(&cluster, victim.port, &replicas).await;
    let healed_at = failover.map(|_| run.elapsed());
    run.settle(healed_at.unwrap_or(fault_at)).await;
    let result = run.stop_load().await;
    let seed_note = if victim.port == cluster.seed_port() {
        " (the seed node of the client's URL)"
    } else {
        ""
    };
    let fault = format!(
        "SIGKILL primary 127.0.0.1:{}{seed_note}, serving {} slots; {}",
        victim.port,
        victim.slot_count(),
        promotion_text(failover, &replicas)
    );
    let mut report = run.report(&result, fault, fault_at, healed_at).await;
    check_promoted(&mut report, failover);
    no_stale_reads(&mut report);
    let on_victim = |r: &OpRecord| owners[usize::from(r.slot)] == victim.port;
    let (victim_failed, other_failed) = split_failures(&result.records, on_victim);
    let outside_down = failures(&result.records, |r| {
        !on_victim(r) && !run.during_cluster_down(r)
    });
    let during_down = other_failed - outside_down;
    report.note(format!(
        "failures on the killed primary's slots: {victim_failed}; on the other primaries' slots: {other_failed} \
         ({during_down} of them overlapping a window in which Redis itself declared the cluster down: \
         with cluster-require-full-coverage yes, the default, every node refuses every command with \
         CLUSTERDOWN from the moment the primary is marked failed until its replica takes over, and the \
         client retries that until its timeout)"
    ));
    report.check(
        "the other primaries' slots keep serving whenever Redis says the cluster is up",
        outside_down == 0,
        format!("{outside_down} failures outside the cluster-down windows"),
    );
    if let Some(healed) = healed_at {
        let after: Vec<&OpRecord> = result
            .records
            .iter()
            .filter(|r| on_victim(r) && r.started > healed + Duration::from_secs(1))
            .collect();
        let ok = after.iter().filter(|r| r.ok()).count();
        report.check(
            "the client follows the promoted replica without a restart",
            !after.is_empty() && ok == after.len(),
            format!(
                "{ok} of {} operations on the failed-over slots succeeded from 1 s after the promotion",
                after.len()
            ),
        );
    }
    (report, result)
}

/// How many numbered messages a second the pub/sub scenario publishes to each channel.
const PUBLISH_RATE: f64 = 50.0;

/// SIGKILL the seed primary while a subscriber of the client listens on a sharded and a classic
/// channel that it holds, and a publisher sends both numbered messages through the client.
pub(super) async fn pubsub_kill_primary(options: &ChaosOptions) -> (Report, LoadResult) {
    let mut run = Harness::start(Scenario::PubsubKillPrimary, options, 1_000, &[]).await;
    let cluster = Arc::clone(&run.cluster);
    let (victim, replicas) = seed_primary(&cluster).await;
    // Both channels hash to the victim's first slot: the sharded one lives there, and the
    // subscriber holds the classic one on the primary of its slot.
    let slot = victim.slots[0].0;
    let channels = vec![
        Channel {
            name: name_in_slot("chaos:sharded", slot),
            sharded: true,
        },
        Channel {
            name: name_in_slot("chaos:classic", slot),
            sharded: false,
        },
    ];
    let mut avoid = replicas.clone();
    avoid.push(victim.port);
    run.start_load(None, &avoid).await;
    let origin = run.load.as_ref().expect("the load runs").origin();
    let traffic = PubsubTraffic::start(run.client(), channels, PUBLISH_RATE, origin).await;
    let fault_at = run.baseline().await;
    kill(&cluster, victim.port).await;
    let killed_at = run.elapsed();
    let failover = await_promotion(&cluster, victim.port, &replicas).await;
    let healed_at = failover.map(|_| run.elapsed());
    run.settle(healed_at.unwrap_or(fault_at)).await;
    let records = traffic.finish(Duration::from_secs(5)).await;
    let result = run.stop_load().await;
    let fault = format!(
        "SIGKILL primary 127.0.0.1:{} holding a sharded and a classic channel ({PUBLISH_RATE} \
         numbered messages a second each); {}",
        victim.port,
        promotion_text(failover, &replicas)
    );
    let mut report = run.report(&result, fault, fault_at, healed_at).await;
    check_promoted(&mut report, failover);
    for channel in &records {
        let kind = if channel.channel.sharded {
            "sharded"
        } else {
            "classic"
        };
        let losses = channel.losses(fault_at, killed_at, healed_at);
        let after_kill = |at: Option<Duration>| {
            at.map_or("never".to_owned(), |at| secs(at.saturating_sub(fault_at)))
        };
        let between = |lost: Option<(Duration, Duration)>| {
            lost.map_or(String::new(), |(first, last)| {
                format!(
                    ", published from {} to {} after the kill",
                    secs(first.saturating_sub(fault_at)),
                    secs(last.saturating_sub(fault_at))
                )
            })
        };
        let resumed = after_kill(losses.resumed_at);
        report.note(format!(
            "{kind} channel: {} published ({} acknowledged, {} failed); the first message \
             published after the kill arrived {} after it, the first after the failover {resumed} \
             after it; failover window from {} before the kill to then: {} published in it, {} \
             of them lost{}, {} duplicated; outside it {} published, {} lost, {} duplicated",
            channel.sent.len(),
            losses.in_window + losses.outside,
            losses.failed_publishes,
            after_kill(losses.first_after_kill),
            secs(crate::chaos::pubsub::BUFFERED),
            losses.in_window,
            losses.lost_in_window,
            between(losses.lost_in_window_between),
            losses.duplicated_in_window,
            losses.outside,
            losses.lost_outside,
            losses.duplicated_outside,
        ));
        let after_healed = match (losses.resumed_at, healed_at) {
            (Some(resumed), Some(healed)) => resumed <= healed + Duration::from_secs(5),
            _ => false,
        };
        report.check(
            format!("the {kind} subscriber receives again within 5 s of the promotion"),
            after_healed,
            format!(
                "the first message published after the failover arrived ({resumed} after the kill)"
            ),
        );
        report.check(
            format!("the {kind} subscriber loses no message published outside the failover window"),
            losses.lost_outside == 0 && losses.outside > 0,
            format!(
                "{} of {} lost{}",
                losses.lost_outside,
                losses.outside,
                between(losses.lost_outside_between)
            ),
        );
        // Inside the window a publish whose node died with its reply may go out again.
        report.check(
            format!(
                "the {kind} subscriber receives each message published outside the failover window at most once"
            ),
            losses.duplicated_outside == 0,
            format!(
                "{} duplicated outside the window ({} inside it)",
                losses.duplicated_outside, losses.duplicated_in_window
            ),
        );
    }
    (report, result)
}

/// The primary the client's URL names (or any primary serving slots), and its replicas' ports.
async fn seed_primary(cluster: &Arc<ChaosCluster>) -> (ClusterNode, Vec<u16>) {
    let c = Arc::clone(cluster);
    blocking(move || {
        let seed = c.seed_port();
        let nodes = c.nodes();
        let victim = nodes
            .iter()
            .find(|n| n.port == seed && n.primary)
            .or_else(|| nodes.iter().find(|n| n.primary && n.slot_count() > 0))
            .cloned()
            .expect("a primary");
        let replicas = victim.replica_ports(&nodes);
        (victim, replicas)
    })
    .await
}

/// SIGKILLs the node on `port` and waits until it is gone.
pub(super) async fn kill(cluster: &Arc<ChaosCluster>, port: u16) {
    let c = Arc::clone(cluster);
    blocking(move || c.kill(port)).await;
}

/// Waits (up to 30 s) until one of `replicas` of the killed primary `victim` serves its slots and
/// every node says the cluster is ok; returns how long that took and the promoted port.
pub(super) async fn await_promotion(
    cluster: &Arc<ChaosCluster>,
    victim: u16,
    replicas: &[u16],
) -> Option<(Duration, u16)> {
    let c = Arc::clone(cluster);
    let candidates = replicas.to_vec();
    blocking(move || {
        let mut promoted = None;
        let took = wait_until(Duration::from_secs(30), || {
            let nodes = c.nodes_except(Some(victim));
            promoted = nodes
                .iter()
                .find(|n| candidates.contains(&n.port) && n.primary && n.slot_count() > 0)
                .map(|n| n.port);
            promoted.is_some() && c.all_ok()
        });
        took.zip(promoted)
    })
    .await
}

/// How a killed primary's failover went, for a fault's description.
pub(super) fn promotion_text(failover: Option<(Duration, u16)>, replicas: &[u16]) -> String {
    match failover {
        Some((took, port)) => format!(
            "its replica 127.0.0.1:{port} was promoted and the cluster was ok again {} later",
            secs(took)
        ),
        None => format!("none of its replicas {replicas:?} was promoted within 30 s"),
    }
}

/// The check of every scenario that kills a primary: Redis promoted a replica, so the fault was
/// real.
pub(super) fn check_promoted(report: &mut Report, failover: Option<(Duration, u16)>) {
    report.check(
        "Redis promotes the replica (the fault is real)",
        failover.is_some(),
        match failover {
            Some((took, port)) => format!("127.0.0.1:{port} after {}", secs(took)),
            None => "no promotion".into(),
        },
    );
}
