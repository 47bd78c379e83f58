//! `cargo xtask chaos [--scenario NAME] [--seconds N]`: builds the `chaos` binary of the
//! `integration` crate in release mode and runs it. Each scenario starts a cluster of its own on free
//! ports (it kills, freezes and reconfigures nodes), runs a load through the monitored client,
//! injects its fault and prints what the client did; the binary exits non-zero when an invariant
//! did not hold.

use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};
use clap::Args;
use cluster_launcher::check_redis_server;

/// Options of `cargo xtask chaos`.
#[derive(Debug, Args)]
pub(crate) struct ChaosArgs {
    /// Run only this scenario (repeatable): kill-primary, hang-primary, restart-node, reshard,
    /// pool-exhaustion, tracker-and-metrics-faults, blocking-commands, cluster-down,
    /// cluster-restart, pubsub-kill-primary, hot-key-cache. All eleven by default.
    #[arg(long = "scenario", value_name = "NAME")]
    scenarios: Vec<String>,
    /// Seconds of load per scenario, the fault included (20 by default).
    #[arg(long)]
    seconds: Option<u64>,
    /// Extra arguments for the chaos binary, e.g. `-- --rate 3000 --dump target/chaos`
    /// (see `target/release/chaos --help`).
    #[arg(last = true)]
    chaos_args: Vec<String>,
}

pub(crate) fn run(args: ChaosArgs) -> Result<ExitCode> {
    // Fail before the build when Redis is missing; the binary starts its own clusters.
    check_redis_server()?;
    eprintln!("$ cargo build --release -p integration --bin chaos");
    let built = Command::new(cargo_bin())
        .args(["build", "--release", "-p", "integration", "--bin", "chaos"])
        .status()
        .context("running cargo build")?;
    if !built.success() {
        bail!("building the chaos binary failed");
    }
    let mut chaos = Command::new(cargo_bin());
    chaos.args([
        "run",
        "--release",
        "--quiet",
        "-p",
        "integration",
        "--bin",
        "chaos",
        "--",
    ]);
    for scenario in &args.scenarios {
        chaos.args(["--scenario", scenario]);
    }
    if let Some(seconds) = args.seconds {
        chaos.args(["--seconds", &seconds.to_string()]);
    }
    chaos.args(&args.chaos_args);
    let status = chaos.status().context("running the chaos binary")?;
    Ok(match status.code() {
        Some(0) => ExitCode::SUCCESS,
        Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        None => ExitCode::FAILURE,
    })
}

fn cargo_bin() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}
