//! [`drive`]: feeds a [`Node`] an arbitrary sequence of inputs — links up
//! and down, messages from peers, time passing, dials failing, the
//! application's chats and traces — read from a byte string, and checks
//! after each that the node neither panicked nor outgrew its bounds. The
//! fuzz target in `node/core/fuzz/` and the seeded test below call it.
//!
//! # Implementation notes
//! - Messages are built from the bytes field by field (so that most inputs
//!   are messages the node must think about, not decode errors), then
//!   round-tripped through the codec: the node only ever sees what the
//!   wire can deliver. A raw-bytes op feeds the decoder's output directly.
//! - A few fixed identities play the peers, so that signatures verify as
//!   often as they fail; ids are also drawn from bytes, so that most of
//!   the id space is strangers.
//! - Caps are set small, so that every table fills and evicts within a
//!   short input.

use std::sync::Arc;

use skyhop_protocol::{
    codec, Accept, Body, FindNeighbors, Heartbeat, HeartbeatAck, Hello, Identity, Join,
    LocationHop, Message, MsgId, Neighbors, NodeId, NotFoundReason, Packet, PeerInfo, Redirect,
    Role, StaleLocation, Trace, Withdraw, WithdrawReason, PROTOCOL_VERSION,
};

use super::{Node, NodeConfig, Output, SimTime, MILLIS};

/// Peers the input can speak as.
const PEERS: usize = 6;
/// Inputs read from one byte string at most.
const MAX_OPS: usize = 4096;

/// Reads numbers from the input, zeros once it runs out.
struct Bytes<'a> {
    data: &'a [u8],
}

impl Bytes<'_> {
    fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((b, rest)) => {
                self.data = rest;
                *b
            }
            None => 0,
        }
    }

    /// True once in `n` byte values.
    fn one_in(&mut self, n: u8) -> bool {
        self.u8().is_multiple_of(n)
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(std::array::from_fn(|_| self.u8()))
    }

    fn take(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.data.len());
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        head
    }

    fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

/// The secret key of the node under test.
const NODE_SECRET: [u8; 32] = [0xee; 32];

/// The cast: the node under test and the peers that talk to it.
struct World {
    node: Node,
    peers: Vec<Identity>,
    now: SimTime,
}

impl World {
    fn peer(&self, b: u8) -> &Identity {
        &self.peers[usize::from(b) % PEERS]
    }

    /// A node id: one of the peers or the node itself half of the time, a
    /// stranger otherwise.
    fn id(&self, r: &mut Bytes<'_>) -> NodeId {
        let b = r.u8();
        match b % 8 {
            0..=2 => self.peer(b / 8).id(),
            3 => self.node.id(),
            _ => NodeId([b; 32]),
        }
    }

    fn peer_infos(&self, r: &mut Bytes<'_>) -> Vec<PeerInfo> {
        (0..r.u8() % 5)
            .map(|i| PeerInfo {
                id: self.id(r),
                addrs: vec![format!("/ip4/127.0.0.1/tcp/{}", 4000 + u16::from(i))],
            })
            .collect()
    }

    fn record(&self, r: &mut Bytes<'_>) -> skyhop_protocol::LocationRecord {
        let author = self.peer(r.u8());
        let sn = self.id(r);
        let mut record = author.location_record(sn, vec![], r.u64() % 1000, u32::from(r.u8()));
        if r.one_in(8) {
            record.node = self.id(r); // A forgery.
        }
        record
    }

    fn body(&self, r: &mut Bytes<'_>) -> Body {
        match r.u8() % 13 {
            0 => {
                let author = self.peer(r.u8());
                let to = self.id(r);
                let n = r.u64() % 64;
                let text = "x".repeat(usize::from(r.u8()));
                let chat = author
                    .chat(to, MsgId(n), n, self.now, text)
                    .expect("a short body");
                // Sealed to the node under test (so that it opens), or to
                // a peer, or damaged.
                let key = if r.one_in(2) {
                    Identity::from_secret(NODE_SECRET).chat_key()
                } else {
                    self.peer(r.u8()).chat_key()
                };
                let mut sealed =
                    skyhop_protocol::seal::seal(&chat, &key, [r.u8(); 32]).expect("a valid key");
                if r.one_in(8) {
                    let i = usize::from(r.u8()) % sealed.0.len();
                    sealed.0[i] ^= 1;
                }
                Body::Chat(sealed)
            }
            1 => {
                let recipient = self.peer(r.u8());
                let author = self.id(r);
                Body::ChatAck(recipient.receipt(author, MsgId(r.u64() % 64), r.u64() % 64, r.u8()))
            }
            2 => {
                let by = self.peer(r.u8());
                let (about, node) = (r.u64() % 64, self.id(r));
                Body::NotFound(by.absence(about, node, NotFoundReason::NoRecord))
            }
            3 => Body::TraceProbe {
                probe_id: r.u64() % 64,
            },
            4 => Body::TraceReply {
                probe_id: r.u64() % 64,
                path: vec![self.id(r)],
            },
            5 => Body::Publish(self.record(r)),
            6 => {
                if r.one_in(2) {
                    let sn = self.peer(r.u8());
                    let mut w = sn.withdraw_lost(self.id(r), r.u64() % 1000);
                    if r.one_in(4) {
                        w.sn = self.id(r); // A forgery.
                    }
                    Body::Withdraw(w)
                } else {
                    let who = self.peer(r.u8());
                    Body::Withdraw(Withdraw {
                        node: self.id(r),
                        sn: self.id(r),
                        seq: r.u64() % 1000,
                        reason: WithdrawReason::Left(who.leave(self.id(r), r.u64() % 1000)),
                    })
                }
            }
            7 => Body::LocationQuery {
                request_id: r.u64() % 64,
                node: self.id(r),
            },
            8 => Body::LocationReply {
                request_id: r.u64() % 64,
                node: self.id(r),
                record: (r.one_in(2)).then(|| self.record(r)),
                absence: None,
            },
            10 | 11 => {
                // Claims of a few names by a few keys, some forged.
                let name = ["alice", "bob", "carol"][usize::from(r.u8()) % 3].to_string();
                let mut claim = self
                    .peer(r.u8())
                    .name_claim(name.clone(), r.u64() % 8, 3600);
                if r.one_in(4) {
                    claim.node = self.id(r); // A forgery.
                }
                let request_id = r.u64() % 64;
                if r.one_in(2) {
                    Body::NameClaim { request_id, claim }
                } else {
                    Body::NameReply {
                        request_id,
                        name,
                        claim: Some(claim),
                    }
                }
            }
            12 => Body::NameQuery {
                request_id: r.u64() % 64,
                name: "alice".to_string(),
            },
            _ => Body::Datagram(r.take(64).to_vec()),
        }
    }

    fn message(&self, from: &Identity, r: &mut Bytes<'_>) -> Message {
        match r.u8() % 13 {
            0 => Message::Hello(Hello {
                version: PROTOCOL_VERSION,
                role: if r.one_in(2) {
                    Role::Supernode
                } else {
                    Role::Ordinary
                },
                id: if r.one_in(8) { self.id(r) } else { from.id() },
                listen_addrs: vec!["/ip4/127.0.0.1/tcp/4000".into()],
                agent: "fuzz".into(),
            }),
            1 => Message::Join(Join {
                request_id: r.u64() % 64,
            }),
            2 => Message::Accept(Accept {
                request_id: r.u64() % 64,
                clients: r.u16(),
                max_clients: r.u16(),
                supernodes: self.peer_infos(r),
            }),
            3 => Message::Redirect(Redirect {
                request_id: r.u64() % 64,
                supernodes: self.peer_infos(r),
            }),
            4 => Message::Leave(from.leave(self.id(r), r.u64() % 1000)),
            5 => Message::Heartbeat(Heartbeat { nonce: r.u64() }),
            6 => Message::HeartbeatAck(HeartbeatAck {
                nonce: r.u64() % 64,
                clients: r.u16(),
            }),
            7 => Message::FindNeighbors(FindNeighbors {
                request_id: r.u64(),
                target: self.id(r),
            }),
            8 => Message::Neighbors(Neighbors {
                request_id: r.u64() % 64,
                peers: self.peer_infos(r),
            }),
            9 => Message::Publish(self.record(r)),
            10 => Message::StaleLocation(StaleLocation { node: self.id(r) }),
            _ => Message::Routed(Packet {
                dst: self.id(r),
                src: if r.one_in(4) { self.id(r) } else { from.id() },
                id: MsgId(r.u64() % 256),
                ttl: r.u8(),
                hops: r.u8() % 40,
                location: match r.u8() % 3 {
                    0 => LocationHop::Unused,
                    1 => LocationHop::Toward(self.id(r)),
                    _ => LocationHop::Used,
                },
                trace: (r.one_in(4)).then(|| Trace(vec![from.id()])),
                body: self.body(r),
            }),
        }
    }

    /// Drains the node's outputs, answering nothing (the peers are the
    /// input's to play); a dial is left in flight for the input to fail.
    fn drain(&mut self) {
        // The output queues are bounded, so this ends; the bound here makes
        // a bug in that bound a failure rather than a hang.
        for _ in 0..1 << 20 {
            match self.node.poll_output() {
                Some(Output::Event(_) | Output::Transmit(_) | Output::Action(_)) => {}
                None => return,
            }
        }
        panic!("the node produced over a million outputs for one input");
    }

    /// Checks what a user would notice if a bound broke.
    fn check_bounds(&self) {
        let s = self.node.status();
        let cfg = self.node.config();
        assert!(s.links.len() <= PEERS, "{} links", s.links.len());
        assert!(
            s.host_cache <= cfg.host_cache_size,
            "host cache {}",
            s.host_cache
        );
        assert!(s.records <= cfg.max_records, "records {}", s.records);
        assert!(
            s.cached_locations <= cfg.location_cache_size,
            "location cache {}",
            s.cached_locations
        );
        assert!(
            s.pending_chats <= cfg.max_pending_chats,
            "chats {}",
            s.pending_chats
        );
        assert!(
            s.clients.len() <= cfg.max_clients,
            "clients {}",
            s.clients.len()
        );
    }
}

/// A configuration with small caps, as a supernode or an ordinary node.
fn config(supernode: bool) -> NodeConfig {
    NodeConfig {
        max_clients: 3,
        host_cache_size: 4,
        max_records: 8,
        location_cache_size: 4,
        dedup_window: 16,
        max_pending_chats: 4,
        ..if supernode {
            NodeConfig::supernode()
        } else {
            NodeConfig::default()
        }
    }
}

/// Runs the inputs `data` describes against a fresh node. Panics if the
/// node panics or outgrows a bound.
pub fn drive(data: &[u8]) {
    let mut r = Bytes { data };
    let supernode = r.one_in(2);
    let node = Node::new(
        config(supernode),
        Identity::from_secret(NODE_SECRET),
        r.u64(),
        0,
        Arc::default(),
    )
    .expect("the fuzz configuration is valid");
    let peers = (1..=PEERS as u8)
        .map(|i| Identity::from_secret([i; 32]))
        .collect();
    let mut w = World {
        node,
        peers,
        now: 0,
    };
    for _ in 0..MAX_OPS {
        if r.is_empty() {
            break;
        }
        let op = r.u8();
        let peer_byte = r.u8();
        let peer = w.peer(peer_byte).id();
        match op % 9 {
            0 => w.node.handle_link_up(w.now, peer),
            1 => w.node.handle_link_down(w.now, peer),
            2..=4 => {
                let from = w.peer(peer_byte).clone();
                let msg = w.message(&from, &mut r);
                // Only what the wire can deliver.
                let frame = codec::encode(&msg).expect("the fuzz builds encodable messages");
                if let Ok(msg) = codec::decode_frame(&frame) {
                    w.node.handle_message(w.now, peer, msg);
                }
            }
            5 => {
                let len = usize::from(r.u8());
                if let Ok(msg) = codec::decode_body(r.take(len)) {
                    w.node.handle_message(w.now, peer, msg);
                }
            }
            6 => {
                w.now += u64::from(r.u16()) * MILLIS;
                if w.node.poll_timeout().is_some_and(|t| t <= w.now) {
                    w.node.handle_timeout(w.now);
                }
            }
            7 => w.node.handle_dial_failed(w.now, Some(peer), &[]),
            _ => {
                let to = w.id(&mut r);
                if r.one_in(2) {
                    let _ = w.node.send_chat(w.now, to, "hi".into());
                } else {
                    let _ = w.node.trace(w.now, to);
                }
            }
        }
        w.drain();
        w.check_bounds();
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::Xoshiro256PlusPlus;
    use rand::{Rng, RngExt, SeedableRng};

    /// The stable-Rust counterpart of the fuzz target: seeded random
    /// inputs, so that every `cargo test` runs a thousand sequences.
    #[test]
    fn random_input_sequences_neither_panic_nor_outgrow_a_bound() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(12);
        for _ in 0..1000 {
            let len = rng.random_range(0..4096);
            let mut data = vec![0u8; len];
            rng.fill_bytes(&mut data);
            super::drive(&data);
        }
    }
}
