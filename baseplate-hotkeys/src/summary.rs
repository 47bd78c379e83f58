//! A bounded heavy-hitter summary (Space-Saving, Metwally et al. 2005) that counts the keys of one interval.
//!
//! It monitors at most `capacity` keys. A new key, when the summary is full, replaces the key with the
//! smallest count and inherits that count as its possible overestimation (`error`), so for every monitored
//! key `count - error <= true count <= count`, and every key seen more than `total / capacity` times is
//! monitored. The minimum is found with an indexed binary heap, so an update costs `O(log capacity)`.

use std::collections::HashMap;
use std::sync::Arc;

/// The counts of one interval, bounded to `capacity` keys whatever the stream's cardinality.
#[derive(Debug)]
pub(crate) struct SpaceSaving {
    capacity: usize,
    slots: Vec<Slot>,
    /// Indices into `slots`, a min-heap by `count`.
    heap: Vec<usize>,
    index: HashMap<Arc<[u8]>, usize>,
    total: u64,
}

/// A monitored key with its counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Counted {
    pub(crate) key: Arc<[u8]>,
    /// An upper bound of the key's hits.
    pub(crate) count: u64,
    /// How much of `count` may have been inherited from evicted keys.
    pub(crate) error: u64,
}

#[derive(Debug)]
struct Slot {
    key: Arc<[u8]>,
    count: u64,
    error: u64,
    heap_pos: usize,
}

impl SpaceSaving {
    /// An empty summary monitoring at most `capacity` keys (at least one).
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            slots: Vec::new(),
            heap: Vec::new(),
            index: HashMap::new(),
            total: 0,
        }
    }

    /// Counts `weight` hits of `key`.
    pub(crate) fn add(&mut self, key: &[u8], weight: u64) {
        self.total = self.total.saturating_add(weight);
        if let Some(&slot) = self.index.get(key) {
            let entry = &mut self.slots[slot];
            entry.count = entry.count.saturating_add(weight);
            let pos = entry.heap_pos;
            self.sift_down(pos);
            return;
        }
        let key: Arc<[u8]> = Arc::from(key);
        if self.slots.len() < self.capacity {
            let slot = self.slots.len();
            let pos = self.heap.len();
            self.slots.push(Slot {
                key: Arc::clone(&key),
                count: weight,
                error: 0,
                heap_pos: pos,
            });
            self.heap.push(slot);
            self.index.insert(key, slot);
            self.sift_up(pos);
        } else {
            let slot = self.heap[0];
            let entry = &mut self.slots[slot];
            self.index.remove(&entry.key);
            entry.error = entry.count;
            entry.count = entry.count.saturating_add(weight);
            entry.key = Arc::clone(&key);
            self.index.insert(key, slot);
            self.sift_down(0);
        }
    }

    /// Hits counted since the last [`clear`](Self::clear), monitored or not.
    #[cfg(test)]
    pub(crate) fn total(&self) -> u64 {
        self.total
    }

    /// How many keys are monitored.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether nothing has been counted.
    pub(crate) fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The at most `n` keys with the highest guaranteed counts (`count - error`), highest first; ties
    /// by key, so the order is deterministic.
    pub(crate) fn top(&self, n: usize) -> Vec<Counted> {
        let mut all: Vec<Counted> = self
            .slots
            .iter()
            .map(|s| Counted {
                key: Arc::clone(&s.key),
                count: s.count,
                error: s.error,
            })
            .collect();
        all.sort_unstable_by(|a, b| {
            b.guaranteed()
                .cmp(&a.guaranteed())
                .then_with(|| b.count.cmp(&a.count))
                .then_with(|| a.key.cmp(&b.key))
        });
        all.truncate(n);
        all
    }

    /// Halves every count (and what it may have inherited), so old hits weigh less than new ones.
    /// Halving keeps the counts' order, so the heap stays valid.
    pub(crate) fn halve(&mut self) {
        for slot in &mut self.slots {
            slot.count /= 2;
            slot.error /= 2;
        }
        self.total /= 2;
    }

    /// Forgets every count, for the next interval.
    pub(crate) fn clear(&mut self) {
        self.slots.clear();
        self.heap.clear();
        self.index.clear();
        self.total = 0;
    }

    fn count_at(&self, pos: usize) -> u64 {
        self.slots[self.heap[pos]].count
    }

    fn swap(&mut self, a: usize, b: usize) {
        self.heap.swap(a, b);
        let (sa, sb) = (self.heap[a], self.heap[b]);
        self.slots[sa].heap_pos = a;
        self.slots[sb].heap_pos = b;
    }

    fn sift_up(&mut self, mut pos: usize) {
        while pos > 0 {
            let parent = (pos - 1) / 2;
            if self.count_at(parent) <= self.count_at(pos) {
                break;
            }
            self.swap(parent, pos);
            pos = parent;
        }
    }

    fn sift_down(&mut self, mut pos: usize) {
        loop {
            let (left, right) = (2 * pos + 1, 2 * pos + 2);
            let mut smallest = pos;
            if left < self.heap.len() && self.count_at(left) < self.count_at(smallest) {
                smallest = left;
            }
            if right < self.heap.len() && self.count_at(right) < self.count_at(smallest) {
                smallest = right;
            }
            if smallest == pos {
                break;
            }
            self.swap(pos, smallest);
            pos = smallest;
        }
    }
}

impl Counted {
    /// The hits the key certainly had: its count without what it may have inherited.
    pub(crate) fn guaranteed(&self) -> u64 {
        self.count - self.error
    }
}

#[cfg(test)]
mod tests;
