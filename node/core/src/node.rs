//! [`Node`]: one skyhop node as a sans-IO state machine.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};
use skyhop_protocol::recent::RecentIds;
use skyhop_protocol::{
    Accept, Body, ChatMessage, FindNeighbors, Heartbeat, HeartbeatAck, Hello, Identity, Join,
    LocationHop, LocationRecord, Message, MsgId, Neighbors, NodeId, NotFoundReason, Packet,
    PeerInfo, Redirect, Role, SignatureMemo, StaleLocation, Trace, Withdraw, WithdrawReason,
    MAX_ADDRS, MAX_CHAT_BODY, MAX_PEERS_PER_MESSAGE, MAX_TRACE_HOPS, PROTOCOL_VERSION,
};

use super::chat::{Arrival, Inbox, Outbox};
use super::config::{ConfigError, NodeConfig};
use super::counters::{Counters, DropReason};
use super::directory::{Directory, LocationCache, StoreOutcome};
use super::events::{Action, ChatFailure, Event, HostCacheEntry, Output, Status, Transmit};
use super::table::{self, InsertOutcome, NeighborTable};
use super::timers::{Timer, Timers};
use super::{SimTime, MILLIS, SECS};

/// How often records, caches and pending requests are expired, at least:
/// the work runs on the first heartbeat tick after the interval.
const MAINTENANCE_INTERVAL: SimTime = 5 * SECS;
/// Outputs queued at most between drains; beyond, they are dropped and counted.
const MAX_QUEUED_OUTPUTS: usize = 1 << 16;
/// Location queries in flight at most.
const MAX_PENDING_QUERIES: usize = 1024;
/// How long a location query may stay unanswered.
const QUERY_TIMEOUT: SimTime = 5 * SECS;
/// Trace probes in flight at most.
const MAX_PENDING_TRACES: usize = 64;
/// How long a supernode that redirected or failed is not asked again.
const AVOID_FOR: SimTime = 30 * SECS;
/// Supernodes offered in an `Accept` or `Redirect`.
const SAMPLE_SIZE: usize = 8;
/// Peers returned for a `FindNeighbors`.
const NEIGHBORS_RETURNED: usize = 20;
/// `NotFound { NoRecord }` answers after which a chat fails as not found.
const NOT_FOUND_LIMIT: u32 = 3;
/// Candidates an ordinary node dials at once while looking for a supernode.
const PARALLEL_ATTACH_DIALS: usize = 3;
/// Packets held for location lookups at most, in all and per destination.
const MAX_HELD_PACKETS: usize = 4096;
const MAX_HELD_PER_DST: usize = 32;
/// How long a peer that misbehaved is refused.
const BAN_FOR: SimTime = 60 * SECS;
/// Banned peers remembered at most.
const MAX_BANNED: usize = 1024;
/// While the table is still growing, look up our own id again this soon.
const YOUNG_TABLE_REFRESH: SimTime = SECS;
/// Agent string sent in `Hello`.
const AGENT: &str = concat!("skyhop/", env!("CARGO_PKG_VERSION"));

/// Why a chat message or trace could not be started.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChatError {
    /// The node has left the overlay.
    #[error("this node has left the overlay")]
    Left,
    /// The recipient is this node.
    #[error("cannot send a message to yourself")]
    ToSelf,
    /// The text is over the limit.
    #[error("message is {0} bytes, the limit is {MAX_CHAT_BODY}")]
    TooLong(usize),
    /// Too many messages await their ack.
    #[error("{0} messages already await an acknowledgement; wait for some to finish")]
    QueueFull(usize),
    /// Too many traces are in flight.
    #[error("too many traces in flight")]
    TooManyTraces,
}

#[derive(Clone, Debug)]
struct Link {
    role: Option<Role>,
    addrs: Vec<String>,
    up_since: SimTime,
    last_heard: SimTime,
    ping: Option<(u64, SimTime)>,
    rtt: Option<SimTime>,
    load: u16,
}

#[derive(Clone, Debug)]
struct Client {
    record: Option<LocationRecord>,
}

#[derive(Clone, Debug, Default)]
struct Attach {
    primary: Option<NodeId>,
    joining: Option<(NodeId, u64, SimTime)>,
    attempts: u32,
    avoid: BTreeMap<NodeId, SimTime>,
}

#[derive(Clone, Debug)]
struct PendingTrace {
    to: NodeId,
    sent: SimTime,
    packet_id: MsgId,
}

/// One skyhop node: supernode or ordinary node, as a pure state machine.
///
/// # Calling contract
/// - Feed inputs with the `handle_*` methods, each carrying `now`, the
///   driver's current time in microseconds (monotonic; the simulator's
///   virtual clock or the runtime's wall clock read once per wake-up).
/// - After every input, call [`Node::poll_output`] until it returns `None`,
///   acting on each [`Output`] as it comes: a frame for a linked peer, a
///   link to dial or close, news for the application. Acting on an output
///   may feed the node again (a dial that fails at once); keep polling, and
///   the outputs of that input follow in the same loop.
/// - Then ask [`Node::poll_timeout`] when to call [`Node::handle_timeout`]
///   next, if nothing else arrives first.
///
/// A link is a bidirectional, ordered, reliable channel to one peer: the
/// driver reports it with [`Node::handle_link_up`] once it is open (and the
/// peer's id authenticated), frames on it with [`Node::handle_message`], and
/// its end with [`Node::handle_link_down`]. The node never reads a clock, a
/// global RNG or a socket: its RNG is seeded by the caller, so the same
/// inputs give the same outputs.
pub struct Node {
    cfg: NodeConfig,
    identity: Identity,
    id: NodeId,
    rng: Xoshiro256PlusPlus,
    links: BTreeMap<NodeId, Link>,
    table: NeighborTable,
    clients: BTreeMap<NodeId, Client>,
    directory: Directory,
    cache: LocationCache,
    queries: BTreeMap<NodeId, SimTime>,
    held: BTreeMap<NodeId, Vec<(SimTime, Option<NodeId>, Packet)>>,
    held_count: usize,
    attach: Attach,
    host_cache: BTreeMap<NodeId, HostCacheEntry>,
    dials: BTreeMap<String, SimTime>,
    banned: BTreeMap<NodeId, SimTime>,
    outbox: Outbox,
    inbox: Inbox,
    /// Packets seen, by [`packet_key`].
    seen: RecentIds<u64>,
    traces: BTreeMap<u64, PendingTrace>,
    timers: Timers,
    transmits: VecDeque<Transmit>,
    actions: VecDeque<Action>,
    events: VecDeque<Event>,
    counters: Counters,
    record_seq: u64,
    last_refresh: SimTime,
    /// Housekeeping runs on the first heartbeat tick at or after this, so
    /// that it never costs a wake-up of its own.
    maintenance_due: SimTime,
    left: bool,
    /// Signed statements that verified, shared as the caller chose.
    memo: Arc<SignatureMemo>,
}

/// The duplicate-window key of packet `id` from `src`: 8 bytes instead of
/// 40. Ids are SHA-256 outputs, so their first word is uniform, and the
/// packet id is random; two live packets collide with probability 2^-64,
/// the same odds as two random packet ids from one source.
fn packet_key(src: &NodeId, id: MsgId) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&src.0[..8]);
    u64::from_be_bytes(word) ^ id.0.wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// Pops the front of an output queue and frees the queue's buffer once it
/// is drained: a supernode's heartbeat tick queues a frame per link, and a
/// buffer kept at that size on every node was most of the simulator's
/// memory at 10^5 nodes. A driver drains after every input, so the queue is
/// usually empty between calls and nothing is lost by starting from zero.
fn pop_releasing<T>(queue: &mut VecDeque<T>) -> Option<T> {
    let item = queue.pop_front();
    if queue.is_empty() && queue.capacity() > 0 {
        *queue = VecDeque::new();
    }
    item
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Node({} {:?})", self.id.short(), self.cfg.role)
    }
}

impl Node {
    /// A node with identity `identity`, its RNG seeded by `seed`, started at
    /// `now`. It begins to join on its first [`Node::handle_timeout`], which
    /// [`Node::poll_timeout`] asks for at once.
    ///
    /// `memo` remembers the signed statements that verified; the caller
    /// decides who shares it (a simulator shares one among all its nodes and
    /// the thread that verifies frames in flight).
    pub fn new(
        cfg: NodeConfig,
        identity: Identity,
        seed: u64,
        now: SimTime,
        memo: Arc<SignatureMemo>,
    ) -> Result<Node, ConfigError> {
        cfg.validate()?;
        let id = identity.id();
        let mut timers = Timers::default();
        timers.set(Timer::Attach, now);
        timers.set(Timer::Heartbeat, now + cfg.heartbeat_interval);
        if cfg.role == Role::Supernode {
            timers.set(Timer::TableRefresh, now + cfg.table_refresh);
        }
        Ok(Node {
            table: NeighborTable::new(id, cfg.bucket_size),
            directory: Directory::new(cfg.max_records),
            cache: LocationCache::new(cfg.location_cache_size, cfg.location_cache_ttl),
            seen: RecentIds::new(cfg.dedup_window),
            rng: Xoshiro256PlusPlus::seed_from_u64(seed),
            identity,
            id,
            links: BTreeMap::new(),
            clients: BTreeMap::new(),
            queries: BTreeMap::new(),
            held: BTreeMap::new(),
            held_count: 0,
            attach: Attach::default(),
            host_cache: BTreeMap::new(),
            dials: BTreeMap::new(),
            banned: BTreeMap::new(),
            outbox: Outbox::default(),
            inbox: Inbox::default(),
            traces: BTreeMap::new(),
            timers,
            transmits: VecDeque::new(),
            actions: VecDeque::new(),
            events: VecDeque::new(),
            counters: Counters::default(),
            record_seq: 0,
            last_refresh: now,
            maintenance_due: now + MAINTENANCE_INTERVAL,
            left: false,
            memo,
            cfg,
        })
    }

    /// Seeds the host cache (from the runtime's file), keeping the newest
    /// entries within the bound.
    pub fn restore_host_cache(&mut self, entries: Vec<HostCacheEntry>) {
        for e in entries {
            if e.id != self.id {
                self.host_cache_add(e.id, e.addrs, e.last_seen);
            }
        }
    }

    // ----- accessors -----

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// This node's role.
    pub fn role(&self) -> Role {
        self.cfg.role
    }

    /// The node's configuration.
    pub fn config(&self) -> &NodeConfig {
        &self.cfg
    }

    /// The primary supernode of an ordinary node.
    pub fn primary(&self) -> Option<NodeId> {
        self.attach.primary
    }

    /// Whether this node can route: a supernode, or an attached ordinary node.
    pub fn is_routable(&self) -> bool {
        !self.left && (self.cfg.role == Role::Supernode || self.attach.primary.is_some())
    }

    /// Whether the node has left.
    pub fn has_left(&self) -> bool {
        self.left
    }

    /// The clients of a supernode.
    pub fn clients(&self) -> impl Iterator<Item = &NodeId> {
        self.clients.keys()
    }

    /// Whether this supernode holds a live record of `node` attached to `sn`.
    pub fn holds_record(&self, node: &NodeId, sn: &NodeId, now: SimTime) -> bool {
        self.directory.get(node, now).is_some_and(|r| r.sn == *sn)
    }

    /// Supernodes in the neighbor table.
    pub fn table(&self) -> &NeighborTable {
        &self.table
    }

    /// Linked peers.
    pub fn links(&self) -> impl Iterator<Item = &NodeId> {
        self.links.keys()
    }

    /// Counters so far.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The host cache, newest first, for the runtime to persist.
    pub fn host_cache(&self) -> Vec<HostCacheEntry> {
        let mut v: Vec<HostCacheEntry> = self.host_cache.values().cloned().collect();
        v.sort_by(|a, b| b.last_seen.cmp(&a.last_seen).then(a.id.cmp(&b.id)));
        v
    }

    /// A snapshot for status displays.
    pub fn status(&self) -> Status {
        Status {
            id: self.id,
            role: self.cfg.role,
            primary: self.attach.primary,
            backups: self.backups(),
            clients: self.clients.keys().copied().collect(),
            neighbors: self.table.iter().map(|e| e.id).collect(),
            links: self.links.keys().copied().collect(),
            records: self.directory.len(),
            cached_locations: self.cache.len(),
            host_cache: self.host_cache.len(),
            pending_chats: self.outbox.len(),
            counters: self.counters.clone(),
        }
    }

    // ----- outputs -----

    /// The next thing the driver must do, or `None` when the node has
    /// nothing more to say until its next input.
    ///
    /// Outputs come in a fixed order of kind: every [`Output::Event`]
    /// first, then every [`Output::Transmit`], then every
    /// [`Output::Action`]; within a kind, in the order the node made them.
    /// Frames thus precede any `Disconnect` made by the same input (a
    /// `Leave` is written before the link closes), and the application
    /// hears of a change before its consequences reach the network.
    pub fn poll_output(&mut self) -> Option<Output> {
        if let Some(e) = pop_releasing(&mut self.events) {
            return Some(Output::Event(e));
        }
        if let Some(t) = pop_releasing(&mut self.transmits) {
            return Some(Output::Transmit(t));
        }
        pop_releasing(&mut self.actions).map(Output::Action)
    }

    /// When to call [`Node::handle_timeout`] next.
    pub fn poll_timeout(&self) -> Option<SimTime> {
        if self.left {
            return None;
        }
        self.timers.next()
    }

    fn send(&mut self, to: NodeId, msg: Message) {
        if self.transmits.len() >= MAX_QUEUED_OUTPUTS {
            self.counters.drop(DropReason::OutputQueueFull);
            return;
        }
        *self.counters.frames_out.entry(msg.kind()).or_default() += 1;
        self.transmits.push_back(Transmit { to, msg });
    }

    fn emit(&mut self, event: Event) {
        if self.events.len() >= MAX_QUEUED_OUTPUTS {
            self.events.pop_front();
            self.counters.drop(DropReason::EventQueueFull);
        }
        self.events.push_back(event);
    }

    fn act(&mut self, action: Action) {
        if self.actions.len() < MAX_QUEUED_OUTPUTS {
            self.actions.push_back(action);
        }
    }

    // ----- links -----

    /// A link to `peer` is open (its id authenticated by the driver).
    pub fn handle_link_up(&mut self, now: SimTime, peer: NodeId) {
        if peer == self.id || self.left {
            return;
        }
        self.dials.remove(&peer.to_hex());
        if self.banned.get(&peer).is_some_and(|until| *until > now) {
            self.act(Action::Disconnect {
                peer,
                reason: "banned for misbehaving".into(),
            });
            return;
        }
        self.links.insert(
            peer,
            Link {
                role: None,
                addrs: Vec::new(),
                up_since: now,
                last_heard: now,
                ping: None,
                rtt: None,
                load: 0,
            },
        );
        let mut listen_addrs = self.cfg.listen_addrs.clone();
        listen_addrs.truncate(MAX_ADDRS);
        self.send(
            peer,
            Message::Hello(Hello {
                version: PROTOCOL_VERSION,
                role: self.cfg.role,
                id: self.id,
                listen_addrs,
                agent: AGENT.into(),
            }),
        );
    }

    /// The link to `peer` closed.
    pub fn handle_link_down(&mut self, now: SimTime, peer: NodeId) {
        self.link_lost(now, peer, "link closed");
    }

    /// A dial requested by [`Action::Dial`] failed.
    pub fn handle_dial_failed(&mut self, now: SimTime, id: Option<NodeId>, addrs: &[String]) {
        if let Some(id) = id {
            self.dials.remove(&id.to_hex());
            self.attach.avoid.insert(id, now + AVOID_FOR);
            if let Some((sn, _, _)) = self.attach.joining {
                if sn == id {
                    self.attach.joining = None;
                }
            }
        }
        for a in addrs {
            self.dials.remove(a);
        }
        if self.cfg.role == Role::Ordinary && self.attach.primary.is_none() {
            self.timers.set_earliest(Timer::Attach, now);
        }
    }

    fn link_lost(&mut self, now: SimTime, peer: NodeId, reason: &str) {
        if self.links.remove(&peer).is_none() {
            return;
        }
        if self.table.remove(&peer) {
            self.cache.forget_supernode(&peer);
            // The set of home supernodes changed: republish our clients'
            // records once every supernode has noticed the loss (a heartbeat
            // timeout from now) rather than up to `record_refresh` later, so
            // that records whose homes all died reach the new closest
            // supernodes before senders give up.
            let due = now + self.cfg.heartbeat_interval * u64::from(self.cfg.dead_after_missed);
            self.last_refresh = self
                .last_refresh
                .min(due.saturating_sub(self.cfg.record_refresh));
        }
        if let Some(client) = self.clients.remove(&peer) {
            if let Some(record) = client.record {
                self.withdraw(now, record.node, record.seq, WithdrawReason::Lost);
            }
        }
        if let Some((sn, _, _)) = self.attach.joining {
            if sn == peer {
                self.attach.joining = None;
                self.timers.set_earliest(Timer::Attach, now);
            }
        }
        if self.attach.primary == Some(peer) {
            self.attach.primary = None;
            self.emit(Event::Detached {
                sn: peer,
                reason: reason.to_string(),
            });
            // Fail over at once: a backup is usually linked already.
            self.timers.set_earliest(Timer::Attach, now);
        }
    }

    fn misbehaved(&mut self, now: SimTime, peer: NodeId, reason: String) {
        self.counters.forged += 1;
        self.emit(Event::PeerMisbehaved {
            peer,
            reason: reason.clone(),
        });
        self.act(Action::Disconnect { peer, reason });
        self.link_lost(now, peer, "dropped for misbehaving");
        self.banned.retain(|_, until| *until > now);
        if self.banned.len() < MAX_BANNED {
            self.banned.insert(peer, now + BAN_FOR);
        }
    }

    fn backups(&self) -> Vec<NodeId> {
        self.links
            .iter()
            .filter(|(id, l)| l.role == Some(Role::Supernode) && Some(**id) != self.attach.primary)
            .map(|(id, _)| *id)
            .collect()
    }

    fn host_cache_add(&mut self, id: NodeId, addrs: Vec<String>, seen: SimTime) {
        if let Some(e) = self.host_cache.get_mut(&id) {
            e.last_seen = e.last_seen.max(seen);
            if !addrs.is_empty() {
                e.addrs = addrs;
            }
            return;
        }
        if self.host_cache.len() >= self.cfg.host_cache_size {
            let oldest = self
                .host_cache
                .values()
                .min_by_key(|e| (e.last_seen, e.id))
                .map(|e| e.id);
            match oldest {
                Some(o) if self.host_cache[&o].last_seen <= seen => {
                    self.host_cache.remove(&o);
                }
                _ => return,
            }
        }
        self.host_cache.insert(
            id,
            HostCacheEntry {
                id,
                addrs,
                last_seen: seen,
            },
        );
    }

    // ----- messages -----

    /// A frame arrived from linked peer `from`.
    pub fn handle_message(&mut self, now: SimTime, from: NodeId, msg: Message) {
        if self.left {
            return;
        }
        let Some(link) = self.links.get_mut(&from) else {
            self.counters.drop(DropReason::NotLinked);
            return;
        };
        link.last_heard = now;
        *self.counters.frames_in.entry(msg.kind()).or_default() += 1;
        if link.role.is_none() && !matches!(msg, Message::Hello(_)) {
            self.misbehaved(now, from, format!("sent {} before hello", msg.kind()));
            return;
        }
        self.table.touch(&from, now, None);
        match msg {
            Message::Hello(h) => self.on_hello(now, from, h),
            Message::Join(j) => self.on_join(from, j),
            Message::Accept(a) => self.on_accept(now, from, a),
            Message::Redirect(r) => self.on_redirect(now, from, r),
            Message::Leave(l) => self.on_leave(now, from, l),
            Message::Heartbeat(h) => {
                let clients = u16::try_from(self.clients.len()).unwrap_or(u16::MAX);
                self.send(
                    from,
                    Message::HeartbeatAck(HeartbeatAck {
                        nonce: h.nonce,
                        clients,
                    }),
                );
            }
            Message::HeartbeatAck(a) => self.on_heartbeat_ack(now, from, a),
            Message::FindNeighbors(f) => {
                let peers: Vec<PeerInfo> = self
                    .table
                    .closest(&f.target, NEIGHBORS_RETURNED + 1)
                    .into_iter()
                    .filter(|e| e.id != from)
                    .take(NEIGHBORS_RETURNED)
                    .map(NeighborTable::peer_info)
                    .collect();
                self.send(
                    from,
                    Message::Neighbors(Neighbors {
                        request_id: f.request_id,
                        peers,
                    }),
                );
            }
            Message::Neighbors(n) => self.on_neighbors(now, n.peers),
            Message::Publish(record) => self.on_client_publish(now, from, record),
            Message::Routed(p) => self.handle_packet(now, Some(from), p),
            Message::StaleLocation(s) => self.cache.remove(&s.node),
        }
    }

    fn on_hello(&mut self, now: SimTime, from: NodeId, h: Hello) {
        if h.id != from {
            self.misbehaved(
                now,
                from,
                format!(
                    "hello claims id {} on a link authenticated as {}",
                    h.id, from
                ),
            );
            return;
        }
        let Some(link) = self.links.get_mut(&from) else {
            return;
        };
        if link.role.is_some() {
            self.counters.drop(DropReason::RepeatedHello);
            return;
        }
        link.role = Some(h.role);
        link.addrs = h.listen_addrs.clone();
        if h.role != Role::Supernode {
            return;
        }
        self.host_cache_add(from, h.listen_addrs.clone(), now);
        match self.cfg.role {
            Role::Supernode => {
                if self.table.insert(from, h.listen_addrs, now) == InsertOutcome::Added {
                    self.hand_over_records(now, from);
                    // A growing table means our view is still young: look up
                    // our own id again soon, so that nodes that joined at the
                    // same moment still find their closest neighbors.
                    self.timers
                        .set_earliest(Timer::TableRefresh, now + YOUNG_TABLE_REFRESH);
                    // Look ourselves up through the newcomer while the table is
                    // young or the newcomer is among our closest: the standard
                    // Kademlia self-lookup that fills buckets and leaf set.
                    let near = self.table.closest(&self.id, 3).iter().any(|e| e.id == from);
                    if near || self.table.len() < self.cfg.bucket_size {
                        let request_id = self.rng.random();
                        self.send(
                            from,
                            Message::FindNeighbors(FindNeighbors {
                                request_id,
                                target: self.id,
                            }),
                        );
                    }
                }
            }
            Role::Ordinary => self.timers.set_earliest(Timer::Attach, now),
        }
    }

    fn on_heartbeat_ack(&mut self, now: SimTime, from: NodeId, a: HeartbeatAck) {
        let Some(link) = self.links.get_mut(&from) else {
            return;
        };
        link.load = a.clients;
        if let Some((nonce, sent)) = link.ping {
            if nonce == a.nonce {
                let rtt = now.saturating_sub(sent);
                link.rtt = Some(rtt);
                link.ping = None;
                self.table.touch(&from, now, Some(rtt));
            }
        }
    }

    fn on_neighbors(&mut self, now: SimTime, peers: Vec<PeerInfo>) {
        for p in peers {
            if p.id == self.id {
                continue;
            }
            match self.cfg.role {
                Role::Ordinary => self.host_cache_add(p.id, p.addrs, now),
                Role::Supernode => {
                    if !self.links.contains_key(&p.id) && self.table.has_room_for(&p.id) {
                        self.dial(now, Some(p.id), p.addrs);
                    }
                }
            }
        }
    }

    fn dial(&mut self, now: SimTime, id: Option<NodeId>, addrs: Vec<String>) -> bool {
        let key = match (id, addrs.first()) {
            (Some(id), _) => id.to_hex(),
            (None, Some(a)) => a.clone(),
            (None, None) => return false,
        };
        if self.dials.contains_key(&key) || self.dials.len() >= self.cfg.max_pending_dials {
            return false;
        }
        self.dials.insert(key, now);
        self.act(Action::Dial { id, addrs });
        true
    }

    // ----- supernode: clients -----

    fn on_join(&mut self, from: NodeId, j: Join) {
        if self.cfg.role != Role::Supernode
            || self.links.get(&from).and_then(|l| l.role) != Some(Role::Ordinary)
        {
            self.counters.drop(DropReason::JoinToNonSupernode);
            return;
        }
        if !self.clients.contains_key(&from) && self.clients.len() >= self.cfg.max_clients {
            let supernodes = self.sample_supernodes(SAMPLE_SIZE);
            self.send(
                from,
                Message::Redirect(Redirect {
                    request_id: j.request_id,
                    supernodes,
                }),
            );
            return;
        }
        self.clients.entry(from).or_insert(Client { record: None });
        let supernodes = self.sample_supernodes(SAMPLE_SIZE);
        let clients = u16::try_from(self.clients.len()).unwrap_or(u16::MAX);
        let max_clients = u16::try_from(self.cfg.max_clients).unwrap_or(u16::MAX);
        self.send(
            from,
            Message::Accept(Accept {
                request_id: j.request_id,
                clients,
                max_clients,
                supernodes,
            }),
        );
    }

    fn sample_supernodes(&mut self, n: usize) -> Vec<PeerInfo> {
        // A partial Fisher-Yates shuffle with the node's seeded RNG, over
        // references: only the chosen entries are cloned (a supernode's
        // table has hundreds, each with its addresses).
        let mut all: Vec<&table::Entry> = self.table.iter().collect();
        crate::partial_shuffle(&mut all, n.min(MAX_PEERS_PER_MESSAGE), &mut self.rng)
            .iter()
            .map(|e| NeighborTable::peer_info(e))
            .collect()
    }

    fn on_client_publish(&mut self, now: SimTime, from: NodeId, record: LocationRecord) {
        if !self.clients.contains_key(&from) {
            self.counters.drop(DropReason::PublishFromNonClient);
            return;
        }
        if record.node != from || record.sn != self.id {
            let reason = format!(
                "forged location record: it claims {} is attached to {}, but came from client {} of {}",
                record.node, record.sn, from, self.id
            );
            self.misbehaved(now, from, reason);
            return;
        }
        if let Err(e) = self.memo.verify_record(&record) {
            self.misbehaved(now, from, format!("forged location record: {e}"));
            return;
        }
        if let Some(c) = self.clients.get_mut(&from) {
            c.record = Some(record.clone());
        }
        self.originate(now, record.node, Body::Publish(record), None);
    }

    fn on_leave(&mut self, now: SimTime, from: NodeId, leave: skyhop_protocol::Leave) {
        if !self.clients.contains_key(&from) {
            self.counters.drop(DropReason::LeaveFromNonClient);
            return;
        }
        if leave.node != from || leave.sn != self.id {
            self.misbehaved(now, from, "leave names another node or supernode".into());
            return;
        }
        if let Err(e) = self.memo.verify_leave(&leave) {
            self.misbehaved(now, from, format!("forged leave: {e}"));
            return;
        }
        self.clients.remove(&from);
        let seq = leave.seq;
        self.withdraw(now, from, seq, WithdrawReason::Left(leave));
        self.act(Action::Disconnect {
            peer: from,
            reason: "client left".into(),
        });
        self.links.remove(&from);
    }

    fn withdraw(&mut self, now: SimTime, node: NodeId, seq: u64, reason: WithdrawReason) {
        let w = Withdraw {
            node,
            sn: self.id,
            seq,
            reason,
        };
        self.originate(now, node, Body::Withdraw(w), None);
    }

    // ----- supernode: location records as home -----

    fn replicas_of(&self, node: &NodeId) -> Vec<NodeId> {
        self.table
            .closest(node, self.cfg.replicas.saturating_sub(1))
            .iter()
            .map(|e| e.id)
            .collect()
    }

    /// Stores a record, verifying it unless it is byte-for-byte the record
    /// already held (a refresh): verification is the costly part.
    fn store_record(&mut self, now: SimTime, record: LocationRecord) -> Option<StoreOutcome> {
        let known = self
            .directory
            .get(&record.node, now)
            .is_some_and(|held| *held == record);
        if !known && self.memo.verify_record(&record).is_err() {
            self.counters.forged += 1;
            self.counters.drop(DropReason::ForgedRecord);
            return None;
        }
        Some(self.directory.store(record, now))
    }

    fn apply_withdraw(&mut self, now: SimTime, w: &Withdraw) -> bool {
        if let WithdrawReason::Left(leave) = &w.reason {
            if leave.node != w.node || leave.sn != w.sn || self.memo.verify_leave(leave).is_err() {
                self.counters.forged += 1;
                self.counters.drop(DropReason::ForgedLeave);
                return false;
            }
        }
        self.directory.withdraw(&w.node, &w.sn, w.seq, true, now);
        true
    }

    /// Home supernodes hand records to a newcomer that is now among the
    /// `replicas` closest to them.
    fn hand_over_records(&mut self, now: SimTime, newcomer: NodeId) {
        let r = self.cfg.replicas;
        let records: Vec<LocationRecord> = self
            .directory
            .records()
            .filter(|s| {
                let d = newcomer.distance(&s.record.node);
                self.table
                    .iter()
                    .filter(|e| e.id != newcomer && e.id.distance(&s.record.node) < d)
                    .take(r)
                    .count()
                    < r
            })
            .map(|s| s.record.clone())
            .collect();
        for record in records {
            self.originate(now, newcomer, Body::Publish(record), None);
        }
    }

    // ----- routing -----

    fn location_of(&self, dst: &NodeId, now: SimTime) -> Option<NodeId> {
        self.directory
            .get(dst, now)
            .map(|r| r.sn)
            .or_else(|| self.cache.get(dst, now))
    }

    /// Starts a packet from this node.
    fn originate(&mut self, now: SimTime, dst: NodeId, body: Body, trace: Option<Trace>) -> MsgId {
        let id = MsgId(self.rng.random());
        let p = Packet {
            dst,
            src: self.id,
            id,
            ttl: self.cfg.ttl,
            hops: 0,
            location: LocationHop::Unused,
            trace,
            body,
        };
        self.seen.insert(packet_key(&self.id, id));
        if dst == self.id {
            self.deliver(now, p);
            return id;
        }
        match self.cfg.role {
            Role::Supernode => self.route(now, None, p),
            Role::Ordinary => {
                let direct = self.links.get(&dst).is_some_and(|l| l.role.is_some());
                match (direct, self.attach.primary) {
                    (true, _) => self.forward(now, dst, p),
                    (false, Some(sn)) => self.forward(now, sn, p),
                    (false, None) => self.counters.drop(DropReason::NotAttached),
                }
            }
        }
        id
    }

    fn handle_packet(&mut self, now: SimTime, from: Option<NodeId>, mut p: Packet) {
        if !self.seen.insert(packet_key(&p.src, p.id)) {
            self.counters.drop(DropReason::Duplicate);
            return;
        }
        if let Some(trace) = &mut p.trace {
            if trace.0.len() < MAX_TRACE_HOPS {
                trace.0.push(self.id);
            }
        }
        if p.dst == self.id {
            self.deliver(now, p);
        } else if self.cfg.role == Role::Supernode {
            self.route(now, from, p);
        } else {
            self.counters.drop(DropReason::Misrouted);
        }
    }

    fn is_home_bound(body: &Body) -> bool {
        matches!(
            body,
            Body::Publish(_) | Body::Withdraw(_) | Body::LocationQuery { .. }
        )
    }

    /// The supernode routing steps of DESIGN.md, for a packet not addressed
    /// to this node.
    fn route(&mut self, now: SimTime, from: Option<NodeId>, p: Packet) {
        self.route_packet(now, from, p, true);
    }

    fn route_packet(&mut self, now: SimTime, from: Option<NodeId>, mut p: Packet, may_hold: bool) {
        if Self::is_home_bound(&p.body) {
            match self.table.next_hop(&p.dst).map(|e| e.id) {
                Some(next) => self.forward(now, next, p),
                None => self.at_home(now, p),
            }
            return;
        }
        // On the way to the supernode a location record named.
        if let LocationHop::Toward(sn) = p.location {
            if sn != self.id {
                if let Some(next) = self.hop_toward(&sn) {
                    self.forward(now, next, p);
                    return;
                }
            } else if !self.clients.contains_key(&p.dst) {
                if let Some(prev) = from {
                    self.send(prev, Message::StaleLocation(StaleLocation { node: p.dst }));
                }
            }
            p.location = LocationHop::Used;
        }
        // Step 2: an attached client.
        if self.clients.contains_key(&p.dst) {
            self.forward(now, p.dst, p);
            return;
        }
        // Step 3: a known location, once per packet; a home supernode's own
        // record is authoritative and may send a packet on again, unless the
        // packet just came from the supernode that record names.
        let located = match p.location {
            LocationHop::Unused => self.location_of(&p.dst, now),
            _ => self
                .directory
                .get(&p.dst, now)
                .map(|r| r.sn)
                .filter(|sn| Some(*sn) != from),
        };
        if let Some(sn) = located.filter(|sn| *sn != self.id) {
            if let Some(next) = self.hop_toward(&sn) {
                p.location = LocationHop::Toward(sn);
                self.forward(now, next, p);
                return;
            }
        }
        if located.is_none()
            && p.location == LocationHop::Unused
            && from.is_some_and(|f| f == p.src)
        {
            // Our own client's packet to an unknown location: look it up,
            // and hold the packet briefly so that it too takes the direct
            // path (ON -> SN -> SN -> ON) rather than a detour through the
            // recipient's home supernode.
            if self.clients.contains_key(&p.src)
                && self.query_location(now, p.dst)
                && may_hold
                && self.cfg.lookup_hold > 0
                && self.can_hold(&p.dst)
            {
                self.hold(now, from, p);
                return;
            }
        }
        // Steps 4 and 5.
        match self.table.next_hop(&p.dst).map(|e| e.id) {
            Some(next) => self.forward(now, next, p),
            None => {
                let reason = if self.directory.departed(&p.dst, now) {
                    NotFoundReason::Offline
                } else if located.is_some_and(|sn| sn != self.id) {
                    // We hold a record, but its supernode is unreachable
                    // (it just failed; the client is reattaching): a
                    // transient answer, not "no such node".
                    NotFoundReason::NoRoute
                } else {
                    NotFoundReason::NoRecord
                };
                self.undeliverable(now, p, reason);
            }
        }
    }

    /// The neighbor to send a packet to on its way to supernode `sn`.
    fn hop_toward(&self, sn: &NodeId) -> Option<NodeId> {
        if self
            .links
            .get(sn)
            .is_some_and(|l| l.role == Some(Role::Supernode))
        {
            return Some(*sn);
        }
        self.table.next_hop(sn).map(|e| e.id)
    }

    /// Looks up where `node` is attached; true while a lookup is pending.
    fn query_location(&mut self, now: SimTime, node: NodeId) -> bool {
        if self.queries.contains_key(&node) {
            return true;
        }
        if self.queries.len() >= MAX_PENDING_QUERIES {
            return false;
        }
        self.queries.insert(node, now);
        let request_id = self.rng.random();
        self.originate(now, node, Body::LocationQuery { request_id, node }, None);
        true
    }

    fn can_hold(&self, dst: &NodeId) -> bool {
        self.held_count < MAX_HELD_PACKETS
            && self
                .held
                .get(dst)
                .is_none_or(|v| v.len() < MAX_HELD_PER_DST)
    }

    fn hold(&mut self, now: SimTime, from: Option<NodeId>, p: Packet) {
        self.held.entry(p.dst).or_default().push((now, from, p));
        self.held_count += 1;
        self.timers
            .set_earliest(Timer::Lookup, now + self.cfg.lookup_hold);
    }

    /// Sends on the packets held for `dst`: its lookup was answered.
    fn release_held(&mut self, now: SimTime, dst: &NodeId) {
        let Some(packets) = self.held.remove(dst) else {
            return;
        };
        self.held_count -= packets.len();
        for (_, from, p) in packets {
            self.route_packet(now, from, p, false);
        }
    }

    /// Sends on, the usual way, packets whose lookup took too long.
    fn on_lookup_timer(&mut self, now: SimTime) {
        let hold = self.cfg.lookup_hold;
        let overdue: Vec<NodeId> = self
            .held
            .iter()
            .filter(|(_, v)| v.first().is_some_and(|(at, _, _)| at + hold <= now))
            .map(|(dst, _)| *dst)
            .collect();
        for dst in overdue {
            self.release_held(now, &dst);
        }
        if let Some(at) = self
            .held
            .values()
            .filter_map(|v| v.first().map(|(at, _, _)| at + hold))
            .min()
        {
            self.timers.set(Timer::Lookup, at.max(now + 1));
        }
    }

    /// A home-bound packet reached the closest supernode to its `dst`.
    fn at_home(&mut self, now: SimTime, p: Packet) {
        self.counters.delivered += 1;
        match p.body {
            Body::Publish(record) => {
                if let Some(outcome) = self.store_record(now, record.clone()) {
                    if outcome != StoreOutcome::Stale {
                        for replica in self.replicas_of(&record.node) {
                            self.originate(now, replica, Body::Publish(record.clone()), None);
                        }
                    }
                }
            }
            Body::Withdraw(w) => {
                if self.apply_withdraw(now, &w) {
                    for replica in self.replicas_of(&w.node) {
                        self.originate(now, replica, Body::Withdraw(w.clone()), None);
                    }
                }
            }
            Body::LocationQuery { request_id, node } => {
                self.answer_location_query(now, p.src, request_id, node)
            }
            _ => self.counters.drop(DropReason::NotHomeBound),
        }
    }

    fn answer_location_query(
        &mut self,
        now: SimTime,
        asker: NodeId,
        request_id: u64,
        node: NodeId,
    ) {
        let record = self.directory.get(&node, now).cloned();
        let reply = Body::LocationReply {
            request_id,
            node,
            record,
        };
        self.originate(now, asker, reply, None);
    }

    fn forward(&mut self, now: SimTime, to: NodeId, mut p: Packet) {
        if p.ttl == 0 {
            self.undeliverable(now, p, NotFoundReason::TtlExpired);
            return;
        }
        if !self.links.contains_key(&to) {
            self.undeliverable(now, p, NotFoundReason::NoRoute);
            return;
        }
        p.ttl -= 1;
        p.hops = p.hops.saturating_add(1);
        if p.src != self.id {
            self.counters.forwarded += 1;
        }
        self.send(to, Message::Routed(p));
    }

    fn undeliverable(&mut self, now: SimTime, p: Packet, reason: NotFoundReason) {
        self.counters.drop(DropReason::undeliverable(reason));
        // Only what a user waits on gets an answer, so that answers never
        // cause answers.
        if matches!(
            p.body,
            Body::Chat(_) | Body::TraceProbe { .. } | Body::Datagram(_)
        ) && p.src != self.id
        {
            self.originate(
                now,
                p.src,
                Body::NotFound {
                    packet_id: p.id,
                    dst: p.dst,
                    reason,
                },
                None,
            );
        } else if p.src == self.id {
            self.on_not_found(now, p.id, reason);
        }
    }

    // ----- delivery -----

    fn deliver(&mut self, now: SimTime, p: Packet) {
        self.counters.delivered += 1;
        match p.body {
            Body::Chat(chat) => self.on_chat(now, p.src, p.hops, chat),
            Body::ChatAck { msg_id, hops, .. } => {
                if self
                    .outbox
                    .get(&msg_id)
                    .is_some_and(|pending| pending.chat.to == p.src)
                {
                    if let Some(pending) = self.outbox.remove(&msg_id) {
                        let latency = now.saturating_sub(pending.first_sent);
                        self.emit(Event::ChatDelivered {
                            to: p.src,
                            msg_id,
                            hops,
                            latency,
                        });
                    }
                } else {
                    self.counters.drop(DropReason::UnexpectedAck);
                }
            }
            Body::NotFound {
                packet_id, reason, ..
            } => self.on_not_found(now, packet_id, reason),
            Body::TraceProbe { probe_id } => {
                let path = p.trace.map(|t| t.0).unwrap_or_default();
                self.originate(now, p.src, Body::TraceReply { probe_id, path }, None);
            }
            Body::TraceReply { probe_id, path } => {
                if let Some(t) = self.traces.remove(&probe_id) {
                    self.emit(Event::TraceCompleted {
                        probe_id,
                        to: t.to,
                        path,
                        rtt: now.saturating_sub(t.sent),
                    });
                }
            }
            Body::Publish(record) => {
                // A replica copy from a home supernode.
                if self.cfg.role == Role::Supernode {
                    self.store_record(now, record);
                }
            }
            Body::Withdraw(w) => {
                if self.cfg.role == Role::Supernode {
                    self.apply_withdraw(now, &w);
                }
            }
            Body::LocationQuery { request_id, node } => {
                self.answer_location_query(now, p.src, request_id, node)
            }
            Body::LocationReply { node, record, .. } => {
                self.queries.remove(&node);
                if let Some(record) = record {
                    if record.node == node && self.memo.verify_record(&record).is_ok() {
                        self.cache.insert(node, record.sn, now);
                    } else {
                        self.counters.forged += 1;
                        self.counters.drop(DropReason::ForgedRecord);
                    }
                }
                self.release_held(now, &node);
            }
            Body::Datagram(_) => {}
        }
    }

    fn on_chat(&mut self, now: SimTime, src: NodeId, hops: u8, chat: ChatMessage) {
        if chat.to != self.id || chat.from != src {
            self.counters.drop(DropReason::MisaddressedChat);
            return;
        }
        if self.memo.verify_chat(&chat).is_err() {
            self.counters.forged += 1;
            self.counters.drop(DropReason::ForgedChat);
            return;
        }
        let (msg_id, seq) = (chat.msg_id, chat.seq);
        match self.inbox.arrive(chat, now) {
            Arrival::Duplicate => self.counters.drop(DropReason::DuplicateChat),
            Arrival::Ready(ready) => {
                for c in ready {
                    self.emit(Event::ChatReceived {
                        from: c.from,
                        msg_id: c.msg_id,
                        seq: c.seq,
                        body: c.body,
                        hops,
                    });
                }
                if let Some(at) = self.inbox.next_wakeup() {
                    self.timers.set_earliest(Timer::Chat, at);
                }
            }
        }
        // Acked either way: a duplicate means our earlier ack was lost.
        self.originate(now, src, Body::ChatAck { msg_id, seq, hops }, None);
    }

    fn on_not_found(&mut self, _now: SimTime, packet_id: MsgId, reason: NotFoundReason) {
        if let Some((&probe_id, _)) = self.traces.iter().find(|(_, t)| t.packet_id == packet_id) {
            if let Some(t) = self.traces.remove(&probe_id) {
                let reason = match reason {
                    NotFoundReason::Offline => ChatFailure::Offline,
                    _ => ChatFailure::NotFound,
                };
                self.emit(Event::TraceFailed {
                    probe_id,
                    to: t.to,
                    reason,
                });
            }
            return;
        }
        let Some(pending) = self.outbox.by_packet(&packet_id) else {
            return;
        };
        let failure = match reason {
            NotFoundReason::Offline => Some(ChatFailure::Offline),
            NotFoundReason::NoRecord => {
                pending.not_found += 1;
                (pending.not_found >= NOT_FOUND_LIMIT).then_some(ChatFailure::NotFound)
            }
            NotFoundReason::TtlExpired | NotFoundReason::NoRoute => None,
        };
        if let Some(reason) = failure {
            let msg_id = pending.chat.msg_id;
            let to = pending.chat.to;
            self.outbox.remove(&msg_id);
            self.emit(Event::ChatFailed { to, msg_id, reason });
        }
    }

    // ----- application inputs -----

    /// Sends `text` to `to`; the outcome arrives later as
    /// [`Event::ChatDelivered`] or [`Event::ChatFailed`].
    pub fn send_chat(
        &mut self,
        now: SimTime,
        to: NodeId,
        text: String,
    ) -> Result<MsgId, ChatError> {
        if self.left {
            return Err(ChatError::Left);
        }
        if to == self.id {
            return Err(ChatError::ToSelf);
        }
        if text.len() > MAX_CHAT_BODY {
            return Err(ChatError::TooLong(text.len()));
        }
        if self.outbox.len() >= self.cfg.max_pending_chats {
            return Err(ChatError::QueueFull(self.outbox.len()));
        }
        let msg_id = MsgId(self.rng.random());
        let seq = self.outbox.next_seq(to);
        let chat = self
            .identity
            .chat(to, msg_id, seq, now, text)
            .map_err(|_| ChatError::TooLong(0))?;
        let packet_id = self.originate(now, to, Body::Chat(chat.clone()), None);
        self.outbox.insert(
            chat,
            packet_id,
            now,
            self.cfg.chat_retry_initial,
            self.cfg.chat_deadline,
        );
        self.timers
            .set_earliest(Timer::Chat, now + self.cfg.chat_retry_initial);
        Ok(msg_id)
    }

    /// Sends a trace probe to `to`; the path arrives as
    /// [`Event::TraceCompleted`] (or [`Event::TraceFailed`]).
    pub fn trace(&mut self, now: SimTime, to: NodeId) -> Result<u64, ChatError> {
        if self.left {
            return Err(ChatError::Left);
        }
        if self.traces.len() >= MAX_PENDING_TRACES {
            return Err(ChatError::TooManyTraces);
        }
        let probe_id = self.rng.random();
        let trace = Some(Trace(vec![self.id]));
        let packet_id = self.originate(now, to, Body::TraceProbe { probe_id }, trace);
        self.traces.insert(
            probe_id,
            PendingTrace {
                to,
                sent: now,
                packet_id,
            },
        );
        Ok(probe_id)
    }

    /// Leaves the overlay gracefully: an ordinary node sends its supernode a
    /// signed `Leave`; every link is closed. The node is inert afterwards.
    pub fn leave(&mut self, now: SimTime) {
        if self.left {
            return;
        }
        if let Some(sn) = self.attach.primary {
            self.record_seq = self.record_seq.max(now).saturating_add(1);
            let leave = self.identity.leave(sn, self.record_seq);
            self.send(sn, Message::Leave(leave));
        }
        let peers: Vec<NodeId> = self.links.keys().copied().collect();
        for peer in peers {
            self.act(Action::Disconnect {
                peer,
                reason: "leaving the overlay".into(),
            });
        }
        self.links.clear();
        self.attach.primary = None;
        self.left = true;
    }

    // ----- ordinary node: attaching -----

    fn on_accept(&mut self, now: SimTime, from: NodeId, a: Accept) {
        match self.attach.joining {
            Some((sn, request_id, _)) if sn == from && request_id == a.request_id => {}
            _ => {
                self.counters.drop(DropReason::UnexpectedAccept);
                return;
            }
        }
        self.attach.joining = None;
        self.attach.primary = Some(from);
        self.attach.attempts = 0;
        if let Some(link) = self.links.get_mut(&from) {
            link.load = a.clients;
        }
        for p in a.supernodes {
            if p.id != self.id {
                self.host_cache_add(p.id, p.addrs, now);
            }
        }
        self.emit(Event::Attached { sn: from });
        self.publish_record(now);
        self.ensure_backups(now);
    }

    fn publish_record(&mut self, now: SimTime) {
        let Some(sn) = self.attach.primary else {
            return;
        };
        self.record_seq = self.record_seq.max(now).saturating_add(1);
        let mut sn_addrs = self
            .links
            .get(&sn)
            .map(|l| l.addrs.clone())
            .unwrap_or_default();
        sn_addrs.truncate(MAX_ADDRS);
        let record = self.identity.location_record(
            sn,
            sn_addrs,
            self.record_seq,
            self.cfg.record_lifetime_s,
        );
        self.send(sn, Message::Publish(record));
    }

    fn on_redirect(&mut self, now: SimTime, from: NodeId, r: Redirect) {
        match self.attach.joining {
            Some((sn, request_id, _)) if sn == from && request_id == r.request_id => {}
            _ => return,
        }
        self.attach.joining = None;
        self.attach.avoid.insert(from, now + AVOID_FOR);
        for p in r.supernodes {
            if p.id != self.id {
                // Seen now: redirect targets are tried first.
                self.host_cache_add(p.id, p.addrs, now);
            }
        }
        self.act(Action::Disconnect {
            peer: from,
            reason: "supernode is full".into(),
        });
        self.links.remove(&from);
        self.timers.set_earliest(Timer::Attach, now);
    }

    fn drive_attach(&mut self, now: SimTime) {
        if self.cfg.role != Role::Ordinary || self.left {
            return;
        }
        self.attach.avoid.retain(|_, until| *until > now);
        if self.attach.primary.is_some() {
            self.ensure_backups(now);
            return;
        }
        if let Some((sn, _, sent)) = self.attach.joining {
            if now < sent + self.cfg.join_timeout {
                self.timers
                    .set_earliest(Timer::Attach, sent + self.cfg.join_timeout);
                return;
            }
            self.attach.avoid.insert(sn, now + AVOID_FOR);
            self.attach.joining = None;
        }
        // A linked supernode: pick by RTT and load.
        let best = self
            .links
            .iter()
            .filter(|(id, l)| {
                l.role == Some(Role::Supernode) && !self.attach.avoid.contains_key(id)
            })
            .min_by_key(|(id, l)| {
                (
                    l.rtt.unwrap_or(SECS) + u64::from(l.load) * 100,
                    l.up_since,
                    **id,
                )
            })
            .map(|(id, _)| *id);
        if let Some(sn) = best {
            let request_id = self.rng.random();
            self.attach.joining = Some((sn, request_id, now));
            self.send(sn, Message::Join(Join { request_id }));
            self.timers
                .set_earliest(Timer::Attach, now + self.cfg.join_timeout);
            return;
        }
        // Nothing linked: dial candidates from the host cache, then bootstrap.
        let in_flight = self.dials.len();
        let mut dialed = 0;
        for (id, addrs) in self.attach_candidates() {
            if in_flight + dialed >= PARALLEL_ATTACH_DIALS {
                break;
            }
            if self.dial(now, id, addrs) {
                dialed += 1;
            }
        }
        if in_flight + dialed > 0 {
            self.timers
                .set_earliest(Timer::Attach, now + self.cfg.join_timeout);
        } else {
            self.back_off(now);
        }
    }

    fn attach_candidates(&self) -> Vec<(Option<NodeId>, Vec<String>)> {
        let usable =
            |id: &NodeId| !self.links.contains_key(id) && !self.attach.avoid.contains_key(id);
        let mut out: Vec<(Option<NodeId>, Vec<String>)> = self
            .host_cache()
            .into_iter()
            .filter(|e| usable(&e.id))
            .map(|e| (Some(e.id), e.addrs))
            .collect();
        for b in &self.cfg.bootstrap {
            if b.id
                .is_none_or(|id| usable(&id) && !self.host_cache.contains_key(&id))
            {
                out.push((b.id, b.addrs.clone()));
            }
        }
        out
    }

    /// Jittered exponential backoff: synchronized rejoin storms are how both
    /// big Skype outages began.
    fn back_off(&mut self, now: SimTime) {
        let exp = self.attach.attempts.min(16);
        let base = self
            .cfg
            .attach_backoff_initial
            .saturating_mul(1 << exp)
            .min(self.cfg.attach_backoff_max);
        let jittered = base / 2 + self.rng.random_range(0..=base);
        self.attach.attempts = self.attach.attempts.saturating_add(1);
        // Clear the avoid list so the next round may retry everyone.
        self.attach.avoid.clear();
        self.timers.set(Timer::Attach, now + jittered.max(MILLIS));
    }

    fn ensure_backups(&mut self, now: SimTime) {
        let have = self.backups().len();
        if have >= self.cfg.backups {
            return;
        }
        let mut need = self.cfg.backups - have;
        let candidates: Vec<HostCacheEntry> = self
            .host_cache()
            .into_iter()
            .filter(|e| {
                Some(e.id) != self.attach.primary
                    && !self.links.contains_key(&e.id)
                    && !self.attach.avoid.contains_key(&e.id)
            })
            .collect();
        for e in candidates {
            if need == 0 {
                break;
            }
            if self.dial(now, Some(e.id), e.addrs) {
                need -= 1;
            }
        }
    }

    // ----- timers -----

    /// Runs every timer due at `now`.
    pub fn handle_timeout(&mut self, now: SimTime) {
        if self.left {
            return;
        }
        for timer in self.timers.take_due(now) {
            match timer {
                Timer::Heartbeat => self.on_heartbeat_timer(now),
                Timer::Attach => self.on_attach_timer(now),
                Timer::Chat => self.on_chat_timer(now),
                Timer::TableRefresh => self.on_table_refresh(now),
                Timer::Lookup => self.on_lookup_timer(now),
            }
        }
    }

    fn on_attach_timer(&mut self, now: SimTime) {
        match self.cfg.role {
            Role::Ordinary => self.drive_attach(now),
            Role::Supernode => {
                if self.table.is_empty() && !self.cfg.bootstrap.is_empty() {
                    let boot = self.cfg.bootstrap.clone();
                    for b in boot {
                        if b.id != Some(self.id)
                            && b.id.is_none_or(|id| !self.links.contains_key(&id))
                        {
                            self.dial(now, b.id, b.addrs);
                        }
                    }
                    self.back_off(now);
                }
            }
        }
    }

    fn on_heartbeat_timer(&mut self, now: SimTime) {
        let tick = self.cfg.heartbeat_interval;
        let mut dead = Vec::new();
        let mut ping = Vec::new();
        for (id, l) in &self.links {
            let interval = if self.cfg.role == Role::Supernode && l.role == Some(Role::Supernode) {
                self.cfg.supernode_heartbeat_interval
            } else {
                tick
            };
            let dead_after = interval * u64::from(self.cfg.dead_after_missed);
            let silent = now.saturating_sub(l.last_heard);
            if l.role.is_none() && now.saturating_sub(l.up_since) >= self.cfg.join_timeout {
                dead.push((*id, "no hello"));
            } else if silent >= dead_after {
                dead.push((*id, "heartbeats missed"));
            } else if (silent >= interval / 2 && self.probes(id, l.role))
                || (silent >= interval * 3 / 2 && !self.clients.contains_key(id))
            {
                // The other end probes too once it has heard nothing for a
                // while: traffic may flow one way only. Our own clients are
                // not probed: heartbeating us is their job, and one that
                // stops is gone.
                ping.push(*id);
            }
        }
        for (peer, reason) in dead {
            self.act(Action::Disconnect {
                peer,
                reason: reason.to_string(),
            });
            self.link_lost(now, peer, reason);
        }
        for peer in ping {
            let nonce = self.rng.random();
            if let Some(l) = self.links.get_mut(&peer) {
                l.ping = Some((nonce, now));
            }
            self.send(peer, Message::Heartbeat(Heartbeat { nonce }));
        }
        self.dials.retain(|_, at| *at + self.cfg.join_timeout > now);
        if self.cfg.role == Role::Ordinary && self.attach.primary.is_some() {
            self.ensure_backups(now);
        }
        if now >= self.maintenance_due {
            self.on_maintenance(now);
        }
        self.timers.set(Timer::Heartbeat, now + tick);
    }

    /// Whether this end of the link to `peer` sends the heartbeats. One end
    /// probing is enough: the other hears the probe and the ack proves the
    /// way back, so each idle link costs one heartbeat and one ack per
    /// interval, not two of each. An ordinary node probes its supernodes
    /// (it needs their RTT and load to choose); between equals the lower id
    /// probes.
    fn probes(&self, peer: &NodeId, peer_role: Option<Role>) -> bool {
        match (self.cfg.role, peer_role) {
            (Role::Ordinary, Some(Role::Supernode)) => true,
            (Role::Supernode, Some(Role::Ordinary)) => false,
            _ => self.id < *peer,
        }
    }

    fn on_maintenance(&mut self, now: SimTime) {
        self.directory.expire(now);
        self.cache.expire(now);
        self.queries.retain(|_, at| *at + QUERY_TIMEOUT > now);
        let deadline = self.cfg.chat_deadline;
        let expired: Vec<u64> = self
            .traces
            .iter()
            .filter(|(_, t)| t.sent + deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for probe_id in expired {
            if let Some(t) = self.traces.remove(&probe_id) {
                self.emit(Event::TraceFailed {
                    probe_id,
                    to: t.to,
                    reason: ChatFailure::TimedOut,
                });
            }
        }
        if self.cfg.role == Role::Supernode && now >= self.last_refresh + self.cfg.record_refresh {
            self.last_refresh = now;
            let records: Vec<LocationRecord> = self
                .clients
                .values()
                .filter_map(|c| c.record.clone())
                .collect();
            for record in records {
                self.originate(now, record.node, Body::Publish(record), None);
            }
        }
        self.maintenance_due = now + MAINTENANCE_INTERVAL;
    }

    fn on_chat_timer(&mut self, now: SimTime) {
        for msg_id in self.outbox.due(now) {
            let Some(p) = self.outbox.get(&msg_id) else {
                continue;
            };
            if p.deadline <= now {
                let reason = if p.not_found > 0 {
                    ChatFailure::NotFound
                } else {
                    ChatFailure::TimedOut
                };
                let to = p.chat.to;
                self.outbox.remove(&msg_id);
                self.emit(Event::ChatFailed { to, msg_id, reason });
                continue;
            }
            let chat = p.chat.clone();
            let exp = p.attempts.min(16);
            let delay = self
                .cfg
                .chat_retry_initial
                .saturating_mul(1 << exp)
                .min(self.cfg.chat_retry_max);
            let delay = delay.min(p.deadline - now);
            let to = chat.to;
            let packet_id = self.originate(now, to, Body::Chat(chat), None);
            self.outbox.resent(&msg_id, packet_id, now, delay);
        }
        for c in self.inbox.release_stalled(now) {
            self.emit(Event::ChatReceived {
                from: c.from,
                msg_id: c.msg_id,
                seq: c.seq,
                body: c.body,
                hops: 0,
            });
        }
        let next = [self.outbox.next_wakeup(), self.inbox.next_wakeup()]
            .into_iter()
            .flatten()
            .min();
        if let Some(at) = next {
            self.timers.set(Timer::Chat, at.max(now + 1));
        }
    }

    fn on_table_refresh(&mut self, now: SimTime) {
        let closest: Vec<NodeId> = self
            .table
            .closest(&self.id, 3)
            .iter()
            .map(|e| e.id)
            .collect();
        for peer in closest {
            let request_id = self.rng.random();
            self.send(
                peer,
                Message::FindNeighbors(FindNeighbors {
                    request_id,
                    target: self.id,
                }),
            );
        }
        let all: Vec<NodeId> = self.table.iter().map(|e| e.id).collect();
        if !all.is_empty() {
            let peer = all[self.rng.random_range(0..all.len())];
            let mut target = [0u8; 32];
            self.rng.fill(&mut target[..]);
            let request_id = self.rng.random();
            self.send(
                peer,
                Message::FindNeighbors(FindNeighbors {
                    request_id,
                    target: NodeId(target),
                }),
            );
        }
        // Re-link supernodes we knew and lost that would fit in the table:
        // after a partition heals, no lookup inside either half would ever
        // reach the other half again.
        let lost: Vec<(NodeId, Vec<String>)> = self
            .host_cache
            .values()
            .filter(|e| {
                !self.links.contains_key(&e.id)
                    && !self.attach.avoid.contains_key(&e.id)
                    && self.table.has_room_for(&e.id)
            })
            .take(PARALLEL_ATTACH_DIALS)
            .map(|e| (e.id, e.addrs.clone()))
            .collect();
        for (id, addrs) in lost {
            self.dial(now, Some(id), addrs);
        }
        if self.table.is_empty() {
            self.timers.set_earliest(Timer::Attach, now);
        }
        self.timers
            .set(Timer::TableRefresh, now + self.cfg.table_refresh);
    }
}
