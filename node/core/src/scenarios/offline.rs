//! Offline delivery and the promise behind "delivered": a receipt leaves
//! only for a chat handed to the application (and so stored by the
//! runtime), and chats to an offline recipient wait on its home supernodes.

use super::*;

/// The receipts `src` sent to others that `frames` (a wiretap) carried, by
/// msg id (not the primary probes it signs to itself).
fn receipts_from(frames: &[Vec<u8>], src: NodeId) -> Vec<MsgId> {
    frames
        .iter()
        .filter_map(|f| match codec::decode_frame(f) {
            Ok(Message::Routed(p)) if p.src == src && p.dst != src => match p.body {
                Body::ChatAck(r) => Some(r.msg_id),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// Alice's chat number `seq` to `b`, sealed, as packet `1_000 + seq`.
fn sealed_chat(alice: &Identity, b: NodeId, seq: u64, sent_at: SimTime) -> Message {
    let chat = alice
        .chat(b, MsgId(seq), seq, sent_at, format!("chat {seq}"))
        .expect("short");
    let sealed = seal::seal(&chat, &identity_of(b).1.chat_key(), [seq as u8; 32]).expect("valid");
    Message::Routed(routed(alice.id(), b, 1_000 + seq, 2, Body::Chat(sealed)))
}

#[test]
fn a_chat_that_arrives_out_of_order_is_acked_only_when_handed_out() {
    let mut h = Harness::overlay(3, 2);
    let alice = identity(1000);
    let a = alice.id();
    let b = *h.ordinaries().iter().find(|o| **o != a).expect("two");
    let sn_b = h.node(&b).primary().expect("attached");
    h.tap = Some(sn_b);
    let now = h.now;
    // The second chat overtakes the first: held behind the gap, and a copy
    // of it (a retry) is not acked either.
    h.inject(sn_b, b, sealed_chat(&alice, b, 2, now));
    h.inject(sn_b, b, sealed_chat(&alice, b, 2, now));
    h.run_for(SECS);
    assert!(h.received(b).is_empty(), "held behind the gap");
    assert_eq!(
        receipts_from(&h.tapped, b),
        Vec::<MsgId>::new(),
        "no receipt for a chat the application does not have"
    );
    // The first arrives: both are handed out, then both acked, in order.
    h.inject(sn_b, b, sealed_chat(&alice, b, 1, now));
    h.run_for(SECS);
    assert_eq!(
        h.received(b),
        vec![(a, "chat 1".to_string()), (a, "chat 2".to_string())]
    );
    assert_eq!(receipts_from(&h.tapped, b), vec![MsgId(1), MsgId(2)]);
}

#[test]
fn a_chat_held_behind_a_gap_that_never_fills_is_acked_when_released() {
    let mut h = Harness::overlay(3, 2);
    let alice = identity(1000);
    let b = *h
        .ordinaries()
        .iter()
        .find(|o| **o != alice.id())
        .expect("two");
    let sn_b = h.node(&b).primary().expect("attached");
    h.tap = Some(sn_b);
    let now = h.now;
    h.inject(sn_b, b, sealed_chat(&alice, b, 3, now));
    h.run_for(crate::inbox::GAP_TIMEOUT - SECS);
    assert!(receipts_from(&h.tapped, b).is_empty(), "still held");
    h.run_for(2 * SECS);
    assert_eq!(h.received(b), vec![(alice.id(), "chat 3".to_string())]);
    assert_eq!(receipts_from(&h.tapped, b), vec![MsgId(3)]);
}

/// The home supernodes that signed "stored" for `msg`, in order.
fn stored_by(h: &Harness, from: NodeId, msg: MsgId) -> Vec<(u8, NodeId)> {
    h.events
        .iter()
        .filter_map(|(_, node, e)| match e {
            Event::ChatStored {
                msg_id,
                copies,
                by,
                settled: false,
                ..
            } if *node == from && *msg_id == msg => Some((*copies, *by)),
            _ => None,
        })
        .collect()
}

/// Two ordinary nodes that chatted once (so `a` holds `b`'s chat key);
/// then `b` crashed and its supernode has had time to notice:
/// `(harness, a, b)`.
fn met_then_away() -> (Harness, NodeId, NodeId) {
    let mut h = Harness::overlay(4, 2);
    let [a, b] = [h.ordinaries()[0], h.ordinaries()[1]];
    let hello = h.send_chat(a, b, "hello");
    h.run_for(5 * SECS);
    assert!(matches!(h.outcome(a, hello), Some(Ok(_))));
    h.crash(&b);
    h.run_for(20 * SECS);
    (h, a, b)
}

#[test]
fn a_chat_to_an_offline_recipient_is_stored_on_its_homes_and_delivered_when_it_returns() {
    // b goes away without a word; its supernode notices and says so.
    let (mut h, a, b) = met_then_away();
    let (b_seed, _) = identity_of(b);
    let msg = h.send_chat(a, b, "while you were out");
    h.run_for(60 * SECS);
    let stored = stored_by(&h, a, msg);
    let copies: Vec<u8> = stored.iter().map(|(k, _)| *k).collect();
    assert_eq!(copies, vec![1, 2, 3], "stored, 1 then 2 then 3 of 3 homes");
    assert!(
        stored.iter().all(|(_, by)| h.supernodes().contains(by)),
        "each signed by a supernode"
    );
    assert_eq!(h.outcome(a, msg), None, "past its deadline, not failed");
    assert_eq!(h.node(&a).stored_chats(), 1);
    let kept: usize = h
        .supernodes()
        .iter()
        .map(|s| h.node(s).mailbox_usage().0.chats)
        .sum();
    assert_eq!(kept, 3);
    // An hour later b comes back with its key, and gets it once.
    h.run_for(3_600 * SECS);
    let sn = h.supernodes()[0];
    h.add(b_seed, NodeConfig::default(), &[sn]);
    h.run_for(60 * SECS);
    let got: Vec<String> = h.received(b).into_iter().map(|(_, text)| text).collect();
    assert_eq!(got, vec!["hello", "while you were out"]);
    assert!(
        matches!(h.outcome(a, msg), Some(Ok(_))),
        "delivered, by b's signed receipt: {:?}",
        h.outcome(a, msg)
    );
    assert_eq!(h.node(&a).stored_chats(), 0);
    let kept: usize = h
        .supernodes()
        .iter()
        .map(|s| h.node(s).mailbox_usage().0.chats)
        .sum();
    assert_eq!(kept, 0, "every home dropped it once b had it");
}

#[test]
fn a_stored_chat_never_collected_fails_when_its_homes_drop_it() {
    let mut h = Harness::new();
    let first = h.add_supernode(1, &[]);
    let mut cfg = NodeConfig::supernode();
    cfg.mailbox.retention = 120 * SECS;
    for i in 1..4 {
        h.add(1 + i, cfg.clone(), &[first]);
    }
    h.run_for(2 * SECS);
    let mut ocfg = NodeConfig::default();
    ocfg.mailbox.retention = 120 * SECS;
    let a = h.add(1000, ocfg.clone(), &[first]);
    let b = h.add(1001, ocfg, &[first]);
    h.run_for(5 * SECS);
    let hello = h.send_chat(a, b, "hello");
    h.run_for(5 * SECS);
    assert!(matches!(h.outcome(a, hello), Some(Ok(_))));
    h.crash(&b);
    h.run_for(20 * SECS);
    let msg = h.send_chat(a, b, "anyone?");
    h.run_for(60 * SECS);
    assert!(!stored_by(&h, a, msg).is_empty(), "stored");
    assert_eq!(h.outcome(a, msg), None);
    h.run_for(120 * SECS);
    assert_eq!(h.outcome(a, msg), Some(Err(ChatFailure::Offline)));
    assert_eq!(h.node(&a).stored_chats(), 0);
}

#[test]
fn a_sender_that_never_met_an_offline_recipient_seals_to_its_last_record_and_stores() {
    let mut h = Harness::overlay(4, 2);
    let [a, b] = [h.ordinaries()[0], h.ordinaries()[1]];
    let (b_seed, _) = identity_of(b);
    // b publishes, then goes away before a ever asks for its key.
    h.crash(&b);
    h.run_for(200 * SECS);
    let msg = h.send_chat(a, b, "we have not met");
    h.run_for(60 * SECS);
    assert!(!stored_by(&h, a, msg).is_empty(), "sealed and stored");
    let sn = h.supernodes()[0];
    h.add(b_seed, NodeConfig::default(), &[sn]);
    h.run_for(60 * SECS);
    assert_eq!(h.received(b), vec![(a, "we have not met".to_string())]);
    assert!(matches!(h.outcome(a, msg), Some(Ok(_))));
}

/// What the supernodes keep in their mailboxes, all together.
fn kept_in_mailboxes(h: &Harness) -> usize {
    h.supernodes()
        .iter()
        .map(|s| h.node(s).mailbox_usage().0.chats)
        .sum()
}

#[test]
fn a_receipt_for_an_author_that_went_away_waits_on_its_homes_until_the_author_restarts() {
    let (mut h, a, b) = met_then_away();
    let ((a_seed, _), (b_seed, _)) = (identity_of(a), identity_of(b));
    let msg = h.send_chat(a, b, "while you were out");
    h.run_for(60 * SECS);
    assert!(!stored_by(&h, a, msg).is_empty(), "stored");
    // What a runtime saves for a; then a goes away too.
    let saved = h
        .node(&a)
        .awaited_chat(&msg)
        .expect("a stored chat is awaited");
    assert_eq!((saved.to, saved.msg_id), (b, msg));
    h.crash(&a);
    h.run_for(20 * SECS);
    let sn = h.supernodes()[0];
    h.add(b_seed, NodeConfig::default(), &[sn]);
    h.run_for(60 * SECS);
    assert_eq!(
        h.received(b),
        vec![
            (a, "hello".to_string()),
            (a, "while you were out".to_string())
        ]
    );
    assert_eq!(
        kept_in_mailboxes(&h),
        3,
        "the chat is taken; its receipt is kept by a's three homes instead"
    );
    // a restarts with what it saved, and takes the receipt from its homes.
    h.run_for(600 * SECS);
    h.add(a_seed, NodeConfig::default(), &[sn]);
    let now = h.now;
    h.node_mut(&a).restore_awaited(now, vec![saved]);
    h.run_for(60 * SECS);
    assert!(
        matches!(h.outcome(a, msg), Some(Ok(_))),
        "delivered by b's receipt, kept while a was away: {:?}",
        h.outcome(a, msg)
    );
    assert_eq!(h.node(&a).stored_chats(), 0);
    assert_eq!(kept_in_mailboxes(&h), 0, "every home dropped the receipt");
}

#[test]
fn a_forged_receipt_is_not_kept_for_an_absent_author() {
    let mut h = Harness::overlay(4, 2);
    let a = h.ordinaries()[0];
    h.crash(&a);
    h.run_for(30 * SECS);
    // Mallory signs a receipt in b's name with her own key.
    let mallory = identity(4242);
    let mut receipt = mallory.receipt(a, MsgId(7), 1, 2);
    receipt.recipient = NodeId([9; 32]);
    let sn = h.supernodes()[0];
    let other = h.supernodes()[1];
    let forged = h.node(&sn).counters().forged;
    h.inject(
        other,
        sn,
        Message::Routed(routed(other, sn, 77, 0, Body::ReceiptStore(receipt))),
    );
    h.run_for(SECS);
    assert_eq!(kept_in_mailboxes(&h), 0, "not kept anywhere");
    assert_eq!(h.node(&sn).counters().forged, forged + 1);
}

/// The packet ids of the routed chats from `src` in `frames` (a wiretap).
fn chats_sent(frames: &[Vec<u8>], src: NodeId) -> Vec<MsgId> {
    frames
        .iter()
        .filter_map(|f| match codec::decode_frame(f) {
            Ok(Message::Routed(p)) if p.src == src && matches!(p.body, Body::Chat(_)) => Some(p.id),
            _ => None,
        })
        .collect()
}

/// Runs `h` in 100 ms steps (at most `limit`) until every home of `to`
/// (`replicas`) signed that it keeps `msg`.
fn run_until_stored_everywhere(h: &mut Harness, from: NodeId, msg: MsgId, limit: SimTime) {
    let replicas = NodeConfig::default().replicas;
    let mut waited = 0;
    while stored_by(h, from, msg).len() < replicas && waited < limit {
        h.run_for(100 * MILLIS);
        waited += 100 * MILLIS;
    }
    assert_eq!(
        stored_by(h, from, msg).len(),
        replicas,
        "kept by every home"
    );
}

#[test]
fn a_chat_every_home_keeps_for_a_recipient_that_is_really_away_is_not_sent_again() {
    let (mut h, a, b) = met_then_away();
    let (b_seed, _) = identity_of(b);
    h.tap_from = Some(a);
    let msg = h.send_chat(a, b, "while you were out");
    run_until_stored_everywhere(&mut h, a, msg, 10 * SECS);
    let before = h.tapped.len();
    h.run_for(60 * SECS);
    assert_eq!(
        chats_sent(&h.tapped[before..], a).len(),
        0,
        "the homes said b is away: the chat waits on them, not on the wire"
    );
    assert_eq!(h.outcome(a, msg), None, "still awaited, not failed");
    assert_eq!(h.node(&a).stored_chats(), 1);
    // b comes back and gets it from its homes; a hears it was delivered.
    let sn = h.supernodes()[0];
    h.add(b_seed, NodeConfig::default(), &[sn]);
    h.run_for(60 * SECS);
    let got: Vec<String> = h.received(b).into_iter().map(|(_, text)| text).collect();
    assert_eq!(got, vec!["hello", "while you were out"]);
    assert!(matches!(h.outcome(a, msg), Some(Ok(_))));
}

#[test]
fn a_chat_stored_on_a_relays_lie_reaches_its_online_recipient_at_the_next_retry() {
    let mut h = Harness::overlay(3, 4);
    let [a, b] = [h.ordinaries()[0], h.ordinaries()[1]];
    let relay = h.node(&a).primary().expect("attached");
    // Every supernode drops the chat, and a's primary says b is offline.
    h.swallows_chats = Some(relay);
    h.dropping.extend(h.supernodes());
    h.tap_from = Some(a);
    let msg = h.send_chat(a, b, "still there?");
    h.run_for(100 * MILLIS);
    let (_, relay_key) = identity_of(relay);
    let packet = *chats_sent(&h.tapped, a).first().expect("the chat went out");
    let lie = routed(
        relay,
        a,
        801,
        1,
        Body::NotFound(relay_key.absence(packet.0, b, NotFoundReason::Offline)),
    );
    h.inject(relay, a, Message::Routed(lie));
    // The honest homes keep it, as a says b is away.
    run_until_stored_everywhere(&mut h, a, msg, 5 * SECS);
    // The relay stops lying: the next direct try, within the longest
    // retry delay, delivers it, long before b's next record refresh.
    h.swallows_chats = None;
    h.dropping.clear();
    h.run_for(NodeConfig::default().chat_retry_max + SECS);
    assert!(
        matches!(h.outcome(a, msg), Some(Ok(_))),
        "delivered directly: {:?}",
        h.outcome(a, msg)
    );
    assert_eq!(h.received(b), vec![(a, "still there?".to_string())]);
}
