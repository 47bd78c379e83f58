//! The side-by-side benchmark behind `cargo xtask bench`: workloads, contenders, figures, the report.
//!
//! The `bench` binary (`integration/src/bin/bench.rs`) drives it. Its parent process preloads the keys,
//! runs every workload against every contender in its own child process (contender (e) installs a
//! global `tracing` subscriber, which a process can do once, and a child's peak memory is its own), takes
//! `INFO commandstats` deltas around each child for the hot-key tracker's traffic, and renders
//! `report.md`, `report.json` and `chart.svg` from the figures.
//!
//! - [`workload`]: what is run (keys, the GET/SET mix, Zipf ranks, tasks, pipelines) and where keys live.
//! - [`stats`]: latency percentiles (HDR histogram), medians and spreads, process CPU and memory.
//! - [`cache_memory`]: the hot-key cache's resident bytes per cached key.
//! - [`hit_cost`]: client CPU per request the hot-key cache answers, on one thread and on every
//!   core at once.
//! - [`contenders`]: the raw redis-rs baseline, the monitored client through the facade (also with
//!   a subscriber recording every span, and with the hot-key cache), and `redis-benchmark`.
//! - [`cluster`]: the cluster's slot map, the tracker's commands and each primary's commands from
//!   `INFO commandstats`.
//! - [`report`]: the figures, the headline ratios, Markdown and JSON.
//! - [`chart`]: ops/s and p99 against concurrency, as SVG.

pub mod cache_memory;
pub mod chart;
pub mod cluster;
pub mod contenders;
pub mod hit_cost;
pub mod report;
pub mod stats;
pub mod workload;

/// The error every fallible bench step returns: a message for whoever runs the benchmark.
pub type BenchError = Box<dyn std::error::Error + Send + Sync + 'static>;
