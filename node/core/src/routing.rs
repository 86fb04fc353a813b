//! Hop-by-hop routing at a supernode: DESIGN.md's steps for a packet not
//! addressed to this node, the location hop, the location cache, the
//! packets held while a location lookup runs, and the duplicate window.
//!
//! [`Router::route`] decides where a packet goes and returns the decision
//! as a [`Route`]; the `Node` facade enacts it (forwards, delivers at home,
//! looks the destination up, or answers "not found").
//!
//! An ordinary node routes too, in one step: its first hop. A chat's
//! retries take another first hop than the send before ([`first_hop`]),
//! and [`PrimaryProbe`] checks now and then that the primary relays at
//! all, by sending a chat-class packet to ourselves through it; a primary
//! that twice does not send it back is left for another supernode.
//!
//! # Implementation notes
//! Deciding is split in two, [`Router::route`] (steps 1-3) and
//! [`Router::onward`] (steps 4-5), because a lookup sits between them: a
//! supernode holds its own client's packet to an unknown location while it
//! asks the recipient's home supernodes (wave 1's lesson: ON -> SN -> SN ->
//! ON is three hops), and sends it on by steps 4-5 when it cannot hold it.

use std::collections::BTreeMap;

use rand::RngExt;
use skyhop_protocol::envelope::BodyKind;
use skyhop_protocol::recent::RecentIds;
use skyhop_protocol::{
    Body, LocationHop, Message, MsgId, NodeId, NotFoundReason, Packet, Role, StaleLocation,
};

use super::context::Ctx;
use super::directory::{Directory, LocationCache};
use super::links::Links;
use super::lost::LostSupernodes;
use super::supernode::Supernode;
use super::table::NeighborTable;
use super::timers::Timer;
use super::SimTime;

/// Packets held for location lookups at most, in all and per destination.
const MAX_HELD_PACKETS: usize = 4096;
const MAX_HELD_PER_DST: usize = 32;
/// A probe of the primary that is not back within this is missed.
pub(crate) const PROBE_TIMEOUT: SimTime = 3 * super::SECS;
/// Missed probes in a row after which an ordinary node leaves its primary.
pub(crate) const PROBE_MISSES: u32 = 2;
/// Acks sent again for duplicate chats per second at most.
pub(crate) const MAX_REACKS_PER_S: u32 = 20;

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

/// What routing reads of a packet: its header and its body's kind, which a
/// relay has without decoding the body.
#[derive(Debug)]
pub(crate) struct Head {
    /// The destination.
    pub dst: NodeId,
    /// The originating node.
    pub src: NodeId,
    /// Where the packet is in the location step.
    pub location: LocationHop,
    /// Whether the body travels to its destination's home supernodes by
    /// XOR distance alone (publishes, withdrawals, queries).
    pub home_bound: bool,
}

impl Head {
    /// The head of a decoded packet.
    pub fn of(p: &Packet) -> Head {
        Head {
            dst: p.dst,
            src: p.src,
            location: p.location,
            home_bound: is_home_bound(BodyKind::of(&p.body)),
        }
    }
}

/// Where a packet goes next, without the packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// To this linked neighbor.
    Forward(NodeId),
    /// This supernode is the closest to a home-bound packet's destination.
    AtHome,
    /// Our own client's packet to an unknown location: look it up.
    LookUp,
    /// Nowhere: answer not-found with this reason.
    Undeliverable(NotFoundReason),
}

impl Step {
    /// The step as a [`Route`] carrying `p`.
    fn with(self, p: Packet) -> Route {
        match self {
            Step::Forward(next) => Route::Forward(next, p),
            Step::AtHome => Route::AtHome(p),
            Step::LookUp => Route::LookUp(p),
            Step::Undeliverable(reason) => Route::Undeliverable(p, reason),
        }
    }
}

/// A routing decision: the step, the packet's location hop from here on,
/// and the neighbor to tell that its location record is stale, if any.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Decision {
    /// Where the packet goes.
    pub step: Step,
    /// Its location hop when it leaves (changed by steps 1 and 3).
    pub location: LocationHop,
    /// Send this neighbor `StaleLocation` for the destination.
    pub stale: Option<NodeId>,
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
    /// Supernodes lost lately.
    pub lost: &'a LostSupernodes,
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
    /// An ordinary node's check of its primary.
    probe: PrimaryProbe,
    /// Acks sent again for duplicates so far: each takes the next first
    /// hop in turn.
    detours: u32,
    /// Acks sent again in the current second, and when it began.
    reacks: (u32, SimTime),
}

impl Router {
    /// An empty router with the given window and cache bounds.
    pub fn new(dedup_window: usize, cache_size: usize, cache_ttl: SimTime) -> Router {
        Router {
            seen: RecentIds::new(dedup_window),
            cache: LocationCache::new(cache_size, cache_ttl),
            held: BTreeMap::new(),
            held_count: 0,
            probe: PrimaryProbe::default(),
            detours: 0,
            reacks: (0, 0),
        }
    }

    /// The attempt number for the next ack sent again for a duplicate
    /// chat: never 0, so that it leaves by a backup when there is one;
    /// None past [`MAX_REACKS_PER_S`] in the second of `now`. An honest
    /// sender's lost ack is rare; a replay flood would otherwise make this
    /// node send its supernode an ack per replay, over its own budget.
    pub fn next_detour(&mut self, now: SimTime) -> Option<u32> {
        let (count, since) = &mut self.reacks;
        if now >= *since + super::SECS {
            *count = 0;
            *since = now;
        }
        if *count >= MAX_REACKS_PER_S {
            return None;
        }
        *count += 1;
        self.detours = self.detours.wrapping_add(1).max(1);
        Some(self.detours)
    }

    /// The ordinary node's check of its primary.
    pub fn probe_mut(&mut self) -> &mut PrimaryProbe {
        &mut self.probe
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
        let d = self.decide(ctx.id, view, now, from, &Head::of(&p));
        if let Some(prev) = d.stale {
            ctx.out
                .send(prev, Message::StaleLocation(StaleLocation { node: p.dst }));
        }
        p.location = d.location;
        d.step.with(p)
    }

    /// Routing steps 1-5 from what a packet's header says (and its body's
    /// kind), without the packet: the one decision both [`Router::route`]
    /// and a relay forwarding undecoded frames
    /// ([`crate::Node::handle_routed_frame`]) act on.
    pub fn decide(
        &self,
        me: NodeId,
        view: &RouteView<'_>,
        now: SimTime,
        from: Option<NodeId>,
        head: &Head,
    ) -> Decision {
        let mut d = Decision {
            step: Step::AtHome,
            location: head.location,
            stale: None,
        };
        let dst = &head.dst;
        if head.home_bound {
            if let Some(next) = view.table.next_hop(dst) {
                d.step = Step::Forward(next.id);
            }
            return d;
        }
        // On the way to the supernode a location record named.
        if let LocationHop::Toward(sn) = head.location {
            if sn != me {
                if let Some(next) = hop_toward(view, &sn) {
                    d.step = Step::Forward(next);
                    return d;
                }
            } else if is_backup_of(view, dst) {
                // A retry sent toward us as the recipient's backup.
                d.step = Step::Forward(*dst);
                return d;
            } else if !view.supernode.is_client(dst) {
                d.stale = from;
            }
            d.location = LocationHop::Used;
        }
        // Step 2: an attached client.
        if view.supernode.is_client(dst) {
            d.step = Step::Forward(*dst);
            return d;
        }
        // Step 3: a known location, once per packet; a home supernode's own
        // record is authoritative and may send a packet on again, unless the
        // packet just came from the supernode that record names.
        let located = match d.location {
            LocationHop::Unused => self.location_of(view.directory, dst, now),
            _ => view
                .directory
                .get(dst, now)
                .map(|r| r.sn)
                .filter(|sn| Some(*sn) != from),
        };
        if let Some(sn) = located.filter(|sn| *sn != me) {
            // While supernodes were lost lately (a cut may be near), never
            // back to the hop the packet came from: it may be closer to that
            // supernode than we are and have given up on reaching it, and
            // sending it back would bounce it between us until the duplicate
            // window drops it, unanswered. Otherwise that hop is simply the
            // way to the supernode (it routed by id, knowing no record).
            let bounce = |next: &NodeId| Some(*next) == from && view.lost.any(now);
            if let Some(next) = hop_toward(view, &sn).filter(|next| !bounce(next)) {
                d.location = LocationHop::Toward(sn);
                d.step = Step::Forward(next);
                return d;
            }
        }
        if located.is_none()
            && d.location == LocationHop::Unused
            && from.is_some_and(|f| f == head.src)
            && speaks_for_itself(view, &head.src)
        {
            d.step = Step::LookUp;
            return d;
        }
        d.step = onward_step(me, view, now, dst, located);
        d
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
        onward_step(ctx.id, view, now, &p.dst, located).with(p)
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

/// Whether `src` is an ordinary node linked to us: our client, or a client
/// of another supernode retrying through us as its backup. Either way we
/// look its destination up, so that a retry avoids the path that failed
/// rather than detouring through the recipient's home supernode.
fn speaks_for_itself(view: &RouteView<'_>, src: &NodeId) -> bool {
    view.supernode.is_client(src)
        || view
            .links
            .get(src)
            .is_some_and(|l| l.role == Some(Role::Ordinary))
}

/// Whether `dst` is an ordinary node linked to us without being our
/// client: we are one of its backups, which its record names.
fn is_backup_of(view: &RouteView<'_>, dst: &NodeId) -> bool {
    !view.supernode.is_client(dst)
        && view
            .links
            .get(dst)
            .is_some_and(|l| l.role == Some(Role::Ordinary))
}

/// The first hop of an ordinary node's send number `attempt` (0: the first
/// send) of a packet: the primary first, then each backup in turn, then
/// the primary again, so that a retry never takes the hop that just failed
/// when there is another.
pub(crate) fn first_hop(
    primary: Option<NodeId>,
    backups: &[NodeId],
    attempt: u32,
) -> Option<NodeId> {
    let hops: Vec<NodeId> = primary.into_iter().chain(backups.iter().copied()).collect();
    if hops.is_empty() {
        return None;
    }
    Some(hops[attempt as usize % hops.len()])
}

/// What the primary probe asks the facade to do.
#[derive(Debug, PartialEq)]
pub(crate) enum ProbeStep {
    /// Nothing now.
    Idle,
    /// Send this packet to the primary (it is addressed to ourselves).
    Send(NodeId, Box<Packet>),
    /// The primary missed [`PROBE_MISSES`] probes in a row: leave it.
    Abandon(NodeId),
}

/// An ordinary node's check that its primary relays what it should.
///
/// The probe is a chat acknowledgement from this node to itself: to the
/// primary it is a packet for its own client, indistinguishable by class
/// from the acks and chats it relays all day, so a supernode that drops
/// those drops the probe too, and one that relays them sends it back.
#[derive(Debug, Default)]
pub(crate) struct PrimaryProbe {
    /// The primary being probed.
    primary: Option<NodeId>,
    /// When the next probe is due.
    next_at: SimTime,
    /// The probe in flight: its packet id and when it left.
    in_flight: Option<(MsgId, SimTime)>,
    /// Probes in a row that did not come back.
    missed: u32,
}

impl PrimaryProbe {
    /// Runs at `now` for an ordinary node attached to `primary`: the probe
    /// to send, the primary to leave, or nothing.
    pub fn tick(&mut self, ctx: &mut Ctx, now: SimTime, primary: Option<NodeId>) -> ProbeStep {
        let interval = ctx.cfg.primary_probe_interval;
        if primary != self.primary {
            // A new primary: probe it within half an interval, so that a
            // node that attached to a dropper finds out soon.
            *self = PrimaryProbe {
                primary,
                next_at: now + ctx.rng.random_range(0..=interval / 2),
                ..PrimaryProbe::default()
            };
        }
        let Some(sn) = self.primary else {
            return ProbeStep::Idle;
        };
        if let Some((_, sent)) = self.in_flight {
            if now < sent + PROBE_TIMEOUT {
                return ProbeStep::Idle;
            }
            self.in_flight = None;
            self.missed += 1;
            if self.missed >= PROBE_MISSES {
                *self = PrimaryProbe::default();
                return ProbeStep::Abandon(sn);
            }
            // Missed once: ask again at once rather than in an interval.
            self.next_at = now;
        }
        if now < self.next_at {
            return ProbeStep::Idle;
        }
        let id = MsgId(ctx.rng.random());
        let probe = Packet {
            dst: ctx.id,
            src: ctx.id,
            id,
            ttl: ctx.cfg.ttl.saturating_sub(1),
            hops: 1,
            location: LocationHop::Unused,
            trace: None,
            body: Body::ChatAck(ctx.identity.receipt(ctx.id, MsgId(ctx.rng.random()), 0, 0)),
        };
        self.in_flight = Some((id, now));
        self.next_at = now + interval;
        ProbeStep::Send(sn, Box::new(probe))
    }

    /// Packet `id` from ourselves came back: true if it is the probe in
    /// flight (which is then answered), false if it is not ours to take.
    pub fn returned(&mut self, id: MsgId) -> bool {
        if self.in_flight.is_some_and(|(sent, _)| sent == id) {
            self.in_flight = None;
            self.missed = 0;
            return true;
        }
        false
    }
}

/// Publishes, withdrawals, queries, name claims and chats offered to a
/// mailbox travel to the home supernodes of their destination by XOR
/// distance alone.
pub(crate) fn is_home_bound(kind: BodyKind) -> bool {
    matches!(
        kind,
        BodyKind::Publish
            | BodyKind::Withdraw
            | BodyKind::LocationQuery
            | BodyKind::NameClaim
            | BodyKind::NameQuery
            | BodyKind::MailboxStore
            | BodyKind::ReceiptStore
    )
}

/// Routing steps 4 and 5 for a packet to `dst`: the neighbor closer to it,
/// or not-found here. `located` is the supernode step 3 found, if any.
fn onward_step(
    me: NodeId,
    view: &RouteView<'_>,
    now: SimTime,
    dst: &NodeId,
    located: Option<NodeId>,
) -> Step {
    match view.table.next_hop(dst) {
        Some(next) => Step::Forward(next.id),
        None => Step::Undeliverable(if view.directory.departed(dst, now) {
            NotFoundReason::Offline
        } else if located.is_some_and(|sn| sn != me) || view.lost.closer_lost(dst, now) {
            // We hold a record, but its supernode cannot be routed to (it
            // just failed and the client is reattaching, or it is across a
            // partition); or supernodes closer to the destination, its true
            // homes, were lost lately: out of reach, not "no such node".
            NotFoundReason::Unreachable
        } else {
            NotFoundReason::NoRecord
        }),
    }
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

    fn id(n: u8) -> NodeId {
        NodeId([n; 32])
    }

    #[test]
    fn each_retry_leaves_by_another_first_hop_than_the_send_before() {
        let (p, b) = (Some(id(1)), [id(2), id(3)]);
        let hops: Vec<Option<NodeId>> = (0..6).map(|a| first_hop(p, &b, a)).collect();
        assert_eq!(hops[0], p, "the first send goes to the primary");
        for w in hops.windows(2) {
            assert_ne!(w[0], w[1], "two sends in a row took one hop: {hops:?}");
        }
        assert_eq!(first_hop(p, &[], 3), p, "no backup: the primary again");
        assert_eq!(first_hop(None, &[], 1), None);
    }

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
