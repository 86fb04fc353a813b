//! The timers of a [`Node`]: heartbeats and dead links, attaching,
//! chat retries, bucket refresh, released lookups, and the housekeeping
//! that rides on the heartbeat tick.

use rand::RngExt;
use skyhop_protocol::{Body, Heartbeat, Message, NodeId, Role};

use super::{Node, MAINTENANCE_INTERVAL};
use crate::attach::PARALLEL_ATTACH_DIALS;
use crate::events::{Action, ChatFailure, Event};
use crate::pending::Request;
use crate::timers::Timer;
use crate::SimTime;

impl Node {
    /// Runs every timer due at `now`.
    pub fn handle_timeout(&mut self, now: SimTime) {
        if self.left {
            return;
        }
        for timer in self.ctx.timers.take_due(now) {
            match timer {
                Timer::Heartbeat => self.on_heartbeat_timer(now),
                Timer::Attach => self.on_attach_timer(now),
                Timer::Chat => self.on_chat_timer(now),
                Timer::TableRefresh => self.on_table_refresh(now),
                Timer::Lookup => self.on_lookup_timer(now),
            }
        }
    }

    fn on_attach_timer(&mut self, now: SimTime) {
        match self.ctx.cfg.role {
            Role::Ordinary => self.attach.drive(
                &mut self.ctx,
                &mut self.links,
                &self.host_cache,
                &mut self.pending,
                now,
            ),
            Role::Supernode => {
                if self.table.is_empty() && self.ctx.cfg.auto_role.enabled {
                    self.relink_supernodes(now);
                }
                if self.table.is_empty() && !self.ctx.cfg.bootstrap.is_empty() {
                    self.attach
                        .bootstrap_supernode(&mut self.ctx, &mut self.links, now);
                }
            }
        }
    }

    fn on_heartbeat_timer(&mut self, now: SimTime) {
        let supernode = &self.supernode;
        let tick = self
            .links
            .heartbeat_tick(&self.ctx.cfg, &self.ctx.id, now, |id| {
                supernode.is_client(id)
            });
        for (peer, reason) in tick.dead {
            self.ctx.out.act(Action::Disconnect {
                peer,
                reason: reason.to_string(),
            });
            self.link_lost(now, peer, reason);
        }
        for peer in tick.ping {
            let nonce = self.ctx.rng.random();
            if let Some(l) = self.links.get_mut(&peer) {
                l.ping = Some((nonce, now));
            }
            self.ctx
                .out
                .send(peer, Message::Heartbeat(Heartbeat { nonce }));
        }
        self.links.expire_dials(now, self.ctx.cfg.join_timeout);
        if self.ctx.cfg.role == Role::Ordinary && self.attach.primary().is_some() {
            self.attach
                .ensure_backups(&mut self.ctx, &mut self.links, &self.host_cache, now);
        }
        if now >= self.maintenance_due {
            self.on_maintenance(now);
        }
        self.reconsider_role(now);
        self.ctx
            .timers
            .set(Timer::Heartbeat, now + self.ctx.cfg.heartbeat_interval);
    }

    fn on_maintenance(&mut self, now: SimTime) {
        self.home.expire(now);
        self.router.cache_mut().expire(now);
        for (probe_id, f) in self.pending.expire(now) {
            if let Request::Trace { to, .. } = f.request {
                self.ctx.out.emit(Event::TraceFailed {
                    probe_id,
                    to,
                    reason: ChatFailure::TimedOut,
                });
            }
        }
        for record in self.supernode.records_due(&self.ctx, now) {
            self.originate(now, record.node, Body::Publish(record), None);
        }
        self.maintenance_due = now + MAINTENANCE_INTERVAL;
    }

    fn on_chat_timer(&mut self, now: SimTime) {
        for msg_id in self.chats.due(now) {
            let Some(retry) = self.chats.retry_or_fail(&mut self.ctx, now, msg_id) else {
                continue;
            };
            let to = retry.chat.to;
            let packet_id = self.originate(now, to, Body::Chat(retry.chat), None);
            self.chats.resent(&msg_id, packet_id, now, retry.delay);
        }
        self.chats.finish_tick(&mut self.ctx, now);
    }

    /// Sends on, the usual way, packets whose lookup took too long.
    fn on_lookup_timer(&mut self, now: SimTime) {
        for dst in self.router.overdue(now, self.ctx.cfg.lookup_hold) {
            self.release_held(now, &dst);
        }
        self.router.rearm(&mut self.ctx, now);
    }

    fn on_table_refresh(&mut self, now: SimTime) {
        let closest: Vec<NodeId> = self
            .table
            .closest(&self.ctx.id, 3)
            .iter()
            .map(|e| e.id)
            .collect();
        for peer in closest {
            self.ask_neighbors(now, peer, self.ctx.id);
        }
        let all: Vec<NodeId> = self.table.iter().map(|e| e.id).collect();
        if !all.is_empty() {
            let peer = all[self.ctx.rng.random_range(0..all.len())];
            let mut target = [0u8; 32];
            self.ctx.rng.fill(&mut target[..]);
            self.ask_neighbors(now, peer, NodeId(target));
        }
        // Re-link supernodes we knew and lost that would fit in the table:
        // after a partition heals, no lookup inside either half would ever
        // reach the other half again. Only supernodes verified by linking
        // to them: advertised addresses are not dialed on anyone's word.
        let lost: Vec<(NodeId, Vec<String>)> = self
            .host_cache
            .verified()
            .filter(|(id, _)| {
                !self.links.contains(id) && !self.attach.avoids(id) && self.table.has_room_for(id)
            })
            .take(PARALLEL_ATTACH_DIALS)
            .map(|(id, addrs)| (*id, addrs.clone()))
            .collect();
        for (id, addrs) in lost {
            self.links.dial(&mut self.ctx, now, Some(id), addrs);
        }
        if self.table.is_empty() {
            self.ctx.timers.set_earliest(Timer::Attach, now);
        }
        self.ctx
            .timers
            .set(Timer::TableRefresh, now + self.ctx.cfg.table_refresh);
    }
}
