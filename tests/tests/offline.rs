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

/// Everything the supernodes' mailboxes keep now (chats and receipts).
fn kept(overlay: &Overlay) -> u64 {
    overlay
        .supernodes
        .iter()
        .map(|s| s.status()["mailbox_chats"].as_u64().unwrap_or(0))
        .sum()
}

#[test]
fn bobs_receipt_waits_on_alices_homes_while_she_is_stopped_and_her_history_says_delivered_when_she_starts(
) {
    let mut overlay = Overlay::start("offline-receipt", 3, 2);
    let boot = vec![overlay.supernodes[0].addr.clone()];
    let (alice, bob) = overlay.ordinary.split_at_mut(1);
    let (alice, bob) = (&mut alice[0], &mut bob[0]);
    let hello = alice.send(&bob.id, "hello bob");
    assert_eq!(hello["delivered"], true, "{hello}");
    let (alice_dir, alice_id) = (alice.dir.clone(), alice.id.clone());
    let (bob_dir, bob_id) = (bob.dir.clone(), bob.id.clone());
    bob.terminate();
    let text = "see you at the station";
    let sent = alice.send(&bob_id, text);
    assert!(sent["stored"].as_u64().is_some(), "stored: {sent}");
    // Alice stops too, before bob is back.
    alice.terminate();
    std::thread::sleep(Duration::from_secs(2));
    let bob = NodeProc::start(&bob_dir, "ordinary", &boot);
    let got = wait_until(Duration::from_secs(60), || {
        history(&bob, &alice_id).iter().any(|m| m["body"] == text)
    });
    assert!(got, "bob's history: {:?}", history(&bob, &alice_id));
    // Bob's receipt cannot reach alice: her homes keep it instead of the
    // chat they handed over.
    let receipt_kept = wait_until(Duration::from_secs(30), || {
        let bob_row = history(&bob, &alice_id);
        bob_row.iter().any(|m| m["body"] == text) && kept(&overlay) >= 1
    });
    assert!(receipt_kept, "alice's homes keep bob's receipt");
    // Alice starts again with the same data dir, and her history says
    // delivered, by bob's signed receipt.
    let alice = NodeProc::start(&alice_dir, "ordinary", &boot);
    let delivered = wait_until(Duration::from_secs(60), || {
        history(&alice, &bob_id)
            .iter()
            .any(|m| m["body"] == text && m["state"] == "delivered")
    });
    assert!(delivered, "alice's history: {:?}", history(&alice, &bob_id));
    let row = history(&alice, &bob_id).pop().expect("alice's row");
    assert_eq!(row["said_by"], "recipient", "{row}");
    let none_left = wait_until(Duration::from_secs(30), || kept(&overlay) == 0);
    assert!(none_left, "the homes dropped the receipt once alice had it");
}

#[test]
fn a_chat_stored_on_homes_that_restart_is_still_handed_to_bob() {
    let mut overlay = Overlay::start("offline-restart", 3, 2);
    let (alice, bob) = overlay.ordinary.split_at_mut(1);
    let (alice, bob) = (&alice[0], &mut bob[0]);
    let (bob_dir, bob_id) = (bob.dir.clone(), bob.id.clone());
    bob.terminate();
    let text = "kept through a restart";
    let sent = alice.send(&bob_id, text);
    assert!(sent["stored"].as_u64().is_some(), "stored: {sent}");
    let stored_on = overlay
        .supernodes
        .iter()
        .filter(|s| s.status()["mailbox_chats"] == 1)
        .count();
    assert!(stored_on >= 1, "kept by a home");
    // Every home stops and starts again (same key, same address).
    let homes: Vec<_> = overlay
        .supernodes
        .iter()
        .map(|s| {
            let listen = s
                .addr
                .split("/p2p/")
                .next()
                .expect("an address")
                .to_string();
            (s.dir.clone(), listen)
        })
        .collect();
    for sn in &mut overlay.supernodes {
        sn.terminate();
    }
    let boot = vec![overlay.supernodes[0].addr.clone()];
    let restarted: Vec<NodeProc> = homes
        .iter()
        .enumerate()
        .map(|(i, (dir, listen))| {
            let boot = if i == 0 { &[][..] } else { &boot[..] };
            NodeProc::start_on(dir, "supernode", &[listen.as_str()], boot, &[])
        })
        .collect();
    let still_kept: u64 = restarted
        .iter()
        .map(|s| s.status()["mailbox_chats"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(
        still_kept as usize, stored_on,
        "each home kept its copy across the restart"
    );
    overlay.supernodes = restarted;
    let bob = NodeProc::start(&bob_dir, "ordinary", &boot);
    let attached = wait_until(ATTACH_TIMEOUT, || bob.primary().is_some());
    assert!(
        attached,
        "bob did not attach; bob's log:\n{}\nthe first home's log:\n{}",
        bob.log(),
        overlay.supernodes[0].log()
    );
    let got = wait_until(Duration::from_secs(90), || {
        history(&bob, &alice.id).iter().any(|m| m["body"] == text)
    });
    assert!(
        got,
        "bob's history: {:?}; bob: {}; homes keep {}; bob's log:\n{}",
        history(&bob, &alice.id),
        bob.status(),
        kept(&overlay),
        bob.log()
    );
}
