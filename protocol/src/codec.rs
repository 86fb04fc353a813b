//! The frame codec: the only place that knows the wire encoding.
//!
//! A frame is a 4-byte big-endian body length followed by the body: one
//! [`Message`] in bincode 1.3.3 with varint integers, little-endian fixed
//! fields, a body of at most [`MAX_FRAME_BODY`] bytes, and trailing bytes
//! rejected. `Message::Routed` is the exception: its tag is followed by the
//! fixed-width envelope of [`crate::envelope`], whose body is bincode again.
//! [`encode_into`] appends whole frames to a caller's buffer (so a runtime
//! can coalesce many frames into one write); [`FrameDecoder`] takes bytes as
//! they arrive and yields messages.
//!
//! # Implementation notes
//! - Decoding never panics and never reserves more than the frame limit:
//!   the body is bounded by the frame header before bincode sees it,
//!   bincode's slice reader checks every string and byte-string length
//!   against the bytes left before allocating, and sequences are capped by
//!   `bounded::vec` while they decode. The byte limit is therefore the frame
//!   length itself rather than a bincode option, which would cost a check per
//!   field (and, when encoding, a whole sizing pass).
//! - The message tag and, for `Hello`, the version are read by hand before
//!   bincode runs, so that an unknown tag or version gets its own error.
//! - bincode is pinned to exactly 1.3.3; the one error string matched below
//!   (trailing bytes) is that version's, and a test pins it.

use bincode::Options;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::limits::{FRAME_HEADER_LEN, MAX_FRAME_BODY, PROTOCOL_VERSION};
use crate::message::{LimitError, Message};

/// Number of top-level [`Message`] variants; tags at or above are unknown.
pub const MESSAGE_TAGS: u32 = 17;

/// Why bytes are not a valid frame.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The length prefix announces a body over the limit.
    #[error("frame body of {len} bytes is too long (limit {MAX_FRAME_BODY})")]
    TooLong {
        /// The announced length.
        len: usize,
    },
    /// The body ended before the message did.
    #[error("frame is truncated: the message needs more bytes than the body has")]
    Truncated,
    /// A `Hello` with a protocol version this node does not speak.
    #[error(
        "peer speaks protocol version {got}, this node speaks {PROTOCOL_VERSION} only: one of them must be upgraded"
    )]
    UnknownVersion {
        /// The version received.
        got: u64,
    },
    /// An enum tag with no variant, in the message or a nested field.
    #[error("unknown tag: {0}")]
    UnknownTag(String),
    /// A field that is not valid for its type (bad UTF-8, a bool that is not
    /// 0 or 1, a sequence over its limit, a malformed varint).
    #[error("malformed field: {0}")]
    Malformed(String),
    /// The body has bytes left after the message.
    #[error("{0} trailing bytes after the message")]
    TrailingBytes(usize),
    /// The message decodes but breaks a wire limit.
    #[error("message breaks a limit: {0}")]
    Limit(#[from] LimitError),
}

/// Why a message cannot be encoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The message breaks a wire limit.
    #[error("message breaks a limit: {0}")]
    Limit(#[from] LimitError),
    /// The encoded body would exceed [`MAX_FRAME_BODY`].
    #[error("encoded body of {0} bytes exceeds the frame limit of {MAX_FRAME_BODY}")]
    TooLong(usize),
}

/// Decoding options. No bincode byte limit: the body is a slice already
/// bounded by [`MAX_FRAME_BODY`], and bincode's slice reader checks every
/// length against the bytes left before it allocates, so a limit would only
/// add a check per field.
fn options() -> impl Options {
    bincode::DefaultOptions::new()
        .with_varint_encoding()
        .with_little_endian()
        .reject_trailing_bytes()
}

/// Appends the wire encoding of `fields` (no frame header) to `out`; used for
/// signed bytes.
pub(crate) fn encode_fields<T: Serialize>(fields: &T, out: &mut Vec<u8>) {
    bincode::DefaultOptions::new()
        .with_varint_encoding()
        .with_little_endian()
        .serialize_into(out, fields)
        .expect("serializing plain fields into a Vec cannot fail");
}

/// Decodes `bytes` as exactly one `T` in the wire encoding (no frame
/// header): a routed packet's body, a sealed chat's plaintext.
pub(crate) fn decode_fields<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    options()
        .deserialize(bytes)
        .map_err(|e| match map_bincode(*e) {
            DecodeError::TrailingBytes(_) => {
                let mut reader = bytes;
                let left = match options()
                    .allow_trailing_bytes()
                    .deserialize_from::<_, T>(&mut reader)
                {
                    Ok(_) => reader.len(),
                    Err(_) => 0,
                };
                DecodeError::TrailingBytes(left)
            }
            other => other,
        })
}

/// Appends one whole frame carrying `msg` to `out`. On error `out` is left
/// as it was.
pub fn encode_into(msg: &Message, out: &mut Vec<u8>) -> Result<usize, EncodeError> {
    msg.validate()?;
    let start = out.len();
    out.extend_from_slice(&[0; FRAME_HEADER_LEN]);
    // Encoded without bincode's limit, which would cost a whole extra
    // sizing pass; validated messages are bounded, and the length is checked
    // right after.
    match msg {
        Message::Routed(p) => {
            if let Err(e) = crate::envelope::encode_packet(p, out) {
                out.truncate(start);
                return Err(e);
            }
        }
        _ => encode_fields(msg, out),
    }
    let body_len = out.len() - start - FRAME_HEADER_LEN;
    if body_len > MAX_FRAME_BODY {
        out.truncate(start);
        return Err(EncodeError::TooLong(body_len));
    }
    let header = u32::try_from(body_len).expect("the limit keeps the body under 4 GiB");
    out[start..start + FRAME_HEADER_LEN].copy_from_slice(&header.to_be_bytes());
    Ok(FRAME_HEADER_LEN + body_len)
}

/// One whole frame carrying `msg`.
pub fn encode(msg: &Message) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::with_capacity(128);
    encode_into(msg, &mut out)?;
    Ok(out)
}

/// The length of the frame that carries routed packet `p`, as [`encode`]
/// writes it (0 if it would not encode): for queues bounded in bytes.
pub fn packet_frame_len(p: &crate::Packet) -> usize {
    let mut out = Vec::new();
    match crate::envelope::encode_packet(p, &mut out) {
        Ok(()) => FRAME_HEADER_LEN + out.len(),
        Err(_) => 0,
    }
}

/// Reads a bincode varint (unsigned) at the start of `bytes`: the value and
/// its length, or `None` when truncated or malformed.
fn peek_varint(bytes: &[u8]) -> Option<(u64, usize)> {
    let (&first, rest) = bytes.split_first()?;
    let width = match first {
        0..=250 => return Some((u64::from(first), 1)),
        251 => 2,
        252 => 4,
        253 => 8,
        _ => return None,
    };
    let raw = rest.get(..width)?;
    let mut le = [0u8; 8];
    le[..width].copy_from_slice(raw);
    Some((u64::from_le_bytes(le), 1 + width))
}

fn map_bincode(err: bincode::ErrorKind) -> DecodeError {
    match err {
        bincode::ErrorKind::Io(_) => DecodeError::Truncated,
        bincode::ErrorKind::SizeLimit => DecodeError::Truncated,
        bincode::ErrorKind::InvalidUtf8Encoding(e) => {
            DecodeError::Malformed(format!("string is not UTF-8: {e}"))
        }
        bincode::ErrorKind::InvalidBoolEncoding(b) => {
            DecodeError::Malformed(format!("bool byte {b} is neither 0 nor 1"))
        }
        bincode::ErrorKind::InvalidTagEncoding(t) => {
            DecodeError::Malformed(format!("option tag {t} is neither 0 nor 1"))
        }
        bincode::ErrorKind::Custom(msg)
            if msg == "Slice had bytes remaining after deserialization" =>
        {
            DecodeError::TrailingBytes(1)
        }
        bincode::ErrorKind::Custom(msg) if msg.contains("variant index") => {
            DecodeError::UnknownTag(msg)
        }
        bincode::ErrorKind::Custom(msg)
            if msg.contains("extension point") || msg.contains("u128 range") =>
        {
            DecodeError::Malformed(
                "varint marker byte 254 or 255 (only 251, 252 and 253 announce a longer integer)"
                    .into(),
            )
        }
        other => DecodeError::Malformed(
            other
                .to_string()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" "),
        ),
    }
}

/// Decodes one frame body (without the length prefix).
pub fn decode_body(body: &[u8]) -> Result<Message, DecodeError> {
    if body.len() > MAX_FRAME_BODY {
        return Err(DecodeError::TooLong { len: body.len() });
    }
    // A tag or version that does not parse is left to bincode, which tells a
    // cut-off varint (truncated) from an invalid marker byte (malformed).
    if let Some((tag, tag_len)) = peek_varint(body) {
        if tag >= u64::from(MESSAGE_TAGS) {
            return Err(DecodeError::UnknownTag(format!(
                "message tag {tag} (known: 0..{MESSAGE_TAGS})"
            )));
        }
        if tag == u64::from(crate::envelope::ROUTED_TAG) && tag_len == 1 {
            let msg = Message::Routed(crate::envelope::decode_packet(body)?);
            msg.validate()?;
            return Ok(msg);
        }
        if tag == 0 {
            if let Some((version, _)) = peek_varint(&body[tag_len..]) {
                if version != u64::from(PROTOCOL_VERSION) {
                    return Err(DecodeError::UnknownVersion { got: version });
                }
            }
        }
    }
    let msg: Message = options()
        .deserialize(body)
        .map_err(|e| match map_bincode(*e) {
            DecodeError::TrailingBytes(_) => DecodeError::TrailingBytes(trailing_len(body)),
            other => other,
        })?;
    msg.validate()?;
    Ok(msg)
}

/// How many bytes follow the message in `body` (only called on the error path).
fn trailing_len(body: &[u8]) -> usize {
    let mut reader = body;
    match options()
        .allow_trailing_bytes()
        .deserialize_from::<_, Message>(&mut reader)
    {
        Ok(_) => reader.len(),
        Err(_) => 0,
    }
}

/// Decodes exactly one whole frame (length prefix and body).
pub fn decode_frame(frame: &[u8]) -> Result<Message, DecodeError> {
    let header: [u8; FRAME_HEADER_LEN] = frame
        .get(..FRAME_HEADER_LEN)
        .and_then(|h| h.try_into().ok())
        .ok_or(DecodeError::Truncated)?;
    let len = u32::from_be_bytes(header) as usize;
    if len > MAX_FRAME_BODY {
        return Err(DecodeError::TooLong { len });
    }
    let body = &frame[FRAME_HEADER_LEN..];
    if body.len() < len {
        return Err(DecodeError::Truncated);
    }
    if body.len() > len {
        return Err(DecodeError::TrailingBytes(body.len() - len));
    }
    decode_body(body)
}

/// Reassembles frames from a byte stream that arrives in arbitrary pieces.
///
/// Push bytes as they are read, then call [`FrameDecoder::next_message`]
/// until it returns `Ok(None)`. After an error the stream cannot be
/// resynchronised; the caller drops the peer. The buffer holds at most one
/// partial frame plus the last chunk pushed.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    start: usize,
}

impl FrameDecoder {
    /// An empty decoder.
    pub fn new() -> FrameDecoder {
        FrameDecoder::default()
    }

    /// Appends bytes read from the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > MAX_FRAME_BODY {
            // Drop consumed bytes only once they are many, so that small frames
            // do not each cost a memmove.
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes received but not yet decoded.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// The body of the next whole frame, undecoded, `Ok(None)` when more
    /// bytes are needed; only its length is checked.
    pub fn next_frame(&mut self) -> Result<Option<&[u8]>, DecodeError> {
        let pending = &self.buf[self.start..];
        let Some(header) = pending.get(..FRAME_HEADER_LEN) else {
            return Ok(None);
        };
        let len = u32::from_be_bytes(header.try_into().expect("slice of 4 bytes")) as usize;
        if len > MAX_FRAME_BODY {
            return Err(DecodeError::TooLong { len });
        }
        if pending.len() < FRAME_HEADER_LEN + len {
            return Ok(None);
        }
        let body = FRAME_HEADER_LEN + self.start..FRAME_HEADER_LEN + self.start + len;
        self.start += FRAME_HEADER_LEN + len;
        Ok(Some(&self.buf[body]))
    }

    /// The next whole message, `Ok(None)` when more bytes are needed.
    pub fn next_message(&mut self) -> Result<Option<Message>, DecodeError> {
        let pending = &self.buf[self.start..];
        let Some(header) = pending.get(..FRAME_HEADER_LEN) else {
            return Ok(None);
        };
        let len = u32::from_be_bytes(header.try_into().expect("slice of 4 bytes")) as usize;
        if len > MAX_FRAME_BODY {
            return Err(DecodeError::TooLong { len });
        }
        let Some(body) = pending.get(FRAME_HEADER_LEN..FRAME_HEADER_LEN + len) else {
            return Ok(None);
        };
        let msg = decode_body(body)?;
        self.start += FRAME_HEADER_LEN + len;
        Ok(Some(msg))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{Heartbeat, Hello, Role};
    use crate::NodeId;

    fn hello(version: u16) -> Message {
        Message::Hello(Hello {
            version,
            role: Role::Supernode,
            id: NodeId([7; 32]),
            listen_addrs: vec!["/ip4/127.0.0.1/tcp/4001".into()],
            agent: "skyhop/test".into(),
        })
    }

    #[test]
    fn frames_come_out_undecoded_as_they_were_sent() {
        let a = encode(&hello(PROTOCOL_VERSION)).expect("encodes");
        let b = encode(&Message::Heartbeat(Heartbeat { nonce: 9 })).expect("encodes");
        let both = [a.clone(), b.clone()].concat();
        let mut d = FrameDecoder::new();
        d.push(&both[..a.len() + 2]);
        assert_eq!(d.next_frame(), Ok(Some(&a[FRAME_HEADER_LEN..])));
        assert_eq!(d.next_frame(), Ok(None), "half a frame waits");
        d.push(&both[a.len() + 2..]);
        assert_eq!(d.next_frame(), Ok(Some(&b[FRAME_HEADER_LEN..])));
        assert_eq!(d.buffered(), 0);
        d.push(&(MAX_FRAME_BODY as u32 + 1).to_be_bytes());
        assert!(matches!(d.next_frame(), Err(DecodeError::TooLong { .. })));
    }

    #[test]
    fn decoder_handles_split_and_joined_frames() {
        let mut stream = Vec::new();
        for nonce in 0..50u64 {
            encode_into(
                &Message::Heartbeat(Heartbeat {
                    nonce: nonce * 1_000_003,
                }),
                &mut stream,
            )
            .expect("encodes");
        }
        for chunk_len in [1, 3, 7, 64, stream.len()] {
            let mut dec = FrameDecoder::new();
            let mut got = Vec::new();
            for chunk in stream.chunks(chunk_len) {
                dec.push(chunk);
                while let Some(m) = dec.next_message().expect("valid stream") {
                    got.push(m);
                }
            }
            assert_eq!(got.len(), 50, "chunk length {chunk_len}");
            assert_eq!(dec.buffered(), 0);
        }
    }

    #[test]
    fn oversize_length_is_rejected_before_the_body_arrives() {
        let mut dec = FrameDecoder::new();
        dec.push(&(MAX_FRAME_BODY as u32 + 1).to_be_bytes());
        assert_eq!(
            dec.next_message(),
            Err(DecodeError::TooLong {
                len: MAX_FRAME_BODY + 1
            })
        );
    }

    #[test]
    fn errors_name_what_is_wrong() {
        let frame = encode(&hello(PROTOCOL_VERSION)).expect("encodes");
        assert!(matches!(decode_frame(&frame), Ok(Message::Hello(_))));
        assert_eq!(
            decode_frame(&frame[..frame.len() - 1]),
            Err(DecodeError::Truncated)
        );

        let mut body = frame[4..].to_vec();
        body.extend_from_slice(&[0, 0]);
        assert_eq!(decode_body(&body), Err(DecodeError::TrailingBytes(2)));

        let v1 = encode(&hello(1)).expect("encodes");
        let refused = decode_frame(&v1);
        assert_eq!(refused, Err(DecodeError::UnknownVersion { got: 1 }));
        let said = refused.expect_err("refused").to_string();
        assert!(
            said.contains("version 1") && said.contains("speaks 2"),
            "the error names both versions: {said}"
        );

        assert!(matches!(
            decode_body(&[99]),
            Err(DecodeError::UnknownTag(_))
        ));
        assert!(matches!(
            decode_body(&[0, 2, 9]),
            Err(DecodeError::UnknownTag(_))
        ));
        assert_eq!(decode_body(&[]), Err(DecodeError::Truncated));
    }
}
