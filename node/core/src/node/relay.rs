//! A supernode relaying routed frames without decoding them: the header
//! (and the body's first byte, its kind) is enough to decide, and the
//! runtime sends the received bytes on with ttl, hops and the location hop
//! rewritten ([`envelope::append_rewritten`]).
//!
//! # Implementation notes
//! - The decision is the one decoded packets get: [`Node::admit`] (link,
//!   the sender's budget, hello first), the duplicate window, and
//!   [`crate::routing::Router::decide`], which [`crate::routing::Router::route`]
//!   calls too; the simulator, which hands the core decoded packets, goes
//!   through the same functions.
//! - Only a forward takes this path: anything that needs the body (a
//!   packet for this node or from it, a trace to extend, a home's answer,
//!   a lookup, not-found, a copy kept for a probe) is answered
//!   [`FrameVerdict::Decode`] before any state changes, and the runtime
//!   decodes the frame and hands it to [`Node::handle_message`] as before.

use skyhop_protocol::envelope::{self, BodyKind, Rewrite, RoutedHeader};
use skyhop_protocol::{Message, NodeId, Role, StaleLocation, MAX_FRAME_BODY};

use super::Node;
use crate::budget::MessageClass;
use crate::counters::DropReason;
use crate::routing::{Decision, Head, RouteView, Step};
use crate::SimTime;

/// What the runtime does with a routed frame it has not decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameVerdict {
    /// The frame goes to this neighbor, rewritten so
    /// ([`envelope::append_rewritten`]); the body is sent as it came.
    Forward(NodeId, Rewrite),
    /// The frame was dropped here (counted): nothing to send.
    Dropped,
    /// Decode the frame and hand it to [`Node::handle_message`]: nothing
    /// was changed.
    Decode,
}

impl Node {
    /// A routed frame body (the bytes after the length prefix) arrived from
    /// `from`: where it goes and how it is rewritten when a relay only has
    /// to pass it on, or that it needs decoding.
    pub fn handle_routed_frame(
        &mut self,
        now: SimTime,
        from: NodeId,
        frame_body: &[u8],
    ) -> FrameVerdict {
        let Ok(h) = envelope::read_header(frame_body) else {
            return FrameVerdict::Decode; // Decoding says what is wrong.
        };
        let Some((to, d, kind)) = self.pure_forward(now, from, frame_body, &h) else {
            return FrameVerdict::Decode;
        };
        let class = MessageClass::of_routed(kind);
        let kind = kind.as_str();
        if !self.admit(now, from, class, kind, false, h.src == from) {
            return FrameVerdict::Dropped;
        }
        if !self.router.first_sight(&h.src, h.id, &h.location) {
            self.ctx.out.drop(DropReason::Duplicate);
            return FrameVerdict::Dropped;
        }
        if let Some(prev) = d.stale {
            let stale = StaleLocation { node: h.dst };
            self.ctx.out.send(prev, Message::StaleLocation(stale));
        }
        let counters = &mut self.ctx.out.counters;
        counters.forwarded += 1;
        *counters.frames_out.entry(kind).or_default() += 1;
        self.probe_if_quiet(now, to);
        FrameVerdict::Forward(
            to,
            Rewrite {
                ttl: h.ttl - 1,
                hops: h.hops.saturating_add(1),
                location: d.location,
            },
        )
    }

    /// The neighbor a routed frame goes to as it is but for the fields a
    /// [`Rewrite`] changes, the routing decision and the body's kind; None
    /// if handling it takes the body. Reads state, changes none.
    fn pure_forward(
        &self,
        now: SimTime,
        from: NodeId,
        frame_body: &[u8],
        h: &RoutedHeader,
    ) -> Option<(NodeId, Decision, BodyKind)> {
        let me = self.ctx.id;
        if self.left || self.ctx.cfg.role != Role::Supernode {
            return None;
        }
        // For us, from us (the primary probe), or with a trace to extend.
        if h.dst == me || h.src == me || h.trace_len.is_some() || h.ttl == 0 {
            return None;
        }
        let link = self.links.get(&from)?;
        // Before hello, or an ordinary node speaking for another: the
        // decoded path refuses it and says why.
        match link.role? {
            Role::Ordinary if h.src != from => return None,
            _ => {}
        }
        let kind = envelope::body_kind(frame_body, h)?;
        let head = Head {
            dst: h.dst,
            src: h.src,
            location: h.location,
            home_bound: crate::routing::is_home_bound(kind),
        };
        let view = RouteView {
            links: &self.links,
            table: &self.table,
            supernode: &self.supernode,
            directory: self.home.directory(),
            lost: &self.lost,
        };
        let d = self.router.decide(me, &view, now, Some(from), &head);
        let Step::Forward(to) = d.step else {
            return None;
        };
        if !self.links.contains(&to) {
            return None;
        }
        let rw = Rewrite {
            ttl: 0,
            hops: 0,
            location: d.location,
        };
        if envelope::rewritten_len(frame_body, &rw) > MAX_FRAME_BODY {
            return None; // The decoded path refuses to encode it.
        }
        if self.ctx.cfg.suspect_on_missing_ack
            && self.links.keeps_copies(&to, now, self.ctx.cfg.probe_quiet)
        {
            return None;
        }
        Some((to, d, kind))
    }
}
