//! Every message of `/skyhop/1`, protocol version 2.
//!
//! A [`Message`] is what one frame carries between two directly connected
//! nodes (a *link* message). A [`Packet`] is the routed envelope inside
//! [`Message::Routed`]: it travels hop by hop toward `dst`, and its [`Body`]
//! says what it is for. Field order here is wire order; PROTOCOL.md lists it
//! byte by byte, and changing either means changing the other and the golden
//! vectors.

use serde::{Deserialize, Serialize};

use crate::bounded::{self, Signature};
use crate::id::{MsgId, NodeId};
use crate::limits::*;

mod validate;

pub(crate) use validate::check_chat_text;
pub use validate::LimitError;

/// A raw ed25519 public key (32 bytes).
pub type PublicKey = [u8; 32];

/// A raw X25519 public key (32 bytes): the key chats to a node are sealed
/// to, bound to the node's identity by its signed location record.
pub type ChatKey = [u8; 32];

/// What a node is in the overlay.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
pub enum Role {
    /// An ordinary node: attaches to a supernode.
    Ordinary,
    /// A supernode: routes, serves clients, stores location records.
    Supernode,
}

/// A node and where it listens.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct PeerInfo {
    /// The node's id.
    pub id: NodeId,
    /// Its listen addresses (multiaddr text), at most [`MAX_ADDRS`].
    #[serde(deserialize_with = "bounded::vec::<_, _, MAX_ADDRS>")]
    pub addrs: Vec<String>,
}

/// The first message on every neighbor stream, in both directions.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Hello {
    /// The sender's protocol version; must come first so that a receiver can
    /// reject an unknown version before parsing the rest.
    pub version: u16,
    /// The sender's role.
    pub role: Role,
    /// The sender's id; must equal SHA-256 of the authenticated PeerId.
    pub id: NodeId,
    /// Where the sender listens, at most [`MAX_ADDRS`].
    #[serde(deserialize_with = "bounded::vec::<_, _, MAX_ADDRS>")]
    pub listen_addrs: Vec<String>,
    /// Free-form software name and version, at most [`MAX_AGENT_LEN`] bytes.
    pub agent: String,
}

/// An ordinary node asks a supernode to take it as a client.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Join {
    /// Echoed in the `Accept` or `Redirect`.
    pub request_id: u64,
}

/// A supernode takes the sender of a `Join` as its client.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Accept {
    /// The `Join`'s request id.
    pub request_id: u64,
    /// Clients the supernode serves, this one included.
    pub clients: u16,
    /// Clients it will serve at most.
    pub max_clients: u16,
    /// A sample of other supernodes, for backups and the host cache.
    #[serde(deserialize_with = "bounded::vec::<_, _, MAX_PEERS_PER_MESSAGE>")]
    pub supernodes: Vec<PeerInfo>,
}

/// A full supernode refuses a `Join` and points elsewhere.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Redirect {
    /// The `Join`'s request id.
    pub request_id: u64,
    /// Supernodes to try instead.
    #[serde(deserialize_with = "bounded::vec::<_, _, MAX_PEERS_PER_MESSAGE>")]
    pub supernodes: Vec<PeerInfo>,
}

/// A signed statement by `node` that it leaves supernode `sn` for good.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Leave {
    /// The leaving node.
    pub node: NodeId,
    /// Its ed25519 public key; must hash (via its PeerId) to `node`.
    pub public_key: PublicKey,
    /// The supernode it was attached to.
    pub sn: NodeId,
    /// Higher than the `seq` of every location record it published.
    pub seq: u64,
    /// Signature over [`crate::sign::leave_signed_bytes`].
    pub signature: Signature,
}

/// Liveness probe between neighbors; answered by [`HeartbeatAck`].
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Heartbeat {
    /// Echoed in the ack, to measure round-trip time.
    pub nonce: u64,
}

/// Answer to a [`Heartbeat`].
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct HeartbeatAck {
    /// The heartbeat's nonce.
    pub nonce: u64,
    /// Clients the sender serves (0 for an ordinary node): its load.
    pub clients: u16,
}

/// Ask a supernode for the supernodes it knows closest to `target`.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct FindNeighbors {
    /// Echoed in the `Neighbors` answer.
    pub request_id: u64,
    /// The id to search near.
    pub target: NodeId,
}

/// Answer to [`FindNeighbors`].
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Neighbors {
    /// The request's id.
    pub request_id: u64,
    /// Supernodes closest to the target that the sender knows, nearest first.
    #[serde(deserialize_with = "bounded::vec::<_, _, MAX_PEERS_PER_MESSAGE>")]
    pub peers: Vec<PeerInfo>,
}

/// A signed claim by `node` that it is attached to supernode `sn`.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct LocationRecord {
    /// The node the record describes, and that signed it.
    pub node: NodeId,
    /// Its ed25519 public key; must hash (via its PeerId) to `node`.
    pub public_key: PublicKey,
    /// The X25519 key chats to `node` are sealed to (see
    /// [`crate::seal`]); covered by the signature, so that it is the node's.
    pub chat_key: ChatKey,
    /// The supernode it is attached to.
    pub sn: NodeId,
    /// That supernode's addresses, at most [`MAX_ADDRS`].
    #[serde(deserialize_with = "bounded::vec::<_, _, MAX_ADDRS>")]
    pub sn_addrs: Vec<String>,
    /// The backup supernodes the node is also linked to, at most
    /// [`MAX_RECORD_BACKUPS`]: a sender whose chat was not acknowledged
    /// retries toward one of them, so that a primary that drops the node's
    /// traffic does not cut it off.
    #[serde(deserialize_with = "bounded::vec::<_, _, MAX_RECORD_BACKUPS>")]
    pub backups: Vec<NodeId>,
    /// Increases with every record the node signs; the highest wins.
    pub seq: u64,
    /// Seconds the record stays valid after a supernode receives it, at most
    /// [`MAX_RECORD_LIFETIME_S`].
    pub lifetime_s: u32,
    /// Signature over [`crate::sign::record_signed_bytes`].
    pub signature: Signature,
}

/// Why a supernode withdraws a location record.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum WithdrawReason {
    /// The node left gracefully; its signed `Leave` is the proof.
    Left(Leave),
    /// The supernode lost the node (stream closed or heartbeats missed);
    /// the supernode's signature is the proof that it says so.
    Lost(SupernodeProof),
}

/// A supernode's signature over a `Withdraw { Lost }`: only the supernode a
/// record names may say it lost the node.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct SupernodeProof {
    /// The withdrawing supernode's ed25519 key; must hash to `Withdraw.sn`.
    pub public_key: PublicKey,
    /// Signature over [`crate::sign::withdraw_lost_signed_bytes`].
    pub signature: Signature,
}

/// A supernode's notice that `node` is no longer attached to it.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Withdraw {
    /// The node that is gone.
    pub node: NodeId,
    /// The supernode it was attached to (the sender).
    pub sn: NodeId,
    /// The `seq` of the record being withdrawn.
    pub seq: u64,
    /// Why.
    pub reason: WithdrawReason,
}

/// A chat message, signed by its author. It never travels in clear: it is
/// the plaintext of a [`SealedChat`].
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct ChatMessage {
    /// The author.
    pub from: NodeId,
    /// The author's ed25519 public key; must hash (via its PeerId) to `from`.
    pub from_key: PublicKey,
    /// The recipient.
    pub to: NodeId,
    /// Unique per author; acks and duplicates are matched on it.
    pub msg_id: MsgId,
    /// Position in the conversation `from` -> `to`, starting at 1.
    pub seq: u64,
    /// The author's clock when sent, in microseconds (informational).
    pub sent_at: u64,
    /// UTF-8 text, at most [`MAX_CHAT_BODY`] bytes.
    pub body: String,
    /// Signature over [`crate::sign::chat_signed_bytes`].
    pub signature: Signature,
}

/// A [`ChatMessage`] encrypted to its recipient's [`ChatKey`] (a Noise `N`
/// message, see [`crate::seal`]): relays see its length only.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct SealedChat(#[serde(with = "bounded::bytes")] pub Vec<u8>);

/// The recipient's signed statement that it has the chat `msg_id` from
/// `author`: what makes a chat "delivered".
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct ChatReceipt {
    /// The recipient, which signed it.
    pub recipient: NodeId,
    /// The recipient's ed25519 public key; must hash to `recipient`.
    pub public_key: PublicKey,
    /// The chat's author.
    pub author: NodeId,
    /// The acknowledged message.
    pub msg_id: MsgId,
    /// Its conversation position.
    pub seq: u64,
    /// Hops the chat packet took to arrive.
    pub hops: u8,
    /// Signature over [`crate::sign::receipt_signed_bytes`].
    pub signature: Signature,
}

/// Why a routed packet could not be delivered.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum NotFoundReason {
    /// The destination's home supernodes hold no record of it.
    NoRecord,
    /// The destination left or was lost recently: it is offline.
    Offline,
    /// The packet's TTL ran out before it arrived.
    TtlExpired,
    /// A hop had no usable next hop (its links were down).
    NoRoute,
    /// The node may be online but out of this supernode's reach: the
    /// supernodes closer to it, its true home supernodes, were lost
    /// recently (a network partition, most likely), or its record names a
    /// supernode that cannot be routed to. Unlike `NoRecord`, this does not
    /// say that the node is unknown.
    Unreachable,
}

/// A node's signed statement that `node` could not be reached: the answer
/// to the packet or query `about`. Nobody can prove a node offline or
/// unknown, so a sender never fails a chat on it before the deadline; the
/// signature says who said it.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Absence {
    /// The id of the undeliverable packet (in `NotFound`) or the request
    /// id of the query (in `LocationReply`).
    pub about: u64,
    /// The node that could not be reached.
    pub node: NodeId,
    /// Why.
    pub reason: NotFoundReason,
    /// Who says so, and signed it.
    pub by: NodeId,
    /// `by`'s ed25519 public key; must hash to `by`.
    pub public_key: PublicKey,
    /// Signature over [`crate::sign::absence_signed_bytes`].
    pub signature: Signature,
}

/// A signed claim by `node` that it holds the user name `name`: stored on
/// the home supernodes of [`crate::name::name_key`]`(name)`, first come,
/// first served, refreshed by its owner and forgotten `lifetime_s` after a
/// supernode last received it.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct NameClaim {
    /// The name (see [`crate::name::check_name`]), at most
    /// [`crate::name::MAX_NAME_LEN`] bytes.
    pub name: String,
    /// The node that holds it, and signed the claim.
    pub node: NodeId,
    /// Its ed25519 public key; must hash (via its PeerId) to `node`.
    pub public_key: PublicKey,
    /// Increases with every claim the node signs; the highest wins.
    pub seq: u64,
    /// Seconds the claim stays valid after a supernode receives it, at most
    /// [`MAX_NAME_LIFETIME_S`].
    pub lifetime_s: u32,
    /// Signature over [`crate::sign::name_claim_signed_bytes`].
    pub signature: Signature,
}

/// What a routed packet carries.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum Body {
    /// A chat message for `dst`, sealed to it.
    Chat(SealedChat),
    /// `src` (the chat's recipient) has the chat message that `dst` (its
    /// author) sent; the receipt is signed by the recipient.
    ChatAck(ChatReceipt),
    /// The packet `absence.about` for `absence.node` could not be
    /// delivered, says the signer.
    NotFound(Absence),
    /// Asks `dst` to answer with the path this probe took (the packet's
    /// `trace` records it).
    TraceProbe {
        /// Echoed in the reply.
        probe_id: u64,
    },
    /// The path a probe took, source first.
    TraceReply {
        /// The probe's id.
        probe_id: u64,
        /// The hops, at most [`MAX_TRACE_HOPS`].
        #[serde(deserialize_with = "bounded::vec::<_, _, MAX_TRACE_HOPS>")]
        path: Vec<NodeId>,
    },
    /// Store this record; routed toward the record's node id, so that it ends
    /// at the node's home supernodes.
    Publish(LocationRecord),
    /// Remove a record; routed like `Publish`.
    Withdraw(Withdraw),
    /// Where is `node` attached? Routed toward `node`'s home supernodes.
    LocationQuery {
        /// Echoed in the reply.
        request_id: u64,
        /// The node looked up.
        node: NodeId,
    },
    /// Answer to a `LocationQuery`.
    LocationReply {
        /// The query's id.
        request_id: u64,
        /// The node looked up.
        node: NodeId,
        /// Its record, if the home supernode holds one.
        record: Option<LocationRecord>,
        /// With no record: the home's signed word that the node is unknown
        /// (`NoRecord`) or left or was lost recently (`Offline`). Ignored
        /// when a record is present.
        /// (Boxed: it is rare, and would double every packet's size.)
        absence: Option<Box<Absence>>,
    },
    /// An opaque application payload, at most [`MAX_DATAGRAM`] bytes.
    Datagram(#[serde(with = "bounded::bytes")] Vec<u8>),
    /// Claim (or refresh) a name; routed toward the name's key, so that it
    /// ends at the name's home supernodes. A home answers the claimant
    /// with a `NameReply` unless `request_id` is 0 (a replica's copy).
    NameClaim {
        /// Echoed in the reply; 0 asks for none.
        request_id: u64,
        /// The signed claim.
        claim: NameClaim,
    },
    /// Who holds `name`? Routed toward the name's key.
    NameQuery {
        /// Echoed in the reply.
        request_id: u64,
        /// The name looked up.
        name: String,
    },
    /// Answer to a `NameQuery` or `NameClaim`: the claim the home holds,
    /// signed by its holder (for a claim: the claimant's own if it was
    /// taken, another key's if the name is held by someone else).
    NameReply {
        /// The query's or claim's id.
        request_id: u64,
        /// The name asked about.
        name: String,
        /// The claim held, if any.
        claim: Option<NameClaim>,
    },
    /// Keep this sealed chat for its offline recipient `kept.node`: routed
    /// toward the recipient's home supernodes like `Publish`; the first
    /// home copies it to the others. Each home answers the author with a
    /// signed [`Body::MailboxStored`].
    MailboxStore(KeptChat),
    /// A home supernode's signed word that it keeps a chat for its
    /// recipient: what makes a chat "stored".
    MailboxStored(StoredNotice),
    /// A kept chat, handed over by a home supernode to its recipient `dst`
    /// once `dst` published a signed record.
    MailboxHandOver(KeptChat),
    /// The recipient `src` has the kept chat `msg_id` of `author`: its home
    /// supernode `dst` may drop it.
    ///
    /// The same answer drops a kept receipt: then `src` is the receipt's
    /// author and `author` the receipt's signer (the chat's recipient).
    MailboxTaken {
        /// The chat's author (for a receipt: its signer).
        author: NodeId,
        /// The chat.
        msg_id: MsgId,
    },
    /// Keep this receipt for the chat's author `receipt.author`, who is
    /// away: routed toward the author's home supernodes like `Publish`,
    /// sent by the node that found the author away; the first home copies
    /// it to the others. The receipt is its signer's word, so any node may
    /// carry it, and every home verifies it before keeping it.
    ReceiptStore(ChatReceipt),
    /// A kept receipt, handed over by a home supernode to the chat's author
    /// `dst` once `dst` published a signed record; `dst` answers with
    /// [`Body::MailboxTaken`].
    ReceiptHandOver(ChatReceipt),
}

/// A sealed chat kept for its recipient by the recipient's home
/// supernodes. Only `sealed` is the author's own word (signed inside the
/// seal); the rest is what the home matches and bounds it by.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct KeptChat {
    /// The chat's author, whom the homes answer.
    pub author: NodeId,
    /// The recipient.
    pub node: NodeId,
    /// The chat's id (also inside the seal).
    pub msg_id: MsgId,
    /// The chat, sealed to the recipient.
    pub sealed: SealedChat,
}

/// A home supernode's signed statement that it keeps chat `msg_id` of
/// `author` for `node` until `expires_at` (milliseconds).
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct StoredNotice {
    /// The kept chat.
    pub msg_id: MsgId,
    /// Its recipient.
    pub node: NodeId,
    /// Its author.
    pub author: NodeId,
    /// When the home drops it if not handed over.
    pub expires_at: u64,
    /// The home supernode that keeps it, and signed this.
    pub by: NodeId,
    /// `by`'s ed25519 public key; must hash to `by`.
    pub public_key: PublicKey,
    /// Signature over [`crate::sign::stored_signed_bytes`].
    pub signature: Signature,
}

/// The routed envelope: forwarded hop by hop toward `dst`.
///
/// On the wire (protocol version 2) it is not bincode but a fixed header,
/// the routing extensions and the body as opaque bytes; see
/// [`crate::envelope`]. This struct is its decoded form.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Packet {
    /// The destination node.
    pub dst: NodeId,
    /// The originating node.
    pub src: NodeId,
    /// Random per packet; the duplicate window is keyed on it.
    pub id: MsgId,
    /// Hops left; a hop that would forward at 0 drops the packet instead.
    pub ttl: u8,
    /// Hops taken so far.
    pub hops: u8,
    /// Whether a supernode has sent the packet toward the supernode that
    /// `dst` is attached to; see [`LocationHop`].
    pub location: LocationHop,
    /// The nodes the packet passed, if the source asked for a trace.
    pub trace: Option<Trace>,
    /// What the packet carries.
    pub body: Body,
}

/// The location step of routing (DESIGN.md, step 3) is taken at most once
/// per packet; this field records where the packet is in it.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum LocationHop {
    /// No supernode has used a location record for this packet yet.
    Unused,
    /// Heading for this supernode, where `dst` is attached by a location
    /// record; hops on the way route toward it rather than toward `dst`.
    Toward(NodeId),
    /// The location step was taken; later hops route toward `dst` by XOR
    /// distance only (toward its home supernodes).
    Used,
}

/// A bounded list of hops, source first.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct Trace(
    #[serde(deserialize_with = "bounded::vec::<_, _, MAX_TRACE_HOPS>")] pub Vec<NodeId>,
);

/// Tells the previous hop that its location entry for `node` is stale.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct StaleLocation {
    /// The node that is no longer attached to the sender.
    pub node: NodeId,
}

/// Asks a linked peer to dial the sender back on a fresh connection, to
/// learn whether others can reach it (a node promotes itself only if they
/// can). The peer dials only the IP address it sees the link come from,
/// with the ports of `addrs`: never a third party.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct DialBack {
    /// Echoed in the `DialBackResult`.
    pub request_id: u64,
    /// The sender's listen addresses, at most [`MAX_ADDRS`]; only their
    /// transport and port are used.
    #[serde(deserialize_with = "bounded::vec::<_, _, MAX_ADDRS>")]
    pub addrs: Vec<String>,
}

/// What came of a `DialBack`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum DialBackOutcome {
    /// A fresh connection reached the sender and authenticated as it.
    Reached,
    /// The dial failed or timed out.
    Failed,
    /// The peer would not dial (busy, asked too often, not a supernode, or
    /// no usable address).
    Refused,
}

/// The answer to a `DialBack`. A requester trusts it only for a failure:
/// "reached" is believed when the connection itself arrives.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct DialBackResult {
    /// The `DialBack`'s `request_id`.
    pub request_id: u64,
    /// What happened.
    pub outcome: DialBackOutcome,
}

/// A client's word to its supernode, on their link: list me among the
/// nodes attached to you (or stop listing me). Only a node can list itself:
/// the link is authenticated, so the supernode lists the link's peer.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Listed {
    /// True to be listed, false to be taken off the list.
    pub listed: bool,
    /// The client's own name claim, if it has a name: the supernode checks
    /// it at the name's home supernodes before showing the name.
    pub claim: Option<NameClaim>,
}

/// Asks a supernode who is attached to it and chose to be listed.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct WhoQuery {
    /// Echoed in the `Listing`.
    pub request_id: u64,
}

/// One node a supernode lists.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct ListedPeer {
    /// The node.
    pub node: NodeId,
    /// Its name, only if the supernode checked that the name's home
    /// supernodes hold this node's claim to it.
    pub name: Option<String>,
}

/// The answer to a `WhoQuery`: the nodes attached to the sender that chose
/// to be listed, at most [`MAX_LISTED`].
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Listing {
    /// The `WhoQuery`'s `request_id`.
    pub request_id: u64,
    /// The listed nodes, in id order.
    #[serde(deserialize_with = "bounded::vec::<_, _, MAX_LISTED>")]
    pub peers: Vec<ListedPeer>,
}

/// A link message: what one frame carries between two neighbors.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum Message {
    /// Handshake; the first frame each way.
    Hello(Hello),
    /// Attach request (ordinary node to supernode).
    Join(Join),
    /// Attach granted.
    Accept(Accept),
    /// Attach refused, try these.
    Redirect(Redirect),
    /// Graceful departure (ordinary node to its supernode).
    Leave(Leave),
    /// Liveness probe.
    Heartbeat(Heartbeat),
    /// Liveness answer.
    HeartbeatAck(HeartbeatAck),
    /// Neighbor lookup.
    FindNeighbors(FindNeighbors),
    /// Neighbor lookup answer.
    Neighbors(Neighbors),
    /// A location record handed to a neighbor: by a client to its supernode,
    /// or by a home supernode to a replica.
    Publish(LocationRecord),
    /// A routed packet.
    Routed(Packet),
    /// The receiver's location entry for a node is stale.
    StaleLocation(StaleLocation),
    /// Please dial me back (reachability check).
    DialBack(DialBack),
    /// The dial-back's outcome.
    DialBackResult(DialBackResult),
    /// A client asks its supernode to list it, or not.
    Listed(Listed),
    /// Who is attached to you and listed?
    WhoQuery(WhoQuery),
    /// The answer to a `WhoQuery`.
    Listing(Listing),
}

impl Body {
    /// A short lowercase name of the body's kind, for counters and logs.
    pub fn kind(&self) -> &'static str {
        crate::envelope::BodyKind::of(self).as_str()
    }
}

impl Message {
    /// A short lowercase name of the message's kind, for counters and logs.
    /// Routed packets are named by their body.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Hello(_) => "hello",
            Message::Join(_) => "join",
            Message::Accept(_) => "accept",
            Message::Redirect(_) => "redirect",
            Message::Leave(_) => "leave",
            Message::Heartbeat(_) => "heartbeat",
            Message::HeartbeatAck(_) => "heartbeat_ack",
            Message::FindNeighbors(_) => "find_neighbors",
            Message::Neighbors(_) => "neighbors",
            Message::Publish(_) => "publish",
            Message::Routed(p) => p.body.kind(),
            Message::StaleLocation(_) => "stale_location",
            Message::DialBack(_) => "dial_back",
            Message::DialBackResult(_) => "dial_back_result",
            Message::Listed(_) => "listed",
            Message::WhoQuery(_) => "who_query",
            Message::Listing(_) => "listing",
        }
    }
}
