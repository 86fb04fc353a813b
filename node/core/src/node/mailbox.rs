//! The facade's side of offline delivery: it offers a chat whose
//! recipient is away to the recipient's home supernodes, acts on the
//! [`Mailbox`](crate::mailbox::Mailbox)'s decisions as a home (signed
//! "stored" notices, copies to the other homes, hand-overs when the
//! recipient publishes a record), and takes a handed-over chat as a
//! recipient (receipt to the author, "taken" to the home).
//!
//! Receipts go the same way back: a receipt that finds its chat's author
//! away is kept by the author's homes (verified first) and handed over
//! when the author publishes a record again.

use skyhop_protocol::{Body, ChatReceipt, KeptChat, MsgId, NodeId, NotFoundReason, Role};

use super::Node;
use crate::counters::DropReason;
use crate::mailbox::{Change, Held, Keep};
use crate::SimTime;

impl Node {
    /// Offers `kept` (our chat, sealed) to its recipient's home supernodes.
    pub(super) fn offer_to_homes(&mut self, now: SimTime, kept: KeptChat) {
        let to = kept.node;
        self.originate(now, to, Body::MailboxStore(kept), None);
    }

    /// A chat offered to this supernode's mailbox, from `src`: the author
    /// when `first` (it reached us as the closest home; clients cannot
    /// forge `src`), else another home copying it to us.
    pub(super) fn on_mailbox_store(
        &mut self,
        now: SimTime,
        src: NodeId,
        kept: KeptChat,
        first: bool,
    ) {
        // A chat kept for this node itself (it became a supernode, and so
        // one of its own homes): the other homes hand it over.
        if self.ctx.cfg.role != Role::Supernode
            || (first && src != kept.author)
            || kept.node == self.ctx.id
        {
            self.ctx.out.drop(DropReason::NotHomeBound);
            return;
        }
        let held = Held::Chat(kept.clone());
        let expires = match self.mailbox.keep(&self.ctx.cfg.mailbox, now, held) {
            Keep::Kept(expires) => expires,
            Keep::RecipientFull => {
                self.ctx.out.drop(DropReason::MailboxFull);
                return;
            }
        };
        let notice = self
            .ctx
            .identity
            .stored(kept.msg_id, kept.node, kept.author, expires);
        self.originate(now, kept.author, Body::MailboxStored(notice), None);
        if first {
            let copies: Vec<NodeId> = self
                .table
                .closest(&kept.node, self.ctx.cfg.replicas)
                .iter()
                .map(|e| e.id)
                .filter(|id| *id != kept.node)
                .take(self.ctx.cfg.replicas.saturating_sub(1))
                .collect();
            for home in copies {
                self.originate(now, home, Body::MailboxStore(kept.clone()), None);
            }
        }
        // The recipient came back meanwhile, or is a supernode we know
        // (it promoted itself): hand it over now.
        if self.home.directory().get(&kept.node, now).is_some() || self.table.contains(&kept.node) {
            self.originate(now, kept.node, Body::MailboxHandOver(kept), None);
        }
    }

    /// `node` published a record signed with its identity (so it holds the
    /// key its chats are sealed to): remember the record for when it goes
    /// away, and hand over what is kept for it. They stay until it says it
    /// has them, so a lost hand-over is made again at its next refresh.
    pub(super) fn hand_over(&mut self, now: SimTime, node: NodeId) {
        let Some(record) = self.home.directory().get_shared(&node, now) else {
            return;
        };
        let max = self.ctx.cfg.max_records;
        self.mailbox
            .remember_record(&self.ctx.cfg.mailbox, now, record, max);
        for held in self.mailbox.for_recipient(&node) {
            self.originate(now, node, held.hand_over(), None);
        }
    }

    /// A home supernode `home` handed over a chat kept for us: take it as a
    /// chat from its author, and tell the home it may drop it once the
    /// chat is handed to the application (the receipt says so).
    pub(super) fn on_hand_over(&mut self, now: SimTime, home: NodeId, hops: u8, kept: KeptChat) {
        if kept.node != self.ctx.id {
            self.ctx.out.drop(DropReason::MisaddressedChat);
            return;
        }
        let (author, msg_id) = (kept.author, kept.msg_id);
        let receipts = self
            .chats
            .on_chat(&mut self.ctx, now, author, hops, kept.sealed, true);
        let have = receipts
            .iter()
            .any(|r| matches!(&r.body, Body::ChatAck(a) if a.msg_id == msg_id));
        for receipt in receipts {
            self.send_receipt(now, author, receipt);
        }
        if have {
            self.originate(now, home, Body::MailboxTaken { author, msg_id }, None);
        }
    }

    /// A home's answer that `node` has no live record gains the last record
    /// `node` published here, if kept: it binds `node`'s chat key to its
    /// identity, so that the asker can seal a chat for the mailbox.
    pub(super) fn with_last_record(&self, reply: Body) -> Body {
        match reply {
            Body::LocationReply {
                request_id,
                node,
                record: None,
                absence: Some(absence),
            } => Body::LocationReply {
                request_id,
                node,
                record: self.mailbox.last_record(&node).cloned(),
                absence: Some(absence),
            },
            other => other,
        }
    }

    /// Recipient `node` has chat `msg_id` of `author`: drop it here.
    pub(super) fn on_taken(&mut self, node: NodeId, author: NodeId, msg_id: MsgId) {
        if self.ctx.cfg.role == Role::Supernode {
            self.mailbox.taken(node, author, msg_id);
        }
    }

    /// `sn` joined our table as a supernode (an authenticated link said
    /// so): hand over what is kept for it. A node that promoted itself
    /// publishes no record, so this is how its chats reach it.
    pub(super) fn hand_over_to_supernode(&mut self, now: SimTime, sn: NodeId) {
        for held in self.mailbox.for_recipient(&sn) {
            self.originate(now, sn, held.hand_over(), None);
        }
    }

    /// A receipt packet could not reach the chat's author because the
    /// author is away (its homes said `reason`): offer it to the author's
    /// homes to keep. True if it was offered.
    pub(super) fn keep_receipt_for_author(
        &mut self,
        now: SimTime,
        dst: NodeId,
        body: &Body,
        reason: NotFoundReason,
    ) -> bool {
        match body {
            Body::ChatAck(receipt)
                if receipt.author == dst
                    && matches!(reason, NotFoundReason::Offline | NotFoundReason::NoRecord) =>
            {
                self.originate(now, dst, Body::ReceiptStore(receipt.clone()), None);
                true
            }
            _ => false,
        }
    }

    /// A receipt offered to this supernode to keep for its chat's author
    /// `dst`: as the closest home when `first` (then copied to the other
    /// homes), else a home's copy. Kept only if its signer signed it.
    pub(super) fn on_receipt_store(
        &mut self,
        now: SimTime,
        dst: NodeId,
        receipt: ChatReceipt,
        first: bool,
    ) {
        let author = receipt.author;
        if author == self.ctx.id {
            // We are the author's closest home ourselves.
            self.chats
                .on_ack(&mut self.ctx, now, receipt.recipient, receipt);
            return;
        }
        if self.ctx.cfg.role != Role::Supernode || (first && dst != author) {
            self.ctx.out.drop(DropReason::NotHomeBound);
            return;
        }
        if self.ctx.memo.verify_receipt(&receipt).is_err() {
            self.ctx.out.counters.forged += 1;
            self.ctx.out.drop(DropReason::ForgedReceipt);
            return;
        }
        let held = Held::Receipt(receipt.clone());
        if self.mailbox.keep(&self.ctx.cfg.mailbox, now, held) == Keep::RecipientFull {
            self.ctx.out.drop(DropReason::MailboxFull);
            return;
        }
        if first {
            let copies: Vec<NodeId> = self
                .table
                .closest(&author, self.ctx.cfg.replicas)
                .iter()
                .map(|e| e.id)
                .filter(|id| *id != author && *id != self.ctx.id)
                .take(self.ctx.cfg.replicas.saturating_sub(1))
                .collect();
            for home in copies {
                self.originate(now, home, Body::ReceiptStore(receipt.clone()), None);
            }
        }
        if self.home.directory().get(&author, now).is_some() || self.table.contains(&author) {
            self.originate(now, author, Body::ReceiptHandOver(receipt), None);
        }
    }

    /// A home supernode `home` handed over a receipt kept for us: taken as
    /// the receipt itself (verified there), then the home may drop it.
    pub(super) fn on_receipt_hand_over(
        &mut self,
        now: SimTime,
        home: NodeId,
        receipt: ChatReceipt,
    ) {
        if receipt.author != self.ctx.id {
            self.ctx.out.drop(DropReason::UnexpectedAck);
            return;
        }
        let (signer, msg_id) = (receipt.recipient, receipt.msg_id);
        self.chats.on_ack(&mut self.ctx, now, signer, receipt);
        // Delivered now, already, or not ours to await: kept no longer
        // either way.
        self.originate(
            now,
            home,
            Body::MailboxTaken {
                author: signer,
                msg_id,
            },
            None,
        );
    }

    /// Records every change to the mailbox from now on (the runtime
    /// persists them; see [`Node::mailbox_changes`]).
    pub fn journal_mailbox(&mut self) {
        self.mailbox.journal();
    }

    /// The mailbox's changes since the last call, made by the inputs whose
    /// outputs were polled since: a runtime commits them before it acts on
    /// those outputs (a "stored" notice among them promises a kept chat).
    pub fn mailbox_changes(&mut self) -> Vec<Change> {
        self.mailbox.drain_journal()
    }

    /// Takes back what a persisted mailbox held before a restart (within
    /// today's budgets; what has expired goes at the next tick).
    pub fn restore_mailbox(&mut self, items: Vec<(Held, SimTime)>) {
        for (held, expires) in items {
            self.mailbox
                .keep_until(&self.ctx.cfg.mailbox, held, expires);
        }
        // Restoring is not a change to save again.
        self.mailbox.drain_journal();
    }
}
