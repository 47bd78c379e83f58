//! The task runner's library: where tasks keep their state and how they start their clusters.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

use std::path::{Path, PathBuf};

use cluster_launcher::Cluster;

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
/// As [`Cluster::start`], or when no free ports are found.
pub fn start_task_cluster(purpose: &str) -> anyhow::Result<Cluster> {
    let cluster = cluster_launcher::start_watched(&state_dir(), purpose, false)?;
    eprintln!(
        "started a Redis Cluster on ports {}.. for the {purpose}",
        cluster.spec().base_port
    );
    Ok(cluster)
}
