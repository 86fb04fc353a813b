//! Reachability by dial-back: whether others can open a connection to this
//! node, which a node set to auto role needs to know before it promotes
//! itself (PROTOCOL.md section 9.2). [`Reachability`] holds both sides of
//! the check; the node task sends what it says and reports connections.
//!
//! - **Asking** (an ordinary node with auto role on, once attached): send
//!   `DialBack` with the listen addresses to the primary supernode and one
//!   backup. The node counts itself reachable only when an inbound
//!   connection from a supernode it asked arrives while it waits: a
//!   `Reached` answer alone proves nothing. A `Failed` answer, or no
//!   connection within [`ASK_TIMEOUT`], means unreachable for now: the node
//!   stays ordinary and asks again after [`RETRY_UNREACHABLE`].
//! - **Serving** (a supernode): dial the requester's PeerId on a fresh
//!   connection (a new local port too, so a NAT's mapping for the link does
//!   not let it through), at **the IP address the link comes from** and the
//!   ports the request names, never an address the request names: a
//!   `DialBack` cannot aim traffic at a third party. One request per peer
//!   at a time and per [`SERVE_INTERVAL`], [`MAX_SERVING`] at a time in
//!   all; an answer within [`SERVE_TIMEOUT`].
//!
//! # Implementation notes
//! Why not libp2p AutoNAT (v1 or v2): the crate is not in the offline
//! registry this project builds from, and this check needs only one small
//! request and answer on a link that already exists (the supernode is the
//! natural vantage point, and an authenticated link gives the observed IP),
//! not a second protocol with its own streams and peer selection.
//! The state reads no clock: every call takes `now`.

use std::collections::{BTreeMap, VecDeque};
use std::net::IpAddr;

use libp2p::multiaddr::Protocol;
use libp2p::swarm::ConnectionId;
use libp2p::Multiaddr;
use skyhop_core::{SimTime, SECS};
use skyhop_protocol::{DialBack, DialBackOutcome, DialBackResult, NodeId, MAX_ADDRS};

/// How long an asking node waits for the dial-back connection.
pub const ASK_TIMEOUT: SimTime = 15 * SECS;
/// When no supernode reached this node, it asks again after this long.
pub const RETRY_UNREACHABLE: SimTime = 300 * SECS;
/// When every supernode asked refused, it asks again after this long.
pub const RETRY_REFUSED: SimTime = 30 * SECS;
/// Supernodes asked at once at most (the primary and one backup).
pub const MAX_ASKED: usize = 2;
/// A supernode answers `Failed` when its dial took this long.
pub const SERVE_TIMEOUT: SimTime = 10 * SECS;
/// A supernode forgets a dial still pending this long (its slot frees).
pub const SERVE_FORGET: SimTime = 120 * SECS;
/// Least time between two dial-backs served to one peer.
pub const SERVE_INTERVAL: SimTime = 30 * SECS;
/// Dial-backs a supernode has in flight at most.
pub const MAX_SERVING: usize = 8;
/// Peers whose last dial-back time a supernode remembers at most.
pub const MAX_SERVED_PEERS: usize = 4096;
/// A dial-back connection that came up is closed after this long (the
/// requester closes it first, once it has seen it: closing it at once
/// could end it before the requester's side finished its handshake).
pub const LINGER: SimTime = 3 * SECS;
/// Dial-back connections waiting to be closed, at most (past this, the
/// oldest is closed at once).
pub const MAX_LINGERING: usize = 64;
/// Addresses one dial-back tries at most.
pub const MAX_DIAL_BACK_ADDRS: usize = 4;

/// What this node knows of its own reachability.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Not checked yet (or every supernode asked refused).
    Unknown,
    /// A supernode's dial-back reached this node.
    Reachable {
        /// The supernode that reached it.
        by: NodeId,
    },
    /// No supernode asked could reach it.
    Unreachable,
}

impl Verdict {
    /// A word for status displays.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Unknown => "unknown",
            Verdict::Reachable { .. } => "reachable",
            Verdict::Unreachable => "unreachable",
        }
    }
}

/// A `DialBack` this node sent and waits on.
#[derive(Clone, Copy, Debug)]
struct Asked {
    request_id: u64,
    since: SimTime,
    /// The supernode answered `Failed` (kept until the others answer).
    failed: bool,
}

/// A dial-back this node makes for a peer.
#[derive(Clone, Copy, Debug)]
struct Serving {
    peer: NodeId,
    request_id: u64,
    since: SimTime,
    /// The peer was already told the outcome (a timeout answers early).
    answered: bool,
}

/// Both sides of the dial-back check (see the module doc).
#[derive(Debug)]
pub struct Reachability {
    verdict: Verdict,
    /// Requests in flight, by the supernode asked.
    asked: BTreeMap<NodeId, Asked>,
    next_request_id: u64,
    /// No new request before this time.
    next_try: SimTime,
    /// Dial-backs in flight, by the connection dialed.
    serving: BTreeMap<ConnectionId, Serving>,
    /// When each peer was last served, and the same in time order for
    /// O(1) eviction of the oldest.
    served_at: BTreeMap<NodeId, SimTime>,
    served_order: VecDeque<(SimTime, NodeId)>,
    /// Dial-back connections that came up, to close, oldest first.
    lingering: VecDeque<(SimTime, ConnectionId)>,
    /// Checks that found the node reachable and unreachable, and
    /// dial-backs served, for status and metrics.
    pub counts: ReachabilityCounts,
}

/// Counts for status and `/metrics`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReachabilityCounts {
    /// `DialBack`s this node sent.
    pub asked: u64,
    /// Dial-backs served that reached the peer.
    pub served_reached: u64,
    /// Dial-backs served that failed or timed out.
    pub served_failed: u64,
    /// `DialBack`s refused (busy, too often, not a supernode, no address).
    pub refused: u64,
}

/// What a served request asks the node task to do.
#[derive(Debug, PartialEq, Eq)]
pub enum Serve {
    /// Dial the peer at these addresses on a fresh connection.
    Dial(Vec<Multiaddr>),
    /// Answer at once with this outcome.
    Answer(DialBackOutcome),
}

impl Default for Reachability {
    fn default() -> Reachability {
        Reachability {
            verdict: Verdict::Unknown,
            asked: BTreeMap::new(),
            next_request_id: 1,
            next_try: 0,
            serving: BTreeMap::new(),
            served_at: BTreeMap::new(),
            served_order: VecDeque::new(),
            lingering: VecDeque::new(),
            counts: ReachabilityCounts::default(),
        }
    }
}

impl Reachability {
    /// What this node knows of its reachability.
    pub fn verdict(&self) -> Verdict {
        self.verdict
    }

    /// The requests to send now, if the node should check (it is an
    /// attached ordinary node with auto role on, not known reachable,
    /// nothing in flight, and its retry time has come); `supernodes` are
    /// its primary first, then its backups.
    pub fn ask(
        &mut self,
        now: SimTime,
        supernodes: &[NodeId],
        listen_addrs: &[String],
    ) -> Vec<(NodeId, DialBack)> {
        if matches!(self.verdict, Verdict::Reachable { .. })
            || !self.asked.is_empty()
            || now < self.next_try
        {
            return Vec::new();
        }
        let addrs: Vec<String> = listen_addrs.iter().take(MAX_ADDRS).cloned().collect();
        let mut out = Vec::new();
        for sn in supernodes.iter().take(MAX_ASKED) {
            let request_id = self.next_request_id;
            self.next_request_id += 1;
            self.asked.insert(
                *sn,
                Asked {
                    request_id,
                    since: now,
                    failed: false,
                },
            );
            self.counts.asked += 1;
            out.push((
                *sn,
                DialBack {
                    request_id,
                    addrs: addrs.clone(),
                },
            ));
        }
        out
    }

    /// Whether this node waits on a dial-back from `peer`.
    pub fn was_asked(&self, peer: NodeId) -> bool {
        self.asked.contains_key(&peer)
    }

    /// An inbound connection from `peer` was established: if it is a
    /// supernode this node asked, the node is reachable. Returns the new
    /// verdict when it changed.
    pub fn on_inbound_connection(&mut self, peer: NodeId) -> Option<Verdict> {
        if !self.asked.contains_key(&peer) {
            return None;
        }
        self.asked.clear();
        let was = self.verdict;
        self.verdict = Verdict::Reachable { by: peer };
        (was != self.verdict).then_some(self.verdict)
    }

    /// A `DialBackResult` from `from`. Only failures and refusals count:
    /// a success is believed when its connection arrives. Returns the new
    /// verdict when it changed.
    pub fn on_result(
        &mut self,
        now: SimTime,
        from: NodeId,
        result: &DialBackResult,
    ) -> Option<Verdict> {
        let asked = self.asked.get_mut(&from)?;
        if asked.request_id != result.request_id {
            return None;
        }
        match result.outcome {
            DialBackOutcome::Reached => return None,
            DialBackOutcome::Failed => asked.failed = true,
            DialBackOutcome::Refused => {
                self.asked.remove(&from);
            }
        }
        self.settle(now)
    }

    /// Gives up on requests older than [`ASK_TIMEOUT`] (as failures).
    pub fn expire_asked(&mut self, now: SimTime) -> Option<Verdict> {
        let mut any = false;
        for a in self.asked.values_mut() {
            if now.saturating_sub(a.since) >= ASK_TIMEOUT {
                a.failed = true;
                any = true;
            }
        }
        any.then(|| self.settle(now)).flatten()
    }

    /// Once every supernode asked has failed or refused: unreachable if
    /// any failed, else unknown; sets the retry time.
    fn settle(&mut self, now: SimTime) -> Option<Verdict> {
        if self.asked.values().any(|a| !a.failed) {
            return None;
        }
        let any_failed = !self.asked.is_empty();
        self.asked.clear();
        let was = self.verdict;
        if any_failed {
            self.verdict = Verdict::Unreachable;
            self.next_try = now + RETRY_UNREACHABLE;
        } else {
            self.next_try = now + RETRY_REFUSED;
        }
        (was != self.verdict).then_some(self.verdict)
    }

    /// A `DialBack` from linked peer `from`, whose connection comes from
    /// `observed` (when known), at a node that is a supernode or not.
    pub fn on_request(
        &mut self,
        now: SimTime,
        from: NodeId,
        observed: Option<IpAddr>,
        is_supernode: bool,
        req: &DialBack,
    ) -> Serve {
        let refused = Serve::Answer(DialBackOutcome::Refused);
        let Some(ip) = observed.filter(|_| is_supernode) else {
            self.counts.refused += 1;
            return refused;
        };
        while let Some((at, peer)) = self.served_order.front().copied() {
            if now.saturating_sub(at) < SERVE_INTERVAL {
                break;
            }
            self.served_order.pop_front();
            if self.served_at.get(&peer) == Some(&at) {
                self.served_at.remove(&peer);
            }
        }
        let busy = self.serving.len() >= MAX_SERVING
            || self.served_at.contains_key(&from)
            || self.served_at.len() >= MAX_SERVED_PEERS
            || self.serving.values().any(|s| s.peer == from);
        let addrs = dial_back_addrs(ip, &req.addrs);
        if busy || addrs.is_empty() {
            self.counts.refused += 1;
            return refused;
        }
        self.served_at.insert(from, now);
        self.served_order.push_back((now, from));
        Serve::Dial(addrs)
    }

    /// The dial for `peer`'s request went out as `connection`.
    pub fn dialing(
        &mut self,
        now: SimTime,
        connection: ConnectionId,
        peer: NodeId,
        request_id: u64,
    ) {
        self.serving.insert(
            connection,
            Serving {
                peer,
                request_id,
                since: now,
                answered: false,
            },
        );
    }

    /// Whether `connection` is a dial-back this node made.
    pub fn is_dial_back(&self, connection: ConnectionId) -> bool {
        self.serving.contains_key(&connection)
    }

    /// The dial-back `connection` ended: reached or not. Returns the
    /// answer to send, unless a timeout already answered.
    pub fn on_dial_outcome(
        &mut self,
        connection: ConnectionId,
        reached: bool,
    ) -> Option<(NodeId, DialBackResult)> {
        let s = self.serving.remove(&connection)?;
        if reached {
            self.counts.served_reached += 1;
        } else {
            self.counts.served_failed += 1;
        }
        (!s.answered).then(|| {
            let outcome = if reached {
                DialBackOutcome::Reached
            } else {
                DialBackOutcome::Failed
            };
            (s.peer, result(s.request_id, outcome))
        })
    }

    /// Keeps the dial-back `connection`, which came up, open a little
    /// longer; returns a connection to close now if too many wait.
    pub fn linger(&mut self, now: SimTime, connection: ConnectionId) -> Option<ConnectionId> {
        let evicted = if self.lingering.len() >= MAX_LINGERING {
            self.lingering.pop_front().map(|(_, c)| c)
        } else {
            None
        };
        self.lingering.push_back((now + LINGER, connection));
        evicted
    }

    /// The dial-back connections whose time is up, to close.
    pub fn lingered(&mut self, now: SimTime) -> Vec<ConnectionId> {
        let mut out = Vec::new();
        while let Some((at, c)) = self.lingering.front().copied() {
            if at > now {
                break;
            }
            self.lingering.pop_front();
            out.push(c);
        }
        out
    }

    /// Answers `Failed` for dials pending past [`SERVE_TIMEOUT`], and
    /// forgets those pending past [`SERVE_FORGET`].
    pub fn expire_serving(&mut self, now: SimTime) -> Vec<(NodeId, DialBackResult)> {
        let mut out = Vec::new();
        self.serving.retain(|_, s| {
            let age = now.saturating_sub(s.since);
            if age >= SERVE_TIMEOUT && !s.answered {
                s.answered = true;
                out.push((s.peer, result(s.request_id, DialBackOutcome::Failed)));
            }
            age < SERVE_FORGET
        });
        self.counts.served_failed += out.len() as u64;
        out
    }
}

fn result(request_id: u64, outcome: DialBackOutcome) -> DialBackResult {
    DialBackResult {
        request_id,
        outcome,
    }
}

/// The addresses to dial back: each requested TCP or QUIC address's port at
/// `ip`, the address the link comes from (anything else in the request is
/// ignored), without duplicates, at most [`MAX_DIAL_BACK_ADDRS`].
pub fn dial_back_addrs(ip: IpAddr, requested: &[String]) -> Vec<Multiaddr> {
    let mut out: Vec<Multiaddr> = Vec::new();
    for text in requested.iter().take(MAX_ADDRS) {
        let Ok(addr) = text.parse::<Multiaddr>() else {
            continue;
        };
        let mut parts = addr.iter();
        if !matches!(parts.next(), Some(Protocol::Ip4(_) | Protocol::Ip6(_))) {
            continue;
        }
        let base = Multiaddr::empty().with(match ip {
            IpAddr::V4(v4) => Protocol::Ip4(v4),
            IpAddr::V6(v6) => Protocol::Ip6(v6),
        });
        let dial = match (parts.next(), parts.next()) {
            (Some(Protocol::Tcp(port)), _) if port != 0 => base.with(Protocol::Tcp(port)),
            (Some(Protocol::Udp(port)), Some(Protocol::QuicV1)) if port != 0 => {
                base.with(Protocol::Udp(port)).with(Protocol::QuicV1)
            }
            _ => continue,
        };
        if !out.contains(&dial) && out.len() < MAX_DIAL_BACK_ADDRS {
            out.push(dial);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use skyhop_protocol::Identity;

    fn id(n: u8) -> NodeId {
        Identity::from_secret([n; 32]).id()
    }

    fn request(addrs: &[&str]) -> DialBack {
        DialBack {
            request_id: 7,
            addrs: addrs.iter().map(|a| a.to_string()).collect(),
        }
    }

    #[test]
    fn a_dial_back_goes_only_to_the_ip_the_link_comes_from() {
        let observed: IpAddr = "198.18.0.9".parse().expect("ip");
        let addrs = dial_back_addrs(
            observed,
            &[
                "/ip4/203.0.113.5/tcp/4001/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN"
                    .into(),
                "/ip4/10.0.0.2/udp/4002/quic-v1".into(),
                "/dns4/example.org/tcp/80".into(),
                "/ip4/10.0.0.2/tcp/0".into(),
                "/ip4/10.0.0.3/tcp/4001".into(),
                "not an address".into(),
            ],
        );
        let texts: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
        assert_eq!(
            texts,
            [
                "/ip4/198.18.0.9/tcp/4001",
                "/ip4/198.18.0.9/udp/4002/quic-v1"
            ],
            "the requested IPs, names, port 0 and duplicates are never dialed"
        );
    }

    #[test]
    fn a_supernode_serves_one_dial_back_per_peer_per_interval_and_few_at_once() {
        let mut r = Reachability::default();
        let ip: IpAddr = "127.0.0.1".parse().expect("ip");
        let req = request(&["/ip4/127.0.0.1/tcp/5000"]);
        assert_eq!(
            r.on_request(0, id(1), Some(ip), false, &req),
            Serve::Answer(DialBackOutcome::Refused),
            "an ordinary node does not dial back"
        );
        assert_eq!(
            r.on_request(0, id(1), None, true, &req),
            Serve::Answer(DialBackOutcome::Refused),
            "no observed address, nothing to dial"
        );
        let Serve::Dial(_) = r.on_request(0, id(1), Some(ip), true, &req) else {
            panic!("the first request is served");
        };
        r.dialing(0, ConnectionId::new_unchecked(1), id(1), 7);
        assert_eq!(
            r.on_request(SECS, id(1), Some(ip), true, &req),
            Serve::Answer(DialBackOutcome::Refused),
            "a second request from the same peer within the interval"
        );
        for n in 2..=MAX_SERVING as u8 {
            let Serve::Dial(_) = r.on_request(SECS, id(n), Some(ip), true, &req) else {
                panic!("room for {n}");
            };
            r.dialing(SECS, ConnectionId::new_unchecked(n.into()), id(n), 7);
        }
        assert_eq!(
            r.on_request(SECS, id(200), Some(ip), true, &req),
            Serve::Answer(DialBackOutcome::Refused),
            "the total in flight is bounded"
        );
        let late = r.expire_serving(SERVE_TIMEOUT + SECS);
        assert_eq!(late.len(), MAX_SERVING, "every pending dial is answered");
        assert!(late
            .iter()
            .all(|(_, res)| res.outcome == DialBackOutcome::Failed));
        assert_eq!(
            r.on_dial_outcome(ConnectionId::new_unchecked(1), true),
            None,
            "a late connection answers nothing more"
        );
        assert!(matches!(
            r.on_request(SERVE_INTERVAL + SECS, id(1), Some(ip), true, &req),
            Serve::Dial(_)
        ));
    }

    #[test]
    fn only_the_connection_itself_makes_a_node_reachable() {
        let mut r = Reachability::default();
        let sent = r.ask(0, &[id(1), id(2), id(3)], &["/ip4/127.0.0.1/tcp/1".into()]);
        assert_eq!(sent.len(), MAX_ASKED);
        assert!(r.ask(0, &[id(1)], &[]).is_empty(), "one check at a time");
        let reached = result(sent[0].1.request_id, DialBackOutcome::Reached);
        assert_eq!(r.on_result(SECS, id(1), &reached), None);
        assert_eq!(r.verdict(), Verdict::Unknown, "a claim is not a connection");
        assert_eq!(r.on_inbound_connection(id(3)), None, "not asked");
        assert_eq!(
            r.on_inbound_connection(id(2)),
            Some(Verdict::Reachable { by: id(2) })
        );
        assert!(
            r.ask(1000 * SECS, &[id(1)], &[]).is_empty(),
            "known reachable"
        );
    }

    #[test]
    fn failures_or_silence_make_a_node_unreachable_until_it_asks_again() {
        let mut r = Reachability::default();
        let sent = r.ask(0, &[id(1), id(2)], &["/ip4/10.0.0.2/tcp/1".into()]);
        let failed = result(sent[0].1.request_id, DialBackOutcome::Failed);
        assert_eq!(r.on_result(SECS, id(1), &failed), None, "one still pending");
        let wrong = result(sent[1].1.request_id + 100, DialBackOutcome::Failed);
        assert_eq!(
            r.on_result(SECS, id(2), &wrong),
            None,
            "answers nothing asked"
        );
        assert_eq!(r.expire_asked(SECS), None);
        assert_eq!(r.expire_asked(ASK_TIMEOUT), Some(Verdict::Unreachable));
        assert!(r.ask(ASK_TIMEOUT + SECS, &[id(1)], &[]).is_empty());
        assert_eq!(
            r.ask(ASK_TIMEOUT + RETRY_UNREACHABLE, &[id(1)], &[]).len(),
            1,
            "asks again later"
        );
        let mut r = Reachability::default();
        let sent = r.ask(0, &[id(1)], &[]);
        let refused = result(sent[0].1.request_id, DialBackOutcome::Refused);
        assert_eq!(r.on_result(SECS, id(1), &refused), None);
        assert_eq!(r.verdict(), Verdict::Unknown, "a refusal is no verdict");
        assert_eq!(r.ask(SECS + RETRY_REFUSED, &[id(1)], &[]).len(), 1);
    }
}
