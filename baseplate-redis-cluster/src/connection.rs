//! `MonitoredClusterRedisConnection`: a request's Redis-like object. Every command is a child span
//! of the request named `{client}.{COMMAND}`, runs through the pool, is measured where it runs
//! (Prometheus series, and the request's [`CommandObserver`]), and is offered to the hot-key
//! tracker once it ran.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use baseplate_hotkeys::{CommandSpec, HotKeyTracker, command_of};
use futures_util::FutureExt as _;
use futures_util::future::Either;
use opentelemetry_semantic_conventions::attribute::{
    DB_OPERATION_BATCH_SIZE, DB_OPERATION_NAME, DB_RESPONSE_STATUS_CODE, DB_SYSTEM_NAME,
    ERROR_TYPE, SERVER_ADDRESS, SERVER_PORT,
};
use redis::aio::ConnectionLike;
use redis::cluster::NodeAddress;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, RedisResult, Value};
use tracing::field::Empty;
use tracing::{Instrument as _, Span};
use tracing_subscriber::registry::{LookupSpan as _, Registry};

use crate::cache::{CacheStats, HotKeyCache, Lookup, cacheable, read_key, tracked_read};
use crate::error::{
    CallTimeout, ConnectTimeout, CrossSlotScript, PlainScan, SharedConnectionCommand, error_type,
    name_call_error, names_client, shown_key,
};
use crate::metrics::{ActiveGuard, ClientSeries, CommandName, CommandObserver, CommandSeries};
use crate::pipeline::{self, BatchLabel, MonitoredPipeline};
use crate::pool::{ClusterPool, PoolStats, SharedConnection};
use crate::pubsub::primary_route;
use crate::redirects::ClusterConnection;
use crate::routing::{
    CmdRoute, Router, ScriptRoute, blocks_as, changes_shared_connection, first_key_of, route_of,
    script_route, slot_of,
};

/// A monitored connection to the cluster, bound to one request's span.
///
/// It implements [`redis::aio::ConnectionLike`], so every [`redis::AsyncCommands`] method,
/// `redis::cmd(...).query_async(&mut conn)` and `redis::pipe()...query_async(&mut conn)` work on it.
/// Cloning is cheap; clones share the pool and the parent span. Commands that span the cluster
/// have methods of their own: [`cluster_scan`](Self::cluster_scan) (a plain `SCAN` is refused),
/// [`on_node`](Self::on_node) and [`on_all_primaries`](Self::on_all_primaries).
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
    client: Arc<ClientParts>,
    parent: Span,
    observer: Option<Arc<dyn CommandObserver>>,
    /// This object's clone of the pool's connection, taken on its first command.
    shared: Option<SharedConnection>,
}

/// What every connection of one client shares, behind one reference count: a connection is made
/// per request, and each reference count it takes and drops on shared parts is a write to memory
/// every thread of the process writes.
#[derive(Debug)]
pub(crate) struct ClientParts {
    /// The client's name, the first part of every span name.
    pub(crate) name: Arc<str>,
    pub(crate) pool: ClusterPool,
    pub(crate) tracker: HotKeyTracker,
    pub(crate) series: ClientSeries,
}

impl fmt::Debug for MonitoredClusterRedisConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MonitoredClusterRedisConnection")
            .field("name", &self.client.name)
            .field("pool", &self.client.pool)
            .finish_non_exhaustive()
    }
}

impl MonitoredClusterRedisConnection {
    pub(crate) fn new(client: Arc<ClientParts>, parent: Span) -> Self {
        Self {
            client,
            parent,
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
        &self.client.name
    }

    /// The pool's statistics.
    pub fn pool_stats(&self) -> PoolStats {
        self.client.pool.stats()
    }

    /// What the client's hot-key cache has done so far; `None` when `cache_hot_keys` is off.
    pub fn cache_stats(&self) -> Option<CacheStats> {
        self.client.pool.cache_stats()
    }

    /// The read keys the hot-key tracker finds hottest now, whose reads the cache answers (empty
    /// when `cache_hot_keys` is off).
    pub fn hot_reads(&self) -> Vec<Vec<u8>> {
        self.client.tracker.hot_reads()
    }

    /// The pool this connection's calls run through (also for the connections a caller holds
    /// on its own, a subscriber's).
    pub(crate) fn pool(&self) -> &ClusterPool {
        &self.client.pool
    }

    /// Offers a command that ran to the hot-key tracker.
    pub(crate) fn observe(&self, cmd: &Cmd) {
        self.client.tracker.observe(cmd);
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
        let span = self.span(name, name, None);
        let outcome = Outcome::start(
            self,
            name,
            None,
            self.client.series.command(name),
            &span,
            Instant::now(),
        );
        let started = outcome.started;
        let after = self.client.pool.call_timeout();
        let result = within(deadline_after(started, after), work)
            .instrument(span)
            .await
            .unwrap_or_else(|_| {
                Err(CallTimeout {
                    client: self.client.name.to_string(),
                    command: described.to_string(),
                    key: None,
                    node: None,
                    after: after.unwrap_or_default(),
                    waited_for_permit: Duration::ZERO,
                    source: None,
                }
                .into())
            })
            .map_err(|error| name_call_error(error, &self.client.name, described, None, None));
        outcome.finish(&result);
        result
    }

    /// A named pipeline: its commands run in one span `{client}.pipeline_{name}`. Commands may
    /// address any slots: they are grouped by node, each node gets one pipeline, and results come
    /// back in the order the commands were queued.
    pub fn pipeline(&self, name: &str) -> MonitoredPipeline {
        MonitoredPipeline::new(self.clone(), BatchLabel::pipeline(name))
    }

    /// A named transaction (`MULTI`/`EXEC`) in one span `{client}.transaction_{name}`. All its
    /// keys must hash to one slot (use a `{hash tag}`); otherwise it fails with a
    /// [`CrossSlotTransaction`](crate::CrossSlotTransaction) error before anything is sent.
    pub fn transaction(&self, name: &str) -> MonitoredPipeline {
        MonitoredPipeline::new(self.clone(), BatchLabel::transaction(name))
    }

    /// Runs one call, a command or a pipeline, as every call runs: it takes a permit, then a
    /// connection (one of its own when it blocks, else the shared one, kept in `cached` for the
    /// caller's next command), and runs `work` on it, all within the call's deadline and in
    /// `span`; names the client in its errors; and records its outcome where every reader finds
    /// it: the span, the Prometheus series and the observer, if any.
    ///
    /// Not an `async fn`, which would hold its arguments twice (as given, and moved into its
    /// body) in every call's future.
    #[allow(clippy::manual_async_fn)]
    pub(crate) fn call<'a, R: Replies, E: Default>(
        &'a self,
        call: Call<'a>,
        cached: &'a mut Option<SharedConnection>,
        span: Span,
        work: impl AsyncFnOnce(&mut ClusterConnection) -> (RedisResult<R>, E) + 'a,
    ) -> impl Future<Output = (RedisResult<R>, E)> + 'a {
        async move {
            // Fields read in place rather than moved out, so the future holds `call` once.
            let name = call.name;
            let series = match name {
                CommandName::Command(_) => self.client.series.command(name),
                CommandName::Label(_) => {
                    self.client.series.command(CommandName::Label(call.command))
                }
            };
            // Records the call however it ends, also when its caller drops it half-way. A call to a
            // named node has that node on its span already.
            let outcome = Outcome::start(
                self,
                name,
                call.cmd.filter(|_| call.node.is_none()),
                series,
                &span,
                Instant::now(),
            );
            let deadline = deadline_after(outcome.started, self.client.pool.call_timeout());
            let outcome_started = outcome.started;
            let run = async {
                let (_permit, waited) = match self.client.pool.permit(deadline).await {
                    Ok(permit) => permit,
                    Err(error) => return (Err(error), E::default()),
                };
                let connected = AtomicBool::new(false);
                let on_connection = async {
                    if call.blocking {
                        // Boxed: a blocking command is rare, and its connection would otherwise
                        // take room in every command's future.
                        return Box::pin(self.on_dedicated(&connected, work)).await;
                    }
                    let shared = match cached {
                        Some(shared) if !shared.is_broken() => shared,
                        cached => match self.client.pool.shared().await {
                            Ok(shared) => cached.insert(shared),
                            Err(error) => return (Err(error), E::default()),
                        },
                    };
                    connected.store(true, Ordering::Relaxed);
                    let outcome = work(&mut shared.conn).await;
                    shared.inspect(&outcome.0);
                    if ran_on_server(&outcome.0) {
                        self.client.pool.answered(outcome_started);
                    }
                    outcome
                };
                within(deadline, on_connection).await.unwrap_or_else(|_| {
                    let connected = connected.load(Ordering::Relaxed);
                    if connected && !call.blocking {
                        self.client.pool.unanswered(Instant::now());
                    }
                    let error = self.deadline_passed(name, call.cmd, call.node, waited, connected);
                    (Err(error), E::default())
                })
            };
            let (result, extra) = run.instrument(span).await;
            let result = result.map_err(|error| self.named(error, name, call.cmd, call.node));
            outcome.finish(&result);
            (result, extra)
        }
    }

    /// Runs `work` on a connection of its own, for a command that blocks; `connected` once it
    /// has one.
    async fn on_dedicated<R: Replies, E: Default>(
        &self,
        connected: &AtomicBool,
        work: impl AsyncFnOnce(&mut ClusterConnection) -> (RedisResult<R>, E),
    ) -> (RedisResult<R>, E) {
        let mut dedicated = match self.client.pool.dedicated().await {
            Ok(dedicated) => dedicated,
            Err(error) => return (Err(error), E::default()),
        };
        connected.store(true, Ordering::Relaxed);
        let outcome = work(&mut dedicated.conn).await;
        dedicated.finish(&outcome.0);
        outcome
    }

    /// Runs `cmd` (whose name's table row is `row`: [`command_of`]) as [`call`](Self::call) runs
    /// every call (addressed to `node`, when the caller named one), then offers it to the hot-key
    /// tracker if it ran.
    pub(crate) fn call_command<'a>(
        &'a self,
        cmd: &'a Cmd,
        row: Option<&'static CommandSpec>,
        node: Option<&'a str>,
        cached: &'a mut Option<SharedConnection>,
        span: Span,
        work: impl AsyncFnOnce(&mut ClusterConnection) -> (RedisResult<Value>, ()) + 'a,
    ) -> impl Future<Output = RedisResult<Value>> + 'a {
        let call = Call {
            name: CommandName::Command(command_name(cmd)),
            command: "",
            cmd: Some(cmd),
            blocking: blocks_as(cmd, row),
            node,
        };
        self.call(call, cached, span, work)
            .map(move |(result, ())| {
                if ran_for_tracker(&result) {
                    self.client.tracker.observe_as(cmd, row);
                }
                result
            })
    }

    /// The reply to `cmd` (named `name`), a cacheable read, when `cache` holds it, recorded as
    /// every call is (its span, series and observer, then the tracker), with no permit,
    /// connection or deadline: nothing waits. The span names no node, as none served it.
    fn answer_from_cache(
        &self,
        cache: &HotKeyCache,
        cmd: &Cmd,
        row: Option<&'static CommandSpec>,
        name: CommandName<'_>,
        span: &Span,
    ) -> Option<Value> {
        let started = Instant::now();
        let topology = self.client.pool.router().topologies();
        let reply = cache.cached(read_key(cmd), cmd, topology, started)?;
        let series = self.client.series.command(name);
        let outcome = Outcome::start(self, name, None, series, span, started);
        let reply = Ok(reply);
        outcome.finish(&reply);
        self.client.tracker.observe_as(cmd, row);
        reply.ok()
    }

    /// Sends `cmd` (its name's table row: `row`) to Redis as every command goes, in `span` (made
    /// here when `None`); `hot_read` when the cache did not answer it and its reply is to be
    /// cached.
    async fn send_command(
        &mut self,
        cmd: &Cmd,
        row: Option<&'static CommandSpec>,
        span: Option<Span>,
        hot_read: bool,
    ) -> RedisResult<Value> {
        let span = span.unwrap_or_else(|| {
            let name = CommandName::Command(command_name(cmd));
            self.span(name, name, None)
        });
        let cache = self.client.pool.cache().filter(|_| hot_read);
        let mut cached = self.shared.take();
        let work = async |conn: &mut ClusterConnection| {
            let result = match self.refusal_or_route(cmd, row) {
                Err(refusal) => Err(refusal),
                // Boxed, as every command's future would otherwise be as large as these
                // rarer paths' (kilobytes each), allocated and copied per command.
                Ok(Some(routing)) => Box::pin(conn.route_command(cmd.clone(), routing)).await,
                Ok(None) => match cache {
                    Some(cache) => {
                        Box::pin(cached_read(cache, self.client.pool.router(), conn, cmd)).await
                    }
                    None => conn.req_packed_command(cmd).await,
                },
            };
            (result, ())
        };
        let result = self
            .call_command(cmd, row, None, &mut cached, span, work)
            .await;
        self.shared = cached;
        result
    }

    /// `error` naming this client, the call and its first key, and the node when the call named
    /// one; a timeout names the node too.
    fn named(
        &self,
        error: RedisError,
        name: CommandName<'_>,
        cmd: Option<&Cmd>,
        node: Option<&str>,
    ) -> RedisError {
        // redis-rs's own response timeout fired.
        if error.is_timeout()
            && !names_client(&error)
            && let Some(after) = self.client.pool.options().response_timeout
        {
            return self.timed_out(name, cmd, node, after, Some(error), Duration::ZERO);
        }
        name_call_error(error, &self.client.name, &name, cmd, node)
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
        node: Option<&str>,
        waited: Duration,
        connected: bool,
    ) -> RedisError {
        let after = self.client.pool.call_timeout().unwrap_or_default();
        if !connected && waited.is_zero() {
            return ConnectTimeout {
                client: self.client.name.to_string(),
                after,
            }
            .into();
        }
        self.timed_out(name, cmd, node, after, None, waited)
    }

    fn timed_out(
        &self,
        name: CommandName<'_>,
        cmd: Option<&Cmd>,
        node: Option<&str>,
        after: Duration,
        source: Option<RedisError>,
        waited_for_permit: Duration,
    ) -> RedisError {
        CallTimeout {
            client: self.client.name.to_string(),
            command: name.to_string(),
            key: cmd.and_then(first_key_of).map(shown_key),
            node: node.map(str::to_owned).or_else(|| {
                cmd.and_then(slot_of)
                    .and_then(|slot| self.client.pool.router().primary_of(slot))
            }),
            after,
            waited_for_permit,
            source,
        }
        .into()
    }

    /// The call's span, named `{client}.{name}`, with OpenTelemetry's database conventions:
    /// `db.operation.batch.size` is `batch` when that is two or more, as the conventions count
    /// batches. Its parent is the current span when that belongs to the request (a handler's own
    /// instrumented function), else the request's span.
    pub(crate) fn span(
        &self,
        name: CommandName<'_>,
        operation: impl fmt::Display,
        batch: Option<usize>,
    ) -> Span {
        let trace = TraceName {
            client: &self.client.name,
            name,
        };
        let parent = self.parent_span();
        let span = tracing::info_span!(
            parent: &parent,
            "redis.command",
            otel.name = %trace,
            otel.kind = "client",
            otel.status_code = Empty,
            otel.status_description = Empty,
            { DB_SYSTEM_NAME } = "redis",
            { DB_OPERATION_NAME } = %operation,
            { DB_OPERATION_BATCH_SIZE } = Empty,
            { SERVER_ADDRESS } = Empty,
            { SERVER_PORT } = Empty,
            { ERROR_TYPE } = Empty,
            { DB_RESPONSE_STATUS_CODE } = Empty,
            baseplate.client = %self.client.name,
            db.redis.nodes = Empty,
        );
        if let Some(batch) = batch.filter(|&n| n >= 2) {
            span.record(DB_OPERATION_BATCH_SIZE, count(batch));
        }
        span
    }

    /// The current span when it is the request's span or one of its descendants, else the
    /// request's span: a command run from a handler's own span nests under it, while one run from
    /// a span unrelated to the request (another request's, a background task's) stays with its
    /// request. Ancestry is known only through a `tracing-subscriber` registry; under any other
    /// subscriber commands are children of the request's span.
    fn parent_span(&self) -> Span {
        // A request span no subscriber wants (or none at all) is the answer without a look at
        // the current span.
        let Some(request_id) = self.parent.id() else {
            return self.parent.clone();
        };
        let current = Span::current();
        let Some(current_id) = current.id() else {
            return self.parent.clone();
        };
        if current_id == request_id {
            return current;
        }
        let descends = current
            .with_subscriber(|(id, dispatch)| {
                let registry = dispatch.downcast_ref::<Registry>()?;
                let span = registry.span(id)?;
                Some(span.scope().any(|ancestor| ancestor.id() == request_id))
            })
            .flatten()
            .unwrap_or(false);
        if descends {
            current
        } else {
            self.parent.clone()
        }
    }
}

impl MonitoredClusterRedisConnection {
    /// The refusal of `cmd` when it would change the state of the node connection every caller
    /// shares (`SUBSCRIBE`, `MONITOR`, `CLIENT REPLY`...).
    pub(crate) fn shared_connection_refusal(&self, cmd: &Cmd) -> Option<redis::RedisError> {
        let (command, reason) = changes_shared_connection(cmd)?;
        Some(
            SharedConnectionCommand {
                client: self.client.name.to_string(),
                command,
                reason,
            }
            .into(),
        )
    }

    /// Why `cmd` must not be sent at all: a plain `SCAN` (it would walk one random node), or a
    /// command that would change the shared connection.
    fn refusal(&self, cmd: &Cmd) -> Option<redis::RedisError> {
        if command_name(cmd).eq_ignore_ascii_case(b"SCAN") {
            return Some(
                PlainScan {
                    client: self.client.name.to_string(),
                }
                .into(),
            );
        }
        self.shared_connection_refusal(cmd)
    }

    /// Why `pipeline` must not be sent: the [`refusal`](Self::refusal) of one of its commands.
    pub(crate) fn pipeline_refusal(&self, pipeline: &Pipeline) -> Option<redis::RedisError> {
        pipeline.cmd_iter().find_map(|cmd| self.refusal(cmd))
    }

    /// Why `cmd` must not be sent as redis-rs would send it (a plain `SCAN`, a cross-slot script),
    /// or the route it must take instead (a keyless script goes to a primary); `Ok(None)` when
    /// redis-rs's own routing is right.
    fn refusal_or_route(
        &self,
        cmd: &Cmd,
        row: Option<&'static CommandSpec>,
    ) -> RedisResult<Option<RoutingInfo>> {
        if let Some(refusal) = self.refusal(cmd) {
            return Err(refusal);
        }
        if let Some(route) = primary_route(cmd) {
            return Ok(Some(route));
        }
        match script_route(cmd, row) {
            ScriptRoute::NotAScript | ScriptRoute::OneSlot => Ok(None),
            ScriptRoute::Keyless => Ok(Some(RoutingInfo::SingleNode(
                SingleNodeRoutingInfo::RandomPrimary,
            ))),
            ScriptRoute::CrossSlot {
                first,
                first_slot,
                other,
                other_slot,
            } => Err(CrossSlotScript {
                client: self.client.name.to_string(),
                command: CommandName::Command(command_name(cmd)).to_string(),
                first: String::from_utf8_lossy(first).into_owned(),
                first_slot,
                other: String::from_utf8_lossy(other).into_owned(),
                other_slot,
            }
            .into()),
        }
    }
}

/// The reply to `cmd`, a read of a hot key: from the cache, from a read of it already in flight,
/// or from the key's primary, which then tracks the key, and cached; the usual way, untracked,
/// while the key's reply is too large to cache (see `cache`). A reply the primary does
/// not give (the slot moved or is moving: `MOVED`, `ASK`) comes the usual way, following
/// redirections, and is not cached. (The read pipeline is one redis-rs sends again whole when redirected, see
/// `redirects`: it changes nothing.)
async fn cached_read(
    cache: &HotKeyCache,
    router: &Router,
    conn: &mut ClusterConnection,
    cmd: &Cmd,
) -> RedisResult<Value> {
    let key = read_key(cmd);
    let fill = match cache.lookup(key, cmd, router.topologies()) {
        Lookup::Hit(cached) => return Ok(cached),
        Lookup::Wait(mut reply) => {
            // The read waited for was dropped unanswered (its caller gave up): read alone.
            let waited = reply
                .wait_for(Option::is_some)
                .await
                .ok()
                .and_then(|reply| reply.clone());
            return match waited {
                Some(Value::ServerError(error)) => Err(error.into()),
                Some(reply) => Ok(reply),
                None => conn.req_packed_command(cmd).await,
            };
        }
        Lookup::Miss(fill) => fill,
        Lookup::TooLarge => return conn.req_packed_command(cmd).await,
    };
    let (pipe, route) = tracked_read(cmd, key);
    let reply = match conn.route_pipeline(pipe, 1, 1, route).await {
        Ok(mut replies) => replies.pop(),
        Err(_) => {
            cache.drop_all();
            None
        }
    };
    match reply {
        Some(Value::ServerError(error))
            if error.kind().is_some_and(|kind| {
                matches!(
                    kind,
                    redis::ServerErrorKind::Moved | redis::ServerErrorKind::Ask
                )
            }) =>
        {
            conn.req_packed_command(cmd).await
        }
        Some(Value::ServerError(error)) => Err(error.into()),
        Some(value) => {
            fill.finish(&value, router.topologies());
            Ok(value)
        }
        None => conn.req_packed_command(cmd).await,
    }
}

/// The deadline `after` from `started`; none without `after`, or when `after` reaches past what
/// the clock can count (`Duration::MAX` for "no limit").
pub(crate) fn deadline_after(started: Instant, after: Option<Duration>) -> Option<Instant> {
    after.and_then(|after| started.checked_add(after))
}

/// The earlier of two deadlines, either of which may be none.
pub(crate) fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Runs `work` until `deadline`, if there is one. A plain function returning either future, so
/// that `work` is held once (an `async fn` would keep its argument beside the timeout it moved
/// into).
pub(crate) fn within<F: Future>(
    deadline: Option<Instant>,
    work: F,
) -> impl Future<Output = Result<F::Output, tokio::time::error::Elapsed>> {
    match deadline {
        Some(deadline) => Either::Left(tokio::time::timeout_at(deadline.into(), work)),
        None => Either::Right(work.map(Ok)),
    }
}

impl ConnectionLike for MonitoredClusterRedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        // The name's table row, looked up once for the cache, the routing and the tracker.
        let row = command_of(cmd);
        if self.client.pool.cache().is_none() || !cacheable(row) {
            return Box::pin(self.send_command(cmd, row, None, false));
        }
        // A read the cache may answer has a future of its own, a small one: a hit allocates (and
        // frees, maybe on another thread) 72 bytes rather than a call to Redis's 888; a miss then
        // allocates both. A cached reply answers whether or not its key is still among the hot
        // ones (the server invalidates it all the same); a miss is cached when the key is.
        Box::pin(async move {
            let name = CommandName::Command(command_name(cmd));
            let span = self.span(name, name, None);
            if let Some(cache) = self.client.pool.cache()
                && let Some(reply) = self.answer_from_cache(cache, cmd, row, name, &span)
            {
                return Ok(reply);
            }
            let hot_read = self.client.tracker.is_hot_read_as(cmd, row);
            Box::pin(self.send_command(cmd, row, Some(span), hot_read)).await
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(
            async move { pipeline::run(self, pipeline, offset, count, &BatchLabel::UNNAMED).await },
        )
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
    /// The command, when the call is one: its node goes on the span.
    cmd: Option<&'a Cmd>,
    series: Arc<CommandSeries>,
    /// The call counts as active until this drops, with the outcome.
    _active: ActiveGuard,
    started: Instant,
    span: Span,
    finished: bool,
}

impl<'a> Outcome<'a> {
    /// A call that started at `started`, counted active until its outcome is recorded.
    fn start(
        conn: &'a MonitoredClusterRedisConnection,
        name: CommandName<'a>,
        cmd: Option<&'a Cmd>,
        series: Arc<CommandSeries>,
        span: &Span,
        started: Instant,
    ) -> Self {
        Self {
            conn,
            name,
            cmd,
            _active: series.start(),
            series,
            started,
            span: span.clone(),
            finished: false,
        }
    }

    fn finish<R: Replies>(mut self, result: &RedisResult<R>) {
        if let Some(cmd) = self.cmd
            && !self.span.is_disabled()
            && let Some(CmdRoute { slot, read_only }) = route_of(cmd)
        {
            // After the call, so a fresh pool's first command finds the topology known.
            let node = self.conn.client.pool.router().node_for(slot, read_only);
            record_node(&self.span, node.as_ref());
        }
        let success = record(&self.span, result);
        self.record(success);
        self.finished = true;
    }

    fn record(&self, success: bool) {
        let elapsed = self.started.elapsed();
        self.series.finish(elapsed, success);
        if let Some(observer) = &self.conn.observer {
            observer.command_finished(&self.conn.client.name, &self.name, elapsed, success);
        }
    }
}

impl Drop for Outcome<'_> {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        record_error(
            &self.span,
            "cancelled",
            None,
            &"the caller gave up on the call",
        );
        self.record(false);
    }
}

/// What a call runs, for its metrics, its errors and the connection it needs.
pub(crate) struct Call<'a> {
    /// Its name after the client's: `GET`, `pipeline_bar`.
    pub(crate) name: CommandName<'a>,
    /// A pipeline's `redis_command` label (`pipeline`, `transaction`); unused for a command,
    /// whose name is its label.
    pub(crate) command: &'a str,
    /// The command, when the call is one, to name its node when it times out.
    pub(crate) cmd: Option<&'a Cmd>,
    /// Whether it blocks, and so needs a connection of its own.
    pub(crate) blocking: bool,
    /// The node (`host:port`) the call addresses, when the caller named one: its errors name it.
    pub(crate) node: Option<&'a str>,
}

/// Whether the command reached a server and was executed (a reply, even an error reply).
pub(crate) fn ran_on_server<T>(result: &RedisResult<T>) -> bool {
    match result {
        Ok(_) => true,
        Err(error) => matches!(error.kind(), ErrorKind::Server(_)),
    }
}

/// Whether a command ran, as the hot-key tracker counts it: it reached a server and was
/// executed, and was not a script the node did not know (`NOSCRIPT`: nothing ran, and
/// `redis::Script` sends it again once loaded).
pub(crate) fn ran_for_tracker(result: &RedisResult<Value>) -> bool {
    let noscript = redis::ServerErrorKind::NoScript;
    match result {
        Ok(Value::ServerError(error)) => error.kind() != Some(noscript),
        Err(error) => error.kind() != ErrorKind::Server(noscript) && ran_on_server(result),
        Ok(_) => true,
    }
}

/// Records the outcome on the span and says whether it succeeded: on success the status stays
/// unset, as OpenTelemetry's conventions ask of client spans; on failure it is an error described
/// by the error's message, with `error.type` (the error reply's prefix, `WRONGTYPE`, or the
/// client's error: `CallTimeout`, `Io`...) and, for error replies, `db.response.status_code`.
/// redis-rs hands a command's error reply back as a value and turns it into an error only when
/// converting it for the caller, so an error reply anywhere in the replies (a pipeline's, or
/// inside a transaction's `EXEC` reply) is a failure too.
fn record<R: Replies>(span: &Span, result: &RedisResult<R>) -> bool {
    let error = match result {
        Ok(replies) => match replies.first_error() {
            None => return true,
            Some(error) => RedisError::from(error.clone()),
        },
        Err(error) => error.clone(),
    };
    if !span.is_disabled() {
        let code = error.code();
        record_error(span, &error_type(&error), code, &error);
    }
    false
}

/// Marks the span failed.
fn record_error(span: &Span, kind: &str, code: Option<&str>, description: &dyn fmt::Display) {
    // The code first: tracing-opentelemetry reads `otel.status_code = ERROR` as an error with no
    // description, and the description then as an error with it.
    span.record("otel.status_code", "ERROR");
    span.record(
        "otel.status_description",
        tracing::field::display(description),
    );
    span.record(ERROR_TYPE, kind);
    if let Some(code) = code {
        span.record(DB_RESPONSE_STATUS_CODE, code);
    }
}

/// A count as a span records it: OpenTelemetry's attributes are signed, and tracing-opentelemetry
/// turns an unsigned field into a string.
pub(crate) fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// `server.address` and `server.port` of the node a call went to, when it is known.
pub(crate) fn record_node(span: &Span, node: Option<&NodeAddress>) {
    if let Some(node) = node {
        span.record(SERVER_ADDRESS, node.host());
        span.record(SERVER_PORT, i64::from(node.port()));
    }
}

/// One reply or a pipeline's replies.
pub(crate) trait Replies {
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
pub(crate) fn command_name(cmd: &Cmd) -> &[u8] {
    match cmd.args_iter().next() {
        Some(redis::Arg::Simple(name)) => name,
        _ => b"",
    }
}

/// A pipeline's or transaction's `db.operation.name`, formatted only when a subscriber wants it,
/// as OpenTelemetry's conventions name batches: `BATCH SET` when all its commands are `SET`,
/// else Redis's term, `PIPELINE` or `MULTI`; a single command is named as itself (the
/// conventions count two commands or more as a batch).
pub(crate) struct BatchOperation<'a> {
    pipeline: &'a Pipeline,
    /// `PIPELINE` or `MULTI`.
    term: &'static str,
}

impl<'a> BatchOperation<'a> {
    /// The operation of `pipeline`, a transaction (`MULTI`) or not (`PIPELINE`).
    pub(crate) fn of(pipeline: &'a Pipeline) -> Self {
        let term = if pipeline.is_transaction() {
            "MULTI"
        } else {
            "PIPELINE"
        };
        Self { pipeline, term }
    }
}

impl fmt::Display for BatchOperation<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names = self.pipeline.cmd_iter().map(command_name);
        let Some(first) = names.next() else {
            return f.write_str(self.term);
        };
        let first_name = CommandName::Command(first);
        match self.pipeline.len() {
            1 => write!(f, "{first_name}"),
            _ if names.all(|name| name.eq_ignore_ascii_case(first)) => {
                write!(f, "BATCH {first_name}")
            }
            _ => f.write_str(self.term),
        }
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
    fn batches_are_named_as_opentelemetrys_conventions_ask() {
        let name = |pipeline: &Pipeline, term| BatchOperation { pipeline, term }.to_string();
        let mut sets = redis::pipe();
        sets.set("a", 1).cmd("set").arg("b").arg(2);
        assert_eq!(name(&sets, "PIPELINE"), "BATCH SET");
        let mut mixed = redis::pipe();
        mixed.set("a", 1).get("a");
        assert_eq!(name(&mixed, "PIPELINE"), "PIPELINE");
        assert_eq!(name(&mixed, "MULTI"), "MULTI");
        let mut one = redis::pipe();
        one.get("a");
        assert_eq!(name(&one, "MULTI"), "GET");
        assert_eq!(name(&redis::pipe(), "PIPELINE"), "PIPELINE");
    }

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

    #[test]
    fn a_commands_future_stays_small() {
        let config: baseplate_config::RawConfig = [("foo.url", "redis://127.0.0.1:7000")]
            .into_iter()
            .collect();
        let mut foo = crate::ClusterRedisClient::new()
            .parse("foo", &config)
            .unwrap()
            .make_object_for_context("foo", &Span::none());
        let get = redis::cmd("GET").arg("k").clone();
        // Allocated, and copied into place, for every command: 5,544 bytes with a script's route
        // and a hot-key read inline, 1,672 with them boxed, 1,272 once the deadline's wrapper
        // holds the call once, 888 with a blocking command's connection boxed and the call's
        // arguments held once (rustc 1.95), 944 with the command's table row carried along.
        // Allocators keep blocks of up to about a kilobyte in per-thread caches (glibc: 1,032
        // bytes); a larger one is served and freed under a lock the runtime's threads contend
        // for.
        let future = foo.req_packed_command(&get);
        let size = std::mem::size_of_val(&*future);
        assert!(size <= 1000, "{size} bytes");
    }
}
