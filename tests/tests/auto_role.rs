//! End-to-end tests of `--role auto` and failure detection by missing acks,
//! with real `skyhop run` processes on 127.0.0.1.
//!
//! - One seed supernode of 16 clients and 60 auto nodes: the seed's clients
//!   learn by a dial-back that they are reachable, see the seed turn people
//!   away and promote themselves; everyone attaches and every chat of a
//!   small workload is delivered.
//! - A frozen supernode (SIGSTOP: its sockets stay open, so no connection
//!   error tells anyone) is routed around by a missing ack, well before its
//!   client's heartbeats would declare it dead.

// A test process measures its own waits; the rule against reading the
// clock is for the node.
#![allow(clippy::disallowed_methods)]

use std::time::{Duration, Instant};

use serde_json::Value;
use skyhop_tests::{http, wait_until, NodeProc, Scratch, SplitMix};

/// Auto nodes started behind the seed.
const AUTO_NODES: usize = 60;
/// Chats of the workload.
const CHATS: usize = 60;

fn is_supernode(status: &Value) -> bool {
    status["role"]
        .as_str()
        .is_some_and(|r| r.eq_ignore_ascii_case("supernode"))
}

/// Attached (an ordinary node with a primary) or a supernode itself.
fn is_in(node: &NodeProc) -> bool {
    node.primary().is_some() || is_supernode(&node.status())
}

/// Sends the chats from several threads at once; returns the outcomes
/// that were not delivered.
fn undelivered(nodes: &[NodeProc], pairs: &[(usize, usize)]) -> Vec<Value> {
    let outcomes: Vec<(usize, usize, String, Value)> = std::thread::scope(|s| {
        let handles: Vec<_> = pairs
            .chunks(10)
            .enumerate()
            .map(|(batch, chunk)| {
                s.spawn(move || {
                    chunk
                        .iter()
                        .enumerate()
                        .map(|(i, (a, b))| {
                            let text = format!("auto {batch}.{i}");
                            let outcome = nodes[*a].send(&nodes[*b].id, &text);
                            (*a, *b, text, outcome)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("sender thread"))
            .collect()
    });
    // A chat to a node that was moving (promoting, or changing supernode)
    // when its homes were asked is stored there and handed over when the
    // node is back in place: stored, then delivered, as a user sees it in
    // the sender's history.
    outcomes
        .into_iter()
        .filter(|(a, b, text, o)| {
            o["delivered"] != true
                && !(o["stored"].as_u64() > Some(0)
                    && wait_until(Duration::from_secs(120), || {
                        delivered_in_history(&nodes[*a], &nodes[*b].id, text)
                    }))
        })
        .map(|(_, _, _, o)| o)
        .collect()
}

/// Whether `node`'s history shows its chat `text` to `peer` delivered.
fn delivered_in_history(node: &NodeProc, peer: &str, text: &str) -> bool {
    let path = format!("/history?peer={peer}");
    let Ok((200, page)) = http(&node.control, "GET", &path, None, Duration::from_secs(10)) else {
        return false;
    };
    page["messages"].as_array().is_some_and(|rows| {
        rows.iter()
            .any(|r| r["body"] == text && r["state"] == "delivered")
    })
}

#[test]
fn sixty_auto_nodes_behind_a_small_seed_promote_supernodes_attach_and_chat() {
    let scratch = Scratch::new("autorole60");
    // A small population needs a larger chance per check than the default
    // (tuned for thousands, see AutoRoleConfig::promote_per_mille) to grow
    // the layer within the test's time, and every node offers 16 clients
    // like the seed (a client's chance scales with the excess over the
    // capacity it would add); the mechanism is the same.
    let config = scratch.path.join("auto.toml");
    std::fs::create_dir_all(&scratch.path).expect("scratch dir");
    std::fs::write(
        &config,
        "[node.auto_role]\nmin_uptime = 5000000\npromote_per_mille = 100\n",
    )
    .expect("write the config");
    let config = config.to_str().expect("utf-8 path").to_string();
    let seed = NodeProc::start_with(
        &scratch.path.join("seed"),
        "supernode",
        &[],
        &["--max-clients", "16"],
    );
    let started = Instant::now();
    let nodes: Vec<NodeProc> = (0..AUTO_NODES)
        .map(|i| {
            NodeProc::start_with(
                &scratch.path.join(format!("auto{i}")),
                "auto",
                std::slice::from_ref(&seed.addr),
                &["--config", &config, "--max-clients", "16"],
            )
        })
        .collect();
    println!("{AUTO_NODES} auto nodes started in {:?}", started.elapsed());
    let everyone_in = wait_until(Duration::from_secs(90), || nodes.iter().all(is_in));
    let outside: Vec<&str> = nodes
        .iter()
        .filter(|n| !is_in(n))
        .map(|n| n.id.as_str())
        .collect();
    assert!(
        everyone_in,
        "{} of {AUTO_NODES} auto nodes neither attached nor promoted after 90 s: {outside:?}",
        outside.len()
    );
    println!("all in after {:?}", started.elapsed());
    let promoted: Vec<&NodeProc> = nodes.iter().filter(|n| is_supernode(&n.status())).collect();
    assert!(
        !promoted.is_empty(),
        "60 nodes behind a seed of 16 clients, and nobody promoted"
    );
    for p in &promoted {
        let status = p.status();
        assert_eq!(status["reachability"], "reachable", "{status}");
        assert!(status["promotions"].as_u64() >= Some(1), "{status}");
        let log = p.log();
        assert!(
            log.contains("reachable: a supernode dialed this node back")
                && log.contains("promoted to supernode"),
            "the operator reads why: {log}"
        );
    }
    let seed_status = seed.status();
    assert!(
        seed_status["clients"].as_array().map_or(0, Vec::len) <= 16,
        "the seed kept its limit: {seed_status}"
    );
    assert!(!is_supernode(&seed_status) || seed_status["auto_role"] == false);
    let mut rng = SplitMix::new(13);
    let pairs: Vec<(usize, usize)> = (0..CHATS)
        .map(|_| {
            let a = rng.below(nodes.len());
            let b = (a + 1 + rng.below(nodes.len() - 1)) % nodes.len();
            (a, b)
        })
        .collect();
    let failed = undelivered(&nodes, &pairs);
    assert!(
        failed.is_empty(),
        "{} of {CHATS} chats not delivered ({} promoted): {failed:?}",
        failed.len(),
        promoted.len()
    );
    println!(
        "{} promoted; {CHATS} chats delivered; total {:?}",
        promoted.len(),
        started.elapsed()
    );
}

/// SIGSTOP and SIGCONT, for a process that hangs without closing sockets.
fn signal(node: &NodeProc, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([sig, &node.pid().to_string()])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill {sig} {}", node.pid());
}

#[test]
fn a_frozen_supernode_is_routed_around_before_heartbeats_would_notice() {
    let scratch = Scratch::new("frozen");
    // Heartbeats every 10 s: declaring a silent neighbor dead by them
    // takes 30 s (three missed), the whole chat deadline.
    let config = scratch.path.join("slow-heartbeats.toml");
    std::fs::create_dir_all(&scratch.path).expect("scratch dir");
    std::fs::write(
        &config,
        "[node]\nheartbeat_interval = 10000000\nsupernode_heartbeat_interval = 10000000\n",
    )
    .expect("write the config");
    let config = config.to_str().expect("utf-8 path");
    let extra = ["--config", config];
    let sn1 = NodeProc::start_with(&scratch.path.join("sn1"), "supernode", &[], &extra);
    let sn2 = NodeProc::start_with(
        &scratch.path.join("sn2"),
        "supernode",
        std::slice::from_ref(&sn1.addr),
        &extra,
    );
    let alice = NodeProc::start_with(
        &scratch.path.join("alice"),
        "ordinary",
        std::slice::from_ref(&sn1.addr),
        &extra,
    );
    let bob = NodeProc::start_with(
        &scratch.path.join("bob"),
        "ordinary",
        std::slice::from_ref(&sn2.addr),
        &extra,
    );
    let ready = wait_until(Duration::from_secs(30), || {
        let a = alice.status();
        a["primary"] == sn1.id.as_str()
            && a["backups"]
                .as_array()
                .is_some_and(|b| b.iter().any(|x| x == sn2.id.as_str()))
            && bob.primary().as_deref() == Some(sn2.id.as_str())
    });
    assert!(
        ready,
        "alice on sn1 with sn2 as backup, bob on sn2: {} / {}",
        alice.status(),
        bob.status()
    );
    let warm = alice.send(&bob.id, "before");
    assert_eq!(warm["delivered"], true, "{warm}");
    // Let alice's link to sn1 fall quiet, so that her next packet carries
    // a probe.
    std::thread::sleep(Duration::from_secs(2));
    signal(&sn1, "-STOP");
    let sent = Instant::now();
    let outcome = alice.send(&bob.id, "while sn1 hangs");
    let took = sent.elapsed();
    let status = alice.status();
    signal(&sn1, "-CONT");
    assert_eq!(
        outcome["delivered"], true,
        "the chat went around the frozen supernode: {outcome}"
    );
    assert!(
        status["counters"]["suspected"].as_u64() >= Some(1),
        "alice closed her link to sn1 for a missing ack: {status}"
    );
    assert_ne!(status["primary"], sn1.id.as_str(), "{status}");
    // The bound only keeps a regression from passing unseen: heartbeats
    // alone would have taken 30 s to notice.
    assert!(
        took < Duration::from_secs(10),
        "delivered after {took:?}, as slow as heartbeats"
    );
    println!("delivered around the frozen supernode in {took:?}");
}
