//! Hop-by-hop routing at a supernode: DESIGN.md's steps for a packet not
//! addressed to this node, the location hop, the location cache, the
//! packets held while a location lookup runs, and the duplicate window.
//!
//! [`Router::route`] decides where a packet goes and returns the decision
//! as a [`Route`]; the `Node` facade enacts it (forwards, delivers at home,
//! looks the destination up, or answers "not found").
//!
//! # Implementation notes
//! Deciding is split in two, [`Router::route`] (steps 1-3) and
//! [`Router::onward`] (steps 4-5), because a lookup sits between them: a
//! supernode holds its own client's packet to an unknown location while it
//! asks the recipient's home supernodes (wave 1's lesson: ON -> SN -> SN ->
//! ON is three hops), and sends it on by steps 4-5 when it cannot hold it.

use std::collections::BTreeMap;

use skyhop_protocol::recent::RecentIds;
use skyhop_protocol::{
    Body, LocationHop, Message, MsgId, NodeId, NotFoundReason, Packet, StaleLocation,
};

use super::context::Ctx;
use super::directory::{Directory, LocationCache};
use super::links::Links;
use super::supernode::Supernode;
use super::table::NeighborTable;
use super::timers::Timer;
use super::SimTime;

/// Packets held for location lookups at most, in all and per destination.
const MAX_HELD_PACKETS: usize = 4096;
const MAX_HELD_PER_DST: usize = 32;

/// Where a packet goes next.
#[derive(Debug)]
pub(crate) enum Route {
    /// To this linked neighbor.
    Forward(NodeId, Packet),
    /// This supernode is the closest to a home-bound packet's destination.
    AtHome(Packet),
    /// Our own client's packet to an unknown location: look the location
    /// up, and hold the packet if possible.
    LookUp(Packet),
    /// Nowhere: answer not-found with this reason.
    Undeliverable(Packet, NotFoundReason),
}

/// What routing reads of the rest of the node.
pub(crate) struct RouteView<'a> {
    /// Open links.
    pub links: &'a Links,
    /// The neighbor table.
    pub table: &'a NeighborTable,
    /// This supernode's clients.
    pub supernode: &'a Supernode,
    /// Records held as a home supernode.
    pub directory: &'a Directory,
}

/// A packet held for a lookup: when, from whom, and the packet.
type Held = (SimTime, Option<NodeId>, Packet);

/// The routing state.
#[derive(Debug)]
pub(crate) struct Router {
    /// Packets seen, by [`packet_key`].
    seen: RecentIds<u64>,
    /// Where other supernodes' clients are attached, learned from replies.
    cache: LocationCache,
    /// Packets held for a lookup, by destination, oldest first.
    held: BTreeMap<NodeId, Vec<Held>>,
    /// Packets held in all.
    held_count: usize,
}

impl Router {
    /// An empty router with the given window and cache bounds.
    pub fn new(dedup_window: usize, cache_size: usize, cache_ttl: SimTime) -> Router {
        Router {
            seen: RecentIds::new(dedup_window),
            cache: LocationCache::new(cache_size, cache_ttl),
            held: BTreeMap::new(),
            held_count: 0,
        }
    }

    /// Records packet `id` from `src` in routing phase `location`; false
    /// if it was seen already in that phase.
    ///
    /// A packet may pass a node once per phase: routed by XOR distance
    /// toward its destination's home, then toward the supernode a record
    /// names, it can cross the same supernode on each leg (a home answering
    /// an ordinary node's query sends its reply so). Within one phase every
    /// hop is strictly closer to the phase's target, so a second sight in
    /// the same phase is a duplicate frame or a loop.
    pub fn first_sight(&mut self, src: &NodeId, id: MsgId, location: &LocationHop) -> bool {
        let phase = match location {
            LocationHop::Unused => 0,
            LocationHop::Toward(_) => 0x5bd1_e995_5bd1_e995,
            LocationHop::Used => 0xc2b2_ae3d_27d4_eb4f,
        };
        self.seen.insert(packet_key(src, id) ^ phase)
    }

    /// The location cache.
    pub fn cache(&self) -> &LocationCache {
        &self.cache
    }

    /// The location cache, to learn or forget.
    pub fn cache_mut(&mut self) -> &mut LocationCache {
        &mut self.cache
    }

    /// Routing steps 1-3 of DESIGN.md for packet `p` from `from` (`None`:
    /// originated here), then 4-5 unless a lookup comes first.
    pub fn route(
        &self,
        ctx: &mut Ctx,
        view: &RouteView<'_>,
        now: SimTime,
        from: Option<NodeId>,
        mut p: Packet,
    ) -> Route {
        if is_home_bound(&p.body) {
            return match view.table.next_hop(&p.dst) {
                Some(next) => Route::Forward(next.id, p),
                None => Route::AtHome(p),
            };
        }
        // On the way to the supernode a location record named.
        if let LocationHop::Toward(sn) = p.location {
            if sn != ctx.id {
                if let Some(next) = hop_toward(view, &sn) {
                    return Route::Forward(next, p);
                }
            } else if !view.supernode.is_client(&p.dst) {
                if let Some(prev) = from {
                    ctx.out
                        .send(prev, Message::StaleLocation(StaleLocation { node: p.dst }));
                }
            }
            p.location = LocationHop::Used;
        }
        // Step 2: an attached client.
        if view.supernode.is_client(&p.dst) {
            return Route::Forward(p.dst, p);
        }
        // Step 3: a known location, once per packet; a home supernode's own
        // record is authoritative and may send a packet on again, unless the
        // packet just came from the supernode that record names.
        let located = match p.location {
            LocationHop::Unused => self.location_of(view.directory, &p.dst, now),
            _ => view
                .directory
                .get(&p.dst, now)
                .map(|r| r.sn)
                .filter(|sn| Some(*sn) != from),
        };
        if let Some(sn) = located.filter(|sn| *sn != ctx.id) {
            if let Some(next) = hop_toward(view, &sn) {
                p.location = LocationHop::Toward(sn);
                return Route::Forward(next, p);
            }
        }
        if located.is_none()
            && p.location == LocationHop::Unused
            && from.is_some_and(|f| f == p.src)
            && view.supernode.is_client(&p.src)
        {
            return Route::LookUp(p);
        }
        self.onward(ctx, view, now, p, located)
    }

    /// Routing steps 4 and 5: the neighbor closer to the destination, or
    /// not-found here. `located` is the supernode step 3 found, if any.
    pub fn onward(
        &self,
        ctx: &Ctx,
        view: &RouteView<'_>,
        now: SimTime,
        p: Packet,
        located: Option<NodeId>,
    ) -> Route {
        match view.table.next_hop(&p.dst) {
            Some(next) => Route::Forward(next.id, p),
            None => {
                let reason = if view.directory.departed(&p.dst, now) {
                    NotFoundReason::Offline
                } else if located.is_some_and(|sn| sn != ctx.id) {
                    // We hold a record, but its supernode is unreachable
                    // (it just failed; the client is reattaching): a
                    // transient answer, not "no such node".
                    NotFoundReason::NoRoute
                } else {
                    NotFoundReason::NoRecord
                };
                Route::Undeliverable(p, reason)
            }
        }
    }

    fn location_of(&self, directory: &Directory, dst: &NodeId, now: SimTime) -> Option<NodeId> {
        directory
            .get(dst, now)
            .map(|r| r.sn)
            .or_else(|| self.cache.get(dst, now))
    }

    /// Whether another packet for `dst` may be held.
    pub fn can_hold(&self, dst: &NodeId) -> bool {
        self.held_count < MAX_HELD_PACKETS
            && self
                .held
                .get(dst)
                .is_none_or(|v| v.len() < MAX_HELD_PER_DST)
    }

    /// Holds `p` until its lookup is answered or `lookup_hold` passes.
    pub fn hold(&mut self, ctx: &mut Ctx, now: SimTime, from: Option<NodeId>, p: Packet) {
        self.held.entry(p.dst).or_default().push((now, from, p));
        self.held_count += 1;
        ctx.timers
            .set_earliest(Timer::Lookup, now + ctx.cfg.lookup_hold);
    }

    /// Takes the packets held for `dst`, oldest first, with their senders.
    pub fn release(&mut self, dst: &NodeId) -> Vec<(Option<NodeId>, Packet)> {
        let Some(packets) = self.held.remove(dst) else {
            return Vec::new();
        };
        self.held_count -= packets.len();
        packets.into_iter().map(|(_, from, p)| (from, p)).collect()
    }

    /// Destinations whose oldest held packet has waited `hold` by `now`.
    pub fn overdue(&self, now: SimTime, hold: SimTime) -> Vec<NodeId> {
        self.held
            .iter()
            .filter(|(_, v)| v.first().is_some_and(|(at, _, _)| at + hold <= now))
            .map(|(dst, _)| *dst)
            .collect()
    }

    /// Re-arms the lookup timer for the oldest packet still held.
    pub fn rearm(&self, ctx: &mut Ctx, now: SimTime) {
        let hold = ctx.cfg.lookup_hold;
        if let Some(at) = self
            .held
            .values()
            .filter_map(|v| v.first().map(|(at, _, _)| at + hold))
            .min()
        {
            ctx.timers.set(Timer::Lookup, at.max(now + 1));
        }
    }
}

/// Publishes, withdrawals and queries travel to the home supernodes of
/// their destination by XOR distance alone.
fn is_home_bound(body: &Body) -> bool {
    matches!(
        body,
        Body::Publish(_) | Body::Withdraw(_) | Body::LocationQuery { .. }
    )
}

/// The neighbor to send a packet to on its way to supernode `sn`.
fn hop_toward(view: &RouteView<'_>, sn: &NodeId) -> Option<NodeId> {
    if view.links.is_supernode(sn) {
        return Some(*sn);
    }
    view.table.next_hop(sn).map(|e| e.id)
}

/// The duplicate-window key of packet `id` from `src`: 8 bytes instead of
/// 40. Ids are SHA-256 outputs, so their first word is uniform, and the
/// packet id is random; two live packets collide with probability 2^-64,
/// the same odds as two random packet ids from one source.
fn packet_key(src: &NodeId, id: MsgId) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&src.0[..8]);
    u64::from_be_bytes(word) ^ id.0.wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_packet_passes_a_node_once_per_routing_phase() {
        let mut r = Router::new(64, 16, 1_000_000);
        let (src, id) = (NodeId([7; 32]), MsgId(42));
        let toward = LocationHop::Toward(NodeId([9; 32]));
        assert!(r.first_sight(&src, id, &LocationHop::Unused));
        assert!(
            !r.first_sight(&src, id, &LocationHop::Unused),
            "twice on the XOR leg: a duplicate"
        );
        assert!(
            r.first_sight(&src, id, &toward),
            "again on the leg toward its supernode: a new leg"
        );
        assert!(!r.first_sight(&src, id, &toward));
        assert!(r.first_sight(&src, id, &LocationHop::Used));
        assert!(!r.first_sight(&src, id, &LocationHop::Used));
        assert!(r.first_sight(&src, MsgId(43), &LocationHop::Unused));
    }
}
