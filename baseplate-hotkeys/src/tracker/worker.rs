//! The tracker's background writer: drains the sampled keys, counts them (aggregated mode) or
//! writes them as they come (direct mode), and sends its pipelines without ever failing a caller.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use baseplate_background::WarnLimiter;
use rand::RngExt as _;
use rand::rngs::SmallRng;
use redis::{Pipeline, RedisError};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::hot::{HotReads, HotSet, PUBLISH_INTERVAL};
use super::{Destination, SET_TTL_SECONDS, TrackKeyMode, TrackerOptions, TrackerStats};
use crate::query::TrackedSet;
use crate::sampling::fresh_rng;
use crate::summary::SpaceSaving;

#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) sampled: AtomicU64,
    pub(super) dropped: AtomicU64,
    commands_sent: AtomicU64,
    round_trips: AtomicU64,
    failures: AtomicU64,
}

impl Counters {
    pub(super) fn snapshot(&self) -> TrackerStats {
        TrackerStats {
            sampled: self.sampled.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            commands_sent: self.commands_sent.load(Ordering::Relaxed),
            round_trips: self.round_trips.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
        }
    }

    fn sent(&self, commands: usize) {
        self.commands_sent.fetch_add(
            u64::try_from(commands).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        self.round_trips.fetch_add(1, Ordering::Relaxed);
    }
}

/// The two ways to the background writer. Samples go through a bounded queue the writer drains on a
/// timer, so `try_send` never has a waiting task to wake (a wake-up costs a syscall); flushes and
/// shutdowns go through a second channel the writer waits on.
pub(super) struct Channels {
    pub(super) samples: mpsc::Sender<Sample>,
    pub(super) control: mpsc::Sender<Control>,
}

/// The distinct keys of one sampled command, for one set, the hot-read finder, or both.
pub(super) struct Sample {
    pub(super) set: TrackedSet,
    pub(super) to: Destination,
    pub(super) keys: SampledKeys,
}

/// A sampled command's distinct keys. Most sampled commands name one key, which travels in one
/// allocation, not two.
pub(super) enum SampledKeys {
    One(Vec<u8>),
    Many(Vec<Vec<u8>>),
}

impl SampledKeys {
    fn as_slice(&self) -> &[Vec<u8>] {
        match self {
            Self::One(key) => std::slice::from_ref(key),
            Self::Many(keys) => keys,
        }
    }
}

pub(super) enum Control {
    Flush(oneshot::Sender<()>),
    Shutdown(oneshot::Sender<()>),
}

/// How often the writer drains the sample queue: often enough that a default-sized queue holds what a
/// busy process samples meanwhile, rarely enough to cost nothing.
const DRAIN_INTERVAL: Duration = Duration::from_millis(50);

/// Flush and shutdown requests waiting at once.
const CONTROL_CAPACITY: usize = 16;

/// Direct-mode pipelines in flight at once: enough to keep up with a busy service over one multiplexed
/// connection, few enough that a slow node cannot pile up work.
const MAX_IN_FLIGHT: usize = 32;

/// Starts the background writer on `runtime`; the channels returned are the way to it.
pub(super) fn spawn<C>(
    runtime: &tokio::runtime::Handle,
    conn: C,
    options: &TrackerOptions,
    counters: Arc<Counters>,
    hot: Option<Arc<HotSet>>,
) -> Channels
where
    C: redis::aio::ConnectionLike + Clone + Send + Sync + 'static,
{
    let (samples_tx, samples) = mpsc::channel(options.queue_capacity);
    let (control_tx, control) = mpsc::channel(CONTROL_CAPACITY);
    let worker = Worker {
        conn,
        samples,
        control,
        queue_capacity: options.queue_capacity,
        mode: options.mode,
        flush_interval: options.flush_interval,
        max_keys: options.max_keys,
        flush_keys: options.flush_keys.min(options.max_keys),
        reads: SpaceSaving::new(options.summary_capacity),
        writes: SpaceSaving::new(options.summary_capacity),
        in_flight: JoinSet::new(),
        counters,
        rng: fresh_rng(),
        warn: WarnLimiter::new(options.flush_interval),
        hot: hot.map(|published| HotReads::new(options.hot_reads, published)),
    };
    runtime.spawn(worker.run());
    Channels {
        samples: samples_tx,
        control: control_tx,
    }
}

/// The background writer: owns the tracker's connection, the summaries and the in-flight writes.
struct Worker<C> {
    conn: C,
    samples: mpsc::Receiver<Sample>,
    control: mpsc::Receiver<Control>,
    queue_capacity: usize,
    mode: TrackKeyMode,
    flush_interval: Duration,
    max_keys: usize,
    flush_keys: usize,
    reads: SpaceSaving,
    writes: SpaceSaving,
    in_flight: JoinSet<Result<(), WriteError>>,
    counters: Arc<Counters>,
    rng: SmallRng,
    warn: WarnLimiter,
    hot: Option<HotReads>,
}

impl<C> Worker<C>
where
    C: redis::aio::ConnectionLike + Clone + Send + Sync + 'static,
{
    async fn run(mut self) {
        let mut next_flush = deadline_after(self.jittered_interval());
        let mut drain = tokio::time::interval(DRAIN_INTERVAL);
        drain.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut publish = tokio::time::interval(PUBLISH_INTERVAL);
        publish.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                control = self.control.recv() => match control {
                    Some(Control::Flush(done)) => {
                        self.flush().await;
                        let _ = done.send(());
                    }
                    Some(Control::Shutdown(done)) => {
                        self.samples.close();
                        self.flush().await;
                        let _ = done.send(());
                        return;
                    }
                    // Every tracker handle is gone: write what is left and stop.
                    None => {
                        self.flush().await;
                        return;
                    }
                },
                _ = drain.tick() => self.drain().await,
                _ = publish.tick(), if self.hot.is_some() => self.publish_hot().await,
                Some(joined) = self.in_flight.join_next(), if !self.in_flight.is_empty() => {
                    self.on_written(joined);
                }
                () = tokio::time::sleep_until(next_flush), if self.mode == TrackKeyMode::Aggregated => {
                    self.flush().await;
                    next_flush = deadline_after(self.jittered_interval());
                }
            }
        }
    }

    /// Takes the queued samples, at most one queue's worth so a flood cannot starve the other work.
    async fn drain(&mut self) {
        for _ in 0..self.queue_capacity {
            match self.samples.try_recv() {
                Ok(sample) => self.on_sample(sample).await,
                Err(_) => break,
            }
        }
    }

    /// Publishes the hot reads counted so far, the queued samples included.
    async fn publish_hot(&mut self) {
        self.drain().await;
        if let Some(hot) = &mut self.hot {
            hot.publish();
        }
    }

    async fn on_sample(&mut self, Sample { set, to, keys }: Sample) {
        let keys = keys.as_slice();
        if let (true, Some(hot)) = (to.hot, &mut self.hot) {
            for key in keys {
                hot.add(key);
            }
        }
        if !to.set {
            return;
        }
        match self.mode {
            TrackKeyMode::Direct => {
                let mut pipe = redis::pipe();
                for key in keys {
                    pipe.cmd("ZINCRBY").arg(set.key()).arg(1).arg(key).ignore();
                }
                pipe.cmd("EXPIRE")
                    .arg(set.key())
                    .arg(SET_TTL_SECONDS)
                    .ignore();
                while self.in_flight.len() >= MAX_IN_FLIGHT {
                    if let Some(joined) = self.in_flight.join_next().await {
                        self.on_written(joined);
                    }
                }
                self.counters.sent(pipe.len());
                let conn = self.conn.clone();
                let timeout = self.flush_interval;
                self.in_flight.spawn(write(conn, pipe, timeout));
            }
            TrackKeyMode::Aggregated => {
                let summary = self.summary(set);
                for key in keys {
                    summary.add(key, 1);
                }
            }
        }
    }

    /// Takes the queued samples, writes both summaries (one pipeline per non-empty set, the two
    /// concurrently) and waits for every direct-mode write in flight.
    async fn flush(&mut self) {
        self.drain().await;
        let reads = self.aggregated_pipeline(TrackedSet::Reads);
        let writes = self.aggregated_pipeline(TrackedSet::Writes);
        let timeout = self.flush_interval;
        let (reads, writes) = tokio::join!(
            write_some(self.conn.clone(), reads, timeout),
            write_some(self.conn.clone(), writes, timeout),
        );
        for result in [reads, writes].into_iter().flatten() {
            self.on_result(result);
        }
        while let Some(joined) = self.in_flight.join_next().await {
            self.on_written(joined);
        }
    }

    /// `ZINCRBY` for the interval's top keys, `EXPIRE`, `ZREMRANGEBYRANK`; `None` if nothing was counted.
    /// Empties the summary: the next interval starts from zero.
    fn aggregated_pipeline(&mut self, set: TrackedSet) -> Option<Pipeline> {
        let (max_keys, flush_keys) = (self.max_keys, self.flush_keys);
        let summary = self.summary(set);
        if summary.is_empty() {
            return None;
        }
        let top = summary.top(flush_keys);
        summary.clear();
        let mut pipe = redis::pipe();
        for counted in top.iter().filter(|c| c.guaranteed() > 0) {
            pipe.cmd("ZINCRBY")
                .arg(set.key())
                .arg(counted.guaranteed())
                .arg(&*counted.key)
                .ignore();
        }
        pipe.cmd("EXPIRE")
            .arg(set.key())
            .arg(SET_TTL_SECONDS)
            .ignore();
        // Ranks 0 .. -(max_keys + 1) are everything but the `max_keys` highest scores.
        let keep = i64::try_from(max_keys).unwrap_or(i64::MAX);
        pipe.cmd("ZREMRANGEBYRANK")
            .arg(set.key())
            .arg(0)
            .arg(-keep.saturating_add(1))
            .ignore();
        self.counters.sent(pipe.len());
        Some(pipe)
    }

    fn summary(&mut self, set: TrackedSet) -> &mut SpaceSaving {
        match set {
            TrackedSet::Reads => &mut self.reads,
            TrackedSet::Writes => &mut self.writes,
        }
    }

    fn on_written(&mut self, joined: Result<Result<(), WriteError>, tokio::task::JoinError>) {
        match joined {
            Ok(result) => self.on_result(result),
            Err(e) => self.on_result(Err(WriteError::Task(e))),
        }
    }

    fn on_result(&mut self, result: Result<(), WriteError>) {
        if let Err(error) = result {
            self.counters.failures.fetch_add(1, Ordering::Relaxed);
            let _logged = warn_failed(&self.warn, &error, Instant::now());
        }
    }

    fn jittered_interval(&mut self) -> Duration {
        jitter(self.flush_interval, self.rng.random::<f64>())
    }
}

/// `interval` scaled into `0.9..=1.1` by `unit` in `0..=1`, so processes started together spread their
/// flushes. An interval too long to scale (configured in eons) is left as it is.
fn jitter(interval: Duration, unit: f64) -> Duration {
    Duration::try_from_secs_f64(interval.as_secs_f64() * (0.9 + 0.2 * unit.clamp(0.0, 1.0)))
        .unwrap_or(interval)
}

/// `after` from now; an interval beyond what the clock can represent means a year from now, which
/// is as good as never for a flush (and the next flush computes it again).
fn deadline_after(after: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(after)
        .unwrap_or_else(|| now + Duration::from_secs(365 * 86_400))
}

/// Sends one tracker pipeline, giving up after `timeout` so a dead node cannot stall the writer.
async fn write<C>(mut conn: C, pipe: Pipeline, timeout: Duration) -> Result<(), WriteError>
where
    C: redis::aio::ConnectionLike + Send,
{
    match tokio::time::timeout(timeout, pipe.exec_async(&mut conn)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(WriteError::Redis(e)),
        Err(_) => Err(WriteError::Timeout(timeout)),
    }
}

async fn write_some<C>(
    conn: C,
    pipe: Option<Pipeline>,
    timeout: Duration,
) -> Option<Result<(), WriteError>>
where
    C: redis::aio::ConnectionLike + Send,
{
    match pipe {
        Some(pipe) => Some(write(conn, pipe, timeout).await),
        None => None,
    }
}

/// Why a tracker write failed; only ever logged and counted.
#[derive(Debug)]
enum WriteError {
    Redis(RedisError),
    Timeout(Duration),
    Task(tokio::task::JoinError),
}

impl fmt::Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Redis(e) => write!(f, "{e}"),
            Self::Timeout(t) => write!(f, "no reply within {t:?}"),
            Self::Task(e) => write!(f, "{e}"),
        }
    }
}

/// Logs a tracker failure at `now`, with how many happened since the last log line (this one
/// included), unless one was logged within the limiter's interval; that number if it logged.
fn warn_failed(limiter: &WarnLimiter, error: &WriteError, now: Instant) -> Option<u64> {
    let failures = limiter.check(now.into_std())? + 1;
    tracing::warn!(
        failures,
        error = %error,
        "the hot-key tracker could not write to Redis; requests are unaffected"
    );
    Some(failures)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flush_intervals_are_jittered_by_ten_percent() {
        let ten = Duration::from_secs(10);
        assert_eq!(jitter(ten, 0.0), Duration::from_secs(9));
        assert_eq!(jitter(ten, 1.0), Duration::from_secs(11));
        assert_eq!(jitter(ten, 0.5), ten);
        assert_eq!(jitter(ten, 7.0), Duration::from_secs(11));
        // An interval too long to scale stays as it is rather than overflowing.
        assert_eq!(jitter(Duration::MAX, 1.0), Duration::MAX);
        let eons = Duration::from_secs(200_000_000_000_000 * 86_400);
        assert_eq!(jitter(eons, 1.0), eons);
        // And a deadline that far off is a year away, not a panic.
        let year = Duration::from_secs(365 * 86_400);
        assert!(deadline_after(Duration::MAX) >= Instant::now() + year - Duration::from_secs(1));
        assert!(deadline_after(Duration::from_secs(1)) <= Instant::now() + Duration::from_secs(1));
    }

    #[test]
    fn failures_are_logged_at_most_once_per_interval() {
        let limiter = WarnLimiter::new(Duration::from_secs(3600));
        let error = WriteError::Timeout(Duration::from_secs(1));
        let now = Instant::now();
        assert_eq!(warn_failed(&limiter, &error, now), Some(1));
        assert_eq!(
            warn_failed(&limiter, &error, now + Duration::from_secs(1)),
            None
        );
        assert_eq!(
            warn_failed(&limiter, &error, now + Duration::from_secs(2)),
            None
        );
        assert_eq!(limiter.held_back(), 2);
        // The next line counts the failures held back and its own.
        let hour = Duration::from_secs(3600);
        assert_eq!(warn_failed(&limiter, &error, now + hour), Some(3));
        let eager = WarnLimiter::new(Duration::ZERO);
        assert_eq!(warn_failed(&eager, &error, now), Some(1));
        assert_eq!(warn_failed(&eager, &error, now), Some(1));
    }
}
