//! The packet pipeline of a [`Node`]: a packet is originated here or
//! arrives on a link, is checked against the duplicate window, routed by
//! the [`Router`]'s decision (forward, deliver at home, look up, or answer
//! not-found), and when it is for this node, delivered to the sub-machine
//! that owns its body: chat delivery, traces, the home directory or the
//! location cache.
//!
//! [`Router`]: crate::routing::Router

use skyhop_protocol::{
    Absence, Body, LocationHop, LocationRecord, Message, MsgId, NameClaim, NodeId, NotFoundReason,
    Packet, Role, Trace, MAX_TRACE_HOPS,
};

use super::role_change::copies_to;
use super::{Node, QUERY_TIMEOUT};
use crate::counters::DropReason;
use crate::delivery::{Receipt, Sealing};
use crate::directory::StoreOutcome;
use crate::events::{ChatFailure, Event};
use crate::names::{self, NameState};
use crate::pending::Request;
use crate::routing::{Route, RouteView};
use crate::timers::Timer;
use crate::SimTime;

use rand::RngExt;

impl Node {
    /// Starts a packet from this node; its packet id.
    pub(super) fn originate(
        &mut self,
        now: SimTime,
        dst: NodeId,
        body: Body,
        trace: Option<Trace>,
    ) -> MsgId {
        let id = MsgId(self.ctx.rng.random());
        let p = Packet {
            dst,
            src: self.ctx.id,
            id,
            ttl: self.ctx.cfg.ttl,
            hops: 0,
            location: LocationHop::Unused,
            trace,
            body,
        };
        self.router
            .first_sight(&self.ctx.id, id, &LocationHop::Unused);
        if dst == self.ctx.id {
            self.deliver(now, p);
            return id;
        }
        match self.ctx.cfg.role {
            Role::Supernode => self.route(now, None, p, true),
            Role::Ordinary => {
                let direct = self.links.get(&dst).is_some_and(|l| l.role.is_some());
                match (direct, self.attach.primary()) {
                    (true, _) => self.forward(now, dst, p),
                    (false, Some(sn)) => self.forward(now, sn, p),
                    (false, None) => self.ctx.out.drop(DropReason::NotAttached),
                }
            }
        }
        id
    }

    pub(super) fn handle_packet(&mut self, now: SimTime, from: Option<NodeId>, mut p: Packet) {
        // Our probe of the primary, back from it (see routing::PrimaryProbe).
        if p.src == self.ctx.id && p.dst == self.ctx.id && self.router.probe_mut().returned(p.id) {
            return;
        }
        if !self.router.first_sight(&p.src, p.id, &p.location) {
            self.ctx.out.drop(DropReason::Duplicate);
            return;
        }
        if let Some(trace) = &mut p.trace {
            if trace.0.len() < MAX_TRACE_HOPS {
                trace.0.push(self.ctx.id);
            }
        }
        if p.dst == self.ctx.id {
            self.deliver(now, p);
        } else if self.ctx.cfg.role == Role::Supernode {
            self.route(now, from, p, true);
        } else {
            self.ctx.out.drop(DropReason::Misrouted);
        }
    }

    /// Routes `p` (from `from`) and carries out the decision; `may_hold`
    /// is false for a packet released from a lookup hold.
    pub(super) fn route(&mut self, now: SimTime, from: Option<NodeId>, p: Packet, may_hold: bool) {
        let view = RouteView {
            links: &self.links,
            table: &self.table,
            supernode: &self.supernode,
            directory: self.home.directory(),
            lost: &self.lost,
        };
        let decision = self.router.route(&mut self.ctx, &view, now, from, p);
        self.enact(now, from, decision, may_hold);
    }

    fn enact(&mut self, now: SimTime, from: Option<NodeId>, decision: Route, may_hold: bool) {
        match decision {
            Route::Forward(to, p) => self.forward(now, to, p),
            Route::AtHome(Packet {
                src,
                body: Body::MailboxStore(kept),
                ..
            }) => self.on_mailbox_store(now, src, kept, true),
            Route::AtHome(Packet {
                dst,
                body: Body::ReceiptStore(receipt),
                ..
            }) => self.on_receipt_store(now, dst, receipt, true),
            Route::AtHome(p) => {
                let Some(p) = self.toward_known_supernode(now, from, p, may_hold) else {
                    return;
                };
                let published = match &p.body {
                    Body::Publish(record) => Some(record.node),
                    _ => None,
                };
                let sends = match p.body {
                    Body::NameClaim { request_id, claim } => self.names.at_home(
                        &mut self.ctx,
                        &self.table,
                        now,
                        p.src,
                        request_id,
                        claim,
                    ),
                    Body::NameQuery { request_id, name } => {
                        self.ctx.out.counters.delivered += 1;
                        vec![self.names.answer_query(now, p.src, request_id, name)]
                    }
                    body => {
                        let replicas = self.ctx.cfg.replicas;
                        let copies_to = copies_to(&self.table, &self.links, &self.role, replicas);
                        self.home
                            .at_home(&mut self.ctx, copies_to, &self.lost, now, p.src, body)
                    }
                };
                for (dst, body) in sends {
                    let body = self.with_last_record(body);
                    self.originate(now, dst, body, None);
                }
                if let Some(node) = published {
                    self.hand_over(now, node);
                }
            }
            Route::LookUp(p) => {
                // Our own client's packet to an unknown location: look it
                // up, and hold the packet briefly so that it too takes the
                // direct path (ON -> SN -> SN -> ON) rather than a detour
                // through the recipient's home supernode.
                if self.query_location(now, p.dst)
                    && may_hold
                    && self.ctx.cfg.lookup_hold > 0
                    && self.router.can_hold(&p.dst)
                {
                    self.router.hold(&mut self.ctx, now, from, p);
                    return;
                }
                let view = RouteView {
                    links: &self.links,
                    table: &self.table,
                    supernode: &self.supernode,
                    directory: self.home.directory(),
                    lost: &self.lost,
                };
                let onward = self.router.onward(&self.ctx, &view, now, p, None);
                self.enact(now, from, onward, may_hold);
            }
            Route::Undeliverable(p, reason) => self.undeliverable(now, p, reason),
        }
    }

    /// A location query that stopped here, one hop short of the supernode
    /// it asks about: greedy routing found no neighbor closer to the key,
    /// but this node knows the key to be a supernode, which only it can
    /// answer for (supernodes publish no record; each signs its own when
    /// asked). Without this, a home with no record would answer "no
    /// record" for a live supernode, and every retry would take the same
    /// path (flat mode, where every chat is to a supernode).
    ///
    /// Sent to it on our link to it, or, if it is in the host cache as a
    /// supernode we were linked to, held while we dial it, at most
    /// `lookup_hold` like a lookup's packets; it goes on when the link
    /// comes up ([`Node::release_held`]), else is answered here as
    /// before. The packet is given back when none of this applies.
    fn toward_known_supernode(
        &mut self,
        now: SimTime,
        from: Option<NodeId>,
        p: Packet,
        may_hold: bool,
    ) -> Option<Packet> {
        let node = match &p.body {
            Body::LocationQuery { node, .. } => *node,
            _ => return Some(p),
        };
        let directory = self.home.directory();
        if node != p.dst
            || node == self.ctx.id
            || directory.get(&node, now).is_some()
            || directory.departed(&node, now)
        {
            return Some(p);
        }
        if self.links.is_supernode(&node) {
            self.forward(now, node, p);
            return None;
        }
        let Some(addrs) = self.host_cache.verified_addrs(&node) else {
            return Some(p);
        };
        if !may_hold || self.ctx.cfg.lookup_hold == 0 || !self.router.can_hold(&node) {
            return Some(p);
        }
        let addrs = addrs.to_vec();
        if !self.links.contains(&node) {
            self.links.dial(&mut self.ctx, now, Some(node), addrs);
        }
        self.router.hold(&mut self.ctx, now, from, p);
        None
    }

    /// Sends chat `msg_id` sealed to its recipient, or first looks up the
    /// recipient's chat key (its signed location record).
    pub(super) fn push_chat(&mut self, now: SimTime, msg_id: MsgId) {
        match self.chats.sealing(&mut self.ctx, &msg_id) {
            Sealing::Ready(to, sealed, attempt) => {
                let packet_id = self.send_through(now, to, Body::Chat(sealed), attempt);
                self.chats.sent_as(&msg_id, packet_id);
            }
            Sealing::NeedKey(to) => {
                self.query_location(now, to);
            }
            Sealing::Gone => {}
        }
    }

    /// Sends a signed receipt back to the chat's author `to`.
    pub(super) fn send_receipt(&mut self, now: SimTime, to: NodeId, receipt: Receipt) {
        // A duplicate means our receipt was lost: the next one takes
        // another path (routing::first_hop), and a flood of replays is not
        // answered by a flood of receipts.
        let attempt = if receipt.again {
            self.router.next_detour(now)
        } else {
            Some(0)
        };
        match attempt {
            Some(attempt) => {
                self.send_through(now, to, receipt.body, attempt);
            }
            None => self.ctx.out.drop(DropReason::ReackOverBudget),
        }
    }

    /// Looks up where `node` is attached; true while a lookup is pending.
    pub(super) fn query_location(&mut self, now: SimTime, node: NodeId) -> bool {
        if self.pending.location_pending(&node) {
            return true;
        }
        let request = Request::Location { node };
        if !self.pending.has_room(&request) {
            return false;
        }
        let request_id = self.ctx.rng.random();
        self.pending
            .insert(request_id, request, now, Some(now + QUERY_TIMEOUT));
        self.originate(now, node, Body::LocationQuery { request_id, node }, None);
        true
    }

    /// Sends on the packets held for `dst`: its lookup was answered or took
    /// too long.
    pub(super) fn release_held(&mut self, now: SimTime, dst: &NodeId) {
        for (from, p) in self.router.release(dst) {
            self.route(now, from, p, false);
        }
    }

    fn forward(&mut self, now: SimTime, to: NodeId, p: Packet) {
        if self.ctx.cfg.role == Role::Supernode || p.src != self.ctx.id {
            return self.send_on(now, to, p);
        }
        // An ordinary node's own packet: at the pace its peers admit.
        if self.pacer.admits(&self.ctx.cfg.budget, now, &p) {
            self.send_on(now, to, p);
        } else if self.pacer.hold(to, p) {
            self.arm_pace();
        } else {
            self.ctx.out.drop(DropReason::PaceQueueFull);
        }
    }

    /// Sends on the packets of ours that the pace lets go now.
    pub(super) fn release_paced(&mut self, now: SimTime) {
        for (to, p) in self.pacer.release(&self.ctx.cfg.budget, now) {
            self.send_on(now, to, p);
        }
        self.arm_pace();
    }

    fn arm_pace(&mut self) {
        if let Some(at) = self.pacer.next_release(&self.ctx.cfg.budget) {
            self.ctx.timers.set(Timer::Pace, at);
        }
    }

    fn send_on(&mut self, now: SimTime, to: NodeId, mut p: Packet) {
        if p.ttl == 0 {
            self.undeliverable(now, p, NotFoundReason::TtlExpired);
            return;
        }
        if !self.links.contains(&to) {
            self.undeliverable(now, p, NotFoundReason::NoRoute);
            return;
        }
        p.ttl -= 1;
        p.hops = p.hops.saturating_add(1);
        if p.src != self.ctx.id {
            self.ctx.out.counters.forwarded += 1;
        }
        self.keep_until_acked(now, to, &p);
        self.ctx.out.send(to, Message::Routed(p));
        self.probe_if_quiet(now, to);
    }

    fn undeliverable(&mut self, now: SimTime, p: Packet, reason: NotFoundReason) {
        self.ctx.out.drop(DropReason::undeliverable(reason));
        if self.keep_receipt_for_author(now, p.dst, &p.body, reason) {
            return;
        }
        // Only what a user waits on gets an answer, so that answers never
        // cause answers.
        if matches!(
            p.body,
            Body::Chat(_) | Body::TraceProbe { .. } | Body::Datagram(_)
        ) && p.src != self.ctx.id
        {
            let absence = self.ctx.identity.absence(p.id.0, p.dst, reason);
            self.originate(now, p.src, Body::NotFound(absence), None);
        } else if p.src == self.ctx.id {
            let me = self.ctx.id;
            self.on_not_found(now, p.id, reason, me);
        }
    }

    /// A packet addressed to this node arrived.
    fn deliver(&mut self, now: SimTime, p: Packet) {
        self.ctx.out.counters.delivered += 1;
        match p.body {
            Body::Chat(sealed) => {
                let receipts = self
                    .chats
                    .on_chat(&mut self.ctx, now, p.src, p.hops, sealed, false);
                for receipt in receipts {
                    self.send_receipt(now, p.src, receipt);
                }
            }
            Body::ChatAck(receipt) => self.chats.on_ack(&mut self.ctx, now, p.src, receipt),
            Body::NotFound(absence) => {
                if self.ctx.memo.verify_absence(&absence).is_ok() {
                    self.on_not_found(now, MsgId(absence.about), absence.reason, absence.by);
                } else {
                    self.ctx.out.counters.forged += 1;
                    self.ctx.out.drop(DropReason::ForgedAbsence);
                }
            }
            Body::TraceProbe { probe_id } => {
                let path = p.trace.map(|t| t.0).unwrap_or_default();
                self.originate(now, p.src, Body::TraceReply { probe_id, path }, None);
            }
            Body::TraceReply { probe_id, path } => {
                let asked = self.pending.take_if(
                    probe_id,
                    |r| matches!(r, Request::Trace { to, .. } if *to == p.src),
                );
                match asked {
                    Some(f) => self.ctx.out.emit(Event::TraceCompleted {
                        probe_id,
                        to: p.src,
                        path,
                        rtt: now.saturating_sub(f.sent),
                    }),
                    None => self.ctx.out.drop(DropReason::UnsolicitedReply),
                }
            }
            Body::Publish(record) => {
                // A replica copy from a home supernode, or a record handed
                // over. A draining supernode that has handed its own
                // records over passes it on rather than keep it.
                if self.ctx.cfg.role == Role::Supernode {
                    let node = record.node;
                    let pass_on = self.role.has_handed_over().then(|| record.clone());
                    let stored = self.home.store(&mut self.ctx, now, record);
                    if let (Some(outcome), Some(record)) = (stored, pass_on) {
                        if outcome != StoreOutcome::Stale {
                            self.pass_on(now, record, Some(p.src));
                        }
                    }
                    if stored.is_some() {
                        self.hand_over(now, node);
                    }
                }
            }
            Body::Withdraw(w) => {
                if self.ctx.cfg.role == Role::Supernode {
                    self.home.apply_withdraw(&mut self.ctx, now, &w);
                }
            }
            Body::LocationQuery { request_id, node } if node == self.ctx.id => {
                // A supernode is asked about itself (it publishes no record,
                // being nobody's client): it answers with a record of its
                // own, which binds its chat key to its identity.
                let record = self.ctx.identity.location_record(
                    self.ctx.id,
                    Vec::new(),
                    now,
                    self.ctx.cfg.record_lifetime_s,
                );
                let reply = Body::LocationReply {
                    request_id,
                    node,
                    record: Some(record),
                    absence: None,
                };
                self.originate(now, p.src, reply, None);
            }
            Body::LocationQuery { request_id, node } => {
                let (asker, reply) = self
                    .home
                    .answer_query(&self.ctx, &self.lost, now, p.src, request_id, node);
                let reply = self.with_last_record(reply);
                self.originate(now, asker, reply, None);
            }
            Body::LocationReply {
                request_id,
                node,
                record,
                absence,
            } => self.on_location_reply(now, request_id, node, record, absence),
            Body::NameClaim { claim, .. } => {
                // A replica copy from a home supernode.
                if self.ctx.cfg.role == Role::Supernode {
                    self.names.store(&mut self.ctx, now, claim);
                }
            }
            Body::NameQuery { request_id, name } => {
                let (asker, reply) = self.names.answer_query(now, p.src, request_id, name);
                self.originate(now, asker, reply, None);
            }
            Body::NameReply {
                request_id,
                name,
                claim,
            } => self.on_name_reply(now, request_id, name, claim),
            Body::Datagram(_) => {}
            Body::MailboxStore(kept) => self.on_mailbox_store(now, p.src, kept, false),
            Body::MailboxStored(notice) => {
                let to = notice.node;
                if self.chats.on_stored(&mut self.ctx, notice) {
                    self.query_location(now, to);
                }
            }
            Body::MailboxHandOver(kept) => self.on_hand_over(now, p.src, p.hops, kept),
            Body::MailboxTaken { author, msg_id } => self.on_taken(p.src, author, msg_id),
            Body::ReceiptStore(receipt) => self.on_receipt_store(now, p.dst, receipt, false),
            Body::ReceiptHandOver(receipt) => self.on_receipt_hand_over(now, p.src, receipt),
        }
    }

    /// The answer to a name lookup or to this node's claim: acted on only
    /// if it answers one we asked, and its claim is signed by its holder.
    fn on_name_reply(
        &mut self,
        now: SimTime,
        request_id: u64,
        name: String,
        claim: Option<NameClaim>,
    ) {
        let asked = self.pending.take_if(
            request_id,
            |r| matches!(r, Request::Name { name: n, .. } | Request::ListedName { name: n, .. } if *n == name),
        );
        let Some(asked) = asked else {
            self.ctx.out.drop(DropReason::UnsolicitedReply);
            return;
        };
        let Ok(holder) = names::check_answer(&mut self.ctx, &name, claim.as_ref()) else {
            return;
        };
        match (asked.request, claim) {
            (Request::Name { own: true, .. }, Some(claim)) => {
                match self.names.on_own_answer(&mut self.ctx, &claim) {
                    Some(NameState::Held) => {
                        self.ctx.out.emit(Event::NameClaimed { name });
                        self.send_listed(now);
                    }
                    Some(NameState::Taken(holder)) => {
                        self.ctx.out.emit(Event::NameTaken { name, holder })
                    }
                    _ => {}
                }
            }
            (Request::ListedName { node, .. }, _) => self.listing.name_checked(node, &name, holder),
            (Request::Name { own: false, .. }, _) => self.ctx.out.emit(Event::NameResolved {
                request_id,
                name,
                holder,
            }),
            _ => {}
        }
    }

    /// The answer to a location query: cache it if it answers one we asked,
    /// and send on what was held for it.
    fn on_location_reply(
        &mut self,
        now: SimTime,
        request_id: u64,
        node: NodeId,
        record: Option<LocationRecord>,
        absence: Option<Box<Absence>>,
    ) {
        let asked = self
            .pending
            .take_if(request_id, |r| *r == Request::Location { node });
        if asked.is_none() {
            self.ctx.out.drop(DropReason::UnsolicitedReply);
            return;
        }
        // The home's signed word that the node is away, kept for the
        // deadline; an unsigned or misdirected one says nothing.
        let away = match absence {
            Some(a)
                if a.node == node
                    && a.about == request_id
                    && self.ctx.memo.verify_absence(&a).is_ok() =>
            {
                self.ctx.out.emit(Event::Located {
                    node,
                    online: false,
                });
                self.chats.on_key_absent(&node, a.reason, a.by);
                self.chats.settle_stored(&mut self.ctx, now, &node, a.by);
                true
            }
            Some(_) => {
                self.ctx.out.counters.forged += 1;
                self.ctx.out.drop(DropReason::ForgedAbsence);
                false
            }
            None => false,
        };
        // With the absence, the record is the last one the node published
        // (kept by its home for its mailbox): its chat key only, not where
        // it is. Chats sealed with it go to the mailbox.
        if let Some(record) = record {
            if record.node == node && self.ctx.memo.verify_record(&record).is_ok() {
                if !away {
                    self.ctx.out.emit(Event::Located { node, online: true });
                }
                // Only routing reads the cache, and an ordinary node does
                // not route: it looked up the chat key alone.
                if record.sn != node && !away && self.ctx.cfg.role == Role::Supernode {
                    self.router
                        .cache_mut()
                        .insert(node, record.sn, record.seq, now);
                }
                let backups = record.backups.clone();
                for msg_id in self.chats.learn_key(node, record.chat_key, backups) {
                    self.push_chat(now, msg_id);
                }
            } else {
                self.ctx.out.counters.forged += 1;
                self.ctx.out.drop(DropReason::ForgedRecord);
            }
        }
        self.release_held(now, &node);
    }

    /// Packet `packet_id`, sent by this node, could not be delivered.
    fn on_not_found(&mut self, now: SimTime, packet_id: MsgId, reason: NotFoundReason, by: NodeId) {
        if let Some(probe_id) = self.pending.trace_by_packet(&packet_id) {
            if let Some(f) = self.pending.remove(probe_id) {
                if let Request::Trace { to, .. } = f.request {
                    let reason = match reason {
                        NotFoundReason::Offline => ChatFailure::Offline,
                        NotFoundReason::Unreachable => ChatFailure::Unreachable,
                        _ => ChatFailure::NotFound,
                    };
                    self.ctx.out.emit(Event::TraceFailed {
                        probe_id,
                        to,
                        reason,
                    });
                }
            }
            return;
        }
        if let Some(kept) = self.chats.on_not_found(&self.ctx, packet_id, reason, by) {
            self.offer_to_homes(now, kept);
        }
    }
}
