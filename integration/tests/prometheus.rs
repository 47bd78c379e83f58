//! The Prometheus series against baseplate.py's own: the request sequence that
//! `fixtures/baseplate_py/capture.py` ran through baseplate.py 2.7.1 (`integration::golden`),
//! replayed through the facade on the real cluster, scraped from `/metrics` over real HTTP and
//! compared, parsed, with what baseplate.py's `/metrics` served
//! (`fixtures/baseplate_py/prometheus_multiprocess.txt`).
//!
//! The only test of its binary: the clients record into the process's global series, which it
//! reads whole.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use baseplate::Baseplate;
use integration::golden::{self, Sequence};
use prometheus_parse::{Scrape, Value};

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
    let mut baseplate = Baseplate::new(golden::app_config(&[]));
    golden::configure_clients(&mut baseplate);
    let server = baseplate
        .serve_prometheus("127.0.0.1:0")
        .await
        .unwrap()
        .expect("metrics.enabled is not false");
    let sequence = Sequence::new("golden");
    sequence.run(&baseplate, async |_| {}).await;

    let response = reqwest::get(format!("http://{}/metrics", server.local_addr()))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()[reqwest::header::CONTENT_TYPE].clone();
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    let scraped = response.text().await.unwrap();

    // The holder's `blpop` is not part of the capture.
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
    sequence.delete_keys().await;
}
