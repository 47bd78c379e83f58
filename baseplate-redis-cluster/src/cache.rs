//! The hot-key cache: replies to reads of the process's hottest keys kept in memory and
//! invalidated by the server (RESP3 `CLIENT TRACKING`, through redis-rs's client-side cache).
//!
//! The hot-key tracker finds the hottest single-key reads locally ([`HotKeyTracker::is_hot_read`]);
//! a read of one of them opts in to redis-rs's cache (`CLIENT CACHING YES` before it, tracking in
//! `OPTIN` mode), every other command goes to Redis as before. Entries are dropped when the server
//! says their key changed, when the node connection they came through is replaced (each node
//! connection has an epoch of its own, so after a reconnect, a failover or a slot move a key's
//! reads no longer find what an earlier connection cached), by LRU beyond `max_keys`, and after
//! `ttl` whatever happened.
//!
//! [`HotKeyTracker::is_hot_read`]: baseplate_hotkeys::HotKeyTracker::is_hot_read

use std::num::NonZeroUsize;
use std::time::Duration;

use redis::caching::{CacheConfig, CacheMode, CacheStatistics};
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{Arg, Cmd, CommandCacheConfig};

/// `cache_max_keys` when the config does not set it.
pub const DEFAULT_CACHE_MAX_KEYS: usize = 1000;

/// `cache_ttl` when the config does not set it.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(10);

/// The LRU's size, in keys, per hot key: room for uneven shards.
const LRU_ROOM: NonZeroUsize = NonZeroUsize::new(2).unwrap();

/// The hot-key cache's bounds (`cache_max_keys`, `cache_ttl`), present when `cache_hot_keys` is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct HotKeyCacheOptions {
    /// How many hot read keys opt in to the cache. The cache keeps the replies of at most twice as
    /// many keys (each key's replies to its different commands, `HGET k a` and `HGET k b`,
    /// together): its LRU is split in 32 shards by key, and the room absorbs uneven shards.
    pub max_keys: NonZeroUsize,
    /// The longest any reply stays cached, whatever the server says (a key with a shorter TTL on
    /// the server leaves when it does).
    pub ttl: Duration,
}

impl HotKeyCacheOptions {
    /// Bounds of `max_keys` replies kept at most `ttl`.
    pub fn new(max_keys: NonZeroUsize, ttl: Duration) -> Self {
        Self { max_keys, ttl }
    }

    /// redis-rs's cache configuration: only commands that opt in are cached.
    pub(crate) fn redis_config(&self) -> CacheConfig {
        CacheConfig::new()
            .set_mode(CacheMode::OptIn)
            .set_size(self.max_keys.saturating_mul(LRU_ROOM))
            .set_default_client_ttl(self.ttl)
    }
}

/// What a client's hot-key cache has done since the client was made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheStats {
    /// Reads of hot keys answered from memory.
    pub hits: u64,
    /// Reads of hot keys that went to Redis (their reply is cached for the next ones).
    pub misses: u64,
    /// Replies dropped because the server said their key changed, or to make room.
    pub invalidations: u64,
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

    /// What happened between `earlier` and these (counters that went back count from zero).
    pub(crate) fn since(&self, earlier: &Self) -> Self {
        let delta = |now: u64, then: u64| now.checked_sub(then).unwrap_or(now);
        Self {
            hits: delta(self.hits, earlier.hits),
            misses: delta(self.misses, earlier.misses),
            invalidations: delta(self.invalidations, earlier.invalidations),
        }
    }
}

impl From<CacheStatistics> for CacheStats {
    fn from(stats: CacheStatistics) -> Self {
        let count = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
        Self {
            hits: count(stats.hit),
            misses: count(stats.miss),
            invalidations: count(stats.invalidate),
        }
    }
}

/// `cmd`, a read of one key (its first argument), opted in to the cache, and its route: the
/// primary of the key's slot, replica reads or not. redis-rs caches it if it is one of the reads
/// it can cache (`GET`, `HGET`, `HGETALL`, `LRANGE`, `SMEMBERS`, `ZRANGE`, ...) and sends it as it
/// is otherwise.
///
/// Each node connection caches on its own, and a key's cached replies are dropped when a read
/// comes through another node's connection; reads spread over a shard's nodes would keep
/// replacing each other. On the primary a key is cached once, and it sees writes first.
pub(crate) fn opted_in(cmd: &Cmd) -> (Cmd, RoutingInfo) {
    let key = match cmd.args_iter().nth(1) {
        Some(Arg::Simple(key)) => key,
        _ => &[],
    };
    let route = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(Route::with_key(
        key,
        SlotAddr::Master,
    )));
    let mut cmd = cmd.clone();
    cmd.set_cache_config(CommandCacheConfig::new());
    (cmd, route)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_since_an_earlier_reading_restart_from_zero_when_they_went_back() {
        let earlier = CacheStats {
            hits: 10,
            misses: 4,
            invalidations: 2,
        };
        let now = CacheStats {
            hits: 15,
            misses: 4,
            invalidations: 1,
        };
        assert_eq!(
            now.since(&earlier),
            CacheStats {
                hits: 5,
                misses: 0,
                invalidations: 1
            }
        );
    }
}
