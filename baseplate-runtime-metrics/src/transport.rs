//! Transports that carry statsd packets: UDP to the endpoint, nowhere (null), or into memory for tests.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs, UdpSocket};
#[cfg(unix)]
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::watch;

use crate::client::{DEFAULT_MAX_PACKET_SIZE, LOCAL_MAX_PACKET_SIZE};
use crate::error::MetricsError;

/// Sends one statsd packet (newline-joined lines that fit one datagram).
///
/// A transport reports a failed send as an `Err`; the [`MetricsClient`](crate::MetricsClient) that
/// owns it counts and logs the error, so it never reaches whoever flushed the batch. `send` must not
/// block: a transport that cannot send now drops the packet and returns an error.
///
/// ```
/// use std::io;
/// use baseplate_runtime_metrics::Transport;
///
/// /// Writes packets to standard error.
/// #[derive(Debug)]
/// struct Stderr;
///
/// impl Transport for Stderr {
///     fn send(&self, packet: &[u8]) -> io::Result<()> {
///         eprintln!("{}", String::from_utf8_lossy(packet));
///         Ok(())
///     }
/// }
///
/// let transport: Box<dyn Transport> = Box::new(Stderr);
/// transport.send(b"ns.requests:1|c").unwrap();
/// ```
pub trait Transport: Send + Sync + fmt::Debug {
    /// Sends one packet.
    ///
    /// # Errors
    ///
    /// Whatever error prevented sending; the packet is lost (statsd over UDP is lossy by design).
    fn send(&self, packet: &[u8]) -> io::Result<()>;

    /// The largest packet worth sending through this transport, where the client's options name
    /// none: [`DEFAULT_MAX_PACKET_SIZE`] unless the transport knows its receiver is on this host.
    fn max_packet_size(&self) -> usize {
        DEFAULT_MAX_PACKET_SIZE
    }
}

/// Sends packets over UDP to a statsd endpoint, resolved once when the transport is created.
///
/// The socket is non-blocking and connected to the endpoint: a full socket buffer drops the packet
/// instead of blocking, and on Linux an unreachable port is reported by a later send, which the
/// client counts.
///
/// ```
/// use baseplate_runtime_metrics::UdpTransport;
///
/// let transport = UdpTransport::connect("127.0.0.1:8125").unwrap();
/// assert_eq!(transport.peer().port(), 8125);
/// ```
#[derive(Debug)]
pub struct UdpTransport {
    socket: UdpSocket,
    peer: SocketAddr,
}

impl UdpTransport {
    /// Resolves `endpoint` (`host:port`, as in `metrics.endpoint`) and opens a socket to its first
    /// IPv4 address, else its first address: baseplate.py sends over IPv4, so `localhost:8125`
    /// reaches a statsd listening on 127.0.0.1 even where `localhost` resolves to `::1` first.
    /// Resolving may block on DNS, so create the transport at start-up.
    ///
    /// # Errors
    ///
    /// [`MetricsError::Resolve`] when `endpoint` is not a resolvable `host:port`,
    /// [`MetricsError::NoAddress`] when it resolves to nothing, and [`MetricsError::Socket`] when
    /// the socket cannot be opened, connected or made non-blocking.
    pub fn connect(endpoint: &str) -> Result<Self, MetricsError> {
        let resolved = endpoint
            .to_socket_addrs()
            .map_err(|source| MetricsError::Resolve {
                endpoint: endpoint.to_owned(),
                source,
            })?;
        let peer = preferred_address(resolved).ok_or_else(|| MetricsError::NoAddress {
            endpoint: endpoint.to_owned(),
        })?;
        if peer.port() == 0 {
            return Err(MetricsError::PortZero {
                endpoint: endpoint.to_owned(),
            });
        }
        let socket_error = |source| MetricsError::Socket {
            endpoint: endpoint.to_owned(),
            source,
        };
        let local: SocketAddr = if peer.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            ([0u16; 8], 0).into()
        };
        let socket = UdpSocket::bind(local).map_err(socket_error)?;
        socket.connect(peer).map_err(socket_error)?;
        socket.set_nonblocking(true).map_err(socket_error)?;
        Ok(Self { socket, peer })
    }

    /// The address packets are sent to.
    ///
    /// ```
    /// use baseplate_runtime_metrics::UdpTransport;
    ///
    /// let transport = UdpTransport::connect("127.0.0.1:8125").unwrap();
    /// assert_eq!(transport.peer().to_string(), "127.0.0.1:8125");
    /// ```
    #[must_use]
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }
}

/// The address a statsd endpoint's packets go to among those its name resolves to: the first
/// IPv4 one, as baseplate.py (whose socket is IPv4) would reach, else the first.
fn preferred_address(resolved: impl IntoIterator<Item = SocketAddr>) -> Option<SocketAddr> {
    let mut first = None;
    for address in resolved {
        if address.is_ipv4() {
            return Some(address);
        }
        first.get_or_insert(address);
    }
    first
}

impl Transport for UdpTransport {
    fn send(&self, packet: &[u8]) -> io::Result<()> {
        self.socket.send(packet).map(|_| ())
    }

    /// [`LOCAL_MAX_PACKET_SIZE`] to a loopback address, [`DEFAULT_MAX_PACKET_SIZE`] otherwise.
    fn max_packet_size(&self) -> usize {
        max_packet_size_to(self.peer.ip())
    }
}

/// The largest packet to send to `ip` by UDP: only a loopback address is sure to be on this host.
fn max_packet_size_to(ip: IpAddr) -> usize {
    if ip.to_canonical().is_loopback() {
        LOCAL_MAX_PACKET_SIZE
    } else {
        DEFAULT_MAX_PACKET_SIZE
    }
}

/// Sends packets as datagrams to a Unix socket, as baseplate.py does for a `metrics.endpoint`
/// that is a path (`/var/run/statsd.sock`).
///
/// Creating the transport checks that something receives at the path, as baseplate.py's
/// `connect` does at start-up. Each packet is then addressed to the path, so a statsd agent that
/// restarts and binds the path again receives the next packet. The socket is non-blocking: when
/// the receiver's queue is full the packet is dropped and the send counted as failed.
///
/// ```
/// # let dir = std::env::temp_dir().join(format!("runtime-metrics-doc-{}", std::process::id()));
/// # std::fs::create_dir_all(&dir).unwrap();
/// use std::os::unix::net::UnixDatagram;
/// use baseplate_runtime_metrics::{Transport, UnixDatagramTransport};
///
/// let path = dir.join("statsd.sock");
/// # let _ = std::fs::remove_file(&path);
/// let statsd = UnixDatagram::bind(&path).unwrap();
/// let transport = UnixDatagramTransport::connect(&path).unwrap();
/// transport.send(b"ns.requests:1|c").unwrap();
///
/// let mut buffer = [0; 64];
/// let size = statsd.recv(&mut buffer).unwrap();
/// assert_eq!(&buffer[..size], b"ns.requests:1|c");
/// # std::fs::remove_dir_all(&dir).unwrap();
/// ```
#[cfg(unix)]
#[derive(Debug)]
pub struct UnixDatagramTransport {
    socket: UnixDatagram,
    path: PathBuf,
}

#[cfg(unix)]
impl UnixDatagramTransport {
    /// Opens a socket for the datagram socket at `path`, after checking that something
    /// receives there.
    ///
    /// # Errors
    ///
    /// [`MetricsError::UnixSocket`] naming the path when nothing receives there (no such file,
    /// or not a datagram socket) or the socket cannot be set up.
    pub fn connect(path: impl AsRef<Path>) -> Result<Self, MetricsError> {
        let path = path.as_ref();
        let failed = |source| MetricsError::UnixSocket {
            path: path.to_owned(),
            source,
        };
        UnixDatagram::unbound()
            .and_then(|probe| probe.connect(path))
            .map_err(failed)?;
        let socket = UnixDatagram::unbound().map_err(failed)?;
        socket.set_nonblocking(true).map_err(failed)?;
        Ok(Self {
            socket,
            path: path.to_owned(),
        })
    }

    /// The path packets are sent to.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(unix)]
impl Transport for UnixDatagramTransport {
    fn send(&self, packet: &[u8]) -> io::Result<()> {
        self.socket.send_to(packet, &self.path).map(|_| ())
    }

    /// [`LOCAL_MAX_PACKET_SIZE`]: the receiver is on this host.
    fn max_packet_size(&self) -> usize {
        LOCAL_MAX_PACKET_SIZE
    }
}

/// Opens the transport for a `metrics.endpoint`: a Unix socket when it is a path (it holds a
/// `/`, as baseplate.py decides), UDP to `host:port` otherwise.
pub(crate) fn for_endpoint(endpoint: &str) -> Result<Box<dyn Transport>, MetricsError> {
    if !endpoint.contains('/') {
        return Ok(Box::new(UdpTransport::connect(endpoint)?));
    }
    #[cfg(unix)]
    {
        Ok(Box::new(UnixDatagramTransport::connect(endpoint)?))
    }
    #[cfg(not(unix))]
    {
        Err(MetricsError::UnixSocket {
            path: PathBuf::from(endpoint),
            source: io::Error::new(io::ErrorKind::Unsupported, "no Unix sockets here"),
        })
    }
}

/// Discards every packet, logging each line at `debug` level: baseplate.py's `NullTransport`
/// with `metrics.log_if_unconfigured = true`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct LoggingNullTransport;

impl Transport for LoggingNullTransport {
    fn send(&self, packet: &[u8]) -> io::Result<()> {
        for line in String::from_utf8_lossy(packet).lines() {
            tracing::debug!(metric = line, "would send metric (no metrics.endpoint)");
        }
        Ok(())
    }
}

/// Discards every packet, as baseplate.py does when no `metrics.endpoint` is configured.
/// Packets are logged at `trace` level.
///
/// ```
/// use baseplate_runtime_metrics::{NullTransport, Transport};
///
/// assert!(NullTransport.send(b"ns.requests:1|c").is_ok());
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct NullTransport;

impl Transport for NullTransport {
    fn send(&self, packet: &[u8]) -> io::Result<()> {
        tracing::trace!(packet = %String::from_utf8_lossy(packet), "would send metrics packet");
        Ok(())
    }
}

/// Records every packet in memory, for tests. Clones share the same record, so keep one clone and
/// give the other to the client.
///
/// ```
/// use baseplate_runtime_metrics::{MemoryTransport, MetricsClient};
///
/// let transport = MemoryTransport::new();
/// let client = MetricsClient::new(transport.clone(), "ns");
/// let mut batch = client.batch();
/// batch.gauge("workers", 4.0);
/// batch.flush();
/// assert_eq!(transport.packets(), ["ns.workers:4|g"]);
/// ```
#[derive(Debug, Clone)]
pub struct MemoryTransport {
    inner: Arc<MemoryInner>,
}

#[derive(Debug)]
struct MemoryInner {
    packets: Mutex<Vec<Vec<u8>>>,
    count: watch::Sender<usize>,
}

impl MemoryTransport {
    /// An empty record.
    #[must_use]
    pub fn new() -> Self {
        Self {
            inner: Arc::new(MemoryInner {
                packets: Mutex::new(Vec::new()),
                count: watch::Sender::new(0),
            }),
        }
    }

    /// Every packet sent so far, in order (lossy UTF-8).
    ///
    /// ```
    /// use baseplate_runtime_metrics::{MemoryTransport, Transport};
    ///
    /// let transport = MemoryTransport::new();
    /// transport.send(b"a:1|c\nb:2|c").unwrap();
    /// assert_eq!(transport.packets(), ["a:1|c\nb:2|c"]);
    /// ```
    #[must_use]
    pub fn packets(&self) -> Vec<String> {
        self.lock()
            .iter()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect()
    }

    /// Every line of every packet sent so far, in order.
    ///
    /// ```
    /// use baseplate_runtime_metrics::{MemoryTransport, Transport};
    ///
    /// let transport = MemoryTransport::new();
    /// transport.send(b"a:1|c\nb:2|c").unwrap();
    /// assert_eq!(transport.lines(), ["a:1|c", "b:2|c"]);
    /// ```
    #[must_use]
    pub fn lines(&self) -> Vec<String> {
        self.packets()
            .iter()
            .flat_map(|p| p.split('\n').map(str::to_owned).collect::<Vec<_>>())
            .collect()
    }

    /// How many packets were sent so far.
    ///
    /// ```
    /// use baseplate_runtime_metrics::MemoryTransport;
    ///
    /// assert_eq!(MemoryTransport::new().len(), 0);
    /// ```
    #[must_use]
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no packet was sent yet.
    ///
    /// ```
    /// use baseplate_runtime_metrics::MemoryTransport;
    ///
    /// assert!(MemoryTransport::new().is_empty());
    /// ```
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets the packets sent so far.
    ///
    /// ```
    /// use baseplate_runtime_metrics::{MemoryTransport, Transport};
    ///
    /// let transport = MemoryTransport::new();
    /// transport.send(b"a:1|c").unwrap();
    /// transport.clear();
    /// assert!(transport.is_empty());
    /// ```
    pub fn clear(&self) {
        self.lock().clear();
        self.inner.count.send_replace(0);
    }

    /// Waits until at least `count` packets were sent. Wrap it in `tokio::time::timeout`.
    ///
    /// ```
    /// use baseplate_runtime_metrics::{MemoryTransport, Transport};
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let transport = MemoryTransport::new();
    /// transport.send(b"a:1|c").unwrap();
    /// transport.wait_for_packets(1).await;
    /// # });
    /// ```
    pub async fn wait_for_packets(&self, count: usize) {
        let mut receiver = self.inner.count.subscribe();
        // The sender lives as long as `self`, so waiting can only end by the condition holding.
        let _ = receiver.wait_for(|sent| *sent >= count).await;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Vec<u8>>> {
        self.inner
            .packets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl Default for MemoryTransport {
    fn default() -> Self {
        Self::new()
    }
}

impl Transport for MemoryTransport {
    fn send(&self, packet: &[u8]) -> io::Result<()> {
        let count = {
            let mut packets = self.lock();
            packets.push(packet.to_vec());
            packets.len()
        };
        self.inner.count.send_replace(count);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endpoint_that_resolves_to_both_families_is_reached_over_ipv4() {
        let v6: SocketAddr = "[::1]:8125".parse().unwrap();
        let v4: SocketAddr = "127.0.0.1:8125".parse().unwrap();
        let other_v4: SocketAddr = "10.0.0.1:8125".parse().unwrap();
        assert_eq!(preferred_address([v6, v4, other_v4]), Some(v4));
        assert_eq!(preferred_address([v6]), Some(v6));
        assert_eq!(preferred_address([]), None);
    }

    #[test]
    fn unresolvable_endpoints_are_errors_naming_the_endpoint() {
        let error = UdpTransport::connect("no-port-here").unwrap_err();
        assert!(matches!(error, MetricsError::Resolve { .. }), "{error:?}");
        assert!(error.to_string().contains("`no-port-here`"), "{error}");
    }

    #[test]
    fn only_a_statsd_on_this_host_gets_local_sized_packets() {
        let size = |ip: &str| max_packet_size_to(ip.parse().unwrap());
        for local in ["127.0.0.1", "127.8.0.1", "::1", "::ffff:127.0.0.1"] {
            assert_eq!(size(local), LOCAL_MAX_PACKET_SIZE, "{local}");
        }
        for remote in [
            "10.0.0.7",
            "192.0.2.1",
            "::ffff:10.0.0.7",
            "2001:db8::1",
            "0.0.0.0",
        ] {
            assert_eq!(size(remote), DEFAULT_MAX_PACKET_SIZE, "{remote}");
        }
    }

    #[test]
    fn memory_transport_clones_share_the_record() {
        let transport = MemoryTransport::new();
        let other = transport.clone();
        other.send(b"a:1|c").unwrap();
        assert_eq!(transport.packets(), ["a:1|c"]);
        assert_eq!(transport.len(), 1);
    }
}
