//! The discrete-event world: many [`Node`]s, a seeded network between them,
//! churn, a chat workload, and invariant checks, all in virtual time.
//!
//! # Implementation notes
//! - One event queue ordered by (time, sequence number): two events at the
//!   same microsecond run in the order they were scheduled, so a run is a
//!   pure function of the seed and the scenario. It is a calendar queue
//!   (`queue.rs`), which pops in the same order as a binary heap.
//! - Nodes live in a `Vec` indexed by node index (a "slot"); a restarted node
//!   keeps its slot and identity and gets a new incarnation number, which
//!   invalidates the events scheduled for the old one. The id-to-slot map is
//!   a `HashMap` only ever queried, never iterated.
//! - The network model (links, latency, loss, partitions) is `net.rs`.
//! - Each node's wake-up is scheduled once per distinct deadline: a wake
//!   event whose time no longer matches the node's deadline is stale and
//!   skipped, which keeps the queue proportional to the nodes and frames in
//!   flight.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use rand::rngs::Xoshiro256PlusPlus;
use rand::RngExt;
use skyhop_protocol::{codec, Body, Identity, Message, NodeId, Role, SignatureMemo};

use skyhop_core::{
    partial_shuffle, Action, BootstrapPeer, ChatFailure, DropReason, Event, HostCacheEntry, Node,
    NodeConfig, Output, SimTime, MILLIS, SECS,
};

use super::config::SimConfig;
use super::dist::{self, millis, secs};
use super::event::Ev;
use super::metrics::{
    round3, AttachSample, CounterTotals, Delivery, DeliverySample, InvariantChecks, KindTraffic,
    Metrics, NodeCounts, Reattach, Summary, SupernodeLoad, Traffic, Violation,
};
use super::net::{self, Arrival, Network, Transit};
use super::queue::{Entry, EventQueue};
use super::verifier::Verifier;

/// A node index's state across incarnations.
struct Slot {
    id: NodeId,
    role: Role,
    inc: u32,
    node: Option<Box<Node>>,
    /// The key pair made with the slot, until its first start takes it
    /// (a restart derives it again: key generation is costly at 10^6 nodes).
    identity: Option<Identity>,
    wake_at: Option<SimTime>,
    started_at: SimTime,
    attached_at: Option<SimTime>,
    joined: bool,
    bootstrap: Vec<BootstrapPeer>,
    saved_host_cache: Vec<HostCacheEntry>,
    departures: Vec<SimTime>,
    contacts: Vec<u32>,
    ttl_seen: u64,
    pool_pos: u32,
}

/// Live nodes of one role, for uniform picks: a vector with positions.
#[derive(Default)]
struct Pool {
    members: Vec<u32>,
}

const NOT_IN_POOL: u32 = u32::MAX;

/// A chat message being tracked.
struct MsgTrack {
    to: u32,
    sent_at: SimTime,
    outcome: Option<Result<(SimTime, u8), ChatFailure>>,
}

/// Traffic counters, by kind.
#[derive(Default)]
struct TrafficCounters {
    by_kind: BTreeMap<(bool, &'static str), KindTraffic>,
    maintenance: u64,
    chat: u64,
    frames_total: u64,
    bytes_total: u64,
    dropped_no_link: u64,
    dropped_at_arrival: u64,
    dropped_partition: u64,
    retransmitted: u64,
}

/// Progress reports to the driver (for a progress bar).
pub trait Progress {
    /// Simulated time reached, microseconds.
    fn at(&mut self, now: SimTime);
}

impl Progress for () {
    fn at(&mut self, _now: SimTime) {}
}

/// The world.
pub struct World {
    cfg: SimConfig,
    seed: u64,
    node_cfg: NodeConfig,
    now: SimTime,
    end: SimTime,
    warmup: SimTime,
    queue: EventQueue<Ev>,
    seq: u64,
    churn_rng: Xoshiro256PlusPlus,
    chat_rng: Xoshiro256PlusPlus,
    slots: Vec<Slot>,
    by_id: HashMap<NodeId, u32>,
    sns: Pool,
    ons: Pool,
    net: Network,
    scratch: Vec<u8>,
    /// Signed statements verified so far, shared by every node and the
    /// verifier thread.
    memo: Arc<SignatureMemo>,
    /// Signature checks of frames in flight.
    verifier: Verifier,
    processed: u64,
    by_kind: [u64; Ev::NAMES.len()],
    last_topology: SimTime,
    violation: Option<Violation>,
    // metrics
    traffic: TrafficCounters,
    live_count: u64,
    live_since: SimTime,
    node_seconds: f64,
    counts: NodeCounts,
    msgs: BTreeMap<(u32, u64), MsgTrack>,
    chat_stop: SimTime,
    chat_counter: u64,
    refused: u64,
    join_times: Vec<f64>,
    orphans: BTreeMap<u32, (SimTime, u32)>,
    reattach_times: Vec<SimTime>,
    orphan_total: u64,
    orphans_departed: u64,
    attach_samples: Vec<AttachSample>,
    departed_counters: CounterTotals,
    misbehaved: u64,
    inv: InvariantChecks,
    ttl_total: u64,
    prev_sample: SimTime,
    max_hops: u8,
}

/// The identities of node indices `0..count`, made on every core: key
/// generation is ~20 µs a node, 20 s of one core at 10^6 nodes.
fn identities(seed: u64, count: u64) -> Vec<Identity> {
    let make = |range: std::ops::Range<u64>| -> Vec<Identity> {
        range.map(|i| dist::node_identity(seed, i)).collect()
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let chunk = count.div_ceil(threads.max(1)).max(1);
    std::thread::scope(|scope| {
        let parts: Vec<_> = (0..count)
            .step_by(chunk as usize)
            .map(|start| scope.spawn(move || make(start..(start + chunk).min(count))))
            .collect();
        parts
            .into_iter()
            .flat_map(|h| h.join().expect("key generation does not panic"))
            .collect()
    })
}

impl Pool {
    fn insert(&mut self, slots: &mut [Slot], s: u32) {
        slots[s as usize].pool_pos = self.members.len() as u32;
        self.members.push(s);
    }

    fn remove(&mut self, slots: &mut [Slot], s: u32) {
        let pos = slots[s as usize].pool_pos;
        if pos == NOT_IN_POOL {
            return;
        }
        let last = self.members.pop().expect("a member is in the pool");
        if last != s {
            self.members[pos as usize] = last;
            slots[last as usize].pool_pos = pos;
        }
        slots[s as usize].pool_pos = NOT_IN_POOL;
    }
}

impl World {
    /// A world for `cfg` seeded by `seed`, with every initial node scheduled.
    pub fn new(cfg: SimConfig, seed: u64) -> World {
        let end = secs(cfg.duration_s);
        let warmup = secs(cfg.warmup_s);
        let chat_start = secs(cfg.workload.start_s.unwrap_or(cfg.warmup_s));
        let chat_stop = end.saturating_sub(cfg.node.chat_deadline + 5 * SECS);
        let memo = Arc::new(SignatureMemo::default());
        let mut w = World {
            node_cfg: cfg.node.clone(),
            seed,
            now: 0,
            end,
            warmup,
            queue: EventQueue::default(),
            seq: 0,
            churn_rng: dist::stream_rng(seed, 2),
            chat_rng: dist::stream_rng(seed, 3),
            slots: Vec::new(),
            by_id: HashMap::new(),
            sns: Pool::default(),
            ons: Pool::default(),
            net: Network::new(&cfg.network, seed),
            scratch: Vec::with_capacity(1024),
            verifier: Verifier::spawn(Arc::clone(&memo)),
            memo,
            processed: 0,
            by_kind: [0; Ev::NAMES.len()],
            last_topology: 0,
            violation: None,
            traffic: TrafficCounters::default(),
            live_count: 0,
            live_since: 0,
            node_seconds: 0.0,
            counts: NodeCounts::default(),
            msgs: BTreeMap::new(),
            chat_stop,
            chat_counter: 0,
            refused: 0,
            join_times: Vec::new(),
            orphans: BTreeMap::new(),
            reattach_times: Vec::new(),
            orphan_total: 0,
            orphans_departed: 0,
            attach_samples: Vec::new(),
            departed_counters: CounterTotals::default(),
            misbehaved: 0,
            inv: InvariantChecks::default(),
            ttl_total: 0,
            prev_sample: 0,
            max_hops: 0,
            cfg,
        };
        let p = w.cfg.population.clone();
        let total = u64::from(p.supernodes) + u64::from(p.ordinary);
        let mut made = identities(seed, total).into_iter();
        for _ in 0..p.supernodes {
            let s = w.new_slot(Role::Supernode, made.next());
            let at = (secs(p.sn_start_spread_s) as f64 * w.churn_rng.random::<f64>()) as SimTime;
            w.push(at, Ev::Start { slot: s });
        }
        for _ in 0..p.ordinary {
            let s = w.new_slot(Role::Ordinary, made.next());
            let at = secs(p.on_start_at_s)
                + (secs(p.on_start_spread_s) as f64 * w.churn_rng.random::<f64>()) as SimTime;
            w.push(at, Ev::Start { slot: s });
        }
        for index in 0..w.cfg.churn.sn_kills.len() {
            let at = secs(w.cfg.churn.sn_kills[index].at_s);
            w.push(at, Ev::SnKill { index });
        }
        for index in 0..w.cfg.churn.restart_storms.len() {
            let at = secs(w.cfg.churn.restart_storms[index].at_s);
            w.push(at, Ev::Storm { index });
        }
        for at in w.net.topology_changes() {
            w.push(at, Ev::Topology);
        }
        if w.cfg.workload.rate_per_node_per_min > 0.0 && chat_start < chat_stop {
            w.push(chat_start, Ev::Chat);
        }
        let interval = secs(w.cfg.sample_interval_s);
        w.push(interval, Ev::Sample);
        w
    }

    /// A new node index of `role`, with its identity if already made.
    fn new_slot(&mut self, role: Role, identity: Option<Identity>) -> u32 {
        let index = self.slots.len() as u64;
        let identity = identity.unwrap_or_else(|| dist::node_identity(self.seed, index));
        let id = identity.id();
        let s = u32::try_from(index).expect("fewer than 2^32 nodes");
        self.by_id.insert(id, s);
        self.slots.push(Slot {
            id,
            role,
            inc: 0,
            node: None,
            identity: Some(identity),
            wake_at: None,
            started_at: 0,
            attached_at: None,
            joined: false,
            bootstrap: Vec::new(),
            saved_host_cache: Vec::new(),
            departures: Vec::new(),
            contacts: Vec::new(),
            ttl_seen: 0,
            pool_pos: NOT_IN_POOL,
        });
        self.net.add_slot(s);
        match role {
            Role::Supernode => self.counts.supernodes += 1,
            Role::Ordinary => self.counts.ordinary += 1,
        }
        s
    }

    fn push(&mut self, at: SimTime, ev: Ev) {
        self.seq += 1;
        self.queue.push(at, self.seq, ev);
    }

    fn fail(&mut self, what: String) {
        if self.violation.is_none() {
            self.violation = Some(Violation {
                time_s: round3(self.now as f64 / SECS as f64),
                event: self.processed,
                what,
            });
        }
    }

    /// Runs to the end (or the first violation) and returns the metrics.
    pub fn run(mut self, progress: &mut dyn Progress) -> Metrics {
        while let Some(next) = self.queue.peek_time() {
            if next > self.end || self.violation.is_some() {
                break;
            }
            let Some(Entry { at, item: ev, .. }) = self.queue.pop() else {
                break;
            };
            self.now = at;
            self.processed += 1;
            if self.processed > self.cfg.max_events {
                self.fail(format!(
                    "event budget of {} exhausted: livelock?",
                    self.cfg.max_events
                ));
                break;
            }
            self.by_kind[ev.index()] += 1;
            if matches!(ev, Ev::Sample) {
                progress.at(at);
            }
            self.handle(ev);
        }
        if self.violation.is_none() {
            self.now = self.end;
        }
        self.finish()
    }

    fn handle(&mut self, ev: Ev) {
        match ev {
            Ev::Start { slot } => self.start(slot),
            Ev::Wake { slot, inc } => {
                let now = self.now;
                let sl = &mut self.slots[slot as usize];
                if sl.inc != inc || sl.wake_at != Some(now) {
                    // Counted as a wake by the loop; it is a stale one.
                    self.by_kind[Ev::WAKE] -= 1;
                    self.by_kind[Ev::WAKE_STALE] += 1;
                    return;
                }
                sl.wake_at = None;
                if let Some(node) = sl.node.as_mut() {
                    if node.poll_timeout().is_some_and(|t| t <= now) {
                        node.handle_timeout(now);
                    }
                    self.drain(slot);
                }
            }
            Ev::Frame {
                from,
                to,
                epoch,
                msg,
            } => {
                let now = self.now;
                let open = match self.net.arrive(now, from, to, epoch) {
                    Arrival::Cut => {
                        self.traffic.dropped_partition += 1;
                        return;
                    }
                    Arrival::Closed => false,
                    Arrival::Open => true,
                };
                let from_id = self.slots[from as usize].id;
                let sl = &mut self.slots[to as usize];
                match sl.node.as_mut() {
                    Some(node) if open => {
                        node.handle_message(now, from_id, *msg);
                        self.drain(to);
                    }
                    _ => self.traffic.dropped_at_arrival += 1,
                }
            }
            Ev::LinkUp {
                a,
                a_inc,
                b,
                b_inc,
                latency,
            } => self.link_up(a, a_inc, b, b_inc, latency),
            Ev::LinkDown { at, peer, epoch } => {
                let now = self.now;
                let peer_id = self.slots[peer as usize].id;
                if self.net.close_seen(at, peer, epoch) {
                    if let Some(node) = self.slots[at as usize].node.as_mut() {
                        node.handle_link_down(now, peer_id);
                        self.drain(at);
                    }
                }
            }
            Ev::DialFailed { slot, inc, peer } => {
                let now = self.now;
                let sl = &mut self.slots[slot as usize];
                if sl.inc == inc {
                    if let Some(node) = sl.node.as_mut() {
                        node.handle_dial_failed(now, Some(peer), &[]);
                        self.drain(slot);
                    }
                }
            }
            Ev::SessionEnd { slot, inc } => {
                let sl = &self.slots[slot as usize];
                if sl.inc != inc || sl.node.is_none() {
                    return;
                }
                let graceful = self.churn_rng.random::<f64>() < self.cfg.churn.graceful_fraction;
                self.depart(slot, graceful);
                // A newcomer keeps the population steady.
                let s = self.new_slot(Role::Ordinary, None);
                self.push(self.now, Ev::Start { slot: s });
            }
            Ev::SnKill { index } => self.kill_supernodes(index),
            Ev::Storm { index } => self.storm(index),
            Ev::StormRestart {
                slot,
                inc,
                downtime,
            } => {
                let sl = &self.slots[slot as usize];
                if sl.inc != inc || sl.node.is_none() {
                    return;
                }
                self.last_topology = self.now;
                self.counts.restarts += 1;
                self.crash(slot);
                self.push(self.now + downtime, Ev::Start { slot });
            }
            Ev::Topology => self.last_topology = self.now,
            Ev::Chat => self.chat(),
            Ev::Sample => self.sample(),
        }
    }

    // ----- nodes -----

    fn start(&mut self, slot: u32) {
        let now = self.now;
        if self.slots[slot as usize].node.is_some() {
            return;
        }
        let role = self.slots[slot as usize].role;
        if self.slots[slot as usize].inc == 0 {
            // First start: bootstrap from live supernodes, kept for restarts.
            let want = self.cfg.population.bootstrap_peers as usize;
            let mut boot = Vec::new();
            let live = self.sns.members.len();
            for _ in 0..want.min(live) * 2 {
                let pick = self.sns.members[self.churn_rng.random_range(0..live)];
                let id = self.slots[pick as usize].id;
                if pick != slot && !boot.iter().any(|b: &BootstrapPeer| b.id == Some(id)) {
                    boot.push(BootstrapPeer {
                        id: Some(id),
                        addrs: vec![format!("sim:{pick}")],
                    });
                }
                if boot.len() >= want {
                    break;
                }
            }
            self.slots[slot as usize].bootstrap = boot;
        }
        let sl = &mut self.slots[slot as usize];
        sl.inc += 1;
        let mut cfg = self.node_cfg.clone();
        cfg.role = role;
        cfg.bootstrap = sl.bootstrap.clone();
        cfg.listen_addrs = vec![format!("sim:{slot}")];
        let identity = sl
            .identity
            .take()
            .unwrap_or_else(|| dist::node_identity(self.seed, u64::from(slot)));
        let rng_seed = dist::node_rng_seed(self.seed, u64::from(slot), u64::from(sl.inc));
        let mut node = match Node::new(cfg, identity, rng_seed, now, Arc::clone(&self.memo)) {
            Ok(n) => n,
            Err(e) => {
                self.fail(format!("node configuration refused: {e}"));
                return;
            }
        };
        node.restore_host_cache(std::mem::take(&mut sl.saved_host_cache));
        sl.node = Some(Box::new(node));
        sl.started_at = now;
        sl.attached_at = None;
        sl.joined = false;
        sl.wake_at = None;
        sl.ttl_seen = 0;
        let inc = sl.inc;
        self.net.drop_links(slot);
        match role {
            Role::Supernode => {
                self.sns.insert(&mut self.slots, slot);
                self.last_topology = now;
            }
            Role::Ordinary => {
                self.ons.insert(&mut self.slots, slot);
                if let Some(session) = self.cfg.churn.session.clone() {
                    let from = now.max(secs(self.cfg.churn.start_s));
                    let len = dist::session(&mut self.churn_rng, &session);
                    self.push(from.saturating_add(len), Ev::SessionEnd { slot, inc });
                }
            }
        }
        self.live_changed(1);
        self.drain(slot);
    }

    fn live_changed(&mut self, delta: i64) {
        let from = self.live_since.max(self.warmup);
        if self.now > from {
            self.node_seconds += self.live_count as f64 * (self.now - from) as f64 / SECS as f64;
        }
        self.live_since = self.now;
        self.live_count = self.live_count.saturating_add_signed(delta);
    }

    /// A node goes away: gracefully (a `Leave` first) or by crashing.
    fn depart(&mut self, slot: u32, graceful: bool) {
        if graceful {
            let now = self.now;
            if let Some(node) = self.slots[slot as usize].node.as_mut() {
                node.leave(now);
            }
            self.drain(slot);
            self.counts.left += 1;
        } else {
            self.counts.crashed += 1;
        }
        self.crash(slot);
    }

    /// Removes a node at once; its peers notice by themselves.
    fn crash(&mut self, slot: u32) {
        let now = self.now;
        let sl = &mut self.slots[slot as usize];
        let Some(node) = sl.node.take() else {
            return;
        };
        sl.saved_host_cache = node.host_cache();
        sl.wake_at = None;
        sl.attached_at = None;
        sl.departures.push(now);
        let c = node.counters();
        let ttl = c.dropped(DropReason::TtlExpired);
        self.ttl_total += ttl.saturating_sub(sl.ttl_seen);
        sl.ttl_seen = 0;
        let d = &mut self.departed_counters;
        d.forwarded += c.forwarded;
        d.delivered += c.delivered;
        d.forged += c.forged;
        for (k, v) in &c.dropped {
            *d.dropped.entry(*k).or_default() += v;
        }
        match sl.role {
            Role::Supernode => self.sns.remove(&mut self.slots, slot),
            Role::Ordinary => self.ons.remove(&mut self.slots, slot),
        }
        if let Some((_, inc)) = self.orphans.get(&slot) {
            if *inc == self.slots[slot as usize].inc {
                self.orphans.remove(&slot);
                self.orphans_departed += 1;
            }
        }
        self.net.drop_links(slot);
        self.live_changed(-1);
    }

    fn kill_supernodes(&mut self, index: usize) {
        let fraction = self.cfg.churn.sn_kills[index].fraction;
        let live = self.sns.members.len();
        let k = ((live as f64) * fraction).round() as usize;
        let mut pick = self.sns.members.clone();
        pick.sort_unstable();
        partial_shuffle(&mut pick, k, &mut self.churn_rng);
        pick.truncate(k);
        let killed: std::collections::BTreeSet<NodeId> =
            pick.iter().map(|s| self.slots[*s as usize].id).collect();
        let mut ons = self.ons.members.clone();
        ons.sort_unstable();
        for on in ons {
            let sl = &self.slots[on as usize];
            let primary = sl.node.as_ref().and_then(|n| n.primary());
            if primary.is_some_and(|p| killed.contains(&p)) {
                self.orphans.insert(on, (self.now, sl.inc));
                self.orphan_total += 1;
            }
        }
        for s in pick {
            self.crash(s);
            self.counts.supernodes_killed += 1;
        }
        self.last_topology = self.now;
    }

    fn storm(&mut self, index: usize) {
        let storm = self.cfg.churn.restart_storms[index].clone();
        let mut pick = self.ons.members.clone();
        pick.sort_unstable();
        let k = ((pick.len() as f64) * storm.fraction).round() as usize;
        partial_shuffle(&mut pick, k, &mut self.churn_rng);
        pick.truncate(k);
        let window = secs(storm.window_s);
        let downtime = secs(storm.downtime_s);
        for s in pick {
            let at = self.now + (window as f64 * self.churn_rng.random::<f64>()) as SimTime;
            let inc = self.slots[s as usize].inc;
            self.push(
                at,
                Ev::StormRestart {
                    slot: s,
                    inc,
                    downtime,
                },
            );
        }
        self.last_topology = self.now;
    }

    // ----- network -----

    fn link_up(&mut self, a: u32, a_inc: u32, b: u32, b_inc: u32, latency: SimTime) {
        let now = self.now;
        let alive = |s: &Slot, inc: u32| s.inc == inc && s.node.is_some();
        let a_ok = alive(&self.slots[a as usize], a_inc);
        let b_ok = alive(&self.slots[b as usize], b_inc);
        if !a_ok {
            return;
        }
        let b_id = self.slots[b as usize].id;
        if !b_ok || self.net.cut(now, a, b) {
            self.push(
                now,
                Ev::DialFailed {
                    slot: a,
                    inc: a_inc,
                    peer: b_id,
                },
            );
            return;
        }
        if self.net.open(now, a, b, latency).is_none() {
            // Both sides dialed each other; the first link stands.
            return;
        }
        let a_id = self.slots[a as usize].id;
        for (x, y_id) in [(a, b_id), (b, a_id)] {
            if let Some(node) = self.slots[x as usize].node.as_mut() {
                node.handle_link_up(now, y_id);
            }
        }
        self.drain(a);
        self.drain(b);
    }

    /// Drains a node's outputs into the world and schedules its wake-up.
    fn drain(&mut self, slot: u32) {
        while let Some(out) = self.slots[slot as usize]
            .node
            .as_mut()
            .and_then(|n| n.poll_output())
        {
            match out {
                Output::Event(e) => self.on_event(slot, e),
                Output::Transmit(t) => self.transmit(slot, t.to, t.msg),
                Output::Action(a) => self.action(slot, a),
            }
        }
        let wake = self.slots[slot as usize]
            .node
            .as_ref()
            .and_then(|n| n.poll_timeout());
        if let Some(at) = wake {
            let at = at.max(self.now);
            let sl = &mut self.slots[slot as usize];
            if sl.wake_at.is_none_or(|w| at < w) {
                sl.wake_at = Some(at);
                let inc = sl.inc;
                self.push(at, Ev::Wake { slot, inc });
            }
        }
    }

    fn transmit(&mut self, from: u32, to_id: NodeId, msg: Message) {
        self.scratch.clear();
        let len = match codec::encode_into(&msg, &mut self.scratch) {
            Ok(len) => len as u64,
            Err(e) => {
                let id = self.slots[from as usize].id;
                self.fail(format!("node {id} sent an invalid {}: {e}", msg.kind()));
                return;
            }
        };
        // A frame for a peer this node has no link to never reaches the wire.
        let to = match self.by_id.get(&to_id) {
            Some(&to) if self.net.has_link(from, to) => to,
            _ => {
                self.traffic.dropped_no_link += 1;
                return;
            }
        };
        let (routed, is_chat) = match &msg {
            Message::Routed(p) => (
                true,
                matches!(
                    p.body,
                    Body::Chat(_) | Body::ChatAck { .. } | Body::NotFound { .. }
                ),
            ),
            _ => (false, false),
        };
        self.traffic.frames_total += 1;
        self.traffic.bytes_total += len;
        if self.now >= self.warmup {
            let k = self
                .traffic
                .by_kind
                .entry((routed, msg.kind()))
                .or_default();
            k.frames += 1;
            k.bytes += len;
            if is_chat {
                self.traffic.chat += len;
            } else {
                self.traffic.maintenance += len;
            }
        }
        let now = self.now;
        let (arrive, epoch) = match self.net.send(now, from, to) {
            // Sent, but lost in the cut.
            Transit::Cut => {
                self.traffic.dropped_partition += 1;
                return;
            }
            Transit::Arrives {
                at,
                epoch,
                retransmitted,
            } => {
                if retransmitted {
                    self.traffic.retransmitted += 1;
                }
                (at, epoch)
            }
        };
        self.verifier.in_flight(&msg);
        let msg = if self.cfg.network.roundtrip_codec {
            match codec::decode_frame(&self.scratch) {
                Ok(m) => m,
                Err(e) => {
                    self.fail(format!("a {} frame does not decode: {e}", msg.kind()));
                    return;
                }
            }
        } else {
            msg
        };
        self.push(
            arrive,
            Ev::Frame {
                from,
                to,
                epoch,
                msg: Box::new(msg),
            },
        );
    }

    fn action(&mut self, slot: u32, action: Action) {
        let now = self.now;
        let inc = self.slots[slot as usize].inc;
        match action {
            Action::Dial { id: Some(peer), .. } => {
                let target = self.by_id.get(&peer).copied();
                let Some(to) = target.filter(|t| *t != slot) else {
                    let at = self.net.unreachable(now);
                    self.push(at, Ev::DialFailed { slot, inc, peer });
                    return;
                };
                if self.net.has_link(slot, to) {
                    return;
                }
                let listening = self.slots[to as usize].node.is_some();
                match self.net.dial(now, slot, to, listening) {
                    net::Dial::Fails { at } => self.push(at, Ev::DialFailed { slot, inc, peer }),
                    net::Dial::Connects { at, latency } => {
                        let b_inc = self.slots[to as usize].inc;
                        self.push(
                            at,
                            Ev::LinkUp {
                                a: slot,
                                a_inc: inc,
                                b: to,
                                b_inc,
                                latency,
                            },
                        );
                    }
                }
            }
            Action::Dial { id: None, .. } => {
                // The simulator dials by id only; an address-only dial goes
                // nowhere and the core's own dial timeout forgets it.
                self.traffic.dropped_no_link += 1;
            }
            Action::Disconnect { peer, .. } => {
                let Some(&to) = self.by_id.get(&peer) else {
                    return;
                };
                if let Some((at, epoch)) = self.net.close(now, slot, to) {
                    self.push(
                        at,
                        Ev::LinkDown {
                            at: to,
                            peer: slot,
                            epoch,
                        },
                    );
                }
            }
        }
    }

    fn on_event(&mut self, slot: u32, e: Event) {
        let now = self.now;
        let ttl = self.node_cfg.ttl;
        match e {
            Event::Attached { .. } => {
                let sl = &mut self.slots[slot as usize];
                sl.attached_at = Some(now);
                if !sl.joined {
                    sl.joined = true;
                    self.join_times
                        .push((now - sl.started_at) as f64 / MILLIS as f64);
                }
                if let Some((killed_at, inc)) = self.orphans.get(&slot).copied() {
                    if inc == sl.inc {
                        self.orphans.remove(&slot);
                        self.reattach_times.push(now - killed_at);
                    }
                }
            }
            Event::Detached { .. } => self.slots[slot as usize].attached_at = None,
            Event::ChatDelivered {
                msg_id,
                hops,
                latency,
                ..
            } => {
                self.check_hops(hops, ttl);
                if let Some(m) = self.msgs.get_mut(&(slot, msg_id.0)) {
                    m.outcome.get_or_insert(Ok((latency, hops)));
                }
            }
            Event::ChatFailed { msg_id, reason, .. } => {
                if let Some(m) = self.msgs.get_mut(&(slot, msg_id.0)) {
                    m.outcome.get_or_insert(Err(reason));
                }
            }
            Event::ChatReceived { hops, .. } => self.check_hops(hops, ttl),
            Event::PeerMisbehaved { .. } => self.misbehaved += 1,
            Event::TraceCompleted { .. } | Event::TraceFailed { .. } => {}
        }
    }

    fn check_hops(&mut self, hops: u8, ttl: u8) {
        self.max_hops = self.max_hops.max(hops);
        if hops > ttl {
            self.fail(format!("a packet took {hops} hops, above the TTL of {ttl}"));
        }
    }

    // ----- workload -----

    fn online(&self, s: u32) -> bool {
        let sl = &self.slots[s as usize];
        sl.node.as_ref().is_some_and(|n| n.is_routable())
    }

    fn chat(&mut self) {
        let now = self.now;
        if now > self.chat_stop {
            return;
        }
        // Flat overlays have no ordinary nodes: every node chats.
        let flat = self.cfg.population.ordinary == 0;
        let pool_len = if flat {
            self.sns.members.len()
        } else {
            self.ons.members.len()
        };
        let rate_per_s = self.cfg.workload.rate_per_node_per_min / 60.0 * pool_len as f64;
        if pool_len >= 2 {
            let pick = |w: &mut World| {
                let pool = if flat { &w.sns } else { &w.ons };
                pool.members[w.chat_rng.random_range(0..pool.members.len())]
            };
            // Users message contacts shown online: both ends attached.
            let mut pair = None;
            let contacts = self.cfg.workload.contacts as usize;
            for _ in 0..16 {
                let (a, b) = if contacts == 0 {
                    (pick(self), pick(self))
                } else {
                    let a = pick(self);
                    (a, self.contact_of(a, contacts, &pick))
                };
                if a != b && self.online(a) && self.online(b) {
                    pair = Some((a, b));
                    break;
                }
            }
            if let Some((a, b)) = pair {
                self.chat_counter += 1;
                let mut text = format!("m{} ", self.chat_counter);
                let want = self.cfg.workload.body_bytes;
                while text.len() < want {
                    text.push('x');
                }
                text.truncate(want);
                let to_id = self.slots[b as usize].id;
                let result = self.slots[a as usize]
                    .node
                    .as_mut()
                    .map(|n| n.send_chat(now, to_id, text));
                match result {
                    Some(Ok(msg_id)) => {
                        self.msgs.insert(
                            (a, msg_id.0),
                            MsgTrack {
                                to: b,
                                sent_at: now,
                                outcome: None,
                            },
                        );
                        self.drain(a);
                    }
                    _ => self.refused += 1,
                }
            }
        }
        let next = if rate_per_s > 0.0 {
            let u = 1.0 - self.chat_rng.random::<f64>();
            secs(-u.ln() / rate_per_s).max(1)
        } else {
            SECS
        };
        self.push(now + next, Ev::Chat);
    }

    /// One of `a`'s contacts: those gone for good are replaced by online
    /// nodes drawn with `pick`, up to `want` of them.
    fn contact_of(&mut self, a: u32, want: usize, pick: &dyn Fn(&mut World) -> u32) -> u32 {
        let mut list = std::mem::take(&mut self.slots[a as usize].contacts);
        // Contacts that are down are dropped; one that restarts may be
        // drawn again later.
        list.retain(|c| self.slots[*c as usize].node.is_some());
        for _ in 0..want.saturating_sub(list.len()) * 2 {
            if list.len() >= want {
                break;
            }
            let c = pick(self);
            if c != a && self.online(c) && !list.contains(&c) {
                list.push(c);
            }
        }
        let b = if list.is_empty() {
            a
        } else {
            list[self.chat_rng.random_range(0..list.len())]
        };
        self.slots[a as usize].contacts = list;
        b
    }

    // ----- sampling and invariants -----

    fn sample(&mut self) {
        let now = self.now;
        let interval = secs(self.cfg.sample_interval_s);
        let mut live = 0;
        let mut attached = 0;
        for &s in &self.ons.members {
            live += 1;
            if self.slots[s as usize].attached_at.is_some() {
                attached += 1;
            }
        }
        self.attach_samples.push(AttachSample {
            t_s: round3(now as f64 / SECS as f64),
            live,
            attached,
            ratio: if live == 0 {
                1.0
            } else {
                round3(attached as f64 / live as f64 * 100.0) / 100.0
            },
        });
        // TTL expiries since the last sample.
        let mut delta = 0;
        for sl in self.slots.iter_mut() {
            if let Some(node) = sl.node.as_ref() {
                let c = node.counters().dropped(DropReason::TtlExpired);
                delta += c.saturating_sub(sl.ttl_seen);
                sl.ttl_seen = c;
            }
        }
        let before = self.ttl_total;
        self.ttl_total += delta;
        let settle = secs(self.cfg.invariants.settle_s);
        let steady_since = self.last_topology + settle;
        let window_steady = self.prev_sample >= steady_since && self.prev_sample >= self.warmup;
        if window_steady {
            self.inv.steady_samples += 1;
            let expired = self.ttl_total - before;
            if expired > 0 {
                self.inv.ttl_expired_steady += expired;
                self.fail(format!(
                    "{expired} packets ran out of TTL in a steady overlay (no supernode or \
                     partition change since {:.1} s): a routing loop?",
                    self.last_topology as f64 / SECS as f64
                ));
            }
            self.check_records();
        }
        self.prev_sample = now;
        self.push(now + interval, Ev::Sample);
    }

    /// Every attached ordinary node (a deterministic sample of them) has a
    /// live record of its primary on its home supernodes.
    fn check_records(&mut self) {
        let now = self.now;
        let want = self.cfg.invariants.record_sample as usize;
        if want == 0 || self.sns.members.is_empty() {
            return;
        }
        let grace = secs(self.cfg.invariants.record_grace_s);
        let mut ons: Vec<u32> = self
            .ons
            .members
            .iter()
            .copied()
            .filter(|s| {
                self.slots[*s as usize]
                    .attached_at
                    .is_some_and(|t| t + grace <= now)
            })
            .collect();
        ons.sort_unstable();
        if ons.is_empty() {
            return;
        }
        let step = ons.len().div_ceil(want).max(1);
        let offset = self.churn_rng.random_range(0..step);
        let mut sns: Vec<(NodeId, u32)> = self
            .sns
            .members
            .iter()
            .map(|s| (self.slots[*s as usize].id, *s))
            .collect();
        sns.sort_unstable();
        let replicas = self.node_cfg.replicas.min(sns.len());
        let mut i = offset;
        while i < ons.len() {
            let on = ons[i];
            i += step;
            let on_id = self.slots[on as usize].id;
            let Some(primary) = self.slots[on as usize]
                .node
                .as_ref()
                .and_then(|n| n.primary())
            else {
                continue;
            };
            let mut homes: Vec<(skyhop_protocol::Distance, u32)> = sns
                .iter()
                .map(|(id, s)| (id.distance(&on_id), *s))
                .collect();
            homes.select_nth_unstable(replicas - 1);
            homes.truncate(replicas);
            homes.sort_unstable();
            self.inv.records_checked += 1;
            let holding: Vec<bool> = homes
                .iter()
                .map(|(_, s)| {
                    self.slots[*s as usize]
                        .node
                        .as_ref()
                        .is_some_and(|n| n.holds_record(&on_id, &primary, now))
                })
                .collect();
            let ok = if self.cfg.invariants.all_replicas {
                holding.iter().all(|h| *h)
            } else {
                holding.iter().any(|h| *h)
            };
            if !ok {
                let attached_at = self.slots[on as usize].attached_at.unwrap_or(0);
                let missing: Vec<String> = homes
                    .iter()
                    .zip(&holding)
                    .filter(|(_, h)| !**h)
                    .map(|((_, s), _)| self.slots[*s as usize].id.short())
                    .collect();
                self.fail(format!(
                    "ordinary node {} (attached to {} since {:.1} s) has no live record on \
                     home supernode(s) {}",
                    on_id.short(),
                    primary.short(),
                    attached_at as f64 / SECS as f64,
                    missing.join(", ")
                ));
                return;
            }
        }
    }

    // ----- results -----

    fn finish(mut self) -> Metrics {
        self.live_changed(0);
        let deadline = millis(self.cfg.workload.deadline_ms);
        let horizon = self.node_cfg.chat_deadline + 5 * SECS;
        let mut d = Delivery {
            deadline_ms: self.cfg.workload.deadline_ms,
            refused: self.refused,
            ..Delivery::default()
        };
        let interval = secs(self.cfg.sample_interval_s).max(1);
        let buckets = (self.end / interval + 1) as usize;
        let mut over_time = vec![(0u64, 0u64); buckets];
        let mut hops = Vec::new();
        let mut latencies = Vec::new();
        let mut histogram = vec![0u64; usize::from(self.node_cfg.ttl) + 1];
        let departed = |sl: &Slot, from: SimTime, to: SimTime| {
            sl.departures.iter().any(|t| *t >= from && *t <= to)
        };
        for ((from, _), m) in &self.msgs {
            d.sent += 1;
            let until = m.sent_at + horizon;
            if departed(&self.slots[*from as usize], m.sent_at, until)
                || departed(&self.slots[m.to as usize], m.sent_at, until)
            {
                d.excluded_endpoint_departed += 1;
                continue;
            }
            if self.violation.is_some() && until > self.now {
                // The run stopped before this message could finish.
                d.excluded_endpoint_departed += 1;
                continue;
            }
            d.eligible += 1;
            let bucket = ((m.sent_at / interval) as usize).min(buckets - 1);
            over_time[bucket].0 += 1;
            match m.outcome {
                Some(Ok((latency, h))) => {
                    d.delivered += 1;
                    over_time[bucket].1 += 1;
                    if latency <= deadline {
                        d.delivered_within_deadline += 1;
                    }
                    hops.push(f64::from(h));
                    let last = histogram.len() - 1;
                    histogram[usize::from(h).min(last)] += 1;
                    latencies.push(latency as f64 / MILLIS as f64);
                }
                Some(Err(ChatFailure::Offline)) => d.failed_offline += 1,
                Some(Err(ChatFailure::NotFound)) => d.failed_not_found += 1,
                Some(Err(ChatFailure::TimedOut)) => d.failed_timed_out += 1,
                None => d.unresolved += 1,
            }
        }
        let ratio = |a: u64, b: u64| {
            if b == 0 {
                1.0
            } else {
                (a as f64 / b as f64 * 1e6).round() / 1e6
            }
        };
        d.eventual_ratio = ratio(d.delivered, d.eligible);
        d.within_deadline_ratio = ratio(d.delivered_within_deadline, d.eligible);
        let delivery_over_time = over_time
            .iter()
            .enumerate()
            .filter(|(_, (e, _))| *e > 0)
            .map(|(i, (e, dl))| DeliverySample {
                t_s: round3((i as u64 * interval) as f64 / SECS as f64),
                eligible: *e,
                delivered: *dl,
                ratio: ratio(*dl, *e),
            })
            .collect();
        // Orphans still alive and not reattached count as not reattached.
        let counted = self.orphan_total - self.orphans_departed;
        let within = self
            .reattach_times
            .iter()
            .filter(|t| **t <= 30 * SECS)
            .count() as u64;
        let reattach = Reattach {
            orphans: self.orphan_total,
            excluded_departed: self.orphans_departed,
            reattached: self.reattach_times.len() as u64,
            within_30s: within,
            within_30s_ratio: ratio(within, counted),
            time_ms: Summary::of(
                self.reattach_times
                    .iter()
                    .map(|t| *t as f64 / MILLIS as f64)
                    .collect(),
            ),
        };
        // Supernode load and counters of the living.
        let mut totals = self.departed_counters.clone();
        let (mut clients, mut tables, mut links) = (Vec::new(), Vec::new(), Vec::new());
        for sl in &self.slots {
            let Some(node) = sl.node.as_ref() else {
                continue;
            };
            let c = node.counters();
            totals.forwarded += c.forwarded;
            totals.delivered += c.delivered;
            totals.forged += c.forged;
            for (k, v) in &c.dropped {
                *totals.dropped.entry(*k).or_default() += v;
            }
            if sl.role == Role::Supernode {
                clients.push(node.clients().count() as u64);
                tables.push(node.table().len() as u64);
                links.push(node.links().count() as u64);
                self.counts.live_supernodes_end += 1;
            } else {
                self.counts.live_ordinary_end += 1;
            }
        }
        totals.misbehaved_events = self.misbehaved;
        let mean = |v: &[u64]| {
            if v.is_empty() {
                0.0
            } else {
                round3(v.iter().sum::<u64>() as f64 / v.len() as f64)
            }
        };
        let supernodes = SupernodeLoad {
            clients_mean: mean(&clients),
            clients_max: clients.iter().copied().max().unwrap_or(0),
            table_mean: mean(&tables),
            table_min: tables.iter().copied().min().unwrap_or(0),
            table_max: tables.iter().copied().max().unwrap_or(0),
            links_mean: mean(&links),
        };
        self.inv.ttl_expired_total = totals
            .dropped
            .get(&DropReason::TtlExpired)
            .copied()
            .unwrap_or(0);
        self.inv.duplicates_total = totals
            .dropped
            .get(&DropReason::Duplicate)
            .copied()
            .unwrap_or(0);
        self.inv.max_hops_seen = u64::from(self.max_hops);
        let t = &self.traffic;
        let traffic = Traffic {
            window_start_s: round3(self.warmup as f64 / SECS as f64),
            node_seconds: round3(self.node_seconds),
            maintenance_bytes: t.maintenance,
            chat_bytes: t.chat,
            maintenance_bytes_per_node_per_s: if self.node_seconds > 0.0 {
                round3(t.maintenance as f64 / self.node_seconds)
            } else {
                0.0
            },
            by_kind: t
                .by_kind
                .iter()
                .map(|((routed, k), v)| {
                    let name = if *routed {
                        format!("routed/{k}")
                    } else {
                        (*k).to_string()
                    };
                    (name, *v)
                })
                .collect(),
            frames_total: t.frames_total,
            bytes_total: t.bytes_total,
            dropped_no_link: t.dropped_no_link,
            dropped_at_arrival: t.dropped_at_arrival,
            dropped_partition: t.dropped_partition,
            retransmitted: t.retransmitted,
        };
        let metrics = Metrics {
            scenario: self.cfg.name.clone(),
            seed: self.seed,
            passed: self.violation.is_none(),
            violation: self.violation.clone(),
            simulated_s: round3(self.now as f64 / SECS as f64),
            events: self.processed,
            events_by_kind: Ev::NAMES
                .iter()
                .zip(self.by_kind)
                .filter(|(_, n)| *n > 0)
                .map(|(k, n)| (*k, n))
                .collect(),
            nodes: self.counts.clone(),
            delivery: d,
            hops: Summary::of(hops),
            hop_histogram: histogram,
            chat_latency_ms: Summary::of(latencies),
            join_time_ms: Summary::of(std::mem::take(&mut self.join_times)),
            reattach,
            attached_over_time: std::mem::take(&mut self.attach_samples),
            delivery_over_time,
            traffic,
            supernodes,
            counters: totals,
            invariants: self.inv.clone(),
            config: self.cfg.clone(),
        };
        // Freeing 10^6 nodes one allocation at a time took seconds of the
        // run's wall time; nothing reads them any more, so another thread
        // does it (a process that exits first just skips the work).
        let nodes = std::mem::take(&mut self.slots);
        let queue = std::mem::take(&mut self.queue);
        let _ = std::thread::Builder::new()
            .name("sim-free".into())
            .spawn(move || drop((nodes, queue)));
        metrics
    }
}
