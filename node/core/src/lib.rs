//! The sans-IO overlay core: everything a skyhop node decides, with no clock,
//! no global RNG and no sockets.
//!
//! [`Node`] is the state machine; the libp2p runtime and the simulator are
//! thin drivers around it, so the same routing, join, failover and chat code
//! runs on real sockets and in a world of a million simulated nodes.
//!
//! [`Node`] is a facade over sub-machines, each a type in its own file
//! that owns its state and opens with what it owns:
//! - `links`: open links, dials in flight, banned peers, heartbeat choices;
//! - `host_cache`: supernodes known, for joining and rejoining;
//! - `attach`: how an ordinary node finds, joins and keeps a supernode;
//! - `supernode`: a supernode's clients, `Join` answers, record refresh;
//! - `home`: location records held as a home supernode, and replication
//!   (the records themselves in [`directory`]);
//! - `routing`: DESIGN.md's routing steps, location hops, held packets,
//!   the duplicate window;
//! - `listing`: a supernode's clients that chose to be listed;
//! - [`names`]: name claims held as a home supernode of a name's key,
//!   and this node's own claim;
//! - `pending`: every request awaiting a reply, keyed by request id;
//! - `delivery`: chat sending, retries, acks and receiving (the queues in
//!   [`chat`]);
//! - [`table`]: the supernode's XOR k-buckets and leaf set.
//!
//! Sub-machines never call each other; [`Node`] dispatches every input and
//! carries out what they decide, and all outputs leave through one door,
//! [`Node::poll_output`].

mod attach;
pub mod budget;
pub mod chat;
pub mod config;
mod context;
pub mod counters;
mod delivery;
pub mod directory;
pub mod events;
pub mod fuzzing;
mod home;
mod host_cache;
pub mod inbox;
mod links;
pub mod listing;
mod lost;
pub mod mailbox;
pub mod names;
mod node;
mod pacer;
mod pending;
mod ranked;
pub mod role;
mod routing;
mod small_map;
mod supernode;
pub mod table;
mod timers;

#[cfg(test)]
mod harness;
#[cfg(test)]
mod scenarios;

pub use budget::{BudgetConfig, MessageClass, Rate};
pub use config::{BootstrapPeer, ConfigError, NodeConfig};
pub use counters::{Counters, DropReason};
pub use delivery::ChatError;
pub use events::{Action, ChatFailure, Event, HostCacheEntry, Output, Status, Transmit};
pub use inbox::ReplayMark;
pub use links::refusal_for;
pub use listing::WhoError;
pub use mailbox::MailboxConfig;
pub use names::{LookupError, NameState};
pub use node::{FrameVerdict, Node};
pub use role::AutoRoleConfig;

/// Removes the entry of `map` whose value ranks lowest by `rank` (ties go to
/// the lowest key, so the choice is deterministic), by a scan: for small
/// maps, where an index would cost more memory than the scan costs time
/// (large ones use [`ranked::RankedMap`]).
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

/// Frees an emptied map's node: a `BTreeMap` keeps its root leaf (eleven
/// entries' worth, ~900 bytes for a pending request) after its last entry
/// goes, and maps that are briefly used on every node (a join in flight, a
/// dial) would otherwise cost that much per node for good, a gigabyte at
/// 10^6 simulated nodes.
pub(crate) fn release_if_empty<K, V>(map: &mut std::collections::BTreeMap<K, V>) {
    if map.is_empty() {
        *map = std::collections::BTreeMap::new();
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
