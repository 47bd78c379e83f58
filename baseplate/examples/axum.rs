//! An axum HTTP service with `BaseplateLayer`: each request gets its context and server span,
//! named after the matched route, and a handler takes the `RequestContext` as an argument.
//!
//! ```text
//! cargo xtask cluster up
//! cargo run -p baseplate --example axum [-- path/to/service.ini]
//! curl -X POST http://127.0.0.1:8080/counters/visits
//! ```

use axum::Router;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::post;
use baseplate::{Baseplate, BaseplateLayer, ClusterRedisClient, RawConfig, RequestContext};
use redis::AsyncCommands as _;

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

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/examples/service.ini").to_owned());
    let mut baseplate = Baseplate::new(RawConfig::from_ini_file(&path)?);
    baseplate.configure_observers()?;
    baseplate.configure_context("foo", ClusterRedisClient::new())?;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app(&baseplate))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    baseplate.shutdown().await; // the hot-key tracker's last flush
    Ok(())
}
