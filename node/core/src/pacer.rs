//! What an ordinary node sends in its own name, paced to what a peer
//! admits from a newly linked node: a script that sends hundreds of chats
//! at once, or a client that acknowledges a mailbox full of chats when it
//! comes back, is slowed down here rather than cut off by its supernode's
//! budget ([`crate::budget`]).
//!
//! # Implementation notes
//! One bucket per message class, refilled at nine tenths of the class's
//! rate up to its first burst ([`BudgetConfig::first_burst_percent`]).
//! A peer's bucket for this node starts at that first burst when the link
//! comes up and earns at the full rate, up to the whole burst; ours never
//! holds more than the first burst and earns less, and every frame we send
//! the peer is taken from both. So the peer's bucket never runs dry while
//! ours admits a frame, on a link of any age, including a new one after a
//! fail-over. The tenth held back covers the two clocks' drift.
//! - Packets over the pace wait in one queue per class, in order, bounded
//!   in bytes; the queues are boxed and allocated only while something
//!   waits, since a simulated million nodes carry the buckets.
//! - A chat whose packet still waits is not sent again when its retry is
//!   due ([`Pacer::holds`]): a retry would only queue behind it.

use std::collections::{HashSet, VecDeque};

use skyhop_protocol::codec::packet_frame_len;
use skyhop_protocol::envelope::BodyKind;
use skyhop_protocol::{MsgId, NodeId, Packet};

use crate::budget::{Bucket, BudgetConfig, MessageClass};
use crate::{SimTime, SECS};

/// Bytes of packets waiting, at most; a packet that would go past it is
/// refused (a chat's retry sends it again later).
pub const MAX_HELD_BYTES: usize = 1 << 20;

// An empty queue has room for any packet (see `Pacer::hold`).
const _: () =
    assert!(MAX_HELD_BYTES >= skyhop_protocol::MAX_FRAME_BODY + skyhop_protocol::FRAME_HEADER_LEN);

/// Microseconds in a millisecond, as buckets count time.
const MS: SimTime = SECS / 1_000;

/// Milliseconds a bucket counts before the pacer restarts its clock (the
/// buckets count in u32).
const REBASE_MS: u64 = 1 << 31;

/// Packets waiting for the pace, per class.
#[derive(Debug, Default)]
struct Held {
    /// (first hop, packet, frame bytes), oldest first, per class.
    queues: [VecDeque<(NodeId, Packet, usize)>; MessageClass::ALL.len()],
    /// The packet ids waiting, for [`Pacer::holds`].
    ids: HashSet<MsgId>,
    /// Frame bytes waiting.
    bytes: usize,
}

/// An ordinary node's own pace (see the module's notes).
#[derive(Debug)]
pub(crate) struct Pacer {
    /// When the buckets' clock started.
    since: SimTime,
    buckets: [Bucket; MessageClass::ALL.len()],
    held: Option<Box<Held>>,
}

impl Pacer {
    /// Buckets holding each class's first burst, as of `now`.
    pub fn new(cfg: &BudgetConfig, now: SimTime) -> Pacer {
        Pacer {
            since: now,
            buckets: MessageClass::ALL.map(|c| Bucket::holding(cfg.first_burst(c))),
            held: None,
        }
    }

    /// Whether `p` may go at `now`: nothing of its class waits and the
    /// pace has a token for it (taken).
    pub fn admits(&mut self, cfg: &BudgetConfig, now: SimTime, p: &Packet) -> bool {
        let class = MessageClass::of_routed(BodyKind::of(&p.body));
        let waiting = self
            .held
            .as_ref()
            .is_some_and(|h| !h.queues[class.index()].is_empty());
        // Behind packets of its class that wait, in order.
        !waiting && self.take(cfg, class, now)
    }

    /// Keeps `p`, for first hop `hop`, until the pace lets it go; false
    /// (and `p` dropped) if the queue has no room for it.
    pub fn hold(&mut self, hop: NodeId, p: Packet) -> bool {
        let class = MessageClass::of_routed(BodyKind::of(&p.body));
        let bytes = packet_frame_len(&p);
        // A packet is at most a frame, so an empty queue has room.
        let held = self.held.get_or_insert_with(Box::default);
        if held.bytes + bytes > MAX_HELD_BYTES {
            return false;
        }
        held.bytes += bytes;
        held.ids.insert(p.id);
        held.queues[class.index()].push_back((hop, p, bytes));
        true
    }

    /// The waiting packets the pace lets go at `now`, each with its first
    /// hop, oldest first within a class.
    pub fn release(&mut self, cfg: &BudgetConfig, now: SimTime) -> Vec<(NodeId, Packet)> {
        let mut out = Vec::new();
        let Some(mut held) = self.held.take() else {
            return out;
        };
        for class in MessageClass::ALL {
            while !held.queues[class.index()].is_empty() && self.take(cfg, class, now) {
                let Some((hop, p, bytes)) = held.queues[class.index()].pop_front() else {
                    break;
                };
                held.bytes -= bytes;
                held.ids.remove(&p.id);
                out.push((hop, p));
            }
        }
        if held.queues.iter().any(|q| !q.is_empty()) {
            self.held = Some(held);
        }
        out
    }

    /// When the next waiting packet may go, if one waits.
    pub fn next_release(&self, cfg: &BudgetConfig) -> Option<SimTime> {
        let held = self.held.as_ref()?;
        MessageClass::ALL
            .into_iter()
            .filter(|c| !held.queues[c.index()].is_empty())
            .map(|c| {
                let ms = self.buckets[c.index()].next_token_ms(paced_rate(cfg, c));
                self.since.saturating_add(ms.saturating_mul(MS))
            })
            .min()
    }

    /// Whether packet `id` waits here.
    pub fn holds(&self, id: &MsgId) -> bool {
        self.held.as_ref().is_some_and(|h| h.ids.contains(id))
    }

    /// Packets waiting.
    #[cfg(test)]
    pub fn waiting(&self) -> usize {
        self.held.as_ref().map_or(0, |h| h.ids.len())
    }

    /// Takes a token of `class` at `now`, if there is one.
    fn take(&mut self, cfg: &BudgetConfig, class: MessageClass, now: SimTime) -> bool {
        let mut now_ms = now.saturating_sub(self.since) / MS;
        if now_ms >= REBASE_MS {
            // Weeks since the clock started: every bucket is full by now.
            *self = Pacer {
                held: self.held.take(),
                ..Pacer::new(cfg, now)
            };
            now_ms = 0;
        }
        let now_ms = u32::try_from(now_ms).unwrap_or(u32::MAX);
        self.buckets[class.index()].take(paced_rate(cfg, class), cfg.first_burst(class), now_ms)
    }
}

/// Nine tenths of the rate a peer refills `class` at (at least one frame
/// a second).
fn paced_rate(cfg: &BudgetConfig, class: MessageClass) -> u64 {
    (u64::from(cfg.rate(class).per_s) * 9 / 10).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::budget::{PeerBudget, Rate, Verdict};
    use skyhop_protocol::{Body, LocationHop};

    fn trace_probe(n: u64) -> Packet {
        Packet {
            dst: NodeId([2; 32]),
            src: NodeId([1; 32]),
            id: MsgId(n),
            ttl: 16,
            hops: 0,
            location: LocationHop::Unused,
            trace: None,
            body: Body::TraceProbe { probe_id: n },
        }
    }

    fn cfg() -> BudgetConfig {
        BudgetConfig {
            trace: Rate {
                per_s: 20,
                burst: 100,
            },
            tolerance: 1,
            ..BudgetConfig::default()
        }
    }

    #[test]
    fn a_burst_goes_out_at_the_pace_in_order_and_a_fresh_peer_never_drops_it() {
        let cfg = cfg();
        let hop = NodeId([3; 32]);
        let start = 5 * SECS;
        let mut pacer = Pacer::new(&cfg, start);
        // The peer linked at the same moment.
        let mut peer = PeerBudget::new(&cfg, start);
        let mut sent = Vec::new();
        for n in 0..100 {
            let p = trace_probe(n);
            if pacer.admits(&cfg, start, &p) {
                sent.push((start, p));
            } else {
                assert!(pacer.hold(hop, p), "held {n}");
            }
        }
        assert_eq!(sent.len(), 10, "the first burst");
        assert_eq!(pacer.waiting(), 90);
        assert!(pacer.holds(&MsgId(10)) && !pacer.holds(&MsgId(9)));
        let mut steps = 0;
        while let Some(at) = pacer.next_release(&cfg) {
            steps += 1;
            assert!(steps <= 1_000, "released in bounded steps");
            sent.extend(pacer.release(&cfg, at).into_iter().map(|(_, p)| (at, p)));
        }
        let ids: Vec<u64> = sent.iter().map(|(_, p)| p.id.0).collect();
        assert_eq!(ids, (0..100).collect::<Vec<_>>(), "every packet, in order");
        // 90 more at 18 a second.
        let last = sent.last().map(|(at, _)| *at).unwrap_or(0);
        assert_eq!((last - start) / (SECS / 10), 50, "{last}");
        for (at, _) in &sent {
            let verdict = peer.charge(&cfg, MessageClass::Trace, false, *at);
            assert_eq!(verdict, Verdict::Within, "at {at}");
        }
    }

    #[test]
    fn a_queue_full_of_bytes_refuses_the_next_packet() {
        let cfg = cfg();
        let hop = NodeId([3; 32]);
        let mut pacer = Pacer::new(&cfg, 0);
        let mut refused = 0;
        for n in 0..100_000 {
            let p = trace_probe(n);
            if !pacer.admits(&cfg, 0, &p) && !pacer.hold(hop, p) {
                refused += 1;
            }
        }
        let held = pacer.held.as_ref().map_or(0, |h| h.bytes);
        assert!(
            held <= MAX_HELD_BYTES && held > MAX_HELD_BYTES - 200,
            "{held}"
        );
        assert_eq!(refused, 100_000 - 10 - pacer.waiting());
    }

    #[test]
    fn a_pacer_running_for_months_still_refills() {
        let cfg = cfg();
        let mut pacer = Pacer::new(&cfg, 0);
        let hop = NodeId([3; 32]);
        let later = 100 * 24 * 3600 * SECS;
        let now = (0..20)
            .filter(|n| {
                let p = trace_probe(*n);
                pacer.admits(&cfg, later, &p) || !pacer.hold(hop, p)
            })
            .count();
        assert_eq!(now, 10);
        let at = pacer.next_release(&cfg).expect("waiting");
        assert_eq!(at, later + 56 * MS, "a token every 1/18 s");
        assert_eq!(pacer.release(&cfg, at).len(), 1);
    }
}
