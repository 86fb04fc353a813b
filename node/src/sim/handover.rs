//! Records lost in handovers: a supernode that demotes (auto role) or
//! leaves gracefully first drains, handing every record it holds as a home
//! to the next homes. When the drain ends, the simulator checks from its
//! ground truth where those records are.
//!
//! A record is due (it should have moved) when its node is still up and
//! still attached to the supernode the record names, which is not the
//! departing one: a client of the departing supernode moves to another
//! supernode and publishes a new record, which the reattachment figures
//! measure. A due record is lost when none of its homes (the `replicas`
//! closest live supernodes, the departing one left out) holds it.

use serde::Serialize;
use skyhop_protocol::{Distance, NodeId};

use skyhop_core::SimTime;

use super::config::SimConfig;
use super::population::Population;

/// What the handovers of a run did with their records.
#[derive(Clone, Debug, Default, Serialize)]
pub struct HandoverMetrics {
    /// Promoted supernodes that drained and demoted.
    pub demotions: u64,
    /// Supernodes that drained and left.
    pub leaves: u64,
    /// Records the drains handed over.
    pub records_handed: u64,
    /// Of those, still current when the drain ended: they should have
    /// arrived at a new home.
    pub records_due: u64,
    /// Of the due records, on none of their homes: lost.
    pub records_lost: u64,
    /// Of the due records, missing on at least one of their homes.
    pub records_missing_a_home: u64,
}

/// The tally of a run's handovers; see the module doc.
pub struct Handovers {
    /// Whether the run can hand over at all (auto role, or graceful kills);
    /// only then are the figures reported.
    active: bool,
    /// Home supernodes per record.
    replicas: usize,
    /// The figures so far.
    tally: HandoverMetrics,
}

impl Handovers {
    /// The tally of `cfg`'s run.
    pub fn new(cfg: &SimConfig) -> Handovers {
        let graceful_kills = cfg.churn.sn_kills.iter().any(|k| k.graceful_fraction > 0.0);
        Handovers {
            active: cfg.node.auto_role.enabled || graceful_kills,
            replicas: cfg.node.replicas,
            tally: HandoverMetrics::default(),
        }
    }

    /// The supernode of `slot` ends its drain at `now` (to demote, or to
    /// leave): checks the records it handed over.
    pub fn drained(&mut self, pop: &Population, slot: u32, demotion: bool, now: SimTime) {
        let Some(node) = pop.node(slot) else {
            return;
        };
        if demotion {
            self.tally.demotions += 1;
        } else {
            self.tally.leaves += 1;
        }
        let leaver = pop.id(slot);
        // Supernodes that are leaving too are no home.
        let sns: Vec<(NodeId, u32)> = pop
            .supernodes()
            .iter()
            .filter(|s| pop.node(**s).is_some_and(|n| !n.is_leaving()))
            .filter(|s| **s != slot)
            .map(|s| (pop.id(*s), *s))
            .collect();
        let handed = node.handed_over();
        self.tally.records_handed += handed.len() as u64;
        if sns.is_empty() {
            return;
        }
        let replicas = self.replicas.min(sns.len()).max(1);
        for (subject, sn) in handed {
            let current = *sn != leaver
                && pop
                    .slot_of(subject)
                    .and_then(|s| pop.node(s))
                    .is_some_and(|n| n.primary() == Some(*sn));
            if !current {
                continue;
            }
            self.tally.records_due += 1;
            let mut homes: Vec<(Distance, u32)> = sns
                .iter()
                .map(|(id, s)| (id.distance(subject), *s))
                .collect();
            homes.select_nth_unstable(replicas - 1);
            homes.truncate(replicas);
            let holding = homes
                .iter()
                .filter(|(_, s)| {
                    pop.node(*s)
                        .is_some_and(|n| n.holds_record(subject, sn, now))
                })
                .count();
            if holding == 0 {
                self.tally.records_lost += 1;
            }
            if holding < homes.len() {
                self.tally.records_missing_a_home += 1;
            }
        }
    }

    /// The figures, if the run could hand over.
    pub fn report(self) -> Option<HandoverMetrics> {
        self.active.then_some(self.tally)
    }
}
