//! The world's events: what can happen at a point in virtual time, and the
//! names under which the metrics count them. The world schedules and
//! dispatches them; an event for a node carries its incarnation where a
//! restart in between must make it stale.

use skyhop_core::SimTime;
use skyhop_protocol::{Message, NodeId};

/// What happens at a point in virtual time.
pub enum Ev {
    /// A node starts (first start or restart).
    Start {
        /// The node.
        slot: u32,
    },
    /// A node's timer deadline.
    Wake {
        /// The node.
        slot: u32,
        /// Its incarnation when the wake-up was scheduled.
        inc: u32,
    },
    /// A frame arrives.
    Frame {
        /// The sender.
        from: u32,
        /// The receiver.
        to: u32,
        /// The epoch of the link it was sent on.
        epoch: u64,
        /// The frame.
        msg: Box<Message>,
    },
    /// A dial completes: the link is up at both ends.
    LinkUp {
        /// The dialer.
        a: u32,
        /// Its incarnation when it dialed.
        a_inc: u32,
        /// The dialed node.
        b: u32,
        /// Its incarnation when it was dialed.
        b_inc: u32,
        /// The link's one-way latency.
        latency: SimTime,
    },
    /// The peer closed the link; `at` learns it.
    LinkDown {
        /// The node that learns it.
        at: u32,
        /// The node that closed it.
        peer: u32,
        /// The link's epoch.
        epoch: u64,
    },
    /// A dial failed.
    DialFailed {
        /// The dialer.
        slot: u32,
        /// Its incarnation when it dialed.
        inc: u32,
        /// Whom it dialed.
        peer: NodeId,
    },
    /// An ordinary node's session ends.
    SessionEnd {
        /// The node.
        slot: u32,
        /// The incarnation whose session it is.
        inc: u32,
    },
    /// A supernode kill of the scenario.
    SnKill {
        /// Its index in `churn.sn_kills`.
        index: usize,
    },
    /// A restart storm of the scenario begins.
    Storm {
        /// Its index in `churn.restart_storms`.
        index: usize,
    },
    /// One node of a storm restarts.
    StormRestart {
        /// The node.
        slot: u32,
        /// Its incarnation when the storm picked it.
        inc: u32,
        /// How long it stays down.
        downtime: SimTime,
    },
    /// A partition starts or heals.
    Topology,
    /// The next chat message of the workload.
    Chat,
    /// Periodic sampling and invariant checks.
    Sample,
    /// The flooders' next batch of frames.
    Flood,
    /// The names workload's next lookup.
    NameLookup,
    /// A supernode that is leaving gracefully has handed over: it goes.
    LeaveDone {
        /// The node.
        slot: u32,
        /// The incarnation that is leaving.
        inc: u32,
    },
    /// The daily cycle's next tick: users arrive or go.
    DayTick,
    /// A user goes home for the night.
    DayLeave {
        /// The node.
        slot: u32,
        /// The incarnation the cycle picked.
        inc: u32,
    },
}

impl Ev {
    /// Names of the kinds, indexed by [`Ev::index`], then `wake_stale`.
    pub const NAMES: [&'static str; 19] = [
        "start",
        "wake",
        "frame",
        "link_up",
        "link_down",
        "dial_failed",
        "session_end",
        "sn_kill",
        "storm",
        "storm_restart",
        "topology",
        "chat",
        "sample",
        "flood",
        "name_lookup",
        "leave_done",
        "day_tick",
        "day_leave",
        "wake_stale",
    ];
    /// The index of `wake`.
    pub const WAKE: usize = 1;
    /// The index of `wake_stale`.
    pub const WAKE_STALE: usize = 18;

    /// The kind's index in [`Ev::NAMES`].
    pub fn index(&self) -> usize {
        match self {
            Ev::Start { .. } => 0,
            Ev::Wake { .. } => 1,
            Ev::Frame { .. } => 2,
            Ev::LinkUp { .. } => 3,
            Ev::LinkDown { .. } => 4,
            Ev::DialFailed { .. } => 5,
            Ev::SessionEnd { .. } => 6,
            Ev::SnKill { .. } => 7,
            Ev::Storm { .. } => 8,
            Ev::StormRestart { .. } => 9,
            Ev::Topology => 10,
            Ev::Chat => 11,
            Ev::Sample => 12,
            Ev::Flood => 13,
            Ev::NameLookup => 14,
            Ev::LeaveDone { .. } => 15,
            Ev::DayTick => 16,
            Ev::DayLeave { .. } => 17,
        }
    }
}
