//! The metrics client: a namespace, a transport, packet-size options and the send-error counter.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::batch::Batch;
use crate::error::MetricsError;
use crate::transport::{NullTransport, Transport, UdpTransport};

/// The default largest packet: 1432 bytes, statsd's advice for a 1500-byte Ethernet MTU (1500 minus
/// IP and UDP headers and a margin), so no packet is fragmented on the way to a local statsd.
pub const DEFAULT_MAX_PACKET_SIZE: usize = 1432;

/// How often a failing transport is logged at most; the errors in between are only counted.
const WARN_INTERVAL: Duration = Duration::from_secs(10);

/// Options of a [`MetricsClient`].
///
/// ```
/// use baseplate_runtime_metrics::ClientOptions;
///
/// let options = ClientOptions::new().with_max_packet_size(512);
/// assert_eq!(options.max_packet_size, 512);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientOptions {
    /// The largest packet a flush sends, in bytes ([`DEFAULT_MAX_PACKET_SIZE`] by default). A batch
    /// is split at line boundaries into packets of at most this size; a single line longer than
    /// this is sent alone in its own packet.
    pub max_packet_size: usize,
}

impl ClientOptions {
    /// The defaults.
    #[must_use]
    pub fn new() -> Self {
        Self {
            max_packet_size: DEFAULT_MAX_PACKET_SIZE,
        }
    }

    /// Sets [`max_packet_size`](Self::max_packet_size).
    ///
    /// ```
    /// use baseplate_runtime_metrics::ClientOptions;
    ///
    /// assert_eq!(ClientOptions::new().with_max_packet_size(8932).max_packet_size, 8932);
    /// ```
    #[must_use]
    pub fn with_max_packet_size(mut self, max_packet_size: usize) -> Self {
        self.max_packet_size = max_packet_size;
        self
    }
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self::new()
    }
}

/// A statsd client like baseplate.py's `metrics.Client`: it prefixes every metric with its
/// namespace and sends batches through its transport. Cloning is cheap and clones share the
/// transport and the error counter.
///
/// Sending never fails or blocks the caller: a failed send is counted ([`send_errors`]) and logged
/// at `warn` level at most once every 10 seconds.
///
/// ```
/// use std::time::Duration;
/// use baseplate_runtime_metrics::{MemoryTransport, MetricsClient};
///
/// let transport = MemoryTransport::new();
/// let client = MetricsClient::new(transport.clone(), "ns");
/// let mut batch = client.batch();
/// batch.timer("clients.foo.GET", Duration::from_micros(420));
/// batch.counter("clients.foo.GET.success", 1.0);
/// batch.flush();
/// assert_eq!(
///     transport.lines(),
///     ["ns.clients.foo.GET:0.42|ms", "ns.clients.foo.GET.success:1|c"]
/// );
/// assert_eq!(client.send_errors(), 0);
/// ```
///
/// [`send_errors`]: MetricsClient::send_errors
#[derive(Debug, Clone)]
pub struct MetricsClient {
    inner: Arc<ClientInner>,
}

#[derive(Debug)]
struct ClientInner {
    transport: Box<dyn Transport>,
    namespace: String,
    options: ClientOptions,
    send_errors: AtomicU64,
    warn_limiter: WarnLimiter,
}

impl MetricsClient {
    /// A client sending through `transport`, prefixing every metric with `namespace` (as
    /// `metrics.namespace`; empty for none), with default options.
    ///
    /// ```
    /// use baseplate_runtime_metrics::{MetricsClient, NullTransport};
    ///
    /// let client = MetricsClient::new(NullTransport, "ns");
    /// assert_eq!(client.namespace(), "ns");
    /// ```
    pub fn new(transport: impl Transport + 'static, namespace: impl Into<String>) -> Self {
        Self::with_options(transport, namespace, ClientOptions::new())
    }

    /// A client with explicit options.
    ///
    /// ```
    /// use baseplate_runtime_metrics::{ClientOptions, MetricsClient, NullTransport};
    ///
    /// let options = ClientOptions::new().with_max_packet_size(512);
    /// let client = MetricsClient::with_options(NullTransport, "ns", options);
    /// assert_eq!(client.options().max_packet_size, 512);
    /// ```
    pub fn with_options(
        transport: impl Transport + 'static,
        namespace: impl Into<String>,
        options: ClientOptions,
    ) -> Self {
        Self {
            inner: Arc::new(ClientInner {
                transport: Box::new(transport),
                namespace: namespace.into(),
                options,
                send_errors: AtomicU64::new(0),
                warn_limiter: WarnLimiter::new(WARN_INTERVAL),
            }),
        }
    }

    /// A client for baseplate's configuration: UDP to `endpoint` (`metrics.endpoint`, `host:port`)
    /// or, when it is `None` or empty, a client that discards every metric (as baseplate.py's
    /// `metrics_client_from_config`).
    ///
    /// ```
    /// use baseplate_runtime_metrics::MetricsClient;
    ///
    /// let client = MetricsClient::from_endpoint(Some("127.0.0.1:8125"), "ns").unwrap();
    /// let discarding = MetricsClient::from_endpoint(None, "ns").unwrap();
    /// # let _ = (client, discarding);
    /// ```
    ///
    /// # Errors
    ///
    /// The errors of [`UdpTransport::connect`] when an endpoint is given.
    pub fn from_endpoint(
        endpoint: Option<&str>,
        namespace: impl Into<String>,
    ) -> Result<Self, MetricsError> {
        match endpoint.map(str::trim) {
            Some(endpoint) if !endpoint.is_empty() => {
                Ok(Self::new(UdpTransport::connect(endpoint)?, namespace))
            }
            _ => Ok(Self::new(NullTransport, namespace)),
        }
    }

    /// A new, empty batch under this client's namespace.
    ///
    /// ```
    /// use baseplate_runtime_metrics::{MetricsClient, NullTransport};
    ///
    /// let batch = MetricsClient::new(NullTransport, "ns").batch();
    /// assert!(batch.is_empty());
    /// ```
    #[must_use]
    pub fn batch(&self) -> Batch {
        Batch::new(self.clone())
    }

    /// The namespace every metric name starts with.
    ///
    /// ```
    /// use baseplate_runtime_metrics::{MetricsClient, NullTransport};
    ///
    /// assert_eq!(MetricsClient::new(NullTransport, "").namespace(), "");
    /// ```
    #[must_use]
    pub fn namespace(&self) -> &str {
        &self.inner.namespace
    }

    /// The options this client was made with.
    ///
    /// ```
    /// use baseplate_runtime_metrics::{MetricsClient, NullTransport, DEFAULT_MAX_PACKET_SIZE};
    ///
    /// let client = MetricsClient::new(NullTransport, "ns");
    /// assert_eq!(client.options().max_packet_size, DEFAULT_MAX_PACKET_SIZE);
    /// ```
    #[must_use]
    pub fn options(&self) -> &ClientOptions {
        &self.inner.options
    }

    /// How many packets failed to send since the client was made (shared by its clones).
    ///
    /// ```
    /// use baseplate_runtime_metrics::{MetricsClient, NullTransport};
    ///
    /// assert_eq!(MetricsClient::new(NullTransport, "ns").send_errors(), 0);
    /// ```
    #[must_use]
    pub fn send_errors(&self) -> u64 {
        self.inner.send_errors.load(Ordering::Relaxed)
    }

    /// Sends one packet; a failure is counted and maybe logged, never returned.
    pub(crate) fn send_packet(&self, packet: &[u8]) {
        if let Err(error) = self.inner.transport.send(packet) {
            self.record_send_error(&error, packet.len());
        }
    }

    fn record_send_error(&self, error: &io::Error, packet_size: usize) {
        let total = self.inner.send_errors.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(suppressed) = self.inner.warn_limiter.check(Instant::now()) {
            tracing::warn!(
                %error,
                packet_size,
                total_send_errors = total,
                suppressed_since_last_warning = suppressed,
                "failed to send a metrics packet; metrics are being dropped"
            );
        }
    }
}

/// Lets one warning through per interval and counts the ones it holds back.
#[derive(Debug)]
struct WarnLimiter {
    interval: Duration,
    last: Mutex<Option<Instant>>,
    suppressed: AtomicU64,
}

impl WarnLimiter {
    fn new(interval: Duration) -> Self {
        Self {
            interval,
            last: Mutex::new(None),
            suppressed: AtomicU64::new(0),
        }
    }

    /// Whether to warn at `now`: `Some(number of warnings held back since the last one)` when the
    /// interval has passed since the last warning (or there was none), else `None`.
    fn check(&self, now: Instant) -> Option<u64> {
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        match *last {
            Some(previous) if now.saturating_duration_since(previous) < self.interval => {
                self.suppressed.fetch_add(1, Ordering::Relaxed);
                None
            }
            _ => {
                *last = Some(now);
                Some(self.suppressed.swap(0, Ordering::Relaxed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::MemoryTransport;

    /// A transport whose every send fails.
    #[derive(Debug)]
    struct FailingTransport;

    impl Transport for FailingTransport {
        fn send(&self, _packet: &[u8]) -> io::Result<()> {
            Err(io::Error::new(
                io::ErrorKind::ConnectionRefused,
                "nobody listens",
            ))
        }
    }

    #[test]
    fn warnings_are_let_through_once_per_interval() {
        let limiter = WarnLimiter::new(Duration::from_secs(10));
        let start = Instant::now();
        assert_eq!(limiter.check(start), Some(0));
        assert_eq!(limiter.check(start + Duration::from_secs(1)), None);
        assert_eq!(limiter.check(start + Duration::from_millis(9_999)), None);
        assert_eq!(limiter.check(start + Duration::from_secs(10)), Some(2));
        assert_eq!(limiter.check(start + Duration::from_secs(11)), None);
        assert_eq!(limiter.check(start + Duration::from_secs(25)), Some(1));
    }

    #[test]
    fn send_errors_are_counted_not_returned() {
        let options = ClientOptions::new().with_max_packet_size(10);
        let client = MetricsClient::with_options(FailingTransport, "ns", options);
        let clone = client.clone();
        let mut batch = client.batch();
        batch.gauge("a", 1.0);
        batch.gauge("b", 2.0);
        batch.gauge("c", 3.0);
        // Each line is 9 bytes, so each is its own packet and each send fails.
        batch.flush();
        assert_eq!(client.send_errors(), 3);
        assert_eq!(clone.send_errors(), 3);
        assert!(batch.is_empty());
    }

    #[test]
    fn empty_endpoint_discards_and_bad_endpoint_fails() {
        let client = MetricsClient::from_endpoint(Some(""), "ns").unwrap();
        let mut batch = client.batch();
        batch.gauge("a", 1.0);
        batch.flush();
        assert_eq!(client.send_errors(), 0);
        assert!(MetricsClient::from_endpoint(Some("localhost"), "ns").is_err());
    }

    #[test]
    fn real_udp_socket_receives_the_exact_packet() {
        let receiver = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        receiver
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let endpoint = receiver.local_addr().unwrap().to_string();
        let client = MetricsClient::from_endpoint(Some(&endpoint), "ns").unwrap();
        let mut batch = client.batch();
        batch.timer("clients.foo.GET", Duration::from_micros(12_500));
        batch
            .tagged(crate::Tags::new().with("client", "foo"))
            .gauge("pool.size", 50.0);
        batch.counter("clients.foo.GET.success", 1.0);
        batch.flush();

        let mut buffer = [0u8; 2048];
        let size = receiver.recv(&mut buffer).unwrap();
        assert_eq!(
            std::str::from_utf8(&buffer[..size]).unwrap(),
            "ns.clients.foo.GET:12.5|ms\nns.pool.size,client=foo:50|g\nns.clients.foo.GET.success:1|c"
        );
        assert_eq!(client.send_errors(), 0);
    }

    #[test]
    fn udp_to_a_closed_port_is_counted_not_returned() {
        // Find a port nobody listens on by binding one and letting it go.
        let port = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let client =
            MetricsClient::from_endpoint(Some(&format!("127.0.0.1:{port}")), "ns").unwrap();
        // The kernel reports the ICMP "port unreachable" of one send on a later send, so poll.
        for _ in 0..500 {
            let mut batch = client.batch();
            batch.counter("requests", 1.0);
            batch.flush();
            if client.send_errors() > 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        assert!(client.send_errors() > 0);
    }

    #[test]
    fn memory_transport_sees_the_namespace() {
        let transport = MemoryTransport::new();
        let client = MetricsClient::new(transport.clone(), "ns.");
        let mut batch = client.batch();
        batch.gauge(".workers", 4.0);
        batch.flush();
        assert_eq!(transport.packets(), ["ns.workers:4|g"]);
    }
}
