//! skyhop's wire contract: node ids, every message, what is signed, the
//! limits, and the frame codec.
//!
//! This crate does no I/O and holds no routing logic: it is what two skyhop
//! nodes, in any language, must agree on. PROTOCOL.md at the repository root
//! specifies the same thing byte by byte.

mod bounded;
pub mod codec;
pub mod envelope;
pub mod id;
pub mod limits;
pub mod message;
pub mod mix;
pub mod name;
pub mod recent;
pub mod seal;
pub mod sign;

pub use bounded::Signature;
pub use codec::{
    decode_body, decode_frame, encode, encode_into, DecodeError, EncodeError, FrameDecoder,
};
pub use id::{Distance, MsgId, NodeId, ParseNodeIdError};
pub use limits::*;
pub use message::*;
pub use name::{check_name, name_key, NameError};
pub use seal::SealError;
pub use sign::{
    verify_absence, verify_chat, verify_leave, verify_name_claim, verify_receipt, verify_record,
    verify_stored, verify_withdraw_lost, Identity, SignatureError, SignatureMemo,
};
