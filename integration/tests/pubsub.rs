//! Pub/sub through the monitored client against the real cluster: classic, pattern and sharded
//! subscriptions across every primary, traced and measured; the subscriber's connection kept
//! apart from the shared one; and subscriptions that survive a failover and a slot move (on
//! clusters of their own, which the tests kill and reshard).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use baseplate_config::RawConfig;
use baseplate_redis_cluster::{
    ClusterRedisClient, ClusterRedisContextFactory, CommandName, CommandObserver,
    MonitoredClusterRedisConnection, RedisClientMetrics, Subscriber,
};
use cluster_launcher::{cluster_nodes, redis_cli, wait_until};
use futures_util::StreamExt as _;
use integration::chaos::cluster::{ChaosCluster, PASSWORD, USER, blocking};
use integration::spans::SpanRecorder;
use integration::{cluster, name_in_slot, unique_prefix};
use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;
use redis::{AsyncCommands as _, Msg};

/// How long a test waits for a message it expects (or for the cluster to recover).
const PATIENCE: Duration = Duration::from_secs(10);

fn factory_for(
    url: &str,
    extra: &[(&str, &str)],
    metrics: RedisClientMetrics,
) -> ClusterRedisContextFactory {
    let mut config: RawConfig = extra.iter().copied().collect();
    config.insert("foo.url", url);
    ClusterRedisClient::new()
        .prometheus(metrics)
        .parse("foo", &config)
        .expect("a valid config")
}

/// A connection to the shared cluster, outside any request.
fn connection(extra: &[(&str, &str)]) -> MonitoredClusterRedisConnection {
    connection_to(cluster().url(), extra)
}

/// A connection to the cluster at `url`, outside any request.
fn connection_to(url: &str, extra: &[(&str, &str)]) -> MonitoredClusterRedisConnection {
    factory_for(url, extra, RedisClientMetrics::new())
        .make_object_for_context("foo", &tracing::Span::none())
}

/// One channel in the first slot of every primary of the shared cluster.
async fn channel_per_primary(prefix: &str) -> Vec<String> {
    let primaries: Vec<_> = cluster()
        .nodes()
        .await
        .into_iter()
        .filter(|n| n.primary)
        .collect();
    assert_eq!(primaries.len(), cluster().primaries());
    primaries
        .iter()
        .map(|node| {
            let first = node.slots[0].0;
            assert!(node.serves(first));
            name_in_slot(prefix, first)
        })
        .collect()
}

/// The next message, or `None` when none came within `within`.
async fn next_within(subscriber: &mut Subscriber, within: Duration) -> Option<Msg> {
    tokio::time::timeout(within, subscriber.next())
        .await
        .ok()
        .flatten()
}

/// `(channel, payload)` of the next `count` messages, waiting at most [`PATIENCE`] for all.
async fn receive(subscriber: &mut Subscriber, count: usize) -> Vec<(String, String)> {
    let deadline = Instant::now() + PATIENCE;
    let mut received = Vec::new();
    while received.len() < count {
        let left = deadline.saturating_duration_since(Instant::now());
        let Some(message) = next_within(subscriber, left).await else {
            panic!("only {received:?} of {count} messages arrived within {PATIENCE:?}");
        };
        received.push((
            message.get_channel_name().to_owned(),
            String::from_utf8_lossy(message.get_payload_bytes()).into_owned(),
        ));
    }
    received
}

/// The command spans of subscribing to `channels` channels, publishing once to each,
/// unsubscribing from one and publishing twice more, with `[subscribe, publish, unsubscribe]` as
/// the commands (`SUBSCRIBE`, `PUBLISH`, `UNSUBSCRIBE` or their sharded forms).
fn subscription_spans(
    [subscribe, publish, unsubscribe]: [&str; 3],
    channels: usize,
) -> Vec<String> {
    let mut spans = vec![format!("foo.{subscribe}")];
    spans.extend((0..channels).map(|_| format!("foo.{publish}")));
    spans.push(format!("foo.{unsubscribe}"));
    spans.extend([format!("foo.{publish}"), format!("foo.{publish}")]);
    spans
}

/// The outcome of each command the observer heard of, by name.
#[derive(Default)]
struct Heard(Mutex<Vec<(String, bool)>>);

impl CommandObserver for Heard {
    fn command_finished(&self, client: &str, name: &CommandName<'_>, _: Duration, success: bool) {
        self.0
            .lock()
            .unwrap()
            .push((format!("{client}.{name}"), success));
    }
}

#[tokio::test]
async fn classic_subscribers_receive_what_any_node_publishes_on_channels_of_every_primary() {
    let recorder = SpanRecorder::install();
    let prefix = unique_prefix("pubsub-classic");
    let channels = channel_per_primary(&prefix).await;
    let request = tracing::info_span!("request");
    let mut foo = factory_for(cluster().url(), &[], RedisClientMetrics::new())
        .make_object_for_context("foo", &request);
    let mut subscriber = foo.subscriber().await.unwrap();
    subscriber.subscribe(&channels).await.unwrap();

    // Through the client (redis-rs sends PUBLISH to any node) and on every node directly. (A
    // node counts only its own receivers in PUBLISH's reply.)
    for channel in &channels {
        let _: i64 = foo.publish(channel, "via-client").await.unwrap();
    }
    let mut expected = BTreeSet::new();
    for channel in &channels {
        expected.insert((channel.clone(), "via-client".to_owned()));
    }
    let nodes = cluster().nodes().await;
    for node in &nodes {
        let mut conn = cluster().node_connection(&node.addr).await;
        for channel in &channels {
            let payload = format!("via-{}", node.addr);
            let _: i64 = conn.publish(channel, &payload).await.unwrap();
            expected.insert((channel.clone(), payload));
        }
    }
    let received = receive(&mut subscriber, expected.len()).await;
    let received: BTreeSet<_> = received.into_iter().collect();
    assert_eq!(received, expected);

    // Nothing arrived twice: the next message is the next one published.
    subscriber.unsubscribe(&channels[0]).await.unwrap();
    let _: i64 = foo.publish(&channels[0], "gone").await.unwrap();
    let _: i64 = foo.publish(&channels[1], "still").await.unwrap();
    let received = receive(&mut subscriber, 1).await;
    assert_eq!(received, [(channels[1].clone(), "still".to_owned())]);
    drop(request);

    let spans = recorder.commands();
    let names: Vec<&str> = spans.iter().map(|s| s.display_name()).collect();
    assert_eq!(
        names,
        subscription_spans(["SUBSCRIBE", "PUBLISH", "UNSUBSCRIBE"], channels.len())
    );
}

/// How many subscribers the cluster's nodes count for `channel` (`PUBSUB NUMSUB`, summed: each
/// node counts the subscriptions made on it).
async fn subscribers_of(channel: &str) -> i64 {
    let mut total = 0;
    for node in cluster().nodes().await {
        let mut conn = cluster().node_connection(&node.addr).await;
        let (_, count): (String, i64) = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(channel)
            .query_async(&mut conn)
            .await
            .unwrap();
        total += count;
    }
    total
}

#[tokio::test]
async fn unsubscribing_from_no_channel_unsubscribes_from_every_one_as_redis_does() {
    let prefix = unique_prefix("pubsub-all");
    let channels = channel_per_primary(&prefix).await;
    let foo = connection(&[]);
    let mut subscriber = foo.subscriber().await.unwrap();
    subscriber.subscribe(&channels).await.unwrap();
    for channel in &channels {
        assert_eq!(subscribers_of(channel).await, 1, "{channel}");
    }
    subscriber.unsubscribe(Vec::<String>::new()).await.unwrap();
    for channel in &channels {
        assert_eq!(subscribers_of(channel).await, 0, "{channel}");
    }
}

#[tokio::test]
async fn pattern_subscribers_receive_every_matching_channel_and_only_those() {
    let prefix = unique_prefix("pubsub-pattern");
    let channels = channel_per_primary(&format!("{prefix}:in:")).await;
    let mut foo = connection(&[]);
    let mut subscriber = foo.subscriber().await.unwrap();
    subscriber
        .psubscribe(format!("{prefix}:in:*"))
        .await
        .unwrap();

    let _: i64 = foo.publish(format!("{prefix}:out:x"), "no").await.unwrap();
    for channel in &channels {
        let _: i64 = foo.publish(channel, "yes").await.unwrap();
    }
    let deadline = Instant::now() + PATIENCE;
    let mut seen = BTreeSet::new();
    while seen.len() < channels.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        let message = next_within(&mut subscriber, left)
            .await
            .unwrap_or_else(|| panic!("only {seen:?} arrived"));
        let pattern: String = message.get_pattern().unwrap();
        assert_eq!(pattern, format!("{prefix}:in:*"));
        assert_eq!(message.get_payload_bytes(), b"yes");
        seen.insert(message.get_channel_name().to_owned());
    }
    assert_eq!(seen, channels.iter().cloned().collect());
}

#[tokio::test]
async fn sharded_subscribers_receive_spublish_on_every_primary_traced_and_measured() {
    let recorder = SpanRecorder::install();
    let prefix = unique_prefix("pubsub-sharded");
    let channels = channel_per_primary(&prefix).await;
    let metrics = RedisClientMetrics::new();
    let heard = Arc::new(Heard::default());
    let request = tracing::info_span!("request");
    // Reads from replicas (the default): SPUBLISH is still served where the channel lives.
    let mut foo = factory_for(cluster().url(), &[], metrics.clone())
        .make_object_for_context("foo", &request)
        .with_observer(heard.clone());
    let mut subscriber = foo.subscriber().await.unwrap();
    subscriber.ssubscribe(&channels).await.unwrap();
    for (i, channel) in channels.iter().enumerate() {
        // SPUBLISH goes to the channel's primary, where the subscription is (and where the
        // reply counts it).
        let receivers: i64 = foo.spublish(channel, i.to_string()).await.unwrap();
        assert_eq!(receivers, 1, "{channel}");
    }
    let received = receive(&mut subscriber, channels.len()).await;
    let expected: BTreeSet<_> = channels
        .iter()
        .enumerate()
        .map(|(i, c)| (c.clone(), i.to_string()))
        .collect();
    assert_eq!(received.into_iter().collect::<BTreeSet<_>>(), expected);
    subscriber.sunsubscribe(&channels[0]).await.unwrap();
    let receivers: i64 = foo.spublish(&channels[0], "gone").await.unwrap();
    assert_eq!(receivers, 0);
    let _: i64 = foo.spublish(&channels[1], "still").await.unwrap();
    let received = receive(&mut subscriber, 1).await;
    assert_eq!(received, [(channels[1].clone(), "still".to_owned())]);
    drop(request);

    let want = subscription_spans(["SSUBSCRIBE", "SPUBLISH", "SUNSUBSCRIBE"], channels.len());
    let spans = recorder.commands();
    let names: Vec<&str> = spans.iter().map(|s| s.display_name()).collect();
    assert_eq!(names, want);
    let statuses: Vec<Option<&str>> = spans.iter().map(|s| s.field("otel.status_code")).collect();
    assert!(statuses.iter().all(Option::is_none), "{statuses:?}");
    let heard: Vec<(String, bool)> = heard.0.lock().unwrap().clone();
    let heard_names: Vec<&str> = heard.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(heard_names, want);
    assert!(heard.iter().all(|(_, ok)| *ok));

    let mut registry = Registry::default();
    metrics.register(&mut registry);
    let mut text = String::new();
    encode(&mut text, &registry).unwrap();
    for (command, count) in [
        ("ssubscribe", 1),
        ("sunsubscribe", 1),
        ("spublish", channels.len() + 2),
    ] {
        let line = text
            .lines()
            .find(|l| {
                l.starts_with("redis_client_requests_total{")
                    && l.contains(&format!("redis_command=\"{command}\""))
                    && l.contains("redis_success=\"true\"")
            })
            .unwrap_or_else(|| panic!("no {command} series in\n{text}"));
        assert!(line.ends_with(&format!(" {count}")), "{line}");
    }
}

#[tokio::test]
async fn subscribers_have_connections_of_their_own_and_never_hold_up_commands() {
    let prefix = unique_prefix("pubsub-own");
    let channels = channel_per_primary(&prefix).await;
    // One slot for commands: a subscriber holding it would stall every GET below.
    let mut foo = connection(&[("foo.max_connections", "1"), ("foo.timeout", "1 second")]);
    let key = format!("{prefix}key");
    let () = foo.set(&key, "v").await.unwrap();
    let before = foo.pool_stats();
    assert_eq!(before.subscribers, 0);
    let mut first = foo.subscriber().await.unwrap();
    let mut second = foo.subscriber().await.unwrap();
    first.subscribe(&channels).await.unwrap();
    second.ssubscribe(&channels).await.unwrap();
    let stats = foo.pool_stats();
    assert_eq!(stats.subscribers, 2);
    assert_eq!(stats.in_use, 0);
    // Each subscriber keeps a socket to every node, as the shared connection does.
    assert_eq!(stats.open_connections, 3 * before.open_connections);

    // Messages pile up unread while commands keep flowing.
    for channel in &channels {
        let _: i64 = foo.publish(channel, "unread").await.unwrap();
        let _: i64 = foo.spublish(channel, "unread").await.unwrap();
    }
    // Were a subscriber holding the one permit, each GET would fail with a pool timeout.
    for _ in 0..20 {
        let value: String = foo.get(&key).await.unwrap();
        assert_eq!(value, "v");
    }
    assert_eq!(
        receive(&mut first, channels.len()).await.len(),
        channels.len()
    );
    assert_eq!(
        receive(&mut second, channels.len()).await.len(),
        channels.len()
    );

    drop(first);
    assert_eq!(foo.pool_stats().subscribers, 1);
    drop(second);
    let after = foo.pool_stats();
    assert_eq!(after.subscribers, 0);
    assert_eq!(after.open_connections, before.open_connections);
    let _: () = foo.del(&key).await.unwrap();
}

#[tokio::test]
async fn a_subscriber_to_an_unreachable_cluster_fails_naming_the_client() {
    let foo = connection_to(
        "redis://127.0.0.1:1",
        &[("foo.timeout", "200 milliseconds")],
    );
    let started = Instant::now();
    let error = foo.subscriber().await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(
        error.to_string().contains("redis cluster client \"foo\""),
        "{error}"
    );
}

/// The topology tests take turns: each runs a 9-node cluster of its own on a small machine.
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Publishes `channel` a numbered message every 100 ms (classic or sharded) until the subscriber
/// receives one, for at most `within`; returns what arrived first.
async fn publish_until_received(
    foo: &mut MonitoredClusterRedisConnection,
    subscriber: &mut Subscriber,
    channel: &str,
    sharded: bool,
    within: Duration,
) -> Option<String> {
    let deadline = Instant::now() + within;
    let mut n = 0;
    while Instant::now() < deadline {
        n += 1;
        // Failures are expected while the cluster heals.
        let _: redis::RedisResult<i64> = if sharded {
            foo.spublish(channel, n).await
        } else {
            foo.publish(channel, n).await
        };
        if let Some(message) = next_within(subscriber, Duration::from_millis(100)).await
            && message.get_channel_name() == channel
        {
            return Some(String::from_utf8_lossy(message.get_payload_bytes()).into_owned());
        }
    }
    None
}

#[tokio::test]
async fn subscriptions_resume_on_the_promoted_replica_after_their_primary_dies() {
    let _turn = TURN.lock().await;
    let chaos = Arc::new(blocking(|| ChaosCluster::start(Duration::from_millis(1_000))).await);
    let c = Arc::clone(&chaos);
    let (victim, replicas) = blocking(move || {
        let nodes = c.nodes();
        let victim = nodes.iter().find(|n| n.serves_slots()).cloned().unwrap();
        let replicas = victim.replica_ports(&nodes);
        (victim, replicas)
    })
    .await;
    let slot = victim.slots[0].0;
    let classic = name_in_slot("classic", slot);
    let sharded = name_in_slot("sharded", slot);
    let mut foo = connection_to(&chaos.url_with_password(), &[("foo.timeout", "1 second")]);
    let mut subscriber = foo.subscriber().await.unwrap();
    subscriber.subscribe(&classic).await.unwrap();
    subscriber.ssubscribe(&sharded).await.unwrap();
    assert!(
        publish_until_received(&mut foo, &mut subscriber, &sharded, true, PATIENCE)
            .await
            .is_some()
    );
    assert!(
        publish_until_received(&mut foo, &mut subscriber, &classic, false, PATIENCE)
            .await
            .is_some()
    );

    let c = Arc::clone(&chaos);
    let port = victim.port;
    let promoted = blocking(move || {
        c.kill(port);
        let mut promoted = None;
        let settled = wait_until(Duration::from_secs(30), || {
            promoted = c
                .nodes_except(Some(port))
                .into_iter()
                .find(|n| replicas.contains(&n.port) && n.primary && n.serves(slot))
                .map(|n| n.port);
            // The failover is over once the shard's other replicas follow the promoted one: until
            // then a replica holding the sharded subscription may still end it (it learns that
            // its primary lost the slot) and the subscriber takes it elsewhere, missing what is
            // published meanwhile, as the subscriber's docs say. And once the promoted one knows
            // they do: until its own view lists them as its replicas it forwards what `SPUBLISH`
            // gives it to none of them, so a subscription one of them holds receives nothing.
            promoted.is_some_and(|promoted| {
                let others: Vec<u16> = replicas
                    .iter()
                    .copied()
                    .filter(|&r| r != promoted)
                    .collect();
                c.all_ok()
                    && others.iter().all(|&r| {
                        c.replication(r).is_some_and(|info| {
                            info.contains(&format!("master_port:{promoted}\r\n"))
                                && info.contains("master_link_status:up")
                        })
                    })
                    && cluster_nodes(promoted).is_ok_and(|nodes| {
                        nodes.iter().find(|n| n.myself).is_some_and(|me| {
                            let followers = me.replica_ports(&nodes);
                            others.iter().all(|r| followers.contains(r))
                        })
                    })
            })
        });
        settled.and(promoted)
    })
    .await;
    assert!(
        promoted.is_some(),
        "no replica of {port} was promoted, followed by the others and known to lead them"
    );

    let within = Duration::from_secs(15);
    assert!(
        publish_until_received(&mut foo, &mut subscriber, &sharded, true, within)
            .await
            .is_some(),
        "the sharded subscription did not resume on 127.0.0.1:{}",
        promoted.unwrap()
    );
    assert!(
        publish_until_received(&mut foo, &mut subscriber, &classic, false, within)
            .await
            .is_some(),
        "the classic subscription did not resume"
    );
    // Messages come in order only along one path, from one node's connection: wait until the
    // subscription is held by one node (after a failover it may for a while be held by two, as
    // the subscriber's docs say).
    let c = Arc::clone(&chaos);
    let channel = sharded.clone();
    let holders = blocking(move || {
        let mut holders = Vec::new();
        wait_until(PATIENCE, || {
            holders = shard_subscribers(&c, &channel);
            held_once(&holders)
        });
        holders
    })
    .await;
    assert!(
        held_once(&holders),
        "the sharded subscription is not held by exactly one node: {holders:?}"
    );
    // And publish through a client that never knew the dead primary. `foo` may still route by
    // the topology it read before: while it has no connection to the slot's primary it sends
    // `SPUBLISH` to another node it reaches, and a replica of the shard serves it and forwards
    // it over the cluster bus, overtaking or overtaken by the messages the promoted primary
    // receives directly.
    let promoted = promoted.unwrap();
    let mut publisher = connection_to(
        &format!("redis://{USER}:{PASSWORD}@127.0.0.1:{promoted}"),
        &[("foo.timeout", "1 second")],
    );
    // Once resumed, every message arrives, once.
    let mut expected = Vec::new();
    for i in 0..20 {
        let _: i64 = publisher
            .spublish(&sharded, format!("after-{i}"))
            .await
            .unwrap();
        expected.push((sharded.clone(), format!("after-{i}")));
    }
    // In order and once each.
    let received = after_messages_until_end(&mut publisher, &mut subscriber, &sharded).await;
    assert_eq!(received, expected);
}

/// `(port, subscribers)` of `channel`'s sharded subscriptions on every live node
/// (`PUBSUB SHARDNUMSUB`); `None` for a node that gives no count (it errs, or is not up yet).
fn shard_subscribers(chaos: &ChaosCluster, channel: &str) -> Vec<(u16, Option<u64>)> {
    chaos
        .ports()
        .into_iter()
        .filter(|&port| chaos.is_alive(port))
        .map(|port| {
            let count = redis_cli(port, &["PUBSUB", "SHARDNUMSUB", channel])
                .ok()
                .and_then(|reply| reply.lines().nth(1)?.trim().parse().ok());
            (port, count)
        })
        .collect()
}

/// Whether every node gave its count and exactly one holds the subscription.
fn held_once(holders: &[(u16, Option<u64>)]) -> bool {
    let counts: Option<Vec<u64>> = holders.iter().map(|&(_, count)| count).collect();
    counts.is_some_and(|counts| counts.iter().sum::<u64>() == 1)
}

/// Publishes an end marker to `channel` (after the caller's `after-N` messages, on the same
/// node, so it arrives after them) and receives until it came; returns the `after-` messages,
/// dropping those published before them (numbered messages of the wait for recovery).
async fn after_messages_until_end(
    foo: &mut MonitoredClusterRedisConnection,
    subscriber: &mut Subscriber,
    channel: &str,
) -> Vec<(String, String)> {
    let _: i64 = foo.spublish(channel, "end").await.unwrap();
    let deadline = Instant::now() + PATIENCE;
    let mut received = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Some(message) = next_within(subscriber, left).await else {
            panic!("the end marker never came; {received:?} did");
        };
        let item = (
            message.get_channel_name().to_owned(),
            String::from_utf8_lossy(message.get_payload_bytes()).into_owned(),
        );
        if item.0 == channel && item.1 == "end" {
            return received;
        }
        if item.1.starts_with("after-") {
            received.push(item);
        }
    }
}

#[tokio::test]
async fn sharded_subscriptions_follow_their_slot_to_another_primary() {
    let _turn = TURN.lock().await;
    let chaos = Arc::new(blocking(|| ChaosCluster::start(Duration::from_millis(2_000))).await);
    let c = Arc::clone(&chaos);
    let (from, to) = blocking(move || {
        let primaries: Vec<_> = c.nodes().into_iter().filter(|n| n.serves_slots()).collect();
        (primaries[0].clone(), primaries[1].clone())
    })
    .await;
    // redis-cli moves slots from the start of the source's ranges: subscribe to the first ones.
    // Many of them: as each slot leaves, its old owner ends the subscription in it with a push
    // that redis-rs may take for the reply to a command in flight on that node, a topology
    // refresh's among them, which then leaves the subscriber's connection without a node. With
    // 200 moves it is all but certain to happen.
    let moved = 200;
    let slots: Vec<u16> = (from.slots[0].0..).take(moved).collect();
    let channels: Vec<String> = slots.iter().map(|&s| name_in_slot("moving", s)).collect();
    let mut foo = connection_to(&chaos.url_with_password(), &[("foo.timeout", "1 second")]);
    let mut subscriber = foo.subscriber().await.unwrap();
    subscriber.ssubscribe(&channels).await.unwrap();
    for channel in &channels {
        let receivers: i64 = foo.spublish(channel, "before").await.unwrap();
        assert_eq!(receivers, 1);
    }
    assert_eq!(
        receive(&mut subscriber, channels.len()).await.len(),
        channels.len()
    );

    let c = Arc::clone(&chaos);
    let (from_id, to_id) = (from.id.clone(), to.id.clone());
    let owners = blocking(move || {
        c.reshard(&from_id, &to_id, moved).unwrap();
        c.slot_owners()
    })
    .await;
    let now_on_target: Vec<&String> = channels
        .iter()
        .zip(&slots)
        .filter(|&(_, &slot)| owners[usize::from(slot)] == to.port)
        .map(|(c, _)| c)
        .collect();
    assert_eq!(
        now_on_target.len(),
        moved,
        "the slots did not move: {slots:?}"
    );

    // Each channel receives again once the subscriber has followed its slot.
    for channel in &channels {
        assert!(
            publish_until_received(&mut foo, &mut subscriber, channel, true, PATIENCE)
                .await
                .is_some(),
            "{channel} received nothing after its slot moved to 127.0.0.1:{}",
            to.port
        );
    }
    let mut expected = Vec::new();
    for (i, channel) in channels.iter().enumerate() {
        let receivers: i64 = foo.spublish(channel, format!("after-{i}")).await.unwrap();
        assert_eq!(
            receivers, 1,
            "{channel} is subscribed on its new primary exactly once"
        );
        expected.push((channel.clone(), format!("after-{i}")));
    }
    // In order (all on the new primary) and once each.
    let last = channels.last().unwrap();
    let received = after_messages_until_end(&mut foo, &mut subscriber, last).await;
    assert_eq!(received, expected);
}

#[tokio::test]
async fn refused_subscriptions_fail_naming_the_client_and_the_channel() {
    let prefix = unique_prefix("pubsub-refused");
    // A user who may run every command but use no channel.
    let user = prefix.replace(':', "-");
    for node in cluster().nodes().await {
        let mut conn = cluster().node_connection(&node.addr).await;
        let () = redis::cmd("ACL")
            .arg(
                &[
                    "SETUSER",
                    &user,
                    "on",
                    ">pw",
                    "~*",
                    "+@all",
                    "resetchannels",
                ][..],
            )
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    let url = cluster()
        .url()
        .replace("redis://", &format!("redis://{user}:pw@"));
    let foo = factory_for(&url, &[], RedisClientMetrics::new())
        .make_object_for_context("foo", &tracing::Span::none());
    let mut subscriber = foo.subscriber().await.unwrap();
    let channel = format!("{prefix}news");
    let pattern = format!("{channel}*");
    for (error, command, name) in [
        (
            subscriber.subscribe(&channel).await.unwrap_err(),
            "SUBSCRIBE",
            &channel,
        ),
        (
            subscriber.ssubscribe(&channel).await.unwrap_err(),
            "SSUBSCRIBE",
            &channel,
        ),
        (
            subscriber.psubscribe(&pattern).await.unwrap_err(),
            "PSUBSCRIBE",
            &pattern,
        ),
    ] {
        assert_eq!(
            error.kind(),
            redis::ErrorKind::Server(redis::ServerErrorKind::NoPerm)
        );
        let text = error.to_string();
        assert!(
            text.contains(&format!(
                "redis cluster client \"foo\": {command} {name:?} refused"
            )),
            "{text}"
        );
        assert!(text.contains("no permissions"), "{text}");
    }
    // Nothing refused is subscribed again behind the caller's back, and the subscriber still
    // works for what it may use.
    assert!(format!("{subscriber:?}").contains("channels: 0, patterns: 0, shard_channels: 0"));
    for node in cluster().nodes().await {
        let mut conn = cluster().node_connection(&node.addr).await;
        let _: i64 = redis::cmd("ACL")
            .arg(&["DELUSER", &user][..])
            .query_async(&mut conn)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn a_subscription_whose_call_ran_out_of_time_may_still_take_effect() {
    let _turn = TURN.lock().await;
    // A node timeout far longer than the freeze: nothing fails over.
    let chaos = Arc::new(blocking(|| ChaosCluster::start(Duration::from_secs(60))).await);
    let c = Arc::clone(&chaos);
    let frozen = blocking(move || c.nodes().into_iter().find(|n| n.serves_slots()).unwrap()).await;
    let channel = name_in_slot("late", frozen.slots[0].0);
    let mut foo = connection_to(
        &chaos.url_with_password(),
        &[("foo.timeout", "300 milliseconds")],
    );
    let mut subscriber = foo.subscriber().await.unwrap();

    let c = Arc::clone(&chaos);
    let port = frozen.port;
    blocking(move || c.pause(port)).await;
    let error = subscriber.subscribe(&channel).await.unwrap_err();
    assert!(error.is_timeout(), "{error}");
    assert!(error.to_string().contains(&channel), "{error}");
    let c = Arc::clone(&chaos);
    blocking(move || c.resume(port)).await;

    // The command reached the node before the call gave up: it subscribes once the node runs.
    let received = publish_until_received(&mut foo, &mut subscriber, &channel, false, PATIENCE)
        .await
        .expect("the subscription that timed out took effect");
    assert!(received.parse::<u32>().is_ok(), "{received}");
    subscriber.unsubscribe(&channel).await.unwrap();
}
