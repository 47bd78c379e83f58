//! The monitored cluster client against the real cluster: spans, every kind of command across all
//! slots, cross-slot pipelines, transactions, the pool's limits and timeouts, and secrets.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use baseplate_config::{RawConfig, UnknownKeys};
use baseplate_redis_cluster::{
    CallFailed, CallTimeout, ClusterRedisClient, ClusterRedisContextFactory,
    MonitoredClusterRedisConnection, PoolTimeout, RedisClientMetrics,
};
use integration::logs::Logs;
use integration::spans::SpanRecorder;
use integration::{cluster, eventually, hold_in_flight, unique_prefix};
use redis::AsyncCommands as _;

/// How long a test waits for the pool to reach the state it set up.
const WAIT: Duration = Duration::from_secs(5);

/// The client's config: `extra` over the test cluster's URL and reads from primaries only (a read
/// right after a write may reach a replica that has not applied it yet; replicas.rs tests
/// replica reads).
fn config(extra: &[(&str, &str)]) -> RawConfig {
    let mut config: RawConfig = extra.iter().copied().collect();
    if config.get("foo.url").is_none() {
        config.insert("foo.url", cluster().url());
    }
    if config.get("foo.read_from_replicas").is_none() {
        config.insert("foo.read_from_replicas", "false");
    }
    config
}

fn factory(extra: &[(&str, &str)]) -> ClusterRedisContextFactory {
    ClusterRedisClient::new()
        .parse("foo", &config(extra))
        .expect("a valid config")
}

fn connection(extra: &[(&str, &str)]) -> MonitoredClusterRedisConnection {
    factory(extra).make_object_for_context("foo", &tracing::Span::none())
}

#[tokio::test]
async fn every_command_is_a_child_span_named_after_the_client_and_command() {
    let recorder = SpanRecorder::install();
    let prefix = unique_prefix("spans");
    let factory = factory(&[]);
    let request = tracing::info_span!("request");
    let mut foo = factory.make_object_for_context("foo", &request);

    let () = foo.set(format!("{prefix}a"), 1).await.unwrap();
    let _: i64 = foo.get(format!("{prefix}a")).await.unwrap();
    let error = redis::cmd("NOSUCHCOMMAND")
        .arg("x")
        .query_async::<()>(&mut foo)
        .await
        .unwrap_err();
    let mut bar = foo.pipeline("bar");
    bar.incr(format!("{prefix}a"), 1)
        .incr(format!("{prefix}b"), 1);
    let _: (i64, i64) = bar.query_async().await.unwrap();
    let mut tx = foo.transaction("tx");
    tx.incr(format!("{prefix}{{t}}c"), 1);
    let _: (i64,) = tx.query_async().await.unwrap();
    drop(request);

    let spans = recorder.commands();
    let names: Vec<&str> = spans.iter().map(|s| s.display_name()).collect();
    assert_eq!(
        names,
        [
            "foo.SET",
            "foo.GET",
            "foo.NOSUCHCOMMAND",
            "foo.pipeline_bar",
            "foo.transaction_tx"
        ]
    );
    for span in &spans {
        assert_eq!(span.parent.as_deref(), Some("request"), "{span:?}");
        assert_eq!(span.field("db.system.name"), Some("redis"));
        assert_eq!(span.field("otel.kind"), Some("client"));
        assert_eq!(span.field("baseplate.client"), Some("foo"));
    }
    assert_eq!(spans[1].field("db.operation.name"), Some("GET"));
    // Batches as OpenTelemetry's conventions name them; a one-command transaction is no batch.
    assert_eq!(spans[3].field("db.operation.name"), Some("BATCH INCRBY"));
    assert_eq!(spans[4].field("db.operation.name"), Some("INCRBY"));
    let batches: Vec<_> = spans
        .iter()
        .map(|s| s.field("db.operation.batch.size"))
        .collect();
    // The conventions count batches of two commands or more.
    assert_eq!(batches, [None, None, None, Some("2"), None]);
    // A success leaves the status unset, as OpenTelemetry's conventions ask of client spans.
    let statuses: Vec<_> = spans.iter().map(|s| s.field("otel.status_code")).collect();
    assert_eq!(statuses, [None, None, Some("ERROR"), None, None]);
    // The error is recorded on its span and returned unchanged.
    assert_eq!(
        spans[2].field("otel.status_description"),
        Some(error.to_string().as_str())
    );
    assert_eq!(spans[2].field("error.type"), Some("ERR"));
    assert_eq!(spans[2].field("db.response.status_code"), Some("ERR"));
    assert_eq!(spans[1].field("error.type"), None);
    assert!(error.to_string().contains("unknown command"), "{error}");
    cluster()
        .delete(&[
            format!("{prefix}a"),
            format!("{prefix}b"),
            format!("{prefix}{{t}}c"),
        ])
        .await;
}

#[tokio::test]
async fn every_kind_of_command_round_trips_across_all_slots() {
    let prefix = unique_prefix("kinds");
    let mut foo = connection(&[]);
    let keys: Vec<String> = (0..48).map(|i| format!("{prefix}{i}")).collect();
    assert_eq!(
        cluster().primaries_covering(&keys).await,
        cluster().primaries()
    );

    for (i, key) in keys.iter().enumerate() {
        let i = i as i64;
        match i % 6 {
            0 => {
                let () = foo.set(key, i).await.unwrap();
                let n: i64 = foo.incr(key, 10).await.unwrap();
                assert_eq!(n, i + 10);
                let s: String = foo.get(key).await.unwrap();
                assert_eq!(s, (i + 10).to_string());
            }
            1 => {
                let () = foo
                    .hset_multiple(key, &[("a", i), ("b", i + 1)])
                    .await
                    .unwrap();
                let h: Vec<(String, i64)> = foo.hgetall(key).await.unwrap();
                let mut h = h;
                h.sort();
                assert_eq!(h, [("a".to_owned(), i), ("b".to_owned(), i + 1)]);
            }
            2 => {
                let _: i64 = foo.rpush(key, &[i, i + 1, i + 2]).await.unwrap();
                let l: Vec<i64> = foo.lrange(key, 0, -1).await.unwrap();
                assert_eq!(l, [i, i + 1, i + 2]);
            }
            3 => {
                let _: i64 = foo.sadd(key, &[i, i + 1]).await.unwrap();
                let mut s: Vec<i64> = foo.smembers(key).await.unwrap();
                s.sort();
                assert_eq!(s, [i, i + 1]);
            }
            4 => {
                let _: i64 = foo
                    .zadd_multiple(key, &[(2.5, "b"), (1.0, "a")])
                    .await
                    .unwrap();
                let z: Vec<(String, f64)> = foo.zrange_withscores(key, 0, -1).await.unwrap();
                assert_eq!(z, [("a".to_owned(), 1.0), ("b".to_owned(), 2.5)]);
            }
            _ => {
                let () = foo.set_ex(key, b"\x00\xffbinary", 100).await.unwrap();
                let v: Vec<u8> = foo.get(key).await.unwrap();
                assert_eq!(v, b"\x00\xffbinary");
                let ttl: i64 = foo.ttl(key).await.unwrap();
                assert!((1..=100).contains(&ttl), "ttl {ttl}");
            }
        }
    }
    for key in &keys {
        let deleted: i64 = foo.del(key).await.unwrap();
        assert_eq!(deleted, 1, "{key}");
        let exists: bool = foo.exists(key).await.unwrap();
        assert!(!exists);
    }
}

#[tokio::test]
async fn a_cross_slot_pipeline_of_100_commands_returns_results_in_order() {
    let recorder = SpanRecorder::install();
    let prefix = unique_prefix("pipe");
    let mut foo = connection(&[]);
    let keys: Vec<String> = (0..100).map(|i| format!("{prefix}{i}")).collect();
    assert_eq!(
        cluster().primaries_covering(&keys).await,
        cluster().primaries()
    );

    let mut set = foo.pipeline("fill");
    for (i, key) in keys.iter().enumerate() {
        set.set(key, i).ignore();
    }
    let () = set.query_async().await.unwrap();

    let mut get = foo.pipeline("read");
    for key in &keys {
        get.get(key);
    }
    let values: Vec<usize> = get.query_async().await.unwrap();
    assert_eq!(values, (0..100).collect::<Vec<_>>());
    // One sub-pipeline per primary, not one per slot or per command.
    let read = recorder
        .closed()
        .into_iter()
        .find(|s| s.display_name() == "foo.pipeline_read")
        .unwrap();
    assert_eq!(
        read.field("db.redis.nodes"),
        Some(cluster().primaries().to_string().as_str())
    );

    // Mixed reads and writes, and a keyless command, interleaved over every node.
    let mut mixed = redis::pipe();
    for (i, key) in keys.iter().enumerate().take(30) {
        if i % 2 == 0 {
            mixed.incr(key, 1000);
        } else {
            mixed.get(key);
        }
        if i == 15 {
            mixed.cmd("PING");
        }
    }
    let replies: Vec<redis::Value> = mixed.query_async(&mut foo).await.unwrap();
    assert_eq!(replies.len(), 31);
    let mut expected = Vec::new();
    for i in 0..30i64 {
        if i % 2 == 0 {
            expected.push(redis::Value::Int(i + 1000));
        } else {
            expected.push(redis::Value::BulkString(i.to_string().into_bytes()));
        }
        if i == 15 {
            expected.push(redis::Value::SimpleString("PONG".into()));
        }
    }
    assert_eq!(replies, expected);
    cluster().delete(&keys).await;
}

#[tokio::test]
async fn a_transaction_runs_in_one_slot_and_a_cross_slot_one_is_refused() {
    let prefix = unique_prefix("tx");
    let mut foo = connection(&[]);
    let a = format!("{prefix}{{same}}a");
    let b = format!("{prefix}{{same}}b");

    let mut pair = foo.transaction("pair");
    pair.incr(&a, 1).incr(&b, 2);
    let (x, y): (i64, i64) = pair.query_async().await.unwrap();
    assert_eq!((x, y), (1, 2));

    let other = format!("{prefix}other");
    let mut split = foo.transaction("split");
    split.incr(&a, 1).incr(&other, 1);
    let error = split.query_async::<()>().await.unwrap_err();
    assert!(
        error.to_string().contains(
            "redis cluster client \"foo\": transaction \"split\" touches more than one slot"
        ),
        "{error}"
    );
    // Nothing of the refused transaction was sent.
    let a_now: i64 = foo.get(&a).await.unwrap();
    assert_eq!(a_now, 1);
    let other_exists: bool = foo.exists(&other).await.unwrap();
    assert!(!other_exists);
    cluster().delete(&[a, b]).await;
}

#[tokio::test]
async fn commands_that_would_change_the_shared_connection_are_refused_unsent() {
    let prefix = unique_prefix("state");
    let mut foo = connection(&[]);
    // Keys on every primary, so that a node left in subscriber or monitor mode would show.
    let keys: Vec<String> = (0..30).map(|i| format!("{prefix}{i}")).collect();
    for key in &keys {
        let () = foo.set(key, key).await.unwrap();
    }
    let subscriber = "it puts the connection in subscriber mode, where other callers' commands \
                      fail; subscribe with subscriber()";
    let refused = [
        (
            redis::cmd("SUBSCRIBE").arg("news").clone(),
            "SUBSCRIBE",
            subscriber,
        ),
        (
            redis::cmd("psubscribe").arg("n*").clone(),
            "PSUBSCRIBE",
            subscriber,
        ),
        (
            redis::cmd("SSUBSCRIBE").arg(&keys[0]).clone(),
            "SSUBSCRIBE",
            subscriber,
        ),
        (redis::cmd("UNSUBSCRIBE"), "UNSUBSCRIBE", subscriber),
        (
            redis::cmd("MONITOR"),
            "MONITOR",
            "other callers would take the node's stream of commands for their replies",
        ),
        (
            redis::cmd("RESET"),
            "RESET",
            "it resets the connection's protocol, authentication or tracking",
        ),
        (
            redis::cmd("HELLO").arg(2).clone(),
            "HELLO",
            "it resets the connection's protocol, authentication or tracking",
        ),
        (
            redis::cmd("QUIT"),
            "QUIT",
            "it closes the connection under other callers' commands",
        ),
        (
            redis::cmd("MULTI"),
            "MULTI",
            "other callers' commands would join or end its transaction; run one with \
             transaction()",
        ),
        (
            redis::cmd("WATCH").arg(&keys[1]).clone(),
            "WATCH",
            "other callers' commands would join or end its transaction; run one with \
             transaction()",
        ),
        (
            redis::cmd("AUTH").arg("default").arg("secret").clone(),
            "AUTH",
            "every caller would run as the user it names; give the user and password in the URL",
        ),
        (
            redis::cmd("READONLY"),
            "READONLY",
            "the client sets which nodes serve reads (read_from_replicas)",
        ),
        (
            redis::cmd("CLIENT").arg("reply").arg("OFF").clone(),
            "CLIENT REPLY",
            "other callers' commands would get no replies",
        ),
        (
            redis::cmd("CLIENT").arg("TRACKING").arg("OFF").clone(),
            "CLIENT TRACKING",
            "the hot-key cache's invalidations come by the tracking the client set up",
        ),
    ];
    let primary = cluster()
        .nodes()
        .await
        .into_iter()
        .find(|n| n.primary)
        .unwrap();
    let mut node = foo.on_node(&primary.addr).unwrap();
    for (cmd, shown, reason) in refused {
        let expected = format!(
            "command would change a shared connection - Client: redis cluster client \"foo\": \
             {shown} would change the connection other callers share ({reason}); nothing was sent"
        );
        let error = cmd.query_async::<redis::Value>(&mut foo).await.unwrap_err();
        assert_eq!(error.to_string(), expected);
        let error = cmd
            .query_async::<redis::Value>(&mut node)
            .await
            .unwrap_err();
        assert_eq!(error.to_string(), expected, "on a node");
        let error = foo
            .on_all_primaries::<redis::Value>(&cmd)
            .await
            .unwrap_err();
        assert_eq!(error.to_string(), expected, "on every primary");
        let mut pipe = foo.pipeline("mixed");
        pipe.incr(format!("{prefix}count"), 1)
            .add_command(cmd.clone());
        let error = pipe.query_async::<redis::Value>().await.unwrap_err();
        assert_eq!(error.to_string(), expected, "in a pipeline");
    }
    // A plain SCAN would walk one random node in a pipeline as well.
    let mut pipe = foo.pipeline("scan");
    pipe.incr(format!("{prefix}count"), 1).cmd("SCAN").arg(0);
    let error = pipe.query_async::<redis::Value>().await.unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("plain SCAN on a cluster - Client: redis cluster client \"foo\": SCAN"),
        "{error}"
    );
    // Nothing was sent: every node answers every caller with its own reply, and the pipelines'
    // other commands never ran.
    for key in &keys {
        assert_eq!(foo.get::<_, String>(key).await.unwrap(), *key);
    }
    let counted: Option<i64> = foo.get(format!("{prefix}count")).await.unwrap();
    assert_eq!(counted, None);
    cluster().delete(&keys).await;
}

#[tokio::test]
async fn excess_callers_wait_for_a_slot_then_fail_with_the_pool_error() {
    let prefix = unique_prefix("exhaust");
    let foo = connection(&[
        ("foo.max_connections", "2"),
        ("foo.timeout", "300 milliseconds"),
        ("foo.socket_timeout", "5 seconds"),
        ("foo.socket_connect_timeout", "5 seconds"),
    ]);
    // Warm the connection up so the measured wait is only the wait for a slot.
    let _: Option<String> = foo.clone().get(format!("{prefix}warm")).await.unwrap();

    // Two slow commands hold both slots for a second (BLPOP blocks only its own caller's key).
    let holders = hold_in_flight(&foo, &prefix, 2);
    eventually(WAIT, async || foo.pool_stats().in_use == 2)
        .await
        .expect("both permits in use");

    let started = Instant::now();
    let mut waiter = foo.clone();
    let waiting = tokio::spawn(async move {
        let result: redis::RedisResult<Option<String>> = waiter.get("any").await;
        (result, started.elapsed())
    });
    eventually(WAIT, async || foo.pool_stats().waiting == 1)
        .await
        .expect("a waiter");
    let (result, waited) = waiting.await.unwrap();

    let error = result.unwrap_err();
    let timeout = PoolTimeout::find(&error).expect("a pool timeout");
    assert_eq!(timeout.client, "foo");
    assert_eq!(timeout.max_connections, 2);
    assert!(error.is_timeout());
    assert!(
        error.to_string().contains(
            "redis cluster client \"foo\": all 2 permits (max_connections) stayed busy for"
        ),
        "{error}"
    );
    // It waited its 300 ms, and gave up before the holders' second ended (a waiter still there
    // then gets a slot and succeeds); how much later than 300 ms depends on the machine's load.
    assert!(waited >= Duration::from_millis(290), "waited {waited:?}");

    for holder in holders {
        holder.await.unwrap().unwrap();
    }
    let stats = foo.pool_stats();
    assert_eq!(
        (stats.in_use, stats.waiting, stats.size, stats.blocking),
        (0, 0, 2, 0)
    );
    // The shared connection, and the two the BLPOPs had of their own, kept for the next ones:
    // each with a socket to every node, as baseplate.py counts sockets.
    let nodes = cluster().primaries() * (1 + cluster().replicas_per_primary());
    assert_eq!(stats.open_connections, 3 * nodes);
}

#[tokio::test]
async fn a_response_timeout_fires_within_the_timeout_and_names_the_client() {
    let prefix = unique_prefix("slow");
    let mut foo = connection(&[("foo.timeout", "500 milliseconds")]);
    let _: Option<String> = foo.get(format!("{prefix}warm")).await.unwrap();

    let started = Instant::now();
    let error = foo
        .blpop::<_, Option<(String, String)>>(format!("{prefix}empty"), 1.0)
        .await
        .unwrap_err();
    let took = started.elapsed();
    // The error itself shows it fired before the BLPOP's empty reply after a second.
    assert!(error.is_timeout(), "{error}");
    assert!(took >= Duration::from_millis(450), "took {took:?}");
    let timeout = CallTimeout::find(&error).expect("a call timeout");
    assert_eq!(
        (timeout.client.as_str(), timeout.command.as_str()),
        ("foo", "BLPOP")
    );
    assert_eq!(timeout.after, Duration::from_millis(500));
    let node = timeout.node.clone().expect("the key's node");
    assert!(
        error.to_string().starts_with(&format!(
            "redis cluster client \"foo\": no reply to BLPOP \"{prefix}empty\" from {node} within \
             500ms"
        )),
        "{error}"
    );
    // The abandoned BLPOP held a connection of its own: the shared one answers at once.
    let () = foo.set(format!("{prefix}after"), 1).await.unwrap();
    cluster().delete(&[format!("{prefix}after")]).await;
}

#[tokio::test]
async fn a_blocking_command_never_holds_up_the_callers_sharing_its_node() {
    let prefix = unique_prefix("blocking");
    let foo = connection(&[("foo.socket_timeout", "20 seconds")]);
    let key = format!("{prefix}list");
    // A BLPOP that only an RPUSH below ends: a command queued behind it on a shared socket would
    // wait that long.
    let waiter = {
        let mut foo = foo.clone();
        let key = key.clone();
        tokio::spawn(async move { foo.blpop::<_, Option<(String, String)>>(key, 15.0).await })
    };
    eventually(WAIT, async || foo.pool_stats().blocking == 1)
        .await
        .expect("the BLPOP on a connection of its own");
    // Keys in the BLPOP's slot, so on its node: `{...}` hash tags.
    let tag = format!("{{{key}}}");
    let mut reader = foo.clone();
    let round_trips = async {
        for i in 0..20 {
            let () = reader.set(format!("{tag}:{i}"), i).await.unwrap();
            let value: i64 = reader.get(format!("{tag}:{i}")).await.unwrap();
            assert_eq!(value, i);
        }
    };
    tokio::time::timeout(Duration::from_secs(10), round_trips)
        .await
        .expect("commands to the BLPOP's node answered while it waits");
    assert_eq!(foo.pool_stats().blocking, 1, "the BLPOP still waits");
    let () = reader.rpush(&key, "x").await.unwrap();
    assert_eq!(
        waiter.await.unwrap().unwrap(),
        Some((key.clone(), "x".to_owned()))
    );
    assert_eq!(foo.pool_stats().blocking, 0);
    let keys: Vec<String> = (0..20).map(|i| format!("{tag}:{i}")).collect();
    cluster().delete(&keys).await;
}

#[tokio::test]
async fn a_call_ends_at_its_deadline_however_long_it_waited_for_a_permit() {
    let prefix = unique_prefix("deadline");
    // One permit; a second's timeout for the wait and the reply alike.
    let foo = connection(&[("foo.max_connections", "1"), ("foo.timeout", "1 second")]);
    let _: Option<String> = foo.clone().get(format!("{prefix}warm")).await.unwrap();
    let holder = {
        let mut foo = foo.clone();
        let key = format!("{prefix}held");
        tokio::spawn(async move { foo.blpop::<_, Option<(String, String)>>(key, 0.6).await })
    };
    eventually(WAIT, async || foo.pool_stats().in_use == 1)
        .await
        .expect("the holder's permit");
    // Its permit comes after ~0.6 s; its BLPOP would answer 0.9 s later, past the second the
    // call was given (counting the wait), though within a second of being sent.
    let error = foo
        .clone()
        .blpop::<_, Option<(String, String)>>(format!("{prefix}late"), 0.9)
        .await
        .unwrap_err();
    let timeout = CallTimeout::find(&error).unwrap_or_else(|| panic!("{error}"));
    assert_eq!(timeout.after, Duration::from_secs(1));
    assert_eq!(holder.await.unwrap().unwrap(), None);
}

#[tokio::test]
async fn a_deadline_that_ran_out_connecting_after_a_wait_for_a_permit_names_the_wait() {
    // A node that accepts connections and never answers: connecting to it never finishes.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("redis://127.0.0.1:{}", silent.local_addr().unwrap().port());
    let listening = tokio::spawn(async move {
        let mut accepted = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            accepted.push(socket);
        }
    });
    let foo = connection(&[
        ("foo.url", &url),
        ("foo.max_connections", "1"),
        ("foo.timeout", "1 second"),
    ]);
    let started = Instant::now();
    let first = {
        let mut foo = foo.clone();
        tokio::spawn(async move { foo.get::<_, Option<String>>("a").await })
    };
    eventually(WAIT, async || foo.pool_stats().in_use == 1)
        .await
        .expect("the first caller's permit");
    // Halfway through the first caller's deadline, a second one waits for the permit until that
    // deadline, and spends the rest of its own connecting.
    tokio::time::sleep_until((started + Duration::from_millis(500)).into()).await;
    let second_started = Instant::now();
    let error = foo.clone().get::<_, Option<String>>("b").await.unwrap_err();
    let took = second_started.elapsed();

    // The first had its whole second to connect: the cluster did not answer.
    let first = first.await.unwrap().unwrap_err();
    assert_eq!(
        first.to_string(),
        "redis cluster client \"foo\": connecting to the cluster took longer than 1s"
    );
    // The second ran out of time for want of a permit, and says how long it waited for one.
    let timeout = CallTimeout::find(&error).unwrap_or_else(|| panic!("{error}"));
    assert_eq!(
        (timeout.client.as_str(), timeout.command.as_str()),
        ("foo", "GET")
    );
    assert_eq!(timeout.after, Duration::from_secs(1));
    assert!(
        timeout.waited_for_permit >= Duration::from_millis(400),
        "{error}"
    );
    assert!(
        error
            .to_string()
            .contains("of it waiting for one of the pool's permits"),
        "{error}"
    );
    // Ended at its deadline, not a connect timeout later (a loaded machine adds its delay).
    assert!(took < Duration::from_secs(3), "took {took:?}");
    listening.abort();
}

#[tokio::test]
async fn a_call_its_caller_gives_up_on_counts_as_failed_and_leaves_nothing_behind() {
    let metrics = RedisClientMetrics::new();
    let factory = ClusterRedisClient::new()
        .prometheus(metrics.clone())
        .parse(
            "foo",
            &config(&[
                ("foo.max_connections", "1"),
                ("foo.socket_timeout", "10 seconds"),
            ]),
        )
        .unwrap();
    let foo = factory.make_object_for_context("foo", &tracing::Span::none());
    let prefix = unique_prefix("gave-up");
    // A BLPOP holds the only permit until its caller gives up on it.
    let holder = {
        let mut foo = foo.clone();
        let key = format!("{prefix}held");
        tokio::spawn(async move { foo.blpop::<_, Option<(String, String)>>(key, 5.0).await })
    };
    eventually(WAIT, async || foo.pool_stats().blocking == 1)
        .await
        .expect("the BLPOP running");
    // A GET waits for the permit until its caller gives up on it too.
    let waiter = {
        let mut foo = foo.clone();
        tokio::spawn(async move { foo.get::<_, Option<String>>("any").await })
    };
    eventually(WAIT, async || foo.pool_stats().waiting == 1)
        .await
        .expect("a waiter");
    waiter.abort();
    holder.abort();
    let _ = (waiter.await, holder.await);
    let stats = foo.pool_stats();
    assert_eq!(
        (stats.in_use, stats.waiting, stats.blocking),
        (0, 0, 0),
        "{stats:?}"
    );

    let mut registry = prometheus_client::registry::Registry::default();
    metrics.register(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    for command in ["blpop", "get"] {
        let labels = format!(
            r#"redis_command="{command}",redis_database="0",redis_client_name="",redis_type="cluster""#
        );
        assert!(
            text.contains(&format!(
                "redis_client_requests_total{{{labels},redis_success=\"false\"}} 1\n"
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!("redis_client_active_requests{{{labels}}} 0\n")),
            "{text}"
        );
    }
}

#[tokio::test]
async fn a_refused_connection_names_the_client_and_keeps_its_kind() {
    let mut foo = connection(&[
        ("foo.url", "redis://user:hunter2@127.0.0.1:1"),
        ("foo.timeout", "1 second"),
    ]);
    let error = foo.get::<_, Option<String>>("k").await.unwrap_err();
    let shown = error.to_string();
    assert!(
        shown.starts_with("redis cluster client \"foo\": GET \"k\" failed: "),
        "{shown}"
    );
    assert!(!shown.contains("hunter2"), "{shown}");
    let failed = CallFailed::find(&error).unwrap_or_else(|| panic!("{shown}"));
    assert_eq!(failed.client, "foo");
    // redis-rs's own error, kept as the source.
    assert!(
        std::error::Error::source(failed)
            .is_some_and(|source| !source.to_string().contains("redis cluster client")),
        "{failed:?}"
    );
    assert!(error.is_io_error(), "{shown}");
    // As redis-rs's own error says, the connection is to be made again.
    assert!(error.is_connection_dropped(), "{shown}");
}

#[tokio::test]
async fn a_password_never_shows_in_errors_or_debug_output() {
    let url = cluster()
        .url()
        .replace("redis://", "redis://someone:hunter2-secret@");
    let factory = factory(&[("foo.url", &url), ("foo.timeout", "2 seconds")]);
    let mut foo = factory.make_object_for_context("foo", &tracing::Span::none());
    let error = foo.get::<_, Option<String>>("k").await.unwrap_err();
    let shown = format!("{error} {error:?} {factory:?} {foo:?}");
    assert!(!shown.contains("hunter2-secret"), "{shown}");
    assert!(shown.contains("127.0.0.1"), "{shown}");

    let bad = ClusterRedisClient::new()
        .parse(
            "foo",
            &config(&[("foo.url", "redis://someone:hunter2-secret@127.0.0.1:1/4")]),
        )
        .unwrap_err();
    assert_eq!(
        bad.to_string(),
        "foo.url: database \"4\" requested, but Redis Cluster only has database 0"
    );
}

#[tokio::test]
async fn config_errors_name_the_key() {
    let error = ClusterRedisClient::new()
        .parse("foo", &config(&[("foo.timeout", "3 secnds")]))
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "foo.timeout: invalid timespan \"3 secnds\": unknown unit \"secnd\""
    );
    let error = ClusterRedisClient::new()
        .unknown_keys(UnknownKeys::Reject)
        .parse("foo", &config(&[("foo.max_conections", "5")]))
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "foo.max_conections: unknown key; did you mean foo.max_connections?"
    );
}

#[tokio::test]
async fn unknown_keys_are_logged_once_when_the_client_is_configured() {
    let (logs, _guard) = Logs::capture();

    let factory = ClusterRedisClient::new()
        .parse(
            "foo",
            &config(&[
                ("foo.url", cluster().url()),
                ("foo.max_conections", "5"),
                ("foo.retry_on_timeout", "true"),
            ]),
        )
        .unwrap();
    assert_eq!(factory.pool_stats().size, 50, "the misspelt key is ignored");
    let mut foo = factory.make_object_for_context("foo", &tracing::Span::none());
    let _: Option<String> = foo.get(unique_prefix("unknown-keys")).await.unwrap();

    let text = logs.text();
    let warning = "foo.max_conections: unknown key, ignored; did you mean foo.max_connections?";
    assert_eq!(text.matches(warning).count(), 1, "{text}");
    assert_eq!(
        text.matches("foo.retry_on_timeout: unknown key, ignored")
            .count(),
        1,
        "{text}"
    );
    assert!(
        text.lines()
            .any(|line| line.contains(" WARN ") && line.contains(warning)),
        "{text}"
    );
}

#[tokio::test]
async fn an_unreachable_cluster_is_logged_once_naming_the_client() {
    let (logs, _guard) = Logs::capture();

    let mut foo = connection(&[
        ("foo.url", "redis://user:hunter2@127.0.0.1:1"),
        ("foo.timeout", "1 second"),
    ]);
    for _ in 0..3 {
        let error = foo.get::<_, Option<String>>("k").await.unwrap_err();
        assert!(!error.to_string().contains("hunter2"), "{error}");
    }
    let text = logs.text();
    // One warning while it stays unreachable, naming the client, never the password.
    assert_eq!(
        text.matches("cannot connect to the cluster").count(),
        1,
        "{text}"
    );
    assert!(text.contains("WARN"), "{text}");
    assert!(text.contains("client=foo"), "{text}");
    assert!(text.contains("Connection refused"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
}
