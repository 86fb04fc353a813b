//! The sans-IO overlay core: everything a skyhop node decides, with no clock,
//! no global RNG and no sockets.
//!
//! [`Node`] is the state machine; the libp2p runtime and the simulator are
//! thin drivers around it, so the same routing, join, failover and chat code
//! runs on real sockets and in a world of a million simulated nodes.
//!
//! Sub-machines, each with the same feed/drain shape:
//! - [`table`]: the supernode's XOR k-buckets and leaf set;
//! - [`directory`]: location records held as a home supernode, and the
//!   location cache used for routing;
//! - [`chat`]: the sender's retry queue and the receiver's duplicate and
//!   ordering window (packet duplicates use `skyhop_protocol::recent`).

pub mod chat;
pub mod config;
pub mod counters;
pub mod directory;
pub mod events;
mod node;
pub mod table;
mod timers;

#[cfg(test)]
mod harness;
#[cfg(test)]
mod scenarios;

pub use config::{BootstrapPeer, ConfigError, NodeConfig};
pub use counters::{Counters, DropReason};
pub use events::{Action, ChatFailure, Event, HostCacheEntry, Output, Status, Transmit};
pub use node::{ChatError, Node};

/// Removes the entry of `map` whose value ranks lowest by `rank` (ties go to
/// the lowest key, so the choice is deterministic): how every bounded map in
/// the core makes room.
pub(crate) fn evict_lowest<K: Ord + Copy, V, R: Ord>(
    map: &mut std::collections::BTreeMap<K, V>,
    rank: impl Fn(&V) -> R,
) {
    let victim = map
        .iter()
        .min_by_key(|(k, v)| (rank(v), **k))
        .map(|(k, _)| *k);
    if let Some(k) = victim {
        map.remove(&k);
    }
}

/// Moves a uniformly random choice of `n` items (fewer if `items` is
/// shorter) to the front of `items`, in random order, and returns them: a
/// partial Fisher-Yates shuffle that draws exactly one number per chosen
/// item from `rng`, so that callers (the core, the simulator's churn) stay
/// byte-for-byte reproducible from their seeds.
pub fn partial_shuffle<'a, T, R: rand::Rng + ?Sized>(
    items: &'a mut [T],
    n: usize,
    rng: &mut R,
) -> &'a mut [T] {
    use rand::RngExt;
    let take = n.min(items.len());
    for i in 0..take {
        let j = rng.random_range(i..items.len());
        items.swap(i, j);
    }
    &mut items[..take]
}

/// Virtual or real time in microseconds since an epoch the driver chooses.
pub type SimTime = u64;

/// One millisecond of [`SimTime`].
pub const MILLIS: SimTime = 1_000;
/// One second of [`SimTime`].
pub const SECS: SimTime = 1_000_000;
