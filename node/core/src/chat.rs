//! Chat delivery, the sender's side: the retry queue and the recipients'
//! chat keys.
//!
//! The sender keeps every message until it is acked or its deadline passes,
//! resending with exponential backoff. The receiver's window is
//! [`super::inbox`].

use std::collections::{BTreeMap, VecDeque};

use skyhop_protocol::{ChatKey, ChatMessage, MsgId, NodeId, SealedChat};

use super::small_map::SmallMap;
use super::SimTime;

/// A message awaiting its ack.
#[derive(Clone, Debug)]
pub struct Pending {
    /// The signed message.
    pub chat: ChatMessage,
    /// The message sealed to its recipient, once its key is known; every
    /// send carries the same sealed bytes.
    pub sealed: Option<SealedChat>,
    /// When it was first sent.
    pub first_sent: SimTime,
    /// When to resend next.
    pub next_retry: SimTime,
    /// Give up at this time.
    pub deadline: SimTime,
    /// Sends so far.
    pub attempts: u32,
    /// The strongest "not there" answer so far (offline over not found),
    /// and the node that gave it: reported at the deadline, never before.
    pub told: Option<(super::events::ChatFailure, NodeId)>,
    /// Packet ids of the recent sends, to match `NotFound` answers.
    pub packet_ids: VecDeque<MsgId>,
    /// Whether the chat was offered to its recipient's home supernodes.
    pub store_asked: bool,
    /// The home supernodes that signed that they keep it.
    pub stored_by: Vec<NodeId>,
}

/// A sent chat kept by its recipient's home supernodes, whose receipt the
/// sender awaits until `expires` (the end of the homes' retention): what a
/// runtime saves so that a restarted sender still takes the receipt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AwaitedChat {
    /// The recipient, who signs the receipt.
    pub to: NodeId,
    /// The chat.
    pub msg_id: MsgId,
    /// Its conversation position (the receipt names it).
    pub seq: u64,
    /// When it was first sent.
    pub first_sent: SimTime,
    /// When its homes drop it; the chat fails then if no receipt came.
    pub expires: SimTime,
    /// The first home that signed that it keeps it.
    pub stored_by: Option<NodeId>,
}

/// Packet ids remembered per pending message.
const PACKET_IDS_KEPT: usize = 8;

/// The sender's side: messages in flight, by `msg_id`.
#[derive(Debug, Default)]
pub struct Outbox {
    /// Messages awaiting their ack, by `msg_id`.
    pending: BTreeMap<MsgId, Pending>,
    /// The last `seq` used toward each recipient (a few at most nodes).
    next_seq: SmallMap<NodeId, u64>,
}

impl Outbox {
    /// The next `seq` of the conversation with `to`.
    pub fn next_seq(&mut self, to: NodeId) -> u64 {
        let seq = self.next_seq.get_or_insert_with(to, || 0);
        // 2^64 messages to one peer will not happen; saturating keeps the
        // arithmetic total anyway.
        *seq = seq.saturating_add(1);
        *seq
    }

    /// Messages in flight.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether nothing is in flight.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Starts tracking a message composed now (its first send is recorded
    /// by [`Outbox::sent_as`]).
    pub fn insert(
        &mut self,
        chat: ChatMessage,
        now: SimTime,
        first_retry: SimTime,
        deadline: SimTime,
    ) {
        let packet_ids = VecDeque::new();
        let p = Pending {
            chat,
            sealed: None,
            first_sent: now,
            next_retry: now + first_retry,
            deadline: now + deadline,
            attempts: 1,
            told: None,
            packet_ids,
            store_asked: false,
            stored_by: Vec::new(),
        };
        self.pending.insert(p.chat.msg_id, p);
    }

    /// Records another attempt at `msg_id`; the next retry comes after
    /// `delay`.
    pub fn resent(&mut self, msg_id: &MsgId, now: SimTime, delay: SimTime) {
        if let Some(p) = self.pending.get_mut(msg_id) {
            p.attempts += 1;
            p.next_retry = now + delay;
        }
    }

    /// The packet `msg_id` last went out as.
    pub fn last_packet(&self, msg_id: &MsgId) -> Option<MsgId> {
        self.pending.get(msg_id)?.packet_ids.back().copied()
    }

    /// Records that `msg_id` went out as packet `packet_id`.
    pub fn sent_as(&mut self, msg_id: &MsgId, packet_id: MsgId) {
        if let Some(p) = self.pending.get_mut(msg_id) {
            p.packet_ids.push_back(packet_id);
            if p.packet_ids.len() > PACKET_IDS_KEPT {
                p.packet_ids.pop_front();
            }
        }
    }

    /// The pending message `msg_id`, to change.
    pub fn get_mut(&mut self, msg_id: &MsgId) -> Option<&mut Pending> {
        self.pending.get_mut(msg_id)
    }

    /// Messages to `to` not yet sealed (they wait for its chat key).
    pub fn awaiting_key(&self, to: &NodeId) -> Vec<MsgId> {
        let mut waiting: Vec<_> = self
            .pending
            .values()
            .filter(|p| p.chat.to == *to && p.sealed.is_none())
            .map(|p| (p.chat.seq, p.chat.msg_id))
            .collect();
        // In the order they were written: the recipient hands chats out in
        // seq order and holds at most 64 behind a gap, so chats sent in id
        // (random) order would wait, or be released past a gap.
        waiting.sort_unstable();
        waiting.into_iter().map(|(_, id)| id).collect()
    }

    /// Stops tracking `msg_id` (acked or failed).
    pub fn remove(&mut self, msg_id: &MsgId) -> Option<Pending> {
        let p = self.pending.remove(msg_id);
        // An emptied map keeps a leaf of eleven `Pending`s (~4 KB), and
        // most nodes have nothing in flight most of the time.
        crate::release_if_empty(&mut self.pending);
        p
    }

    /// The pending message one of whose sends was `packet_id`.
    pub fn by_packet(&mut self, packet_id: &MsgId) -> Option<&mut Pending> {
        self.pending
            .values_mut()
            .find(|p| p.packet_ids.contains(packet_id))
    }

    /// Messages whose retry or deadline is due, by `msg_id`.
    pub fn due(&self, now: SimTime) -> Vec<MsgId> {
        self.pending
            .values()
            .filter(|p| p.next_retry <= now || p.deadline <= now)
            .map(|p| p.chat.msg_id)
            .collect()
    }

    /// The pending message `msg_id`.
    pub fn get(&self, msg_id: &MsgId) -> Option<&Pending> {
        self.pending.get(msg_id)
    }

    /// The earliest retry or deadline.
    pub fn next_wakeup(&self) -> Option<SimTime> {
        self.pending
            .values()
            .map(|p| p.next_retry.min(p.deadline))
            .min()
    }

    /// Every pending message.
    pub fn iter(&self) -> impl Iterator<Item = &Pending> {
        self.pending.values()
    }
}

/// Chat keys remembered at most; the least recently learned goes first.
pub const MAX_CHAT_KEYS: usize = 4096;

/// The chat keys of recipients, learned from their verified location
/// records, so that only the first chat to a peer waits for a lookup, and
/// the backup supernodes the latest record named, for retries.
///
/// # Implementation notes
/// A node's chat key is derived from its identity and never changes, so an
/// entry never goes stale; the bound is all that evicts, in O(log n) by an
/// index of learning order. The index is built the first time the bound is
/// passed (once, O(n log n)) and kept from then on: most nodes never learn
/// 4,096 keys, and its leaf cost each of them ~460 bytes for nothing (a
/// simulated million nodes: ~450 MB). The maps are [`SmallMap`]s: most
/// nodes know one to five keys.
/// Backups may go stale (the recipient moved); a retry toward a stale one
/// falls back to routing by the recipient's home.
#[derive(Debug, Default)]
pub struct ChatKeys {
    /// Key and learning stamp, by node.
    keys: SmallMap<NodeId, (ChatKey, u64)>,
    /// Backups named by the node's latest record, if it named any.
    backups: SmallMap<NodeId, Vec<NodeId>>,
    /// Nodes by learning stamp, oldest first, once the bound was passed.
    order: Option<BTreeMap<u64, NodeId>>,
    /// The next stamp.
    next: u64,
}

impl ChatKeys {
    /// The chat key of `node`, if known.
    pub fn get(&self, node: &NodeId) -> Option<ChatKey> {
        self.keys.get(node).map(|(k, _)| *k)
    }

    /// Learns (or refreshes) the chat key of `node`.
    pub fn insert(&mut self, node: NodeId, key: ChatKey) {
        let stamp = self.next;
        self.next += 1;
        let old = self.keys.insert(node, (key, stamp));
        if let Some(order) = &mut self.order {
            if let Some((_, old)) = old {
                order.remove(&old);
            }
            order.insert(stamp, node);
        }
        if self.keys.len() > MAX_CHAT_KEYS {
            let keys = &self.keys;
            let order = self
                .order
                .get_or_insert_with(|| keys.iter().map(|(id, (_, s))| (*s, *id)).collect());
            if let Some((_, gone)) = order.pop_first() {
                self.keys.remove(&gone);
                self.backups.remove(&gone);
            }
        }
    }

    /// Remembers the backups `node`'s record named (already bounded by the
    /// wire), if its key is known.
    pub fn set_backups(&mut self, node: NodeId, backups: Vec<NodeId>) {
        if !self.keys.contains_key(&node) {
            return;
        }
        if backups.is_empty() {
            self.backups.remove(&node);
        } else {
            self.backups.insert(node, backups);
        }
    }

    /// The backups `node`'s latest record named.
    pub fn backups(&self, node: &NodeId) -> &[NodeId] {
        self.backups.get(node).map_or(&[], Vec::as_slice)
    }

    /// Forgets the key of `node` (it did not work).
    pub fn remove(&mut self, node: &NodeId) {
        if let Some((_, stamp)) = self.keys.remove(node) {
            if let Some(order) = &mut self.order {
                order.remove(&stamp);
            }
        }
        self.backups.remove(node);
    }

    /// Keys known.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no key is known.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skyhop_protocol::Identity;

    fn chat(from: &Identity, to: NodeId, id: u64, seq: u64) -> ChatMessage {
        from.chat(to, MsgId(id), seq, 0, format!("m{seq}"))
            .expect("short")
    }

    #[test]
    fn chat_keys_are_bounded_and_forget_the_oldest_first() {
        let mut keys = ChatKeys::default();
        let node = |i: usize| {
            let mut id = [0u8; 32];
            id[..8].copy_from_slice(&(i as u64).to_be_bytes());
            NodeId(id)
        };
        for i in 0..MAX_CHAT_KEYS {
            keys.insert(node(i), [1; 32]);
        }
        assert!(keys.order.is_none(), "no index below the bound");
        keys.insert(node(0), [2; 32]); // refreshed: now the newest
        keys.insert(node(MAX_CHAT_KEYS), [3; 32]);
        assert_eq!(keys.len(), MAX_CHAT_KEYS);
        assert_eq!(keys.get(&node(0)), Some([2; 32]));
        assert_eq!(keys.get(&node(1)), None, "the oldest went");
        keys.remove(&node(0));
        assert_eq!(keys.get(&node(0)), None);
        assert_eq!(
            keys.order.as_ref().map(BTreeMap::len),
            Some(keys.keys.len())
        );
        keys.insert(node(MAX_CHAT_KEYS + 1), [4; 32]);
        keys.insert(node(MAX_CHAT_KEYS + 2), [4; 32]);
        assert_eq!(keys.get(&node(2)), None, "the index stays in order");
        assert_eq!(keys.get(&node(0)), None);
        assert_eq!(keys.get(&node(3)), Some([1; 32]));
    }

    #[test]
    fn outbox_matches_not_found_to_its_message() {
        let a = Identity::from_secret([1; 32]);
        let mut out = Outbox::default();
        let seq = out.next_seq(NodeId([2; 32]));
        out.insert(chat(&a, NodeId([2; 32]), 7, seq), 0, 10, 1000);
        assert_eq!(out.awaiting_key(&NodeId([2; 32])), vec![MsgId(7)]);
        out.sent_as(&MsgId(7), MsgId(100));
        out.resent(&MsgId(7), 10, 20);
        out.sent_as(&MsgId(7), MsgId(101));
        assert_eq!(out.by_packet(&MsgId(100)).map(|p| p.attempts), Some(2));
        assert_eq!(out.due(29), Vec::<MsgId>::new());
        assert_eq!(out.due(30), vec![MsgId(7)]);
        assert_eq!(out.next_wakeup(), Some(30));
    }
}
