//! A pipeline split by node: its commands grouped by the primary serving their slot, one
//! sub-pipeline sent to each node concurrently, and the replies put back in queue order.

use std::collections::BTreeMap;

use futures_util::future::join_all;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, SingleNodeRoutingInfo, SlotAddr};
use redis::{Cmd, ErrorKind, Pipeline, RedisError, RedisResult, Value};
use tracing::Span;

use super::Ran;
use crate::connection::{MonitoredClusterRedisConnection, count, record_node};
use crate::routing::{CmdRoute, route_of};

/// Sends one sub-pipeline per node, concurrently, and puts the replies back in queue order.
pub(super) async fn run_split(
    conn: &MonitoredClusterRedisConnection,
    cluster: &ClusterConnection,
    pipeline: &Pipeline,
) -> (RedisResult<Vec<Value>>, Ran) {
    let groups = group_by_node(conn, pipeline);
    let span = Span::current();
    span.record("db.redis.nodes", count(groups.len().max(1)));
    if let [group] = groups.as_slice()
        && !span.is_disabled()
    {
        let node = conn.pool().router().node_for(group.slot, group.read_only);
        record_node(&span, node.as_ref());
    }
    if groups.len() <= 1 {
        let route = groups
            .first()
            .map(|g| g.route())
            .unwrap_or(SingleNodeRoutingInfo::Random);
        let result = cluster
            .clone()
            .route_pipeline(pipeline.clone(), 0, pipeline.len(), route)
            .await;
        let ran = Ran::whole(&result);
        return (result, ran);
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
        None => (Ok(values), ran),
    }
}

struct NodeGroup {
    slot: u16,
    read_only: bool,
    indices: Vec<usize>,
}

impl NodeGroup {
    fn route(&self) -> SingleNodeRoutingInfo {
        // A group of reads may go to a replica (the router decides, as for single reads).
        let addr = if self.read_only {
            SlotAddr::ReplicaOptional
        } else {
            SlotAddr::Master
        };
        SingleNodeRoutingInfo::SpecificNode(Route::new(self.slot, addr))
    }
}

/// Groups the pipeline's commands by the primary serving their slot (by slot while the
/// topology is not known yet); keyless commands join the first group.
fn group_by_node(conn: &MonitoredClusterRedisConnection, pipeline: &Pipeline) -> Vec<NodeGroup> {
    let mut groups: BTreeMap<String, NodeGroup> = BTreeMap::new();
    let mut keyless = Vec::new();
    for (index, cmd) in pipeline.cmd_iter().enumerate() {
        let Some(CmdRoute { slot, read_only }) = route_of(cmd) else {
            keyless.push(index);
            continue;
        };
        let node = conn
            .pool()
            .router()
            .primary_of(slot)
            .unwrap_or_else(|| format!("slot {slot}"));
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
