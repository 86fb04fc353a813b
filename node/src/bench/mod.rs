//! `skyhop bench`: performance side by side on loopback.
//!
//! - [`relay`]: `skyhop bench relay`, what one relay hop costs against a
//!   raw TCP forwarder, a blind copy and libp2p's circuit relay v2;
//! - [`join`]: `skyhop bench join` (join-to-routable times) and
//!   `skyhop bench nodes` (many real nodes in one process: memory, joins,
//!   chats);
//! - [`party`]: the relay processes (`skyhop bench-party`);
//! - [`wire`]: the frames and the two endpoints every path shares;
//! - [`p2p`]: libp2p endpoints (a wire-level skyhop ordinary node, circuit
//!   relay server and clients).
//!
//! Benchmarks read the clock; every function that does says so with an
//! `#[allow(clippy::disallowed_methods)]`.

pub mod join;
pub mod p2p;
pub mod party;
pub mod relay;
pub mod wire;

use clap::{Args, Subcommand};

use crate::runtime::RuntimeError;

/// Why a benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// Setting up a path, process or node failed.
    #[error("setup: {0}")]
    Setup(String),
    /// Reading or writing a socket failed.
    #[error("i/o: {0}")]
    Io(String),
    /// The runtime refused.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

/// `skyhop bench`.
#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// Which benchmark.
    #[command(subcommand)]
    pub which: BenchKind,
}

/// The benchmarks.
#[derive(Subcommand, Debug, Clone)]
pub enum BenchKind {
    /// Relay cost per hop: skyhop vs raw TCP forwarder, blind copy, circuit relay v2.
    Relay(relay::RelayArgs),
    /// Join-to-routable time of ordinary nodes joining a running overlay.
    Join(join::JoinArgs),
    /// Many real nodes in one process: joins, chats, resident memory.
    Nodes(join::NodesArgs),
}

fn runtime() -> Result<tokio::runtime::Runtime, BenchError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| BenchError::Setup(format!("tokio runtime: {e}")))
}

/// Runs `skyhop bench ...`.
pub fn run(args: BenchArgs) -> Result<(), BenchError> {
    let rt = runtime()?;
    match args.which {
        BenchKind::Relay(a) => rt.block_on(relay::run(a)),
        BenchKind::Join(a) => rt.block_on(join::run_join(a)),
        BenchKind::Nodes(a) => rt.block_on(join::run_nodes(a)),
    }
}

/// Runs `skyhop bench-party ...` (a relay process of `bench relay`).
pub fn party(args: party::PartyArgs) -> Result<(), BenchError> {
    runtime()?.block_on(party::run(args))
}

/// The process exit code for a benchmark's result, printing the error.
pub fn exit_code(result: Result<(), BenchError>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("skyhop bench: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
