//! A bounded window of recently seen keys, oldest forgotten first: the
//! core's duplicate-packet window and the memo of verified signatures.

use std::collections::{HashSet, VecDeque};
use std::hash::{BuildHasher, Hash};
use std::sync::OnceLock;

use foldhash::fast::SeedableRandomState;
use foldhash::SharedSeed;

/// Remembers the last `capacity` keys inserted.
///
/// # Implementation notes
/// A `HashSet` is fine here despite the determinism rule: it is only ever
/// queried, never iterated, so its order cannot leak into output.
///
/// Peers choose the keys (packet ids), so the hash is keyed with a secret
/// they cannot learn, else they could make every key land in one bucket.
/// It is foldhash (what hashbrown uses; a multiply and a fold for a u64
/// key, against SipHash's rounds in std's `RandomState`), keyed from the
/// OS's randomness once per process ([`keyed_hasher`]): foldhash's own
/// seed comes from address-space layout, which it does not claim resists
/// a chosen-key attack.
#[derive(Debug)]
pub struct RecentIds<K: Hash + Eq + Copy> {
    order: VecDeque<K>,
    set: HashSet<K, SeedableRandomState>,
    capacity: usize,
}

/// foldhash seeded from std's `RandomState`, whose keys come from the OS
/// (hashing a constant with them gives 64 secret random bits).
fn keyed_hasher() -> SeedableRandomState {
    static SEED: OnceLock<(u64, SharedSeed)> = OnceLock::new();
    let (per_set, shared) = SEED.get_or_init(|| {
        let os = std::hash::RandomState::new();
        (os.hash_one(1u8), SharedSeed::from_u64(os.hash_one(2u8)))
    });
    SeedableRandomState::with_seed(*per_set, shared)
}

impl<K: Hash + Eq + Copy> RecentIds<K> {
    /// An empty window of `capacity` keys (at least one).
    pub fn new(capacity: usize) -> RecentIds<K> {
        let capacity = capacity.max(1);
        RecentIds {
            // Grown on demand: most ordinary nodes see few packets, and
            // 40 KiB reserved per node was 10^6 nodes' worth of 40 GiB.
            order: VecDeque::new(),
            set: HashSet::with_hasher(keyed_hasher()),
            capacity,
        }
    }

    /// Records `key`; false when it was already in the window.
    pub fn insert(&mut self, key: K) -> bool {
        if !self.set.insert(key) {
            return false;
        }
        self.order.push_back(key);
        if self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        true
    }

    /// Whether `key` is in the window.
    pub fn contains(&self, key: &K) -> bool {
        self.set.contains(key)
    }

    /// Keys in the window.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether the window is empty.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forgets_the_oldest_beyond_capacity() {
        let mut w = RecentIds::new(3);
        assert!(w.insert(1));
        assert!(!w.insert(1));
        for k in 2..=4 {
            assert!(w.insert(k));
        }
        assert_eq!(w.len(), 3);
        assert!(!w.contains(&1));
        assert!(w.contains(&4));
    }
}
