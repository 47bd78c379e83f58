//! Errors of setting up metrics: opening the statsd endpoint and starting the reporter.

use std::io;

/// The error a [`RuntimeMetricsSource`](crate::RuntimeMetricsSource) returns when it cannot report;
/// the reporter logs it and skips that source for this round.
pub type SourceError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// An error setting up metrics. Sending metrics never fails the caller: send errors are counted by
/// [`MetricsClient::send_errors`](crate::MetricsClient::send_errors) instead.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MetricsError {
    /// The endpoint (`metrics.endpoint`) is neither a path nor a `host:port` that resolves.
    #[error("cannot resolve metrics endpoint `{endpoint}` as host:port: {source}")]
    Resolve {
        /// The endpoint as configured.
        endpoint: String,
        /// Why resolving failed.
        #[source]
        source: io::Error,
    },
    /// The endpoint's port is 0, where nothing receives: every packet would vanish unreported.
    #[error("metrics endpoint `{endpoint}` has port 0, where nothing receives")]
    PortZero {
        /// The endpoint as configured.
        endpoint: String,
    },
    /// The endpoint resolved to no address at all.
    #[error("metrics endpoint `{endpoint}` resolved to no address")]
    NoAddress {
        /// The endpoint as configured.
        endpoint: String,
    },
    /// The UDP socket for the endpoint could not be opened or set up.
    #[error("cannot open a UDP socket to metrics endpoint `{endpoint}`: {source}")]
    Socket {
        /// The endpoint as configured.
        endpoint: String,
        /// The socket error.
        #[source]
        source: io::Error,
    },
    /// Nothing receives at the Unix socket path of the endpoint, or a socket for it could not be
    /// set up.
    #[error(
        "cannot send metrics to the Unix socket `{}`: {source}{hint}",
        .path.display(),
        hint = if .path.to_string_lossy().contains("://") {
            " (an endpoint with a `/` is a Unix socket's path; a UDP one is host:port, with no scheme)"
        } else {
            ""
        }
    )]
    UnixSocket {
        /// The path, as configured.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The reporter was started outside a tokio runtime.
    #[error("the runtime-metrics reporter must be started inside a tokio runtime")]
    NoRuntime,
    /// The reporter was given a zero interval.
    #[error("the runtime-metrics report interval must be greater than zero")]
    ZeroInterval,
}
