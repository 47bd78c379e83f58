//! Commands that span the cluster, on the real cluster: the cluster scan (every key exactly once,
//! `MATCH`/`COUNT`/`TYPE`, during a reshard), a plain `SCAN` refused, commands sent to one named
//! node or to every primary (their replies, spans, statsd lines and Prometheus series), where
//! redis-rs sends the multi-node commands (read from the nodes' own command counters), and
//! scripts and functions routed and tracked by their keys, pipelines meeting a moving slot. The
//! scan through a failover runs on a chaos cluster of its own.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use baseplate::{ClusterRedisClient, RawConfig};
use baseplate_hotkeys::{TrackedSet, top_keys};
use baseplate_redis_cluster::{
    ClusterRedisContextFactory, ClusterScanOptions, MonitoredClusterRedisConnection,
    RedisClientMetrics, key_slot,
};
use cluster_launcher::info_field;
use integration::chaos::cluster::ChaosCluster;
use integration::spans::SpanRecorder;
use integration::statsd::Statsd;
use integration::{TestCluster, cluster, own_cluster, unique_prefix};
use redis::AsyncCommands as _;
use tokio::sync::Mutex;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The tests on [`own_cluster`] take turns: one reshards it, one flushes it and reads its nodes'
/// command counters.
static OWN: Mutex<()> = Mutex::const_new(());

fn factory(on: &TestCluster, extra: &[(&str, &str)]) -> ClusterRedisContextFactory {
    let mut config: RawConfig = [
        ("foo.url", on.url()),
        // A read right after a write may reach a replica that has not applied it yet.
        ("foo.read_from_replicas", "false"),
    ]
    .into_iter()
    .collect();
    config.extend(extra.iter().copied());
    ClusterRedisClient::new().parse("foo", &config).unwrap()
}

fn connection(on: &TestCluster, extra: &[(&str, &str)]) -> MonitoredClusterRedisConnection {
    factory(on, extra).make_object_for_context("foo", &tracing::Span::none())
}

/// Writes `keys` (value: the key) in pipelines of a thousand, each split by node.
async fn fill(foo: &MonitoredClusterRedisConnection, keys: &[String]) {
    for chunk in keys.chunks(1000) {
        let mut pipe = foo.pipeline("fill");
        for key in chunk {
            pipe.set(key, key).ignore();
        }
        let () = pipe.query_async().await.unwrap();
    }
}

/// Deletes `keys` in pipelines of a thousand.
async fn remove(foo: &MonitoredClusterRedisConnection, keys: &[String]) {
    for chunk in keys.chunks(1000) {
        let mut pipe = foo.pipeline("remove");
        for key in chunk {
            pipe.del(key).ignore();
        }
        let () = pipe.query_async().await.unwrap();
    }
}

async fn scan_all(
    foo: &MonitoredClusterRedisConnection,
    options: ClusterScanOptions,
) -> Vec<String> {
    let mut keys = foo.cluster_scan::<String>(options);
    let mut found = Vec::new();
    while let Some(key) = keys.next().await {
        found.push(key.unwrap());
    }
    found
}

/// How often each key was found, for the keys found more than once.
fn repeated(found: &[String]) -> BTreeMap<&str, usize> {
    let mut counts = BTreeMap::new();
    for key in found {
        *counts.entry(key.as_str()).or_insert(0) += 1;
    }
    counts.retain(|_, n| *n > 1);
    counts
}

#[tokio::test]
async fn the_cluster_scan_finds_each_of_ten_thousand_keys_exactly_once() {
    let prefix = unique_prefix("scan-all");
    let keys: Vec<String> = (0..10_000).map(|i| format!("{prefix}{i}")).collect();
    let slots: BTreeSet<u16> = keys.iter().map(|k| key_slot(k.as_bytes())).collect();
    assert!(
        slots.len() > 7000,
        "the keys cover most slots: {}",
        slots.len()
    );
    let foo = connection(cluster(), &[]);
    fill(&foo, &keys).await;

    let options = ClusterScanOptions::default()
        .with_pattern(format!("{prefix}*"))
        .with_count(500);
    let found = scan_all(&foo, options.clone()).await;
    assert_eq!(repeated(&found), BTreeMap::new());
    let found: BTreeSet<String> = found.into_iter().collect();
    assert_eq!(found, keys.iter().cloned().collect::<BTreeSet<_>>());

    // From replicas too, once they have every write (WAIT waits for the writes made on its
    // connection: the shared one, which made them all).
    let replicated = foo
        .on_all_primaries::<i64>(redis::cmd("WAIT").arg(1).arg(5000))
        .await
        .unwrap();
    assert!(
        replicated.values().all(|n| *n.as_ref().unwrap() >= 1),
        "{replicated:?}"
    );
    let from_replicas = connection(cluster(), &[("foo.read_from_replicas", "true")]);
    let found = scan_all(&from_replicas, options).await;
    assert_eq!(found.len(), keys.len());
    assert_eq!(
        found.into_iter().collect::<BTreeSet<_>>(),
        keys.iter().cloned().collect::<BTreeSet<_>>()
    );
    remove(&foo, &keys).await;
}

#[tokio::test]
async fn scan_options_match_count_and_type() {
    let recorder = SpanRecorder::install();
    let prefix = unique_prefix("scan-options");
    let foo = connection(cluster(), &[]);
    let strings: Vec<String> = (0..30).map(|i| format!("{prefix}s:{i}")).collect();
    let hashes: Vec<String> = (0..20).map(|i| format!("{prefix}h:{i}")).collect();
    let lists: Vec<String> = (0..10).map(|i| format!("{prefix}l:{i}")).collect();
    fill(&foo, &strings).await;
    let mut pipe = foo.pipeline("types");
    for key in &hashes {
        pipe.hset(key, "f", 1).ignore();
    }
    for key in &lists {
        pipe.rpush(key, 1).ignore();
    }
    let () = pipe.query_async().await.unwrap();
    let sorted = |mut keys: Vec<String>| {
        keys.sort();
        keys
    };

    let matched = scan_all(
        &foo,
        ClusterScanOptions::default().with_pattern(format!("{prefix}h:*")),
    )
    .await;
    assert_eq!(sorted(matched), sorted(hashes.clone()));
    for (key_type, expected) in [("hash", &hashes), ("list", &lists), ("string", &strings)] {
        let typed = scan_all(
            &foo,
            ClusterScanOptions::default()
                .with_pattern(format!("{prefix}*"))
                .with_type(key_type),
        )
        .await;
        assert_eq!(sorted(typed), sorted(expected.clone()), "{key_type}");
    }

    // COUNT is the work each SCAN does: one SCAN per primary walks a whole node when it is
    // larger than the node's keyspace, many when it is 1.
    let scans = |recorder: &SpanRecorder| {
        recorder
            .closed()
            .into_iter()
            .filter(|span| span.display_name() == "foo.SCAN")
            .collect::<Vec<_>>()
    };
    let before = scans(&recorder).len();
    let options = ClusterScanOptions::default().with_pattern(format!("{prefix}*"));
    let all = scan_all(&foo, options.clone().with_count(10_000_000)).await;
    assert_eq!(all.len(), 60);
    let big = scans(&recorder);
    assert_eq!(big.len() - before, cluster().primaries());
    let primaries: BTreeSet<String> = cluster()
        .nodes()
        .await
        .into_iter()
        .filter(|n| n.primary)
        .map(|n| n.addr)
        .collect();
    let walked: BTreeSet<String> = big[before..]
        .iter()
        .map(|span| {
            assert_eq!(span.field("db.operation.name"), Some("SCAN"));
            assert_eq!(span.field("otel.status_code"), None);
            assert_eq!(span.field("baseplate.client"), Some("foo"));
            format!(
                "{}:{}",
                span.field("server.address").unwrap(),
                span.field("server.port").unwrap()
            )
        })
        .collect();
    assert_eq!(walked, primaries);
    let before = scans(&recorder).len();
    let all = scan_all(&foo, options.with_count(1)).await;
    assert_eq!(all.len(), 60);
    assert!(
        scans(&recorder).len() - before > 2 * cluster().primaries(),
        "COUNT 1 takes more than one SCAN per node"
    );

    let mut keys = strings;
    keys.extend(hashes);
    keys.extend(lists);
    remove(&foo, &keys).await;
}

#[tokio::test]
async fn a_key_the_scans_type_cannot_hold_is_an_error_naming_the_client_and_key() {
    let prefix = unique_prefix("scan-bytes");
    let foo = connection(cluster(), &[]);
    let mut key = prefix.clone().into_bytes();
    key.extend_from_slice(b"\xff");
    let mut raw = foo.clone();
    let () = raw.set(&key, 1).await.unwrap();
    let options = ClusterScanOptions::default().with_pattern(format!("{prefix}*"));
    let mut scan = foo.cluster_scan::<String>(options.clone());
    let mut errors = Vec::new();
    while let Some(found) = scan.next().await {
        if let Err(error) = found {
            errors.push(error.to_string());
            break;
        }
    }
    let [error] = errors.as_slice() else {
        panic!("the scan read {key:?} as a String: {errors:?}")
    };
    let shown = format!("{:?}", String::from_utf8_lossy(&key));
    assert!(
        error.starts_with(&format!(
            "scanned key not convertible - UnexpectedReturnType: redis cluster client \"foo\": \
             key {shown} from SCAN on 127.0.0.1:"
        )),
        "{error}"
    );
    assert!(
        error.contains("; cluster_scan::<Vec<u8>>() reads any key"),
        "{error}"
    );
    // As bytes, it is found.
    let mut scan = foo.cluster_scan::<Vec<u8>>(options);
    let mut found = Vec::new();
    while let Some(each) = scan.next().await {
        found.push(each.unwrap());
    }
    assert_eq!(found, [key.clone()]);
    let () = raw.del(&key).await.unwrap();
}

#[tokio::test]
async fn a_plain_scan_fails_with_an_error_that_points_to_the_cluster_scan() {
    let recorder = SpanRecorder::install();
    let mut foo = connection(cluster(), &[]);
    let expected = "plain SCAN on a cluster - Client: redis cluster client \"foo\": SCAN \
                    would walk the keys of one random node; use cluster_scan() to walk every \
                    node's keys";
    let error = redis::cmd("SCAN")
        .arg(0)
        .query_async::<(u64, Vec<String>)>(&mut foo)
        .await
        .unwrap_err();
    assert_eq!(error.to_string(), expected);
    let Err(error) = foo.scan_match::<_, String>("user:*").await else {
        panic!("a plain SCAN through AsyncCommands ran");
    };
    assert_eq!(error.to_string(), expected);
    let spans: Vec<_> = recorder
        .closed()
        .into_iter()
        .filter(|s| s.display_name() == "foo.SCAN")
        .collect();
    assert_eq!(spans.len(), 2);
    assert!(
        spans
            .iter()
            .all(|s| s.field("otel.status_code") == Some("ERROR"))
    );
}

#[tokio::test]
async fn commands_go_to_one_named_node_or_to_every_primary_traced_and_measured() {
    let recorder = SpanRecorder::install();
    let statsd = Statsd::bind().await;
    let baseplate = statsd.service(&[]);
    let nodes = cluster().nodes().await;
    let primaries: BTreeSet<String> = nodes
        .iter()
        .filter(|n| n.primary)
        .map(|n| n.addr.clone())
        .collect();
    let replica = nodes.iter().find(|n| !n.primary).unwrap().addr.clone();

    let (sizes, roles) = baseplate
        .server_context("route", |ctx| {
            let replica = replica.clone();
            async move {
                let foo = ctx.redis_cluster("foo")?;
                let sizes = foo.on_all_primaries::<i64>(&redis::cmd("DBSIZE")).await?;
                let mut node = foo.on_node(&replica)?;
                let role: Vec<redis::Value> = redis::cmd("ROLE").query_async(&mut node).await?;
                let pong: String = redis::cmd("PING").query_async(&mut node).await?;
                assert_eq!(pong, "PONG");
                let roles = foo
                    .on_all_primaries::<Vec<redis::Value>>(&redis::cmd("ROLE"))
                    .await?;
                // A cluster scan of nothing still walks every primary.
                let none = scan_all(
                    &foo,
                    ClusterScanOptions::default().with_pattern("no such key, none at all"),
                )
                .await;
                assert_eq!(none, Vec::<String>::new());
                Ok::<_, BoxError>((sizes, (role, roles)))
            }
        })
        .await
        .unwrap();
    assert_eq!(sizes.keys().cloned().collect::<BTreeSet<_>>(), primaries);
    assert!(sizes.values().all(|size| *size.as_ref().unwrap() >= 0));
    let (replica_role, primary_roles) = roles;
    assert_eq!(
        replica_role.first(),
        Some(&redis::Value::BulkString(b"slave".to_vec()))
    );
    for role in primary_roles.values() {
        assert_eq!(
            role.as_ref().unwrap().first(),
            Some(&redis::Value::BulkString(b"master".to_vec()))
        );
    }

    let spans = recorder.closed();
    let named = |name: &str| -> Vec<_> {
        spans
            .iter()
            .filter(|s| s.display_name() == name)
            .cloned()
            .collect()
    };
    let dbsize = named("foo.DBSIZE");
    assert_eq!(dbsize.len(), 1);
    let primaries_count = cluster().primaries().to_string();
    assert_eq!(
        dbsize[0].field("db.redis.nodes"),
        Some(primaries_count.as_str())
    );
    assert_eq!(dbsize[0].field("otel.status_code"), None);
    let ping = named("foo.PING");
    assert_eq!(ping.len(), 1);
    let (host, port) = replica.rsplit_once(':').unwrap();
    assert_eq!(ping[0].field("server.address"), Some(host));
    assert_eq!(ping[0].field("server.port"), Some(port));

    let packets = statsd.request_packets().await;
    assert_eq!(packets.len(), 1, "{packets:?}");
    let lines: BTreeSet<&str> = packets[0].lines().collect();
    for counter in [
        "ns.clients.foo.DBSIZE.success:1|c",
        "ns.clients.foo.PING.success:1|c",
        "ns.server.route.success:1|c",
    ] {
        assert!(lines.contains(counter), "{counter} in {lines:?}");
    }
    for timer in ["ns.clients.foo.DBSIZE:", "ns.clients.foo.ROLE:"] {
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(timer) && l.ends_with("|ms")),
            "{timer} in {lines:?}"
        );
    }
    // Each SCAN is measured: one or more per primary, every one a success.
    let scans = packets[0]
        .lines()
        .filter(|l| l.starts_with("ns.clients.foo.SCAN:") && l.ends_with("|ms"))
        .count();
    assert!(scans >= cluster().primaries(), "{lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("ns.clients.foo.SCAN.success:")),
        "{lines:?}"
    );
    assert!(
        !lines
            .iter()
            .any(|l| l.starts_with("ns.clients.foo.SCAN.failure:")),
        "{lines:?}"
    );
}

#[tokio::test]
async fn a_node_outside_the_cluster_is_named_in_the_error() {
    let foo = connection(cluster(), &[("foo.timeout", "2 seconds")]);
    // redis-rs sends only to the nodes it knows: a node outside the cluster is refused before
    // redis-rs is asked for it (which would make it reconnect to the whole cluster, again and
    // again, before it gave up).
    let mut node = foo.on_node("127.0.0.1:1").unwrap();
    let error = redis::cmd("PING")
        .query_async::<String>(&mut node)
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "redis cluster client call failed - Client: redis cluster client \"foo\": PING on \
         127.0.0.1:1 failed: not a node of the cluster - Client: 127.0.0.1:1 is not among the \
         nodes CLUSTER SLOTS lists"
    );
    let error = redis::pipe()
        .cmd("PING")
        .query_async::<Vec<String>>(&mut node)
        .await
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("127.0.0.1:1 is not among the nodes"),
        "{error}"
    );
    let error = foo.on_node("nowhere").unwrap_err();
    assert!(
        error
            .to_string()
            .contains("\"nowhere\" is not a node address (host:port)"),
        "{error}"
    );
}

#[tokio::test]
async fn cluster_scans_and_node_commands_are_prometheus_series() {
    let metrics = RedisClientMetrics::new();
    let factory = ClusterRedisClient::new()
        .prometheus(metrics.clone())
        .parse("foo", &[("foo.url", cluster().url())].into_iter().collect())
        .unwrap();
    let foo = factory.make_object_for_context("foo", &tracing::Span::none());
    let prefix = unique_prefix("scan-prometheus");
    let found = scan_all(
        &foo,
        ClusterScanOptions::default().with_pattern(format!("{prefix}*")),
    )
    .await;
    assert_eq!(found, Vec::<String>::new());
    let sizes = foo
        .on_all_primaries::<i64>(&redis::cmd("DBSIZE"))
        .await
        .unwrap();
    assert_eq!(sizes.len(), cluster().primaries());

    let mut registry = prometheus_client::registry::Registry::default();
    metrics.register(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    let requests = |command: &str| -> u64 {
        let labels = format!(
            r#"redis_client_requests_total{{redis_command="{command}",redis_database="0",redis_client_name="",redis_type="cluster",redis_success="true"}} "#
        );
        text.lines()
            .find_map(|line| line.strip_prefix(&labels))
            .map_or(0, |n| n.parse().unwrap())
    };
    // At least one SCAN per primary; one DBSIZE for all of them.
    assert!(requests("scan") >= cluster().primaries() as u64, "{text}");
    assert_eq!(requests("dbsize"), 1, "{text}");
}

/// How often each node ran each command, from `INFO commandstats` (`cmdstat_script|load` is
/// `script|load`).
async fn command_calls(on: &TestCluster) -> BTreeMap<String, BTreeMap<String, u64>> {
    let mut calls = BTreeMap::new();
    for node in on.nodes().await {
        let mut conn = on.node_connection(&node.addr).await;
        let stats: String = redis::cmd("INFO")
            .arg("commandstats")
            .query_async(&mut conn)
            .await
            .unwrap();
        let by_command = stats
            .lines()
            .filter_map(|line| {
                let (name, fields) = line.strip_prefix("cmdstat_")?.split_once(':')?;
                let calls = fields.split(',').find_map(|f| f.strip_prefix("calls="))?;
                Some((name.to_owned(), calls.parse().ok()?))
            })
            .collect();
        calls.insert(node.addr, by_command);
    }
    calls
}

/// Which nodes ran `command` between two readings of the counters, as `(primaries, replicas)`.
async fn ran_on(
    on: &TestCluster,
    before: &BTreeMap<String, BTreeMap<String, u64>>,
    command: &str,
) -> (usize, usize) {
    let after = command_calls(on).await;
    let mut ran = (0, 0);
    for node in on.nodes().await {
        let count = |calls: &BTreeMap<String, BTreeMap<String, u64>>| {
            calls
                .get(&node.addr)
                .and_then(|c| c.get(command))
                .copied()
                .unwrap_or(0)
        };
        // Reading the counters is an INFO too.
        let ours = u64::from(command == "info");
        if count(&after) > count(before) + ours {
            if node.primary {
                ran.0 += 1;
            } else {
                ran.1 += 1;
            }
        }
    }
    ran
}

#[tokio::test]
async fn multi_node_commands_go_where_the_readme_says_and_their_replies_combine_so() {
    let _turn = OWN.lock().await;
    let on = own_cluster();
    let mut foo = connection(on, &[]);
    let primaries = on.primaries();
    let replicas = primaries * on.replicas_per_primary();
    let prefix = unique_prefix("multi-node");
    let keys: Vec<String> = (0..30).map(|i| format!("{prefix}{i}")).collect();
    fill(&foo, &keys).await;

    // KEYS: every primary, the keys of all of them in one array.
    let before = command_calls(on).await;
    let mut listed: Vec<String> = foo.keys(format!("{prefix}*")).await.unwrap();
    assert_eq!(ran_on(on, &before, "keys").await, (primaries, 0));
    listed.sort();
    let mut expected = keys.clone();
    expected.sort();
    assert_eq!(listed, expected);

    // DBSIZE: every primary, summed.
    let before = command_calls(on).await;
    let total: i64 = redis::cmd("DBSIZE").query_async(&mut foo).await.unwrap();
    assert_eq!(ran_on(on, &before, "dbsize").await, (primaries, 0));
    let per_node = foo
        .on_all_primaries::<i64>(&redis::cmd("DBSIZE"))
        .await
        .unwrap();
    assert_eq!(
        total,
        per_node.values().map(|n| n.as_ref().unwrap()).sum::<i64>()
    );

    // PING: every primary, one PONG when all answer.
    let before = command_calls(on).await;
    let pong: String = redis::cmd("PING").query_async(&mut foo).await.unwrap();
    assert_eq!(pong, "PONG");
    assert_eq!(ran_on(on, &before, "ping").await.0, primaries);

    // INFO: every primary, a map of each node's text by its address.
    let before = command_calls(on).await;
    let info: BTreeMap<String, String> = redis::cmd("INFO")
        .arg("server")
        .query_async(&mut foo)
        .await
        .unwrap();
    assert_eq!(ran_on(on, &before, "info").await, (primaries, 0));
    assert_eq!(info.len(), primaries);
    assert!(
        info.values()
            .all(|text| info_field(text, "redis_version").is_some())
    );

    // SCRIPT LOAD: every node, replicas too (a read-only script may run there); one SHA1.
    let script = format!("return '{prefix}'");
    let before = command_calls(on).await;
    let sha: String = redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg(&script)
        .query_async(&mut foo)
        .await
        .unwrap();
    assert_eq!(
        ran_on(on, &before, "script|load").await,
        (primaries, replicas)
    );
    // SCRIPT EXISTS: every primary, true only where all have it.
    let before = command_calls(on).await;
    let exists: Vec<bool> = redis::cmd("SCRIPT")
        .arg("EXISTS")
        .arg(&sha)
        .arg("0000000000000000000000000000000000000000")
        .query_async(&mut foo)
        .await
        .unwrap();
    assert_eq!(ran_on(on, &before, "script|exists").await, (primaries, 0));
    assert_eq!(exists, [true, false]);
    // SCRIPT FLUSH: every node.
    let before = command_calls(on).await;
    let () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut foo)
        .await
        .unwrap();
    assert_eq!(
        ran_on(on, &before, "script|flush").await,
        (primaries, replicas)
    );

    // RANDOMKEY: every primary, the first key one of them returns.
    let before = command_calls(on).await;
    let key: Option<String> = redis::cmd("RANDOMKEY").query_async(&mut foo).await.unwrap();
    assert_eq!(ran_on(on, &before, "randomkey").await, (primaries, 0));
    assert!(key.is_some());

    // TIME and ECHO: one node, any.
    for (command, counter) in [("TIME", "time"), ("ECHO", "echo")] {
        let before = command_calls(on).await;
        let mut cmd = redis::cmd(command);
        if command == "ECHO" {
            cmd.arg("x");
        }
        let _: redis::Value = cmd.query_async(&mut foo).await.unwrap();
        let (p, r) = ran_on(on, &before, counter).await;
        assert_eq!(p + r, 1, "{command}");
    }

    // FLUSHDB and FLUSHALL: every primary, OK when all succeeded. Their replicas run them too,
    // from the replication stream (a replica asked by a client would refuse with READONLY, and
    // the call would fail).
    for (command, counter) in [("FLUSHDB", "flushdb"), ("FLUSHALL", "flushall")] {
        fill(&foo, &keys).await;
        let before = command_calls(on).await;
        let () = redis::cmd(command).query_async(&mut foo).await.unwrap();
        assert_eq!(
            ran_on(on, &before, counter).await,
            (primaries, replicas),
            "{command}"
        );
        let left: Vec<String> = foo.keys(format!("{prefix}*")).await.unwrap();
        assert_eq!(left, Vec::<String>::new(), "{command}");
    }
}

/// A name unique to this run, of letters, digits and underscores (for a function library).
fn unique_name(what: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{what}_{}_{nanos}", std::process::id())
}

#[tokio::test]
async fn scripts_and_functions_route_and_are_tracked_by_their_keys() {
    let recorder = SpanRecorder::install();
    let prefix = unique_prefix("scripts");
    let factory = factory(
        cluster(),
        &[
            ("foo.track_key_writes_sample_rate", "1"),
            ("foo.track_key_reads_sample_rate", "1"),
        ],
    );
    let mut foo = factory.make_object_for_context("foo", &tracing::Span::none());
    let (a, b) = (format!("{prefix}{{s}}a"), format!("{prefix}{{s}}b"));
    // The prefix in the body makes the script new to the cluster: its first EVALSHA gets NOSCRIPT.
    let script = redis::Script::new(&format!(
        "-- {prefix}\nredis.call('SET', KEYS[1], ARGV[1]); redis.call('SET', KEYS[2], ARGV[1]); \
         return redis.call('GET', KEYS[1])"
    ));
    for value in ["1", "2"] {
        let got: String = script
            .key(&a)
            .key(&b)
            .arg(value)
            .invoke_async(&mut foo)
            .await
            .unwrap();
        assert_eq!(got, value);
    }
    let names: Vec<String> = recorder
        .commands()
        .iter()
        .map(|s| {
            format!(
                "{} {}",
                s.display_name(),
                s.field("otel.status_code").unwrap_or("unset")
            )
        })
        .collect();
    assert_eq!(
        names,
        [
            "foo.EVALSHA ERROR",
            "foo.SCRIPT unset",
            "foo.EVALSHA unset",
            "foo.EVALSHA unset"
        ]
    );

    // A function, by its key.
    let library = unique_name("lib");
    let function = unique_name("f");
    let code = format!(
        "#!lua name={library}\nredis.register_function('{function}', function(keys, args) \
         redis.call('SET', keys[1], args[1]) return redis.call('GET', keys[1]) end)"
    );
    let _: String = redis::cmd("FUNCTION")
        .arg("LOAD")
        .arg(&code)
        .query_async(&mut foo)
        .await
        .unwrap();
    let got: String = redis::cmd("FCALL")
        .arg(&function)
        .arg(1)
        .arg(&a)
        .arg("3")
        .query_async(&mut foo)
        .await
        .unwrap();
    assert_eq!(got, "3");

    // Tracked by their keys: two EVALSHAs that ran (not the one refused with NOSCRIPT), and the
    // FCALL.
    factory.tracker().flush().await;
    let mut conn = cluster().connection().await;
    let mut writes = top_keys(&mut conn, TrackedSet::Writes, 100_000)
        .await
        .unwrap();
    writes.retain(|(key, _)| key.starts_with(prefix.as_bytes()));
    writes.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(
        writes,
        [(a.clone().into_bytes(), 3.0), (b.clone().into_bytes(), 2.0)]
    );

    // A keyless script goes to a primary, even when reads may go to replicas.
    let mut replicas_allowed = connection(cluster(), &[("foo.read_from_replicas", "true")]);
    let role =
        redis::Script::new("return string.match(redis.call('INFO', 'replication'), 'role:(%a+)')");
    for _ in 0..20 {
        let got: String = role.invoke_async(&mut replicas_allowed).await.unwrap();
        assert_eq!(got, "master");
    }

    // A script over two slots: refused before anything is sent.
    let elsewhere = format!("{prefix}{{t}}c");
    let error = script
        .key(&a)
        .key(&elsewhere)
        .arg("4")
        .invoke_async::<String>(&mut foo)
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "cross-slot script - Client: redis cluster client \"foo\": EVALSHA keys {a:?} \
             (slot {}) and {elsewhere:?} (slot {}) are in different hash slots; a script's keys \
             must share one slot: put them in one with a {{hash tag}}",
            key_slot(b"s"),
            key_slot(b"t")
        )
    );
    let value: Option<String> = foo.get(&elsewhere).await.unwrap();
    assert_eq!(value, None);

    let _: () = redis::cmd("FUNCTION")
        .arg("DELETE")
        .arg(&library)
        .query_async(&mut foo)
        .await
        .unwrap();
    cluster().delete(&[a, b]).await;
}

/// Moves one slot from `from` to `to` (node addresses and ids) by hand, as `redis-cli --cluster
/// reshard` does, in two halves: `between` runs while the slot is half moved.
async fn migrate_slot_in_halves<F: std::future::Future<Output = ()>>(
    on: &TestCluster,
    slot: u16,
    (from, from_id): (&str, &str),
    (to, to_id): (&str, &str),
    between: F,
) {
    let mut source = on.node_connection(from).await;
    let mut target = on.node_connection(to).await;
    let setslot = |state: &str, id: &str| {
        let mut cmd = redis::cmd("CLUSTER");
        cmd.arg("SETSLOT").arg(slot).arg(state).arg(id);
        cmd
    };
    let () = setslot("IMPORTING", from_id)
        .query_async(&mut target)
        .await
        .unwrap();
    let () = setslot("MIGRATING", to_id)
        .query_async(&mut source)
        .await
        .unwrap();
    let keys: Vec<String> = redis::cmd("CLUSTER")
        .arg("GETKEYSINSLOT")
        .arg(slot)
        .arg(100_000)
        .query_async(&mut source)
        .await
        .unwrap();
    let (host, port) = to.rsplit_once(':').unwrap();
    let migrate = |keys: &[String]| {
        let mut cmd = redis::cmd("MIGRATE");
        cmd.arg(host)
            .arg(port)
            .arg("")
            .arg(0)
            .arg(5000)
            .arg("KEYS")
            .arg(keys);
        cmd
    };
    let (first, second) = keys.split_at(keys.len() / 2);
    if !first.is_empty() {
        let _: String = migrate(first).query_async(&mut source).await.unwrap();
    }
    between.await;
    if !second.is_empty() {
        let _: String = migrate(second).query_async(&mut source).await.unwrap();
    }
    let () = setslot("NODE", to_id)
        .query_async(&mut target)
        .await
        .unwrap();
    let () = setslot("NODE", to_id)
        .query_async(&mut source)
        .await
        .unwrap();
}

/// The node the scan is walking: the one its last `SCAN` went to.
fn walking(recorder: &SpanRecorder) -> String {
    let last = recorder
        .closed()
        .into_iter()
        .rev()
        .find(|span| span.display_name() == "foo.SCAN")
        .expect("the scan sent a SCAN");
    format!(
        "{}:{}",
        last.field("server.address").unwrap(),
        last.field("server.port").unwrap()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_during_a_reshard_finds_every_key_that_existed_throughout() {
    let _turn = OWN.lock().await;
    let recorder = SpanRecorder::install();
    let on = own_cluster();
    let prefix = unique_prefix("scan-reshard");
    let keys: Vec<String> = (0..3000).map(|i| format!("{prefix}{i}")).collect();
    let foo = connection(on, &[]);
    fill(&foo, &keys).await;

    let mut scan = foo.cluster_scan::<String>(
        ClusterScanOptions::default()
            .with_pattern(format!("{prefix}*"))
            .with_count(20),
    );
    let mut found = Vec::new();
    let mut take = async |n: usize, found: &mut Vec<String>| {
        for _ in 0..n {
            match scan.next().await {
                Some(key) => found.push(key.unwrap()),
                None => break,
            }
        }
    };
    take(300, &mut found).await;

    // A thousand slots move away from the node the scan is half-way through.
    let nodes = on.nodes().await;
    let from = nodes
        .iter()
        .find(|n| n.addr == walking(&recorder))
        .unwrap()
        .clone();
    let to = nodes
        .iter()
        .find(|n| n.primary && n.id != from.id)
        .unwrap()
        .clone();
    let moved = tokio::task::spawn_blocking(move || own_cluster().reshard(&from.id, &to.id, 1000));
    moved.await.unwrap();
    take(300, &mut found).await;

    // Then a slot of the node the scan is walking now, holding a key it has not returned yet,
    // moves in two halves, the scan going on between. (Should the scan have just finished that
    // node, a slot of any node holding such a key.)
    let nodes = on.nodes().await;
    let walked = walking(&recorder);
    let unreturned = |key: &&String| !found.contains(*key);
    let owner_of = |key: &String| {
        nodes
            .iter()
            .find(|n| n.primary && n.serves(key_slot(key.as_bytes())))
            .unwrap()
    };
    let unreturned = keys
        .iter()
        .filter(unreturned)
        .find(|key| owner_of(key).addr == walked)
        .or_else(|| keys.iter().find(unreturned))
        .expect("keys not returned yet");
    let slot = key_slot(unreturned.as_bytes());
    let owner = owner_of(unreturned);
    let other = nodes
        .iter()
        .find(|n| n.primary && n.id != owner.id)
        .unwrap();
    migrate_slot_in_halves(
        on,
        slot,
        (&owner.addr, &owner.id),
        (&other.addr, &other.id),
        take(300, &mut found),
    )
    .await;
    take(usize::MAX, &mut found).await;

    let unique: BTreeSet<&String> = found.iter().collect();
    let expected: BTreeSet<&String> = keys.iter().collect();
    let missed: Vec<_> = expected.difference(&unique).collect();
    assert_eq!(missed, Vec::<&&String>::new(), "keys the scan missed");
    assert_eq!(unique, expected);
    println!(
        "{} keys found, {} of them more than once",
        unique.len(),
        repeated(&found).len()
    );
    // One by one: the client's own view of the slots is older than the reshard.
    on.delete(&keys).await;
}

/// The first of `{prefix}{n}` for n = 0, 1... whose slot `wanted` accepts.
fn key_where(prefix: &str, wanted: impl Fn(u16) -> bool) -> String {
    (0..)
        .map(|n| format!("{prefix}{n}"))
        .find(|key| wanted(key_slot(key.as_bytes())))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_meeting_a_moving_slot_runs_each_command_once() {
    let _turn = OWN.lock().await;
    let on = own_cluster();
    let prefix = unique_prefix("pipeline-moving");
    let nodes = on.nodes().await;
    let mut primaries = nodes.iter().filter(|n| n.serves_slots());
    let (source, target) = (primaries.next().unwrap(), primaries.next().unwrap());
    // `moving` and `also_moving` share the slot that moves; `staying` is another slot of the
    // same node, `elsewhere` a slot of the node the slot moves to.
    let tag = key_where(&format!("{prefix}tag"), |slot| source.serves(slot));
    let slot = key_slot(tag.as_bytes());
    let (moving, also_moving) = (format!("{{{tag}}}:x"), format!("{{{tag}}}:y"));
    let staying = key_where(&format!("{prefix}staying"), |other| {
        other != slot && source.serves(other)
    });
    let elsewhere = key_where(&format!("{prefix}elsewhere"), |other| target.serves(other));
    let foo = connection(on, &[]);
    let one_node = [&staying, &moving, &also_moving];
    let two_nodes = [&elsewhere, &staying, &moving, &also_moving];
    let incr_all = async |keys: &[&String]| -> Vec<i64> {
        let mut pipe = foo.pipeline("counts");
        for key in keys {
            pipe.incr(*key, 1);
        }
        pipe.query_async().await.unwrap()
    };
    // The client learns the topology before the slot moves, and is not told of the move.
    assert_eq!(incr_all(&one_node).await, [1, 1, 1]);

    // Half the slot's keys moved: the node answers `ASK` for one of the two.
    let mut during = Vec::new();
    migrate_slot_in_halves(
        on,
        slot,
        (&source.addr, &source.id),
        (&target.addr, &target.id),
        async {
            during.push(incr_all(&one_node).await);
            during.push(incr_all(&two_nodes).await);
        },
    )
    .await;
    assert_eq!(during, [vec![2, 2, 2], vec![1, 3, 3, 3]]);
    // The slot moved: the node answers `MOVED` for both.
    assert_eq!(incr_all(&one_node).await, [4, 4, 4]);
    assert_eq!(incr_all(&two_nodes).await, [2, 5, 5, 5]);

    let mut check = on.connection().await;
    for (key, expected) in [
        (&elsewhere, 2),
        (&staying, 5),
        (&moving, 5),
        (&also_moving, 5),
    ] {
        let count: i64 = check.get(key).await.unwrap();
        assert_eq!(count, expected, "{key}");
    }
    on.delete(&[elsewhere, staying, moving, also_moving]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_through_a_failover_finds_every_key_the_cluster_kept() {
    let recorder = SpanRecorder::install();
    // A cluster of its own, whose primaries fail over a second after they fall silent.
    let chaos = ChaosCluster::start(Duration::from_secs(1));
    // Every node a seed, so the client can connect again whichever node dies.
    let url = chaos.live_urls().join(",");
    let foo = ClusterRedisClient::new()
        .parse(
            "foo",
            &[
                ("foo.url", url.as_str()),
                ("foo.read_from_replicas", "false"),
            ]
            .into_iter()
            .collect(),
        )
        .unwrap()
        .make_object_for_context("foo", &tracing::Span::none());
    let prefix = unique_prefix("scan-failover");
    let keys: Vec<String> = (0..3000).map(|i| format!("{prefix}{i}")).collect();
    fill(&foo, &keys).await;
    // Every write on every replica first, so the failover loses none of them.
    let replicated = foo
        .on_all_primaries::<i64>(redis::cmd("WAIT").arg(2).arg(5000))
        .await
        .unwrap();
    assert!(
        replicated.values().all(|n| *n.as_ref().unwrap() == 2),
        "{replicated:?}"
    );

    let mut scan = foo.cluster_scan::<String>(
        ClusterScanOptions::default()
            .with_pattern(format!("{prefix}*"))
            .with_count(20),
    );
    let mut found = Vec::new();
    while found.len() < 300 {
        found.push(scan.next().await.unwrap().unwrap());
    }
    // The primary the scan is half-way through dies.
    let walked = walking(&recorder);
    let port: u16 = walked.rsplit_once(':').unwrap().1.parse().unwrap();
    chaos.kill(port);
    while let Some(key) = scan.next().await {
        found.push(key.unwrap());
    }

    let unique: BTreeSet<&String> = found.iter().collect();
    let expected: BTreeSet<&String> = keys.iter().collect();
    let missed: Vec<_> = expected.difference(&unique).collect();
    assert_eq!(missed, Vec::<&&String>::new(), "keys the scan missed");
    println!(
        "through a failover: {} keys found, {} of them more than once",
        unique.len(),
        repeated(&found).len()
    );
}

#[tokio::test]
async fn a_key_a_named_node_does_not_serve_follows_the_nodes_redirection() {
    let on = cluster();
    let foo = connection(on, &[]);
    let key = unique_prefix("on-node-moved");
    let nodes = on.nodes().await;
    let elsewhere = nodes
        .iter()
        .find(|n| n.primary && !n.serves(key_slot(key.as_bytes())))
        .unwrap();
    let mut node = foo.on_node(&elsewhere.addr).unwrap();
    let () = node.set(&key, 1).await.unwrap();
    let mut pipe = redis::pipe();
    pipe.incr(&key, 1).get(&key);
    let (incremented, read): (i64, i64) = pipe.query_async(&mut node).await.unwrap();
    assert_eq!((incremented, read), (2, 2));
    let stored: i64 = foo.clone().get(&key).await.unwrap();
    assert_eq!(stored, 2);
    cluster().delete(&[key]).await;
}

#[tokio::test]
async fn a_write_and_its_wait_sent_to_a_replica_run_together_on_the_primary() {
    let on = cluster();
    let foo = connection(on, &[]);
    let key = unique_prefix("on-replica-wait");
    let nodes = on.nodes().await;
    let replica = nodes.iter().find(|n| !n.primary).unwrap();
    let mut node = foo.on_node(&replica.addr).unwrap();
    let mut pipe = redis::pipe();
    // `WAIT 1 0`: until one replica has the write, however long that takes.
    pipe.set(&key, 1).cmd("WAIT").arg(1).arg(0);
    // The replica redirects the write and refuses the `WAIT` (it is no primary): the pipeline
    // runs again whole where the redirection leads, so the `WAIT` follows the write there.
    let ((), acknowledged): ((), i64) = pipe.query_async(&mut node).await.unwrap();
    assert_eq!(acknowledged, 1);
    let stored: i64 = foo.clone().get(&key).await.unwrap();
    assert_eq!(stored, 1);
    cluster().delete(&[key]).await;
}
