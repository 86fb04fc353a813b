//! Names: a claim is stored at the homes of the name's key, refused for a
//! name another key holds, refreshed only by its owner, forgotten when not
//! refreshed; lookups accept only signed answers to questions asked.

use super::*;
use skyhop_protocol::NameClaim;

/// A named ordinary node (seed 2000 and up), attached through `boot`.
fn add_named(h: &mut Harness, seed: u64, name: &str, lifetime_s: u32, boot: NodeId) -> NodeId {
    let cfg = NodeConfig {
        name: Some(name.into()),
        name_lifetime_s: lifetime_s,
        ..NodeConfig::default()
    };
    h.add(seed, cfg, &[boot])
}

fn name_events(h: &Harness, at: NodeId) -> Vec<Event> {
    h.events
        .iter()
        .filter(|(_, n, e)| {
            *n == at
                && matches!(
                    e,
                    Event::NameClaimed { .. }
                        | Event::NameTaken { .. }
                        | Event::NameResolved { .. }
                )
        })
        .map(|(_, _, e)| e.clone())
        .collect()
}

/// Looks `name` up from `at`; the holder the answer names (`None` inside:
/// nobody), or `None` if no answer came.
fn look_up(h: &mut Harness, at: NodeId, name: &str) -> Option<Option<NodeId>> {
    let now = h.now;
    let request = h
        .node_mut(&at)
        .lookup_name(now, name)
        .expect("lookup starts");
    h.drain(at);
    h.run_for(3 * SECS);
    h.events.iter().find_map(|(_, n, e)| match e {
        Event::NameResolved {
            request_id, holder, ..
        } if *n == at && *request_id == request => Some(*holder),
        _ => None,
    })
}

fn held_claims(h: &Harness) -> usize {
    h.supernodes()
        .iter()
        .map(|s| h.node(s).name_claims_held())
        .sum()
}

fn dropped(h: &Harness, reason: DropReason) -> u64 {
    h.nodes.values().map(|n| n.counters().dropped(reason)).sum()
}

#[test]
fn a_claimed_name_is_held_by_three_homes_and_found_by_a_lookup() {
    let mut h = Harness::overlay(6, 2);
    let boot = h.supernodes()[0];
    let bob = h.ordinaries()[0];
    let alice = add_named(&mut h, 2000, "alice", 3600, boot);
    h.run_for(5 * SECS);
    assert_eq!(
        name_events(&h, alice),
        vec![Event::NameClaimed {
            name: "alice".into()
        }]
    );
    assert_eq!(held_claims(&h), 3, "R = 3 homes hold the claim");
    assert_eq!(look_up(&mut h, bob, "alice"), Some(Some(alice)));
    assert_eq!(look_up(&mut h, bob, "nobody"), Some(None));
}

#[test]
fn a_name_held_by_another_key_is_refused_with_the_holders_claim() {
    let mut h = Harness::overlay(6, 2);
    let boot = h.supernodes()[0];
    let bob = h.ordinaries()[0];
    let alice = add_named(&mut h, 2000, "alice", 3600, boot);
    h.run_for(5 * SECS);
    let other_boot = h.supernodes()[3];
    let impostor = add_named(&mut h, 2001, "alice", 3600, other_boot);
    h.run_for(5 * SECS);
    assert_eq!(
        name_events(&h, impostor),
        vec![Event::NameTaken {
            name: "alice".into(),
            holder: alice
        }],
        "the second claimant hears who holds the name"
    );
    assert_eq!(
        h.node(&impostor).name_state().map(|(_, s)| s.clone()),
        Some(crate::NameState::Taken(alice))
    );
    // Its refreshes keep being refused; the holder keeps the name.
    h.run_for(20 * 60 * SECS);
    assert_eq!(look_up(&mut h, bob, "alice"), Some(Some(alice)));
}

#[test]
fn only_the_owner_can_refresh_a_claim() {
    let mut h = Harness::overlay(6, 2);
    let boot = h.supernodes()[0];
    let (bob, mallory) = (h.ordinaries()[0], h.ordinaries()[1]);
    let alice = add_named(&mut h, 2000, "alice", 3600, boot);
    h.run_for(5 * SECS);
    let sn = h.node(&mallory).primary().expect("attached");
    let mallory_key = identity_of(mallory).1;
    // A "refresh" in alice's name, with a higher seq, signed by mallory.
    let mut forged = mallory_key.name_claim("alice".into(), u64::MAX, 3600);
    forged.node = alice;
    let body = Body::NameClaim {
        request_id: 7,
        claim: forged,
    };
    let key = skyhop_protocol::name_key("alice");
    h.inject(
        mallory,
        sn,
        Message::Routed(routed(mallory, key, 1, 0, body)),
    );
    h.run_for(2 * SECS);
    assert_eq!(dropped(&h, DropReason::ForgedNameClaim), 1);
    // Alice stops refreshing (crashes): the claim expires on its own
    // schedule, not on the forgery's.
    assert_eq!(look_up(&mut h, bob, "alice"), Some(Some(alice)));
}

#[test]
fn an_unrefreshed_claim_expires_and_the_name_is_free_again() {
    let mut h = Harness::overlay(6, 2);
    let boot = h.supernodes()[0];
    let bob = h.ordinaries()[0];
    let alice = add_named(&mut h, 2000, "alice", 60, boot);
    h.run_for(5 * SECS);
    assert_eq!(look_up(&mut h, bob, "alice"), Some(Some(alice)));
    // Refreshed every 15 s, the claim outlives its 60 s lifetime.
    h.run_for(120 * SECS);
    assert_eq!(look_up(&mut h, bob, "alice"), Some(Some(alice)));
    h.crash(&alice);
    h.run_for(70 * SECS);
    assert_eq!(look_up(&mut h, bob, "alice"), Some(None), "expired");
    let newcomer = add_named(&mut h, 2001, "alice", 60, boot);
    h.run_for(5 * SECS);
    assert_eq!(
        name_events(&h, newcomer),
        vec![Event::NameClaimed {
            name: "alice".into()
        }]
    );
}

#[test]
fn a_forged_name_answer_is_rejected() {
    let mut h = Harness::overlay(4, 2);
    let bob = h.ordinaries()[0];
    let sn = h.node(&bob).primary().expect("attached");
    let mallory = identity(99_999);
    // Mallory's claim to another name, passed off as an answer about alice,
    // and a claim to alice whose signature was tampered with.
    let other = mallory.name_claim("mallory".into(), 1, 3600);
    let mut tampered = mallory.name_claim("alice".into(), 1, 3600);
    tampered.seq = 2;
    for (i, claim) in [other, tampered].into_iter().enumerate() {
        let now = h.now;
        let request_id = h.node_mut(&bob).lookup_name(now, "alice").expect("starts");
        h.drain(bob);
        let body = Body::NameReply {
            request_id,
            name: "alice".into(),
            claim: Some(claim),
        };
        let mut p = routed(sn, bob, 10 + i as u64, 1, body);
        p.dst = bob;
        h.inject(sn, bob, Message::Routed(p));
        assert_eq!(dropped(&h, DropReason::ForgedNameClaim), i as u64 + 1);
    }
    assert!(
        !name_events(&h, bob).iter().any(|e| matches!(
            e,
            Event::NameResolved {
                holder: Some(_),
                ..
            }
        )),
        "no forged answer names a holder"
    );
}

#[test]
fn an_unsolicited_name_answer_is_ignored() {
    let mut h = Harness::overlay(4, 2);
    let bob = h.ordinaries()[0];
    let sn = h.node(&bob).primary().expect("attached");
    let mallory = identity(99_999);
    let claim: NameClaim = mallory.name_claim("alice".into(), 1, 3600);
    let body = Body::NameReply {
        request_id: 42,
        name: "alice".into(),
        claim: Some(claim),
    };
    let before = h
        .node(&bob)
        .counters()
        .dropped(DropReason::UnsolicitedReply);
    h.inject(sn, bob, Message::Routed(routed(sn, bob, 5, 1, body)));
    assert_eq!(
        h.node(&bob)
            .counters()
            .dropped(DropReason::UnsolicitedReply),
        before + 1
    );
    assert!(name_events(&h, bob).is_empty());
}
