//! The task runner's library: the local Redis Cluster launcher, shared by `cargo xtask` and the
//! integration tests' harness so that both start and stop clusters the same way.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

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
