//! Seeds and random draws for the world: splitmix64 derivation of per-node
//! seeds, and the latency and session distributions of the scenario file.

use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};

use skyhop_core::{SimTime, MILLIS, SECS};

use super::config::{Latency, Session};

pub use skyhop_protocol::mix::splitmix64;

/// A value derived from the world seed and a tuple of small integers, one
/// splitmix64 round per component, so that different tuples never share a
/// stream.
pub fn derive(seed: u64, parts: &[u64]) -> u64 {
    parts
        .iter()
        .fold(splitmix64(seed), |acc, p| splitmix64(acc ^ splitmix64(*p)))
}

/// A uniform number in [0, 1) from a derived value (its top 53 bits).
pub fn unit(v: u64) -> f64 {
    (v >> 11) as f64 / (1u64 << 53) as f64
}

/// The identity of node `index` in the world seeded by `seed`.
pub fn node_identity(seed: u64, index: u64) -> skyhop_protocol::Identity {
    let mut secret = [0u8; 32];
    for (i, chunk) in secret.chunks_mut(8).enumerate() {
        chunk.copy_from_slice(&derive(seed, &[1, index, i as u64]).to_le_bytes());
    }
    skyhop_protocol::Identity::from_secret(secret)
}

/// The RNG seed of incarnation `incarnation` of node `index`.
pub fn node_rng_seed(seed: u64, index: u64, incarnation: u64) -> u64 {
    derive(seed, &[2, index, incarnation])
}

/// The world's RNG streams, one per purpose (see [`stream_rng`]).
pub mod stream {
    /// Latencies and losses: the network model.
    pub const NETWORK: u64 = 1;
    /// Start times, bootstrap picks, sessions, kills and storms: the
    /// population.
    pub const CHURN: u64 = 2;
    /// Chat pairs, contacts and gaps: the workload.
    pub const CHAT: u64 = 3;
    /// Which location records are checked: the invariants.
    pub const INVARIANTS: u64 = 4;
    /// Who is hostile, their victims and their packet ids: the adversary.
    pub const ADVERSARY: u64 = 5;
    /// Flash crowds and the daily cycle: arrival and departure times, who
    /// goes.
    pub const DEMAND: u64 = 6;
}

/// A world RNG for one purpose (`stream`), so that e.g. changing the chat
/// rate does not change the latencies drawn, nor an invariant setting the
/// churn.
pub fn stream_rng(seed: u64, stream: u64) -> Xoshiro256PlusPlus {
    Xoshiro256PlusPlus::seed_from_u64(derive(seed, &[3, stream]))
}

/// A uniform draw in (0, 1]: safe under `ln`.
fn unit_open(rng: &mut Xoshiro256PlusPlus) -> f64 {
    1.0 - rng.random::<f64>()
}

/// A standard normal draw (Box-Muller).
fn normal(rng: &mut Xoshiro256PlusPlus) -> f64 {
    let u1 = unit_open(rng);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// Converts seconds or milliseconds (as f64) to [`SimTime`], saturating.
pub fn to_time(value: f64, unit: SimTime) -> SimTime {
    let v = value * unit as f64;
    if v.is_finite() && v > 0.0 {
        if v >= u64::MAX as f64 {
            u64::MAX
        } else {
            v as u64
        }
    } else {
        0
    }
}

/// Seconds to [`SimTime`].
pub fn secs(value: f64) -> SimTime {
    to_time(value, SECS)
}

/// Milliseconds to [`SimTime`].
pub fn millis(value: f64) -> SimTime {
    to_time(value, MILLIS)
}

/// Longest latency drawn, against absurd tails.
const MAX_LATENCY: SimTime = 10 * SECS;
/// Longest session drawn: a year.
const MAX_SESSION: SimTime = 365 * 24 * 3600 * SECS;

/// One one-way latency.
pub fn latency(rng: &mut Xoshiro256PlusPlus, l: &Latency) -> SimTime {
    let ms = match l {
        Latency::Constant { ms } => *ms,
        Latency::Uniform { min_ms, max_ms } => min_ms + (max_ms - min_ms) * rng.random::<f64>(),
        Latency::LogNormal { median_ms, sigma } => median_ms * (sigma * normal(rng)).exp(),
    };
    millis(ms).clamp(1, MAX_LATENCY)
}

/// One session length.
pub fn session(rng: &mut Xoshiro256PlusPlus, s: &Session) -> SimTime {
    let ln2 = std::f64::consts::LN_2;
    let u = unit_open(rng);
    let seconds = match s {
        Session::Exponential { median_s } => -(median_s / ln2) * u.ln(),
        Session::Weibull { median_s, shape } => {
            let scale = median_s / ln2.powf(1.0 / shape);
            scale * (-u.ln()).powf(1.0 / shape)
        }
        Session::Pareto { median_s, shape } => {
            let xm = median_s / 2f64.powf(1.0 / shape);
            xm * u.powf(-1.0 / shape)
        }
    };
    secs(seconds).clamp(MILLIS, MAX_SESSION)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn median_of(s: &Session) -> f64 {
        let mut rng = stream_rng(7, 0);
        let mut v: Vec<SimTime> = (0..20_001).map(|_| session(&mut rng, s)).collect();
        v.sort_unstable();
        v[10_000] as f64 / SECS as f64
    }

    #[test]
    fn session_distributions_have_the_configured_median() {
        for s in [
            Session::Exponential { median_s: 600.0 },
            Session::Weibull {
                median_s: 600.0,
                shape: 0.5,
            },
            Session::Pareto {
                median_s: 600.0,
                shape: 1.5,
            },
        ] {
            let m = median_of(&s);
            assert!((m - 600.0).abs() < 30.0, "{s:?}: median {m}");
        }
    }

    #[test]
    fn derived_seeds_differ_per_node_and_incarnation() {
        assert_ne!(node_identity(1, 0).id(), node_identity(1, 1).id());
        assert_ne!(node_identity(1, 0).id(), node_identity(2, 0).id());
        assert_ne!(node_rng_seed(1, 0, 0), node_rng_seed(1, 0, 1));
        assert_eq!(node_rng_seed(9, 3, 1), node_rng_seed(9, 3, 1));
    }
}
