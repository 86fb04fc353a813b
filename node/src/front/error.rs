//! [`FrontError`]: why a `skyhop` command failed, in words that tell the
//! user what to fix. The runtime's own errors pass through as
//! [`FrontError::Runtime`].

use std::path::PathBuf;
use std::time::Duration;

use crate::runtime::storage::StorageError;
use crate::runtime::RuntimeError;

/// Why a command failed.
///
/// Messages carry their source's text, since the CLI prints an error on one
/// line; `source()` still gives the typed cause.
#[derive(Debug, thiserror::Error)]
pub enum FrontError {
    /// The name this node claims is held by another key.
    #[error("name '{name}' is taken by key {}...; choose another --name", &holder.to_hex()[..12])]
    NameTaken {
        /// The name.
        name: String,
        /// The node id of the key that holds it.
        holder: skyhop_protocol::NodeId,
    },
    /// A flag (or the same key in `--config`) has a value that cannot work.
    #[error("{flag} '{value}': {problem}; {fix}")]
    BadFlag {
        /// The flag, e.g. `--listen`.
        flag: &'static str,
        /// The value given.
        value: String,
        /// What is wrong with it.
        problem: &'static str,
        /// What would work instead.
        fix: &'static str,
    },
    /// The `--config` file could not be read.
    #[error("--config {}: cannot read: {source}", path.display())]
    ConfigRead {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The `--config` file is not valid TOML of the known keys.
    #[error("--config {}: {source}", path.display())]
    ConfigParse {
        /// The file.
        path: PathBuf,
        /// What the TOML parser says (it names an unknown key).
        source: toml::de::Error,
    },
    /// The core tunables, after flags and file, are invalid.
    #[error("{0} (check --max-clients and the [node] table)")]
    NodeConfig(#[source] skyhop_core::ConfigError),
    /// A command that talks to a running node was not told which one.
    #[error(
        "which node? give --data-dir DIR (of a running `skyhop run`) or --control 127.0.0.1:PORT with --cookie FILE"
    )]
    NoTarget,
    /// The data dir has no control socket (nor TCP address).
    #[error("no control socket at {}: is `skyhop run --data-dir` running with this directory, and may you read it?", socket.display())]
    NotRunning {
        /// Where the socket would be.
        socket: std::path::PathBuf,
    },
    /// `--control` was given without a way to find the cookie.
    #[error("--control needs the node's cookie: give --cookie <data-dir>/control.cookie or --data-dir DIR")]
    NoCookie,
    /// `skyhop run --control` without a data dir to keep the cookie in.
    #[error("--control needs --data-dir: the cookie clients must send is written there")]
    ControlWithoutDataDir,
    /// The tokio runtime could not start.
    #[error("cannot start tokio: {0}")]
    Tokio(#[source] std::io::Error),
    /// Nothing listens at the control address.
    #[error(
        "cannot reach the node's control API at {endpoint}: {source}; is `skyhop run` running?"
    )]
    Unreachable {
        /// The control endpoint.
        endpoint: String,
        /// Why the connection failed.
        source: std::io::Error,
    },
    /// Writing the request or reading the answer failed.
    #[error("control API at {endpoint}: {source}")]
    ControlIo {
        /// The control endpoint.
        endpoint: String,
        /// Why.
        source: std::io::Error,
    },
    /// The control API did not answer in time.
    #[error("control API at {endpoint} did not answer in {timeout:?}")]
    ControlTimeout {
        /// The control endpoint.
        endpoint: String,
        /// How long the client waited.
        timeout: Duration,
    },
    /// The answer was not HTTP with a JSON body.
    #[error("control API at {endpoint} sent a malformed response")]
    Malformed {
        /// The control endpoint.
        endpoint: String,
    },
    /// The answer's JSON is not the reply the request expects.
    #[error("control API at {endpoint} answered {path} with an unexpected reply: {source}")]
    UnexpectedReply {
        /// The control endpoint.
        endpoint: String,
        /// The path asked.
        path: &'static str,
        /// What did not fit.
        source: serde_json::Error,
    },
    /// The node refused the request; its message says why.
    #[error("{message}")]
    Refused {
        /// The HTTP status of the answer.
        status: u16,
        /// The node's `error` text.
        message: String,
    },
    /// `skyhop send`: the message was not delivered.
    #[error("failed: {reason}")]
    NotDelivered {
        /// Why, as the node reports it.
        reason: String,
    },
    /// `skyhop trace`: no path came back.
    #[error("trace failed: {reason}")]
    TraceFailed {
        /// Why, as the node reports it.
        reason: String,
    },
    /// `skyhop ping`: no probe came back.
    #[error("all {sent} probes lost: {reason}")]
    PingLost {
        /// Probes sent.
        sent: u32,
        /// Why the last one was lost.
        reason: String,
    },
    /// `skyhop demo` was asked for an overlay with no supernode or fewer
    /// than two nodes.
    #[error("--supernodes must be at least 1 and there must be two nodes to chat")]
    DemoTooSmall,
    /// `skyhop demo` was asked for more nodes than it starts.
    #[error("at most {max} nodes in the demo; use `skyhop sim` for more")]
    DemoTooLarge {
        /// The most it starts.
        max: usize,
    },
    /// A demo node reported no listen address to bootstrap from.
    #[error("node {node} has no listen address")]
    NoListenAddr {
        /// The node's short id.
        node: String,
    },
    /// `skyhop demo`: not every message was delivered.
    #[error("only {delivered} of {sent} messages were delivered")]
    DemoUndelivered {
        /// Messages delivered.
        delivered: usize,
        /// Messages sent.
        sent: usize,
    },
    /// The runtime failed.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

impl From<StorageError> for FrontError {
    fn from(e: StorageError) -> FrontError {
        FrontError::Runtime(e.into())
    }
}
