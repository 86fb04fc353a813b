//! Simulator tests: determinism, small scenarios pass with full delivery, and
//! scenario-file errors name the field and the line.

use super::{simulate, to_json, SimConfig, SimError};

fn scenario(name: &str) -> SimConfig {
    let path = format!("{}/../sim-configs/{name}.toml", env!("CARGO_MANIFEST_DIR"));
    SimConfig::load(std::path::Path::new(&path)).expect("the scenario file is valid")
}

/// A tiny world with churn, loss and two sites, so that runs have much to
/// vary if anything leaked nondeterminism.
const TINY: &str = r#"
name = "tiny"
duration_s = 60
warmup_s = 15
sample_interval_s = 5
[population]
supernodes = 3
ordinary = 30
on_start_at_s = 1
on_start_spread_s = 5
[network]
sites = 2
loss = 0.02
roundtrip_codec = true
[churn]
session = { dist = "weibull", median_s = 40, shape = 0.7 }
graceful_fraction = 0.5
[workload]
rate_per_node_per_min = 6
"#;

#[test]
fn the_same_seed_gives_byte_identical_metrics() {
    let cfg = SimConfig::parse(TINY, "tiny").expect("valid");
    let a = to_json(&simulate(&cfg, 7));
    let b = to_json(&simulate(&cfg, 7));
    assert_eq!(a, b, "two runs of seed 7 differ");
    let c = to_json(&simulate(&cfg, 8));
    assert_ne!(a, c, "seeds 7 and 8 gave the same metrics");
}

fn assert_delivers(name: &str) {
    let cfg = scenario(name);
    let m = simulate(&cfg, cfg.seed);
    assert!(
        m.passed,
        "{name} seed {}: invariant violated: {:?}",
        m.seed, m.violation
    );
    assert!(
        m.delivery.eligible > 100,
        "{name}: too few messages counted"
    );
    assert!(
        m.delivery.eventual_ratio >= 0.999,
        "{name} seed {}: delivery {} ({:?})",
        m.seed,
        m.delivery.eventual_ratio,
        m.delivery
    );
    assert!(m.hops.max <= f64::from(cfg.node.ttl));
    // The per-kind counts account for every event, and frames dominate.
    let by_kind: u64 = m.events_by_kind.values().sum();
    assert_eq!(by_kind, m.events, "{name}: {:?}", m.events_by_kind);
    assert!(m.events_by_kind["frame"] > m.events / 2);
    assert!(m.events_by_kind["wake"] > 0);
}

#[test]
fn lan_100_delivers_every_message() {
    assert_delivers("lan-100");
}

#[test]
fn small_churn_with_a_supernode_kill_delivers_every_message() {
    assert_delivers("churn-small");
}

#[test]
fn an_unknown_field_is_named_with_its_line() {
    let text =
        "duration_s = 10\n[population]\nsupernodes = 2\nordinary = 3\n[network]\nlatncy = 4\n";
    let err = SimConfig::parse(text, "bad.toml").expect_err("a misspelt field");
    let msg = err.to_string();
    assert!(matches!(err, SimError::Parse { .. }));
    assert!(msg.contains("bad.toml"), "{msg}");
    assert!(msg.contains("latncy"), "{msg}");
    assert!(msg.contains("line 6"), "{msg}");
}

#[test]
fn a_wrong_type_in_the_node_table_is_named_with_its_line() {
    let text =
        "duration_s = 10\n[population]\nsupernodes = 2\n[node]\nheartbeat_interval = \"2s\"\n";
    let msg = SimConfig::parse(text, "bad.toml")
        .expect_err("a string for a number")
        .to_string();
    assert!(msg.contains("line 5"), "{msg}");
    assert!(msg.contains("heartbeat_interval"), "{msg}");
}

#[test]
fn an_out_of_range_value_names_the_field() {
    let text = "duration_s = 100\n[population]\nsupernodes = 0\n";
    let msg = SimConfig::parse(text, "bad.toml")
        .expect_err("no supernodes")
        .to_string();
    assert!(msg.contains("population.supernodes"), "{msg}");
}

#[test]
fn every_shipped_scenario_parses() {
    let dir = format!("{}/../sim-configs", env!("CARGO_MANIFEST_DIR"));
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("sim-configs exists") {
        let path = entry.expect("readable").path();
        if path.extension().is_some_and(|e| e == "toml") {
            SimConfig::load(&path).unwrap_or_else(|e| panic!("{e}"));
            n += 1;
        }
    }
    assert!(n >= 2);
}

#[test]
fn the_overlay_grows_back_together_after_a_partition_heals() {
    let cfg = scenario("partition-small");
    let m = simulate(&cfg, cfg.seed);
    assert!(m.passed, "seed {}: {:?}", m.seed, m.violation);
    assert!(m.traffic.dropped_partition > 0, "the cut dropped frames");
    let during = m
        .delivery_over_time
        .iter()
        .filter(|s| (60.0..90.0).contains(&s.t_s))
        .map(|s| s.ratio)
        .fold(1.0f64, f64::min);
    assert!(during < 0.9, "messages across the cut fail while it lasts");
    // The table refresh (60 s) re-links the halves: messages sent from then
    // on all arrive.
    for s in m.delivery_over_time.iter().filter(|s| s.t_s >= 150.0) {
        assert_eq!(s.delivered, s.eligible, "seed {}: {s:?}", m.seed);
    }
}

#[test]
fn a_ttl_too_small_for_the_overlay_is_a_violation_with_time_and_event() {
    let text = format!("{TINY}\n[node]\nttl = 2\n[invariants]\nsettle_s = 5\n");
    let text = text.replace(
        "session = { dist = \"weibull\", median_s = 40, shape = 0.7 }\n",
        "",
    );
    let cfg = SimConfig::parse(&text, "tiny-ttl").expect("valid");
    let m = simulate(&cfg, 3);
    let v = m
        .violation
        .expect("packets run out of TTL in a steady overlay");
    assert!(!m.passed);
    assert!(v.what.contains("TTL"), "{}", v.what);
    assert!(v.time_s > 0.0 && v.event > 0);
    assert_eq!(m.seed, 3);
}

/// The invariant sampling draws from a stream of its own: checking more or
/// fewer location records changes nothing a user would see of the run (who
/// joins, leaves and crashes, what is sent and delivered), only the tally of
/// checks.
#[test]
fn the_invariant_settings_do_not_change_the_churn() {
    let run = |record_sample: u32| {
        let text = format!("{TINY}\n[invariants]\nsettle_s = 5\nrecord_sample = {record_sample}\n");
        let cfg = SimConfig::parse(&text, "tiny-inv").expect("valid");
        let m = simulate(&cfg, 11);
        assert!(m.passed, "record_sample {record_sample}: {:?}", m.violation);
        m
    };
    let (none, some) = (run(0), run(4));
    assert_eq!(none.invariants.records_checked, 0);
    assert!(some.invariants.records_checked > 0, "records were checked");
    assert!(none.nodes.left + none.nodes.crashed > 0, "sessions ended");
    let nodes = |m: &super::Metrics| serde_json::to_string(&m.nodes).expect("serializes");
    assert_eq!(nodes(&none), nodes(&some), "the churn moved");
    let without_checks = |m: &super::Metrics| {
        let mut v = serde_json::to_value(m).expect("metrics serialize");
        let o = v.as_object_mut().expect("an object");
        o.remove("invariants");
        o.remove("config");
        v
    };
    assert!(
        without_checks(&none) == without_checks(&some),
        "the run moved: {} / {} events",
        none.events,
        some.events
    );
}

#[test]
fn the_command_writes_metrics_perf_and_plots() {
    let dir = std::env::temp_dir().join(format!("skyhop-sim-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let config = dir.join("tiny.toml");
    std::fs::write(&config, TINY).expect("write the scenario");
    let out = dir.join("tiny.json");
    let args = super::SimArgs {
        config,
        seed: Some(5),
        out: Some(out.clone()),
        plots: Some(dir.join("plots")),
        quiet: true,
    };
    assert!(super::run(&args).expect("the run starts"), "tiny passes");
    let written = std::fs::read_to_string(&out).expect("metrics written");
    let cfg = SimConfig::parse(TINY, "tiny").expect("valid");
    assert_eq!(
        written,
        to_json(&simulate(&cfg, 5)),
        "the file is the metrics"
    );
    let perf = std::fs::read_to_string(dir.join("tiny.json.perf.json")).expect("perf written");
    assert!(perf.contains("wall_s") && !written.contains("wall_s"));
    for plot in ["hops.svg", "delivery.svg", "attached.svg", "supernodes.svg"] {
        let svg = std::fs::read_to_string(dir.join("plots").join(plot)).expect("plot written");
        assert!(svg.starts_with("<svg"), "{plot}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Two supernodes with room for ten clients between them, and thirty users:
/// twenty users never get in.
const TOO_FEW_SLOTS: &str = r#"
name = "too-few-slots"
duration_s = 120
warmup_s = 40
[population]
supernodes = 2
ordinary = 30
on_start_at_s = 1
on_start_spread_s = 5
[workload]
rate_per_node_per_min = 6
[node]
max_clients = 5
"#;

/// The users who cannot get in still write and are written to, and their
/// messages fail as "not attached", so delivery is well below 100%.
#[test]
fn users_who_cannot_attach_count_as_failed_deliveries() {
    let cfg = SimConfig::parse(TOO_FEW_SLOTS, "too-few-slots").expect("valid");
    let m = simulate(&cfg, 2);
    let d = &m.delivery;
    assert!(d.eligible > 50, "seed 2: too few messages: {d:?}");
    assert!(d.failed_not_attached > 0, "seed 2: {d:?}");
    assert!(
        d.eventual_ratio < 0.5,
        "seed 2: most users are out, yet delivery is {}: {d:?}",
        d.eventual_ratio
    );
    assert_eq!(
        d.delivered
            + d.failed_not_attached
            + d.failed_offline
            + d.failed_not_found
            + d.failed_timed_out
            + d.failed_unreachable
            + d.unresolved,
        d.eligible,
        "seed 2: every counted message has one outcome: {d:?}"
    );
}

/// The attachment figures show the users left out: how many never attached,
/// the lowest attached share, and the supernodes serving the rest.
#[test]
fn the_attachment_figures_count_users_who_never_got_in() {
    let cfg = SimConfig::parse(TOO_FEW_SLOTS, "too-few-slots").expect("valid");
    let m = simulate(&cfg, 2);
    let a = &m.attachment;
    assert_eq!(a.started, 30, "seed 2: {a:?}");
    assert!(a.attached <= 10, "seed 2: at most 2 x 5 clients: {a:?}");
    assert_eq!(
        a.attached + a.never_attached_departed + a.never_attached_at_end,
        a.started,
        "seed 2: {a:?}"
    );
    assert!(a.never_attached_at_end >= 20, "seed 2: {a:?}");
    assert!(
        a.min_ratio_after_warmup <= 10.0 / 30.0 + 1e-9,
        "seed 2: {a:?}"
    );
    assert_eq!(m.join_time_ms.count, a.attached, "one time per attachment");
    assert!(m.attached_over_time.iter().all(|s| s.supernodes == 2));
}

/// A supernode kill shows in the supernode count and is marked on the plots.
#[test]
fn a_supernode_kill_shows_in_the_supernode_count_and_on_the_plots() {
    let cfg = scenario("churn-small");
    let m = simulate(&cfg, cfg.seed);
    let kill = &cfg.churn.sn_kills[0];
    let count_at = |t: f64| {
        m.attached_over_time
            .iter()
            .rev()
            .find(|s| s.t_s <= t)
            .map(|s| s.supernodes)
            .expect("sampled")
    };
    assert!(
        count_at(kill.at_s + 1.0) < count_at(kill.at_s - 1.0),
        "seed {}: the kill at {} s removed no supernode",
        m.seed,
        kill.at_s
    );
    let dir = std::env::temp_dir().join(format!("skyhop-sim-marks-{}", std::process::id()));
    super::report::plots(&m, &dir).expect("plots written");
    for plot in ["attached.svg", "supernodes.svg", "delivery.svg"] {
        let svg = std::fs::read_to_string(dir.join(plot)).expect("plot written");
        assert!(svg.contains("kill"), "{plot} marks the kill");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// partition-small with the cut held for two minutes: each side is steady
/// long before it heals (the old global check stopped the run 45 s into
/// the cut), each side's records are checked against that side's
/// supernodes, and after the heal the overlay grows back together.
#[test]
fn a_long_partition_is_checked_per_side_and_passes() {
    let mut cfg = scenario("partition-small");
    cfg.duration_s = 300.0;
    cfg.network.partitions[0].end_s = 180.0;
    let m = simulate(&cfg, cfg.seed);
    assert!(m.passed, "seed {}: {:?}", m.seed, m.violation);
    let settle = cfg.invariants.settle_s;
    let cut = &cfg.network.partitions[0];
    // Samples in the cut at which the overlay was steady, so checked.
    let steady_in_cut = ((cut.end_s - cut.start_s - settle) / cfg.sample_interval_s) as u64;
    assert!(steady_in_cut > 0, "the cut outlasts the settling time");
    assert!(
        m.invariants.steady_samples > steady_in_cut,
        "seed {}: {:?}",
        m.seed,
        m.invariants
    );
    assert!(m.invariants.records_checked > 0);
    for s in m
        .delivery_over_time
        .iter()
        .filter(|s| s.t_s >= cut.end_s + 30.0)
    {
        assert_eq!(s.delivered, s.eligible, "seed {}: {s:?}", m.seed);
    }
}

/// Chats across a cut fail as "unreachable" (or time out), never as "not
/// found" as if the recipient did not exist; after the heal the records go
/// back to their true homes and every chat is delivered again, and the run
/// says how long each took.
#[test]
fn chats_across_a_partition_fail_as_unreachable_and_the_overlay_recovers_after_the_heal() {
    let cfg = scenario("partition-small");
    let m = simulate(&cfg, cfg.seed);
    assert!(m.passed, "seed {}: {:?}", m.seed, m.violation);
    let p = m
        .partition
        .as_ref()
        .expect("a scenario with a cut reports it");
    assert!(p.across_sent > 0, "seed {}: {p:?}", m.seed);
    assert_eq!(p.across_failed_not_found, 0, "seed {}: {p:?}", m.seed);
    assert!(
        p.across_failed_unreachable > p.across_failed_timed_out,
        "seed {}: most chats across the cut are told why: {p:?}",
        m.seed
    );
    assert_eq!(
        p.across_delivered
            + p.across_failed_unreachable
            + p.across_failed_offline
            + p.across_failed_timed_out
            + p.across_unresolved,
        p.across_sent,
        "seed {}: {p:?}",
        m.seed
    );
    assert!(p.records_recovered_s.is_some(), "seed {}: {p:?}", m.seed);
    assert!(p.delivery_recovered_s.is_some(), "seed {}: {p:?}", m.seed);
    assert_eq!(
        m.delivery.failed_not_found, 0,
        "seed {}: {:?}",
        m.seed, m.delivery
    );
}

/// Half the users behind a NAT: they dial out to their supernodes, so they
/// all attach and chat as before (nothing promotes or needs to dial them
/// yet).
#[test]
fn users_behind_nat_still_attach_and_chat() {
    let mut cfg = scenario("lan-100");
    cfg.population.nat_fraction = 0.5;
    let m = simulate(&cfg, cfg.seed);
    assert!(m.passed, "seed {}: {:?}", m.seed, m.violation);
    let ordinary = u64::from(cfg.population.ordinary);
    assert!(
        (ordinary / 4..ordinary * 3 / 4).contains(&m.nat.nodes_behind_nat),
        "seed {}: {:?}",
        m.seed,
        m.nat
    );
    assert_eq!(m.attachment.never_attached_at_end, 0, "seed {}", m.seed);
    assert!(
        m.delivery.eventual_ratio >= 0.999,
        "seed {}: {:?}",
        m.seed,
        m.delivery
    );
}

/// Two supernodes of 20 clients for 150 users who pick their role
/// themselves; `nat` of them cannot be dialed.
fn too_few_supernodes(nat: f64) -> SimConfig {
    let toml = format!(
        r#"
name = "too-few-auto"
duration_s = 150
warmup_s = 100
sample_interval_s = 5
[population]
supernodes = 2
ordinary = 150
sn_start_spread_s = 0.5
on_start_at_s = 1
on_start_spread_s = 20
nat_fraction = {nat}
[workload]
rate_per_node_per_min = 4
[node]
max_clients = 20
[node.auto_role]
enabled = true
promote_per_mille = 50
"#
    );
    SimConfig::parse(&toml, "too-few-auto").expect("valid")
}

#[test]
fn with_auto_role_reachable_users_promote_until_every_user_is_attached() {
    let m = simulate(&too_few_supernodes(0.3), 1);
    assert!(m.passed, "seed 1: {:?}", m.violation);
    assert!(m.nodes.promotions >= 6, "promotions: {:?}", m.nodes);
    assert_eq!(m.attachment.never_attached_at_end, 0, "{:?}", m.attachment);
    assert!(
        m.attachment.min_ratio_after_warmup >= 0.999,
        "{:?}",
        m.attachment
    );
    assert!(
        m.delivery.eventual_ratio >= 0.999,
        "seed 1: {:?}",
        m.delivery
    );
}

#[test]
fn with_auto_role_users_behind_nat_never_promote() {
    let m = simulate(&too_few_supernodes(1.0), 1);
    assert_eq!(m.nodes.promotions, 0, "{:?}", m.nodes);
    assert!(
        m.attachment.never_attached_at_end >= 100,
        "only 40 places exist: {:?}",
        m.attachment
    );
}

/// A small world where users claim names (a fifth of them a name an
/// earlier user has), restart, and look each other up by name.
const NAMED: &str = r#"
name = "named"
duration_s = 400
warmup_s = 30
sample_interval_s = 20
[population]
supernodes = 6
ordinary = 40
on_start_at_s = 1
on_start_spread_s = 60
[churn]
restart_storms = [{ at_s = 150, window_s = 30, fraction = 0.25, downtime_s = 60 }]
[names]
named = 0.75
contested = 0.2
lookups_per_min = 120
lookups_from_s = 90
"#;

#[test]
fn named_users_are_found_by_name_and_a_taken_name_is_refused_to_the_later_claimant() {
    let cfg = SimConfig::parse(NAMED, "named").expect("valid");
    let m = simulate(&cfg, 3);
    assert!(m.passed, "seed 3: {:?}", m.violation);
    let n = m.names.as_ref().expect("names measured");
    assert!(n.contested_users > 0, "the scenario contests names: {n:?}");
    assert_eq!(n.held_by_two, 0, "first come, first served: {n:?}");
    assert_eq!(
        n.claims_refused, n.contested_users,
        "each contested claimant is refused once: {n:?}"
    );
    assert_eq!(
        n.names_held,
        n.named_users - n.contested_users,
        "every distinct name is held: {n:?}"
    );
    assert!(n.lookups > 50, "{n:?}");
    assert_eq!(
        n.lookups_right, n.lookups,
        "every lookup finds the holder: {n:?}"
    );
    assert!(n.lookups_holder_down > 0, "some holders were down: {n:?}");
    // R = 3 copies of each, and a few more where a home's table changed
    // (a claim copied to a newcomer stays at the old home until it expires).
    assert!(n.claims_at_end >= 3 * n.names_held, "R = 3 copies: {n:?}");
    assert!(n.claims_at_end <= 4 * n.names_held, "{n:?}");
    // The same seed gives the same measurements.
    assert_eq!(to_json(&m), to_json(&simulate(&cfg, 3)));
}

#[test]
fn a_scenario_without_names_reports_none_and_draws_nothing_for_them() {
    let cfg = SimConfig::parse(TINY, "tiny").expect("valid");
    let json = to_json(&simulate(&cfg, 7));
    assert!(!json.contains("\"names\""), "{json}");
    assert!(!json.contains("name_lookup"), "{json}");
}

/// churn-small with half its supernodes going at 60 s, crashing or all
/// leaving gracefully.
fn exodus_small(graceful_fraction: f64) -> SimConfig {
    let mut cfg = scenario("churn-small");
    cfg.churn.sn_kills[0].fraction = 0.5;
    cfg.churn.sn_kills[0].graceful_fraction = graceful_fraction;
    cfg
}

/// Supernodes that leave gracefully move their clients at once and hand
/// their records over: their clients reattach much sooner than the clients
/// of crashed supernodes, no handed-over record is lost, and every chat
/// still arrives.
#[test]
fn supernodes_that_leave_gracefully_hand_over_their_clients_and_records() {
    let crashed = simulate(&exodus_small(0.0), 1);
    let left = simulate(&exodus_small(1.0), 1);
    assert_eq!(crashed.nodes.supernodes_killed, 4);
    assert!(
        crashed.handovers.is_none(),
        "no handover in a crash-only run"
    );
    assert_eq!(left.nodes.supernodes_left, 4, "{:?}", left.nodes);
    assert_eq!(left.nodes.supernodes_killed, 0);
    let h = left.handovers.as_ref().expect("handover figures");
    assert_eq!(h.leaves, 4, "{h:?}");
    assert!(h.records_due > 0, "the leavers were homes: {h:?}");
    assert_eq!(h.records_lost, 0, "{h:?}");
    assert!(left.passed, "{:?}", left.violation);
    assert!(left.delivery.eventual_ratio >= 0.999, "{:?}", left.delivery);
    assert!(left.reattach.orphans > 20, "{:?}", left.reattach);
    assert!((left.reattach.within_30s_ratio - 1.0).abs() < 1e-9);
    assert!(
        left.reattach.time_ms.p99 * 2.0 < crashed.reattach.time_ms.p99,
        "graceful p99 {} ms against crash p99 {} ms",
        left.reattach.time_ms.p99,
        crashed.reattach.time_ms.p99
    );
    let dir = std::env::temp_dir().join(format!("skyhop-sim-exodus-{}", std::process::id()));
    super::report::plots(&left, &dir).expect("plots written");
    let svg = std::fs::read_to_string(dir.join("supernodes.svg")).expect("plot written");
    assert!(svg.contains("exodus 50% SN"), "the exodus is marked");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A tiny steady world for demand changes.
const DEMAND: &str = r#"
name = "demand"
duration_s = 200
warmup_s = 20
sample_interval_s = 5
[population]
supernodes = 4
ordinary = 60
sn_start_spread_s = 1
on_start_at_s = 2
on_start_spread_s = 5
[network]
sites = 2
[workload]
rate_per_node_per_min = 4
"#;

#[test]
fn a_flash_crowd_doubles_the_users_within_its_window_and_all_get_in() {
    let text = format!("{DEMAND}[churn]\ncrowds = [{{ at_s = 60, count = 60, spread_s = 20 }}]\n");
    let cfg = SimConfig::parse(&text, "crowd").expect("valid");
    let m = simulate(&cfg, 3);
    let live_at = |t: f64| {
        let s = m
            .attached_over_time
            .iter()
            .find(|s| s.t_s == t)
            .expect("sampled");
        (s.live, s.attached)
    };
    assert_eq!(live_at(55.0), (60, 60));
    assert_eq!(live_at(85.0).0, 120, "the crowd arrived within its window");
    assert_eq!(live_at(120.0), (120, 120), "every newcomer got in");
    assert_eq!(m.attachment.started, 120);
    assert!(m.delivery.eventual_ratio >= 0.999, "{:?}", m.delivery);
}

#[test]
fn the_daily_cycle_brings_the_users_down_at_night_and_back_by_the_next_peak() {
    let text = format!(
        "{DEMAND}[churn]\ngraceful_fraction = 0.5\n\
         day = {{ period_s = 120, low_fraction = 0.25, start_s = 40, tick_s = 2 }}\n"
    );
    let cfg = SimConfig::parse(&text, "day").expect("valid");
    let m = simulate(&cfg, 3);
    let live_at = |t: f64| {
        m.attached_over_time
            .iter()
            .find(|s| s.t_s == t)
            .expect("sampled")
            .live
    };
    assert_eq!(live_at(40.0), 60, "the day starts at its peak");
    let night = live_at(100.0);
    assert!((13..=17).contains(&night), "a quarter at night: {night}");
    let morning = live_at(160.0);
    assert!((57..=60).contains(&morning), "back at the peak: {morning}");
    assert!(m.nodes.left > 0 && m.nodes.crashed > 0, "{:?}", m.nodes);
    assert!(m.delivery.eventual_ratio >= 0.999, "{:?}", m.delivery);
    assert!(m.passed, "{:?}", m.violation);
}
