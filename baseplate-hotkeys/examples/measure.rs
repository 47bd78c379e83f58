//! Measures both tracking modes on a real cluster: 1,000,000 GETs of Zipf(1.0) keys over 100,000 keys,
//! observed at a 1% read sample rate; prints the tracker's commands and round trips and the precision@10
//! of the resulting set against exact counts of the sampled keys.
//!
//! ```text
//! REDIS_CLUSTER_URL=redis://127.0.0.1:7000 cargo run --release -p baseplate-hotkeys --example measure
//! ```
//!
//! It writes (and finally deletes) the tracker's global sets, so run it when no test uses them. The
//! GETs are not executed: only what the tracker does is measured. Both modes see the same commands and,
//! through a seeded sampling generator, sample the same ones; the example replays the sampling decisions
//! to count the sampled keys exactly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::time::Instant;

use baseplate_hotkeys::{
    HotKeyTracker, SampleRate, TrackKeyMode, TrackedSet, TrackerOptions, seed_thread_rng, top_keys,
};
use rand::rngs::SmallRng;
use rand::{Rng as _, SeedableRng as _};
use rand_distr::{Distribution as _, Zipf};
use redis::cluster::ClusterClient;

const GETS: usize = 1_000_000;
const KEYS: u32 = 100_000;
const RATE: f64 = 0.01;
const SEED: u64 = 2024;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url =
        std::env::var("REDIS_CLUSTER_URL").unwrap_or_else(|_| "redis://127.0.0.1:7000".into());
    let client = ClusterClient::new(vec![url.as_str()])?;
    let mut conn = client.get_async_connection().await?;

    let zipf = Zipf::new(f64::from(KEYS), 1.0)?;
    let mut rng = SmallRng::seed_from_u64(SEED);
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let stream: Vec<u32> = (0..GETS).map(|_| zipf.sample(&mut rng) as u32).collect();
    let commands: Vec<redis::Cmd> = (0..=KEYS)
        .map(|rank| {
            let mut get = redis::cmd("GET");
            get.arg(format!("measure:key:{rank}"));
            get
        })
        .collect();
    let rate = SampleRate::new("reads_sample_rate", RATE)?;

    println!(
        "{GETS} GETs, Zipf(1.0) over {KEYS} keys, reads sampled at {RATE}, default options otherwise"
    );
    println!(
        "{:<10} {:>8} {:>8} {:>8} {:>14} {:>11} {:>12} {:>14} {:>13} {:>12}",
        "mode",
        "sampled",
        "dropped",
        "failures",
        "commands_sent",
        "round_trips",
        "precision@10",
        "top10 max err",
        "observe ns/op",
        "written hits"
    );
    for mode in [TrackKeyMode::Direct, TrackKeyMode::Aggregated] {
        for set in TrackedSet::ALL {
            redis::cmd("DEL")
                .arg(set.key())
                .exec_async(&mut conn)
                .await?;
        }
        let options = TrackerOptions::default()
            .with_reads_sample_rate(RATE)
            .with_mode(mode)
            // Big enough that no sample is dropped while the loop outpaces the writer: the figures are
            // then the modes' own costs, not the queue's.
            .with_queue_capacity(2 * GETS / 100);
        let tracker = HotKeyTracker::start(client.get_async_connection().await?, options)?;

        seed_thread_rng(SEED);
        let mut shadow = SmallRng::seed_from_u64(SEED);
        let mut exact: HashMap<u32, u64> = HashMap::new();
        let mut observing = std::time::Duration::ZERO;
        for chunk in stream.chunks(10_000) {
            let started = Instant::now();
            for &rank in chunk {
                tracker.observe(&commands[rank as usize]);
            }
            observing += started.elapsed();
            // Replays the decisions observe() just made, outside the timed part.
            for &rank in chunk {
                if rate.sample_from(shadow.next_u64()) {
                    *exact.entry(rank).or_default() += 1;
                }
            }
        }
        tracker.shutdown().await;
        let stats = tracker.stats();
        assert_eq!(
            stats.sampled,
            exact.values().sum::<u64>(),
            "replayed sampling agrees"
        );

        let top = top_keys(&mut conn, TrackedSet::Reads, 10).await?;
        let all = top_keys(&mut conn, TrackedSet::Reads, 1_000_000).await?;
        let written: f64 = all.iter().map(|(_, s)| s).sum();
        let precision = precision_at_10(&top, &exact);
        let max_error = top
            .iter()
            .map(|(key, score)| (score - exact_count(key, &exact) as f64).abs())
            .fold(0.0, f64::max);
        #[allow(clippy::cast_precision_loss)]
        let ns_per_op = observing.as_nanos() as f64 / GETS as f64;
        println!(
            "{:<10} {:>8} {:>8} {:>8} {:>14} {:>11} {:>12.2} {:>14} {:>13.1} {:>12}",
            mode.to_string(),
            stats.sampled,
            stats.dropped,
            stats.failures,
            stats.commands_sent,
            stats.round_trips,
            precision,
            max_error,
            ns_per_op,
            written
        );
    }
    for set in TrackedSet::ALL {
        redis::cmd("DEL")
            .arg(set.key())
            .exec_async(&mut conn)
            .await?;
    }

    // observe() alone, one command in cache, against a tracker with no writer to compete with.
    let tracker = HotKeyTracker::start(
        client.get_async_connection().await?,
        TrackerOptions::default()
            .with_reads_sample_rate(RATE)
            .with_queue_capacity(2 * GETS / 100),
    )?;
    let get = &commands[1];
    let started = Instant::now();
    for _ in 0..GETS {
        tracker.observe(std::hint::black_box(get));
    }
    #[allow(clippy::cast_precision_loss)]
    let ns_per_op = started.elapsed().as_nanos() as f64 / GETS as f64;
    println!("observe() of one cached GET at rate {RATE}: {ns_per_op:.1} ns/op");
    let idle = HotKeyTracker::disabled();
    let started = Instant::now();
    for _ in 0..GETS {
        idle.observe(std::hint::black_box(get));
    }
    #[allow(clippy::cast_precision_loss)]
    let ns_per_op = started.elapsed().as_nanos() as f64 / GETS as f64;
    println!("observe() on a disabled tracker: {ns_per_op:.1} ns/op");
    tracker.shutdown().await;
    for set in TrackedSet::ALL {
        redis::cmd("DEL")
            .arg(set.key())
            .exec_async(&mut conn)
            .await?;
    }
    Ok(())
}

fn exact_count(key: &[u8], exact: &HashMap<u32, u64>) -> u64 {
    std::str::from_utf8(key)
        .ok()
        .and_then(|k| k.strip_prefix("measure:key:"))
        .and_then(|rank| rank.parse::<u32>().ok())
        .and_then(|rank| exact.get(&rank))
        .copied()
        .unwrap_or(0)
}

/// The share of the set's top 10 that is in the exact top 10 (a key tied with the exact 10th counts).
fn precision_at_10(top: &[(Vec<u8>, f64)], exact: &HashMap<u32, u64>) -> f64 {
    let mut counts: Vec<u64> = exact.values().copied().collect();
    counts.sort_unstable_by(|a, b| b.cmp(a));
    let tenth = counts.get(9).copied().unwrap_or(0);
    let hits = top
        .iter()
        .take(10)
        .filter(|(key, _)| exact_count(key, exact) >= tenth.max(1))
        .count();
    #[allow(clippy::cast_precision_loss)]
    let precision = hits as f64 / 10.0;
    precision
}
