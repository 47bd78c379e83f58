//! The hot-key tracker on a real cluster: exact scores in both modes, TTL, trimming, binary keys, a broken
//! tracker set that never troubles the user's commands, rate 0, and what each mode sends. On a
//! cluster of this binary's own: the tests empty, trim and break the tracker's global sets.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use baseplate_hotkeys::{
    HotKeyTracker, SET_TTL_SECONDS, TrackKeyMode, TrackedSet, TrackerOptions, top_keys,
};
use integration::{own_cluster, unique_prefix};
use redis::AsyncCommands as _;
use redis::cluster_async::ClusterConnection;
use tokio::sync::{Mutex, MutexGuard};

/// The tracker's sets have global names, so the tests that use them take turns.
static SETS: Mutex<()> = Mutex::const_new(());

/// Takes the sets for this test and empties them.
async fn take_sets(conn: &mut ClusterConnection) -> MutexGuard<'static, ()> {
    let guard = SETS.lock().await;
    for set in TrackedSet::ALL {
        let _: () = conn.del(set.key()).await.unwrap();
    }
    guard
}

async fn start(options: TrackerOptions) -> HotKeyTracker {
    HotKeyTracker::start(own_cluster().connection().await, options).unwrap()
}

fn sample_all(mode: TrackKeyMode) -> TrackerOptions {
    TrackerOptions::default()
        .with_reads_sample_rate(1.0)
        .with_writes_sample_rate(1.0)
        .with_mode(mode)
}

/// Runs `cmd` as a user would, then lets the tracker see it.
async fn run_and_observe<T: redis::FromRedisValue>(
    conn: &mut ClusterConnection,
    tracker: &HotKeyTracker,
    cmd: &redis::Cmd,
) -> T {
    let reply = cmd.query_async(conn).await.unwrap();
    tracker.observe(cmd);
    reply
}

/// This test's members of `set` (the binary's other tests leave theirs behind), with their scores.
async fn members_with_prefix(
    conn: &mut ClusterConnection,
    set: TrackedSet,
    prefix: &[u8],
) -> Vec<(Vec<u8>, f64)> {
    let mut members = top_keys(conn, set, 100_000).await.unwrap();
    members.retain(|(key, _)| key.starts_with(prefix));
    members
}

#[tokio::test]
async fn every_get_at_rate_one_scores_exactly_in_both_modes() {
    let mut conn = own_cluster().connection().await;
    let _sets = take_sets(&mut conn).await;
    for mode in [TrackKeyMode::Aggregated, TrackKeyMode::Direct] {
        for set in TrackedSet::ALL {
            let _: () = conn.del(set.key()).await.unwrap();
        }
        let prefix = unique_prefix(&format!("hotkeys-exact-{mode}"));
        let tracker = start(sample_all(mode)).await;
        let keys: Vec<String> = (0..5).map(|i| format!("{prefix}{i}")).collect();
        for key in &keys {
            let () =
                run_and_observe(&mut conn, &tracker, redis::cmd("SET").arg(key).arg("v")).await;
        }
        for (i, key) in keys.iter().enumerate() {
            for _ in 0..=i {
                let value: Option<String> =
                    run_and_observe(&mut conn, &tracker, redis::cmd("GET").arg(key)).await;
                assert_eq!(value.as_deref(), Some("v"));
            }
        }
        tracker.flush().await;

        let reads = members_with_prefix(&mut conn, TrackedSet::Reads, prefix.as_bytes()).await;
        let expected: Vec<(Vec<u8>, f64)> = keys
            .iter()
            .enumerate()
            .rev()
            .map(|(i, key)| (key.clone().into_bytes(), (i + 1) as f64))
            .collect();
        assert_eq!(reads, expected, "{mode}");
        let mut writes =
            members_with_prefix(&mut conn, TrackedSet::Writes, prefix.as_bytes()).await;
        writes.sort_by(|a, b| a.0.cmp(&b.0));
        let expected: Vec<(Vec<u8>, f64)> =
            keys.iter().map(|k| (k.clone().into_bytes(), 1.0)).collect();
        assert_eq!(writes, expected, "{mode}");
        assert_eq!(tracker.stats().failures, 0, "{mode}");
        tracker.shutdown().await;
        own_cluster().delete(&keys).await;
    }
}

#[tokio::test]
async fn both_sets_live_for_a_day() {
    let mut conn = own_cluster().connection().await;
    let _sets = take_sets(&mut conn).await;
    let prefix = unique_prefix("hotkeys-ttl");
    for mode in [TrackKeyMode::Aggregated, TrackKeyMode::Direct] {
        let tracker = start(sample_all(mode)).await;
        let key = format!("{prefix}{mode}");
        let () = run_and_observe(&mut conn, &tracker, redis::cmd("SET").arg(&key).arg(1)).await;
        let _: Option<String> =
            run_and_observe(&mut conn, &tracker, redis::cmd("GET").arg(&key)).await;
        tracker.shutdown().await;
        for set in TrackedSet::ALL {
            let ttl: i64 = conn.ttl(set.key()).await.unwrap();
            let day = i64::try_from(SET_TTL_SECONDS).unwrap();
            assert!(
                (day - 60..=day).contains(&ttl),
                "{mode}: TTL of {set} is {ttl}"
            );
        }
        own_cluster().delete(&[key]).await;
    }
}

#[tokio::test]
async fn an_aggregated_flush_trims_the_set_to_max_keys() {
    let mut conn = own_cluster().connection().await;
    let _sets = take_sets(&mut conn).await;
    let prefix = unique_prefix("hotkeys-trim");
    let reads = TrackedSet::Reads.key();
    // Twenty members already there, scored 1 to 20.
    for i in 1..=20 {
        let _: () = conn
            .zadd(reads, format!("{prefix}old:{i}"), i)
            .await
            .unwrap();
    }
    let tracker = start(sample_all(TrackKeyMode::Aggregated).with_max_keys(5)).await;
    let hot = format!("{prefix}hot");
    for _ in 0..100 {
        let _: Option<String> =
            run_and_observe(&mut conn, &tracker, redis::cmd("GET").arg(&hot)).await;
    }
    tracker.flush().await;

    let card: usize = conn.zcard(reads).await.unwrap();
    assert_eq!(card, 5);
    let members = members_with_prefix(&mut conn, TrackedSet::Reads, prefix.as_bytes()).await;
    let expected: Vec<(Vec<u8>, f64)> = std::iter::once((hot.into_bytes(), 100.0))
        .chain(
            (17..=20)
                .rev()
                .map(|i| (format!("{prefix}old:{i}").into_bytes(), f64::from(i))),
        )
        .collect();
    assert_eq!(members, expected);
    tracker.shutdown().await;
}

#[tokio::test]
async fn binary_keys_round_trip_through_the_sets() {
    let mut conn = own_cluster().connection().await;
    let _sets = take_sets(&mut conn).await;
    for mode in [TrackKeyMode::Aggregated, TrackKeyMode::Direct] {
        let prefix = unique_prefix(&format!("hotkeys-binary-{mode}"));
        let mut key = prefix.clone().into_bytes();
        key.extend_from_slice(b"\xff\x00\n\xc3(");
        let tracker = start(sample_all(mode)).await;
        let () = run_and_observe(
            &mut conn,
            &tracker,
            redis::cmd("SET").arg(&key).arg(b"\x80"),
        )
        .await;
        let value: Vec<u8> =
            run_and_observe(&mut conn, &tracker, redis::cmd("GET").arg(&key)).await;
        assert_eq!(value, b"\x80");
        tracker.flush().await;
        for set in TrackedSet::ALL {
            let members = members_with_prefix(&mut conn, set, prefix.as_bytes()).await;
            assert_eq!(members, [(key.clone(), 1.0)], "{mode} {set}");
        }
        tracker.shutdown().await;
        let _: () = conn.del(&key).await.unwrap();
    }
}

#[tokio::test]
async fn a_tracker_set_of_the_wrong_type_never_troubles_user_commands() {
    let mut conn = own_cluster().connection().await;
    let _sets = take_sets(&mut conn).await;
    let prefix = unique_prefix("hotkeys-wrongtype");
    let key = format!("{prefix}k");
    let _: () = conn.set(&key, "v").await.unwrap();
    for mode in [TrackKeyMode::Aggregated, TrackKeyMode::Direct] {
        // Someone turned the reads set into a string: every ZINCRBY on it fails with WRONGTYPE.
        let _: () = conn
            .set(TrackedSet::Reads.key(), "not a sorted set")
            .await
            .unwrap();
        let tracker = start(sample_all(mode)).await;
        let mut observing = Duration::ZERO;
        for _ in 0..200 {
            let value: Option<String> = redis::cmd("GET")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .unwrap();
            assert_eq!(
                value.as_deref(),
                Some("v"),
                "{mode}: the user's command succeeds"
            );
            let started = Instant::now();
            tracker.observe(redis::cmd("GET").arg(&key));
            observing += started.elapsed();
        }
        // observe() only hands the sample over; 200 calls take microseconds, never a round trip each.
        assert!(
            observing < Duration::from_millis(200),
            "{mode}: observe took {observing:?}"
        );
        tracker.flush().await;
        let stats = tracker.stats();
        assert!(stats.failures >= 1, "{mode}: {stats:?}");
        assert_eq!(stats.sampled, 200, "{mode}");
        // The user's commands still work after the failures, and the set is still the string.
        let value: Option<String> = conn.get(&key).await.unwrap();
        assert_eq!(value.as_deref(), Some("v"));
        let kind: String = redis::cmd("TYPE")
            .arg(TrackedSet::Reads.key())
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(kind, "string");
        tracker.shutdown().await;
    }
    let _: () = conn.del(TrackedSet::Reads.key()).await.unwrap();
    own_cluster().delete(&[key]).await;
}

#[tokio::test]
async fn rate_zero_writes_nothing() {
    let mut conn = own_cluster().connection().await;
    let _sets = take_sets(&mut conn).await;
    let prefix = unique_prefix("hotkeys-rate-zero");
    let key = format!("{prefix}k");
    for mode in [TrackKeyMode::Aggregated, TrackKeyMode::Direct] {
        let tracker = start(TrackerOptions::default().with_mode(mode)).await;
        for _ in 0..100 {
            let () = run_and_observe(&mut conn, &tracker, redis::cmd("SET").arg(&key).arg(1)).await;
            let _: Option<String> =
                run_and_observe(&mut conn, &tracker, redis::cmd("GET").arg(&key)).await;
        }
        tracker.flush().await;
        tracker.shutdown().await;
        assert_eq!(tracker.stats().sampled, 0);
        for set in TrackedSet::ALL {
            let exists: bool = conn.exists(set.key()).await.unwrap();
            assert!(!exists, "{mode}: {set} was written");
        }
    }
    own_cluster().delete(&[key]).await;
}

#[tokio::test]
async fn aggregated_mode_sends_one_round_trip_where_direct_sends_one_per_get() {
    let mut conn = own_cluster().connection().await;
    let _sets = take_sets(&mut conn).await;
    let mut scores = Vec::new();
    let mut stats = Vec::new();
    for mode in [TrackKeyMode::Direct, TrackKeyMode::Aggregated] {
        for set in TrackedSet::ALL {
            let _: () = conn.del(set.key()).await.unwrap();
        }
        let prefix = unique_prefix("hotkeys-cost");
        let tracker = start(
            TrackerOptions::default()
                .with_reads_sample_rate(1.0)
                .with_mode(mode)
                .with_queue_capacity(1000),
        )
        .await;
        for i in 0..1000 {
            let key = format!("{prefix}{}", i % 10);
            let _: Option<String> =
                run_and_observe(&mut conn, &tracker, redis::cmd("GET").arg(&key)).await;
        }
        tracker.shutdown().await;
        let members = members_with_prefix(&mut conn, TrackedSet::Reads, prefix.as_bytes()).await;
        scores.push(members.iter().map(|(_, s)| *s).collect::<Vec<_>>());
        stats.push(tracker.stats());
    }
    let (direct, aggregated) = (stats[0], stats[1]);
    assert_eq!(
        (direct.sampled, direct.dropped, direct.failures),
        (1000, 0, 0)
    );
    assert_eq!((direct.commands_sent, direct.round_trips), (2000, 1000));
    assert_eq!(
        (aggregated.sampled, aggregated.dropped, aggregated.failures),
        (1000, 0, 0)
    );
    assert_eq!((aggregated.commands_sent, aggregated.round_trips), (12, 1));
    assert_eq!(scores[0], vec![100.0; 10]);
    assert_eq!(scores[0], scores[1], "both modes record the same scores");
}

/// The wiring: the client's config keys choose the rates and the mode, and the monitored
/// connection and its pipelines feed the tracker exactly the commands that ran.
#[tokio::test]
async fn the_monitored_client_feeds_its_tracker_from_config() {
    let mut conn = own_cluster().connection().await;
    let _sets = take_sets(&mut conn).await;
    for mode in ["direct", "aggregated"] {
        for set in TrackedSet::ALL {
            let _: () = conn.del(set.key()).await.unwrap();
        }
        let prefix = unique_prefix(&format!("hotkeys-wired-{mode}"));
        let config: baseplate_config::RawConfig = [
            ("foo.url", own_cluster().url()),
            // A read right after a write may reach a replica that has not applied it yet.
            ("foo.read_from_replicas", "false"),
            ("foo.track_key_reads_sample_rate", "1"),
            ("foo.track_key_writes_sample_rate", "1"),
            ("foo.track_key_mode", mode),
        ]
        .into_iter()
        .collect();
        let factory = baseplate_redis_cluster::ClusterRedisClient::new()
            .parse("foo", &config)
            .unwrap();
        assert_eq!(factory.tracker().mode().to_string(), mode);
        let mut foo = factory.make_object_for_context("foo", &tracing::Span::none());

        let (a, b) = (format!("{prefix}a"), format!("{prefix}{{x}}b"));
        let () = foo.set(&a, 1).await.unwrap();
        for _ in 0..3 {
            let _: i64 = foo.get(&a).await.unwrap();
        }
        let mut pipe = foo.pipeline("p");
        pipe.get(&a).set(&b, 2);
        let _: (i64, ()) = pipe.query_async().await.unwrap();
        // A transaction refused before anything was sent ran nothing, so tracks nothing.
        let mut refused = foo.transaction("t");
        refused.get(&b).get(format!("{prefix}elsewhere"));
        refused.query_async::<()>().await.unwrap_err();

        factory.tracker().flush().await;
        let reads = members_with_prefix(&mut conn, TrackedSet::Reads, prefix.as_bytes()).await;
        let writes = members_with_prefix(&mut conn, TrackedSet::Writes, prefix.as_bytes()).await;
        assert_eq!(reads, [(a.clone().into_bytes(), 4.0)], "{mode}");
        let mut writes = writes;
        writes.sort_by(|x, y| x.0.cmp(&y.0));
        assert_eq!(
            writes,
            [(a.clone().into_bytes(), 1.0), (b.clone().into_bytes(), 1.0)],
            "{mode}"
        );
        // The tracker's own ZINCRBYs and EXPIREs are never tracked as writes.
        let all_writes = top_keys(&mut conn, TrackedSet::Writes, 100_000)
            .await
            .unwrap();
        assert!(
            all_writes
                .iter()
                .all(|(key, _)| !key.starts_with(b"baseplate-hot-key-tracker")),
            "{all_writes:?}"
        );
        factory.tracker().shutdown().await;
        own_cluster().delete(&[a, b]).await;
    }
}
