//! Building a node: its identity, its swarm and listeners, its core, and
//! the spawned task ([`start`]).

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::SwarmEvent;
use libp2p::{connection_limits, identify, mdns, noise, ping, tcp, yamux, Multiaddr, PeerId};
use skyhop_core::{BootstrapPeer, Node, SimTime};
use skyhop_protocol::{Identity, NodeId};
use tokio::sync::mpsc;

use super::super::clock::{core_seed, now_micros};
use super::super::db::History;
use super::super::handle::{MdnsMode, NodeHandle, NodeOptions};
use super::super::ip_limits::IpLimits;
use super::super::metrics::{ChatCounters, NodeMetrics};
use super::super::report::NodeInfo;
use super::super::{storage, RuntimeError};
use super::{
    Behaviour, BehaviourEvent, Inbox, NewStream, NodeTask, COMMAND_QUEUE, EXTRA_CONNECTIONS,
    HANDSHAKE_TIMEOUT, IDLE_CONNECTION_TIMEOUT, LISTEN_TIMEOUT, MAX_CONNECTIONS_PER_PEER,
    MAX_PENDING_INBOUND, MDNS_QUERY_INTERVAL, PROTOCOL,
};

/// Whether `addr` listens on every interface (0.0.0.0 or ::).
pub(super) fn is_unspecified(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| match p {
        Protocol::Ip4(ip) => ip.is_unspecified(),
        Protocol::Ip6(ip) => ip.is_unspecified(),
        _ => false,
    })
}

pub(super) fn is_loopback(addr: &Multiaddr) -> bool {
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

pub(super) fn without_p2p(addr: &Multiaddr) -> Multiaddr {
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
pub(super) fn load_identity(opts: &NodeOptions) -> Result<Identity, RuntimeError> {
    Ok(match (&opts.identity, &opts.data_dir) {
        (Some(i), _) => i.clone(),
        (None, Some(dir)) => storage::load_or_create_identity(dir)?,
        (None, None) => storage::fresh_identity(),
    })
}

/// Whether to run mDNS: as asked, or (auto) when some listen address is not
/// loopback.
pub(super) fn mdns_wanted(mode: MdnsMode, listen: &[Multiaddr]) -> bool {
    match mode {
        MdnsMode::On => true,
        MdnsMode::Off => false,
        MdnsMode::Auto => listen.iter().any(|a| !is_loopback(a)),
    }
}

/// The libp2p swarm: TCP + Noise + Yamux and QUIC, the limits, the stream, identify
/// and ping behaviours, and mDNS if `mdns_on`; at most `max_established`
/// inbound connections; its bandwidth is counted in `registry`.
pub(super) fn build_swarm(
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
pub(super) async fn listen(
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
pub(super) fn advertised(mut listen_addrs: Vec<Multiaddr>, peer_id: PeerId) -> Vec<String> {
    listen_addrs.sort_by_key(is_loopback);
    listen_addrs
        .into_iter()
        .map(|a| a.with(Protocol::P2p(peer_id)).to_string())
        .collect()
}

/// The core, configured with this node's addresses and bootstrap peers, its
/// host cache restored from the data directory.
pub(super) fn build_core(
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
pub(super) fn spawn_task(
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

pub(super) fn keep_early(
    early: &mut Vec<SwarmEvent<BehaviourEvent>>,
    ev: SwarmEvent<BehaviourEvent>,
) {
    if early.len() < MAX_EARLY_EVENTS {
        early.push(ev);
    }
}
