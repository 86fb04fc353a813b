//! A small deterministic driver for multi-node core tests, in the manner of
//! quinn-proto's test `Pair`: nodes exchange frames in virtual time through
//! one event queue ordered by (time, sequence). Every frame goes through the
//! real codec, so a node that emits an invalid message fails the test.
//!
//! The full simulator (network model, churn, metrics) is `skyhop_node::sim`; this
//! harness is only what the core's own scenarios need.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::sync::Arc;

use skyhop_protocol::mix::SplitMix64;
use skyhop_protocol::{
    codec, envelope, Body, Identity, Message, MsgId, NodeId, Role, SignatureMemo,
};

use super::{
    Action, BootstrapPeer, Event, FrameVerdict, Node, NodeConfig, Output, SimTime, Transmit,
    MILLIS, SECS,
};

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
    Wake(NodeId),
    LinkUp(NodeId, NodeId),
    LinkDown(NodeId, NodeId),
    DialFailed(NodeId, NodeId),
    Frame(NodeId, NodeId, Vec<u8>),
}

/// The test world.
pub struct Harness {
    /// The live nodes.
    pub nodes: BTreeMap<NodeId, Node>,
    /// Virtual time.
    pub now: SimTime,
    /// Pending events by (time, sequence).
    queue: BinaryHeap<Reverse<(SimTime, u64, Ev)>>,
    /// The sequence number of the last event pushed.
    seq: u64,
    /// Open links, both directions.
    links: BTreeSet<(NodeId, NodeId)>,
    /// One-way latency of every frame.
    pub latency: SimTime,
    /// Extra latency drawn per frame from 0..jitter (deterministic).
    pub jitter: SimTime,
    /// Deliver every routed frame twice.
    pub duplicate_frames: bool,
    /// Nodes that drop every chat and ack they should relay or deliver (a
    /// hostile supernode, as the simulator's `[adversary]` makes them).
    pub dropping: BTreeSet<NodeId>,
    /// Every application event, with the node that emitted it and when.
    pub events: Vec<(SimTime, NodeId, Event)>,
    /// Draws the per-frame jitter.
    jitter_rng: SplitMix64,
    /// Events processed so far, against livelock.
    processed: u64,
    /// Verified signatures, shared by the nodes as a simulator shares them.
    memo: Arc<SignatureMemo>,
    /// A hostile relay: routed chat frames this node sends are dropped.
    pub swallows_chats: Option<NodeId>,
    /// A wiretap: the bytes of every frame this node receives are kept in
    /// `tapped`, as the relay saw them.
    pub tap: Option<NodeId>,
    /// A wiretap on what this node sends: every frame it sends is kept in
    /// `tapped` too.
    pub tap_from: Option<NodeId>,
    /// What the wiretap saw.
    pub tapped: Vec<Vec<u8>>,
    /// Hand routed frames to [`Node::handle_routed_frame`] first, as the
    /// runtime does, and send on the bytes it forwards in place; decode
    /// only what it asks to.
    pub raw_relay: bool,
    /// Frames forwarded in place so far.
    pub forwarded_raw: u64,
    /// One side of a network cut ([`Harness::cut`]): no link crosses it.
    cut_side: Option<BTreeSet<NodeId>>,
}

/// A node's secret from a small seed.
pub fn identity(seed: u64) -> Identity {
    let mut secret = [0u8; 32];
    secret[..8].copy_from_slice(&seed.to_le_bytes());
    secret[8] = 0x5a;
    Identity::from_secret(secret)
}

/// Bound on processed events per run call, against livelock.
const MAX_EVENTS_PER_RUN: u64 = 20_000_000;

impl Harness {
    pub fn new() -> Harness {
        Harness {
            nodes: BTreeMap::new(),
            now: 0,
            queue: BinaryHeap::new(),
            seq: 0,
            links: BTreeSet::new(),
            latency: 5 * MILLIS,
            jitter: 0,
            duplicate_frames: false,
            dropping: BTreeSet::new(),
            events: Vec::new(),
            jitter_rng: SplitMix64(0x9e37_79b9_7f4a_7c15),
            processed: 0,
            memo: Arc::default(),
            swallows_chats: None,
            tap: None,
            tap_from: None,
            tapped: Vec::new(),
            raw_relay: false,
            forwarded_raw: 0,
            cut_side: None,
        }
    }

    /// Cuts the network between `side` and every other node: each link
    /// across is dropped now (both ends see it close) and dials across
    /// fail until [`Harness::heal`]. Nobody is told why.
    pub fn cut(&mut self, side: &[NodeId]) {
        let side: BTreeSet<NodeId> = side.iter().copied().collect();
        let across: Vec<(NodeId, NodeId)> = self
            .links
            .iter()
            .filter(|(a, b)| side.contains(a) != side.contains(b))
            .copied()
            .collect();
        for (a, b) in across {
            self.links.remove(&(a, b));
            self.push(self.now, Ev::LinkDown(a, b));
        }
        self.cut_side = Some(side);
    }

    /// Ends the cut: dials across succeed again (nothing redials by
    /// itself; the nodes do).
    pub fn heal(&mut self) {
        self.cut_side = None;
    }

    /// Whether a cut separates `a` and `b`.
    fn across_cut(&self, a: &NodeId, b: &NodeId) -> bool {
        self.cut_side
            .as_ref()
            .is_some_and(|side| side.contains(a) != side.contains(b))
    }

    fn push(&mut self, at: SimTime, ev: Ev) {
        self.seq += 1;
        self.queue.push(Reverse((at, self.seq, ev)));
    }

    fn delay(&mut self) -> SimTime {
        if self.jitter == 0 {
            return self.latency;
        }
        // Deterministic jitter without a global RNG.
        self.latency + self.jitter_rng.below(self.jitter)
    }

    /// Adds a node with `cfg`, bootstrapping from `bootstrap`.
    pub fn add(&mut self, seed: u64, mut cfg: NodeConfig, bootstrap: &[NodeId]) -> NodeId {
        cfg.bootstrap = bootstrap
            .iter()
            .map(|id| BootstrapPeer {
                id: Some(*id),
                addrs: vec![format!("sim:{id}")],
            })
            .collect();
        cfg.listen_addrs = vec![format!("sim:{seed}")];
        let ident = identity(seed);
        let id = ident.id();
        let node = Node::new(cfg, ident, seed, self.now, Arc::clone(&self.memo))
            .expect("valid test config");
        self.nodes.insert(id, node);
        self.drain(id);
        id
    }

    pub fn add_supernode(&mut self, seed: u64, bootstrap: &[NodeId]) -> NodeId {
        self.add(seed, NodeConfig::supernode(), bootstrap)
    }

    pub fn add_ordinary(&mut self, seed: u64, bootstrap: &[NodeId]) -> NodeId {
        self.add(seed, NodeConfig::default(), bootstrap)
    }

    pub fn node(&self, id: &NodeId) -> &Node {
        &self.nodes[id]
    }

    pub fn node_mut(&mut self, id: &NodeId) -> &mut Node {
        self.nodes.get_mut(id).expect("node exists")
    }

    /// Removes a node without telling anyone, as a crash does.
    pub fn crash(&mut self, id: &NodeId) {
        self.nodes.remove(id);
        self.links.retain(|(a, b)| a != id && b != id);
    }

    /// Drains a node's outputs into the world and schedules its wake-up.
    pub fn drain(&mut self, id: NodeId) {
        while let Some(out) = self.nodes.get_mut(&id).and_then(Node::poll_output) {
            match out {
                Output::Event(e) => self.events.push((self.now, id, e)),
                Output::Transmit(t) => self.transmit(id, t),
                Output::Action(a) => self.action(id, a),
            }
        }
        if let Some(at) = self.nodes.get(&id).and_then(Node::poll_timeout) {
            self.push(at.max(self.now), Ev::Wake(id));
        }
    }

    fn transmit(&mut self, id: NodeId, t: Transmit) {
        if !self.links.contains(&(id, t.to)) {
            return;
        }
        if self.dropping.contains(&id) {
            if let Message::Routed(p) = &t.msg {
                if p.src != id && matches!(p.body, Body::Chat(_) | Body::ChatAck(_)) {
                    return;
                }
            }
        }
        let chat = |m: &Message| matches!(m, Message::Routed(p) if matches!(p.body, Body::Chat(_)));
        if self.swallows_chats == Some(id) && chat(&t.msg) {
            return;
        }
        let bytes = codec::encode(&t.msg)
            .unwrap_or_else(|e| panic!("node {id:?} sent an invalid {}: {e}", t.msg.kind()));
        let at = self.now + self.delay();
        let twice = self.duplicate_frames && matches!(t.msg, Message::Routed(_));
        if twice {
            self.push(at + 1, Ev::Frame(id, t.to, bytes.clone()));
        }
        self.push(at, Ev::Frame(id, t.to, bytes));
    }

    fn action(&mut self, id: NodeId, a: Action) {
        match a {
            Action::Dial { id: Some(peer), .. } => {
                let at = self.now + self.latency * 2;
                if self.across_cut(&id, &peer) {
                    self.push(at, Ev::DialFailed(id, peer));
                } else if self.nodes.contains_key(&peer) && !self.links.contains(&(id, peer)) {
                    self.push(at, Ev::LinkUp(id, peer));
                } else if !self.nodes.contains_key(&peer) {
                    self.push(at, Ev::DialFailed(id, peer));
                }
            }
            Action::Dial { id: None, .. } => panic!("the harness dials by id only"),
            Action::Disconnect { peer, .. } => {
                if self.links.remove(&(id, peer)) {
                    self.links.remove(&(peer, id));
                    let at = self.now + self.latency;
                    self.push(at, Ev::LinkDown(peer, id));
                }
            }
        }
    }

    /// Runs until virtual time `until`.
    pub fn run_until(&mut self, until: SimTime) {
        let budget = self.processed + MAX_EVENTS_PER_RUN;
        while let Some(Reverse((at, _, _))) = self.queue.peek() {
            if *at > until {
                break;
            }
            let Some(Reverse((at, _, ev))) = self.queue.pop() else {
                break;
            };
            self.now = at;
            self.processed += 1;
            assert!(
                self.processed < budget,
                "event budget exhausted at {at} us: livelock?"
            );
            match ev {
                Ev::Wake(id) => {
                    let Some(node) = self.nodes.get_mut(&id) else {
                        continue;
                    };
                    if node.poll_timeout().is_some_and(|t| t <= at) {
                        node.handle_timeout(at);
                        self.drain(id);
                    }
                }
                Ev::LinkUp(a, b) => {
                    if self.nodes.contains_key(&a)
                        && self.nodes.contains_key(&b)
                        && !self.links.contains(&(a, b))
                    {
                        self.links.insert((a, b));
                        self.links.insert((b, a));
                        for (x, y) in [(a, b), (b, a)] {
                            self.node_mut(&x).handle_link_up(at, y);
                            self.drain(x);
                        }
                    }
                }
                Ev::LinkDown(a, b) => {
                    if let Some(node) = self.nodes.get_mut(&a) {
                        node.handle_link_down(at, b);
                        self.drain(a);
                    }
                }
                Ev::DialFailed(a, b) => {
                    if let Some(node) = self.nodes.get_mut(&a) {
                        node.handle_dial_failed(at, Some(b), &[]);
                        self.drain(a);
                    }
                }
                Ev::Frame(from, to, bytes) => {
                    if !self.links.contains(&(from, to)) {
                        continue;
                    }
                    if self.tap == Some(to) || self.tap_from == Some(from) {
                        self.tapped.push(bytes.clone());
                    }
                    if self.raw_relay && self.relay_raw(from, to, bytes.clone()) {
                        continue;
                    }
                    let msg = codec::decode_frame(&bytes).expect("frames the codec made decode");
                    if let Some(node) = self.nodes.get_mut(&to) {
                        node.handle_message(at, from, msg);
                        self.drain(to);
                    }
                }
            }
        }
        self.now = self.now.max(until);
    }

    /// Offers frame `bytes` from `from` to `to`'s relay fast path; true if
    /// it was handled there (forwarded in place or dropped).
    fn relay_raw(&mut self, from: NodeId, to: NodeId, bytes: Vec<u8>) -> bool {
        let now = self.now;
        let Some(node) = self.nodes.get_mut(&to) else {
            return true;
        };
        let frame_body = &bytes[skyhop_protocol::FRAME_HEADER_LEN..];
        match node.handle_routed_frame(now, from, frame_body) {
            FrameVerdict::Decode => return false,
            FrameVerdict::Dropped => {}
            FrameVerdict::Forward(next, rw) => {
                self.forwarded_raw += 1;
                let mut bytes = Vec::new();
                envelope::append_rewritten(frame_body, &rw, &mut bytes);
                if self.links.contains(&(to, next)) {
                    // As `transmit` schedules an encoded frame.
                    let at = self.now + self.delay();
                    if self.duplicate_frames {
                        self.push(at + 1, Ev::Frame(to, next, bytes.clone()));
                    }
                    self.push(at, Ev::Frame(to, next, bytes));
                }
            }
        }
        self.drain(to);
        true
    }

    pub fn run_for(&mut self, d: SimTime) {
        self.run_until(self.now + d);
    }

    /// Delivers a raw message to `to` as if `from` (a linked peer) sent it.
    pub fn inject(&mut self, from: NodeId, to: NodeId, msg: Message) {
        let now = self.now;
        self.node_mut(&to).handle_message(now, from, msg);
        self.drain(to);
    }

    pub fn send_chat(&mut self, from: NodeId, to: NodeId, text: &str) -> MsgId {
        let now = self.now;
        let id = self
            .node_mut(&from)
            .send_chat(now, to, text.to_string())
            .expect("chat accepted");
        self.drain(from);
        id
    }

    /// The outcome of a chat message: delivered (with hops) or failed.
    pub fn outcome(&self, from: NodeId, msg: MsgId) -> Option<Result<u8, super::ChatFailure>> {
        self.events.iter().find_map(|(_, node, e)| match e {
            Event::ChatDelivered { msg_id, hops, .. } if *node == from && *msg_id == msg => {
                Some(Ok(*hops))
            }
            Event::ChatFailed { msg_id, reason, .. } if *node == from && *msg_id == msg => {
                Some(Err(*reason))
            }
            _ => None,
        })
    }

    pub fn received(&self, at: NodeId) -> Vec<(NodeId, String)> {
        self.events
            .iter()
            .filter_map(|(_, node, e)| match e {
                Event::ChatReceived { from, body, .. } if *node == at => {
                    Some((*from, body.clone()))
                }
                _ => None,
            })
            .collect()
    }

    pub fn supernodes(&self) -> Vec<NodeId> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.role() == Role::Supernode)
            .map(|(id, _)| *id)
            .collect()
    }

    pub fn ordinaries(&self) -> Vec<NodeId> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.role() == Role::Ordinary)
            .map(|(id, _)| *id)
            .collect()
    }

    /// Builds `sns` supernodes and `ons` ordinary nodes and lets them settle.
    pub fn overlay(sns: u64, ons: u64) -> Harness {
        let mut h = Harness::new();
        let first = h.add_supernode(1, &[]);
        for i in 1..sns {
            h.add_supernode(1 + i, &[first]);
        }
        h.run_for(2 * SECS);
        let sn_ids = h.supernodes();
        for i in 0..ons {
            let boot = sn_ids[(i as usize) % sn_ids.len()];
            h.add_ordinary(1000 + i, &[boot]);
        }
        h.run_for(5 * SECS);
        h
    }
}
