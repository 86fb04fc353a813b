//! Human text for the control API's answers: what `skyhop send | status |
//! trace` print, what the chat prompt shows, and the demo's paths.

use skyhop_protocol::NodeId;

use crate::runtime::api::Status;
use crate::runtime::{SendOutcome, TraceOutcome};

/// A human line for a send's outcome.
pub(super) fn describe_send(outcome: &SendOutcome) -> String {
    match outcome {
        SendOutcome::Delivered { hops, latency } => {
            format!("delivered ({hops} hops, {:.1} ms)", millis(*latency))
        }
        SendOutcome::Failed(reason) => format!("failed: {reason}"),
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
    out += &format!("role       {:?}\n", s.role);
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
