//! `bench`: the side-by-side benchmark `cargo xtask bench` builds and runs.
//!
//! `bench run` preloads the keys, runs every workload against every contender for several rounds,
//! each cell in a child process (`bench cell ...`, this same binary), and writes `report.md`,
//! `report.json` and `chart.svg`. With the hot-key workload it also runs `bench-cache-memory` (built
//! beside it) for the hot-key cache's memory per cached key. `bench hit-cost` measures the client CPU
//! of a request the hot-key cache answers, on one thread and on every core at once. The cluster is
//! `REDIS_CLUSTER_URL` (or a throwaway one the integration harness starts when it is unset).
// A benchmark that cannot reach its cluster or write its report has nothing better to do than fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Read as _;
use std::net::UdpSocket;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use integration::bench::BenchError;
use integration::bench::cache_memory::{CACHED_KEYS, CacheMemory};
use integration::bench::cluster::{PrimaryCommands, SlotMap, TrackerNodes, traffic};
use integration::bench::contenders::{
    CellFigures, CellOptions, Contender, TRACKER_SAMPLE_RATE, preload, run_cell,
    run_redis_benchmark, unload,
};
use integration::bench::hit_cost;
use integration::bench::report::{Cell, Machine, Report, Settings};
use integration::bench::workload::{
    KEY_COUNT, KeySpace, VALUE_SIZE, WRITE_SHARE, Workload, ZIPF_EXPONENT, workloads,
};

/// The smallest pool the monitored client gets; above it, one slot per task, so the pool never
/// caps concurrency below the raw contender's.
const MIN_MAX_CONNECTIONS: usize = 50;

/// The shortest warm-up of a hot-key cell. The tracker publishes the hot keys every second, the
/// hottest within the first; the less read ones need their second sampled read, which takes
/// seconds (at about 80,000 operations a second the published set held 6,600 keys after 10 s and
/// 8,000 to 9,700 from 15 s on), so the window opens on a cache that is mostly filled, as a
/// service's is once it has run for a while.
const HOT_WARMUP: f64 = 10.0;

/// The same with `--quick`: the first publication, a second in, finds the hottest keys.
const QUICK_HOT_WARMUP: f64 = 2.0;

#[derive(Debug, Parser)]
#[command(
    name = "bench",
    about = "Side-by-side benchmark of the monitored Redis Cluster client"
)]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Debug, Subcommand)]
enum Mode {
    /// Run the whole benchmark and write the report.
    Run(RunArgs),
    /// Run one cell in this process and print its figures as one JSON line (used by `run`).
    Cell(CellArgs),
    /// Client CPU per request the hot-key cache answers, on one thread and on every core at
    /// once, as one JSON line: what threads running the request path at once cost each other.
    HitCost(HitCostArgs),
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// The smoke-check version: short cells, under two minutes in all.
    #[arg(long)]
    quick: bool,
    /// Where the report, JSON and chart go.
    #[arg(long, default_value = "target/bench")]
    out: PathBuf,
    /// The command line to quote in the report.
    #[arg(long, default_value = "bench run")]
    command: String,
    /// Rounds (default 3).
    #[arg(long)]
    rounds: Option<usize>,
    /// Measured seconds per cell (default 10, or 1 with --quick).
    #[arg(long)]
    measure: Option<f64>,
    /// Warm-up seconds per cell (default 1, or 0.3 with --quick); hot-key cells warm up for at
    /// least 10 s (2 s with --quick).
    #[arg(long)]
    warmup: Option<f64>,
    /// Only these workloads, comma-separated ids (single-1, single-50, single-500, pipeline16-50,
    /// hotkeys-50).
    #[arg(long, value_delimiter = ',')]
    workloads: Vec<String>,
    /// Only these contenders, comma-separated (raw, aggregated, direct, redis-benchmark, traced,
    /// cached); the hot-key workload runs raw, aggregated and cached, the others all but cached.
    #[arg(long, value_delimiter = ',')]
    contenders: Vec<String>,
    /// `cache_max_keys` of contender (f) (default: the client's default, 10000).
    #[arg(long)]
    cache_max_keys: Option<usize>,
    /// Keys cached for the cache-memory measurement, which runs with the hot-key workload
    /// (default 10000, or 1000 with --quick; 0 skips it).
    #[arg(long)]
    cache_memory_keys: Option<usize>,
    /// Leave the preloaded keys in place (for a throwaway cluster).
    #[arg(long)]
    keep_keys: bool,
}

#[derive(Debug, clap::Args)]
struct HitCostArgs {
    /// Requests per task in each window.
    #[arg(long, default_value_t = 400_000)]
    requests: u64,
    /// `host:port` of a statsd sink in another process for the request metrics; by default they
    /// are formatted and discarded (a sink in this process would add its own CPU time).
    #[arg(long, default_value = "")]
    statsd: String,
}

#[derive(Debug, clap::Args)]
struct CellArgs {
    #[arg(long)]
    contender: String,
    #[arg(long)]
    workload: String,
    #[arg(long)]
    warmup: f64,
    #[arg(long)]
    measure: f64,
    #[arg(long)]
    seed: u64,
    #[arg(long)]
    statsd: String,
    #[arg(long)]
    max_connections: usize,
    #[arg(long, default_value_t = 100_000)]
    requests: u64,
    #[arg(long)]
    cache_max_keys: Option<usize>,
}

fn main() -> Result<(), BenchError> {
    match Cli::parse().mode {
        Mode::Run(args) => run(args),
        Mode::Cell(args) => {
            let figures = cell(args)?;
            println!("{}", serde_json::to_string(&figures)?);
            Ok(())
        }
        Mode::HitCost(args) => {
            let cost =
                hit_cost::measure(integration::cluster().url(), &args.statsd, args.requests)?;
            println!("{}", serde_json::to_string(&cost)?);
            Ok(())
        }
    }
}

fn cell(args: CellArgs) -> Result<CellFigures, BenchError> {
    let contender = Contender::parse(&args.contender)?;
    let options = CellOptions {
        url: integration::cluster().url().to_owned(),
        workload: Workload::parse(&args.workload)?,
        warmup: Duration::from_secs_f64(args.warmup),
        measure: Duration::from_secs_f64(args.measure),
        seed: args.seed,
        statsd: args.statsd,
        max_connections: args.max_connections,
        requests: args.requests,
        cache_max_keys: args.cache_max_keys,
    };
    if contender == Contender::RedisBenchmark {
        return run_redis_benchmark(&options);
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(async {
            let slots = SlotMap::fetch(integration::cluster()).await?;
            let primaries = if options.workload.is_hot_keys() {
                Some(PrimaryCommands::connect(slots.primaries()).await?)
            } else {
                None
            };
            run_cell(contender, &options, slots, primaries).await
        })
}

/// Counts the statsd packets the monitored contenders send, on a thread of the parent so the
/// cells' CPU time is their own.
struct StatsdSink {
    addr: String,
    packets: Arc<AtomicU64>,
}

impl StatsdSink {
    fn start() -> Result<Self, BenchError> {
        let socket = UdpSocket::bind("127.0.0.1:0")?;
        let addr = socket.local_addr()?.to_string();
        let packets = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&packets);
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65_536];
            while socket.recv(&mut buf).is_ok() {
                counter.fetch_add(1, Ordering::Relaxed);
            }
        });
        Ok(Self { addr, packets })
    }

    /// Packets so far, once the count has stopped moving (the sender has exited).
    fn settled(&self) -> u64 {
        let mut last = self.packets.load(Ordering::Relaxed);
        loop {
            std::thread::sleep(Duration::from_millis(30));
            let now = self.packets.load(Ordering::Relaxed);
            if now == last {
                return now;
            }
            last = now;
        }
    }
}

fn run(args: RunArgs) -> Result<(), BenchError> {
    let started = Instant::now();
    let rounds = args.rounds.unwrap_or(3).max(1);
    let measure = args.measure.unwrap_or(if args.quick { 1.0 } else { 10.0 });
    let warmup = args.warmup.unwrap_or(if args.quick { 0.3 } else { 1.0 });
    let cache_memory_keys =
        args.cache_memory_keys
            .unwrap_or(if args.quick { 1_000 } else { CACHED_KEYS });
    let chosen_workloads: Vec<Workload> = if args.workloads.is_empty() {
        workloads()
    } else {
        args.workloads
            .iter()
            .map(|w| Workload::parse(w))
            .collect::<Result<_, _>>()?
    };
    let contenders: Vec<Contender> = if args.contenders.is_empty() {
        Contender::ALL.to_vec()
    } else {
        args.contenders
            .iter()
            .map(|c| Contender::parse(c))
            .collect::<Result<_, _>>()?
    };

    let cluster = integration::cluster();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let keys = KeySpace::new();
    let (slots, tracker_nodes) = runtime.block_on(async {
        let slots = SlotMap::fetch(cluster).await?;
        let tracker_nodes = TrackerNodes::find(cluster).await?;
        let conn = cluster.connection().await;
        let preloading = Instant::now();
        preload(&conn, &keys, &slots).await?;
        eprintln!(
            "preloaded {KEY_COUNT} keys of {VALUE_SIZE} bytes in {:.1} s",
            preloading.elapsed().as_secs_f64()
        );
        Ok::<_, BenchError>((slots, tracker_nodes))
    })?;
    let sink = StatsdSink::start()?;
    let exe = std::env::current_exe()?;

    let mut cells = Vec::new();
    for round in 0..rounds {
        for (w, &workload) in chosen_workloads.iter().enumerate() {
            // Rotate the order each round and workload, so no contender always runs first.
            let mut order: Vec<Contender> = contenders
                .iter()
                .copied()
                .filter(|c| c.runs_on(workload))
                .collect();
            let warmup = if workload.is_hot_keys() {
                warmup.max(if args.quick {
                    QUICK_HOT_WARMUP
                } else {
                    HOT_WARMUP
                })
            } else {
                warmup
            };
            let shift = (round + w) % order.len().max(1);
            order.rotate_left(shift);
            for contender in order {
                let requests = redis_benchmark_requests(&cells, workload, measure);
                let max_connections = workload.tasks.max(MIN_MAX_CONNECTIONS);
                let before = runtime.block_on(tracker_nodes.snapshot(cluster))?;
                let packets_before = sink.settled();
                let cache_max_keys = args.cache_max_keys.map(|k| k.to_string());
                let cache_args = match &cache_max_keys {
                    Some(keys) => vec!["--cache-max-keys", keys.as_str()],
                    None => Vec::new(),
                };
                let figures = run_child(
                    &exe,
                    &[
                        &[
                            "cell",
                            "--contender",
                            contender.id(),
                            "--workload",
                            &workload.id(),
                            "--warmup",
                            &warmup.to_string(),
                            "--measure",
                            &measure.to_string(),
                            "--seed",
                            &((round as u64) << 32 | w as u64).to_string(),
                            "--statsd",
                            &sink.addr,
                            "--max-connections",
                            &max_connections.to_string(),
                            "--requests",
                            &requests.to_string(),
                        ][..],
                        &cache_args,
                    ]
                    .concat(),
                    cluster.url(),
                    Duration::from_secs_f64(warmup + measure) * 3 + Duration::from_secs(60),
                )?;
                let after = runtime.block_on(tracker_nodes.snapshot(cluster))?;
                let statsd_packets = sink.settled() - packets_before;
                let cell = Cell {
                    round,
                    workload,
                    contender,
                    figures,
                    tracker: traffic(&before, &after),
                    statsd_packets,
                };
                eprintln!(
                    "round {}/{rounds}  {:<28} {:<43} {:>9.0} ops/s  p99 {:>8.1} µs  CPU {:>5.1} µs/op  tracker {:>5} cmds{}{}{}",
                    round + 1,
                    workload.to_string(),
                    contender.label(),
                    cell.figures.ops_per_sec,
                    cell.figures.latency.map_or(0.0, |l| l.p99_us),
                    cell.figures.cpu_us_per_op,
                    cell.tracker.commands,
                    cell.spans_per_request()
                        .map_or(String::new(), |s| format!("  {s:.2} spans/request")),
                    hot_key_figures(&cell.figures),
                    match (&cell.figures.first_error, cell.figures.errors) {
                        (Some(e), n) => format!("  {n} errors, first: {e}"),
                        _ => String::new(),
                    }
                );
                cells.push(cell);
            }
        }
    }

    let cache_memory =
        if cache_memory_keys > 0 && chosen_workloads.iter().any(Workload::is_hot_keys) {
            cache_memory(&exe, cluster.url(), cache_memory_keys)?
        } else {
            None
        };

    if !args.keep_keys {
        runtime.block_on(async {
            let conn = cluster.connection().await;
            unload(&conn, &keys, &slots).await
        })?;
    }

    let report = Report {
        command: args.command,
        machine: machine(cluster),
        settings: Settings {
            rounds,
            warmup_s: warmup,
            measure_s: measure,
            keys: KEY_COUNT,
            value_size: VALUE_SIZE,
            write_share: WRITE_SHARE,
            zipf_exponent: ZIPF_EXPONENT,
            tracker_sample_rate: TRACKER_SAMPLE_RATE,
            max_connections: format!(
                "max({MIN_MAX_CONNECTIONS}, tasks), so the pool never caps concurrency below the raw connection's"
            ),
            workloads: chosen_workloads,
            cache_max_keys: args.cache_max_keys,
        },
        cells,
        cache_memory,
    };
    std::fs::create_dir_all(&args.out)?;
    let markdown = report.to_markdown();
    std::fs::write(args.out.join("report.md"), &markdown)?;
    std::fs::write(args.out.join("report.json"), report.to_json()?)?;
    // The chart plots the standard single-command workloads against concurrency; a run of only
    // pipelines or hot keys has none.
    let charted = report
        .settings
        .workloads
        .iter()
        .any(|w| !w.is_pipeline() && !w.is_hot_keys());
    if charted {
        std::fs::write(
            args.out.join("chart.svg"),
            integration::bench::chart::render_svg(&report)?,
        )?;
    }
    let headline: String = markdown
        .split("\n## ")
        .find(|section| section.starts_with("Headline"))
        .unwrap_or_default()
        .to_owned();
    println!("## {}", headline.trim_end());
    println!(
        "\nwrote {}/report.md, report.json{} in {:.0} s",
        args.out.display(),
        if charted { " and chart.svg" } else { "" },
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// How many commands `redis-benchmark` sends: about a measured window's worth at the rate it last
/// reached on this workload, else at the raw connection's latest rate, else at a guess; at least
/// 20,000.
fn redis_benchmark_requests(cells: &[Cell], workload: Workload, measure: f64) -> u64 {
    let latest = |contender: Contender| {
        cells
            .iter()
            .rev()
            .find(|c| c.workload == workload && c.contender == contender)
            .map(|c| c.figures.ops_per_sec)
    };
    let guess = if workload.is_pipeline() {
        150_000.0
    } else if workload.tasks == 1 {
        10_000.0
    } else {
        40_000.0
    };
    let rate = latest(Contender::RedisBenchmark)
        .or_else(|| latest(Contender::Raw))
        .unwrap_or(guess);
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let requests = (rate * measure) as u64;
    requests.max(20_000)
}

/// Runs `bench-cache-memory` (beside `exe`) for `keys` keys; `None` when it was not built.
fn cache_memory(
    exe: &std::path::Path,
    url: &str,
    keys: usize,
) -> Result<Option<CacheMemory>, BenchError> {
    let program = exe.with_file_name("bench-cache-memory");
    if !program.exists() {
        eprintln!(
            "no {} (cargo build --release -p integration --bin bench-cache-memory): cache memory not measured",
            program.display()
        );
        return Ok(None);
    }
    let memory: CacheMemory = run_child(
        &program,
        &["--keys", &keys.to_string()],
        url,
        Duration::from_secs(180),
    )?;
    eprintln!(
        "cache memory: {:.0} bytes of heap per cached key ({} keys cached; VmRSS grew {:.0} bytes per key)",
        memory.bytes_per_key(),
        memory.cached,
        memory.rss_bytes_per_key()
    );
    Ok(Some(memory))
}

/// `  busiest primary N cmds  cache hits S%` for a hot-key cell, or nothing.
fn hot_key_figures(figures: &CellFigures) -> String {
    let mut text = String::new();
    if let Some(busiest) = figures.busiest_primary_commands {
        text.push_str(&format!("  busiest primary {busiest} cmds"));
    }
    if let Some(cache) = figures.cache {
        text.push_str(&format!(
            "  cache hits {:.1}% ({} hits, {} misses, {} invalidations)",
            cache.hit_share() * 100.0,
            cache.hits,
            cache.misses,
            cache.invalidations
        ));
    }
    text
}

/// Runs `exe args...` with the cluster's URL, waits at most `timeout`, and reads its JSON line.
fn run_child<T: serde::de::DeserializeOwned>(
    exe: &std::path::Path,
    args: &[&str],
    url: &str,
    timeout: Duration,
) -> Result<T, BenchError> {
    let mut child = Command::new(exe)
        .args(args)
        .env("REDIS_CLUSTER_URL", url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("`bench {}` took longer than {timeout:?}", args.join(" ")).into());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stdout = String::new();
    if let Some(mut out) = child.stdout.take() {
        out.read_to_string(&mut stdout)?;
    }
    if !status.success() {
        return Err(format!("`bench {}` failed ({status})", args.join(" ")).into());
    }
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).map_err(|e| {
        format!(
            "`bench {}` printed no figures ({e}): {stdout}",
            args.join(" ")
        )
        .into()
    })
}

fn machine(cluster: &integration::TestCluster) -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")?
                .split_once(':')
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|k| k.trim().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned());
    Machine {
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        cpu_model,
        kernel,
        redis_version: cluster_launcher::check_redis_server()
            .unwrap_or_else(|_| "unknown".to_owned()),
        cluster: format!(
            "{} primaries + {} replicas on this machine, seed {}",
            cluster.primaries(),
            cluster.primaries() * cluster.replicas_per_primary(),
            cluster.url()
        ),
        note: "Client, cluster and redis-benchmark share these CPUs, and other work may run on \
               the machine meanwhile: absolute figures drift between runs, ratios taken within a \
               round hold better."
            .to_owned(),
    }
}
