//! [`Identity`]: a node's key pair, and the statements it signs with it.

use libp2p_identity::ed25519;

use super::{
    absence_signed_bytes, chat_signed_bytes, leave_signed_bytes, name_claim_signed_bytes,
    receipt_signed_bytes, record_signed_bytes, stored_signed_bytes, withdraw_lost_signed_bytes,
    CHAT_KEY_DOMAIN,
};
use crate::bounded::Signature;
use crate::id::{MsgId, NodeId};
use crate::limits::MAX_CHAT_BODY;
use crate::message::{
    Absence, ChatKey, ChatMessage, ChatReceipt, Leave, LimitError, LocationRecord, NameClaim,
    NotFoundReason, PublicKey, StoredNotice, SupernodeProof, Withdraw, WithdrawReason,
};

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
    /// the backup supernodes `backups` (the first [`MAX_RECORD_BACKUPS`](crate::limits::MAX_RECORD_BACKUPS)).
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
