//! What the chaos runs watch besides the load: every span field, `tracing` event and `log` record
//! the process produces (scanned for the password, warnings kept), and every statsd packet.
//!
//! [`observer`] installs the process's global subscriber once: the scanner. `log` records
//! (redis-rs logs through `log`) are forwarded into `tracing` at DEBUG and above, so they are
//! scanned too.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use tokio::net::UdpSocket;
use tokio::task::JoinHandle;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Record};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::{Context, SubscriberExt as _};
use tracing_subscriber::util::SubscriberInitExt as _;

/// The most warnings kept per watch; later ones are only counted.
const MAX_WARNINGS: usize = 1_000;

/// The process-wide observer; see the module docs.
pub struct Observer {
    scanner: Scanner,
}

impl fmt::Debug for Observer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Observer")
            .field("scanned", &self.scanned())
            .finish_non_exhaustive()
    }
}

/// The observer, installing the global subscriber on first use.
///
/// # Panics
/// When another global subscriber was installed first.
pub fn observer() -> &'static Observer {
    static OBSERVER: OnceLock<Observer> = OnceLock::new();
    OBSERVER.get_or_init(|| {
        let scanner = Scanner::default();
        tracing_subscriber::registry()
            .with(scanner.clone())
            .with(LevelFilter::DEBUG)
            .try_init()
            .expect("the chaos observer is the process's only global subscriber");
        Observer { scanner }
    })
}

impl Observer {
    /// Starts a new watch for `needle`: findings and warnings so far are forgotten.
    pub fn watch(&self, needle: &str) {
        let mut state = self.scanner.lock();
        *state = ScanState {
            needle: Some(needle.to_owned()),
            ..ScanState::default()
        };
        self.scanner.scanned.store(0, Ordering::Relaxed);
    }

    /// Stops watching; returns what this watch saw.
    pub fn finish(&self) -> Watched {
        let mut state = self.scanner.lock();
        let state = std::mem::take(&mut *state);
        Watched {
            scanned: self.scanner.scanned.swap(0, Ordering::Relaxed),
            leaks: state.leaks,
            warnings: state.warnings,
            warnings_total: state.warnings_total,
        }
    }

    /// How many span field sets, events and other texts were scanned in this watch.
    pub fn scanned(&self) -> u64 {
        self.scanner.scanned.load(Ordering::Relaxed)
    }

    /// Scans a text produced outside `tracing` (an error a caller got, a metric packet).
    pub fn scan(&self, origin: &str, text: &str) {
        self.scanner.scan(origin, text);
    }
}

/// What one watch saw.
#[derive(Debug, Clone, Default)]
pub struct Watched {
    /// Texts scanned: span field sets, events, errors and metric packets.
    pub scanned: u64,
    /// Texts that contained the needle, each prefixed with where it came from.
    pub leaks: Vec<String>,
    /// WARN and ERROR events, as `target: message fields`, at most a thousand.
    pub warnings: Vec<String>,
    /// How many WARN and ERROR events there were.
    pub warnings_total: u64,
}

/// The scanning layer.
#[derive(Clone, Default)]
struct Scanner {
    state: Arc<Mutex<ScanState>>,
    scanned: Arc<AtomicU64>,
}

#[derive(Default)]
struct ScanState {
    needle: Option<String>,
    leaks: Vec<String>,
    warnings: Vec<String>,
    warnings_total: u64,
}

impl Scanner {
    fn lock(&self) -> std::sync::MutexGuard<'_, ScanState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn scan(&self, origin: &str, text: &str) {
        self.scanned.fetch_add(1, Ordering::Relaxed);
        let mut state = self.lock();
        if let Some(needle) = &state.needle
            && text.contains(needle.as_str())
        {
            let leak = format!("{origin}: {text}");
            state.leaks.push(leak);
        }
    }
}

/// Every field of a span or event as `name=value` pairs.
#[derive(Default)]
struct Text(String);

impl Visit for Text {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        use fmt::Write as _;
        let _ = write!(self.0, " {}={value:?}", field.name());
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push(' ');
        self.0.push_str(field.name());
        self.0.push('=');
        self.0.push_str(value);
    }
}

impl<S: Subscriber> Layer<S> for Scanner {
    fn on_new_span(&self, attrs: &Attributes<'_>, _id: &tracing::Id, _ctx: Context<'_, S>) {
        let mut text = Text(attrs.metadata().name().to_owned());
        attrs.record(&mut text);
        self.scan("span", &text.0);
    }

    fn on_record(&self, _id: &tracing::Id, values: &Record<'_>, _ctx: Context<'_, S>) {
        let mut text = Text::default();
        values.record(&mut text);
        self.scan("span field", &text.0);
    }

    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let metadata = event.metadata();
        let mut text = Text(metadata.target().to_owned());
        event.record(&mut text);
        self.scan("log", &text.0);
        if *metadata.level() <= Level::WARN {
            let mut state = self.lock();
            state.warnings_total += 1;
            if state.warnings.len() < MAX_WARNINGS {
                state.warnings.push(text.0);
            }
        }
    }
}

/// A statsd endpoint: a UDP socket on loopback whose every packet is counted and scanned.
#[derive(Debug)]
pub struct StatsdSink {
    endpoint: String,
    packets: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl StatsdSink {
    /// Binds a socket on 127.0.0.1 and starts reading from it.
    ///
    /// # Panics
    /// When no socket can be bound.
    pub async fn bind() -> StatsdSink {
        let socket = UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("binding the statsd sink");
        let endpoint = socket.local_addr().expect("the sink's address").to_string();
        let packets = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&packets);
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 65_536];
            while let Ok(n) = socket.recv(&mut buf).await {
                counted.fetch_add(1, Ordering::Relaxed);
                observer().scan("metric", &String::from_utf8_lossy(&buf[..n]));
            }
        });
        StatsdSink {
            endpoint,
            packets,
            task,
        }
    }

    /// `127.0.0.1:PORT`, for `metrics.endpoint`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Packets received so far.
    pub fn packets(&self) -> u64 {
        self.packets.load(Ordering::Relaxed)
    }

    /// Closes the socket: the endpoint is gone (sends to it are refused); returns the packets
    /// it received.
    pub async fn close(self) -> u64 {
        self.task.abort();
        let _ = self.task.await;
        self.packets.load(Ordering::Relaxed)
    }
}
