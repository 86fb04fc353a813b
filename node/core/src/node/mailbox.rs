//! The facade's side of offline delivery: it offers a chat whose
//! recipient is away to the recipient's home supernodes, acts on the
//! [`Mailbox`](crate::mailbox::Mailbox)'s decisions as a home (signed
//! "stored" notices, copies to the other homes, hand-overs when the
//! recipient publishes a record), and takes a handed-over chat as a
//! recipient (receipt to the author, "taken" to the home).

use skyhop_protocol::{Body, KeptChat, MsgId, NodeId, Role};

use super::Node;
use crate::counters::DropReason;
use crate::mailbox::Keep;
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
        let expires = match self.mailbox.keep(&self.ctx.cfg.mailbox, now, kept.clone()) {
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
        for kept in self.mailbox.for_recipient(&node) {
            self.originate(now, node, Body::MailboxHandOver(kept), None);
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
        for kept in self.mailbox.for_recipient(&sn) {
            self.originate(now, sn, Body::MailboxHandOver(kept), None);
        }
    }
}
