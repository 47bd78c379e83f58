//! The context registry: parsers that turn config into factories, factories that make one object
//! per request, and the `RequestContext` that hands those objects out by name and type.

use std::any::Any;
use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use baseplate_config::{ConfigWarning, RawConfig, UnknownKeys};
use baseplate_runtime_metrics::{RuntimeMetricsSource, SourceError, TaggedBatch};
use tracing::Span;

use crate::error::ContextError;
use crate::observer::{RequestObserver, RequestScope};

/// A boxed error from a parser, shown as is (it names the bad key).
pub type ParseError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Parses a client's configuration into its [`ContextFactory`]: baseplate's `config.Parser`.
/// [`Baseplate::configure_context`](crate::Baseplate::configure_context) calls it with the client's
/// name as `key_path`.
pub trait ContextParser {
    /// What the parser makes.
    type Factory: ContextFactory;

    /// Parses the keys under `{key_path}.`.
    ///
    /// # Errors
    /// A configuration error that names the bad key.
    fn parse(&self, key_path: &str, raw_config: &RawConfig) -> Result<Self::Factory, ParseError>;

    /// Parses the keys under `{key_path}.` as [`parse`](Self::parse) does, with keys it does not
    /// know treated as `unknown_keys` says, and returns what it ignored for the caller to log:
    /// what [`Baseplate::configure_context`](crate::Baseplate::configure_context) calls. By
    /// default it is `parse`, with no warnings.
    ///
    /// # Errors
    /// A configuration error that names the bad key.
    fn parse_with_warnings(
        &self,
        key_path: &str,
        raw_config: &RawConfig,
        unknown_keys: UnknownKeys,
    ) -> Result<(Self::Factory, Vec<ConfigWarning>), ParseError> {
        let _ = unknown_keys;
        Ok((self.parse(key_path, raw_config)?, Vec::new()))
    }
}

/// Makes the object a request uses under a name, and reports the runtime metrics of what it owns
/// (baseplate's `ContextFactory`).
pub trait ContextFactory: Send + Sync + 'static {
    /// The per-request object, e.g. a `MonitoredClusterRedisConnection`.
    type Object: Send + 'static;

    /// The object for one request, whose work is traced as children of `span`.
    fn make_object_for_context(&self, name: &str, span: &Span) -> Self::Object;

    /// The object for one request, whose work is traced as children of `span` and whose calls
    /// are recorded into `scope`, the request's metrics (`None` when metrics are not
    /// configured). By default the object is made without the scope: a client that reports its
    /// calls overrides this, calling [`RequestScope::record_call`] as each call ends.
    fn make_object_for_request(
        &self,
        name: &str,
        span: &Span,
        scope: Option<&Arc<RequestScope>>,
    ) -> Self::Object {
        let _ = scope;
        self.make_object_for_context(name, span)
    }

    /// Adds this factory's gauges to the runtime batch (already tagged `client=<name>`).
    fn report_runtime_metrics(&self, _batch: &mut TaggedBatch<'_>) {}

    /// Finishes background work (flushes, say) before the service stops.
    fn shutdown(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async {})
    }
}

/// A factory with its object type erased, so factories of any kind share one registry.
pub(crate) trait AnyFactory: Send + Sync {
    /// Makes the object into `slot` when `slot` is an `Option` of this factory's object type
    /// (the caller's `Option<T>`, so no box is needed to carry it); leaves it `None` otherwise.
    fn make_into(
        &self,
        name: &str,
        span: &Span,
        scope: Option<&Arc<RequestScope>>,
        slot: &mut dyn Any,
    );
    fn object_type(&self) -> &'static str;
    fn report(&self, batch: &mut TaggedBatch<'_>);
    fn shutdown(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

impl<F: ContextFactory> AnyFactory for F {
    fn make_into(
        &self,
        name: &str,
        span: &Span,
        scope: Option<&Arc<RequestScope>>,
        slot: &mut dyn Any,
    ) {
        if let Some(slot) = slot.downcast_mut::<Option<F::Object>>() {
            *slot = Some(self.make_object_for_request(name, span, scope));
        }
    }

    fn object_type(&self) -> &'static str {
        std::any::type_name::<F::Object>()
    }

    fn report(&self, batch: &mut TaggedBatch<'_>) {
        self.report_runtime_metrics(batch);
    }

    fn shutdown(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        ContextFactory::shutdown(self)
    }
}

/// Reports a registered factory's runtime metrics.
pub(crate) struct FactorySource(pub(crate) Arc<dyn AnyFactory>);

impl RuntimeMetricsSource for FactorySource {
    fn report(&self, batch: &mut TaggedBatch<'_>) -> Result<(), SourceError> {
        self.0.report(batch);
        Ok(())
    }
}

pub(crate) type Registry = BTreeMap<String, Arc<dyn AnyFactory>>;

/// One request's context: hands out each registered client by name, bound to the request's span
/// and metrics. The request ends, and its metrics are sent, when the context, its clones and every
/// object made from it are dropped.
///
/// ```
/// # use baseplate::{Baseplate, ContextError};
/// # let baseplate = Baseplate::new(baseplate::RawConfig::new());
/// let ctx = baseplate.make_context_object();
/// let error = ctx.get::<String>("nothing").unwrap_err();
/// assert_eq!(error.to_string(), "no client named \"nothing\" is configured");
/// ```
#[derive(Clone)]
pub struct RequestContext {
    registry: Arc<Registry>,
    observer: Option<RequestObserver>,
    request: Arc<Mutex<Request>>,
}

/// The request's span and metrics, set when its server span starts.
struct Request {
    span: Span,
    scope: Option<Arc<RequestScope>>,
}

impl fmt::Debug for RequestContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestContext")
            .field("clients", &self.registry.keys().collect::<Vec<_>>())
            .field("span", &self.span())
            .finish()
    }
}

impl RequestContext {
    pub(crate) fn new(registry: Arc<Registry>, observer: Option<RequestObserver>) -> Self {
        Self {
            registry,
            observer,
            request: Arc::new(Mutex::new(Request {
                span: Span::none(),
                scope: None,
            })),
        }
    }

    /// The client registered as `name`, as a `T`, made for this request: its commands are child
    /// spans of the request's server span.
    ///
    /// # Errors
    /// [`ContextError::Unknown`] when no client has that name, [`ContextError::WrongType`] when
    /// it is not a `T`.
    pub fn get<T: 'static>(&self, name: &str) -> Result<T, ContextError> {
        let factory = self
            .registry
            .get(name)
            .ok_or_else(|| ContextError::Unknown {
                name: name.to_owned(),
            })?;
        let (span, scope) = {
            let mut request = self.lock();
            if request.scope.is_none() {
                // Calls before any server span: each is sent on its own.
                request.scope = self
                    .observer
                    .as_ref()
                    .map(|observer| Arc::new(observer.outside_requests()));
            }
            (request.span.clone(), request.scope.clone())
        };
        let mut object: Option<T> = None;
        factory.make_into(name, &span, scope.as_ref(), &mut object);
        object.ok_or_else(|| ContextError::WrongType {
            name: name.to_owned(),
            expected: std::any::type_name::<T>(),
            actual: factory.object_type(),
        })
    }

    /// The request's server span (none until [`Baseplate::make_server_span`](crate::Baseplate::make_server_span)).
    pub fn span(&self) -> Span {
        self.lock().span.clone()
    }

    /// Sets the tag `key` on the request, as baseplate.py's `span.set_tag`: with
    /// `metrics.tagging`, the request's `baseplate.server.*` metrics carry it when
    /// `metrics.allowlist` names `key` (`client` and `endpoint` are always allowed); plain metrics
    /// have no tags.
    pub fn set_tag(&self, key: &str, value: impl fmt::Display) {
        if let Some(scope) = &self.lock().scope {
            scope.set_tag(key, &value);
        }
    }

    /// Runs `work` as a local span named `name` of `component` (baseplate.py's
    /// `make_child(name, local=True, component_name=component)`): a child `tracing` span of the
    /// request's, and the request's metrics record its time, `{component}.{name}` (tagged:
    /// `baseplate.local.latency,endpoint={name}` and `baseplate.local.rate`, `success` from
    /// whether `work` returned `Ok`).
    ///
    /// ```
    /// # async fn example(ctx: baseplate::RequestContext) -> Result<(), std::fmt::Error> {
    /// let total = ctx.local_span("pricing", "sum", async { Ok::<_, std::fmt::Error>(40 + 2) }).await?;
    /// assert_eq!(total, 42);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// `work`'s.
    pub async fn local_span<T, E>(
        &self,
        component: &str,
        name: &str,
        work: impl Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        let (parent, scope) = {
            let request = self.lock();
            (request.span.clone(), request.scope.clone())
        };
        let span = tracing::info_span!(
            parent: &parent,
            "baseplate.local",
            otel.name = tracing::field::Empty,
            otel.kind = "internal",
        );
        if !span.is_disabled() {
            span.record("otel.name", format!("{component}.{name}"));
        }
        let started = std::time::Instant::now();
        let result = tracing::Instrument::instrument(work, span).await;
        if let Some(scope) = scope {
            scope.record_local(component, name, started.elapsed(), result.is_ok());
        }
        result
    }

    /// Marks the request failed: its server span's status is an error described by `error` (as
    /// OpenTelemetry's status description), and its counter is `server.{route}.failure`.
    pub fn record_failure(&self, error: &dyn fmt::Display) {
        let request = self.lock();
        request.span.record("otel.status_code", "ERROR");
        request
            .span
            .record("otel.status_description", tracing::field::display(error));
        if let Some(scope) = &request.scope {
            scope.record_failure();
        }
    }

    /// Starts the request named `route` under `span`: the objects handed out from now on trace
    /// their work under it and record their calls into its metrics.
    pub(crate) fn start_request(&self, span: Span, route: &str) {
        let scope = self
            .observer
            .as_ref()
            .map(|observer| Arc::new(observer.request(route)));
        let mut request = self.lock();
        request.span = span;
        request.scope = scope;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Request> {
        self.request
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
