//! Flat mode (every node a supernode): a lookup of a supernode that
//! greedy routing stops one hop short of.

use super::super::harness::{identity, Harness};
use super::super::{Event, HostCacheEntry, MILLIS, SECS};

/// Supernodes publish no record: a supernode is found only by reaching it,
/// and it signs its own record when asked. Here the asker's query stops at
/// a supernode that has no neighbor closer to the key than itself and is
/// not linked to the supernode asked about, but knows it from its host
/// cache (it was linked to it before: what a node's file or an earlier
/// link leaves). flat-5k seed 1 failed a chat "not found" so: that
/// supernode answered "no record" for a live supernode, on every retry.
#[test]
fn a_query_stopping_one_hop_short_of_a_supernode_it_knows_finds_that_supernode() {
    // Three supernodes: `target`, the one looked up; `near`, closer to it
    // than `asker` is (so that the query stops there), and closer to
    // `asker` than `target` is (so that the answer comes back through it).
    let node = |seed: u64| (seed, identity(seed).id());
    let (target_seed, target) = node(1);
    let ((near_seed, near), (asker_seed, asker)) = (2..20)
        .flat_map(|n| (2..20).map(move |a| (node(n), node(a))))
        .find(|((_, n), (_, a))| {
            n.distance(&target) < a.distance(&target) && n.distance(a) < target.distance(a)
        })
        .expect("three of these ids are placed so");

    let mut h = Harness::new();
    h.add_supernode(asker_seed, &[]);
    h.add_supernode(near_seed, &[asker]);
    h.add_supernode(target_seed, &[]);
    h.run_for(2 * SECS);
    assert!(
        h.node(&asker).links().any(|l| *l == near),
        "asker and near are linked"
    );
    for (a, b) in [(asker, target), (near, target)] {
        assert!(!h.node(&a).links().any(|l| *l == b), "{a} is linked to {b}");
    }
    // `near` knows `target` from its host cache, as a supernode it was
    // linked to a while ago.
    let entry = HostCacheEntry {
        id: target,
        addrs: vec![format!("sim:{target_seed}")],
        last_seen: h.now.saturating_sub(60 * SECS),
        verified: true,
    };
    h.node_mut(&near).restore_host_cache(vec![entry]);

    let now = h.now;
    assert!(h.node_mut(&asker).look_up(now, target), "lookup sent");
    h.drain(asker);
    h.run_for(500 * MILLIS);

    let answers: Vec<bool> = h
        .events
        .iter()
        .filter(|(at, by, _)| *at >= now && *by == asker)
        .filter_map(|(_, _, e)| match e {
            Event::Located { node, online } if *node == target => Some(*online),
            _ => None,
        })
        .collect();
    assert_eq!(
        answers,
        vec![true],
        "the lookup of a live supernode is answered by its own record, once"
    );
}
