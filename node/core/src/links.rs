//! Links and dials: the peers this node has an open link to (with what each
//! said in its `Hello`, when it was last heard and its RTT), the dials in
//! flight, and the peers refused for misbehaving. It decides which links
//! are dead and which to probe on a heartbeat tick; the `Node` facade acts
//! on the decision.

use std::collections::{BTreeMap, BTreeSet};

use skyhop_protocol::{NodeId, Packet, Role};

use super::budget::PeerBudget;
use super::config::NodeConfig;
use super::context::Ctx;
use super::events::Action;
use super::ranked::RankedMap;
use super::small_map::SmallMap;
use super::SimTime;

/// How long a peer that misbehaved or flooded is refused the first time;
/// each further offense doubles it, up to [`MAX_BAN`].
pub(crate) const BAN_FOR: SimTime = 60 * super::SECS;
/// The longest refusal.
pub(crate) const MAX_BAN: SimTime = 60 * 60 * super::SECS;
/// How long an offense is remembered after its refusal ends, so that a
/// peer that comes back and offends again is refused for longer.
const OFFENSE_MEMORY: SimTime = 60 * 60 * super::SECS;
/// Packets kept per link until a probe's ack proves they arrived.
pub(crate) const MAX_UNACKED: usize = 32;
/// Banned peers remembered at most; the one forgotten soonest makes room.
const MAX_BANNED: usize = 1024;

/// One open link.
#[derive(Clone, Debug)]
pub(crate) struct Link {
    /// The role the peer declared in its `Hello`; `None` until it arrives.
    pub role: Option<Role>,
    /// The addresses the peer listens on, from its `Hello`.
    pub addrs: Vec<String>,
    /// When the link opened.
    pub up_since: SimTime,
    /// When a frame last arrived on it.
    pub last_heard: SimTime,
    /// The heartbeat awaiting its ack: nonce and send time.
    pub ping: Option<(u64, SimTime)>,
    /// The last measured round trip.
    pub rtt: Option<SimTime>,
    /// The outstanding probe was overdue once and sent again: one lost
    /// probe or ack (a retransmission under loss) does not close a live
    /// link; a second overdue one does.
    pub probe_resent: bool,
    /// Clients the peer reported serving (supernodes), from its acks.
    pub load: u16,
    /// Clients the peer said it serves at most (a supernode's `Accept`).
    pub capacity: Option<u16>,
    /// Packets forwarded on the link since it went quiet, kept until the
    /// probe sent with them is answered; sent another way if it is not
    /// (boxed: most links never hold any, and 8 bytes ride on every link
    /// of a simulated million nodes where a `Vec` would put 24).
    #[allow(clippy::box_collection)]
    pub unacked: Option<Box<Vec<Packet>>>,
    /// What the peer may still send.
    pub budget: Box<PeerBudget>,
}

/// What a dial in flight is keyed by: the peer's id when known, else the
/// first address dialed.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum DialKey {
    /// A dial to a known node.
    Id(NodeId),
    /// A dial to an address whose node is not known yet.
    Addr(String),
}

/// What a heartbeat tick found.
#[derive(Debug, Default)]
pub(crate) struct HeartbeatTick {
    /// Links to close, with why.
    pub dead: Vec<(NodeId, &'static str)>,
    /// Links to probe now.
    pub ping: Vec<NodeId>,
}

/// The link table.
#[derive(Debug, Default)]
pub(crate) struct Links {
    /// Open links by peer.
    map: SmallMap<NodeId, Link>,
    /// Dials in flight and when each began.
    dials: BTreeMap<DialKey, SimTime>,
    /// Offending peers: offenses so far and refused until when, ranked by
    /// when the offense is forgotten.
    banned: RankedMap<NodeId, (u32, SimTime), SimTime>,
    /// Linked supernodes that said they are leaving the supernode layer
    /// (their signed `Leave`): no record is handed to them. At most one
    /// per link, forgotten with the link.
    leaving: BTreeSet<NodeId>,
}

impl Links {
    /// The link to `peer`.
    pub fn get(&self, peer: &NodeId) -> Option<&Link> {
        self.map.get(peer)
    }

    /// The link to `peer`, to update.
    pub fn get_mut(&mut self, peer: &NodeId) -> Option<&mut Link> {
        self.map.get_mut(peer)
    }

    /// Whether a link to `peer` is open.
    pub fn contains(&self, peer: &NodeId) -> bool {
        self.map.contains_key(peer)
    }

    /// Open links in id order.
    pub fn iter(&self) -> impl Iterator<Item = (&NodeId, &Link)> {
        self.map.iter()
    }

    /// Linked peers in id order.
    pub fn peers(&self) -> impl Iterator<Item = &NodeId> {
        self.map.keys()
    }

    /// Whether `peer` is linked and said it is a supernode.
    pub fn is_supernode(&self, peer: &NodeId) -> bool {
        self.map
            .get(peer)
            .is_some_and(|l| l.role == Some(Role::Supernode))
    }

    /// Dials in flight.
    pub fn dials_in_flight(&self) -> usize {
        self.dials.len()
    }

    /// Opens the link to `peer` unless it is banned (then asks the driver
    /// to close it and returns false).
    pub fn up(&mut self, ctx: &mut Ctx, now: SimTime, peer: NodeId) -> bool {
        self.dials.remove(&DialKey::Id(peer));
        crate::release_if_empty(&mut self.dials);
        if self
            .banned
            .get(&peer)
            .is_some_and(|((_, until), _)| *until > now)
        {
            ctx.out.act(Action::Disconnect {
                peer,
                reason: "banned for misbehaving".into(),
            });
            return false;
        }
        self.leaving.remove(&peer);
        self.map.insert(
            peer,
            Link {
                role: None,
                addrs: Vec::new(),
                up_since: now,
                last_heard: now,
                ping: None,
                probe_resent: false,
                rtt: None,
                load: 0,
                capacity: None,
                unacked: None,
                budget: Box::new(PeerBudget::new(&ctx.cfg.budget, now)),
            },
        );
        true
    }

    /// Closes the link to `peer`; the link, if there was one.
    pub fn remove(&mut self, peer: &NodeId) -> Option<Link> {
        self.leaving.remove(peer);
        self.map.remove(peer)
    }

    /// Forgets every link (the node leaves).
    pub fn clear(&mut self) {
        self.map.clear();
        self.leaving.clear();
    }

    /// Linked `peer` said it is leaving the supernode layer.
    pub fn mark_leaving(&mut self, peer: NodeId) {
        if self.map.contains_key(&peer) {
            self.leaving.insert(peer);
        }
    }

    /// Whether linked `peer` said it is leaving the supernode layer.
    pub fn is_leaving(&self, peer: &NodeId) -> bool {
        self.leaving.contains(peer)
    }

    /// Linked peers that said they are leaving the supernode layer.
    pub fn leaving_count(&self) -> usize {
        self.leaving.len()
    }

    /// Asks the driver to dial, unless the same dial is in flight or too
    /// many are; true if the dial was asked for.
    pub fn dial(
        &mut self,
        ctx: &mut Ctx,
        now: SimTime,
        id: Option<NodeId>,
        addrs: Vec<String>,
    ) -> bool {
        let key = match (id, addrs.first()) {
            (Some(id), _) => DialKey::Id(id),
            (None, Some(a)) => DialKey::Addr(a.clone()),
            (None, None) => return false,
        };
        if self.dials.contains_key(&key) || self.dials.len() >= ctx.cfg.max_pending_dials {
            return false;
        }
        self.dials.insert(key, now);
        ctx.out.act(Action::Dial { id, addrs });
        true
    }

    /// A dial failed: it is no longer in flight.
    pub fn dial_failed(&mut self, id: Option<NodeId>, addrs: &[String]) {
        if let Some(id) = id {
            self.dials.remove(&DialKey::Id(id));
        }
        for a in addrs {
            self.dials.remove(&DialKey::Addr(a.clone()));
        }
        crate::release_if_empty(&mut self.dials);
    }

    /// Forgets dials older than the join timeout: the driver reports every
    /// dial's end, but a lost report must not block the slot forever.
    pub fn expire_dials(&mut self, now: SimTime, timeout: SimTime) {
        self.dials.retain(|_, at| *at + timeout > now);
        crate::release_if_empty(&mut self.dials);
    }

    /// Refuses `peer` for a while: [`BAN_FOR`] the first time, doubling
    /// with each offense remembered, up to [`MAX_BAN`]. Returns how long.
    pub fn ban(&mut self, now: SimTime, peer: NodeId) -> SimTime {
        while self.banned.pop_at_most(now).is_some() {}
        let offenses = self.banned.get(&peer).map_or(0, |((n, _), _)| *n) + 1;
        let refuse_for = refusal_for(offenses);
        if !self.banned.contains_key(&peer) && self.banned.len() >= MAX_BANNED {
            self.banned.pop_lowest();
        }
        let until = now + refuse_for;
        self.banned
            .insert(peer, (offenses, until), until + OFFENSE_MEMORY);
        refuse_for
    }

    /// Whether a packet forwarded to `peer` should carry a probe along: no
    /// probe is outstanding and nothing was heard for `quiet`.
    pub fn wants_probe(&self, peer: &NodeId, now: SimTime, quiet: SimTime) -> bool {
        self.map
            .get(peer)
            .is_some_and(|l| l.ping.is_none() && now.saturating_sub(l.last_heard) >= quiet)
    }

    /// When the probe outstanding on `l` is overdue: three RTTs, at least
    /// `floor`, after it was sent, and as long again once it was sent a
    /// second time. None once anything was heard since it was sent (the
    /// peer is alive; the next heartbeat probes again).
    fn probe_deadline(l: &Link, floor: SimTime) -> Option<SimTime> {
        let (_, sent) = l.ping?;
        if l.last_heard >= sent {
            return None;
        }
        let wait = l.rtt.map_or(floor, |rtt| (3 * rtt).max(floor));
        Some(sent + wait * (1 + u64::from(l.probe_resent)))
    }

    /// Keeps a copy of `p`, forwarded to `peer`, until the probe that goes
    /// with it is answered: when a probe is outstanding or the link has
    /// been quiet for `quiet` (a probe follows).
    pub fn keep_until_acked(&mut self, peer: &NodeId, p: &Packet, now: SimTime, quiet: SimTime) {
        if !self.keeps_copies(peer, now, quiet) {
            return;
        }
        let Some(l) = self.map.get_mut(peer) else {
            return;
        };
        let kept = l.unacked.get_or_insert_with(Box::default);
        if kept.len() < MAX_UNACKED {
            kept.push(p.clone());
        }
    }

    /// Whether a packet forwarded to `peer` now is kept until a probe's ack
    /// (see [`Links::keep_until_acked`]): a probe is out, or the link has
    /// been quiet for `quiet`.
    pub fn keeps_copies(&self, peer: &NodeId, now: SimTime, quiet: SimTime) -> bool {
        self.map
            .get(peer)
            .is_some_and(|l| l.ping.is_some() || now.saturating_sub(l.last_heard) >= quiet)
    }

    /// The earliest time a probe outstanding becomes overdue.
    pub fn next_probe_deadline(&self, floor: SimTime) -> Option<SimTime> {
        self.map
            .values()
            .filter_map(|l| Links::probe_deadline(l, floor))
            .min()
    }

    /// Peers whose probe is overdue at `now` with nothing heard since it
    /// was sent: dead, without waiting for missed heartbeats.
    pub fn unanswered_probes(&self, now: SimTime, floor: SimTime) -> Vec<NodeId> {
        self.map
            .iter()
            .filter(|(_, l)| Links::probe_deadline(l, floor).is_some_and(|at| at <= now))
            .map(|(id, _)| *id)
            .collect()
    }

    /// Linked supernodes other than `primary`: an ordinary node's backups.
    pub fn backups(&self, primary: Option<NodeId>) -> Vec<NodeId> {
        self.map
            .iter()
            .filter(|(id, l)| l.role == Some(Role::Supernode) && Some(**id) != primary)
            .map(|(id, _)| *id)
            .collect()
    }

    /// Which links are dead and which to probe at `now`. `is_client` tells
    /// this supernode's own clients apart: heartbeating us is their job.
    pub fn heartbeat_tick(
        &self,
        cfg: &NodeConfig,
        own: &NodeId,
        now: SimTime,
        is_client: impl Fn(&NodeId) -> bool,
    ) -> HeartbeatTick {
        let mut tick = HeartbeatTick::default();
        for (id, l) in &self.map {
            let interval = if cfg.role == Role::Supernode && l.role == Some(Role::Supernode) {
                cfg.supernode_heartbeat_interval
            } else {
                cfg.heartbeat_interval
            };
            let dead_after = interval * u64::from(cfg.dead_after_missed);
            let silent = now.saturating_sub(l.last_heard);
            if l.role.is_none() && now.saturating_sub(l.up_since) >= cfg.join_timeout {
                tick.dead.push((*id, "no hello"));
            } else if silent >= dead_after {
                tick.dead.push((*id, "heartbeats missed"));
            } else if (silent >= interval / 2 && probes(cfg.role, own, id, l.role))
                || (silent >= interval * 3 / 2 && !is_client(id))
            {
                // The other end probes too once it has heard nothing for a
                // while: traffic may flow one way only. Our own clients are
                // not probed: heartbeating us is their job, and one that
                // stops is gone.
                tick.ping.push(*id);
            }
        }
        tick
    }
}

/// How long a peer is refused for its `offenses`-th offense (counting
/// from 1): [`BAN_FOR`], doubling with each, up to [`MAX_BAN`]. The
/// runtime refuses the peer's IP for as long.
pub fn refusal_for(offenses: u32) -> SimTime {
    BAN_FOR
        .saturating_mul(1 << offenses.saturating_sub(1).min(16))
        .min(MAX_BAN)
}

/// Whether this end of the link to `peer` sends the heartbeats. One end
/// probing is enough: the other hears the probe and the ack proves the way
/// back, so each idle link costs one heartbeat and one ack per interval,
/// not two of each. An ordinary node probes its supernodes (it needs their
/// RTT and load to choose); between equals the lower id probes.
fn probes(own_role: Role, own: &NodeId, peer: &NodeId, peer_role: Option<Role>) -> bool {
    match (own_role, peer_role) {
        (Role::Ordinary, Some(Role::Supernode)) => true,
        (Role::Supernode, Some(Role::Ordinary)) => false,
        _ => own < peer,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_offense_doubles_the_refusal_up_to_the_cap() {
        let mut links = Links::default();
        let peer = NodeId([1; 32]);
        let mut now = 0;
        let mut refusals = Vec::new();
        for _ in 0..10 {
            let refuse_for = links.ban(now, peer);
            refusals.push(refuse_for / super::super::SECS);
            now += refuse_for;
        }
        assert_eq!(
            refusals,
            [60, 120, 240, 480, 960, 1920, 3600, 3600, 3600, 3600]
        );
        // Forgotten an hour after the last refusal ends: back to the start.
        now += OFFENSE_MEMORY + MAX_BAN;
        assert_eq!(links.ban(now, peer), BAN_FOR);
    }
}
