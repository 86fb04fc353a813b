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
    h.run_for(crate::chat::GAP_TIMEOUT - SECS);
    assert!(receipts_from(&h.tapped, b).is_empty(), "still held");
    h.run_for(2 * SECS);
    assert_eq!(h.received(b), vec![(alice.id(), "chat 3".to_string())]);
    assert_eq!(receipts_from(&h.tapped, b), vec![MsgId(3)]);
}
