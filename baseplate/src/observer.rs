//! Request metrics recorded where the work runs, as baseplate.py's `MetricsBaseplateObserver`
//! sends them: one statsd batch per request, with a timer and a success or failure counter for the
//! request (`server.{route}`) and for every client call inside it (`clients.{client}.{COMMAND}`),
//! flushed once when the request ends. Nothing here depends on `tracing`: the metrics are the
//! same with no subscriber, any subscriber and any log filter.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use baseplate_redis_cluster::{CommandName, CommandObserver};
use baseplate_runtime_metrics::{Batch, MetricsClient};
use rand::RngExt as _;

/// The static name of the spans [`Baseplate::make_server_span`](crate::Baseplate::make_server_span) makes.
pub const SERVER_SPAN: &str = "baseplate.server";

/// The request observer: where request metrics go and which share of requests is measured.
#[derive(Clone)]
pub(crate) struct RequestObserver {
    client: MetricsClient,
    sample_rate: f64,
    names: Arc<NameCache>,
}

impl fmt::Debug for RequestObserver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestObserver")
            .field("namespace", &self.client.namespace())
            .field("sample_rate", &self.sample_rate)
            .finish()
    }
}

impl RequestObserver {
    /// An observer sending through `client`, measuring a `sample_rate` share of requests (0..=1).
    pub(crate) fn new(client: MetricsClient, sample_rate: f64) -> Self {
        Self {
            client,
            sample_rate: sample_rate.clamp(0.0, 1.0),
            names: Arc::default(),
        }
    }

    /// The scope of a request named `route`, measured when the sample rate picks it.
    pub(crate) fn request(&self, route: &str) -> RequestScope {
        let sampled = self.sample_rate >= 1.0 || rand::rng().random_bool(self.sample_rate);
        let state = if sampled {
            State::Request {
                names: self.names.server(route),
                started: Instant::now(),
                batch: Mutex::new(self.client.batch()),
                failed: AtomicBool::new(false),
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

enum State {
    /// A measured request: its batch, flushed when the scope drops.
    Request {
        names: Arc<MetricNames>,
        started: Instant,
        batch: Mutex<Batch>,
        failed: AtomicBool,
    },
    /// A request the sample rate left out: nothing is sent, as in baseplate.py.
    Unsampled,
    /// Calls outside any request, each sent on its own.
    Outside,
}

impl fmt::Debug for RequestScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Request { names, .. } => names.timer.as_str(),
            State::Unsampled => "unsampled",
            State::Outside => "outside requests",
        };
        f.debug_struct("RequestScope")
            .field("state", &state)
            .finish_non_exhaustive()
    }
}

impl RequestScope {
    /// Records a call of the client `client` named `name` (`GET`, `pipeline_bar`): the timer
    /// `clients.{client}.{name}` and the counter `.success` or `.failure`.
    pub fn record_call(&self, client: &str, name: &str, elapsed: Duration, success: bool) {
        let names = self.observer.names.client(client, NameKey::Text(name));
        self.record(&names, elapsed, success);
    }

    /// Marks the request failed: its counter becomes `server.{route}.failure`.
    pub fn record_failure(&self) {
        if let State::Request { failed, .. } = &self.state {
            failed.store(true, Ordering::Relaxed);
        }
    }

    fn record(&self, names: &MetricNames, elapsed: Duration, success: bool) {
        match &self.state {
            State::Request { batch, .. } => {
                let mut batch = batch.lock().unwrap_or_else(PoisonError::into_inner);
                names.record(&mut batch, elapsed, success, self.observer.sample_rate);
            }
            State::Unsampled => {}
            State::Outside => {
                let mut batch = self.observer.client.batch();
                names.record(&mut batch, elapsed, success, 1.0);
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
        let key = match name {
            CommandName::Command(name) => NameKey::Command(name),
            CommandName::Label(label) => NameKey::Text(label),
        };
        let names = self.observer.names.client(client, key);
        self.record(&names, elapsed, success);
    }
}

impl Drop for RequestScope {
    fn drop(&mut self) {
        if let State::Request {
            names,
            started,
            batch,
            failed,
        } = &mut self.state
        {
            let batch = batch.get_mut().unwrap_or_else(PoisonError::into_inner);
            let success = !*failed.get_mut();
            names.record(batch, started.elapsed(), success, self.observer.sample_rate);
            batch.flush();
        }
    }
}

/// The metrics of one name: `{prefix}.{name}` and its `.success` / `.failure` counters.
struct MetricNames {
    timer: String,
    success: String,
    failure: String,
}

impl MetricNames {
    fn new(prefix: fmt::Arguments<'_>) -> Self {
        let timer = prefix.to_string();
        Self {
            success: format!("{timer}.success"),
            failure: format!("{timer}.failure"),
            timer,
        }
    }

    fn record(&self, batch: &mut Batch, elapsed: Duration, success: bool, sample_rate: f64) {
        let counter = if success {
            &self.success
        } else {
            &self.failure
        };
        if sample_rate < 1.0 {
            batch.timer_sampled(&self.timer, elapsed, sample_rate);
            batch.counter_sampled(counter, 1.0, sample_rate);
        } else {
            batch.timer(&self.timer, elapsed);
            batch.counter(counter, 1.0);
        }
    }
}

/// A client call's name as the client gives it.
#[derive(Clone, Copy)]
enum NameKey<'a> {
    /// A command's name as sent (`get`), shown upper-cased.
    Command(&'a [u8]),
    /// A name shown as it is (`pipeline_bar`, another client's call).
    Text(&'a str),
}

/// Routes and calls seldom vary (a service's routes, a client's commands), so each one's metric
/// names are formatted once rather than on every request.
#[derive(Default)]
struct NameCache {
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
    fn server(&self, route: &str) -> Arc<MetricNames> {
        if let Some(names) = read(&self.server).get(route) {
            return Arc::clone(names);
        }
        let names = Arc::new(MetricNames::new(format_args!("server.{route}")));
        let mut server = write(&self.server);
        if server.len() < CACHED_NAMES {
            server.insert(route.into(), Arc::clone(&names));
        }
        names
    }

    fn client(&self, client: &str, key: NameKey<'_>) -> Arc<MetricNames> {
        if let Some(names) = read(&self.clients)
            .get(client)
            .and_then(|names| names.get(key))
        {
            return Arc::clone(names);
        }
        let names = Arc::new(match key {
            NameKey::Command(name) => {
                let name = CommandName::Command(name);
                MetricNames::new(format_args!("clients.{client}.{name}"))
            }
            NameKey::Text(name) => MetricNames::new(format_args!("clients.{client}.{name}")),
        });
        let mut clients = write(&self.clients);
        let cached: usize = clients
            .values()
            .map(|c| c.commands.len() + c.texts.len())
            .sum();
        if cached < CACHED_NAMES {
            let entry = clients.entry(client.into()).or_default();
            match key {
                NameKey::Command(name) => entry.commands.insert(name.into(), Arc::clone(&names)),
                NameKey::Text(name) => entry.texts.insert(name.into(), Arc::clone(&names)),
            };
        }
        names
    }
}

impl ClientNames {
    fn get(&self, key: NameKey<'_>) -> Option<&Arc<MetricNames>> {
        match key {
            NameKey::Command(name) => self.commands.get(name),
            NameKey::Text(name) => self.texts.get(name),
        }
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_names_are_formatted_once_per_name_and_the_cache_is_bounded() {
        let cache = NameCache::default();
        let first = cache.client("foo", NameKey::Command(b"get"));
        assert_eq!(first.timer, "clients.foo.GET");
        assert_eq!(first.success, "clients.foo.GET.success");
        assert_eq!(first.failure, "clients.foo.GET.failure");
        assert!(Arc::ptr_eq(
            &first,
            &cache.client("foo", NameKey::Command(b"get"))
        ));
        assert_eq!(
            cache.client("foo", NameKey::Text("pipeline_bar")).timer,
            "clients.foo.pipeline_bar"
        );
        assert_eq!(cache.server("foo.GET").timer, "server.foo.GET");

        for i in 0..CACHED_NAMES + 10 {
            let name = format!("route{i}");
            assert_eq!(
                cache.server(&name).success,
                format!("server.{name}.success")
            );
        }
        assert_eq!(read(&cache.server).len(), CACHED_NAMES);
    }
}
