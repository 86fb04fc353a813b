//! The node task: one tokio task owning a libp2p `Swarm` (TCP + Noise +
//! Yamux and QUIC, chosen by the listen and dial addresses) and a
//! [`skyhop_core::Node`], in the Client / EventLoop shape of rust-libp2p's
//! file-sharing example. [`start`] builds both and returns a
//! [`NodeHandle`]; everything else talks to the task through it.
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
use futures::{AsyncReadExt, FutureExt, StreamExt};
use libp2p::metrics::Recorder;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{ConnectionId, DialError, NetworkBehaviour, SwarmEvent};
use libp2p::{
    connection_limits, identify, mdns, noise, ping, tcp, yamux, Multiaddr, PeerId, Stream,
    StreamProtocol,
};
use skyhop_protocol::{Body, Identity, Message, MsgId, NodeId, Role};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::clock::{core_seed, now_micros, MonotonicClock};
use super::db::{self, History, SaidBy, Write};
use super::events_log::EventLog;
use super::handle::{
    Command, KnownPeers, MdnsMode, NodeHandle, NodeOptions, SendOutcome, TraceOutcome,
    SHUTDOWN_FLUSH,
};
use super::ip_limits::{ip_of, IpLimits};
use super::link::{read_loop, write_loop, LinkEvent, OutQueue, LINK_EVENTS};

mod link_events;
use super::metrics::{ChatCounters, NodeMetrics};
use super::names::NameBook;
use super::oplog::{OpKind, OpLog};
use super::presence::PresenceChecks;
use super::reachability::{Reachability, Serve, Verdict};
use super::report::{AbuseCounts, NodeInfo, RoleReport, StatusReport};
use super::{storage, RuntimeError};
use skyhop_core::mailbox::{Change, Held};
use skyhop_core::{Action, BootstrapPeer, Event, Node, Output, SimTime};

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
/// Frames handled per wake-up of the node task before it stops taking
/// more link events (a read's batch is handled whole): the core's outputs
/// are queued to the link writers only when the wake-up ends, so this
/// bounds what one wake-up can push onto a writer's queue.
const LINK_FRAMES_PER_WAKE: usize = 256;
/// Inbound or opened streams queued to the node task at most.
const STREAM_QUEUE: usize = 256;
/// How long opening a stream may take.
const OPEN_STREAM_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for the listeners to report their addresses.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(5);
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

/// Whether `addr` listens on every interface (0.0.0.0 or ::).
fn is_unspecified(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| match p {
        Protocol::Ip4(ip) => ip.is_unspecified(),
        Protocol::Ip6(ip) => ip.is_unspecified(),
        _ => false,
    })
}

fn is_loopback(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| match p {
        Protocol::Ip4(ip) => ip.is_loopback(),
        Protocol::Ip6(ip) => ip.is_loopback(),
        _ => false,
    })
}

/// The peer id at the end of `addr`, if any.
pub fn peer_of(addr: &Multiaddr) -> Option<PeerId> {
    addr.iter().find_map(|p| match p {
        Protocol::P2p(peer) => Some(peer),
        _ => None,
    })
}

fn without_p2p(addr: &Multiaddr) -> Multiaddr {
    addr.iter()
        .filter(|p| !matches!(p, Protocol::P2p(_)))
        .collect()
}

/// Starts a node: builds its swarm, listens, restores its host cache and
/// spawns its task. Returns once the listen addresses are known.
pub async fn start(opts: NodeOptions) -> Result<NodeHandle, RuntimeError> {
    let identity = load_identity(&opts)?;
    let node_id = identity.id();
    let keypair = identity.libp2p_keypair();
    let peer_id = keypair.public().to_peer_id();
    let chats = Arc::new(ChatCounters::default());
    // libp2p registers its metrics under its own `libp2p` prefix.
    let mut registry = prometheus_client::registry::Registry::default();
    let max_established = opts.config.max_clients + EXTRA_CONNECTIONS;
    let mdns_on = mdns_wanted(opts.mdns, &opts.listen);
    let mut swarm = build_swarm(keypair, mdns_on, max_established, &mut registry)?;
    let p2p_metrics = libp2p::metrics::Metrics::new(&mut registry);
    let metrics = NodeMetrics::new(registry, chats.clone());
    let mut control = swarm.behaviour().stream.new_control();
    let incoming = control.accept(PROTOCOL).map_err(RuntimeError::Accept)?;
    let (listen_addrs, early) = listen(&mut swarm, &opts.listen).await?;
    let info = NodeInfo {
        node_id,
        peer_id,
        listen_addrs: advertised(listen_addrs, peer_id),
        role: opts.config.role,
    };
    let now = now_micros();
    let history = match &opts.data_dir {
        Some(dir) => Some(History::open(dir, opts.history, now)?),
        None => None,
    };
    let mut core = build_core(&opts, identity, &info.listen_addrs, now)?;
    if let Some(h) = &history {
        // The chats handed out before a restart stay refused.
        let (marks, forgotten_before) = h.replay_marks()?;
        core.restore_replay_marks(marks, forgotten_before);
        // The receipts of stored chats are still awaited, and what this
        // node kept for others as a home is still kept.
        core.restore_awaited(now, h.awaited(now)?);
        core.restore_mailbox(h.mailbox(now)?);
        core.journal_mailbox();
    }
    let (mut task, inbox) = NodeTask::new(swarm, core, control, info, opts.data_dir, now);
    task.history = history;
    task.chats = chats;
    task.p2p_metrics = Some(p2p_metrics);
    Ok(spawn_task(task, inbox, incoming, early, Arc::new(metrics)))
}

/// The node's identity: the one given, else `<data_dir>/key` (created on
/// first run), else a fresh one.
fn load_identity(opts: &NodeOptions) -> Result<Identity, RuntimeError> {
    Ok(match (&opts.identity, &opts.data_dir) {
        (Some(i), _) => i.clone(),
        (None, Some(dir)) => storage::load_or_create_identity(dir)?,
        (None, None) => storage::fresh_identity(),
    })
}

/// Whether to run mDNS: as asked, or (auto) when some listen address is not
/// loopback.
fn mdns_wanted(mode: MdnsMode, listen: &[Multiaddr]) -> bool {
    match mode {
        MdnsMode::On => true,
        MdnsMode::Off => false,
        MdnsMode::Auto => listen.iter().any(|a| !is_loopback(a)),
    }
}

/// The libp2p swarm: TCP + Noise + Yamux and QUIC, the limits, the stream, identify
/// and ping behaviours, and mDNS if `mdns_on`; at most `max_established`
/// inbound connections; its bandwidth is counted in `registry`.
fn build_swarm(
    keypair: libp2p::identity::Keypair,
    mdns_on: bool,
    max_established: usize,
    registry: &mut prometheus_client::registry::Registry,
) -> Result<libp2p::Swarm<Behaviour>, RuntimeError> {
    let limits = connection_limits::ConnectionLimits::default()
        .with_max_pending_incoming(Some(MAX_PENDING_INBOUND))
        .with_max_established_incoming(Some(u32::try_from(max_established).unwrap_or(u32::MAX)))
        .with_max_established_per_peer(Some(MAX_CONNECTIONS_PER_PEER));
    let swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(RuntimeError::Transport)?
        .with_quic()
        .with_bandwidth_metrics(registry)
        .with_behaviour(|key| {
            let mdns = if mdns_on {
                let cfg = mdns::Config {
                    query_interval: MDNS_QUERY_INTERVAL,
                    ..mdns::Config::default()
                };
                Some(mdns::tokio::Behaviour::new(cfg, key.public().to_peer_id())?)
            } else {
                None
            };
            Ok(Behaviour {
                ip_limits: IpLimits::default(),
                limits: connection_limits::Behaviour::new(limits),
                stream: libp2p_stream::Behaviour::new(),
                identify: identify::Behaviour::new(
                    identify::Config::new("/skyhop/1".into(), key.public())
                        .with_agent_version(concat!("skyhop/", env!("CARGO_PKG_VERSION")).into()),
                ),
                ping: ping::Behaviour::default(),
                mdns: Toggle::from(mdns),
            })
        })
        .map_err(RuntimeError::Behaviour)?
        .with_swarm_config(|c| c.with_idle_connection_timeout(IDLE_CONNECTION_TIMEOUT))
        .with_connection_timeout(HANDSHAKE_TIMEOUT)
        .build();
    Ok(swarm)
}

/// Listens on `addrs` and waits (at most [`LISTEN_TIMEOUT`]) until every
/// listener has reported its address. Returns the addresses and the swarm
/// events that arrived meanwhile (an mDNS discovery, an inbound
/// connection), for the node task to replay: mDNS reports a peer once.
async fn listen(
    swarm: &mut libp2p::Swarm<Behaviour>,
    addrs: &[Multiaddr],
) -> Result<(Vec<Multiaddr>, Vec<SwarmEvent<BehaviourEvent>>), RuntimeError> {
    let mut listeners = Vec::new();
    for addr in addrs {
        let id = swarm
            .listen_on(addr.clone())
            .map_err(|source| RuntimeError::Listen {
                addr: addr.clone(),
                source,
            })?;
        listeners.push(id);
    }
    let wildcard = addrs.iter().any(is_unspecified);
    let mut listen_addrs = Vec::new();
    let mut early = Vec::new();
    let wait_all = async {
        let mut reported = Vec::new();
        while reported.len() < listeners.len() {
            match swarm.select_next_some().await {
                SwarmEvent::NewListenAddr {
                    listener_id,
                    address,
                } => {
                    if !reported.contains(&listener_id) {
                        reported.push(listener_id);
                    }
                    listen_addrs.push(address);
                }
                SwarmEvent::ListenerClosed { reason, .. } => {
                    return Err(reason
                        .err()
                        .map_or(RuntimeError::ListenerClosed, RuntimeError::Listener))
                }
                SwarmEvent::ListenerError { error, .. } => {
                    return Err(RuntimeError::Listener(error))
                }
                other => keep_early(&mut early, other),
            }
        }
        // A wildcard listener reports one address per interface in a burst;
        // a specific address reports itself once, so only a wildcard waits
        // (the wait was most of a node's join time on loopback).
        let burst = if wildcard {
            Duration::from_millis(50)
        } else {
            Duration::ZERO
        };
        while let Ok(ev) = tokio::time::timeout(burst, swarm.select_next_some()).await {
            match ev {
                SwarmEvent::NewListenAddr { address, .. } => listen_addrs.push(address),
                other => keep_early(&mut early, other),
            }
        }
        Ok(())
    };
    tokio::time::timeout(LISTEN_TIMEOUT, wait_all)
        .await
        .map_err(|_| RuntimeError::ListenTimeout(LISTEN_TIMEOUT))??;
    Ok((listen_addrs, early))
}

/// The addresses to tell peers, each ending in `/p2p/<peer id>`: peers on
/// other hosts cannot use a loopback address, so the others come first and
/// the core's cap on addresses keeps them.
fn advertised(mut listen_addrs: Vec<Multiaddr>, peer_id: PeerId) -> Vec<String> {
    listen_addrs.sort_by_key(is_loopback);
    listen_addrs
        .into_iter()
        .map(|a| a.with(Protocol::P2p(peer_id)).to_string())
        .collect()
}

/// The core, configured with this node's addresses and bootstrap peers, its
/// host cache restored from the data directory.
fn build_core(
    opts: &NodeOptions,
    identity: Identity,
    listen_addrs: &[String],
    now: SimTime,
) -> Result<Node, RuntimeError> {
    let node_id = identity.id();
    let mut config = opts.config.clone();
    config.listen_addrs = listen_addrs.to_vec();
    config.bootstrap = opts
        .bootstrap
        .iter()
        .map(|a| BootstrapPeer {
            id: peer_of(a).map(|p| NodeId::from_peer_id(&p)),
            addrs: vec![a.to_string()],
        })
        .filter(|b| b.id != Some(node_id))
        .collect();
    let seed = opts
        .seed
        .unwrap_or_else(|| core_seed(&identity.secret_bytes()));
    let mut core = Node::new(config, identity, seed, now, Default::default())
        .map_err(RuntimeError::NodeConfig)?;
    if let Some(dir) = &opts.data_dir {
        core.restore_host_cache(storage::load_host_cache(dir));
    }
    Ok(core)
}

/// Spawns the accept loop and the node task; returns the handle to it.
fn spawn_task(
    task: NodeTask,
    inbox: Inbox,
    mut incoming: libp2p_stream::IncomingStreams,
    early: Vec<SwarmEvent<BehaviourEvent>>,
    metrics: Arc<NodeMetrics>,
) -> NodeHandle {
    let accept_tx = task.stream_tx.clone();
    // The accept loop only forwards: libp2p-stream drops streams when its
    // own queue is full, so it must never wait on anything else.
    let accept_task = tokio::spawn(async move {
        while let Some((peer, stream)) = incoming.next().await {
            if accept_tx
                .send(NewStream::Opened { peer, stream })
                .await
                .is_err()
            {
                break;
            }
        }
    });
    let (commands, command_rx) = mpsc::channel(COMMAND_QUEUE);
    let handle = NodeHandle {
        commands,
        info: task.info.clone(),
        events: task.events.clone(),
        chat_deadline: Duration::from_micros(task.core.config().chat_deadline),
        metrics,
    };
    tokio::spawn(task.run(command_rx, inbox, accept_task, early));
    handle
}

/// Swarm events kept from before the node task starts, at most.
const MAX_EARLY_EVENTS: usize = 1024;

fn keep_early(early: &mut Vec<SwarmEvent<BehaviourEvent>>, ev: SwarmEvent<BehaviourEvent>) {
    if early.len() < MAX_EARLY_EVENTS {
        early.push(ev);
    }
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
        loop {
            if self.core.poll_timeout().is_some_and(|t| t <= now) {
                self.core.handle_timeout(now);
            }
            self.drain(now);
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
            self.swarm.behaviour_mut().ip_limits.set_now(now);
            match wake {
                Wake::Swarm(ev) => self.on_swarm_event(now, *ev),
                Wake::Link(ev) => {
                    let mut frames = self.on_link_event(now, ev);
                    // Frames arrive in bursts: take what is already queued
                    // in this wake-up instead of one select (a swarm poll, a
                    // new timer, a clock read) per read. The links take
                    // turns, one read's batch each.
                    for _ in 1..LINK_EVENTS_PER_WAKE {
                        if frames >= LINK_FRAMES_PER_WAKE {
                            break;
                        }
                        match self.inbound.next().now_or_never() {
                            Some(Some(ev)) => frames += self.on_link_event(now, ev),
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

    /// Commits the history writes of `batch` (and those commands left
    /// pending) in one transaction. If that fails, the operator is told
    /// and the receipts of the chats not stored are withheld: the sender
    /// then hears "not delivered", which is true.
    fn record_history(&mut self, now: SimTime, batch: &[Output]) {
        let Some(history) = self.history.as_mut() else {
            return;
        };
        let mut writes = std::mem::take(&mut self.history_pending);
        writes.extend(batch.iter().filter_map(|out| match out {
            Output::Event(e) => history_write(e),
            _ => None,
        }));
        // A stored chat's receipt is awaited past a restart: saved on the
        // first notice (and again with its expiry when it settles).
        for out in batch {
            if let Output::Event(Event::ChatStored { msg_id, .. }) = out {
                if let Some(chat) = self.core.awaited_chat(msg_id) {
                    writes.push(Write::Awaited(chat));
                }
            }
        }
        // What this node's mailbox kept and dropped, before the notices
        // that promise it leave.
        let changes = self.core.mailbox_changes();
        writes.extend(changes.into_iter().map(Write::Mailbox));
        // Each author's mark as it stands after this batch, in the same
        // transaction as its chats.
        let authors: BTreeSet<NodeId> = batch
            .iter()
            .filter_map(|out| match out {
                Output::Event(Event::ChatReceived { from, .. }) => Some(*from),
                _ => None,
            })
            .collect();
        for author in authors {
            if let (Some(mark), forgotten_before) = self.core.replay_mark(&author) {
                writes.push(Write::ReplayMark {
                    author,
                    mark,
                    forgotten_before,
                });
            }
        }
        let peer_ids = &self.peer_ids;
        let stored = history.apply(&writes, now, |id| peer_ids.get(id).map(|p| p.to_string()));
        if let Err(e) = stored {
            self.warn_history(now, &e);
            for w in &writes {
                let unstored = match w {
                    Write::Received { from, msg_id, .. } => (*from, *msg_id),
                    // Not kept on disk: no "stored" notice promises it.
                    Write::Mailbox(Change::Kept(Held::Chat(k), _)) => (k.author, k.msg_id),
                    _ => continue,
                };
                if self.unstored.len() >= MAX_UNSTORED {
                    self.unstored.pop_front();
                }
                self.unstored.push_back(unstored);
            }
        }
    }

    /// Tells the operator the history fails, at most once a minute.
    fn warn_history(&mut self, now: SimTime, e: &db::DbError) {
        if self
            .history_warned
            .is_some_and(|at| now.saturating_sub(at) < HISTORY_WARN_EVERY)
        {
            return;
        }
        self.history_warned = Some(now);
        tracing::error!("{e}; chats received meanwhile are not acknowledged");
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

    fn on_core_event(&mut self, e: Event) {
        match &e {
            Event::ChatDelivered {
                to,
                msg_id,
                hops,
                latency,
            } => {
                self.chats.delivered.fetch_add(1, Ordering::Relaxed);
                self.remember_partner(*to);
                if let Some(reply) = self.sends.remove(msg_id) {
                    let _ = reply.send(SendOutcome::Delivered {
                        hops: *hops,
                        latency: *latency,
                    });
                }
            }
            Event::ChatFailed {
                msg_id,
                reason,
                said_by,
                ..
            } => {
                self.chats.failed(*reason);
                if let Some(reply) = self.sends.remove(msg_id) {
                    let why = failure_text(*reason, *said_by);
                    let _ = reply.send(SendOutcome::Failed(why));
                }
            }
            Event::ChatStored {
                msg_id,
                copies,
                settled,
                ..
            } => {
                // A send waits for all three homes, or for its deadline.
                if *settled || *copies >= 3 {
                    if let Some(reply) = self.sends.remove(msg_id) {
                        let _ = reply.send(SendOutcome::Stored { copies: *copies });
                    }
                }
            }
            Event::ChatReceived { from, .. } => self.remember_partner(*from),
            Event::TraceCompleted {
                probe_id,
                path,
                rtt,
                ..
            } => {
                if let Some(reply) = self.traces.remove(probe_id) {
                    let _ = reply.send(TraceOutcome::Completed {
                        path: path.clone(),
                        rtt: *rtt,
                    });
                }
            }
            Event::TraceFailed {
                probe_id, reason, ..
            } => {
                if let Some(reply) = self.traces.remove(probe_id) {
                    let _ = reply.send(TraceOutcome::Failed(reason.to_string()));
                }
            }
            Event::Attached { sn } => tracing::info!(sn = %sn.short(), "attached"),
            Event::RoleChanged { role, reason } => match role {
                Role::Supernode => tracing::info!("promoted to supernode: {reason}"),
                Role::Ordinary => tracing::info!("demoted to ordinary node: {reason}"),
            },
            Event::Detached { sn, reason } => {
                tracing::info!(sn = %sn.short(), "detached: {reason}")
            }
            Event::PeerMisbehaved { peer, reason } => {
                tracing::warn!(peer = %peer.short(), "peer misbehaved: {reason}");
                self.refuse_ip_of(*peer);
            }
            Event::Located { .. } => {}
            Event::NameClaimed { name } => {
                tracing::info!("name '{name}' is yours: its home supernodes hold your claim")
            }
            Event::NameTaken { name, holder } => tracing::error!(
                "name '{name}' is taken by key {}; choose another --name",
                holder.short()
            ),
            Event::Listing { request_id, peers } => {
                // An answer for its caller only: kept out of the event log,
                // where a page that polls /who would push chats out.
                let now = self.clock.now();
                self.who.answered(now, *request_id, peers.as_deref());
                return;
            }
            Event::NameResolved {
                request_id, holder, ..
            } => {
                let now = self.clock.now();
                self.names
                    .resolved(self.history.as_mut(), now, *request_id, *holder);
            }
        }
        self.events.push(e);
    }

    /// Refuses the IP of `peer`, whom the core dropped: its node id costs
    /// nothing to replace, its address does. Loopback is never refused:
    /// every local process shares it.
    fn refuse_ip_of(&mut self, peer: NodeId) {
        let ip = self
            .peer_ids
            .get(&peer)
            .and_then(|p| self.peer_ips.get(p))
            .copied();
        if let Some(ip) = ip.filter(|ip| !ip.is_loopback()) {
            let secs = self.swarm.behaviour_mut().ip_limits.refuse(ip) / skyhop_core::SECS;
            tracing::warn!(peer = %peer.short(), %ip, "refusing the peer's address for {secs} s");
        }
    }

    fn on_command(&mut self, now: SimTime, cmd: Command) {
        match cmd {
            Command::Status(reply) => {
                let _ = reply.send(StatusReport {
                    status: self.core.status(),
                    info: self.info.clone(),
                    dropped_frames: self.dropped_frames.load(Ordering::Relaxed),
                    abuse: self.abuse,
                    connected_peers: self.swarm.connected_peers().count(),
                    role: self.role_report(),
                });
            }
            Command::Peers(reply) => {
                let status = self.core.status();
                let _ = reply.send(KnownPeers {
                    clients: status.clients,
                    neighbors: status.neighbors,
                    links: status.links,
                    host_cache: self.core.host_cache().into_iter().map(|e| e.id).collect(),
                    recent: self.recent.iter().copied().collect(),
                    contacts: self
                        .history
                        .as_ref()
                        .and_then(|h| h.contact_ids().ok())
                        .unwrap_or_default(),
                });
            }
            Command::History { peer, limit, reply } => {
                let page = match &self.history {
                    Some(h) => h.page(peer, limit).map_err(RuntimeError::from),
                    None => Err(RuntimeError::NoHistory),
                };
                let _ = reply.send(page);
            }
            Command::Contacts(reply) => {
                let links = &self.links;
                let contacts = match &self.history {
                    Some(h) => h
                        .contacts(now, |id| links.contains_key(id))
                        .map_err(RuntimeError::from),
                    None => Err(RuntimeError::NoHistory),
                };
                // Ask the homes of those not asked lately; the answers show
                // from the next listing on.
                if let Ok(list) = &contacts {
                    let ids: Vec<NodeId> = list.iter().map(|c| c.id).collect();
                    self.presence.refresh(&mut self.core, now, ids);
                }
                let _ = reply.send(contacts);
            }
            Command::Send { to, text, reply } => {
                // Kept for the history, which the next drain commits before
                // the chat leaves.
                let body = self.history.is_some().then(|| text.clone());
                match self.core.send_chat(now, to, text) {
                    Ok(msg_id) => {
                        self.chats.sent.fetch_add(1, Ordering::Relaxed);
                        self.remember_partner(to);
                        self.sends.insert(msg_id, reply);
                        if let Some(body) = body {
                            self.history_pending.push(Write::Sent { to, msg_id, body });
                        }
                    }
                    Err(e) => {
                        self.chats.sent.fetch_add(1, Ordering::Relaxed);
                        self.chats.failed_refused.fetch_add(1, Ordering::Relaxed);
                        if let Some(body) = body {
                            self.history_pending.push(Write::Failed {
                                to,
                                msg_id: None,
                                body: Some(body),
                                reason: e.to_string(),
                                said_by: SaidBy::ThisNode,
                                offline: false,
                            });
                            // Nothing else may drain soon: commit it now.
                            self.record_history(now, &[]);
                        }
                        let _ = reply.send(SendOutcome::Failed(e.to_string()));
                    }
                }
            }
            Command::Trace { to, reply } => match self.core.trace(now, to) {
                Ok(probe_id) => {
                    self.traces.insert(probe_id, reply);
                }
                Err(e) => {
                    let _ = reply.send(TraceOutcome::Failed(e.to_string()));
                }
            },
            Command::PinnedName { name, reply } => {
                let pinned = self
                    .names
                    .pinned(&mut self.core, self.history.as_ref(), now, &name);
                let _ = reply.send(pinned);
            }
            Command::LookUpName { name, reply } => {
                self.names.look_up(&mut self.core, now, &name, reply);
            }
            Command::Repin { name, reply } => {
                let repinned = match self.history.as_mut() {
                    Some(h) => h.repin(&name, now).map_err(RuntimeError::from),
                    None => Err(RuntimeError::NoHistory),
                };
                if let Ok(Some(id)) = &repinned {
                    tracing::warn!("name '{name}' re-pinned to key {} by the user", id.short());
                }
                let _ = reply.send(repinned);
            }
            Command::Who(reply) => self.who.ask(&mut self.core, now, reply),
            Command::Shutdown(_) => unreachable!("handled by the loop"),
        }
    }

    fn dial(&mut self, now: SimTime, id: Option<NodeId>, addrs: Vec<String>, from_core: bool) {
        let parsed: Vec<Multiaddr> = addrs.iter().filter_map(|a| a.parse().ok()).collect();
        let mut peer = id.and_then(|id| self.peer_ids.get(&id).copied());
        if peer.is_none() {
            peer = parsed
                .iter()
                .filter_map(peer_of)
                .find(|p| id.is_none_or(|id| NodeId::from_peer_id(p) == id));
        }
        if let Some(p) = peer {
            if p == self.local_peer {
                if from_core {
                    self.core.handle_dial_failed(now, id, &addrs);
                }
                return;
            }
            if self.swarm.is_connected(&p) {
                // Connected without a link: the opener side opens the stream.
                self.maybe_open_stream(p);
                return;
            }
        }
        let opts = match (peer, parsed.first()) {
            (Some(p), _) => DialOpts::peer_id(p)
                .addresses(parsed.iter().map(without_p2p).collect())
                .build(),
            (None, Some(a)) => DialOpts::unknown_peer_id().address(a.clone()).build(),
            (None, None) => {
                tracing::debug!(?addrs, "no dialable address");
                if from_core {
                    self.core.handle_dial_failed(now, id, &addrs);
                }
                return;
            }
        };
        let connection = opts.connection_id();
        match self.swarm.dial(opts) {
            Ok(()) => {
                self.dials.insert(
                    connection,
                    PendingDial {
                        id,
                        addrs,
                        from_core,
                    },
                );
            }
            // Already dialing this peer (an mDNS dial, say): the link comes
            // up from that dial, so this is no failure.
            Err(DialError::DialPeerConditionFalse(_)) => {}
            Err(e) => {
                tracing::debug!(?addrs, "dial failed at once: {e}");
                if from_core {
                    self.core.handle_dial_failed(now, id, &addrs);
                }
            }
        }
    }

    /// Opens the skyhop stream to `peer` if this side is the opener (the
    /// smaller PeerId) and no link or open is under way.
    fn maybe_open_stream(&mut self, peer: PeerId) {
        if self.local_peer >= peer
            || self.links.contains_key(&NodeId::from_peer_id(&peer))
            || !self.opening.insert(peer)
        {
            return;
        }
        let mut control = self.control.clone();
        let tx = self.stream_tx.clone();
        tokio::spawn(async move {
            let result =
                tokio::time::timeout(OPEN_STREAM_TIMEOUT, control.open_stream(peer, PROTOCOL))
                    .await;
            let msg = match result {
                Ok(Ok(stream)) => NewStream::Opened { peer, stream },
                Ok(Err(e)) => NewStream::OpenFailed {
                    peer,
                    reason: e.to_string(),
                },
                Err(_) => NewStream::OpenFailed {
                    peer,
                    reason: "timed out".into(),
                },
            };
            let _ = tx.send(msg).await;
        });
    }

    /// Dials the mDNS-found peers this node is not connected to, while it
    /// needs them: an ordinary node until it is attached (at each discovery
    /// and at each housekeeping tick), a supernode at discovery, so that
    /// supernodes meet each other and unattached nodes meet supernodes.
    fn dial_mdns_peers(&mut self, now: SimTime, found: Vec<(PeerId, Multiaddr)>) {
        if self.core.role() == Role::Ordinary && self.core.primary().is_some() {
            return;
        }
        let mut seen = BTreeSet::new();
        for (peer, addr) in found {
            let busy = self.dials.values().filter(|d| !d.from_core).count();
            if peer == self.local_peer
                || self.swarm.is_connected(&peer)
                || busy >= MAX_MDNS_DIALS
                || !seen.insert(peer)
            {
                continue;
            }
            let addr = addr.with(Protocol::P2p(peer)).to_string();
            self.dial(now, Some(NodeId::from_peer_id(&peer)), vec![addr], false);
        }
    }

    /// Closes connections that got no `/skyhop/1` stream in time (the peer
    /// is not a skyhop node, or its opener failed).
    fn sweep_streamless(&mut self, now: SimTime) {
        let stale: Vec<PeerId> = self
            .streamless
            .iter()
            .filter(|(_, since)| now.saturating_sub(**since) >= STREAM_SETUP_TIMEOUT)
            .map(|(p, _)| *p)
            .collect();
        for peer in stale {
            self.streamless.remove(&peer);
            let id = NodeId::from_peer_id(&peer);
            if !self.links.contains_key(&id) {
                let message = format!("no {PROTOCOL} stream in time: disconnecting");
                self.oplog
                    .note(now, OpKind::Refused, false, &id.short(), &message);
                let _ = self.swarm.disconnect_peer_id(peer);
                self.core.handle_dial_failed(now, Some(id), &[]);
            }
        }
    }

    fn remember_peer(&mut self, peer: PeerId) {
        let id = NodeId::from_peer_id(&peer);
        if self.peer_ids.len() >= MAX_PEER_IDS && !self.peer_ids.contains_key(&id) {
            // Forget one that has no link; a full map of live links is fine.
            let stale = self
                .peer_ids
                .keys()
                .find(|k| !self.links.contains_key(k))
                .copied();
            if let Some(stale) = stale {
                self.peer_ids.remove(&stale);
            } else {
                return;
            }
        }
        self.peer_ids.insert(id, peer);
    }

    fn on_new_stream(&mut self, now: SimTime, s: NewStream) {
        let (peer, stream) = match s {
            NewStream::Opened { peer, stream } => (peer, stream),
            NewStream::OpenFailed { peer, reason } => {
                self.opening.remove(&peer);
                let id = NodeId::from_peer_id(&peer);
                let message = format!("cannot open {PROTOCOL}: {reason}");
                self.oplog
                    .note(now, OpKind::Refused, false, &id.short(), &message);
                if !self.links.contains_key(&id) {
                    // The connection stays: the peer's own stream may be
                    // queued behind this failure (both ends open one when
                    // each thinks it is the opener, as a hostile or broken
                    // peer may), and dropping the connection here lost it
                    // unread. A peer that opens none is closed by the
                    // sweep of stream-less connections.
                    self.core.handle_dial_failed(now, Some(id), &[]);
                }
                return;
            }
        };
        self.opening.remove(&peer);
        self.streamless.remove(&peer);
        if self.core.has_left() {
            return;
        }
        self.remember_peer(peer);
        let id = NodeId::from_peer_id(&peer);
        if let Some(old) = self.links.remove(&id) {
            // A newer stream replaces one that died unnoticed.
            self.oplog.note(
                now,
                OpKind::LinkClosed,
                false,
                &id.short(),
                "a newer stream from the peer replaces its old one",
            );
            old.reader.abort();
            self.closing.push(old.writer);
            self.core.handle_link_down(now, id);
        }
        let generation = self.next_generation;
        self.next_generation += 1;
        let (read_half, write_half) = stream.split();
        let (queue, out) = OutQueue::new();
        let (events_tx, events_rx) = mpsc::channel(LINK_EVENTS);
        let reader = tokio::spawn(read_loop(read_half, id, generation, events_tx.clone()));
        let writer = tokio::spawn(write_loop(write_half, out, id, generation, events_tx));
        // The stream ends once both tasks are done and their sender dropped.
        let events = futures::stream::unfold(events_rx, |mut rx| async move {
            rx.recv().await.map(|ev| (ev, rx))
        });
        self.inbound.push(events.boxed());
        self.links.insert(
            id,
            LinkHandle {
                generation,
                peer,
                queue,
                reader,
                writer,
            },
        );
        tracing::debug!(peer = %id.short(), "link up");
        self.core.handle_link_up(now, id);
        if let Some(ip) = self.peer_ips.get(&peer) {
            self.core.handle_peer_ip(id, *ip);
        }
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

    /// Auto role and reachability for status displays.
    fn role_report(&self) -> RoleReport {
        let (promotions, demotions) = self.core.role_changes();
        RoleReport {
            auto: self.core.config().auto_role.enabled,
            reachability: self.reach.verdict().as_str(),
            promotions,
            demotions,
            dial_backs: self.reach.counts,
        }
    }

    /// Queues a frame the runtime itself sends (not the core).
    fn send_now(&mut self, to: NodeId, msg: Message) {
        self.transmit(skyhop_core::Transmit { to, msg });
    }

    /// A peer's `DialBack`: dial it back on a fresh connection, or refuse.
    fn serve_dial_back(&mut self, now: SimTime, from: NodeId, req: skyhop_protocol::DialBack) {
        let peer = self.peer_ids.get(&from).copied();
        let observed = peer.and_then(|p| self.peer_ips.get(&p)).copied();
        let is_supernode = self.core.role() == Role::Supernode;
        tracing::debug!(peer = %from.short(), ?observed, addrs = ?req.addrs, "dial-back asked");
        let outcome = match (
            self.reach
                .on_request(now, from, observed, is_supernode, &req),
            peer,
        ) {
            (Serve::Dial(addrs), Some(peer)) => {
                let opts = DialOpts::peer_id(peer)
                    .addresses(addrs)
                    .condition(PeerCondition::Always)
                    .allocate_new_port()
                    .build();
                let connection = opts.connection_id();
                match self.swarm.dial(opts) {
                    Ok(()) => {
                        self.reach.dialing(now, connection, from, req.request_id);
                        return;
                    }
                    Err(e) => {
                        tracing::debug!(peer = %from.short(), "dial-back failed at once: {e}");
                        skyhop_protocol::DialBackOutcome::Failed
                    }
                }
            }
            (Serve::Dial(_), None) => skyhop_protocol::DialBackOutcome::Refused,
            (Serve::Answer(outcome), _) => outcome,
        };
        let res = skyhop_protocol::DialBackResult {
            request_id: req.request_id,
            outcome,
        };
        tracing::debug!(peer = %from.short(), ?outcome, "dial-back answered");
        self.send_now(from, Message::DialBackResult(res));
    }

    /// A dial-back connection came up (closed soon) or failed: tell the
    /// peer, unless a timeout already did.
    fn dial_back_done(&mut self, now: SimTime, connection: ConnectionId, reached: bool) {
        if reached {
            if let Some(old) = self.reach.linger(now, connection) {
                self.swarm.close_connection(old);
            }
        }
        if let Some((peer, res)) = self.reach.on_dial_outcome(connection, reached) {
            self.send_now(peer, Message::DialBackResult(res));
        }
    }

    /// Tells the core and the operator what the dial-back check found.
    fn apply_verdict(&mut self, verdict: Option<Verdict>) {
        match verdict {
            Some(Verdict::Reachable { by }) => {
                tracing::info!(sn = %by.short(), "reachable: a supernode dialed this node back");
                self.core.set_reachable(true);
            }
            Some(Verdict::Unreachable) => {
                tracing::info!(
                    "not reachable from outside: no supernode could dial this node back; it stays ordinary"
                );
                self.core.set_reachable(false);
            }
            Some(Verdict::Unknown) | None => {}
        }
    }

    fn on_swarm_event(&mut self, now: SimTime, ev: SwarmEvent<BehaviourEvent>) {
        if let Some(m) = &self.p2p_metrics {
            m.record(&ev);
            match &ev {
                SwarmEvent::Behaviour(BehaviourEvent::Identify(e)) => m.record(e),
                SwarmEvent::Behaviour(BehaviourEvent::Ping(e)) => m.record(e),
                _ => {}
            }
        }
        match ev {
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                ..
            } => {
                if self.reach.is_dial_back(connection_id) {
                    self.dial_back_done(now, connection_id, true);
                    return;
                }
                let id = NodeId::from_peer_id(&peer_id);
                if endpoint.is_listener()
                    && self.reach.was_asked(id)
                    && self.links.contains_key(&id)
                {
                    // The dial-back: the link runs on another connection.
                    let verdict = self.reach.on_inbound_connection(id);
                    self.apply_verdict(verdict);
                    self.swarm.close_connection(connection_id);
                    return;
                }
                self.dials.remove(&connection_id);
                if let Some(ip) = ip_of(endpoint.get_remote_address()) {
                    if self.peer_ips.len() < MAX_PEER_IPS || self.peer_ips.contains_key(&peer_id) {
                        self.peer_ips.insert(peer_id, ip);
                    }
                }
                self.remember_peer(peer_id);
                if !self.links.contains_key(&NodeId::from_peer_id(&peer_id)) {
                    self.streamless.entry(peer_id).or_insert(now);
                }
                self.maybe_open_stream(peer_id);
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                cause,
                ..
            } => {
                self.streamless.remove(&peer_id);
                self.peer_ips.remove(&peer_id);
                let id = NodeId::from_peer_id(&peer_id);
                if let Some(generation) = self.links.get(&id).map(|l| l.generation) {
                    let why = match cause {
                        Some(e) => format!("link closed: the connection failed: {e}"),
                        None => "link closed: the connection was closed".to_string(),
                    };
                    self.drop_link(now, id, generation, Some(why));
                }
            }
            SwarmEvent::OutgoingConnectionError {
                connection_id,
                error,
                ..
            } => {
                if self.reach.is_dial_back(connection_id) {
                    tracing::debug!("dial-back failed: {error}");
                    self.dial_back_done(now, connection_id, false);
                    return;
                }
                if let Some(d) = self.dials.remove(&connection_id) {
                    tracing::debug!(addrs = ?d.addrs, "dial failed: {error}");
                    if d.from_core {
                        self.core.handle_dial_failed(now, d.id, &d.addrs);
                    }
                }
            }
            SwarmEvent::IncomingConnectionError {
                send_back_addr,
                error: libp2p::swarm::ListenError::Denied { cause },
                peer_id,
                ..
            } => {
                // Refused by a connection limit or the per-IP cap: the
                // operator sees who, and why.
                let who = peer_id.map_or_else(
                    || send_back_addr.to_string(),
                    |p| NodeId::from_peer_id(&p).short(),
                );
                self.abuse.connections_refused += 1;
                let message = format!("refused an inbound connection: {cause}");
                self.oplog.note(now, OpKind::Refused, true, &who, &message);
            }
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::debug!(%address, "listening");
            }
            SwarmEvent::Behaviour(BehaviourEvent::Mdns(mdns::Event::Discovered(found))) => {
                for (peer, addr) in &found {
                    if self.mdns_peers.len() < MAX_MDNS_PEERS || self.mdns_peers.contains_key(peer)
                    {
                        self.mdns_peers.insert(*peer, addr.clone());
                    }
                }
                self.dial_mdns_peers(now, found);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Mdns(mdns::Event::Expired(gone))) => {
                for (peer, _) in gone {
                    self.mdns_peers.remove(&peer);
                }
            }
            _ => {}
        }
    }
}

/// The history write a core event makes, if any.
fn history_write(e: &Event) -> Option<Write> {
    Some(match e {
        Event::ChatReceived {
            from,
            msg_id,
            body,
            hops,
            ..
        } => Write::Received {
            from: *from,
            msg_id: *msg_id,
            body: body.clone(),
            hops: *hops,
        },
        Event::ChatStored {
            to,
            msg_id,
            copies,
            by,
            ..
        } => Write::Stored {
            to: *to,
            msg_id: *msg_id,
            copies: *copies,
            by: *by,
        },
        Event::ChatDelivered {
            to, msg_id, hops, ..
        } => Write::Delivered {
            to: *to,
            msg_id: *msg_id,
            hops: *hops,
        },
        Event::ChatFailed {
            to,
            msg_id,
            reason,
            said_by,
        } => Write::Failed {
            to: *to,
            msg_id: Some(*msg_id),
            body: None,
            reason: failure_text(*reason, *said_by),
            said_by: SaidBy::of_failure(*reason),
            offline: *reason == skyhop_core::ChatFailure::Offline,
        },
        // A location lookup's answer: a live record, or the homes' word.
        Event::Located { node, online } => Write::Presence {
            id: *node,
            online: *online,
        },
        // A trace is a location lookup and a round trip: its answer is
        // what this node can learn of a contact's presence.
        Event::TraceCompleted { to, .. } => Write::Presence {
            id: *to,
            online: true,
        },
        Event::TraceFailed {
            to,
            reason: skyhop_core::ChatFailure::Offline,
            ..
        } => Write::Presence {
            id: *to,
            online: false,
        },
        _ => return None,
    })
}

/// Why a chat failed, and who said so when someone did (the user can judge
/// it): what the sender is told and what its history keeps.
fn failure_text(reason: skyhop_core::ChatFailure, said_by: Option<NodeId>) -> String {
    match said_by {
        Some(by) => format!("{reason} (said by {})", by.short()),
        None => reason.to_string(),
    }
}
