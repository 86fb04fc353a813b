//! End-to-end tests of real `skyhop run` processes on 127.0.0.1: joining,
//! chat, supernode crash, graceful leave, restart from the data directory.

use std::time::Duration;

use skyhop_tests::{wait_until, NodeProc, Overlay, SplitMix};

/// Every attached ordinary node chats with random others: 200 messages, all
/// acknowledged.
#[test]
fn three_supernodes_and_twenty_ordinary_nodes_deliver_200_chats() {
    let overlay = Overlay::start("200chats", 3, 20);
    let ons = &overlay.ordinary;
    let mut rng = SplitMix::new(2026);
    let pairs: Vec<(usize, usize)> = (0..200)
        .map(|_| {
            let a = rng.below(ons.len());
            let b = (a + 1 + rng.below(ons.len() - 1)) % ons.len();
            (a, b)
        })
        .collect();
    let outcomes: Vec<serde_json::Value> = std::thread::scope(|s| {
        let handles: Vec<_> = pairs
            .chunks(20)
            .enumerate()
            .map(|(batch, chunk)| {
                s.spawn(move || {
                    chunk
                        .iter()
                        .enumerate()
                        .map(|(i, (a, b))| {
                            ons[*a].send(&ons[*b].id, &format!("message {batch}.{i}"))
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
    let failed: Vec<&serde_json::Value> =
        outcomes.iter().filter(|o| o["delivered"] != true).collect();
    assert!(
        failed.is_empty(),
        "{} of 200 chats not delivered: {failed:?}",
        failed.len()
    );
    for o in &outcomes {
        let hops = o["hops"].as_u64().expect("hops");
        assert!((1..=6).contains(&hops), "a chat took {hops} hops");
    }
}

/// `kill -9` of a supernode: its clients reattach to another within 10 s and
/// chats to and from them are delivered afterwards.
#[test]
fn a_killed_supernodes_clients_reattach_and_keep_chatting() {
    let mut overlay = Overlay::start("sncrash", 3, 9);
    let victim = (0..3)
        .max_by_key(|i| {
            overlay
                .ordinary
                .iter()
                .filter(|n| n.primary().as_deref() == Some(&overlay.supernodes[*i].id))
                .count()
        })
        .expect("three supernodes");
    let victim_id = overlay.supernodes[victim].id.clone();
    let orphans: Vec<usize> = (0..overlay.ordinary.len())
        .filter(|i| overlay.ordinary[*i].primary().as_deref() == Some(&victim_id))
        .collect();
    assert!(!orphans.is_empty(), "the victim had clients");
    overlay.supernodes[victim].kill9();
    let reattached = wait_until(Duration::from_secs(10), || {
        orphans.iter().all(|i| {
            overlay.ordinary[*i]
                .primary()
                .is_some_and(|p| p != victim_id)
        })
    });
    assert!(
        reattached,
        "clients of the killed supernode did not reattach within 10 s"
    );
    let others: Vec<usize> = (0..overlay.ordinary.len())
        .filter(|i| !orphans.contains(i))
        .collect();
    for (k, o) in orphans.iter().enumerate() {
        let peer = others[k % others.len()];
        let there = overlay.ordinary[*o].send(&overlay.ordinary[peer].id, "after the crash");
        assert_eq!(there["delivered"], true, "orphan -> other: {there}");
        let back = overlay.ordinary[peer].send(&overlay.ordinary[*o].id, "welcome back");
        assert_eq!(back["delivered"], true, "other -> orphan: {back}");
    }
}

/// SIGTERM of an ordinary node: it exits cleanly after a signed leave, and a
/// chat to it fails with a reason that says it is offline.
#[test]
fn after_sigterm_chats_to_the_node_are_stored_on_its_homes() {
    let mut overlay = Overlay::start("leave", 2, 4);
    let gone = overlay.ordinary[1].id.clone();
    let status = overlay.ordinary[1]
        .terminate()
        .expect("exits within 15 s of SIGTERM");
    assert!(status.success(), "SIGTERM exit status {status:?}");
    std::thread::sleep(Duration::from_millis(500));
    // Not delivered, and not failed: the node's home supernodes keep the
    // chat until it comes back (issue 15, offline delivery).
    let outcome = overlay.ordinary[2].send(&gone, "are you there?");
    assert_eq!(outcome["delivered"], false, "{outcome}");
    let stored = outcome["stored"].as_u64().unwrap_or_default();
    assert!((1..=3).contains(&stored), "not stored: {outcome}");
}

/// A restarted node keeps its id (the key file) and rejoins from its host
/// cache with no bootstrap address.
#[test]
fn a_restart_with_the_same_data_dir_keeps_the_id_and_rejoins_alone() {
    let mut overlay = Overlay::start("restart", 2, 2);
    let dir = overlay.ordinary[0].dir.clone();
    let id = overlay.ordinary[0].id.clone();
    let status = overlay.ordinary[0].terminate().expect("exits on SIGTERM");
    assert!(status.success());
    let again = NodeProc::start(&dir, "ordinary", &[]);
    assert_eq!(again.id, id, "the node id survived the restart");
    assert!(
        wait_until(Duration::from_secs(20), || again.primary().is_some()),
        "the restarted node did not rejoin from its host cache; log:\n{}",
        again.log()
    );
    let outcome = overlay.ordinary[1].send(&again.id, "welcome back");
    assert_eq!(outcome["delivered"], true, "{outcome}");
    overlay.ordinary[0] = again;
}

/// Flags that cannot work are refused with a message naming the flag.
#[test]
fn a_bad_flag_names_itself() {
    let out = std::process::Command::new(skyhop_tests::skyhop_bin())
        .args(["run", "--listen", "not-an-address"])
        .output()
        .expect("skyhop runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--listen"),
        "error does not name the flag: {err}"
    );
}
