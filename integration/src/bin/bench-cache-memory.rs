//! `bench-cache-memory`: the hot-key cache's bytes per cached key, from a global allocator that
//! counts every allocation. It is a program of its own so the bench's cells keep the system
//! allocator untouched; `bench run` starts it with the hot-key workload and reads its JSON line.
//! The cluster is `REDIS_CLUSTER_URL`, with the bench's keys preloaded.
// A measurement that cannot reach its cluster has nothing better to do than fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::alloc::System;

use clap::Parser;
use integration::bench::BenchError;
use integration::bench::cache_memory::{CACHED_KEYS, measure};
use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

#[derive(Debug, Parser)]
#[command(
    name = "bench-cache-memory",
    about = "Bytes per cached key of the hot-key cache"
)]
struct Cli {
    /// Keys to cache.
    #[arg(long, default_value_t = CACHED_KEYS)]
    keys: usize,
}

/// Heap bytes allocated and not yet freed. stats_alloc already counts what a `realloc` grows in
/// `bytes_allocated` (and what it shrinks in `bytes_deallocated`); its `bytes_reallocated` is the
/// same change again, so it is not added.
fn live_heap_bytes() -> u64 {
    let stats = GLOBAL.stats();
    let live = stats.bytes_allocated as i128 - stats.bytes_deallocated as i128;
    u64::try_from(live).unwrap_or(0)
}

fn main() -> Result<(), BenchError> {
    let cli = Cli::parse();
    let memory = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(measure(
            integration::cluster().url(),
            cli.keys,
            live_heap_bytes,
        ))?;
    println!("{}", serde_json::to_string(&memory)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::live_heap_bytes;

    #[test]
    fn memory_grown_by_realloc_and_freed_is_not_live() {
        let before = i128::from(live_heap_bytes());
        // Grows by doubling, through about 14 reallocations, to 80 KB.
        let mut grown: Vec<u64> = Vec::with_capacity(1);
        grown.extend(0..10_000);
        drop(std::hint::black_box(grown));
        let after = i128::from(live_heap_bytes());
        assert!((after - before).abs() < 1024, "{before} -> {after}");
    }
}
