//! What the benchmark asks the cluster: which primary serves each slot (to group pipelines and
//! preload by node), how many commands the hot-key tracker sent, from `INFO commandstats` on the
//! primaries holding the tracker's sorted sets, and how many commands each primary served.

use std::collections::BTreeMap;

use baseplate_hotkeys::TrackedSet;
use serde::{Deserialize, Serialize};

use crate::bench::BenchError;
use crate::bench::workload::SLOT_COUNT;
use cluster_launcher::ClusterNode;

use crate::TestCluster;

/// The commands the tracker sends: direct mode `ZINCRBY` + `EXPIRE` per sample, aggregated mode
/// `ZINCRBY` per top key + `EXPIRE` + `ZREMRANGEBYRANK` per set and flush. `ZADD` and `ZUNIONSTORE`
/// are counted too, should a tracker write that way; the benchmark's own traffic is `GET` and `SET`.
pub const TRACKER_COMMANDS: [&str; 5] = [
    "zincrby",
    "expire",
    "zremrangebyrank",
    "zadd",
    "zunionstore",
];

/// Which primary serves each of the 16384 slots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotMap {
    primaries: Vec<String>,
    owners: Vec<u16>,
}

impl SlotMap {
    /// The slot map of `nodes` (as `CLUSTER NODES` lists them).
    ///
    /// # Errors
    /// When a slot is served by no primary.
    pub fn from_nodes(nodes: &[ClusterNode]) -> Result<Self, BenchError> {
        let primaries: Vec<&ClusterNode> = nodes.iter().filter(|n| n.primary).collect();
        let mut owners = vec![u16::MAX; usize::from(SLOT_COUNT)];
        for (index, node) in primaries.iter().enumerate() {
            let index = u16::try_from(index).map_err(|_| "more than 65535 primaries")?;
            for &(start, end) in &node.slots {
                if start > end || end >= SLOT_COUNT {
                    return Err(format!("bad slot range {start}-{end} of {}", node.addr).into());
                }
                for slot in start..=end {
                    owners[usize::from(slot)] = index;
                }
            }
        }
        if let Some(slot) = owners.iter().position(|&o| o == u16::MAX) {
            return Err(format!("slot {slot} is served by no primary").into());
        }
        Ok(Self {
            primaries: primaries.iter().map(|n| n.addr.clone()).collect(),
            owners,
        })
    }

    /// The cluster's slot map, from the seed's `CLUSTER NODES`.
    ///
    /// # Errors
    /// As [`from_nodes`](Self::from_nodes).
    pub async fn fetch(cluster: &TestCluster) -> Result<Self, BenchError> {
        Self::from_nodes(&cluster.nodes().await)
    }

    /// The primaries' `host:port`, in the order [`node_of`](Self::node_of) numbers them.
    pub fn primaries(&self) -> &[String] {
        &self.primaries
    }

    /// The index (into [`primaries`](Self::primaries)) of the primary serving `slot`.
    pub fn node_of(&self, slot: u16) -> usize {
        usize::from(self.owners[usize::from(slot % SLOT_COUNT)])
    }
}

/// Commands the tracker sent in one cell, from `INFO commandstats` deltas.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackerTraffic {
    /// Every tracker command (the sum of `by_command`).
    pub commands: u64,
    /// Tracker round trips: every tracker pipeline, direct or aggregated, carries exactly one
    /// `EXPIRE`, so this is the `EXPIRE` count.
    pub round_trips: u64,
    /// Calls per command name (lower case), only those that changed.
    pub by_command: BTreeMap<String, u64>,
}

/// Snapshots of `INFO commandstats` on the primaries that hold the tracker's sets.
#[derive(Debug, Clone)]
pub struct TrackerNodes {
    addrs: Vec<String>,
}

impl TrackerNodes {
    /// The distinct primaries holding `baseplate-hot-key-tracker-reads` and `-writes`, found with
    /// `CLUSTER KEYSLOT` and `CLUSTER NODES`.
    ///
    /// # Errors
    /// When the seed does not answer or no primary serves a set's slot.
    pub async fn find(cluster: &TestCluster) -> Result<Self, BenchError> {
        let seed = cluster.url().trim_start_matches("redis://");
        let mut conn = cluster.node_connection(seed).await;
        let nodes = cluster.nodes().await;
        let mut addrs = Vec::new();
        for set in TrackedSet::ALL {
            let slot: u16 = redis::cmd("CLUSTER")
                .arg("KEYSLOT")
                .arg(set.key())
                .query_async(&mut conn)
                .await?;
            let node = nodes
                .iter()
                .find(|n| n.primary && n.serves(slot))
                .ok_or_else(|| format!("no primary serves slot {slot} of {}", set.key()))?;
            if !addrs.contains(&node.addr) {
                addrs.push(node.addr.clone());
            }
        }
        Ok(Self { addrs })
    }

    /// The primaries' `host:port`.
    pub fn addrs(&self) -> &[String] {
        &self.addrs
    }

    /// The tracker commands' call counts now, summed over the nodes.
    ///
    /// # Errors
    /// When a node does not answer `INFO commandstats`.
    pub async fn snapshot(
        &self,
        cluster: &TestCluster,
    ) -> Result<BTreeMap<String, u64>, BenchError> {
        let mut total = BTreeMap::new();
        for addr in &self.addrs {
            let mut conn = cluster.node_connection(addr).await;
            let info: String = redis::cmd("INFO")
                .arg("commandstats")
                .query_async(&mut conn)
                .await?;
            for (command, calls) in parse_commandstats(&info) {
                if TRACKER_COMMANDS.contains(&command.as_str()) {
                    *total.entry(command).or_default() += calls;
                }
            }
        }
        Ok(total)
    }
}

/// Every primary's count of commands served (the sum of `calls` over its `INFO commandstats`), for
/// the busiest primary's load in a window.
#[derive(Debug, Clone)]
pub struct PrimaryCommands {
    nodes: Vec<(String, redis::aio::MultiplexedConnection)>,
}

impl PrimaryCommands {
    /// Connects to each of `primaries` (`host:port`, as [`SlotMap::primaries`] lists them).
    ///
    /// # Errors
    /// When a primary cannot be reached.
    pub async fn connect(primaries: &[String]) -> Result<Self, BenchError> {
        let mut nodes = Vec::with_capacity(primaries.len());
        for addr in primaries {
            let conn = redis::Client::open(format!("redis://{addr}"))?
                .get_multiplexed_async_connection()
                .await
                .map_err(|e| format!("connecting to primary {addr}: {e}"))?;
            nodes.push((addr.clone(), conn));
        }
        Ok(Self { nodes })
    }

    /// Each primary's commands served so far, in the order of [`connect`](Self::connect)'s list.
    ///
    /// # Errors
    /// When a primary does not answer `INFO commandstats`.
    pub async fn calls(&self) -> Result<Vec<u64>, BenchError> {
        let mut calls = Vec::with_capacity(self.nodes.len());
        for (addr, conn) in &self.nodes {
            let info: String = redis::cmd("INFO")
                .arg("commandstats")
                .query_async(&mut conn.clone())
                .await
                .map_err(|e| format!("INFO commandstats on primary {addr}: {e}"))?;
            calls.push(parse_commandstats(&info).values().sum());
        }
        Ok(calls)
    }
}

/// The tracker's traffic between two [`TrackerNodes::snapshot`]s.
pub fn traffic(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> TrackerTraffic {
    let mut by_command = BTreeMap::new();
    for (command, &calls) in after {
        let delta = calls.saturating_sub(before.get(command).copied().unwrap_or(0));
        if delta > 0 {
            by_command.insert(command.clone(), delta);
        }
    }
    TrackerTraffic {
        commands: by_command.values().sum(),
        round_trips: by_command.get("expire").copied().unwrap_or(0),
        by_command,
    }
}

/// `command -> calls` from an `INFO commandstats` reply (`cmdstat_get:calls=12,usec=...`).
pub fn parse_commandstats(info: &str) -> BTreeMap<String, u64> {
    info.lines()
        .filter_map(|line| {
            let (name, stats) = line.trim().strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = stats
                .split(',')
                .find_map(|field| field.strip_prefix("calls="))?
                .parse()
                .ok()?;
            Some((name.to_ascii_lowercase(), calls))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_commandstats_and_takes_deltas() {
        let before = parse_commandstats(
            "# Commandstats\r\ncmdstat_get:calls=10,usec=20,usec_per_call=2.00,rejected_calls=0,failed_calls=0\r\n\
             cmdstat_zincrby:calls=5,usec=9,usec_per_call=1.80,rejected_calls=0,failed_calls=0\r\n\
             cmdstat_cluster|nodes:calls=2,usec=9,usec_per_call=4.50,rejected_calls=0,failed_calls=0\r\n",
        );
        assert_eq!(before.get("get"), Some(&10));
        assert_eq!(before.get("cluster|nodes"), Some(&2));
        let after = BTreeMap::from([
            ("zincrby".to_owned(), 25),
            ("expire".to_owned(), 7),
            ("zremrangebyrank".to_owned(), 0),
        ]);
        let before = BTreeMap::from([("zincrby".to_owned(), 5)]);
        let seen = traffic(&before, &after);
        assert_eq!(seen.commands, 27);
        assert_eq!(seen.round_trips, 7);
        assert_eq!(
            seen.by_command,
            BTreeMap::from([("expire".to_owned(), 7), ("zincrby".to_owned(), 20)])
        );
    }

    #[test]
    fn maps_slots_to_primaries() {
        let nodes = ClusterNode::parse_all(
            "a 127.0.0.1:1@2 master - 0 0 1 connected 0-5460\n\
             r 127.0.0.1:3@4 slave a 0 0 1 connected\n\
             b 127.0.0.1:5@6 master - 0 0 2 connected 5461-10922 [5461->-abc]\n\
             c 127.0.0.1:7@8 master - 0 0 3 connected 10923-16382 16383\n",
        );
        let map = SlotMap::from_nodes(&nodes).unwrap();
        assert_eq!(
            map.primaries(),
            ["127.0.0.1:1", "127.0.0.1:5", "127.0.0.1:7"]
        );
        assert_eq!(map.node_of(0), 0);
        assert_eq!(map.node_of(5461), 1);
        assert_eq!(map.node_of(16383), 2);
        let error = SlotMap::from_nodes(&nodes[..2]).unwrap_err().to_string();
        assert_eq!(error, "slot 5461 is served by no primary");
    }
}
