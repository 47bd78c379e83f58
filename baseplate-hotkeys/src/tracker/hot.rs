//! The process's hottest read keys, found from the tracker's local samples and published for the
//! request path to look up (a client caches the replies of reads of these keys).
//!
//! The worker counts sampled single-key reads in a Space-Saving summary whose counts halve every
//! [`HALF_LIFE`], so a key that cools down leaves within a few half-lives, and every
//! [`PUBLISH_INTERVAL`] publishes the `keys` keys with the highest guaranteed counts: at least
//! [`MIN_EVIDENCE`] hits for a key to become hot, and [`MIN_EVIDENCE_TO_STAY`] for a hot key to
//! stay so. Without that margin, every halving would drop the hot keys whose counts sat just above
//! the bar, and the steadily read keys among them would flicker out for a while and back in. Nothing here talks to Redis: the local summary runs whatever the
//! sets' sample rates are.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use crate::summary::SpaceSaving;

/// How often the hot keys are published.
pub(super) const PUBLISH_INTERVAL: Duration = Duration::from_secs(1);

/// How long a count takes to halve: a key read constantly stays hot, a key no longer read leaves
/// within a few of these.
pub(super) const HALF_LIFE: Duration = Duration::from_secs(10);

/// The fewest sampled hits (after decay) a key needs to become hot, so one stray sample never
/// makes it so.
const MIN_EVIDENCE: u64 = 2;

/// The fewest sampled hits (after decay) a hot key needs to stay hot: half of
/// [`MIN_EVIDENCE`], so that a halving alone never drops a key that was read steadily.
const MIN_EVIDENCE_TO_STAY: u64 = 1;

/// Keys the summary monitors per hot key it publishes: the published ones must be counted
/// exactly, the rest are the summary's noise floor.
const MONITORED_PER_HOT_KEY: usize = 4;

/// The published hot keys, shared by the worker (which replaces them) and every tracker handle
/// (which looks keys up on the request path).
#[derive(Debug, Default)]
pub(super) struct HotSet {
    /// Lets a lookup skip hashing while nothing is hot.
    empty: AtomicBool,
    keys: RwLock<Arc<HashSet<Box<[u8]>>>>,
}

impl HotSet {
    pub(super) fn new() -> Self {
        Self {
            empty: AtomicBool::new(true),
            keys: RwLock::default(),
        }
    }

    /// Whether `key` is among the hot keys published last.
    pub(super) fn contains(&self, key: &[u8]) -> bool {
        if self.empty.load(Ordering::Relaxed) {
            return false;
        }
        self.keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(key)
    }

    /// The hot keys published last, in no particular order.
    pub(super) fn snapshot(&self) -> Vec<Vec<u8>> {
        self.current().iter().map(|k| k.to_vec()).collect()
    }

    /// The set published last, shared.
    fn current(&self) -> Arc<HashSet<Box<[u8]>>> {
        Arc::clone(&self.keys.read().unwrap_or_else(PoisonError::into_inner))
    }

    fn replace(&self, keys: HashSet<Box<[u8]>>) {
        let empty = keys.is_empty();
        *self.keys.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(keys);
        self.empty.store(empty, Ordering::Relaxed);
    }
}

/// The worker's side: the decaying summary and when to publish and halve it.
#[derive(Debug)]
pub(super) struct HotReads {
    keys: usize,
    summary: SpaceSaving,
    published: Arc<HotSet>,
    /// Publications until the next halving.
    until_halving: u32,
}

impl HotReads {
    /// Finds the `keys` hottest read keys and publishes them into `published`.
    pub(super) fn new(keys: usize, published: Arc<HotSet>) -> Self {
        Self {
            keys,
            summary: SpaceSaving::new(keys.saturating_mul(MONITORED_PER_HOT_KEY)),
            published,
            until_halving: publications_per_half_life(),
        }
    }

    /// Counts one sampled read of `key`.
    pub(super) fn add(&mut self, key: &[u8]) {
        self.summary.add(key, 1);
    }

    /// Publishes the hot keys; every [`HALF_LIFE`] also halves the counts.
    pub(super) fn publish(&mut self) {
        let was_hot = self.published.current();
        let hot = self
            .summary
            .top(self.keys)
            .into_iter()
            .filter(|counted| {
                let evidence = counted.guaranteed();
                evidence >= MIN_EVIDENCE
                    || (evidence >= MIN_EVIDENCE_TO_STAY && was_hot.contains(&*counted.key))
            })
            .map(|counted| Box::<[u8]>::from(&*counted.key))
            .collect();
        drop(was_hot);
        self.published.replace(hot);
        self.until_halving = self.until_halving.saturating_sub(1);
        if self.until_halving == 0 {
            self.summary.halve();
            self.until_halving = publications_per_half_life();
        }
    }
}

fn publications_per_half_life() -> u32 {
    let per = HALF_LIFE.as_millis() / PUBLISH_INTERVAL.as_millis().max(1);
    u32::try_from(per).unwrap_or(u32::MAX).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hot_reads(keys: usize) -> (HotReads, Arc<HotSet>) {
        let published = Arc::new(HotSet::new());
        (HotReads::new(keys, Arc::clone(&published)), published)
    }

    #[test]
    fn the_most_read_keys_with_enough_evidence_are_published() {
        let (mut hot, published) = hot_reads(2);
        for _ in 0..10 {
            hot.add(b"a");
        }
        for _ in 0..5 {
            hot.add(b"b");
        }
        for _ in 0..3 {
            hot.add(b"c");
        }
        hot.add(b"once");
        assert!(
            !published.contains(b"a"),
            "nothing before the first publication"
        );
        hot.publish();
        assert!(published.contains(b"a"));
        assert!(published.contains(b"b"));
        assert!(!published.contains(b"c"), "only the two hottest");
        let mut snapshot = published.snapshot();
        snapshot.sort();
        assert_eq!(snapshot, [b"a".to_vec(), b"b".to_vec()]);

        let (mut hot, published) = hot_reads(8);
        hot.add(b"once");
        hot.publish();
        assert!(!published.contains(b"once"), "one sample is not evidence");
    }

    #[test]
    fn a_key_no_longer_read_stops_being_hot_within_a_few_half_lives() {
        let (mut hot, published) = hot_reads(4);
        for _ in 0..20 {
            hot.add(b"was-hot");
        }
        hot.publish();
        assert!(published.contains(b"was-hot"));
        let per_half_life = publications_per_half_life();
        // 20 halves to 10, 5, 2, then 1: enough for a hot key to stay after four half-lives...
        for _ in 0..4 * per_half_life {
            hot.publish();
        }
        assert!(published.contains(b"was-hot"));
        // ...and 0 after the fifth.
        for _ in 0..per_half_life {
            hot.publish();
        }
        assert!(!published.contains(b"was-hot"));
    }

    #[test]
    fn a_key_read_steadily_stays_hot_across_halvings() {
        // Two sampled reads per half-life, a third and two thirds into it: 2 or 3 before each
        // halving, 1 after it until the next read. A key that needed 2 to stay would leave at
        // every halving and come back a third of a half-life later.
        let (mut hot, published) = hot_reads(4);
        let per_half_life = publications_per_half_life();
        let mut hot_since = None;
        for publication in 0..6 * per_half_life {
            let into = publication % per_half_life;
            if into == per_half_life / 3 || into == 2 * per_half_life / 3 {
                hot.add(b"steady");
            }
            hot.publish();
            match hot_since {
                None if published.contains(b"steady") => hot_since = Some(publication),
                None => {}
                Some(since) => assert!(
                    published.contains(b"steady"),
                    "hot from publication {since}, dropped at {publication}"
                ),
            }
        }
        assert!(hot_since.is_some(), "two reads make a key hot");
    }
}
