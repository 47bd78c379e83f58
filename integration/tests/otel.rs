//! The spans an OpenTelemetry backend receives from a service behind the tower layer, exported
//! through tracing-opentelemetry to the SDK's in-memory exporter: Redis spans with the database
//! semantic conventions, children of the request's server span (or of the handler's own span
//! inside it), and server spans that continue the trace named by `traceparent` or baseplate's
//! `X-Trace` headers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use baseplate::{
    Baseplate, BaseplateLayer, ClusterRedisClient, MonitoredClusterRedisConnection, RawConfig,
    RequestContext,
};
use integration::{cluster, eventually, unique_prefix};
use opentelemetry::trace::{
    SpanId, SpanKind, Status, TraceContextExt as _, TraceId, TracerProvider as _,
};
use opentelemetry::{KeyValue, Value};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use redis::AsyncCommands as _;
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::layer::SubscriberExt as _;

/// The process's subscriber: tracing-opentelemetry over the SDK, exporting each span as it ends
/// into memory. Installed once, as `tracing` caches which callsites a subscriber wants; each test
/// picks its own spans out by trace id.
fn exporter() -> &'static InMemorySpanExporter {
    static EXPORTER: OnceLock<InMemorySpanExporter> = OnceLock::new();
    EXPORTER.get_or_init(|| {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        // Only the attributes the service sets, so the tests can compare them exactly.
        let layer = tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("otel-test"))
            .with_location(false)
            .with_threads(false)
            .with_target(false)
            .with_tracked_inactivity(false);
        tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer))
            .expect("no other global subscriber in this test binary");
        exporter
    })
}

/// The service under test: `foo` reads from primaries only (so a read's node is known), `bar`
/// from replicas too (baseplate's default).
struct Service {
    addr: SocketAddr,
    prefix: Arc<str>,
    server: tokio::task::JoinHandle<()>,
}

impl Service {
    async fn start(test: &str) -> Service {
        exporter();
        let config: RawConfig = [
            ("foo.url", cluster().url()),
            ("foo.read_from_replicas", "false"),
            ("bar.url", cluster().url()),
        ]
        .into_iter()
        .collect();
        let mut baseplate = Baseplate::new(config);
        baseplate
            .configure_context("foo", ClusterRedisClient::new())
            .unwrap();
        baseplate
            .configure_context("bar", ClusterRedisClient::new())
            .unwrap();
        let prefix: Arc<str> = unique_prefix(test).into();
        let app = Router::new()
            .route("/conventions", get(conventions))
            .route("/get", get(plain_get))
            .route("/nested", get(nested))
            .route_layer(BaseplateLayer::new(baseplate))
            .with_state(Arc::clone(&prefix));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Service {
            addr,
            prefix,
            server,
        }
    }

    /// GETs `path` with `headers`; the body is the server span's trace and span ids, and
    /// whatever the handler adds.
    async fn get(&self, path: &str, headers: &[(&str, String)]) -> Reply {
        let mut request = reqwest::Client::new().get(format!("http://{}{path}", self.addr));
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        let body = response.text().await.unwrap();
        let mut lines = body.lines();
        let trace = TraceId::from_hex(lines.next().unwrap()).unwrap();
        let span = SpanId::from_hex(lines.next().unwrap()).unwrap();
        Reply {
            trace,
            span,
            rest: lines.map(str::to_owned).collect(),
        }
    }

    /// Stops the service and deletes the keys it made, named after its prefix.
    async fn stop(self, suffixes: &[&str]) {
        self.server.abort();
        let keys: Vec<String> = suffixes
            .iter()
            .map(|suffix| format!("{}{suffix}", self.prefix))
            .collect();
        cluster().delete(&keys).await;
    }
}

struct Reply {
    /// The server span's trace id.
    trace: TraceId,
    /// The server span's id.
    span: SpanId,
    /// The handler's other lines.
    rest: Vec<String>,
}

/// The server span's ids as the handler sees them, the first two lines of every body.
fn ids() -> String {
    let cx = tracing::Span::current().context();
    let span = cx.span();
    let context = span.span_context();
    format!("{}\n{}\n", context.trace_id(), context.span_id())
}

fn foo(ctx: &RequestContext, name: &str) -> MonitoredClusterRedisConnection {
    ctx.redis_cluster(name).unwrap()
}

/// Keys spread over several primaries.
fn spread_keys(prefix: &str) -> Vec<String> {
    (0..12).map(|i| format!("{prefix}spread{i}")).collect()
}

/// A GET, a SET, an LPUSH that fails with `WRONGTYPE`, a pipeline over several nodes, a
/// transaction, and a GET that may go to a replica. Answers the LPUSH's error.
async fn conventions(ctx: RequestContext, State(prefix): State<Arc<str>>) -> String {
    let mut foo = foo(&ctx, "foo");
    let string = format!("{prefix}string");
    let _: Option<String> = foo.get(&string).await.unwrap();
    let () = foo.set(&string, "x").await.unwrap();
    let error = foo.lpush::<_, _, i64>(&string, "y").await.unwrap_err();
    let mut spread = foo.pipeline("spread");
    for key in spread_keys(&prefix) {
        spread.set(key, 1).ignore();
    }
    let () = spread.query_async().await.unwrap();
    let mut tx = foo.transaction("tx");
    tx.incr(format!("{prefix}{{t}}a"), 1)
        .ignore()
        .set(format!("{prefix}{{t}}b"), 1)
        .ignore();
    let () = tx.query_async().await.unwrap();
    let mut bar = ctx.redis_cluster("bar").unwrap();
    let _: Option<String> = bar.get(&string).await.unwrap();
    format!("{}{error}", ids())
}

async fn plain_get(ctx: RequestContext, State(prefix): State<Arc<str>>) -> String {
    let _: Option<String> = foo(&ctx, "foo")
        .get(format!("{prefix}plain"))
        .await
        .unwrap();
    ids()
}

/// A GET in the handler's own instrumented function, and one in a span that is not the
/// request's.
async fn nested(ctx: RequestContext, State(prefix): State<Arc<str>>) -> String {
    let mut foo = foo(&ctx, "foo");
    let body = ids();
    lookup(&mut foo, format!("{prefix}nested")).await;
    let elsewhere = tracing::info_span!(parent: None, "elsewhere");
    let _: Option<String> = foo
        .get(format!("{prefix}elsewhere"))
        .instrument(elsewhere)
        .await
        .unwrap();
    body
}

#[tracing::instrument(skip_all)]
async fn lookup(foo: &mut MonitoredClusterRedisConnection, key: String) {
    let _: Option<String> = foo.get(key).await.unwrap();
}

/// The spans of `trace` once `expected` of them ended (the server span ends just after its
/// response is sent), in the order they ended.
async fn spans_of(trace: TraceId, expected: usize) -> Vec<SpanData> {
    let mut spans: Vec<SpanData> = Vec::new();
    eventually(Duration::from_secs(10), async || {
        spans = exporter()
            .get_finished_spans()
            .unwrap()
            .into_iter()
            .filter(|span| span.span_context.trace_id() == trace)
            .collect();
        spans.len() >= expected
    })
    .await;
    assert_eq!(
        spans.len(),
        expected,
        "{} of {expected} spans ended: {spans:#?}",
        spans.len()
    );
    spans
}

fn named<'a>(spans: &'a [SpanData], name: &str) -> Vec<&'a SpanData> {
    spans.iter().filter(|span| span.name == name).collect()
}

fn one<'a>(spans: &'a [SpanData], name: &str) -> &'a SpanData {
    let found = named(spans, name);
    assert_eq!(found.len(), 1, "{name}: {spans:#?}");
    found[0]
}

fn attributes(span: &SpanData) -> BTreeMap<String, Value> {
    span.attributes
        .iter()
        .map(|KeyValue { key, value, .. }| (key.to_string(), value.clone()))
        .collect()
}

fn expected(pairs: &[(&str, Value)]) -> BTreeMap<String, Value> {
    pairs
        .iter()
        .map(|(key, value)| ((*key).to_owned(), value.clone()))
        .collect()
}

/// The primary serving `key`, as `(host, port)`.
async fn primary_of(key: &str) -> (String, i64) {
    let slot = baseplate::crates::redis_cluster::key_slot(key.as_bytes());
    let (addr, _) = cluster().shard_of(slot).await;
    let (host, port) = addr.rsplit_once(':').unwrap();
    (host.to_owned(), port.parse().unwrap())
}

fn random_trace() -> (u128, u64) {
    (rand::random::<u128>() | 1, rand::random::<u64>() | 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_spans_carry_the_database_conventions_under_the_server_span() {
    let service = Service::start("otel-conventions").await;
    let (trace, parent) = random_trace();
    let traceparent = format!("00-{trace:032x}-{parent:016x}-01");
    let reply = service
        .get("/conventions", &[("traceparent", traceparent)])
        .await;
    assert_eq!(reply.trace, TraceId::from(trace));
    let lpush_error = reply.rest.join("\n");
    assert!(lpush_error.contains("WRONGTYPE"), "{lpush_error}");

    let spans = spans_of(reply.trace, 7).await;
    let server = one(&spans, "/conventions");
    assert_eq!(server.span_kind, SpanKind::Server);
    assert_eq!(server.span_context.span_id(), reply.span);
    assert_eq!(server.parent_span_id, SpanId::from(parent));
    assert!(server.parent_span_is_remote);
    assert_eq!(server.status, Status::Unset);
    for span in spans.iter().filter(|span| span.name != "/conventions") {
        assert_eq!(span.span_kind, SpanKind::Client, "{span:#?}");
        assert_eq!(span.parent_span_id, reply.span, "{span:#?}");
        assert!(!span.parent_span_is_remote);
    }

    let string = format!("{}string", service.prefix);
    let (host, port) = primary_of(&string).await;
    let on_the_primary = |operation: &'static str| {
        vec![
            ("db.system.name", Value::from("redis")),
            ("db.operation.name", Value::from(operation)),
            ("server.address", Value::from(host.clone())),
            ("server.port", Value::I64(port)),
            ("baseplate.client", Value::from("foo")),
        ]
    };
    let get = named(&spans, "foo.GET");
    assert_eq!(get.len(), 1, "{spans:#?}");
    assert_eq!(attributes(get[0]), expected(&on_the_primary("GET")));
    assert_eq!(get[0].status, Status::Unset);
    let set = one(&spans, "foo.SET");
    assert_eq!(attributes(set), expected(&on_the_primary("SET")));
    assert_eq!(set.status, Status::Unset);

    let lpush = one(&spans, "foo.LPUSH");
    let mut failed = on_the_primary("LPUSH");
    failed.push(("error.type", Value::from("WRONGTYPE")));
    failed.push(("db.response.status_code", Value::from("WRONGTYPE")));
    assert_eq!(attributes(lpush), expected(&failed));
    assert_eq!(lpush.status, Status::error(lpush_error));

    // Several nodes: no one `server.address` to report; how many nodes instead.
    let keys = spread_keys(&service.prefix);
    let nodes = cluster().primaries_covering(&keys).await;
    assert!(nodes > 1, "the pipeline's keys are all on one node");
    let spread = one(&spans, "foo.pipeline_spread");
    assert_eq!(
        attributes(spread),
        expected(&[
            ("db.system.name", Value::from("redis")),
            ("db.operation.name", Value::from("BATCH SET")),
            ("db.operation.batch.size", Value::I64(keys.len() as i64)),
            ("baseplate.client", Value::from("foo")),
            ("db.redis.nodes", Value::I64(nodes as i64)),
        ])
    );
    assert_eq!(spread.status, Status::Unset);

    // A transaction runs on its slot's primary; its commands differ, so it is named as Redis
    // names it.
    let (host, port) = primary_of(&format!("{}{{t}}", service.prefix)).await;
    let tx = one(&spans, "foo.transaction_tx");
    assert_eq!(
        attributes(tx),
        expected(&[
            ("db.system.name", Value::from("redis")),
            ("db.operation.name", Value::from("MULTI")),
            ("db.operation.batch.size", Value::I64(2)),
            ("server.address", Value::from(host)),
            ("server.port", Value::I64(port)),
            ("baseplate.client", Value::from("foo")),
        ])
    );
    assert_eq!(tx.status, Status::Unset);

    // A read that may go to a replica: the node redis-rs picks is not known. (On a cluster
    // without replicas it can only go to the primary, which is reported.)
    let mut replica_read = vec![
        ("db.system.name", Value::from("redis")),
        ("db.operation.name", Value::from("GET")),
        ("baseplate.client", Value::from("bar")),
    ];
    if cluster().replicas_per_primary() == 0 {
        let (host, port) = primary_of(&string).await;
        replica_read.push(("server.address", Value::from(host)));
        replica_read.push(("server.port", Value::I64(port)));
    }
    assert_eq!(attributes(one(&spans, "bar.GET")), expected(&replica_read));
    let mut suffixes: Vec<String> = (0..keys.len()).map(|i| format!("spread{i}")).collect();
    suffixes.extend(["string", "{t}a", "{t}b"].map(str::to_owned));
    service
        .stop(&suffixes.iter().map(String::as_str).collect::<Vec<_>>())
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baseplate_trace_headers_continue_the_callers_trace() {
    let service = Service::start("otel-x-trace").await;
    let (trace, parent) = random_trace();
    let trace = trace >> 64; // baseplate.py's classic trace ids are 64-bit
    let reply = service
        .get(
            "/get",
            &[
                ("X-Trace", trace.to_string()),
                ("X-Parent", "12345".to_owned()),
                ("X-Span", parent.to_string()),
                ("X-Sampled", "1".to_owned()),
            ],
        )
        .await;
    assert_eq!(reply.trace, TraceId::from(trace));
    let spans = spans_of(reply.trace, 2).await;
    let server = one(&spans, "/get");
    assert_eq!(server.span_context.span_id(), reply.span);
    assert_eq!(server.parent_span_id, SpanId::from(parent));
    assert!(server.parent_span_is_remote);
    let get = one(&spans, "foo.GET");
    assert_eq!(get.parent_span_id, reply.span);
    service.stop(&["plain"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_without_trace_headers_starts_a_trace() {
    let service = Service::start("otel-root").await;
    // Malformed headers are no parent either.
    let reply = service
        .get("/get", &[("X-Trace", "not-a-number".to_owned())])
        .await;
    let spans = spans_of(reply.trace, 2).await;
    let server = one(&spans, "/get");
    assert_eq!(server.span_context.span_id(), reply.span);
    assert_eq!(server.parent_span_id, SpanId::INVALID);
    assert_eq!(one(&spans, "foo.GET").parent_span_id, reply.span);
    service.stop(&["plain"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_spans_nest_under_the_handlers_own_spans_within_the_request() {
    let service = Service::start("otel-nested").await;
    let (trace, parent) = random_trace();
    let traceparent = format!("00-{trace:032x}-{parent:016x}-01");
    let reply = service
        .get("/nested", &[("traceparent", traceparent)])
        .await;
    // The server span, `lookup` and its GET, and the GET run in the unrelated span (which,
    // being a root of its own, is in another trace).
    let spans = spans_of(reply.trace, 4).await;
    let lookup = one(&spans, "lookup");
    assert_eq!(lookup.parent_span_id, reply.span);
    let gets = named(&spans, "foo.GET");
    assert_eq!(gets.len(), 2, "{spans:#?}");
    let parents: Vec<SpanId> = gets.iter().map(|span| span.parent_span_id).collect();
    assert_eq!(parents, [lookup.span_context.span_id(), reply.span]);
    service.stop(&["nested", "elsewhere"]).await;
}
