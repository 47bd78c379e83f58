//! A throwaway local Redis Cluster built from the `redis-server` on PATH: start, wait, inspect, stop.
//!
//! Every node runs daemonized in its own directory (`<dir>/node-<port>/`) with a pid file, so that
//! [`stop_dir`] stops exactly the processes [`Cluster::start`] started, whoever calls it and when.

use std::fs;
use std::hash::BuildHasher;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

use crate::certs::TlsFiles;
use crate::nodes::{ClusterNode, cluster_nodes};
use crate::wait_until;

/// The port of the plain Redis this machine runs; a cluster never takes it or its bus port.
pub const RESERVED_PORT: u16 = 6379;

/// Redis Cluster's bus port for a node is its client port plus this offset.
const BUS_PORT_OFFSET: u16 = 10_000;

/// The oldest `redis-server` major version the project supports.
const MIN_REDIS_MAJOR: u32 = 7;

/// How long `start` waits for the cluster to become healthy; also how long a caller that waits for
/// more (its nodes agreeing on a shape of its own) may give it.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// What to start: the shape of the cluster, where it listens and where it keeps its files.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    /// Number of primaries (at least 3, Redis Cluster's minimum for slot coverage with failover).
    pub primaries: u16,
    /// Replicas attached to each primary.
    pub replicas_per_primary: u16,
    /// Port of the first node; the nodes take consecutive ports from here.
    pub base_port: u16,
    /// `cluster-node-timeout`: short, so that failover tests are quick.
    pub node_timeout: Duration,
    /// Directory holding one sub-directory per node.
    pub dir: PathBuf,
    /// Whether every node also serves TLS (see [`ClusterSpec::with_tls`]).
    pub tls: bool,
}

impl ClusterSpec {
    /// A 3-primary, 1-replica-per-primary cluster from `base_port`, kept in `dir`.
    pub fn new(base_port: u16, dir: impl Into<PathBuf>) -> Self {
        Self {
            primaries: 3,
            replicas_per_primary: 1,
            base_port,
            node_timeout: Duration::from_millis(2_000),
            dir: dir.into(),
            tls: false,
        }
    }

    /// The same cluster with TLS: every node also listens for TLS on its [`ClusterSpec::tls_port`],
    /// speaks TLS to the others on the cluster bus and to its primary, and shows TLS clients the
    /// TLS ports in `CLUSTER SLOTS`. Its certificates, from a CA made for it, are under
    /// [`ClusterSpec::tls_files`]. Client certificates are verified when given, not required
    /// (`tls-auth-clients optional`; `CONFIG SET tls-auth-clients yes` requires them). The plain
    /// ports stay open, for `redis-cli` and the launcher.
    pub fn with_tls(mut self) -> Self {
        self.tls = true;
        self
    }

    /// Total number of nodes.
    pub fn node_count(&self) -> u16 {
        self.primaries * (1 + self.replicas_per_primary)
    }

    /// The client ports of every node, in order.
    pub fn ports(&self) -> Vec<u16> {
        (0..self.node_count()).map(|i| self.base_port + i).collect()
    }

    /// The TLS port of the node whose plain port is `port` (TLS ports follow the plain ones).
    pub fn tls_port(&self, port: u16) -> u16 {
        port + self.node_count()
    }

    /// The TLS ports of every node, in order; none for a plain cluster.
    fn tls_ports(&self) -> Vec<u16> {
        if !self.tls {
            return Vec::new();
        }
        self.ports().into_iter().map(|p| self.tls_port(p)).collect()
    }

    /// Every port the nodes listen on for clients: the plain ports, then the TLS ports if any.
    fn client_ports(&self) -> Vec<u16> {
        let mut ports = self.ports();
        ports.extend(self.tls_ports());
        ports
    }

    /// The URL clients connect to (the first node is the seed): `rediss://` to its TLS port for a
    /// TLS cluster.
    pub fn url(&self) -> String {
        if self.tls {
            format!("rediss://127.0.0.1:{}", self.tls_port(self.base_port))
        } else {
            format!("redis://127.0.0.1:{}", self.base_port)
        }
    }

    /// The certificates of a TLS cluster (written when it starts).
    pub fn tls_files(&self) -> TlsFiles {
        TlsFiles::in_dir(self.dir.join("tls"))
    }

    fn validate(&self) -> Result<()> {
        ensure!(
            self.primaries >= 3,
            "a Redis Cluster needs at least 3 primaries, got {}",
            self.primaries
        );
        let last = u32::from(self.base_port) + u32::from(self.node_count()) - 1;
        let last_tls = last
            + if self.tls {
                u32::from(self.node_count())
            } else {
                0
            };
        ensure!(
            self.base_port >= 1024
                && last + u32::from(BUS_PORT_OFFSET) <= u32::from(u16::MAX)
                && last_tls <= u32::from(u16::MAX),
            "ports {}..={last_tls} do not fit: client ports must be >= 1024 and bus ports (+{BUS_PORT_OFFSET}) <= 65535",
            self.base_port
        );
        for port in self.ports() {
            ensure!(
                port != RESERVED_PORT && port + BUS_PORT_OFFSET != RESERVED_PORT,
                "port {port} would collide with the plain Redis on {RESERVED_PORT}; choose another --base-port"
            );
        }
        for port in self.tls_ports() {
            ensure!(
                port != RESERVED_PORT,
                "TLS port {port} would collide with the plain Redis on {RESERVED_PORT}; choose another --base-port"
            );
        }
        Ok(())
    }
}

/// A running cluster started by [`Cluster::start`] (or found running by [`Cluster::running`]).
///
/// Dropping it leaves the nodes running, so that a command can start a cluster and exit (`cargo
/// xtask cluster up`). Code that starts a cluster for its own use stops it with [`Cluster::stop`],
/// or right after starting it arranges [`Cluster::stop_when_process_exits`], which also holds
/// when the code panics before it reaches `stop`.
#[derive(Debug)]
pub struct Cluster {
    spec: ClusterSpec,
    /// Extra `redis-server` arguments every node was started with (see [`Cluster::start_with_node_args`]).
    node_args: Vec<String>,
}

impl Cluster {
    /// Starts every node, creates the cluster and waits until it is healthy: every node reports
    /// `cluster_state:ok` and knows every other node, and every replica's link to its primary is up.
    ///
    /// If a healthy cluster of this shape already runs from `spec.dir`, it is returned as is; leftovers
    /// of a broken one are stopped first.
    ///
    /// # Errors
    /// When `redis-server` or `redis-cli` is missing or too old, a port is taken, a node does not start,
    /// or the cluster is not healthy within a minute. Nodes started by a failed call are stopped.
    pub fn start(spec: ClusterSpec) -> Result<Cluster> {
        Cluster::start_with_node_args(spec, &[])
    }

    /// Like [`Cluster::start`], with `node_args` appended to every node's `redis-server` command
    /// line (e.g. `["--repl-diskless-sync-delay", "0"]`); [`Cluster::restart_node`] reuses them.
    ///
    /// # Errors
    /// As [`Cluster::start`].
    pub fn start_with_node_args(spec: ClusterSpec, node_args: &[&str]) -> Result<Cluster> {
        spec.validate()?;
        check_redis_server()?;
        check_redis_cli()?;
        if let Some(cluster) = Cluster::running(&spec) {
            return Ok(cluster);
        }
        stop_dir(&spec.dir)?;
        let bus_ports = spec.ports().into_iter().map(|p| p + BUS_PORT_OFFSET);
        for p in spec.client_ports().into_iter().chain(bus_ports) {
            ensure!(
                port_is_free(p),
                "port {p} is already in use; stop what listens there or choose another --base-port"
            );
        }
        let cluster = Cluster {
            spec,
            node_args: node_args.iter().map(|&a| a.to_owned()).collect(),
        };
        if let Err(e) = cluster.launch() {
            let _ = stop_dir(&cluster.spec.dir);
            return Err(e);
        }
        Ok(cluster)
    }

    /// The cluster of this shape running from `spec.dir`, if every node of it is alive and healthy.
    pub fn running(spec: &ClusterSpec) -> Option<Cluster> {
        let all_alive = spec
            .ports()
            .iter()
            .all(|&port| node_pid(&spec.dir, port).is_some_and(pid_is_redis));
        // A plain cluster is not the TLS cluster asked for, nor the other way round.
        let same_kind = spec.tls_files().exist() == spec.tls;
        let cluster = Cluster {
            spec: spec.clone(),
            node_args: Vec::new(),
        };
        (all_alive && same_kind && cluster.health().is_ok()).then_some(cluster)
    }

    /// The spec this cluster was started from.
    pub fn spec(&self) -> &ClusterSpec {
        &self.spec
    }

    /// The URL clients connect to.
    pub fn url(&self) -> String {
        self.spec.url()
    }

    /// The environment that points a child process (the tests, the bench) at this cluster, as the
    /// integration harness reads it.
    pub fn env(&self) -> [(&'static str, String); 3] {
        [
            ("REDIS_CLUSTER_URL", self.url()),
            ("REDIS_CLUSTER_PRIMARIES", self.spec.primaries.to_string()),
            (
                "REDIS_CLUSTER_REPLICAS_PER_PRIMARY",
                self.spec.replicas_per_primary.to_string(),
            ),
        ]
    }

    /// Stops every node and removes the cluster's directory.
    ///
    /// # Errors
    /// When a node does not exit or the directory cannot be removed.
    pub fn stop(self) -> Result<()> {
        stop_dir(&self.spec.dir).map(drop)
    }

    /// Arranges for the cluster to be stopped and its directory removed once process `pid` exits,
    /// however it exits (a panic, a failed assertion, Ctrl-C). A detached watchdog shell polls the pid.
    ///
    /// # Errors
    /// When the watchdog cannot be spawned.
    pub fn stop_when_process_exits(&self, pid: u32) -> Result<()> {
        let dir = shell_quote(&self.spec.dir);
        let script = format!(
            "trap '' INT HUP TERM; while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; \
             for f in {dir}/node-*/redis.pid; do [ -f \"$f\" ] && kill \"$(cat \"$f\")\" 2>/dev/null; done; \
             sleep 1; rm -rf {dir}"
        );
        Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("spawning the cluster's watchdog")?;
        Ok(())
    }

    /// The pid of the node on `port`, while it is alive.
    pub fn node_pid(&self, port: u16) -> Option<u32> {
        node_pid(&self.spec.dir, port).filter(|&pid| pid_is_redis(pid))
    }

    /// SIGKILLs the node on `port` (no shutdown, no goodbye to the cluster) and waits until it is gone.
    ///
    /// # Errors
    /// When the node is not running or does not die within 5 seconds.
    pub fn kill_node(&self, port: u16) -> Result<()> {
        let pid = self.live_pid(port)?;
        signal(pid, "KILL");
        wait_for_exit(pid, port)
    }

    /// Stops the node on `port` gracefully (SIGTERM) and waits until it has exited; its directory
    /// and `nodes.conf` stay, so [`Cluster::restart_node`] brings the same node back.
    ///
    /// # Errors
    /// When the node is not running or does not exit within 5 seconds.
    pub fn stop_node(&self, port: u16) -> Result<()> {
        let pid = self.live_pid(port)?;
        signal(pid, "TERM");
        wait_for_exit(pid, port)
    }

    /// Freezes the node on `port` (SIGSTOP): its sockets stay open but nothing answers.
    ///
    /// # Errors
    /// When the node is not running.
    pub fn pause_node(&self, port: u16) -> Result<()> {
        signal(self.live_pid(port)?, "STOP");
        Ok(())
    }

    /// Lets a node frozen by [`Cluster::pause_node`] run again (SIGCONT).
    ///
    /// # Errors
    /// When the node is not running.
    pub fn resume_node(&self, port: u16) -> Result<()> {
        signal(self.live_pid(port)?, "CONT");
        Ok(())
    }

    /// Starts the node on `port` again, from its own directory (so with its `nodes.conf`: it keeps
    /// its identity) and with the arguments the cluster was started with, and waits until it
    /// answers `PING`. Without persistence its data set starts empty.
    ///
    /// # Errors
    /// When the node still runs, or does not start and answer within 10 seconds.
    pub fn restart_node(&self, port: u16) -> Result<()> {
        ensure!(
            self.node_pid(port).is_none(),
            "node {port} is still running"
        );
        ensure!(
            self.spec.ports().contains(&port),
            "port {port} is not a node of this cluster"
        );
        start_node(&self.spec, port, &self.node_args)?;
        // A node replaying its append-only file on a loaded machine answers LOADING for a while.
        wait_until(Duration::from_secs(30), || answers_ping(port))
            .with_context(|| {
                format!(
                    "node {port} did not answer PING after its restart; its log ends:\n{}",
                    log_tail(&self.spec.dir, port)
                )
            })
            .map(drop)
    }

    fn live_pid(&self, port: u16) -> Result<u32> {
        self.node_pid(port)
            .with_context(|| format!("node {port} of this cluster is not running"))
    }

    fn launch(&self) -> Result<()> {
        fs::create_dir_all(&self.spec.dir)
            .with_context(|| format!("creating {}", self.spec.dir.display()))?;
        if self.spec.tls {
            self.spec.tls_files().generate()?;
        }
        for port in self.spec.ports() {
            start_node(&self.spec, port, &self.node_args)?;
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        for port in self.spec.ports() {
            wait_until(deadline.saturating_duration_since(Instant::now()), || {
                answers_ping(port)
            })
            .with_context(|| {
                format!(
                    "node {port} did not answer PING; its log ends:\n{}",
                    log_tail(&self.spec.dir, port)
                )
            })?;
        }
        let nodes: Vec<String> = self
            .spec
            .ports()
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let replicas = self.spec.replicas_per_primary.to_string();
        let output = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&nodes)
            .args(["--cluster-replicas", &replicas, "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .context("running redis-cli --cluster create")?;
        if !output.status.success() {
            bail!(
                "redis-cli --cluster create failed: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut last_problem = String::new();
        let healthy = wait_until(
            deadline.saturating_duration_since(Instant::now()),
            || match self.health() {
                Ok(()) => true,
                Err(problem) => {
                    last_problem = format!("{problem:#}");
                    false
                }
            },
        );
        healthy.with_context(|| format!("cluster not healthy: {last_problem}"))?;
        self.advertise_replicas(deadline)
    }

    /// Writes (and deletes) one key on every primary, then waits until the seed's `CLUSTER
    /// SLOTS` lists every node.
    ///
    /// Redis 7 leaves out of `CLUSTER SLOTS` a replica whose replication offset is still 0, that
    /// is of a primary that never had a write, and clients (redis-rs among them) learn replicas
    /// from `CLUSTER SLOTS` when they connect: against a brand-new cluster they would never read
    /// from a replica.
    fn advertise_replicas(&self, deadline: Instant) -> Result<()> {
        if self.spec.replicas_per_primary == 0 {
            return Ok(());
        }
        for port in self.spec.ports() {
            let replication = redis_cli(port, &["INFO", "replication"])?;
            if info_field(&replication, "role") != Some("master") {
                continue;
            }
            // A key of this primary's own slots: KEYSLOT answers wherever it is asked.
            let own = cluster_nodes(port)?.into_iter().find(|node| node.myself);
            let own = own.with_context(|| format!("node {port} did not list itself"))?;
            let key = (0..10_000)
                .map(|i| format!("xtask:warm-up:{i}"))
                .find(|key| {
                    redis_cli(port, &["CLUSTER", "KEYSLOT", key])
                        .ok()
                        .and_then(|slot| slot.trim().parse::<u16>().ok())
                        .is_some_and(|slot| own.serves(slot))
                })
                .with_context(|| format!("no key of node {port}'s slots was found"))?;
            redis_cli(port, &["SET", &key, "1"])?;
            redis_cli(port, &["DEL", &key])?;
        }
        let nodes = usize::from(self.spec.node_count());
        wait_until(deadline.saturating_duration_since(Instant::now()), || {
            redis_cli(self.spec.base_port, &["CLUSTER", "SLOTS"]).is_ok_and(|slots| {
                slots.lines().filter(|l| l.trim() == "127.0.0.1").count() == nodes
            })
        })
        .context("the replicas never showed in CLUSTER SLOTS")
        .map(drop)
    }

    /// `Ok` when every node says `cluster_state:ok` and knows all nodes, and every replica's link is up.
    fn health(&self) -> Result<()> {
        let expected_nodes = self.spec.node_count();
        let mut replicas = 0;
        for port in self.spec.ports() {
            let info = redis_cli(port, &["CLUSTER", "INFO"])?;
            ensure!(
                info_field(&info, "cluster_state") == Some("ok"),
                "node {port}: cluster_state is not ok"
            );
            let known = info_field(&info, "cluster_known_nodes").unwrap_or("0");
            ensure!(
                known == expected_nodes.to_string(),
                "node {port} knows {known} of {expected_nodes} nodes"
            );
            let replication = redis_cli(port, &["INFO", "replication"])?;
            if info_field(&replication, "role") == Some("slave") {
                ensure!(
                    info_field(&replication, "master_link_status") == Some("up"),
                    "replica {port}: link to its primary is not up"
                );
                replicas += 1;
            }
        }
        let expected_replicas = self.spec.primaries * self.spec.replicas_per_primary;
        ensure!(
            replicas == expected_replicas,
            "{replicas} of {expected_replicas} replicas attached"
        );
        Ok(())
    }
}

/// What `status` knows about one node.
#[derive(Debug, Clone)]
pub struct NodeStatus {
    /// The node's client port.
    pub port: u16,
    /// The pid from the node's pid file, when its process is alive.
    pub pid: Option<u32>,
    /// `master` or `slave` as the node reports it; `None` when it does not answer.
    pub role: Option<String>,
    /// The node as it lists itself in `CLUSTER NODES`; `None` when it does not answer.
    pub listed: Option<ClusterNode>,
    /// The node's `cluster_state`; `None` when it does not answer.
    pub cluster_state: Option<String>,
}

impl NodeStatus {
    fn read(dir: &Path, port: u16) -> Result<NodeStatus> {
        let pid = node_pid(dir, port).filter(|&pid| pid_is_redis(pid));
        let info = redis_cli(port, &["CLUSTER", "INFO"]).ok();
        let role = redis_cli(port, &["INFO", "replication"])
            .ok()
            .and_then(|r| info_field(&r, "role").map(str::to_owned));
        let listed = cluster_nodes(port)
            .ok()
            .and_then(|nodes| nodes.into_iter().find(|node| node.myself));
        Ok(NodeStatus {
            port,
            pid,
            role,
            listed,
            cluster_state: info.and_then(|i| info_field(&i, "cluster_state").map(str::to_owned)),
        })
    }

    /// Whether the node's process is alive and it reports `cluster_state:ok`.
    pub fn healthy(&self) -> bool {
        self.pid.is_some() && self.cluster_state.as_deref() == Some("ok")
    }
}

/// One entry per node of `spec`: port, pid, role, slots served, and the node's view of the cluster
/// state. A dead or unhealthy node is reported as such, not as an error.
///
/// # Errors
/// None at present; the `Result` leaves room for failing to read the cluster's directory.
pub fn status(spec: &ClusterSpec) -> Result<Vec<NodeStatus>> {
    spec.ports()
        .into_iter()
        .map(|port| NodeStatus::read(&spec.dir, port))
        .collect()
}

/// Stops the nodes whose pid files lie under `dir` (only processes that are still `redis-server`),
/// waits for them to exit, and removes `dir`. Returns how many processes it stopped; a missing `dir`
/// is not an error.
///
/// # Errors
/// When a node survives SIGTERM and SIGKILL, or `dir` cannot be removed.
pub fn stop_dir(dir: &Path) -> Result<usize> {
    if !dir.exists() {
        return Ok(0);
    }
    let mut pids = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let pid_file = entry?.path().join("redis.pid");
        if let Some(pid) = read_pid(&pid_file).filter(|&pid| pid_is_redis(pid)) {
            pids.push(pid);
        }
    }
    for &pid in &pids {
        signal(pid, "TERM");
    }
    let all_exited = || !pids.iter().any(|&pid| pid_is_redis(pid));
    if wait_until(Duration::from_secs(5), all_exited).is_none() {
        for &pid in pids.iter().filter(|&&pid| pid_is_redis(pid)) {
            signal(pid, "KILL");
        }
        wait_until(Duration::from_secs(5), all_exited)
            .with_context(|| format!("redis-server processes {pids:?} did not exit"))?;
    }
    fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    Ok(pids.len())
}

/// Checks that `redis-server` is on PATH and at least version 7; returns the version it found.
///
/// # Errors
/// When it is missing (the message says how to install it) or older than 7.
pub fn check_redis_server() -> Result<String> {
    let output = Command::new("redis-server")
        .arg("--version")
        .output()
        .map_err(|_| {
            anyhow::anyhow!(
                "redis-server was not found on PATH. Install Redis 7 or newer, e.g. \
                 `sudo apt-get install -y redis-server` on Debian/Ubuntu or `brew install redis` on macOS"
            )
        })?;
    let text = String::from_utf8_lossy(&output.stdout);
    let version = parse_redis_version(&text).with_context(|| {
        format!("cannot read the version from `redis-server --version`: {text}")
    })?;
    let major: u32 = version
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    ensure!(
        major >= MIN_REDIS_MAJOR,
        "redis-server {version} was found, but Redis {MIN_REDIS_MAJOR} or newer is required"
    );
    Ok(version)
}

/// Picks a base port from which `count` consecutive client ports and their bus ports are free,
/// for clusters that must not collide with anything (the integration harness, `cargo xtask test`).
///
/// # Errors
/// When no free range is found after many tries.
pub fn free_base_port(count: u16) -> Result<u16> {
    // std's per-process random hasher keys are enough randomness to spread concurrent callers apart.
    let random = std::collections::hash_map::RandomState::new();
    for attempt in 0..200u32 {
        let base = 20_000 + (random.hash_one(attempt) % 30_000) as u16;
        let ports = (base..base + count).flat_map(|p| [p, p + BUS_PORT_OFFSET]);
        if base + count + BUS_PORT_OFFSET < u16::MAX
            && (base..base + count).all(|p| p != RESERVED_PORT)
            && ports.clone().all(port_is_free)
        {
            return Ok(base);
        }
    }
    bail!("found no free range of {count} ports for a cluster")
}

fn check_redis_cli() -> Result<()> {
    Command::new("redis-cli")
        .arg("--version")
        .output()
        .map(drop)
        .map_err(|_| {
            anyhow::anyhow!(
                "redis-cli was not found on PATH; it ships with Redis \
                 (`sudo apt-get install -y redis-tools` on Debian/Ubuntu)"
            )
        })
}

fn parse_redis_version(text: &str) -> Option<String> {
    let start = text.find("v=")? + 2;
    let version: String = text[start..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    (!version.is_empty()).then_some(version)
}

fn start_node(spec: &ClusterSpec, port: u16, extra_args: &[String]) -> Result<()> {
    let dir = node_dir(&spec.dir, port);
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let dir_arg = dir.to_string_lossy().into_owned();
    let pid_file = dir.join("redis.pid").to_string_lossy().into_owned();
    let log_file = dir.join("redis.log").to_string_lossy().into_owned();
    let port_arg = port.to_string();
    let timeout = spec.node_timeout.as_millis().to_string();
    let mut tls_args = Vec::new();
    if spec.tls {
        let files = spec.tls_files();
        let path = |p: PathBuf| p.to_string_lossy().into_owned();
        tls_args = vec![
            "--tls-port".to_owned(),
            spec.tls_port(port).to_string(),
            // The bus stays at the plain port + 10000 (by default it would follow the TLS port).
            "--cluster-port".to_owned(),
            (port + BUS_PORT_OFFSET).to_string(),
            "--tls-cert-file".to_owned(),
            path(files.server_cert()),
            "--tls-key-file".to_owned(),
            path(files.server_key()),
            "--tls-ca-cert-file".to_owned(),
            path(files.ca_cert()),
            "--tls-cluster".to_owned(),
            "yes".to_owned(),
            "--tls-replication".to_owned(),
            "yes".to_owned(),
            "--tls-auth-clients".to_owned(),
            "optional".to_owned(),
        ];
    }
    let output = Command::new("redis-server")
        .args(["--port", &port_arg, "--bind", "127.0.0.1"])
        .args(&tls_args)
        .args([
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
        ])
        .args(["--cluster-node-timeout", &timeout])
        .args(["--save", "", "--appendonly", "no"])
        .args([
            "--dir",
            &dir_arg,
            "--pidfile",
            &pid_file,
            "--logfile",
            &log_file,
        ])
        .args(["--daemonize", "yes"])
        // Tests need DEBUG SLEEP to hold commands in flight; it is refused by default since Redis 7.
        .args(["--enable-debug-command", "local"])
        // A replica's first sync need not wait for others to join (5 s by default): nothing
        // here is big enough to batch, and every test run starts a cluster.
        .args(["--repl-diskless-sync-delay", "0"])
        .args(extra_args)
        .stdin(Stdio::null())
        .output()
        .context("running redis-server")?;
    ensure!(
        output.status.success(),
        "redis-server on port {port} failed to start: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    Ok(())
}

fn node_dir(dir: &Path, port: u16) -> PathBuf {
    dir.join(format!("node-{port}"))
}

fn node_pid(dir: &Path, port: u16) -> Option<u32> {
    read_pid(&node_dir(dir, port).join("redis.pid"))
}

fn read_pid(path: &Path) -> Option<u32> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Whether `pid` is alive and is a `redis-server`, so that a recycled pid is never signalled.
fn pid_is_redis(pid: u32) -> bool {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|cmdline| String::from_utf8_lossy(&cmdline).contains("redis-server"))
        .unwrap_or(false)
        && !fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|stat| {
                stat.rsplit(')')
                    .next()
                    .unwrap_or("")
                    .trim_start()
                    .starts_with('Z')
            })
            .unwrap_or(true)
}

fn wait_for_exit(pid: u32, port: u16) -> Result<()> {
    wait_until(Duration::from_secs(5), || !pid_is_redis(pid))
        .with_context(|| format!("node {port} (pid {pid}) did not exit"))
        .map(drop)
}

fn signal(pid: u32, name: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

fn port_is_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// Runs `redis-cli -p PORT ARGS...` and returns its output.
///
/// # Errors
/// When redis-cli cannot run or the node does not answer.
pub fn redis_cli(port: u16, args: &[&str]) -> Result<String> {
    let output = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("running redis-cli")?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    ensure!(
        output.status.success() && !text.starts_with("Could not connect"),
        "node {port} did not answer `{}`",
        args.join(" ")
    );
    Ok(text)
}

/// Moves `slots` slots from the primary `from` to the primary `to` (node ids) of the cluster
/// `seed` (`host:port` of any node) with `redis-cli --cluster reshard`, keys and all; returns
/// redis-cli's output.
///
/// # Errors
/// When redis-cli cannot run or reports a failure; the error carries its output.
pub fn reshard(seed: &str, from: &str, to: &str, slots: usize) -> Result<String> {
    let slots = slots.to_string();
    let output = Command::new("redis-cli")
        .args(["--cluster", "reshard", seed])
        .args(["--cluster-from", from, "--cluster-to", to])
        .args(["--cluster-slots", &slots, "--cluster-yes"])
        .stdin(Stdio::null())
        .output()
        .context("running redis-cli --cluster reshard")?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    ensure!(
        output.status.success() && !text.contains("[ERR]"),
        "redis-cli --cluster reshard failed: {text}"
    );
    Ok(text)
}

/// The value of `field` in an `INFO`-style `field:value` text.
pub fn info_field<'a>(info: &'a str, field: &str) -> Option<&'a str> {
    info.lines().find_map(|line| {
        line.trim_end()
            .strip_prefix(field)
            .and_then(|rest| rest.strip_prefix(':'))
    })
}

/// Whether the node on `port` answers `PING`.
/// The last lines of a node's `redis.log`, for an error that must say why the node is not there
/// (the cluster's directory may be gone by the time anyone looks).
fn log_tail(dir: &Path, port: u16) -> String {
    const LINES: usize = 8;
    let log = node_dir(dir, port).join("redis.log");
    match fs::read_to_string(&log) {
        Ok(text) => {
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(LINES)..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", log.display()),
    }
}

fn answers_ping(port: u16) -> bool {
    redis_cli(port, &["PING"]).is_ok_and(|reply| reply.trim() == "PONG")
}

fn shell_quote(path: &Path) -> String {
    format!("'{}'", path.to_string_lossy().replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_version_from_redis_server_output() {
        let text = "Redis server v=7.0.15 sha=00000000:0 malloc=jemalloc-5.3.0 bits=64 build=ae4d";
        assert_eq!(parse_redis_version(text).as_deref(), Some("7.0.15"));
        assert_eq!(parse_redis_version("no version here"), None);
    }

    #[test]
    fn reads_info_fields() {
        let info = "# Cluster\r\ncluster_state:ok\r\ncluster_known_nodes:6\r\n";
        assert_eq!(info_field(info, "cluster_state"), Some("ok"));
        assert_eq!(info_field(info, "cluster_known_nodes"), Some("6"));
        assert_eq!(info_field(info, "cluster"), None);
    }

    #[test]
    fn a_spec_never_takes_the_plain_redis_port() {
        let spec = ClusterSpec::new(6375, "/nonexistent");
        let error = spec.validate().unwrap_err().to_string();
        assert!(error.contains("6379"), "{error}");
        assert!(ClusterSpec::new(7000, "/nonexistent").validate().is_ok());
        assert!(ClusterSpec::new(60_000, "/nonexistent").validate().is_err());
    }

    #[test]
    fn a_tls_spec_never_takes_the_plain_redis_port_either() {
        // Plain ports 6373..=6378 are fine; the TLS ports after them would start at 6379.
        assert!(ClusterSpec::new(6373, "/nonexistent").validate().is_ok());
        let spec = ClusterSpec::new(6373, "/nonexistent").with_tls();
        let error = spec.validate().unwrap_err().to_string();
        assert!(error.starts_with("TLS port 6379 would collide"), "{error}");
        assert_eq!(spec.url(), "rediss://127.0.0.1:6379");
    }

    #[test]
    fn the_default_spec_is_six_nodes_from_the_base_port() {
        let spec = ClusterSpec::new(7000, "/nonexistent");
        assert_eq!(spec.ports(), vec![7000, 7001, 7002, 7003, 7004, 7005]);
        assert_eq!(spec.url(), "redis://127.0.0.1:7000");
    }
}
