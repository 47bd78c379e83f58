//! `cargo xtask`: the project's tasks (a local Redis Cluster, the test command), one module per task.

mod bench;
mod chaos;
mod cluster_task;
mod demo_task;
mod test_task;
#[cfg(test)]
mod tidy;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The project's tasks. Run `cargo xtask <task> --help` for each task's options.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Start, stop or inspect a throwaway local Redis Cluster.
    Cluster(cluster_task::ClusterArgs),
    /// The project's one test command: fmt, clippy, docs, then the whole test suite against a fresh
    /// cluster.
    Test(test_task::TestArgs),
    /// Side-by-side benchmarks of the monitored client, raw redis-rs and redis-benchmark.
    Bench(bench::BenchArgs),
    /// Failover, hangs, restarts, resharding and exhausted pools under load, each on a cluster of its own.
    Chaos(chaos::ChaosArgs),
    /// The main job in one command: a cluster, a statsd listener and a demo service under traffic.
    Demo(demo_task::DemoArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::Cluster(args) => cluster_task::run(args).map(|()| ExitCode::SUCCESS),
        Task::Test(args) => test_task::run(args),
        Task::Bench(args) => bench::run(args),
        Task::Chaos(args) => chaos::run(args),
        Task::Demo(args) => demo_task::run(args).map(|()| ExitCode::SUCCESS),
    };
    result.unwrap_or_else(|error| {
        eprintln!("error: {error:#}");
        ExitCode::FAILURE
    })
}
