//! What a tracker is configured with: its mode, sample rates and bounds.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

use crate::TrackerError;
use crate::sampling::SampleRate;

/// The TTL the tracker gives both sets on every write, as baseplate.py does: 24 hours.
pub const SET_TTL_SECONDS: u64 = 86_400;

/// How the tracker records sampled keys.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum TrackKeyMode {
    /// Count sampled keys locally in a bounded summary and write the interval's top keys in one pipeline
    /// per set every `flush_interval`: the tracker's write load no longer grows with traffic.
    #[default]
    Aggregated,
    /// baseplate.py's behaviour: one `ZINCRBY <set> 1 <key>` per key plus `EXPIRE` per sampled command,
    /// sent in the background rather than on the request path.
    Direct,
}

/// How a [`HotKeyTracker`](crate::HotKeyTracker) samples and writes. Start from [`TrackerOptions::default`] and use the
/// `with_*` methods.
///
/// # Examples
/// ```
/// use std::time::Duration;
/// use baseplate_hotkeys::{TrackKeyMode, TrackerOptions};
///
/// let options = TrackerOptions::default()
///     .with_reads_sample_rate(0.01)
///     .with_mode(TrackKeyMode::Direct)
///     .with_flush_interval(Duration::from_secs(5));
/// assert!(options.validate().is_ok());
/// assert_eq!(options.max_keys, 10_000);
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct TrackerOptions {
    /// Probability that a command reading keys is sampled (baseplate's `track_key_reads_sample_rate`);
    /// 0 (the default) disables read tracking.
    pub reads_sample_rate: f64,
    /// Probability that a command writing keys is sampled (`track_key_writes_sample_rate`); 0 (the
    /// default) disables write tracking.
    pub writes_sample_rate: f64,
    /// Aggregated (the default) or direct.
    pub mode: TrackKeyMode,
    /// How often aggregated counts are written, jittered by ±10% so many processes do not write at the
    /// same instant; also the longest a tracker write may take before it counts as failed. 10 s.
    pub flush_interval: Duration,
    /// The most members either set keeps (`ZREMRANGEBYRANK` trims the rest after each aggregated
    /// flush), and the most keys one flush writes. 10000.
    pub max_keys: usize,
    /// Sampled commands waiting for the background writer, which takes them every 50 ms; when full, new
    /// samples are dropped and counted in [`TrackerStats::dropped`](crate::TrackerStats::dropped). 4096.
    pub queue_capacity: usize,
    /// Keys each aggregated summary (one per set) monitors per interval. 1024.
    pub summary_capacity: usize,
    /// The most keys one aggregated flush writes per set: the interval's top keys by count. The
    /// summary monitors more keys than it writes so that the top ones are counted exactly; the rest
    /// are its noise floor. This bounds the tracker's writes at `flush_keys + 2` commands per set
    /// per interval, whatever the traffic: at 1% sampling, under 1% of what direct mode sends once a
    /// set sees more than about 340,000 commands per interval. 32.
    pub flush_keys: usize,
    /// How many of the process's hottest read keys the tracker finds and publishes for
    /// [`HotKeyTracker::is_hot_read`](crate::HotKeyTracker::is_hot_read); 0 (the default) finds none.
    /// Found locally, from single-key reads sampled at
    /// [`hot_reads_sample_rate`](Self::hot_reads_sample_rate), whatever the sets' rates are:
    /// finding them sends nothing to Redis.
    pub hot_reads: usize,
    /// Probability that a single-key read is counted towards finding the hot reads (a read sampled
    /// for the reads set always is). 0.25: enough samples that the thousandth hottest key of a
    /// busy client is found, at the cost of one small allocation per sampled read.
    pub hot_reads_sample_rate: f64,
}

impl Default for TrackerOptions {
    fn default() -> Self {
        Self {
            reads_sample_rate: 0.0,
            writes_sample_rate: 0.0,
            mode: TrackKeyMode::default(),
            flush_interval: Duration::from_secs(10),
            max_keys: 10_000,
            queue_capacity: 4096,
            summary_capacity: 1024,
            flush_keys: 32,
            hot_reads: 0,
            hot_reads_sample_rate: 0.25,
        }
    }
}

impl TrackerOptions {
    /// Sets [`reads_sample_rate`](Self::reads_sample_rate).
    #[must_use]
    pub fn with_reads_sample_rate(mut self, rate: f64) -> Self {
        self.reads_sample_rate = rate;
        self
    }

    /// Sets [`writes_sample_rate`](Self::writes_sample_rate).
    #[must_use]
    pub fn with_writes_sample_rate(mut self, rate: f64) -> Self {
        self.writes_sample_rate = rate;
        self
    }

    /// Sets [`mode`](Self::mode).
    #[must_use]
    pub fn with_mode(mut self, mode: TrackKeyMode) -> Self {
        self.mode = mode;
        self
    }

    /// Sets [`flush_interval`](Self::flush_interval).
    #[must_use]
    pub fn with_flush_interval(mut self, interval: Duration) -> Self {
        self.flush_interval = interval;
        self
    }

    /// Sets [`max_keys`](Self::max_keys).
    #[must_use]
    pub fn with_max_keys(mut self, max_keys: usize) -> Self {
        self.max_keys = max_keys;
        self
    }

    /// Sets [`queue_capacity`](Self::queue_capacity).
    #[must_use]
    pub fn with_queue_capacity(mut self, capacity: usize) -> Self {
        self.queue_capacity = capacity;
        self
    }

    /// Sets [`summary_capacity`](Self::summary_capacity).
    #[must_use]
    pub fn with_summary_capacity(mut self, capacity: usize) -> Self {
        self.summary_capacity = capacity;
        self
    }

    /// Sets [`flush_keys`](Self::flush_keys).
    #[must_use]
    pub fn with_flush_keys(mut self, keys: usize) -> Self {
        self.flush_keys = keys;
        self
    }

    /// Sets [`hot_reads`](Self::hot_reads).
    #[must_use]
    pub fn with_hot_reads(mut self, keys: usize) -> Self {
        self.hot_reads = keys;
        self
    }

    /// Sets [`hot_reads_sample_rate`](Self::hot_reads_sample_rate).
    #[must_use]
    pub fn with_hot_reads_sample_rate(mut self, rate: f64) -> Self {
        self.hot_reads_sample_rate = rate;
        self
    }

    /// Whether the tracker has anything to do: a set to write or hot reads to find.
    pub fn is_enabled(&self) -> bool {
        self.reads_sample_rate > 0.0 || self.writes_sample_rate > 0.0 || self.hot_reads > 0
    }

    /// Checks every option, as [`HotKeyTracker::start`](crate::HotKeyTracker::start) does.
    ///
    /// # Errors
    /// [`TrackerError::SampleRate`] for a rate outside `0..=1`, [`TrackerError::Zero`] for a zero
    /// `flush_interval`, `max_keys`, `queue_capacity`, `summary_capacity` or `flush_keys`.
    ///
    /// # Examples
    /// ```
    /// use baseplate_hotkeys::TrackerOptions;
    ///
    /// let err = TrackerOptions::default().with_writes_sample_rate(2.0).validate().unwrap_err();
    /// assert_eq!(err.to_string(), "writes_sample_rate must be between 0 and 1, got 2");
    /// ```
    pub fn validate(&self) -> Result<(), TrackerError> {
        SampleRate::new("reads_sample_rate", self.reads_sample_rate)?;
        SampleRate::new("writes_sample_rate", self.writes_sample_rate)?;
        SampleRate::new("hot_reads_sample_rate", self.hot_reads_sample_rate)?;
        let zero = [
            ("flush_interval", self.flush_interval.is_zero()),
            ("max_keys", self.max_keys == 0),
            ("queue_capacity", self.queue_capacity == 0),
            ("summary_capacity", self.summary_capacity == 0),
            ("flush_keys", self.flush_keys == 0),
        ];
        match zero.into_iter().find(|(_, is_zero)| *is_zero) {
            Some((option, _)) => Err(TrackerError::Zero { option }),
            None => Ok(()),
        }
    }
}

impl TrackKeyMode {
    /// The mode's name as configured: `aggregated` or `direct`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Aggregated => "aggregated",
            Self::Direct => "direct",
        }
    }
}

impl fmt::Display for TrackKeyMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Parses `aggregated` or `direct`, ignoring ASCII case.
///
/// # Examples
/// ```
/// use baseplate_hotkeys::TrackKeyMode;
///
/// assert_eq!("direct".parse::<TrackKeyMode>().unwrap(), TrackKeyMode::Direct);
/// assert!("hybrid".parse::<TrackKeyMode>().is_err());
/// ```
impl FromStr for TrackKeyMode {
    type Err = TrackerError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Self::Aggregated, Self::Direct]
            .into_iter()
            .find(|mode| mode.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| TrackerError::UnknownMode {
                value: s.to_owned(),
            })
    }
}

impl<'de> Deserialize<'de> for TrackKeyMode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}
