//! Statsd against baseplate.py's own: the request sequence that `fixtures/baseplate_py/capture.py`
//! ran through baseplate.py 2.7.1, replayed through the facade on the real cluster with a real UDP
//! socket as the statsd endpoint, and the lines compared with what baseplate.py sent: plain mode
//! (`metrics.namespace`), tagged mode (`metrics.tagging`), a sampled observer, and one runtime
//! report in each mode. Names, tags, types, sample rates and counter values are compared; timer
//! values are masked.
//!
//! Three differences are by design (MIGRATING.md says why): in tagged mode baseplate.py sends a
//! packet per span, where a request here is one batch (its timers, then its counters), so lines
//! are compared, not packets; plain counters of requests that share a packet are summed into one
//! line, so the sampled requests (sent back to back) are compared by their timers and their
//! counters' sums; and the runtime report adds `pool.in_use` and `pool.waiting` to the two gauges
//! baseplate.py sends.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use baseplate::Baseplate;
use integration::golden::{self, Sequence};
use integration::statsd::{Statsd, is_runtime_line};

const PLAIN: &str = include_str!("../fixtures/baseplate_py/statsd_plain.txt");
const TAGGED: &str = include_str!("../fixtures/baseplate_py/statsd_tagged.txt");
const SAMPLED: &str = include_str!("../fixtures/baseplate_py/statsd_sampled.txt");
const RUNTIME_PLAIN: &str = include_str!("../fixtures/baseplate_py/statsd_runtime_plain.txt");
const RUNTIME_TAGGED: &str = include_str!("../fixtures/baseplate_py/statsd_runtime_tagged.txt");

/// What the facade sent for the sequence: each request's lines, and one runtime report made
/// after the sequence.
struct Sent {
    requests: Vec<Vec<String>>,
    runtime: Vec<String>,
}

/// Replays the sequence with the `metrics.*` keys of a mode and a statsd endpoint of its own.
async fn replay(test: &str, mode: &[(&str, &str)]) -> Sent {
    let statsd = Statsd::bind().await;
    let endpoint = statsd.endpoint();
    let mut keys = mode.to_vec();
    keys.push(("metrics.endpoint", &endpoint));
    let mut baseplate = Baseplate::new(golden::app_config(&keys))
        .with_runtime_metrics_interval(Duration::from_millis(200));
    baseplate.configure_observers().unwrap();
    golden::configure_clients(&mut baseplate);
    assert!(
        baseplate.config_warnings().is_empty(),
        "{:?}",
        baseplate.config_warnings()
    );

    let sequence = Sequence::new(test);
    let mut requests = Vec::new();
    sequence
        .run(&baseplate, async |request| {
            // A request's metrics are one batch whose last line is its server counter; reports
            // and the holder's `BLPOP` may come in between and are not about the request.
            let lines = statsd
                .lines_until(|line| golden::ends_request(line, request))
                .await;
            requests.push(
                lines
                    .into_iter()
                    .filter(|line| !is_runtime_line(line) && !golden::is_holder_line(line))
                    .collect(),
            );
        })
        .await;

    // A report's lines are contiguous, `foo`'s then `tight`'s, and start with foo's `pool.size`:
    // the lines between two such starts after the sequence are one whole report.
    let starts_report = |line: &str| {
        is_runtime_line(line)
            && line.contains("runtime.pool.size,")
            && line.contains(",client=foo:")
    };
    let mut starts = 0;
    let lines = statsd
        .lines_until(|line| {
            starts += usize::from(starts_report(line));
            starts == 2
        })
        .await;
    let first = lines.iter().position(|line| starts_report(line)).unwrap();
    let runtime: Vec<String> = lines[first..lines.len() - 1]
        .iter()
        .filter(|line| is_runtime_line(line))
        .cloned()
        .collect();

    baseplate.shutdown().await;
    sequence.delete_keys().await;
    Sent { requests, runtime }
}

/// Compares each request's lines with the fixture's, masked, in a batch's order.
fn assert_requests_match(sent: &[Vec<String>], fixture: &str) {
    let theirs = golden::by_request(&golden::fixture_lines(fixture));
    assert_eq!(theirs.len(), golden::REQUESTS.len());
    assert_eq!(sent.len(), golden::REQUESTS.len(), "{sent:#?}");
    for ((request, ours), theirs) in golden::REQUESTS.iter().zip(sent).zip(&theirs) {
        let ours: Vec<String> = ours.iter().map(|l| golden::masked(l)).collect();
        let theirs: Vec<String> = golden::timers_then_counters(theirs)
            .iter()
            .map(|l| golden::masked(l))
            .collect();
        assert_eq!(ours, theirs, "request {request}");
    }
}

/// The gauges a runtime report sends per client that baseplate.py's does not (MIGRATING.md lists
/// them), in the order they are sent.
const EXTRA_GAUGES: [&str; 3] = ["in_use", "waiting", "blocking"];

/// Compares a runtime report with the fixture's: baseplate.py's two gauges per client are there,
/// in its order, with its names and tags; `pool.size` has baseplate.py's value and
/// `pool.open_connections` counts this client's connections (a whole number, not compared);
/// [`EXTRA_GAUGES`] are the only lines baseplate.py does not send.
fn assert_runtime_matches(report: &[String], fixture: &str) {
    let open_masked = |line: String| match line.split_once(':') {
        Some((name, value)) if name.contains("pool.open_connections,") => {
            let count = value.trim_end_matches("|g");
            assert!(count.parse::<u64>().is_ok(), "{line}");
            format!("{name}:<n>|g")
        }
        _ => line,
    };
    let extra = |line: &String| {
        !(line.contains("runtime.pool.size,") || line.contains("runtime.pool.open_connections,"))
    };
    let ours: Vec<String> = report
        .iter()
        .filter(|line| !extra(line))
        .map(|line| open_masked(golden::masked(line)))
        .collect();
    let theirs: Vec<String> = golden::fixture_lines(fixture)
        .into_iter()
        .map(open_masked)
        .collect();
    assert_eq!(ours, theirs, "{report:#?}");

    let extras: Vec<String> = report
        .iter()
        .filter(|line| extra(line))
        .map(|line| golden::masked(line).split(':').next().unwrap().to_owned())
        .collect();
    let namespace = theirs[0].split("runtime.").next().unwrap().to_owned();
    let expected: Vec<String> = ["foo", "tight"]
        .iter()
        .flat_map(|client| {
            EXTRA_GAUGES.map(|gauge| {
                format!("{namespace}runtime.pool.{gauge},hostname={{hostname}},PID={{pid}},client={client}")
            })
        })
        .collect();
    assert_eq!(extras, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_statsd_lines_match_baseplate_py_for_the_same_requests() {
    let sent = replay("statsd-plain", &[("metrics.namespace", "ns")]).await;
    assert_requests_match(&sent.requests, PLAIN);
    assert_runtime_matches(&sent.runtime, RUNTIME_PLAIN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tagged_statsd_lines_match_baseplate_py_for_the_same_requests() {
    let sent = replay("statsd-tagged", &[("metrics.tagging", "true")]).await;
    assert_requests_match(&sent.requests, TAGGED);
    assert_runtime_matches(&sent.runtime, RUNTIME_TAGGED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sampled_request_sends_what_baseplate_py_sends_and_the_others_nothing() {
    let statsd = Statsd::bind().await;
    let endpoint = statsd.endpoint();
    let mut baseplate = Baseplate::new(golden::app_config(&[
        ("metrics.namespace", "ns"),
        ("metrics.endpoint", &endpoint),
        ("metrics_observer.sample_rate", "50%"),
    ]));
    baseplate.configure_observers().unwrap();
    golden::configure_clients(&mut baseplate);
    let sequence = Sequence::new("statsd-sampled");
    const ATTEMPTS: usize = 40;
    for _ in 0..ATTEMPTS {
        assert_eq!(sequence.visit(&baseplate).await, "1");
    }
    baseplate.shutdown().await;
    let lines: Vec<String> = statsd
        .lines_until_marker()
        .await
        .into_iter()
        .filter(|line| !is_runtime_line(line))
        .collect();
    sequence.delete_keys().await;

    let theirs: Vec<String> = golden::fixture_lines(SAMPLED)
        .iter()
        .map(|l| golden::masked(l))
        .collect();
    // The sampled requests' timers come one request after another, each request's as
    // baseplate.py's; their counters are summed across the requests that shared a packet, so
    // what statsd adds up is baseplate.py's counters once per sampled request.
    let timers = |lines: &[String]| -> Vec<String> {
        lines
            .iter()
            .filter(|l| l.contains("|ms"))
            .map(|l| golden::masked(l))
            .collect()
    };
    let (ours, their_request) = (timers(&lines), timers(&theirs));
    let sampled = ours.len() / their_request.len();
    // Each request is sampled with probability 1/2: none or all of 40 has a chance of 2^-40.
    assert!(
        sampled > 0 && sampled < ATTEMPTS,
        "{sampled} of {ATTEMPTS} sampled"
    );
    let repeated: Vec<String> = (0..sampled).flat_map(|_| their_request.clone()).collect();
    assert_eq!(ours, repeated);
    let expected: BTreeMap<String, f64> = golden::counter_sums(&theirs)
        .into_iter()
        .map(|(counter, sum)| (counter, sum * sampled as f64))
        .collect();
    assert_eq!(golden::counter_sums(&lines), expected);
}
