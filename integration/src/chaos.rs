//! Chaos scenarios behind `cargo xtask chaos`: a cluster of their own, a steady load through the
//! monitored client, one fault each, and a report of what the client did about it.
//!
//! Every scenario starts a fresh 3-primary, 6-replica cluster on free ports (it kills, freezes or
//! reconfigures nodes, so it must not share one), configures the client as a service would
//! (through [`baseplate::Baseplate`], `timeout = 1 second`, metrics to a local UDP socket, a URL
//! with a password), runs a paced load of writes of unique keys and reads of acknowledged ones,
//! injects its fault, keeps the load running until the client has had time to recover, and then
//! reads every acknowledged write back from the primaries.
//!
//! - [`census`]: what the process holds (the pool's counts, alive tasks, open file descriptors),
//!   counted before and after a fault to find leaks.
//! - [`cluster`]: the scenario's cluster and the faults (SIGKILL, SIGSTOP, restart, reshard, config).
//! - [`load`]: the load generator (paced readers and writers, `BLPOP` callers) and its
//!   per-operation records.
//! - [`pubsub`]: the pub/sub traffic of `pubsub-kill-primary` (a numbered publisher, a subscriber)
//!   and what it lost inside and outside the failover window.
//! - [`observe`]: the process's `tracing` subscriber, which scans every span field, event and `log`
//!   record for the password, and a statsd sink that scans every metric packet.
//! - [`report`]: the figures of one run, the invariants they are checked against, and the table.
//! - [`scenarios`]: the eleven scenarios, one function each, in files grouped by what they break
//!   (a primary failed over, one node away, slots moved, the pool held, the tracker and statsd,
//!   the whole cluster, the hot-key cache), and the harness they share; [`Scenario::ALL`]'s order is:
//!   kill-primary, hang-primary, restart-node, reshard, pool-exhaustion,
//!   tracker-and-metrics-faults, blocking-commands, cluster-down, cluster-restart,
//!   pubsub-kill-primary, hot-key-cache (in a module of its own, with its caching reader, writer
//!   and reference reader, and its stale-read judgment).
//!
//! The `chaos` binary runs them with a long load and prints the table; `tests/chaos.rs` runs each
//! with a short load and asserts its invariants.

pub mod census;
pub mod cluster;
pub mod load;
pub mod observe;
pub mod pubsub;
pub mod report;
pub mod scenarios;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

pub use report::Report;
pub use scenarios::{run, run_with_records};

/// The eleven faults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scenario {
    /// SIGKILL the seed primary; its replica is promoted and the client follows without a restart.
    KillPrimary,
    /// SIGSTOP a primary for longer than `timeout`, then SIGCONT: its slots fail fast with a
    /// timeout, the rest of the cluster keeps serving.
    HangPrimary,
    /// Stop a replica gracefully and start it again on the same port: connections to it come back.
    RestartNode,
    /// Move slots between primaries with `redis-cli --cluster reshard` under load: MOVED and ASK are
    /// followed and nothing fails.
    Reshard,
    /// More callers than `max_connections`, with slow commands: the excess fail for want of a
    /// permit (the pool timeout, or their deadline reached while they waited) at `timeout`,
    /// nothing deadlocks, and in-flight counts return to zero.
    PoolExhaustion,
    /// The hot-key tracker's writes are refused and the statsd endpoint is gone: no user command
    /// fails or slows measurably.
    TrackerAndMetricsFaults,
    /// 50 callers loop on 2-second `BLPOP`s spread over every primary (with `socket_timeout = 3
    /// seconds` so that they may): the other callers' p99 stays within 1.2x of what it is without
    /// them, and none of their calls times out.
    BlockingCommands,
    /// Every node frozen (SIGSTOP) for 5 seconds, then thawed: calls fail within their deadline,
    /// naming the client, the client serves again within 2 seconds of the cluster being back, and
    /// nothing leaks.
    ClusterDown,
    /// Every node killed (SIGKILL) and restarted from its own directory, with an append-only file
    /// so that no acknowledged write is lost: as [`ClusterDown`](Scenario::ClusterDown), and
    /// every acknowledged write is there afterwards.
    ClusterRestart,
    /// As [`KillPrimary`](Scenario::KillPrimary), with a subscriber of the client on a sharded
    /// and a classic channel held by the killed primary, and a publisher sending them numbered
    /// messages at a steady rate: the subscriber receives again after the failover, and loses
    /// no message published outside the failover window.
    PubsubKillPrimary,
    /// A client with `cache_hot_keys = true` reads 20 hot keys while a plain client writes them
    /// increasing sequence numbers; the primary of some of them is killed (its replica promoted),
    /// then their slots are resharded to another primary: no cached read returns a lower number
    /// than a read from the primary that finished more than 100 ms before it started.
    HotKeyCache,
}

impl Scenario {
    /// Every scenario, in the order the table lists them.
    pub const ALL: [Scenario; 11] = [
        Scenario::KillPrimary,
        Scenario::HangPrimary,
        Scenario::RestartNode,
        Scenario::Reshard,
        Scenario::PoolExhaustion,
        Scenario::TrackerAndMetricsFaults,
        Scenario::BlockingCommands,
        Scenario::ClusterDown,
        Scenario::ClusterRestart,
        Scenario::PubsubKillPrimary,
        Scenario::HotKeyCache,
    ];

    /// The scenario's name on the command line and in the table.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::KillPrimary => "kill-primary",
            Scenario::HangPrimary => "hang-primary",
            Scenario::RestartNode => "restart-node",
            Scenario::Reshard => "reshard",
            Scenario::PoolExhaustion => "pool-exhaustion",
            Scenario::TrackerAndMetricsFaults => "tracker-and-metrics-faults",
            Scenario::BlockingCommands => "blocking-commands",
            Scenario::ClusterDown => "cluster-down",
            Scenario::ClusterRestart => "cluster-restart",
            Scenario::PubsubKillPrimary => "pubsub-kill-primary",
            Scenario::HotKeyCache => "hot-key-cache",
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Scenario {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scenario::ALL
            .into_iter()
            .find(|scenario| scenario.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Scenario::ALL.iter().map(|s| s.name()).collect();
                format!(
                    "unknown scenario {s:?}; expected one of {}",
                    names.join(", ")
                )
            })
    }
}

/// How long and how hard a scenario runs.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ChaosOptions {
    /// The load's length, fault included; a scenario extends it when the fault needs longer
    /// (a failover, a reshard) so that there is always time to see the client recover.
    pub load: Duration,
    /// The client's `timeout` (connect, response and pool wait).
    pub timeout: Duration,
    /// Concurrent load workers.
    pub workers: usize,
    /// Operations per second the workers aim for together (each worker is paced).
    pub ops_per_second: f64,
    /// Whether latency ratios are invariants (`cargo xtask chaos`'s long load) or only reported
    /// (the tests' short load, on a machine other tests share: a few seconds' p99 there says more
    /// about the neighbours than about the client).
    pub judge_latency: bool,
}

impl ChaosOptions {
    /// The `cargo xtask chaos` defaults: 20 seconds of load at 1500 operations per second.
    pub fn full() -> Self {
        Self {
            load: Duration::from_secs(20),
            timeout: Duration::from_secs(1),
            workers: 24,
            ops_per_second: 1500.0,
            judge_latency: true,
        }
    }

    /// The integration tests' shorter, lighter load.
    pub fn short() -> Self {
        Self {
            load: Duration::from_secs(5),
            timeout: Duration::from_secs(1),
            workers: 16,
            ops_per_second: 800.0,
            judge_latency: false,
        }
    }

    /// Sets [`load`](Self::load).
    #[must_use]
    pub fn with_load(mut self, load: Duration) -> Self {
        self.load = load;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenarios_parse_from_their_names() {
        for scenario in Scenario::ALL {
            assert_eq!(scenario.name().parse::<Scenario>(), Ok(scenario));
        }
        let error = "kill".parse::<Scenario>().unwrap_err();
        assert!(error.contains("kill-primary"), "{error}");
    }
}
