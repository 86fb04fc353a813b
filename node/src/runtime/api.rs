//! The control API's contract: every request and reply as a type, serialized
//! by the server ([`super::control`]) and deserialized by the client (the
//! front). README.md ("Control API") shows the JSON; these types are what
//! makes it.
//!
//! Each request implements [`Request`], which names its method, path and
//! reply type, so that a client call cannot pair a request with the wrong
//! reply.
//!
//! # Implementation notes
//! - The core's [`skyhop_core::Status`] and [`skyhop_core::Event`] only
//!   serialize (their counters are keyed by `&'static str` and
//!   [`skyhop_core::DropReason`]), so [`Status`],
//!   [`Counters`] and [`Event`] here are their wire images, built with
//!   `From`.
//! - A send or trace answer is one flat object whose `delivered` or `ok`
//!   flag says which fields follow; in Rust it is [`SendOutcome`] or
//!   [`TraceOutcome`], converted through the private `wire` structs.
//! - Every 64-bit id (`msg_id`, `probe_id`, the log's `cursor`, a chat's
//!   `seq`) is a JSON *string* of decimal digits: JavaScript's `JSON.parse`
//!   rounds integers above 2^53. Counts stay numbers.
//! - A logged event's place in the event log is its `cursor`, so that it is
//!   never confused with a received chat's own per-conversation `seq`.
//! - Every answer that is not a 200 is an [`ErrorReply`]: a stable
//!   [`ErrorCode`] for programs and a message for people.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use skyhop_core::SimTime;
use skyhop_protocol::{MsgId, NodeId, Role};

pub use super::db::{
    ChatState, Contact, Direction, HistoryLimits, HistoryPage, Presence, SaidBy, StoredChat,
};
pub use super::handle::KnownPeers;
use super::handle::{SendOutcome, TraceOutcome};
use super::report::StatusReport;

/// Path of the status request.
pub const STATUS_PATH: &str = "/status";
pub use super::api_listing::{ListedNode, Who, WhoRequest, WHO_PATH};
pub use super::api_names::{
    RepinRequest, Repinned, Resolution, ResolveRequest, REPIN_PATH, RESOLVE_PATH,
};
/// Path of the known-peers request.
pub const PEERS_PATH: &str = "/peers";
/// Path of the events long-poll.
pub const EVENTS_PATH: &str = "/events";
/// Path of the chat request.
pub const SEND_PATH: &str = "/send";
/// Path of the trace request.
pub const TRACE_PATH: &str = "/trace";
/// Path of the ping request.
pub const PING_PATH: &str = "/ping";
/// Path of the chat history request.
pub const HISTORY_PATH: &str = "/history";
/// Path of the contacts request.
pub const CONTACTS_PATH: &str = "/contacts";
/// Chats a history page holds unless asked otherwise.
pub const DEFAULT_HISTORY_LIMIT: u32 = 100;
/// Path of the Prometheus metrics.
pub const METRICS_PATH: &str = "/metrics";
/// Path of the server-sent event stream the web page watches.
pub const STREAM_PATH: &str = "/stream";
/// Longest long-poll of `GET /events`.
pub const EVENTS_WAIT: Duration = Duration::from_secs(25);

/// How a request is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// `GET`, no body.
    Get,
    /// `POST`, the request as its JSON body.
    Post,
}

impl Method {
    /// The method's name on the request line.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
        }
    }
}

/// One control-API request and the reply a 200 answer carries.
pub trait Request: Serialize {
    /// How it is sent.
    const METHOD: Method;
    /// Where it is served.
    const PATH: &'static str;
    /// What a successful answer holds.
    type Reply: Serialize + DeserializeOwned;

    /// The query string, without the `?` (none by default).
    fn query(&self) -> String {
        String::new()
    }
}

/// `GET /status`: who the node is and what it holds.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct StatusRequest;

impl Request for StatusRequest {
    const METHOD: Method = Method::Get;
    const PATH: &'static str = STATUS_PATH;
    type Reply = Status;
}

/// `GET /peers`: the node ids the node knows.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct PeersRequest;

impl Request for PeersRequest {
    const METHOD: Method = Method::Get;
    const PATH: &'static str = PEERS_PATH;
    type Reply = KnownPeers;
}

/// `GET /events?since=N[&wait=S]`: events logged after `since`, waiting for
/// one if there is none yet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct EventsRequest {
    /// Return events with a sequence number above this one.
    pub since: u64,
    /// Seconds to wait for one (at most [`EVENTS_WAIT`]; `None`: the most).
    pub wait: Option<u64>,
}

impl EventsRequest {
    /// Parses the query string of `GET /events` (its values are digits,
    /// so nothing is percent-decoded); the error says which parameter is
    /// wrong.
    pub fn parse(query: &str) -> Result<EventsRequest, String> {
        let mut request = EventsRequest::default();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            match k {
                "since" => {
                    request.since = v.parse().map_err(|_| format!("since={v}: not a number"))?;
                }
                "wait" => {
                    let seconds = v
                        .parse()
                        .map_err(|_| format!("wait={v}: not a number of seconds"))?;
                    request.wait = Some(seconds);
                }
                _ => return Err(format!("unknown query parameter {k:?}")),
            }
        }
        Ok(request)
    }

    /// How long the server waits: `wait` seconds, at most [`EVENTS_WAIT`].
    pub fn wait(&self) -> Duration {
        self.wait
            .map_or(EVENTS_WAIT, Duration::from_secs)
            .min(EVENTS_WAIT)
    }
}

impl Request for EventsRequest {
    const METHOD: Method = Method::Get;
    const PATH: &'static str = EVENTS_PATH;
    type Reply = Events;

    fn query(&self) -> String {
        match self.wait {
            Some(wait) => format!("since={}&wait={wait}", self.since),
            None => format!("since={}", self.since),
        }
    }
}

/// `GET /history[?peer=ID][&limit=N]`: the newest chats, oldest first, of
/// one conversation or of all.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct HistoryRequest {
    /// The other end: a node id or a unique prefix of one the node knows;
    /// `None` for every conversation.
    pub peer: Option<String>,
    /// Chats at most (1 to 1000; `None`: [`DEFAULT_HISTORY_LIMIT`]).
    pub limit: Option<u32>,
}

impl HistoryRequest {
    /// Parses the query string of `GET /history` (an id or prefix is hex
    /// and a limit digits, so nothing is percent-decoded); the error says
    /// which parameter is wrong.
    pub fn parse(query: &str) -> Result<HistoryRequest, String> {
        let mut request = HistoryRequest::default();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            match k {
                "peer" if !v.is_empty() => request.peer = Some(v.to_string()),
                "peer" => {}
                "limit" => {
                    let n: u32 = v.parse().map_err(|_| format!("limit={v}: not a number"))?;
                    if !(1..=super::db::MAX_PAGE).contains(&n) {
                        return Err(format!("limit={v}: expected 1 to {}", super::db::MAX_PAGE));
                    }
                    request.limit = Some(n);
                }
                _ => return Err(format!("unknown query parameter {k:?}")),
            }
        }
        Ok(request)
    }

    /// The number of chats asked for.
    pub fn limit(&self) -> u32 {
        self.limit.unwrap_or(DEFAULT_HISTORY_LIMIT)
    }
}

impl Request for HistoryRequest {
    const METHOD: Method = Method::Get;
    const PATH: &'static str = HISTORY_PATH;
    type Reply = HistoryPage;

    fn query(&self) -> String {
        let mut parts = Vec::new();
        if let Some(p) = &self.peer {
            parts.push(format!("peer={p}"));
        }
        if let Some(n) = self.limit {
            parts.push(format!("limit={n}"));
        }
        parts.join("&")
    }
}

/// `GET /contacts`: every node this node has chatted with, pinned at first
/// contact, with its presence.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct ContactsRequest;

impl Request for ContactsRequest {
    const METHOD: Method = Method::Get;
    const PATH: &'static str = CONTACTS_PATH;
    type Reply = Contacts;
}

/// The answer to `GET /contacts`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contacts {
    /// Most recently seen first.
    pub contacts: Vec<Contact>,
}

/// `POST /send`: send a chat message and wait for its outcome.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendRequest {
    /// The recipient: a node id or a unique prefix of one the node knows.
    pub to: String,
    /// The message.
    pub text: String,
}

impl Request for SendRequest {
    const METHOD: Method = Method::Post;
    const PATH: &'static str = SEND_PATH;
    type Reply = SendReply;
}

/// `POST /trace`: trace the hop path to a node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceRequest {
    /// The node to trace: a node id or a unique prefix of one the node knows.
    pub to: String,
}

impl Request for TraceRequest {
    const METHOD: Method = Method::Post;
    const PATH: &'static str = TRACE_PATH;
    type Reply = TraceReply;
}

/// Most probes one `POST /ping` sends.
pub const MAX_PING_COUNT: u32 = 100;
/// Shortest gap between two probes of a ping.
pub const MIN_PING_INTERVAL_MS: u64 = 100;
/// Longest gap between two probes of a ping.
pub const MAX_PING_INTERVAL_MS: u64 = 10_000;

/// `POST /ping`: send `count` trace probes to a node, one every
/// `interval_ms`, and report round trips and loss.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PingRequest {
    /// The node to probe: a node id or a unique prefix of one the node knows.
    pub to: String,
    /// Probes to send (1 to [`MAX_PING_COUNT`]).
    pub count: u32,
    /// Gap between probes ([`MIN_PING_INTERVAL_MS`] to [`MAX_PING_INTERVAL_MS`]).
    pub interval_ms: u64,
}

impl PingRequest {
    /// Checks the bounds; the error says which field is out of them.
    pub fn check(&self) -> Result<(), String> {
        if !(1..=MAX_PING_COUNT).contains(&self.count) {
            return Err(format!(
                "count {}: expected 1 to {MAX_PING_COUNT}",
                self.count
            ));
        }
        if !(MIN_PING_INTERVAL_MS..=MAX_PING_INTERVAL_MS).contains(&self.interval_ms) {
            return Err(format!(
                "interval_ms {}: expected {MIN_PING_INTERVAL_MS} to {MAX_PING_INTERVAL_MS}",
                self.interval_ms
            ));
        }
        Ok(())
    }
}

impl Request for PingRequest {
    const METHOD: Method = Method::Post;
    const PATH: &'static str = PING_PATH;
    type Reply = PingReply;
}

/// The answer to `POST /ping`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PingReply {
    /// The node probed, resolved to its full id.
    pub to: NodeId,
    /// Probes sent.
    pub sent: u32,
    /// Probes that came back.
    pub received: u32,
    /// Share of probes lost, in percent.
    pub loss_pct: f64,
    /// Each probe in order: its round trip in milliseconds, or `null` if lost.
    pub rtts_ms: Vec<Option<f64>>,
    /// Hops of the last path that came back.
    pub hops: Option<usize>,
    /// Why the last lost probe was lost.
    pub last_failure: Option<String>,
    /// Round-trip statistics over the probes that came back.
    pub stats: Option<RttStats>,
}

/// Round-trip statistics of a ping, in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct RttStats {
    /// The fastest.
    pub min_ms: f64,
    /// The median.
    pub p50_ms: f64,
    /// The 90th percentile.
    pub p90_ms: f64,
    /// The slowest.
    pub max_ms: f64,
}

impl RttStats {
    /// Statistics of `rtts` (nearest-rank percentiles); `None` if empty.
    pub fn of(rtts: &[f64]) -> Option<RttStats> {
        let mut sorted: Vec<f64> = rtts.to_vec();
        sorted.sort_by(f64::total_cmp);
        let rank = |p: f64| {
            let i = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
            sorted[i.clamp(1, sorted.len()) - 1]
        };
        Some(RttStats {
            min_ms: *sorted.first()?,
            p50_ms: rank(50.0),
            p90_ms: rank(90.0),
            max_ms: *sorted.last()?,
        })
    }
}

/// The body of every answer that is not a 200.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReply {
    /// What went wrong, for a program.
    pub code: ErrorCode,
    /// What went wrong, for a person.
    pub error: String,
}

/// Why a request was refused; each code has one HTTP status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// 400: the body, query or an id in it is malformed.
    BadRequest,
    /// 401: loopback TCP without the cookie in `Authorization`.
    Unauthorized,
    /// 403: a `Host` or `Origin` header that is not this loopback address
    /// (DNS rebinding, a foreign web page).
    ForbiddenOrigin,
    /// 404: no such endpoint.
    NotFound,
    /// 405: the endpoint exists, not with this method.
    MethodNotAllowed,
    /// 411: a `POST` without `Content-Length`.
    LengthRequired,
    /// 413: the body is over the limit.
    TooLarge,
    /// 415: a `POST` body that is not `application/json`.
    UnsupportedMediaType,
    /// 429: too many long-polls or streams open at once.
    TooManyWaiters,
    /// 503: the node is stopping.
    Unavailable,
    /// 404: the node keeps no history (it runs without `--data-dir`).
    NoHistory,
    /// 500: the history file cannot be read or written; the message names
    /// the file and the fix.
    HistoryFailed,
}

impl ErrorCode {
    /// Every code, in status order.
    pub const ALL: [ErrorCode; 12] = [
        ErrorCode::BadRequest,
        ErrorCode::Unauthorized,
        ErrorCode::ForbiddenOrigin,
        ErrorCode::NotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::LengthRequired,
        ErrorCode::TooLarge,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::TooManyWaiters,
        ErrorCode::Unavailable,
        ErrorCode::NoHistory,
        ErrorCode::HistoryFailed,
    ];

    /// When it is sent, for the schema table.
    pub fn meaning(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "the body, query or an id in it is malformed",
            ErrorCode::Unauthorized => "loopback TCP without the cookie",
            ErrorCode::ForbiddenOrigin => {
                "a `Host` or `Origin` that is not this loopback address (DNS rebinding, a foreign page)"
            }
            ErrorCode::NotFound => "no such endpoint",
            ErrorCode::MethodNotAllowed => "the endpoint exists, not with this method",
            ErrorCode::LengthRequired => "a `POST` without `Content-Length`",
            ErrorCode::TooLarge => "a body over 16 KiB",
            ErrorCode::UnsupportedMediaType => "a `POST` body that is not `application/json`",
            ErrorCode::TooManyWaiters => {
                "too many long-polls, pings or streams are open: 4 per process and 16 in all on the socket, 8 over TCP"
            }
            ErrorCode::Unavailable => "the node is stopping",
            ErrorCode::NoHistory => "the node keeps no history: it runs without `--data-dir`",
            ErrorCode::HistoryFailed => {
                "`history.db` cannot be read or written (disk full, corrupt file): the message names the file and the fix"
            }
        }
    }

    /// Its name on the wire.
    pub fn name(self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    }

    /// The HTTP status this code is sent with.
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::BadRequest => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::ForbiddenOrigin => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::LengthRequired => 411,
            ErrorCode::TooLarge => 413,
            ErrorCode::UnsupportedMediaType => 415,
            ErrorCode::TooManyWaiters => 429,
            ErrorCode::Unavailable => 503,
            ErrorCode::NoHistory => 404,
            ErrorCode::HistoryFailed => 500,
        }
    }
}

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
    #[serde(with = "id_string")]
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
    #[serde(with = "id_string")]
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
        #[serde(with = "msg_id_string")]
        msg_id: MsgId,
        /// Its place in the conversation from `from`.
        #[serde(with = "id_string")]
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
        #[serde(with = "msg_id_string")]
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
        #[serde(with = "msg_id_string")]
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
        #[serde(with = "msg_id_string")]
        msg_id: MsgId,
        /// Why.
        reason: Failure,
    },
    /// A trace probe came back.
    TraceCompleted {
        /// The probe's id.
        #[serde(with = "id_string")]
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
        #[serde(with = "id_string")]
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

/// One row of the endpoint table in README.md.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointDoc {
    /// How it is sent.
    pub method: Method,
    /// Where it is served.
    pub path: &'static str,
    /// What the request carries.
    pub request: &'static str,
    /// What a 200 answer holds.
    pub answer: &'static str,
}

/// The row of a typed request: its method and path come from its type.
fn typed<R: Request>(request: &'static str, answer: &'static str) -> EndpointDoc {
    EndpointDoc {
        method: R::METHOD,
        path: R::PATH,
        request,
        answer,
    }
}

/// Every endpoint, typed requests first.
pub fn endpoints() -> Vec<EndpointDoc> {
    let get = |path, answer| EndpointDoc {
        method: Method::Get,
        path,
        request: "",
        answer,
    };
    vec![
        typed::<StatusRequest>(
            "",
            "`Status`: `id`, `role`, `primary`, `backups`, `clients`, `neighbors`, `links`, `records`, \
             `cached_locations`, `host_cache`, `pending_chats`, `stored_chats`, `mailbox_chats`, `mailbox_bytes`, \
             `counters`, `peer_id`, `listen_addrs`, \
             `dropped_frames`, `links_closed`, `links_lost`, `connections_refused`, `bad_bodies_relayed`, \
             `connected_peers`, `auto_role`, `reachability`, `promotions`, `demotions`, \
             `name`, `name_state` (claiming/held/taken by ID)",
        ),
        typed::<PeersRequest>(
            "",
            "`KnownPeers`: `clients`, `neighbors`, `links`, `host_cache`, `recent` (chat partners), `contacts`",
        ),
        typed::<HistoryRequest>(
            "query `[peer=ID][&limit=1-1000]`",
            "`HistoryPage`: `peer`, `messages` (newest `limit`, default 100, oldest first: `row`, `peer`, \
             `direction` in/out, `msg_id`, `body`, `at_ms`, `state` received/sent/delivered/failed/interrupted, \
             `reason`, `said_by` recipient/home_supernode/this_node, `hops`), `rows`, `evicted`, `limits`",
        ),
        typed::<ContactsRequest>(
            "",
            "`Contacts`: `{\"contacts\": [{\"id\", \"peer_id\", \"name\", \"first_seen_ms\", \
             \"last_heard_ms\", \"last_offline_ms\", \"presence\": online/offline/unknown, \
             \"name_conflict\"}]}`",
        ),
        typed::<WhoRequest>(
            "",
            "`Who`: `supernode` (the one asked; this node on a supernode), `listed`: the nodes attached \
             to it that chose to be listed (`--listed`), in id order: `[{\"id\", \"name\"}]`, `name` only \
             if the supernode checked it at the name's home supernodes, else null",
        ),
        typed::<SendRequest>(
            "`{\"to\": ID, prefix or NAME, \"text\"}`",
            "`SendReply`, after the outcome (at most the chat deadline + 5 s): `{\"to\", \"delivered\": true, \
             \"hops\", \"latency_ms\"}` or `{\"to\", \"delivered\": false, \"reason\"}`",
        ),
        typed::<TraceRequest>(
            "`{\"to\": ID}`",
            "`TraceReply`: `{\"to\", \"ok\": true, \"path\" (this node first), \"hops\", \"rtt_ms\"}` or \
             `{\"to\", \"ok\": false, \"reason\"}`",
        ),
        typed::<ResolveRequest>(
            "`{\"to\": ID, prefix or NAME}`",
            "`Resolution`: `id` (for a pinned name: the pinned key), `conflict` (another key the name \
             resolves to now, or null), `warning`",
        ),
        typed::<RepinRequest>(
            "`{\"name\": NAME}`",
            "`Repinned`: `name`, `id` (the key now pinned, or null if the name resolved to no other key)",
        ),
        typed::<PingRequest>(
            "`{\"to\": ID, \"count\": 1-100, \"interval_ms\": 100-10000}`",
            "`PingReply`: `to`, `sent`, `received`, `loss_pct`, `rtts_ms` (null if lost), `hops`, \
             `last_failure`, `stats` (`min_ms`, `p50_ms`, `p90_ms`, `max_ms`)",
        ),
        typed::<EventsRequest>(
            "query `since=CURSOR[&wait=S]`",
            "`Events`: `{\"next\": CURSOR, \"events\": [{\"cursor\", \"event\", ...}]}` after a long-poll of at \
             most 25 s (or `wait`); pass `next` back as `since`; the last 1024 events are kept (`attached`, \
             `detached`, `chat_received` with `from`, `msg_id`, `seq`, `body`, `hops`, `chat_delivered`, \
             `chat_failed`, `trace_completed`, `trace_failed`, `peer_misbehaved`, `name_claimed`, `name_taken`, \
             `name_resolved`)",
        ),
        get(
            STREAM_PATH,
            "server-sent events: `log` (a logged event as in `/events`) and `status` (as `/status`, at once, \
             after events and every 2 s)",
        ),
        get(METRICS_PATH, "Prometheus / OpenMetrics text"),
        get("/", "the web page (`/app.js`, `/style.css`; `/login?token=COOKIE` on TCP)"),
    ]
}

/// The endpoint and error tables of README.md ("Control API"), generated
/// from [`endpoints`] and [`ErrorCode`].
pub fn schema_markdown() -> String {
    let mut out = String::from("| request | body | answer |\n| --- | --- | --- |\n");
    for e in endpoints() {
        out += &format!(
            "| `{} {}` | {} | {} |\n",
            e.method.as_str(),
            e.path,
            e.request,
            e.answer
        );
    }
    out += "\n| code | status | when |\n| --- | --- | --- |\n";
    for c in ErrorCode::ALL {
        out += &format!("| `{}` | {} | {} |\n", c.name(), c.status(), c.meaning());
    }
    out
}

/// A `u64` id as a JSON string of decimal digits (see the module notes).
pub mod id_string {
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes `n` as a string.
    pub fn serialize<S: Serializer>(n: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(n)
    }

    /// Reads a string of decimal digits.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        text.parse()
            .map_err(|_| serde::de::Error::custom(format!("{text:?} is not a decimal id")))
    }
}

/// A [`MsgId`] as a JSON string of decimal digits.
pub mod msg_id_string {
    use serde::{Deserializer, Serializer};
    use skyhop_protocol::MsgId;

    /// Writes the id as a string.
    pub fn serialize<S: Serializer>(id: &MsgId, s: S) -> Result<S::Ok, S::Error> {
        super::id_string::serialize(&id.0, s)
    }

    /// Reads a string of decimal digits.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<MsgId, D::Error> {
        super::id_string::deserialize(d).map(MsgId)
    }
}

/// Microseconds as the wire's milliseconds.
fn millis(micros: SimTime) -> f64 {
    micros as f64 / 1000.0
}

/// The wire's milliseconds as microseconds.
fn micros(millis: f64) -> SimTime {
    (millis * 1000.0).round() as SimTime
}

/// The flat JSON objects of the send and trace answers.
mod wire {
    use serde::{Deserialize, Serialize};
    use skyhop_protocol::NodeId;

    use super::{micros, millis, SendOutcome, SendReply, TraceOutcome, TraceReply};

    /// `POST /send`'s answer as sent.
    #[derive(Serialize, Deserialize)]
    pub(super) struct Send {
        /// The recipient.
        to: NodeId,
        /// Whether the recipient acknowledged it.
        delivered: bool,
        /// Hops it took (delivered only).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        hops: Option<u8>,
        /// From first send to ack (delivered only).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        latency_ms: Option<f64>,
        /// Why not (failed only).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        /// Home supernodes of the offline recipient that keep it (stored
        /// only: delivered later, the history says when).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stored: Option<u8>,
    }

    impl From<SendReply> for Send {
        fn from(r: SendReply) -> Send {
            match r.outcome {
                SendOutcome::Delivered { hops, latency } => Send {
                    to: r.to,
                    delivered: true,
                    hops: Some(hops),
                    latency_ms: Some(millis(latency)),
                    reason: None,
                    stored: None,
                },
                SendOutcome::Failed(reason) => Send {
                    to: r.to,
                    delivered: false,
                    hops: None,
                    latency_ms: None,
                    reason: Some(reason),
                    stored: None,
                },
                SendOutcome::Stored { copies } => Send {
                    to: r.to,
                    delivered: false,
                    hops: None,
                    latency_ms: None,
                    reason: None,
                    stored: Some(copies),
                },
            }
        }
    }

    impl TryFrom<Send> for SendReply {
        type Error = &'static str;

        fn try_from(w: Send) -> Result<SendReply, &'static str> {
            let outcome = match (w.delivered, w.hops, w.latency_ms, w.reason, w.stored) {
                (true, Some(hops), Some(ms), _, _) => SendOutcome::Delivered {
                    hops,
                    latency: micros(ms),
                },
                (false, _, _, Some(reason), _) => SendOutcome::Failed(reason),
                (false, _, _, None, Some(copies)) => SendOutcome::Stored { copies },
                (true, ..) => return Err("a delivered send needs hops and latency_ms"),
                (false, ..) => return Err("a failed send needs a reason or stored"),
            };
            Ok(SendReply { to: w.to, outcome })
        }
    }

    /// `POST /trace`'s answer as sent.
    #[derive(Serialize, Deserialize)]
    pub(super) struct Trace {
        /// The node traced.
        to: NodeId,
        /// Whether a path came back.
        ok: bool,
        /// The hops, this node first (ok only).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        path: Option<Vec<NodeId>>,
        /// Hops in the path (ok only).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        hops: Option<usize>,
        /// Round trip (ok only).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rtt_ms: Option<f64>,
        /// Why not (failed only).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    }

    impl From<TraceReply> for Trace {
        fn from(r: TraceReply) -> Trace {
            match r.outcome {
                TraceOutcome::Completed { path, rtt } => Trace {
                    to: r.to,
                    ok: true,
                    hops: Some(path.len().saturating_sub(1)),
                    path: Some(path),
                    rtt_ms: Some(millis(rtt)),
                    reason: None,
                },
                TraceOutcome::Failed(reason) => Trace {
                    to: r.to,
                    ok: false,
                    path: None,
                    hops: None,
                    rtt_ms: None,
                    reason: Some(reason),
                },
            }
        }
    }

    impl TryFrom<Trace> for TraceReply {
        type Error = &'static str;

        fn try_from(w: Trace) -> Result<TraceReply, &'static str> {
            let outcome = match (w.ok, w.path, w.rtt_ms, w.reason) {
                (true, Some(path), Some(ms), _) => TraceOutcome::Completed {
                    path,
                    rtt: micros(ms),
                },
                (false, _, _, Some(reason)) => TraceOutcome::Failed(reason),
                (true, ..) => return Err("a completed trace needs path and rtt_ms"),
                (false, ..) => return Err("a failed trace needs a reason"),
            };
            Ok(TraceReply { to: w.to, outcome })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn id(b: u8) -> NodeId {
        NodeId([b; 32])
    }

    /// The send and trace answers keep the flat shape scripts read, and the
    /// client reads back what the server wrote.
    #[test]
    fn send_and_trace_replies_are_flat_and_round_trip() {
        let delivered = SendReply {
            to: id(1),
            outcome: SendOutcome::Delivered {
                hops: 3,
                latency: 400,
            },
        };
        let v = serde_json::to_value(&delivered).expect("serializes");
        assert_eq!(
            v,
            json!({"to": id(1).to_hex(), "delivered": true, "hops": 3, "latency_ms": 0.4})
        );
        assert_eq!(
            serde_json::from_value::<SendReply>(v).expect("parses"),
            delivered
        );
        let failed = SendReply {
            to: id(1),
            outcome: SendOutcome::Failed("recipient is offline".into()),
        };
        let v = serde_json::to_value(&failed).expect("serializes");
        assert_eq!(
            v,
            json!({"to": id(1).to_hex(), "delivered": false, "reason": "recipient is offline"})
        );
        assert_eq!(
            serde_json::from_value::<SendReply>(v).expect("parses"),
            failed
        );
        let traced = TraceReply {
            to: id(2),
            outcome: TraceOutcome::Completed {
                path: vec![id(1), id(2)],
                rtt: 1500,
            },
        };
        let v = serde_json::to_value(&traced).expect("serializes");
        assert_eq!(
            v,
            json!({"to": id(2).to_hex(), "ok": true, "path": [id(1).to_hex(), id(2).to_hex()],
                   "hops": 1, "rtt_ms": 1.5})
        );
        assert_eq!(
            serde_json::from_value::<TraceReply>(v).expect("parses"),
            traced
        );
        let half = json!({"to": id(1).to_hex(), "delivered": true});
        assert!(serde_json::from_value::<SendReply>(half).is_err());
    }

    /// A logged event is the core event's JSON with the log's `cursor`; ids
    /// above 2^53 survive as strings, and the chat keeps its own `seq`.
    #[test]
    fn a_logged_event_is_tagged_and_its_ids_are_exact_strings() {
        let core = skyhop_core::Event::ChatReceived {
            from: id(7),
            msg_id: MsgId(u64::MAX - 1),
            seq: 1,
            body: "hi".into(),
            hops: 2,
        };
        let logged = LoggedEvent {
            cursor: 42,
            event: Event::from(&core),
        };
        let v = serde_json::to_value(&logged).expect("serializes");
        assert_eq!(
            v,
            json!({"cursor": "42", "event": "chat_received", "from": id(7).to_hex(),
                   "msg_id": "18446744073709551614", "seq": "1", "body": "hi", "hops": 2})
        );
        assert_eq!(
            serde_json::from_value::<LoggedEvent>(v).expect("parses"),
            logged
        );
    }

    /// Percentiles are nearest-rank, and nothing came back means no stats.
    #[test]
    fn rtt_stats_use_nearest_rank_percentiles() {
        let rtts: Vec<f64> = (1..=10).map(f64::from).collect();
        let s = RttStats::of(&rtts).expect("some");
        assert_eq!(
            (s.min_ms, s.p50_ms, s.p90_ms, s.max_ms),
            (1.0, 5.0, 9.0, 10.0)
        );
        assert_eq!(RttStats::of(&[]), None);
        let one = RttStats::of(&[3.5]).expect("one");
        assert_eq!((one.p50_ms, one.p90_ms), (3.5, 3.5));
    }

    /// A ping's count and interval are bounded, and the error names the field.
    #[test]
    fn ping_requests_out_of_bounds_name_the_field() {
        let ok = PingRequest {
            to: "ab".into(),
            count: 5,
            interval_ms: 1000,
        };
        assert!(ok.check().is_ok());
        let many = PingRequest {
            count: MAX_PING_COUNT + 1,
            ..ok.clone()
        };
        assert!(many.check().expect_err("too many").contains("count"));
        let fast = PingRequest {
            interval_ms: 1,
            ..ok
        };
        assert!(fast.check().expect_err("too fast").contains("interval_ms"));
    }

    /// README.md's endpoint and error tables are the ones the types make;
    /// `SKYHOP_BLESS=1 cargo test` rewrites them.
    #[test]
    fn readme_api_tables_are_generated_from_the_types() {
        const BEGIN: &str = "<!-- api-schema:begin (generated by api::schema_markdown) -->\n";
        const END: &str = "<!-- api-schema:end -->";
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
        let readme = std::fs::read_to_string(&path).expect("README.md");
        let start = readme.find(BEGIN).expect("begin marker") + BEGIN.len();
        let end = readme.find(END).expect("end marker");
        let want = schema_markdown();
        if std::env::var_os("SKYHOP_BLESS").is_some() {
            let new = format!("{}{want}{}", &readme[..start], &readme[end..]);
            std::fs::write(&path, new).expect("README.md written");
            return;
        }
        assert_eq!(
            &readme[start..end],
            want,
            "README.md's API tables are stale: run SKYHOP_BLESS=1 cargo test -p skyhop-node readme_api"
        );
        for c in ErrorCode::ALL {
            assert!(!c.name().is_empty());
        }
    }

    #[test]
    fn events_query_round_trips_and_names_a_bad_parameter() {
        let r = EventsRequest {
            since: 5,
            wait: Some(0),
        };
        assert_eq!(EventsRequest::parse(&r.query()), Ok(r));
        assert_eq!(
            EventsRequest::parse("since=5").map(|r| r.wait()),
            Ok(EVENTS_WAIT)
        );
        assert!(EventsRequest::parse("since=x")
            .expect_err("not a number")
            .contains("since=x"));
        assert!(EventsRequest::parse("colour=red").is_err());
    }
}
