//! The names side of the [`Node`] facade: looking up where a node is
//! attached and who holds a name, and sending this node's own claim (the
//! decisions are [`crate::names::Names`]'s; the replies arrive through
//! `packets`).

use rand::RngExt;
use skyhop_protocol::{Body, NodeId};

use super::{Node, QUERY_TIMEOUT};
use crate::names::{LookupError, NameState, Names};
use crate::pending::Request;
use crate::timers::Timer;
use crate::{SimTime, SECS};

impl Node {
    /// Looks up where `node` is attached, at its home supernodes (if no
    /// lookup of it is in flight already); the answer arrives as
    /// [`Event::Located`](crate::Event::Located). False if too many
    /// lookups are in flight.
    pub fn look_up(&mut self, now: SimTime, node: NodeId) -> bool {
        !self.left && node != self.ctx.id && self.query_location(now, node)
    }

    /// Looks up who holds `name`, at its home supernodes; the answer
    /// arrives as [`Event::NameResolved`](crate::Event::NameResolved) with
    /// the returned id (none if no home answers within the query timeout).
    pub fn lookup_name(&mut self, now: SimTime, name: &str) -> Result<u64, LookupError> {
        if self.left {
            return Err(LookupError::Left);
        }
        skyhop_protocol::check_name(name)?;
        let request_id = self.ctx.rng.random();
        let request = Request::Name {
            name: name.to_owned(),
            own: false,
        };
        if !self
            .pending
            .insert(request_id, request, now, Some(now + QUERY_TIMEOUT))
        {
            return Err(LookupError::TooMany);
        }
        let body = Body::NameQuery {
            request_id,
            name: name.to_owned(),
        };
        self.originate(now, skyhop_protocol::name_key(name), body, None);
        Ok(request_id)
    }

    /// Sends this node's claim to its name (signed afresh) toward the
    /// name's home supernodes, and arms the next refresh.
    pub(super) fn claim_name(&mut self, now: SimTime) {
        let next = match self.names.own() {
            None => return,
            Some((_, NameState::Claiming)) => now + 3 * SECS,
            Some(_) => now + Names::refresh_interval(self.ctx.cfg.name_lifetime_s),
        };
        if !self.is_routable() {
            // Not attached yet: try again soon.
            self.ctx.timers.set(Timer::NameRefresh, now + SECS);
            return;
        }
        self.ctx.timers.set(Timer::NameRefresh, next);
        let Some(claim) = self.names.own_claim(&self.ctx, now) else {
            return;
        };
        let request_id = self.ctx.rng.random();
        let request = Request::Name {
            name: claim.name.clone(),
            own: true,
        };
        if !self
            .pending
            .insert(request_id, request, now, Some(now + QUERY_TIMEOUT))
        {
            return;
        }
        let key = skyhop_protocol::name_key(&claim.name);
        self.originate(now, key, Body::NameClaim { request_id, claim }, None);
    }
}
