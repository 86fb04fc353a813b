//! Listing with real `skyhop run` processes: three nodes on one supernode,
//! two of them listed (one by `--listed`, one by `listed = true` in its
//! config file, with a name); the third's `GET /who` and `/who` in its chat
//! prompt show exactly those two, the named one by its name, and a listed
//! node that stops disappears from the list.

use std::time::Duration;

use serde_json::{json, Value};
use skyhop_tests::{http, prompt_output, wait_until, NodeProc, Scratch, ATTACH_TIMEOUT};

/// `GET /who` on `node`: the listed nodes as (id, name) pairs, if it
/// answered.
fn listed(node: &NodeProc) -> Option<Vec<(String, Value)>> {
    let (code, who) = http(&node.control, "GET", "/who", None, Duration::from_secs(15)).ok()?;
    if code != 200 {
        return None;
    }
    let listed = who["listed"].as_array()?;
    Some(
        listed
            .iter()
            .map(|n| {
                (
                    n["id"].as_str().unwrap_or_default().to_owned(),
                    n["name"].clone(),
                )
            })
            .collect(),
    )
}

#[test]
fn the_nodes_listed_at_my_supernode_are_exactly_those_that_chose_to_be_and_still_run() {
    let scratch = Scratch::new("listed");
    let sn = NodeProc::start(&scratch.path.join("sn"), "supernode", &[]);
    let boot = [sn.addr.clone()];
    let alice_dir = scratch.path.join("alice");
    std::fs::create_dir_all(&alice_dir).expect("alice's dir");
    let config = alice_dir.join("skyhop.toml");
    std::fs::write(&config, "name = \"alice\"\nlisted = true\n").expect("config file");
    let config = config.to_string_lossy().into_owned();
    let mut alice = NodeProc::start_with(&alice_dir, "ordinary", &boot, &["--config", &config]);
    let mut bob = NodeProc::start_with(&scratch.path.join("bob"), "ordinary", &boot, &["--listed"]);
    let carol = NodeProc::start(&scratch.path.join("carol"), "ordinary", &boot);
    let on_sn = |n: &NodeProc| n.primary().as_deref() == Some(sn.id.as_str());
    assert!(
        wait_until(ATTACH_TIMEOUT, || on_sn(&alice)
            && on_sn(&bob)
            && on_sn(&carol)),
        "not all three attached to the supernode"
    );

    let mut expected = vec![
        (alice.id.clone(), json!("alice")),
        (bob.id.clone(), Value::Null),
    ];
    expected.sort_by(|a, b| a.0.cmp(&b.0));
    // Alice's name shows once her homes hold her claim and the supernode
    // has checked it there.
    let shown = wait_until(ATTACH_TIMEOUT, || {
        listed(&carol).as_ref() == Some(&expected)
    });
    assert!(
        shown,
        "carol's /who: {:?}, expected {expected:?}; alice's log:\n{}",
        listed(&carol),
        alice.log()
    );
    let (_, who) =
        http(&carol.control, "GET", "/who", None, Duration::from_secs(15)).expect("GET /who");
    assert_eq!(who["supernode"], sn.id.as_str(), "{who}");
    // The supernode's own page lists the same.
    assert_eq!(listed(&sn), Some(expected.clone()));

    // The chat prompt's /who says the same to a person.
    let out = prompt_output(&carol.dir, "/who\n");
    assert!(
        out.contains(&format!("listed at supernode {}", &sn.id[..8])),
        "{out}"
    );
    assert!(
        out.contains(&format!("alice ({})", &alice.id[..8])),
        "{out}"
    );
    assert!(
        out.contains(&format!("{} (no checked name)", &bob.id[..8])),
        "{out}"
    );
    assert!(
        !out.contains(&format!("  {}", &carol.id[..8])),
        "carol is not listed: {out}"
    );

    // Bob stops: gone from the list.
    bob.terminate();
    let alice_only = vec![(alice.id.clone(), json!("alice"))];
    assert!(
        wait_until(ATTACH_TIMEOUT, || listed(&carol).as_ref()
            == Some(&alice_only)),
        "after bob stopped, carol's /who: {:?}",
        listed(&carol)
    );
    // Alice is killed without a word: gone once her link is.
    alice.kill9();
    assert!(
        wait_until(Duration::from_secs(90), || listed(&carol)
            .is_some_and(|l| l.is_empty())),
        "after alice was killed, carol's /who: {:?}",
        listed(&carol)
    );
}
