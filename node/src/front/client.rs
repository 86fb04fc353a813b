//! The control-API client: which running node a command means ([`Target`])
//! and one typed call to its control API (`call`), over the small HTTP
//! transport in [`super::http`]. The requests and replies are the runtime's
//! [`crate::runtime::api`] types, the same the server uses.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::http;
use super::FrontError;
use crate::runtime::api::{ErrorReply, Method, Request};
use crate::runtime::storage;

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
pub fn control_addr(target: &Target) -> Result<SocketAddr, FrontError> {
    match (&target.control, &target.data_dir) {
        (Some(c), _) => c.parse().map_err(|_| FrontError::BadFlag {
            flag: "--control",
            value: c.clone(),
            problem: "not an address",
            fix: "expected e.g. 127.0.0.1:7000",
        }),
        (None, Some(dir)) => Ok(storage::read_control_addr(dir)?),
        (None, None) => Err(FrontError::NoTarget),
    }
}

/// Sends `request` to the control API at `addr` and reads its reply; an
/// answer other than 200 is an error carrying the node's message.
pub(super) async fn call<R: Request>(
    addr: SocketAddr,
    request: &R,
    timeout: Duration,
) -> Result<R::Reply, FrontError> {
    let query = request.query();
    let target = if query.is_empty() {
        R::PATH.to_string()
    } else {
        format!("{}?{query}", R::PATH)
    };
    let body = match R::METHOD {
        Method::Get => None,
        // The requests are plain structs of strings and numbers.
        Method::Post => {
            Some(serde_json::to_value(request).expect("control API requests serialize"))
        }
    };
    let (status, value) =
        http::request(addr, R::METHOD.as_str(), &target, body.as_ref(), timeout).await?;
    if status != 200 {
        let message = serde_json::from_value::<ErrorReply>(value)
            .map_or_else(|_| "unknown error".to_string(), |e| e.error);
        return Err(FrontError::Refused { status, message });
    }
    serde_json::from_value(value).map_err(|source| FrontError::UnexpectedReply {
        addr,
        path: R::PATH,
        source,
    })
}
