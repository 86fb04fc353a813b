//! [`Node`]: one skyhop node as a sans-IO state machine, and the facade
//! over its sub-machines. It takes every input, hands it to the sub-machine
//! that owns the state, and carries out what that sub-machine decides. This
//! file holds the state, the public inputs and the link and message
//! handling; `packets` holds the packet pipeline (originate, route,
//! forward, deliver), where the sub-machines meet, `ticks` the timers,
//! and `names` the name and location lookups and this node's name claim.
//!
//! # Implementation notes
//! Sub-machines never call each other: each gets the shared [`Ctx`] and
//! read access to what it needs, and returns a decision (a [`Route`], the
//! packets a home supernode must send, the ack a chat calls for). The order
//! in which the facade acts on those decisions is the order the node's
//! outputs and RNG draws take, which the simulator's byte-identical runs
//! depend on.
//!
//! [`Route`]: crate::routing::Route

use std::sync::Arc;

use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};
use skyhop_protocol::{
    Body, Hello, Identity, LocationRecord, Message, MsgId, NodeId, Role, SignatureMemo, Trace,
    Withdraw, WithdrawReason, MAX_ADDRS, PROTOCOL_VERSION,
};

use super::attach::Attach;
use super::config::{ConfigError, NodeConfig};
use super::context::{Ctx, Outputs};
use super::counters::{Counters, DropReason};
use super::delivery::{ChatDelivery, ChatError};
use super::events::{Action, Event, HostCacheEntry, Output, Status};
use super::home::Home;
use super::host_cache::HostCache;
use super::inbox::ReplayMark;
use super::links::Links;
use super::listing::Listing;
use super::lost::LostSupernodes;
use super::mailbox::Mailbox;
use super::names::{NameState, Names};
use super::pacer::Pacer;
use super::pending::{PendingRequests, Request};
use super::role::RoleControl;
use super::routing::Router;
use super::supernode::Supernode;
use super::table::NeighborTable;
use super::timers::{Timer, Timers};
use super::{SimTime, SECS};

mod listing;
mod mailbox;
mod messages;
mod names;
mod packets;
mod relay;
mod role_change;
mod ticks;

pub use relay::FrameVerdict;

/// How often records, caches and pending requests are expired, at least:
/// the work runs on the first heartbeat tick after the interval.
const MAINTENANCE_INTERVAL: SimTime = 5 * SECS;
/// How long a location query or neighbor request may stay unanswered.
const QUERY_TIMEOUT: SimTime = 5 * SECS;
/// Peers returned for a `FindNeighbors`.
const NEIGHBORS_RETURNED: usize = 20;
/// While the table is still growing, look up our own id again this soon.
const YOUNG_TABLE_REFRESH: SimTime = SECS;
/// Agent string sent in `Hello`.
const AGENT: &str = concat!("skyhop/", env!("CARGO_PKG_VERSION"));

/// One skyhop node: supernode or ordinary node, as a pure state machine.
///
/// # Calling contract
/// - Feed inputs with the `handle_*` methods (and [`Node::send_chat`],
///   [`Node::trace`], [`Node::leave`]), each carrying `now`, the driver's
///   current time in microseconds (monotonic; the simulator's virtual clock
///   or the runtime's wall clock read once per wake-up).
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
    /// Identity, configuration, RNG, timers, outputs and counters.
    ctx: Ctx,
    /// Open links, dials in flight, banned peers.
    links: Links,
    /// Supernodes known, for joining and rejoining.
    host_cache: HostCache,
    /// The supernode neighbor table (empty on an ordinary node).
    table: NeighborTable,
    /// Supernodes whose link closed lately, for honest absences.
    lost: LostSupernodes,
    /// Duties toward clients (a supernode's).
    supernode: Supernode,
    /// The clients that chose to be listed (a supernode's).
    listing: Listing,
    /// Records held as a home supernode.
    home: Home,
    /// Name claims held as a home supernode, and this node's own.
    names: Names,
    /// Chats kept as a home supernode for offline recipients.
    mailbox: Mailbox,
    /// Routing state: duplicate window, location cache, held packets.
    router: Router,
    /// Requests awaiting their reply.
    pending: PendingRequests,
    /// Chats sent and received.
    chats: ChatDelivery,
    /// How an ordinary node stays attached.
    attach: Attach,
    /// An ordinary node's own packets, paced to its peers' budgets.
    pacer: Pacer,
    /// When an auto-role node promotes or demotes itself.
    role: RoleControl,
    /// Housekeeping runs on the first heartbeat tick at or after this, so
    /// that it never costs a wake-up of its own.
    maintenance_due: SimTime,
    /// Whether the node has left; it is inert afterwards.
    left: bool,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Node({} {:?})", self.ctx.id.short(), self.ctx.cfg.role)
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
        if cfg.name.is_some() {
            timers.set(Timer::NameRefresh, now);
        }
        Ok(Node {
            table: NeighborTable::new(id, cfg.bucket_size),
            lost: LostSupernodes::new(id),
            home: Home::new(cfg.max_records),
            names: Names::new(cfg.max_names, cfg.name.clone()),
            mailbox: Mailbox::default(),
            router: Router::new(
                cfg.dedup_window,
                cfg.location_cache_size,
                cfg.location_cache_ttl,
            ),
            host_cache: HostCache::new(cfg.host_cache_size),
            links: Links::default(),
            supernode: Supernode::new(now),
            listing: Listing::default(),
            pending: PendingRequests::default(),
            chats: ChatDelivery::default(),
            attach: Attach::default(),
            pacer: Pacer::new(&cfg.budget, now),
            role: RoleControl::new(now),
            maintenance_due: now + MAINTENANCE_INTERVAL,
            left: false,
            ctx: Ctx {
                rng: Xoshiro256PlusPlus::seed_from_u64(seed),
                identity,
                id,
                timers,
                memo,
                out: Outputs::default(),
                cfg,
            },
        })
    }

    /// Seeds the host cache (from the runtime's file), keeping the newest
    /// entries within the bound.
    pub fn restore_host_cache(&mut self, entries: Vec<HostCacheEntry>) {
        for e in entries {
            if e.id != self.ctx.id {
                self.host_cache.restore(e);
            }
        }
    }

    /// What this supernode's mailbox keeps for offline recipients now, and
    /// the most it kept at once.
    pub fn mailbox_usage(&self) -> (crate::mailbox::Usage, crate::mailbox::Usage) {
        (self.mailbox.usage(), self.mailbox.peak())
    }

    /// Chats of ours stored on their recipients' homes, past their
    /// deadline, whose receipt is awaited.
    pub fn stored_chats(&self) -> usize {
        self.chats.awaiting()
    }

    /// Every chat author's replay mark, and the time at or before which
    /// chats of authors without a mark are refused: what the runtime saves.
    pub fn replay_marks(&self) -> (Vec<(NodeId, ReplayMark)>, u64) {
        self.chats.replay_marks()
    }

    /// `author`'s replay mark, if it has one, and the time before which
    /// chats of authors without a mark are refused: what the runtime saves
    /// with each received chat.
    pub fn replay_mark(&self, author: &NodeId) -> (Option<ReplayMark>, u64) {
        self.chats.replay_mark(author)
    }

    /// Chat `msg_id` of ours if a home of its recipient keeps it: what a
    /// runtime saves on `ChatStored`, to await the receipt past a restart.
    pub fn awaited_chat(&self, msg_id: &MsgId) -> Option<crate::chat::AwaitedChat> {
        self.chats.awaited(&self.ctx, msg_id)
    }

    /// Awaits the receipts of the stored chats saved before a restart.
    pub fn restore_awaited(&mut self, now: SimTime, chats: Vec<crate::chat::AwaitedChat>) {
        self.chats.restore_awaited(&mut self.ctx, now, chats);
    }

    /// Takes the replay marks saved before a restart (see [`Node::replay_marks`]).
    pub fn restore_replay_marks(
        &mut self,
        marks: Vec<(NodeId, ReplayMark)>,
        forgotten_before: u64,
    ) {
        self.chats.restore_replay_marks(marks, forgotten_before);
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.ctx.id
    }

    /// This node's role.
    pub fn role(&self) -> Role {
        self.ctx.cfg.role
    }

    /// The node's configuration.
    pub fn config(&self) -> &NodeConfig {
        &self.ctx.cfg
    }

    /// The primary supernode of an ordinary node.
    pub fn primary(&self) -> Option<NodeId> {
        self.attach.primary()
    }

    /// Whether this node can route: a supernode, or an attached ordinary node.
    pub fn is_routable(&self) -> bool {
        !self.left && (self.ctx.cfg.role == Role::Supernode || self.attach.primary().is_some())
    }

    /// Whether the node has left.
    pub fn has_left(&self) -> bool {
        self.left
    }

    /// The clients of a supernode.
    pub fn clients(&self) -> impl Iterator<Item = &NodeId> {
        self.supernode.clients()
    }

    /// Whether this supernode holds a live record of `node` attached to `sn`.
    pub fn holds_record(&self, node: &NodeId, sn: &NodeId, now: SimTime) -> bool {
        self.home
            .directory()
            .get(node, now)
            .is_some_and(|r| r.sn == *sn)
    }

    /// This node's name and where its claim stands.
    pub fn name_state(&self) -> Option<(&str, &NameState)> {
        self.names.own()
    }

    /// Name claims held as a home supernode.
    pub fn name_claims_held(&self) -> usize {
        self.names.len()
    }

    /// Supernodes in the neighbor table.
    pub fn table(&self) -> &NeighborTable {
        &self.table
    }

    /// Linked peers.
    pub fn links(&self) -> impl Iterator<Item = &NodeId> {
        self.links.peers()
    }

    /// Counters so far.
    pub fn counters(&self) -> &Counters {
        &self.ctx.out.counters
    }

    /// The host cache, newest first, for the runtime to persist.
    pub fn host_cache(&self) -> Vec<HostCacheEntry> {
        self.host_cache.newest_first()
    }

    /// A snapshot for status displays.
    pub fn status(&self) -> Status {
        Status {
            id: self.ctx.id,
            role: self.ctx.cfg.role,
            primary: self.attach.primary(),
            backups: self.links.backups(self.attach.primary()),
            clients: self.supernode.clients().copied().collect(),
            neighbors: self.table.iter().map(|e| e.id).collect(),
            links: self.links.peers().copied().collect(),
            records: self.home.directory().len(),
            cached_locations: self.router.cache().len(),
            host_cache: self.host_cache.len(),
            host_cache_verified: self.host_cache.verified_len(),
            pending_chats: self.chats.pending(),
            name: self.names.own().map(|(n, s)| (n.to_owned(), s.clone())),
            stored_chats: self.chats.awaiting(),
            mailbox_chats: self.mailbox.usage().chats,
            mailbox_bytes: self.mailbox.usage().bytes,
            counters: self.ctx.out.counters.clone(),
        }
    }

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
        self.ctx.out.poll()
    }

    /// When to call [`Node::handle_timeout`] next.
    pub fn poll_timeout(&self) -> Option<SimTime> {
        if self.left {
            return None;
        }
        self.ctx.timers.next()
    }

    // Links.

    /// A link to `peer` is open (its id authenticated by the driver).
    pub fn handle_link_up(&mut self, now: SimTime, peer: NodeId) {
        if peer == self.ctx.id || self.left || !self.links.up(&mut self.ctx, now, peer) {
            return;
        }
        let mut listen_addrs = self.ctx.cfg.listen_addrs.clone();
        listen_addrs.truncate(MAX_ADDRS);
        self.ctx.out.send(
            peer,
            Message::Hello(Hello {
                version: PROTOCOL_VERSION,
                role: self.ctx.cfg.role,
                id: self.ctx.id,
                listen_addrs,
                agent: AGENT.into(),
            }),
        );
    }

    /// Linked peer `peer` connects from `ip` (as the driver saw the
    /// connection): the supernodes it advertises count against that
    /// address's network group (see `host_cache`).
    pub fn handle_peer_ip(&mut self, peer: NodeId, ip: std::net::IpAddr) {
        if self.links.contains(&peer) {
            self.host_cache.note_source_ip(peer, ip);
        }
    }

    /// The link to `peer` closed.
    pub fn handle_link_down(&mut self, now: SimTime, peer: NodeId) {
        self.link_lost(now, peer, "link closed");
    }

    /// A dial requested by [`Action::Dial`] failed.
    pub fn handle_dial_failed(&mut self, now: SimTime, id: Option<NodeId>, addrs: &[String]) {
        self.links.dial_failed(id, addrs);
        self.attach
            .dial_failed(&mut self.ctx, &mut self.pending, now, id);
    }

    fn link_lost(&mut self, now: SimTime, peer: NodeId, reason: &str) {
        if self.links.remove(&peer).is_none() {
            return;
        }
        self.host_cache.forget_source(&peer);
        if self.table.remove(&peer) {
            self.lost.lost(now, peer);
            self.router.cache_mut().forget_supernode(&peer);
            self.supernode.homes_changed(&self.ctx, now);
        }
        self.listing.client_gone(&peer);
        if let Some(Some(record)) = self.supernode.client_lost(&peer) {
            let w = self.ctx.identity.withdraw_lost(record.node, record.seq);
            self.originate(now, w.node, Body::Withdraw(w), None);
        }
        self.attach
            .link_lost(&mut self.ctx, &mut self.pending, now, peer, reason);
    }

    fn misbehaved(&mut self, now: SimTime, peer: NodeId, reason: String) {
        self.ctx.out.counters.forged += 1;
        self.drop_peer(now, peer, reason);
    }

    /// Disconnects `peer`, tells the application why, and refuses the peer
    /// for an escalating time.
    fn drop_peer(&mut self, now: SimTime, peer: NodeId, reason: String) {
        self.ctx.out.counters.peers_banned += 1;
        self.ctx.out.emit(Event::PeerMisbehaved {
            peer,
            reason: reason.clone(),
        });
        self.ctx.out.act(Action::Disconnect { peer, reason });
        self.link_lost(now, peer, "dropped for misbehaving");
        self.links.ban(now, peer);
    }

    /// Tells `node`'s home supernodes that it is no longer attached here.
    fn withdraw(&mut self, now: SimTime, node: NodeId, seq: u64, reason: WithdrawReason) {
        let w = Withdraw {
            node,
            sn: self.ctx.id,
            seq,
            reason,
        };
        self.originate(now, node, Body::Withdraw(w), None);
    }

    /// Home supernodes hand records to a newcomer that is now among the
    /// `replicas` closest to them.
    fn hand_over_records(&mut self, now: SimTime, newcomer: NodeId) {
        let records: Vec<LocationRecord> =
            self.home
                .records_for_newcomer(&self.table, self.ctx.cfg.replicas, newcomer);
        for record in records {
            self.originate(now, newcomer, Body::Publish(record), None);
        }
        let claims = self
            .names
            .claims_for_newcomer(&self.table, self.ctx.cfg.replicas, newcomer);
        for claim in claims {
            let body = Body::NameClaim {
                request_id: 0,
                claim,
            };
            self.originate(now, newcomer, body, None);
        }
    }

    /// A peer was refused for speaking another protocol version (its
    /// `Hello` did not decode); counted as [`DropReason::UnknownVersion`].
    pub fn note_version_refused(&mut self) {
        self.ctx.out.drop(DropReason::UnknownVersion);
    }

    // Application inputs.

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
        let chat = self.chats.compose(&mut self.ctx, now, to, text)?;
        let msg_id = chat.msg_id;
        self.chats.track(&mut self.ctx, now, chat);
        self.push_chat(now, msg_id);
        Ok(msg_id)
    }

    /// Sends a trace probe to `to`; the path arrives as
    /// [`Event::TraceCompleted`] (or [`Event::TraceFailed`]).
    pub fn trace(&mut self, now: SimTime, to: NodeId) -> Result<u64, ChatError> {
        if self.left {
            return Err(ChatError::Left);
        }
        let placeholder = Request::Trace {
            to,
            packet_id: MsgId(0),
        };
        if !self.pending.has_room(&placeholder) {
            return Err(ChatError::TooManyTraces);
        }
        let probe_id = self.ctx.rng.random();
        let trace = Some(Trace(vec![self.ctx.id]));
        let packet_id = self.originate(now, to, Body::TraceProbe { probe_id }, trace);
        let deadline = now + self.ctx.cfg.chat_deadline;
        self.pending.insert(
            probe_id,
            Request::Trace { to, packet_id },
            now,
            Some(deadline),
        );
        Ok(probe_id)
    }

    /// Leaves the overlay gracefully: an ordinary node sends its supernode a
    /// signed `Leave`; every link is closed. The node is inert afterwards.
    pub fn leave(&mut self, now: SimTime) {
        if self.left {
            return;
        }
        // A drain cut short still hands its records over.
        self.hand_over_drained(now, SimTime::MAX);
        self.attach.leave(&mut self.ctx, now);
        let peers: Vec<NodeId> = self.links.peers().copied().collect();
        for peer in peers {
            self.ctx.out.act(Action::Disconnect {
                peer,
                reason: "leaving the overlay".into(),
            });
        }
        self.links.clear();
        self.left = true;
    }
}
