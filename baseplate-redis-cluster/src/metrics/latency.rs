//! `redis_client_latency_seconds`'s histogram, recorded without a lock shared by every thread.
//!
//! `prometheus_client`'s `Histogram` takes one lock per observation, so every command of every
//! thread of a process writes the same lock and counters (one of the writes that make a cached
//! read's request cost more than twice the CPU when two cores run such requests as when one does:
//! `bench hit-cost`). Here each thread records into a stripe of its own (threads beyond the
//! stripes share them), each on cache lines of its own, and a scrape sums the stripes. The count
//! is the sum of the buckets, so `_count` and the `+Inf` bucket always agree; a scrape racing an
//! observation may see its bucket and not yet its sum, or the reverse.

use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

use super::LATENCY_BUCKETS;

/// Buckets per stripe: one per bound, and `+Inf`.
const BUCKETS: usize = LATENCY_BUCKETS.len() + 1;

/// The most stripes a histogram has: past this many cores, threads share stripes.
const MAX_STRIPES: usize = 16;

/// A latency histogram with [`LATENCY_BUCKETS`]; clones share the observations.
#[derive(Clone, Debug)]
pub(crate) struct LatencyHistogram {
    stripes: Arc<[Stripe]>,
}

/// One thread's share of the observations, alone on its cache lines.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Stripe {
    /// Observations per bucket (not cumulative).
    buckets: [AtomicU64; BUCKETS],
    /// The sum of the observations, an `f64`'s bits.
    sum: AtomicU64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self {
            stripes: (0..stripes()).map(|_| Stripe::default()).collect(),
        }
    }
}

impl LatencyHistogram {
    /// Records one observation, in seconds.
    pub(crate) fn observe(&self, seconds: f64) {
        let stripe = &self.stripes[this_thread() % self.stripes.len()];
        // NaN counts in `+Inf`, as in `prometheus_client`.
        let bucket = LATENCY_BUCKETS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(BUCKETS - 1);
        stripe.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        // Contended only by threads sharing the stripe.
        let _ = stripe
            .sum
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + seconds).to_bits())
            });
    }

    /// The sum, the count and each bucket's observations (not cumulative), over every stripe.
    fn snapshot(&self) -> (f64, u64, [(f64, u64); BUCKETS]) {
        let mut buckets = [(f64::INFINITY, 0); BUCKETS];
        for (bucket, bound) in buckets.iter_mut().zip(LATENCY_BUCKETS) {
            bucket.0 = bound;
        }
        let mut sum = 0.0;
        for stripe in self.stripes.iter() {
            for (bucket, count) in buckets.iter_mut().zip(&stripe.buckets) {
                bucket.1 += count.load(Ordering::Relaxed);
            }
            sum += f64::from_bits(stripe.sum.load(Ordering::Relaxed));
        }
        let count = buckets.iter().map(|(_, count)| count).sum();
        (sum, count, buckets)
    }
}

impl TypedMetric for LatencyHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for LatencyHistogram {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        let (sum, count, buckets) = self.snapshot();
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// Stripes per histogram: one per core this process may run on, at most [`MAX_STRIPES`].
fn stripes() -> usize {
    static STRIPES: OnceLock<usize> = OnceLock::new();
    *STRIPES.get_or_init(|| {
        std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_STRIPES))
    })
}

/// This thread's number, given in the order threads first record.
fn this_thread() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static THIS: usize = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    THIS.with(|this| *this)
}

#[cfg(test)]
mod tests {
    use prometheus_client::encoding::text::encode;
    use prometheus_client::metrics::histogram::Histogram;
    use prometheus_client::registry::Registry;

    use super::*;

    fn text(metric: impl EncodeMetric + Send + Sync + std::fmt::Debug + 'static) -> String {
        let mut registry = Registry::default();
        registry.register("latency", "Latency", metric);
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        text
    }

    #[test]
    fn reads_as_prometheus_clients_histogram_with_the_same_observations() {
        let ours = LatencyHistogram::default();
        let theirs = Histogram::new(LATENCY_BUCKETS);
        // On and between bounds, beyond the last, zero and NaN, from several threads.
        let values = [
            0.0,
            0.0001,
            0.00011,
            0.003,
            0.5,
            1.0,
            29.0,
            30.0,
            31.0,
            f64::NAN,
        ];
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for v in values.iter().filter(|v| !v.is_nan()) {
                        ours.observe(*v);
                        theirs.observe(*v);
                    }
                });
            }
        });
        ours.observe(f64::NAN);
        theirs.observe(f64::NAN);
        // The sums are NaN in both; everything else is the same text.
        let (ours, theirs) = (text(ours), text(theirs));
        assert!(ours.contains("latency_count 37\n"), "{ours}");
        assert!(ours.contains("latency_bucket{le=\"0.0001\"} 8\n"), "{ours}");
        assert!(ours.contains("latency_bucket{le=\"+Inf\"} 37\n"), "{ours}");
        assert_eq!(ours, theirs);
    }

    #[test]
    fn the_sum_adds_every_threads_observations() {
        let ours = LatencyHistogram::default();
        std::thread::scope(|scope| {
            for _ in 0..8 {
                scope.spawn(|| {
                    for _ in 0..1000 {
                        ours.observe(0.25);
                    }
                });
            }
        });
        let (sum, count, buckets) = ours.snapshot();
        assert_eq!((sum, count), (2000.0, 8000));
        let quarter = LATENCY_BUCKETS.iter().position(|b| *b == 0.25).unwrap();
        assert_eq!(buckets[quarter], (0.25, 8000));
    }
}
