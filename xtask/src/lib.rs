//! The task runner's library: the local Redis Cluster launcher, shared by `cargo xtask` and the
//! integration tests' harness so that both start and stop clusters the same way.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod certs;
pub mod cluster;

use std::path::{Path, PathBuf};

/// The workspace's root directory.
pub fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap_or(Path::new("."))
}

/// Where tasks keep their state: `$CARGO_TARGET_DIR/xtask`, by default `target/xtask` in the workspace.
pub fn state_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
        .join("xtask")
}

/// Starts a 3+3 cluster on free ports for a task (`purpose` names its directory under
/// [`state_dir`] and the message), stopped by a watchdog if this process dies before the task
/// stops it.
///
/// # Errors
/// As [`cluster::Cluster::start`], or when no free ports are found.
pub fn start_task_cluster(purpose: &str) -> anyhow::Result<cluster::Cluster> {
    let cluster = start_watched(&state_dir(), purpose, false)?;
    eprintln!(
        "started a Redis Cluster on ports {}.. for the {purpose}",
        cluster.spec().base_port
    );
    Ok(cluster)
}

/// Starts a 3+3 cluster (serving TLS too when `tls`, see [`cluster::ClusterSpec::with_tls`]) on
/// free ports, in `parent/{name}-{base port}`, and arranges for it to be stopped and its
/// directory removed when this process exits, however it exits: a task's or a test binary's
/// own cluster.
///
/// # Errors
/// As [`cluster::Cluster::start`], or when no free ports are found.
pub fn start_watched(parent: &Path, name: &str, tls: bool) -> anyhow::Result<cluster::Cluster> {
    let mut spec = cluster::ClusterSpec::new(0, parent);
    spec.tls = tls;
    // Plain client ports, and as many TLS ports after them.
    let ports = spec.node_count() * if tls { 2 } else { 1 };
    spec.base_port = cluster::free_base_port(ports)?;
    spec.dir = parent.join(format!("{name}-{}", spec.base_port));
    let cluster = cluster::Cluster::start(spec)?;
    cluster.stop_when_process_exits(std::process::id())?;
    Ok(cluster)
}
