//! The names workload (`[names]` in a scenario): users claim names, some
//! claim a name another user already holds, users look each other up by
//! name, and the scenario's churn takes some down and brings them back.
//! It measures lookups answered with the right holder, claims refused as
//! taken (first come, first served must hold: a name is never held by two
//! keys), and the claims each supernode stores.
//!
//! # Implementation notes
//! Names are given out when the world is built, in slot order, from the
//! names stream of the world RNG, so that a scenario without `[names]`
//! draws nothing and stays byte-identical. A contested name is the name of
//! an earlier named user, given to a later one; which of the two claims
//! first is up to their start times, and the loser must be refused. The
//! holder a lookup should find is the first node its homes told "held"
//! (the `NameClaimed` event).

use std::collections::BTreeMap;

use rand::rngs::Xoshiro256PlusPlus;
use rand::RngExt;
use serde::{Deserialize, Serialize};
use skyhop_core::SimTime;
use skyhop_protocol::NodeId;

use super::dist::{self, secs};
use super::metrics::Summary;

/// The RNG stream of the names workload (after those of `dist::stream`).
const NAMES_STREAM: u64 = 6;

/// `[names]`: who claims a name and how often names are looked up.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamesConfig {
    /// Share of the initial ordinary users that claim a name.
    pub named: f64,
    /// Share of the named users whose name is one an earlier named user
    /// also claims (only one of the two may hold it).
    #[serde(default)]
    pub contested: f64,
    /// Name lookups a minute, by random live users, of names someone holds.
    pub lookups_per_min: f64,
    /// Seconds after the start before the first lookup.
    #[serde(default)]
    pub lookups_from_s: f64,
}

/// What the names workload measured.
#[derive(Clone, Debug, Default, Serialize)]
pub struct NameMetrics {
    /// Users given a name (contested ones included).
    pub named_users: u64,
    /// Of those, users given a name an earlier user also has.
    pub contested_users: u64,
    /// Distinct names some node was told it holds.
    pub names_held: u64,
    /// Distinct (user, name) claims refused as taken.
    pub claims_refused: u64,
    /// Names two different keys were each told they hold: first come,
    /// first served broken (must be 0).
    pub held_by_two: u64,
    /// Lookups made.
    pub lookups: u64,
    /// Answered with the node that holds the name.
    pub lookups_right: u64,
    /// Answered with another node.
    pub lookups_wrong: u64,
    /// Answered "nobody holds it".
    pub lookups_not_found: u64,
    /// Not answered (by the end of the run, or refused at the asker).
    pub lookups_unanswered: u64,
    /// Of the lookups, those of a name whose holder was down at the time.
    pub lookups_holder_down: u64,
    /// `lookups_right / lookups`.
    pub answered_ratio: f64,
    /// Lookup time, milliseconds (right answers).
    pub lookup_ms: Summary,
    /// The most claims one supernode held at a sample.
    pub claims_per_sn_max: u64,
    /// Claims held over every live supernode at the end (about 3 per name
    /// held).
    pub claims_at_end: u64,
    /// Live supernodes at the end.
    pub supernodes_at_end: u64,
}

/// A lookup in flight.
struct Lookup {
    /// The name.
    name: String,
    /// When it was asked.
    at: SimTime,
}

/// The names workload's state and measurements.
pub struct Names {
    cfg: Option<NamesConfig>,
    rng: Xoshiro256PlusPlus,
    /// Each named slot's name.
    name_of: BTreeMap<u32, String>,
    /// Names given out so far, in order (for contested picks).
    given: Vec<String>,
    /// Each held name's first holder.
    holder: BTreeMap<String, NodeId>,
    /// Held names, in the order first held (for lookup picks).
    held: Vec<String>,
    /// Lookups in flight by (asker slot, request id).
    lookups: BTreeMap<(u32, u64), Lookup>,
    /// Refused (slot, name) pairs.
    refused: BTreeMap<u32, String>,
    m: NameMetrics,
    latencies: Vec<f64>,
}

impl Names {
    /// The workload of `cfg` (none: a scenario without `[names]`).
    pub fn new(cfg: Option<NamesConfig>, seed: u64) -> Names {
        Names {
            cfg,
            rng: dist::stream_rng(seed, NAMES_STREAM),
            name_of: BTreeMap::new(),
            given: Vec::new(),
            holder: BTreeMap::new(),
            held: Vec::new(),
            lookups: BTreeMap::new(),
            refused: BTreeMap::new(),
            m: NameMetrics::default(),
            latencies: Vec::new(),
        }
    }

    /// The name an initial ordinary `slot` claims, if any.
    pub fn name_for(&mut self, slot: u32) -> Option<String> {
        let cfg = self.cfg.as_ref()?;
        if self.rng.random::<f64>() >= cfg.named {
            return None;
        }
        let contested = !self.given.is_empty() && self.rng.random::<f64>() < cfg.contested;
        let name = if contested {
            self.m.contested_users += 1;
            let pick = self.rng.random_range(0..self.given.len());
            self.given[pick].clone()
        } else {
            let name = format!("user{}", self.given.len());
            self.given.push(name.clone());
            name
        };
        self.m.named_users += 1;
        self.name_of.insert(slot, name.clone());
        Some(name)
    }

    /// When the first lookup is due, if lookups are made.
    pub fn first_lookup(&self) -> Option<SimTime> {
        let cfg = self.cfg.as_ref()?;
        (cfg.lookups_per_min > 0.0).then(|| secs(cfg.lookups_from_s))
    }

    /// The time to the next lookup after this one.
    fn gap(&mut self) -> SimTime {
        let per_min = self.cfg.as_ref().map_or(0.0, |c| c.lookups_per_min);
        let mean_s = 60.0 / per_min;
        let u = 1.0 - self.rng.random::<f64>();
        secs(-mean_s * u.ln())
    }

    /// Picks the next lookup: a held name to look up, and the time to the
    /// one after; `None` for the name while nobody holds any.
    pub fn next_lookup(&mut self) -> (Option<String>, SimTime) {
        let gap = self.gap();
        if self.held.is_empty() {
            return (None, gap);
        }
        let pick = self.rng.random_range(0..self.held.len());
        (Some(self.held[pick].clone()), gap)
    }

    /// Picks which of `users` asks: an `attached` one, in a few draws.
    pub fn pick_asker(&mut self, users: &[u32], attached: impl Fn(u32) -> bool) -> Option<u32> {
        if users.is_empty() {
            return None;
        }
        (0..8)
            .map(|_| users[self.rng.random_range(0..users.len())])
            .find(|s| attached(*s))
    }

    /// The holder of `name` as first told.
    pub fn holder(&self, name: &str) -> Option<NodeId> {
        self.holder.get(name).copied()
    }

    /// `asker` started lookup `request_id` of `name` at `now`.
    pub fn asked(&mut self, asker: u32, request_id: u64, name: String, now: SimTime, down: bool) {
        self.m.lookups += 1;
        self.m.lookups_holder_down += u64::from(down);
        let lookup = Lookup { name, at: now };
        self.lookups.insert((asker, request_id), lookup);
    }

    /// A lookup could not be made.
    pub fn not_asked(&mut self) {
        self.m.lookups += 1;
        self.m.lookups_unanswered += 1;
    }

    /// `slot` (node `id`) was told it holds `name`.
    pub fn claimed(&mut self, id: NodeId, name: String) {
        match self.holder.get(&name) {
            None => {
                self.holder.insert(name.clone(), id);
                self.held.push(name);
                self.m.names_held += 1;
            }
            Some(first) if *first != id => self.m.held_by_two += 1,
            Some(_) => {}
        }
    }

    /// `slot` was told `name` is taken.
    pub fn taken(&mut self, slot: u32, name: String) {
        if self.refused.get(&slot) != Some(&name) {
            self.refused.insert(slot, name);
            self.m.claims_refused += 1;
        }
    }

    /// `slot`'s lookup `request_id` was answered at `now` with `holder`.
    pub fn resolved(&mut self, slot: u32, request_id: u64, holder: Option<NodeId>, now: SimTime) {
        let Some(l) = self.lookups.remove(&(slot, request_id)) else {
            return;
        };
        match holder {
            None => self.m.lookups_not_found += 1,
            Some(h) if Some(h) == self.holder(&l.name) => {
                self.m.lookups_right += 1;
                self.latencies
                    .push(now.saturating_sub(l.at) as f64 / 1_000.0);
            }
            Some(_) => self.m.lookups_wrong += 1,
        }
    }

    /// The claims each live supernode holds now.
    pub fn sample_storage(&mut self, held: impl Iterator<Item = usize>) {
        for n in held {
            self.m.claims_per_sn_max = self.m.claims_per_sn_max.max(n as u64);
        }
    }

    /// The measurements, with the claims held at the end; `None` without
    /// `[names]`.
    pub fn finish(mut self, held_at_end: Vec<usize>) -> Option<NameMetrics> {
        self.cfg.as_ref()?;
        self.sample_storage(held_at_end.iter().copied());
        self.m.claims_at_end = held_at_end.iter().map(|n| *n as u64).sum();
        self.m.supernodes_at_end = held_at_end.len() as u64;
        self.m.lookups_unanswered += self.lookups.len() as u64;
        self.m.answered_ratio = if self.m.lookups == 0 {
            1.0
        } else {
            self.m.lookups_right as f64 / self.m.lookups as f64
        };
        self.m.lookup_ms = Summary::of(self.latencies);
        Some(self.m)
    }
}
