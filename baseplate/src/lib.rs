//! Crate root; the crate's documentation is its README.
#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

mod cluster;
mod context;
mod error;
#[cfg(feature = "tower")]
mod layer;
mod observer;
mod prometheus;
#[cfg(feature = "opentelemetry")]
pub mod propagation;
mod service;

pub use context::{ContextFactory, ContextParser, ParseError, RequestContext};
pub use error::{BaseplateError, ContextError};
#[cfg(feature = "tower")]
pub use layer::{BaseplateLayer, BaseplateService};
pub use observer::{RequestScope, SERVER_SPAN};
pub use prometheus::MetricsServer;
pub use service::Baseplate;

#[doc(inline)]
pub use baseplate_config::{ConfigError, ConfigWarning, RawConfig, UnknownKeys};
#[doc(inline)]
pub use baseplate_hotkeys::{HotKeyTracker, TrackKeyMode};
#[doc(inline)]
pub use baseplate_redis_cluster::{
    CallFailed, CallTimeout, ClusterRedisClient, ClusterRedisContextFactory, ClusterScan,
    ClusterScanOptions, MonitoredClusterRedisConnection, MonitoredPipeline, NodeConnection,
    PoolStats, PoolTimeout, RedisClientMetrics, Subscriber,
};
#[doc(inline)]
pub use baseplate_runtime_metrics::{MetricsClient, TaggedBatch};

/// The leaf crates, for what the facade does not re-export by name.
pub mod crates {
    #[doc(inline)]
    pub use baseplate_config as config;
    #[doc(inline)]
    pub use baseplate_hotkeys as hotkeys;
    #[doc(inline)]
    pub use baseplate_redis_cluster as redis_cluster;
    #[doc(inline)]
    pub use baseplate_runtime_metrics as runtime_metrics;
}

/// The workspace README's Rust examples, compiled as doctests so the README cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct WorkspaceReadme;

#[cfg(test)]
mod tests;
