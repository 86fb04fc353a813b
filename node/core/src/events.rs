//! What a [`super::Node`] hands back to its driver: frames to send, links to
//! open or close, events for the application, counters and status.

use serde::Serialize;
use skyhop_protocol::{Message, MsgId, NodeId, Role};

use super::counters::Counters;
use super::SimTime;

/// A frame for a directly linked peer.
#[derive(Clone, Debug, PartialEq)]
pub struct Transmit {
    /// The neighbor to send to.
    pub to: NodeId,
    /// What to send.
    pub msg: Message,
}

/// What [`super::Node::poll_output`] hands the driver.
// A transmit is as large as the message it carries; boxing it would cost an
// allocation per frame, and an `Output` only lives from poll to dispatch.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    /// News for the application.
    Event(Event),
    /// A frame to write to a linked peer.
    Transmit(Transmit),
    /// A link to open or close.
    Action(Action),
}

/// A link change the driver should make.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Open a link to this node; report it with `handle_link_up` (or, if it
    /// fails, `handle_dial_failed`).
    Dial {
        /// The node's id, when known.
        id: Option<NodeId>,
        /// Addresses to try.
        addrs: Vec<String>,
    },
    /// Close the link to `peer`.
    Disconnect {
        /// The neighbor.
        peer: NodeId,
        /// Why, for the log.
        reason: String,
    },
}

/// Why a chat message or trace was not delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChatFailure {
    /// The recipient left or was lost: it is offline.
    Offline,
    /// No home supernode knows the recipient.
    NotFound,
    /// No ack arrived before the deadline.
    TimedOut,
    /// The recipient may be online but is out of reach: the supernode
    /// that said so lost the recipient's home supernodes lately (a network
    /// partition?) or cannot route to the supernode it is attached to.
    Unreachable,
}

impl std::fmt::Display for ChatFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ChatFailure::Offline => "recipient is offline",
            ChatFailure::NotFound => "recipient not found in the overlay",
            ChatFailure::TimedOut => "no acknowledgement before the deadline",
            ChatFailure::Unreachable => "recipient is unreachable from here (network partition?)",
        })
    }
}

/// Something the application should know.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// This ordinary node is attached to supernode `sn`.
    Attached {
        /// The primary supernode.
        sn: NodeId,
    },
    /// This node changed its role by itself (auto role): it promoted
    /// itself to supernode or demoted itself to ordinary node.
    RoleChanged {
        /// The role it has now.
        role: Role,
        /// Why, for the operator.
        reason: String,
    },
    /// This ordinary node lost its primary supernode.
    Detached {
        /// The lost supernode.
        sn: NodeId,
        /// Why.
        reason: String,
    },
    /// A chat message arrived (in order per sender).
    ChatReceived {
        /// The author.
        from: NodeId,
        /// Its id.
        msg_id: MsgId,
        /// Its conversation position.
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
        msg_id: MsgId,
        /// Hops the message took.
        hops: u8,
        /// From first send to ack, in microseconds.
        latency: SimTime,
    },
    /// A home supernode of the recipient (offline) signed that it keeps a
    /// chat message this node sent, to hand over when the recipient comes
    /// back: "stored", `copies` of the homes so far.
    ChatStored {
        /// The recipient.
        to: NodeId,
        /// Its id.
        msg_id: MsgId,
        /// Distinct home supernodes that signed so far.
        copies: u8,
        /// The home supernode that signed this time (the latest, when
        /// `settled`).
        by: NodeId,
        /// The chat's deadline passed: it is sent no more, and waits on
        /// its homes for the recipient, until delivered or their retention
        /// ends (then `ChatFailed`).
        settled: bool,
    },
    /// A chat message this node sent will not be delivered.
    ChatFailed {
        /// The recipient.
        to: NodeId,
        /// Its id.
        msg_id: MsgId,
        /// Why.
        reason: ChatFailure,
        /// Who said the recipient is offline or unknown, when someone did:
        /// the supernode (or the node itself) that answered.
        said_by: Option<NodeId>,
    },
    /// A trace probe came back.
    TraceCompleted {
        /// The probe's id.
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
        probe_id: u64,
        /// The node traced.
        to: NodeId,
        /// Why.
        reason: ChatFailure,
    },
    /// A peer sent something forged or invalid and was dropped.
    PeerMisbehaved {
        /// The peer.
        peer: NodeId,
        /// What it did.
        reason: String,
    },
    /// A location lookup was answered by `node`'s home supernodes: a live
    /// signed record (online) or their signed word that it is unknown or
    /// gone (offline).
    Located {
        /// The node looked up.
        node: NodeId,
        /// Whether a home holds a live record of it.
        online: bool,
    },
    /// A home supernode of `name` holds this node's claim to it.
    NameClaimed {
        /// The name.
        name: String,
    },
    /// A home supernode of `name` refused this node's claim: another key
    /// holds it (its claim, signed by that key, is the proof).
    NameTaken {
        /// The name.
        name: String,
        /// The node that holds it.
        holder: NodeId,
    },
    /// The answer to a name lookup ([`super::Node::lookup_name`]).
    NameResolved {
        /// The lookup's id.
        request_id: u64,
        /// The name.
        name: String,
        /// The node that holds it, by its signed claim; `None`: nobody.
        holder: Option<NodeId>,
    },
    /// Who is attached to this node's supernode and chose to be listed
    /// (the answer to [`super::Node::who`]).
    Listing {
        /// The request's id.
        request_id: u64,
        /// The listed nodes, in id order; `None`: the supernode did not
        /// answer within the query timeout.
        peers: Option<Vec<skyhop_protocol::ListedPeer>>,
    },
}

/// One host-cache entry: a supernode this node has seen, for rejoining.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct HostCacheEntry {
    /// The supernode's id.
    pub id: NodeId,
    /// Its addresses.
    pub addrs: Vec<String>,
    /// When it was last seen alive (driver time).
    pub last_seen: SimTime,
    /// Whether this node linked to it and heard it say `Hello` as a
    /// supernode, rather than only being told of it (files written before
    /// the distinction read as not verified).
    #[serde(default)]
    pub verified: bool,
}

/// A snapshot of a node for `skyhop status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
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
    /// Of those, supernodes this node linked to and verified.
    pub host_cache_verified: usize,
    /// Chat messages awaiting an ack.
    pub pending_chats: usize,
    /// Of ours, chats stored on their offline recipients' homes, past
    /// their deadline, awaiting the receipt.
    pub stored_chats: usize,
    /// Chats (and receipts) this supernode keeps for nodes that are away.
    pub mailbox_chats: usize,
    /// Their bytes (a receipt counts as 180).
    pub mailbox_bytes: usize,
    /// Counters.
    pub counters: Counters,
    /// This node's name and where its claim stands, if it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<(String, crate::NameState)>,
}
