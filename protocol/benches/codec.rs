//! Encoding and decoding cost of a chat packet (256-byte body) and of a full
//! 64 KiB frame, next to a plain copy of the same bytes.
//!
//! Run: `cargo bench -p skyhop-protocol --bench codec`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use skyhop_protocol::{
    decode_frame, encode, encode_into, Body, Identity, LocationHop, Message, MsgId, Packet, Trace,
    DEFAULT_TTL, MAX_DATAGRAM,
};

fn chat_packet(body_len: usize) -> Message {
    let alice = Identity::from_secret([1; 32]);
    let bob = Identity::from_secret([2; 32]);
    let chat = alice
        .chat(
            bob.id(),
            MsgId(42),
            1,
            1_700_000_000_000_000,
            "x".repeat(body_len),
        )
        .expect("fits");
    Message::Routed(Packet {
        dst: bob.id(),
        src: alice.id(),
        id: MsgId(0x1234_5678_9abc_def0),
        ttl: DEFAULT_TTL,
        hops: 1,
        location: LocationHop::Unused,
        trace: None,
        body: Body::Chat(
            skyhop_protocol::seal::seal(&chat, &bob.chat_key(), [7; 32]).expect("bob's key"),
        ),
    })
}

fn full_frame() -> Message {
    let alice = Identity::from_secret([1; 32]);
    Message::Routed(Packet {
        dst: alice.id(),
        src: alice.id(),
        id: MsgId(1),
        ttl: DEFAULT_TTL,
        hops: 0,
        location: LocationHop::Unused,
        trace: Some(Trace(vec![alice.id(); 32])),
        body: Body::Datagram((0..MAX_DATAGRAM).map(|i| i as u8).collect()),
    })
}

fn bench_message(c: &mut Criterion, name: &str, msg: &Message) {
    let frame = encode(msg).expect("encodes");
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Bytes(frame.len() as u64));
    let mut out = Vec::with_capacity(frame.len() * 2);
    group.bench_function("encode", |b| {
        b.iter(|| {
            out.clear();
            encode_into(black_box(msg), &mut out).expect("encodes");
            black_box(&out);
        })
    });
    group.bench_function("decode", |b| {
        b.iter(|| black_box(decode_frame(black_box(&frame)).expect("decodes")))
    });
    group.bench_function("memcpy", |b| {
        b.iter(|| {
            out.clear();
            out.extend_from_slice(black_box(&frame));
            black_box(&out);
        })
    });
    group.finish();
}

fn codec(c: &mut Criterion) {
    bench_message(c, "chat_256B", &chat_packet(256));
    bench_message(c, "frame_64KiB", &full_frame());
}

criterion_group!(benches, codec);
criterion_main!(benches);
