//! What the benchmark runs: 100,000 preloaded keys of 100-byte values, drawn Zipf(1.0); 90% GET and
//! 10% SET; single commands or named pipelines of 16 commands; a number of concurrent tasks. The
//! hot-key workload draws the same keys Zipf(1.2), 95% GET and 5% SET, in single commands.

use std::fmt;

use baseplate_redis_cluster::key_slot;
use rand::rngs::SmallRng;
use rand::{RngExt as _, SeedableRng as _};
use rand_distr::{Distribution as _, Zipf};
use serde::{Deserialize, Serialize};

use crate::bench::BenchError;

/// How many distinct keys the workloads draw from (all preloaded).
pub const KEY_COUNT: usize = 100_000;
/// The size of every value written and preloaded, in bytes.
pub const VALUE_SIZE: usize = 100;
/// The share of commands that are `SET`s; the rest are `GET`s.
pub const WRITE_SHARE: f64 = 0.1;
/// The exponent of the Zipf distribution over key ranks.
pub const ZIPF_EXPONENT: f64 = 1.0;
/// The hot-key workload's share of `SET`s.
pub const HOT_WRITE_SHARE: f64 = 0.05;
/// The hot-key workload's Zipf exponent: a steeper skew, where a few keys take most reads.
pub const HOT_ZIPF_EXPONENT: f64 = 1.2;
/// Concurrent tasks of the hot-key workload.
pub const HOT_TASKS: usize = 50;
/// Commands per named pipeline in the pipeline workload.
pub const PIPELINE_DEPTH: usize = 16;
/// Redis Cluster's number of hash slots.
pub const SLOT_COUNT: u16 = 16_384;

/// Which keys and commands a workload draws.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Mix {
    /// Zipf([`ZIPF_EXPONENT`]) keys, [`WRITE_SHARE`] writes.
    #[default]
    Standard,
    /// Zipf([`HOT_ZIPF_EXPONENT`]) keys, [`HOT_WRITE_SHARE`] writes: where a hot-key cache pays.
    HotKeys,
}

impl Mix {
    /// The exponent of the Zipf distribution over key ranks.
    pub fn zipf_exponent(self) -> f64 {
        match self {
            Self::Standard => ZIPF_EXPONENT,
            Self::HotKeys => HOT_ZIPF_EXPONENT,
        }
    }

    /// The share of commands that are `SET`s.
    pub fn write_share(self) -> f64 {
        match self {
            Self::Standard => WRITE_SHARE,
            Self::HotKeys => HOT_WRITE_SHARE,
        }
    }
}

/// One workload: `tasks` concurrent loops, each sending `depth` commands per request (1: single
/// commands, more: a named pipeline of that many commands spread over slots), drawn from `mix`.
///
/// Ordered standard before hot-key workloads, then singles first (by tasks), then pipelines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Workload {
    /// Which keys and commands are drawn (standard when a report predates the field).
    #[serde(default)]
    pub mix: Mix,
    /// Commands per request.
    pub depth: usize,
    /// Concurrent tasks.
    pub tasks: usize,
}

impl Workload {
    /// Single commands at `tasks` concurrent tasks.
    pub const fn single(tasks: usize) -> Self {
        Self {
            mix: Mix::Standard,
            depth: 1,
            tasks,
        }
    }

    /// Named pipelines of `depth` commands at `tasks` concurrent tasks.
    pub const fn pipeline(tasks: usize, depth: usize) -> Self {
        Self {
            mix: Mix::Standard,
            depth,
            tasks,
        }
    }

    /// Single commands of the [`Mix::HotKeys`] mix at `tasks` concurrent tasks.
    pub const fn hot_keys(tasks: usize) -> Self {
        Self {
            mix: Mix::HotKeys,
            depth: 1,
            tasks,
        }
    }

    /// Whether requests are pipelines.
    pub fn is_pipeline(&self) -> bool {
        self.depth > 1
    }

    /// Whether this is the hot-key workload.
    pub fn is_hot_keys(&self) -> bool {
        self.mix == Mix::HotKeys
    }

    /// A short id for command lines and JSON: `single-50`, `pipeline16-50`, `hotkeys-50`.
    pub fn id(&self) -> String {
        if self.is_hot_keys() {
            format!("hotkeys-{}", self.tasks)
        } else if self.is_pipeline() {
            format!("pipeline{}-{}", self.depth, self.tasks)
        } else {
            format!("single-{}", self.tasks)
        }
    }

    /// Reads an [`id`](Self::id) back.
    ///
    /// # Errors
    /// When `id` is not of either form.
    pub fn parse(id: &str) -> Result<Self, BenchError> {
        let bad =
            || format!("unknown workload `{id}` (expected single-N, pipelineD-N or hotkeys-N)");
        let (kind, tasks) = id.split_once('-').ok_or_else(bad)?;
        let tasks: usize = tasks.parse().map_err(|_| bad())?;
        if tasks == 0 {
            return Err(bad().into());
        }
        let depth = match kind {
            "hotkeys" => return Ok(Self::hot_keys(tasks)),
            "single" => 1,
            _ => kind
                .strip_prefix("pipeline")
                .and_then(|d| d.parse().ok())
                .filter(|&d: &usize| d > 1)
                .ok_or_else(bad)?,
        };
        Ok(Self::pipeline(tasks, depth))
    }
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = if self.tasks == 1 { "" } else { "s" };
        if self.is_hot_keys() {
            write!(f, "hot keys, Zipf(1.2), {} task{s}", self.tasks)
        } else if self.is_pipeline() {
            write!(f, "pipelines of {}, {} task{s}", self.depth, self.tasks)
        } else {
            write!(f, "single commands, {} task{s}", self.tasks)
        }
    }
}

/// The workloads of a benchmark run: single commands at 1, 50 and 500 tasks, named pipelines of
/// 16 commands at 50 tasks, then the hot-key workload at [`HOT_TASKS`] tasks.
pub fn workloads() -> Vec<Workload> {
    vec![
        Workload::single(1),
        Workload::single(50),
        Workload::single(500),
        Workload::pipeline(50, PIPELINE_DEPTH),
        Workload::hot_keys(HOT_TASKS),
    ]
}

/// One command to send: `SET` (a write) or `GET` of the key at index `key` of the [`KeySpace`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Op {
    /// Index into the key space: Zipf rank minus one, so index 0 is the hottest key.
    pub key: u32,
    /// `SET` when true, `GET` otherwise.
    pub write: bool,
}

/// A seeded stream of [`Op`]s: Zipf key ranks over [`KEY_COUNT`] keys and writes, as a [`Mix`]
/// says.
#[derive(Debug, Clone)]
pub struct OpGenerator {
    rng: SmallRng,
    zipf: Zipf<f64>,
    write_share: f64,
}

impl OpGenerator {
    /// A generator of the standard mix whose stream is fixed by `seed`.
    ///
    /// # Errors
    /// Never with the constants above; the Zipf parameters are checked all the same.
    pub fn new(seed: u64) -> Result<Self, BenchError> {
        Self::of_mix(Mix::Standard, seed)
    }

    /// A generator of `mix` whose stream is fixed by `seed`.
    ///
    /// # Errors
    /// Never with the constants above; the Zipf parameters are checked all the same.
    pub fn of_mix(mix: Mix, seed: u64) -> Result<Self, BenchError> {
        let exponent = mix.zipf_exponent();
        #[allow(clippy::cast_precision_loss)]
        let zipf = Zipf::new(KEY_COUNT as f64, exponent)
            .map_err(|e| format!("Zipf({exponent}) over {KEY_COUNT} keys: {e}"))?;
        Ok(Self {
            rng: SmallRng::seed_from_u64(seed),
            zipf,
            write_share: mix.write_share(),
        })
    }

    /// The next command.
    pub fn next_op(&mut self) -> Op {
        // Zipf yields ranks 1..=KEY_COUNT as floats; the conversion is exact.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let rank = self.zipf.sample(&mut self.rng) as u32;
        Op {
            key: rank.saturating_sub(1),
            write: self.rng.random_bool(self.write_share),
        }
    }
}

/// The preloaded keys (`bench:key:0` .. `bench:key:99999`), their hash slots and the value every
/// write stores.
#[derive(Debug, Clone)]
pub struct KeySpace {
    keys: Vec<String>,
    slots: Vec<u16>,
    value: Vec<u8>,
}

impl KeySpace {
    /// The [`KEY_COUNT`] keys, with [`VALUE_SIZE`]-byte values.
    pub fn new() -> Self {
        let keys: Vec<String> = (0..KEY_COUNT).map(|i| format!("bench:key:{i}")).collect();
        let slots = keys.iter().map(|k| key_slot(k.as_bytes())).collect();
        Self {
            keys,
            slots,
            value: vec![b'v'; VALUE_SIZE],
        }
    }

    /// The key at `index`.
    pub fn key(&self, index: u32) -> &str {
        &self.keys[index as usize % self.keys.len()]
    }

    /// The hash slot of the key at `index`.
    pub fn slot(&self, index: u32) -> u16 {
        self.slots[index as usize % self.slots.len()]
    }

    /// The value every write stores.
    pub fn value(&self) -> &[u8] {
        &self.value
    }

    /// How many keys there are.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there are no keys (never, for [`KeySpace::new`]).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The command `op` stands for.
    pub fn command(&self, op: Op) -> redis::Cmd {
        let mut cmd = if op.write {
            redis::cmd("SET")
        } else {
            redis::cmd("GET")
        };
        cmd.arg(self.key(op.key));
        if op.write {
            cmd.arg(self.value());
        }
        cmd
    }
}

impl Default for KeySpace {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLES: usize = 200_000;

    fn ops(seed: u64, count: usize) -> Vec<Op> {
        let mut generator = OpGenerator::new(seed).unwrap();
        (0..count).map(|_| generator.next_op()).collect()
    }

    #[test]
    fn key_ranks_follow_zipf_one() {
        let mut counts = vec![0usize; KEY_COUNT];
        for op in ops(7, SAMPLES) {
            counts[op.key as usize] += 1;
        }
        // P(rank k) = 1 / (k * H_n); H_100000 = 12.0901.
        let harmonic: f64 = (1..=KEY_COUNT).map(|k| 1.0 / k as f64).sum();
        for rank in [1usize, 2, 3, 10] {
            let expected = SAMPLES as f64 / (rank as f64 * harmonic);
            let seen = counts[rank - 1] as f64;
            assert!(
                (seen - expected).abs() < 0.08 * expected,
                "rank {rank}: {seen} draws, expected about {expected:.0}"
            );
        }
        // The hottest key is drawn twice as often as the second (within sampling noise).
        let ratio = counts[0] as f64 / counts[1] as f64;
        assert!((1.85..2.15).contains(&ratio), "rank 1 / rank 2 = {ratio}");
        // The top 1% of keys take about half the draws: H_1000 / H_100000 = 0.6184.
        let top: usize = counts[..KEY_COUNT / 100].iter().sum();
        let share = top as f64 / SAMPLES as f64;
        assert!((0.60..0.64).contains(&share), "top 1% share {share}");
        // Every index is in range, and the tail is reached.
        assert!(counts[KEY_COUNT / 2..].iter().sum::<usize>() > 0);
    }

    #[test]
    fn one_command_in_ten_is_a_write() {
        let writes = ops(11, SAMPLES).iter().filter(|op| op.write).count();
        let share = writes as f64 / SAMPLES as f64;
        assert!((share - WRITE_SHARE).abs() < 0.004, "write share {share}");
    }

    #[test]
    fn the_hot_key_mix_is_steeper_and_writes_one_command_in_twenty() {
        let mut generator = OpGenerator::of_mix(Mix::HotKeys, 5).unwrap();
        let ops: Vec<Op> = (0..SAMPLES).map(|_| generator.next_op()).collect();
        let writes = ops.iter().filter(|op| op.write).count() as f64 / SAMPLES as f64;
        assert!(
            (writes - HOT_WRITE_SHARE).abs() < 0.003,
            "write share {writes}"
        );
        // P(rank k) = k^-1.2 / H(100000, 1.2): the top 1000 keys take about 85% of the draws.
        let norm: f64 = (1..=KEY_COUNT).map(|k| (k as f64).powf(-1.2)).sum();
        let expected: f64 = (1..=1_000).map(|k| (k as f64).powf(-1.2)).sum::<f64>() / norm;
        let top = ops.iter().filter(|op| op.key < 1_000).count() as f64 / SAMPLES as f64;
        assert!(
            (top - expected).abs() < 0.01,
            "top 1000 share {top}, expected {expected}"
        );
        let first = ops.iter().filter(|op| op.key == 0).count() as f64 / SAMPLES as f64;
        assert!(
            (first - 1.0 / norm).abs() < 0.01,
            "hottest key's share {first}"
        );
    }

    #[test]
    fn the_stream_is_fixed_by_its_seed() {
        assert_eq!(ops(3, 1_000), ops(3, 1_000));
        assert_ne!(ops(3, 1_000), ops(4, 1_000));
    }

    #[test]
    fn workload_ids_round_trip() {
        for workload in workloads() {
            assert_eq!(Workload::parse(&workload.id()).unwrap(), workload);
        }
        assert_eq!(workloads()[3].id(), "pipeline16-50");
        assert_eq!(workloads()[3].to_string(), "pipelines of 16, 50 tasks");
        assert_eq!(workloads()[0].to_string(), "single commands, 1 task");
        assert!(Workload::parse("single-0").is_err());
        assert!(Workload::parse("pipeline1-5").is_err());
        assert!(Workload::parse("burst-5").is_err());
        assert!(Workload::parse("hotkeys-0").is_err());
        let hot = Workload::parse("hotkeys-50").unwrap();
        assert_eq!(hot, Workload::hot_keys(50));
        assert_eq!(hot.to_string(), "hot keys, Zipf(1.2), 50 tasks");
        assert!(hot.is_hot_keys() && !hot.is_pipeline());
        assert_ne!(hot, Workload::single(50));
    }

    #[test]
    fn commands_name_the_key_and_carry_the_value() {
        let keys = KeySpace::new();
        assert_eq!(keys.len(), KEY_COUNT);
        let set = keys.command(Op {
            key: 42,
            write: true,
        });
        let args: Vec<_> = set.args_iter().collect();
        assert_eq!(args.len(), 3);
        assert!(matches!(args[1], redis::Arg::Simple(k) if k == b"bench:key:42"));
        assert!(matches!(args[2], redis::Arg::Simple(v) if v.len() == VALUE_SIZE));
        assert_eq!(keys.slot(42), key_slot(b"bench:key:42"));
    }
}
