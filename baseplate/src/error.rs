//! The facade's errors: configuring the service, and asking a request context for a client.

use baseplate_config::ConfigError;
use baseplate_runtime_metrics::MetricsError;

use crate::context::ParseError;

/// Why the service could not be configured.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BaseplateError {
    /// A `metrics.*` or `metrics_observer.*` key is wrong; the message names it.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A client's configuration is wrong; the message names the key.
    #[error(transparent)]
    Context(ParseError),
    /// A client name was registered twice.
    #[error("a client named {name:?} is already configured")]
    Duplicate {
        /// The name.
        name: String,
    },
    /// The statsd endpoint cannot be used (it does not resolve, say).
    #[error("metrics.endpoint: {0}")]
    Metrics(#[from] MetricsError),
    /// The Prometheus `/metrics` server could not listen on its address.
    #[error("cannot serve Prometheus metrics on {addr}: {source}")]
    Serve {
        /// The address asked for.
        addr: String,
        /// Why it failed.
        source: std::io::Error,
    },
}

/// Why a request context could not hand out a client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ContextError {
    /// No client is registered under the name.
    #[error("no client named {name:?} is configured")]
    Unknown {
        /// The name asked for.
        name: String,
    },
    /// The client is of another type than the one asked for.
    #[error("client {name:?} is a {actual}, not a {expected}")]
    WrongType {
        /// The name asked for.
        name: String,
        /// The type asked for.
        expected: &'static str,
        /// The type registered.
        actual: &'static str,
    },
}
