//! Demand that changes over a run: flash crowds (waves of newcomers) and a
//! compressed daily cycle that users arrive and go by.
//!
//! It owns its RNG stream, drawn only by scenarios that have crowds or a
//! day, so that every other scenario draws what it drew before.

use rand::rngs::Xoshiro256PlusPlus;
use rand::RngExt;

use skyhop_core::{partial_shuffle, SimTime};

use super::config::{Crowd, DayCycle, SimConfig};
use super::dist::{self, secs};

/// The demand of a run; see the module doc.
pub struct Demand {
    /// The flash crowds.
    crowds: Vec<Crowd>,
    /// The daily cycle, if any.
    day: Option<DayCycle>,
    /// Users at the peak of the day.
    peak: u32,
    /// Arrival and departure times, and who goes.
    rng: Xoshiro256PlusPlus,
}

impl Demand {
    /// The demand of `cfg`, seeded by the world seed.
    pub fn new(cfg: &SimConfig, seed: u64) -> Demand {
        Demand {
            crowds: cfg.churn.crowds.clone(),
            day: cfg.churn.day.clone(),
            peak: cfg.population.ordinary,
            rng: dist::stream_rng(seed, dist::stream::DEMAND),
        }
    }

    /// The arrival times of every crowd's newcomers, in the order drawn.
    pub fn crowd_arrivals(&mut self) -> Vec<SimTime> {
        let mut at = Vec::new();
        for c in &self.crowds {
            let (start, spread) = (secs(c.at_s), secs(c.spread_s));
            for _ in 0..c.count {
                at.push(start + (spread as f64 * self.rng.random::<f64>()) as SimTime);
            }
        }
        at
    }

    /// The first tick of the daily cycle, if there is one.
    pub fn first_tick(&self) -> Option<SimTime> {
        self.day.as_ref().map(|d| secs(d.start_s))
    }

    /// The live users the day wants at `now`.
    pub fn target(&self, now: SimTime) -> Option<usize> {
        let d = self.day.as_ref()?;
        let t = (now as f64 / secs(1.0) as f64 - d.start_s) / d.period_s;
        let level = d.low_fraction
            + (1.0 - d.low_fraction) * (1.0 + (std::f64::consts::TAU * t).cos()) / 2.0;
        Some((f64::from(self.peak) * level).round() as usize)
    }

    /// The tick's length.
    pub fn tick(&self) -> SimTime {
        self.day.as_ref().map_or(0, |d| secs(d.tick_s))
    }

    /// A uniform time within the tick that begins at `now`.
    pub fn within_tick(&mut self, now: SimTime) -> SimTime {
        now + (self.tick() as f64 * self.rng.random::<f64>()) as SimTime
    }

    /// `k` of `users` (sorted here), drawn without replacement.
    pub fn pick(&mut self, mut users: Vec<u32>, k: usize) -> Vec<u32> {
        users.sort_unstable();
        let k = k.min(users.len());
        partial_shuffle(&mut users, k, &mut self.rng);
        users.truncate(k);
        users
    }
}
