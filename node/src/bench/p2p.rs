//! libp2p endpoints for the bench: a minimal skyhop ordinary node that
//! speaks `/skyhop/1` itself (hello, join, publish, then raw frames), and
//! the circuit relay v2 server and clients.
//!
//! # Implementation notes
//! - The skyhop endpoint is a real ordinary node on the wire (PROTOCOL.md's
//!   handshake: `Hello`, `Join`, `Accept`, a signed `Publish`) without the
//!   core behind it, so that the endpoints cost a memcpy per frame and the
//!   supernodes are what is measured. Its PeerId is chosen smaller than its
//!   supernode's, so that it is the side that opens the stream (the runtime's
//!   rule), and no second stream races the first.
//! - Circuit relay: the server announces its listen address as external
//!   (reservations need one), with no byte limit and a long duration; B
//!   reserves a slot, A dials B through the relay, and A opens a stream of
//!   [`BENCH_PROTOCOL`] on that relayed connection.

use std::time::Duration;

use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::multiaddr::Protocol;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{noise, relay, tcp, yamux, Multiaddr, PeerId, Stream, StreamProtocol, Swarm};
use skyhop_protocol::{
    codec, FrameDecoder, Hello, Identity, Join, Message, NodeId, Role, PROTOCOL_VERSION,
};
use tokio::task::JoinHandle;

use super::BenchError;

/// The protocol the circuit-relay endpoints stream frames on.
pub const BENCH_PROTOCOL: StreamProtocol = StreamProtocol::new("/skyhop-bench/1");
/// How long setting up a libp2p path may take.
const SETUP_TIMEOUT: Duration = Duration::from_secs(15);
/// Connections stay open this long without streams.
const IDLE: Duration = Duration::from_secs(3600);

fn transport_err(e: impl std::fmt::Display) -> BenchError {
    BenchError::Setup(format!("libp2p: {e}"))
}

fn tcp_config() -> tcp::Config {
    tcp::Config::default().nodelay(true)
}

/// Where a QUIC party listens: loopback, port chosen by the OS.
pub const QUIC_LOOPBACK: &str = "/ip4/127.0.0.1/udp/0/quic-v1";
/// Where a TCP party listens.
const TCP_LOOPBACK: &str = "/ip4/127.0.0.1/tcp/0";

/// A swarm with only the stream behaviour (TCP + Noise + Yamux, and QUIC).
fn plain_swarm(
    keypair: libp2p::identity::Keypair,
) -> Result<Swarm<libp2p_stream::Behaviour>, BenchError> {
    Ok(libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(tcp_config(), noise::Config::new, yamux::Config::default)
        .map_err(transport_err)?
        .with_quic()
        .with_behaviour(|_| libp2p_stream::Behaviour::new())
        .map_err(transport_err)?
        .with_swarm_config(|c| c.with_idle_connection_timeout(IDLE))
        .build())
}

/// Polls the swarm in the background for as long as the handle lives.
fn drive<B: NetworkBehaviour + Send>(mut swarm: Swarm<B>) -> JoinHandle<()>
where
    B::ToSwarm: Send,
{
    tokio::spawn(async move { while swarm.next().await.is_some() {} })
}

/// The peer id at the end of `addr`.
pub fn peer_of(addr: &Multiaddr) -> Result<PeerId, BenchError> {
    addr.iter()
        .find_map(|p| match p {
            Protocol::P2p(peer) => Some(peer),
            _ => None,
        })
        .ok_or_else(|| BenchError::Setup(format!("{addr} has no /p2p/ peer id")))
}

async fn dial_and_wait<B: NetworkBehaviour>(
    swarm: &mut Swarm<B>,
    addr: Multiaddr,
    peer: PeerId,
) -> Result<(), BenchError> {
    swarm.dial(addr.clone()).map_err(transport_err)?;
    let wait = async {
        loop {
            match swarm.select_next_some().await {
                SwarmEvent::ConnectionEstablished { peer_id, .. } if peer_id == peer => {
                    return Ok(())
                }
                SwarmEvent::OutgoingConnectionError { error, .. } => {
                    return Err(BenchError::Setup(format!("dial {addr}: {error}")))
                }
                _ => {}
            }
        }
    };
    tokio::time::timeout(SETUP_TIMEOUT, wait)
        .await
        .map_err(|_| BenchError::Setup(format!("dial {addr} timed out")))?
}

/// An identity whose PeerId sorts below `than`, from `seed` onwards.
pub fn identity_below(than: PeerId, mut seed: u64) -> Identity {
    loop {
        let mut secret = [0u8; 32];
        secret[..8].copy_from_slice(&seed.to_le_bytes());
        secret[8] = 0x5b;
        let id = Identity::from_secret(secret);
        if id.libp2p_keypair().public().to_peer_id() < than {
            return id;
        }
        seed = seed.wrapping_add(1);
    }
}

/// A swarm polled in the background; dropping this stops it.
pub struct SwarmTask(JoinHandle<()>);

impl Drop for SwarmTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A skyhop ordinary node endpoint attached to a supernode: the open
/// `/skyhop/1` stream, after the handshake and a published location.
pub struct SkyhopEndpoint {
    /// The stream to the supernode.
    pub stream: Stream,
    /// The endpoint's swarm.
    pub swarm: SwarmTask,
}

/// Reads frames until `pick` returns a value (bounded by the setup timeout).
async fn read_until<T>(
    stream: &mut Stream,
    decoder: &mut FrameDecoder,
    mut pick: impl FnMut(Message) -> Option<T>,
) -> Result<T, BenchError> {
    let mut chunk = vec![0u8; 16 * 1024];
    let wait = async {
        loop {
            while let Some(msg) = decoder
                .next_message()
                .map_err(|e| BenchError::Setup(format!("bad frame from the supernode: {e}")))?
            {
                if let Some(t) = pick(msg) {
                    return Ok(t);
                }
            }
            let n = stream
                .read(&mut chunk)
                .await
                .map_err(|e| BenchError::Setup(format!("read: {e}")))?;
            if n == 0 {
                return Err(BenchError::Setup("the supernode closed the stream".into()));
            }
            decoder.push(&chunk[..n]);
        }
    };
    tokio::time::timeout(SETUP_TIMEOUT, wait)
        .await
        .map_err(|_| BenchError::Setup("no answer from the supernode".into()))?
}

/// Attaches `identity` to the supernode at `sn_addr` (ending in `/p2p/`).
pub async fn skyhop_attach(
    identity: &Identity,
    sn_addr: &Multiaddr,
) -> Result<SkyhopEndpoint, BenchError> {
    let sn_peer = peer_of(sn_addr)?;
    let sn_id = NodeId::from_peer_id(&sn_peer);
    let mut swarm = plain_swarm(identity.libp2p_keypair())?;
    let mut control = swarm.behaviour().new_control();
    dial_and_wait(&mut swarm, sn_addr.clone(), sn_peer).await?;
    let task = drive(swarm);
    let mut stream = tokio::time::timeout(
        SETUP_TIMEOUT,
        control.open_stream(sn_peer, crate::runtime::node_task::PROTOCOL),
    )
    .await
    .map_err(|_| BenchError::Setup("opening /skyhop/1 timed out".into()))?
    .map_err(transport_err)?;
    let mut out = Vec::new();
    let hello = Message::Hello(Hello {
        version: PROTOCOL_VERSION,
        role: Role::Ordinary,
        id: identity.id(),
        listen_addrs: Vec::new(),
        agent: "skyhop-bench".into(),
    });
    let join = Message::Join(Join { request_id: 1 });
    for m in [&hello, &join] {
        codec::encode_into(m, &mut out).map_err(|e| BenchError::Setup(e.to_string()))?;
    }
    write(&mut stream, &out).await?;
    let mut decoder = FrameDecoder::new();
    read_until(&mut stream, &mut decoder, |m| match m {
        Message::Accept(_) => Some(Ok(())),
        Message::Redirect(_) => Some(Err(BenchError::Setup("the supernode redirected".into()))),
        _ => None,
    })
    .await??;
    let record = identity.location_record(sn_id, vec![sn_addr.to_string()], 1, 600);
    out.clear();
    codec::encode_into(&Message::Publish(record), &mut out)
        .map_err(|e| BenchError::Setup(e.to_string()))?;
    write(&mut stream, &out).await?;
    Ok(SkyhopEndpoint {
        stream,
        swarm: SwarmTask(task),
    })
}

async fn write(stream: &mut Stream, bytes: &[u8]) -> Result<(), BenchError> {
    stream
        .write_all(bytes)
        .await
        .map_err(|e| BenchError::Setup(format!("write: {e}")))?;
    stream
        .flush()
        .await
        .map_err(|e| BenchError::Setup(format!("flush: {e}")))
}

// ----- circuit relay v2 -----

/// The relay server, listening on QUIC if `quic` (else TCP): runs until
/// `stop` resolves. Prints nothing itself; returns its address through
/// `ready`.
pub async fn circuit_relay_server(
    ready: tokio::sync::oneshot::Sender<Multiaddr>,
    quic: bool,
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), BenchError> {
    let mut swarm = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(tcp_config(), noise::Config::new, yamux::Config::default)
        .map_err(transport_err)?
        .with_quic()
        .with_behaviour(|key| {
            let cfg = relay::Config {
                max_circuit_bytes: 0,
                max_circuit_duration: Duration::from_secs(24 * 3600),
                max_circuits: 64,
                max_circuits_per_peer: 16,
                ..relay::Config::default()
            };
            relay::Behaviour::new(key.public().to_peer_id(), cfg)
        })
        .map_err(transport_err)?
        .with_swarm_config(|c| c.with_idle_connection_timeout(IDLE))
        .build();
    let listen: Multiaddr = if quic { QUIC_LOOPBACK } else { TCP_LOOPBACK }
        .parse()
        .expect("valid multiaddr");
    swarm.listen_on(listen).map_err(transport_err)?;
    let addr = loop {
        if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
            break address;
        }
    };
    swarm.add_external_address(addr.clone());
    let peer = *swarm.local_peer_id();
    let _ = ready.send(addr.with(Protocol::P2p(peer)));
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => return Ok(()),
            ev = swarm.select_next_some() => {
                if let SwarmEvent::Behaviour(e) = ev {
                    tracing::debug!("relay: {e:?}");
                }
            }
        }
    }
}

#[derive(NetworkBehaviour)]
struct RelayClient {
    relay: relay::client::Behaviour,
    stream: libp2p_stream::Behaviour,
}

fn relay_client_swarm() -> Result<Swarm<RelayClient>, BenchError> {
    Ok(libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(tcp_config(), noise::Config::new, yamux::Config::default)
        .map_err(transport_err)?
        .with_quic()
        .with_relay_client(noise::Config::new, yamux::Config::default)
        .map_err(transport_err)?
        .with_behaviour(|_, relay| RelayClient {
            relay,
            stream: libp2p_stream::Behaviour::new(),
        })
        .map_err(transport_err)?
        .with_swarm_config(|c| c.with_idle_connection_timeout(IDLE))
        .build())
}

/// A's end of a circuit-relay path, with both swarms running.
pub struct CircuitPath {
    /// A's stream over the relayed connection.
    pub a: Stream,
    /// B's end of the stream, once A's first bytes have reached it.
    pub b: tokio::sync::oneshot::Receiver<Stream>,
    /// Both swarms and B's acceptor.
    pub tasks: Vec<SwarmTask>,
}

/// Builds A -> relay -> B: B reserves a slot at `relay_addr`, A dials B
/// through it and opens a [`BENCH_PROTOCOL`] stream.
pub async fn circuit_pair(relay_addr: &Multiaddr) -> Result<CircuitPath, BenchError> {
    // B: listen through the relay and wait for the reservation.
    let mut b = relay_client_swarm()?;
    let b_peer = *b.local_peer_id();
    let mut incoming = b
        .behaviour()
        .stream
        .new_control()
        .accept(BENCH_PROTOCOL)
        .map_err(transport_err)?;
    let circuit = relay_addr.clone().with(Protocol::P2pCircuit);
    b.listen_on(circuit.clone()).map_err(transport_err)?;
    let reserved = async {
        loop {
            match b.select_next_some().await {
                SwarmEvent::Behaviour(RelayClientEvent::Relay(
                    relay::client::Event::ReservationReqAccepted { .. },
                )) => return Ok(()),
                SwarmEvent::ListenerClosed { reason, .. } => {
                    return Err(BenchError::Setup(format!(
                        "relay listener closed: {reason:?}"
                    )))
                }
                _ => {}
            }
        }
    };
    tokio::time::timeout(SETUP_TIMEOUT, reserved)
        .await
        .map_err(|_| BenchError::Setup("no circuit relay reservation in time".into()))??;
    let b_task = drive(b);
    let (b_tx, b_rx) = tokio::sync::oneshot::channel();
    let accept = tokio::spawn(async move {
        if let Some((_, s)) = incoming.next().await {
            let _ = b_tx.send(s);
        }
    });
    // A: dial B through the relay.
    let mut a = relay_client_swarm()?;
    let mut a_control = a.behaviour().stream.new_control();
    let target = circuit.with(Protocol::P2p(b_peer));
    dial_and_wait(&mut a, target, b_peer).await?;
    let a_task = drive(a);
    let a_stream =
        tokio::time::timeout(SETUP_TIMEOUT, a_control.open_stream(b_peer, BENCH_PROTOCOL))
            .await
            .map_err(|_| BenchError::Setup("opening the relayed stream timed out".into()))?
            .map_err(transport_err)?;
    Ok(CircuitPath {
        a: a_stream,
        b: b_rx,
        tasks: vec![SwarmTask(a_task), SwarmTask(b_task), SwarmTask(accept)],
    })
}
