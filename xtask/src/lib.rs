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
    let base_port = cluster::free_base_port(6)?;
    let spec = cluster::ClusterSpec::new(
        base_port,
        state_dir().join(format!("{purpose}-{base_port}")),
    );
    eprintln!("starting a Redis Cluster on ports {base_port}.. for the {purpose}");
    let cluster = cluster::Cluster::start(spec)?;
    // If this process dies (Ctrl-C, a kill), the watchdog stops the cluster.
    cluster.stop_when_process_exits(std::process::id())?;
    Ok(cluster)
}
