//! `skyhop demo`: a small overlay of real libp2p nodes on 127.0.0.1 in this
//! one process (each node its own tokio task and Swarm, talking TCP +
//! Noise + Yamux over loopback), a batch of chat messages between random
//! pairs, and a report. Ordinary nodes are named (alice, bob, ...), claim
//! their names at the names' home supernodes, and are written to by name.
//! It drives the runtime's [`NodeHandle`]s directly, without a control API.

use std::time::Duration;

use clap::Args;
use libp2p::Multiaddr;
use skyhop_protocol::{Identity, Role};
use tokio::time::Instant;

use super::describe::path_text;
use super::process::{init_logging, tokio_runtime};
use super::FrontError;
use crate::runtime::clock::SplitMix64;
use crate::runtime::{
    start, NodeHandle, NodeOptions, RuntimeError, SendOutcome, StatusReport, TraceOutcome,
};

/// `skyhop demo`.
#[derive(Args, Debug, Clone)]
pub struct DemoArgs {
    /// Supernodes to start.
    #[arg(long, default_value_t = 3)]
    pub supernodes: usize,
    /// Ordinary nodes to start.
    #[arg(long, default_value_t = 12)]
    pub nodes: usize,
    /// Chat messages to relay.
    #[arg(long, default_value_t = 50)]
    pub messages: usize,
    /// Seed for identities and the choice of pairs.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// `skyhop demo`.
pub fn demo(args: DemoArgs) -> Result<(), FrontError> {
    init_logging("warn,yamux=off");
    tokio_runtime()?.block_on(run(args))
}

/// Longest wait for the overlay to form.
const JOIN_WAIT: Duration = Duration::from_secs(30);
/// Largest overlay the demo starts.
const MAX_DEMO_NODES: usize = 200;

fn identity(rng: &mut SplitMix64) -> Identity {
    Identity::from_secret(rng.bytes32())
}

/// The names the demo's ordinary nodes take, in order (then `user27`, ...).
const NAMES: [&str; 26] = [
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mike",
    "nick", "olivia", "peggy", "quentin", "rupert", "sam", "tom", "ursula", "victor", "walter",
    "xavier", "yvonne", "zoe", "oscar", "wendy",
];

/// The name of the `i`-th ordinary node.
fn demo_name(i: usize) -> String {
    NAMES
        .get(i)
        .map_or_else(|| format!("user{}", i + 1), |n| (*n).to_string())
}

async fn start_node(
    role: Role,
    rng: &mut SplitMix64,
    bootstrap: Vec<Multiaddr>,
    name: Option<String>,
) -> Result<NodeHandle, RuntimeError> {
    let mut opts = NodeOptions::loopback(role);
    opts.config.name = name;
    opts.identity = Some(identity(rng));
    opts.seed = Some(rng.next_u64());
    opts.bootstrap = bootstrap;
    start(opts).await
}

fn first_addr(h: &NodeHandle) -> Result<Multiaddr, FrontError> {
    h.info()
        .listen_addrs
        .first()
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| FrontError::NoListenAddr {
            node: h.info().node_id.short(),
        })
}

/// Waits until `ready` holds for every node, or the deadline.
async fn wait_until(
    nodes: &[NodeHandle],
    deadline: Instant,
    ready: impl Fn(&StatusReport) -> bool,
) -> Result<bool, RuntimeError> {
    loop {
        let mut all = true;
        for n in nodes {
            if !ready(&n.status().await?) {
                all = false;
                break;
            }
        }
        if all {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until every node's name is claimed (or the deadline); how many are.
async fn wait_for_names(nodes: &[NodeHandle], deadline: Instant) -> usize {
    loop {
        let claimed = nodes
            .iter()
            .filter(|n| {
                n.events()
                    .since(0)
                    .iter()
                    .any(|(_, e)| matches!(e, skyhop_core::Event::NameClaimed { .. }))
            })
            .count();
        if claimed == nodes.len() || Instant::now() >= deadline {
            return claimed;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs the demo; `Ok` only if every message was delivered.
async fn run(args: DemoArgs) -> Result<(), FrontError> {
    if args.supernodes == 0 || args.supernodes + args.nodes < 2 {
        return Err(FrontError::DemoTooSmall);
    }
    if args.supernodes + args.nodes > MAX_DEMO_NODES {
        return Err(FrontError::DemoTooLarge {
            max: MAX_DEMO_NODES,
        });
    }
    let started = Instant::now();
    let mut rng = SplitMix64(args.seed);
    println!(
        "starting {} supernodes and {} ordinary nodes on 127.0.0.1 (one process, one libp2p swarm each; seed {})",
        args.supernodes, args.nodes, args.seed
    );
    let mut sns = Vec::new();
    let first = start_node(Role::Supernode, &mut rng, Vec::new(), None).await?;
    let seed_addr = first_addr(&first)?;
    sns.push(first);
    for _ in 1..args.supernodes {
        sns.push(start_node(Role::Supernode, &mut rng, vec![seed_addr.clone()], None).await?);
    }
    let deadline = Instant::now() + JOIN_WAIT;
    let want = args.supernodes - 1;
    let sn_ready = wait_until(&sns, deadline, |s| s.status.neighbors.len() >= want).await?;
    let sn_addrs: Vec<Multiaddr> = sns.iter().map(first_addr).collect::<Result<_, _>>()?;
    let mut ons = Vec::new();
    for i in 0..args.nodes {
        // Each joins through one supernode; the overlay tells it of the rest.
        let boot = sn_addrs[i % sn_addrs.len()].clone();
        let name = Some(demo_name(i));
        ons.push(start_node(Role::Ordinary, &mut rng, vec![boot], name).await?);
    }
    let on_ready = wait_until(&ons, deadline, |s| s.status.primary.is_some()).await?;
    let formed = started.elapsed();
    let mut attached = 0;
    for n in &ons {
        if n.status().await?.status.primary.is_some() {
            attached += 1;
        }
    }
    println!(
        "overlay formed in {:.2} s: supernode mesh {}, {attached}/{} ordinary nodes attached",
        formed.as_secs_f64(),
        if sn_ready { "complete" } else { "INCOMPLETE" },
        args.nodes
    );
    for sn in &sns {
        let s = sn.status().await?;
        println!(
            "  supernode {}  clients {:2}  neighbors {}",
            s.info.node_id.short(),
            s.status.clients.len(),
            s.status.neighbors.len()
        );
    }
    if !on_ready {
        println!("warning: not every ordinary node attached within {JOIN_WAIT:?}; sending anyway");
    }
    let claimed = wait_for_names(&ons, deadline).await;
    println!(
        "{claimed}/{} names claimed at their home supernodes ({})",
        ons.len(),
        (0..ons.len().min(4))
            .map(demo_name)
            .chain((ons.len() > 4).then(|| "...".to_string()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    // Chat between ordinary nodes (or any two nodes when there are fewer than two).
    let chatters: Vec<NodeHandle> = if ons.len() >= 2 {
        ons.clone()
    } else {
        sns.iter().chain(ons.iter()).cloned().collect()
    };
    // How a chatter is addressed and shown: its name, else its short id.
    let named = ons.len() >= 2;
    let label = |i: usize| {
        if named {
            demo_name(i)
        } else {
            chatters[i].info().node_id.short()
        }
    };
    let mut delivered = 0usize;
    let mut hops_seen = Vec::new();
    let mut latencies = Vec::new();
    let chat_started = Instant::now();
    for i in 0..args.messages {
        let a = rng.below(chatters.len() as u64) as usize;
        let mut b = rng.below(chatters.len() as u64 - 1) as usize;
        if b >= a {
            b += 1;
        }
        let from = &chatters[a];
        // Written to by name: the sender looks it up at its home supernodes.
        let to_id = match from.resolve(&label(b)).await {
            Ok(id) => id,
            Err(e) => {
                println!("#{:<3} {} -> {}  FAILED: {e}", i + 1, label(a), label(b));
                continue;
            }
        };
        let text = format!("hello #{} from {}", i + 1, label(a));
        let outcome = from.send_chat(to_id, text).await?;
        let path = match from.trace(to_id).await? {
            TraceOutcome::Completed { path, .. } => path_text(&path),
            TraceOutcome::Failed(r) => format!("(trace failed: {r})"),
        };
        match outcome {
            SendOutcome::Delivered { hops, latency } => {
                delivered += 1;
                hops_seen.push(hops);
                latencies.push(latency);
                println!(
                    "#{:<3} {:>8} -> {:<8} delivered  {hops} hops  {:6.2} ms  path {path}",
                    i + 1,
                    label(a),
                    label(b),
                    latency as f64 / 1000.0
                );
            }
            SendOutcome::Stored { copies } => println!(
                "#{:<3} {} -> {}  stored on {copies} home supernodes (recipient offline)",
                i + 1,
                from.info().node_id.short(),
                to_id.short()
            ),
            SendOutcome::Failed(reason) => println!(
                "#{:<3} {} -> {}  FAILED: {reason}",
                i + 1,
                label(a),
                label(b)
            ),
        }
    }
    hops_seen.sort_unstable();
    latencies.sort_unstable();
    let pct = |v: &[u64], p: usize| {
        v.get(v.len().saturating_sub(1) * p / 100)
            .copied()
            .unwrap_or(0)
    };
    let hops64: Vec<u64> = hops_seen.iter().map(|h| u64::from(*h)).collect();
    println!(
        "delivered {delivered}/{} (hops p50 {} max {}; latency p50 {:.2} ms p99 {:.2} ms; chat phase {:.2} s, total {:.2} s)",
        args.messages,
        pct(&hops64, 50),
        hops64.last().copied().unwrap_or(0),
        pct(&latencies, 50) as f64 / 1000.0,
        pct(&latencies, 99) as f64 / 1000.0,
        chat_started.elapsed().as_secs_f64(),
        started.elapsed().as_secs_f64(),
    );
    for n in sns.iter().chain(ons.iter()) {
        let _ = n.shutdown().await;
    }
    if delivered == args.messages {
        Ok(())
    } else {
        Err(FrontError::DemoUndelivered {
            delivered,
            sent: args.messages,
        })
    }
}
