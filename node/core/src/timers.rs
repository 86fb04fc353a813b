//! The node's timers: a fixed table indexed by an enum.

use super::SimTime;

/// Every timer a node has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Timer {
    /// Heartbeats on idle links; dead-link detection.
    Heartbeat = 0,
    /// Ordinary node: the next attach attempt.
    Attach,
    /// Chat retries, deadlines and held-message release.
    Chat,
    /// Supernode: random bucket refresh lookups.
    TableRefresh,
    /// Supernode: packets held for a location lookup are sent on anyway.
    Lookup,
    /// A probe's ack is overdue: its peer is dead.
    ProbeAck,
    /// This node's name claim is due for a refresh.
    NameRefresh,
    /// Ordinary node: packets waiting for the pace may go.
    Pace,
}

const COUNT: usize = 8;

const ALL: [Timer; COUNT] = [
    Timer::Heartbeat,
    Timer::Attach,
    Timer::Chat,
    Timer::TableRefresh,
    Timer::Lookup,
    Timer::ProbeAck,
    Timer::NameRefresh,
    Timer::Pace,
];

/// When each timer fires next, if armed.
#[derive(Clone, Debug, Default)]
pub struct Timers {
    /// When each timer fires, indexed by `Timer as usize`.
    at: [Option<SimTime>; COUNT],
}

impl Timers {
    /// Arms `timer` for `at`, replacing any earlier arming.
    pub fn set(&mut self, timer: Timer, at: SimTime) {
        self.at[timer as usize] = Some(at);
    }

    /// Arms `timer` for `at` unless it is armed earlier.
    pub fn set_earliest(&mut self, timer: Timer, at: SimTime) {
        let slot = &mut self.at[timer as usize];
        *slot = Some(slot.map_or(at, |t| t.min(at)));
    }

    /// Disarms `timer`.
    pub fn clear(&mut self, timer: Timer) {
        self.at[timer as usize] = None;
    }

    /// The earliest armed time.
    pub fn next(&self) -> Option<SimTime> {
        self.at.iter().flatten().min().copied()
    }

    /// Disarms and returns every timer due at `now`.
    pub fn take_due(&mut self, now: SimTime) -> Vec<Timer> {
        ALL.iter()
            .copied()
            .filter(|t| {
                let slot = &mut self.at[*t as usize];
                let due = slot.is_some_and(|at| at <= now);
                if due {
                    *slot = None;
                }
                due
            })
            .collect()
    }
}
