//! `Baseplate`: the service's configuration, its clients, its observers and its request contexts.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use baseplate_config::{Endpoint, Percent, RawConfig};
use baseplate_runtime_metrics::{
    ClientOptions, MetricsClient, ReporterHandle, ReporterOptions, RuntimeMetricsReporter,
};
use serde::Deserialize;
use tracing::{Instrument as _, Span};

use crate::context::{AnyFactory, ContextParser, FactorySource, Registry, RequestContext};
use crate::error::BaseplateError;
use crate::observer::{RequestObserver, SERVER_SPAN};

/// How long request metrics wait to share a packet with other requests' before they are sent.
const COALESCE: Duration = Duration::from_millis(50);

/// A service's baseplate: parse clients from the app config, observe requests, make contexts.
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// use baseplate::{Baseplate, ClusterRedisClient, MonitoredClusterRedisConnection, RawConfig};
/// use redis::AsyncCommands as _;
///
/// let config = RawConfig::from_ini_file("example.ini")?;
/// let mut baseplate = Baseplate::new(config);
/// baseplate.configure_observers()?;
/// baseplate.configure_context("foo", ClusterRedisClient::new())?;
///
/// // Per request:
/// let greeting = baseplate
///     .server_context("hello", |ctx| async move {
///         let mut foo: MonitoredClusterRedisConnection = ctx.get("foo")?;
///         let greeting: Option<String> = foo.get("greeting").await?;
///         Ok::<_, Box<dyn std::error::Error + Send + Sync>>(greeting)
///     })
///     .await?;
/// # Ok(()) }
/// ```
pub struct Baseplate {
    app_config: RawConfig,
    registry: Arc<Registry>,
    metrics: Option<Metrics>,
    reporter_interval: Option<Duration>,
}

struct Metrics {
    client: MetricsClient,
    observer: RequestObserver,
    reporter: RuntimeMetricsReporter,
    handle: Mutex<Option<ReporterHandle>>,
    started: AtomicBool,
}

impl std::fmt::Debug for Baseplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Baseplate")
            .field("clients", &self.registry.keys().collect::<Vec<_>>())
            .field(
                "metrics",
                &self.metrics.as_ref().map(|m| m.client.namespace()),
            )
            .finish()
    }
}

/// `metrics.*`, as baseplate.py reads it.
#[derive(Deserialize)]
struct MetricsConfig {
    #[serde(default)]
    namespace: Option<String>,
    endpoint: Option<Endpoint>,
    #[serde(rename = "swallow_network_errors")]
    _swallow_network_errors: Option<bool>,
}

/// `metrics_observer.*`.
#[derive(Deserialize)]
struct ObserverConfig {
    sample_rate: Option<Percent>,
}

impl Baseplate {
    /// A baseplate over the service's app config (the `[app:main]` keys).
    pub fn new(app_config: RawConfig) -> Self {
        Self {
            app_config,
            registry: Arc::new(Registry::new()),
            metrics: None,
            reporter_interval: None,
        }
    }

    /// The app config.
    pub fn app_config(&self) -> &RawConfig {
        &self.app_config
    }

    /// Reports runtime metrics every `interval` instead of every 10 seconds (for tests); call
    /// before [`configure_observers`](Self::configure_observers).
    pub fn with_runtime_metrics_interval(mut self, interval: Duration) -> Self {
        self.reporter_interval = Some(interval);
        self
    }

    /// Configures request and runtime metrics, as baseplate.py's `configure_observers` does:
    /// reads `metrics.endpoint` (`host:port`; without it metrics are discarded),
    /// `metrics.namespace` and `metrics_observer.sample_rate` (a percentage, 100% by default),
    /// and starts the runtime-metrics reporter when called on a tokio runtime (otherwise the
    /// first request context starts it).
    ///
    /// Request metrics are recorded where each call runs, not from `tracing` spans: this installs
    /// no subscriber, and metrics are the same whatever subscriber and filter the service sets.
    ///
    /// # Errors
    /// A config error naming the key, or an endpoint that does not resolve.
    pub fn configure_observers(&mut self) -> Result<(), BaseplateError> {
        let metrics: MetricsConfig = self.app_config.parse("metrics.")?;
        let observer: ObserverConfig = self.app_config.parse("metrics_observer.")?;
        let endpoint = metrics.endpoint.map(|e| e.to_string());
        let namespace = metrics.namespace.unwrap_or_default();
        // Requests are small and many: their batches share packets, sent when full or after
        // COALESCE, rather than one system call each.
        let options = ClientOptions::new().with_coalesce(COALESCE);
        let client =
            MetricsClient::from_endpoint_with_options(endpoint.as_deref(), namespace, options)?;
        let sample_rate = observer.sample_rate.map_or(1.0, |p| p.0);

        let options = self
            .reporter_interval
            .map_or_else(ReporterOptions::default, |i| {
                ReporterOptions::default().with_interval(i)
            });
        let reporter = RuntimeMetricsReporter::with_options(client.clone(), options);
        for (name, factory) in self.registry.iter() {
            reporter.register(name.clone(), FactorySource(Arc::clone(factory)));
        }
        let metrics = Metrics {
            observer: RequestObserver::new(client.clone(), sample_rate),
            client,
            reporter,
            handle: Mutex::new(None),
            started: AtomicBool::new(false),
        };
        metrics.start_reporter();
        self.metrics = Some(metrics);
        Ok(())
    }

    /// Parses the client `name` (keys `{name}.*`, dotted names nest: `cache.foo.url`) and
    /// registers it; its runtime metrics are reported tagged `client={name}`.
    ///
    /// # Errors
    /// The parser's error, which names the bad key, or [`BaseplateError::Duplicate`].
    pub fn configure_context<P: ContextParser>(
        &mut self,
        name: &str,
        parser: P,
    ) -> Result<&mut Self, BaseplateError> {
        if self.registry.contains_key(name) {
            return Err(BaseplateError::Duplicate {
                name: name.to_owned(),
            });
        }
        let factory: Arc<dyn AnyFactory> = Arc::new(
            parser
                .parse(name, &self.app_config)
                .map_err(BaseplateError::Context)?,
        );
        if let Some(metrics) = &self.metrics {
            metrics
                .reporter
                .register(name, FactorySource(Arc::clone(&factory)));
        }
        // Contexts made so far keep the registry they were made with; this one is for the next.
        let mut registry = (*self.registry).clone();
        registry.insert(name.to_owned(), factory);
        self.registry = Arc::new(registry);
        Ok(self)
    }

    /// A new request context, before its server span exists.
    pub fn make_context_object(&self) -> RequestContext {
        if let Some(metrics) = &self.metrics {
            metrics.start_reporter();
        }
        RequestContext::new(
            Arc::clone(&self.registry),
            self.metrics.as_ref().map(|m| m.observer.clone()),
        )
    }

    /// Starts the request's server span, named `name` (the route) and made the context's span, so
    /// the objects the context hands out trace their work as its children and record their calls
    /// into the request's metrics. The request ends when the context, its clones and every object
    /// made from it are dropped; its metrics are sent then. Record a failure with
    /// [`RequestContext::record_failure`].
    pub fn make_server_span(&self, ctx: &RequestContext, name: &str) -> Span {
        let span = tracing::info_span!(
            SERVER_SPAN,
            otel.name = %name,
            otel.kind = "server",
            otel.status_code = tracing::field::Empty,
            error.message = tracing::field::Empty,
        );
        ctx.start_request(span.clone(), name);
        span
    }

    /// Runs one request named `name`: a context, its server span, and `handler` inside it. An
    /// `Err` from the handler marks the request failed (`server.{name}.failure`).
    ///
    /// # Errors
    /// The handler's.
    pub async fn server_context<F, Fut, T, E>(&self, name: &str, handler: F) -> Result<T, E>
    where
        F: FnOnce(RequestContext) -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: std::fmt::Display,
    {
        let ctx = self.make_context_object();
        let span = self.make_server_span(&ctx, name);
        let result = handler(ctx.clone()).instrument(span).await;
        if let Err(error) = &result {
            ctx.record_failure(error);
        }
        // The request ends with the last handle on its context: this one, once the handler's
        // objects are gone.
        result
    }

    /// Stops the runtime-metrics reporter and lets every client finish its background work
    /// (the hot-key tracker's last flush, say).
    pub async fn shutdown(&self) {
        if let Some(metrics) = &self.metrics {
            let handle = metrics.handle.lock().ok().and_then(|mut h| h.take());
            if let Some(handle) = handle {
                handle.shutdown().await;
            }
        }
        for factory in self.registry.values() {
            factory.shutdown().await;
        }
        if let Some(metrics) = &self.metrics {
            metrics.client.flush_pending();
        }
    }
}

impl Metrics {
    /// Starts the reporter once, when on a tokio runtime.
    fn start_reporter(&self) {
        // Every request context calls this: after the first start it costs one atomic load.
        if self.started.load(Ordering::Acquire) {
            return;
        }
        let Ok(mut handle) = self.handle.lock() else {
            return;
        };
        if handle.is_some() || tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        match self.reporter.start() {
            Ok(started) => {
                *handle = Some(started);
                self.started.store(true, Ordering::Release);
            }
            Err(error) => tracing::warn!(%error, "runtime metrics are not reported"),
        }
    }
}
