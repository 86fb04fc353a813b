//! Location tracking state of a supernode: the records it holds as a home
//! supernode, tombstones of nodes that left, and the location cache it
//! routes by.
//!
//! Records are verified before they get here (the node does that, since it
//! also counts and reports forgeries); this module only keeps the newest
//! record per node, expires them, and stays within its bounds.

use std::collections::BTreeMap;

use skyhop_protocol::{LocationRecord, NodeId};

use super::SimTime;

/// A stored record and when it expires.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    /// The signed record.
    pub record: LocationRecord,
    /// When it expires unless refreshed.
    pub expires: SimTime,
}

/// What storing a record did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreOutcome {
    /// A node not held before.
    New,
    /// A higher `seq`, or the same record refreshed.
    Updated,
    /// Older than what is held: ignored.
    Stale,
}

/// Records held as a home supernode, with tombstones for departed nodes.
#[derive(Debug)]
pub struct Directory {
    records: BTreeMap<NodeId, Stored>,
    tombstones: BTreeMap<NodeId, (u64, SimTime)>,
    max_records: usize,
}

/// How long a departed node is reported as offline rather than unknown.
pub const TOMBSTONE_TTL: SimTime = 10 * 60 * super::SECS;

impl Directory {
    /// An empty directory holding at most `max_records` records (and as many
    /// tombstones).
    pub fn new(max_records: usize) -> Directory {
        Directory {
            records: BTreeMap::new(),
            tombstones: BTreeMap::new(),
            max_records: max_records.max(1),
        }
    }

    /// Stores `record` if it is at least as new as what is held.
    pub fn store(&mut self, record: LocationRecord, now: SimTime) -> StoreOutcome {
        let expires = now + u64::from(record.lifetime_s) * super::SECS;
        if let Some((seq, _)) = self.tombstones.get(&record.node) {
            if *seq >= record.seq {
                return StoreOutcome::Stale;
            }
            self.tombstones.remove(&record.node);
        }
        let outcome = match self.records.get(&record.node) {
            Some(held) if held.record.seq > record.seq => return StoreOutcome::Stale,
            Some(_) => StoreOutcome::Updated,
            None => StoreOutcome::New,
        };
        if outcome == StoreOutcome::New && self.records.len() >= self.max_records {
            super::evict_lowest(&mut self.records, |s| s.expires);
        }
        self.records.insert(record.node, Stored { record, expires });
        outcome
    }

    /// Removes the record of `node` if it names supernode `sn` and is not
    /// newer than `seq`; leaves a tombstone when `departed`. True if removed.
    pub fn withdraw(
        &mut self,
        node: &NodeId,
        sn: &NodeId,
        seq: u64,
        departed: bool,
        now: SimTime,
    ) -> bool {
        let matches = self
            .records
            .get(node)
            .is_some_and(|s| s.record.sn == *sn && s.record.seq <= seq);
        if matches {
            self.records.remove(node);
        }
        if departed || matches {
            if self.tombstones.len() >= self.max_records {
                super::evict_lowest(&mut self.tombstones, |(_, until)| *until);
            }
            let held = self.tombstones.get(node).map_or(0, |(s, _)| *s);
            self.tombstones
                .insert(*node, (seq.max(held), now + TOMBSTONE_TTL));
        }
        matches
    }

    /// The live record of `node`.
    pub fn get(&self, node: &NodeId, now: SimTime) -> Option<&LocationRecord> {
        self.records
            .get(node)
            .filter(|s| s.expires > now)
            .map(|s| &s.record)
    }

    /// Whether `node` left or was lost recently.
    pub fn departed(&self, node: &NodeId, now: SimTime) -> bool {
        self.tombstones
            .get(node)
            .is_some_and(|(_, until)| *until > now)
    }

    /// Drops expired records and tombstones; returns how many records expired.
    pub fn expire(&mut self, now: SimTime) -> usize {
        let before = self.records.len();
        self.records.retain(|_, s| s.expires > now);
        self.tombstones.retain(|_, (_, until)| *until > now);
        before - self.records.len()
    }

    /// Records held.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether no record is held.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Every held record, by node id.
    pub fn records(&self) -> impl Iterator<Item = &Stored> {
        self.records.values()
    }
}

/// Where recently looked-up nodes are attached: node -> supernode.
#[derive(Debug)]
pub struct LocationCache {
    entries: BTreeMap<NodeId, (NodeId, SimTime)>,
    capacity: usize,
    ttl: SimTime,
}

impl LocationCache {
    /// An empty cache of `capacity` entries trusted for `ttl`.
    pub fn new(capacity: usize, ttl: SimTime) -> LocationCache {
        LocationCache {
            entries: BTreeMap::new(),
            capacity: capacity.max(1),
            ttl,
        }
    }

    /// Remembers that `node` is attached to `sn`.
    pub fn insert(&mut self, node: NodeId, sn: NodeId, now: SimTime) {
        if !self.entries.contains_key(&node) && self.entries.len() >= self.capacity {
            super::evict_lowest(&mut self.entries, |(_, until)| *until);
        }
        self.entries.insert(node, (sn, now + self.ttl));
    }

    /// The supernode `node` is attached to, if known and fresh.
    pub fn get(&self, node: &NodeId, now: SimTime) -> Option<NodeId> {
        self.entries
            .get(node)
            .filter(|(_, until)| *until > now)
            .map(|(sn, _)| *sn)
    }

    /// Forgets `node`.
    pub fn remove(&mut self, node: &NodeId) {
        self.entries.remove(node);
    }

    /// Forgets every entry pointing at supernode `sn` (it died).
    pub fn forget_supernode(&mut self, sn: &NodeId) {
        self.entries.retain(|_, (s, _)| s != sn);
    }

    /// Drops expired entries.
    pub fn expire(&mut self, now: SimTime) {
        self.entries.retain(|_, (_, until)| *until > now);
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skyhop_protocol::Identity;

    #[test]
    fn newest_record_wins_and_withdraw_leaves_a_tombstone() {
        let node = Identity::from_secret([1; 32]);
        let sn_a = NodeId([0xa; 32]);
        let sn_b = NodeId([0xb; 32]);
        let mut d = Directory::new(10);
        assert_eq!(
            d.store(node.location_record(sn_a, vec![], 5, 60), 0),
            StoreOutcome::New
        );
        assert_eq!(
            d.store(node.location_record(sn_b, vec![], 4, 60), 0),
            StoreOutcome::Stale
        );
        assert_eq!(
            d.store(node.location_record(sn_b, vec![], 6, 60), 0),
            StoreOutcome::Updated
        );
        assert!(
            !d.withdraw(&node.id(), &sn_a, 6, false, 0),
            "withdraw from the old supernode is ignored"
        );
        assert!(d.withdraw(&node.id(), &sn_b, 6, true, 0));
        assert!(d.get(&node.id(), 0).is_none());
        assert!(d.departed(&node.id(), 0));
        assert_eq!(
            d.store(node.location_record(sn_b, vec![], 6, 60), 0),
            StoreOutcome::Stale
        );
        assert_eq!(
            d.store(node.location_record(sn_a, vec![], 7, 60), 0),
            StoreOutcome::New
        );
        assert!(!d.departed(&node.id(), 0));
    }

    #[test]
    fn records_expire_and_the_directory_stays_bounded() {
        let sn = NodeId([0xa; 32]);
        let mut d = Directory::new(3);
        for i in 0..5u8 {
            let r = Identity::from_secret([i + 1; 32]).location_record(
                sn,
                vec![],
                1,
                10 + u32::from(i),
            );
            d.store(r, 0);
        }
        assert_eq!(d.len(), 3);
        assert_eq!(d.expire(13 * super::super::SECS), 2);
        assert_eq!(d.len(), 1);
    }

    #[test]
    fn cache_entries_expire_and_are_bounded() {
        let mut c = LocationCache::new(2, 10);
        c.insert(NodeId([1; 32]), NodeId([9; 32]), 0);
        c.insert(NodeId([2; 32]), NodeId([9; 32]), 1);
        c.insert(NodeId([3; 32]), NodeId([8; 32]), 2);
        assert_eq!(c.len(), 2);
        assert_eq!(c.get(&NodeId([1; 32]), 2), None);
        assert_eq!(c.get(&NodeId([3; 32]), 11), Some(NodeId([8; 32])));
        assert_eq!(c.get(&NodeId([3; 32]), 12), None);
        c.forget_supernode(&NodeId([9; 32]));
        assert_eq!(c.len(), 1);
    }
}
