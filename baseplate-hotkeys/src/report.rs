//! The top-keys report: fetched from both sets, rendered as text with bars (the
//! `baseplate-hotkeys` command, in the `baseplate-hotkeys-cli` crate, also renders it as JSON).
//!
//! Rendering is pure (figures in, string out) so demos and tests can reuse it without a cluster.

use std::fmt::Write as _;

use crate::query::{TrackedSet, top_keys};

/// The top keys of both sets with their scores, highest first, as [`top_keys`] returns them.
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub struct Report {
    /// Top keys of `baseplate-hot-key-tracker-reads`.
    pub reads: Vec<(Vec<u8>, f64)>,
    /// Top keys of `baseplate-hot-key-tracker-writes`.
    pub writes: Vec<(Vec<u8>, f64)>,
}

impl Report {
    /// A report from figures already at hand.
    ///
    /// # Examples
    /// ```
    /// let report = baseplate_hotkeys::report::Report::new(vec![(b"a".to_vec(), 3.0)], vec![]);
    /// assert_eq!(report.reads.len(), 1);
    /// ```
    pub fn new(reads: Vec<(Vec<u8>, f64)>, writes: Vec<(Vec<u8>, f64)>) -> Self {
        Self { reads, writes }
    }

    /// The entries of one set.
    pub fn entries(&self, set: TrackedSet) -> &[(Vec<u8>, f64)] {
        match set {
            TrackedSet::Reads => &self.reads,
            TrackedSet::Writes => &self.writes,
        }
    }

    /// The sum of one set's listed scores, `0.0` when it lists none: what shares are shares of.
    ///
    /// # Examples
    /// ```
    /// use baseplate_hotkeys::TrackedSet;
    /// use baseplate_hotkeys::report::{Report, share};
    ///
    /// let report = Report::new(vec![(b"a".to_vec(), 3.0), (b"b".to_vec(), 1.0)], vec![]);
    /// assert_eq!(report.total(TrackedSet::Reads), 4.0);
    /// assert_eq!(share(3.0, report.total(TrackedSet::Reads)), 0.75);
    /// assert_eq!(report.total(TrackedSet::Writes), 0.0);
    /// assert_eq!(share(0.0, 0.0), 0.0);
    /// ```
    pub fn total(&self, set: TrackedSet) -> f64 {
        total(self.entries(set))
    }
}

/// Queries the `limit` top keys of both sets.
///
/// # Errors
/// The first Redis error of the two queries.
///
/// # Examples
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let mut conn = redis::cluster::ClusterClient::new(vec!["redis://127.0.0.1:7000"])?
///     .get_async_connection()
///     .await?;
/// let report = baseplate_hotkeys::report::fetch_report(&mut conn, 10).await?;
/// print!("{}", baseplate_hotkeys::report::render_text(&report));
/// # Ok(())
/// # }
/// ```
pub async fn fetch_report<C: redis::aio::ConnectionLike>(
    conn: &mut C,
    limit: usize,
) -> redis::RedisResult<Report> {
    let reads = top_keys(conn, TrackedSet::Reads, limit).await?;
    let writes = top_keys(conn, TrackedSet::Writes, limit).await?;
    Ok(Report { reads, writes })
}

/// Width of a bar for a key holding the whole listed total.
const BAR_WIDTH: usize = 30;

/// Renders the report as text: per set, a header, then rank, score, share of the listed total, a bar
/// proportional to the share (so skew shows at a glance) and the key, escaped with [`escape_key`].
///
/// # Examples
/// ```
/// use baseplate_hotkeys::report::{Report, render_text};
///
/// let report = Report::new(vec![(b"user:1".to_vec(), 3.0), (b"user:2".to_vec(), 1.0)], vec![]);
/// assert_eq!(
///     render_text(&report),
///     "reads (baseplate-hot-key-tracker-reads): top 2 keys, 4 sampled hits listed\n\
///      rank  score   share  bar                             key\n   \
///         1      3   75.0%  #######################         user:1\n   \
///         2      1   25.0%  ########                        user:2\n\
///      \n\
///      writes (baseplate-hot-key-tracker-writes): no keys tracked\n",
/// );
/// ```
pub fn render_text(report: &Report) -> String {
    let mut out = String::new();
    for (i, set) in TrackedSet::ALL.into_iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        render_set(&mut out, set, report.entries(set));
    }
    out
}

fn render_set(out: &mut String, set: TrackedSet, entries: &[(Vec<u8>, f64)]) {
    if entries.is_empty() {
        let _ = writeln!(out, "{} ({}): no keys tracked", set.name(), set.key());
        return;
    }
    let total = total(entries);
    let plural = if entries.len() == 1 { "" } else { "s" };
    let _ = writeln!(
        out,
        "{} ({}): top {} key{plural}, {} sampled hits listed",
        set.name(),
        set.key(),
        entries.len(),
        format_score(total),
    );
    let scores: Vec<String> = entries.iter().map(|(_, s)| format_score(*s)).collect();
    let rank_width = entries.len().to_string().len().max("rank".len());
    let score_width = scores
        .iter()
        .map(String::len)
        .max()
        .unwrap_or(0)
        .max("score".len());
    let _ = writeln!(
        out,
        "{:>rank_width$}  {:>score_width$}  {:>6}  {:<BAR_WIDTH$}  key",
        "rank", "score", "share", "bar"
    );
    for (rank, ((key, score), score_text)) in entries.iter().zip(&scores).enumerate() {
        let share = share(*score, total);
        let _ = writeln!(
            out,
            "{:>rank_width$}  {score_text:>score_width$}  {:>5.1}%  {:<BAR_WIDTH$}  {}",
            rank + 1,
            share * 100.0,
            bar(share),
            escape_key(key),
        );
    }
}

/// A key made printable: valid UTF-8 is shown as is, except control and invisible formatting characters
/// (`\x0a`, `\u{202e}`); bytes that are not UTF-8 become `\xNN`; a backslash becomes `\\`, so the output
/// is unambiguous.
///
/// # Examples
/// ```
/// use baseplate_hotkeys::report::escape_key;
///
/// assert_eq!(escape_key(b"user:42"), "user:42");
/// assert_eq!(escape_key("café".as_bytes()), "café");
/// assert_eq!(escape_key(b"\xff\x00a\\b\n"), r"\xff\x00a\\b\x0a");
/// ```
pub fn escape_key(key: &[u8]) -> String {
    let mut out = String::with_capacity(key.len());
    for chunk in key.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                c if c.is_ascii_control() => {
                    let _ = write!(out, "\\x{:02x}", u32::from(c));
                }
                c if c.is_control() || is_invisible(c) => {
                    let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
                }
                c => out.push(c),
            }
        }
        for byte in chunk.invalid() {
            let _ = write!(out, "\\x{byte:02x}");
        }
    }
    out
}

/// Characters that print as nothing or reorder the text around them, so a key containing them could pass
/// for another key in a terminal.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00ad}'
            | '\u{200b}'..='\u{200f}'
            | '\u{2028}'..='\u{202e}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{2069}'
            | '\u{feff}'
    )
}

/// The sum of the scores; `0.0` (not `Sum`'s `-0.0`) when there are none.
fn total(entries: &[(Vec<u8>, f64)]) -> f64 {
    entries.iter().fold(0.0, |sum, (_, score)| sum + score)
}

/// The share of `score` in `total` (0..=1 for scores of the total); `0.0` when `total` is not
/// positive. See [`Report::total`].
pub fn share(score: f64, total: f64) -> f64 {
    if total > 0.0 { score / total } else { 0.0 }
}

fn bar(share: f64) -> String {
    // The float-to-int `as` saturates, and share is within 0..=1 for non-negative scores.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let width = (share * BAR_WIDTH as f64)
        .round()
        .clamp(0.0, BAR_WIDTH as f64) as usize;
    let width = if share > 0.0 { width.max(1) } else { width };
    "#".repeat(width)
}

/// Scores are sampled hits, so whole numbers print without a fraction.
fn format_score(score: f64) -> String {
    if score.fract() == 0.0 && score.abs() < 1e15 {
        format!("{score:.0}")
    } else {
        format!("{score}")
    }
}

#[cfg(test)]
mod tests;
