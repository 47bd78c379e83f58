//! The ten scenarios: each starts its cluster, configures the client as a service would, runs the
//! load, injects its fault, and checks its invariants on top of the ones every scenario shares.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use baseplate::{Baseplate, ClusterRedisClient, RawConfig};
use cluster_launcher::{ClusterNode, redis_cli, wait_until};
use redis::AsyncCommands as _;

use crate::chaos::census::{Census, process_cpu_time, settles_to};
use crate::chaos::cluster::{ChaosCluster, PASSWORD, PERSISTENT, StateWatcher, blocking};
use crate::chaos::load::{Load, LoadOptions, LoadResult, OpKind, OpRecord, Outcome, verify};
use crate::chaos::observe::{StatsdSink, observer};
use crate::chaos::pubsub::{Channel, PubsubTraffic};
use crate::chaos::report::{LATE_MARGIN, Report, RunFacts, longest_gap, quantile, secs};
use crate::chaos::{ChaosOptions, Scenario, key_slot};
use crate::eventually;
use crate::name_in_slot;

mod hot_key_cache;

/// The context name the client is registered under.
const CLIENT: &str = "foo";

/// The context name of a second client configured like the first, where a scenario compares
/// what one client's callers see with what the same load sees at the same time on a client the
/// fault does not touch.
const REFERENCE: &str = "bar";

/// Runs one scenario and returns its report (whose checks say whether its invariants held).
///
/// # Panics
/// When the harness itself fails: no cluster can be started, a node cannot be signalled.
pub async fn run(scenario: Scenario, options: &ChaosOptions) -> Report {
    run_with_records(scenario, options).await.0
}

/// Runs one scenario and returns its report and the load's records, for a closer look.
///
/// # Panics
/// As [`run`].
pub async fn run_with_records(scenario: Scenario, options: &ChaosOptions) -> (Report, LoadResult) {
    match scenario {
        Scenario::KillPrimary => kill_primary(options).await,
        Scenario::HangPrimary => hang_primary(options).await,
        Scenario::RestartNode => restart_node(options).await,
        Scenario::Reshard => reshard(options).await,
        Scenario::PoolExhaustion => pool_exhaustion(options).await,
        Scenario::TrackerAndMetricsFaults => tracker_and_metrics_faults(options).await,
        Scenario::BlockingCommands => blocking_commands(options).await,
        Scenario::ClusterDown => cluster_down(options).await,
        Scenario::ClusterRestart => cluster_restart(options).await,
        Scenario::PubsubKillPrimary => pubsub_kill_primary(options).await,
        Scenario::HotKeyCache => hot_key_cache::hot_key_cache(options).await,
    }
}

/// SIGKILL the seed primary (the node the client's URL names); Redis promotes its replica.
async fn kill_primary(options: &ChaosOptions) -> (Report, LoadResult) {
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
        let replicas: Vec<u16> = nodes
            .iter()
            .filter(|n| n.primary_id.as_deref() == Some(victim.id.as_str()))
            .map(|n| n.port)
            .collect();
        (victim, replicas)
    })
    .await
}

/// SIGKILLs the node on `port` and waits until it is gone.
async fn kill(cluster: &Arc<ChaosCluster>, port: u16) {
    let c = Arc::clone(cluster);
    blocking(move || c.kill(port)).await;
}

/// Waits (up to 30 s) until one of `replicas` of the killed primary `victim` serves its slots and
/// every node says the cluster is ok; returns how long that took and the promoted port.
async fn await_promotion(
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
fn promotion_text(failover: Option<(Duration, u16)>, replicas: &[u16]) -> String {
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
fn check_promoted(report: &mut Report, failover: Option<(Duration, u16)>) {
    report.check(
        "Redis promotes the replica (the fault is real)",
        failover.is_some(),
        match failover {
            Some((took, port)) => format!("127.0.0.1:{port} after {}", secs(took)),
            None => "no promotion".into(),
        },
    );
}

/// How many numbered messages a second the pub/sub scenario publishes to each channel.
const PUBLISH_RATE: f64 = 50.0;

/// SIGKILL the seed primary while a subscriber of the client listens on a sharded and a classic
/// channel that it holds, and a publisher sends both numbered messages through the client.
async fn pubsub_kill_primary(options: &ChaosOptions) -> (Report, LoadResult) {
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
             of them lost{}; outside it {} published, {} lost; {} duplicated",
            channel.sent.len(),
            losses.in_window + losses.outside,
            losses.failed_publishes,
            after_kill(losses.first_after_kill),
            secs(crate::chaos::pubsub::BUFFERED),
            losses.in_window,
            losses.lost_in_window,
            between(losses.lost_in_window_between),
            losses.outside,
            losses.lost_outside,
            losses.duplicated,
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
        report.check(
            format!("the {kind} subscriber receives each message at most once"),
            losses.duplicated == 0,
            format!("{} duplicated", losses.duplicated),
        );
    }
    (report, result)
}

/// SIGSTOP a primary for 2.5 × `timeout` (shorter than `cluster-node-timeout`, so no failover),
/// then SIGCONT.
async fn hang_primary(options: &ChaosOptions) -> (Report, LoadResult) {
    let hang = options.timeout.mul_f64(2.5);
    let node_timeout = u64::try_from((hang * 3).as_millis())
        .unwrap_or(u64::MAX)
        .max(5_000);
    let mut run = Harness::start(Scenario::HangPrimary, options, node_timeout, &[]).await;
    let cluster = Arc::clone(&run.cluster);
    let c = Arc::clone(&cluster);
    let victim = blocking(move || {
        let seed = c.seed_port();
        c.nodes()
            .into_iter()
            .find(|n| n.primary && n.port != seed && n.slot_count() > 0)
            .expect("a primary other than the seed")
    })
    .await;
    let owners = run.start_load(None, &[victim.port]).await;
    let fault_at = run.baseline().await;
    let c = Arc::clone(&cluster);
    let port = victim.port;
    blocking(move || c.pause(port)).await;
    tokio::time::sleep(hang).await;
    let c = Arc::clone(&cluster);
    blocking(move || c.resume(port)).await;
    let healed_at = run.elapsed();
    run.settle(healed_at).await;
    let result = run.stop_load().await;
    let c = Arc::clone(&cluster);
    let still_primary = blocking(move || {
        c.nodes()
            .iter()
            .any(|n| n.port == port && n.primary && n.slot_count() > 0)
    })
    .await;
    let fault = format!(
        "SIGSTOP primary 127.0.0.1:{port} ({} slots) for {} (timeout {}, cluster-node-timeout {node_timeout} ms), then SIGCONT",
        victim.slot_count(),
        secs(healed_at - fault_at),
        secs(options.timeout)
    );
    let mut report = run.report(&result, fault, fault_at, Some(healed_at)).await;
    no_stale_reads(&mut report);
    let on_victim = |r: &OpRecord| owners[usize::from(r.slot)] == port;
    let (victim_failed, other_failed) = split_failures(&result.records, on_victim);
    let kinds: BTreeSet<String> = report.failed.keys().cloned().collect();
    report.check(
        "calls to the frozen primary's slots fail (the fault is real)",
        victim_failed > 0,
        format!("{victim_failed} failures"),
    );
    report.check(
        "every failure is a timeout",
        kinds.iter().all(|k| k == "timeout"),
        format!("kinds: {kinds:?}"),
    );
    let failed_took: Vec<Duration> = result
        .records
        .iter()
        .filter(|r| !r.ok() && r.kind != OpKind::Slow)
        .map(|r| r.took)
        .collect();
    let slowest_failure = failed_took.iter().max().copied().unwrap_or_default();
    report.check(
        format!(
            "a call to the frozen primary fails within timeout + {}",
            secs(LATE_MARGIN)
        ),
        slowest_failure <= options.timeout + LATE_MARGIN,
        format!(
            "slowest failure {}, fastest {}",
            secs(slowest_failure),
            secs(failed_took.iter().min().copied().unwrap_or_default())
        ),
    );
    let others_gap = longest_gap(&result.records, |r| !on_victim(r), fault_at, healed_at);
    report.check(
        "the rest of the cluster keeps serving: no failures there and never a second without a success",
        other_failed == 0 && others_gap.0 < Duration::from_secs(1),
        format!(
            "{other_failed} failures; longest window without a success on the other primaries' slots during the freeze {}",
            secs(others_gap.0)
        ),
    );
    report.note(format!(
        "after SIGCONT the node is {} (no failover: the freeze was shorter than cluster-node-timeout)",
        if still_primary {
            "still a primary"
        } else {
            "no longer a primary"
        }
    ));
    (report, result)
}

/// Stop a replica gracefully and start it again on its port.
///
/// A replica, because that is the restart Redis Cluster survives without persistence: a primary
/// restarted before its replica takes over comes back with an empty data set and its own slots
/// (its `nodes.conf` survives), and its replica then resyncs the empty set, so every write it had
/// is gone by design. A replica restarted comes back empty too, but resyncs from its primary, and
/// a client reading from replicas must connect to it again.
async fn restart_node(options: &ChaosOptions) -> (Report, LoadResult) {
    let mut run = Harness::start(Scenario::RestartNode, options, 2_000, &[]).await;
    let cluster = Arc::clone(&run.cluster);
    let c = Arc::clone(&cluster);
    let (primary, replica) = blocking(move || {
        let seed = c.seed_port();
        let nodes = c.nodes();
        let primary = nodes
            .iter()
            .find(|n| n.primary && n.port != seed && n.slot_count() > 0)
            .expect("a primary other than the seed");
        c.shard_of(primary.slots[0].0)
    })
    .await;
    let owners = run.start_load(None, &[replica.port]).await;
    let fault_at = run.baseline().await;
    let port = replica.port;
    let c = Arc::clone(&cluster);
    let gets_before = blocking(move || {
        let gets = c.command_calls(port, "get");
        c.stop_node(port);
        gets
    })
    .await;
    let stopped_at = run.elapsed();
    let down = Duration::from_millis(1_500);
    tokio::time::sleep(down).await;
    let c = Arc::clone(&cluster);
    blocking(move || c.restart_node(port)).await;
    let restarted_at = run.elapsed();
    let c = Arc::clone(&cluster);
    let resynced = blocking(move || {
        wait_until(Duration::from_secs(20), || {
            c.replication(port).is_some_and(|info| {
                cluster_launcher::info_field(&info, "master_link_status") == Some("up")
            }) && c.all_ok()
        })
    })
    .await;
    let healed_at = resynced.map(|_| run.elapsed());
    run.settle(healed_at.unwrap_or(restarted_at)).await;
    let c = Arc::clone(&cluster);
    let (gets, connections) = blocking(move || {
        let gets = c.command_calls(port, "get");
        let clients = c.cli(port, &["CLIENT", "LIST"]);
        let ours = clients
            .lines()
            .filter(|l| l.contains(&format!("user={}", crate::chaos::cluster::USER)))
            .count();
        (gets, ours)
    })
    .await;
    let result = run.stop_load().await;
    let fault = format!(
        "SIGTERM replica 127.0.0.1:{port} (of primary 127.0.0.1:{}), {} down, started again on the same port{}",
        primary.port,
        secs(restarted_at - stopped_at),
        match resynced {
            Some(took) => format!("; resynced {} after its start", secs(took)),
            None => "; not resynced within 20 s".into(),
        }
    );
    let mut report = run.report(&result, fault, fault_at, healed_at).await;
    report.check(
        "the restarted replica resyncs (the fault is real and over)",
        resynced.is_some(),
        format!("{resynced:?}"),
    );
    report.check(
        "the client reconnects to the restarted replica and reads from it again",
        gets > 0 && connections > 0,
        format!("{gets} GETs served by it since its restart; {connections} connections of the client's user"),
    );
    report.note(format!(
        "GETs the replica served before it was stopped: {gets_before} (reads go to a slot's primary or one of its replicas at random)"
    ));
    report.note(format!(
        "stale reads: {} (not an invariant here: a restarted replica without persistence answers from its empty \
         data set until its full sync is done, as Redis's replica-serve-stale-data yes allows)",
        report.stale_reads
    ));
    let on_shard = |r: &OpRecord| owners[usize::from(r.slot)] == primary.port;
    let (shard_failed, other_failed) = split_failures(&result.records, on_shard);
    let failed_total = shard_failed + other_failed;
    report.note(format!(
        "failures on the restarted replica's shard: {shard_failed}; elsewhere: {other_failed}"
    ));
    report.check(
        "no operation fails: the primary serves the shard while its replica is away",
        failed_total == 0,
        format!("{failed_total} failures"),
    );
    (report, result)
}

/// Move slots from the seed primary to another primary with `redis-cli --cluster reshard`.
async fn reshard(options: &ChaosOptions) -> (Report, LoadResult) {
    let mut run = Harness::start(Scenario::Reshard, options, 2_000, &[]).await;
    let cluster = Arc::clone(&run.cluster);
    let c = Arc::clone(&cluster);
    let (from, to): (ClusterNode, ClusterNode) = blocking(move || {
        let seed = c.seed_port();
        let primaries: Vec<ClusterNode> = c
            .nodes()
            .into_iter()
            .filter(|n| n.primary && n.slot_count() > 0)
            .collect();
        let from = primaries
            .iter()
            .find(|n| n.port == seed)
            .unwrap_or(&primaries[0])
            .clone();
        let to = primaries
            .iter()
            .find(|n| n.port != from.port)
            .expect("a second primary")
            .clone();
        (from, to)
    })
    .await;
    let slots = if options.load >= Duration::from_secs(15) {
        3_000
    } else {
        1_000
    }
    .min(from.slot_count());
    let owners = run.start_load(None, &[]).await;
    let fault_at = run.baseline().await;
    let c = Arc::clone(&cluster);
    let (from_id, to_id) = (from.id.clone(), to.id.clone());
    let outcome = blocking(move || c.reshard(&from_id, &to_id, slots)).await;
    let healed_at = run.elapsed();
    run.settle(healed_at).await;
    let result = run.stop_load().await;
    let c = Arc::clone(&cluster);
    let now = blocking(move || c.slot_owners()).await;
    let moved: Vec<u16> = (0..16_384u16)
        .filter(|&s| owners[usize::from(s)] == from.port && now[usize::from(s)] == to.port)
        .collect();
    let fault = format!(
        "redis-cli --cluster reshard of {slots} slots from 127.0.0.1:{} to 127.0.0.1:{} under load, {}",
        from.port,
        to.port,
        match &outcome {
            Ok(_) => format!("done in {}", secs(healed_at - fault_at)),
            Err(_) => "FAILED".into(),
        }
    );
    let mut report = run.report(&result, fault, fault_at, Some(healed_at)).await;
    report.check(
        "redis-cli moves the slots (the fault is real)",
        outcome.is_ok() && moved.len() == slots,
        format!(
            "{} slots now on the target{}",
            moved.len(),
            outcome
                .err()
                .map(|e| format!("; redis-cli: {}", e.lines().last().unwrap_or("")))
                .unwrap_or_default()
        ),
    );
    let moved: BTreeSet<u16> = moved.into_iter().collect();
    let on_moved: Vec<&OpRecord> = result
        .records
        .iter()
        .filter(|r| moved.contains(&r.slot) && r.started >= fault_at)
        .collect();
    let ok = on_moved.iter().filter(|r| r.ok()).count();
    report.note(format!(
        "operations on the moving slots from the start of the reshard: {ok} of {} succeeded",
        on_moved.len()
    ));
    report.note(format!(
        "stale reads: {} (not an invariant here: a replica of the source answers for a moving slot from its own \
         data, which no longer has the keys already migrated, until it learns the slot's new owner)",
        report.stale_reads
    ));
    report.check(
        "MOVED and ASK are followed: zero failed operations",
        report.failed_total() == 0,
        format!("{} failures", report.failed_total()),
    );
    (report, result)
}

/// More callers than `max_connections`, each holding its slot with a slow command.
async fn pool_exhaustion(options: &ChaosOptions) -> (Report, LoadResult) {
    let max_connections = 3;
    let slow_callers = 16;
    let hold = Duration::from_millis(200);
    let overrides = [("max_connections", max_connections.to_string())];
    let mut run = Harness::start(Scenario::PoolExhaustion, options, 2_000, &overrides).await;
    run.start_load(None, &[]).await;
    let fault_at = run.baseline().await;
    let exhaust_for = (options.load / 3).max(Duration::from_secs(2));
    let slow = run.load_mut().start_slow_callers(slow_callers, hold);
    tokio::time::sleep(exhaust_for).await;
    let slow_hung = run.load_mut().stop_group(slow).await;
    let healed_at = run.elapsed();
    run.settle(healed_at).await;
    let result = run.stop_load().await;
    let foo = run
        .baseplate
        .make_context_object()
        .redis_cluster(CLIENT)
        .expect("the chaos client");
    let mut last = foo.pool_stats();
    let drained = eventually(Duration::from_secs(3), async || {
        last = foo.pool_stats();
        last.in_use == 0 && last.waiting == 0
    })
    .await;
    let fault = format!(
        "{slow_callers} callers running BLPOP for {} back to back for {} on a pool of max_connections = {max_connections}, timeout {}",
        secs(hold),
        secs(exhaust_for),
        secs(options.timeout)
    );
    let mut report = run.report(&result, fault, fault_at, Some(healed_at)).await;
    no_stale_reads(&mut report);
    // A caller that waits for a permit either never gets one (the pool timeout) or gets one
    // too late to finish within its deadline, which the wait counts towards.
    let exhausted = |kind: &str| kind == "pool-timeout" || kind == "deadline-after-pool-wait";
    let pool_failures: Vec<Duration> = result
        .records
        .iter()
        .filter(|r| matches!(&r.outcome, Outcome::Failed(kind) if exhausted(kind)))
        .map(|r| r.took)
        .collect();
    let kinds: BTreeSet<String> = report.failed.keys().cloned().collect();
    report.check(
        "excess callers fail for want of a permit (the fault is real)",
        !pool_failures.is_empty(),
        format!("{} failures", pool_failures.len()),
    );
    report.check(
        "every failure is the pool timeout or the deadline reached after waiting for a permit",
        kinds.iter().all(|k| exhausted(k)),
        format!("kinds: {kinds:?}"),
    );
    let (fastest, slowest) = (
        pool_failures.iter().min().copied().unwrap_or_default(),
        pool_failures.iter().max().copied().unwrap_or_default(),
    );
    report.check(
        format!(
            "a caller fails at timeout, no sooner and at most {} later",
            secs(LATE_MARGIN)
        ),
        pool_failures.is_empty()
            || (fastest + Duration::from_millis(5) >= options.timeout
                && slowest <= options.timeout + LATE_MARGIN),
        format!("failures after {} to {}", secs(fastest), secs(slowest)),
    );
    let gap = longest_gap(&result.records, |_| true, fault_at, healed_at);
    report.check(
        "nothing deadlocks: callers keep succeeding while the pool is exhausted",
        gap.0 < options.timeout && slow_hung == 0,
        format!(
            "longest window without a success during the exhaustion {}; slow callers that did not stop: {slow_hung}",
            secs(gap.0)
        ),
    );
    report.check(
        "in-flight and waiting counts return to zero",
        drained.is_some(),
        format!("{last:?}"),
    );
    let slow_ok = result
        .records
        .iter()
        .filter(|r| r.kind == OpKind::Slow && r.ok())
        .count();
    report.note(format!(
        "slow commands that got a slot and completed: {slow_ok}"
    ));
    (report, result)
}

/// The hot-key tracker's sets refuse writes and the statsd endpoint goes away.
async fn tracker_and_metrics_faults(options: &ChaosOptions) -> (Report, LoadResult) {
    let overrides = [
        ("track_key_reads_sample_rate", "1".to_owned()),
        ("track_key_writes_sample_rate", "1".to_owned()),
        ("track_key_mode", "direct".to_owned()),
    ];
    let mut run = Harness::start(
        Scenario::TrackerAndMetricsFaults,
        options,
        2_000,
        &overrides,
    )
    .await;
    let cluster = Arc::clone(&run.cluster);
    let reads_set = "baseplate-hot-key-tracker-reads";
    let writes_set = "baseplate-hot-key-tracker-writes";
    let c = Arc::clone(&cluster);
    let owners = blocking(move || c.slot_owners()).await;
    let reads_node = owners[usize::from(key_slot(reads_set.as_bytes()))];
    let writes_node = owners[usize::from(key_slot(writes_set.as_bytes()))];
    // The node that runs out of memory refuses every write, the user's too; the user's keys stay
    // off it so that what is measured is the tracker's failure, not Redis refusing the user.
    let partition: Vec<u16> = owners
        .iter()
        .map(|&owner| if owner == writes_node { 0 } else { owner })
        .collect();
    run.start_load(Some(partition), &[writes_node]).await;
    let fault_at = run.baseline().await;
    let c = Arc::clone(&cluster);
    let refused = blocking(move || {
        c.cli(reads_node, &["SET", reads_set, "not a sorted set"]);
        c.cli(
            writes_node,
            &["CONFIG", "SET", "maxmemory-policy", "noeviction"],
        );
        c.cli(writes_node, &["CONFIG", "SET", "maxmemory", "1"]);
        c.cli(writes_node, &["ZINCRBY", writes_set, "1", "probe"])
    })
    .await;
    let packets_before = run.close_statsd().await;
    let faulted_at = run.elapsed();
    run.settle(faulted_at).await;
    let result = run.stop_load().await;
    let fault = format!(
        "{reads_set} turned into a string on 127.0.0.1:{reads_node}; maxmemory 1 + noeviction on \
         127.0.0.1:{writes_node}, which holds {writes_set} (a probe ZINCRBY got: {}); statsd endpoint closed",
        refused.trim()
    );
    let mut report = run.report(&result, fault, fault_at, None).await;
    report.note(format!(
        "the load's keys avoid 127.0.0.1:{writes_node}: out of memory, it refuses the user's writes as well, \
         which would be Redis refusing the user rather than the tracker's failure reaching them"
    ));
    let tracker_warnings = run
        .watched_warnings
        .iter()
        .filter(|w| w.contains("hot-key tracker could not write"))
        .count();
    report.check(
        "the tracker's writes are refused (the fault is real: it warns)",
        tracker_warnings > 0 && refused.contains("OOM"),
        format!(
            "{tracker_warnings} tracker warnings; probe: {}",
            refused.trim()
        ),
    );
    report.check(
        "metrics flowed until the endpoint was closed",
        packets_before > 0,
        format!("{packets_before} packets before"),
    );
    report.check(
        "no user command fails",
        report.failed_total() == 0 && report.stale_reads == 0,
        format!(
            "{} failures, {} stale reads",
            report.failed_total(),
            report.stale_reads
        ),
    );
    let warm_up = Duration::from_millis(500);
    let before = |r: &OpRecord| r.started >= warm_up && r.ended() < fault_at;
    let after = |r: &OpRecord| r.started >= faulted_at + Duration::from_millis(250);
    let (p50_before, p99_before) = (
        quantile(&result.records, before, 0.5),
        quantile(&result.records, before, 0.99),
    );
    let (p50_after, p99_after) = (
        quantile(&result.records, after, 0.5),
        quantile(&result.records, after, 0.99),
    );
    report.check(
        "no user command slows measurably (median within 1.5x + 1 ms, p99 within 3x + 10 ms of before)",
        p50_after <= p50_before.mul_f64(1.5) + Duration::from_millis(1)
            && p99_after <= p99_before * 3 + Duration::from_millis(10),
        format!(
            "median {} before, {} during; p99 {} before, {} during",
            secs(p50_before),
            secs(p50_after),
            secs(p99_before),
            secs(p99_after)
        ),
    );
    (report, result)
}

/// 50 callers loop on `BLPOP`s of 2 seconds, on keys spread over every primary, for the last
/// three quarters of the load. A twin of the client (configured alike, which no BLPOP touches)
/// carries the same load at the same time: the client's other callers are measured against the
/// twin's while the BLPOP callers run, so that whatever else the machine does weighs on both alike
/// (windows apart, the p99 of the same load varies more than the 1.2x to be told apart); the
/// first quarter shows how alike the two are without them.
async fn blocking_commands(options: &ChaosOptions) -> (Report, LoadResult) {
    let callers = 50;
    let block = Duration::from_secs(2);
    let socket_timeout = Duration::from_secs(3);
    // Every BLPOP holds one of the pool's permits while it waits: the load keeps its usual 50.
    let max_connections = 100;
    let overrides = [
        (
            "socket_timeout",
            format!("{} seconds", socket_timeout.as_secs()),
        ),
        ("max_connections", max_connections.to_string()),
    ];
    let setup = Setup {
        node_timeout_ms: 2_000,
        overrides: &overrides,
        reference: true,
        ..Setup::default()
    };
    let mut run = Harness::start_with(Scenario::BlockingCommands, options, setup).await;
    let owners = run.start_load(None, &[]).await;
    let reference = Load::start(
        Arc::clone(&run.baseplate),
        LoadOptions::new(REFERENCE, options.workers, options.ops_per_second)
            .with_partition(owners.clone()),
    );
    let foo = run.client();
    let from = Duration::from_millis(500);
    let alone = (options.load / 4).max(Duration::from_secs(3));
    run.sleep_until(from).await;
    // The client's CPU time without the callers and with them.
    let cpu_from = process_cpu_time();
    run.sleep_until(from + alone).await;
    let cpu_without = process_cpu_time().saturating_sub(cpu_from);
    let without = vec![(from, from + alone)];
    let fault_at = run.elapsed();
    let group = run.load_mut().start_staggered_callers(callers, block);
    let mut peak = foo.pool_stats();
    let all_blocking = eventually(block + Duration::from_secs(10), async || {
        let stats = foo.pool_stats();
        if stats.blocking >= peak.blocking {
            peak = stats;
        }
        stats.blocking == callers
    })
    .await
    .is_some();
    // While they start (their first calls spread over a BLPOP's length, until all of them wait)
    // and while they finish the BLPOP they are in, nothing is measured.
    let waiting_from = run.elapsed();
    let first_start = (fault_at, waiting_from);
    let together = (options.load * 3 / 4).max(Duration::from_secs(12));
    let cpu_from = process_cpu_time();
    run.sleep_until(waiting_from + together).await;
    let cpu_with = process_cpu_time().saturating_sub(cpu_from);
    let with = vec![(waiting_from, waiting_from + together)];
    let hung = run.load_mut().stop_group(group).await;
    let healed_at = run.elapsed();
    let result = run.stop_load().await;
    let reference = reference.finish().await;
    let mut drained = foo.pool_stats();
    let drained_in = eventually(Duration::from_secs(3), async || {
        drained = foo.pool_stats();
        drained.blocking == 0 && drained.in_use == 0 && drained.waiting == 0
    })
    .await;
    let primaries: BTreeSet<u16> = owners.iter().copied().collect();
    let windows = |list: &[(Duration, Duration)]| {
        list.iter()
            .map(|(from, to)| format!("{}-{}", secs(*from), secs(*to)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let fault = format!(
        "{callers} callers looping on BLPOP of an empty key for {} (keys on each of the {} primaries, first calls \
         spread over {}), measured {}; without them {}; socket_timeout {} (so every call's deadline is {}) while \
         timeout stays {}, max_connections {max_connections} (each waiting BLPOP holds a permit); the same load at \
         the same time on a twin client, configured alike, that no BLPOP uses",
        secs(block),
        primaries.len(),
        secs(block),
        windows(&with),
        windows(&without),
        secs(socket_timeout),
        secs(socket_timeout),
        secs(options.timeout),
    );
    let mut report = run.report(&result, fault, fault_at, Some(healed_at)).await;
    no_stale_reads(&mut report);
    let reference_missing = verify(run.cluster.live_urls(), &reference.acks).await;
    let in_any = |list: Vec<(Duration, Duration)>| {
        move |r: &OpRecord| {
            r.kind != OpKind::Slow
                && list
                    .iter()
                    .any(|&(from, to)| r.started >= from && r.ended() <= to)
        }
    };
    let (during, without) = (in_any(with), in_any(without));
    let count = |records: &[OpRecord], filter: &dyn Fn(&OpRecord) -> bool| {
        records.iter().filter(|r| filter(r)).count()
    };
    let p99 =
        |records: &[OpRecord], filter: &dyn Fn(&OpRecord) -> bool| quantile(records, filter, 0.99);
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64().max(1e-9);
    let (p99_with, p99_twin) = (
        p99(&result.records, &during),
        p99(&reference.records, &during),
    );
    let (p99_without, p99_twin_without) = (
        p99(&result.records, &without),
        p99(&reference.records, &without),
    );
    let blpops: Vec<&OpRecord> = result
        .records
        .iter()
        .filter(|r| r.kind == OpKind::Slow)
        .collect();
    let blpop_nodes: BTreeSet<u16> = blpops.iter().map(|r| owners[usize::from(r.slot)]).collect();
    report.check(
        format!("all {callers} BLPOPs wait at once, each on a connection of its own, on every primary (the fault is real)"),
        all_blocking && peak.open_connections > callers && blpop_nodes == primaries,
        format!(
            "at most {} blocking, {} connections open then; BLPOPs on {} of {} primaries",
            peak.blocking,
            peak.open_connections,
            blpop_nodes.len(),
            primaries.len()
        ),
    );
    let blpop_failed = blpops.iter().filter(|r| !r.ok()).count();
    let (blpop_fastest, blpop_slowest) = (
        blpops.iter().map(|r| r.took).min().unwrap_or_default(),
        blpops.iter().map(|r| r.took).max().unwrap_or_default(),
    );
    report.check(
        format!(
            "every BLPOP waits its {} and comes back empty, within socket_timeout",
            secs(block)
        ),
        !blpops.is_empty() && blpop_failed == 0 && hung == 0 && blpop_slowest <= socket_timeout,
        format!(
            "{} BLPOPs, {blpop_failed} failed, {hung} callers did not stop; they took {} to {}",
            blpops.len(),
            secs(blpop_fastest),
            secs(blpop_slowest)
        ),
    );
    let p99s = format!(
        "p99 {} with them ({} operations), {} on the twin ({} operations); ratio {:.2}",
        secs(p99_with),
        count(&result.records, &during),
        secs(p99_twin),
        count(&reference.records, &during),
        ratio(p99_with, p99_twin)
    );
    if options.judge_latency {
        report.check(
            "the other callers' p99 with the BLPOP callers is within 1.2x of the same load without them (the twin's, at the same time)",
            p99_with <= p99_twin.mul_f64(1.2),
            p99s,
        );
    } else {
        report.note(format!(
            "the other callers' latency against the twin's: {p99s}"
        ));
    }
    let twin_failed = reference.records.iter().filter(|r| !r.ok()).count();
    report.check(
        "the twin's load succeeds and keeps its writes (the comparison is sound)",
        twin_failed == 0
            && reference_missing.is_empty()
            && reference.panicked + reference.hung == 0,
        format!(
            "{} operations, {twin_failed} failed; {} of {} acknowledged writes missing",
            reference.records.len(),
            reference_missing.len(),
            reference.acks.len()
        ),
    );
    report.note(format!(
        "without the BLPOP callers, p99 {} on the client and {} on the twin (ratio {:.2}: how alike the two are); \
         the client's p99 {} with the BLPOP callers against {} before them (ratio {:.2}, at different times)",
        secs(p99_without),
        secs(p99_twin_without),
        ratio(p99_without, p99_twin_without),
        secs(p99_with),
        secs(p99_without),
        ratio(p99_with, p99_without),
    ));
    let others: Vec<&OpRecord> = result
        .records
        .iter()
        .filter(|r| r.kind != OpKind::Slow)
        .collect();
    let others_failed = others.iter().filter(|r| !r.ok()).count();
    let others_slowest = others.iter().map(|r| r.took).max().unwrap_or_default();
    report.check(
        format!(
            "none of the other callers' calls fails or takes longer than timeout ({}), though their deadline is {}",
            secs(options.timeout),
            secs(socket_timeout)
        ),
        others_failed == 0 && others_slowest <= options.timeout,
        format!(
            "{others_failed} failed; slowest {}",
            secs(others_slowest)
        ),
    );
    report.check(
        "blocking, in-flight and waiting counts return to zero",
        drained_in.is_some(),
        format!("{drained:?}"),
    );
    let share = |cpu: Duration, window: Duration| cpu.as_secs_f64() / window.as_secs_f64();
    report.note(format!(
        "median of the other callers {} without the BLPOP callers, {} with them; the client process used \
         {:.0}% of a core without them, {:.0}% with them",
        secs(quantile(&result.records, &without, 0.5)),
        secs(quantile(&result.records, &during, 0.5)),
        share(cpu_without, alone) * 100.0,
        share(cpu_with, together) * 100.0,
    ));
    let (starting, waiting) = first_start;
    let opening =
        |r: &OpRecord| r.kind != OpKind::Slow && r.ended() >= starting && r.started <= waiting;
    report.note(format!(
        "while the callers started, not measured, their {callers} connections (each with a socket to every node) \
         were opened in {}: the other callers' p99 meanwhile {}, the twin's {}",
        secs(waiting - starting),
        secs(quantile(&result.records, opening, 0.99)),
        secs(quantile(&reference.records, opening, 0.99)),
    ));
    (report, result)
}

/// Every node frozen (SIGSTOP) for 5 seconds, then thawed (SIGCONT).
async fn cluster_down(options: &ChaosOptions) -> (Report, LoadResult) {
    let pause = Duration::from_secs(5);
    // Longer than the freeze, so that no node, when it wakes, takes the others' silence for a
    // failure (they all were silent for as long) and starts a failover.
    let node_timeout = u64::try_from((pause * 3).as_millis()).unwrap_or(u64::MAX);
    let mut run = Harness::start(Scenario::ClusterDown, options, node_timeout, &[]).await;
    let before = run.census_before().await;
    let owners = run.start_load(None, &[]).await;
    let fault_at = run.baseline().await;
    let c = Arc::clone(&run.cluster);
    blocking(move || c.ports().into_iter().for_each(|port| c.pause(port))).await;
    tokio::time::sleep(pause).await;
    let c = Arc::clone(&run.cluster);
    blocking(move || c.ports().into_iter().for_each(|port| c.resume(port))).await;
    let thawed_at = run.elapsed();
    let back_at = run.cluster_back().await;
    let fault = format!(
        "SIGSTOP every node (3 primaries, 6 replicas) for {} (cluster-node-timeout {node_timeout} ms, \
         so no failover), then SIGCONT; cluster_state ok on every node {}",
        secs(thawed_at - fault_at),
        match back_at {
            Some(back) => format!("{} after SIGCONT", secs(back.saturating_sub(thawed_at))),
            None => "never".into(),
        }
    );
    outage(run, fault, before, owners, fault_at, back_at).await
}

/// Every node killed (SIGKILL) and, a moment later, restarted from its own directory: same port,
/// same `nodes.conf`, so the cluster forms again as it was; with an append-only file fsynced
/// before every reply, so the nodes come back with every write they acknowledged.
async fn cluster_restart(options: &ChaosOptions) -> (Report, LoadResult) {
    let gone = options.timeout * 2;
    let setup = Setup {
        node_timeout_ms: 5_000,
        node_args: &PERSISTENT,
        ..Setup::default()
    };
    let mut run = Harness::start_with(Scenario::ClusterRestart, options, setup).await;
    let before = run.census_before().await;
    let owners = run.start_load(None, &[]).await;
    let fault_at = run.baseline().await;
    let c = Arc::clone(&run.cluster);
    blocking(move || c.ports().into_iter().for_each(|port| c.kill(port))).await;
    tokio::time::sleep(gone).await;
    let c = Arc::clone(&run.cluster);
    let restarting_at = run.elapsed();
    blocking(move || c.ports().into_iter().for_each(|port| c.restart_node(port))).await;
    let restarted_at = run.elapsed();
    let back_at = run.cluster_back().await;
    let fault = format!(
        "SIGKILL every node (3 primaries, 6 replicas), restarted {} later from their own directories \
         (same ports and nodes.conf; appendonly yes, appendfsync always) in {}; cluster_state ok on \
         every node {}",
        secs(restarting_at - fault_at),
        secs(restarted_at - restarting_at),
        match back_at {
            Some(back) => format!(
                "{} after the last restart",
                secs(back.saturating_sub(restarted_at))
            ),
            None => "never".into(),
        }
    );
    let (mut report, result) = outage(run, fault, before, owners, fault_at, back_at).await;
    let missing = report.missing_durable.len() + report.missing_not_durable;
    report.check(
        "every acknowledged write, replicated or not, is there after the restart (each node fsynced it before answering)",
        missing == 0,
        format!("{missing} of {} acknowledged writes missing", report.acknowledged),
    );
    (report, result)
}

/// The rest of an outage scenario once the cluster is back (at `back_at`, if it came back): the
/// load runs on, stops, and the checks shared by every outage are made.
async fn outage(
    mut run: Harness,
    fault: String,
    before: Census,
    owners: Vec<u16>,
    fault_at: Duration,
    back_at: Option<Duration>,
) -> (Report, LoadResult) {
    let serve_within = Duration::from_secs(2);
    let tracked_when_back = run.tracked_writes().await;
    run.settle(back_at.unwrap_or(fault_at) + serve_within).await;
    let result = run.stop_load().await;
    let tracked_at_end = run.tracked_writes().await;
    run.finish_watch().await;
    let foo = run.client();
    let (after, settled) = settles_to(&before, Duration::from_secs(5), || {
        Census::take(foo.pool_stats())
    })
    .await;
    drop(foo);
    let mut report = run.report(&result, fault, fault_at, back_at).await;
    let deadline = run.deadline;
    let back = back_at.unwrap_or(Duration::MAX);
    let while_gone = |r: &OpRecord| r.started < back && r.ended() > fault_at;
    let failed_while_gone: Vec<&OpRecord> = result
        .records
        .iter()
        .filter(|r| !r.ok() && while_gone(r))
        .collect();
    let slowest_failure = failed_while_gone
        .iter()
        .map(|r| r.took)
        .max()
        .unwrap_or_default();
    report.check(
        "calls fail while the cluster is gone (the fault is real)",
        !failed_while_gone.is_empty(),
        format!("{} failures", failed_while_gone.len()),
    );
    report.check(
        format!(
            "while the cluster is gone, every call ends within its deadline + {} ({})",
            secs(LATE_MARGIN),
            secs(deadline + LATE_MARGIN)
        ),
        result
            .records
            .iter()
            .filter(|r| while_gone(r))
            .all(|r| r.took <= deadline + LATE_MARGIN),
        format!(
            "slowest failure {}; slowest call then {}",
            secs(slowest_failure),
            secs(
                result
                    .records
                    .iter()
                    .filter(|r| while_gone(r))
                    .map(|r| r.took)
                    .max()
                    .unwrap_or_default()
            )
        ),
    );
    let anonymous = &result.anonymous_errors;
    report.check(
        "every error names the client",
        result.anonymous_total == 0,
        format!(
            "{} of {} errors do not{}",
            result.anonymous_total,
            report.failed_total(),
            anonymous
                .first()
                .map(|e| format!("; e.g. at {}: {}", secs(e.started), e.message))
                .unwrap_or_default()
        ),
    );
    // The first success on each primary's slots once the cluster is back.
    let primaries: BTreeSet<u16> = owners.iter().copied().collect();
    let serving_again = primaries
        .iter()
        .map(|&primary| {
            result
                .records
                .iter()
                .filter(|r| r.ok() && owners[usize::from(r.slot)] == primary && r.ended() >= back)
                .map(OpRecord::ended)
                .min()
        })
        .collect::<Option<Vec<Duration>>>()
        .and_then(|firsts| firsts.into_iter().max())
        .map(|last| last.saturating_sub(back));
    let failed_later = failures(&result.records, |r| r.started >= back + serve_within);
    report.check(
        format!(
            "the client serves every primary's slots again within {} of the cluster being back, without a restart, \
             and nothing fails after that",
            secs(serve_within)
        ),
        back_at.is_some()
            && serving_again.is_some_and(|took| took <= serve_within)
            && failed_later == 0,
        format!(
            "{}; {failed_later} failures from {} after",
            match (back_at, serving_again) {
                (None, _) => "the cluster never came back".to_owned(),
                (Some(_), None) => "some primary's slots never served again".to_owned(),
                (Some(_), Some(took)) => format!("every primary's slots served {} after", secs(took)),
            },
            secs(serve_within)
        ),
    );
    report.check(
        "the hot-key tracker writes again once the cluster is back",
        tracked_at_end > tracked_when_back,
        format!(
            "baseplate-hot-key-tracker-writes held {tracked_when_back} keys when the cluster was back, \
             {tracked_at_end} when the load stopped"
        ),
    );
    report.check(
        "nothing leaks: pool counts back to theirs before, no more alive tasks or open fds",
        settled.is_some(),
        format!("before: {before}; after: {after}"),
    );
    (report, result)
}

/// Failed non-slow operations matching `on` and not matching it.
fn split_failures(records: &[OpRecord], on: impl Fn(&OpRecord) -> bool) -> (usize, usize) {
    let on_count = failures(records, &on);
    (on_count, failures(records, |_| true) - on_count)
}

/// Operations the client failed (an error, not a stale read) that match `filter`.
fn failures(records: &[OpRecord], filter: impl Fn(&OpRecord) -> bool) -> usize {
    records
        .iter()
        .filter(|r| matches!(r.outcome, Outcome::Failed(_)) && filter(r))
        .count()
}

/// Where Redis promises it, a read of a write a replica confirmed finds it, whichever node serves
/// the read.
fn no_stale_reads(report: &mut Report) {
    let stale = report.stale_reads;
    report.check(
        "no read of a durable write comes back empty",
        stale == 0,
        format!("{stale} stale reads"),
    );
}

/// How a scenario's cluster and client are set up beyond the defaults.
#[derive(Default)]
struct Setup<'a> {
    /// `cluster-node-timeout`: how long before a silent primary is failed over.
    node_timeout_ms: u64,
    /// Extra `redis-server` arguments for every node.
    node_args: &'static [&'static str],
    /// Client keys (without the `foo.` prefix) and their values.
    overrides: &'a [(&'a str, String)],
    /// Whether to configure a second client, [`REFERENCE`], exactly like the first.
    reference: bool,
}

/// What every scenario does around its fault: the cluster, the client, the statsd sink, the load.
struct Harness {
    scenario: Scenario,
    options: ChaosOptions,
    cluster: Arc<ChaosCluster>,
    statsd: Option<StatsdSink>,
    packets_before_close: u64,
    baseplate: Arc<Baseplate>,
    load: Option<Load>,
    /// A call's deadline: `timeout`, or `socket_timeout` when that is longer.
    deadline: Duration,
    watcher: Option<(u16, StateWatcher)>,
    /// The port the watcher watched, once it stopped.
    watched: Option<u16>,
    /// Windows in which the watched node said the cluster was not `ok`: (from, until, state).
    down: Vec<(Duration, Duration, String)>,
    watched_warnings: Vec<String>,
}

impl Harness {
    /// Starts a cluster with `node_timeout_ms` and a client configured with `timeout` and the
    /// password URL plus `overrides` (keys without the `foo.` prefix), and waits until the client
    /// has a working connection.
    async fn start(
        scenario: Scenario,
        options: &ChaosOptions,
        node_timeout_ms: u64,
        overrides: &[(&str, String)],
    ) -> Harness {
        let setup = Setup {
            node_timeout_ms,
            overrides,
            ..Setup::default()
        };
        Harness::start_with(scenario, options, setup).await
    }

    /// Like [`start`](Self::start), set up as `setup` says.
    async fn start_with(scenario: Scenario, options: &ChaosOptions, setup: Setup<'_>) -> Harness {
        let Setup {
            node_timeout_ms,
            node_args,
            overrides,
            reference,
        } = setup;
        observer().watch(PASSWORD);
        let node_timeout = Duration::from_millis(node_timeout_ms);
        let cluster = Arc::new(
            blocking(move || ChaosCluster::start_with_args(node_timeout, node_args)).await,
        );
        let statsd = StatsdSink::bind().await;
        let timeout = format!("{} milliseconds", options.timeout.as_millis());
        let mut config: RawConfig = [
            ("metrics.namespace".to_owned(), "chaos".to_owned()),
            ("metrics.endpoint".to_owned(), statsd.endpoint().to_owned()),
            (format!("{CLIENT}.url"), cluster.url_with_password()),
            (format!("{CLIENT}.timeout"), timeout),
            (
                format!("{CLIENT}.track_key_reads_sample_rate"),
                "0.1".into(),
            ),
            (
                format!("{CLIENT}.track_key_writes_sample_rate"),
                "0.1".into(),
            ),
            (
                format!("{CLIENT}.track_key_flush_interval"),
                "1 second".into(),
            ),
        ]
        .into_iter()
        .collect();
        for (key, value) in overrides {
            config.insert(format!("{CLIENT}.{key}"), value.as_str());
        }
        if reference {
            let prefix = format!("{CLIENT}.");
            let copies: Vec<_> = config
                .iter()
                .filter_map(|(key, value)| {
                    let key = key.strip_prefix(&prefix)?;
                    Some((format!("{REFERENCE}.{key}"), value.clone()))
                })
                .collect();
            for (key, value) in copies {
                config.insert(key, value);
            }
        }
        let parsed = ClusterRedisClient::new()
            .options_from_config(&config, &format!("{CLIENT}."))
            .expect("the chaos client config");
        // The client's rule: the response timeout, or the wait for a permit when that is longer.
        let deadline = parsed
            .response_timeout
            .map_or(parsed.pool_wait, |response| response.max(parsed.pool_wait));
        let mut baseplate = Baseplate::new(config);
        baseplate
            .configure_observers()
            .expect("the chaos metrics config");
        baseplate
            .configure_context(CLIENT, ClusterRedisClient::new())
            .expect("the chaos client config");
        if reference {
            baseplate
                .configure_context(REFERENCE, ClusterRedisClient::new())
                .expect("the reference client config");
        }
        let baseplate = Arc::new(baseplate);
        let mut foo = baseplate
            .make_context_object()
            .redis_cluster(CLIENT)
            .expect("the chaos client");
        let ready = eventually(Duration::from_secs(10), || {
            let mut foo = foo.clone();
            async move { foo.get::<_, Option<String>>("chaos:warm-up").await.is_ok() }
        })
        .await;
        assert!(
            ready.is_some(),
            "the client never reached the chaos cluster"
        );
        let _: redis::RedisResult<Option<String>> = foo.get("chaos:warm-up").await;
        Harness {
            scenario,
            options: options.clone(),
            cluster,
            statsd: Some(statsd),
            packets_before_close: 0,
            baseplate,
            load: None,
            deadline,
            watcher: None,
            watched: None,
            down: Vec::new(),
            watched_warnings: Vec::new(),
        }
    }

    /// Starts the load with workers pinned to the primaries' slots as they are now (or to
    /// `partition`), and a watch on `cluster_state` from a primary that is not in `avoid` (the
    /// nodes the fault hits); returns the owner (primary port) of every slot at the start.
    async fn start_load(&mut self, partition: Option<Vec<u16>>, avoid: &[u16]) -> Vec<u16> {
        let c = Arc::clone(&self.cluster);
        let (owners, nodes) = blocking(move || (c.slot_owners(), c.nodes())).await;
        let options = LoadOptions::new(CLIENT, self.options.workers, self.options.ops_per_second)
            .with_partition(partition.unwrap_or_else(|| owners.clone()));
        let load = Load::start(Arc::clone(&self.baseplate), options);
        let seed = self.cluster.seed_port();
        let watched = nodes
            .iter()
            .filter(|n| n.primary && !avoid.contains(&n.port))
            .map(|n| n.port)
            .max_by_key(|&port| port != seed)
            .unwrap_or(seed);
        self.watcher = Some((watched, StateWatcher::start(watched, load.origin())));
        self.load = Some(load);
        owners
    }

    /// Whether an operation overlapped a window in which the cluster said it was down.
    fn during_cluster_down(&self, record: &OpRecord) -> bool {
        self.down
            .iter()
            .any(|(from, until, _)| record.started < *until && record.ended() > *from)
    }

    fn load_mut(&mut self) -> &mut Load {
        self.load.as_mut().expect("the load runs")
    }

    fn elapsed(&self) -> Duration {
        self.load.as_ref().map_or(Duration::ZERO, Load::elapsed)
    }

    /// Lets the load run a quarter of its length (at least a second and a half) before the
    /// fault; returns when the fault may start.
    async fn baseline(&self) -> Duration {
        let baseline = (self.options.load / 4).max(Duration::from_millis(1_500));
        tokio::time::sleep(baseline.saturating_sub(self.elapsed())).await;
        self.elapsed()
    }

    /// Keeps the load running to its configured length, and at least long enough after `over`
    /// (the end of the fault) to see the client recover.
    async fn settle(&self, over: Duration) {
        let settle = (self.options.load / 4).max(Duration::from_secs(2));
        let until = self.options.load.max(over + settle);
        tokio::time::sleep(until.saturating_sub(self.elapsed())).await;
    }

    /// Stops watching `cluster_state` (the watcher holds a task and a connection), keeping the
    /// windows it saw for the report.
    async fn finish_watch(&mut self) {
        if let Some((port, watcher)) = self.watcher.take() {
            self.down = watcher.finish().await;
            self.watched = Some(port);
        }
    }

    /// A connection of the client, for its pool statistics.
    fn client(&self) -> baseplate::MonitoredClusterRedisConnection {
        self.baseplate
            .make_context_object()
            .redis_cluster(CLIENT)
            .expect("the chaos client")
    }

    /// Uses the client for reads and writes on every slot until the hot-key tracker has written
    /// its first sample (so it holds its connection), then counts what the process holds.
    async fn census_before(&self) -> Census {
        let mut foo = self.client();
        let c = Arc::clone(&self.cluster);
        let owners = blocking(move || c.slot_owners()).await;
        let reads_set = "baseplate-hot-key-tracker-reads";
        let tracker_node = owners[usize::from(key_slot(reads_set.as_bytes()))];
        let mut round = 0;
        let tracked = eventually(Duration::from_secs(10), || {
            round += 1;
            let mut foo = foo.clone();
            let c = Arc::clone(&self.cluster);
            async move {
                for i in 0..100 {
                    let key = format!("chaos:census:{round}:{i}");
                    let _: redis::RedisResult<()> = foo.set(&key, i).await;
                    let _: redis::RedisResult<Option<i64>> = foo.get(&key).await;
                }
                blocking(move || c.cli(tracker_node, &["EXISTS", reads_set]).trim() == "1").await
            }
        })
        .await;
        assert!(tracked.is_some(), "the hot-key tracker never wrote");
        let _: redis::RedisResult<Option<String>> = foo.get("chaos:census").await;
        Census::take(foo.pool_stats())
    }

    /// How many keys the hot-key tracker's writes set holds now (0 when its node does not say).
    async fn tracked_writes(&self) -> u64 {
        let set = "baseplate-hot-key-tracker-writes";
        let c = Arc::clone(&self.cluster);
        blocking(move || {
            let node = c.slot_owners()[usize::from(key_slot(set.as_bytes()))];
            redis_cli(node, &["ZCARD", set])
                .ok()
                .and_then(|count| count.trim().parse().ok())
                .unwrap_or(0)
        })
        .await
    }

    /// Polls every node until all of them are up and say `cluster_state:ok` (for up to 30 s);
    /// returns when, from the start of the load: the start of the first poll that saw it.
    async fn cluster_back(&self) -> Option<Duration> {
        let until = self.elapsed() + Duration::from_secs(30);
        while self.elapsed() < until {
            let at = self.elapsed();
            let c = Arc::clone(&self.cluster);
            if blocking(move || c.all_up_and_ok()).await {
                return Some(at);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }

    /// Sleeps until `at` from the start of the load.
    async fn sleep_until(&self, at: Duration) {
        tokio::time::sleep(at.saturating_sub(self.elapsed())).await;
    }

    /// Closes the statsd endpoint; returns the packets it got.
    async fn close_statsd(&mut self) -> u64 {
        if let Some(statsd) = self.statsd.take() {
            self.packets_before_close = statsd.close().await;
        }
        self.packets_before_close
    }

    async fn stop_load(&mut self) -> LoadResult {
        self.load.take().expect("the load runs").finish().await
    }

    /// Stops the client, reads every acknowledged write back and builds the report.
    async fn report(
        &mut self,
        result: &LoadResult,
        fault: String,
        fault_at: Duration,
        healed_at: Option<Duration>,
    ) -> Report {
        self.baseplate.shutdown().await;
        let missing = verify(self.cluster.live_urls(), &result.acks).await;
        let packets = match self.statsd.take() {
            Some(statsd) => statsd.close().await,
            None => self.packets_before_close,
        };
        let watched = observer().finish();
        self.watched_warnings = watched.warnings.clone();
        let mut state_note = None;
        self.finish_watch().await;
        if let Some(port) = self.watched {
            let windows: Vec<String> = self
                .down
                .iter()
                .map(|(from, until, state)| {
                    let until = if *until == Duration::MAX {
                        "the end".to_owned()
                    } else {
                        secs(*until)
                    };
                    format!("{state} from {} to {until}", secs(*from))
                })
                .collect();
            state_note = Some(format!(
                "cluster_state as 127.0.0.1:{port} saw it: {}",
                if windows.is_empty() {
                    "ok throughout".to_owned()
                } else {
                    windows.join(", ")
                }
            ));
        }
        let mut report = Report::new(
            result,
            RunFacts {
                scenario: self.scenario,
                timeout: self.options.timeout,
                deadline: self.deadline,
                fault,
                fault_at,
                healed_at,
                missing,
                watched,
                metrics_packets: packets,
            },
        );
        report.notes.extend(state_note);
        report
    }
}
