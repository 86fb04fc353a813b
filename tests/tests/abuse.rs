//! Abuse by peers that speak the protocol correctly: a client that floods
//! its supernode with valid chats and location queries at full speed is
//! disconnected while 20 honest clients keep chatting, and a client that
//! stops reading is dropped within the writer timeout.

// Test code times real processes; the core's rule against clocks is for
// the node.
#![allow(clippy::disallowed_methods)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::io::WriteHalf;
use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::swarm::SwarmEvent;
use libp2p::{PeerId, Stream, StreamProtocol, Swarm};
use skyhop_protocol::{
    codec, Body, FrameDecoder, Hello, Identity, Join, LocationHop, Message, MsgId, NodeId, Packet,
    Role, PROTOCOL_VERSION,
};
use skyhop_tests::{client_runtime, dial_as, wait_until, Overlay};

const PROTOCOL: StreamProtocol = StreamProtocol::new("/skyhop/1");
/// The node's writer timeout (`runtime::link::WRITE_TIMEOUT`).
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Drives `swarm` until its connection to `peer` closes or `limit` passes;
/// how long the connection lasted, if it closed.
async fn until_closed(
    swarm: &mut Swarm<libp2p_stream::Behaviour>,
    peer: PeerId,
    limit: Duration,
) -> Option<Duration> {
    let start = Instant::now();
    tokio::time::timeout(limit, async {
        loop {
            if let SwarmEvent::ConnectionClosed { peer_id, .. } = swarm.select_next_some().await {
                if peer_id == peer {
                    return start.elapsed();
                }
            }
        }
    })
    .await
    .ok()
}

async fn write(s: &mut (impl AsyncWriteExt + Unpin), msgs: &[Message]) -> std::io::Result<()> {
    let mut out = Vec::new();
    for m in msgs {
        codec::encode_into(m, &mut out).expect("encodes");
    }
    s.write_all(&out).await?;
    s.flush().await
}

/// Says hello and joins like an honest ordinary node; waits for the Accept.
async fn attach(s: &mut Stream, me: &Identity) {
    let hello = Message::Hello(Hello {
        version: PROTOCOL_VERSION,
        role: Role::Ordinary,
        id: me.id(),
        listen_addrs: vec![],
        agent: "abuse-test".into(),
    });
    write(s, &[hello, Message::Join(Join { request_id: 1 })])
        .await
        .expect("write");
    let mut dec = FrameDecoder::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = s.read(&mut buf).await.expect("read");
        assert!(n > 0, "closed before accepting us");
        dec.push(&buf[..n]);
        while let Some(m) = dec.next_message().expect("valid frames") {
            if matches!(m, Message::Accept(_)) {
                return;
            }
        }
    }
}

/// A valid, signed chat packet from `me` to `to`, numbered `n`, sealed to
/// `me`'s own chat key: relays cannot tell, and a flood needs no reader.
fn chat(me: &Identity, to: NodeId, n: u64, body_len: usize) -> Message {
    let chat = me
        .chat(to, MsgId(n), n, n, "x".repeat(body_len))
        .expect("a body within the limit");
    let mut ephemeral = [0u8; 32];
    ephemeral[..8].copy_from_slice(&n.to_le_bytes());
    let sealed =
        skyhop_protocol::seal::seal(&chat, &me.chat_key(), ephemeral).expect("a valid key");
    routed(me, to, n, Body::Chat(sealed))
}

fn routed(me: &Identity, dst: NodeId, n: u64, body: Body) -> Message {
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

/// Sends valid chats to `to` and location queries, alternately and as fast
/// as the connection takes them, until the write fails.
async fn flood(mut w: WriteHalf<Stream>, me: Identity, to: NodeId, sent: Arc<AtomicU64>) {
    for round in 0u64.. {
        let batch: Vec<Message> = (0..32)
            .map(|i| {
                let n = round * 32 + i + 1;
                if i % 2 == 0 {
                    chat(&me, to, n, 64)
                } else {
                    let query = Body::LocationQuery {
                        request_id: n,
                        node: to,
                    };
                    routed(&me, to, n, query)
                }
            })
            .collect();
        if write(&mut w, &batch).await.is_err() {
            return;
        }
        sent.fetch_add(32, Ordering::Relaxed);
    }
}

/// Honest clients in the flood test, each chatting on its own thread.
const HONEST: usize = 20;
/// Chats each honest client sends in each phase (quiet, then flooded).
const CHATS_EACH: usize = 25;
/// How often each honest client starts a chat (when the last one is done).
const CHAT_EVERY: Duration = Duration::from_millis(300);

/// One phase of honest chatting: every client `i` sends [`CHATS_EACH`]
/// chats to client `i + 1`, one every [`CHAT_EVERY`] (staggered across
/// clients), all clients at once; each chat's latency from `POST /send`
/// to its outcome, and the chats that were not delivered.
fn chat_phase(ons: &[skyhop_tests::NodeProc], phase: &str) -> (Vec<Duration>, Vec<String>) {
    let start = Instant::now();
    let per_client: Vec<Vec<(Duration, Option<String>)>> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..ons.len())
            .map(|i| {
                scope.spawn(move || {
                    let (from, to) = (&ons[i], &ons[(i + 1) % ons.len()]);
                    let offset = CHAT_EVERY * i as u32 / ons.len() as u32;
                    (0..CHATS_EACH)
                        .map(|n| {
                            let due = start + offset + CHAT_EVERY * n as u32;
                            std::thread::sleep(due.saturating_duration_since(Instant::now()));
                            let sent_at = Instant::now();
                            let outcome = from.send(&to.id, &format!("{phase} chat {i}.{n}"));
                            let failed = (outcome["delivered"] != true)
                                .then(|| format!("{phase} chat {i}.{n}: {outcome}"));
                            (sent_at.elapsed(), failed)
                        })
                        .collect()
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().expect("an honest client's thread"))
            .collect()
    });
    let mut latencies = Vec::new();
    let mut failed = Vec::new();
    for (latency, failure) in per_client.into_iter().flatten() {
        latencies.push(latency);
        failed.extend(failure);
    }
    (latencies, failed)
}

#[test]
fn a_flooding_client_is_disconnected_while_every_honest_chat_is_delivered() {
    let overlay = Overlay::start("flood", 1, HONEST);
    let sn = &overlay.supernodes[0];
    let ons = &overlay.ordinary;
    // Chats to a node that is not there: valid, yet each costs the
    // supernode a lookup.
    let target = NodeId([0x55; 32]);
    let rt = client_runtime();
    // The same chats before any flood: the reference for the latency.
    let (quiet, failed) = chat_phase(ons, "quiet");
    assert!(failed.is_empty(), "quiet chats not delivered: {failed:?}");

    // Flooders, one after another, each with a fresh identity (ids are
    // free), until the honest chats are done.
    let done = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let flooders = {
        let (done, sent, addr) = (done.clone(), sent.clone(), sn.addr.clone());
        rt.spawn(async move {
            let mut dropped = Vec::new();
            for k in 0u8.. {
                if done.load(Ordering::Relaxed) {
                    break;
                }
                let me = Identity::from_secret([100u8.wrapping_add(k); 32]);
                let (mut swarm, peer) = dial_as(&addr, &me);
                let mut control = swarm.behaviour().new_control();
                let sent = sent.clone();
                let task = tokio::spawn(async move {
                    let mut s = control.open_stream(peer, PROTOCOL).await.expect("stream");
                    attach(&mut s, &me).await;
                    let (mut r, w) = s.split();
                    // Keep reading, so that only the flood can get us dropped.
                    let reader = tokio::spawn(async move {
                        let mut sink = vec![0u8; 64 * 1024];
                        while matches!(r.read(&mut sink).await, Ok(n) if n > 0) {}
                    });
                    flood(w, me, target, sent).await;
                    reader.abort();
                });
                dropped.push(until_closed(&mut swarm, peer, Duration::from_secs(30)).await);
                task.abort();
            }
            dropped
        })
    };
    // The honest chats start once the flood is on.
    let flooding = wait_until(Duration::from_secs(20), || sent.load(Ordering::Relaxed) > 0);
    assert!(flooding, "the flooder never got to send");

    // Honest clients chat meanwhile, as they did before: every chat is
    // delivered.
    let (flooded, failed) = chat_phase(ons, "flooded");
    done.store(true, Ordering::Relaxed);
    let dropped = rt.block_on(flooders).expect("flooders ran");
    assert!(
        failed.is_empty(),
        "chats not delivered under flood: {failed:?}"
    );

    assert!(!dropped.is_empty(), "no flooder ran");
    for (i, closed) in dropped.iter().enumerate() {
        let lasted = closed.unwrap_or_else(|| panic!("flooder {i} was never disconnected"));
        assert!(
            lasted < Duration::from_secs(10),
            "flooder {i} lasted {lasted:?}"
        );
    }
    assert!(sent.load(Ordering::Relaxed) > 600, "the flood was a flood");
    let logged = wait_until(Duration::from_secs(10), || {
        sn.log().contains("frames over budget")
    });
    assert!(logged, "supernode log does not say why:\n{}", sn.log());
    let over = sn.status()["counters"]["dropped"]["over_budget"]
        .as_u64()
        .unwrap_or(0);
    assert!(over > 0, "no frame counted over budget");

    // What an operator sees: frames over budget by class, the bans and
    // the links closed, in /status and in /metrics.
    let status = sn.status();
    let by_class: u64 = status["counters"]["over_budget"]
        .as_object()
        .map(|m| m.values().filter_map(|v| v.as_u64()).sum())
        .unwrap_or(0);
    assert!(
        by_class > 0,
        "/status counts no frame over budget: {status}"
    );
    let banned = status["counters"]["peers_banned"].as_u64().unwrap_or(0);
    assert!(banned >= 1, "/status counts no ban: {status}");
    let closed = status["links_closed"].as_u64().unwrap_or(0);
    assert!(
        closed >= banned,
        "/status: {closed} links closed for {banned} bans"
    );
    let metrics = metrics_of(sn);
    assert!(
        metrics.contains(&format!("skyhop_peers_banned_total {banned}")),
        "no ban count in\n{metrics}"
    );
    assert!(
        metrics.contains("skyhop_over_budget_total{class=\""),
        "no over-budget count in\n{metrics}"
    );
    assert!(
        metrics.contains("skyhop_links_ended_total{by=\"us\"}"),
        "no links-ended count in\n{metrics}"
    );
    // Recorded, not asserted (timings in tests only bound hangs): the
    // issue asks the p99 under flood to stay within 3x of the quiet one.
    let (quiet_p99, flooded_p99) = (percentile_ms(&quiet, 0.99), percentile_ms(&flooded, 0.99));
    eprintln!(
        "{} flooders, {} frames sent, {over} counted over budget, {banned} banned; \
         {HONEST} honest clients, {} chats quiet and {} under flood, all delivered; \
         honest latency p50 / p99: quiet {} / {quiet_p99} ms, under flood {} / {flooded_p99} ms; \
         p99 ratio {:.2}x",
        dropped.len(),
        sent.load(Ordering::Relaxed),
        quiet.len(),
        flooded.len(),
        percentile_ms(&quiet, 0.50),
        percentile_ms(&flooded, 0.50),
        flooded_p99 as f64 / quiet_p99.max(1) as f64,
    );
}

/// The nearest-rank percentile `q` of `samples`, in milliseconds.
fn percentile_ms(samples: &[Duration], q: f64) -> u128 {
    let mut v: Vec<u128> = samples.iter().map(Duration::as_millis).collect();
    v.sort_unstable();
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

/// The node's `/metrics` text.
fn metrics_of(node: &skyhop_tests::NodeProc) -> String {
    let stream = std::os::unix::net::UnixStream::connect(&node.control).expect("connect");
    let request = "GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    let (code, text) = skyhop_tests::exchange(stream, request).expect("metrics");
    assert_eq!(code, 200, "{text}");
    text
}

#[test]
fn a_client_that_never_reads_is_dropped_within_the_writer_timeout() {
    let overlay = Overlay::start("noread", 1, 2);
    let sn = &overlay.supernodes[0];
    let rt = client_runtime();
    let me = Identity::from_secret([77; 32]);
    let lasted = rt.block_on(async move {
        let (mut swarm, peer) = dial_as(&sn.addr, &me);
        let mut control = swarm.behaviour().new_control();
        let writer = tokio::spawn(async move {
            let mut s = control.open_stream(peer, PROTOCOL).await.expect("stream");
            attach(&mut s, &me).await;
            // Chats to ourselves come straight back from our supernode:
            // 150 of 4 KiB is over a Yamux window, within the chat budget's
            // burst. Then never read again.
            let chats: Vec<Message> = (1..=150).map(|n| chat(&me, me.id(), n, 4000)).collect();
            let _ = write(&mut s, &chats).await;
            std::future::pending::<()>().await;
        });
        let since_flood = Instant::now();
        let closed = until_closed(&mut swarm, peer, WRITE_TIMEOUT * 4).await;
        writer.abort();
        closed.map(|_| since_flood.elapsed())
    });
    let lasted = lasted.expect("a peer that never reads was kept");
    assert!(
        lasted <= WRITE_TIMEOUT + Duration::from_secs(8),
        "dropped only after {lasted:?}"
    );
    assert!(
        wait_until(Duration::from_secs(10), || sn
            .log()
            .contains("read nothing")),
        "supernode log does not say why:\n{}",
        sn.log()
    );
    // Everyone else is still served.
    let ons = &overlay.ordinary;
    let outcome = ons[0].send(&ons[1].id, "still served");
    assert_eq!(outcome["delivered"], true, "{outcome}");
    eprintln!("a peer that never reads was dropped after {lasted:?}");
}
