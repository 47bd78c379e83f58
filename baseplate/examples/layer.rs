//! One service, two servers, each under `BaseplateLayer`: an axum HTTP service and a tonic gRPC
//! server. Both share one `Baseplate`, so one config, one Redis client `foo` and one statsd
//! stream. Each request or call gets its context and server span, named after the matched route
//! (`/counters/{name}`) or the gRPC method (`/grpc.health.v1.Health/Check`). An axum handler
//! takes the `RequestContext` as an argument; a tonic method finds it in the request's extensions.
//! A service with one of the two keeps its half.
//!
//! The gRPC service is gRPC's standard health service, whose check asks Redis, so it builds
//! without protoc; a service of its own implements the trait tonic generated for it the same way.
//!
//! ```text
//! cargo xtask cluster up
//! cargo run -p baseplate --example layer [-- path/to/service.ini]
//! curl -X POST http://127.0.0.1:8080/counters/visits
//! grpcurl -plaintext 127.0.0.1:50051 grpc.health.v1.Health/Check
//! ```

use axum::Router;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::post;
use baseplate::{Baseplate, BaseplateLayer, ClusterRedisClient, RawConfig, RequestContext};
use futures_util::stream::Empty;
use redis::AsyncCommands as _;
use tonic::{Request, Response, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// `POST /counters/{name}`: counts up and answers the new count. The request is
/// `server./counters/{name}` in statsd, its `INCRBY` the span `foo.INCRBY` under the request's;
/// an error answers a 5xx, which the layer counts as the request's failure.
async fn count(ctx: RequestContext, Path(name): Path<String>) -> Result<String, StatusCode> {
    let mut foo = ctx
        .redis_cluster("foo")
        .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
    let count: i64 = foo
        .incr(format!("counter:{name}"), 1)
        .await
        .map_err(|_| StatusCode::BAD_GATEWAY)?;
    Ok(count.to_string())
}

/// The service's routes, under the layer. `route_layer` runs it after routing, so the route is
/// known; a path no route matches is answered 404 without a request context. Apart from `main`,
/// so that a test can serve the same app (`integration/tests/examples.rs` does).
pub(crate) fn app(baseplate: &Baseplate) -> Router {
    Router::new()
        .route("/counters/{name}", post(count))
        .route_layer(BaseplateLayer::new(baseplate.clone()))
}

/// Serving while Redis answers. (`pub(crate)` so that a test can serve it too:
/// `integration/tests/examples.rs` does.)
pub(crate) struct RedisHealth;

#[tonic::async_trait]
impl Health for RedisHealth {
    /// `Check`: a `PING` through the request's `foo` (the span `foo.PING` under the call's). An
    /// error status makes a non-zero `grpc-status`, which the layer counts as a failure.
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        let ctx = request
            .extensions()
            .get::<RequestContext>()
            .ok_or_else(|| Status::internal("no RequestContext: add BaseplateLayer"))?;
        let mut foo = ctx
            .redis_cluster("foo")
            .map_err(|error| Status::internal(error.to_string()))?;
        let status = match foo.ping::<String>().await {
            Ok(_) => ServingStatus::Serving,
            Err(_) => ServingStatus::NotServing,
        };
        Ok(Response::new(HealthCheckResponse {
            status: status.into(),
        }))
    }

    type WatchStream = Empty<Result<HealthCheckResponse, Status>>;

    /// `Watch` is optional in gRPC's health protocol: `unimplemented` tells clients to poll.
    async fn watch(
        &self,
        _request: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        Err(Status::unimplemented("poll Check instead"))
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/examples/service.ini").to_owned());
    let mut baseplate = Baseplate::new(RawConfig::from_ini_file(&path)?);
    baseplate.configure_observers()?;
    baseplate.configure_context("foo", ClusterRedisClient::new())?;

    let http = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
    let grpc = "127.0.0.1:50051".parse()?;
    println!("HTTP on http://{}, gRPC on {grpc}", http.local_addr()?);
    let http = axum::serve(http, app(&baseplate)).with_graceful_shutdown(ctrl_c());
    let grpc = tonic::transport::Server::builder()
        .layer(BaseplateLayer::new(baseplate.clone()))
        .add_service(HealthServer::new(RedisHealth))
        .serve_with_shutdown(grpc, ctrl_c());
    tokio::try_join!(async { http.await.map_err(BoxError::from) }, async {
        grpc.await.map_err(BoxError::from)
    },)?;
    baseplate.shutdown().await; // the hot-key tracker's last flush
    Ok(())
}

/// Resolves at Ctrl-C: both servers then finish the requests they hold and stop.
async fn ctrl_c() {
    let _ = tokio::signal::ctrl_c().await;
}
