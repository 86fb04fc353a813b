//! Golden vectors: the exact bytes of one frame of every message kind, kept
//! in `tests/vectors/`, so that the wire format cannot change by accident
//! and so that an implementation in another language has bytes to test
//! against (PROTOCOL.md walks through two of them).
//!
//! Each `NAME.hex` file holds a `# description` line and the hex of the whole
//! frame (length prefix and body). `bad_*.hex` files are frames a receiver
//! must refuse; their description names the decode error.
//! `identities.txt` lists the test identities the vectors use.
//!
//! Checks run in both directions: encoding the message built here gives the
//! file's bytes, and decoding the file's bytes gives the message built here.
//! To regenerate after an intended format change, run
//! `SKYHOP_BLESS=1 cargo test -p skyhop-protocol --test vectors` and review
//! the diff: every changed byte is a change of the wire contract.

use std::collections::BTreeSet;
use std::fs;
use std::path::PathBuf;

use bincode::Options;
use sha2::{Digest, Sha256};
use skyhop_protocol::*;

/// The test identities, by name: a secret key of 32 copies of one byte.
const IDENTITIES: [(&str, u8); 4] = [("alice", 1), ("bob", 2), ("sn1", 3), ("sn2", 4)];

fn identity(name: &str) -> Identity {
    let (_, byte) = IDENTITIES
        .iter()
        .find(|(n, _)| *n == name)
        .expect("a known test identity");
    Identity::from_secret([*byte; 32])
}

fn id(name: &str) -> NodeId {
    identity(name).id()
}

fn vectors_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}

fn blessing() -> bool {
    std::env::var("SKYHOP_BLESS").is_ok_and(|v| v == "1")
}

/// A message and the file that holds its frame.
struct Golden {
    name: &'static str,
    description: String,
    message: Message,
}

fn golden(name: &'static str, description: &str, message: Message) -> Golden {
    Golden {
        name,
        description: description.to_string(),
        message,
    }
}

const SN1_ADDR: &str = "/ip4/192.0.2.3/tcp/4001";
const SN2_ADDR: &str = "/ip4/192.0.2.4/tcp/4001";
const AGENT: &str = "skyhop/0.1.0";
const PACKET_ID: MsgId = MsgId(0x0123_4567_89ab_cdef);

/// A routed packet with the envelope fields every routed vector shares
/// unless it says otherwise.
fn packet(src: &str, dst: &str, body: Body) -> Packet {
    Packet {
        dst: id(dst),
        src: id(src),
        id: PACKET_ID,
        ttl: DEFAULT_TTL,
        hops: 1,
        location: LocationHop::Unused,
        trace: None,
        body,
    }
}

const ENVELOPE: &str = "id 0x0123456789abcdef, ttl 32, hops 1, location Unused, trace None";

fn peer(name: &str, addr: &str) -> PeerInfo {
    PeerInfo {
        id: id(name),
        addrs: vec![addr.to_string()],
    }
}

fn alice_record() -> LocationRecord {
    identity("alice").location_record_with_backups(
        id("sn1"),
        vec![SN1_ADDR.to_string()],
        vec![id("sn2")],
        3,
        600,
    )
}

const ALICE_RECORD: &str = "LocationRecord signed by alice: node alice, public_key alice's, \
     chat_key alice's, sn sn1, sn_addrs [\"/ip4/192.0.2.3/tcp/4001\"], backups [sn2], seq 3, \
     lifetime_s 600";

fn alice_claim() -> NameClaim {
    identity("alice").name_claim("alice".to_string(), 5, 604_800)
}

const ALICE_CLAIM: &str = "NameClaim signed by alice: name \"alice\", node alice, public_key \
     alice's, seq 5, lifetime_s 604800";

/// The ephemeral secret key `routed_chat.hex` is sealed with.
const CHAT_EPHEMERAL: [u8; 32] = [0xe1; 32];

/// The chat `routed_chat.hex` carries, sealed to bob.
fn alice_chat() -> ChatMessage {
    identity("alice")
        .chat(
            id("bob"),
            MsgId(42),
            1,
            1_700_000_000_000_000,
            "hello, bob".to_string(),
        )
        .expect("a short body")
}

fn goldens() -> Vec<Golden> {
    let alice = identity("alice");
    let sealed = seal::seal(&alice_chat(), &identity("bob").chat_key(), CHAT_EPHEMERAL)
        .expect("bob's chat key is valid");
    let not_found = |reason| {
        Message::Routed(packet(
            "sn1",
            "alice",
            Body::NotFound(identity("sn1").absence(77, id("bob"), reason)),
        ))
    };
    let withdraw = |reason| {
        Message::Routed(packet(
            "sn1",
            "alice",
            Body::Withdraw(Withdraw {
                node: id("alice"),
                sn: id("sn1"),
                seq: 4,
                reason,
            }),
        ))
    };
    vec![
        golden(
            "hello",
            &format!("Hello: version 2, role Supernode, id sn1, listen_addrs [\"{SN1_ADDR}\"], agent \"{AGENT}\""),
            Message::Hello(Hello {
                version: PROTOCOL_VERSION,
                role: Role::Supernode,
                id: id("sn1"),
                listen_addrs: vec![SN1_ADDR.to_string()],
                agent: AGENT.to_string(),
            }),
        ),
        golden(
            "hello_ordinary",
            "Hello: version 2, role Ordinary, id alice, listen_addrs [\"/ip4/192.0.2.1/tcp/4001\", \"/ip6/2001:db8::1/tcp/4001\"], agent \"\"",
            Message::Hello(Hello {
                version: PROTOCOL_VERSION,
                role: Role::Ordinary,
                id: id("alice"),
                listen_addrs: vec![
                    "/ip4/192.0.2.1/tcp/4001".to_string(),
                    "/ip6/2001:db8::1/tcp/4001".to_string(),
                ],
                agent: String::new(),
            }),
        ),
        golden(
            "join",
            "Join: request_id 7",
            Message::Join(Join { request_id: 7 }),
        ),
        golden(
            "accept",
            &format!("Accept: request_id 7, clients 12, max_clients 256, supernodes [PeerInfo {{ id sn2, addrs [\"{SN2_ADDR}\"] }}]"),
            Message::Accept(Accept {
                request_id: 7,
                clients: 12,
                max_clients: 256,
                supernodes: vec![peer("sn2", SN2_ADDR)],
            }),
        ),
        golden(
            "redirect",
            &format!("Redirect: request_id 8, supernodes [PeerInfo {{ id sn1, addrs [\"{SN1_ADDR}\"] }}, PeerInfo {{ id sn2, addrs [] }}]"),
            Message::Redirect(Redirect {
                request_id: 8,
                supernodes: vec![
                    peer("sn1", SN1_ADDR),
                    PeerInfo {
                        id: id("sn2"),
                        addrs: vec![],
                    },
                ],
            }),
        ),
        golden(
            "leave",
            "Leave signed by alice: node alice, public_key alice's, sn sn1, seq 5",
            Message::Leave(alice.leave(id("sn1"), 5)),
        ),
        golden(
            "heartbeat",
            "Heartbeat: nonce 1000",
            Message::Heartbeat(Heartbeat { nonce: 1000 }),
        ),
        golden(
            "heartbeat_ack",
            "HeartbeatAck: nonce 1000, clients 12",
            Message::HeartbeatAck(HeartbeatAck {
                nonce: 1000,
                clients: 12,
            }),
        ),
        golden(
            "find_neighbors",
            "FindNeighbors: request_id 70000, target alice",
            Message::FindNeighbors(FindNeighbors {
                request_id: 70_000,
                target: id("alice"),
            }),
        ),
        golden(
            "neighbors",
            &format!("Neighbors: request_id 70000, peers [PeerInfo {{ id sn1, addrs [\"{SN1_ADDR}\"] }}, PeerInfo {{ id sn2, addrs [\"{SN2_ADDR}\"] }}]"),
            Message::Neighbors(Neighbors {
                request_id: 70_000,
                peers: vec![peer("sn1", SN1_ADDR), peer("sn2", SN2_ADDR)],
            }),
        ),
        golden(
            "publish",
            &format!("Publish (link message): {ALICE_RECORD}"),
            Message::Publish(alice_record()),
        ),
        golden(
            "stale_location",
            "StaleLocation: node alice",
            Message::StaleLocation(StaleLocation { node: id("alice") }),
        ),
        golden(
            "dial_back",
            "DialBack: request_id 9, addrs [\"/ip4/192.0.2.1/tcp/4001\", \"/ip4/192.0.2.1/udp/4001/quic-v1\"]",
            Message::DialBack(DialBack {
                request_id: 9,
                addrs: vec![
                    "/ip4/192.0.2.1/tcp/4001".into(),
                    "/ip4/192.0.2.1/udp/4001/quic-v1".into(),
                ],
            }),
        ),
        golden(
            "dial_back_result",
            "DialBackResult: request_id 9, outcome Failed",
            Message::DialBackResult(DialBackResult {
                request_id: 9,
                outcome: DialBackOutcome::Failed,
            }),
        ),
        golden(
            "listed",
            &format!("Listed: listed true, claim Some({ALICE_CLAIM})"),
            Message::Listed(Listed {
                listed: true,
                claim: Some(alice_claim()),
            }),
        ),
        golden(
            "listed_off",
            "Listed: listed false, claim None",
            Message::Listed(Listed {
                listed: false,
                claim: None,
            }),
        ),
        golden(
            "who_query",
            "WhoQuery: request_id 9",
            Message::WhoQuery(WhoQuery { request_id: 9 }),
        ),
        golden(
            "listing",
            "Listing: request_id 9, peers [alice named \"alice\", bob unnamed]",
            Message::Listing(Listing {
                request_id: 9,
                peers: vec![
                    ListedPeer {
                        node: id("alice"),
                        name: Some("alice".into()),
                    },
                    ListedPeer {
                        node: id("bob"),
                        name: None,
                    },
                ],
            }),
        ),
        golden(
            "routed_chat",
            &format!("Routed packet src alice, dst bob, {ENVELOPE}; body Chat: sealed to bob's chat key (Noise_N_25519_ChaChaPoly_SHA256, prologue \"skyhop/2 sealed-chat\", ephemeral secret key 32 bytes e1) the ChatMessage signed by alice: from alice, from_key alice's, to bob, msg_id 42, seq 1, sent_at 1700000000000000, body \"hello, bob\""),
            Message::Routed(packet("alice", "bob", Body::Chat(sealed.clone()))),
        ),
        golden(
            "routed_chat_ack",
            &format!("Routed packet src bob, dst alice, {ENVELOPE}; body ChatAck: ChatReceipt signed by bob: recipient bob, public_key bob's, author alice, msg_id 42, seq 1, hops 3"),
            Message::Routed(packet(
                "bob",
                "alice",
                Body::ChatAck(identity("bob").receipt(id("alice"), MsgId(42), 1, 3)),
            )),
        ),
        golden(
            "routed_not_found_no_record",
            &format!("Routed packet src sn1, dst alice, {ENVELOPE}; body NotFound: Absence signed by sn1: about 77, node bob, reason NoRecord, by sn1, public_key sn1's"),
            not_found(NotFoundReason::NoRecord),
        ),
        golden(
            "routed_not_found_offline",
            &format!("Routed packet src sn1, dst alice, {ENVELOPE}; body NotFound: Absence signed by sn1: about 77, node bob, reason Offline, by sn1, public_key sn1's"),
            not_found(NotFoundReason::Offline),
        ),
        golden(
            "routed_not_found_ttl_expired",
            &format!("Routed packet src sn1, dst alice, {ENVELOPE}; body NotFound: Absence signed by sn1: about 77, node bob, reason TtlExpired, by sn1, public_key sn1's"),
            not_found(NotFoundReason::TtlExpired),
        ),
        golden(
            "routed_not_found_no_route",
            &format!("Routed packet src sn1, dst alice, {ENVELOPE}; body NotFound: Absence signed by sn1: about 77, node bob, reason NoRoute, by sn1, public_key sn1's"),
            not_found(NotFoundReason::NoRoute),
        ),
        golden(
            "routed_not_found_unreachable",
            &format!("Routed packet src sn1, dst alice, {ENVELOPE}; body NotFound: Absence signed by sn1: about 77, node bob, reason Unreachable, by sn1, public_key sn1's"),
            not_found(NotFoundReason::Unreachable),
        ),
        golden(
            "routed_trace_probe",
            "Routed packet src alice, dst bob, id 0x0123456789abcdef, ttl 32, hops 2, location Toward(sn2), trace Some([alice, sn1]); body TraceProbe: probe_id 5",
            Message::Routed(Packet {
                hops: 2,
                location: LocationHop::Toward(id("sn2")),
                trace: Some(Trace(vec![id("alice"), id("sn1")])),
                ..packet("alice", "bob", Body::TraceProbe { probe_id: 5 })
            }),
        ),
        golden(
            "routed_trace_reply",
            "Routed packet src bob, dst alice, id 0x0123456789abcdef, ttl 32, hops 1, location Used, trace None; body TraceReply: probe_id 5, path [alice, sn1, sn2, bob]",
            Message::Routed(Packet {
                location: LocationHop::Used,
                ..packet(
                    "bob",
                    "alice",
                    Body::TraceReply {
                        probe_id: 5,
                        path: vec![id("alice"), id("sn1"), id("sn2"), id("bob")],
                    },
                )
            }),
        ),
        golden(
            "routed_publish",
            &format!("Routed packet src sn1, dst alice, {ENVELOPE}; body Publish: {ALICE_RECORD}"),
            Message::Routed(packet("sn1", "alice", Body::Publish(alice_record()))),
        ),
        golden(
            "routed_withdraw_left",
            &format!("Routed packet src sn1, dst alice, {ENVELOPE}; body Withdraw: node alice, sn sn1, seq 4, reason Left(Leave signed by alice: node alice, public_key alice's, sn sn1, seq 4)"),
            withdraw(WithdrawReason::Left(alice.leave(id("sn1"), 4))),
        ),
        golden(
            "routed_withdraw_lost",
            &format!("Routed packet src sn1, dst alice, {ENVELOPE}; body Withdraw: node alice, sn sn1, seq 4, reason Lost(SupernodeProof signed by sn1: public_key sn1's)"),
            Message::Routed(packet(
                "sn1",
                "alice",
                Body::Withdraw(identity("sn1").withdraw_lost(id("alice"), 4)),
            )),
        ),
        golden(
            "routed_location_query",
            &format!("Routed packet src bob, dst alice, {ENVELOPE}; body LocationQuery: request_id 9, node alice"),
            Message::Routed(packet(
                "bob",
                "alice",
                Body::LocationQuery {
                    request_id: 9,
                    node: id("alice"),
                },
            )),
        ),
        golden(
            "routed_location_reply",
            &format!("Routed packet src sn2, dst bob, {ENVELOPE}; body LocationReply: request_id 9, node alice, record Some({ALICE_RECORD}), absence None"),
            Message::Routed(packet(
                "sn2",
                "bob",
                Body::LocationReply {
                    request_id: 9,
                    node: id("alice"),
                    record: Some(alice_record()),
                    absence: None,
                },
            )),
        ),
        golden(
            "routed_location_reply_none",
            &format!("Routed packet src sn2, dst bob, {ENVELOPE}; body LocationReply: request_id 9, node alice, record None, absence None"),
            Message::Routed(packet(
                "sn2",
                "bob",
                Body::LocationReply {
                    request_id: 9,
                    node: id("alice"),
                    record: None,
                    absence: None,
                },
            )),
        ),
        golden(
            "routed_location_reply_offline",
            &format!("Routed packet src sn2, dst bob, {ENVELOPE}; body LocationReply: request_id 9, node alice, record None, absence Some(Absence signed by sn2: about 9, node alice, reason Offline, by sn2, public_key sn2's)"),
            Message::Routed(packet(
                "sn2",
                "bob",
                Body::LocationReply {
                    request_id: 9,
                    node: id("alice"),
                    record: None,
                    absence: Some(Box::new(identity("sn2").absence(9, id("alice"), NotFoundReason::Offline))),
                },
            )),
        ),
        golden(
            "routed_name_claim",
            &format!("Routed packet src alice, dst name_key(\"alice\"), {ENVELOPE}; body NameClaim: request_id 11, claim {ALICE_CLAIM}"),
            Message::Routed(Packet {
                dst: name_key("alice"),
                ..packet(
                    "alice",
                    "alice",
                    Body::NameClaim {
                        request_id: 11,
                        claim: alice_claim(),
                    },
                )
            }),
        ),
        golden(
            "routed_name_query",
            &format!("Routed packet src bob, dst name_key(\"alice\"), {ENVELOPE}; body NameQuery: request_id 12, name \"alice\""),
            Message::Routed(Packet {
                dst: name_key("alice"),
                ..packet(
                    "bob",
                    "bob",
                    Body::NameQuery {
                        request_id: 12,
                        name: "alice".to_string(),
                    },
                )
            }),
        ),
        golden(
            "routed_name_reply",
            &format!("Routed packet src sn2, dst bob, {ENVELOPE}; body NameReply: request_id 12, name \"alice\", claim Some({ALICE_CLAIM})"),
            Message::Routed(packet(
                "sn2",
                "bob",
                Body::NameReply {
                    request_id: 12,
                    name: "alice".to_string(),
                    claim: Some(alice_claim()),
                },
            )),
        ),
        golden(
            "routed_name_reply_none",
            &format!("Routed packet src sn2, dst bob, {ENVELOPE}; body NameReply: request_id 12, name \"carol\", claim None"),
            Message::Routed(packet(
                "sn2",
                "bob",
                Body::NameReply {
                    request_id: 12,
                    name: "carol".to_string(),
                    claim: None,
                },
            )),
        ),
        golden(
            "routed_mailbox_store",
            &format!("Routed packet src alice, dst bob, {ENVELOPE}; body MailboxStore: KeptChat author alice, node bob, msg_id 42, sealed the same bytes as routed_chat's body"),
            Message::Routed(packet(
                "alice",
                "bob",
                Body::MailboxStore(KeptChat {
                    author: id("alice"),
                    node: id("bob"),
                    msg_id: MsgId(42),
                    sealed: sealed.clone(),
                }),
            )),
        ),
        golden(
            "routed_mailbox_stored",
            &format!("Routed packet src sn2, dst alice, {ENVELOPE}; body MailboxStored: StoredNotice signed by sn2: msg_id 42, node bob, author alice, expires_at 1700604800000000, by sn2, public_key sn2's"),
            Message::Routed(packet(
                "sn2",
                "alice",
                Body::MailboxStored(identity("sn2").stored(
                    MsgId(42),
                    id("bob"),
                    id("alice"),
                    1_700_604_800_000_000,
                )),
            )),
        ),
        golden(
            "routed_mailbox_hand_over",
            &format!("Routed packet src sn2, dst bob, {ENVELOPE}; body MailboxHandOver: KeptChat author alice, node bob, msg_id 42, sealed the same bytes as routed_chat's body"),
            Message::Routed(packet(
                "sn2",
                "bob",
                Body::MailboxHandOver(KeptChat {
                    author: id("alice"),
                    node: id("bob"),
                    msg_id: MsgId(42),
                    sealed: sealed.clone(),
                }),
            )),
        ),
        golden(
            "routed_mailbox_taken",
            &format!("Routed packet src bob, dst sn2, {ENVELOPE}; body MailboxTaken: author alice, msg_id 42"),
            Message::Routed(packet(
                "bob",
                "sn2",
                Body::MailboxTaken {
                    author: id("alice"),
                    msg_id: MsgId(42),
                },
            )),
        ),
        golden(
            "routed_receipt_store",
            &format!("Routed packet src sn1, dst alice, {ENVELOPE}; body ReceiptStore: ChatReceipt signed by bob: recipient bob, public_key bob's, author alice, msg_id 42, seq 1, hops 3"),
            Message::Routed(packet(
                "sn1",
                "alice",
                Body::ReceiptStore(identity("bob").receipt(id("alice"), MsgId(42), 1, 3)),
            )),
        ),
        golden(
            "routed_receipt_hand_over",
            &format!("Routed packet src sn2, dst alice, {ENVELOPE}; body ReceiptHandOver: ChatReceipt signed by bob: recipient bob, public_key bob's, author alice, msg_id 42, seq 1, hops 3"),
            Message::Routed(packet(
                "sn2",
                "alice",
                Body::ReceiptHandOver(identity("bob").receipt(id("alice"), MsgId(42), 1, 3)),
            )),
        ),
        golden(
            "routed_datagram",
            &format!("Routed packet src alice, dst bob, {ENVELOPE}; body Datagram: bytes de ad be ef"),
            Message::Routed(packet(
                "alice",
                "bob",
                Body::Datagram(vec![0xde, 0xad, 0xbe, 0xef]),
            )),
        ),
    ]
}

/// A frame a receiver must refuse, and how.
struct Bad {
    name: &'static str,
    description: String,
    frame: Vec<u8>,
    expected: DecodeError,
}

/// The error's variant name, as the description line spells it.
fn error_name(err: &DecodeError) -> &'static str {
    match err {
        DecodeError::TooLong { .. } => "TooLong",
        DecodeError::Truncated => "Truncated",
        DecodeError::UnknownVersion { .. } => "UnknownVersion",
        DecodeError::UnknownTag(_) => "UnknownTag",
        DecodeError::Malformed(_) => "Malformed",
        DecodeError::TrailingBytes(_) => "TrailingBytes",
        DecodeError::Limit(_) => "Limit",
    }
}

/// Whether `got` is the error a vector expects: exactly for errors whose
/// fields are part of the contract, by variant for those that carry a
/// human-readable explanation.
fn same_error(got: &DecodeError, expected: &DecodeError) -> bool {
    match (got, expected) {
        (DecodeError::UnknownTag(_), DecodeError::UnknownTag(_))
        | (DecodeError::Malformed(_), DecodeError::Malformed(_)) => true,
        _ => got == expected,
    }
}

fn bad(name: &'static str, what: &str, frame: Vec<u8>, expected: DecodeError) -> Bad {
    let detail = match &expected {
        DecodeError::TooLong { len } => format!("TooLong {{ len: {len} }}"),
        DecodeError::UnknownVersion { got } => format!("UnknownVersion {{ got: {got} }}"),
        DecodeError::TrailingBytes(n) => format!("TrailingBytes({n})"),
        DecodeError::Limit(limit) => format!("Limit({limit:?})"),
        other => error_name(other).to_string(),
    };
    Bad {
        name,
        description: format!("{what}; decode error: {detail}"),
        frame,
        expected,
    }
}

fn frame_of(body: &[u8]) -> Vec<u8> {
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(body);
    frame
}

/// The body of a valid message, to be damaged by hand.
fn body_of(msg: &Message) -> Vec<u8> {
    encode(msg).expect("a valid message")[FRAME_HEADER_LEN..].to_vec()
}

/// Serializes without the codec's limit checks: what a hostile peer sends.
fn crafted_body(msg: &Message) -> Vec<u8> {
    bincode::DefaultOptions::new()
        .with_varint_encoding()
        .with_little_endian()
        .serialize(msg)
        .expect("serializing into a Vec cannot fail")
}

/// A routed packet (location Unused, no trace) in the v2 envelope, without
/// the codec's limit checks, written from PROTOCOL.md's layout.
fn crafted_routed(p: &Packet) -> Vec<u8> {
    let body = bincode::DefaultOptions::new()
        .with_varint_encoding()
        .with_little_endian()
        .serialize(&p.body)
        .expect("serializing into a Vec cannot fail");
    [
        &[10][..],
        &p.dst.0,
        &p.src.0,
        &p.id.0.to_le_bytes(),
        &[p.ttl, p.hops, 0],
        &(body.len() as u16).to_le_bytes(),
        &body,
    ]
    .concat()
}

fn bads() -> Vec<Bad> {
    let heartbeat = body_of(&Message::Heartbeat(Heartbeat { nonce: 1000 }));
    assert_eq!(heartbeat, [5, 0xfb, 0xe8, 0x03]);
    // Routed, dst, src, id (8 bytes), ttl, hops: the next byte is `flags`,
    // then the body length and the body.
    let probe = body_of(&Message::Routed(packet(
        "alice",
        "bob",
        Body::TraceProbe { probe_id: 5 },
    )));
    let flags_at = 1 + 32 + 32 + 8 + 1 + 1;
    let body_len_at = flags_at + 1;
    assert_eq!(
        probe[flags_at..],
        [0, 2, 0, 3, 5],
        "flags 0, body length 2, TraceProbe 5"
    );
    let reply_none = body_of(&Message::Routed(packet(
        "sn2",
        "bob",
        Body::LocationReply {
            request_id: 9,
            node: id("alice"),
            record: None,
            absence: None,
        },
    )));
    assert_eq!(
        reply_none[reply_none.len() - 2..],
        [0, 0],
        "record None, absence None"
    );

    let hello = Hello {
        version: PROTOCOL_VERSION,
        role: Role::Supernode,
        id: id("sn1"),
        listen_addrs: vec![],
        agent: "ab".to_string(),
    };
    let mut bad_utf8 = body_of(&Message::Hello(hello.clone()));
    let agent_at = bad_utf8.len() - 2;
    assert_eq!(bad_utf8[agent_at - 1..], [2, b'a', b'b']);
    bad_utf8[agent_at..].copy_from_slice(&[0xc3, 0x28]);

    let too_many_addrs = crafted_body(&Message::Hello(Hello {
        listen_addrs: vec!["/ip4/192.0.2.3/tcp/4001".to_string(); MAX_ADDRS + 1],
        ..hello.clone()
    }));

    let long_sealed = SealedChat(vec![0; MAX_SEALED_CHAT + 1]);

    vec![
        bad(
            "bad_unknown_tag",
            "Message tag 17, one past Listing (16)",
            frame_of(&[17]),
            DecodeError::UnknownTag(String::new()),
        ),
        bad(
            "bad_unknown_body_tag",
            "Routed packet src alice, dst bob whose Body tag is 19, one past ReceiptHandOver (18), then the TraceProbe's probe_id 5",
            frame_of(&[&probe[..probe.len() - 2], &[19, 5]].concat()),
            DecodeError::UnknownTag(String::new()),
        ),
        bad(
            "bad_version",
            "Hello with version 1 (a peer of protocol version 1), otherwise as hello.hex",
            encode(&Message::Hello(Hello {
                version: 1,
                role: Role::Supernode,
                id: id("sn1"),
                listen_addrs: vec![SN1_ADDR.to_string()],
                agent: AGENT.to_string(),
            }))
            .expect("encodes"),
            DecodeError::UnknownVersion { got: 1 },
        ),
        bad(
            "bad_trailing",
            "Heartbeat nonce 1000 followed by one 0x00 byte inside the frame",
            frame_of(&[&heartbeat[..], &[0]].concat()),
            DecodeError::TrailingBytes(1),
        ),
        bad(
            "bad_oversize",
            "Length prefix 65536, one over the limit; refused from the header alone, no body follows",
            (MAX_FRAME_BODY as u32 + 1).to_be_bytes().to_vec(),
            DecodeError::TooLong {
                len: MAX_FRAME_BODY + 1,
            },
        ),
        bad(
            "bad_truncated",
            "Heartbeat nonce 1000 missing the last byte of its 3-byte nonce varint; the length prefix (3) matches the short body",
            frame_of(&heartbeat[..3]),
            DecodeError::Truncated,
        ),
        bad(
            "bad_varint",
            "Heartbeat whose nonce starts with 0xff, a varint marker byte that bincode 1.3.3 reserves",
            frame_of(&[5, 0xff, 0, 0, 0, 0, 0, 0, 0, 0]),
            DecodeError::Malformed(String::new()),
        ),
        bad(
            "bad_option_tag",
            "As routed_location_reply_none.hex, but its record Option byte is 2 (only 0 and 1 exist)",
            frame_of(&[&reply_none[..reply_none.len() - 2], &[2, 0]].concat()),
            DecodeError::Malformed(String::new()),
        ),
        bad(
            "bad_location_tag",
            "Routed packet src alice, dst bob whose flags byte says location hop 3 (only 0..=2 exist)",
            frame_of(&[&probe[..flags_at], &[3], &probe[flags_at + 1..]].concat()),
            DecodeError::UnknownTag(String::new()),
        ),
        bad(
            "bad_reserved_flags",
            "Routed packet src alice, dst bob whose flags byte is 0x08, a reserved bit",
            frame_of(&[&probe[..flags_at], &[8], &probe[flags_at + 1..]].concat()),
            DecodeError::Malformed(String::new()),
        ),
        bad(
            "bad_body_length",
            "Routed packet src alice, dst bob whose body length says 3 where 2 body bytes end the frame",
            frame_of(&[&probe[..body_len_at], &[3, 0], &probe[body_len_at + 2..]].concat()),
            DecodeError::Truncated,
        ),
        bad(
            "bad_utf8",
            "Hello version 2, role Supernode, id sn1, listen_addrs [], agent of the 2 bytes c3 28 (not UTF-8)",
            frame_of(&bad_utf8),
            DecodeError::Malformed(String::new()),
        ),
        bad(
            "bad_too_many_addrs",
            "Hello version 2, role Supernode, id sn1, agent \"ab\" with 9 listen_addrs \"/ip4/192.0.2.3/tcp/4001\" (limit 8); refused while the list decodes",
            frame_of(&too_many_addrs),
            DecodeError::Malformed(String::new()),
        ),
        bad(
            "bad_sealed_chat_too_long",
            "Routed packet src alice, dst bob, id 0x0123456789abcdef, ttl 32, hops 1, location Unused, trace None; body Chat of 4609 zero bytes (limit 4608)",
            frame_of(&crafted_routed(&packet("alice", "bob", Body::Chat(long_sealed)))),
            DecodeError::Limit(LimitError::SealedChatTooLong(MAX_SEALED_CHAT + 1)),
        ),
        bad(
            "bad_lifetime",
            "Publish of a LocationRecord signed by alice: sn sn1, sn_addrs [], seq 3, lifetime_s 3601 (limit 3600)",
            frame_of(&crafted_body(&Message::Publish(
                identity("alice").location_record(id("sn1"), vec![], 3, MAX_RECORD_LIFETIME_S + 1),
            ))),
            DecodeError::Limit(LimitError::LifetimeTooLong(MAX_RECORD_LIFETIME_S + 1)),
        ),
    ]
}

/// The file's two lines: `# description` and the frame's hex.
fn vector_file(description: &str, frame: &[u8]) -> String {
    assert!(!description.contains('\n'), "a description is one line");
    format!("# {description}\n{}\n", hex::encode(frame))
}

fn read_vector(name: &str) -> (String, Vec<u8>) {
    let path = vectors_dir().join(format!("{name}.hex"));
    let text = fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; generate it with SKYHOP_BLESS=1 cargo test -p skyhop-protocol --test vectors",
            path.display()
        )
    });
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines.len(),
        2,
        "{name}.hex: a description line and a hex line"
    );
    let description = lines[0]
        .strip_prefix("# ")
        .unwrap_or_else(|| panic!("{name}.hex: the first line starts with '# '"));
    let frame = hex::decode(lines[1]).unwrap_or_else(|e| panic!("{name}.hex: bad hex: {e}"));
    (description.to_string(), frame)
}

/// Writes the file when blessing, else checks that it holds `frame`.
fn check_or_bless(name: &str, description: &str, frame: &[u8]) {
    let path = vectors_dir().join(format!("{name}.hex"));
    let expected = vector_file(description, frame);
    if blessing() {
        fs::create_dir_all(vectors_dir()).expect("create tests/vectors");
        fs::write(&path, &expected).expect("write the vector");
        return;
    }
    let (file_description, file_frame) = read_vector(name);
    assert_eq!(
        file_description, description,
        "{name}.hex: description changed; rerun with SKYHOP_BLESS=1 if intended"
    );
    assert_eq!(
        hex::encode(&file_frame),
        hex::encode(frame),
        "{name}.hex: the encoding changed: this is a wire format change; rerun with \
         SKYHOP_BLESS=1 only if it is intended, and update PROTOCOL.md"
    );
}

#[test]
fn every_message_encodes_to_its_vector_and_back() {
    let goldens = goldens();
    let mut kinds = BTreeSet::new();
    for g in &goldens {
        let frame = encode(&g.message).unwrap_or_else(|e| panic!("{}: {e}", g.name));
        check_or_bless(g.name, &g.description, &frame);

        let (_, file_frame) = read_vector(g.name);
        assert_eq!(
            decode_frame(&file_frame).as_ref(),
            Ok(&g.message),
            "{}",
            g.name
        );
        let mut dec = FrameDecoder::new();
        dec.push(&file_frame);
        assert_eq!(
            dec.next_message(),
            Ok(Some(g.message.clone())),
            "{}",
            g.name
        );
        kinds.insert(g.message.kind());
    }
    // At least one vector of every kind: 16 link messages besides `Routed`
    // and 19 bodies, with "publish" naming both a link message and a body.
    assert_eq!(kinds.len(), 34, "kinds covered: {kinds:?}");
}

#[test]
fn every_bad_vector_is_refused_with_its_error() {
    for b in bads() {
        check_or_bless(b.name, &b.description, &b.frame);
        let (description, file_frame) = read_vector(b.name);
        assert!(
            description.contains(&format!("decode error: {}", error_name(&b.expected))),
            "{}: the description names the error",
            b.name
        );
        let got = decode_frame(&file_frame);
        assert!(
            matches!(&got, Err(e) if same_error(e, &b.expected)),
            "{}: expected {:?}, got {got:?}",
            b.name,
            b.expected
        );
        // A stream decoder refuses it the same way once the frame is whole.
        let mut dec = FrameDecoder::new();
        dec.push(&file_frame);
        let streamed = dec.next_message();
        assert!(
            matches!(&streamed, Err(e) if same_error(e, &b.expected)),
            "{}: streamed, expected {:?}, got {streamed:?}",
            b.name,
            b.expected
        );
    }
}

/// Every signature in the vectors verifies against its signer's key, so
/// another implementation can check its signing code against them.
#[test]
fn signatures_in_the_vectors_verify() {
    let mut checked = 0;
    for g in goldens() {
        // While blessing, another test may be rewriting the file right now.
        let frame = if blessing() {
            encode(&g.message).expect("encodes")
        } else {
            read_vector(g.name).1
        };
        let msg = decode_frame(&frame).expect("a golden vector decodes");
        let mut check = |r: Result<(), SignatureError>| {
            assert_eq!(r, Ok(()), "{}", g.name);
            checked += 1;
        };
        match &msg {
            Message::Leave(l) => check(verify_leave(l)),
            Message::Publish(r) => check(verify_record(r)),
            Message::Routed(p) => match &p.body {
                Body::Chat(sealed) => {
                    let chat = identity("bob").open_chat(sealed).expect("sealed to bob");
                    check(verify_chat(&chat))
                }
                Body::ChatAck(r) | Body::ReceiptStore(r) | Body::ReceiptHandOver(r) => {
                    check(verify_receipt(r))
                }
                Body::NotFound(a) => check(verify_absence(a)),
                Body::LocationReply {
                    absence: Some(a), ..
                } => check(verify_absence(a)),
                Body::Publish(r) => check(verify_record(r)),
                Body::Withdraw(Withdraw {
                    reason: WithdrawReason::Left(l),
                    ..
                }) => check(verify_leave(l)),
                Body::Withdraw(
                    w @ Withdraw {
                        reason: WithdrawReason::Lost(proof),
                        ..
                    },
                ) => check(verify_withdraw_lost(w, proof)),
                Body::LocationReply {
                    record: Some(r), ..
                } => check(verify_record(r)),
                Body::NameClaim { claim, .. }
                | Body::NameReply {
                    claim: Some(claim), ..
                } => check(verify_name_claim(claim)),
                Body::MailboxStored(n) => check(verify_stored(n)),
                _ => {}
            },
            _ => {}
        }
    }
    assert_eq!(
        checked, 19,
        "leave, publish, routed chat, its receipt, five not-founds, publish, two withdraws, reply and offline reply, name claim and name reply, a stored notice, a kept and a handed-over receipt"
    );
}

/// `identities.txt`: per test identity, its secret, public key, PeerId bytes
/// and NodeId, and the derivation PROTOCOL.md states holds for each.
#[test]
fn identities_derive_as_documented() {
    let mut text = String::from(
        "# name secret_key public_key peer_id_bytes node_id chat_secret chat_key (all hex); \
         node_id = SHA-256(peer_id_bytes), peer_id_bytes = 00 24 08 01 12 20 || public_key, \
         chat_secret = SHA-256(\"skyhop/2 chat-key\" 00 || secret_key), chat_key = X25519(chat_secret, 9)\n",
    );
    for (name, byte) in IDENTITIES {
        let who = identity(name);
        let peer_id = [&[0x00, 0x24, 0x08, 0x01, 0x12, 0x20][..], &who.public_key()].concat();
        assert_eq!(
            peer_id,
            who.libp2p_keypair().public().to_peer_id().to_bytes(),
            "{name}: libp2p's PeerId bytes are the identity multihash of the protobuf key"
        );
        let node_id: [u8; 32] = Sha256::digest(&peer_id).into();
        assert_eq!(NodeId(node_id), who.id(), "{name}");
        assert_eq!(NodeId::from_ed25519(&who.public_key()), Some(who.id()));
        let chat_secret: [u8; 32] = Sha256::new()
            .chain_update(b"skyhop/2 chat-key\0")
            .chain_update([byte; 32])
            .finalize()
            .into();
        assert_eq!(
            seal::chat_public_key(&chat_secret),
            who.chat_key(),
            "{name}"
        );
        text += &format!(
            "{name} {} {} {} {} {} {}\n",
            hex::encode([byte; 32]),
            hex::encode(who.public_key()),
            hex::encode(&peer_id),
            who.id().to_hex(),
            hex::encode(chat_secret),
            hex::encode(who.chat_key()),
        );
    }
    let path = vectors_dir().join("identities.txt");
    if blessing() {
        fs::write(&path, &text).expect("write identities.txt");
    }
    assert_eq!(
        fs::read_to_string(&path).expect("identities.txt exists"),
        text,
        "identities.txt changed; rerun with SKYHOP_BLESS=1 if intended"
    );
}

/// No file in `tests/vectors/` is left over from a message that no longer
/// exists, and no vector is missing.
#[test]
fn the_vector_directory_holds_exactly_the_vectors() {
    let mut expected: BTreeSet<String> = goldens()
        .iter()
        .map(|g| format!("{}.hex", g.name))
        .chain(bads().iter().map(|b| format!("{}.hex", b.name)))
        .collect();
    expected.insert("identities.txt".to_string());
    let found: BTreeSet<String> = fs::read_dir(vectors_dir())
        .expect("tests/vectors exists")
        .map(|e| {
            e.expect("a directory entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    if blessing() {
        for stale in found.difference(&expected) {
            fs::remove_file(vectors_dir().join(stale)).expect("remove a stale vector");
        }
        return;
    }
    assert_eq!(found, expected);
}

/// A varint as PROTOCOL.md describes it, written without bincode.
fn varint(v: u64) -> Vec<u8> {
    match v {
        0..=250 => vec![v as u8],
        251..=0xffff => [&[251][..], &(v as u16).to_le_bytes()].concat(),
        0x1_0000..=0xffff_ffff => [&[252][..], &(v as u32).to_le_bytes()].concat(),
        _ => [&[253][..], &v.to_le_bytes()].concat(),
    }
}

fn string(s: &str) -> Vec<u8> {
    [varint(s.len() as u64), s.as_bytes().to_vec()].concat()
}

/// The worked examples of PROTOCOL.md, built from its layout rules by hand.
#[test]
fn worked_examples_follow_the_documented_layout() {
    let sn1 = id("sn1");
    let hello_body = [
        vec![0],          // Message tag 0: Hello
        varint(2),        // version
        vec![1],          // Role tag 1: Supernode
        sn1.0.to_vec(),   // id, 32 raw bytes
        varint(1),        // listen_addrs: one string
        string(SN1_ADDR), // "/ip4/192.0.2.3/tcp/4001"
        string(AGENT),    // "skyhop/0.1.0"
    ]
    .concat();
    assert_eq!(read_vector("hello").1, frame_of(&hello_body));
    assert_eq!(
        read_vector("heartbeat").1,
        [0, 0, 0, 4, 5, 0xfb, 0xe8, 0x03],
        "length 4, tag 5, nonce 1000 as 251 then u16 LE"
    );

    let ack = read_vector("routed_chat_ack").1;
    let signature = &ack[ack.len() - 64..];
    let receipt = [
        vec![1],                               // Body tag 1: ChatAck
        id("bob").0.to_vec(),                  // recipient
        identity("bob").public_key().to_vec(), // its public key
        id("alice").0.to_vec(),                // author
        varint(42),                            // msg_id
        varint(1),                             // seq
        vec![3],                               // hops: raw u8
        signature.to_vec(),                    // 64 raw bytes
    ]
    .concat();
    let ack_body = [
        vec![10],                                         // Message tag 10: Routed
        id("alice").0.to_vec(),                           // dst
        id("bob").0.to_vec(),                             // src
        0x0123_4567_89ab_cdef_u64.to_le_bytes().to_vec(), // id: u64 LE, fixed
        vec![32, 1],                                      // ttl, hops
        vec![0],                                          // flags: location Unused, no trace
        (receipt.len() as u16).to_le_bytes().to_vec(),    // body length, u16 LE
        receipt,
    ]
    .concat();
    assert_eq!(ack, frame_of(&ack_body));
    assert_eq!(varint(70_000), [252, 0x70, 0x11, 0x01, 0x00]);
    assert_eq!(varint(256), [251, 0x00, 0x01]);
}

/// What is signed, built by hand from PROTOCOL.md, equals what the crate
/// signs, and the vectors' signatures verify over the hand-built bytes.
#[test]
fn signed_bytes_follow_the_documented_layout() {
    let verify = |key: &PublicKey, msg: &[u8], sig: &Signature| {
        libp2p_identity::ed25519::PublicKey::try_from_bytes(key)
            .expect("a valid key")
            .verify(msg, &sig.0)
    };
    // A name claim: domain, name (varint length + UTF-8), node, key, seq,
    // lifetime_s (varints).
    let Ok(Message::Routed(Packet {
        body: Body::NameClaim { claim, .. },
        ..
    })) = decode_frame(&read_vector("routed_name_claim").1)
    else {
        panic!("routed_name_claim.hex holds a claim");
    };
    let signed = [
        &b"skyhop/2 name-claim\0"[..],
        &string(&claim.name),
        &claim.node.0,
        &claim.public_key,
        &varint(claim.seq),
        &varint(u64::from(claim.lifetime_s)),
    ]
    .concat();
    assert_eq!(signed, sign::name_claim_signed_bytes(&claim));
    assert!(verify(&claim.public_key, &signed, &claim.signature));
    // The key a name is stored under.
    let key: [u8; 32] = Sha256::digest([&b"skyhop/2 name\0"[..], b"alice"].concat()).into();
    assert_eq!(name_key("alice").0, key);

    let frame = read_vector("leave").1;
    let Ok(Message::Leave(leave)) = decode_frame(&frame) else {
        panic!("leave.hex holds a Leave");
    };
    let signed = [
        &b"skyhop/2 leave\0"[..],
        &leave.node.0,
        &leave.public_key,
        &leave.sn.0,
        &varint(leave.seq),
    ]
    .concat();
    assert_eq!(signed, sign::leave_signed_bytes(&leave));
    // The signed fields are the Leave's body bytes after the tag, minus the
    // signature: the same encoding on the wire and under the signature.
    assert_eq!(signed[15..], frame[5..frame.len() - 64]);
    assert!(verify(&leave.public_key, &signed, &leave.signature));

    let Ok(Message::Publish(record)) = decode_frame(&read_vector("publish").1) else {
        panic!("publish.hex holds a Publish");
    };
    let mut signed = [
        &b"skyhop/2 location-record\0"[..],
        &record.node.0,
        &record.public_key,
        &record.chat_key,
        &record.sn.0,
        &varint(record.sn_addrs.len() as u64),
    ]
    .concat();
    for addr in &record.sn_addrs {
        signed.extend(string(addr));
    }
    signed.extend(varint(record.backups.len() as u64));
    for backup in &record.backups {
        signed.extend(backup.0);
    }
    signed.extend(varint(record.seq));
    signed.extend(varint(u64::from(record.lifetime_s)));
    assert_eq!(signed, sign::record_signed_bytes(&record));
    assert!(verify(&record.public_key, &signed, &record.signature));

    let Ok(Message::Routed(Packet {
        body: Body::Chat(sealed),
        ..
    })) = decode_frame(&read_vector("routed_chat").1)
    else {
        panic!("routed_chat.hex holds a chat");
    };
    let chat = identity("bob").open_chat(&sealed).expect("sealed to bob");
    let signed = [
        &b"skyhop/2 chat\0"[..],
        &chat.from.0,
        &chat.from_key,
        &chat.to.0,
        &varint(chat.msg_id.0),
        &varint(chat.seq),
        &varint(chat.sent_at),
        &string(&chat.body),
    ]
    .concat();
    assert_eq!(signed, sign::chat_signed_bytes(&chat));
    assert!(verify(&chat.from_key, &signed, &chat.signature));

    let Ok(Message::Routed(Packet {
        body: Body::ChatAck(receipt),
        ..
    })) = decode_frame(&read_vector("routed_chat_ack").1)
    else {
        panic!("routed_chat_ack.hex holds a receipt");
    };
    let signed = [
        &b"skyhop/2 chat-receipt\0"[..],
        &receipt.recipient.0,
        &receipt.public_key,
        &receipt.author.0,
        &varint(receipt.msg_id.0),
        &varint(receipt.seq),
        &[receipt.hops],
    ]
    .concat();
    assert_eq!(signed, sign::receipt_signed_bytes(&receipt));
    assert!(verify(&receipt.public_key, &signed, &receipt.signature));

    let Ok(Message::Routed(Packet {
        body: Body::MailboxStored(notice),
        ..
    })) = decode_frame(&read_vector("routed_mailbox_stored").1)
    else {
        panic!("routed_mailbox_stored.hex holds a stored notice");
    };
    let signed = [
        &b"skyhop/2 stored\0"[..],
        &varint(notice.msg_id.0),
        &notice.node.0,
        &notice.author.0,
        &varint(notice.expires_at),
        &notice.by.0,
        &notice.public_key,
    ]
    .concat();
    assert_eq!(signed, sign::stored_signed_bytes(&notice));
    assert!(verify(&notice.public_key, &signed, &notice.signature));
}

/// The sealed chat of `routed_chat.hex`, both ways: sealing the documented
/// chat with the documented keys gives the vector's bytes, and bob's chat
/// secret (identities.txt) opens them into that chat; the plaintext is the
/// chat's wire encoding, and the first 32 bytes are the ephemeral public key.
#[test]
fn the_sealed_chat_vector_reproduces_from_its_keys() {
    let Ok(Message::Routed(Packet {
        body: Body::Chat(sealed),
        ..
    })) = decode_frame(&read_vector("routed_chat").1)
    else {
        panic!("routed_chat.hex holds a chat");
    };
    let chat = alice_chat();
    let again = seal::seal(&chat, &identity("bob").chat_key(), CHAT_EPHEMERAL).expect("seals");
    assert_eq!(
        again, sealed,
        "sealing is deterministic in the ephemeral key"
    );
    assert_eq!(sealed.0[..32], seal::chat_public_key(&CHAT_EPHEMERAL));
    let plaintext_len = crafted_fields(&chat).len();
    assert_eq!(sealed.0.len(), 32 + plaintext_len + 16);
    assert_eq!(identity("bob").open_chat(&sealed), Ok(chat));
    assert_eq!(
        identity("alice").open_chat(&sealed),
        Err(SealError::DoesNotOpen),
        "only bob's key opens it"
    );
}

fn crafted_fields<T: serde::Serialize>(value: &T) -> Vec<u8> {
    bincode::DefaultOptions::new()
        .with_varint_encoding()
        .with_little_endian()
        .serialize(value)
        .expect("serializing into a Vec cannot fail")
}
