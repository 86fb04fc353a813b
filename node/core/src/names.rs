//! User names: the claims a supernode holds as a home supernode of a
//! name's key, and this node's own claim.
//!
//! A claim ([`NameClaim`]) is signed by the key that holds the name and
//! stored on the `replicas` supernodes closest to
//! [`skyhop_protocol::name_key`]`(name)`, like a location record on the
//! homes of a node id. First come, first served: a home refuses a claim
//! for a name another key holds, answering with the holder's own signed
//! claim, which is the claimant's proof that the name is taken. Only the
//! holder can refresh (its signature); a claim not refreshed for its
//! `lifetime_s` is forgotten, and the name is free again.
//!
//! It decides what to store and what to answer; the `Node` facade sends
//! the packets and matches replies to the requests it made.
//!
//! # Implementation notes
//! Claims are a [`RankedMap`] ranked by expiry, so that expiring and
//! making room at `max_names` cost O(log n): the claim that would expire
//! soonest goes first. Names that are not valid never reach here (the
//! codec refuses them); a claim is verified once per new or changed claim
//! (the memo remembers good signatures).

use skyhop_protocol::{name_key, Body, NameClaim, NodeId};

use super::context::Ctx;
use super::counters::DropReason;
use super::home::Originate;
use super::ranked::RankedMap;
use super::table::NeighborTable;
use super::{SimTime, SECS};

/// The longest gap between two refreshes of this node's claim.
const MAX_REFRESH: SimTime = 10 * 60 * SECS;

/// What storing a claim at a home did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ClaimOutcome {
    /// A name not held before, or its holder's newer claim.
    Stored,
    /// The same holder's older claim: ignored, the held one answers.
    Stale(NameClaim),
    /// Another key holds the name: its claim answers.
    Taken(NameClaim),
    /// The signature does not verify: nothing answers.
    Forged,
}

/// Why a name lookup was not started.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    /// Not a valid name.
    #[error("{0}")]
    BadName(#[from] skyhop_protocol::NameError),
    /// Too many lookups in flight.
    #[error("too many name lookups in flight; try again in a few seconds")]
    TooMany,
    /// The node has left the overlay.
    #[error("this node has left the overlay")]
    Left,
}

/// Where this node's own claim stands.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NameState {
    /// Sent, no answer yet.
    Claiming,
    /// A home holds it.
    Held,
    /// Another key holds the name.
    Taken(NodeId),
}

/// This node's claim to its name.
#[derive(Debug)]
struct Own {
    /// The name.
    name: String,
    /// The `seq` of the last claim signed.
    seq: u64,
    /// Where it stands.
    state: NameState,
}

/// Claims held as a home supernode, and this node's own claim.
#[derive(Debug)]
pub(crate) struct Names {
    /// Claims by name key, ranked by expiry.
    held: RankedMap<NodeId, NameClaim, SimTime>,
    /// Claims held at most.
    max_names: usize,
    /// This node's claim, if it has a name.
    own: Option<Own>,
}

impl Names {
    /// No claims held; `own` is this node's name, if any.
    pub fn new(max_names: usize, own: Option<String>) -> Names {
        Names {
            held: RankedMap::default(),
            max_names: max_names.max(1),
            own: own.map(|name| Own {
                name,
                seq: 0,
                state: NameState::Claiming,
            }),
        }
    }

    /// Claims held.
    pub fn len(&self) -> usize {
        self.held.len()
    }

    /// This node's name and where its claim stands.
    pub fn own(&self) -> Option<(&str, &NameState)> {
        self.own.as_ref().map(|o| (o.name.as_str(), &o.state))
    }

    /// How often this node refreshes its claim: a quarter of its lifetime,
    /// at most every ten minutes, so that a claim survives a few lost
    /// refreshes and a home that joined since learns it soon.
    pub fn refresh_interval(lifetime_s: u32) -> SimTime {
        (u64::from(lifetime_s) * SECS / 4).min(MAX_REFRESH)
    }

    /// This node's claim, signed afresh (a higher `seq` each time), to send
    /// toward its name's key; `None` without a name.
    pub fn own_claim(&mut self, ctx: &Ctx, now: SimTime) -> Option<NameClaim> {
        let own = self.own.as_mut()?;
        own.seq = (own.seq + 1).max(now);
        Some(
            ctx.identity
                .name_claim(own.name.clone(), own.seq, ctx.cfg.name_lifetime_s),
        )
    }

    /// A home's answer to this node's claim: `claim` is what the home
    /// holds. The event to emit when the state changed.
    pub fn on_own_answer(&mut self, ctx: &mut Ctx, claim: &NameClaim) -> Option<NameState> {
        let own = self.own.as_mut()?;
        if claim.name != own.name {
            return None;
        }
        let state = if claim.node == ctx.id {
            NameState::Held
        } else {
            ctx.out.drop(DropReason::NameTaken);
            NameState::Taken(claim.node)
        };
        if state == own.state {
            return None;
        }
        own.state = state.clone();
        Some(state)
    }

    /// Forgets expired claims.
    pub fn expire(&mut self, now: SimTime) {
        while self.held.pop_at_most(now).is_some() {}
    }

    /// The live claim to `name`, if held here.
    pub fn get(&self, name: &str, now: SimTime) -> Option<&NameClaim> {
        self.held
            .get(&name_key(name))
            .filter(|(c, expires)| *expires > now && c.name == name)
            .map(|(c, _)| c)
    }

    /// Stores `claim` if nobody else holds its name: first come, first
    /// served; only the holder (its signature) refreshes.
    pub fn store(&mut self, ctx: &mut Ctx, now: SimTime, claim: NameClaim) -> ClaimOutcome {
        if let Some(held) = self.get(&claim.name, now) {
            if held.node != claim.node {
                // Refused before verifying: the answer is the holder's
                // claim whatever this one says, so a flood of forged
                // claims for a held name costs no signature check.
                return ClaimOutcome::Taken(held.clone());
            }
            if held.seq > claim.seq {
                return ClaimOutcome::Stale(held.clone());
            }
        }
        if ctx.memo.verify_name_claim(&claim).is_err() {
            ctx.out.counters.forged += 1;
            ctx.out.drop(DropReason::ForgedNameClaim);
            return ClaimOutcome::Forged;
        }
        let key = name_key(&claim.name);
        let expires = now + u64::from(claim.lifetime_s) * SECS;
        if !self.held.contains_key(&key) && self.held.len() >= self.max_names {
            self.held.pop_lowest();
        }
        self.held.insert(key, claim, expires);
        ClaimOutcome::Stored
    }

    /// A claim reached this supernode as the closest to its name's key
    /// (from `src`, asking for an answer under `request_id` unless 0):
    /// store it, copy it to the other homes, and answer.
    pub fn at_home(
        &mut self,
        ctx: &mut Ctx,
        table: &NeighborTable,
        now: SimTime,
        src: NodeId,
        request_id: u64,
        claim: NameClaim,
    ) -> Vec<Originate> {
        ctx.out.counters.delivered += 1;
        let name = claim.name.clone();
        let mut sends = Vec::new();
        let answer = match self.store(ctx, now, claim.clone()) {
            ClaimOutcome::Forged => return sends,
            ClaimOutcome::Stored => {
                let key = name_key(&name);
                for replica in table.closest(&key, ctx.cfg.replicas.saturating_sub(1)) {
                    let copy = Body::NameClaim {
                        request_id: 0,
                        claim: claim.clone(),
                    };
                    sends.push((replica.id, copy));
                }
                claim
            }
            ClaimOutcome::Stale(held) | ClaimOutcome::Taken(held) => held,
        };
        if request_id != 0 {
            let reply = Body::NameReply {
                request_id,
                name,
                claim: Some(answer),
            };
            sends.push((src, reply));
        }
        sends
    }

    /// The answer to `asker`'s lookup of `name`.
    pub fn answer_query(
        &self,
        now: SimTime,
        asker: NodeId,
        request_id: u64,
        name: String,
    ) -> Originate {
        let claim = self.get(&name, now).cloned();
        (
            asker,
            Body::NameReply {
                request_id,
                name,
                claim,
            },
        )
    }

    /// The claims a newcomer supernode is now among the `r` closest to.
    pub fn claims_for_newcomer(
        &self,
        table: &NeighborTable,
        r: usize,
        newcomer: NodeId,
    ) -> Vec<NameClaim> {
        self.held
            .values()
            .filter(|claim| {
                let key = name_key(&claim.name);
                let d = newcomer.distance(&key);
                table
                    .iter()
                    .filter(|e| e.id != newcomer && e.id.distance(&key) < d)
                    .take(r)
                    .count()
                    < r
            })
            .cloned()
            .collect()
    }
}

/// Checks an answer about `name`: the claim (if any) is for that name and
/// signed by its holder. The holder's id, `Ok(None)` for "nobody", `Err`
/// for a forgery (counted).
pub(crate) fn check_answer(
    ctx: &mut Ctx,
    name: &str,
    claim: Option<&NameClaim>,
) -> Result<Option<NodeId>, ()> {
    let Some(claim) = claim else {
        return Ok(None);
    };
    if claim.name != name || ctx.memo.verify_name_claim(claim).is_err() {
        ctx.out.counters.forged += 1;
        ctx.out.drop(DropReason::ForgedNameClaim);
        return Err(());
    }
    Ok(Some(claim.node))
}
