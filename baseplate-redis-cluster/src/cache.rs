//! The hot-key cache: replies to reads of the process's hottest keys kept in memory and
//! invalidated by the server (RESP3 `CLIENT TRACKING` in `OPTIN` mode).
//!
//! A cacheable read is answered from here when its reply is cached, also once its key has cooled
//! down (the reply stays until one of the events below). Otherwise, when the hot-key tracker finds
//! its key among the hottest single-key reads ([`HotKeyTracker::is_hot_read`]), it is sent to its
//! key's primary right after `CLIENT CACHING YES`, so the server tracks the key for this
//! connection, and its reply cached. Every other command goes to Redis as before.
//!
//! A reply leaves the cache when the server says its key changed (an invalidation push), when
//! redis-rs reports a cluster topology other than the one known (a reply read under an earlier one
//! is never answered: after a failover or a slot move the node it came from may no longer tell of
//! changes; the same topology read again, as every new connection reads it, drops nothing), when a
//! node connection drops or a cached read fails on its way (everything is dropped), after `ttl`,
//! and by LRU beyond either bound (keys, and the bytes their replies hold). A reply whose key was
//! invalidated while the read was in flight is not cached: the server sends one invalidation per
//! tracked read, and a reply cached after it would stay stale until `ttl` (redis-rs 1.8's own
//! client-side cache has this race, which is why the client keeps its own store and uses redis-rs
//! only to turn tracking on).
//!
//! A key whose reply did not fit the byte bound is read the usual way (untracked, from a replica
//! when replica reads are on) until it changes, everything is dropped, or `ttl` passes; then a
//! read tries to cache it again.
//!
//! Pushes arrive on a channel from the connections' reader tasks; the cache reads the channel
//! before every lookup and before caching a reply, so a lookup never misses an invalidation that
//! reached the client before it, and no task of its own is needed.
//!
//! [`HotKeyTracker::is_hot_read`]: baseplate_hotkeys::HotKeyTracker::is_hot_read

use std::cell::RefCell;
use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError, mpsc};

use std::time::{Duration, Instant};
use tokio::sync::watch;

use lru::LruCache;
use redis::caching::{CacheConfig, CacheMode};
use redis::cluster_routing::{Route, SingleNodeRoutingInfo, SlotAddr};
use redis::{Arg, Cmd, PushInfo, PushKind, Value};

use crate::connection::{deadline_after, earliest};

thread_local! {
    /// Where a command is packed to be looked up, kept for the thread's next lookup: a hit
    /// allocates nothing for it.
    static PACKED: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// The most bytes [`PACKED`] keeps between lookups (a command with a large argument has its
/// buffer dropped after its lookup).
const PACKED_KEPT: usize = 1024;

/// `cache_max_keys` when the config does not set it.
pub const DEFAULT_CACHE_MAX_KEYS: usize = 10_000;

/// `cache_ttl` when the config does not set it.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(10);

/// `cache_max_bytes` when the config does not set it: 64 MiB.
pub const DEFAULT_CACHE_MAX_BYTES: NonZeroUsize = NonZeroUsize::new(64 << 20).unwrap();

/// The hot-key cache's bounds (`cache_max_keys`, `cache_max_bytes`, `cache_ttl`), present when
/// `cache_hot_keys` is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct HotKeyCacheOptions {
    /// How many hot read keys are cached, and how many keys' replies the cache keeps at most
    /// (each key's replies to its different commands, `HGET k a` and `HGET k b`, together).
    pub max_keys: NonZeroUsize,
    /// How many bytes the cached keys, commands and replies hold at most: their strings' bytes,
    /// and the size in memory of each value and each key's entry (not the store's table or the
    /// allocator's rounding). A reply that would take its key's replies past it alone is not
    /// cached, and the key is read the usual way until it changes or `ttl` passes.
    pub max_bytes: NonZeroUsize,
    /// The longest any reply stays cached, whatever the server says (a key with a shorter TTL on
    /// the server leaves when it does).
    pub ttl: Duration,
}

impl HotKeyCacheOptions {
    /// Bounds of `max_keys` keys' replies, holding at most [`DEFAULT_CACHE_MAX_BYTES`], each kept
    /// at most `ttl`.
    pub fn new(max_keys: NonZeroUsize, ttl: Duration) -> Self {
        Self {
            max_keys,
            max_bytes: DEFAULT_CACHE_MAX_BYTES,
            ttl,
        }
    }

    /// The same bounds, holding at most `max_bytes`.
    #[must_use]
    pub fn with_max_bytes(mut self, max_bytes: NonZeroUsize) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// What makes redis-rs send `CLIENT TRACKING ON OPTIN` on every node connection it opens.
    /// No command ever opts in to redis-rs's own store, which stays empty.
    pub(crate) fn redis_config() -> CacheConfig {
        CacheConfig::new()
            .set_mode(CacheMode::OptIn)
            .set_size(NonZeroUsize::MIN)
    }
}

/// What a client's hot-key cache has done since the client was made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheStats {
    /// Reads of hot keys answered from memory.
    pub hits: u64,
    /// Reads of hot keys that went to Redis (their reply is cached for the next ones, unless it is
    /// past `cache_max_bytes`).
    pub misses: u64,
    /// Cached replies dropped: the server said their key changed, a node connection dropped,
    /// the topology changed, their TTL passed, or to make room.
    pub invalidations: u64,
    /// Keys whose replies are cached now (at most `cache_max_keys`).
    pub keys: u64,
    /// Bytes the cached keys and replies hold now, as `cache_max_bytes` counts them.
    pub bytes: u64,
}

impl CacheStats {
    /// The share of hot-key reads answered from memory, 0 when there were none.
    ///
    /// ```
    /// use baseplate_redis_cluster::CacheStats;
    ///
    /// let mut stats = CacheStats::default();
    /// assert_eq!(stats.hit_share(), 0.0);
    /// stats.hits = 3;
    /// stats.misses = 1;
    /// assert_eq!(stats.hit_share(), 0.75);
    /// ```
    #[allow(clippy::cast_precision_loss)]
    pub fn hit_share(&self) -> f64 {
        let reads = self.hits + self.misses;
        if reads == 0 {
            0.0
        } else {
            self.hits as f64 / reads as f64
        }
    }

    /// What happened between `earlier` and these (counters that went back count from zero), with
    /// what the cache holds now.
    pub(crate) fn since(&self, earlier: &Self) -> Self {
        let delta = |now: u64, then: u64| now.checked_sub(then).unwrap_or(now);
        Self {
            hits: delta(self.hits, earlier.hits),
            misses: delta(self.misses, earlier.misses),
            invalidations: delta(self.invalidations, earlier.invalidations),
            keys: self.keys,
            bytes: self.bytes,
        }
    }
}

/// A client's store of cached replies, and the pushes that invalidate them.
pub(crate) struct HotKeyCache {
    ttl: Duration,
    /// How many keys' replies are kept at most: the least recently read key leaves past it.
    max_keys: usize,
    /// How many bytes they hold at most, as [`Cached::bytes`] counts: the least recently read key
    /// leaves past it.
    max_bytes: usize,
    state: Mutex<State>,
    hits: AtomicU64,
    misses: AtomicU64,
    invalidations: AtomicU64,
}

struct State {
    /// Each key's cached replies, by the packed command that read it.
    replies: LruCache<Vec<u8>, Cached>,
    /// What the cached keys hold: the sum of their [`Cached::bytes`].
    bytes: usize,
    /// Reads in flight, by key, with the key's invalidations counted while any is.
    in_flight: HashMap<Vec<u8>, InFlight>,
    /// Keys a reply of which was past the byte bound, with when their reads may try again (never
    /// for a `cache_ttl` past what the clock can count); at most `max_keys` of them.
    too_large: HashMap<Vec<u8>, Option<Instant>>,
    pushes: mpsc::Receiver<PushInfo>,
}

struct Cached {
    /// When the replies leave; never for a `cache_ttl` past what the clock can count.
    expires: Option<Instant>,
    /// The topology (its number) the replies were read under.
    topology: u64,
    /// By packed command, in byte order: a key read with many commands (`HGET` of many fields)
    /// finds each in a binary search.
    replies: Vec<(Vec<u8>, Value)>,
    /// What the key, its commands and its replies hold: [`key_bytes`] and each reply's
    /// [`reply_bytes`].
    bytes: usize,
}

#[derive(Default)]
struct InFlight {
    reads: usize,
    /// Invalidations of the key since the first of these reads started.
    invalidations: u64,
    /// The reads that later misses of the same command may wait for instead of sending their
    /// own.
    shared: Vec<Shared>,
}

/// A read in flight, as later misses of its command find it. There is at most one per command,
/// invalidation count and topology: a miss that finds one waits instead of starting another.
struct Shared {
    command: Vec<u8>,
    /// The key's invalidations counted when it started.
    since: u64,
    /// The topology (its number) it started under.
    topology: u64,
    reply: watch::Receiver<Option<Value>>,
}

/// What a lookup found.
pub(crate) enum Lookup<'a> {
    /// The cached reply.
    Hit(Value),
    /// A read of the same command, sent since the key's last invalidation, whose reply will do.
    Wait(watch::Receiver<Option<Value>>),
    /// Nothing: the caller reads, and hands the reply to the fill.
    Miss(Fill<'a>),
    /// Nothing, and the key's reply was lately past the byte bound: the caller reads it the usual
    /// way (it may go to a replica), untracked and not to be cached.
    TooLarge,
}

/// A read of a key on its way to the server, to be cached (or not) when its reply comes; dropped
/// unfinished (the caller gave up), it leaves nothing behind.
pub(crate) struct Fill<'a> {
    cache: &'a HotKeyCache,
    key: Vec<u8>,
    command: Vec<u8>,
    /// The key's invalidations counted when this read started.
    invalidations: u64,
    /// The topology (its number) this read started under.
    topology: u64,
    /// Where the reply goes to the misses waiting for it.
    reply: watch::Sender<Option<Value>>,
}

impl HotKeyCache {
    /// A cache bounded by `options`, and the sender its pushes must come through (handed to
    /// redis-rs as the client's push sender).
    pub(crate) fn new(options: HotKeyCacheOptions) -> (Self, mpsc::Sender<PushInfo>) {
        let (sender, pushes) = mpsc::channel();
        let cache = Self {
            ttl: options.ttl,
            max_keys: options.max_keys.get(),
            max_bytes: options.max_bytes.get(),
            state: Mutex::new(State {
                // Grown as keys come, not made room for up front: the bound may be far more keys
                // than are ever read.
                replies: LruCache::unbounded(),
                bytes: 0,
                in_flight: HashMap::new(),
                too_large: HashMap::new(),
                pushes,
            }),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            invalidations: AtomicU64::new(0),
        };
        (cache, sender)
    }

    /// The cached reply to `cmd`, a read of `key`, or a read of it already on its way since the
    /// key last changed; otherwise a miss, and the [`Fill`] to hand the reply to. While a key is
    /// read by many callers at once, one read goes to the server after each change and the
    /// others wait for its reply.
    ///
    /// `topology` is the number of the cluster topology now: a reply read under another one is
    /// not answered (a failover or a slot move may have made it stale without an invalidation
    /// from the node it came from).
    pub(crate) fn lookup(&self, key: &[u8], cmd: &Cmd, topology: u64) -> Lookup<'_> {
        let command = cmd.get_packed_command();
        let mut state = self.lock();
        let now = Instant::now();
        if let Some(cached) = self.cached_in(&mut state, key, &command, topology, now) {
            return Lookup::Hit(cached);
        }
        if let Some(until) = state.too_large.get(key) {
            if until.is_none_or(|until| now < until) {
                drop(state);
                self.misses.fetch_add(1, Ordering::Relaxed);
                return Lookup::TooLarge;
            }
            state.too_large.remove(key);
        }
        let in_flight = state.in_flight.entry(key.to_vec()).or_default();
        let invalidations = in_flight.invalidations;
        let shared = in_flight
            .shared
            .iter()
            .find(|s| s.command == command && s.since == invalidations && s.topology == topology);
        if let Some(shared) = shared {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Lookup::Wait(shared.reply.clone());
        }
        in_flight.reads += 1;
        let (reply, waiting) = watch::channel(None);
        in_flight.shared.push(Shared {
            command: command.clone(),
            since: invalidations,
            topology,
            reply: waiting,
        });
        drop(state);
        self.misses.fetch_add(1, Ordering::Relaxed);
        Lookup::Miss(Fill {
            cache: self,
            key: key.to_vec(),
            command,
            invalidations,
            topology,
            reply,
        })
    }

    /// The cached reply to `cmd`, a read of `key`, if there is one at `now`: a
    /// [`lookup`](Self::lookup) that leaves a miss to it, for a caller that answers hits before
    /// taking anything else (and has read the clock already).
    pub(crate) fn cached(
        &self,
        key: &[u8],
        cmd: &Cmd,
        topology: u64,
        now: Instant,
    ) -> Option<Value> {
        PACKED.with_borrow_mut(|packed| {
            packed.clear();
            cmd.write_packed_command(packed);
            let cached = self.cached_in(&mut self.lock(), key, packed, topology, now);
            if packed.capacity() > PACKED_KEPT {
                *packed = Vec::new();
            }
            cached
        })
    }

    /// The reply to `command` (packed), cached for `key` under `topology`, counted as a hit; a
    /// key's replies past their time at `now` or read under another topology leave.
    fn cached_in(
        &self,
        state: &mut State,
        key: &[u8],
        command: &[u8],
        topology: u64,
        now: Instant,
    ) -> Option<Value> {
        let cached = state.replies.get(key)?;
        if cached.expires.is_some_and(|expires| expires <= now) || cached.topology != topology {
            let dropped = state.remove(key);
            self.dropped(dropped);
            return None;
        }
        let found = cached
            .replies
            .binary_search_by(|(c, _)| c.as_slice().cmp(command))
            .ok()?;
        let (_, value) = &cached.replies[found];
        self.hits.fetch_add(1, Ordering::Relaxed);
        Some(value.clone())
    }

    /// Drops every cached reply, and keeps the reads in flight from being cached: a read failed
    /// on its way to a node, which may be going away without a word.
    pub(crate) fn drop_all(&self) {
        let mut state = self.lock();
        let dropped = state.invalidate_all();
        drop(state);
        self.dropped(dropped);
    }

    /// What the cache has done so far.
    pub(crate) fn stats(&self) -> CacheStats {
        // Pushes waiting are counted once they are read.
        let state = self.lock();
        let held = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
        let (keys, bytes) = (held(state.replies.len()), held(state.bytes));
        drop(state);
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            invalidations: self.invalidations.load(Ordering::Relaxed),
            keys,
            bytes,
        }
    }

    /// The state, with every push that arrived so far applied.
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let mut dropped = 0;
        while let Ok(push) = state.pushes.try_recv() {
            dropped += state.apply(&push);
        }
        self.dropped(dropped);
        state
    }

    fn dropped(&self, replies: usize) {
        let replies = u64::try_from(replies).unwrap_or(u64::MAX);
        self.invalidations.fetch_add(replies, Ordering::Relaxed);
    }
}

impl State {
    /// Applies a push; how many cached replies it dropped.
    fn apply(&mut self, push: &PushInfo) -> usize {
        match push.kind {
            PushKind::Invalidate => match push.data.first() {
                Some(Value::Array(keys)) => keys
                    .iter()
                    .filter_map(|key| match key {
                        Value::BulkString(key) => Some(self.invalidate(key)),
                        _ => None,
                    })
                    .sum(),
                // After FLUSHALL or FLUSHDB the server names no key: every key changed.
                _ => self.invalidate_all(),
            },
            // A node connection dropped, and the tracking of the keys read through it with it.
            PushKind::Disconnection => self.invalidate_all(),
            _ => 0,
        }
    }

    fn invalidate(&mut self, key: &[u8]) -> usize {
        if let Some(in_flight) = self.in_flight.get_mut(key) {
            in_flight.invalidations += 1;
        }
        // Its value changed: it may fit now.
        self.too_large.remove(key);
        self.remove(key)
    }

    fn invalidate_all(&mut self) -> usize {
        for in_flight in self.in_flight.values_mut() {
            in_flight.invalidations += 1;
        }
        // The pushes that would say a key changed may be lost with the connection.
        self.too_large.clear();
        let dropped = self.replies.iter().map(|(_, c)| c.replies.len()).sum();
        self.replies.clear();
        self.bytes = 0;
        dropped
    }

    /// Takes `key`'s replies out of the store.
    fn take(&mut self, key: &[u8]) -> Option<Cached> {
        let cached = self.replies.pop(key)?;
        self.bytes -= cached.bytes;
        Some(cached)
    }

    /// Drops `key`'s replies; how many there were.
    fn remove(&mut self, key: &[u8]) -> usize {
        self.take(key).map_or(0, |cached| cached.replies.len())
    }

    /// Has `key` read the usual way until `until` (none: until it changes), as one of at most
    /// `max_keys` such keys: those whose time passed at `now` leave to make room, and past that the
    /// key is not remembered (its reads keep trying to cache it).
    fn remember_too_large(
        &mut self,
        key: &[u8],
        until: Option<Instant>,
        max_keys: usize,
        now: Instant,
    ) {
        if self.too_large.len() >= max_keys {
            self.too_large
                .retain(|_, until| until.is_none_or(|until| now < until));
        }
        if self.too_large.len() < max_keys {
            self.too_large.insert(key.to_vec(), until);
        }
    }

    /// Drops the least recently read keys' replies until at most `max_keys` keys holding at most
    /// `max_bytes` are left; how many replies left.
    fn evict(&mut self, max_keys: usize, max_bytes: usize) -> usize {
        let mut dropped = 0;
        while self.replies.len() > max_keys || self.bytes > max_bytes {
            let Some((_, evicted)) = self.replies.pop_lru() else {
                break;
            };
            self.bytes -= evicted.bytes;
            dropped += evicted.replies.len();
        }
        dropped
    }
}

/// What a cached key holds besides its replies, as the cache's byte bound counts it: the key's
/// bytes and its entry's size in memory. With each reply's [`reply_bytes`], what
/// [`Cached::bytes`] counts; the store's own table and the allocator's rounding are not counted.
fn key_bytes(key: &[u8]) -> usize {
    size_of::<Vec<u8>>() + size_of::<Cached>() + key.len()
}

/// What one cached reply holds: its packed command's bytes, what its value holds and the size
/// of the pair.
fn reply_bytes(command: &[u8], reply: &Value) -> usize {
    size_of::<(Vec<u8>, Value)>() + command.len() + value_bytes(reply)
}

/// The bytes a value holds beyond its own size: its strings, and its elements (each its own
/// size and what it holds).
fn value_bytes(value: &Value) -> usize {
    let all = |values: &[Value]| {
        values
            .iter()
            .map(|v| size_of::<Value>() + value_bytes(v))
            .sum::<usize>()
    };
    let pairs = |pairs: &[(Value, Value)]| {
        pairs
            .iter()
            .map(|(k, v)| 2 * size_of::<Value>() + value_bytes(k) + value_bytes(v))
            .sum::<usize>()
    };
    match value {
        Value::BulkString(bytes) => bytes.len(),
        Value::SimpleString(text) | Value::VerbatimString { text, .. } => text.len(),
        Value::Array(values) | Value::Set(values) | Value::Push { data: values, .. } => all(values),
        Value::Map(map) => pairs(map),
        Value::Attribute { data, attributes } => {
            size_of::<Value>() + value_bytes(data) + pairs(attributes)
        }
        // Numbers, booleans, nil, and errors (never cached) hold nothing counted beyond their size.
        _ => 0,
    }
}

impl Fill<'_> {
    /// Caches `reply`, unless the key was invalidated while the read was in flight, the
    /// topology is no longer the one it started under (`topology` is the number of the one now),
    /// or the reply is an error.
    pub(crate) fn finish(self, reply: &Value, topology: u64) {
        self.reply.send_replace(Some(reply.clone()));
        let cache = self.cache;
        let mut state = cache.lock();
        let invalidated = state
            .in_flight
            .get(&self.key)
            .is_some_and(|f| f.invalidations != self.invalidations);
        if invalidated || topology != self.topology || matches!(reply, Value::ServerError(_)) {
            return;
        }
        let now = Instant::now();
        let expires = deadline_after(now, Some(cache.ttl));
        let mut dropped = 0;
        let mut cached = match state.take(&self.key) {
            Some(cached) if cached.topology == self.topology => cached,
            earlier => {
                dropped += earlier.map_or(0, |stale| stale.replies.len());
                Cached {
                    expires,
                    topology: self.topology,
                    // Most keys are read with one command: no room for four made up front.
                    replies: Vec::with_capacity(1),
                    bytes: key_bytes(&self.key),
                }
            }
        };
        cached.expires = earliest(cached.expires, expires);
        let command = &self.command;
        let added = reply_bytes(command, reply);
        let (at, replaced) = match cached.replies.binary_search_by(|(c, _)| c.cmp(command)) {
            Ok(at) => {
                let (_, earlier) = cached.replies.remove(at);
                cached.bytes -= reply_bytes(command, &earlier);
                (at, 1)
            }
            Err(at) => (at, 0),
        };
        if cached.bytes + added <= cache.max_bytes {
            cached.replies.insert(at, (command.clone(), reply.clone()));
            cached.bytes += added;
        } else {
            // More than the byte bound alone: this reply is not cached (nor the one it replaces),
            // and its key's reads go to the server the usual way for a while; the key's other
            // replies stay.
            dropped += replaced;
            state.remember_too_large(&self.key, expires, cache.max_keys, now);
        }
        if !cached.replies.is_empty() {
            state.bytes += cached.bytes;
            state.replies.push(self.key.clone(), cached);
        }
        dropped += state.evict(cache.max_keys, cache.max_bytes);
        cache.dropped(dropped);
    }
}

impl Drop for Fill<'_> {
    fn drop(&mut self) {
        let mut state = self
            .cache
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(in_flight) = state.in_flight.get_mut(&self.key) {
            in_flight.reads -= 1;
            in_flight.shared.retain(|shared| {
                (&shared.command, shared.since, shared.topology)
                    != (&self.command, self.invalidations, self.topology)
            });
            if in_flight.reads == 0 {
                state.in_flight.remove(&self.key);
            }
        }
    }
}

/// Whether a command whose name has the table row `row` ([`command_of`](baseplate_hotkeys::command_of)) is
/// one of the reads whose replies are cached (the row's
/// [`is_cacheable`](baseplate_hotkeys::CommandSpec::is_cacheable)).
pub(crate) fn cacheable(row: Option<&baseplate_hotkeys::CommandSpec>) -> bool {
    row.is_some_and(|spec| spec.is_cacheable())
}

/// The key a single-key read reads (its first argument).
pub(crate) fn read_key(cmd: &Cmd) -> &[u8] {
    match cmd.args_iter().nth(1) {
        Some(Arg::Simple(key)) => key,
        _ => &[],
    }
}

/// A read of `key` sent so that the server tracks it: `CLIENT CACHING YES` then the read, in one
/// pipeline to the key's primary (one write on its connection, nothing in between). Its second
/// reply is the read's.
pub(crate) fn tracked_read(cmd: &Cmd, key: &[u8]) -> (redis::Pipeline, SingleNodeRoutingInfo) {
    let mut pipe = redis::pipe();
    pipe.cmd("CLIENT").arg("CACHING").arg("YES");
    pipe.add_command(cmd.clone());
    let route = SingleNodeRoutingInfo::SpecificNode(Route::with_key(key, SlotAddr::Master));
    (pipe, route)
}

#[cfg(test)]
mod tests {
    use super::*;
    use baseplate_hotkeys::command_of;

    /// What a key cached with `replies` holds, as the byte bound counts it.
    fn entry_bytes(key: &[u8], replies: &[(Vec<u8>, Value)]) -> usize {
        key_bytes(key)
            + replies
                .iter()
                .map(|(c, v)| reply_bytes(c, v))
                .sum::<usize>()
    }

    fn store(max_keys: usize, ttl: Duration) -> (HotKeyCache, mpsc::Sender<PushInfo>) {
        HotKeyCache::new(HotKeyCacheOptions::new(
            NonZeroUsize::new(max_keys).unwrap(),
            ttl,
        ))
    }

    #[test]
    fn a_bound_of_more_keys_than_memory_holds_takes_no_memory_up_front() {
        let (cache, _pushes) = store(usize::MAX, Duration::from_secs(10));
        let fill = match cache.lookup(b"k", &get("k"), 0) {
            Lookup::Miss(fill) => fill,
            _ => panic!("an empty cache answered"),
        };
        fill.finish(&value("v"), 0);
        assert_eq!(cached(&cache, "k"), Some(value("v")));
    }

    fn get(key: &str) -> Cmd {
        redis::cmd("GET").arg(key).clone()
    }

    fn invalidate(pushes: &mpsc::Sender<PushInfo>, key: &str) {
        let data = vec![Value::Array(vec![Value::BulkString(
            key.as_bytes().to_vec(),
        )])];
        pushes
            .send(PushInfo {
                kind: PushKind::Invalidate,
                data,
            })
            .unwrap();
    }

    fn value(text: &str) -> Value {
        Value::BulkString(text.as_bytes().to_vec())
    }

    fn cached(cache: &HotKeyCache, key: &str) -> Option<Value> {
        match cache.lookup(key.as_bytes(), &get(key), 0) {
            Lookup::Hit(value) => Some(value),
            _ => None,
        }
    }

    #[test]
    fn a_key_read_with_many_commands_answers_each_with_its_own_reply() {
        let (cache, _pushes) = store(10, Duration::from_secs(60));
        let hget = |field: usize| redis::cmd("HGET").arg("flags").arg(field).clone();
        let fields = 300;
        // Filled in no particular order.
        for i in 0..fields {
            let field = i * 7919 % fields;
            fill(&cache, "flags", &hget(field), &value(&field.to_string()));
        }
        for field in 0..fields {
            let answered = match cache.lookup(b"flags", &hget(field), 0) {
                Lookup::Hit(value) => Some(value),
                _ => None,
            };
            assert_eq!(answered, Some(value(&field.to_string())), "field {field}");
            let reply = cache.cached(b"flags", &hget(field), 0, Instant::now());
            assert_eq!(reply, Some(value(&field.to_string())), "field {field}");
        }
        assert_eq!(cache.stats().hits, 2 * fields as u64);
        let state = cache.lock();
        let cached = state.replies.peek(b"flags".as_slice()).unwrap();
        assert_eq!(cached.replies.len(), fields);
        assert_eq!(cached.bytes, entry_bytes(b"flags", &cached.replies));
        assert_eq!(state.bytes, cached.bytes);
    }

    #[test]
    fn a_reply_is_cached_until_its_key_is_invalidated() {
        let (cache, pushes) = store(10, Duration::from_secs(60));
        let Lookup::Miss(fill) = cache.lookup(b"k", &get("k"), 0) else {
            panic!("an empty cache has nothing");
        };
        fill.finish(&value("v1"), 0);
        assert_eq!(cached(&cache, "k"), Some(value("v1")));
        assert_eq!(cached(&cache, "other"), None);
        let hset = redis::cmd("HGET").arg("k").arg("f").clone();
        assert!(
            matches!(cache.lookup(b"k", &hset, 0), Lookup::Miss(_)),
            "another command of the key"
        );
        invalidate(&pushes, "k");
        assert_eq!(cached(&cache, "k"), None);
        let stats = cache.stats();
        assert_eq!((stats.hits, stats.misses, stats.invalidations), (1, 4, 1));
    }

    #[test]
    fn a_reply_whose_key_was_invalidated_while_it_was_read_is_not_cached() {
        let (cache, pushes) = store(10, Duration::from_secs(60));
        let Lookup::Miss(fill) = cache.lookup(b"k", &get("k"), 0) else {
            panic!("an empty cache has nothing");
        };
        // The server answered the read with the old value, then another client wrote the key:
        // its invalidation is read before the reply is cached.
        invalidate(&pushes, "k");
        fill.finish(&value("old"), 0);
        assert_eq!(
            cached(&cache, "k"),
            None,
            "the old value would stay until the TTL"
        );
        // A later read caches again.
        let Lookup::Miss(fill) = cache.lookup(b"k", &get("k"), 0) else {
            panic!("nothing cached");
        };
        fill.finish(&value("new"), 0);
        assert_eq!(cached(&cache, "k"), Some(value("new")));
    }

    #[test]
    fn an_invalidation_during_one_read_spoils_only_the_reads_already_in_flight() {
        let (cache, pushes) = store(10, Duration::from_secs(60));
        let Lookup::Miss(early) = cache.lookup(b"k", &get("k"), 0) else {
            panic!("an empty cache has nothing");
        };
        invalidate(&pushes, "k");
        // Sent after the write: its reply is the new value, though the early read is still out.
        let Lookup::Miss(late) = cache.lookup(b"k", &get("k"), 0) else {
            panic!("nothing cached");
        };
        early.finish(&value("old"), 0);
        assert_eq!(cached(&cache, "k"), None);
        late.finish(&value("new"), 0);
        assert_eq!(cached(&cache, "k"), Some(value("new")));
    }

    #[test]
    fn misses_of_a_read_in_flight_wait_for_its_reply_until_the_key_changes() {
        let (cache, pushes) = store(10, Duration::from_secs(60));
        let Lookup::Miss(first) = cache.lookup(b"k", &get("k"), 0) else {
            panic!("an empty cache has nothing");
        };
        let Lookup::Wait(mut waiting) = cache.lookup(b"k", &get("k"), 0) else {
            panic!("the same read is in flight");
        };
        invalidate(&pushes, "k");
        // Started after the key changed: the read in flight may be older than the change.
        let Lookup::Miss(second) = cache.lookup(b"k", &get("k"), 0) else {
            panic!("a read after an invalidation goes to the server");
        };
        first.finish(&value("old"), 0);
        assert_eq!(*waiting.borrow_and_update(), Some(value("old")));
        second.finish(&value("new"), 0);
        assert_eq!(cached(&cache, "k"), Some(value("new")));
        assert!(cache.lock().in_flight.is_empty(), "nothing left behind");
    }

    #[test]
    fn a_new_topology_answers_nothing_read_under_the_old_one() {
        let (cache, _pushes) = store(10, Duration::from_secs(60));
        let Lookup::Miss(before) = cache.lookup(b"k", &get("k"), 0) else {
            panic!("an empty cache has nothing");
        };
        before.finish(&value("v"), 0);
        assert!(matches!(cache.lookup(b"k", &get("k"), 0), Lookup::Hit(_)));
        assert!(matches!(cache.lookup(b"k", &get("k"), 1), Lookup::Miss(_)));
        // A read that started under the old topology is not cached under the new one.
        let Lookup::Miss(during) = cache.lookup(b"j", &get("j"), 1) else {
            panic!("nothing cached");
        };
        during.finish(&value("v"), 2);
        assert!(matches!(cache.lookup(b"j", &get("j"), 2), Lookup::Miss(_)));
    }

    #[test]
    fn an_invalidation_read_after_the_reply_was_cached_drops_it() {
        let (cache, pushes) = store(10, Duration::from_secs(60));
        let Lookup::Miss(fill) = cache.lookup(b"k", &get("k"), 0) else {
            panic!("an empty cache has nothing");
        };
        fill.finish(&value("old"), 0);
        invalidate(&pushes, "k");
        assert_eq!(cached(&cache, "k"), None);
    }

    #[test]
    fn a_dropped_connection_or_a_flush_drops_everything() {
        let (cache, pushes) = store(10, Duration::from_secs(60));
        for (kind, data) in [
            (PushKind::Disconnection, vec![]),
            (PushKind::Invalidate, vec![Value::Nil]),
        ] {
            for key in ["a", "b"] {
                if let Lookup::Miss(fill) = cache.lookup(key.as_bytes(), &get(key), 0) {
                    fill.finish(&value(key), 0);
                }
            }
            assert_eq!(cached(&cache, "a"), Some(value("a")));
            pushes.send(PushInfo { kind, data }).unwrap();
            assert_eq!(cached(&cache, "a"), None);
            assert_eq!(cached(&cache, "b"), None);
        }
    }

    #[test]
    fn replies_expire_after_the_ttl_and_the_bound_evicts_the_least_recent_key() {
        let (cache, _pushes) = store(2, Duration::ZERO);
        if let Lookup::Miss(fill) = cache.lookup(b"k", &get("k"), 0) {
            fill.finish(&value("v"), 0);
        }
        assert_eq!(cached(&cache, "k"), None, "expired at once");
        assert_eq!(cache.lock().bytes, 0, "an expired key gives its bytes back");

        let (cache, _pushes) = store(2, Duration::from_secs(60));
        for key in ["a", "b", "c"] {
            if let Lookup::Miss(fill) = cache.lookup(key.as_bytes(), &get(key), 0) {
                fill.finish(&value(key), 0);
            }
        }
        assert_eq!(cached(&cache, "a"), None, "evicted for c");
        assert_eq!(cached(&cache, "c"), Some(value("c")));
        assert_eq!(cache.stats().invalidations, 1);
    }

    /// Reads `cmd` (of `key`) through `cache` as a miss and caches `reply`.
    fn fill(cache: &HotKeyCache, key: &str, cmd: &Cmd, reply: &Value) {
        match cache.lookup(key.as_bytes(), cmd, 0) {
            Lookup::Miss(fill) => fill.finish(reply, 0),
            _ => panic!("{key} was not a miss"),
        }
    }

    #[test]
    fn the_byte_bound_evicts_the_least_recent_keys_and_never_keeps_a_reply_past_it() {
        let hundred = Value::BulkString(vec![b'x'; 100]);
        let one = entry_bytes(b"a", &[(get("a").get_packed_command(), hundred.clone())]);
        assert!(
            one > 100 + 15,
            "the payload, the key and the command at least: {one}"
        );
        let bound = NonZeroUsize::new(2 * one + one / 2).unwrap();
        let options =
            HotKeyCacheOptions::new(NonZeroUsize::new(100).unwrap(), Duration::from_secs(60));
        let (cache, pushes) = HotKeyCache::new(options.with_max_bytes(bound));
        for key in ["a", "b", "c"] {
            fill(&cache, key, &get(key), &hundred);
        }
        assert_eq!(cached(&cache, "a"), None, "evicted for c: two keys fit");
        assert_eq!(cached(&cache, "b"), Some(hundred.clone()));
        assert_eq!(cached(&cache, "c"), Some(hundred.clone()));
        assert_eq!(cache.lock().bytes, 2 * one);
        let capacity = cache
            .lock()
            .replies
            .peek(b"b".as_slice())
            .unwrap()
            .replies
            .capacity();
        assert_eq!(
            capacity, 1,
            "no room kept for replies a key read once never has"
        );
        let stats = cache.stats();
        assert_eq!(stats.invalidations, 1);
        assert_eq!((stats.keys, stats.bytes), (2, 2 * one as u64));

        // A reply past the bound alone is not cached, and evicts nothing.
        let huge = Value::Array(vec![Value::BulkString(vec![b'y'; bound.get()])]);
        fill(&cache, "d", &get("d"), &huge);
        assert_eq!(cached(&cache, "d"), None);
        assert_eq!(cache.lock().bytes, 2 * one);
        assert_eq!(cached(&cache, "b"), Some(hundred.clone()));
        pushes
            .send(PushInfo {
                kind: PushKind::Disconnection,
                data: Vec::new(),
            })
            .unwrap();
        assert_eq!(cached(&cache, "b"), None);
        assert_eq!(
            cache.lock().bytes,
            0,
            "a dropped connection gives every byte back"
        );

        // A key's replies to different commands count together; the one that would take them
        // past the bound is the one not cached.
        let (cache, pushes) = HotKeyCache::new(options.with_max_bytes(bound));
        let hget = |field: &str| redis::cmd("HGET").arg("h").arg(field).clone();
        fill(&cache, "h", &hget("f1"), &hundred);
        fill(&cache, "h", &hget("f2"), &hundred);
        let both = cache.lock().bytes;
        let pairs = [
            (hget("f1").get_packed_command(), hundred.clone()),
            (hget("f2").get_packed_command(), hundred.clone()),
        ];
        assert_eq!(both, entry_bytes(b"h", &pairs));
        fill(
            &cache,
            "h",
            &hget("f3"),
            &Value::BulkString(vec![b'z'; bound.get() - both]),
        );
        assert_eq!(cache.lock().bytes, both);
        let hit = |field: &str| match cache.lookup(b"h", &hget(field), 0) {
            Lookup::Hit(value) => Some(value),
            _ => None,
        };
        assert_eq!(hit("f1"), Some(hundred.clone()));
        assert_eq!(hit("f3"), None);

        invalidate(&pushes, "h");
        assert_eq!(hit("f1"), None);
        assert_eq!(
            cache.lock().bytes,
            0,
            "an invalidated key gives its bytes back"
        );
    }

    #[test]
    fn a_key_too_large_to_cache_is_read_the_usual_way_until_it_changes() {
        let small = value("v");
        let huge = Value::BulkString(vec![b'y'; 1000]);
        let options =
            HotKeyCacheOptions::new(NonZeroUsize::new(2).unwrap(), Duration::from_secs(60))
                .with_max_bytes(NonZeroUsize::new(1000).unwrap());
        let (cache, pushes) = HotKeyCache::new(options);
        let too_large =
            |key: &str| matches!(cache.lookup(key.as_bytes(), &get(key), 0), Lookup::TooLarge);
        fill(&cache, "k", &get("k"), &huge);
        assert!(too_large("k"));
        assert!(too_large("k"));
        assert_eq!(cache.stats().misses, 3, "each read went to Redis");

        // Its value changed: the next read tries again, and caches what fits.
        invalidate(&pushes, "k");
        fill(&cache, "k", &get("k"), &small);
        assert_eq!(cached(&cache, "k"), Some(small.clone()));

        // At most `max_keys` such keys are remembered; a dropped connection forgets them all.
        for key in ["a", "b", "c"] {
            fill(&cache, key, &get(key), &huge);
        }
        assert!(too_large("a") && too_large("b"));
        assert!(matches!(cache.lookup(b"c", &get("c"), 0), Lookup::Miss(_)));
        pushes
            .send(PushInfo {
                kind: PushKind::Disconnection,
                data: Vec::new(),
            })
            .unwrap();
        assert!(matches!(cache.lookup(b"a", &get("a"), 0), Lookup::Miss(_)));

        // And it is tried again once `cache_ttl` passed (at once, for none).
        let options = HotKeyCacheOptions::new(NonZeroUsize::new(2).unwrap(), Duration::ZERO)
            .with_max_bytes(NonZeroUsize::new(1000).unwrap());
        let (cache, _pushes) = HotKeyCache::new(options);
        fill(&cache, "k", &get("k"), &huge);
        assert!(matches!(cache.lookup(b"k", &get("k"), 0), Lookup::Miss(_)));
    }

    #[test]
    fn error_replies_and_abandoned_reads_cache_nothing() {
        let (cache, _pushes) = store(10, Duration::from_secs(60));
        if let Lookup::Miss(fill) = cache.lookup(b"k", &get("k"), 0) {
            let error = redis::parse_redis_value(b"-WRONGTYPE not a string\r\n").unwrap();
            assert!(matches!(error, Value::ServerError(_)));
            fill.finish(&error, 0);
        }
        assert_eq!(cached(&cache, "k"), None);
        drop(cache.lookup(b"k", &get("k"), 0));
        assert!(cache.lock().in_flight.is_empty(), "nothing left behind");
    }

    #[test]
    fn the_cacheable_reads_read_one_key_and_are_the_ones_the_readme_lists() {
        let cacheable_names: Vec<&str> = baseplate_hotkeys::all_commands()
            .filter(|spec| spec.is_cacheable())
            .map(|spec| {
                assert_eq!(
                    spec.reads(),
                    baseplate_hotkeys::KeyPositions::First,
                    "{spec:?}"
                );
                assert_eq!(
                    spec.writes(),
                    baseplate_hotkeys::KeyPositions::None,
                    "{spec:?}"
                );
                spec.name()
            })
            .collect();
        assert_eq!(cacheable_names.len(), 42);
        assert!(cacheable(command_of(&get("k"))));
        assert!(cacheable(command_of(redis::cmd("hgetall").arg("k"))));
        for not in [
            "TTL",
            "SRANDMEMBER",
            "HSCAN",
            "SET",
            "MGET",
            "NOT-A-COMMAND",
        ] {
            assert!(!cacheable(command_of(redis::cmd(not).arg("k"))), "{not}");
        }
        let readme = include_str!("../../README.md");
        let section = readme
            .split("- Cacheable")
            .nth(1)
            .and_then(|rest| rest.split("\n- ").next())
            .expect("the README lists the cacheable reads");
        let mut listed: Vec<&str> = section.split('`').skip(1).step_by(2).collect();
        listed.sort_unstable();
        assert_eq!(listed, cacheable_names);
    }

    #[test]
    fn counts_since_an_earlier_reading_restart_from_zero_when_they_went_back() {
        let earlier = CacheStats {
            hits: 10,
            misses: 4,
            invalidations: 2,
            keys: 3,
            bytes: 900,
        };
        let now = CacheStats {
            hits: 15,
            misses: 4,
            invalidations: 1,
            keys: 2,
            bytes: 600,
        };
        assert_eq!(
            now.since(&earlier),
            CacheStats {
                hits: 5,
                misses: 0,
                invalidations: 1,
                keys: 2,
                bytes: 600,
            },
            "what is held now, not a difference"
        );
    }
}
