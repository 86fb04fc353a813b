//! What is signed, and signing and verifying it with ed25519 identity keys.
//!
//! Signed bytes are a domain string (so that a signature over one kind of
//! statement can never be passed off as another) followed by the wire
//! encoding of the statement's fields, in order, without the signature.
//! Verification also checks that the public key hashes, through its libp2p
//! PeerId, to the node id the statement names: ids are self-certifying.

use libp2p_identity::ed25519;
use serde::Serialize;

use crate::bounded::Signature;
use crate::codec;
use crate::id::NodeId;
use crate::message::{
    Absence, ChatMessage, ChatReceipt, Leave, LocationRecord, NameClaim, PublicKey, StoredNotice,
    SupernodeProof, Withdraw, WithdrawReason,
};

mod identity;
mod memo;

pub use identity::Identity;
pub use memo::SignatureMemo;

/// Domain prefix of a location record's signed bytes.
pub const RECORD_DOMAIN: &[u8] = b"skyhop/2 location-record\0";
/// Domain prefix of a leave's signed bytes.
pub const LEAVE_DOMAIN: &[u8] = b"skyhop/2 leave\0";
/// Domain prefix of a chat message's signed bytes.
pub const CHAT_DOMAIN: &[u8] = b"skyhop/2 chat\0";
/// Domain prefix of a chat receipt's signed bytes.
pub const RECEIPT_DOMAIN: &[u8] = b"skyhop/2 chat-receipt\0";
/// Domain prefix of a `Withdraw { Lost }`'s signed bytes.
pub const WITHDRAW_LOST_DOMAIN: &[u8] = b"skyhop/2 withdraw-lost\0";
/// Domain prefix of a home's "stored" notice's signed bytes.
pub const STORED_DOMAIN: &[u8] = b"skyhop/2 stored\0";
/// Domain prefix of an absence's signed bytes.
pub const ABSENCE_DOMAIN: &[u8] = b"skyhop/2 absence\0";
/// Domain prefix of a name claim's signed bytes.
pub const NAME_CLAIM_DOMAIN: &[u8] = b"skyhop/2 name-claim\0";
/// Domain prefix hashed with the ed25519 secret key to derive the X25519
/// chat secret key (see [`Identity::chat_key`]).
pub const CHAT_KEY_DOMAIN: &[u8] = b"skyhop/2 chat-key\0";

/// Why a signed statement was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The public key bytes are not an ed25519 point.
    #[error("public key is not a valid ed25519 key")]
    BadKey,
    /// The key is valid but belongs to another node id.
    #[error("public key belongs to node {actual}, not the claimed {claimed}")]
    KeyMismatch {
        /// The id the statement names.
        claimed: NodeId,
        /// The id the key hashes to.
        actual: NodeId,
    },
    /// The signature does not verify.
    #[error("signature does not verify")]
    BadSignature,
}

fn signed_bytes<T: Serialize>(domain: &[u8], fields: &T) -> Vec<u8> {
    let mut out = domain.to_vec();
    codec::encode_fields(fields, &mut out);
    out
}

/// The bytes a name claim's signature covers.
pub fn name_claim_signed_bytes(c: &NameClaim) -> Vec<u8> {
    signed_bytes(
        NAME_CLAIM_DOMAIN,
        &(&c.name, &c.node, &c.public_key, c.seq, c.lifetime_s),
    )
}

/// The bytes a location record's signature covers.
pub fn record_signed_bytes(r: &LocationRecord) -> Vec<u8> {
    signed_bytes(
        RECORD_DOMAIN,
        &(
            &r.node,
            &r.public_key,
            &r.chat_key,
            &r.sn,
            &r.sn_addrs,
            &r.backups,
            r.seq,
            r.lifetime_s,
        ),
    )
}

/// The bytes a leave's signature covers.
pub fn leave_signed_bytes(l: &Leave) -> Vec<u8> {
    signed_bytes(LEAVE_DOMAIN, &(&l.node, &l.public_key, &l.sn, l.seq))
}

/// The bytes a chat message's signature covers.
pub fn chat_signed_bytes(c: &ChatMessage) -> Vec<u8> {
    signed_bytes(
        CHAT_DOMAIN,
        &(
            &c.from,
            &c.from_key,
            &c.to,
            &c.msg_id,
            c.seq,
            c.sent_at,
            &c.body,
        ),
    )
}

/// The bytes a chat receipt's signature covers.
pub fn receipt_signed_bytes(r: &ChatReceipt) -> Vec<u8> {
    signed_bytes(
        RECEIPT_DOMAIN,
        &(
            &r.recipient,
            &r.public_key,
            &r.author,
            &r.msg_id,
            r.seq,
            r.hops,
        ),
    )
}

/// The bytes an absence's signature covers.
pub fn absence_signed_bytes(a: &Absence) -> Vec<u8> {
    signed_bytes(
        ABSENCE_DOMAIN,
        &(a.about, &a.node, &a.reason, &a.by, &a.public_key),
    )
}

/// The bytes a "stored" notice's signature covers.
pub fn stored_signed_bytes(n: &StoredNotice) -> Vec<u8> {
    signed_bytes(
        STORED_DOMAIN,
        &(
            &n.msg_id,
            &n.node,
            &n.author,
            n.expires_at,
            &n.by,
            &n.public_key,
        ),
    )
}

/// The bytes a `Withdraw { Lost }`'s signature covers (by `w.sn`, with
/// `public_key`).
pub fn withdraw_lost_signed_bytes(w: &Withdraw, public_key: &PublicKey) -> Vec<u8> {
    signed_bytes(WITHDRAW_LOST_DOMAIN, &(&w.node, &w.sn, w.seq, public_key))
}

fn verify(
    claimed: &NodeId,
    key: &PublicKey,
    msg: &[u8],
    sig: &Signature,
) -> Result<(), SignatureError> {
    let public = ed25519::PublicKey::try_from_bytes(key).map_err(|_| SignatureError::BadKey)?;
    let actual =
        NodeId::from_peer_id(&libp2p_identity::PublicKey::from(public.clone()).to_peer_id());
    if actual != *claimed {
        return Err(SignatureError::KeyMismatch {
            claimed: *claimed,
            actual,
        });
    }
    if public.verify(msg, &sig.0) {
        Ok(())
    } else {
        Err(SignatureError::BadSignature)
    }
}

/// A signed statement a message carries in clear (a chat's signature is
/// sealed inside it, out of a relay's sight).
enum Statement<'a> {
    Record(&'a LocationRecord),
    Leave(&'a Leave),
    Receipt(&'a ChatReceipt),
    Absence(&'a Absence),
    WithdrawLost(&'a Withdraw, &'a SupernodeProof),
    NameClaim(&'a NameClaim),
    Stored(&'a StoredNotice),
}

/// The signed statement `message` carries, if any.
fn statement(message: &crate::Message) -> Option<Statement<'_>> {
    use crate::message::{Body, Message};
    match message {
        Message::Publish(r) => Some(Statement::Record(r)),
        Message::Leave(l) => Some(Statement::Leave(l)),
        Message::Routed(p) => match &p.body {
            Body::Publish(r)
            | Body::LocationReply {
                record: Some(r), ..
            } => Some(Statement::Record(r)),
            Body::ChatAck(r) => Some(Statement::Receipt(r)),
            Body::NotFound(a) => Some(Statement::Absence(a)),
            Body::MailboxStored(n) => Some(Statement::Stored(n)),
            Body::LocationReply {
                record: None,
                absence: Some(a),
                ..
            } => Some(Statement::Absence(a)),
            Body::NameClaim { claim: c, .. } | Body::NameReply { claim: Some(c), .. } => {
                Some(Statement::NameClaim(c))
            }
            Body::Withdraw(w) => match &w.reason {
                WithdrawReason::Left(l) => Some(Statement::Leave(l)),
                WithdrawReason::Lost(proof) => Some(Statement::WithdrawLost(w, proof)),
            },
            _ => None,
        },
        _ => None,
    }
}

/// Whether `message` carries a signed statement that
/// [`SignatureMemo::preverify`] checks.
pub fn carries_signature(message: &crate::Message) -> bool {
    statement(message).is_some()
}

/// Checks that `claim` was signed by the node that claims the name.
pub fn verify_name_claim(claim: &NameClaim) -> Result<(), SignatureError> {
    verify(
        &claim.node,
        &claim.public_key,
        &name_claim_signed_bytes(claim),
        &claim.signature,
    )
}

/// Checks that `record` was signed by the node it describes.
pub fn verify_record(record: &LocationRecord) -> Result<(), SignatureError> {
    verify(
        &record.node,
        &record.public_key,
        &record_signed_bytes(record),
        &record.signature,
    )
}

/// Checks that `leave` was signed by the node that leaves.
pub fn verify_leave(leave: &Leave) -> Result<(), SignatureError> {
    verify(
        &leave.node,
        &leave.public_key,
        &leave_signed_bytes(leave),
        &leave.signature,
    )
}

/// Checks that `chat` was signed by its author.
pub fn verify_chat(chat: &ChatMessage) -> Result<(), SignatureError> {
    verify(
        &chat.from,
        &chat.from_key,
        &chat_signed_bytes(chat),
        &chat.signature,
    )
}

/// Checks that `receipt` was signed by the recipient it names.
pub fn verify_receipt(receipt: &ChatReceipt) -> Result<(), SignatureError> {
    verify(
        &receipt.recipient,
        &receipt.public_key,
        &receipt_signed_bytes(receipt),
        &receipt.signature,
    )
}

/// Checks that a "stored" notice was signed by the home it names.
pub fn verify_stored(notice: &StoredNotice) -> Result<(), SignatureError> {
    verify(
        &notice.by,
        &notice.public_key,
        &stored_signed_bytes(notice),
        &notice.signature,
    )
}

/// Checks that `absence` was signed by the node it names as its author.
pub fn verify_absence(absence: &Absence) -> Result<(), SignatureError> {
    verify(
        &absence.by,
        &absence.public_key,
        &absence_signed_bytes(absence),
        &absence.signature,
    )
}

/// Checks that a `Withdraw { Lost }` was signed by the supernode it names.
pub fn verify_withdraw_lost(w: &Withdraw, proof: &SupernodeProof) -> Result<(), SignatureError> {
    verify(
        &w.sn,
        &proof.public_key,
        &withdraw_lost_signed_bytes(w, &proof.public_key),
        &proof.signature,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::MsgId;
    use crate::limits::MAX_CHAT_BODY;
    use crate::message::NotFoundReason;

    #[test]
    fn signatures_verify_and_forgeries_fail() {
        let alice = Identity::from_secret([1; 32]);
        let mallory = Identity::from_secret([2; 32]);
        let sn = Identity::from_secret([3; 32]).id();

        let record = alice.location_record(sn, vec!["/ip4/127.0.0.1/tcp/1".into()], 7, 60);
        assert_eq!(verify_record(&record), Ok(()));

        let mut moved = record.clone();
        moved.sn = mallory.id();
        assert_eq!(verify_record(&moved), Err(SignatureError::BadSignature));

        let mut impostor = mallory.location_record(sn, vec![], 8, 60);
        impostor.node = alice.id();
        assert!(matches!(
            verify_record(&impostor),
            Err(SignatureError::KeyMismatch { .. })
        ));

        let chat = alice
            .chat(mallory.id(), MsgId(1), 1, 0, "hi".into())
            .expect("short body");
        assert_eq!(verify_chat(&chat), Ok(()));
        let mut edited = chat.clone();
        edited.body = "bye".into();
        assert_eq!(verify_chat(&edited), Err(SignatureError::BadSignature));

        let leave = alice.leave(sn, 9);
        assert_eq!(verify_leave(&leave), Ok(()));
        assert!(alice
            .chat(sn, MsgId(2), 2, 0, "x".repeat(MAX_CHAT_BODY + 1))
            .is_err());
    }

    #[test]
    fn the_memo_answers_only_for_the_exact_statement() {
        let alice = Identity::from_secret([4; 32]);
        let sn = Identity::from_secret([5; 32]).id();
        let record = alice.location_record(sn, vec![], 3, 60);
        let publish = crate::Message::Publish(record.clone());
        assert!(carries_signature(&publish));
        let memo = SignatureMemo::new(16);
        memo.preverify(&publish);
        assert_eq!(memo.verify_record(&record), Ok(()));
        // Every field and the signature are covered by the memo's digest.
        let mut later = record.clone();
        later.seq += 1;
        assert_eq!(
            memo.verify_record(&later),
            Err(SignatureError::BadSignature)
        );
        let mut resigned = record.clone();
        resigned.signature.0[0] ^= 1;
        assert_eq!(
            memo.verify_record(&resigned),
            Err(SignatureError::BadSignature)
        );
        let hb = crate::Message::Heartbeat(crate::Heartbeat { nonce: 1 });
        assert!(!carries_signature(&hb));
    }

    #[test]
    fn identity_round_trips_through_secret_bytes() {
        let a = Identity::from_secret([9; 32]);
        let b = Identity::from_secret(a.secret_bytes());
        assert_eq!(a.id(), b.id());
        assert_eq!(
            a.id(),
            NodeId::from_peer_id(&a.libp2p_keypair().public().to_peer_id())
        );
    }

    #[test]
    fn an_absence_signed_through_the_memo_is_the_identitys_and_a_forgery_still_fails() {
        let home = Identity::from_secret([4; 32]);
        let memo = SignatureMemo::new(16);
        let node = Identity::from_secret([5; 32]).id();
        let a = memo.sign_absence(&home, 9, node, NotFoundReason::NoRecord);
        assert_eq!(a, home.absence(9, node, NotFoundReason::NoRecord));
        assert_eq!(memo.verify_absence(&a), Ok(()));
        let mut forged = a.clone();
        forged.reason = NotFoundReason::Offline;
        assert_eq!(
            memo.verify_absence(&forged),
            Err(SignatureError::BadSignature)
        );
    }
}
