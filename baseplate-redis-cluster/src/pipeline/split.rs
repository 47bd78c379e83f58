//! A pipeline split by node: its commands grouped by the primary serving their slot, one
//! sub-pipeline sent to each node concurrently, the replies put back in queue order, and the
//! commands a node held back sent again (see `redirects`).

use std::collections::BTreeMap;

use futures_util::future::join_all;
use redis::cluster_routing::SingleNodeRoutingInfo;
use redis::{Cmd, ErrorKind, Pipeline, RedisError, RedisResult, Value};
use tracing::Span;

use super::Ran;
use crate::connection::{MonitoredClusterRedisConnection, count, record_node};
use crate::redirects::{ClusterConnection, is_held, resend_held};
use crate::routing::{CmdRoute, route_of};

/// Sends one sub-pipeline per node, concurrently, puts the replies back in queue order, and sends
/// again the commands a node held back.
pub(super) async fn run_split(
    conn: &MonitoredClusterRedisConnection,
    cluster: &ClusterConnection,
    pipeline: &Pipeline,
) -> (RedisResult<Vec<Value>>, Ran) {
    let router = conn.pool().router();
    let groups = group_by_node(pipeline.cmd_iter(), |slot| router.primary_of(slot));
    let span = Span::current();
    span.record("db.redis.nodes", count(groups.len().max(1)));
    if let [group] = groups.as_slice()
        && !span.is_disabled()
    {
        let node = router.node_for(group.slot, group.read_only);
        record_node(&span, node.as_ref());
    }
    // Where the first group goes, with the keyless commands; a keyless command a node held back
    // goes there again.
    let first_route = groups
        .first()
        .map_or(SingleNodeRoutingInfo::Random, NodeGroup::route);
    if groups.len() <= 1 {
        let result = cluster
            .clone()
            .route_pipeline(pipeline.clone(), 0, pipeline.len(), first_route.clone())
            .await;
        let ran = Ran::whole(&result);
        return match result {
            Ok(values) => with_held_sent_again(cluster, pipeline, values, ran, &first_route).await,
            Err(error) => (Err(error), ran),
        };
    }
    let commands: Vec<&Cmd> = pipeline.cmd_iter().collect();
    let requests = groups.iter().map(|group| {
        let mut sub = redis::pipe();
        for &index in &group.indices {
            sub.add_command(commands[index].clone());
        }
        let len = group.indices.len();
        let mut cluster = cluster.clone();
        async move { cluster.route_pipeline(sub, 0, len, group.route()).await }
    });
    let replies = join_all(requests).await;

    let mut values = vec![Value::Nil; pipeline.len()];
    let mut ran = Vec::with_capacity(pipeline.len());
    let mut first_error = None;
    for (group, reply) in groups.iter().zip(replies) {
        match reply {
            Ok(group_values) if group_values.len() == group.indices.len() => {
                for (&index, value) in group.indices.iter().zip(group_values) {
                    values[index] = value;
                }
                ran.extend(&group.indices);
            }
            Ok(_) => {
                first_error.get_or_insert_with(|| {
                    RedisError::from((
                        ErrorKind::UnexpectedReturnType,
                        "a node returned the wrong number of pipeline replies",
                    ))
                });
            }
            Err(error) => {
                first_error.get_or_insert(error);
            }
        }
    }
    let ran = Ran::Only(ran);
    match first_error {
        Some(error) => (Err(error), ran),
        None => with_held_sent_again(cluster, pipeline, values, ran, &first_route).await,
    }
}

/// The pipeline's replies once the commands a node held back are sent again (see `redirects`),
/// and which commands ran: `ran`, less the held ones when sending them again failed.
async fn with_held_sent_again(
    cluster: &ClusterConnection,
    pipeline: &Pipeline,
    mut values: Vec<Value>,
    ran: Ran,
    keyless: &SingleNodeRoutingInfo,
) -> (RedisResult<Vec<Value>>, Ran) {
    let held: Vec<usize> = (0..values.len())
        .filter(|&index| is_held(&values[index]))
        .collect();
    if held.is_empty() {
        return (Ok(values), ran);
    }
    let commands: Vec<&Cmd> = pipeline.cmd_iter().collect();
    match resend_held(cluster, &commands, &mut values, keyless).await {
        Ok(()) => (Ok(values), ran),
        Err(error) => (Err(error), ran.except(&held, commands.len())),
    }
}

/// The commands of a pipeline that go to one node.
#[derive(Debug, PartialEq, Eq)]
struct NodeGroup {
    /// The slot of its first command with a key, which routes the group to its node.
    slot: u16,
    /// Whether all its commands only read, so a replica may serve them.
    read_only: bool,
    /// Its commands, by their place in the pipeline, in queue order.
    indices: Vec<usize>,
}

impl NodeGroup {
    fn route(&self) -> SingleNodeRoutingInfo {
        // A group of reads may go to a replica.
        CmdRoute {
            slot: self.slot,
            read_only: self.read_only,
        }
        .routing()
    }
}

/// Groups a pipeline's `commands` by the primary serving their slot, as `primary_of` names it
/// (by slot while the topology is not known yet, when it names none), in the order of the
/// primaries' names; keyless commands join the first group.
fn group_by_node<'a>(
    commands: impl IntoIterator<Item = &'a Cmd>,
    primary_of: impl Fn(u16) -> Option<String>,
) -> Vec<NodeGroup> {
    let mut groups: BTreeMap<String, NodeGroup> = BTreeMap::new();
    let mut keyless = Vec::new();
    for (index, cmd) in commands.into_iter().enumerate() {
        let Some(CmdRoute { slot, read_only }) = route_of(cmd) else {
            keyless.push(index);
            continue;
        };
        let node = primary_of(slot).unwrap_or_else(|| format!("slot {slot}"));
        let group = groups.entry(node).or_insert_with(|| NodeGroup {
            slot,
            read_only: true,
            indices: Vec::new(),
        });
        group.read_only &= read_only;
        group.indices.push(index);
    }
    let mut groups: Vec<NodeGroup> = groups.into_values().collect();
    if !keyless.is_empty() {
        match groups.first_mut() {
            Some(first) => {
                first.read_only = false;
                first.indices.extend(keyless);
                first.indices.sort_unstable();
            }
            None => groups.push(NodeGroup {
                slot: 0,
                read_only: false,
                indices: keyless,
            }),
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use redis::cluster_routing::{Route, SlotAddr};

    use super::*;
    use crate::routing::key_slot;

    /// Two primaries: `a:7000` serves slots 0-8191, `b:7001` slots 8192-16383.
    fn two_nodes(slot: u16) -> Option<String> {
        Some(if slot < 8192 { "a:7000" } else { "b:7001" }.to_owned())
    }

    fn groups(pipeline: &Pipeline, primary_of: fn(u16) -> Option<String>) -> Vec<NodeGroup> {
        group_by_node(pipeline.cmd_iter(), primary_of)
    }

    #[test]
    fn commands_are_grouped_by_node_in_queue_order_keyless_ones_in_the_first_group() {
        let (on_a, also_on_a, on_b) = ("bar", "baz", "foo");
        assert!(key_slot(on_a.as_bytes()) < 8192);
        assert!(key_slot(also_on_a.as_bytes()) < 8192);
        assert_ne!(key_slot(on_a.as_bytes()), key_slot(also_on_a.as_bytes()));
        assert!(key_slot(on_b.as_bytes()) >= 8192);
        let mut pipeline = redis::pipe();
        pipeline
            .get(on_b)
            .set(on_a, 1)
            .cmd("PING")
            .get(format!("{{{on_b}}}:tagged"))
            .get(also_on_a);
        assert_eq!(
            groups(&pipeline, two_nodes),
            [
                // The node named first, though its first command came second; two slots of
                // one node are one group; a keyless command makes its group go to the primary.
                NodeGroup {
                    slot: key_slot(on_a.as_bytes()),
                    read_only: false,
                    indices: vec![1, 2, 4],
                },
                NodeGroup {
                    slot: key_slot(on_b.as_bytes()),
                    read_only: true,
                    indices: vec![0, 3],
                },
            ]
        );
    }

    #[test]
    fn a_group_of_reads_may_go_to_a_replica_and_any_other_to_the_primary() {
        let mut pipeline = redis::pipe();
        pipeline.get("bar").get("foo").incr("foo", 1);
        let routes: Vec<_> = groups(&pipeline, two_nodes)
            .iter()
            .map(NodeGroup::route)
            .collect();
        assert_eq!(
            routes,
            [
                SingleNodeRoutingInfo::SpecificNode(Route::new(
                    key_slot(b"bar"),
                    SlotAddr::ReplicaOptional
                )),
                SingleNodeRoutingInfo::SpecificNode(Route::new(key_slot(b"foo"), SlotAddr::Master)),
            ]
        );
    }

    #[test]
    fn before_the_topology_is_known_commands_are_grouped_by_slot() {
        let mut pipeline = redis::pipe();
        pipeline
            .get("bar")
            .get("foo")
            .get("{bar}:tagged")
            .get("baz");
        let mut groups = groups(&pipeline, |_| None);
        groups.sort_by_key(|group| group.slot);
        let mut expected = vec![
            (key_slot(b"bar"), vec![0, 2]),
            (key_slot(b"foo"), vec![1]),
            (key_slot(b"baz"), vec![3]),
        ];
        expected.sort();
        let found: Vec<_> = groups.into_iter().map(|g| (g.slot, g.indices)).collect();
        assert_eq!(found, expected);
    }

    #[test]
    fn a_keyless_pipeline_is_one_group_for_a_primary() {
        let mut pipeline = redis::pipe();
        pipeline.cmd("PING").cmd("TIME");
        assert_eq!(
            groups(&pipeline, two_nodes),
            [NodeGroup {
                slot: 0,
                read_only: false,
                indices: vec![0, 1],
            }]
        );
    }
}
