//! The control-API client: which running node a command means ([`Target`])
//! and one typed call to its control API (`call`), over the small HTTP
//! transport in [`super::http`]. The requests and replies are the runtime's
//! [`crate::runtime::api`] types, the same the server uses.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::http;
pub use super::http::Endpoint;
use super::FrontError;
use crate::runtime::api::{ErrorReply, Method, Request};
use crate::runtime::storage;

/// How long a plain control request may take.
pub(super) const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a send or trace request may take (chat deadline plus margin).
pub(super) const SEND_TIMEOUT: Duration = Duration::from_secs(40);

/// Where to find a running node: its data directory (its Unix socket, or
/// its TCP address and cookie) or a loopback TCP address and a cookie file.
#[derive(Args, Debug, Clone, Default)]
pub struct Target {
    /// Data directory of the running node.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Loopback TCP address of the node's control API, e.g. 127.0.0.1:7000
    /// (needs its cookie: --cookie, or --data-dir).
    #[arg(long)]
    pub control: Option<String>,
    /// The node's cookie file (`<data-dir>/control.cookie`), for --control.
    #[arg(long)]
    pub cookie: Option<PathBuf>,
}

/// The control endpoint of the node `target` names: with a data dir, its
/// Unix socket if it serves one, else its TCP address and cookie.
pub fn endpoint(target: &Target) -> Result<Endpoint, FrontError> {
    let tcp = |addr, dir: Option<&PathBuf>| {
        let cookie_file = match (&target.cookie, dir) {
            (Some(f), _) => f.clone(),
            (None, Some(d)) => d.join(storage::COOKIE_FILE),
            (None, None) => return Err(FrontError::NoCookie),
        };
        Ok(Endpoint::Tcp {
            addr,
            cookie: storage::read_cookie(&cookie_file)?,
        })
    };
    match (&target.control, &target.data_dir) {
        (Some(c), dir) => {
            let addr = c.parse().map_err(|_| FrontError::BadFlag {
                flag: "--control",
                value: c.clone(),
                problem: "not an address",
                fix: "expected e.g. 127.0.0.1:7000",
            })?;
            tcp(addr, dir.as_ref())
        }
        (None, Some(dir)) => {
            let socket = dir.join(storage::CONTROL_SOCKET);
            if socket.exists() {
                Ok(Endpoint::Unix(socket))
            } else if dir.join(storage::CONTROL_FILE).exists() {
                tcp(storage::read_control_addr(dir)?, Some(dir))
            } else {
                Err(FrontError::NotRunning { socket })
            }
        }
        (None, None) => Err(FrontError::NoTarget),
    }
}

/// Sends `request` to the control API at `endpoint` and reads its reply; an
/// answer other than 200 is an error carrying the node's message.
pub(super) async fn call<R: Request>(
    endpoint: &Endpoint,
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
    let (status, value) = http::request(
        endpoint,
        R::METHOD.as_str(),
        &target,
        body.as_ref(),
        timeout,
    )
    .await?;
    if status != 200 {
        let message = serde_json::from_value::<ErrorReply>(value)
            .map_or_else(|_| "unknown error".to_string(), |e| e.error);
        return Err(FrontError::Refused { status, message });
    }
    serde_json::from_value(value).map_err(|source| FrontError::UnexpectedReply {
        endpoint: endpoint.to_string(),
        path: R::PATH,
        source,
    })
}
