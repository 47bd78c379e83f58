//! The contenders and the loop that drives them: (a) one shared raw redis-rs `ClusterConnection`,
//! (b) and (c) a `MonitoredClusterRedisConnection` made per request through the facade (aggregated
//! and direct hot-key tracking), (d) `redis-benchmark --cluster`, (e) contender (b) under a global
//! `tracing` subscriber that records every span, (f) contender (b) with the hot-key cache
//! (`cache_hot_keys = true`), which runs on the hot-key workload only, against (a) and (b).
//!
//! Each cell runs in a process of its own (see the `bench` binary): `tasks` loops send requests
//! through the contender for a warm-up, then for the measured window, then stop. On the hot-key
//! workload the cell also reads every primary's `INFO commandstats` and the cache's counters at
//! both ends of the window.

use std::fmt;
use std::future::Future;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use baseplate::crates::redis_cluster::{CacheStats, ClusterPool};
use baseplate::{
    Baseplate, ClusterRedisClient, ClusterRedisContextFactory, ConfigWarning, ContextParser,
    MonitoredClusterRedisConnection, ParseError, RawConfig, SERVER_SPAN, UnknownKeys,
};
use futures_util::future::join_all;
use redis::aio::ConnectionLike as _;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, SingleNodeRoutingInfo, SlotAddr};
use redis::{ErrorKind, RedisError, RedisResult, Value};
use serde::{Deserialize, Serialize};
use tracing::Instrument as _;
use tracing::Subscriber;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::{Context, SubscriberExt as _};
use tracing_subscriber::registry::LookupSpan;

use crate::bench::BenchError;
use crate::bench::cluster::{PrimaryCommands, SlotMap};
use crate::bench::stats::{Latencies, Percentiles, cpu_times, peak_rss_kib};
use crate::bench::workload::{KEY_COUNT, KeySpace, Op, OpGenerator, VALUE_SIZE, Workload};

/// The hot-key tracker's sample rate for reads and writes in contenders (b), (c) and (e).
pub const TRACKER_SAMPLE_RATE: f64 = 0.01;

/// Who serves the workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Contender {
    /// (a) One shared raw redis-rs `ClusterConnection`, no instrumentation: the baseline.
    Raw,
    /// (b) The monitored client per request through the facade, tracker in aggregated mode.
    Aggregated,
    /// (c) The same with the tracker in direct mode.
    Direct,
    /// (d) `redis-benchmark --cluster`, the C reference for what the server sustains.
    RedisBenchmark,
    /// (e) Exactly (b), plus a global `tracing` subscriber whose layer records every span: what
    /// tracing costs on top of the metrics.
    Traced,
    /// (f) Exactly (b), plus the hot-key cache (`cache_hot_keys = true`, default bounds): reads of
    /// the hottest keys are answered from memory.
    Cached,
}

impl Contender {
    /// Every contender, in report order.
    pub const ALL: [Self; 6] = [
        Self::Raw,
        Self::Aggregated,
        Self::Direct,
        Self::RedisBenchmark,
        Self::Traced,
        Self::Cached,
    ];

    /// The letter the report uses: a, b, c, d, e.
    pub fn letter(self) -> char {
        match self {
            Self::Raw => 'a',
            Self::Aggregated => 'b',
            Self::Direct => 'c',
            Self::RedisBenchmark => 'd',
            Self::Traced => 'e',
            Self::Cached => 'f',
        }
    }

    /// The id used on command lines and in JSON.
    pub fn id(self) -> &'static str {
        match self {
            Self::Raw => "raw",
            Self::Aggregated => "aggregated",
            Self::Direct => "direct",
            Self::RedisBenchmark => "redis-benchmark",
            Self::Traced => "traced",
            Self::Cached => "cached",
        }
    }

    /// A short description for tables and the chart's legend.
    pub fn label(self) -> &'static str {
        match self {
            Self::Raw => "(a) raw redis-rs",
            Self::Aggregated => "(b) monitored, aggregated",
            Self::Direct => "(c) monitored, direct",
            Self::RedisBenchmark => "(d) redis-benchmark",
            Self::Traced => "(e) monitored, traced (every span recorded)",
            Self::Cached => "(f) monitored, hot-key cache",
        }
    }

    /// Reads an [`id`](Self::id) back.
    ///
    /// # Errors
    /// For an unknown id.
    pub fn parse(id: &str) -> Result<Self, BenchError> {
        Self::ALL
            .into_iter()
            .find(|c| c.id() == id)
            .ok_or_else(|| format!("unknown contender `{id}`").into())
    }

    /// Whether this contender runs the hot-key tracker (and sends statsd request metrics): the
    /// monitored client's contenders.
    pub fn tracks_keys(self) -> bool {
        matches!(
            self,
            Self::Aggregated | Self::Direct | Self::Traced | Self::Cached
        )
    }

    /// Whether this contender runs `workload`: the hot-key workload compares (a), (b) and (f);
    /// (f) runs nothing else.
    pub fn runs_on(self, workload: Workload) -> bool {
        if workload.is_hot_keys() {
            matches!(self, Self::Raw | Self::Aggregated | Self::Cached)
        } else {
            self != Self::Cached
        }
    }
}

impl fmt::Display for Contender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// How to run one cell.
#[derive(Debug, Clone)]
pub struct CellOptions {
    /// The cluster's seed URL.
    pub url: String,
    /// What to run.
    pub workload: Workload,
    /// Requests sent before measuring (connections open, caches warm).
    pub warmup: Duration,
    /// The measured window.
    pub measure: Duration,
    /// Seeds the tasks' op streams (task `i` uses `seed + i`).
    pub seed: u64,
    /// `host:port` of the statsd sink the monitored contenders send their request and runtime
    /// metrics to; empty: metrics are formatted but discarded (for measuring what sending costs).
    pub statsd: String,
    /// The monitored client's `max_connections`.
    pub max_connections: usize,
    /// For `redis-benchmark`: commands to send (split 90/10 between its GET and SET tests).
    pub requests: u64,
    /// For (f): `cache_max_keys`, when not the default.
    pub cache_max_keys: Option<usize>,
}

/// What one cell measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellFigures {
    /// Commands completed in the measured window (a pipeline counts its commands).
    pub ops: u64,
    /// Commands completed over the whole process, warm-up and stop included: the denominator of
    /// the tracker's traffic, which covers the whole process too.
    pub total_ops: u64,
    /// Length of the measured window.
    pub seconds: f64,
    /// Commands per second in the window.
    pub ops_per_sec: f64,
    /// Request latency (a pipeline is one request).
    pub latency: Option<Percentiles>,
    /// The process's CPU time (user + system) per command in the window, in microseconds.
    pub cpu_us_per_op: f64,
    /// The process's peak resident memory (`VmHWM`), in KiB.
    pub peak_rss_kib: Option<u64>,
    /// Requests that failed.
    pub errors: u64,
    /// The first failure, if any.
    pub first_error: Option<String>,
    /// For (e): spans its layer recorded and closed over the whole process (like `total_ops`);
    /// `None` for the others, which install no subscriber.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spans_closed: Option<u64>,
    /// On the hot-key workload: the commands the busiest primary served in the measured window
    /// (the sum of `calls` over its `INFO commandstats`, after minus before; the busiest is the
    /// primary with the most).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub busiest_primary_commands: Option<u64>,
    /// For (f): what the hot-key cache did in the measured window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<CacheWindow>,
}

/// What the hot-key cache did in a cell's measured window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheWindow {
    /// Reads of hot keys answered from memory.
    pub hits: u64,
    /// Reads of hot keys that went to Redis.
    pub misses: u64,
    /// Replies dropped because their key changed, or to make room.
    pub invalidations: u64,
}

impl CacheWindow {
    /// The counters' growth from `before` to `after`.
    pub fn between(before: CacheStats, after: CacheStats) -> Self {
        Self {
            hits: after.hits.saturating_sub(before.hits),
            misses: after.misses.saturating_sub(before.misses),
            invalidations: after.invalidations.saturating_sub(before.invalidations),
        }
    }

    /// The share of hot-key reads answered from memory, 0 when there were none.
    pub fn hit_share(&self) -> f64 {
        let reads = self.hits + self.misses;
        if reads == 0 {
            0.0
        } else {
            #[allow(clippy::cast_precision_loss)]
            let share = self.hits as f64 / reads as f64;
            share
        }
    }
}

/// Runs one cell of contender (a), (b), (c), (e) or (f) in this process: preloaded keys are
/// assumed. Contender (e) installs its global `tracing` subscriber, so call this once per process.
/// With `primaries` (the hot-key workload), the busiest primary's commands in the window are
/// measured.
///
/// # Errors
/// When the cluster cannot be reached or the facade rejects its configuration; for
/// [`Contender::RedisBenchmark`], use [`run_redis_benchmark`].
pub async fn run_cell(
    contender: Contender,
    options: &CellOptions,
    slots: SlotMap,
    primaries: Option<PrimaryCommands>,
) -> Result<CellFigures, BenchError> {
    let keys = Arc::new(KeySpace::new());
    let mut probe = WindowProbe {
        primaries,
        pool: None,
    };
    match contender {
        Contender::Raw => {
            let conn = redis::cluster::ClusterClient::new(vec![options.url.as_str()])?
                .get_async_connection()
                .await?;
            let raw = Raw {
                conn,
                keys,
                slots: Arc::new(slots),
            };
            drive(raw, options, &probe).await
        }
        Contender::Aggregated | Contender::Direct | Contender::Traced | Contender::Cached => {
            // Before the facade exists, so every span from the first request on is recorded.
            let spans = (contender == Contender::Traced)
                .then(SpanCounts::install)
                .transpose()?;
            let (baseplate, pool) = monitored_baseplate_with_pool(contender, options)?;
            let baseplate = Arc::new(baseplate);
            probe.pool = pool.filter(|_| contender == Contender::Cached);
            let figures = drive(
                Monitored {
                    baseplate: Arc::clone(&baseplate),
                    keys,
                },
                options,
                &probe,
            )
            .await;
            // The tracker's last flush belongs to this cell's traffic.
            baseplate.shutdown().await;
            let mut figures = figures?;
            if let Some(spans) = spans {
                let requests = figures.total_ops / options.workload.depth.max(1) as u64;
                figures.spans_closed = Some(spans.check(requests, figures.errors)?);
            }
            Ok(figures)
        }
        Contender::RedisBenchmark => {
            Err("redis-benchmark runs through run_redis_benchmark, not in-process".into())
        }
    }
}

/// The facade as contenders (b), (c), (e) and (f) use it: the facade's observers (statsd request
/// and runtime metrics) sending to the statsd sink, the client `foo` (which records the
/// `redis_client_*` Prometheus series whatever the observers) with the tracker at
/// [`TRACKER_SAMPLE_RATE`] in the contender's mode, and for (f) `cache_hot_keys = true`. It
/// installs no `tracing` subscriber.
///
/// # Errors
/// When the facade rejects the configuration.
pub fn monitored_baseplate(
    contender: Contender,
    options: &CellOptions,
) -> Result<Baseplate, BenchError> {
    Ok(monitored_baseplate_with_pool(contender, options)?.0)
}

/// [`monitored_baseplate`], and the pool of its client `foo` (to read the cache's counters).
///
/// # Errors
/// When the facade rejects the configuration.
pub fn monitored_baseplate_with_pool(
    contender: Contender,
    options: &CellOptions,
) -> Result<(Baseplate, Option<ClusterPool>), BenchError> {
    let mode = match contender {
        Contender::Direct => "direct",
        _ => "aggregated",
    };
    let rate = TRACKER_SAMPLE_RATE.to_string();
    let mut config: RawConfig = [
        ("metrics.namespace", "bench".to_owned()),
        ("metrics.endpoint", options.statsd.clone()),
        ("foo.url", options.url.clone()),
        ("foo.max_connections", options.max_connections.to_string()),
        // Raw redis-rs reads from primaries; so does the monitored client here.
        ("foo.read_from_replicas", "false".to_owned()),
        ("foo.track_key_reads_sample_rate", rate.clone()),
        ("foo.track_key_writes_sample_rate", rate),
        ("foo.track_key_mode", mode.to_owned()),
        (
            "foo.cache_hot_keys",
            (contender == Contender::Cached).to_string(),
        ),
    ]
    .into_iter()
    .collect();
    if let (Contender::Cached, Some(keys)) = (contender, options.cache_max_keys) {
        config.insert("foo.cache_max_keys", keys.to_string());
    }
    let mut baseplate = Baseplate::new(config);
    baseplate.configure_observers()?;
    let parser = KeepPool::default();
    baseplate.configure_context("foo", parser.clone())?;
    let pool = parser.pool.get().cloned();
    Ok((baseplate, pool))
}

/// The client's own parser, keeping a handle on the pool of the factory it makes: the facade
/// hands out connections, not their pool, and the cache's counters live in the pool.
#[derive(Clone, Default)]
pub struct KeepPool {
    pool: Arc<OnceLock<ClusterPool>>,
}

impl KeepPool {
    /// The pool of the factory made last, once the parser has run.
    pub fn pool(&self) -> Option<ClusterPool> {
        self.pool.get().cloned()
    }

    fn keep(&self, factory: &ClusterRedisContextFactory) {
        // A parser runs once per client here; a second run keeps the first pool.
        let _ = self.pool.set(factory.pool().clone());
    }
}

impl ContextParser for KeepPool {
    type Factory = ClusterRedisContextFactory;

    fn parse(&self, key_path: &str, raw_config: &RawConfig) -> Result<Self::Factory, ParseError> {
        let factory = ContextParser::parse(&ClusterRedisClient::new(), key_path, raw_config)?;
        self.keep(&factory);
        Ok(factory)
    }

    fn parse_with_warnings(
        &self,
        key_path: &str,
        raw_config: &RawConfig,
        unknown_keys: UnknownKeys,
    ) -> Result<(Self::Factory, Vec<ConfigWarning>), ParseError> {
        let (factory, warnings) =
            ClusterRedisClient::new().parse_with_warnings(key_path, raw_config, unknown_keys)?;
        self.keep(&factory);
        Ok((factory, warnings))
    }
}

/// What a cell reads at both ends of its measured window besides its own counters: every
/// primary's commands (on the hot-key workload) and the hot-key cache's counters (for (f)).
struct WindowProbe {
    primaries: Option<PrimaryCommands>,
    pool: Option<ClusterPool>,
}

/// One reading of a [`WindowProbe`].
struct ProbeReading {
    calls: Option<Vec<u64>>,
    cache: Option<CacheStats>,
}

impl WindowProbe {
    async fn read(&self) -> Result<ProbeReading, BenchError> {
        let calls = match &self.primaries {
            Some(primaries) => Some(primaries.calls().await?),
            None => None,
        };
        Ok(ProbeReading {
            calls,
            cache: self.pool.as_ref().and_then(ClusterPool::cache_stats),
        })
    }
}

/// One request's worth of work through a contender.
pub(crate) trait Driver: Clone + Send + Sync + 'static {
    /// Sends `ops` as one request: a single command, or a pipeline of them.
    fn request(&mut self, ops: &[Op]) -> impl Future<Output = RedisResult<()>> + Send;
}

/// (a): one `ClusterConnection` shared by every task. A pipeline spread over slots is split by
/// node and sent as one sub-pipeline per node, concurrently (redis-rs alone rejects cross-slot
/// pipelines; this is the least a user of raw redis-rs would write).
#[derive(Clone)]
struct Raw {
    conn: ClusterConnection,
    keys: Arc<KeySpace>,
    slots: Arc<SlotMap>,
}

impl Driver for Raw {
    async fn request(&mut self, ops: &[Op]) -> RedisResult<()> {
        if let [op] = ops {
            return self
                .conn
                .req_packed_command(&self.keys.command(*op))
                .await
                .map(drop);
        }
        let mut groups: Vec<Option<(u16, redis::Pipeline)>> =
            vec![None; self.slots.primaries().len()];
        for &op in ops {
            let slot = self.keys.slot(op.key);
            let (_, pipe) =
                groups[self.slots.node_of(slot)].get_or_insert_with(|| (slot, redis::pipe()));
            pipe.add_command(self.keys.command(op));
        }
        send_per_node(&self.conn, groups).await
    }
}

/// (b), (c) and (e): every request is a request context with its server span, as a service handler
/// would see it; the Redis client is made per request from the context.
#[derive(Clone)]
pub(crate) struct Monitored {
    pub(crate) baseplate: Arc<Baseplate>,
    pub(crate) keys: Arc<KeySpace>,
}

impl Driver for Monitored {
    async fn request(&mut self, ops: &[Op]) -> RedisResult<()> {
        let ctx = self.baseplate.make_context_object();
        let span = self.baseplate.make_server_span(&ctx, "bench");
        let result = async {
            let mut foo: MonitoredClusterRedisConnection = ctx
                .get("foo")
                .map_err(|e| RedisError::from((ErrorKind::Client, "context", e.to_string())))?;
            if let [op] = ops {
                return foo
                    .req_packed_command(&self.keys.command(*op))
                    .await
                    .map(drop);
            }
            let mut pipe = foo.pipeline("bench");
            for &op in ops {
                pipe.add_command(self.keys.command(op));
            }
            pipe.query_async::<Vec<Value>>().await.map(drop)
        }
        .instrument(span)
        .await;
        if let Err(error) = &result {
            ctx.record_failure(error);
        }
        result
    }
}

/// The static name of the monitored client's command and pipeline spans (`otel.name` `foo.GET`,
/// `foo.pipeline_bench`).
const COMMAND_SPAN: &str = "redis.command";

/// (e)'s global subscriber: `tracing_subscriber::registry()` with [`SpanRecorder`], which counts
/// what it recorded here.
#[derive(Debug, Default)]
struct SpanCounts {
    /// Server spans closed.
    server: AtomicU64,
    /// Command and pipeline spans closed.
    commands: AtomicU64,
    /// Any other spans closed.
    other: AtomicU64,
    /// Fields recorded into the closed spans, at creation and later.
    fields: AtomicU64,
}

impl SpanCounts {
    /// Installs the recorder as this process's global subscriber.
    fn install() -> Result<Arc<Self>, BenchError> {
        let counts = Arc::new(Self::default());
        let subscriber = tracing_subscriber::registry().with(SpanRecorder {
            counts: Arc::clone(&counts),
        });
        tracing::subscriber::set_global_default(subscriber)
            .map_err(|e| format!("installing the span recorder: {e}"))?;
        Ok(counts)
    }

    /// Spans closed in all, once the recorder has seen a server span for each of `requests` and a
    /// command or pipeline span for each that did not fail before sending (at most `errors`).
    ///
    /// # Errors
    /// When it saw fewer: spans were not enabled or not recorded, and (e) measured nothing more
    /// than (b).
    fn check(&self, requests: u64, errors: u64) -> Result<u64, BenchError> {
        let server = self.server.load(Ordering::Relaxed);
        let commands = self.commands.load(Ordering::Relaxed);
        let other = self.other.load(Ordering::Relaxed);
        let fields = self.fields.load(Ordering::Relaxed);
        if server < requests || commands < requests.saturating_sub(errors) || fields == 0 {
            return Err(format!(
                "the span recorder saw {server} server spans, {commands} command spans and \
                 {fields} fields for {requests} requests"
            )
            .into());
        }
        Ok(server + commands + other)
    }
}

/// The fields of a span as a tracing backend would ship them: name and formatted value, in the
/// order they were recorded.
struct SpanFields(Vec<(&'static str, String)>);

impl Visit for SpanFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push((field.name(), value.to_owned()));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.push((field.name(), format!("{value:?}")));
    }
}

/// Does per span what an exporting layer does before it ships the span: formats its fields into
/// the span's extensions when it opens, adds the ones recorded later (status, error, nodes), and
/// takes them and counts the span when it closes.
struct SpanRecorder {
    counts: Arc<SpanCounts>,
}

impl<S> Layer<S> for SpanRecorder
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut fields = SpanFields(Vec::with_capacity(attrs.fields().len()));
        attrs.record(&mut fields);
        span.extensions_mut().insert(fields);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        if let Some(fields) = span.extensions_mut().get_mut::<SpanFields>() {
            values.record(fields);
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let fields = span.extensions_mut().remove::<SpanFields>();
        let counter = match span.name() {
            SERVER_SPAN => &self.counts.server,
            COMMAND_SPAN => &self.counts.commands,
            _ => &self.counts.other,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let recorded = fields.map_or(0, |f| f.0.len() as u64);
        self.counts.fields.fetch_add(recorded, Ordering::Relaxed);
    }
}

const WARMING: u8 = 0;
const MEASURING: u8 = 1;
const STOPPING: u8 = 2;

/// What the tasks share: the phase and the count of completed commands.
struct Shared {
    phase: AtomicU8,
    done: AtomicU64,
}

/// What one task brings back.
struct TaskResult {
    /// Latencies of requests both started and finished in the measured window, in ns.
    samples: Vec<u32>,
    errors: u64,
    first_error: Option<String>,
}

async fn drive<D: Driver>(
    driver: D,
    options: &CellOptions,
    probe: &WindowProbe,
) -> Result<CellFigures, BenchError> {
    let shared = Arc::new(Shared {
        phase: AtomicU8::new(WARMING),
        done: AtomicU64::new(0),
    });
    let mut handles = Vec::with_capacity(options.workload.tasks);
    for task in 0..options.workload.tasks {
        let generator =
            OpGenerator::of_mix(options.workload.mix, options.seed.wrapping_add(task as u64))?;
        handles.push(tokio::spawn(run_task(
            driver.clone(),
            generator,
            options.workload.depth,
            Arc::clone(&shared),
        )));
    }
    tokio::time::sleep(options.warmup).await;
    let probed_before = probe.read().await?;
    let (started, cpu_before) = (Instant::now(), cpu_times().own);
    shared.phase.store(MEASURING, Ordering::Relaxed);
    let done_before = shared.done.load(Ordering::Relaxed);
    tokio::time::sleep(options.measure).await;
    let done_after = shared.done.load(Ordering::Relaxed);
    shared.phase.store(STOPPING, Ordering::Relaxed);
    let (seconds, cpu) = (
        started.elapsed().as_secs_f64(),
        cpu_times().own.saturating_sub(cpu_before),
    );
    let probed_after = probe.read().await?;
    let busiest_primary_commands = match (probed_before.calls, probed_after.calls) {
        (Some(before), Some(after)) => before
            .iter()
            .zip(&after)
            .map(|(b, a)| a.saturating_sub(*b))
            .max(),
        _ => None,
    };
    let cache = match (probed_before.cache, probed_after.cache) {
        (Some(before), Some(after)) => Some(CacheWindow::between(before, after)),
        _ => None,
    };

    let mut latencies = Latencies::new()?;
    let (mut errors, mut first_error) = (0, None);
    for handle in handles {
        let result = handle.await?;
        latencies.record_all(&result.samples);
        errors += result.errors;
        if first_error.is_none() {
            first_error = result.first_error;
        }
    }
    let ops = done_after - done_before;
    #[allow(clippy::cast_precision_loss)]
    let per_op = |total: f64| if ops == 0 { 0.0 } else { total / ops as f64 };
    Ok(CellFigures {
        ops,
        total_ops: shared.done.load(Ordering::Relaxed),
        seconds,
        #[allow(clippy::cast_precision_loss)]
        ops_per_sec: ops as f64 / seconds,
        latency: latencies.percentiles(),
        cpu_us_per_op: per_op(cpu.as_secs_f64() * 1e6),
        peak_rss_kib: peak_rss_kib(None),
        errors,
        first_error,
        spans_closed: None,
        busiest_primary_commands,
        cache,
    })
}

async fn run_task<D: Driver>(
    mut driver: D,
    mut generator: OpGenerator,
    depth: usize,
    shared: Arc<Shared>,
) -> TaskResult {
    let mut result = TaskResult {
        samples: Vec::new(),
        errors: 0,
        first_error: None,
    };
    let mut ops = Vec::with_capacity(depth);
    loop {
        let phase = shared.phase.load(Ordering::Relaxed);
        if phase == STOPPING {
            return result;
        }
        ops.clear();
        ops.extend((0..depth).map(|_| generator.next_op()));
        let started = Instant::now();
        let reply = driver.request(&ops).await;
        let elapsed = started.elapsed();
        shared.done.fetch_add(depth as u64, Ordering::Relaxed);
        if let Err(error) = reply {
            result.errors += 1;
            result.first_error.get_or_insert_with(|| error.to_string());
        } else if phase == MEASURING && shared.phase.load(Ordering::Relaxed) == MEASURING {
            let ns = u32::try_from(elapsed.as_nanos()).unwrap_or(u32::MAX);
            result.samples.push(ns);
        }
    }
}

/// Sends each node's pipeline (routed by one of its slots) concurrently; the first error wins.
async fn send_per_node(
    conn: &ClusterConnection,
    groups: Vec<Option<(u16, redis::Pipeline)>>,
) -> RedisResult<()> {
    let sends = groups.into_iter().flatten().map(|(slot, pipe)| {
        let mut conn = conn.clone();
        let route = SingleNodeRoutingInfo::SpecificNode(Route::new(slot, SlotAddr::Master));
        async move {
            let len = pipe.len();
            conn.route_pipeline(pipe, 0, len, route).await
        }
    });
    for reply in join_all(sends).await {
        reply?;
    }
    Ok(())
}

/// Writes every key of the key space (`SET key value`), grouped by node in pipelines of 1000, so
/// every `GET` of the workloads hits.
///
/// # Errors
/// The first failed pipeline.
pub async fn preload(
    conn: &ClusterConnection,
    keys: &KeySpace,
    slots: &SlotMap,
) -> Result<(), BenchError> {
    for_each_key_by_node(conn, keys, slots, |key, pipe| {
        pipe.cmd("SET").arg(key).arg(keys.value());
    })
    .await
}

/// Removes every key of the key space (`UNLINK`), grouped as [`preload`] does.
///
/// # Errors
/// The first failed pipeline.
pub async fn unload(
    conn: &ClusterConnection,
    keys: &KeySpace,
    slots: &SlotMap,
) -> Result<(), BenchError> {
    for_each_key_by_node(conn, keys, slots, |key, pipe| {
        pipe.cmd("UNLINK").arg(key);
    })
    .await
}

async fn for_each_key_by_node(
    conn: &ClusterConnection,
    keys: &KeySpace,
    slots: &SlotMap,
    add: impl Fn(&str, &mut redis::Pipeline),
) -> Result<(), BenchError> {
    const CHUNK: usize = 1_000;
    let count = u32::try_from(keys.len()).map_err(|_| "too many keys")?;
    let indices: Vec<u32> = (0..count).collect();
    for chunk in indices.chunks(CHUNK * slots.primaries().len().max(1)) {
        let mut groups: Vec<Option<(u16, redis::Pipeline)>> = vec![None; slots.primaries().len()];
        for &index in chunk {
            let slot = keys.slot(index);
            let (_, pipe) =
                groups[slots.node_of(slot)].get_or_insert_with(|| (slot, redis::pipe()));
            add(keys.key(index), pipe);
        }
        send_per_node(conn, groups).await?;
    }
    Ok(())
}

/// Runs contender (d): `redis-benchmark --cluster` at the workload's concurrency (`-c`) and
/// pipelining (`-P`), 100-byte values over 100,000 random keys, once for `SET` (10% of
/// `options.requests`) and once for `GET` (90%). The combined rate is that of the 90/10 mix run back
/// to back; latencies are the `GET` run's (redis-benchmark reports no p99.9); CPU time is the
/// children's, and peak memory is polled from `/proc` while each run lasts.
///
/// # Errors
/// When `redis-benchmark` is missing, fails, or prints no CSV line.
pub fn run_redis_benchmark(options: &CellOptions) -> Result<CellFigures, BenchError> {
    let (host, port) = host_port(&options.url)?;
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let split = |share: f64| ((options.requests as f64 * share) as u64).max(1_000);
    let runs = [("set", split(0.1)), ("get", split(0.9))];
    let cpu_before = cpu_times().children;
    let mut peak = 0;
    let mut results = Vec::new();
    for (test, requests) in runs {
        let mut child = Command::new("redis-benchmark")
            .args(["--cluster", "-h", &host, "-p", &port.to_string()])
            .args(["-c", &options.workload.tasks.to_string()])
            .args(["-P", &options.workload.depth.to_string()])
            .args(["-d", &VALUE_SIZE.to_string(), "-r", &KEY_COUNT.to_string()])
            .args(["-t", test, "-n", &requests.to_string(), "--csv"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("running redis-benchmark (is it on PATH?): {e}"))?;
        let pid = child.id();
        loop {
            if let Some(kib) = peak_rss_kib(Some(pid)) {
                peak = peak.max(kib);
            }
            if child.try_wait()?.is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let output = child.wait_with_output()?;
        let text = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            return Err(format!("redis-benchmark -t {test} failed: {text}").into());
        }
        let line = parse_benchmark_csv(&text)
            .into_iter()
            .find(|line| line.test.eq_ignore_ascii_case(test))
            .ok_or_else(|| format!("no {test} line in redis-benchmark's output: {text}"))?;
        results.push((requests, line));
    }
    let cpu = cpu_times().children.saturating_sub(cpu_before);
    #[allow(clippy::cast_precision_loss)]
    let seconds: f64 = results.iter().map(|(n, l)| *n as f64 / l.rps).sum();
    let ops: u64 = results.iter().map(|(n, _)| n).sum();
    let get = results
        .iter()
        .find(|(_, l)| l.test.eq_ignore_ascii_case("get"))
        .map(|(_, l)| l)
        .ok_or("no GET run")?;
    #[allow(clippy::cast_precision_loss)]
    Ok(CellFigures {
        ops,
        total_ops: ops,
        seconds,
        ops_per_sec: ops as f64 / seconds,
        latency: Some(Percentiles {
            p50_us: get.p50_ms * 1_000.0,
            p99_us: get.p99_ms * 1_000.0,
            p999_us: None,
            max_us: Some(get.max_ms * 1_000.0),
        }),
        cpu_us_per_op: cpu.as_secs_f64() * 1e6 / ops as f64,
        peak_rss_kib: (peak > 0).then_some(peak),
        errors: 0,
        first_error: None,
        spans_closed: None,
        busiest_primary_commands: None,
        cache: None,
    })
}

/// One line of `redis-benchmark --csv` (Redis 7:
/// `"test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"`).
#[derive(Debug, Clone, PartialEq)]
pub struct BenchmarkLine {
    /// The test's name (`SET`, `GET`).
    pub test: String,
    /// Requests per second.
    pub rps: f64,
    /// Median latency, ms.
    pub p50_ms: f64,
    /// 99th percentile latency, ms.
    pub p99_ms: f64,
    /// Highest latency, ms.
    pub max_ms: f64,
}

/// The data lines of `redis-benchmark --csv` output; other lines (the cluster's node list, the
/// header) are skipped.
pub fn parse_benchmark_csv(text: &str) -> Vec<BenchmarkLine> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line
                .trim()
                .split(',')
                .map(|f| f.trim_matches('"'))
                .collect();
            let number = |i: usize| fields.get(i)?.parse::<f64>().ok();
            if fields.len() < 8 {
                return None;
            }
            Some(BenchmarkLine {
                test: fields[0].to_owned(),
                rps: number(1)?,
                p50_ms: number(4)?,
                p99_ms: number(6)?,
                max_ms: number(7)?,
            })
        })
        .collect()
}

/// `(host, port)` of a `redis://host:port` URL.
///
/// # Errors
/// When the URL has no port.
pub fn host_port(url: &str) -> Result<(String, u16), BenchError> {
    let rest = url
        .trim_start_matches("redis://")
        .rsplit('@')
        .next()
        .unwrap_or_default();
    let rest = rest.split('/').next().unwrap_or_default();
    let (host, port) = rest
        .rsplit_once(':')
        .ok_or_else(|| format!("no port in the cluster URL {url}"))?;
    let port = port
        .parse()
        .map_err(|_| format!("bad port in the cluster URL {url}"))?;
    Ok((host.to_owned(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_redis_benchmark_csv() {
        let text = "Cluster has 3 master nodes:\n\nMaster 0: 8ac3 127.0.0.1:7300\n\n\
            \"test\",\"rps\",\"avg_latency_ms\",\"min_latency_ms\",\"p50_latency_ms\",\"p95_latency_ms\",\"p99_latency_ms\",\"max_latency_ms\"\n\
            \"SET\",\"48780.49\",\"6.699\",\"0.464\",\"6.735\",\"12.167\",\"15.111\",\"23.887\"\n";
        let lines = parse_benchmark_csv(text);
        assert_eq!(
            lines,
            vec![BenchmarkLine {
                test: "SET".into(),
                rps: 48780.49,
                p50_ms: 6.735,
                p99_ms: 15.111,
                max_ms: 23.887,
            }]
        );
    }

    #[test]
    fn reads_host_and_port() {
        assert_eq!(
            host_port("redis://127.0.0.1:7300").unwrap(),
            ("127.0.0.1".to_owned(), 7300)
        );
        assert_eq!(
            host_port("redis://user:pw@10.0.0.1:7000/0").unwrap(),
            ("10.0.0.1".to_owned(), 7000)
        );
        assert!(host_port("redis://localhost").is_err());
    }

    #[test]
    fn contender_ids_round_trip() {
        for contender in Contender::ALL {
            assert_eq!(Contender::parse(contender.id()).unwrap(), contender);
        }
        assert_eq!(
            serde_json::to_string(&Contender::RedisBenchmark).unwrap(),
            "\"redis-benchmark\""
        );
        assert_eq!(
            serde_json::to_string(&Contender::Traced).unwrap(),
            "\"traced\""
        );
        assert!(Contender::parse("pigeon").is_err());
        let letters: String = Contender::ALL.iter().map(|c| c.letter()).collect();
        assert_eq!(letters, "abcdef", "ALL is in report order");
        for contender in Contender::ALL {
            assert!(
                contender
                    .label()
                    .starts_with(&format!("({}) ", contender.letter()))
            );
        }
    }

    #[test]
    fn the_hot_key_workload_compares_raw_monitored_and_cached_only() {
        let hot = Workload::hot_keys(50);
        let on_hot: Vec<Contender> = Contender::ALL
            .into_iter()
            .filter(|c| c.runs_on(hot))
            .collect();
        assert_eq!(
            on_hot,
            [Contender::Raw, Contender::Aggregated, Contender::Cached]
        );
        for workload in [Workload::single(50), Workload::pipeline(50, 16)] {
            let on: Vec<Contender> = Contender::ALL
                .into_iter()
                .filter(|c| c.runs_on(workload))
                .collect();
            assert_eq!(on, Contender::ALL[..5], "{workload}");
        }
    }

    #[test]
    fn cache_windows_take_deltas_and_hit_shares() {
        let mut before = CacheStats::default();
        before.hits = 10;
        before.misses = 5;
        let mut after = before;
        after.hits = 100;
        after.misses = 15;
        after.invalidations = 3;
        let window = CacheWindow::between(before, after);
        assert_eq!(
            window,
            CacheWindow {
                hits: 90,
                misses: 10,
                invalidations: 3
            }
        );
        assert!((window.hit_share() - 0.9).abs() < 1e-12);
        assert_eq!(CacheWindow::default().hit_share(), 0.0);
    }

    #[test]
    fn the_span_recorder_records_every_span_and_its_late_fields() {
        let counts = Arc::new(SpanCounts::default());
        let subscriber = tracing_subscriber::registry().with(SpanRecorder {
            counts: Arc::clone(&counts),
        });
        tracing::subscriber::with_default(subscriber, || {
            let server = tracing::info_span!(
                SERVER_SPAN,
                otel.name = "bench",
                error.message = tracing::field::Empty
            );
            let command = tracing::info_span!(parent: &server, COMMAND_SPAN, otel.name = "foo.GET", db.system = "redis");
            command.record("db.system", "redis");
            server.record("error.message", "boom");
            drop(command);
            assert_eq!(counts.commands.load(Ordering::Relaxed), 1);
            assert_eq!(counts.server.load(Ordering::Relaxed), 0, "still open");
            drop(server);
            drop(tracing::debug_span!("pool.connect"));
        });
        // 2 + 1 late on the command span, 1 + 1 late on the server span (`Empty` is no value).
        assert_eq!(counts.fields.load(Ordering::Relaxed), 5);
        assert_eq!(counts.check(1, 0).unwrap(), 3);
        assert!(counts.check(2, 0).is_err(), "a request without spans");
        assert!(
            SpanCounts::default().check(0, 0).is_err(),
            "nothing recorded at all"
        );
    }
}
