//! [`SignatureMemo`]: signatures that verified, so that none is verified
//! twice.

use super::{
    absence_signed_bytes, chat_signed_bytes, leave_signed_bytes, name_claim_signed_bytes,
    receipt_signed_bytes, record_signed_bytes, statement, stored_signed_bytes, verify,
    withdraw_lost_signed_bytes, Identity, SignatureError, Statement,
};
use crate::bounded::Signature;
use crate::id::NodeId;
use crate::message::{
    Absence, ChatMessage, ChatReceipt, Leave, LocationRecord, NameClaim, NotFoundReason, PublicKey,
    StoredNotice, SupernodeProof, Withdraw,
};

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

    /// [`super::verify_record`], remembering a success.
    pub fn verify_record(&self, record: &LocationRecord) -> Result<(), SignatureError> {
        self.verify(
            &record.node,
            &record.public_key,
            &record_signed_bytes(record),
            &record.signature,
        )
    }

    /// [`super::verify_name_claim`], remembering a success.
    pub fn verify_name_claim(&self, claim: &NameClaim) -> Result<(), SignatureError> {
        self.verify(
            &claim.node,
            &claim.public_key,
            &name_claim_signed_bytes(claim),
            &claim.signature,
        )
    }

    /// [`super::verify_leave`], remembering a success.
    pub fn verify_leave(&self, leave: &Leave) -> Result<(), SignatureError> {
        self.verify(
            &leave.node,
            &leave.public_key,
            &leave_signed_bytes(leave),
            &leave.signature,
        )
    }

    /// [`super::verify_chat`], remembering a success.
    pub fn verify_chat(&self, chat: &ChatMessage) -> Result<(), SignatureError> {
        self.verify(
            &chat.from,
            &chat.from_key,
            &chat_signed_bytes(chat),
            &chat.signature,
        )
    }

    /// [`super::verify_receipt`], remembering a success.
    pub fn verify_receipt(&self, receipt: &ChatReceipt) -> Result<(), SignatureError> {
        self.verify(
            &receipt.recipient,
            &receipt.public_key,
            &receipt_signed_bytes(receipt),
            &receipt.signature,
        )
    }

    /// `identity`'s signed absence (see [`Identity::absence`]), remembered
    /// as verified: a node that answers its own lookup as the home does
    /// not verify what it has just signed.
    pub fn sign_absence(
        &self,
        identity: &Identity,
        about: u64,
        node: NodeId,
        reason: NotFoundReason,
    ) -> Absence {
        let absence = identity.absence(about, node, reason);
        self.insert(digest(
            &absence.by,
            &absence.public_key,
            &absence_signed_bytes(&absence),
            &absence.signature,
        ));
        absence
    }

    /// [`super::verify_absence`], remembering a success.
    pub fn verify_absence(&self, absence: &Absence) -> Result<(), SignatureError> {
        self.verify(
            &absence.by,
            &absence.public_key,
            &absence_signed_bytes(absence),
            &absence.signature,
        )
    }

    /// [`super::verify_stored`], remembering a success.
    pub fn verify_stored(&self, notice: &StoredNotice) -> Result<(), SignatureError> {
        self.verify(
            &notice.by,
            &notice.public_key,
            &stored_signed_bytes(notice),
            &notice.signature,
        )
    }

    /// [`super::verify_withdraw_lost`], remembering a success.
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
