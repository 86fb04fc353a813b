//! Automatic role: when a node set to `auto_role` promotes itself to
//! supernode and when it demotes itself again (DESIGN "Auto role").
//!
//! It decides from what the facade shows it ([`Signals`]) on each
//! heartbeat tick; the facade carries the decision out (leave the primary,
//! relink as a supernode; or drain the clients, hand the records over and
//! relink as an ordinary node).
//!
//! - **Promote** when the node is reachable (the driver says so: not behind
//!   a NAT in the simulator, an address confirmed by a dial-back in the
//!   runtime), has been up for `min_uptime`, and the supernode layer needs
//!   capacity: a supernode redirected its `Join` lately, it has not been
//!   able to attach for a while, or every supernode it is linked to is over
//!   the high watermark. Many nodes see the same need at once, so each
//!   eligible node promotes with a small chance per check: the layer grows
//!   by a few supernodes per check rather than by everyone who saw a
//!   redirect.
//! - **Demote** (only a node that promoted itself) when its own load and
//!   the load of the supernodes it is linked to have stayed under the low
//!   watermark for `demote_after`: the layer has spare capacity to take
//!   its clients. It first drains for `drain`: it accepts no new client,
//!   closes its clients' links (each fails over at once to a backup it
//!   keeps linked) and hands its records to the other home supernodes:
//!   halfway through, to those that answered a probe sent when the drain
//!   began and did not say they are leaving too
//!   ([`super::home::hand_over_homes`]). A departure drains the same way.
//!
//! # Implementation notes
//! Hysteresis against flapping has three parts: the gap between the high
//! and low watermarks, the time a condition must hold (`demote_after`),
//! and `cooldown`, the least time between two role changes. The RNG is
//! drawn only for an eligible node with `auto_role` on, so that a world
//! without auto role draws exactly what it drew before.

use std::collections::BTreeSet;

use rand::RngExt;
use serde::{Deserialize, Serialize};
use skyhop_protocol::{NodeId, Role};

use super::context::Ctx;
use super::{SimTime, SECS};

/// How a node set to auto role decides; part of [`super::NodeConfig`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AutoRoleConfig {
    /// Whether the node picks its role itself (`role` is then its role
    /// at the start).
    pub enabled: bool,
    /// Up this long before it may promote.
    pub min_uptime: SimTime,
    /// How often the role is reconsidered.
    pub check_interval: SimTime,
    /// Chance, in thousandths, that an eligible node promotes at a check.
    /// Every node that sees the need draws, so the layer grows by about
    /// this share of the nodes short of a supernode per check: near
    /// 1/`max_clients`, it adds about the capacity they lack.
    pub promote_per_mille: u32,
    /// Unattached this long counts as a need for capacity.
    pub unattached_need: SimTime,
    /// A redirect (or an accept over the high watermark) this recent
    /// counts as a need for capacity while the primary is that crowded.
    pub redirect_need: SimTime,
    /// Load, in percent of a supernode's capacity, above which it counts
    /// as full.
    pub high_watermark_pct: u32,
    /// Load, in percent, under which a supernode counts as having spare
    /// capacity.
    pub low_watermark_pct: u32,
    /// Spare capacity must last this long before a promoted node demotes.
    pub demote_after: SimTime,
    /// How long a demoting supernode drains before it becomes ordinary.
    pub drain: SimTime,
    /// Least time between two role changes.
    pub cooldown: SimTime,
    /// A demoting supernode must know at least this many other supernodes.
    pub min_neighbors_to_demote: usize,
}

impl AutoRoleConfig {
    /// Whether auto role is off.
    pub fn is_off(&self) -> bool {
        !self.enabled
    }
}

impl Default for AutoRoleConfig {
    fn default() -> AutoRoleConfig {
        AutoRoleConfig {
            enabled: false,
            min_uptime: 20 * SECS,
            check_interval: 5 * SECS,
            promote_per_mille: 4,
            unattached_need: 10 * SECS,
            redirect_need: 60 * SECS,
            high_watermark_pct: 90,
            low_watermark_pct: 30,
            demote_after: 600 * SECS,
            drain: 10 * SECS,
            cooldown: 300 * SECS,
            min_neighbors_to_demote: 4,
        }
    }
}

/// What the node shows the role machine at a check.
#[derive(Clone, Debug, Default)]
pub(crate) struct Signals {
    /// Whether an ordinary node is attached.
    pub attached: bool,
    /// Since when an ordinary node has been unattached.
    pub unattached_since: Option<SimTime>,
    /// When a supernode last redirected this node's `Join`, or accepted it
    /// over the high watermark.
    pub last_crowded: Option<SimTime>,
    /// The primary's load, as (clients, capacity).
    pub primary_load: Option<(u32, u32)>,
    /// Load of each linked supernode that answered a probe, as (clients,
    /// capacity).
    pub supernode_loads: Vec<(u32, u32)>,
    /// A supernode's own clients.
    pub clients: u32,
    /// Supernodes in a supernode's table.
    pub table_len: usize,
}

/// What the node must do about its role.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Nothing.
    Stay,
    /// Become a supernode now.
    Promote,
    /// Stop taking clients, move the clients and records away.
    StartDrain,
    /// The drain is over: become an ordinary node now.
    Demote,
}

/// The role machine's state.
#[derive(Debug, Default)]
pub(crate) struct RoleControl {
    /// Whether others can dial this node (set by the driver).
    reachable: bool,
    /// When this node started or last changed role.
    since: SimTime,
    /// Whether this node promoted itself (only those demote).
    promoted: bool,
    /// Since when a promoted supernode has had spare capacity around it.
    spare_since: Option<SimTime>,
    /// When the drain of a demoting supernode ends.
    drain_until: Option<SimTime>,
    /// When the role is next reconsidered.
    next_check: SimTime,
    /// Promotions so far.
    promotions: u64,
    /// Demotions so far.
    demotions: u64,
    /// Whether the node is handing over to leave: no role change any more.
    leaving: bool,
    /// The drain under way, or the last one (boxed: most nodes never
    /// drain).
    drain: Option<Box<Drain>>,
}

/// A drain: who may take the records, and what was handed over.
#[derive(Debug, Default)]
struct Drain {
    /// When it began; the linked supernodes were probed then.
    started: SimTime,
    /// When the records are to be handed over; `None` once they were.
    hand_over_at: Option<SimTime>,
    /// Supernodes that answered a probe sent since the drain began: alive
    /// within the drain (at most one per link).
    answered: BTreeSet<NodeId>,
    /// The records (node, its supernode) handed to other homes; at most
    /// the directory's size.
    handed_over: Vec<(NodeId, NodeId)>,
}

impl RoleControl {
    /// The machine of a node started at `now`.
    pub fn new(now: SimTime) -> RoleControl {
        RoleControl {
            since: now,
            next_check: now,
            ..RoleControl::default()
        }
    }

    /// Whether others can dial this node.
    pub fn reachable(&self) -> bool {
        self.reachable
    }

    /// The driver found out whether others can dial this node.
    pub fn set_reachable(&mut self, reachable: bool) {
        self.reachable = reachable;
    }

    /// Promotions and demotions so far.
    pub fn changes(&self) -> (u64, u64) {
        (self.promotions, self.demotions)
    }

    /// Reconsiders the role at `now`, if a check is due.
    pub fn decide(&mut self, ctx: &mut Ctx, now: SimTime, s: &Signals) -> Decision {
        let auto = &ctx.cfg.auto_role;
        if !auto.enabled || self.leaving {
            return Decision::Stay;
        }
        if let Some(until) = self.drain_until {
            return if now >= until {
                Decision::Demote
            } else {
                Decision::Stay
            };
        }
        if now < self.next_check {
            return Decision::Stay;
        }
        self.next_check = now + auto.check_interval;
        let settled = now >= self.since + auto.cooldown;
        match ctx.cfg.role {
            Role::Ordinary => {
                let up_long_enough = now >= self.since + auto.min_uptime
                    && (self.promotions + self.demotions == 0 || settled);
                if !self.reachable || !up_long_enough {
                    return Decision::Stay;
                }
                let chance = promotion_chance(auto, ctx.cfg.max_clients, now, s);
                if chance == 0 {
                    return Decision::Stay;
                }
                if ctx.rng.random_range(0..PPM) < chance {
                    Decision::Promote
                } else {
                    Decision::Stay
                }
            }
            Role::Supernode => {
                if !self.promoted || !settled {
                    self.spare_since = None;
                    return Decision::Stay;
                }
                if !has_spare_capacity(auto, ctx.cfg.max_clients, s) {
                    self.spare_since = None;
                    return Decision::Stay;
                }
                let since = *self.spare_since.get_or_insert(now);
                if now >= since + auto.demote_after {
                    self.drain_until = Some(now + auto.drain);
                    Decision::StartDrain
                } else {
                    Decision::Stay
                }
            }
        }
    }

    /// The node became a supernode at `now`.
    pub fn promoted(&mut self, now: SimTime) {
        self.promoted = true;
        self.promotions += 1;
        self.since = now;
        self.spare_since = None;
        self.next_check = now;
    }

    /// The node hands its clients and records over to leave the overlay:
    /// it changes role no more.
    pub fn leaving(&mut self) {
        self.leaving = true;
    }

    /// Whether the node is handing over to leave.
    pub fn is_leaving(&self) -> bool {
        self.leaving
    }

    /// The records handed over at the last drain.
    pub fn handed_over(&self) -> &[(NodeId, NodeId)] {
        self.drain.as_ref().map_or(&[], |d| &d.handed_over)
    }

    /// A drain begins at `now` (for a demotion or a departure); the records
    /// are handed over at `hand_over_at`, to the supernodes that answer
    /// the probes sent now. Replaces the last drain.
    pub fn drain_started(&mut self, now: SimTime, hand_over_at: SimTime) {
        self.drain = Some(Box::new(Drain {
            started: now,
            hand_over_at: Some(hand_over_at),
            ..Drain::default()
        }));
    }

    /// Whether the node is draining: its clients and records are moving
    /// away, for a demotion or a departure.
    pub fn is_draining(&self) -> bool {
        self.drain.is_some() && (self.leaving || self.drain_until.is_some())
    }

    /// Supernode `peer` answered a probe sent at `sent`.
    pub fn answered(&mut self, peer: NodeId, sent: SimTime) {
        let draining = self.is_draining();
        if let Some(d) = self
            .drain
            .as_mut()
            .filter(|d| draining && sent >= d.started)
        {
            d.answered.insert(peer);
        }
    }

    /// Whether `peer` answered a probe since the drain began.
    pub fn answered_since_drain(&self, peer: &NodeId) -> bool {
        self.drain
            .as_ref()
            .is_some_and(|d| d.answered.contains(peer))
    }

    /// Whether the drain's records are due to be handed over at `now` (or
    /// at once, with `now` = `SimTime::MAX`): true once, and the caller
    /// hands them over.
    pub fn take_hand_over(&mut self, now: SimTime) -> bool {
        if !self.is_draining() {
            return false;
        }
        let Some(d) = self.drain.as_mut() else {
            return false;
        };
        match d.hand_over_at {
            Some(at) if at <= now => {
                d.hand_over_at = None;
                true
            }
            _ => false,
        }
    }

    /// Whether the node is draining and has handed its records over: what
    /// reaches it now is to be passed on.
    pub fn has_handed_over(&self) -> bool {
        self.is_draining()
            && self
                .drain
                .as_ref()
                .is_some_and(|d| d.hand_over_at.is_none())
    }

    /// The records handed over at this drain.
    pub fn set_handed_over(&mut self, records: Vec<(NodeId, NodeId)>) {
        if let Some(d) = self.drain.as_mut() {
            d.handed_over = records;
        }
    }

    /// The node became an ordinary node again at `now`.
    pub fn demoted(&mut self, now: SimTime) {
        self.promoted = false;
        self.demotions += 1;
        self.since = now;
        self.drain_until = None;
        self.spare_since = None;
        self.next_check = now;
        if let Some(d) = self.drain.as_mut() {
            d.answered = BTreeSet::new();
        }
    }
}

/// The chance, in millionths, that an ordinary node promotes at a check:
/// zero unless it sees the supernode layer short of capacity.
///
/// - It has not been able to attach for a while: `promote_per_mille`.
/// - Its primary reports more demand than room (it is turning people
///   away): the excess spread over the primary's clients, so that among
///   them about excess / `max_clients` promote per check, about the
///   capacity missing, however many clients see it; at most
///   `promote_per_mille` (a turned-away node retrying counts more than
///   once in the demand).
/// - A supernode turned it away or took it in over the high watermark
///   lately, and its primary is still that crowded: `promote_per_mille`.
fn promotion_chance(auto: &AutoRoleConfig, max_clients: usize, now: SimTime, s: &Signals) -> u64 {
    let base = u64::from(auto.promote_per_mille) * 1000;
    let stranded = !s.attached
        && s.unattached_since
            .is_some_and(|t| now >= t.saturating_add(auto.unattached_need));
    if stranded {
        return base;
    }
    if let Some((demand, cap)) = s.primary_load {
        if demand > cap {
            let excess = u64::from(demand - cap);
            let spread = u64::from(cap).max(1) * (max_clients as u64).max(1);
            return (PPM * excess / spread).clamp(1, base.max(1));
        }
    }
    let crowded_lately = s
        .last_crowded
        .is_some_and(|t| now < t.saturating_add(auto.redirect_need));
    let crowded_now = s
        .primary_load
        .is_none_or(|(load, cap)| over(load, cap, auto.high_watermark_pct));
    if crowded_lately && crowded_now {
        base
    } else {
        0
    }
}

/// One in a million.
const PPM: u64 = 1_000_000;

/// Whether a supernode and the supernodes around it have room to spare.
fn has_spare_capacity(auto: &AutoRoleConfig, max_clients: usize, s: &Signals) -> bool {
    let cap = u32::try_from(max_clients).unwrap_or(u32::MAX);
    if s.table_len < auto.min_neighbors_to_demote || over(s.clients, cap, auto.low_watermark_pct) {
        return false;
    }
    let (load, capacity) = s
        .supernode_loads
        .iter()
        .fold((0u64, 0u64), |(l, c), (load, cap)| {
            (l + u64::from(*load), c + u64::from(*cap))
        });
    // The others must be able to take this node's clients and stay under
    // the low watermark.
    capacity > 0
        && (load + u64::from(s.clients)) * 100 < capacity * u64::from(auto.low_watermark_pct)
}

/// Whether `load` is at or over `pct` percent of `cap`.
fn over(load: u32, cap: u32, pct: u32) -> bool {
    u64::from(load) * 100 >= u64::from(cap) * u64::from(pct)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auto() -> AutoRoleConfig {
        AutoRoleConfig {
            enabled: true,
            ..AutoRoleConfig::default()
        }
    }

    fn needs_capacity(a: &AutoRoleConfig, now: SimTime, s: &Signals) -> bool {
        promotion_chance(a, 256, now, s) > 0
    }

    #[test]
    fn a_long_wait_to_attach_is_a_need_for_capacity() {
        let a = auto();
        let now = 1000 * SECS;
        let mut s = Signals {
            unattached_since: Some(now - 5 * SECS),
            ..Signals::default()
        };
        assert!(!needs_capacity(&a, now, &s), "not waited long enough");
        s.unattached_since = Some(now - 11 * SECS);
        assert!(needs_capacity(&a, now, &s));
    }

    #[test]
    fn a_recent_redirect_is_a_need_only_while_the_primary_stays_crowded() {
        let a = auto();
        let now = 1000 * SECS;
        let mut s = Signals {
            attached: true,
            last_crowded: Some(now - 30 * SECS),
            primary_load: Some((250, 256)),
            ..Signals::default()
        };
        assert!(needs_capacity(&a, now, &s));
        s.primary_load = Some((10, 256));
        assert!(!needs_capacity(&a, now, &s), "attached where there is room");
        s.primary_load = Some((250, 256));
        s.last_crowded = Some(now - 120 * SECS);
        assert!(!needs_capacity(&a, now, &s), "the redirect is old news");
        s.primary_load = Some((260, 256));
        assert!(needs_capacity(&a, now, &s), "the primary turns people away");
    }

    #[test]
    fn the_clients_of_a_supernode_that_turns_people_away_promote_about_the_capacity_missing() {
        let a = auto();
        let s = |excess: u32| Signals {
            attached: true,
            primary_load: Some((256 + excess, 256)),
            ..Signals::default()
        };
        // Expected promotions per check among the 256 clients.
        let expected = |excess| promotion_chance(&a, 256, 0, &s(excess)) as f64 * 256.0 / 1e6;
        assert!((expected(128) - 0.5).abs() < 0.01, "{}", expected(128));
        assert!((expected(256) - 1.0).abs() < 0.01, "{}", expected(256));
        assert!(expected(10) < 0.05, "{}", expected(10));
        assert!(expected(2560) <= 1.03, "at most promote_per_mille");
    }

    #[test]
    fn spare_capacity_needs_room_for_our_clients_under_the_low_watermark() {
        let a = auto();
        let mut s = Signals {
            clients: 20,
            table_len: 10,
            supernode_loads: vec![(30, 256), (40, 256)],
            ..Signals::default()
        };
        assert!(has_spare_capacity(&a, 256, &s));
        s.clients = 100;
        assert!(!has_spare_capacity(&a, 256, &s), "own load over low mark");
        s.clients = 20;
        s.supernode_loads = vec![(140, 256), (140, 256)];
        assert!(!has_spare_capacity(&a, 256, &s), "neighbors too loaded");
        s.supernode_loads = vec![(30, 256)];
        s.table_len = 2;
        assert!(!has_spare_capacity(&a, 256, &s), "too few supernodes left");
    }
}
