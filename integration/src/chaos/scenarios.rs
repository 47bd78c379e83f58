//! The eleven scenarios: each starts its cluster, configures the client as a service would, runs the
//! load, injects its fault, and checks its invariants on top of the ones every scenario shares.
//!
//! - `harness`: what every scenario does around its fault (the cluster, the client, the statsd
//!   sink, the load, the `cluster_state` watch, the report).
//! - `checks`: the counts and checks several scenarios make (failures, stale reads).
//! - `failover`: a primary killed for good: kill-primary, pubsub-kill-primary.
//! - `one_node`: one node away for a while, no failover: hang-primary, restart-node.
//! - `reshard`: slots moved between primaries: reshard.
//! - `pool`: callers that hold the client's pool: pool-exhaustion, blocking-commands.
//! - `tracker_and_metrics`: the tracker's writes refused and statsd gone:
//!   tracker-and-metrics-faults.
//! - `whole_cluster`: every node away at once: cluster-down, cluster-restart.
//! - `hot_key_cache`: a caching reader of hot keys through a failover and a reshard:
//!   hot-key-cache.

mod checks;
mod failover;
mod harness;
mod hot_key_cache;
mod one_node;
mod pool;
mod reshard;
mod tracker_and_metrics;
mod whole_cluster;

use crate::chaos::load::LoadResult;
use crate::chaos::report::Report;
use crate::chaos::{ChaosOptions, Scenario};

/// Runs one scenario and returns its report (whose checks say whether its invariants held).
///
/// # Panics
/// When the harness itself fails: no cluster can be started, a node cannot be signalled.
pub async fn run(scenario: Scenario, options: &ChaosOptions) -> Report {
    run_with_records(scenario, options).await.0
}

/// Runs one scenario and returns its report and the load's records, for a closer look.
///
/// # Panics
/// As [`run`].
pub async fn run_with_records(scenario: Scenario, options: &ChaosOptions) -> (Report, LoadResult) {
    match scenario {
        Scenario::KillPrimary => failover::kill_primary(options).await,
        Scenario::HangPrimary => one_node::hang_primary(options).await,
        Scenario::RestartNode => one_node::restart_node(options).await,
        Scenario::Reshard => reshard::reshard(options).await,
        Scenario::PoolExhaustion => pool::pool_exhaustion(options).await,
        Scenario::TrackerAndMetricsFaults => {
            tracker_and_metrics::tracker_and_metrics_faults(options).await
        }
        Scenario::BlockingCommands => pool::blocking_commands(options).await,
        Scenario::ClusterDown => whole_cluster::cluster_down(options).await,
        Scenario::ClusterRestart => whole_cluster::cluster_restart(options).await,
        Scenario::PubsubKillPrimary => failover::pubsub_kill_primary(options).await,
        Scenario::HotKeyCache => hot_key_cache::hot_key_cache(options).await,
    }
}
