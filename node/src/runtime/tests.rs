//! The runtime end to end: real libp2p nodes on 127.0.0.1 driven through
//! their [`NodeHandle`]s, each test bounded by a timeout. The helpers here
//! also serve the front's control-API tests.

use std::time::Duration;

use futures::{AsyncWriteExt, StreamExt};
use libp2p::swarm::SwarmEvent;
use libp2p::{noise, tcp, yamux, Multiaddr};
use skyhop_protocol::Role;

use super::node_task::PROTOCOL;
use super::{start, NodeHandle, NodeOptions, SendOutcome, TraceOutcome};
use skyhop_core::Event;

pub(crate) const TEST_TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) async fn node(role: Role, bootstrap: Option<&NodeHandle>) -> NodeHandle {
    let mut opts = NodeOptions::loopback(role);
    if let Some(b) = bootstrap {
        opts.bootstrap = vec![b.info().listen_addrs[0].parse().expect("multiaddr")];
    }
    start(opts).await.expect("node starts")
}

/// A supernode and two ordinary nodes attached to it.
pub(crate) async fn trio() -> (NodeHandle, NodeHandle, NodeHandle) {
    let sn = node(Role::Supernode, None).await;
    let a = node(Role::Ordinary, Some(&sn)).await;
    let b = node(Role::Ordinary, Some(&sn)).await;
    attached(&a).await;
    attached(&b).await;
    (sn, a, b)
}

async fn attached(n: &NodeHandle) {
    loop {
        if n.status().await.expect("running").status.primary.is_some() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A supernode and two ordinary nodes: a chat goes A -> SN -> B and arrives
/// at B; a trace shows the path. (The same through the control API is
/// `front::tests`.)
#[tokio::test]
async fn chat_between_two_ordinary_nodes_through_a_supernode() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let (sn, a, b) = trio().await;
        let b_id = b.info().node_id;
        match a.send_chat(b_id, "hello over libp2p".into()).await.expect("running") {
            SendOutcome::Delivered { hops, .. } => assert_eq!(hops, 2),
            SendOutcome::Failed(r) => panic!("not delivered: {r}"),
            SendOutcome::Stored { copies } => panic!("stored on {copies} homes, not delivered"),
        }
        let got = b.events().since(0);
        assert!(got.iter().any(|(_, e)| matches!(e,
            Event::ChatReceived { from, body, .. } if *from == a.info().node_id && body == "hello over libp2p")));
        match a.trace(b_id).await.expect("running") {
            TraceOutcome::Completed { path, .. } => {
                assert_eq!(path, vec![a.info().node_id, sn.info().node_id, b_id])
            }
            TraceOutcome::Failed(r) => panic!("trace failed: {r}"),
        }

        for n in [&a, &b, &sn] {
            n.shutdown().await.expect("clean shutdown");
        }
    })
    .await
    .expect("test finished in time");
}

/// A peer that sends garbage on /skyhop/1 is disconnected; the other
/// nodes keep chatting.
#[tokio::test]
async fn garbage_on_the_stream_drops_only_that_peer() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let (sn, a, b) = trio().await;

        let mut bad = libp2p::SwarmBuilder::with_new_identity()
            .with_tokio()
            .with_tcp(
                tcp::Config::default(),
                noise::Config::new,
                yamux::Config::default,
            )
            .expect("transport")
            .with_behaviour(|_| libp2p_stream::Behaviour::new())
            .expect("behaviour")
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
            .build();
        let sn_addr: Multiaddr = sn.info().listen_addrs[0].parse().expect("multiaddr");
        let sn_peer = sn.info().peer_id;
        bad.dial(sn_addr).expect("dial");
        let mut control = bad.behaviour().new_control();
        let writer = tokio::spawn(async move {
            let mut s = control
                .open_stream(sn_peer, PROTOCOL)
                .await
                .expect("stream opens");
            // A frame of 5 bytes whose body is no message.
            s.write_all(&[0, 0, 0, 5, 0xff, 0xff, 0xff, 0xff, 0xff])
                .await
                .expect("write");
            s.flush().await.expect("flush");
            s
        });
        let mut closed = false;
        while !closed {
            if let SwarmEvent::ConnectionClosed { peer_id, .. } = bad.select_next_some().await {
                closed = peer_id == sn_peer;
            }
        }
        drop(writer);

        match a
            .send_chat(b.info().node_id, "still here".into())
            .await
            .expect("running")
        {
            SendOutcome::Delivered { .. } => {}
            SendOutcome::Failed(r) => panic!("not delivered after the bad peer: {r}"),
            SendOutcome::Stored { copies } => panic!("stored on {copies} homes, not delivered"),
        }
        let sn_status = sn.status().await.expect("running");
        assert_eq!(sn_status.status.clients.len(), 2);
    })
    .await
    .expect("test finished in time");
}

/// When an ordinary node's supernode goes away, it reattaches to another
/// and chat goes on.
#[tokio::test]
async fn ordinary_node_fails_over_to_another_supernode() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let sn1 = node(Role::Supernode, None).await;
        let sn2 = node(Role::Supernode, Some(&sn1)).await;
        let a = node(Role::Ordinary, Some(&sn1)).await;
        let b = node(Role::Ordinary, Some(&sn2)).await;
        attached(&a).await;
        attached(&b).await;
        let old = a.status().await.expect("running").status.primary;
        let (gone, stays) = if old == Some(sn1.info().node_id) {
            (&sn1, &sn2)
        } else {
            (&sn2, &sn1)
        };
        gone.shutdown().await.expect("clean shutdown");
        loop {
            let p = a.status().await.expect("running").status.primary;
            if p == Some(stays.info().node_id) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        loop {
            let p = b.status().await.expect("running").status.primary;
            if p == Some(stays.info().node_id) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        match a
            .send_chat(b.info().node_id, "after failover".into())
            .await
            .expect("running")
        {
            SendOutcome::Delivered { .. } => {}
            SendOutcome::Failed(r) => panic!("not delivered after failover: {r}"),
            SendOutcome::Stored { copies } => panic!("stored on {copies} homes, not delivered"),
        }
    })
    .await
    .expect("test finished in time");
}

/// A burst of chats in flight at once all arrive: the per-neighbor queues
/// and coalesced writes carry them without loss.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_concurrent_chats_is_delivered() {
    const BURST: usize = 300;
    tokio::time::timeout(TEST_TIMEOUT, async {
        let (_sn, a, b) = trio().await;
        let to = b.info().node_id;
        let started = tokio::time::Instant::now();
        let sends: Vec<_> = (0..BURST)
            .map(|i| {
                let a = a.clone();
                tokio::spawn(async move { a.send_chat(to, format!("burst {i}")).await })
            })
            .collect();
        let mut delivered = 0;
        for s in sends {
            if let Ok(Ok(SendOutcome::Delivered { .. })) = s.await {
                delivered += 1;
            }
        }
        eprintln!("{delivered}/{BURST} delivered in {:?}", started.elapsed());
        assert_eq!(delivered, BURST);
        let dropped = a.status().await.expect("running").dropped_frames;
        assert_eq!(dropped, 0, "no frame dropped on a full queue");
    })
    .await
    .expect("test finished in time");
}
