//! Crate root; the crate's documentation is its README.
#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

mod cache;
mod config;
mod connection;
mod error;
mod factory;
mod metrics;
mod nodes;
mod pipeline;
mod pool;
mod pubsub;
mod redirects;
mod routing;
mod scan;
mod tls;

pub use cache::{
    CacheStats, DEFAULT_CACHE_MAX_BYTES, DEFAULT_CACHE_MAX_KEYS, DEFAULT_CACHE_TTL,
    HotKeyCacheOptions,
};
pub use config::{
    ClusterOptions, ClusterRedisClient, DEFAULT_MAX_CONNECTIONS, DEFAULT_POOL_WAIT, DEFAULT_PREFIX,
    RedisUrl, cluster_pool_from_config,
};
pub use connection::MonitoredClusterRedisConnection;
pub use error::{
    CacheUnsupported, CallFailed, CallTimeout, ClusterConfigError, ConnectTimeout, CrossSlotScript,
    CrossSlotTransaction, PlainScan, PoolTimeout, SharedConnectionCommand,
};
pub use factory::ClusterRedisContextFactory;
pub use metrics::{
    CommandName, CommandObserver, LATENCY_BUCKETS, PIPELINE_COMMAND, RedisClientMetrics,
    TRANSACTION_COMMAND,
};
pub use nodes::NodeConnection;
pub use pipeline::MonitoredPipeline;
pub use pool::{ClusterPool, PoolStats};
pub use pubsub::Subscriber;
pub use routing::key_slot;
pub use scan::{CLUSTER_SCAN_PATIENCE, ClusterScan, ClusterScanOptions};
#[cfg(feature = "tls")]
pub use tls::TlsFileError;
pub use tls::{CertReqs, TlsOptions};
