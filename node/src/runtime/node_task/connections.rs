//! Connections and streams: dialing, opening the one `/skyhop/1` stream
//! per neighbor, the dial-back check, and the swarm's events.

use std::collections::BTreeSet;

use futures::{AsyncReadExt, StreamExt};
use libp2p::metrics::Recorder;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{ConnectionId, DialError, SwarmEvent};
use libp2p::{mdns, Multiaddr, PeerId};
use skyhop_core::SimTime;
use skyhop_protocol::{Message, NodeId, Role};
use tokio::sync::mpsc;

use super::super::ip_limits::ip_of;
use super::super::link::{read_loop, write_loop, OutQueue, LINK_EVENTS};
use super::super::oplog::OpKind;
use super::super::reachability::{Serve, Verdict};
use super::build::{peer_of, without_p2p};
use super::{
    BehaviourEvent, LinkHandle, NewStream, NodeTask, PendingDial, MAX_MDNS_DIALS, MAX_MDNS_PEERS,
    MAX_PEER_IDS, MAX_PEER_IPS, OPEN_STREAM_TIMEOUT, PROTOCOL, STREAM_SETUP_TIMEOUT,
};

impl NodeTask {
    pub(super) fn dial(
        &mut self,
        now: SimTime,
        id: Option<NodeId>,
        addrs: Vec<String>,
        from_core: bool,
    ) {
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
    pub(super) fn maybe_open_stream(&mut self, peer: PeerId) {
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
    pub(super) fn dial_mdns_peers(&mut self, now: SimTime, found: Vec<(PeerId, Multiaddr)>) {
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
    pub(super) fn sweep_streamless(&mut self, now: SimTime) {
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

    pub(super) fn remember_peer(&mut self, peer: PeerId) {
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

    pub(super) fn on_new_stream(&mut self, now: SimTime, s: NewStream) {
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

    /// A peer's `DialBack`: dial it back on a fresh connection, or refuse.
    pub(super) fn serve_dial_back(
        &mut self,
        now: SimTime,
        from: NodeId,
        req: skyhop_protocol::DialBack,
    ) {
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
    pub(super) fn dial_back_done(&mut self, now: SimTime, connection: ConnectionId, reached: bool) {
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
    pub(super) fn apply_verdict(&mut self, verdict: Option<Verdict>) {
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

    pub(super) fn on_swarm_event(&mut self, now: SimTime, ev: SwarmEvent<BehaviourEvent>) {
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
