//! Unit tests of the facade that need no Redis: registration, contexts, and request scopes fed with
//! calls shaped like the client's.

use std::time::Duration;

use baseplate_redis_cluster::{CommandName, CommandObserver as _};
use baseplate_runtime_metrics::{ClientOptions, MemoryTransport, MetricsClient};
use tracing::Level;
use tracing::subscriber::DefaultGuard;

use crate::observer::{RequestObserver, Style};
use crate::{Baseplate, BaseplateError, ClusterRedisClient, ContextError, RawConfig, UnknownKeys};

fn config(pairs: &[(&str, &str)]) -> RawConfig {
    pairs.iter().copied().collect()
}

/// The configuration warnings as a user reads them.
fn warnings_as_shown(baseplate: &Baseplate) -> Vec<String> {
    baseplate
        .config_warnings()
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn dotted_names_nest_and_contexts_hand_out_clients_by_name_and_type() {
    let mut baseplate = Baseplate::new(config(&[("cache.foo.url", "redis://127.0.0.1:7000")]));
    baseplate
        .configure_context("cache.foo", ClusterRedisClient::new())
        .unwrap();
    let ctx = baseplate.make_context_object();

    let foo = ctx.redis_cluster("cache.foo").unwrap();
    assert_eq!(foo.name(), "cache.foo");
    assert_eq!(foo.pool_stats().size, 50);
    assert_eq!(
        ctx.get::<String>("cache.foo").unwrap_err(),
        ContextError::WrongType {
            name: "cache.foo".into(),
            expected: "alloc::string::String",
            actual: "baseplate_redis_cluster::connection::MonitoredClusterRedisConnection",
        }
    );
    assert_eq!(
        ctx.redis_cluster("foo").unwrap_err().to_string(),
        "no client named \"foo\" is configured"
    );
}

#[test]
fn a_name_written_as_a_prefix_names_the_same_client() {
    let mut baseplate = Baseplate::new(config(&[("foo.url", "redis://127.0.0.1:7000")]));
    baseplate
        .configure_context("foo.", ClusterRedisClient::new())
        .unwrap();
    let ctx = baseplate.make_context_object();
    assert_eq!(ctx.redis_cluster("foo").unwrap().name(), "foo");
    let error = baseplate
        .configure_context("foo", ClusterRedisClient::new())
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "a client named \"foo\" is already configured"
    );
}

#[test]
fn configuration_errors_name_the_key() {
    let mut baseplate = Baseplate::new(config(&[
        ("foo.url", "redis://127.0.0.1:7000"),
        ("foo.timeout", "3 secnds"),
    ]));
    let error = baseplate
        .configure_context("foo", ClusterRedisClient::new())
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "foo.timeout: invalid timespan \"3 secnds\": unknown unit \"secnd\""
    );

    let mut baseplate = Baseplate::new(config(&[("cache.foo.url", "redis://h:1")]));
    let error = baseplate
        .configure_context("cache.foo", ClusterRedisClient::new().max_connections(0))
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "cache.foo.max_connections: must be at least 1"
    );

    let pairs = [
        ("foo.url", "redis://h:1"),
        ("metrics.namespace", "ns"),
        ("metrics.endpont", "127.0.0.1:8125"),
    ];
    let mut strict = Baseplate::new(config(&pairs)).with_unknown_keys(UnknownKeys::Reject);
    strict
        .configure_context("foo", ClusterRedisClient::new())
        .unwrap();
    let error = strict.configure_observers().unwrap_err();
    assert_eq!(
        error.to_string(),
        "metrics.endpont: unknown key; did you mean metrics.endpoint?"
    );
    let error = strict
        .configure_context("foo", ClusterRedisClient::new())
        .unwrap_err();
    assert!(matches!(error, BaseplateError::Duplicate { .. }), "{error}");

    let error = Baseplate::new(config(&[
        ("metrics.namespace", "ns"),
        ("metrics.tagging", "true"),
    ]))
    .configure_observers()
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        "metrics.namespace: not allowed with metrics.tagging = true"
    );
}

#[test]
fn unknown_keys_are_warnings_logged_once_each_unless_strict() {
    let (logs, _default) = capture_logs(Level::INFO);

    let mut baseplate = Baseplate::new(config(&[
        ("foo.url", "redis://h:1"),
        ("foo.max_conections", "5"),
        ("metrics.namespace", "ns"),
        ("metrics.endpont", "127.0.0.1:8125"),
        ("metrics_observer.sample_rat", "50%"),
    ]));
    baseplate
        .configure_context("foo", ClusterRedisClient::new())
        .unwrap();
    baseplate.configure_observers().unwrap();
    let shown = warnings_as_shown(&baseplate);
    let expected = [
        "foo.max_conections: unknown key, ignored; did you mean foo.max_connections?",
        "metrics.endpont: unknown key, ignored; did you mean metrics.endpoint?",
        "metrics_observer.sample_rat: unknown key, ignored; did you mean metrics_observer.sample_rate?",
        // The misspelt endpoint leaves the real one unset.
        "metrics.endpoint: unset: the statsd metrics (server.*, clients.* and runtime.pool.*) are \
         discarded; set it to send them, or metrics.log_if_unconfigured = true to log them at \
         debug level",
    ];
    assert_eq!(shown, expected);
    // Requests do not log them again.
    drop(baseplate.make_context_object());
    let logged = logs.text();
    for warning in expected {
        assert_eq!(logged.matches(warning).count(), 1, "{logged}");
    }
    assert!(
        logged.lines().any(|l| l.contains("WARN")
            && l.contains("client=\"foo\"")
            && l.contains("foo.max_conections")),
        "{logged}"
    );
}

#[test]
fn metrics_need_a_namespace_or_tagging_as_in_baseplate_py() {
    let mut baseplate = Baseplate::new(config(&[("metrics.endpoint", "127.0.0.1:8125")]));
    baseplate.configure_observers().unwrap();
    assert_eq!(
        baseplate.config_warnings()[0].to_string(),
        "metrics.endpoint: set, but neither metrics.namespace nor metrics.tagging = true is: no \
         statsd metrics are sent, as in baseplate.py"
    );
    assert!(
        format!("{baseplate:?}").contains("metrics: None"),
        "{baseplate:?}"
    );

    let mut baseplate = Baseplate::new(config(&[
        ("metrics.namespace", ""),
        ("metrics.tagging", "false"),
    ]));
    baseplate.configure_observers().unwrap();
    assert_eq!(
        baseplate.config_warnings()[0].key(),
        "metrics.tagging",
        "{:?}",
        baseplate.config_warnings()
    );
    assert!(
        format!("{baseplate:?}").contains("metrics: Some(\"\")"),
        "an empty namespace is still plain metrics: {baseplate:?}"
    );
}

#[test]
fn statsd_metrics_configured_to_go_nowhere_are_a_warning_naming_them() {
    let cases: [(&[(&str, &str)], &str); 5] = [
        (
            &[],
            "metrics.namespace: unset, and metrics.tagging is not true: no statsd metrics \
             (server.*, clients.* and runtime.pool.*) are sent, as in baseplate.py; the \
             Prometheus series are recorded all the same",
        ),
        (
            &[("metrics.namespace", "ns")],
            "metrics.endpoint: unset: the statsd metrics (server.*, clients.* and \
             runtime.pool.*) are discarded; set it to send them, or \
             metrics.log_if_unconfigured = true to log them at debug level",
        ),
        (
            &[("metrics.namespace", "ns"), ("metrics.enabled", "false")],
            "metrics.endpoint: unset: the statsd metrics (server.* and clients.*) are \
             discarded; set it to send them, or metrics.log_if_unconfigured = true to log them \
             at debug level",
        ),
        (
            &[("metrics.tagging", "true"), ("metrics.endpoint", "")],
            "metrics.endpoint: unset: the statsd metrics (baseplate.server.*, \
             baseplate.client.* and runtime.pool.*) are discarded; set it to send them, or \
             metrics.log_if_unconfigured = true to log them at debug level",
        ),
        (
            &[
                ("metrics.namespace", "ns"),
                ("metrics.log_if_unconfigured", "true"),
            ],
            "metrics.endpoint: unset: the statsd metrics (server.*, clients.* and \
             runtime.pool.*) are not sent, only logged at debug level \
             (metrics.log_if_unconfigured = true)",
        ),
    ];
    for (pairs, expected) in cases {
        let (logs, _default) = capture_logs(Level::INFO);
        let mut baseplate = Baseplate::new(config(pairs));
        baseplate.configure_observers().unwrap();
        let shown = warnings_as_shown(&baseplate);
        assert_eq!(shown, [expected], "{pairs:?}");
        // Once, at start-up: requests do not repeat it.
        drop(baseplate.make_context_object());
        let logged = logs.text();
        let warned = logged
            .lines()
            .filter(|line| line.contains(" WARN ") && line.contains(expected))
            .count();
        assert_eq!(warned, 1, "{pairs:?}: {logged}");
    }

    // Sent somewhere: nothing to say.
    let mut baseplate = Baseplate::new(config(&[
        ("metrics.namespace", "ns"),
        ("metrics.endpoint", "127.0.0.1:8125"),
    ]));
    baseplate.configure_observers().unwrap();
    assert!(
        baseplate.config_warnings().is_empty(),
        "{:?}",
        baseplate.config_warnings()
    );
}

/// The `metrics.*` keys baseplate.py 2.7.1 reads, with a value each.
const METRICS_KEYS: [(&str, &str); 8] = [
    ("metrics.namespace", ""),
    ("metrics.tagging", "false"),
    ("metrics.endpoint", "127.0.0.1:8125"),
    ("metrics.allowlist", "region, shard"),
    ("metrics.enabled", "false"),
    ("metrics.log_if_unconfigured", "true"),
    ("metrics.swallow_network_errors", "true"),
    ("metrics_observer.sample_rate", "50%"),
];

#[test]
fn every_metrics_key_baseplate_py_reads_is_accepted_and_documented() {
    let mut baseplate =
        Baseplate::new(config(&METRICS_KEYS)).with_unknown_keys(UnknownKeys::Reject);
    baseplate.configure_observers().unwrap();
    let mut tagged = Baseplate::new(config(&[
        ("metrics.tagging", "true"),
        ("metrics.allowlist", "region"),
        ("metrics.endpoint", "127.0.0.1:8125"),
    ]))
    .with_unknown_keys(UnknownKeys::Reject);
    tagged.configure_observers().unwrap();
    assert!(tagged.config_warnings().is_empty());

    // Both configuration tables list exactly these keys, in this order.
    let keys: Vec<&str> = METRICS_KEYS.iter().map(|(key, _)| *key).collect();
    for readme in [
        include_str!("../README.md"),
        include_str!("../../README.md"),
    ] {
        let documented: Vec<String> = readme
            .lines()
            .filter(|line| line.starts_with("| `metrics"))
            .filter_map(|line| line.split('`').nth(1))
            .map(str::to_owned)
            .collect();
        assert_eq!(documented, keys);
    }
}

/// A statsd socket on loopback (reads time out after 5 s) and a facade sending it request
/// metrics under the namespace `ns`, configured with `extra` too (an unknown key is an error).
fn udp_statsd_service(extra: &[(&str, &str)]) -> (std::net::UdpSocket, Baseplate) {
    let statsd = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    statsd
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let endpoint = statsd.local_addr().unwrap().to_string();
    let mut keys = vec![("metrics.namespace", "ns"), ("metrics.endpoint", &endpoint)];
    keys.extend_from_slice(extra);
    let mut baseplate = Baseplate::new(config(&keys)).with_unknown_keys(UnknownKeys::Reject);
    baseplate.configure_observers().unwrap();
    (statsd, baseplate)
}

#[test]
fn the_counters_of_requests_that_share_a_packet_are_summed_into_one_line() {
    let (statsd, baseplate) = udp_statsd_service(&[]);
    for _ in 0..10 {
        let ctx = baseplate.make_context_object();
        baseplate.make_server_span(&ctx, "visit");
    }
    let failed = baseplate.make_context_object();
    baseplate.make_server_span(&failed, "visit");
    failed.record_failure(&"boom");
    drop(failed);
    drop(baseplate);

    let mut buffer = vec![0u8; 65_536];
    let mut lines = Vec::new();
    while lines
        .iter()
        .filter(|l: &&String| l.ends_with("|ms"))
        .count()
        < 11
    {
        let size = statsd.recv(&mut buffer).unwrap();
        let packet = std::str::from_utf8(&buffer[..size]).unwrap();
        lines.extend(packet.lines().map(str::to_owned));
    }
    let counted = |name: &str| -> (usize, u32) {
        let values: Vec<u32> = (lines.iter())
            .filter_map(|line| line.strip_prefix(&format!("ns.server.visit.{name}:")))
            .map(|value| value.strip_suffix("|c").unwrap().parse().unwrap())
            .collect();
        (values.len(), values.iter().sum())
    };
    // One packet holds them all unless 50 ms passed between two of the requests, which would
    // send the packet so far, its counts with it.
    let (success_lines, successes) = counted("success");
    assert_eq!(successes, 10, "{lines:?}");
    assert!(success_lines < 10, "{lines:?}");
    assert_eq!(counted("failure"), (1, 1), "{lines:?}");
    assert!(
        lines.last().unwrap().starts_with("ns.server.visit."),
        "the counts come after the timers they were counted with: {lines:?}"
    );
}

#[test]
fn a_requests_counts_go_out_after_its_lines_not_in_a_packet_that_leaves_while_it_runs() {
    let transport = MemoryTransport::new();
    let options = ClientOptions::new().with_coalesce(Duration::from_secs(3600));
    let client = MetricsClient::with_options(transport.clone(), "ns", options);
    let observer = RequestObserver::new(client.clone(), 1.0, Style::Plain);
    let scope = observer.request("route");
    let get = CommandName::Command(b"GET");
    scope.command_finished("foo", &get, Duration::from_millis(2), true);
    // Another request's packet leaves while this one still runs.
    client.flush_pending();
    assert_eq!(transport.lines(), Vec::<String>::new());
    drop(scope);
    client.flush_pending();
    let lines = transport.lines();
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert_eq!(lines[0], "ns.clients.foo.GET:2|ms");
    assert!(lines[1].starts_with("ns.server.route:"), "{lines:?}");
    assert_eq!(
        lines[2..],
        [
            "ns.clients.foo.GET.success:1|c",
            "ns.server.route.success:1|c"
        ]
    );
}

#[test]
fn metrics_max_packet_size_bounds_the_packets_requests_share() {
    let (statsd, baseplate) = udp_statsd_service(&[("metrics.max_packet_size", "100")]);
    for _ in 0..20 {
        let ctx = baseplate.make_context_object();
        baseplate.make_server_span(&ctx, "visit");
    }
    // The client's last clone sends what is pending.
    drop(baseplate);

    // 20 timers, and the 20 requests' counter summed into the packets they share.
    let mut buffer = vec![0u8; 65_536];
    let (mut timers, mut counted) = (0, 0);
    while timers < 20 || counted < 20 {
        let size = statsd.recv(&mut buffer).unwrap();
        assert!(size <= 100, "a packet of {size} bytes");
        let packet = std::str::from_utf8(&buffer[..size]).unwrap();
        for line in packet.lines() {
            match line.split_once(':').unwrap() {
                ("ns.server.visit", value) => {
                    assert!(value.ends_with("|ms"), "{line}");
                    timers += 1;
                }
                ("ns.server.visit.success", value) => {
                    counted += value.strip_suffix("|c").unwrap().parse::<u32>().unwrap();
                }
                _ => panic!("unexpected line {line}"),
            }
        }
    }
    assert_eq!((timers, counted), (20, 20));

    for size in ["0", "65508"] {
        let error = Baseplate::new(config(&[("metrics.max_packet_size", size)]))
            .configure_observers()
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "metrics.max_packet_size: must be from 1 to 65507 bytes (the most a UDP datagram \
             carries)",
            "{size}"
        );
    }
    Baseplate::new(config(&[("metrics.max_packet_size", "65507")]))
        .configure_observers()
        .unwrap();
}

#[test]
fn an_endpoint_that_cannot_be_used_is_an_error_naming_the_key() {
    let error = Baseplate::new(config(&[
        ("metrics.namespace", "ns"),
        ("metrics.endpoint", "127.0.0.1:0"),
    ]))
    .configure_observers()
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        "metrics.endpoint: metrics endpoint `127.0.0.1:0` has port 0, where nothing receives"
    );
}

#[test]
fn tagged_requests_send_what_baseplate_pys_tagged_observer_sends() {
    let style = Style::Tagged {
        allowlist: vec!["region".to_owned()].into(),
    };
    let (transport, observer) = observer_in_memory("", 1.0, style);
    let scope = observer.request("visit");
    let pipeline_bar = CommandName::Label("pipeline_bar");
    scope.command_finished("foo", &CommandName::Command(b"get"), Duration::ZERO, true);
    scope.command_finished("foo", &pipeline_bar, Duration::ZERO, false);
    scope.record_local("pricing", "sum", Duration::ZERO, true);
    scope.set_tag("region", &"eu");
    scope.set_tag("user", &42);
    scope.record_failure();
    drop(scope);

    assert_eq!(transport.packets().len(), 1);
    assert_eq!(
        shapes(&transport),
        [
            "baseplate.client.latency,client=foo,endpoint=GET|ms",
            "baseplate.client.latency,client=foo,endpoint=pipeline_bar|ms",
            "baseplate.client.rate,client=foo,endpoint=GET,success=True:1|c",
            "baseplate.client.rate,client=foo,endpoint=pipeline_bar,success=False:1|c",
            "baseplate.local.latency,endpoint=sum|ms",
            "baseplate.local.rate,endpoint=sum,success=True:1|c",
            "baseplate.server.latency,endpoint=visit,region=eu|ms",
            "baseplate.server.rate,endpoint=visit,region=eu,success=False:1|c",
        ]
    );

    // Sampled requests carry the rate on both kinds, as in plain mode.
    let style = Style::Tagged {
        allowlist: Vec::new().into(),
    };
    let (transport, observer) = observer_in_memory("", 0.5, style);
    while transport.is_empty() {
        observer.request("visit");
    }
    assert_eq!(
        shapes(&transport),
        [
            "baseplate.server.latency,endpoint=visit|ms|@0.5",
            "baseplate.server.rate,endpoint=visit,success=True:1|c|@0.5",
        ]
    );
}

#[test]
fn plain_requests_time_local_spans_and_drop_tags() {
    let (transport, observer) = observer_in_memory("ns", 1.0, Style::Plain);
    let scope = observer.request("route");
    scope.record_local("pricing", "sum", Duration::ZERO, false);
    scope.set_tag("region", &"eu");
    drop(scope);
    assert_eq!(
        shapes(&transport),
        [
            "ns.pricing.sum|ms",
            "ns.server.route.success:1|c",
            "ns.server.route|ms"
        ]
    );
}

#[tokio::test]
async fn log_if_unconfigured_logs_what_would_be_sent() {
    let (logs, _default) = capture_logs(Level::DEBUG);

    for (log, expected) in [("true", 1), ("false", 0)] {
        let mut baseplate = Baseplate::new(config(&[
            ("metrics.namespace", "ns"),
            ("metrics.log_if_unconfigured", log),
        ]));
        baseplate.configure_observers().unwrap();
        let ctx = baseplate.make_context_object();
        drop(baseplate.make_server_span(&ctx, format!("route_{log}").as_str()));
        drop(ctx);
        baseplate.shutdown().await;
        let text = logs.text();
        assert_eq!(
            text.matches(&format!("ns.server.route_{log}.success:1|c"))
                .count(),
            expected,
            "{text}"
        );
    }
}

#[tokio::test]
async fn a_reporter_that_cannot_start_is_logged_once_not_at_every_request() {
    let (logs, _default) = capture_logs(Level::INFO);
    let mut baseplate = Baseplate::new(config(&[("metrics.namespace", "ns")]))
        .with_runtime_metrics_interval(Duration::ZERO);
    baseplate.configure_observers().unwrap();
    for _ in 0..3 {
        drop(baseplate.make_context_object());
    }
    baseplate.shutdown().await;
    let logged = logs.text();
    assert_eq!(
        logged.matches("runtime metrics are not reported").count(),
        1,
        "{logged}"
    );
}

/// Captures what `tracing` logs at `level` and above on this thread, until the guard drops.
fn capture_logs(level: Level) -> (Logs, DefaultGuard) {
    let logs = Logs::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_max_level(level)
        .with_ansi(false)
        .finish();
    (logs, tracing::subscriber::set_default(subscriber))
}

/// Log output captured from a `tracing_subscriber::fmt` subscriber.
#[derive(Clone, Default)]
struct Logs(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Logs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
    type Writer = Logs;

    fn make_writer(&'a self) -> Logs {
        self.clone()
    }
}

/// A request observer sending under `namespace` to a transport in memory, and that transport.
fn observer_in_memory(
    namespace: &str,
    sample_rate: f64,
    style: Style,
) -> (MemoryTransport, RequestObserver) {
    let transport = MemoryTransport::new();
    let client = MetricsClient::new(transport.clone(), namespace);
    (transport, RequestObserver::new(client, sample_rate, style))
}

/// Lines with timer values dropped (`name|ms`, or `name|ms|@rate`), sorted.
fn shapes(transport: &MemoryTransport) -> Vec<String> {
    let mut lines: Vec<String> = transport
        .lines()
        .into_iter()
        .map(|line| match line.split_once(':') {
            Some((name, value)) if value.contains("|ms") => {
                let rate = value.split_once("|ms").map_or("", |(_, rate)| rate);
                format!("{name}|ms{rate}")
            }
            _ => line,
        })
        .collect();
    lines.sort();
    lines
}

#[test]
fn a_request_scope_sends_one_batch_when_the_request_ends() {
    let (transport, observer) = observer_in_memory("ns", 1.0, Style::Plain);
    let scope = observer.request("route");
    let get = CommandName::Command(b"get");
    let pipeline_bar = CommandName::Label("pipeline_bar");
    scope.command_finished("foo", &get, Duration::from_millis(2), true);
    scope.command_finished("foo", &CommandName::Command(b"SET"), Duration::ZERO, false);
    scope.command_finished("foo", &get, Duration::from_millis(3), true);
    scope.command_finished("foo", &pipeline_bar, Duration::ZERO, true);
    scope.record_call("memcache", "get_multi", Duration::ZERO, true);
    assert!(
        transport.is_empty(),
        "nothing is sent before the request ends"
    );
    drop(scope);

    assert_eq!(transport.packets().len(), 1);
    assert_eq!(
        shapes(&transport),
        [
            "ns.clients.foo.GET.success:2|c",
            "ns.clients.foo.GET|ms",
            "ns.clients.foo.GET|ms",
            "ns.clients.foo.SET.failure:1|c",
            "ns.clients.foo.SET|ms",
            "ns.clients.foo.pipeline_bar.success:1|c",
            "ns.clients.foo.pipeline_bar|ms",
            "ns.clients.memcache.get_multi.success:1|c",
            "ns.clients.memcache.get_multi|ms",
            "ns.server.route.success:1|c",
            "ns.server.route|ms",
        ]
    );
    let get_ms: Vec<f64> = transport
        .lines()
        .iter()
        .filter_map(|l| l.strip_prefix("ns.clients.foo.GET:"))
        .map(|v| v.trim_end_matches("|ms").parse().unwrap())
        .collect();
    assert_eq!(get_ms, [2.0, 3.0]);
}

#[test]
fn calls_outside_a_request_go_out_one_by_one() {
    let (transport, observer) = observer_in_memory("ns", 0.5, Style::Plain);
    let scope = observer.outside_requests();
    scope.command_finished("foo", &CommandName::Command(b"GET"), Duration::ZERO, true);
    scope.record_failure();
    assert_eq!(
        shapes(&transport),
        ["ns.clients.foo.GET.success:1|c", "ns.clients.foo.GET|ms"]
    );
    drop(scope);
    assert_eq!(transport.packets().len(), 1);
}

#[test]
fn sampled_requests_are_a_share_and_their_timers_and_counters_carry_the_rate() {
    let (transport, observer) = observer_in_memory("ns", 0.5, Style::Plain);
    for _ in 0..400 {
        let scope = observer.request("route");
        scope.command_finished("foo", &CommandName::Command(b"GET"), Duration::ZERO, true);
        scope.record_failure();
    }
    let lines = shapes(&transport);
    let counters = lines.iter().filter(|l| l.contains("|c")).count();
    // Binomial(400, 0.5) requests measured, two counters each: 400 expected; a measured share
    // outside 140..=260 has a probability below 1e-9.
    assert!((280..=520).contains(&counters), "{counters} counters");
    assert_eq!(lines.len(), counters * 2);
    for line in lines {
        assert!(
            [
                "ns.clients.foo.GET.success:1|c|@0.5",
                "ns.clients.foo.GET|ms|@0.5",
                "ns.server.route.failure:1|c|@0.5",
                "ns.server.route|ms|@0.5",
            ]
            .contains(&line.as_str()),
            "{line}"
        );
    }
}
