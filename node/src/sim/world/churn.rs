//! The world's churn beyond sessions: supernode kills (crashes and
//! graceful leaves), supernodes that hand over before they go, flash
//! crowds and the daily cycle.

use std::collections::BTreeSet;

use skyhop_protocol::{NodeId, Role};

use super::World;
use crate::sim::event::Ev;
use crate::sim::population::Departure;

impl World {
    /// Schedules the flash crowds' newcomers and the daily cycle's first
    /// tick (nothing, and no draw, in a scenario without them).
    pub(super) fn schedule_demand(&mut self) {
        for at in self.demand.crowd_arrivals() {
            let slot = self.new_slot(Role::Ordinary, None);
            self.push(at, Ev::Start { slot });
        }
        if let Some(at) = self.demand.first_tick() {
            self.push(at, Ev::DayTick);
        }
    }

    /// Kill number `index`: a fraction of the live supernodes go at once;
    /// the first `graceful_fraction` of those drawn hand over and leave,
    /// the others crash. The clients of both are orphans until they
    /// reattach.
    pub(super) fn kill_supernodes(&mut self, index: usize) {
        let now = self.now;
        let pick = self.pop.pick_kill(index);
        let graceful = self.cfg.churn.sn_kills[index].graceful_fraction;
        let leaving = ((pick.len() as f64) * graceful).round() as usize;
        let gone: BTreeSet<NodeId> = pick.iter().map(|s| self.pop.id(*s)).collect();
        let mut ons = self.pop.ordinary().to_vec();
        ons.sort_unstable();
        for on in ons {
            let primary = self.pop.node(on).and_then(|n| n.primary());
            if primary.is_some_and(|p| gone.contains(&p)) {
                self.rec.orphaned(on, self.pop.inc(on), now);
            }
        }
        for (i, s) in pick.into_iter().enumerate() {
            if i < leaving {
                self.start_leaving(s);
            } else {
                self.crash(s, Departure::Killed);
            }
        }
        self.inv.topology_changed(now);
    }

    /// A supernode begins to leave gracefully: it drains (the core's
    /// demotion path: clients to their backups, records to the other
    /// homes) and goes when the drain is over.
    pub(super) fn start_leaving(&mut self, slot: u32) {
        let now = self.now;
        let Some(node) = self.pop.node_mut(slot).filter(|n| !n.is_leaving()) else {
            return;
        };
        let until = node.start_leaving(now);
        self.drain(slot);
        let inc = self.pop.inc(slot);
        self.push(until, Ev::LeaveDone { slot, inc });
    }

    /// A leaving supernode's drain is over: where its records went is
    /// checked, then it leaves.
    pub(super) fn leave_done(&mut self, slot: u32, inc: u32) {
        let now = self.now;
        if !self.pop.is_up(slot, inc) {
            return;
        }
        self.handovers.drained(&self.pop, slot, false, now);
        if let Some(node) = self.pop.node_mut(slot) {
            node.leave(now);
        }
        self.drain(slot);
        self.crash(slot, Departure::SupernodeLeft);
        self.inv.topology_changed(now);
    }

    /// The daily cycle's tick: the users missing arrive and the users too
    /// many go, at uniform times within the tick.
    pub(super) fn day_tick(&mut self) {
        let now = self.now;
        let Some(target) = self.demand.target(now) else {
            return;
        };
        let live = self.pop.users().len();
        if live < target {
            for _ in live..target {
                let at = self.demand.within_tick(now);
                let slot = self.new_slot(Role::Ordinary, None);
                self.push(at, Ev::Start { slot });
            }
        } else if live > target {
            let going = self.demand.pick(self.pop.users().to_vec(), live - target);
            for slot in going {
                let at = self.demand.within_tick(now);
                let inc = self.pop.inc(slot);
                self.push(at, Ev::DayLeave { slot, inc });
            }
        }
        let next = now + self.demand.tick();
        self.push(next, Ev::DayTick);
    }

    /// A user picked by the daily cycle goes.
    pub(super) fn day_leave(&mut self, slot: u32, inc: u32) {
        if !self.pop.is_up(slot, inc) {
            return;
        }
        let graceful = self.pop.draw_graceful();
        self.depart(slot, graceful);
    }
}
