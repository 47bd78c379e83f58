//! The one typed listing of a cluster's nodes: `CLUSTER NODES` parsed into [`ClusterNode`]s.

use anyhow::{Result, ensure};

use crate::cluster::redis_cli;

/// A node as `CLUSTER NODES` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterNode {
    /// The node's id.
    pub id: String,
    /// `host:port` of the node's client port.
    pub addr: String,
    /// The node's client port.
    pub port: u16,
    /// Whether the node is a primary (a `master` in Redis's words).
    pub primary: bool,
    /// The id of the primary a replica replicates; `None` for primaries.
    pub primary_id: Option<String>,
    /// Whether this is the node that was asked.
    pub myself: bool,
    /// Whether the node is flagged failing (`fail` or `fail?`).
    pub failed: bool,
    /// The slot ranges it serves, inclusive (empty for replicas). Slots being imported or
    /// migrated (`[5461->-id]`) are not listed: the node does not serve them yet or any more.
    pub slots: Vec<(u16, u16)>,
}

impl ClusterNode {
    /// One line of `CLUSTER NODES`; `None` when it is not one.
    pub fn parse(line: &str) -> Option<ClusterNode> {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let addr = fields.get(1)?.split('@').next()?.to_owned();
        let port = addr.rsplit(':').next()?.parse().ok()?;
        let flags: Vec<&str> = fields.get(2)?.split(',').collect();
        let primary_id = fields
            .get(3)
            .filter(|&&id| id != "-")
            .map(|&id| id.to_owned());
        let slots = fields
            .iter()
            .skip(8)
            .filter(|s| !s.starts_with('['))
            .filter_map(|range| {
                let (start, end) = range.split_once('-').unwrap_or((range, range));
                Some((start.parse().ok()?, end.parse().ok()?))
            })
            .collect();
        Some(ClusterNode {
            id: (*fields.first()?).to_owned(),
            addr,
            port,
            primary: flags.contains(&"master"),
            primary_id,
            myself: flags.contains(&"myself"),
            failed: flags.iter().any(|f| f.starts_with("fail")),
            slots,
        })
    }

    /// Every node a `CLUSTER NODES` reply lists.
    pub fn parse_all(text: &str) -> Vec<ClusterNode> {
        text.lines().filter_map(ClusterNode::parse).collect()
    }

    /// Whether the node is a primary serving slots: a primary that failed over (under load, say)
    /// may be listed without any until it rejoins as a replica.
    pub fn serves_slots(&self) -> bool {
        self.primary && !self.slots.is_empty()
    }

    /// Whether the node serves `slot` (as a primary).
    pub fn serves(&self, slot: u16) -> bool {
        self.slots
            .iter()
            .any(|&(start, end)| (start..=end).contains(&slot))
    }

    /// How many slots the node serves.
    pub fn slot_count(&self) -> usize {
        self.slots
            .iter()
            .map(|&(start, end)| usize::from(end - start) + 1)
            .sum()
    }

    /// Whether the node replicates `primary`.
    pub fn replicates(&self, primary: &ClusterNode) -> bool {
        self.primary_id.as_deref() == Some(primary.id.as_str())
    }

    /// The ports of the nodes of `nodes` that replicate this one.
    pub fn replica_ports(&self, nodes: &[ClusterNode]) -> Vec<u16> {
        nodes
            .iter()
            .filter(|n| n.replicates(self))
            .map(|n| n.port)
            .collect()
    }

    /// The served slot ranges as Redis writes them (`0-5460 5462`), or `-` for none.
    pub fn slots_text(&self) -> String {
        if self.slots.is_empty() {
            return "-".to_owned();
        }
        let ranges: Vec<String> = self
            .slots
            .iter()
            .map(|&(start, end)| match start == end {
                true => start.to_string(),
                false => format!("{start}-{end}"),
            })
            .collect();
        ranges.join(" ")
    }
}

/// Every node, as the node on `port` lists them.
///
/// # Errors
/// When the node does not answer, or its answer lists no node.
pub fn cluster_nodes(port: u16) -> Result<Vec<ClusterNode>> {
    let nodes = ClusterNode::parse_all(&redis_cli(port, &["CLUSTER", "NODES"])?);
    ensure!(!nodes.is_empty(), "node {port} listed no nodes");
    Ok(nodes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_primaries_with_migrating_slots() {
        let line = "07c37d 127.0.0.1:30004@40004 myself,master - 0 1426238317239 4 connected 0-5460 5462 [5461->-e7d1ee]";
        let node = ClusterNode::parse(line).expect("a node line");
        assert_eq!(node.id, "07c37d");
        assert_eq!(node.addr, "127.0.0.1:30004");
        assert_eq!(node.port, 30004);
        assert!(node.primary && node.myself && !node.failed);
        assert_eq!(node.primary_id, None);
        assert_eq!(node.slots, [(0, 5460), (5462, 5462)]);
        assert_eq!(node.slot_count(), 5462);
        assert!(node.serves(5462) && !node.serves(5461));
        assert_eq!(node.slots_text(), "0-5460 5462");
    }

    #[test]
    fn parses_failed_replicas() {
        let line = "e7d1ee 127.0.0.1:30001@40001 slave,fail 07c37d 0 1426238316232 1 disconnected";
        let node = ClusterNode::parse(line).expect("a node line");
        assert!(!node.primary && !node.myself && node.failed);
        assert_eq!(node.primary_id.as_deref(), Some("07c37d"));
        assert!(node.slots.is_empty());
        assert_eq!(node.slots_text(), "-");
    }

    #[test]
    fn replicas_are_found_by_their_primary_id() {
        let nodes = ClusterNode::parse_all(
            "07c37d 127.0.0.1:30004@40004 master - 0 0 4 connected 0-5460\n\
             e7d1ee 127.0.0.1:30001@40001 slave 07c37d 0 0 1 connected\n\
             292f8b 127.0.0.1:30002@40002 slave 5a1b2c 0 0 2 connected\n\
             67ed2d 127.0.0.1:30003@40003 slave 07c37d 0 0 3 connected",
        );
        let primary = &nodes[0];
        assert!(nodes[1].replicates(primary) && !nodes[2].replicates(primary));
        assert!(!primary.replicates(primary));
        assert_eq!(primary.replica_ports(&nodes), [30001, 30003]);
    }

    #[test]
    fn skips_what_is_not_a_node_line() {
        assert_eq!(ClusterNode::parse(""), None);
        assert_eq!(ClusterNode::parse("abc 127.0.0.1:x@1 master"), None);
        assert!(ClusterNode::parse_all("\n\n").is_empty());
    }
}
