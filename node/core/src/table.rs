//! The supernode neighbor table: XOR k-buckets of other supernodes.
//!
//! Bucket `i` holds supernodes whose distance from this node has its highest
//! set bit at `i`, at most `k` of them. The leaf set is not stored apart: it
//! is the `L` entries closest to this node, which [`NeighborTable::closest`]
//! answers exactly. Entries carry last-seen time and RTT; they are refreshed
//! by traffic and heartbeats and removed when their link dies.
//!
//! # Implementation notes
//! Every entry is a live link (the node dials the supernodes it learns of
//! while their bucket has room), so routing never picks a neighbor it cannot
//! reach. Lookups scan the target's own bucket first: when it is non-empty
//! the closest entry to the target is in it (every entry elsewhere differs
//! from the target at a higher bit), which keeps routing O(k).

use std::collections::BTreeMap;

use skyhop_protocol::{Distance, NodeId, PeerInfo};

use super::SimTime;

/// One known supernode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Its id.
    pub id: NodeId,
    /// Its listen addresses.
    pub addrs: Vec<String>,
    /// When a frame last arrived from it.
    pub last_seen: SimTime,
    /// Last measured round-trip time, if any.
    pub rtt: Option<SimTime>,
}

/// XOR k-buckets of supernodes around `own`.
#[derive(Clone, Debug)]
pub struct NeighborTable {
    /// This node's id, the centre of the buckets.
    own: NodeId,
    /// Entries per bucket.
    k: usize,
    /// Buckets by the length of the prefix shared with `own`.
    buckets: BTreeMap<usize, Vec<Entry>>,
    /// Entries in all buckets.
    len: usize,
}

/// Why an entry was not added.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InsertOutcome {
    /// Added as a new entry.
    Added,
    /// Already present; refreshed.
    Refreshed,
    /// Its bucket is full.
    BucketFull,
    /// It is this node.
    IsSelf,
}

impl NeighborTable {
    /// An empty table around `own` with `k` entries per bucket.
    pub fn new(own: NodeId, k: usize) -> NeighborTable {
        NeighborTable {
            own,
            k: k.max(1),
            buckets: BTreeMap::new(),
            len: 0,
        }
    }

    /// Entries in the table.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The largest number of entries one bucket holds.
    pub fn bucket_capacity(&self) -> usize {
        self.k
    }

    /// Whether `id` would be added (its bucket has room, or it is present).
    pub fn has_room_for(&self, id: &NodeId) -> bool {
        match self.own.bucket_index(id) {
            None => false,
            Some(b) => self
                .buckets
                .get(&b)
                .is_none_or(|v| v.len() < self.k || v.iter().any(|e| e.id == *id)),
        }
    }

    /// Adds or refreshes a supernode.
    pub fn insert(&mut self, id: NodeId, addrs: Vec<String>, now: SimTime) -> InsertOutcome {
        let Some(b) = self.own.bucket_index(&id) else {
            return InsertOutcome::IsSelf;
        };
        let bucket = self.buckets.entry(b).or_default();
        if let Some(e) = bucket.iter_mut().find(|e| e.id == id) {
            e.last_seen = now;
            if !addrs.is_empty() {
                e.addrs = addrs;
            }
            return InsertOutcome::Refreshed;
        }
        if bucket.len() >= self.k {
            return InsertOutcome::BucketFull;
        }
        bucket.push(Entry {
            id,
            addrs,
            last_seen: now,
            rtt: None,
        });
        self.len += 1;
        InsertOutcome::Added
    }

    /// Removes a supernode; true if it was present.
    pub fn remove(&mut self, id: &NodeId) -> bool {
        let Some(b) = self.own.bucket_index(id) else {
            return false;
        };
        let Some(bucket) = self.buckets.get_mut(&b) else {
            return false;
        };
        let before = bucket.len();
        bucket.retain(|e| e.id != *id);
        let removed = bucket.len() < before;
        if bucket.is_empty() {
            self.buckets.remove(&b);
        }
        if removed {
            self.len -= 1;
        }
        removed
    }

    /// Whether `id` is in the table.
    pub fn contains(&self, id: &NodeId) -> bool {
        self.get(id).is_some()
    }

    /// The entry of `id`.
    pub fn get(&self, id: &NodeId) -> Option<&Entry> {
        let b = self.own.bucket_index(id)?;
        self.buckets.get(&b)?.iter().find(|e| e.id == *id)
    }

    /// Marks traffic from `id`, with an RTT sample if one was measured.
    pub fn touch(&mut self, id: &NodeId, now: SimTime, rtt: Option<SimTime>) {
        let Some(b) = self.own.bucket_index(id) else {
            return;
        };
        if let Some(e) = self
            .buckets
            .get_mut(&b)
            .and_then(|v| v.iter_mut().find(|e| e.id == *id))
        {
            e.last_seen = now;
            if rtt.is_some() {
                e.rtt = rtt;
            }
        }
    }

    /// Every entry, bucket by bucket (deterministic order).
    pub fn iter(&self) -> impl Iterator<Item = &Entry> {
        self.buckets.values().flatten()
    }

    /// Entries per bucket index, for status and bounds checks.
    pub fn bucket_sizes(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.buckets.iter().map(|(b, v)| (*b, v.len()))
    }

    /// The next hop toward `target`: the entry closest to it, if that entry
    /// is strictly closer to `target` than this node is. `None` means this
    /// node is the closest supernode it knows (a home supernode of `target`).
    pub fn next_hop(&self, target: &NodeId) -> Option<&Entry> {
        let best = self.closest_one(target)?;
        best.id.closer_to(target, &self.own).then_some(best)
    }

    /// The entry closest to `target`, excluding none.
    pub fn closest_one(&self, target: &NodeId) -> Option<&Entry> {
        if let Some(b) = self.own.bucket_index(target) {
            if let Some(bucket) = self.buckets.get(&b) {
                if let Some(best) = bucket.iter().min_by_key(|e| e.id.distance(target)) {
                    return Some(best);
                }
            }
        }
        self.iter().min_by_key(|e| e.id.distance(target))
    }

    /// Up to `n` entries closest to `target`, nearest first.
    pub fn closest(&self, target: &NodeId, n: usize) -> Vec<&Entry> {
        // Each distance computed once, and only the n closest sorted.
        let mut all: Vec<(Distance, &Entry)> =
            self.iter().map(|e| (e.id.distance(target), e)).collect();
        if n < all.len() {
            all.select_nth_unstable_by_key(n, |(d, _)| *d);
            all.truncate(n);
        }
        all.sort_unstable_by_key(|(d, _)| *d);
        all.into_iter().map(|(_, e)| e).collect()
    }

    /// Whether this node is among the `r` closest to `target` of itself and
    /// the entries it knows.
    pub fn is_among_closest(&self, target: &NodeId, r: usize) -> bool {
        let own = self.own.distance(target);
        self.iter()
            .filter(|e| e.id.distance(target) < own)
            .take(r)
            .count()
            < r
    }

    /// As [`PeerInfo`]s, for messages.
    pub fn peer_info(entry: &Entry) -> PeerInfo {
        PeerInfo {
            id: entry.id,
            addrs: entry.addrs.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_id() -> impl Strategy<Value = NodeId> {
        any::<[u8; 32]>().prop_map(NodeId)
    }

    proptest! {
        #[test]
        fn buckets_stay_bounded_and_closest_matches_brute_force(
            own in arb_id(),
            ids in proptest::collection::vec(arb_id(), 0..300),
            target in arb_id(),
            k in 1usize..8,
            n in 1usize..12,
        ) {
            let mut t = NeighborTable::new(own, k);
            for id in &ids {
                t.insert(*id, vec![], 0);
            }
            for (_, size) in t.bucket_sizes() {
                prop_assert!(size <= k);
            }
            prop_assert_eq!(t.iter().count(), t.len());
            let mut brute: Vec<NodeId> = t.iter().map(|e| e.id).collect();
            brute.sort_by_key(|id| id.distance(&target));
            brute.truncate(n);
            let got: Vec<NodeId> = t.closest(&target, n).iter().map(|e| e.id).collect();
            prop_assert_eq!(got, brute.clone());
            prop_assert_eq!(t.closest_one(&target).map(|e| e.id), brute.first().copied());
        }

        #[test]
        fn every_forward_strictly_reduces_distance(
            ids in proptest::collection::vec(arb_id(), 2..200),
            target in arb_id(),
            start in 0usize..200,
        ) {
            // Every supernode knows every other (a small overlay): greedy
            // routing from any start must strictly approach the target and
            // stop at the closest supernode overall.
            let tables: BTreeMap<NodeId, NeighborTable> = ids.iter().map(|own| {
                let mut t = NeighborTable::new(*own, 20);
                for id in &ids { t.insert(*id, vec![], 0); }
                (*own, t)
            }).collect();
            let mut at = ids[start % ids.len()];
            let mut steps = 0;
            while let Some(next) = tables[&at].next_hop(&target) {
                prop_assert!(next.id.distance(&target) < at.distance(&target));
                at = next.id;
                steps += 1;
                prop_assert!(steps <= ids.len());
            }
            let closest = ids.iter().min_by_key(|id| id.distance(&target)).copied();
            // With full buckets (k = 20 may drop some), the walk ends at a
            // node that no table entry beats.
            prop_assert!(tables[&at].next_hop(&target).is_none());
            if ids.len() <= 20 {
                prop_assert_eq!(Some(at), closest);
            }
        }
    }

    #[test]
    fn full_bucket_refuses_and_remove_frees_room() {
        let own = NodeId([0; 32]);
        let mut t = NeighborTable::new(own, 2);
        let far = |b: u8| {
            let mut id = [0u8; 32];
            id[0] = 0x80 | b;
            NodeId(id)
        };
        assert_eq!(t.insert(far(1), vec![], 0), InsertOutcome::Added);
        assert_eq!(t.insert(far(2), vec![], 0), InsertOutcome::Added);
        assert_eq!(t.insert(far(3), vec![], 0), InsertOutcome::BucketFull);
        assert_eq!(t.insert(far(1), vec![], 5), InsertOutcome::Refreshed);
        assert_eq!(t.insert(own, vec![], 0), InsertOutcome::IsSelf);
        assert!(t.remove(&far(2)));
        assert!(t.has_room_for(&far(3)));
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn among_closest_counts_only_closer_entries() {
        let own = NodeId([0x10; 32]);
        let mut t = NeighborTable::new(own, 20);
        let target = NodeId([0x11; 32]);
        assert!(t.is_among_closest(&target, 1));
        t.insert(NodeId([0x11; 32]), vec![], 0);
        assert!(!t.is_among_closest(&target, 1));
        assert!(t.is_among_closest(&target, 2));
    }
}
