//! What hostile peers try against the core, and what they get: forged
//! withdraws and names, floods, relays that read, forge or drop, replays.

use super::*;
use skyhop_protocol::{Withdraw, WithdrawReason};

/// A routed withdraw of `victim`, naming supernode `sn`, from `src`, as
/// packet `id`, signed by `signer` (the real supernode or anyone else).
fn withdraw_of(victim: NodeId, sn: NodeId, src: NodeId, id: u64, signer: &Identity) -> Message {
    let mut w = signer.withdraw_lost(victim, u64::MAX);
    w.sn = sn;
    Message::Routed(Packet {
        ttl: 16,
        ..routed(src, victim, id, 0, Body::Withdraw(w))
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
fn a_withdraw_left_without_the_nodes_own_leave_changes_nothing() {
    let mut h = Harness::overlay(3, 3);
    let ons = h.ordinaries();
    let (mallory, victim, friend) = (ons[0], ons[1], ons[2]);
    let sn = h.node(&mallory).primary().expect("attached");
    let victim_sn = h.node(&victim).primary().expect("attached");
    let key = identity_of(mallory).1;
    // Mallory's own Leave offered as the victim's, then a Leave rewritten
    // to name the victim (its signature no longer matches).
    let own = key.leave(victim_sn, u64::MAX);
    let mut rewritten = own.clone();
    rewritten.node = victim;
    for (id, leave) in [(21, own), (22, rewritten)] {
        let w = Withdraw {
            node: victim,
            sn: victim_sn,
            seq: u64::MAX,
            reason: WithdrawReason::Left(leave),
        };
        let p = Packet {
            ttl: 16,
            ..routed(mallory, victim, id, 0, Body::Withdraw(w))
        };
        h.inject(mallory, sn, Message::Routed(p));
    }
    h.run_for(2 * SECS);
    let refused: u64 = h
        .supernodes()
        .iter()
        .map(|s| h.node(s).counters().dropped(DropReason::ForgedLeave))
        .sum();
    assert_eq!(refused, 2, "both reached a home supernode and were refused");
    let holders = h
        .supernodes()
        .iter()
        .filter(|s| h.node(s).holds_record(&victim, &victim_sn, h.now))
        .count();
    assert!(holders >= 1, "the victim's record is still held");
    let msg = h.send_chat(friend, victim, "still there?");
    h.run_for(20 * SECS);
    assert!(
        matches!(h.outcome(friend, msg), Some(Ok(_))),
        "the victim is still reachable, not offline: {:?}",
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

#[test]
fn a_client_sending_six_hundred_chats_at_once_is_paced_and_keeps_its_supernode() {
    // More than a supernode admits at once from any client (a burst of
    // 500 and a tolerance of 100), right after the client linked.
    let mut h = Harness::overlay(3, 4);
    let (a, b) = (h.ordinaries()[0], h.ordinaries()[1]);
    let sn = h.node(&a).primary().expect("attached");
    let msgs: Vec<MsgId> = (0..600)
        .map(|n| h.send_chat(a, b, &format!("bulk {n}")))
        .collect();
    h.run_for(25 * SECS);
    let failed: Vec<_> = msgs
        .iter()
        .filter(|m| !matches!(h.outcome(a, **m), Some(Ok(_))))
        .collect();
    assert!(failed.is_empty(), "{} of 600 not delivered", failed.len());
    assert_eq!(h.received(b).len(), 600);
    assert_eq!(h.node(&a).primary(), Some(sn), "a kept its supernode");
    for node in h.supernodes() {
        let c = h.node(&node).counters();
        assert!(c.over_budget.is_empty(), "{node}: {:?}", c.over_budget);
        assert_eq!(c.peers_banned, 0);
    }
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
        let ack = routed(b, a, 700 + n as u64, 2, Body::ChatAck(receipt));
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
    let lie = routed(
        relay,
        a,
        801,
        1,
        Body::NotFound(relay_key.absence(first.id.0, b, NotFoundReason::Offline)),
    );
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
fn a_retry_reaches_a_recipient_whose_primary_drops_it_through_a_backup_its_record_names() {
    let mut h = Harness::overlay(5, 20);
    let ons = h.ordinaries();
    let recipient = ons[0];
    let dropper = h.node(&recipient).primary().expect("attached");
    let sender = *ons
        .iter()
        .find(|o| **o != recipient && h.node(o).primary().is_some_and(|p| p != dropper))
        .expect("a sender on another supernode");
    h.dropping.insert(dropper);
    let msg = h.send_chat(sender, recipient, "past your primary");
    h.run_for(6 * SECS);
    assert!(
        matches!(h.outcome(sender, msg), Some(Ok(_))),
        "{:?}",
        h.outcome(sender, msg)
    );
    // Delivered while the recipient still hangs on the dropper: by a
    // retry toward a backup, not because the recipient moved.
    assert_eq!(h.node(&recipient).primary(), Some(dropper));
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
        let p = routed(a, b, 1_000 + n, 2, Body::Chat(sealed.clone()));
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
        let p = routed(a, b, 1_000 + id, 2, Body::Chat(sealed));
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

/// A supernode neighbor `from` hands `to` chats at 1,000 a second for
/// `secs` seconds, each from `src(n)` to `dst`.
fn chats_at_a_thousand_a_second(
    h: &mut Harness,
    from: NodeId,
    to: NodeId,
    dst: NodeId,
    secs: u64,
    src: impl Fn(u64) -> NodeId,
) {
    let chat = identity(1000)
        .chat(dst, MsgId(7), 1, 0, "flood".into())
        .expect("short");
    let sealed = seal::seal(&chat, &identity_of(dst).1.chat_key(), [7; 32]).expect("valid");
    for tick in 0..secs * 100 {
        for n in tick * 10..tick * 10 + 10 {
            let p = routed(src(n), dst, 50_000 + n, 1, Body::Chat(sealed.clone()));
            h.inject(from, to, Message::Routed(p));
        }
        h.run_for(10 * MILLIS);
    }
}

#[test]
fn a_supernode_flooding_in_its_own_name_is_cut_at_the_first_hop_and_keeps_its_link() {
    let mut h = Harness::overlay(3, 6);
    let sns = h.supernodes();
    let (flooder, relay) = (sns[0], sns[1]);
    assert!(h.node(&relay).links().any(|p| *p == flooder), "neighbors");
    let ons = h.ordinaries();
    let dst = *ons
        .iter()
        .find(|o| h.node(o).primary() != Some(relay))
        .expect("a client elsewhere");
    // Three seconds at 1,000 chats a second relayed for others (made-up
    // authors): within the supernode budget, all forwarded.
    let forwarded = h.node(&relay).counters().forwarded;
    chats_at_a_thousand_a_second(&mut h, flooder, relay, dst, 3, |n| {
        identity(20_000 + n % 50).id()
    });
    let c = h.node(&relay).counters();
    assert!(c.over_budget.is_empty(), "{:?}", c.over_budget);
    assert!(c.forwarded - forwarded >= 3_000, "relayed for others");
    // The same rate in its own name: a client's budget (burst, then the
    // rate) passes on, the rest is dropped and counted here, and the link
    // stays.
    let forwarded = c.forwarded;
    chats_at_a_thousand_a_second(&mut h, flooder, relay, dst, 3, |_| flooder);
    let c = h.node(&relay).counters();
    let rate = NodeConfig::default().budget.chat;
    let passed = c.forwarded - forwarded;
    let cut = c.over_budget.get("originated_chat").copied().unwrap_or(0);
    assert!(
        passed <= u64::from(rate.burst + 3 * rate.per_s) + 10,
        "{passed} of the flood passed"
    );
    assert_eq!(passed + cut, 3_000, "{:?}", c.over_budget);
    assert_eq!(c.peers_banned, 0, "a supernode link was dropped");
    assert!(!h.events.iter().any(|(_, n, e)| *n == relay
        && matches!(e, Event::PeerMisbehaved { peer, .. } if *peer == flooder)));
    assert!(h.node(&relay).links().any(|p| *p == flooder));
    // So its clients are not stranded: they chat with clients elsewhere,
    // and are reached, through the relay as before.
    let (mine, other) = (
        *ons.iter()
            .find(|o| h.node(o).primary() == Some(flooder))
            .expect("a client of the flooder"),
        *ons.iter()
            .find(|o| h.node(o).primary() == Some(relay))
            .expect("a client of the relay"),
    );
    let there = h.send_chat(mine, other, "still served?");
    let back = h.send_chat(other, mine, "and reached?");
    h.run_for(20 * SECS);
    assert!(matches!(h.outcome(mine, there), Some(Ok(_))));
    assert!(matches!(h.outcome(other, back), Some(Ok(_))));
}
