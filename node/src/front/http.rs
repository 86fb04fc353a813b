//! The control API's transport on the client side: one HTTP/1.1 request on
//! hyper's client connection, over the node's Unix socket or loopback TCP
//! with the cookie; the response bounded in size and time, its body JSON.
//! The transport under [`super::client`]; tests use it directly to see the
//! JSON on the wire.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use axum::body::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};

use super::FrontError;

/// Largest response read.
const MAX_RESPONSE: usize = 4 << 20;

/// Where a running node's control API is, and how to be let in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// Its Unix socket: the file's mode is the check.
    Unix(PathBuf),
    /// Loopback TCP, with the cookie from its data dir.
    Tcp {
        /// The address.
        addr: SocketAddr,
        /// The cookie, sent as `Authorization: Bearer`.
        cookie: String,
    },
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Unix(path) => write!(f, "unix:{}", path.display()),
            Endpoint::Tcp { addr, .. } => write!(f, "http://{addr}"),
        }
    }
}

/// Sends `method path` with an optional JSON body to the control API at
/// `endpoint`; returns the status code and the JSON body.
pub async fn request(
    endpoint: &Endpoint,
    method: &str,
    path: &str,
    body: Option<&Value>,
    timeout: Duration,
) -> Result<(u16, Value), FrontError> {
    let at = || endpoint.to_string();
    let mut builder = hyper::Request::builder().method(method).uri(path);
    builder = match endpoint {
        Endpoint::Unix(_) => builder.header(header::HOST, "localhost"),
        Endpoint::Tcp { addr, cookie } => builder
            .header(header::HOST, addr.to_string())
            .header(header::AUTHORIZATION, format!("Bearer {cookie}")),
    };
    let payload = match body {
        Some(b) => {
            builder = builder.header(header::CONTENT_TYPE, "application/json");
            Bytes::from(b.to_string())
        }
        None => Bytes::new(),
    };
    if method == "POST" {
        builder = builder.header(header::CONTENT_LENGTH, payload.len());
    }
    let req = builder
        .body(Full::new(payload))
        .map_err(|_| FrontError::Malformed { endpoint: at() })?;
    let fut = async {
        let io = |source| FrontError::ControlIo {
            endpoint: at(),
            source,
        };
        let unreachable = |source| FrontError::Unreachable {
            endpoint: at(),
            source,
        };
        match endpoint {
            Endpoint::Unix(path) => {
                let s = tokio::net::UnixStream::connect(path)
                    .await
                    .map_err(unreachable)?;
                exchange(s, req).await
            }
            Endpoint::Tcp { addr, .. } => {
                let s = tokio::net::TcpStream::connect(addr)
                    .await
                    .map_err(unreachable)?;
                exchange(s, req).await
            }
        }
        .map_err(|e| match e {
            Exchange::Io(source) => io(source),
            Exchange::Malformed => FrontError::Malformed { endpoint: at() },
        })
    };
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| FrontError::ControlTimeout {
            endpoint: at(),
            timeout,
        })?
}

/// Why one exchange failed.
enum Exchange {
    /// The connection failed.
    Io(std::io::Error),
    /// The answer is not HTTP with a JSON body of bounded size.
    Malformed,
}

async fn exchange<S>(stream: S, req: hyper::Request<Full<Bytes>>) -> Result<(u16, Value), Exchange>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let as_io = |e: hyper::Error| Exchange::Io(std::io::Error::other(e));
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(as_io)?;
    let driver = tokio::spawn(conn);
    let response = sender.send_request(req).await.map_err(as_io)?;
    let status = response.status().as_u16();
    let body = Limited::new(response.into_body(), MAX_RESPONSE)
        .collect()
        .await
        .map_err(|_| Exchange::Malformed)?
        .to_bytes();
    driver.abort();
    let value = serde_json::from_slice(&body).map_err(|_| Exchange::Malformed)?;
    Ok((status, value))
}
