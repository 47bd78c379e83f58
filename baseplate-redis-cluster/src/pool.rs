//! The pool: a FIFO semaphore of `max_connections` permits bounds the commands in flight, and
//! two mobc pools open, lend and close the redis-rs cluster connections behind them.
//!
//! A redis-rs cluster connection multiplexes every command over one socket per node, so checking
//! out a connection per command would only add sockets and waiting. Instead each command takes a
//! permit (waiting in FIFO order, for at most the configured wait) and a cheap clone of one shared
//! connection. That connection is a single long-lived mobc checkout: mobc opens it (within the
//! connect timeout), and is asked for another only when the pool finds it broken (a dropped
//! connection, or no node left), which it hands back for mobc to close, or silent (no call had a
//! reply for a whole timeout: see `unanswered`), which it hands back once another opened. mobc's
//! health check and limits therefore only act on that replacement: a PING when the connection it
//! lends sat idle over 5 s, at most 4 open at once while a broken one is still closing, 1 kept
//! idle.
//!
//! Blocking commands (`BLPOP`, `XREAD ... BLOCK`, ...) are where mobc does a pool's usual work: the
//! second mobc pool lends each one a cluster connection of its own for as long as it waits (up to
//! `max_connections` of them, idle ones kept a minute and health-checked after 5 s idle), so it
//! never holds up the callers sharing a node's socket.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use prometheus_client::metrics::gauge::Gauge;
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{RedisError, RedisResult};
use tokio::sync::{Semaphore, SemaphorePermit};

use crate::cache::{CacheStats, HotKeyCache, HotKeyCacheOptions};
use crate::config::ClusterOptions;
use crate::connection::{deadline_after, earliest, within};
use crate::error::{CacheUnsupported, ClusterConfigError, ConnectTimeout, PoolTimeout};
use crate::redirects::ClusterConnection;
use crate::routing::{Router, RouterFactory};

/// Bound on opening a connection when no connect timeout is configured, so a black-holed seed
/// cannot hang a caller forever (redis-rs can wait there indefinitely).
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A snapshot of the pool: what `runtime.pool.size` and `runtime.pool.in_use` report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolStats {
    /// `max_connections`: how many commands may be in flight at once.
    pub size: usize,
    /// Commands in flight now.
    pub in_use: usize,
    /// Connections open to the cluster's nodes now, as baseplate.py counts its sockets: each
    /// cluster connection (the shared one, and those lent to blocking commands, in use or kept
    /// idle for the next ones) keeps one to every node the topology listed when it connected.
    pub open_connections: usize,
    /// Callers waiting for a permit now.
    pub waiting: usize,
    /// Blocking commands running now, each on a connection of its own (counted in
    /// `open_connections` too).
    pub blocking: usize,
    /// Pub/sub subscribers open now, each on a cluster connection of its own (counted in
    /// `open_connections` too), none taking one of the `size` permits.
    pub subscribers: usize,
}

/// A pool of commands in flight over shared, multiplexed redis-rs cluster connections.
///
/// Cheap to clone; clones share the pool.
#[derive(Clone)]
pub struct ClusterPool {
    inner: Arc<PoolInner>,
}

struct PoolInner {
    name: String,
    options: ClusterOptions,
    client: ClusterClient,
    router: Arc<Router>,
    connections: mobc::Pool<ClusterManager>,
    /// Connections lent to one blocking command at a time.
    dedicated: mobc::Pool<ClusterManager>,
    blocking: AtomicUsize,
    subscribers: AtomicUsize,
    open: Arc<AtomicUsize>,
    permits: Semaphore,
    waiting: AtomicUsize,
    /// When a call on the shared connection last had a reply, in milliseconds from `epoch`.
    answered: AtomicU64,
    epoch: Instant,
    /// Whether a connection is being opened to take over from a silent one.
    taking_over: AtomicBool,
    current: Mutex<Option<Current>>,
    refresh: tokio::sync::Mutex<()>,
    /// The hot-key cache, when `cache_hot_keys` is on.
    cache: Option<HotKeyCache>,
}

/// The connection commands use now, checked out of mobc for as long as it stays healthy.
struct Current {
    checkout: mobc::Connection<ClusterManager>,
    shared: SharedConnection,
}

impl std::fmt::Debug for ClusterPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterPool")
            .field("name", &self.inner.name)
            .field("seeds", &self.inner.options.seeds)
            .field("stats", &self.stats())
            .finish()
    }
}

impl ClusterPool {
    /// A pool for the client `name` with `options`. Nothing connects until the first command.
    ///
    /// # Errors
    /// When redis-rs rejects the seed list (the message names `{name}.url`, never the URL), or
    /// `max_connections` is more than tokio's semaphore can count.
    pub fn new(
        name: impl Into<String>,
        options: ClusterOptions,
    ) -> Result<Self, ClusterConfigError> {
        let name = name.into();
        // The config refuses these; options set in code must not reach mobc, which panics on a
        // zero wait, or a pool no call can ever enter.
        let zero = |key: &str| ClusterConfigError::Invalid {
            key: format!("{name}.{key}"),
            reason: "must be above zero".to_owned(),
        };
        if options.max_connections == 0 {
            return Err(zero("max_connections"));
        }
        if options.connect_timeout.is_some_and(|after| after.is_zero()) {
            return Err(zero("socket_connect_timeout"));
        }
        // tokio's semaphore cannot hold more permits than this and panics when asked to.
        if options.max_connections > Semaphore::MAX_PERMITS {
            return Err(ClusterConfigError::Invalid {
                key: format!("{name}.max_connections"),
                reason: format!(
                    "{} is more than the pool can count (at most {})",
                    options.max_connections,
                    Semaphore::MAX_PERMITS
                ),
            });
        }
        let router = Router::new(options.read_from_replicas);
        let mut builder = client_builder(&name, &options)?
            .read_routing_strategy(RouterFactory(Arc::clone(&router)));
        let mut cache = None;
        if let Some(options) = options.cache {
            // Server-assisted invalidation needs RESP3's push messages, and every connection of
            // the client tracking the keys it reads after `CLIENT CACHING YES`.
            let (store, pushes) = HotKeyCache::new(options);
            cache = Some(store);
            builder = builder
                .use_protocol(redis::ProtocolVersion::RESP3)
                .cache_config(HotKeyCacheOptions::redis_config())
                .push_sender(pushes);
        }
        let client = build_client(&name, builder)?;
        let open = Arc::new(AtomicUsize::new(0));
        let manager = ClusterManager {
            client: client.clone(),
            name: name.clone(),
            connect_timeout: options.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT),
            open: Arc::clone(&open),
            open_gauge: options.prometheus.pool(&name, options.max_connections),
            router: Arc::clone(&router),
            failing: Arc::new(AtomicBool::new(false)),
            caching: options.cache.is_some(),
        };
        let max_dedicated = u64::try_from(options.max_connections).unwrap_or(u64::MAX);
        let dedicated = mobc::Pool::builder()
            // Never more than the commands that may be in flight. As many kept for the next
            // ones: blocking callers loop, and opening a cluster connection contacts every node
            // (slowly, when one of them is in trouble).
            .max_open(max_dedicated)
            .max_idle(max_dedicated)
            // Closed after a minute unused, so a burst of blocking callers does not keep its
            // sockets for good.
            .max_idle_lifetime(Some(Duration::from_secs(60)))
            .get_timeout(Some(manager.connect_timeout))
            // A PING before lending one only when it sat idle for a while, not per command.
            .test_on_check_out(true)
            .health_check_interval(Some(Duration::from_secs(5)))
            .build(manager.clone());
        // Lends the one shared connection, and its replacement when it broke (see the module doc).
        let connections = mobc::Pool::builder()
            .max_open(4)
            .max_idle(1)
            .test_on_check_out(true)
            .health_check_interval(Some(Duration::from_secs(5)))
            .build(manager);
        let pool = Self {
            inner: Arc::new(PoolInner {
                permits: Semaphore::new(options.max_connections),
                name,
                options,
                client,
                router,
                connections,
                dedicated,
                blocking: AtomicUsize::new(0),
                subscribers: AtomicUsize::new(0),
                open,
                waiting: AtomicUsize::new(0),
                answered: AtomicU64::new(0),
                epoch: Instant::now(),
                taking_over: AtomicBool::new(false),
                current: Mutex::new(None),
                refresh: tokio::sync::Mutex::new(()),
                cache,
            }),
        };
        if pool.inner.cache.is_some() {
            let weak = Arc::downgrade(&pool.inner);
            let read = move || {
                ClusterPool::cache_stats(&ClusterPool {
                    inner: weak.upgrade()?,
                })
            };
            let options = &pool.inner.options;
            options.prometheus.cache(&pool.inner.name, Box::new(read));
        }
        Ok(pool)
    }

    /// The client's name (its config prefix without the trailing dot).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The options the pool was built with.
    pub fn options(&self) -> &ClusterOptions {
        &self.inner.options
    }

    /// Size, commands in flight, open connections and waiters, read without blocking.
    pub fn stats(&self) -> PoolStats {
        let size = self.inner.options.max_connections;
        PoolStats {
            size,
            in_use: size.saturating_sub(self.inner.permits.available_permits()),
            open_connections: self.inner.open.load(Ordering::Relaxed),
            waiting: self.inner.waiting.load(Ordering::Relaxed),
            blocking: self.inner.blocking.load(Ordering::Relaxed),
            subscribers: self.inner.subscribers.load(Ordering::Relaxed),
        }
    }

    /// What the hot-key cache has done since the pool was made; `None` when `cache_hot_keys` is
    /// off.
    pub fn cache_stats(&self) -> Option<CacheStats> {
        self.cache().map(HotKeyCache::stats)
    }

    /// The hot-key cache, when `cache_hot_keys` is on.
    pub(crate) fn cache(&self) -> Option<&HotKeyCache> {
        self.inner.cache.as_ref()
    }

    /// A raw connection outside the pool's accounting, for the hot-key tracker: its writes must
    /// neither take a caller's permit nor be observed as the caller's commands.
    pub(crate) fn client(&self) -> &ClusterClient {
        &self.inner.client
    }

    /// Counts a subscriber just connected, and its sockets, for as long as the guard lives.
    pub(crate) fn subscriber_opened(&self) -> SubscriberGuard {
        let sockets = self.inner.router.node_count().unwrap_or(1).max(1);
        self.inner.subscribers.fetch_add(1, Ordering::Relaxed);
        self.inner.open.fetch_add(sockets, Ordering::Relaxed);
        SubscriberGuard {
            pool: self.clone(),
            sockets,
        }
    }

    /// The bound on opening a connection.
    pub(crate) fn connect_timeout(&self) -> Duration {
        self.inner
            .options
            .connect_timeout
            .unwrap_or(DEFAULT_CONNECT_TIMEOUT)
    }

    /// A call's deadline, from the moment it is made: the response timeout, or the wait for a
    /// permit when that is longer (`socket_timeout` may be shorter than `timeout`); none when no
    /// timeout is configured.
    pub(crate) fn call_timeout(&self) -> Option<Duration> {
        let options = &self.inner.options;
        options
            .response_timeout
            .map(|response| response.max(options.pool_wait))
    }

    pub(crate) fn router(&self) -> &Router {
        &self.inner.router
    }

    /// Waits (FIFO, at most the configured wait, and never past the call's `deadline`) for one
    /// of the `max_connections` permits; also says how long it waited (zero when one was free).
    pub(crate) async fn permit(
        &self,
        deadline: Option<Instant>,
    ) -> RedisResult<(SemaphorePermit<'_>, Duration)> {
        if let Ok(permit) = self.inner.permits.try_acquire() {
            return Ok((permit, Duration::ZERO));
        }
        let started = Instant::now();
        // Boxed: every command's future would otherwise carry the waiting machinery's size.
        let permit = Box::pin(self.wait_for_permit(started, deadline)).await?;
        Ok((permit, started.elapsed()))
    }

    async fn wait_for_permit(
        &self,
        started: Instant,
        deadline: Option<Instant>,
    ) -> RedisResult<SemaphorePermit<'_>> {
        let until = earliest(
            deadline_after(started, Some(self.inner.options.pool_wait)),
            deadline,
        );
        let acquired = {
            // Counted while waiting, even when the caller gives up (drops the call) meanwhile.
            let _waiting = Waiting::start(&self.inner.waiting);
            within(until, self.inner.permits.acquire()).await
        };
        match acquired {
            Ok(Ok(permit)) => Ok(permit),
            // The semaphore is never closed; treat it like running out of time all the same.
            Ok(Err(_)) | Err(_) => Err(PoolTimeout {
                client: self.inner.name.clone(),
                max_connections: self.inner.options.max_connections,
                waited: started.elapsed(),
            }
            .into()),
        }
    }

    /// The connection commands share now, opened (through mobc) when there is none or it broke.
    pub(crate) async fn shared(&self) -> RedisResult<SharedConnection> {
        if let Some(found) = self.healthy_current() {
            return Ok(found);
        }
        // Boxed: every command's future would otherwise carry mobc's checkout machinery.
        Box::pin(self.replace_shared()).await
    }

    async fn replace_shared(&self) -> RedisResult<SharedConnection> {
        // One caller replaces a missing or broken connection; the others wait and share it.
        let _refreshing = self.inner.refresh.lock().await;
        if let Some(found) = self.healthy_current() {
            return Ok(found);
        }
        // Hand a broken connection back first, so mobc discards it and counts it closed.
        drop(self.take_current());
        let checkout = self
            .inner
            .connections
            .get()
            .await
            .map_err(|e| self.mobc_error(e))?;
        Ok(self.install(checkout))
    }

    /// Makes `checkout` the connection commands share, retiring the one it replaces (mobc
    /// discards it once the calls still on it are done).
    fn install(&self, checkout: mobc::Connection<ClusterManager>) -> SharedConnection {
        let shared = SharedConnection {
            conn: checkout.conn.clone(),
            broken: Arc::clone(&checkout.broken),
        };
        // A new connection has a whole timeout to answer before it counts as silent.
        self.answered(Instant::now());
        let replaced = self
            .inner
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .replace(Current {
                checkout,
                shared: shared.clone(),
            });
        if let Some(replaced) = replaced {
            replaced.shared.broken.store(true, Ordering::Relaxed);
        }
        shared
    }

    /// Opens a connection to take over from the shared one, which has gone silent, and keeps
    /// the silent one when none can be opened (its seeds may be down, while the silent one
    /// knows the whole topology and may yet recover).
    async fn take_over_from_silent(&self, silent_ms: u64) {
        let _refreshing = self.inner.refresh.lock().await;
        match self.inner.connections.get().await {
            Ok(checkout) => {
                self.install(checkout);
                tracing::warn!(
                    client = %self.inner.name,
                    silent_ms,
                    "no call had a reply for a whole timeout: commands moved to a new cluster connection"
                );
            }
            Err(error) => {
                let error = self.mobc_error(error);
                tracing::warn!(
                    client = %self.inner.name,
                    silent_ms,
                    %error,
                    "no call had a reply for a whole timeout, and no new cluster connection could be opened"
                );
            }
        }
    }

    /// A connection of its own for one blocking command, from the dedicated pool (opened within
    /// the connect timeout when none is idle).
    pub(crate) async fn dedicated(&self) -> RedisResult<DedicatedConnection> {
        // Boxed: every command's future would otherwise carry mobc's checkout machinery.
        Box::pin(self.check_out_dedicated()).await
    }

    async fn check_out_dedicated(&self) -> RedisResult<DedicatedConnection> {
        let checkout = self
            .inner
            .dedicated
            .get()
            .await
            .map_err(|e| self.mobc_error(e))?;
        self.inner.blocking.fetch_add(1, Ordering::Relaxed);
        Ok(DedicatedConnection {
            conn: checkout.conn.clone(),
            checkout,
            pool: self.clone(),
            finished: false,
        })
    }

    /// Notes that a call made at `started` on the shared connection had a reply (an error reply
    /// too): the connection works.
    pub(crate) fn answered(&self, started: Instant) {
        let at = self.millis(started);
        // Read first: the store happens at most once a millisecond, not once a call.
        if self.inner.answered.load(Ordering::Relaxed) < at {
            self.inner.answered.store(at, Ordering::Relaxed);
        }
    }

    /// A call on the shared connection had no reply by its deadline. When no call has had one
    /// for a whole call timeout either, a new connection, which learns the cluster's topology
    /// afresh, is opened in the background to take over: a redis-rs cluster connection can stop
    /// answering altogether (seen after a primary was killed and its replica promoted, every
    /// call to every node timing out for as long as the connection lived), while a node that
    /// alone hangs leaves the other nodes' calls answered and the connection kept.
    pub(crate) fn unanswered(&self, now: Instant) {
        let Some(timeout) = self.call_timeout() else {
            return;
        };
        let silent = self
            .millis(now)
            .saturating_sub(self.inner.answered.load(Ordering::Relaxed));
        if u128::from(silent) < timeout.as_millis() {
            return;
        }
        // One attempt at a time; the next silent timeout after a failed one tries again.
        if self.inner.taking_over.swap(true, Ordering::Relaxed) {
            return;
        }
        let pool = self.clone();
        tokio::spawn(async move {
            pool.take_over_from_silent(silent).await;
            pool.inner.taking_over.store(false, Ordering::Relaxed);
        });
    }

    /// `at` in milliseconds from the pool's creation.
    fn millis(&self, at: Instant) -> u64 {
        let since = at.saturating_duration_since(self.inner.epoch).as_millis();
        u64::try_from(since).unwrap_or(u64::MAX)
    }

    fn healthy_current(&self) -> Option<SharedConnection> {
        let current = self
            .inner
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let shared = &current.as_ref()?.shared;
        (!shared.is_broken()).then(|| shared.clone())
    }

    fn take_current(&self) -> Option<mobc::Connection<ClusterManager>> {
        let mut current = self
            .inner
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        current.take().map(|c| c.checkout)
    }

    fn mobc_error(&self, error: mobc::Error<RedisError>) -> RedisError {
        match error {
            mobc::Error::Inner(e) => e,
            mobc::Error::Timeout => ConnectTimeout {
                client: self.inner.name.clone(),
                after: self.connect_timeout(),
            }
            .into(),
            other => RedisError::from((
                redis::ErrorKind::Client,
                "connection pool failure",
                other.to_string(),
            )),
        }
    }
}

#[cfg_attr(not(feature = "tls"), allow(unused_variables))]
/// A cluster client builder with the client's seeds, TLS and timeouts: what every connection of
/// the client, pooled or a subscriber's, is built from.
pub(crate) fn client_builder(
    name: &str,
    options: &ClusterOptions,
) -> Result<ClusterClientBuilder, ClusterConfigError> {
    let mut builder = ClusterClientBuilder::new(options.seeds.iter().map(|s| s.expose()));
    if let Some(timeout) = options.connect_timeout {
        builder = builder.connection_timeout(timeout);
    }
    #[cfg(feature = "tls")]
    if let Some(tls) = &options.tls {
        builder = crate::tls::configure(builder, tls, name)?;
    }
    if let Some(timeout) = options.response_timeout {
        // Bound each attempt and the whole request, retries and redirections included.
        builder = builder
            .response_timeout(timeout)
            .overall_response_timeout(Some(timeout));
    }
    Ok(builder)
}

/// The client `builder` describes, or an error naming `{name}.url` (never the URL).
pub(crate) fn build_client(
    name: &str,
    builder: ClusterClientBuilder,
) -> Result<ClusterClient, ClusterConfigError> {
    builder.build().map_err(|e| ClusterConfigError::Invalid {
        key: format!("{name}.url"),
        reason: format!("redis-rs rejected the seed list ({:?})", e.kind()),
    })
}

/// A clone of the shared cluster connection (cheap: a channel sender) and the flag that retires it.
#[derive(Clone)]
pub(crate) struct SharedConnection {
    pub(crate) conn: ClusterConnection,
    broken: Arc<AtomicBool>,
}

impl SharedConnection {
    pub(crate) fn is_broken(&self) -> bool {
        self.broken.load(Ordering::Relaxed)
    }

    /// Marks the connection for replacement when `result` shows it can no longer work.
    pub(crate) fn inspect<T>(&self, result: &RedisResult<T>) {
        if let Err(error) = result
            && retires_connection(error)
        {
            self.broken.store(true, Ordering::Relaxed);
        }
    }
}

/// Whether `error` shows that the cluster connection it came from can no longer work, so that it
/// must be replaced by a new one: its socket dropped, or redis-rs has no connection to a node
/// left. The latter follows every node going away at once (a whole cluster restarted): redis-rs's
/// own reconnection from the seeds does not always recover from it, and the connection then fails
/// every command at once with "No connections found" for as long as it lives, the cluster long
/// back.
pub(crate) fn retires_connection(error: &RedisError) -> bool {
    error.is_connection_dropped() || error.kind() == redis::ErrorKind::ClusterConnectionNotFound
}

/// Counts a subscriber in [`PoolStats::subscribers`] and its sockets in
/// [`PoolStats::open_connections`] for as long as it lives.
pub(crate) struct SubscriberGuard {
    pool: ClusterPool,
    sockets: usize,
}

impl Drop for SubscriberGuard {
    fn drop(&mut self) {
        let inner = &self.pool.inner;
        inner.subscribers.fetch_sub(1, Ordering::Relaxed);
        inner.open.fetch_sub(self.sockets, Ordering::Relaxed);
    }
}

/// Counts a caller in [`PoolStats::waiting`] for as long as it lives.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn start(waiting: &'a AtomicUsize) -> Self {
        waiting.fetch_add(1, Ordering::Relaxed);
        Self(waiting)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A cluster connection lent to one blocking command. Given back when dropped; a command that did
/// not finish (its caller gave up, its deadline passed) may still hold the connection's socket,
/// so the connection is then discarded rather than lent again.
pub(crate) struct DedicatedConnection {
    pub(crate) conn: ClusterConnection,
    checkout: mobc::Connection<ClusterManager>,
    pool: ClusterPool,
    finished: bool,
}

impl DedicatedConnection {
    /// The command ran to its end with `result`: the connection may be lent again unless the
    /// result shows it broken.
    pub(crate) fn finish<T>(&mut self, result: &RedisResult<T>) {
        self.finished =
            !matches!(result, Err(error) if retires_connection(error) || error.is_timeout());
    }
}

impl Drop for DedicatedConnection {
    fn drop(&mut self) {
        if !self.finished {
            self.checkout.broken.store(true, Ordering::Relaxed);
        }
        self.pool.inner.blocking.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What mobc pools: a cluster connection plus the flag commands raise when it breaks.
pub(crate) struct Managed {
    conn: ClusterConnection,
    broken: Arc<AtomicBool>,
    _open: OpenGuard,
}

/// Counts a cluster connection's sockets in [`PoolStats::open_connections`] without asking mobc
/// (whose `state()` is async), and in `redis_client_pool_active_connections` (which every pool of
/// the same name shares, as baseplate.py's label does), for as long as it is open.
struct OpenGuard {
    open: Arc<AtomicUsize>,
    gauge: Gauge,
    sockets: usize,
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.open.fetch_sub(self.sockets, Ordering::Relaxed);
        self.gauge
            .dec_by(i64::try_from(self.sockets).unwrap_or(i64::MAX));
    }
}

/// Opens a cluster connection of `client` whose node connections are `C`s (the pool's hold a
/// pipeline's redirections back, see `redirects`), or fails with a [`ConnectTimeout`] naming the
/// client `name` once `timeout` passed: redis-rs alone can wait on a black-holed seed
/// indefinitely.
pub(crate) async fn connect<C>(
    client: &ClusterClient,
    name: &str,
    timeout: Duration,
) -> RedisResult<redis::cluster_async::ClusterConnection<C>>
where
    C: redis::aio::ConnectionLike
        + redis::cluster_async::Connect
        + Clone
        + Send
        + Sync
        + Unpin
        + 'static,
{
    tokio::time::timeout(timeout, client.get_async_generic_connection::<C>())
        .await
        .map_err(|_| {
            RedisError::from(ConnectTimeout {
                client: name.to_owned(),
                after: timeout,
            })
        })?
}

#[derive(Clone)]
pub(crate) struct ClusterManager {
    client: ClusterClient,
    name: String,
    connect_timeout: Duration,
    open: Arc<AtomicUsize>,
    open_gauge: Gauge,
    router: Arc<Router>,
    /// Whether the last attempt to connect failed: failures are logged when they start and
    /// recoveries when they end, not once per caller while the cluster stays unreachable.
    failing: Arc<AtomicBool>,
    /// Whether connections turn on RESP3 and `CLIENT TRACKING` for the hot-key cache.
    caching: bool,
}

#[mobc::async_trait]
impl mobc::Manager for ClusterManager {
    type Connection = Managed;
    type Error = RedisError;

    async fn connect(&self) -> Result<Managed, RedisError> {
        // redis-rs builds node connections from their type alone: one per setting.
        let (client, name, timeout) = (&self.client, &self.name, self.connect_timeout);
        let opened = if self.router.reads_from_replicas() {
            connect(client, name, timeout)
                .await
                .map(ClusterConnection::ReplicaReads)
        } else {
            connect(client, name, timeout)
                .await
                .map(ClusterConnection::PrimaryReads)
        };
        let connected = opened.map_err(|error| {
            if self.caching {
                CacheUnsupported::from_refusal(&self.name, error)
            } else {
                error
            }
        });
        let conn = match connected {
            Ok(conn) => {
                if self.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!(client = %self.name, "connected to the cluster again");
                }
                conn
            }
            Err(error) => {
                if !self.failing.swap(true, Ordering::Relaxed) {
                    // redis-rs's errors name nodes by address, never by URL: no password here.
                    tracing::warn!(client = %self.name, %error, "cannot connect to the cluster");
                }
                return Err(error);
            }
        };
        // Connecting learnt the topology (redis-rs tells the router) and opened a socket to each
        // node in it.
        let sockets = self.router.node_count().unwrap_or(1).max(1);
        self.open.fetch_add(sockets, Ordering::Relaxed);
        self.open_gauge
            .inc_by(i64::try_from(sockets).unwrap_or(i64::MAX));
        Ok(Managed {
            conn,
            broken: Arc::new(AtomicBool::new(false)),
            _open: OpenGuard {
                open: Arc::clone(&self.open),
                gauge: self.open_gauge.clone(),
                sockets,
            },
        })
    }

    async fn check(&self, mut managed: Managed) -> Result<Managed, RedisError> {
        // A plain PING through a cluster connection goes to every primary; one random node is
        // enough to know the connection's machinery works.
        let ping = redis::cmd("PING");
        managed
            .conn
            .route_command(ping, RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random))
            .await?;
        Ok(managed)
    }

    fn validate(&self, managed: &mut Managed) -> bool {
        !managed.broken.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use redis::ErrorKind;

    use super::*;

    #[test]
    fn options_set_in_code_that_no_call_could_use_are_refused_not_a_panic() {
        let config: baseplate_config::RawConfig = [("foo.url", "redis://127.0.0.1:7000")]
            .into_iter()
            .collect();
        let options = crate::ClusterRedisClient::new()
            .options_from_config(&config, "foo.")
            .unwrap();
        let mut no_permits = options.clone();
        no_permits.max_connections = 0;
        let mut no_time = options;
        no_time.connect_timeout = Some(Duration::ZERO);
        for (options, expected) in [
            (no_permits, "foo.max_connections: must be above zero"),
            (no_time, "foo.socket_connect_timeout: must be above zero"),
        ] {
            let error = ClusterPool::new("foo", options).unwrap_err();
            assert_eq!(error.to_string(), expected);
        }
    }

    #[test]
    fn a_connection_with_no_node_left_or_a_dropped_socket_is_replaced() {
        let none_left =
            RedisError::from((ErrorKind::ClusterConnectionNotFound, "No connections found"));
        assert!(retires_connection(&none_left));
        let reset = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert!(retires_connection(&reset));
    }

    #[test]
    fn a_server_answer_or_an_unexpected_reply_leaves_the_connection_in_use() {
        let wrong_type = RedisError::from((ErrorKind::UnexpectedReturnType, "not a list"));
        assert!(!retires_connection(&wrong_type));
        let client = RedisError::from((ErrorKind::Client, "cross-slot"));
        assert!(!retires_connection(&client));
    }
}
