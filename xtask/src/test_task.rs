//! `cargo xtask test`: the project's one test command. Formatting, lints and docs first, then the
//! whole workspace's tests against a fresh Redis Cluster, which is stopped whatever the tests do.

use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};
use clap::Args;

/// Options of `cargo xtask test`.
#[derive(Debug, Args)]
pub(crate) struct TestArgs {
    /// Skip `cargo fmt --check`, `cargo clippy`, the builds with other features than the
    /// workspace's and `cargo doc` (for quick local iterations; CI never skips).
    #[arg(long)]
    no_lint: bool,
    /// Extra arguments for `cargo test`, e.g. `-- --test-threads 1` or a test name filter.
    #[arg(last = true)]
    cargo_test_args: Vec<String>,
}

pub(crate) fn run(args: TestArgs) -> Result<ExitCode> {
    if !args.no_lint {
        cargo(&["fmt", "--all", "--check"])?;
        cargo(&[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ])?;
        // The crates without their default `tls` feature: lints and the unit tests that pin what
        // `rediss://` says there.
        let no_tls = [
            "-p",
            "baseplate-redis-cluster",
            "-p",
            "baseplate-hotkeys-cli",
            "--no-default-features",
        ];
        cargo(
            &[
                &["clippy"],
                &no_tls[..],
                &["--all-targets", "--", "-D", "warnings"],
            ]
            .concat(),
        )?;
        cargo(&[&["test"], &no_tls[..], &["--lib"]].concat())?;
        // The client with its default features alone: `tls` without `tls-insecure`, which the
        // workspace's build turns on for the integration tests. Lints, and the unit tests that pin
        // the errors refusing `ssl_cert_reqs = none` and `ssl_check_hostname = false` there.
        let default = ["-p", "baseplate-redis-cluster"];
        cargo(
            &[
                &["clippy"],
                &default[..],
                &["--all-targets", "--", "-D", "warnings"],
            ]
            .concat(),
        )?;
        cargo(&[&["test"], &default[..], &["--lib", "--tests"]].concat())?;
        // The API docs, whose broken links rustdoc only warns about.
        cargo_with(
            &["doc", "--workspace", "--no-deps"],
            &[("RUSTDOCFLAGS", "-D warnings")],
        )?;
    }

    // A cluster of the tests' own on free ports, so a developer's `cluster up` on 7000 is untouched;
    // `stop` below ends it, or the watchdog if this process dies first.
    let cluster = xtask::start_task_cluster("tests")?;

    let status = Command::new(cargo_bin())
        .args(["test", "--workspace"])
        .args(&args.cargo_test_args)
        .envs(cluster.env())
        .status()
        .context("running cargo test");
    let stopped = cluster.stop();
    let status = status?;
    stopped.context("stopping the test cluster")?;
    Ok(match status.code() {
        Some(0) => ExitCode::SUCCESS,
        Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        None => ExitCode::FAILURE,
    })
}

fn cargo(args: &[&str]) -> Result<()> {
    cargo_with(args, &[])
}

/// Runs cargo with `args`, and `env` set for it.
fn cargo_with(args: &[&str], env: &[(&str, &str)]) -> Result<()> {
    let shown: String = env
        .iter()
        .map(|(name, value)| format!("{name}='{value}' "))
        .collect();
    eprintln!("$ {shown}cargo {}", args.join(" "));
    let status = Command::new(cargo_bin())
        .args(args)
        .envs(env.iter().copied())
        .status()
        .with_context(|| format!("running cargo {}", args.join(" ")))?;
    if !status.success() {
        bail!("`{shown}cargo {}` failed", args.join(" "));
    }
    Ok(())
}

fn cargo_bin() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}
