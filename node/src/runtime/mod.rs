//! The real runtime: a tokio task per node owning a libp2p swarm (TCP +
//! Noise + Yamux and QUIC, identify, ping, optional mDNS) and a [`skyhop_core::Node`],
//! one framed `/skyhop/1` stream per neighbor, the key file and host cache in
//! a data directory, and the local control API server (HTTP + JSON on
//! 127.0.0.1). It drives the core; what a person touches (commands, chat
//! prompt, demo, the control-API client) is the front (`crate::front`), on top
//! of it.
//!
//! - [`node_task`]: [`start`] a node; [`handle`]: talk to it through a
//!   [`NodeHandle`];
//! - [`link`]: the per-neighbor reader and (coalescing) writer tasks;
//! - [`clock`]: the one clock read and the RNG seeds;
//! - [`events_log`]: recent events for the control API's long-poll;
//! - [`reachability`]: the dial-back check of whether others can reach
//!   this node (a node with auto role promotes only if they can);
//! - [`oplog`]: the rate-limited lines an operator reads (peers dropped,
//!   links closed, redirects, refusals);
//! - [`control`]: the control API server (axum), [`api`]: its typed
//!   requests and replies, [`web`]: the web page it serves, [`metrics`]:
//!   its `/metrics`;
//! - [`waiters`]: the bound on long-polls, pings and streams, in all and
//!   per client;
//! - [`storage`]: key file, host cache, control socket, address and cookie;
//!   [`db`]: the chat history and contacts (SQLite, `history.db`).

pub mod api;
pub mod api_listing;
pub mod api_names;
pub mod api_state;
pub mod clock;
pub mod control;
pub mod db;
pub mod events_log;
pub mod handle;
pub mod ip_limits;
pub mod link;
pub mod listing;
pub mod metrics;
pub mod names;
pub mod node_task;
pub mod oplog;
pub mod presence;
pub mod reachability;
pub mod report;
pub mod storage;
pub mod waiters;
pub mod web;

#[cfg(test)]
pub(crate) mod tests;

pub use handle::{KnownPeers, MdnsMode, NodeHandle, NodeOptions, SendOutcome, TraceOutcome};
pub use node_task::start;
pub use report::{NodeInfo, StatusReport};

/// Why the runtime could not do something.
///
/// Messages carry their source's text, since the CLI prints an error on one
/// line; `source()` still gives the typed cause.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The data directory could not be read or written.
    #[error(transparent)]
    Storage(#[from] storage::StorageError),
    /// The chat history could not be opened, read or written.
    #[error(transparent)]
    History(#[from] db::DbError),
    /// The node keeps no history: it runs without a data dir.
    #[error("no chat history: the node runs without --data-dir")]
    NoHistory,
    /// The Noise configuration, hence the TCP/Noise/Yamux transport, could
    /// not be built from the node's key.
    #[error("cannot set up TCP/Noise/Yamux: {0}")]
    Transport(#[source] libp2p::noise::Error),
    /// A network behaviour (mDNS, say) could not be set up.
    #[error("cannot set up behaviours: {0}")]
    Behaviour(#[source] libp2p::BehaviourBuilderError),
    /// Another handler already accepts the skyhop stream protocol.
    #[error("cannot accept {protocol}: {0}", protocol = node_task::PROTOCOL)]
    Accept(#[source] libp2p_stream::AlreadyRegistered),
    /// Listening on an address was refused.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: libp2p::Multiaddr,
        /// Why the transport refused it.
        source: libp2p::TransportError<std::io::Error>,
    },
    /// A listener failed before it reported its address.
    #[error("listener failed: {0}")]
    Listener(#[source] std::io::Error),
    /// A listener closed before it reported its address.
    #[error("a listener closed before reporting its address")]
    ListenerClosed,
    /// The listeners did not report an address in time.
    #[error("listeners did not report an address within {0:?}")]
    ListenTimeout(std::time::Duration),
    /// The core refused the node's configuration.
    #[error("node config: {0}")]
    NodeConfig(#[source] skyhop_core::ConfigError),
    /// The control API was asked to listen beyond loopback.
    #[error("--control {addr}: the control API listens on loopback only (reach it from elsewhere through SSH); use e.g. 127.0.0.1:0")]
    ControlNotLoopback {
        /// The address asked for.
        addr: std::net::SocketAddr,
    },
    /// The control API could not bind its address.
    #[error("--control {addr}: cannot bind: {source}")]
    Control {
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// Why binding failed.
        source: std::io::Error,
    },
    /// The control API's Unix socket could not be bound.
    #[error("control socket {}: {source}", path.display())]
    ControlSocket {
        /// The socket's path.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The node task has stopped.
    #[error("the node has stopped")]
    Stopped,
    /// Text that should name a node is neither an id, a hex prefix of one
    /// nor a name.
    #[error("'{text}' is not a node id, a hex prefix of one or a name (a-z, 0-9, '-', '_', starting with a letter)")]
    NotAnId {
        /// The text given.
        text: String,
    },
    /// No id the node knows starts with the prefix.
    #[error("no known node id starts with '{prefix}'; give the full 64-character id")]
    UnknownPrefix {
        /// The prefix, lowercased.
        prefix: String,
    },
    /// No home supernode knows the name.
    #[error("nobody holds the name '{name}' (its home supernodes know no claim); check the spelling, or give a node id")]
    UnknownName {
        /// The name.
        name: String,
    },
    /// A name lookup could not be made or was not answered.
    #[error("cannot look up the name '{name}': {why}")]
    NameLookup {
        /// The name.
        name: String,
        /// Why.
        why: String,
    },
    /// Who is listed at this node's supernode could not be asked or was
    /// not answered.
    #[error("cannot list who is attached to your supernode: {why}")]
    Who {
        /// Why.
        why: String,
    },
    /// The prefix matches more than one id the node knows.
    #[error("'{prefix}' matches {matches} known ids; type more characters")]
    AmbiguousPrefix {
        /// The prefix, lowercased.
        prefix: String,
        /// How many ids it matches.
        matches: usize,
    },
}

impl RuntimeError {
    /// Whether the caller asked for something that cannot be (a bad id),
    /// rather than the node failing.
    pub fn is_bad_request(&self) -> bool {
        matches!(
            self,
            RuntimeError::NotAnId { .. }
                | RuntimeError::UnknownPrefix { .. }
                | RuntimeError::AmbiguousPrefix { .. }
                | RuntimeError::UnknownName { .. }
                | RuntimeError::NameLookup { .. }
        )
    }
}
