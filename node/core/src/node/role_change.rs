//! How a [`Node`] carries out what its role machine ([`crate::role`])
//! decides: promotion to supernode, and the drain and demotion back to
//! ordinary node.
//!
//! # Implementation notes
//! A peer learns a node's role from the `Hello` on a link, once per link,
//! so a node that changes role closes every link and dials again: the new
//! `Hello`s carry the new role and every peer goes through its usual paths
//! (a supernode that loses a client withdraws its record; one that gains a
//! neighbor hands records to it). No new message is needed. The links it
//! dials again are the supernodes it was linked to: they know it, and they
//! are where its table (or its attachment) starts.

use skyhop_protocol::{Body, Leave, LocationRecord, Message, NodeId, Role};

use super::{Node, YOUNG_TABLE_REFRESH};
use crate::attach::PARALLEL_ATTACH_DIALS;
use crate::events::{Action, Event};
use crate::home::{self, Candidate, Home};
use crate::links::Links;
use crate::lost::LostSupernodes;
use crate::role::{Decision, RoleControl, Signals};
use crate::supernode::Supernode;
use crate::table::NeighborTable;
use crate::timers::Timer;
use crate::SimTime;

impl Node {
    /// Tells the role machine whether others can dial this node: in the
    /// simulator, whether it is behind a NAT; in the runtime, whether a
    /// dial-back confirmed one of its addresses. Only a reachable node
    /// promotes itself.
    pub fn set_reachable(&mut self, reachable: bool) {
        self.role.set_reachable(reachable);
    }

    /// Whether the node is known to be reachable.
    pub fn reachable(&self) -> bool {
        self.role.reachable()
    }

    /// Promotions and demotions this node made so far.
    pub fn role_changes(&self) -> (u64, u64) {
        self.role.changes()
    }

    /// Begins a graceful departure of a supernode: the drain a demotion
    /// starts with (no new client, each client moved to its backup, every
    /// record held here handed to the other homes), after which the caller
    /// stops the node with [`Node::leave`]. Returns when the drain is over
    /// (`auto_role.drain` from now); an ordinary node has nothing to hand
    /// over and can leave at once.
    pub fn start_leaving(&mut self, now: SimTime) -> SimTime {
        if self.ctx.cfg.role != Role::Supernode || self.left {
            return now;
        }
        self.role.leaving();
        self.start_drain(now);
        now + self.ctx.cfg.auto_role.drain
    }

    /// Whether the node is handing over to leave ([`Node::start_leaving`]).
    pub fn is_leaving(&self) -> bool {
        self.role.is_leaving()
    }

    /// The records (node, its supernode) this node handed to other homes
    /// at its last drain, for a demotion or a departure.
    pub fn handed_over(&self) -> &[(NodeId, NodeId)] {
        self.role.handed_over()
    }

    /// Reconsiders the role (auto role only), on the heartbeat tick.
    pub(super) fn reconsider_role(&mut self, now: SimTime) {
        if !self.ctx.cfg.auto_role.enabled {
            return;
        }
        let signals = self.role_signals();
        match self.role.decide(&mut self.ctx, now, &signals) {
            Decision::Stay => {}
            Decision::Promote => self.promote(now),
            Decision::StartDrain => self.start_drain(now),
            Decision::Demote => self.demote(now),
        }
    }

    fn role_signals(&self) -> Signals {
        let default_capacity = u32::try_from(self.ctx.cfg.max_clients).unwrap_or(u32::MAX);
        // Only a supernode that answered one of our probes told us its load.
        // A supernode that is leaving offers no room.
        let supernode_loads = self
            .links
            .iter()
            .filter(|(id, l)| {
                l.role == Some(Role::Supernode) && l.rtt.is_some() && !self.links.is_leaving(id)
            })
            .map(|(_, l)| {
                let capacity = l.capacity.map_or(default_capacity, u32::from);
                (u32::from(l.load), capacity)
            })
            .collect();
        let primary_load = self.attach.primary().and_then(|sn| {
            let l = self.links.get(&sn)?;
            Some((
                u32::from(l.load),
                l.capacity.map_or(default_capacity, u32::from),
            ))
        });
        Signals {
            attached: self.attach.primary().is_some(),
            unattached_since: self.attach.unattached_since(),
            last_crowded: self.attach.last_crowded(),
            primary_load,
            supernode_loads,
            clients: u32::try_from(self.supernode.len()).unwrap_or(u32::MAX),
            table_len: self.table.len(),
        }
    }

    /// The supernodes this node is linked to, with their addresses.
    fn linked_supernodes(&self) -> Vec<(NodeId, Vec<String>)> {
        self.links
            .iter()
            .filter(|(_, l)| l.role == Some(Role::Supernode))
            .map(|(id, l)| (*id, l.addrs.clone()))
            .collect()
    }

    /// Closes every link, for `reason`.
    fn close_all_links(&mut self, reason: &str) {
        let peers: Vec<NodeId> = self.links.peers().copied().collect();
        for peer in peers {
            self.ctx.out.act(Action::Disconnect {
                peer,
                reason: reason.into(),
            });
            self.links.remove(&peer);
        }
    }

    /// Becomes a supernode: leaves the primary with a signed `Leave` (so
    /// that it withdraws our record), then links again as a supernode.
    fn promote(&mut self, now: SimTime) {
        let again = self.linked_supernodes();
        self.attach.leave(&mut self.ctx, now);
        self.attach.reset(&mut self.pending, now);
        self.close_all_links("promoted to supernode");
        self.ctx.cfg.role = Role::Supernode;
        self.supernode = Supernode::new(now);
        self.listing.clear();
        self.role.promoted(now);
        for (id, addrs) in again {
            self.links.dial(&mut self.ctx, now, Some(id), addrs);
        }
        self.ctx
            .timers
            .set(Timer::TableRefresh, now + YOUNG_TABLE_REFRESH);
        self.ctx
            .timers
            .set(Timer::Attach, now + self.ctx.cfg.join_timeout);
        self.ctx.out.emit(Event::RoleChanged {
            role: Role::Supernode,
            reason: "the supernode layer needs capacity".into(),
        });
    }

    /// Begins to demote or to leave: takes no new client, moves the
    /// clients to their backups, tells the other supernodes, and asks each
    /// for a sign of life; halfway through the drain it hands the records
    /// held here to the homes that answered ([`Node::hand_over_drained`]),
    /// so that no record and no chat is lost when it goes.
    fn start_drain(&mut self, now: SimTime) {
        self.supernode.start_draining();
        let clients: Vec<NodeId> = self.supernode.clients().copied().collect();
        for client in clients {
            self.ctx.out.act(Action::Disconnect {
                peer: client,
                reason: "supernode is handing its clients over".into(),
            });
            self.link_lost(now, client, "supernode is handing its clients over");
        }
        let hand_over_at = now + self.ctx.cfg.auto_role.drain / 2;
        self.role.drain_started(now, hand_over_at);
        // A supernode that crashed at the same moment, or one that is
        // leaving too, would take the records nowhere: only those that
        // answer this probe, and did not say they are leaving, get them.
        for (peer, _) in self.linked_supernodes() {
            let leave = self.ctx.identity.leave(peer, now);
            self.ctx.out.send(peer, Message::Leave(leave));
            self.probe(now, peer);
        }
        self.ctx.timers.set_earliest(Timer::Heartbeat, hand_over_at);
        self.hand_over_drained(now, now);
    }

    /// Hands the records held here to their other homes, if the drain's
    /// hand-over is due by `due_by` (once per drain). Records that name
    /// this supernode are not handed over: their nodes were its clients
    /// and publish again from their new supernodes.
    pub(super) fn hand_over_drained(&mut self, now: SimTime, due_by: SimTime) {
        if !self.role.take_hand_over(due_by) {
            return;
        }
        let me = self.ctx.id;
        let records: Vec<LocationRecord> = self
            .home
            .directory()
            .records()
            .filter(|r| r.sn != me)
            .cloned()
            .collect();
        self.role
            .set_handed_over(records.iter().map(|r| (r.node, r.sn)).collect());
        for record in records {
            self.pass_on(now, record, None);
        }
    }

    /// Sends `record` to the homes a draining supernode hands it to (see
    /// [`home::hand_over_homes`]); `from`, which sent it here, is not one.
    pub(super) fn pass_on(&mut self, now: SimTime, record: LocationRecord, from: Option<NodeId>) {
        let (links, role) = (&self.links, &self.role);
        let homes = home::hand_over_homes(&self.table, &record.node, self.ctx.cfg.replicas, |id| {
            judge(links, role, id, from)
        });
        for home in homes {
            self.originate(now, home, Body::Publish(record.clone()), None);
        }
    }

    /// Linked supernode `from` says it is leaving the supernode layer (a
    /// departure or a demotion): no record is handed to it any more.
    pub(super) fn on_supernode_leaving(&mut self, now: SimTime, from: NodeId, leave: Leave) {
        if leave.node != from || leave.sn != self.ctx.id {
            self.misbehaved(now, from, "leave names another node or supernode".into());
            return;
        }
        if let Err(e) = self.ctx.memo.verify_leave(&leave) {
            self.misbehaved(now, from, format!("forged leave: {e}"));
            return;
        }
        self.links.mark_leaving(from);
    }

    /// Becomes an ordinary node again, once drained: closes every link and
    /// attaches like a node that just started, to a supernode it knew.
    fn demote(&mut self, now: SimTime) {
        self.hand_over_drained(now, SimTime::MAX);
        let again = self.linked_supernodes();
        self.close_all_links("demoted to ordinary node");
        self.ctx.cfg.role = Role::Ordinary;
        self.table = NeighborTable::new(self.ctx.id, self.ctx.cfg.bucket_size);
        self.lost = LostSupernodes::new(self.ctx.id);
        self.home = Home::new(self.ctx.cfg.max_records);
        self.supernode = Supernode::new(now);
        self.listing.clear();
        self.attach.reset(&mut self.pending, now);
        self.role.demoted(now);
        for (id, addrs) in again.into_iter().take(PARALLEL_ATTACH_DIALS) {
            self.links.dial(&mut self.ctx, now, Some(id), addrs);
        }
        self.ctx.timers.clear(Timer::TableRefresh);
        self.ctx
            .timers
            .set(Timer::Attach, now + self.ctx.cfg.join_timeout);
        self.ctx.out.emit(Event::RoleChanged {
            role: Role::Ordinary,
            reason: "the supernode layer has spare capacity".into(),
        });
    }

    /// A promoted supernode whose table is empty dials supernodes it
    /// verified before (it has no bootstrap list of its own).
    pub(super) fn relink_supernodes(&mut self, now: SimTime) {
        let known: Vec<(NodeId, Vec<String>)> = self
            .host_cache
            .verified()
            .filter(|(id, _)| !self.links.contains(id))
            .take(PARALLEL_ATTACH_DIALS)
            .map(|(id, addrs)| (*id, addrs.clone()))
            .collect();
        for (id, addrs) in known {
            self.links.dial(&mut self.ctx, now, Some(id), addrs);
        }
    }
}

/// The other homes a home supernode copies a record of `node` to: as a
/// draining supernode hands over, once it has (the `replicas` closest that
/// answered: it will not be one of them), else the `replicas - 1` closest
/// that are not leaving.
pub(super) fn copies_to<'a>(
    table: &'a NeighborTable,
    links: &'a Links,
    role: &'a RoleControl,
    replicas: usize,
) -> impl Fn(&NodeId) -> Vec<NodeId> + 'a {
    let handed_over = role.has_handed_over();
    move |node| {
        if handed_over {
            home::hand_over_homes(table, node, replicas, |id| judge(links, role, id, None))
        } else {
            home::replicas_of(table, replicas, node, links.leaving_count(), |id| {
                links.is_leaving(id)
            })
        }
    }
}

/// How a draining supernode sees candidate home `id`: `except` (which
/// sent the record) has it already.
fn judge(links: &Links, role: &RoleControl, id: &NodeId, except: Option<NodeId>) -> Candidate {
    if except == Some(*id) || links.is_leaving(id) {
        Candidate::Excluded
    } else if role.answered_since_drain(id) {
        Candidate::Answered
    } else {
        Candidate::Unconfirmed
    }
}

#[cfg(test)]
mod tests {
    use skyhop_protocol::{NodeId, Role};

    use crate::harness::Harness;
    use crate::{AutoRoleConfig, Event, NodeConfig, SECS};

    fn auto_config(max_clients: usize) -> NodeConfig {
        NodeConfig {
            max_clients,
            auto_role: AutoRoleConfig {
                enabled: true,
                // Few nodes here: each eligible one promotes at 3% of its checks.
                promote_per_mille: 30,
                demote_after: 60 * SECS,
                cooldown: 60 * SECS,
                min_neighbors_to_demote: 2,
                ..AutoRoleConfig::default()
            },
            ..NodeConfig::default()
        }
    }

    /// One seed supernode of 4 clients and `n` auto-role nodes, reachable
    /// or not.
    fn crowd(n: u64, reachable: bool) -> (Harness, NodeId, Vec<NodeId>) {
        let mut h = Harness::new();
        let mut seed_cfg = NodeConfig::supernode();
        seed_cfg.max_clients = 4;
        let seed = h.add(1, seed_cfg, &[]);
        let nodes: Vec<NodeId> = (0..n)
            .map(|i| {
                let id = h.add(1000 + i, auto_config(4), &[seed]);
                h.node_mut(&id).set_reachable(reachable);
                id
            })
            .collect();
        (h, seed, nodes)
    }

    fn promotions(h: &Harness, nodes: &[NodeId]) -> u64 {
        nodes.iter().map(|n| h.node(n).role_changes().0).sum()
    }

    #[test]
    fn reachable_nodes_a_full_supernode_turns_away_promote_until_everyone_is_attached() {
        let (mut h, _seed, nodes) = crowd(16, true);
        h.run_for(180 * SECS);
        let stranded: Vec<&NodeId> = nodes.iter().filter(|n| !h.node(n).is_routable()).collect();
        assert!(stranded.is_empty(), "still not attached: {stranded:?}");
        let promoted = promotions(&h, &nodes);
        assert!(
            (3..=8).contains(&promoted),
            "16 nodes over a 4-client seed need 3 more supernodes, not {promoted}"
        );
        let demoted: u64 = nodes.iter().map(|n| h.node(n).role_changes().1).sum();
        let sns = h.supernodes();
        assert_eq!(
            sns.len() as u64,
            promoted + 1 - demoted,
            "the seed, and every promoted node that did not demote again"
        );
        for sn in &sns {
            assert!(
                h.node(sn).table().len() + 1 >= sns.len().min(3),
                "{sn:?} knows the other supernodes"
            );
        }
        // Every user, promoted or not, can chat with every other.
        let mut sent = Vec::new();
        for (i, a) in nodes.iter().enumerate() {
            let b = nodes[(i + 5) % nodes.len()];
            sent.push((*a, h.send_chat(*a, b, &format!("hello {i}"))));
        }
        h.run_for(40 * SECS);
        for (from, msg) in sent {
            assert!(
                matches!(h.outcome(from, msg), Some(Ok(_))),
                "chat {msg} from {from:?}: {:?}",
                h.outcome(from, msg)
            );
        }
        let announced = h
            .events
            .iter()
            .filter(|(_, _, e)| {
                matches!(
                    e,
                    Event::RoleChanged {
                        role: Role::Supernode,
                        ..
                    }
                )
            })
            .count() as u64;
        assert_eq!(announced, promoted, "each promotion is announced");
    }

    #[test]
    fn a_node_behind_nat_never_promotes() {
        let (mut h, _seed, nodes) = crowd(12, false);
        h.run_for(180 * SECS);
        assert_eq!(promotions(&h, &nodes), 0);
        let attached = nodes.iter().filter(|n| h.node(n).is_routable()).count();
        assert_eq!(attached, 4, "only the seed's four places exist");
    }

    #[test]
    fn a_promoted_supernode_with_spare_capacity_around_it_demotes_without_losing_a_chat() {
        let (mut h, seed, nodes) = crowd(16, true);
        h.run_for(180 * SECS);
        // The clients of the promoted supernodes go: the layer now has
        // room to spare. The promoted supernodes and two of the seed's
        // clients stay.
        let promoted: Vec<NodeId> = nodes
            .iter()
            .copied()
            .filter(|n| h.node(n).role() == Role::Supernode)
            .collect();
        assert!(promoted.len() >= 2, "{promoted:?}");
        let mut stay = promoted.clone();
        stay.extend(
            nodes
                .iter()
                .filter(|n| h.node(n).primary() == Some(seed))
                .take(2),
        );
        for n in &nodes {
            if !stay.contains(n) {
                h.crash(n);
            }
        }
        let stay = &stay[..];
        // Keep chatting among those who stay while supernodes demote.
        let mut sent = Vec::new();
        for round in 0..30 {
            for (i, a) in stay.iter().enumerate() {
                let b = stay[(i + 1) % stay.len()];
                sent.push((*a, h.send_chat(*a, b, &format!("round {round} from {i}"))));
            }
            h.run_for(10 * SECS);
        }
        h.run_for(40 * SECS);
        let demotions: u64 = stay.iter().map(|n| h.node(n).role_changes().1).sum();
        assert!(demotions >= 1, "no promoted supernode demoted");
        for n in stay {
            assert!(h.node(n).is_routable(), "{n:?} is attached after demotions");
        }
        for (from, msg) in sent {
            assert!(
                matches!(h.outcome(from, msg), Some(Ok(_))),
                "chat {msg} from {from:?}: {:?}",
                h.outcome(from, msg)
            );
        }
    }
}
