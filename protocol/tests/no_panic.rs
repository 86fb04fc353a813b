//! Bytes from a peer never panic the decoder: a million random and damaged
//! frames go through both `decode_frame` and `FrameDecoder`, and each one is
//! either refused with an error or, when accepted, re-encodes to a frame
//! that decodes to the same message.
//!
//! Deterministic: a splitmix64 generator seeded from `SKYHOP_NO_PANIC_SEED`
//! (default below; the seed is printed), so a failure can be replayed
//! exactly. `SKYHOP_NO_PANIC_ITERS` runs more (or fewer) inputs. Frames are
//! kept small so that a million of them take seconds in a debug build.
//!
//! This is the deterministic floor; `protocol/fuzz` runs coverage-guided
//! fuzzing of the same two entry points.

use std::panic::{self, AssertUnwindSafe};
use std::path::PathBuf;

use skyhop_protocol::mix::SplitMix64;
use skyhop_protocol::*;

const DEFAULT_SEED: u64 = 0x5eed_c0de_2026_0001;
const DEFAULT_ITERS: u64 = 1_000_000;
/// Worker threads; each takes an equal share of the inputs and its own
/// generator, derived from the seed, so the run does not depend on timing.
const THREADS: u64 = 2;

/// splitmix64: tiny, fast, and good enough to pick bytes and positions.
struct Rng(SplitMix64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in `0..n` (n > 0); the modulo bias is irrelevant here.
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }

    fn byte(&mut self) -> u8 {
        self.next() as u8
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.byte()).collect()
    }

    fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        out.iter_mut().for_each(|b| *b = self.byte());
        out
    }

    /// A value from a random varint width, so every encoding is produced.
    fn varint(&mut self) -> u64 {
        match self.below(4) {
            0 => self.next() % 251,
            1 => 251 + self.next() % (0x1_0000 - 251),
            2 => 0x1_0000 + self.next() % (0x1_0000_0000 - 0x1_0000),
            _ => self.next(),
        }
    }

    fn u16(&mut self) -> u16 {
        self.varint() as u16
    }
}

// ---------------------------------------------------------------------------
// Small random valid messages, every variant
// ---------------------------------------------------------------------------

fn node_id(rng: &mut Rng) -> NodeId {
    NodeId(rng.array())
}

fn text(rng: &mut Rng, max_chars: usize) -> String {
    const PIECES: [&str; 8] = ["a", "/ip4/", "1", "é", "€", "😀", "/tcp/", " "];
    let n = rng.below(max_chars + 1);
    (0..n).map(|_| PIECES[rng.below(PIECES.len())]).collect()
}

fn addrs(rng: &mut Rng) -> Vec<String> {
    let n = rng.below(3);
    (0..n).map(|_| text(rng, 6)).collect()
}

fn peers(rng: &mut Rng) -> Vec<PeerInfo> {
    let n = rng.below(3);
    (0..n)
        .map(|_| PeerInfo {
            id: node_id(rng),
            addrs: addrs(rng),
        })
        .collect()
}

/// The identity every generated chat is sealed to.
fn recipient() -> &'static Identity {
    static BOB: std::sync::OnceLock<Identity> = std::sync::OnceLock::new();
    BOB.get_or_init(|| Identity::from_secret([2; 32]))
}

fn signature(rng: &mut Rng) -> Signature {
    Signature(rng.array())
}

fn leave(rng: &mut Rng) -> Leave {
    Leave {
        node: node_id(rng),
        public_key: rng.array(),
        sn: node_id(rng),
        seq: rng.varint(),
        signature: signature(rng),
    }
}

fn record(rng: &mut Rng) -> LocationRecord {
    LocationRecord {
        node: node_id(rng),
        public_key: rng.array(),
        chat_key: rng.array(),
        sn: node_id(rng),
        sn_addrs: addrs(rng),
        backups: (0..rng.below(3)).map(|_| node_id(rng)).collect(),
        seq: rng.varint(),
        lifetime_s: (rng.next() % u64::from(MAX_RECORD_LIFETIME_S + 1)) as u32,
        signature: signature(rng),
    }
}

fn absence(rng: &mut Rng) -> Absence {
    Absence {
        about: rng.varint(),
        node: node_id(rng),
        reason: [
            NotFoundReason::NoRecord,
            NotFoundReason::Offline,
            NotFoundReason::TtlExpired,
            NotFoundReason::NoRoute,
            NotFoundReason::Unreachable,
        ][rng.below(5)],
        by: node_id(rng),
        public_key: rng.array(),
        signature: signature(rng),
    }
}

fn hops(rng: &mut Rng) -> Vec<NodeId> {
    let n = rng.below(4);
    (0..n).map(|_| node_id(rng)).collect()
}

fn body(rng: &mut Rng) -> Body {
    match rng.below(14) {
        0 => {
            let chat = ChatMessage {
                from: node_id(rng),
                from_key: rng.array(),
                to: node_id(rng),
                msg_id: MsgId(rng.varint()),
                seq: rng.varint(),
                sent_at: rng.varint(),
                body: text(rng, 12),
                signature: signature(rng),
            };
            // Sealed to the recipient `check` opens with, so that damage
            // reaches the opening and the decoding of what is inside.
            let sealed =
                seal::seal(&chat, &recipient().chat_key(), rng.array()).expect("a valid key");
            Body::Chat(sealed)
        }
        1 => {
            let receipt = ChatReceipt {
                recipient: node_id(rng),
                public_key: rng.array(),
                author: node_id(rng),
                msg_id: MsgId(rng.varint()),
                seq: rng.varint(),
                hops: rng.byte(),
                signature: signature(rng),
            };
            match rng.below(3) {
                0 => Body::ChatAck(receipt),
                1 => Body::ReceiptStore(receipt),
                _ => Body::ReceiptHandOver(receipt),
            }
        }
        2 => Body::NotFound(absence(rng)),
        3 => Body::TraceProbe {
            probe_id: rng.varint(),
        },
        4 => Body::TraceReply {
            probe_id: rng.varint(),
            path: hops(rng),
        },
        5 => Body::Publish(record(rng)),
        6 => Body::Withdraw(Withdraw {
            node: node_id(rng),
            sn: node_id(rng),
            seq: rng.varint(),
            reason: if rng.chance(2) {
                WithdrawReason::Lost(SupernodeProof {
                    public_key: rng.array(),
                    signature: signature(rng),
                })
            } else {
                WithdrawReason::Left(leave(rng))
            },
        }),
        7 => Body::LocationQuery {
            request_id: rng.varint(),
            node: node_id(rng),
        },
        8 => Body::LocationReply {
            request_id: rng.varint(),
            node: node_id(rng),
            record: rng.chance(2).then(|| record(rng)),
            absence: rng.chance(2).then(|| Box::new(absence(rng))),
        },
        9 => {
            let len = rng.below(24);
            Body::Datagram(rng.bytes(len))
        }
        10 | 12 => {
            let kept = KeptChat {
                author: node_id(rng),
                node: node_id(rng),
                msg_id: MsgId(rng.varint()),
                sealed: SealedChat({
                    let len = rng.below(64);
                    rng.bytes(len)
                }),
            };
            if rng.chance(2) {
                Body::MailboxStore(kept)
            } else {
                Body::MailboxHandOver(kept)
            }
        }
        11 => Body::MailboxStored(StoredNotice {
            msg_id: MsgId(rng.varint()),
            node: node_id(rng),
            author: node_id(rng),
            expires_at: rng.varint(),
            by: node_id(rng),
            public_key: rng.array(),
            signature: signature(rng),
        }),
        _ => Body::MailboxTaken {
            author: node_id(rng),
            msg_id: MsgId(rng.varint()),
        },
    }
}

fn message(rng: &mut Rng) -> Message {
    match rng.below(17) {
        0 => Message::Hello(Hello {
            version: PROTOCOL_VERSION,
            role: if rng.chance(2) {
                Role::Ordinary
            } else {
                Role::Supernode
            },
            id: node_id(rng),
            listen_addrs: addrs(rng),
            agent: text(rng, 6),
        }),
        1 => Message::Join(Join {
            request_id: rng.varint(),
        }),
        2 => Message::Accept(Accept {
            request_id: rng.varint(),
            clients: rng.u16(),
            max_clients: rng.u16(),
            supernodes: peers(rng),
        }),
        3 => Message::Redirect(Redirect {
            request_id: rng.varint(),
            supernodes: peers(rng),
        }),
        4 => Message::Leave(leave(rng)),
        5 => Message::Heartbeat(Heartbeat {
            nonce: rng.varint(),
        }),
        6 => Message::HeartbeatAck(HeartbeatAck {
            nonce: rng.varint(),
            clients: rng.u16(),
        }),
        7 => Message::FindNeighbors(FindNeighbors {
            request_id: rng.varint(),
            target: node_id(rng),
        }),
        8 => Message::Neighbors(Neighbors {
            request_id: rng.varint(),
            peers: peers(rng),
        }),
        9 => Message::Publish(record(rng)),
        10 => Message::Routed(Packet {
            dst: node_id(rng),
            src: node_id(rng),
            id: MsgId(rng.varint()),
            ttl: rng.byte(),
            hops: rng.byte(),
            location: match rng.below(3) {
                0 => LocationHop::Unused,
                1 => LocationHop::Toward(node_id(rng)),
                _ => LocationHop::Used,
            },
            trace: rng.chance(2).then(|| Trace(hops(rng))),
            body: body(rng),
        }),
        11 => Message::StaleLocation(StaleLocation { node: node_id(rng) }),
        12 => Message::DialBack(DialBack {
            request_id: rng.varint(),
            addrs: addrs(rng),
        }),
        13 => Message::Listed(Listed {
            listed: rng.chance(2),
            claim: None,
        }),
        14 => Message::WhoQuery(WhoQuery {
            request_id: rng.varint(),
        }),
        15 => Message::Listing(Listing {
            request_id: rng.varint(),
            peers: (0..rng.below(4))
                .map(|_| ListedPeer {
                    node: node_id(rng),
                    name: rng.chance(2).then(|| "carol".to_string()),
                })
                .collect(),
        }),
        _ => Message::DialBackResult(DialBackResult {
            request_id: rng.varint(),
            outcome: match rng.below(3) {
                0 => DialBackOutcome::Reached,
                1 => DialBackOutcome::Failed,
                _ => DialBackOutcome::Refused,
            },
        }),
    }
}

/// Valid frames to damage: random messages of every kind, and every golden
/// and refused vector on disk.
fn corpus(rng: &mut Rng) -> Vec<Vec<u8>> {
    let mut frames: Vec<Vec<u8>> = (0..512)
        .map(|_| encode(&message(rng)).expect("small valid messages encode"))
        .collect();
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.sort();
    for path in files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "hex"))
    {
        let text = std::fs::read_to_string(path).expect("a readable vector");
        if let Some(frame) = text.lines().nth(1).and_then(|l| hex::decode(l).ok()) {
            frames.push(frame);
        }
    }
    frames
}

// ---------------------------------------------------------------------------
// Damage
// ---------------------------------------------------------------------------

/// Bytes that mean something to a varint, an enum, an option or a length.
const INTERESTING: [u8; 12] = [0, 1, 2, 3, 9, 10, 11, 12, 250, 251, 252, 255];

fn set_length_prefix(frame: &mut [u8]) {
    if frame.len() >= FRAME_HEADER_LEN {
        let len = (frame.len() - FRAME_HEADER_LEN) as u32;
        frame[..FRAME_HEADER_LEN].copy_from_slice(&len.to_be_bytes());
    }
}

fn damaged(rng: &mut Rng, corpus: &[Vec<u8>]) -> Vec<u8> {
    let mut frame = corpus[rng.below(corpus.len())].clone();
    let edits = 1 + rng.below(4);
    for _ in 0..edits {
        let len = frame.len();
        match rng.below(9) {
            // Flip a bit.
            0 | 1 if len > 0 => {
                let at = rng.below(len);
                frame[at] ^= 1 << rng.below(8);
            }
            // Overwrite a byte with one that a decoder branches on.
            2 if len > 0 => {
                let at = rng.below(len);
                frame[at] = INTERESTING[rng.below(INTERESTING.len())];
            }
            // Insert a byte.
            3 => {
                let at = rng.below(len + 1);
                let b = rng.byte();
                frame.insert(at, b);
            }
            // Delete a byte.
            4 if len > 0 => {
                frame.remove(rng.below(len));
            }
            // Truncate.
            5 => frame.truncate(rng.below(len + 1)),
            // Tamper with the length prefix.
            6 if len >= FRAME_HEADER_LEN => {
                let old = u32::from_be_bytes(frame[..4].try_into().expect("4 bytes"));
                let new = match rng.below(4) {
                    0 => old.wrapping_add(1 + rng.below(8) as u32),
                    1 => old.wrapping_sub(1 + rng.below(8) as u32),
                    2 => MAX_FRAME_BODY as u32 + rng.below(3) as u32 - 1,
                    _ => rng.next() as u32,
                };
                frame[..4].copy_from_slice(&new.to_be_bytes());
            }
            // Splice in a piece of another frame.
            7 => {
                let other = &corpus[rng.below(corpus.len())];
                let from = rng.below(other.len() + 1);
                let to = from + rng.below(other.len() - from + 1);
                let at = rng.below(len + 1);
                frame.splice(at..at, other[from..to].iter().copied());
            }
            // Append random bytes.
            _ => {
                let n = 1 + rng.below(8);
                frame.extend(rng.bytes(n));
            }
        }
    }
    // Most damage should reach the message decoder rather than stop at the
    // length check, so usually make the prefix agree with the damaged body.
    if rng.below(4) != 0 {
        set_length_prefix(&mut frame);
    }
    frame
}

fn random_frame(rng: &mut Rng) -> Vec<u8> {
    let body_len = rng.below(48);
    let mut frame = vec![0; FRAME_HEADER_LEN];
    frame.extend(rng.bytes(body_len));
    // Start on a real message tag most of the time, to get past the tag check.
    if body_len > 0 && rng.below(4) != 0 {
        frame[FRAME_HEADER_LEN] = rng.below(MESSAGE_TAGS_GUESS) as u8;
    }
    if rng.below(8) != 0 {
        set_length_prefix(&mut frame);
    } else {
        let header = rng.array::<4>();
        frame[..4].copy_from_slice(&header);
    }
    frame
}

/// Known tags and a few beyond, for the first byte of random bodies.
const MESSAGE_TAGS_GUESS: usize = 17;

// ---------------------------------------------------------------------------
// The check
// ---------------------------------------------------------------------------

/// Outcomes counted by kind: accepted, then each `DecodeError` variant.
const OUTCOMES: [&str; 8] = [
    "accepted",
    "TooLong",
    "Truncated",
    "UnknownVersion",
    "UnknownTag",
    "Malformed",
    "TrailingBytes",
    "Limit",
];

fn outcome(result: &Result<Message, DecodeError>) -> usize {
    match result {
        Ok(_) => 0,
        Err(DecodeError::TooLong { .. }) => 1,
        Err(DecodeError::Truncated) => 2,
        Err(DecodeError::UnknownVersion { .. }) => 3,
        Err(DecodeError::UnknownTag(_)) => 4,
        Err(DecodeError::Malformed(_)) => 5,
        Err(DecodeError::TrailingBytes(_)) => 6,
        Err(DecodeError::Limit(_)) => 7,
    }
}

/// What the two decoders make of `frame` (an index into [`OUTCOMES`]);
/// panics (and so fails the test) if an accepted message does not survive a
/// second trip, or if the decoders disagree.
fn check(rng: &mut Rng, frame: &[u8]) -> usize {
    let whole = decode_frame(frame);
    if let Ok(msg) = &whole {
        let again = encode(msg).expect("an accepted message can be sent again");
        assert_eq!(decode_frame(&again).as_ref(), Ok(msg), "second trip");
        // A sealed chat, damaged or not, opens or is refused; never a panic.
        if let Message::Routed(Packet {
            body: Body::Chat(sealed),
            ..
        }) = msg
        {
            let _ = recipient().open_chat(sealed);
        }
        // A relay's header read agrees with the decoder.
        if let Message::Routed(p) = msg {
            let h = envelope::read_header(&frame[FRAME_HEADER_LEN..]).expect("decoded");
            assert_eq!((h.dst, h.src, h.id), (p.dst, p.src, p.id), "header read");
        }
    }

    // The same bytes as a stream, in random pieces. A whole-frame decode
    // and the first streamed result agree on what the first frame is.
    let mut dec = FrameDecoder::new();
    let mut first = None;
    let mut rest = frame;
    // Each chunk is at least one byte, and each message consumes at least
    // five, so both loops are bounded by the input length.
    while !rest.is_empty() {
        let (chunk, tail) = rest.split_at((1 + rng.below(16)).min(rest.len()));
        rest = tail;
        dec.push(chunk);
        loop {
            match dec.next_message() {
                Ok(Some(msg)) => {
                    first.get_or_insert(Ok(msg));
                }
                Ok(None) => break,
                Err(err) => {
                    first.get_or_insert(Err(err));
                    rest = &[];
                    break;
                }
            }
        }
    }
    if let (Ok(msg), Some(streamed)) = (&whole, &first) {
        assert_eq!(
            streamed.as_ref(),
            Ok(msg),
            "stream and frame decoders agree"
        );
    }
    outcome(&whole)
}

/// Inputs per outcome, and how many inputs were pure random bytes.
type Tally = ([u64; OUTCOMES.len()], u64);

fn run_share(seed: u64, worker: u64, iters: u64, corpus: &[Vec<u8>]) -> Tally {
    let mut rng = Rng(SplitMix64(
        seed ^ worker.wrapping_mul(0xa076_1d64_78bd_642f),
    ));
    let mut counts = [0u64; OUTCOMES.len()];
    let mut random = 0;
    for i in 0..iters {
        let is_random = rng.chance(4);
        let frame = if is_random {
            random += 1;
            random_frame(&mut rng)
        } else {
            damaged(&mut rng, corpus)
        };
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| check(&mut rng, &frame)));
        match outcome {
            Ok(kind) => counts[kind] += 1,
            Err(cause) => {
                eprintln!(
                    "decoder panicked: seed {seed:#x}, worker {worker}, input {i}, frame {}",
                    hex::encode(&frame)
                );
                panic::resume_unwind(cause);
            }
        }
    }
    (counts, random)
}

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => {
            let v = v.trim();
            let parsed = match v.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => v.parse(),
            };
            parsed.unwrap_or_else(|e| panic!("{name}={v}: {e}"))
        }
        Err(_) => default,
    }
}

#[test]
fn a_million_bad_frames_never_panic() {
    let seed = env_u64("SKYHOP_NO_PANIC_SEED", DEFAULT_SEED);
    let iters = env_u64("SKYHOP_NO_PANIC_ITERS", DEFAULT_ITERS);
    println!("no-panic: seed {seed:#x} (SKYHOP_NO_PANIC_SEED), {iters} inputs");

    let corpus = corpus(&mut Rng(SplitMix64(seed)));
    let share = iters.div_ceil(THREADS);
    let results: Vec<Tally> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..THREADS)
            .map(|w| {
                let corpus = &corpus;
                let n = share.min(iters.saturating_sub(w * share));
                s.spawn(move || run_share(seed, w, n, corpus))
            })
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join()
                    .expect("a worker panicked; its input is printed above")
            })
            .collect()
    });
    let mut counts = [0u64; OUTCOMES.len()];
    for (share_counts, _) in &results {
        counts
            .iter_mut()
            .zip(share_counts)
            .for_each(|(c, n)| *c += n);
    }
    let random: u64 = results.iter().map(|r| r.1).sum();
    let summary: Vec<String> = OUTCOMES
        .iter()
        .zip(counts)
        .map(|(name, n)| format!("{name} {n}"))
        .collect();
    println!(
        "no-panic: {iters} inputs ({random} random, {} damaged): {}",
        iters - random,
        summary.join(", ")
    );
    // Every way of refusing a frame was reached, and some damaged frames
    // still decode: the damage got past the length check into the message.
    if iters >= DEFAULT_ITERS {
        for (name, n) in OUTCOMES.iter().zip(counts) {
            assert!(n > 0, "no input ended as {name}");
        }
    }
}
