//! The `chaos` binary behind `cargo xtask chaos`: runs the chaos scenarios, each on a cluster of its
//! own, and prints what the client did under each fault, then a summary table.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use integration::chaos::load::{OpRecord, Outcome};
use integration::chaos::observe::observer;
use integration::chaos::report::{BUCKET, LATE_MARGIN, NORMAL_SHARE};
use integration::chaos::{ChaosOptions, Report, Scenario};

/// Runs the chaos scenarios against throwaway clusters and prints a table.
#[derive(Debug, Parser)]
#[command(name = "chaos")]
struct Args {
    /// Run only this scenario (repeatable): kill-primary, hang-primary, restart-node, reshard,
    /// pool-exhaustion, tracker-and-metrics-faults, blocking-commands, cluster-down,
    /// cluster-restart, pubsub-kill-primary, hot-key-cache.
    #[arg(long = "scenario", value_name = "NAME")]
    scenarios: Vec<Scenario>,
    /// Seconds of load per scenario, the fault included (a scenario runs longer when its fault
    /// needs it).
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Operations per second of the load.
    #[arg(long, default_value_t = 1500.0)]
    rate: f64,
    /// Concurrent load workers (pinned to the primaries' slots, a third each).
    #[arg(long, default_value_t = 24)]
    workers: usize,
    /// Also write every operation of each scenario to `DIR/<scenario>.csv` (kind, slot, start and
    /// duration in milliseconds, outcome), for a closer look.
    #[arg(long, value_name = "DIR")]
    dump: Option<std::path::PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let scenarios = if args.scenarios.is_empty() {
        Scenario::ALL.to_vec()
    } else {
        args.scenarios.clone()
    };
    let mut options = ChaosOptions::full().with_load(Duration::from_secs(args.seconds.max(4)));
    options.ops_per_second = args.rate;
    options.workers = args.workers;
    observer();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    println!(
        "chaos: {} scenario(s), {} s of load each at {} ops/s from {} workers, client timeout {} s; \
         each on its own 3 primaries + 6 replicas cluster from `redis-server` on PATH",
        scenarios.len(),
        options.load.as_secs(),
        options.ops_per_second,
        options.workers,
        options.timeout.as_secs_f64()
    );
    let started = Instant::now();
    let mut reports: Vec<Report> = Vec::new();
    for scenario in scenarios {
        println!();
        println!("running {scenario} ...");
        let (report, load) =
            runtime.block_on(integration::chaos::run_with_records(scenario, &options));
        println!("{report}");
        if let Some(dir) = &args.dump {
            let path = dir.join(format!("{scenario}.csv"));
            std::fs::create_dir_all(dir).expect("creating the dump directory");
            std::fs::write(&path, csv(&load.records)).expect("writing the dump");
            println!("operations written to {}", path.display());
        }
        reports.push(report);
    }
    println!();
    println!("{}", Report::table_header());
    for report in &reports {
        println!("{}", report.table_row());
    }
    println!();
    println!(
        "ops: operations attempted (writes are SET+WAIT 1 100 in a named pipeline, reads are GETs of durable writes, \
         pool-exhaustion and blocking-commands add BLPOPs); ok: succeeded; failed: the client returned an error (kinds above); \
         stale: reads of a durable write that found nothing; no-succ: longest window without any success; \
         normal@: time from the fault until the success rate was back to normal for good ({} buckets with no \
         failure and at least {:.0}% of the pre-fault successes); acked(durable): writes acknowledged (confirmed by a \
         replica); missing: acknowledged writes not there afterwards, durable + not replicated (the latter are lost \
         by design when a primary dies before replicating: Redis replicates asynchronously); late: calls longer \
         than their deadline (timeout, or socket_timeout when longer) + {} (must be 0).",
        integration::chaos::report::secs(BUCKET),
        NORMAL_SHARE * 100.0,
        integration::chaos::report::secs(LATE_MARGIN)
    );
    println!("total time {:.0} s", started.elapsed().as_secs_f64());
    if reports.iter().all(Report::passed) {
        ExitCode::SUCCESS
    } else {
        println!("some invariants did not hold: see the FAIL lines above");
        ExitCode::FAILURE
    }
}

fn csv(records: &[OpRecord]) -> String {
    let mut records = records.to_vec();
    records.sort_by_key(|r| r.started);
    let mut out = String::from("kind,slot,started_ms,took_ms,outcome\n");
    for r in records {
        let outcome = match &r.outcome {
            Outcome::Ok => "ok".to_owned(),
            Outcome::Failed(kind) => kind.to_string(),
            Outcome::StaleRead => "stale-read".to_owned(),
            Outcome::WrongValue => "wrong-value".to_owned(),
        };
        out.push_str(&format!(
            "{:?},{},{:.3},{:.3},{outcome}\n",
            r.kind,
            r.slot,
            r.started.as_secs_f64() * 1000.0,
            r.took.as_secs_f64() * 1000.0
        ));
    }
    out
}
