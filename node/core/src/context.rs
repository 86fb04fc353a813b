//! What every sub-machine of a [`super::Node`] shares: its identity and
//! configuration, its seeded RNG, its timers, the signature memo, and the
//! output queues with the counters. The `Node` facade owns one [`Ctx`] and
//! lends it to the sub-machine it calls, so that sub-machines never call
//! each other.
//!
//! # Implementation notes
//! Outputs are three bounded queues drained in a fixed order of kind (see
//! [`super::Node::poll_output`]); a queue's buffer is freed once drained.

use std::collections::VecDeque;
use std::sync::Arc;

use rand::rngs::Xoshiro256PlusPlus;
use skyhop_protocol::{Identity, Message, NodeId, SignatureMemo};

use super::config::NodeConfig;
use super::counters::{Counters, DropReason};
use super::events::{Action, Event, Output, Transmit};
use super::timers::Timers;

/// Outputs queued at most between drains; beyond, they are dropped and counted.
const MAX_QUEUED_OUTPUTS: usize = 1 << 16;

/// The node-wide state every sub-machine may use.
pub(crate) struct Ctx {
    /// The node's configuration.
    pub cfg: NodeConfig,
    /// The node's key pair, for what it signs.
    pub identity: Identity,
    /// The node's id (the hash of its public key).
    pub id: NodeId,
    /// The node's RNG, seeded by the driver: request ids, jitter, samples.
    pub rng: Xoshiro256PlusPlus,
    /// When each timer fires next.
    pub timers: Timers,
    /// Signed statements that verified, shared as the caller chose.
    pub memo: Arc<SignatureMemo>,
    /// Frames, link changes and events for the driver, and the counters.
    pub out: Outputs,
}

/// The node's output queues and counters.
#[derive(Default)]
pub(crate) struct Outputs {
    /// Frames for linked peers.
    transmits: VecDeque<Transmit>,
    /// Links to dial or close.
    actions: VecDeque<Action>,
    /// News for the application.
    events: VecDeque<Event>,
    /// What the node did, for status and metrics.
    pub counters: Counters,
}

impl Outputs {
    /// Queues a frame for linked peer `to`.
    pub fn send(&mut self, to: NodeId, msg: Message) {
        if self.transmits.len() >= MAX_QUEUED_OUTPUTS {
            self.counters.drop(DropReason::OutputQueueFull);
            return;
        }
        *self.counters.frames_out.entry(msg.kind()).or_default() += 1;
        self.transmits.push_back(Transmit { to, msg });
    }

    /// Queues an application event; the oldest goes when the queue is full.
    pub fn emit(&mut self, event: Event) {
        if self.events.len() >= MAX_QUEUED_OUTPUTS {
            self.events.pop_front();
            self.counters.drop(DropReason::EventQueueFull);
        }
        self.events.push_back(event);
    }

    /// Queues a link change.
    pub fn act(&mut self, action: Action) {
        if self.actions.len() < MAX_QUEUED_OUTPUTS {
            self.actions.push_back(action);
        }
    }

    /// Counts a drop.
    pub fn drop(&mut self, reason: DropReason) {
        self.counters.drop(reason);
    }

    /// The next output: events, then transmits, then actions.
    pub fn poll(&mut self) -> Option<Output> {
        if let Some(e) = pop_releasing(&mut self.events) {
            return Some(Output::Event(e));
        }
        if let Some(t) = pop_releasing(&mut self.transmits) {
            return Some(Output::Transmit(t));
        }
        pop_releasing(&mut self.actions).map(Output::Action)
    }
}

/// Pops the front of an output queue and frees the queue's buffer once it
/// is drained: a supernode's heartbeat tick queues a frame per link, and a
/// buffer kept at that size on every node was most of the simulator's
/// memory at 10^5 nodes. A driver drains after every input, so the queue is
/// usually empty between calls and nothing is lost by starting from zero.
fn pop_releasing<T>(queue: &mut VecDeque<T>) -> Option<T> {
    let item = queue.pop_front();
    if queue.is_empty() && queue.capacity() > 0 {
        *queue = VecDeque::new();
    }
    item
}
