//! Multi-node scenarios of the core, run by the deterministic harness.

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
fn after_a_graceful_leave_senders_are_told_the_peer_is_offline() {
    let mut h = Harness::overlay(5, 20);
    let ons = h.ordinaries();
    let (leaver, sender) = (ons[3], ons[9]);
    let now = h.now;
    h.node_mut(&leaver).leave(now);
    h.drain(leaver);
    h.run_for(2 * SECS);
    let msg = h.send_chat(sender, leaver, "are you there?");
    h.run_for(40 * SECS);
    assert_eq!(h.outcome(sender, msg), Some(Err(ChatFailure::Offline)));
    assert!(h.received(leaver).is_empty());
    // The user is told who said so: one of the leaver's home supernodes,
    // and only at the deadline.
    let (at, said_by) = h
        .events
        .iter()
        .find_map(|(t, n, e)| match e {
            Event::ChatFailed {
                msg_id, said_by, ..
            } if *n == sender && *msg_id == msg => Some((*t, *said_by)),
            _ => None,
        })
        .expect("the chat failed");
    let sns = h.supernodes();
    assert!(said_by.is_some_and(|by| sns.contains(&by)), "{said_by:?}");
    assert!(at >= now + 2 * SECS + NodeConfig::default().chat_deadline);
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

/// A routed withdraw of `victim`, naming supernode `sn`, from `src`, as
/// packet `id`, signed by `signer` (the real supernode or anyone else).
fn withdraw_of(victim: NodeId, sn: NodeId, src: NodeId, id: u64, signer: &Identity) -> Message {
    let mut w = signer.withdraw_lost(victim, u64::MAX);
    w.sn = sn;
    Message::Routed(Packet {
        dst: victim,
        src,
        id: MsgId(id),
        ttl: 16,
        hops: 0,
        location: LocationHop::Unused,
        trace: None,
        body: Body::Withdraw(w),
    })
}

#[test]
fn an_ordinary_node_cannot_withdraw_another_node() {
    let mut h = Harness::overlay(3, 3);
    let ons = h.ordinaries();
    let (mallory, victim, friend) = (ons[0], ons[1], ons[2]);
    let sn = h.node(&mallory).primary().expect("attached");
    let victim_sn = h.node(&victim).primary().expect("attached");
    let made_up = identity(88_888).id();
    // In its own name, naming the victim's real supernode, then a made-up one.
    let key = identity_of(mallory).1;
    h.inject(
        mallory,
        sn,
        withdraw_of(victim, victim_sn, mallory, 1, &key),
    );
    h.inject(mallory, sn, withdraw_of(victim, made_up, mallory, 2, &key));
    h.run_for(2 * SECS);
    let refused: u64 = h
        .supernodes()
        .iter()
        .map(|s| h.node(s).counters().dropped(DropReason::ForgedWithdraw))
        .sum();
    assert_eq!(refused, 2, "both reached a home supernode and were refused");
    let msg = h.send_chat(friend, victim, "are you there?");
    h.run_for(20 * SECS);
    assert!(
        matches!(h.outcome(friend, msg), Some(Ok(_))),
        "the victim is still reachable: {:?}",
        h.outcome(friend, msg)
    );
}

#[test]
fn an_ordinary_node_that_sends_in_another_nodes_name_is_dropped() {
    let mut h = Harness::overlay(3, 3);
    let ons = h.ordinaries();
    let (mallory, victim, friend) = (ons[0], ons[1], ons[2]);
    let sn = h.node(&mallory).primary().expect("attached");
    let victim_sn = h.node(&victim).primary().expect("attached");
    let key = identity_of(mallory).1;
    h.inject(
        mallory,
        sn,
        withdraw_of(victim, victim_sn, victim_sn, 3, &key),
    );
    h.run_for(2 * SECS);
    assert!(h
        .events
        .iter()
        .any(|(_, n, e)| *n == sn
            && matches!(e, Event::PeerMisbehaved { peer, .. } if *peer == mallory)));
    assert!(!h.node(&sn).links().any(|l| *l == mallory), "disconnected");
    let msg = h.send_chat(friend, victim, "still there?");
    h.run_for(20 * SECS);
    assert!(matches!(h.outcome(friend, msg), Some(Ok(_))));
}

#[test]
fn a_flooding_client_is_dropped_and_refused_while_the_others_keep_chatting() {
    let mut h = Harness::overlay(3, 4);
    let flooder = h.ordinaries()[0];
    let sn = h.node(&flooder).primary().expect("attached");
    for nonce in 0..1000 {
        h.inject(
            flooder,
            sn,
            Message::Heartbeat(skyhop_protocol::Heartbeat { nonce }),
        );
    }
    let c = h.node(&sn).counters();
    let budget = NodeConfig::default().budget;
    // The burst passes, the tolerance is counted, then the peer goes.
    assert_eq!(
        c.over_budget.get("control").copied(),
        Some(u64::from(budget.tolerance) + 1)
    );
    assert_eq!(c.peers_banned, 1);
    assert!(!h.node(&sn).links().any(|p| *p == flooder));
    assert!(h.events.iter().any(|(_, n, e)| *n == sn
        && matches!(e, Event::PeerMisbehaved { peer, reason }
            if *peer == flooder && reason.contains("control frames over budget"))));
    // It is refused when it comes back.
    let now = h.now;
    h.node_mut(&sn).handle_link_up(now, flooder);
    assert!(!h.node(&sn).links().any(|p| *p == flooder));
    // Everyone else is served.
    let (a, b) = (h.ordinaries()[1], h.ordinaries()[2]);
    let msg = h.send_chat(a, b, "still served?");
    h.run_for(20 * SECS);
    assert!(matches!(h.outcome(a, msg), Some(Ok(_))));
}

/// The routed chat frames in `frames` that `src` sent.
fn chats_from(frames: &[Vec<u8>], src: NodeId) -> Vec<Packet> {
    frames
        .iter()
        .filter_map(|f| match codec::decode_frame(f) {
            Ok(Message::Routed(p)) if p.src == src && matches!(p.body, Body::Chat(_)) => Some(p),
            _ => None,
        })
        .collect()
}

#[test]
fn a_relays_view_of_a_chat_holds_no_chat_text() {
    let mut h = Harness::overlay(3, 4);
    let [a, b] = [h.ordinaries()[0], h.ordinaries()[1]];
    let relay = h.node(&a).primary().expect("attached");
    h.tap = Some(relay);
    let secret = "the password is xylophone-42";
    let msg = h.send_chat(a, b, secret);
    h.run_for(5 * SECS);
    assert!(matches!(h.outcome(a, msg), Some(Ok(_))), "delivered");
    assert_eq!(h.received(b), vec![(a, secret.to_string())]);
    assert!(
        !chats_from(&h.tapped, a).is_empty(),
        "the relay carried the chat"
    );
    for frame in &h.tapped {
        assert!(
            !frame.windows(8).any(|w| w == &secret.as_bytes()[..8])
                && !frame.windows(9).any(|w| w == b"xylophone"),
            "the relay saw chat text"
        );
    }
}

#[test]
fn a_receipt_forged_by_a_relay_is_not_reported_delivered() {
    let mut h = Harness::overlay(3, 4);
    let [a, b] = [h.ordinaries()[0], h.ordinaries()[1]];
    let relay = h.node(&a).primary().expect("attached");
    h.swallows_chats = Some(relay);
    // Every other supernode drops the chat too: retries go around a
    // dropping primary (by a backup), and this test is about the relay's lie.
    h.dropping.extend(h.supernodes());
    let msg = h.send_chat(a, b, "did you get this?");
    h.run_for(2 * SECS);
    // The relay claims b's receipt: signed with its own key, then with b's
    // public key and a made-up signature.
    let (_, relay_key) = identity_of(relay);
    let mut own_key = relay_key.receipt(a, msg, 1, 2);
    own_key.recipient = b;
    let mut bs_key = own_key.clone();
    bs_key.public_key = identity_of(b).1.public_key();
    for (n, receipt) in [own_key, bs_key].into_iter().enumerate() {
        let ack = Packet {
            dst: a,
            src: b,
            id: MsgId(700 + n as u64),
            ttl: 8,
            hops: 2,
            location: LocationHop::Unused,
            trace: None,
            body: Body::ChatAck(receipt),
        };
        h.inject(relay, a, Message::Routed(ack));
    }
    h.run_for(SECS);
    assert_eq!(h.outcome(a, msg), None, "not reported delivered");
    assert_eq!(h.node(&a).counters().dropped(DropReason::ForgedReceipt), 2);
    h.run_for(40 * SECS);
    assert_eq!(h.outcome(a, msg), Some(Err(ChatFailure::TimedOut)));
    assert!(h.received(b).is_empty());
}

#[test]
fn an_offline_answer_forged_by_a_relay_does_not_fail_the_chat_early() {
    let mut h = Harness::overlay(3, 4);
    let [a, b] = [h.ordinaries()[0], h.ordinaries()[1]];
    let relay = h.node(&a).primary().expect("attached");
    h.swallows_chats = Some(relay);
    // Every other supernode drops the chat too: retries go around a
    // dropping primary (by a backup), and this test is about the relay's lie.
    h.dropping.extend(h.supernodes());
    h.tap = Some(relay);
    let msg = h.send_chat(a, b, "still there?");
    h.run_for(500 * MILLIS);
    let sent = chats_from(&h.tapped, a);
    let first = sent.first().expect("a sent the chat to its supernode");
    // Signed by the relay: it answers for itself, and the chat goes on.
    let (_, relay_key) = identity_of(relay);
    let lie = Packet {
        dst: a,
        src: relay,
        id: MsgId(801),
        ttl: 8,
        hops: 1,
        location: LocationHop::Unused,
        trace: None,
        body: Body::NotFound(relay_key.absence(first.id.0, b, NotFoundReason::Offline)),
    };
    // And in another's name: that does not verify, and is dropped.
    let mut impersonated = relay_key.absence(first.id.0, b, NotFoundReason::Offline);
    impersonated.by = b;
    let in_bs_name = Packet {
        id: MsgId(802),
        body: Body::NotFound(impersonated),
        ..lie.clone()
    };
    h.inject(relay, a, Message::Routed(lie));
    h.inject(relay, a, Message::Routed(in_bs_name));
    h.run_for(SECS);
    assert_eq!(h.outcome(a, msg), None, "the chat is still being tried");
    assert_eq!(h.node(&a).counters().dropped(DropReason::ForgedAbsence), 1);
    // The relay stops lying; a retry gets through.
    h.swallows_chats = None;
    h.dropping.clear();
    h.run_for(30 * SECS);
    assert!(
        matches!(h.outcome(a, msg), Some(Ok(_))),
        "delivered at last"
    );
    assert_eq!(h.received(b), vec![(a, "still there?".to_string())]);
}

#[test]
fn a_supernode_cannot_withdraw_another_supernodes_client() {
    let mut h = Harness::overlay(4, 3);
    let ons = h.ordinaries();
    let (victim, friend) = (ons[1], ons[2]);
    let victim_sn = h.node(&victim).primary().expect("attached");
    let hostile = *h
        .supernodes()
        .iter()
        .find(|s| **s != victim_sn)
        .expect("another supernode");
    let neighbor = *h
        .node(&hostile)
        .links()
        .find(|l| h.supernodes().contains(l))
        .expect("a supernode link");
    let hostile_key = identity_of(hostile).1;
    // In the victim's supernode's name (src and sn), signed by the hostile
    // supernode: the signature names the wrong key.
    h.inject(
        hostile,
        neighbor,
        withdraw_of(victim, victim_sn, victim_sn, 11, &hostile_key),
    );
    // In the name of a supernode it makes up, genuinely signed by it: the
    // homes hold no record of the victim from that supernode.
    let made_up = identity(77_777);
    h.inject(
        hostile,
        neighbor,
        withdraw_of(victim, made_up.id(), made_up.id(), 12, &made_up),
    );
    h.run_for(2 * SECS);
    let forged: u64 = h
        .supernodes()
        .iter()
        .map(|s| h.node(s).counters().dropped(DropReason::ForgedWithdraw))
        .sum();
    assert!(forged >= 1, "the wrongly signed withdraw was refused");
    let holders = h
        .supernodes()
        .iter()
        .filter(|s| h.node(s).holds_record(&victim, &victim_sn, h.now))
        .count();
    assert!(holders >= 1, "the victim's record is still held");
    let msg = h.send_chat(friend, victim, "are you there?");
    h.run_for(20 * SECS);
    assert!(
        matches!(h.outcome(friend, msg), Some(Ok(_))),
        "the victim is still reachable: {:?}",
        h.outcome(friend, msg)
    );
}

#[test]
fn chats_to_and_from_supernodes_are_delivered() {
    let mut h = Harness::overlay(4, 3);
    let ons = h.ordinaries();
    let sns = h.supernodes();
    let pairs = [(ons[0], sns[1]), (sns[2], ons[1]), (sns[0], sns[3])];
    let msgs: Vec<_> = pairs
        .iter()
        .map(|(a, b)| (*a, h.send_chat(*a, *b, "hi")))
        .collect();
    h.run_for(10 * SECS);
    for (a, m) in msgs {
        assert!(
            matches!(h.outcome(a, m), Some(Ok(_))),
            "{:?}",
            h.outcome(a, m)
        );
    }
}

#[test]
fn a_client_whose_primary_drops_its_chats_moves_and_is_reached_again() {
    let mut h = Harness::overlay(5, 20);
    let ons = h.ordinaries();
    let (victim, sender) = (ons[0], ons[1]);
    let dropper = h.node(&victim).primary().expect("attached");
    h.dropping.insert(dropper);
    // Within two probe intervals the victim has missed two probes and left.
    let interval = NodeConfig::default().primary_probe_interval;
    h.run_for(2 * interval);
    let now_primary = h.node(&victim).primary();
    assert!(
        now_primary.is_some_and(|p| p != dropper),
        "the victim still hangs on {dropper:?} (now {now_primary:?})"
    );
    assert!(h.node(&victim).counters().primaries_abandoned >= 1);
    // And a chat to it is delivered, by whichever path is left.
    let sender = if h.node(&sender).primary() == Some(dropper) {
        *ons.iter()
            .find(|o| **o != victim && h.node(o).primary() != Some(dropper))
            .expect("a sender on another supernode")
    } else {
        sender
    };
    let msg = h.send_chat(sender, victim, "found you");
    h.run_for(40 * SECS);
    assert!(
        matches!(h.outcome(sender, msg), Some(Ok(_))),
        "{:?}",
        h.outcome(sender, msg)
    );
}

#[test]
fn a_retry_leaves_by_a_backup_when_the_primary_drops_the_chat() {
    let mut h = Harness::overlay(5, 20);
    let ons = h.ordinaries();
    let sender = ons[0];
    let dropper = h.node(&sender).primary().expect("attached");
    let recipient = *ons
        .iter()
        .find(|o| h.node(o).primary().is_some_and(|p| p != dropper))
        .expect("a recipient on another supernode");
    // Drop only the sender's chats at its primary: acks to it pass.
    h.dropping.insert(dropper);
    let msg = h.send_chat(sender, recipient, "around you");
    // Well before a probe could have moved it: only a retry by a backup
    // can get the chat through; its ack comes back through the backup too
    // unless the dropper is on that path, so the recipient received it.
    h.run_for(4 * SECS);
    assert!(
        h.received(recipient)
            .iter()
            .any(|(from, text)| *from == sender && text == "around you"),
        "the retry did not go around the dropping primary"
    );
    let _ = msg;
}

#[test]
fn a_replayed_chat_flood_is_not_answered_by_an_ack_flood() {
    let mut h = Harness::overlay(3, 2);
    // Harness::overlay's first ordinary node has seed 1000.
    let alice = identity(1000);
    let a = alice.id();
    let b = *h.ordinaries().iter().find(|o| **o != a).expect("two");
    let sn_b = h.node(&b).primary().expect("attached");
    // One genuine chat from a, replayed 200 times under fresh packet ids
    // (what a flooder does to make b answer each one).
    let chat = alice
        .chat(b, MsgId(5), 1, 0, "again and again".into())
        .expect("short");
    let sealed = seal::seal(&chat, &identity_of(b).1.chat_key(), [5; 32]).expect("valid");
    for n in 0..200 {
        let p = Packet {
            dst: b,
            src: a,
            id: MsgId(1_000 + n),
            ttl: 8,
            hops: 2,
            location: LocationHop::Unused,
            trace: None,
            body: Body::Chat(sealed.clone()),
        };
        h.inject(sn_b, b, Message::Routed(p));
    }
    let c = h.node(&b).counters();
    assert_eq!(c.dropped(DropReason::DuplicateChat), 199);
    // The first is acked, then 20 duplicates in the second; the rest not.
    assert_eq!(c.dropped(DropReason::ReackOverBudget), 199 - 20);
    assert_eq!(h.received(b).len(), 1);
    // b is still attached: it did not flood its own supernode.
    h.run_for(5 * SECS);
    assert_eq!(h.node(&b).primary(), Some(sn_b));
}

#[test]
fn a_chat_sent_long_ago_or_far_ahead_is_dropped_and_counted() {
    let mut h = Harness::overlay(3, 2);
    let alice = identity(1000);
    let a = alice.id();
    let b = *h.ordinaries().iter().find(|o| **o != a).expect("two");
    let sn_b = h.node(&b).primary().expect("attached");
    let cfg = NodeConfig::default();
    let window = cfg.chat_deadline + cfg.chat_clock_skew;
    h.run_for(window + 10 * SECS);
    let now = h.now;
    let send = |h: &mut Harness, id: u64, sent_at: SimTime| {
        let chat = alice
            .chat(b, MsgId(id), 1, sent_at, format!("sent at {sent_at}"))
            .expect("short");
        let sealed = seal::seal(&chat, &identity_of(b).1.chat_key(), [5; 32]).expect("valid");
        let p = Packet {
            dst: b,
            src: a,
            id: MsgId(1_000 + id),
            ttl: 8,
            hops: 2,
            location: LocationHop::Unused,
            trace: None,
            body: Body::Chat(sealed),
        };
        h.inject(sn_b, b, Message::Routed(p));
    };
    send(&mut h, 1, now - window - SECS);
    send(&mut h, 2, now + cfg.chat_clock_skew + SECS);
    h.run_for(SECS);
    assert!(h.received(b).is_empty());
    assert_eq!(
        h.node(&b).counters().dropped(DropReason::ChatOutsideWindow),
        2
    );
    // Inside the window, at either edge's side, it is delivered.
    send(&mut h, 3, now - window + SECS);
    h.run_for(SECS);
    assert_eq!(
        h.received(b),
        vec![(
            a,
            "sent at ".to_string() + &(now - window + SECS).to_string()
        )]
    );
}
