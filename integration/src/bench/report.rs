//! The benchmark's report: every cell's raw figures, the per-workload table of medians and spreads,
//! the headline ratios against the goals, rendered as Markdown and JSON.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::bench::BenchError;
use crate::bench::cluster::TrackerTraffic;
use crate::bench::contenders::{CellFigures, Contender};
use crate::bench::stats::Spread;
use crate::bench::workload::Workload;

/// Everything a run measured, and how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The command that produced it, e.g. `cargo xtask bench --quick`.
    pub command: String,
    /// Where it ran.
    pub machine: Machine,
    /// What it ran.
    pub settings: Settings,
    /// One entry per round, workload and contender, in the order they ran.
    pub cells: Vec<Cell>,
}

/// The machine and cluster a run used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    /// Logical CPUs.
    pub cpus: usize,
    /// The CPU model, from `/proc/cpuinfo`.
    pub cpu_model: String,
    /// The kernel release.
    pub kernel: String,
    /// `redis-server --version`'s version.
    pub redis_version: String,
    /// The cluster's shape and where it listened.
    pub cluster: String,
    /// Anything else a reader should know (a shared, noisy machine, say).
    pub note: String,
}

/// What a run ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// Rounds; each runs every workload against every contender once.
    pub rounds: usize,
    /// Warm-up per cell, in seconds.
    pub warmup_s: f64,
    /// Measured window per cell, in seconds.
    pub measure_s: f64,
    /// Distinct keys, all preloaded.
    pub keys: usize,
    /// Value size in bytes.
    pub value_size: usize,
    /// Share of SETs.
    pub write_share: f64,
    /// Exponent of the Zipf distribution of key ranks.
    pub zipf_exponent: f64,
    /// The hot-key tracker's read and write sample rate in (b) and (c).
    pub tracker_sample_rate: f64,
    /// How `max_connections` of the monitored client was chosen.
    pub max_connections: String,
    /// The workloads, in order.
    pub workloads: Vec<Workload>,
}

/// One workload run against one contender in one round, in a process of its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    /// The round, from 0.
    pub round: usize,
    /// What ran.
    pub workload: Workload,
    /// Who ran it.
    pub contender: Contender,
    /// What the cell's process measured.
    pub figures: CellFigures,
    /// The tracker's commands over the cell's whole process (from `INFO commandstats`).
    pub tracker: TrackerTraffic,
    /// Statsd packets the sink received over the cell's whole process.
    pub statsd_packets: u64,
}

impl Cell {
    /// Tracker commands per 1,000,000 commands of the workload.
    pub fn tracker_commands_per_million(&self) -> f64 {
        per_million(self.tracker.commands, self.figures.total_ops)
    }

    /// Tracker round trips per 1,000,000 commands of the workload.
    pub fn tracker_round_trips_per_million(&self) -> f64 {
        per_million(self.tracker.round_trips, self.figures.total_ops)
    }

    /// Statsd packets per request (a pipeline is one request).
    pub fn statsd_packets_per_request(&self) -> f64 {
        let requests = self.figures.total_ops / self.workload.depth.max(1) as u64;
        if requests == 0 {
            0.0
        } else {
            #[allow(clippy::cast_precision_loss)]
            let ratio = self.statsd_packets as f64 / requests as f64;
            ratio
        }
    }
}

#[allow(clippy::cast_precision_loss)]
fn per_million(count: u64, ops: u64) -> f64 {
    if ops == 0 {
        0.0
    } else {
        count as f64 * 1e6 / ops as f64
    }
}

/// One contender on one workload, over the rounds: medians, and spreads where they matter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// The workload.
    pub workload: Workload,
    /// The contender.
    pub contender: Contender,
    /// Commands per second.
    pub ops_per_sec: Spread,
    /// Median latency, µs (median over rounds).
    pub p50_us: Option<f64>,
    /// 99th percentile latency, µs.
    pub p99_us: Option<Spread>,
    /// 99.9th percentile latency, µs (median over rounds).
    pub p999_us: Option<f64>,
    /// Client CPU time per command, µs (median over rounds).
    pub cpu_us_per_op: Option<f64>,
    /// Peak resident memory, MiB (median over rounds).
    pub peak_rss_mib: Option<f64>,
    /// Tracker commands per 1,000,000 commands (median over rounds).
    pub tracker_commands_per_million: Option<f64>,
    /// Tracker round trips per 1,000,000 commands (median over rounds).
    pub tracker_round_trips_per_million: Option<f64>,
    /// Statsd packets per request (median over rounds).
    pub statsd_packets_per_request: Option<f64>,
    /// Failed requests, summed over rounds.
    pub errors: u64,
}

/// A goal a headline ratio is judged against.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Goal {
    /// The ratio must be at least this.
    AtLeast(f64),
    /// The ratio must be at most this.
    AtMost(f64),
}

impl Goal {
    /// Whether `value` meets the goal.
    pub fn met(self, value: f64) -> bool {
        match self {
            Self::AtLeast(bound) => value >= bound,
            Self::AtMost(bound) => value <= bound,
        }
    }
}

impl std::fmt::Display for Goal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::AtLeast(bound) => write!(f, "≥ {bound}"),
            Self::AtMost(bound) => write!(f, "≤ {bound}"),
        }
    }
}

/// A headline ratio: the median (and range) over rounds of the ratio taken within each round, so
/// drift between rounds cancels out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ratio {
    /// What is divided by what, e.g. `(b)/(a) ops/s`.
    pub name: String,
    /// The workload it is taken on.
    pub workload: Workload,
    /// Median and range over rounds; `None` when a side was never measured or is zero.
    pub value: Option<Spread>,
    /// The goal, if the issue sets one for this ratio.
    pub goal: Option<Goal>,
}

impl Ratio {
    /// Whether the median meets the goal; `None` without a goal or a value.
    pub fn met(&self) -> Option<bool> {
        Some(self.goal?.met(self.value?.median))
    }
}

/// What `report.json` holds: the report and what is derived from it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct ReportJson {
    report: Report,
    rows: Vec<Row>,
    headline: Vec<Ratio>,
}

impl Report {
    /// Every (workload, contender) that ran, with its medians and spreads.
    pub fn rows(&self) -> Vec<Row> {
        let mut rows = Vec::new();
        for &workload in &self.settings.workloads {
            for contender in Contender::ALL {
                let cells: Vec<&Cell> = self
                    .cells
                    .iter()
                    .filter(|c| c.workload == workload && c.contender == contender)
                    .collect();
                let Some(ops_per_sec) =
                    Spread::of(&collect(&cells, |c| Some(c.figures.ops_per_sec)))
                else {
                    continue;
                };
                let latency = |f: fn(&crate::bench::stats::Percentiles) -> Option<f64>| {
                    Spread::of(&collect(&cells, |c| c.figures.latency.as_ref().and_then(f)))
                };
                let tracking = contender.tracks_keys();
                let median = |f: &dyn Fn(&Cell) -> Option<f64>| {
                    Spread::of(&collect(&cells, f)).map(|s| s.median)
                };
                rows.push(Row {
                    workload,
                    contender,
                    ops_per_sec,
                    p50_us: latency(|p| Some(p.p50_us)).map(|s| s.median),
                    p99_us: latency(|p| Some(p.p99_us)),
                    p999_us: latency(|p| p.p999_us).map(|s| s.median),
                    cpu_us_per_op: median(&|c| Some(c.figures.cpu_us_per_op)),
                    #[allow(clippy::cast_precision_loss)]
                    peak_rss_mib: median(&|c| c.figures.peak_rss_kib.map(|k| k as f64 / 1024.0)),
                    tracker_commands_per_million: median(&|c| {
                        (tracking || c.tracker.commands > 0)
                            .then(|| c.tracker_commands_per_million())
                    }),
                    tracker_round_trips_per_million: median(&|c| {
                        (tracking || c.tracker.commands > 0)
                            .then(|| c.tracker_round_trips_per_million())
                    }),
                    statsd_packets_per_request: median(&|c| {
                        tracking.then(|| c.statsd_packets_per_request())
                    }),
                    errors: cells.iter().map(|c| c.figures.errors).sum(),
                });
            }
        }
        rows
    }

    /// The headline ratios: (b)/(a) ops/s and p99 on every workload, (b)/(c) tracker commands and
    /// round trips, (a)/(d) ops/s; with the goals where it sets them.
    pub fn headline(&self) -> Vec<Ratio> {
        use Contender::{Aggregated, Direct, Raw, RedisBenchmark};
        let goal_tasks = |w: &Workload, goal: Goal| {
            (!w.is_pipeline() && (w.tasks == 50 || w.tasks == 500)).then_some(goal)
        };
        let ops = |c: &Cell| Some(c.figures.ops_per_sec);
        let p99 = |c: &Cell| c.figures.latency.map(|l| l.p99_us);
        let commands = |c: &Cell| Some(c.tracker_commands_per_million());
        let round_trips = |c: &Cell| Some(c.tracker_round_trips_per_million());
        let mut ratios = Vec::new();
        for workload in &self.settings.workloads {
            ratios.push(self.ratio(
                "(b)/(a) ops/s",
                *workload,
                Aggregated,
                Raw,
                ops,
                goal_tasks(workload, Goal::AtLeast(0.95)),
            ));
        }
        for workload in &self.settings.workloads {
            ratios.push(self.ratio(
                "(b)/(a) p99",
                *workload,
                Aggregated,
                Raw,
                p99,
                goal_tasks(workload, Goal::AtMost(1.10)),
            ));
        }
        for workload in &self.settings.workloads {
            ratios.push(self.ratio(
                "(b)/(c) tracker commands",
                *workload,
                Aggregated,
                Direct,
                commands,
                Some(Goal::AtMost(0.01)),
            ));
        }
        for workload in &self.settings.workloads {
            ratios.push(self.ratio(
                "(b)/(c) tracker round trips",
                *workload,
                Aggregated,
                Direct,
                round_trips,
                None,
            ));
        }
        for workload in &self.settings.workloads {
            ratios.push(self.ratio("(a)/(d) ops/s", *workload, Raw, RedisBenchmark, ops, None));
        }
        ratios.retain(|r| r.value.is_some());
        ratios
    }

    fn ratio(
        &self,
        name: &str,
        workload: Workload,
        top: Contender,
        bottom: Contender,
        figure: impl Fn(&Cell) -> Option<f64>,
        goal: Option<Goal>,
    ) -> Ratio {
        let find = |round: usize, contender: Contender| {
            self.cells
                .iter()
                .find(|c| c.round == round && c.workload == workload && c.contender == contender)
                .and_then(&figure)
        };
        let rounds = self
            .cells
            .iter()
            .map(|c| c.round)
            .max()
            .map_or(0, |r| r + 1);
        let ratios: Vec<f64> = (0..rounds)
            .filter_map(|round| match (find(round, top), find(round, bottom)) {
                (Some(top), Some(bottom)) if bottom > 0.0 => Some(top / bottom),
                _ => None,
            })
            .collect();
        Ratio {
            name: name.to_owned(),
            workload,
            value: Spread::of(&ratios),
            goal,
        }
    }

    /// The report as pretty JSON: the report itself (every raw figure) plus its rows and headline.
    ///
    /// # Errors
    /// When serialisation fails (it does not for these types).
    pub fn to_json(&self) -> Result<String, BenchError> {
        let json = ReportJson {
            report: self.clone(),
            rows: self.rows(),
            headline: self.headline(),
        };
        Ok(serde_json::to_string_pretty(&json)?)
    }

    /// Reads back what [`to_json`](Self::to_json) wrote.
    ///
    /// # Errors
    /// When `json` is not such a document.
    pub fn from_json(json: &str) -> Result<Self, BenchError> {
        let parsed: ReportJson = serde_json::from_str(json)?;
        Ok(parsed.report)
    }

    /// The report as Markdown: headline ratios, one table per workload, then how it was measured.
    pub fn to_markdown(&self) -> String {
        let mut out = String::new();
        let s = &self.settings;
        let m = &self.machine;
        let _ = writeln!(out, "# baseplate-rs benchmark\n");
        let _ = writeln!(out, "Command: `{}`\n", self.command);
        let _ = writeln!(
            out,
            "Machine: {} logical CPUs ({}), Linux {}, Redis {}; cluster: {}. {}\n",
            m.cpus, m.cpu_model, m.kernel, m.redis_version, m.cluster, m.note
        );
        let _ = writeln!(
            out,
            "Each cell is one workload against one contender in a process of its own: {} s warm-up, \
             then {} s measured. {} rounds; within a round the contenders alternate (the order \
             rotates each round). Figures are medians over rounds; spreads are min–max. Ratios are \
             taken within each round, then their median.\n",
            fmt_num(s.warmup_s),
            fmt_num(s.measure_s),
            s.rounds
        );

        let _ = writeln!(out, "## Headline ratios\n");
        let _ = writeln!(out, "| ratio | workload | median | spread | goal | met |");
        let _ = writeln!(out, "|---|---|---:|---:|---|---|");
        for ratio in self.headline() {
            let Some(value) = ratio.value else { continue };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {}–{} | {} | {} |",
                ratio.name,
                ratio.workload,
                fmt_ratio(value.median),
                fmt_ratio(value.min),
                fmt_ratio(value.max),
                ratio.goal.map_or("—".to_owned(), |g| g.to_string()),
                match ratio.met() {
                    Some(true) => "yes",
                    Some(false) => "**no**",
                    None => "—",
                }
            );
        }

        let rows = self.rows();
        for workload in &s.workloads {
            let _ = writeln!(out, "\n## {workload}\n");
            let _ = writeln!(
                out,
                "| contender | ops/s | spread | p50 µs | p99 µs | p99.9 µs | CPU µs/op | peak RSS MiB | tracker cmds / 1M ops | tracker round trips / 1M ops | statsd packets / request | errors |"
            );
            let _ = writeln!(
                out,
                "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
            );
            for row in rows.iter().filter(|r| r.workload == *workload) {
                let _ = writeln!(
                    out,
                    "| {} | {} | {}–{} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    row.contender,
                    fmt_int(row.ops_per_sec.median),
                    fmt_int(row.ops_per_sec.min),
                    fmt_int(row.ops_per_sec.max),
                    fmt_opt(row.p50_us, 1),
                    fmt_opt(row.p99_us.map(|p| p.median), 1),
                    fmt_opt(row.p999_us, 1),
                    fmt_opt(row.cpu_us_per_op, 1),
                    fmt_opt(row.peak_rss_mib, 1),
                    fmt_opt(row.tracker_commands_per_million, 0),
                    fmt_opt(row.tracker_round_trips_per_million, 0),
                    fmt_opt(row.statsd_packets_per_request, 2),
                    row.errors
                );
            }
        }

        let _ = writeln!(out, "\n## How it was measured\n");
        let notes = [
            format!(
                "Workloads: {}% SET / {}% GET of {}-byte values; keys drawn Zipf({}) over {} preloaded \
                 keys; every task has its own seeded generator. A pipeline is a named pipeline of \
                 that many such commands, spread over slots; ops/s counts commands, latency counts \
                 requests (a pipeline is one).",
                fmt_num(s.write_share * 100.0),
                fmt_num((1.0 - s.write_share) * 100.0),
                s.value_size,
                fmt_num(s.zipf_exponent),
                s.keys
            ),
            "(a) one raw redis-rs `ClusterConnection` shared by all tasks, no instrumentation; its \
             pipelines are split by node and sent as one sub-pipeline per node, concurrently \
             (redis-rs alone rejects cross-slot pipelines)."
                .to_owned(),
            format!(
                "(b), (c): per request, `make_context_object` + `make_server_span`, the \
                 `MonitoredClusterRedisConnection` from the context, the command (or named \
                 pipeline) in the server span; the request-metrics layer is the global subscriber \
                 and sends one statsd batch per request to a local UDP sink; the hot-key tracker \
                 samples reads and writes at {} in aggregated (b) or direct (c) mode; reads go to \
                 primaries as for (a); `max_connections` {}.",
                fmt_num(s.tracker_sample_rate),
                s.max_connections
            ),
            "(d) `redis-benchmark --cluster` with -c = tasks, -P = pipeline depth, -d 100, \
             -r 100000, run for SET (10% of the requests) then GET (90%); its ops/s is that mix run \
             back to back, its latencies are the GET run's (it reports no p99.9), its keys are its \
             own (`key:{tag}:N`, so some GETs miss)."
                .to_owned(),
            "CPU µs/op: user + system time of the cell's process (for (d), of redis-benchmark) over \
             the measured window, from /proc (10 ms ticks). Peak RSS: VmHWM of that process."
                .to_owned(),
            "Tracker commands and round trips: `INFO commandstats` deltas (ZINCRBY, EXPIRE, \
             ZREMRANGEBYRANK) on the primaries holding the tracker's sets, over the cell's whole \
             process (warm-up and the final flush included), per 1,000,000 commands of that \
             process. Each tracker pipeline carries exactly one EXPIRE, so round trips = EXPIREs. \
             Aggregated mode writes at most a fixed number of commands per set per flush interval \
             (10 s), so its figure per 1M commands falls as throughput and cell length grow."
                .to_owned(),
        ];
        for note in notes {
            let _ = writeln!(out, "- {note}");
        }
        out
    }
}

fn collect(cells: &[&Cell], figure: impl Fn(&Cell) -> Option<f64>) -> Vec<f64> {
    cells.iter().filter_map(|c| figure(c)).collect()
}

/// Three decimals, or three significant digits below 0.1 (tracker ratios are small).
fn fmt_ratio(value: f64) -> String {
    if value != 0.0 && value.abs() < 0.1 {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let decimals = (2.0 - value.abs().log10().floor()) as usize;
        format!("{value:.decimals$}")
    } else {
        format!("{value:.3}")
    }
}

fn fmt_int(value: f64) -> String {
    format!("{value:.0}")
}

/// A number without trailing zeros: `0.5`, `3`, `0.01`.
fn fmt_num(value: f64) -> String {
    let text = format!("{value:.4}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text.is_empty() || text == "-" {
        "0".to_owned()
    } else {
        text.to_owned()
    }
}

fn fmt_opt(value: Option<f64>, decimals: usize) -> String {
    value.map_or("—".to_owned(), |v| format!("{v:.decimals$}"))
}

#[cfg(test)]
pub(crate) mod tests;
