//! What an operator reads at the default log level: a peer dropped, a link
//! closed, a redirect, a refusal, each at info or warn with the peer and the
//! reason, through one rate limit per kind so that a flapping or hostile
//! peer cannot flood the log. The node task calls [`OpLog::note`]; the
//! limiter is pure (time is handed in), so it is unit-tested here.
//!
//! # Implementation notes
//! - A kind may log [`BURST`] lines per [`WINDOW`]; past that its lines are
//!   counted, and the first line of the next window says how many were
//!   suppressed.

use skyhop_core::SimTime;

/// Lines a kind may log per window.
pub const BURST: u32 = 20;
/// The window, in microseconds (10 s).
pub const WINDOW: SimTime = 10 * skyhop_core::SECS;

/// What happened to a peer, as the operator sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum OpKind {
    /// The core dropped a peer (a silent client, a redirect's end, ...).
    PeerDropped,
    /// A link's stream ended or was replaced.
    LinkClosed,
    /// A supernode redirected a client, or this node was redirected.
    Redirect,
    /// A connection or stream was refused.
    Refused,
}

impl OpKind {
    /// Every kind, in table order.
    const ALL: [OpKind; 4] = [
        OpKind::PeerDropped,
        OpKind::LinkClosed,
        OpKind::Redirect,
        OpKind::Refused,
    ];

    fn index(self) -> usize {
        self as usize
    }
}

/// One kind's window.
#[derive(Clone, Copy, Debug, Default)]
struct Window {
    /// When the current window began.
    start: SimTime,
    /// Lines logged in it.
    logged: u32,
    /// Lines suppressed in it.
    suppressed: u64,
}

/// The per-kind limiter.
#[derive(Debug, Default)]
pub struct OpLog {
    /// One window per [`OpKind`].
    windows: [Window; OpKind::ALL.len()],
}

/// What to do with a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Log it; `suppressed` lines of its kind were dropped before it.
    Log {
        /// Lines dropped in the previous window.
        suppressed: u64,
    },
    /// Drop it (counted).
    Suppress,
}

impl OpLog {
    /// Whether a line of `kind` at `now` may be logged.
    pub fn check(&mut self, now: SimTime, kind: OpKind) -> Verdict {
        let w = &mut self.windows[kind.index()];
        let mut carried = 0;
        if now.saturating_sub(w.start) >= WINDOW {
            carried = w.suppressed;
            *w = Window {
                start: now,
                logged: 0,
                suppressed: 0,
            };
        }
        if w.logged < BURST {
            w.logged += 1;
            Verdict::Log {
                suppressed: carried,
            }
        } else {
            w.suppressed += 1;
            Verdict::Suppress
        }
    }

    /// Logs `message` about `peer` at info (or warn if `warn`), if the rate
    /// limit of `kind` allows.
    pub fn note(&mut self, now: SimTime, kind: OpKind, warn: bool, peer: &str, message: &str) {
        let Verdict::Log { suppressed } = self.check(now, kind) else {
            return;
        };
        let kind_name = format!("{kind:?}");
        match (warn, suppressed) {
            (true, 0) => tracing::warn!(peer, kind = kind_name, "{message}"),
            (false, 0) => tracing::info!(peer, kind = kind_name, "{message}"),
            (true, n) => {
                tracing::warn!(
                    peer,
                    kind = kind_name,
                    "{message} ({n} similar lines suppressed)"
                )
            }
            (false, n) => {
                tracing::info!(
                    peer,
                    kind = kind_name,
                    "{message} ({n} similar lines suppressed)"
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A burst is logged, the rest of the window is suppressed and counted,
    /// the next window reports the count; kinds do not share a budget.
    #[test]
    fn each_kind_logs_a_burst_per_window_and_reports_what_it_suppressed() {
        let mut log = OpLog::default();
        for _ in 0..BURST {
            assert_eq!(
                log.check(0, OpKind::PeerDropped),
                Verdict::Log { suppressed: 0 }
            );
        }
        for _ in 0..5 {
            assert_eq!(log.check(1, OpKind::PeerDropped), Verdict::Suppress);
        }
        assert_eq!(
            log.check(1, OpKind::Redirect),
            Verdict::Log { suppressed: 0 },
            "another kind has its own budget"
        );
        assert_eq!(
            log.check(WINDOW, OpKind::PeerDropped),
            Verdict::Log { suppressed: 5 }
        );
        assert_eq!(
            log.check(WINDOW + 1, OpKind::PeerDropped),
            Verdict::Log { suppressed: 0 }
        );
    }
}
