//! A scenario's own cluster and the faults it suffers: SIGKILL, SIGSTOP/SIGCONT, a graceful stop
//! and restart, a reshard, and `CONFIG SET`, plus what the scenarios need to know about its shape.
//!
//! Everything here blocks (it runs `redis-cli` or waits for processes); async code calls it
//! through [`blocking`].

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use cluster_launcher::{
    Cluster, ClusterNode, ClusterSpec, READY_TIMEOUT, free_base_port, info_field, redis_cli,
    reshard, wait_until,
};

/// The ACL user the client logs in as; every node knows it from its command line.
pub const USER: &str = "user";

/// Its password, which must never show in an error, a log line, a span field or a metric.
pub const PASSWORD: &str = "secret";

/// Extra `redis-server` arguments for every chaos node: the user the client logs in as.
const NODE_ARGS: [&str; 7] = ["--user", USER, "on", ">secret", "~*", "&*", "+@all"];

/// Node arguments that make every acknowledged write survive the node's death: an append-only
/// file, written and fsynced before the node answers (`appendfsync always`). Without them a node
/// killed and restarted comes back empty.
pub const PERSISTENT: [&str; 4] = ["--appendonly", "yes", "--appendfsync", "always"];

/// Runs blocking cluster work off the async runtime's worker threads.
///
/// # Panics
/// When `work` panics.
pub async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(work)
        .await
        .expect("blocking cluster work panicked")
}

/// A throwaway cluster for one scenario, stopped when dropped (and by a watchdog if the process
/// dies first). Nodes it froze are thawed before it stops.
#[derive(Debug)]
pub struct ChaosCluster {
    cluster: Option<Cluster>,
    paused: Mutex<BTreeSet<u16>>,
}

impl ChaosCluster {
    /// Starts 3 primaries with two replicas each on free ports, with `node_timeout` as
    /// `cluster-node-timeout` (how long before a silent primary is failed over).
    ///
    /// Two replicas, so that a shard still has one after a failover or while one is restarted:
    /// the load's `WAIT 1` then still confirms writes at once, instead of blocking the shard's
    /// (multiplexed) connection for its whole timeout on every write.
    ///
    /// # Panics
    /// When no cluster can be started; the message says why.
    pub fn start(node_timeout: Duration) -> ChaosCluster {
        ChaosCluster::start_with_args(node_timeout, &[])
    }

    /// Like [`start`](Self::start), with `node_args` appended to every node's command line (and
    /// kept for its restarts), e.g. [`PERSISTENT`].
    ///
    /// # Panics
    /// As [`start`](Self::start).
    pub fn start_with_args(node_timeout: Duration, node_args: &[&str]) -> ChaosCluster {
        let args: Vec<&str> = NODE_ARGS.iter().chain(node_args).copied().collect();
        // Ports found free may be taken before the nodes bind them, by another process starting
        // a cluster at the same moment (tests run side by side): then try other ports.
        let mut attempts = 0;
        let cluster = loop {
            attempts += 1;
            let base_port = free_base_port(9).expect("finding free ports for a chaos cluster");
            let dir = std::env::temp_dir().join(format!(
                "baseplate-rs-chaos-{}-{base_port}",
                std::process::id()
            ));
            let mut spec = ClusterSpec::new(base_port, dir);
            spec.node_timeout = node_timeout;
            spec.replicas_per_primary = 2;
            match Cluster::start_with_node_args(spec, &args) {
                Ok(cluster) => break cluster,
                Err(error) if attempts < 3 => {
                    eprintln!("starting a chaos cluster failed, trying other ports: {error:#}");
                }
                Err(error) => panic!("starting a chaos cluster: {error:#}"),
            }
        };
        cluster
            .stop_when_process_exits(std::process::id())
            .expect("arranging the chaos cluster's teardown");
        let chaos = ChaosCluster {
            cluster: Some(cluster),
            paused: Mutex::new(BTreeSet::new()),
        };
        // `cluster create` is done when every replica replicates, but the nodes learn each
        // other's roles by gossip: wait until all of them see the same, complete shape. That
        // takes a few seconds on an idle machine, longer on a loaded one: the deadline is the
        // launcher's own for a healthy cluster.
        let mut disagreeing = Vec::new();
        let settled = wait_until(READY_TIMEOUT, || {
            disagreeing = chaos.disagreeing();
            disagreeing.is_empty()
        });
        assert!(
            settled.is_some(),
            "the chaos cluster's nodes do not agree on its shape after {READY_TIMEOUT:?}: {}",
            disagreeing.join("; ")
        );
        // The launcher already wrote to every primary, so CLUSTER SLOTS lists every replica.
        chaos
    }

    /// What each node that does not (yet) see 3 primaries serving all slots, each with 2
    /// replicas, none failed, sees instead; empty once every node sees that shape.
    fn disagreeing(&self) -> Vec<String> {
        self.ports()
            .into_iter()
            .filter_map(|port| {
                let text = match redis_cli(port, &["CLUSTER", "NODES"]) {
                    Ok(text) => text,
                    Err(error) => return Some(format!("{port}: CLUSTER NODES failed: {error:#}")),
                };
                let nodes: Vec<ClusterNode> = ClusterNode::parse_all(&text);
                let primaries: Vec<&ClusterNode> = nodes.iter().filter(|n| n.primary).collect();
                let replicas: Vec<usize> = primaries
                    .iter()
                    .map(|p| nodes.iter().filter(|n| n.replicates(p)).count())
                    .collect();
                let slots: usize = primaries.iter().map(|p| p.slot_count()).sum();
                let failed: Vec<u16> = nodes.iter().filter(|n| n.failed).map(|n| n.port).collect();
                let agrees = primaries.len() == 3
                    && failed.is_empty()
                    && slots == 16_384
                    && replicas.iter().all(|&count| count == 2);
                (!agrees).then(|| {
                    format!(
                        "{port} sees {} nodes, {} primaries ({replicas:?} replicas, {slots} slots), \
                         failed {failed:?}",
                        nodes.len(),
                        primaries.len()
                    )
                })
            })
            .collect()
    }

    fn cluster(&self) -> &Cluster {
        self.cluster.as_ref().expect("the cluster runs until drop")
    }

    /// The seed node's port: the one the client's URL names.
    pub fn seed_port(&self) -> u16 {
        self.cluster().spec().base_port
    }

    /// Every node's port.
    pub fn ports(&self) -> Vec<u16> {
        self.cluster().spec().ports()
    }

    /// The URL a service would configure: the seed node, logging in as [`USER`].
    pub fn url_with_password(&self) -> String {
        format!("redis://{USER}:{PASSWORD}@127.0.0.1:{}", self.seed_port())
    }

    /// The URL without credentials (the default user needs none), for checking on the data.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.seed_port())
    }

    /// A URL (without credentials) for every node that is alive, so a client for checking on the
    /// data can start whichever node died.
    pub fn live_urls(&self) -> Vec<String> {
        self.ports()
            .into_iter()
            .filter(|&port| self.is_alive(port))
            .map(|port| format!("redis://127.0.0.1:{port}"))
            .collect()
    }

    /// Every node, as the first node that answers (other than `except`) sees them.
    ///
    /// # Panics
    /// When no node answers.
    pub fn nodes_except(&self, except: Option<u16>) -> Vec<ClusterNode> {
        self.ports()
            .into_iter()
            .filter(|&port| Some(port) != except && self.is_alive(port))
            .find_map(|port| redis_cli(port, &["CLUSTER", "NODES"]).ok())
            .map(|text| ClusterNode::parse_all(&text))
            .expect("no node of the chaos cluster answers CLUSTER NODES")
    }

    /// Every node, as the first node that answers sees them.
    pub fn nodes(&self) -> Vec<ClusterNode> {
        self.nodes_except(None)
    }

    /// The primary serving `slot` and its first replica.
    ///
    /// # Panics
    /// When the slot has no primary or the primary no replica.
    pub fn shard_of(&self, slot: u16) -> (ClusterNode, ClusterNode) {
        let nodes = self.nodes();
        let primary = nodes
            .iter()
            .find(|n| n.primary && n.serves(slot))
            .cloned()
            .unwrap_or_else(|| panic!("no primary serves slot {slot}: {nodes:?}"));
        let replica = nodes
            .iter()
            .find(|n| n.replicates(&primary))
            .cloned()
            .unwrap_or_else(|| panic!("primary {} has no replica: {nodes:?}", primary.port));
        (primary, replica)
    }

    /// The port of the primary serving each slot (0 where none does), as seen now.
    pub fn slot_owners(&self) -> Vec<u16> {
        let mut owners = vec![0; 16_384];
        for node in self.nodes().into_iter().filter(|n| n.primary) {
            for (start, end) in node.slots {
                for slot in start..=end {
                    owners[usize::from(slot)] = node.port;
                }
            }
        }
        owners
    }

    /// Whether the node's process is alive.
    pub fn is_alive(&self, port: u16) -> bool {
        self.cluster().node_pid(port).is_some()
    }

    /// SIGKILLs a node and waits until it is gone.
    ///
    /// # Panics
    /// When the node is not running or does not die.
    pub fn kill(&self, port: u16) {
        self.cluster()
            .kill_node(port)
            .unwrap_or_else(|e| panic!("{e:#}"));
    }

    /// Freezes a node (SIGSTOP); [`resume`](Self::resume) or dropping the cluster thaws it.
    ///
    /// # Panics
    /// When the node is not running.
    pub fn pause(&self, port: u16) {
        self.cluster()
            .pause_node(port)
            .unwrap_or_else(|e| panic!("{e:#}"));
        if let Ok(mut paused) = self.paused.lock() {
            paused.insert(port);
        }
    }

    /// Thaws a frozen node (SIGCONT).
    ///
    /// # Panics
    /// When the node is not running.
    pub fn resume(&self, port: u16) {
        self.cluster()
            .resume_node(port)
            .unwrap_or_else(|e| panic!("{e:#}"));
        if let Ok(mut paused) = self.paused.lock() {
            paused.remove(&port);
        }
    }

    /// Stops a node gracefully (SIGTERM) and waits until it has exited.
    ///
    /// # Panics
    /// When the node is not running or does not exit.
    pub fn stop_node(&self, port: u16) {
        self.cluster()
            .stop_node(port)
            .unwrap_or_else(|e| panic!("{e:#}"));
    }

    /// Starts a stopped node again on its port, from its own `nodes.conf`.
    ///
    /// # Panics
    /// When it does not start.
    pub fn restart_node(&self, port: u16) {
        self.cluster()
            .restart_node(port)
            .unwrap_or_else(|e| panic!("{e:#}"));
    }

    /// `INFO replication` of a node, if it answers.
    pub fn replication(&self, port: u16) -> Option<String> {
        redis_cli(port, &["INFO", "replication"]).ok()
    }

    /// Whether every node of the cluster is alive and says `cluster_state:ok`.
    pub fn all_up_and_ok(&self) -> bool {
        self.ports().into_iter().all(|port| self.is_alive(port)) && self.all_ok()
    }

    /// Whether every live node says `cluster_state:ok`.
    pub fn all_ok(&self) -> bool {
        self.ports()
            .into_iter()
            .filter(|&port| self.is_alive(port))
            .all(|port| {
                redis_cli(port, &["CLUSTER", "INFO"])
                    .is_ok_and(|info| info_field(&info, "cluster_state") == Some("ok"))
            })
    }

    /// How often `command` (lower case, e.g. `get`) ran on a node since it started, from
    /// `INFO commandstats`; 0 when it never ran or the node does not answer.
    pub fn command_calls(&self, port: u16, command: &str) -> u64 {
        let Ok(stats) = redis_cli(port, &["INFO", "commandstats"]) else {
            return 0;
        };
        info_field(&stats, &format!("cmdstat_{command}"))
            .and_then(|fields| fields.split(',').find_map(|f| f.strip_prefix("calls=")))
            .and_then(|calls| calls.parse().ok())
            .unwrap_or(0)
    }

    /// Runs `redis-cli` against a node and returns its output.
    ///
    /// # Panics
    /// When the node does not answer.
    pub fn cli(&self, port: u16, args: &[&str]) -> String {
        redis_cli(port, args).unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// Moves `slots` slots from the primary `from` to the primary `to` (node ids) with
    /// `redis-cli --cluster reshard`, keys and all; returns redis-cli's output.
    ///
    /// # Errors
    /// redis-cli's output when it fails.
    pub fn reshard(&self, from: &str, to: &str, slots: usize) -> Result<String, String> {
        reshard(&format!("127.0.0.1:{}", self.seed_port()), from, to, slots)
            .map_err(|e| format!("{e:#}"))
    }
}

impl Drop for ChaosCluster {
    fn drop(&mut self) {
        let paused: Vec<u16> = self
            .paused
            .lock()
            .map(|p| p.iter().copied().collect())
            .unwrap_or_default();
        if let Some(cluster) = self.cluster.take() {
            for port in paused {
                let _ = cluster.resume_node(port);
            }
            if let Err(error) = cluster.stop() {
                eprintln!("stopping a chaos cluster: {error:#}");
            }
        }
    }
}

/// Watches one node's `cluster_state` (every 50 ms, over a connection of its own) and keeps the
/// times it changed, to tell the client's failures from the cluster's own: while a primary is
/// failed and not yet replaced, every node refuses every command with `CLUSTERDOWN` (with the
/// default `cluster-require-full-coverage yes`).
#[derive(Debug)]
pub struct StateWatcher {
    task: tokio::task::JoinHandle<Vec<(Duration, String)>>,
    stop: tokio::sync::watch::Sender<bool>,
}

impl StateWatcher {
    /// Starts watching the node on `port`; times are measured from `origin`.
    pub fn start(port: u16, origin: Instant) -> StateWatcher {
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            let mut changes: Vec<(Duration, String)> = Vec::new();
            let client = redis::Client::open(format!("redis://127.0.0.1:{port}"))
                .expect("a client for the watched node");
            let mut conn = None;
            let mut ticker = tokio::time::interval(Duration::from_millis(50));
            loop {
                tokio::select! {
                    _ = stopped.changed() => return changes,
                    _ = ticker.tick() => {}
                }
                if conn.is_none() {
                    conn = client.get_multiplexed_async_connection().await.ok();
                }
                let Some(c) = conn.as_mut() else { continue };
                let info: redis::RedisResult<String> =
                    redis::cmd("CLUSTER").arg("INFO").query_async(c).await;
                let state = match info {
                    Ok(info) => info_field(&info, "cluster_state").unwrap_or("?").to_owned(),
                    Err(_) => {
                        conn = None;
                        "unreachable".to_owned()
                    }
                };
                if changes.last().is_none_or(|(_, last)| *last != state) {
                    changes.push((origin.elapsed(), state));
                }
            }
        });
        StateWatcher { task, stop }
    }

    /// Stops watching; returns the windows in which the node's state was not `ok`.
    pub async fn finish(self) -> Vec<(Duration, Duration, String)> {
        let _ = self.stop.send(true);
        let changes = self.task.await.unwrap_or_default();
        let mut windows = Vec::new();
        for (i, (at, state)) in changes.iter().enumerate() {
            if state != "ok" {
                let until = changes.get(i + 1).map_or(Duration::MAX, |(next, _)| *next);
                windows.push((*at, until, state.clone()));
            }
        }
        windows
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_know_the_user_and_password_the_client_logs_in_with() {
        assert!(NODE_ARGS.contains(&USER));
        assert!(NODE_ARGS.contains(&format!(">{PASSWORD}").as_str()));
    }
}
