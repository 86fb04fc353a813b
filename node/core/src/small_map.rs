//! [`SmallMap`]: an ordered map for the per-peer tables every node keeps
//! (chat keys, senders heard, `seq` counters, an ordinary node's links),
//! which hold one to five entries at almost every node.
//!
//! # Implementation notes
//! A `BTreeMap` allocates a whole leaf of eleven entries for its first
//! one: ~0.8 KB for a chat key, ~1.6 KB for a sender's window, on every
//! simulated node that ever chatted. Up to [`SMALL`] entries are kept in a
//! vector sorted by key (found by binary search, O(log n); an insert or
//! removal moves at most [`SMALL`] entries, O(1)); past that the entries
//! move to a `BTreeMap` for good. Iteration is in key order either way,
//! so a caller sees exactly what a `BTreeMap` would show it.

use std::collections::BTreeMap;

/// Entries kept in the sorted vector before the map becomes a `BTreeMap`.
pub(crate) const SMALL: usize = 8;

/// An ordered map, a sorted vector while it holds at most [`SMALL`]
/// entries.
#[derive(Clone, Debug)]
pub(crate) enum SmallMap<K, V> {
    /// At most [`SMALL`] entries, sorted by key, no two keys equal.
    Small(Vec<(K, V)>),
    /// More than [`SMALL`] entries were held once.
    Large(BTreeMap<K, V>),
}

impl<K, V> Default for SmallMap<K, V> {
    fn default() -> Self {
        SmallMap::Small(Vec::new())
    }
}

impl<K: Ord + Copy, V> SmallMap<K, V> {
    /// Entries held.
    pub fn len(&self) -> usize {
        match self {
            SmallMap::Small(v) => v.len(),
            SmallMap::Large(m) => m.len(),
        }
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The value of `key`.
    pub fn get(&self, key: &K) -> Option<&V> {
        match self {
            SmallMap::Small(v) => v
                .binary_search_by(|(k, _)| k.cmp(key))
                .ok()
                .map(|i| &v[i].1),
            SmallMap::Large(m) => m.get(key),
        }
    }

    /// The value of `key`, to change.
    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        match self {
            SmallMap::Small(v) => v
                .binary_search_by(|(k, _)| k.cmp(key))
                .ok()
                .map(|i| &mut v[i].1),
            SmallMap::Large(m) => m.get_mut(key),
        }
    }

    /// Whether `key` is held.
    pub fn contains_key(&self, key: &K) -> bool {
        self.get(key).is_some()
    }

    /// Inserts or replaces `key`; returns the old value.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        match self {
            SmallMap::Small(v) => match v.binary_search_by(|(k, _)| k.cmp(&key)) {
                Ok(i) => Some(std::mem::replace(&mut v[i].1, value)),
                Err(i) if v.len() < SMALL => {
                    v.insert(i, (key, value));
                    None
                }
                Err(_) => {
                    let mut m: BTreeMap<K, V> = std::mem::take(v).into_iter().collect();
                    m.insert(key, value);
                    *self = SmallMap::Large(m);
                    None
                }
            },
            SmallMap::Large(m) => m.insert(key, value),
        }
    }

    /// The value of `key`, inserted from `make` if missing.
    pub fn get_or_insert_with(&mut self, key: K, make: impl FnOnce() -> V) -> &mut V {
        if !self.contains_key(&key) {
            self.insert(key, make());
        }
        self.get_mut(&key).expect("just inserted")
    }

    /// Removes `key`; an emptied vector frees its buffer.
    pub fn remove(&mut self, key: &K) -> Option<V> {
        match self {
            SmallMap::Small(v) => {
                let i = v.binary_search_by(|(k, _)| k.cmp(key)).ok()?;
                let (_, value) = v.remove(i);
                if v.is_empty() {
                    *v = Vec::new();
                }
                Some(value)
            }
            SmallMap::Large(m) => m.remove(key),
        }
    }

    /// Entries in key order.
    pub fn iter(&self) -> Iter<'_, K, V> {
        match self {
            SmallMap::Small(v) => Iter::Small(v.iter()),
            SmallMap::Large(m) => Iter::Large(m.iter()),
        }
    }

    /// Keys in order.
    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.iter().map(|(k, _)| k)
    }

    /// Values in key order.
    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.iter().map(|(_, v)| v)
    }

    /// Forgets every entry and frees the buffers.
    pub fn clear(&mut self) {
        *self = SmallMap::default();
    }
}

/// The entries of a [`SmallMap`] in key order, without a box.
pub(crate) enum Iter<'a, K, V> {
    /// Over the sorted vector.
    Small(std::slice::Iter<'a, (K, V)>),
    /// Over the `BTreeMap`.
    Large(std::collections::btree_map::Iter<'a, K, V>),
}

impl<'a, K, V> Iterator for Iter<'a, K, V> {
    type Item = (&'a K, &'a V);

    fn next(&mut self) -> Option<(&'a K, &'a V)> {
        match self {
            Iter::Small(it) => it.next().map(|(k, v)| (k, v)),
            Iter::Large(it) => it.next(),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match self {
            Iter::Small(it) => it.size_hint(),
            Iter::Large(it) => it.size_hint(),
        }
    }
}

impl<'a, K: Ord + Copy, V> IntoIterator for &'a SmallMap<K, V> {
    type Item = (&'a K, &'a V);
    type IntoIter = Iter<'a, K, V>;

    fn into_iter(self) -> Iter<'a, K, V> {
        self.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_map_answers_like_a_btreemap_below_and_past_its_small_size() {
        // A fixed pseudo-random walk of inserts and removals over 40 keys,
        // checked against a BTreeMap after every step.
        let mut ours: SmallMap<u8, u32> = SmallMap::default();
        let mut theirs: BTreeMap<u8, u32> = BTreeMap::new();
        let mut x = 12_345u32;
        for step in 0..2_000u32 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            let key = ((x >> 16) % 40) as u8;
            // Mostly inserts early (to pass SMALL), mostly removals late.
            if !(x >> 8).is_multiple_of(3) || step < 100 {
                assert_eq!(ours.insert(key, step), theirs.insert(key, step));
            } else {
                assert_eq!(ours.remove(&key), theirs.remove(&key));
            }
            assert_eq!(ours.len(), theirs.len());
            assert_eq!(ours.get(&key), theirs.get(&key));
            assert!(ours.iter().eq(theirs.iter()), "same entries, same order");
        }
        assert!(matches!(ours, SmallMap::Large(_)), "it grew past SMALL");
    }

    #[test]
    fn a_small_map_stays_a_vector_up_to_its_small_size_and_frees_when_emptied() {
        let mut m: SmallMap<u8, u8> = SmallMap::default();
        for k in (0..SMALL as u8).rev() {
            m.insert(k, k);
        }
        assert!(matches!(&m, SmallMap::Small(v) if v.len() == SMALL));
        assert!(m.iter().map(|(k, _)| *k).eq(0..SMALL as u8), "sorted");
        *m.get_or_insert_with(3, || 99) += 1;
        assert_eq!(m.get(&3), Some(&4));
        for k in 0..SMALL as u8 {
            m.remove(&k);
        }
        assert!(matches!(&m, SmallMap::Small(v) if v.capacity() == 0));
        m.insert(1, 1);
        m.insert(200, 2);
        assert_eq!(m.get_or_insert_with(7, || 5), &mut 5);
        assert!(m.iter().map(|(k, _)| *k).eq([1, 7, 200]));
    }
}
