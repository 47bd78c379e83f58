//! Throughput of the monitored client against one shared raw redis-rs `ClusterConnection`, side by
//! side in one run, at 50 and 500 concurrent tasks (90% GET, 10% SET of 100-byte values).
//!
//! ```text
//! cargo xtask cluster up
//! cargo run --release -p baseplate-redis-cluster --example throughput -- redis://127.0.0.1:7000 [ROUNDS]
//! ```
//!
//! Contenders alternate within each round, so drift on a shared machine hits both alike; the
//! figures printed are medians over the rounds, and the ratio is monitored / raw.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use baseplate_config::RawConfig;
use baseplate_redis_cluster::ClusterRedisClient;
use rand::RngExt as _;
use redis::aio::ConnectionLike;
use redis::cluster::ClusterClient;

const KEYS: u64 = 10_000;
const ROUND: Duration = Duration::from_secs(3);

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "redis://127.0.0.1:7000".to_owned());
    let rounds: usize = std::env::args()
        .nth(2)
        .and_then(|r| r.parse().ok())
        .unwrap_or(5);
    let raw = ClusterClient::new(vec![url.as_str()])
        .unwrap()
        .get_async_connection()
        .await
        .expect("connecting to the cluster");
    let value = vec![b'x'; 100];
    {
        let mut conn = raw.clone();
        for key in 0..KEYS {
            let _: () = redis::cmd("SET")
                .arg(format!("bench:{key}"))
                .arg(&value)
                .query_async(&mut conn)
                .await
                .unwrap();
        }
    }

    println!("tasks  raw ops/s  monitored ops/s  ratio (medians of {rounds} rounds of {ROUND:?})");
    for tasks in [50usize, 500] {
        let config: RawConfig = [
            ("foo.url", url.clone()),
            ("foo.max_connections", tasks.to_string()),
            ("foo.read_from_replicas", "false".to_owned()),
        ]
        .into_iter()
        .collect();
        let factory = ClusterRedisClient::new().parse("foo", &config).unwrap();
        let monitored = factory.make_object_for_context("foo", &tracing::Span::none());

        let (mut raw_rates, mut raw_cpu) = (Vec::new(), Vec::new());
        let (mut monitored_rates, mut monitored_cpu) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            let (rate, cpu) = run(raw.clone(), tasks, &value).await;
            raw_rates.push(rate);
            raw_cpu.push(cpu);
            let (rate, cpu) = run(monitored.clone(), tasks, &value).await;
            monitored_rates.push(rate);
            monitored_cpu.push(cpu);
        }
        let (r, m) = (median(&mut raw_rates), median(&mut monitored_rates));
        let (rc, mc) = (median(&mut raw_cpu), median(&mut monitored_cpu));
        println!("{tasks:>5}  {r:>9.0}  {m:>15.0}  {:.3}", m / r);
        println!("       client CPU per op: raw {rc:.2} us, monitored {mc:.2} us");
        println!("       raw rounds {raw_rates:.0?}, monitored rounds {monitored_rates:.0?}");
    }
}

/// Runs `tasks` loops of 90% GET / 10% SET for one round; returns operations per second and this
/// process's CPU time per operation in microseconds.
async fn run<C>(conn: C, tasks: usize, value: &[u8]) -> (f64, f64)
where
    C: ConnectionLike + Clone + Send + 'static,
{
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let cpu_before = cpu_time();
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            let mut conn = conn.clone();
            let (stop, done, value) = (Arc::clone(&stop), Arc::clone(&done), value.to_vec());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let (key, write) = {
                        let mut rng = rand::rng();
                        (rng.random_range(0..KEYS), rng.random_bool(0.1))
                    };
                    let key = format!("bench:{key}");
                    let result = if write {
                        redis::cmd("SET")
                            .arg(&key)
                            .arg(&value)
                            .query_async::<()>(&mut conn)
                            .await
                    } else {
                        redis::cmd("GET")
                            .arg(&key)
                            .query_async::<Option<Vec<u8>>>(&mut conn)
                            .await
                            .map(drop)
                    };
                    result.expect("a benchmark command failed");
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    tokio::time::sleep(ROUND).await;
    stop.store(true, Ordering::Relaxed);
    for handle in handles {
        handle.await.unwrap();
    }
    let ops = done.load(Ordering::Relaxed) as f64;
    let cpu = cpu_time() - cpu_before;
    (
        ops / started.elapsed().as_secs_f64(),
        cpu.as_secs_f64() * 1e6 / ops,
    )
}

/// User plus system CPU time of this process so far, from `/proc/self/stat` (Linux, 10 ms ticks).
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i).and_then(|f| f.parse::<u64>().ok()))
        .sum();
    Duration::from_millis(ticks * 10)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}
