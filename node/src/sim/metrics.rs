//! The metrics document a run writes: every figure depends only on the seed
//! and the scenario, so two runs of one seed give byte-identical JSON.

use std::collections::BTreeMap;

use serde::Serialize;
use skyhop_core::DropReason;

use super::adversary::AdversaryMetrics;
use super::config::SimConfig;
use super::handover::HandoverMetrics;

/// Everything a run measured.
#[derive(Clone, Debug, Serialize)]
pub struct Metrics {
    /// The scenario's name.
    pub scenario: String,
    /// The world seed.
    pub seed: u64,
    /// Whether the run finished without an invariant violation.
    pub passed: bool,
    /// The violation that stopped the run, if any.
    pub violation: Option<Violation>,
    /// Simulated seconds run.
    pub simulated_s: f64,
    /// Simulated events processed.
    pub events: u64,
    /// Events processed, by kind; a `wake` runs a node's due timers, a
    /// `wake_stale` was superseded by an earlier deadline and did nothing.
    pub events_by_kind: BTreeMap<&'static str, u64>,
    /// Node counts.
    pub nodes: NodeCounts,
    /// Chat delivery.
    pub delivery: Delivery,
    /// Hops of delivered chat messages (ordinary node to ordinary node).
    pub hops: Summary,
    /// Hop histogram: `hop_histogram[h]` messages took `h` hops.
    pub hop_histogram: Vec<u64>,
    /// Chat latency from first send to ack, milliseconds.
    pub chat_latency_ms: Summary,
    /// Time from a node's start to its first attachment, milliseconds.
    pub join_time_ms: Summary,
    /// Reattachment of ordinary nodes whose supernode was killed.
    pub reattach: Reattach,
    /// Whether ordinary nodes get into the overlay at all.
    pub attachment: Attachment,
    /// Share of live ordinary nodes attached, and live supernodes, sampled.
    pub attached_over_time: Vec<AttachSample>,
    /// Delivery of messages by the sample interval they were sent in.
    pub delivery_over_time: Vec<DeliverySample>,
    /// Nodes behind a NAT and the dials they refused.
    pub nat: Nat,
    /// Bytes on the wire.
    pub traffic: Traffic,
    /// Supernode load at the end.
    pub supernodes: SupernodeLoad,
    /// Core counters summed over every node that ever ran.
    pub counters: CounterTotals,
    /// Invariant checks made.
    pub invariants: InvariantChecks,
    /// Messages written to users who were down, when the workload writes
    /// any, and what the home supernodes kept for them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offline: Option<OfflineMetrics>,
    /// Supernodes that handed over (demoted or left gracefully) and the
    /// records they lost, when the scenario can hand over.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handovers: Option<HandoverMetrics>,
    /// Hostile nodes and honest delivery, when the scenario has any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub adversary: Option<AdversaryMetrics>,
    /// Chats across a partition and the recovery after its heal, when the
    /// scenario has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition: Option<super::cut::PartitionMetrics>,
    /// The names workload, when the scenario has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub names: Option<super::names::NameMetrics>,
    /// The first chats that failed, named so that each can be traced
    /// (at most [`MAX_FAILED_CHATS`]); left out when none failed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failed_chats: Vec<FailedChat>,
    /// The scenario as run.
    pub config: SimConfig,
}

/// Failed chats [`Metrics::failed_chats`] names at most.
pub const MAX_FAILED_CHATS: usize = 16;

/// A chat that failed: who sent it to whom, when, why and who said so.
#[derive(Clone, Debug, Serialize)]
pub struct FailedChat {
    /// When the sender was told, simulated seconds.
    pub time_s: f64,
    /// The sender's slot.
    pub from: u32,
    /// The sender's id.
    pub from_id: skyhop_protocol::NodeId,
    /// The recipient's id.
    pub to_id: skyhop_protocol::NodeId,
    /// The recipient's slot, if it is one of the world's nodes.
    pub to: Option<u32>,
    /// Why, as the sender's node said.
    pub reason: skyhop_core::ChatFailure,
    /// The node whose signed answer it was, if any.
    pub said_by: Option<skyhop_protocol::NodeId>,
}

/// An invariant violation.
#[derive(Clone, Debug, Serialize)]
pub struct Violation {
    /// Simulated time, seconds.
    pub time_s: f64,
    /// Events processed before it.
    pub event: u64,
    /// What broke.
    pub what: String,
}

/// Node counts.
#[derive(Clone, Debug, Default, Serialize)]
pub struct NodeCounts {
    /// Supernodes started (first starts).
    pub supernodes: u64,
    /// Ordinary nodes started (first starts, arrivals included).
    pub ordinary: u64,
    /// Supernodes live at the end.
    pub live_supernodes_end: u64,
    /// Ordinary nodes live at the end.
    pub live_ordinary_end: u64,
    /// Graceful leaves.
    pub left: u64,
    /// Crashes from churn.
    pub crashed: u64,
    /// Supernodes killed.
    pub supernodes_killed: u64,
    /// Supernodes that handed over and left (graceful kills, and promoted
    /// users leaving gracefully).
    #[serde(skip_serializing_if = "is_zero")]
    pub supernodes_left: u64,
    /// Restarts in storms.
    pub restarts: u64,
    /// Ordinary nodes that promoted themselves to supernode (auto role).
    #[serde(skip_serializing_if = "is_zero")]
    pub promotions: u64,
    /// Promoted supernodes that demoted themselves again.
    #[serde(skip_serializing_if = "is_zero")]
    pub demotions: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Chat delivery.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Delivery {
    /// Messages handed to a sender.
    pub sent: u64,
    /// Messages refused by the sender (queue full).
    pub refused: u64,
    /// Messages whose sender or recipient departed before the deadline:
    /// not counted either way.
    pub excluded_endpoint_departed: u64,
    /// Messages counted.
    pub eligible: u64,
    /// Eligible messages acknowledged.
    pub delivered: u64,
    /// Eligible messages acknowledged within `deadline_ms`.
    pub delivered_within_deadline: u64,
    /// Eligible messages sent while the sender or the recipient was not
    /// attached (delivered or not).
    pub sent_not_attached: u64,
    /// Of them, not delivered: the failure is put down to the missing
    /// attachment, whatever the core reported (often a time-out).
    pub failed_not_attached: u64,
    /// Eligible messages failed as offline.
    pub failed_offline: u64,
    /// Eligible messages failed as not found.
    pub failed_not_found: u64,
    /// Eligible messages failed as timed out.
    pub failed_timed_out: u64,
    /// Eligible messages failed as unreachable (across a partition).
    #[serde(skip_serializing_if = "is_zero")]
    pub failed_unreachable: u64,
    /// Eligible messages with no outcome by the end.
    pub unresolved: u64,
    /// delivered / eligible.
    pub eventual_ratio: f64,
    /// delivered_within_deadline / eligible.
    pub within_deadline_ratio: f64,
    /// The "within deadline" bound, milliseconds.
    pub deadline_ms: f64,
}

/// Percentiles of a sample.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Summary {
    /// Sample size.
    pub count: u64,
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
}

impl Summary {
    /// Nearest-rank percentiles of `values` (sorted here).
    pub fn of(mut values: Vec<f64>) -> Summary {
        if values.is_empty() {
            return Summary::default();
        }
        values.sort_by(f64::total_cmp);
        let n = values.len();
        let rank = |q: f64| {
            let r = (q * n as f64).ceil() as usize;
            values[r.clamp(1, n) - 1]
        };
        let mean = values.iter().sum::<f64>() / n as f64;
        Summary {
            count: n as u64,
            mean: round3(mean),
            p50: round3(rank(0.50)),
            p90: round3(rank(0.90)),
            p99: round3(rank(0.99)),
            max: round3(values[n - 1]),
        }
    }
}

/// Rounds to three decimals, so that the JSON stays readable.
pub fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// Reattachment after supernode kills.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Reattach {
    /// Ordinary nodes whose primary was killed.
    pub orphans: u64,
    /// Orphans that departed before reattaching: not counted.
    pub excluded_departed: u64,
    /// Orphans reattached by the end.
    pub reattached: u64,
    /// Orphans reattached within 30 s of the kill.
    pub within_30s: u64,
    /// within_30s / (orphans - excluded).
    pub within_30s_ratio: f64,
    /// Time from kill to reattachment, milliseconds.
    pub time_ms: Summary,
}

/// Whether ordinary nodes get into the overlay: every incarnation of an
/// ordinary node is counted once, as attached (its time from start to
/// first attachment is in `join_time_ms`) or as never attached.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Attachment {
    /// The lowest attached share of live ordinary nodes at a sample at or
    /// after the warm-up (1 when there is none).
    pub min_ratio_after_warmup: f64,
    /// When that minimum was first sampled, seconds.
    pub min_ratio_at_s: f64,
    /// Ordinary-node incarnations started (restarts included).
    pub started: u64,
    /// Of them, attached at least once.
    pub attached: u64,
    /// Of them, went away without ever attaching.
    pub never_attached_departed: u64,
    /// Of them, still up at the end and never attached.
    pub never_attached_at_end: u64,
}

/// One attachment sample.
#[derive(Clone, Debug, Serialize)]
pub struct AttachSample {
    /// Simulated time, seconds.
    pub t_s: f64,
    /// Live ordinary nodes.
    pub live: u64,
    /// Of them, attached.
    pub attached: u64,
    /// attached / live.
    pub ratio: f64,
    /// Live supernodes.
    pub supernodes: u64,
}

/// Delivery of the messages sent in one interval.
#[derive(Clone, Debug, Serialize)]
pub struct DeliverySample {
    /// Start of the interval, seconds.
    pub t_s: f64,
    /// Eligible messages sent in it.
    pub eligible: u64,
    /// Of them, delivered.
    pub delivered: u64,
    /// delivered / eligible (1 when none).
    pub ratio: f64,
}

/// Nodes behind a NAT (`population.nat_fraction`).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Nat {
    /// Ordinary-node slots placed behind a NAT (a slot keeps its NAT across
    /// restarts).
    pub nodes_behind_nat: u64,
    /// Dials to them that the NAT dropped.
    pub dials_refused: u64,
}

/// Frames and bytes of one kind.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct KindTraffic {
    /// Frames sent.
    pub frames: u64,
    /// Encoded bytes, frame headers included.
    pub bytes: u64,
}

/// Bytes on the wire.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Traffic {
    /// Start of the measurement window (the warm-up's end), seconds.
    pub window_start_s: f64,
    /// Live-node seconds in the window.
    pub node_seconds: f64,
    /// Non-chat bytes in the window.
    pub maintenance_bytes: u64,
    /// Chat bytes (chat, acks, not-found answers) in the window.
    pub chat_bytes: u64,
    /// maintenance_bytes / node_seconds.
    pub maintenance_bytes_per_node_per_s: f64,
    /// Frames and bytes in the window by kind (`routed/...` for packet bodies).
    pub by_kind: BTreeMap<String, KindTraffic>,
    /// Frames sent over the whole run.
    pub frames_total: u64,
    /// Bytes sent over the whole run.
    pub bytes_total: u64,
    /// Frames a node sent on no link (the peer had closed it).
    pub dropped_no_link: u64,
    /// Frames that arrived at a dead node or on a closed link.
    pub dropped_at_arrival: u64,
    /// Frames dropped across a partition.
    pub dropped_partition: u64,
    /// Frames whose first transmission was lost (delayed by retransmission).
    pub retransmitted: u64,
}

/// Supernode load at the end.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SupernodeLoad {
    /// Clients per live supernode, mean.
    pub clients_mean: f64,
    /// Clients of the busiest supernode.
    pub clients_max: u64,
    /// Neighbor-table size, mean.
    pub table_mean: f64,
    /// Smallest neighbor table.
    pub table_min: u64,
    /// Largest neighbor table.
    pub table_max: u64,
    /// Links per supernode, mean.
    pub links_mean: f64,
}

/// Core counters summed over all nodes.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CounterTotals {
    /// Packets forwarded.
    pub forwarded: u64,
    /// Packets delivered.
    pub delivered: u64,
    /// Forged statements rejected.
    pub forged: u64,
    /// Drops by reason (serialized by name, in name order).
    pub dropped: BTreeMap<DropReason, u64>,
    /// Frames over budget by class (`originated_chat` and so on: what a
    /// supernode neighbor sent in its own name over a client's budget).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub over_budget: BTreeMap<&'static str, u64>,
    /// `PeerMisbehaved` events (none expected among honest nodes).
    pub misbehaved_events: u64,
    /// Peers disconnected and refused for flooding or forging.
    pub peers_banned: u64,
    /// Primaries left by ordinary nodes because they did not relay.
    pub primaries_abandoned: u64,
    /// Links closed for an unanswered probe.
    #[serde(skip_serializing_if = "is_zero")]
    pub suspected: u64,
}

/// Invariant checks made.
#[derive(Clone, Debug, Default, Serialize)]
pub struct InvariantChecks {
    /// Samples at which the overlay was steady and checked.
    pub steady_samples: u64,
    /// Ordinary nodes whose records were checked (over all samples).
    pub records_checked: u64,
    /// TTL expiries while steady (must be 0).
    pub ttl_expired_steady: u64,
    /// TTL expiries over the whole run.
    pub ttl_expired_total: u64,
    /// Duplicate packets dropped over the whole run.
    pub duplicates_total: u64,
    /// Largest hop count seen at a recipient.
    pub max_hops_seen: u64,
}

/// Offline delivery: messages written to users down for a restart, kept on
/// their home supernodes and handed over when they came back.
#[derive(Clone, Debug, Default, Serialize)]
pub struct OfflineMetrics {
    /// Messages written to a user who was down.
    pub sent: u64,
    /// Of them, not counted: the sender went down before it could know.
    pub excluded_sender_departed: u64,
    /// Messages counted.
    pub eligible: u64,
    /// Of them, signed "stored" by at least one home supernode.
    pub stored: u64,
    /// Of them, handed to the recipient's application.
    pub received: u64,
    /// Of them, reported delivered to the sender (the signed receipt).
    pub delivered: u64,
    /// received / eligible.
    pub received_ratio: f64,
    /// delivered / eligible.
    pub delivered_ratio: f64,
    /// From sending to the sender's "delivered", seconds.
    pub latency_s: Summary,
    /// The most chats one supernode kept at once.
    pub mailbox_chats_max: usize,
    /// The most sealed bytes one supernode kept at once.
    pub mailbox_bytes_max: usize,
    /// Chats kept on all supernodes at the end.
    pub mailbox_chats_at_end: usize,
}
