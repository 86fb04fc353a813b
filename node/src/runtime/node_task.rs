//! The node task: one tokio task owning a libp2p `Swarm` (TCP + Noise +
//! Yamux and QUIC, chosen by the listen and dial addresses) and a
//! [`skyhop_core::Node`], in the Client / EventLoop shape of rust-libp2p's
//! file-sharing example. [`start`] builds both and returns a
//! [`NodeHandle`](super::handle::NodeHandle); everything else talks to the task through it.
//!
//! # Implementation notes
//! - The clock is read once per wake-up ([`super::clock::now_micros`]) and
//!   handed to the core with every input of that wake-up.
//! - One `/skyhop/1` stream per neighbor: only the side with the smaller
//!   PeerId opens it, as soon as a connection is established, so two nodes
//!   that dial each other at once still share one stream. If a newer stream
//!   arrives for a linked peer (the old one died unnoticed), the newer wins.
//! - Each link has a generation number; events from a replaced link's tasks
//!   are ignored.
//! - A core `Disconnect` closes the writer's queue; once the writer has
//!   flushed what was queued (a `Leave`, say), the connection is closed.
//! - Abuse: libp2p's connection limits bound pending and established
//!   connections (in all and per peer) and [`IpLimits`] bounds inbound
//!   connections per IP before the handshake; a peer the core drops for
//!   flooding or misbehaving has its IP refused too. Each link's frames
//!   come through a channel of its own and the links are served in turn
//!   (see `link`), so one fast peer slows only itself.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{BoxStream, SelectAll};
use futures::{FutureExt, StreamExt};
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::{ConnectionId, NetworkBehaviour, SwarmEvent};
use libp2p::{connection_limits, identify, mdns, ping, Multiaddr, PeerId, Stream, StreamProtocol};
use skyhop_protocol::{Body, Message, MsgId, NodeId, Role};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::clock::MonotonicClock;
use super::db::{History, Write};
use super::events_log::EventLog;
use super::handle::{Command, SendOutcome, TraceOutcome, SHUTDOWN_FLUSH};
use super::ip_limits::IpLimits;
use super::link::{LinkEvent, OutQueue};
use super::metrics::ChatCounters;
use super::names::NameBook;
use super::oplog::{OpKind, OpLog};
use super::presence::PresenceChecks;
use super::reachability::Reachability;
use super::report::{AbuseCounts, NodeInfo};
use super::storage;
use skyhop_core::{Action, Node, Output, SimTime};

mod build;
mod commands;
mod connections;
mod core_events;
mod link_events;

pub use build::{peer_of, start};

/// The skyhop stream protocol.
pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/skyhop/1");
/// Connections with no traffic are kept this long (links heartbeat anyway).
const IDLE_CONNECTION_TIMEOUT: Duration = Duration::from_secs(3600);
/// mDNS query interval.
const MDNS_QUERY_INTERVAL: Duration = Duration::from_secs(5);
/// Dials to mDNS-discovered peers in flight at most.
const MAX_MDNS_DIALS: usize = 16;
/// mDNS-discovered peers remembered at most.
const MAX_MDNS_PEERS: usize = 256;
/// Commands queued to the node task at most.
const COMMAND_QUEUE: usize = 256;
/// Link events handled at most per wake-up of the node task.
const LINK_EVENTS_PER_WAKE: usize = 128;
/// Work done per wake-up of the node task before it stops taking more link
/// events (a read's batch is handled whole): a frame forwarded from its
/// bytes counts 1, a frame the core handles counts [`HANDLED_FRAME_WORK`].
/// The core's outputs are queued to the link writers only when the wake-up
/// ends, so this bounds both what one wake-up can push onto a writer's
/// queue and how long the answers to frames handled early in a wake-up
/// wait behind the rest (a flood's chats each cost the supernode a lookup
/// and a signed answer).
const LINK_WORK_PER_WAKE: usize = 256;
/// What a frame the core decodes and handles counts against
/// [`LINK_WORK_PER_WAKE`]: handling (decoding, looking up, signing or
/// verifying) costs 10-100 times a forward from bytes.
const HANDLED_FRAME_WORK: usize = 8;
/// Inbound or opened streams queued to the node task at most.
const STREAM_QUEUE: usize = 256;
/// How long opening a stream may take.
const OPEN_STREAM_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for the listeners to report their addresses.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(5);
/// A wake-up of the node task that takes longer than this, from its wake
/// to the end of its drain, is logged with what woke it: every link waits
/// while the task is busy.
const SLOW_WAKE: Duration = Duration::from_millis(50);
/// How often connections without a stream are swept.
const HOUSEKEEPING_INTERVAL: Duration = Duration::from_secs(5);
/// Housekeeping ticks between writes of the host cache (30 s).
const HOST_CACHE_SAVE_TICKS: u64 = 6;
/// How long a connection may stay without a `/skyhop/1` stream.
const STREAM_SETUP_TIMEOUT: SimTime = 15 * skyhop_core::SECS;
/// Connected peers allowed besides a supernode's clients.
const EXTRA_CONNECTIONS: usize = 512;
/// Inbound connections still in their handshake, at most.
const MAX_PENDING_INBOUND: u32 = 128;
/// Connections to one peer at most (two when both dial at once, and a
/// reachability dial-back).
const MAX_CONNECTIONS_PER_PEER: u32 = 3;
/// How long a connection may take to be set up (TCP, Noise, Yamux).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Remote IPs remembered for connected peers, at most.
const MAX_PEER_IPS: usize = 8192;
/// Recent chat partners remembered for `/who` and prefix resolution.
const MAX_RECENT_PARTNERS: usize = 256;
/// PeerIds remembered for NodeIds seen on connections.
const MAX_PEER_IDS: usize = 8192;
/// Housekeeping ticks between applications of the history's age bound (60 s).
const HISTORY_PRUNE_TICKS: u64 = 12;
/// Received chats remembered whose storing failed, so that their receipts
/// stay withheld (see `NodeTask::drain`).
const MAX_UNSTORED: usize = 4096;
/// Shortest gap between two operator lines about a failing history.
const HISTORY_WARN_EVERY: SimTime = 60 * skyhop_core::SECS;
/// Core outputs whose room [`NodeTask::drain`] keeps between wake-ups.
const KEEP_OUTPUTS: usize = 1024;
/// Longest sleep between wake-ups when the core asks for none.
const MAX_SLEEP: Duration = Duration::from_secs(60);

/// The libp2p behaviours of a node. The limits come first: libp2p asks the
/// behaviours in field order, so a refused connection costs nothing else.
#[derive(NetworkBehaviour)]
struct Behaviour {
    /// Inbound connections per IP, and refused IPs.
    ip_limits: IpLimits,
    /// Pending and established connections, in all and per peer.
    limits: connection_limits::Behaviour,
    /// The `/skyhop/1` streams, one per neighbor.
    stream: libp2p_stream::Behaviour,
    /// Tells peers our addresses and agent version.
    identify: identify::Behaviour,
    /// Keeps connections measured and alive.
    ping: ping::Behaviour,
    /// LAN discovery, when on.
    mdns: Toggle<mdns::tokio::Behaviour>,
}

/// A `/skyhop/1` stream for the node task, or why opening one failed.
enum NewStream {
    /// A stream accepted from `peer` or opened to it.
    Opened {
        /// The peer at the other end.
        peer: PeerId,
        /// The stream.
        stream: Stream,
    },
    /// Opening a stream to `peer` failed.
    OpenFailed {
        /// The peer.
        peer: PeerId,
        /// Why, for the log.
        reason: String,
    },
}

/// A live link: its stream's reader and writer tasks and the writer's queue.
struct LinkHandle {
    /// Tells this link's events from a replaced link's.
    generation: u64,
    /// The peer at the other end.
    peer: PeerId,
    /// Frames for the writer, bounded in frames and bytes.
    queue: OutQueue,
    /// The reader task.
    reader: JoinHandle<()>,
    /// The writer task.
    writer: JoinHandle<()>,
}

/// A dial in flight.
struct PendingDial {
    /// The node dialed, when known.
    id: Option<NodeId>,
    /// The addresses tried, to report a failure to the core.
    addrs: Vec<String>,
    /// Asked for by the core (else an mDNS discovery).
    from_core: bool,
}

/// Everything one node's task owns.
struct NodeTask {
    /// The libp2p swarm.
    swarm: libp2p::Swarm<Behaviour>,
    /// The sans-IO node.
    core: Node,
    /// Opens `/skyhop/1` streams.
    control: libp2p_stream::Control,
    /// This node's peer id.
    local_peer: PeerId,
    /// Live links by neighbor.
    links: BTreeMap<NodeId, LinkHandle>,
    /// The generation the next link gets.
    next_generation: u64,
    /// Peers a stream is being opened to.
    opening: BTreeSet<PeerId>,
    /// The clock, read once per wake-up.
    clock: MonotonicClock,
    /// Connected peers without a link yet, since when.
    streamless: BTreeMap<PeerId, SimTime>,
    /// Peers mDNS found and has not seen expire, with an address each: mDNS
    /// reports a peer once, so a first contact that fails (a race between
    /// two simultaneous dials can leave one end with a stream the other
    /// never saw) must be retried from here.
    mdns_peers: BTreeMap<PeerId, Multiaddr>,
    /// The PeerIds of NodeIds seen on connections (at most [`MAX_PEER_IDS`]).
    peer_ids: BTreeMap<NodeId, PeerId>,
    /// The remote IP of each connected peer (at most [`MAX_PEER_IPS`]), to
    /// refuse it when the core drops the peer.
    peer_ips: BTreeMap<PeerId, std::net::IpAddr>,
    /// Every link's events, served in turn.
    inbound: SelectAll<BoxStream<'static, LinkEvent>>,
    /// Dials in flight.
    dials: BTreeMap<ConnectionId, PendingDial>,
    /// Writers of closed links still flushing.
    closing: Vec<JoinHandle<()>>,
    /// Connections to close once the writer of that generation has flushed.
    disconnect_after_flush: BTreeMap<u64, PeerId>,
    /// Callers waiting for a chat's outcome.
    sends: BTreeMap<MsgId, oneshot::Sender<SendOutcome>>,
    /// Callers waiting for a trace, by probe id.
    traces: BTreeMap<u64, oneshot::Sender<TraceOutcome>>,
    /// Recent chat partners, newest last (at most [`MAX_RECENT_PARTNERS`]).
    recent: VecDeque<NodeId>,
    /// Frames dropped on a full or missing link queue.
    dropped_frames: Arc<AtomicU64>,
    /// Abuse figures for status and metrics: links closed and connections
    /// refused.
    abuse: AbuseCounts,
    /// Recent events, shared with every handle.
    events: Arc<EventLog>,
    /// Chats sent and their outcomes, for `/metrics`.
    chats: Arc<ChatCounters>,
    /// libp2p's metrics, fed every swarm event (none in a task not built
    /// by [`start`]).
    p2p_metrics: Option<libp2p::metrics::Metrics>,
    /// The operator's log lines, rate-limited per kind.
    oplog: OpLog,
    /// Who this node is.
    info: NodeInfo,
    /// Where the host cache is saved, if anywhere.
    data_dir: Option<PathBuf>,
    /// The chat history and contacts (none without a data dir).
    history: Option<History>,
    /// History writes from commands, committed with the next batch.
    history_pending: Vec<Write>,
    /// Received chats (author, id) whose storing failed, and chats kept
    /// for others whose saving failed (author, id): their receipts and
    /// "stored" notices are withheld (at most [`MAX_UNSTORED`], oldest
    /// forgotten first).
    unstored: VecDeque<(NodeId, MsgId)>,
    /// When the operator was last told the history fails.
    history_warned: Option<SimTime>,
    /// Given to the accept loop and to stream openers.
    stream_tx: mpsc::Sender<NewStream>,
    /// The core's outputs being acted on, kept for the next wake-up (see
    /// [`NodeTask::drain`]).
    out_batch: Vec<Output>,
    /// The dial-back check, both sides.
    reach: Reachability,
    /// Name lookups in flight and the pins' checks.
    names: NameBook,
    /// Listings asked for and who waits for them.
    who: super::listing::WhoWaits,
    /// When each contact's presence was last asked of its home supernodes.
    presence: PresenceChecks,
}

/// What the stream tasks send the node task (links have their own).
struct Inbox {
    /// Streams accepted or opened, and failed opens.
    streams: mpsc::Receiver<NewStream>,
}

// Lives for one wake-up on the stack.
#[allow(clippy::large_enum_variant)]
enum Wake {
    Swarm(Box<SwarmEvent<BehaviourEvent>>),
    Link(LinkEvent),
    Stream(NewStream),
    Command(Option<Command>),
    Timer,
    Housekeeping,
}

impl Wake {
    /// What woke the task, for the log.
    fn name(&self) -> &'static str {
        match self {
            Wake::Swarm(_) => "swarm",
            Wake::Link(_) => "link",
            Wake::Stream(_) => "stream",
            Wake::Command(_) => "command",
            Wake::Timer => "timer",
            Wake::Housekeeping => "housekeeping",
        }
    }
}

impl NodeTask {
    /// A task for `core` on `swarm`, with nothing linked yet, and the inbox
    /// its link and stream tasks will write to.
    fn new(
        swarm: libp2p::Swarm<Behaviour>,
        core: Node,
        control: libp2p_stream::Control,
        info: NodeInfo,
        data_dir: Option<PathBuf>,
        now: SimTime,
    ) -> (NodeTask, Inbox) {
        let (stream_tx, streams) = mpsc::channel(STREAM_QUEUE);
        let task = NodeTask {
            swarm,
            core,
            control,
            local_peer: info.peer_id,
            links: BTreeMap::new(),
            next_generation: 1,
            opening: BTreeSet::new(),
            clock: MonotonicClock::starting_at(now),
            streamless: BTreeMap::new(),
            mdns_peers: BTreeMap::new(),
            peer_ids: BTreeMap::new(),
            peer_ips: BTreeMap::new(),
            inbound: SelectAll::new(),
            dials: BTreeMap::new(),
            closing: Vec::new(),
            disconnect_after_flush: BTreeMap::new(),
            sends: BTreeMap::new(),
            traces: BTreeMap::new(),
            recent: VecDeque::new(),
            dropped_frames: Arc::new(AtomicU64::new(0)),
            abuse: AbuseCounts::default(),
            events: Arc::new(EventLog::default()),
            chats: Arc::new(ChatCounters::default()),
            p2p_metrics: None,
            oplog: OpLog::default(),
            info,
            data_dir,
            history: None,
            history_pending: Vec::new(),
            unstored: VecDeque::new(),
            history_warned: None,
            stream_tx,
            out_batch: Vec::new(),
            reach: Reachability::default(),
            names: NameBook::default(),
            who: Default::default(),
            presence: PresenceChecks::default(),
        };
        (task, Inbox { streams })
    }

    /// The node's loop: every wake-up reads the clock once, handles what
    /// woke it, and drains the core; on shutdown (or when every handle is
    /// gone) the node leaves, flushes its links and saves its host cache.
    async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        inbox: Inbox,
        accept_task: JoinHandle<()>,
        early: Vec<SwarmEvent<BehaviourEvent>>,
    ) {
        let Inbox {
            streams: mut stream_rx,
        } = inbox;
        let now = self.clock.now();
        for ev in early {
            self.on_swarm_event(now, ev);
        }
        let mut housekeeping = tokio::time::interval(HOUSEKEEPING_INTERVAL);
        housekeeping.tick().await;
        let mut ticks = 0u64;
        let mut shutdown_reply = None;
        let mut now = self.clock.now();
        let mut woke: Option<(SimTime, &'static str)> = None;
        loop {
            if self.core.poll_timeout().is_some_and(|t| t <= now) {
                self.core.handle_timeout(now);
            }
            self.drain(now);
            if let Some((at, why)) = woke.take() {
                // A second read of the clock, for the log only.
                let took = self.clock.now().saturating_sub(at);
                if took > SLOW_WAKE.as_micros() as SimTime {
                    let ms = took / 1_000;
                    tracing::warn!(woke_by = why, ms, "a wake-up of the node task took {ms} ms");
                }
            }
            let sleep = self
                .core
                .poll_timeout()
                .map(|t| Duration::from_micros(t.saturating_sub(now)))
                .unwrap_or(MAX_SLEEP)
                .min(MAX_SLEEP);
            let wake = tokio::select! {
                ev = self.swarm.select_next_some() => Wake::Swarm(Box::new(ev)),
                Some(ev) = self.inbound.next() => Wake::Link(ev),
                Some(s) = stream_rx.recv() => Wake::Stream(s),
                cmd = commands.recv() => Wake::Command(cmd),
                _ = tokio::time::sleep(sleep) => Wake::Timer,
                _ = housekeeping.tick() => Wake::Housekeeping,
            };
            // The one clock read of this wake-up.
            now = self.clock.now();
            woke = Some((now, wake.name()));
            self.swarm.behaviour_mut().ip_limits.set_now(now);
            match wake {
                Wake::Swarm(ev) => self.on_swarm_event(now, *ev),
                Wake::Link(ev) => {
                    let mut work = self.on_link_event(now, ev);
                    // Frames arrive in bursts: take what is already queued
                    // in this wake-up instead of one select (a swarm poll, a
                    // new timer, a clock read) per read. The links take
                    // turns, one read's batch each.
                    for _ in 1..LINK_EVENTS_PER_WAKE {
                        if work >= LINK_WORK_PER_WAKE {
                            break;
                        }
                        match self.inbound.next().now_or_never() {
                            Some(Some(ev)) => work += self.on_link_event(now, ev),
                            _ => break,
                        }
                    }
                }
                Wake::Stream(s) => self.on_new_stream(now, s),
                Wake::Command(Some(Command::Shutdown(reply))) => {
                    shutdown_reply = Some(reply);
                    break;
                }
                Wake::Command(Some(cmd)) => self.on_command(now, cmd),
                Wake::Command(None) => break,
                Wake::Timer => {}
                Wake::Housekeeping => {
                    ticks += 1;
                    self.sweep_streamless(now);
                    self.check_reachability(now);
                    if self.core.role() == Role::Ordinary && self.core.primary().is_none() {
                        let known: Vec<(PeerId, Multiaddr)> = self
                            .mdns_peers
                            .iter()
                            .map(|(p, a)| (*p, a.clone()))
                            .collect();
                        self.dial_mdns_peers(now, known);
                    }
                    if ticks.is_multiple_of(HOST_CACHE_SAVE_TICKS) {
                        self.save_host_cache();
                    }
                    if ticks.is_multiple_of(HISTORY_PRUNE_TICKS) {
                        if let Some(Err(e)) = self.history.as_mut().map(|h| h.prune_age(now)) {
                            self.warn_history(now, &e);
                        }
                    }
                }
            }
        }
        let now = self.clock.now();
        self.core.leave(now);
        self.drain(now);
        let writers: Vec<JoinHandle<()>> = std::mem::take(&mut self.closing)
            .into_iter()
            .chain(std::mem::take(&mut self.links).into_values().map(|l| {
                l.reader.abort();
                l.writer
            }))
            .collect();
        let _ = tokio::time::timeout(SHUTDOWN_FLUSH, futures::future::join_all(writers)).await;
        self.save_host_cache();
        accept_task.abort();
        if let Some(reply) = shutdown_reply {
            let _ = reply.send(());
        }
    }

    fn save_host_cache(&self) {
        if let Some(dir) = &self.data_dir {
            if let Err(e) = storage::save_host_cache(dir, &self.core.host_cache()) {
                tracing::warn!("{e}");
            }
        }
    }

    /// Acts on every core output until the core has nothing more to say.
    ///
    /// The outputs are taken in batches, and each batch's chats are
    /// committed to the history ([`NodeTask::record_history`]) before any
    /// output of the batch is acted on. A received chat's event and its
    /// receipt come from the same input, hence the same batch, so the
    /// receipt reaches its link writer only once the chat is on disk:
    /// "delivered" means stored by the recipient, whatever order the core
    /// lists them in. Acting on a batch can make more outputs (a failed
    /// dial, say): they form the next batch.
    ///
    /// A chat that arrives ahead of a gap in its sender's numbering is
    /// held by the core and acknowledged only when it is handed out (the
    /// gap fills or times out), in the batch of its `ChatReceived`.
    ///
    /// The batch's `Vec` is kept between calls: an output is about 400
    /// bytes, and a new one per wake-up, grown by doubling past glibc's
    /// mmap threshold, cost a relay page faults and copies on every
    /// wake-up (9% of its CPU in the profile in BENCHMARKS.md).
    fn drain(&mut self, now: SimTime) {
        let mut batch = std::mem::take(&mut self.out_batch);
        loop {
            batch.extend(std::iter::from_fn(|| self.core.poll_output()));
            if batch.is_empty() {
                break;
            }
            self.record_history(now, &batch);
            for out in batch.drain(..) {
                self.act_on(now, out);
            }
        }
        batch.shrink_to(KEEP_OUTPUTS);
        self.out_batch = batch;
        self.closing.retain(|h| !h.is_finished());
    }

    /// Whether `t` is this node's receipt for a chat it failed to store,
    /// or its "stored" notice for a chat its mailbox failed to save.
    fn withheld(&self, t: &skyhop_core::Transmit) -> bool {
        if self.unstored.is_empty() {
            return false;
        }
        match &t.msg {
            Message::Routed(p) if p.src == self.info.node_id => match &p.body {
                Body::ChatAck(r) => self.unstored.contains(&(p.dst, r.msg_id)),
                Body::MailboxStored(n) => self.unstored.contains(&(p.dst, n.msg_id)),
                _ => false,
            },
            _ => false,
        }
    }

    /// Acts on one core output.
    fn act_on(&mut self, now: SimTime, out: Output) {
        {
            match out {
                Output::Event(e) => self.on_core_event(e),
                Output::Transmit(t) => {
                    if let Message::Redirect(r) = &t.msg {
                        let message = format!(
                            "full: redirecting a joining client to {} other supernodes",
                            r.supernodes.len()
                        );
                        self.oplog
                            .note(now, OpKind::Redirect, false, &t.to.short(), &message);
                    }
                    self.transmit(t)
                }
                Output::Action(Action::Dial { id, addrs }) => self.dial(now, id, addrs, true),
                Output::Action(Action::Disconnect { peer, reason }) => {
                    let message = format!("dropping the peer: {reason}");
                    self.oplog
                        .note(now, OpKind::PeerDropped, false, &peer.short(), &message);
                    self.close_link(peer);
                }
            }
        }
    }

    /// Queues a frame on its link's writer; a full or missing queue drops
    /// it (counted).
    fn transmit(&mut self, t: skyhop_core::Transmit) {
        if self.withheld(&t) {
            return;
        }
        match self.links.get(&t.to) {
            Some(link) => {
                if !link.queue.push(&t.msg, t.to) {
                    self.dropped_frames.fetch_add(1, Ordering::Relaxed);
                }
            }
            None => {
                self.dropped_frames.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn remember_partner(&mut self, id: NodeId) {
        self.recent.retain(|r| *r != id);
        if self.recent.len() >= MAX_RECENT_PARTNERS {
            self.recent.pop_front();
        }
        self.recent.push_back(id);
    }

    /// On each housekeeping tick: answers dial-backs that took too long,
    /// gives up on this node's own requests that went unanswered, and asks
    /// its supernodes to dial it back if it is an attached ordinary node
    /// with auto role on that does not know yet that it is reachable.
    fn check_reachability(&mut self, now: SimTime) {
        for connection in self.reach.lingered(now) {
            self.swarm.close_connection(connection);
        }
        for (peer, res) in self.reach.expire_serving(now) {
            self.send_now(peer, Message::DialBackResult(res));
        }
        let verdict = self.reach.expire_asked(now);
        self.apply_verdict(verdict);
        if !self.core.config().auto_role.enabled || self.core.role() != Role::Ordinary {
            return;
        }
        let status = self.core.status();
        let Some(primary) = status.primary else {
            return;
        };
        let supernodes: Vec<NodeId> = std::iter::once(primary)
            .chain(status.backups.iter().copied())
            .collect();
        let listen = self.core.config().listen_addrs.clone();
        for (sn, req) in self.reach.ask(now, &supernodes, &listen) {
            tracing::debug!(sn = %sn.short(), "asking for a dial-back");
            self.send_now(sn, Message::DialBack(req));
        }
    }

    /// Queues a frame the runtime itself sends (not the core).
    fn send_now(&mut self, to: NodeId, msg: Message) {
        self.transmit(skyhop_core::Transmit { to, msg });
    }
}
