//! The load: paced workers sending writes of unique keys and reads of acknowledged ones through the
//! facade (a request context and server span per operation, as a service would), recording every
//! operation's start, duration, slot and outcome, and every acknowledged write.
//!
//! A write is one named pipeline, `SET key value` + `WAIT 1 <ms>`, sent to the key's primary: it is
//! acknowledged when `SET` answers OK, and durable when `WAIT` says a replica has it too (Redis
//! replicates asynchronously, so only a durable write is guaranteed to survive its primary's
//! death). A read is a `GET` of a durable write, which may go to a replica (`read_from_replicas`).
//!
//! Workers are pinned to a part of the slot space (by default, the slots of one primary each, as
//! the cluster was when the load started): a worker stuck on a frozen node then stands for the
//! requests that need that node, while the others show whether the rest of the cluster serves.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use baseplate::{Baseplate, CallTimeout, MonitoredClusterRedisConnection, PoolTimeout};
use rand::RngExt as _;
use rand::SeedableRng as _;
use rand::rngs::SmallRng;
use redis::{AsyncCommands as _, RedisError};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::chaos::observe::observer;
use baseplate_redis_cluster::key_slot;

/// What an operation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OpKind {
    /// `SET` + `WAIT` of a new key.
    Write,
    /// `GET` of a durable write.
    Read,
    /// A deliberately slow command (`BLPOP` of an empty key), holding a pool permit.
    Slow,
}

/// How an operation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It worked (a read returned the value written).
    Ok,
    /// The client returned an error of this kind (see [`error_kind`]).
    Failed(Arc<str>),
    /// A read of a durable write found nothing: a replica that has not caught up, or lost data.
    StaleRead,
    /// A read returned another value than the one written: never legitimate.
    WrongValue,
}

/// One operation of the load.
#[derive(Debug, Clone)]
pub struct OpRecord {
    /// What it was.
    pub kind: OpKind,
    /// The slot of its key.
    pub slot: u16,
    /// When it started, from the start of the load.
    pub started: Duration,
    /// How long the caller waited for it.
    pub took: Duration,
    /// How it ended.
    pub outcome: Outcome,
}

impl OpRecord {
    /// When it ended, from the start of the load.
    pub fn ended(&self) -> Duration {
        self.started + self.took
    }

    /// Whether it succeeded.
    pub fn ok(&self) -> bool {
        self.outcome == Outcome::Ok
    }
}

/// An acknowledged write.
#[derive(Debug, Clone)]
pub struct Ack {
    /// The key.
    pub key: String,
    /// The value `SET` stored.
    pub value: String,
    /// Its slot.
    pub slot: u16,
    /// Whether `WAIT` confirmed a replica has it.
    pub durable: bool,
    /// When it was acknowledged, from the start of the load.
    pub at: Duration,
}

/// How the load runs.
#[derive(Clone)]
pub struct LoadOptions {
    /// The context name of the cluster client in the baseplate.
    pub client: String,
    /// Paced workers.
    pub workers: usize,
    /// Operations per second all workers aim for together.
    pub ops_per_second: f64,
    /// The share of operations that are writes (the rest are reads, once there is something to read).
    pub write_share: f64,
    /// How long `WAIT` waits for a replica.
    pub wait_for_replica: Duration,
    /// Which part of the slot space each slot belongs to (16384 labels; 0 = written by nobody).
    /// Worker `w` writes and reads keys of the `w % parts`-th distinct non-zero label.
    pub partition: Arc<Vec<u16>>,
}

impl std::fmt::Debug for LoadOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadOptions")
            .field("client", &self.client)
            .field("workers", &self.workers)
            .field("ops_per_second", &self.ops_per_second)
            .field("write_share", &self.write_share)
            .field("wait_for_replica", &self.wait_for_replica)
            .field("parts", &parts(&self.partition).len())
            .finish()
    }
}

impl LoadOptions {
    /// Writes and reads half and half through the client `client`, `WAIT` for 100 ms, every
    /// worker on every slot.
    pub fn new(client: &str, workers: usize, ops_per_second: f64) -> Self {
        Self {
            client: client.to_owned(),
            workers: workers.max(1),
            ops_per_second: ops_per_second.max(1.0),
            write_share: 0.5,
            wait_for_replica: Duration::from_millis(100),
            partition: Arc::new(vec![1; 16_384]),
        }
    }

    /// Pins workers to parts of the slot space; see [`partition`](Self::partition).
    ///
    /// # Panics
    /// When `partition` does not have 16384 labels or labels no slot.
    #[must_use]
    pub fn with_partition(mut self, partition: Vec<u16>) -> Self {
        assert_eq!(partition.len(), 16_384, "one label per slot");
        assert!(!parts(&partition).is_empty(), "no slot is labelled");
        self.partition = Arc::new(partition);
        self
    }
}

/// The distinct non-zero labels of a partition, in order.
fn parts(partition: &[u16]) -> Vec<u16> {
    let labels: std::collections::BTreeSet<u16> =
        partition.iter().copied().filter(|&l| l != 0).collect();
    labels.into_iter().collect()
}

/// The most errors that do not name the client kept in [`LoadResult::anonymous_errors`].
pub const MAX_ANONYMOUS: usize = 100;

/// An error a caller got that does not name the client.
#[derive(Debug, Clone)]
pub struct AnonymousError {
    /// When its operation started, from the start of the load.
    pub started: Duration,
    /// Its kind (see [`error_kind`]).
    pub kind: String,
    /// Its message.
    pub message: String,
}

/// What the load did, once finished.
#[derive(Debug, Clone, Default)]
pub struct LoadResult {
    /// Every operation, in no particular order.
    pub records: Vec<OpRecord>,
    /// Every acknowledged write.
    pub acks: Vec<Ack>,
    /// One message per error kind, as the caller saw it.
    pub error_samples: BTreeMap<String, String>,
    /// Errors whose message does not name the client (`redis cluster client "foo": ...`), the
    /// first [`MAX_ANONYMOUS`] of them: error replies, which reach callers as Redis sent them.
    pub anonymous_errors: Vec<AnonymousError>,
    /// How many errors did not name the client.
    pub anonymous_total: usize,
    /// When the load stopped, from its start.
    pub ended: Duration,
    /// Workers that panicked (a panic in the client would surface here).
    pub panicked: usize,
    /// Workers that did not stop within ten seconds of being asked (a hang).
    pub hung: usize,
}

/// A running load. Workers are grouped so that some (the slow callers) can be stopped early.
pub struct Load {
    started: Instant,
    baseplate: Arc<Baseplate>,
    options: LoadOptions,
    shared: Arc<Shared>,
    groups: Vec<Group>,
}

impl std::fmt::Debug for Load {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Load")
            .field("elapsed", &self.started.elapsed())
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// A group of workers started together.
struct Group {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

/// A handle on a group of workers, to stop them early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupId(usize);

#[derive(Default)]
struct Shared {
    records: Mutex<Vec<OpRecord>>,
    acks: Mutex<Vec<Ack>>,
    /// Indices into `acks` of the durable writes, by part.
    durable: Mutex<BTreeMap<u16, Vec<usize>>>,
    error_samples: Mutex<BTreeMap<String, String>>,
    anonymous: Mutex<(Vec<AnonymousError>, usize)>,
    next_key: AtomicU64,
    run: String,
}

impl Load {
    /// Starts the paced readers and writers.
    pub fn start(baseplate: Arc<Baseplate>, options: LoadOptions) -> Load {
        // Loads of one process (two of them may run at once, and start within a millisecond)
        // and of processes before it never share a key.
        static LOADS: AtomicU64 = AtomicU64::new(0);
        let run = format!(
            "chaos:{}:{}:{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis())
                .unwrap_or_default(),
            LOADS.fetch_add(1, Ordering::Relaxed)
        );
        let mut load = Load {
            started: Instant::now(),
            baseplate,
            options,
            shared: Arc::new(Shared {
                run,
                ..Shared::default()
            }),
            groups: Vec::new(),
        };
        let period =
            Duration::from_secs_f64(load.options.workers as f64 / load.options.ops_per_second);
        let workers = load.options.workers;
        load.spawn_group(workers, move |worker| Work::Mixed {
            period,
            rng: SmallRng::seed_from_u64(worker as u64 ^ 0x5eed),
        });
        load
    }

    /// When the load started: the origin of every time in its records.
    pub fn origin(&self) -> Instant {
        self.started
    }

    /// Time since the load started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Starts `count` callers that each run `BLPOP` of an empty key of their own for `hold`, back
    /// to back, holding one of the pool's slots for that long each time. Their keys are spread
    /// over the parts of the slot space like the workers' (caller `i` on the `i % parts`-th), so
    /// over every primary with the default partition.
    pub fn start_slow_callers(&mut self, count: usize, hold: Duration) -> GroupId {
        self.spawn_group(count, move |_| Work::Slow {
            hold,
            first_after: Duration::ZERO,
        })
    }

    /// Like [`start_slow_callers`](Self::start_slow_callers), with their first calls spread evenly
    /// over `hold`, as callers that started at different times would be: started together, they
    /// would all come back and call again at the same instant, every time.
    pub fn start_staggered_callers(&mut self, count: usize, hold: Duration) -> GroupId {
        let spacing = hold / u32::try_from(count.max(1)).unwrap_or(u32::MAX);
        self.spawn_group(count, move |caller| Work::Slow {
            hold,
            first_after: spacing * u32::try_from(caller).unwrap_or(0),
        })
    }

    /// Stops a group of workers and waits for them (at most ten seconds); returns how many did
    /// not stop in time.
    pub async fn stop_group(&mut self, id: GroupId) -> usize {
        let group = std::mem::replace(
            &mut self.groups[id.0],
            Group {
                stop: watch::channel(true).0,
                tasks: Vec::new(),
            },
        );
        join_group(group).await.1
    }

    /// A copy of the records so far.
    pub fn records(&self) -> Vec<OpRecord> {
        lock(&self.shared.records).clone()
    }

    /// Stops every worker, waits for them, and returns what the load did.
    pub async fn finish(mut self) -> LoadResult {
        let ended = self.started.elapsed();
        let mut panicked = 0;
        let mut hung = 0;
        for group in std::mem::take(&mut self.groups) {
            let (p, h) = join_group(group).await;
            panicked += p;
            hung += h;
        }
        let (anonymous_errors, anonymous_total) =
            std::mem::take(&mut *lock(&self.shared.anonymous));
        LoadResult {
            records: std::mem::take(&mut *lock(&self.shared.records)),
            acks: std::mem::take(&mut *lock(&self.shared.acks)),
            error_samples: std::mem::take(&mut *lock(&self.shared.error_samples)),
            anonymous_errors,
            anonymous_total,
            ended,
            panicked,
            hung,
        }
    }

    fn spawn_group(&mut self, count: usize, work: impl Fn(usize) -> Work) -> GroupId {
        let (stop, stopped) = watch::channel(false);
        let tasks = (0..count)
            .map(|worker| {
                let labels = parts(&self.options.partition);
                let worker_state = Worker {
                    part: labels[worker % labels.len()],
                    baseplate: Arc::clone(&self.baseplate),
                    options: self.options.clone(),
                    shared: Arc::clone(&self.shared),
                    started: self.started,
                    id: worker,
                    stopped: stopped.clone(),
                };
                tokio::spawn(worker_state.run(work(worker)))
            })
            .collect();
        self.groups.push(Group { stop, tasks });
        GroupId(self.groups.len() - 1)
    }
}

async fn join_group(group: Group) -> (usize, usize) {
    let _ = group.stop.send(true);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut panicked = 0;
    let mut hung = 0;
    for mut task in group.tasks {
        match tokio::time::timeout_at(deadline, &mut task).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => panicked += 1,
            Err(_) => {
                task.abort();
                hung += 1;
            }
        }
    }
    (panicked, hung)
}

enum Work {
    Mixed {
        period: Duration,
        rng: SmallRng,
    },
    Slow {
        hold: Duration,
        first_after: Duration,
    },
}

struct Worker {
    baseplate: Arc<Baseplate>,
    options: LoadOptions,
    shared: Arc<Shared>,
    started: Instant,
    id: usize,
    /// The part of the slot space this worker uses.
    part: u16,
    stopped: watch::Receiver<bool>,
}

impl Worker {
    async fn run(mut self, work: Work) {
        match work {
            Work::Mixed { period, mut rng } => {
                let mut ticker = tokio::time::interval(period);
                ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                // Spread the workers over the period so they do not fire in lockstep.
                tokio::time::sleep(period.mul_f64(rng.random::<f64>())).await;
                loop {
                    tokio::select! {
                        _ = self.stopped.changed() => return,
                        _ = ticker.tick() => {}
                    }
                    if *self.stopped.borrow() {
                        return;
                    }
                    let durable = lock(&self.shared.durable)
                        .get(&self.part)
                        .map_or(0, Vec::len);
                    if durable == 0 || rng.random::<f64>() < self.options.write_share {
                        self.write().await;
                    } else {
                        let index = rng.random_range(0..durable);
                        self.read(index).await;
                    }
                }
            }
            Work::Slow { hold, first_after } => {
                if !first_after.is_zero() {
                    tokio::select! {
                        _ = self.stopped.changed() => return,
                        _ = tokio::time::sleep(first_after) => {}
                    }
                }
                while !*self.stopped.borrow() {
                    self.slow(hold).await;
                }
            }
        }
    }

    /// A request as a service starts one: a context and its server span, named after the operation.
    fn request(&self, route: &str) -> (baseplate::RequestContext, tracing::Span) {
        let ctx = self.baseplate.make_context_object();
        let span = self.baseplate.make_server_span(&ctx, route);
        (ctx, span)
    }

    fn client(&self, ctx: &baseplate::RequestContext) -> MonitoredClusterRedisConnection {
        ctx.redis_cluster(&self.options.client)
            .expect("the chaos client is configured")
    }

    async fn write(&self) {
        let (key, slot) = loop {
            let n = self.shared.next_key.fetch_add(1, Ordering::Relaxed);
            let key = format!("{}:{}:{n}", self.shared.run, self.id);
            let slot = key_slot(key.as_bytes());
            if self.options.partition[usize::from(slot)] == self.part {
                break (key, slot);
            }
        };
        let value = format!("v{}", self.started.elapsed().as_micros());
        let (ctx, span) = self.request("chaos_write");
        let foo = self.client(&ctx);
        let wait_ms = u64::try_from(self.options.wait_for_replica.as_millis()).unwrap_or(100);
        let started = Instant::now();
        let mut write = foo.pipeline("write");
        write.set(&key, &value).cmd("WAIT").arg(1).arg(wait_ms);
        let result: Result<((), i64), RedisError> = write.query_async().await;
        let took = started.elapsed();
        let outcome = match &result {
            Ok(((), replicas)) => {
                let ack = Ack {
                    key,
                    value,
                    slot,
                    durable: *replicas >= 1,
                    at: self.started.elapsed(),
                };
                let durable = ack.durable;
                let index = {
                    let mut acks = lock(&self.shared.acks);
                    acks.push(ack);
                    acks.len() - 1
                };
                if durable {
                    lock(&self.shared.durable)
                        .entry(self.part)
                        .or_default()
                        .push(index);
                }
                Outcome::Ok
            }
            Err(error) => self.failed(error, &ctx, started),
        };
        drop((ctx, span));
        self.record(OpKind::Write, slot, started, took, outcome);
    }

    async fn read(&self, durable_index: usize) {
        let ack = {
            let durable = lock(&self.shared.durable);
            let index = durable[&self.part][durable_index];
            lock(&self.shared.acks)[index].clone()
        };
        let (ctx, span) = self.request("chaos_read");
        let mut foo = self.client(&ctx);
        let started = Instant::now();
        let result: Result<Option<String>, RedisError> = foo.get(&ack.key).await;
        let took = started.elapsed();
        let outcome = match &result {
            Ok(Some(value)) if *value == ack.value => Outcome::Ok,
            Ok(Some(_)) => Outcome::WrongValue,
            Ok(None) => Outcome::StaleRead,
            Err(error) => self.failed(error, &ctx, started),
        };
        drop((ctx, span));
        self.record(OpKind::Read, ack.slot, started, took, outcome);
    }

    async fn slow(&self, hold: Duration) {
        let (key, slot) = self.key_of_part(&format!("{}:slow:{}", self.shared.run, self.id));
        let (ctx, span) = self.request("chaos_slow");
        let mut foo = self.client(&ctx);
        let started = Instant::now();
        let result: Result<Option<(String, String)>, RedisError> =
            foo.blpop(&key, hold.as_secs_f64()).await;
        let took = started.elapsed();
        let outcome = match &result {
            Ok(None) => Outcome::Ok,
            Ok(Some(_)) => Outcome::WrongValue,
            Err(error) => self.failed(error, &ctx, started),
        };
        drop((ctx, span));
        self.record(OpKind::Slow, slot, started, took, outcome);
    }

    /// The first of `{base}:0`, `{base}:1`, ... in this worker's part of the slot space (so on
    /// its primary, with the default partition), and its slot.
    fn key_of_part(&self, base: &str) -> (String, u16) {
        let mut n = 0u64;
        loop {
            let key = format!("{base}:{n}");
            let slot = key_slot(key.as_bytes());
            if self.options.partition[usize::from(slot)] == self.part {
                return (key, slot);
            }
            n += 1;
        }
    }

    /// Classifies a client error, scans it for the password, keeps it if it does not name the
    /// client, and marks the request failed.
    fn failed(
        &self,
        error: &RedisError,
        ctx: &baseplate::RequestContext,
        started: Instant,
    ) -> Outcome {
        let kind = error_kind(error);
        let (display, debug) = (error.to_string(), format!("{error:?}"));
        if !display.contains(&format!("redis cluster client {:?}", self.options.client)) {
            let mut anonymous = lock(&self.shared.anonymous);
            anonymous.1 += 1;
            if anonymous.0.len() < MAX_ANONYMOUS {
                anonymous.0.push(AnonymousError {
                    started: started.duration_since(self.started),
                    kind: kind.clone(),
                    message: display.clone(),
                });
            }
        }
        let shown = if display == debug {
            display
        } else {
            format!("{display} | {debug}")
        };
        observer().scan("error", &shown);
        ctx.record_failure(error);
        lock(&self.shared.error_samples)
            .entry(kind.clone())
            .or_insert(shown);
        Outcome::Failed(kind.into())
    }

    fn record(&self, kind: OpKind, slot: u16, started: Instant, took: Duration, outcome: Outcome) {
        let record = OpRecord {
            kind,
            slot,
            started: started.duration_since(self.started),
            took,
            outcome,
        };
        lock(&self.shared.records).push(record);
    }
}

/// A short name for the kind of a client error, for the table: `pool-timeout`, `timeout`,
/// `connect-timeout`, `connection-refused`, `connection-dropped`, a server error code
/// (`CLUSTERDOWN`, `MOVED`, ...), or redis-rs's error kind.
pub fn error_kind(error: &RedisError) -> String {
    if PoolTimeout::find(error).is_some() {
        return "pool-timeout".into();
    }
    if CallTimeout::find(error).is_some_and(|t| !t.waited_for_permit.is_zero()) {
        return "deadline-after-pool-wait".into();
    }
    let text = error.to_string();
    if error.is_timeout() {
        return if text.contains("connecting to the cluster took longer") {
            "connect-timeout".into()
        } else {
            "timeout".into()
        };
    }
    if error.is_connection_refusal() {
        return "connection-refused".into();
    }
    if error.is_connection_dropped() {
        return "connection-dropped".into();
    }
    if let Some(code) = error.code() {
        return code.to_owned();
    }
    format!("{:?}", error.kind()).to_lowercase()
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Reads every acknowledged write back from the primaries with a fresh plain connection; returns
/// the ones whose value is not there (missing or different).
///
/// # Panics
/// When the cluster cannot be reached.
pub async fn verify(urls: Vec<String>, acks: &[Ack]) -> Vec<Ack> {
    let conn = redis::cluster::ClusterClient::builder(urls)
        .response_timeout(Duration::from_secs(5))
        .build()
        .expect("a client for verification")
        .get_async_connection()
        .await
        .expect("connecting to verify the acknowledged writes");
    let readers = 8;
    let chunk = acks.len().div_ceil(readers).max(1);
    let tasks: Vec<JoinHandle<Vec<Ack>>> = acks
        .chunks(chunk)
        .map(|chunk| {
            let chunk = chunk.to_vec();
            let mut conn = conn.clone();
            tokio::spawn(async move {
                let mut missing = Vec::new();
                for ack in chunk {
                    let value: Option<String> = conn
                        .get(&ack.key)
                        .await
                        .unwrap_or_else(|e| panic!("reading back {}: {e}", ack.key));
                    if value.as_deref() != Some(ack.value.as_str()) {
                        missing.push(ack);
                    }
                }
                missing
            })
        })
        .collect();
    let mut missing = Vec::new();
    for task in tasks {
        missing.extend(task.await.expect("a verification reader panicked"));
    }
    missing
}
