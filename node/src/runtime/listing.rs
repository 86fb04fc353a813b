//! The node task's side of listings: who waits for the answer to "who is
//! listed at my supernode" (see [`skyhop_core::Node::who`]).
//!
//! # Implementation notes
//! The supernode answers each client a burst of queries, then one a
//! second ([`skyhop_core::listing::WHO_INTERVAL`]), and drops the rest. So
//! that a page that polls, or several callers at once, never run into that
//! budget, this node keeps at most one query in flight (later callers wait
//! for the same answer) and answers from the last listing while it is
//! younger than that interval.

use skyhop_core::listing::WHO_INTERVAL;
use skyhop_core::{Node, SimTime};
use skyhop_protocol::{ListedPeer, NodeId};
use tokio::sync::oneshot;

use super::api_listing::{ListedNode, Who};
use super::RuntimeError;

/// Callers waiting for one listing at most.
const MAX_WAITING: usize = 64;

/// Where a listing goes.
type Reply = oneshot::Sender<Result<Who, RuntimeError>>;

/// The listing in flight and who waits for it, and the last answer.
#[derive(Default)]
pub struct WhoWaits {
    /// The request in flight, the supernode asked, and who waits.
    in_flight: Option<(u64, NodeId, Vec<Reply>)>,
    /// The last answer and when it came.
    last: Option<(SimTime, Who)>,
}

impl WhoWaits {
    /// The listing for `reply`: the last one if it is fresh, else the
    /// answer to the query in flight, or to a new one.
    pub fn ask(&mut self, core: &mut Node, now: SimTime, reply: Reply) {
        if let Some((at, who)) = &self.last {
            if now.saturating_sub(*at) < WHO_INTERVAL {
                let _ = reply.send(Ok(who.clone()));
                return;
            }
        }
        if let Some((_, _, waiting)) = &mut self.in_flight {
            waiting.retain(|r| !r.is_closed());
            if waiting.len() >= MAX_WAITING {
                let why = "too many callers waiting for a listing; try again in a few seconds";
                let _ = reply.send(Err(RuntimeError::Who { why: why.into() }));
            } else {
                waiting.push(reply);
            }
            return;
        }
        match core.who(now) {
            Ok((request_id, supernode)) => {
                self.in_flight = Some((request_id, supernode, vec![reply]))
            }
            Err(e) => {
                let _ = reply.send(Err(RuntimeError::Who { why: e.to_string() }));
            }
        }
    }

    /// The core's answer at `now` to listing `request_id`; `None`:
    /// unanswered.
    pub fn answered(&mut self, now: SimTime, request_id: u64, peers: Option<&[ListedPeer]>) {
        if self.in_flight.as_ref().map(|f| f.0) != Some(request_id) {
            return;
        }
        let Some((_, supernode, waiting)) = self.in_flight.take() else {
            return;
        };
        let answer = match peers {
            Some(peers) => {
                let who = Who {
                    supernode,
                    listed: peers.iter().cloned().map(ListedNode::from).collect(),
                };
                self.last = Some((now, who.clone()));
                Ok(who)
            }
            None => Err(format!("supernode {} did not answer", supernode.short())),
        };
        for reply in waiting {
            let answer = answer.clone().map_err(|why| RuntimeError::Who { why });
            let _ = reply.send(answer);
        }
    }
}
