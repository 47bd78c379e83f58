//! The figures of one scenario run, the invariants they are checked against, and the table the
//! `chaos` binary prints.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use crate::chaos::Scenario;
use crate::chaos::load::{Ack, LoadResult, OpKind, OpRecord, Outcome};
use crate::chaos::observe::Watched;

/// The width of the buckets the success rate is measured in.
pub const BUCKET: Duration = Duration::from_millis(250);

/// The share of the normal successes per bucket a bucket needs to count as normal.
pub const NORMAL_SHARE: f64 = 0.8;

/// How much longer than its deadline (`timeout`, or `socket_timeout` when longer) a call may take
/// before it counts as late, which must never happen: the client bounds every call by one
/// deadline (pool wait, connecting, sending and retries together), so all a call may add to it is
/// the time to notice it passed and return.
pub const LATE_MARGIN: Duration = Duration::from_millis(100);

/// What happened in one scenario run.
#[derive(Debug, Clone)]
pub struct Report {
    /// The scenario, the client's deadlines and the fault.
    pub run: Run,
    /// How long the load ran.
    pub load: Duration,
    /// Operations attempted.
    pub attempted: usize,
    /// Operations that succeeded.
    pub succeeded: usize,
    /// Failed operations by error kind.
    pub failed: BTreeMap<String, usize>,
    /// Reads of durable writes that found nothing.
    pub stale_reads: usize,
    /// Reads that found another value than the one written.
    pub wrong_values: usize,
    /// The longest stretch with no successful operation, and where it started.
    pub longest_gap: (Duration, Duration),
    /// How long after the fault the success rate was back to normal for good; `None` when it
    /// never was before the load ended.
    pub recovery: Option<Duration>,
    /// Writes acknowledged (`SET` answered OK).
    pub acknowledged: usize,
    /// Of those, the ones a replica confirmed (`WAIT`).
    pub durable: usize,
    /// Durable writes whose value was not there afterwards.
    pub missing_durable: Vec<String>,
    /// Acknowledged but not replicated writes whose value was not there afterwards: lost by
    /// design when their primary died before replicating them.
    pub missing_not_durable: usize,
    /// The slowest call.
    pub slowest: Duration,
    /// Calls that took longer than their deadline + [`LATE_MARGIN`].
    pub late: usize,
    /// Statsd packets received.
    pub metrics_packets: u64,
    /// Texts scanned for the password (span fields, events, errors, metric packets).
    pub scanned: u64,
    /// Texts that contained the password.
    pub leaks: Vec<String>,
    /// Worker tasks that panicked or did not stop.
    pub panicked_or_hung: usize,
    /// One message per error kind.
    pub error_samples: BTreeMap<String, String>,
    /// Scenario-specific measurements.
    pub notes: Vec<String>,
    /// Every invariant checked, in order.
    pub checks: Vec<Check>,
}

/// What one scenario run did: the scenario, the client's deadlines, and the fault and its timeline.
#[derive(Debug, Clone)]
pub struct Run {
    /// The scenario.
    pub scenario: Scenario,
    /// The client's `timeout`.
    pub timeout: Duration,
    /// A call's deadline: `timeout`, or `socket_timeout` when that is longer.
    pub deadline: Duration,
    /// What was done to the cluster, in words.
    pub fault: String,
    /// When the fault was injected, from the start of the load.
    pub fault_at: Duration,
    /// When the fault was over (failover done, node thawed or back, reshard finished, slow callers
    /// stopped), if it ends.
    pub healed_at: Option<Duration>,
}

/// One invariant and whether it held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// What must hold.
    pub invariant: String,
    /// Whether it did.
    pub holds: bool,
    /// The measurement behind the verdict.
    pub detail: String,
}

/// The inputs of [`Report::new`] besides the load's records.
#[derive(Debug, Clone)]
pub struct RunFacts {
    /// The scenario, the client's deadlines and the fault.
    pub run: Run,
    /// Acknowledged writes whose value was missing afterwards.
    pub missing: Vec<Ack>,
    /// What the observer saw.
    pub watched: Watched,
    /// Statsd packets received.
    pub metrics_packets: u64,
}

impl Report {
    /// Computes the figures and checks the invariants every scenario shares: no call late, no
    /// durable write missing, no wrong value, no password anywhere, no panic or hang, recovered,
    /// and metrics flowing.
    pub fn new(load: &LoadResult, facts: RunFacts) -> Report {
        let records = &load.records;
        let mut failed = BTreeMap::new();
        for record in records {
            if let Outcome::Failed(kind) = &record.outcome {
                *failed.entry(kind.to_string()).or_insert(0) += 1;
            }
        }
        let count = |outcome: &Outcome| records.iter().filter(|r| r.outcome == *outcome).count();
        let run = facts.run;
        let late_after = run.deadline + LATE_MARGIN;
        let (missing_durable, missing_not_durable): (Vec<&Ack>, Vec<&Ack>) =
            facts.missing.iter().partition(|ack| ack.durable);
        let fault_at = run.fault_at;
        let mut report = Report {
            run,
            load: load.ended,
            attempted: records.len(),
            succeeded: count(&Outcome::Ok),
            failed,
            stale_reads: count(&Outcome::StaleRead),
            wrong_values: count(&Outcome::WrongValue),
            longest_gap: longest_gap(records, |_| true, Duration::ZERO, load.ended),
            recovery: recovery(records, fault_at, load.ended),
            acknowledged: load.acks.len(),
            durable: load.acks.iter().filter(|a| a.durable).count(),
            missing_durable: missing_durable.iter().map(|a| a.key.clone()).collect(),
            missing_not_durable: missing_not_durable.len(),
            slowest: records.iter().map(|r| r.took).max().unwrap_or_default(),
            late: records.iter().filter(|r| r.took > late_after).count(),
            metrics_packets: facts.metrics_packets,
            scanned: facts.watched.scanned,
            leaks: facts.watched.leaks,
            panicked_or_hung: load.panicked + load.hung,
            error_samples: load.error_samples.clone(),
            notes: Vec::new(),
            checks: Vec::new(),
        };
        report.check(
            format!(
                "no call takes longer than its deadline + {} ({}{})",
                secs(LATE_MARGIN),
                secs(late_after),
                if report.run.deadline == report.run.timeout {
                    String::new()
                } else {
                    format!(
                        ": socket_timeout {} is longer than timeout",
                        secs(report.run.deadline)
                    )
                }
            ),
            report.late == 0,
            format!(
                "{} late; slowest {}{}",
                report.late,
                secs(report.slowest),
                match report.slowest.checked_sub(report.run.deadline) {
                    Some(past) =>
                        format!(", {:.1}ms past its deadline", past.as_secs_f64() * 1000.0),
                    None => String::new(),
                }
            ),
        );
        report.check(
            "every durable (replicated) acknowledged write is there afterwards",
            report.missing_durable.is_empty(),
            format!(
                "{} of {} missing{}",
                report.missing_durable.len(),
                report.durable,
                sample(&report.missing_durable)
            ),
        );
        report.check(
            "no read returns a value other than the one written",
            report.wrong_values == 0,
            format!("{} wrong values", report.wrong_values),
        );
        report.check(
            "the password shows in no error, log line, span field or metric",
            report.leaks.is_empty() && report.scanned > 0,
            format!(
                "{} texts scanned, {} leaks{}",
                report.scanned,
                report.leaks.len(),
                sample(&report.leaks)
            ),
        );
        report.check(
            "no load worker panics or hangs",
            report.panicked_or_hung == 0,
            format!("{} panicked or hung", report.panicked_or_hung),
        );
        report.check(
            "the success rate is back to normal before the load ends",
            report.recovery.is_some(),
            match report.recovery {
                Some(after) => format!("after {}", secs(after)),
                None => "never".into(),
            },
        );
        report.check(
            "every acknowledged write was answered and the load made progress",
            report.succeeded > 0 && report.acknowledged > 0,
            format!(
                "{} succeeded, {} acknowledged",
                report.succeeded, report.acknowledged
            ),
        );
        report
    }

    /// Records an invariant and whether it held.
    pub fn check(&mut self, invariant: impl Into<String>, holds: bool, detail: impl Into<String>) {
        self.checks.push(Check {
            invariant: invariant.into(),
            holds,
            detail: detail.into(),
        });
    }

    /// Adds a measurement to the report.
    pub fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }

    /// Whether every invariant held.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.holds)
    }

    /// The invariants that did not hold.
    pub fn violations(&self) -> Vec<&Check> {
        self.checks.iter().filter(|c| !c.holds).collect()
    }

    /// Total failed operations.
    pub fn failed_total(&self) -> usize {
        self.failed.values().sum()
    }

    /// The summary table's header.
    pub fn table_header() -> String {
        format!(
            "{:<27} {:>7} {:>7} {:>6} {:>5} {:>9} {:>9} {:>13} {:>7} {:>7} {:>5}  {:<11} {}",
            "scenario",
            "ops",
            "ok",
            "failed",
            "stale",
            "no-succ",
            "normal@",
            "acked(durable)",
            "missing",
            "slowest",
            "late",
            "invariants",
            "failed by kind"
        )
    }

    /// The scenario's row in the summary table.
    pub fn table_row(&self) -> String {
        let checks = self.checks.len();
        let held = self.checks.iter().filter(|c| c.holds).count();
        let kinds: Vec<String> = self
            .failed
            .iter()
            .map(|(kind, n)| format!("{kind} {n}"))
            .collect();
        format!(
            "{:<27} {:>7} {:>7} {:>6} {:>5} {:>9} {:>9} {:>13} {:>7} {:>7} {:>5}  {:<11} {}",
            self.run.scenario.name(),
            self.attempted,
            self.succeeded,
            self.failed_total(),
            self.stale_reads,
            secs(self.longest_gap.0),
            self.recovery.map_or("never".to_owned(), secs),
            format!("{}({})", self.acknowledged, self.durable),
            format!(
                "{}+{}",
                self.missing_durable.len(),
                self.missing_not_durable
            ),
            secs(self.slowest),
            self.late,
            if held == checks {
                format!("PASS {held}/{checks}")
            } else {
                format!("FAIL {held}/{checks}")
            },
            if kinds.is_empty() {
                "-".to_owned()
            } else {
                kinds.join(", ")
            }
        )
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "== {} ==", self.run.scenario)?;
        writeln!(f, "fault: {}", self.run.fault)?;
        write!(
            f,
            "timeline: load {}, fault at {}",
            secs(self.load),
            secs(self.run.fault_at)
        )?;
        if let Some(healed) = self.run.healed_at {
            write!(
                f,
                ", over at {} ({} later)",
                secs(healed),
                secs(healed.saturating_sub(self.run.fault_at))
            )?;
        }
        writeln!(f)?;
        writeln!(
            f,
            "operations: {} attempted, {} succeeded, {} failed, {} stale reads, {} wrong values",
            self.attempted,
            self.succeeded,
            self.failed_total(),
            self.stale_reads,
            self.wrong_values
        )?;
        if !self.failed.is_empty() {
            let kinds: Vec<String> = self
                .failed
                .iter()
                .map(|(kind, n)| format!("{kind} {n}"))
                .collect();
            writeln!(f, "failed by kind: {}", kinds.join(", "))?;
            for (kind, sample) in &self.error_samples {
                writeln!(f, "  e.g. {kind}: {}", shorten(sample, 200))?;
            }
        }
        write!(
            f,
            "longest window without a success: {} (from {}); back to normal {} after the fault",
            secs(self.longest_gap.0),
            secs(self.longest_gap.1),
            self.recovery.map_or("never".to_owned(), secs)
        )?;
        if let (Some(recovery), Some(healed)) = (self.recovery, self.run.healed_at) {
            let over = healed.saturating_sub(self.run.fault_at);
            if recovery >= over {
                write!(f, " ({} after it was over)", secs(recovery - over))?;
            }
        }
        writeln!(f)?;
        writeln!(
            f,
            "writes: {} acknowledged, {} durable; missing afterwards: {} durable, {} not replicated",
            self.acknowledged,
            self.durable,
            self.missing_durable.len(),
            self.missing_not_durable
        )?;
        writeln!(
            f,
            "slowest call {}; calls over their deadline ({}) + {}: {}; metrics packets {}; texts scanned for the password {}",
            secs(self.slowest),
            secs(self.run.deadline),
            secs(LATE_MARGIN),
            self.late,
            self.metrics_packets,
            self.scanned
        )?;
        for note in &self.notes {
            writeln!(f, "note: {note}")?;
        }
        for check in &self.checks {
            let mark = if check.holds { " ok " } else { "FAIL" };
            writeln!(f, "  [{mark}] {} — {}", check.invariant, check.detail)?;
        }
        Ok(())
    }
}

/// The longest stretch within `[from, to]` in which no operation matching `filter` succeeded,
/// with where it started.
pub fn longest_gap(
    records: &[OpRecord],
    filter: impl Fn(&OpRecord) -> bool,
    from: Duration,
    to: Duration,
) -> (Duration, Duration) {
    let mut ends: Vec<Duration> = records
        .iter()
        .filter(|r| r.ok() && filter(r))
        .map(OpRecord::ended)
        .filter(|&end| end >= from && end <= to)
        .collect();
    ends.sort_unstable();
    let mut longest = (Duration::ZERO, from);
    let mut previous = from;
    for end in ends.into_iter().chain([to]) {
        let gap = end.saturating_sub(previous);
        if gap > longest.0 {
            longest = (gap, previous);
        }
        previous = end;
    }
    longest
}

/// How long after `fault_at` the success rate was back to normal for good.
///
/// The load is cut into [`BUCKET`]s by when operations ended. Normal is what the buckets before
/// the fault saw (their median number of successes, the first half second left out as warm-up):
/// a bucket is normal when none of its operations failed or read stale data and it had at least
/// [`NORMAL_SHARE`] of the normal successes (so a shard whose callers are all stuck, failing or
/// not, makes its buckets abnormal). Recovery is the start of the first bucket after the fault from
/// which every full bucket to the end of the load is normal, measured from the fault; `None` when
/// the last full bucket is not normal.
pub fn recovery(records: &[OpRecord], fault_at: Duration, ended: Duration) -> Option<Duration> {
    let buckets = usize::try_from(ended.as_nanos() / BUCKET.as_nanos()).unwrap_or(0);
    if buckets == 0 {
        return None;
    }
    let mut ok = vec![0usize; buckets];
    let mut bad = vec![0usize; buckets];
    for record in records.iter().filter(|r| r.kind != OpKind::Slow) {
        let index = usize::try_from(record.ended().as_nanos() / BUCKET.as_nanos()).unwrap_or(0);
        if index >= buckets {
            continue;
        }
        if record.ok() {
            ok[index] += 1;
        } else {
            bad[index] += 1;
        }
    }
    let bucket_of = |t: Duration| usize::try_from(t.as_nanos() / BUCKET.as_nanos()).unwrap_or(0);
    let warm_up = bucket_of(Duration::from_millis(500));
    let fault = bucket_of(fault_at).min(buckets);
    let mut before: Vec<usize> = ok[warm_up.min(fault)..fault].to_vec();
    if before.is_empty() {
        before = ok[..fault].to_vec();
    }
    before.sort_unstable();
    let normal = before.get(before.len() / 2).copied().unwrap_or(0);
    let is_normal = |i: usize| bad[i] == 0 && ok[i] as f64 >= normal as f64 * NORMAL_SHARE;
    let last_abnormal = (fault..buckets).rev().find(|&i| !is_normal(i));
    match last_abnormal {
        None => Some(Duration::ZERO),
        Some(i) if i + 1 >= buckets => None,
        Some(i) => {
            let start = BUCKET * u32::try_from(i + 1).unwrap_or(u32::MAX);
            Some(start.saturating_sub(fault_at))
        }
    }
}

/// The `q` quantile (0..=1) of the durations of the successful operations matching `filter`.
pub fn quantile(records: &[OpRecord], filter: impl Fn(&OpRecord) -> bool, q: f64) -> Duration {
    let mut took: Vec<Duration> = records
        .iter()
        .filter(|r| r.ok() && filter(r))
        .map(|r| r.took)
        .collect();
    if took.is_empty() {
        return Duration::ZERO;
    }
    took.sort_unstable();
    let index = ((took.len() - 1) as f64 * q.clamp(0.0, 1.0)).round() as usize;
    took[index]
}

/// A duration in seconds with two decimals (milliseconds below a tenth of a second).
pub fn secs(duration: Duration) -> String {
    if duration < Duration::from_millis(100) {
        format!("{:.1}ms", duration.as_secs_f64() * 1000.0)
    } else {
        format!("{:.2}s", duration.as_secs_f64())
    }
}

fn sample(items: &[String]) -> String {
    match items.first() {
        Some(first) => format!("; e.g. {}", shorten(first, 160)),
        None => String::new(),
    }
}

fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let cut: String = text.chars().take(max).collect();
        format!("{cut}…")
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn op(started_ms: u64, took_ms: u64, ok: bool) -> OpRecord {
        OpRecord {
            kind: OpKind::Read,
            slot: 0,
            started: Duration::from_millis(started_ms),
            took: Duration::from_millis(took_ms),
            outcome: if ok {
                Outcome::Ok
            } else {
                Outcome::Failed(Arc::from("timeout"))
            },
        }
    }

    #[test]
    fn the_longest_gap_spans_failures_and_the_edges() {
        let records = [
            op(0, 10, true),
            op(20, 5, true),
            op(30, 1000, false),
            op(900, 100, true),
        ];
        let (gap, from) = longest_gap(&records, |_| true, Duration::ZERO, Duration::from_secs(2));
        assert_eq!(
            (gap, from),
            (Duration::from_millis(1000), Duration::from_millis(1000))
        );
        let (gap, from) = longest_gap(
            &records,
            |_| true,
            Duration::ZERO,
            Duration::from_millis(1100),
        );
        assert_eq!(
            (gap, from),
            (Duration::from_millis(975), Duration::from_millis(25))
        );
    }

    #[test]
    fn recovery_is_the_first_bucket_from_which_everything_is_normal() {
        // Ten successes every bucket for four seconds; failures from 1.0 s to 1.6 s.
        let mut records = Vec::new();
        for ms in (0..4000).step_by(25) {
            records.push(op(ms, 1, !(1000..1600).contains(&ms)));
        }
        let after = recovery(
            &records,
            Duration::from_millis(1000),
            Duration::from_secs(4),
        );
        assert_eq!(after, Some(Duration::from_millis(750)));
        // Nothing wrong after the fault: recovered at once.
        let clean: Vec<OpRecord> = (0..4000).step_by(25).map(|ms| op(ms, 1, true)).collect();
        assert_eq!(
            recovery(&clean, Duration::from_millis(1000), Duration::from_secs(4)),
            Some(Duration::ZERO)
        );
        // Failing to the end: never.
        let broken: Vec<OpRecord> = (0..4000)
            .step_by(25)
            .map(|ms| op(ms, 1, ms < 1000))
            .collect();
        assert_eq!(
            recovery(&broken, Duration::from_millis(1000), Duration::from_secs(4)),
            None
        );
    }

    #[test]
    fn quantiles_of_successes() {
        let records: Vec<OpRecord> = (1..=100).map(|ms| op(0, ms, true)).collect();
        assert_eq!(quantile(&records, |_| true, 0.5), Duration::from_millis(51));
        assert_eq!(
            quantile(&records, |_| true, 0.99),
            Duration::from_millis(99)
        );
        assert_eq!(quantile(&[], |_| true, 0.5), Duration::ZERO);
    }
}
