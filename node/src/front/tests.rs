//! The control API end to end: the front's client against the runtime's
//! server, on real libp2p nodes on 127.0.0.1, each test bounded by a timeout.

use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::client::{call, REQUEST_TIMEOUT, SEND_TIMEOUT};
use super::http::{self, Endpoint};
use crate::runtime::api::{
    Event, EventsRequest, PeersRequest, PingRequest, SendRequest, StatusRequest, TraceRequest,
};
use crate::runtime::control::{self, ControlListen};
use crate::runtime::NodeHandle;

/// A private scratch directory for one test's control socket.
struct SocketDir(std::path::PathBuf);

impl SocketDir {
    fn new(label: &str) -> SocketDir {
        let dir = std::env::temp_dir().join(format!("skyhop-ctl-{label}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        crate::runtime::storage::make_private_dir(&dir).expect("scratch dir");
        SocketDir(dir)
    }
}

impl Drop for SocketDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Serves `node`'s control API on a Unix socket in `dir`.
async fn serve_unix(node: &NodeHandle, dir: &SocketDir) -> Endpoint {
    let path = dir.0.join("control.sock");
    control::serve(node.clone(), ControlListen::Unix(path.clone()))
        .await
        .expect("control API binds");
    Endpoint::Unix(path)
}
use crate::runtime::tests::{trio, TEST_TIMEOUT};
use crate::runtime::{SendOutcome, TraceOutcome};

/// The control API sends a chat to a prefix the node knows, answers an
/// unknown path with 404 and a JSON error, and refuses a POST without
/// Content-Length.
#[tokio::test]
async fn control_api_sends_to_a_known_prefix_and_refuses_bad_requests() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let (sn, a, b) = trio().await;
        let b_id = b.info().node_id;
        // A knows B's id once they have chatted: B is a recent partner.
        let first = a.send_chat(b_id, "hello".into()).await;
        assert!(matches!(first, Ok(SendOutcome::Delivered { .. })));
        let dir = SocketDir::new("prefix");
        let addr = serve_unix(&a, &dir).await;
        let prefix = &b_id.to_hex()[..10];
        let (status, v) = http::request(
            &addr,
            "POST",
            "/send",
            Some(&json!({"to": prefix, "text": "via http"})),
            Duration::from_secs(10),
        )
        .await
        .expect("answer");
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["delivered"], json!(true), "{v}");
        let (status, v) = http::request(&addr, "GET", "/nope", None, Duration::from_secs(5))
            .await
            .expect("answer");
        assert_eq!(status, 404);
        assert!(v["error"].is_string());
        assert_eq!(v["code"], "not_found");
        // A POST without Content-Length is refused with a JSON error.
        let mut raw = tokio::net::UnixStream::connect(dir.0.join("control.sock"))
            .await
            .expect("connect");
        raw.write_all(b"POST /send HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("write");
        let mut answer = String::new();
        raw.read_to_string(&mut answer).await.expect("read");
        assert!(answer.starts_with("HTTP/1.1 411"), "{answer}");
        assert!(answer.contains("\"code\":\"length_required\""), "{answer}");
        for n in [&a, &b, &sn] {
            n.shutdown().await.expect("clean shutdown");
        }
    })
    .await
    .expect("test finished in time");
}

/// `GET /events` long-polls: a chat that arrives while the request waits
/// is returned at once, with the sender's id.
#[tokio::test]
async fn events_long_poll_returns_an_incoming_chat() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let (_sn, a, b) = trio().await;
        let dir = SocketDir::new("poll");
        let addr = serve_unix(&b, &dir).await;
        let since = b.events().newest();
        let poll = tokio::spawn(async move {
            http::request(
                &addr,
                "GET",
                &format!("/events?since={since}"),
                None,
                Duration::from_secs(20),
            )
            .await
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        let started = tokio::time::Instant::now();
        let outcome = a.send_chat(b.info().node_id, "poll me".into()).await;
        assert!(matches!(outcome, Ok(SendOutcome::Delivered { .. })));
        let (status, v) = poll.await.expect("joined").expect("answer");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "long-poll woke up"
        );
        assert_eq!(status, 200);
        let chat = v["events"]
            .as_array()
            .expect("events")
            .iter()
            .find(|e| e["event"] == "chat_received")
            .expect("the chat is among the events")
            .clone();
        assert_eq!(chat["body"], "poll me");
        assert_eq!(chat["from"], a.info().node_id.to_hex());
    })
    .await
    .expect("test finished in time");
}

/// The typed client reads every reply the server writes: status, peers,
/// events, a delivered send and a completed trace.
#[tokio::test]
async fn the_typed_client_reads_every_reply() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let (sn, a, b) = trio().await;
        let dir = SocketDir::new("typed");
        let addr = &serve_unix(&a, &dir).await;
        let status = call(addr, &StatusRequest, REQUEST_TIMEOUT)
            .await
            .expect("status");
        assert_eq!(status.id, a.info().node_id);
        assert_eq!(status.primary, Some(sn.info().node_id));
        let to = b.info().node_id;
        let send = SendRequest {
            to: to.to_hex(),
            text: "typed".into(),
        };
        let sent = call(addr, &send, SEND_TIMEOUT).await.expect("send");
        assert_eq!(sent.to, to);
        assert!(matches!(
            sent.outcome,
            SendOutcome::Delivered { hops: 2, .. }
        ));
        let peers = call(addr, &PeersRequest, REQUEST_TIMEOUT)
            .await
            .expect("peers");
        assert!(peers.recent.contains(&to), "{peers:?}");
        let traced = call(addr, &TraceRequest { to: to.to_hex() }, SEND_TIMEOUT)
            .await
            .expect("trace");
        assert!(
            matches!(&traced.outcome, TraceOutcome::Completed { path, .. } if path.len() == 3),
            "{traced:?}"
        );
        let events = EventsRequest {
            since: 0,
            wait: Some(0),
        };
        let log = call(addr, &events, REQUEST_TIMEOUT).await.expect("events");
        assert!(log
            .events
            .iter()
            .any(|e| matches!(e.event, Event::ChatDelivered { to: t, .. } if t == to)));
        let ping = PingRequest {
            to: to.to_hex(),
            count: 3,
            interval_ms: 100,
        };
        let pinged = call(addr, &ping, SEND_TIMEOUT).await.expect("ping");
        assert_eq!((pinged.sent, pinged.received, pinged.hops), (3, 3, Some(2)));
        assert_eq!(pinged.loss_pct, 0.0);
        assert!(pinged
            .stats
            .is_some_and(|s| s.min_ms <= s.p50_ms && s.p50_ms <= s.max_ms));
        let unknown = TraceRequest { to: "zz".into() };
        let e = call(addr, &unknown, SEND_TIMEOUT)
            .await
            .expect_err("not an id");
        assert!(e.to_string().contains("'zz'"), "{e}");
    })
    .await
    .expect("test finished in time");
}
