//! Unit tests of the Space-Saving summary: exactness while it fits, its error bounds, bounded memory and
//! top-10 accuracy on a Zipf stream.

use std::collections::HashMap;

use rand::SeedableRng as _;
use rand::rngs::SmallRng;
use rand_distr::{Distribution as _, Zipf};

use super::*;

fn check_invariants(s: &SpaceSaving) {
    assert!(s.slots.len() <= s.capacity);
    assert_eq!(s.heap.len(), s.slots.len());
    assert_eq!(s.index.len(), s.slots.len());
    for (pos, &slot) in s.heap.iter().enumerate() {
        assert_eq!(s.slots[slot].heap_pos, pos);
        assert_eq!(s.index[&s.slots[slot].key], slot);
        if pos > 0 {
            assert!(
                s.count_at((pos - 1) / 2) <= s.count_at(pos),
                "heap order at {pos}"
            );
        }
    }
    let sum: u64 = s.slots.iter().map(|slot| slot.count).sum();
    assert_eq!(sum, s.total(), "counts add up to the hits seen");
}

/// `n` draws of `key:<rank>` from Zipf(`exponent`) over `keys` keys.
fn zipf_stream(keys: u64, exponent: f64, n: usize, seed: u64) -> Vec<Vec<u8>> {
    #[allow(clippy::cast_precision_loss)]
    let zipf = Zipf::new(keys as f64, exponent).unwrap();
    let mut rng = SmallRng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let rank = zipf.sample(&mut rng) as u64;
            format!("key:{rank}").into_bytes()
        })
        .collect()
}

fn exact_counts(stream: &[Vec<u8>]) -> HashMap<&[u8], u64> {
    let mut exact: HashMap<&[u8], u64> = HashMap::new();
    for key in stream {
        *exact.entry(key).or_default() += 1;
    }
    exact
}

/// The share of `top`'s keys that belong to the exact top `k`; a key tied with the exact k-th count
/// belongs too, since either order is right.
fn precision_at(k: usize, top: &[Counted], exact: &HashMap<&[u8], u64>) -> f64 {
    let mut counts: Vec<u64> = exact.values().copied().collect();
    counts.sort_unstable_by(|a, b| b.cmp(a));
    let kth = counts[k - 1];
    let hits = top
        .iter()
        .take(k)
        .filter(|c| exact.get(&*c.key).is_some_and(|&n| n >= kth))
        .count();
    #[allow(clippy::cast_precision_loss)]
    let precision = hits as f64 / k as f64;
    precision
}

#[test]
fn counts_are_exact_while_every_key_fits() {
    let mut s = SpaceSaving::new(4);
    for key in ["a", "b", "a", "c", "a", "b"] {
        s.add(key.as_bytes(), 1);
        check_invariants(&s);
    }
    s.add(b"d", 5);
    let top: Vec<(String, u64, u64)> = s
        .top(10)
        .iter()
        .map(|c| {
            (
                String::from_utf8_lossy(&c.key).into_owned(),
                c.count,
                c.error,
            )
        })
        .collect();
    let expected = [("d", 5, 0), ("a", 3, 0), ("b", 2, 0), ("c", 1, 0)]
        .map(|(k, count, error)| (k.to_owned(), count, error));
    assert_eq!(top, expected);
    assert_eq!(s.total(), 11);
    assert_eq!(s.top(2).len(), 2);
}

#[test]
fn a_new_key_replaces_the_smallest_and_inherits_its_count_as_error() {
    let mut s = SpaceSaving::new(2);
    s.add(b"a", 3);
    s.add(b"b", 1);
    s.add(b"c", 1);
    check_invariants(&s);
    let top = s.top(10);
    assert_eq!(top.len(), 2);
    assert_eq!(
        (&*top[0].key, top[0].count, top[0].error),
        (&b"a"[..], 3, 0)
    );
    assert_eq!(
        (&*top[1].key, top[1].count, top[1].error),
        (&b"c"[..], 2, 1)
    );
    assert_eq!(top[1].guaranteed(), 1);
    assert!(!s.index.contains_key(&b"b"[..]));
}

#[test]
fn error_bounds_hold_on_a_skewed_stream() {
    let capacity = 100;
    let stream = zipf_stream(10_000, 1.1, 50_000, 3);
    let mut s = SpaceSaving::new(capacity);
    for (i, key) in stream.iter().enumerate() {
        s.add(key, 1);
        if i % 5_000 == 0 {
            check_invariants(&s);
        }
    }
    check_invariants(&s);
    let exact = exact_counts(&stream);
    let monitored = s.top(capacity);
    for c in &monitored {
        let truth = exact[&*c.key];
        assert!(
            c.guaranteed() <= truth && truth <= c.count,
            "{c:?} vs {truth}"
        );
        assert!(c.error <= s.total() / capacity as u64);
    }
    // Every key seen more than total/capacity times is monitored.
    let threshold = s.total() / capacity as u64;
    for (key, &n) in &exact {
        if n > threshold {
            assert!(
                s.index.contains_key(*key),
                "{key:?} ({n} hits) not monitored"
            );
        }
    }
}

#[test]
fn memory_stays_bounded_whatever_the_cardinality() {
    let capacity = crate::TrackerOptions::default().summary_capacity;
    let mut s = SpaceSaving::new(capacity);
    for i in 0..1_000_000_u32 {
        s.add(&i.to_le_bytes(), 1);
    }
    check_invariants(&s);
    assert_eq!(s.len(), capacity);
    assert_eq!(s.index.len(), capacity);
    assert_eq!(s.total(), 1_000_000);
    s.clear();
    assert!(s.is_empty());
    assert_eq!(s.total(), 0);
    assert!(s.top(10).is_empty());
    s.add(b"again", 1);
    check_invariants(&s);
}

#[test]
fn zero_capacity_still_counts_one_key() {
    let mut s = SpaceSaving::new(0);
    s.add(b"a", 1);
    s.add(b"b", 1);
    check_invariants(&s);
    assert_eq!(s.len(), 1);
}

#[test]
fn top_ten_of_a_zipf_stream_matches_exact_counts() {
    // Zipf(1.0) over a million keys, 60,000 samples, the capacity the tracker ships with.
    let capacity = crate::TrackerOptions::default().summary_capacity;
    for seed in [1, 2, 3, 4, 5] {
        let stream = zipf_stream(1_000_000, 1.0, 60_000, seed);
        let mut s = SpaceSaving::new(capacity);
        for key in &stream {
            s.add(key, 1);
        }
        let exact = exact_counts(&stream);
        let precision = precision_at(10, &s.top(10), &exact);
        assert!(
            precision >= 0.99,
            "seed {seed}: precision@10 {precision} (distinct keys {})",
            exact.len()
        );
        // The hottest keys never got evicted, so their counts are exact.
        for c in s.top(10) {
            assert_eq!(c.count, exact[&*c.key], "seed {seed}");
            assert_eq!(c.error, 0);
        }
    }
}
