//! Chat delivery, end to end: composing and signing a message, sealing it
//! to the recipient's chat key (learned from its signed location record),
//! retrying with backoff until a receipt signed by the recipient or the
//! deadline, turning receipts and not-found answers into what the user sees
//! (delivered, or failed and why), and on the receiving side opening,
//! verifying, dropping duplicates, ordering per sender and signing the
//! receipt. The queues themselves are [`super::chat`]'s; the `Node` facade
//! routes what this returns.

use skyhop_protocol::seal;
use skyhop_protocol::{
    Body, ChatKey, ChatMessage, ChatReceipt, KeptChat, MsgId, NodeId, NotFoundReason, SealedChat,
    StoredNotice, MAX_CHAT_BODY,
};

use super::chat::{AwaitedChat, ChatKeys, Outbox};
use super::context::Ctx;
use super::counters::DropReason;
use super::events::{ChatFailure, Event};
use super::inbox::{Arrival, Inbox, Released, ReplayMark};
use super::timers::Timer;
use super::SimTime;

use std::collections::{BTreeMap, BTreeSet};

use rand::RngExt;

/// Keeps the strongest answer: offline over unreachable over not found
/// (a tombstone is positive knowledge; "out of my reach" says more than
/// "no record here"); transient answers (no route, TTL) say nothing about
/// the recipient.
fn note_told(pending: &mut super::chat::Pending, reason: NotFoundReason, by: NodeId) {
    let failure = match reason {
        NotFoundReason::Offline => ChatFailure::Offline,
        NotFoundReason::Unreachable => ChatFailure::Unreachable,
        NotFoundReason::NoRecord => ChatFailure::NotFound,
        NotFoundReason::TtlExpired | NotFoundReason::NoRoute => return,
    };
    let rank = |f: ChatFailure| match f {
        ChatFailure::Offline => 3,
        ChatFailure::Unreachable => 2,
        ChatFailure::NotFound => 1,
        ChatFailure::TimedOut => 0,
    };
    let stronger = pending
        .told
        .is_none_or(|(told, _)| rank(failure) > rank(told));
    if stronger {
        pending.told = Some((failure, by));
    }
}

/// Why a chat message or trace could not be started.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChatError {
    /// The node has left the overlay.
    #[error("this node has left the overlay")]
    Left,
    /// The recipient is this node.
    #[error("cannot send a message to yourself")]
    ToSelf,
    /// The text is over the limit.
    #[error("message is {0} bytes, the limit is {MAX_CHAT_BODY}")]
    TooLong(usize),
    /// Too many messages await their ack.
    #[error("{0} messages already await an acknowledgement; wait for some to finish")]
    QueueFull(usize),
    /// Too many traces are in flight.
    #[error("too many traces in flight")]
    TooManyTraces,
}

/// The receipt a received chat calls for.
pub(crate) struct Receipt {
    /// The signed `ChatAck` to send back.
    pub body: Body,
    /// The chat was a duplicate: our earlier receipt was lost.
    pub again: bool,
}

/// What sending a pending chat takes now.
pub(crate) enum Sealing {
    /// Send this to `to`, as its `n`-th send (0: the first; routing picks
    /// another first hop for each).
    Ready(NodeId, SealedChat, u32),
    /// Look up `to`'s chat key first.
    NeedKey(NodeId),
    /// The chat is no longer pending.
    Gone,
}

/// The chat state of one node: what it sent and awaits, what it received.
#[derive(Debug, Default)]
pub(crate) struct ChatDelivery {
    /// Messages sent and awaiting their receipt.
    outbox: Outbox,
    /// Per-sender duplicate and ordering windows.
    inbox: Inbox,
    /// Recipients' chat keys.
    keys: ChatKeys,
    /// Chats kept by the recipient's home supernodes, past their deadline,
    /// awaiting the receipt (bounded by `mailbox.awaiting`).
    awaiting: BTreeMap<MsgId, Awaiting>,
    /// `(expires, msg_id)` of every awaiting chat.
    awaiting_by_expiry: BTreeSet<(SimTime, MsgId)>,
}

/// A chat stored on its recipient's home supernodes, whose receipt is
/// awaited past the chat deadline, until the mailbox's retention ends.
#[derive(Debug)]
struct Awaiting {
    to: NodeId,
    seq: u64,
    first_sent: SimTime,
    expires: SimTime,
    stored_by: Vec<NodeId>,
}

impl ChatDelivery {
    /// Messages awaiting their ack.
    pub fn pending(&self) -> usize {
        self.outbox.len()
    }

    /// Every author's replay mark, and the floor for unknown authors.
    pub fn replay_marks(&self) -> (Vec<(NodeId, ReplayMark)>, u64) {
        self.inbox.marks()
    }

    /// `author`'s replay mark, and the floor for unknown authors.
    pub fn replay_mark(&self, author: &NodeId) -> (Option<ReplayMark>, u64) {
        (self.inbox.mark(author), self.inbox.forgotten_before())
    }

    /// Takes the replay marks saved before a restart.
    pub fn restore_replay_marks(
        &mut self,
        marks: Vec<(NodeId, ReplayMark)>,
        forgotten_before: u64,
    ) {
        self.inbox.restore(marks, forgotten_before);
    }

    /// Signs a new message to `to`, or says why it cannot be sent.
    pub fn compose(
        &mut self,
        ctx: &mut Ctx,
        now: SimTime,
        to: NodeId,
        text: String,
    ) -> Result<ChatMessage, ChatError> {
        if to == ctx.id {
            return Err(ChatError::ToSelf);
        }
        if text.len() > MAX_CHAT_BODY {
            return Err(ChatError::TooLong(text.len()));
        }
        if self.outbox.len() >= ctx.cfg.max_pending_chats {
            return Err(ChatError::QueueFull(self.outbox.len()));
        }
        let msg_id = MsgId(ctx.rng.random());
        let seq = self.outbox.next_seq(to);
        ctx.identity
            .chat(to, msg_id, seq, now, text)
            .map_err(|_| ChatError::TooLong(0))
    }

    /// Starts awaiting the receipt of `chat`, composed now.
    pub fn track(&mut self, ctx: &mut Ctx, now: SimTime, chat: ChatMessage) {
        self.outbox
            .insert(chat, now, ctx.cfg.chat_retry_initial, ctx.cfg.chat_deadline);
        ctx.timers
            .set_earliest(Timer::Chat, now + ctx.cfg.chat_retry_initial);
    }

    /// What sending chat `msg_id` takes now: its sealed bytes (sealed on
    /// first use, with a fresh ephemeral key from the node's RNG), or a
    /// lookup of its recipient's chat key.
    pub fn sealing(&mut self, ctx: &mut Ctx, msg_id: &MsgId) -> Sealing {
        let Some(p) = self.outbox.get_mut(msg_id) else {
            return Sealing::Gone;
        };
        let to = p.chat.to;
        let attempt = p.attempts.saturating_sub(1);
        if let Some(sealed) = &p.sealed {
            return Sealing::Ready(to, sealed.clone(), attempt);
        }
        let Some(key) = self.keys.get(&to) else {
            return Sealing::NeedKey(to);
        };
        match seal::seal(&p.chat, &key, ctx.rng.random()) {
            Ok(sealed) => {
                p.sealed = Some(sealed.clone());
                Sealing::Ready(to, sealed, attempt)
            }
            Err(_) => {
                // A signed record named a key that does not work: ask again.
                self.keys.remove(&to);
                Sealing::NeedKey(to)
            }
        }
    }

    /// Learns `node`'s chat key and backups from its verified record: the
    /// chats that waited for the key, to send now.
    pub fn learn_key(&mut self, node: NodeId, key: ChatKey, backups: Vec<NodeId>) -> Vec<MsgId> {
        self.keys.insert(node, key);
        self.keys.set_backups(node, backups);
        self.outbox.awaiting_key(&node)
    }

    /// The supernode a retry of a chat to `to` heads for: for try
    /// `attempt` (0: the first, which takes the usual path) the backups
    /// `to`'s record named, in turn.
    pub fn retry_toward(&self, to: &NodeId, attempt: u32) -> Option<NodeId> {
        let backups = self.keys.backups(to);
        let turn = attempt.checked_sub(1)? as usize;
        backups.get(turn % backups.len().max(1)).copied()
    }

    /// The packet chat `msg_id` last went out as, while it is pending.
    pub fn last_packet(&self, msg_id: &MsgId) -> Option<MsgId> {
        self.outbox.last_packet(msg_id)
    }

    /// Records that chat `msg_id` went out as packet `packet_id`.
    pub fn sent_as(&mut self, msg_id: &MsgId, packet_id: MsgId) {
        self.outbox.sent_as(msg_id, packet_id);
    }

    /// A sealed chat from `src` arrived after `hops` hops: the signed
    /// receipts to send back to `src`, if it opens with our key and the
    /// message is genuine. Only chats handed to the application now are
    /// acknowledged (this one, and any it released from behind a gap), so
    /// a receipt always follows its chat's `ChatReceived`; a held chat is
    /// acked when it is released. A duplicate of one handed out gets a
    /// receipt again: our earlier one was lost.
    ///
    /// A chat `kept` by a home supernode while we were offline may be as
    /// old as the mailbox's retention; `src` is then its author, named by
    /// the home (the seal's signature is what proves it).
    pub fn on_chat(
        &mut self,
        ctx: &mut Ctx,
        now: SimTime,
        src: NodeId,
        hops: u8,
        sealed: SealedChat,
        kept: bool,
    ) -> Vec<Receipt> {
        let Ok(chat) = ctx.identity.open_chat(&sealed) else {
            ctx.out.drop(DropReason::UnreadableChat);
            return Vec::new();
        };
        if chat.to != ctx.id || chat.from != src {
            ctx.out.drop(DropReason::MisaddressedChat);
            return Vec::new();
        }
        if ctx.memo.verify_chat(&chat).is_err() {
            ctx.out.counters.forged += 1;
            ctx.out.drop(DropReason::ForgedChat);
            return Vec::new();
        }
        // Older than any retry of it can be, or from too far ahead: a
        // replay, or an author whose clock is off by more than the skew.
        let skew = ctx.cfg.chat_clock_skew;
        let mut window = ctx.cfg.chat_deadline.saturating_add(skew);
        if kept {
            window = window.saturating_add(ctx.cfg.mailbox.retention);
        }
        let oldest = now.saturating_sub(window);
        if chat.sent_at < oldest || chat.sent_at > now.saturating_add(skew) {
            ctx.out.drop(DropReason::ChatOutsideWindow);
            return Vec::new();
        }
        let (msg_id, seq) = (chat.msg_id, chat.seq);
        match self.inbox.arrive(chat, now, hops) {
            Arrival::Duplicate => {
                ctx.out.drop(DropReason::DuplicateChat);
                vec![Receipt {
                    body: Body::ChatAck(ctx.identity.receipt(src, msg_id, seq, hops)),
                    again: true,
                }]
            }
            Arrival::Replayed => {
                ctx.out.drop(DropReason::ReplayedChat);
                Vec::new()
            }
            Arrival::Ready(ready) => {
                if let Some(at) = self.inbox.next_wakeup() {
                    ctx.timers.set_earliest(Timer::Chat, at);
                }
                hand_out(ctx, ready)
            }
        }
    }

    /// `src` sent a receipt: delivered, if it is for a chat of ours to
    /// `src` and signed by `src`.
    pub fn on_ack(&mut self, ctx: &mut Ctx, now: SimTime, src: NodeId, receipt: ChatReceipt) {
        let msg_id = receipt.msg_id;
        let hops = receipt.hops;
        let expected = match (self.outbox.get(&msg_id), self.awaiting.get(&msg_id)) {
            (Some(p), _) => Some((p.chat.to, p.chat.seq)),
            (None, Some(a)) => Some((a.to, a.seq)),
            (None, None) => None,
        };
        match expected {
            Some((to, seq))
                if to == src
                    && receipt.recipient == src
                    && receipt.author == ctx.id
                    && receipt.seq == seq => {}
            _ => {
                ctx.out.drop(DropReason::UnexpectedAck);
                return;
            }
        }
        if ctx.memo.verify_receipt(&receipt).is_err() {
            // Anyone on the path can claim to be the recipient; only the
            // recipient can sign.
            ctx.out.counters.forged += 1;
            ctx.out.drop(DropReason::ForgedReceipt);
            return;
        }
        let first_sent = match self.outbox.remove(&msg_id) {
            Some(pending) => pending.first_sent,
            None => match self.awaiting.remove(&msg_id) {
                Some(a) => {
                    self.awaiting_by_expiry.remove(&(a.expires, msg_id));
                    a.first_sent
                }
                None => return,
            },
        };
        ctx.out.emit(Event::ChatDelivered {
            to: src,
            msg_id,
            hops,
            latency: now.saturating_sub(first_sent),
        });
    }

    /// A home supernode signed that it keeps one of our chats for its
    /// offline recipient: "stored", k of the homes so far. True when this
    /// notice makes every home (`replicas`) keep a chat still being sent:
    /// then the facade asks the recipient's homes where it is, and a signed
    /// "away" from one of the homes that keep the chat settles it (see
    /// [`ChatDelivery::settle_stored`]).
    pub fn on_stored(&mut self, ctx: &mut Ctx, notice: StoredNotice) -> bool {
        if notice.author != ctx.id {
            ctx.out.drop(DropReason::UnexpectedAck);
            return false;
        }
        let stored_by = match (
            self.outbox.get_mut(&notice.msg_id),
            self.awaiting.get_mut(&notice.msg_id),
        ) {
            (Some(p), _) if p.chat.to == notice.node => &mut p.stored_by,
            (None, Some(a)) if a.to == notice.node => &mut a.stored_by,
            _ => {
                ctx.out.drop(DropReason::UnexpectedAck);
                return false;
            }
        };
        if stored_by.contains(&notice.by) {
            return false;
        }
        if ctx.memo.verify_stored(&notice).is_err() {
            ctx.out.counters.forged += 1;
            ctx.out.drop(DropReason::ForgedStored);
            return false;
        }
        // Every home of the recipient answers once; a few more slots
        // than homes leave room for a liar without growing unbounded.
        if stored_by.len() >= ctx.cfg.replicas + 2 {
            return false;
        }
        stored_by.push(notice.by);
        let copies = stored_by.len();
        ctx.out.emit(Event::ChatStored {
            to: notice.node,
            msg_id: notice.msg_id,
            copies: u8::try_from(copies).unwrap_or(u8::MAX),
            by: notice.by,
            settled: false,
        });
        copies == ctx.cfg.replicas && self.outbox.get(&notice.msg_id).is_some()
    }

    /// `by` signed that `to` is away, in answer to our location query.
    /// The chats to `to` still being sent that every home keeps, `by`
    /// among them, are settled: they wait for their receipt from now on
    /// and are not sent again. Until then a stored chat is still retried
    /// on the direct path, because the absence that made us offer it to
    /// the homes may be a relay's lie about an online recipient (the homes
    /// then keep it too, and would hand it over only at the recipient's
    /// next record refresh). A liar that also answers the location query
    /// can only delay such a chat to that hand-over, not lose it.
    pub fn settle_stored(&mut self, ctx: &mut Ctx, now: SimTime, to: &NodeId, by: NodeId) {
        let settled: Vec<MsgId> = self
            .outbox
            .iter()
            .filter(|p| {
                p.chat.to == *to
                    && p.stored_by.len() >= ctx.cfg.replicas
                    && p.stored_by.contains(&by)
            })
            .map(|p| p.chat.msg_id)
            .collect();
        for msg_id in settled {
            if let Some(p) = self.outbox.remove(&msg_id) {
                self.await_receipt(ctx, now, p);
            }
        }
    }

    /// Packet `packet_id` could not be delivered, says `by`: remembered for
    /// the deadline. No answer fails a chat at once: nobody can prove a
    /// node offline or unknown, and a liar on one path must not end a chat
    /// that another path or a later try would deliver.
    ///
    /// An answer that the recipient is offline or unknown also offers the
    /// chat, once, to the recipient's home supernodes to keep: what to
    /// send them, if anything (the facade routes it toward the recipient).
    pub fn on_not_found(
        &mut self,
        ctx: &Ctx,
        packet_id: MsgId,
        reason: NotFoundReason,
        by: NodeId,
    ) -> Option<KeptChat> {
        let pending = self.outbox.by_packet(&packet_id)?;
        note_told(pending, reason, by);
        let absent = matches!(reason, NotFoundReason::Offline | NotFoundReason::NoRecord);
        if !absent || pending.store_asked {
            return None;
        }
        let sealed = pending.sealed.clone()?;
        pending.store_asked = true;
        Some(KeptChat {
            author: ctx.id,
            node: pending.chat.to,
            msg_id: pending.chat.msg_id,
            sealed,
        })
    }

    /// `by` answered the lookup of `node`'s chat key: no record, for
    /// `reason`. Remembered for the deadline of the chats waiting.
    pub fn on_key_absent(&mut self, node: &NodeId, reason: NotFoundReason, by: NodeId) {
        for msg_id in self.outbox.awaiting_key(node) {
            if let Some(pending) = self.outbox.get_mut(&msg_id) {
                note_told(pending, reason, by);
            }
        }
    }

    /// Messages whose retry or deadline is due at `now`.
    pub fn due(&self, now: SimTime) -> Vec<MsgId> {
        self.outbox.due(now)
    }

    /// Message `msg_id` is due: fail it at its deadline, else the delay
    /// after the retry the facade now sends.
    pub fn retry_or_fail(&mut self, ctx: &mut Ctx, now: SimTime, msg_id: MsgId) -> Option<SimTime> {
        let p = self.outbox.get(&msg_id)?;
        if p.deadline <= now && !p.stored_by.is_empty() {
            // Kept by the recipient's homes: await the receipt until they
            // drop it, without sending it again.
            let p = self.outbox.remove(&msg_id)?;
            self.await_receipt(ctx, now, p);
            return None;
        }
        if p.deadline <= now {
            let (reason, said_by) = match p.told {
                Some((reason, by)) => (reason, Some(by)),
                None => (ChatFailure::TimedOut, None),
            };
            let to = p.chat.to;
            self.outbox.remove(&msg_id);
            ctx.out.emit(Event::ChatFailed {
                to,
                msg_id,
                reason,
                said_by,
            });
            return None;
        }
        let exp = p.attempts.min(16);
        let delay = ctx
            .cfg
            .chat_retry_initial
            .saturating_mul(1 << exp)
            .min(ctx.cfg.chat_retry_max)
            .min(p.deadline - now);
        self.outbox.resent(&msg_id, now, delay);
        Some(delay)
    }

    /// Keeps waiting for the receipt of a stored chat past its deadline,
    /// making room by giving up the one closest to its expiry.
    fn await_receipt(&mut self, ctx: &mut Ctx, now: SimTime, p: super::chat::Pending) {
        if self.awaiting.len() >= ctx.cfg.mailbox.awaiting {
            if let Some((_, oldest)) = self.awaiting_by_expiry.first().copied() {
                self.give_up(ctx, oldest);
            }
        }
        let expires = p
            .first_sent
            .saturating_add(ctx.cfg.mailbox.retention)
            .max(now);
        self.awaiting_by_expiry.insert((expires, p.chat.msg_id));
        if let Some(by) = p.stored_by.last() {
            ctx.out.emit(Event::ChatStored {
                to: p.chat.to,
                msg_id: p.chat.msg_id,
                copies: u8::try_from(p.stored_by.len()).unwrap_or(u8::MAX),
                by: *by,
                settled: true,
            });
        }
        self.awaiting.insert(
            p.chat.msg_id,
            Awaiting {
                to: p.chat.to,
                seq: p.chat.seq,
                first_sent: p.first_sent,
                expires,
                stored_by: p.stored_by,
            },
        );
    }

    /// A stored chat's homes have dropped it (its retention ended) with
    /// no receipt: it failed, as the homes said the recipient was away.
    fn give_up(&mut self, ctx: &mut Ctx, msg_id: MsgId) {
        let Some(a) = self.awaiting.remove(&msg_id) else {
            return;
        };
        self.awaiting_by_expiry.remove(&(a.expires, msg_id));
        ctx.out.emit(Event::ChatFailed {
            to: a.to,
            msg_id,
            reason: ChatFailure::Offline,
            said_by: a.stored_by.first().copied(),
        });
    }

    /// Stored chats awaiting their receipt.
    pub fn awaiting(&self) -> usize {
        self.awaiting.len()
    }

    /// Chat `msg_id` if a home keeps it (it is stored, pending or past its
    /// deadline): what to save to await its receipt after a restart.
    pub fn awaited(&self, ctx: &Ctx, msg_id: &MsgId) -> Option<AwaitedChat> {
        if let Some(p) = self.outbox.get(msg_id) {
            return (!p.stored_by.is_empty()).then(|| AwaitedChat {
                to: p.chat.to,
                msg_id: *msg_id,
                seq: p.chat.seq,
                first_sent: p.first_sent,
                expires: p.first_sent.saturating_add(ctx.cfg.mailbox.retention),
                stored_by: p.stored_by.first().copied(),
            });
        }
        self.awaiting.get(msg_id).map(|a| AwaitedChat {
            to: a.to,
            msg_id: *msg_id,
            seq: a.seq,
            first_sent: a.first_sent,
            expires: a.expires,
            stored_by: a.stored_by.first().copied(),
        })
    }

    /// Awaits again the receipts of stored chats saved before a restart
    /// (within `mailbox.awaiting`; one past its expiry fails at the next
    /// tick, as it would have).
    pub fn restore_awaited(&mut self, ctx: &mut Ctx, now: SimTime, chats: Vec<AwaitedChat>) {
        for c in chats {
            if self.awaiting.len() >= ctx.cfg.mailbox.awaiting
                || self.awaiting.contains_key(&c.msg_id)
                || self.outbox.get(&c.msg_id).is_some()
            {
                continue;
            }
            self.awaiting_by_expiry.insert((c.expires, c.msg_id));
            self.awaiting.insert(
                c.msg_id,
                Awaiting {
                    to: c.to,
                    seq: c.seq,
                    first_sent: c.first_sent,
                    expires: c.expires,
                    stored_by: c.stored_by.into_iter().collect(),
                },
            );
        }
        if let Some(&(at, _)) = self.awaiting_by_expiry.first() {
            ctx.timers.set_earliest(Timer::Chat, at.max(now + 1));
        }
    }

    /// Ends a chat-timer run: gives up stored chats past their retention,
    /// hands over messages held behind a gap that will not fill, and
    /// re-arms the timer. The receipts of the released messages, each to
    /// its author.
    pub fn finish_tick(&mut self, ctx: &mut Ctx, now: SimTime) -> Vec<(NodeId, Receipt)> {
        while let Some(&(at, msg_id)) = self.awaiting_by_expiry.first() {
            if at > now {
                break;
            }
            self.give_up(ctx, msg_id);
        }
        let released = self.inbox.release_stalled(now);
        let authors: Vec<NodeId> = released.iter().map(|r| r.chat.from).collect();
        let receipts = hand_out(ctx, released);
        let next = [
            self.outbox.next_wakeup(),
            self.inbox.next_wakeup(),
            self.awaiting_by_expiry.first().map(|(at, _)| *at),
        ]
        .into_iter()
        .flatten()
        .min();
        if let Some(at) = next {
            ctx.timers.set(Timer::Chat, at.max(now + 1));
        }
        authors.into_iter().zip(receipts).collect()
    }
}

/// Hands released chats to the application: their `ChatReceived` events,
/// then their signed receipts in the same order (the runtime commits the
/// events before any receipt leaves).
fn hand_out(ctx: &mut Ctx, released: Vec<Released>) -> Vec<Receipt> {
    let mut receipts = Vec::with_capacity(released.len());
    for Released { chat, hops } in released {
        receipts.push(Receipt {
            body: Body::ChatAck(ctx.identity.receipt(chat.from, chat.msg_id, chat.seq, hops)),
            again: false,
        });
        ctx.out.emit(Event::ChatReceived {
            from: chat.from,
            msg_id: chat.msg_id,
            seq: chat.seq,
            body: chat.body,
            hops,
        });
    }
    receipts
}
