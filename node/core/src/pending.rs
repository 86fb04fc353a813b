//! Requests awaiting a reply, in one bounded table keyed by request id:
//! location queries, neighbor requests, trace probes and joins. A reply is
//! acted on only if it matches a request this node made, of the right kind
//! and to the right peer; anything else is dropped and counted
//! ([`super::DropReason::UnsolicitedReply`]), so an unasked answer changes
//! nothing.
//!
//! # Implementation notes
//! Each kind has its own bound, so that a flood of one kind cannot crowd
//! out another; a request over its bound is not made. Two indexes answer
//! "is a location query for this node pending?" and "which trace was sent
//! as this packet?" without a scan.

use std::collections::BTreeMap;

use skyhop_protocol::{MsgId, NodeId};

use super::SimTime;

/// A request's id, as carried by the request and echoed by its reply.
pub(crate) type RequestId = u64;

/// What was asked, and of whom.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Request {
    /// Where `node` is attached, asked of its home supernodes.
    Location {
        /// The node looked up.
        node: NodeId,
    },
    /// Supernodes close to a target, asked of linked supernode `peer`.
    Neighbors {
        /// The supernode asked.
        peer: NodeId,
    },
    /// A trace probe toward `to`, sent as routed packet `packet_id`.
    Trace {
        /// The node traced.
        to: NodeId,
        /// The probe's packet id, which a `NotFound` names.
        packet_id: MsgId,
    },
    /// A `Join` sent to supernode `sn`.
    Join {
        /// The supernode asked.
        sn: NodeId,
    },
    /// Who holds a name, asked of its home supernodes: a lookup, or the
    /// answer to this node's own claim.
    Name {
        /// The name asked about.
        name: String,
        /// Whether this is this node's claim (else a lookup).
        own: bool,
    },
    /// Who holds a name a listed client `node` claimed, asked by its
    /// supernode before showing the name.
    ListedName {
        /// The name asked about.
        name: String,
        /// The client that claimed it.
        node: NodeId,
    },
    /// Who is listed at supernode `sn`, asked of it.
    Who {
        /// The supernode asked.
        sn: NodeId,
    },
}

impl Request {
    fn kind(&self) -> usize {
        match self {
            Request::Location { .. } => 0,
            Request::Neighbors { .. } => 1,
            Request::Trace { .. } => 2,
            Request::Join { .. } => 3,
            Request::Name { .. } => 4,
            Request::ListedName { .. } => 5,
            Request::Who { .. } => 6,
        }
    }
}

/// Requests of each kind in flight at most: location queries, neighbor
/// requests, traces, joins, names, listed clients' names, listings.
const LIMITS: [usize; 7] = [1024, 256, 64, 4, 64, 64, 16];

/// One request in flight.
#[derive(Clone, Debug)]
pub(crate) struct InFlight {
    /// What was asked.
    pub request: Request,
    /// When.
    pub sent: SimTime,
    /// When it is forgotten unanswered; `None` for requests whose owner
    /// times them out itself (joins).
    expires: Option<SimTime>,
}

/// The table of requests in flight.
#[derive(Debug, Default)]
pub(crate) struct PendingRequests {
    /// Requests by id.
    by_id: BTreeMap<RequestId, InFlight>,
    /// Pending location queries by the node looked up.
    location_by_node: BTreeMap<NodeId, RequestId>,
    /// Pending traces by the packet id of their probe.
    trace_by_packet: BTreeMap<MsgId, RequestId>,
    /// Requests in flight, by kind.
    counts: [usize; 7],
}

impl PendingRequests {
    /// Whether another request of `request`'s kind may be made.
    pub fn has_room(&self, request: &Request) -> bool {
        let k = request.kind();
        self.counts[k] < LIMITS[k]
    }

    /// Records request `id`, sent at `now`, forgotten at `expires`; false
    /// (and nothing recorded) when its kind is at its bound.
    pub fn insert(
        &mut self,
        id: RequestId,
        request: Request,
        now: SimTime,
        expires: Option<SimTime>,
    ) -> bool {
        if !self.has_room(&request) {
            return false;
        }
        // Ids are random 64-bit numbers: a clash is as unlikely as a
        // guessed id, and the newer request simply wins.
        self.remove(id);
        match &request {
            Request::Location { node } => {
                self.location_by_node.insert(*node, id);
            }
            Request::Trace { packet_id, .. } => {
                self.trace_by_packet.insert(*packet_id, id);
            }
            Request::Neighbors { .. }
            | Request::Join { .. }
            | Request::Name { .. }
            | Request::ListedName { .. }
            | Request::Who { .. } => {}
        }
        self.counts[request.kind()] += 1;
        self.by_id.insert(
            id,
            InFlight {
                request,
                sent: now,
                expires,
            },
        );
        true
    }

    /// The request `id`, if in flight.
    pub fn get(&self, id: RequestId) -> Option<&InFlight> {
        self.by_id.get(&id)
    }

    /// Removes and returns request `id` if `matches` accepts it (the reply
    /// came from the peer asked, about what was asked); otherwise leaves it.
    pub fn take_if(
        &mut self,
        id: RequestId,
        matches: impl FnOnce(&Request) -> bool,
    ) -> Option<InFlight> {
        if !self.by_id.get(&id).is_some_and(|f| matches(&f.request)) {
            return None;
        }
        self.remove(id)
    }

    /// Removes request `id`.
    pub fn remove(&mut self, id: RequestId) -> Option<InFlight> {
        let f = self.by_id.remove(&id)?;
        match &f.request {
            Request::Location { node } => {
                self.location_by_node.remove(node);
            }
            Request::Trace { packet_id, .. } => {
                self.trace_by_packet.remove(packet_id);
            }
            Request::Neighbors { .. }
            | Request::Join { .. }
            | Request::Name { .. }
            | Request::ListedName { .. }
            | Request::Who { .. } => {}
        }
        self.counts[f.request.kind()] -= 1;
        if self.by_id.is_empty() {
            crate::release_if_empty(&mut self.by_id);
            crate::release_if_empty(&mut self.location_by_node);
            crate::release_if_empty(&mut self.trace_by_packet);
        }
        Some(f)
    }

    /// Whether a location query for `node` is in flight.
    pub fn location_pending(&self, node: &NodeId) -> bool {
        self.location_by_node.contains_key(node)
    }

    /// The trace whose probe was packet `packet_id`.
    pub fn trace_by_packet(&self, packet_id: &MsgId) -> Option<RequestId> {
        self.trace_by_packet.get(packet_id).copied()
    }

    /// Forgets, and returns in id order, the requests unanswered by `now`.
    pub fn expire(&mut self, now: SimTime) -> Vec<(RequestId, InFlight)> {
        let due: Vec<RequestId> = self
            .by_id
            .iter()
            .filter(|(_, f)| f.expires.is_some_and(|at| at <= now))
            .map(|(id, _)| *id)
            .collect();
        due.into_iter()
            .filter_map(|id| self.remove(id).map(|f| (id, f)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(b: u8) -> NodeId {
        NodeId([b; 32])
    }

    #[test]
    fn a_reply_is_taken_only_from_the_peer_asked() {
        let mut p = PendingRequests::default();
        assert!(p.insert(7, Request::Neighbors { peer: node(1) }, 0, Some(10)));
        let from_other = p.take_if(7, |r| *r == Request::Neighbors { peer: node(2) });
        assert!(from_other.is_none(), "another peer's reply matches nothing");
        assert!(
            p.take_if(8, |_| true).is_none(),
            "an unknown id matches nothing"
        );
        let taken = p.take_if(7, |r| *r == Request::Neighbors { peer: node(1) });
        assert_eq!(taken.map(|f| f.sent), Some(0));
        assert!(
            p.take_if(7, |_| true).is_none(),
            "a second reply matches nothing"
        );
    }

    #[test]
    fn each_kind_is_bounded_and_expiry_frees_room() {
        let mut p = PendingRequests::default();
        for i in 0..64 {
            let r = Request::Trace {
                to: node(1),
                packet_id: MsgId(i),
            };
            assert!(p.insert(i, r, 0, Some(5)));
        }
        let more = Request::Trace {
            to: node(1),
            packet_id: MsgId(99),
        };
        assert!(!p.insert(99, more.clone(), 0, Some(5)), "traces are full");
        assert!(p.insert(100, Request::Location { node: node(3) }, 0, Some(9)));
        assert_eq!(p.trace_by_packet(&MsgId(3)), Some(3));
        let expired = p.expire(5);
        assert_eq!(expired.len(), 64, "the traces expired, the query did not");
        assert!(p.location_pending(&node(3)));
        assert!(p.insert(99, more, 5, Some(10)));
        assert_eq!(p.trace_by_packet(&MsgId(3)), None);
    }
}
