//! The hot-key tracker: samples observed commands on the caller's thread and hands the sampled keys to a
//! background writer, which records them in baseplate's sorted sets in aggregated or direct mode.

mod hot;
mod options;
mod worker;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use redis::{Arg, Cmd, Pipeline};
use tokio::sync::oneshot;

use crate::TrackerError;
use crate::commands::{CommandSpec, KeyPositions, command_of};
use crate::query::TrackedSet;
use crate::sampling::{SampleRate, thread_draw};
use hot::HotSet;
pub use options::{SET_TTL_SECONDS, TrackKeyMode, TrackerOptions};
use worker::{Channels, Control, Counters, Sample, SampledKeys};

/// What a tracker has done so far, for tests, logs and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct TrackerStats {
    /// Samples taken: a command sampled for reads (or writes) that has at least one key to read (write).
    /// A command sampled in both directions counts twice. Reads counted only towards finding the hot
    /// reads are not samples here.
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
    /// `None` unless the tracker finds hot reads.
    hot: Option<Hot>,
}

/// How reads are sampled for finding the hot ones, and where they are published.
struct Hot {
    rate: SampleRate,
    set: Arc<HotSet>,
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
                hot: None,
            }),
        }
    }

    /// Starts a tracker writing through `conn`, spawning its background writer on the current tokio
    /// runtime. With both sample rates 0 and no [`hot_reads`](TrackerOptions::hot_reads) to find it is
    /// [`disabled`](Self::disabled) and spawns nothing.
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
        if !options.is_enabled() {
            return Ok(Self::disabled());
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(TrackerError::NoRuntime)?;
        let counters = Arc::new(Counters::default());
        let hot = (options.hot_reads > 0)
            .then(|| -> Result<Hot, TrackerError> {
                Ok(Hot {
                    rate: SampleRate::new("hot_reads_sample_rate", options.hot_reads_sample_rate)?,
                    set: Arc::new(HotSet::new()),
                })
            })
            .transpose()?;
        let published = hot.as_ref().map(|hot| Arc::clone(&hot.set));
        let channels = worker::spawn(&runtime, conn, &options, Arc::clone(&counters), published);
        Ok(Self {
            inner: Arc::new(Inner {
                reads,
                writes,
                mode: options.mode,
                channels: Some(channels),
                counters,
                hot,
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
        if self.inner.channels.is_some() {
            self.observe_as(cmd, command_of(cmd));
        }
    }

    /// [`observe`](Self::observe) for a command whose table row the caller already has: `row` is
    /// what [`command`](crate::command) returns for its name, so the name is not looked up again.
    ///
    /// # Examples
    /// ```
    /// let tracker = baseplate_hotkeys::HotKeyTracker::disabled();
    /// let get = redis::cmd("GET").arg("user:1").clone();
    /// tracker.observe_as(&get, baseplate_hotkeys::command(b"GET"));
    /// ```
    pub fn observe_as(&self, cmd: &Cmd, row: Option<&CommandSpec>) {
        let inner = &*self.inner;
        let Some(channels) = &inner.channels else {
            return;
        };
        let Some(spec) = row.copied().filter(CommandSpec::is_tracked) else {
            return;
        };
        let (reads, hot) = if spec.reads() == KeyPositions::None {
            (false, false)
        } else {
            inner.sample_read(spec)
        };
        let writes = spec.writes() != KeyPositions::None && inner.writes.sample();
        if !reads && !writes && !hot {
            return;
        }
        if reads_one_key(spec) {
            // The usual sampled command: its one key is argument 1, nothing to gather or dedupe.
            if let Some(Arg::Simple(key)) = cmd.args_iter().nth(1) {
                let to = Destination { set: reads, hot };
                inner.send(
                    channels,
                    TrackedSet::Reads,
                    to,
                    SampledKeys::One(key.to_vec()),
                );
            }
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
        if reads || hot {
            let to = Destination { set: reads, hot };
            inner.enqueue(channels, TrackedSet::Reads, to, spec.reads().keys(&args));
        }
        if writes {
            let to = Destination {
                set: true,
                hot: false,
            };
            inner.enqueue(channels, TrackedSet::Writes, to, spec.writes().keys(&args));
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

    /// Whether `cmd` reads exactly one key, at argument 1, writes none, and its key is among the
    /// process's hottest read keys (see [`TrackerOptions::hot_reads`]). Always false for a tracker
    /// that finds no hot reads. Cheap: no allocation, one hash lookup once any key is hot.
    ///
    /// # Examples
    /// ```
    /// let tracker = baseplate_hotkeys::HotKeyTracker::disabled();
    /// assert!(!tracker.is_hot_read(redis::cmd("GET").arg("k")));
    /// ```
    pub fn is_hot_read(&self, cmd: &Cmd) -> bool {
        self.inner.hot.is_some() && self.is_hot_read_as(cmd, command_of(cmd))
    }

    /// [`is_hot_read`](Self::is_hot_read) for a command whose table row the caller already has:
    /// `row` is what [`command`](crate::command) returns for its name.
    pub fn is_hot_read_as(&self, cmd: &Cmd, row: Option<&CommandSpec>) -> bool {
        let Some(hot) = &self.inner.hot else {
            return false;
        };
        let Some(Arg::Simple(key)) = cmd.args_iter().nth(1) else {
            return false;
        };
        row.copied()
            .filter(CommandSpec::is_tracked)
            .is_some_and(reads_one_key)
            && hot.set.contains(key)
    }

    /// The hot read keys published last, in no particular order (empty for a tracker that finds
    /// none).
    pub fn hot_reads(&self) -> Vec<Vec<u8>> {
        self.inner
            .hot
            .as_ref()
            .map(|hot| hot.set.snapshot())
            .unwrap_or_default()
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

/// Whether a command reads one key, argument 1, and writes none: the reads whose replies depend on
/// that key alone.
fn reads_one_key(spec: CommandSpec) -> bool {
    spec.reads() == KeyPositions::First && spec.writes() == KeyPositions::None
}

/// Where a sample goes: the sorted set, the hot-read finder, or both.
#[derive(Debug, Clone, Copy)]
pub(super) struct Destination {
    pub(super) set: bool,
    pub(super) hot: bool,
}

impl Inner {
    /// Whether a read is sampled for the reads set, and whether for finding hot reads. One draw
    /// decides both, so a read sampled for the set is always counted as a hot-read candidate too.
    fn sample_read(&self, spec: CommandSpec) -> (bool, bool) {
        match &self.hot {
            Some(hot) if reads_one_key(spec) => {
                let draw = thread_draw();
                let set = self.reads.sample_from(draw);
                (set, set || hot.rate.sample_from(draw))
            }
            _ => (self.reads.sample(), false),
        }
    }

    fn enqueue<'a>(
        &self,
        channels: &Channels,
        set: TrackedSet,
        to: Destination,
        keys: impl Iterator<Item = &'a [u8]>,
    ) {
        let mut keys: Vec<&[u8]> = keys.collect();
        if keys.is_empty() {
            return;
        }
        // Each key counts once per sampled command, however often the command names it.
        keys.sort_unstable();
        keys.dedup();
        let keys = keys.into_iter().map(<[u8]>::to_vec).collect();
        self.send(channels, set, to, SampledKeys::Many(keys));
    }

    /// Hands a sample of `keys` (each once) to the worker, or counts it dropped.
    fn send(&self, channels: &Channels, set: TrackedSet, to: Destination, keys: SampledKeys) {
        if to.set {
            self.counters.sampled.fetch_add(1, Ordering::Relaxed);
        }
        if channels.samples.try_send(Sample { set, to, keys }).is_err() {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests;
