//! Offline delivery with real `skyhop run` processes: alice writes to bob
//! while bob is stopped; the chat is stored on bob's home supernodes;
//! bob starts again later (same data dir, same key) and gets it; alice's
//! node reports stored, then delivered, in its answer, its events and its
//! history.

use std::time::Duration;

use serde_json::Value;
use skyhop_tests::{http, wait_until, NodeProc, Overlay, ATTACH_TIMEOUT};

/// `GET path` on `node`'s control socket; the JSON answer of a 200.
fn get(node: &NodeProc, path: &str) -> Value {
    match http(&node.control, "GET", path, None, Duration::from_secs(10)) {
        Ok((200, v)) => v,
        other => panic!("GET {path} on {}: {other:?}", node.dir.display()),
    }
}

/// The events `node` logged whose `event` is `kind`.
fn events(node: &NodeProc, kind: &str) -> Vec<Value> {
    get(node, "/events?since=0&wait=0")["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["event"] == kind)
        .cloned()
        .collect()
}

/// `node`'s history rows with `peer`.
fn history(node: &NodeProc, peer: &str) -> Vec<Value> {
    get(node, &format!("/history?peer={peer}"))["messages"]
        .as_array()
        .expect("messages")
        .clone()
}

#[test]
fn alice_writes_to_bob_while_he_is_stopped_and_bob_gets_it_when_he_starts_again() {
    let mut overlay = Overlay::start("offline", 3, 2);
    let boot = vec![overlay.supernodes[0].addr.clone()];
    let sn_ids: Vec<String> = overlay.supernodes.iter().map(|s| s.id.clone()).collect();
    let (alice, bob) = overlay.ordinary.split_at_mut(1);
    let (alice, bob) = (&alice[0], &mut bob[0]);
    let hello = alice.send(&bob.id, "hello bob");
    assert_eq!(hello["delivered"], true, "{hello}");
    // Bob stops.
    bob.terminate();
    let bob_dir = bob.dir.clone();
    let bob_id = bob.id.clone();
    let text = "while you were out: lunch at noon?";
    let sent = alice.send(&bob_id, text);
    assert_eq!(sent["delivered"], false, "{sent}");
    let copies = sent["stored"].as_u64().expect("stored on bob's homes");
    assert!((1..=3).contains(&copies), "{sent}");
    let stored = events(alice, "chat_stored");
    assert!(!stored.is_empty(), "alice's events say stored");
    for e in &stored {
        assert_eq!(e["to"], bob_id.as_str());
        let by = e["by"].as_str().expect("signed by a home");
        assert!(sn_ids.iter().any(|s| s == by), "by a supernode: {e}");
    }
    let row = history(alice, &bob_id).pop().expect("alice's row");
    assert_eq!(
        (&row["body"], &row["state"]),
        (&Value::from(text), &Value::from("stored"))
    );
    // Bob starts again later, with the same data dir (so the same key).
    std::thread::sleep(Duration::from_secs(2));
    let bob = NodeProc::start(&bob_dir, "ordinary", &boot);
    assert!(
        wait_until(ATTACH_TIMEOUT, || bob.primary().is_some()),
        "bob did not attach again"
    );
    let got = wait_until(Duration::from_secs(60), || {
        history(&bob, &alice.id).iter().any(|m| m["body"] == text)
    });
    assert!(
        got,
        "bob's history has the chat: {:?}",
        history(&bob, &alice.id)
    );
    let received: Vec<Value> = history(&bob, &alice.id)
        .into_iter()
        .filter(|m| m["body"] == text)
        .collect();
    assert_eq!(
        received.len(),
        1,
        "handed to bob once, though 3 homes kept it"
    );
    assert_eq!(received[0]["state"], "received");
    let delivered = wait_until(Duration::from_secs(30), || {
        history(alice, &bob_id)
            .iter()
            .any(|m| m["body"] == text && m["state"] == "delivered")
    });
    assert!(delivered, "alice's row: {:?}", history(alice, &bob_id));
    let row = history(alice, &bob_id).pop().expect("alice's row");
    assert_eq!(row["said_by"], "recipient", "{row}");
    let msg_id = &stored[0]["msg_id"];
    assert!(
        events(alice, "chat_delivered")
            .iter()
            .any(|e| &e["msg_id"] == msg_id),
        "alice's events say delivered"
    );
    // Every home drops it once bob has it.
    let none_left = wait_until(Duration::from_secs(30), || {
        overlay
            .supernodes
            .iter()
            .all(|s| s.status()["mailbox_chats"] == 0)
    });
    assert!(none_left, "the homes dropped the chat");
}
