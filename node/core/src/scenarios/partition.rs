//! A network cut: chats across it fail as "unreachable", said by a
//! supernode on the sender's side, at the deadline and not before; chats
//! within each side go on.

use skyhop_protocol::NodeId;

use super::super::harness::{identity, Harness};
use super::super::{ChatFailure, Event, SimTime, SECS};

/// An overlay of 6 supernodes and 12 ordinary nodes cut in two: the first
/// three supernodes (by id) and their clients on one side, the rest on the
/// other. Returns the harness and the two sides' ordinary nodes.
fn cut_overlay() -> (Harness, Vec<NodeId>, Vec<NodeId>) {
    let mut h = Harness::overlay(6, 12);
    let sns = h.supernodes();
    let (west_sns, _) = sns.split_at(3);
    let mut west: Vec<NodeId> = west_sns.to_vec();
    let (mut west_ons, mut east_ons) = (Vec::new(), Vec::new());
    for on in h.ordinaries() {
        let primary = h.node(&on).primary().expect("attached before the cut");
        if west_sns.contains(&primary) {
            west.push(on);
            west_ons.push(on);
        } else {
            east_ons.push(on);
        }
    }
    assert!(
        !west_ons.is_empty() && !east_ons.is_empty(),
        "both sides have users"
    );
    h.cut(&west);
    // Long enough for every side to notice and settle.
    h.run_for(20 * SECS);
    (h, west_ons, east_ons)
}

/// The failure of chat `msg` from `from`: when, why and who said so.
fn failure(
    h: &Harness,
    from: NodeId,
    msg: skyhop_protocol::MsgId,
) -> (SimTime, ChatFailure, Option<NodeId>) {
    h.events
        .iter()
        .find_map(|(t, node, e)| match e {
            Event::ChatFailed {
                msg_id,
                reason,
                said_by,
                ..
            } if *node == from && *msg_id == msg => Some((*t, *reason, *said_by)),
            _ => None,
        })
        .unwrap_or_else(|| {
            panic!(
                "chat {msg:?} from {from:?} did not fail: {:?}",
                h.outcome(from, msg)
            )
        })
}

#[test]
fn a_chat_across_a_cut_fails_as_unreachable_said_by_a_supernode_on_the_senders_side() {
    let (mut h, west, east) = cut_overlay();
    let deadline = h.node(&west[0]).config().chat_deadline;
    let mut sent = Vec::new();
    for (i, &from) in west.iter().enumerate() {
        let to = east[i % east.len()];
        sent.push((from, h.now, h.send_chat(from, to, "across the cut")));
    }
    for (i, &from) in east.iter().enumerate() {
        let to = west[i % west.len()];
        sent.push((from, h.now, h.send_chat(from, to, "across the cut")));
    }
    h.run_for(deadline + 10 * SECS);
    let west_side: Vec<NodeId> = h.supernodes()[..3].to_vec();
    for (from, at, msg) in sent {
        let (failed_at, reason, said_by) = failure(&h, from, msg);
        assert_eq!(reason, ChatFailure::Unreachable, "chat from {from:?}");
        assert!(
            failed_at >= at + deadline,
            "an unprovable absence failed a chat before its deadline ({failed_at} < {at} + {deadline})"
        );
        let by = said_by.expect("someone said so");
        let senders_side = west_side.contains(&by) == west.contains(&from);
        assert!(
            senders_side && h.node(&by).role() == skyhop_protocol::Role::Supernode,
            "said by {by:?}, not a supernode on the sender's side"
        );
    }
}

#[test]
fn during_a_cut_chats_within_each_side_are_delivered() {
    let (mut h, west, east) = cut_overlay();
    let mut sent = Vec::new();
    for side in [&west, &east] {
        for (i, &from) in side.iter().enumerate() {
            let to = side[(i + 1) % side.len()];
            if to != from {
                sent.push((from, h.send_chat(from, to, "same side")));
            }
        }
    }
    h.run_for(40 * SECS);
    for (from, msg) in sent {
        assert!(
            matches!(h.outcome(from, msg), Some(Ok(_))),
            "chat from {from:?}: {:?}",
            h.outcome(from, msg)
        );
    }
}

#[test]
fn with_no_supernode_lost_a_chat_to_a_node_nobody_knows_still_fails_as_not_found() {
    // The cut's "unreachable" comes from lost supernodes only: in an
    // overlay that lost none, an unknown node is still "not found".
    let mut h = Harness::overlay(6, 4);
    let a = h.ordinaries()[0];
    let msg = h.send_chat(a, identity(77_777).id(), "anyone?");
    h.run_for(40 * SECS);
    assert_eq!(h.outcome(a, msg), Some(Err(ChatFailure::NotFound)));
}

#[test]
fn after_the_cut_heals_a_chat_across_is_delivered() {
    let (mut h, west, east) = cut_overlay();
    h.heal();
    h.run_for(120 * SECS);
    let (from, to) = (west[0], east[0]);
    let msg = h.send_chat(from, to, "healed");
    h.run_for(40 * SECS);
    assert!(
        matches!(h.outcome(from, msg), Some(Ok(_))),
        "{:?}",
        h.outcome(from, msg)
    );
}
