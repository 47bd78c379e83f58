//! The request-metrics observer, a `tracing_subscriber::Layer` doing what baseplate.py's
//! `MetricsBaseplateObserver` does: one statsd batch per server span, with a timer and a
//! success/failure counter for the request and for every client span inside it, flushed once
//! when the server span closes.

use std::fmt;
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
        }
    }

    fn record(&self, batch: &mut Batch, prefix: &str, timing: &Timing, sample_rate: f64) {
        let name = format!("{prefix}.{}", timing.name);
        batch.timer(&name, timing.started.elapsed());
        let outcome = if timing.failed { "failure" } else { "success" };
        let counter = format!("{name}.{outcome}");
        if sample_rate < 1.0 {
            batch.counter_sampled(&counter, 1.0, sample_rate);
        } else {
            batch.counter(&counter, 1.0);
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
    kind: Option<String>,
    failed: bool,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "otel.name" => self.name = Some(value.to_owned()),
            "otel.kind" => self.kind = Some(value.to_owned()),
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
        let kind = match fields.kind.as_deref() {
            Some("server") => {
                let sampled = self.sample_rate >= 1.0 || rand::rng().random_bool(self.sample_rate);
                Kind::Server {
                    batch: sampled.then(|| self.client.batch()),
                }
            }
            Some("client") => Kind::Client,
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
                    self.record(&mut batch, "server", &timing, self.sample_rate);
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
                            self.record(batch, "clients", &timing, self.sample_rate);
                        }
                        return;
                    }
                }
                let mut batch = self.client.batch();
                self.record(&mut batch, "clients", &timing, 1.0);
                batch.flush();
            }
        }
    }
}
