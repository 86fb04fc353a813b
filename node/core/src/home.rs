//! A supernode's duties as a home supernode: storing the signed location
//! records and withdrawals that reach it as one of the `replicas` closest
//! to a node, copying them to the other home supernodes, answering
//! location queries, handing records over to a closer supernode that
//! links up, and choosing the homes a draining supernode hands its records
//! to ([`hand_over_homes`]). The records themselves live in
//! [`super::directory::Directory`].
//!
//! It decides what to send; the `Node` facade originates the packets it
//! returns, in order.

use skyhop_protocol::{Body, LocationRecord, NodeId, NotFoundReason, Withdraw, WithdrawReason};

use super::context::Ctx;
use super::counters::DropReason;
use super::directory::{Directory, StoreOutcome};
use super::lost::LostSupernodes;
use super::table::NeighborTable;
use super::SimTime;

/// A packet for the facade to originate: destination and body.
pub(crate) type Originate = (NodeId, Body);

/// The home-supernode state: the location directory.
#[derive(Debug)]
pub(crate) struct Home {
    /// Records held as a home supernode, with tombstones.
    directory: Directory,
}

impl Home {
    /// An empty directory of at most `max_records` records.
    pub fn new(max_records: usize) -> Home {
        Home {
            directory: Directory::new(max_records),
        }
    }

    /// The records held.
    pub fn directory(&self) -> &Directory {
        &self.directory
    }

    /// Forgets expired records and tombstones.
    pub fn expire(&mut self, now: SimTime) {
        self.directory.expire(now);
    }

    /// Stores a record, verifying it unless it is byte-for-byte the record
    /// already held (a refresh): verification is the costly part.
    pub fn store(
        &mut self,
        ctx: &mut Ctx,
        now: SimTime,
        record: LocationRecord,
    ) -> Option<StoreOutcome> {
        let known = self
            .directory
            .get(&record.node, now)
            .is_some_and(|held| *held == record);
        if !known && ctx.memo.verify_record(&record).is_err() {
            ctx.out.counters.forged += 1;
            ctx.out.drop(DropReason::ForgedRecord);
            return None;
        }
        Some(self.directory.store(record, now))
    }

    /// Applies a withdrawal; false if it carries a forged `Leave`.
    pub fn apply_withdraw(&mut self, ctx: &mut Ctx, now: SimTime, w: &Withdraw) -> bool {
        let left = match &w.reason {
            WithdrawReason::Left(leave) => {
                if leave.node != w.node || leave.sn != w.sn || ctx.memo.verify_leave(leave).is_err()
                {
                    ctx.out.counters.forged += 1;
                    ctx.out.drop(DropReason::ForgedLeave);
                    return false;
                }
                true
            }
            WithdrawReason::Lost(proof) => {
                if ctx.memo.verify_withdraw_lost(w, proof).is_err() {
                    ctx.out.counters.forged += 1;
                    ctx.out.drop(DropReason::ForgedWithdraw);
                    return false;
                }
                false
            }
        };
        // The node's own `Leave` marks it departed even without a record;
        // a supernode's word removes (and tombstones) only a record that
        // names that supernode, so that a supernode can cut off only its
        // own clients.
        self.directory.withdraw(&w.node, &w.sn, w.seq, left, now);
        true
    }

    /// A home-bound packet from `src` reached the closest supernode to its
    /// destination: store and copy to the other homes (`copies_to` names
    /// them for a node), or answer. The packets to send.
    pub fn at_home(
        &mut self,
        ctx: &mut Ctx,
        copies_to: impl Fn(&NodeId) -> Vec<NodeId>,
        lost: &LostSupernodes,
        now: SimTime,
        src: NodeId,
        body: Body,
    ) -> Vec<Originate> {
        ctx.out.counters.delivered += 1;
        match body {
            Body::Publish(record) => {
                let stored = self.store(ctx, now, record.clone());
                if stored.is_none_or(|outcome| outcome == StoreOutcome::Stale) {
                    return Vec::new();
                }
                copies_to(&record.node)
                    .into_iter()
                    .map(|replica| (replica, Body::Publish(record.clone())))
                    .collect()
            }
            Body::Withdraw(w) => {
                // Only the supernode a node was attached to may say it was
                // lost (a `Left` carries the node's own signed `Leave`).
                // Clients cannot forge `src` (their supernode checks it), so
                // an ordinary node cannot cut anyone off this way.
                if matches!(w.reason, WithdrawReason::Lost(_)) && src != w.sn {
                    ctx.out.counters.forged += 1;
                    ctx.out.drop(DropReason::ForgedWithdraw);
                    return Vec::new();
                }
                if !self.apply_withdraw(ctx, now, &w) {
                    return Vec::new();
                }
                copies_to(&w.node)
                    .into_iter()
                    .map(|replica| (replica, Body::Withdraw(w.clone())))
                    .collect()
            }
            Body::LocationQuery { request_id, node } => {
                vec![self.answer_query(ctx, lost, now, src, request_id, node)]
            }
            _ => {
                ctx.out.drop(DropReason::NotHomeBound);
                Vec::new()
            }
        }
    }

    /// The reply to `asker`'s location query for `node`.
    pub fn answer_query(
        &self,
        ctx: &Ctx,
        lost: &LostSupernodes,
        now: SimTime,
        asker: NodeId,
        request_id: u64,
        node: NodeId,
    ) -> Originate {
        let record = self.directory.get(&node, now).cloned();
        // No record: say so, signed, and say whether the node is known to
        // have gone (a tombstone) rather than never seen, or may be out of
        // reach (supernodes closer to it, its true homes, were lost lately).
        let absence = record.is_none().then(|| {
            let reason = if self.directory.departed(&node, now) {
                NotFoundReason::Offline
            } else if lost.closer_lost(&node, now) {
                NotFoundReason::Unreachable
            } else {
                NotFoundReason::NoRecord
            };
            // Remembered as verified: the answer to our own lookup (a
            // supernode that is its own home) comes back to us.
            Box::new(
                ctx.memo
                    .sign_absence(&ctx.identity, request_id, node, reason),
            )
        });
        let reply = Body::LocationReply {
            request_id,
            node,
            record,
            absence,
        };
        (asker, reply)
    }

    /// The records a newcomer supernode is now among the `r` closest to,
    /// to hand over to it.
    pub fn records_for_newcomer(
        &self,
        table: &NeighborTable,
        r: usize,
        newcomer: NodeId,
    ) -> Vec<LocationRecord> {
        self.directory
            .records()
            .filter(|record| {
                let d = newcomer.distance(&record.node);
                table
                    .iter()
                    .filter(|e| e.id != newcomer && e.id.distance(&record.node) < d)
                    .take(r)
                    .count()
                    < r
            })
            .cloned()
            .collect()
    }
}

/// What a draining supernode knows of a candidate home.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Candidate {
    /// It answered a probe since the drain began.
    Answered,
    /// Linked, but no answer yet: perhaps gone.
    Unconfirmed,
    /// It said it is leaving too, or it is the one the record came from.
    Excluded,
}

/// Candidates looked at per home wanted, at most, when the closest did not
/// answer or are leaving too: in an exodus, half of the supernodes around
/// may be going at once.
const CANDIDATES_PER_HOME: usize = 8;

/// The `r` homes a draining supernode hands `node`'s record to: the
/// closest supernodes in its table that answered lately, passing over
/// those that did not or are leaving; when fewer than `r` of the `r` x
/// [`CANDIDATES_PER_HOME`] closest answered, the closest unconfirmed ones
/// make up the number.
pub(crate) fn hand_over_homes(
    table: &NeighborTable,
    node: &NodeId,
    r: usize,
    judge: impl Fn(&NodeId) -> Candidate,
) -> Vec<NodeId> {
    let candidates: Vec<(NodeId, Candidate)> = table
        .closest(node, r.saturating_mul(CANDIDATES_PER_HOME))
        .iter()
        .map(|e| (e.id, judge(&e.id)))
        .collect();
    let mut homes: Vec<NodeId> = candidates
        .iter()
        .filter(|(_, c)| *c == Candidate::Answered)
        .map(|(id, _)| *id)
        .take(r)
        .collect();
    let missing = r.saturating_sub(homes.len());
    homes.extend(
        candidates
            .iter()
            .filter(|(_, c)| *c == Candidate::Unconfirmed)
            .map(|(id, _)| *id)
            .take(missing),
    );
    homes
}

/// The other home supernodes of `node` a home copies a record to: the
/// `replicas - 1` closest in the table, passing over the `leaving` ones
/// (of which `leaving_count` are linked).
pub(crate) fn replicas_of(
    table: &NeighborTable,
    replicas: usize,
    node: &NodeId,
    leaving_count: usize,
    leaving: impl Fn(&NodeId) -> bool,
) -> Vec<NodeId> {
    let want = replicas.saturating_sub(1);
    table
        .closest(node, want + leaving_count)
        .iter()
        .map(|e| e.id)
        .filter(|id| !leaving(id))
        .take(want)
        .collect()
}
