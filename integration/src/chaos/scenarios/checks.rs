//! The counts and checks several scenarios make of the load's records and the report.

use crate::chaos::load::{OpRecord, Outcome};
use crate::chaos::report::Report;

/// Failed non-slow operations matching `on` and not matching it.
pub(super) fn split_failures(
    records: &[OpRecord],
    on: impl Fn(&OpRecord) -> bool,
) -> (usize, usize) {
    let on_count = failures(records, &on);
    (on_count, failures(records, |_| true) - on_count)
}

/// Operations the client failed (an error, not a stale read) that match `filter`.
pub(super) fn failures(records: &[OpRecord], filter: impl Fn(&OpRecord) -> bool) -> usize {
    records
        .iter()
        .filter(|r| matches!(r.outcome, Outcome::Failed(_)) && filter(r))
        .count()
}

/// Where Redis promises it, a read of a write a replica confirmed finds it, whichever node serves
/// the read.
pub(super) fn no_stale_reads(report: &mut Report) {
    let stale = report.stale_reads;
    report.check(
        "no read of a durable write comes back empty",
        stale == 0,
        format!("{stale} stale reads"),
    );
}
