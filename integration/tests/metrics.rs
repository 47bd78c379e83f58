//! Request and runtime metrics end to end: a real UDP socket as the statsd endpoint, the facade,
//! and the real cluster. Request metrics are recorded where each command runs, so these tests
//! install no `tracing` subscriber, except the one that shows a `warn` filter changes nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use baseplate::Baseplate;
use integration::statsd::Statsd;
use integration::{cluster, unique_prefix};
use redis::AsyncCommands as _;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The service the tests measure; reads go to primaries, since a read right after a write may
/// reach a replica that has not applied it yet.
fn baseplate(statsd: &Statsd) -> Baseplate {
    statsd.service(&[("foo.read_from_replicas", "false")])
}

/// The metric names of a packet's lines with their type and value, timers' values dropped.
fn names(packet: &str) -> Vec<String> {
    let mut names: Vec<String> = packet
        .lines()
        .map(|line| {
            let (name, rest) = line.split_once(':').unwrap();
            if rest.ends_with("|ms") {
                format!("{name}|ms")
            } else {
                line.to_owned()
            }
        })
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn one_request_sends_one_batch_with_every_command_and_the_server_timer() {
    one_request_sends_one_batch().await;
}

#[tokio::test]
async fn request_metrics_arrive_whatever_the_log_filter() {
    // A service that logs only warnings: no span is enabled, and metrics are the same.
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_test_writer()
        .finish();
    let _default = tracing::subscriber::set_default(subscriber);
    assert!(
        tracing::info_span!("probe").is_disabled(),
        "INFO spans are off"
    );
    one_request_sends_one_batch().await;
}

async fn one_request_sends_one_batch() {
    let statsd = Statsd::bind().await;
    let baseplate = baseplate(&statsd);
    let prefix = unique_prefix("metrics");

    baseplate
        .server_context("route", |ctx| {
            let prefix = prefix.clone();
            async move {
                let mut foo = ctx.redis_cluster("foo")?;
                let () = foo.set(format!("{prefix}a"), 1).await?;
                let _: i64 = foo.get(format!("{prefix}a")).await?;
                let mut bar = foo.pipeline("bar");
                bar.incr(format!("{prefix}a"), 1)
                    .incr(format!("{prefix}b"), 1);
                let _: (i64, i64) = bar.query_async().await?;
                Ok::<_, BoxError>(())
            }
        })
        .await
        .unwrap();

    let packets = statsd.request_packets().await;
    assert_eq!(packets.len(), 1, "{packets:?}");
    assert_eq!(
        names(&packets[0]),
        [
            "ns.clients.foo.GET.success:1|c",
            "ns.clients.foo.GET|ms",
            "ns.clients.foo.SET.success:1|c",
            "ns.clients.foo.SET|ms",
            "ns.clients.foo.pipeline_bar.success:1|c",
            "ns.clients.foo.pipeline_bar|ms",
            "ns.server.route.success:1|c",
            "ns.server.route|ms",
        ]
    );
    // Timers are milliseconds: a loopback command takes well under a second.
    for line in packets[0].lines().filter(|l| l.ends_with("|ms")) {
        let value: f64 = line.split([':', '|']).nth(1).unwrap().parse().unwrap();
        assert!(value > 0.0 && value < 1000.0, "{line}");
    }
    cluster()
        .delete(&[format!("{prefix}a"), format!("{prefix}b")])
        .await;
}

#[tokio::test]
async fn a_failed_command_and_request_count_as_failures() {
    let statsd = Statsd::bind().await;
    let baseplate = baseplate(&statsd);

    let result = baseplate
        .server_context("broken", |ctx| async move {
            let mut foo = ctx.redis_cluster("foo")?;
            redis::cmd("NOSUCHCOMMAND")
                .query_async::<()>(&mut foo)
                .await?;
            Ok::<_, BoxError>(())
        })
        .await;
    assert!(result.is_err());

    let packets = statsd.request_packets().await;
    assert_eq!(packets.len(), 1, "{packets:?}");
    assert_eq!(
        names(&packets[0]),
        [
            "ns.clients.foo.NOSUCHCOMMAND.failure:1|c",
            "ns.clients.foo.NOSUCHCOMMAND|ms",
            "ns.server.broken.failure:1|c",
            "ns.server.broken|ms",
        ]
    );
}

#[tokio::test]
async fn the_runtime_reporter_sends_pool_gauges_tagged_with_the_client() {
    let statsd = Statsd::bind().await;
    let baseplate = statsd.service_with(
        &[
            ("foo.max_connections", "7"),
            ("foo.socket_timeout", "20 seconds"),
        ],
        |baseplate| baseplate.with_runtime_metrics_interval(Duration::from_millis(200)),
    );
    let prefix = unique_prefix("gauges");

    // Two blocking commands in flight until the RPUSHes below end them.
    let foo = baseplate
        .make_context_object()
        .redis_cluster("foo")
        .unwrap();
    let keys: Vec<String> = (0..2).map(|i| format!("{prefix}held{i}")).collect();
    let holders: Vec<_> = keys
        .iter()
        .map(|key| {
            let (mut foo, key) = (foo.clone(), key.clone());
            tokio::spawn(async move { foo.blpop::<_, Option<(String, String)>>(key, 15.0).await })
        })
        .collect();
    let tags = ",hostname=";
    let pid = format!(",PID={},client=foo:", std::process::id());
    let packets = statsd
        .packets_until(|packet| {
            packet
                .lines()
                .any(|l| l.starts_with("ns.runtime.pool.blocking,") && l.ends_with(":2|g"))
        })
        .await;
    let last = packets.last().unwrap();
    let lines: Vec<&str> = last.lines().collect();
    let nodes = cluster().primaries() * (1 + cluster().replicas_per_primary());
    for (metric, value) in [
        ("size", 7),
        ("in_use", 2),
        // A connection of its own for each BLPOP (no other command opened the shared one yet),
        // with a socket to every node.
        ("open_connections", 2 * nodes),
        ("waiting", 0),
        ("blocking", 2),
    ] {
        let line = lines
            .iter()
            .find(|l| l.starts_with(&format!("ns.runtime.pool.{metric}{tags}")))
            .unwrap_or_else(|| panic!("no pool.{metric} in {last}"));
        assert!(line.contains(&pid), "{line}");
        assert!(line.ends_with(&format!(":{value}|g")), "{line}");
    }
    let mut conn = cluster().connection().await;
    for (key, holder) in keys.iter().zip(holders) {
        let _: i64 = conn.rpush(key, "done").await.unwrap();
        let popped = holder.await.unwrap().unwrap();
        assert_eq!(popped, Some((key.clone(), "done".to_owned())));
    }
    baseplate.shutdown().await;
}

#[tokio::test]
async fn a_dead_statsd_endpoint_changes_no_result() {
    // A statsd on a Unix socket that goes away once configured: every send then fails. (A UDP
    // port let go could be handed to another test's listener.)
    let path = std::env::temp_dir().join(format!("{}.sock", unique_prefix("dead-statsd")));
    let statsd = Statsd::bind_unix(&path);
    let baseplate = baseplate(&statsd);
    drop(statsd);
    assert!(!path.exists());
    let prefix = unique_prefix("dead");

    for i in 0..20 {
        let value = baseplate
            .server_context("route", |ctx| {
                let key = format!("{prefix}{i}");
                async move {
                    let mut foo = ctx.redis_cluster("foo")?;
                    let () = foo.set(&key, i).await?;
                    let value: i64 = foo.get(&key).await?;
                    Ok::<_, BoxError>(value)
                }
            })
            .await
            .unwrap();
        assert_eq!(value, i);
    }
    let keys: Vec<String> = (0..20).map(|i| format!("{prefix}{i}")).collect();
    cluster().delete(&keys).await;
}
