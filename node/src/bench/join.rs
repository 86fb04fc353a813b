//! `skyhop bench join` and `skyhop bench nodes`.

use clap::Args;

use super::BenchError;

/// `skyhop bench join`.
#[derive(Args, Debug, Clone)]
pub struct JoinArgs {
    /// Ordinary nodes that join.
    #[arg(long, default_value_t = 100)]
    pub nodes: usize,
}

/// `skyhop bench nodes`.
#[derive(Args, Debug, Clone)]
pub struct NodesArgs {
    /// Supernodes.
    #[arg(long, default_value_t = 20)]
    pub supernodes: usize,
    /// Ordinary nodes.
    #[arg(long, default_value_t = 1000)]
    pub nodes: usize,
}

/// Runs `skyhop bench join`.
pub async fn run_join(_args: JoinArgs) -> Result<(), BenchError> {
    Err(BenchError::Setup("not yet".into()))
}

/// Runs `skyhop bench nodes`.
pub async fn run_nodes(_args: NodesArgs) -> Result<(), BenchError> {
    Err(BenchError::Setup("not yet".into()))
}
