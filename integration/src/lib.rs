//! The harness every cluster-backed test shares: one Redis Cluster per test binary.
//!
//! With `REDIS_CLUSTER_URL` set (as `cargo xtask test` sets it) the tests use that cluster. Without it
//! the first test to ask starts a throwaway cluster on free ports for this test binary, and a watchdog
//! stops it when the binary exits, so `cargo test --workspace` also works on its own.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]
// A harness that cannot reach its cluster has nothing better to do than fail the test loudly.
#![allow(clippy::expect_used, clippy::unwrap_used)]

pub mod bench;
pub mod chaos;
pub mod golden;
pub mod logs;
pub mod spans;
pub mod statsd;

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cluster_launcher::{Cluster, ClusterNode, info_field};
use redis::aio::ConnectionLike;
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{AsyncCommands as _, RedisResult};
use tokio::task::JoinHandle;

/// The cluster the tests of this binary run against.
#[derive(Debug)]
pub struct TestCluster {
    url: String,
    primaries: usize,
    replicas_per_primary: usize,
}

/// The shared cluster, started on first use when `REDIS_CLUSTER_URL` is not set.
///
/// # Panics
/// When no cluster can be started; the error says why (e.g. `redis-server` is missing).
pub fn cluster() -> &'static TestCluster {
    static CLUSTER: OnceLock<TestCluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        let shape = |name: &str, default: usize| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(default)
        };
        if let Ok(url) = std::env::var("REDIS_CLUSTER_URL") {
            return TestCluster {
                url,
                primaries: shape("REDIS_CLUSTER_PRIMARIES", 3),
                replicas_per_primary: shape("REDIS_CLUSTER_REPLICAS_PER_PRIMARY", 1),
            };
        }
        start_own("baseplate-rs-it")
    })
}

/// A cluster of this test binary's own, started on first use (whatever `REDIS_CLUSTER_URL` says)
/// and stopped when the binary exits: for tests that read or reset what is global to a cluster,
/// such as the nodes' command counters or the hot-key tracker's sets, which the test binaries
/// sharing [`cluster`] would disturb when they run at the same time.
///
/// # Panics
/// When no cluster can be started.
pub fn own_cluster() -> &'static TestCluster {
    static CLUSTER: OnceLock<TestCluster> = OnceLock::new();
    CLUSTER.get_or_init(|| start_own("baseplate-rs-it-own"))
}

fn start_own(name: &str) -> TestCluster {
    let name = format!("{name}-{}", std::process::id());
    let started = cluster_launcher::start_watched(&std::env::temp_dir(), &name, false)
        .unwrap_or_else(|e| panic!("starting a test cluster: {e:#}"));
    let spec = started.spec();
    TestCluster {
        url: started.url(),
        primaries: usize::from(spec.primaries),
        replicas_per_primary: usize::from(spec.replicas_per_primary),
    }
}

/// A TLS cluster of this test binary's own (see [`cluster_launcher::ClusterSpec::with_tls`]),
/// started on first use and stopped when the binary exits. Its `url()` is `rediss://`; its nodes
/// also answer on plain ports (`spec().ports()`), and its certificates are under
/// `spec().tls_files()`.
///
/// # Panics
/// When no cluster can be started.
pub fn tls_cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        let name = format!("baseplate-rs-it-tls-{}", std::process::id());
        cluster_launcher::start_watched(&std::env::temp_dir(), &name, true)
            .unwrap_or_else(|e| panic!("starting a TLS test cluster: {e:#}"))
    })
}

impl TestCluster {
    /// The seed URL, `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// How many primaries the cluster was started with.
    pub fn primaries(&self) -> usize {
        self.primaries
    }

    /// How many replicas each primary was started with.
    pub fn replicas_per_primary(&self) -> usize {
        self.replicas_per_primary
    }

    /// A plain redis-rs async cluster connection, for setting up and checking what the code under test did.
    pub async fn connection(&self) -> ClusterConnection {
        ClusterClient::new(vec![self.url.as_str()])
            .expect("a cluster client for the test cluster")
            .get_async_connection()
            .await
            .expect("connecting to the test cluster")
    }

    /// A connection to one node by `host:port`, for node-local commands (`INFO`, `CLUSTER INFO`).
    pub async fn node_connection(&self, addr: &str) -> redis::aio::MultiplexedConnection {
        redis::Client::open(format!("redis://{addr}"))
            .expect("a client for a cluster node")
            .get_multiplexed_async_connection()
            .await
            .unwrap_or_else(|e| panic!("connecting to node {addr}: {e}"))
    }

    /// Every node, as the seed node's `CLUSTER NODES` lists them.
    pub async fn nodes(&self) -> Vec<ClusterNode> {
        let seed = self.url.trim_start_matches("redis://");
        let mut conn = self.node_connection(seed).await;
        let text: String = redis::cmd("CLUSTER")
            .arg("NODES")
            .query_async(&mut conn)
            .await
            .expect("CLUSTER NODES");
        ClusterNode::parse_all(&text)
    }

    /// The addresses (`host:port`) of the primary serving `slot` and of its replicas, as the seed
    /// node lists them.
    ///
    /// # Panics
    /// When no primary serves `slot`.
    pub async fn shard_of(&self, slot: u16) -> (String, Vec<String>) {
        let nodes = self.nodes().await;
        let primary = nodes
            .iter()
            .find(|node| node.primary && node.serves(slot))
            .unwrap_or_else(|| panic!("no primary serves slot {slot}"));
        let replicas = nodes
            .iter()
            .filter(|node| node.replicates(primary))
            .map(|node| node.addr.clone())
            .collect();
        (primary.addr.clone(), replicas)
    }

    /// How often the node at `addr` ran `command` (lower case: `get`) since it started, and how
    /// often it refused it (a cluster redirection among the reasons), from `INFO commandstats`.
    pub async fn command_calls(&self, addr: &str, command: &str) -> CommandCalls {
        let mut conn = self.node_connection(addr).await;
        let stats: String = redis::cmd("INFO")
            .arg("commandstats")
            .query_async(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("INFO commandstats on {addr}: {e}"));
        CommandCalls::parse(&stats, command)
    }

    /// How many primaries serve at least one of `keys` (asked with `CLUSTER KEYSLOT`), to show a
    /// test's keys really are spread over the cluster.
    pub async fn primaries_covering(&self, keys: &[String]) -> usize {
        let mut conn = self.connection().await;
        let mut slots = Vec::with_capacity(keys.len());
        for key in keys {
            let slot: u16 = redis::cmd("CLUSTER")
                .arg("KEYSLOT")
                .arg(key)
                .query_async(&mut conn)
                .await
                .expect("CLUSTER KEYSLOT");
            slots.push(slot);
        }
        self.nodes()
            .await
            .iter()
            .filter(|node| node.primary && slots.iter().any(|&slot| node.serves(slot)))
            .count()
    }

    /// Moves `slots` slots from the primary `from` to the primary `to` (node ids), keys and all,
    /// with `redis-cli --cluster reshard`; run it on [`own_cluster`] only, since it changes the
    /// topology under the other tests.
    ///
    /// # Panics
    /// When redis-cli fails; the message has its output.
    pub fn reshard(&self, from: &str, to: &str, slots: usize) {
        let seed = self.url.trim_start_matches("redis://");
        if let Err(error) = cluster_launcher::reshard(seed, from, to, slots) {
            panic!("resharding {slots} slots from {from} to {to}: {error:#}");
        }
    }

    /// Deletes `keys` (one command per key, so keys in any slot can be passed).
    pub async fn delete(&self, keys: &[String]) {
        let mut conn = self.connection().await;
        for key in keys {
            let _: () = conn.del(key).await.expect("deleting a test key");
        }
    }
}

/// A node's counts of one command, from [`TestCluster::command_calls`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommandCalls {
    /// Times the command ran.
    pub calls: u64,
    /// Times the node refused it before running it (`MOVED` among the reasons).
    pub rejected: u64,
}

impl CommandCalls {
    /// `command`'s counts in an `INFO commandstats` reply; zeros when it never ran.
    pub fn parse(stats: &str, command: &str) -> Self {
        let fields = info_field(stats, &format!("cmdstat_{command}")).unwrap_or_default();
        let field = |name: &str| {
            fields
                .split(',')
                .find_map(|field| field.strip_prefix(name)?.strip_prefix('='))
                .and_then(|count| count.parse().ok())
                .unwrap_or(0)
        };
        Self {
            calls: field("calls"),
            rejected: field("rejected_calls"),
        }
    }
}

/// Asks `ready` every 20 ms (on the runtime's clock, so other tasks keep running) until it holds,
/// then says how long that took; `None` when it still did not hold after `within`. It is always
/// asked at least once. The async counterpart of [`cluster_launcher::wait_until`].
pub async fn eventually(
    within: Duration,
    mut ready: impl AsyncFnMut() -> bool,
) -> Option<Duration> {
    let started = tokio::time::Instant::now();
    loop {
        if ready().await {
            return Some(started.elapsed());
        }
        if started.elapsed() >= within {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A name starting with `prefix` whose hash slot is `slot` (through a hash tag), for a key or a
/// channel that must live on a given node.
pub fn name_in_slot(prefix: &str, slot: u16) -> String {
    (0_u32..)
        .map(|i| format!("{prefix}{{{i}}}"))
        .find(|name| baseplate_redis_cluster::key_slot(name.as_bytes()) == slot)
        .expect("every slot has a hash tag")
}

/// A key prefix unique to this test run, so tests sharing one cluster never see each other's keys.
pub fn unique_prefix(test: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("it:{test}:{}:{nanos}:", std::process::id())
}

/// Holds `count` commands in flight for about a second: each a `BLPOP` of an empty key of its own
/// (which blocks only its caller), spawned on the runtime. Await the handles to let them finish;
/// each returns `Ok(())` when its `BLPOP` timed out empty as planned.
pub fn hold_in_flight<C>(conn: &C, prefix: &str, count: usize) -> Vec<JoinHandle<RedisResult<()>>>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    (0..count)
        .map(|i| {
            let mut conn = conn.clone();
            let key = format!("{prefix}held{i}");
            tokio::spawn(async move {
                let popped: Option<(String, String)> = conn.blpop(key, 1.0).await?;
                assert_eq!(popped, None, "nothing pushes to a held key");
                Ok(())
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_calls_are_read_from_a_commandstats_reply() {
        // As Redis 7.0 prints it.
        let stats = "# Commandstats\r\n\
            cmdstat_getrange:calls=7,usec=9,usec_per_call=1.29,rejected_calls=0,failed_calls=0\r\n\
            cmdstat_get:calls=12,usec=30,usec_per_call=2.50,rejected_calls=3,failed_calls=1\r\n";
        let get = CommandCalls::parse(stats, "get");
        assert_eq!(
            get,
            CommandCalls {
                calls: 12,
                rejected: 3
            }
        );
        assert_eq!(CommandCalls::parse(stats, "set"), CommandCalls::default());
    }
}
