//! What the client measures where each command runs: the Prometheus series baseplate.py 2.7 names
//! (`redis_client_*`), and [`CommandObserver`], through which a request scope (the facade's) hears
//! of each command's outcome for its statsd batch. Neither depends on `tracing`.

use std::fmt;
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};
use std::time::Duration;

use foldhash::HashMap;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::registry::Registry;

use crate::cache::CacheStats;

mod latency;

use latency::LatencyHistogram;

/// The latency histogram's bucket bounds in seconds, as baseplate.py 2.7.1 declares them.
pub const LATENCY_BUCKETS: [f64; 15] = [
    0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 15.0, 30.0,
];

/// The `redis_command` label of a named pipeline (baseplate.py's, whatever the pipeline's name).
pub const PIPELINE_COMMAND: &str = "pipeline";

/// The `redis_command` label of a named transaction (baseplate.py has no cluster transactions).
pub const TRANSACTION_COMMAND: &str = "transaction";

/// Hears of each command of a request where it ran, for the request's own metrics (the facade's
/// request scope puts a timer and a success or failure counter into the request's statsd batch).
///
/// A monitored connection calls it once per command or pipeline, after the reply (or the error)
/// came, whether or not any `tracing` subscriber listens.
pub trait CommandObserver: Send + Sync + 'static {
    /// The command `name` of the client `client` ran for `elapsed` and succeeded or not (an error
    /// reply is a failure).
    fn command_finished(
        &self,
        client: &str,
        name: &CommandName<'_>,
        elapsed: Duration,
        success: bool,
    );
}

/// What ran, as baseplate names it after the client's name: `GET` (a command, whatever the
/// caller's case) or `pipeline_bar` (a named pipeline or transaction).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CommandName<'a> {
    /// A command, by its name as sent (`get`, `GET`); shown upper-cased.
    Command(&'a [u8]),
    /// A named pipeline or transaction's label (`pipeline_bar`, `transaction_bar`).
    Label(&'a str),
}

impl fmt::Display for CommandName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Command(name) => {
                for c in String::from_utf8_lossy(name).chars() {
                    fmt::Write::write_char(f, c.to_ascii_uppercase())?;
                }
                Ok(())
            }
            Self::Label(label) => f.write_str(label),
        }
    }
}

/// The `redis_client_*` Prometheus series: per command, latency, requests and requests in flight;
/// per pool, its size and the commands it has in flight.
///
/// Every client of a process records into [`RedisClientMetrics::global`] unless given its own
/// (`ClusterRedisClient::new().prometheus(...)`); register it in the registry your
/// `/metrics` serves with [`register`](Self::register). Cheap to clone; clones share the series.
///
/// ```
/// use baseplate_config::RawConfig;
/// use baseplate_redis_cluster::{ClusterRedisClient, RedisClientMetrics};
/// use prometheus_client::encoding::prometheus_text;
/// use prometheus_client::registry::Registry;
///
/// let metrics = RedisClientMetrics::new();
/// let mut registry = Registry::default();
/// metrics.register(&mut registry);
///
/// let config: RawConfig = [("foo.url", "redis://127.0.0.1:7000/0")].into_iter().collect();
/// let _foo = ClusterRedisClient::new().prometheus(metrics).parse("foo", &config)?;
/// let mut text = String::new();
/// prometheus_text::encode(&mut text, &registry)?;
/// assert!(text.contains("redis_client_pool_max_size{redis_pool=\"foo\"} 50\n"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Default)]
pub struct RedisClientMetrics {
    families: Arc<Families>,
}

#[derive(Default)]
struct Families {
    latency: Family<CommandLabels, LatencyHistogram>,
    requests: Family<CommandLabels, Counter>,
    active: Family<ActiveLabels, Gauge>,
    pool_max_size: Family<PoolLabels, Gauge>,
    pool_active: Family<PoolLabels, Gauge>,
    caches: Arc<CacheSources>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CommandLabels {
    redis_command: String,
    redis_database: String,
    redis_client_name: String,
    redis_type: &'static str,
    redis_success: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActiveLabels {
    redis_command: String,
    redis_database: String,
    redis_client_name: String,
    redis_type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    redis_pool: String,
}

impl fmt::Debug for RedisClientMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisClientMetrics").finish_non_exhaustive()
    }
}

impl RedisClientMetrics {
    /// A set of series of its own, recorded only by the clients given it.
    pub fn new() -> Self {
        Self::default()
    }

    /// The process's set, which every client records into by default (as baseplate.py's clients
    /// record into `prometheus_client`'s default registry).
    pub fn global() -> &'static Self {
        static GLOBAL: OnceLock<RedisClientMetrics> = OnceLock::new();
        GLOBAL.get_or_init(Self::new)
    }

    /// Registers the series in `registry`, under baseplate.py's names. Register a set once per
    /// registry; any number of registries may show the same set.
    pub fn register(&self, registry: &mut Registry) {
        let f = &self.families;
        registry.register(
            "redis_client_latency_seconds",
            "Latency histogram for calls made by clients",
            f.latency.clone(),
        );
        registry.register(
            "redis_client_requests",
            "Total number of requests made by client",
            f.requests.clone(),
        );
        registry.register(
            "redis_client_active_requests",
            "Number of active requests for a given client",
            f.active.clone(),
        );
        registry.register(
            "redis_client_pool_max_size",
            "Maximum number of connections allowed in this redis client connection pool",
            f.pool_max_size.clone(),
        );
        registry.register(
            "redis_client_pool_active_connections",
            "Number of open connections in this redis client connection pool",
            f.pool_active.clone(),
        );
        registry.register_collector(Box::new(Arc::clone(&f.caches)));
    }

    /// Reads the hot-key cache counters of the client `pool` from `read` at each scrape, until
    /// `read` returns `None` (the client is gone).
    pub(crate) fn cache(&self, pool: &str, read: CacheReader) {
        self.families
            .caches
            .sources
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((pool.to_owned(), read));
    }

    /// The series of one client, labelled `redis_client_name = client_name`.
    pub(crate) fn client(&self, client_name: &str) -> ClientSeries {
        ClientSeries {
            metrics: self.clone(),
            client_name: client_name.into(),
            commands: Arc::default(),
        }
    }

    /// The gauge of the client `pool`'s open connections, its size gauge set to `max_size`.
    pub(crate) fn pool(&self, pool: &str, max_size: usize) -> Gauge {
        let labels = PoolLabels {
            redis_pool: pool.to_owned(),
        };
        let max = self.families.pool_max_size.get_or_create_owned(&labels);
        max.set(i64::try_from(max_size).unwrap_or(i64::MAX));
        self.families.pool_active.get_or_create_owned(&labels)
    }
}

/// Reads one client's hot-key cache counters; `None` once the client is gone.
pub(crate) type CacheReader = Box<dyn Fn() -> Option<CacheStats> + Send + Sync>;

/// A cache series: its name, its help and how its value is read.
type CacheSeries = (&'static str, &'static str, fn(&CacheStats) -> u64);

/// The series of each client's hot-key cache, read when scraped: the counters
/// `redis_client_cache_hits_total`, `redis_client_cache_misses_total` and
/// `redis_client_cache_invalidations_total`, and the gauges `redis_client_cache_keys` and
/// `redis_client_cache_bytes`, labelled `redis_pool` like the pool's series.
#[derive(Default)]
struct CacheSources {
    sources: Mutex<Vec<(String, CacheReader)>>,
}

impl fmt::Debug for CacheSources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheSources").finish_non_exhaustive()
    }
}

impl Collector for CacheSources {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let mut sources = self.sources.lock().unwrap_or_else(PoisonError::into_inner);
        let mut read = Vec::with_capacity(sources.len());
        sources.retain(|(pool, reader)| match reader() {
            Some(stats) => {
                read.push((
                    PoolLabels {
                        redis_pool: pool.clone(),
                    },
                    stats,
                ));
                true
            }
            None => false,
        });
        drop(sources);
        if read.is_empty() {
            return Ok(());
        }
        let series: [CacheSeries; 3] = [
            (
                "redis_client_cache_hits",
                "Reads of hot keys answered from the client's memory",
                |s| s.hits,
            ),
            (
                "redis_client_cache_misses",
                "Reads of hot keys that went to Redis",
                |s| s.misses,
            ),
            (
                "redis_client_cache_invalidations",
                "Cached replies dropped because their key changed or to make room",
                |s| s.invalidations,
            ),
        ];
        encode_cache_series(&mut encoder, &read, &series, ConstCounter::<u64>::new)?;
        let held: [CacheSeries; 2] = [
            (
                "redis_client_cache_keys",
                "Keys whose replies the client's memory holds",
                |s| s.keys,
            ),
            (
                "redis_client_cache_bytes",
                "Bytes the cached keys and replies hold, as cache_max_bytes counts them",
                |s| s.bytes,
            ),
        ];
        encode_cache_series(&mut encoder, &read, &held, ConstGauge::<u64>::new)?;
        Ok(())
    }
}

/// Encodes each of `series` as the metric `metric` makes of a value, one per client `read`.
fn encode_cache_series<M: EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    read: &[(PoolLabels, CacheStats)],
    series: &[CacheSeries],
    metric: impl Fn(u64) -> M,
) -> Result<(), fmt::Error> {
    for &(name, help, value) in series {
        let kind = metric(0).metric_type();
        let mut family = encoder.encode_descriptor(name, help, None, kind)?;
        for (labels, stats) in read {
            metric(value(stats)).encode(family.encode_family(labels)?)?;
        }
    }
    Ok(())
}

/// Counts a command in `redis_client_active_requests` until dropped.
#[derive(Debug)]
pub(crate) struct ActiveGuard(Gauge);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// How many distinct command names a client keeps ready-made series for; names past these (a
/// caller sending arbitrary command names, say) look their series up on each call instead.
const CACHED_COMMANDS: usize = 1024;

/// One client's series, with each command's series looked up once and kept.
#[derive(Clone)]
pub(crate) struct ClientSeries {
    metrics: RedisClientMetrics,
    client_name: Arc<str>,
    commands: Arc<RwLock<CommandCache>>,
}

/// Each command name's series, by the name as sent.
type CommandCache = HashMap<Box<[u8]>, Arc<CommandSeries>>;

impl fmt::Debug for ClientSeries {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientSeries")
            .field("client_name", &self.client_name)
            .finish_non_exhaustive()
    }
}

/// The series of one `redis_command` value. Each outcome's series appear once a command had
/// that outcome, as baseplate.py's do.
pub(crate) struct CommandSeries {
    families: Arc<Families>,
    labels: ActiveLabels,
    active: Gauge,
    /// Latency and requests, failed (`[0]`) and succeeded (`[1]`).
    outcomes: [OnceLock<(LatencyHistogram, Counter)>; 2],
}

impl CommandSeries {
    /// Counts the command in flight until the guard drops.
    pub(crate) fn start(&self) -> ActiveGuard {
        self.active.inc();
        ActiveGuard(self.active.clone())
    }

    /// Records one finished command.
    pub(crate) fn finish(&self, elapsed: Duration, success: bool) {
        let (latency, requests) = self.outcomes[usize::from(success)].get_or_init(|| {
            let labels = CommandLabels {
                redis_command: self.labels.redis_command.clone(),
                redis_database: self.labels.redis_database.clone(),
                redis_client_name: self.labels.redis_client_name.clone(),
                redis_type: self.labels.redis_type,
                redis_success: if success { "true" } else { "false" },
            };
            (
                self.families.latency.get_or_create_owned(&labels),
                self.families.requests.get_or_create_owned(&labels),
            )
        });
        latency.observe(elapsed.as_secs_f64());
        requests.inc();
    }
}

impl ClientSeries {
    /// The series of `name` (a command's name as sent, or a pipeline's label value).
    pub(crate) fn command(&self, name: CommandName<'_>) -> Arc<CommandSeries> {
        let key: &[u8] = match name {
            CommandName::Command(name) => name,
            CommandName::Label(label) => label.as_bytes(),
        };
        let commands = self.commands.read().unwrap_or_else(PoisonError::into_inner);
        if let Some(series) = commands.get(key) {
            return Arc::clone(series);
        }
        drop(commands);
        let redis_command = match name {
            CommandName::Command(name) => String::from_utf8_lossy(name).to_lowercase(),
            CommandName::Label(label) => label.to_owned(),
        };
        let series = Arc::new(self.make(redis_command));
        let mut commands = self
            .commands
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if commands.len() < CACHED_COMMANDS {
            commands.insert(key.into(), Arc::clone(&series));
        }
        series
    }

    fn make(&self, redis_command: String) -> CommandSeries {
        let families = Arc::clone(&self.metrics.families);
        let labels = ActiveLabels {
            redis_command,
            // A Redis Cluster has only database 0, which baseplate.py reports as "0".
            redis_database: "0".to_owned(),
            redis_client_name: self.client_name.to_string(),
            redis_type: "cluster",
        };
        CommandSeries {
            active: families.active.get_or_create_owned(&labels),
            families,
            labels,
            outcomes: [OnceLock::new(), OnceLock::new()],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(metrics: &RedisClientMetrics) -> String {
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        text
    }

    #[test]
    fn a_command_is_one_series_per_outcome_with_baseplates_labels() {
        let metrics = RedisClientMetrics::new();
        let client = metrics.client("");
        let get = client.command(CommandName::Command(b"get"));
        assert!(Arc::ptr_eq(
            &get,
            &client.command(CommandName::Command(b"get"))
        ));
        get.finish(Duration::from_micros(300), true);
        client
            .command(CommandName::Command(b"GET"))
            .finish(Duration::from_millis(2), false);
        let text = text(&metrics);
        let labels =
            r#"redis_command="get",redis_database="0",redis_client_name="",redis_type="cluster""#;
        assert!(
            text.contains(&format!(
                "redis_client_requests_total{{{labels},redis_success=\"true\"}} 1\n"
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "redis_client_requests_total{{{labels},redis_success=\"false\"}} 1\n"
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "redis_client_latency_seconds_bucket{{le=\"0.0005\",{labels},redis_success=\"true\"}} 1\n"
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!("redis_client_active_requests{{{labels}}} 0\n")),
            "{text}"
        );
    }

    #[test]
    fn active_requests_count_what_is_in_flight_and_outcomes_appear_once_seen() {
        let metrics = RedisClientMetrics::new();
        let open = metrics.pool("foo", 7);
        open.inc();
        let pipeline = metrics
            .client("svc")
            .command(CommandName::Label("pipeline"));
        let held = pipeline.start();
        let during = text(&metrics);
        drop(held);
        let after = text(&metrics);
        assert!(!after.contains("redis_client_requests_total{"), "{after}");
        let labels = r#"redis_command="pipeline",redis_database="0",redis_client_name="svc",redis_type="cluster""#;
        for (text, active) in [(&during, 1), (&after, 0)] {
            assert!(
                text.contains(&format!(
                    "redis_client_active_requests{{{labels}}} {active}\n"
                )),
                "{text}"
            );
        }
        assert!(during.contains("redis_client_pool_max_size{redis_pool=\"foo\"} 7\n"));
        assert!(during.contains("redis_client_pool_active_connections{redis_pool=\"foo\"} 1\n"));
    }

    #[test]
    fn cache_counters_are_read_at_each_scrape_until_their_client_is_gone() {
        let metrics = RedisClientMetrics::new();
        assert!(
            !text(&metrics).contains("redis_client_cache"),
            "no cache, no series"
        );
        let stats = Arc::new(Mutex::new(Some(CacheStats {
            hits: 7,
            misses: 2,
            invalidations: 1,
            keys: 3,
            bytes: 930,
        })));
        let shared = Arc::clone(&stats);
        metrics.cache("foo", Box::new(move || *shared.lock().unwrap()));
        let scraped = text(&metrics);
        for line in [
            "# TYPE redis_client_cache_hits counter\n",
            "redis_client_cache_hits_total{redis_pool=\"foo\"} 7\n",
            "redis_client_cache_misses_total{redis_pool=\"foo\"} 2\n",
            "redis_client_cache_invalidations_total{redis_pool=\"foo\"} 1\n",
            "# TYPE redis_client_cache_keys gauge\n",
            "redis_client_cache_keys{redis_pool=\"foo\"} 3\n",
            "# TYPE redis_client_cache_bytes gauge\n",
            "redis_client_cache_bytes{redis_pool=\"foo\"} 930\n",
        ] {
            assert!(scraped.contains(line), "{line} in {scraped}");
        }
        stats.lock().unwrap().as_mut().unwrap().hits = 9;
        assert!(text(&metrics).contains("redis_client_cache_hits_total{redis_pool=\"foo\"} 9\n"));
        *stats.lock().unwrap() = None;
        assert!(!text(&metrics).contains("redis_client_cache"));
    }
}
