//! Listing: who is attached to a supernode and chose to be listed, by the
//! name the supernode checked at the name's homes, and nobody else.

use super::*;
use skyhop_protocol::{Listed, ListedPeer, WhoQuery};

/// An ordinary node attached through `boot`, listed or not, named or not.
fn add_client(
    h: &mut Harness,
    seed: u64,
    boot: NodeId,
    listed: bool,
    name: Option<&str>,
) -> NodeId {
    let cfg = NodeConfig {
        listed,
        name: name.map(str::to_owned),
        ..NodeConfig::default()
    };
    h.add(seed, cfg, &[boot])
}

/// Asks `at`'s supernode who is listed: the answer, if one came.
fn who(h: &mut Harness, at: NodeId) -> Option<Vec<ListedPeer>> {
    let now = h.now;
    let (request, _) = h.node_mut(&at).who(now).expect("attached");
    h.drain(at);
    h.run_for(2 * SECS);
    h.events.iter().find_map(|(_, n, e)| match e {
        Event::Listing { request_id, peers } if *n == at && *request_id == request => peers.clone(),
        _ => None,
    })
}

fn listed(node: NodeId, name: Option<&str>) -> ListedPeer {
    ListedPeer {
        node,
        name: name.map(str::to_owned),
    }
}

fn sorted(mut peers: Vec<ListedPeer>) -> Vec<ListedPeer> {
    peers.sort_by_key(|p| p.node);
    peers
}

fn attached_to(h: &Harness, node: NodeId) -> Option<NodeId> {
    h.events.iter().rev().find_map(|(_, n, e)| match e {
        Event::Attached { sn } if *n == node => Some(*sn),
        _ => None,
    })
}

#[test]
fn a_supernode_lists_exactly_its_clients_that_chose_to_be_listed_until_they_go() {
    let mut h = Harness::overlay(6, 0);
    let sn = h.supernodes()[0];
    let alice = add_client(&mut h, 2000, sn, true, Some("alice"));
    let bob = add_client(&mut h, 2001, sn, true, None);
    let carol = add_client(&mut h, 2002, sn, false, None);
    h.run_for(10 * SECS);
    for n in [alice, bob, carol] {
        assert_eq!(attached_to(&h, n), Some(sn), "all three on one supernode");
    }
    let expected = sorted(vec![listed(alice, Some("alice")), listed(bob, None)]);
    assert_eq!(who(&mut h, carol), Some(expected.clone()));
    assert_eq!(h.node(&sn).listed_count(), 2);
    // The supernode asks itself.
    assert_eq!(who(&mut h, sn), Some(expected));

    // Alice leaves: she is off the list at once.
    let now = h.now;
    h.node_mut(&alice).leave(now);
    h.drain(alice);
    h.run_for(2 * SECS);
    assert_eq!(who(&mut h, carol), Some(vec![listed(bob, None)]));

    // Bob crashes: off the list once his supernode notices the link is gone.
    h.crash(&bob);
    h.run_for(60 * SECS);
    assert_eq!(who(&mut h, carol), Some(vec![]));
}

#[test]
fn a_name_is_shown_only_if_its_homes_hold_the_listed_nodes_claim() {
    let mut h = Harness::overlay(6, 0);
    let sn = h.supernodes()[0];
    let alice = add_client(&mut h, 2000, sn, true, Some("alice"));
    let mallory = add_client(&mut h, 2001, sn, false, None);
    h.run_for(10 * SECS);

    // Mallory signs her own claim to "alice": it verifies, but the homes
    // hold alice's, so mallory is listed by id only.
    let (_, ident) = identity_of(mallory);
    let claim = ident.name_claim("alice".into(), 1, 3600);
    let msg = Message::Listed(Listed {
        listed: true,
        claim: Some(claim),
    });
    h.inject(mallory, sn, msg);
    h.run_for(3 * SECS);
    let expected = sorted(vec![listed(alice, Some("alice")), listed(mallory, None)]);
    assert_eq!(who(&mut h, alice), Some(expected));

    // Nor can she list alice, or herself with alice's claim: the link says
    // who speaks, and a claim for another node is misbehaviour.
    let (_, alice_ident) = identity_of(alice);
    let alice_claim = alice_ident.name_claim("alice".into(), u64::MAX, 3600);
    let forged = Message::Listed(Listed {
        listed: true,
        claim: Some(alice_claim),
    });
    let banned = h.node(&sn).counters().peers_banned;
    h.inject(mallory, sn, forged);
    assert_eq!(h.node(&sn).counters().peers_banned, banned + 1);
    h.run_for(3 * SECS);
    assert_eq!(
        who(&mut h, alice),
        Some(vec![listed(alice, Some("alice"))]),
        "mallory was dropped and left the list"
    );
}

#[test]
fn only_clients_may_ask_and_each_within_its_budget() {
    let mut h = Harness::overlay(6, 0);
    let sns = h.supernodes();
    let (sn, other_sn) = (sns[0], sns[1]);
    let alice = add_client(&mut h, 2000, sn, true, None);
    h.run_for(10 * SECS);

    let dropped = |h: &Harness, r| h.node(&sn).counters().dropped(r);
    // Another supernode is linked but not a client: no answer, counted.
    h.inject(other_sn, sn, Message::WhoQuery(WhoQuery { request_id: 5 }));
    assert_eq!(dropped(&h, DropReason::ListedFromNonClient), 1);
    h.inject(
        other_sn,
        sn,
        Message::Listed(Listed {
            listed: true,
            claim: None,
        }),
    );
    assert_eq!(dropped(&h, DropReason::ListedFromNonClient), 2);
    assert_eq!(h.node(&sn).listed_count(), 1, "only alice");

    // A client asking in a burst gets five answers, then one a second.
    for request_id in 0..7 {
        h.inject(alice, sn, Message::WhoQuery(WhoQuery { request_id }));
    }
    assert_eq!(dropped(&h, DropReason::WhoOverBudget), 2);
    h.run_for(2 * SECS);
    assert!(
        who(&mut h, alice).is_some(),
        "a second later it is answered"
    );
    assert!(who(&mut h, alice).is_some(), "and again a second later");
}

#[test]
fn a_listing_nobody_asked_for_is_ignored() {
    let mut h = Harness::overlay(6, 0);
    let sn = h.supernodes()[0];
    let alice = add_client(&mut h, 2000, sn, false, None);
    h.run_for(10 * SECS);
    let listing = skyhop_protocol::Listing {
        request_id: 42,
        peers: vec![listed(sn, Some("admin"))],
    };
    h.inject(sn, alice, Message::Listing(listing));
    assert_eq!(
        h.node(&alice)
            .counters()
            .dropped(DropReason::UnsolicitedReply),
        1
    );
    assert!(!h
        .events
        .iter()
        .any(|(_, n, e)| *n == alice && matches!(e, Event::Listing { .. })));
}
