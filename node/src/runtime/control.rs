//! The control API server: a tiny, bounded HTTP/1.1 + JSON server on
//! 127.0.0.1 that the front's commands (`send`, `status`, `trace`, `chat`)
//! and scripts use to talk to a running node. The requests and replies are
//! the types of [`super::api`]; README.md ("Control API") lists the endpoints.
//!
//! # Implementation notes
//! - One request per connection (`Connection: close`): the clients are
//!   local and few, and it keeps the parser to a request line and headers.
//! - Every read is bounded in size and time; a bad request gets a 4xx with
//!   `{"error": "..."}` and the connection is closed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use super::api::{
    self, ErrorReply, EventsRequest, SendReply, SendRequest, TraceReply, TraceRequest, EVENTS_PATH,
    PEERS_PATH, SEND_PATH, STATUS_PATH, TRACE_PATH,
};
use super::handle::NodeHandle;
use super::RuntimeError;

/// Largest request line plus headers.
pub const MAX_HEAD: usize = 16 * 1024;
/// Largest request body.
pub const MAX_BODY: usize = 16 * 1024;
/// Control connections served at once.
const MAX_CONNECTIONS: usize = 64;
/// How long a client may take to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Binds the control API on `addr` (which must be a loopback address) and
/// serves it in a spawned task. Returns the bound address.
pub async fn serve(
    handle: NodeHandle,
    addr: SocketAddr,
) -> Result<(SocketAddr, JoinHandle<()>), RuntimeError> {
    if !addr.ip().is_loopback() {
        return Err(RuntimeError::ControlNotLoopback { addr });
    }
    let control = |source| RuntimeError::Control { addr, source };
    let listener = TcpListener::bind(addr).await.map_err(control)?;
    let bound = listener.local_addr().map_err(control)?;
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let task = tokio::spawn(async move {
        loop {
            let socket = match listener.accept().await {
                Ok((socket, _)) => socket,
                Err(e) => {
                    // Out of file descriptors, say: wait instead of spinning.
                    tracing::warn!("control API accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                drop(socket); // Too many at once: the client retries.
                continue;
            };
            let handle = handle.clone();
            tokio::spawn(async move {
                serve_one(handle, socket).await;
                drop(permit);
            });
        }
    });
    Ok((bound, task))
}

/// A request as read off the socket.
struct Request {
    /// `GET`, `POST`, ...
    method: String,
    /// The path, without the query.
    path: String,
    /// The query string, without the `?`.
    query: String,
    /// The body (at most [`MAX_BODY`] bytes).
    body: Vec<u8>,
}

/// An answer, ready to write.
struct Response {
    /// The HTTP status code.
    status: u16,
    /// The JSON body.
    body: String,
}

fn reply(status: u16, value: &impl Serialize) -> Response {
    Response {
        status,
        // The API types have string keys and plain fields only.
        body: serde_json::to_string(value).expect("control API replies serialize"),
    }
}

fn error(status: u16, msg: impl Into<String>) -> Response {
    reply(status, &ErrorReply { error: msg.into() })
}

fn ok(value: &impl Serialize) -> Response {
    reply(200, value)
}

async fn serve_one(handle: NodeHandle, mut socket: TcpStream) {
    let response = match tokio::time::timeout(READ_TIMEOUT, read_request(&mut socket)).await {
        Ok(Ok(req)) => route(&handle, req).await,
        Ok(Err(resp)) => resp,
        Err(_) => error(408, "request not received in time"),
    };
    let body = response.body;
    let reason = match response.status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Payload Too Large",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    };
    let head = format!(
        "HTTP/1.1 {} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        response.status,
        body.len()
    );
    let _ = socket.write_all(head.as_bytes()).await;
    let _ = socket.write_all(body.as_bytes()).await;
    let _ = socket.shutdown().await;
}

async fn read_request(socket: &mut TcpStream) -> Result<Request, Response> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(pos) = find(&buf, b"\r\n\r\n") {
            break pos;
        }
        if buf.len() > MAX_HEAD {
            return Err(error(431, format!("request head over {MAX_HEAD} bytes")));
        }
        let n = socket
            .read(&mut chunk)
            .await
            .map_err(|e| error(400, format!("read failed: {e}")))?;
        if n == 0 {
            return Err(error(400, "connection closed before the request ended"));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    if head_end > MAX_HEAD {
        return Err(error(431, format!("request head over {MAX_HEAD} bytes")));
    }
    let head = std::str::from_utf8(&buf[..head_end])
        .map_err(|_| error(400, "request head is not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or("");
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(error(400, format!("bad request line {request_line:?}")));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(error(400, format!("unsupported version {version:?}")));
    }
    let mut content_length = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Err(error(400, format!("bad header line {line:?}")));
        };
        if name.trim().eq_ignore_ascii_case("content-length") {
            let n: usize = value
                .trim()
                .parse()
                .map_err(|_| error(400, "Content-Length is not a number"))?;
            content_length = Some(n);
        }
        if name.trim().eq_ignore_ascii_case("transfer-encoding") {
            return Err(error(
                411,
                "chunked bodies are not accepted; send Content-Length",
            ));
        }
    }
    let mut body = buf[head_end + 4..].to_vec();
    match (method, content_length) {
        ("POST", None) => return Err(error(411, "POST needs a Content-Length header")),
        (_, Some(n)) if n > MAX_BODY => {
            return Err(error(
                413,
                format!("body of {n} bytes, the limit is {MAX_BODY}"),
            ))
        }
        (_, Some(n)) => {
            while body.len() < n {
                let got = socket
                    .read(&mut chunk)
                    .await
                    .map_err(|e| error(400, format!("read failed: {e}")))?;
                if got == 0 {
                    return Err(error(400, "connection closed before the body ended"));
                }
                body.extend_from_slice(&chunk[..got]);
            }
            body.truncate(n);
        }
        (_, None) => body.clear(),
    }
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, q),
        None => (target, ""),
    };
    Ok(Request {
        method: method.to_string(),
        path: path.to_string(),
        query: query.to_string(),
        body,
    })
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn json_body<T: DeserializeOwned>(req: &Request) -> Result<T, Response> {
    serde_json::from_slice(&req.body)
        .map_err(|e| error(400, format!("bad body for {}: {e}", req.path)))
}

async fn route(handle: &NodeHandle, req: Request) -> Response {
    let result = match (req.method.as_str(), req.path.as_str()) {
        ("GET", STATUS_PATH) => handle
            .status()
            .await
            .map(|s| ok(&api::Status::from(&s)))
            .map_err(stopped),
        ("GET", PEERS_PATH) => handle.peers().await.map(|p| ok(&p)).map_err(stopped),
        ("GET", EVENTS_PATH) => Ok(events(handle, &req.query).await),
        ("POST", SEND_PATH) => send(handle, &req).await,
        ("POST", TRACE_PATH) => trace(handle, &req).await,
        (_, STATUS_PATH | PEERS_PATH | EVENTS_PATH | SEND_PATH | TRACE_PATH) => Err(error(
            405,
            format!("{} is not allowed on {}", req.method, req.path),
        )),
        _ => Err(error(404, format!("no endpoint {}", req.path))),
    };
    result.unwrap_or_else(|e| e)
}

fn stopped(e: RuntimeError) -> Response {
    error(503, e.to_string())
}

fn resolve_error(e: RuntimeError) -> Response {
    if e.is_bad_request() {
        error(400, e.to_string())
    } else {
        stopped(e)
    }
}

async fn send(handle: &NodeHandle, req: &Request) -> Result<Response, Response> {
    let body: SendRequest = json_body(req)?;
    let to = handle.resolve(&body.to).await.map_err(resolve_error)?;
    let outcome = handle.send_chat(to, body.text).await.map_err(stopped)?;
    Ok(ok(&SendReply { to, outcome }))
}

async fn trace(handle: &NodeHandle, req: &Request) -> Result<Response, Response> {
    let body: TraceRequest = json_body(req)?;
    let to = handle.resolve(&body.to).await.map_err(resolve_error)?;
    let outcome = handle.trace(to).await.map_err(stopped)?;
    Ok(ok(&TraceReply { to, outcome }))
}

async fn events(handle: &NodeHandle, query: &str) -> Response {
    let request = match EventsRequest::parse(query) {
        Ok(r) => r,
        Err(e) => return error(400, e),
    };
    let since = request.since;
    let list = handle.events().wait_since(since, request.wait()).await;
    let next = list
        .last()
        .map(|(s, _)| *s)
        .unwrap_or(since.min(handle.events().newest()));
    ok(&api::Events {
        next,
        events: list
            .iter()
            .map(|(seq, e)| api::LoggedEvent {
                seq: *seq,
                event: api::Event::from(e),
            })
            .collect(),
    })
}
