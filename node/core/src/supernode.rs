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
/// How long a turned-away `Join` counts in the demand this supernode
/// reports (one to two windows): short, so that the clients who read it do
/// not promote again and again for the same few people.
const DEMAND_WINDOW: SimTime = 10 * super::SECS;

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
    /// Whether this supernode is handing its clients over before it
    /// becomes ordinary: it takes no new one.
    draining: bool,
    /// Joins turned away in the current and the previous demand window.
    turned_away: [u32; 2],
    /// When the current demand window began.
    window_start: SimTime,
}

impl Supernode {
    /// No clients yet; the first refresh is due `record_refresh` after `now`.
    pub fn new(now: SimTime) -> Supernode {
        Supernode {
            clients: BTreeMap::new(),
            last_refresh: now,
            draining: false,
            turned_away: [0; 2],
            window_start: now,
        }
    }

    /// The demand this supernode reports in its `Accept`s and heartbeat
    /// acks: the clients it serves plus the joins it turned away in the
    /// last 10 to 20 seconds. Over `max_clients`, it tells its clients
    /// that the supernode layer is turning people away: the sign for a
    /// reachable client with auto role to promote itself (the people
    /// turned away may all be behind NATs and unable to).
    pub fn demand(&mut self, now: SimTime) -> u16 {
        self.roll_window(now);
        let turned_away = self.turned_away[0].saturating_add(self.turned_away[1]);
        let demand = (self.clients.len() as u64).saturating_add(u64::from(turned_away));
        u16::try_from(demand).unwrap_or(u16::MAX)
    }

    fn roll_window(&mut self, now: SimTime) {
        if now >= self.window_start + 2 * DEMAND_WINDOW {
            self.turned_away = [0; 2];
            self.window_start = now;
        } else if now >= self.window_start + DEMAND_WINDOW {
            self.turned_away = [0, self.turned_away[0]];
            self.window_start += DEMAND_WINDOW;
        }
    }

    /// Takes no new client from now on: the supernode is demoting.
    pub fn start_draining(&mut self) {
        self.draining = true;
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
        now: SimTime,
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
        let full = self.draining || self.clients.len() >= ctx.cfg.max_clients;
        if !self.clients.contains_key(&from) && full {
            self.roll_window(now);
            self.turned_away[0] = self.turned_away[0].saturating_add(1);
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
        let clients = self.demand(now);
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
