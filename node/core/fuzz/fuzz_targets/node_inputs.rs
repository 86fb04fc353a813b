//! Feeds a `Node` arbitrary sequences of (peer, message, time) inputs:
//! whatever strangers send and whenever, the node must not panic nor
//! outgrow a bound. The input is read by `skyhop_core::fuzzing::drive`,
//! which the seeded test `random_input_sequences_neither_panic_nor_outgrow_a_bound`
//! also runs on every `cargo test`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    skyhop_core::fuzzing::drive(data);
});
