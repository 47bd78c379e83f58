//! `Baseplate`: the service's configuration, its clients, its observers and its request contexts.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use baseplate_background::StartOnce;
use baseplate_config::{ConfigError, ConfigWarning, Endpoint, Percent, RawConfig, UnknownKeys};
use baseplate_runtime_metrics::{
    ClientOptions, MAX_UDP_PAYLOAD, MetricsClient, ReporterHandle, ReporterOptions,
    RuntimeMetricsReporter,
};
use serde::Deserialize;
use tracing::{Instrument as _, Span};

use crate::context::{AnyFactory, ContextParser, FactorySource, Registry, RequestContext};
use crate::error::BaseplateError;
use crate::observer::{RequestObserver, SERVER_SPAN, Style};

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
///
/// A `Baseplate` clones cheaply (its state sits behind one `Arc`, shared by the clones), so it
/// is a web framework's state as it is, and [`BaseplateLayer`](crate::BaseplateLayer) takes
/// one too. Configure it before cloning it: a clone keeps what was configured when it was made.
///
/// ```
/// use axum::{Router, extract::State, routing::get};
/// use baseplate::{Baseplate, ClusterRedisClient, RawConfig};
///
/// async fn clients(State(baseplate): State<Baseplate>) -> String {
///     format!("{baseplate:?}")
/// }
///
/// let config: RawConfig = [("foo.url", "redis://127.0.0.1:7000")].into_iter().collect();
/// let mut baseplate = Baseplate::new(config);
/// baseplate.configure_context("foo", ClusterRedisClient::new())?;
/// let app: Router = Router::new()
///     .route("/clients", get(clients))
///     .with_state(baseplate.clone());
/// // The clone shares the original's clients.
/// assert_eq!(
///     format!("{baseplate:?}"),
///     r#"Baseplate { clients: ["foo"], metrics: None }"#
/// );
/// let ctx = baseplate.clone().make_context_object();
/// assert_eq!(ctx.redis_cluster("foo")?.name(), "foo");
/// # drop(app);
/// # Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
/// ```
#[derive(Clone)]
pub struct Baseplate {
    inner: Arc<Inner>,
}

/// What a baseplate holds. Clones share it, so a clone costs a reference count and a baseplate
/// can be a web framework's state as it is. Configuring changes it in place while nothing else
/// holds it; a clone taken before keeps what was configured when it was taken, as a request
/// context keeps the clients it was made with.
#[derive(Clone)]
struct Inner {
    app_config: RawConfig,
    registry: Arc<Registry>,
    metrics: Option<Arc<Metrics>>,
    reporter_interval: Option<Duration>,
    unknown_keys: UnknownKeys,
    config_warnings: Vec<ConfigWarning>,
}

struct Metrics {
    client: MetricsClient,
    observer: RequestObserver,
    /// `None` when `metrics.enabled = false`: baseplate.py's runtime monitor does not run then.
    reporter: Option<RuntimeMetricsReporter>,
    /// The running reporter, started at the first request context made on a tokio runtime; taken
    /// at shutdown.
    handle: StartOnce<Mutex<Option<ReporterHandle>>>,
}

impl std::fmt::Debug for Baseplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Baseplate")
            .field("clients", &self.inner.registry.keys().collect::<Vec<_>>())
            .field(
                "metrics",
                &self.inner.metrics.as_ref().map(|m| m.client.namespace()),
            )
            .finish()
    }
}

/// `metrics.*`, every key baseplate.py 2.7.1 reads.
#[derive(Deserialize)]
struct MetricsConfig {
    #[serde(default)]
    namespace: Option<String>,
    endpoint: Option<Endpoint>,
    tagging: Option<bool>,
    #[serde(default)]
    allowlist: Vec<String>,
    enabled: Option<bool>,
    #[serde(default)]
    log_if_unconfigured: bool,
    max_packet_size: Option<usize>,
    // Send errors never reach a request here, so there is nothing left to swallow.
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
            inner: Arc::new(Inner {
                app_config,
                registry: Arc::new(Registry::new()),
                metrics: None,
                reporter_interval: None,
                unknown_keys: UnknownKeys::Warn,
                config_warnings: Vec::new(),
            }),
        }
    }

    /// Chooses what a key that nothing reads is, under a prefix the service parses (`metrics.`,
    /// `metrics_observer.`, each client's): with [`UnknownKeys::Warn`], the default, it is
    /// ignored, as baseplate.py ignores it, and logged once as a warning naming the nearest known
    /// key; with [`UnknownKeys::Reject`], a strict mode, it is an error. Call before
    /// [`configure_observers`](Self::configure_observers) and
    /// [`configure_context`](Self::configure_context).
    ///
    /// ```
    /// use baseplate::{Baseplate, ClusterRedisClient, RawConfig, UnknownKeys};
    ///
    /// let config: RawConfig = [("foo.url", "redis://127.0.0.1:7000"), ("foo.max_conections", "9")]
    ///     .into_iter()
    ///     .collect();
    /// let mut lenient = Baseplate::new(config.clone());
    /// lenient.configure_context("foo", ClusterRedisClient::new())?;
    /// assert_eq!(
    ///     lenient.config_warnings()[0].to_string(),
    ///     "foo.max_conections: unknown key, ignored; did you mean foo.max_connections?"
    /// );
    ///
    /// let mut strict = Baseplate::new(config).with_unknown_keys(UnknownKeys::Reject);
    /// let error = strict.configure_context("foo", ClusterRedisClient::new()).unwrap_err();
    /// assert_eq!(error.to_string(), "foo.max_conections: unknown key; did you mean foo.max_connections?");
    /// # Ok::<(), baseplate::BaseplateError>(())
    /// ```
    #[must_use]
    pub fn with_unknown_keys(mut self, unknown_keys: UnknownKeys) -> Self {
        Arc::make_mut(&mut self.inner).unknown_keys = unknown_keys;
        self
    }

    /// What configuring the service found worth a warning, in the order found: keys that nothing
    /// reads (with the nearest known key), and settings that do something their author may not
    /// expect. Each was logged at `warn` level when found.
    pub fn config_warnings(&self) -> &[ConfigWarning] {
        &self.inner.config_warnings
    }

    /// The app config.
    pub fn app_config(&self) -> &RawConfig {
        &self.inner.app_config
    }

    /// Reports runtime metrics every `interval` instead of every 10 seconds (for tests); call
    /// before [`configure_observers`](Self::configure_observers). A zero interval reports none,
    /// which is logged once, at the first request context.
    pub fn with_runtime_metrics_interval(mut self, interval: Duration) -> Self {
        Arc::make_mut(&mut self.inner).reporter_interval = Some(interval);
        self
    }

    /// Configures request and runtime metrics, as baseplate.py's `configure_observers` does,
    /// from the `metrics.*` keys baseplate.py reads:
    ///
    /// - `metrics.namespace` set (even empty): plain statsd metrics under it
    ///   (`{namespace}.server.{route}`, `{namespace}.clients.foo.GET`);
    /// - `metrics.tagging = true`: tagged metrics (`baseplate.server.latency,endpoint={route}`,
    ///   `baseplate.client.rate,client=foo,endpoint=GET,success=True`), with the request tags
    ///   `metrics.allowlist` names; with a namespace too it is an error, as in baseplate.py;
    /// - neither: no statsd metrics at all, whatever `metrics.endpoint` says (a warning says so);
    /// - `metrics.endpoint`: statsd `host:port` (UDP) or a Unix socket path; none discards
    ///   everything (logged at `debug` level with `metrics.log_if_unconfigured = true`);
    /// - `metrics.enabled = false`: no runtime metrics and no `/metrics` server
    ///   ([`serve_prometheus`](Self::serve_prometheus)), as baseplate.py's server does;
    /// - `metrics.swallow_network_errors`: accepted; a failed send never reaches a request here;
    /// - `metrics.max_packet_size` (bytes; not a baseplate.py key): the largest statsd packet,
    ///   8192 by default to a statsd on this host (a loopback address or a Unix socket) and 1432
    ///   to one across a network (see [`ClientOptions::max_packet_size`]);
    /// - `metrics_observer.sample_rate` (a percentage, 100% by default): the share of requests
    ///   measured, their metrics marked `|@rate`.
    ///
    /// The runtime-metrics reporter starts when this is called on a tokio runtime (otherwise the
    /// first request context starts it).
    ///
    /// Statsd metrics configured to go nowhere are a warning naming what is lost, logged once
    /// here and kept in [`config_warnings`](Self::config_warnings): no `metrics.endpoint` (the
    /// metrics are discarded, or only logged at `debug` level with
    /// `metrics.log_if_unconfigured = true`, as baseplate.py does), or neither
    /// `metrics.namespace` nor `metrics.tagging = true` (no statsd metrics at all, as in
    /// baseplate.py; the Prometheus series are recorded either way).
    ///
    /// # Tracing subscribers
    ///
    /// This installs no `tracing` subscriber, global or scoped, and needs none: request metrics
    /// are recorded where each call runs, not from spans, so they are the same with no
    /// subscriber, the service's own (set before or after this call, with
    /// `tracing_subscriber::fmt().init()` or `set_global_default`) and any log filter. The
    /// subscriber is the service's choice alone; baseplate's spans (`baseplate.server`,
    /// `foo.GET`) and warnings go to whichever is current when they happen, so a service that
    /// wants this call's warnings in its logs sets its subscriber first (they are in
    /// [`config_warnings`](Self::config_warnings) either way).
    ///
    /// # Errors
    /// A config error naming the key (an unknown one too, with
    /// [`UnknownKeys::Reject`](Self::with_unknown_keys)), or an endpoint that does not resolve or
    /// where no socket receives.
    pub fn configure_observers(&mut self) -> Result<(), BaseplateError> {
        let inner = Arc::make_mut(&mut self.inner);
        let (mut metrics, mut warnings): (MetricsConfig, _) = inner
            .app_config
            .parse_with("metrics.", inner.unknown_keys)?;
        let (observer, observer_warnings): (ObserverConfig, _) = inner
            .app_config
            .parse_with("metrics_observer.", inner.unknown_keys)?;
        warnings.extend(observer_warnings);

        // baseplate.py decides on the keys' presence: an empty namespace is still a namespace.
        let namespace_set = inner.app_config.get("metrics.namespace").is_some();
        if metrics
            .max_packet_size
            .is_some_and(|size| !(1..=MAX_UDP_PAYLOAD).contains(&size))
        {
            return Err(ConfigError::Invalid {
                key: "metrics.max_packet_size".into(),
                message: format!(
                    "must be from 1 to {MAX_UDP_PAYLOAD} bytes (the most a UDP datagram carries)"
                ),
            }
            .into());
        }
        let style = match metrics.tagging {
            Some(true) if namespace_set => {
                return Err(ConfigError::Invalid {
                    key: "metrics.namespace".into(),
                    message: "not allowed with metrics.tagging = true".into(),
                }
                .into());
            }
            Some(true) => Some(Style::Tagged {
                allowlist: std::mem::take(&mut metrics.allowlist).into(),
            }),
            _ if namespace_set => Some(Style::Plain),
            _ => None,
        };
        if metrics.tagging == Some(false) {
            warnings.push(ConfigWarning::Note {
                key: "metrics.tagging".into(),
                message: "false: tagged metrics are off (baseplate.py 2.7.1 turns them on when \
                          the key is present at all, whatever its value)"
                    .into(),
            });
        }
        if style.is_none() && metrics.endpoint.is_some() {
            warnings.push(ConfigWarning::Note {
                key: "metrics.endpoint".into(),
                message: "set, but neither metrics.namespace nor metrics.tagging = true is: no \
                          statsd metrics are sent, as in baseplate.py"
                    .into(),
            });
        }
        if let Some(lost) = metrics_lost(style.as_ref(), &metrics) {
            warnings.push(lost);
        }
        inner.warn(None, warnings);
        let Some(style) = style else {
            inner.metrics = None;
            return Ok(());
        };

        let endpoint = metrics.endpoint.map(|e| e.to_string());
        let namespace = match style {
            Style::Plain => metrics.namespace.unwrap_or_default(),
            // Tagged metrics have fixed names, and runtime metrics go out without a namespace.
            Style::Tagged { .. } => String::new(),
        };
        // Requests are small and many: their batches share packets, sent when full or after
        // COALESCE, rather than one system call each.
        let mut options = ClientOptions::new()
            .with_coalesce(COALESCE)
            .with_log_if_unconfigured(metrics.log_if_unconfigured);
        if let Some(size) = metrics.max_packet_size {
            options = options.with_max_packet_size(size);
        }
        let client =
            MetricsClient::from_endpoint_with_options(endpoint.as_deref(), namespace, options)?;
        let sample_rate = observer.sample_rate.map_or(1.0, |p| p.0);

        let reporter = metrics.enabled.unwrap_or(true).then(|| {
            let options = inner
                .reporter_interval
                .map_or_else(ReporterOptions::default, |i| {
                    ReporterOptions::default().with_interval(i)
                });
            let reporter = RuntimeMetricsReporter::with_options(client.clone(), options);
            for (name, factory) in inner.registry.iter() {
                reporter.register(name.clone(), FactorySource(Arc::clone(factory)));
            }
            reporter
        });
        let metrics = Metrics {
            observer: RequestObserver::new(client.clone(), sample_rate, style),
            client,
            reporter,
            handle: StartOnce::new(),
        };
        metrics.start_reporter();
        inner.metrics = Some(Arc::new(metrics));
        Ok(())
    }

    /// Whether `metrics.enabled` leaves metrics on (it does unless it is `false`), for what reads
    /// it with or without `configure_observers` (which logged any warning already).
    pub(crate) fn metrics_enabled(&self) -> Result<bool, ConfigError> {
        let (metrics, _): (MetricsConfig, _) = self
            .inner
            .app_config
            .parse_with("metrics.", UnknownKeys::Warn)?;
        Ok(metrics.enabled.unwrap_or(true))
    }

    /// Parses the client `name` (keys `{name}.*`, dotted names nest: `cache.foo.url`; `foo.` is
    /// `foo`) and registers it; its runtime metrics are reported tagged `client={name}`. Keys
    /// under the prefix that the client does not know are logged and kept as
    /// [`config_warnings`](Self::config_warnings) (or refused, see
    /// [`with_unknown_keys`](Self::with_unknown_keys)).
    ///
    /// # Errors
    /// The parser's error, which names the bad key, or [`BaseplateError::Duplicate`].
    pub fn configure_context<P: ContextParser>(
        &mut self,
        name: &str,
        parser: P,
    ) -> Result<&mut Self, BaseplateError> {
        let inner = Arc::make_mut(&mut self.inner);
        // `foo.` names the client `foo`, as a config prefix written either way does.
        let name = &inner.app_config.prefix(name).path().to_owned();
        if inner.registry.contains_key(name) {
            return Err(BaseplateError::Duplicate {
                name: name.to_owned(),
            });
        }
        let (factory, warnings) = parser
            .parse_with_warnings(name, &inner.app_config, inner.unknown_keys)
            .map_err(BaseplateError::Context)?;
        inner.warn(Some(name), warnings);
        let factory: Arc<dyn AnyFactory> = Arc::new(factory);
        if let Some(reporter) = inner.metrics.as_ref().and_then(|m| m.reporter.as_ref()) {
            reporter.register(name, FactorySource(Arc::clone(&factory)));
        }
        // Contexts made so far keep the registry they were made with; this one is for the next.
        let mut registry = (*inner.registry).clone();
        registry.insert(name.to_owned(), factory);
        inner.registry = Arc::new(registry);
        Ok(self)
    }

    /// A new request context, before its server span exists.
    pub fn make_context_object(&self) -> RequestContext {
        if let Some(metrics) = &self.inner.metrics {
            metrics.start_reporter();
        }
        RequestContext::new(
            Arc::clone(&self.inner.registry),
            self.inner.metrics.as_ref().map(|m| m.observer.clone()),
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
            otel.status_description = tracing::field::Empty,
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
        if let Some(metrics) = &self.inner.metrics {
            let handle = metrics
                .handle
                .get()
                .and_then(|h| h.lock().ok().and_then(|mut h| h.take()));
            if let Some(handle) = handle {
                handle.shutdown().await;
            }
        }
        for factory in self.inner.registry.values() {
            factory.shutdown().await;
        }
        if let Some(metrics) = &self.inner.metrics {
            metrics.client.flush_pending();
        }
    }
}

/// The warning that statsd metrics are configured to go nowhere, naming what is lost, or `None`
/// when they are sent (or when the `metrics.endpoint` warning says it already). baseplate.py
/// says nothing in these cases: a service that sees no metrics had to find out by itself why.
fn metrics_lost(style: Option<&Style>, metrics: &MetricsConfig) -> Option<ConfigWarning> {
    let runtime = metrics.enabled.unwrap_or(true);
    let lost = |server: &str, client: &str| {
        if runtime {
            format!("{server}, {client} and runtime.pool.*")
        } else {
            format!("{server} and {client}")
        }
    };
    let (key, message) = match (style, &metrics.endpoint) {
        (_, Some(_)) => return None,
        (None, None) => (
            "metrics.namespace",
            format!(
                "unset, and metrics.tagging is not true: no statsd metrics ({}) are sent, as in \
                 baseplate.py; the Prometheus series are recorded all the same",
                lost("server.*", "clients.*")
            ),
        ),
        (Some(style), None) => {
            let lost = match style {
                Style::Plain => lost("server.*", "clients.*"),
                Style::Tagged { .. } => lost("baseplate.server.*", "baseplate.client.*"),
            };
            let fate = if metrics.log_if_unconfigured {
                "are not sent, only logged at debug level (metrics.log_if_unconfigured = true)"
            } else {
                "are discarded; set it to send them, or metrics.log_if_unconfigured = true to \
                 log them at debug level"
            };
            (
                "metrics.endpoint",
                format!("unset: the statsd metrics ({lost}) {fate}"),
            )
        }
    };
    Some(ConfigWarning::Note {
        key: key.into(),
        message,
    })
}

impl Inner {
    /// Logs `warnings` (of the client `client`, if any) and keeps them for
    /// [`config_warnings`](Self::config_warnings).
    fn warn(&mut self, client: Option<&str>, warnings: Vec<ConfigWarning>) {
        for warning in &warnings {
            match client {
                Some(client) => tracing::warn!(client, key = warning.key(), "{warning}"),
                None => tracing::warn!(key = warning.key(), "{warning}"),
            }
        }
        self.config_warnings.extend(warnings);
    }
}

impl Metrics {
    /// Starts the reporter once, when on a tokio runtime.
    fn start_reporter(&self) {
        // Every request context calls this: without a reporter it does nothing, and after the
        // first start it costs one atomic load.
        let Some(reporter) = &self.reporter else {
            return;
        };
        // On a runtime, only a zero interval stops it from starting, and would every time: say so
        // once, and keep the reporter stopped.
        self.handle.get_or_start(|_| match reporter.start() {
            Ok(started) => Some(Mutex::new(Some(started))),
            Err(error) => {
                tracing::warn!(%error, "runtime metrics are not reported");
                Some(Mutex::new(None))
            }
        });
    }
}
