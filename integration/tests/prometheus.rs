//! The Prometheus series against baseplate.py's own: the request sequence that
//! `fixtures/baseplate_py/capture.py` ran through baseplate.py 2.7.1, replayed through the facade
//! on the real cluster, scraped from `/metrics` over real HTTP and compared, parsed, with what
//! baseplate.py's `/metrics` served (`fixtures/baseplate_py/prometheus_multiprocess.txt`).
//!
//! The only test of its binary: the clients record into the process's global series, which it
//! reads whole.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use baseplate::{Baseplate, ClusterRedisClient, RawConfig};
use integration::{cluster, unique_prefix};
use prometheus_parse::{Scrape, Value};
use redis::AsyncCommands as _;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What baseplate.py's `/metrics` served after the sequence.
const GOLDEN: &str = include_str!("../fixtures/baseplate_py/prometheus_multiprocess.txt");

/// One series as compared: its name and labels, and its value where the value is not a latency
/// (histogram sums are; so are bucket counts, of which only the bounds are compared).
type Series = BTreeMap<(String, Vec<(String, String)>), String>;

/// The series of a Prometheus text, parsed, without the series `skip` names.
fn series(text: &str, skip: impl Fn(&str, &[(String, String)]) -> bool) -> Series {
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
    let mut series = Series::new();
    for sample in scrape.samples {
        let mut labels: Vec<(String, String)> = sample
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        labels.sort();
        if skip(&sample.metric, &labels) {
            continue;
        }
        let value = match &sample.value {
            Value::Histogram(buckets) => {
                let bounds: Vec<String> = buckets.iter().map(|b| b.less_than.to_string()).collect();
                format!("buckets {}", bounds.join(" "))
            }
            _ if sample.metric.ends_with("_sum") => "a latency".to_owned(),
            // Open connections: one per node for each of baseplate.py's sockets, a few
            // multiplexed connections here; the series is there in both, its value differs.
            _ if sample.metric == "redis_client_pool_active_connections" => "open".to_owned(),
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v.to_string(),
            other => format!("{other:?}"),
        };
        series.insert((sample.metric, labels), value);
    }
    series
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_scraped_over_http_match_baseplate_py_for_the_same_requests() {
    let prefix = unique_prefix("golden");
    let url = format!("{}/0", cluster().url());
    let config: RawConfig = [
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
    let mut baseplate = Baseplate::new(config);
    baseplate
        .configure_context("foo", ClusterRedisClient::new())
        .unwrap();
    baseplate
        .configure_context(
            "tight",
            ClusterRedisClient::new().redis_client_name("tight"),
        )
        .unwrap();
    let server = baseplate
        .serve_prometheus("127.0.0.1:0")
        .await
        .unwrap()
        .expect("metrics.enabled is not false");
    let keys = [
        format!("{prefix}a"),
        format!("{prefix}b"),
        format!("{prefix}text"),
    ];
    let [a, b, text] = [&keys[0], &keys[1], &keys[2]];

    let visit = baseplate
        .server_context("visit", |ctx| async move {
            let mut foo = ctx.redis_cluster("foo")?;
            let () = foo.set(a, 1).await?;
            Ok::<_, BoxError>(foo.get::<_, String>(a).await?)
        })
        .await;
    assert_eq!(visit.unwrap(), "1");
    let broken = baseplate
        .server_context("broken", |ctx| async move {
            let mut foo = ctx.redis_cluster("foo")?;
            let () = foo.set(text, "x").await?;
            let n: i64 = redis::cmd("INCR").arg(text).query_async(&mut foo).await?;
            Ok::<_, BoxError>(n)
        })
        .await;
    assert!(broken.unwrap_err().to_string().contains("not an integer"));
    let pipe = baseplate
        .server_context("pipe", |ctx| async move {
            let foo = ctx.redis_cluster("foo")?;
            let mut bar = foo.pipeline("bar");
            bar.cmd("INCR").arg(a).cmd("INCR").arg(b);
            Ok::<_, BoxError>(bar.query_async::<(i64, i64)>().await?)
        })
        .await;
    assert_eq!(pipe.unwrap(), (2, 1));

    // A concurrent request holds tight's only permit (baseplate.py's capture checked the pool's
    // only connection out by hand; here it takes a command, whose `blpop` series is left out).
    let tight = baseplate
        .make_context_object()
        .redis_cluster("tight")
        .unwrap();
    let holder = {
        let mut tight = tight.clone();
        let key = format!("{prefix}held");
        tokio::spawn(async move { tight.blpop::<_, Option<(String, String)>>(key, 2.0).await })
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while tight.pool_stats().in_use < 1 {
        assert!(Instant::now() < deadline, "the holder never got its permit");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let exhausted = baseplate
        .server_context("exhausted", |ctx| async move {
            let mut tight = ctx.redis_cluster("tight")?;
            Ok::<_, BoxError>(tight.get::<_, Option<String>>(a).await?)
        })
        .await;
    assert!(exhausted.unwrap_err().to_string().contains("stayed busy"));
    let exhausted_pipe = baseplate
        .server_context("exhausted_pipe", |ctx| async move {
            let tight = ctx.redis_cluster("tight")?;
            let mut bar = tight.pipeline("bar");
            bar.cmd("INCR").arg(a).cmd("INCR").arg(b);
            Ok::<_, BoxError>(bar.query_async::<(i64, i64)>().await?)
        })
        .await;
    assert!(
        exhausted_pipe
            .unwrap_err()
            .to_string()
            .contains("stayed busy")
    );
    assert_eq!(holder.await.unwrap().unwrap(), None);

    let response = reqwest::get(format!("http://{}/metrics", server.local_addr()))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()[reqwest::header::CONTENT_TYPE].clone();
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    let scraped = response.text().await.unwrap();

    let ours = series(&scraped, |_, labels| {
        labels.contains(&("redis_command".to_owned(), "blpop".to_owned()))
    });
    let theirs = series(GOLDEN, |_, _| false);
    // 6 active-request gauges, 2 + 2 pool gauges, 6 request counters, 6 histograms (buckets,
    // sum, count).
    assert_eq!(theirs.len(), 34);
    let only_ours: Vec<_> = ours.keys().filter(|k| !theirs.contains_key(*k)).collect();
    let only_theirs: Vec<_> = theirs.keys().filter(|k| !ours.contains_key(*k)).collect();
    assert!(
        only_ours.is_empty() && only_theirs.is_empty(),
        "series only here: {only_ours:#?}\nseries only in baseplate.py's: {only_theirs:#?}\n{scraped}"
    );
    for (key, value) in &theirs {
        assert_eq!(&ours[key], value, "{key:?}\n{scraped}");
    }
    server.shutdown().await;
    cluster().delete(&keys).await;
}
