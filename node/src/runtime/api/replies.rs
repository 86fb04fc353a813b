//! The answers: status, counters, events, and the send and trace replies.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use skyhop_core::SimTime;
use skyhop_protocol::{MsgId, NodeId, Role};

use super::{wire, ListedNode, SendOutcome, StatusReport, TraceOutcome};

/// The answer to `GET /status`: the core's status plus the runtime's facts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// The node's id.
    pub id: NodeId,
    /// Its role.
    pub role: Role,
    /// Its primary supernode (ordinary nodes).
    pub primary: Option<NodeId>,
    /// Its linked backup supernodes (ordinary nodes).
    pub backups: Vec<NodeId>,
    /// Its clients (supernodes).
    pub clients: Vec<NodeId>,
    /// Supernodes in its neighbor table.
    pub neighbors: Vec<NodeId>,
    /// Every linked peer.
    pub links: Vec<NodeId>,
    /// Location records held as a home supernode.
    pub records: usize,
    /// Location-cache entries.
    pub cached_locations: usize,
    /// Host-cache entries.
    pub host_cache: usize,
    /// Chat messages awaiting an ack.
    pub pending_chats: usize,
    /// Chats of ours stored on offline recipients' homes, awaiting the
    /// receipt.
    #[serde(default)]
    pub stored_chats: usize,
    /// Chats this supernode keeps for offline recipients.
    #[serde(default)]
    pub mailbox_chats: usize,
    /// Their sealed bytes.
    #[serde(default)]
    pub mailbox_bytes: usize,
    /// What the node did.
    pub counters: Counters,
    /// Its libp2p peer id.
    pub peer_id: String,
    /// Where it listens (each ending in `/p2p/<peer id>`).
    pub listen_addrs: Vec<String>,
    /// Frames dropped because a neighbor's queue was full.
    pub dropped_frames: u64,
    /// Links this node closed (a ban, a dead link, a primary left).
    #[serde(default)]
    pub links_closed: u64,
    /// Links the peer or the transport ended.
    #[serde(default)]
    pub links_lost: u64,
    /// Inbound connections refused before the handshake.
    #[serde(default)]
    pub connections_refused: u64,
    /// Relayed packets whose body did not decode here (dropped; the relay
    /// that forwarded them unread keeps its link).
    #[serde(default)]
    pub bad_bodies_relayed: u64,
    /// Connected libp2p peers.
    pub connected_peers: usize,
    /// Whether the node picks its role itself (`--role auto`).
    #[serde(default)]
    pub auto_role: bool,
    /// What its dial-back check found: "unknown", "reachable" or
    /// "unreachable" (only an auto node asks).
    #[serde(default)]
    pub reachability: String,
    /// Times it promoted itself to supernode.
    #[serde(default)]
    pub promotions: u64,
    /// Times it demoted itself to ordinary node.
    #[serde(default)]
    pub demotions: u64,
    /// The name this node claims, if any.
    #[serde(default)]
    pub name: Option<String>,
    /// Where its claim stands: `claiming`, `held`, or `taken by ID`.
    #[serde(default)]
    pub name_state: Option<String>,
}

impl From<&StatusReport> for Status {
    fn from(report: &StatusReport) -> Status {
        let s = &report.status;
        Status {
            id: s.id,
            role: s.role,
            primary: s.primary,
            backups: s.backups.clone(),
            clients: s.clients.clone(),
            neighbors: s.neighbors.clone(),
            links: s.links.clone(),
            records: s.records,
            cached_locations: s.cached_locations,
            host_cache: s.host_cache,
            pending_chats: s.pending_chats,
            stored_chats: s.stored_chats,
            mailbox_chats: s.mailbox_chats,
            mailbox_bytes: s.mailbox_bytes,
            counters: Counters::from(&s.counters),
            peer_id: report.info.peer_id.to_string(),
            listen_addrs: report.info.listen_addrs.clone(),
            dropped_frames: report.dropped_frames,
            links_closed: report.abuse.links_closed,
            links_lost: report.abuse.links_lost,
            connections_refused: report.abuse.connections_refused,
            bad_bodies_relayed: report.abuse.bad_bodies_relayed,
            connected_peers: report.connected_peers,
            auto_role: report.role.auto,
            reachability: report.role.reachability.to_string(),
            promotions: report.role.promotions,
            demotions: report.role.demotions,
            name: s.name.as_ref().map(|(n, _)| n.clone()),
            name_state: s.name.as_ref().map(|(_, state)| match state {
                skyhop_core::NameState::Claiming => "claiming".to_string(),
                skyhop_core::NameState::Held => "held".to_string(),
                skyhop_core::NameState::Taken(by) => format!("taken by {by}"),
            }),
        }
    }
}

/// The core's counters on the wire.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Frames received, by kind.
    pub frames_in: BTreeMap<String, u64>,
    /// Frames sent, by kind.
    pub frames_out: BTreeMap<String, u64>,
    /// Routed packets forwarded to another node.
    pub forwarded: u64,
    /// Routed packets delivered to this node.
    pub delivered: u64,
    /// Packets and frames dropped, by reason ([`skyhop_core::DropReason`]'s
    /// names).
    pub dropped: BTreeMap<String, u64>,
    /// Signed statements rejected as forged.
    pub forged: u64,
    /// Frames over their sender's budget, by message class.
    #[serde(default)]
    pub over_budget: BTreeMap<String, u64>,
    /// Peers disconnected and refused for flooding or misbehaving.
    #[serde(default)]
    pub peers_banned: u64,
    /// Primaries left because they did not relay our probes.
    #[serde(default)]
    pub primaries_abandoned: u64,
    /// Links closed because a probe went unanswered (a neighbor suspected
    /// dead before heartbeats would tell).
    #[serde(default)]
    pub suspected: u64,
}

impl From<&skyhop_core::Counters> for Counters {
    fn from(c: &skyhop_core::Counters) -> Counters {
        let owned = |m: &BTreeMap<&'static str, u64>| {
            m.iter().map(|(k, v)| ((*k).to_string(), *v)).collect()
        };
        Counters {
            frames_in: owned(&c.frames_in),
            frames_out: owned(&c.frames_out),
            forwarded: c.forwarded,
            delivered: c.delivered,
            dropped: c
                .dropped
                .iter()
                .map(|(reason, n)| (reason.as_str().to_string(), *n))
                .collect(),
            forged: c.forged,
            over_budget: owned(&c.over_budget),
            peers_banned: c.peers_banned,
            primaries_abandoned: c.primaries_abandoned,
            suspected: c.suspected,
        }
    }
}

/// The answer to `GET /events`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Events {
    /// The cursor to pass back as `since`.
    #[serde(with = "super::id_string")]
    pub next: u64,
    /// The events, oldest first.
    pub events: Vec<LoggedEvent>,
}

impl Events {
    /// The answer for the events `list` read after `since`, the log's
    /// newest cursor being `newest`.
    pub fn from_log(list: &[(u64, skyhop_core::Event)], since: u64, newest: u64) -> Events {
        Events {
            next: list.last().map(|(c, _)| *c).unwrap_or(since.min(newest)),
            events: list
                .iter()
                .map(|(cursor, e)| LoggedEvent {
                    cursor: *cursor,
                    event: Event::from(e),
                })
                .collect(),
        }
    }
}

/// One event of the node's log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoggedEvent {
    /// Its place in the log.
    #[serde(with = "super::id_string")]
    pub cursor: u64,
    /// What happened.
    #[serde(flatten)]
    pub event: Event,
}

/// A core event on the wire, tagged by `"event"`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// This node changed its role by itself (auto role).
    RoleChanged {
        /// The role it has now.
        role: Role,
        /// Why.
        reason: String,
    },
    /// This ordinary node is attached to supernode `sn`.
    Attached {
        /// The primary supernode.
        sn: NodeId,
    },
    /// This ordinary node lost its primary supernode.
    Detached {
        /// The lost supernode.
        sn: NodeId,
        /// Why.
        reason: String,
    },
    /// A chat message arrived.
    ChatReceived {
        /// The author.
        from: NodeId,
        /// Its id.
        #[serde(with = "super::msg_id_string")]
        msg_id: MsgId,
        /// Its place in the conversation from `from`.
        #[serde(with = "super::id_string")]
        seq: u64,
        /// The text.
        body: String,
        /// Hops it took.
        hops: u8,
    },
    /// A chat message this node sent was acknowledged.
    ChatDelivered {
        /// The recipient.
        to: NodeId,
        /// Its id.
        #[serde(with = "super::msg_id_string")]
        msg_id: MsgId,
        /// Hops the message took.
        hops: u8,
        /// From first send to ack, in microseconds.
        latency: SimTime,
    },
    /// The recipient is offline: one of its home supernodes signed that it
    /// keeps this node's chat message until the recipient comes back.
    ChatStored {
        /// The recipient.
        to: NodeId,
        /// Its id.
        #[serde(with = "super::msg_id_string")]
        msg_id: MsgId,
        /// Home supernodes that keep it so far (of 3).
        copies: u8,
        /// The home supernode that signed this time.
        by: NodeId,
        /// Its deadline passed: it is sent no more and waits on its homes
        /// for the recipient.
        settled: bool,
    },
    /// A chat message this node sent will not be delivered.
    ChatFailed {
        /// The recipient.
        to: NodeId,
        /// Its id.
        #[serde(with = "super::msg_id_string")]
        msg_id: MsgId,
        /// Why.
        reason: Failure,
    },
    /// A trace probe came back.
    TraceCompleted {
        /// The probe's id.
        #[serde(with = "super::id_string")]
        probe_id: u64,
        /// The node traced.
        to: NodeId,
        /// The hops, this node first.
        path: Vec<NodeId>,
        /// Round trip in microseconds.
        rtt: SimTime,
    },
    /// A trace probe got no answer or a `NotFound`.
    TraceFailed {
        /// The probe's id.
        #[serde(with = "super::id_string")]
        probe_id: u64,
        /// The node traced.
        to: NodeId,
        /// Why.
        reason: Failure,
    },
    /// A peer sent something forged or invalid and was dropped.
    PeerMisbehaved {
        /// The peer.
        peer: NodeId,
        /// What it did.
        reason: String,
    },
    /// A location lookup was answered: `node` is online (its home holds a
    /// live record) or offline.
    Located {
        /// The node looked up.
        node: NodeId,
        /// Whether it is attached somewhere.
        online: bool,
    },
    /// This node's name is held by its home supernodes.
    NameClaimed {
        /// The name.
        name: String,
    },
    /// This node's name is held by another key: choose another.
    NameTaken {
        /// The name.
        name: String,
        /// Who holds it.
        holder: NodeId,
    },
    /// A name lookup was answered.
    NameResolved {
        /// The name.
        name: String,
        /// Who holds it; `None`: nobody.
        holder: Option<NodeId>,
    },
    /// Who is listed at this node's supernode was answered; `None`: the
    /// supernode did not answer. (Not kept in the event log: `GET /who`
    /// gives the answer to its caller.)
    Listing {
        /// The listed nodes.
        listed: Option<Vec<ListedNode>>,
    },
}

impl From<&skyhop_core::Event> for Event {
    fn from(e: &skyhop_core::Event) -> Event {
        use skyhop_core::Event as Core;
        match e.clone() {
            Core::Attached { sn } => Event::Attached { sn },
            Core::Detached { sn, reason } => Event::Detached { sn, reason },
            Core::ChatReceived {
                from,
                msg_id,
                seq,
                body,
                hops,
            } => Event::ChatReceived {
                from,
                msg_id,
                seq,
                body,
                hops,
            },
            Core::ChatDelivered {
                to,
                msg_id,
                hops,
                latency,
            } => Event::ChatDelivered {
                to,
                msg_id,
                hops,
                latency,
            },
            Core::ChatStored {
                to,
                msg_id,
                copies,
                by,
                settled,
            } => Event::ChatStored {
                to,
                msg_id,
                copies,
                by,
                settled,
            },
            Core::ChatFailed {
                to, msg_id, reason, ..
            } => Event::ChatFailed {
                to,
                msg_id,
                reason: reason.into(),
            },
            Core::TraceCompleted {
                probe_id,
                to,
                path,
                rtt,
            } => Event::TraceCompleted {
                probe_id,
                to,
                path,
                rtt,
            },
            Core::TraceFailed {
                probe_id,
                to,
                reason,
            } => Event::TraceFailed {
                probe_id,
                to,
                reason: reason.into(),
            },
            Core::PeerMisbehaved { peer, reason } => Event::PeerMisbehaved { peer, reason },
            Core::RoleChanged { role, reason } => Event::RoleChanged { role, reason },
            Core::NameClaimed { name } => Event::NameClaimed { name },
            Core::Located { node, online } => Event::Located { node, online },
            Core::NameTaken { name, holder } => Event::NameTaken { name, holder },
            Core::NameResolved { name, holder, .. } => Event::NameResolved { name, holder },
            Core::Listing { peers, .. } => Event::Listing {
                listed: peers.map(|p| p.into_iter().map(ListedNode::from).collect()),
            },
        }
    }
}

/// Why a chat or trace failed, in an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Failure {
    /// The recipient left or was lost.
    Offline,
    /// No home supernode knows the recipient.
    NotFound,
    /// No ack arrived before the deadline.
    TimedOut,
    /// The recipient may be online but is out of reach (a network
    /// partition): the supernode that said so lost its home supernodes.
    Unreachable,
}

impl From<skyhop_core::ChatFailure> for Failure {
    fn from(f: skyhop_core::ChatFailure) -> Failure {
        match f {
            skyhop_core::ChatFailure::Offline => Failure::Offline,
            skyhop_core::ChatFailure::NotFound => Failure::NotFound,
            skyhop_core::ChatFailure::TimedOut => Failure::TimedOut,
            skyhop_core::ChatFailure::Unreachable => Failure::Unreachable,
        }
    }
}

/// The answer to `POST /send`: `{"to", "delivered": true, "hops",
/// "latency_ms"}`, `{"to", "delivered": false, "reason"}`, or, for an
/// offline recipient whose home supernodes keep the chat, `{"to",
/// "delivered": false, "stored": k}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "wire::Send", try_from = "wire::Send")]
pub struct SendReply {
    /// The recipient, resolved to its full id.
    pub to: NodeId,
    /// Delivered or why not.
    pub outcome: SendOutcome,
}

/// The answer to `POST /trace`: `{"to", "ok": true, "path", "hops",
/// "rtt_ms"}` or `{"to", "ok": false, "reason"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "wire::Trace", try_from = "wire::Trace")]
pub struct TraceReply {
    /// The node traced, resolved to its full id.
    pub to: NodeId,
    /// The path or why none came back.
    pub outcome: TraceOutcome,
}
