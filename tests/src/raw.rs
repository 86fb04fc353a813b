//! A raw protocol client for tests that play a hostile peer: frames
//! written straight onto a skyhop stream, an honest-looking hello and join,
//! and valid signed chats and location queries to flood with.

use futures::{AsyncReadExt, AsyncWriteExt};
use libp2p::{Stream, StreamProtocol};
use skyhop_protocol::{
    codec, Body, FrameDecoder, Hello, Identity, Join, LocationHop, Message, MsgId, NodeId, Packet,
    Role, PROTOCOL_VERSION,
};

/// The skyhop stream protocol.
pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/skyhop/1");

/// Encodes `msgs` and writes them to `s` in one go.
pub async fn write(s: &mut (impl AsyncWriteExt + Unpin), msgs: &[Message]) -> std::io::Result<()> {
    let mut out = Vec::new();
    for m in msgs {
        codec::encode_into(m, &mut out).expect("encodes");
    }
    write_bytes(s, &out).await
}

/// Writes already encoded frames to `s`.
pub async fn write_bytes(
    s: &mut (impl AsyncWriteExt + Unpin),
    frames: &[u8],
) -> std::io::Result<()> {
    s.write_all(frames).await?;
    s.flush().await
}

/// Says hello and joins like an honest ordinary node; waits for the
/// Accept, or says why there was none.
pub async fn attach(s: &mut Stream, me: &Identity) -> Result<(), String> {
    let hello = Message::Hello(Hello {
        version: PROTOCOL_VERSION,
        role: Role::Ordinary,
        id: me.id(),
        listen_addrs: vec![],
        agent: "abuse-test".into(),
    });
    write(s, &[hello, Message::Join(Join { request_id: 1 })])
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut dec = FrameDecoder::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = s.read(&mut buf).await.map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("closed before accepting us".into());
        }
        dec.push(&buf[..n]);
        while let Some(m) = dec.next_message().map_err(|e| format!("bad frame: {e}"))? {
            if matches!(m, Message::Accept(_)) {
                return Ok(());
            }
        }
    }
}

/// A valid, signed chat packet from `me` to `to`, numbered `n`, sealed to
/// `me`'s own chat key: relays cannot tell, and a flood needs no reader.
pub fn chat(me: &Identity, to: NodeId, n: u64, body_len: usize) -> Message {
    let chat = me
        .chat(to, MsgId(n), n, n, "x".repeat(body_len))
        .expect("a body within the limit");
    let mut ephemeral = [0u8; 32];
    ephemeral[..8].copy_from_slice(&n.to_le_bytes());
    let sealed =
        skyhop_protocol::seal::seal(&chat, &me.chat_key(), ephemeral).expect("a valid key");
    routed(me, to, n, Body::Chat(sealed))
}

/// A valid location query from `me` for `node`, numbered `n` (unsigned:
/// queries need no signature, so a flood of them costs nothing to make).
pub fn location_query(me: &Identity, node: NodeId, n: u64) -> Message {
    let query = Body::LocationQuery {
        request_id: n,
        node,
    };
    routed(me, node, n, query)
}

/// A routed packet from `me` to `dst` with id `n`.
pub fn routed(me: &Identity, dst: NodeId, n: u64, body: Body) -> Message {
    Message::Routed(Packet {
        dst,
        src: me.id(),
        id: MsgId(n),
        ttl: 32,
        hops: 0,
        location: LocationHop::Unused,
        trace: None,
        body,
    })
}
