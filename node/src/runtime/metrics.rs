//! `/metrics`: one prometheus-client registry per node holding libp2p's own
//! metrics (connections, identify, ping, bandwidth: its `metrics` feature)
//! and skyhop's, encoded in the Prometheus / OpenMetrics text format.
//!
//! # Implementation notes
//! - skyhop's numbers live in the core (its [`skyhop_core::Counters`] and
//!   status) and in [`ChatCounters`] here; the core is owned by the node
//!   task, so a scrape first asks the task for a status report, stores it in
//!   [`SkyhopCollector`]'s slot, then encodes: the collector writes what the
//!   slot holds. Counters are the core's running totals, so they are encoded
//!   as constant counters, never incremented here.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use skyhop_core::ChatFailure;

use super::report::StatusReport;

/// Chats this node's user sent, and how they ended; counted by the node
/// task as sends are asked for and outcomes come back.
#[derive(Debug, Default)]
pub struct ChatCounters {
    /// Chats handed to the core.
    pub sent: AtomicU64,
    /// Chats the recipient acknowledged.
    pub delivered: AtomicU64,
    /// Chats failed: the recipient is offline.
    pub failed_offline: AtomicU64,
    /// Chats failed: no home supernode knows the recipient.
    pub failed_not_found: AtomicU64,
    /// Chats failed: no ack before the deadline.
    pub failed_timed_out: AtomicU64,
    /// Chats failed: the recipient is out of reach (a partition).
    pub failed_unreachable: AtomicU64,
    /// Chats the core refused at once (not attached, too long, ...).
    pub failed_refused: AtomicU64,
}

impl ChatCounters {
    /// Counts a failure.
    pub fn failed(&self, reason: ChatFailure) {
        let counter = match reason {
            ChatFailure::Offline => &self.failed_offline,
            ChatFailure::NotFound => &self.failed_not_found,
            ChatFailure::TimedOut => &self.failed_timed_out,
            ChatFailure::Unreachable => &self.failed_unreachable,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// A node's metrics: the registry and the slot skyhop's collector reads.
#[derive(Debug)]
pub struct NodeMetrics {
    /// libp2p's metrics and the skyhop collector.
    registry: Registry,
    /// What the next encoding writes.
    collector: Arc<SkyhopCollector>,
}

impl NodeMetrics {
    /// `registry` (holding libp2p's metrics) with skyhop's added, under
    /// `skyhop`.
    pub fn new(mut registry: Registry, chats: Arc<ChatCounters>) -> NodeMetrics {
        let collector = Arc::new(SkyhopCollector {
            slot: Mutex::new(None),
            chats,
        });
        registry.register_collector(Box::new(collector.clone()));
        NodeMetrics {
            registry,
            collector,
        }
    }

    /// The text of a scrape, with skyhop's numbers from `report`.
    pub fn encode(&self, report: StatusReport) -> String {
        *self
            .collector
            .slot
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(report);
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

/// Writes skyhop's metrics from the last status report.
#[derive(Debug)]
struct SkyhopCollector {
    /// The report of the scrape under way.
    slot: Mutex<Option<StatusReport>>,
    /// The chat outcomes.
    chats: Arc<ChatCounters>,
}

/// Writes one counter family: `name{label="key"} value` for each pair.
fn counter_family<'a>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: &'static str,
    values: impl IntoIterator<Item = (&'a str, u64)>,
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(
        name,
        help,
        None,
        prometheus_client::metrics::MetricType::Counter,
    )?;
    for (key, value) in values {
        let labels = [(label, key)];
        ConstCounter::new(value).encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: i64,
) -> Result<(), std::fmt::Error> {
    let g = ConstGauge::new(value);
    g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)
}

fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let c = ConstCounter::new(value);
    c.encode(encoder.encode_descriptor(name, help, None, c.metric_type())?)
}

impl Collector for SkyhopCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        let Some(report) = slot.as_ref() else {
            return Ok(());
        };
        let s = &report.status;
        let c = &s.counters;
        let e = &mut encoder;
        counter_family(
            e,
            "skyhop_frames_in",
            "Frames received, by message kind",
            "kind",
            c.frames_in.iter().map(|(k, v)| (*k, *v)),
        )?;
        counter_family(
            e,
            "skyhop_frames_out",
            "Frames sent, by message kind",
            "kind",
            c.frames_out.iter().map(|(k, v)| (*k, *v)),
        )?;
        counter_family(
            e,
            "skyhop_dropped",
            "Packets and frames dropped, by reason",
            "reason",
            c.dropped
                .iter()
                .map(|(r, v)| (r.as_str(), *v))
                .chain([("link_queue_full", report.dropped_frames)]),
        )?;
        counter(
            e,
            "skyhop_forwarded",
            "Routed packets forwarded to another node",
            c.forwarded,
        )?;
        counter(
            e,
            "skyhop_delivered",
            "Routed packets delivered to this node",
            c.delivered,
        )?;
        counter(
            e,
            "skyhop_forged",
            "Signed statements rejected as forged",
            c.forged,
        )?;
        counter_family(
            e,
            "skyhop_over_budget",
            "Frames over their sender's budget, dropped, by message class",
            "class",
            c.over_budget.iter().map(|(k, v)| (*k, *v)),
        )?;
        counter(
            e,
            "skyhop_peers_banned",
            "Peers disconnected and refused for flooding or misbehaving",
            c.peers_banned,
        )?;
        counter(
            e,
            "skyhop_neighbors_suspected",
            "Links closed because a probe went unanswered",
            c.suspected,
        )?;
        counter(
            e,
            "skyhop_primaries_abandoned",
            "Primary supernodes left because they did not relay our probes",
            c.primaries_abandoned,
        )?;
        let a = &report.abuse;
        counter_family(
            e,
            "skyhop_links_ended",
            "Links ended, by who ended them",
            "by",
            [("us", a.links_closed), ("peer_or_transport", a.links_lost)],
        )?;
        counter(
            e,
            "skyhop_connections_refused",
            "Inbound connections refused before the handshake",
            a.connections_refused,
        )?;
        counter(
            e,
            "skyhop_bad_bodies_relayed",
            "Relayed packets whose body did not decode here (dropped, the relay kept)",
            a.bad_bodies_relayed,
        )?;
        let r = &report.role;
        counter_family(
            e,
            "skyhop_role_changes",
            "Role changes this node made by itself (auto role)",
            "to",
            [("supernode", r.promotions), ("ordinary", r.demotions)],
        )?;
        let d = &r.dial_backs;
        counter_family(
            e,
            "skyhop_dial_backs",
            "Reachability dial-backs: asked for, served (reached or failed), refused",
            "what",
            [
                ("asked", d.asked),
                ("served_reached", d.served_reached),
                ("served_failed", d.served_failed),
                ("refused", d.refused),
            ],
        )?;
        let chats = &self.chats;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        counter(
            e,
            "skyhop_chats_sent",
            "Chats this node's user sent",
            load(&chats.sent),
        )?;
        counter(
            e,
            "skyhop_chats_delivered",
            "Chats sent and acknowledged by the recipient",
            load(&chats.delivered),
        )?;
        counter_family(
            e,
            "skyhop_chats_failed",
            "Chats sent and not delivered, by reason",
            "reason",
            [
                ("offline", load(&chats.failed_offline)),
                ("not_found", load(&chats.failed_not_found)),
                ("timed_out", load(&chats.failed_timed_out)),
                ("unreachable", load(&chats.failed_unreachable)),
                ("refused", load(&chats.failed_refused)),
            ],
        )?;
        let n = |x: usize| i64::try_from(x).unwrap_or(i64::MAX);
        gauge(
            e,
            "skyhop_clients",
            "Ordinary nodes attached to this supernode",
            n(s.clients.len()),
        )?;
        gauge(e, "skyhop_links", "Linked peers", n(s.links.len()))?;
        gauge(
            e,
            "skyhop_neighbors",
            "Supernodes in the neighbor table",
            n(s.neighbors.len()),
        )?;
        gauge(
            e,
            "skyhop_records",
            "Location records held as a home supernode",
            n(s.records),
        )?;
        gauge(
            e,
            "skyhop_cached_locations",
            "Location-cache entries",
            n(s.cached_locations),
        )?;
        gauge(
            e,
            "skyhop_host_cache",
            "Host-cache entries",
            n(s.host_cache),
        )?;
        gauge(
            e,
            "skyhop_pending_chats",
            "Chats awaiting an ack",
            n(s.pending_chats),
        )?;
        gauge(
            e,
            "skyhop_mailbox_chats",
            "Chats kept for offline recipients",
            n(s.mailbox_chats),
        )?;
        gauge(
            e,
            "skyhop_mailbox_bytes",
            "Sealed bytes kept for offline recipients",
            n(s.mailbox_bytes),
        )?;
        gauge(
            e,
            "skyhop_connected_peers",
            "Connected libp2p peers",
            n(report.connected_peers),
        )?;
        gauge(
            e,
            "skyhop_supernode",
            "1 if this node is a supernode now (forced or promoted)",
            i64::from(s.role == skyhop_protocol::Role::Supernode),
        )?;
        gauge(
            e,
            "skyhop_reachable",
            "1 if a supernode's dial-back reached this node",
            i64::from(report.role.reachability == "reachable"),
        )?;
        gauge(
            e,
            "skyhop_attached",
            "1 if this ordinary node has a primary supernode",
            i64::from(s.primary.is_some()),
        )?;
        Ok(())
    }
}
