//! The benchmark's report: every cell's raw figures, the per-workload table of medians and spreads,
//! the headline figures (ratios and client CPU) against the goals, rendered as Markdown and JSON. The
//! hot-key workload has a table of its own (the busiest primary's commands, the cache's hit share)
//! and the cache's memory per key.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::bench::BenchError;
use crate::bench::cache_memory::CacheMemory;
use crate::bench::cluster::TrackerTraffic;
use crate::bench::contenders::{CellFigures, Contender};
use crate::bench::stats::Spread;
use baseplate::crates::redis_cluster::DEFAULT_CACHE_MAX_KEYS;

use crate::bench::workload::{HOT_WRITE_SHARE, HOT_ZIPF_EXPONENT, Workload};

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
    /// The hot-key cache's memory per cached key, when the hot-key workload ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_memory: Option<CacheMemory>,
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
    /// The hot-key tracker's read and write sample rate in (b), (c) and (e).
    pub tracker_sample_rate: f64,
    /// How `max_connections` of the monitored client was chosen.
    pub max_connections: String,
    /// The workloads, in order.
    pub workloads: Vec<Workload>,
    /// (f)'s `cache_max_keys` when not the default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_max_keys: Option<usize>,
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
        per_request(self.statsd_packets, self.requests())
    }

    /// Spans recorded per request, for (e); `None` for contenders that record none.
    pub fn spans_per_request(&self) -> Option<f64> {
        Some(per_request(self.figures.spans_closed?, self.requests()))
    }

    /// Requests over the cell's whole process (a pipeline is one request).
    fn requests(&self) -> u64 {
        self.figures.total_ops / self.workload.depth.max(1) as u64
    }
}

fn per_request(count: u64, requests: u64) -> f64 {
    if requests == 0 {
        0.0
    } else {
        #[allow(clippy::cast_precision_loss)]
        let ratio = count as f64 / requests as f64;
        ratio
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
    /// Spans recorded per request (median over rounds), for (e).
    pub spans_per_request: Option<f64>,
    /// Commands the busiest primary served in the measured window (median over rounds), on the
    /// hot-key workload.
    #[serde(default)]
    pub busiest_primary_commands: Option<f64>,
    /// The hot-key cache's hit share in the measured window (median over rounds), for (f).
    #[serde(default)]
    pub cache_hit_share: Option<f64>,
    /// Failed requests, summed over rounds.
    pub errors: u64,
}

/// A goal a headline figure is judged against.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Goal {
    /// The figure must be at least this.
    AtLeast(f64),
    /// The figure must be at most this.
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

/// What a headline figure is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Unit {
    /// One contender's figure divided by another's, e.g. `(b)/(a) ops/s`.
    Ratio,
    /// Microseconds: a contender's client CPU per command, or the difference between two.
    Micros,
}

/// A headline figure: the median (and range) over rounds of a value taken within each round (a
/// ratio or difference between two contenders, so drift between rounds cancels out, or one
/// contender's own figure).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Headline {
    /// What it is, e.g. `(b)/(a) ops/s` or `(b) − (a) client CPU µs/op`.
    pub name: String,
    /// A ratio or microseconds.
    pub unit: Unit,
    /// The workload it is taken on.
    pub workload: Workload,
    /// Median and range over rounds; `None` when a side was never measured (or, for a ratio, is
    /// zero).
    pub value: Option<Spread>,
    /// The goal, if the benchmark sets one for this figure.
    pub goal: Option<Goal>,
}

impl Headline {
    /// Whether the median meets the goal; `None` without a goal or a value.
    pub fn met(&self) -> Option<bool> {
        Some(self.goal?.met(self.value?.median))
    }

    /// A value of this figure as the report prints it.
    fn format(&self, value: f64) -> String {
        match self.unit {
            Unit::Ratio => fmt_ratio(value),
            Unit::Micros => format!("{value:.2}"),
        }
    }
}

/// What `report.json` holds: the report and what is derived from it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct ReportJson {
    report: Report,
    rows: Vec<Row>,
    headline: Vec<Headline>,
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
                    spans_per_request: median(&Cell::spans_per_request),
                    #[allow(clippy::cast_precision_loss)]
                    busiest_primary_commands: median(&|c| {
                        c.figures.busiest_primary_commands.map(|n| n as f64)
                    }),
                    cache_hit_share: median(&|c| c.figures.cache.map(|w| w.hit_share())),
                    errors: cells.iter().map(|c| c.figures.errors).sum(),
                });
            }
        }
        rows
    }

    /// The headline figures, each on every workload: (b)/(a) and (e)/(a) ops/s and p99; client
    /// CPU per command of (a), (b) and (e), (b) − (a) and (e) − (b); (b)/(c) tracker commands and
    /// round trips; (a)/(d) ops/s; then on the hot-key workload, the cache's figures (see
    /// `hot_key_headline`). With the benchmark's goals where it sets them.
    pub fn headline(&self) -> Vec<Headline> {
        use Contender::{Aggregated, Direct, Raw, RedisBenchmark, Traced};
        let goal_tasks = |w: &Workload, goal: Goal| {
            (!w.is_pipeline() && !w.is_hot_keys() && (w.tasks == 50 || w.tasks == 500))
                .then_some(goal)
        };
        let ops = |c: &Cell| Some(c.figures.ops_per_sec);
        let p99 = |c: &Cell| c.figures.latency.map(|l| l.p99_us);
        // None rather than 0 for a tracker that sent nothing: a broken one must not meet a goal
        // of sending little.
        let commands = |c: &Cell| Some(c.tracker_commands_per_million()).filter(|&n| n > 0.0);
        let round_trips = |c: &Cell| Some(c.tracker_round_trips_per_million()).filter(|&n| n > 0.0);
        let workloads = &self.settings.workloads;
        let mut figures = Vec::new();
        for w in workloads {
            let goal = goal_tasks(w, Goal::AtLeast(0.95));
            figures.push(self.ratio("(b)/(a) ops/s", *w, Aggregated, Raw, ops, goal));
        }
        for w in workloads {
            figures.push(self.ratio("(e)/(a) ops/s", *w, Traced, Raw, ops, None));
        }
        for w in workloads {
            let goal = goal_tasks(w, Goal::AtMost(1.10));
            figures.push(self.ratio("(b)/(a) p99", *w, Aggregated, Raw, p99, goal));
        }
        for w in workloads {
            figures.push(self.ratio("(e)/(a) p99", *w, Traced, Raw, p99, None));
        }
        for contender in [Raw, Aggregated, Traced] {
            for w in workloads {
                figures.push(self.cpu(*w, contender));
            }
        }
        // The goal: (b) costs at most 1 µs of client CPU per command more than raw redis-rs.
        for w in workloads {
            figures.push(self.cpu_difference(*w, Aggregated, Raw, Some(Goal::AtMost(1.0))));
        }
        for w in workloads {
            figures.push(self.cpu_difference(*w, Traced, Aggregated, None));
        }
        for w in workloads {
            let goal = Some(Goal::AtMost(0.01));
            let name = "(b)/(c) tracker commands";
            figures.push(self.ratio(name, *w, Aggregated, Direct, commands, goal));
        }
        for w in workloads {
            let name = "(b)/(c) tracker round trips";
            figures.push(self.ratio(name, *w, Aggregated, Direct, round_trips, None));
        }
        for w in workloads {
            figures.push(self.ratio("(a)/(d) ops/s", *w, Raw, RedisBenchmark, ops, None));
        }
        for w in workloads.iter().filter(|w| w.is_hot_keys()) {
            figures.extend(self.hot_key_headline(*w));
        }
        figures.retain(|f| f.value.is_some());
        figures
    }

    /// The hot-key workload's figures, within each round: the busiest primary's commands per
    /// operation of (a) and (b) over (f)'s (goal: at least 5), (f)/(a) ops/s (goal: at least 2),
    /// (f)/(b) ops/s, (f)/(a) p99, and (f)'s hit share.
    ///
    /// The commands are compared per operation: each contender runs as fast as it can for the
    /// same time, so one that completes more operations sends more commands in the window, while
    /// the load a given traffic puts on the shard is the commands per operation.
    fn hot_key_headline(&self, w: Workload) -> Vec<Headline> {
        use Contender::{Aggregated, Cached, Raw};
        let ops = |c: &Cell| Some(c.figures.ops_per_sec);
        let p99 = |c: &Cell| c.figures.latency.map(|l| l.p99_us);
        #[allow(clippy::cast_precision_loss)]
        let busiest = |c: &Cell| {
            let commands = c.figures.busiest_primary_commands? as f64;
            (c.figures.ops > 0).then(|| commands / c.figures.ops as f64)
        };
        let fewer = Some(Goal::AtLeast(5.0));
        vec![
            self.ratio(
                "(a)/(f) busiest primary commands per operation",
                w,
                Raw,
                Cached,
                busiest,
                fewer,
            ),
            self.ratio(
                "(b)/(f) busiest primary commands per operation",
                w,
                Aggregated,
                Cached,
                busiest,
                fewer,
            ),
            self.ratio(
                "(f)/(a) ops/s",
                w,
                Cached,
                Raw,
                ops,
                Some(Goal::AtLeast(2.0)),
            ),
            self.ratio("(f)/(b) ops/s", w, Cached, Aggregated, ops, None),
            self.ratio("(f)/(a) p99", w, Cached, Raw, p99, None),
            self.over_rounds(
                "(f) cache hit share".to_owned(),
                Unit::Ratio,
                w,
                None,
                |round| {
                    self.figure_in(round, w, Cached, &|c| {
                        c.figures.cache.map(|window| window.hit_share())
                    })
                },
            ),
        ]
    }

    /// `figure` of `contender`'s cell in `round` on `workload`, if it ran.
    fn figure_in(
        &self,
        round: usize,
        workload: Workload,
        contender: Contender,
        figure: &dyn Fn(&Cell) -> Option<f64>,
    ) -> Option<f64> {
        self.cells
            .iter()
            .find(|c| c.round == round && c.workload == workload && c.contender == contender)
            .and_then(figure)
    }

    /// A headline figure from the value `of_round` takes in each round.
    fn over_rounds(
        &self,
        name: String,
        unit: Unit,
        workload: Workload,
        goal: Option<Goal>,
        of_round: impl Fn(usize) -> Option<f64>,
    ) -> Headline {
        let rounds = self
            .cells
            .iter()
            .map(|c| c.round)
            .max()
            .map_or(0, |r| r + 1);
        let values: Vec<f64> = (0..rounds).filter_map(of_round).collect();
        Headline {
            name,
            unit,
            workload,
            value: Spread::of(&values),
            goal,
        }
    }

    /// `top`'s `figure` over `bottom`'s, taken within each round.
    fn ratio(
        &self,
        name: &str,
        workload: Workload,
        top: Contender,
        bottom: Contender,
        figure: impl Fn(&Cell) -> Option<f64>,
        goal: Option<Goal>,
    ) -> Headline {
        self.over_rounds(
            name.to_owned(),
            Unit::Ratio,
            workload,
            goal,
            |round| match (
                self.figure_in(round, workload, top, &figure),
                self.figure_in(round, workload, bottom, &figure),
            ) {
                (Some(top), Some(bottom)) if bottom > 0.0 => Some(top / bottom),
                _ => None,
            },
        )
    }

    /// `contender`'s client CPU per command, µs.
    fn cpu(&self, workload: Workload, contender: Contender) -> Headline {
        let name = format!("({}) client CPU µs/op", contender.letter());
        self.over_rounds(name, Unit::Micros, workload, None, |round| {
            self.figure_in(round, workload, contender, &cpu_us_per_op)
        })
    }

    /// `top`'s client CPU per command minus `bottom`'s, µs, taken within each round.
    fn cpu_difference(
        &self,
        workload: Workload,
        top: Contender,
        bottom: Contender,
        goal: Option<Goal>,
    ) -> Headline {
        let name = format!(
            "({}) − ({}) client CPU µs/op",
            top.letter(),
            bottom.letter()
        );
        self.over_rounds(name, Unit::Micros, workload, goal, |round| {
            Some(
                self.figure_in(round, workload, top, &cpu_us_per_op)?
                    - self.figure_in(round, workload, bottom, &cpu_us_per_op)?,
            )
        })
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
             rotates each round). Figures are medians over rounds; spreads are min–max. Ratios and \
             differences between contenders are taken within each round, then their median.\n",
            fmt_num(s.warmup_s),
            fmt_num(s.measure_s),
            s.rounds
        );

        let _ = writeln!(out, "## Headline figures\n");
        let _ = writeln!(out, "| figure | workload | median | spread | goal | met |");
        let _ = writeln!(out, "|---|---|---:|---:|---|---|");
        for figure in self.headline() {
            let Some(value) = figure.value else { continue };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {}–{} | {} | {} |",
                figure.name,
                figure.workload,
                figure.format(value.median),
                figure.format(value.min),
                figure.format(value.max),
                figure.goal.map_or("—".to_owned(), |g| g.to_string()),
                match figure.met() {
                    Some(true) => "yes",
                    Some(false) => "**no**",
                    None => "—",
                }
            );
        }

        let rows = self.rows();
        for workload in &s.workloads {
            let _ = writeln!(out, "\n## {workload}\n");
            if workload.is_hot_keys() {
                self.hot_key_table(&mut out, &rows, *workload);
                continue;
            }
            let _ = writeln!(
                out,
                "{LEADING_COLUMNS} peak RSS MiB | tracker cmds / 1M ops | tracker round trips / 1M ops | statsd packets / request | errors |"
            );
            let _ = writeln!(out, "{LEADING_ALIGNMENT}---:|---:|---:|---:|---:|");
            for row in rows.iter().filter(|r| r.workload == *workload) {
                let _ = writeln!(
                    out,
                    "{} {} | {} | {} | {} | {} |",
                    leading_cells(row),
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
                 pipeline) in the server span; the facade's observers record request metrics where \
                 each command runs, one statsd batch per request (batches share UDP packets, sent \
                 to a local sink when full or within 50 ms) plus the runtime-metrics reporter, and \
                 the client records the `redis_client_*` Prometheus series; no `tracing` subscriber \
                 is installed, so the spans are disabled and record nothing; the hot-key tracker samples \
                 reads and writes at {} in aggregated (b) or direct (c) mode; reads go to primaries \
                 as for (a); `max_connections` {}.",
                fmt_num(s.tracker_sample_rate),
                s.max_connections
            ),
            "(d) `redis-benchmark --cluster` with -c = tasks, -P = pipeline depth, -d 100, \
             -r 100000, run for SET (10% of the requests) then GET (90%); its ops/s is that mix run \
             back to back, its latencies are the GET run's (it reports no p99.9), its keys are its \
             own (`key:{tag}:N`, so some GETs miss)."
                .to_owned(),
            format!(
                "(e) exactly (b), plus a global `tracing` subscriber in the cell's process: \
                 `tracing_subscriber::registry()` with a layer that formats every span's fields \
                 into its extensions when it opens, adds those recorded later, and takes them and \
                 counts the span when it closes, so each request's server span and its command's \
                 (`foo.GET`) or pipeline's span are enabled and recorded. Each (e) cell fails \
                 unless its layer saw both for every request{}. (e) − (b) is what recording spans \
                 costs on top of the metrics.",
                spans_note(&rows)
            ),
            "CPU µs/op: user + system time of the cell's process (for (d), of redis-benchmark) over \
             the measured window, from /proc in 10 ms ticks, so a cell resolves 10 ms over the \
             window's commands (0.05 µs for 200,000 commands, 0.5 µs for 20,000): short cells \
             cannot judge the 1 µs goal of (b) − (a). Peak RSS: VmHWM of that process."
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
        if s.workloads.iter().any(Workload::is_hot_keys) {
            for note in self.hot_key_notes() {
                let _ = writeln!(out, "- {note}");
            }
        }
        out
    }

    /// The hot-key workload's table: throughput, latency, the busiest primary's commands and the
    /// cache's hit share per contender; then the cache's memory per key, if measured.
    fn hot_key_table(&self, out: &mut String, rows: &[Row], workload: Workload) {
        let _ = writeln!(
            out,
            "{LEADING_COLUMNS} busiest primary commands in the window | busiest primary commands / ops | cache hit share | errors |"
        );
        let _ = writeln!(out, "{LEADING_ALIGNMENT}---:|---:|---:|---:|");
        for row in rows.iter().filter(|r| r.workload == workload) {
            let ops = row.ops_per_sec.median * self.settings.measure_s;
            let _ = writeln!(
                out,
                "{} {} | {} | {} | {} |",
                leading_cells(row),
                fmt_opt(row.busiest_primary_commands, 0),
                fmt_opt(
                    row.busiest_primary_commands
                        .filter(|_| ops > 0.0)
                        .map(|n| n / ops),
                    3
                ),
                row.cache_hit_share
                    .map_or("—".to_owned(), |share| format!("{:.1}%", share * 100.0)),
                row.errors
            );
        }
        if let Some(memory) = &self.cache_memory {
            let _ = writeln!(
                out,
                "\nCache memory: {:.0} bytes of live heap per cached key ({} keys of {}-byte values \
                 cached with `cache_max_keys = {}`, after {} passes over the keys: {} bytes of \
                 heap before, {} after; VmRSS grew {:.0} bytes per key, a lower bound as the \
                 allocator reuses freed memory).",
                memory.bytes_per_key(),
                memory.cached,
                memory.value_size,
                memory.keys * 2,
                memory.passes,
                memory.heap_before_bytes,
                memory.heap_after_bytes,
                memory.rss_bytes_per_key(),
            );
        }
    }

    /// How the hot-key workload was measured.
    fn hot_key_notes(&self) -> Vec<String> {
        vec![
            format!(
                "Hot keys: {}% SET / {}% GET of the same preloaded keys, drawn Zipf({}), single \
                 commands; (a), (b) and (f) only, alternating within each round like the others. \
                 (f) is (b) with `cache_hot_keys = true`, `cache_max_keys` {}, `cache_ttl` 10 s \
                 (its default): the tracker samples a quarter of single-key reads into a local \
                 summary and publishes the hottest every second, and a GET of a published key is \
                 answered from the client's cache (RESP3, `CLIENT TRACKING` OPTIN) until the \
                 server invalidates it. Its warm-up is at least 10 s (2 s with `--quick`) for \
                 every contender, so that the hot set is mostly found before the window opens.",
                fmt_num(HOT_WRITE_SHARE * 100.0),
                fmt_num((1.0 - HOT_WRITE_SHARE) * 100.0),
                fmt_num(HOT_ZIPF_EXPONENT),
                self.settings.cache_max_keys.map_or_else(
                    || format!("{DEFAULT_CACHE_MAX_KEYS} (its default)"),
                    |keys| keys.to_string()
                ),
            ),
            "Busiest primary commands: at both ends of the measured window the cell reads \
             `INFO commandstats` on every primary and sums `calls` over its `cmdstat_` lines (so \
             `CLIENT CACHING`, the tracker's writes and the probes' own `INFO` count too); the \
             figure is the largest delta over the primaries. The headline ratios divide these \
             counts per operation: every contender runs flat out for the same time, so one that \
             completes more operations also sends more commands in the window. The hit share is the cache's hits over hits and misses in the \
             window."
                .to_owned(),
            "Cache memory: the `bench-cache-memory` program, whose global allocator counts every \
             allocation, configures a client with `cache_max_keys` 2 × N (the tracker publishes \
             the `cache_max_keys` most sampled keys, and N keys read alike tie) and `cache_ttl` \
             600 s, reads 32 × N absent keys once each (filling the tracker's \
             summary), takes the live heap bytes, then reads N preloaded keys over and over until \
             99% of a pass are cache hits (or a minute passed), and takes them again: the growth \
             over the keys hit in the last pass is the cost of one cached key (the reply, its \
             cache entry, its place in the hot set)."
                .to_owned(),
        ]
    }
}

/// The columns every workload's table opens with: who ran, throughput, latency and CPU.
const LEADING_COLUMNS: &str =
    "| contender | ops/s | spread | p50 µs | p99 µs | p99.9 µs | CPU µs/op |";
/// The alignment row of [`LEADING_COLUMNS`]: the contender's name to the left, figures to the right.
const LEADING_ALIGNMENT: &str = "|---|---:|---:|---:|---:|---:|---:|";

/// A row's cells under [`LEADING_COLUMNS`].
fn leading_cells(row: &Row) -> String {
    format!(
        "| {} | {} | {}–{} | {} | {} | {} | {} |",
        row.contender,
        fmt_int(row.ops_per_sec.median),
        fmt_int(row.ops_per_sec.min),
        fmt_int(row.ops_per_sec.max),
        fmt_opt(row.p50_us, 1),
        fmt_opt(row.p99_us.map(|p| p.median), 1),
        fmt_opt(row.p999_us, 1),
        fmt_opt(row.cpu_us_per_op, 1),
    )
}

/// `; it recorded 2.00 spans per request` with the range over (e)'s rows, or nothing.
fn spans_note(rows: &[Row]) -> String {
    let spans: Vec<f64> = rows.iter().filter_map(|r| r.spans_per_request).collect();
    let Some(spread) = Spread::of(&spans) else {
        return String::new();
    };
    let (min, max) = (format!("{:.2}", spread.min), format!("{:.2}", spread.max));
    if min == max {
        format!("; it recorded {min} spans per request")
    } else {
        format!("; it recorded {min} to {max} spans per request (by workload)")
    }
}

/// The cell's client CPU per command, µs (a headline figure).
fn cpu_us_per_op(cell: &Cell) -> Option<f64> {
    Some(cell.figures.cpu_us_per_op)
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
