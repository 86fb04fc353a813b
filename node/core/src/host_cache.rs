//! The host cache: supernodes this node has heard of, with their addresses
//! and when each was last seen alive, kept to join and rejoin without a
//! bootstrap address (Skype kept 200). The runtime saves it to disk.

use std::collections::BTreeMap;

use skyhop_protocol::NodeId;

use super::events::HostCacheEntry;
use super::SimTime;

/// Known supernodes, bounded; the least recently seen goes first.
#[derive(Debug)]
pub(crate) struct HostCache {
    /// Entries by supernode id.
    entries: BTreeMap<NodeId, HostCacheEntry>,
    /// Entries kept at most.
    capacity: usize,
}

impl HostCache {
    /// An empty cache of at most `capacity` entries.
    pub fn new(capacity: usize) -> HostCache {
        HostCache {
            entries: BTreeMap::new(),
            capacity,
        }
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether `id` is known.
    pub fn contains(&self, id: &NodeId) -> bool {
        self.entries.contains_key(id)
    }

    /// Entries in id order.
    pub fn iter(&self) -> impl Iterator<Item = &HostCacheEntry> {
        self.entries.values()
    }

    /// Records supernode `id` as seen at `seen`, with `addrs` if any. A new
    /// entry displaces the least recently seen one when the cache is full,
    /// unless that one was seen later than `seen`.
    pub fn add(&mut self, id: NodeId, addrs: Vec<String>, seen: SimTime) {
        if let Some(e) = self.entries.get_mut(&id) {
            e.last_seen = e.last_seen.max(seen);
            if !addrs.is_empty() {
                e.addrs = addrs;
            }
            return;
        }
        if self.entries.len() >= self.capacity {
            let oldest = self
                .entries
                .values()
                .min_by_key(|e| (e.last_seen, e.id))
                .map(|e| e.id);
            match oldest {
                Some(o) if self.entries[&o].last_seen <= seen => {
                    self.entries.remove(&o);
                }
                _ => return,
            }
        }
        self.entries.insert(
            id,
            HostCacheEntry {
                id,
                addrs,
                last_seen: seen,
            },
        );
    }

    /// Every entry, most recently seen first (ties by id).
    pub fn newest_first(&self) -> Vec<HostCacheEntry> {
        let mut v: Vec<HostCacheEntry> = self.entries.values().cloned().collect();
        v.sort_by(|a, b| b.last_seen.cmp(&a.last_seen).then(a.id.cmp(&b.id)));
        v
    }
}
