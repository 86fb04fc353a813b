//! `skyhop bench relay`: what one relay hop costs, skyhop against a raw TCP
//! forwarder, a blind byte copy and libp2p's circuit relay v2, in one run.
//!
//! Every path carries the same frames (real signed chat frames, see
//! [`super::wire`]) from endpoint A to endpoint B, both in this process;
//! each relay is its own process (`skyhop bench-party`), whose CPU time is
//! read from /proc before and after the throughput phase.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Args;
use libp2p::Multiaddr;
use skyhop_protocol::Identity;
use tokio::net::{TcpListener, TcpStream};

use super::party::Party;
use super::wire::{self, FramePool, SendStats, TokioIo};
use super::{p2p, BenchError};

/// `skyhop bench relay`.
#[derive(Args, Debug, Clone)]
pub struct RelayArgs {
    /// A short run (about a minute at most).
    #[arg(long)]
    pub quick: bool,
    /// Seconds of streaming per case [default: 4, 1 with --quick].
    #[arg(long)]
    pub seconds: Option<f64>,
    /// Ping-pongs per case for the latency [default: 2000, 200 with --quick].
    #[arg(long)]
    pub pings: Option<usize>,
    /// Chat body sizes in bytes, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "128,1024")]
    pub bodies: Vec<usize>,
    /// Only these paths (direct, copy, forward, circuit, skyhop,
    /// circuit-quic, skyhop-quic), e.g. to profile one; ratios need their
    /// references in the same run.
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
}

/// The kind of path between A and B.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathKind {
    /// A connects straight to B: the latency floor.
    Direct,
    /// Blind byte copy relays.
    Copy,
    /// Frame-parsing, write-coalescing raw TCP forwarders.
    Forward,
    /// libp2p circuit relay v2 (one relay).
    Circuit,
    /// skyhop supernodes.
    Skyhop,
    /// libp2p circuit relay v2 over QUIC (one relay).
    CircuitQuic,
    /// skyhop supernodes over QUIC.
    SkyhopQuic,
}

impl PathKind {
    fn key(self) -> &'static str {
        match self {
            PathKind::Direct => "direct",
            PathKind::Copy => "copy",
            PathKind::Forward => "forward",
            PathKind::Circuit => "circuit",
            PathKind::Skyhop => "skyhop",
            PathKind::CircuitQuic => "circuit-quic",
            PathKind::SkyhopQuic => "skyhop-quic",
        }
    }

    fn name(self) -> &'static str {
        match self {
            PathKind::Direct => "direct TCP (no relay)",
            PathKind::Copy => "blind copy (copy_bidirectional)",
            PathKind::Forward => "raw forwarder (frames, coalesced)",
            PathKind::Circuit => "libp2p circuit relay v2",
            PathKind::Skyhop => "skyhop supernode(s)",
            PathKind::CircuitQuic => "libp2p circuit relay v2, QUIC",
            PathKind::SkyhopQuic => "skyhop supernode(s), QUIC",
        }
    }

    /// Whether the libp2p paths of this kind run over QUIC.
    fn quic(self) -> bool {
        matches!(self, PathKind::CircuitQuic | PathKind::SkyhopQuic)
    }

    /// The circuit relay case on the same transport: the reference of
    /// "vs circuit".
    fn circuit(self) -> PathKind {
        if self.quic() {
            PathKind::CircuitQuic
        } else {
            PathKind::Circuit
        }
    }
}

/// One measured case.
#[derive(Clone, Debug)]
pub struct Row {
    /// The path.
    pub kind: PathKind,
    /// Relays between A and B.
    pub relays: usize,
    /// Chat body bytes.
    pub body: usize,
    /// Frame bytes on the wire (header included).
    pub frame: usize,
    /// What the sender measured.
    pub stats: SendStats,
    /// Relay CPU nanoseconds per message, per relay (mean over the relays).
    pub cpu_ns_per_msg: Option<f64>,
}

impl Row {
    /// Messages per second.
    pub fn rate(&self) -> f64 {
        if self.stats.seconds > 0.0 {
            self.stats.messages as f64 / self.stats.seconds
        } else {
            0.0
        }
    }

    /// A percentile of the one-way latency in microseconds.
    pub fn latency(&self, p: f64) -> f64 {
        percentile(&self.stats.one_way_us, p)
    }
}

/// The `p`-th percentile (0..=100) of `v`, 0 when empty.
pub fn percentile(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let i = ((s.len() - 1) as f64 * p / 100.0).round() as usize;
    s[i.min(s.len() - 1)]
}

/// Settings of one run.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    /// Streaming time per case.
    pub duration: Duration,
    /// Ping-pongs per case.
    pub pings: usize,
}

/// Endpoint identities: fixed, so that frames are the same in every run.
fn endpoints() -> (Identity, Identity) {
    (
        Identity::from_secret([0xa1; 32]),
        Identity::from_secret([0xb2; 32]),
    )
}

/// Probes until a frame makes it through; returns the receiver's count.
async fn probe_path<S>(stream: &mut S, pool: &FramePool) -> Result<u64, BenchError>
where
    S: futures::AsyncRead + futures::AsyncWrite + Unpin,
{
    for attempt in 0..20u64 {
        let index = wire::POOL_FRAMES as u64 - 1 - attempt;
        if let Some(count) = wire::probe(stream, pool, index, Duration::from_millis(500)).await? {
            return Ok(count);
        }
    }
    Err(BenchError::Setup("no frame got through the path".into()))
}

/// Streams and pings over `stream`; reads the relays' CPU around the
/// streaming phase.
async fn measure<S>(
    mut stream: S,
    pool: Arc<FramePool>,
    relays: &[Party],
    plan: Plan,
) -> Result<(SendStats, Option<f64>), BenchError>
where
    S: futures::AsyncRead + futures::AsyncWrite + Unpin + Send + 'static,
{
    let before = probe_path(&mut stream, &pool).await?;
    let pids: Vec<u32> = relays.iter().map(|r| r.pid).collect();
    let cpu_before: Vec<u64> = pids.iter().map(|p| super::party::cpu_ns(*p)).collect();
    let cpu_after = Arc::new(Mutex::new(Vec::new()));
    let after = cpu_after.clone();
    let watched = pids.clone();
    let stats = wire::send(stream, pool, plan.duration, plan.pings, before, move || {
        let v: Vec<u64> = watched.iter().map(|p| super::party::cpu_ns(*p)).collect();
        *after.lock().expect("not poisoned") = v;
    })
    .await?;
    let after = cpu_after.lock().expect("not poisoned").clone();
    let cpu = (!pids.is_empty() && stats.messages > 0).then(|| {
        let used: u64 = after
            .iter()
            .zip(&cpu_before)
            .map(|(a, b)| a.saturating_sub(*b))
            .sum();
        used as f64 / pids.len() as f64 / stats.messages as f64
    });
    Ok((stats, cpu))
}

async fn run_case(
    kind: PathKind,
    relays: usize,
    body: usize,
    plan: Plan,
) -> Result<Row, BenchError> {
    let (a, b) = endpoints();
    let pool = Arc::new(FramePool::new(&a, &b, body)?);
    let acker = pool.acker();
    let frame = pool.frame_len();
    let (stats, cpu) = match kind {
        PathKind::Direct | PathKind::Copy | PathKind::Forward => {
            let listener = TcpListener::bind("127.0.0.1:0")
                .await
                .map_err(|e| BenchError::Io(format!("bind: {e}")))?;
            let b_addr = listener
                .local_addr()
                .map_err(|e| BenchError::Io(e.to_string()))?
                .to_string();
            let receiver = tokio::spawn(async move {
                let (s, _) = listener
                    .accept()
                    .await
                    .map_err(|e| BenchError::Io(format!("accept: {e}")))?;
                s.set_nodelay(true)
                    .map_err(|e| BenchError::Io(e.to_string()))?;
                wire::receive(TokioIo(s), acker, false).await
            });
            let party = if kind == PathKind::Copy {
                "copy"
            } else {
                "forward"
            };
            let mut parties: Vec<Party> = Vec::new();
            let mut next = b_addr;
            if kind != PathKind::Direct {
                for _ in 0..relays {
                    let p = Party::spawn(party, &["--to", &next]).await?;
                    next = p.addr.clone();
                    parties.push(p);
                }
            }
            let s = TcpStream::connect(&next)
                .await
                .map_err(|e| BenchError::Io(format!("connect: {e}")))?;
            s.set_nodelay(true)
                .map_err(|e| BenchError::Io(e.to_string()))?;
            let out = measure(TokioIo(s), pool, &parties, plan).await;
            receiver.abort();
            for p in parties {
                p.stop().await;
            }
            out?
        }
        PathKind::Skyhop | PathKind::SkyhopQuic => {
            let quic: &[&str] = if kind.quic() { &["--quic"] } else { &[] };
            let first = Party::spawn("supernode", quic).await?;
            let mut sns = vec![first];
            for _ in 1..relays {
                let boot = sns[0].addr.clone();
                let args = [&["--bootstrap", boot.as_str()], quic].concat();
                sns.push(Party::spawn("supernode", &args).await?);
            }
            let out = async {
                let addr = |p: &Party| -> Result<Multiaddr, BenchError> {
                    p.addr
                        .parse()
                        .map_err(|e| BenchError::Setup(format!("supernode address: {e}")))
                };
                let first_sn = addr(&sns[0])?;
                let last_sn = addr(sns.last().expect("at least one"))?;
                // Endpoint identities must sort below their supernode's PeerId.
                let a_id = p2p::identity_below(p2p::peer_of(&first_sn)?, 1);
                let b_id = p2p::identity_below(p2p::peer_of(&last_sn)?, 1 << 40);
                let pool = Arc::new(FramePool::new(&a_id, &b_id, body)?);
                let acker = pool.acker();
                let b_end = p2p::skyhop_attach(&b_id, &last_sn).await?;
                let a_end = p2p::skyhop_attach(&a_id, &first_sn).await?;
                let p2p::SkyhopEndpoint { stream, swarm } = b_end;
                let receiver = tokio::spawn(async move {
                    let _swarm = swarm;
                    wire::receive(stream, acker, false).await
                });
                let p2p::SkyhopEndpoint { stream, swarm } = a_end;
                let r = measure(stream, pool, &sns, plan).await;
                drop(swarm);
                receiver.abort();
                r
            }
            .await;
            for p in sns {
                p.stop().await;
            }
            out?
        }
        PathKind::Circuit | PathKind::CircuitQuic => {
            let quic: &[&str] = if kind.quic() { &["--quic"] } else { &[] };
            let relay = Party::spawn("circuit-relay", quic).await?;
            let out = async {
                let addr: Multiaddr = relay
                    .addr
                    .parse()
                    .map_err(|e| BenchError::Setup(format!("relay address: {e}")))?;
                let p2p::CircuitPath { a, b: b_rx, tasks } = p2p::circuit_pair(&addr).await?;
                let receiver = tokio::spawn(async move {
                    let s = b_rx
                        .await
                        .map_err(|_| BenchError::Setup("B got no stream".into()))?;
                    wire::receive(s, acker, false).await
                });
                let r = measure(a, pool, std::slice::from_ref(&relay), plan).await;
                drop(tasks);
                receiver.abort();
                r
            }
            .await;
            relay.stop().await;
            out?
        }
    };
    Ok(Row {
        kind,
        relays,
        body,
        frame,
        stats,
        cpu_ns_per_msg: cpu,
    })
}

/// The cases of one run, in table order.
fn cases(bodies: &[usize]) -> Vec<(PathKind, usize, usize)> {
    let mut v = Vec::new();
    for &body in bodies {
        v.push((PathKind::Direct, 0, body));
        for relays in [1, 2] {
            v.push((PathKind::Copy, relays, body));
            v.push((PathKind::Forward, relays, body));
            if relays == 1 {
                v.push((PathKind::Circuit, 1, body));
            }
            v.push((PathKind::Skyhop, relays, body));
            if relays == 1 {
                v.push((PathKind::CircuitQuic, 1, body));
            }
            v.push((PathKind::SkyhopQuic, relays, body));
        }
    }
    v
}

/// Runs every case; a case that fails is reported and left out.
pub async fn measure_all(bodies: &[usize], only: &[String], plan: Plan) -> Vec<Row> {
    let mut rows = Vec::new();
    for (kind, relays, body) in cases(bodies) {
        if !only.is_empty() && !only.iter().any(|o| o == kind.key()) {
            continue;
        }
        eprintln!("  {} x{relays}, {body}-byte bodies ...", kind.name());
        match run_case(kind, relays, body, plan).await {
            Ok(row) => rows.push(row),
            Err(e) => eprintln!("  {} x{relays} {body} B FAILED: {e}", kind.name()),
        }
    }
    rows
}

fn find(rows: &[Row], kind: PathKind, relays: usize, body: usize) -> Option<&Row> {
    rows.iter()
        .find(|r| r.kind == kind && r.relays == relays && r.body == body)
}

fn ratio(a: f64, b: Option<f64>) -> String {
    match b {
        Some(b) if b > 0.0 => format!("{:.2}", a / b),
        _ => "-".into(),
    }
}

/// The table of one run, with ratios against the references of that run.
pub fn table(rows: &[Row]) -> String {
    let mut out = String::new();
    out.push_str("| path | relays | body B | frame B | msgs/s | MB/s | vs raw fwd | vs circuit | one-way p50 us | p99 us | added p50 us/hop | relay CPU us/msg |\n");
    out.push_str(
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for r in rows {
        let fwd = find(rows, PathKind::Forward, r.relays, r.body).map(Row::rate);
        let circ = (r.relays == 1)
            .then(|| find(rows, r.kind.circuit(), 1, r.body).map(Row::rate))
            .flatten();
        let direct = find(rows, PathKind::Direct, 0, r.body).map(|d| d.latency(50.0));
        let added = match (direct, r.relays) {
            (Some(d), n) if n > 0 => format!("{:.1}", (r.latency(50.0) - d) / n as f64),
            _ => "-".into(),
        };
        let vs_fwd = if matches!(r.kind, PathKind::Direct | PathKind::Forward) {
            "-".into()
        } else {
            ratio(r.rate(), fwd)
        };
        let vs_circ = if matches!(
            r.kind,
            PathKind::Circuit | PathKind::CircuitQuic | PathKind::Direct
        ) {
            "-".into()
        } else {
            ratio(r.rate(), circ)
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} | {:.0} | {:.1} | {} | {} | {:.1} | {:.1} | {} | {} |\n",
            r.kind.name(),
            r.relays,
            r.body,
            r.frame,
            r.rate(),
            r.rate() * r.frame as f64 / 1e6,
            vs_fwd,
            vs_circ,
            r.latency(50.0),
            r.latency(99.0),
            added,
            r.cpu_ns_per_msg
                .map_or("-".into(), |c| format!("{:.2}", c / 1000.0)),
        ));
    }
    out
}

/// The relay targets (issue 16), checked against one run (reported, never
/// asserted): one skyhop hop against one circuit relay v2 hop on the same
/// transport, at every body size: throughput at least 1.5x, relay CPU per
/// message and added one-way latency per hop at most circuit relay's.
pub fn targets(rows: &[Row]) -> String {
    let mut out = String::new();
    let mark = |ok: bool| if ok { "met" } else { "MISSED" };
    for s in rows
        .iter()
        .filter(|r| matches!(r.kind, PathKind::Skyhop | PathKind::SkyhopQuic) && r.relays == 1)
    {
        let Some(c) = find(rows, s.kind.circuit(), 1, s.body) else {
            continue;
        };
        let what = format!("{}, {} B", s.kind.name(), s.body);
        if c.rate() > 0.0 {
            let x = s.rate() / c.rate();
            out.push_str(&format!(
                "{what}: throughput {x:.2}x circuit relay v2 (target >= 1.5): {}\n",
                mark(x >= 1.5)
            ));
        }
        if let (Some(sc), Some(cc)) = (s.cpu_ns_per_msg, c.cpu_ns_per_msg) {
            out.push_str(&format!(
                "{what}: relay CPU {:.2} us/msg, circuit relay v2 {:.2} (target <=): {}\n",
                sc / 1000.0,
                cc / 1000.0,
                mark(sc <= cc)
            ));
        }
        if let Some(d) = find(rows, PathKind::Direct, 0, s.body) {
            let (sa, ca) = (
                s.latency(50.0) - d.latency(50.0),
                c.latency(50.0) - d.latency(50.0),
            );
            out.push_str(&format!(
                "{what}: added p50 one-way latency {sa:.1} us per hop, circuit relay v2 {ca:.1} (target <=): {}\n",
                mark(sa <= ca)
            ));
        }
    }
    out
}

/// `skyhop bench relay`: runs every case and prints the table.
pub async fn run(args: RelayArgs) -> Result<(), BenchError> {
    let plan = Plan {
        duration: Duration::from_secs_f64(args.seconds.unwrap_or(if args.quick {
            1.0
        } else {
            4.0
        })),
        pings: args.pings.unwrap_or(if args.quick { 200 } else { 2000 }),
    };
    if args
        .bodies
        .iter()
        .any(|b| *b == 0 || *b > skyhop_protocol::MAX_CHAT_BODY)
    {
        return Err(BenchError::Setup(format!(
            "chat bodies must be 1..={} bytes",
            skyhop_protocol::MAX_CHAT_BODY
        )));
    }
    eprintln!(
        "bench relay: {:.1} s streaming (window {} messages) and {} ping-pongs per case; relays are separate processes",
        plan.duration.as_secs_f64(),
        wire::WINDOW,
        plan.pings
    );
    let rows = measure_all(&args.bodies, &args.only, plan).await;
    println!("{}", table(&rows));
    print!("{}", targets(&rows));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::{start, NodeOptions};
    use skyhop_protocol::Role;

    const TINY: Plan = Plan {
        duration: Duration::from_millis(200),
        pings: 5,
    };

    /// The endpoints work end to end over plain TCP: every frame counted.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn direct_path_delivers_every_frame() {
        let row = run_case(PathKind::Direct, 0, 128, TINY)
            .await
            .expect("direct case");
        assert!(row.stats.messages > 0);
        assert_eq!(row.stats.one_way_us.len(), 5);
    }

    /// Real chat frames go through a real supernode (in process here) to a
    /// wire-level ordinary node, and every one is a chat.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn frames_cross_a_real_supernode() {
        let mut opts = NodeOptions::loopback(Role::Supernode);
        opts.config.budget = skyhop_core::BudgetConfig::benchmark();
        let sn = start(opts).await.expect("sn");
        let addr: Multiaddr = sn.info().listen_addrs[0].parse().expect("addr");
        let a_id = p2p::identity_below(p2p::peer_of(&addr).expect("peer"), 7);
        let b_id = p2p::identity_below(p2p::peer_of(&addr).expect("peer"), 1 << 41);
        let pool = Arc::new(FramePool::new(&a_id, &b_id, 200).expect("pool"));
        let acker = pool.acker();
        let b = p2p::skyhop_attach(&b_id, &addr).await.expect("b attaches");
        let a = p2p::skyhop_attach(&a_id, &addr).await.expect("a attaches");
        let p2p::SkyhopEndpoint { stream, swarm } = b;
        let receiver = tokio::spawn(async move {
            let _swarm = swarm;
            wire::receive(stream, acker, true).await
        });
        let (stats, cpu) = measure(a.stream, pool, &[], TINY).await.expect("measure");
        assert!(stats.messages > 0);
        assert!(cpu.is_none());
        drop(a.swarm);
        let received = tokio::time::timeout(Duration::from_secs(10), receiver)
            .await
            .expect("receiver ends when A's stream closes")
            .expect("receiver task")
            .expect("only chat frames");
        assert!(
            received >= stats.messages + 5,
            "{received} < {}",
            stats.messages + 5
        );
        let _ = sn.shutdown().await;
    }
}
