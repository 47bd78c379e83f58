//! The reshard scenario: slots move from one primary to another under load, and the client
//! follows MOVED and ASK.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use cluster_launcher::ClusterNode;

use super::harness::Harness;
use crate::chaos::cluster::blocking;
use crate::chaos::load::{LoadResult, OpRecord};
use crate::chaos::report::{Report, secs};
use crate::chaos::{ChaosOptions, Scenario};

/// Move slots from the seed primary to another primary with `redis-cli --cluster reshard`.
pub(super) async fn reshard(options: &ChaosOptions) -> (Report, LoadResult) {
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
