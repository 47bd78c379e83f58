//! Unit tests of the facade that need no Redis: registration, contexts, and the metrics layer fed
//! with spans shaped like the client's.

use std::time::Duration;

use baseplate_runtime_metrics::{MemoryTransport, MetricsClient};
use tracing_subscriber::layer::SubscriberExt as _;

use crate::{Baseplate, BaseplateError, ClusterRedisClient, ContextError, MetricsLayer, RawConfig};

fn config(pairs: &[(&str, &str)]) -> RawConfig {
    pairs.iter().copied().collect()
}

#[test]
fn dotted_names_nest_and_contexts_hand_out_clients_by_name_and_type() {
    let mut baseplate = Baseplate::new(config(&[("cache.foo.url", "redis://127.0.0.1:7000")]));
    baseplate
        .configure_context("cache.foo", ClusterRedisClient::new())
        .unwrap();
    let ctx = baseplate.make_context_object();

    let foo = ctx.redis_cluster("cache.foo").unwrap();
    assert_eq!(foo.name(), "cache.foo");
    assert_eq!(foo.pool_stats().size, 50);
    assert_eq!(
        ctx.get::<String>("cache.foo").unwrap_err(),
        ContextError::WrongType {
            name: "cache.foo".into(),
            expected: "alloc::string::String",
            actual: "baseplate_redis_cluster::connection::MonitoredClusterRedisConnection",
        }
    );
    assert_eq!(
        ctx.redis_cluster("foo").unwrap_err().to_string(),
        "no client named \"foo\" is configured"
    );
}

#[test]
fn configuration_errors_name_the_key() {
    let mut baseplate = Baseplate::new(config(&[
        ("foo.url", "redis://127.0.0.1:7000"),
        ("foo.timeout", "3 secnds"),
    ]));
    let error = baseplate
        .configure_context("foo", ClusterRedisClient::new())
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "foo.timeout: invalid timespan \"3 secnds\": unknown unit \"secnd\""
    );

    let mut baseplate = Baseplate::new(config(&[("cache.foo.url", "redis://h:1")]));
    let error = baseplate
        .configure_context("cache.foo", ClusterRedisClient::new().max_connections(0))
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "cache.foo.max_connections: must be at least 1"
    );

    let mut baseplate = Baseplate::new(config(&[
        ("foo.url", "redis://h:1"),
        ("metrics.endpont", "127.0.0.1:8125"),
    ]));
    baseplate
        .configure_context("foo", ClusterRedisClient::new())
        .unwrap();
    let error = baseplate.configure_metrics().unwrap_err();
    assert_eq!(
        error.to_string(),
        "metrics.endpont: unknown key; did you mean metrics.endpoint?"
    );
    let error = baseplate
        .configure_context("foo", ClusterRedisClient::new())
        .unwrap_err();
    assert!(matches!(error, BaseplateError::Duplicate { .. }), "{error}");
}

#[test]
fn the_metrics_layer_sends_one_batch_per_server_span() {
    let transport = MemoryTransport::new();
    let layer = MetricsLayer::new(MetricsClient::new(transport.clone(), "ns"), 1.0);
    let subscriber = tracing_subscriber::registry().with(layer);
    tracing::subscriber::with_default(subscriber, || {
        let baseplate = Baseplate::new(RawConfig::new());
        let ctx = baseplate.make_context_object();
        let server = baseplate.make_server_span(&ctx, "route");
        for (name, status) in [("foo.GET", "OK"), ("foo.SET", "ERROR"), ("foo.GET", "OK")] {
            let client = tracing::info_span!(
                parent: &server,
                "redis.command",
                otel.name = name,
                otel.kind = "client",
                otel.status_code = tracing::field::Empty,
            );
            std::thread::sleep(Duration::from_millis(2));
            client.record("otel.status_code", status);
        }
        assert!(
            transport.is_empty(),
            "nothing is sent before the request ends"
        );
        drop(server);
        drop(ctx);
    });

    assert_eq!(transport.packets().len(), 1);
    let mut lines: Vec<String> = transport
        .lines()
        .into_iter()
        .map(|line| match line.split_once(':') {
            Some((name, value)) if value.ends_with("|ms") => {
                let ms: f64 = value.trim_end_matches("|ms").parse().unwrap();
                assert!(ms >= 2.0, "{line}");
                format!("{name}|ms")
            }
            _ => line,
        })
        .collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            "ns.clients.foo.GET.success:2|c",
            "ns.clients.foo.GET|ms",
            "ns.clients.foo.GET|ms",
            "ns.clients.foo.SET.failure:1|c",
            "ns.clients.foo.SET|ms",
            "ns.server.route.success:1|c",
            "ns.server.route|ms",
        ]
    );
}

#[test]
fn sampled_requests_are_a_share_and_their_counters_carry_the_rate() {
    let transport = MemoryTransport::new();
    let layer = MetricsLayer::new(MetricsClient::new(transport.clone(), "ns"), 0.5);
    let subscriber = tracing_subscriber::registry().with(layer);
    tracing::subscriber::with_default(subscriber, || {
        let baseplate = Baseplate::new(RawConfig::new());
        for _ in 0..400 {
            let ctx = baseplate.make_context_object();
            let server = baseplate.make_server_span(&ctx, "route");
            crate::record_failure(&server, &"boom");
        }
    });
    let counters: Vec<String> = transport
        .lines()
        .into_iter()
        .filter(|l| l.contains("|c"))
        .collect();
    // Binomial(400, 0.5): 200 expected, outside 140..=260 with probability below 1e-9.
    assert!(
        (140..=260).contains(&counters.len()),
        "{} measured",
        counters.len()
    );
    assert!(
        counters
            .iter()
            .all(|l| l == "ns.server.route.failure:1|c|@0.5")
    );
}
