//! The world's wire: what a node sends goes past the adversary, is
//! encoded (and, if the scenario asks, decoded again) and put on the
//! network toward the peer it has a link to.

use skyhop_protocol::{codec, Message, NodeId};

use super::World;
use crate::sim::adversary::Verdict;
use crate::sim::event::Ev;
use crate::sim::net::Transit;

impl World {
    /// A frame leaves `from` for `to_id`: encoded (its length is what the
    /// traffic counts), then handed to the network model.
    pub(super) fn transmit(&mut self, from: u32, to_id: NodeId, msg: Message) {
        if self.adv.is_hostile(from) {
            let id = self.pop.id(from);
            let (pop, net) = (&self.pop, &self.net);
            let toward = |peer: &NodeId| {
                if pop.slot_of(peer).is_some_and(|s| net.has_link(from, s)) {
                    return Some(*peer);
                }
                pop.node(from)?.table().next_hop(peer).map(|e| e.id)
            };
            match self.adv.on_send(self.now, from, id, to_id, &msg, toward) {
                Verdict::Pass => {}
                Verdict::Drop => return,
                // The lie leaves as it is, not vetted again.
                Verdict::Forge(to, lie) => return self.send_frame(from, to, *lie),
            }
        }
        self.send_frame(from, to_id, msg);
    }

    /// Puts a frame `from` sends on the wire to `to_id`.
    fn send_frame(&mut self, from: u32, to_id: NodeId, msg: Message) {
        let now = self.now;
        self.scratch.clear();
        let len = match codec::encode_into(&msg, &mut self.scratch) {
            Ok(len) => len as u64,
            Err(e) => {
                let id = self.pop.id(from);
                self.fail(format!("node {id} sent an invalid {}: {e}", msg.kind()));
                return;
            }
        };
        // A frame for a peer this node has no link to never reaches the wire.
        let to = match self.pop.slot_of(&to_id) {
            Some(to) if self.net.has_link(from, to) => to,
            _ => {
                self.rec.dropped_no_link();
                return;
            }
        };
        self.rec.frame_sent(now, &msg, len);
        let (at, epoch) = match self.net.send(now, from, to) {
            // Sent, but lost in the cut.
            Transit::Cut => {
                self.rec.dropped_partition();
                return;
            }
            Transit::Arrives {
                at,
                epoch,
                retransmitted,
            } => {
                if retransmitted {
                    self.rec.retransmitted();
                }
                (at, epoch)
            }
        };
        self.verifier.in_flight(&msg);
        let msg = if self.cfg.network.roundtrip_codec {
            match codec::decode_frame(&self.scratch) {
                Ok(m) => m,
                Err(e) => {
                    self.fail(format!("a {} frame does not decode: {e}", msg.kind()));
                    return;
                }
            }
        } else {
            msg
        };
        let msg = Box::new(msg);
        self.push(
            at,
            Ev::Frame {
                from,
                to,
                epoch,
                msg,
            },
        );
    }
}
