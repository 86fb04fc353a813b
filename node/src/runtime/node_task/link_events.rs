//! What the node task does with its links' events: the frames a reader
//! hands over, and readers and writers that end.
//!
//! # Implementation notes
//! A routed frame is offered to the core undecoded first
//! ([`skyhop_core::Node::handle_routed_frame`]): a supernode that only forwards it
//! appends its bytes, rewritten, to the next link's out buffer, and nothing
//! is decoded or encoded. What the core needs the body of is decoded here
//! and handled as any message. A body that does not decode inside a good
//! envelope is the sender's fault only if the sender made it (it is the
//! packet's source); a relay cannot check bodies it does not decode, so
//! from a relay such a frame is dropped and counted, and the link stays.

use std::sync::atomic::Ordering;

use skyhop_core::{FrameVerdict, SimTime};
use skyhop_protocol::envelope;
use skyhop_protocol::{codec, DecodeError, Message, NodeId, PROTOCOL_VERSION};

use super::super::link::{InFrame, LinkEvent};
use super::super::oplog::OpKind;
use super::{NodeTask, HANDLED_FRAME_WORK};

impl NodeTask {
    /// Closes the link the core asked to close: the writer flushes what is
    /// queued, then the connection is closed.
    pub(super) fn close_link(&mut self, id: NodeId) {
        if let Some(link) = self.links.remove(&id) {
            self.abuse.links_closed += 1;
            link.reader.abort();
            self.disconnect_after_flush
                .insert(link.generation, link.peer);
            self.closing.push(link.writer);
            // Dropping `link.queue` lets the writer finish.
        }
    }

    /// Ends a link whose reader stopped on the peer's bad input: the
    /// writer flushes what is queued, then the connection is closed.
    fn drop_link_after_flush(&mut self, now: SimTime, id: NodeId, generation: u64) {
        if self
            .links
            .get(&id)
            .is_none_or(|l| l.generation != generation)
        {
            return;
        }
        if let Some(link) = self.links.remove(&id) {
            self.abuse.links_lost += 1;
            self.disconnect_after_flush
                .insert(link.generation, link.peer);
            self.closing.push(link.writer);
        }
        self.core.handle_link_down(now, id);
    }

    /// Ends a link the peer or the transport ended, and closes the
    /// connection too: a skyhop connection exists only for its link.
    /// `why` goes to the operator's log (unless the peer was already
    /// reported, as one dropped for bad frames is).
    pub(super) fn drop_link(
        &mut self,
        now: SimTime,
        id: NodeId,
        generation: u64,
        why: Option<String>,
    ) {
        let current = self
            .links
            .get(&id)
            .is_some_and(|l| l.generation == generation);
        if !current {
            return;
        }
        if let Some(why) = why {
            self.oplog
                .note(now, OpKind::LinkClosed, false, &id.short(), &why);
        }
        if let Some(link) = self.links.remove(&id) {
            self.abuse.links_lost += 1;
            link.reader.abort();
            self.closing.push(link.writer);
            let _ = self.swarm.disconnect_peer_id(link.peer);
        }
        self.core.handle_link_down(now, id);
    }

    /// Handles one link event; returns the work it took (see
    /// [`super::LINK_WORK_PER_WAKE`]).
    pub(super) fn on_link_event(&mut self, now: SimTime, ev: LinkEvent) -> usize {
        match ev {
            LinkEvent::Frames {
                node,
                generation,
                frames,
                routed,
                permit: _permit,
            } => {
                if self
                    .links
                    .get(&node)
                    .is_none_or(|l| l.generation != generation)
                {
                    return 0; // The link was replaced or dropped.
                }
                let mut work = 0;
                for frame in frames {
                    match frame {
                        InFrame::Routed(r) => match self.on_routed_frame(now, node, &routed[r]) {
                            Some(w) => work += w,
                            None => break, // The peer was dropped.
                        },
                        InFrame::Msg(msg) => {
                            self.on_message(now, node, *msg);
                            work += HANDLED_FRAME_WORK;
                        }
                    }
                }
                return work;
            }
            LinkEvent::ReaderDone {
                node,
                generation,
                error,
                bad_input,
            } => {
                let why = if let Some(bad) = bad_input {
                    let message = match bad {
                        DecodeError::UnknownVersion { got } => {
                            self.core.note_version_refused();
                            format!(
                                "refused: the peer speaks protocol version {got}, this node speaks {PROTOCOL_VERSION}"
                            )
                        }
                        other => format!("dropping the peer for bad frames: {other}"),
                    };
                    self.oplog
                        .note(now, OpKind::PeerDropped, true, &node.short(), &message);
                    // What is queued for the peer still goes out first:
                    // our Hello tells a peer of another version which one
                    // we speak, before the connection closes.
                    self.drop_link_after_flush(now, node, generation);
                    return 0;
                } else {
                    Some(match &error {
                        Some(e) => format!("link closed: {e}"),
                        None => "link closed by the peer".to_string(),
                    })
                };
                self.drop_link(now, node, generation, why);
            }
            LinkEvent::WriterDone {
                node,
                generation,
                error,
            } => {
                if let Some(peer) = self.disconnect_after_flush.remove(&generation) {
                    if !self.links.contains_key(&node) {
                        let _ = self.swarm.disconnect_peer_id(peer);
                    }
                }
                if let Some(e) = error {
                    let why = format!("link closed: cannot write to the peer: {e}");
                    self.drop_link(now, node, generation, Some(why));
                }
            }
        }
        0
    }

    /// Handles a routed frame body from `node`; the work it took (see
    /// [`super::LINK_WORK_PER_WAKE`]), or None if the peer was dropped for it.
    fn on_routed_frame(&mut self, now: SimTime, node: NodeId, body: &[u8]) -> Option<usize> {
        match self.core.handle_routed_frame(now, node, body) {
            FrameVerdict::Forward(to, rw) => {
                let queued = self
                    .links
                    .get(&to)
                    .is_some_and(|l| l.queue.push_rewritten(body, &rw));
                if !queued {
                    self.dropped_frames.fetch_add(1, Ordering::Relaxed);
                }
                Some(1)
            }
            FrameVerdict::Dropped => Some(1),
            FrameVerdict::Decode => match codec::decode_body(body) {
                Ok(msg) => {
                    self.core.handle_message(now, node, msg);
                    Some(HANDLED_FRAME_WORK)
                }
                Err(e) => self.on_bad_body(now, node, body, e).then_some(1),
            },
        }
    }

    /// A routed frame from `node` whose envelope is good and whose body is
    /// not; false if the peer was dropped for it.
    fn on_bad_body(&mut self, now: SimTime, node: NodeId, body: &[u8], e: DecodeError) -> bool {
        let own = envelope::read_header(body).is_ok_and(|h| h.src == node);
        if !own {
            self.abuse.bad_bodies_relayed += 1;
            tracing::debug!(peer = %node.short(), "a relayed packet's body does not decode, dropped: {e}");
            return true;
        }
        tracing::warn!(peer = %node.short(), "bad frame on /skyhop/1, dropping the peer: {e}");
        let message = format!("dropping the peer for bad frames: {e}");
        self.oplog
            .note(now, OpKind::PeerDropped, true, &node.short(), &message);
        if let Some(generation) = self.links.get(&node).map(|l| l.generation) {
            self.drop_link(now, node, generation, None);
        }
        false
    }

    /// Handles a decoded message from `node`.
    fn on_message(&mut self, now: SimTime, node: NodeId, msg: Message) {
        let msg = match msg {
            Message::DialBack(req) => return self.serve_dial_back(now, node, req),
            Message::DialBackResult(res) => {
                let verdict = self.reach.on_result(now, node, &res);
                return self.apply_verdict(verdict);
            }
            other => other,
        };
        if let Message::Redirect(r) = &msg {
            let message = format!(
                "redirected: the supernode is full and named {} others",
                r.supernodes.len()
            );
            self.oplog
                .note(now, OpKind::Redirect, false, &node.short(), &message);
        }
        self.core.handle_message(now, node, msg);
    }
}
