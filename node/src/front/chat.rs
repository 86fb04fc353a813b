//! `skyhop chat`: an interactive prompt against a running node's control
//! API. A line sends to the current peer and reports "sent", then
//! "delivered (N hops, X ms)" or "failed: reason"; incoming messages are
//! printed with the sender's short id as they arrive (long-poll of
//! `/events`).

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;
use serde_json::{json, Value};

use super::client::{call, control_addr, Target, REQUEST_TIMEOUT, SEND_TIMEOUT};
use super::describe::{describe_send, describe_status, describe_trace, short, short_ids};
use super::process::tokio_runtime;
use crate::runtime::control::EVENTS_WAIT;
use crate::runtime::RuntimeError;

/// `skyhop chat`.
#[derive(Args, Debug, Clone)]
pub struct ChatArgs {
    /// The running node.
    #[command(flatten)]
    pub target: Target,
    /// Peer to talk to first (id or unique prefix).
    #[arg(long)]
    pub to: Option<String>,
}

/// `skyhop chat`: an interactive prompt against a running node.
pub fn chat(args: ChatArgs) -> Result<(), RuntimeError> {
    let addr = control_addr(&args.target)?;
    tokio_runtime()?.block_on(chat_loop(addr, args.to))
}

/// Runs the prompt until `/quit` or the end of input.
async fn chat_loop(addr: SocketAddr, first: Option<String>) -> Result<(), RuntimeError> {
    let me = call(addr, "GET", "/status", None, REQUEST_TIMEOUT).await?;
    let my_id = me
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    println!(
        "chatting as {} ({}). Commands: /to ID, /who, /trace ID, /status, /quit",
        short(&my_id),
        me.get("role").and_then(Value::as_str).unwrap_or("?")
    );
    // Start from the newest event: only messages arriving from now on.
    let start = call(addr, "GET", "/events?since=0&wait=0", None, REQUEST_TIMEOUT).await?;
    let since = start.get("next").and_then(Value::as_u64).unwrap_or(0);
    let printer = tokio::spawn(print_incoming(addr, since));
    let mut peer: Option<String> = None;
    if let Some(t) = first {
        peer = resolve(addr, &t).await;
    }
    let mut sending = Vec::new();
    let mut lines = stdin_lines();
    while let Some(line) = lines.recv().await {
        let line = line.trim().to_string();
        if line.is_empty() {
            continue;
        }
        let (cmd, rest) = match line.split_once(' ') {
            Some((c, r)) => (c, r.trim()),
            None => (line.as_str(), ""),
        };
        match cmd {
            "/quit" | "/exit" => break,
            "/to" => {
                if let Some(id) = resolve(addr, rest).await {
                    peer = Some(id);
                }
            }
            "/who" => who(addr).await,
            "/status" => match call(addr, "GET", "/status", None, REQUEST_TIMEOUT).await {
                Ok(v) => print!("{}", describe_status(&v)),
                Err(e) => println!("error: {e}"),
            },
            "/trace" => {
                let target = if rest.is_empty() {
                    peer.clone().unwrap_or_default()
                } else {
                    rest.to_string()
                };
                match call(
                    addr,
                    "POST",
                    "/trace",
                    Some(json!({ "to": target })),
                    SEND_TIMEOUT,
                )
                .await
                {
                    Ok(v) => println!("{}", describe_trace(&v).1),
                    Err(e) => println!("error: {e}"),
                }
            }
            c if c.starts_with('/') => {
                println!("unknown command {c}; try /to, /who, /trace, /status, /quit")
            }
            _ => {
                let Some(to) = peer.clone() else {
                    println!("no peer yet: /to ID (see /who)");
                    continue;
                };
                println!("sent");
                // Each message waits for its outcome on its own, so typing goes on.
                sending.retain(|h: &tokio::task::JoinHandle<()>| !h.is_finished());
                sending.push(tokio::spawn(async move {
                    let body = json!({ "to": to, "text": line });
                    match call(addr, "POST", "/send", Some(body), SEND_TIMEOUT).await {
                        Ok(v) => println!("{}", describe_send(&v).1),
                        Err(e) => println!("failed: {e}"),
                    }
                }));
            }
        }
    }
    // Input ended: let the messages in flight report their outcome.
    let _ = tokio::time::timeout(SEND_TIMEOUT, futures::future::join_all(sending)).await;
    printer.abort();
    Ok(())
}

/// Lines of stdin, read on a plain thread (stdin is blocking).
fn stdin_lines() -> tokio::sync::mpsc::Receiver<String> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    rx
}

async fn resolve(addr: SocketAddr, text: &str) -> Option<String> {
    // The node resolves prefixes; a trace-free way to ask is /peers.
    let peers = match call(addr, "GET", "/peers", None, REQUEST_TIMEOUT).await {
        Ok(v) => v,
        Err(e) => {
            println!("error: {e}");
            return None;
        }
    };
    let text = text.trim().to_ascii_lowercase();
    if text.len() == 64 && text.chars().all(|c| c.is_ascii_hexdigit()) {
        println!("talking to {}", short(&text));
        return Some(text);
    }
    let mut found: Vec<String> = peer_ids(&peers)
        .into_iter()
        .filter(|id| !text.is_empty() && id.starts_with(&text))
        .collect();
    found.dedup();
    match found.as_slice() {
        [one] => {
            println!("talking to {}", short(one));
            Some(one.clone())
        }
        [] => {
            println!("no known node id starts with '{text}' (see /who)");
            None
        }
        many => {
            println!("'{text}' matches {} ids; type more characters", many.len());
            None
        }
    }
}

fn peer_ids(peers: &Value) -> Vec<String> {
    let mut all: Vec<String> = ["clients", "neighbors", "links", "host_cache", "recent"]
        .iter()
        .filter_map(|k| peers.get(*k).and_then(Value::as_array))
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect();
    all.sort();
    all.dedup();
    all
}

async fn who(addr: SocketAddr) {
    match call(addr, "GET", "/peers", None, REQUEST_TIMEOUT).await {
        Ok(v) => {
            for k in ["clients", "neighbors", "links", "recent"] {
                let ids = short_ids(&v, k);
                if !ids.is_empty() {
                    println!("{k:10} {}", ids.join(" "));
                }
            }
        }
        Err(e) => println!("error: {e}"),
    }
}

async fn print_incoming(addr: SocketAddr, mut since: u64) {
    loop {
        let path = format!("/events?since={since}");
        match call(addr, "GET", &path, None, EVENTS_WAIT + REQUEST_TIMEOUT).await {
            Ok(v) => {
                for e in v
                    .get("events")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    if e.get("event").and_then(Value::as_str) == Some("chat_received") {
                        let from = e.get("from").and_then(Value::as_str).unwrap_or("?");
                        let body = e.get("body").and_then(Value::as_str).unwrap_or("");
                        println!("[{}] {body}", short(from));
                    }
                }
                since = v.get("next").and_then(Value::as_u64).unwrap_or(since);
            }
            Err(e) => {
                println!("(lost the node: {e})");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    }
}
