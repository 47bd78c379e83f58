//! A statsd endpoint for tests: a UDP socket on loopback, or a Unix datagram socket, that receives
//! what a service sends, and ways to wait for the packets and lines a test is about.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use baseplate::{Baseplate, ClusterRedisClient, RawConfig};
use tokio::net::{UdpSocket, UnixDatagram};

use crate::{cluster, golden};

/// `lines` as a test compares them: the request's lines only (runtime reports dropped), timers
/// without their values (`ns.clients.foo.GET|ms`), each counter's lines summed into one as the
/// statsd server adds them (requests that share a packet send their counts summed), sorted.
pub fn request_lines(lines: Vec<String>) -> Vec<String> {
    let lines: Vec<String> = lines
        .into_iter()
        .filter(|line| !is_runtime_line(line))
        .collect();
    let counters = golden::counter_sums(&lines)
        .into_iter()
        .map(|(counter, sum)| match counter.split_once('|') {
            Some((name, kind)) => format!("{name}:{sum}|{kind}"),
            None => counter,
        });
    let mut lines: Vec<String> = lines
        .into_iter()
        .filter(|line| !golden::is_counter(line))
        .map(|line| match line.split_once(':') {
            Some((name, value)) if value.ends_with("|ms") => format!("{name}|ms"),
            _ => line,
        })
        .chain(counters)
        .collect();
    lines.sort();
    lines
}

/// What a test sends itself after the service's packets, to know it has read them all.
const MARKER: &str = "--statsd-test-marker--";

/// A statsd endpoint on this machine.
#[derive(Debug)]
pub struct Statsd {
    socket: Socket,
}

#[derive(Debug)]
enum Socket {
    Udp(UdpSocket),
    /// The socket and its path, removed when the endpoint is dropped.
    Unix(UnixDatagram, PathBuf),
}

impl Statsd {
    /// A service whose statsd lines come here, under the namespace `ns`, with the client `foo` on
    /// the test cluster; `extra` keys are added on top (a key given again replaces the default).
    ///
    /// # Panics
    /// When the config is refused.
    pub fn service(&self, extra: &[(&str, &str)]) -> Baseplate {
        self.service_with(extra, |baseplate| baseplate)
    }

    /// [`service`](Self::service), with `setup` applied to the service before it is configured
    /// (a shorter runtime-metrics interval, say).
    ///
    /// # Panics
    /// When the config is refused.
    pub fn service_with(
        &self,
        extra: &[(&str, &str)],
        setup: impl FnOnce(Baseplate) -> Baseplate,
    ) -> Baseplate {
        let endpoint = self.endpoint();
        let mut config: RawConfig = [
            ("metrics.namespace", "ns"),
            ("metrics.endpoint", endpoint.as_str()),
            ("foo.url", cluster().url()),
        ]
        .into_iter()
        .collect();
        config.extend(extra.iter().copied());
        let mut baseplate = setup(Baseplate::new(config));
        baseplate.configure_observers().expect("the metrics config");
        baseplate
            .configure_context("foo", ClusterRedisClient::new())
            .expect("the client's config");
        baseplate
    }

    /// A UDP endpoint on `127.0.0.1` and a port the system chose.
    ///
    /// # Panics
    /// When no socket can be bound.
    pub async fn bind() -> Statsd {
        let socket = UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("binding a UDP socket on loopback");
        Statsd {
            socket: Socket::Udp(socket),
        }
    }

    /// A Unix datagram endpoint at `path` (which must not exist yet), for `metrics.endpoint =
    /// /path/to/statsd.sock`.
    ///
    /// # Panics
    /// When no socket can be bound there.
    pub fn bind_unix(path: &Path) -> Statsd {
        let socket = UnixDatagram::bind(path)
            .unwrap_or_else(|e| panic!("binding a Unix datagram socket at {path:?}: {e}"));
        Statsd {
            socket: Socket::Unix(socket, path.to_owned()),
        }
    }

    /// What `metrics.endpoint` says to reach it: `127.0.0.1:PORT`, or the socket's path.
    pub fn endpoint(&self) -> String {
        match &self.socket {
            Socket::Udp(socket) => socket
                .local_addr()
                .expect("a bound socket has an address")
                .to_string(),
            Socket::Unix(_, path) => path.display().to_string(),
        }
    }

    /// The next packet, or `None` when none arrives before `until`.
    pub async fn next(&self, until: Instant) -> Option<String> {
        let mut buf = vec![0u8; 65_536];
        let received = match &self.socket {
            Socket::Udp(socket) => {
                tokio::time::timeout_at(until.into(), socket.recv(&mut buf)).await
            }
            Socket::Unix(socket, _) => {
                tokio::time::timeout_at(until.into(), socket.recv(&mut buf)).await
            }
        };
        let n = received.ok()?.ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    }

    /// The request metrics of the packets that arrive: each packet's lines other than the runtime
    /// reporter's (see [`is_runtime_line`]), which may come at any moment and are not what the
    /// request tests are about. Waits up to five seconds for the first such packet, then keeps
    /// listening for a short while so a request's lines split over two packets would show as two.
    pub async fn request_packets(&self) -> Vec<String> {
        let mut until = Instant::now() + Duration::from_secs(5);
        let mut packets = Vec::new();
        while let Some(packet) = self.next(until).await {
            let lines: Vec<&str> = packet
                .lines()
                .filter(|line| !is_runtime_line(line))
                .collect();
            if !lines.is_empty() {
                if packets.is_empty() {
                    until = Instant::now() + Duration::from_millis(300);
                }
                packets.push(lines.join("\n"));
            }
        }
        packets
    }

    /// Packets until one satisfies `done`, for at most five seconds.
    ///
    /// # Panics
    /// When no such packet comes in time.
    pub async fn packets_until(&self, mut done: impl FnMut(&str) -> bool) -> Vec<String> {
        let until = Instant::now() + Duration::from_secs(5);
        let mut packets = Vec::new();
        while let Some(packet) = self.next(until).await {
            let finished = done(&packet);
            packets.push(packet);
            if finished {
                return packets;
            }
        }
        panic!("the awaited packet never came; got {packets:?}");
    }

    /// The lines that arrive until one satisfies `done` (that one included), for at most ten
    /// seconds; lines after it in the same packet are dropped, so call it only when nothing else
    /// is being sent that the test needs.
    ///
    /// # Panics
    /// When no such line comes in time.
    pub async fn lines_until(&self, mut done: impl FnMut(&str) -> bool) -> Vec<String> {
        let until = Instant::now() + Duration::from_secs(10);
        let mut lines = Vec::new();
        while let Some(packet) = self.next(until).await {
            for line in packet.lines() {
                lines.push(line.to_owned());
                if done(line) {
                    return lines;
                }
            }
        }
        panic!("the awaited line never came; got {lines:#?}");
    }

    /// Every line sent so far: sends itself a marker and reads until it comes back. The service
    /// must have sent everything it will (say, `Baseplate::shutdown` returned): datagrams to one
    /// socket on this machine arrive in the order they were sent.
    ///
    /// # Panics
    /// When the marker does not come back within ten seconds.
    pub async fn lines_until_marker(&self) -> Vec<String> {
        match &self.socket {
            Socket::Udp(socket) => {
                let sender = UdpSocket::bind("127.0.0.1:0").await.expect("a sender");
                let to = socket.local_addr().expect("a bound socket has an address");
                sender
                    .send_to(MARKER.as_bytes(), to)
                    .await
                    .expect("sending the marker");
            }
            Socket::Unix(_, path) => {
                let sender = UnixDatagram::unbound().expect("a sender");
                sender
                    .send_to(MARKER.as_bytes(), path)
                    .await
                    .expect("sending the marker");
            }
        }
        let mut lines = self.lines_until(|line| line == MARKER).await;
        lines.pop();
        lines
    }
}

impl Drop for Statsd {
    fn drop(&mut self) {
        if let Socket::Unix(_, path) = &self.socket {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Whether a statsd line is one of the runtime reporter's (`runtime.pool.size,...`, under a
/// namespace or not) rather than a request's.
pub fn is_runtime_line(line: &str) -> bool {
    let name = line.split([',', ':']).next().unwrap_or(line);
    name.starts_with("runtime.") || name.contains(".runtime.")
}

#[cfg(test)]
mod tests {
    use super::request_lines;

    #[test]
    fn request_lines_sum_each_counter_and_keep_each_timer() {
        let lines = [
            "ns.server.route.success:1|c",
            "ns.server.route:1.5|ms",
            "ns.server.route.success:2|c",
            "ns.server.route:0.25|ms",
            "ns.server.route.failure:1|c|@0.5",
        ];
        assert_eq!(
            request_lines(lines.map(String::from).to_vec()),
            [
                "ns.server.route.failure:1|c|@0.5",
                "ns.server.route.success:3|c",
                "ns.server.route|ms",
                "ns.server.route|ms",
            ]
        );
    }
}
