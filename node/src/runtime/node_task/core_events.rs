//! What the node task does with the core's events: the history it writes,
//! the callers it answers, the addresses it refuses.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;

use skyhop_core::mailbox::{Change, Held};
use skyhop_core::{Event, Output, SimTime};
use skyhop_protocol::{NodeId, Role};

use super::super::db;
use super::super::db::{SaidBy, Write};
use super::super::handle::{SendOutcome, TraceOutcome};
use super::{NodeTask, HISTORY_WARN_EVERY, MAX_UNSTORED};

/// The history write a core event makes, if any.
pub(super) fn history_write(e: &Event) -> Option<Write> {
    Some(match e {
        Event::ChatReceived {
            from,
            msg_id,
            body,
            hops,
            ..
        } => Write::Received {
            from: *from,
            msg_id: *msg_id,
            body: body.clone(),
            hops: *hops,
        },
        Event::ChatStored {
            to,
            msg_id,
            copies,
            by,
            ..
        } => Write::Stored {
            to: *to,
            msg_id: *msg_id,
            copies: *copies,
            by: *by,
        },
        Event::ChatDelivered {
            to, msg_id, hops, ..
        } => Write::Delivered {
            to: *to,
            msg_id: *msg_id,
            hops: *hops,
        },
        Event::ChatFailed {
            to,
            msg_id,
            reason,
            said_by,
        } => Write::Failed {
            to: *to,
            msg_id: Some(*msg_id),
            body: None,
            reason: failure_text(*reason, *said_by),
            said_by: SaidBy::of_failure(*reason),
            offline: *reason == skyhop_core::ChatFailure::Offline,
        },
        // A location lookup's answer: a live record, or the homes' word.
        Event::Located { node, online } => Write::Presence {
            id: *node,
            online: *online,
        },
        // A trace is a location lookup and a round trip: its answer is
        // what this node can learn of a contact's presence.
        Event::TraceCompleted { to, .. } => Write::Presence {
            id: *to,
            online: true,
        },
        Event::TraceFailed {
            to,
            reason: skyhop_core::ChatFailure::Offline,
            ..
        } => Write::Presence {
            id: *to,
            online: false,
        },
        _ => return None,
    })
}

/// Why a chat failed, and who said so when someone did (the user can judge
/// it): what the sender is told and what its history keeps.
pub(super) fn failure_text(reason: skyhop_core::ChatFailure, said_by: Option<NodeId>) -> String {
    match said_by {
        Some(by) => format!("{reason} (said by {})", by.short()),
        None => reason.to_string(),
    }
}

impl NodeTask {
    /// Commits the history writes of `batch` (and those commands left
    /// pending) in one transaction. If that fails, the operator is told
    /// and the receipts of the chats not stored are withheld: the sender
    /// then hears "not delivered", which is true.
    pub(super) fn record_history(&mut self, now: SimTime, batch: &[Output]) {
        let Some(history) = self.history.as_mut() else {
            return;
        };
        let mut writes = std::mem::take(&mut self.history_pending);
        writes.extend(batch.iter().filter_map(|out| match out {
            Output::Event(e) => history_write(e),
            _ => None,
        }));
        // A stored chat's receipt is awaited past a restart: saved on the
        // first notice (and again with its expiry when it settles).
        for out in batch {
            if let Output::Event(Event::ChatStored { msg_id, .. }) = out {
                if let Some(chat) = self.core.awaited_chat(msg_id) {
                    writes.push(Write::Awaited(chat));
                }
            }
        }
        // What this node's mailbox kept and dropped, before the notices
        // that promise it leave.
        let changes = self.core.mailbox_changes();
        writes.extend(changes.into_iter().map(Write::Mailbox));
        // Each author's mark as it stands after this batch, in the same
        // transaction as its chats.
        let authors: BTreeSet<NodeId> = batch
            .iter()
            .filter_map(|out| match out {
                Output::Event(Event::ChatReceived { from, .. }) => Some(*from),
                _ => None,
            })
            .collect();
        for author in authors {
            if let (Some(mark), forgotten_before) = self.core.replay_mark(&author) {
                writes.push(Write::ReplayMark {
                    author,
                    mark,
                    forgotten_before,
                });
            }
        }
        let peer_ids = &self.peer_ids;
        let stored = history.apply(&writes, now, |id| peer_ids.get(id).map(|p| p.to_string()));
        if let Err(e) = stored {
            self.warn_history(now, &e);
            for w in &writes {
                let unstored = match w {
                    Write::Received { from, msg_id, .. } => (*from, *msg_id),
                    // Not kept on disk: no "stored" notice promises it.
                    Write::Mailbox(Change::Kept(Held::Chat(k), _)) => (k.author, k.msg_id),
                    _ => continue,
                };
                if self.unstored.len() >= MAX_UNSTORED {
                    self.unstored.pop_front();
                }
                self.unstored.push_back(unstored);
            }
        }
    }

    /// Tells the operator the history fails, at most once a minute.
    pub(super) fn warn_history(&mut self, now: SimTime, e: &db::DbError) {
        if self
            .history_warned
            .is_some_and(|at| now.saturating_sub(at) < HISTORY_WARN_EVERY)
        {
            return;
        }
        self.history_warned = Some(now);
        tracing::error!("{e}; chats received meanwhile are not acknowledged");
    }

    pub(super) fn on_core_event(&mut self, e: Event) {
        match &e {
            Event::ChatDelivered {
                to,
                msg_id,
                hops,
                latency,
            } => {
                self.chats.delivered.fetch_add(1, Ordering::Relaxed);
                self.remember_partner(*to);
                if let Some(reply) = self.sends.remove(msg_id) {
                    let _ = reply.send(SendOutcome::Delivered {
                        hops: *hops,
                        latency: *latency,
                    });
                }
            }
            Event::ChatFailed {
                msg_id,
                reason,
                said_by,
                ..
            } => {
                self.chats.failed(*reason);
                if let Some(reply) = self.sends.remove(msg_id) {
                    let why = failure_text(*reason, *said_by);
                    let _ = reply.send(SendOutcome::Failed(why));
                }
            }
            Event::ChatStored {
                msg_id,
                copies,
                settled,
                ..
            } => {
                // A send waits for all three homes, or for its deadline.
                if *settled || *copies >= 3 {
                    if let Some(reply) = self.sends.remove(msg_id) {
                        let _ = reply.send(SendOutcome::Stored { copies: *copies });
                    }
                }
            }
            Event::ChatReceived { from, .. } => self.remember_partner(*from),
            Event::TraceCompleted {
                probe_id,
                path,
                rtt,
                ..
            } => {
                if let Some(reply) = self.traces.remove(probe_id) {
                    let _ = reply.send(TraceOutcome::Completed {
                        path: path.clone(),
                        rtt: *rtt,
                    });
                }
            }
            Event::TraceFailed {
                probe_id, reason, ..
            } => {
                if let Some(reply) = self.traces.remove(probe_id) {
                    let _ = reply.send(TraceOutcome::Failed(reason.to_string()));
                }
            }
            Event::Attached { sn } => tracing::info!(sn = %sn.short(), "attached"),
            Event::RoleChanged { role, reason } => match role {
                Role::Supernode => tracing::info!("promoted to supernode: {reason}"),
                Role::Ordinary => tracing::info!("demoted to ordinary node: {reason}"),
            },
            Event::Detached { sn, reason } => {
                tracing::info!(sn = %sn.short(), "detached: {reason}")
            }
            Event::PeerMisbehaved { peer, reason } => {
                tracing::warn!(peer = %peer.short(), "peer misbehaved: {reason}");
                self.refuse_ip_of(*peer);
            }
            Event::Located { .. } => {}
            Event::NameClaimed { name } => {
                tracing::info!("name '{name}' is yours: its home supernodes hold your claim")
            }
            Event::NameTaken { name, holder } => tracing::error!(
                "name '{name}' is taken by key {}; choose another --name",
                holder.short()
            ),
            Event::Listing { request_id, peers } => {
                // An answer for its caller only: kept out of the event log,
                // where a page that polls /who would push chats out.
                let now = self.clock.now();
                self.who.answered(now, *request_id, peers.as_deref());
                return;
            }
            Event::NameResolved {
                request_id, holder, ..
            } => {
                let now = self.clock.now();
                self.names
                    .resolved(self.history.as_mut(), now, *request_id, *holder);
            }
        }
        self.events.push(e);
    }

    /// Refuses the IP of `peer`, whom the core dropped: its node id costs
    /// nothing to replace, its address does. Loopback is never refused:
    /// every local process shares it.
    pub(super) fn refuse_ip_of(&mut self, peer: NodeId) {
        let ip = self
            .peer_ids
            .get(&peer)
            .and_then(|p| self.peer_ips.get(p))
            .copied();
        if let Some(ip) = ip.filter(|ip| !ip.is_loopback()) {
            let secs = self.swarm.behaviour_mut().ip_limits.refuse(ip) / skyhop_core::SECS;
            tracing::warn!(peer = %peer.short(), %ip, "refusing the peer's address for {secs} s");
        }
    }
}
