//! What every scenario does around its fault: start the cluster, configure the client as a
//! service would, run and time the load, watch `cluster_state`, and read every acknowledged
//! write back into the report.

use std::sync::Arc;
use std::time::Duration;

use baseplate::{Baseplate, ClusterRedisClient, RawConfig};
use cluster_launcher::redis_cli;
use redis::AsyncCommands as _;

use crate::chaos::census::Census;
use crate::chaos::cluster::{ChaosCluster, PASSWORD, StateWatcher, blocking};
use crate::chaos::load::{Load, LoadOptions, LoadResult, OpRecord, verify};
use crate::chaos::observe::{StatsdSink, observer};
use crate::chaos::report::{Report, Run, RunFacts, secs};
use baseplate_redis_cluster::key_slot;

use crate::chaos::{ChaosOptions, Scenario};
use crate::eventually;

/// The context name the client is registered under.
pub(super) const CLIENT: &str = "foo";

/// The context name of a second client configured like the first, where a scenario compares
/// what one client's callers see with what the same load sees at the same time on a client the
/// fault does not touch.
pub(super) const REFERENCE: &str = "bar";

/// How a scenario's cluster and client are set up beyond the defaults.
#[derive(Default)]
pub(super) struct Setup<'a> {
    /// `cluster-node-timeout`: how long before a silent primary is failed over.
    pub(super) node_timeout_ms: u64,
    /// Extra `redis-server` arguments for every node.
    pub(super) node_args: &'static [&'static str],
    /// Client keys (without the `foo.` prefix) and their values.
    pub(super) overrides: &'a [(&'a str, String)],
    /// Whether to configure a second client, [`REFERENCE`], exactly like the first.
    pub(super) reference: bool,
}

/// What every scenario does around its fault: the cluster, the client, the statsd sink, the load.
pub(super) struct Harness {
    scenario: Scenario,
    options: ChaosOptions,
    pub(super) cluster: Arc<ChaosCluster>,
    statsd: Option<StatsdSink>,
    packets_before_close: u64,
    pub(super) baseplate: Arc<Baseplate>,
    pub(super) load: Option<Load>,
    /// A call's deadline: `timeout`, or `socket_timeout` when that is longer.
    pub(super) deadline: Duration,
    watcher: Option<(u16, StateWatcher)>,
    /// The port the watcher watched, once it stopped.
    watched: Option<u16>,
    /// Windows in which the watched node said the cluster was not `ok`: (from, until, state).
    down: Vec<(Duration, Duration, String)>,
    pub(super) watched_warnings: Vec<String>,
}

impl Harness {
    /// Starts a cluster with `node_timeout_ms` and a client configured with `timeout` and the
    /// password URL plus `overrides` (keys without the `foo.` prefix), and waits until the client
    /// has a working connection.
    pub(super) async fn start(
        scenario: Scenario,
        options: &ChaosOptions,
        node_timeout_ms: u64,
        overrides: &[(&str, String)],
    ) -> Harness {
        let setup = Setup {
            node_timeout_ms,
            overrides,
            ..Setup::default()
        };
        Harness::start_with(scenario, options, setup).await
    }

    /// Like [`start`](Self::start), set up as `setup` says.
    pub(super) async fn start_with(
        scenario: Scenario,
        options: &ChaosOptions,
        setup: Setup<'_>,
    ) -> Harness {
        let Setup {
            node_timeout_ms,
            node_args,
            overrides,
            reference,
        } = setup;
        observer().watch(PASSWORD);
        let node_timeout = Duration::from_millis(node_timeout_ms);
        let cluster = Arc::new(
            blocking(move || ChaosCluster::start_with_args(node_timeout, node_args)).await,
        );
        let statsd = StatsdSink::bind().await;
        let timeout = format!("{} milliseconds", options.timeout.as_millis());
        let mut config: RawConfig = [
            ("metrics.namespace".to_owned(), "chaos".to_owned()),
            ("metrics.endpoint".to_owned(), statsd.endpoint().to_owned()),
            (format!("{CLIENT}.url"), cluster.url_with_password()),
            (format!("{CLIENT}.timeout"), timeout),
            (
                format!("{CLIENT}.track_key_reads_sample_rate"),
                "0.1".into(),
            ),
            (
                format!("{CLIENT}.track_key_writes_sample_rate"),
                "0.1".into(),
            ),
            (
                format!("{CLIENT}.track_key_flush_interval"),
                "1 second".into(),
            ),
        ]
        .into_iter()
        .collect();
        for (key, value) in overrides {
            config.insert(format!("{CLIENT}.{key}"), value.as_str());
        }
        if reference {
            let prefix = format!("{CLIENT}.");
            let copies: Vec<_> = config
                .iter()
                .filter_map(|(key, value)| {
                    let key = key.strip_prefix(&prefix)?;
                    Some((format!("{REFERENCE}.{key}"), value.clone()))
                })
                .collect();
            for (key, value) in copies {
                config.insert(key, value);
            }
        }
        let parsed = ClusterRedisClient::new()
            .options_from_config(&config, &format!("{CLIENT}."))
            .expect("the chaos client config");
        // The client's rule: the response timeout, or the wait for a permit when that is longer.
        let deadline = parsed
            .response_timeout
            .map_or(parsed.pool_wait, |response| response.max(parsed.pool_wait));
        let mut baseplate = Baseplate::new(config);
        baseplate
            .configure_observers()
            .expect("the chaos metrics config");
        baseplate
            .configure_context(CLIENT, ClusterRedisClient::new())
            .expect("the chaos client config");
        if reference {
            baseplate
                .configure_context(REFERENCE, ClusterRedisClient::new())
                .expect("the reference client config");
        }
        let baseplate = Arc::new(baseplate);
        let mut foo = baseplate
            .make_context_object()
            .redis_cluster(CLIENT)
            .expect("the chaos client");
        let ready = eventually(Duration::from_secs(10), || {
            let mut foo = foo.clone();
            async move { foo.get::<_, Option<String>>("chaos:warm-up").await.is_ok() }
        })
        .await;
        assert!(
            ready.is_some(),
            "the client never reached the chaos cluster"
        );
        let _: redis::RedisResult<Option<String>> = foo.get("chaos:warm-up").await;
        Harness {
            scenario,
            options: options.clone(),
            cluster,
            statsd: Some(statsd),
            packets_before_close: 0,
            baseplate,
            load: None,
            deadline,
            watcher: None,
            watched: None,
            down: Vec::new(),
            watched_warnings: Vec::new(),
        }
    }

    /// Starts the load with workers pinned to the primaries' slots as they are now (or to
    /// `partition`), and a watch on `cluster_state` from a primary that is not in `avoid` (the
    /// nodes the fault hits); returns the owner (primary port) of every slot at the start.
    pub(super) async fn start_load(
        &mut self,
        partition: Option<Vec<u16>>,
        avoid: &[u16],
    ) -> Vec<u16> {
        let c = Arc::clone(&self.cluster);
        let (owners, nodes) = blocking(move || (c.slot_owners(), c.nodes())).await;
        let options = LoadOptions::new(CLIENT, self.options.workers, self.options.ops_per_second)
            .with_partition(partition.unwrap_or_else(|| owners.clone()));
        let load = Load::start(Arc::clone(&self.baseplate), options);
        let seed = self.cluster.seed_port();
        let watched = nodes
            .iter()
            .filter(|n| n.primary && !avoid.contains(&n.port))
            .map(|n| n.port)
            .max_by_key(|&port| port != seed)
            .unwrap_or(seed);
        self.watcher = Some((watched, StateWatcher::start(watched, load.origin())));
        self.load = Some(load);
        owners
    }

    /// Whether an operation overlapped a window in which the cluster said it was down.
    pub(super) fn during_cluster_down(&self, record: &OpRecord) -> bool {
        self.down
            .iter()
            .any(|(from, until, _)| record.started < *until && record.ended() > *from)
    }

    pub(super) fn load_mut(&mut self) -> &mut Load {
        self.load.as_mut().expect("the load runs")
    }

    pub(super) fn elapsed(&self) -> Duration {
        self.load.as_ref().map_or(Duration::ZERO, Load::elapsed)
    }

    /// Lets the load run a quarter of its length (at least a second and a half) before the
    /// fault; returns when the fault may start.
    pub(super) async fn baseline(&self) -> Duration {
        let baseline = (self.options.load / 4).max(Duration::from_millis(1_500));
        tokio::time::sleep(baseline.saturating_sub(self.elapsed())).await;
        self.elapsed()
    }

    /// Keeps the load running to its configured length, and at least long enough after `over`
    /// (the end of the fault) to see the client recover.
    pub(super) async fn settle(&self, over: Duration) {
        let settle = (self.options.load / 4).max(Duration::from_secs(2));
        let until = self.options.load.max(over + settle);
        tokio::time::sleep(until.saturating_sub(self.elapsed())).await;
    }

    /// Stops watching `cluster_state` (the watcher holds a task and a connection), keeping the
    /// windows it saw for the report.
    pub(super) async fn finish_watch(&mut self) {
        if let Some((port, watcher)) = self.watcher.take() {
            self.down = watcher.finish().await;
            self.watched = Some(port);
        }
    }

    /// A connection of the client, for its pool statistics.
    pub(super) fn client(&self) -> baseplate::MonitoredClusterRedisConnection {
        self.baseplate
            .make_context_object()
            .redis_cluster(CLIENT)
            .expect("the chaos client")
    }

    /// Uses the client for reads and writes on every slot until the hot-key tracker has written
    /// its first sample (so it holds its connection), then counts what the process holds.
    pub(super) async fn census_before(&self) -> Census {
        let mut foo = self.client();
        let c = Arc::clone(&self.cluster);
        let owners = blocking(move || c.slot_owners()).await;
        let reads_set = "baseplate-hot-key-tracker-reads";
        let tracker_node = owners[usize::from(key_slot(reads_set.as_bytes()))];
        let mut round = 0;
        let tracked = eventually(Duration::from_secs(10), || {
            round += 1;
            let mut foo = foo.clone();
            let c = Arc::clone(&self.cluster);
            async move {
                for i in 0..100 {
                    let key = format!("chaos:census:{round}:{i}");
                    let _: redis::RedisResult<()> = foo.set(&key, i).await;
                    let _: redis::RedisResult<Option<i64>> = foo.get(&key).await;
                }
                blocking(move || c.cli(tracker_node, &["EXISTS", reads_set]).trim() == "1").await
            }
        })
        .await;
        assert!(tracked.is_some(), "the hot-key tracker never wrote");
        let _: redis::RedisResult<Option<String>> = foo.get("chaos:census").await;
        Census::take(foo.pool_stats())
    }

    /// How many keys the hot-key tracker's writes set holds now (0 when its node does not say).
    pub(super) async fn tracked_writes(&self) -> u64 {
        let set = "baseplate-hot-key-tracker-writes";
        let c = Arc::clone(&self.cluster);
        blocking(move || {
            let node = c.slot_owners()[usize::from(key_slot(set.as_bytes()))];
            redis_cli(node, &["ZCARD", set])
                .ok()
                .and_then(|count| count.trim().parse().ok())
                .unwrap_or(0)
        })
        .await
    }

    /// Polls every node until all of them are up and say `cluster_state:ok` (for up to 30 s);
    /// returns when, from the start of the load: the start of the first poll that saw it.
    pub(super) async fn cluster_back(&self) -> Option<Duration> {
        let mut at = self.elapsed();
        let back = eventually(Duration::from_secs(30), async || {
            at = self.elapsed();
            let c = Arc::clone(&self.cluster);
            blocking(move || c.all_up_and_ok()).await
        })
        .await;
        back.map(|_| at)
    }

    /// Sleeps until `at` from the start of the load.
    pub(super) async fn sleep_until(&self, at: Duration) {
        tokio::time::sleep(at.saturating_sub(self.elapsed())).await;
    }

    /// Closes the statsd endpoint; returns the packets it got.
    pub(super) async fn close_statsd(&mut self) -> u64 {
        if let Some(statsd) = self.statsd.take() {
            self.packets_before_close = statsd.close().await;
        }
        self.packets_before_close
    }

    pub(super) async fn stop_load(&mut self) -> LoadResult {
        self.load.take().expect("the load runs").finish().await
    }

    /// Stops the client, reads every acknowledged write back and builds the report.
    pub(super) async fn report(
        &mut self,
        result: &LoadResult,
        fault: String,
        fault_at: Duration,
        healed_at: Option<Duration>,
    ) -> Report {
        self.baseplate.shutdown().await;
        let missing = verify(self.cluster.live_urls(), &result.acks).await;
        let packets = match self.statsd.take() {
            Some(statsd) => statsd.close().await,
            None => self.packets_before_close,
        };
        let watched = observer().finish();
        self.watched_warnings = watched.warnings.clone();
        let mut state_note = None;
        self.finish_watch().await;
        if let Some(port) = self.watched {
            let windows: Vec<String> = self
                .down
                .iter()
                .map(|(from, until, state)| {
                    let until = if *until == Duration::MAX {
                        "the end".to_owned()
                    } else {
                        secs(*until)
                    };
                    format!("{state} from {} to {until}", secs(*from))
                })
                .collect();
            state_note = Some(format!(
                "cluster_state as 127.0.0.1:{port} saw it: {}",
                if windows.is_empty() {
                    "ok throughout".to_owned()
                } else {
                    windows.join(", ")
                }
            ));
        }
        let mut report = Report::new(
            result,
            RunFacts {
                run: Run {
                    scenario: self.scenario,
                    timeout: self.options.timeout,
                    deadline: self.deadline,
                    fault,
                    fault_at,
                    healed_at,
                },
                missing,
                watched,
                metrics_packets: packets,
            },
        );
        report.notes.extend(state_note);
        report
    }
}
