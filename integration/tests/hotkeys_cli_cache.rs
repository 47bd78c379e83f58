//! `baseplate-hotkeys top --metrics-url` against a real service: a facade whose client `foo`
//! caches a hot key on the real cluster and serves `/metrics` over HTTP, scraped by the command
//! (run in process) next to a URL that refuses connections.
//!
//! The only test of its binary: the client records into the process's global series, which the
//! service serves whole.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use baseplate::{Baseplate, ClusterRedisClient, RawConfig};
use baseplate_hotkeys_cli::{Cli, run};
use baseplate_redis_cluster::{CacheStats, MonitoredClusterRedisConnection};
use clap::Parser as _;
use integration::{cluster, eventually, unique_prefix};
use redis::AsyncCommands as _;

/// `baseplate-hotkeys top --url URL ARGS --timeout-secs 5`: what it prints.
async fn top(url: &str, args: &[&str]) -> String {
    let cli = Cli::try_parse_from(
        [
            "baseplate-hotkeys",
            "top",
            "--url",
            url,
            "--timeout-secs",
            "5",
        ]
        .iter()
        .chain(args),
    )
    .unwrap();
    run(cli).await.unwrap()
}

/// Reads `key` through `foo` until the cache has answered a read from memory.
async fn read_until_cached(foo: &mut MonitoredClusterRedisConnection, key: &str) {
    let cached = eventually(Duration::from_secs(30), async || {
        for _ in 0..50 {
            let _: Option<String> = foo.get(key).await.unwrap();
        }
        foo.cache_stats().unwrap().hits > 0
    })
    .await;
    assert!(cached.is_some(), "{key} was never served from the cache");
}

/// A local port nothing listens on: one the system just handed out and took back.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// The table row the command prints for `foo` with `stats`, ending in `url`.
fn row(stats: CacheStats, url: &str) -> String {
    #[allow(clippy::cast_precision_loss)]
    let share = stats.hits as f64 / (stats.hits + stats.misses) as f64 * 100.0;
    format!(
        "foo     {:>10}  {:>10}  {:>13}  {:>9}  {url}",
        stats.hits,
        stats.misses,
        stats.invalidations,
        format!("{share:.1}%"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_with_metrics_urls_shows_the_services_cache_hit_share_and_the_url_that_failed() {
    let on = cluster();
    let config: RawConfig = [("foo.url", on.url()), ("foo.cache_hot_keys", "true")]
        .into_iter()
        .collect();
    let mut baseplate = Baseplate::new(config);
    baseplate.configure_observers().unwrap();
    baseplate
        .configure_context("foo", ClusterRedisClient::new())
        .unwrap();
    let server = baseplate
        .serve_prometheus("127.0.0.1:0")
        .await
        .unwrap()
        .expect("metrics.enabled is not false");
    let mut foo = baseplate
        .make_context_object()
        .redis_cluster("foo")
        .unwrap();
    let key = format!("{}hot", unique_prefix("cli-cache"));
    read_until_cached(&mut foo, &key).await;

    let metrics_url = format!("http://{}/metrics", server.local_addr());
    let port = closed_port();
    let refused = format!("http://scraper:hunter2@127.0.0.1:{port}/metrics");
    let args = ["--metrics-url", &metrics_url, "--metrics-url", &refused];

    // Nothing reads through foo any more, so its counters hold still; should anything move them
    // while the command runs, the command runs again and is held to the counters it then saw.
    let mut compared = false;
    for _ in 0..5 {
        let before = foo.cache_stats().unwrap();
        let text = top(on.url(), &args).await;
        if foo.cache_stats().unwrap() != before {
            continue;
        }
        let section = text
            .split_once("\n\ncache (")
            .map(|(_, section)| section)
            .unwrap_or_else(|| panic!("no cache section in\n{text}"));
        let lines: Vec<&str> = section.lines().collect();
        assert_eq!(
            lines,
            [
                "redis_client_cache_*_total from 2 metrics URLs):",
                "client        hits      misses  invalidations  hit share  url",
                &row(before, &metrics_url),
                &row(before, "(sum of 1 URL)"),
                lines[4],
            ],
            "{text}"
        );
        let failed = format!("http://scraper:***@127.0.0.1:{port}/metrics: cannot connect: ");
        assert!(lines[4].starts_with(&failed), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
        compared = true;
        break;
    }
    assert!(compared, "foo's cache counters kept moving with no reads");

    // The same under "cache" in --json; the counters only grow.
    let before = foo.cache_stats().unwrap();
    let json = top(on.url(), &[&args[..], &["--json"]].concat()).await;
    let report: serde_json::Value = serde_json::from_str(&json).unwrap();
    let urls = &report["cache"]["urls"];
    assert_eq!(urls[0]["url"], metrics_url.as_str(), "{report}");
    let clients = urls[0]["clients"].as_array().unwrap();
    assert_eq!(clients.len(), 1, "{report}");
    assert_eq!(clients[0]["client"], "foo", "{report}");
    assert!(
        clients[0]["hits"].as_u64().unwrap() >= before.hits,
        "{report}"
    );
    assert!(
        clients[0]["misses"].as_u64().unwrap() >= before.misses,
        "{report}"
    );
    let share = clients[0]["hit_share"].as_f64().unwrap();
    assert!(share > 0.0 && share < 1.0, "{report}");
    assert_eq!(
        urls[1]["url"],
        format!("http://scraper:***@127.0.0.1:{port}/metrics").as_str(),
        "{report}"
    );
    let error = urls[1]["error"].as_str().unwrap();
    assert!(error.starts_with("cannot connect: "), "{report}");
    assert_eq!(report["cache"]["sum"][0]["client"], "foo", "{report}");
    assert!(report["reads"]["set"].is_string(), "{report}");

    server.shutdown().await;
    on.delete(&[key]).await;
}
