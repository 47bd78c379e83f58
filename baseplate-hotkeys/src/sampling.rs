//! Sampling decisions: a validated rate and a fast per-thread generator, so deciding costs no syscall and
//! no lock shared between tasks.

use std::cell::RefCell;
use std::hash::{BuildHasher as _, Hash as _, Hasher as _};

use rand::rngs::{SmallRng, SysRng};
use rand::{Rng as _, SeedableRng as _};

use crate::TrackerError;

/// A sampling probability in `0..=1`: 0 never samples, 1 always does.
///
/// A rate strictly between 0 and 1 draws one `u64` from the calling thread's generator per decision;
/// 0 and 1 decide without drawing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SampleRate {
    rate: f64,
    /// Sampled iff a uniform `u64` draw is below this (for rates strictly between 0 and 1).
    threshold: u64,
}

impl SampleRate {
    /// Never samples.
    pub const NEVER: Self = Self {
        rate: 0.0,
        threshold: 0,
    };

    /// Always samples.
    pub const ALWAYS: Self = Self {
        rate: 1.0,
        threshold: u64::MAX,
    };

    /// A rate; `option` names it in the error.
    ///
    /// # Errors
    /// [`TrackerError::SampleRate`] when `rate` is not within `0..=1` (NaN included).
    ///
    /// # Examples
    /// ```
    /// use baseplate_hotkeys::SampleRate;
    ///
    /// assert_eq!(SampleRate::new("reads_sample_rate", 0.25).unwrap().get(), 0.25);
    /// assert!(SampleRate::new("reads_sample_rate", 1.5).is_err());
    /// ```
    pub fn new(option: &'static str, rate: f64) -> Result<Self, TrackerError> {
        if !(0.0..=1.0).contains(&rate) {
            return Err(TrackerError::SampleRate {
                option,
                value: rate,
            });
        }
        if rate == 0.0 {
            return Ok(Self::NEVER);
        }
        if rate == 1.0 {
            return Ok(Self::ALWAYS);
        }
        // `as` saturates, and `rate < 1` keeps the product below 2^64.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let threshold = (rate * 18_446_744_073_709_551_616.0) as u64;
        Ok(Self { rate, threshold })
    }

    /// The probability.
    pub fn get(&self) -> f64 {
        self.rate
    }

    /// Whether this rate can ever sample.
    pub fn is_enabled(&self) -> bool {
        self.rate > 0.0
    }

    /// Decides with the calling thread's generator.
    ///
    /// # Examples
    /// ```
    /// use baseplate_hotkeys::SampleRate;
    ///
    /// assert!(SampleRate::ALWAYS.sample());
    /// assert!(!SampleRate::NEVER.sample());
    /// ```
    pub fn sample(&self) -> bool {
        if self.rate <= 0.0 {
            false
        } else if self.rate >= 1.0 {
            true
        } else {
            self.sample_from(thread_draw())
        }
    }

    /// Decides from a uniformly random `draw`: sampled iff `draw` falls in the lowest `rate` fraction of
    /// `u64`s. Lets tests and measurements replay the tracker's decisions.
    ///
    /// # Examples
    /// ```
    /// use baseplate_hotkeys::SampleRate;
    ///
    /// let half = SampleRate::new("reads_sample_rate", 0.5).unwrap();
    /// assert!(half.sample_from(0));
    /// assert!(!half.sample_from(u64::MAX));
    /// ```
    pub fn sample_from(&self, draw: u64) -> bool {
        if self.rate <= 0.0 {
            false
        } else if self.rate >= 1.0 {
            true
        } else {
            draw < self.threshold
        }
    }
}

impl Default for SampleRate {
    fn default() -> Self {
        Self::NEVER
    }
}

/// Reseeds the calling thread's sampling generator with `SmallRng::seed_from_u64(seed)` (rand 0.10), so
/// the next decisions on this thread are reproducible.
///
/// Not part of the API: it is there for this crate's tests and its `measure` example, which replay
/// the decisions with the same generator and [`SampleRate::sample_from`]. Normally each thread seeds
/// its generator once from the OS on first use.
#[doc(hidden)]
pub fn seed_thread_rng(seed: u64) {
    // During thread teardown the generator is gone; there is nothing to seed then.
    let _ = THREAD_RNG.try_with(|rng| *rng.borrow_mut() = Some(SmallRng::seed_from_u64(seed)));
}

thread_local! {
    static THREAD_RNG: RefCell<Option<SmallRng>> = const { RefCell::new(None) };
}

/// One uniform draw from this thread's generator, seeded on first use.
pub(crate) fn thread_draw() -> u64 {
    THREAD_RNG
        .try_with(|rng| {
            let mut rng = rng.borrow_mut();
            rng.get_or_insert_with(fresh_rng).next_u64()
        })
        // A thread being torn down samples nothing rather than panicking.
        .unwrap_or(u64::MAX)
}

/// A generator seeded from the OS, or, if the OS has no entropy to give, from the clock, the thread and a
/// per-process random hash key: sampling needs spread, not secrecy.
pub(crate) fn fresh_rng() -> SmallRng {
    SmallRng::try_from_rng(&mut SysRng).unwrap_or_else(|_| {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default(),
        );
        std::thread::current().id().hash(&mut hasher);
        SmallRng::seed_from_u64(hasher.finish())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count_sampled(rate: f64, seed: u64, n: u32) -> u32 {
        let rate = SampleRate::new("reads_sample_rate", rate).unwrap();
        let mut rng = SmallRng::seed_from_u64(seed);
        (0..n)
            .map(|_| u32::from(rate.sample_from(rng.next_u64())))
            .sum()
    }

    #[test]
    fn rates_sample_their_fraction_within_five_sigma() {
        let n = 1_000_000_u32;
        for rate in [0.001, 0.01, 0.1, 0.5, 0.9] {
            let got = f64::from(count_sampled(rate, 42, n));
            let expected = rate * f64::from(n);
            let sigma = (f64::from(n) * rate * (1.0 - rate)).sqrt();
            assert!(
                (got - expected).abs() < 5.0 * sigma,
                "rate {rate}: {got} sampled, expected {expected} ± {}",
                5.0 * sigma
            );
        }
    }

    #[test]
    fn zero_never_and_one_always_samples() {
        assert_eq!(count_sampled(0.0, 1, 100_000), 0);
        assert_eq!(count_sampled(1.0, 1, 100_000), 100_000);
        assert!(!SampleRate::NEVER.sample_from(0));
        assert!(SampleRate::ALWAYS.sample_from(u64::MAX));
        assert!(!SampleRate::default().sample());
    }

    #[test]
    fn out_of_range_rates_are_rejected_naming_the_option() {
        for bad in [-0.1, 1.000_001, f64::NAN, f64::INFINITY] {
            let err = SampleRate::new("writes_sample_rate", bad).unwrap_err();
            assert!(
                err.to_string()
                    .starts_with("writes_sample_rate must be between 0 and 1"),
                "{err}"
            );
        }
        assert!(SampleRate::new("reads_sample_rate", 0.0).is_ok());
        assert!(SampleRate::new("reads_sample_rate", 1.0).is_ok());
    }

    #[test]
    fn the_thread_generator_replays_after_seeding() {
        let rate = SampleRate::new("reads_sample_rate", 0.3).unwrap();
        seed_thread_rng(99);
        let decided: Vec<bool> = (0..1000).map(|_| rate.sample()).collect();
        let mut shadow = SmallRng::seed_from_u64(99);
        let replayed: Vec<bool> = (0..1000)
            .map(|_| rate.sample_from(shadow.next_u64()))
            .collect();
        assert_eq!(decided, replayed);
        let sampled = decided.iter().filter(|s| **s).count();
        assert!((200..400).contains(&sampled), "{sampled}");
    }

    #[test]
    fn separate_threads_get_differently_seeded_generators() {
        let rate = SampleRate::new("reads_sample_rate", 0.5).unwrap();
        let run = move || (0..128).map(|_| rate.sample()).collect::<Vec<_>>();
        let a = std::thread::spawn(run).join().unwrap();
        let b = std::thread::spawn(run).join().unwrap();
        assert_ne!(a, b);
    }
}
