//! Node identities and the XOR metric.
//!
//! A [`NodeId`] is the SHA-256 of a libp2p `PeerId`'s bytes. Distance is XOR,
//! compared as a big-endian 256-bit number, so `Distance`'s derived ordering
//! (lexicographic over the bytes) is the numeric ordering.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Bytes in a [`NodeId`].
pub const NODE_ID_LEN: usize = 32;

/// A node's 256-bit overlay identifier: SHA-256 of its PeerId bytes.
///
/// On the wire (bincode) it is 32 raw bytes; in human-readable formats such
/// as JSON and TOML it is the 64-character hex string people see everywhere
/// else.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct NodeId(pub [u8; NODE_ID_LEN]);

/// The four big-endian 64-bit words of 32 bytes: comparing them in order is
/// comparing the bytes lexicographically, without a `memcmp` call per
/// comparison (ids are compared in every map lookup of the core).
fn words(b: &[u8; NODE_ID_LEN]) -> [u64; 4] {
    let w = |i: usize| {
        let mut x = [0u8; 8];
        x.copy_from_slice(&b[i * 8..i * 8 + 8]);
        u64::from_be_bytes(x)
    };
    [w(0), w(1), w(2), w(3)]
}

impl Ord for NodeId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        words(&self.0).cmp(&words(&other.0))
    }
}

impl PartialOrd for NodeId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl std::hash::Hash for NodeId {
    /// Ids are SHA-256 outputs, so their first eight bytes are already
    /// uniform; hashing those alone keeps map lookups cheap.
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(words(&self.0)[0]);
    }
}

impl Serialize for NodeId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(&self.to_hex())
        } else {
            self.0.serialize(serializer)
        }
    }
}

impl<'de> Deserialize<'de> for NodeId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<NodeId, D::Error> {
        if deserializer.is_human_readable() {
            let text = String::deserialize(deserializer)?;
            text.parse().map_err(serde::de::Error::custom)
        } else {
            <[u8; NODE_ID_LEN]>::deserialize(deserializer).map(NodeId)
        }
    }
}

/// The XOR distance between two [`NodeId`]s; smaller is closer.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Distance(pub [u8; NODE_ID_LEN]);

impl Ord for Distance {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        words(&self.0).cmp(&words(&other.0))
    }
}

impl PartialOrd for Distance {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// Why a string is not a [`NodeId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseNodeIdError {
    /// The string is not 64 characters long.
    #[error("node id must be 64 hex characters, got {0}")]
    WrongLength(usize),
    /// A character is not a hex digit.
    #[error("node id has a non-hex character {ch:?} at position {position}")]
    NotHex {
        /// The offending character.
        ch: char,
        /// Its index in the string.
        position: usize,
    },
}

impl NodeId {
    /// The id of the libp2p peer whose `PeerId::to_bytes()` are `peer_id_bytes`.
    pub fn from_peer_id_bytes(peer_id_bytes: &[u8]) -> NodeId {
        NodeId(Sha256::digest(peer_id_bytes).into())
    }

    /// The id of a libp2p peer.
    pub fn from_peer_id(peer: &libp2p_identity::PeerId) -> NodeId {
        NodeId::from_peer_id_bytes(&peer.to_bytes())
    }

    /// The id belonging to a raw ed25519 public key.
    pub fn from_ed25519(public_key: &[u8; 32]) -> Option<NodeId> {
        let key = libp2p_identity::ed25519::PublicKey::try_from_bytes(public_key).ok()?;
        let peer = libp2p_identity::PublicKey::from(key).to_peer_id();
        Some(NodeId::from_peer_id(&peer))
    }

    /// XOR distance to `other`.
    pub fn distance(&self, other: &NodeId) -> Distance {
        let mut d = [0u8; NODE_ID_LEN];
        for (i, byte) in d.iter_mut().enumerate() {
            *byte = self.0[i] ^ other.0[i];
        }
        Distance(d)
    }

    /// The k-bucket `other` falls in as seen from `self`: the index of the
    /// highest differing bit (255 for the far half of the space, 0 for the
    /// nearest neighbor), or `None` when they are equal.
    pub fn bucket_index(&self, other: &NodeId) -> Option<usize> {
        self.distance(other).bucket_index()
    }

    /// True when `self` is strictly closer to `target` than `other` is.
    pub fn closer_to(&self, target: &NodeId, other: &NodeId) -> bool {
        self.distance(target) < other.distance(target)
    }

    /// The first 8 hex characters, for logs and prompts.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..4])
    }

    /// Full lowercase hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl Distance {
    /// Index of the highest set bit (0..=255), `None` for zero distance.
    pub fn bucket_index(&self) -> Option<usize> {
        let first = self.0.iter().position(|b| *b != 0)?;
        let bit = 7 - self.0[first].leading_zeros() as usize;
        Some((NODE_ID_LEN - 1 - first) * 8 + bit)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({})", self.short())
    }
}

impl FromStr for NodeId {
    type Err = ParseNodeIdError;

    fn from_str(s: &str) -> Result<NodeId, ParseNodeIdError> {
        if let Some((position, ch)) = s.char_indices().find(|(_, c)| !c.is_ascii_hexdigit()) {
            return Err(ParseNodeIdError::NotHex { ch, position });
        }
        if s.len() != NODE_ID_LEN * 2 {
            return Err(ParseNodeIdError::WrongLength(s.len()));
        }
        let mut id = [0u8; NODE_ID_LEN];
        hex::decode_to_slice(s, &mut id).map_err(|_| ParseNodeIdError::WrongLength(s.len()))?;
        Ok(NodeId(id))
    }
}

/// A random 64-bit identifier of a message or request, chosen by its sender.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
pub struct MsgId(pub u64);

impl fmt::Display for MsgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(first: u8, last: u8) -> NodeId {
        let mut b = [0u8; 32];
        b[0] = first;
        b[31] = last;
        NodeId(b)
    }

    #[test]
    fn hex_round_trip_and_errors() {
        let a = id(0xab, 0x01);
        assert_eq!(a.to_string().parse::<NodeId>(), Ok(a));
        assert_eq!(
            "abc".parse::<NodeId>(),
            Err(ParseNodeIdError::WrongLength(3))
        );
        let bad = format!("{}z", "0".repeat(63));
        assert_eq!(
            bad.parse::<NodeId>(),
            Err(ParseNodeIdError::NotHex {
                ch: 'z',
                position: 63
            })
        );
    }

    #[test]
    fn json_shows_hex_while_the_wire_keeps_raw_bytes() {
        let a = id(0xab, 0x01);
        let json = serde_json::to_string(&a).expect("serializes");
        assert_eq!(json, format!("\"{a}\""));
        assert_eq!(serde_json::from_str::<NodeId>(&json).expect("parses"), a);
        assert!(serde_json::from_str::<NodeId>("\"zz\"").is_err());
        let wire = crate::codec::encode(&crate::Message::StaleLocation(crate::StaleLocation {
            node: a,
        }))
        .expect("encodes");
        assert_eq!(wire.len(), 4 + 1 + 32, "tag then 32 raw bytes");
    }

    #[test]
    fn bucket_index_is_highest_differing_bit() {
        let zero = NodeId([0; 32]);
        assert_eq!(zero.bucket_index(&zero), None);
        assert_eq!(zero.bucket_index(&id(0x80, 0)), Some(255));
        assert_eq!(zero.bucket_index(&id(0x01, 0)), Some(248));
        assert_eq!(zero.bucket_index(&id(0, 1)), Some(0));
    }

    #[test]
    fn distance_orders_numerically() {
        let t = NodeId([0; 32]);
        assert!(id(0, 5).closer_to(&t, &id(1, 0)));
        assert!(!id(1, 0).closer_to(&t, &id(1, 0)));
    }

    #[test]
    fn ordering_is_the_byte_order() {
        // Ids that differ in one byte at every position, both ways.
        let mut ids = Vec::new();
        for pos in 0..32 {
            for v in [0u8, 1, 0x7f, 0x80, 0xff] {
                let mut b = [0x55u8; 32];
                b[pos] = v;
                ids.push(b);
            }
        }
        for a in &ids {
            for b in &ids {
                assert_eq!(NodeId(*a).cmp(&NodeId(*b)), a.cmp(b));
                assert_eq!(Distance(*a).cmp(&Distance(*b)), a.cmp(b));
            }
        }
    }
}
