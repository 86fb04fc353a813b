//! A decoder for the frames a relay sees most, routed chat and chat-ack
//! packets, that reads the fixed arrays (ids, key, signature) in bulk.
//!
//! # Implementation notes
//! - serde reads a `[u8; 32]` through its tuple visitor one byte at a time,
//!   which was a fifth of a supernode's CPU per relayed 128-byte chat frame
//!   (BENCHMARKS.md, Relay). This reads the same bincode layout (varint
//!   integers as bincode 1.3.3 reads them, raw `u8`s, `u8` option tags) by
//!   hand.
//! - It only ever says "I decoded exactly this" or "not mine": on anything
//!   else (another message or body kind, an unknown tag, a bad varint
//!   marker, invalid UTF-8, a bound broken, trailing bytes) it returns
//!   `None` and [`crate::codec::decode_body`] goes through serde, so every
//!   error keeps the one path and its exact wording.

use crate::bounded::Signature;
use crate::id::{MsgId, NodeId};
use crate::limits::MAX_TRACE_HOPS;
use crate::message::{Body, ChatMessage, LocationHop, Message, Packet, Trace};

/// The bincode variant index of `Message::Routed`.
const ROUTED: u64 = 10;

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = rest;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    /// A bincode 1.3.3 varint: one byte up to 250, else a marker (251, 252,
    /// 253) and a little-endian u16, u32 or u64.
    fn varint(&mut self) -> Option<u64> {
        let width = match self.u8()? {
            b @ 0..=250 => return Some(u64::from(b)),
            251 => 2,
            252 => 4,
            253 => 8,
            _ => return None,
        };
        let mut le = [0u8; 8];
        le[..width].copy_from_slice(self.take(width)?);
        Some(u64::from_le_bytes(le))
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    fn id(&mut self) -> Option<NodeId> {
        self.array().map(NodeId)
    }
}

/// Decodes a whole frame body if it is a routed chat or chat-ack packet;
/// `None` leaves it to serde.
pub(crate) fn decode_routed(body: &[u8]) -> Option<Message> {
    let mut r = Reader(body);
    if r.varint()? != ROUTED {
        return None;
    }
    let dst = r.id()?;
    let src = r.id()?;
    let id = MsgId(r.varint()?);
    let ttl = r.u8()?;
    let hops = r.u8()?;
    let location = match r.varint()? {
        0 => LocationHop::Unused,
        1 => LocationHop::Toward(r.id()?),
        2 => LocationHop::Used,
        _ => return None,
    };
    let trace = match r.u8()? {
        0 => None,
        1 => {
            let len = usize::try_from(r.varint()?).ok()?;
            if len > MAX_TRACE_HOPS {
                return None;
            }
            let mut ids = Vec::with_capacity(len);
            for _ in 0..len {
                ids.push(r.id()?);
            }
            Some(Trace(ids))
        }
        _ => return None,
    };
    let body = match r.varint()? {
        0 => {
            let from = r.id()?;
            let from_key = r.array()?;
            let to = r.id()?;
            let msg_id = MsgId(r.varint()?);
            let seq = r.varint()?;
            let sent_at = r.varint()?;
            let len = usize::try_from(r.varint()?).ok()?;
            let text = std::str::from_utf8(r.take(len)?).ok()?.to_owned();
            let signature = Signature(r.array()?);
            Body::Chat(ChatMessage {
                from,
                from_key,
                to,
                msg_id,
                seq,
                sent_at,
                body: text,
                signature,
            })
        }
        1 => Body::ChatAck {
            msg_id: MsgId(r.varint()?),
            seq: r.varint()?,
            hops: r.u8()?,
        },
        _ => return None,
    };
    if !r.0.is_empty() {
        return None;
    }
    let msg = Message::Routed(Packet {
        dst,
        src,
        id,
        ttl,
        hops,
        location,
        trace,
        body,
    });
    msg.validate().ok()?;
    Some(msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{encode, serde_decode_body};
    use crate::sign::Identity;
    use crate::FRAME_HEADER_LEN;
    use proptest::prelude::*;

    fn packet(text: String, ack: bool, loc: u8, trace: Option<u8>, n: u64) -> Message {
        let a = Identity::from_secret([1; 32]);
        let b = Identity::from_secret([2; 32]);
        let body = if ack {
            Body::ChatAck {
                msg_id: MsgId(n),
                seq: n / 3,
                hops: 7,
            }
        } else {
            Body::Chat(
                a.chat(b.id(), MsgId(n), n % 1000, n, text)
                    .expect("short body"),
            )
        };
        Message::Routed(Packet {
            dst: b.id(),
            src: a.id(),
            id: MsgId(n.rotate_left(17)),
            ttl: 32,
            hops: 3,
            location: match loc % 3 {
                0 => LocationHop::Unused,
                1 => LocationHop::Toward(b.id()),
                _ => LocationHop::Used,
            },
            trace: trace.map(|k| Trace(vec![a.id(); usize::from(k) % (MAX_TRACE_HOPS + 1)])),
            body,
        })
    }

    proptest! {
        /// Whatever the fast path decodes, serde decodes the same way.
        #[test]
        fn agrees_with_serde(
            text in "\\PC{0,300}",
            ack: bool,
            loc: u8,
            trace: Option<u8>,
            n: u64,
            cut in 0usize..2000,
            flip in 0usize..2000,
        ) {
            let msg = packet(text, ack, loc, trace, n);
            let frame = encode(&msg).expect("valid");
            let body = &frame[FRAME_HEADER_LEN..];
            prop_assert_eq!(decode_routed(body), Some(msg));
            // Cut or corrupted: either not ours, or exactly what serde says.
            let cut = &body[..cut.min(body.len())];
            if let Some(m) = decode_routed(cut) {
                prop_assert_eq!(serde_decode_body(cut).ok(), Some(m));
            }
            let mut bad = body.to_vec();
            let i = flip % bad.len();
            bad[i] ^= 0xa5;
            if let Some(m) = decode_routed(&bad) {
                prop_assert_eq!(serde_decode_body(&bad).ok(), Some(m));
            }
        }
    }

    #[test]
    fn leaves_other_messages_to_serde() {
        let msg = Message::Heartbeat(crate::message::Heartbeat { nonce: 5 });
        let frame = encode(&msg).expect("valid");
        assert_eq!(decode_routed(&frame[FRAME_HEADER_LEN..]), None);
    }
}
