//! Hostile kinds picked and behaving as their scenario says.

use super::*;

#[test]
fn pick_takes_the_rounded_share_of_distinct_slots_in_range() {
    let mut rng = dist::stream_rng(1, dist::stream::ADVERSARY);
    let p = pick(&mut rng, 100, 9900, 0.01);
    assert_eq!(p.len(), 99);
    assert!(p.windows(2).all(|w| w[0] < w[1]));
    assert!(p.iter().all(|s| (100..10_000).contains(s)));
    assert!(pick(&mut rng, 0, 100, 0.0).is_empty());
    assert_eq!(pick(&mut rng, 0, 100, 1.0).len(), 100);
}

#[test]
fn a_rate_that_is_not_a_multiple_of_the_tick_is_kept_on_average() {
    let cfg = SimConfig::parse(
        "duration_s = 100\n[population]\nsupernodes = 2\nordinary = 100\n\
         [adversary]\nflooding_ordinary = 0.05\nflood_rate_per_s = 250\n",
        "test",
    )
    .expect("a valid scenario");
    let mut a = Adversary::new(&cfg, 1);
    assert_eq!(a.flooders().len(), 5);
    let sent: u32 = (0..100).map(|_| a.frames_this_tick()).sum();
    assert_eq!(sent, 250, "one second of ticks sends the rate");
}

#[test]
fn a_dropper_relays_until_its_hostile_time_then_drops_and_forges_an_ack() {
    let text = |from: &str| {
        format!(
            "duration_s = 100\n[population]\nsupernodes = 4\nordinary = 10\n\
             [adversary]\ndropping_supernodes = 1.0\nforge_acks = true\n{from}"
        )
    };
    let cfg = SimConfig::parse(&text("hostile_from_s = 50\n"), "test").expect("valid");
    let mut a = Adversary::new(&cfg, 1);
    let (me, author, dst, next) = (
        NodeId([1; 32]),
        NodeId([2; 32]),
        NodeId([3; 32]),
        NodeId([4; 32]),
    );
    let chat = identity_chat(author, dst);
    let toward = |_: &NodeId| Some(next);
    assert!(matches!(
        a.on_send(secs(49.9), 0, me, dst, &chat, toward),
        Verdict::Pass
    ));
    let Verdict::Forge(to, lie) = a.on_send(secs(50.0), 0, me, dst, &chat, toward) else {
        panic!("the dropper did not forge an ack at its hostile time");
    };
    assert_eq!(to, next, "the lie heads for the author's side");
    assert!(
        matches!(*lie, Message::Routed(Packet { dst, body: Body::ChatAck(_), .. }) if dst == author)
    );
    assert_eq!(a.metrics.acks_forged, 1);
    // Without the field it lies from the start.
    let cfg = SimConfig::parse(&text(""), "test").expect("valid");
    let mut a = Adversary::new(&cfg, 1);
    assert!(matches!(
        a.on_send(0, 0, me, dst, &chat, toward),
        Verdict::Forge(..)
    ));
    let bad = SimConfig::parse(&text("hostile_from_s = -1\n"), "test");
    assert!(format!("{:?}", bad.err()).contains("adversary.hostile_from_s"));
}

/// A routed chat from `author` to `dst` that someone relays.
fn identity_chat(author: NodeId, dst: NodeId) -> Message {
    let key = dist::node_identity(9, 9);
    let chat = key.chat(dst, MsgId(1), 1, 0, "hi".into()).expect("short");
    let sealed = seal::seal(&chat, &key.chat_key(), [1; 32]).expect("valid");
    Message::Routed(Packet {
        dst,
        src: author,
        id: MsgId(2),
        ttl: 8,
        hops: 1,
        location: LocationHop::Unused,
        trace: None,
        body: Body::Chat(sealed),
    })
}

/// A small world with a dropping supernode and a flooder.
const HOSTILE: &str = r#"
name = "hostile"
duration_s = 90
warmup_s = 30
[population]
supernodes = 8
ordinary = 100
on_start_at_s = 1
on_start_spread_s = 5
[workload]
rate_per_node_per_min = 6
[adversary]
dropping_supernodes = 0.25
flooding_ordinary = 0.02
flood_rate_per_s = 400
"#;

#[test]
fn a_hostile_run_is_deterministic_and_its_adversaries_act() {
    let cfg = SimConfig::parse(HOSTILE, "hostile").expect("valid");
    let m = crate::sim::simulate(&cfg, 3);
    let again = crate::sim::simulate(&cfg, 3);
    assert_eq!(
        crate::sim::to_json(&m),
        crate::sim::to_json(&again),
        "seed 3 gave two different runs"
    );
    let a = m
        .adversary
        .expect("an [adversary] run reports its adversaries");
    assert_eq!((a.dropping_supernodes, a.flooding_ordinary), (2, 2));
    assert!(a.relayed_dropped > 0, "the droppers dropped nothing");
    assert!(a.flood_frames > 1_000, "{} flood frames", a.flood_frames);
    assert!(a.honest_delivery.eligible > 100);
    assert!(
        a.honest_delivery.eligible < m.delivery.eligible,
        "chats with a flooder are left out of the honest figures"
    );
}

/// Liars: droppers that forge acks and "not found", a supernode that
/// advertises fakes, a flooding supernode.
const LIARS: &str = r#"
name = "liars"
duration_s = 60
warmup_s = 20
[population]
supernodes = 8
ordinary = 60
on_start_at_s = 1
on_start_spread_s = 5
[workload]
rate_per_node_per_min = 6
[adversary]
dropping_supernodes = 0.25
forge_not_found = true
forge_acks = true
faking_supernodes = 0.125
flooding_supernodes = 0.125
flood_rate_per_s = 400
"#;

#[test]
fn forged_acks_are_not_believed_and_lying_supernodes_act() {
    let cfg = SimConfig::parse(LIARS, "liars").expect("valid");
    let m = crate::sim::simulate(&cfg, 5);
    let a = m.adversary.expect("an [adversary] run reports them");
    assert_eq!(
        (
            a.dropping_supernodes,
            a.faking_supernodes,
            a.flooding_supernodes
        ),
        (2, 1, 1)
    );
    assert!(a.acks_forged > 0, "the droppers forged no ack");
    assert_eq!(
        a.delivered_unreceived, 0,
        "a chat counted delivered that its recipient never received"
    );
    assert!(a.fakes_advertised > 0, "no fake supernode advertised");
    assert!(a.flood_frames > 1_000, "{} flood frames", a.flood_frames);
    assert!(a.honest_delivery.delivered > 0);
}

#[test]
fn an_adversary_share_over_one_is_refused_naming_the_field() {
    let err = SimConfig::parse(
        "duration_s = 100\n[population]\nsupernodes = 2\n[adversary]\ndropping_supernodes = 1.5\n",
        "test",
    )
    .expect_err("refused");
    assert!(
        err.to_string().contains("adversary.dropping_supernodes"),
        "{err}"
    );
}
