//! The request sequence `fixtures/baseplate_py/capture.py` ran through baseplate.py 2.7.1, replayed
//! through the facade on the real cluster, and what the tests that compare the two need: the
//! fixtures' statsd lines, and both sides' lines grouped by request with timings masked.
//!
//! Used by `tests/prometheus.rs` (the `/metrics` series) and `tests/statsd_golden.rs` (statsd in
//! plain, tagged and sampled mode, and one runtime report).

use std::time::Duration;

use baseplate::{Baseplate, ClusterRedisClient, RawConfig};
use redis::AsyncCommands as _;

use crate::{cluster, unique_prefix};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The requests of the sequence, in order; each is its own server span of that name.
pub const REQUESTS: [&str; 5] = ["visit", "broken", "pipe", "exhausted", "exhausted_pipe"];

/// The capture's app config against the test cluster: `foo` with baseplate.py's defaults (but
/// reads from primaries, as the capture cluster had no replicas) and `tight` with one connection
/// and a 100 ms timeout, plus `extra` (the `metrics.*` keys of a mode).
pub fn app_config(extra: &[(&str, &str)]) -> RawConfig {
    let url = format!("{}/0", cluster().url());
    let mut config: RawConfig = [
        ("foo.url", url.as_str()),
        // A read right after a write may reach a replica that has not applied it yet.
        ("foo.read_from_replicas", "false"),
        ("tight.url", url.as_str()),
        ("tight.max_connections", "1"),
        ("tight.timeout", "100 milliseconds"),
        // Lets the command that holds tight's only permit block for longer than the pool wait.
        ("tight.socket_timeout", "10 seconds"),
    ]
    .into_iter()
    .collect();
    config.extend(extra.iter().copied());
    config
}

/// Registers the capture's clients: `foo` as `ClusterRedisClient()`, `tight` as
/// `ClusterRedisClient(redis_client_name="tight")`.
///
/// # Panics
/// When the config does not parse.
pub fn configure_clients(baseplate: &mut Baseplate) {
    baseplate
        .configure_context("foo", ClusterRedisClient::new())
        .expect("configuring foo");
    baseplate
        .configure_context(
            "tight",
            ClusterRedisClient::new().redis_client_name("tight"),
        )
        .expect("configuring tight");
}

/// The sequence's keys, unique to one test.
#[derive(Debug)]
pub struct Sequence {
    prefix: String,
    keys: [String; 3],
}

impl Sequence {
    /// Keys for the test `test`: the capture's `golden:a`, `golden:b` and `golden:text`, under a
    /// prefix of its own.
    pub fn new(test: &str) -> Sequence {
        let prefix = unique_prefix(test);
        let keys = [
            format!("{prefix}a"),
            format!("{prefix}b"),
            format!("{prefix}text"),
        ];
        Sequence { prefix, keys }
    }

    /// Runs the five requests in order through `baseplate`, each checked against what it gave in
    /// baseplate.py (`outcomes.txt`), and `after_each(name)` once each has ended (its metrics
    /// flushed). During `exhausted` and `exhausted_pipe` a `BLPOP` outside any request holds
    /// tight's only permit (see [`is_holder_line`]).
    ///
    /// # Panics
    /// When a request gives something else than it gave in baseplate.py.
    pub async fn run(&self, baseplate: &Baseplate, mut after_each: impl AsyncFnMut(&'static str)) {
        let [a, b, text] = [&self.keys[0], &self.keys[1], &self.keys[2]];
        assert_eq!(self.visit(baseplate).await, "1");
        after_each("visit").await;

        let broken = baseplate
            .server_context("broken", |ctx| async move {
                let mut foo = ctx.redis_cluster("foo")?;
                let () = foo.set(text, "x").await?;
                let n: i64 = redis::cmd("INCR").arg(text).query_async(&mut foo).await?;
                Ok::<_, BoxError>(n)
            })
            .await;
        assert!(broken.unwrap_err().to_string().contains("not an integer"));
        after_each("broken").await;

        let pipe = baseplate
            .server_context("pipe", |ctx| async move {
                let foo = ctx.redis_cluster("foo")?;
                let mut bar = foo.pipeline("bar");
                bar.cmd("INCR").arg(a).cmd("INCR").arg(b);
                Ok::<_, BoxError>(bar.query_async::<(i64, i64)>().await?)
            })
            .await;
        assert_eq!(pipe.unwrap(), (2, 1));
        after_each("pipe").await;

        // A concurrent request holds tight's only permit (baseplate.py's capture checked the
        // pool's only connection out by hand; here it takes a command outside any request).
        let tight = baseplate
            .make_context_object()
            .redis_cluster("tight")
            .expect("tight is configured");
        let holder = {
            let mut tight = tight.clone();
            let key = format!("{}held", self.prefix);
            tokio::spawn(async move { tight.blpop::<_, Option<(String, String)>>(key, 2.0).await })
        };
        crate::eventually(Duration::from_secs(5), async || {
            tight.pool_stats().in_use >= 1
        })
        .await
        .expect("the holder never got its permit");
        let exhausted = baseplate
            .server_context("exhausted", |ctx| async move {
                let mut tight = ctx.redis_cluster("tight")?;
                Ok::<_, BoxError>(tight.get::<_, Option<String>>(a).await?)
            })
            .await;
        assert!(exhausted.unwrap_err().to_string().contains("stayed busy"));
        after_each("exhausted").await;

        let exhausted_pipe = baseplate
            .server_context("exhausted_pipe", |ctx| async move {
                let tight = ctx.redis_cluster("tight")?;
                let mut bar = tight.pipeline("bar");
                bar.cmd("INCR").arg(a).cmd("INCR").arg(b);
                Ok::<_, BoxError>(bar.query_async::<(i64, i64)>().await?)
            })
            .await;
        let error = exhausted_pipe.unwrap_err().to_string();
        assert!(error.contains("stayed busy"), "{error}");
        after_each("exhausted_pipe").await;
        assert_eq!(holder.await.expect("the holder ran").expect("BLPOP"), None);
    }

    /// The `visit` request alone: SET a 1, GET a; returns what GET read.
    ///
    /// # Panics
    /// When a command fails.
    pub async fn visit(&self, baseplate: &Baseplate) -> String {
        let a = &self.keys[0];
        baseplate
            .server_context("visit", |ctx| async move {
                let mut foo = ctx.redis_cluster("foo")?;
                let () = foo.set(a, 1).await?;
                Ok::<_, BoxError>(foo.get::<_, String>(a).await?)
            })
            .await
            .expect("visit")
    }

    /// Deletes the sequence's keys.
    pub async fn delete_keys(&self) {
        cluster().delete(&self.keys).await;
    }
}

/// Whether a statsd line is the `BLPOP` that holds tight's permit, which is not part of the
/// capture.
pub fn is_holder_line(line: &str) -> bool {
    line.contains(".BLPOP") || line.contains("endpoint=BLPOP")
}

/// The lines of a fixture, without the blank lines that separate its packets.
pub fn fixture_lines(text: &str) -> Vec<String> {
    text.lines()
        .filter(|line| !line.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Whether `line` is the last one of the request `request`: its server counter
/// (`ns.server.visit.success:1|c`, `baseplate.server.rate,endpoint=visit,success=True:1|c`).
pub fn ends_request(line: &str, request: &str) -> bool {
    let name = line.split(':').next().unwrap_or(line);
    let plain = [".success", ".failure"]
        .iter()
        .any(|outcome| name.ends_with(&format!("server.{request}{outcome}")));
    let tagged = name.starts_with("baseplate.server.rate,")
        && name.contains(&format!(",endpoint={request},"));
    plain || tagged
}

/// `lines` split into requests, each ending with its server counter (see [`ends_request`]).
///
/// # Panics
/// When lines are left over after the last request's server counter.
pub fn by_request(lines: &[String]) -> Vec<Vec<String>> {
    let mut requests = Vec::new();
    let mut current = Vec::new();
    for line in lines {
        current.push(line.clone());
        if REQUESTS.iter().any(|request| ends_request(line, request)) {
            requests.push(std::mem::take(&mut current));
        }
    }
    assert!(
        current.is_empty(),
        "lines after the last request: {current:?}"
    );
    requests
}

/// `line` with what depends on the run masked: a timer's milliseconds (`:<ms>|ms`), and the
/// `hostname` and `PID` tags of runtime metrics (`{hostname}`, `{pid}`, as the fixtures have
/// them).
pub fn masked(line: &str) -> String {
    let hostname = gethostname::gethostname().to_string_lossy().into_owned();
    let mut line = line
        .replace(&format!("hostname={hostname},"), "hostname={hostname},")
        .replace(&format!("PID={},", std::process::id()), "PID={pid},");
    if let Some((name, rest)) = line.split_once(':')
        && let Some((_, suffix)) = rest.split_once("|ms")
    {
        line = format!("{name}:<ms>|ms{suffix}");
    }
    line
}

/// `lines` with timers and gauges first, then counters, each in their order: how a batch orders
/// what it sends, and how baseplate.py's plain observer orders a request's packet (its tagged
/// observer sends a packet per span instead, which this turns into one batch's order).
pub fn timers_then_counters(lines: &[String]) -> Vec<String> {
    let (counters, others): (Vec<&String>, Vec<&String>) =
        lines.iter().partition(|line| line.contains("|c"));
    others.into_iter().chain(counters).cloned().collect()
}

/// The counters among `lines`, each name (with its tags) and what follows its value (`|c`,
/// `|c|@0.5`) mapped to the sum of its values: what statsd aggregates, however the lines were
/// split or summed.
///
/// # Panics
/// When a counter's value is not a number.
pub fn counter_sums(lines: &[String]) -> std::collections::BTreeMap<String, f64> {
    let mut sums = std::collections::BTreeMap::new();
    for (name, value, kind) in lines.iter().filter_map(|line| counter_parts(line)) {
        let value: f64 = value.parse().expect("a counter's value is a number");
        *sums.entry(format!("{name}|{kind}")).or_default() += value;
    }
    sums
}

/// Whether `line` is a counter's (`name:1|c`, `name:1|c|@0.5`).
pub fn is_counter(line: &str) -> bool {
    counter_parts(line).is_some()
}

/// A counter line's name (with its tags), value and what follows the value (`c`, `c|@0.5`).
fn counter_parts(line: &str) -> Option<(&str, &str, &str)> {
    let (name, rest) = line.split_once(':')?;
    let (value, kind) = rest.split_once('|')?;
    (kind == "c" || kind.starts_with("c|")).then_some((name, value, kind))
}
