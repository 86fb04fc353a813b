//! The fuzz driver on seeded random inputs: no panic, and every kind of input drawn.

use std::collections::BTreeMap;

use rand::rngs::Xoshiro256PlusPlus;
use rand::{Rng, RngExt, SeedableRng};
use skyhop_protocol::{Body, Message};

/// Seeded random inputs of up to 4 KiB.
fn inputs(seed: u64, n: usize) -> impl Iterator<Item = Vec<u8>> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    (0..n).map(move |_| {
        let mut data = vec![0u8; rng.random_range(0..4096)];
        rng.fill_bytes(&mut data);
        data
    })
}

/// What a message is, finer than its kind where a kind has variants
/// the node treats apart (a claim or not, each not-found reason).
fn kind(msg: &Message) -> String {
    match msg {
        Message::Listed(l) if l.claim.is_some() => "listed with a claim".into(),
        Message::Routed(p) => match &p.body {
            Body::NotFound(a) => format!("not_found {:?}", a.reason),
            Body::LocationReply {
                record: None,
                absence: Some(a),
                ..
            } => format!("location_reply {:?}", a.reason),
            body => body.kind().into(),
        },
        msg => msg.kind().into(),
    }
}

/// The link messages and routed bodies newer than the harness's first
/// version are sent to the node, not only decoded: each is drawn many
/// times by the seeded inputs of this test.
#[test]
fn random_inputs_send_the_listing_messages_receipts_kept_and_every_not_found_reason() {
    let mut drawn: BTreeMap<String, usize> = BTreeMap::new();
    for data in inputs(12, 300) {
        super::drive_seeing(&data, |msg| *drawn.entry(kind(msg)).or_default() += 1);
    }
    let wanted = [
        "listed",
        "listed with a claim",
        "who_query",
        "listing",
        "receipt_store",
        "receipt_hand_over",
        "not_found NoRecord",
        "not_found Offline",
        "not_found TtlExpired",
        "not_found NoRoute",
        "not_found Unreachable",
        "location_reply Unreachable",
    ];
    for kind in wanted {
        let n = drawn.get(kind).copied().unwrap_or(0);
        assert!(n >= 3, "{kind} drawn {n} times; drawn: {drawn:?}");
    }
}

/// The stable-Rust counterpart of the fuzz target: seeded random
/// inputs, so that every `cargo test` runs a thousand sequences.
#[test]
fn random_input_sequences_neither_panic_nor_outgrow_a_bound() {
    for data in inputs(12, 1000) {
        super::drive(&data);
    }
}
