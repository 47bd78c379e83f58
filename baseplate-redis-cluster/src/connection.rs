//! `MonitoredClusterRedisConnection`: a request's Redis-like object. Every command is a child span
//! of the request named `{client}.{COMMAND}`, runs through the pool, is measured where it runs
//! (Prometheus series, and the request's [`CommandObserver`]), and is offered to the hot-key
//! tracker once it ran.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use baseplate_hotkeys::HotKeyTracker;
use futures_util::future::join_all;
use redis::aio::ConnectionLike;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, SingleNodeRoutingInfo, SlotAddr};
use redis::{Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, RedisResult, Value};
use tracing::field::Empty;
use tracing::{Instrument as _, Span};

use crate::error::{
    CallTimeout, ConnectTimeout, CrossSlotTransaction, name_call_error, names_client,
};
use crate::metrics::{
    ActiveGuard, ClientSeries, CommandName, CommandObserver, CommandSeries, PIPELINE_COMMAND,
    TRANSACTION_COMMAND,
};
use crate::pipeline::MonitoredPipeline;
use crate::pool::{ClusterPool, PoolStats, SharedConnection};
use crate::pubsub::primary_route;
use crate::routing::{CmdRoute, blocks, route_of, slot_of};

/// A monitored connection to the cluster, bound to one request's span.
///
/// It implements [`redis::aio::ConnectionLike`], so every [`redis::AsyncCommands`] method,
/// `redis::cmd(...).query_async(&mut conn)` and `redis::pipe()...query_async(&mut conn)` work on it.
/// Cloning is cheap; clones share the pool and the parent span.
///
/// ```no_run
/// # async fn example(foo: &mut baseplate_redis_cluster::MonitoredClusterRedisConnection) -> redis::RedisResult<()> {
/// use redis::AsyncCommands as _;
///
/// let () = foo.set("greeting", "hello").await?;              // span "foo.SET"
/// let greeting: String = foo.get("greeting").await?;         // span "foo.GET"
/// let mut counters = foo.pipeline("counters");                // span "foo.pipeline_counters"
/// counters.incr("a", 1).incr("b", 1);
/// let (a, b): (i64, i64) = counters.query_async().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct MonitoredClusterRedisConnection {
    name: Arc<str>,
    parent: Span,
    pool: ClusterPool,
    tracker: HotKeyTracker,
    series: ClientSeries,
    observer: Option<Arc<dyn CommandObserver>>,
    /// This object's clone of the pool's connection, taken on its first command.
    shared: Option<SharedConnection>,
}

impl fmt::Debug for MonitoredClusterRedisConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MonitoredClusterRedisConnection")
            .field("name", &self.name)
            .field("pool", &self.pool)
            .finish_non_exhaustive()
    }
}

impl MonitoredClusterRedisConnection {
    pub(crate) fn new(
        name: Arc<str>,
        parent: Span,
        pool: ClusterPool,
        tracker: HotKeyTracker,
        series: ClientSeries,
    ) -> Self {
        Self {
            name,
            parent,
            pool,
            tracker,
            series,
            observer: None,
            shared: None,
        }
    }

    /// This connection with `observer` told of each command's outcome (a request scope that
    /// puts them in the request's metrics, say).
    pub fn with_observer(mut self, observer: Arc<dyn CommandObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// The client's name, the first part of every span name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The pool's statistics.
    pub fn pool_stats(&self) -> PoolStats {
        self.pool.stats()
    }

    /// The pool, for the connections a caller holds on its own (a subscriber's).
    pub(crate) fn pool(&self) -> &ClusterPool {
        &self.pool
    }

    /// Runs `work`, a command on a connection the caller holds on its own (a subscriber's), as
    /// every call is observed: a span `{client}.{COMMAND}`, the call's deadline, its metrics and
    /// the observer. It takes no permit: the connection is not the pool's. Errors that `work`
    /// did not name yet name the client and `described` (`SUBSCRIBE "news"`).
    pub(crate) async fn traced_on_own_connection(
        &self,
        command: &[u8],
        described: &dyn fmt::Display,
        work: impl Future<Output = RedisResult<()>>,
    ) -> RedisResult<()> {
        let name = CommandName::Command(command);
        let span = self.span(name, name);
        let series = self.series.command(name);
        let started = Instant::now();
        let outcome = Outcome {
            conn: self,
            name,
            _active: series.start(),
            series,
            started,
            span: span.clone(),
            finished: false,
        };
        let after = self.pool.call_timeout();
        let result = within(after.map(|after| started + after), work)
            .instrument(span)
            .await
            .unwrap_or_else(|_| {
                Err(CallTimeout {
                    client: self.name.to_string(),
                    command: described.to_string(),
                    node: None,
                    after: after.unwrap_or_default(),
                    waited_for_permit: Duration::ZERO,
                    source: None,
                }
                .into())
            })
            .map_err(|error| name_call_error(error, &self.name, described));
        outcome.finish(&result);
        result
    }

    /// A named pipeline: its commands run in one span `{client}.pipeline_{name}`. Commands may
    /// address any slots: they are grouped by node, each node gets one pipeline, and results come
    /// back in the order the commands were queued.
    pub fn pipeline(&self, name: &str) -> MonitoredPipeline {
        MonitoredPipeline::new(self.clone(), format!("pipeline_{name}"), redis::pipe())
    }

    /// A named transaction (`MULTI`/`EXEC`) in one span `{client}.transaction_{name}`. All its
    /// keys must hash to one slot (use a `{hash tag}`); otherwise it fails with a
    /// [`CrossSlotTransaction`] error before anything is sent.
    pub fn transaction(&self, name: &str) -> MonitoredPipeline {
        let mut pipeline = redis::pipe();
        pipeline.atomic();
        MonitoredPipeline::new(self.clone(), format!("transaction_{name}"), pipeline)
    }

    /// Runs `pipeline[offset..offset + count]` as redis-rs's `Pipeline::query_async` asks, in a span
    /// `{client}.{label}`.
    pub(crate) async fn run_pipeline(
        &self,
        pipeline: &Pipeline,
        offset: usize,
        count: usize,
        label: &str,
    ) -> RedisResult<Vec<Value>> {
        let (operation, command) = if pipeline.is_transaction() {
            ("MULTI", TRANSACTION_COMMAND)
        } else {
            ("PIPELINE", PIPELINE_COMMAND)
        };
        let name = CommandName::Label(label);
        let span = self.span(name, operation);
        // The whole pipeline goes where a blocking command in it must: its replies come back in
        // order on one connection.
        let blocking = pipeline.cmd_iter().any(blocks);
        let work = async |conn: &mut ClusterConnection| {
            self.run_pipeline_on(conn, pipeline, offset, count, label)
                .await
        };
        let call = Call {
            name,
            command,
            cmd: None,
            blocking,
        };
        let (result, ran) = self.call(call, &mut None, span, work).await;
        if !ran.is_empty() {
            let commands: Vec<&Cmd> = pipeline.cmd_iter().collect();
            for index in ran {
                self.tracker.observe(commands[index]);
            }
        }
        result
    }

    async fn run_pipeline_on(
        &self,
        conn: &ClusterConnection,
        pipeline: &Pipeline,
        offset: usize,
        count: usize,
        label: &str,
    ) -> (RedisResult<Vec<Value>>, Vec<usize>) {
        if pipeline.is_transaction() {
            self.run_transaction(conn, pipeline, offset, count, label)
                .await
        } else {
            self.run_split(conn, pipeline).await
        }
    }

    /// Runs one call, a command or a pipeline, as every call runs: it takes a permit, then a
    /// connection (one of its own when it blocks, else the shared one, kept in `cached` for the
    /// caller's next command), and runs `work` on it, all within the call's deadline and in
    /// `span`; names the client in its errors; and records its outcome where every reader finds
    /// it: the span, the Prometheus series and the observer, if any.
    async fn call<R: Replies, E: Default>(
        &self,
        call: Call<'_>,
        cached: &mut Option<SharedConnection>,
        span: Span,
        work: impl AsyncFnOnce(&mut ClusterConnection) -> (RedisResult<R>, E),
    ) -> (RedisResult<R>, E) {
        let Call {
            name,
            command,
            cmd,
            blocking,
        } = call;
        let series = match name {
            CommandName::Command(_) => self.series.command(name),
            CommandName::Label(_) => self.series.command(CommandName::Label(command)),
        };
        let started = Instant::now();
        // Records the call however it ends, also when its caller drops it half-way.
        let outcome = Outcome {
            conn: self,
            name,
            _active: series.start(),
            series,
            started,
            span: span.clone(),
            finished: false,
        };
        let deadline = self.pool.call_timeout().map(|after| started + after);
        let run = async {
            let (_permit, waited) = match self.pool.permit(deadline).await {
                Ok(permit) => permit,
                Err(error) => return (Err(error), E::default()),
            };
            let connected = AtomicBool::new(false);
            let on_connection = async {
                if blocking {
                    let mut dedicated = match self.pool.dedicated().await {
                        Ok(dedicated) => dedicated,
                        Err(error) => return (Err(error), E::default()),
                    };
                    connected.store(true, Ordering::Relaxed);
                    let outcome = work(&mut dedicated.conn).await;
                    dedicated.finish(&outcome.0);
                    return outcome;
                }
                let shared = match cached {
                    Some(shared) if !shared.is_broken() => shared,
                    cached => match self.pool.shared().await {
                        Ok(shared) => cached.insert(shared),
                        Err(error) => return (Err(error), E::default()),
                    },
                };
                connected.store(true, Ordering::Relaxed);
                let outcome = work(&mut shared.conn).await;
                shared.inspect(&outcome.0);
                outcome
            };
            within(deadline, on_connection).await.unwrap_or_else(|_| {
                let connected = connected.load(Ordering::Relaxed);
                let error = self.deadline_passed(name, cmd, waited, connected);
                (Err(error), E::default())
            })
        };
        let (result, extra) = run.instrument(span).await;
        let result = result.map_err(|error| self.named(error, name, cmd));
        outcome.finish(&result);
        (result, extra)
    }

    async fn run_transaction(
        &self,
        conn: &ClusterConnection,
        pipeline: &Pipeline,
        offset: usize,
        count: usize,
        label: &str,
    ) -> (RedisResult<Vec<Value>>, Vec<usize>) {
        let mut slot = None;
        for cmd in pipeline.cmd_iter() {
            match (slot, slot_of(cmd)) {
                (_, None) => {}
                (None, found) => slot = found,
                (Some(a), Some(b)) if a == b => {}
                (Some(_), Some(_)) => {
                    let error = CrossSlotTransaction {
                        client: self.name.to_string(),
                        name: label.trim_start_matches("transaction_").to_owned(),
                    };
                    return (Err(error.into()), Vec::new());
                }
            }
        }
        let route = match slot {
            Some(slot) => SingleNodeRoutingInfo::SpecificNode(Route::new(slot, SlotAddr::Master)),
            None => SingleNodeRoutingInfo::RandomPrimary,
        };
        let result = conn
            .clone()
            .route_pipeline(pipeline.clone(), offset, count, route)
            .await;
        let ran = if ran_on_server(&result) {
            (0..pipeline.len()).collect()
        } else {
            Vec::new()
        };
        (result, ran)
    }

    /// Sends one sub-pipeline per node, concurrently, and puts the replies back in queue order.
    async fn run_split(
        &self,
        conn: &ClusterConnection,
        pipeline: &Pipeline,
    ) -> (RedisResult<Vec<Value>>, Vec<usize>) {
        let groups = self.group_by_node(pipeline);
        Span::current().record("db.redis.nodes", groups.len().max(1));
        if groups.len() <= 1 {
            let route = groups
                .first()
                .map(|g| g.route())
                .unwrap_or(SingleNodeRoutingInfo::Random);
            let result = conn
                .clone()
                .route_pipeline(pipeline.clone(), 0, pipeline.len(), route)
                .await;
            let ran = if ran_on_server(&result) {
                (0..pipeline.len()).collect()
            } else {
                Vec::new()
            };
            return (result, ran);
        }
        let commands: Vec<&Cmd> = pipeline.cmd_iter().collect();
        let requests = groups.iter().map(|group| {
            let mut sub = redis::pipe();
            for &index in &group.indices {
                sub.add_command(commands[index].clone());
            }
            let len = group.indices.len();
            let mut conn = conn.clone();
            async move { conn.route_pipeline(sub, 0, len, group.route()).await }
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
        match first_error {
            Some(error) => (Err(error), ran),
            None => (Ok(values), ran),
        }
    }

    /// Groups the pipeline's commands by the primary serving their slot (by slot while the
    /// topology is not known yet); keyless commands join the first group.
    fn group_by_node(&self, pipeline: &Pipeline) -> Vec<NodeGroup> {
        let mut groups: BTreeMap<String, NodeGroup> = BTreeMap::new();
        let mut keyless = Vec::new();
        for (index, cmd) in pipeline.cmd_iter().enumerate() {
            let Some(CmdRoute { slot, read_only }) = route_of(cmd) else {
                keyless.push(index);
                continue;
            };
            let node = self
                .pool
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

    /// `error` naming this client and the call; a timeout names the node too.
    fn named(&self, error: RedisError, name: CommandName<'_>, cmd: Option<&Cmd>) -> RedisError {
        // redis-rs's own response timeout fired.
        if error.is_timeout()
            && !names_client(&error)
            && let Some(after) = self.pool.options().response_timeout
        {
            return self.timed_out(name, cmd, after, Some(error), Duration::ZERO);
        }
        name_call_error(error, &self.name, &name)
    }

    /// The call's deadline passed before it finished, `waited` of it spent waiting for a
    /// permit. A `ConnectTimeout` when all of it went to connecting; a `CallTimeout` naming the
    /// wait otherwise, even if the call was still connecting: a call that got its permit with
    /// a moment to spare ran out of time for want of a permit, not because the cluster is
    /// unreachable (the callers that held the permits say so when it is).
    fn deadline_passed(
        &self,
        name: CommandName<'_>,
        cmd: Option<&Cmd>,
        waited: Duration,
        connected: bool,
    ) -> RedisError {
        let after = self.pool.call_timeout().unwrap_or_default();
        if !connected && waited.is_zero() {
            return ConnectTimeout {
                client: self.name.to_string(),
                after,
            }
            .into();
        }
        self.timed_out(name, cmd, after, None, waited)
    }

    fn timed_out(
        &self,
        name: CommandName<'_>,
        cmd: Option<&Cmd>,
        after: Duration,
        source: Option<RedisError>,
        waited_for_permit: Duration,
    ) -> RedisError {
        CallTimeout {
            client: self.name.to_string(),
            command: name.to_string(),
            node: cmd
                .and_then(slot_of)
                .and_then(|slot| self.pool.router().primary_of(slot)),
            after,
            waited_for_permit,
            source,
        }
        .into()
    }

    fn span(&self, name: CommandName<'_>, operation: impl fmt::Display) -> Span {
        let trace = TraceName {
            client: &self.name,
            name,
        };
        tracing::info_span!(
            parent: &self.parent,
            "redis.command",
            otel.name = %trace,
            otel.kind = "client",
            otel.status_code = Empty,
            db.system = "redis",
            db.operation = %operation,
            baseplate.client = %self.name,
            db.redis.nodes = Empty,
            error.message = Empty,
        )
    }
}

/// Runs `work` until `deadline`, if there is one.
async fn within<T>(
    deadline: Option<Instant>,
    work: impl Future<Output = T>,
) -> Result<T, tokio::time::error::Elapsed> {
    match deadline {
        Some(deadline) => tokio::time::timeout_at(deadline.into(), work).await,
        None => Ok(work.await),
    }
}

impl ConnectionLike for MonitoredClusterRedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let name = CommandName::Command(command_name(cmd));
            let span = self.span(name, name);
            let mut cached = self.shared.take();
            let work = async |conn: &mut ClusterConnection| match primary_route(cmd) {
                Some(route) => (conn.route_command(cmd.clone(), route).await, ()),
                None => (conn.req_packed_command(cmd).await, ()),
            };
            let call = Call {
                name,
                command: "",
                cmd: Some(cmd),
                blocking: blocks(cmd),
            };
            let (result, ()) = self.call(call, &mut cached, span, work).await;
            self.shared = cached;
            if ran_on_server(&result) {
                self.tracker.observe(cmd);
            }
            result
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move { self.run_pipeline(pipeline, offset, count, "pipeline").await })
    }

    fn get_db(&self) -> i64 {
        0
    }
}

/// Records a call's outcome where every reader finds it: its span, its Prometheus series and the
/// request's observer. A call dropped before it finished (its caller gave up) counts as failed.
struct Outcome<'a> {
    conn: &'a MonitoredClusterRedisConnection,
    name: CommandName<'a>,
    series: Arc<CommandSeries>,
    /// The call counts as active until this drops, with the outcome.
    _active: ActiveGuard,
    started: Instant,
    span: Span,
    finished: bool,
}

impl Outcome<'_> {
    fn finish<R: Replies>(mut self, result: &RedisResult<R>) {
        let success = record(&self.span, result);
        self.record(success);
        self.finished = true;
    }

    fn record(&self, success: bool) {
        let elapsed = self.started.elapsed();
        self.series.finish(elapsed, success);
        if let Some(observer) = &self.conn.observer {
            observer.command_finished(&self.conn.name, &self.name, elapsed, success);
        }
    }
}

impl Drop for Outcome<'_> {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        self.span.record("otel.status_code", "ERROR");
        self.span
            .record("error.message", "the caller gave up on the call");
        self.record(false);
    }
}

/// What a call runs, for its metrics, its errors and the connection it needs.
struct Call<'a> {
    /// Its name after the client's: `GET`, `pipeline_bar`.
    name: CommandName<'a>,
    /// A pipeline's `redis_command` label (`pipeline`, `transaction`); unused for a command,
    /// whose name is its label.
    command: &'a str,
    /// The command, when the call is one, to name its node when it times out.
    cmd: Option<&'a Cmd>,
    /// Whether it blocks, and so needs a connection of its own.
    blocking: bool,
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

/// Whether the command reached a server and was executed (a reply, even an error reply).
fn ran_on_server<T>(result: &RedisResult<T>) -> bool {
    match result {
        Ok(_) => true,
        Err(error) => matches!(error.kind(), ErrorKind::Server(_)),
    }
}

/// Records the outcome on the span and says whether it succeeded. redis-rs hands a command's
/// error reply back as a value and turns it into an error only when converting it for the caller,
/// so an error reply anywhere in the replies (a pipeline's, or inside a transaction's `EXEC`
/// reply) is a failure too.
fn record<R: Replies>(span: &Span, result: &RedisResult<R>) -> bool {
    let error = match result {
        Ok(replies) => match replies.first_error() {
            None => {
                span.record("otel.status_code", "OK");
                return true;
            }
            Some(error) => RedisError::from(error.clone()),
        },
        Err(error) => error.clone(),
    };
    span.record("otel.status_code", "ERROR");
    span.record("error.message", tracing::field::display(&error));
    false
}

/// One reply or a pipeline's replies.
trait Replies {
    fn first_error(&self) -> Option<&redis::ServerError>;
}

impl Replies for Value {
    fn first_error(&self) -> Option<&redis::ServerError> {
        match self {
            Value::ServerError(error) => Some(error),
            Value::Array(items) => items.iter().find_map(|item| match item {
                Value::ServerError(error) => Some(error),
                _ => None,
            }),
            _ => None,
        }
    }
}

impl Replies for () {
    fn first_error(&self) -> Option<&redis::ServerError> {
        None
    }
}

impl Replies for Vec<Value> {
    fn first_error(&self) -> Option<&redis::ServerError> {
        self.iter().find_map(Replies::first_error)
    }
}

/// The first argument of a command: its name.
fn command_name(cmd: &Cmd) -> &[u8] {
    match cmd.args_iter().next() {
        Some(redis::Arg::Simple(name)) => name,
        _ => b"",
    }
}

/// `{client}.{COMMAND}`, baseplate's span name, formatted only when a subscriber wants it.
struct TraceName<'a> {
    client: &'a str,
    name: CommandName<'a>,
}

impl fmt::Display for TraceName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.client, self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn span_names_are_baseplates() {
        let name = |n| {
            TraceName {
                client: "foo",
                name: n,
            }
            .to_string()
        };
        assert_eq!(name(CommandName::Command(b"get")), "foo.GET");
        assert_eq!(
            name(CommandName::Command(b"ZRangeByScore")),
            "foo.ZRANGEBYSCORE"
        );
        assert_eq!(name(CommandName::Label("pipeline_bar")), "foo.pipeline_bar");
        assert_eq!(
            name(CommandName::Command(b"\xff\xfeX")),
            "foo.\u{fffd}\u{fffd}X"
        );
    }
}
