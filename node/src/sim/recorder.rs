//! The recorder: what a run measures as it goes (traffic by kind, live
//! node-seconds, every chat message and its outcome, join and reattach
//! times, attachment samples, the counters of departed nodes) and, at the
//! end, the [`Metrics`] document built from it.
//!
//! The world tells it what happened; it draws nothing and schedules
//! nothing, so it cannot change a run, only describe it.

use std::collections::{BTreeMap, BTreeSet};

use skyhop_protocol::{Body, Message, MsgId, Role};

use skyhop_core::{ChatFailure, Counters, SimTime, MILLIS, SECS};

use super::adversary::Adversary;
use super::config::SimConfig;
use super::dist::{millis, secs};
use super::invariants::Invariants;
use super::metrics::{
    round3, AttachSample, Attachment, CounterTotals, Delivery, DeliverySample, FailedChat,
    KindTraffic, Metrics, Nat, OfflineMetrics, Reattach, Summary, SupernodeLoad, Traffic,
    Violation, MAX_FAILED_CHATS,
};
use super::population::Population;

/// A chat message being tracked.
struct MsgTrack {
    /// The recipient's slot.
    to: u32,
    /// When the sender's node took it.
    sent_at: SimTime,
    /// Whether the sender or the recipient was not attached then.
    unattached: bool,
    /// Delivered (latency, hops) or failed, once known.
    outcome: Option<Result<(SimTime, u8), ChatFailure>>,
}

/// Traffic counters.
#[derive(Default)]
struct TrafficCounters {
    /// Frames and bytes after the warm-up, by (routed, message kind).
    by_kind: BTreeMap<(bool, &'static str), KindTraffic>,
    /// Non-chat bytes after the warm-up.
    maintenance: u64,
    /// Chat, ack and not-found bytes after the warm-up.
    chat: u64,
    /// Frames put on a link over the whole run.
    frames_total: u64,
    /// Their bytes.
    bytes_total: u64,
    /// Frames for a peer the sender had no link to.
    dropped_no_link: u64,
    /// Frames that found a closed link or a dead node.
    dropped_at_arrival: u64,
    /// Frames lost in a partition.
    dropped_partition: u64,
    /// Frames delayed by a lost transmission.
    retransmitted: u64,
}

/// What the event loop knows of a finished run.
pub struct RunEnd {
    /// The scenario as run.
    pub cfg: SimConfig,
    /// The world seed.
    pub seed: u64,
    /// Where the simulated clock stopped.
    pub now: SimTime,
    /// Events processed.
    pub events: u64,
    /// Events processed, by kind (kinds that never happened left out).
    pub events_by_kind: BTreeMap<&'static str, u64>,
    /// The violation that stopped the run, if any.
    pub violation: Option<Violation>,
}

/// The run's measurements; see the module doc.
pub struct Recorder {
    /// Start of the measurement window.
    warmup: SimTime,
    /// Bytes and frames on the wire.
    traffic: TrafficCounters,
    /// Nodes up now.
    live_count: u64,
    /// When `live_count` last changed.
    live_since: SimTime,
    /// Live node-seconds in the window so far.
    node_seconds: f64,
    /// Every message handed to a sender, by (sender slot, message id).
    msgs: BTreeMap<(u32, u64), MsgTrack>,
    /// (sender, msg id) of messages written to a user who was down.
    offline: BTreeSet<(u32, u64)>,
    /// (sender, msg id) of messages a home signed "stored".
    stored: BTreeSet<(u32, u64)>,
    /// (author, msg id) of messages handed to their recipient.
    received: BTreeSet<(u32, u64)>,
    /// Messages the sender's node refused.
    refused: u64,
    /// Start-to-first-attachment times, milliseconds.
    join_times: Vec<f64>,
    /// Ordinary-node incarnations started.
    ordinary_started: u64,
    /// Ordinary-node incarnations that went away without attaching.
    never_attached_departed: u64,
    /// Ordinary nodes whose supernode was killed and that have not
    /// reattached: slot -> (kill time, incarnation).
    orphans: BTreeMap<u32, (SimTime, u32)>,
    /// Kill-to-reattachment times.
    reattach_times: Vec<SimTime>,
    /// Orphans made by kills.
    orphan_total: u64,
    /// Orphans that went away before reattaching.
    orphans_departed: u64,
    /// Attachment samples.
    attach_samples: Vec<AttachSample>,
    /// Core counters of node incarnations that went away.
    departed_counters: CounterTotals,
    /// `PeerMisbehaved` events.
    misbehaved: u64,
    /// NAT figures.
    nat: Nat,
    /// The first failed chats, named.
    failed_chats: Vec<FailedChat>,
}

fn add_counters(totals: &mut CounterTotals, c: &Counters) {
    totals.forwarded += c.forwarded;
    totals.delivered += c.delivered;
    totals.forged += c.forged;
    totals.peers_banned += c.peers_banned;
    totals.primaries_abandoned += c.primaries_abandoned;
    totals.suspected += c.suspected;
    for (k, v) in &c.dropped {
        *totals.dropped.entry(*k).or_default() += v;
    }
    for (k, v) in &c.over_budget {
        *totals.over_budget.entry(*k).or_default() += v;
    }
}

impl Recorder {
    /// A recorder whose measurement window opens at `warmup`.
    pub fn new(warmup: SimTime) -> Recorder {
        Recorder {
            warmup,
            traffic: TrafficCounters::default(),
            live_count: 0,
            live_since: 0,
            node_seconds: 0.0,
            msgs: BTreeMap::new(),
            offline: BTreeSet::new(),
            stored: BTreeSet::new(),
            received: BTreeSet::new(),
            refused: 0,
            join_times: Vec::new(),
            ordinary_started: 0,
            never_attached_departed: 0,
            orphans: BTreeMap::new(),
            reattach_times: Vec::new(),
            orphan_total: 0,
            orphans_departed: 0,
            attach_samples: Vec::new(),
            departed_counters: CounterTotals::default(),
            misbehaved: 0,
            nat: Nat::default(),
            failed_chats: Vec::new(),
        }
    }

    /// A frame of `len` bytes was put on a link at `now`.
    pub fn frame_sent(&mut self, now: SimTime, msg: &Message, len: u64) {
        let (routed, is_chat) = match msg {
            Message::Routed(p) => (
                true,
                matches!(
                    p.body,
                    Body::Chat(_) | Body::ChatAck { .. } | Body::NotFound { .. }
                ),
            ),
            _ => (false, false),
        };
        let t = &mut self.traffic;
        t.frames_total += 1;
        t.bytes_total += len;
        if now >= self.warmup {
            let k = t.by_kind.entry((routed, msg.kind())).or_default();
            k.frames += 1;
            k.bytes += len;
            if is_chat {
                t.chat += len;
            } else {
                t.maintenance += len;
            }
        }
    }

    /// A node sent a frame on no link, or dialed by address only.
    pub fn dropped_no_link(&mut self) {
        self.traffic.dropped_no_link += 1;
    }

    /// A frame found a closed link or a dead node.
    pub fn dropped_at_arrival(&mut self) {
        self.traffic.dropped_at_arrival += 1;
    }

    /// A frame was lost in a partition.
    pub fn dropped_partition(&mut self) {
        self.traffic.dropped_partition += 1;
    }

    /// A frame was delayed by a lost transmission.
    pub fn retransmitted(&mut self) {
        self.traffic.retransmitted += 1;
    }

    /// `delta` nodes came up (or went away) at `now`.
    pub fn live_changed(&mut self, now: SimTime, delta: i64) {
        let from = self.live_since.max(self.warmup);
        if now > from {
            self.node_seconds += self.live_count as f64 * (now - from) as f64 / SECS as f64;
        }
        self.live_since = now;
        self.live_count = self.live_count.saturating_add_signed(delta);
    }

    /// The node of `from` took message `id` for `to` at `now`; `unattached`:
    /// one of the two was not attached.
    pub fn chat_sent(&mut self, from: u32, id: MsgId, to: u32, now: SimTime, unattached: bool) {
        self.msgs.insert(
            (from, id.0),
            MsgTrack {
                to,
                sent_at: now,
                unattached,
                outcome: None,
            },
        );
    }

    /// Message `id` of `from` was written to a user who was down.
    pub fn offline_sent(&mut self, from: u32, id: MsgId) {
        self.offline.insert((from, id.0));
    }

    /// A home supernode signed that it keeps message `id` of `from`.
    pub fn chat_stored(&mut self, from: u32, id: MsgId) {
        if self.offline.contains(&(from, id.0)) {
            self.stored.insert((from, id.0));
        }
    }

    /// Message `id` of `author` was handed to its recipient.
    pub fn chat_received(&mut self, author: u32, id: MsgId) {
        if self.offline.contains(&(author, id.0)) {
            self.received.insert((author, id.0));
        }
    }

    /// What became of the messages written to users who were down, and
    /// what the supernodes kept.
    fn offline_metrics(&self, pop: &Population, horizon: SimTime) -> Option<OfflineMetrics> {
        if self.offline.is_empty() {
            return None;
        }
        let mut o = OfflineMetrics {
            sent: self.offline.len() as u64,
            ..OfflineMetrics::default()
        };
        let mut latencies = Vec::new();
        for key in &self.offline {
            let Some(m) = self.msgs.get(key) else {
                continue;
            };
            if pop.departed_within(key.0, m.sent_at, m.sent_at + horizon) {
                o.excluded_sender_departed += 1;
                continue;
            }
            o.eligible += 1;
            o.stored += u64::from(self.stored.contains(key));
            o.received += u64::from(self.received.contains(key));
            if let Some(Ok((latency, _))) = m.outcome {
                o.delivered += 1;
                latencies.push(latency as f64 / SECS as f64);
            }
        }
        let ratio = |a: u64, b: u64| {
            if b == 0 {
                1.0
            } else {
                (a as f64 / b as f64 * 1e6).round() / 1e6
            }
        };
        o.received_ratio = ratio(o.received, o.eligible);
        o.delivered_ratio = ratio(o.delivered, o.eligible);
        o.latency_s = Summary::of(latencies);
        for (_, role, node) in pop.running() {
            if role == Role::Supernode {
                let (now, peak) = node.mailbox_usage();
                o.mailbox_chats_max = o.mailbox_chats_max.max(peak.chats);
                o.mailbox_bytes_max = o.mailbox_bytes_max.max(peak.bytes);
                o.mailbox_chats_at_end += now.chats;
            }
        }
        Some(o)
    }

    /// A sender's node refused a message.
    pub fn chat_refused(&mut self) {
        self.refused += 1;
    }

    /// The sender `from` learnt the outcome of message `id` (the first
    /// outcome counts).
    pub fn chat_outcome(
        &mut self,
        from: u32,
        id: MsgId,
        outcome: Result<(SimTime, u8), ChatFailure>,
    ) {
        if let Some(m) = self.msgs.get_mut(&(from, id.0)) {
            m.outcome.get_or_insert(outcome);
        }
    }

    /// A chat failed (named in the metrics if among the first few).
    pub fn chat_failed(&mut self, failed: FailedChat) {
        if self.failed_chats.len() < MAX_FAILED_CHATS {
            self.failed_chats.push(failed);
        }
    }

    /// An ordinary node started (a first start or a restart).
    pub fn ordinary_started(&mut self) {
        self.ordinary_started += 1;
    }

    /// A node attached for the first time since its start, `join` after it.
    pub fn joined(&mut self, join: SimTime) {
        self.join_times.push(join as f64 / MILLIS as f64);
    }

    /// Incarnation `inc` of `slot` lost its supernode to a kill at `now`.
    pub fn orphaned(&mut self, slot: u32, inc: u32, now: SimTime) {
        self.orphans.insert(slot, (now, inc));
        self.orphan_total += 1;
    }

    /// Incarnation `inc` of `slot` attached at `now`: an orphan reattached.
    pub fn attached(&mut self, slot: u32, inc: u32, now: SimTime) {
        if let Some((killed_at, orphan_inc)) = self.orphans.get(&slot).copied() {
            if orphan_inc == inc {
                self.orphans.remove(&slot);
                self.reattach_times.push(now - killed_at);
            }
        }
    }

    /// A new slot was placed behind a NAT.
    pub fn behind_nat(&mut self) {
        self.nat.nodes_behind_nat += 1;
    }

    /// A NAT dropped a dial.
    pub fn dial_refused_by_nat(&mut self) {
        self.nat.dials_refused += 1;
    }

    /// A node reported that a peer misbehaved.
    pub fn misbehaved(&mut self) {
        self.misbehaved += 1;
    }

    /// Incarnation `inc` of `slot` went away at `now` with `counters`;
    /// `never_attached`: an ordinary node that never got in.
    pub fn node_gone(
        &mut self,
        slot: u32,
        inc: u32,
        counters: &Counters,
        now: SimTime,
        never_attached: bool,
    ) {
        add_counters(&mut self.departed_counters, counters);
        if never_attached {
            self.never_attached_departed += 1;
        }
        if let Some((_, orphan_inc)) = self.orphans.get(&slot) {
            if *orphan_inc == inc {
                self.orphans.remove(&slot);
                self.orphans_departed += 1;
            }
        }
        self.live_changed(now, -1);
    }

    /// Samples the share of live ordinary nodes attached, and the live
    /// supernodes, at `now`.
    pub fn sample_attachment(&mut self, now: SimTime, pop: &Population) {
        let live = pop.users().len() as u64;
        let attached = pop
            .users()
            .iter()
            .filter(|s| pop.attached_at(**s).is_some())
            .count() as u64;
        self.attach_samples.push(AttachSample {
            t_s: round3(now as f64 / SECS as f64),
            live,
            attached,
            ratio: if live == 0 {
                1.0
            } else {
                round3(attached as f64 / live as f64 * 100.0) / 100.0
            },
            supernodes: pop.supernodes().len() as u64,
        });
    }

    /// The metrics of the run that ended as `run` says, with the nodes of
    /// `pop` as they are at the end and the checks of `inv`.
    pub fn finish(
        mut self,
        run: RunEnd,
        pop: &Population,
        inv: &Invariants,
        adv: &Adversary,
    ) -> Metrics {
        let cfg = &run.cfg;
        self.live_changed(run.now, 0);
        let end = secs(cfg.duration_s);
        let ttl = cfg.node.ttl;
        let deadline = millis(cfg.workload.deadline_ms);
        let horizon = cfg.node.chat_deadline + 5 * SECS;
        let mut d = Delivery {
            deadline_ms: cfg.workload.deadline_ms,
            refused: self.refused,
            ..Delivery::default()
        };
        let interval = secs(cfg.sample_interval_s).max(1);
        let buckets = (end / interval + 1) as usize;
        let mut over_time = vec![(0u64, 0u64); buckets];
        let mut hops = Vec::new();
        let mut latencies = Vec::new();
        let mut histogram = vec![0u64; usize::from(ttl) + 1];
        let mut honest = Delivery {
            deadline_ms: cfg.workload.deadline_ms,
            ..Delivery::default()
        };
        let mut honest_latencies = Vec::new();
        for ((from, _), m) in &self.msgs {
            d.sent += 1;
            let is_honest = adv.active() && !adv.is_hostile(*from) && !adv.is_hostile(m.to);
            if is_honest {
                honest.sent += 1;
            }
            let until = m.sent_at + horizon;
            if pop.departed_within(*from, m.sent_at, until)
                || pop.departed_within(m.to, m.sent_at, until)
            {
                d.excluded_endpoint_departed += 1;
                honest.excluded_endpoint_departed += u64::from(is_honest);
                continue;
            }
            if run.violation.is_some() && until > run.now {
                // The run stopped before this message could finish.
                d.excluded_endpoint_departed += 1;
                honest.excluded_endpoint_departed += u64::from(is_honest);
                continue;
            }
            let bucket = ((m.sent_at / interval) as usize).min(buckets - 1);
            over_time[bucket].0 += 1;
            if is_honest {
                if let Some((latency, _)) = tally(&mut honest, m, deadline) {
                    honest_latencies.push(latency as f64 / MILLIS as f64);
                }
            }
            if let Some((latency, h)) = tally(&mut d, m, deadline) {
                over_time[bucket].1 += 1;
                hops.push(f64::from(h));
                let last = histogram.len() - 1;
                histogram[usize::from(h).min(last)] += 1;
                latencies.push(latency as f64 / MILLIS as f64);
            }
        }
        let ratio = |a: u64, b: u64| {
            if b == 0 {
                1.0
            } else {
                (a as f64 / b as f64 * 1e6).round() / 1e6
            }
        };
        d.eventual_ratio = ratio(d.delivered, d.eligible);
        d.within_deadline_ratio = ratio(d.delivered_within_deadline, d.eligible);
        honest.eventual_ratio = ratio(honest.delivered, honest.eligible);
        honest.within_deadline_ratio = ratio(honest.delivered_within_deadline, honest.eligible);
        let adversary = adv.active().then(|| adv.report(honest, honest_latencies));
        let offline = self.offline_metrics(pop, horizon);
        let delivery_over_time = over_time
            .iter()
            .enumerate()
            .filter(|(_, (e, _))| *e > 0)
            .map(|(i, (e, dl))| DeliverySample {
                t_s: round3((i as u64 * interval) as f64 / SECS as f64),
                eligible: *e,
                delivered: *dl,
                ratio: ratio(*dl, *e),
            })
            .collect();
        // Orphans still alive and not reattached count as not reattached.
        let counted = self.orphan_total - self.orphans_departed;
        let within = self
            .reattach_times
            .iter()
            .filter(|t| **t <= 30 * SECS)
            .count() as u64;
        let reattach = Reattach {
            orphans: self.orphan_total,
            excluded_departed: self.orphans_departed,
            reattached: self.reattach_times.len() as u64,
            within_30s: within,
            within_30s_ratio: ratio(within, counted),
            time_ms: Summary::of(
                self.reattach_times
                    .iter()
                    .map(|t| *t as f64 / MILLIS as f64)
                    .collect(),
            ),
        };
        // Supernode load and counters of the living.
        let mut totals = std::mem::take(&mut self.departed_counters);
        let (mut clients, mut tables, mut links) = (Vec::new(), Vec::new(), Vec::new());
        for (_, role, node) in pop.running() {
            add_counters(&mut totals, node.counters());
            if role == Role::Supernode {
                clients.push(node.clients().count() as u64);
                tables.push(node.table().len() as u64);
                links.push(node.links().count() as u64);
            }
        }
        totals.misbehaved_events = self.misbehaved;
        let mean = |v: &[u64]| {
            if v.is_empty() {
                0.0
            } else {
                round3(v.iter().sum::<u64>() as f64 / v.len() as f64)
            }
        };
        let supernodes = SupernodeLoad {
            clients_mean: mean(&clients),
            clients_max: clients.iter().copied().max().unwrap_or(0),
            table_mean: mean(&tables),
            table_min: tables.iter().copied().min().unwrap_or(0),
            table_max: tables.iter().copied().max().unwrap_or(0),
            links_mean: mean(&links),
        };
        let attachment = self.attachment();
        let invariants = inv.report(&totals);
        let traffic = self.traffic();
        Metrics {
            scenario: cfg.name.clone(),
            seed: run.seed,
            passed: run.violation.is_none(),
            simulated_s: round3(run.now as f64 / SECS as f64),
            events: run.events,
            events_by_kind: run.events_by_kind,
            nodes: pop.final_counts(),
            delivery: d,
            hops: Summary::of(hops),
            hop_histogram: histogram,
            chat_latency_ms: Summary::of(latencies),
            join_time_ms: Summary::of(self.join_times),
            reattach,
            attachment,
            attached_over_time: self.attach_samples,
            delivery_over_time,
            nat: self.nat.clone(),
            traffic,
            supernodes,
            counters: totals,
            invariants,
            violation: run.violation,
            adversary,
            names: None,
            handovers: None,
            offline,
            partition: None,
            failed_chats: self.failed_chats,
            config: run.cfg,
        }
    }

    /// The attachment figures.
    fn attachment(&self) -> Attachment {
        let (min_ratio_after_warmup, min_ratio_at_s) = self
            .attach_samples
            .iter()
            .filter(|s| s.t_s >= self.warmup as f64 / SECS as f64)
            .map(|s| (s.ratio, s.t_s))
            .min_by(|a, b| a.0.total_cmp(&b.0))
            .unwrap_or((1.0, 0.0));
        let attached = self.join_times.len() as u64;
        Attachment {
            min_ratio_after_warmup,
            min_ratio_at_s,
            started: self.ordinary_started,
            attached,
            never_attached_departed: self.never_attached_departed,
            never_attached_at_end: self
                .ordinary_started
                .saturating_sub(attached + self.never_attached_departed),
        }
    }

    /// The traffic figures.
    fn traffic(&self) -> Traffic {
        let t = &self.traffic;
        Traffic {
            window_start_s: round3(self.warmup as f64 / SECS as f64),
            node_seconds: round3(self.node_seconds),
            maintenance_bytes: t.maintenance,
            chat_bytes: t.chat,
            maintenance_bytes_per_node_per_s: if self.node_seconds > 0.0 {
                round3(t.maintenance as f64 / self.node_seconds)
            } else {
                0.0
            },
            by_kind: t
                .by_kind
                .iter()
                .map(|((routed, k), v)| {
                    let name = if *routed {
                        format!("routed/{k}")
                    } else {
                        (*k).to_string()
                    };
                    (name, *v)
                })
                .collect(),
            frames_total: t.frames_total,
            bytes_total: t.bytes_total,
            dropped_no_link: t.dropped_no_link,
            dropped_at_arrival: t.dropped_at_arrival,
            dropped_partition: t.dropped_partition,
            retransmitted: t.retransmitted,
        }
    }
}

/// Counts eligible message `m` in `d`: its delivered (latency, hops), if it
/// was delivered.
fn tally(d: &mut Delivery, m: &MsgTrack, deadline: SimTime) -> Option<(SimTime, u8)> {
    d.eligible += 1;
    if m.unattached {
        d.sent_not_attached += 1;
    }
    match m.outcome {
        // A user who is not in the overlay cannot chat: that is the
        // failure, whatever the sender's node made of it.
        Some(Err(_)) | None if m.unattached => d.failed_not_attached += 1,
        Some(Ok((latency, h))) => {
            d.delivered += 1;
            if latency <= deadline {
                d.delivered_within_deadline += 1;
            }
            return Some((latency, h));
        }
        Some(Err(ChatFailure::Offline)) => d.failed_offline += 1,
        Some(Err(ChatFailure::NotFound)) => d.failed_not_found += 1,
        Some(Err(ChatFailure::TimedOut)) => d.failed_timed_out += 1,
        Some(Err(ChatFailure::Unreachable)) => d.failed_unreachable += 1,
        None => d.unresolved += 1,
    }
    None
}
