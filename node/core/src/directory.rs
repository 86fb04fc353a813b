//! Location tracking state of a supernode: the records it holds as a home
//! supernode, tombstones of nodes that left, and the location cache it
//! routes by.
//!
//! Records are verified before they get here (the node does that, since it
//! also counts and reports forgeries); this module only keeps the newest
//! record per node, expires them, and stays within its bounds.
//!
//! # Implementation notes
//! The directory's records and tombstones are [`RankedMap`]s ranked by
//! expiry, so that making room at the cap and expiring cost O(log n) per
//! entry: a full directory of 200,000 records used to scan them all on
//! every new record, 3.2 ms, so that a few hundred publishes a second kept
//! a supernode busy. The location cache is small and stays a plain map.
//! A record is held behind an `Arc`, so that the mailbox's copy of a
//! node's last record ([`crate::mailbox::Mailbox::remember_record`]) is the
//! same allocation, not a second ~0.4 KB per node homed.

use std::collections::BTreeMap;
use std::sync::Arc;

use skyhop_protocol::{LocationRecord, NodeId};

use super::ranked::RankedMap;
use super::SimTime;

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
    /// Records by node, ranked by expiry.
    records: RankedMap<NodeId, Arc<LocationRecord>, SimTime>,
    /// Highest withdrawn `seq` by departed node, ranked by when it is forgotten.
    tombstones: RankedMap<NodeId, u64, SimTime>,
    max_records: usize,
}

/// How long a departed node is reported as offline rather than unknown.
pub const TOMBSTONE_TTL: SimTime = 10 * 60 * super::SECS;

impl Directory {
    /// An empty directory holding at most `max_records` records (and as many
    /// tombstones).
    pub fn new(max_records: usize) -> Directory {
        Directory {
            records: RankedMap::default(),
            tombstones: RankedMap::default(),
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
            Some((held, _)) if held.seq > record.seq => return StoreOutcome::Stale,
            Some(_) => StoreOutcome::Updated,
            None => StoreOutcome::New,
        };
        if outcome == StoreOutcome::New && self.records.len() >= self.max_records {
            self.records.pop_lowest();
        }
        self.records.insert(record.node, Arc::new(record), expires);
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
            .is_some_and(|(r, _)| r.sn == *sn && r.seq <= seq);
        if matches {
            self.records.remove(node);
        }
        if departed || matches {
            let held = self.tombstones.get(node).map(|(s, _)| *s);
            if held.is_none() && self.tombstones.len() >= self.max_records {
                self.tombstones.pop_lowest();
            }
            self.tombstones
                .insert(*node, seq.max(held.unwrap_or(0)), now + TOMBSTONE_TTL);
        }
        matches
    }

    /// The live record of `node`.
    pub fn get(&self, node: &NodeId, now: SimTime) -> Option<&LocationRecord> {
        self.get_shared(node, now).map(|r| &**r)
    }

    /// The live record of `node`, shared: keeping it costs no copy.
    pub fn get_shared(&self, node: &NodeId, now: SimTime) -> Option<&Arc<LocationRecord>> {
        self.records
            .get(node)
            .filter(|(_, expires)| *expires > now)
            .map(|(r, _)| r)
    }

    /// Whether `node` left or was lost recently.
    pub fn departed(&self, node: &NodeId, now: SimTime) -> bool {
        self.tombstones
            .get(node)
            .is_some_and(|(_, until)| until > now)
    }

    /// Drops expired records and tombstones; returns how many records expired.
    pub fn expire(&mut self, now: SimTime) -> usize {
        let mut expired = 0;
        while self.records.pop_at_most(now).is_some() {
            expired += 1;
        }
        while self.tombstones.pop_at_most(now).is_some() {}
        expired
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
    pub fn records(&self) -> impl Iterator<Item = &LocationRecord> {
        self.records.values().map(|r| &**r)
    }
}

/// Where recently looked-up nodes are attached: node -> supernode, with
/// the `seq` of the record that said so; a record never replaces a newer
/// one.
///
/// # Implementation notes
/// A plain map, scanned to make room at its cap (4,096 entries by
/// default, about 20 us a scan) and to forget a dead supernode: every
/// supernode of a simulated million has one, and an index by expiry cost
/// more memory than that world can spare (restart-storm-10k's peak RSS
/// grew by some 18 MiB with it). Inserts come only from replies to
/// lookups this node made, themselves bounded by its peers' budgets.
#[derive(Debug)]
pub struct LocationCache {
    /// Supernode, record `seq`, trusted until.
    entries: BTreeMap<NodeId, (NodeId, u64, SimTime)>,
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

    /// Remembers that `node` is attached to `sn`, as its record `seq`
    /// says; false (nothing changed) when a newer record is held.
    pub fn insert(&mut self, node: NodeId, sn: NodeId, seq: u64, now: SimTime) -> bool {
        match self.entries.get(&node) {
            Some((_, held, until)) if *held > seq && *until > now => return false,
            Some(_) => {}
            None if self.entries.len() >= self.capacity => {
                crate::evict_lowest(&mut self.entries, |(_, _, until)| *until);
            }
            None => {}
        }
        self.entries.insert(node, (sn, seq, now + self.ttl));
        true
    }

    /// The supernode `node` is attached to, if known and fresh.
    pub fn get(&self, node: &NodeId, now: SimTime) -> Option<NodeId> {
        self.entries
            .get(node)
            .filter(|(_, _, until)| *until > now)
            .map(|(sn, _, _)| *sn)
    }

    /// Forgets `node`.
    pub fn remove(&mut self, node: &NodeId) {
        self.entries.remove(node);
    }

    /// Forgets every entry pointing at supernode `sn` (it died).
    pub fn forget_supernode(&mut self, sn: &NodeId) {
        self.entries.retain(|_, (s, _, _)| s != sn);
    }

    /// Drops expired entries.
    pub fn expire(&mut self, now: SimTime) {
        self.entries.retain(|_, (_, _, until)| *until > now);
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
    fn a_full_directory_makes_room_by_dropping_the_record_that_expires_first() {
        let sn = NodeId([0xa; 32]);
        let ids: Vec<Identity> = (1..=4u8).map(|i| Identity::from_secret([i; 32])).collect();
        let mut d = Directory::new(3);
        // Lifetimes 30, 10, 20 s: the second expires first.
        for (who, lifetime) in ids.iter().zip([30, 10, 20]) {
            d.store(who.location_record(sn, vec![], 1, lifetime), 0);
        }
        // Refreshing the soonest makes the next soonest the victim.
        d.store(ids[1].location_record(sn, vec![], 2, 40), 0);
        d.store(ids[3].location_record(sn, vec![], 1, 50), 0);
        assert_eq!(d.len(), 3);
        assert!(d.get(&ids[2].id(), 0).is_none(), "the 20 s record went");
        for kept in [&ids[0], &ids[1], &ids[3]] {
            assert!(d.get(&kept.id(), 0).is_some());
        }
        assert_eq!(d.expire(30 * super::super::SECS), 1);
        assert_eq!(d.records().count(), 2);
    }

    /// Not an assertion: prints what one insert costs in a directory full
    /// at the default cap. Run with
    /// `cargo test -p skyhop-core --release directory::tests::insert_cost_at_cap -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn insert_cost_at_cap() {
        let cap = crate::NodeConfig::default().max_records;
        let sn = NodeId([0xa; 32]);
        let author = Identity::from_secret([7; 32]);
        let template = author.location_record(sn, vec![], 1, 60);
        let record = |i: u64| {
            let mut r = template.clone();
            let mut id = [0u8; 32];
            id[..8].copy_from_slice(&i.to_be_bytes());
            r.node = NodeId(id);
            r
        };
        let mut d = Directory::new(cap);
        for i in 0..cap as u64 {
            d.store(record(i), i);
        }
        let inserts = 20_000u64;
        #[allow(clippy::disallowed_methods)] // a benchmark, outside the core's logic
        let start = std::time::Instant::now();
        for i in 0..inserts {
            d.store(record(cap as u64 + i), cap as u64 + i);
        }
        let per = start.elapsed() / inserts as u32;
        assert_eq!(d.len(), cap);
        println!("directory insert at cap {cap}: {per:?} per insert");
    }

    #[test]
    fn cache_entries_expire_and_are_bounded() {
        let mut c = LocationCache::new(2, 10);
        c.insert(NodeId([1; 32]), NodeId([9; 32]), 1, 0);
        c.insert(NodeId([2; 32]), NodeId([9; 32]), 1, 1);
        c.insert(NodeId([3; 32]), NodeId([8; 32]), 1, 2);
        assert_eq!(c.len(), 2);
        assert_eq!(c.get(&NodeId([1; 32]), 2), None);
        assert_eq!(c.get(&NodeId([3; 32]), 11), Some(NodeId([8; 32])));
        assert_eq!(c.get(&NodeId([3; 32]), 12), None);
        c.forget_supernode(&NodeId([9; 32]));
        assert_eq!(c.len(), 1);
        c.insert(NodeId([3; 32]), NodeId([9; 32]), 2, 3);
        c.forget_supernode(&NodeId([8; 32]));
        assert_eq!(
            c.get(&NodeId([3; 32]), 3),
            Some(NodeId([9; 32])),
            "moved to 9"
        );
        c.forget_supernode(&NodeId([9; 32]));
        assert!(c.is_empty());
    }

    #[test]
    fn a_cached_location_is_never_replaced_by_an_older_record() {
        let mut c = LocationCache::new(4, 100);
        let (node, old_sn, new_sn) = (NodeId([1; 32]), NodeId([8; 32]), NodeId([9; 32]));
        assert!(c.insert(node, new_sn, 7, 0));
        assert!(!c.insert(node, old_sn, 6, 1), "an older record is refused");
        assert_eq!(c.get(&node, 1), Some(new_sn));
        assert!(c.insert(node, new_sn, 7, 2), "the same record refreshes");
        assert!(c.insert(node, old_sn, 8, 3), "a newer one replaces it");
        assert_eq!(c.get(&node, 3), Some(old_sn));
        // Once the newer entry has expired, nothing newer is held.
        assert!(c.insert(node, new_sn, 1, 200));
        assert_eq!(c.get(&node, 200), Some(new_sn));
    }
}
