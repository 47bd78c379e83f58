//! Redirections in a pipeline's replies, held back from redis-rs so that only the redirected
//! commands are sent again.
//!
//! redis-rs answers a redirection (`MOVED`, `ASK`) or a "try again" in any one reply of a
//! pipeline by sending the whole pipeline again, to the node named or after a pause, until its
//! retries run out: the pipeline's other commands, which the node ran, run again each time (a
//! cross-slot pipeline meeting a moving slot would increment its counters twice). The node
//! connections of the pool's cluster connections are therefore [`HoldingConnection`]s: in a
//! pipeline that may write, the replies that say a command did not run *there* while the node
//! ran others (`MOVED`, `ASK`, `TRYAGAIN`, `CLUSTERDOWN`: a slot elsewhere, moving, or not
//! served) come back *held*, wrapped where redis-rs does not look, and the code that sent the
//! pipeline sends just those commands again, each following its own redirections
//! ([`resend_held`]), as redis-py-cluster does.
//!
//! Left to redis-rs, which sends the whole pipeline again: a transaction (a redirected command
//! aborts all of it, `EXECABORT`, so none of it ran); a pipeline that only reads (running its
//! reads twice changes nothing, and they stay in order); a pipeline the node ran none of the
//! keyed commands of (sent to a node serving none of its slots: no keyed command runs twice,
//! and its keyless ones, a `WAIT` after the writes, then run where the writes do); and the
//! replies a node gives for every write it is sent (`READONLY` from a demoted primary,
//! `LOADING`, `MASTERDOWN`), where only reads ran.
//!
//! A held reply never reaches a caller: every place a pool connection's pipeline replies come
//! back sends the held ones again.
//!
//! The same node connections keep replicas from serving the reads of a client that reads from
//! primaries only (see [`HoldingConnection`]).

use futures_util::FutureExt as _;
use futures_util::future::try_join_all;
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster_async::Connect;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{
    AsyncConnectionConfig, Cmd, IntoConnectionInfo, Pipeline, RedisFuture, RedisResult,
    ServerErrorKind, Value,
};

use baseplate_hotkeys::command_of;

use crate::connection::command_name;
use crate::routing::{CmdRoute, only_reads, route_of};

/// A cluster connection of the pool: its node connections hold a pipeline's redirected replies
/// back, and put a replica in `READONLY` mode (so that it serves reads) only when the client reads
/// from replicas (see [`HoldingConnection`]). redis-rs builds node connections from their type
/// alone, so each setting has a type of its own.
#[derive(Clone)]
pub(crate) enum ClusterConnection {
    /// `read_from_replicas = false`: every read is for a primary to serve.
    PrimaryReads(redis::cluster_async::ClusterConnection<HoldingConnection<false>>),
    /// `read_from_replicas = true`.
    ReplicaReads(redis::cluster_async::ClusterConnection<HoldingConnection<true>>),
}

/// Runs `$call` on the redis-rs connection inside `$conn`, whichever its node connections.
macro_rules! on_inner {
    ($conn:expr, $inner:ident => $call:expr) => {
        match $conn {
            ClusterConnection::PrimaryReads($inner) => $call,
            ClusterConnection::ReplicaReads($inner) => $call,
        }
    };
}

impl ClusterConnection {
    /// redis-rs's `ClusterConnection::route_command`.
    pub(crate) async fn route_command(
        &mut self,
        cmd: Cmd,
        routing: RoutingInfo,
    ) -> RedisResult<Value> {
        on_inner!(self, conn => conn.route_command(cmd, routing).await)
    }

    /// redis-rs's `ClusterConnection::route_pipeline`.
    pub(crate) async fn route_pipeline(
        &mut self,
        pipeline: Pipeline,
        offset: usize,
        count: usize,
        route: SingleNodeRoutingInfo,
    ) -> RedisResult<Vec<Value>> {
        on_inner!(self, conn => conn.route_pipeline(pipeline, offset, count, route).await)
    }
}

impl ConnectionLike for ClusterConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        on_inner!(self, conn => conn.req_packed_command(cmd))
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        on_inner!(self, conn => conn.req_packed_commands(pipeline, offset, count))
    }

    fn get_db(&self) -> i64 {
        on_inner!(self, conn => conn.get_db())
    }
}

/// A node connection (redis-rs's multiplexed one) that holds back the replies of a pipeline
/// redis-rs would send again whole, running its other commands twice (see the module doc).
///
/// Unless `REPLICA_READS`, it answers the `READONLY` redis-rs sends as it opens the connection
/// (to every node, since the pool routes reads itself) with a `PING` instead: a replica then
/// answers a read with `MOVED` to its primary, as baseplate.py's replicas do. redis-rs sends a
/// command for a primary whose connection is being opened again to another node it is connected
/// to (for a read, a node of the same shard first); a replica in `READONLY` mode would answer a
/// read there with what it has, maybe older than what the primary acknowledged. Such reads wait
/// for the primary (or its promoted replica) instead, or fail when their deadline passes first.
#[derive(Clone)]
pub(crate) struct HoldingConnection<const REPLICA_READS: bool>(MultiplexedConnection);

impl<const REPLICA_READS: bool> Connect for HoldingConnection<REPLICA_READS> {
    fn connect_with_config<'a, T>(info: T, config: AsyncConnectionConfig) -> RedisFuture<'a, Self>
    where
        T: IntoConnectionInfo + Send + 'a,
    {
        MultiplexedConnection::connect_with_config(info, config)
            .map(|connected| connected.map(Self))
            .boxed()
    }
}

impl<const REPLICA_READS: bool> ConnectionLike for HoldingConnection<REPLICA_READS> {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        // Callers cannot send `READONLY` (see `routing::changes_shared_connection`): redis-rs's.
        if !REPLICA_READS && command_name(cmd).eq_ignore_ascii_case(b"READONLY") {
            // Still a round trip, which tells redis-rs the connection works.
            return Box::pin(async move { self.0.req_packed_command(&redis::cmd("PING")).await });
        }
        self.0.req_packed_command(cmd)
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        if pipeline.is_transaction() || pipeline.cmd_iter().all(changes_nothing) {
            return self.0.req_packed_commands(pipeline, offset, count);
        }
        Box::pin(async move {
            let mut replies = self.0.req_packed_commands(pipeline, offset, count).await?;
            // A node that ran none of the keyed commands serves none of their slots (redis-rs
            // sends a pipeline to another node while the connection to the slot's primary is
            // repaired): sent again whole, no keyed command runs twice, and the keyless ones (a
            // `WAIT` after the writes) run where they were meant to. Left to redis-rs.
            if ran_a_keyed_command(pipeline, offset, &replies) {
                replies.iter_mut().for_each(hold);
            }
            Ok(replies)
        })
    }

    fn get_db(&self) -> i64 {
        self.0.get_db()
    }
}

/// Whether running `cmd` twice changes nothing: a read (by the command table), or
/// `CLIENT CACHING`, which only marks the next read for the hot-key cache's tracking.
fn changes_nothing(cmd: &Cmd) -> bool {
    if command_of(cmd).is_some_and(only_reads) {
        return true;
    }
    let mut args = cmd.args_iter();
    let mut next_is = |expected: &[u8]| matches!(args.next(), Some(redis::Arg::Simple(arg)) if arg.eq_ignore_ascii_case(expected));
    next_is(b"CLIENT") && next_is(b"CACHING")
}

/// The attribute that marks a held reply.
const HELD: &str = "baseplate-held-redirection";

/// Whether `reply` says its command did not run on the node: its slot is elsewhere, moving, or
/// not served.
fn did_not_run(reply: &Value) -> bool {
    matches!(
        reply,
        Value::ServerError(error) if matches!(
            error.kind(),
            Some(
                ServerErrorKind::Moved
                    | ServerErrorKind::Ask
                    | ServerErrorKind::TryAgain
                    | ServerErrorKind::ClusterDown
            )
        )
    )
}

/// Whether a command with keys among those `replies` answer (the pipeline's from `offset` on)
/// ran on the node.
fn ran_a_keyed_command(pipeline: &Pipeline, offset: usize, replies: &[Value]) -> bool {
    pipeline
        .cmd_iter()
        .skip(offset)
        .zip(replies)
        .any(|(cmd, reply)| route_of(cmd).is_some() && !did_not_run(reply))
}

/// Holds `reply` back when it says its command did not run on the node while others may have.
fn hold(reply: &mut Value) {
    if !did_not_run(reply) {
        return;
    }
    let error = std::mem::replace(reply, Value::Nil);
    *reply = Value::Attribute {
        data: Box::new(error),
        attributes: vec![(Value::SimpleString(HELD.to_owned()), Value::Nil)],
    };
}

/// Whether `reply` is held back: its command did not run.
pub(crate) fn is_held(reply: &Value) -> bool {
    let Value::Attribute { data, attributes } = reply else {
        return false;
    };
    matches!(**data, Value::ServerError(_))
        && matches!(attributes.as_slice(), [(Value::SimpleString(mark), Value::Nil)] if mark == HELD)
}

/// Replaces each held reply of `replies`, the replies to `commands` in order, by the reply to its
/// command sent again through `cluster`. The commands of one slot go in queue order: the first
/// alone, following its redirections (which also has redis-rs learn where the slot went), then
/// the others in one pipeline to where the slot is now, and any of those held again alone, one
/// after the other. The slots go concurrently. A keyless command (held by `CLUSTERDOWN`) goes to
/// `keyless`.
///
/// # Errors
/// The first error of a command sent again (its connection failed, say): the pipeline's other
/// commands ran, and so may some of those sent again.
pub(crate) async fn resend_held(
    cluster: &ClusterConnection,
    commands: &[&Cmd],
    replies: &mut [Value],
    keyless: &SingleNodeRoutingInfo,
) -> RedisResult<()> {
    // The held commands by slot, slots in the order of their first held command.
    let mut by_slot: Vec<(Option<u16>, Vec<usize>)> = Vec::new();
    for (index, reply) in replies.iter().enumerate() {
        let Some(cmd) = commands.get(index).filter(|_| is_held(reply)) else {
            continue;
        };
        let slot = route_of(cmd).map(|route| route.slot);
        match by_slot.iter_mut().find(|(s, _)| *s == slot) {
            Some((_, indices)) => indices.push(index),
            None => by_slot.push((slot, vec![index])),
        }
    }
    let groups = by_slot
        .iter()
        .map(|(_, indices)| resend_in_order(cluster.clone(), commands, indices, keyless));
    for (index, reply) in try_join_all(groups).await?.into_iter().flatten() {
        replies[index] = reply;
    }
    Ok(())
}

/// Sends `commands[indices]` again, all of one slot (or all keyless), in order; their replies.
async fn resend_in_order(
    mut cluster: ClusterConnection,
    commands: &[&Cmd],
    indices: &[usize],
    keyless: &SingleNodeRoutingInfo,
) -> RedisResult<Vec<(usize, Value)>> {
    let routing =
        |cmd: &Cmd| route_of(cmd).map_or_else(|| keyless.clone(), |route| route.routing());
    let mut replies = Vec::with_capacity(indices.len());
    let Some((&first, rest)) = indices.split_first() else {
        return Ok(replies);
    };
    let cmd = commands[first];
    let reply = cluster
        .route_command(cmd.clone(), RoutingInfo::SingleNode(routing(cmd)))
        .await?;
    replies.push((first, reply));
    if rest.is_empty() {
        return Ok(replies);
    }
    let mut pipeline = redis::pipe();
    for &index in rest {
        pipeline.add_command(commands[index].clone());
    }
    // To the slot's primary unless all of them read.
    let rest_routing = match route_of(commands[rest[0]]) {
        Some(route) => CmdRoute {
            slot: route.slot,
            read_only: rest
                .iter()
                .all(|&index| route_of(commands[index]).is_some_and(|route| route.read_only)),
        }
        .routing(),
        None => keyless.clone(),
    };
    let again = cluster
        .route_pipeline(pipeline, 0, rest.len(), rest_routing)
        .await?;
    for (&index, reply) in rest.iter().zip(again) {
        let reply = if is_held(&reply) {
            let cmd = commands[index];
            cluster
                .route_command(cmd.clone(), RoutingInfo::SingleNode(routing(cmd)))
                .await?
        } else {
            reply
        };
        replies.push((index, reply));
    }
    Ok(replies)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(resp: &str) -> Value {
        redis::parse_redis_value(resp.as_bytes()).unwrap()
    }

    #[test]
    fn only_replies_to_commands_that_did_not_run_beside_others_that_did_are_held() {
        for resp in [
            "-MOVED 3999 127.0.0.1:6381\r\n",
            "-ASK 3999 127.0.0.1:6381\r\n",
            "-TRYAGAIN Multiple keys request during rehashing of slot\r\n",
            "-CLUSTERDOWN Hash slot not served\r\n",
        ] {
            let mut held = reply(resp);
            hold(&mut held);
            assert!(is_held(&held), "{resp:?}");
        }
        for resp in [
            "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
            "-ERR unknown command\r\n",
            "-NOSCRIPT No matching script\r\n",
            // Given for every write the node is sent: only reads ran, which may run again.
            "-READONLY You can't write against a read only replica.\r\n",
            "-LOADING Redis is loading the dataset in memory\r\n",
            "-MASTERDOWN Link with MASTER is down\r\n",
            ":1\r\n",
            "+OK\r\n",
        ] {
            let mut kept = reply(resp);
            hold(&mut kept);
            assert_eq!(kept, reply(resp), "{resp:?}");
            assert!(!is_held(&kept), "{resp:?}");
        }
        // An attribute the server sent is not a held reply.
        let attribute = Value::Attribute {
            data: Box::new(reply("-MOVED 3999 127.0.0.1:6381\r\n")),
            attributes: vec![(Value::SimpleString("other".to_owned()), Value::Nil)],
        };
        assert!(!is_held(&attribute));
    }

    #[test]
    fn replies_are_held_only_where_the_node_ran_a_keyed_command() {
        let moved = || reply("-MOVED 3999 127.0.0.1:6381\r\n");
        let mut write_and_wait = redis::pipe();
        write_and_wait.set("a", 1).cmd("WAIT").arg(1).arg(100);
        // Sent to a replica: the write redirected, the `WAIT` refused there; or to another
        // primary, which answers the `WAIT` for its own writes. Nothing keyed ran either way.
        let on_a_replica = [
            moved(),
            reply("-ERR WAIT cannot be used with replica instances\r\n"),
        ];
        assert!(!ran_a_keyed_command(&write_and_wait, 0, &on_a_replica));
        assert!(!ran_a_keyed_command(
            &write_and_wait,
            0,
            &[moved(), reply(":1\r\n")]
        ));
        assert!(ran_a_keyed_command(
            &write_and_wait,
            0,
            &[reply("+OK\r\n"), reply(":1\r\n")]
        ));

        // One slot moved, another served: the served write ran.
        let mut two_slots = redis::pipe();
        two_slots.incr("a", 1).incr("b", 1);
        assert!(ran_a_keyed_command(
            &two_slots,
            0,
            &[moved(), reply(":1\r\n")]
        ));
        assert!(!ran_a_keyed_command(&two_slots, 0, &[moved(), moved()]));
        // Replies from `offset` on answer the commands from `offset` on.
        assert!(!ran_a_keyed_command(&two_slots, 1, &[moved()]));
    }

    #[test]
    fn only_pipelines_that_may_write_have_replies_held() {
        let changes_nothing_all = |pipeline: &Pipeline| pipeline.cmd_iter().all(changes_nothing);
        let mut reads = redis::pipe();
        reads
            .get("a")
            .hgetall("b")
            .cmd("CLIENT")
            .arg("CACHING")
            .arg("YES");
        assert!(changes_nothing_all(&reads));
        for write in [
            redis::cmd("INCR").arg("a").clone(),
            redis::cmd("EVAL").arg("return 1").arg(0).clone(),
            redis::cmd("CLIENT").arg("KILL").arg("ID").arg(1).clone(),
            redis::cmd("PUBLISH").arg("c").arg("m").clone(),
        ] {
            let mut pipeline = reads.clone();
            pipeline.add_command(write.clone());
            assert!(!changes_nothing_all(&pipeline), "{write:?}");
        }
    }
}
