//! A service's own global `tracing` subscriber, installed after `configure_observers` the usual
//! way (`tracing_subscriber::fmt().init()`): baseplate installed none, so that does not panic, the
//! service's subscriber sees baseplate's spans, and request metrics flow as before. A test binary
//! of its own, as a process sets its global subscriber once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use baseplate::SERVER_SPAN;
use integration::logs::Logs;
use integration::statsd::{Statsd, request_lines};
use integration::unique_prefix;
use redis::AsyncCommands as _;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::test]
async fn a_service_installs_its_global_subscriber_after_configure_observers_and_metrics_flow() {
    let statsd = Statsd::bind().await;
    let baseplate = statsd.service(&[]);
    assert!(
        !tracing::dispatcher::has_been_set(),
        "configure_observers installed a global subscriber"
    );

    // What a service's main does; `init` panics when a global subscriber is set already.
    let logs = Logs::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();

    let key = unique_prefix("global-subscriber");
    let value = baseplate
        .server_context("visit", |ctx| async move {
            let mut foo = ctx.redis_cluster("foo")?;
            let () = foo.set(&key, "v").await?;
            tracing::info!("handled");
            let value: Option<String> = foo.get(&key).await?;
            Ok::<_, BoxError>(value)
        })
        .await
        .unwrap();
    assert_eq!(value.as_deref(), Some("v"));

    // The request's batch, flushed when it ended; runtime reports may come in between.
    let lines = request_lines(
        statsd
            .lines_until(|line| line.starts_with("ns.server.visit.success"))
            .await,
    );
    assert_eq!(
        lines,
        [
            "ns.clients.foo.GET.success:1|c",
            "ns.clients.foo.GET|ms",
            "ns.clients.foo.SET.success:1|c",
            "ns.clients.foo.SET|ms",
            "ns.server.visit.success:1|c",
            "ns.server.visit|ms",
        ]
    );

    // The service's subscriber saw the handler's event inside baseplate's server span.
    let logged = logs.text();
    assert!(
        logged
            .lines()
            .any(|line| line.contains(&format!("{SERVER_SPAN}{{")) && line.ends_with("handled")),
        "{logged}"
    );
    baseplate.shutdown().await;
}
