//! The facade's link messages: what a linked peer says on its own link
//! (hello, join, heartbeats, neighbors, publish, ...), admitted against the
//! peer's budget first. Routed packets go on in `packets.rs`.

use rand::RngExt;
use skyhop_protocol::{
    Body, FindNeighbors, HeartbeatAck, Hello, Message, Neighbors, NodeId, PeerInfo, Role,
    WithdrawReason,
};

use super::{Node, NEIGHBORS_RETURNED, QUERY_TIMEOUT, YOUNG_TABLE_REFRESH};
use crate::budget::{MessageClass, Verdict};
use crate::counters::DropReason;
use crate::events::Action;
use crate::pending::Request;
use crate::supernode::ClientNotice;
use crate::table::{InsertOutcome, NeighborTable};
use crate::timers::Timer;
use crate::SimTime;

impl Node {
    /// A frame arrived from linked peer `from`.
    pub fn handle_message(&mut self, now: SimTime, from: NodeId, msg: Message) {
        if self.left {
            return;
        }
        let hello = matches!(msg, Message::Hello(_));
        let own = matches!(&msg, Message::Routed(p) if p.src == from);
        if !self.admit(now, from, MessageClass::of(&msg), msg.kind(), hello, own) {
            return;
        }
        match msg {
            Message::Hello(h) => self.on_hello(now, from, h),
            Message::Join(j) => {
                self.supernode
                    .on_join(&mut self.ctx, now, &self.links, &self.table, from, j)
            }
            Message::Accept(a) => {
                self.attach.on_accept(
                    &mut self.ctx,
                    &mut self.links,
                    &mut self.host_cache,
                    &mut self.pending,
                    now,
                    from,
                    a,
                );
                if self.attach.primary() == Some(from) {
                    self.send_listed(now);
                }
            }
            Message::Redirect(r) => {
                self.attach.on_redirect(
                    &mut self.ctx,
                    &mut self.links,
                    &mut self.host_cache,
                    &mut self.pending,
                    now,
                    from,
                    r,
                );
            }
            Message::Leave(l) if self.links.is_supernode(&from) => {
                self.on_supernode_leaving(now, from, l)
            }
            Message::Leave(l) => match self.supernode.on_leave(&mut self.ctx, from, l) {
                ClientNotice::Ignored => {}
                ClientNotice::Misbehaved(reason) => self.misbehaved(now, from, reason),
                ClientNotice::Accepted(leave) => {
                    let seq = leave.seq;
                    self.listing.client_gone(&from);
                    self.withdraw(now, from, seq, WithdrawReason::Left(leave));
                    self.ctx.out.act(Action::Disconnect {
                        peer: from,
                        reason: "client left".into(),
                    });
                    self.links.remove(&from);
                }
            },
            Message::Heartbeat(h) => {
                let clients = self.supernode.demand(now);
                self.ctx.out.send(
                    from,
                    Message::HeartbeatAck(HeartbeatAck {
                        nonce: h.nonce,
                        clients,
                    }),
                );
            }
            Message::HeartbeatAck(a) => self.on_heartbeat_ack(now, from, a),
            Message::FindNeighbors(f) => {
                let peers: Vec<PeerInfo> = self
                    .table
                    .closest(&f.target, NEIGHBORS_RETURNED + 1)
                    .into_iter()
                    .filter(|e| e.id != from)
                    .take(NEIGHBORS_RETURNED)
                    .map(NeighborTable::peer_info)
                    .collect();
                self.ctx.out.send(
                    from,
                    Message::Neighbors(Neighbors {
                        request_id: f.request_id,
                        peers,
                    }),
                );
            }
            Message::Neighbors(n) => {
                let asked = self
                    .pending
                    .take_if(n.request_id, |r| *r == Request::Neighbors { peer: from });
                if asked.is_none() {
                    self.ctx.out.drop(DropReason::UnsolicitedReply);
                    return;
                }
                self.on_neighbors(now, from, n.peers);
            }
            Message::Publish(record) => {
                match self.supernode.on_publish(&mut self.ctx, from, record) {
                    ClientNotice::Ignored => {}
                    ClientNotice::Misbehaved(reason) => self.misbehaved(now, from, reason),
                    ClientNotice::Accepted(record) => {
                        self.originate(now, record.node, Body::Publish(record), None);
                    }
                }
            }
            Message::Routed(p) => {
                // An ordinary node speaks only for itself: a packet it hands
                // us in another node's name is a forgery.
                let from_ordinary =
                    self.links.get(&from).and_then(|l| l.role) == Some(Role::Ordinary);
                if from_ordinary && p.src != from {
                    let reason = format!("sent a packet in the name of {}", p.src);
                    self.misbehaved(now, from, reason);
                    return;
                }
                self.handle_packet(now, Some(from), p)
            }
            Message::StaleLocation(s) => self.router.cache_mut().remove(&s.node),
            Message::DialBack(_) | Message::DialBackResult(_) => {
                self.ctx.out.drop(DropReason::DialBackUnserved)
            }
            Message::Listed(l) => self.on_listed(now, from, l),
            Message::WhoQuery(q) => self.on_who_query(now, from, q),
            Message::Listing(l) => self.on_listing(from, l),
        }
    }

    /// The checks every frame from `from` passes before it is read, decoded
    /// or not: a link, the sender's budget for `class`, a hello first. True
    /// if the frame (of kind `kind`, a hello if `hello`, a routed packet
    /// whose source is `from` if `own`) is to be handled.
    pub(super) fn admit(
        &mut self,
        now: SimTime,
        from: NodeId,
        class: MessageClass,
        kind: &'static str,
        hello: bool,
        own: bool,
    ) -> bool {
        let Some(link) = self.links.get_mut(&from) else {
            self.ctx.out.drop(DropReason::NotLinked);
            return false;
        };
        link.last_heard = now;
        let supernode = link.role == Some(Role::Supernode);
        let cfg = &self.ctx.cfg.budget;
        // A supernode's own packets first meet a client's budget: the
        // excess is dropped here, its first hop, but never costs the link
        // (see the budget module's notes).
        if own && !link.budget.charge_originated(cfg, class, now) {
            let counters = &mut self.ctx.out.counters;
            *counters
                .over_budget
                .entry(class.originated_str())
                .or_default() += 1;
            self.ctx.out.drop(DropReason::OverBudget);
            return false;
        }
        let verdict = link.budget.charge(cfg, class, supernode, now);
        if verdict != Verdict::Within {
            let counters = &mut self.ctx.out.counters;
            *counters.over_budget.entry(class.as_str()).or_default() += 1;
            self.ctx.out.drop(DropReason::OverBudget);
            if verdict == Verdict::Exhausted {
                let reason = format!("kept sending {} frames over budget", class.as_str());
                self.drop_peer(now, from, reason);
            }
            return false;
        }
        let said_hello = link.role.is_some();
        *self.ctx.out.counters.frames_in.entry(kind).or_default() += 1;
        if !said_hello && !hello {
            self.misbehaved(now, from, format!("sent {kind} before hello"));
            return false;
        }
        self.table.touch(&from, now, None);
        true
    }

    pub(super) fn on_hello(&mut self, now: SimTime, from: NodeId, h: Hello) {
        if h.id != from {
            self.misbehaved(
                now,
                from,
                format!(
                    "hello claims id {} on a link authenticated as {}",
                    h.id, from
                ),
            );
            return;
        }
        let Some(link) = self.links.get_mut(&from) else {
            return;
        };
        if link.role.is_some() {
            self.ctx.out.drop(DropReason::RepeatedHello);
            return;
        }
        link.role = Some(h.role);
        link.addrs = h.listen_addrs.clone();
        if h.role != Role::Supernode {
            return;
        }
        link.budget.promote_to_supernode(&self.ctx.cfg.budget);
        self.lost.found(&from);
        self.host_cache
            .add_verified(from, h.listen_addrs.clone(), now);
        match self.ctx.cfg.role {
            Role::Supernode => {
                if self.table.insert(from, h.listen_addrs, now) == InsertOutcome::Added {
                    self.hand_over_records(now, from);
                    self.hand_over_to_supernode(now, from);
                    // A growing table means our view is still young: look up
                    // our own id again soon, so that nodes that joined at the
                    // same moment still find their closest neighbors.
                    self.ctx
                        .timers
                        .set_earliest(Timer::TableRefresh, now + YOUNG_TABLE_REFRESH);
                    // Look ourselves up through the newcomer while the table is
                    // young or the newcomer is among our closest: the standard
                    // Kademlia self-lookup that fills buckets and leaf set.
                    let near = self
                        .table
                        .closest(&self.ctx.id, 3)
                        .iter()
                        .any(|e| e.id == from);
                    if near || self.table.len() < self.ctx.cfg.bucket_size {
                        self.ask_neighbors(now, from, self.ctx.id);
                    }
                }
            }
            Role::Ordinary => self.ctx.timers.set_earliest(Timer::Attach, now),
        }
        if self.ctx.cfg.role == Role::Supernode {
            // Packets held for this supernode (a query about it that
            // stopped here, see `toward_known_supernode`) can go on now.
            self.release_held(now, &from);
        }
    }

    /// Asks supernode `peer` for the supernodes it knows closest to `target`.
    pub(super) fn ask_neighbors(&mut self, now: SimTime, peer: NodeId, target: NodeId) {
        let request_id = self.ctx.rng.random();
        let request = Request::Neighbors { peer };
        if !self
            .pending
            .insert(request_id, request, now, Some(now + QUERY_TIMEOUT))
        {
            return;
        }
        self.ctx.out.send(
            peer,
            Message::FindNeighbors(FindNeighbors { request_id, target }),
        );
    }

    pub(super) fn on_heartbeat_ack(&mut self, now: SimTime, from: NodeId, a: HeartbeatAck) {
        let Some(link) = self.links.get_mut(&from) else {
            return;
        };
        link.load = a.clients;
        if let Some((nonce, sent)) = link.ping {
            if nonce == a.nonce {
                let rtt = now.saturating_sub(sent);
                link.rtt = Some(rtt);
                link.ping = None;
                link.probe_resent = false;
                link.unacked = None;
                self.table.touch(&from, now, Some(rtt));
                self.role.answered(from, sent);
            }
        }
    }

    pub(super) fn on_neighbors(&mut self, now: SimTime, from: NodeId, peers: Vec<PeerInfo>) {
        for p in peers {
            if p.id == self.ctx.id {
                continue;
            }
            match self.ctx.cfg.role {
                Role::Ordinary => self
                    .host_cache
                    .add_advertised(p.id, p.addrs, now, Some(from)),
                Role::Supernode => {
                    if !self.links.contains(&p.id) && self.table.has_room_for(&p.id) {
                        // Dialed at `from`'s word: within its budget.
                        if !self.host_cache.may_dial_advertised(now, from) {
                            self.ctx.out.drop(DropReason::DialOverBudget);
                            continue;
                        }
                        self.links.dial(&mut self.ctx, now, Some(p.id), p.addrs);
                    }
                }
            }
        }
    }
}
