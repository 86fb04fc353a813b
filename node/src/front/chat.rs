//! `skyhop chat`: an interactive prompt against a running node's control
//! API. A line sends to the current peer and reports "sent", then
//! "delivered (N hops, X ms)" or "failed: reason"; incoming messages are
//! printed with the sender's short id as they arrive (long-poll of
//! `/events`), their bodies through [`printable`] so that a message can
//! never fake a line from someone else or drive the terminal. `/history`
//! shows what the node's database kept of a conversation (a restart loses
//! nothing), `/contacts` who this node has chatted with, `/who` who is
//! attached to the same supernode and listed (`--listed`). `/to` takes an
//! id, a prefix or a name; a name pinned to a contact that now resolves to
//! another key is shown with a warning, and `/repin NAME` trusts the new
//! key. It talks to the node through [`super::client`] only.

use std::time::Duration;

use clap::Args;
use skyhop_protocol::NodeId;

use super::client::{call, endpoint, Endpoint, Target, REQUEST_TIMEOUT, SEND_TIMEOUT};
use super::commands::{describe_contacts, describe_history};
use super::describe::{describe_send, describe_status, describe_trace, printable, short_ids};
use super::process::tokio_runtime;
use super::FrontError;
use crate::runtime::api::{
    ContactsRequest, Event, EventsRequest, HistoryRequest, PeersRequest, RepinRequest,
    ResolveRequest, SendRequest, StatusRequest, TraceRequest, WhoRequest, EVENTS_WAIT,
};

/// Chats `/history` shows.
const HISTORY_SHOWN: u32 = 20;

/// `skyhop chat`.
#[derive(Args, Debug, Clone)]
pub struct ChatArgs {
    /// The running node.
    #[command(flatten)]
    pub target: Target,
    /// Peer to talk to first (id, unique prefix or name).
    #[arg(long)]
    pub to: Option<String>,
}

/// `skyhop chat`: an interactive prompt against a running node.
pub fn chat(args: ChatArgs) -> Result<(), FrontError> {
    let ep = endpoint(&args.target)?;
    tokio_runtime()?.block_on(chat_loop(ep, args.to))
}

/// Runs the prompt until `/quit` or the end of input.
async fn chat_loop(addr: Endpoint, first: Option<String>) -> Result<(), FrontError> {
    let me = call(&addr, &StatusRequest, REQUEST_TIMEOUT).await?;
    println!(
        "chatting as {} ({:?}). Commands: /to NAME|ID, /who, /history [ID], /contacts, /trace NAME|ID, /repin NAME, /status, /quit",
        me.id.short(),
        me.role
    );
    // Start from the newest event: only messages arriving from now on.
    let newest = EventsRequest {
        since: 0,
        wait: Some(0),
    };
    let since = call(&addr, &newest, REQUEST_TIMEOUT).await?.next;
    let printer = tokio::spawn(print_incoming(addr.clone(), since));
    let mut peer: Option<NodeId> = None;
    if let Some(t) = first {
        peer = resolve(&addr, &t).await;
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
                if let Some(id) = resolve(&addr, rest).await {
                    peer = Some(id);
                }
            }
            "/who" => who(&addr).await,
            "/repin" => {
                match call(&addr, &RepinRequest { name: rest.into() }, SEND_TIMEOUT).await {
                    Ok(r) => match r.id {
                        Some(id) => println!("'{}' is now pinned to {}", r.name, id.short()),
                        None => println!(
                            "'{}' resolves to no other key: the pin is unchanged",
                            r.name
                        ),
                    },
                    Err(e) => println!("error: {e}"),
                }
            }
            "/history" => {
                // The named peer, else the current one, else everyone.
                let peer = if rest.is_empty() {
                    peer.map(|p| p.to_hex())
                } else {
                    Some(rest.to_string())
                };
                let request = HistoryRequest {
                    peer,
                    limit: Some(HISTORY_SHOWN),
                };
                match call(&addr, &request, REQUEST_TIMEOUT).await {
                    Ok(page) => print!("{}", describe_history(&page)),
                    Err(e) => println!("error: {e}"),
                }
            }
            "/contacts" => match call(&addr, &ContactsRequest, REQUEST_TIMEOUT).await {
                Ok(c) => print!("{}", describe_contacts(&c)),
                Err(e) => println!("error: {e}"),
            },
            "/status" => match call(&addr, &StatusRequest, REQUEST_TIMEOUT).await {
                Ok(s) => print!("{}", describe_status(&s)),
                Err(e) => println!("error: {e}"),
            },
            "/trace" => {
                let to = if rest.is_empty() {
                    peer.map(|p| p.to_hex()).unwrap_or_default()
                } else {
                    rest.to_string()
                };
                match call(&addr, &TraceRequest { to }, SEND_TIMEOUT).await {
                    Ok(reply) => println!("{}", describe_trace(&reply.outcome)),
                    Err(e) => println!("error: {e}"),
                }
            }
            c if c.starts_with('/') => {
                println!(
                    "unknown command {c}; try /to, /who, /history, /contacts, /trace, /repin, /status, /quit"
                )
            }
            _ => {
                let Some(to) = peer else {
                    println!("no peer yet: /to NAME or /to ID (see /who)");
                    continue;
                };
                println!("sent");
                // Each message waits for its outcome on its own, so typing goes on.
                sending.retain(|h: &tokio::task::JoinHandle<()>| !h.is_finished());
                let addr = addr.clone();
                sending.push(tokio::spawn(async move {
                    let request = SendRequest {
                        to: to.to_hex(),
                        text: line,
                    };
                    match call(&addr, &request, SEND_TIMEOUT).await {
                        Ok(reply) => println!("{}", describe_send(&reply.outcome)),
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

/// The id `text` names: a full id, a name, or a unique prefix of an id
/// the node knows; the node resolves it (a name at its home supernodes).
async fn resolve(addr: &Endpoint, text: &str) -> Option<NodeId> {
    let request = ResolveRequest {
        to: text.trim().to_string(),
    };
    match call(addr, &request, SEND_TIMEOUT).await {
        Ok(r) => {
            if let Some(warning) = &r.warning {
                println!("{warning}");
            }
            if r.id.to_hex().starts_with(&request.to) {
                println!("talking to {}", r.id.short());
            } else {
                println!("talking to {} ({})", request.to, r.id.short());
            }
            Some(r.id)
        }
        Err(e) => {
            println!("{e}");
            None
        }
    }
}

/// `/who`: who is attached to this node's supernode and chose to be
/// listed, the contacts with their names and presence, then the ids the
/// node knows, by kind.
async fn who(addr: &Endpoint) {
    match call(addr, &WhoRequest, REQUEST_TIMEOUT).await {
        Ok(w) if w.listed.is_empty() => {
            println!(
                "listed    nobody at supernode {} (run with --listed to be)",
                w.supernode.short()
            )
        }
        Ok(w) => {
            println!("listed at supernode {}:", w.supernode.short());
            for node in &w.listed {
                println!("  {}", printable(&node.label()));
            }
        }
        Err(e) => println!("listed    ? ({e})"),
    }
    if let Ok(c) = call(addr, &ContactsRequest, REQUEST_TIMEOUT).await {
        for contact in c.contacts.iter().filter(|c| c.name.is_some()) {
            let presence = match contact.presence {
                crate::runtime::db::Presence::Online => "online",
                crate::runtime::db::Presence::Offline => "offline",
                crate::runtime::db::Presence::Unknown => "unknown",
            };
            let name = contact.name.as_deref().map(printable).unwrap_or_default();
            let warning = if contact.name_conflict.is_some() {
                "  (WARNING: now resolves to another key; /repin to trust it)"
            } else {
                ""
            };
            println!("{name:10} {presence:8} {}{warning}", contact.id.short());
        }
    }
    match call(addr, &PeersRequest, REQUEST_TIMEOUT).await {
        Ok(p) => {
            for (kind, ids) in [
                ("clients", &p.clients),
                ("neighbors", &p.neighbors),
                ("links", &p.links),
                ("recent", &p.recent),
                ("contacts", &p.contacts),
            ] {
                if !ids.is_empty() {
                    println!("{kind:10} {}", short_ids(ids));
                }
            }
        }
        Err(e) => println!("error: {e}"),
    }
}

/// Chats of ours stored for an offline recipient that the prompt
/// remembers, to say when they are delivered.
const STORED_REMEMBERED: usize = 1024;

/// Prints chats as they arrive, long-polling `/events` from `since` on,
/// and says when a chat stored for an offline recipient is delivered.
async fn print_incoming(addr: Endpoint, mut since: u64) {
    let mut stored = std::collections::VecDeque::new();
    loop {
        let request = EventsRequest { since, wait: None };
        match call(&addr, &request, EVENTS_WAIT + REQUEST_TIMEOUT).await {
            Ok(reply) => {
                for logged in &reply.events {
                    match &logged.event {
                        Event::ChatReceived { from, body, .. } => {
                            println!("[{}] {}", from.short(), printable(body));
                        }
                        Event::ChatStored { msg_id, .. } if !stored.contains(msg_id) => {
                            if stored.len() >= STORED_REMEMBERED {
                                stored.pop_front();
                            }
                            stored.push_back(*msg_id);
                        }
                        Event::ChatDelivered { to, msg_id, .. } if stored.contains(msg_id) => {
                            stored.retain(|m| m != msg_id);
                            println!(
                                "(your message stored for {} is delivered: {} is back)",
                                to.short(),
                                to.short()
                            );
                        }
                        _ => {}
                    }
                }
                since = reply.next;
            }
            Err(e) => {
                println!("(lost the node: {e})");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    }
}
