//! `cargo xtask cluster up|down|status`: a throwaway local Redis Cluster kept under `target/xtask`.

use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use cluster_launcher::{Cluster, ClusterSpec, status, stop_dir};

/// Options of `cargo xtask cluster`.
#[derive(Debug, Args)]
pub(crate) struct ClusterArgs {
    #[command(subcommand)]
    command: ClusterCommand,
}

#[derive(Debug, Subcommand)]
enum ClusterCommand {
    /// Start a cluster (harmless if it already runs) and print `REDIS_CLUSTER_URL=...`.
    Up {
        /// Number of primaries.
        #[arg(long, default_value_t = 3)]
        primaries: u16,
        /// Replicas attached to each primary.
        #[arg(long, default_value_t = 1)]
        replicas_per_primary: u16,
        /// Port of the first node; the others follow it.
        #[arg(long, default_value_t = 7000)]
        base_port: u16,
        /// `cluster-node-timeout` in milliseconds (short, for quick failovers).
        #[arg(long, default_value_t = 2000)]
        node_timeout_ms: u64,
        /// Also serve TLS, on the ports after the plain ones, with certificates from a CA made
        /// for this cluster; prints `REDIS_CLUSTER_TLS_CA=...` beside the `rediss://` URL.
        #[arg(long)]
        tls: bool,
    },
    /// Stop the clusters `up` started (all of them, or the one at --base-port) and remove their files.
    Down {
        /// Stop only the cluster whose first node is on this port.
        #[arg(long)]
        base_port: Option<u16>,
    },
    /// Print each node's role, slots and health.
    Status,
}

pub(crate) fn run(args: ClusterArgs) -> Result<()> {
    match args.command {
        ClusterCommand::Up {
            primaries,
            replicas_per_primary,
            base_port,
            node_timeout_ms,
            tls,
        } => {
            let spec = ClusterSpec {
                primaries,
                replicas_per_primary,
                base_port,
                node_timeout: Duration::from_millis(node_timeout_ms),
                dir: cluster_dir(base_port),
                tls,
            };
            let already = Cluster::running(&spec).is_some();
            let cluster = Cluster::start(spec)?;
            if already {
                eprintln!("cluster already running");
            } else {
                let spec = cluster.spec();
                let last = spec.base_port + spec.node_count() - 1;
                let tls = if spec.tls {
                    format!(
                        " (TLS on {}..={})",
                        spec.tls_port(spec.base_port),
                        spec.tls_port(last)
                    )
                } else {
                    String::new()
                };
                eprintln!(
                    "started {} primaries and {} replicas on ports {}..={last}{tls}",
                    spec.primaries,
                    spec.primaries * spec.replicas_per_primary,
                    spec.base_port,
                );
            }
            println!("REDIS_CLUSTER_URL={}", cluster.url());
            if tls {
                let ca = cluster.spec().tls_files().ca_cert();
                println!("REDIS_CLUSTER_TLS_CA={}", ca.display());
            }
            Ok(())
        }
        ClusterCommand::Down { base_port } => {
            let dirs = match base_port {
                Some(port) => vec![cluster_dir(port)],
                None => cluster_dirs()?,
            };
            let mut stopped = 0;
            for dir in dirs {
                stopped += stop_dir(&dir)?;
            }
            println!("stopped {stopped} redis-server processes");
            Ok(())
        }
        ClusterCommand::Status => {
            let dirs = cluster_dirs()?;
            if dirs.is_empty() {
                println!("no cluster started by `cargo xtask cluster up` is running");
            }
            for dir in dirs {
                print_status(dir)?;
            }
            Ok(())
        }
    }
}

fn print_status(dir: PathBuf) -> Result<()> {
    let mut ports: Vec<u16> = fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|entry| {
            let name = entry.ok()?.file_name();
            name.to_str()?.strip_prefix("node-")?.parse().ok()
        })
        .collect();
    ports.sort_unstable();
    let Some(&base_port) = ports.first() else {
        return Ok(());
    };
    // Only the ports and the directory matter for reading status; the shape is what is on disk.
    let mut spec = ClusterSpec::new(base_port, dir);
    spec.primaries = u16::try_from(ports.len()).unwrap_or(u16::MAX);
    spec.replicas_per_primary = 0;
    spec.tls = spec.tls_files().exist();
    let cluster_url = spec.url();
    let nodes = status(&spec)?;
    println!("{cluster_url}");
    println!(
        "  {:<6} {:<8} {:<7} {:<8} slots",
        "port", "pid", "role", "health"
    );
    for node in nodes {
        println!(
            "  {:<6} {:<8} {:<7} {:<8} {}",
            node.port,
            node.pid.map_or("dead".to_owned(), |p| p.to_string()),
            node.role.as_deref().unwrap_or("-"),
            if node.healthy() { "ok" } else { "FAIL" },
            node.listed
                .map_or("-".to_owned(), |listed| listed.slots_text()),
        );
    }
    Ok(())
}

fn cluster_dir(base_port: u16) -> PathBuf {
    xtask::state_dir().join(format!("cluster-{base_port}"))
}

fn cluster_dirs() -> Result<Vec<PathBuf>> {
    let root = xtask::state_dir();
    if !root.exists() {
        return Ok(Vec::new());
    }
    let mut dirs: Vec<PathBuf> = fs::read_dir(&root)
        .with_context(|| format!("reading {}", root.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| {
            path.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("cluster-"))
        })
        .collect();
    dirs.sort();
    Ok(dirs)
}
