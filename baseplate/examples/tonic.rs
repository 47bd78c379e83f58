//! A tonic gRPC server with `BaseplateLayer`: each call gets its context and server span, named
//! after the gRPC method (`/grpc.health.v1.Health/Check`), and the method finds the
//! `RequestContext` in the request's extensions. The service is gRPC's standard health service,
//! whose check asks Redis, so it builds without protoc; a service of its own implements the
//! trait tonic generated for it the same way.
//!
//! ```text
//! cargo xtask cluster up
//! cargo run -p baseplate --example tonic [-- path/to/service.ini]
//! grpcurl -plaintext 127.0.0.1:50051 grpc.health.v1.Health/Check
//! ```

use baseplate::{Baseplate, BaseplateLayer, ClusterRedisClient, RawConfig, RequestContext};
use futures_util::stream::Empty;
use redis::AsyncCommands as _;
use tonic::{Request, Response, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

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

    let addr = "127.0.0.1:50051".parse()?;
    println!("serving gRPC on {addr}");
    tonic::transport::Server::builder()
        .layer(BaseplateLayer::new(baseplate.clone()))
        .add_service(HealthServer::new(RedisHealth))
        .serve_with_shutdown(addr, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    baseplate.shutdown().await; // the hot-key tracker's last flush
    Ok(())
}
