//! The receiver's side of chat delivery: per author, the duplicate
//! window, the replay marks, and the in-order hand-off of chats that arrive
//! ahead of a gap in `seq` (held, bounded, released when the gap fills or
//! times out). Only chats handed out are acknowledged (see
//! [`super::delivery`]).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use skyhop_protocol::{ChatMessage, MsgId, NodeId};

use super::small_map::SmallMap;
use super::SimTime;

/// Messages per sender held while an earlier `seq` is missing.
pub const MAX_HELD_PER_SENDER: usize = 64;
/// Message ids per sender remembered against duplicates.
pub const SEEN_PER_SENDER: usize = 256;
/// Senders tracked at most; the least recently heard is forgotten.
pub const MAX_SENDERS: usize = 4096;
/// How long a gap in `seq` may hold later messages back.
pub const GAP_TIMEOUT: SimTime = 10 * super::SECS;
/// `seq`s per sender remembered as skipped by a release past a gap, so
/// that the chat still arriving late is handed out rather than refused as
/// a replay.
pub const SKIPPED_PER_SENDER: usize = 64;

/// What the receiver decided about an arriving message.
#[derive(Debug, PartialEq, Eq)]
pub enum Arrival {
    /// Already handed out: ack again, deliver nothing.
    Duplicate,
    /// Older than what the author's mark allows (see [`ReplayMark`]):
    /// deliver nothing and send no receipt.
    Replayed,
    /// These messages are now ready for the application, in order (empty
    /// when the message is held behind a gap, or is a copy of one held).
    /// Only these are acknowledged: a held message is not stored yet.
    Ready(Vec<Released>),
}

/// A message handed to the application, with the hops it took to arrive.
#[derive(Debug, PartialEq, Eq)]
pub struct Released {
    /// The message.
    pub chat: ChatMessage,
    /// Hops it took, for its receipt.
    pub hops: u8,
}

/// What the receiver remembers of an author against replays, kept across
/// restarts by the runtime.
///
/// A chat is a replay if its `sent_at` is before `epoch`, or if its `seq`
/// is at most `seq` and its `sent_at` at most `latest_sent_at`. A lower
/// `seq` with a later `sent_at` is the author's new numbering after it
/// restarted (its `seq` counters are not kept): it starts a new epoch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplayMark {
    /// The highest `seq` handed to the application in order.
    pub seq: u64,
    /// The `sent_at` of the chat that started the current numbering.
    pub epoch: u64,
    /// The latest `sent_at` handed to the application.
    pub latest_sent_at: u64,
}

#[derive(Debug, Default)]
struct Sender {
    /// What was handed to the application.
    mark: ReplayMark,
    /// Recent message ids, against duplicates (bounded by `SEEN_PER_SENDER`).
    seen: VecDeque<MsgId>,
    /// Messages that arrived ahead of a gap, by `seq`, with their arrival
    /// time and hops.
    held: BTreeMap<u64, (ChatMessage, SimTime, u8)>,
    /// `seq`s jumped over when held messages were released past a gap
    /// (the latest `SKIPPED_PER_SENDER`), never handed out: each may still
    /// arrive once.
    skipped: BTreeSet<u64>,
    /// When this sender was last heard, for eviction.
    last_heard: SimTime,
}

/// The receiver's side: duplicate window, replay marks and in-order
/// hand-off per sender.
///
/// # Implementation notes
/// Held messages are indexed by arrival, so that the next gap to give up
/// on is found in O(log n) after every arrival, instead of scanning every
/// sender's held messages (4,096 x 64); senders are indexed by last heard,
/// so that making room for a new author is O(log n). That index is built
/// the first time the bound is reached (once, O(n log n)) and kept from
/// then on: below it, it cost every node that received a chat ~460 bytes
/// for nothing. The senders are a [`SmallMap`]: most nodes hear from a
/// few authors, and a `BTreeMap`'s first leaf holds eleven (~1.6 KB).
///
/// Forgetting an author must not re-open its replays: `forgotten_before`
/// is just past the latest `sent_at` handed out from any forgotten
/// author, and a chat from an author without a mark is refused if it was
/// sent before it. Every chat the forgotten author had delivered was sent at or
/// before that time. The cost falls on new authors whose chats were sent
/// before an eviction, which happens only with 4,096 authors in play.
#[derive(Debug, Default)]
pub struct Inbox {
    /// Per-sender windows, bounded by `MAX_SENDERS`.
    senders: SmallMap<NodeId, Sender>,
    /// `(last_heard, author)` of every sender, once `MAX_SENDERS` was
    /// reached.
    by_heard: Option<BTreeSet<(SimTime, NodeId)>>,
    /// `(arrived, author, seq)` of every held message.
    held_at: BTreeSet<(SimTime, NodeId, u64)>,
    /// Chats of authors without a mark sent before this are replays.
    forgotten_before: u64,
}

impl Inbox {
    /// Takes the marks saved before a restart (at most `MAX_SENDERS`
    /// are kept, the latest `latest_sent_at` first) and the time before
    /// which chats of unknown authors are refused.
    pub fn restore(&mut self, mut marks: Vec<(NodeId, ReplayMark)>, forgotten_before: u64) {
        marks.sort_by_key(|(id, m)| (std::cmp::Reverse(m.latest_sent_at), *id));
        self.forgotten_before = self.forgotten_before.max(forgotten_before);
        for (i, (id, mark)) in marks.into_iter().enumerate() {
            if i >= MAX_SENDERS || self.senders.len() >= MAX_SENDERS {
                self.forgotten_before = self
                    .forgotten_before
                    .max(mark.latest_sent_at.saturating_add(1));
                continue;
            }
            let s = self.senders.get_or_insert_with(id, Sender::default);
            s.mark = mark;
            if let Some(by_heard) = &mut self.by_heard {
                by_heard.insert((s.last_heard, id));
            }
        }
    }

    /// `author`'s mark, if it has one.
    pub fn mark(&self, author: &NodeId) -> Option<ReplayMark> {
        self.senders.get(author).map(|s| s.mark)
    }

    /// Chats of authors without a mark sent before this are refused.
    pub fn forgotten_before(&self) -> u64 {
        self.forgotten_before
    }

    /// Every author's mark, in id order, and the floor for unknown authors.
    pub fn marks(&self) -> (Vec<(NodeId, ReplayMark)>, u64) {
        (
            self.senders.iter().map(|(id, s)| (*id, s.mark)).collect(),
            self.forgotten_before,
        )
    }

    /// Takes a verified message that arrived at `now` after `hops` hops.
    pub fn arrive(&mut self, chat: ChatMessage, now: SimTime, hops: u8) -> Arrival {
        let from = chat.from;
        if !self.senders.contains_key(&from) {
            if chat.sent_at < self.forgotten_before {
                return Arrival::Replayed;
            }
            if self.senders.len() >= MAX_SENDERS {
                self.forget_oldest();
            }
        }
        let s = self.senders.get_or_insert_with(from, Sender::default);
        if let Some(by_heard) = &mut self.by_heard {
            by_heard.remove(&(s.last_heard, from));
            by_heard.insert((now, from));
        }
        s.last_heard = now;
        if s.seen.contains(&chat.msg_id) {
            // A copy of a held message is not acked either: the first is
            // not handed out (stored) yet.
            let held = s
                .held
                .get(&chat.seq)
                .is_some_and(|h| h.0.msg_id == chat.msg_id);
            return if held {
                Arrival::Ready(Vec::new())
            } else {
                Arrival::Duplicate
            };
        }
        if chat.sent_at < s.mark.epoch {
            return Arrival::Replayed;
        }
        let mut ready = Vec::new();
        if s.skipped.remove(&chat.seq) {
            // Late, after a release past its gap: never handed out, so not
            // a replay. The mark stays where the later chats put it.
            Self::remember(s, chat.msg_id);
            s.mark.latest_sent_at = s.mark.latest_sent_at.max(chat.sent_at);
            ready.push(Released { chat, hops });
            return Arrival::Ready(ready);
        }
        if chat.seq <= s.mark.seq {
            if chat.sent_at <= s.mark.latest_sent_at {
                return Arrival::Replayed;
            }
            // An older seq sent later: the author restarted its
            // conversation; deliver it and follow the new numbering.
            s.mark.epoch = chat.sent_at;
            s.skipped.clear();
            Self::remember(s, chat.msg_id);
            Self::hand_out(s, chat, hops, &mut ready);
        } else if s.mark.seq.checked_add(1) == Some(chat.seq) {
            Self::remember(s, chat.msg_id);
            Self::hand_out(s, chat, hops, &mut ready);
        } else {
            Self::remember(s, chat.msg_id);
            if s.held.len() >= MAX_HELD_PER_SENDER {
                // Too far ahead to hold: release everything held in order.
                Self::release_all(s, &mut self.held_at, from, &mut ready);
            }
            let seq = chat.seq;
            if let Some((_, at, _)) = s.held.insert(seq, (chat, now, hops)) {
                self.held_at.remove(&(at, from, seq));
            }
            self.held_at.insert((now, from, seq));
        }
        Self::release_in_order(s, &mut self.held_at, from, &mut ready);
        Arrival::Ready(ready)
    }

    /// Forgets the least recently heard author, raising the floor for
    /// unknown authors to what it had handed out.
    fn forget_oldest(&mut self) {
        let senders = &self.senders;
        let by_heard = self
            .by_heard
            .get_or_insert_with(|| senders.iter().map(|(id, s)| (s.last_heard, *id)).collect());
        let Some((_, gone)) = by_heard.pop_first() else {
            return;
        };
        if let Some(s) = self.senders.remove(&gone) {
            self.forgotten_before = self
                .forgotten_before
                .max(s.mark.latest_sent_at.saturating_add(1));
            for (seq, (_, at, _)) in s.held {
                self.held_at.remove(&(at, gone, seq));
            }
        }
    }

    fn remember(s: &mut Sender, msg_id: MsgId) {
        s.seen.push_back(msg_id);
        if s.seen.len() > SEEN_PER_SENDER {
            s.seen.pop_front();
        }
    }

    fn hand_out(s: &mut Sender, chat: ChatMessage, hops: u8, ready: &mut Vec<Released>) {
        // Past a gap (a release of held chats): remember what was jumped.
        let first_missing = s.mark.seq.saturating_add(1);
        let from = first_missing.max(chat.seq.saturating_sub(SKIPPED_PER_SENDER as u64));
        for seq in from..chat.seq {
            s.skipped.insert(seq);
        }
        while s.skipped.len() > SKIPPED_PER_SENDER {
            s.skipped.pop_first();
        }
        s.mark.seq = chat.seq;
        s.mark.latest_sent_at = s.mark.latest_sent_at.max(chat.sent_at);
        ready.push(Released { chat, hops });
    }

    fn release_in_order(
        s: &mut Sender,
        held_at: &mut BTreeSet<(SimTime, NodeId, u64)>,
        from: NodeId,
        ready: &mut Vec<Released>,
    ) {
        // A peer chooses `seq`: at u64::MAX nothing can follow it.
        while let Some((chat, at, hops)) = s
            .mark
            .seq
            .checked_add(1)
            .and_then(|next| s.held.remove(&next))
        {
            held_at.remove(&(at, from, chat.seq));
            Self::hand_out(s, chat, hops, ready);
        }
    }

    fn release_all(
        s: &mut Sender,
        held_at: &mut BTreeSet<(SimTime, NodeId, u64)>,
        from: NodeId,
        ready: &mut Vec<Released>,
    ) {
        for (seq, (chat, at, hops)) in std::mem::take(&mut s.held) {
            held_at.remove(&(at, from, seq));
            Self::hand_out(s, chat, hops, ready);
        }
    }

    /// Releases messages held behind a gap older than [`GAP_TIMEOUT`]: the
    /// missing ones are not coming (their sender gave up). Senders go in
    /// id order.
    pub fn release_stalled(&mut self, now: SimTime) -> Vec<Released> {
        let stalled: BTreeSet<NodeId> = self
            .held_at
            .iter()
            .take_while(|(at, _, _)| at + GAP_TIMEOUT <= now)
            .map(|(_, from, _)| *from)
            .collect();
        let mut ready = Vec::new();
        for from in stalled {
            if let Some(s) = self.senders.get_mut(&from) {
                Self::release_all(s, &mut self.held_at, from, &mut ready);
            }
        }
        if self.held_at.is_empty() {
            // Free the emptied set's node: every simulated node has an inbox.
            self.held_at = BTreeSet::new();
        }
        ready
    }

    /// The earliest time a held message may be released.
    pub fn next_wakeup(&self) -> Option<SimTime> {
        self.held_at.first().map(|(at, _, _)| at + GAP_TIMEOUT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skyhop_protocol::Identity;

    fn chat(from: &Identity, to: NodeId, id: u64, seq: u64) -> ChatMessage {
        chat_at(from, to, id, seq, 0)
    }

    fn chat_at(from: &Identity, to: NodeId, id: u64, seq: u64, sent_at: u64) -> ChatMessage {
        from.chat(to, MsgId(id), seq, sent_at, format!("m{seq}"))
            .expect("short")
    }

    /// The `n`-th throwaway author (the inbox does not check signatures).
    fn stranger(n: u64) -> NodeId {
        let mut id = [0xee; 32];
        id[..8].copy_from_slice(&n.to_be_bytes());
        NodeId(id)
    }

    fn seqs(a: Arrival) -> Vec<u64> {
        match a {
            Arrival::Ready(ready) => ready.iter().map(|c| c.chat.seq).collect(),
            other => panic!("not handed out: {other:?}"),
        }
    }

    #[test]
    fn a_chat_replayed_after_256_newer_ones_is_not_handed_out_again() {
        let a = Identity::from_secret([1; 32]);
        let b = NodeId([2; 32]);
        let mut inbox = Inbox::default();
        let first = chat_at(&a, b, 1, 1, 100);
        assert_eq!(seqs(inbox.arrive(first.clone(), 100, 1)), vec![1]);
        for seq in 2..=(SEEN_PER_SENDER as u64 + 1) {
            assert_eq!(
                seqs(inbox.arrive(chat_at(&a, b, seq, seq, 100 + seq), 100 + seq, 1)),
                vec![seq]
            );
        }
        // Its id has left the window of recent ids; the mark refuses it.
        assert_eq!(inbox.arrive(first, 1_000, 1), Arrival::Replayed);
        // Later chats from the author are not held back by it.
        let next = SEEN_PER_SENDER as u64 + 2;
        assert_eq!(
            seqs(inbox.arrive(chat_at(&a, b, next, next, 1_001), 1_001, 1)),
            vec![next]
        );
    }

    #[test]
    fn a_chat_replayed_after_throwaway_authors_flush_the_inbox_is_not_handed_out_again() {
        let a = Identity::from_secret([1; 32]);
        let b = NodeId([2; 32]);
        let mut inbox = Inbox::default();
        let first = chat_at(&a, b, 1, 1, 100);
        assert_eq!(seqs(inbox.arrive(first.clone(), 100, 1)), vec![1]);
        let junk = Identity::from_secret([3; 32]);
        for n in 0..MAX_SENDERS as u64 {
            let mut c = chat_at(&junk, b, n, 1, 200 + n);
            c.from = stranger(n);
            inbox.arrive(c, 200 + n, 1);
        }
        assert!(!inbox.senders.contains_key(&a.id()), "a was pushed out");
        assert_eq!(inbox.arrive(first, 10_000, 1), Arrival::Replayed);
        // An author whose chat was sent after the eviction is still heard.
        let c = Identity::from_secret([4; 32]);
        assert_eq!(
            seqs(inbox.arrive(chat_at(&c, b, 9, 1, 10_000), 10_000, 1)),
            vec![1]
        );
    }

    #[test]
    fn marks_saved_and_restored_refuse_a_replay_after_a_restart() {
        let a = Identity::from_secret([1; 32]);
        let b = NodeId([2; 32]);
        let mut before = Inbox::default();
        let first = chat_at(&a, b, 1, 1, 100);
        assert_eq!(seqs(before.arrive(first.clone(), 100, 1)), vec![1]);
        let (marks, floor) = before.marks();
        assert_eq!(
            marks,
            vec![(
                a.id(),
                ReplayMark {
                    seq: 1,
                    epoch: 0,
                    latest_sent_at: 100
                }
            )]
        );
        let mut fresh = Inbox::default();
        assert_eq!(
            seqs(fresh.arrive(first.clone(), 200, 1)),
            vec![1],
            "a fresh inbox would take it"
        );
        let mut after = Inbox::default();
        after.restore(marks, floor);
        assert_eq!(after.arrive(first, 200, 1), Arrival::Replayed);
        assert_eq!(
            seqs(after.arrive(chat_at(&a, b, 2, 2, 150), 200, 1)),
            vec![2]
        );
    }

    #[test]
    fn the_least_recently_heard_sender_goes_first_and_its_index_is_built_only_at_the_bound() {
        let b = NodeId([2; 32]);
        let junk = Identity::from_secret([3; 32]);
        let mut inbox = Inbox::default();
        let hear = |inbox: &mut Inbox, n: u64, seq: u64, at: SimTime| {
            let mut c = chat_at(&junk, b, n * 1_000 + seq, seq, at);
            c.from = stranger(n);
            inbox.arrive(c, at, 1);
        };
        for n in 0..MAX_SENDERS as u64 {
            hear(&mut inbox, n, 1, 100 + n);
        }
        assert!(inbox.by_heard.is_none(), "no index below the bound");
        hear(&mut inbox, 0, 2, 10_000); // heard again: now the newest
        hear(&mut inbox, 5_000, 1, 10_001);
        assert!(inbox.by_heard.is_some(), "built at the bound");
        assert!(inbox.senders.contains_key(&stranger(0)));
        assert!(!inbox.senders.contains_key(&stranger(1)), "the oldest went");
        hear(&mut inbox, 2, 2, 10_002); // the index follows a later hearing
        hear(&mut inbox, 5_001, 1, 10_003);
        assert!(inbox.senders.contains_key(&stranger(2)));
        assert!(!inbox.senders.contains_key(&stranger(3)));
        assert_eq!(inbox.senders.len(), MAX_SENDERS);
        assert_eq!(
            inbox.by_heard.as_ref().map(BTreeSet::len),
            Some(MAX_SENDERS)
        );
    }

    #[test]
    fn restoring_more_marks_than_the_bound_keeps_the_newest_and_refuses_the_rest() {
        let b = NodeId([2; 32]);
        let marks: Vec<(NodeId, ReplayMark)> = (0..MAX_SENDERS as u64 + 10)
            .map(|n| {
                (
                    stranger(n),
                    ReplayMark {
                        seq: 1,
                        epoch: 0,
                        latest_sent_at: 1_000 + n,
                    },
                )
            })
            .collect();
        let mut inbox = Inbox::default();
        inbox.restore(marks, 0);
        assert_eq!(inbox.senders.len(), MAX_SENDERS);
        assert!(!inbox.senders.contains_key(&stranger(9)), "the oldest went");
        // The oldest author's replay is refused by the floor.
        let junk = Identity::from_secret([3; 32]);
        let mut c = chat_at(&junk, b, 5, 1, 1_009);
        c.from = stranger(9);
        assert_eq!(inbox.arrive(c, 5_000, 1), Arrival::Replayed);
    }

    #[test]
    fn a_restarted_author_is_heard_and_its_old_numbering_is_not() {
        let a = Identity::from_secret([1; 32]);
        let b = NodeId([2; 32]);
        let mut inbox = Inbox::default();
        let old = chat_at(&a, b, 1, 1, 100);
        let old2 = chat_at(&a, b, 2, 2, 101);
        assert_eq!(seqs(inbox.arrive(old.clone(), 100, 1)), vec![1]);
        // The author restarts and numbers from 1 again, later.
        assert_eq!(
            seqs(inbox.arrive(chat_at(&a, b, 3, 1, 500), 500, 1)),
            vec![1]
        );
        // A chat of the old numbering (never seen here) is from before
        // the new epoch: refused, whatever its seq.
        assert_eq!(inbox.arrive(old2, 501, 1), Arrival::Replayed);
        // One it handed out, still in the window of ids: acked again.
        assert_eq!(inbox.arrive(old, 502, 1), Arrival::Duplicate);
    }

    #[test]
    fn delivers_in_order_and_drops_duplicates() {
        let a = Identity::from_secret([1; 32]);
        let b = NodeId([2; 32]);
        let mut inbox = Inbox::default();
        assert_eq!(
            inbox.arrive(chat(&a, b, 12, 2), 0, 1),
            Arrival::Ready(vec![])
        );
        // A copy of a held chat: not handed out yet, so not acked either.
        assert_eq!(
            inbox.arrive(chat(&a, b, 12, 2), 1, 1),
            Arrival::Ready(vec![])
        );
        let Arrival::Ready(ready) = inbox.arrive(chat(&a, b, 11, 1), 2, 1) else {
            panic!("not a duplicate")
        };
        assert_eq!(
            ready.iter().map(|c| c.chat.seq).collect::<Vec<_>>(),
            vec![1, 2]
        );
        assert_eq!(inbox.arrive(chat(&a, b, 12, 2), 3, 1), Arrival::Duplicate);
    }

    #[test]
    fn a_seq_at_the_top_of_the_range_is_delivered_without_overflow() {
        let a = Identity::from_secret([1; 32]);
        let b = NodeId([2; 32]);
        let mut inbox = Inbox::default();
        assert_eq!(
            inbox.arrive(chat(&a, b, 1, u64::MAX - 1), 0, 1),
            Arrival::Ready(vec![]),
            "held behind the gap"
        );
        assert_eq!(inbox.release_stalled(GAP_TIMEOUT).len(), 1);
        // The next in order is the last seq there is: delivered, and
        // nothing after it is looked for past the end of the range.
        let Arrival::Ready(last) = inbox.arrive(chat(&a, b, 2, u64::MAX), 1, 1) else {
            panic!("not a duplicate")
        };
        assert_eq!(
            last.iter().map(|c| c.chat.seq).collect::<Vec<_>>(),
            vec![u64::MAX]
        );
        // Another chat at the top with a new id and no later `sent_at` is
        // a replay, not a gap to wait behind.
        assert_eq!(
            inbox.arrive(chat(&a, b, 4, u64::MAX), 2, 1),
            Arrival::Replayed
        );
        // A lower seq sent later is a restarted conversation.
        let Arrival::Ready(after) = inbox.arrive(chat_at(&a, b, 3, 1, 5), 2, 1) else {
            panic!("not a duplicate")
        };
        assert_eq!(after.len(), 1);
    }

    #[test]
    fn a_gap_is_released_after_the_timeout() {
        let a = Identity::from_secret([1; 32]);
        let b = NodeId([2; 32]);
        let mut inbox = Inbox::default();
        inbox.arrive(chat(&a, b, 13, 3), 0, 1);
        assert!(inbox.release_stalled(GAP_TIMEOUT - 1).is_empty());
        assert_eq!(inbox.next_wakeup(), Some(GAP_TIMEOUT));
        assert_eq!(inbox.release_stalled(GAP_TIMEOUT).len(), 1);
    }

    #[test]
    fn a_chat_skipped_by_a_release_past_its_gap_is_handed_out_once_when_it_arrives() {
        let a = Identity::from_secret([1; 32]);
        let b = NodeId([2; 32]);
        let mut inbox = Inbox::default();
        assert_eq!(seqs(inbox.arrive(chat_at(&a, b, 1, 1, 10), 0, 1)), vec![1]);
        // Seq 2 is late; 3 waits behind it until the gap times out.
        assert_eq!(
            seqs(inbox.arrive(chat_at(&a, b, 3, 3, 30), 1, 1)),
            Vec::<u64>::new()
        );
        let released: Vec<u64> = inbox
            .release_stalled(1 + GAP_TIMEOUT)
            .iter()
            .map(|r| r.chat.seq)
            .collect();
        assert_eq!(released, vec![3]);
        // Seq 2 arrives after all: handed out, and only once.
        let late = chat_at(&a, b, 2, 2, 20);
        assert_eq!(
            seqs(inbox.arrive(late.clone(), 2 + GAP_TIMEOUT, 1)),
            vec![2]
        );
        assert_eq!(inbox.arrive(late, 3 + GAP_TIMEOUT, 1), Arrival::Duplicate);
        // The mark still stands where seq 3 put it.
        assert_eq!(inbox.mark(&a.id()).map(|m| m.seq), Some(3));
        // A chat at or below the mark that was handed out is still a replay
        // once its id has left the window.
        for seq in 4..(4 + SEEN_PER_SENDER as u64) {
            inbox.arrive(chat_at(&a, b, seq, seq, 40 + seq), 10 * GAP_TIMEOUT, 1);
        }
        assert_eq!(
            inbox.arrive(chat_at(&a, b, 2, 2, 20), 11 * GAP_TIMEOUT, 1),
            Arrival::Replayed
        );
    }

    #[test]
    fn the_skipped_seqs_a_sender_leaves_are_bounded() {
        let a = Identity::from_secret([1; 32]);
        let b = NodeId([2; 32]);
        let mut inbox = Inbox::default();
        // A first chat far ahead, released after the gap timeout.
        inbox.arrive(chat_at(&a, b, 1, 1_000_000, 10), 0, 1);
        assert_eq!(inbox.release_stalled(GAP_TIMEOUT).len(), 1);
        let s = inbox.senders.get(&a.id()).expect("a is a sender");
        assert_eq!(s.skipped.len(), SKIPPED_PER_SENDER);
        assert_eq!(s.skipped.last(), Some(&999_999));
        // The oldest skipped seqs are forgotten: refused as before.
        assert_eq!(
            inbox.arrive(chat_at(&a, b, 2, 5, 5), GAP_TIMEOUT + 1, 1),
            Arrival::Replayed
        );
    }

    #[test]
    fn a_forgotten_sender_leaves_no_held_message_behind() {
        let a = Identity::from_secret([1; 32]);
        let b = NodeId([2; 32]);
        let mut inbox = Inbox::default();
        inbox.arrive(chat(&a, b, 13, 3), 0, 1);
        // Many strangers, each heard later, push `a` out.
        let stranger = Identity::from_secret([3; 32]);
        for n in 0..MAX_SENDERS as u64 {
            let mut c = chat(&stranger, b, n, 1);
            let mut id = [0u8; 32];
            id[..8].copy_from_slice(&n.to_be_bytes());
            c.from = NodeId(id);
            inbox.arrive(c, 1 + n, 1);
        }
        assert_eq!(inbox.senders.len(), MAX_SENDERS);
        assert_eq!(inbox.next_wakeup(), None, "a's held message went with it");
        assert!(inbox.release_stalled(u64::MAX / 2).is_empty());
    }
}
