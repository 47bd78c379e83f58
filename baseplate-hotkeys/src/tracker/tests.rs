//! Unit tests of the tracker against an in-memory connection that records what the tracker sends.

use std::sync::Mutex;
use std::time::Duration;

use rand::SeedableRng as _;
use rand::rngs::SmallRng;
use redis::{ErrorKind, RedisError, RedisFuture, Value};
use tokio::time::Instant;

use super::*;
use crate::seed_thread_rng;

/// What the fake connection answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Ok,
    Fail,
    Never,
}

/// A command as its arguments.
type Args = Vec<Vec<u8>>;

/// A connection that records every pipeline (as argument lists) and answers as told.
#[derive(Clone)]
struct FakeConn {
    sent: Arc<Mutex<Vec<Vec<Args>>>>,
    answer: Answer,
}

impl FakeConn {
    fn new(answer: Answer) -> Self {
        Self {
            sent: Arc::default(),
            answer,
        }
    }

    /// Pipelines sent so far, each command as a space-joined line.
    fn pipelines(&self) -> Vec<Vec<String>> {
        self.sent
            .lock()
            .unwrap()
            .iter()
            .map(|pipe| {
                pipe.iter()
                    .map(|cmd| {
                        cmd.iter()
                            .map(|a| crate::report::escape_key(a))
                            .collect::<Vec<_>>()
                            .join(" ")
                    })
                    .collect()
            })
            .collect()
    }

    /// Pipelines sorted, so concurrent sends compare deterministically.
    fn sorted_pipelines(&self) -> Vec<Vec<String>> {
        let mut p = self.pipelines();
        p.sort();
        p
    }
}

impl redis::aio::ConnectionLike for FakeConn {
    fn req_packed_command<'a>(&'a mut self, _cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async { Ok(Value::Okay) })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        _offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        let cmds = pipeline
            .cmd_iter()
            .map(|cmd| {
                cmd.args_iter()
                    .map(|a| match a {
                        Arg::Simple(a) => a.to_vec(),
                        _ => Vec::new(),
                    })
                    .collect()
            })
            .collect();
        self.sent.lock().unwrap().push(cmds);
        match self.answer {
            Answer::Ok => Box::pin(async move { Ok(vec![Value::Int(1); count]) }),
            Answer::Fail => {
                Box::pin(async { Err(RedisError::from((ErrorKind::Io, "connection refused"))) })
            }
            Answer::Never => Box::pin(std::future::pending()),
        }
    }

    fn get_db(&self) -> i64 {
        0
    }
}

fn all(mode: TrackKeyMode) -> TrackerOptions {
    TrackerOptions::default()
        .with_reads_sample_rate(1.0)
        .with_writes_sample_rate(1.0)
        .with_mode(mode)
}

fn cmd(line: &str) -> Cmd {
    let mut words = line.split(' ');
    let mut cmd = redis::cmd(words.next().unwrap());
    for w in words {
        cmd.arg(w);
    }
    cmd
}

fn lines(text: &[&str]) -> Vec<String> {
    text.iter().map(|s| (*s).to_owned()).collect()
}

/// Asks `ready` every 10 ms until it holds; fails the test naming `what` after ten seconds.
async fn within_ten_seconds(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ready() {
        assert!(Instant::now() < deadline, "no {what} within 10 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

const READS: &str = "baseplate-hot-key-tracker-reads";
const WRITES: &str = "baseplate-hot-key-tracker-writes";

#[tokio::test]
async fn aggregated_mode_flushes_one_pipeline_per_set_with_counts() {
    let conn = FakeConn::new(Answer::Ok);
    let tracker = HotKeyTracker::start(conn.clone(), all(TrackKeyMode::Aggregated)).unwrap();
    for line in [
        "GET a", "GET a", "GET a", "GET b", "SET w 1", "SET w 2", "MGET a c",
    ] {
        tracker.observe(&cmd(line));
    }
    assert!(
        conn.pipelines().is_empty(),
        "nothing is sent before a flush"
    );
    tracker.flush().await;
    assert_eq!(
        conn.sorted_pipelines(),
        [
            lines(&[
                &format!("ZINCRBY {READS} 4 a"),
                &format!("ZINCRBY {READS} 1 b"),
                &format!("ZINCRBY {READS} 1 c"),
                &format!("EXPIRE {READS} 86400"),
                &format!("ZREMRANGEBYRANK {READS} 0 -10001"),
            ]),
            lines(&[
                &format!("ZINCRBY {WRITES} 2 w"),
                &format!("EXPIRE {WRITES} 86400"),
                &format!("ZREMRANGEBYRANK {WRITES} 0 -10001"),
            ]),
        ]
    );
    let stats = tracker.stats();
    assert_eq!(
        (
            stats.sampled,
            stats.dropped,
            stats.commands_sent,
            stats.round_trips,
            stats.failures
        ),
        (7, 0, 8, 2, 0)
    );

    // The interval's counts are gone: a second flush sends nothing.
    tracker.flush().await;
    assert_eq!(conn.pipelines().len(), 2);
    tracker.observe(&cmd("GET a"));
    tracker.flush().await;
    assert_eq!(
        conn.pipelines().last().unwrap()[0],
        format!("ZINCRBY {READS} 1 a")
    );
}

#[tokio::test]
async fn direct_mode_sends_baseplates_pipeline_per_sampled_command() {
    let conn = FakeConn::new(Answer::Ok);
    let tracker = HotKeyTracker::start(conn.clone(), all(TrackKeyMode::Direct)).unwrap();
    tracker.observe(&cmd("GET a"));
    tracker.observe(&cmd("MGET b a b"));
    tracker.observe(&cmd("DEL x"));
    tracker.flush().await;
    assert_eq!(
        conn.sorted_pipelines(),
        [
            lines(&[
                &format!("ZINCRBY {READS} 1 a"),
                &format!("EXPIRE {READS} 86400")
            ]),
            lines(&[
                &format!("ZINCRBY {READS} 1 a"),
                &format!("ZINCRBY {READS} 1 b"),
                &format!("EXPIRE {READS} 86400"),
            ]),
            lines(&[
                &format!("ZINCRBY {WRITES} 1 x"),
                &format!("EXPIRE {WRITES} 86400")
            ]),
        ]
    );
    let stats = tracker.stats();
    assert_eq!(
        (stats.sampled, stats.commands_sent, stats.round_trips),
        (3, 7, 3)
    );
}

#[tokio::test]
async fn aggregated_mode_sends_a_constant_number_of_commands_for_many_gets() {
    let direct = FakeConn::new(Answer::Ok);
    let aggregated = FakeConn::new(Answer::Ok);
    let d = HotKeyTracker::start(
        direct.clone(),
        all(TrackKeyMode::Direct).with_queue_capacity(2000),
    )
    .unwrap();
    let a = HotKeyTracker::start(
        aggregated.clone(),
        all(TrackKeyMode::Aggregated).with_queue_capacity(2000),
    )
    .unwrap();
    for i in 0..1000 {
        let get = cmd(&format!("GET key:{}", i % 10));
        d.observe(&get);
        a.observe(&get);
    }
    d.flush().await;
    a.flush().await;
    let (d, a) = (d.stats(), a.stats());
    assert_eq!(
        (d.sampled, d.dropped, d.commands_sent, d.round_trips),
        (1000, 0, 2000, 1000)
    );
    assert_eq!(
        (a.sampled, a.dropped, a.commands_sent, a.round_trips),
        (1000, 0, 12, 1)
    );
    assert_eq!(
        aggregated.pipelines()[0][0],
        format!("ZINCRBY {READS} 100 key:0")
    );
}

#[tokio::test]
async fn a_flush_writes_at_most_max_keys_and_trims_to_them() {
    let conn = FakeConn::new(Answer::Ok);
    let tracker =
        HotKeyTracker::start(conn.clone(), all(TrackKeyMode::Aggregated).with_max_keys(2)).unwrap();
    for (key, n) in [("a", 5), ("b", 4), ("c", 3), ("d", 2), ("e", 1)] {
        for _ in 0..n {
            tracker.observe(&cmd(&format!("GET {key}")));
        }
    }
    tracker.flush().await;
    assert_eq!(
        conn.pipelines(),
        [lines(&[
            &format!("ZINCRBY {READS} 5 a"),
            &format!("ZINCRBY {READS} 4 b"),
            &format!("EXPIRE {READS} 86400"),
            &format!("ZREMRANGEBYRANK {READS} 0 -3"),
        ])]
    );
}

#[tokio::test]
async fn the_interval_timer_flushes_without_being_asked() {
    let conn = FakeConn::new(Answer::Ok);
    let tracker = HotKeyTracker::start(
        conn.clone(),
        all(TrackKeyMode::Aggregated).with_flush_interval(Duration::from_millis(50)),
    )
    .unwrap();
    tracker.observe(&cmd("INCR counter"));
    within_ten_seconds("a flush", || !conn.pipelines().is_empty()).await;
    assert_eq!(
        conn.pipelines()[0][0],
        format!("ZINCRBY {WRITES} 1 counter")
    );
}

#[tokio::test]
async fn keys_count_once_per_sampled_command_and_by_direction() {
    let conn = FakeConn::new(Answer::Ok);
    let tracker = HotKeyTracker::start(conn.clone(), all(TrackKeyMode::Aggregated)).unwrap();
    tracker.observe(&cmd("MGET a a a"));
    tracker.observe(&cmd("MSET a 1 a 2"));
    tracker.observe(&cmd("COPY src dst"));
    tracker.flush().await;
    assert_eq!(
        conn.sorted_pipelines(),
        [
            lines(&[
                &format!("ZINCRBY {READS} 1 a"),
                &format!("ZINCRBY {READS} 1 src"),
                &format!("EXPIRE {READS} 86400"),
                &format!("ZREMRANGEBYRANK {READS} 0 -10001"),
            ]),
            lines(&[
                &format!("ZINCRBY {WRITES} 1 a"),
                &format!("ZINCRBY {WRITES} 1 dst"),
                &format!("EXPIRE {WRITES} 86400"),
                &format!("ZREMRANGEBYRANK {WRITES} 0 -10001"),
            ]),
        ]
    );
    assert_eq!(
        tracker.stats().sampled,
        4,
        "COPY is sampled in both directions"
    );
}

#[tokio::test]
async fn pipelines_are_observed_command_by_command() {
    let conn = FakeConn::new(Answer::Ok);
    let tracker = HotKeyTracker::start(conn.clone(), all(TrackKeyMode::Direct)).unwrap();
    let mut pipe = redis::pipe();
    pipe.get("a").set("b", 1).cmd("PING");
    tracker.observe_pipeline(&pipe);
    tracker.flush().await;
    assert_eq!(tracker.stats().sampled, 2);
    assert_eq!(conn.pipelines().len(), 2);
}

#[tokio::test]
async fn binary_keys_reach_redis_byte_for_byte() {
    let conn = FakeConn::new(Answer::Ok);
    let tracker = HotKeyTracker::start(conn.clone(), all(TrackKeyMode::Aggregated)).unwrap();
    let key: &[u8] = b"\xff\x00bin";
    tracker.observe(redis::cmd("GET").arg(key));
    tracker.flush().await;
    let sent = conn.sent.lock().unwrap().clone();
    assert_eq!(
        sent[0][0],
        [
            b"ZINCRBY".to_vec(),
            READS.into(),
            b"1".to_vec(),
            key.to_vec()
        ]
    );
}

#[tokio::test]
async fn unknown_commands_and_commands_without_keys_are_not_sampled() {
    let conn = FakeConn::new(Answer::Ok);
    let tracker = HotKeyTracker::start(conn.clone(), all(TrackKeyMode::Direct)).unwrap();
    for line in ["PING", "GET", "CLUSTER INFO", "MSET lonely", "ZUNION x a"] {
        tracker.observe(&cmd(line));
    }
    tracker.observe(&Cmd::new());
    tracker.flush().await;
    assert_eq!(tracker.stats(), TrackerStats::default());
    assert!(conn.pipelines().is_empty());
}

#[tokio::test]
async fn rate_zero_in_one_direction_samples_only_the_other() {
    let conn = FakeConn::new(Answer::Ok);
    let tracker = HotKeyTracker::start(
        conn.clone(),
        TrackerOptions::default()
            .with_reads_sample_rate(1.0)
            .with_mode(TrackKeyMode::Direct),
    )
    .unwrap();
    tracker.observe(&cmd("SET a 1"));
    tracker.observe(&cmd("GET a"));
    tracker.flush().await;
    assert_eq!(tracker.stats().sampled, 1);
    assert_eq!(conn.pipelines()[0][0], format!("ZINCRBY {READS} 1 a"));
}

#[tokio::test]
async fn both_rates_zero_is_a_disabled_tracker_that_sends_nothing() {
    let conn = FakeConn::new(Answer::Ok);
    let tracker = HotKeyTracker::start(conn.clone(), TrackerOptions::default()).unwrap();
    assert!(!tracker.is_enabled());
    for _ in 0..1000 {
        tracker.observe(&cmd("GET a"));
        tracker.observe(&cmd("SET a 1"));
    }
    tracker.flush().await;
    tracker.shutdown().await;
    assert_eq!(tracker.stats(), TrackerStats::default());
    assert!(conn.pipelines().is_empty());
    let disabled = HotKeyTracker::disabled();
    disabled.observe(&cmd("GET a"));
    disabled.flush().await;
    assert_eq!(disabled.stats(), TrackerStats::default());
}

#[tokio::test]
async fn a_full_queue_drops_and_counts_instead_of_growing() {
    let conn = FakeConn::new(Answer::Ok);
    let tracker = HotKeyTracker::start(
        conn.clone(),
        all(TrackKeyMode::Aggregated).with_queue_capacity(2),
    )
    .unwrap();
    // This test's runtime has one thread, so the writer cannot drain the queue until we await.
    for _ in 0..10 {
        tracker.observe(&cmd("GET a"));
    }
    let stats = tracker.stats();
    assert_eq!((stats.sampled, stats.dropped), (10, 8));
    tracker.flush().await;
    assert_eq!(conn.pipelines()[0][0], format!("ZINCRBY {READS} 2 a"));
}

#[tokio::test]
async fn failed_writes_are_counted_and_never_reach_the_caller() {
    for mode in [TrackKeyMode::Aggregated, TrackKeyMode::Direct] {
        let conn = FakeConn::new(Answer::Fail);
        let tracker = HotKeyTracker::start(conn.clone(), all(mode)).unwrap();
        for _ in 0..3 {
            tracker.observe(&cmd("GET a"));
        }
        tracker.flush().await;
        let expected_failures = if mode == TrackKeyMode::Direct { 3 } else { 1 };
        assert_eq!(tracker.stats().failures, expected_failures, "{mode}");
        // The tracker keeps working after failures.
        tracker.observe(&cmd("GET a"));
        tracker.flush().await;
        assert_eq!(tracker.stats().failures, expected_failures + 1, "{mode}");
    }
}

#[tokio::test]
async fn a_node_that_never_answers_costs_a_timeout_not_a_stuck_tracker() {
    for mode in [TrackKeyMode::Aggregated, TrackKeyMode::Direct] {
        let conn = FakeConn::new(Answer::Never);
        let tracker = HotKeyTracker::start(
            conn.clone(),
            all(mode).with_flush_interval(Duration::from_millis(50)),
        )
        .unwrap();
        let started = std::time::Instant::now();
        for _ in 0..100 {
            tracker.observe(&cmd("GET a"));
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "observe must not wait"
        );
        tracker.flush().await;
        assert!(
            tracker.stats().failures >= 1,
            "{mode}: {:?}",
            tracker.stats()
        );
        tracker.shutdown().await;
    }
}

#[tokio::test]
async fn shutdown_flushes_then_stops_every_clone() {
    let conn = FakeConn::new(Answer::Ok);
    let tracker = HotKeyTracker::start(conn.clone(), all(TrackKeyMode::Aggregated)).unwrap();
    let clone = tracker.clone();
    tracker.observe(&cmd("GET a"));
    clone.shutdown().await;
    assert_eq!(conn.pipelines().len(), 1);
    assert!(!tracker.is_enabled());
    tracker.observe(&cmd("GET a"));
    assert_eq!(tracker.stats().dropped, 1);
    tracker.flush().await;
    tracker.shutdown().await;
    assert_eq!(conn.pipelines().len(), 1);
}

#[tokio::test]
async fn dropping_every_handle_flushes_what_was_counted() {
    let conn = FakeConn::new(Answer::Ok);
    let tracker = HotKeyTracker::start(conn.clone(), all(TrackKeyMode::Aggregated)).unwrap();
    tracker.observe(&cmd("GET last"));
    drop(tracker);
    within_ten_seconds("final flush", || !conn.pipelines().is_empty()).await;
    assert_eq!(conn.pipelines()[0][0], format!("ZINCRBY {READS} 1 last"));
}

#[tokio::test]
async fn sampling_through_observe_replays_with_a_seeded_generator() {
    let rate = 0.01;
    let conn = FakeConn::new(Answer::Ok);
    let tracker = HotKeyTracker::start(
        conn.clone(),
        TrackerOptions::default()
            .with_reads_sample_rate(rate)
            .with_queue_capacity(100_000),
    )
    .unwrap();
    seed_thread_rng(11);
    for i in 0..100_000 {
        tracker.observe(&cmd(&format!("GET k{}", i % 7)));
    }
    let mut shadow = SmallRng::seed_from_u64(11);
    let sample_rate = SampleRate::new("reads_sample_rate", rate).unwrap();
    let expected = (0..100_000)
        .filter(|_| sample_rate.sample_from(rand::Rng::next_u64(&mut shadow)))
        .count() as u64;
    assert_eq!(tracker.stats().sampled, expected);
    assert!((800..1200).contains(&expected), "{expected}");
}

#[test]
fn a_tracker_can_be_shared_across_tasks_and_threads() {
    fn shareable<T: Clone + Send + Sync + 'static>() {}
    shareable::<HotKeyTracker>();
}

#[test]
fn start_outside_a_runtime_is_an_error_not_a_panic() {
    let err =
        HotKeyTracker::start(FakeConn::new(Answer::Ok), all(TrackKeyMode::Direct)).unwrap_err();
    assert!(matches!(err, TrackerError::NoRuntime(_)), "{err}");
    assert!(std::error::Error::source(&err).is_some());
}

#[test]
fn invalid_options_are_rejected_naming_the_option() {
    let cases = [
        (
            TrackerOptions::default().with_reads_sample_rate(-1.0),
            "reads_sample_rate must be between 0 and 1, got -1",
        ),
        (
            TrackerOptions::default().with_writes_sample_rate(f64::NAN),
            "writes_sample_rate must be between 0 and 1, got NaN",
        ),
        (
            TrackerOptions::default().with_flush_interval(Duration::ZERO),
            "flush_interval must be greater than zero",
        ),
        (
            TrackerOptions::default().with_max_keys(0),
            "max_keys must be greater than zero",
        ),
        (
            TrackerOptions::default().with_queue_capacity(0),
            "queue_capacity must be greater than zero",
        ),
        (
            TrackerOptions::default().with_summary_capacity(0),
            "summary_capacity must be greater than zero",
        ),
    ];
    for (options, message) in cases {
        assert_eq!(options.validate().unwrap_err().to_string(), message);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let _guard = runtime.enter();
    let err = HotKeyTracker::start(
        FakeConn::new(Answer::Ok),
        TrackerOptions::default()
            .with_max_keys(0)
            .with_reads_sample_rate(1.0),
    )
    .unwrap_err();
    assert!(matches!(err, TrackerError::Zero { option: "max_keys" }));
}

#[test]
fn defaults_match_the_documented_ones() {
    let o = TrackerOptions::default();
    assert_eq!(
        (
            o.reads_sample_rate,
            o.writes_sample_rate,
            o.mode,
            o.flush_interval,
            o.max_keys
        ),
        (
            0.0,
            0.0,
            TrackKeyMode::Aggregated,
            Duration::from_secs(10),
            10_000
        )
    );
    assert!(o.validate().is_ok());
}

#[test]
fn modes_parse_and_deserialise_from_their_names() {
    assert_eq!(
        "aggregated".parse::<TrackKeyMode>().unwrap(),
        TrackKeyMode::Aggregated
    );
    assert_eq!(
        "DIRECT".parse::<TrackKeyMode>().unwrap(),
        TrackKeyMode::Direct
    );
    assert_eq!(
        "sampled".parse::<TrackKeyMode>().unwrap_err().to_string(),
        "unknown hot-key tracking mode \"sampled\", expected \"aggregated\" or \"direct\""
    );
    let mode: TrackKeyMode = serde_json::from_str("\"direct\"").unwrap();
    assert_eq!(mode, TrackKeyMode::Direct);
    let err = serde_json::from_str::<TrackKeyMode>("\"fast\"").unwrap_err();
    assert!(
        err.to_string()
            .contains("expected \"aggregated\" or \"direct\""),
        "{err}"
    );
    assert_eq!(
        serde_json::to_string(&TrackKeyMode::Aggregated).unwrap(),
        "\"aggregated\""
    );
    assert_eq!(TrackKeyMode::Direct.to_string(), "direct");
}

#[tokio::test]
async fn hot_reads_are_found_locally_with_both_rates_zero_and_nothing_is_sent() {
    let conn = FakeConn::new(Answer::Ok);
    let options = TrackerOptions::default()
        .with_hot_reads(2)
        .with_hot_reads_sample_rate(1.0);
    let tracker = HotKeyTracker::start(conn.clone(), options).unwrap();
    assert!(tracker.is_enabled());
    for _ in 0..50 {
        tracker.observe(&cmd("GET hot"));
        tracker.observe(&cmd("HGET warm field"));
        // Multi-key reads and writes never make a key a hot read.
        tracker.observe(&cmd("MGET multi other"));
        tracker.observe(&cmd("SET written 1"));
    }
    tracker.observe(&cmd("GET cold"));
    within_ten_seconds("hot reads", || tracker.is_hot_read(&cmd("GET hot"))).await;
    let mut hot = tracker.hot_reads();
    hot.sort();
    assert_eq!(hot, [b"hot".to_vec(), b"warm".to_vec()]);
    assert!(tracker.is_hot_read(&cmd("HGET warm other-field")));
    assert!(tracker.is_hot_read(&cmd("get hot")), "names in any case");
    assert!(!tracker.is_hot_read(&cmd("GET cold")));
    assert!(
        !tracker.is_hot_read(&cmd("MGET hot warm")),
        "reads two keys"
    );
    assert!(!tracker.is_hot_read(&cmd("GETDEL hot")), "writes its key");
    assert!(!tracker.is_hot_read(&cmd("SET hot 1")));
    tracker.flush().await;
    assert!(
        conn.pipelines().is_empty(),
        "finding hot reads writes nothing"
    );
    assert_eq!(tracker.stats().sampled, 0, "no sample for the sets");
}

#[tokio::test]
async fn reads_sampled_for_the_set_also_count_towards_hot_reads() {
    let conn = FakeConn::new(Answer::Ok);
    let options = all(TrackKeyMode::Aggregated)
        .with_hot_reads(1)
        .with_hot_reads_sample_rate(0.0);
    let tracker = HotKeyTracker::start(conn.clone(), options).unwrap();
    for _ in 0..3 {
        tracker.observe(&cmd("GET a"));
    }
    within_ten_seconds("hot reads", || tracker.is_hot_read(&cmd("GET a"))).await;
    tracker.flush().await;
    assert_eq!(conn.pipelines()[0][0], format!("ZINCRBY {READS} 3 a"));
}
