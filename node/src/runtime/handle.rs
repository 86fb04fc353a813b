//! What callers of a running node hold: [`NodeHandle`] (status, chat, trace,
//! peers, events, shutdown), the options to start one with, and the
//! outcomes it reports. The node task itself is [`super::node_task`].

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use libp2p::Multiaddr;
use skyhop_protocol::{Identity, NodeId, Role};
use tokio::sync::{mpsc, oneshot};

use super::db::{Contact, HistoryLimits, HistoryPage};
use super::events_log::EventLog;
use super::metrics::NodeMetrics;
use super::names::Resolved;
use super::report::{NodeInfo, StatusReport};
use super::RuntimeError;
use skyhop_core::{NodeConfig, SimTime};

/// How long the node task gives its writers to flush on shutdown (the
/// handle waits that long and a little more for the task to stop).
pub(super) const SHUTDOWN_FLUSH: Duration = Duration::from_millis(500);

/// Whether to run mDNS discovery.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MdnsMode {
    /// Always.
    On,
    /// Never.
    Off,
    /// Only when listening on a non-loopback address.
    #[default]
    Auto,
}

impl std::str::FromStr for MdnsMode {
    type Err = String;

    fn from_str(s: &str) -> Result<MdnsMode, String> {
        match s {
            "on" => Ok(MdnsMode::On),
            "off" => Ok(MdnsMode::Off),
            "auto" => Ok(MdnsMode::Auto),
            other => Err(format!("'{other}': expected on, off or auto")),
        }
    }
}

/// Everything needed to start a node.
#[derive(Clone, Debug)]
pub struct NodeOptions {
    /// Core tunables; `role`, `listen_addrs` and `bootstrap` are filled in
    /// from the fields below.
    pub config: NodeConfig,
    /// Addresses to listen on.
    pub listen: Vec<Multiaddr>,
    /// Addresses to bootstrap from (may end in `/p2p/<peer id>`).
    pub bootstrap: Vec<Multiaddr>,
    /// Where the key file and host cache live; `None` keeps nothing on disk.
    pub data_dir: Option<PathBuf>,
    /// The identity; `None` loads or creates `<data_dir>/key` (or makes a
    /// fresh one without a data dir).
    pub identity: Option<Identity>,
    /// mDNS discovery.
    pub mdns: MdnsMode,
    /// Seed of the core RNG; `None` draws one.
    pub seed: Option<u64>,
    /// How much chat history `<data_dir>/history.db` keeps (none is kept
    /// without a data dir).
    pub history: HistoryLimits,
}

impl NodeOptions {
    /// Options for a node of `role` listening on 127.0.0.1, port chosen by
    /// the OS, with nothing on disk and mDNS off.
    pub fn loopback(role: Role) -> NodeOptions {
        NodeOptions {
            config: NodeConfig {
                role,
                ..NodeConfig::default()
            },
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse().expect("valid multiaddr")],
            bootstrap: Vec::new(),
            data_dir: None,
            identity: None,
            mdns: MdnsMode::Off,
            seed: None,
            history: HistoryLimits::default(),
        }
    }
}

/// The outcome of a chat message sent through [`NodeHandle::send_chat`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SendOutcome {
    /// Acknowledged by the recipient.
    Delivered {
        /// Hops the message took.
        hops: u8,
        /// From first send to ack, in microseconds.
        latency: SimTime,
    },
    /// Not delivered; why.
    Failed(String),
    /// The recipient is offline; `copies` of its home supernodes signed
    /// that they keep the chat until it comes back (the history and the
    /// events say when it is delivered).
    Stored {
        /// Home supernodes that keep it.
        copies: u8,
    },
}

/// The outcome of a trace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TraceOutcome {
    /// The path, this node first, and the round trip in microseconds.
    Completed {
        /// The hops.
        path: Vec<NodeId>,
        /// Round trip.
        rtt: SimTime,
    },
    /// Why no path came back.
    Failed(String),
}

/// Node ids this node knows, for `/who` and prefix resolution.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KnownPeers {
    /// Clients of this supernode.
    pub clients: Vec<NodeId>,
    /// Supernodes in the neighbor table.
    pub neighbors: Vec<NodeId>,
    /// Linked peers.
    pub links: Vec<NodeId>,
    /// Host-cache entries.
    pub host_cache: Vec<NodeId>,
    /// Recent chat partners, newest last.
    pub recent: Vec<NodeId>,
    /// Contacts from the history, most recently seen first.
    #[serde(default)]
    pub contacts: Vec<NodeId>,
}

impl KnownPeers {
    /// Every id, without duplicates.
    pub fn all(&self) -> BTreeSet<NodeId> {
        [
            &self.clients,
            &self.neighbors,
            &self.links,
            &self.host_cache,
            &self.recent,
            &self.contacts,
        ]
        .into_iter()
        .flatten()
        .copied()
        .collect()
    }
}

/// What a [`NodeHandle`] asks the node task, each with where to answer.
pub(super) enum Command {
    /// A status snapshot.
    Status(oneshot::Sender<StatusReport>),
    /// Send a chat message; answer with its outcome.
    Send {
        /// The recipient.
        to: NodeId,
        /// The message.
        text: String,
        /// Where the outcome goes.
        reply: oneshot::Sender<SendOutcome>,
    },
    /// Trace the path to a node; answer with the path or why not.
    Trace {
        /// The node traced.
        to: NodeId,
        /// Where the outcome goes.
        reply: oneshot::Sender<TraceOutcome>,
    },
    /// The ids the node knows.
    Peers(oneshot::Sender<KnownPeers>),
    /// A page of chat history.
    History {
        /// One conversation, or all.
        peer: Option<NodeId>,
        /// Chats at most.
        limit: u32,
        /// Where the page goes.
        reply: oneshot::Sender<Result<HistoryPage, RuntimeError>>,
    },
    /// The contacts and their presence.
    Contacts(oneshot::Sender<Result<Vec<Contact>, RuntimeError>>),
    /// The contact a name is pinned to, if any (and a background check).
    PinnedName {
        /// The name.
        name: String,
        /// Where the pin goes.
        reply: oneshot::Sender<Result<Option<Resolved>, RuntimeError>>,
    },
    /// Look a name up at its home supernodes.
    LookUpName {
        /// The name.
        name: String,
        /// Where the answer goes.
        reply: oneshot::Sender<Result<Resolved, RuntimeError>>,
    },
    /// Pin a name to the other key it now resolves to.
    Repin {
        /// The name.
        name: String,
        /// The new key, or `None` if no other key was seen.
        reply: oneshot::Sender<Result<Option<NodeId>, RuntimeError>>,
    },
    /// Who is listed at this node's supernode.
    Who(oneshot::Sender<Result<super::api::Who, RuntimeError>>),
    /// Leave, flush and stop; answer when done.
    Shutdown(oneshot::Sender<()>),
}

/// A handle to a running node task. Cloning it is cheap; the task stops on
/// [`NodeHandle::shutdown`] or when every handle is dropped.
#[derive(Clone)]
pub struct NodeHandle {
    /// The node task's command queue.
    pub(super) commands: mpsc::Sender<Command>,
    /// Who the node is.
    pub(super) info: NodeInfo,
    /// The node's recent events.
    pub(super) events: Arc<EventLog>,
    /// How long a chat may take; sends and traces wait this plus a margin.
    pub(super) chat_deadline: Duration,
    /// The node's Prometheus registry.
    pub(super) metrics: Arc<NodeMetrics>,
}

impl std::fmt::Debug for NodeHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NodeHandle({})", self.info.node_id.short())
    }
}

impl NodeHandle {
    /// Who the node is.
    pub fn info(&self) -> &NodeInfo {
        &self.info
    }

    /// The node's recent events.
    pub fn events(&self) -> &EventLog {
        &self.events
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, RuntimeError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(make(tx))
            .await
            .map_err(|_| RuntimeError::Stopped)?;
        rx.await.map_err(|_| RuntimeError::Stopped)
    }

    /// A status snapshot.
    pub async fn status(&self) -> Result<StatusReport, RuntimeError> {
        self.ask(Command::Status).await
    }

    /// The node's metrics in the Prometheus text format.
    pub async fn metrics_text(&self) -> Result<String, RuntimeError> {
        let report = self.status().await?;
        Ok(self.metrics.encode(report))
    }

    /// Node ids this node knows.
    pub async fn peers(&self) -> Result<KnownPeers, RuntimeError> {
        self.ask(Command::Peers).await
    }

    /// The newest `limit` chats with `peer` (or everyone), oldest first.
    pub async fn history(
        &self,
        peer: Option<NodeId>,
        limit: u32,
    ) -> Result<HistoryPage, RuntimeError> {
        self.ask(|reply| Command::History { peer, limit, reply })
            .await?
    }

    /// The contacts, most recently seen first, with their presence.
    pub async fn contacts(&self) -> Result<Vec<Contact>, RuntimeError> {
        self.ask(Command::Contacts).await?
    }

    /// Who is attached to this node's supernode and chose to be listed
    /// (at most 10 s).
    pub async fn who(&self) -> Result<super::api::Who, RuntimeError> {
        match tokio::time::timeout(Duration::from_secs(10), self.ask(Command::Who)).await {
            Ok(r) => r?,
            Err(_) => Err(RuntimeError::Who {
                why: "no answer within 10 s".into(),
            }),
        }
    }

    /// Sends `text` to `to` and waits (at most the chat deadline plus 5 s)
    /// for its ack or failure.
    pub async fn send_chat(&self, to: NodeId, text: String) -> Result<SendOutcome, RuntimeError> {
        let wait = self.chat_deadline + Duration::from_secs(5);
        let ask = self.ask(|reply| Command::Send { to, text, reply });
        match tokio::time::timeout(wait, ask).await {
            Ok(r) => r,
            Err(_) => Ok(SendOutcome::Failed("no outcome before the deadline".into())),
        }
    }

    /// Traces the hop path to `to`, waiting at most the chat deadline plus 5 s.
    pub async fn trace(&self, to: NodeId) -> Result<TraceOutcome, RuntimeError> {
        let wait = self.chat_deadline + Duration::from_secs(5);
        match tokio::time::timeout(wait, self.ask(|reply| Command::Trace { to, reply })).await {
            Ok(r) => r,
            Err(_) => Ok(TraceOutcome::Failed("no answer before the deadline".into())),
        }
    }

    /// Resolves a node id, a unique prefix of a known id, or a name.
    pub async fn resolve(&self, text: &str) -> Result<NodeId, RuntimeError> {
        Ok(self.resolve_name(text).await?.id)
    }

    /// Resolves, in order: an exact 64-hex id; a name pinned to a contact;
    /// a unique hex prefix of a known id; a name looked up at its home
    /// supernodes (and pinned at this first contact). With a name, says
    /// whether it now resolves to another key than its pin.
    pub async fn resolve_name(&self, text: &str) -> Result<Resolved, RuntimeError> {
        let text = text.trim();
        if let Ok(id) = text.parse::<NodeId>() {
            return Ok(Resolved { id, conflict: None });
        }
        let is_name = skyhop_protocol::check_name(text).is_ok();
        if is_name {
            let name = text.to_owned();
            if let Some(pinned) = self
                .ask(|reply| Command::PinnedName { name, reply })
                .await??
            {
                return Ok(pinned);
            }
        }
        let is_hex = !text.is_empty() && text.chars().all(|c| c.is_ascii_hexdigit());
        match (is_hex, is_name) {
            (true, false) => self
                .resolve_prefix(text)
                .await
                .map(|id| Resolved { id, conflict: None }),
            (true, true) => match self.resolve_prefix(text).await {
                Ok(id) => Ok(Resolved { id, conflict: None }),
                Err(RuntimeError::UnknownPrefix { .. }) => self.look_up_name(text).await,
                Err(e) => Err(e),
            },
            (false, true) => self.look_up_name(text).await,
            (false, false) => Err(RuntimeError::NotAnId { text: text.into() }),
        }
    }

    /// Looks `name` up at its home supernodes (at most 10 s).
    async fn look_up_name(&self, name: &str) -> Result<Resolved, RuntimeError> {
        let owned = name.to_owned();
        let ask = self.ask(|reply| Command::LookUpName { name: owned, reply });
        match tokio::time::timeout(Duration::from_secs(10), ask).await {
            Ok(r) => r?,
            Err(_) => Err(RuntimeError::NameLookup {
                name: name.into(),
                why: "no home supernode answered within 10 s".into(),
            }),
        }
    }

    /// Pins `name` to the other key it now resolves to; that key, or
    /// `None` if it resolved to no other key.
    pub async fn repin(&self, name: &str) -> Result<Option<NodeId>, RuntimeError> {
        let name = name.to_owned();
        self.ask(|reply| Command::Repin { name, reply }).await?
    }

    /// Resolves a unique prefix of a known id.
    async fn resolve_prefix(&self, text: &str) -> Result<NodeId, RuntimeError> {
        let prefix = text.trim().to_ascii_lowercase();
        let mut known = self.peers().await?.all();
        known.insert(self.info.node_id);
        let matches: Vec<NodeId> = known
            .into_iter()
            .filter(|id| id.to_hex().starts_with(&prefix))
            .collect();
        match matches.as_slice() {
            [one] => Ok(*one),
            [] => Err(RuntimeError::UnknownPrefix { prefix }),
            many => Err(RuntimeError::AmbiguousPrefix {
                matches: many.len(),
                prefix,
            }),
        }
    }

    /// Leaves the overlay, flushes, saves the host cache and stops the task.
    pub async fn shutdown(&self) -> Result<(), RuntimeError> {
        let wait = SHUTDOWN_FLUSH + Duration::from_secs(5);
        match tokio::time::timeout(wait, self.ask(Command::Shutdown)).await {
            Ok(r) => r,
            Err(_) => Err(RuntimeError::Stopped),
        }
    }
}
