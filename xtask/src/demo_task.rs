//! `cargo xtask demo`: the main job in one command. A throwaway cluster, a statsd listener, and the
//! demo service (`baseplate/examples/demo.rs`, an axum HTTP service) configured from an INI file
//! like a real service's, driven with HTTP traffic; then the statsd metrics it sent, summarised.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::net::UdpSocket;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use cluster_launcher::{Cluster, ClusterSpec, check_redis_server, free_base_port, stop_dir};

/// Options of `cargo xtask demo`.
#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// How long the traffic runs.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Concurrent workers, each sending one request after another.
    #[arg(long, default_value_t = 64)]
    workers: usize,
}

pub(crate) fn run(args: DemoArgs) -> Result<()> {
    check_redis_server()?;
    // The README's example cluster (port 7000) when its ports are free, else any free ones.
    let base_port = if (7000..7006).all(|p| {
        std::net::TcpListener::bind(("127.0.0.1", p)).is_ok()
            && std::net::TcpListener::bind(("127.0.0.1", p + 10_000)).is_ok()
    }) {
        7000
    } else {
        free_base_port(6)?
    };
    let dir = xtask::state_dir().join(format!("demo-{base_port}"));
    eprintln!("starting a Redis Cluster (3 primaries, 3 replicas) on ports {base_port}..");
    let cluster = Cluster::start(ClusterSpec::new(base_port, &dir))?;
    // Ctrl-C ends this process and the service; the watchdog then stops the cluster.
    cluster.stop_when_process_exits(std::process::id())?;
    let _stop = StopOnDrop(dir);

    let statsd = Statsd::start()?;
    let config = write_config(base_port, statsd.port)?;
    eprintln!("service config {}:\n", config.display());
    eprintln!("{}", fs::read_to_string(&config)?);

    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args([
            "run",
            "--release",
            "--quiet",
            "-p",
            "baseplate",
            "--example",
            "demo",
            "--",
        ])
        .arg(&config)
        .args(["--seconds", &args.seconds.to_string()])
        .args(["--workers", &args.workers.to_string()])
        .status()
        .context("running the demo service")?;
    if !status.success() {
        bail!("the demo service failed ({status})");
    }
    // The last packets of the service may still be in flight on loopback.
    thread::sleep(Duration::from_millis(200));
    println!("\nStatsd metrics received on 127.0.0.1:{}:\n", statsd.port);
    print!("{}", summarize(&statsd.stop()));
    Ok(())
}

/// Stops the demo cluster however `run` returns.
struct StopOnDrop(PathBuf);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        if let Err(error) = stop_dir(&self.0) {
            eprintln!("stopping the demo cluster: {error:#}");
        }
    }
}

/// The INI file of the README's quick start, with the demo cluster's port and the listener.
fn write_config(port: u16, statsd_port: u16) -> Result<PathBuf> {
    let path = xtask::state_dir().join("demo.ini");
    fs::create_dir_all(xtask::state_dir())?;
    let text = format!(
        "[app:main]\n\
         metrics.namespace = demo\n\
         metrics.endpoint = 127.0.0.1:{statsd_port}\n\
         \n\
         foo.url = redis://localhost:{port}/0\n\
         foo.max_connections = 99\n\
         foo.timeout = 3 seconds\n\
         foo.read_from_replicas = true\n\
         foo.track_key_reads_sample_rate = 0.01\n\
         foo.track_key_writes_sample_rate = 0.01\n\
         foo.cache_hot_keys = true\n"
    );
    fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// A statsd listener on loopback, collecting packets on a thread of its own.
struct Statsd {
    port: u16,
    packets: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: thread::JoinHandle<()>,
}

impl Statsd {
    fn start() -> Result<Statsd> {
        let socket = UdpSocket::bind("127.0.0.1:0").context("binding the statsd listener")?;
        socket.set_read_timeout(Some(Duration::from_millis(100)))?;
        let port = socket.local_addr()?.port();
        let packets = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (packets, stop) = (Arc::clone(&packets), Arc::clone(&stop));
            thread::spawn(move || {
                let mut buf = vec![0u8; 65_536];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(n) = socket.recv(&mut buf)
                        && let Ok(mut packets) = packets.lock()
                    {
                        packets.push(String::from_utf8_lossy(&buf[..n]).into_owned());
                    }
                }
            })
        };
        Ok(Statsd {
            port,
            packets,
            stop,
            thread,
        })
    }

    fn stop(self) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
        self.packets.lock().map(|p| p.clone()).unwrap_or_default()
    }
}

/// Timers as count, p50 and p99 per name; counters summed; gauges with their tags, last value.
fn summarize(packets: &[String]) -> String {
    let mut timers: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut counters: BTreeMap<&str, f64> = BTreeMap::new();
    let mut gauges: BTreeMap<&str, &str> = BTreeMap::new();
    for line in packets.iter().flat_map(|p| p.lines()) {
        let Some((name, rest)) = line.split_once(':') else {
            continue;
        };
        let mut parts = rest.split('|');
        let (Some(value), Some(kind)) = (parts.next(), parts.next()) else {
            continue;
        };
        match kind {
            "ms" => timers
                .entry(name)
                .or_default()
                .extend(value.parse::<f64>().ok()),
            "c" => *counters.entry(name).or_default() += value.parse::<f64>().unwrap_or(0.0),
            "g" => {
                gauges.insert(name, value);
            }
            _ => {}
        }
    }
    // Names line up in one column, at least 44 wide, wider when a route's name needs it.
    let width = timers
        .keys()
        .chain(counters.keys())
        .map(|name| name.chars().count())
        .max()
        .unwrap_or(0)
        .max(44);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<width$} {:>9} {:>9} {:>9}",
        "timer", "count", "p50 ms", "p99 ms"
    );
    for (name, values) in &mut timers {
        values.sort_by(f64::total_cmp);
        let _ = writeln!(
            out,
            "{name:<width$} {:>9} {:>9.3} {:>9.3}",
            values.len(),
            percentile(values, 0.50),
            percentile(values, 0.99)
        );
    }
    let _ = writeln!(out, "\n{:<width$} {:>9}", "counter", "total");
    for (name, total) in &counters {
        let _ = writeln!(out, "{name:<width$} {total:>9}");
    }
    let _ = writeln!(out, "\ngauges (last report):");
    for (name, value) in &gauges {
        let _ = writeln!(out, "  {name}:{value}|g");
    }
    if gauges.is_empty() {
        let _ = writeln!(
            out,
            "  none yet: the runtime reporter sends every 10 s of wall-clock time; run longer"
        );
    }
    out
}

/// The `q` quantile of sorted `values` (nearest rank).
fn percentile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let rank = (q * values.len() as f64).ceil() as usize;
    values[rank.clamp(1, values.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summarizes_timers_counters_and_gauges() {
        let packets = vec![
            "demo.clients.foo.GET:1|ms\ndemo.clients.foo.GET:3|ms\ndemo.clients.foo.GET.success:1|c"
                .to_owned(),
            "demo.clients.foo.GET:2|ms\ndemo.clients.foo.GET.success:1|c\n\
             demo.runtime.pool.size,hostname=h,PID=1,client=foo:99|g"
                .to_owned(),
        ];
        let text = summarize(&packets);
        assert!(
            text.contains(&format!(
                "{:<44} {:>9} {:>9.3} {:>9.3}",
                "demo.clients.foo.GET", 3, 2.0, 3.0
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!("{:<44} {:>9}", "demo.clients.foo.GET.success", 2)),
            "{text}"
        );
        assert!(
            text.contains("  demo.runtime.pool.size,hostname=h,PID=1,client=foo:99|g"),
            "{text}"
        );
    }

    #[test]
    fn a_long_name_widens_the_name_column() {
        let long = "demo.clients.foo.pipeline_leaderboard.success";
        let packets = vec![format!("demo.server./users/{{id}}:2|ms\n{long}:1|c")];
        let text = summarize(&packets);
        let width = long.len();
        assert!(
            text.contains(&format!(
                "{:<width$} {:>9} {:>9} {:>9}\n",
                "timer", "count", "p50 ms", "p99 ms"
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "{:<width$} {:>9} {:>9.3} {:>9.3}\n",
                "demo.server./users/{id}", 1, 2.0, 2.0
            )),
            "{text}"
        );
        assert!(text.contains(&format!("{long} {:>9}\n", 1)), "{text}");
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&values, 0.5), 50.0);
        assert_eq!(percentile(&values, 0.99), 99.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
        assert_eq!(percentile(&[7.0], 0.99), 7.0);
    }
}
