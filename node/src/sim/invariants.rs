//! The invariants a run checks as it goes, and their tally: no delivered
//! packet took more hops than the TTL; and, at each sample in a steady
//! overlay, no packet ran out of TTL since the previous sample, and a
//! sample of attached ordinary nodes have live location records on their
//! home supernodes: the supernodes closest to them within their connected
//! component, since a partition splits the supernodes into overlays of
//! their own.
//!
//! It reads the population and reports a violation as a message; the world
//! stops the run on the first one. It owns the invariants' RNG stream
//! (which records a sample checks), so its settings never change the run.
//!
//! # Implementation notes
//! The overlay is steady when no supernode started, died or restarted, no
//! storm restart and no partition change happened in the last `settle_s`;
//! the world reports those as topology changes. TTL expiries are counted
//! from each node's core counters: the counts seen at the previous sample
//! are kept per slot, and a node that goes away hands in what it counted
//! since.

use std::collections::BTreeMap;

use rand::rngs::Xoshiro256PlusPlus;
use rand::RngExt;
use skyhop_protocol::{Distance, NodeId};

use skyhop_core::{Counters, DropReason, SimTime, SECS};

use super::config::SimConfig;
use super::dist::{self, secs};
use super::metrics::{CounterTotals, InvariantChecks};
use super::net::Network;
use super::population::Population;

/// The invariant checks of a run; see the module doc.
pub struct Invariants {
    /// How long after a topology change the overlay counts as steady.
    settle: SimTime,
    /// How long an ordinary node must have been attached to be checked.
    record_grace: SimTime,
    /// Ordinary nodes checked per sample at most (0: no record checks).
    record_sample: usize,
    /// Every home supernode must hold the record (else at least one).
    all_replicas: bool,
    /// Home supernodes per record.
    replicas: usize,
    /// Hops a packet may take.
    ttl: u8,
    /// Start of the measurement window; no sample before it is steady.
    warmup: SimTime,
    /// The tally so far.
    checks: InvariantChecks,
    /// The last topology change.
    last_topology: SimTime,
    /// The previous sample.
    prev_sample: SimTime,
    /// Each slot's TTL expiries counted so far (this incarnation).
    ttl_seen: Vec<u64>,
    /// TTL expiries counted over the run.
    ttl_total: u64,
    /// The most hops a delivered packet took.
    max_hops: u8,
    /// The invariants' RNG stream: which records are checked. Its own, so
    /// that the invariant settings never change the run they check.
    rng: Xoshiro256PlusPlus,
}

impl Invariants {
    /// The checks of `cfg`, seeded by the world seed.
    pub fn new(cfg: &SimConfig, seed: u64) -> Invariants {
        let inv = &cfg.invariants;
        Invariants {
            settle: secs(inv.settle_s),
            record_grace: secs(inv.record_grace_s),
            record_sample: inv.record_sample as usize,
            all_replicas: inv.all_replicas,
            replicas: cfg.node.replicas,
            ttl: cfg.node.ttl,
            warmup: secs(cfg.warmup_s),
            checks: InvariantChecks::default(),
            last_topology: 0,
            prev_sample: 0,
            ttl_seen: Vec::new(),
            ttl_total: 0,
            max_hops: 0,
            rng: dist::stream_rng(seed, dist::stream::INVARIANTS),
        }
    }

    /// A slot was added.
    pub fn add_slot(&mut self) {
        self.ttl_seen.push(0);
    }

    /// The overlay changed at `now` (see the module notes).
    pub fn topology_changed(&mut self, now: SimTime) {
        self.last_topology = now;
    }

    /// A node of `slot` started with fresh counters.
    pub fn node_started(&mut self, slot: u32) {
        self.ttl_seen[slot as usize] = 0;
    }

    /// The node of `slot` went away with `counters`.
    pub fn node_gone(&mut self, slot: u32, counters: &Counters) {
        let seen = std::mem::take(&mut self.ttl_seen[slot as usize]);
        self.ttl_total += counters
            .dropped(DropReason::TtlExpired)
            .saturating_sub(seen);
    }

    /// A packet arrived after `hops` hops.
    pub fn hops(&mut self, hops: u8) -> Result<(), String> {
        self.max_hops = self.max_hops.max(hops);
        if hops > self.ttl {
            return Err(format!(
                "a packet took {hops} hops, above the TTL of {}",
                self.ttl
            ));
        }
        Ok(())
    }

    /// The periodic check at `now`: TTL expiries and, in a steady window,
    /// location records (per connected component of `net`). The first
    /// violation found, if any.
    pub fn sample(&mut self, now: SimTime, pop: &Population, net: &Network) -> Result<(), String> {
        // TTL expiries since the last sample.
        let mut delta = 0;
        for (slot, _, node) in pop.running() {
            let c = node.counters().dropped(DropReason::TtlExpired);
            let seen = &mut self.ttl_seen[slot as usize];
            delta += c.saturating_sub(*seen);
            *seen = c;
        }
        let before = self.ttl_total;
        self.ttl_total += delta;
        let steady_since = self.last_topology + self.settle;
        let window_steady = self.prev_sample >= steady_since && self.prev_sample >= self.warmup;
        let mut result = Ok(());
        if window_steady {
            self.checks.steady_samples += 1;
            let expired = self.ttl_total - before;
            if expired > 0 {
                self.checks.ttl_expired_steady += expired;
                result = Err(format!(
                    "{expired} packets ran out of TTL in a steady overlay (no supernode or \
                     partition change since {:.1} s): a routing loop?",
                    self.last_topology as f64 / SECS as f64
                ));
            }
            // Checked even after a TTL violation: the tally counts them.
            let records = self.check_records(now, pop, net);
            result = result.and(records);
        }
        self.prev_sample = now;
        result
    }

    /// Every attached ordinary node (a deterministic sample of them) has a
    /// live record of its primary on its home supernodes, the closest live
    /// ones in its connected component.
    fn check_records(
        &mut self,
        now: SimTime,
        pop: &Population,
        net: &Network,
    ) -> Result<(), String> {
        let want = self.record_sample;
        if want == 0 || pop.supernodes().is_empty() {
            return Ok(());
        }
        let grace = self.record_grace;
        let mut ons: Vec<u32> = pop
            .ordinary()
            .iter()
            .copied()
            .filter(|s| pop.attached_at(*s).is_some_and(|t| t + grace <= now))
            .collect();
        ons.sort_unstable();
        if ons.is_empty() {
            return Ok(());
        }
        let step = ons.len().div_ceil(want).max(1);
        let offset = self.rng.random_range(0..step);
        let components = net.components(now);
        let mut sns_by_component: BTreeMap<u32, Vec<(NodeId, u32)>> = BTreeMap::new();
        for &s in pop.supernodes() {
            let c = net.component_of(&components, s);
            sns_by_component.entry(c).or_default().push((pop.id(s), s));
        }
        for sns in sns_by_component.values_mut() {
            sns.sort_unstable();
        }
        for &on in ons.iter().skip(offset).step_by(step) {
            let on_id = pop.id(on);
            let Some(primary) = pop.node(on).and_then(|n| n.primary()) else {
                continue;
            };
            let Some(sns) = sns_by_component.get(&net.component_of(&components, on)) else {
                // No supernode on its side of a cut: it has no home to check.
                continue;
            };
            let replicas = self.replicas.min(sns.len());
            let mut homes = closest_homes(sns, &on_id, replicas);
            homes.sort_unstable();
            self.checks.records_checked += 1;
            let holding: Vec<bool> = homes
                .iter()
                .map(|(_, s)| {
                    pop.node(*s)
                        .is_some_and(|n| n.holds_record(&on_id, &primary, now))
                })
                .collect();
            let ok = if self.all_replicas {
                holding.iter().all(|h| *h)
            } else {
                holding.iter().any(|h| *h)
            };
            if !ok {
                let attached_at = pop.attached_at(on).unwrap_or(0);
                let missing: Vec<String> = homes
                    .iter()
                    .zip(&holding)
                    .filter(|(_, h)| !**h)
                    .map(|((_, s), _)| pop.id(*s).short())
                    .collect();
                return Err(format!(
                    "ordinary node {} (attached to {} since {:.1} s) has no live record on \
                     home supernode(s) {}",
                    on_id.short(),
                    primary.short(),
                    attached_at as f64 / SECS as f64,
                    missing.join(", ")
                ));
            }
        }
        Ok(())
    }

    /// The tally, with the run's totals of `counters`.
    pub fn report(&self, counters: &CounterTotals) -> InvariantChecks {
        let dropped = |r: DropReason| counters.dropped.get(&r).copied().unwrap_or(0);
        InvariantChecks {
            ttl_expired_total: dropped(DropReason::TtlExpired),
            duplicates_total: dropped(DropReason::Duplicate),
            max_hops_seen: u64::from(self.max_hops),
            ..self.checks.clone()
        }
    }
}

/// The `replicas` supernodes of `sns` (id, slot) closest to `id`, with
/// their distances, in no particular order: a record's true homes.
/// `replicas` must be between 1 and `sns.len()`.
pub(super) fn closest_homes(
    sns: &[(NodeId, u32)],
    id: &NodeId,
    replicas: usize,
) -> Vec<(Distance, u32)> {
    let mut homes: Vec<(Distance, u32)> = sns
        .iter()
        .map(|(s, slot)| (s.distance(id), *slot))
        .collect();
    homes.select_nth_unstable(replicas - 1);
    homes.truncate(replicas);
    homes
}
