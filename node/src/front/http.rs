//! A tiny HTTP/1.1 client for the control API: one request per connection,
//! bounded response size and time, the body as JSON. The transport under
//! [`super::client`]; tests use it directly to see the JSON on the wire.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::FrontError;

/// Largest response read.
const MAX_RESPONSE: u64 = 4 << 20;

/// Sends `method path` with an optional JSON body to the control API at
/// `addr`; returns the status code and the JSON body.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&Value>,
    timeout: Duration,
) -> Result<(u16, Value), FrontError> {
    let fut = async {
        let mut socket = TcpStream::connect(addr)
            .await
            .map_err(|source| FrontError::Unreachable { addr, source })?;
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let io = |source| FrontError::ControlIo { addr, source };
        socket.write_all(req.as_bytes()).await.map_err(io)?;
        let mut raw = Vec::new();
        (&mut socket)
            .take(MAX_RESPONSE)
            .read_to_end(&mut raw)
            .await
            .map_err(io)?;
        parse_response(addr, &raw)
    };
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| FrontError::ControlTimeout { addr, timeout })?
}

fn parse_response(addr: SocketAddr, raw: &[u8]) -> Result<(u16, Value), FrontError> {
    let bad = || FrontError::Malformed { addr };
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(bad)?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| bad())?;
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(bad)?;
    let body = serde_json::from_slice(&raw[end + 4..]).map_err(|_| bad())?;
    Ok((status, body))
}
