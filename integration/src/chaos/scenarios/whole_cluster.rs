//! The scenarios that take the whole cluster away: cluster-down (every node frozen, then thawed)
//! and cluster-restart (every node killed and restarted from its own directory), and the checks
//! every such outage shares once the cluster is back.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use super::checks::failures;
use super::harness::{Harness, Setup};
use crate::chaos::census::{Census, settles_to};
use crate::chaos::cluster::{PERSISTENT, blocking};
use crate::chaos::load::{LoadResult, OpRecord};
use crate::chaos::report::{LATE_MARGIN, Report, secs};
use crate::chaos::{ChaosOptions, Scenario};

/// Every node frozen (SIGSTOP) for 5 seconds, then thawed (SIGCONT).
pub(super) async fn cluster_down(options: &ChaosOptions) -> (Report, LoadResult) {
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
pub(super) async fn cluster_restart(options: &ChaosOptions) -> (Report, LoadResult) {
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
