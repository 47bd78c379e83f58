//! The facade's axum example (`baseplate/examples/axum.rs`) served against a real cluster: its
//! routes answer over HTTP and its requests are measured under their route's name, so the code
//! a service copies from it is known to work.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use baseplate::{Baseplate, ClusterRedisClient, RawConfig};
use integration::statsd::{Statsd, is_runtime_line};
use integration::{cluster, unique_prefix};

// The example itself, compiled into this test; its `main` reads an INI file and is not run here.
#[allow(dead_code)]
#[path = "../../baseplate/examples/axum.rs"]
mod axum_example;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_axum_example_counts_over_http_and_measures_its_route() {
    let statsd = Statsd::bind().await;
    let config: RawConfig = [
        ("metrics.namespace", "ns"),
        ("metrics.endpoint", statsd.endpoint().as_str()),
        ("foo.url", cluster().url()),
    ]
    .into_iter()
    .collect();
    let mut baseplate = Baseplate::new(config);
    baseplate.configure_observers().unwrap();
    baseplate
        .configure_context("foo", ClusterRedisClient::new())
        .unwrap();
    let baseplate = Arc::new(baseplate);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum_example::app(&baseplate);
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

    baseplate.shutdown().await;
    let mut lines: Vec<String> = statsd
        .lines_until_marker()
        .await
        .into_iter()
        .filter(|line| !is_runtime_line(line))
        .map(|line| match line.split_once(':') {
            Some((name, value)) if value.ends_with("|ms") => format!("{name}|ms"),
            _ => line,
        })
        .collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            "ns.clients.foo.INCRBY.success:1|c",
            "ns.clients.foo.INCRBY.success:1|c",
            "ns.clients.foo.INCRBY|ms",
            "ns.clients.foo.INCRBY|ms",
            "ns.server./counters/{name}.success:1|c",
            "ns.server./counters/{name}.success:1|c",
            "ns.server./counters/{name}|ms",
            "ns.server./counters/{name}|ms",
        ]
    );
    server.abort();
    cluster().delete(&[format!("counter:{name}")]).await;
}
