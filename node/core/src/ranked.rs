//! [`RankedMap`]: a map whose entries also sit in an index ordered by a
//! rank (an expiry, a last-seen time), so that the lowest-ranked entry is
//! found in O(log n): how the directory and the ban table make room and
//! expire entries without scanning. It costs a second B-tree, so small
//! per-node tables that every simulated node carries scan instead
//! ([`crate::evict_lowest`]).
//!
//! # Implementation notes
//! The index is a `BTreeSet<(rank, key)>`, so ties go to the lowest key:
//! the same choice the linear scan it replaces made, which keeps the
//! simulator's runs byte-identical. Values change only by replacing the
//! entry, so the index never goes stale.

use std::collections::{BTreeMap, BTreeSet};

/// A map from `K` to `V` with every entry ranked by an `R`.
#[derive(Debug)]
pub(crate) struct RankedMap<K, V, R> {
    /// Entries and their ranks, by key.
    entries: BTreeMap<K, (V, R)>,
    /// Every entry's `(rank, key)`, lowest first.
    by_rank: BTreeSet<(R, K)>,
}

impl<K, V, R> Default for RankedMap<K, V, R> {
    fn default() -> Self {
        RankedMap {
            entries: BTreeMap::new(),
            by_rank: BTreeSet::new(),
        }
    }
}

impl<K: Ord + Copy, V, R: Ord + Copy> RankedMap<K, V, R> {
    /// Entries held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether `key` is held.
    pub fn contains_key(&self, key: &K) -> bool {
        self.entries.contains_key(key)
    }

    /// The value and rank of `key`.
    pub fn get(&self, key: &K) -> Option<(&V, R)> {
        self.entries.get(key).map(|(v, r)| (v, *r))
    }

    /// Inserts or replaces `key`, ranked `rank`; returns the old value.
    pub fn insert(&mut self, key: K, value: V, rank: R) -> Option<V> {
        let old = self.entries.insert(key, (value, rank));
        if let Some((_, old_rank)) = &old {
            self.by_rank.remove(&(*old_rank, key));
        }
        self.by_rank.insert((rank, key));
        old.map(|(v, _)| v)
    }

    /// Removes `key`.
    pub fn remove(&mut self, key: &K) -> Option<V> {
        let (value, rank) = self.entries.remove(key)?;
        self.by_rank.remove(&(rank, *key));
        Some(value)
    }

    /// Removes and returns the lowest-ranked entry (ties: lowest key).
    pub fn pop_lowest(&mut self) -> Option<(K, V)> {
        let (_, key) = self.by_rank.pop_first()?;
        let (value, _) = self
            .entries
            .remove(&key)
            .expect("the index holds exactly the keys of the map");
        Some((key, value))
    }

    /// Removes and returns the lowest-ranked entry if its rank is at most
    /// `bound`: called in a loop, it expires entries whose deadline passed.
    pub fn pop_at_most(&mut self, bound: R) -> Option<(K, V)> {
        match self.by_rank.first() {
            Some((r, _)) if *r <= bound => self.pop_lowest(),
            _ => None,
        }
    }

    /// Values in key order.
    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.entries.values().map(|(v, _)| v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowest_rank_goes_first_and_ties_go_to_the_lowest_key() {
        let mut m: RankedMap<u8, &str, u64> = RankedMap::default();
        m.insert(3, "c", 10);
        m.insert(1, "a", 20);
        m.insert(2, "b", 10);
        assert_eq!(m.pop_lowest(), Some((2, "b")));
        assert_eq!(m.pop_lowest(), Some((3, "c")));
        assert_eq!(m.len(), 1);
    }

    #[test]
    fn reinserting_leaves_no_stale_index_entry() {
        let mut m: RankedMap<u8, u8, u64> = RankedMap::default();
        m.insert(1, 1, 5);
        m.insert(1, 2, 7);
        m.insert(2, 3, 6);
        assert_eq!(m.pop_at_most(5), None);
        assert_eq!(m.pop_at_most(6), Some((2, 3)));
        assert_eq!(m.pop_at_most(7), Some((1, 2)));
        assert!(m.is_empty());
        assert_eq!(m.by_rank.len(), 0);
    }
}
