//! The hot-key cache on the real cluster: reads of a hot key are answered from memory (the node's
//! own command counter does not move), a write from another connection reaches the caching reader
//! through the server's invalidation (the window is measured and bounded well below the cache's
//! TTL), neither a slot move of the key nor a graceful failover and back leaves a stale value
//! while a connection opening for a blocking command drops nothing, the counters reach Prometheus
//! and the runtime statsd lines, a reply past `cache_max_bytes` is never kept (its key is read as
//! any read is until it changes), and a cluster that refuses RESP3 fails every command with an
//! error naming the client.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use baseplate::{ClusterRedisClient, RawConfig};
use baseplate_redis_cluster::{
    ClusterRedisContextFactory, MonitoredClusterRedisConnection, RedisClientMetrics, key_slot,
};
use cluster_launcher::{Cluster, ClusterNode, ClusterSpec};
use integration::statsd::Statsd;
use integration::{TestCluster, cluster, eventually, name_in_slot, own_cluster, unique_prefix};
use redis::AsyncCommands as _;
use redis::aio::ConnectionLike as _;
use redis::cluster_async::ClusterConnection;
use tokio::sync::Mutex;

/// The tests on [`own_cluster`] take turns: they read its nodes' command counters, and one moves
/// a slot.
static OWN: Mutex<()> = Mutex::const_new(());

/// How long the cache may keep a reply in these tests: far longer than any test waits, so a
/// reply that stops being served came from an invalidation, not from its age.
const LONG_TTL: &str = "600 seconds";

/// The bound the invalidation window is held to. The server pushes the invalidation before it
/// answers the write, so the window is what it takes the push to be read and the next read to go
/// to the server: 155-167 µs measured on a 2-core machine (three runs of this test). A second leaves room for a loaded machine and is
/// still far below the TTL, which alone would end a stale read without invalidations.
const INVALIDATION_BOUND: Duration = Duration::from_secs(1);

fn factory(on: &TestCluster, extra: &[(&str, &str)]) -> ClusterRedisContextFactory {
    let mut config: RawConfig = [
        ("foo.url", on.url()),
        ("foo.cache_hot_keys", "true"),
        ("foo.cache_ttl", LONG_TTL),
        // Every read of a key goes to its primary, whose counters the tests read.
        ("foo.read_from_replicas", "false"),
    ]
    .into_iter()
    .collect();
    config.extend(extra.iter().copied());
    ClusterRedisClient::new().parse("foo", &config).unwrap()
}

fn connection(factory: &ClusterRedisContextFactory) -> MonitoredClusterRedisConnection {
    factory.make_object_for_context("foo", &tracing::Span::none())
}

/// Reads `key` through `foo` until the cache answers it from memory (the tracker found it hot
/// and one read cached it).
async fn read_until_cached(
    factory: &ClusterRedisContextFactory,
    foo: &mut MonitoredClusterRedisConnection,
    key: &str,
) {
    let cached = eventually(Duration::from_secs(30), async || {
        for _ in 0..50 {
            let _: Option<String> = foo.get(key).await.unwrap();
        }
        factory.pool().cache_stats().unwrap().hits > 0
    })
    .await;
    assert!(cached.is_some(), "{key} was never served from the cache");
}

/// `key` written as `value` through a plain connection, then read through a new client `foo`
/// (configured with `extra`) until its cache answers it: the writer, `foo`'s factory, and `foo`.
async fn cached_key(
    on: &TestCluster,
    key: &str,
    value: &str,
    extra: &[(&str, &str)],
) -> (
    ClusterConnection,
    ClusterRedisContextFactory,
    MonitoredClusterRedisConnection,
) {
    let mut raw = on.connection().await;
    let () = raw.set(key, value).await.unwrap();
    let factory = factory(on, extra);
    let mut foo = connection(&factory);
    read_until_cached(&factory, &mut foo, key).await;
    (raw, factory, foo)
}

/// The primary serving `key`, `host:port`.
async fn primary_of(on: &TestCluster, key: &str) -> String {
    on.shard_of(key_slot(key.as_bytes())).await.0
}

/// Whether every one of `nodes` takes `primary` for a primary and `replica` for a replica.
async fn all_agree(on: &TestCluster, nodes: &[ClusterNode], primary: &str, replica: &str) -> bool {
    for node in nodes {
        let mut conn = on.node_connection(&node.addr).await;
        let Ok(text) = redis::cmd("CLUSTER")
            .arg("NODES")
            .query_async::<String>(&mut conn)
            .await
        else {
            return false;
        };
        let view = ClusterNode::parse_all(&text);
        let is_primary = |addr: &str| view.iter().find(|n| n.addr == addr).map(|n| n.primary);
        if is_primary(primary) != Some(true) || is_primary(replica) != Some(false) {
            return false;
        }
    }
    true
}

/// Reads `key` through `foo` as fast as it can until it reads `want`; how long that took, or
/// `None` if it still read something else after `within`.
async fn until_read(
    foo: &mut MonitoredClusterRedisConnection,
    key: &str,
    want: &str,
    within: Duration,
) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < within {
        let read: Option<String> = foo.get(key).await.unwrap();
        if read.as_deref() == Some(want) {
            return Some(started.elapsed());
        }
        tokio::task::yield_now().await;
    }
    None
}

#[tokio::test]
async fn reads_of_a_hot_key_stay_in_memory_until_another_connection_writes_it() {
    let _turn = OWN.lock().await;
    let on = own_cluster();
    let key = format!("{}hot", unique_prefix("cache"));
    let (mut raw, factory, mut foo) = cached_key(on, &key, "v1", &[]).await;

    let primary = primary_of(on, &key).await;
    let before = (
        on.command_calls(&primary, "get").await.calls,
        factory.pool().cache_stats().unwrap(),
    );
    for _ in 0..1000 {
        let read: Option<String> = foo.get(&key).await.unwrap();
        assert_eq!(read.as_deref(), Some("v1"));
    }
    let after = (
        on.command_calls(&primary, "get").await.calls,
        factory.pool().cache_stats().unwrap(),
    );
    assert_eq!(
        after.0 - before.0,
        0,
        "no GET of the 1000 reached {primary}"
    );
    assert_eq!(after.1.hits - before.1.hits, 1000);

    // Another connection writes: the server's push drops the cached reply.
    let () = raw.set(&key, "v2").await.unwrap();
    let window = until_read(&mut foo, &key, "v2", INVALIDATION_BOUND).await;
    let window = window.unwrap_or_else(|| {
        panic!("{key} still read v1 {INVALIDATION_BOUND:?} after another connection wrote v2")
    });
    eprintln!("invalidation window: {window:?}");
    let stats = factory.pool().cache_stats().unwrap();
    assert!(stats.invalidations > before.1.invalidations, "{stats:?}");
    assert!(
        stats.misses > before.1.misses,
        "the read after the write went to Redis"
    );
    let () = raw.del(&key).await.unwrap();
}

#[tokio::test]
async fn timeouts_and_a_ttl_longer_than_the_clock_counts_mean_no_limit_not_a_panic() {
    // u64::MAX seconds: what a config says for "never" when it has no word for it.
    let never = "18446744073709551615 seconds";
    let key = format!("{}never", unique_prefix("cache"));
    let extra = [("foo.timeout", never), ("foo.cache_ttl", never)];
    let (mut raw, factory, mut foo) = cached_key(cluster(), &key, "v1", &extra).await;
    let () = raw.set(&key, "v2").await.unwrap();
    let read = until_read(&mut foo, &key, "v2", INVALIDATION_BOUND).await;
    assert!(
        read.is_some(),
        "{key} still read v1 after another connection wrote v2"
    );
    assert!(factory.pool().cache_stats().unwrap().invalidations > 0);
    let () = raw.del(&key).await.unwrap();
}

#[tokio::test]
async fn a_read_the_cache_answers_allocates_a_small_future() {
    let on = integration::cluster();
    let key = format!("{}small", unique_prefix("cache"));
    let (mut raw, _factory, mut foo) = cached_key(on, &key, "v", &[]).await;
    let get = redis::cmd("GET").arg(&key).clone();
    let hot = std::mem::size_of_val(&*foo.req_packed_command(&get));
    let set = redis::cmd("SET").arg(&key).arg("w").clone();
    let write = std::mem::size_of_val(&*foo.req_packed_command(&set));
    // A read the cache may answer holds no call to Redis until it misses: 72 bytes against a
    // write's 888 (rustc 1.95).
    assert!(hot <= 128, "a cacheable read's future takes {hot} bytes");
    assert!(
        write > 2 * hot,
        "{write} bytes for a write, which goes to Redis"
    );
    let () = raw.del(&key).await.unwrap();
}

#[tokio::test]
async fn with_replica_reads_on_a_hot_key_is_still_read_from_memory() {
    let _turn = OWN.lock().await;
    let on = own_cluster();
    let key = format!("{}replicas", unique_prefix("cache"));
    let (mut raw, factory, mut foo) =
        cached_key(on, &key, "v", &[("foo.read_from_replicas", "true")]).await;
    let before = factory.pool().cache_stats().unwrap();
    for _ in 0..1000 {
        let _: Option<String> = foo.get(&key).await.unwrap();
    }
    let after = factory.pool().cache_stats().unwrap();
    // Reads spread over the shard's nodes would drop each other's cached reply.
    assert_eq!(after.hits - before.hits, 1000, "{before:?} -> {after:?}");
    let () = raw.del(&key).await.unwrap();
}

#[tokio::test]
async fn a_hot_key_whose_reply_is_past_cache_max_bytes_is_read_the_usual_way_until_it_changes() {
    let on = cluster();
    let prefix = unique_prefix("cache");
    let (small, large) = (format!("{prefix}small"), format!("{prefix}large"));
    let large_value = "x".repeat(8192);
    let extra = [
        ("foo.cache_max_bytes", "4096"),
        ("foo.read_from_replicas", "true"),
    ];
    let (mut raw, factory, mut foo) = cached_key(on, &small, "v", &extra).await;
    set_on_both(on, &large, &large_value).await;
    let hot = eventually(Duration::from_secs(30), async || {
        for _ in 0..50 {
            let read: Option<String> = foo.get(&large).await.unwrap();
            assert_eq!(read.as_deref(), Some(large_value.as_str()));
        }
        foo.hot_reads().contains(&large.as_bytes().to_vec())
    })
    .await;
    assert!(hot.is_some(), "{large} never became a hot read");

    // Read as any read is, from any node of the shard (half of them from its replica, as the
    // primary is a candidate too), not from its primary after `CLIENT CACHING YES` as a hot read
    // to be cached is. Other tests' reads only add to the count; fewer than 10 of 100 even
    // chances come up once in 10^16.
    let replica = replica_of(on, &large).await;
    let replica_before = on.command_calls(&replica, "get").await;
    let before = factory.pool().cache_stats().unwrap();
    for _ in 0..100 {
        let read: Option<String> = foo.get(&large).await.unwrap();
        assert_eq!(read.as_deref(), Some(large_value.as_str()));
    }
    let after = factory.pool().cache_stats().unwrap();
    let replica_after = on.command_calls(&replica, "get").await;
    assert_eq!(after.hits, before.hits, "8 KiB is past the 4 KiB bound");
    assert_eq!(
        after.misses - before.misses,
        100,
        "every read of {large} went to Redis"
    );
    assert!(
        replica_after.calls - replica_before.calls >= 10,
        "{large} read from its replica {replica}: {replica_before:?} -> {replica_after:?}"
    );
    let _: Option<String> = foo.get(&small).await.unwrap();
    let small_read = factory.pool().cache_stats().unwrap();
    assert_eq!(small_read.hits - after.hits, 1, "{small} stayed cached");

    // Once it changes (the server's invalidation says so), a value that fits is cached.
    set_on_both(on, &large, "small now").await;
    let cached = eventually(Duration::from_secs(10), async || {
        let before = factory.pool().cache_stats().unwrap().hits;
        let read: Option<String> = foo.get(&large).await.unwrap();
        assert_eq!(read.as_deref(), Some("small now"));
        factory.pool().cache_stats().unwrap().hits > before
    })
    .await;
    assert!(cached.is_some(), "{large} was never cached once it fit");
    let () = raw.del(&[&small, &large]).await.unwrap();
}

/// Writes `key` on its primary and waits until the primary's replica has it too, so that a read
/// from either finds it.
async fn set_on_both(on: &TestCluster, key: &str, value: &str) {
    let primary = primary_of(on, key).await;
    let mut conn = on.node_connection(&primary).await;
    let () = conn.set(key, value).await.unwrap();
    let acknowledged: i64 = redis::cmd("WAIT")
        .arg(1)
        .arg(10_000)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(acknowledged, 1, "{primary}'s replica never had {key}");
}

/// The replica of the primary serving `key`, `host:port`.
async fn replica_of(on: &TestCluster, key: &str) -> String {
    let (_, replicas) = on.shard_of(key_slot(key.as_bytes())).await;
    replicas
        .into_iter()
        .next()
        .expect("every primary of the shared cluster has a replica")
}

#[tokio::test]
async fn a_connection_opened_for_a_blocking_command_leaves_the_cache_warm() {
    let on = integration::cluster();
    let key = format!("{}blocking", unique_prefix("cache"));
    let (mut raw, factory, mut foo) = cached_key(on, &key, "v", &[]).await;
    // `BLPOP` runs on a connection of its own, which reads the cluster's topology as it opens:
    // the same topology, so nothing cached can have gone stale.
    let list = format!("{}blocking-list", unique_prefix("cache"));
    let popped: Option<(String, String)> = foo.blpop(&list, 0.01).await.unwrap();
    assert_eq!(popped, None);
    let before = factory.pool().cache_stats().unwrap();
    let read: Option<String> = foo.get(&key).await.unwrap();
    assert_eq!(read.as_deref(), Some("v"));
    let after = factory.pool().cache_stats().unwrap();
    assert_eq!(
        (after.hits - before.hits, after.misses - before.misses),
        (1, 0),
        "{before:?} -> {after:?}"
    );
    let () = raw.del(&key).await.unwrap();
}

#[tokio::test]
async fn a_cached_key_whose_slot_moves_is_never_read_stale() {
    let _turn = OWN.lock().await;
    let on = own_cluster();
    let nodes = on.nodes().await;
    let mut primaries: Vec<_> = nodes.iter().filter(|n| n.serves_slots()).collect();
    primaries.sort_by_key(|n| n.slots[0].0);
    let (from, to) = (primaries[0], primaries[1]);
    // The first slot of `from`: `reshard` moves a primary's slots from its first one on.
    let slot = from.slots[0].0;
    let key = name_in_slot(&unique_prefix("cache-moving"), slot);
    let (mut raw, _factory, mut foo) = cached_key(on, &key, "before", &[]).await;

    on.reshard(&from.id, &to.id, 1);
    let () = raw.set(&key, "after").await.unwrap();
    let read: Option<String> = foo.get(&key).await.unwrap();
    assert_eq!(
        read.as_deref(),
        Some("after"),
        "a stale value after the slot moved"
    );
    // And back, so the other tests find the topology they started with.
    let moved_to = primary_of(on, &key).await;
    assert_eq!(moved_to, to.addr);
    on.reshard(&to.id, &from.id, 1);
    let () = raw.set(&key, "back").await.unwrap();
    let read: Option<String> = foo.get(&key).await.unwrap();
    assert_eq!(read.as_deref(), Some("back"));
    let () = raw.del(&key).await.unwrap();
}

#[tokio::test]
async fn a_cached_key_is_never_read_stale_across_a_graceful_failover_and_back() {
    let _turn = OWN.lock().await;
    let on = own_cluster();
    let nodes = on.nodes().await;
    let (first, replica) = nodes
        .iter()
        .filter(|n| n.serves_slots())
        .find_map(|p| Some((p, nodes.iter().find(|n| n.replicates(p))?)))
        .expect("a primary with a replica");
    let key = name_in_slot(&unique_prefix("cache-failover"), first.slots[0].0);
    let (mut raw, _factory, mut foo) = cached_key(on, &key, "v1", &[]).await;
    // Reads answered from memory reach no node, so nothing tells the client of the failover but
    // the server's invalidations.
    let steps = [
        ("to its replica", replica, first, "v2"),
        ("back", first, replica, "v3"),
    ];
    for (step, to, from, value) in steps {
        let mut node = on.node_connection(&to.addr).await;
        // A replica takes over only once it is in step with its primary (the old primary, back,
        // syncs first).
        let in_step = eventually(Duration::from_secs(30), async || {
            let info: String = redis::cmd("INFO")
                .arg("replication")
                .query_async(&mut node)
                .await
                .unwrap();
            info.contains("master_link_status:up")
        })
        .await;
        assert!(
            in_step.is_some(),
            "{} never caught up with its primary",
            to.addr
        );
        // The other primaries refuse their votes while they still take `to` for a primary (the
        // way back, right after the first failover): asked again until it takes. Done once every
        // node says so, so that the next test on this cluster finds it settled.
        let promoted = eventually(Duration::from_secs(60), async || {
            let _: redis::RedisResult<()> = redis::cmd("CLUSTER")
                .arg("FAILOVER")
                .query_async(&mut node)
                .await;
            eventually(Duration::from_secs(6), async || {
                all_agree(on, &nodes, &to.addr, &from.addr).await
            })
            .await
            .is_some()
        })
        .await;
        assert!(
            promoted.is_some(),
            "failover {step}: the nodes never all took {} for the primary and {} for its \
             replica: {:#?}",
            to.addr,
            from.addr,
            on.nodes().await
        );
        assert_eq!(primary_of(on, &key).await, to.addr);

        let () = raw.set(&key, value).await.unwrap();
        let window = until_read(&mut foo, &key, value, INVALIDATION_BOUND).await;
        assert!(
            window.is_some(),
            "after the failover {step}, {key} still read an older value {INVALIDATION_BOUND:?} \
             after another connection wrote {value}"
        );
    }
    let () = raw.del(&key).await.unwrap();
}

#[tokio::test]
async fn the_cache_counters_reach_prometheus() {
    let _turn = OWN.lock().await;
    let on = own_cluster();
    let metrics = RedisClientMetrics::new();
    let config: RawConfig = [
        ("foo.url", on.url()),
        ("foo.cache_hot_keys", "true"),
        ("foo.read_from_replicas", "false"),
    ]
    .into_iter()
    .collect();
    let factory = ClusterRedisClient::new()
        .prometheus(metrics.clone())
        .parse("foo", &config)
        .unwrap();
    let key = format!("{}counted", unique_prefix("cache"));
    let mut foo = connection(&factory);
    read_until_cached(&factory, &mut foo, &key).await;
    let scrape = || {
        let mut registry = prometheus_client::registry::Registry::default();
        metrics.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        text
    };
    let value = |text: &str, series: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .map(|v| v.parse::<u64>().unwrap())
            .unwrap_or_else(|| panic!("no {series} in {text}"))
    };
    let foo_series = |text: &str, name: &str| value(text, &format!("{name}{{redis_pool=\"foo\"}}"));
    let gets = |text: &str| {
        value(
            text,
            r#"redis_client_requests_total{redis_command="get",redis_database="0",redis_client_name="",redis_type="cluster",redis_success="true"}"#,
        )
    };
    let stats = factory.pool().cache_stats().unwrap();
    let text = scrape();
    assert_eq!(
        foo_series(&text, "redis_client_cache_hits_total"),
        stats.hits
    );
    assert_eq!(
        foo_series(&text, "redis_client_cache_misses_total"),
        stats.misses
    );
    assert_eq!(
        foo_series(&text, "redis_client_cache_invalidations_total"),
        stats.invalidations
    );
    assert!(stats.hits > 0 && stats.misses > 0, "{stats:?}");
    assert_eq!(
        foo_series(&text, "redis_client_cache_keys"),
        1,
        "{key} alone"
    );
    assert_eq!(foo_series(&text, "redis_client_cache_bytes"), stats.bytes);
    assert!(stats.bytes > key.len() as u64, "{stats:?}");

    // A read answered from memory is measured as every command is.
    for _ in 0..100 {
        let _: Option<String> = foo.get(&key).await.unwrap();
    }
    let later = scrape();
    assert_eq!(
        factory.pool().cache_stats().unwrap().hits - stats.hits,
        100,
        "every read came from memory"
    );
    assert_eq!(gets(&later) - gets(&text), 100, "{later}");
}

#[tokio::test]
async fn the_runtime_reporter_sends_the_cache_counters_tagged_with_the_client() {
    let _turn = OWN.lock().await;
    let on = own_cluster();
    let statsd = Statsd::bind().await;
    let baseplate = statsd.service_with(
        &[("foo.url", on.url()), ("foo.cache_hot_keys", "true")],
        |baseplate| baseplate.with_runtime_metrics_interval(Duration::from_millis(200)),
    );
    let key = format!("{}reported", unique_prefix("cache"));
    let mut foo = baseplate
        .make_context_object()
        .redis_cluster("foo")
        .unwrap();
    // Reads until the reporter has counted hits.
    let read = key.clone();
    let reader = tokio::spawn(async move {
        loop {
            let _: Option<String> = foo.get(&read).await.unwrap();
            tokio::task::yield_now().await;
        }
    });
    // A report's lines come in one packet: its gauges, then its counters, hits first.
    let mut counted_hits = false;
    let lines = statsd
        .lines_until(|line| {
            if line.starts_with("ns.runtime.cache.hits,") && !line.ends_with(":0|c") {
                counted_hits = true;
            }
            counted_hits && line.starts_with("ns.runtime.cache.invalidations,")
        })
        .await;
    reader.abort();
    let report = &lines[lines.len() - 3..];
    let tags = format!(",PID={},client=foo:", std::process::id());
    for (line, counter) in report.iter().zip(["hits", "misses", "invalidations"]) {
        assert!(
            line.starts_with(&format!("ns.runtime.cache.{counter},hostname=")),
            "{report:#?}"
        );
        assert!(line.contains(&tags) && line.ends_with("|c"), "{line}");
    }
    let gauge = |name: &str| {
        let prefix = format!("ns.runtime.cache.{name},hostname=");
        let line = lines.iter().rev().find(|line| line.starts_with(&prefix));
        let line = line.unwrap_or_else(|| panic!("no {prefix} line in {lines:#?}"));
        assert!(line.contains(&tags) && line.ends_with("|g"), "{line}");
        line.rsplit_once(':')
            .unwrap()
            .1
            .trim_end_matches("|g")
            .parse::<u64>()
            .unwrap()
    };
    assert_eq!(gauge("keys"), 1, "{key} alone is cached");
    assert!(gauge("bytes") > key.len() as u64, "{lines:#?}");
}

#[tokio::test]
async fn a_cluster_that_refuses_resp3_fails_every_command_naming_the_client() {
    let mut spec = ClusterSpec::new(
        cluster_launcher::free_base_port(3).unwrap(),
        std::env::temp_dir(),
    );
    spec.replicas_per_primary = 0;
    spec.dir = std::env::temp_dir().join(format!(
        "baseplate-rs-it-no-resp3-{}-{}",
        std::process::id(),
        spec.base_port
    ));
    // Without HELLO a server cannot speak RESP3, as Redis before 6 could not.
    let cluster = Cluster::start_with_node_args(spec, &["--rename-command", "HELLO", "NOHELLO"])
        .expect("starting a cluster without HELLO");
    cluster.stop_when_process_exits(std::process::id()).unwrap();
    let url = cluster.url();
    let config: RawConfig = [("foo.url", url.as_str()), ("foo.cache_hot_keys", "true")]
        .into_iter()
        .collect();
    let factory = ClusterRedisClient::new().parse("foo", &config).unwrap();
    let mut foo = connection(&factory);
    let error = foo.get::<_, Option<String>>("k").await.unwrap_err();
    assert!(
        error.to_string().contains(
            "redis cluster client \"foo\": cache_hot_keys needs RESP3 and CLIENT TRACKING \
             (Redis 6 or later), and the cluster refused them"
        ),
        "{error}"
    );
    // The same cluster serves a client without the cache.
    let plain: RawConfig = [("foo.url", url.as_str())].into_iter().collect();
    let factory = ClusterRedisClient::new().parse("foo", &plain).unwrap();
    let () = connection(&factory).set("k", "v").await.unwrap();
    cluster.stop().unwrap();
}
