//! The tracker-and-metrics-faults scenario: the hot-key tracker's writes are refused and the
//! statsd endpoint goes away, and no user command notices.

use std::sync::Arc;
use std::time::Duration;

use super::harness::Harness;
use crate::chaos::cluster::blocking;
use crate::chaos::load::{LoadResult, OpRecord};
use crate::chaos::report::{Report, quantile, secs};
use baseplate_redis_cluster::key_slot;

use crate::chaos::{ChaosOptions, Scenario};

/// The hot-key tracker's sets refuse writes and the statsd endpoint goes away.
pub(super) async fn tracker_and_metrics_faults(options: &ChaosOptions) -> (Report, LoadResult) {
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
