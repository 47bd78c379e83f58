//! The request-metrics observer, a `tracing_subscriber::Layer` doing what baseplate.py's
//! `MetricsBaseplateObserver` does: one statsd batch per server span, with a timer and a
//! success/failure counter for the request and for every client span inside it, flushed once
//! when the server span closes.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Instant;

use baseplate_runtime_metrics::{Batch, MetricsClient};
use rand::RngExt as _;
use tracing::Subscriber;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

/// The static name of the spans [`Baseplate::make_server_span`](crate::Baseplate::make_server_span) makes.
pub const SERVER_SPAN: &str = "baseplate.server";

/// Sends request metrics to statsd, from spans:
///
/// - a server span (`otel.kind = "server"`, e.g. from `make_server_span(&ctx, "route")`) gives
///   `server.route` (timer) and `server.route.success` or `.failure` (counter);
/// - a client span inside it (`otel.kind = "client"`, e.g. `foo.GET` from the Redis client) gives
///   `clients.foo.GET` and `clients.foo.GET.success` or `.failure`;
///
/// all in one batch per request, flushed when the server span closes. A span fails when its
/// `otel.status_code` is `ERROR`. With a sample rate below 1, a share of requests is measured
/// and their counters carry `|@rate`. A client span outside any request is sent on its own.
#[derive(Clone)]
pub struct MetricsLayer {
    client: MetricsClient,
    sample_rate: f64,
    names: Arc<NameCache>,
}

/// Span names seldom vary (a client's commands, a service's routes), so each one's three metric
/// names are formatted once rather than on every request.
#[derive(Default)]
struct NameCache {
    server: RwLock<HashMap<String, Arc<MetricNames>>>,
    clients: RwLock<HashMap<String, Arc<MetricNames>>>,
}

/// How many span names each side of the cache keeps; names past these (a route name built from
/// request data, say) are formatted per request instead.
const CACHED_NAMES: usize = 4096;

/// The metrics of one span name: `{prefix}.{name}` and its `.success` / `.failure` counters.
struct MetricNames {
    timer: String,
    success: String,
    failure: String,
}

impl MetricNames {
    fn new(prefix: &str, name: &str) -> Self {
        let timer = format!("{prefix}.{name}");
        Self {
            success: format!("{timer}.success"),
            failure: format!("{timer}.failure"),
            timer,
        }
    }
}

impl NameCache {
    fn get(&self, server: bool, name: &str) -> Arc<MetricNames> {
        let (map, prefix) = if server {
            (&self.server, "server")
        } else {
            (&self.clients, "clients")
        };
        if let Some(names) = map.read().unwrap_or_else(PoisonError::into_inner).get(name) {
            return Arc::clone(names);
        }
        let names = Arc::new(MetricNames::new(prefix, name));
        let mut map = map.write().unwrap_or_else(PoisonError::into_inner);
        if map.len() < CACHED_NAMES {
            map.insert(name.to_owned(), Arc::clone(&names));
        }
        names
    }
}

impl fmt::Debug for MetricsLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetricsLayer")
            .field("namespace", &self.client.namespace())
            .field("sample_rate", &self.sample_rate)
            .finish()
    }
}

impl MetricsLayer {
    /// A layer sending through `client`, measuring a `sample_rate` share of requests (0..=1).
    pub fn new(client: MetricsClient, sample_rate: f64) -> Self {
        Self {
            client,
            sample_rate: sample_rate.clamp(0.0, 1.0),
            names: Arc::default(),
        }
    }

    fn record(&self, batch: &mut Batch, timing: &Timing, sample_rate: f64) {
        let server = matches!(timing.kind, Kind::Server { .. });
        let names = self.names.get(server, &timing.name);
        batch.timer(&names.timer, timing.started.elapsed());
        let counter = if timing.failed {
            &names.failure
        } else {
            &names.success
        };
        if sample_rate < 1.0 {
            batch.counter_sampled(counter, 1.0, sample_rate);
        } else {
            batch.counter(counter, 1.0);
        }
    }
}

/// What the layer keeps in a span's extensions.
struct Timing {
    kind: Kind,
    name: String,
    started: Instant,
    failed: bool,
}

enum Kind {
    Server { batch: Option<Batch> },
    Client,
}

#[derive(Default)]
struct Fields {
    name: Option<String>,
    /// `otel.kind`: whether the span is a server's (`true`) or a client's (`false`).
    server: Option<bool>,
    failed: bool,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "otel.name" => self.name = Some(value.to_owned()),
            "otel.kind" => {
                self.server = match value {
                    "server" => Some(true),
                    "client" => Some(false),
                    _ => None,
                }
            }
            "otel.status_code" => self.failed = value == "ERROR",
            _ => {}
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        // `otel.name = %name` arrives here, formatted once straight into the field's String.
        match field.name() {
            "otel.name" => self.name = Some(format!("{value:?}")),
            "otel.kind" | "otel.status_code" => self.record_str(field, &format!("{value:?}")),
            _ => {}
        }
    }
}

impl<S> Layer<S> for MetricsLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        let kind = match fields.server {
            Some(true) => {
                let sampled = self.sample_rate >= 1.0 || rand::rng().random_bool(self.sample_rate);
                Kind::Server {
                    batch: sampled.then(|| self.client.batch()),
                }
            }
            Some(false) => Kind::Client,
            _ => return,
        };
        let Some(span) = ctx.span(id) else {
            return;
        };
        let name = fields.name.unwrap_or_else(|| span.name().to_owned());
        span.extensions_mut().insert(Timing {
            kind,
            name,
            started: Instant::now(),
            failed: fields.failed,
        });
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else {
            return;
        };
        let mut extensions = span.extensions_mut();
        let Some(timing) = extensions.get_mut::<Timing>() else {
            return;
        };
        let mut fields = Fields {
            failed: timing.failed,
            ..Fields::default()
        };
        values.record(&mut fields);
        timing.failed = fields.failed;
        if let Some(name) = fields.name {
            timing.name = name;
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else {
            return;
        };
        let Some(mut timing) = span.extensions_mut().remove::<Timing>() else {
            return;
        };
        match &mut timing.kind {
            Kind::Server { batch } => {
                if let Some(mut batch) = batch.take() {
                    self.record(&mut batch, &timing, self.sample_rate);
                    batch.flush();
                }
            }
            Kind::Client => {
                // Into the batch of the nearest server span above it, if any.
                for ancestor in span.scope().skip(1) {
                    let mut extensions = ancestor.extensions_mut();
                    if let Some(Timing {
                        kind: Kind::Server { batch },
                        ..
                    }) = extensions.get_mut::<Timing>()
                    {
                        if let Some(batch) = batch {
                            self.record(batch, &timing, self.sample_rate);
                        }
                        return;
                    }
                }
                let mut batch = self.client.batch();
                self.record(&mut batch, &timing, 1.0);
                batch.flush();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_names_are_formatted_once_per_span_name_and_the_cache_is_bounded() {
        let cache = NameCache::default();
        let first = cache.get(false, "foo.GET");
        assert_eq!(first.timer, "clients.foo.GET");
        assert_eq!(first.success, "clients.foo.GET.success");
        assert_eq!(first.failure, "clients.foo.GET.failure");
        assert!(Arc::ptr_eq(&first, &cache.get(false, "foo.GET")));
        assert_eq!(cache.get(true, "foo.GET").timer, "server.foo.GET");

        for i in 0..CACHED_NAMES + 10 {
            let name = format!("route{i}");
            assert_eq!(
                cache.get(true, &name).success,
                format!("server.{name}.success")
            );
        }
        let server = cache.server.read().unwrap();
        assert_eq!(server.len(), CACHED_NAMES);
    }
}
