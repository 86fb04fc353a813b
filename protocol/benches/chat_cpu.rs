//! CPU per chat at its two ends, protocol v2: what the sender does to send
//! one chat (sign, seal to the recipient's chat key, encode the routed
//! packet), what the recipient does with it (decode, open, verify the
//! author's signature, sign the receipt and encode it), and what the sender
//! does with the receipt (decode, verify). Beside them, one signed
//! `Leave` (one ed25519 signature) as the reference measured in the same run.
//!
//! Run: `cargo bench -p skyhop-protocol --bench chat_cpu`
//!
//! Version 1 (commit af3d114) had no seal and an unsigned receipt; the same
//! three steps there are sign + encode, decode + verify + encode the ack,
//! and decode the ack (see BENCHMARKS.md, "CPU per chat").

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use skyhop_protocol::{
    decode_frame, encode, seal, verify_receipt, Body, Identity, LocationHop, Message, MsgId,
    NodeId, Packet, DEFAULT_TTL,
};

const SENT_AT: u64 = 1_700_000_000_000_000;

fn routed(dst: NodeId, src: NodeId, hops: u8, body: Body) -> Message {
    Message::Routed(Packet {
        dst,
        src,
        id: MsgId(0x1234_5678_9abc_def0),
        ttl: DEFAULT_TTL,
        hops,
        location: LocationHop::Unused,
        trace: None,
        body,
    })
}

/// A fresh ephemeral secret per chat, as the core draws one per chat.
fn ephemeral(n: u64) -> [u8; 32] {
    let mut e = [0x5a; 32];
    e[..8].copy_from_slice(&n.to_le_bytes());
    e
}

fn sender_sends(
    alice: &Identity,
    bob_id: NodeId,
    bob_key: &[u8; 32],
    n: u64,
    text: &str,
) -> Vec<u8> {
    let chat = alice
        .chat(bob_id, MsgId(n), n, SENT_AT, text.to_owned())
        .expect("fits");
    let sealed = seal::seal(&chat, bob_key, ephemeral(n)).expect("bob's key");
    encode(&routed(bob_id, alice.id(), 0, Body::Chat(sealed))).expect("encodes")
}

fn recipient_receives(bob: &Identity, frame: &[u8]) -> Vec<u8> {
    let Ok(Message::Routed(packet)) = decode_frame(frame) else {
        panic!("a routed chat");
    };
    let Body::Chat(sealed) = packet.body else {
        panic!("a chat");
    };
    let chat = bob.open_chat(&sealed).expect("sealed to bob");
    skyhop_protocol::verify_chat(&chat).expect("signed by alice");
    let receipt = bob.receipt(chat.from, chat.msg_id, chat.seq, packet.hops);
    encode(&routed(chat.from, bob.id(), 0, Body::ChatAck(receipt))).expect("encodes")
}

fn sender_verifies_receipt(frame: &[u8]) {
    let Ok(Message::Routed(packet)) = decode_frame(frame) else {
        panic!("a routed ack");
    };
    let Body::ChatAck(receipt) = packet.body else {
        panic!("an ack");
    };
    verify_receipt(&receipt).expect("signed by bob");
}

fn chat_cpu(c: &mut Criterion) {
    let alice = Identity::from_secret([1; 32]);
    let bob = Identity::from_secret([2; 32]);
    let bob_key = bob.chat_key();
    let mut reference = c.benchmark_group("reference");
    reference.bench_function("ed25519_sign_leave", |b| {
        b.iter(|| black_box(alice.leave(black_box(bob.id()), 1)))
    });
    reference.finish();
    // The parts of v2's extra cost, each on its own.
    let mut parts = c.benchmark_group("parts");
    let chat = alice
        .chat(bob.id(), MsgId(1), 1, SENT_AT, "x".repeat(16))
        .expect("fits");
    let sealed = seal::seal(&chat, &bob_key, ephemeral(1)).expect("bob's key");
    parts.bench_function("x25519_public_key", |b| {
        b.iter(|| black_box(seal::chat_public_key(black_box(&[9; 32]))))
    });
    let mut n = 0u64;
    parts.bench_function("seal_16B", |b| {
        b.iter(|| {
            n += 1;
            black_box(seal::seal(black_box(&chat), &bob_key, ephemeral(n)).expect("bob's key"))
        })
    });
    parts.bench_function("open_16B", |b| {
        b.iter(|| black_box(bob.open_chat(black_box(&sealed)).expect("sealed to bob")))
    });
    parts.bench_function("verify_chat", |b| {
        b.iter(|| skyhop_protocol::verify_chat(black_box(&chat)).expect("signed"))
    });
    parts.finish();
    for len in [16usize, 1024] {
        let text = "x".repeat(len);
        let chat_frame = sender_sends(&alice, bob.id(), &bob_key, 1, &text);
        let ack_frame = recipient_receives(&bob, &chat_frame);
        let mut group = c.benchmark_group(format!("chat_{len}B"));
        let mut n = 0u64;
        group.bench_function("sender_send", |b| {
            b.iter(|| {
                n += 1;
                black_box(sender_sends(
                    &alice,
                    bob.id(),
                    &bob_key,
                    n,
                    black_box(&text),
                ))
            })
        });
        group.bench_function("recipient_receive", |b| {
            b.iter(|| black_box(recipient_receives(&bob, black_box(&chat_frame))))
        });
        group.bench_function("sender_receipt", |b| {
            b.iter(|| sender_verifies_receipt(black_box(&ack_frame)))
        });
        group.finish();
        eprintln!(
            "chat_{len}B: chat frame {} B, ack frame {} B",
            chat_frame.len(),
            ack_frame.len()
        );
    }
}

criterion_group!(benches, chat_cpu);
criterion_main!(benches);
