//! The scenarios that take one node away for a while and give it back, with no failover:
//! hang-primary (a primary frozen for longer than `timeout`) and restart-node (a replica stopped
//! and started again on its port).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use cluster_launcher::wait_until;

use super::checks::{no_stale_reads, split_failures};
use super::harness::Harness;
use crate::chaos::cluster::blocking;
use crate::chaos::load::{LoadResult, OpKind, OpRecord};
use crate::chaos::report::{LATE_MARGIN, Report, longest_gap, secs};
use crate::chaos::{ChaosOptions, Scenario};

/// SIGSTOP a primary for 2.5 × `timeout` (shorter than `cluster-node-timeout`, so no failover),
/// then SIGCONT.
pub(super) async fn hang_primary(options: &ChaosOptions) -> (Report, LoadResult) {
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
pub(super) async fn restart_node(options: &ChaosOptions) -> (Report, LoadResult) {
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
