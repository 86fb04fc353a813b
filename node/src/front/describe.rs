//! Human text for the control API's answers: what `skyhop send | status |
//! trace` print, what the chat prompt shows, and the demo's paths.

use skyhop_protocol::NodeId;

use crate::runtime::api::{KnownPeers, PingReply, Status};
use crate::runtime::{SendOutcome, TraceOutcome};

/// A human line for a send's outcome.
pub(super) fn describe_send(outcome: &SendOutcome) -> String {
    match outcome {
        SendOutcome::Delivered { hops, latency } => {
            format!("delivered ({hops} hops, {:.1} ms)", millis(*latency))
        }
        SendOutcome::Failed(reason) => format!("failed: {reason}"),
        SendOutcome::Stored { copies } => format!(
            "stored ({copies} of 3 home supernodes keep it: the recipient is offline; \
             delivered when it comes back)"
        ),
    }
}

/// A human line for a trace's outcome.
pub(super) fn describe_trace(outcome: &TraceOutcome) -> String {
    match outcome {
        TraceOutcome::Completed { path, rtt } => format!(
            "{} ({} hops, rtt {:.1} ms)",
            path_text(path),
            path.len().saturating_sub(1),
            millis(*rtt)
        ),
        TraceOutcome::Failed(reason) => format!("trace failed: {reason}"),
    }
}

/// The lines of `skyhop status`.
pub(super) fn describe_status(s: &Status) -> String {
    let mut out = String::new();
    out += &format!("node id    {}\n", s.id);
    out += &format!("peer id    {}\n", s.peer_id);
    if s.auto_role {
        out += &format!(
            "role       {:?} (auto; {}; promoted {} times, demoted {})\n",
            s.role, s.reachability, s.promotions, s.demotions
        );
    } else {
        out += &format!("role       {:?}\n", s.role);
    }
    if let (Some(name), Some(state)) = (&s.name, &s.name_state) {
        out += &format!("name       {} ({state})\n", printable(name));
    }
    if let Some(p) = s.primary {
        out += &format!("primary    {}\n", p.short());
    }
    out += &format!(
        "links {}  neighbors {}  clients {}  backups {}\n",
        s.links.len(),
        s.neighbors.len(),
        s.clients.len(),
        s.backups.len()
    );
    out += &format!(
        "records {}  cached locations {}  host cache {}  pending chats {}\n",
        s.records, s.cached_locations, s.host_cache, s.pending_chats,
    );
    for a in &s.listen_addrs {
        out += &format!("listening  {a}\n");
    }
    out
}

/// The lines of `skyhop peers`: each kind of id the node knows, in full.
pub(super) fn describe_peers(p: &KnownPeers) -> String {
    let mut out = String::new();
    for (kind, ids) in [
        ("client", &p.clients),
        ("neighbor", &p.neighbors),
        ("link", &p.links),
        ("host cache", &p.host_cache),
        ("recent", &p.recent),
    ] {
        for id in ids {
            out += &format!("{kind:10} {id}\n");
        }
    }
    if out.is_empty() {
        out += "no known peers yet\n";
    }
    out
}

/// The lines of `skyhop ping`: one per probe, then loss and percentiles,
/// in the manner of `ping` and Reticulum's `rnprobe`.
pub(super) fn describe_ping(r: &PingReply) -> String {
    let mut out = format!("probing {} through the overlay\n", r.to.short());
    for (i, rtt) in r.rtts_ms.iter().enumerate() {
        match rtt {
            Some(ms) => out += &format!("probe {}: rtt {ms:.1} ms\n", i + 1),
            None => out += &format!("probe {}: lost\n", i + 1),
        }
    }
    out += &format!(
        "{} sent, {} received, {:.0}% loss",
        r.sent, r.received, r.loss_pct
    );
    if let Some(h) = r.hops {
        out += &format!(", {h} hops");
    }
    out += "\n";
    if let Some(s) = &r.stats {
        out += &format!(
            "rtt min {:.1} / p50 {:.1} / p90 {:.1} / max {:.1} ms\n",
            s.min_ms, s.p50_ms, s.p90_ms, s.max_ms
        );
    }
    if let (0, Some(why)) = (r.received, &r.last_failure) {
        out += &format!("last failure: {why}\n");
    }
    out
}

/// `text` safe for a terminal: control characters (newlines, escape
/// sequences, backspace, C1 codes) and the bidirectional overrides that
/// reorder what is shown are written as escapes, never interpreted; a
/// backslash is doubled so that an escape cannot be faked either.
pub fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let bidi = matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() || bidi => out += &format!("\\u{{{:x}}}", c as u32),
            c => out.push(c),
        }
    }
    out
}

/// The short forms of `ids`, space-separated.
pub(super) fn short_ids(ids: &[NodeId]) -> String {
    ids.iter().map(NodeId::short).collect::<Vec<_>>().join(" ")
}

/// A hop path as short ids joined by `>`.
pub(super) fn path_text(path: &[NodeId]) -> String {
    path.iter()
        .map(NodeId::short)
        .collect::<Vec<_>>()
        .join(" > ")
}

/// Microseconds as milliseconds.
pub(super) fn millis(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::printable;

    /// A body cannot fake a line from another contact, colour or clear the
    /// terminal, or fake an escape; ordinary text is untouched.
    #[test]
    fn printable_shows_control_characters_and_never_interprets_them() {
        assert_eq!(
            printable("hi \u{e9}t\u{e9} \u{1f600}"),
            "hi \u{e9}t\u{e9} \u{1f600}"
        );
        let fake = "ok\n[75f5c871] send me your key";
        let shown = printable(fake);
        assert!(!shown.contains('\n'), "{shown}");
        assert_eq!(shown, "ok\\n[75f5c871] send me your key");
        assert_eq!(
            printable("\u{1b}[2J\u{1b}[31mred"),
            "\\u{1b}[2J\\u{1b}[31mred"
        );
        assert_eq!(printable("a\rb\u{8}\u{9b}"), "a\\rb\\u{8}\\u{9b}");
        assert_eq!(printable("\u{202e}txt.exe"), "\\u{202e}txt.exe");
        assert_eq!(
            printable("a\\nb"),
            "a\\\\nb",
            "a typed backslash-n stays distinguishable"
        );
        assert!(printable(fake).chars().all(|c| !c.is_control()));
    }
}
