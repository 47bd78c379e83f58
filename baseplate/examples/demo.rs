//! The demo service: an axum HTTP service with `BaseplateLayer`, configured from an INI file,
//! whose three routes use Redis, driven for a few seconds by HTTP traffic of its own over
//! loopback; then what the library saw: the hot keys the tracker found next to the ones the
//! traffic made hot, one request's trace with its Redis spans, the pool, and the Prometheus
//! series scraped from its own `/metrics` over HTTP.
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
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::{get, post};
use baseplate::{
    Baseplate, BaseplateLayer, ClusterRedisClient, RawConfig, RequestContext, SERVER_SPAN,
};
use baseplate_hotkeys::report::{fetch_report, render_text};
use indicatif::{ProgressBar, ProgressStyle};
use rand::RngExt as _;
use rand_distr::{Distribution as _, Zipf};
use redis::AsyncCommands as _;
use tokio::sync::oneshot;
use tracing::Subscriber;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::{Context, SubscriberExt as _};
use tracing_subscriber::registry::LookupSpan;

type BoxError = Box<dyn Error + Send + Sync>;

/// Users are drawn Zipf(1.0) from this many: user 1 gets about 10% of the draws.
const USERS: u64 = 10_000;

/// The traffic: the share of requests each route gets (the rest are `GET /users/{id}`).
const COUNTER_SHARE: f64 = 0.25;
const LEADERBOARD_SHARE: f64 = 0.15;

/// The keys the traffic makes hot on purpose, and which requests touch each.
const HOT_READS: [(&str, &str); 3] = [
    (
        "config:feature-flags",
        "every GET /users/{id} (60% of requests)",
    ),
    ("leaderboard:global", "every POST /leaderboard/{user} (15%)"),
    ("user:1", "GET /users/1 (~6%: Zipf rank 1)"),
];
const HOT_WRITES: [(&str, &str); 4] = [
    ("counter:page-views", "POST /counters/page-views (~22%)"),
    ("leaderboard:global", "every POST /leaderboard/{user} (15%)"),
    ("user:1", "GET /users/1 (~6%)"),
    ("user:1:views", "GET /users/1 (~6%)"),
];

// The service: what a team writes. Each handler takes the request's context from the layer; an
// error answers a 5xx, which the layer counts as the request's failure.

/// `GET /users/{id}`: a profile page. Reads the feature flags and the user, then records the
/// visit in a named pipeline whose two keys live in different slots.
async fn user(ctx: RequestContext, Path(id): Path<u64>) -> Result<String, StatusCode> {
    let mut foo = ctx
        .redis_cluster("foo")
        .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
    let _flags: Option<String> = foo.get("config:feature-flags").await.map_err(bad_gateway)?;
    let profile: BTreeMap<String, String> = foo
        .hgetall(format!("user:{id}"))
        .await
        .map_err(bad_gateway)?;
    let mut visit = foo.pipeline("visit");
    visit
        .hset(format!("user:{id}"), "last_seen", unix_seconds())
        .ignore()
        .incr(format!("user:{id}:views"), 1);
    let (views,): (u64,) = visit.query_async().await.map_err(bad_gateway)?;
    Ok(format!(
        "user {id}: {} fields, {views} views\n",
        profile.len()
    ))
}

/// `POST /counters/{name}`: counts up, answers the new count.
async fn count(ctx: RequestContext, Path(name): Path<String>) -> Result<String, StatusCode> {
    let mut foo = ctx
        .redis_cluster("foo")
        .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
    let count: u64 = foo
        .incr(format!("counter:{name}"), 1)
        .await
        .map_err(bad_gateway)?;
    Ok(format!("{count}\n"))
}

/// `POST /leaderboard/{user}`: a point for the user, and the top three, in one named pipeline.
async fn score(ctx: RequestContext, Path(user): Path<u64>) -> Result<String, StatusCode> {
    let foo = ctx
        .redis_cluster("foo")
        .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
    let mut leaderboard = foo.pipeline("leaderboard");
    leaderboard
        .zincr("leaderboard:global", format!("user:{user}"), 1)
        .ignore()
        .zrevrange_withscores("leaderboard:global", 0, 2);
    let (top,): (Vec<(String, f64)>,) = leaderboard.query_async().await.map_err(bad_gateway)?;
    Ok(top
        .iter()
        .map(|(user, score)| format!("{user} {score}\n"))
        .collect())
}

fn bad_gateway(_: redis::RedisError) -> StatusCode {
    StatusCode::BAD_GATEWAY
}

fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The routes, under the layer (`route_layer`: after routing, so the route names the request).
fn app(baseplate: &Baseplate) -> Router {
    Router::new()
        .route("/users/{id}", get(user))
        .route("/counters/{name}", post(count))
        .route("/leaderboard/{user}", post(score))
        .route_layer(BaseplateLayer::new(baseplate.clone()))
}

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
    // Metrics need no subscriber; this one only keeps one request's spans, to show them.
    let trace = TraceOne::default();
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(trace.clone()))?;
    baseplate.configure_context("foo", ClusterRedisClient::new())?;
    let metrics = baseplate
        .serve_prometheus("127.0.0.1:0")
        .await?
        .ok_or("the demo config says metrics.enabled = false")?;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = oneshot::channel::<()>();
    let server = axum::serve(listener, app(&baseplate)).with_graceful_shutdown(async {
        let _ = stopped.await;
    });
    let server = tokio::spawn(async move { server.await });
    println!("serving http://{addr} (Redis Cluster {url}):");
    println!("  GET /users/{{id}}, POST /counters/{{name}}, POST /leaderboard/{{user}}");
    println!(
        "\ndriving it with {} HTTP clients for {} s",
        args.workers, args.seconds
    );
    let stats = drive(addr, &args).await?;
    println!(
        "\n{} requests in {:.1} s ({:.0} requests/s), {} failed",
        stats.requests,
        stats.elapsed.as_secs_f64(),
        stats.requests as f64 / stats.elapsed.as_secs_f64(),
        stats.failed
    );
    for (route, count) in &stats.by_route {
        println!("  {route:<26} {count:>8}");
    }

    // One more request, now that the traffic is over, to show its trace.
    trace.arm();
    let response = reqwest::get(format!("http://{addr}/users/1")).await?;
    let status = response.status();
    let body = response.text().await?;
    println!(
        "\nOne request's trace: GET /users/1 answered {status}, {:?}\n",
        body.trim_end()
    );
    print!("{}", trace.render(Duration::from_secs(5)).await);

    let foo = baseplate.make_context_object().redis_cluster("foo")?;
    let pool = foo.pool_stats();
    println!(
        "\nThe pool of foo: size {}, in use {}, open connections {}, waiting {}",
        pool.size, pool.in_use, pool.open_connections, pool.waiting
    );
    let hot_reads = foo.hot_reads();

    let _ = stop.send(());
    server.await??;
    baseplate.shutdown().await; // the tracker's last flush, the last statsd lines

    println!("\nThe traffic made these keys hot:");
    for (title, keys) in [("reads", &HOT_READS[..]), ("writes", &HOT_WRITES[..])] {
        println!("  {title}:");
        for (key, share) in keys {
            println!("    {key:<22} {share}");
        }
    }
    println!("\nWhat the hot-key tracker recorded (baseplate-hot-key-tracker-reads/-writes):\n");
    let mut conn = redis::cluster::ClusterClient::new(vec![url.as_str()])?
        .get_async_connection()
        .await?;
    print!("{}", render_text(&fetch_report(&mut conn, 10).await?));
    if let Some(cache) = foo.cache_stats() {
        println!(
            "\nThe hot-key cache (foo.cache_hot_keys): {:.1}% of the reads of hot keys answered \
             from memory ({} hits, {} misses, {} invalidations), {} keys cached in {} bytes; {} \
             keys found hot, whose reads outside pipelines it answers; of the keys above:",
            100.0 * cache.hit_share(),
            cache.hits,
            cache.misses,
            cache.invalidations,
            cache.keys,
            cache.bytes,
            hot_reads.len()
        );
        for (key, _) in HOT_READS {
            let found = hot_reads.iter().any(|hot| hot.as_slice() == key.as_bytes());
            let cached = if found { "found hot" } else { "not found hot" };
            println!("    {key:<22} {cached}");
        }
    }

    let url = format!("http://{}/metrics", metrics.local_addr());
    let scraped = reqwest::get(&url).await?.text().await?;
    println!("\nThe Prometheus series, scraped from {url}:\n");
    print!("{}", prometheus_summary(&scraped));
    metrics.shutdown().await;
    Ok(())
}

/// The series' samples, histogram buckets left out (counted instead): what a dashboard plots.
fn prometheus_summary(text: &str) -> String {
    let mut out = String::new();
    let mut buckets = 0;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let name = line.split(['{', ' ']).next().unwrap_or_default();
        if name.ends_with("_bucket") {
            buckets += 1;
        } else {
            let _ = writeln!(out, "  {line}");
        }
    }
    let _ = writeln!(out, "  ({buckets} histogram bucket lines not shown)");
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
    failed: u64,
    by_route: BTreeMap<&'static str, u64>,
    elapsed: Duration,
}

/// Counts of requests, per route and failed, shared by the workers.
#[derive(Default)]
struct Counts {
    requests: AtomicU64,
    failed: AtomicU64,
    users: AtomicU64,
    counters: AtomicU64,
    leaderboard: AtomicU64,
}

/// Runs the HTTP clients until the time is up, with a progress bar of requests/s and failures.
async fn drive(addr: SocketAddr, args: &Args) -> Result<Stats, BoxError> {
    let http = reqwest::Client::new();
    let zipf = Zipf::new(USERS as f64, 1.0)?;
    let counts = Arc::new(Counts::default());
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.seconds);
    let workers: Vec<_> = (0..args.workers)
        .map(|_| {
            let (http, counts) = (http.clone(), Arc::clone(&counts));
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    let (request, counter) = next_request(&http, addr, zipf, &counts);
                    counter.fetch_add(1, Ordering::Relaxed);
                    let ok = match request.send().await {
                        Ok(response) => {
                            let ok = response.status().is_success();
                            ok && response.bytes().await.is_ok()
                        }
                        Err(_) => false,
                    };
                    if !ok {
                        counts.failed.fetch_add(1, Ordering::Relaxed);
                    }
                    counts.requests.fetch_add(1, Ordering::Relaxed);
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
        let done = counts.requests.load(Ordering::Relaxed);
        let rate = (done - last.1) as f64 / (now - last.0).as_secs_f64();
        last = (now, done);
        bar.set_position(started.elapsed().as_secs());
        bar.set_message(format!(
            "{rate:>6.0} requests/s, {done} requests, {} failed",
            counts.failed.load(Ordering::Relaxed)
        ));
    }
    for worker in workers {
        worker.await?;
    }
    bar.finish();
    let by_route = [
        ("GET /users/{id}", &counts.users),
        ("POST /counters/{name}", &counts.counters),
        ("POST /leaderboard/{user}", &counts.leaderboard),
    ]
    .into_iter()
    .map(|(route, n)| (route, n.load(Ordering::Relaxed)))
    .collect();
    Ok(Stats {
        requests: counts.requests.load(Ordering::Relaxed),
        failed: counts.failed.load(Ordering::Relaxed),
        by_route,
        elapsed: started.elapsed(),
    })
}

/// The next request of the mix, and the count of its route.
fn next_request<'a>(
    http: &reqwest::Client,
    addr: SocketAddr,
    zipf: Zipf<f64>,
    counts: &'a Counts,
) -> (reqwest::RequestBuilder, &'a AtomicU64) {
    let mut rng = rand::rng();
    let user = zipf.sample(&mut rng) as u64;
    let roll: f64 = rng.random();
    if roll < COUNTER_SHARE {
        let name = if rng.random_bool(0.9) {
            "page-views"
        } else {
            "signups"
        };
        (
            http.post(format!("http://{addr}/counters/{name}")),
            &counts.counters,
        )
    } else if roll < COUNTER_SHARE + LEADERBOARD_SHARE {
        (
            http.post(format!("http://{addr}/leaderboard/{user}")),
            &counts.leaderboard,
        )
    } else {
        (
            http.get(format!("http://{addr}/users/{user}")),
            &counts.users,
        )
    }
}

/// A `tracing` layer that keeps the spans of one request: the first server span that starts once
/// armed, and the spans under it, with their fields, to print as a tree.
#[derive(Clone, Default)]
struct TraceOne {
    state: Arc<TraceState>,
}

#[derive(Default)]
struct TraceState {
    /// Checked first by every new span, so the traffic before `arm` costs one load per span.
    armed: AtomicBool,
    trace: Mutex<Trace>,
}

#[derive(Default)]
struct Trace {
    /// The server span being kept, while it runs.
    root: Option<Id>,
    /// Numbers the kept spans, since the registry reuses the ids of closed spans.
    next: usize,
    closed: Vec<Closed>,
    done: bool,
}

/// A kept span, once closed.
struct Closed {
    seq: usize,
    parent: Option<usize>,
    name: String,
    fields: Vec<(&'static str, String)>,
    started: Instant,
    took: Duration,
}

/// What the layer keeps in a span's extensions while it runs.
struct Open {
    seq: usize,
    parent: Option<usize>,
    started: Instant,
    fields: Fields,
}

#[derive(Default)]
struct Fields(Vec<(&'static str, String)>);

impl Fields {
    fn set(&mut self, field: &Field, value: String) {
        match self.0.iter_mut().find(|(name, _)| *name == field.name()) {
            Some(slot) => slot.1 = value,
            None => self.0.push((field.name(), value)),
        }
    }
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.set(field, format!("{value:?}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.set(field, value.to_owned());
    }
}

impl TraceOne {
    /// Keeps the next request's spans.
    fn arm(&self) {
        self.state.armed.store(true, Ordering::Release);
    }

    /// The kept request as a tree, once its server span closed (waiting up to `wait`): each
    /// span's name (`otel.name`), duration and fields.
    async fn render(&self, wait: Duration) -> String {
        let deadline = Instant::now() + wait;
        loop {
            let done = self.state.trace.lock().map(|t| t.done).unwrap_or(true);
            if done || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let Ok(trace) = self.state.trace.lock() else {
            return String::new();
        };
        if !trace.done {
            return "  (the request's server span did not close)\n".to_owned();
        }
        let mut lines = Vec::new();
        let roots = trace.closed.iter().filter(|s| s.parent.is_none());
        for root in roots {
            tree(&trace.closed, root, "", "", &mut lines);
        }
        let width = lines
            .iter()
            .map(|(head, _)| head.chars().count())
            .max()
            .unwrap_or(0);
        let mut out = String::new();
        for (head, tail) in lines {
            let pad = width - head.chars().count();
            let line = format!("  {head}{:pad$}  {tail}", "");
            let _ = writeln!(out, "{}", line.trim_end());
        }
        out
    }
}

/// Appends `span` and its children, in the order they started, as lines of (tree and name,
/// duration and fields).
fn tree(
    spans: &[Closed],
    span: &Closed,
    lead: &str,
    indent: &str,
    out: &mut Vec<(String, String)>,
) {
    let name = span
        .fields
        .iter()
        .find(|(field, _)| *field == "otel.name")
        .map_or(span.name.as_str(), |(_, value)| value.as_str());
    let fields: Vec<String> = span
        .fields
        .iter()
        .filter(|(field, _)| !matches!(*field, "otel.name" | "otel.kind"))
        .map(|(field, value)| format!("{field}={value}"))
        .collect();
    let head = if span.parent.is_none() {
        format!("{name} ({})", span.name)
    } else {
        format!("{lead}{name}")
    };
    let tail = format!(
        "{:>7.3} ms  {}",
        span.took.as_secs_f64() * 1e3,
        fields.join(" ")
    );
    out.push((head, tail));
    let mut children: Vec<&Closed> = spans
        .iter()
        .filter(|s| s.parent == Some(span.seq))
        .collect();
    children.sort_by_key(|s| s.started);
    for (i, child) in children.iter().enumerate() {
        let last = i + 1 == children.len();
        let lead = format!("{indent}{}", if last { "└─ " } else { "├─ " });
        let indent = format!("{indent}{}", if last { "   " } else { "│  " });
        tree(spans, child, &lead, &indent, out);
    }
}

impl<S> Layer<S> for TraceOne
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if !self.state.armed.load(Ordering::Acquire) {
            return;
        }
        let Some(span) = ctx.span(id) else {
            return;
        };
        let Ok(mut trace) = self.state.trace.lock() else {
            return;
        };
        if trace.done {
            return;
        }
        if span.name() == SERVER_SPAN && trace.root.is_none() {
            trace.root = Some(id.clone());
        }
        let Some(root) = trace.root.clone() else {
            return;
        };
        if !span.scope().any(|s| s.id() == root) {
            return;
        }
        let parent = if *id == root {
            None
        } else {
            span.parent()
                .and_then(|p| p.extensions().get::<Open>().map(|open| open.seq))
        };
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        let seq = trace.next;
        trace.next += 1;
        span.extensions_mut().insert(Open {
            seq,
            parent,
            started: Instant::now(),
            fields,
        });
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id)
            && let Some(open) = span.extensions_mut().get_mut::<Open>()
        {
            values.record(&mut open.fields);
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else {
            return;
        };
        let Some(open) = span.extensions_mut().remove::<Open>() else {
            return;
        };
        if let Ok(mut trace) = self.state.trace.lock() {
            trace.closed.push(Closed {
                seq: open.seq,
                parent: open.parent,
                name: span.name().to_owned(),
                fields: open.fields.0,
                started: open.started,
                took: open.started.elapsed(),
            });
            if trace.root.as_ref() == Some(&id) {
                trace.done = true;
                self.state.armed.store(false, Ordering::Release);
            }
        }
    }
}
