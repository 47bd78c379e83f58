//! Request metrics recorded where the work runs, as baseplate.py's metrics observers send them:
//! one statsd batch per request, with a timer and a success or failure counter for the request
//! and for every client call inside it, flushed once when the request ends; in plain mode the
//! counters are summed across the requests whose lines share a packet. Plain
//! (`metrics.namespace`: `server.{route}`, `clients.{client}.{COMMAND}`) or tagged
//! (`metrics.tagging`: `baseplate.server.latency,endpoint={route}`,
//! `baseplate.client.rate,client={client},endpoint={COMMAND},success=True`). Nothing here depends
//! on `tracing`: the metrics are the same with no subscriber, any subscriber and any log filter.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use baseplate_redis_cluster::{CommandName, CommandObserver};
use baseplate_runtime_metrics::{Batch, MetricName, MetricsClient, SharedCounter, Tags};
use foldhash::HashMap;
use rand::RngExt as _;

/// The static name of the spans [`Baseplate::make_server_span`](crate::Baseplate::make_server_span) makes.
pub const SERVER_SPAN: &str = "baseplate.server";

/// How request metrics are named: baseplate.py's two metrics observers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Style {
    /// `metrics.namespace`: `server.{route}` and `clients.{client}.{name}` timers, each with a
    /// `.success` or `.failure` counter.
    Plain,
    /// `metrics.tagging`: `baseplate.{server,client,local}.latency` timers and `.rate` counters
    /// tagged `client`, `endpoint` and `success`, plus the tags the service sets whose keys
    /// `allowlist` (`metrics.allowlist`) names.
    Tagged { allowlist: Arc<[String]> },
}

impl Style {
    /// Whether a tag the service sets on its request is sent (tagged style only, as baseplate.py's
    /// plain observer drops span tags).
    fn keeps(&self, key: &str) -> bool {
        match self {
            Self::Plain => false,
            Self::Tagged { allowlist } => {
                ALWAYS_ALLOWED.contains(&key) || allowlist.iter().any(|k| k == key)
            }
        }
    }
}

/// The tags baseplate.py's tagged observer always keeps, whatever `metrics.allowlist` says.
const ALWAYS_ALLOWED: [&str; 2] = ["client", "endpoint"];

/// The request observer: where request metrics go, how they are named, and which share of
/// requests is measured.
#[derive(Clone)]
pub(crate) struct RequestObserver {
    /// The client, the sample rate and the names, behind one reference count: every request
    /// clones the observer, and each count it writes is memory every thread writes.
    names: Arc<NameCache>,
}

impl fmt::Debug for RequestObserver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestObserver")
            .field("namespace", &self.names.metrics.namespace())
            .field("sample_rate", &self.names.sample_rate)
            .field("style", &self.names.style)
            .finish()
    }
}

impl RequestObserver {
    /// An observer sending through `client` in `style`, measuring a `sample_rate` share of
    /// requests (0..=1).
    pub(crate) fn new(client: MetricsClient, sample_rate: f64, style: Style) -> Self {
        let sample_rate = sample_rate.clamp(0.0, 1.0);
        Self {
            names: Arc::new(NameCache::new(style, client, sample_rate)),
        }
    }

    /// The scope of a request named `route`, measured when the sample rate picks it.
    pub(crate) fn request(&self, route: &str) -> RequestScope {
        let sampled =
            self.names.sample_rate >= 1.0 || rand::rng().random_bool(self.names.sample_rate);
        let state = if sampled {
            State::Request {
                names: self.names.server(route),
                started: Instant::now(),
                recording: Mutex::new(Recording {
                    batch: self.names.metrics.batch(),
                    tags: Tags::new(),
                    failed: false,
                }),
            }
        } else {
            State::Unsampled
        };
        RequestScope {
            observer: self.clone(),
            state,
        }
    }

    /// The scope of calls made outside any request: each goes out on its own.
    pub(crate) fn outside_requests(&self) -> RequestScope {
        RequestScope {
            observer: self.clone(),
            state: State::Outside,
        }
    }
}

/// One request's metrics: the calls of the request's clients are recorded into it where they
/// run, and the request's own timer and counter are added when the scope is dropped, which is
/// when the request ends (its context and every client object made from it are gone). Clients of
/// other kinds than the Redis Cluster client report their calls with [`record_call`](Self::record_call).
pub struct RequestScope {
    observer: RequestObserver,
    state: State,
}

// Every scope lives in an `Arc` of its own, so the small variants' unused bytes cost a little
// memory per unsampled request, where boxing the large one would cost an allocation per sampled one.
#[allow(clippy::large_enum_variant)]
enum State {
    /// A measured request: its batch, flushed when the scope drops.
    Request {
        names: Arc<MetricNames>,
        started: Instant,
        recording: Mutex<Recording>,
    },
    /// A request the sample rate left out: nothing is sent, as in baseplate.py.
    Unsampled,
    /// Calls outside any request, each sent on its own.
    Outside,
}

/// What a measured request has recorded so far.
struct Recording {
    batch: Batch,
    /// Tags the service set on the request that the style keeps.
    tags: Tags,
    /// Whether the request failed.
    failed: bool,
}

impl fmt::Debug for RequestScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Request { names, .. } => names.timer(),
            State::Unsampled => "unsampled".to_owned(),
            State::Outside => "outside requests".to_owned(),
        };
        f.debug_struct("RequestScope")
            .field("state", &state)
            .finish_non_exhaustive()
    }
}

impl RequestScope {
    /// Records a call of the client `client` named `name` (`GET`, `pipeline_bar`): the timer
    /// `clients.{client}.{name}` and the counter `.success` or `.failure` (tagged:
    /// `baseplate.client.latency` and `baseplate.client.rate` with `client` and `endpoint` tags).
    pub fn record_call(&self, client: &str, name: &str, elapsed: Duration, success: bool) {
        self.observer
            .names
            .with_client(client, CommandName::Label(name), |names| {
                self.record(names, elapsed, success);
            });
    }

    /// Records a span of local work named `name` in `component`, as baseplate.py's local spans
    /// are measured: the timer `{component}.{name}` (tagged: `baseplate.local.latency` and
    /// `baseplate.local.rate` with an `endpoint` tag).
    pub fn record_local(&self, component: &str, name: &str, elapsed: Duration, success: bool) {
        let cache = &self.observer.names;
        let names = MetricNames::local(&cache.style, &cache.metrics, component, name);
        self.record(&names, elapsed, success);
    }

    /// Sets the tag `key` on the request. In tagged mode the request's own metrics carry it when
    /// `metrics.allowlist` names `key`, as baseplate.py's tagged observer filters span tags; plain
    /// mode drops tags, as baseplate.py's plain observer does.
    pub fn set_tag(&self, key: &str, value: &dyn fmt::Display) {
        if let State::Request { recording, .. } = &self.state
            && self.observer.names.style.keeps(key)
        {
            lock(recording).tags.insert(key, value);
        }
    }

    /// Marks the request failed: its counter becomes `server.{route}.failure`.
    pub fn record_failure(&self) {
        if let State::Request { recording, .. } = &self.state {
            lock(recording).failed = true;
        }
    }

    fn record(&self, names: &MetricNames, elapsed: Duration, success: bool) {
        match &self.state {
            State::Request { recording, .. } => {
                let batch = &mut lock(recording).batch;
                names.record(batch, elapsed, success, self.observer.names.sample_rate);
            }
            State::Unsampled => {}
            State::Outside => {
                // A call outside requests goes out on its own, its counter with it.
                let mut batch = self.observer.names.metrics.batch();
                names.record_alone(&mut batch, elapsed, success);
                batch.flush();
            }
        }
    }
}

impl CommandObserver for RequestScope {
    fn command_finished(
        &self,
        client: &str,
        name: &CommandName<'_>,
        elapsed: Duration,
        success: bool,
    ) {
        self.observer.names.with_client(client, *name, |names| {
            self.record(names, elapsed, success);
        });
    }
}

impl Drop for RequestScope {
    fn drop(&mut self) {
        if let State::Request {
            names,
            started,
            recording,
        } = &mut self.state
        {
            let Recording {
                batch,
                tags,
                failed,
            } = recording.get_mut().unwrap_or_else(PoisonError::into_inner);
            let (elapsed, rate) = (started.elapsed(), self.observer.names.sample_rate);
            match names.with_tags(tags) {
                Some(tagged) => tagged.record(batch, elapsed, !*failed, rate),
                None => names.record(batch, elapsed, !*failed, rate),
            }
            batch.flush();
        }
    }
}

/// The metrics of one name: what a timed, succeeding or failing call of it records.
enum MetricNames {
    /// `{prefix}.{name}` and its `.success` / `.failure` counters, made ready once.
    Plain {
        timer: MetricName,
        success: Counter,
        failure: Counter,
    },
    /// A timer alone (baseplate.py's plain local spans).
    TimerOnly { timer: MetricName },
    /// `baseplate.{kind}.latency` and `baseplate.{kind}.rate`, tagged.
    Tagged {
        latency: &'static str,
        rate: &'static str,
        tags: Tags,
        success: Tags,
        failure: Tags,
    },
}

/// A plain request or call counter: summed across the requests whose lines share a packet
/// (`server.visit.success:57|c`) when the client coalesces them (at the observer's sample rate),
/// else counted in each batch.
struct Counter {
    name: MetricName,
    shared: Option<SharedCounter>,
}

impl Counter {
    fn new(metrics: &MetricsClient, name: &str, sample_rate: f64) -> Self {
        Self {
            name: metrics.metric_name(name),
            shared: metrics.shared_counter(name, sample_rate),
        }
    }
}

/// Where a plain counter counts: summed across requests, or in the batch at hand.
#[derive(Clone, Copy)]
enum Counting {
    Summed,
    InBatch,
}

impl MetricNames {
    fn plain(metrics: &MetricsClient, prefix: fmt::Arguments<'_>, sample_rate: f64) -> Self {
        let timer = prefix.to_string();
        Self::Plain {
            success: Counter::new(metrics, &format!("{timer}.success"), sample_rate),
            failure: Counter::new(metrics, &format!("{timer}.failure"), sample_rate),
            timer: metrics.metric_name(&timer),
        }
    }

    /// The timer `latency` and the counter `rate`, tagged `tags` and then `success`, which
    /// baseplate.py adds last.
    fn tagged(latency: &'static str, rate: &'static str, tags: Tags) -> Self {
        Self::Tagged {
            latency,
            rate,
            success: tags.clone().with("success", "True"),
            failure: tags.clone().with("success", "False"),
            tags,
        }
    }

    fn server(style: &Style, metrics: &MetricsClient, route: &str, sample_rate: f64) -> Self {
        match style {
            Style::Plain => Self::plain(metrics, format_args!("server.{route}"), sample_rate),
            Style::Tagged { .. } => Self::tagged(
                "baseplate.server.latency",
                "baseplate.server.rate",
                Tags::new().with("endpoint", route),
            ),
        }
    }

    /// Tagged names with the tags the service set added after their own (`endpoint` first, as
    /// baseplate.py sets it when the span starts); `None` when there is nothing to add.
    fn with_tags(&self, set: &Tags) -> Option<Self> {
        match self {
            Self::Tagged {
                latency,
                rate,
                tags,
                ..
            } if !set.is_empty() => {
                let mut tags = tags.clone();
                tags.merge(set);
                Some(Self::tagged(latency, rate, tags))
            }
            _ => None,
        }
    }

    fn client(
        style: &Style,
        metrics: &MetricsClient,
        client: &str,
        name: fmt::Arguments<'_>,
        sample_rate: f64,
    ) -> Self {
        match style {
            Style::Plain => Self::plain(
                metrics,
                format_args!("clients.{client}.{name}"),
                sample_rate,
            ),
            Style::Tagged { .. } => Self::tagged(
                "baseplate.client.latency",
                "baseplate.client.rate",
                Tags::new().with("client", client).with("endpoint", name),
            ),
        }
    }

    fn local(style: &Style, metrics: &MetricsClient, component: &str, name: &str) -> Self {
        match style {
            Style::Plain => Self::TimerOnly {
                timer: metrics.metric_name(&format!("{component}.{name}")),
            },
            Style::Tagged { .. } => Self::tagged(
                "baseplate.local.latency",
                "baseplate.local.rate",
                Tags::new().with("endpoint", name),
            ),
        }
    }

    /// Records a request's timed event into its `batch`, sampled at the observer's
    /// `sample_rate`; its plain counter is summed across requests where the client can.
    fn record(&self, batch: &mut Batch, elapsed: Duration, success: bool, sample_rate: f64) {
        self.record_counting(batch, elapsed, success, sample_rate, Counting::Summed);
    }

    /// Records a timed event that goes out on its own, in `batch` alone, counter included.
    fn record_alone(&self, batch: &mut Batch, elapsed: Duration, success: bool) {
        self.record_counting(batch, elapsed, success, 1.0, Counting::InBatch);
    }

    fn record_counting(
        &self,
        batch: &mut Batch,
        elapsed: Duration,
        success: bool,
        sample_rate: f64,
        counting: Counting,
    ) {
        match self {
            Self::Plain {
                timer,
                success: succeeded,
                failure,
            } => {
                let counter = if success { succeeded } else { failure };
                batch.timer_named(timer, elapsed, sample_rate);
                match (&counter.shared, counting) {
                    (Some(shared), Counting::Summed) => batch.count_shared(shared),
                    _ => batch.counter_named(&counter.name, 1.0, sample_rate),
                }
            }
            Self::TimerOnly { timer } => batch.timer_named(timer, elapsed, sample_rate),
            Self::Tagged {
                latency,
                rate,
                tags,
                success: succeeded,
                failure,
            } => {
                let counter_tags = if success { succeeded } else { failure };
                batch
                    .tagged(tags.clone())
                    .timer_sampled(latency, elapsed, sample_rate);
                batch
                    .tagged(counter_tags.clone())
                    .counter_sampled(rate, 1.0, sample_rate);
            }
        }
    }

    /// The timer's name, tags included (for `Debug`).
    fn timer(&self) -> String {
        match self {
            Self::Plain { timer, .. } | Self::TimerOnly { timer } => timer.as_str().to_owned(),
            Self::Tagged { latency, tags, .. } => {
                let tags: Vec<String> = tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!("{latency},{}", tags.join(","))
            }
        }
    }
}

/// Routes and calls seldom vary (a service's routes, a client's commands), so each one's metric
/// names are formatted once rather than on every request.
struct NameCache {
    style: Style,
    /// Where the names are sent, which makes them ready for its batches.
    metrics: MetricsClient,
    /// The observer's sample rate, which its requests' counters are summed at.
    sample_rate: f64,
    server: RwLock<HashMap<Box<str>, Arc<MetricNames>>>,
    clients: RwLock<HashMap<Box<str>, ClientNames>>,
}

#[derive(Default)]
struct ClientNames {
    commands: HashMap<Box<[u8]>, Arc<MetricNames>>,
    texts: HashMap<Box<str>, Arc<MetricNames>>,
}

/// How many names each side of the cache keeps; names past these (a route name built from request
/// data, say) are formatted per request instead.
const CACHED_NAMES: usize = 4096;

impl NameCache {
    fn new(style: Style, metrics: MetricsClient, sample_rate: f64) -> Self {
        Self {
            style,
            metrics,
            sample_rate,
            server: RwLock::default(),
            clients: RwLock::default(),
        }
    }

    fn server(&self, route: &str) -> Arc<MetricNames> {
        if let Some(names) = read(&self.server).get(route) {
            return Arc::clone(names);
        }
        let names = Arc::new(MetricNames::server(
            &self.style,
            &self.metrics,
            route,
            self.sample_rate,
        ));
        let mut server = write(&self.server);
        if server.len() < CACHED_NAMES {
            server.insert(route.into(), Arc::clone(&names));
        }
        names
    }

    /// What `record` does with the names of a call of `client`: a command (its name as sent,
    /// shown upper-cased) or a name shown as it is (`pipeline_bar`, another kind of client's
    /// call). Cached names are lent, not cloned: a clone would write their reference count, which
    /// every thread's calls of that name write.
    fn with_client<R>(
        &self,
        client: &str,
        key: CommandName<'_>,
        record: impl FnOnce(&MetricNames) -> R,
    ) -> R {
        if let Some(names) = read(&self.clients)
            .get(client)
            .and_then(|names| names.get(key))
        {
            return record(names);
        }
        record(&self.client(client, key))
    }

    /// The names of a call of `client`, made and cached (when the cache has room) on first use.
    fn client(&self, client: &str, key: CommandName<'_>) -> Arc<MetricNames> {
        if let Some(names) = read(&self.clients)
            .get(client)
            .and_then(|names| names.get(key))
        {
            return Arc::clone(names);
        }
        let names = Arc::new(MetricNames::client(
            &self.style,
            &self.metrics,
            client,
            format_args!("{key}"),
            self.sample_rate,
        ));
        let mut clients = write(&self.clients);
        let cached: usize = clients
            .values()
            .map(|c| c.commands.len() + c.texts.len())
            .sum();
        if cached < CACHED_NAMES {
            let entry = clients.entry(client.into()).or_default();
            match key {
                CommandName::Command(name) => {
                    entry.commands.insert(name.into(), Arc::clone(&names))
                }
                CommandName::Label(name) => entry.texts.insert(name.into(), Arc::clone(&names)),
            };
        }
        names
    }
}

impl ClientNames {
    fn get(&self, key: CommandName<'_>) -> Option<&Arc<MetricNames>> {
        match key {
            CommandName::Command(name) => self.commands.get(name),
            CommandName::Label(name) => self.texts.get(name),
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use baseplate_runtime_metrics::NullTransport;

    use super::*;

    #[test]
    fn metric_names_are_formatted_once_per_name_and_the_cache_is_bounded() {
        let cache = NameCache::new(Style::Plain, MetricsClient::new(NullTransport, "ns"), 1.0);
        let first = cache.client("foo", CommandName::Command(b"get"));
        let MetricNames::Plain {
            timer,
            success,
            failure,
        } = &*first
        else {
            panic!("plain names expected");
        };
        assert_eq!(timer.as_str(), "clients.foo.GET");
        assert_eq!(success.name.as_str(), "clients.foo.GET.success");
        assert_eq!(failure.name.as_str(), "clients.foo.GET.failure");
        assert!(Arc::ptr_eq(
            &first,
            &cache.client("foo", CommandName::Command(b"get"))
        ));
        assert_eq!(
            cache
                .client("foo", CommandName::Label("pipeline_bar"))
                .timer(),
            "clients.foo.pipeline_bar"
        );
        assert_eq!(cache.server("foo.GET").timer(), "server.foo.GET");

        for i in 0..CACHED_NAMES + 10 {
            let name = format!("route{i}");
            assert_eq!(cache.server(&name).timer(), format!("server.{name}"));
        }
        assert_eq!(read(&cache.server).len(), CACHED_NAMES);
    }

    #[test]
    fn tagged_names_carry_client_and_endpoint() {
        let cache = NameCache::new(
            Style::Tagged {
                allowlist: Arc::from([]),
            },
            MetricsClient::new(NullTransport, ""),
            1.0,
        );
        assert_eq!(
            cache.client("foo", CommandName::Command(b"get")).timer(),
            "baseplate.client.latency,client=foo,endpoint=GET"
        );
        assert_eq!(
            cache.server("visit").timer(),
            "baseplate.server.latency,endpoint=visit"
        );
    }
}
