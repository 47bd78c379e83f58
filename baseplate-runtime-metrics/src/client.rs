//! The metrics client: a namespace, a transport, packet-size options and the send-error counter.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use baseplate_background::{StartOnce, WarnLimiter};

use crate::batch::{Batch, MetricName};
use crate::error::MetricsError;
use crate::shared_counter::{Counted, SharedCounter};
use crate::transport::{self, LoggingNullTransport, NullTransport, Transport};
use crate::wire::{pack_lines, push_line};

/// The default largest packet to a statsd across a network: 1432 bytes, statsd's advice for a
/// 1500-byte Ethernet MTU (1500 minus IP and UDP headers and a margin), so no packet is fragmented
/// on the way.
pub const DEFAULT_MAX_PACKET_SIZE: usize = 1432;

/// The default largest packet to a statsd on this host (a loopback address or a Unix socket):
/// 8192 bytes. No network lies between, so nothing fragments; 8192 bytes is the datagram the
/// Datadog agent reads by default and what its clients send over Unix sockets, and statsd,
/// `statsd_exporter` and Telegraf read datagrams of up to 64 KiB. Fewer, fuller packets cost the
/// sender and the agent fewer system calls for the same lines.
pub const LOCAL_MAX_PACKET_SIZE: usize = 8192;

/// How often a failing transport is logged at most; the errors in between are only counted.
const WARN_INTERVAL: Duration = Duration::from_secs(10);

/// The largest payload a UDP datagram can carry over IPv4: no packet is larger.
pub const MAX_UDP_PAYLOAD: usize = 65_507;

/// Options of a [`MetricsClient`].
///
/// ```
/// use baseplate_runtime_metrics::ClientOptions;
///
/// let options = ClientOptions::new().with_max_packet_size(512);
/// assert_eq!(options.max_packet_size, Some(512));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientOptions {
    /// The largest packet a flush sends, in bytes; by default (`None`) the transport's
    /// [`max_packet_size`](Transport::max_packet_size): [`LOCAL_MAX_PACKET_SIZE`] to a statsd on
    /// this host, [`DEFAULT_MAX_PACKET_SIZE`] otherwise. A batch is split at line boundaries into
    /// packets of at most this size; a single line longer than this is sent alone in its own
    /// packet.
    pub max_packet_size: Option<usize>,
    /// When set, the lines of many batches share packets: a flush appends its lines to a pending
    /// packet, which is sent once it is full or has waited this long (by a task on the tokio
    /// runtime, or by the next flush when there is none), and when the client is dropped or
    /// [`MetricsClient::flush_pending`] is called. Off (`None`) by default: each flush sends its
    /// own packets, as baseplate.py does. Coalescing saves a system call per request when
    /// requests are small.
    pub coalesce: Option<Duration>,
    /// When the client is made without an endpoint
    /// ([`MetricsClient::from_endpoint_with_options`] with none), log every line it would have
    /// sent at `debug` level instead of discarding it silently: baseplate.py's
    /// `metrics.log_if_unconfigured`. Off by default.
    pub log_if_unconfigured: bool,
}

impl ClientOptions {
    /// The defaults.
    #[must_use]
    pub fn new() -> Self {
        Self {
            max_packet_size: None,
            coalesce: None,
            log_if_unconfigured: false,
        }
    }

    /// Sets [`max_packet_size`](Self::max_packet_size).
    ///
    /// ```
    /// use baseplate_runtime_metrics::ClientOptions;
    ///
    /// let options = ClientOptions::new().with_max_packet_size(8932);
    /// assert_eq!(options.max_packet_size, Some(8932));
    /// ```
    #[must_use]
    pub fn with_max_packet_size(mut self, max_packet_size: usize) -> Self {
        self.max_packet_size = Some(max_packet_size);
        self
    }

    /// Sets [`coalesce`](Self::coalesce): lines of many batches share packets that wait at most
    /// `delay`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use baseplate_runtime_metrics::ClientOptions;
    ///
    /// let options = ClientOptions::new().with_coalesce(Duration::from_millis(100));
    /// assert_eq!(options.coalesce, Some(Duration::from_millis(100)));
    /// ```
    #[must_use]
    pub fn with_coalesce(mut self, delay: Duration) -> Self {
        self.coalesce = Some(delay);
        self
    }
}

impl ClientOptions {
    /// Sets [`log_if_unconfigured`](Self::log_if_unconfigured).
    ///
    /// ```
    /// use baseplate_runtime_metrics::ClientOptions;
    ///
    /// assert!(ClientOptions::new().with_log_if_unconfigured(true).log_if_unconfigured);
    /// ```
    #[must_use]
    pub fn with_log_if_unconfigured(mut self, log: bool) -> Self {
        self.log_if_unconfigured = log;
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
    namespace: Arc<str>,
    options: ClientOptions,
    /// The options' largest packet, or the transport's.
    max_packet_size: usize,
    send_errors: AtomicU64,
    warn_limiter: WarnLimiter,
    /// The packet being coalesced, and when its first line was added.
    pending: Mutex<Pending>,
    /// The shared counters with counts for the next packet.
    counted: Arc<Counted>,
    /// The task sending pending packets once they have waited too long.
    flusher: StartOnce<()>,
}

#[derive(Debug, Default)]
struct Pending {
    packet: String,
    since: Option<Instant>,
}

impl Pending {
    /// Moves the packet to `ready`, the shared counts written into it first (and into the
    /// packets it overflows into), and starts an empty one.
    fn hand_over(&mut self, counted: &Counted, max_packet_size: usize, ready: &mut Vec<String>) {
        write_counts(counted, &mut self.packet, max_packet_size, ready);
        ready.push(std::mem::take(&mut self.packet));
        self.since = None;
    }
}

impl Drop for ClientInner {
    fn drop(&mut self) {
        let pending = self
            .pending
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        let mut packets = Vec::new();
        pending.hand_over(&self.counted, self.max_packet_size, &mut packets);
        for packet in packets.iter().filter(|p| !p.is_empty()) {
            // The last clone is gone: nobody can count an error any more, so send and forget.
            let _ = self.transport.send(packet.as_bytes());
        }
    }
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
    /// assert_eq!(client.max_packet_size(), 512);
    /// ```
    pub fn with_options(
        transport: impl Transport + 'static,
        namespace: impl Into<String>,
        options: ClientOptions,
    ) -> Self {
        Self::with_boxed(Box::new(transport), namespace, options)
    }

    fn with_boxed(
        transport: Box<dyn Transport>,
        namespace: impl Into<String>,
        options: ClientOptions,
    ) -> Self {
        Self {
            inner: Arc::new(ClientInner {
                max_packet_size: options
                    .max_packet_size
                    .unwrap_or_else(|| transport.max_packet_size()),
                transport,
                namespace: Arc::from(namespace.into()),
                options,
                send_errors: AtomicU64::new(0),
                warn_limiter: WarnLimiter::new(WARN_INTERVAL),
                pending: Mutex::new(Pending::default()),
                counted: Arc::default(),
                flusher: StartOnce::new(),
            }),
        }
    }

    /// A client for baseplate's configuration, as baseplate.py's `metrics_client_from_config`
    /// makes it: for `endpoint` (`metrics.endpoint`), datagrams to a Unix socket when it is a
    /// path (it holds a `/`), UDP when it is a `host:port`; when it is `None` or empty, a client
    /// that discards every metric.
    ///
    /// ```
    /// use baseplate_runtime_metrics::MetricsClient;
    ///
    /// let client = MetricsClient::from_endpoint(Some("127.0.0.1:8125"), "ns").unwrap();
    /// let discarding = MetricsClient::from_endpoint(None, "ns").unwrap();
    /// let missing = MetricsClient::from_endpoint(Some("/nonexistent/statsd.sock"), "ns");
    /// assert_eq!(
    ///     missing.unwrap_err().to_string(),
    ///     "cannot send metrics to the Unix socket `/nonexistent/statsd.sock`: No such file or \
    ///      directory (os error 2)"
    /// );
    /// # let _ = (client, discarding);
    /// ```
    ///
    /// # Errors
    ///
    /// The errors of [`UdpTransport::connect`](crate::UdpTransport::connect) or
    /// `UnixDatagramTransport::connect` when an
    /// endpoint is given.
    pub fn from_endpoint(
        endpoint: Option<&str>,
        namespace: impl Into<String>,
    ) -> Result<Self, MetricsError> {
        Self::from_endpoint_with_options(endpoint, namespace, ClientOptions::new())
    }

    /// [`from_endpoint`](Self::from_endpoint) with explicit options; without an endpoint,
    /// [`ClientOptions::log_if_unconfigured`] says whether what would be sent is logged.
    ///
    /// # Errors
    ///
    /// The errors of [`UdpTransport::connect`](crate::UdpTransport::connect) or
    /// `UnixDatagramTransport::connect` when an
    /// endpoint is given.
    pub fn from_endpoint_with_options(
        endpoint: Option<&str>,
        namespace: impl Into<String>,
        options: ClientOptions,
    ) -> Result<Self, MetricsError> {
        let transport: Box<dyn Transport> = match endpoint.map(str::trim) {
            Some(endpoint) if !endpoint.is_empty() => transport::for_endpoint(endpoint)?,
            _ if options.log_if_unconfigured => Box::new(LoggingNullTransport),
            _ => Box::new(NullTransport),
        };
        Ok(Self::with_boxed(transport, namespace, options))
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

    /// The namespace, shared with the batches that use it as is.
    pub(crate) fn shared_namespace(&self) -> Arc<str> {
        Arc::clone(&self.inner.namespace)
    }

    /// The options this client was made with.
    ///
    /// ```
    /// use baseplate_runtime_metrics::{MetricsClient, NullTransport};
    ///
    /// let client = MetricsClient::new(NullTransport, "ns");
    /// assert_eq!(client.options().max_packet_size, None);
    /// ```
    #[must_use]
    pub fn options(&self) -> &ClientOptions {
        &self.inner.options
    }

    /// The largest packet this client sends: its options', or else its transport's.
    ///
    /// ```
    /// use baseplate_runtime_metrics::{
    ///     ClientOptions, DEFAULT_MAX_PACKET_SIZE, LOCAL_MAX_PACKET_SIZE, MetricsClient,
    ///     NullTransport,
    /// };
    ///
    /// let local = MetricsClient::from_endpoint(Some("127.0.0.1:8125"), "ns").unwrap();
    /// assert_eq!(local.max_packet_size(), LOCAL_MAX_PACKET_SIZE);
    /// let discarding = MetricsClient::new(NullTransport, "ns");
    /// assert_eq!(discarding.max_packet_size(), DEFAULT_MAX_PACKET_SIZE);
    /// let options = ClientOptions::new().with_max_packet_size(512);
    /// let chosen = MetricsClient::from_endpoint_with_options(Some("127.0.0.1:8125"), "ns", options);
    /// assert_eq!(chosen.unwrap().max_packet_size(), 512);
    /// ```
    #[must_use]
    pub fn max_packet_size(&self) -> usize {
        self.inner.max_packet_size
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

    /// `name` made ready for this client's batches: namespaced and checked once, rather than on
    /// every line (see [`Batch::timer_named`]).
    ///
    /// ```
    /// use baseplate_runtime_metrics::{MetricsClient, NullTransport};
    ///
    /// let client = MetricsClient::new(NullTransport, "ns");
    /// assert_eq!(client.metric_name("server.visit").as_str(), "server.visit");
    /// ```
    #[must_use]
    pub fn metric_name(&self, name: &str) -> MetricName {
        MetricName::new(name, &self.batch())
    }

    /// Sends a flushed batch's lines, newline-joined in `lines`: packed into packets of their
    /// own, or appended to the pending packet when coalescing.
    pub(crate) fn send_lines(&self, lines: &str) {
        let max_packet_size = self.inner.max_packet_size;
        let Some(delay) = self.inner.options.coalesce else {
            for packet in pack_lines(lines.split('\n'), max_packet_size) {
                self.send_packet(packet.as_bytes());
            }
            return;
        };
        if lines.is_empty() {
            return;
        }
        let mut ready = Vec::new();
        {
            let mut pending = self
                .inner
                .pending
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let now = Instant::now();
            // A packet handed over is replaced by one that will not need to grow (up to the
            // largest UDP payload, whatever `max_packet_size` says).
            let fresh = || String::with_capacity(max_packet_size.min(MAX_UDP_PAYLOAD));
            if pending.since.is_some_and(|since| now - since >= delay) {
                pending.hand_over(&self.inner.counted, max_packet_size, &mut ready);
                pending.packet = fresh();
            }
            let handed_over = ready.len();
            // The usual case: the whole batch fits the pending packet (so each of its lines
            // would) and goes in as one piece.
            if pending.packet.len() + 1 + lines.len() <= max_packet_size {
                push_line(
                    &mut pending.packet,
                    lines,
                    max_packet_size,
                    &mut ready,
                    fresh,
                );
            } else {
                for line in lines.split('\n') {
                    push_line(
                        &mut pending.packet,
                        line,
                        max_packet_size,
                        &mut ready,
                        fresh,
                    );
                }
            }
            if ready.len() > handed_over {
                // A packet filled up: the shared counts go out with the next one.
                write_counts(
                    &self.inner.counted,
                    &mut pending.packet,
                    max_packet_size,
                    &mut ready,
                );
            }
            pending.since = if pending.packet.is_empty() {
                None
            } else {
                Some(pending.since.filter(|_| ready.is_empty()).unwrap_or(now))
            };
        }
        for packet in ready.iter().filter(|p| !p.is_empty()) {
            self.send_packet(packet.as_bytes());
        }
        self.start_flusher(delay);
    }

    /// Sends the packet being coalesced now, if any (for shutdown).
    ///
    /// ```
    /// use std::time::Duration;
    /// use baseplate_runtime_metrics::{ClientOptions, MemoryTransport, MetricsClient};
    ///
    /// let transport = MemoryTransport::new();
    /// let options = ClientOptions::new().with_coalesce(Duration::from_secs(60));
    /// let client = MetricsClient::with_options(transport.clone(), "ns", options);
    /// let mut batch = client.batch();
    /// batch.gauge("a", 1.0);
    /// batch.flush();
    /// client.flush_pending();
    /// assert_eq!(transport.packets(), ["ns.a:1|g"]);
    /// ```
    pub fn flush_pending(&self) {
        let packets = {
            let mut pending = self
                .inner
                .pending
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let mut packets = Vec::new();
            pending.hand_over(
                &self.inner.counted,
                self.inner.max_packet_size,
                &mut packets,
            );
            packets
        };
        for packet in packets.iter().filter(|p| !p.is_empty()) {
            self.send_packet(packet.as_bytes());
        }
    }

    /// A counter summed here across batches and written once into each packet the client sends
    /// ([`SharedCounter`]), named as [`metric_name`](Self::metric_name) names it, sampled at
    /// `sample_rate` (1 for every event). `None` when the client sends each batch on its own (it
    /// does not coalesce: [`ClientOptions::with_coalesce`]) or the rate is not above 0: count
    /// in the batches then.
    pub fn shared_counter(&self, name: &str, sample_rate: f64) -> Option<SharedCounter> {
        self.inner.options.coalesce?;
        if sample_rate.is_nan() || sample_rate <= 0.0 {
            return None;
        }
        let name = self.metric_name(name);
        Some(SharedCounter::new(
            name.ready().into(),
            sample_rate.min(1.0),
            Arc::clone(&self.inner.counted),
        ))
    }

    /// Starts, once, the task that sends a pending packet after `delay`; without a tokio runtime
    /// the next flush sends it instead.
    fn start_flusher(&self, delay: Duration) {
        self.inner.flusher.get_or_start(|runtime| {
            let client = Arc::downgrade(&self.inner);
            runtime.spawn(async move {
                let mut tick = tokio::time::interval(delay);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    // The task ends with the client.
                    let Some(inner) = client.upgrade() else {
                        return;
                    };
                    MetricsClient { inner }.flush_pending();
                }
            });
            Some(())
        });
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

/// Appends the shared counters' lines to `packet`, moving it to `full` when one does not fit.
fn write_counts(
    counted: &Counted,
    packet: &mut String,
    max_packet_size: usize,
    full: &mut Vec<String>,
) {
    counted.write_all(|line| {
        push_line(packet, line, max_packet_size, full, || {
            String::with_capacity(max_packet_size.min(MAX_UDP_PAYLOAD))
        });
    });
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
    fn endpoint_errors_say_why_and_port_zero_is_one() {
        let error = |endpoint| {
            MetricsClient::from_endpoint(Some(endpoint), "ns")
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            error("127.0.0.1:0"),
            "metrics endpoint `127.0.0.1:0` has port 0, where nothing receives"
        );
        assert_eq!(
            error("statsd"),
            "cannot resolve metrics endpoint `statsd` as host:port: invalid socket address"
        );
        assert_eq!(
            error("udp://127.0.0.1:8125"),
            "cannot send metrics to the Unix socket `udp://127.0.0.1:8125`: No such file or \
             directory (os error 2) (an endpoint with a `/` is a Unix socket's path; a UDP one is \
             host:port, with no scheme)"
        );
    }

    /// A statsd socket on loopback and a client (namespace `ns`) sending to it by UDP.
    fn udp_statsd() -> (std::net::UdpSocket, MetricsClient) {
        let receiver = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        receiver
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let endpoint = receiver.local_addr().unwrap().to_string();
        let client = MetricsClient::from_endpoint(Some(&endpoint), "ns").unwrap();
        (receiver, client)
    }

    #[test]
    fn real_udp_socket_receives_the_exact_packet() {
        let (receiver, client) = udp_statsd();
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
    fn a_statsd_on_loopback_gets_packets_of_up_to_eight_kib() {
        let (receiver, client) = udp_statsd();
        let mut batch = client.batch();
        // 400 lines of 30 bytes: 12,399 bytes joined.
        for i in 0..400 {
            batch.gauge(&format!("runtime.gauge.{i:05}"), 12345.0);
        }
        batch.flush();

        let mut buffer = vec![0u8; 65_536];
        let mut sizes = Vec::new();
        let mut lines = 0;
        while lines < 400 {
            let size = receiver.recv(&mut buffer).unwrap();
            lines += buffer[..size].split(|&b| b == b'\n').count();
            sizes.push(size);
        }
        assert_eq!(lines, 400);
        // Two packets rather than nine of at most 1432 bytes.
        assert_eq!(sizes.len(), 2, "{sizes:?}");
        assert!(sizes[0] > DEFAULT_MAX_PACKET_SIZE && sizes[0] <= LOCAL_MAX_PACKET_SIZE);
    }

    #[cfg(unix)]
    #[test]
    fn a_path_endpoint_is_a_unix_datagram_socket_that_survives_its_receiver_restarting() {
        use std::os::unix::net::UnixDatagram;

        let dir = std::env::temp_dir().join(format!("rtm-unix-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("statsd.sock");
        let _ = std::fs::remove_file(&path);
        let endpoint = path.to_str().unwrap();
        let missing = MetricsClient::from_endpoint(Some(endpoint), "ns").unwrap_err();
        assert!(
            matches!(missing, MetricsError::UnixSocket { .. }),
            "{missing:?}"
        );

        let receive = |statsd: &UnixDatagram| {
            statsd
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let mut buffer = [0u8; 2048];
            let size = statsd.recv(&mut buffer).unwrap();
            String::from_utf8_lossy(&buffer[..size]).into_owned()
        };
        let statsd = UnixDatagram::bind(&path).unwrap();
        let client = MetricsClient::from_endpoint(Some(endpoint), "ns").unwrap();
        let mut batch = client.batch();
        batch.counter("requests", 1.0);
        batch.gauge("workers", 4.0);
        batch.flush();
        assert_eq!(receive(&statsd), "ns.workers:4|g\nns.requests:1|c");

        // The agent restarts: a new socket at the same path gets the next packet.
        drop(statsd);
        std::fs::remove_file(&path).unwrap();
        batch.counter("lost", 1.0);
        batch.flush();
        let statsd = UnixDatagram::bind(&path).unwrap();
        batch.counter("requests", 1.0);
        batch.flush();
        assert_eq!(receive(&statsd), "ns.requests:1|c");
        assert_eq!(
            client.send_errors(),
            1,
            "only the packet sent while it was down"
        );
        std::fs::remove_dir_all(&dir).unwrap();
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

    fn coalescing(delay: Duration, max_packet_size: usize) -> (MetricsClient, MemoryTransport) {
        let transport = MemoryTransport::new();
        let options = ClientOptions::new()
            .with_max_packet_size(max_packet_size)
            .with_coalesce(delay);
        (
            MetricsClient::with_options(transport.clone(), "ns", options),
            transport,
        )
    }

    #[test]
    fn coalesced_batches_share_full_packets_in_order_with_nothing_lost() {
        let (client, transport) = coalescing(Duration::from_secs(3600), 200);
        for request in 0..100 {
            let mut batch = client.batch();
            batch.gauge(&format!("r{request}.a"), 1.0);
            batch.gauge(&format!("r{request}.b"), 2.0);
            batch.flush();
        }
        // Nothing older than the delay: only full packets have gone out.
        let sent_before_flush = transport.packets();
        assert!(
            sent_before_flush.iter().all(|p| p.len() > 150),
            "{sent_before_flush:?}"
        );
        client.flush_pending();

        let packets = transport.packets();
        assert!(
            packets.len() < 30,
            "{} packets for 100 batches",
            packets.len()
        );
        assert!(packets.iter().all(|p| p.len() <= 200));
        let lines = transport.lines();
        let expected: Vec<String> = (0..100)
            .flat_map(|r| [format!("ns.r{r}.a:1|g"), format!("ns.r{r}.b:2|g")])
            .collect();
        assert_eq!(lines, expected);
    }

    #[tokio::test]
    async fn a_pending_packet_goes_out_after_the_delay() {
        let (client, transport) = coalescing(Duration::from_millis(20), DEFAULT_MAX_PACKET_SIZE);
        let mut batch = client.batch();
        batch.counter("requests", 1.0);
        batch.flush();
        assert!(transport.is_empty(), "sent before the delay");
        tokio::time::timeout(Duration::from_secs(5), transport.wait_for_packets(1))
            .await
            .expect("the flusher sends the pending packet");
        assert_eq!(transport.packets(), ["ns.requests:1|c"]);
    }

    #[test]
    fn without_a_runtime_the_next_flush_after_the_delay_sends_the_pending_packet() {
        let (client, transport) = coalescing(Duration::from_millis(1), DEFAULT_MAX_PACKET_SIZE);
        let mut batch = client.batch();
        batch.gauge("a", 1.0);
        batch.flush();
        assert!(transport.is_empty());
        std::thread::sleep(Duration::from_millis(5));
        batch.gauge("b", 2.0);
        batch.flush();
        assert_eq!(transport.packets(), ["ns.a:1|g"]);
    }

    #[test]
    fn dropping_the_client_sends_the_pending_packet() {
        let (client, transport) = coalescing(Duration::from_secs(3600), DEFAULT_MAX_PACKET_SIZE);
        let mut batch = client.batch();
        batch.gauge("last", 1.0);
        batch.flush();
        drop(batch);
        drop(client);
        assert_eq!(transport.packets(), ["ns.last:1|g"]);
    }

    #[test]
    fn shared_counts_ride_in_the_packets_summed_after_the_lines_counted_with_them() {
        let (client, transport) = coalescing(Duration::from_secs(3600), 120);
        let served = client.shared_counter("served", 1.0).unwrap();
        let failed = client.shared_counter("failed", 0.5).unwrap();
        let idle = client.shared_counter("idle", 1.0).unwrap();
        for request in 0..10 {
            let mut batch = client.batch();
            batch.count_shared(&served);
            batch.gauge(&format!("r{request}"), 1.0);
            if request % 5 == 0 {
                batch.count_shared(&failed);
            }
            batch.flush();
        }
        client.flush_pending();
        // Each packet that filled up took the counts so far along in the next one.
        let packets = transport.packets();
        assert!(
            packets[..packets.len() - 1]
                .iter()
                .any(|p| p.contains("ns.served:")),
            "{packets:?}"
        );
        let counted = |name: &str| -> f64 {
            transport
                .lines()
                .iter()
                .filter_map(|line| line.strip_prefix(&format!("ns.{name}:")))
                .map(|rest| rest.split('|').next().unwrap().parse::<f64>().unwrap())
                .sum()
        };
        assert_eq!(counted("served"), 10.0);
        assert_eq!(counted("failed"), 2.0);
        assert!(transport.lines().iter().all(|l| !l.starts_with("ns.idle")));
        assert!(
            (transport.lines().iter())
                .filter(|l| l.starts_with("ns.failed"))
                .all(|l| l.ends_with("|c|@0.5")),
            "{packets:?}"
        );
        let gauges: Vec<String> = (transport.lines().into_iter())
            .filter(|l| l.ends_with("|g"))
            .collect();
        assert_eq!(gauges.len(), 10, "no batch's line lost: {packets:?}");
        drop(idle);

        // Nothing counted since: the next packet carries no counter line.
        let mut batch = client.batch();
        batch.gauge("later", 1.0);
        batch.flush();
        client.flush_pending();
        assert_eq!(transport.packets().last().unwrap(), "ns.later:1|g");
    }

    #[test]
    fn counts_from_many_threads_add_up_exactly_and_go_out_with_the_client() {
        let (client, transport) = coalescing(Duration::from_secs(3600), 64);
        let counter = client.shared_counter("requests", 1.0).unwrap();
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for n in 0..5_000 {
                        counter.increment();
                        if n % 100 == 0 {
                            // Packets leave meanwhile, taking the counts so far.
                            let mut batch = client.batch();
                            batch.gauge("tick", 1.0);
                            batch.flush();
                        }
                    }
                });
            }
        });
        drop(counter);
        drop(client);
        let total: u64 = (transport.lines().iter())
            .filter_map(|line| line.strip_prefix("ns.requests:"))
            .map(|rest| rest.strip_suffix("|c").unwrap().parse::<u64>().unwrap())
            .sum();
        assert_eq!(total, 20_000);
    }

    #[test]
    fn only_a_coalescing_client_sums_counters_and_only_at_a_rate_above_zero() {
        let client = MetricsClient::new(MemoryTransport::new(), "ns");
        assert!(client.shared_counter("requests", 1.0).is_none());
        let (client, _) = coalescing(Duration::from_millis(50), DEFAULT_MAX_PACKET_SIZE);
        assert!(client.shared_counter("requests", 0.0).is_none());
        assert!(client.shared_counter("requests", f64::NAN).is_none());
        assert!(client.shared_counter("requests", 2.0).is_some());
    }
}
