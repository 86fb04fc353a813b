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
use crate::id::{MsgId, NodeId};
use crate::limits::MAX_CHAT_BODY;
use crate::message::{
    Absence, ChatKey, ChatMessage, ChatReceipt, Leave, LimitError, LocationRecord, NameClaim,
    NotFoundReason, PublicKey, StoredNotice, SupernodeProof, Withdraw, WithdrawReason,
};

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

/// Signatures that verified, remembered by a digest of everything
/// verification looked at (id, key, signed bytes, signature), so that the
/// same statement is never verified twice. Only successes are remembered,
/// so a hit answers exactly what verifying again would. Bounded: the
/// oldest entries go first.
///
/// The caller owns it and decides who shares it: a node keeps its own; the
/// simulator gives one to all its nodes and to the thread that verifies
/// statements while their frames are in flight ([`SignatureMemo::preverify`]).
/// It is `Sync` (a mutex inside) for that reason.
///
/// # Implementation notes
/// Verification is ~40 µs, hashing the statement ~1 µs. In one node it
/// saves repeats (a record that comes back by replication); in the
/// simulator, where 10^6 nodes share a process, the second thread does
/// most of the verifying.
#[derive(Debug)]
pub struct SignatureMemo {
    /// Digests of statements that verified, newest last.
    verified: std::sync::Mutex<crate::recent::RecentIds<[u8; 32]>>,
}

impl Default for SignatureMemo {
    fn default() -> SignatureMemo {
        SignatureMemo::new(SignatureMemo::DEFAULT_CAPACITY)
    }
}

impl SignatureMemo {
    /// Digests remembered by [`SignatureMemo::default`].
    pub const DEFAULT_CAPACITY: usize = 1 << 16;

    /// An empty memo of at most `capacity` digests.
    pub fn new(capacity: usize) -> SignatureMemo {
        SignatureMemo {
            verified: std::sync::Mutex::new(crate::recent::RecentIds::new(capacity)),
        }
    }

    fn contains(&self, digest: &[u8; 32]) -> bool {
        self.verified.lock().is_ok_and(|m| m.contains(digest))
    }

    fn insert(&self, digest: [u8; 32]) {
        if let Ok(mut m) = self.verified.lock() {
            m.insert(digest);
        }
    }

    fn verify(
        &self,
        claimed: &NodeId,
        key: &PublicKey,
        msg: &[u8],
        sig: &Signature,
    ) -> Result<(), SignatureError> {
        let digest = digest(claimed, key, msg, sig);
        if self.contains(&digest) {
            return Ok(());
        }
        verify(claimed, key, msg, sig)?;
        self.insert(digest);
        Ok(())
    }

    /// [`verify_record`], remembering a success.
    pub fn verify_record(&self, record: &LocationRecord) -> Result<(), SignatureError> {
        self.verify(
            &record.node,
            &record.public_key,
            &record_signed_bytes(record),
            &record.signature,
        )
    }

    /// [`verify_name_claim`], remembering a success.
    pub fn verify_name_claim(&self, claim: &NameClaim) -> Result<(), SignatureError> {
        self.verify(
            &claim.node,
            &claim.public_key,
            &name_claim_signed_bytes(claim),
            &claim.signature,
        )
    }

    /// [`verify_leave`], remembering a success.
    pub fn verify_leave(&self, leave: &Leave) -> Result<(), SignatureError> {
        self.verify(
            &leave.node,
            &leave.public_key,
            &leave_signed_bytes(leave),
            &leave.signature,
        )
    }

    /// [`verify_chat`], remembering a success.
    pub fn verify_chat(&self, chat: &ChatMessage) -> Result<(), SignatureError> {
        self.verify(
            &chat.from,
            &chat.from_key,
            &chat_signed_bytes(chat),
            &chat.signature,
        )
    }

    /// [`verify_receipt`], remembering a success.
    pub fn verify_receipt(&self, receipt: &ChatReceipt) -> Result<(), SignatureError> {
        self.verify(
            &receipt.recipient,
            &receipt.public_key,
            &receipt_signed_bytes(receipt),
            &receipt.signature,
        )
    }

    /// [`verify_absence`], remembering a success.
    pub fn verify_absence(&self, absence: &Absence) -> Result<(), SignatureError> {
        self.verify(
            &absence.by,
            &absence.public_key,
            &absence_signed_bytes(absence),
            &absence.signature,
        )
    }

    /// [`verify_stored`], remembering a success.
    pub fn verify_stored(&self, notice: &StoredNotice) -> Result<(), SignatureError> {
        self.verify(
            &notice.by,
            &notice.public_key,
            &stored_signed_bytes(notice),
            &notice.signature,
        )
    }

    /// [`verify_withdraw_lost`], remembering a success.
    pub fn verify_withdraw_lost(
        &self,
        w: &Withdraw,
        proof: &SupernodeProof,
    ) -> Result<(), SignatureError> {
        self.verify(
            &w.sn,
            &proof.public_key,
            &withdraw_lost_signed_bytes(w, &proof.public_key),
            &proof.signature,
        )
    }

    /// Verifies the signed statement `message` carries, for the effect of
    /// remembering it if good: a simulator calls it from another thread
    /// while the frame is in flight. The outcome is not returned: the
    /// receiver verifies (or finds the memo) as always.
    pub fn preverify(&self, message: &crate::Message) {
        let _ = match statement(message) {
            Some(Statement::Record(r)) => self.verify_record(r),
            Some(Statement::Leave(l)) => self.verify_leave(l),
            Some(Statement::Receipt(r)) => self.verify_receipt(r),
            Some(Statement::Absence(a)) => self.verify_absence(a),
            Some(Statement::WithdrawLost(w, proof)) => self.verify_withdraw_lost(w, proof),
            Some(Statement::NameClaim(c)) => self.verify_name_claim(c),
            Some(Statement::Stored(n)) => self.verify_stored(n),
            None => Ok(()),
        };
    }
}

fn digest(claimed: &NodeId, key: &PublicKey, msg: &[u8], sig: &Signature) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(claimed.0);
    h.update(key);
    h.update((msg.len() as u64).to_be_bytes());
    h.update(msg);
    h.update(sig.0);
    h.finalize().into()
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

/// A node's ed25519 identity: its key pair, public key and [`NodeId`], and
/// the X25519 chat key derived from it.
#[derive(Clone)]
pub struct Identity {
    keypair: ed25519::Keypair,
    public_key: PublicKey,
    id: NodeId,
    chat_secret: [u8; 32],
    chat_key: ChatKey,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Identity({})", self.id.short())
    }
}

impl Identity {
    /// The identity whose ed25519 secret key is `secret` (deterministic, for
    /// key files and the simulator).
    pub fn from_secret(secret: [u8; 32]) -> Identity {
        let secret = ed25519::SecretKey::try_from_bytes(secret)
            .expect("any 32 bytes are an ed25519 secret key");
        Identity::from_ed25519(ed25519::Keypair::from(secret))
    }

    /// Wraps an ed25519 key pair.
    pub fn from_ed25519(keypair: ed25519::Keypair) -> Identity {
        use sha2::{Digest, Sha256};
        let public_key = keypair.public().to_bytes();
        let peer = libp2p_identity::PublicKey::from(keypair.public()).to_peer_id();
        let mut h = Sha256::new();
        h.update(CHAT_KEY_DOMAIN);
        h.update(keypair.secret().as_ref());
        let chat_secret: [u8; 32] = h.finalize().into();
        Identity {
            id: NodeId::from_peer_id(&peer),
            public_key,
            keypair,
            chat_key: crate::seal::chat_public_key(&chat_secret),
            chat_secret,
        }
    }

    /// The X25519 public key chats to this node are sealed to:
    /// X25519(SHA-256([`CHAT_KEY_DOMAIN`] || ed25519 secret key)). It is
    /// bound to the identity by the location records the node signs.
    pub fn chat_key(&self) -> ChatKey {
        self.chat_key
    }

    /// Opens a chat sealed to this node's chat key: the signed message, not
    /// yet verified.
    pub fn open_chat(
        &self,
        sealed: &crate::message::SealedChat,
    ) -> Result<ChatMessage, crate::seal::SealError> {
        crate::seal::open(&self.chat_secret, &self.chat_key, sealed)
    }

    /// A signed withdraw of `node`'s record `seq`: this supernode lost it.
    pub fn withdraw_lost(&self, node: NodeId, seq: u64) -> Withdraw {
        let mut w = Withdraw {
            node,
            sn: self.id,
            seq,
            reason: WithdrawReason::Lost(SupernodeProof {
                public_key: self.public_key,
                signature: Signature([0; 64]),
            }),
        };
        let signature = self.sign(&withdraw_lost_signed_bytes(&w, &self.public_key));
        if let WithdrawReason::Lost(proof) = &mut w.reason {
            proof.signature = signature;
        }
        w
    }

    /// A signed statement that `node` could not be reached, answering the
    /// packet or query `about`.
    pub fn absence(&self, about: u64, node: NodeId, reason: NotFoundReason) -> Absence {
        let mut absence = Absence {
            about,
            node,
            reason,
            by: self.id,
            public_key: self.public_key,
            signature: Signature([0; 64]),
        };
        absence.signature = self.sign(&absence_signed_bytes(&absence));
        absence
    }

    /// A signed notice that this node keeps chat `msg_id` of `author` for
    /// `node` until `expires_at`.
    pub fn stored(
        &self,
        msg_id: MsgId,
        node: NodeId,
        author: NodeId,
        expires_at: u64,
    ) -> StoredNotice {
        let mut notice = StoredNotice {
            msg_id,
            node,
            author,
            expires_at,
            by: self.id,
            public_key: self.public_key,
            signature: Signature([0; 64]),
        };
        notice.signature = self.sign(&stored_signed_bytes(&notice));
        notice
    }

    /// A signed receipt for the chat `msg_id` (conversation position `seq`)
    /// from `author`, which arrived after `hops` hops.
    pub fn receipt(&self, author: NodeId, msg_id: MsgId, seq: u64, hops: u8) -> ChatReceipt {
        let mut receipt = ChatReceipt {
            recipient: self.id,
            public_key: self.public_key,
            author,
            msg_id,
            seq,
            hops,
            signature: Signature([0; 64]),
        };
        receipt.signature = self.sign(&receipt_signed_bytes(&receipt));
        receipt
    }

    /// The node id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The raw ed25519 public key.
    pub fn public_key(&self) -> PublicKey {
        self.public_key
    }

    /// The 32 secret-key bytes, for the key file.
    pub fn secret_bytes(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(self.keypair.secret().as_ref());
        out
    }

    /// The libp2p key pair, for the transport.
    pub fn libp2p_keypair(&self) -> libp2p_identity::Keypair {
        libp2p_identity::Keypair::from(self.keypair.clone())
    }

    fn sign(&self, msg: &[u8]) -> Signature {
        let sig = self.keypair.sign(msg);
        Signature(sig.try_into().expect("ed25519 signatures are 64 bytes"))
    }

    /// A signed record saying this node is attached to `sn`, naming no
    /// backups.
    pub fn location_record(
        &self,
        sn: NodeId,
        sn_addrs: Vec<String>,
        seq: u64,
        lifetime_s: u32,
    ) -> LocationRecord {
        self.location_record_with_backups(sn, sn_addrs, Vec::new(), seq, lifetime_s)
    }

    /// A signed record saying this node is attached to `sn` and linked to
    /// the backup supernodes `backups` (the first [`MAX_RECORD_BACKUPS`]).
    pub fn location_record_with_backups(
        &self,
        sn: NodeId,
        sn_addrs: Vec<String>,
        mut backups: Vec<NodeId>,
        seq: u64,
        lifetime_s: u32,
    ) -> LocationRecord {
        backups.truncate(crate::limits::MAX_RECORD_BACKUPS);
        let mut record = LocationRecord {
            node: self.id,
            public_key: self.public_key,
            chat_key: self.chat_key,
            sn,
            sn_addrs,
            backups,
            seq,
            lifetime_s,
            signature: Signature([0; 64]),
        };
        record.signature = self.sign(&record_signed_bytes(&record));
        record
    }

    /// A signed claim that this node holds `name`.
    pub fn name_claim(&self, name: String, seq: u64, lifetime_s: u32) -> NameClaim {
        let mut claim = NameClaim {
            name,
            node: self.id,
            public_key: self.public_key,
            seq,
            lifetime_s,
            signature: Signature([0; 64]),
        };
        claim.signature = self.sign(&name_claim_signed_bytes(&claim));
        claim
    }

    /// A signed leave from supernode `sn`.
    pub fn leave(&self, sn: NodeId, seq: u64) -> Leave {
        let mut leave = Leave {
            node: self.id,
            public_key: self.public_key,
            sn,
            seq,
            signature: Signature([0; 64]),
        };
        leave.signature = self.sign(&leave_signed_bytes(&leave));
        leave
    }

    /// A signed chat message; refuses a body over [`MAX_CHAT_BODY`].
    pub fn chat(
        &self,
        to: NodeId,
        msg_id: MsgId,
        seq: u64,
        sent_at: u64,
        body: String,
    ) -> Result<ChatMessage, LimitError> {
        if body.len() > MAX_CHAT_BODY {
            return Err(LimitError::ChatBodyTooLong(body.len()));
        }
        let mut chat = ChatMessage {
            from: self.id,
            from_key: self.public_key,
            to,
            msg_id,
            seq,
            sent_at,
            body,
            signature: Signature([0; 64]),
        };
        chat.signature = self.sign(&chat_signed_bytes(&chat));
        Ok(chat)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
