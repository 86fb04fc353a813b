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

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use skyhop_core::SimTime;
use skyhop_protocol::NodeId;

pub use super::db::{
    ChatState, Contact, Direction, HistoryLimits, HistoryPage, Presence, SaidBy, StoredChat,
};
pub use super::handle::KnownPeers;
use super::handle::{SendOutcome, TraceOutcome};
use super::report::StatusReport;

mod docs;
mod replies;
#[cfg(test)]
mod tests;
mod wire;

pub use docs::{endpoints, schema_markdown, EndpointDoc};
pub use replies::{Counters, Event, Events, Failure, LoggedEvent, SendReply, Status, TraceReply};

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

/// A [`MsgId`](skyhop_protocol::MsgId) as a JSON string of decimal digits.
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
