//! Multi-node scenarios of the core, run by the deterministic harness:
//! joining, routing, failure and churn here; what hostile peers try in
//! [`strangers`].

mod flat;
mod handover;
mod listing;
mod names;
mod offline;
mod partition;
mod raw_relay;
mod strangers;

use skyhop_protocol::{
    codec, seal, Body, Identity, LocationHop, Message, MsgId, NodeId, NotFoundReason, Packet, Role,
};

use super::harness::{identity, Harness};
use super::{ChatFailure, DropReason, Event, NodeConfig, SimTime, MILLIS, SECS};

/// The identity of a harness node (ordinary nodes use seeds 1000 and up).
fn identity_of(id: NodeId) -> (u64, Identity) {
    (0..100_000u64)
        .map(|s| (s, identity(s)))
        .find(|(_, i)| i.id() == id)
        .expect("a harness seed")
}

/// A routed packet from `src` to `dst`, as if `hops` links were behind it.
fn routed(src: NodeId, dst: NodeId, id: u64, hops: u8, body: Body) -> Packet {
    Packet {
        dst,
        src,
        id: MsgId(id),
        ttl: 8,
        hops,
        location: LocationHop::Unused,
        trace: None,
        body,
    }
}

fn all_attached(h: &Harness) -> bool {
    h.ordinaries()
        .iter()
        .all(|id| h.node(id).primary().is_some())
}

/// Sends one chat per pair and returns (delivered, failed, max hops).
fn chat_pairs(h: &mut Harness, pairs: &[(NodeId, NodeId)]) -> (usize, usize, u8) {
    let ids: Vec<(NodeId, MsgId)> = pairs
        .iter()
        .enumerate()
        .map(|(i, (a, b))| {
            (
                *a,
                h.send_chat(
                    *a,
                    *b,
                    &format!("hello #{i} to {} from {}", b.short(), a.short()),
                ),
            )
        })
        .collect();
    h.run_for(40 * SECS);
    let mut delivered = 0;
    let mut failed = 0;
    let mut max_hops = 0;
    for (from, msg) in ids {
        match h.outcome(from, msg) {
            Some(Ok(hops)) => {
                delivered += 1;
                max_hops = max_hops.max(hops);
            }
            Some(Err(reason)) => {
                eprintln!("chat {msg} from {from:?} failed: {reason}");
                failed += 1
            }
            None => panic!("chat {msg} from {from:?} has no outcome after its deadline"),
        }
    }
    (delivered, failed, max_hops)
}

fn pairs(ons: &[NodeId], n: usize, stride: usize) -> Vec<(NodeId, NodeId)> {
    (0..n)
        .map(|i| (ons[i % ons.len()], ons[(i * stride + 7) % ons.len()]))
        .filter(|(a, b)| a != b)
        .collect()
}

#[test]
fn five_supernodes_and_fifty_ordinary_nodes_join() {
    let h = Harness::overlay(5, 50);
    assert!(
        all_attached(&h),
        "every ordinary node has a primary supernode"
    );
    for sn in h.supernodes() {
        assert_eq!(
            h.node(&sn).table().len(),
            4,
            "each supernode knows the other four"
        );
    }
    for on in h.ordinaries() {
        let status = h.node(&on).status();
        assert!(
            status.backups.len() >= 2,
            "{on:?} keeps two backups, has {:?}",
            status.backups
        );
    }
    let clients: usize = h
        .supernodes()
        .iter()
        .map(|sn| h.node(sn).clients().count())
        .sum();
    assert_eq!(clients, 50);
}

#[test]
fn chats_between_many_pairs_are_all_delivered() {
    let mut h = Harness::overlay(5, 50);
    let ons = h.ordinaries();
    let (delivered, failed, _) = chat_pairs(&mut h, &pairs(&ons, 200, 13));
    assert_eq!(failed, 0);
    assert!(delivered >= 190);
    for (_, on, e) in &h.events {
        if let Event::ChatReceived { from, .. } = e {
            assert_ne!(from, on);
        }
    }
}

#[test]
fn hops_are_at_most_three_once_location_caches_are_warm() {
    let mut h = Harness::overlay(5, 50);
    let ons = h.ordinaries();
    let p = pairs(&ons, 60, 17);
    chat_pairs(&mut h, &p);
    let (delivered, failed, max_hops) = chat_pairs(&mut h, &p);
    assert_eq!((delivered, failed), (p.len(), 0));
    assert!(max_hops <= 3, "warm routes took {max_hops} hops");
}

#[test]
fn every_attached_node_has_records_on_its_home_supernodes() {
    let h = Harness::overlay(6, 40);
    let sns = h.supernodes();
    for on in h.ordinaries() {
        let sn = h.node(&on).primary().expect("attached");
        let mut homes = sns.clone();
        homes.sort_by_key(|s| s.distance(&on));
        for home in &homes[..3] {
            assert!(
                h.node(home).holds_record(&on, &sn, h.now),
                "home {home:?} lacks the record of {on:?}"
            );
        }
    }
}

#[test]
fn a_crashed_supernodes_clients_reattach_and_chat_resumes() {
    let mut h = Harness::overlay(5, 50);
    let victim = h.supernodes()[2];
    let orphans: Vec<NodeId> = h
        .ordinaries()
        .into_iter()
        .filter(|on| h.node(on).primary() == Some(victim))
        .collect();
    assert!(!orphans.is_empty());
    h.crash(&victim);
    h.run_for(10 * SECS);
    for on in &orphans {
        let primary = h.node(on).primary();
        assert!(
            primary.is_some() && primary != Some(victim),
            "{on:?} reattached within 10 s"
        );
    }
    let ons = h.ordinaries();
    let mut p: Vec<(NodeId, NodeId)> = orphans.iter().map(|o| (*o, ons[0])).collect();
    p.extend(orphans.iter().map(|o| (ons[1], *o)));
    p.retain(|(a, b)| a != b);
    let (delivered, failed, _) = chat_pairs(&mut h, &p);
    assert_eq!((delivered, failed), (p.len(), 0));
}

#[test]
fn after_a_graceful_leave_senders_chats_wait_on_its_home_supernodes() {
    let mut h = Harness::overlay(5, 20);
    let ons = h.ordinaries();
    let (leaver, sender) = (ons[3], ons[9]);
    let now = h.now;
    h.node_mut(&leaver).leave(now);
    h.drain(leaver);
    h.run_for(2 * SECS);
    let msg = h.send_chat(sender, leaver, "are you there?");
    h.run_for(40 * SECS);
    assert!(h.received(leaver).is_empty());
    // Not failed: the leaver's home supernodes keep it (the sender learnt
    // the leaver's key from the last record they kept), and the user is
    // told who keeps it; it settles there once every home keeps it and
    // they say the leaver is away, well before the deadline.
    assert_eq!(h.outcome(sender, msg), None);
    let stored: Vec<(SimTime, NodeId, bool)> = h
        .events
        .iter()
        .filter_map(|(t, n, e)| match e {
            Event::ChatStored {
                msg_id,
                by,
                settled,
                ..
            } if *n == sender && *msg_id == msg => Some((*t, *by, *settled)),
            _ => None,
        })
        .collect();
    let sns = h.supernodes();
    assert!(
        stored.iter().all(|(_, by, _)| sns.contains(by)),
        "{stored:?}"
    );
    let settled_at = stored
        .iter()
        .find(|(_, _, settled)| *settled)
        .map(|(t, _, _)| *t)
        .expect("settled");
    let homes = NodeConfig::default().replicas;
    let unsettled = stored.iter().filter(|(_, _, settled)| !settled).count();
    assert_eq!(unsettled, homes, "{stored:?}");
    assert!(settled_at < now + 2 * SECS + NodeConfig::default().chat_deadline);
}

#[test]
fn a_full_supernode_redirects_to_others() {
    let mut h = Harness::new();
    let small = NodeConfig {
        max_clients: 2,
        ..NodeConfig::supernode()
    };
    let a = h.add(1, small.clone(), &[]);
    let b = h.add(2, NodeConfig::supernode(), &[a]);
    h.run_for(2 * SECS);
    let ons: Vec<NodeId> = (0..6).map(|i| h.add_ordinary(100 + i, &[a])).collect();
    h.run_for(10 * SECS);
    assert!(ons.iter().all(|on| h.node(on).primary().is_some()));
    assert_eq!(
        h.node(&a).clients().count(),
        2,
        "a never exceeds max_clients"
    );
    assert_eq!(
        h.node(&b).clients().count(),
        4,
        "the rest were redirected to b"
    );
}

#[test]
fn a_forged_location_record_is_rejected_and_its_sender_dropped() {
    let mut h = Harness::overlay(3, 4);
    let on = h.ordinaries()[0];
    let victim = h.ordinaries()[1];
    let sn = h.node(&on).primary().expect("attached");
    // `on` publishes a record that claims to be `victim`'s, signed by itself.
    let (_, mallory) = identity_of(on);
    let mut forged = mallory.location_record(sn, vec![], u64::MAX / 2, 60);
    forged.node = victim;
    h.inject(on, sn, Message::Publish(forged));
    h.run_for(SECS);
    assert!(h.node(&sn).counters().forged >= 1);
    assert!(h.events.iter().any(
        |(_, n, e)| *n == sn && matches!(e, Event::PeerMisbehaved { peer, .. } if *peer == on)
    ));
    // The victim's own record is untouched and others still reach it.
    let other = h.ordinaries()[2];
    let msg = h.send_chat(other, victim, "still there?");
    h.run_for(20 * SECS);
    assert!(matches!(h.outcome(other, msg), Some(Ok(_))));
}

#[test]
fn a_record_signed_with_a_bad_signature_never_reaches_the_directory() {
    let mut h = Harness::overlay(3, 2);
    let on = h.ordinaries()[0];
    let sn = h.node(&on).primary().expect("attached");
    let (_, me) = identity_of(on);
    let mut record = me.location_record(sn, vec![], u64::MAX / 2, 60);
    record.signature.0[0] ^= 1;
    h.inject(on, sn, Message::Publish(record));
    h.run_for(SECS);
    assert!(h.node(&sn).counters().forged >= 1);
    assert!(
        !h.node(&sn).links().any(|l| *l == on),
        "the sender was disconnected"
    );
}

#[test]
fn a_packet_whose_ttl_runs_out_comes_back_as_ttl_expired() {
    let mut h = Harness::new();
    let sns: Vec<NodeId> = {
        let first = h.add_supernode(1, &[]);
        let mut v = vec![first];
        for i in 2..=8 {
            v.push(h.add_supernode(i, &[first]));
        }
        v
    };
    h.run_for(2 * SECS);
    let tight = NodeConfig {
        ttl: 1,
        ..NodeConfig::default()
    };
    let a = h.add(100, tight, &[sns[0]]);
    let b = h.add_ordinary(101, &[sns[5]]);
    h.run_for(5 * SECS);
    // With ttl 1 the packet reaches a's supernode and can go no further
    // unless a and b share a supernode; pick pairs until they do not.
    assert_ne!(h.node(&a).primary(), h.node(&b).primary());
    let now = h.now;
    h.node_mut(&a)
        .send_chat(now, b, "short-lived".into())
        .expect("accepted");
    h.drain(a);
    h.run_for(3 * SECS);
    assert!(
        h.node(&h.node(&a).primary().expect("attached"))
            .counters()
            .dropped(DropReason::TtlExpired)
            >= 1
    );
    assert!(h.received(b).is_empty());
}

#[test]
fn duplicated_frames_deliver_each_chat_once() {
    let mut h = Harness::overlay(4, 12);
    h.duplicate_frames = true;
    let ons = h.ordinaries();
    let p = pairs(&ons, 30, 5);
    let (delivered, failed, _) = chat_pairs(&mut h, &p);
    assert_eq!((delivered, failed), (p.len(), 0));
    for on in &ons {
        let got = h.received(*on);
        let mut unique = got.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(got.len(), unique.len(), "{on:?} received a duplicate");
    }
    let dups: u64 = h
        .nodes
        .values()
        .map(|n| n.counters().dropped(DropReason::Duplicate))
        .sum();
    assert!(dups > 0, "the duplicate window dropped the copies");
}

#[test]
fn a_packet_seen_twice_is_dropped_by_the_window() {
    let mut h = Harness::overlay(3, 2);
    let [a, b] = [h.ordinaries()[0], h.ordinaries()[1]];
    let sn = h.node(&a).primary().expect("attached");
    let p = Packet {
        dst: b,
        src: a,
        id: MsgId(77),
        ttl: 8,
        hops: 1,
        location: LocationHop::Unused,
        trace: None,
        body: Body::Datagram(vec![1, 2, 3]),
    };
    h.inject(a, sn, Message::Routed(p.clone()));
    h.inject(a, sn, Message::Routed(p));
    assert_eq!(h.node(&sn).counters().dropped(DropReason::Duplicate), 1);
}

#[test]
fn flat_mode_with_fifty_nodes_delivers_every_chat() {
    let mut h = Harness::new();
    let first = h.add_supernode(1, &[]);
    for i in 2..=50 {
        h.add_supernode(i, &[first]);
    }
    h.run_for(20 * SECS);
    let all = h.supernodes();
    assert!(all.iter().all(|id| h.node(id).role() == Role::Supernode));
    let p = pairs(&all, 100, 11);
    let (delivered, failed, _) = chat_pairs(&mut h, &p);
    assert_eq!((delivered, failed), (p.len(), 0));
}

#[test]
fn the_same_seed_gives_the_same_run_and_another_seed_differs() {
    fn run(seed_offset: u64) -> Vec<String> {
        let mut h = Harness::new();
        h.jitter = 3_000;
        let first = h.add_supernode(1 + seed_offset, &[]);
        for i in 2..=4 {
            h.add_supernode(i + seed_offset, &[first]);
        }
        h.run_for(2 * SECS);
        let sns = h.supernodes();
        for i in 0..10 {
            h.add_ordinary(500 + i + seed_offset, &[sns[i as usize % sns.len()]]);
        }
        h.run_for(5 * SECS);
        let ons = h.ordinaries();
        chat_pairs(&mut h, &pairs(&ons, 20, 3));
        h.events
            .iter()
            .map(|(t, n, e)| format!("{t} {n:?} {e:?}"))
            .collect()
    }
    assert_eq!(run(0), run(0));
    assert_ne!(run(0), run(100));
}

#[test]
fn a_chat_to_an_unknown_node_fails_as_not_found() {
    let mut h = Harness::overlay(3, 4);
    let a = h.ordinaries()[0];
    let stranger = identity(99_999).id();
    let msg = h.send_chat(a, stranger, "anyone?");
    h.run_for(40 * SECS);
    assert_eq!(h.outcome(a, msg), Some(Err(ChatFailure::NotFound)));
}

#[test]
fn a_chat_sent_before_attaching_is_delivered_once_attached() {
    let mut h = Harness::overlay(3, 3);
    let target = h.ordinaries()[0];
    let sn = h.supernodes()[0];
    let late = h.add_ordinary(7777, &[sn]);
    let msg = h.send_chat(late, target, "sent while joining");
    h.run_for(30 * SECS);
    assert!(matches!(h.outcome(late, msg), Some(Ok(_))));
    assert_eq!(
        h.received(target),
        vec![(late, "sent while joining".to_string())]
    );
}

#[test]
fn a_trace_returns_the_hop_path() {
    let mut h = Harness::overlay(4, 10);
    let [a, b] = [h.ordinaries()[0], h.ordinaries()[5]];
    let now = h.now;
    let probe = h.node_mut(&a).trace(now, b).expect("probe accepted");
    h.drain(a);
    h.run_for(5 * SECS);
    let path = h
        .events
        .iter()
        .find_map(|(_, n, e)| match e {
            Event::TraceCompleted { probe_id, path, .. } if *n == a && *probe_id == probe => {
                Some(path.clone())
            }
            _ => None,
        })
        .expect("trace completed");
    assert_eq!(path.first(), Some(&a));
    assert_eq!(path.last(), Some(&b));
    assert!(path.contains(&h.node(&a).primary().expect("attached")));
}

#[test]
fn messages_arrive_in_order_despite_reordering() {
    let mut h = Harness::overlay(4, 6);
    h.jitter = 40_000;
    let [a, b] = [h.ordinaries()[0], h.ordinaries()[4]];
    for i in 0..20 {
        h.send_chat(a, b, &format!("{i:02}"));
    }
    h.run_for(40 * SECS);
    let got: Vec<String> = h.received(b).into_iter().map(|(_, body)| body).collect();
    let want: Vec<String> = (0..20).map(|i| format!("{i:02}")).collect();
    assert_eq!(got, want);
}

#[test]
fn a_forged_chat_is_dropped_and_counted() {
    let mut h = Harness::overlay(3, 2);
    let [a, b] = [h.ordinaries()[0], h.ordinaries()[1]];
    let sn_b = h.node(&b).primary().expect("attached");
    let mallory = identity(31337);
    let mut chat = mallory
        .chat(b, MsgId(5), 1, 0, "I am a".into())
        .expect("short");
    chat.from = a;
    let p = Packet {
        dst: b,
        src: a,
        id: MsgId(9),
        ttl: 8,
        hops: 2,
        location: LocationHop::Unused,
        trace: None,
        body: Body::Chat(seal::seal(&chat, &identity_of(b).1.chat_key(), [3; 32]).expect("valid")),
    };
    h.inject(sn_b, b, Message::Routed(p));
    h.run_for(SECS);
    assert!(h.received(b).is_empty());
    assert_eq!(h.node(&b).counters().forged, 1);
}

#[test]
fn a_restarted_node_rejoins_from_its_host_cache_alone() {
    let mut h = Harness::overlay(4, 4);
    let on = h.ordinaries()[0];
    let cache = h.node(&on).host_cache();
    assert!(cache.len() >= 3, "the host cache learned the supernodes");
    // Restart: same identity, no bootstrap, only the saved host cache.
    h.crash(&on);
    h.run_for(10 * SECS);
    let (seed, ident) = identity_of(on);
    let mut node = super::Node::new(
        NodeConfig::default(),
        ident,
        seed,
        h.now,
        Default::default(),
    )
    .expect("valid");
    node.restore_host_cache(cache);
    h.nodes.insert(on, node);
    h.drain(on);
    h.run_for(10 * SECS);
    assert!(
        h.node(&on).primary().is_some(),
        "rejoined without a bootstrap address"
    );
}

#[test]
fn a_supernode_without_peers_backs_off_instead_of_spinning() {
    let mut h = Harness::new();
    let ghost = identity(4242).id();
    let sn = h.add_supernode(1, &[ghost]);
    h.run_for(60 * SECS);
    let wakes = h.node(&sn).counters().frames_out.values().sum::<u64>();
    assert_eq!(wakes, 0, "no frames with nobody to talk to");
    assert!(h.node(&sn).table().is_empty());
}

#[test]
fn first_chats_take_three_hops_when_the_sender_supernode_looks_up_first() {
    let mut h = Harness::overlay(5, 40);
    let ons = h.ordinaries();
    // Pairs on different supernodes, each talking for the first time.
    let p: Vec<(NodeId, NodeId)> = pairs(&ons, 40, 7)
        .into_iter()
        .filter(|(a, b)| h.node(a).primary() != h.node(b).primary())
        .collect();
    assert!(p.len() >= 20);
    let (delivered, failed, max_hops) = chat_pairs(&mut h, &p);
    assert_eq!((delivered, failed), (p.len(), 0));
    assert_eq!(
        max_hops, 3,
        "ON -> SN -> SN -> ON even without a warm cache"
    );
}

#[test]
fn without_the_lookup_hold_first_chats_detour_through_home_supernodes() {
    let mut h = Harness::new();
    let eager = NodeConfig {
        lookup_hold: 0,
        ..NodeConfig::supernode()
    };
    let first = h.add(1, eager.clone(), &[]);
    for i in 2..=5 {
        h.add(i, eager.clone(), &[first]);
    }
    h.run_for(2 * SECS);
    let sns = h.supernodes();
    for i in 0..40 {
        h.add_ordinary(1000 + i, &[sns[i as usize % sns.len()]]);
    }
    h.run_for(5 * SECS);
    let ons = h.ordinaries();
    let p: Vec<(NodeId, NodeId)> = pairs(&ons, 40, 7)
        .into_iter()
        .filter(|(a, b)| h.node(a).primary() != h.node(b).primary())
        .collect();
    let (delivered, failed, max_hops) = chat_pairs(&mut h, &p);
    assert_eq!((delivered, failed), (p.len(), 0));
    assert_eq!(
        max_hops, 4,
        "some first chats pass the recipient's home supernode"
    );
}

#[test]
fn neighbors_nobody_asked_for_change_no_host_cache() {
    let mut h = Harness::overlay(3, 2);
    let on = h.ordinaries()[0];
    let sn = h.node(&on).primary().expect("attached");
    let fake = identity(77_777).id();
    let unasked = Message::Neighbors(skyhop_protocol::Neighbors {
        request_id: 42,
        peers: vec![skyhop_protocol::PeerInfo {
            id: fake,
            addrs: vec!["sim:nowhere".into()],
        }],
    });
    h.inject(sn, on, unasked);
    h.run_for(SECS);
    assert_eq!(
        h.node(&on).counters().dropped(DropReason::UnsolicitedReply),
        1,
        "the reply was dropped and counted"
    );
    assert!(
        h.node(&on).host_cache().iter().all(|e| e.id != fake),
        "the advertised supernode did not enter the host cache"
    );
}

#[test]
fn a_location_reply_nobody_asked_for_is_not_cached() {
    let mut h = Harness::overlay(3, 2);
    let sns = h.supernodes();
    let (target, liar) = (sns[0], sns[1]);
    let victim = h.ordinaries()[0];
    let (_, victim_key) = identity_of(victim);
    // A genuine, signed, but old record of the victim that names the liar.
    let old = victim_key.location_record(liar, vec![], 1, 60);
    let before = h.node(&target).status().cached_locations;
    let reply = Packet {
        dst: target,
        src: liar,
        id: MsgId(9),
        ttl: 8,
        hops: 1,
        location: LocationHop::Unused,
        trace: None,
        body: Body::LocationReply {
            request_id: 4242,
            node: victim,
            record: Some(old),
            absence: None,
        },
    };
    h.inject(liar, target, Message::Routed(reply));
    assert_eq!(
        h.node(&target)
            .counters()
            .dropped(DropReason::UnsolicitedReply),
        1
    );
    assert_eq!(
        h.node(&target).status().cached_locations,
        before,
        "nothing was cached"
    );
}
