//! The runtime's one clock read, and seeds for the core's RNG. The node task
//! reads the clock here once per wake-up; the demo seeds its identities here.

use std::io::Read;

use skyhop_core::SimTime;

/// Microseconds since the UNIX epoch: the `now` handed to the core.
///
/// The core never reads a clock (see STYLE.md); the runtime reads the wall
/// clock here, once per wake-up of a node task, and hands the value in.
/// Wall time rather than `Instant` because the core stamps chat messages and
/// host-cache entries that outlive the process.
#[allow(clippy::disallowed_methods)] // The runtime's single clock read; everything else takes `now`.
pub fn now_micros() -> SimTime {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The wall clock made monotonic: the core's contract wants `now` never to
/// go back, and the wall clock can (NTP steps, a changed date).
#[derive(Debug, Default)]
pub struct MonotonicClock {
    /// The last value returned.
    last: SimTime,
}

impl MonotonicClock {
    /// A clock that never reads earlier than `start`.
    pub fn starting_at(start: SimTime) -> MonotonicClock {
        MonotonicClock { last: start }
    }

    /// The current time, never less than the last value returned.
    pub fn now(&mut self) -> SimTime {
        self.last = self.last.max(now_micros());
        self.last
    }
}

/// Eight bytes from the operating system's randomness, or `None` where
/// `/dev/urandom` cannot be read.
pub fn os_random_u64() -> Option<u64> {
    let mut bytes = [0u8; 8];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .ok()?;
    Some(u64::from_le_bytes(bytes))
}

pub use skyhop_protocol::mix::SplitMix64;

/// A seed for a node's core RNG: fresh OS randomness mixed with the node's
/// secret, so two nodes never share a seed even if `/dev/urandom` is missing.
pub fn core_seed(secret: &[u8; 32]) -> u64 {
    let mut mix = SplitMix64(os_random_u64().unwrap_or(0));
    let mut seed = mix.next_u64();
    for chunk in secret.chunks(8) {
        let mut b = [0u8; 8];
        b.copy_from_slice(chunk);
        seed ^= SplitMix64(u64::from_le_bytes(b) ^ seed).next_u64();
    }
    seed
}
