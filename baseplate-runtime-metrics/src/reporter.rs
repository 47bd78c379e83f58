//! The periodic runtime-metrics reporter: every 10 s, aligned to the wall clock, it polls its sources.

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::batch::TaggedBatch;
use crate::client::MetricsClient;
use crate::error::{MetricsError, SourceError};
use crate::tags::Tags;

/// How often runtime metrics are reported by default: every 10 seconds, as baseplate.py's
/// `REPORT_INTERVAL_SECONDS`.
pub const DEFAULT_REPORT_INTERVAL: Duration = Duration::from_secs(10);

/// Something that reports runtime metrics (such as a connection pool's size) when the reporter
/// polls it, under the name it was registered with.
///
/// The batch it gets is tagged `hostname`, `PID` and `client=<name>`, in that order, and named under
/// `{namespace}.runtime`, so a gauge `pool.size` of 50 from the source registered as `foo` is sent
/// as `{namespace}.runtime.pool.size,hostname=H,PID=P,client=foo:50|g`.
///
/// `report` runs on the reporter's task and should only read state, not wait on I/O or locks held
/// across awaits. A source that returns an error or panics is logged and skipped for that round
/// (whatever it recorded before failing is discarded); the other sources still report.
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use baseplate_runtime_metrics::{RuntimeMetricsSource, SourceError, TaggedBatch};
///
/// struct PoolStats {
///     size: u64,
///     in_use: AtomicU64,
/// }
///
/// impl RuntimeMetricsSource for PoolStats {
///     fn report(&self, batch: &mut TaggedBatch<'_>) -> Result<(), SourceError> {
///         batch.gauge("pool.size", self.size as f64);
///         batch.gauge("pool.in_use", self.in_use.load(Ordering::Relaxed) as f64);
///         Ok(())
///     }
/// }
/// ```
pub trait RuntimeMetricsSource: Send + Sync {
    /// Records this source's metrics into `batch`.
    ///
    /// # Errors
    ///
    /// Any error that kept the source from reporting; the reporter logs it and discards what the
    /// source recorded this round.
    fn report(&self, batch: &mut TaggedBatch<'_>) -> Result<(), SourceError>;
}

impl<T: RuntimeMetricsSource + ?Sized> RuntimeMetricsSource for Arc<T> {
    fn report(&self, batch: &mut TaggedBatch<'_>) -> Result<(), SourceError> {
        (**self).report(batch)
    }
}

/// Options of a [`RuntimeMetricsReporter`].
///
/// ```
/// use std::time::Duration;
/// use baseplate_runtime_metrics::ReporterOptions;
///
/// let options = ReporterOptions::new().with_interval(Duration::from_millis(50));
/// assert_eq!(options.interval, Duration::from_millis(50));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReporterOptions {
    /// How often to report ([`DEFAULT_REPORT_INTERVAL`] by default). Reports happen at the
    /// multiples of the interval in UNIX time (…:00, …:10, …:20 for 10 s), so every process of a
    /// service reports at the same moments. Must be greater than zero.
    pub interval: Duration,
}

impl ReporterOptions {
    /// The defaults.
    #[must_use]
    pub fn new() -> Self {
        Self {
            interval: DEFAULT_REPORT_INTERVAL,
        }
    }

    /// Sets [`interval`](Self::interval).
    ///
    /// ```
    /// use std::time::Duration;
    /// use baseplate_runtime_metrics::ReporterOptions;
    ///
    /// let options = ReporterOptions::new().with_interval(Duration::from_secs(1));
    /// assert_eq!(options.interval, Duration::from_secs(1));
    /// ```
    #[must_use]
    pub fn with_interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }
}

impl Default for ReporterOptions {
    fn default() -> Self {
        Self::new()
    }
}

/// What one round of reporting did: which sources reported and which failed (errored or
/// panicked), by registered name, in registration order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReportSummary {
    /// The sources whose metrics were sent.
    pub reported: Vec<String>,
    /// The sources that returned an error or panicked, and were skipped.
    pub failed: Vec<String>,
}

/// Reports runtime metrics of its registered sources, as baseplate.py's runtime monitor does: one
/// batch under `{namespace}.runtime` tagged `hostname` and `PID`, with `client=<name>` added for
/// each source. Cloning is cheap; clones share the registered sources.
///
/// Sources can be registered before or after [`start`](Self::start).
///
/// ```
/// use baseplate_runtime_metrics::{
///     MemoryTransport, MetricsClient, RuntimeMetricsReporter, RuntimeMetricsSource, SourceError,
///     TaggedBatch,
/// };
///
/// struct Pool;
///
/// impl RuntimeMetricsSource for Pool {
///     fn report(&self, batch: &mut TaggedBatch<'_>) -> Result<(), SourceError> {
///         batch.gauge("pool.size", 50.0);
///         Ok(())
///     }
/// }
///
/// let transport = MemoryTransport::new();
/// let reporter = RuntimeMetricsReporter::new(MetricsClient::new(transport.clone(), "ns"));
/// reporter.register("foo", Pool);
/// reporter.report_once();
///
/// let hostname = gethostname::gethostname().to_string_lossy().into_owned();
/// let pid = std::process::id();
/// assert_eq!(
///     transport.lines(),
///     [format!("ns.runtime.pool.size,hostname={hostname},PID={pid},client=foo:50|g")]
/// );
/// ```
#[derive(Clone)]
pub struct RuntimeMetricsReporter {
    inner: Arc<ReporterInner>,
}

type Sources = Vec<(String, Arc<dyn RuntimeMetricsSource>)>;

struct ReporterInner {
    client: MetricsClient,
    options: ReporterOptions,
    base_tags: Tags,
    sources: RwLock<Sources>,
}

impl RuntimeMetricsReporter {
    /// A reporter sending through `client`, with default options and no sources yet.
    ///
    /// ```
    /// use baseplate_runtime_metrics::{MetricsClient, NullTransport, RuntimeMetricsReporter};
    ///
    /// let reporter = RuntimeMetricsReporter::new(MetricsClient::new(NullTransport, "ns"));
    /// assert!(reporter.source_names().is_empty());
    /// ```
    #[must_use]
    pub fn new(client: MetricsClient) -> Self {
        Self::with_options(client, ReporterOptions::new())
    }

    /// A reporter with explicit options.
    ///
    /// ```
    /// use std::time::Duration;
    /// use baseplate_runtime_metrics::{
    ///     MetricsClient, NullTransport, ReporterOptions, RuntimeMetricsReporter,
    /// };
    ///
    /// let options = ReporterOptions::new().with_interval(Duration::from_secs(1));
    /// let reporter =
    ///     RuntimeMetricsReporter::with_options(MetricsClient::new(NullTransport, "ns"), options);
    /// assert_eq!(reporter.options().interval, Duration::from_secs(1));
    /// ```
    #[must_use]
    pub fn with_options(client: MetricsClient, options: ReporterOptions) -> Self {
        let hostname = gethostname::gethostname().to_string_lossy().into_owned();
        let base_tags = Tags::new()
            .with("hostname", hostname)
            .with("PID", std::process::id());
        Self {
            inner: Arc::new(ReporterInner {
                client,
                options,
                base_tags,
                sources: RwLock::new(Vec::new()),
            }),
        }
    }

    /// The options this reporter was made with.
    ///
    /// ```
    /// use baseplate_runtime_metrics::{
    ///     DEFAULT_REPORT_INTERVAL, MetricsClient, NullTransport, RuntimeMetricsReporter,
    /// };
    ///
    /// let reporter = RuntimeMetricsReporter::new(MetricsClient::new(NullTransport, "ns"));
    /// assert_eq!(reporter.options().interval, DEFAULT_REPORT_INTERVAL);
    /// ```
    #[must_use]
    pub fn options(&self) -> &ReporterOptions {
        &self.inner.options
    }

    /// Registers `source` under `name`, the value of its `client` tag. Registering a name again
    /// replaces the earlier source in its place. Sources report in registration order.
    ///
    /// ```
    /// use baseplate_runtime_metrics::{
    ///     MetricsClient, NullTransport, RuntimeMetricsReporter, RuntimeMetricsSource, SourceError,
    ///     TaggedBatch,
    /// };
    ///
    /// struct Quiet;
    /// impl RuntimeMetricsSource for Quiet {
    ///     fn report(&self, _batch: &mut TaggedBatch<'_>) -> Result<(), SourceError> {
    ///         Ok(())
    ///     }
    /// }
    ///
    /// let reporter = RuntimeMetricsReporter::new(MetricsClient::new(NullTransport, "ns"));
    /// reporter.register("foo", Quiet);
    /// reporter.register("bar", Quiet);
    /// reporter.register("foo", Quiet);
    /// assert_eq!(reporter.source_names(), ["foo", "bar"]);
    /// ```
    pub fn register(&self, name: impl Into<String>, source: impl RuntimeMetricsSource + 'static) {
        let name = name.into();
        let source: Arc<dyn RuntimeMetricsSource> = Arc::new(source);
        let mut sources = self.write_sources();
        match sources.iter_mut().find(|(existing, _)| *existing == name) {
            Some((_, existing)) => *existing = source,
            None => sources.push((name, source)),
        }
    }

    /// Removes the source registered under `name`; returns whether there was one.
    ///
    /// ```
    /// use baseplate_runtime_metrics::{MetricsClient, NullTransport, RuntimeMetricsReporter};
    ///
    /// let reporter = RuntimeMetricsReporter::new(MetricsClient::new(NullTransport, "ns"));
    /// assert!(!reporter.unregister("foo"));
    /// ```
    pub fn unregister(&self, name: &str) -> bool {
        let mut sources = self.write_sources();
        let before = sources.len();
        sources.retain(|(existing, _)| existing != name);
        sources.len() != before
    }

    /// The names of the registered sources, in registration order.
    ///
    /// ```
    /// use baseplate_runtime_metrics::{MetricsClient, NullTransport, RuntimeMetricsReporter};
    ///
    /// let reporter = RuntimeMetricsReporter::new(MetricsClient::new(NullTransport, "ns"));
    /// assert!(reporter.source_names().is_empty());
    /// ```
    #[must_use]
    pub fn source_names(&self) -> Vec<String> {
        self.read_sources()
            .iter()
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// Polls every source once and sends the batch now, whatever the time. A source that returns
    /// an error or panics is logged at `warn` level and skipped.
    ///
    /// ```
    /// use baseplate_runtime_metrics::{MetricsClient, NullTransport, RuntimeMetricsReporter};
    ///
    /// let reporter = RuntimeMetricsReporter::new(MetricsClient::new(NullTransport, "ns"));
    /// let summary = reporter.report_once();
    /// assert!(summary.reported.is_empty() && summary.failed.is_empty());
    /// ```
    pub fn report_once(&self) -> ReportSummary {
        // Clone the list so no lock is held while sources run: a source may register another.
        let sources: Sources = self.read_sources().clone();
        let mut batch = self
            .inner
            .client
            .batch()
            .with_prefix("runtime")
            .with_base_tags(&self.inner.base_tags);
        let mut summary = ReportSummary::default();
        for (name, source) in sources {
            // Each source records into its own batch, merged only on success, so a failing source
            // sends nothing rather than half its metrics.
            let mut scratch = batch.empty_like();
            let outcome = catch_unwind(AssertUnwindSafe(|| {
                source.report(&mut scratch.tagged(Tags::new().with("client", &name)))
            }));
            match outcome {
                Ok(Ok(())) => {
                    batch.absorb(scratch);
                    summary.reported.push(name);
                }
                Ok(Err(error)) => {
                    tracing::warn!(
                        client = %name,
                        %error,
                        "runtime metrics source failed; its metrics are skipped this round"
                    );
                    summary.failed.push(name);
                }
                Err(payload) => {
                    tracing::warn!(
                        client = %name,
                        panic = panic_message(payload.as_ref()),
                        "runtime metrics source panicked; its metrics are skipped this round"
                    );
                    summary.failed.push(name);
                }
            }
        }
        batch.flush();
        summary
    }

    /// Starts reporting on the current tokio runtime, at every multiple of the interval in UNIX
    /// time, until the returned handle is shut down or dropped. Each call starts another task.
    ///
    /// ```
    /// use baseplate_runtime_metrics::{MetricsClient, NullTransport, RuntimeMetricsReporter};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
    /// let reporter = RuntimeMetricsReporter::new(MetricsClient::new(NullTransport, "ns"));
    /// let handle = reporter.start().unwrap();
    /// handle.shutdown().await;
    /// # });
    /// ```
    ///
    /// # Errors
    ///
    /// [`MetricsError::NoRuntime`] when called outside a tokio runtime, and
    /// [`MetricsError::ZeroInterval`] when the interval is zero.
    pub fn start(&self) -> Result<ReporterHandle, MetricsError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| MetricsError::NoRuntime)?;
        let interval = self.inner.options.interval;
        if interval.is_zero() {
            return Err(MetricsError::ZeroInterval);
        }
        let (stop, stopped) = oneshot::channel();
        let task = runtime.spawn(run(self.clone(), interval, stopped));
        Ok(ReporterHandle { stop, task })
    }

    fn read_sources(&self) -> std::sync::RwLockReadGuard<'_, Sources> {
        self.inner
            .sources
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn write_sources(&self) -> std::sync::RwLockWriteGuard<'_, Sources> {
        self.inner
            .sources
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for RuntimeMetricsReporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RuntimeMetricsReporter")
            .field("client", &self.inner.client)
            .field("options", &self.inner.options)
            .field("base_tags", &self.inner.base_tags)
            .field("sources", &self.source_names())
            .finish()
    }
}

/// The running reporter task. [`shutdown`](Self::shutdown) stops it and waits for it; dropping the
/// handle stops it too, without waiting.
#[derive(Debug)]
#[must_use = "dropping the handle stops the reporter"]
pub struct ReporterHandle {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl ReporterHandle {
    /// Stops the reporter and waits until its task has ended. A report under way completes first.
    ///
    /// ```
    /// use baseplate_runtime_metrics::{MetricsClient, NullTransport, RuntimeMetricsReporter};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
    /// let reporter = RuntimeMetricsReporter::new(MetricsClient::new(NullTransport, "ns"));
    /// reporter.start().unwrap().shutdown().await;
    /// # });
    /// ```
    pub async fn shutdown(self) {
        let Self { stop, task } = self;
        // The task may already have ended, in which case nobody receives this; that is fine.
        let _ = stop.send(());
        if let Err(error) = task.await {
            tracing::warn!(%error, "runtime metrics reporter task ended abnormally");
        }
    }

    /// Whether the reporter task has ended.
    ///
    /// ```
    /// use baseplate_runtime_metrics::{MetricsClient, NullTransport, RuntimeMetricsReporter};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
    /// let reporter = RuntimeMetricsReporter::new(MetricsClient::new(NullTransport, "ns"));
    /// let handle = reporter.start().unwrap();
    /// assert!(!handle.is_finished());
    /// handle.shutdown().await;
    /// # });
    /// ```
    #[must_use]
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }
}

/// How long to wait, at `since_epoch` (time since the UNIX epoch), until the next multiple of
/// `interval`: baseplate.py's `REPORT_INTERVAL_SECONDS - now % REPORT_INTERVAL_SECONDS`. Exactly on
/// a multiple, that is a whole interval. A zero interval gives zero.
fn time_until_next_report(since_epoch: Duration, interval: Duration) -> Duration {
    let interval_nanos = interval.as_nanos();
    if interval_nanos == 0 {
        return Duration::ZERO;
    }
    let remaining = interval_nanos - since_epoch.as_nanos() % interval_nanos;
    // `remaining` is at most `interval`, which came from a `Duration`.
    u64::try_from(remaining).map_or(interval, Duration::from_nanos)
}

/// The time since the UNIX epoch of the next report after `now`, given the previous one: normally
/// the next multiple of `interval`, but never the same moment twice, in case the sleep ended a
/// hair before the wall clock reached the previous target.
fn next_report_at(now: Duration, interval: Duration, previous: Option<Duration>) -> Duration {
    let target = now + time_until_next_report(now, interval);
    if previous == Some(target) {
        target + interval
    } else {
        target
    }
}

async fn run(
    reporter: RuntimeMetricsReporter,
    interval: Duration,
    mut stop: oneshot::Receiver<()>,
) {
    tracing::debug!(?interval, "runtime metrics reporter started");
    let mut previous = None;
    loop {
        let now = since_epoch();
        let target = next_report_at(now, interval, previous);
        tokio::select! {
            () = tokio::time::sleep(target.saturating_sub(now)) => {}
            // Either shutdown() sent the signal or the handle was dropped: stop both ways.
            _ = &mut stop => break,
        }
        previous = Some(target);
        reporter.report_once();
    }
    tracing::debug!("runtime metrics reporter stopped");
}

fn since_epoch() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    if let Some(message) = payload.downcast_ref::<&str>() {
        message
    } else if let Some(message) = payload.downcast_ref::<String>() {
        message
    } else {
        "(not a string)"
    }
}

#[cfg(test)]
mod tests {
    use std::io;

    use super::*;
    use crate::transport::MemoryTransport;

    const WAIT: Duration = Duration::from_secs(10);

    struct Gauges(&'static [(&'static str, f64)]);

    impl RuntimeMetricsSource for Gauges {
        fn report(&self, batch: &mut TaggedBatch<'_>) -> Result<(), SourceError> {
            for &(name, value) in self.0 {
                batch.gauge(name, value);
            }
            Ok(())
        }
    }

    struct Panics;

    impl RuntimeMetricsSource for Panics {
        fn report(&self, batch: &mut TaggedBatch<'_>) -> Result<(), SourceError> {
            batch.gauge("half.done", 1.0);
            panic!("source exploded");
        }
    }

    struct Fails;

    impl RuntimeMetricsSource for Fails {
        fn report(&self, batch: &mut TaggedBatch<'_>) -> Result<(), SourceError> {
            batch.counter("half.done", 1.0);
            Err(io::Error::other("pool is gone").into())
        }
    }

    /// Reports nothing; holds a marker whose count tells whether the reporter is still alive.
    struct Marker {
        _alive: Arc<()>,
    }

    impl RuntimeMetricsSource for Marker {
        fn report(&self, _batch: &mut TaggedBatch<'_>) -> Result<(), SourceError> {
            Ok(())
        }
    }

    fn base_tags() -> String {
        let hostname = gethostname::gethostname().to_string_lossy().into_owned();
        format!("hostname={hostname},PID={}", std::process::id())
    }

    fn make_reporter(interval: Duration) -> (RuntimeMetricsReporter, MemoryTransport) {
        let transport = MemoryTransport::new();
        let client = MetricsClient::new(transport.clone(), "ns");
        let options = ReporterOptions::new().with_interval(interval);
        (
            RuntimeMetricsReporter::with_options(client, options),
            transport,
        )
    }

    async fn wait_until(mut condition: impl FnMut() -> bool) {
        tokio::time::timeout(WAIT, async {
            while !condition() {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await
        .expect("condition not reached in time");
    }

    #[test]
    fn one_batch_with_hostname_pid_and_client_tags_in_order() {
        let (reporter, transport) = make_reporter(DEFAULT_REPORT_INTERVAL);
        reporter.register("foo", Gauges(&[("pool.size", 50.0), ("pool.in_use", 3.0)]));
        reporter.register("bar", Gauges(&[("pool.size", 10.0)]));
        let summary = reporter.report_once();
        assert_eq!(summary.reported, ["foo", "bar"]);
        assert!(summary.failed.is_empty());
        let tags = base_tags();
        assert_eq!(transport.len(), 1, "one batch fits one packet");
        assert_eq!(
            transport.lines(),
            [
                format!("ns.runtime.pool.size,{tags},client=foo:50|g"),
                format!("ns.runtime.pool.in_use,{tags},client=foo:3|g"),
                format!("ns.runtime.pool.size,{tags},client=bar:10|g"),
            ]
        );
    }

    #[test]
    fn failing_and_panicking_sources_are_skipped_and_others_still_report() {
        let (reporter, transport) = make_reporter(DEFAULT_REPORT_INTERVAL);
        reporter.register("boom", Panics);
        reporter.register("foo", Gauges(&[("pool.size", 50.0)]));
        reporter.register("broken", Fails);
        reporter.register("bar", Gauges(&[("pool.size", 7.0)]));
        let summary = reporter.report_once();
        assert_eq!(summary.reported, ["foo", "bar"]);
        assert_eq!(summary.failed, ["boom", "broken"]);
        let tags = base_tags();
        assert_eq!(
            transport.lines(),
            [
                format!("ns.runtime.pool.size,{tags},client=foo:50|g"),
                format!("ns.runtime.pool.size,{tags},client=bar:7|g"),
            ]
        );
    }

    #[test]
    fn registering_a_name_again_replaces_in_place() {
        let (reporter, transport) = make_reporter(DEFAULT_REPORT_INTERVAL);
        reporter.register("foo", Gauges(&[("old", 1.0)]));
        reporter.register("bar", Gauges(&[("bar", 1.0)]));
        reporter.register("foo", Gauges(&[("new", 2.0)]));
        assert!(reporter.unregister("bar"));
        assert!(!reporter.unregister("bar"));
        reporter.report_once();
        assert_eq!(
            transport.lines(),
            [format!("ns.runtime.new,{},client=foo:2|g", base_tags())]
        );
    }

    #[test]
    fn alignment_waits_for_the_next_multiple_of_the_interval() {
        let ten = Duration::from_secs(10);
        let at = |secs: f64| Duration::from_secs_f64(secs);
        assert_eq!(time_until_next_report(at(1_700_000_003.0), ten), at(7.0));
        assert_eq!(time_until_next_report(at(1_700_000_009.75), ten), at(0.25));
        assert_eq!(time_until_next_report(at(1_700_000_000.0), ten), ten);
        assert_eq!(
            time_until_next_report(Duration::from_millis(1_234), Duration::from_millis(500)),
            Duration::from_millis(266)
        );
        assert_eq!(
            time_until_next_report(at(5.0), Duration::ZERO),
            Duration::ZERO
        );
    }

    #[test]
    fn the_same_target_is_never_reported_twice() {
        let ten = Duration::from_secs(10);
        let secs = Duration::from_secs;
        assert_eq!(next_report_at(secs(103), ten, None), secs(110));
        // Woke a hair early by the wall clock: the next report is the one after.
        let early = secs(110) - Duration::from_micros(1);
        assert_eq!(next_report_at(early, ten, Some(secs(110))), secs(120));
        assert_eq!(next_report_at(secs(110), ten, Some(secs(110))), secs(120));
        // The wall clock went back a minute: follow it rather than wait a minute.
        assert_eq!(next_report_at(secs(52), ten, Some(secs(110))), secs(60));
    }

    #[tokio::test]
    async fn periodic_reports_at_a_short_interval_have_exact_lines() {
        let (reporter, transport) = make_reporter(Duration::from_millis(50));
        reporter.register("foo", Gauges(&[("pool.size", 50.0)]));
        let handle = reporter.start().unwrap();
        tokio::time::timeout(WAIT, transport.wait_for_packets(2))
            .await
            .unwrap();
        handle.shutdown().await;
        let line = format!("ns.runtime.pool.size,{},client=foo:50|g", base_tags());
        let packets = transport.packets();
        assert!(packets.len() >= 2);
        assert!(packets.iter().all(|packet| *packet == line), "{packets:?}");
    }

    #[tokio::test]
    async fn a_panicking_source_does_not_stop_the_periodic_reporter() {
        let (reporter, transport) = make_reporter(Duration::from_millis(20));
        reporter.register("boom", Panics);
        reporter.register("foo", Gauges(&[("pool.size", 1.0)]));
        let handle = reporter.start().unwrap();
        tokio::time::timeout(WAIT, transport.wait_for_packets(3))
            .await
            .unwrap();
        assert!(!handle.is_finished());
        handle.shutdown().await;
        let line = format!("ns.runtime.pool.size,{},client=foo:1|g", base_tags());
        assert!(transport.lines().iter().all(|l| *l == line));
    }

    #[tokio::test]
    async fn shutdown_ends_the_task() {
        let marker = Arc::new(());
        let (reporter, transport) = make_reporter(Duration::from_millis(20));
        reporter.register(
            "marker",
            Marker {
                _alive: Arc::clone(&marker),
            },
        );
        reporter.register("foo", Gauges(&[("pool.size", 1.0)]));
        let handle = reporter.start().unwrap();
        drop(reporter);
        tokio::time::timeout(WAIT, transport.wait_for_packets(1))
            .await
            .unwrap();
        assert_eq!(Arc::strong_count(&marker), 2, "the task holds the sources");
        handle.shutdown().await;
        assert_eq!(
            Arc::strong_count(&marker),
            1,
            "the task let go of the sources"
        );
    }

    #[tokio::test]
    async fn dropping_the_handle_ends_the_task() {
        let marker = Arc::new(());
        let (reporter, _transport) = make_reporter(Duration::from_secs(3600));
        reporter.register(
            "marker",
            Marker {
                _alive: Arc::clone(&marker),
            },
        );
        let handle = reporter.start().unwrap();
        drop(reporter);
        assert_eq!(Arc::strong_count(&marker), 2);
        drop(handle);
        wait_until(|| Arc::strong_count(&marker) == 1).await;
    }

    #[test]
    fn starting_needs_a_runtime_and_a_nonzero_interval() {
        let (reporter, _) = make_reporter(DEFAULT_REPORT_INTERVAL);
        assert!(matches!(reporter.start(), Err(MetricsError::NoRuntime)));

        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let (reporter, _) = make_reporter(Duration::ZERO);
        let _guard = runtime.enter();
        assert!(matches!(reporter.start(), Err(MetricsError::ZeroInterval)));
    }
}
