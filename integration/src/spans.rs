//! A `tracing` layer that records every span with its fields and parent, so tests can assert the
//! exact span names and fields a service would see in its traces.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::ThreadId;

use tracing::Subscriber;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::{Context, SubscriberExt as _};
use tracing_subscriber::registry::LookupSpan;

/// A span as it was when it closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedSpan {
    /// The span's static name (`redis.command`, ...).
    pub name: String,
    /// Its fields, as displayed, including ones recorded after creation.
    pub fields: BTreeMap<String, String>,
    /// The static name of its parent span, if any.
    pub parent: Option<String>,
}

impl RecordedSpan {
    /// A field's value.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }

    /// The name tracing backends show: `otel.name` when set, else the static name.
    pub fn display_name(&self) -> &str {
        self.field("otel.name").unwrap_or(&self.name)
    }
}

/// Records closed spans, in the order they closed, with the thread that closed them.
#[derive(Debug, Clone, Default)]
struct Recorder {
    closed: Arc<Mutex<Vec<(ThreadId, RecordedSpan)>>>,
}

/// The spans one test closes on its own thread.
///
/// The recorder is the process's global subscriber, installed once: `tracing` caches whether a
/// callsite is wanted, so a thread-scoped subscriber can miss spans when tests run in parallel.
/// Each test sees only the spans closed on its thread (a `#[tokio::test]` runs its future on the
/// test's own thread) after it called [`SpanRecorder::install`].
#[derive(Debug, Clone)]
pub struct SpanRecorder {
    recorder: Recorder,
    thread: ThreadId,
    from: usize,
}

impl SpanRecorder {
    /// Starts recording this thread's spans.
    pub fn install() -> SpanRecorder {
        static GLOBAL: OnceLock<Recorder> = OnceLock::new();
        let recorder = GLOBAL
            .get_or_init(|| {
                let recorder = Recorder::default();
                let subscriber = tracing_subscriber::registry().with(recorder.clone());
                tracing::subscriber::set_global_default(subscriber)
                    .expect("no other global subscriber in integration tests");
                recorder
            })
            .clone();
        let from = recorder.closed.lock().map(|c| c.len()).unwrap_or(0);
        SpanRecorder {
            recorder,
            thread: std::thread::current().id(),
            from,
        }
    }

    /// The spans this thread closed since `install`.
    pub fn closed(&self) -> Vec<RecordedSpan> {
        let closed = self
            .recorder
            .closed
            .lock()
            .map(|c| c.clone())
            .unwrap_or_default();
        closed
            .into_iter()
            .skip(self.from)
            .filter(|(thread, _)| *thread == self.thread)
            .map(|(_, span)| span)
            .collect()
    }

    /// The spans of the Redis commands and pipelines (`redis.command`) this thread closed since
    /// `install`.
    pub fn commands(&self) -> Vec<RecordedSpan> {
        self.closed()
            .into_iter()
            .filter(|s| s.name == "redis.command")
            .collect()
    }
}

struct Fields(BTreeMap<String, String>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl<S> Layer<S> for Recorder
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = Fields(BTreeMap::new());
        attrs.record(&mut fields);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(fields);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id)
            && let Some(fields) = span.extensions_mut().get_mut::<Fields>()
        {
            values.record(fields);
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else {
            return;
        };
        let fields = span
            .extensions()
            .get::<Fields>()
            .map(|f| f.0.clone())
            .unwrap_or_default();
        let recorded = RecordedSpan {
            name: span.name().to_owned(),
            fields,
            parent: span.parent().map(|p| p.name().to_owned()),
        };
        if let Ok(mut closed) = self.closed.lock() {
            closed.push((std::thread::current().id(), recorded));
        }
    }
}
