//! Chat delivery, end to end: composing and signing a message, retrying it
//! with backoff until its ack or its deadline, turning acks and not-found
//! answers into what the user sees (delivered, or failed and why), and on
//! the receiving side verifying, dropping duplicates, ordering per sender
//! and acking. The queues themselves are [`super::chat`]'s; the `Node`
//! facade routes what this returns.

use skyhop_protocol::{Body, ChatMessage, MsgId, NodeId, NotFoundReason, MAX_CHAT_BODY};

use super::chat::{Arrival, Inbox, Outbox};
use super::context::Ctx;
use super::counters::DropReason;
use super::events::{ChatFailure, Event};
use super::timers::Timer;
use super::SimTime;

use rand::RngExt;

/// `NotFound { NoRecord }` answers after which a chat fails as not found.
const NOT_FOUND_LIMIT: u32 = 3;

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

/// A retry the facade must send: the message and the delay after it.
pub(crate) struct Retry {
    /// The signed message, resent as is.
    pub chat: ChatMessage,
    /// When to try again after this send.
    pub delay: SimTime,
    /// Sends before this one (routing picks another path for each).
    pub attempt: u32,
}

/// The chat state of one node: what it sent and awaits, what it received.
#[derive(Debug, Default)]
pub(crate) struct ChatDelivery {
    /// Messages sent and awaiting their ack.
    outbox: Outbox,
    /// Per-sender duplicate and ordering windows.
    inbox: Inbox,
}

impl ChatDelivery {
    /// Messages awaiting their ack.
    pub fn pending(&self) -> usize {
        self.outbox.len()
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

    /// Starts awaiting the ack of `chat`, first sent now as `packet_id`.
    pub fn track(&mut self, ctx: &mut Ctx, now: SimTime, chat: ChatMessage, packet_id: MsgId) {
        self.outbox.insert(
            chat,
            packet_id,
            now,
            ctx.cfg.chat_retry_initial,
            ctx.cfg.chat_deadline,
        );
        ctx.timers
            .set_earliest(Timer::Chat, now + ctx.cfg.chat_retry_initial);
    }

    /// A chat from `src` arrived after `hops` hops: the ack to send back, if
    /// the message is genuine (a duplicate is acked again: our earlier ack
    /// was lost).
    pub fn on_chat(
        &mut self,
        ctx: &mut Ctx,
        now: SimTime,
        src: NodeId,
        hops: u8,
        chat: ChatMessage,
    ) -> Option<Body> {
        if chat.to != ctx.id || chat.from != src {
            ctx.out.drop(DropReason::MisaddressedChat);
            return None;
        }
        if ctx.memo.verify_chat(&chat).is_err() {
            ctx.out.counters.forged += 1;
            ctx.out.drop(DropReason::ForgedChat);
            return None;
        }
        let (msg_id, seq) = (chat.msg_id, chat.seq);
        match self.inbox.arrive(chat, now) {
            Arrival::Duplicate => ctx.out.drop(DropReason::DuplicateChat),
            Arrival::Ready(ready) => {
                for c in ready {
                    ctx.out.emit(Event::ChatReceived {
                        from: c.from,
                        msg_id: c.msg_id,
                        seq: c.seq,
                        body: c.body,
                        hops,
                    });
                }
                if let Some(at) = self.inbox.next_wakeup() {
                    ctx.timers.set_earliest(Timer::Chat, at);
                }
            }
        }
        Some(Body::ChatAck { msg_id, seq, hops })
    }

    /// `src` acknowledged `msg_id`: delivered, if it was ours to `src`.
    pub fn on_ack(&mut self, ctx: &mut Ctx, now: SimTime, src: NodeId, msg_id: MsgId, hops: u8) {
        match self.outbox.get(&msg_id) {
            Some(pending) if pending.chat.to == src => {}
            _ => {
                ctx.out.drop(DropReason::UnexpectedAck);
                return;
            }
        }
        if let Some(pending) = self.outbox.remove(&msg_id) {
            let latency = now.saturating_sub(pending.first_sent);
            ctx.out.emit(Event::ChatDelivered {
                to: src,
                msg_id,
                hops,
                latency,
            });
        }
    }

    /// Packet `packet_id` could not be delivered: fail its message if the
    /// answer is final (offline, or not found often enough).
    pub fn on_not_found(&mut self, ctx: &mut Ctx, packet_id: MsgId, reason: NotFoundReason) {
        let Some(pending) = self.outbox.by_packet(&packet_id) else {
            return;
        };
        let failure = match reason {
            NotFoundReason::Offline => Some(ChatFailure::Offline),
            NotFoundReason::NoRecord => {
                pending.not_found += 1;
                (pending.not_found >= NOT_FOUND_LIMIT).then_some(ChatFailure::NotFound)
            }
            NotFoundReason::TtlExpired | NotFoundReason::NoRoute => None,
        };
        if let Some(reason) = failure {
            let msg_id = pending.chat.msg_id;
            let to = pending.chat.to;
            self.outbox.remove(&msg_id);
            ctx.out.emit(Event::ChatFailed { to, msg_id, reason });
        }
    }

    /// Messages whose retry or deadline is due at `now`.
    pub fn due(&self, now: SimTime) -> Vec<MsgId> {
        self.outbox.due(now)
    }

    /// Message `msg_id` is due: fail it at its deadline, else the retry to
    /// send.
    pub fn retry_or_fail(&mut self, ctx: &mut Ctx, now: SimTime, msg_id: MsgId) -> Option<Retry> {
        let p = self.outbox.get(&msg_id)?;
        if p.deadline <= now {
            let reason = if p.not_found > 0 {
                ChatFailure::NotFound
            } else {
                ChatFailure::TimedOut
            };
            let to = p.chat.to;
            self.outbox.remove(&msg_id);
            ctx.out.emit(Event::ChatFailed { to, msg_id, reason });
            return None;
        }
        let exp = p.attempts.min(16);
        let delay = ctx
            .cfg
            .chat_retry_initial
            .saturating_mul(1 << exp)
            .min(ctx.cfg.chat_retry_max)
            .min(p.deadline - now);
        Some(Retry {
            chat: p.chat.clone(),
            delay,
            attempt: p.attempts,
        })
    }

    /// Records the resend of `msg_id` as `packet_id`.
    pub fn resent(&mut self, msg_id: &MsgId, packet_id: MsgId, now: SimTime, delay: SimTime) {
        self.outbox.resent(msg_id, packet_id, now, delay);
    }

    /// Ends a chat-timer run: hands over messages held behind a gap that
    /// will not fill, and re-arms the timer.
    pub fn finish_tick(&mut self, ctx: &mut Ctx, now: SimTime) {
        for c in self.inbox.release_stalled(now) {
            ctx.out.emit(Event::ChatReceived {
                from: c.from,
                msg_id: c.msg_id,
                seq: c.seq,
                body: c.body,
                hops: 0,
            });
        }
        let next = [self.outbox.next_wakeup(), self.inbox.next_wakeup()]
            .into_iter()
            .flatten()
            .min();
        if let Some(at) = next {
            ctx.timers.set(Timer::Chat, at.max(now + 1));
        }
    }
}
