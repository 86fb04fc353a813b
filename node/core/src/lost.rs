//! Supernodes this supernode lost recently: what lets it tell "the node
//! you ask about may be out of my reach" from "nobody knows it".
//!
//! A supernode answers for a key as its home when no supernode it can reach
//! is closer to the key. If a closer one was linked to it until lately and
//! its link closed (a crash, a departure, or a network partition), the
//! key's true homes may be on the far side: a missing record says nothing
//! about the node, and the answer is `Unreachable` rather than `NoRecord`.
//! A lost supernode is forgotten as soon as it is linked again (a healed
//! partition) or after [`LOST_WINDOW`].
//!
//! # Implementation notes
//! The keys a supernode answers for are its own neighbourhood in XOR space,
//! so a lost supernode closer to such a key than we are is close to us too.
//! The memory keeps the [`LOST_KEPT`] lost supernodes closest to our own id
//! (O(log n) of a network of n supernodes is enough for any realistic n),
//! in a map ordered by distance to us: adding, forgetting and evicting the
//! farthest are O(log n), and the question scans at most [`LOST_KEPT`]
//! entries.

use std::collections::BTreeMap;

use skyhop_protocol::{Distance, NodeId};

use super::{SimTime, SECS};

/// Lost supernodes kept at most: the closest to our own id.
pub(crate) const LOST_KEPT: usize = 32;
/// How long a lost supernode is remembered.
pub(crate) const LOST_WINDOW: SimTime = 15 * 60 * SECS;

/// The supernodes lost recently, closest to `own` first.
#[derive(Clone, Debug)]
pub(crate) struct LostSupernodes {
    /// This node's id.
    own: NodeId,
    /// Lost supernodes by their distance to `own`: id and when lost.
    by_distance: BTreeMap<Distance, (NodeId, SimTime)>,
}

impl LostSupernodes {
    /// An empty memory around `own`.
    pub fn new(own: NodeId) -> LostSupernodes {
        LostSupernodes {
            own,
            by_distance: BTreeMap::new(),
        }
    }

    /// Supernode `sn` was lost at `now` (its link closed). Past
    /// [`LOST_KEPT`], the one farthest from us is forgotten.
    pub fn lost(&mut self, now: SimTime, sn: NodeId) {
        self.by_distance.insert(self.own.distance(&sn), (sn, now));
        while self.by_distance.len() > LOST_KEPT {
            self.by_distance.pop_last();
        }
    }

    /// Supernode `sn` is linked again.
    pub fn found(&mut self, sn: &NodeId) {
        self.by_distance.remove(&self.own.distance(sn));
    }

    /// Forgets what was lost before `now - LOST_WINDOW`.
    pub fn expire(&mut self, now: SimTime) {
        self.by_distance
            .retain(|_, (_, at)| *at + LOST_WINDOW > now);
    }

    /// Whether a supernode closer to `target` than we are was lost within
    /// [`LOST_WINDOW`] before `now`: then `target`'s true homes may be out
    /// of reach.
    pub fn closer_lost(&self, target: &NodeId, now: SimTime) -> bool {
        let ours = self.own.distance(target);
        self.by_distance
            .values()
            .any(|(sn, at)| *at + LOST_WINDOW > now && sn.distance(target) < ours)
    }

    /// Whether any supernode was lost within [`LOST_WINDOW`] before `now`.
    pub fn any(&self, now: SimTime) -> bool {
        self.by_distance
            .values()
            .any(|(_, at)| *at + LOST_WINDOW > now)
    }

    /// Lost supernodes remembered.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.by_distance.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(first: u8) -> NodeId {
        let mut b = [0u8; 32];
        b[0] = first;
        NodeId(b)
    }

    #[test]
    fn a_lost_supernode_closer_to_the_key_makes_the_key_unreachable_until_it_is_found() {
        let mut lost = LostSupernodes::new(id(0b0000_0000));
        let key = id(0b0000_0011);
        assert!(!lost.closer_lost(&key, 0), "nothing lost yet");
        lost.lost(SECS, id(0b1000_0000));
        assert!(
            !lost.closer_lost(&key, 2 * SECS),
            "a farther loss says nothing"
        );
        lost.lost(SECS, id(0b0000_0010));
        assert!(lost.closer_lost(&key, 2 * SECS));
        lost.found(&id(0b0000_0010));
        assert!(!lost.closer_lost(&key, 2 * SECS), "linked again");
    }

    #[test]
    fn a_loss_is_forgotten_after_the_window() {
        let mut lost = LostSupernodes::new(id(0));
        let key = id(3);
        lost.lost(SECS, id(2));
        assert!(lost.closer_lost(&key, SECS + LOST_WINDOW - 1));
        assert!(!lost.closer_lost(&key, SECS + LOST_WINDOW));
        lost.expire(SECS + LOST_WINDOW);
        assert_eq!(lost.len(), 0);
    }

    #[test]
    fn the_memory_keeps_only_the_lost_supernodes_closest_to_us() {
        let mut lost = LostSupernodes::new(id(0));
        for first in (1..=200u8).rev() {
            lost.lost(SECS, id(first));
        }
        assert_eq!(lost.len(), LOST_KEPT);
        // The closest ones stay: a key next to us still sees them.
        assert!(lost.closer_lost(&id(3), 2 * SECS));
        // The farthest were evicted: nothing lost is closer to id(200)
        // than id(200)'s own neighbours that we forgot.
        assert!(!lost.by_distance.values().any(|(sn, _)| *sn == id(200)));
    }
}
