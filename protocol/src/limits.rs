//! Every bound of the wire contract, in one place.
//!
//! A receiver rejects a frame that breaks any of these; an encoder refuses to
//! produce one. PROTOCOL.md lists the same numbers.

/// The protocol version this crate speaks, sent first in every `Hello`.
pub const PROTOCOL_VERSION: u16 = 2;

/// Largest encoded message body in a frame, in bytes (the 4-byte length
/// prefix is not counted).
pub const MAX_FRAME_BODY: usize = 65_535;

/// Bytes in a frame's length prefix.
pub const FRAME_HEADER_LEN: usize = 4;

/// Largest UTF-8 chat body, in bytes.
pub const MAX_CHAT_BODY: usize = 4096;

/// Most node ids a routed packet's hop trace may hold.
pub const MAX_TRACE_HOPS: usize = 32;

/// Default time-to-live of a routed packet, in hops.
pub const DEFAULT_TTL: u8 = 32;

/// Most listen addresses a peer may advertise.
pub const MAX_ADDRS: usize = 8;

/// Most backup supernodes a location record may name.
pub const MAX_RECORD_BACKUPS: usize = 8;

/// Longest address string, in bytes.
pub const MAX_ADDR_LEN: usize = 256;

/// Longest agent string in a `Hello`, in bytes.
pub const MAX_AGENT_LEN: usize = 128;

/// Most peers in one `Accept`, `Redirect` or `Neighbors` message.
pub const MAX_PEERS_PER_MESSAGE: usize = 32;

/// Most nodes in one `Listing` (the nodes listed at one supernode), and
/// so the most a supernode lists.
pub const MAX_LISTED: usize = 128;

/// Largest opaque payload of a routed `Datagram` body, in bytes. It leaves
/// room inside [`MAX_FRAME_BODY`] for the envelope with a full trace.
pub const MAX_DATAGRAM: usize = 64 * 1024 - 2048;

/// Longest lifetime a location record may claim, in seconds.
pub const MAX_RECORD_LIFETIME_S: u32 = 3600;

/// Longest lifetime a name claim may claim, in seconds (90 days); its
/// owner refreshes it well before.
pub const MAX_NAME_LIFETIME_S: u32 = 90 * 24 * 3600;

/// Largest sealed (end-to-end encrypted) chat in a routed `Chat` body, in
/// bytes: the 32-byte ephemeral key, the encrypted signed chat message (whose
/// text is at most [`MAX_CHAT_BODY`]) and the 16-byte tag.
pub const MAX_SEALED_CHAT: usize = MAX_CHAT_BODY + 512;

/// Largest opaque body of a routed packet's envelope, in bytes (the
/// envelope's body length is a `u16`).
pub const MAX_ROUTED_BODY: usize = u16::MAX as usize;
