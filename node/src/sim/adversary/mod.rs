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
//! - with `forge_acks`, a dropping supernode answers every chat it drops
//!   with a forged ack toward the chat's author: a receipt it signs
//!   itself, the best a relay can do, since only the recipient's key makes
//!   a receipt that names the recipient (v2). The author must not count
//!   it: `delivered_unreceived` counts honest chats reported delivered
//!   that their recipient never received;
//! - a **faking supernode** fills every list of supernodes it sends
//!   (`Accept`, `Redirect`, `Neighbors`) with made-up supernodes (random
//!   ids nobody answers to), to crowd real ones out of host caches;
//! - a **flooding supernode** floods like a flooding ordinary node, to the
//!   neighbor in its table closest to its victim.
//!
//! # Implementation notes
//! - Hostile nodes are drawn among the initial slots from their own RNG
//!   stream, exactly `round(share * count)` of each role, so a scenario
//!   without `[adversary]` draws nothing and runs as before, byte for byte.
//!   Newcomers from churn are honest.
//! - With `hostile_from_s`, dropping and faking supernodes are honest
//!   until then (by default they lie from the start): clients that
//!   attached to a liar stay until their probes catch it, so the lies are
//!   told while chats flow.
//! - A forged ack goes to the author if the liar is linked to it, else to
//!   the liar's table neighbor closest to the author.
//! - A forged "not found" goes only to a client linked to the liar; for a
//!   chat it relays for someone further away, the liar stays silent (the
//!   world does not know the hop the chat came from when it is sent).
//! - Flooding is one world event per `FLOOD_TICK` for all flooders, not one
//!   per frame; a flooder that has no primary (refused, between
//!   supernodes) sends nothing, like a real one whose socket is closed.

use std::collections::{BTreeMap, BTreeSet};

use rand::rngs::Xoshiro256PlusPlus;
use rand::RngExt;
use serde::{Deserialize, Serialize};

use skyhop_protocol::{
    seal, Accept, Body, LocationHop, Message, MsgId, Neighbors, NodeId, NotFoundReason, Packet,
    PeerInfo, Redirect, SealedChat, MAX_PEERS_PER_MESSAGE,
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
    /// Dropping supernodes answer every chat they drop with a forged ack.
    #[serde(default)]
    pub forge_acks: bool,
    /// Share of the initial supernodes that advertise fake supernodes.
    #[serde(default)]
    pub faking_supernodes: f64,
    /// Share of the initial supernodes that flood (at `flood_rate_per_s`).
    #[serde(default)]
    pub flooding_supernodes: f64,
    /// When dropping and faking supernodes start to misbehave, seconds
    /// (default: from the start). Until then they are honest, so that
    /// their clients stay and the lies are told while chats flow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostile_from_s: Option<f64>,
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
        if !share(self.faking_supernodes) {
            return Err(field("faking_supernodes", "must be between 0 and 1"));
        }
        if !share(self.flooding_supernodes) {
            return Err(field("flooding_supernodes", "must be between 0 and 1"));
        }
        if !(self.flood_rate_per_s.is_finite()
            && (0.0..=100_000.0).contains(&self.flood_rate_per_s))
        {
            return Err(field("flood_rate_per_s", "must be between 0 and 100000"));
        }
        let negative = |t: Option<f64>| t.is_some_and(|s| !(s.is_finite() && s >= 0.0));
        if negative(self.flood_start_s) {
            return Err(field("flood_start_s", "must be non-negative"));
        }
        if negative(self.hostile_from_s) {
            return Err(field("hostile_from_s", "must be non-negative"));
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
    /// Supernodes that advertise fake supernodes.
    pub faking_supernodes: u64,
    /// Supernodes that flood.
    pub flooding_supernodes: u64,
    /// Acks the dropping supernodes forged.
    pub acks_forged: u64,
    /// Fake supernodes advertised (entries in lists sent).
    pub fakes_advertised: u64,
    /// Chats their author reported delivered that their recipient never
    /// received (a forged ack believed): must be 0.
    pub delivered_unreceived: u64,
    /// Chats and acks the dropping supernodes dropped.
    pub relayed_dropped: u64,
    /// "Not found" answers they forged.
    pub not_found_forged: u64,
    /// Flood frames put on a link.
    pub flood_frames: u64,
    /// Flood ticks at which a flooder had no peer to flood.
    pub flood_idle_ticks: u64,
    /// Times a node dropped and refused a flooding supernode.
    pub flooding_supernodes_banned: u64,
    /// Times a node dropped and refused an honest supernode: must be 0.
    pub honest_supernodes_banned: u64,
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
    /// Chats received, by (author, message id), and chats reported
    /// delivered, by (author, message id): to catch a believed forgery.
    received: BTreeSet<(NodeId, u64)>,
    delivered: Vec<(NodeId, u64)>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Dropping,
    Flooding,
    Faking,
    FloodingSupernode,
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
            // Drawn after the older kinds (a share of 0 draws nothing, so
            // older scenarios pick as before), among the supernodes not
            // picked yet.
            for (share, kind) in [
                (a.faking_supernodes, Kind::Faking),
                (a.flooding_supernodes, Kind::FloodingSupernode),
            ] {
                let free = (0..sns).filter(|s| !hostile.contains_key(s)).collect();
                let want = (share * f64::from(sns)).round() as u32;
                for s in pick_from(&mut rng, free, want) {
                    hostile.insert(s, kind);
                }
            }
            per_tick = a.flood_rate_per_s * FLOOD_TICK as f64 / secs(1.0) as f64;
        }
        let count = |k: Kind| hostile.values().filter(|v| **v == k).count() as u64;
        let metrics = AdversaryMetrics {
            dropping_supernodes: count(Kind::Dropping),
            flooding_ordinary: count(Kind::Flooding),
            faking_supernodes: count(Kind::Faking),
            flooding_supernodes: count(Kind::FloodingSupernode),
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
            received: BTreeSet::new(),
            delivered: Vec::new(),
        }
    }

    /// When the first flood tick is due, if anyone floods.
    pub fn flood_start(&self, workload_start: SimTime) -> Option<SimTime> {
        let a = self.cfg.as_ref()?;
        let flooders = self.metrics.flooding_ordinary + self.metrics.flooding_supernodes;
        let floods = self.per_tick > 0.0 && flooders > 0;
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
            .filter(|(_, k)| matches!(k, Kind::Flooding | Kind::FloodingSupernode))
            .map(|(s, _)| *s)
            .collect()
    }

    /// Whether flooder `slot` is a supernode (it floods a neighbor, not a
    /// primary).
    pub fn floods_as_supernode(&self, slot: u32) -> bool {
        self.hostile.get(&slot) == Some(&Kind::FloodingSupernode)
    }

    /// `to` received chat `msg_id` from `from` (honest or not).
    pub fn chat_received(&mut self, from: NodeId, msg_id: MsgId) {
        if self.active() {
            self.received.insert((from, msg_id.0));
        }
    }

    /// `from`'s chat `msg_id` was reported delivered.
    pub fn chat_delivered(&mut self, from: NodeId, msg_id: MsgId) {
        if self.active() {
            self.delivered.push((from, msg_id.0));
        }
    }

    /// Someone dropped and refused node `slot`, a supernode if
    /// `supernode`.
    pub fn peer_banned(&mut self, slot: u32, supernode: bool) {
        match self.hostile.get(&slot) {
            Some(Kind::FloodingSupernode) => self.metrics.flooding_supernodes_banned += 1,
            None if supernode => self.metrics.honest_supernodes_banned += 1,
            _ => {}
        }
    }

    /// A faking supernode's list of supernodes: made-up ones, as many as
    /// a message may carry.
    fn fakes(&mut self) -> Vec<PeerInfo> {
        self.metrics.fakes_advertised += MAX_PEERS_PER_MESSAGE as u64;
        (0..MAX_PEERS_PER_MESSAGE)
            .map(|_| {
                let id = NodeId(self.rng.random());
                PeerInfo {
                    id,
                    addrs: vec![format!("/ip4/198.51.100.1/tcp/4001/p2p/{}", id.short())],
                }
            })
            .collect()
    }

    /// What a faking supernode sends instead of `msg`, if it lies in it.
    fn faked(&mut self, msg: &Message) -> Option<Message> {
        Some(match msg {
            Message::Accept(a) => Message::Accept(Accept {
                supernodes: self.fakes(),
                ..a.clone()
            }),
            Message::Redirect(r) => Message::Redirect(Redirect {
                supernodes: self.fakes(),
                ..r.clone()
            }),
            Message::Neighbors(n) => Message::Neighbors(Neighbors {
                peers: self.fakes(),
                ..n.clone()
            }),
            _ => return None,
        })
    }

    /// What node `slot` (id `id`) does at `now` with `msg` it is about to
    /// send to `to`; `toward(node)`: the peer it would send something for
    /// `node` to (`node` itself when linked), if any.
    pub fn on_send(
        &mut self,
        now: SimTime,
        slot: u32,
        id: NodeId,
        to: NodeId,
        msg: &Message,
        toward: impl Fn(&NodeId) -> Option<NodeId>,
    ) -> Verdict {
        let from = self.cfg.as_ref().and_then(|a| a.hostile_from_s);
        if from.is_some_and(|s| now < secs(s)) {
            return Verdict::Pass;
        }
        if self.hostile.get(&slot) == Some(&Kind::Faking) {
            return match self.faked(msg) {
                Some(lie) => Verdict::Forge(to, Box::new(lie)),
                None => Verdict::Pass,
            };
        }
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
        if forge && matches!(p.body, Body::Chat(_)) && toward(&p.src) == Some(p.src) {
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
        let forge_acks = self.cfg.as_ref().is_some_and(|a| a.forge_acks);
        if forge_acks && matches!(p.body, Body::Chat(_)) {
            self.metrics.acks_forged += 1;
            // It cannot open the chat, so the packet id is all it can
            // name; it signs with its own key, having no other.
            let liar = dist::node_identity(self.seed, u64::from(slot));
            let lie = Packet {
                dst: p.src,
                src: p.dst,
                id: MsgId(self.rng.random()),
                ttl: self.ttl,
                hops: 1,
                location: LocationHop::Unused,
                trace: None,
                body: Body::ChatAck(liar.receipt(p.src, p.id, 1, p.hops)),
            };
            // Back to the author if linked, else to the neighbor closest
            // to it, which routes it on like any ack.
            if let Some(back) = toward(&p.src) {
                return Verdict::Forge(back, Box::new(Message::Routed(lie)));
            }
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
        let unreceived = self
            .delivered
            .iter()
            .filter(|d| !self.received.contains(d))
            .count();
        AdversaryMetrics {
            honest_delivery,
            honest_latency_ms: Summary::of(latencies),
            delivered_unreceived: unreceived as u64,
            ..self.metrics.clone()
        }
    }
}

/// Exactly `round(share * count)` distinct slots of `first..first+count`.
fn pick(rng: &mut Xoshiro256PlusPlus, first: u32, count: u32, share: f64) -> Vec<u32> {
    let want = (share * f64::from(count)).round() as u32;
    pick_from(rng, (first..first + count).collect(), want)
}

/// `want` distinct slots of `slots` (all of them if fewer), sorted.
fn pick_from(rng: &mut Xoshiro256PlusPlus, mut slots: Vec<u32>, want: u32) -> Vec<u32> {
    let want = want.min(slots.len() as u32);
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
mod tests;
