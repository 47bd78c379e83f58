//! The facade's axum and tonic example (`baseplate/examples/layer.rs`) served against
//! a real cluster: they answer over HTTP and gRPC and their requests are measured under their
//! route's or method's name, so the code a service copies from them is known to work.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use baseplate::{Baseplate, BaseplateLayer};
use integration::statsd::Statsd;
use integration::{cluster, unique_prefix};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::health_server::HealthServer;

// The example itself, compiled into this test; its `main` reads an INI file and is not run here.
#[allow(dead_code)]
#[path = "../../baseplate/examples/layer.rs"]
mod example;

/// A service configured like the example, its statsd lines sent to `statsd` under `ns`.
fn baseplate(statsd: &Statsd) -> Baseplate {
    statsd.service(&[])
}

/// The request lines `statsd` got once `baseplate` shut down, sorted, timers' values left out.
async fn request_lines(baseplate: &Baseplate, statsd: &Statsd) -> Vec<String> {
    baseplate.shutdown().await;
    integration::statsd::request_lines(statsd.lines_until_marker().await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_counts_over_http_and_measures_its_route() {
    let statsd = Statsd::bind().await;
    let baseplate = baseplate(&statsd);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = example::app(&baseplate);
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let name = unique_prefix("axum-example");
    let http = reqwest::Client::new();
    for expected in ["1", "2"] {
        let response = http
            .post(format!("http://{addr}/counters/{name}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.text().await.unwrap(), expected);
    }

    let lines = request_lines(&baseplate, &statsd).await;
    assert_eq!(
        lines,
        [
            "ns.clients.foo.INCRBY.success:2|c",
            "ns.clients.foo.INCRBY|ms",
            "ns.clients.foo.INCRBY|ms",
            "ns.server./counters/{name}.success:2|c",
            "ns.server./counters/{name}|ms",
            "ns.server./counters/{name}|ms",
        ]
    );
    server.abort();
    cluster().delete(&[format!("counter:{name}")]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_answers_grpc_health_checks_from_redis_and_measures_its_method() {
    let statsd = Statsd::bind().await;
    let baseplate = baseplate(&statsd);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tonic::transport::Server::builder()
        .layer(BaseplateLayer::new(baseplate.clone()))
        .add_service(HealthServer::new(example::RedisHealth))
        .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener));
    let server = tokio::spawn(server);

    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = HealthClient::new(channel);
    let reply = health
        .check(HealthCheckRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.status(), ServingStatus::Serving);
    let unimplemented = health
        .watch(HealthCheckRequest::default())
        .await
        .unwrap_err();
    assert_eq!(unimplemented.code(), tonic::Code::Unimplemented);

    // Watch answers a non-zero grpc-status: the layer counts the call as failed.
    let lines = request_lines(&baseplate, &statsd).await;
    assert_eq!(
        lines,
        [
            "ns.clients.foo.PING.success:1|c",
            "ns.clients.foo.PING|ms",
            "ns.server./grpc.health.v1.Health/Check.success:1|c",
            "ns.server./grpc.health.v1.Health/Check|ms",
            "ns.server./grpc.health.v1.Health/Watch.failure:1|c",
            "ns.server./grpc.health.v1.Health/Watch|ms",
        ]
    );
    server.abort();
}
