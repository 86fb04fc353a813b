//! The real runtime: a tokio task per node owning a libp2p swarm (TCP +
//! Noise + Yamux, identify, ping, optional mDNS) and a [`skyhop_core::Node`],
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
//! - [`control`]: the HTTP control server, [`api`]: its typed requests and
//!   replies;
//! - [`storage`]: key file, host cache, control-address file.

pub mod api;
pub mod clock;
pub mod control;
pub mod events_log;
pub mod handle;
pub mod link;
pub mod node_task;
pub mod storage;

#[cfg(test)]
pub(crate) mod tests;

pub use handle::{
    KnownPeers, MdnsMode, NodeHandle, NodeInfo, NodeOptions, SendOutcome, StatusReport,
    TraceOutcome,
};
pub use node_task::start;

/// Why the runtime could not do something.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// A configuration value or flag is invalid.
    #[error("{0}")]
    Config(String),
    /// The data directory could not be read or written.
    #[error("{0}")]
    Storage(String),
    /// The libp2p transport could not be set up.
    #[error("{0}")]
    Transport(String),
    /// The node task has stopped.
    #[error("the node has stopped")]
    Stopped,
    /// A request to the node is invalid.
    #[error("{0}")]
    BadRequest(String),
    /// Talking to a running node's control API failed.
    #[error("{0}")]
    Control(String),
}
