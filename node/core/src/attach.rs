//! Attachment: how an ordinary node finds, joins and keeps a supernode. It
//! picks a linked supernode by RTT and load, sends `Join` (a request in the
//! pending table), follows `Redirect`s, dials host-cache entries and then
//! bootstrap addresses with jittered exponential backoff, keeps backups
//! linked for fast failover, and publishes its signed location record. A
//! supernode uses the same backoff to dial its bootstrap peers while its
//! table is empty.

use std::collections::BTreeMap;

use rand::RngExt;
use skyhop_protocol::{
    Accept, Join, Message, NodeId, PeerInfo, Redirect, Role, MAX_ADDRS, MAX_RECORD_BACKUPS,
};

use super::config::BootstrapPeer;
use super::context::Ctx;
use super::counters::DropReason;
use super::events::{Action, Event};
use super::host_cache::HostCache;
use super::links::Links;
use super::pending::{PendingRequests, Request, RequestId};
use super::timers::Timer;
use super::{SimTime, MILLIS, SECS};

/// How long a supernode that redirected or failed is not asked again.
const AVOID_FOR: SimTime = 30 * SECS;
/// Candidates an ordinary node dials at once while looking for a supernode.
pub(crate) const PARALLEL_ATTACH_DIALS: usize = 3;

/// The attachment state.
#[derive(Debug, Default)]
pub(crate) struct Attach {
    /// The supernode this node is attached to.
    primary: Option<NodeId>,
    /// The `Join` in flight (its entry in the pending table names the
    /// supernode and when it was sent).
    joining: Option<RequestId>,
    /// Rounds of backoff since the last success.
    attempts: u32,
    /// Supernodes not to ask again until the given time.
    avoid: BTreeMap<NodeId, SimTime>,
    /// The `seq` of the last record or `Leave` this node signed.
    record_seq: u64,
    /// The backups the last record named.
    published_backups: Vec<NodeId>,
    /// Since when this ordinary node has been without a primary.
    unattached_since: Option<SimTime>,
    /// When a supernode last redirected our `Join` or accepted it over
    /// the high watermark (a sign that the supernode layer is short of
    /// capacity).
    last_crowded: Option<SimTime>,
}

impl Attach {
    /// The supernode this node is attached to.
    pub fn primary(&self) -> Option<NodeId> {
        self.primary
    }

    /// Since when this ordinary node has been without a primary.
    pub fn unattached_since(&self) -> Option<SimTime> {
        self.unattached_since
    }

    /// When a supernode last redirected our `Join` or accepted it over the
    /// high watermark.
    pub fn last_crowded(&self) -> Option<SimTime> {
        self.last_crowded
    }

    /// Starts over after a role change at `now`: no primary, no join in
    /// flight, nothing avoided. The record sequence is kept, so that what
    /// the node signs next still outranks what it signed before.
    pub fn reset(&mut self, pending: &mut PendingRequests, now: SimTime) {
        self.abandon_join(pending);
        self.primary = None;
        self.attempts = 0;
        self.avoid.clear();
        self.unattached_since = Some(now);
        self.last_crowded = None;
    }

    /// Whether `id` is to be avoided for now.
    pub fn avoids(&self, id: &NodeId) -> bool {
        self.avoid.contains_key(id)
    }

    /// Avoids `sn`, a primary this node is leaving because it failed to
    /// relay (issue 12: a client whose primary keeps failing it moves).
    pub fn avoid_failing(&mut self, sn: NodeId, now: SimTime) {
        self.avoid.insert(sn, now + AVOID_FOR);
    }

    /// The supernode the `Join` in flight went to, and when.
    fn join_in_flight(&self, pending: &PendingRequests) -> Option<(NodeId, SimTime)> {
        let f = pending.get(self.joining?)?;
        match f.request {
            Request::Join { sn } => Some((sn, f.sent)),
            _ => None,
        }
    }

    /// Forgets the `Join` in flight.
    fn abandon_join(&mut self, pending: &mut PendingRequests) {
        if let Some(id) = self.joining.take() {
            pending.remove(id);
        }
    }

    /// Runs the attach timer of an ordinary node: keep backups if attached,
    /// else wait for the join in flight, join a linked supernode, or dial
    /// candidates.
    pub fn drive(
        &mut self,
        ctx: &mut Ctx,
        links: &mut Links,
        host_cache: &mut HostCache,
        pending: &mut PendingRequests,
        now: SimTime,
    ) {
        self.avoid.retain(|_, until| *until > now);
        if self.primary.is_none() {
            self.unattached_since.get_or_insert(now);
        }
        if self.primary.is_some() {
            self.ensure_backups(ctx, links, host_cache, now);
            return;
        }
        if let Some((sn, sent)) = self.join_in_flight(pending) {
            if now < sent + ctx.cfg.join_timeout {
                ctx.timers
                    .set_earliest(Timer::Attach, sent + ctx.cfg.join_timeout);
                return;
            }
            self.avoid.insert(sn, now + AVOID_FOR);
            self.abandon_join(pending);
        }
        // A linked supernode: pick by RTT and load.
        let best = links
            .iter()
            .filter(|(id, l)| l.role == Some(Role::Supernode) && !self.avoid.contains_key(id))
            .min_by_key(|(id, l)| {
                (
                    l.rtt.unwrap_or(SECS) + u64::from(l.load) * 100,
                    l.up_since,
                    **id,
                )
            })
            .map(|(id, _)| *id);
        if let Some(sn) = best {
            let request_id = ctx.rng.random();
            if pending.insert(request_id, Request::Join { sn }, now, None) {
                self.joining = Some(request_id);
            }
            ctx.out.send(sn, Message::Join(Join { request_id }));
            ctx.timers
                .set_earliest(Timer::Attach, now + ctx.cfg.join_timeout);
            return;
        }
        // Nothing linked: dial candidates from the host cache, then bootstrap.
        let in_flight = links.dials_in_flight();
        let mut dialed = 0;
        for (id, addrs) in self.candidates(ctx, links, host_cache) {
            if in_flight + dialed >= PARALLEL_ATTACH_DIALS {
                break;
            }
            if !may_dial(ctx, host_cache, now, id) {
                continue;
            }
            if links.dial(ctx, now, id, addrs) {
                dialed += 1;
            }
        }
        if in_flight + dialed > 0 {
            ctx.timers
                .set_earliest(Timer::Attach, now + ctx.cfg.join_timeout);
        } else {
            self.back_off(ctx, now);
        }
    }

    /// The supernodes to dial, in order, each with its addresses: the host
    /// cache newest first, and the bootstrap peers. A bootstrap peer the
    /// cache also holds is dialed at the bootstrap addresses first and then
    /// at the cached ones (an address given on the command line is newer
    /// than one remembered from an earlier run: a supernode that restarted
    /// on a new port is still found, and libp2p tries every address of one
    /// dial). The first bootstrap peer the cache does not hold comes within
    /// the first round of [`PARALLEL_ATTACH_DIALS`], so that a cache of dead
    /// supernodes does not hold it back round after round.
    fn candidates(
        &self,
        ctx: &Ctx,
        links: &Links,
        host_cache: &HostCache,
    ) -> Vec<(Option<NodeId>, Vec<String>)> {
        let usable = |id: &NodeId| !links.contains(id) && !self.avoid.contains_key(id);
        let boot = &ctx.cfg.bootstrap;
        let mut out: Vec<(Option<NodeId>, Vec<String>)> = host_cache
            .newest_first()
            .into_iter()
            .filter(|e| usable(&e.id))
            .map(|e| {
                let given = boot.iter().filter(|b| b.id == Some(e.id));
                (Some(e.id), merge_addrs(given, e.addrs))
            })
            .collect();
        let fresh: Vec<_> = boot
            .iter()
            .filter(|b| {
                b.id.is_none_or(|id| usable(&id) && !host_cache.contains(&id))
            })
            .map(|b| (b.id, b.addrs.clone()))
            .collect();
        let at = out.len().min(PARALLEL_ATTACH_DIALS - 1);
        out.splice(at..at, fresh);
        out
    }

    /// Runs the attach timer of a supernode with an empty table: dial the
    /// bootstrap peers, then back off.
    pub fn bootstrap_supernode(&mut self, ctx: &mut Ctx, links: &mut Links, now: SimTime) {
        let boot = ctx.cfg.bootstrap.clone();
        for b in boot {
            if b.id != Some(ctx.id) && b.id.is_none_or(|id| !links.contains(&id)) {
                links.dial(ctx, now, b.id, b.addrs);
            }
        }
        self.back_off(ctx, now);
    }

    /// Jittered exponential backoff: synchronized rejoin storms are how both
    /// big Skype outages began.
    fn back_off(&mut self, ctx: &mut Ctx, now: SimTime) {
        let exp = self.attempts.min(16);
        let base = ctx
            .cfg
            .attach_backoff_initial
            .saturating_mul(1 << exp)
            .min(ctx.cfg.attach_backoff_max);
        let jittered = base / 2 + ctx.rng.random_range(0..=base);
        self.attempts = self.attempts.saturating_add(1);
        // Clear the avoid list so the next round may retry everyone.
        self.avoid.clear();
        ctx.timers.set(Timer::Attach, now + jittered.max(MILLIS));
    }

    /// Dials host-cache supernodes until `backups` are linked besides the
    /// primary.
    pub fn ensure_backups(
        &mut self,
        ctx: &mut Ctx,
        links: &mut Links,
        host_cache: &mut HostCache,
        now: SimTime,
    ) {
        let have = links.backups(self.primary).len();
        if have >= ctx.cfg.backups {
            return;
        }
        let mut need = ctx.cfg.backups - have;
        let candidates: Vec<_> = host_cache
            .newest_first()
            .into_iter()
            .filter(|e| {
                Some(e.id) != self.primary
                    && !links.contains(&e.id)
                    && !self.avoid.contains_key(&e.id)
            })
            .collect();
        for e in candidates {
            if need == 0 {
                break;
            }
            if !may_dial(ctx, host_cache, now, Some(e.id)) {
                continue;
            }
            let given = ctx.cfg.bootstrap.iter().filter(|b| b.id == Some(e.id));
            let addrs = merge_addrs(given, e.addrs);
            if links.dial(ctx, now, Some(e.id), addrs) {
                need -= 1;
            }
        }
    }

    /// A supernode accepted our `Join`: attach, learn the supernodes it
    /// named, publish our record and link backups.
    // The facade lends each sub-machine exactly the state it touches, so
    // that sub-machines never reach into each other.
    #[allow(clippy::too_many_arguments)]
    pub fn on_accept(
        &mut self,
        ctx: &mut Ctx,
        links: &mut Links,
        host_cache: &mut HostCache,
        pending: &mut PendingRequests,
        now: SimTime,
        from: NodeId,
        a: Accept,
    ) {
        if !self.answers_join(pending, a.request_id, from) {
            ctx.out.drop(DropReason::UnexpectedAccept);
            return;
        }
        self.primary = Some(from);
        self.attempts = 0;
        self.unattached_since = None;
        if let Some(link) = links.get_mut(&from) {
            link.load = a.clients;
            link.capacity = Some(a.max_clients);
        }
        let high = u64::from(ctx.cfg.auto_role.high_watermark_pct);
        if u64::from(a.clients) * 100 >= u64::from(a.max_clients) * high {
            self.last_crowded = Some(now);
        }
        learn_supernodes(ctx, host_cache, a.supernodes, from, now);
        ctx.out.emit(Event::Attached { sn: from });
        self.publish_record(ctx, links, now);
        self.ensure_backups(ctx, links, host_cache, now);
    }

    /// A full supernode redirected our `Join`: avoid it, learn the
    /// supernodes it named, close the link and try again at once.
    #[allow(clippy::too_many_arguments)]
    pub fn on_redirect(
        &mut self,
        ctx: &mut Ctx,
        links: &mut Links,
        host_cache: &mut HostCache,
        pending: &mut PendingRequests,
        now: SimTime,
        from: NodeId,
        r: Redirect,
    ) {
        if !self.answers_join(pending, r.request_id, from) {
            ctx.out.drop(DropReason::UnsolicitedReply);
            return;
        }
        self.avoid.insert(from, now + AVOID_FOR);
        self.last_crowded = Some(now);
        // Seen now: redirect targets are tried first.
        learn_supernodes(ctx, host_cache, r.supernodes, from, now);
        ctx.out.act(Action::Disconnect {
            peer: from,
            reason: "supernode is full".into(),
        });
        links.remove(&from);
        ctx.timers.set_earliest(Timer::Attach, now);
    }

    /// Whether `request_id` from `from` answers the `Join` in flight; if
    /// so, that join is over.
    fn answers_join(
        &mut self,
        pending: &mut PendingRequests,
        request_id: RequestId,
        from: NodeId,
    ) -> bool {
        let asked = self.joining == Some(request_id)
            && pending
                .take_if(request_id, |r| *r == Request::Join { sn: from })
                .is_some();
        if asked {
            self.joining = None;
        }
        asked
    }

    /// Signs and sends our location record to the primary supernode.
    pub fn publish_record(&mut self, ctx: &mut Ctx, links: &Links, now: SimTime) {
        let Some(sn) = self.primary else {
            return;
        };
        self.record_seq = self.record_seq.max(now).saturating_add(1);
        let mut sn_addrs = links.get(&sn).map(|l| l.addrs.clone()).unwrap_or_default();
        sn_addrs.truncate(MAX_ADDRS);
        self.published_backups = record_backups(links, sn);
        let record = ctx.identity.location_record_with_backups(
            sn,
            sn_addrs,
            self.published_backups.clone(),
            self.record_seq,
            ctx.cfg.record_lifetime_s,
        );
        ctx.out.send(sn, Message::Publish(record));
    }

    /// Publishes our record again if the backups it names are no longer
    /// the ones linked: senders retry toward them when the primary fails
    /// us, so they must be the ones that can reach us.
    pub fn republish_if_backups_changed(&mut self, ctx: &mut Ctx, links: &Links, now: SimTime) {
        if let Some(sn) = self.primary {
            if record_backups(links, sn) != self.published_backups {
                self.publish_record(ctx, links, now);
            }
        }
    }

    /// The node leaves: tell the primary with a signed `Leave`.
    pub fn leave(&mut self, ctx: &mut Ctx, now: SimTime) {
        if let Some(sn) = self.primary.take() {
            self.record_seq = self.record_seq.max(now).saturating_add(1);
            let leave = ctx.identity.leave(sn, self.record_seq);
            ctx.out.send(sn, Message::Leave(leave));
        }
    }

    /// A dial to `id` failed: avoid it for a while.
    pub fn dial_failed(
        &mut self,
        ctx: &mut Ctx,
        pending: &mut PendingRequests,
        now: SimTime,
        id: Option<NodeId>,
    ) {
        if let Some(id) = id {
            self.avoid.insert(id, now + AVOID_FOR);
            if self.join_in_flight(pending).is_some_and(|(sn, _)| sn == id) {
                self.abandon_join(pending);
            }
        }
        if ctx.cfg.role == Role::Ordinary && self.primary.is_none() {
            ctx.timers.set_earliest(Timer::Attach, now);
        }
    }

    /// The link to `peer` closed (for `reason`): a join to it is over, and
    /// if it was the primary, fail over at once.
    pub fn link_lost(
        &mut self,
        ctx: &mut Ctx,
        pending: &mut PendingRequests,
        now: SimTime,
        peer: NodeId,
        reason: &str,
    ) {
        if self
            .join_in_flight(pending)
            .is_some_and(|(sn, _)| sn == peer)
        {
            self.abandon_join(pending);
            ctx.timers.set_earliest(Timer::Attach, now);
        }
        if self.primary == Some(peer) {
            self.primary = None;
            self.unattached_since = Some(now);
            ctx.out.emit(Event::Detached {
                sn: peer,
                reason: reason.to_string(),
            });
            // Fail over at once: a backup is usually linked already.
            ctx.timers.set_earliest(Timer::Attach, now);
        }
    }
}

/// Adds the supernodes `from` named in its answer to the host cache, as
/// advertised by it.
fn learn_supernodes(
    ctx: &Ctx,
    host_cache: &mut HostCache,
    supernodes: Vec<PeerInfo>,
    from: NodeId,
    now: SimTime,
) {
    for p in supernodes {
        if p.id != ctx.id {
            host_cache.add_advertised(p.id, p.addrs, now, Some(from));
        }
    }
}

/// The addresses of the bootstrap peers `given` (in order), then `cached`,
/// each once, at most [`MAX_ADDRS`] of them.
fn merge_addrs<'a>(
    given: impl Iterator<Item = &'a BootstrapPeer>,
    cached: Vec<String>,
) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for a in given.flat_map(|b| b.addrs.iter().cloned()).chain(cached) {
        if out.len() < MAX_ADDRS && !out.contains(&a) {
            out.push(a);
        }
    }
    out
}

/// Whether candidate `id` may be dialed now: what peers advertised is
/// dialed within the dial budget of their network group, as a supernode's
/// dials of `Neighbors` answers are (see `HostCache::may_dial_candidate`);
/// a refusal is counted.
fn may_dial(ctx: &mut Ctx, host_cache: &mut HostCache, now: SimTime, id: Option<NodeId>) -> bool {
    let ok = id.is_none_or(|id| host_cache.may_dial_candidate(now, &id));
    if !ok {
        ctx.out.drop(DropReason::DialOverBudget);
    }
    ok
}

/// The backups a record names: the linked supernodes other than the
/// primary, in id order, at most [`MAX_RECORD_BACKUPS`].
fn record_backups(links: &Links, primary: NodeId) -> Vec<NodeId> {
    let mut backups = links.backups(Some(primary));
    backups.truncate(MAX_RECORD_BACKUPS);
    backups
}

#[cfg(test)]
mod tests {
    use crate::events::{Action, HostCacheEntry, Output};
    use crate::harness::identity;
    use crate::{BootstrapPeer, Node, NodeConfig, SECS};
    use skyhop_protocol::NodeId;

    /// The dials an ordinary node started with `bootstrap` and a host cache
    /// of `cached` asks for at its first attach round.
    fn first_dials(
        bootstrap: Vec<BootstrapPeer>,
        cached: Vec<HostCacheEntry>,
    ) -> Vec<(Option<NodeId>, Vec<String>)> {
        let cfg = NodeConfig {
            bootstrap,
            ..NodeConfig::default()
        };
        let mut node = Node::new(cfg, identity(1), 1, SECS, Default::default()).expect("valid");
        node.restore_host_cache(cached);
        node.handle_timeout(SECS);
        std::iter::from_fn(|| node.poll_output())
            .filter_map(|o| match o {
                Output::Action(Action::Dial { id, addrs }) => Some((id, addrs)),
                _ => None,
            })
            .collect()
    }

    fn cached(id: NodeId, addr: &str, last_seen: u64) -> HostCacheEntry {
        HostCacheEntry {
            id,
            addrs: vec![addr.into()],
            last_seen,
            verified: true,
        }
    }

    #[test]
    fn a_supernode_given_on_the_command_line_is_dialed_there_first_then_where_it_was() {
        let sn = identity(2).id();
        let boot = BootstrapPeer {
            id: Some(sn),
            addrs: vec!["/new".into()],
        };
        let dials = first_dials(vec![boot], vec![cached(sn, "/old", 5)]);
        assert_eq!(
            dials,
            vec![(Some(sn), vec!["/new".to_string(), "/old".to_string()])],
            "one dial, at the new address and the remembered one"
        );
    }

    #[test]
    fn a_bootstrap_peer_is_dialed_in_the_first_round_however_many_supernodes_are_cached() {
        let boot = BootstrapPeer {
            id: Some(identity(2).id()),
            addrs: vec!["/boot".into()],
        };
        let stale: Vec<HostCacheEntry> = (0..20)
            .map(|n| cached(identity(100 + n).id(), &format!("/dead/{n}"), n))
            .collect();
        let dials = first_dials(vec![boot.clone()], stale);
        assert_eq!(dials.len(), super::PARALLEL_ATTACH_DIALS);
        assert!(
            dials.contains(&(boot.id, boot.addrs)),
            "the command line's supernode is among the first dials: {dials:?}"
        );
        // The newest cached supernodes fill the rest of the round.
        assert_eq!(dials[0].1, vec!["/dead/19".to_string()]);
    }
}
