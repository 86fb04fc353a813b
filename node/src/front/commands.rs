//! `skyhop send | status | peers | trace | ping | history | contacts`:
//! requests to a running
//! node's control API through [`super::client`], the answer printed as
//! [`super::describe`] words it, or as JSON with `--json`.

use std::time::Duration;

use clap::Args;
use serde::Serialize;

use super::client::{call, endpoint, Target, REQUEST_TIMEOUT, SEND_TIMEOUT};
use super::describe::{
    describe_peers, describe_ping, describe_send, describe_status, describe_trace, printable,
};
use super::process::tokio_runtime;
use super::FrontError;
use crate::runtime::api::{
    ChatState, Contacts, ContactsRequest, Direction, HistoryPage, HistoryRequest, PeersRequest,
    PingRequest, Presence, Request, SaidBy, SendRequest, StatusRequest, StoredChat, TraceRequest,
};
use crate::runtime::{SendOutcome, TraceOutcome};

/// `skyhop send`: send one message.
#[derive(Args, Debug, Clone)]
pub struct SendArgs {
    /// The running node.
    #[command(flatten)]
    pub target: Target,
    /// Recipient: a name, a node id or a unique prefix of a known id.
    #[arg(long)]
    pub to: String,
    /// The message.
    pub text: String,
}

/// `skyhop status`.
#[derive(Args, Debug, Clone)]
pub struct StatusArgs {
    /// The running node.
    #[command(flatten)]
    pub target: Target,
    /// Print the JSON answer.
    #[arg(long)]
    pub json: bool,
}

/// `skyhop peers`.
#[derive(Args, Debug, Clone)]
pub struct PeersArgs {
    /// The running node.
    #[command(flatten)]
    pub target: Target,
    /// Print the JSON answer.
    #[arg(long)]
    pub json: bool,
}

/// `skyhop trace`.
#[derive(Args, Debug, Clone)]
pub struct TraceArgs {
    /// The running node.
    #[command(flatten)]
    pub target: Target,
    /// The node to trace: a name, an id or a unique prefix of a known id.
    pub id: String,
    /// Print the JSON answer.
    #[arg(long)]
    pub json: bool,
}

/// `skyhop ping`.
#[derive(Args, Debug, Clone)]
pub struct PingArgs {
    /// The running node.
    #[command(flatten)]
    pub target: Target,
    /// The node to probe: a name, an id or a unique prefix of a known id.
    pub id: String,
    /// Probes to send (1 to 100).
    #[arg(short = 'c', long, default_value_t = 5)]
    pub count: u32,
    /// Milliseconds between probes (100 to 10000).
    #[arg(short = 'i', long, default_value_t = 1000)]
    pub interval_ms: u64,
    /// Print the JSON answer.
    #[arg(long)]
    pub json: bool,
}

/// `skyhop history`.
#[derive(Args, Debug, Clone)]
pub struct HistoryArgs {
    /// The running node.
    #[command(flatten)]
    pub target: Target,
    /// One conversation: a name, a node id or a unique prefix of a known id
    /// (default: every conversation).
    pub peer: Option<String>,
    /// Chats to show at most, newest (1 to 1000).
    #[arg(short = 'n', long, default_value_t = 20)]
    pub limit: u32,
    /// Print the JSON answer.
    #[arg(long)]
    pub json: bool,
}

/// `skyhop contacts`.
#[derive(Args, Debug, Clone)]
pub struct ContactsArgs {
    /// The running node.
    #[command(flatten)]
    pub target: Target,
    /// Print the JSON answer.
    #[arg(long)]
    pub json: bool,
}

/// `skyhop repin`.
#[derive(Args, Debug, Clone)]
pub struct RepinArgs {
    /// The running node.
    #[command(flatten)]
    pub target: Target,
    /// The name whose new key to trust.
    pub name: String,
    /// Print the JSON answer.
    #[arg(long)]
    pub json: bool,
}

/// Prints `value` as indented JSON.
fn print_json(value: &impl Serialize) {
    // The API replies are plain data.
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("control API replies serialize")
    );
}

/// `skyhop send`: exits 0 only if the message was delivered, or stored on
/// the offline recipient's home supernodes (delivered when it comes back).
pub fn send(args: SendArgs) -> Result<(), FrontError> {
    let ep = endpoint(&args.target)?;
    let request = SendRequest {
        to: args.to,
        text: args.text,
    };
    tokio_runtime()?.block_on(async {
        let reply = call(&ep, &request, SEND_TIMEOUT).await?;
        match reply.outcome {
            SendOutcome::Delivered { .. } | SendOutcome::Stored { .. } => {
                println!("{}", describe_send(&reply.outcome));
                Ok(())
            }
            SendOutcome::Failed(reason) => Err(FrontError::NotDelivered { reason }),
        }
    })
}

/// Asks `target` for `request` and prints the reply, as JSON or as
/// `describe` words it.
fn show<R: Request>(
    target: &Target,
    request: &R,
    json: bool,
    describe: impl Fn(&R::Reply) -> String,
) -> Result<(), FrontError> {
    let ep = endpoint(target)?;
    tokio_runtime()?.block_on(async {
        let reply = call(&ep, request, REQUEST_TIMEOUT).await?;
        if json {
            print_json(&reply);
        } else {
            print!("{}", describe(&reply));
        }
        Ok(())
    })
}

/// `skyhop status`.
pub fn status(args: StatusArgs) -> Result<(), FrontError> {
    show(&args.target, &StatusRequest, args.json, describe_status)
}

/// `skyhop peers`: the ids the node knows.
pub fn peers(args: PeersArgs) -> Result<(), FrontError> {
    show(&args.target, &PeersRequest, args.json, describe_peers)
}

/// `skyhop trace`: exits 0 only if a path came back.
pub fn trace(args: TraceArgs) -> Result<(), FrontError> {
    let ep = endpoint(&args.target)?;
    let request = TraceRequest { to: args.id };
    tokio_runtime()?.block_on(async {
        let reply = call(&ep, &request, SEND_TIMEOUT).await?;
        if args.json {
            print_json(&reply);
        }
        match reply.outcome {
            TraceOutcome::Completed { .. } => {
                if !args.json {
                    println!("{}", describe_trace(&reply.outcome));
                }
                Ok(())
            }
            TraceOutcome::Failed(reason) => Err(FrontError::TraceFailed { reason }),
        }
    })
}

/// `skyhop ping`: round trips to an overlay id; exits 0 only if some probe
/// came back.
pub fn ping(args: PingArgs) -> Result<(), FrontError> {
    let ep = endpoint(&args.target)?;
    let request = PingRequest {
        to: args.id,
        count: args.count,
        interval_ms: args.interval_ms,
    };
    // Every probe may take its interval or its own timeout, whichever is longer.
    let per_probe = Duration::from_millis(args.interval_ms).max(Duration::from_secs(5));
    let timeout = per_probe * args.count.max(1) + REQUEST_TIMEOUT;
    tokio_runtime()?.block_on(async {
        let reply = call(&ep, &request, timeout).await?;
        if args.json {
            print_json(&reply);
        } else {
            print!("{}", describe_ping(&reply));
        }
        if reply.received == 0 {
            return Err(FrontError::PingLost {
                sent: reply.sent,
                reason: reply.last_failure.unwrap_or_else(|| "no answer".into()),
            });
        }
        Ok(())
    })
}

/// `skyhop history`: the newest chats of one conversation or of all.
pub fn history(args: HistoryArgs) -> Result<(), FrontError> {
    let request = HistoryRequest {
        peer: args.peer,
        limit: Some(args.limit),
    };
    show(&args.target, &request, args.json, describe_history)
}

/// `skyhop contacts`: the nodes this node has chatted with, and whether
/// they are online.
pub fn contacts(args: ContactsArgs) -> Result<(), FrontError> {
    show(&args.target, &ContactsRequest, args.json, describe_contacts)
}

/// `skyhop repin NAME`: trust the key a pinned name now resolves to.
pub fn repin(args: RepinArgs) -> Result<(), FrontError> {
    let request = crate::runtime::api::RepinRequest { name: args.name };
    show(&args.target, &request, args.json, |r| match r.id {
        Some(id) => format!("'{}' is now pinned to {id}\n", r.name),
        None => format!(
            "'{}' has resolved to no other key since it was pinned: the pin is unchanged\n",
            r.name
        ),
    })
}

/// `ms` since 1970 as `YYYY-MM-DD HH:MM:SS` (UTC).
pub(super) fn utc_text(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil_from_days, for days since 1970-01-01.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

/// Who `said_by` is, in words.
fn said_by_text(s: SaidBy) -> &'static str {
    match s {
        SaidBy::Recipient => "the recipient",
        SaidBy::HomeSupernode => "its home supernodes",
        SaidBy::ThisNode => "this node",
    }
}

/// One chat as a line: when, which way, with whom, the text, its state.
pub(super) fn describe_chat(m: &StoredChat) -> String {
    let arrow = match m.direction {
        Direction::In => "<-",
        Direction::Out => "->",
    };
    let hops = m.hops.map(|h| format!("{h} hops")).unwrap_or_default();
    let by = m
        .said_by
        .map(|s| format!(", said by {}", said_by_text(s)))
        .unwrap_or_default();
    let state = match m.state {
        ChatState::Received => format!("received ({hops})"),
        ChatState::Sent => "sent, no outcome yet".into(),
        ChatState::Stored => m
            .reason
            .clone()
            .unwrap_or_else(|| "stored on the recipient's home supernodes".into()),
        ChatState::Delivered => format!("delivered ({hops}{by})"),
        ChatState::Failed | ChatState::Interrupted => format!(
            "{}: {}{by}",
            if m.state == ChatState::Failed {
                "failed"
            } else {
                "unknown"
            },
            m.reason.as_deref().unwrap_or("no reason given")
        ),
    };
    format!(
        "{} {arrow} {}  {}  [{state}]",
        utc_text(m.at_ms),
        m.peer.short(),
        printable(&m.body)
    )
}

/// A history page: a line per chat, then what is kept.
pub(super) fn describe_history(page: &HistoryPage) -> String {
    let mut out = String::new();
    if page.messages.is_empty() {
        out += "no chats kept";
        if let Some(p) = page.peer {
            out += &format!(" with {}", p.short());
        }
        out += "\n";
    }
    for m in &page.messages {
        out += &describe_chat(m);
        out += "\n";
    }
    out += &format!(
        "({} shown; {} chats kept, at most {} for {} days; {} deleted by those bounds since the node started)\n",
        page.messages.len(),
        page.rows,
        page.limits.max_rows,
        page.limits.max_age_days,
        page.evicted
    );
    out
}

/// The contacts: id, presence, first contact.
pub(super) fn describe_contacts(c: &Contacts) -> String {
    if c.contacts.is_empty() {
        return "no contacts yet: a node becomes one at the first chat either way\n".into();
    }
    let mut out = String::new();
    for contact in &c.contacts {
        let presence = match contact.presence {
            Presence::Online => "online",
            Presence::Offline => "offline",
            Presence::Unknown => "unknown",
        };
        out += &format!(
            "{}  {presence:8} first contact {}{}\n",
            contact.id.short(),
            utc_text(contact.first_seen_ms),
            contact
                .name
                .as_deref()
                .map(|n| format!("  name {}", printable(n)))
                .unwrap_or_default()
        );
        if let (Some(name), Some(other)) = (&contact.name, contact.name_conflict) {
            out += &format!(
                "    WARNING: '{}' now resolves to key {}, not this pinned one; `skyhop repin {}` to trust it\n",
                printable(name),
                other.short(),
                printable(name)
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_utc_calendar_dates() {
        assert_eq!(utc_text(0), "1970-01-01 00:00:00");
        assert_eq!(utc_text(951_782_400_000), "2000-02-29 00:00:00");
        assert_eq!(
            utc_text(1_795_996_800_000 + 3_723_000),
            "2026-11-30 01:02:03"
        );
    }
}
