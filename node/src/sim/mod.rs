//! The deterministic simulator: `skyhop sim CONFIG [--seed N] [--out FILE]
//! [--plots DIR]` runs many [`skyhop_core::Node`]s in one discrete-event
//! world, with a seeded network model (latency per link class, loss as TCP
//! retransmission delay, partitions), churn (session times, supernode kills,
//! restart storms) and a chat workload, checks invariants as it goes, and
//! reports metrics.
//!
//! - [`config`]: the scenario file (TOML), documented in `sim-configs/README.md`;
//! - `world`: the event queue and loop, dispatching each event (`event`) to
//!   the parts below, and the one drain of a node's outputs;
//! - `population`: node slots, starts, stops and churn;
//! - `net`: the network model (links, latency, loss, partitions);
//! - `workload`: the chat workload;
//! - `recorder`: what the metrics count, and the metrics at the end;
//! - `invariants`: the checks that stop a run;
//! - `verifier`: signature checks of frames in flight on the second core;
//! - `queue` and `dist`: the calendar queue, seeds and distributions;
//! - [`metrics`]: the JSON document a run writes;
//! - `report`: the summary table, wall-clock figures and SVG plots.
//!
//! The metrics JSON depends only on the seed and the scenario: two runs of
//! one seed write identical bytes. Wall-clock figures (time, events per
//! second, peak memory) go to the summary and to `FILE.perf.json` only.
//!
//! # Implementation notes
//! Seeds flow from the world seed: each node's identity secret and RNG seed
//! are derived with splitmix64 from the world seed and the node's index (and
//! incarnation, for the RNG), and the world draws latencies, churn, chat
//! pairs and the invariants' record samples from four separate seeded
//! streams (`dist::stream`), so that a setting of one part never moves the
//! draws of another. Nothing reads a clock except the wall-clock timer in
//! [`run`], which only feeds the perf report.

mod adversary;
pub mod config;
mod cut;
mod demand;
mod dist;
mod event;
mod handover;
mod invariants;
pub mod metrics;
mod names;
mod net;
mod population;
mod queue;
mod recorder;
mod report;
mod verifier;
mod workload;
mod world;

#[cfg(test)]
mod tests;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

pub use config::SimConfig;
pub use metrics::Metrics;
pub use report::Perf;

use skyhop_core::SECS;

/// Arguments of `skyhop sim`.
#[derive(Clone, Debug, clap::Args)]
pub struct SimArgs {
    /// The scenario file (TOML), e.g. sim-configs/lan-100.toml.
    pub config: PathBuf,
    /// World seed (default: the scenario's `seed`, else 1).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Write the metrics JSON here (and wall-clock figures to FILE.perf.json).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Write SVG plots (hops, delivery, attachment, supernode count; the
    /// scenario's events marked) into this directory.
    #[arg(long)]
    pub plots: Option<PathBuf>,
    /// Print no summary table.
    #[arg(long)]
    pub quiet: bool,
}

/// Why a simulation could not run or report.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The scenario file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The scenario is not valid TOML for the schema (the message names the
    /// field, line and column).
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// toml's message, with line and column.
        message: String,
    },
    /// A value is out of range.
    #[error("{path}: field `{field}` {why}")]
    Invalid {
        /// The file.
        path: String,
        /// The field.
        field: String,
        /// What is wrong.
        why: String,
    },
    /// An output file cannot be written.
    #[error("cannot write {path}: {message}")]
    Write {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
}

/// Runs a scenario with `seed` and returns its metrics; pure: the same
/// arguments give the same metrics.
pub fn simulate(cfg: &SimConfig, seed: u64) -> Metrics {
    world::World::new(cfg.clone(), seed).run(&mut ())
}

/// The metrics as pretty JSON (byte-identical for one seed and scenario).
pub fn to_json(m: &Metrics) -> String {
    let mut s = serde_json::to_string_pretty(m).expect("metrics serialize to JSON");
    s.push('\n');
    s
}

struct Bar(indicatif::ProgressBar);

impl world::Progress for Bar {
    fn at(&mut self, now: skyhop_core::SimTime) {
        self.0.set_position(now / SECS);
    }
}

fn write(path: &Path, text: &str) -> Result<(), SimError> {
    std::fs::write(path, text).map_err(|e| SimError::Write {
        path: path.display().to_string(),
        message: e.to_string(),
    })
}

/// `skyhop sim`: runs the scenario, prints the summary, writes the outputs.
/// Returns whether the run passed (no invariant violated).
pub fn run(args: &SimArgs) -> Result<bool, SimError> {
    let cfg = SimConfig::load(&args.config)?;
    let seed = args.seed.unwrap_or(cfg.seed);
    let world = world::World::new(cfg.clone(), seed);
    let bar = if std::io::stderr().is_terminal() {
        let pb = indicatif::ProgressBar::new(cfg.duration_s.ceil() as u64);
        pb.set_style(
            indicatif::ProgressStyle::with_template(
                "{elapsed_precise} [{bar:40}] {pos}/{len} simulated s",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        Some(pb)
    } else {
        None
    };
    let (metrics, wall_s) = {
        // The one clock read of the simulator: wall-clock time for the perf
        // report. It never reaches the world or the metrics JSON.
        #[allow(clippy::disallowed_methods)]
        let started = std::time::Instant::now();
        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match &bar {
            Some(pb) => world.run(&mut Bar(pb.clone())),
            None => world.run(&mut ()),
        }));
        let metrics = match ran {
            Ok(m) => m,
            Err(panic) => {
                // A broken invariant inside a node: say how to reproduce it.
                eprintln!(
                    "skyhop sim: panicked in {} with seed {seed}; reproduce with: skyhop sim {} --seed {seed}",
                    args.config.display(),
                    args.config.display()
                );
                std::panic::resume_unwind(panic)
            }
        };
        (metrics, started.elapsed().as_secs_f64())
    };
    if let Some(pb) = bar {
        pb.finish_and_clear();
    }
    let perf = Perf {
        wall_s: (wall_s * 1000.0).round() / 1000.0,
        events_per_s: (metrics.events as f64 / wall_s.max(1e-9)).round(),
        speedup: ((metrics.simulated_s / wall_s.max(1e-9)) * 10.0).round() / 10.0,
        peak_rss_kib: report::peak_rss_kib(),
    };
    if let Some(out) = &args.out {
        write(out, &to_json(&metrics))?;
        let mut perf_path = out.clone().into_os_string();
        perf_path.push(".perf.json");
        let perf_json = serde_json::to_string_pretty(&perf).expect("perf serializes") + "\n";
        write(Path::new(&perf_path), &perf_json)?;
    }
    if let Some(dir) = &args.plots {
        report::plots(&metrics, dir)?;
    }
    if !args.quiet {
        print!("{}", report::summary(&metrics, &perf));
    }
    if let Some(v) = &metrics.violation {
        eprintln!(
            "skyhop sim: invariant violated in {} with seed {seed} at {:.3} s (event {}): {}\n\
             reproduce with: skyhop sim {} --seed {seed}",
            args.config.display(),
            v.time_s,
            v.event,
            v.what,
            args.config.display()
        );
    }
    Ok(metrics.passed)
}
