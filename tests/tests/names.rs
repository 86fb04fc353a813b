//! Names with real `skyhop run` processes: two named nodes chat by name
//! (through the API and the chat prompt); a node claiming a name another
//! key holds stops with a clear error naming the holder; a pinned name
//! that later resolves to another key is flagged and keeps its pin until
//! the user re-pins; a contact that left is listed offline, from its home
//! supernodes' answer.

use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use skyhop_tests::{
    http, prompt_output, skyhop_bin, wait_until, NodeProc, Scratch, ATTACH_TIMEOUT,
};

/// `method path` on `node`'s control socket: status and JSON answer.
fn call(node: &NodeProc, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    http(&node.control, method, path, body, Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{method} {path} on {}: {e}", node.dir.display()))
}

/// `POST /resolve` of `to` on `node`.
fn resolve(node: &NodeProc, to: &str) -> (u16, Value) {
    call(node, "POST", "/resolve", Some(&json!({ "to": to })))
}

/// Whether `node`'s log says its name is held by its home supernodes.
fn claimed(node: &NodeProc, name: &str) -> bool {
    node.log().contains(&format!("name '{name}' is yours"))
}

#[test]
fn two_named_nodes_chat_by_name_and_a_taken_name_is_refused_with_the_holder() {
    let scratch = Scratch::new("names-chat");
    let sn = NodeProc::start(&scratch.path.join("sn"), "supernode", &[]);
    let boot = [sn.addr.clone()];
    let alice = NodeProc::start_with(
        &scratch.path.join("alice"),
        "ordinary",
        &boot,
        &["--name", "alice"],
    );
    let bob = NodeProc::start_with(
        &scratch.path.join("bob"),
        "ordinary",
        &boot,
        &["--name", "bob"],
    );
    assert!(
        wait_until(ATTACH_TIMEOUT, || claimed(&alice, "alice")
            && claimed(&bob, "bob")),
        "names not claimed; alice's log:\n{}\nbob's log:\n{}",
        alice.log(),
        bob.log()
    );
    let status = alice.status();
    assert_eq!(
        (&status["name"], &status["name_state"]),
        (&json!("alice"), &json!("held"))
    );
    // Through the API, by name.
    let sent = bob.send("alice", "hello alice, by name");
    assert_eq!(sent["delivered"], true, "{sent}");
    assert_eq!(
        sent["to"],
        alice.id.as_str(),
        "the name resolved to alice's key"
    );
    // bob's contacts now pin alice's name to her key.
    let (_, contacts) = call(&bob, "GET", "/contacts", None);
    let pinned = contacts["contacts"]
        .as_array()
        .expect("contacts")
        .iter()
        .find(|c| c["name"] == "alice")
        .unwrap_or_else(|| panic!("alice is a named contact: {contacts}"));
    assert_eq!(pinned["id"], alice.id.as_str());
    // And through the chat prompt, the other way.
    let out = prompt_output(&alice.dir, "/to bob\nhi bob, from the prompt\n");
    assert!(out.contains("talking to bob"), "{out}");
    assert!(out.contains("delivered"), "{out}");

    // A second key claiming "alice" is told who holds it, and stops.
    let mut impostor = NodeProc::start_with(
        &scratch.path.join("impostor"),
        "ordinary",
        &boot,
        &["--name", "alice"],
    );
    let status = impostor.wait_exit(Duration::from_secs(60));
    let log = impostor.log();
    assert!(
        status.is_some_and(|s| !s.success()),
        "the impostor keeps running or exits 0: {status:?}; log:\n{log}"
    );
    let expected = format!("name 'alice' is taken by key {}", &alice.id[..12]);
    assert!(log.contains(&expected), "no '{expected}' in:\n{log}");
    assert!(log.contains("choose another --name"), "{log}");
    // Alice keeps her name.
    let (code, r) = resolve(&sn, "alice");
    assert_eq!((code, &r["id"]), (200, &json!(alice.id)), "{r}");
}

#[test]
fn a_bad_name_is_refused_at_start_naming_the_flag_and_the_fix() {
    let scratch = Scratch::new("names-bad");
    let out = Command::new(skyhop_bin())
        .args(["run", "--mdns", "off", "--name", "Alice!"])
        .arg("--data-dir")
        .arg(scratch.path.join("a"))
        .output()
        .expect("runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("--name 'Alice!'"), "{err}");
    assert!(err.contains("a-z, 0-9"), "{err}");
}

#[test]
fn a_pinned_name_that_resolves_to_another_key_is_flagged_until_repinned_and_presence_comes_from_the_homes(
) {
    let scratch = Scratch::new("names-tofu");
    let sn = NodeProc::start(&scratch.path.join("sn"), "supernode", &[]);
    let boot = [sn.addr.clone()];
    // Claims live 60 s unless refreshed.
    let short = ["--name", "alice", "--name-days", "0.0007"];
    let mut alice = NodeProc::start_with(&scratch.path.join("alice"), "ordinary", &boot, &short);
    let bob = NodeProc::start(&scratch.path.join("bob"), "ordinary", &boot);
    assert!(
        wait_until(ATTACH_TIMEOUT, || claimed(&alice, "alice")
            && bob.primary().is_some()),
        "alice did not claim her name:\n{}",
        alice.log()
    );
    let (code, first) = resolve(&bob, "alice");
    assert_eq!((code, &first["id"]), (200, &json!(alice.id)), "{first}");
    assert_eq!(first["conflict"], Value::Null);
    // Alice goes away; her claim expires; another key takes the name.
    alice.terminate();
    // Listing the contacts asks alice's home supernodes: she is offline.
    let offline = wait_until(Duration::from_secs(20), || {
        let (_, c) = call(&bob, "GET", "/contacts", None);
        c["contacts"].as_array().is_some_and(|all| {
            all.iter()
                .any(|c| c["name"] == "alice" && c["presence"] == "offline")
        })
    });
    assert!(
        offline,
        "alice is not shown offline; bob's log:\n{}",
        bob.log()
    );
    std::thread::sleep(Duration::from_secs(60));
    let other = NodeProc::start_with(&scratch.path.join("other"), "ordinary", &boot, &short);
    assert!(
        wait_until(Duration::from_secs(30), || claimed(&other, "alice")),
        "the freed name was not claimed:\n{}",
        other.log()
    );
    // bob still uses the pinned key, and is warned that the name moved.
    let flagged = wait_until(Duration::from_secs(20), || {
        let (_, r) = resolve(&bob, "alice");
        r["conflict"] == json!(other.id)
    });
    assert!(flagged, "no conflict shown; bob's log:\n{}", bob.log());
    let (_, r) = resolve(&bob, "alice");
    assert_eq!(r["id"], json!(alice.id), "the pin holds: {r}");
    assert!(
        r["warning"].as_str().is_some_and(|w| w.contains("WARNING")),
        "{r}"
    );
    assert!(bob
        .log()
        .contains("WARNING: name 'alice' now resolves to key"));
    let (_, contacts) = call(&bob, "GET", "/contacts", None);
    assert!(
        contacts["contacts"]
            .as_array()
            .expect("contacts")
            .iter()
            .any(|c| c["name"] == "alice" && c["name_conflict"] == json!(other.id)),
        "{contacts}"
    );
    // The user trusts the new key.
    let (code, repinned) = call(&bob, "POST", "/repin", Some(&json!({ "name": "alice" })));
    assert_eq!(
        (code, &repinned["id"]),
        (200, &json!(other.id)),
        "{repinned}"
    );
    let (_, r) = resolve(&bob, "alice");
    assert_eq!((&r["id"], &r["conflict"]), (&json!(other.id), &Value::Null));
}
