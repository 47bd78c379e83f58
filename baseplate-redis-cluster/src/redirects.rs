//! Redirections in a pipeline's replies, held back from redis-rs so that only the redirected
//! commands are sent again.
//!
//! redis-rs answers a redirection (`MOVED`, `ASK`) or a "try again" (`TRYAGAIN`, `CLUSTERDOWN`,
//! `LOADING`, `READONLY`...) in any one reply of a pipeline by sending the whole pipeline again,
//! to the node named or after a pause, until its retries run out: the pipeline's other commands,
//! which the node ran, run again each time (a cross-slot pipeline meeting a moving slot would
//! increment its counters twice). The node connections of the pool's cluster connections are
//! therefore [`HoldingConnection`]s: the replies of a plain (non-transaction) pipeline that
//! redis-rs would act on come back *held*, wrapped where redis-rs does not look, and the code
//! that sent the pipeline sends just those commands again, one at a time and in queue order, each
//! following its own redirections ([`resend_held`]), as redis-py-cluster does. A transaction's
//! replies are left to redis-rs: a redirected command aborts the whole transaction
//! (`EXECABORT`), so sending it again runs it once.
//!
//! A held reply never reaches a caller: every place a pool connection's pipeline replies come
//! back sends the held ones again.

use futures_util::FutureExt as _;
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster_async::Connect;
use redis::cluster_routing::RoutingInfo;
use redis::{
    AsyncConnectionConfig, Cmd, IntoConnectionInfo, Pipeline, RedisError, RedisFuture, RedisResult,
    RetryMethod, Value,
};

use crate::routing::route_of;

/// A cluster connection whose node connections hold a pipeline's redirected replies back.
pub(crate) type ClusterConnection = redis::cluster_async::ClusterConnection<HoldingConnection>;

/// A node connection (redis-rs's multiplexed one) that holds back the replies of a plain
/// pipeline redis-rs would send the whole pipeline again for (see the module doc).
#[derive(Clone)]
pub(crate) struct HoldingConnection(MultiplexedConnection);

impl Connect for HoldingConnection {
    fn connect_with_config<'a, T>(info: T, config: AsyncConnectionConfig) -> RedisFuture<'a, Self>
    where
        T: IntoConnectionInfo + Send + 'a,
    {
        MultiplexedConnection::connect_with_config(info, config)
            .map(|connected| connected.map(Self))
            .boxed()
    }
}

impl ConnectionLike for HoldingConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        self.0.req_packed_command(cmd)
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        if pipeline.is_transaction() {
            return self.0.req_packed_commands(pipeline, offset, count);
        }
        Box::pin(async move {
            let mut replies = self.0.req_packed_commands(pipeline, offset, count).await?;
            replies.iter_mut().for_each(hold);
            Ok(replies)
        })
    }

    fn get_db(&self) -> i64 {
        self.0.get_db()
    }
}

/// The attribute that marks a held reply.
const HELD: &str = "baseplate-held-redirection";

/// Holds `reply` back when redis-rs would send its pipeline again for it.
fn hold(reply: &mut Value) {
    let Value::ServerError(error) = reply else {
        return;
    };
    if matches!(
        RedisError::from(error.clone()).retry_method(),
        RetryMethod::NoRetry
    ) {
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

/// Replaces each held reply of `replies`, the replies to `commands` in order, by the reply to
/// its command sent again alone through `cluster`, in queue order, each following its own
/// redirections.
///
/// # Errors
/// The first error of a command sent again (its connection failed, say): the pipeline's other
/// commands ran, and so may the ones sent before it.
pub(crate) async fn resend_held(
    cluster: &mut ClusterConnection,
    commands: &[&Cmd],
    replies: &mut [Value],
) -> RedisResult<()> {
    for (cmd, reply) in commands.iter().zip(replies.iter_mut()) {
        if !is_held(reply) {
            continue;
        }
        *reply = match route_of(cmd) {
            Some(route) => {
                let routing = RoutingInfo::SingleNode(route.routing());
                cluster.route_command((*cmd).clone(), routing).await?
            }
            None => cluster.req_packed_command(cmd).await?,
        };
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(resp: &str) -> Value {
        redis::parse_redis_value(resp.as_bytes()).unwrap()
    }

    #[test]
    fn only_replies_redis_rs_would_send_the_pipeline_again_for_are_held() {
        for resp in [
            "-MOVED 3999 127.0.0.1:6381\r\n",
            "-ASK 3999 127.0.0.1:6381\r\n",
            "-TRYAGAIN Multiple keys request during rehashing of slot\r\n",
            "-CLUSTERDOWN The cluster is down\r\n",
            "-LOADING Redis is loading the dataset in memory\r\n",
            "-READONLY You can't write against a read only replica.\r\n",
        ] {
            let mut held = reply(resp);
            hold(&mut held);
            assert!(is_held(&held), "{resp:?}");
        }
        for resp in [
            "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
            "-ERR unknown command\r\n",
            "-NOSCRIPT No matching script\r\n",
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
}
