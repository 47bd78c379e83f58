//! The tower layer in a real axum service over real HTTP: each request's context reaches its
//! handler, its server metrics are named after the matched route, 5xx answers count as failures,
//! and the handler's Redis commands land in the same request's batch.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::Router;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::get;
use baseplate::{BaseplateLayer, RequestContext};
use integration::statsd::Statsd;
use integration::{cluster, unique_prefix};
use redis::AsyncCommands as _;

async fn counter(ctx: RequestContext, Path(key): Path<String>) -> Result<String, StatusCode> {
    let mut foo = ctx
        .redis_cluster("foo")
        .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
    let n: i64 = foo
        .incr(key, 1)
        .await
        .map_err(|_| StatusCode::BAD_GATEWAY)?;
    Ok(n.to_string())
}

async fn broken(_ctx: RequestContext) -> StatusCode {
    StatusCode::SERVICE_UNAVAILABLE
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_through_the_layer_are_measured_by_route_with_their_redis_commands() {
    let statsd = Statsd::bind().await;
    let baseplate = statsd.service(&[]);
    let app = Router::new()
        .route("/counters/{key}", get(counter))
        .route("/broken", get(broken))
        .route_layer(BaseplateLayer::new(baseplate.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let key = unique_prefix("layer");
    let url = format!("http://{addr}/counters/{key}");
    for expected in ["1", "2"] {
        let response = reqwest::get(&url).await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.text().await.unwrap(), expected);
    }
    let response = reqwest::get(format!("http://{addr}/broken")).await.unwrap();
    assert_eq!(response.status(), 503);
    // A path no route matches: axum answers 404 without running the layer.
    let response = reqwest::get(format!("http://{addr}/nowhere"))
        .await
        .unwrap();
    assert_eq!(response.status(), 404);

    baseplate.shutdown().await;
    let lines = integration::statsd::request_lines(statsd.lines_until_marker().await);
    assert_eq!(
        lines,
        [
            "ns.clients.foo.INCRBY.success:2|c",
            "ns.clients.foo.INCRBY|ms",
            "ns.clients.foo.INCRBY|ms",
            "ns.server./broken.failure:1|c",
            "ns.server./broken|ms",
            "ns.server./counters/{key}.success:2|c",
            "ns.server./counters/{key}|ms",
            "ns.server./counters/{key}|ms",
        ]
    );
    server.abort();
    cluster().delete(&[key]).await;
}
