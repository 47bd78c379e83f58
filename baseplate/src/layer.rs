//! The tower layer for HTTP services (axum, tonic, hyper): per request a `RequestContext` and its
//! server span, named after the matched route, handed to handlers through the request's
//! extensions, and a failure recorded for errors and 5xx responses. With the `opentelemetry`
//! feature, the server span continues the trace its request's headers name.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::extract::{FromRequestParts, MatchedPath};
use axum::http::request::Parts;
use axum::http::{Request, Response, StatusCode};
use tracing::Instrument as _;

use crate::context::RequestContext;
use crate::service::Baseplate;

/// A `tower::Layer` that runs every request through `baseplate`: it makes the request's
/// [`RequestContext`] and server span (`server.{route}` in statsd), names it after the route axum
/// matched (`/users/{id}`; a gRPC method's path for tonic, when it has the shape of one,
/// `/package.Service/Method` of at most 256 bytes; `unmatched` otherwise),
/// puts the context in the request's extensions for handlers (the [`RequestContext`] extractor),
/// and records the request failed when the inner service fails or answers a 5xx status.
///
/// With the `opentelemetry` feature, a request that carries trace context continues that trace:
/// its server span's OpenTelemetry parent is the caller's span named by a W3C `traceparent`
/// header or by baseplate's `X-Trace`/`X-Span` headers (see the `propagation` module's
/// `BaseplateHeadersPropagator`; `traceparent` wins when both are there). This takes effect
/// when the service's subscriber has tracing-opentelemetry's layer (the version this crate
/// depends on).
///
/// With axum, add it with `route_layer`, which runs after routing, so the route is known:
///
/// ```
/// use axum::extract::Path;
/// use axum::http::StatusCode;
/// use axum::{Router, routing::get};
/// use baseplate::{Baseplate, BaseplateLayer, ClusterRedisClient, RawConfig, RequestContext};
/// use redis::AsyncCommands as _;
///
/// // GET /users/1: `server./users/{id}` in statsd, `foo.GET` a child of its span.
/// async fn user(ctx: RequestContext, Path(id): Path<u64>) -> Result<String, StatusCode> {
///     let mut foo = ctx.redis_cluster("foo").map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
///     let name: Option<String> =
///         foo.get(format!("user:{id}:name")).await.map_err(|_| StatusCode::BAD_GATEWAY)?;
///     name.ok_or(StatusCode::NOT_FOUND)
/// }
///
/// # fn main() -> Result<(), baseplate::BaseplateError> {
/// let config: RawConfig = [("foo.url", "redis://127.0.0.1:7000")].into_iter().collect();
/// let mut baseplate = Baseplate::new(config);
/// baseplate.configure_context("foo", ClusterRedisClient::new())?;
/// let app: Router = Router::new()
///     .route("/users/{id}", get(user))
///     .route_layer(BaseplateLayer::new(baseplate));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct BaseplateLayer {
    baseplate: Baseplate,
}

impl BaseplateLayer {
    /// A layer over `baseplate`'s clients and observers. A clone shares them, so pass
    /// `baseplate.clone()` to keep using it elsewhere (as the router's state, for instance).
    pub fn new(baseplate: Baseplate) -> Self {
        Self { baseplate }
    }
}

impl<S> tower_layer::Layer<S> for BaseplateLayer {
    type Service = BaseplateService<S>;

    fn layer(&self, inner: S) -> BaseplateService<S> {
        BaseplateService {
            inner,
            baseplate: self.baseplate.clone(),
        }
    }
}

/// The service [`BaseplateLayer`] wraps around each inner service.
#[derive(Debug, Clone)]
pub struct BaseplateService<S> {
    inner: S,
    baseplate: Baseplate,
}

impl<S, B, R> tower_service::Service<Request<B>> for BaseplateService<S>
where
    S: tower_service::Service<Request<B>, Response = Response<R>>,
    S::Future: Send + 'static,
    S::Error: std::fmt::Display,
{
    type Response = Response<R>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<R>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let ctx = self.baseplate.make_context_object();
        let span = self.baseplate.make_server_span(&ctx, route(&request));
        #[cfg(feature = "opentelemetry")]
        if !span.is_disabled() {
            crate::propagation::set_remote_parent(&INCOMING, &span, request.headers());
        }
        request.extensions_mut().insert(ctx.clone());
        let response = self.inner.call(request).instrument(span);
        Box::pin(async move {
            let response = response.await;
            match &response {
                Ok(response) if response.status().is_server_error() => {
                    ctx.record_failure(&response.status());
                }
                Ok(response) if grpc_failed(response) => ctx.record_failure(&"grpc-status"),
                Ok(_) => {}
                Err(error) => ctx.record_failure(error),
            }
            // The request ends when the last handle on its context goes: this one, unless a
            // handler kept a client past its response.
            response
        })
    }
}

/// The propagators every request's headers are read with, made once.
#[cfg(feature = "opentelemetry")]
static INCOMING: std::sync::LazyLock<opentelemetry::propagation::TextMapCompositePropagator> =
    std::sync::LazyLock::new(crate::propagation::incoming);

/// The request's name: the route axum matched, a gRPC method's path (`/package.Service/Method`,
/// see [`grpc_method`]), else `unmatched`: a raw URI path would make a metric per path, and put
/// whatever the path carries (ids, tokens) into metric names.
fn route<B>(request: &Request<B>) -> &str {
    if let Some(route) = request.extensions().get::<MatchedPath>() {
        return route.as_str();
    }
    let grpc = request
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|kind| kind.as_bytes().starts_with(b"application/grpc"));
    let path = request.uri().path();
    if grpc && grpc_method(path) {
        path
    } else {
        "unmatched"
    }
}

/// The longest gRPC path taken for a route name.
const MAX_GRPC_PATH: usize = 256;

/// Whether `path` has the shape of a gRPC method's path, `/package.Service/Method` (protobuf names:
/// letters, digits, `_` and `.`), at most [`MAX_GRPC_PATH`] bytes: any other path a client sends
/// with a gRPC content type (long, or carrying ids) is not made a metric name.
fn grpc_method(path: &str) -> bool {
    let name = |part: &str| {
        !part.is_empty()
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
    };
    path.len() <= MAX_GRPC_PATH
        && path
            .strip_prefix('/')
            .and_then(|rest| rest.split_once('/'))
            .is_some_and(|(service, method)| name(service) && name(method))
}

/// Whether a gRPC response's headers carry a non-zero `grpc-status` (an error answered as
/// HTTP 200, as gRPC does when it fails before streaming).
fn grpc_failed<R>(response: &Response<R>) -> bool {
    response
        .headers()
        .get("grpc-status")
        .is_some_and(|status| status.as_bytes() != b"0")
}

/// Handlers take the request's context as an argument: `async fn handler(ctx: RequestContext)`.
/// It is there when [`BaseplateLayer`] runs the request; otherwise the request fails with a 500
/// that says the layer is missing.
impl<S: Send + Sync> FromRequestParts<S> for RequestContext {
    type Rejection = (StatusCode, &'static str);

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<RequestContext>().cloned().ok_or((
            StatusCode::INTERNAL_SERVER_ERROR,
            "no RequestContext: add baseplate::BaseplateLayer to this route",
        ))
    }
}

#[cfg(test)]
mod tests {
    use axum::http::header::CONTENT_TYPE;

    use super::*;

    fn named(path: &str, content_type: &str) -> String {
        let request = Request::builder()
            .uri(path)
            .header(CONTENT_TYPE, content_type)
            .body(())
            .unwrap();
        route(&request).to_owned()
    }

    #[test]
    fn only_a_grpc_methods_path_names_a_request_no_route_matched() {
        let method = "/grpc.health.v1.Health/Check";
        assert_eq!(named(method, "application/grpc"), method);
        assert_eq!(named(method, "application/grpc+proto"), method);
        assert_eq!(named(method, "application/json"), "unmatched");
        let long = format!("/pkg.Service/{}", "a".repeat(MAX_GRPC_PATH));
        for path in [
            "/",
            "/pkg.Service",
            "/pkg.Service/",
            "/pkg.Service/Check/extra",
            "/users/12345:token/Get",
            "/pkg.Service/Check%0A",
            long.as_str(),
        ] {
            assert_eq!(named(path, "application/grpc"), "unmatched", "{path}");
        }
    }
}
