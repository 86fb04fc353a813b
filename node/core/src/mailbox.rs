//! A home supernode's mailbox: sealed chats kept for recipients that are
//! offline, and signed receipts kept for chat authors that are offline,
//! until that node publishes a signed record again (then they are handed
//! over) or they expire.
//!
//! The author seals a chat to its recipient before it ever reaches a
//! home, so the mailbox holds bytes it cannot read. A chat is handed over
//! only to the node that publishes a record signed with the recipient's
//! identity, and only that node holds the key the chat is sealed to. It
//! is dropped when the recipient says it has it (`MailboxTaken`), or at
//! its expiry. A receipt is its signer's word (the home verifies it before
//! keeping it) and goes to the chat's author the same way.
//!
//! A runtime that persists the mailbox turns on its journal
//! ([`Mailbox::journal`]): every item kept and dropped, drained with the
//! outputs of the same input, so that an item is on disk before the
//! "stored" notice that promises it leaves.
//!
//! The mailbox decides; the `Node` facade originates what it returns
//! (signed "stored" notices, hand-overs, copies to the other homes).
//!
//! # Implementation notes
//! Items are keyed by (recipient, author, msg id) (for a receipt: the
//! chat's author, the receipt's signer, msg id), so a recipient's items
//! are one range of the map and a second copy of a chat (the author's
//! retry, or a copy from another home) is found in O(log n). An index by
//! expiry finds what to expire, and what to evict when the supernode's
//! budget is full, in O(log n): the chat closest to its expiry goes first.
//! A recipient's own budget is not made room in: a full recipient refuses
//! new chats, so that one author cannot push out what others left.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use skyhop_protocol::{Body, ChatReceipt, KeptChat, LocationRecord, MsgId, NodeId};

use super::config::ConfigError;
use super::{SimTime, SECS};

/// One hour of [`SimTime`].
const HOURS: SimTime = 3_600 * SECS;

/// How much a home supernode keeps for offline recipients, and for how
/// long; and how many stored chats a sender awaits the receipt of.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MailboxConfig {
    /// How long a chat is kept for its recipient.
    pub retention: SimTime,
    /// Bytes of sealed chats a supernode keeps for all recipients.
    pub max_bytes: usize,
    /// Chats a supernode keeps for all recipients.
    pub max_chats: usize,
    /// Bytes of sealed chats kept for one recipient.
    pub per_recipient_bytes: usize,
    /// Chats kept for one recipient.
    pub per_recipient_chats: usize,
    /// Stored chats whose receipt a sender awaits at most (past its chat
    /// deadline); the one closest to its expiry is given up first.
    pub awaiting: usize,
}

impl Default for MailboxConfig {
    fn default() -> MailboxConfig {
        MailboxConfig {
            retention: 7 * 24 * HOURS,
            max_bytes: 64 << 20,
            max_chats: 100_000,
            per_recipient_bytes: 1 << 20,
            per_recipient_chats: 256,
            awaiting: 4_096,
        }
    }
}

impl MailboxConfig {
    /// Whether every field is at its default (left out of the echoed
    /// configuration then, so that older outputs stay the same).
    pub fn is_default(&self) -> bool {
        *self == MailboxConfig::default()
    }

    /// Checks every field's range; the error names the field and the fix.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let counts = [
            ("mailbox.max_bytes", self.max_bytes, 4_608, 1 << 40),
            ("mailbox.max_chats", self.max_chats, 1, 100_000_000),
            (
                "mailbox.per_recipient_bytes",
                self.per_recipient_bytes,
                4_608,
                1 << 32,
            ),
            (
                "mailbox.per_recipient_chats",
                self.per_recipient_chats,
                1,
                1_000_000,
            ),
            ("mailbox.awaiting", self.awaiting, 1, 1_000_000),
        ];
        for (field, value, min, max) in counts {
            let value = u64::try_from(value).unwrap_or(u64::MAX);
            if !(min..=max).contains(&value) {
                return Err(ConfigError::OutOfRange {
                    field,
                    value,
                    min,
                    max,
                    unit: super::config::Unit::Count,
                });
            }
        }
        let (min, max) = (60 * SECS, 90 * 24 * HOURS);
        if !(min..=max).contains(&self.retention) {
            return Err(ConfigError::OutOfRange {
                field: "mailbox.retention",
                value: self.retention,
                min,
                max,
                unit: super::config::Unit::Micros,
            });
        }
        Ok(())
    }
}

/// What became of a chat offered to the mailbox.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Keep {
    /// Kept until this time (also for a copy already kept).
    Kept(SimTime),
    /// The recipient's share is full: not kept, and not answered.
    RecipientFull,
}

/// The bytes a kept receipt counts for in the budgets (its fields, about
/// what it takes on the wire).
pub const RECEIPT_BYTES: usize = 180;

/// What a home keeps for a node that is away.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Held {
    /// A sealed chat for its recipient `node`.
    Chat(KeptChat),
    /// A signed receipt for the chat's author.
    Receipt(ChatReceipt),
}

/// (the node it is kept for, the other party, msg id).
pub type HeldKey = (NodeId, NodeId, MsgId);

impl Held {
    /// Its key: (the node it is kept for, the other party, msg id).
    pub fn key(&self) -> HeldKey {
        match self {
            Held::Chat(k) => (k.node, k.author, k.msg_id),
            Held::Receipt(r) => (r.author, r.recipient, r.msg_id),
        }
    }

    /// The bytes it counts for.
    pub fn size(&self) -> usize {
        match self {
            Held::Chat(k) => k.sealed.0.len(),
            Held::Receipt(_) => RECEIPT_BYTES,
        }
    }

    /// The body that hands it over to the node it is kept for.
    pub fn hand_over(self) -> Body {
        match self {
            Held::Chat(k) => Body::MailboxHandOver(k),
            Held::Receipt(r) => Body::ReceiptHandOver(r),
        }
    }
}

/// A change to the mailbox, for a runtime that persists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// Kept until the time given.
    Kept(Held, SimTime),
    /// Dropped: taken, expired or evicted.
    Dropped(HeldKey),
}

/// The journal holds at most this many changes; past it the oldest go
/// (a runtime drains it with every batch of outputs, so it never gets
/// near).
const MAX_JOURNAL: usize = 1 << 20;

/// A kept item.
#[derive(Debug)]
struct Item {
    held: Held,
    expires: SimTime,
}

/// Chats and bytes kept, for one recipient or for all.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Chats kept.
    pub chats: usize,
    /// Their sealed bytes.
    pub bytes: usize,
}

/// The chats a home supernode keeps for offline recipients.
#[derive(Debug, Default)]
pub(crate) struct Mailbox {
    /// By (recipient, author, msg id).
    items: BTreeMap<(NodeId, NodeId, MsgId), Item>,
    /// (expires, recipient, author, msg id) of every item.
    by_expiry: BTreeSet<(SimTime, NodeId, NodeId, MsgId)>,
    /// Per recipient with chats kept.
    per_recipient: BTreeMap<NodeId, Usage>,
    /// All kept.
    total: Usage,
    /// The most ever kept at once (each field on its own).
    peak: Usage,
    /// The latest record each node published here, kept for the
    /// retention after it goes away: it carries the node's chat key,
    /// signed, so that a sender that never met it can seal a chat to it.
    /// Shared with the directory while the node is there (no copy).
    last_records: BTreeMap<NodeId, (Arc<LocationRecord>, SimTime)>,
    /// `(expires, node)` of every last record.
    last_by_expiry: BTreeSet<(SimTime, NodeId)>,
    /// Changes not yet drained, when persisted.
    journal: Option<std::collections::VecDeque<Change>>,
}

impl Mailbox {
    /// What is kept now.
    pub fn usage(&self) -> Usage {
        self.total
    }

    /// The most kept at once so far.
    pub fn peak(&self) -> Usage {
        self.peak
    }

    /// Records every change from now on, for [`Mailbox::drain_journal`].
    pub fn journal(&mut self) {
        self.journal.get_or_insert_with(Default::default);
    }

    /// The changes since the last drain (none unless journaled).
    pub fn drain_journal(&mut self) -> Vec<Change> {
        self.journal
            .as_mut()
            .map(|j| j.drain(..).collect())
            .unwrap_or_default()
    }

    fn note(&mut self, change: Change) {
        if let Some(j) = self.journal.as_mut() {
            if j.len() >= MAX_JOURNAL {
                j.pop_front();
            }
            j.push_back(change);
        }
    }

    /// Keeps `held` for its node until `now + retention`, making room by
    /// evicting the items closest to their expiry if the supernode's
    /// budget is full.
    pub fn keep(&mut self, cfg: &MailboxConfig, now: SimTime, held: Held) -> Keep {
        self.keep_until(cfg, held, now.saturating_add(cfg.retention))
    }

    /// Keeps `held` until `expires` within the budgets (a copy already
    /// kept keeps its expiry). Also how a runtime restores what it saved.
    pub fn keep_until(&mut self, cfg: &MailboxConfig, held: Held, expires: SimTime) -> Keep {
        let key = held.key();
        if let Some(item) = self.items.get(&key) {
            return Keep::Kept(item.expires);
        }
        let size = held.size();
        let mine = self.per_recipient.get(&key.0).copied().unwrap_or_default();
        if mine.chats >= cfg.per_recipient_chats || mine.bytes + size > cfg.per_recipient_bytes {
            return Keep::RecipientFull;
        }
        while self.total.chats >= cfg.max_chats || self.total.bytes + size > cfg.max_bytes {
            let Some(&(_, node, author, msg_id)) = self.by_expiry.first() else {
                break;
            };
            self.remove(&(node, author, msg_id));
        }
        self.note(Change::Kept(held.clone(), expires));
        self.by_expiry.insert((expires, key.0, key.1, key.2));
        self.items.insert(key, Item { held, expires });
        let usage = self.per_recipient.entry(key.0).or_default();
        usage.chats += 1;
        usage.bytes += size;
        self.total.chats += 1;
        self.total.bytes += size;
        self.peak.chats = self.peak.chats.max(self.total.chats);
        self.peak.bytes = self.peak.bytes.max(self.total.bytes);
        Keep::Kept(expires)
    }

    /// What is kept for `node`, to hand over (it stays until `node` says
    /// it has it, or expires).
    pub fn for_recipient(&self, node: &NodeId) -> Vec<Held> {
        if !self.per_recipient.contains_key(node) {
            return Vec::new();
        }
        let from = (*node, NodeId([0; 32]), MsgId(0));
        self.items
            .range(from..)
            .take_while(|((to, _, _), _)| to == node)
            .map(|(_, item)| item.held.clone())
            .collect()
    }

    /// `node` has chat `msg_id` of `author` (or its receipt signed by
    /// `author`): drop it. False if it was not kept here.
    pub fn taken(&mut self, node: NodeId, author: NodeId, msg_id: MsgId) -> bool {
        self.remove(&(node, author, msg_id))
    }

    /// Remembers `record` (verified, just stored as a home) as its node's
    /// latest, until `now + retention`; at most `max` nodes, the one
    /// closest to its expiry forgotten first.
    pub fn remember_record(
        &mut self,
        cfg: &MailboxConfig,
        now: SimTime,
        record: &Arc<LocationRecord>,
        max: usize,
    ) {
        let expires = now.saturating_add(cfg.retention);
        if let Some((held, at)) = self.last_records.get(&record.node) {
            if held.seq > record.seq {
                return;
            }
            self.last_by_expiry.remove(&(*at, record.node));
        } else if self.last_records.len() >= max {
            if let Some((_, gone)) = self.last_by_expiry.pop_first() {
                self.last_records.remove(&gone);
            }
        }
        self.last_by_expiry.insert((expires, record.node));
        self.last_records
            .insert(record.node, (Arc::clone(record), expires));
    }

    /// The latest record `node` published here, if kept.
    pub fn last_record(&self, node: &NodeId) -> Option<&LocationRecord> {
        self.last_records.get(node).map(|(r, _)| &**r)
    }

    /// Drops what expired by `now`; how many chats.
    pub fn expire(&mut self, now: SimTime) -> usize {
        while let Some(&(at, node)) = self.last_by_expiry.first() {
            if at > now {
                break;
            }
            self.last_by_expiry.pop_first();
            self.last_records.remove(&node);
        }
        let mut n = 0;
        while let Some(&(at, node, author, msg_id)) = self.by_expiry.first() {
            if at > now {
                break;
            }
            self.remove(&(node, author, msg_id));
            n += 1;
        }
        n
    }

    fn remove(&mut self, key: &(NodeId, NodeId, MsgId)) -> bool {
        let Some(item) = self.items.remove(key) else {
            return false;
        };
        self.by_expiry.remove(&(item.expires, key.0, key.1, key.2));
        self.note(Change::Dropped(*key));
        let size = item.held.size();
        if let Some(usage) = self.per_recipient.get_mut(&key.0) {
            usage.chats -= 1;
            usage.bytes -= size;
            if usage.chats == 0 {
                self.per_recipient.remove(&key.0);
            }
        }
        self.total.chats -= 1;
        self.total.bytes -= size;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skyhop_protocol::envelope::BodyKind;

    fn node(n: u8) -> NodeId {
        NodeId([n; 32])
    }

    fn kept(to: u8, author: u8, id: u64, size: usize) -> Held {
        Held::Chat(KeptChat {
            author: node(author),
            node: node(to),
            msg_id: MsgId(id),
            sealed: skyhop_protocol::SealedChat(vec![7; size]),
        })
    }

    #[test]
    fn a_recipients_chats_are_handed_over_until_taken_and_copies_are_kept_once() {
        let cfg = MailboxConfig::default();
        let mut m = Mailbox::default();
        assert_eq!(
            m.keep(&cfg, 0, kept(1, 2, 10, 100)),
            Keep::Kept(cfg.retention)
        );
        assert_eq!(
            m.keep(&cfg, 5, kept(1, 2, 10, 100)),
            Keep::Kept(cfg.retention)
        );
        m.keep(&cfg, 0, kept(1, 3, 11, 100));
        m.keep(&cfg, 0, kept(9, 2, 12, 100));
        let ids = |m: &Mailbox| -> Vec<u64> {
            m.for_recipient(&node(1))
                .iter()
                .map(|k| k.key().2 .0)
                .collect()
        };
        assert_eq!(ids(&m), vec![10, 11]);
        assert_eq!(ids(&m), vec![10, 11], "still there until taken");
        assert!(m.taken(node(1), node(2), MsgId(10)));
        assert!(!m.taken(node(1), node(2), MsgId(10)));
        assert_eq!(ids(&m), vec![11]);
        assert_eq!(
            m.usage(),
            Usage {
                chats: 2,
                bytes: 200
            }
        );
    }

    #[test]
    fn chats_expire_after_the_retention() {
        let cfg = MailboxConfig::default();
        let mut m = Mailbox::default();
        m.keep(&cfg, 0, kept(1, 2, 10, 100));
        m.keep(&cfg, 10, kept(1, 2, 11, 100));
        assert_eq!(m.expire(cfg.retention - 1), 0);
        assert_eq!(m.expire(cfg.retention), 1);
        assert_eq!(m.for_recipient(&node(1)).len(), 1);
        assert_eq!(m.expire(cfg.retention + 10), 1);
        assert_eq!(m.usage(), Usage::default());
        assert!(m.per_recipient.is_empty());
    }

    #[test]
    fn a_full_recipient_refuses_and_a_full_supernode_evicts_the_oldest() {
        let cfg = MailboxConfig {
            per_recipient_chats: 2,
            max_chats: 3,
            ..MailboxConfig::default()
        };
        let mut m = Mailbox::default();
        m.keep(&cfg, 0, kept(1, 2, 10, 10));
        m.keep(&cfg, 1, kept(1, 2, 11, 10));
        assert_eq!(m.keep(&cfg, 2, kept(1, 3, 12, 10)), Keep::RecipientFull);
        m.keep(&cfg, 3, kept(4, 2, 13, 10));
        // The supernode is full: the chat closest to its expiry goes.
        m.keep(&cfg, 4, kept(5, 2, 14, 10));
        assert_eq!(m.usage().chats, 3);
        assert!(!m.taken(node(1), node(2), MsgId(10)), "evicted first");
        assert_eq!(m.peak().chats, 3);
        // Bytes bound the same way.
        let cfg = MailboxConfig {
            max_bytes: 5_000,
            ..MailboxConfig::default()
        };
        let mut m = Mailbox::default();
        m.keep(&cfg, 0, kept(1, 2, 1, 3_000));
        m.keep(&cfg, 1, kept(3, 2, 2, 3_000));
        assert_eq!(
            m.usage(),
            Usage {
                chats: 1,
                bytes: 3_000
            }
        );
        assert_eq!(m.for_recipient(&node(3)).len(), 1);
    }

    #[test]
    fn receipts_share_the_budgets_and_every_change_is_journaled() {
        let cfg = MailboxConfig {
            per_recipient_chats: 2,
            ..MailboxConfig::default()
        };
        let mut m = Mailbox::default();
        m.keep(&cfg, 0, kept(1, 2, 10, 10));
        assert!(m.drain_journal().is_empty(), "not journaled until asked");
        m.journal();
        let receipt = |id: u64| {
            Held::Receipt(ChatReceipt {
                recipient: node(3),
                public_key: [0; 32],
                author: node(1),
                msg_id: MsgId(id),
                seq: 1,
                hops: 1,
                signature: skyhop_protocol::Signature([0; 64]),
            })
        };
        assert_eq!(m.keep(&cfg, 1, receipt(20)), Keep::Kept(1 + cfg.retention));
        assert_eq!(
            m.keep(&cfg, 1, receipt(21)),
            Keep::RecipientFull,
            "node 1's share holds a chat and a receipt"
        );
        assert_eq!(m.usage().bytes, 10 + RECEIPT_BYTES);
        let handed: Vec<BodyKind> = m
            .for_recipient(&node(1))
            .into_iter()
            .map(|h| BodyKind::of(&h.hand_over()))
            .collect();
        assert_eq!(
            handed,
            vec![BodyKind::MailboxHandOver, BodyKind::ReceiptHandOver]
        );
        assert!(m.taken(node(1), node(3), MsgId(20)), "taken by its key");
        assert_eq!(
            m.drain_journal(),
            vec![
                Change::Kept(receipt(20), 1 + cfg.retention),
                Change::Dropped((node(1), node(3), MsgId(20)))
            ]
        );
        assert!(m.drain_journal().is_empty(), "drained");
    }

    #[test]
    fn bad_limits_are_refused_by_name() {
        let cfg = MailboxConfig {
            retention: 0,
            ..MailboxConfig::default()
        };
        assert!(cfg
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("mailbox.retention is 0"));
        let cfg = MailboxConfig {
            per_recipient_chats: 0,
            ..MailboxConfig::default()
        };
        assert!(cfg
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("mailbox.per_recipient_chats is 0"));
        assert_eq!(MailboxConfig::default().validate(), Ok(()));
    }
}
