//! End-to-end encryption of chat messages to their recipient.
//!
//! A chat is sealed with the one-way Noise pattern `N`
//! (`Noise_N_25519_ChaChaPoly_SHA256`, Noise specification revision 34, §7.4):
//! the sender knows the recipient's static X25519 key (its [`ChatKey`], from
//! the recipient's signed location record) and writes the one handshake
//! message `-> e, es` with the signed [`ChatMessage`] as its payload. On the
//! wire that is the sender's 32-byte ephemeral public key followed by the
//! encrypted payload and its 16-byte tag. The prologue is [`PROLOGUE`].
//!
//! The author's ed25519 signature is inside the encryption: a relay sees the
//! routing header and the sealed length, nothing else; the recipient opens
//! the message and then verifies the signature as for any chat.
//!
//! # Implementation notes
//! - The crate is `snow`, which libp2p's Noise transport already builds.
//! - The ephemeral secret is the caller's 32 bytes, not the OS's: the core
//!   draws it from its seeded RNG, so that a simulation stays reproducible
//!   and golden vectors can be checked byte for byte. A caller must never
//!   use the same 32 bytes twice.
//! - What `N` does not give: forward secrecy against a later theft of the
//!   recipient's static key, and sender authentication (the signature inside
//!   provides the latter).

use std::sync::LazyLock;

use curve25519_dalek::montgomery::MontgomeryPoint;
use snow::params::NoiseParams;
use snow::resolvers::{CryptoResolver, DefaultResolver};
use snow::types::{Cipher, Dh, Hash, Random};

use crate::codec;
use crate::message::{ChatKey, ChatMessage, SealedChat};

/// The Noise protocol name of a sealed chat.
pub const NOISE_PARAMS: &str = "Noise_N_25519_ChaChaPoly_SHA256";

/// The Noise prologue of a sealed chat.
pub const PROLOGUE: &[u8] = b"skyhop/2 sealed-chat";

/// Bytes a sealed chat adds to its plaintext: the ephemeral key and the tag.
pub const SEAL_OVERHEAD: usize = 32 + 16;

static PARAMS: LazyLock<NoiseParams> = LazyLock::new(|| {
    NOISE_PARAMS
        .parse()
        .expect("the protocol name is a valid Noise name")
});

/// Why a chat could not be sealed or opened.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// The recipient's chat key is not a usable X25519 key.
    #[error("the recipient's chat key is not usable: {0}")]
    BadKey(String),
    /// The sealed bytes do not decrypt with this node's key: sealed to
    /// another node, or damaged.
    #[error("sealed chat does not open with this node's key")]
    DoesNotOpen,
    /// The bytes decrypt but are not a chat message.
    #[error("sealed chat holds no valid chat message: {0}")]
    Malformed(String),
}

/// Random bytes for snow: the caller's 32 ephemeral-secret bytes, once.
struct GivenBytes(Option<[u8; 32]>);

impl Random for GivenBytes {
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), snow::Error> {
        match self.0.take() {
            Some(bytes) if dest.len() == bytes.len() => {
                dest.copy_from_slice(&bytes);
                Ok(())
            }
            _ => Err(snow::Error::Rng),
        }
    }
}

/// snow's default primitives, with the ephemeral secret given by the caller
/// (sealing) or the recipient's key pair (opening).
struct Resolver {
    /// The ephemeral secret, when sealing.
    ephemeral: Option<[u8; 32]>,
    /// The recipient's chat secret and its public key, when opening.
    own: Option<([u8; 32], ChatKey)>,
}

impl CryptoResolver for Resolver {
    fn resolve_rng(&self) -> Option<Box<dyn Random>> {
        Some(Box::new(GivenBytes(self.ephemeral)))
    }
    fn resolve_dh(&self, choice: &snow::params::DHChoice) -> Option<Box<dyn Dh>> {
        match (self.own, choice) {
            (Some(own), snow::params::DHChoice::Curve25519) => Some(Box::new(KnownKeyDh {
                known: own,
                privkey: [0; 32],
                pubkey: [0; 32],
            })),
            _ => DefaultResolver.resolve_dh(choice),
        }
    }
    fn resolve_hash(&self, choice: &snow::params::HashChoice) -> Option<Box<dyn Hash>> {
        DefaultResolver.resolve_hash(choice)
    }
    fn resolve_cipher(&self, choice: &snow::params::CipherChoice) -> Option<Box<dyn Cipher>> {
        DefaultResolver.resolve_cipher(choice)
    }
}

/// The X25519 public key of `secret`.
pub fn chat_public_key(secret: &[u8; 32]) -> ChatKey {
    let mut dh = DefaultResolver
        .resolve_dh(&snow::params::DHChoice::Curve25519)
        .expect("snow's default resolver has X25519");
    dh.set(secret);
    dh.pubkey()
        .try_into()
        .expect("an X25519 public key is 32 bytes")
}

/// X25519 as snow's default does it (curve25519-dalek, clamped scalars),
/// except that setting the recipient's own secret takes its public key
/// from the key pair instead of recomputing it: that base-point
/// multiplication was about a fifth of the recipient's CPU per chat.
/// Any other secret (none in pattern `N`'s responder) is derived as usual.
struct KnownKeyDh {
    /// The recipient's chat secret and its public key.
    known: ([u8; 32], ChatKey),
    privkey: [u8; 32],
    pubkey: [u8; 32],
}

impl KnownKeyDh {
    fn derive_pubkey(&mut self) {
        self.pubkey = if self.privkey == self.known.0 {
            self.known.1
        } else {
            MontgomeryPoint::mul_base_clamped(self.privkey).to_bytes()
        };
    }
}

impl Dh for KnownKeyDh {
    fn name(&self) -> &'static str {
        "25519"
    }
    fn pub_len(&self) -> usize {
        32
    }
    fn priv_len(&self) -> usize {
        32
    }
    fn set(&mut self, privkey: &[u8]) {
        // snow passes `priv_len()` bytes.
        let n = privkey.len().min(32);
        self.privkey = [0; 32];
        self.privkey[..n].copy_from_slice(&privkey[..n]);
        self.derive_pubkey();
    }
    fn generate(&mut self, rng: &mut dyn Random) -> Result<(), snow::Error> {
        rng.try_fill_bytes(&mut self.privkey)?;
        self.derive_pubkey();
        Ok(())
    }
    fn pubkey(&self) -> &[u8] {
        &self.pubkey
    }
    fn privkey(&self) -> &[u8] {
        &self.privkey
    }
    fn dh(&self, pubkey: &[u8], out: &mut [u8]) -> Result<(), snow::Error> {
        let point: [u8; 32] = pubkey
            .get(..32)
            .and_then(|p| p.try_into().ok())
            .ok_or(snow::Error::Dh)?;
        let shared = MontgomeryPoint(point).mul_clamped(self.privkey).to_bytes();
        out.get_mut(..32)
            .ok_or(snow::Error::Dh)?
            .copy_from_slice(&shared);
        Ok(())
    }
}

/// Seals the signed `chat` to `recipient`'s chat key, with `ephemeral` as
/// the ephemeral secret key (32 fresh random bytes, never reused).
pub fn seal(
    chat: &ChatMessage,
    recipient: &ChatKey,
    ephemeral: [u8; 32],
) -> Result<SealedChat, SealError> {
    let mut plaintext = Vec::with_capacity(128 + chat.body.len());
    codec::encode_fields(chat, &mut plaintext);
    let mut noise = snow::Builder::with_resolver(
        PARAMS.clone(),
        Box::new(Resolver {
            ephemeral: Some(ephemeral),
            own: None,
        }),
    )
    .prologue(PROLOGUE)
    .and_then(|b| b.remote_public_key(recipient))
    .and_then(|b| b.build_initiator())
    .map_err(|e| SealError::BadKey(e.to_string()))?;
    let mut out = vec![0u8; plaintext.len() + SEAL_OVERHEAD];
    let len = noise
        .write_message(&plaintext, &mut out)
        .map_err(|e| SealError::BadKey(e.to_string()))?;
    out.truncate(len);
    Ok(SealedChat(out))
}

/// Opens `sealed` with the recipient's chat secret key and its public key
/// (`public` must be [`chat_public_key`] of `secret`; the key pair keeps
/// it): the signed message, not yet verified.
pub(crate) fn open(
    secret: &[u8; 32],
    public: &ChatKey,
    sealed: &SealedChat,
) -> Result<ChatMessage, SealError> {
    if sealed.0.len() < SEAL_OVERHEAD {
        return Err(SealError::DoesNotOpen);
    }
    let resolver = Resolver {
        ephemeral: None,
        own: Some((*secret, *public)),
    };
    let mut noise = snow::Builder::with_resolver(PARAMS.clone(), Box::new(resolver))
        .prologue(PROLOGUE)
        .and_then(|b| b.local_private_key(secret))
        .and_then(|b| b.build_responder())
        .map_err(|e| SealError::Malformed(e.to_string()))?;
    let mut plaintext = vec![0u8; sealed.0.len()];
    let len = noise
        .read_message(&sealed.0, &mut plaintext)
        .map_err(|_| SealError::DoesNotOpen)?;
    plaintext.truncate(len);
    codec::decode_fields::<ChatMessage>(&plaintext)
        .map_err(|e| SealError::Malformed(e.to_string()))
        .and_then(|chat| {
            crate::message::check_chat_text(&chat)
                .map_err(|e| SealError::Malformed(e.to_string()))?;
            Ok(chat)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::{MsgId, NodeId};
    use crate::sign::{verify_chat, Identity};

    #[test]
    fn only_the_recipient_opens_a_sealed_chat_and_relays_see_no_text() {
        let alice = Identity::from_secret([1; 32]);
        let bob = Identity::from_secret([2; 32]);
        let carol = Identity::from_secret([3; 32]);
        let text = "meet me at the usual place";
        let chat = alice
            .chat(bob.id(), MsgId(7), 1, 99, text.into())
            .expect("short text");
        let sealed = seal(&chat, &bob.chat_key(), [9; 32]).expect("bob's key is valid");
        assert_eq!(sealed.0.len(), {
            let mut p = Vec::new();
            codec::encode_fields(&chat, &mut p);
            p.len() + SEAL_OVERHEAD
        });
        assert!(
            !sealed
                .0
                .windows(4)
                .any(|w| text.as_bytes().windows(4).any(|t| t == w)),
            "no four bytes of the text appear in the sealed chat"
        );
        let opened = bob.open_chat(&sealed).expect("sealed to bob");
        assert_eq!(opened, chat);
        assert_eq!(verify_chat(&opened), Ok(()));
        assert_eq!(carol.open_chat(&sealed), Err(SealError::DoesNotOpen));
        let mut damaged = sealed.clone();
        let last = damaged.0.len() - 1;
        damaged.0[last] ^= 1;
        assert_eq!(bob.open_chat(&damaged), Err(SealError::DoesNotOpen));
        assert_eq!(
            bob.open_chat(&SealedChat(vec![0; 10])),
            Err(SealError::DoesNotOpen)
        );
    }

    #[test]
    fn sealing_is_deterministic_in_the_ephemeral_key() {
        let alice = Identity::from_secret([1; 32]);
        let bob = Identity::from_secret([2; 32]);
        let chat = alice
            .chat(bob.id(), MsgId(1), 1, 0, "hi".into())
            .expect("short");
        let a = seal(&chat, &bob.chat_key(), [5; 32]).expect("seals");
        let b = seal(&chat, &bob.chat_key(), [5; 32]).expect("seals");
        let c = seal(&chat, &bob.chat_key(), [6; 32]).expect("seals");
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(&a.0[..32], &chat_public_key(&[5; 32]));
    }

    #[test]
    fn opening_uses_the_key_pairs_public_key_instead_of_recomputing_it() {
        let alice = Identity::from_secret([1; 32]);
        let secret = [7; 32];
        let public = chat_public_key(&secret);
        let chat = alice
            .chat(NodeId([2; 32]), MsgId(1), 1, 0, "hi".into())
            .expect("short");
        let sealed = seal(&chat, &public, [5; 32]).expect("seals");
        assert_eq!(open(&secret, &public, &sealed), Ok(chat));
        // The responder's static key is hashed into the handshake, so a
        // wrong cached key shows: the chat no longer opens.
        let wrong = chat_public_key(&[8; 32]);
        assert_eq!(open(&secret, &wrong, &sealed), Err(SealError::DoesNotOpen));
    }

    #[test]
    fn the_known_key_dh_agrees_with_snows_for_any_other_secret() {
        let mut ours = KnownKeyDh {
            known: ([7; 32], chat_public_key(&[7; 32])),
            privkey: [0; 32],
            pubkey: [0; 32],
        };
        ours.set(&[9; 32]);
        assert_eq!(ours.pubkey(), &chat_public_key(&[9; 32]));
        let mut theirs = DefaultResolver
            .resolve_dh(&snow::params::DHChoice::Curve25519)
            .expect("snow has X25519");
        theirs.set(&[9; 32]);
        let peer = chat_public_key(&[3; 32]);
        let (mut a, mut b) = ([0u8; 32], [0u8; 32]);
        ours.dh(&peer, &mut a).expect("32 bytes");
        theirs.dh(&peer, &mut b).expect("32 bytes");
        assert_eq!(a, b);
    }
}
