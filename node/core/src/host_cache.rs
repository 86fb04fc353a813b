//! The host cache: supernodes this node has heard of, with their addresses
//! and when each was last seen alive, kept to join and rejoin without a
//! bootstrap address (Skype kept 200). The runtime saves it to disk.
//!
//! Entries are of two kinds, as in Bitcoin Core's address manager (its
//! "tried" and "new" tables): **verified** supernodes, which this node
//! linked to and which said `Hello` as a supernode, and **advertised** ones,
//! which some peer named in an `Accept`, `Redirect` or `Neighbors`. A peer
//! that lies can thus fill only the advertised part, and only up to
//! [`MAX_ADVERTISED_PER_GROUP`] entries of it; it can never push out a
//! supernode this node has verified.
//!
//! Sources are counted by **network group**, as Bitcoin Core's address
//! manager buckets them, because node ids are free and addresses are not:
//! every peer linked from one IPv4 /16 (or IPv6 /32) shares one share of
//! the cache, however many ids it makes. The driver tells the core each
//! linked peer's IP ([`NetGroup::of`]); a peer whose IP is not known, or is
//! a loopback address (many local processes on one machine, as in tests),
//! is its own group, keyed by its node id.
//!
//! # Implementation notes
//! One map, and a scan of it when a new entry needs room or a source's
//! share is counted: the cache holds 200 entries by default, its adds come
//! only from replies this node asked for, and every ordinary node of a
//! simulated million has one. Indexes by last-seen time and by source made
//! those steps O(log n) but cost five more B-trees per node, whose leaves
//! are allocated whole: +25% peak memory in restart-storm-10k (247 to
//! 310 MiB, with the location cache's index), which scale-1m cannot afford.
//! When every peer is honest the choice of what to evict is the one the
//! single least-recently-seen list made, except that an advertised entry
//! never displaces a verified one.

use std::collections::BTreeMap;
use std::net::IpAddr;

use skyhop_protocol::NodeId;

use super::events::HostCacheEntry;
use super::SimTime;

/// Advertised entries that one network group of sources may have in the
/// cache at a time: a sixth of the default cache, so that filling it takes
/// peers in many networks.
pub const MAX_ADVERTISED_PER_GROUP: usize = 32;
/// Sources whose network group is remembered at most (linked peers).
const MAX_SOURCE_GROUPS: usize = 4096;
/// The window of the dial budget for advertised addresses.
pub const DIAL_WINDOW: SimTime = 60 * super::SECS;
/// Dials of addresses one network group advertised, per window.
pub const DIALS_PER_GROUP: u32 = 32;
/// Dials of advertised addresses in all, per window.
pub const DIALS_IN_ALL: u32 = 256;

/// The budget for dialing what peers advertised: a supernode is told of
/// others in `Neighbors` answers and dials them, so a liar could make it
/// dial any address at its word. Each network group may cause
/// [`DIALS_PER_GROUP`] dials per [`DIAL_WINDOW`], and all together
/// [`DIALS_IN_ALL`]; an honest overlay's table fill stays far below both.
///
/// Fixed windows: the per-group counts are cleared when a window ends, and
/// they are at most [`DIALS_IN_ALL`] entries, so a check is O(log n).
#[derive(Debug, Default)]
struct DialBudget {
    /// When the current window began.
    window_start: SimTime,
    /// Dials in the window, in all.
    in_all: u32,
    /// Dials in the window, by group.
    by_group: BTreeMap<NetGroup, u32>,
}

impl DialBudget {
    fn allow(&mut self, now: SimTime, group: NetGroup) -> bool {
        if now >= self.window_start + DIAL_WINDOW {
            self.window_start = now;
            self.in_all = 0;
            self.by_group.clear();
        }
        let of_group = self.by_group.get(&group).copied().unwrap_or(0);
        if self.in_all >= DIALS_IN_ALL || of_group >= DIALS_PER_GROUP {
            return false;
        }
        self.in_all += 1;
        self.by_group.insert(group, of_group + 1);
        true
    }
}

/// A source's network group: who counts as one advertiser.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum NetGroup {
    /// An IPv4 /16.
    V4([u8; 2]),
    /// An IPv6 /32.
    V6([u8; 4]),
    /// A peer whose IP is unknown or loopback: itself.
    Node(NodeId),
}

impl NetGroup {
    /// The group of a peer at `ip`; None for loopback and unspecified
    /// addresses, which group by node id instead.
    pub fn of(ip: IpAddr) -> Option<NetGroup> {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        if ip.is_loopback() || ip.is_unspecified() {
            return None;
        }
        Some(match ip {
            IpAddr::V4(v4) => {
                let o = v4.octets();
                NetGroup::V4([o[0], o[1]])
            }
            IpAddr::V6(v6) => {
                let o = v6.octets();
                NetGroup::V6([o[0], o[1], o[2], o[3]])
            }
        })
    }
}

/// One known supernode.
#[derive(Debug)]
struct Entry {
    /// Its addresses.
    addrs: Vec<String>,
    /// When it was last seen alive.
    last_seen: SimTime,
    /// Verified (linked to, said `Hello` as a supernode), or else who
    /// advertised it (`None`: this node's own file).
    kind: Kind,
}

/// How an entry came to be known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// This node linked to it and heard it say `Hello` as a supernode.
    Verified,
    /// A peer of this network group named it (`None`: restored from
    /// this node's own file).
    Advertised(Option<NetGroup>),
}

/// Known supernodes, bounded; the least recently seen goes first, and an
/// advertised entry never displaces a verified one.
#[derive(Debug)]
pub(crate) struct HostCache {
    /// Entries by supernode id.
    entries: BTreeMap<NodeId, Entry>,
    /// Entries of both kinds kept at most.
    capacity: usize,
    /// The network group of each linked peer whose IP the driver told.
    groups: BTreeMap<NodeId, NetGroup>,
    /// Dials of advertised addresses left in this window.
    dials: DialBudget,
}

impl HostCache {
    /// An empty cache of at most `capacity` entries.
    pub fn new(capacity: usize) -> HostCache {
        HostCache {
            entries: BTreeMap::new(),
            capacity,
            groups: BTreeMap::new(),
            dials: DialBudget::default(),
        }
    }

    /// Whether this node may dial, at `now`, a supernode that `source`
    /// advertised: within the budget of `source`'s network group and of
    /// all advertised dials (see [`DialBudget`]). A yes is counted.
    pub fn may_dial_advertised(&mut self, now: SimTime, source: NodeId) -> bool {
        let group = self.group_of(source);
        self.dials.allow(now, group)
    }

    /// Whether this ordinary node may dial, at `now`, supernode `id` of
    /// its cache as an attach or backup candidate: always if it verified
    /// `id` itself or read it from its own file (or does not hold it: a
    /// bootstrap peer), else within the budget of the network group that
    /// advertised it. A yes is counted.
    pub fn may_dial_candidate(&mut self, now: SimTime, id: &NodeId) -> bool {
        match self.entries.get(id).map(|e| e.kind) {
            Some(Kind::Advertised(Some(group))) => self.dials.allow(now, group),
            _ => true,
        }
    }

    /// Linked peer `peer` connects from `ip`: what it advertises counts
    /// against that address's network group.
    pub fn note_source_ip(&mut self, peer: NodeId, ip: IpAddr) {
        match NetGroup::of(ip) {
            Some(g) if self.groups.len() < MAX_SOURCE_GROUPS || self.groups.contains_key(&peer) => {
                self.groups.insert(peer, g);
            }
            _ => {
                self.groups.remove(&peer);
            }
        }
    }

    /// `peer`'s link closed: forget its group.
    pub fn forget_source(&mut self, peer: &NodeId) {
        self.groups.remove(peer);
    }

    /// The group `source` advertises as.
    fn group_of(&self, source: NodeId) -> NetGroup {
        self.groups
            .get(&source)
            .copied()
            .unwrap_or(NetGroup::Node(source))
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Verified entries held.
    pub fn verified_len(&self) -> usize {
        self.entries
            .values()
            .filter(|e| e.kind == Kind::Verified)
            .count()
    }

    /// Whether `id` is known.
    pub fn contains(&self, id: &NodeId) -> bool {
        self.entries.contains_key(id)
    }

    /// The addresses of `id` if it is a verified entry (a supernode we
    /// were linked to).
    pub fn verified_addrs(&self, id: &NodeId) -> Option<&[String]> {
        self.entries
            .get(id)
            .filter(|e| e.kind == Kind::Verified)
            .map(|e| e.addrs.as_slice())
    }

    /// Verified entries in id order: `(id, addresses)`.
    pub fn verified(&self) -> impl Iterator<Item = (&NodeId, &Vec<String>)> {
        self.entries
            .iter()
            .filter(|(_, e)| e.kind == Kind::Verified)
            .map(|(id, e)| (id, &e.addrs))
    }

    /// The least recently seen entry that `evictable` allows (ties: lowest
    /// id), and when it was seen.
    fn oldest(&self, evictable: impl Fn(&Entry) -> bool) -> Option<(NodeId, SimTime)> {
        self.entries
            .iter()
            .filter(|(_, e)| evictable(e))
            .min_by_key(|(id, e)| (e.last_seen, **id))
            .map(|(id, e)| (*id, e.last_seen))
    }

    /// Makes room for an entry seen at `seen` by dropping the oldest entry
    /// `evictable` allows, unless it was seen later; false if there is no
    /// room to make.
    fn make_room(&mut self, seen: SimTime, evictable: impl Fn(&Entry) -> bool) -> bool {
        match self.oldest(evictable) {
            Some((victim, victim_seen)) if victim_seen <= seen => {
                self.entries.remove(&victim);
                true
            }
            _ => false,
        }
    }

    /// Records that supernode `id` said `Hello` as one on a link at `seen`,
    /// with `addrs` if any. A new entry displaces the least recently seen
    /// one of either kind when the cache is full, unless that one was seen
    /// later than `seen`.
    pub fn add_verified(&mut self, id: NodeId, addrs: Vec<String>, seen: SimTime) {
        if let Some(e) = self.entries.get_mut(&id) {
            e.last_seen = e.last_seen.max(seen);
            e.kind = Kind::Verified;
            if !addrs.is_empty() {
                e.addrs = addrs;
            }
            return;
        }
        if self.entries.len() >= self.capacity && !self.make_room(seen, |_| true) {
            return;
        }
        let kind = Kind::Verified;
        let entry = Entry {
            addrs,
            last_seen: seen,
            kind,
        };
        self.entries.insert(id, entry);
    }

    /// Records that peer `source` (`None`: this node's own file) named
    /// supernode `id` at `seen`. A verified entry only has its last-seen
    /// time raised. A new entry displaces the least recently seen entry of
    /// `source`'s network group when that group holds
    /// [`MAX_ADVERTISED_PER_GROUP`], else the
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
        if let Some(e) = self.entries.get_mut(&id) {
            e.last_seen = e.last_seen.max(seen);
            if e.kind != Kind::Verified && !addrs.is_empty() {
                e.addrs = addrs;
            }
            return;
        }
        let from_source = Kind::Advertised(source.map(|s| self.group_of(s)));
        let source_full = source.is_some()
            && self
                .entries
                .values()
                .filter(|e| e.kind == from_source)
                .count()
                >= MAX_ADVERTISED_PER_GROUP;
        if source_full {
            if !self.make_room(seen, |e| e.kind == from_source) {
                return;
            }
        } else if self.entries.len() >= self.capacity
            && !self.make_room(seen, |e| e.kind != Kind::Verified)
        {
            return;
        }
        let entry = Entry {
            addrs,
            last_seen: seen,
            kind: from_source,
        };
        self.entries.insert(id, entry);
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
        let mut v: Vec<HostCacheEntry> = self
            .entries
            .iter()
            .map(|(id, e)| HostCacheEntry {
                id: *id,
                addrs: e.addrs.clone(),
                last_seen: e.last_seen,
                verified: e.kind == Kind::Verified,
            })
            .collect();
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
        assert_eq!(c.len(), MAX_ADVERTISED_PER_GROUP);
        let kept: Vec<NodeId> = c.newest_first().iter().map(|e| e.id).collect();
        assert_eq!(kept[0], id(999));
        assert_eq!(kept[MAX_ADVERTISED_PER_GROUP - 1], id(968));
        // Another peer still gets its share.
        c.add_advertised(id(5000), vec![], 0, Some(id(7777)));
        assert!(c.contains(&id(5000)));
    }

    #[test]
    fn fresh_ids_from_one_network_share_one_groups_share_of_the_cache() {
        let mut c = HostCache::new(200);
        // 500 sources, each a new id, all from one /16.
        for s in 0..500u16 {
            let source = id(10_000 + s);
            let ip = IpAddr::from([203, 0, (s % 250) as u8, (s / 250) as u8 + 1]);
            c.note_source_ip(source, ip);
            for n in 0..10 {
                c.add_advertised(id(s * 10 + n), vec![], u64::from(s), Some(source));
            }
        }
        assert_eq!(c.len(), MAX_ADVERTISED_PER_GROUP, "one /16, one share");
        // A peer in another /16 still gets its own share.
        let other = id(20_000);
        c.note_source_ip(other, IpAddr::from([198, 51, 100, 7]));
        for n in 0..5 {
            c.add_advertised(id(30_000 + n), vec![], 0, Some(other));
        }
        assert_eq!(c.len(), MAX_ADVERTISED_PER_GROUP + 5);
    }

    #[test]
    fn network_groups_are_slash_16_slash_32_and_loopback_is_per_peer() {
        let g = |s: &str| NetGroup::of(s.parse().expect("an ip"));
        assert_eq!(g("203.0.113.9"), g("203.0.7.200"));
        assert_ne!(g("203.0.113.9"), g("203.1.113.9"));
        assert_eq!(g("2001:db8:1::1"), g("2001:db8:ffff::2"));
        assert_ne!(g("2001:db8::1"), g("2001:db9::1"));
        assert_eq!(g("::ffff:203.0.113.9"), g("203.0.1.1"), "mapped v4 is v4");
        assert_eq!(g("127.0.0.1"), None);
        assert_eq!(g("::1"), None);
        // Local processes each count as their own group, so that a test of
        // many nodes on one machine works as before.
        let mut c = HostCache::new(200);
        for s in 0..4u16 {
            let source = id(10_000 + s);
            c.note_source_ip(source, IpAddr::from([127, 0, 0, 1]));
            for n in 0..20 {
                c.add_advertised(id(s * 100 + n), vec![], 0, Some(source));
            }
        }
        assert_eq!(c.len(), 80);
    }

    #[test]
    fn advertised_dials_are_bounded_per_group_and_in_all_per_window() {
        let mut c = HostCache::new(200);
        let liar = id(1);
        c.note_source_ip(liar, IpAddr::from([203, 0, 113, 1]));
        let allowed = (0..100).filter(|_| c.may_dial_advertised(0, liar)).count();
        assert_eq!(allowed, DIALS_PER_GROUP as usize);
        // A fresh id in the same /16 shares the budget.
        let sibling = id(2);
        c.note_source_ip(sibling, IpAddr::from([203, 0, 9, 9]));
        assert!(!c.may_dial_advertised(1, sibling));
        // Many groups together stop at the global bound.
        let others = (3..1000u16)
            .filter(|n| c.may_dial_advertised(2, id(*n)))
            .count();
        assert_eq!(others, (DIALS_IN_ALL - DIALS_PER_GROUP) as usize);
        // The next window starts afresh.
        assert!(c.may_dial_advertised(DIAL_WINDOW, liar));
    }

    #[test]
    fn attach_candidates_one_network_advertised_are_dialed_within_its_budget() {
        let mut c = HostCache::new(200);
        let liar = id(1);
        c.note_source_ip(liar, IpAddr::from([203, 0, 113, 1]));
        c.add_verified(id(7), vec![], 0);
        // The liar's share of the cache, dialed and failing, then as many
        // fresh lies in their place: those wait for the next window.
        let round = |c: &mut HostCache, first: u16, at: SimTime| {
            for n in first..first + 32 {
                c.add_advertised(id(n), vec![], at, Some(liar));
            }
            (first..first + 32)
                .filter(|n| c.may_dial_candidate(at, &id(*n)))
                .count()
        };
        assert_eq!(round(&mut c, 100, 1), DIALS_PER_GROUP as usize);
        assert_eq!(round(&mut c, 200, 2), 0);
        // What this node verified itself, or was never told (a bootstrap
        // peer), is not the liar's to spend.
        assert!(c.may_dial_candidate(3, &id(7)));
        assert!(c.may_dial_candidate(3, &id(9)));
        assert!(c.may_dial_candidate(DIAL_WINDOW + 2, &id(231)));
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
        for n in 0..MAX_ADVERTISED_PER_GROUP as u16 {
            c.add_advertised(id(n), vec![], 10, src);
        }
        c.add_verified(id(0), vec![], 20);
        assert_eq!(c.verified_len(), 1);
        c.add_advertised(id(300), vec![], 5, src);
        assert!(c.contains(&id(300)), "the share freed by id 0 was reused");
        assert_eq!(c.len(), MAX_ADVERTISED_PER_GROUP + 1);
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
