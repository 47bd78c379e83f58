//! `cargo xtask bench [--quick]`: the side-by-side benchmark. Builds the `bench` and
//! `bench-cache-memory` binaries of the `integration` crate in release mode, runs it against a throwaway cluster on free ports (or
//! `REDIS_CLUSTER_URL`), and stops the cluster. The binary writes `target/bench/report.md`,
//! `report.json` and `chart.svg`.

use std::path::PathBuf;
use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};
use clap::Args;
use cluster_launcher::Cluster;

/// Options of `cargo xtask bench`.
#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    /// A smaller run (short cells) for a smoke check, under two minutes.
    #[arg(long)]
    quick: bool,
    /// Extra arguments for the bench binary, e.g. `-- --rounds 5 --workloads single-50,hotkeys-50`
    /// (see `target/release/bench run --help`).
    #[arg(last = true)]
    bench_args: Vec<String>,
}

pub(crate) fn run(args: BenchArgs) -> Result<ExitCode> {
    let mut command = String::from("cargo xtask bench");
    if args.quick {
        command.push_str(" --quick");
    }
    if !args.bench_args.is_empty() {
        command.push_str(" -- ");
        command.push_str(&args.bench_args.join(" "));
    }
    let external = std::env::var("REDIS_CLUSTER_URL")
        .ok()
        .filter(|url| !url.is_empty());
    if let Some(url) = &external {
        command = format!("REDIS_CLUSTER_URL={url} {command}");
    }

    // Build first, so a cluster is not kept waiting through a compile.
    let build = [
        "build",
        "--release",
        "-p",
        "integration",
        "--bin",
        "bench",
        "--bin",
        "bench-cache-memory",
    ];
    eprintln!("$ cargo {}", build.join(" "));
    let built = Command::new(cargo_bin())
        .args(build)
        .status()
        .context("running cargo build")?;
    if !built.success() {
        bail!("building the bench binary failed");
    }
    let target = target_dir();
    let binary = target.join("release").join("bench");
    let out = target.join("bench");

    let cluster = match &external {
        Some(_) => None,
        None => Some(xtask::start_task_cluster("bench")?),
    };

    let mut bench = Command::new(&binary);
    bench
        .arg("run")
        .arg("--out")
        .arg(&out)
        .args(["--command", &command]);
    if args.quick {
        bench.arg("--quick");
    }
    if let Some(cluster) = &cluster {
        // Our own cluster is thrown away with its keys.
        bench.arg("--keep-keys").envs(cluster.env());
    }
    let status = bench
        .args(&args.bench_args)
        .status()
        .with_context(|| format!("running {}", binary.display()));
    let stopped = cluster.map(Cluster::stop).transpose();
    let status = status?;
    stopped.context("stopping the benchmark's cluster")?;
    Ok(match status.code() {
        Some(0) => ExitCode::SUCCESS,
        Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        None => ExitCode::FAILURE,
    })
}

/// `$CARGO_TARGET_DIR`, by default `target` in the workspace.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| xtask::workspace_root().join("target"))
}

fn cargo_bin() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}
