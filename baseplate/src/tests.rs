//! Unit tests of the facade that need no Redis: registration, contexts, and request scopes fed with
//! calls shaped like the client's.

use std::time::Duration;

use baseplate_redis_cluster::{CommandName, CommandObserver as _};
use baseplate_runtime_metrics::{MemoryTransport, MetricsClient};

use crate::observer::RequestObserver;
use crate::{Baseplate, BaseplateError, ClusterRedisClient, ContextError, RawConfig};

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
    let error = baseplate.configure_observers().unwrap_err();
    assert_eq!(
        error.to_string(),
        "metrics.endpont: unknown key; did you mean metrics.endpoint?"
    );
    let error = baseplate
        .configure_context("foo", ClusterRedisClient::new())
        .unwrap_err();
    assert!(matches!(error, BaseplateError::Duplicate { .. }), "{error}");
}

/// Lines with timer values dropped (`name|ms`, or `name|ms|@rate`), sorted.
fn shapes(transport: &MemoryTransport) -> Vec<String> {
    let mut lines: Vec<String> = transport
        .lines()
        .into_iter()
        .map(|line| match line.split_once(':') {
            Some((name, value)) if value.contains("|ms") => {
                let rate = value.split_once("|ms").map_or("", |(_, rate)| rate);
                format!("{name}|ms{rate}")
            }
            _ => line,
        })
        .collect();
    lines.sort();
    lines
}

#[test]
fn a_request_scope_sends_one_batch_when_the_request_ends() {
    let transport = MemoryTransport::new();
    let observer = RequestObserver::new(MetricsClient::new(transport.clone(), "ns"), 1.0);
    let scope = observer.request("route");
    let get = CommandName::Command(b"get");
    scope.command_finished("foo", &get, Duration::from_millis(2), true);
    scope.command_finished("foo", &CommandName::Command(b"SET"), Duration::ZERO, false);
    scope.command_finished("foo", &get, Duration::from_millis(3), true);
    scope.command_finished(
        "foo",
        &CommandName::Label("pipeline_bar"),
        Duration::ZERO,
        true,
    );
    scope.record_call("memcache", "get_multi", Duration::ZERO, true);
    assert!(
        transport.is_empty(),
        "nothing is sent before the request ends"
    );
    drop(scope);

    assert_eq!(transport.packets().len(), 1);
    assert_eq!(
        shapes(&transport),
        [
            "ns.clients.foo.GET.success:2|c",
            "ns.clients.foo.GET|ms",
            "ns.clients.foo.GET|ms",
            "ns.clients.foo.SET.failure:1|c",
            "ns.clients.foo.SET|ms",
            "ns.clients.foo.pipeline_bar.success:1|c",
            "ns.clients.foo.pipeline_bar|ms",
            "ns.clients.memcache.get_multi.success:1|c",
            "ns.clients.memcache.get_multi|ms",
            "ns.server.route.success:1|c",
            "ns.server.route|ms",
        ]
    );
    let get_ms: Vec<f64> = transport
        .lines()
        .iter()
        .filter_map(|l| l.strip_prefix("ns.clients.foo.GET:"))
        .map(|v| v.trim_end_matches("|ms").parse().unwrap())
        .collect();
    assert_eq!(get_ms, [2.0, 3.0]);
}

#[test]
fn calls_outside_a_request_go_out_one_by_one() {
    let transport = MemoryTransport::new();
    let observer = RequestObserver::new(MetricsClient::new(transport.clone(), "ns"), 0.5);
    let scope = observer.outside_requests();
    scope.command_finished("foo", &CommandName::Command(b"GET"), Duration::ZERO, true);
    scope.record_failure();
    assert_eq!(
        shapes(&transport),
        ["ns.clients.foo.GET.success:1|c", "ns.clients.foo.GET|ms"]
    );
    drop(scope);
    assert_eq!(transport.packets().len(), 1);
}

#[test]
fn sampled_requests_are_a_share_and_their_timers_and_counters_carry_the_rate() {
    let transport = MemoryTransport::new();
    let observer = RequestObserver::new(MetricsClient::new(transport.clone(), "ns"), 0.5);
    for _ in 0..400 {
        let scope = observer.request("route");
        scope.command_finished("foo", &CommandName::Command(b"GET"), Duration::ZERO, true);
        scope.record_failure();
    }
    let lines = shapes(&transport);
    let counters = lines.iter().filter(|l| l.contains("|c")).count();
    // Binomial(400, 0.5) requests measured, two counters each: 400 expected; a measured share
    // outside 140..=260 has a probability below 1e-9.
    assert!((280..=520).contains(&counters), "{counters} counters");
    assert_eq!(lines.len(), counters * 2);
    for line in lines {
        assert!(
            [
                "ns.clients.foo.GET.success:1|c|@0.5",
                "ns.clients.foo.GET|ms|@0.5",
                "ns.server.route.failure:1|c|@0.5",
                "ns.server.route|ms|@0.5",
            ]
            .contains(&line.as_str()),
            "{line}"
        );
    }
}
