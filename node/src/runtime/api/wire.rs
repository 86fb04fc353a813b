//! The flat JSON objects of the send and trace answers.

use serde::{Deserialize, Serialize};
use skyhop_protocol::NodeId;

use super::{micros, millis, SendOutcome, SendReply, TraceOutcome, TraceReply};

/// `POST /send`'s answer as sent.
#[derive(Serialize, Deserialize)]
pub(super) struct Send {
    /// The recipient.
    to: NodeId,
    /// Whether the recipient acknowledged it.
    delivered: bool,
    /// Hops it took (delivered only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    hops: Option<u8>,
    /// From first send to ack (delivered only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    latency_ms: Option<f64>,
    /// Why not (failed only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    /// Home supernodes of the offline recipient that keep it (stored
    /// only: delivered later, the history says when).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    stored: Option<u8>,
}

impl From<SendReply> for Send {
    fn from(r: SendReply) -> Send {
        match r.outcome {
            SendOutcome::Delivered { hops, latency } => Send {
                to: r.to,
                delivered: true,
                hops: Some(hops),
                latency_ms: Some(millis(latency)),
                reason: None,
                stored: None,
            },
            SendOutcome::Failed(reason) => Send {
                to: r.to,
                delivered: false,
                hops: None,
                latency_ms: None,
                reason: Some(reason),
                stored: None,
            },
            SendOutcome::Stored { copies } => Send {
                to: r.to,
                delivered: false,
                hops: None,
                latency_ms: None,
                reason: None,
                stored: Some(copies),
            },
        }
    }
}

impl TryFrom<Send> for SendReply {
    type Error = &'static str;

    fn try_from(w: Send) -> Result<SendReply, &'static str> {
        let outcome = match (w.delivered, w.hops, w.latency_ms, w.reason, w.stored) {
            (true, Some(hops), Some(ms), _, _) => SendOutcome::Delivered {
                hops,
                latency: micros(ms),
            },
            (false, _, _, Some(reason), _) => SendOutcome::Failed(reason),
            (false, _, _, None, Some(copies)) => SendOutcome::Stored { copies },
            (true, ..) => return Err("a delivered send needs hops and latency_ms"),
            (false, ..) => return Err("a failed send needs a reason or stored"),
        };
        Ok(SendReply { to: w.to, outcome })
    }
}

/// `POST /trace`'s answer as sent.
#[derive(Serialize, Deserialize)]
pub(super) struct Trace {
    /// The node traced.
    to: NodeId,
    /// Whether a path came back.
    ok: bool,
    /// The hops, this node first (ok only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    path: Option<Vec<NodeId>>,
    /// Hops in the path (ok only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    hops: Option<usize>,
    /// Round trip (ok only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rtt_ms: Option<f64>,
    /// Why not (failed only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

impl From<TraceReply> for Trace {
    fn from(r: TraceReply) -> Trace {
        match r.outcome {
            TraceOutcome::Completed { path, rtt } => Trace {
                to: r.to,
                ok: true,
                hops: Some(path.len().saturating_sub(1)),
                path: Some(path),
                rtt_ms: Some(millis(rtt)),
                reason: None,
            },
            TraceOutcome::Failed(reason) => Trace {
                to: r.to,
                ok: false,
                path: None,
                hops: None,
                rtt_ms: None,
                reason: Some(reason),
            },
        }
    }
}

impl TryFrom<Trace> for TraceReply {
    type Error = &'static str;

    fn try_from(w: Trace) -> Result<TraceReply, &'static str> {
        let outcome = match (w.ok, w.path, w.rtt_ms, w.reason) {
            (true, Some(path), Some(ms), _) => TraceOutcome::Completed {
                path,
                rtt: micros(ms),
            },
            (false, _, _, Some(reason)) => TraceOutcome::Failed(reason),
            (true, ..) => return Err("a completed trace needs path and rtt_ms"),
            (false, ..) => return Err("a failed trace needs a reason"),
        };
        Ok(TraceReply { to: w.to, outcome })
    }
}
