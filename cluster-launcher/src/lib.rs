//! Throwaway local Redis Clusters for the project's tasks and tests, started from the
//! `redis-server` on PATH, so that `cargo xtask`, the integration tests, the bench and the chaos
//! scenarios start, inspect and stop clusters the same way.
//!
//! - [`cluster`]: the launcher itself ([`Cluster`], [`ClusterSpec`]), node signals, `redis-cli`.
//! - [`certs`]: the throwaway CA and certificates of a TLS cluster.
//! - [`nodes`]: `CLUSTER NODES` as typed [`ClusterNode`]s, the one node listing.
//! - [`wait_until`]: the one way to poll for a condition with a deadline.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod certs;
pub mod cluster;
pub mod nodes;

use std::path::Path;
use std::time::{Duration, Instant};

pub use cluster::{
    Cluster, ClusterSpec, NodeStatus, READY_TIMEOUT, check_redis_server, free_base_port,
    info_field, redis_cli, reshard, status, stop_dir,
};
pub use nodes::{ClusterNode, cluster_nodes};

/// How often [`wait_until`] asks again.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Asks `ready` every 50 ms until it holds, then says how long that took; `None` when it still
/// did not hold after `within`. It is always asked at least once.
pub fn wait_until(within: Duration, mut ready: impl FnMut() -> bool) -> Option<Duration> {
    let started = Instant::now();
    loop {
        if ready() {
            return Some(started.elapsed());
        }
        if started.elapsed() >= within {
            return None;
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// Starts a 3+3 cluster (serving TLS too when `tls`, see [`ClusterSpec::with_tls`]) on free
/// ports, in `parent/{name}-{base port}`, and arranges for it to be stopped and its directory
/// removed when this process exits, however it exits: a task's or a test binary's own cluster.
///
/// # Errors
/// As [`Cluster::start`], or when no free ports are found.
pub fn start_watched(parent: &Path, name: &str, tls: bool) -> anyhow::Result<Cluster> {
    let mut spec = ClusterSpec::new(0, parent);
    spec.tls = tls;
    // Plain client ports, and as many TLS ports after them.
    let ports = spec.node_count() * if tls { 2 } else { 1 };
    spec.base_port = cluster::free_base_port(ports)?;
    spec.dir = parent.join(format!("{name}-{}", spec.base_port));
    let cluster = Cluster::start(spec)?;
    cluster.stop_when_process_exits(std::process::id())?;
    Ok(cluster)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiting_says_how_long_it_took_or_that_it_gave_up() {
        let mut asked = 0;
        let took = wait_until(Duration::from_secs(5), || {
            asked += 1;
            asked == 3
        });
        assert!(took.is_some_and(|took| took >= 2 * POLL_INTERVAL));
        assert_eq!(asked, 3);
        let mut asked = 0;
        assert_eq!(
            wait_until(Duration::ZERO, || {
                asked += 1;
                false
            }),
            None
        );
        assert_eq!(asked, 1);
    }
}
