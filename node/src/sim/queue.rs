//! The event queue: a calendar queue that pops in (time, sequence) order,
//! exactly as a binary heap would, but touches memory in time order.
//!
//! # Implementation notes
//! At 10^5 nodes a binary heap of ~10^6 pending events spent a tenth of the
//! run in `pop`, mostly cache misses down its ~20 levels. Here the near
//! future is a ring of buckets, each `WIDTH` µs of simulated time: a push
//! appends to its bucket, and a bucket is sorted once, when the clock
//! reaches it. Events beyond the ring's horizon wait in a small binary heap
//! (session ends, mostly) and move into the ring as the clock nears them.
//!
//! Invariants: `current` holds every queued event before `base + WIDTH`,
//! sorted so that the smallest (time, seq) is last; ring slot
//! `(cur + k) % BUCKETS` for `k` in `1..BUCKETS` holds those in
//! `[base + k·WIDTH, base + (k+1)·WIDTH)`, unsorted; `far` holds the rest.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use skyhop_core::SimTime;

/// Simulated time per bucket, µs.
const WIDTH: SimTime = 1_000;
/// Buckets in the ring (a power of two): a 16.4 s horizon, past the
/// heartbeat intervals the scenarios use.
const BUCKETS: usize = 1 << 14;

/// Something queued at `at`; `seq` breaks ties in scheduling order.
pub struct Entry<T> {
    /// When it happens.
    pub at: SimTime,
    /// Scheduling order.
    pub seq: u64,
    /// What happens.
    pub item: T,
}

impl<T> Entry<T> {
    fn key(&self) -> (SimTime, u64) {
        (self.at, self.seq)
    }
}

/// `far`'s element: ordered by key only.
struct Far<T>(Entry<T>);

impl<T> PartialEq for Far<T> {
    fn eq(&self, other: &Self) -> bool {
        self.0.key() == other.0.key()
    }
}
impl<T> Eq for Far<T> {}
impl<T> PartialOrd for Far<T> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for Far<T> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.key().cmp(&other.0.key())
    }
}

/// Events in (time, sequence) order; see the module notes.
pub struct EventQueue<T> {
    /// Start of the current bucket.
    base: SimTime,
    /// Ring index of the current bucket.
    cur: usize,
    /// The current bucket's events, sorted, popped from the end.
    current: Vec<Entry<T>>,
    /// 1 ms buckets over the ring's span, unsorted until current.
    ring: Vec<Vec<Entry<T>>>,
    /// Events beyond the ring's span.
    far: BinaryHeap<Reverse<Far<T>>>,
    /// Events in all of `ring`.
    in_ring: usize,
    /// Events in all.
    len: usize,
}

impl<T> Default for EventQueue<T> {
    fn default() -> Self {
        EventQueue {
            base: 0,
            cur: 0,
            current: Vec::new(),
            ring: (0..BUCKETS).map(|_| Vec::new()).collect(),
            far: BinaryHeap::new(),
            in_ring: 0,
            len: 0,
        }
    }
}

impl<T> EventQueue<T> {
    /// Events queued.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Queues `item` at `at` with tie-breaker `seq`. `at` must not be
    /// before the last popped event's time (the clock never runs back);
    /// `seq` must grow with every push.
    pub fn push(&mut self, at: SimTime, seq: u64, item: T) {
        let e = Entry { at, seq, item };
        self.len += 1;
        let at = at.max(self.base);
        let k = ((at - self.base) / WIDTH) as usize;
        if k == 0 {
            // Sorted descending: the new entry goes before every smaller
            // key, usually near the end.
            let key = e.key();
            let pos = self.current.partition_point(|x| x.key() > key);
            self.current.insert(pos, e);
        } else if k < BUCKETS {
            self.ring[(self.cur + k) % BUCKETS].push(e);
            self.in_ring += 1;
        } else {
            self.far.push(Reverse(Far(e)));
        }
    }

    /// The time of the next event, if any.
    pub fn peek_time(&mut self) -> Option<SimTime> {
        self.settle();
        self.current.last().map(|e| e.at)
    }

    /// Removes and returns the next event.
    pub fn pop(&mut self) -> Option<Entry<T>> {
        self.settle();
        let e = self.current.pop()?;
        self.len -= 1;
        Some(e)
    }

    /// Advances the current bucket until it holds an event (or none is
    /// left).
    fn settle(&mut self) {
        while self.current.is_empty() && self.len > 0 {
            // The emptied buffer is freed, not kept: a bucket's size swings
            // with the load (join waves), and 16k buffers kept at their
            // largest outweighed the heap this replaced.
            self.current = Vec::new();
            self.cur = (self.cur + 1) % BUCKETS;
            self.base += WIDTH;
            if self.in_ring == 0 {
                // Nothing within the horizon: jump to the next far event.
                if let Some(Reverse(Far(next))) = self.far.peek() {
                    let skip = next.at.saturating_sub(self.base) / WIDTH;
                    self.base += skip * WIDTH;
                }
            }
            let horizon = self.base + WIDTH * BUCKETS as SimTime;
            while self.far_before(horizon) {
                let Some(Reverse(Far(e))) = self.far.pop() else {
                    break;
                };
                let k = ((e.at.max(self.base) - self.base) / WIDTH) as usize;
                self.ring[(self.cur + k) % BUCKETS].push(e);
                self.in_ring += 1;
            }
            let mut next = std::mem::take(&mut self.ring[self.cur]);
            self.in_ring -= next.len();
            next.sort_unstable_by_key(|e| Reverse(e.key()));
            self.current = next;
        }
    }

    fn far_before(&self, t: SimTime) -> bool {
        self.far.peek().is_some_and(|Reverse(Far(e))| e.at < t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::Xoshiro256PlusPlus;
    use rand::{RngExt, SeedableRng};

    /// Pops in the order a binary heap keyed by (time, seq) gives, with
    /// pushes interleaved at and after the clock, near and far.
    #[test]
    fn pops_in_time_then_sequence_order() {
        for seed in 0..20u64 {
            let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
            let mut q = EventQueue::default();
            let mut reference = BinaryHeap::new();
            let mut seq = 0u64;
            let mut now: SimTime = 0;
            for _ in 0..20_000 {
                if rng.random::<f64>() < 0.55 || reference.is_empty() {
                    let ahead: SimTime = match rng.random_range(0..4) {
                        0 => 0,
                        1 => rng.random_range(0..2 * WIDTH),
                        2 => rng.random_range(0..100_000_000),
                        _ => rng.random_range(0..10 * WIDTH * BUCKETS as SimTime),
                    };
                    seq += 1;
                    q.push(now + ahead, seq, seq);
                    reference.push(Reverse((now + ahead, seq)));
                } else {
                    let Reverse((at, s)) = reference.pop().expect("not empty");
                    assert_eq!(q.peek_time(), Some(at), "seed {seed}");
                    let e = q.pop().expect("same length");
                    assert_eq!((e.at, e.seq, e.item), (at, s, s), "seed {seed}");
                    now = at;
                }
                assert_eq!(q.len(), reference.len());
            }
            while let Some(Reverse((at, s))) = reference.pop() {
                let e = q.pop().expect("same length");
                assert_eq!((e.at, e.seq), (at, s), "seed {seed}");
            }
            assert!(q.pop().is_none());
        }
    }
}
