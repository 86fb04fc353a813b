//! Replay protection with real `skyhop run` processes: a chat captured on
//! the wire and sent again to its recipient after the recipient was killed
//! (`kill -9`) and restarted is not handed to the application twice: the
//! author's mark, kept in `history.db`, refuses it.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::StreamProtocol;
use serde_json::Value;
use skyhop_protocol::{
    codec, seal, Body, FrameDecoder, Hello, Identity, LocationHop, Message, MsgId, NodeId, Packet,
    Role, SealedChat, PROTOCOL_VERSION,
};
use skyhop_tests::{client_runtime, dial_as, http, wait_until, NodeProc, Scratch, ATTACH_TIMEOUT};

const PROTOCOL: StreamProtocol = StreamProtocol::new("/skyhop/1");

/// `GET path` on `node`'s control socket; the JSON answer of a 200.
fn get(node: &NodeProc, path: &str) -> Value {
    match http(&node.control, "GET", path, None, Duration::from_secs(10)) {
        Ok((200, v)) => v,
        other => panic!("GET {path} on {}: {other:?}", node.dir.display()),
    }
}

/// The identity a node keeps in `<dir>/key` (64 hex characters).
fn identity_in(dir: &Path) -> Identity {
    let text = std::fs::read_to_string(dir.join("key")).expect("key file");
    let text = text.trim();
    assert_eq!(text.len(), 64, "a hex key");
    let mut secret = [0u8; 32];
    for (i, byte) in secret.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).expect("hex");
    }
    Identity::from_secret(secret)
}

/// Chats from `author` in `node`'s history.
fn received_from(node: &NodeProc, author: &Identity) -> usize {
    let page = get(node, &format!("/history?peer={}", author.id()));
    page["messages"].as_array().expect("messages").len()
}

/// `node`'s count of drops for `reason`.
fn dropped(node: &NodeProc, reason: &str) -> u64 {
    get(node, "/status")["counters"]["dropped"][reason]
        .as_u64()
        .unwrap_or(0)
}

/// Links to `target` (node `to`) as `author` (an ordinary node speaking for itself),
/// sends `sealed` in a routed packet with id `packet`, and keeps the link
/// open until `done` holds or 20 s pass; whether it held.
fn send_sealed(
    target: &str,
    to: NodeId,
    author: &Identity,
    sealed: &SealedChat,
    packet: u64,
    done: impl Fn() -> bool + Send + 'static,
) -> bool {
    let rt = client_runtime();
    rt.block_on(async {
        let (mut swarm, peer) = dial_as(target, author);
        let mut control = swarm.behaviour().new_control();
        let driver = tokio::spawn(async move {
            loop {
                swarm.select_next_some().await;
            }
        });
        let mut s = control
            .open_stream(peer, PROTOCOL)
            .await
            .expect("stream opens");
        let hello = Message::Hello(Hello {
            version: PROTOCOL_VERSION,
            role: Role::Ordinary,
            id: author.id(),
            listen_addrs: vec![],
            agent: "replay-test".into(),
        });
        let p = Packet {
            dst: to,
            src: author.id(),
            id: MsgId(packet),
            ttl: 8,
            hops: 1,
            location: LocationHop::Unused,
            trace: None,
            body: Body::Chat(sealed.clone()),
        };
        let mut out = Vec::new();
        codec::encode_into(&hello, &mut out).expect("encodes");
        codec::encode_into(&Message::Routed(p), &mut out).expect("encodes");
        s.write_all(&out).await.expect("write");
        s.flush().await.expect("flush");
        // Read (and drop) what the node sends, so that its writer never
        // blocks, until `done`.
        let reader = tokio::spawn(async move {
            let mut dec = FrameDecoder::new();
            let mut buf = [0u8; 4096];
            while let Ok(n) = s.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                dec.push(&buf[..n]);
                while let Ok(Some(_)) = dec.next_message() {}
            }
        });
        let held = tokio::task::spawn_blocking(move || wait_until(Duration::from_secs(20), done))
            .await
            .expect("joins");
        reader.abort();
        driver.abort();
        held
    })
}

#[test]
fn a_chat_replayed_to_its_recipient_after_kill_9_and_restart_is_not_delivered_twice() {
    let scratch = Scratch::new("replay-restart");
    let sn = NodeProc::start(&scratch.path.join("sn"), "supernode", &[]);
    let boot = [sn.addr.clone()];
    let b_dir = scratch.path.join("b");
    let mut b = NodeProc::start(&b_dir, "ordinary", &boot);
    assert!(
        wait_until(ATTACH_TIMEOUT, || b.primary().is_some()),
        "B did not attach"
    );
    let b_identity = identity_in(&b_dir);
    let author = Identity::from_secret([0x5a; 32]);
    // The test is the chat's author: it signs with its own clock, as a
    // node does, so that the chat is inside the recipient's window.
    #[allow(clippy::disallowed_methods)]
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_micros() as u64;
    let chat = author
        .chat(b_identity.id(), MsgId(77), 1, now, "only once".into())
        .expect("short");
    // The bytes a relay would capture: sealed once, sent as they are.
    let sealed = seal::seal(&chat, &b_identity.chat_key(), [9; 32]).expect("valid key");

    let (control, author_id) = (b.control.clone(), author.id());
    let stored = move || {
        matches!(
            http(&control, "GET", &format!("/history?peer={author_id}"), None, Duration::from_secs(5)),
            Ok((200, v)) if v["messages"].as_array().is_some_and(|m| m.len() == 1)
        )
    };
    assert!(
        send_sealed(&b.addr, b_identity.id(), &author, &sealed, 1, stored),
        "B did not store the genuine chat"
    );
    assert_eq!(received_from(&b, &author), 1);

    // B crashes and comes back; it has forgotten everything in memory.
    b.kill9();
    let b = NodeProc::start(&b_dir, "ordinary", &boot);
    let control = b.control.clone();
    let refused = move || {
        matches!(
            http(&control, "GET", "/status", None, Duration::from_secs(5)),
            Ok((200, v)) if v["counters"]["dropped"]["replayed_chat"].as_u64() == Some(1)
        )
    };
    assert!(
        send_sealed(&b.addr, b_identity.id(), &author, &sealed, 2, refused),
        "B did not refuse the replay: {}",
        get(&b, "/status")["counters"]
    );
    assert_eq!(received_from(&b, &author), 1, "delivered once");
    // The application of the restarted node never heard of it.
    let events = get(&b, "/events");
    assert!(
        !events.to_string().contains("only once"),
        "handed out again: {events}"
    );
    assert_eq!(dropped(&b, "replayed_chat"), 1);
}
