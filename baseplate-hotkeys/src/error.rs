//! The errors of this crate: invalid tracker options and a tracker started outside a tokio runtime.

/// Why a [`HotKeyTracker`](crate::HotKeyTracker) could not be started, or an option could not be parsed.
///
/// Failures of the tracker's own writes to Redis are not errors a caller ever sees: they are counted in
/// [`TrackerStats::failures`](crate::TrackerStats::failures) and logged, so a broken tracker never breaks a
/// request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrackerError {
    /// A sample rate outside `0..=1` (or not a number).
    #[error("{option} must be between 0 and 1, got {value}")]
    SampleRate {
        /// The option's name: `reads_sample_rate`, `writes_sample_rate` or `hot_reads_sample_rate`.
        option: &'static str,
        /// The rejected value.
        value: f64,
    },
    /// An option that must be greater than zero was zero.
    #[error("{option} must be greater than zero")]
    Zero {
        /// The option's name, e.g. `queue_capacity`.
        option: &'static str,
    },
    /// A tracking mode other than `aggregated` or `direct`.
    #[error("unknown hot-key tracking mode {value:?}, expected \"aggregated\" or \"direct\"")]
    UnknownMode {
        /// The rejected text.
        value: String,
    },
    /// [`HotKeyTracker::start`](crate::HotKeyTracker::start) was called outside a tokio runtime, so there
    /// is nowhere to run the background writer.
    #[error("the hot-key tracker needs a tokio runtime to run its background writer")]
    NoRuntime(#[source] tokio::runtime::TryCurrentError),
}
