//! Supernode duties toward ordinary nodes: the clients it serves (and the
//! signed location record each published), answering `Join` with `Accept`
//! or, when full, `Redirect`, checking what clients publish and announce
//! when they leave, and republishing their records on schedule.
//!
//! It decides; the `Node` facade routes what it decides to publish or
//! withdraw, and drops a client that lied.

use std::collections::BTreeMap;

use skyhop_protocol::{
    Accept, Join, Leave, LocationRecord, Message, NodeId, PeerInfo, Redirect, Role,
    MAX_PEERS_PER_MESSAGE,
};

use super::context::Ctx;
use super::counters::DropReason;
use super::links::Links;
use super::table::{self, NeighborTable};
use super::SimTime;

/// Supernodes offered in an `Accept` or `Redirect`.
const SAMPLE_SIZE: usize = 8;

/// One ordinary node this supernode serves.
#[derive(Clone, Debug)]
struct Client {
    /// The record it last published, republished on its behalf.
    record: Option<LocationRecord>,
}

/// What a client's `Publish` or `Leave` calls for.
#[derive(Debug)]
pub(crate) enum ClientNotice<T> {
    /// Not from a client: dropped and counted.
    Ignored,
    /// The client lied or forged: drop it, for this reason.
    Misbehaved(String),
    /// Valid: route it on.
    Accepted(T),
}

/// The supernode's clients and their records.
#[derive(Debug)]
pub(crate) struct Supernode {
    /// Clients by id.
    clients: BTreeMap<NodeId, Client>,
    /// When the clients' records were last republished.
    last_refresh: SimTime,
}

impl Supernode {
    /// No clients yet; the first refresh is due `record_refresh` after `now`.
    pub fn new(now: SimTime) -> Supernode {
        Supernode {
            clients: BTreeMap::new(),
            last_refresh: now,
        }
    }

    /// Whether `node` is a client.
    pub fn is_client(&self, node: &NodeId) -> bool {
        self.clients.contains_key(node)
    }

    /// Clients in id order.
    pub fn clients(&self) -> impl Iterator<Item = &NodeId> {
        self.clients.keys()
    }

    /// Clients served.
    pub fn len(&self) -> usize {
        self.clients.len()
    }

    /// Answers a `Join`: accepted while there is room, else redirected to
    /// other supernodes.
    pub fn on_join(
        &mut self,
        ctx: &mut Ctx,
        links: &Links,
        table: &NeighborTable,
        from: NodeId,
        j: Join,
    ) {
        if ctx.cfg.role != Role::Supernode
            || links.get(&from).and_then(|l| l.role) != Some(Role::Ordinary)
        {
            ctx.out.drop(DropReason::JoinToNonSupernode);
            return;
        }
        if !self.clients.contains_key(&from) && self.clients.len() >= ctx.cfg.max_clients {
            let supernodes = sample_supernodes(ctx, table, SAMPLE_SIZE);
            ctx.out.send(
                from,
                Message::Redirect(Redirect {
                    request_id: j.request_id,
                    supernodes,
                }),
            );
            return;
        }
        self.clients.entry(from).or_insert(Client { record: None });
        let supernodes = sample_supernodes(ctx, table, SAMPLE_SIZE);
        let clients = u16::try_from(self.clients.len()).unwrap_or(u16::MAX);
        let max_clients = u16::try_from(ctx.cfg.max_clients).unwrap_or(u16::MAX);
        ctx.out.send(
            from,
            Message::Accept(Accept {
                request_id: j.request_id,
                clients,
                max_clients,
                supernodes,
            }),
        );
    }

    /// Checks a client's own record and keeps it to republish.
    pub fn on_publish(
        &mut self,
        ctx: &mut Ctx,
        from: NodeId,
        record: LocationRecord,
    ) -> ClientNotice<LocationRecord> {
        if !self.clients.contains_key(&from) {
            ctx.out.drop(DropReason::PublishFromNonClient);
            return ClientNotice::Ignored;
        }
        if record.node != from || record.sn != ctx.id {
            return ClientNotice::Misbehaved(format!(
                "forged location record: it claims {} is attached to {}, but came from client {} of {}",
                record.node, record.sn, from, ctx.id
            ));
        }
        if let Err(e) = ctx.memo.verify_record(&record) {
            return ClientNotice::Misbehaved(format!("forged location record: {e}"));
        }
        if let Some(c) = self.clients.get_mut(&from) {
            c.record = Some(record.clone());
        }
        ClientNotice::Accepted(record)
    }

    /// Checks a client's signed `Leave`; a valid one ends the client.
    pub fn on_leave(&mut self, ctx: &mut Ctx, from: NodeId, leave: Leave) -> ClientNotice<Leave> {
        if !self.clients.contains_key(&from) {
            ctx.out.drop(DropReason::LeaveFromNonClient);
            return ClientNotice::Ignored;
        }
        if leave.node != from || leave.sn != ctx.id {
            return ClientNotice::Misbehaved("leave names another node or supernode".into());
        }
        if let Err(e) = ctx.memo.verify_leave(&leave) {
            return ClientNotice::Misbehaved(format!("forged leave: {e}"));
        }
        self.clients.remove(&from);
        ClientNotice::Accepted(leave)
    }

    /// The link to `peer` is gone: if it was a client, its record, to
    /// withdraw.
    pub fn client_lost(&mut self, peer: &NodeId) -> Option<Option<LocationRecord>> {
        self.clients.remove(peer).map(|c| c.record)
    }

    /// A neighbor supernode was lost, so home sets changed: republish once
    /// every supernode has noticed the loss (a heartbeat timeout from now)
    /// rather than up to `record_refresh` later, so that records whose
    /// homes all died reach the new closest supernodes before senders give
    /// up.
    pub fn homes_changed(&mut self, ctx: &Ctx, now: SimTime) {
        let due = now + ctx.cfg.heartbeat_interval * u64::from(ctx.cfg.dead_after_missed);
        self.last_refresh = self
            .last_refresh
            .min(due.saturating_sub(ctx.cfg.record_refresh));
    }

    /// The clients' records, if their republication is due at `now`.
    pub fn records_due(&mut self, ctx: &Ctx, now: SimTime) -> Vec<LocationRecord> {
        if ctx.cfg.role != Role::Supernode || now < self.last_refresh + ctx.cfg.record_refresh {
            return Vec::new();
        }
        self.last_refresh = now;
        self.clients
            .values()
            .filter_map(|c| c.record.clone())
            .collect()
    }
}

/// Up to `n` supernodes from the table, chosen at random with the node's
/// seeded RNG; only the chosen entries are cloned (a supernode's table has
/// hundreds, each with its addresses).
fn sample_supernodes(ctx: &mut Ctx, table: &NeighborTable, n: usize) -> Vec<PeerInfo> {
    let mut all: Vec<&table::Entry> = table.iter().collect();
    crate::partial_shuffle(&mut all, n.min(MAX_PEERS_PER_MESSAGE), &mut ctx.rng)
        .iter()
        .map(|e| NeighborTable::peer_info(e))
        .collect()
}
