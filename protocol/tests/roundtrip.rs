//! Property tests of the frame codec: every message a node can send comes
//! back unchanged, however the stream is cut; every message that breaks a
//! wire limit is refused on both sides of the wire.
//!
//! The strategies below cover every `Message` variant, every `Body` variant,
//! every nested enum variant and every varint width, and stay inside the
//! limits of `limits.rs` (with the largest allowed values generated now and
//! then, not only small ones). Signatures and keys are random bytes: to the
//! codec they are just 64 and 32 raw bytes.

use bincode::Options;
use proptest::collection::vec;
use proptest::prelude::*;
use skyhop_protocol::*;

// ---------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------

/// A u64 drawn from each varint width in turn (1, 3, 5 and 9 bytes), so that
/// every encoding path is exercised, not only the 9-byte one that a uniform
/// draw almost always gives.
fn varint_u64() -> impl Strategy<Value = u64> {
    prop_oneof![
        0u64..=250,
        251u64..=0xffff,
        0x1_0000u64..=0xffff_ffff,
        0x1_0000_0000u64..=u64::MAX,
        Just(u64::MAX),
    ]
}

fn varint_u16() -> impl Strategy<Value = u16> {
    prop_oneof![0u16..=250, 251u16..=u16::MAX, Just(u16::MAX)]
}

fn node_id() -> impl Strategy<Value = NodeId> {
    any::<[u8; 32]>().prop_map(NodeId)
}

fn msg_id() -> impl Strategy<Value = MsgId> {
    varint_u64().prop_map(MsgId)
}

fn public_key() -> impl Strategy<Value = PublicKey> {
    any::<[u8; 32]>()
}

fn signature() -> impl Strategy<Value = Signature> {
    vec(any::<u8>(), 64).prop_map(|v| Signature(v.try_into().expect("64 bytes drawn")))
}

/// Any printable Unicode text whose UTF-8 length is at most `max_bytes`,
/// sometimes exactly `max_bytes` of ASCII or of two-byte characters.
fn text(max_bytes: usize) -> impl Strategy<Value = String> {
    prop_oneof![
        6 => "\\PC{0,24}".prop_filter("within the byte limit", move |s| s.len() <= max_bytes),
        1 => Just("a".repeat(max_bytes)),
        1 => Just("é".repeat(max_bytes / 2)),
    ]
}

fn addr() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => Just("/ip4/192.0.2.7/tcp/4001".to_string()),
        4 => text(MAX_ADDR_LEN),
    ]
}

fn addrs() -> impl Strategy<Value = Vec<String>> {
    prop_oneof![vec(addr(), 0..=2), vec(addr(), MAX_ADDRS..=MAX_ADDRS)]
}

fn peer_info() -> impl Strategy<Value = PeerInfo> {
    (node_id(), addrs()).prop_map(|(id, addrs)| PeerInfo { id, addrs })
}

/// Up to the peer limit; a full list of peers with full address lists would
/// exceed the frame limit, so the large lists carry short addresses.
fn peers() -> impl Strategy<Value = Vec<PeerInfo>> {
    let small_peer = (node_id(), vec("/ip6/::1/tcp/[0-9]{1,5}", 0..=2))
        .prop_map(|(id, addrs)| PeerInfo { id, addrs });
    prop_oneof![
        vec(peer_info(), 0..=3),
        vec(small_peer, MAX_PEERS_PER_MESSAGE..=MAX_PEERS_PER_MESSAGE),
    ]
}

fn role() -> impl Strategy<Value = Role> {
    prop_oneof![Just(Role::Ordinary), Just(Role::Supernode)]
}

fn hello() -> impl Strategy<Value = Hello> {
    (role(), node_id(), addrs(), text(MAX_AGENT_LEN)).prop_map(|(role, id, listen_addrs, agent)| {
        Hello {
            version: PROTOCOL_VERSION,
            role,
            id,
            listen_addrs,
            agent,
        }
    })
}

fn leave() -> impl Strategy<Value = Leave> {
    (
        node_id(),
        public_key(),
        node_id(),
        varint_u64(),
        signature(),
    )
        .prop_map(|(node, public_key, sn, seq, signature)| Leave {
            node,
            public_key,
            sn,
            seq,
            signature,
        })
}

fn user_name() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9_-]{1,31}"
}

fn name_claim() -> impl Strategy<Value = NameClaim> {
    (
        user_name(),
        node_id(),
        public_key(),
        varint_u64(),
        prop_oneof![0u32..=250, 251..=MAX_NAME_LIFETIME_S],
        signature(),
    )
        .prop_map(
            |(name, node, public_key, seq, lifetime_s, signature)| NameClaim {
                name,
                node,
                public_key,
                seq,
                lifetime_s,
                signature,
            },
        )
}

fn location_record() -> impl Strategy<Value = LocationRecord> {
    (
        node_id(),
        public_key(),
        public_key(),
        node_id(),
        addrs(),
        prop_oneof![
            vec(node_id(), 0..=2),
            vec(node_id(), MAX_RECORD_BACKUPS..=MAX_RECORD_BACKUPS)
        ],
        varint_u64(),
        prop_oneof![0u32..=250, 251..=MAX_RECORD_LIFETIME_S],
        signature(),
    )
        .prop_map(
            |(node, public_key, chat_key, sn, sn_addrs, backups, seq, lifetime_s, signature)| {
                LocationRecord {
                    node,
                    public_key,
                    chat_key,
                    sn,
                    sn_addrs,
                    backups,
                    seq,
                    lifetime_s,
                    signature,
                }
            },
        )
}

fn chat_message() -> impl Strategy<Value = ChatMessage> {
    (
        (node_id(), public_key(), node_id(), msg_id()),
        (varint_u64(), varint_u64(), text(MAX_CHAT_BODY), signature()),
    )
        .prop_map(
            |((from, from_key, to, msg_id), (seq, sent_at, body, signature))| ChatMessage {
                from,
                from_key,
                to,
                msg_id,
                seq,
                sent_at,
                body,
                signature,
            },
        )
}

/// Sealed chats: opaque bytes to the codec, up to the limit.
fn sealed_chat() -> impl Strategy<Value = SealedChat> {
    prop_oneof![
        8 => vec(any::<u8>(), 0..300).prop_map(SealedChat),
        1 => Just(SealedChat((0..MAX_SEALED_CHAT).map(|i| (i % 251) as u8).collect())),
    ]
}

fn receipt() -> impl Strategy<Value = ChatReceipt> {
    (
        (node_id(), public_key(), node_id(), msg_id()),
        (varint_u64(), any::<u8>(), signature()),
    )
        .prop_map(
            |((recipient, public_key, author, msg_id), (seq, hops, signature))| ChatReceipt {
                recipient,
                public_key,
                author,
                msg_id,
                seq,
                hops,
                signature,
            },
        )
}

fn absence() -> impl Strategy<Value = Absence> {
    (
        (varint_u64(), node_id(), not_found_reason()),
        (node_id(), public_key(), signature()),
    )
        .prop_map(
            |((about, node, reason), (by, public_key, signature))| Absence {
                about,
                node,
                reason,
                by,
                public_key,
                signature,
            },
        )
}

fn kept_chat() -> impl Strategy<Value = KeptChat> {
    (node_id(), node_id(), msg_id(), sealed_chat()).prop_map(|(author, node, msg_id, sealed)| {
        KeptChat {
            author,
            node,
            msg_id,
            sealed,
        }
    })
}

fn stored_notice() -> impl Strategy<Value = StoredNotice> {
    (
        (msg_id(), node_id(), node_id(), varint_u64()),
        (node_id(), public_key(), signature()),
    )
        .prop_map(
            |((msg_id, node, author, expires_at), (by, public_key, signature))| StoredNotice {
                msg_id,
                node,
                author,
                expires_at,
                by,
                public_key,
                signature,
            },
        )
}

fn not_found_reason() -> impl Strategy<Value = NotFoundReason> {
    prop_oneof![
        Just(NotFoundReason::NoRecord),
        Just(NotFoundReason::Offline),
        Just(NotFoundReason::TtlExpired),
        Just(NotFoundReason::NoRoute),
        Just(NotFoundReason::Unreachable),
    ]
}

fn withdraw() -> impl Strategy<Value = Withdraw> {
    let reason = prop_oneof![
        leave().prop_map(WithdrawReason::Left),
        (public_key(), signature()).prop_map(|(public_key, signature)| {
            WithdrawReason::Lost(SupernodeProof {
                public_key,
                signature,
            })
        }),
    ];
    (node_id(), node_id(), varint_u64(), reason).prop_map(|(node, sn, seq, reason)| Withdraw {
        node,
        sn,
        seq,
        reason,
    })
}

fn datagram() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        8 => vec(any::<u8>(), 0..300),
        1 => Just((0..MAX_DATAGRAM).map(|i| (i % 251) as u8).collect()),
    ]
}

fn hops() -> impl Strategy<Value = Vec<NodeId>> {
    prop_oneof![
        vec(node_id(), 0..=4),
        vec(node_id(), MAX_TRACE_HOPS..=MAX_TRACE_HOPS),
    ]
}

fn body() -> impl Strategy<Value = Body> {
    prop_oneof![
        sealed_chat().prop_map(Body::Chat),
        receipt().prop_map(Body::ChatAck),
        absence().prop_map(Body::NotFound),
        varint_u64().prop_map(|probe_id| Body::TraceProbe { probe_id }),
        (varint_u64(), hops()).prop_map(|(probe_id, path)| Body::TraceReply { probe_id, path }),
        location_record().prop_map(Body::Publish),
        withdraw().prop_map(Body::Withdraw),
        (varint_u64(), node_id())
            .prop_map(|(request_id, node)| Body::LocationQuery { request_id, node }),
        (
            varint_u64(),
            node_id(),
            proptest::option::of(location_record()),
            proptest::option::of(absence().prop_map(Box::new)),
        )
            .prop_map(|(request_id, node, record, absence)| Body::LocationReply {
                request_id,
                node,
                record,
                absence,
            }),
        datagram().prop_map(Body::Datagram),
        (varint_u64(), name_claim())
            .prop_map(|(request_id, claim)| Body::NameClaim { request_id, claim }),
        (varint_u64(), user_name())
            .prop_map(|(request_id, name)| Body::NameQuery { request_id, name }),
        (
            varint_u64(),
            user_name(),
            proptest::option::of(name_claim())
        )
            .prop_map(|(request_id, name, claim)| Body::NameReply {
                request_id,
                name,
                claim
            }),
        kept_chat().prop_map(Body::MailboxStore),
        stored_notice().prop_map(Body::MailboxStored),
        kept_chat().prop_map(Body::MailboxHandOver),
        (node_id(), msg_id()).prop_map(|(author, msg_id)| Body::MailboxTaken { author, msg_id }),
        receipt().prop_map(Body::ReceiptStore),
        receipt().prop_map(Body::ReceiptHandOver),
    ]
}

fn location_hop() -> impl Strategy<Value = LocationHop> {
    prop_oneof![
        Just(LocationHop::Unused),
        node_id().prop_map(LocationHop::Toward),
        Just(LocationHop::Used),
    ]
}

fn packet() -> impl Strategy<Value = Packet> {
    (
        (node_id(), node_id(), msg_id()),
        (any::<u8>(), any::<u8>(), location_hop()),
        proptest::option::of(hops().prop_map(Trace)),
        body(),
    )
        .prop_map(
            |((dst, src, id), (ttl, hops, location), trace, body)| Packet {
                dst,
                src,
                id,
                ttl,
                hops,
                location,
                trace,
                body,
            },
        )
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        hello().prop_map(Message::Hello),
        varint_u64().prop_map(|request_id| Message::Join(Join { request_id })),
        (varint_u64(), varint_u16(), varint_u16(), peers()).prop_map(
            |(request_id, clients, max_clients, supernodes)| Message::Accept(Accept {
                request_id,
                clients,
                max_clients,
                supernodes,
            })
        ),
        (varint_u64(), peers()).prop_map(|(request_id, supernodes)| {
            Message::Redirect(Redirect {
                request_id,
                supernodes,
            })
        }),
        leave().prop_map(Message::Leave),
        varint_u64().prop_map(|nonce| Message::Heartbeat(Heartbeat { nonce })),
        (varint_u64(), varint_u16())
            .prop_map(|(nonce, clients)| Message::HeartbeatAck(HeartbeatAck { nonce, clients })),
        (varint_u64(), node_id()).prop_map(|(request_id, target)| {
            Message::FindNeighbors(FindNeighbors { request_id, target })
        }),
        (varint_u64(), peers())
            .prop_map(|(request_id, peers)| Message::Neighbors(Neighbors { request_id, peers })),
        location_record().prop_map(Message::Publish),
        packet().prop_map(Message::Routed),
        node_id().prop_map(|node| Message::StaleLocation(StaleLocation { node })),
        (varint_u64(), addrs())
            .prop_map(|(request_id, addrs)| { Message::DialBack(DialBack { request_id, addrs }) }),
        (varint_u64(), 0u8..3).prop_map(|(request_id, o)| {
            Message::DialBackResult(DialBackResult {
                request_id,
                outcome: match o {
                    0 => DialBackOutcome::Reached,
                    1 => DialBackOutcome::Failed,
                    _ => DialBackOutcome::Refused,
                },
            })
        }),
        (any::<bool>(), proptest::option::of(name_claim()))
            .prop_map(|(listed, claim)| Message::Listed(Listed { listed, claim })),
        varint_u64().prop_map(|request_id| Message::WhoQuery(WhoQuery { request_id })),
        (
            varint_u64(),
            prop_oneof![
                vec((node_id(), proptest::option::of(user_name())), 0..=3),
                vec(
                    (node_id(), proptest::option::of(user_name())),
                    MAX_LISTED..=MAX_LISTED
                )
            ]
        )
            .prop_map(|(request_id, peers)| {
                let peers = peers
                    .into_iter()
                    .map(|(node, name)| ListedPeer { node, name })
                    .collect();
                Message::Listing(Listing { request_id, peers })
            }),
    ]
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// Serializes `msg` the way the codec does but without its limit checks, and
/// frames it: how a careless or hostile peer would put a message on the wire.
/// A routed packet gets the v2 envelope, written here from PROTOCOL.md.
fn craft_frame(msg: &Message) -> Vec<u8> {
    let bincode = |value: &dyn erased::Encode| value.encode();
    let body = match msg {
        Message::Routed(p) => {
            let inner = bincode(&p.body);
            let mut out = vec![10u8];
            out.extend_from_slice(&p.dst.0);
            out.extend_from_slice(&p.src.0);
            out.extend_from_slice(&p.id.0.to_le_bytes());
            out.push(p.ttl);
            out.push(p.hops);
            let mut flags = match p.location {
                LocationHop::Unused => 0u8,
                LocationHop::Toward(_) => 1,
                LocationHop::Used => 2,
            };
            if p.trace.is_some() {
                flags |= 4;
            }
            out.push(flags);
            // A body too long for the u16 is cut to its low bits: the frame
            // is refused as too long before that matters.
            out.extend_from_slice(&(inner.len() as u16).to_le_bytes());
            if let LocationHop::Toward(t) = p.location {
                out.extend_from_slice(&t.0);
            }
            if let Some(t) = &p.trace {
                out.push(t.0.len() as u8);
                for hop in &t.0 {
                    out.extend_from_slice(&hop.0);
                }
            }
            out.extend_from_slice(&inner);
            out
        }
        other => bincode(other),
    };
    frame_of(&body)
}

/// bincode in the wire's options, for any serializable value.
mod erased {
    use bincode::Options;

    pub trait Encode {
        fn encode(&self) -> Vec<u8>;
    }

    impl<T: serde::Serialize> Encode for T {
        fn encode(&self) -> Vec<u8> {
            bincode::DefaultOptions::new()
                .with_varint_encoding()
                .with_little_endian()
                .serialize(self)
                .expect("serializing into a Vec cannot fail")
        }
    }
}

fn frame_of(body: &[u8]) -> Vec<u8> {
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(body);
    frame
}

/// A routed envelope around `body`, small and within every limit.
fn routed(body: Body, trace: Option<Trace>) -> Message {
    Message::Routed(Packet {
        dst: NodeId([1; 32]),
        src: NodeId([2; 32]),
        id: MsgId(3),
        ttl: DEFAULT_TTL,
        hops: 0,
        location: LocationHop::Unused,
        trace,
        body,
    })
}

/// Checks that `msg` is refused by the encoder with `limit`, and that the same
/// message forced onto the wire is refused by the decoder with `on_decode`
/// (the exact error, or any `Malformed` when `on_decode` is `None`: sequence
/// counts are enforced while the sequence decodes, before the message exists).
fn assert_refused(
    msg: &Message,
    limit: LimitError,
    on_decode: Option<DecodeError>,
) -> Result<(), TestCaseError> {
    prop_assert_eq!(encode(msg), Err(EncodeError::Limit(limit.clone())));
    let mut out = vec![0xaa];
    prop_assert!(encode_into(msg, &mut out).is_err());
    prop_assert_eq!(
        out,
        vec![0xaa],
        "a refused message leaves the buffer as it was"
    );

    let frame = craft_frame(msg);
    if frame.len() - FRAME_HEADER_LEN > MAX_FRAME_BODY {
        // Too big to be a frame at all; the length check catches it first.
        let got = decode_frame(&frame);
        let too_long = matches!(got, Err(DecodeError::TooLong { .. }));
        prop_assert!(too_long, "expected a frame too long, got {:?}", got);
        return Ok(());
    }
    let got = decode_frame(&frame);
    match on_decode {
        Some(expected) => prop_assert_eq!(&got, &Err(expected)),
        None => prop_assert!(
            matches!(&got, Err(DecodeError::Malformed(m)) if m.contains("exceeds the limit")),
            "expected a malformed sequence, got {:?}",
            got
        ),
    }
    let mut dec = FrameDecoder::new();
    dec.push(&frame);
    prop_assert_eq!(dec.next_message(), got.map(Some));
    Ok(())
}

// ---------------------------------------------------------------------------
// Round trips
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Whatever a node sends, its neighbor reads back exactly.
    #[test]
    fn every_message_round_trips(msg in message()) {
        let frame = encode(&msg).expect("a message within the limits encodes");
        let announced = u32::from_be_bytes(frame[..4].try_into().expect("4 bytes")) as usize;
        prop_assert_eq!(announced, frame.len() - FRAME_HEADER_LEN);
        prop_assert!(announced <= MAX_FRAME_BODY);
        prop_assert_eq!(decode_frame(&frame), Ok(msg.clone()));
        prop_assert_eq!(decode_body(&frame[FRAME_HEADER_LEN..]), Ok(msg.clone()));

        let mut appended = vec![7, 7, 7];
        let written = encode_into(&msg, &mut appended).expect("encodes");
        prop_assert_eq!(written, frame.len());
        prop_assert_eq!(&appended[3..], &frame[..]);
    }

    /// A stream of frames cut into arbitrary pieces yields exactly the
    /// messages sent, in order, and nothing is left over.
    #[test]
    fn a_stream_cut_anywhere_yields_every_message(
        msgs in vec(message(), 1..6),
        cuts in vec(prop_oneof![1usize..=8, 9usize..=300, 301usize..=70_000], 1..40),
    ) {
        let mut stream = Vec::new();
        for msg in &msgs {
            encode_into(msg, &mut stream).expect("encodes");
        }
        let mut dec = FrameDecoder::new();
        let mut got = Vec::new();
        let mut rest = &stream[..];
        for &cut in cuts.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (chunk, tail) = rest.split_at(cut.min(rest.len()));
            rest = tail;
            dec.push(chunk);
            while let Some(msg) = dec.next_message().expect("a valid stream decodes") {
                got.push(msg);
            }
        }
        prop_assert_eq!(got, msgs);
        prop_assert_eq!(dec.buffered(), 0);
        prop_assert_eq!(dec.next_message(), Ok(None));
    }

    /// A frame that stops early is truncated, never misread: a whole-frame
    /// decode says so, and the stream decoder waits for the rest.
    #[test]
    fn a_cut_frame_is_truncated(msg in message(), at in any::<prop::sample::Index>()) {
        let frame = encode(&msg).expect("encodes");
        let body = &frame[FRAME_HEADER_LEN..];
        let cut = at.index(body.len());
        // The header still announces the full body: the stream was cut.
        prop_assert_eq!(decode_frame(&frame[..FRAME_HEADER_LEN + cut]), Err(DecodeError::Truncated));
        let mut dec = FrameDecoder::new();
        dec.push(&frame[..FRAME_HEADER_LEN + cut]);
        prop_assert_eq!(dec.next_message(), Ok(None));
        // The header agrees with the short body: the sender cut the message.
        prop_assert_eq!(decode_frame(&frame_of(&body[..cut])), Err(DecodeError::Truncated));
    }

    /// Bytes after the message, inside the frame or after it, are refused and
    /// counted.
    #[test]
    fn trailing_bytes_are_refused(msg in message(), extra in vec(any::<u8>(), 1..16)) {
        let frame = encode(&msg).expect("encodes");
        let mut body = frame[FRAME_HEADER_LEN..].to_vec();
        body.extend_from_slice(&extra);
        if body.len() <= MAX_FRAME_BODY {
            prop_assert_eq!(decode_body(&body), Err(DecodeError::TrailingBytes(extra.len())));
            prop_assert_eq!(
                decode_frame(&frame_of(&body)),
                Err(DecodeError::TrailingBytes(extra.len()))
            );
        }
        let mut long = frame.clone();
        long.extend_from_slice(&extra);
        prop_assert_eq!(decode_frame(&long), Err(DecodeError::TrailingBytes(extra.len())));
    }

    /// A `Hello` of any other version is refused by version, whatever follows.
    #[test]
    fn other_versions_are_refused(
        version in varint_u16().prop_filter("not ours", |v| *v != PROTOCOL_VERSION),
        hello in hello(),
    ) {
        let frame = encode(&Message::Hello(Hello { version, ..hello })).expect("encodes");
        prop_assert_eq!(
            decode_frame(&frame),
            Err(DecodeError::UnknownVersion { got: u64::from(version) })
        );
        // The version is checked before the rest is parsed: garbage after it
        // does not change the answer.
        let mut body = frame[FRAME_HEADER_LEN..].to_vec();
        body.truncate(4);
        body.push(0xff);
        prop_assert_eq!(
            decode_body(&body),
            Err(DecodeError::UnknownVersion { got: u64::from(version) })
        );
    }

    /// A message tag past the last variant is refused as unknown.
    #[test]
    fn unknown_message_tags_are_refused(
        tag in prop_oneof![17u64..=250, 251u64..=u64::MAX],
        rest in vec(any::<u8>(), 0..64),
    ) {
        let mut body = bincode::DefaultOptions::new()
            .with_varint_encoding()
            .serialize(&tag)
            .expect("serializes");
        body.extend_from_slice(&rest);
        prop_assert!(matches!(decode_frame(&frame_of(&body)), Err(DecodeError::UnknownTag(_))));
    }

    /// An unknown tag of a nested enum (here the body) is refused as unknown.
    #[test]
    fn unknown_body_tags_are_refused(tag in 19u8..=250, rest in vec(any::<u8>(), 0..32)) {
        let frame = encode(&routed(Body::TraceProbe { probe_id: 1 }, None)).expect("encodes");
        let mut body = frame[FRAME_HEADER_LEN..].to_vec();
        // The fixed envelope header (no location target, no trace), then
        // the body tag.
        let body_tag_at = envelope::HEADER_LEN;
        prop_assert_eq!(body[body_tag_at], 3, "TraceProbe's tag");
        body.truncate(body_tag_at);
        body.push(tag);
        body.extend_from_slice(&rest);
        let len = (1 + rest.len()) as u16;
        body[76..78].copy_from_slice(&len.to_le_bytes());
        prop_assert!(matches!(decode_frame(&frame_of(&body)), Err(DecodeError::UnknownTag(_))));
    }
}

// ---------------------------------------------------------------------------
// Limits: refused when sent, refused when received
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn sealed_chats_over_the_limit_are_refused(
        len in MAX_SEALED_CHAT + 1..=MAX_SEALED_CHAT + 2048,
    ) {
        let msg = routed(Body::Chat(SealedChat(vec![7; len])), None);
        assert_refused(
            &msg,
            LimitError::SealedChatTooLong(len),
            Some(DecodeError::Limit(LimitError::SealedChatTooLong(len))),
        )?;
    }

    /// Every chat a node can write is opened by its recipient exactly as
    /// written, and sealing refuses nothing within the limits.
    #[test]
    fn every_chat_opens_as_it_was_sealed(chat in chat_message(), ephemeral in any::<[u8; 32]>()) {
        let bob = Identity::from_secret([2; 32]);
        let sealed = seal::seal(&chat, &bob.chat_key(), ephemeral).expect("bob's key is valid");
        prop_assert!(sealed.0.len() <= MAX_SEALED_CHAT);
        prop_assert_eq!(bob.open_chat(&sealed), Ok(chat));
    }

    /// A relay's view of a routed frame: the header read without the body
    /// says what decoding says, and patching ttl and hops in place is the
    /// same as decoding, changing them and encoding again.
    #[test]
    fn the_header_agrees_with_the_decoded_packet(p in packet(), ttl: u8, hops: u8) {
        let frame = encode(&Message::Routed(p.clone())).expect("within limits");
        let mut body = frame[FRAME_HEADER_LEN..].to_vec();
        let h = envelope::read_header(&body).expect("a routed frame");
        prop_assert_eq!((h.dst, h.src, h.id, h.ttl, h.hops), (p.dst, p.src, p.id, p.ttl, p.hops));
        prop_assert_eq!(h.location, p.location);
        prop_assert_eq!(h.trace_len, p.trace.as_ref().map(|t| t.0.len()));
        envelope::patch_ttl_hops(&mut body, ttl, hops).expect("patches");
        let patched = Message::Routed(Packet { ttl, hops, ..p });
        prop_assert_eq!(&frame_of(&body), &encode(&patched).expect("within limits"));
    }

    /// A relay that forwards the received bytes with ttl, hops and the
    /// location hop rewritten sends what encoding the changed packet sends.
    #[test]
    fn a_rewritten_frame_is_the_encoding_of_the_changed_packet(
        p in packet(),
        ttl: u8,
        hops: u8,
        location in location_hop(),
    ) {
        let frame = encode(&Message::Routed(p.clone())).expect("within limits");
        let body = &frame[FRAME_HEADER_LEN..];
        envelope::read_header(body).expect("a routed frame");
        let rw = envelope::Rewrite { ttl, hops, location };
        let changed = encode(&Message::Routed(Packet { ttl, hops, location, ..p }));
        let Ok(changed) = changed else {
            prop_assert!(envelope::rewritten_len(body, &rw) > MAX_FRAME_BODY);
            return Ok(());
        };
        prop_assert_eq!(envelope::rewritten_len(body, &rw), changed.len() - FRAME_HEADER_LEN);
        let mut out = vec![9, 9];
        envelope::append_rewritten(body, &rw, &mut out);
        prop_assert_eq!(&out[2..], &changed[..]);
    }

    /// A relay that reads only the header and the body's first byte knows
    /// what decoding the whole body would tell it.
    #[test]
    fn the_body_kind_agrees_with_the_decoded_body(p in packet()) {
        let frame = encode(&Message::Routed(p.clone())).expect("within limits");
        let body = &frame[FRAME_HEADER_LEN..];
        let h = envelope::read_header(body).expect("a routed frame");
        prop_assert_eq!(envelope::body_kind(body, &h), Some(envelope::BodyKind::of(&p.body)));
    }

    #[test]
    fn traces_over_the_limit_are_refused(len in MAX_TRACE_HOPS + 1..=MAX_TRACE_HOPS * 3) {
        let msg = routed(Body::TraceProbe { probe_id: 9 }, Some(Trace(vec![NodeId([5; 32]); len])));
        // The envelope's trace count is read before any id: a plain limit.
        assert_refused(
            &msg,
            LimitError::TraceTooLong(len),
            Some(DecodeError::Limit(LimitError::TraceTooLong(len))),
        )?;
        let reply = routed(Body::TraceReply { probe_id: 9, path: vec![NodeId([6; 32]); len] }, None);
        assert_refused(&reply, LimitError::TraceTooLong(len), None)?;
    }

    #[test]
    fn too_many_addresses_are_refused(
        hello in hello(),
        record in location_record(),
        len in MAX_ADDRS + 1..=MAX_ADDRS * 4,
    ) {
        let many = vec!["/ip4/10.0.0.1/tcp/1".to_string(); len];
        let limit = LimitError::TooManyAddrs(len);
        let msg = Message::Hello(Hello { listen_addrs: many.clone(), ..hello });
        assert_refused(&msg, limit.clone(), None)?;
        let msg = Message::Publish(LocationRecord { sn_addrs: many.clone(), ..record.clone() });
        assert_refused(&msg, limit.clone(), None)?;
        let msg = routed(Body::Publish(LocationRecord { sn_addrs: many.clone(), ..record.clone() }), None);
        assert_refused(&msg, limit.clone(), None)?;
        let msg = routed(
            Body::LocationReply {
                request_id: 1,
                node: record.node,
                record: Some(LocationRecord { sn_addrs: many.clone(), ..record }),
                absence: None,
            },
            None,
        );
        assert_refused(&msg, limit.clone(), None)?;
        let msg = Message::Neighbors(Neighbors {
            request_id: 1,
            peers: vec![PeerInfo { id: NodeId([1; 32]), addrs: many }],
        });
        assert_refused(&msg, limit, None)?;
    }

    #[test]
    fn records_naming_too_many_backups_are_refused(
        record in location_record(),
        len in MAX_RECORD_BACKUPS + 1..=MAX_RECORD_BACKUPS * 4,
    ) {
        let many = vec![NodeId([9; 32]); len];
        let limit = LimitError::TooManyBackups(len);
        let msg = Message::Publish(LocationRecord { backups: many.clone(), ..record.clone() });
        assert_refused(&msg, limit.clone(), None)?;
        let msg = routed(
            Body::LocationReply {
                request_id: 1,
                node: record.node,
                record: Some(LocationRecord { backups: many, ..record }),
                absence: None,
            },
            None,
        );
        assert_refused(&msg, limit, None)?;
    }

    #[test]
    fn addresses_over_the_limit_are_refused(
        len in MAX_ADDR_LEN + 1..=MAX_ADDR_LEN * 4,
        record in location_record(),
    ) {
        let long = vec!["/dns/".to_string() + &"a".repeat(len - 5)];
        let refused = |msg: Message| {
            assert_refused(
                &msg,
                LimitError::AddrTooLong(len),
                Some(DecodeError::Limit(LimitError::AddrTooLong(len))),
            )
        };
        refused(Message::Hello(Hello {
            version: PROTOCOL_VERSION,
            role: Role::Supernode,
            id: NodeId([1; 32]),
            listen_addrs: long.clone(),
            agent: String::new(),
        }))?;
        refused(Message::Redirect(Redirect {
            request_id: 4,
            supernodes: vec![PeerInfo { id: NodeId([1; 32]), addrs: long.clone() }],
        }))?;
        refused(Message::Accept(Accept {
            request_id: 4,
            clients: 1,
            max_clients: 2,
            supernodes: vec![PeerInfo { id: NodeId([1; 32]), addrs: long.clone() }],
        }))?;
        refused(Message::Publish(LocationRecord { sn_addrs: long, ..record }))?;
    }

    #[test]
    fn agents_over_the_limit_are_refused(hello in hello(), len in MAX_AGENT_LEN + 1..=1000) {
        let msg = Message::Hello(Hello { agent: "g".repeat(len), ..hello });
        assert_refused(
            &msg,
            LimitError::AgentTooLong(len),
            Some(DecodeError::Limit(LimitError::AgentTooLong(len))),
        )?;
    }

    #[test]
    fn too_many_peers_are_refused(len in MAX_PEERS_PER_MESSAGE + 1..=MAX_PEERS_PER_MESSAGE * 2) {
        let peers = vec![PeerInfo { id: NodeId([8; 32]), addrs: vec![] }; len];
        let limit = LimitError::TooManyPeers(len);
        assert_refused(
            &Message::Accept(Accept { request_id: 1, clients: 0, max_clients: 0, supernodes: peers.clone() }),
            limit.clone(),
            None,
        )?;
        assert_refused(
            &Message::Redirect(Redirect { request_id: 1, supernodes: peers.clone() }),
            limit.clone(),
            None,
        )?;
        assert_refused(&Message::Neighbors(Neighbors { request_id: 1, peers }), limit, None)?;
    }

    #[test]
    fn datagrams_over_the_limit_are_refused(len in MAX_DATAGRAM + 1..=MAX_FRAME_BODY - 100) {
        let msg = routed(Body::Datagram(vec![0x5a; len]), None);
        assert_refused(
            &msg,
            LimitError::DatagramTooLong(len),
            Some(DecodeError::Limit(LimitError::DatagramTooLong(len))),
        )?;
    }

    #[test]
    fn lifetimes_over_the_limit_are_refused(
        record in location_record(),
        lifetime_s in prop_oneof![MAX_RECORD_LIFETIME_S + 1..=MAX_RECORD_LIFETIME_S * 2, Just(u32::MAX)],
    ) {
        let record = LocationRecord { lifetime_s, ..record };
        let limit = LimitError::LifetimeTooLong(lifetime_s);
        let on_decode = Some(DecodeError::Limit(limit.clone()));
        assert_refused(&Message::Publish(record.clone()), limit.clone(), on_decode.clone())?;
        assert_refused(&routed(Body::Publish(record.clone()), None), limit.clone(), on_decode.clone())?;
        let reply = Body::LocationReply { request_id: 2, node: record.node, record: Some(record), absence: None };
        assert_refused(&routed(reply, None), limit, on_decode)?;
    }

    /// A length prefix over the frame limit is refused from the four header
    /// bytes alone, before any of the body is buffered.
    #[test]
    fn oversize_length_prefixes_are_refused(len in MAX_FRAME_BODY as u32 + 1..=u32::MAX) {
        let header = len.to_be_bytes();
        prop_assert_eq!(decode_frame(&header), Err(DecodeError::TooLong { len: len as usize }));
        let mut dec = FrameDecoder::new();
        dec.push(&header);
        prop_assert_eq!(dec.next_message(), Err(DecodeError::TooLong { len: len as usize }));
    }
}

/// The largest frame body is allowed, one more byte is not, on either side.
#[test]
fn frame_limit_is_exact() {
    let accept = |supernodes: &[PeerInfo]| {
        Message::Accept(Accept {
            request_id: 1,
            clients: 2,
            max_clients: 3,
            supernodes: supernodes.to_vec(),
        })
    };
    let body_len =
        |supernodes: &[PeerInfo]| craft_frame(&accept(supernodes)).len() - FRAME_HEADER_LEN;
    // Full peer lists of 250-byte addresses (the longest with a one-byte
    // length) fall just short of the limit; lengthen addresses one byte at a
    // time until the body lands on it. Crossing 250 adds three bytes at once,
    // so the last peer's first address gives back any overshoot.
    let mut supernodes = vec![
        PeerInfo {
            id: NodeId([3; 32]),
            addrs: vec!["a".repeat(250); MAX_ADDRS],
        };
        MAX_PEERS_PER_MESSAGE
    ];
    assert!(body_len(&supernodes) < MAX_FRAME_BODY);
    'grow: for peer in 0..MAX_PEERS_PER_MESSAGE - 1 {
        for addr in 0..MAX_ADDRS {
            while supernodes[peer].addrs[addr].len() < MAX_ADDR_LEN {
                if body_len(&supernodes) >= MAX_FRAME_BODY {
                    break 'grow;
                }
                supernodes[peer].addrs[addr].push('a');
            }
        }
    }
    let over = body_len(&supernodes) - MAX_FRAME_BODY;
    let last = &mut supernodes[MAX_PEERS_PER_MESSAGE - 1].addrs[0];
    last.truncate(last.len() - over);
    assert_eq!(body_len(&supernodes), MAX_FRAME_BODY);

    let at_limit = accept(&supernodes);
    let frame = encode(&at_limit).expect("a body of exactly the limit encodes");
    assert_eq!(frame.len(), FRAME_HEADER_LEN + MAX_FRAME_BODY);
    assert_eq!(decode_frame(&frame), Ok(at_limit));

    supernodes[MAX_PEERS_PER_MESSAGE - 1].addrs[0].push('a');
    let one_over = accept(&supernodes);
    assert_eq!(
        encode(&one_over),
        Err(EncodeError::TooLong(MAX_FRAME_BODY + 1))
    );
    assert_eq!(
        decode_frame(&craft_frame(&one_over)),
        Err(DecodeError::TooLong {
            len: MAX_FRAME_BODY + 1
        })
    );
}

/// A bad varint marker byte where the tag or version belongs is malformed,
/// not truncated: the peer sent garbage, it did not stop early.
#[test]
fn bad_varint_markers_are_malformed_not_truncated() {
    for body in [&[0xff][..], &[0xfe, 0, 0], &[0, 0xff], &[0, 0xfe, 1]] {
        assert!(
            matches!(decode_body(body), Err(DecodeError::Malformed(_))),
            "{body:?} gave {:?}",
            decode_body(body)
        );
    }
    for body in [&[][..], &[0xfb, 0], &[0], &[0, 0xfb, 1]] {
        assert_eq!(decode_body(body), Err(DecodeError::Truncated), "{body:?}");
    }
}

/// Error messages read cleanly in a log line.
#[test]
fn sequence_limit_errors_read_cleanly() {
    let msg = Message::Hello(Hello {
        version: PROTOCOL_VERSION,
        role: Role::Ordinary,
        id: NodeId([1; 32]),
        listen_addrs: vec!["x".into(); MAX_ADDRS + 1],
        agent: String::new(),
    });
    let err = decode_frame(&craft_frame(&msg)).expect_err("9 addresses are refused");
    assert_eq!(
        err.to_string(),
        "malformed field: sequence of 9 elements exceeds the limit of 8"
    );
}

/// The strategies above reach every message kind and every nested variant,
/// so that "every message round-trips" means every message.
#[test]
fn strategies_cover_every_variant() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    use std::collections::BTreeSet;

    let mut runner = TestRunner::deterministic();
    let strategy = message();
    let mut seen = BTreeSet::new();
    for _ in 0..10_000 {
        let msg = strategy
            .new_tree(&mut runner)
            .expect("the strategy has no filters that can exhaust")
            .current();
        seen.insert(msg.kind().to_string());
        let mut note = |what: String| seen.insert(what);
        match &msg {
            Message::Hello(h) => note(format!("role {:?}", h.role)),
            Message::Routed(p) => {
                note(format!("trace {}", p.trace.is_some()));
                note(
                    match p.location {
                        LocationHop::Unused => "location unused",
                        LocationHop::Toward(_) => "location toward",
                        LocationHop::Used => "location used",
                    }
                    .to_string(),
                );
                match &p.body {
                    Body::NotFound(a) => note(format!("not found {:?}", a.reason)),
                    Body::Withdraw(w) => note(match w.reason {
                        WithdrawReason::Left(_) => "withdraw left".to_string(),
                        WithdrawReason::Lost(_) => "withdraw lost".to_string(),
                    }),
                    Body::LocationReply { record, .. } => {
                        note(format!("reply record {}", record.is_some()))
                    }
                    // `kind()` names both publishes "publish".
                    Body::Publish(_) => note("routed publish".to_string()),
                    _ => false,
                }
            }
            _ => false,
        };
    }
    let expected = [
        "hello",
        "join",
        "accept",
        "redirect",
        "leave",
        "heartbeat",
        "heartbeat_ack",
        "find_neighbors",
        "neighbors",
        "publish",
        "stale_location",
        "chat",
        "chat_ack",
        "not_found",
        "trace_probe",
        "trace_reply",
        "routed publish",
        "withdraw",
        "location_query",
        "location_reply",
        "datagram",
        "name_claim",
        "name_query",
        "name_reply",
        "role Ordinary",
        "role Supernode",
        "trace true",
        "trace false",
        "location unused",
        "location toward",
        "location used",
        "not found NoRecord",
        "not found Offline",
        "not found TtlExpired",
        "not found NoRoute",
        "withdraw left",
        "withdraw lost",
        "reply record true",
        "reply record false",
    ];
    for what in expected {
        assert!(seen.contains(what), "no generated message has {what}");
    }
}
