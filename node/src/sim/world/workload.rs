//! The world's workload: chats between users, the flooders' batches and
//! the names workload's lookups.

use skyhop_protocol::Message;

use super::World;
use crate::sim::adversary::FLOOD_TICK;
use crate::sim::event::Ev;
use crate::sim::workload::Chat;

impl World {
    pub(super) fn chat(&mut self) {
        let now = self.now;
        let Some((chat, gap)) = self.work.next(now, &self.pop) else {
            return;
        };
        if let Some(Chat {
            from,
            to,
            text,
            offline,
        }) = chat
        {
            let to_id = self.pop.id(to);
            let unattached = !(self.pop.online(from) && self.pop.online(to));
            let taken = self
                .pop
                .node_mut(from)
                .map(|n| n.send_chat(now, to_id, text));
            match taken {
                Some(Ok(msg_id)) => {
                    self.rec.chat_sent(from, msg_id, to, now, unattached);
                    let across = self.net.cut(now, from, to);
                    self.cut.chat_sent(from, msg_id, now, across, unattached);
                    if offline {
                        self.rec.offline_sent(from, msg_id);
                    }
                    self.drain(from);
                }
                _ => self.rec.chat_refused(),
            }
        }
        self.push(now + gap, Ev::Chat);
    }

    /// The flooders' batch of this tick, each to its primary supernode.
    pub(super) fn flood(&mut self) {
        let now = self.now;
        let count = self.adv.frames_this_tick();
        for slot in self.adv.flooders() {
            // An ordinary flooder floods its primary; a supernode, the
            // neighbor closest to its victim.
            let as_supernode = self.adv.floods_as_supernode(slot);
            let primary = self.pop.node(slot).and_then(|n| n.primary());
            if primary.is_none() && !(as_supernode && self.pop.node(slot).is_some()) {
                self.adv.idle_tick();
                continue;
            }
            let id = self.pop.id(slot);
            let pop = &self.pop;
            let victim = |rng: &mut _| {
                let users = pop.ordinary();
                let pick = users[rand::RngExt::random_range(rng, 0..users.len())];
                (pick != slot).then(|| pop.id(pick))
            };
            let frames = self.adv.flood_frames(slot, id, now, victim, count);
            let toward = |m: &Message| match m {
                Message::Routed(p) => pop.node(slot)?.table().next_hop(&p.dst).map(|e| e.id),
                _ => None,
            };
            let Some(to) = primary.or_else(|| frames.first().and_then(toward)) else {
                self.adv.idle_tick();
                continue;
            };
            for msg in frames {
                self.transmit(slot, to, msg);
            }
        }
        self.push(now + FLOOD_TICK, Ev::Flood);
    }

    /// The names workload's next lookup: a random live user looks up a
    /// random held name (none in the last minute, so that each has an
    /// answer by the end).
    pub(super) fn name_lookup(&mut self) {
        let now = self.now;
        let (name, gap) = self.names.next_lookup();
        if now + 60 * skyhop_core::SECS > self.end {
            return;
        }
        if let Some(name) = name {
            let asker = self
                .names
                .pick_asker(self.pop.users(), |s| self.pop.attached_at(s).is_some());
            let holder = self.names.holder(&name);
            let down = holder
                .and_then(|h| self.pop.slot_of(&h))
                .is_none_or(|s| !self.pop.online(s));
            let asked = asker.and_then(|a| {
                let node = self.pop.node_mut(a)?;
                node.lookup_name(now, &name).ok().map(|id| (a, id))
            });
            match asked {
                Some((asker, request_id)) => {
                    self.names.asked(asker, request_id, name, now, down);
                    self.drain(asker);
                }
                None => self.names.not_asked(),
            }
        }
        self.push(now + gap, Ev::NameLookup);
    }

    /// The claims each live supernode holds.
    pub(super) fn claims_held(&self) -> Vec<usize> {
        let pop = &self.pop;
        pop.supernodes()
            .iter()
            .filter_map(|s| pop.node(*s).map(|n| n.name_claims_held()))
            .collect()
    }
}
