//! Configuration: the keys baseplate.py's `cluster_pool_from_config` reads, parsed into [`ClusterOptions`],
//! with overrides in code winning over the config file, as baseplate's `**kwargs` do.
//!
//! This file holds the options, the [`ClusterRedisClient`] parser with its overrides, and the keys
//! as written; the `url` key's seeds and query parameters are parsed in `config/url.rs`, and the
//! `ssl_*` settings merged into [`TlsOptions`] in `config/tls_options.rs`.

mod tls_options;
mod url;

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use baseplate_config::{ConfigWarning, RawConfig, UnknownKeys};
use baseplate_hotkeys::{TrackKeyMode, TrackerOptions};
use serde::Deserialize;

use self::tls_options::tls_options;
pub use self::url::RedisUrl;
use self::url::{UrlSettings, parse_seeds};
use crate::cache::{
    DEFAULT_CACHE_MAX_BYTES, DEFAULT_CACHE_MAX_KEYS, DEFAULT_CACHE_TTL, HotKeyCacheOptions,
};
use crate::error::ClusterConfigError;
use crate::factory::ClusterRedisContextFactory;
use crate::metrics::RedisClientMetrics;
use crate::pool::ClusterPool;
use crate::tls::{CertReqs, TlsOptions};

/// `max_connections` when the config does not set it (baseplate's default).
pub const DEFAULT_MAX_CONNECTIONS: usize = 50;

/// How long a command waits for a pool permit when `timeout` is not set: redis-py's
/// `BlockingConnectionPool` default, which baseplate.py inherits.
pub const DEFAULT_POOL_WAIT: Duration = Duration::from_secs(20);

/// The prefix baseplate.py's `cluster_pool_from_config` reads when it is given none:
/// `rediscluster.url`, `rediscluster.max_connections`, ...
///
/// ```
/// use baseplate_config::RawConfig;
/// use baseplate_redis_cluster::{DEFAULT_PREFIX, cluster_pool_from_config};
///
/// let config: RawConfig = [("rediscluster.url", "redis://127.0.0.1:7000")].into_iter().collect();
/// let pool = cluster_pool_from_config(&config, DEFAULT_PREFIX)?;
/// assert_eq!(pool.name(), "rediscluster");
/// # Ok::<(), baseplate_redis_cluster::ClusterConfigError>(())
/// ```
pub const DEFAULT_PREFIX: &str = "rediscluster.";

/// The options of one cluster client, as parsed from `{prefix}*` keys and overrides.
///
/// | key | type | default | meaning |
/// |---|---|---|---|
/// | `url` | string | required | `redis://[user:password@]host:port[/0]` (`rediss://` for TLS); several seeds comma-separated |
/// | `max_connections` | integer | 50 | commands in flight at once (the pool's size) |
/// | `timeout` | timespan | none | wait for a pool permit; also the two socket timeouts unless they are set; above zero, as are the two below |
/// | `socket_connect_timeout` | timespan | `timeout` | bound on opening the cluster connection |
/// | `socket_timeout` | timespan | `timeout` | bound on each command's response, retries included |
/// | `read_from_replicas` | boolean | true | reads go to a random node among a slot's primary and replicas |
/// | `track_key_reads_sample_rate` | float 0..=1 | 0 | share of read commands sampled by the hot-key tracker |
/// | `track_key_writes_sample_rate` | float 0..=1 | 0 | share of write commands sampled |
/// | `track_key_mode` | `aggregated` or `direct` | aggregated | how the tracker writes its sorted sets |
/// | `track_key_flush_interval` | timespan | 10 seconds | aggregated mode's flush period |
/// | `track_key_max_keys` | integer | 10000 | members each tracker set keeps at most |
/// | `cache_hot_keys` | boolean | false | serve reads of the process's hottest keys from memory, invalidated by the server (RESP3 `CLIENT TRACKING`) |
/// | `cache_max_keys` | integer | 10000 | hot read keys whose replies are cached, at most |
/// | `cache_max_bytes` | integer | 67108864 (64 MiB) | bytes the cached keys and replies hold, at most (a larger reply is not cached) |
/// | `cache_ttl` | timespan | 10 seconds | the longest a cached reply is kept, whatever the server says |
/// | `ssl_ca_certs` | path | system roots | PEM CA certificates that sign the nodes' certificates (`rediss://` only) |
/// | `ssl_certfile`, `ssl_keyfile` | path | none | PEM client certificate and its key, for nodes that require one (the key may be in `ssl_certfile`) |
/// | `ssl_cert_reqs` | `required`, `optional` or `none` | required | whether the nodes' certificates are verified (`optional` is `required` for a client) |
/// | `ssl_check_hostname` | boolean | true | whether a node's certificate must name the host it was reached at |
/// | `max_connections_per_node`, `skip_full_coverage_check`, `nodemanager_follow_cluster`, `decode_responses` | boolean | — | accepted for compatibility with baseplate.py; no meaning here |
///
/// The URL's query parameters are applied as redis-py applies them, where they mean something
/// here: `socket_timeout` and `socket_connect_timeout` (seconds, `?socket_timeout=0.5`),
/// `max_connections`, `db` (only `0`) and the `ssl_*` keys
/// (`rediss://host:7000/0?ssl_ca_certs=/etc/redis/ca.pem`). Any other parameter is an error naming
/// it. Overrides in code, then config keys, win over the URL; redis-py lets the URL win over
/// keyword arguments.
///
/// A key under the prefix that none of these is, baseplate.py ignores; so does the parser, which
/// lists it in [`config_warnings`](Self::config_warnings) with the nearest known key, unless
/// [`ClusterRedisClient::unknown_keys`] asks for [`UnknownKeys::Reject`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ClusterOptions {
    /// The seed nodes from `url`.
    pub seeds: Vec<RedisUrl>,
    /// How many commands may be in flight at once.
    pub max_connections: usize,
    /// How long a command waits for a free permit before failing with [`crate::PoolTimeout`].
    pub pool_wait: Duration,
    /// Bound on opening a cluster connection (`socket_connect_timeout`, else `timeout`).
    pub connect_timeout: Option<Duration>,
    /// Bound on each command's response (`socket_timeout`, else `timeout`).
    pub response_timeout: Option<Duration>,
    /// Whether reads may go to replicas.
    pub read_from_replicas: bool,
    /// The hot-key tracker's options (rates, mode, flush interval, set size).
    pub tracker: TrackerOptions,
    /// TLS settings when the seeds are `rediss://`; `None` for `redis://`.
    pub tls: Option<TlsOptions>,
    /// The hot-key cache's bounds when `cache_hot_keys` is on; `None` when it is off.
    pub cache: Option<HotKeyCacheOptions>,
    /// The `redis_client_name` label of the Prometheus series, empty unless set in code with
    /// [`ClusterRedisClient::redis_client_name`].
    pub redis_client_name: String,
    /// Where the client's Prometheus series are recorded: [`RedisClientMetrics::global`] unless
    /// set in code with [`ClusterRedisClient::prometheus`].
    pub prometheus: RedisClientMetrics,
    /// What the config set that was ignored: keys under the prefix that no option reads (each
    /// naming the nearest known key). [`ClusterRedisClient::pool_from_config`] logs them.
    pub config_warnings: Vec<ConfigWarning>,
}

/// Configures a cluster client from an app config; what `configure_context` calls with the
/// client's name as the prefix. Settings made here win over the config file.
///
/// ```
/// use std::time::Duration;
/// use baseplate_config::RawConfig;
/// use baseplate_redis_cluster::ClusterRedisClient;
///
/// let config: RawConfig = [("foo.url", "redis://127.0.0.1:7000/0"), ("foo.max_connections", "99")]
///     .into_iter()
///     .collect();
/// let options = ClusterRedisClient::new()
///     .timeout(Duration::from_secs(3))
///     .options_from_config(&config, "foo.")?;
/// assert_eq!(options.max_connections, 99);
/// assert_eq!(options.response_timeout, Some(Duration::from_secs(3)));
/// # Ok::<(), baseplate_redis_cluster::ClusterConfigError>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct ClusterRedisClient {
    overrides: Overrides,
}

#[derive(Clone, Debug, Default)]
struct Overrides {
    max_connections: Option<usize>,
    timeout: Option<Duration>,
    socket_connect_timeout: Option<Duration>,
    socket_timeout: Option<Duration>,
    read_from_replicas: Option<bool>,
    track_key_reads_sample_rate: Option<f64>,
    track_key_writes_sample_rate: Option<f64>,
    track_key_mode: Option<TrackKeyMode>,
    track_key_flush_interval: Option<Duration>,
    track_key_max_keys: Option<usize>,
    ssl_ca_certs: Option<PathBuf>,
    ssl_certfile: Option<PathBuf>,
    ssl_keyfile: Option<PathBuf>,
    ssl_cert_reqs: Option<CertReqs>,
    ssl_check_hostname: Option<bool>,
    cache_hot_keys: Option<bool>,
    cache_max_keys: Option<usize>,
    cache_max_bytes: Option<usize>,
    cache_ttl: Option<Duration>,
    redis_client_name: Option<String>,
    prometheus: Option<RedisClientMetrics>,
    unknown_keys: Option<UnknownKeys>,
}

impl ClusterRedisClient {
    /// A parser with no overrides: everything comes from the config.
    pub fn new() -> Self {
        Self::default()
    }

    /// Overrides `max_connections`.
    pub fn max_connections(mut self, max_connections: usize) -> Self {
        self.overrides.max_connections = Some(max_connections);
        self
    }

    /// Overrides `timeout`.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.overrides.timeout = Some(timeout);
        self
    }

    /// Overrides `socket_connect_timeout`.
    pub fn socket_connect_timeout(mut self, timeout: Duration) -> Self {
        self.overrides.socket_connect_timeout = Some(timeout);
        self
    }

    /// Overrides `socket_timeout`.
    pub fn socket_timeout(mut self, timeout: Duration) -> Self {
        self.overrides.socket_timeout = Some(timeout);
        self
    }

    /// Overrides `read_from_replicas`.
    pub fn read_from_replicas(mut self, read_from_replicas: bool) -> Self {
        self.overrides.read_from_replicas = Some(read_from_replicas);
        self
    }

    /// Overrides `track_key_reads_sample_rate`.
    pub fn track_key_reads_sample_rate(mut self, rate: f64) -> Self {
        self.overrides.track_key_reads_sample_rate = Some(rate);
        self
    }

    /// Overrides `track_key_writes_sample_rate`.
    pub fn track_key_writes_sample_rate(mut self, rate: f64) -> Self {
        self.overrides.track_key_writes_sample_rate = Some(rate);
        self
    }

    /// Overrides `track_key_mode`.
    pub fn track_key_mode(mut self, mode: TrackKeyMode) -> Self {
        self.overrides.track_key_mode = Some(mode);
        self
    }

    /// Overrides `track_key_flush_interval`.
    pub fn track_key_flush_interval(mut self, interval: Duration) -> Self {
        self.overrides.track_key_flush_interval = Some(interval);
        self
    }

    /// Overrides `track_key_max_keys`.
    pub fn track_key_max_keys(mut self, max_keys: usize) -> Self {
        self.overrides.track_key_max_keys = Some(max_keys);
        self
    }

    /// Overrides `ssl_ca_certs`: the PEM CA certificates that sign the nodes' certificates.
    pub fn ssl_ca_certs(mut self, path: impl Into<PathBuf>) -> Self {
        self.overrides.ssl_ca_certs = Some(path.into());
        self
    }

    /// Overrides `ssl_certfile`: a PEM client certificate, for nodes that require one.
    pub fn ssl_certfile(mut self, path: impl Into<PathBuf>) -> Self {
        self.overrides.ssl_certfile = Some(path.into());
        self
    }

    /// Overrides `ssl_keyfile`: the client certificate's PEM key, when not in `ssl_certfile`.
    pub fn ssl_keyfile(mut self, path: impl Into<PathBuf>) -> Self {
        self.overrides.ssl_keyfile = Some(path.into());
        self
    }

    /// Overrides `ssl_cert_reqs`.
    pub fn ssl_cert_reqs(mut self, cert_reqs: CertReqs) -> Self {
        self.overrides.ssl_cert_reqs = Some(cert_reqs);
        self
    }

    /// Overrides `ssl_check_hostname`.
    pub fn ssl_check_hostname(mut self, check: bool) -> Self {
        self.overrides.ssl_check_hostname = Some(check);
        self
    }

    /// Overrides `cache_hot_keys`.
    pub fn cache_hot_keys(mut self, cache: bool) -> Self {
        self.overrides.cache_hot_keys = Some(cache);
        self
    }

    /// Overrides `cache_max_keys`.
    pub fn cache_max_keys(mut self, max_keys: usize) -> Self {
        self.overrides.cache_max_keys = Some(max_keys);
        self
    }

    /// Overrides `cache_max_bytes`.
    pub fn cache_max_bytes(mut self, max_bytes: usize) -> Self {
        self.overrides.cache_max_bytes = Some(max_bytes);
        self
    }

    /// Overrides `cache_ttl`.
    pub fn cache_ttl(mut self, ttl: Duration) -> Self {
        self.overrides.cache_ttl = Some(ttl);
        self
    }

    /// Names the client in its Prometheus series (`redis_client_name`), as baseplate.py's
    /// `ClusterRedisClient(redis_client_name=...)` does; empty by default.
    pub fn redis_client_name(mut self, name: impl Into<String>) -> Self {
        self.overrides.redis_client_name = Some(name.into());
        self
    }

    /// Records the client's Prometheus series into `metrics` instead of
    /// [`RedisClientMetrics::global`].
    pub fn prometheus(mut self, metrics: RedisClientMetrics) -> Self {
        self.overrides.prometheus = Some(metrics);
        self
    }

    /// What a key under the prefix that no option reads is: a warning, as baseplate.py ignores
    /// it ([`UnknownKeys::Warn`], the default), or an error ([`UnknownKeys::Reject`]).
    ///
    /// ```
    /// use baseplate_config::{RawConfig, UnknownKeys};
    /// use baseplate_redis_cluster::ClusterRedisClient;
    ///
    /// let config: RawConfig = [("foo.url", "redis://127.0.0.1:7000"), ("foo.max_conections", "9")]
    ///     .into_iter()
    ///     .collect();
    /// let options = ClusterRedisClient::new().options_from_config(&config, "foo.")?;
    /// assert_eq!(options.max_connections, 50);
    /// assert_eq!(
    ///     options.config_warnings[0].to_string(),
    ///     "foo.max_conections: unknown key, ignored; did you mean foo.max_connections?"
    /// );
    ///
    /// let strict = ClusterRedisClient::new().unknown_keys(UnknownKeys::Reject);
    /// let error = strict.options_from_config(&config, "foo.").unwrap_err();
    /// assert_eq!(error.to_string(), "foo.max_conections: unknown key; did you mean foo.max_connections?");
    /// # Ok::<(), baseplate_redis_cluster::ClusterConfigError>(())
    /// ```
    pub fn unknown_keys(mut self, unknown_keys: UnknownKeys) -> Self {
        self.overrides.unknown_keys = Some(unknown_keys);
        self
    }

    /// Parses the client named `key_path` (keys `{key_path}.url`, ...; a trailing dot is
    /// optional, as everywhere a prefix is taken) into its context factory, as baseplate's
    /// `ClusterRedisClient.parse` does, logging the keys it ignored (see
    /// [`pool_from_config`](Self::pool_from_config)). Nothing connects yet.
    ///
    /// # Errors
    /// A [`ClusterConfigError`] naming the first bad or missing key (or unknown key, when
    /// [`unknown_keys`](Self::unknown_keys) rejects them).
    pub fn parse(
        &self,
        key_path: &str,
        raw_config: &RawConfig,
    ) -> Result<ClusterRedisContextFactory, ClusterConfigError> {
        let pool = self.pool_from_config(raw_config, key_path)?;
        Ok(ClusterRedisContextFactory::new(pool))
    }

    /// Builds the pool from the keys under `prefix` (the client's name: `foo.` as baseplate.py
    /// writes it, or `foo`; the pool is named `foo` either way), as baseplate.py's
    /// `cluster_pool_from_config(app_config, prefix, **kwargs)` does with this parser's settings
    /// as its keyword arguments. Keys it ignored (see [`unknown_keys`](Self::unknown_keys)) are
    /// logged at `warn` level, once each, naming the nearest known key. Nothing connects yet.
    ///
    /// ```
    /// use std::time::Duration;
    /// use baseplate_config::RawConfig;
    /// use baseplate_redis_cluster::{ClusterRedisClient, DEFAULT_PREFIX};
    ///
    /// let config: RawConfig = [("rediscluster.url", "redis://127.0.0.1:7000")].into_iter().collect();
    /// let pool = ClusterRedisClient::new()
    ///     .max_connections(10)
    ///     .timeout(Duration::from_millis(200))
    ///     .pool_from_config(&config, DEFAULT_PREFIX)?;
    /// assert_eq!(pool.stats().size, 10);
    /// # Ok::<(), baseplate_redis_cluster::ClusterConfigError>(())
    /// ```
    ///
    /// # Errors
    /// A [`ClusterConfigError`] naming the first bad or missing key (or unknown key, when
    /// [`unknown_keys`](Self::unknown_keys) rejects them).
    pub fn pool_from_config(
        &self,
        raw_config: &RawConfig,
        prefix: &str,
    ) -> Result<ClusterPool, ClusterConfigError> {
        let options = self.options_from_config(raw_config, prefix)?;
        let name = client_name(raw_config, prefix)?;
        for warning in &options.config_warnings {
            tracing::warn!(client = name, key = warning.key(), "{warning}");
        }
        ClusterPool::new(&name, options)
    }

    /// Parses and validates the options under `prefix` (`foo.` or `foo`), overrides
    /// applied. Keys it ignored are in [`ClusterOptions::config_warnings`], not logged.
    ///
    /// # Errors
    /// A [`ClusterConfigError`] naming the first bad or missing key (or unknown key, when
    /// [`unknown_keys`](Self::unknown_keys) rejects them).
    pub fn options_from_config(
        &self,
        raw_config: &RawConfig,
        prefix: &str,
    ) -> Result<ClusterOptions, ClusterConfigError> {
        let prefix = &format!("{}.", client_name(raw_config, prefix)?);
        let o = &self.overrides;
        let (raw, config_warnings): (RawOptions, _) =
            raw_config.parse_with(prefix, o.unknown_keys.unwrap_or_default())?;
        let key = |name: &str| format!("{prefix}{name}");
        let invalid = |name: &str, reason: String| ClusterConfigError::Invalid {
            key: key(name),
            reason,
        };

        let (seeds, url_params) = parse_seeds(&raw.url).map_err(|reason| invalid("url", reason))?;
        let from_url = UrlSettings::parse(&url_params).map_err(|reason| invalid("url", reason))?;
        let max_connections = o
            .max_connections
            .or(raw.max_connections)
            .or(from_url.max_connections)
            .unwrap_or(DEFAULT_MAX_CONNECTIONS);
        if max_connections == 0 {
            return Err(invalid("max_connections", "must be at least 1".into()));
        }
        let timeout = o.timeout.or(raw.timeout);
        // A zero bound would fail every call before it starts (and mobc refuses a zero wait).
        for (name, bound) in [
            ("timeout", timeout),
            ("socket_timeout", o.socket_timeout.or(raw.socket_timeout)),
            (
                "socket_connect_timeout",
                o.socket_connect_timeout.or(raw.socket_connect_timeout),
            ),
        ] {
            if bound.is_some_and(|bound| bound.is_zero()) {
                return Err(invalid(name, "must be longer than zero".into()));
            }
        }
        let rate = |name: &str, value: f64| {
            if (0.0..=1.0).contains(&value) {
                Ok(value)
            } else {
                Err(invalid(
                    name,
                    format!("{value} is not a rate between 0 and 1"),
                ))
            }
        };
        let reads = rate(
            "track_key_reads_sample_rate",
            o.track_key_reads_sample_rate
                .unwrap_or(raw.track_key_reads_sample_rate),
        )?;
        let writes = rate(
            "track_key_writes_sample_rate",
            o.track_key_writes_sample_rate
                .unwrap_or(raw.track_key_writes_sample_rate),
        )?;
        let track_key_max_keys = o.track_key_max_keys.unwrap_or(raw.track_key_max_keys);
        let track_key_flush_interval = o
            .track_key_flush_interval
            .unwrap_or(raw.track_key_flush_interval);
        if track_key_max_keys == 0 {
            return Err(invalid("track_key_max_keys", "must be at least 1".into()));
        }
        if track_key_flush_interval.is_zero() {
            return Err(invalid(
                "track_key_flush_interval",
                "must be longer than zero".into(),
            ));
        }
        let cache_max_keys = NonZeroUsize::new(o.cache_max_keys.unwrap_or(raw.cache_max_keys))
            .ok_or_else(|| invalid("cache_max_keys", "must be at least 1".into()))?;
        let cache_max_bytes =
            NonZeroUsize::new(o.cache_max_bytes.unwrap_or(raw.cache_max_bytes))
                .ok_or_else(|| invalid("cache_max_bytes", "must be at least 1".into()))?;
        let cache_ttl = o.cache_ttl.unwrap_or(raw.cache_ttl);
        if cache_ttl.is_zero() {
            return Err(invalid("cache_ttl", "must be longer than zero".into()));
        }
        let cache = o.cache_hot_keys.unwrap_or(raw.cache_hot_keys).then(|| {
            HotKeyCacheOptions::new(cache_max_keys, cache_ttl).with_max_bytes(cache_max_bytes)
        });
        let tracker = TrackerOptions::default()
            .with_hot_reads(cache.map_or(0, |cache| cache.max_keys.get()))
            .with_reads_sample_rate(reads)
            .with_writes_sample_rate(writes)
            .with_mode(o.track_key_mode.unwrap_or(raw.track_key_mode))
            .with_flush_interval(track_key_flush_interval)
            .with_max_keys(track_key_max_keys);

        // An explicit socket timeout, wherever it is set, wins over the one `timeout` implies.
        let connect_timeout = o
            .socket_connect_timeout
            .or(raw.socket_connect_timeout)
            .or(from_url.socket_connect_timeout)
            .or(timeout);
        let response_timeout = o
            .socket_timeout
            .or(raw.socket_timeout)
            .or(from_url.socket_timeout)
            .or(timeout);
        let read_from_replicas = o.read_from_replicas.unwrap_or(raw.read_from_replicas);
        let tls = tls_options(&seeds, raw, o, url_params)
            .map_err(|(name, reason)| invalid(name, reason))?;

        Ok(ClusterOptions {
            redis_client_name: o.redis_client_name.clone().unwrap_or_default(),
            prometheus: o
                .prometheus
                .clone()
                .unwrap_or_else(|| RedisClientMetrics::global().clone()),
            seeds,
            max_connections,
            pool_wait: timeout.unwrap_or(DEFAULT_POOL_WAIT),
            connect_timeout,
            response_timeout,
            read_from_replicas,
            tracker,
            tls,
            cache,
            config_warnings,
        })
    }
}

/// Builds a pool from the keys under `prefix` ([`DEFAULT_PREFIX`], `"rediscluster."`, is
/// baseplate.py's default), as baseplate.py's function of the same name does; keys it ignored are
/// logged. With settings in code (baseplate.py's `**kwargs`), call
/// [`ClusterRedisClient::pool_from_config`] on a configured [`ClusterRedisClient`] instead.
///
/// ```
/// use baseplate_config::RawConfig;
/// use baseplate_redis_cluster::{DEFAULT_PREFIX, cluster_pool_from_config};
///
/// let config: RawConfig = [("rediscluster.url", "redis://127.0.0.1:7000")].into_iter().collect();
/// let pool = cluster_pool_from_config(&config, DEFAULT_PREFIX)?;
/// assert_eq!(pool.stats().size, 50);
/// # Ok::<(), baseplate_redis_cluster::ClusterConfigError>(())
/// ```
///
/// # Errors
/// A [`ClusterConfigError`] naming the first bad or missing key.
pub fn cluster_pool_from_config(
    raw_config: &RawConfig,
    prefix: &str,
) -> Result<ClusterPool, ClusterConfigError> {
    ClusterRedisClient::new().pool_from_config(raw_config, prefix)
}

/// The client's name in a config prefix: `foo` for `foo.` or `foo`.
fn client_name(raw_config: &RawConfig, prefix: &str) -> Result<String, ClusterConfigError> {
    let name = raw_config.prefix(prefix).path().to_owned();
    if name.is_empty() {
        return Err(ClusterConfigError::Prefix {
            prefix: prefix.to_owned(),
        });
    }
    Ok(name)
}

/// The keys as written in the config; [`ClusterRedisClient::options_from_config`] validates them.
#[derive(Deserialize)]
struct RawOptions {
    url: String,
    max_connections: Option<usize>,
    timeout: Option<Duration>,
    socket_connect_timeout: Option<Duration>,
    socket_timeout: Option<Duration>,
    #[serde(default = "default_true")]
    read_from_replicas: bool,
    #[serde(default)]
    track_key_reads_sample_rate: f64,
    #[serde(default)]
    track_key_writes_sample_rate: f64,
    #[serde(default)]
    track_key_mode: TrackKeyMode,
    #[serde(default = "default_flush_interval")]
    track_key_flush_interval: Duration,
    #[serde(default = "default_max_keys")]
    track_key_max_keys: usize,
    ssl_ca_certs: Option<String>,
    ssl_certfile: Option<String>,
    ssl_keyfile: Option<String>,
    ssl_cert_reqs: Option<CertReqs>,
    ssl_check_hostname: Option<bool>,
    #[serde(default)]
    cache_hot_keys: bool,
    #[serde(default = "default_cache_max_keys")]
    cache_max_keys: usize,
    #[serde(default = "default_cache_max_bytes")]
    cache_max_bytes: usize,
    #[serde(default = "default_cache_ttl")]
    cache_ttl: Duration,
    // Accepted because baseplate.py accepts them; redis-rs has no use for them: connections are
    // multiplexed (per-node limits), coverage and node discovery are its own, replies are bytes.
    #[serde(rename = "max_connections_per_node")]
    _max_connections_per_node: Option<bool>,
    #[serde(rename = "skip_full_coverage_check")]
    _skip_full_coverage_check: Option<bool>,
    #[serde(rename = "nodemanager_follow_cluster")]
    _nodemanager_follow_cluster: Option<bool>,
    #[serde(rename = "decode_responses")]
    _decode_responses: Option<bool>,
}

fn default_true() -> bool {
    true
}

fn default_flush_interval() -> Duration {
    TrackerOptions::default().flush_interval
}

fn default_cache_max_keys() -> usize {
    DEFAULT_CACHE_MAX_KEYS
}

fn default_cache_max_bytes() -> usize {
    DEFAULT_CACHE_MAX_BYTES.get()
}

fn default_cache_ttl() -> Duration {
    DEFAULT_CACHE_TTL
}

fn default_max_keys() -> usize {
    TrackerOptions::default().max_keys
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn config(pairs: &[(&str, &str)]) -> RawConfig {
        pairs.iter().copied().collect()
    }

    pub(super) fn options(pairs: &[(&str, &str)]) -> Result<ClusterOptions, ClusterConfigError> {
        ClusterRedisClient::new().options_from_config(&config(pairs), "foo.")
    }

    #[test]
    fn the_hot_key_cache_is_off_unless_asked_and_its_bounds_are_checked() {
        let url = ("foo.url", "redis://127.0.0.1:7000/0");
        let off = options(&[url]).unwrap();
        assert_eq!(off.cache, None);
        assert_eq!(off.tracker.hot_reads, 0);
        assert!(!off.tracker.is_enabled(), "nothing for the tracker to do");

        let on = options(&[url, ("foo.cache_hot_keys", "true")]).unwrap();
        let cache = on.cache.unwrap();
        assert_eq!(cache.max_keys.get(), DEFAULT_CACHE_MAX_KEYS);
        assert_eq!(cache.max_bytes, DEFAULT_CACHE_MAX_BYTES);
        assert_eq!(cache.max_bytes.get(), 64 * 1024 * 1024);
        assert_eq!(cache.ttl, DEFAULT_CACHE_TTL);
        assert_eq!(on.tracker.hot_reads, 10_000);
        assert_eq!(on.tracker.reads_sample_rate, 0.0, "the sets stay off");
        assert!(on.tracker.is_enabled());

        let bounded = options(&[
            url,
            ("foo.cache_hot_keys", "true"),
            ("foo.cache_max_keys", "50"),
            ("foo.cache_max_bytes", "4096"),
            ("foo.cache_ttl", "2 seconds"),
        ])
        .unwrap();
        assert_eq!(
            bounded.cache,
            Some(
                HotKeyCacheOptions::new(NonZeroUsize::new(50).unwrap(), Duration::from_secs(2))
                    .with_max_bytes(NonZeroUsize::new(4096).unwrap())
            )
        );
        let overridden = ClusterRedisClient::new()
            .cache_hot_keys(true)
            .cache_max_keys(7)
            .cache_max_bytes(512)
            .cache_ttl(Duration::from_secs(1))
            .options_from_config(
                &config(&[
                    url,
                    ("foo.cache_max_keys", "50"),
                    ("foo.cache_max_bytes", "4096"),
                ]),
                "foo.",
            )
            .unwrap();
        let overridden = overridden.cache.unwrap();
        assert_eq!(overridden.max_keys.get(), 7);
        assert_eq!(overridden.max_bytes.get(), 512);

        for (key, value, reason) in [
            (
                "foo.cache_max_keys",
                "0",
                "foo.cache_max_keys: must be at least 1",
            ),
            (
                "foo.cache_max_bytes",
                "0",
                "foo.cache_max_bytes: must be at least 1",
            ),
            (
                "foo.cache_ttl",
                "0 seconds",
                "foo.cache_ttl: must be longer than zero",
            ),
        ] {
            let error = options(&[url, (key, value)]).unwrap_err();
            assert_eq!(error.to_string(), reason);
        }
    }

    #[test]
    fn zero_timeouts_are_refused_naming_their_key() {
        let url = ("foo.url", "redis://127.0.0.1:7000/0");
        for key in ["timeout", "socket_timeout", "socket_connect_timeout"] {
            let error = options(&[url, (&format!("foo.{key}"), "0 milliseconds")]).unwrap_err();
            assert_eq!(
                error.to_string(),
                format!("foo.{key}: must be longer than zero")
            );
        }
    }

    #[test]
    fn defaults_are_baseplates() {
        let o = options(&[("foo.url", "redis://127.0.0.1:7000/0")]).unwrap();
        assert_eq!(o.max_connections, 50);
        assert_eq!(o.pool_wait, DEFAULT_POOL_WAIT);
        assert_eq!(o.connect_timeout, None);
        assert_eq!(o.response_timeout, None);
        assert!(o.read_from_replicas);
        assert_eq!(o.tracker.reads_sample_rate, 0.0);
        assert_eq!(o.tracker.writes_sample_rate, 0.0);
        assert_eq!(o.seeds.len(), 1);
    }

    #[test]
    fn the_developers_example_parses() {
        let o = options(&[
            ("foo.url", "redis://localhost:7000/0"),
            ("foo.max_connections", "99"),
            ("foo.timeout", "3 seconds"),
            ("foo.read_from_replicas", "true"),
            ("foo.track_key_reads_sample_rate", "0.01"),
            ("foo.track_key_writes_sample_rate", "0.01"),
        ])
        .unwrap();
        assert_eq!(o.max_connections, 99);
        assert_eq!(o.pool_wait, Duration::from_secs(3));
        assert_eq!(o.connect_timeout, Some(Duration::from_secs(3)));
        assert_eq!(o.response_timeout, Some(Duration::from_secs(3)));
        assert_eq!(o.tracker.reads_sample_rate, 0.01);
        assert_eq!(o.tracker.writes_sample_rate, 0.01);
    }

    #[test]
    fn socket_timeouts_win_over_timeout() {
        let o = options(&[
            ("foo.url", "redis://127.0.0.1:7000"),
            ("foo.timeout", "3 seconds"),
            ("foo.socket_connect_timeout", "200 milliseconds"),
            ("foo.socket_timeout", "1 second"),
        ])
        .unwrap();
        assert_eq!(o.pool_wait, Duration::from_secs(3));
        assert_eq!(o.connect_timeout, Some(Duration::from_millis(200)));
        assert_eq!(o.response_timeout, Some(Duration::from_secs(1)));
    }

    #[test]
    fn overrides_win_over_config() {
        let o = ClusterRedisClient::new()
            .max_connections(7)
            .read_from_replicas(false)
            .timeout(Duration::from_millis(500))
            .options_from_config(
                &config(&[
                    ("foo.url", "redis://127.0.0.1:7000"),
                    ("foo.max_connections", "99"),
                    ("foo.timeout", "3 seconds"),
                ]),
                "foo.",
            )
            .unwrap();
        assert_eq!(o.max_connections, 7);
        assert!(!o.read_from_replicas);
        assert_eq!(o.pool_wait, Duration::from_millis(500));
    }

    #[test]
    fn baseplates_no_op_keys_are_accepted() {
        options(&[
            ("foo.url", "redis://127.0.0.1:7000"),
            ("foo.max_connections_per_node", "false"),
            ("foo.skip_full_coverage_check", "true"),
            ("foo.nodemanager_follow_cluster", "true"),
            ("foo.decode_responses", "true"),
        ])
        .unwrap();
    }

    #[test]
    fn errors_name_the_key() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[], "foo.url: required but not set"),
            (
                &[("foo.url", "redis://h:1"), ("foo.max_connections", "0")],
                "foo.max_connections: must be at least 1",
            ),
            (
                &[
                    ("foo.url", "redis://h:1"),
                    ("foo.track_key_reads_sample_rate", "1.5"),
                ],
                "foo.track_key_reads_sample_rate: 1.5 is not a rate between 0 and 1",
            ),
            (
                &[("foo.url", "http://h:1")],
                "foo.url: unknown scheme \"http\"; expected redis:// or rediss://",
            ),
            (
                &[("foo.url", "redis://h:1/3")],
                "foo.url: database \"3\" requested, but Redis Cluster only has database 0",
            ),
            (&[("foo.url", "redis://h:1,")], "foo.url: seed 2: empty URL"),
        ];
        for (pairs, expected) in cases {
            let error = options(pairs).unwrap_err().to_string();
            assert_eq!(&error, expected);
        }
        let error = options(&[("foo.url", "redis://h:1"), ("foo.timeout", "3 secnds")])
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("foo.timeout: invalid timespan"),
            "{error}"
        );
    }

    #[test]
    fn unknown_keys_are_warnings_as_baseplate_py_ignores_them_unless_strict() {
        let pairs = [
            ("foo.url", "redis://h:1"),
            ("foo.max_conections", "5"),
            ("foo.retry_on_timeout", "true"),
            ("foo.health_check_interval", "30"),
        ];
        let o = options(&pairs).unwrap();
        assert_eq!(o.max_connections, DEFAULT_MAX_CONNECTIONS);
        let shown: Vec<String> = o.config_warnings.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "foo.health_check_interval: unknown key, ignored",
                "foo.max_conections: unknown key, ignored; did you mean foo.max_connections?",
                "foo.retry_on_timeout: unknown key, ignored",
            ]
        );
        assert!(options(&pairs[..1]).unwrap().config_warnings.is_empty());

        let error = ClusterRedisClient::new()
            .unknown_keys(UnknownKeys::Reject)
            .options_from_config(&config(&pairs), "foo.")
            .unwrap_err();
        assert_eq!(error.to_string(), "foo.health_check_interval: unknown key");
        let error = ClusterRedisClient::new()
            .unknown_keys(UnknownKeys::Reject)
            .options_from_config(&config(&pairs[..2]), "foo.")
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "foo.max_conections: unknown key; did you mean foo.max_connections?"
        );
    }

    #[test]
    fn a_max_connections_the_pool_cannot_count_is_refused_not_a_panic() {
        let too_many = (tokio::sync::Semaphore::MAX_PERMITS + 1).to_string();
        let error = ClusterRedisClient::new()
            .pool_from_config(
                &config(&[
                    ("foo.url", "redis://127.0.0.1:7000"),
                    ("foo.max_connections", &too_many),
                ]),
                "foo.",
            )
            .unwrap_err();
        assert!(
            error.to_string().starts_with(&format!(
                "foo.max_connections: {too_many} is more than the pool can count"
            )),
            "{error}"
        );
    }

    #[test]
    fn a_prefix_names_the_client_with_or_without_its_dot() {
        let config = config(&[("foo.url", "redis://h:1"), ("foo.max_connections", "7")]);
        let client = ClusterRedisClient::new();
        for prefix in ["foo.", "foo"] {
            let options = client.options_from_config(&config, prefix).unwrap();
            assert_eq!(options.max_connections, 7, "{prefix}");
            assert_eq!(
                client.pool_from_config(&config, prefix).unwrap().name(),
                "foo"
            );
            assert_eq!(client.parse(prefix, &config).unwrap().pool().name(), "foo");
        }
        for prefix in ["", "."] {
            let error = client.options_from_config(&config, prefix).unwrap_err();
            assert_eq!(
                error.to_string(),
                format!("the config prefix {prefix:?} names no client")
            );
        }
        let error = client
            .options_from_config(&config, "bar")
            .unwrap_err()
            .to_string();
        assert!(error.starts_with("bar.url"), "{error}");
    }

    /// The keys the README's config table lists (a row may name several, comma-separated).
    fn readme_keys() -> Vec<String> {
        let readme = include_str!("../README.md");
        let table = readme
            .split("| key | type | default | meaning |")
            .nth(1)
            .expect("the README has the config key table");
        table
            .lines()
            .skip(2)
            .take_while(|line| line.starts_with('|'))
            .flat_map(|row| {
                let first = row.split('|').nth(1).unwrap_or_default();
                first
                    .split(',')
                    .map(|key| key.trim().trim_matches('`').to_owned())
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// The keys the code accepts: the fields serde asks [`RawOptions`]'s deserializer for.
    fn accepted_keys() -> Vec<String> {
        struct Fields(Vec<&'static str>);
        #[derive(Debug)]
        struct Done;
        impl std::fmt::Display for Done {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("done")
            }
        }
        impl std::error::Error for Done {}
        impl serde::de::Error for Done {
            fn custom<T: std::fmt::Display>(_: T) -> Self {
                Done
            }
        }
        impl<'de> serde::Deserializer<'de> for &mut Fields {
            type Error = Done;
            fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, Done> {
                Err(Done)
            }
            fn deserialize_struct<V: serde::de::Visitor<'de>>(
                self,
                _: &'static str,
                fields: &'static [&'static str],
                _: V,
            ) -> Result<V::Value, Done> {
                self.0.extend(fields);
                Err(Done)
            }
            serde::forward_to_deserialize_any! {
                bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
                byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
                identifier ignored_any
            }
        }
        let mut fields = Fields(Vec::new());
        let _ = RawOptions::deserialize(&mut fields);
        fields.0.into_iter().map(str::to_owned).collect()
    }

    #[test]
    fn the_readme_lists_exactly_the_keys_the_code_accepts() {
        let mut listed = readme_keys();
        let mut accepted = accepted_keys();
        assert!(accepted.contains(&"url".to_owned()), "{accepted:?}");
        listed.sort();
        accepted.sort();
        assert_eq!(listed, accepted);
    }

    #[test]
    fn every_key_that_means_something_has_its_override_in_code() {
        // The field names of `Overrides`, read from its Debug form: `Overrides { a: None, .. }`.
        let debug = format!("{:?}", Overrides::default());
        let mut overridden: Vec<String> = debug
            .trim_start_matches("Overrides {")
            .split(", ")
            .filter_map(|field| field.split(':').next())
            .map(|name| name.trim().to_owned())
            .filter(|name| {
                !["redis_client_name", "prometheus", "unknown_keys"].contains(&name.as_str())
            })
            .collect();
        // The seeds are the config's to say; the four compatibility keys mean nothing here.
        let no_override = [
            "url",
            "max_connections_per_node",
            "skip_full_coverage_check",
            "nodemanager_follow_cluster",
            "decode_responses",
        ];
        let mut keys: Vec<String> = accepted_keys()
            .into_iter()
            .filter(|key| !no_override.contains(&key.as_str()))
            .collect();
        overridden.sort();
        keys.sort();
        assert_eq!(overridden, keys);
    }
}
