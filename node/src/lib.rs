//! skyhop: a peer-to-peer overlay in the style of Skype's original
//! architecture.
//!
//! - [`skyhop_core`] (its own crate): the sans-IO node (routing, supernode roles,
//!   chat delivery);
//! - the libp2p runtime and the simulator drive it (their own modules).

pub mod bench;
pub mod front;
pub mod runtime;
pub mod sim;
