//! What a partition does to users, measured: the chats sent across a cut
//! while it lasts and how each ended (the target: "unreachable" or timed
//! out, never "not found"), and how long the overlay takes to recover
//! after the last heal: until the records are back at their true homes
//! (the closest live supernodes of the whole network, not of one side),
//! and until every chat sent from then on is delivered.
//!
//! It only reads the world (no RNG, no node input), so a scenario without
//! partitions runs and reports exactly as before, and one with them gives
//! the same bytes for the same seed.
//!
//! # Implementation notes
//! Chats are tracked from their send if they cross a cut or are sent after
//! the last heal began; both are a bounded share of the workload. Records
//! are sampled at the world's sample ticks after the heal, every attached
//! ordinary node (attached for `record_grace_s`), until a sample finds all
//! of them at home; then sampling stops.

use std::collections::BTreeMap;

use serde::Serialize;
use skyhop_core::{ChatFailure, SimTime, SECS};
use skyhop_protocol::{MsgId, NodeId};

use super::config::SimConfig;
use super::dist::secs;
use super::invariants::closest_homes;
use super::population::Population;

/// A chat followed for the partition figures.
struct Followed {
    /// When it was sent.
    sent_at: SimTime,
    /// Whether a cut separated its ends when it was sent.
    across: bool,
    /// Whether an end was not attached when it was sent.
    unattached: bool,
    /// Delivered (true) or failed, once known.
    outcome: Option<Result<(), ChatFailure>>,
}

/// The partition figures of a run: see the module doc.
pub struct CutWatch {
    /// When the last cut heals (None: the scenario has no partition).
    heal: Option<SimTime>,
    /// Home supernodes per record, and whether all must hold it.
    replicas: usize,
    all_replicas: bool,
    /// How long a node must have been attached for its record to count.
    record_grace: SimTime,
    /// The chats followed, by (sender slot, message id).
    chats: BTreeMap<(u32, MsgId), Followed>,
    /// Records at their true homes after the heal: (time, checked, at home).
    record_samples: Vec<(SimTime, u64, u64)>,
    /// Set once a sample found every record at home.
    records_home_at: Option<SimTime>,
}

/// The partition figures, in the metrics JSON.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PartitionMetrics {
    /// When the last cut healed, seconds.
    pub heal_s: f64,
    /// Chats sent while a cut separated their ends.
    pub across_sent: u64,
    /// Of them, sent while an end was not attached.
    pub across_unattached: u64,
    /// Of them, delivered anyway (kept, or sent just before the heal).
    pub across_delivered: u64,
    /// Failed as unreachable.
    pub across_failed_unreachable: u64,
    /// Failed as not found: the failure the cut must no longer cause.
    pub across_failed_not_found: u64,
    /// Failed as offline.
    pub across_failed_offline: u64,
    /// Failed as timed out.
    pub across_failed_timed_out: u64,
    /// No outcome by the end.
    pub across_unresolved: u64,
    /// Chats sent (both ends attached) from the heal on.
    pub after_heal_sent: u64,
    /// Of them, failed.
    pub after_heal_failed: u64,
    /// Of them, with no outcome by the end (sent within a deadline of it).
    pub after_heal_unresolved: u64,
    /// Seconds from the heal to the send time from which every chat (both
    /// ends attached) was delivered; 0 if none failed. None if the last
    /// chat of the run failed.
    pub delivery_recovered_s: Option<f64>,
    /// Seconds from the heal to the first sample at which every attached
    /// ordinary node's record was on its true home supernodes; None if
    /// none did by the end.
    pub records_recovered_s: Option<f64>,
    /// The record samples after the heal: seconds since the heal, records
    /// checked, records at home.
    pub records_after_heal: Vec<(f64, u64, u64)>,
}

impl CutWatch {
    /// The watch for `cfg`: inert without partitions.
    pub fn new(cfg: &SimConfig) -> CutWatch {
        let heal = cfg.network.partitions.iter().map(|p| secs(p.end_s)).max();
        CutWatch {
            heal,
            replicas: cfg.node.replicas,
            all_replicas: cfg.invariants.all_replicas,
            record_grace: secs(cfg.invariants.record_grace_s),
            chats: BTreeMap::new(),
            record_samples: Vec::new(),
            records_home_at: None,
        }
    }

    /// Chat `id` from `from` was sent at `now`; `across` if a cut separated
    /// its ends.
    pub fn chat_sent(
        &mut self,
        from: u32,
        id: MsgId,
        now: SimTime,
        across: bool,
        unattached: bool,
    ) {
        let Some(heal) = self.heal else {
            return;
        };
        if across || now >= heal {
            self.chats.insert(
                (from, id),
                Followed {
                    sent_at: now,
                    across,
                    unattached,
                    outcome: None,
                },
            );
        }
    }

    /// Chat `id` from `from` ended.
    pub fn chat_outcome(&mut self, from: u32, id: MsgId, outcome: Result<(), ChatFailure>) {
        if let Some(f) = self.chats.get_mut(&(from, id)) {
            f.outcome.get_or_insert(outcome);
        }
    }

    /// A sample tick at `now`: after the heal and until they are, whether
    /// the records are back at their true homes.
    pub fn sample(&mut self, now: SimTime, pop: &Population) {
        let Some(heal) = self.heal else {
            return;
        };
        if now < heal || self.records_home_at.is_some() || pop.supernodes().is_empty() {
            return;
        }
        let mut sns: Vec<(NodeId, u32)> =
            pop.supernodes().iter().map(|s| (pop.id(*s), *s)).collect();
        sns.sort_unstable();
        let replicas = self.replicas.min(sns.len()).max(1);
        let (mut checked, mut home) = (0, 0);
        for &on in pop.ordinary() {
            if pop
                .attached_at(on)
                .is_none_or(|t| t + self.record_grace > now)
            {
                continue;
            }
            let Some(primary) = pop.node(on).and_then(|n| n.primary()) else {
                continue;
            };
            let on_id = pop.id(on);
            let homes = closest_homes(&sns, &on_id, replicas);
            let holds = |s: &u32| {
                pop.node(*s)
                    .is_some_and(|n| n.holds_record(&on_id, &primary, now))
            };
            let ok = if self.all_replicas {
                homes.iter().all(|(_, s)| holds(s))
            } else {
                homes.iter().any(|(_, s)| holds(s))
            };
            checked += 1;
            home += u64::from(ok);
        }
        self.record_samples.push((now, checked, home));
        if checked > 0 && home == checked {
            self.records_home_at = Some(now);
        }
    }

    /// The figures, if the scenario has a partition.
    pub fn finish(self) -> Option<PartitionMetrics> {
        let heal = self.heal?;
        let since_heal = |t: SimTime| (t.saturating_sub(heal)) as f64 / SECS as f64;
        let mut m = PartitionMetrics {
            heal_s: heal as f64 / SECS as f64,
            records_recovered_s: self.records_home_at.map(since_heal),
            records_after_heal: self
                .record_samples
                .iter()
                .map(|(t, c, h)| (since_heal(*t), *c, *h))
                .collect(),
            ..PartitionMetrics::default()
        };
        let mut last_failed: Option<SimTime> = None;
        let mut last_sent: Option<SimTime> = None;
        for f in self.chats.values() {
            if f.across {
                m.across_sent += 1;
                m.across_unattached += u64::from(f.unattached);
                match f.outcome {
                    Some(Ok(())) => m.across_delivered += 1,
                    Some(Err(ChatFailure::Unreachable)) => m.across_failed_unreachable += 1,
                    Some(Err(ChatFailure::NotFound)) => m.across_failed_not_found += 1,
                    Some(Err(ChatFailure::Offline)) => m.across_failed_offline += 1,
                    Some(Err(ChatFailure::TimedOut)) => m.across_failed_timed_out += 1,
                    None => m.across_unresolved += 1,
                }
            }
            if f.sent_at >= heal && !f.unattached {
                m.after_heal_sent += 1;
                match f.outcome {
                    Some(Ok(())) => last_sent = last_sent.max(Some(f.sent_at)),
                    Some(Err(_)) => {
                        m.after_heal_failed += 1;
                        last_sent = last_sent.max(Some(f.sent_at));
                        last_failed = last_failed.max(Some(f.sent_at));
                    }
                    None => m.after_heal_unresolved += 1,
                }
            }
        }
        m.delivery_recovered_s = match last_failed {
            None => Some(0.0),
            Some(t) if Some(t) == last_sent => None,
            // Every chat sent after the last failure was delivered.
            Some(t) => Some(since_heal(t)),
        };
        Some(m)
    }
}

/// The report's lines for `m`.
pub fn report_lines(m: &PartitionMetrics) -> Vec<(String, String)> {
    let opt = |v: Option<f64>| v.map_or("not by the end".to_string(), |s| format!("{s:.0} s"));
    vec![
        (
            "across the cut: sent / delivered".into(),
            format!(
                "{} / {} ({} with an end unattached)",
                m.across_sent, m.across_delivered, m.across_unattached
            ),
        ),
        (
            "across the cut failed: unreachable / not found / offline / timeout".into(),
            format!(
                "{} / {} / {} / {} (unresolved {})",
                m.across_failed_unreachable,
                m.across_failed_not_found,
                m.across_failed_offline,
                m.across_failed_timed_out,
                m.across_unresolved
            ),
        ),
        (
            format!(
                "after the heal at {:.0} s: records home / delivery 100%",
                m.heal_s
            ),
            format!(
                "{} / {} ({} of {} sent after the heal failed)",
                opt(m.records_recovered_s),
                opt(m.delivery_recovered_s),
                m.after_heal_failed,
                m.after_heal_sent
            ),
        ),
    ]
}
