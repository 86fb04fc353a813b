//! End-to-end test of real `skyhop run` processes on QUIC only: no node
//! listens on TCP, so every connection, and the chat across two supernodes,
//! goes over QUIC.

use std::time::Duration;

use skyhop_tests::{wait_until, NodeProc, Scratch};

const QUIC: &str = "/ip4/127.0.0.1/udp/0/quic-v1";

/// Every address a node advertises, from its `/status`.
fn advertised(node: &NodeProc) -> Vec<String> {
    node.status()["listen_addrs"]
        .as_array()
        .expect("status lists listen addresses")
        .iter()
        .map(|a| a.as_str().expect("an address is text").to_string())
        .collect()
}

/// Two supernodes and two ordinary nodes, each listening on QUIC only (the
/// ordinary nodes bootstrap from different supernodes): a chat each way is
/// delivered.
#[test]
fn two_nodes_chat_over_quic_only() {
    let scratch = Scratch::new("quic");
    let sn0 = NodeProc::start_on(&scratch.path.join("sn0"), "supernode", &[QUIC], &[], &[]);
    let sn1 = NodeProc::start_on(
        &scratch.path.join("sn1"),
        "supernode",
        &[QUIC],
        std::slice::from_ref(&sn0.addr),
        &[],
    );
    let a = NodeProc::start_on(
        &scratch.path.join("a"),
        "ordinary",
        &[QUIC],
        std::slice::from_ref(&sn0.addr),
        &[],
    );
    let b = NodeProc::start_on(
        &scratch.path.join("b"),
        "ordinary",
        &[QUIC],
        std::slice::from_ref(&sn1.addr),
        &[],
    );
    for node in [&sn0, &sn1, &a, &b] {
        let addrs = advertised(node);
        assert!(
            !addrs.is_empty()
                && addrs
                    .iter()
                    .all(|a| a.contains("/udp/") && a.contains("/quic-v1/")),
            "{} advertises non-QUIC addresses: {addrs:?}",
            node.id
        );
    }
    let attached = wait_until(Duration::from_secs(30), || {
        a.primary().is_some() && b.primary().is_some()
    });
    assert!(
        attached,
        "not attached over QUIC; a's log:\n{}\nb's log:\n{}",
        a.log(),
        b.log()
    );
    let outcome = a.send(&b.id, "hello over QUIC");
    assert_eq!(
        outcome["delivered"],
        true,
        "{outcome}; sn0's log:\n{}\nsn1's log:\n{}",
        sn0.log(),
        sn1.log()
    );
    let back = b.send(&a.id, "and back");
    assert_eq!(back["delivered"], true, "{back}");
}
