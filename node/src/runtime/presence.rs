//! Presence of contacts from their location records: when the contacts are
//! listed (`/contacts`, `/who`, the web page), the node asks the home
//! supernodes of the contacts it has not asked about lately; the answers
//! (a live signed record: online; the homes' signed word: offline) reach
//! the history as [`super::db::Write::Presence`] and show from the next
//! listing on.
//!
//! # Implementation notes
//! Bounded in rate and size: each contact at most once per [`FRESH`], at
//! most [`PER_LISTING`] lookups per listing, and at most [`MAX_CHECKED`]
//! contacts remembered (the oldest check is forgotten first, O(log n)).

use std::collections::{BTreeMap, BTreeSet};

use skyhop_core::{Node, SimTime, SECS};
use skyhop_protocol::NodeId;

/// How long an answer counts as fresh: no new lookup before.
pub const FRESH: SimTime = 60 * SECS;
/// Lookups one listing starts at most.
pub const PER_LISTING: usize = 16;
/// Contacts whose last check is remembered at most.
const MAX_CHECKED: usize = 10_000;

/// When each contact's presence was last asked.
#[derive(Default)]
pub struct PresenceChecks {
    /// Last check by contact.
    checked: BTreeMap<NodeId, SimTime>,
    /// The same, ordered by time, to forget the oldest.
    by_time: BTreeSet<(SimTime, NodeId)>,
}

impl PresenceChecks {
    /// Starts lookups for the `contacts` not asked about within [`FRESH`],
    /// at most [`PER_LISTING`]; how many were started.
    pub fn refresh(
        &mut self,
        core: &mut Node,
        now: SimTime,
        contacts: impl IntoIterator<Item = NodeId>,
    ) -> usize {
        let mut started = 0;
        for id in contacts {
            if started >= PER_LISTING {
                break;
            }
            let last = self.checked.get(&id).copied();
            if last.is_some_and(|at| now.saturating_sub(at) < FRESH) {
                continue;
            }
            if !core.look_up(now, id) {
                break;
            }
            started += 1;
            if let Some(at) = last {
                self.by_time.remove(&(at, id));
            } else if self.checked.len() >= MAX_CHECKED {
                if let Some((_, oldest)) = self.by_time.pop_first() {
                    self.checked.remove(&oldest);
                }
            }
            self.checked.insert(id, now);
            self.by_time.insert((now, id));
        }
        started
    }
}
