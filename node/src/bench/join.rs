//! `skyhop bench join`: join-to-routable times of ordinary nodes joining a
//! running overlay; `skyhop bench nodes`: many real nodes in this one
//! process (each its own libp2p swarm and TCP sockets on 127.0.0.1), all
//! joined, chats between random pairs, and resident memory.
//!
//! # Implementation notes
//! - "Routable" is the core's own test: an ordinary node with a primary
//!   supernode (it publishes its location on the `Accept`). The time runs
//!   from the call to `runtime::start` (swarm built, listening, then dialing
//!   its bootstrap supernode) to the first status that shows a primary,
//!   polled every [`POLL`].
//! - Memory is the process's VmRSS from /proc/self/status, before the
//!   nodes start and after the chats, divided by the nodes started.

use std::time::Duration;

use clap::Args;
use libp2p::Multiaddr;
use skyhop_protocol::{Identity, Role};
use tokio::task::JoinSet;

use super::relay::percentile;
use super::BenchError;
use crate::runtime::clock::SplitMix64;
use crate::runtime::{start, NodeHandle, NodeOptions, SendOutcome};

/// How often a joining node's status is polled.
const POLL: Duration = Duration::from_millis(1);
/// How long one node may take to join.
const JOIN_LIMIT: Duration = Duration::from_secs(60);
/// How long the supernode mesh may take to form.
const MESH_LIMIT: Duration = Duration::from_secs(60);
/// Nodes started at once in `bench nodes`.
const START_BATCH: usize = 50;
/// Chats in flight at once in `bench nodes`.
const CHAT_CONCURRENCY: usize = 50;
/// Largest overlay `bench nodes` starts.
const MAX_NODES: usize = 5000;

/// `skyhop bench join`.
#[derive(Args, Debug, Clone)]
pub struct JoinArgs {
    /// Ordinary nodes that join, one after another.
    #[arg(long, default_value_t = 100)]
    pub nodes: usize,
    /// Supernodes of the running overlay.
    #[arg(long, default_value_t = 5)]
    pub supernodes: usize,
    /// Seed for identities.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// `skyhop bench nodes`.
#[derive(Args, Debug, Clone)]
pub struct NodesArgs {
    /// Supernodes.
    #[arg(long, default_value_t = 20)]
    pub supernodes: usize,
    /// Ordinary nodes.
    #[arg(long, default_value_t = 1000)]
    pub nodes: usize,
    /// Chats between random pairs of ordinary nodes.
    #[arg(long, default_value_t = 1000)]
    pub chats: usize,
    /// Seed for identities and pairs.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// This process's resident memory in bytes (VmRSS), 0 if unknown.
pub fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn options(role: Role, rng: &mut SplitMix64, bootstrap: Vec<Multiaddr>) -> NodeOptions {
    let mut opts = NodeOptions::loopback(role);
    opts.identity = Some(Identity::from_secret(rng.bytes32()));
    opts.seed = Some(rng.next_u64());
    opts.bootstrap = bootstrap;
    opts
}

fn first_addr(h: &NodeHandle) -> Result<Multiaddr, BenchError> {
    h.info()
        .listen_addrs
        .first()
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| BenchError::Setup("a node has no listen address".into()))
}

/// Starts `n` supernodes that join through the first; waits for the mesh.
#[allow(clippy::disallowed_methods)] // A benchmark reads the clock to bound its waits.
async fn start_supernodes(n: usize, rng: &mut SplitMix64) -> Result<Vec<NodeHandle>, BenchError> {
    let first = start(options(Role::Supernode, rng, Vec::new())).await?;
    let seed = first_addr(&first)?;
    let mut sns = vec![first];
    for _ in 1..n {
        sns.push(start(options(Role::Supernode, rng, vec![seed.clone()])).await?);
    }
    let began = std::time::Instant::now();
    'wait: while began.elapsed() < MESH_LIMIT {
        for sn in &sns {
            if sn.status().await?.status.neighbors.len() + 1 < n {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue 'wait;
            }
        }
        return Ok(sns);
    }
    Err(BenchError::Setup(format!(
        "the {n} supernodes did not all find each other within {MESH_LIMIT:?}"
    )))
}

/// Starts one ordinary node and times it to routable: (node, time from the
/// start call, time after `start` returned).
#[allow(clippy::disallowed_methods)] // A benchmark reads the clock to measure.
async fn join_one(opts: NodeOptions) -> Result<(NodeHandle, Duration, Duration), BenchError> {
    let t0 = std::time::Instant::now();
    let node = start(opts).await?;
    let t1 = std::time::Instant::now();
    loop {
        if node.status().await?.status.primary.is_some() {
            return Ok((node, t0.elapsed(), t1.elapsed()));
        }
        if t0.elapsed() > JOIN_LIMIT {
            return Err(BenchError::Setup(format!(
                "a node did not attach within {JOIN_LIMIT:?}"
            )));
        }
        tokio::time::sleep(POLL).await;
    }
}

fn ms(d: &[Duration], p: f64) -> f64 {
    let v: Vec<f64> = d.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    percentile(&v, p)
}

/// Runs `skyhop bench join`.
pub async fn run_join(args: JoinArgs) -> Result<(), BenchError> {
    if args.supernodes == 0 || args.nodes == 0 || args.nodes > MAX_NODES {
        return Err(BenchError::Setup(format!(
            "--supernodes must be at least 1 and --nodes 1..={MAX_NODES}"
        )));
    }
    let mut rng = SplitMix64(args.seed);
    let sns = start_supernodes(args.supernodes, &mut rng).await?;
    let addrs: Vec<Multiaddr> = sns.iter().map(first_addr).collect::<Result<_, _>>()?;
    let mut total = Vec::new();
    let mut after_start = Vec::new();
    let mut ons = Vec::new();
    for i in 0..args.nodes {
        let opts = options(
            Role::Ordinary,
            &mut rng,
            vec![addrs[i % addrs.len()].clone()],
        );
        let (node, t, a) = join_one(opts).await?;
        total.push(t);
        after_start.push(a);
        ons.push(node);
    }
    println!(
        "bench join: {} ordinary nodes joined one after another a running overlay of {} supernodes (in-process, TCP + Noise + Yamux on 127.0.0.1; polled every {POLL:?})",
        args.nodes, args.supernodes
    );
    println!("| measured from | p50 ms | p99 ms | max ms |");
    println!("| --- | ---: | ---: | ---: |");
    for (name, d) in [
        (
            "start() called (swarm built, listening, dial, hello, join, accept)",
            &total,
        ),
        ("start() returned (dial, hello, join, accept)", &after_start),
    ] {
        println!(
            "| {name} | {:.2} | {:.2} | {:.2} |",
            ms(d, 50.0),
            ms(d, 99.0),
            ms(d, 100.0)
        );
    }
    println!(
        "target: join p50 <= 20 ms: {}",
        if ms(&total, 50.0) <= 20.0 {
            "met"
        } else {
            "MISSED"
        }
    );
    for n in sns.iter().chain(ons.iter()) {
        let _ = n.shutdown().await;
    }
    Ok(())
}

/// Runs `skyhop bench nodes`.
#[allow(clippy::disallowed_methods)] // A benchmark reads the clock to measure.
pub async fn run_nodes(args: NodesArgs) -> Result<(), BenchError> {
    if args.supernodes == 0 || args.nodes < 2 || args.supernodes + args.nodes > MAX_NODES {
        return Err(BenchError::Setup(format!(
            "--supernodes must be at least 1, --nodes at least 2, and at most {MAX_NODES} nodes in all"
        )));
    }
    let began = std::time::Instant::now();
    let rss_before = resident_bytes();
    let mut rng = SplitMix64(args.seed);
    let sns = start_supernodes(args.supernodes, &mut rng).await?;
    let mesh = began.elapsed();
    let addrs: Vec<Multiaddr> = sns.iter().map(first_addr).collect::<Result<_, _>>()?;
    let mut ons = Vec::new();
    let mut times = Vec::new();
    let mut failed = 0usize;
    let joins_began = std::time::Instant::now();
    let mut i = 0;
    while i < args.nodes {
        let mut set = JoinSet::new();
        for _ in 0..START_BATCH.min(args.nodes - i) {
            let opts = options(
                Role::Ordinary,
                &mut rng,
                vec![addrs[i % addrs.len()].clone()],
            );
            set.spawn(join_one(opts));
            i += 1;
        }
        while let Some(r) = set.join_next().await {
            match r {
                Ok(Ok((node, t, _))) => {
                    times.push(t);
                    ons.push(node);
                }
                Ok(Err(e)) => {
                    failed += 1;
                    eprintln!("  a node failed to join: {e}");
                }
                Err(e) => {
                    failed += 1;
                    eprintln!("  a join task failed: {e}");
                }
            }
        }
    }
    let joins = joins_began.elapsed();
    let rss_joined = resident_bytes();
    // Chats between random pairs of ordinary nodes.
    let mut pairs = Vec::new();
    for _ in 0..args.chats {
        let a = rng.below(ons.len() as u64) as usize;
        let mut b = rng.below(ons.len() as u64 - 1) as usize;
        if b >= a {
            b += 1;
        }
        pairs.push((a, b));
    }
    let chats_began = std::time::Instant::now();
    let mut delivered = 0usize;
    let mut latencies = Vec::new();
    let mut hops = Vec::new();
    for chunk in pairs.chunks(CHAT_CONCURRENCY) {
        let mut set = JoinSet::new();
        for (k, &(a, b)) in chunk.iter().enumerate() {
            let from = ons[a].clone();
            let to = ons[b].info().node_id;
            set.spawn(async move { from.send_chat(to, format!("bench chat {k}")).await });
        }
        while let Some(r) = set.join_next().await {
            if let Ok(Ok(SendOutcome::Delivered { hops: h, latency })) = r {
                delivered += 1;
                latencies.push(latency as f64 / 1000.0);
                hops.push(f64::from(h));
            }
        }
    }
    let chat_time = chats_began.elapsed();
    let rss_after = resident_bytes();
    let started = sns.len() + ons.len();
    let per_node = rss_after.saturating_sub(rss_before) as f64 / started as f64;
    let mib = |b: f64| b / (1024.0 * 1024.0);
    println!(
        "bench nodes: {} supernodes + {} ordinary nodes in one process (each its own libp2p swarm, TCP + Noise + Yamux on 127.0.0.1)",
        args.supernodes, args.nodes
    );
    println!("| measure | value |");
    println!("| --- | ---: |");
    println!("| supernode mesh formed | {:.2} s |", mesh.as_secs_f64());
    println!(
        "| ordinary nodes joined | {}/{} in {:.2} s ({START_BATCH} at a time) |",
        ons.len(),
        args.nodes,
        joins.as_secs_f64()
    );
    println!(
        "| join to routable p50 / p99 / max | {:.1} / {:.1} / {:.1} ms |",
        ms(&times, 50.0),
        ms(&times, 99.0),
        ms(&times, 100.0)
    );
    println!(
        "| chats delivered | {delivered}/{} in {:.2} s ({CHAT_CONCURRENCY} in flight) |",
        args.chats,
        chat_time.as_secs_f64()
    );
    println!(
        "| chat latency p50 / p99 | {:.2} / {:.2} ms |",
        percentile(&latencies, 50.0),
        percentile(&latencies, 99.0)
    );
    println!(
        "| hops p50 / max | {:.0} / {:.0} |",
        percentile(&hops, 50.0),
        percentile(&hops, 100.0)
    );
    println!(
        "| resident memory: before / joined / after chats | {:.1} / {:.1} / {:.1} MiB |",
        mib(rss_before as f64),
        mib(rss_joined as f64),
        mib(rss_after as f64)
    );
    println!(
        "| resident memory per node ({started} nodes) | {:.0} KiB ({:.3} MiB) |",
        per_node / 1024.0,
        mib(per_node)
    );
    println!(
        "target: <= 1 MiB resident per node: {}",
        if mib(per_node) <= 1.0 {
            "met"
        } else {
            "MISSED"
        }
    );
    for n in sns.iter().chain(ons.iter()) {
        let _ = n.shutdown().await;
    }
    if failed > 0 || delivered < args.chats {
        return Err(BenchError::Setup(format!(
            "{failed} nodes failed to join, {delivered}/{} chats delivered",
            args.chats
        )));
    }
    Ok(())
}
