//! Crate root; the crate's documentation is its README.
#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

mod batch;
mod client;
mod error;
mod number;
mod reporter;
mod shared_counter;
mod tags;
mod transport;
mod wire;

pub use batch::{Batch, MetricName, TaggedBatch};
pub use client::{
    ClientOptions, DEFAULT_MAX_PACKET_SIZE, LOCAL_MAX_PACKET_SIZE, MAX_UDP_PAYLOAD, MetricsClient,
};
pub use error::{MetricsError, SourceError};
pub use reporter::{
    DEFAULT_REPORT_INTERVAL, ReportSummary, ReporterHandle, ReporterOptions,
    RuntimeMetricsReporter, RuntimeMetricsSource,
};
pub use shared_counter::SharedCounter;
pub use tags::Tags;
#[cfg(unix)]
pub use transport::UnixDatagramTransport;
pub use transport::{MemoryTransport, NullTransport, Transport, UdpTransport};

#[cfg(test)]
mod tests {
    use super::*;

    // These cross tasks and threads; this fails to compile if one stops being `Send + Sync`.
    const _: fn() = || {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<MetricsClient>();
        send_sync::<Batch>();
        send_sync::<TaggedBatch<'static>>();
        send_sync::<RuntimeMetricsReporter>();
        send_sync::<ReporterHandle>();
        send_sync::<MemoryTransport>();
        send_sync::<UdpTransport>();
        send_sync::<UnixDatagramTransport>();
        send_sync::<MetricsError>();
        send_sync::<SharedCounter>();
    };
}
