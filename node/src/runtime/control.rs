//! The control API: a tiny, bounded HTTP/1.1 + JSON server on 127.0.0.1 that
//! the CLI (`send`, `status`, `trace`, `chat`) and scripts use to talk to a
//! running node. README.md ("Control API") lists the endpoints.
//!
//! # Implementation notes
//! - One request per connection (`Connection: close`): the clients are
//!   local and few, and it keeps the parser to a request line and headers.
//! - Every read is bounded in size and time; a bad request gets a 4xx with
//!   `{"error": "..."}` and the connection is closed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use super::handle::{NodeHandle, SendOutcome, StatusReport, TraceOutcome};
use super::RuntimeError;
use skyhop_core::Event;

/// Largest request line plus headers.
pub const MAX_HEAD: usize = 16 * 1024;
/// Largest request body.
pub const MAX_BODY: usize = 16 * 1024;
/// Control connections served at once.
const MAX_CONNECTIONS: usize = 64;
/// How long a client may take to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest long-poll of `GET /events`.
pub const EVENTS_WAIT: Duration = Duration::from_secs(25);

/// Binds the control API on `addr` (which must be a loopback address) and
/// serves it in a spawned task. Returns the bound address.
pub async fn serve(
    handle: NodeHandle,
    addr: SocketAddr,
) -> Result<(SocketAddr, JoinHandle<()>), RuntimeError> {
    if !addr.ip().is_loopback() {
        return Err(RuntimeError::Config(format!(
            "--control {addr}: the control API has no authentication and only listens on loopback; use e.g. 127.0.0.1:0"
        )));
    }
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| RuntimeError::Config(format!("--control {addr}: cannot bind: {e}")))?;
    let bound = listener
        .local_addr()
        .map_err(|e| RuntimeError::Config(format!("--control {addr}: {e}")))?;
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

struct Request {
    method: String,
    path: String,
    query: String,
    body: Vec<u8>,
}

struct Response {
    status: u16,
    body: Value,
}

fn error(status: u16, msg: impl Into<String>) -> Response {
    Response {
        status,
        body: json!({ "error": msg.into() }),
    }
}

fn ok(body: Value) -> Response {
    Response { status: 200, body }
}

async fn serve_one(handle: NodeHandle, mut socket: TcpStream) {
    let response = match tokio::time::timeout(READ_TIMEOUT, read_request(&mut socket)).await {
        Ok(Ok(req)) => route(&handle, req).await,
        Ok(Err(resp)) => resp,
        Err(_) => error(408, "request not received in time"),
    };
    let body = response.body.to_string();
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

fn json_body(req: &Request) -> Result<Value, Response> {
    serde_json::from_slice(&req.body).map_err(|e| error(400, format!("body is not JSON: {e}")))
}

fn string_field<'a>(body: &'a Value, name: &str) -> Result<&'a str, Response> {
    body.get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| error(400, format!("missing string field \"{name}\"")))
}

async fn route(handle: &NodeHandle, req: Request) -> Response {
    let result = match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/status") => handle
            .status()
            .await
            .map(|s| ok(status_json(&s)))
            .map_err(stopped),
        ("GET", "/peers") => handle
            .peers()
            .await
            .map(|p| ok(serde_json::to_value(p).unwrap_or(Value::Null)))
            .map_err(stopped),
        ("GET", "/events") => Ok(events(handle, &req.query).await),
        ("POST", "/send") => send(handle, &req).await,
        ("POST", "/trace") => trace(handle, &req).await,
        (_, "/status" | "/peers" | "/events" | "/send" | "/trace") => Err(error(
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
    match e {
        RuntimeError::BadRequest(m) => error(400, m),
        other => stopped(other),
    }
}

async fn send(handle: &NodeHandle, req: &Request) -> Result<Response, Response> {
    let body = json_body(req)?;
    let to = handle
        .resolve(string_field(&body, "to")?)
        .await
        .map_err(resolve_error)?;
    let text = string_field(&body, "text")?.to_string();
    let outcome = handle.send_chat(to, text).await.map_err(stopped)?;
    Ok(ok(send_json(to, &outcome)))
}

/// The JSON of a send outcome.
pub fn send_json(to: skyhop_protocol::NodeId, outcome: &SendOutcome) -> Value {
    match outcome {
        SendOutcome::Delivered { hops, latency } => json!({
            "to": to.to_hex(),
            "delivered": true,
            "hops": hops,
            "latency_ms": *latency as f64 / 1000.0,
        }),
        SendOutcome::Failed(reason) => json!({
            "to": to.to_hex(),
            "delivered": false,
            "reason": reason,
        }),
    }
}

async fn trace(handle: &NodeHandle, req: &Request) -> Result<Response, Response> {
    let body = json_body(req)?;
    let to = handle
        .resolve(string_field(&body, "to")?)
        .await
        .map_err(resolve_error)?;
    let outcome = handle.trace(to).await.map_err(stopped)?;
    Ok(ok(match outcome {
        TraceOutcome::Completed { path, rtt } => json!({
            "to": to.to_hex(),
            "ok": true,
            "path": path.iter().map(|p| p.to_hex()).collect::<Vec<_>>(),
            "hops": path.len().saturating_sub(1),
            "rtt_ms": rtt as f64 / 1000.0,
        }),
        TraceOutcome::Failed(reason) => json!({
            "to": to.to_hex(),
            "ok": false,
            "reason": reason,
        }),
    }))
}

async fn events(handle: &NodeHandle, query: &str) -> Response {
    let mut since = 0u64;
    let mut wait = EVENTS_WAIT;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("since", v)) => match v.parse() {
                Ok(n) => since = n,
                Err(_) => return error(400, format!("since={v}: not a number")),
            },
            Some(("wait", v)) => match v.parse::<u64>() {
                Ok(s) => wait = Duration::from_secs(s).min(EVENTS_WAIT),
                Err(_) => return error(400, format!("wait={v}: not a number of seconds")),
            },
            _ => return error(400, format!("unknown query parameter {pair:?}")),
        }
    }
    let list = handle.events().wait_since(since, wait).await;
    let next = list
        .last()
        .map(|(s, _)| *s)
        .unwrap_or(since.min(handle.events().newest()));
    ok(json!({
        "next": next,
        "events": list.iter().map(|(seq, e)| event_json(*seq, e)).collect::<Vec<_>>(),
    }))
}

/// The JSON of one logged event, ids in hex.
pub fn event_json(seq: u64, e: &Event) -> Value {
    let mut v = serde_json::to_value(e).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut v {
        map.insert("seq".into(), json!(seq));
    }
    v
}

/// The JSON of `GET /status`: the core status plus who the node is.
pub fn status_json(s: &StatusReport) -> Value {
    let mut v = serde_json::to_value(&s.status).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut v {
        map.insert("peer_id".into(), json!(s.info.peer_id.to_string()));
        map.insert("listen_addrs".into(), json!(s.info.listen_addrs));
        map.insert("dropped_frames".into(), json!(s.dropped_frames));
        map.insert("connected_peers".into(), json!(s.connected_peers));
    }
    v
}
