//! The scenario file: a TOML document that describes a world (population,
//! network model, churn, chat workload, invariant settings and node tunables).
//!
//! The schema is documented for users in `sim-configs/README.md`. Every table
//! refuses unknown fields, so a misspelt key is an error that names the key,
//! the line and the column, never a silently ignored setting.

use std::path::Path;

use serde::{Deserialize, Serialize};

use skyhop_core::NodeConfig;

use super::adversary::AdversaryConfig;
use super::SimError;

/// A whole scenario.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimConfig {
    /// A name for reports.
    #[serde(default)]
    pub name: String,
    /// The world seed used when `--seed` is not given.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Simulated seconds to run.
    pub duration_s: f64,
    /// Seconds after which metrics windows (maintenance bytes) start.
    #[serde(default = "default_warmup")]
    pub warmup_s: f64,
    /// Seconds between samples of attachment, invariants and progress.
    #[serde(default = "default_sample_interval")]
    pub sample_interval_s: f64,
    /// Events processed at most before the run is stopped as a livelock.
    #[serde(default = "default_max_events")]
    pub max_events: u64,
    /// Who is in the world.
    pub population: Population,
    /// The network model.
    #[serde(default)]
    pub network: Network,
    /// Churn and failure events.
    #[serde(default)]
    pub churn: Churn,
    /// The chat workload.
    #[serde(default)]
    pub workload: Workload,
    /// Invariant checking.
    #[serde(default)]
    pub invariants: Invariants,
    /// Node tunables (the fields of `core::NodeConfig`, times in
    /// microseconds); `role`, `bootstrap` and `listen_addrs` are set by the
    /// simulator.
    #[serde(default)]
    pub node: NodeConfig,
    /// Hostile nodes, if any (see `adversary/mod.rs`); left out of the metrics'
    /// copy of the scenario when absent, so older runs stay byte-identical.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adversary: Option<AdversaryConfig>,
    /// The names workload, if any (see `names.rs`); left out of the
    /// metrics' copy of the scenario when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub names: Option<super::names::NamesConfig>,
}

fn default_seed() -> u64 {
    1
}
fn default_warmup() -> f64 {
    60.0
}
fn default_sample_interval() -> f64 {
    10.0
}
fn default_max_events() -> u64 {
    2_000_000_000
}

/// Who is in the world, and how they start.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Population {
    /// Supernodes at the start.
    pub supernodes: u32,
    /// Ordinary nodes at the start (and kept steady under churn).
    #[serde(default)]
    pub ordinary: u32,
    /// Supernodes start spread uniformly over this many seconds.
    #[serde(default = "default_sn_spread")]
    pub sn_start_spread_s: f64,
    /// Ordinary nodes start at `on_start_at_s` spread over this many seconds.
    #[serde(default = "default_on_spread")]
    pub on_start_spread_s: f64,
    /// When ordinary nodes begin to arrive.
    #[serde(default = "default_on_start")]
    pub on_start_at_s: f64,
    /// Bootstrap supernodes each node is given.
    #[serde(default = "default_bootstrap_peers")]
    pub bootstrap_peers: u32,
    /// Share of ordinary nodes behind a NAT: they dial out, but nobody can
    /// dial them.
    #[serde(default)]
    pub nat_fraction: f64,
}

fn default_sn_spread() -> f64 {
    5.0
}
fn default_on_spread() -> f64 {
    30.0
}
fn default_on_start() -> f64 {
    10.0
}
fn default_bootstrap_peers() -> u32 {
    3
}

/// A one-way latency distribution.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "dist", rename_all = "snake_case", deny_unknown_fields)]
pub enum Latency {
    /// Always the same.
    Constant {
        /// Milliseconds.
        ms: f64,
    },
    /// Uniform between two bounds.
    Uniform {
        /// Lower bound, milliseconds.
        min_ms: f64,
        /// Upper bound, milliseconds.
        max_ms: f64,
    },
    /// Log-normal around a median.
    LogNormal {
        /// The median, milliseconds.
        median_ms: f64,
        /// Standard deviation of the underlying normal.
        sigma: f64,
    },
}

/// The network model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Network {
    /// Sites nodes are spread over; two nodes in one site are on a LAN.
    pub sites: u32,
    /// One-way latency of a link within a site, drawn once per link.
    pub lan_latency: Latency,
    /// One-way latency of a link between sites, drawn once per link.
    pub wan_latency: Latency,
    /// Probability that a frame's first transmission is lost.
    pub loss: f64,
    /// TCP retransmission timeout a lost frame waits, milliseconds.
    pub rto_ms: f64,
    /// How long a dial into a partition or to nobody waits before failing.
    pub connect_timeout_ms: f64,
    /// Decode every frame again after encoding it (slower, checks the codec).
    pub roundtrip_codec: bool,
    /// Network partitions.
    pub partitions: Vec<Partition>,
}

impl Default for Network {
    fn default() -> Network {
        Network {
            sites: 1,
            lan_latency: Latency::Uniform {
                min_ms: 0.2,
                max_ms: 1.0,
            },
            wan_latency: Latency::LogNormal {
                median_ms: 40.0,
                sigma: 0.5,
            },
            loss: 0.0,
            rto_ms: 200.0,
            connect_timeout_ms: 3000.0,
            roundtrip_codec: false,
            partitions: Vec::new(),
        }
    }
}

/// A cut between the listed sites and all others, for a while.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Partition {
    /// When the cut starts, seconds.
    pub start_s: f64,
    /// When it heals, seconds.
    pub end_s: f64,
    /// The sites on one side.
    pub sites: Vec<u32>,
}

/// A session-time distribution, given by its median.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "dist", rename_all = "snake_case", deny_unknown_fields)]
pub enum Session {
    /// Memoryless sessions.
    Exponential {
        /// Median session, seconds.
        median_s: f64,
    },
    /// Weibull sessions (shape < 1: many short, some long).
    Weibull {
        /// Median session, seconds.
        median_s: f64,
        /// Shape parameter k.
        shape: f64,
    },
    /// Pareto sessions (heavy tail).
    Pareto {
        /// Median session, seconds.
        median_s: f64,
        /// Shape parameter alpha.
        shape: f64,
    },
}

/// Churn and failure events.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Churn {
    /// Session times of ordinary nodes; none means they stay.
    pub session: Option<Session>,
    /// Fraction of departures that leave gracefully (the rest crash).
    pub graceful_fraction: f64,
    /// When sessions start to end; before it nobody departs.
    pub start_s: f64,
    /// Supernode kills.
    pub sn_kills: Vec<SnKill>,
    /// Restart storms of ordinary nodes.
    pub restart_storms: Vec<RestartStorm>,
    /// Flash crowds: waves of newcomers (left out of the metrics' copy of
    /// the scenario when there are none, as are the fields below).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub crowds: Vec<Crowd>,
    /// A daily cycle of demand: users arrive and go so that the live users
    /// follow it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub day: Option<DayCycle>,
}

/// A wave of ordinary newcomers (new identities), arriving uniformly within
/// a window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Crowd {
    /// When the first may arrive, seconds.
    pub at_s: f64,
    /// How many arrive.
    pub count: u32,
    /// The window's length, seconds.
    pub spread_s: f64,
}

/// A compressed day: from `start_s` on, the live users follow
/// `ordinary x (low + (1 - low) x (1 + cos(2 pi (t - start_s) / period_s)) / 2)`,
/// from the peak (`population.ordinary`) down to `low_fraction` of it half
/// a period later and back. Every `tick_s` the users missing arrive
/// (newcomers) and the users too many go (gracefully with
/// `graceful_fraction`), at uniform times within the tick.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DayCycle {
    /// The day's length, seconds.
    pub period_s: f64,
    /// Users at night, as a share of the peak.
    pub low_fraction: f64,
    /// When the day begins (at its peak), seconds.
    pub start_s: f64,
    /// How often arrivals and departures are drawn, seconds.
    #[serde(default = "default_day_tick")]
    pub tick_s: f64,
}

fn default_day_tick() -> f64 {
    5.0
}

fn is_zero_f64(v: &f64) -> bool {
    *v == 0.0
}

/// A fraction of the live supernodes crash at once.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnKill {
    /// When, seconds.
    pub at_s: f64,
    /// Fraction of live supernodes killed.
    pub fraction: f64,
    /// Of those, the share that leave gracefully: each hands its clients
    /// and records over the way a demoting supernode does, then goes.
    #[serde(default, skip_serializing_if = "is_zero_f64")]
    pub graceful_fraction: f64,
}

/// A fraction of the live ordinary nodes restart (same identity, host cache
/// kept) at uniform times within a window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestartStorm {
    /// When the window opens, seconds.
    pub at_s: f64,
    /// The window's length, seconds.
    pub window_s: f64,
    /// Fraction of live ordinary nodes restarted.
    pub fraction: f64,
    /// How long a restarting node is down, seconds.
    #[serde(default = "default_downtime")]
    pub downtime_s: f64,
}

fn default_downtime() -> f64 {
    1.0
}

/// The chat workload.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Workload {
    /// Messages per live user per minute.
    pub rate_per_node_per_min: f64,
    /// First message, seconds (default: at `warmup_s`).
    pub start_s: Option<f64>,
    /// Text length of each message, bytes.
    pub body_bytes: usize,
    /// The "within deadline" delivery bound, milliseconds.
    pub deadline_ms: f64,
    /// 0: each message goes to a uniformly random live user, attached or
    /// not. Otherwise each sender keeps this many contacts (drawn uniformly
    /// among live users, replaced when they go down) and writes to one of
    /// them.
    pub contacts: u32,
    /// Fraction of messages written to a user who is down (in a restart
    /// storm's downtime), to be kept on its home supernodes until it comes
    /// back; 0 writes to live users only.
    #[serde(skip_serializing_if = "is_zero")]
    pub to_offline: f64,
}

fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

impl Default for Workload {
    fn default() -> Workload {
        Workload {
            rate_per_node_per_min: 1.0,
            start_s: None,
            body_bytes: 64,
            deadline_ms: 5000.0,
            contacts: 0,
            to_offline: 0.0,
        }
    }
}

/// Invariant checking.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Invariants {
    /// Seconds without a supernode-set or partition change after which the
    /// overlay counts as steady.
    pub settle_s: f64,
    /// Seconds an ordinary node must have been attached before its records
    /// are checked.
    pub record_grace_s: f64,
    /// Attached ordinary nodes whose records are checked per sample (a
    /// deterministic sample; 0 checks none).
    pub record_sample: u32,
    /// Check that every home supernode holds the record (else only that at
    /// least one does).
    pub all_replicas: bool,
}

impl Default for Invariants {
    fn default() -> Invariants {
        Invariants {
            settle_s: 60.0,
            record_grace_s: 15.0,
            record_sample: 2000,
            all_replicas: true,
        }
    }
}

impl SimConfig {
    /// Reads and checks a scenario file.
    pub fn load(path: &Path) -> Result<SimConfig, SimError> {
        let text = std::fs::read_to_string(path).map_err(|source| SimError::Read {
            path: path.display().to_string(),
            source,
        })?;
        SimConfig::parse(&text, &path.display().to_string())
    }

    /// Parses and checks a scenario; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<SimConfig, SimError> {
        let cfg: SimConfig = toml::from_str(text).map_err(|e| SimError::Parse {
            path: origin.to_string(),
            message: e.to_string().trim_end().to_string(),
        })?;
        cfg.validate().map_err(|(field, why)| SimError::Invalid {
            path: origin.to_string(),
            field,
            why,
        })?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), (String, String)> {
        let bad = |field: &str, why: &str| Err((field.to_string(), why.to_string()));
        let nonneg = |v: f64| v.is_finite() && v >= 0.0;
        let prob = |v: f64| v.is_finite() && (0.0..=1.0).contains(&v);
        if !(self.duration_s.is_finite() && self.duration_s > 0.0) {
            return bad("duration_s", "must be a positive number of seconds");
        }
        if self.duration_s > 1.0e7 {
            return bad("duration_s", "must be at most 10^7 seconds");
        }
        if !nonneg(self.warmup_s) || self.warmup_s >= self.duration_s {
            return bad("warmup_s", "must be at least 0 and below duration_s");
        }
        if !(self.sample_interval_s.is_finite() && self.sample_interval_s >= 0.1) {
            return bad("sample_interval_s", "must be at least 0.1 seconds");
        }
        let p = &self.population;
        if p.supernodes == 0 {
            return bad("population.supernodes", "must be at least 1");
        }
        if u64::from(p.supernodes) + u64::from(p.ordinary) > 50_000_000 {
            return bad("population", "at most 5*10^7 nodes");
        }
        for (f, v) in [
            ("population.sn_start_spread_s", p.sn_start_spread_s),
            ("population.on_start_spread_s", p.on_start_spread_s),
            ("population.on_start_at_s", p.on_start_at_s),
        ] {
            if !nonneg(v) {
                return bad(f, "must be a non-negative number of seconds");
            }
        }
        if p.bootstrap_peers == 0 {
            return bad("population.bootstrap_peers", "must be at least 1");
        }
        if !prob(p.nat_fraction) {
            return bad("population.nat_fraction", "must be a probability");
        }
        let n = &self.network;
        if n.sites == 0 || n.sites > 65_535 {
            return bad("network.sites", "must be between 1 and 65535");
        }
        for (f, l) in [
            ("network.lan_latency", &n.lan_latency),
            ("network.wan_latency", &n.wan_latency),
        ] {
            let ok = match l {
                Latency::Constant { ms } => nonneg(*ms),
                Latency::Uniform { min_ms, max_ms } => {
                    nonneg(*min_ms) && nonneg(*max_ms) && min_ms <= max_ms
                }
                Latency::LogNormal { median_ms, sigma } => {
                    nonneg(*median_ms) && nonneg(*sigma) && *sigma <= 5.0
                }
            };
            if !ok {
                return bad(f, "latencies must be non-negative (min <= max, sigma <= 5)");
            }
        }
        if !(prob(n.loss) && n.loss < 0.9) {
            return bad("network.loss", "must be a probability below 0.9");
        }
        if !(nonneg(n.rto_ms) && nonneg(n.connect_timeout_ms)) {
            return bad("network.rto_ms", "times must be non-negative");
        }
        for (i, part) in n.partitions.iter().enumerate() {
            if !(nonneg(part.start_s) && part.end_s.is_finite() && part.end_s > part.start_s) {
                return bad(
                    &format!("network.partitions[{i}]"),
                    "needs 0 <= start_s < end_s",
                );
            }
            if part.sites.iter().any(|s| *s >= n.sites) {
                return bad(
                    &format!("network.partitions[{i}].sites"),
                    "names a site beyond network.sites",
                );
            }
        }
        let c = &self.churn;
        if let Some(s) = &c.session {
            let (median, shape) = match s {
                Session::Exponential { median_s } => (*median_s, 1.0),
                Session::Weibull { median_s, shape } | Session::Pareto { median_s, shape } => {
                    (*median_s, *shape)
                }
            };
            if !(median.is_finite() && median > 0.0 && shape.is_finite() && shape > 0.0) {
                return bad("churn.session", "median_s and shape must be positive");
            }
        }
        if !prob(c.graceful_fraction) {
            return bad("churn.graceful_fraction", "must be between 0 and 1");
        }
        if !nonneg(c.start_s) {
            return bad("churn.start_s", "must be non-negative");
        }
        for (i, k) in c.sn_kills.iter().enumerate() {
            if !(nonneg(k.at_s) && prob(k.fraction) && prob(k.graceful_fraction)) {
                return bad(
                    &format!("churn.sn_kills[{i}]"),
                    "needs at_s >= 0, and fraction and graceful_fraction between 0 and 1",
                );
            }
        }
        for (i, crowd) in c.crowds.iter().enumerate() {
            if !(nonneg(crowd.at_s) && nonneg(crowd.spread_s)) {
                return bad(
                    &format!("churn.crowds[{i}]"),
                    "needs non-negative at_s and spread_s",
                );
            }
        }
        if let Some(d) = &c.day {
            if !(nonneg(d.start_s)
                && nonneg(d.period_s)
                && d.period_s > 0.0
                && nonneg(d.tick_s)
                && d.tick_s > 0.0
                && prob(d.low_fraction))
            {
                return bad(
                    "churn.day",
                    "needs positive period_s and tick_s, start_s >= 0 and low_fraction between 0 and 1",
                );
            }
        }
        for (i, r) in c.restart_storms.iter().enumerate() {
            if !(nonneg(r.at_s) && nonneg(r.window_s) && prob(r.fraction) && nonneg(r.downtime_s)) {
                return bad(
                    &format!("churn.restart_storms[{i}]"),
                    "needs non-negative times and a fraction between 0 and 1",
                );
            }
        }
        let w = &self.workload;
        if !(nonneg(w.rate_per_node_per_min) && w.rate_per_node_per_min <= 600.0) {
            return bad(
                "workload.rate_per_node_per_min",
                "must be between 0 and 600",
            );
        }
        if w.start_s.is_some_and(|s| !nonneg(s)) {
            return bad("workload.start_s", "must be non-negative");
        }
        if w.body_bytes == 0 || w.body_bytes > skyhop_protocol::MAX_CHAT_BODY {
            return bad("workload.body_bytes", "must be between 1 and 4096");
        }
        if w.contacts > 1024 {
            return bad("workload.contacts", "must be at most 1024");
        }
        if !(nonneg(w.deadline_ms) && w.deadline_ms > 0.0) {
            return bad("workload.deadline_ms", "must be positive");
        }
        let inv = &self.invariants;
        if !(nonneg(inv.settle_s) && nonneg(inv.record_grace_s)) {
            return bad("invariants.settle_s", "times must be non-negative");
        }
        if let Err(e) = self.node.validate() {
            return Err(("node".to_string(), e.to_string()));
        }
        if let Some(a) = &self.adversary {
            a.validate()?;
        }
        Ok(())
    }
}
