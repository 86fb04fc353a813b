//! What the node task does with its handles' commands.

use std::sync::atomic::Ordering;

use skyhop_core::SimTime;
use skyhop_protocol::NodeId;

use super::super::db::{SaidBy, Write};
use super::super::handle::{Command, KnownPeers, SendOutcome, TraceOutcome};
use super::super::report::{RoleReport, StatusReport};
use super::super::RuntimeError;
use super::NodeTask;

impl NodeTask {
    pub(super) fn on_command(&mut self, now: SimTime, cmd: Command) {
        match cmd {
            Command::Status(reply) => {
                let _ = reply.send(StatusReport {
                    status: self.core.status(),
                    info: self.info.clone(),
                    dropped_frames: self.dropped_frames.load(Ordering::Relaxed),
                    abuse: self.abuse,
                    connected_peers: self.swarm.connected_peers().count(),
                    role: self.role_report(),
                });
            }
            Command::Peers(reply) => {
                let status = self.core.status();
                let _ = reply.send(KnownPeers {
                    clients: status.clients,
                    neighbors: status.neighbors,
                    links: status.links,
                    host_cache: self.core.host_cache().into_iter().map(|e| e.id).collect(),
                    recent: self.recent.iter().copied().collect(),
                    contacts: self
                        .history
                        .as_ref()
                        .and_then(|h| h.contact_ids().ok())
                        .unwrap_or_default(),
                });
            }
            Command::History { peer, limit, reply } => {
                let page = match &self.history {
                    Some(h) => h.page(peer, limit).map_err(RuntimeError::from),
                    None => Err(RuntimeError::NoHistory),
                };
                let _ = reply.send(page);
            }
            Command::Contacts(reply) => {
                let links = &self.links;
                let contacts = match &self.history {
                    Some(h) => h
                        .contacts(now, |id| links.contains_key(id))
                        .map_err(RuntimeError::from),
                    None => Err(RuntimeError::NoHistory),
                };
                // Ask the homes of those not asked lately; the answers show
                // from the next listing on.
                if let Ok(list) = &contacts {
                    let ids: Vec<NodeId> = list.iter().map(|c| c.id).collect();
                    self.presence.refresh(&mut self.core, now, ids);
                }
                let _ = reply.send(contacts);
            }
            Command::Send { to, text, reply } => {
                // Kept for the history, which the next drain commits before
                // the chat leaves.
                let body = self.history.is_some().then(|| text.clone());
                match self.core.send_chat(now, to, text) {
                    Ok(msg_id) => {
                        self.chats.sent.fetch_add(1, Ordering::Relaxed);
                        self.remember_partner(to);
                        self.sends.insert(msg_id, reply);
                        if let Some(body) = body {
                            self.history_pending.push(Write::Sent { to, msg_id, body });
                        }
                    }
                    Err(e) => {
                        self.chats.sent.fetch_add(1, Ordering::Relaxed);
                        self.chats.failed_refused.fetch_add(1, Ordering::Relaxed);
                        if let Some(body) = body {
                            self.history_pending.push(Write::Failed {
                                to,
                                msg_id: None,
                                body: Some(body),
                                reason: e.to_string(),
                                said_by: SaidBy::ThisNode,
                                offline: false,
                            });
                            // Nothing else may drain soon: commit it now.
                            self.record_history(now, &[]);
                        }
                        let _ = reply.send(SendOutcome::Failed(e.to_string()));
                    }
                }
            }
            Command::Trace { to, reply } => match self.core.trace(now, to) {
                Ok(probe_id) => {
                    self.traces.insert(probe_id, reply);
                }
                Err(e) => {
                    let _ = reply.send(TraceOutcome::Failed(e.to_string()));
                }
            },
            Command::PinnedName { name, reply } => {
                let pinned = self
                    .names
                    .pinned(&mut self.core, self.history.as_ref(), now, &name);
                let _ = reply.send(pinned);
            }
            Command::LookUpName { name, reply } => {
                self.names.look_up(&mut self.core, now, &name, reply);
            }
            Command::Repin { name, reply } => {
                let repinned = match self.history.as_mut() {
                    Some(h) => h.repin(&name, now).map_err(RuntimeError::from),
                    None => Err(RuntimeError::NoHistory),
                };
                if let Ok(Some(id)) = &repinned {
                    tracing::warn!("name '{name}' re-pinned to key {} by the user", id.short());
                }
                let _ = reply.send(repinned);
            }
            Command::Who(reply) => self.who.ask(&mut self.core, now, reply),
            Command::Shutdown(_) => unreachable!("handled by the loop"),
        }
    }

    /// Auto role and reachability for status displays.
    pub(super) fn role_report(&self) -> RoleReport {
        let (promotions, demotions) = self.core.role_changes();
        RoleReport {
            auto: self.core.config().auto_role.enabled,
            reachability: self.reach.verdict().as_str(),
            promotions,
            demotions,
            dial_backs: self.reach.counts,
        }
    }
}
