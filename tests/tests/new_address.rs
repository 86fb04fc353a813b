//! A supernode that restarts on a new port, with real `skyhop run`
//! processes: clients whose data dirs remember its old address (their saved
//! host cache) and that are started with its new address on the command
//! line attach and chat, as fresh ones would.

use skyhop_tests::{wait_until, NodeProc, Overlay, ATTACH_TIMEOUT};

#[test]
fn clients_that_saved_a_supernodes_old_address_attach_through_its_new_bootstrap_address_and_chat() {
    let mut overlay = Overlay::start("new-address", 1, 2);
    let first = overlay.ordinary[0].send(&overlay.ordinary[1].id, "before the move");
    assert_eq!(first["delivered"], true, "{first}");
    let old_addr = overlay.supernodes[0].addr.clone();
    // Everyone stops; the clients save their host cache (the supernode at
    // its old address) on the way out.
    for n in &mut overlay.ordinary {
        n.terminate();
    }
    let sn_dir = overlay.supernodes[0].dir.clone();
    overlay.supernodes[0].terminate();
    for n in &overlay.ordinary {
        let saved = std::fs::read_to_string(n.dir.join("hosts.json")).unwrap_or_default();
        let old = old_addr.split("/p2p/").next().expect("an address");
        assert!(saved.contains(&format!("{old}/p2p/")), "the saved: {saved}");
    }
    // The supernode comes back with the same key on another port.
    let sn = NodeProc::start(&sn_dir, "supernode", &[]);
    assert_ne!(sn.addr, old_addr, "the supernode got a new port");
    let boot = vec![sn.addr.clone()];
    let dirs: Vec<_> = overlay.ordinary.iter().map(|n| n.dir.clone()).collect();
    overlay.supernodes = vec![sn];
    overlay.ordinary = dirs
        .iter()
        .map(|d| NodeProc::start(d, "ordinary", &boot))
        .collect();
    let (alice, bob) = (&overlay.ordinary[0], &overlay.ordinary[1]);
    let attached = wait_until(ATTACH_TIMEOUT, || {
        alice.primary().is_some() && bob.primary().is_some()
    });
    assert!(
        attached,
        "not attached within {ATTACH_TIMEOUT:?}; alice: {}\nalice's log:\n{}",
        alice.status(),
        alice.log()
    );
    let sent = alice.send(&bob.id, "after the move");
    assert_eq!(sent["delivered"], true, "{sent}");
    // What alice saves now is the new address only.
    let alice_dir = alice.dir.clone();
    overlay.ordinary[0].terminate();
    let saved = std::fs::read_to_string(alice_dir.join("hosts.json")).unwrap_or_default();
    // The address up to its `/p2p/`, so that port 4123 does not match 41230.
    let port = |addr: &str| {
        let tcp = addr.split("/p2p/").next().expect("an address");
        format!("{tcp}/p2p/")
    };
    assert!(
        saved.contains(&port(&boot[0])),
        "the saved host cache: {saved}"
    );
    assert!(
        !saved.contains(&port(&old_addr)),
        "the saved host cache: {saved}"
    );
}
