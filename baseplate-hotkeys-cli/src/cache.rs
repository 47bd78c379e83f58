//! The `--metrics-url` section: the hot-key cache's counters (`redis_client_cache_*_total`) scraped
//! from services' Prometheus `/metrics`, per URL and client, and their text rendering.

use std::collections::BTreeMap;
use std::error::Error as _;
use std::fmt::Write as _;
use std::time::Duration;

use prometheus_parse::{Scrape, Value};
use serde::Serialize;

/// The cache's counters of one client (a `redis_pool` label), as its process counted them.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub(crate) struct CacheCounters {
    pub(crate) hits: u64,
    pub(crate) misses: u64,
    pub(crate) invalidations: u64,
}

impl CacheCounters {
    /// hits / (hits + misses), or `None` before the cache answered or missed a read.
    pub(crate) fn hit_share(&self) -> Option<f64> {
        let reads = self.hits.saturating_add(self.misses);
        // Counts far below 2^52 convert exactly; a share needs no more precision than that.
        #[allow(clippy::cast_precision_loss)]
        (reads > 0).then(|| self.hits as f64 / reads as f64)
    }

    fn add(&mut self, other: CacheCounters) {
        self.hits = self.hits.saturating_add(other.hits);
        self.misses = self.misses.saturating_add(other.misses);
        self.invalidations = self.invalidations.saturating_add(other.invalidations);
    }
}

/// What one `--metrics-url` gave: the counters per client, or why there are none.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Scraped {
    /// The URL as given, its password shown as `***`.
    pub(crate) url: String,
    pub(crate) clients: Result<BTreeMap<String, CacheCounters>, String>,
}

/// The counters' names, as the cluster client exposes them.
const HITS: &str = "redis_client_cache_hits_total";
const MISSES: &str = "redis_client_cache_misses_total";
const INVALIDATIONS: &str = "redis_client_cache_invalidations_total";

/// Scrapes every URL concurrently, each within `timeout`; the results in the order of `urls`.
pub(crate) async fn scrape_all(urls: &[String], timeout: Duration) -> Vec<Scraped> {
    let client = reqwest::Client::builder()
        .connect_timeout(timeout)
        .timeout(timeout)
        .build();
    let client = match client {
        Ok(client) => client,
        Err(e) => {
            let why = format!("cannot make an HTTP client: {}", describe(&e));
            return urls.iter().map(|url| failed(url, why.clone())).collect();
        }
    };
    let mut tasks = tokio::task::JoinSet::new();
    for (i, url) in urls.iter().enumerate() {
        let (client, url) = (client.clone(), url.clone());
        tasks.spawn(async move { (i, scrape(&client, &url, timeout).await) });
    }
    let mut scraped: Vec<Option<Scraped>> = vec![None; urls.len()];
    while let Some(joined) = tasks.join_next().await {
        if let Ok((i, result)) = joined {
            scraped[i] = Some(result);
        }
    }
    urls.iter()
        .zip(scraped)
        .map(|(url, result)| {
            result.unwrap_or_else(|| failed(url, "the scrape stopped unexpectedly".to_owned()))
        })
        .collect()
}

/// Renders the section that follows the sets: a header, then per URL and client the counters and
/// the hit share (with a sum per client when several URLs were given), and a line per failed URL.
pub(crate) fn render_cache_text(scraped: &[Scraped]) -> String {
    let plural = if scraped.len() == 1 { "" } else { "s" };
    let mut out = format!(
        "cache (redis_client_cache_*_total from {} metrics URL{plural}):\n",
        scraped.len()
    );
    let rows = rows(scraped);
    if !rows.is_empty() {
        let client_width = rows
            .iter()
            .map(|row| row.client.len())
            .max()
            .unwrap_or(0)
            .max("client".len());
        let _ = writeln!(
            out,
            "{:<client_width$}  {:>10}  {:>10}  {:>13}  {:>9}  url",
            "client", "hits", "misses", "invalidations", "hit share"
        );
        for row in rows {
            let _ = writeln!(out, "{}", row_line(&row, client_width));
        }
    }
    for scrape in scraped {
        if let Err(why) = &scrape.clients {
            let _ = writeln!(out, "{}: {why}", scrape.url);
        }
    }
    out
}

/// The `cache` value of the `--json` report.
pub(crate) fn cache_json(scraped: &[Scraped]) -> JsonCache {
    JsonCache {
        urls: scraped
            .iter()
            .map(|scrape| match &scrape.clients {
                Ok(clients) => JsonUrl {
                    url: scrape.url.clone(),
                    clients: Some(
                        clients
                            .iter()
                            .map(|(name, counters)| JsonClient::new(name, *counters))
                            .collect(),
                    ),
                    error: None,
                },
                Err(why) => JsonUrl {
                    url: scrape.url.clone(),
                    clients: None,
                    error: Some(why.clone()),
                },
            })
            .collect(),
        sum: (scraped.len() > 1).then(|| {
            sums(scraped)
                .into_iter()
                .map(|(name, (counters, _))| JsonClient::new(name, counters))
                .collect()
        }),
    }
}

/// The `cache` object: per URL its clients or its error; `sum` per client when several URLs were given.
#[derive(Debug, Serialize)]
pub(crate) struct JsonCache {
    urls: Vec<JsonUrl>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sum: Option<Vec<JsonClient>>,
}

#[derive(Debug, Serialize)]
struct JsonUrl {
    url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    clients: Option<Vec<JsonClient>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Debug, Serialize)]
struct JsonClient {
    client: String,
    #[serde(flatten)]
    counters: CacheCounters,
    /// 0..=1 like the keys' `share`; `null` before any read.
    hit_share: Option<f64>,
}

impl JsonClient {
    fn new(name: &str, counters: CacheCounters) -> Self {
        JsonClient {
            client: name.to_owned(),
            counters,
            hit_share: counters.hit_share(),
        }
    }
}

fn failed(url: &str, why: String) -> Scraped {
    Scraped {
        url: baseplate_config::secret::redact_url(url).into_owned(),
        clients: Err(why),
    }
}

async fn scrape(client: &reqwest::Client, url: &str, timeout: Duration) -> Scraped {
    Scraped {
        url: baseplate_config::secret::redact_url(url).into_owned(),
        clients: fetch(client, url, timeout)
            .await
            .and_then(|text| parse(&text)),
    }
}

/// The body of `url`, or why there is none. Messages never carry the URL (the caller shows it
/// redacted).
async fn fetch(client: &reqwest::Client, url: &str, timeout: Duration) -> Result<String, String> {
    let https = url
        .get(.."https://".len())
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("https://"));
    if https {
        // baseplate serves /metrics over plain HTTP, so the command carries no HTTPS client.
        return Err("https is not supported: give the plain http:// metrics URL".to_owned());
    }
    let response = client.get(url).send().await.map_err(|e| {
        if e.is_timeout() {
            format!("no answer within {timeout:?}")
        } else if e.is_builder() {
            format!("invalid metrics URL: {}", describe(&e))
        } else if e.is_connect() {
            format!("cannot connect: {}", root_cause(&e))
        } else {
            format!("cannot scrape: {}", describe(&e))
        }
    })?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("HTTP {status}, not a metrics page"));
    }
    response.text().await.map_err(|e| {
        if e.is_timeout() {
            format!("no answer within {timeout:?}")
        } else {
            format!("cannot read the response: {}", describe(&e))
        }
    })
}

/// The cache counters per client in a Prometheus text.
fn parse(text: &str) -> Result<BTreeMap<String, CacheCounters>, String> {
    let scrape = Scrape::parse(text.lines().map(|line| Ok(line.to_owned())))
        .map_err(|e| format!("not Prometheus text: {e}"))?;
    if scrape.samples.is_empty() {
        return Err("not Prometheus text (no samples)".to_owned());
    }
    let mut clients: BTreeMap<String, CacheCounters> = BTreeMap::new();
    for sample in &scrape.samples {
        let (Some(pool), Some(value)) = (sample.labels.get("redis_pool"), number(&sample.value))
        else {
            continue;
        };
        if ![HITS, MISSES, INVALIDATIONS].contains(&sample.metric.as_str()) {
            continue;
        }
        let counters = clients.entry(pool.to_owned()).or_default();
        let slot = match sample.metric.as_str() {
            HITS => &mut counters.hits,
            MISSES => &mut counters.misses,
            _ => &mut counters.invalidations,
        };
        *slot = slot.saturating_add(value);
    }
    if clients.is_empty() {
        return Err(format!(
            "no {HITS} series (no client there has cache_hot_keys on)"
        ));
    }
    Ok(clients)
}

/// A counter's value as a count; a negative or non-finite value (never a counter's) counts 0.
fn number(value: &Value) -> Option<u64> {
    match value {
        Value::Counter(v) | Value::Untyped(v) | Value::Gauge(v) => {
            // The float-to-int `as` saturates; counters hold whole numbers.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let count = if v.is_finite() {
                v.max(0.0).round() as u64
            } else {
                0
            };
            Some(count)
        }
        _ => None,
    }
}

/// An error's causes, without the URL reqwest puts in its own message.
fn describe(e: &reqwest::Error) -> String {
    let mut causes = Vec::new();
    let mut cause: Option<&dyn std::error::Error> = e.source();
    while let Some(inner) = cause {
        causes.push(inner.to_string());
        cause = inner.source();
    }
    if causes.is_empty() {
        e.to_string()
    } else {
        causes.join(": ")
    }
}

/// The innermost cause (for a refused connection, the operating system's words).
fn root_cause(e: &reqwest::Error) -> String {
    let mut cause: &dyn std::error::Error = e;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    cause.to_string()
}

struct Row<'a> {
    client: &'a str,
    counters: CacheCounters,
    url: String,
}

/// The table's rows: each URL's clients in order, then the sums when several URLs were given.
fn rows(scraped: &[Scraped]) -> Vec<Row<'_>> {
    let mut rows: Vec<Row<'_>> = scraped
        .iter()
        .filter_map(|scrape| Some((scrape, scrape.clients.as_ref().ok()?)))
        .flat_map(|(scrape, clients)| {
            clients.iter().map(|(client, counters)| Row {
                client,
                counters: *counters,
                url: scrape.url.clone(),
            })
        })
        .collect();
    if scraped.len() > 1 {
        for (client, (counters, urls)) in sums(scraped) {
            let plural = if urls == 1 { "" } else { "s" };
            rows.push(Row {
                client,
                counters,
                url: format!("(sum of {urls} URL{plural})"),
            });
        }
    }
    rows
}

/// Per client, its counters summed over the URLs that answered, and how many URLs that is.
fn sums(scraped: &[Scraped]) -> BTreeMap<&str, (CacheCounters, usize)> {
    let mut sums: BTreeMap<&str, (CacheCounters, usize)> = BTreeMap::new();
    for clients in scraped.iter().filter_map(|s| s.clients.as_ref().ok()) {
        for (client, counters) in clients {
            let (sum, urls) = sums.entry(client).or_default();
            sum.add(*counters);
            *urls += 1;
        }
    }
    sums
}

fn row_line(row: &Row<'_>, client_width: usize) -> String {
    let share = row
        .counters
        .hit_share()
        .map_or_else(|| "-".to_owned(), |share| format!("{:.1}%", share * 100.0));
    format!(
        "{:<client_width$}  {:>10}  {:>10}  {:>13}  {share:>9}  {}",
        row.client, row.counters.hits, row.counters.misses, row.counters.invalidations, row.url
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const METRICS: &str = "\
# HELP redis_client_cache_hits Reads answered from the cache.
# TYPE redis_client_cache_hits counter
redis_client_cache_hits_total{redis_pool=\"foo\"} 912
redis_client_cache_hits_total{redis_pool=\"bar\"} 0
# TYPE redis_client_cache_misses counter
redis_client_cache_misses_total{redis_pool=\"foo\"} 88
redis_client_cache_misses_total{redis_pool=\"bar\"} 0
# TYPE redis_client_cache_invalidations counter
redis_client_cache_invalidations_total{redis_pool=\"foo\"} 3
redis_client_cache_invalidations_total{redis_pool=\"bar\"} 0
# TYPE redis_client_pool_max_size gauge
redis_client_pool_max_size{redis_pool=\"foo\"} 50
# EOF
";

    fn counters(hits: u64, misses: u64, invalidations: u64) -> CacheCounters {
        CacheCounters {
            hits,
            misses,
            invalidations,
        }
    }

    fn scraped(url: &str, text: &str) -> Scraped {
        Scraped {
            url: url.to_owned(),
            clients: parse(text),
        }
    }

    #[test]
    fn the_cache_series_are_read_per_client() {
        let clients = parse(METRICS).unwrap();
        assert_eq!(clients["foo"], counters(912, 88, 3));
        assert_eq!(clients["bar"], counters(0, 0, 0));
        assert_eq!(clients.len(), 2);
        assert_eq!(clients["foo"].hit_share(), Some(0.912));
        assert_eq!(clients["bar"].hit_share(), None);
    }

    #[test]
    fn a_page_without_cache_series_or_not_prometheus_says_so() {
        assert_eq!(
            parse("redis_client_pool_max_size{redis_pool=\"foo\"} 50\n"),
            Err(
                "no redis_client_cache_hits_total series (no client there has cache_hot_keys on)"
                    .to_owned()
            )
        );
        assert_eq!(
            parse("<html><body>Not here</body></html>\n"),
            Err("not Prometheus text (no samples)".to_owned())
        );
    }

    #[test]
    fn one_url_is_a_table_without_sums() {
        let text = render_cache_text(&[scraped("http://10.0.0.5:6060/metrics", METRICS)]);
        assert_eq!(
            text,
            "cache (redis_client_cache_*_total from 1 metrics URL):\n\
             client        hits      misses  invalidations  hit share  url\n\
             bar              0           0              0          -  http://10.0.0.5:6060/metrics\n\
             foo            912          88              3      91.2%  http://10.0.0.5:6060/metrics\n"
        );
    }

    #[test]
    fn several_urls_add_a_sum_per_client_and_a_line_per_failed_url() {
        let other = "\
redis_client_cache_hits_total{redis_pool=\"foo\"} 88
redis_client_cache_misses_total{redis_pool=\"foo\"} 12
redis_client_cache_invalidations_total{redis_pool=\"foo\"} 3
";
        let text = render_cache_text(&[
            scraped("http://a:6060/metrics", METRICS),
            scraped("http://b:6060/metrics", other),
            failed(
                "http://u:s3cret@c:6060/metrics",
                "no answer within 2s".to_owned(),
            ),
        ]);
        assert_eq!(
            text,
            "cache (redis_client_cache_*_total from 3 metrics URLs):\n\
             client        hits      misses  invalidations  hit share  url\n\
             bar              0           0              0          -  http://a:6060/metrics\n\
             foo            912          88              3      91.2%  http://a:6060/metrics\n\
             foo             88          12              3      88.0%  http://b:6060/metrics\n\
             bar              0           0              0          -  (sum of 1 URL)\n\
             foo           1000         100              6      90.9%  (sum of 2 URLs)\n\
             http://u:***@c:6060/metrics: no answer within 2s\n"
        );
    }

    #[test]
    fn only_failures_print_no_table() {
        let text = render_cache_text(&[failed(
            "http://c:1/metrics",
            "cannot connect: Connection refused (os error 111)".to_owned(),
        )]);
        assert_eq!(
            text,
            "cache (redis_client_cache_*_total from 1 metrics URL):\n\
             http://c:1/metrics: cannot connect: Connection refused (os error 111)\n"
        );
    }

    #[test]
    fn json_has_each_url_and_the_sums() {
        let json = cache_json(&[
            scraped("http://a/metrics", METRICS),
            failed(
                "http://b/metrics",
                "HTTP 404 Not Found, not a metrics page".to_owned(),
            ),
        ]);
        let expected = serde_json::json!({
            "urls": [
                {
                    "url": "http://a/metrics",
                    "clients": [
                        {"client": "bar", "hits": 0, "misses": 0, "invalidations": 0, "hit_share": null},
                        {"client": "foo", "hits": 912, "misses": 88, "invalidations": 3, "hit_share": 0.912},
                    ],
                },
                {"url": "http://b/metrics", "error": "HTTP 404 Not Found, not a metrics page"},
            ],
            "sum": [
                {"client": "bar", "hits": 0, "misses": 0, "invalidations": 0, "hit_share": null},
                {"client": "foo", "hits": 912, "misses": 88, "invalidations": 3, "hit_share": 0.912},
            ],
        });
        assert_eq!(serde_json::to_value(&json).unwrap(), expected);
        // One URL: nothing to sum.
        let one = cache_json(&[scraped("http://a/metrics", METRICS)]);
        assert!(serde_json::to_value(&one).unwrap().get("sum").is_none());
    }

    #[tokio::test]
    async fn a_service_that_never_answers_is_a_timeout() {
        // Accepts connections and reads nothing: a request there waits until the timeout.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let silent_url = format!("http://{}/metrics", silent.local_addr().unwrap());
        let held = tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((stream, _)) = silent.accept().await {
                open.push(stream);
            }
        });
        let scraped = scrape_all(std::slice::from_ref(&silent_url), Duration::from_secs(1)).await;
        held.abort();
        assert_eq!(
            scraped,
            [Scraped {
                url: silent_url,
                clients: Err("no answer within 1s".to_owned()),
            }]
        );
    }

    #[tokio::test]
    async fn a_refused_url_is_a_line_naming_it_redacted() {
        let scraped = scrape_all(
            &[
                "http://user:hunter2@127.0.0.1:1/metrics".to_owned(),
                "not a url".to_owned(),
                "https://127.0.0.1:1/metrics".to_owned(),
            ],
            Duration::from_secs(2),
        )
        .await;
        assert_eq!(scraped[0].url, "http://user:***@127.0.0.1:1/metrics");
        let why = scraped[0].clients.as_ref().unwrap_err();
        assert!(why.starts_with("cannot connect: "), "{why}");
        assert!(!why.contains("hunter2"), "{why}");
        assert_eq!(scraped[1].url, "not a url");
        let why = scraped[1].clients.as_ref().unwrap_err();
        assert_eq!(why, "invalid metrics URL: relative URL without a base");
        assert_eq!(
            scraped[2].clients,
            Err("https is not supported: give the plain http:// metrics URL".to_owned())
        );
    }
}
