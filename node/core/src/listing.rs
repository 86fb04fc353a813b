//! Who is attached to this supernode and chose to be listed: a supernode's
//! list of its clients that asked to be listed (`--listed`), the names it
//! checked for them, and how often each client may ask for the list.
//!
//! Only a node can list itself: a client says so in a [`Listed`] message
//! on its own authenticated link, so the supernode lists the link's peer
//! and nobody else. A name is shown only once the supernode has checked it
//! twice: the client's [`skyhop_protocol::NameClaim`] verifies and names
//! the client, and the name's home supernodes answer a lookup with a claim
//! by the same node. A client that unlists, leaves or loses its link
//! disappears from the list.
//!
//! It decides; the `Node` facade sends the lookups and the answers.
//!
//! # Implementation notes
//! The list is a `BTreeMap` by node id, so that an answer is in id order
//! and deterministic, bounded by [`MAX_LISTED`] (a client asking when the
//! list is full is not listed, and counted). The last answer to each
//! client is remembered only while it is a client (dropped with its link),
//! so that map is bounded by the supernode's clients.
//!
//! [`Listed`]: skyhop_protocol::Listed

use std::collections::BTreeMap;

use skyhop_protocol::{ListedPeer, NameClaim, NodeId, MAX_LISTED};

use super::context::Ctx;
use super::counters::DropReason;
use super::{SimTime, SECS};

/// A client's budget of `WhoQuery`s: [`WHO_BURST`] at once, then one per
/// this long; more is dropped (each answer is up to [`MAX_LISTED`]
/// entries, so an unbudgeted query would be an amplifier).
pub const WHO_INTERVAL: SimTime = SECS;
/// Queries a client may make at once after a quiet spell.
pub const WHO_BURST: u32 = 5;

/// A client's query budget: tokens left as of `at`.
#[derive(Clone, Copy, Debug)]
struct Budget {
    tokens: u32,
    at: SimTime,
}

/// One listed client.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Entry {
    /// Its name, once checked at the name's home supernodes.
    name: Option<String>,
    /// A name whose claim verified, awaiting the homes' answer.
    checking: Option<String>,
}

/// What a [`Listed`](skyhop_protocol::Listed) message calls for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ListedOutcome {
    /// Nothing more to do (listed, unlisted, or ignored and counted).
    Done,
    /// Listed; look `name` up at its homes to show it.
    CheckName(String),
    /// The claim is forged or names another node: a misbehaving peer.
    Misbehaved(String),
}

/// A supernode's listed clients.
#[derive(Debug, Default)]
pub(crate) struct Listing {
    /// Listed clients by id.
    listed: BTreeMap<NodeId, Entry>,
    /// Each client's `WhoQuery` budget.
    answered: BTreeMap<NodeId, Budget>,
}

impl Listing {
    /// Client `from` (`is_client`: attached to this supernode) asks to be
    /// listed or not, with its own name claim if it has a name.
    pub fn on_listed(
        &mut self,
        ctx: &mut Ctx,
        from: NodeId,
        is_client: bool,
        listed: bool,
        claim: Option<NameClaim>,
    ) -> ListedOutcome {
        if !is_client {
            ctx.out.drop(DropReason::ListedFromNonClient);
            return ListedOutcome::Done;
        }
        if !listed {
            self.listed.remove(&from);
            return ListedOutcome::Done;
        }
        if let Some(claim) = &claim {
            if claim.node != from {
                return ListedOutcome::Misbehaved(format!(
                    "asked to be listed with the name claim of {}",
                    claim.node
                ));
            }
            if ctx.memo.verify_name_claim(claim).is_err() {
                ctx.out.drop(DropReason::ForgedNameClaim);
                return ListedOutcome::Misbehaved(
                    "asked to be listed with a forged name claim".into(),
                );
            }
        }
        if !self.listed.contains_key(&from) && self.listed.len() >= MAX_LISTED {
            ctx.out.drop(DropReason::ListingFull);
            return ListedOutcome::Done;
        }
        let entry = self.listed.entry(from).or_default();
        match claim {
            None => {
                *entry = Entry::default();
                ListedOutcome::Done
            }
            Some(claim) if entry.name.as_deref() == Some(claim.name.as_str()) => {
                ListedOutcome::Done
            }
            Some(claim) => {
                entry.name = None;
                entry.checking = Some(claim.name.clone());
                ListedOutcome::CheckName(claim.name)
            }
        }
    }

    /// The homes of `name` answered that `holder` holds it: shown for
    /// `node` if that is the name being checked for it and it holds it.
    pub fn name_checked(&mut self, node: NodeId, name: &str, holder: Option<NodeId>) {
        let Some(entry) = self.listed.get_mut(&node) else {
            return;
        };
        if entry.checking.as_deref() != Some(name) {
            return;
        }
        entry.checking = None;
        if holder == Some(node) {
            entry.name = Some(name.to_owned());
        }
    }

    /// Client `peer` is gone (left, lost, or dropped).
    pub fn client_gone(&mut self, peer: &NodeId) {
        self.listed.remove(peer);
        self.answered.remove(peer);
    }

    /// Forgets everything (this node is no longer a supernode).
    pub fn clear(&mut self) {
        self.listed.clear();
        self.answered.clear();
    }

    /// Nodes listed.
    pub fn len(&self) -> usize {
        self.listed.len()
    }

    /// The list, in id order.
    pub fn peers(&self) -> Vec<ListedPeer> {
        self.listed
            .iter()
            .map(|(node, e)| ListedPeer {
                node: *node,
                name: e.name.clone(),
            })
            .collect()
    }

    /// The list for client `from` (`is_client`) asking at `now`, unless it
    /// is not a client or is over its budget (counted).
    pub fn answer(
        &mut self,
        ctx: &mut Ctx,
        now: SimTime,
        from: NodeId,
        is_client: bool,
    ) -> Option<Vec<ListedPeer>> {
        if !is_client {
            ctx.out.drop(DropReason::ListedFromNonClient);
            return None;
        }
        let budget = self.answered.entry(from).or_insert(Budget {
            tokens: WHO_BURST,
            at: now,
        });
        let refills = now.saturating_sub(budget.at) / WHO_INTERVAL;
        if refills > 0 {
            let tokens = u64::from(budget.tokens) + refills;
            budget.tokens = tokens.min(u64::from(WHO_BURST)) as u32;
            budget.at += refills * WHO_INTERVAL;
        }
        if budget.tokens == 0 {
            ctx.out.drop(DropReason::WhoOverBudget);
            return None;
        }
        budget.tokens -= 1;
        Some(self.peers())
    }
}

/// Why a listing could not be asked for.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WhoError {
    /// An ordinary node with no supernode to ask.
    #[error("not attached to a supernode yet; try again in a few seconds")]
    NotAttached,
    /// Too many listings asked for and not answered yet.
    #[error("too many listings asked for at once; try again in a few seconds")]
    TooMany,
    /// The node has left the overlay.
    #[error("this node has left the overlay")]
    Left,
}
