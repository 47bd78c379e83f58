//! `WarnLimiter`: a failing background task warns at most once per interval.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Lets one warning through per interval and counts the ones it holds back, for background work
/// whose failures would otherwise log a line per attempt.
///
/// The caller asks [`check`](Self::check) with the time of each failure and writes the warning
/// itself when let through, with the number held back since the last one. The time is passed in
/// so that the caller picks the clock (tokio's, which tests may pause, or the system's).
///
/// ```
/// use std::time::{Duration, Instant};
/// use baseplate_background::WarnLimiter;
///
/// let limiter = WarnLimiter::new(Duration::from_secs(10));
/// let start = Instant::now();
/// let mut logged = Vec::new();
/// for second in [0, 1, 2, 12, 13] {
///     if let Some(held_back) = limiter.check(start + Duration::from_secs(second)) {
///         logged.push((second, held_back));
///     }
/// }
/// assert_eq!(logged, [(0, 0), (12, 2)]);
/// assert_eq!(limiter.held_back(), 1);
/// ```
#[derive(Debug)]
pub struct WarnLimiter {
    interval: Duration,
    last: Mutex<Option<Instant>>,
    held_back: AtomicU64,
}

impl WarnLimiter {
    /// A limiter letting one warning through per `interval` (every warning when it is zero).
    #[must_use]
    pub const fn new(interval: Duration) -> Self {
        Self {
            interval,
            last: Mutex::new(None),
            held_back: AtomicU64::new(0),
        }
    }

    /// Whether to warn of a failure at `now`: `Some(warnings held back since the last one)` when
    /// the interval has passed since the last warning let through (or there was none), else `None`,
    /// and this one is counted as held back. A `now` earlier than the last warning counts as no
    /// time passed.
    pub fn check(&self, now: Instant) -> Option<u64> {
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        match *last {
            Some(previous) if now.saturating_duration_since(previous) < self.interval => {
                self.held_back.fetch_add(1, Ordering::Relaxed);
                None
            }
            _ => {
                *last = Some(now);
                Some(self.held_back.swap(0, Ordering::Relaxed))
            }
        }
    }

    /// The warnings held back since the last one let through.
    #[must_use]
    pub fn held_back(&self) -> u64 {
        self.held_back.load(Ordering::Relaxed)
    }

    /// The interval between two warnings let through.
    #[must_use]
    pub fn interval(&self) -> Duration {
        self.interval
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warnings_are_let_through_once_per_interval() {
        let limiter = WarnLimiter::new(Duration::from_secs(10));
        let start = Instant::now();
        assert_eq!(limiter.check(start), Some(0));
        assert_eq!(limiter.check(start + Duration::from_secs(1)), None);
        assert_eq!(limiter.check(start + Duration::from_millis(9_999)), None);
        assert_eq!(limiter.held_back(), 2);
        assert_eq!(limiter.check(start + Duration::from_secs(10)), Some(2));
        assert_eq!(limiter.held_back(), 0);
        assert_eq!(limiter.check(start + Duration::from_secs(11)), None);
        assert_eq!(limiter.check(start + Duration::from_secs(25)), Some(1));
    }

    #[test]
    fn the_interval_counts_from_the_last_warning_let_through() {
        let limiter = WarnLimiter::new(Duration::from_secs(10));
        let start = Instant::now();
        // A failure every 6 s: the ones held back do not move the window.
        let answers: Vec<Option<u64>> = (0..5)
            .map(|i| limiter.check(start + Duration::from_secs(6 * i)))
            .collect();
        assert_eq!(answers, [Some(0), None, Some(1), None, Some(1)]);
    }

    #[test]
    fn a_zero_interval_lets_every_warning_through() {
        let limiter = WarnLimiter::new(Duration::ZERO);
        let now = Instant::now();
        assert_eq!(limiter.check(now), Some(0));
        assert_eq!(limiter.check(now), Some(0));
        assert_eq!(limiter.held_back(), 0);
    }

    #[test]
    fn a_time_before_the_last_warning_is_within_the_interval() {
        let limiter = WarnLimiter::new(Duration::from_secs(10));
        let start = Instant::now();
        let later = start + Duration::from_secs(100);
        assert_eq!(limiter.check(later), Some(0));
        assert_eq!(limiter.check(start), None);
        assert_eq!(limiter.interval(), Duration::from_secs(10));
    }
}
