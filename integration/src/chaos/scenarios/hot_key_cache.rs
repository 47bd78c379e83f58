//! The `hot-key-cache` scenario: a client with `cache_hot_keys = true` reads 20 hot keys (and
//! colder ones) in a loop, so that their reads are served from memory, while a plain client
//! writes increasing sequence numbers to them and reads them back from their primaries; the
//! primary of some of the hot keys is killed (its replica promoted), then their slots are
//! resharded to another primary. No cached read may return a lower sequence number than a
//! reference read from the primary that finished more than [`WINDOW`] before it started.

use std::sync::Arc;
use std::time::{Duration, Instant};

use baseplate::{
    ClusterRedisClient, ClusterRedisContextFactory, MonitoredClusterRedisConnection, RawConfig,
};
use baseplate_redis_cluster::CacheStats;
use cluster_launcher::ClusterNode;
use redis::{AsyncCommands as _, RedisError};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::checks::no_stale_reads;
use super::failover::{await_promotion, check_promoted, kill, promotion_text};
use super::harness::Harness;
use crate::chaos::cluster::blocking;
use crate::chaos::load::{LoadResult, error_kind};
use crate::chaos::observe::observer;
use crate::chaos::report::{LATE_MARGIN, Report, secs};
use crate::chaos::{ChaosOptions, Scenario};
use crate::{eventually, name_in_slot};

/// The context name of the caching client (the load and the writer use the harness's plain one).
const CACHING: &str = "hot";

/// Hot keys, each read by a task of its own every [`READ_EVERY`].
const HOT_KEYS: usize = 20;

/// Colder keys the readers also read (each once per [`COLD_EVERY`] of its hot reads), so that the
/// tracker has more than the hot keys to choose from.
const COLD_KEYS: usize = 200;

/// A cold read after this many hot reads.
const COLD_EVERY: usize = 5;

/// How often each hot key is read through the caching client.
const READ_EVERY: Duration = Duration::from_millis(5);

/// How often each hot key is written its next sequence number.
const WRITE_EVERY: Duration = Duration::from_millis(50);

/// How often each hot key is read from its primary by the reference reader.
const REFERENCE_EVERY: Duration = Duration::from_millis(10);

/// How long after a reference read finished a cached read may still return an older value: the
/// invalidation window. The server pushes the invalidation before it answers the write, and the
/// push is read within ~0.1 ms (integration/tests/hot_key_cache.rs measures it); 100 ms is the
/// bound a reader may notice.
pub(super) const WINDOW: Duration = Duration::from_millis(100);

/// Slots moved by the reshard, from the first slot of the promoted replica on (4 hot keys are in
/// them).
const MOVED_SLOTS: usize = 100;

/// Kill the primary of some hot keys, then move their slots, while a caching reader reads them.
pub(super) async fn hot_key_cache(options: &ChaosOptions) -> (Report, LoadResult) {
    // Reads go to primaries: a replica answers for a moving slot from its own data (see the
    // reshard scenario), which would be Redis's staleness, not the cache's.
    let overrides = [("read_from_replicas", "false".to_owned())];
    let mut run = Harness::start(Scenario::HotKeyCache, options, 1_000, &overrides).await;
    let cluster = Arc::clone(&run.cluster);
    let c = Arc::clone(&cluster);
    let (victim, replicas, others) = blocking(move || {
        let seed = c.seed_port();
        let nodes = c.nodes();
        let primaries: Vec<ClusterNode> = nodes
            .iter()
            .filter(|n| n.primary && n.slot_count() > 0)
            .cloned()
            .collect();
        let victim = primaries
            .iter()
            .find(|n| n.port != seed)
            .cloned()
            .expect("a primary other than the seed");
        let replicas = victim.replica_ports(&nodes);
        let others: Vec<ClusterNode> = primaries
            .into_iter()
            .filter(|n| n.port != victim.port)
            .collect();
        (victim, replicas, others)
    })
    .await;
    let keys = Keys::place(&victim, &others);
    let factory = caching_client(&run, options);
    let mut foo = run.client();
    for key in &keys.hot {
        let () = foo.set(key, 0).await.expect("setting the hot keys");
    }
    let mut avoid = replicas.clone();
    avoid.push(victim.port);
    run.start_load(None, &avoid).await;
    let origin = run.load.as_ref().expect("the load runs").origin();
    let traffic = Traffic::start(&factory, &foo, &keys, origin);
    let cached = eventually(Duration::from_secs(15), async || {
        cache_stats(&factory).hits > 0
    })
    .await;
    let fault_at = run.baseline().await;
    let before = cache_stats(&factory);
    let hot_set = factory.tracker().hot_reads();
    let (hot_in_set, cold_in_set) = keys.count_in(&hot_set);

    kill(&cluster, victim.port).await;
    let failover = await_promotion(&cluster, victim.port, &replicas).await;
    let promoted_at = run.elapsed();
    let at_promotion = cache_stats(&factory);
    // Cached again through the promoted replica's connection before the slots move.
    let cached_again = eventually(Duration::from_secs(10), async || {
        run.elapsed() >= promoted_at + Duration::from_secs(1)
            && cache_stats(&factory).hits > at_promotion.hits + 100
    })
    .await;
    let after_failover = cache_stats(&factory);
    let reshard_at = run.elapsed();
    let c = Arc::clone(&cluster);
    let promoted = failover.map(|(_, port)| port);
    let to = others[0].clone();
    let moving = keys.hot_slots[0];
    let outcome = blocking(move || {
        let from = c
            .nodes()
            .into_iter()
            .find(|n| Some(n.port) == promoted)
            .ok_or_else(|| "no promoted replica to move slots from".to_owned())?;
        c.reshard(&from.id, &to.id, MOVED_SLOTS)?;
        Ok::<u16, String>(c.slot_owners()[usize::from(moving)])
    })
    .await;
    let healed_at = run.elapsed();
    run.settle(healed_at).await;
    let records = traffic.finish().await;
    let result = run.stop_load().await;
    let after = cache_stats(&factory);
    factory.tracker().shutdown().await;
    drop(factory);

    let fault = format!(
        "SIGKILL primary 127.0.0.1:{} (holding 8 of the {HOT_KEYS} hot keys); {}; then redis-cli --cluster \
         reshard of {MOVED_SLOTS} slots (4 hot keys) from the promoted replica to 127.0.0.1:{}, {}",
        victim.port,
        promotion_text(failover, &replicas),
        others[0].port,
        match &outcome {
            Ok(_) => format!(
                "started {} after the promotion, done in {}",
                secs(reshard_at.saturating_sub(promoted_at)),
                secs(healed_at - reshard_at)
            ),
            Err(_) => "FAILED".into(),
        }
    );
    let mut report = run.report(&result, fault, fault_at, Some(healed_at)).await;
    check_promoted(&mut report, failover);
    no_stale_reads(&mut report);
    report.check(
        "redis-cli moves the hot keys' slots (the fault is real)",
        outcome.as_ref().is_ok_and(|&owner| owner == others[0].port),
        match &outcome {
            Ok(owner) => format!("slot {moving} now on 127.0.0.1:{owner}"),
            Err(e) => format!("redis-cli: {}", e.lines().last().unwrap_or("")),
        },
    );
    report.check(
        "the hot keys are read from memory before the faults (the scenario is real)",
        cached.is_some() && before.hits > 0 && hot_in_set > 0,
        format!(
            "{} hits; the tracker's hot set held {hot_in_set} of the {HOT_KEYS} hot keys and \
             {cold_in_set} of the {COLD_KEYS} cold ones",
            before.hits
        ),
    );
    report.check(
        "the hot keys are read from memory again after the failover",
        cached_again.is_some(),
        format!(
            "{} hits from the promotion until the reshard",
            after_failover.hits.saturating_sub(at_promotion.hits)
        ),
    );
    judge(&mut report, &records, &run, failover.map(|_| promoted_at));
    report.note(format!(
        "hot-key cache: {} reads of the hot keys and {} of cold ones through the caching client; \
         cache hits {}, misses {}, invalidations {} (hit share {:.0}%); {} writes acknowledged, {} \
         failed; {} reference reads",
        records.hot_reads().count(),
        records.reads.len() - records.hot_reads().count(),
        after.hits,
        after.misses,
        after.invalidations,
        after.hit_share() * 100.0,
        records.writes.iter().filter(|w| w.result.is_ok()).count(),
        records.writes.iter().filter(|w| w.result.is_err()).count(),
        records.references.len(),
    ));
    (report, result)
}

/// The keys: hot ones placed on every primary, cold ones anywhere.
struct Keys {
    hot: Vec<String>,
    hot_slots: Vec<u16>,
    cold: Vec<String>,
}

impl Keys {
    /// 8 hot keys on `victim` (4 of them in its first [`MOVED_SLOTS`] slots, which move after
    /// the failover, 4 further on), 6 on each of the `others`.
    fn place(victim: &ClusterNode, others: &[ClusterNode]) -> Keys {
        let (start, end) = victim.slots[0];
        let moved = u16::try_from(MOVED_SLOTS).unwrap_or(u16::MAX);
        let mut slots: Vec<u16> = (0..4u16).map(|i| start + i * (moved - 1) / 3).collect();
        let rest = end.saturating_sub(start + moved);
        slots.extend((0..4u16).map(|i| start + moved + i * (rest / 4)));
        for other in others.iter().take(2) {
            let (start, end) = other.slots[0];
            slots.extend((0..6u16).map(|i| start + i * ((end - start) / 6)));
        }
        slots.truncate(HOT_KEYS);
        let hot = slots
            .iter()
            .enumerate()
            .map(|(i, &slot)| name_in_slot(&format!("chaos:hot:{i}:"), slot))
            .collect();
        let cold = (0..COLD_KEYS).map(|i| format!("chaos:cold:{i}")).collect();
        Keys {
            hot,
            hot_slots: slots,
            cold,
        }
    }

    /// How many hot and how many cold keys `set` holds.
    fn count_in(&self, set: &[Vec<u8>]) -> (usize, usize) {
        let count = |keys: &[String]| {
            keys.iter()
                .filter(|k| set.iter().any(|s| s.as_slice() == k.as_bytes()))
                .count()
        };
        (count(&self.hot), count(&self.cold))
    }
}

/// The caching client: the harness client's URL and timeout, `cache_hot_keys = true` with room
/// for the hot keys alone, reads from primaries.
fn caching_client(run: &Harness, options: &ChaosOptions) -> ClusterRedisContextFactory {
    let timeout = format!("{} milliseconds", options.timeout.as_millis());
    let url = run.cluster.url_with_password();
    let max_keys = HOT_KEYS.to_string();
    let config: RawConfig = [
        (format!("{CACHING}.url"), url.as_str()),
        (format!("{CACHING}.timeout"), timeout.as_str()),
        (format!("{CACHING}.cache_hot_keys"), "true"),
        (format!("{CACHING}.cache_max_keys"), max_keys.as_str()),
        (format!("{CACHING}.read_from_replicas"), "false"),
    ]
    .into_iter()
    .collect();
    ClusterRedisClient::new()
        .parse(CACHING, &config)
        .expect("the caching client's config")
}

/// The caching client's counters so far.
fn cache_stats(factory: &ClusterRedisContextFactory) -> CacheStats {
    factory.pool().cache_stats().unwrap_or_default()
}

/// One read (of the caching reader or the reference reader) or write.
#[derive(Debug, Clone)]
struct Call {
    /// The hot key's index, or the cold key's for a cold read.
    key: usize,
    /// Whether it was a read of a cold key.
    cold: bool,
    /// When it started, from the load's origin.
    started: Duration,
    /// How long it took.
    took: Duration,
    /// The sequence number read (0 for a missing key), or written; the error's kind and whether
    /// it named its client otherwise.
    result: Result<u64, (String, bool)>,
}

impl Call {
    fn ended(&self) -> Duration {
        self.started + self.took
    }
}

/// Everything the scenario's own traffic did.
#[derive(Debug, Default)]
struct Records {
    reads: Vec<Call>,
    references: Vec<Call>,
    writes: Vec<Call>,
}

impl Records {
    fn hot_reads(&self) -> impl Iterator<Item = &Call> {
        self.reads.iter().filter(|r| !r.cold)
    }
}

/// The caching readers, the writers and the reference readers, a task per hot key each.
struct Traffic {
    stop: watch::Sender<bool>,
    reads: Vec<JoinHandle<Vec<Call>>>,
    references: Vec<JoinHandle<Vec<Call>>>,
    writes: Vec<JoinHandle<Vec<Call>>>,
}

impl Traffic {
    fn start(
        caching: &ClusterRedisContextFactory,
        plain: &MonitoredClusterRedisConnection,
        keys: &Keys,
        origin: Instant,
    ) -> Traffic {
        let (stop, stopped) = watch::channel(false);
        let cold = Arc::new(keys.cold.clone());
        let mut traffic = Traffic {
            stop,
            reads: Vec::new(),
            references: Vec::new(),
            writes: Vec::new(),
        };
        for (index, key) in keys.hot.iter().enumerate() {
            let conn = caching.make_object_for_context(CACHING, &tracing::Span::none());
            let task = Task {
                index,
                key: key.clone(),
                origin,
                stopped: stopped.clone(),
            };
            traffic
                .reads
                .push(tokio::spawn(task.clone().read(conn, Arc::clone(&cold))));
            traffic
                .references
                .push(tokio::spawn(task.clone().reference(plain.clone())));
            traffic.writes.push(tokio::spawn(task.write(plain.clone())));
        }
        traffic
    }

    async fn finish(self) -> Records {
        let _ = self.stop.send(true);
        let join = |tasks: Vec<JoinHandle<Vec<Call>>>| async move {
            let mut calls = Vec::new();
            for task in tasks {
                calls.extend(task.await.expect("a hot-key task panicked"));
            }
            calls
        };
        Records {
            reads: join(self.reads).await,
            references: join(self.references).await,
            writes: join(self.writes).await,
        }
    }
}

/// One hot key's tasks.
#[derive(Clone)]
struct Task {
    index: usize,
    key: String,
    origin: Instant,
    stopped: watch::Receiver<bool>,
}

impl Task {
    /// Waits for the next tick of `ticks`; false once the traffic is to stop.
    async fn tick(&mut self, ticks: &mut tokio::time::Interval) -> bool {
        tokio::select! {
            _ = self.stopped.changed() => return false,
            _ = ticks.tick() => {}
        }
        !*self.stopped.borrow()
    }

    async fn read(
        mut self,
        mut conn: MonitoredClusterRedisConnection,
        cold: Arc<Vec<String>>,
    ) -> Vec<Call> {
        let mut calls = Vec::new();
        let mut ticks = ticker(READ_EVERY);
        let mut n: usize = 0;
        while self.tick(&mut ticks).await {
            n += 1;
            calls.push(get(&mut conn, &self.key, self.index, false, self.origin).await);
            if n.is_multiple_of(COLD_EVERY) {
                let which = (self.index * 7 + n / COLD_EVERY) % cold.len();
                calls.push(get(&mut conn, &cold[which], which, true, self.origin).await);
            }
        }
        calls
    }

    async fn reference(mut self, mut conn: MonitoredClusterRedisConnection) -> Vec<Call> {
        let mut calls = Vec::new();
        let mut ticks = ticker(REFERENCE_EVERY);
        while self.tick(&mut ticks).await {
            calls.push(get(&mut conn, &self.key, self.index, false, self.origin).await);
        }
        calls
    }

    async fn write(mut self, mut conn: MonitoredClusterRedisConnection) -> Vec<Call> {
        let mut calls = Vec::new();
        let mut ticks = ticker(WRITE_EVERY);
        let mut n: u64 = 0;
        while self.tick(&mut ticks).await {
            n += 1;
            let started = Instant::now();
            let result: Result<(), RedisError> = conn.set(&self.key, n).await;
            calls.push(Call {
                key: self.index,
                cold: false,
                started: started.duration_since(self.origin),
                took: started.elapsed(),
                result: result.map(|()| n).map_err(|e| failure(&e, conn.name())),
            });
        }
        calls
    }
}

/// A ticker every `every` that delays rather than bursts after a slow call.
fn ticker(every: Duration) -> tokio::time::Interval {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks
}

/// A `GET` of `key`, as a [`Call`].
async fn get(
    conn: &mut MonitoredClusterRedisConnection,
    key: &str,
    index: usize,
    cold: bool,
    origin: Instant,
) -> Call {
    let started = Instant::now();
    let result: Result<Option<String>, RedisError> = conn.get(key).await;
    let took = started.elapsed();
    let result = match result {
        Ok(value) => value
            .map_or(Ok(0), |v| v.parse::<u64>())
            .map_err(|_| ("not-a-sequence-number".to_owned(), true)),
        Err(error) => Err(failure(&error, conn.name())),
    };
    Call {
        key: index,
        cold,
        started: started.duration_since(origin),
        took,
        result,
    }
}

/// An error's kind and whether it names the client `client`; scanned for the password.
fn failure(error: &RedisError, client: &str) -> (String, bool) {
    let text = format!("{error} | {error:?}");
    observer().scan("error", &text);
    let named = error
        .to_string()
        .contains(&format!("redis cluster client {client:?}"));
    (error_kind(error), named)
}

/// A cached read that returned less than a reference read had seen: when it started, the key,
/// what it read, and the reference read's value and end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stale {
    started: Duration,
    key: usize,
    read: u64,
    reference: u64,
    reference_ended: Duration,
}

/// What the cached reads were judged to be against the reference reads.
#[derive(Debug, Default, PartialEq, Eq)]
struct Judgement {
    /// Cached reads that started more than [`WINDOW`] after a reference read finished and
    /// returned less than it had seen.
    stale: Vec<Stale>,
    /// The longest a successful cached read lagged behind a finished reference read that had seen
    /// more (from the reference read's end to the cached read's start); zero when none did.
    longest_lag: Duration,
    /// The same, among the reads that lagged by no more than the window (those not stale).
    longest_lag_within: Duration,
    /// Reference values later reference reads showed lost (a later read saw less): writes the
    /// failover lost, which no cached read is held to.
    lost: usize,
}

/// Judges `reads` against `references` (both of hot keys, successful or not) with `window`.
fn judge_reads(reads: &[Call], references: &[Call], keys: usize, window: Duration) -> Judgement {
    let mut judgement = Judgement::default();
    for key in 0..keys {
        let mut refs: Vec<(Duration, Duration, u64)> = references
            .iter()
            .filter(|r| r.key == key)
            .filter_map(|r| r.result.as_ref().ok().map(|&v| (r.started, r.ended(), v)))
            .collect();
        // A value is lost when a reference read started after it finished saw less.
        refs.sort_by_key(|r| r.0);
        let mut floor = vec![u64::MAX; refs.len() + 1];
        for i in (0..refs.len()).rev() {
            floor[i] = floor[i + 1].min(refs[i].2);
        }
        let starts: Vec<Duration> = refs.iter().map(|r| r.0).collect();
        let mut kept: Vec<(Duration, u64)> = Vec::new();
        for &(_, ended, value) in &refs {
            let later = starts.partition_point(|&s| s < ended);
            if floor[later] < value {
                judgement.lost += 1;
            } else {
                kept.push((ended, value));
            }
        }
        // The highest value seen by the reference reads finished by each end.
        kept.sort_by_key(|r| r.0);
        let mut best: Vec<(Duration, u64)> = Vec::with_capacity(kept.len());
        for (ended, value) in kept {
            let high = best.last().map_or(value, |&(_, v)| v.max(value));
            best.push((ended, high));
        }
        for read in reads.iter().filter(|r| r.key == key && !r.cold) {
            let Ok(value) = read.result else { continue };
            let known = best.partition_point(|&(ended, _)| ended + window < read.started);
            if let Some(&(ended, reference)) = known.checked_sub(1).map(|i| &best[i])
                && reference > value
            {
                judgement.stale.push(Stale {
                    started: read.started,
                    key,
                    read: value,
                    reference,
                    reference_ended: ended,
                });
            }
            // The first reference read that finished having seen more than this read returned.
            let first = best.partition_point(|&(_, high)| high <= value);
            if let Some(&(ended, _)) = best.get(first)
                && ended < read.started
            {
                let lag = read.started - ended;
                judgement.longest_lag = judgement.longest_lag.max(lag);
                if lag <= window {
                    judgement.longest_lag_within = judgement.longest_lag_within.max(lag);
                }
            }
        }
    }
    judgement.stale.sort_by_key(|s| s.started);
    judgement
}

/// Which keys the stale reads were of, and when, for the report.
fn stale_summary(stale: &[Stale]) -> String {
    let mut keys = std::collections::BTreeMap::<usize, Vec<&Stale>>::new();
    for s in stale {
        keys.entry(s.key).or_default().push(s);
    }
    keys.iter()
        .map(|(key, reads)| {
            let (first, last) = (reads[0], reads[reads.len() - 1]);
            format!(
                "; hot key {key}: {} from {} to {} (the first read {} where a reference read \
                 finished at {} had seen {}; the last read {} against {})",
                reads.len(),
                secs(first.started),
                secs(last.started),
                first.read,
                secs(first.reference_ended),
                first.reference,
                last.read,
                last.reference
            )
        })
        .collect()
}

/// The checks on the scenario's own traffic.
fn judge(report: &mut Report, records: &Records, run: &Harness, promoted_at: Option<Duration>) {
    let hot: Vec<Call> = records.hot_reads().cloned().collect();
    let judgement = judge_reads(&hot, &records.references, HOT_KEYS, WINDOW);
    report.check(
        format!(
            "no cached read is stale: none returns a lower sequence number than a reference read \
             from the primary that finished more than {} before it started",
            secs(WINDOW)
        ),
        judgement.stale.is_empty(),
        format!(
            "{} stale of {} hot reads, {} of them before the first fault{}",
            judgement.stale.len(),
            hot.len(),
            judgement
                .stale
                .iter()
                .filter(|s| s.started < report.run.fault_at)
                .count(),
            stale_summary(&judgement.stale)
        ),
    );
    report.note(format!(
        "hot-key cache window: W = {}; the longest a cached read lagged behind a finished \
         reference read that had seen a higher sequence number: {} ({} among the reads within W); \
         reference values later shown lost by the failover (not held against cached reads): {}",
        secs(WINDOW),
        secs(judgement.longest_lag),
        secs(judgement.longest_lag_within),
        judgement.lost
    ));
    let late_after = run.deadline + LATE_MARGIN;
    let all = || {
        records
            .reads
            .iter()
            .chain(&records.references)
            .chain(&records.writes)
    };
    let late = all().filter(|c| c.took > late_after).count();
    let slowest = all().map(|c| c.took).max().unwrap_or_default();
    report.check(
        format!(
            "no call of the caching reader, the writer or the reference reader takes longer than \
             its deadline + {} ({})",
            secs(LATE_MARGIN),
            secs(late_after)
        ),
        late == 0,
        format!("{late} late; slowest {}", secs(slowest)),
    );
    let failed = |calls: &[Call]| calls.iter().filter(|c| c.result.is_err()).count();
    let anonymous = all()
        .filter(|c| matches!(c.result, Err((_, false))))
        .count();
    report.check(
        "every error of the caching reader, the writer and the reference reader names its client",
        anonymous == 0,
        format!("{anonymous} do not"),
    );
    let in_failover = |c: &Call| {
        c.ended() > report.run.fault_at
            && promoted_at.is_none_or(|p| c.started < p + Duration::from_secs(1))
    };
    let outside = all()
        .filter(|c| c.result.is_err() && !in_failover(c))
        .count();
    let mut kinds = std::collections::BTreeMap::<&str, usize>::new();
    for call in all() {
        if let Err((kind, _)) = &call.result {
            *kinds.entry(kind.as_str()).or_default() += 1;
        }
    }
    report.note(format!(
        "hot-key cache errors: caching reader {}, writer {}, reference reader {} ({}), all from the \
         kill to 1 s after the promotion but {outside}",
        failed(&records.reads),
        failed(&records.writes),
        failed(&records.references),
        if kinds.is_empty() {
            "none".to_owned()
        } else {
            kinds
                .iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    ));
    report.check(
        "the caching reader, the writer and the reference reader fail only from the kill until 1 s \
         after the promotion (none during the reshard)",
        outside == 0,
        format!("{outside} failures outside"),
    );
    let after = |calls: &[Call]| {
        promoted_at.is_some_and(|p| {
            calls
                .iter()
                .any(|c| c.started > p + Duration::from_secs(1) && c.result.is_ok())
        })
    };
    report.check(
        "the writer and the reference reader work again after the failover (the comparison is sound)",
        after(&records.writes) && after(&records.references),
        format!(
            "{} writes and {} reference reads succeeded from 1 s after the promotion",
            records
                .writes
                .iter()
                .filter(|c| promoted_at.is_some_and(|p| c.started > p + Duration::from_secs(1)) && c.result.is_ok())
                .count(),
            records
                .references
                .iter()
                .filter(|c| promoted_at.is_some_and(|p| c.started > p + Duration::from_secs(1)) && c.result.is_ok())
                .count(),
        ),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn call(started: u64, took: u64, value: u64) -> Call {
        Call {
            key: 0,
            cold: false,
            started: ms(started),
            took: ms(took),
            result: Ok(value),
        }
    }

    #[test]
    fn a_cached_read_is_stale_only_past_the_window_and_not_against_a_lost_value() {
        // The reference saw 5 by 100 ms and 9 by 300 ms; 9 was lost (read at 500 ms saw 7).
        let references = [call(90, 10, 5), call(290, 10, 9), call(500, 5, 7)];
        let reads = [
            // 150 ms after 5 was seen, past the window: stale.
            call(250, 1, 4),
            // 50 ms after 5 was seen: within the window.
            call(150, 1, 4),
            // Past the window after 9 was seen, but 9 was lost and 7 is what the primary has.
            call(450, 1, 7),
            // 5 seen long ago, 7 returned: fresh.
            call(620, 1, 7),
            // Less than 7, which was seen 115 ms before: stale.
            call(620, 1, 6),
        ];
        let judgement = judge_reads(&reads, &references, 1, ms(100));
        assert_eq!(judgement.lost, 1);
        let stale: Vec<(Duration, u64)> = judgement
            .stale
            .iter()
            .map(|s| (s.started, s.read))
            .collect();
        assert_eq!(stale, [(ms(250), 4), (ms(620), 6)]);
        assert_eq!(judgement.longest_lag, ms(150));
        assert_eq!(judgement.longest_lag_within, ms(50));
    }
}
