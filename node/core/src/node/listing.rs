//! The listing side of the [`Node`] facade: asking this node's supernode
//! to list it (`listed` in the config), answering and asking "who is
//! attached and listed" (the decisions are [`crate::listing::Listing`]'s).

use rand::RngExt;
use skyhop_protocol::{Body, Listed, Listing, Message, NodeId, Role, WhoQuery};

use super::{Node, QUERY_TIMEOUT};
use crate::events::Event;
use crate::listing::{ListedOutcome, WhoError};
use crate::names::NameState;
use crate::pending::Request;
use crate::SimTime;

impl Node {
    /// Asks who is attached to this node's supernode and chose to be
    /// listed (on a supernode: to itself); the answer arrives as
    /// [`Event::Listing`] with the returned id. Also returns the
    /// supernode asked.
    pub fn who(&mut self, now: SimTime) -> Result<(u64, NodeId), WhoError> {
        if self.left {
            return Err(WhoError::Left);
        }
        let request_id = self.ctx.rng.random();
        if self.ctx.cfg.role == Role::Supernode {
            let peers = Some(self.listing.peers());
            self.ctx.out.emit(Event::Listing { request_id, peers });
            return Ok((request_id, self.ctx.id));
        }
        let sn = self.attach.primary().ok_or(WhoError::NotAttached)?;
        let request = Request::Who { sn };
        if !self
            .pending
            .insert(request_id, request, now, Some(now + QUERY_TIMEOUT))
        {
            return Err(WhoError::TooMany);
        }
        self.ctx
            .out
            .send(sn, Message::WhoQuery(WhoQuery { request_id }));
        Ok((request_id, sn))
    }

    /// Nodes this supernode lists.
    pub fn listed_count(&self) -> usize {
        self.listing.len()
    }

    /// Tells the primary supernode that this node wants to be listed, with
    /// its name claim once its name's homes hold it (a no-op unless the
    /// config says `listed` and the node is attached).
    pub(super) fn send_listed(&mut self, now: SimTime) {
        if !self.ctx.cfg.listed || self.ctx.cfg.role != Role::Ordinary {
            return;
        }
        let Some(sn) = self.attach.primary() else {
            return;
        };
        let held = matches!(self.names.own(), Some((_, NameState::Held)));
        let claim = if held {
            self.names.own_claim(&self.ctx, now)
        } else {
            None
        };
        let listed = Listed {
            listed: true,
            claim,
        };
        self.ctx.out.send(sn, Message::Listed(listed));
    }

    /// Client `from` asks to be listed, or not.
    pub(super) fn on_listed(&mut self, now: SimTime, from: NodeId, listed: Listed) {
        let is_client = self.ctx.cfg.role == Role::Supernode && self.supernode.is_client(&from);
        let outcome =
            self.listing
                .on_listed(&mut self.ctx, from, is_client, listed.listed, listed.claim);
        match outcome {
            ListedOutcome::Done => {}
            ListedOutcome::Misbehaved(reason) => self.misbehaved(now, from, reason),
            ListedOutcome::CheckName(name) => {
                let request_id = self.ctx.rng.random();
                let request = Request::ListedName {
                    name: name.clone(),
                    node: from,
                };
                if self
                    .pending
                    .insert(request_id, request, now, Some(now + QUERY_TIMEOUT))
                {
                    let key = skyhop_protocol::name_key(&name);
                    let body = Body::NameQuery { request_id, name };
                    self.originate(now, key, body, None);
                }
            }
        }
    }

    /// A client asks who is listed here.
    pub(super) fn on_who_query(&mut self, now: SimTime, from: NodeId, query: WhoQuery) {
        let is_client = self.ctx.cfg.role == Role::Supernode && self.supernode.is_client(&from);
        if let Some(peers) = self.listing.answer(&mut self.ctx, now, from, is_client) {
            let listing = Listing {
                request_id: query.request_id,
                peers,
            };
            self.ctx.out.send(from, Message::Listing(listing));
        }
    }

    /// Supernode `from` answers a `WhoQuery`: passed on if it answers one
    /// this node asked of it.
    pub(super) fn on_listing(&mut self, from: NodeId, listing: Listing) {
        let asked = self
            .pending
            .take_if(listing.request_id, |r| *r == Request::Who { sn: from });
        if asked.is_none() {
            self.ctx
                .out
                .drop(crate::counters::DropReason::UnsolicitedReply);
            return;
        }
        self.ctx.out.emit(Event::Listing {
            request_id: listing.request_id,
            peers: Some(listing.peers),
        });
    }
}
