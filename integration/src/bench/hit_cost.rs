//! What a request the hot-key cache answers costs in client CPU, on one thread and on every core
//! at once: contender (f) sends the same cached `GET` as whole requests (a context, a server
//! span, the client from the context, the command) until the cache answers it, then one task
//! sends `requests` of them, then one task per core does. Nothing reaches Redis in either window,
//! so the process's CPU time per request is the request path's own; the second figure over the
//! first is what threads running that path at once cost each other (shared locks, counters and
//! reference counts each thread writes).

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::bench::BenchError;
use crate::bench::contenders::{
    CellOptions, Contender, Driver as _, Monitored, monitored_baseplate_with_pool,
};
use crate::bench::stats::cpu_times;
use crate::bench::workload::{KeySpace, Op, Workload};

/// The read every request sends: `GET` of the hottest key.
const READ: [Op; 1] = [Op {
    key: 0,
    write: false,
}];

/// The longest the key may take to be found hot and cached.
const CACHING_DEADLINE: Duration = Duration::from_secs(30);

/// What the measurement found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HitCost {
    /// Requests per window (per task in the second).
    pub requests: u64,
    /// Cores, and tasks in the second window.
    pub threads: usize,
    /// Client CPU per request, one task, µs.
    pub one_thread_cpu_us: f64,
    /// Client CPU per request, one task per core, µs.
    pub all_threads_cpu_us: f64,
}

/// Measures through contender (f) of the cluster at `url`, its metrics sent to `statsd` (empty:
/// formatted and discarded), on a runtime with a worker per core.
///
/// # Errors
/// When the client cannot be configured, a request fails, or the cache never answers.
pub fn measure(url: &str, statsd: &str, requests: u64) -> Result<HitCost, BenchError> {
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let options = CellOptions {
        url: url.to_owned(),
        workload: Workload::hot_keys(threads),
        warmup: Duration::ZERO,
        measure: Duration::ZERO,
        seed: 0,
        statsd: statsd.to_owned(),
        max_connections: threads,
        // Read by `redis-benchmark`'s cells only.
        requests: 0,
        cache_max_keys: None,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let (baseplate, pool) = monitored_baseplate_with_pool(Contender::Cached, &options)?;
        let pool = pool.ok_or("contender (f) made no pool")?;
        let mut driver = Monitored {
            baseplate: Arc::new(baseplate),
            keys: Arc::new(KeySpace::new()),
        };
        let cached = || pool.cache_stats().map_or(0, |stats| stats.hits);
        let started = Instant::now();
        loop {
            let before = cached();
            for _ in 0..100 {
                driver.request(&READ).await?;
            }
            if cached() - before == 100 {
                break;
            }
            if started.elapsed() > CACHING_DEADLINE {
                return Err("the hot-key cache never answered the key".into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let before = cached();
        let one_thread_cpu_us = cpu_per_request(&driver, 1, requests).await?;
        let all_threads_cpu_us = cpu_per_request(&driver, threads, requests).await?;
        let answered = cached() - before;
        let sent = requests * (1 + threads as u64);
        if answered != sent {
            return Err(format!("the cache answered {answered} of {sent} requests").into());
        }
        driver.baseplate.shutdown().await;
        Ok(HitCost {
            requests,
            threads,
            one_thread_cpu_us,
            all_threads_cpu_us,
        })
    })
}

/// Process CPU per request while `tasks` tasks each send `requests`.
async fn cpu_per_request(
    driver: &Monitored,
    tasks: usize,
    requests: u64,
) -> Result<f64, BenchError> {
    let cpu_before = cpu_times().own;
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            let mut driver = driver.clone();
            tokio::spawn(async move {
                for _ in 0..requests {
                    driver.request(&READ).await?;
                }
                Ok::<_, redis::RedisError>(())
            })
        })
        .collect();
    for handle in handles {
        handle.await??;
    }
    let cpu = cpu_times().own.saturating_sub(cpu_before);
    #[allow(clippy::cast_precision_loss)]
    let per_request = cpu.as_secs_f64() * 1e6 / (requests * tasks as u64) as f64;
    Ok(per_request)
}
