//! The timers of a [`Node`]: heartbeats and dead links, attaching,
//! chat retries, bucket refresh, released lookups, and the housekeeping
//! that rides on the heartbeat tick.

use rand::RngExt;
use skyhop_protocol::{Body, Heartbeat, LocationHop, Message, MsgId, NodeId, Packet, Role};

use super::{Node, MAINTENANCE_INTERVAL};
use crate::attach::PARALLEL_ATTACH_DIALS;
use crate::events::{Action, ChatFailure, Event};
use crate::pending::Request;
use crate::routing::{self, ProbeStep};
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
                Timer::ProbeAck => self.on_probe_ack_timer(now),
                Timer::NameRefresh => self.claim_name(now),
                Timer::Pace => self.release_paced(now),
            }
        }
    }

    fn on_attach_timer(&mut self, now: SimTime) {
        match self.ctx.cfg.role {
            Role::Ordinary => self.attach.drive(
                &mut self.ctx,
                &mut self.links,
                &mut self.host_cache,
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
            self.probe(now, peer);
        }
        self.links.expire_dials(now, self.ctx.cfg.join_timeout);
        if self.ctx.cfg.role == Role::Ordinary && self.attach.primary().is_some() {
            self.attach
                .ensure_backups(&mut self.ctx, &mut self.links, &mut self.host_cache, now);
            self.attach
                .republish_if_backups_changed(&mut self.ctx, &self.links, now);
        }
        if self.ctx.cfg.role == Role::Ordinary {
            self.probe_primary(now);
        }
        if now >= self.maintenance_due {
            self.on_maintenance(now);
        }
        self.hand_over_drained(now, now);
        self.reconsider_role(now);
        self.ctx
            .timers
            .set(Timer::Heartbeat, now + self.ctx.cfg.heartbeat_interval);
    }

    /// Sends `peer` a heartbeat and, with `suspect_on_missing_ack`, watches
    /// for its ack.
    pub(super) fn probe(&mut self, now: SimTime, peer: NodeId) {
        let nonce = self.ctx.rng.random();
        if let Some(l) = self.links.get_mut(&peer) {
            l.ping = Some((nonce, now));
            l.probe_resent = false;
        }
        self.ctx
            .out
            .send(peer, Message::Heartbeat(Heartbeat { nonce }));
        if self.ctx.cfg.suspect_on_missing_ack {
            self.arm_probe_ack(now);
        }
    }

    /// A packet is forwarded to `peer`: if the link has been silent, a
    /// probe goes along, so that a dead neighbor is found by the traffic
    /// that needs it rather than by missed heartbeats.
    pub(super) fn probe_if_quiet(&mut self, now: SimTime, peer: NodeId) {
        if self.ctx.cfg.suspect_on_missing_ack
            && self.links.wants_probe(&peer, now, self.ctx.cfg.probe_quiet)
        {
            self.probe(now, peer);
        }
    }

    /// Keeps a copy of `p`, forwarded to `peer`, until a probe's ack
    /// shows that it arrived.
    pub(super) fn keep_until_acked(&mut self, now: SimTime, peer: NodeId, p: &Packet) {
        if self.ctx.cfg.suspect_on_missing_ack {
            self.links
                .keep_until_acked(&peer, p, now, self.ctx.cfg.probe_quiet);
        }
    }

    fn arm_probe_ack(&mut self, now: SimTime) {
        if let Some(at) = self
            .links
            .next_probe_deadline(self.ctx.cfg.probe_ack_timeout)
        {
            self.ctx.timers.set(Timer::ProbeAck, at.max(now));
        }
    }

    /// Closes the links whose probe went unanswered: routing goes around
    /// them at once.
    fn on_probe_ack_timer(&mut self, now: SimTime) {
        let floor = self.ctx.cfg.probe_ack_timeout;
        for peer in self.links.unanswered_probes(now, floor) {
            // Once overdue, the same probe goes again (same nonce: an ack
            // to either counts): under loss one probe or ack may wait out
            // a retransmission, which closed live links (BENCHMARKS,
            // suspect-loss-small). Only a second miss closes the link.
            if let Some(l) = self.links.get_mut(&peer) {
                if !l.probe_resent {
                    l.probe_resent = true;
                    if let Some((nonce, _)) = l.ping {
                        self.ctx
                            .out
                            .send(peer, Message::Heartbeat(Heartbeat { nonce }));
                    }
                    continue;
                }
            }
            self.ctx.out.counters.suspected += 1;
            let kept = self
                .links
                .get_mut(&peer)
                .and_then(|l| l.unacked.take())
                .map(|k| *k)
                .unwrap_or_default();
            self.ctx.out.act(Action::Disconnect {
                peer,
                reason: "no ack to a probe".into(),
            });
            self.link_lost(now, peer, "no ack to a probe");
            // What went to the dead neighbor since it fell quiet goes
            // another way now, rather than when its sender retries.
            if self.ctx.cfg.role == Role::Supernode {
                for p in kept {
                    self.route(now, None, p, false);
                }
            }
        }
        self.arm_probe_ack(now);
    }

    fn on_maintenance(&mut self, now: SimTime) {
        self.home.expire(now);
        self.lost.expire(now);
        self.names.expire(now);
        self.mailbox.expire(now);
        self.router.cache_mut().expire(now);
        for (request_id, f) in self.pending.expire(now) {
            match f.request {
                Request::Trace { to, .. } => self.ctx.out.emit(Event::TraceFailed {
                    probe_id: request_id,
                    to,
                    reason: ChatFailure::TimedOut,
                }),
                Request::Who { .. } => self.ctx.out.emit(Event::Listing {
                    request_id,
                    peers: None,
                }),
                Request::ListedName { name, node } => self.listing.name_checked(node, &name, None),
                _ => {}
            }
        }
        for record in self.supernode.records_due(&self.ctx, now) {
            self.originate(now, record.node, Body::Publish(record), None);
        }
        self.maintenance_due = now + MAINTENANCE_INTERVAL;
    }

    fn on_chat_timer(&mut self, now: SimTime) {
        for msg_id in self.chats.due(now) {
            // A chat whose last packet still waits for the pace is not
            // sent again: it would only wait behind it.
            let waiting = self
                .chats
                .last_packet(&msg_id)
                .is_some_and(|id| self.pacer.holds(&id));
            if self
                .chats
                .retry_or_fail(&mut self.ctx, now, msg_id)
                .is_some()
                && !waiting
            {
                self.push_chat(now, msg_id);
            }
        }
        for (author, receipt) in self.chats.finish_tick(&mut self.ctx, now) {
            self.send_receipt(now, author, receipt);
        }
    }

    /// Sends `body` to `to` for the `attempt`-th time (0: the first): on an
    /// ordinary node through another first hop than the send before
    /// (routing::first_hop), and a retried chat toward one of the backup
    /// supernodes the recipient's record named, so that a recipient's
    /// primary that drops it is passed by; its packet id.
    pub(super) fn send_through(
        &mut self,
        now: SimTime,
        to: NodeId,
        body: Body,
        attempt: u32,
    ) -> MsgId {
        let direct = self.links.get(&to).is_some_and(|l| l.role.is_some());
        let primary = self.attach.primary();
        let (hop, toward) = match self.ctx.cfg.role {
            Role::Ordinary if !direct => (
                routing::first_hop(primary, &self.links.backups(primary), attempt),
                matches!(body, Body::Chat(_))
                    .then(|| self.chats.retry_toward(&to, attempt))
                    .flatten(),
            ),
            _ => (None, None),
        };
        let Some(hop) = hop.filter(|h| Some(*h) != primary).or(toward.and(primary)) else {
            return self.originate(now, to, body, None);
        };
        // The backup itself, when linked to us too: straight to it.
        let hop = toward.filter(|b| self.links.is_supernode(b)).unwrap_or(hop);
        let id = MsgId(self.ctx.rng.random());
        let location = toward.map_or(LocationHop::Unused, LocationHop::Toward);
        self.router.first_sight(&self.ctx.id, id, &location);
        let p = Packet {
            dst: to,
            src: self.ctx.id,
            id,
            ttl: self.ctx.cfg.ttl.saturating_sub(1),
            hops: 1,
            location,
            trace: None,
            body,
        };
        self.ctx.out.send(hop, Message::Routed(p));
        id
    }

    /// Checks that the primary relays (routing::PrimaryProbe), and leaves
    /// one that does not: it is avoided, the link closed, and attachment
    /// fails over to a backup as if the primary had died.
    fn probe_primary(&mut self, now: SimTime) {
        let primary = self.attach.primary();
        match self.router.probe_mut().tick(&mut self.ctx, now, primary) {
            ProbeStep::Idle => {}
            ProbeStep::Send(sn, probe) => self.ctx.out.send(sn, Message::Routed(*probe)),
            ProbeStep::Abandon(sn) => {
                self.ctx.out.counters.primaries_abandoned += 1;
                let reason = "primary supernode did not relay our probes";
                self.attach.avoid_failing(sn, now);
                self.ctx.out.act(Action::Disconnect {
                    peer: sn,
                    reason: reason.into(),
                });
                self.link_lost(now, sn, reason);
            }
        }
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

#[cfg(test)]
mod tests {
    use skyhop_protocol::NodeId;

    use crate::harness::Harness;
    use crate::{NodeConfig, SECS};

    /// Six supernodes with the 8 s supernode heartbeat of flat mode; one
    /// crashes and another sends it a chat at once.
    fn crash_and_send(suspect_on_missing_ack: bool) -> (Harness, NodeId, NodeId) {
        let mut h = Harness::new();
        let cfg = NodeConfig {
            supernode_heartbeat_interval: 8 * SECS,
            suspect_on_missing_ack,
            ..NodeConfig::supernode()
        };
        let first = h.add(1, cfg.clone(), &[]);
        let others: Vec<NodeId> = (2..=6).map(|s| h.add(s, cfg.clone(), &[first])).collect();
        h.run_for(20 * SECS);
        let (sender, dead) = (others[0], others[1]);
        assert!(h.node(&sender).links().any(|p| *p == dead));
        h.crash(&dead);
        h.send_chat(sender, dead, "are you there?");
        h.run_for(SECS + SECS / 2);
        (h, sender, dead)
    }

    #[test]
    fn a_probe_unanswered_closes_the_link_without_waiting_for_missed_heartbeats() {
        let (h, sender, dead) = crash_and_send(true);
        assert!(
            !h.node(&sender).links().any(|p| *p == dead),
            "the link to the dead supernode is still open 1.5 s after the crash"
        );
        assert_eq!(h.node(&sender).counters().suspected, 1);
    }

    #[test]
    fn without_probes_a_dead_neighbor_waits_for_missed_heartbeats() {
        let (h, sender, dead) = crash_and_send(false);
        assert!(h.node(&sender).links().any(|p| *p == dead));
        assert_eq!(h.node(&sender).counters().suspected, 0);
    }
}
