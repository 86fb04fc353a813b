//! Relays forwarding routed frames without decoding them
//! ([`crate::Node::handle_routed_frame`]) against relays that decode every
//! frame: the same runs, the same outcomes.

use skyhop_protocol::{codec, Body, Message, NodeId, FRAME_HEADER_LEN};

use super::{chat_pairs, pairs, routed};
use crate::harness::Harness;
use crate::{FrameVerdict, NodeConfig, SECS};

/// A run with churn, duplicated frames, jitter, lookups, traces and a chat
/// to nobody: every event with its time, every node's counters, and the
/// frames forwarded undecoded.
fn run(raw_relay: bool) -> (Vec<String>, Vec<String>, u64, u64) {
    let mut h = Harness::new();
    h.raw_relay = raw_relay;
    h.jitter = 2_000;
    let first = h.add_supernode(1, &[]);
    for i in 2..=6 {
        h.add_supernode(i, &[first]);
    }
    h.run_for(2 * SECS);
    let sns = h.supernodes();
    for i in 0..24 {
        h.add_ordinary(1000 + i, &[sns[i as usize % sns.len()]]);
    }
    h.run_for(5 * SECS);
    let ons = h.ordinaries();
    // Cold location caches, then warm ones.
    chat_pairs(&mut h, &pairs(&ons, 40, 7));
    chat_pairs(&mut h, &pairs(&ons, 40, 7));
    let now = h.now;
    for to in [ons[3], ons[11], sns[2]] {
        h.node_mut(&ons[0]).trace(now, to).expect("attached");
    }
    h.drain(ons[0]);
    h.send_chat(ons[1], NodeId([0xee; 32]), "to nobody");
    h.duplicate_frames = true;
    chat_pairs(&mut h, &pairs(&ons, 30, 5));
    h.duplicate_frames = false;
    // A supernode fails: its clients reattach, records move.
    h.crash(&sns[3]);
    h.run_for(10 * SECS);
    chat_pairs(&mut h, &pairs(&ons, 40, 11));
    let events = h
        .events
        .iter()
        .map(|(t, n, e)| format!("{t} {n:?} {e:?}"))
        .collect();
    let counters = h
        .nodes
        .iter()
        .map(|(id, n)| format!("{id:?} {:?}", n.counters()))
        .collect();
    let forwarded = h.nodes.values().map(|n| n.counters().forwarded).sum();
    (events, counters, forwarded, h.forwarded_raw)
}

#[test]
fn relays_forwarding_undecoded_frames_give_the_same_run_as_decoding_ones() {
    let (events, counters, forwarded, raw) = run(false);
    assert_eq!(raw, 0);
    let (raw_events, raw_counters, _, raw) = run(true);
    assert_eq!(raw_events, events, "the events differ");
    assert_eq!(raw_counters, counters, "the counters differ");
    assert!(
        raw * 2 > forwarded,
        "most forwards should skip decoding: {raw} of {forwarded}"
    );
}

/// A datagram frame from `a` to `b` with packet id `id`, as `a` sends it.
fn datagram_frame(a: NodeId, b: NodeId, id: u64) -> Vec<u8> {
    let p = routed(a, b, id, 0, Body::Datagram(vec![7; 16]));
    codec::encode(&Message::Routed(p)).expect("encodes")
}

#[test]
fn undecoded_frames_are_held_to_the_senders_budget_and_the_duplicate_window() {
    let mut h = Harness::overlay(3, 2);
    let [a, b] = [h.ordinaries()[0], h.ordinaries()[1]];
    let sn = h.node(&a).primary().expect("attached");
    let now = h.now;
    let frame = datagram_frame(a, b, 1);
    let first = h
        .node_mut(&sn)
        .handle_routed_frame(now, a, &frame[FRAME_HEADER_LEN..]);
    let FrameVerdict::Forward(_, rw) = first else {
        panic!("a datagram to a known node is forwarded undecoded: {first:?}");
    };
    assert_eq!((rw.ttl, rw.hops), (7, 1), "one hop more");
    assert_eq!(
        h.node_mut(&sn)
            .handle_routed_frame(now, a, &frame[FRAME_HEADER_LEN..]),
        FrameVerdict::Dropped
    );
    assert_eq!(
        h.node(&sn).counters().dropped(crate::DropReason::Duplicate),
        1
    );
    // A flood: the burst passes, the tolerance is counted, then the
    // flooder is dropped, as for decoded frames.
    let budget = NodeConfig::default().budget;
    let mut verdicts = Vec::new();
    for id in 2..2_000 {
        let f = datagram_frame(a, b, id);
        verdicts.push(
            h.node_mut(&sn)
                .handle_routed_frame(now, a, &f[FRAME_HEADER_LEN..]),
        );
    }
    let c = h.node(&sn).counters();
    assert_eq!(
        c.over_budget.get("publish").copied(),
        Some(u64::from(budget.tolerance) + 1)
    );
    assert_eq!(c.peers_banned, 1);
    assert!(!h.node(&sn).links().any(|p| *p == a), "the flooder is gone");
    assert_eq!(
        verdicts.last(),
        Some(&FrameVerdict::Decode),
        "an unlinked sender's frame goes to the decoded path, which refuses it"
    );
}
