//! The hot-key tracker: samples observed commands on the caller's thread and hands the sampled keys to a
//! background writer, which records them in baseplate's sorted sets in aggregated or direct mode.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rand::RngExt as _;
use rand::rngs::SmallRng;
use redis::{Arg, Cmd, Pipeline, RedisError};
use serde::{Deserialize, Deserializer, Serialize};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::TrackerError;
use crate::classify::{KeyPositions, command_spec};
use crate::query::TrackedSet;
use crate::sampling::{SampleRate, fresh_rng};
use crate::summary::SpaceSaving;

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

/// How a [`HotKeyTracker`] samples and writes. Start from [`TrackerOptions::default`] and use the
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
    /// samples are dropped and counted in [`TrackerStats::dropped`]. 4096.
    pub queue_capacity: usize,
    /// Keys each aggregated summary (one per set) monitors per interval. 1024.
    pub summary_capacity: usize,
    /// The most keys one aggregated flush writes per set: the interval's top keys by count. The
    /// summary monitors more keys than it writes so that the top ones are counted exactly; the rest
    /// are its noise floor. This bounds the tracker's writes at `flush_keys + 2` commands per set
    /// per interval, whatever the traffic: at 1% sampling, under 1% of what direct mode sends once a
    /// set sees more than about 340,000 commands per interval. 32.
    pub flush_keys: usize,
}

/// What a tracker has done so far, for tests, logs and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct TrackerStats {
    /// Samples taken: a command sampled for reads (or writes) that has at least one key to read (write).
    /// A command sampled in both directions counts twice.
    pub sampled: u64,
    /// Samples dropped because the queue to the background writer was full or the tracker stopped.
    pub dropped: u64,
    /// Commands the tracker sent to Redis (`ZINCRBY`, `EXPIRE`, `ZREMRANGEBYRANK`).
    pub commands_sent: u64,
    /// Pipelines the tracker sent to Redis, each one round trip.
    pub round_trips: u64,
    /// Pipelines that failed or timed out (their writes may be partly applied; nothing is retried).
    pub failures: u64,
}

/// Samples the keys of executed commands and records them in the sorted sets
/// `baseplate-hot-key-tracker-reads` and `-writes`.
///
/// Cheap to clone: clones share one background writer. [`observe`](Self::observe) never blocks, never
/// fails and does not allocate unless the command is sampled; everything that talks to Redis happens on
/// the background task, through the connection given to [`start`](Self::start), which must not itself
/// be observed (so the tracker never tracks its own writes).
#[derive(Clone)]
pub struct HotKeyTracker {
    inner: Arc<Inner>,
}

struct Inner {
    reads: SampleRate,
    writes: SampleRate,
    mode: TrackKeyMode,
    /// `None` when disabled: nothing is sampled and there is no background task.
    channels: Option<Channels>,
    counters: Arc<Counters>,
}

impl HotKeyTracker {
    /// A tracker that observes nothing and sends nothing.
    ///
    /// # Examples
    /// ```
    /// let tracker = baseplate_hotkeys::HotKeyTracker::disabled();
    /// tracker.observe(redis::cmd("GET").arg("k"));
    /// assert_eq!(tracker.stats().sampled, 0);
    /// ```
    pub fn disabled() -> Self {
        Self {
            inner: Arc::new(Inner {
                reads: SampleRate::NEVER,
                writes: SampleRate::NEVER,
                mode: TrackKeyMode::default(),
                channels: None,
                counters: Arc::default(),
            }),
        }
    }

    /// Starts a tracker writing through `conn`, spawning its background writer on the current tokio
    /// runtime. With both sample rates 0 it is [`disabled`](Self::disabled) and spawns nothing.
    ///
    /// `conn` is the tracker's own connection (a raw redis-rs `ClusterConnection`, not a monitored one), so
    /// its writes are never observed.
    ///
    /// # Errors
    /// [`TrackerError`] when an option is invalid (see [`TrackerOptions::validate`]) or when called
    /// outside a tokio runtime.
    ///
    /// # Examples
    /// ```no_run
    /// use baseplate_hotkeys::{HotKeyTracker, TrackerOptions};
    ///
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let conn = redis::cluster::ClusterClient::new(vec!["redis://127.0.0.1:7000"])?
    ///     .get_async_connection()
    ///     .await?;
    /// let tracker = HotKeyTracker::start(conn, TrackerOptions::default().with_reads_sample_rate(0.01))?;
    /// tracker.observe(redis::cmd("GET").arg("user:1"));
    /// tracker.shutdown().await;
    /// # Ok(())
    /// # }
    /// ```
    pub fn start<C>(conn: C, options: TrackerOptions) -> Result<Self, TrackerError>
    where
        C: redis::aio::ConnectionLike + Clone + Send + Sync + 'static,
    {
        options.validate()?;
        let reads = SampleRate::new("reads_sample_rate", options.reads_sample_rate)?;
        let writes = SampleRate::new("writes_sample_rate", options.writes_sample_rate)?;
        if !reads.is_enabled() && !writes.is_enabled() {
            return Ok(Self::disabled());
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(TrackerError::NoRuntime)?;
        let (samples_tx, samples) = mpsc::channel(options.queue_capacity);
        let (control_tx, control) = mpsc::channel(CONTROL_CAPACITY);
        let counters = Arc::new(Counters::default());
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
            counters: Arc::clone(&counters),
            rng: fresh_rng(),
            warn: WarnLimiter::new(options.flush_interval),
        };
        runtime.spawn(worker.run());
        Ok(Self {
            inner: Arc::new(Inner {
                reads,
                writes,
                mode: options.mode,
                channels: Some(Channels {
                    samples: samples_tx,
                    control: control_tx,
                }),
                counters,
            }),
        })
    }

    /// Considers an executed command (call it once the reply, even an error reply, has arrived): if it
    /// reads or writes keys and is sampled at the rate of that direction, its keys are queued for the
    /// background writer, each distinct key once.
    ///
    /// Unknown commands are ignored. Never blocks, never fails; a full queue drops the sample and counts
    /// it in [`TrackerStats::dropped`].
    ///
    /// # Examples
    /// ```no_run
    /// # async fn demo(tracker: baseplate_hotkeys::HotKeyTracker, mut conn: redis::cluster_async::ClusterConnection) -> redis::RedisResult<()> {
    /// let mut get = redis::cmd("GET");
    /// get.arg("user:1");
    /// let reply: redis::RedisResult<Option<String>> = get.query_async(&mut conn).await;
    /// tracker.observe(&get);
    /// # Ok(())
    /// # }
    /// ```
    pub fn observe(&self, cmd: &Cmd) {
        let inner = &*self.inner;
        let Some(channels) = &inner.channels else {
            return;
        };
        let Some(Arg::Simple(name)) = cmd.args_iter().next() else {
            return;
        };
        let Some(spec) = command_spec(name) else {
            return;
        };
        let reads = spec.reads() != KeyPositions::None && inner.reads.sample();
        let writes = spec.writes() != KeyPositions::None && inner.writes.sample();
        if !reads && !writes {
            return;
        }
        let args: Vec<&[u8]> = cmd
            .args_iter()
            .map(|arg| match arg {
                Arg::Simple(arg) => arg,
                // A cursor is never at a key position.
                _ => &[][..],
            })
            .collect();
        if reads {
            inner.enqueue(channels, TrackedSet::Reads, spec.reads().keys(&args));
        }
        if writes {
            inner.enqueue(channels, TrackedSet::Writes, spec.writes().keys(&args));
        }
    }

    /// Considers every command of an executed pipeline, as [`observe`](Self::observe) does.
    ///
    /// # Examples
    /// ```no_run
    /// # async fn demo(tracker: baseplate_hotkeys::HotKeyTracker, mut conn: redis::cluster_async::ClusterConnection) -> redis::RedisResult<()> {
    /// let mut pipe = redis::pipe();
    /// pipe.get("{user:1}.name").get("{user:1}.email");
    /// let replies: (Option<String>, Option<String>) = pipe.query_async(&mut conn).await?;
    /// tracker.observe_pipeline(&pipe);
    /// # Ok(())
    /// # }
    /// ```
    pub fn observe_pipeline(&self, pipe: &Pipeline) {
        if self.inner.channels.is_none() {
            return;
        }
        for cmd in pipe.cmd_iter() {
            self.observe(cmd);
        }
    }

    /// The tracker's counters so far.
    ///
    /// # Examples
    /// ```
    /// let stats = baseplate_hotkeys::HotKeyTracker::disabled().stats();
    /// assert_eq!((stats.sampled, stats.dropped, stats.failures), (0, 0, 0));
    /// ```
    pub fn stats(&self) -> TrackerStats {
        self.inner.counters.snapshot()
    }

    /// The tracker's mode.
    pub fn mode(&self) -> TrackKeyMode {
        self.inner.mode
    }

    /// Whether anything can be sampled (false for [`disabled`](Self::disabled) or stopped trackers).
    pub fn is_enabled(&self) -> bool {
        self.inner
            .channels
            .as_ref()
            .is_some_and(|c| !c.samples.is_closed())
    }

    /// Writes what was sampled before this call: in aggregated mode the counts so far (and a new interval
    /// starts), in direct mode it waits until the queued writes are answered. Returns at once if the
    /// tracker is disabled or stopped.
    ///
    /// # Examples
    /// ```no_run
    /// # async fn demo(tracker: baseplate_hotkeys::HotKeyTracker) {
    /// tracker.observe(redis::cmd("GET").arg("user:1"));
    /// tracker.flush().await;
    /// # }
    /// ```
    pub async fn flush(&self) {
        self.control(Control::Flush).await;
    }

    /// Flushes, then stops the background writer; later samples are dropped. Every clone is stopped.
    ///
    /// # Examples
    /// ```no_run
    /// # async fn demo(tracker: baseplate_hotkeys::HotKeyTracker) {
    /// tracker.shutdown().await;
    /// assert!(!tracker.is_enabled());
    /// # }
    /// ```
    pub async fn shutdown(&self) {
        self.control(Control::Shutdown).await;
    }

    async fn control(&self, message: fn(oneshot::Sender<()>) -> Control) {
        let Some(channels) = &self.inner.channels else {
            return;
        };
        let (done, wait) = oneshot::channel();
        if channels.control.send(message(done)).await.is_ok() {
            // An error means the writer stopped before answering; there is nothing left to wait for.
            let _ = wait.await;
        }
    }
}

impl fmt::Debug for HotKeyTracker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HotKeyTracker")
            .field("mode", &self.inner.mode)
            .field("reads_sample_rate", &self.inner.reads.get())
            .field("writes_sample_rate", &self.inner.writes.get())
            .field("enabled", &self.is_enabled())
            .field("stats", &self.stats())
            .finish()
    }
}

impl Inner {
    fn enqueue<'a>(
        &self,
        channels: &Channels,
        set: TrackedSet,
        keys: impl Iterator<Item = &'a [u8]>,
    ) {
        let mut keys: Vec<&[u8]> = keys.collect();
        if keys.is_empty() {
            return;
        }
        // Each key counts once per sampled command, however often the command names it.
        keys.sort_unstable();
        keys.dedup();
        self.counters.sampled.fetch_add(1, Ordering::Relaxed);
        let keys = keys.into_iter().map(<[u8]>::to_vec).collect();
        if channels.samples.try_send(Sample { set, keys }).is_err() {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
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

    /// Checks every option, as [`HotKeyTracker::start`] does.
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

#[derive(Debug, Default)]
struct Counters {
    sampled: AtomicU64,
    dropped: AtomicU64,
    commands_sent: AtomicU64,
    round_trips: AtomicU64,
    failures: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> TrackerStats {
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
struct Channels {
    samples: mpsc::Sender<Sample>,
    control: mpsc::Sender<Control>,
}

/// The distinct keys of one sampled command, for one set.
struct Sample {
    set: TrackedSet,
    keys: Vec<Vec<u8>>,
}

enum Control {
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
}

impl<C> Worker<C>
where
    C: redis::aio::ConnectionLike + Clone + Send + Sync + 'static,
{
    async fn run(mut self) {
        let mut next_flush = deadline_after(self.jittered_interval());
        let mut drain = tokio::time::interval(DRAIN_INTERVAL);
        drain.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
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

    async fn on_sample(&mut self, Sample { set, keys }: Sample) {
        match self.mode {
            TrackKeyMode::Direct => {
                let mut pipe = redis::pipe();
                for key in &keys {
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
                for key in &keys {
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
            let _logged = self.warn.failed(&error);
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

/// Logs tracker failures at most once per interval, with how many happened since the last log line.
#[derive(Debug)]
struct WarnLimiter {
    interval: Duration,
    last: Option<Instant>,
    unlogged: u64,
}

impl WarnLimiter {
    fn new(interval: Duration) -> Self {
        Self {
            interval,
            last: None,
            unlogged: 0,
        }
    }

    /// Notes a failure; logs it (and returns true) unless a failure was logged within the interval.
    fn failed(&mut self, error: &WriteError) -> bool {
        self.unlogged += 1;
        let now = Instant::now();
        if self
            .last
            .is_some_and(|last| now.duration_since(last) < self.interval)
        {
            return false;
        }
        tracing::warn!(
            failures = self.unlogged,
            error = %error,
            "the hot-key tracker could not write to Redis; requests are unaffected"
        );
        self.last = Some(now);
        self.unlogged = 0;
        true
    }
}

#[cfg(test)]
mod tests;
