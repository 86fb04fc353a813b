//! The control-API client: which running node a command means ([`Target`])
//! and one call to its control API, over the small HTTP transport in
//! [`super::http`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use serde_json::Value;

use super::http;
use crate::runtime::{storage, RuntimeError};

/// How long a plain control request may take.
pub(super) const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a send or trace request may take (chat deadline plus margin).
pub(super) const SEND_TIMEOUT: Duration = Duration::from_secs(40);

/// Where to find a running node: its data directory or its control address.
#[derive(Args, Debug, Clone, Default)]
pub struct Target {
    /// Data directory of the running node (its control address is read from it).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Control API address of the running node, e.g. 127.0.0.1:7000.
    #[arg(long)]
    pub control: Option<String>,
}

/// The control address of the node `target` names.
pub fn control_addr(target: &Target) -> Result<SocketAddr, RuntimeError> {
    match (&target.control, &target.data_dir) {
        (Some(c), _) => c.parse().map_err(|_| {
            RuntimeError::Config(format!(
                "--control '{c}': not an address; expected e.g. 127.0.0.1:7000"
            ))
        }),
        (None, Some(dir)) => storage::read_control_addr(dir),
        (None, None) => Err(RuntimeError::Config(
            "which node? give --data-dir DIR (of a running `skyhop run`) or --control 127.0.0.1:PORT"
                .into(),
        )),
    }
}

pub(super) async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<Value>,
    timeout: Duration,
) -> Result<Value, RuntimeError> {
    let (status, value) = http::request(addr, method, path, body.as_ref(), timeout).await?;
    if status != 200 {
        let msg = value
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("unknown error");
        return Err(RuntimeError::Control(msg.to_string()));
    }
    Ok(value)
}
