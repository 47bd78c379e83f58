//! `ClusterRedisContextFactory`: hands each request a monitored connection bound to its span, and
//! owns the client's hot-key tracker.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use baseplate_background::StartOnce;
use baseplate_hotkeys::{HotKeyTracker, TrackerError};
use redis::aio::ConnectionLike;
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};
use tracing::Span;

use crate::cache::CacheStats;
use crate::connection::{ClientParts, MonitoredClusterRedisConnection};
use crate::metrics::ClientSeries;
use crate::pool::{ClusterPool, PoolStats, connect, retires_connection};

/// Makes a [`MonitoredClusterRedisConnection`] per request; what `configure_context` registers.
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// use baseplate_config::RawConfig;
/// use baseplate_redis_cluster::ClusterRedisClient;
/// use redis::AsyncCommands as _;
///
/// let config: RawConfig = [("foo.url", "redis://127.0.0.1:7000")].into_iter().collect();
/// let factory = ClusterRedisClient::new().parse("foo", &config)?;
/// let request = tracing::info_span!("request");
/// let mut foo = factory.make_object_for_context("foo", &request);
/// let () = foo.set("key", 1).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct ClusterRedisContextFactory {
    name: Arc<str>,
    pool: ClusterPool,
    series: ClientSeries,
    /// What every connection shares, once the tracker has started.
    parts: Arc<StartOnce<Arc<ClientParts>>>,
    /// The hot-key cache's counters at the last [`cache_report`](Self::cache_report).
    cache_reported: Arc<Mutex<CacheStats>>,
}

impl ClusterRedisContextFactory {
    /// A factory for the client over `pool`, named as the pool is.
    pub fn new(pool: ClusterPool) -> Self {
        let options = pool.options();
        let series = options.prometheus.client(&options.redis_client_name);
        Self {
            name: pool.name().into(),
            pool,
            series,
            parts: Arc::new(StartOnce::new()),
            cache_reported: Arc::default(),
        }
    }

    /// A connection for one request: its commands are child spans of `span`, named
    /// `{name}.{COMMAND}` (baseplate passes the context attribute's name here).
    pub fn make_object_for_context(
        &self,
        name: &str,
        span: &Span,
    ) -> MonitoredClusterRedisConnection {
        let parts = self.parts();
        let parts = if *name == *parts.name {
            parts
        } else {
            Arc::new(ClientParts {
                name: Arc::from(name),
                pool: parts.pool.clone(),
                tracker: parts.tracker.clone(),
                series: parts.series.clone(),
            })
        };
        MonitoredClusterRedisConnection::new(parts, span.clone())
    }

    /// The pool's size, commands in flight, open connections and waiters.
    pub fn pool_stats(&self) -> PoolStats {
        self.pool.stats()
    }

    /// What the hot-key cache did since the previous call (for a reporter that sends counters,
    /// as the runtime metrics do every 10 s); `None` when `cache_hot_keys` is off. Totals since the
    /// client was made are [`ClusterPool::cache_stats`].
    pub fn cache_report(&self) -> Option<CacheStats> {
        let now = self.pool.cache_stats()?;
        let mut reported = self
            .cache_reported
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let since = now.since(&reported);
        *reported = now;
        Some(since)
    }

    /// The pool.
    pub fn pool(&self) -> &ClusterPool {
        &self.pool
    }

    /// The client's hot-key tracker, started on first use (it needs the tokio runtime). It writes
    /// through a connection of its own, so its commands take no caller's slot and are never
    /// tracked themselves.
    ///
    /// Asked outside a runtime, it gives a tracker that records nothing *this time* and starts the
    /// real one at the next call from inside a runtime: a connection made before the runtime
    /// started must not turn tracking off for good.
    pub fn tracker(&self) -> HotKeyTracker {
        self.parts().tracker.clone()
    }

    /// What the client's connections share, its tracker started on first use (see
    /// [`tracker`](Self::tracker)).
    fn parts(&self) -> Arc<ClientParts> {
        let parts = |tracker| {
            Arc::new(ClientParts {
                name: Arc::clone(&self.name),
                pool: self.pool.clone(),
                tracker,
                series: self.series.clone(),
            })
        };
        self.parts
            .get_or_start(|_| self.start_tracker().map(parts))
            .cloned()
            .unwrap_or_else(|| parts(HotKeyTracker::disabled()))
    }

    /// A tracker for the client's options, on the current runtime: a disabled one when tracking is
    /// off or cannot start (which is logged); `None` to try again later, without a runtime.
    fn start_tracker(&self) -> Option<HotKeyTracker> {
        let options = self.pool.options().tracker.clone();
        if !options.is_enabled() {
            return Some(HotKeyTracker::disabled());
        }
        let conn = TrackerConnection {
            client: self.pool.client().clone(),
            name: Arc::clone(&self.name),
            connect_timeout: self.pool.connect_timeout(),
            conn: Arc::default(),
        };
        match HotKeyTracker::start(conn, options) {
            Ok(tracker) => Some(tracker),
            Err(TrackerError::NoRuntime(_)) => None,
            Err(error) => {
                tracing::warn!(client = %self.name, %error, "hot-key tracking is off");
                Some(HotKeyTracker::disabled())
            }
        }
    }
}

/// The tracker's own cluster connection, opened on its first write (within the connect timeout;
/// a failed attempt is retried on the next write) and opened again after an error showing it can
/// no longer work, as the pool's shared connection is.
#[derive(Clone)]
struct TrackerConnection {
    client: ClusterClient,
    name: Arc<str>,
    connect_timeout: Duration,
    conn: Arc<tokio::sync::Mutex<Option<Arc<ClusterConnection>>>>,
}

impl TrackerConnection {
    async fn get(&self) -> redis::RedisResult<Arc<ClusterConnection>> {
        let mut current = self.conn.lock().await;
        if let Some(conn) = &*current {
            return Ok(Arc::clone(conn));
        }
        let conn = Arc::new(connect(&self.client, &self.name, self.connect_timeout).await?);
        *current = Some(Arc::clone(&conn));
        Ok(conn)
    }

    /// Drops `used`, the connection a call went out on, when `result` shows it can no longer
    /// work, unless it was replaced already (by a concurrent write that failed first).
    async fn inspect<T>(&self, used: &Arc<ClusterConnection>, result: &redis::RedisResult<T>) {
        if let Err(error) = result
            && retires_connection(error)
        {
            let mut current = self.conn.lock().await;
            if current.as_ref().is_some_and(|conn| Arc::ptr_eq(conn, used)) {
                *current = None;
            }
        }
    }
}

impl ConnectionLike for TrackerConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let used = self.get().await?;
            let result = (*used).clone().req_packed_command(cmd).await;
            self.inspect(&used, &result).await;
            result
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let used = self.get().await?;
            let result = (*used)
                .clone()
                .req_packed_commands(pipeline, offset, count)
                .await;
            self.inspect(&used, &result).await;
            result
        })
    }

    fn get_db(&self) -> i64 {
        0
    }
}

#[cfg(test)]
mod tests {
    use baseplate_config::RawConfig;

    use crate::ClusterRedisClient;

    #[test]
    fn a_first_connection_made_outside_the_runtime_does_not_turn_tracking_off() {
        let config: RawConfig = [
            ("foo.url", "redis://127.0.0.1:1"),
            ("foo.track_key_reads_sample_rate", "1"),
        ]
        .into_iter()
        .collect();
        let factory = ClusterRedisClient::new().parse("foo", &config).unwrap();
        let get = redis::cmd("GET").arg("k").clone();

        // No runtime here: nothing can be tracked yet, and nothing breaks.
        let early = factory.make_object_for_context("foo", &tracing::Span::none());
        drop(early);
        factory.tracker().observe(&get);
        assert_eq!(factory.tracker().stats().sampled, 0);

        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let tracker = factory.tracker();
            tracker.observe(&get);
            assert_eq!(tracker.stats().sampled, 1);
            assert_eq!(factory.tracker().stats().sampled, 1, "the same tracker");
        });
    }
}
