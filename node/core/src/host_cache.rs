//! The host cache: supernodes this node has heard of, with their addresses
//! and when each was last seen alive, kept to join and rejoin without a
//! bootstrap address (Skype kept 200). The runtime saves it to disk.
//!
//! Entries are of two kinds, as in Bitcoin Core's address manager (its
//! "tried" and "new" tables): **verified** supernodes, which this node
//! linked to and which said `Hello` as a supernode, and **advertised** ones,
//! which some peer named in an `Accept`, `Redirect` or `Neighbors`. A peer
//! that lies can thus fill only the advertised part, and only up to
//! [`MAX_ADVERTISED_PER_SOURCE`] entries of it; it can never push out a
//! supernode this node has verified.
//!
//! # Implementation notes
//! Both kinds live in [`RankedMap`]s ranked by last-seen time, so that the
//! least recently seen entry is found in O(log n); a per-source index of
//! `(source, last_seen, id)` finds a source's oldest advertised entry in
//! O(log n) too. When every peer is honest the choice of what to evict is
//! the one the single least-recently-seen list made, except that an
//! advertised entry never displaces a verified one.

use std::collections::{BTreeMap, BTreeSet};

use skyhop_protocol::NodeId;

use super::events::HostCacheEntry;
use super::ranked::RankedMap;
use super::SimTime;

/// Advertised entries that one peer may have in the cache at a time: a
/// sixth of the default cache, so that filling it takes many peers.
pub const MAX_ADVERTISED_PER_SOURCE: usize = 32;

/// An advertised entry: what was said, and by whom.
#[derive(Debug)]
struct Advertised {
    /// Addresses, as advertised.
    addrs: Vec<String>,
    /// The peer that named it; `None` for entries restored from disk.
    source: Option<NodeId>,
}

/// Known supernodes, bounded; the least recently seen goes first, and an
/// advertised entry never displaces a verified one.
#[derive(Debug)]
pub(crate) struct HostCache {
    /// Supernodes linked to that said `Hello` as one: addresses by id,
    /// ranked by last seen.
    verified: RankedMap<NodeId, Vec<String>, SimTime>,
    /// Supernodes other peers named, ranked by last seen.
    advertised: RankedMap<NodeId, Advertised, SimTime>,
    /// `(source, last_seen, id)` of every advertised entry with a source.
    by_source: BTreeSet<(NodeId, SimTime, NodeId)>,
    /// Advertised entries held per source.
    per_source: BTreeMap<NodeId, usize>,
    /// Entries of both kinds kept at most.
    capacity: usize,
}

impl HostCache {
    /// An empty cache of at most `capacity` entries.
    pub fn new(capacity: usize) -> HostCache {
        HostCache {
            verified: RankedMap::default(),
            advertised: RankedMap::default(),
            by_source: BTreeSet::new(),
            per_source: BTreeMap::new(),
            capacity,
        }
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.verified.len() + self.advertised.len()
    }

    /// Verified entries held.
    pub fn verified_len(&self) -> usize {
        self.verified.len()
    }

    /// Whether `id` is known.
    pub fn contains(&self, id: &NodeId) -> bool {
        self.verified.contains_key(id) || self.advertised.contains_key(id)
    }

    /// Verified entries in id order: `(id, addresses)`.
    pub fn verified(&self) -> impl Iterator<Item = (&NodeId, &Vec<String>)> {
        self.verified.iter().map(|(id, addrs, _)| (id, addrs))
    }

    /// Records that supernode `id` said `Hello` as one on a link at `seen`,
    /// with `addrs` if any. A new entry displaces the least recently seen
    /// one of either kind when the cache is full, unless that one was seen
    /// later than `seen`.
    pub fn add_verified(&mut self, id: NodeId, addrs: Vec<String>, seen: SimTime) {
        if let Some((held, last_seen)) = self.verified.get(&id) {
            let addrs = if addrs.is_empty() {
                held.clone()
            } else {
                addrs
            };
            self.verified.insert(id, addrs, last_seen.max(seen));
            return;
        }
        if let Some((ad, last_seen)) = self.remove_advertised(&id) {
            let addrs = if addrs.is_empty() { ad.addrs } else { addrs };
            self.verified.insert(id, addrs, last_seen.max(seen));
            return;
        }
        if self.len() >= self.capacity {
            let oldest = [self.verified.lowest(), self.advertised.lowest()]
                .into_iter()
                .flatten()
                .min_by_key(|(id, seen)| (*seen, *id));
            match oldest {
                Some((o, o_seen)) if o_seen <= seen => {
                    if self.verified.remove(&o).is_none() {
                        self.remove_advertised(&o);
                    }
                }
                _ => return,
            }
        }
        self.verified.insert(id, addrs, seen);
    }

    /// Records that peer `source` (`None`: this node's own file) named
    /// supernode `id` at `seen`. A verified entry only has its last-seen
    /// time raised. A new entry displaces `source`'s least recently seen
    /// entry when `source` holds [`MAX_ADVERTISED_PER_SOURCE`], else the
    /// least recently seen advertised entry when the cache is full, unless
    /// that one was seen later than `seen`; it never displaces a verified
    /// entry.
    pub fn add_advertised(
        &mut self,
        id: NodeId,
        addrs: Vec<String>,
        seen: SimTime,
        source: Option<NodeId>,
    ) {
        if let Some((_, last_seen)) = self.verified.get(&id) {
            if seen > last_seen {
                self.verified.set_rank(&id, seen);
            }
            return;
        }
        if let Some((_, last_seen)) = self.advertised.get(&id) {
            let newer = last_seen.max(seen);
            if let Some(ad) = self.advertised.get_mut(&id) {
                if !addrs.is_empty() {
                    ad.addrs = addrs;
                }
                if let Some(src) = ad.source {
                    self.by_source.remove(&(src, last_seen, id));
                    self.by_source.insert((src, newer, id));
                }
            }
            self.advertised.set_rank(&id, newer);
            return;
        }
        let source_full = source.is_some_and(|s| {
            self.per_source.get(&s).copied().unwrap_or(0) >= MAX_ADVERTISED_PER_SOURCE
        });
        let victim = if source_full {
            source.and_then(|s| {
                self.by_source
                    .range((s, 0, NodeId([0; 32]))..)
                    .next()
                    .filter(|(src, _, _)| *src == s)
                    .map(|(_, seen, id)| (*id, *seen))
            })
        } else if self.len() >= self.capacity {
            self.advertised.lowest()
        } else {
            None
        };
        if source_full || self.len() >= self.capacity {
            match victim {
                Some((v, v_seen)) if v_seen <= seen => {
                    self.remove_advertised(&v);
                }
                _ => return,
            }
        }
        if let Some(s) = source {
            self.by_source.insert((s, seen, id));
            *self.per_source.entry(s).or_default() += 1;
        }
        self.advertised
            .insert(id, Advertised { addrs, source }, seen);
    }

    /// Removes advertised entry `id` from the table and the source index.
    fn remove_advertised(&mut self, id: &NodeId) -> Option<(Advertised, SimTime)> {
        let (_, seen) = self.advertised.get(id)?;
        let ad = self.advertised.remove(id)?;
        if let Some(src) = ad.source {
            self.by_source.remove(&(src, seen, *id));
            if let Some(n) = self.per_source.get_mut(&src) {
                *n -= 1;
                if *n == 0 {
                    self.per_source.remove(&src);
                }
            }
        }
        Some((ad, seen))
    }

    /// Puts back an entry saved by [`HostCache::newest_first`].
    pub fn restore(&mut self, e: HostCacheEntry) {
        if e.verified {
            self.add_verified(e.id, e.addrs, e.last_seen);
        } else {
            self.add_advertised(e.id, e.addrs, e.last_seen, None);
        }
    }

    /// Every entry, most recently seen first (ties by id).
    pub fn newest_first(&self) -> Vec<HostCacheEntry> {
        let verified = self
            .verified
            .iter()
            .map(|(id, addrs, seen)| HostCacheEntry {
                id: *id,
                addrs: addrs.clone(),
                last_seen: seen,
                verified: true,
            });
        let advertised = self.advertised.iter().map(|(id, ad, seen)| HostCacheEntry {
            id: *id,
            addrs: ad.addrs.clone(),
            last_seen: seen,
            verified: false,
        });
        let mut v: Vec<HostCacheEntry> = verified.chain(advertised).collect();
        v.sort_by(|a, b| b.last_seen.cmp(&a.last_seen).then(a.id.cmp(&b.id)));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u16) -> NodeId {
        let mut b = [0u8; 32];
        b[..2].copy_from_slice(&n.to_be_bytes());
        NodeId(b)
    }

    #[test]
    fn one_peer_cannot_fill_the_cache_and_keeps_only_its_newest_claims() {
        let liar = Some(id(9999));
        let mut c = HostCache::new(200);
        for n in 0..1000 {
            c.add_advertised(id(n), vec![], u64::from(n), liar);
        }
        assert_eq!(c.len(), MAX_ADVERTISED_PER_SOURCE);
        let kept: Vec<NodeId> = c.newest_first().iter().map(|e| e.id).collect();
        assert_eq!(kept[0], id(999));
        assert_eq!(kept[MAX_ADVERTISED_PER_SOURCE - 1], id(968));
        // Another peer still gets its share.
        c.add_advertised(id(5000), vec![], 0, Some(id(7777)));
        assert!(c.contains(&id(5000)));
    }

    #[test]
    fn verified_supernodes_survive_a_flood_of_newer_advertised_ones() {
        let mut c = HostCache::new(10);
        for n in 0..4 {
            c.add_verified(id(n), vec![format!("/sn/{n}")], 0);
        }
        // Many liars, each under its own bound, all claiming "seen just now".
        for n in 100..1100 {
            c.add_advertised(id(n), vec![], 1_000_000, Some(id(n / 10)));
        }
        assert_eq!(c.len(), 10);
        assert_eq!(c.verified_len(), 4);
        for n in 0..4 {
            assert!(c.contains(&id(n)), "verified {n} was evicted");
        }
        // An advertiser cannot rewrite a verified entry's addresses.
        c.add_advertised(id(0), vec!["/evil".into()], 2_000_000, Some(id(1)));
        let e = c
            .newest_first()
            .into_iter()
            .find(|e| e.id == id(0))
            .unwrap();
        assert_eq!(e.addrs, vec!["/sn/0".to_string()]);
        assert!(e.verified);
    }

    #[test]
    fn verifying_an_advertised_entry_frees_its_sources_share() {
        let src = Some(id(500));
        let mut c = HostCache::new(200);
        for n in 0..MAX_ADVERTISED_PER_SOURCE as u16 {
            c.add_advertised(id(n), vec![], 10, src);
        }
        c.add_verified(id(0), vec![], 20);
        assert_eq!(c.verified_len(), 1);
        c.add_advertised(id(300), vec![], 5, src);
        assert!(c.contains(&id(300)), "the share freed by id 0 was reused");
        assert_eq!(c.len(), MAX_ADVERTISED_PER_SOURCE + 1);
    }

    #[test]
    fn a_full_cache_drops_the_least_recently_seen_and_saves_the_kind() {
        let mut c = HostCache::new(3);
        c.add_advertised(id(1), vec![], 5, Some(id(100)));
        c.add_verified(id(2), vec![], 1);
        c.add_advertised(id(3), vec![], 7, Some(id(100)));
        c.add_verified(id(4), vec![], 6);
        let saved = c.newest_first();
        let ids: Vec<NodeId> = saved.iter().map(|e| e.id).collect();
        assert_eq!(ids, vec![id(3), id(4), id(1)], "verified 2, oldest, went");
        let mut restored = HostCache::new(3);
        for e in saved.clone() {
            restored.restore(e);
        }
        assert_eq!(restored.newest_first(), saved);
        assert_eq!(restored.verified_len(), 1);
    }
}
