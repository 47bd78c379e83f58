//! Commands addressed to nodes rather than keys: [`NodeConnection`] sends every command to one
//! named node, and [`MonitoredClusterRedisConnection::on_all_primaries`] sends one command to every
//! primary and hands back each node's reply. Both are traced and measured like any other command.

use std::collections::BTreeMap;

use redis::aio::ConnectionLike;
use redis::cluster::NodeAddress;
use redis::cluster_routing::{MultipleNodeRoutingInfo, RoutingInfo, SingleNodeRoutingInfo};
use redis::{
    Cmd, ErrorKind, FromRedisValue, Pipeline, RedisError, RedisFuture, RedisResult, Value,
};
use tracing::Span;

use crate::connection::{BatchOperation, Call, MonitoredClusterRedisConnection, command_name};
use crate::metrics::{CommandName, PIPELINE_COMMAND};
use crate::pipeline::Ran;
use crate::redirects::{ClusterConnection, resend_held};
use crate::routing::blocks;

/// A connection to one node of the cluster, named by `host:port`, from
/// [`MonitoredClusterRedisConnection::on_node`].
///
/// It implements [`redis::aio::ConnectionLike`], so every [`redis::AsyncCommands`] method and
/// `redis::cmd(...).query_async(&mut node)` work on it: each command goes to that node whatever
/// its keys, in a span `{client}.{COMMAND}` with `server.address` and `server.port` set, and is
/// measured like any other command. A key the node does not serve follows the node's `MOVED` to
/// the node that does, as redis-rs follows any redirection; a replica serves reads of its
/// primary's keys only when the client reads from replicas (`read_from_replicas`), and redirects
/// them otherwise. A pipeline runs on the node as one pipeline. A node the cluster's topology
/// does not list gets no command: the call fails at once, naming the node.
///
/// ```no_run
/// # async fn example(foo: &baseplate_redis_cluster::MonitoredClusterRedisConnection) -> redis::RedisResult<()> {
/// let mut node = foo.on_node("127.0.0.1:7000")?;
/// let info: String = redis::cmd("INFO").arg("replication").query_async(&mut node).await?; // span foo.INFO
/// let keys: i64 = redis::cmd("DBSIZE").query_async(&mut node).await?;                     // that node's keys
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct NodeConnection {
    conn: MonitoredClusterRedisConnection,
    addr: String,
    node: NodeAddress,
}

impl NodeConnection {
    /// The node's address, `host:port`.
    pub fn addr(&self) -> &str {
        &self.addr
    }
}

impl MonitoredClusterRedisConnection {
    /// A connection that sends every command to the node at `addr` (`host:port`, as
    /// `CLUSTER NODES` lists it), primary or replica.
    ///
    /// # Errors
    /// When `addr` is not `host:port` with a numeric port; the error names the client and the
    /// address. Nothing is sent until the first command.
    pub fn on_node(&self, addr: &str) -> RedisResult<NodeConnection> {
        let parsed = addr
            .rsplit_once(':')
            .and_then(|(host, port)| Some((host, port.parse::<u16>().ok()?)))
            .filter(|(host, _)| !host.is_empty());
        let Some((host, port)) = parsed else {
            return Err(RedisError::from((
                ErrorKind::InvalidClientConfig,
                "not a node address",
                format!(
                    "redis cluster client {:?}: {addr:?} is not a node address (host:port)",
                    self.name()
                ),
            )));
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        Ok(NodeConnection {
            conn: self.clone(),
            addr: addr.to_owned(),
            node: NodeAddress::new(host, port),
        })
    }

    /// Sends `cmd` to every primary at once and returns each primary's reply by its address
    /// (`host:port`), in one span `{client}.{COMMAND}` (its `db.redis.nodes` says how many
    /// primaries answered), measured as one command.
    ///
    /// An error reply from one node is that node's `Err`; the others' replies are kept.
    ///
    /// ```no_run
    /// # async fn example(foo: &baseplate_redis_cluster::MonitoredClusterRedisConnection) -> redis::RedisResult<()> {
    /// let sizes = foo.on_all_primaries::<i64>(&redis::cmd("DBSIZE")).await?; // span foo.DBSIZE
    /// for (node, size) in sizes {
    ///     println!("{node}: {} keys", size?);
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// When a primary cannot be reached (a connection refused or dropped, the deadline passed)
    /// the whole call fails, naming the client and the command: a reply from only some
    /// primaries would look like a complete one.
    pub async fn on_all_primaries<T: FromRedisValue>(
        &self,
        cmd: &Cmd,
    ) -> RedisResult<BTreeMap<String, RedisResult<T>>> {
        let routing = RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None));
        let name = CommandName::Command(command_name(cmd));
        let span = self.span(name, name, None);
        let refusal = self.shared_connection_refusal(cmd);
        let work = async |conn: &mut ClusterConnection| {
            let result = match refusal {
                Some(refusal) => Err(refusal),
                None => conn.route_command(cmd.clone(), routing).await,
            };
            if let Ok(Value::Map(replies)) = &result {
                Span::current().record("db.redis.nodes", replies.len());
            }
            (result, ())
        };
        let call = Call {
            name,
            command: "",
            cmd: Some(cmd),
            blocking: false,
            node: None,
        };
        let (result, ()) = self.call(call, &mut None, span, work).await;
        let replies = match result? {
            // redis-rs answers a fan-out without a rule to combine its replies with each node's
            // reply by the node's address.
            Value::Map(replies) => replies,
            other => {
                return Err(RedisError::from((
                    ErrorKind::UnexpectedReturnType,
                    "expected one reply per primary",
                    format!(
                        "redis cluster client {:?}: {name} on all primaries: {other:?}",
                        self.name()
                    ),
                )));
            }
        };
        let mut by_node = BTreeMap::new();
        for (node, reply) in replies {
            let node = match node {
                Value::BulkString(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
                Value::SimpleString(text) => text,
                other => format!("{other:?}"),
            };
            let reply = match reply {
                Value::ServerError(error) => Err(RedisError::from(error)),
                reply => T::from_redis_value(reply).map_err(RedisError::from),
            };
            by_node.insert(node, reply);
        }
        Ok(by_node)
    }
}

impl NodeConnection {
    /// The route to the node, or an error when the cluster's topology does not list it: redis-rs
    /// has no connection to such a node, and asking for one anyway makes it reconnect to the whole
    /// cluster again and again before it gives up.
    fn route(&self) -> RedisResult<SingleNodeRoutingInfo> {
        if !self.conn.pool().router().lists(&self.node) {
            return Err(RedisError::from((
                ErrorKind::Client,
                "not a node of the cluster",
                format!("{} is not among the nodes CLUSTER SLOTS lists", self.addr),
            )));
        }
        Ok(SingleNodeRoutingInfo::ByAddress {
            host: self.node.host().to_owned(),
            port: self.node.port(),
        })
    }

    fn span(
        &self,
        name: CommandName<'_>,
        operation: impl std::fmt::Display,
        batch: Option<usize>,
    ) -> Span {
        let span = self.conn.span(name, operation, batch);
        span.record("server.address", self.node.host());
        span.record("server.port", i64::from(self.node.port()));
        span
    }
}

impl ConnectionLike for NodeConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let name = CommandName::Command(command_name(cmd));
            let span = self.span(name, name, None);
            // The topology is known once the call has its connection.
            let refusal = self.conn.shared_connection_refusal(cmd);
            let work = async |conn: &mut ClusterConnection| match refusal.map_or(self.route(), Err)
            {
                Ok(route) => {
                    let routing = RoutingInfo::SingleNode(route);
                    (conn.route_command(cmd.clone(), routing).await, ())
                }
                Err(error) => (Err(error), ()),
            };
            let node = Some(self.addr.as_str());
            self.conn
                .call_command(
                    cmd,
                    baseplate_hotkeys::command_of(cmd),
                    node,
                    &mut None,
                    span,
                    work,
                )
                .await
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let name = CommandName::Label(PIPELINE_COMMAND);
            let operation = BatchOperation::of(pipeline);
            let span = self.span(name, operation, Some(pipeline.len()));
            let refusal = pipeline
                .cmd_iter()
                .find_map(|cmd| self.conn.shared_connection_refusal(cmd));
            let work = async |conn: &mut ClusterConnection| match refusal.map_or(self.route(), Err)
            {
                Ok(route) => {
                    let result = match conn
                        .route_pipeline(pipeline.clone(), offset, count, route.clone())
                        .await
                    {
                        // A command the node held back (see `redirects`) follows its
                        // redirection alone, as a single command sent to the node does.
                        Ok(mut values) => {
                            let commands: Vec<&Cmd> =
                                pipeline.cmd_iter().skip(offset).take(count).collect();
                            resend_held(conn, &commands, &mut values, &route)
                                .await
                                .map(|()| values)
                        }
                        Err(error) => Err(error),
                    };
                    (result, ())
                }
                Err(error) => (Err(error), ()),
            };
            let call = Call {
                name,
                command: PIPELINE_COMMAND,
                cmd: None,
                blocking: pipeline.cmd_iter().any(blocks),
                node: Some(&self.addr),
            };
            let (result, ()) = self.conn.call(call, &mut None, span, work).await;
            Ran::whole(&result).offer(&self.conn, pipeline);
            result
        })
    }

    fn get_db(&self) -> i64 {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn foo() -> MonitoredClusterRedisConnection {
        let config: baseplate_config::RawConfig = [("foo.url", "redis://127.0.0.1:7000/0")]
            .into_iter()
            .collect();
        crate::ClusterRedisClient::new()
            .parse("foo", &config)
            .unwrap()
            .make_object_for_context("foo", &Span::none())
    }

    #[test]
    fn commands_go_only_to_nodes_the_topology_lists() {
        use redis::cluster_read_routing::{ClusterTopology, Shard};

        let foo = foo();
        let node = foo.on_node("127.0.0.1:7001").unwrap();
        assert!(node.route().is_ok(), "no topology yet: redis-rs decides");
        let primary = NodeAddress::new("127.0.0.1", 7000);
        let replica = NodeAddress::new("127.0.0.1", 7001);
        let shard = Shard::new(vec![(0, 16_383)], primary, vec![replica]);
        foo.pool()
            .router()
            .learn(ClusterTopology::from_shards(vec![shard]));
        for listed in ["127.0.0.1:7000", "127.0.0.1:7001"] {
            let route = foo.on_node(listed).unwrap().route();
            assert!(route.is_ok(), "{listed}: {route:?}");
        }
        for unlisted in ["127.0.0.1:7002", "localhost:7000"] {
            let error = foo.on_node(unlisted).unwrap().route().unwrap_err();
            assert_eq!(
                error.to_string(),
                format!(
                    "not a node of the cluster - Client: {unlisted} is not among the nodes \
                     CLUSTER SLOTS lists"
                )
            );
        }
    }

    #[test]
    fn node_addresses_are_host_and_port() {
        let foo = foo();
        let node = foo.on_node("127.0.0.1:7001").unwrap();
        assert_eq!(
            (node.addr(), node.node.host(), node.node.port()),
            ("127.0.0.1:7001", "127.0.0.1", 7001)
        );
        let node = foo.on_node("[::1]:7002").unwrap();
        assert_eq!((node.node.host(), node.node.port()), ("::1", 7002));
        for bad in ["127.0.0.1", "127.0.0.1:x", ":7000", "127.0.0.1:70000"] {
            let error = foo.on_node(bad).unwrap_err();
            assert_eq!(
                error.to_string(),
                format!(
                    "not a node address - InvalidClientConfig: redis cluster client \"foo\": {bad:?} is not a node address (host:port)"
                ),
                "{bad}"
            );
        }
    }
}
