//! The demo service: a baseplate service configured from an INI file, driven by its own traffic
//! generator for a few seconds, that then shows what the library saw: the hot keys the tracker
//! found next to the ones the generator made hot, the spans of one request, and the Prometheus
//! series it serves, scraped from its own `/metrics` over HTTP.
//!
//! `cargo xtask demo` runs it against a throwaway cluster with a statsd listener and adds the
//! statsd summary; by hand:
//!
//! ```text
//! cargo xtask cluster up
//! cargo run --release -p baseplate --example demo -- demo.ini [--seconds 20] [--workers 64]
//! ```

use std::collections::BTreeMap;
use std::error::Error;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use baseplate::{Baseplate, ClusterRedisClient, RawConfig, SERVER_SPAN};
use baseplate_hotkeys::report::{fetch_report, render_text};
use indicatif::{ProgressBar, ProgressStyle};
use rand::RngExt as _;
use rand_distr::{Distribution as _, Zipf};
use redis::AsyncCommands as _;
use tracing::Subscriber;
use tracing::span::{Attributes, Id};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::{Context, SubscriberExt as _};
use tracing_subscriber::registry::LookupSpan;

type BoxError = Box<dyn Error + Send + Sync>;

/// Users are drawn Zipf(1.0) from this many.
const USERS: u64 = 10_000;

/// The keys the generator makes hot on purpose, and how often a request touches each.
const HOT_READS: [(&str, &str); 3] = [
    ("config:feature-flags", "every request"),
    ("leaderboard:global", "30% of requests"),
    ("user:1", "~10% of requests (Zipf rank 1)"),
];
const HOT_WRITES: [(&str, &str); 3] = [
    ("counter:page-views", "every request"),
    ("leaderboard:global", "20% of requests"),
    ("user:1", "~10% of requests (Zipf rank 1)"),
];

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args = Args::parse()?;
    let config = RawConfig::from_ini_file(&args.config)?;
    let url = match config.get("foo.url").and_then(|v| v.as_str()) {
        Some(url) => url.to_owned(),
        None => return Err("the config has no foo.url".into()),
    };

    let mut baseplate = Baseplate::new(config);
    baseplate.configure_observers()?;
    // Metrics need no subscriber; this one only keeps one request's spans to show them.
    let sample = SampleRequest::default();
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(sample.clone()))?;
    baseplate.configure_context("foo", ClusterRedisClient::new())?;
    let metrics = baseplate
        .serve_prometheus("127.0.0.1:0")
        .await?
        .ok_or("the demo config says metrics.enabled = false")?;
    let baseplate = Arc::new(baseplate);

    println!(
        "driving {} workers for {} s against {url}",
        args.workers, args.seconds
    );
    let stats = drive(&baseplate, &args).await;
    baseplate.shutdown().await; // the tracker's last flush

    println!(
        "\n{} requests in {:.1} s ({:.0} requests/s), {} failed\n",
        stats.requests,
        stats.elapsed.as_secs_f64(),
        stats.requests as f64 / stats.elapsed.as_secs_f64(),
        stats.errors
    );
    println!("The generator made these keys hot:");
    for (title, keys) in [("reads", HOT_READS), ("writes", HOT_WRITES)] {
        println!("  {title}:");
        for (key, share) in keys {
            println!("    {key:<24} {share}");
        }
    }
    println!("\nWhat the hot-key tracker recorded (baseplate-hot-key-tracker-reads/-writes):\n");
    let mut conn = redis::cluster::ClusterClient::new(vec![url.as_str()])?
        .get_async_connection()
        .await?;
    print!("{}", render_text(&fetch_report(&mut conn, 10).await?));

    println!("\nThe spans of one request:\n");
    print!("{}", sample.render());

    let url = format!("http://{}/metrics", metrics.local_addr());
    let scraped = reqwest::get(&url).await?.text().await?;
    println!("\nThe redis_client_* series, scraped from {url}:\n");
    print!("{}", prometheus_summary(&scraped));
    metrics.shutdown().await;
    Ok(())
}

/// The series' lines, histogram buckets left out (counted instead): what a dashboard plots.
fn prometheus_summary(text: &str) -> String {
    let mut out = String::new();
    let mut buckets = 0;
    for line in text.lines().filter(|l| l.starts_with("redis_client_")) {
        if line.starts_with("redis_client_latency_seconds_bucket") {
            buckets += 1;
        } else {
            let _ = writeln!(out, "  {line}");
        }
    }
    let _ = writeln!(
        out,
        "  ({buckets} redis_client_latency_seconds_bucket lines not shown)"
    );
    out
}

struct Args {
    config: String,
    seconds: u64,
    workers: usize,
}

impl Args {
    fn parse() -> Result<Args, BoxError> {
        let mut args = std::env::args().skip(1);
        let mut parsed = Args {
            config: String::new(),
            seconds: 20,
            workers: 64,
        };
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--seconds" => {
                    parsed.seconds = args.next().ok_or("--seconds needs a value")?.parse()?
                }
                "--workers" => {
                    parsed.workers = args.next().ok_or("--workers needs a value")?.parse()?
                }
                _ if parsed.config.is_empty() => parsed.config = arg,
                other => return Err(format!("unexpected argument {other:?}").into()),
            }
        }
        if parsed.config.is_empty() {
            return Err("usage: demo CONFIG.ini [--seconds N] [--workers N]".into());
        }
        Ok(parsed)
    }
}

struct Stats {
    requests: u64,
    errors: u64,
    elapsed: Duration,
}

/// Runs the workers until the time is up, with a progress bar of requests/s and errors.
async fn drive(baseplate: &Arc<Baseplate>, args: &Args) -> Stats {
    let requests = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.seconds);
    let workers: Vec<_> = (0..args.workers)
        .map(|_| {
            let (baseplate, requests, errors) = (
                Arc::clone(baseplate),
                Arc::clone(&requests),
                Arc::clone(&errors),
            );
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    if let Err(error) = request(&baseplate).await
                        && errors.fetch_add(1, Ordering::Relaxed) == 0
                    {
                        eprintln!("first error: {error}");
                    }
                    requests.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();

    let bar = ProgressBar::new(args.seconds);
    bar.set_style(
        ProgressStyle::with_template("{elapsed:>3} [{bar:30}] {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let mut last = (Instant::now(), 0);
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = Instant::now();
        let done = requests.load(Ordering::Relaxed);
        let rate = (done - last.1) as f64 / (now - last.0).as_secs_f64();
        last = (now, done);
        bar.set_position(started.elapsed().as_secs());
        bar.set_message(format!(
            "{rate:>7.0} requests/s, {done} requests, {} errors",
            errors.load(Ordering::Relaxed)
        ));
    }
    for worker in workers {
        let _ = worker.await;
    }
    bar.finish();
    Stats {
        requests: requests.load(Ordering::Relaxed),
        errors: errors.load(Ordering::Relaxed),
        elapsed: started.elapsed(),
    }
}

/// One request: a few reads and writes and a named pipeline, as a page view might do.
async fn request(baseplate: &Baseplate) -> Result<(), BoxError> {
    let (user, leaderboard, bump) = {
        let mut rng = rand::rng();
        let zipf = Zipf::new(USERS as f64, 1.0).map_err(|e| e.to_string())?;
        (
            zipf.sample(&mut rng) as u64,
            rng.random_bool(0.3),
            rng.random_bool(0.2),
        )
    };
    baseplate
        .server_context("page_view", |ctx| async move {
            let mut foo = ctx.redis_cluster("foo")?;
            let user_key = format!("user:{user}");
            let _: Option<String> = foo.get("config:feature-flags").await?;
            let _: BTreeMap<String, String> = foo.hgetall(&user_key).await?;
            if leaderboard {
                let _: Vec<(String, f64)> =
                    foo.zrevrange_withscores("leaderboard:global", 0, 9).await?;
            }
            let _: i64 = foo.incr("counter:page-views", 1).await?;
            if bump {
                let _: f64 = foo.zincr("leaderboard:global", &user_key, 1).await?;
            }
            let session: u64 = rand::rng().random();
            let mut visit = foo.pipeline("visit");
            visit
                .set_ex(format!("session:{session:x}"), user, 60)
                .ignore()
                .hset(&user_key, "last_seen", session)
                .ignore();
            let () = visit.query_async().await?;
            Ok::<_, BoxError>(())
        })
        .await
}

/// Records the spans of the first request that finishes, to print them as a tree.
#[derive(Clone, Default)]
struct SampleRequest {
    spans: Arc<Mutex<Sample>>,
}

#[derive(Default)]
struct Sample {
    /// The first server span seen, while it runs.
    server: Option<Id>,
    /// Finished spans of it: (name, duration), the server span last.
    finished: Vec<(String, Duration)>,
    done: bool,
}

struct Started(Instant, String);

impl SampleRequest {
    fn render(&self) -> String {
        let Ok(sample) = self.spans.lock() else {
            return String::new();
        };
        let mut out = String::new();
        let Some(((server, took), children)) = sample.finished.split_last() else {
            return "  (no request finished)\n".to_owned();
        };
        let _ = writeln!(out, "  {server} (server span) {:.2} ms", ms(*took));
        for (i, (name, took)) in children.iter().enumerate() {
            let branch = if i + 1 == children.len() {
                "└─"
            } else {
                "├─"
            };
            let _ = writeln!(out, "  {branch} {name} {:.2} ms", ms(*took));
        }
        out
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl<S> Layer<S> for SampleRequest
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Ok(mut sample) = self.spans.lock() else {
            return;
        };
        if sample.done {
            return;
        }
        let Some(span) = ctx.span(id) else {
            return;
        };
        let is_server = span.name() == SERVER_SPAN;
        if is_server && sample.server.is_none() {
            sample.server = Some(id.clone());
        }
        let inside = span
            .scope()
            .any(|s| Some(&s.id()) == sample.server.as_ref());
        if inside {
            let mut name = NameVisitor(span.name().to_owned());
            attrs.record(&mut name);
            span.extensions_mut()
                .insert(Started(Instant::now(), name.0));
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else {
            return;
        };
        let Some(Started(at, name)) = span.extensions_mut().remove::<Started>() else {
            return;
        };
        if let Ok(mut sample) = self.spans.lock() {
            sample.finished.push((name, at.elapsed()));
            if sample.server.as_ref() == Some(&id) {
                sample.done = true;
            }
        }
    }
}

/// Takes `otel.name` (`foo.GET`, the route) as the span's name when present.
struct NameVisitor(String);

impl tracing::field::Visit for NameVisitor {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "otel.name" {
            self.0 = format!("{value:?}");
        }
    }

    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "otel.name" {
            value.clone_into(&mut self.0);
        }
    }
}
