//! Abuse by peers that speak the protocol correctly: a client that floods
//! its supernode with valid chats and location queries at full speed, from
//! a host of its own, is disconnected and its host's address refused while
//! 20 honest clients keep chatting; a client that stops reading is dropped
//! within the writer timeout.

// Test code times real processes; the core's rule against clocks is for
// the node.
#![allow(clippy::disallowed_methods)]

use std::io::{BufRead, BufReader};
use std::process::{ChildStdin, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::swarm::SwarmEvent;
use libp2p::{PeerId, Swarm};
use skyhop_protocol::{Identity, Message};
use skyhop_tests::netns::OtherHost;
use skyhop_tests::raw::{self, PROTOCOL};
use skyhop_tests::{client_runtime, dial_as, wait_until, NodeProc, Overlay};

/// The node's writer timeout (`runtime::link::WRITE_TIMEOUT`).
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Drives `swarm` until its connection to `peer` closes or `limit` passes;
/// how long the connection lasted, if it closed.
async fn until_closed(
    swarm: &mut Swarm<libp2p_stream::Behaviour>,
    peer: PeerId,
    limit: Duration,
) -> Option<Duration> {
    let start = Instant::now();
    tokio::time::timeout(limit, async {
        loop {
            if let SwarmEvent::ConnectionClosed { peer_id, .. } = swarm.select_next_some().await {
                if peer_id == peer {
                    return start.elapsed();
                }
            }
        }
    })
    .await
    .ok()
}

/// Honest clients in the flood test, each chatting on its own thread.
const HONEST: usize = 20;
/// Chats each honest client sends in each phase (quiet, then flooded).
const CHATS_EACH: usize = 25;
/// How often each honest client starts a chat (when the last one is done).
const CHAT_EVERY: Duration = Duration::from_millis(300);

/// One honest chat's start and latency.
type Sample = (Instant, Duration);

/// One phase of honest chatting: every client `i` sends `chats_each`
/// chats to client `i + 1`, one every [`CHAT_EVERY`] (staggered across
/// clients), all clients at once; when each chat was sent and its latency
/// from `POST /send` to its outcome, and the chats that were not
/// delivered.
fn chat_phase(ons: &[NodeProc], phase: &str, chats_each: usize) -> (Vec<Sample>, Vec<String>) {
    let start = Instant::now();
    let per_client: Vec<Vec<(Sample, Option<String>)>> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..ons.len())
            .map(|i| {
                scope.spawn(move || {
                    let (from, to) = (&ons[i], &ons[(i + 1) % ons.len()]);
                    let offset = CHAT_EVERY * i as u32 / ons.len() as u32;
                    (0..chats_each)
                        .map(|n| {
                            let due = start + offset + CHAT_EVERY * n as u32;
                            std::thread::sleep(due.saturating_duration_since(Instant::now()));
                            let sent_at = Instant::now();
                            let outcome = from.send(&to.id, &format!("{phase} chat {i}.{n}"));
                            let failed = (outcome["delivered"] != true)
                                .then(|| format!("{phase} chat {i}.{n}: {outcome}"));
                            ((sent_at, sent_at.elapsed()), failed)
                        })
                        .collect()
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().expect("an honest client's thread"))
            .collect()
    });
    let mut samples = Vec::new();
    let mut failed = Vec::new();
    for (sample, failure) in per_client.into_iter().flatten() {
        samples.push(sample);
        failed.extend(failure);
    }
    (samples, failed)
}

/// One line the flooder printed (see `skyhop_tests::flooder`), and
/// when the test read it.
#[derive(Debug)]
struct FloodEvent {
    at: Instant,
    kind: String,
    fields: Vec<(String, String)>,
}

impl FloodEvent {
    fn parse(at: Instant, line: &str) -> FloodEvent {
        let (kind, rest) = line.split_once(' ').unwrap_or((line, ""));
        // `error=` is last and may hold spaces.
        let (rest, error) = match rest.split_once(" error=") {
            Some((head, error)) => (head, Some(error)),
            None => (rest, None),
        };
        let mut fields: Vec<(String, String)> = rest
            .split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        fields.extend(error.map(|e| ("error".to_string(), e.to_string())));
        FloodEvent {
            at,
            kind: kind.to_string(),
            fields,
        }
    }

    /// The numeric field `key` (0 if absent).
    fn number(&self, key: &str) -> u64 {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0)
    }
}

/// The flooder process, started in its own host and read line by line.
struct Flooder {
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<FloodEvent>,
    seen: Vec<FloodEvent>,
    child: usize,
}

impl Flooder {
    /// Starts `skyhop-flooder` in `host`, flooding `target`: 4 identities
    /// with 1,000 signed chats each, 60 s and 300 connection attempts at
    /// most, a failed dial retried after 100 ms. It runs at the lowest CPU
    /// priority: a namespace has an address of its own but not cores of
    /// its own, and on another host the flooder's own work (framing and
    /// encrypting its flood) would cost the honest clients nothing.
    fn start(host: &mut OtherHost, target: &str) -> Flooder {
        let bin = env!("CARGO_BIN_EXE_skyhop-flooder");
        let mut child = host
            .command(std::path::Path::new("nice"))
            .args(["-n", "19", bin])
            .args(["--to", target, "--for-secs", "60", "--identities", "4"])
            .args(["--attempts", "300", "--chats", "1000", "--retry-ms", "100"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("the flooder starts");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(FloodEvent::parse(Instant::now(), &line)).is_err() {
                    return;
                }
            }
        });
        Flooder {
            stdin,
            lines,
            seen: Vec::new(),
            child: host.adopt(child),
        }
    }

    /// Waits (at most `limit`) until the flooder prints a `kind` line.
    fn wait_for(&mut self, kind: &str, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while !self.seen.iter().any(|e| e.kind == kind) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(e) => self.seen.push(e),
                Err(_) => return false,
            }
        }
        true
    }

    /// Tells the flooder to stop (its stdin ends), waits (at most 20 s) for
    /// it to exit, and returns all it printed.
    fn finish(mut self, host: &mut OtherHost) -> Vec<FloodEvent> {
        drop(self.stdin.take());
        let exited = wait_until(Duration::from_secs(20), || {
            matches!(host.child(self.child).try_wait(), Ok(Some(_)))
        });
        assert!(exited, "the flooder did not stop within 20 s of being told");
        self.seen.extend(self.lines.iter());
        self.seen
    }
}

#[test]
fn a_flooding_client_is_disconnected_and_its_host_refused_while_every_honest_chat_is_delivered() {
    if let Some(reason) = skyhop_tests::netns_skip_reason() {
        println!("skipped: the flooder needs a host of its own (root and `ip netns`): {reason}");
        return;
    }
    // The flooder's own host, in the world: a network namespace
    // with its own address. The honest clients share the loopback, which
    // the supernode never refuses.
    let mut host = OtherHost::new().expect("a network namespace for the flooder");
    let on_veth = format!("/ip4/{}/tcp/0", host.local_ip);
    let overlay = Overlay::start_listening("flood", 1, HONEST, &["/ip4/127.0.0.1/tcp/0", &on_veth]);
    let sn = &overlay.supernodes[0];
    let ons = &overlay.ordinary;
    let target = sn
        .listen_addr_on(&host.local_ip.to_string())
        .expect("the supernode listens where the flooder's host reaches it");
    // One chat each first, so that neither phase below pays for finding
    // the recipient (a location lookup per new contact).
    let (_, failed) = chat_phase(ons, "first", 1);
    assert!(failed.is_empty(), "first chats not delivered: {failed:?}");
    // The same chats before any flood: the reference for the latency.
    let (quiet, failed) = chat_phase(ons, "quiet", CHATS_EACH);
    assert!(failed.is_empty(), "quiet chats not delivered: {failed:?}");

    // The flood starts, then the honest clients chat as they did before.
    let mut flooder = Flooder::start(&mut host, &target);
    let flooding = flooder.wait_for("attached", Duration::from_secs(30));
    assert!(flooding, "the flooder never attached: {:?}", flooder.seen);
    let (flooded, failed) = chat_phase(ons, "flooded", CHATS_EACH);
    let events = flooder.finish(&mut host);
    let of = |kind: &'static str| events.iter().filter(move |e| e.kind == kind);
    let lines: Vec<String> = events
        .iter()
        .map(|e| {
            let fields: Vec<String> = e.fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
            format!("{} {}", e.kind, fields.join(" "))
        })
        .collect();

    // What a user notices: every honest chat delivered, and every honest
    // client still on its supernode.
    assert!(
        failed.is_empty(),
        "chats not delivered under flood: {failed:?}"
    );
    for on in ons {
        assert_eq!(on.primary().as_deref(), Some(sn.id.as_str()), "{}", on.id);
    }
    // The flooder got one identity attached and was disconnected soon.
    let attached: Vec<&FloodEvent> = of("attached").collect();
    assert_eq!(
        attached.len(),
        1,
        "one flooder identity attached: {lines:?}"
    );
    let closed = of("closed")
        .next()
        .unwrap_or_else(|| panic!("the flooder was never disconnected: {lines:?}"));
    let (flood_frames, lasted) = (closed.number("frames"), closed.number("after_ms"));
    assert!(flood_frames > 600, "the flood was a flood: {lines:?}");
    assert!(lasted < 10_000, "the flooder lasted {lasted} ms");
    // Every later connection from its host was refused before the
    // handshake: no identity after the first one attached (above), the
    // flooder saw its dials fail, and the supernode counted each refusal.
    let refused = of("failed").count() as u64;
    assert!(refused >= 1, "the flooder never came back: {lines:?}");
    let status = sn.status();
    let refused_here = status["connections_refused"].as_u64().unwrap_or(0);
    assert!(
        refused_here >= refused,
        "the flooder saw {refused} dials fail, the supernode refused {refused_here}: {lines:?}"
    );
    let log = sn.log();
    let flooder_ip = host.ip.to_string();
    assert!(
        log.lines()
            .any(|l| l.contains("refusing the peer's address") && l.contains(&flooder_ip)),
        "the supernode never refused {flooder_ip}:\n{log}"
    );
    let refusals: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("refused an inbound connection"))
        .collect();
    assert!(!refusals.is_empty(), "no refusal in the log:\n{log}");
    for line in &refusals {
        assert!(line.contains(&flooder_ip), "refused another host: {line}");
    }

    // What an operator sees: frames over budget by class, the ban, the
    // links closed and the refusals, in /status and in /metrics.
    let over = status["counters"]["dropped"]["over_budget"]
        .as_u64()
        .unwrap_or(0);
    assert!(over > 0, "no frame counted over budget");
    assert!(
        log.contains("frames over budget"),
        "supernode log does not say why:\n{log}"
    );
    let by_class: u64 = status["counters"]["over_budget"]
        .as_object()
        .map(|m| m.values().filter_map(|v| v.as_u64()).sum())
        .unwrap_or(0);
    assert!(
        by_class > 0,
        "/status counts no frame over budget: {status}"
    );
    let banned = status["counters"]["peers_banned"].as_u64().unwrap_or(0);
    assert!(banned >= 1, "/status counts no ban: {status}");
    let links_closed = status["links_closed"].as_u64().unwrap_or(0);
    assert!(
        links_closed >= banned,
        "/status: {links_closed} links closed for {banned} bans"
    );
    let metrics = metrics_of(sn);
    for expected in [
        format!("skyhop_peers_banned_total {banned}"),
        "skyhop_over_budget_total{class=\"".to_string(),
        "skyhop_links_ended_total{by=\"us\"}".to_string(),
        "skyhop_connections_refused_total ".to_string(),
    ] {
        assert!(metrics.contains(&expected), "no {expected} in\n{metrics}");
    }

    // Recorded, not asserted (timings in tests only bound hangs): the
    // issue asks the p99 under flood to stay within 3x of the quiet one.
    // Also the chats started while the flooder was attached, before its
    // disconnection reached the test.
    let latencies = |s: &[Sample]| -> Vec<Duration> { s.iter().map(|x| x.1).collect() };
    let (quiet, all_flooded) = (latencies(&quiet), latencies(&flooded));
    let while_on: Vec<Duration> = flooded
        .iter()
        .filter(|(at, _)| *at <= closed.at)
        .map(|x| x.1)
        .collect();
    let (quiet_p99, flooded_p99) = (
        percentile_ms(&quiet, 0.99),
        percentile_ms(&all_flooded, 0.99),
    );
    // The slowest chats under flood, and when each started after the
    // flooder attached: CPU contention, or a retry after a lost frame?
    let mut slowest: Vec<(u128, i128)> = flooded
        .iter()
        .map(|(at, latency)| {
            let since = at.saturating_duration_since(attached[0].at).as_millis() as i128;
            let before = attached[0].at.saturating_duration_since(*at).as_millis() as i128;
            (latency.as_millis(), since - before)
        })
        .collect();
    slowest.sort_unstable_by(|a, b| b.cmp(a));
    slowest.truncate(5);
    // Chat frames the honest clients sent beyond one per chat are retries.
    let chat_frames: u64 = ons
        .iter()
        .map(|on| {
            on.status()["counters"]["frames_out"]["chat"]
                .as_u64()
                .unwrap_or(0)
        })
        .sum();
    eprintln!(
        "slowest chats under flood (ms, started ms after the flooder attached): {slowest:?}; \
         honest chat frames sent {chat_frames} for {} chats; the supernode dropped {}",
        HONEST * (1 + 2 * CHATS_EACH),
        status["counters"]["dropped"]
    );
    let signed = of("signed").next();
    let (signed, chats, signing) = signed.map_or((0, 0, 0), |e| {
        (e.number("identities"), e.number("chats"), e.number("in_ms"))
    });
    let said: Vec<&String> = lines.iter().filter(|l| !l.starts_with("failed")).collect();
    let first_failure = lines.iter().find(|l| l.starts_with("failed"));
    eprintln!("the flooder said: {said:#?}\nand {refused} times, first: {first_failure:?}");
    eprintln!(
        "flooder from {flooder_ip}: 1 identity attached, {flood_frames} frames sent, disconnected \
         after {lasted} ms; then {refused} dials refused ({refused_here} counted by the supernode); \
         {over} frames counted over budget, {banned} banned; {signed} x {chats} chats signed beforehand in {signing} ms; \
         {HONEST} honest clients, {} chats quiet and {} under flood, all delivered; \
         honest latency p50 / p99: quiet {} / {quiet_p99} ms, under flood {} / {flooded_p99} ms; \
         p99 ratio {:.2}x; {} chats started while the flooder was attached: p99 {} ms",
        quiet.len(),
        all_flooded.len(),
        percentile_ms(&quiet, 0.50),
        percentile_ms(&all_flooded, 0.50),
        flooded_p99 as f64 / quiet_p99.max(1) as f64,
        while_on.len(),
        if while_on.is_empty() { 0 } else { percentile_ms(&while_on, 0.99) },
    );
    // A stall of every chat at once: the supernode's task, or not?
    let slow = |log: String| -> Vec<String> {
        log.lines()
            .filter(|l| l.contains("a wake-up of the node task took"))
            .map(str::to_string)
            .collect()
    };
    eprintln!("slow wake-ups of the supernode: {:?}", slow(sn.log()));
    let clients: usize = ons.iter().map(|on| slow(on.log()).len()).sum();
    eprintln!("slow wake-ups of the honest clients: {clients}");
}

/// The nearest-rank percentile `q` of `samples`, in milliseconds.
fn percentile_ms(samples: &[Duration], q: f64) -> u128 {
    let mut v: Vec<u128> = samples.iter().map(Duration::as_millis).collect();
    v.sort_unstable();
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

/// The node's `/metrics` text.
fn metrics_of(node: &NodeProc) -> String {
    let stream = std::os::unix::net::UnixStream::connect(&node.control).expect("connect");
    let request = "GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    let (code, text) = skyhop_tests::exchange(stream, request).expect("metrics");
    assert_eq!(code, 200, "{text}");
    text
}

#[test]
fn a_client_that_never_reads_is_dropped_within_the_writer_timeout() {
    let overlay = Overlay::start("noread", 1, 2);
    let sn = &overlay.supernodes[0];
    let rt = client_runtime();
    let me = Identity::from_secret([77; 32]);
    let lasted = rt.block_on(async move {
        let (mut swarm, peer) = dial_as(&sn.addr, &me);
        let mut control = swarm.behaviour().new_control();
        let writer = tokio::spawn(async move {
            let mut s = control.open_stream(peer, PROTOCOL).await.expect("stream");
            raw::attach(&mut s, &me).await.expect("attached");
            // Chats to ourselves come straight back from our supernode:
            // 150 of 4 KiB is over a Yamux window, within the chat budget's
            // burst. Then never read again.
            let chats: Vec<Message> = (1..=150)
                .map(|n| raw::chat(&me, me.id(), n, 4000))
                .collect();
            let _ = raw::write(&mut s, &chats).await;
            std::future::pending::<()>().await;
        });
        let since_flood = Instant::now();
        let closed = until_closed(&mut swarm, peer, WRITE_TIMEOUT * 4).await;
        writer.abort();
        closed.map(|_| since_flood.elapsed())
    });
    let lasted = lasted.expect("a peer that never reads was kept");
    assert!(
        lasted <= WRITE_TIMEOUT + Duration::from_secs(8),
        "dropped only after {lasted:?}"
    );
    assert!(
        wait_until(Duration::from_secs(10), || sn
            .log()
            .contains("read nothing")),
        "supernode log does not say why:\n{}",
        sn.log()
    );
    // Everyone else is still served.
    let ons = &overlay.ordinary;
    let outcome = ons[0].send(&ons[1].id, "still served");
    assert_eq!(outcome["delivered"], true, "{outcome}");
    eprintln!("a peer that never reads was dropped after {lasted:?}");
}
