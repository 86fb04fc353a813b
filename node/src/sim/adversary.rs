//! Hostile nodes in the simulator: the scenario's `[adversary]` table, who
//! among the initial nodes is hostile, what a hostile node does to the
//! frames it sends, the flood, and the figures that split honest from
//! hostile.
//!
//! Two kinds of hostile node run the same core as everyone else; the world
//! asks this module about every frame they send:
//! - a **dropping supernode** drops every chat and ack it should relay or
//!   deliver (a routed chat or ack whose source is someone else), and with
//!   `forge_not_found` answers its own client's chat with a forged
//!   "not found" (reason no record) instead of staying silent;
//! - a **flooding ordinary node** puts `flood_rate_per_s` routed chats a
//!   second on the link to its primary supernode, whatever its own core
//!   would send: one validly signed chat to one victim, replayed under a
//!   fresh packet id each time, so that every relay must route it and the
//!   victim must check it (the signature memo makes the repeat check cheap,
//!   which keeps the simulation affordable, not the victim's work honest).
//!
//! # Implementation notes
//! - Hostile nodes are drawn among the initial slots from their own RNG
//!   stream, exactly `round(share * count)` of each role, so a scenario
//!   without `[adversary]` draws nothing and runs as before, byte for byte.
//!   Newcomers from churn are honest.
//! - A forged "not found" goes only to a client linked to the liar; for a
//!   chat it relays for someone further away, the liar stays silent (the
//!   world does not know the hop the chat came from when it is sent).
//! - Flooding is one world event per `FLOOD_TICK` for all flooders, not one
//!   per frame; a flooder that has no primary (refused, between
//!   supernodes) sends nothing, like a real one whose socket is closed.

use std::collections::BTreeMap;

use rand::rngs::Xoshiro256PlusPlus;
use rand::RngExt;
use serde::{Deserialize, Serialize};

use skyhop_protocol::{
    seal, Body, LocationHop, Message, MsgId, NodeId, NotFoundReason, Packet, SealedChat,
};

use skyhop_core::{SimTime, MILLIS};

use super::config::SimConfig;
use super::dist::{self, secs};
use super::metrics::{Delivery, Summary};

/// Flooders send their frames in batches this far apart.
pub const FLOOD_TICK: SimTime = 10 * MILLIS;

/// The `[adversary]` table of a scenario.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdversaryConfig {
    /// Share of the initial supernodes that drop the chats and acks they
    /// should relay or deliver.
    #[serde(default)]
    pub dropping_supernodes: f64,
    /// Dropping supernodes answer their own clients' chats with a forged
    /// "not found" instead of silence.
    #[serde(default)]
    pub forge_not_found: bool,
    /// Share of the initial ordinary nodes that flood.
    #[serde(default)]
    pub flooding_ordinary: f64,
    /// Routed chats a second each flooder sends its supernode (0: the
    /// flooders are chosen, and left out of the honest figures, but stay
    /// quiet: the reference run of a flood scenario).
    #[serde(default = "default_flood_rate")]
    pub flood_rate_per_s: f64,
    /// When the flood starts, seconds (default: when the workload starts).
    #[serde(default)]
    pub flood_start_s: Option<f64>,
}

fn default_flood_rate() -> f64 {
    1000.0
}

impl AdversaryConfig {
    /// Checks the table; the field at fault and why.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let share = |v: f64| v.is_finite() && (0.0..=1.0).contains(&v);
        if !share(self.dropping_supernodes) {
            return Err(field("dropping_supernodes", "must be between 0 and 1"));
        }
        if !share(self.flooding_ordinary) {
            return Err(field("flooding_ordinary", "must be between 0 and 1"));
        }
        if !(self.flood_rate_per_s.is_finite()
            && (0.0..=100_000.0).contains(&self.flood_rate_per_s))
        {
            return Err(field("flood_rate_per_s", "must be between 0 and 100000"));
        }
        if self
            .flood_start_s
            .is_some_and(|s| !(s.is_finite() && s >= 0.0))
        {
            return Err(field("flood_start_s", "must be non-negative"));
        }
        Ok(())
    }
}

fn field(name: &str, why: &str) -> (String, String) {
    (format!("adversary.{name}"), why.to_string())
}

/// What a hostile node does with a frame it is about to send.
pub enum Verdict {
    /// Sends it.
    Pass,
    /// Drops it.
    Drop,
    /// Drops it and sends this forged answer to this peer instead.
    Forge(NodeId, Box<Message>),
}

/// What the adversaries did and what honest users saw, in the metrics.
#[derive(Clone, Debug, Default, Serialize)]
pub struct AdversaryMetrics {
    /// Supernodes that drop relayed chats.
    pub dropping_supernodes: u64,
    /// Ordinary nodes that flood.
    pub flooding_ordinary: u64,
    /// Chats and acks the dropping supernodes dropped.
    pub relayed_dropped: u64,
    /// "Not found" answers they forged.
    pub not_found_forged: u64,
    /// Flood frames put on a link.
    pub flood_frames: u64,
    /// Flood ticks at which a flooder had no supernode to flood.
    pub flood_idle_ticks: u64,
    /// Delivery of chats between two honest nodes.
    pub honest_delivery: Delivery,
    /// Their latency from first send to ack, milliseconds.
    pub honest_latency_ms: Summary,
}

/// The hostile nodes of a run; see the module doc.
pub struct Adversary {
    cfg: Option<AdversaryConfig>,
    /// Hostile slots and what they do.
    hostile: BTreeMap<u32, Kind>,
    /// Flooders' replayed chat and its victim, made at their first flood.
    flood_chats: BTreeMap<u32, (NodeId, SealedChat)>,
    /// Frames each flooder sends per tick, and the fraction carried over.
    per_tick: f64,
    carry: f64,
    /// The adversary RNG stream: picks, victims, packet ids.
    rng: Xoshiro256PlusPlus,
    /// The world seed (flooders' identities are derived from it).
    seed: u64,
    /// Hop limit of a forged answer.
    ttl: u8,
    metrics: AdversaryMetrics,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Dropping,
    Flooding,
}

impl Adversary {
    /// The adversaries of `cfg`, seeded by the world seed; none without an
    /// `[adversary]` table.
    pub fn new(cfg: &SimConfig, seed: u64) -> Adversary {
        let mut rng = dist::stream_rng(seed, dist::stream::ADVERSARY);
        let mut hostile = BTreeMap::new();
        let mut per_tick = 0.0;
        if let Some(a) = &cfg.adversary {
            let sns = cfg.population.supernodes;
            let ons = cfg.population.ordinary;
            for s in pick(&mut rng, 0, sns, a.dropping_supernodes) {
                hostile.insert(s, Kind::Dropping);
            }
            for s in pick(&mut rng, sns, ons, a.flooding_ordinary) {
                hostile.insert(s, Kind::Flooding);
            }
            per_tick = a.flood_rate_per_s * FLOOD_TICK as f64 / secs(1.0) as f64;
        }
        let count = |k: Kind| hostile.values().filter(|v| **v == k).count() as u64;
        let metrics = AdversaryMetrics {
            dropping_supernodes: count(Kind::Dropping),
            flooding_ordinary: count(Kind::Flooding),
            ..AdversaryMetrics::default()
        };
        Adversary {
            cfg: cfg.adversary.clone(),
            hostile,
            flood_chats: BTreeMap::new(),
            per_tick,
            carry: 0.0,
            rng,
            seed,
            ttl: cfg.node.ttl,
            metrics,
        }
    }

    /// When the first flood tick is due, if anyone floods.
    pub fn flood_start(&self, workload_start: SimTime) -> Option<SimTime> {
        let a = self.cfg.as_ref()?;
        let floods = self.per_tick > 0.0 && self.metrics.flooding_ordinary > 0;
        floods.then(|| a.flood_start_s.map(secs).unwrap_or(workload_start))
    }

    /// Whether `slot` is hostile.
    pub fn is_hostile(&self, slot: u32) -> bool {
        self.hostile.contains_key(&slot)
    }

    /// The flooders.
    pub fn flooders(&self) -> Vec<u32> {
        self.hostile
            .iter()
            .filter(|(_, k)| **k == Kind::Flooding)
            .map(|(s, _)| *s)
            .collect()
    }

    /// What node `slot` (id `id`) does with `msg` it is about to send;
    /// `linked(peer)`: whether it has a link to `peer`.
    pub fn on_send(
        &mut self,
        slot: u32,
        id: NodeId,
        msg: &Message,
        linked: impl Fn(&NodeId) -> bool,
    ) -> Verdict {
        if self.hostile.get(&slot) != Some(&Kind::Dropping) {
            return Verdict::Pass;
        }
        let Message::Routed(p) = msg else {
            return Verdict::Pass;
        };
        if p.src == id || !matches!(p.body, Body::Chat(_) | Body::ChatAck { .. }) {
            return Verdict::Pass;
        }
        self.metrics.relayed_dropped += 1;
        let forge = self.cfg.as_ref().is_some_and(|a| a.forge_not_found);
        if forge && matches!(p.body, Body::Chat(_)) && linked(&p.src) {
            self.metrics.not_found_forged += 1;
            let lie = Packet {
                dst: p.src,
                src: id,
                id: MsgId(self.rng.random()),
                ttl: self.ttl,
                hops: 1,
                location: LocationHop::Unused,
                trace: None,
                // Signed, as v2 requires: by the liar itself, which is all a
                // forger can do; the sender reports it only at the deadline.
                body: Body::NotFound(dist::node_identity(self.seed, u64::from(slot)).absence(
                    p.id.0,
                    p.dst,
                    NotFoundReason::NoRecord,
                )),
            };
            return Verdict::Forge(p.src, Box::new(Message::Routed(lie)));
        }
        Verdict::Drop
    }

    /// The frames flooder `slot` (id `id`) sends this tick, to `victims`
    /// drawn by the caller when it has none yet; `now` dates its chat.
    pub fn flood_frames(
        &mut self,
        slot: u32,
        id: NodeId,
        now: SimTime,
        victim: impl FnOnce(&mut Xoshiro256PlusPlus) -> Option<NodeId>,
        count: u32,
    ) -> Vec<Message> {
        if !self.flood_chats.contains_key(&slot) {
            let Some(to) = victim(&mut self.rng) else {
                return Vec::new();
            };
            let identity = dist::node_identity(self.seed, u64::from(slot));
            let msg_id = MsgId(self.rng.random());
            let Ok(chat) = identity.chat(to, msg_id, 1, now, "flood".into()) else {
                return Vec::new();
            };
            // Sealed to the flooder's own chat key (it looks up no one's):
            // the victim's supernode pays the relay, the victim an open that fails.
            let Ok(sealed) = seal::seal(&chat, &identity.chat_key(), self.rng.random()) else {
                return Vec::new();
            };
            self.flood_chats.insert(slot, (to, sealed));
        }
        let (to, sealed) = &self.flood_chats[&slot];
        let mut frames = Vec::with_capacity(count as usize);
        for _ in 0..count {
            frames.push(Message::Routed(Packet {
                dst: *to,
                src: id,
                id: MsgId(self.rng.random()),
                ttl: self.ttl,
                hops: 0,
                location: LocationHop::Unused,
                trace: None,
                body: Body::Chat(sealed.clone()),
            }));
        }
        self.metrics.flood_frames += u64::from(count);
        frames
    }

    /// Frames each flooder sends this tick (the rate's fraction carried).
    pub fn frames_this_tick(&mut self) -> u32 {
        self.carry += self.per_tick;
        let whole = self.carry.floor();
        self.carry -= whole;
        whole as u32
    }

    /// A flooder had no supernode to flood this tick.
    pub fn idle_tick(&mut self) {
        self.metrics.flood_idle_ticks += 1;
    }

    /// Whether the run has an `[adversary]` table.
    pub fn active(&self) -> bool {
        self.cfg.is_some()
    }

    /// The figures, with the honest delivery the recorder measured.
    pub fn report(&self, honest_delivery: Delivery, latencies: Vec<f64>) -> AdversaryMetrics {
        AdversaryMetrics {
            honest_delivery,
            honest_latency_ms: Summary::of(latencies),
            ..self.metrics.clone()
        }
    }
}

/// Exactly `round(share * count)` distinct slots of `first..first+count`.
fn pick(rng: &mut Xoshiro256PlusPlus, first: u32, count: u32, share: f64) -> Vec<u32> {
    let want = ((share * f64::from(count)).round() as u32).min(count);
    let mut slots: Vec<u32> = (first..first + count).collect();
    // A partial Fisher-Yates shuffle: the first `want` are the pick.
    for i in 0..want as usize {
        let j = rng.random_range(i..slots.len());
        slots.swap(i, j);
    }
    slots.truncate(want as usize);
    slots.sort_unstable();
    slots
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pick_takes_the_rounded_share_of_distinct_slots_in_range() {
        let mut rng = dist::stream_rng(1, dist::stream::ADVERSARY);
        let p = pick(&mut rng, 100, 9900, 0.01);
        assert_eq!(p.len(), 99);
        assert!(p.windows(2).all(|w| w[0] < w[1]));
        assert!(p.iter().all(|s| (100..10_000).contains(s)));
        assert!(pick(&mut rng, 0, 100, 0.0).is_empty());
        assert_eq!(pick(&mut rng, 0, 100, 1.0).len(), 100);
    }

    #[test]
    fn a_rate_that_is_not_a_multiple_of_the_tick_is_kept_on_average() {
        let cfg = SimConfig::parse(
            "duration_s = 100\n[population]\nsupernodes = 2\nordinary = 100\n\
             [adversary]\nflooding_ordinary = 0.05\nflood_rate_per_s = 250\n",
            "test",
        )
        .expect("a valid scenario");
        let mut a = Adversary::new(&cfg, 1);
        assert_eq!(a.flooders().len(), 5);
        let sent: u32 = (0..100).map(|_| a.frames_this_tick()).sum();
        assert_eq!(sent, 250, "one second of ticks sends the rate");
    }

    /// A small world with a dropping supernode and a flooder.
    const HOSTILE: &str = r#"
name = "hostile"
duration_s = 90
warmup_s = 30
[population]
supernodes = 8
ordinary = 100
on_start_at_s = 1
on_start_spread_s = 5
[workload]
rate_per_node_per_min = 6
[adversary]
dropping_supernodes = 0.25
flooding_ordinary = 0.02
flood_rate_per_s = 400
"#;

    #[test]
    fn a_hostile_run_is_deterministic_and_its_adversaries_act() {
        let cfg = SimConfig::parse(HOSTILE, "hostile").expect("valid");
        let m = crate::sim::simulate(&cfg, 3);
        let again = crate::sim::simulate(&cfg, 3);
        assert_eq!(
            crate::sim::to_json(&m),
            crate::sim::to_json(&again),
            "seed 3 gave two different runs"
        );
        let a = m
            .adversary
            .expect("an [adversary] run reports its adversaries");
        assert_eq!((a.dropping_supernodes, a.flooding_ordinary), (2, 2));
        assert!(a.relayed_dropped > 0, "the droppers dropped nothing");
        assert!(a.flood_frames > 1_000, "{} flood frames", a.flood_frames);
        assert!(a.honest_delivery.eligible > 100);
        assert!(
            a.honest_delivery.eligible < m.delivery.eligible,
            "chats with a flooder are left out of the honest figures"
        );
    }

    #[test]
    fn an_adversary_share_over_one_is_refused_naming_the_field() {
        let err = SimConfig::parse(
            "duration_s = 100\n[population]\nsupernodes = 2\n[adversary]\ndropping_supernodes = 1.5\n",
            "test",
        )
        .expect_err("refused");
        assert!(
            err.to_string().contains("adversary.dropping_supernodes"),
            "{err}"
        );
    }
}
