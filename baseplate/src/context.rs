//! The context registry: parsers that turn config into factories, factories that make one object
//! per request, and the `RequestContext` that hands those objects out by name and type.

use std::any::Any;
use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use baseplate_config::RawConfig;
use baseplate_runtime_metrics::{RuntimeMetricsSource, SourceError, TaggedBatch};
use tracing::Span;

use crate::error::ContextError;

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
}

/// Makes the object a request uses under a name, and reports the runtime metrics of what it owns
/// (baseplate's `ContextFactory`).
pub trait ContextFactory: Send + Sync + 'static {
    /// The per-request object, e.g. a `MonitoredClusterRedisConnection`.
    type Object: Send + 'static;

    /// The object for one request, whose work is traced as children of `span`.
    fn make_object_for_context(&self, name: &str, span: &Span) -> Self::Object;

    /// Adds this factory's gauges to the runtime batch (already tagged `client=<name>`).
    fn report_runtime_metrics(&self, _batch: &mut TaggedBatch<'_>) {}

    /// Finishes background work (flushes, say) before the service stops.
    fn shutdown(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async {})
    }
}

/// A factory with its object type erased, so factories of any kind share one registry.
pub(crate) trait AnyFactory: Send + Sync {
    fn make(&self, name: &str, span: &Span) -> Box<dyn Any + Send>;
    fn object_type(&self) -> &'static str;
    fn report(&self, batch: &mut TaggedBatch<'_>);
    fn shutdown(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

impl<F: ContextFactory> AnyFactory for F {
    fn make(&self, name: &str, span: &Span) -> Box<dyn Any + Send> {
        Box::new(self.make_object_for_context(name, span))
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

/// One request's context: hands out each registered client by name, bound to the request's span.
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
    span: Arc<Mutex<Span>>,
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
    pub(crate) fn new(registry: Arc<Registry>) -> Self {
        Self {
            registry,
            span: Arc::new(Mutex::new(Span::none())),
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
        let object = factory.make(name, &self.span());
        object
            .downcast::<T>()
            .map(|object| *object)
            .map_err(|_| ContextError::WrongType {
                name: name.to_owned(),
                expected: std::any::type_name::<T>(),
                actual: factory.object_type(),
            })
    }

    /// The request's server span (none until [`Baseplate::make_server_span`](crate::Baseplate::make_server_span)).
    pub fn span(&self) -> Span {
        self.span
            .lock()
            .map(|s| s.clone())
            .unwrap_or_else(|_| Span::none())
    }

    pub(crate) fn set_span(&self, span: Span) {
        if let Ok(mut current) = self.span.lock() {
            *current = span;
        }
    }
}
