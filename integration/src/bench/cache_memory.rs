//! The hot-key cache's memory per cached key: a client reads N distinct preloaded keys until they
//! are answered from memory, and the process's live heap bytes (counted by the global allocator of
//! the `bench-cache-memory` program) before and after give the bytes each cached key costs (its
//! reply, its entry in the cache and its place in the published hot set). Resident memory
//! (`VmRSS`) is taken too, for reference: it under-counts, as the allocator reuses what earlier
//! reads freed.
//!
//! The client's `cache_max_keys` is 2 × N: the tracker publishes the `cache_max_keys` keys with
//! the most samples as hot, and N keys read equally often tie; with twice the room every one of
//! them is hot, and every key read is cached once.
//!
//! Before the "before" reading, the client reads 16 × `cache_max_keys` other (absent) keys once
//! each: that fills the tracker's Space-Saving summary (4 × `cache_max_keys` counters, sampled at a
//! quarter), so the growth after it is the cache's and the hot set's, not the summary's. None of those keys becomes hot: a key read once is sampled at most once, below
//! the two samples a hot key needs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use baseplate::{ClusterRedisClient, ClusterRedisContextFactory, RawConfig};
use redis::aio::ConnectionLike as _;
use serde::{Deserialize, Serialize};

use crate::bench::BenchError;
use crate::bench::stats::rss_kib;
use crate::bench::workload::{KeySpace, VALUE_SIZE};

/// Keys cached by default: `cache_max_keys` of the measuring client.
pub const CACHED_KEYS: usize = 10_000;

/// Concurrent readers while filling and caching.
const READERS: usize = 50;

/// Filler reads per unit of `cache_max_keys`, before the "before" reading.
const FILL_PER_KEY: usize = 16;

/// The longest the keys may take to be found hot and cached; the figures are taken then.
const CACHING_DEADLINE: Duration = Duration::from_secs(60);

/// What the measurement found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheMemory {
    /// The distinct keys read (`cache_max_keys` is twice this).
    pub keys: usize,
    /// Keys answered from memory in the last pass over them: the entries cached.
    pub cached: u64,
    /// The size of each cached value, in bytes.
    pub value_size: usize,
    /// Live heap bytes with the summary full and nothing cached.
    pub heap_before_bytes: u64,
    /// Live heap bytes with `cached` keys cached.
    pub heap_after_bytes: u64,
    /// Resident memory with the summary full and nothing cached, KiB.
    pub rss_before_kib: u64,
    /// Resident memory with `cached` keys cached, KiB.
    pub rss_after_kib: u64,
    /// Passes over the keys it took until every one was a hit.
    pub passes: usize,
}

impl CacheMemory {
    /// Live heap bytes per cached key; 0 when nothing was cached.
    pub fn bytes_per_key(&self) -> f64 {
        self.per_key(self.heap_after_bytes.saturating_sub(self.heap_before_bytes))
    }

    /// Resident bytes per cached key (a lower bound: freed memory is reused); 0 when nothing was
    /// cached.
    pub fn rss_bytes_per_key(&self) -> f64 {
        self.per_key(self.rss_after_kib.saturating_sub(self.rss_before_kib) * 1024)
    }

    fn per_key(&self, grown: u64) -> f64 {
        if self.cached == 0 {
            return 0.0;
        }
        #[allow(clippy::cast_precision_loss)]
        let per_key = grown as f64 / self.cached as f64;
        per_key
    }
}

/// Measures the memory of `keys` cached keys (at most the key space's size) through a client of
/// the cluster at `url`, in this process, whose live heap bytes `live_heap` tells (run it in a
/// process of its own).
///
/// Reads pass over the keys until 99% of a pass are hits, or for at most a minute.
///
/// # Errors
/// When the client cannot be configured or a read fails, or when no key was cached.
pub async fn measure(
    url: &str,
    keys: usize,
    live_heap: impl Fn() -> u64,
) -> Result<CacheMemory, BenchError> {
    let space = Arc::new(KeySpace::new());
    let keys = keys.min(space.len()).max(1);
    let max_keys = keys * 2;
    let factory = cached_factory(url, max_keys)?;
    let fillers: Vec<String> = (0..max_keys * FILL_PER_KEY)
        .map(|i| format!("bench:absent:{i}"))
        .collect();
    read_all(&factory, Arc::new(fillers)).await?;
    let targets: Arc<Vec<String>> = Arc::new(
        (0..keys)
            .map(|i| space.key(u32::try_from(i).unwrap_or(u32::MAX)).to_owned())
            .collect(),
    );
    let rss_before_kib = rss_kib().ok_or("no VmRSS in /proc/self/status")?;
    let heap_before_bytes = live_heap();
    let started = Instant::now();
    let mut passes = 0;
    loop {
        let before = hits(&factory)?;
        read_all(&factory, Arc::clone(&targets)).await?;
        passes += 1;
        let cached = hits(&factory)? - before;
        // Sampling finds the last few keys slowly; 99% is the measurement's resolution anyway.
        if cached * 100 >= keys as u64 * 99 || started.elapsed() > CACHING_DEADLINE {
            if cached == 0 {
                return Err(
                    format!("after {passes} passes over {keys} keys, none was cached").into(),
                );
            }
            let heap_after_bytes = live_heap();
            let rss_after_kib = rss_kib().ok_or("no VmRSS in /proc/self/status")?;
            return Ok(CacheMemory {
                keys,
                cached,
                value_size: VALUE_SIZE,
                heap_before_bytes,
                heap_after_bytes,
                rss_before_kib,
                rss_after_kib,
                passes,
            });
        }
    }
}

/// A client `foo` with the cache on for `max_keys` keys (kept ten minutes, so none expires while
/// measured), reading from primaries, tracking nothing into Redis.
fn cached_factory(url: &str, max_keys: usize) -> Result<ClusterRedisContextFactory, BenchError> {
    let config: RawConfig = [
        ("foo.url", url.to_owned()),
        ("foo.read_from_replicas", "false".to_owned()),
        ("foo.cache_hot_keys", "true".to_owned()),
        ("foo.cache_max_keys", max_keys.to_string()),
        ("foo.cache_ttl", "600 seconds".to_owned()),
    ]
    .into_iter()
    .collect();
    Ok(ClusterRedisClient::new().parse("foo", &config)?)
}

/// The cache's hits so far.
fn hits(factory: &ClusterRedisContextFactory) -> Result<u64, BenchError> {
    Ok(factory
        .pool()
        .cache_stats()
        .ok_or("the client has no hot-key cache")?
        .hits)
}

/// `GET`s every key of `keys` once, [`READERS`] at a time.
async fn read_all(
    factory: &ClusterRedisContextFactory,
    keys: Arc<Vec<String>>,
) -> Result<(), BenchError> {
    let mut readers = Vec::with_capacity(READERS);
    for reader in 0..READERS {
        let mut foo = factory.make_object_for_context("foo", &tracing::Span::none());
        let keys = Arc::clone(&keys);
        readers.push(tokio::spawn(async move {
            for key in keys.iter().skip(reader).step_by(READERS) {
                foo.req_packed_command(redis::cmd("GET").arg(key)).await?;
            }
            Ok::<_, redis::RedisError>(())
        }));
    }
    for reader in readers {
        reader.await??;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_per_key_is_the_growth_over_the_keys_cached() {
        let memory = CacheMemory {
            keys: 10_000,
            cached: 8_000,
            value_size: 100,
            heap_before_bytes: 1_000_000,
            heap_after_bytes: 4_200_000,
            rss_before_kib: 20_000,
            rss_after_kib: 24_000,
            passes: 3,
        };
        assert!((memory.bytes_per_key() - 400.0).abs() < 1e-9);
        assert!((memory.rss_bytes_per_key() - 512.0).abs() < 1e-9);
        let shrunk = CacheMemory {
            heap_after_bytes: 900_000,
            rss_after_kib: 19_000,
            ..memory.clone()
        };
        assert_eq!(shrunk.bytes_per_key(), 0.0);
        assert_eq!(shrunk.rss_bytes_per_key(), 0.0);
        let none = CacheMemory {
            cached: 0,
            ..memory
        };
        assert_eq!(none.bytes_per_key(), 0.0);
    }
}
