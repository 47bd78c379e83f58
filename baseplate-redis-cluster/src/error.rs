//! The client's errors: configuration, and the pool's own failures carried inside a `RedisError`.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use baseplate_config::ConfigError;

/// Why a cluster client could not be configured.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterConfigError {
    /// A key is missing, malformed or unknown; the message names the full key.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A value parsed but is out of range or inconsistent, e.g. a sample rate above 1.
    #[error("{key}: {reason}")]
    Invalid {
        /// The full key, e.g. `foo.track_key_reads_sample_rate`.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The prefix passed to [`cluster_pool_from_config`](crate::cluster_pool_from_config) does not end in `.`.
    #[error("the config prefix {prefix:?} must end with \".\"")]
    Prefix {
        /// The prefix as given.
        prefix: String,
    },
}

/// A command could not get one of the `max_connections` slots within the wait the pool allows.
///
/// It reaches callers inside a [`redis::RedisError`] (an I/O error of kind `TimedOut`, so
/// `RedisError::is_timeout` is true); [`PoolTimeout::find`] recovers it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "redis cluster client {client:?}: all {max_connections} slots (max_connections) stayed busy for {waited:?}"
)]
pub struct PoolTimeout {
    /// The client's name (its config prefix without the dot).
    pub client: String,
    /// The pool's size.
    pub max_connections: usize,
    /// How long the caller waited.
    pub waited: Duration,
}

impl PoolTimeout {
    /// The pool timeout inside `error`, if that is what it is.
    ///
    /// ```
    /// use std::time::Duration;
    /// use baseplate_redis_cluster::PoolTimeout;
    ///
    /// let timeout = PoolTimeout { client: "foo".into(), max_connections: 2, waited: Duration::from_secs(1) };
    /// let error = redis::RedisError::from(timeout.clone());
    /// assert!(error.is_timeout());
    /// assert_eq!(PoolTimeout::find(&error), Some(&timeout));
    /// ```
    pub fn find(error: &redis::RedisError) -> Option<&PoolTimeout> {
        // redis-rs keeps an I/O error as the `Arc` its `source()` returns.
        std::error::Error::source(error)?
            .downcast_ref::<Arc<dyn std::error::Error + Send + Sync>>()?
            .downcast_ref::<io::Error>()?
            .get_ref()?
            .downcast_ref::<PoolTimeout>()
    }
}

impl From<PoolTimeout> for redis::RedisError {
    fn from(timeout: PoolTimeout) -> Self {
        io::Error::new(io::ErrorKind::TimedOut, timeout).into()
    }
}

/// Opening a cluster connection took longer than the connect timeout.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("redis cluster client {client:?}: connecting to the cluster took longer than {after:?}")]
pub struct ConnectTimeout {
    /// The client's name.
    pub client: String,
    /// The connect timeout that ran out.
    pub after: Duration,
}

impl From<ConnectTimeout> for redis::RedisError {
    fn from(timeout: ConnectTimeout) -> Self {
        io::Error::new(io::ErrorKind::TimedOut, timeout).into()
    }
}

/// A transaction's commands do not all hash to one slot, so it cannot run atomically on one node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "redis cluster client {client:?}: transaction {name:?} touches more than one slot; \
     put its keys in one hash slot with a {{hash tag}}"
)]
pub struct CrossSlotTransaction {
    /// The client's name.
    pub client: String,
    /// The transaction's name.
    pub name: String,
}

impl From<CrossSlotTransaction> for redis::RedisError {
    fn from(error: CrossSlotTransaction) -> Self {
        redis::RedisError::from((
            redis::ErrorKind::Client,
            "cross-slot transaction",
            error.to_string(),
        ))
    }
}
