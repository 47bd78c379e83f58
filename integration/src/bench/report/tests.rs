//! Tests of the report: rows, headline ratios and goals from fixed figures, the exact Markdown, and
//! the JSON round trip.

use std::collections::BTreeMap;

use super::*;
use crate::bench::cache_memory::CacheMemory;
use crate::bench::contenders::CacheWindow;
use crate::bench::stats::Percentiles;

fn figures(ops_per_sec: f64, p99_us: f64, cpu: f64) -> CellFigures {
    CellFigures {
        ops: (ops_per_sec * 2.0) as u64,
        total_ops: (ops_per_sec * 2.5) as u64,
        seconds: 2.0,
        ops_per_sec,
        latency: Some(Percentiles {
            p50_us: p99_us / 4.0,
            p99_us,
            p999_us: Some(p99_us * 2.0),
            max_us: Some(p99_us * 3.0),
        }),
        cpu_us_per_op: cpu,
        peak_rss_kib: Some(20_480),
        errors: 0,
        first_error: None,
        spans_closed: None,
        busiest_primary_commands: None,
        cache: None,
    }
}

/// Figures of (e): two spans recorded per single-command request over the whole process.
fn traced(ops_per_sec: f64, p99_us: f64, cpu: f64) -> CellFigures {
    let figures = figures(ops_per_sec, p99_us, cpu);
    CellFigures {
        spans_closed: Some(figures.total_ops * 2),
        ..figures
    }
}

fn tracker(zincrby: u64, expire: u64) -> TrackerTraffic {
    let mut by_command = BTreeMap::new();
    if zincrby > 0 {
        by_command.insert("zincrby".to_owned(), zincrby);
    }
    if expire > 0 {
        by_command.insert("expire".to_owned(), expire);
    }
    TrackerTraffic {
        commands: zincrby + expire,
        round_trips: expire,
        by_command,
    }
}

/// Two rounds of single commands at 50 tasks (every contender) and pipelines (raw and aggregated).
pub(crate) fn fixture() -> Report {
    use Contender::{Aggregated, Direct, Raw, RedisBenchmark, Traced};
    let single = Workload::single(50);
    let pipeline = Workload::pipeline(50, 16);
    let cell = |round, workload, contender, figures, tracker, statsd_packets| Cell {
        round,
        workload,
        contender,
        figures,
        tracker,
        statsd_packets,
    };
    // Each cell: round, workload, contender, figures (ops/s, p99 µs, CPU µs/op), tracker traffic
    // (ZINCRBY, EXPIRE), statsd packets.
    #[rustfmt::skip]
    let cells = vec![
        // Round 0: (b)/(a) = 0.96 ops/s, 1.05 p99, (b) − (a) = 4 µs of CPU; (e)/(a) = 0.8 ops/s,
        // 1.5 p99, (e) − (b) = 6 µs of CPU.
        cell(0, single, Raw, figures(50_000.0, 1_000.0, 20.0), tracker(0, 0), 0),
        cell(0, single, Aggregated, figures(48_000.0, 1_050.0, 24.0), tracker(250, 2), 120_000),
        cell(0, single, Direct, figures(46_000.0, 1_200.0, 26.0), tracker(1_150, 1_150), 115_000),
        cell(0, single, RedisBenchmark, figures(100_000.0, 800.0, 4.0), tracker(0, 0), 0),
        cell(0, single, Traced, traced(40_000.0, 1_500.0, 30.0), tracker(250, 2), 100_000),
        // Pipelines, (b) − (a): 1 µs of CPU in round 0, 0.8 in round 1.
        cell(0, pipeline, Raw, figures(200_000.0, 4_000.0, 5.0), tracker(0, 0), 0),
        cell(0, pipeline, Aggregated, figures(180_000.0, 4_400.0, 6.0), tracker(130, 1), 28_125),
        // Round 1: (b)/(a) = 0.9 ops/s, 1.2 p99, (b) − (a) = 5 µs of CPU; (e)/(a) = 0.8 ops/s,
        // 1.6 p99, (e) − (b) = 6 µs of CPU.
        cell(1, single, Raw, figures(52_000.0, 1_000.0, 20.0), tracker(0, 0), 0),
        cell(1, single, Aggregated, figures(46_800.0, 1_200.0, 25.0), tracker(250, 2), 117_000),
        cell(1, single, Direct, figures(45_000.0, 1_300.0, 27.0), tracker(1_125, 1_125), 112_500),
        cell(1, single, RedisBenchmark, figures(104_000.0, 900.0, 4.0), tracker(0, 0), 0),
        cell(1, single, Traced, traced(41_600.0, 1_600.0, 31.0), tracker(250, 2), 104_000),
        cell(1, pipeline, Raw, figures(210_000.0, 4_000.0, 5.0), tracker(0, 0), 0),
        cell(1, pipeline, Aggregated, figures(168_000.0, 4_800.0, 5.8), tracker(130, 1), 26_250),
    ];
    Report {
        command: "cargo xtask bench --quick".to_owned(),
        machine: Machine {
            cpus: 2,
            cpu_model: "Test CPU".to_owned(),
            kernel: "6.1.0".to_owned(),
            redis_version: "7.0.15".to_owned(),
            cluster: "3 primaries + 3 replicas at redis://127.0.0.1:7000".to_owned(),
            note: "Shared machine.".to_owned(),
        },
        settings: Settings {
            rounds: 2,
            warmup_s: 0.5,
            measure_s: 2.0,
            keys: 100_000,
            value_size: 100,
            write_share: 0.1,
            zipf_exponent: 1.0,
            tracker_sample_rate: 0.01,
            max_connections: "max(50, tasks)".to_owned(),
            workloads: vec![single, pipeline],
            cache_max_keys: None,
        },
        cells,
        cache_memory: None,
    }
}

/// The headline figure `name` of `workload`; fails the test where there is none.
fn headline_figure<'a>(headline: &'a [Headline], name: &str, workload: Workload) -> &'a Headline {
    headline
        .iter()
        .find(|r| r.name == name && r.workload == workload)
        .unwrap_or_else(|| panic!("no {name} on {workload}: {headline:#?}"))
}

#[test]
fn rows_take_medians_over_rounds() {
    let rows = fixture().rows();
    assert_eq!(rows.len(), 7);
    let raw = &rows[0];
    assert_eq!(
        (raw.workload, raw.contender),
        (Workload::single(50), Contender::Raw)
    );
    assert_eq!(raw.ops_per_sec.median, 51_000.0);
    assert_eq!(
        (raw.ops_per_sec.min, raw.ops_per_sec.max),
        (50_000.0, 52_000.0)
    );
    assert_eq!(
        raw.tracker_commands_per_million, None,
        "(a) runs no tracker"
    );
    let direct = &rows[2];
    // 2300 commands over 115,000 ops and 2250 over 112,500: 20,000 per million both times.
    assert_eq!(direct.tracker_commands_per_million, Some(20_000.0));
    assert_eq!(direct.tracker_round_trips_per_million, Some(10_000.0));
    assert_eq!(direct.statsd_packets_per_request, Some(1.0));
    assert_eq!(direct.peak_rss_mib, Some(20.0));
    assert_eq!(
        rows[3].statsd_packets_per_request, None,
        "(d) sends no metrics"
    );
    assert_eq!(raw.statsd_packets_per_request, None, "(a) sends no metrics");
    let traced = &rows[4];
    assert_eq!(
        (traced.workload, traced.contender),
        (Workload::single(50), Contender::Traced)
    );
    assert_eq!(traced.ops_per_sec.median, 40_800.0);
    assert_eq!(traced.cpu_us_per_op, Some(30.5));
    assert_eq!(traced.spans_per_request, Some(2.0));
    assert_eq!(traced.statsd_packets_per_request, Some(1.0));
    assert!(
        traced.tracker_commands_per_million.is_some(),
        "(e) runs the tracker"
    );
    assert!(
        rows.iter()
            .filter(|r| r.contender != Contender::Traced)
            .all(|r| r.spans_per_request.is_none()),
        "only (e) records spans"
    );
    let pipelined = &rows[6];
    assert_eq!(
        (pipelined.workload, pipelined.contender),
        (Workload::pipeline(50, 16), Contender::Aggregated)
    );
    assert_eq!(
        pipelined.statsd_packets_per_request,
        Some(1.0),
        "one packet per pipeline"
    );
}

#[test]
fn headline_ratios_are_paired_within_rounds() {
    let headline = fixture().headline();
    let find = |name: &str, workload: Workload| headline_figure(&headline, name, workload);
    let ops = find("(b)/(a) ops/s", Workload::single(50));
    let value = ops.value.unwrap();
    assert!(
        (value.min - 0.9).abs() < 1e-9 && (value.max - 0.96).abs() < 1e-9,
        "{value:?}"
    );
    assert!((value.median - 0.93).abs() < 1e-9);
    assert_eq!(ops.goal, Some(Goal::AtLeast(0.95)));
    assert_eq!(ops.met(), Some(false));

    let p99 = find("(b)/(a) p99", Workload::single(50));
    assert!((p99.value.unwrap().median - 1.125).abs() < 1e-9);
    assert_eq!(p99.met(), Some(false));

    // 252 commands per 120,000 ops against 2300 per 115,000 (round 0): 0.105.
    let commands = find("(b)/(c) tracker commands", Workload::single(50));
    assert_eq!(commands.goal, Some(Goal::AtMost(0.01)));
    assert_eq!(commands.met(), Some(false));

    // No goal for pipelines' throughput; no direct-mode cell there, so no tracker ratio.
    assert_eq!(find("(b)/(a) ops/s", Workload::pipeline(50, 16)).goal, None);
    assert!(
        headline
            .iter()
            .all(|r| !(r.name.contains("(b)/(c)") && r.workload.is_pipeline()))
    );
    let reference = find("(a)/(d) ops/s", Workload::single(50));
    assert!((reference.value.unwrap().median - 0.5).abs() < 1e-9);

    // (e) against (a), in the same rounds; no goal, and nothing where (e) did not run.
    let traced_ops = find("(e)/(a) ops/s", Workload::single(50));
    let value = traced_ops.value.unwrap();
    assert!((value.min - 0.8).abs() < 1e-9 && (value.max - 0.8).abs() < 1e-9);
    assert_eq!((traced_ops.unit, traced_ops.goal), (Unit::Ratio, None));
    let traced_p99 = find("(e)/(a) p99", Workload::single(50));
    assert!((traced_p99.value.unwrap().median - 1.55).abs() < 1e-9);
    assert!(
        headline
            .iter()
            .all(|r| !(r.name.starts_with("(e)") && r.workload.is_pipeline())),
        "{headline:#?}"
    );
}

#[test]
fn headline_states_client_cpu_and_its_differences() {
    let headline = fixture().headline();
    let find = |name: &str, workload: Workload| headline_figure(&headline, name, workload);
    let median = |name: &str, workload: Workload| find(name, workload).value.unwrap().median;
    let single = Workload::single(50);
    let pipeline = Workload::pipeline(50, 16);
    assert_eq!(median("(a) client CPU µs/op", single), 20.0);
    assert_eq!(median("(b) client CPU µs/op", single), 24.5);
    assert_eq!(median("(e) client CPU µs/op", single), 30.5);
    let cpu = find("(e) client CPU µs/op", single);
    assert_eq!((cpu.unit, cpu.goal, cpu.met()), (Unit::Micros, None, None));

    // (b) − (a): 4 and 5 µs in the two rounds, against a goal of at most 1 µs.
    let over_raw = find("(b) − (a) client CPU µs/op", single);
    let value = over_raw.value.unwrap();
    assert_eq!((value.min, value.median, value.max), (4.0, 4.5, 5.0));
    assert_eq!(over_raw.goal, Some(Goal::AtMost(1.0)));
    assert_eq!(over_raw.met(), Some(false));
    // Pipelines: 1 µs (the bound itself) and 0.8 µs, so the median 0.9 meets it.
    let pipelined = find("(b) − (a) client CPU µs/op", pipeline);
    assert!((pipelined.value.unwrap().median - 0.9).abs() < 1e-9);
    assert_eq!(pipelined.met(), Some(true));

    // (e) − (b): what recording spans costs on top, 6 µs in both rounds.
    let tracing = find("(e) − (b) client CPU µs/op", single);
    assert_eq!(tracing.value.unwrap().median, 6.0);
    assert_eq!(tracing.goal, None);

    // (e) right after (b) for each figure, CPU figures between the latency and tracker ratios.
    let names: Vec<&str> = headline
        .iter()
        .filter(|r| r.workload == single)
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "(b)/(a) ops/s",
            "(e)/(a) ops/s",
            "(b)/(a) p99",
            "(e)/(a) p99",
            "(a) client CPU µs/op",
            "(b) client CPU µs/op",
            "(e) client CPU µs/op",
            "(b) − (a) client CPU µs/op",
            "(e) − (b) client CPU µs/op",
            "(b)/(c) tracker commands",
            "(b)/(c) tracker round trips",
            "(a)/(d) ops/s",
        ]
    );
}

#[test]
fn a_tracker_that_sent_nothing_meets_no_goal_of_sending_little() {
    let mut report = fixture();
    for cell in &mut report.cells {
        if cell.contender == Contender::Aggregated {
            cell.tracker = tracker(0, 0);
        }
    }
    let headline = report.headline();
    // Left out, as a figure with no value is, rather than a ratio of 0 that meets its goal.
    for name in ["(b)/(c) tracker commands", "(b)/(c) tracker round trips"] {
        assert!(
            headline.iter().all(|figure| figure.name != name),
            "{headline:#?}"
        );
    }
}

#[test]
fn goals_judge_their_bound_inclusively() {
    assert!(Goal::AtLeast(0.95).met(0.95));
    assert!(!Goal::AtLeast(0.95).met(0.949));
    assert!(Goal::AtMost(1.1).met(1.1));
    assert!(!Goal::AtMost(1.1).met(1.1001));
    assert_eq!(Goal::AtMost(0.01).to_string(), "≤ 0.01");
}

#[test]
fn renders_the_exact_markdown() {
    let expected = include_str!("tests/fixture.md");
    assert_eq!(fixture().to_markdown(), expected);
}

#[test]
fn json_round_trips_and_carries_the_derived_figures() {
    let report = fixture();
    let json = report.to_json().unwrap();
    assert_eq!(Report::from_json(&json).unwrap(), report);
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(value["rows"].as_array().unwrap().len(), 7);
    assert_eq!(value["report"]["cells"][1]["contender"], "aggregated");
    let traced = &value["report"]["cells"][4];
    assert_eq!(traced["contender"], "traced");
    assert_eq!(traced["figures"]["spans_closed"], 200_000);
    assert!(
        value["report"]["cells"][0]["figures"]
            .get("spans_closed")
            .is_none(),
        "left out where no spans were recorded"
    );
    assert_eq!(value["report"]["cells"][0]["workload"]["tasks"], 50);
    assert_eq!(
        value["report"]["cells"][2]["tracker"]["by_command"]["expire"],
        1_150
    );
    let headline = value["headline"].as_array().unwrap();
    assert_eq!(headline.len(), fixture().headline().len());
    assert!(
        headline
            .iter()
            .any(|h| h["name"] == "(b) − (a) client CPU µs/op" && h["unit"] == "micros")
    );
    assert!(Report::from_json("{}").is_err());

    // A report written before (e) existed, without `spans_closed`, still reads.
    let mut older: serde_json::Value = serde_json::from_str(&json).unwrap();
    for cell in older["report"]["cells"].as_array_mut().unwrap() {
        cell["figures"]
            .as_object_mut()
            .unwrap()
            .remove("spans_closed");
    }
    let older = Report::from_json(&older.to_string()).unwrap();
    assert_eq!(older.cells[4].figures.spans_closed, None);
}

#[test]
fn numbers_are_formatted_without_noise() {
    assert_eq!(fmt_num(0.5), "0.5");
    assert_eq!(fmt_num(3.0), "3");
    assert_eq!(fmt_num(0.01), "0.01");
    assert_eq!(fmt_num(0.0), "0");
    assert_eq!(fmt_opt(None, 1), "—");
    assert_eq!(fmt_ratio(0.951), "0.951");
    assert_eq!(fmt_ratio(0.00174), "0.00174");
    assert_eq!(fmt_ratio(0.0), "0.000");
    assert_eq!(fmt_opt(Some(1.26), 1), "1.3");
}

/// Figures of a hot-key cell: `busiest` commands on the busiest primary, and for (f) its cache.
fn hot(ops_per_sec: f64, p99_us: f64, busiest: u64, hits: Option<u64>) -> CellFigures {
    CellFigures {
        busiest_primary_commands: Some(busiest),
        cache: hits.map(|hits| CacheWindow {
            hits,
            misses: 1_000,
            invalidations: 800,
        }),
        ..figures(ops_per_sec, p99_us, 10.0)
    }
}

/// Two rounds of the hot-key workload: (a), (b) and (f), and the cache's memory.
fn hot_fixture() -> Report {
    use Contender::{Aggregated, Cached, Raw};
    let workload = Workload::hot_keys(50);
    let cell = |round, contender, figures| Cell {
        round,
        workload,
        contender,
        figures,
        tracker: tracker(0, 0),
        statsd_packets: 0,
    };
    let mut report = fixture();
    report.settings.workloads = vec![workload];
    report.cells = vec![
        // Round 0, commands per operation: (a) 2.4, (b) 2.2, (f) 0.4, so (a)/(f) = 6 and
        // (b)/(f) = 5.5; (f)/(a) ops/s = 2.2, hit share 0.95.
        cell(0, Raw, hot(50_000.0, 1_000.0, 240_000, None)),
        cell(0, Aggregated, hot(45_000.0, 1_100.0, 198_000, None)),
        cell(0, Cached, hot(110_000.0, 900.0, 88_000, Some(19_000))),
        // Round 1: (a) 2.4, (b) 2.1, (f) 0.6 commands per operation, so (a)/(f) = 4 and
        // (b)/(f) = 3.5; (f)/(a) ops/s = 1.8, hit share 0.9.
        cell(1, Raw, hot(50_000.0, 1_000.0, 240_000, None)),
        cell(1, Aggregated, hot(45_000.0, 1_100.0, 189_000, None)),
        cell(1, Cached, hot(90_000.0, 950.0, 108_000, Some(9_000))),
    ];
    report.cache_memory = Some(CacheMemory {
        keys: 10_000,
        cached: 10_000,
        value_size: 100,
        heap_before_bytes: 2_000_000,
        heap_after_bytes: 5_070_000,
        rss_before_kib: 30_000,
        rss_after_kib: 33_000,
        passes: 4,
    });
    report
}

#[test]
fn the_hot_key_workload_is_judged_by_the_busiest_primary_and_throughput() {
    let report = hot_fixture();
    let headline = report.headline();
    let workload = Workload::hot_keys(50);
    let find = |name: &str| headline_figure(&headline, name, workload);
    let raw = find("(a)/(f) busiest primary commands per operation");
    assert_eq!(raw.goal, Some(Goal::AtLeast(5.0)));
    assert!((raw.value.unwrap().median - 5.0).abs() < 1e-9);
    assert_eq!(raw.met(), Some(true), "the bound itself meets it");
    let monitored = find("(b)/(f) busiest primary commands per operation");
    assert!((monitored.value.unwrap().median - 4.5).abs() < 1e-9);
    assert_eq!(monitored.met(), Some(false));
    let ops = find("(f)/(a) ops/s");
    assert_eq!(ops.goal, Some(Goal::AtLeast(2.0)));
    assert!((ops.value.unwrap().median - 2.0).abs() < 1e-9);
    assert_eq!(ops.met(), Some(true));
    assert_eq!(find("(f)/(b) ops/s").goal, None);
    assert!((find("(f) cache hit share").value.unwrap().median - 0.925).abs() < 1e-9);
    // The standard workloads' goals do not judge the hot-key workload.
    assert_eq!(find("(b)/(a) ops/s").goal, None);
    assert!(headline.iter().all(|r| !r.name.contains("(b)/(c)")));

    let rows = report.rows();
    let contenders: Vec<Contender> = rows.iter().map(|r| r.contender).collect();
    assert_eq!(
        contenders,
        [Contender::Raw, Contender::Aggregated, Contender::Cached]
    );
    assert_eq!(rows[0].busiest_primary_commands, Some(240_000.0));
    assert_eq!(rows[0].cache_hit_share, None);
    assert_eq!(rows[2].busiest_primary_commands, Some(98_000.0));
    assert!((rows[2].cache_hit_share.unwrap() - 0.925).abs() < 1e-9);
}

#[test]
fn the_hot_key_section_has_its_table_memory_and_notes() {
    let report = hot_fixture();
    let markdown = report.to_markdown();
    assert!(markdown.contains("\n## hot keys, Zipf(1.2), 50 tasks\n"));
    assert!(markdown.contains(
        "| (f) monitored, hot-key cache | 100000 | 90000–110000 | 231.2 | 925.0 | 1850.0 | 10.0 | 98000 | 0.490 | 92.5% | 0 |"
    ));
    assert!(markdown.contains(
        "| (a) raw redis-rs | 50000 | 50000–50000 | 250.0 | 1000.0 | 2000.0 | 10.0 | 240000 | 2.400 | — | 0 |"
    ));
    assert!(markdown.contains(
        "Cache memory: 307 bytes of live heap per cached key (10000 keys of 100-byte values \
         cached with `cache_max_keys = 20000`, after 4 passes over the keys: 2000000 bytes of \
         heap before, 5070000 after; VmRSS grew 307 bytes per key"
    ));
    assert!(markdown.contains("| (a)/(f) busiest primary commands per operation | hot keys, Zipf(1.2), 50 tasks | 5.000 | 4.000–6.000 | ≥ 5 | yes |"));
    assert!(markdown.contains(
        "| (f)/(a) ops/s | hot keys, Zipf(1.2), 50 tasks | 2.000 | 1.800–2.200 | ≥ 2 | yes |"
    ));
    assert!(markdown.contains("| (b)/(f) busiest primary commands per operation | hot keys, Zipf(1.2), 50 tasks | 4.500 | 3.500–5.500 | ≥ 5 | **no** |"));
    assert!(markdown.contains("- Hot keys: 5% SET / 95% GET"));
    assert!(markdown.contains("`cache_max_keys` 10000 (its default), `cache_ttl` 10 s"));
    let mut larger = report.clone();
    larger.settings.cache_max_keys = Some(20_000);
    assert!(
        larger
            .to_markdown()
            .contains("`cache_max_keys` 20000, `cache_ttl` 10 s")
    );
    assert!(
        !fixture().to_markdown().contains("Hot keys"),
        "no hot-key notes without the workload"
    );
    let json = report.to_json().unwrap();
    assert_eq!(Report::from_json(&json).unwrap(), report);
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(value["report"]["cache_memory"]["cached"], 10_000);
    assert_eq!(
        value["report"]["cells"][2]["figures"]["cache"]["hits"],
        19_000
    );
    assert_eq!(value["report"]["cells"][0]["workload"]["mix"], "hot-keys");
}
