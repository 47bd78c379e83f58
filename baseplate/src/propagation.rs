//! Incoming trace context (the `opentelemetry` feature): baseplate's `X-Trace` headers as an
//! OpenTelemetry propagator, and the remote parent [`BaseplateLayer`](crate::BaseplateLayer) gives
//! each request's server span.
//!
//! The parent reaches OpenTelemetry through tracing-opentelemetry's layer, which the service
//! installs with its exporter; it must be the tracing-opentelemetry (and opentelemetry) version
//! this crate depends on, or the layer sees no parent. For example (a real service adds its
//! exporter, OTLP say, to the provider):
//!
//! ```
//! use opentelemetry::trace::TracerProvider as _;
//! use tracing_subscriber::layer::SubscriberExt as _;
//!
//! let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
//! let subscriber = tracing_subscriber::registry()
//!     .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("my-service")));
//! tracing::subscriber::set_global_default(subscriber)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! A request whose caller did not sample its trace (`traceparent` flags `00`, no `X-Sampled: 1`)
//! is not recorded under the SDK's default sampler, which follows the parent's decision.

use axum::http::HeaderMap;
use opentelemetry::Context;
use opentelemetry::propagation::{
    Extractor, Injector, TextMapCompositePropagator, TextMapPropagator,
    text_map_propagator::FieldIter,
};
use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState,
};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// The trace id, decimal.
const TRACE: &str = "X-Trace";
/// The caller's span id, decimal: the parent of the span that handles the request.
const SPAN: &str = "X-Span";
/// `1` when the caller sampled the trace.
const SAMPLED: &str = "X-Sampled";
/// Baseplate's trace flags, decimal; `1` (debug) asks for the trace to be kept.
const FLAGS: &str = "X-Flags";

/// Baseplate's HTTP trace headers as an OpenTelemetry propagator, so services written with
/// baseplate.py and Rust services share traces.
///
/// Extracting reads `X-Trace` (the trace id) and `X-Span` (the caller's span id, which becomes
/// the remote parent), both decimal integers (a trace id of up to 128 bits, a span id of up to
/// 64), and marks the context sampled when `X-Sampled` is `1` or `true` or `X-Flags` is `1`.
/// `X-Parent`, the caller's own parent, has no place in an OpenTelemetry context and is not read.
/// Anything missing or not a non-zero decimal number leaves the context as it was. Header names
/// are matched as given and in lower case. Injecting writes `X-Trace`, `X-Span` and
/// `X-Sampled` (`1` or `0`) the same way.
///
/// [`BaseplateLayer`](crate::BaseplateLayer) reads these headers first and `traceparent` after,
/// so a caller that sends both (a service traced through OpenTelemetry that also writes
/// baseplate's headers) is continued from `traceparent`, whose ids are exact.
///
/// ```
/// use std::collections::HashMap;
/// use baseplate::propagation::BaseplateHeadersPropagator;
/// use opentelemetry::propagation::TextMapPropagator as _;
/// use opentelemetry::trace::TraceContextExt as _;
///
/// // OpenTelemetry's `HashMap` carrier keeps header names in lower case.
/// let headers: HashMap<String, String> = [
///     ("x-trace".to_owned(), "1234".to_owned()),
///     ("x-span".to_owned(), "5678".to_owned()),
///     ("x-sampled".to_owned(), "1".to_owned()),
/// ]
/// .into();
/// let cx = BaseplateHeadersPropagator::new().extract(&headers);
/// let parent = cx.span().span_context().clone();
/// assert_eq!(parent.trace_id(), 1234_u128.into());
/// assert_eq!(parent.span_id(), 5678_u64.into());
/// assert!(parent.is_sampled() && parent.is_remote());
/// ```
#[derive(Debug, Clone)]
pub struct BaseplateHeadersPropagator {
    fields: [String; 3],
}

impl BaseplateHeadersPropagator {
    /// The propagator.
    pub fn new() -> Self {
        Self {
            fields: [TRACE.to_owned(), SPAN.to_owned(), SAMPLED.to_owned()],
        }
    }
}

impl Default for BaseplateHeadersPropagator {
    fn default() -> Self {
        Self::new()
    }
}

impl TextMapPropagator for BaseplateHeadersPropagator {
    fn inject_context(&self, cx: &Context, injector: &mut dyn Injector) {
        let span = cx.span();
        let context = span.span_context();
        if !context.is_valid() {
            return;
        }
        let trace = u128::from_be_bytes(context.trace_id().to_bytes());
        let span_id = u64::from_be_bytes(context.span_id().to_bytes());
        injector.set(TRACE, trace.to_string());
        injector.set(SPAN, span_id.to_string());
        let sampled = if context.is_sampled() { "1" } else { "0" };
        injector.set(SAMPLED, sampled.to_owned());
    }

    fn extract_with_context(&self, cx: &Context, extractor: &dyn Extractor) -> Context {
        let trace = header(extractor, TRACE).and_then(decimal::<u128>);
        let span = header(extractor, SPAN).and_then(decimal::<u64>);
        let (Some(trace), Some(span)) = (trace, span) else {
            return cx.clone();
        };
        let sampled = header(extractor, SAMPLED)
            .is_some_and(|s| s == "1" || s.eq_ignore_ascii_case("true"))
            || header(extractor, FLAGS) == Some("1");
        let flags = if sampled {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::default()
        };
        let remote = SpanContext::new(
            TraceId::from(trace),
            SpanId::from(span),
            flags,
            true,
            TraceState::default(),
        );
        cx.with_remote_span_context(remote)
    }

    fn fields(&self) -> FieldIter<'_> {
        FieldIter::new(&self.fields)
    }
}

/// A header by its name as baseplate writes it, else in lower case (as HTTP/2 carries it).
fn header<'a>(extractor: &'a dyn Extractor, name: &str) -> Option<&'a str> {
    extractor
        .get(name)
        .or_else(|| extractor.get(&name.to_ascii_lowercase()))
        .map(str::trim)
}

/// A non-zero decimal id; zero is no id in OpenTelemetry (nor in baseplate).
fn decimal<T: std::str::FromStr + Default + PartialEq>(text: &str) -> Option<T> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok().filter(|id| *id != T::default())
}

/// The propagators [`BaseplateLayer`](crate::BaseplateLayer) reads a request's trace context
/// with: baseplate's `X-Trace` headers, then W3C's `traceparent`, which wins when both are
/// present and valid.
pub(crate) fn incoming() -> TextMapCompositePropagator {
    TextMapCompositePropagator::new(vec![
        Box::new(BaseplateHeadersPropagator::new()),
        Box::new(TraceContextPropagator::new()),
    ])
}

/// Makes the trace context in `headers`, if any, the remote parent of `span`, the request's
/// server span. Without tracing-opentelemetry's layer in the subscriber there is nothing to set.
pub(crate) fn set_remote_parent(
    propagator: &TextMapCompositePropagator,
    span: &Span,
    headers: &HeaderMap,
) {
    let cx = propagator.extract(&Headers(headers));
    if cx.span().span_context().is_valid() {
        // Fails only when no OpenTelemetry layer is listening, or the span is disabled: then
        // there is no trace to continue.
        let _ = span.set_parent(cx);
    }
}

/// An HTTP request's headers as the propagators read them.
struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|name| name.as_str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn extract(headers: &[(&str, &str)]) -> SpanContext {
        let headers: HashMap<String, String> = headers
            .iter()
            // OpenTelemetry's `HashMap` carrier keeps header names in lower case.
            .map(|(k, v)| (k.to_ascii_lowercase(), (*v).to_owned()))
            .collect();
        incoming().extract(&headers).span().span_context().clone()
    }

    #[test]
    fn baseplate_headers_are_decimal_ids_and_sampled_by_either_flag() {
        let parent = extract(&[("X-Trace", "18446744073709551617"), ("X-Span", "42")]);
        assert_eq!(parent.trace_id(), TraceId::from(u128::from(u64::MAX) + 2));
        assert_eq!(parent.span_id(), SpanId::from(42));
        assert!(parent.is_remote());
        assert!(!parent.is_sampled());
        assert!(extract(&[("x-trace", "1"), ("x-span", "2"), ("x-sampled", "1")]).is_sampled());
        assert!(extract(&[("X-Trace", "1"), ("X-Span", "2"), ("X-Flags", "1")]).is_sampled());
    }

    #[test]
    fn malformed_or_partial_baseplate_headers_are_no_parent() {
        for headers in [
            &[("X-Trace", "1")][..],
            &[("X-Trace", "0"), ("X-Span", "2")],
            &[("X-Trace", "+1"), ("X-Span", "2")],
            &[("X-Trace", "1"), ("X-Span", "18446744073709551616")],
            &[("X-Trace", "abc"), ("X-Span", "2")],
        ] {
            assert!(!extract(headers).is_valid(), "{headers:?}");
        }
    }

    #[test]
    fn traceparent_wins_over_baseplate_headers() {
        let parent = extract(&[
            (
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            ),
            ("X-Trace", "1"),
            ("X-Span", "2"),
        ]);
        assert_eq!(
            parent.trace_id(),
            TraceId::from_hex("0af7651916cd43dd8448eb211c80319c").unwrap()
        );
        assert_eq!(
            parent.span_id(),
            SpanId::from_hex("b7ad6b7169203331").unwrap()
        );
    }

    #[test]
    fn injected_headers_are_extracted_unchanged() {
        let remote = SpanContext::new(
            TraceId::from(7_u128),
            SpanId::from(9_u64),
            TraceFlags::SAMPLED,
            true,
            TraceState::default(),
        );
        let cx = Context::new().with_remote_span_context(remote.clone());
        let mut headers = HashMap::new();
        BaseplateHeadersPropagator::new().inject_context(&cx, &mut headers);
        assert_eq!(headers["x-trace"], "7");
        assert_eq!(headers["x-span"], "9");
        assert_eq!(headers["x-sampled"], "1");
        let back = BaseplateHeadersPropagator::new().extract(&headers);
        assert_eq!(back.span().span_context(), &remote);
    }
}
