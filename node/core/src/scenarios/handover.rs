//! Supernodes that hand their clients and records over before they go
//! (`Node::start_leaving`): alone, several at once, while their neighbors
//! crash, and a record that reaches one after its own hand-over.

use skyhop_protocol::{Body, Message, NodeId};

use super::super::harness::{identity, Harness};
use super::super::{NodeConfig, SECS};
use super::routed;

/// The `n` supernodes closest to `of` (itself left out), nearest first.
fn closest_supernodes(h: &Harness, of: NodeId, n: usize) -> Vec<NodeId> {
    let mut sns: Vec<NodeId> = h.supernodes().into_iter().filter(|s| *s != of).collect();
    sns.sort_by_key(|s| s.distance(&of));
    sns.truncate(n);
    sns
}

/// `leavers` start to leave at the same moment as `crashed` crash; each
/// leaver leaves when its drain is over. Returns the records (node, its
/// supernode) the leavers handed over.
fn exodus(h: &mut Harness, leavers: &[NodeId], crashed: &[NodeId]) -> Vec<(NodeId, NodeId)> {
    let now = h.now;
    let mut until = now;
    for leaver in leavers {
        until = h.node_mut(leaver).start_leaving(now);
        h.drain(*leaver);
    }
    for gone in crashed {
        h.crash(gone);
    }
    h.run_until(until);
    let mut handed = Vec::new();
    for leaver in leavers {
        handed.extend_from_slice(h.node(leaver).handed_over());
        let now = h.now;
        h.node_mut(leaver).leave(now);
        h.drain(*leaver);
    }
    for leaver in leavers {
        h.crash(leaver);
    }
    handed
}

/// The records among `records` whose node is still attached to the
/// supernode they name, and that one of their homes (the `replicas`
/// closest live supernodes) lacks: each with the homes lacking it.
fn records_missing_a_home(
    h: &Harness,
    records: &[(NodeId, NodeId)],
) -> Vec<(NodeId, NodeId, Vec<NodeId>)> {
    let replicas = NodeConfig::default().replicas;
    let sns = h.supernodes();
    records
        .iter()
        .filter(|(node, sn)| h.nodes.contains_key(node) && h.node(node).primary() == Some(*sn))
        .filter_map(|(node, sn)| {
            let mut homes = sns.clone();
            homes.sort_by_key(|s| s.distance(node));
            let lacking: Vec<NodeId> = homes
                .iter()
                .take(replicas)
                .filter(|home| !h.node(home).holds_record(node, sn, h.now))
                .copied()
                .collect();
            (!lacking.is_empty()).then_some((*node, *sn, lacking))
        })
        .collect()
}

/// How many of `records` are due: their node is still attached to the
/// supernode they name.
fn due(h: &Harness, records: &[(NodeId, NodeId)]) -> usize {
    records
        .iter()
        .filter(|(node, sn)| h.nodes.contains_key(node) && h.node(node).primary() == Some(*sn))
        .count()
}

#[test]
fn a_supernode_that_hands_over_before_leaving_moves_its_clients_and_records() {
    let mut h = Harness::overlay(8, 40);
    h.run_for(30 * SECS);
    let leaver = *h
        .supernodes()
        .iter()
        .max_by_key(|s| h.node(s).clients().count())
        .expect("supernodes");
    let clients: Vec<NodeId> = h.node(&leaver).clients().copied().collect();
    assert!(!clients.is_empty(), "the leaver has clients");
    let handed = exodus(&mut h, &[leaver], &[]);
    assert!(
        due(&h, &handed) > 0,
        "the leaver was a home for some records"
    );
    for c in &clients {
        let primary = h.node(c).primary();
        assert!(
            primary.is_some_and(|p| p != leaver),
            "{c:?} moved to another supernode during the drain, not {primary:?}"
        );
    }
    // Each record handed over is on every home it should now have (the
    // closest live supernodes): its node's supernode did not have to
    // publish it again.
    let missing = records_missing_a_home(&h, &handed);
    assert!(missing.is_empty(), "records missing a home: {missing:?}");
    // And every former client still gets its chats.
    let sender = *h
        .ordinaries()
        .iter()
        .find(|o| !clients.contains(o))
        .expect("a sender");
    let sent: Vec<_> = clients
        .iter()
        .map(|c| h.send_chat(sender, *c, "after the hand-over"))
        .collect();
    h.run_for(20 * SECS);
    for msg in sent {
        assert!(matches!(h.outcome(sender, msg), Some(Ok(_))), "chat {msg}");
    }
}

#[test]
fn three_neighbor_supernodes_that_leave_at_once_leave_every_record_on_all_its_live_homes() {
    let mut h = Harness::overlay(12, 80);
    h.run_for(30 * SECS);
    // Three supernodes side by side: each is among the homes of the
    // others' records, so each would hand records to the other two.
    let first = h.supernodes()[0];
    let mut leavers = vec![first];
    leavers.extend(closest_supernodes(&h, first, 2));
    let handed = exodus(&mut h, &leavers, &[]);
    assert_every_record_due_has_a_live_home(&h, &handed, 10);
}

#[test]
fn a_supernode_that_leaves_as_its_closest_neighbors_crash_hands_its_records_to_live_homes() {
    let mut h = Harness::overlay(12, 80);
    h.run_for(30 * SECS);
    let leaver = h.supernodes()[0];
    let crashed = closest_supernodes(&h, leaver, 2);
    let handed = exodus(&mut h, &[leaver], &crashed);
    assert_every_record_due_has_a_live_home(&h, &handed, 5);
}

/// At least `min_due` of the records `handed` over are due, and every one
/// of them is on a live home.
fn assert_every_record_due_has_a_live_home(
    h: &Harness,
    handed: &[(NodeId, NodeId)],
    min_due: usize,
) {
    assert!(due(h, handed) >= min_due, "{} records due", due(h, handed));
    let missing = records_missing_a_home(h, handed);
    assert!(
        missing.is_empty(),
        "{} of {} records due miss a live home: {missing:?}",
        missing.len(),
        due(h, handed)
    );
}

#[test]
fn a_leaving_supernode_passes_on_a_record_handed_to_it_after_its_own_hand_over() {
    let mut h = Harness::overlay(8, 20);
    h.run_for(30 * SECS);
    let node = identity(9_001);
    let mut sns = h.supernodes();
    sns.sort_by_key(|s| s.distance(&node.id()));
    // The sender is not a home of the record: it is passed on to all three.
    let (leaver, attached_to, sender) = (sns[0], sns[1], sns[sns.len() - 1]);
    let now = h.now;
    let until = h.node_mut(&leaver).start_leaving(now);
    h.drain(leaver);
    // Past the middle of the drain, when its own records went.
    h.run_until(until - 2 * SECS);
    // A supernode that did not hear of the departure hands it a record
    // (of a node attached to a supernode that stays).
    let record = node.location_record(
        attached_to,
        Vec::new(),
        h.now,
        NodeConfig::default().record_lifetime_s,
    );
    let packet = routed(sender, leaver, 77, 1, Body::Publish(record));
    h.inject(sender, leaver, Message::Routed(packet));
    h.run_until(until);
    let now = h.now;
    h.node_mut(&leaver).leave(now);
    h.drain(leaver);
    h.crash(&leaver);
    let mut homes: Vec<NodeId> = h.supernodes();
    homes.sort_by_key(|s| s.distance(&node.id()));
    let replicas = NodeConfig::default().replicas;
    let holders: Vec<&NodeId> = homes
        .iter()
        .filter(|s| h.node(s).holds_record(&node.id(), &attached_to, h.now))
        .collect();
    for home in homes.iter().take(replicas) {
        assert!(
            holders.contains(&home),
            "{home:?}, a home of the record, holds it; held by {holders:?}"
        );
    }
}
