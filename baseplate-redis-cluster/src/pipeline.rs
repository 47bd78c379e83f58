//! Pipelines and transactions: [`MonitoredPipeline`], a named one that runs in one span when
//! executed, and `run`, how every pipeline a monitored connection sends runs: in one span and
//! one call, a transaction on its slot's primary, any other pipeline split by node (`split`).

mod split;

use std::borrow::Cow;
use std::ops::{Deref, DerefMut};

use redis::aio::ConnectionLike;
use redis::cluster_routing::{Route, SingleNodeRoutingInfo, SlotAddr};
use redis::{Cmd, FromRedisValue, Pipeline, RedisFuture, RedisResult, Value};
use tracing::Span;

use crate::connection::{
    BatchOperation, Call, MonitoredClusterRedisConnection, ran_on_server, record_node,
};
use crate::error::CrossSlotTransaction;
use crate::metrics::{CommandName, PIPELINE_COMMAND, TRANSACTION_COMMAND};
use crate::redirects::ClusterConnection;
use crate::routing::{blocks, slot_of};

/// A named pipeline (or transaction) made by [`MonitoredClusterRedisConnection::pipeline`] or
/// [`MonitoredClusterRedisConnection::transaction`].
///
/// It dereferences to a [`redis::Pipeline`], so commands are queued with redis-rs's own methods
/// (`.get(..)`, `.set(..)`, `.cmd(..).arg(..)`, `.ignore()`); [`query_async`](Self::query_async)
/// runs them in one span `{client}.pipeline_{name}`. Queue commands in a statement of their own:
/// a chain like `pipe.get(..).query_async(..)` ends on the inner `redis::Pipeline`, whose
/// `query_async` needs a connection and, given the monitored one, runs unnamed (`{client}.pipeline`).
///
/// ```no_run
/// # async fn example(foo: &baseplate_redis_cluster::MonitoredClusterRedisConnection) -> redis::RedisResult<()> {
/// let mut pipe = foo.pipeline("profile");
/// pipe.hgetall("user:1").smembers("user:1:groups");
/// let (user, groups): (Vec<(String, String)>, Vec<String>) = pipe.query_async().await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct MonitoredPipeline {
    conn: MonitoredClusterRedisConnection,
    label: BatchLabel,
    pipeline: Pipeline,
}

impl MonitoredPipeline {
    /// An empty pipeline called `label`, atomic when `label` names a transaction.
    pub(crate) fn new(conn: MonitoredClusterRedisConnection, label: BatchLabel) -> Self {
        let mut pipeline = redis::pipe();
        if label.kind == LabelKind::Transaction {
            pipeline.atomic();
        }
        Self {
            conn,
            label,
            pipeline,
        }
    }

    /// Runs the queued commands and converts their replies (ignored commands left out).
    ///
    /// # Errors
    /// The first connection or pool error; a command's error reply, as redis-rs reports it for
    /// pipelines; a [`CrossSlotTransaction`](crate::CrossSlotTransaction) for a transaction
    /// whose keys span slots.
    pub async fn query_async<T: FromRedisValue>(&mut self) -> RedisResult<T> {
        let mut named = Named {
            conn: &self.conn,
            label: &self.label,
        };
        self.pipeline.query_async(&mut named).await
    }

    /// Runs the queued commands, discarding their replies.
    ///
    /// # Errors
    /// As [`query_async`](Self::query_async).
    pub async fn exec_async(&mut self) -> RedisResult<()> {
        self.query_async::<()>().await
    }
}

impl Deref for MonitoredPipeline {
    type Target = Pipeline;

    fn deref(&self) -> &Pipeline {
        &self.pipeline
    }
}

impl DerefMut for MonitoredPipeline {
    fn deref_mut(&mut self) -> &mut Pipeline {
        &mut self.pipeline
    }
}

/// What a pipeline is called after the client's name, where it is traced and measured: a named
/// pipeline `pipeline_{name}`, a named transaction `transaction_{name}`, and a pipeline sent with
/// no name (`redis::pipe().query_async(&mut conn)`, atomic or not) `pipeline`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BatchLabel {
    kind: LabelKind,
    /// The label as spans and statsd show it, formatted once.
    text: Cow<'static, str>,
}

/// How the caller made the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LabelKind {
    Unnamed,
    Pipeline,
    Transaction,
}

/// What a named transaction's label starts with, before its name.
const TRANSACTION_PREFIX: &str = "transaction_";

impl BatchLabel {
    /// A pipeline sent with no name of its own.
    pub(crate) const UNNAMED: Self = Self {
        kind: LabelKind::Unnamed,
        text: Cow::Borrowed(PIPELINE_COMMAND),
    };

    /// A pipeline named `name`: `pipeline_{name}`.
    pub(crate) fn pipeline(name: &str) -> Self {
        Self {
            kind: LabelKind::Pipeline,
            text: Cow::Owned(format!("{PIPELINE_COMMAND}_{name}")),
        }
    }

    /// A transaction named `name`: `transaction_{name}`.
    pub(crate) fn transaction(name: &str) -> Self {
        Self {
            kind: LabelKind::Transaction,
            text: Cow::Owned(format!("{TRANSACTION_PREFIX}{name}")),
        }
    }

    /// The name of its span after the client's, and of its statsd timer and counters.
    pub(crate) fn name(&self) -> CommandName<'_> {
        CommandName::Label(&self.text)
    }

    /// Its Prometheus `redis_command` label when it runs as `pipeline` does: `transaction` when
    /// that is atomic (also a named pipeline the caller made atomic), else `pipeline`.
    pub(crate) fn redis_command(&self, pipeline: &Pipeline) -> &'static str {
        if self.kind == LabelKind::Transaction || pipeline.is_transaction() {
            TRANSACTION_COMMAND
        } else {
            PIPELINE_COMMAND
        }
    }

    /// What a [`CrossSlotTransaction`] calls it: a named transaction by its name, any other
    /// atomic pipeline by its label.
    fn transaction_name(&self) -> &str {
        match self.kind {
            LabelKind::Transaction => self
                .text
                .strip_prefix(TRANSACTION_PREFIX)
                .unwrap_or(&self.text),
            LabelKind::Pipeline | LabelKind::Unnamed => &self.text,
        }
    }
}

/// Runs `pipeline[offset..offset + count]` for `conn` as redis-rs's `Pipeline::query_async` asks,
/// in a span `{client}.{label}`.
pub(crate) async fn run(
    conn: &MonitoredClusterRedisConnection,
    pipeline: &Pipeline,
    offset: usize,
    count: usize,
    label: &BatchLabel,
) -> RedisResult<Vec<Value>> {
    let command = label.redis_command(pipeline);
    let name = label.name();
    let operation = BatchOperation::of(pipeline);
    let span = conn.span(name, operation, Some(pipeline.len()));
    // The whole pipeline goes where a blocking command in it must: its replies come back in
    // order on one connection.
    let blocking = pipeline.cmd_iter().any(blocks);
    // A transaction runs as a whole, any other pipeline split by node.
    let work = async |cluster: &mut ClusterConnection| {
        if let Some(refusal) = conn.pipeline_refusal(pipeline) {
            return (Err(refusal), Ran::Nothing);
        }
        if pipeline.is_transaction() {
            run_transaction(conn, cluster, pipeline, offset, count, label).await
        } else {
            split::run_split(conn, cluster, pipeline).await
        }
    };
    let call = Call {
        name,
        command,
        cmd: None,
        blocking,
        node: None,
    };
    let (result, ran) = conn.call(call, &mut None, span, work).await;
    ran.offer(conn, pipeline);
    result
}

/// Which commands of a pipeline ran on a server: those the hot-key tracker is offered.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) enum Ran {
    /// None: the pipeline never reached a server, or was refused before it was sent.
    #[default]
    Nothing,
    /// All of them.
    All,
    /// These, by their place in the pipeline.
    Only(Vec<usize>),
}

impl Ran {
    /// What ran of a pipeline sent to one node as a whole: all of it once it got its replies
    /// (error replies too), else nothing.
    pub(crate) fn whole<T>(result: &RedisResult<T>) -> Self {
        if ran_on_server(result) {
            Self::All
        } else {
            Self::Nothing
        }
    }

    /// These, less the commands at `held` (of a pipeline of `len` commands).
    pub(crate) fn except(self, held: &[usize], len: usize) -> Self {
        let ran = match self {
            Self::Nothing => return Self::Nothing,
            Self::All => (0..len).collect(),
            Self::Only(indices) => indices,
        };
        Self::Only(ran.into_iter().filter(|i| !held.contains(i)).collect())
    }

    /// Offers the commands of `pipeline` that ran to `conn`'s hot-key tracker.
    pub(crate) fn offer(self, conn: &MonitoredClusterRedisConnection, pipeline: &Pipeline) {
        match self {
            Self::Nothing => {}
            Self::All => pipeline.cmd_iter().for_each(|cmd| conn.observe(cmd)),
            Self::Only(indices) => {
                let commands: Vec<&Cmd> = pipeline.cmd_iter().collect();
                for cmd in indices.into_iter().filter_map(|index| commands.get(index)) {
                    conn.observe(cmd);
                }
            }
        }
    }
}

/// Carries the pipeline's name into `req_packed_commands`, which redis-rs's `Pipeline` calls.
struct Named<'a> {
    conn: &'a MonitoredClusterRedisConnection,
    label: &'a BatchLabel,
}

impl ConnectionLike for Named<'_> {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        let mut conn = self.conn.clone();
        Box::pin(async move { conn.req_packed_command(cmd).await })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(run(self.conn, pipeline, offset, count, self.label))
    }

    fn get_db(&self) -> i64 {
        0
    }
}

/// Runs a transaction on the primary serving its slot (any primary when it has no key), or
/// refuses it, unsent, when its keys span slots.
async fn run_transaction(
    conn: &MonitoredClusterRedisConnection,
    cluster: &ClusterConnection,
    pipeline: &Pipeline,
    offset: usize,
    count: usize,
    label: &BatchLabel,
) -> (RedisResult<Vec<Value>>, Ran) {
    let mut slot = None;
    for cmd in pipeline.cmd_iter() {
        match (slot, slot_of(cmd)) {
            (_, None) => {}
            (None, found) => slot = found,
            (Some(a), Some(b)) if a == b => {}
            (Some(_), Some(_)) => {
                let error = CrossSlotTransaction {
                    client: conn.name().to_owned(),
                    name: label.transaction_name().to_owned(),
                };
                return (Err(error.into()), Ran::Nothing);
            }
        }
    }
    let route = match slot {
        Some(slot) => {
            let span = Span::current();
            if !span.is_disabled() {
                let node = conn.pool().router().node_for(slot, false);
                record_node(&span, node.as_ref());
            }
            SingleNodeRoutingInfo::SpecificNode(Route::new(slot, SlotAddr::Master))
        }
        None => SingleNodeRoutingInfo::RandomPrimary,
    };
    let result = cluster
        .clone()
        .route_pipeline(pipeline.clone(), offset, count, route)
        .await;
    let ran = Ran::whole(&result);
    (result, ran)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_name_spans_statsd_and_prometheus_as_baseplate_does() {
        let mut plain = redis::pipe();
        plain.get("a");
        let mut atomic = plain.clone();
        atomic.atomic();
        let cases = [
            (
                BatchLabel::pipeline("bar"),
                "pipeline_bar",
                "pipeline",
                "transaction",
            ),
            (
                BatchLabel::transaction("tx"),
                "transaction_tx",
                "transaction",
                "transaction",
            ),
            (BatchLabel::UNNAMED, "pipeline", "pipeline", "transaction"),
        ];
        for (label, name, plain_command, atomic_command) in cases {
            assert_eq!(label.name(), CommandName::Label(name));
            assert_eq!(label.name().to_string(), name);
            assert_eq!(label.redis_command(&plain), plain_command, "{name}");
            assert_eq!(label.redis_command(&atomic), atomic_command, "{name}");
        }
    }

    #[test]
    fn a_pipeline_sent_whole_ran_once_a_server_replied() {
        let replies: RedisResult<Vec<Value>> = Ok(vec![Value::Okay]);
        assert_eq!(Ran::whole(&replies), Ran::All);
        let wrong_type = redis::ErrorKind::Server(redis::ServerErrorKind::ResponseError);
        let refused = redis::RedisError::from((wrong_type, "an error reply"));
        assert_eq!(Ran::whole::<()>(&Err(refused)), Ran::All);
        let dropped =
            redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert_eq!(Ran::whole::<()>(&Err(dropped)), Ran::Nothing);
    }

    #[test]
    fn a_cross_slot_transaction_is_called_by_its_name() {
        assert_eq!(BatchLabel::transaction("split").transaction_name(), "split");
        assert_eq!(
            BatchLabel::transaction("transaction_x").transaction_name(),
            "transaction_x"
        );
        assert_eq!(
            BatchLabel::pipeline("bar").transaction_name(),
            "pipeline_bar"
        );
        assert_eq!(BatchLabel::UNNAMED.transaction_name(), "pipeline");
    }
}
