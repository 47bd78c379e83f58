//! The glue for the Redis Cluster client: its parser and factory as the facade's context traits,
//! and its pool as runtime metrics.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use baseplate_config::{ConfigWarning, RawConfig, UnknownKeys};
use baseplate_redis_cluster::{
    ClusterPool, ClusterRedisClient, ClusterRedisContextFactory, CommandObserver,
    MonitoredClusterRedisConnection,
};
use baseplate_runtime_metrics::TaggedBatch;
use tracing::Span;

use crate::context::{ContextFactory, ContextParser, ParseError, RequestContext};
use crate::error::ContextError;
use crate::observer::RequestScope;

impl ContextParser for ClusterRedisClient {
    type Factory = ClusterRedisContextFactory;

    fn parse(&self, key_path: &str, raw_config: &RawConfig) -> Result<Self::Factory, ParseError> {
        Ok(ClusterRedisClient::parse(self, key_path, raw_config)?)
    }

    /// What `parse` does, except that the warnings are returned for the facade to log rather than
    /// logged here; `UnknownKeys::Reject` makes the client strict whatever it was told in code.
    fn parse_with_warnings(
        &self,
        key_path: &str,
        raw_config: &RawConfig,
        unknown_keys: UnknownKeys,
    ) -> Result<(Self::Factory, Vec<ConfigWarning>), ParseError> {
        let strict;
        let client = match unknown_keys {
            UnknownKeys::Reject => {
                strict = self.clone().unknown_keys(UnknownKeys::Reject);
                &strict
            }
            _ => self,
        };
        let options = client.options_from_config(raw_config, &format!("{key_path}."))?;
        let warnings = options.config_warnings.clone();
        let pool = ClusterPool::new(key_path, options)?;
        Ok((ClusterRedisContextFactory::new(pool), warnings))
    }
}

impl ContextFactory for ClusterRedisContextFactory {
    type Object = MonitoredClusterRedisConnection;

    fn make_object_for_context(&self, name: &str, span: &Span) -> MonitoredClusterRedisConnection {
        ClusterRedisContextFactory::make_object_for_context(self, name, span)
    }

    fn make_object_for_request(
        &self,
        name: &str,
        span: &Span,
        scope: Option<&Arc<RequestScope>>,
    ) -> MonitoredClusterRedisConnection {
        let conn = ClusterRedisContextFactory::make_object_for_context(self, name, span);
        match scope {
            Some(scope) => conn.with_observer(Arc::clone(scope) as Arc<dyn CommandObserver>),
            None => conn,
        }
    }

    /// `pool.size` (max_connections), `pool.in_use` (commands in flight), `pool.open_connections`,
    /// `pool.waiting` and `pool.blocking` (blocking commands on connections of their own); with
    /// `cache_hot_keys` on, the counters `cache.hits`, `cache.misses` and `cache.invalidations`
    /// (what the hot-key cache did since the previous report) and the gauges `cache.keys` and
    /// `cache.bytes` (what it holds).
    fn report_runtime_metrics(&self, batch: &mut TaggedBatch<'_>) {
        let stats = self.pool_stats();
        batch.gauge("pool.size", stats.size as f64);
        batch.gauge("pool.in_use", stats.in_use as f64);
        batch.gauge("pool.open_connections", stats.open_connections as f64);
        batch.gauge("pool.waiting", stats.waiting as f64);
        batch.gauge("pool.blocking", stats.blocking as f64);
        if let Some(cache) = self.cache_report() {
            batch.counter("cache.hits", cache.hits as f64);
            batch.counter("cache.misses", cache.misses as f64);
            batch.counter("cache.invalidations", cache.invalidations as f64);
            batch.gauge("cache.keys", cache.keys as f64);
            batch.gauge("cache.bytes", cache.bytes as f64);
        }
    }

    fn shutdown(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async move { self.tracker().shutdown().await })
    }
}

impl RequestContext {
    /// The Redis Cluster client registered as `name`; the same as
    /// `ctx.get::<MonitoredClusterRedisConnection>(name)`.
    ///
    /// # Errors
    /// As [`RequestContext::get`].
    pub fn redis_cluster(
        &self,
        name: &str,
    ) -> Result<MonitoredClusterRedisConnection, ContextError> {
        self.get(name)
    }
}
