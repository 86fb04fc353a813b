//! The node task's side of names: lookups in flight and who waits for
//! them, the trust-on-first-use pins kept in the history database, and the
//! operator's warnings when a pinned name resolves to another key.
//!
//! Resolution order (see [`super::NodeHandle::resolve`]): an exact id, then
//! the contact a name is pinned to, then a lookup at the name's home
//! supernodes. A pinned name is still looked up in the background (at most
//! once per [`RECHECK`] per name), so that a change of key is noticed and
//! shown; the pinned key stays in use until the user re-pins.

use std::collections::BTreeMap;

use skyhop_core::{Node, SimTime, SECS};
use skyhop_protocol::NodeId;
use tokio::sync::oneshot;

use super::db::History;
use super::RuntimeError;

/// How often a pinned name is checked against the network, at most.
pub const RECHECK: SimTime = 60 * SECS;
/// Lookups waited on at most (the core bounds those in flight too).
const MAX_WAITING: usize = 256;
/// Names whose last check time is kept at most.
const MAX_CHECKED: usize = 4096;

/// What a name resolved to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    /// The key to use: the pinned one if there is a pin.
    pub id: NodeId,
    /// Another key the name resolves to on the network now, if it differs
    /// from the pin: a warning for the user.
    pub conflict: Option<NodeId>,
}

/// Where a lookup's answer goes.
type Reply = oneshot::Sender<Result<Resolved, RuntimeError>>;

/// Name lookups in flight and the pins' last checks.
#[derive(Default)]
pub struct NameBook {
    /// Lookups by request id: the name, and who waits (none for a
    /// background check of a pin).
    waiting: BTreeMap<u64, (String, Option<Reply>)>,
    /// When each pinned name was last checked.
    checked: BTreeMap<String, SimTime>,
}

impl NameBook {
    /// The pin of `name`, if any, with a conflict noticed since; starts a
    /// background check when the last one is older than [`RECHECK`].
    pub fn pinned(
        &mut self,
        core: &mut Node,
        history: Option<&History>,
        now: SimTime,
        name: &str,
    ) -> Result<Option<Resolved>, RuntimeError> {
        let Some(history) = history else {
            return Ok(None);
        };
        let Some(id) = history.pinned(name)? else {
            return Ok(None);
        };
        let conflict = history.name_conflicts()?.get(name).copied();
        let due = self
            .checked
            .get(name)
            .is_none_or(|at| now.saturating_sub(*at) >= RECHECK);
        if due {
            if self.checked.len() >= MAX_CHECKED {
                self.checked.pop_first();
            }
            self.checked.insert(name.to_owned(), now);
            self.start(core, now, name, None);
        }
        Ok(Some(Resolved { id, conflict }))
    }

    /// Looks `name` up on the network; the answer goes to `reply`.
    pub fn look_up(&mut self, core: &mut Node, now: SimTime, name: &str, reply: Reply) {
        self.start(core, now, name, Some(reply));
    }

    fn start(&mut self, core: &mut Node, now: SimTime, name: &str, reply: Option<Reply>) {
        if self.waiting.len() >= MAX_WAITING {
            // Answers that never came (the core forgets its side after its
            // query timeout): nobody waits for them any more.
            self.waiting
                .retain(|_, (_, r)| r.as_ref().is_some_and(|r| !r.is_closed()));
        }
        match core.lookup_name(now, name) {
            Ok(request_id) if self.waiting.len() < MAX_WAITING => {
                self.waiting.insert(request_id, (name.to_owned(), reply));
            }
            Ok(_) => {
                if let Some(reply) = reply {
                    let _ = reply.send(Err(RuntimeError::NameLookup {
                        name: name.into(),
                        why: "too many name lookups in flight; try again shortly".into(),
                    }));
                }
            }
            Err(e) => {
                if let Some(reply) = reply {
                    let _ = reply.send(Err(RuntimeError::NameLookup {
                        name: name.into(),
                        why: e.to_string(),
                    }));
                }
            }
        }
    }

    /// A lookup was answered: pin at first contact, warn on a change of
    /// key, and answer whoever waits.
    pub fn resolved(
        &mut self,
        history: Option<&mut History>,
        now: SimTime,
        request_id: u64,
        holder: Option<NodeId>,
    ) {
        let Some((name, reply)) = self.waiting.remove(&request_id) else {
            return;
        };
        let answer = match holder {
            None => Err(RuntimeError::UnknownName { name: name.clone() }),
            Some(holder) => Ok(pin_or_warn(history, now, &name, holder)),
        };
        if let Some(reply) = reply {
            let _ = reply.send(answer);
        }
    }
}

/// Pins `name` to `holder` at first contact; if it is pinned to another
/// key, warns loudly, remembers the conflict and keeps the pin.
fn pin_or_warn(
    history: Option<&mut History>,
    now: SimTime,
    name: &str,
    holder: NodeId,
) -> Resolved {
    let Some(history) = history else {
        return Resolved {
            id: holder,
            conflict: None,
        };
    };
    let stored = match history.pinned(name) {
        Ok(None) => history.pin(name, holder, now).map(|()| None),
        Ok(Some(pinned)) if pinned == holder => Ok(None),
        Ok(Some(pinned)) => history
            .note_conflict(name, holder, now)
            .map(|()| Some(pinned)),
        Err(e) => Err(e),
    };
    match stored {
        Ok(None) => Resolved {
            id: holder,
            conflict: None,
        },
        Ok(Some(pinned)) => {
            tracing::warn!(
                "WARNING: name '{name}' now resolves to key {}, but you pinned key {} at first \
                 contact; still using the pinned key. If you trust the new key, run \
                 `skyhop repin {name}` (or /repin {name} in the chat prompt)",
                holder.short(),
                pinned.short()
            );
            Resolved {
                id: pinned,
                conflict: Some(holder),
            }
        }
        Err(e) => {
            tracing::warn!("cannot keep the pin of name '{name}': {e}");
            Resolved {
                id: holder,
                conflict: None,
            }
        }
    }
}
