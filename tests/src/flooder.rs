//! The flood test's hostile client (run as its own process by
//! `src/bin/skyhop-flooder.rs`, in a network namespace of its own, so from
//! an address of its own): it attaches to a supernode like an honest
//! client, then sends valid signed chats and location queries at full
//! speed until it is disconnected, and comes back under a fresh identity,
//! again and again. Every identity's chats are signed before the first
//! dial, so that the flood measures the supernode, not the flooder's
//! signing. Bounded in time, identities and connection attempts, and it
//! stops when told.
//!
//! It prints one line per event, `key=value` fields, times in milliseconds
//! since it started:
//! - `signed identities=N chats=N in_ms=T`: chats each, before any dial
//! - `attached identity=K at_ms=T`: the supernode accepted identity K
//! - `closed identity=K at_ms=T frames=N after_ms=D`: disconnected D ms
//!   after it attached, having sent N frames
//! - `failed identity=K at_ms=T error=...`: a connection that was never
//!   established (the supernode refused it, or it did not answer); the
//!   same identity dials again, since the supernode never learned it
//! - `stopped identity=K at_ms=T frames=N`: still attached when told to stop
//! - `done identities=N attempts=N frames=N`

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{AsyncReadExt, StreamExt};
use libp2p::swarm::SwarmEvent;
use libp2p::{PeerId, Swarm};
use skyhop_protocol::{codec, Identity, NodeId};

use crate::raw::{self, PROTOCOL};

/// What to flood and for how long.
#[derive(Clone, Debug)]
pub struct FloodOptions {
    /// The supernode's address, ending in `/p2p/<peer id>`.
    pub to: String,
    /// Stop after this long, whatever happens.
    pub for_secs: u64,
    /// Identities at most (each used until it is disconnected).
    pub identities: u64,
    /// Connection attempts at most.
    pub attempts: u64,
    /// Chats each identity signs before it dials (each followed by a
    /// location query); once they are sent it sends queries only.
    pub chats: u64,
    /// The pause after a dial that failed.
    pub retry_ms: u64,
}

impl Default for FloodOptions {
    fn default() -> FloodOptions {
        FloodOptions {
            to: String::new(),
            for_secs: 60,
            identities: 4,
            attempts: 300,
            chats: 1000,
            retry_ms: 100,
        }
    }
}

/// Frames per write.
const FRAMES_PER_WRITE: usize = 32;
/// Chats go to a node that is not there: valid, yet each costs the
/// supernode a lookup.
const TARGET: NodeId = NodeId([0x55; 32]);
/// How long a dial may take to be established or refused.
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);

/// Flooder identity `k`: ids are free.
fn identity(k: u64) -> Identity {
    let mut secret = [0xf1; 32];
    secret[..8].copy_from_slice(&(k + 1).to_le_bytes());
    Identity::from_secret(secret)
}

/// Frames encoded for one write, and how many.
type Chunk = (Vec<u8>, u64);

/// `frames` encoded, [`FRAMES_PER_WRITE`] to a write.
fn encoded(frames: impl Iterator<Item = skyhop_protocol::Message>) -> Vec<Chunk> {
    let frames: Vec<_> = frames.collect();
    frames
        .chunks(FRAMES_PER_WRITE)
        .map(|chunk| {
            let mut out = Vec::new();
            for m in chunk {
                codec::encode_into(m, &mut out).expect("encodes");
            }
            (out, chunk.len() as u64)
        })
        .collect()
}

/// `chats` signed chats from `me`, each followed by a location query.
fn signed_batch(me: &Identity, chats: u64) -> Vec<Chunk> {
    encoded((1..=chats).flat_map(|n| {
        [
            raw::chat(me, TARGET, 2 * n, 64),
            raw::location_query(me, TARGET, 2 * n + 1),
        ]
    }))
}

/// Drives `swarm` until its connection to `peer` is established, or says
/// why it was not.
async fn established(
    swarm: &mut Swarm<libp2p_stream::Behaviour>,
    peer: PeerId,
) -> Result<(), String> {
    let wait = async {
        loop {
            match swarm.select_next_some().await {
                SwarmEvent::ConnectionEstablished { peer_id, .. } if peer_id == peer => {
                    return Ok(())
                }
                SwarmEvent::OutgoingConnectionError { error, .. } => {
                    return Err(error.to_string().replace('\n', " "))
                }
                _ => {}
            }
        }
    };
    tokio::time::timeout(DIAL_TIMEOUT, wait)
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "neither established nor refused in {DIAL_TIMEOUT:?}"
            ))
        })
}

/// Attaches as `me` and sends `batch`, then location queries, as fast as
/// the connection takes them, counting frames in `sent`, until a write
/// fails; says when it attached.
async fn flood(
    mut control: libp2p_stream::Control,
    peer: PeerId,
    me: Identity,
    batch: Vec<Chunk>,
    sent: Arc<AtomicU64>,
    attached: tokio::sync::oneshot::Sender<()>,
) {
    let Ok(mut s) = control.open_stream(peer, PROTOCOL).await else {
        return;
    };
    if raw::attach(&mut s, &me).await.is_err() {
        return;
    }
    let _ = attached.send(());
    let (mut r, mut w) = s.split();
    // Keep reading, so that only the flood can get us dropped.
    let reader = tokio::spawn(async move {
        let mut sink = vec![0u8; 64 * 1024];
        while matches!(r.read(&mut sink).await, Ok(n) if n > 0) {}
    });
    let queries = (0u64..).map(|round| {
        let first = (1 << 40) + round * FRAMES_PER_WRITE as u64;
        let n = first..first + FRAMES_PER_WRITE as u64;
        encoded(n.map(|n| raw::location_query(&me, TARGET, n))).remove(0)
    });
    for (frames, count) in batch.into_iter().chain(queries) {
        if raw::write_bytes(&mut w, &frames).await.is_err() {
            break;
        }
        sent.fetch_add(count, Ordering::Relaxed);
    }
    reader.abort();
}

/// Floods as `options` say until a bound is reached or `stop` is set,
/// printing what happens on stdout (see the module doc).
pub async fn run(args: FloodOptions, stop: Arc<AtomicBool>) {
    let start = Instant::now();
    let deadline = start + Duration::from_secs(args.for_secs);
    let at_ms = || start.elapsed().as_millis();
    let over = || stop.load(Ordering::Relaxed) || Instant::now() >= deadline;
    let signing = Instant::now();
    let mut unused: VecDeque<(Identity, Vec<Chunk>)> = (0..args.identities)
        .map(|k| {
            let me = identity(k);
            let batch = signed_batch(&me, args.chats);
            (me, batch)
        })
        .collect();
    println!(
        "signed identities={} chats={} in_ms={}",
        args.identities,
        args.chats,
        signing.elapsed().as_millis()
    );
    let (mut identities, mut attempts, mut total) = (0u64, 0u64, 0u64);
    while attempts < args.attempts && !over() {
        let Some((me, batch)) = unused.pop_front() else {
            break;
        };
        attempts += 1;
        let (mut swarm, peer) = crate::dial_as(&args.to, &me);
        if let Err(error) = established(&mut swarm, peer).await {
            println!(
                "failed identity={identities} at_ms={} error={error}",
                at_ms()
            );
            // A refused connection never showed the supernode who it was.
            unused.push_front((me, batch));
            tokio::time::sleep(Duration::from_millis(args.retry_ms)).await;
            continue;
        }
        let sent = Arc::new(AtomicU64::new(0));
        let (attached_tx, mut attached_rx) = tokio::sync::oneshot::channel();
        let control = swarm.behaviour().new_control();
        let task = tokio::spawn(flood(control, peer, me, batch, sent.clone(), attached_tx));
        let (mut heard, mut attached_at) = (false, None);
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        let closed = loop {
            tokio::select! {
                event = swarm.select_next_some() => {
                    if matches!(event, SwarmEvent::ConnectionClosed { peer_id, .. } if peer_id == peer) {
                        break true;
                    }
                }
                attached = &mut attached_rx, if !heard => {
                    heard = true;
                    if attached.is_ok() {
                        attached_at = Some(Instant::now());
                        println!("attached identity={identities} at_ms={}", at_ms());
                    }
                }
                _ = tick.tick() => {
                    if over() {
                        break false;
                    }
                }
            }
        };
        task.abort();
        let frames = sent.load(Ordering::Relaxed);
        total += frames;
        if closed {
            let after = attached_at.map_or(0, |t| t.elapsed().as_millis());
            println!(
                "closed identity={identities} at_ms={} frames={frames} after_ms={after}",
                at_ms()
            );
        } else {
            println!(
                "stopped identity={identities} at_ms={} frames={frames}",
                at_ms()
            );
        }
        identities += 1;
    }
    println!("done identities={identities} attempts={attempts} frames={total}");
}
