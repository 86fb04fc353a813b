//! A hostile peer — garbage bytes, an oversize frame, a forged location
//! record — is disconnected with the reason logged, while the supernode keeps
//! serving everyone else.

use std::time::Duration;

use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::swarm::SwarmEvent;
use skyhop_protocol::{codec, Hello, Identity, Message, NodeId, Role};
use skyhop_tests::raw::{self, PROTOCOL};
use skyhop_tests::{client_runtime, dial_as, opener_identity, wait_until, Overlay};

/// What the hostile client does once its stream is open.
enum Attack {
    Bytes(Vec<u8>),
    ForgedRecord,
}

/// Connects to `target` as `identity`, runs `attack`, and returns whether the
/// supernode closed the connection within 10 s.
async fn attack(target: &str, identity: Identity, attack: Attack) -> bool {
    let (mut swarm, peer) = dial_as(target, &identity);
    let mut control = swarm.behaviour().new_control();
    let writer = tokio::spawn(async move {
        let mut s = control
            .open_stream(peer, PROTOCOL)
            .await
            .expect("stream opens");
        match attack {
            Attack::Bytes(bytes) => {
                s.write_all(&bytes).await.expect("write");
                s.flush().await.expect("flush");
            }
            Attack::ForgedRecord => forge(&mut s, &identity).await,
        }
        // Hold the stream open until the other side closes it.
        let mut sink = [0u8; 1024];
        while matches!(s.read(&mut sink).await, Ok(n) if n > 0) {}
    });
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let SwarmEvent::ConnectionClosed { peer_id, .. } = swarm.select_next_some().await {
                if peer_id == peer {
                    return;
                }
            }
        }
    })
    .await
    .is_ok();
    writer.abort();
    closed
}

/// Says hello and joins like an honest ordinary node, then publishes a
/// record that claims to be someone else's.
async fn forge(s: &mut libp2p::Stream, me: &Identity) {
    raw::attach(s, me).await.expect("accepted");
    // A record for a node that is not us, signed by us: the key does not
    // hash to the claimed id.
    let victim = NodeId([0x42; 32]);
    let mut record = me.location_record(NodeId([0; 32]), vec![], 1, 60);
    record.node = victim;
    let mut out = Vec::new();
    codec::encode_into(&Message::Publish(record), &mut out).expect("encodes");
    s.write_all(&out).await.expect("write");
    s.flush().await.expect("flush");
}

/// Connects to `target` as a peer of protocol version 1: sends a v1 `Hello`
/// and returns whether the node closed the connection within 10 s, and the
/// first bytes the node sent (its own `Hello`).
async fn speak_version_1(target: &str, identity: Identity) -> (bool, Vec<u8>) {
    let (mut swarm, peer) = dial_as(target, &identity);
    let mut control = swarm.behaviour().new_control();
    let hello = Message::Hello(Hello {
        version: 1,
        role: Role::Ordinary,
        id: NodeId::from_peer_id(&identity.libp2p_keypair().public().to_peer_id()),
        listen_addrs: vec![],
        agent: "skyhop/0.0.1".into(),
    });
    let frame = codec::encode(&hello).expect("a small hello");
    let (tx, rx) = tokio::sync::oneshot::channel();
    let talker = tokio::spawn(async move {
        let mut s = control
            .open_stream(peer, PROTOCOL)
            .await
            .expect("stream opens");
        s.write_all(&frame).await.expect("write");
        s.flush().await.expect("flush");
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        while let Ok(n) = s.read(&mut buf).await {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        let _ = tx.send(got);
    });
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let SwarmEvent::ConnectionClosed { peer_id, .. } = swarm.select_next_some().await {
                if peer_id == peer {
                    return;
                }
            }
        }
    })
    .await
    .is_ok();
    let got = tokio::time::timeout(Duration::from_secs(5), rx)
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    talker.abort();
    (closed, got)
}

/// A peer of protocol version 1 is refused with a clear error on both
/// sides: the node logs and counts the refusal and closes; what the old
/// peer reads first is a `Hello` of version 2, which its decoder refuses
/// as an unknown version.
#[test]
fn a_version_1_peer_is_refused_with_a_clear_error() {
    let overlay = Overlay::start("v1-peer", 1, 0);
    let sn = &overlay.supernodes[0];
    let rt = client_runtime();
    let (closed, got) = rt.block_on(speak_version_1(&sn.addr, opener_identity(&sn.addr, 11)));
    assert!(closed, "the v1 peer was kept");
    // Frame header (4 bytes), message tag 0 (Hello), version 2 as a
    // one-byte varint: a v1 decoder stops there.
    assert!(got.len() > 6, "the node sent no hello: {got:?}");
    assert_eq!(got[4..6], [0, 2], "the node's hello says version 2");
    let logged = wait_until(Duration::from_secs(10), || {
        sn.log()
            .contains("the peer speaks protocol version 1, this node speaks 2")
    });
    assert!(logged, "no refusal in the log:\n{}", sn.log());
    let counted = wait_until(Duration::from_secs(10), || {
        sn.status()["counters"]["dropped"]["unknown_version"].as_u64() == Some(1)
    });
    assert!(counted, "refusal not counted: {}", sn.status()["counters"]);
}

#[test]
fn hostile_peers_are_dropped_and_everyone_else_is_served() {
    let overlay = Overlay::start("hostile", 2, 3);
    let sn = &overlay.supernodes[0];
    let rt = client_runtime();

    let garbage = vec![0, 0, 0, 5, 0xff, 0xff, 0xff, 0xff, 0xff];
    assert!(
        rt.block_on(attack(
            &sn.addr,
            opener_identity(&sn.addr, 7),
            Attack::Bytes(garbage)
        )),
        "garbage sender kept"
    );

    let oversize = 1_000_000u32.to_be_bytes().to_vec();
    assert!(
        rt.block_on(attack(
            &sn.addr,
            opener_identity(&sn.addr, 8_000),
            Attack::Bytes(oversize)
        )),
        "oversize sender kept"
    );

    assert!(
        rt.block_on(attack(
            &sn.addr,
            opener_identity(&sn.addr, 9_000),
            Attack::ForgedRecord
        )),
        "forger kept"
    );

    // The log line and the disconnect race each other inside the supernode:
    // give the line a bounded moment to land.
    for needle in ["malformed", "too long", "forged"] {
        let logged = wait_until(Duration::from_secs(10), || {
            sn.log().to_lowercase().contains(needle)
        });
        assert!(
            logged,
            "supernode log does not mention {needle:?}:\n{}",
            sn.log()
        );
    }
    let counters = &sn.status()["counters"];
    assert!(
        counters["forged"].as_u64().unwrap_or(0) >= 1,
        "forgery not counted: {counters}"
    );

    // Everyone else is still served.
    let ons = &overlay.ordinary;
    for (a, b) in [(0, 1), (1, 2), (2, 0)] {
        let outcome = ons[a].send(&ons[b].id, "still served");
        assert_eq!(outcome["delivered"], true, "{outcome}");
    }
}

/// Says hello and joins like an honest ordinary node, then sends `to` a
/// routed packet in its own name whose envelope is good and whose body is
/// not (a datagram announcing more bytes than it has).
async fn send_bad_body(s: &mut libp2p::Stream, me: &Identity, to: NodeId) {
    raw::attach(s, me).await.expect("accepted");
    let p = skyhop_protocol::Packet {
        dst: to,
        src: me.id(),
        id: skyhop_protocol::MsgId(77),
        ttl: 8,
        hops: 0,
        location: skyhop_protocol::LocationHop::Unused,
        trace: None,
        body: skyhop_protocol::Body::Datagram(vec![1, 2, 3]),
    };
    let mut frame = codec::encode(&Message::Routed(p)).expect("encodes");
    // The body is the tag (9), the length (3) and the bytes: claim 100.
    let at = frame.len() - 4;
    assert_eq!(&frame[at..], &[3, 1, 2, 3]);
    frame[at] = 100;
    s.write_all(&frame).await.expect("write");
    s.flush().await.expect("flush");
}

#[test]
fn a_bad_body_a_relay_forwards_unread_costs_the_recipient_only_the_packet() {
    let overlay = Overlay::start("bad-body", 2, 2);
    let victim = &overlay.ordinary[0];
    let primary = victim.primary().expect("attached");
    let sn = overlay
        .supernodes
        .iter()
        .find(|s| s.id == primary)
        .expect("its primary is one of ours");
    let to: NodeId = victim.id.parse().expect("a node id");
    let rt = client_runtime();
    let me = opener_identity(&sn.addr, 11);
    let _in_runtime = rt.enter();
    let (mut swarm, peer) = dial_as(&sn.addr, &me);
    let mut control = swarm.behaviour().new_control();
    let sender = rt.spawn(async move {
        let mut s = control
            .open_stream(peer, PROTOCOL)
            .await
            .expect("stream opens");
        send_bad_body(&mut s, &me, to).await;
        let mut sink = [0u8; 1024];
        while matches!(s.read(&mut sink).await, Ok(n) if n > 0) {}
    });
    let poll = rt.spawn(async move { while swarm.next().await.is_some() {} });
    let counted = wait_until(Duration::from_secs(10), || {
        victim.status()["bad_bodies_relayed"].as_u64() == Some(1)
    });
    assert!(counted, "not counted: {}", victim.status());
    // The recipient kept its supernode, and chats still arrive.
    assert_eq!(victim.primary(), Some(primary));
    let outcome = overlay.ordinary[1].send(&victim.id, "still linked");
    assert_eq!(outcome["delivered"], true, "{outcome}");
    sender.abort();
    poll.abort();
}
