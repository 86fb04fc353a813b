//! The routed envelope of protocol version 2: a fixed header, the routing
//! extensions, then the body as opaque bytes.
//!
//! A frame body carrying `Message::Routed` is laid out as (offsets from the
//! start of the frame body, after the 4-byte length prefix):
//!
//! | offset | bytes | field |
//! |---|---|---|
//! | 0 | 1 | message tag, 10 (`Routed`) |
//! | 1 | 32 | `dst` |
//! | 33 | 32 | `src` |
//! | 65 | 8 | `id`, u64 little-endian |
//! | 73 | 1 | `ttl` |
//! | 74 | 1 | `hops` |
//! | 75 | 1 | `flags`: bits 0-1 location hop (0 unused, 1 toward, 2 used), bit 2 trace present, bits 3-7 zero |
//! | 76 | 2 | body length, u16 little-endian |
//! | 78 | 0 or 32 | the location hop's target, when bits 0-1 are 1 |
//! | .. | 0 or 1 + 32n | the trace, when bit 2 is set: a count byte n (at most 32), then n node ids |
//! | .. | body length | the body: one bincode [`Body`] |
//!
//! and nothing after the body. A relay reads the header with
//! [`read_header`] and patches `ttl` and `hops` in place with
//! [`patch_ttl_hops`], without decoding the body.
//!
//! # Implementation notes
//! The header is fixed-width on purpose (no varints), so that its fields
//! sit at fixed offsets; everything in the body stays bincode.

use crate::codec::{self, DecodeError, EncodeError};
use crate::id::{MsgId, NodeId};
use crate::limits::{MAX_ROUTED_BODY, MAX_TRACE_HOPS};
use crate::message::{Body, LimitError, LocationHop, Packet, Trace};

/// The message tag of `Message::Routed`, the first byte of its frame body.
pub const ROUTED_TAG: u8 = 10;
/// Bytes of the fixed header, the tag included.
pub const HEADER_LEN: usize = 78;

const DST: usize = 1;
const SRC: usize = 33;
const ID: usize = 65;
const TTL: usize = 73;
const HOPS: usize = 74;
const FLAGS: usize = 75;
const BODY_LEN: usize = 76;

/// Flag bits of the location hop.
const LOCATION_MASK: u8 = 0b011;
/// Flag bit: a trace follows the header.
const TRACE_FLAG: u8 = 0b100;
/// Flag bits that must be zero.
const RESERVED_FLAGS: u8 = !(LOCATION_MASK | TRACE_FLAG);

/// What a relay reads of a routed frame without decoding its body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoutedHeader {
    /// The destination.
    pub dst: NodeId,
    /// The originating node.
    pub src: NodeId,
    /// The packet id.
    pub id: MsgId,
    /// Hops left.
    pub ttl: u8,
    /// Hops taken.
    pub hops: u8,
    /// Where the packet is in the location step.
    pub location: LocationHop,
    /// Node ids in the trace, if the packet carries one.
    pub trace_len: Option<usize>,
    /// Where the body starts in the frame body.
    pub body_start: usize,
    /// The body's length.
    pub body_len: usize,
}

fn id_at(bytes: &[u8], at: usize) -> NodeId {
    NodeId(
        bytes[at..at + 32]
            .try_into()
            .expect("callers check the length first"),
    )
}

/// Reads the header of a routed frame body (the bytes after the length
/// prefix), checking that its extensions and body fill the frame exactly.
pub fn read_header(frame_body: &[u8]) -> Result<RoutedHeader, DecodeError> {
    match frame_body.first() {
        None => return Err(DecodeError::Truncated),
        Some(&ROUTED_TAG) => {}
        Some(tag) => {
            return Err(DecodeError::UnknownTag(format!(
                "message tag {tag} is not a routed packet ({ROUTED_TAG})"
            )))
        }
    }
    if frame_body.len() < HEADER_LEN {
        return Err(DecodeError::Truncated);
    }
    let flags = frame_body[FLAGS];
    if flags & RESERVED_FLAGS != 0 {
        return Err(DecodeError::Malformed(format!(
            "routed flags {flags:#04x} set reserved bits"
        )));
    }
    let mut at = HEADER_LEN;
    let location = match flags & LOCATION_MASK {
        0 => LocationHop::Unused,
        1 => {
            let target = frame_body.get(at..at + 32).ok_or(DecodeError::Truncated)?;
            at += 32;
            LocationHop::Toward(NodeId(target.try_into().expect("32 bytes")))
        }
        2 => LocationHop::Used,
        _ => {
            return Err(DecodeError::UnknownTag(
                "location hop 3 (known: 0..3)".into(),
            ))
        }
    };
    let trace_len = if flags & TRACE_FLAG != 0 {
        let n = usize::from(*frame_body.get(at).ok_or(DecodeError::Truncated)?);
        if n > MAX_TRACE_HOPS {
            return Err(LimitError::TraceTooLong(n).into());
        }
        at += 1 + 32 * n;
        Some(n)
    } else {
        None
    };
    let body_len = usize::from(u16::from_le_bytes([
        frame_body[BODY_LEN],
        frame_body[BODY_LEN + 1],
    ]));
    let end = at + body_len;
    if frame_body.len() < end {
        return Err(DecodeError::Truncated);
    }
    if frame_body.len() > end {
        return Err(DecodeError::TrailingBytes(frame_body.len() - end));
    }
    Ok(RoutedHeader {
        dst: id_at(frame_body, DST),
        src: id_at(frame_body, SRC),
        id: MsgId(u64::from_le_bytes(
            frame_body[ID..ID + 8].try_into().expect("8 bytes"),
        )),
        ttl: frame_body[TTL],
        hops: frame_body[HOPS],
        location,
        trace_len,
        body_start: at,
        body_len,
    })
}

/// Sets `ttl` and `hops` of a routed frame body in place.
pub fn patch_ttl_hops(frame_body: &mut [u8], ttl: u8, hops: u8) -> Result<(), DecodeError> {
    match frame_body.first() {
        Some(&ROUTED_TAG) if frame_body.len() >= HEADER_LEN => {
            frame_body[TTL] = ttl;
            frame_body[HOPS] = hops;
            Ok(())
        }
        Some(&ROUTED_TAG) | None => Err(DecodeError::Truncated),
        Some(tag) => Err(DecodeError::UnknownTag(format!(
            "message tag {tag} is not a routed packet ({ROUTED_TAG})"
        ))),
    }
}

/// What a routed packet carries, read from the first byte of its body
/// (the bincode variant tag of [`Body`]) without decoding the rest: a relay
/// needs it for the sender's budget class and to tell packets routed to a
/// home by XOR distance alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyKind {
    /// `Body::Chat`.
    Chat,
    /// `Body::ChatAck`.
    ChatAck,
    /// `Body::NotFound`.
    NotFound,
    /// `Body::TraceProbe`.
    TraceProbe,
    /// `Body::TraceReply`.
    TraceReply,
    /// `Body::Publish`.
    Publish,
    /// `Body::Withdraw`.
    Withdraw,
    /// `Body::LocationQuery`.
    LocationQuery,
    /// `Body::LocationReply`.
    LocationReply,
    /// `Body::Datagram`.
    Datagram,
    /// `Body::NameClaim`.
    NameClaim,
    /// `Body::NameQuery`.
    NameQuery,
    /// `Body::NameReply`.
    NameReply,
    /// `Body::MailboxStore`.
    MailboxStore,
    /// `Body::MailboxStored`.
    MailboxStored,
    /// `Body::MailboxHandOver`.
    MailboxHandOver,
    /// `Body::MailboxTaken`.
    MailboxTaken,
    /// `Body::ReceiptStore`.
    ReceiptStore,
    /// `Body::ReceiptHandOver`.
    ReceiptHandOver,
}

impl BodyKind {
    /// The kinds in [`Body`]'s declaration order, which is the order of
    /// their tags on the wire.
    const BY_TAG: [BodyKind; 19] = [
        BodyKind::Chat,
        BodyKind::ChatAck,
        BodyKind::NotFound,
        BodyKind::TraceProbe,
        BodyKind::TraceReply,
        BodyKind::Publish,
        BodyKind::Withdraw,
        BodyKind::LocationQuery,
        BodyKind::LocationReply,
        BodyKind::Datagram,
        BodyKind::NameClaim,
        BodyKind::NameQuery,
        BodyKind::NameReply,
        BodyKind::MailboxStore,
        BodyKind::MailboxStored,
        BodyKind::MailboxHandOver,
        BodyKind::MailboxTaken,
        BodyKind::ReceiptStore,
        BodyKind::ReceiptHandOver,
    ];

    /// A short lowercase name, for counters and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            BodyKind::Chat => "chat",
            BodyKind::ChatAck => "chat_ack",
            BodyKind::NotFound => "not_found",
            BodyKind::TraceProbe => "trace_probe",
            BodyKind::TraceReply => "trace_reply",
            BodyKind::Publish => "publish",
            BodyKind::Withdraw => "withdraw",
            BodyKind::LocationQuery => "location_query",
            BodyKind::LocationReply => "location_reply",
            BodyKind::Datagram => "datagram",
            BodyKind::NameClaim => "name_claim",
            BodyKind::NameQuery => "name_query",
            BodyKind::NameReply => "name_reply",
            BodyKind::MailboxStore => "mailbox_store",
            BodyKind::MailboxStored => "mailbox_stored",
            BodyKind::MailboxHandOver => "mailbox_hand_over",
            BodyKind::MailboxTaken => "mailbox_taken",
            BodyKind::ReceiptStore => "receipt_store",
            BodyKind::ReceiptHandOver => "receipt_hand_over",
        }
    }

    /// The kind of a decoded body.
    pub fn of(body: &Body) -> BodyKind {
        match body {
            Body::Chat(_) => BodyKind::Chat,
            Body::ChatAck(_) => BodyKind::ChatAck,
            Body::NotFound(_) => BodyKind::NotFound,
            Body::TraceProbe { .. } => BodyKind::TraceProbe,
            Body::TraceReply { .. } => BodyKind::TraceReply,
            Body::Publish(_) => BodyKind::Publish,
            Body::Withdraw(_) => BodyKind::Withdraw,
            Body::LocationQuery { .. } => BodyKind::LocationQuery,
            Body::LocationReply { .. } => BodyKind::LocationReply,
            Body::Datagram(_) => BodyKind::Datagram,
            Body::NameClaim { .. } => BodyKind::NameClaim,
            Body::NameQuery { .. } => BodyKind::NameQuery,
            Body::NameReply { .. } => BodyKind::NameReply,
            Body::MailboxStore(_) => BodyKind::MailboxStore,
            Body::MailboxStored(_) => BodyKind::MailboxStored,
            Body::MailboxHandOver(_) => BodyKind::MailboxHandOver,
            Body::MailboxTaken { .. } => BodyKind::MailboxTaken,
            Body::ReceiptStore(_) => BodyKind::ReceiptStore,
            Body::ReceiptHandOver(_) => BodyKind::ReceiptHandOver,
        }
    }
}

/// The kind of the body of the routed frame body `frame_body`, whose header
/// is `h`; None if its tag names no body (decoding says why).
///
/// The tag is a varint; every tag below 251 is its one byte.
pub fn body_kind(frame_body: &[u8], h: &RoutedHeader) -> Option<BodyKind> {
    let tag = *frame_body.get(h.body_start)?;
    BodyKind::BY_TAG.get(usize::from(tag)).copied()
}

/// What a relay changes in a routed frame it forwards: hops left and
/// taken, and the location hop (which adds or removes the 32-byte target).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rewrite {
    /// Hops left.
    pub ttl: u8,
    /// Hops taken.
    pub hops: u8,
    /// The location hop.
    pub location: LocationHop,
}

/// The bytes of the location hop's target in a frame body whose header
/// was read, before any rewrite.
fn target_len(frame_body: &[u8]) -> usize {
    if frame_body[FLAGS] & LOCATION_MASK == 1 {
        32
    } else {
        0
    }
}

/// Bytes the routed frame body `frame_body` (its header read by
/// [`read_header`]) takes once `rw` is applied.
pub fn rewritten_len(frame_body: &[u8], rw: &Rewrite) -> usize {
    let target = if matches!(rw.location, LocationHop::Toward(_)) {
        32
    } else {
        0
    };
    frame_body.len() - target_len(frame_body) + target
}

/// Appends to `out` the whole frame (length prefix included) of the routed
/// frame body `frame_body`, whose header [`read_header`] read, with `rw`
/// applied: the trace and the body are copied as they are, never decoded.
/// The caller checks [`rewritten_len`] against [`crate::MAX_FRAME_BODY`]
/// first.
pub fn append_rewritten(frame_body: &[u8], rw: &Rewrite, out: &mut Vec<u8>) {
    let len = rewritten_len(frame_body, rw);
    debug_assert!(len <= crate::MAX_FRAME_BODY);
    let rest = HEADER_LEN + target_len(frame_body);
    let (location_bits, target) = match rw.location {
        LocationHop::Unused => (0, None),
        LocationHop::Toward(t) => (1, Some(t)),
        LocationHop::Used => (2, None),
    };
    out.reserve(crate::FRAME_HEADER_LEN + len);
    out.extend_from_slice(&(len as u32).to_be_bytes());
    let start = out.len();
    out.extend_from_slice(&frame_body[..HEADER_LEN]);
    out[start + TTL] = rw.ttl;
    out[start + HOPS] = rw.hops;
    out[start + FLAGS] = (frame_body[FLAGS] & !LOCATION_MASK) | location_bits;
    if let Some(t) = target {
        out.extend_from_slice(&t.0);
    }
    out.extend_from_slice(&frame_body[rest..]);
}

/// Appends the frame body of `Message::Routed(p)` to `out`.
pub(crate) fn encode_packet(p: &Packet, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let start = out.len();
    out.push(ROUTED_TAG);
    out.extend_from_slice(&p.dst.0);
    out.extend_from_slice(&p.src.0);
    out.extend_from_slice(&p.id.0.to_le_bytes());
    out.push(p.ttl);
    out.push(p.hops);
    let mut flags = match p.location {
        LocationHop::Unused => 0,
        LocationHop::Toward(_) => 1,
        LocationHop::Used => 2,
    };
    if p.trace.is_some() {
        flags |= TRACE_FLAG;
    }
    out.push(flags);
    out.extend_from_slice(&[0, 0]);
    if let LocationHop::Toward(target) = p.location {
        out.extend_from_slice(&target.0);
    }
    if let Some(trace) = &p.trace {
        let n = u8::try_from(trace.0.len())
            .ok()
            .filter(|n| usize::from(*n) <= MAX_TRACE_HOPS)
            .ok_or(LimitError::TraceTooLong(trace.0.len()));
        let n = match n {
            Ok(n) => n,
            Err(e) => {
                out.truncate(start);
                return Err(e.into());
            }
        };
        out.push(n);
        for hop in &trace.0 {
            out.extend_from_slice(&hop.0);
        }
    }
    let body_start = out.len();
    codec::encode_fields(&p.body, out);
    let body_len = out.len() - body_start;
    let Ok(len) = u16::try_from(body_len) else {
        out.truncate(start);
        return Err(LimitError::RoutedBodyTooLong(body_len).into());
    };
    debug_assert!(body_len <= MAX_ROUTED_BODY);
    out[start + BODY_LEN..start + BODY_LEN + 2].copy_from_slice(&len.to_le_bytes());
    Ok(())
}

/// Decodes the frame body of a routed packet.
pub(crate) fn decode_packet(frame_body: &[u8]) -> Result<Packet, DecodeError> {
    let h = read_header(frame_body)?;
    let trace = h.trace_len.map(|n| {
        let first = h.body_start - 32 * n;
        Trace((0..n).map(|i| id_at(frame_body, first + 32 * i)).collect())
    });
    let body: Body = codec::decode_fields(&frame_body[h.body_start..])?;
    Ok(Packet {
        dst: h.dst,
        src: h.src,
        id: h.id,
        ttl: h.ttl,
        hops: h.hops,
        location: h.location,
        trace,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{decode_body, encode};
    use crate::message::Message;
    use crate::FRAME_HEADER_LEN;

    fn packet(location: LocationHop, trace: Option<Trace>) -> Packet {
        Packet {
            dst: NodeId([1; 32]),
            src: NodeId([2; 32]),
            id: MsgId(0x0102_0304_0506_0708),
            ttl: 32,
            hops: 0,
            location,
            trace,
            body: Body::TraceProbe { probe_id: 77 },
        }
    }

    #[test]
    fn a_relay_patches_ttl_and_hops_without_decoding_the_body() {
        for (location, trace) in [
            (LocationHop::Unused, None),
            (
                LocationHop::Toward(NodeId([3; 32])),
                Some(Trace(vec![NodeId([4; 32]); 2])),
            ),
            (LocationHop::Used, Some(Trace(vec![]))),
        ] {
            let p = packet(location, trace.clone());
            let frame = encode(&Message::Routed(p.clone())).expect("encodes");
            let mut body = frame[FRAME_HEADER_LEN..].to_vec();
            let h = read_header(&body).expect("a routed frame");
            assert_eq!((h.dst, h.src, h.id), (p.dst, p.src, p.id));
            assert_eq!((h.ttl, h.hops, h.location), (32, 0, location));
            assert_eq!(h.trace_len, trace.as_ref().map(|t| t.0.len()));
            assert_eq!(h.body_start + h.body_len, body.len());
            patch_ttl_hops(&mut body, 31, 1).expect("patches");
            let Message::Routed(q) = decode_body(&body).expect("still valid") else {
                panic!("a routed frame decodes as routed");
            };
            assert_eq!(
                q,
                Packet {
                    ttl: 31,
                    hops: 1,
                    ..p
                }
            );
        }
    }

    #[test]
    fn header_errors_name_what_is_wrong() {
        let frame = encode(&Message::Routed(packet(LocationHop::Unused, None))).expect("ok");
        let body = &frame[FRAME_HEADER_LEN..];
        assert_eq!(
            read_header(&body[..HEADER_LEN - 1]),
            Err(DecodeError::Truncated)
        );
        assert_eq!(
            read_header(&body[..body.len() - 1]),
            Err(DecodeError::Truncated)
        );
        let mut longer = body.to_vec();
        longer.push(0);
        assert_eq!(read_header(&longer), Err(DecodeError::TrailingBytes(1)));
        let mut reserved = body.to_vec();
        reserved[FLAGS] |= 0x80;
        assert!(matches!(
            read_header(&reserved),
            Err(DecodeError::Malformed(_))
        ));
        let mut bad_location = body.to_vec();
        bad_location[FLAGS] |= 3;
        assert!(matches!(
            read_header(&bad_location),
            Err(DecodeError::UnknownTag(_))
        ));
        let hb = encode(&Message::Heartbeat(crate::message::Heartbeat { nonce: 1 })).expect("ok");
        let mut hb = hb[FRAME_HEADER_LEN..].to_vec();
        assert!(matches!(read_header(&hb), Err(DecodeError::UnknownTag(_))));
        assert!(matches!(
            patch_ttl_hops(&mut hb, 1, 1),
            Err(DecodeError::UnknownTag(_))
        ));
    }
}
