//! Bad input never panics and fails clearly: arbitrary config values and key sets (proptest),
//! malformed and unusual URLs, arbitrary commands through the monitored connection and the hot-key
//! classifier, and passwords that never show in what the client reports.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use baseplate_config::RawConfig;
use baseplate_hotkeys::{classify, command_spec, commands};
use baseplate_redis_cluster::{
    ClusterRedisClient, ClusterRedisContextFactory, MonitoredClusterRedisConnection,
};
use integration::chaos::cluster::{ChaosCluster, PASSWORD, USER};
use integration::cluster;
use proptest::prelude::*;
use proptest::sample::select;
use redis::AsyncCommands as _;

/// Every key the client reads under its prefix, typed or accepted for compatibility.
const KEYS: [&str; 15] = [
    "url",
    "max_connections",
    "timeout",
    "socket_connect_timeout",
    "socket_timeout",
    "read_from_replicas",
    "track_key_reads_sample_rate",
    "track_key_writes_sample_rate",
    "track_key_mode",
    "track_key_flush_interval",
    "track_key_max_keys",
    "max_connections_per_node",
    "skip_full_coverage_check",
    "nodemanager_follow_cluster",
    "decode_responses",
];

/// Values that are nearly right as often as values that are nonsense.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "-?[0-9]{1,22}(\\.[0-9]{0,4})?",
        "-?[0-9]{0,6} ?(millisecond|milliseconds|second|seconds|minute|hours|day|days|weeks|s|)",
        "(true|false|True|FALSE|yes|no|on|off|1|0|t|f|)",
        "(aggregated|direct|Direct|hybrid|)",
        "(redis|rediss|http|unix)://[a-z0-9.:@\\[\\]/%,_-]{0,40}",
        Just("1e400".to_owned()),
        Just("NaN".to_owned()),
        Just("inf".to_owned()),
    ]
}

/// Parses `pairs` (keys without the `foo.` prefix) plus keys of other clients, which must be
/// ignored. A config error must name a key under the prefix that is in the config, or the
/// required `foo.url`.
fn check_parse(pairs: &[(String, String)]) -> Result<(), TestCaseError> {
    let mut config = RawConfig::new();
    config.insert("bar.url", "not even a url");
    config.insert("food.timeout", "never");
    let mut keys = vec!["foo.url".to_owned()];
    for (key, value) in pairs {
        let key = format!("foo.{key}");
        config.insert(key.as_str(), value.as_str());
        keys.push(key);
    }
    if let Err(error) = ClusterRedisClient::new().parse("foo", &config) {
        let text = error.to_string();
        let _debug = format!("{error:?}");
        prop_assert!(
            keys.iter().any(|key| text.starts_with(&format!("{key}:"))),
            "the error names no key of the config: {text:?} (keys {keys:?})"
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn any_value_of_any_key_parses_or_names_that_key(
        key in select(&KEYS[..]),
        value in value(),
    ) {
        let mut pairs = vec![(key.to_owned(), value)];
        if key != "url" {
            pairs.push(("url".to_owned(), "redis://127.0.0.1:7000".to_owned()));
        }
        check_parse(&pairs)?;
    }

    #[test]
    fn any_set_of_keys_parses_or_names_a_key(
        pairs in prop::collection::vec(
            (
                prop_oneof![
                    select(&KEYS[..]).prop_map(str::to_owned),
                    "[a-z_.]{0,24}",
                    any::<String>(),
                ],
                value(),
            ),
            0..10,
        ),
    ) {
        check_parse(&pairs)?;
    }

    #[test]
    fn the_classifier_never_panics_and_finds_keys_only_among_the_arguments(
        name in prop_oneof![
            select(commands().map(|c| c.name()).collect::<Vec<_>>()).prop_map(|n| n.as_bytes().to_vec()),
            select(commands().map(|c| c.name().to_lowercase()).collect::<Vec<_>>()).prop_map(String::into_bytes),
            prop::collection::vec(any::<u8>(), 0..12),
        ],
        args in prop::collection::vec(argument(), 0..12),
    ) {
        let mut all = vec![name];
        all.extend(args);
        let slices: Vec<&[u8]> = all.iter().map(Vec::as_slice).collect();
        if let Some(found) = classify(&slices) {
            for key in found.reads.iter().chain(&found.writes) {
                prop_assert!(slices[1..].contains(key), "{key:?} is not an argument");
            }
            let spec = command_spec(slices[0]).unwrap();
            prop_assert_eq!(spec.reads().keys(&slices).count(), found.reads.len());
        }
    }
}

/// An argument: bytes of any kind, numbers (positive, negative, huge: `numkeys` and timeouts), or
/// the words that change where keys are.
fn argument() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..16),
        "-?[0-9]{1,21}".prop_map(String::into_bytes),
        select(vec![
            "0",
            "1",
            "2",
            "3",
            "-1",
            "99999999999999999999",
            "STREAMS",
            "BLOCK",
            "COUNT",
            "WEIGHTS",
            "LIMIT",
            "WITHSCORES",
            "{tag}",
            "$",
            ">",
        ])
        .prop_map(|w| w.as_bytes().to_vec()),
    ]
}

// ---------------------------------------------------------------------------------------------
// URLs against the real cluster.

/// How a URL must come out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Parses, connects and answers.
    Works,
    /// Parses; connecting fails with a clear error.
    ConnectFails,
    /// Parses; connecting gets no answer and gives up after the connect timeout, saying so.
    ConnectTimesOut,
    /// A config error on `foo.url` saying this.
    ConfigError(&'static str),
}

async fn try_url(url: &str) -> Result<(), String> {
    let config: RawConfig = [("foo.url", url), ("foo.timeout", "2 seconds")]
        .into_iter()
        .collect();
    let factory = ClusterRedisClient::new()
        .parse("foo", &config)
        .map_err(|e| format!("config: {e} | {e:?}"))?;
    let shown = format!("{factory:?}");
    assert!(!shown.contains(PASSWORD), "{shown}");
    let mut foo = factory.make_object_for_context("foo", &tracing::Span::none());
    let started = Instant::now();
    let result: redis::RedisResult<Option<String>> = foo.get("bad-input:url").await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{url}: took {:?}",
        started.elapsed()
    );
    result
        .map(drop)
        .map_err(|e| format!("connect: {e} | {e:?}"))
}

#[tokio::test]
async fn every_url_works_or_fails_clearly() {
    let port: u16 = cluster()
        .url()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("the harness URL ends with a port");
    let next = port + 1;
    let cases: Vec<(String, Expect)> = vec![
        (format!("redis://127.0.0.1:{port}"), Expect::Works),
        (format!("redis://127.0.0.1:{port}/0"), Expect::Works),
        (format!("redis://localhost:{port}"), Expect::Works),
        // Several seeds, spaces around commas, and a dead first seed.
        (
            format!("redis://127.0.0.1:{port},redis://127.0.0.1:{next}"),
            Expect::Works,
        ),
        (
            format!("redis://127.0.0.1:{port} , redis://127.0.0.1:{next}"),
            Expect::Works,
        ),
        (
            format!("redis://127.0.0.1:1,redis://127.0.0.1:{port}"),
            Expect::Works,
        ),
        // IPv6: parses; nothing listens on ::1 here, so alone it fails, and with a live seed it works.
        (format!("redis://[::1]:{port}"), Expect::ConnectFails),
        (
            format!("redis://[::1]:{port},redis://127.0.0.1:{port}"),
            Expect::Works,
        ),
        // Empty passwords mean no password; a wrong one is refused.
        (format!("redis://user:@127.0.0.1:{port}"), Expect::Works),
        (format!("redis://:@127.0.0.1:{port}"), Expect::Works),
        (
            format!("redis://{USER}:{PASSWORD}@127.0.0.1:{port}"),
            Expect::ConnectFails,
        ),
        (
            format!("redis://:{PASSWORD}@127.0.0.1:{port}"),
            Expect::ConnectFails,
        ),
        ("redis://127.0.0.1:1".to_owned(), Expect::ConnectFails),
        // Query parameters redis-py applies, applied; the others refused by name.
        (
            format!("redis://127.0.0.1:{port}/0?socket_timeout=2&max_connections=5&db=0"),
            Expect::Works,
        ),
        (
            format!("redis://127.0.0.1:{port}/0?retry_on_timeout=true"),
            Expect::ConfigError("foo.url: unsupported URL parameter \"retry_on_timeout\""),
        ),
        // Malformed.
        (
            "".to_owned(),
            Expect::ConfigError("foo.url: required but not set"),
        ),
        (
            ",".to_owned(),
            Expect::ConfigError("foo.url: seed 1: empty URL"),
        ),
        (
            format!("redis://127.0.0.1:{port},"),
            Expect::ConfigError("foo.url: seed 2: empty URL"),
        ),
        (
            format!("redis://:{port}"),
            Expect::ConfigError("foo.url: not a valid URL"),
        ),
        (
            "redis://".to_owned(),
            Expect::ConfigError("foo.url: no host"),
        ),
        (
            format!("redis://{USER}:{PASSWORD}@127.0.0.1:99999"),
            Expect::ConfigError("foo.url: not a valid URL"),
        ),
        (
            "redis://127.0.0.1:port".to_owned(),
            Expect::ConfigError("foo.url: not a valid URL"),
        ),
        (
            "redis://[::1".to_owned(),
            Expect::ConfigError("foo.url: not a valid URL"),
        ),
        (
            format!("127.0.0.1:{port}"),
            Expect::ConfigError("foo.url: not a valid URL"),
        ),
        (
            format!("http://{USER}:{PASSWORD}@127.0.0.1:{port}"),
            Expect::ConfigError("foo.url: unknown scheme \"http\""),
        ),
        (
            "unix:///tmp/redis.sock".to_owned(),
            Expect::ConfigError("foo.url: scheme \"unix\" is not supported"),
        ),
        (
            // TLS to a port that speaks plain Redis: the node waits for a command that never
            // ends, as it does for `redis-cli --tls`.
            format!("rediss://{USER}:{PASSWORD}@127.0.0.1:{port}"),
            Expect::ConnectTimesOut,
        ),
        (
            format!("rediss://127.0.0.1:{port},redis://127.0.0.1:{port}"),
            Expect::ConfigError("foo.url: seed 2: redis:// after rediss:// seeds"),
        ),
        (
            format!("redis://{USER}:{PASSWORD}@127.0.0.1:{port}/3"),
            Expect::ConfigError("foo.url: database \"3\" requested"),
        ),
    ];
    for (url, expect) in cases {
        let outcome = try_url(&url).await;
        assert!(
            !format!("{outcome:?}").contains(PASSWORD),
            "{url}: {outcome:?}"
        );
        match (expect, &outcome) {
            (Expect::Works, Ok(())) => {}
            (Expect::ConnectFails, Err(e)) if e.starts_with("connect: ") => {
                assert!(
                    e.contains("Connection refused") || e.contains("AuthenticationFailed"),
                    "{url}: an unclear error {e}"
                );
            }
            (Expect::ConnectTimesOut, Err(e)) => assert!(
                e.starts_with(
                    "connect: redis cluster client \"foo\": connecting to the cluster took longer than 2s"
                ),
                "{url}: {e}"
            ),
            (Expect::ConfigError(message), Err(e)) if e.starts_with("config: ") => {
                assert!(e.starts_with(&format!("config: {message}")), "{url}: {e}");
            }
            _ => panic!("{url}: expected {expect:?}, got {outcome:?}"),
        }
    }
    // Without a port a URL means 6379, which these tests never touch: only parse it.
    let config: RawConfig = [("foo.url", "redis://127.0.0.1")].into_iter().collect();
    assert!(ClusterRedisClient::new().parse("foo", &config).is_ok());
}

// ---------------------------------------------------------------------------------------------
// Arbitrary commands through the monitored connection, against a cluster of their own.

/// Commands that would block a shared socket for good, stop or rewire a node, or change its
/// configuration: never sent, whatever the generator comes up with.
const NEVER_SENT: [&str; 40] = [
    "SHUTDOWN",
    "DEBUG",
    "FLUSHALL",
    "FLUSHDB",
    "CONFIG",
    "CLUSTER",
    "FAILOVER",
    "REPLICAOF",
    "SLAVEOF",
    "MIGRATE",
    "MODULE",
    "ACL",
    "AUTH",
    "HELLO",
    "SCRIPT",
    "FUNCTION",
    "SAVE",
    "BGSAVE",
    "BGREWRITEAOF",
    "CLIENT",
    "MONITOR",
    "SYNC",
    "PSYNC",
    "RESET",
    "QUIT",
    "SELECT",
    "SWAPDB",
    "READONLY",
    "READWRITE",
    "MULTI",
    "EXEC",
    "WATCH",
    "SUBSCRIBE",
    "PSUBSCRIBE",
    "SSUBSCRIBE",
    "WAIT",
    "WAITAOF",
    "LATENCY",
    "LOLWUT",
    "RESTORE",
];

/// Whether a command name blocks server-side (its connection waits with it).
fn blocks(name: &str) -> bool {
    name.starts_with('B') && name != "BITOP" && name != "BITCOUNT" && name != "BITPOS"
        || name == "XREAD"
        || name == "XREADGROUP"
}

fn command() -> impl Strategy<Value = Vec<Vec<u8>>> {
    let known: Vec<String> = commands().map(|c| c.name().to_owned()).collect();
    let extra = vec![
        "PING", "ECHO", "EXISTS", "TYPE", "TTL", "EVAL", "EVAL_RO", "FCALL", "OBJECT", "MEMORY",
        "XINFO", "SORT", "SCAN", "DUMP", "TOUCH", "UNLINK", "COPY",
    ];
    let name = prop_oneof![
        select(known),
        select(extra).prop_map(|name: &str| name.to_owned()),
        "[A-Za-z]{1,10}",
    ]
    .prop_filter("never sent", |name| {
        let upper = name.to_ascii_uppercase();
        !NEVER_SENT.contains(&upper.as_str()) && !blocks(&upper)
    });
    (name, prop::collection::vec(argument(), 0..8)).prop_map(|(name, args)| {
        let mut all = vec![name.into_bytes()];
        all.extend(args);
        all
    })
}

fn to_cmd(args: &[Vec<u8>]) -> redis::Cmd {
    let mut cmd = redis::Cmd::new();
    for arg in args {
        cmd.arg(arg.as_slice());
    }
    cmd
}

struct Fuzzed {
    runtime: tokio::runtime::Runtime,
    _cluster: ChaosCluster,
    factory: ClusterRedisContextFactory,
}

/// A runtime, a cluster and a client (tracking every command, 1 s timeout) shared by the cases.
fn fuzzed() -> &'static Fuzzed {
    static FUZZED: OnceLock<Fuzzed> = OnceLock::new();
    FUZZED.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let cluster = ChaosCluster::start(Duration::from_secs(2));
        let url = cluster.url_with_password();
        let _entered = runtime.enter();
        let config: RawConfig = [
            ("foo.url", url.as_str()),
            ("foo.timeout", "1 second"),
            ("foo.track_key_reads_sample_rate", "1"),
            ("foo.track_key_writes_sample_rate", "1"),
            ("foo.track_key_flush_interval", "1 second"),
        ]
        .into_iter()
        .collect();
        let factory = ClusterRedisClient::new().parse("foo", &config).unwrap();
        Fuzzed {
            runtime,
            _cluster: cluster,
            factory,
        }
    })
}

async fn run_case(mut foo: MonitoredClusterRedisConnection, batch: &[Vec<Vec<u8>>]) {
    let started = Instant::now();
    let first = to_cmd(&batch[0]);
    let single: redis::RedisResult<redis::Value> = first.query_async(&mut foo).await;
    let mut pipeline = foo.pipeline("fuzz");
    for args in batch {
        pipeline.add_command(to_cmd(args));
    }
    let piped: redis::RedisResult<Vec<redis::Value>> = pipeline.query_async().await;
    let mut transaction = foo.transaction("fuzz");
    for args in batch {
        transaction.add_command(to_cmd(args));
    }
    let atomic: redis::RedisResult<redis::Value> = transaction.query_async().await;
    let took = started.elapsed();
    for error in [single.err(), piped.err(), atomic.err()]
        .into_iter()
        .flatten()
    {
        let shown = format!("{error} {error:?}");
        assert!(!shown.contains(PASSWORD), "{shown}");
    }
    // Three calls, each bounded by the pool wait plus the response timeout.
    assert!(took < Duration::from_secs(7), "{batch:?} took {took:?}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 160, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_commands_through_the_monitored_connection_never_panic(
        batch in prop::collection::vec(command(), 1..4),
    ) {
        let fuzzed = fuzzed();
        let foo = fuzzed.factory.make_object_for_context("foo", &tracing::Span::none());
        fuzzed.runtime.block_on(run_case(foo, &batch));
    }
}

#[test]
fn after_arbitrary_commands_the_client_and_its_tracker_still_work() {
    let fuzzed = fuzzed();
    fuzzed.runtime.block_on(async {
        let mut foo = fuzzed
            .factory
            .make_object_for_context("foo", &tracing::Span::none());
        for batch in [
            vec![b"EVAL".to_vec(), b"return 1".to_vec(), b"99999".to_vec()],
            vec![b"ZUNIONSTORE".to_vec(), b"d".to_vec(), b"-5".to_vec()],
            vec![b"XREAD".to_vec(), b"STREAMS".to_vec()],
            vec![b"MSET".to_vec(), b"k".to_vec()],
            vec![b"SET".to_vec()],
            vec![Vec::new()],
        ] {
            run_case(foo.clone(), &[batch]).await;
        }
        let () = foo.set("bad-input:after", "still fine").await.unwrap();
        let value: String = foo.get("bad-input:after").await.unwrap();
        assert_eq!(value, "still fine");
        fuzzed.factory.tracker().flush().await;
        let stats = fuzzed.factory.tracker().stats();
        assert!(stats.sampled > 0, "{stats:?}");
    });
}

// ---------------------------------------------------------------------------------------------
// Values at the edges of their types, found by the properties above.

#[test]
fn a_max_connections_beyond_what_the_pool_can_count_is_a_config_error() {
    // tokio's semaphore holds at most usize::MAX >> 3 permits and panics beyond that.
    for value in ["2305843009213693952", "18446744073709551615"] {
        let config: RawConfig = [
            ("foo.url", "redis://127.0.0.1:7000"),
            ("foo.max_connections", value),
        ]
        .into_iter()
        .collect();
        let error = ClusterRedisClient::new().parse("foo", &config).unwrap_err();
        assert!(
            error.to_string().starts_with("foo.max_connections: "),
            "{error}"
        );
    }
}

#[test]
fn a_zero_timeout_is_a_config_error() {
    // mobc panics on a zero wait for a connection, which `timeout` bounds.
    for key in [
        "foo.timeout",
        "foo.socket_timeout",
        "foo.socket_connect_timeout",
    ] {
        let config: RawConfig = [
            ("foo.url", "redis://127.0.0.1:7000"),
            (key, "0 millisecond"),
        ]
        .into_iter()
        .collect();
        let error = ClusterRedisClient::new().parse("foo", &config).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!("{key}: must be longer than zero")
        );
    }
}

#[tokio::test]
async fn a_flush_interval_of_eons_neither_panics_nor_stops_the_tracker() {
    // Far beyond any clock: `Instant::now() + interval` overflows.
    for interval in ["99999999999999 days", "200000000000000 days"] {
        let config: RawConfig = [
            ("foo.url", cluster().url()),
            ("foo.track_key_reads_sample_rate", "1"),
            ("foo.track_key_flush_interval", interval),
        ]
        .into_iter()
        .collect();
        let factory = ClusterRedisClient::new().parse("foo", &config).unwrap();
        let mut foo = factory.make_object_for_context("foo", &tracing::Span::none());
        let _: Option<String> = foo.get("bad-input:eons").await.unwrap();
        // The tracker's writer took the sample; flushing answers only if it is alive.
        tokio::time::timeout(Duration::from_secs(5), factory.tracker().flush())
            .await
            .expect("the tracker answers a flush");
        assert!(factory.tracker().is_enabled(), "{interval}");
        assert_eq!(factory.tracker().stats().failures, 0, "{interval}");
        factory.tracker().shutdown().await;
    }
}
