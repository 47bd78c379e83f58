//! The scenarios whose callers hold the client's pool: pool-exhaustion (more slow callers than
//! `max_connections`) and blocking-commands (`BLPOP` callers beside the ordinary load, measured
//! against a twin client).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use super::checks::no_stale_reads;
use super::harness::{CLIENT, Harness, REFERENCE, Setup};
use crate::chaos::census::process_cpu_time;
use crate::chaos::load::{Load, LoadOptions, LoadResult, OpKind, OpRecord, Outcome, verify};
use crate::chaos::report::{LATE_MARGIN, Report, longest_gap, quantile, secs};
use crate::chaos::{ChaosOptions, Scenario};
use crate::eventually;

/// More callers than `max_connections`, each holding its slot with a slow command.
pub(super) async fn pool_exhaustion(options: &ChaosOptions) -> (Report, LoadResult) {
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

/// 50 callers loop on `BLPOP`s of 2 seconds, on keys spread over every primary, for the last
/// three quarters of the load. A twin of the client (configured alike, which no BLPOP touches)
/// carries the same load at the same time: the client's other callers are measured against the
/// twin's while the BLPOP callers run, so that whatever else the machine does weighs on both alike
/// (windows apart, the p99 of the same load varies more than the 1.2x to be told apart); the
/// first quarter shows how alike the two are without them.
pub(super) async fn blocking_commands(options: &ChaosOptions) -> (Report, LoadResult) {
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
