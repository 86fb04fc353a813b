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
//! - Speed (executions per second is what finds bugs): the identities are
//!   made once per process ([`cast`]), and what the input asks a peer to
//!   sign is remembered by the input's parameters ([`signed`]), since
//!   deriving keys and signing were two thirds of a run. Signing is
//!   deterministic, so a remembered statement is the bytes signing again
//!   would give: the node sees exactly what it saw before. What the node
//!   itself verifies is not remembered across runs (each run's node has
//!   its own signature memo), and a run reads at most [`MAX_OPS`] inputs.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use skyhop_protocol::{
    codec, Absence, Accept, Body, ChatKey, ChatReceipt, FindNeighbors, Heartbeat, HeartbeatAck,
    Hello, Identity, Join, Leave, Listed, ListedPeer, Listing, LocationHop, LocationRecord,
    Message, MsgId, NameClaim, Neighbors, NodeId, NotFoundReason, Packet, PeerInfo, Redirect, Role,
    SealedChat, StaleLocation, Trace, WhoQuery, Withdraw, WithdrawReason, PROTOCOL_VERSION,
};

use super::{MailboxConfig, Node, NodeConfig, Output, SimTime, MILLIS};

/// Peers the input can speak as.
const PEERS: usize = 6;
/// Inputs read from one byte string at most: enough to fill and evict
/// every table of [`config`] many times over, few enough that one run
/// stays cheap whatever `-max_len` the fuzzer is given.
pub const MAX_OPS: usize = 256;
/// Signed statements [`signed`] remembers before it starts over.
const MAX_SIGNED: usize = 1 << 14;

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

/// The identities: the node under test and the peers that talk to it.
struct Cast {
    node: Identity,
    node_chat_key: ChatKey,
    peers: Vec<Identity>,
}

/// The cast, made once per process (a key pair costs two scalar
/// multiplications; seven per run were a third of a run's time).
fn cast() -> &'static Cast {
    static CAST: OnceLock<Cast> = OnceLock::new();
    CAST.get_or_init(|| {
        let node = Identity::from_secret(NODE_SECRET);
        Cast {
            node_chat_key: node.chat_key(),
            node,
            peers: (1..=PEERS as u8)
                .map(|i| Identity::from_secret([i; 32]))
                .collect(),
        }
    })
}

/// A statement a peer signed for the input.
#[derive(Clone)]
enum Signed {
    Sealed(SealedChat),
    Receipt(ChatReceipt),
    Absence(Absence),
    Record(LocationRecord),
    Withdraw(Withdraw),
    Leave(Leave),
    Claim(NameClaim),
}

thread_local! {
    static SIGNED: RefCell<HashMap<[u64; 8], Signed>> = RefCell::new(HashMap::new());
}

/// The statement `make` signs, remembered by `ask` (a kind tag, then every
/// input value `make` reads): the same ask always gets the same bytes.
/// Bounded by [`MAX_SIGNED`], forgotten all at once.
fn signed(ask: [u64; 8], make: impl FnOnce() -> Signed) -> Signed {
    SIGNED.with_borrow_mut(|memo| {
        if memo.len() >= MAX_SIGNED {
            memo.clear();
        }
        memo.entry(ask).or_insert_with(make).clone()
    })
}

/// The kinds of [`Signed`], the first word of an ask.
mod ask {
    pub const CHAT: u64 = 0;
    pub const RECEIPT: u64 = 1;
    pub const ABSENCE: u64 = 2;
    pub const RECORD: u64 = 3;
    pub const LOST: u64 = 4;
    pub const LEAVE: u64 = 5;
    pub const CLAIM: u64 = 6;
}

/// Every reason a `NotFound` or a location reply's absence can give.
const REASONS: [NotFoundReason; 5] = [
    NotFoundReason::NoRecord,
    NotFoundReason::Offline,
    NotFoundReason::TtlExpired,
    NotFoundReason::NoRoute,
    NotFoundReason::Unreachable,
];

/// The node under test and the time.
struct World {
    node: Node,
    cast: &'static Cast,
    now: SimTime,
}

impl World {
    fn peer(&self, b: u8) -> &'static Identity {
        &self.cast.peers[usize::from(b) % PEERS]
    }

    /// A node id: one of the peers or the node itself half of the time, a
    /// stranger otherwise.
    fn id(&self, r: &mut Bytes<'_>) -> NodeId {
        self.id_of(r.u8())
    }

    /// The id [`World::id`] reads for byte `b` (what an ask remembers).
    fn id_of(&self, b: u8) -> NodeId {
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

    fn record(&self, r: &mut Bytes<'_>) -> LocationRecord {
        let (author, sn, seq, lifetime) = (r.u8(), r.u8(), r.u64() % 1000, r.u8());
        let ask = [
            ask::RECORD,
            author.into(),
            sn.into(),
            seq,
            lifetime.into(),
            0,
            0,
            0,
        ];
        let Signed::Record(mut record) = signed(ask, || {
            Signed::Record(self.peer(author).location_record(
                self.id_of(sn),
                vec![],
                seq,
                lifetime.into(),
            ))
        }) else {
            unreachable!("an ask's kind names its statement")
        };
        if r.one_in(8) {
            record.node = self.id(r); // A forgery.
        }
        record
    }

    fn body(&self, r: &mut Bytes<'_>) -> Body {
        match r.u8() % 15 {
            0 => {
                let (author, to, n, len) = (r.u8(), r.u8(), r.u64() % 64, r.u8());
                // Sealed to the node under test (so that it opens), or to
                // a peer, or damaged.
                let sealed_to = if r.one_in(2) { None } else { Some(r.u8()) };
                let ephemeral = r.u8();
                let ask = [
                    ask::CHAT,
                    author.into(),
                    to.into(),
                    n,
                    len.into(),
                    self.now,
                    sealed_to.map_or(u64::MAX, u64::from),
                    ephemeral.into(),
                ];
                let Signed::Sealed(mut sealed) = signed(ask, || {
                    let chat = self
                        .peer(author)
                        .chat(
                            self.id_of(to),
                            MsgId(n),
                            n,
                            self.now,
                            "x".repeat(len.into()),
                        )
                        .expect("a short body");
                    let key =
                        sealed_to.map_or(self.cast.node_chat_key, |b| self.peer(b).chat_key());
                    Signed::Sealed(
                        skyhop_protocol::seal::seal(&chat, &key, [ephemeral; 32])
                            .expect("a valid key"),
                    )
                }) else {
                    unreachable!("an ask's kind names its statement")
                };
                if r.one_in(8) {
                    let i = usize::from(r.u8()) % sealed.0.len();
                    sealed.0[i] ^= 1;
                }
                Body::Chat(sealed)
            }
            1 => Body::ChatAck(self.receipt(r)),
            2 => Body::NotFound(self.absence(r)),
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
                    let (sn, node, seq) = (r.u8(), r.u8(), r.u64() % 1000);
                    let ask = [ask::LOST, sn.into(), node.into(), seq, 0, 0, 0, 0];
                    let Signed::Withdraw(mut w) = signed(ask, || {
                        Signed::Withdraw(self.peer(sn).withdraw_lost(self.id_of(node), seq))
                    }) else {
                        unreachable!("an ask's kind names its statement")
                    };
                    if r.one_in(4) {
                        w.sn = self.id(r); // A forgery.
                    }
                    Body::Withdraw(w)
                } else {
                    let who = r.u8();
                    let (node, sn, seq) = (self.id(r), self.id(r), r.u64() % 1000);
                    let leave = self.leave(who, r);
                    Body::Withdraw(Withdraw {
                        node,
                        sn,
                        seq,
                        reason: WithdrawReason::Left(leave),
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
                absence: r.one_in(2).then(|| Box::new(self.absence(r))),
            },
            10 | 11 => {
                // Claims of a few names by a few keys, some forged.
                let claimant = r.u8();
                let claim = self.claim(claimant, r);
                let name = claim.name.clone();
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
            // Kept for, and handed over to, the chat's author (some
            // authors are the node under test).
            13 => Body::ReceiptStore(self.receipt(r)),
            14 => Body::ReceiptHandOver(self.receipt(r)),
            _ => Body::Datagram(r.take(64).to_vec()),
        }
    }

    /// A receipt a peer signs for a chat of an author the input names;
    /// one in eight altered after signing (a forgery).
    fn receipt(&self, r: &mut Bytes<'_>) -> ChatReceipt {
        let (recipient, author) = (r.u8(), r.u8());
        let (msg_id, seq, hops) = (r.u64() % 64, r.u64() % 64, r.u8());
        let ask = [
            ask::RECEIPT,
            recipient.into(),
            author.into(),
            msg_id,
            seq,
            hops.into(),
            0,
            0,
        ];
        let Signed::Receipt(mut receipt) = signed(ask, || {
            Signed::Receipt(self.peer(recipient).receipt(
                self.id_of(author),
                MsgId(msg_id),
                seq,
                hops,
            ))
        }) else {
            unreachable!("an ask's kind names its statement")
        };
        if r.one_in(8) {
            receipt.seq += 1; // A forgery.
        }
        receipt
    }

    /// A peer's signed word that a node could not be reached, for any of
    /// the [`REASONS`].
    fn absence(&self, r: &mut Bytes<'_>) -> Absence {
        let (by, about, node, reason) = (r.u8(), r.u64() % 64, r.u8(), r.u8());
        let reason = REASONS[usize::from(reason) % REASONS.len()];
        let ask = [
            ask::ABSENCE,
            by.into(),
            about,
            node.into(),
            reason as u64,
            0,
            0,
            0,
        ];
        let Signed::Absence(absence) = signed(ask, || {
            Signed::Absence(self.peer(by).absence(about, self.id_of(node), reason))
        }) else {
            unreachable!("an ask's kind names its statement")
        };
        absence
    }

    /// Peer `who`'s claim to one of a few names; one in four names another
    /// node (a forgery).
    fn claim(&self, who: u8, r: &mut Bytes<'_>) -> NameClaim {
        let (name, seq) = (r.u8() % 3, r.u64() % 8);
        let ask = [ask::CLAIM, who.into(), name.into(), seq, 0, 0, 0, 0];
        let Signed::Claim(mut claim) = signed(ask, || {
            let name = ["alice", "bob", "carol"][usize::from(name)].to_string();
            Signed::Claim(self.peer(who).name_claim(name, seq, 3600))
        }) else {
            unreachable!("an ask's kind names its statement")
        };
        if r.one_in(4) {
            claim.node = self.id(r); // A forgery.
        }
        claim
    }

    /// The leave peer `who` signs from a supernode the input names.
    fn leave(&self, who: u8, r: &mut Bytes<'_>) -> Leave {
        let (sn, seq) = (r.u8(), r.u64() % 1000);
        let ask = [ask::LEAVE, who.into(), sn.into(), seq, 0, 0, 0, 0];
        let Signed::Leave(leave) = signed(ask, || {
            Signed::Leave(self.peer(who).leave(self.id_of(sn), seq))
        }) else {
            unreachable!("an ask's kind names its statement")
        };
        leave
    }

    fn message(&self, from: u8, r: &mut Bytes<'_>) -> Message {
        let from_id = self.peer(from).id();
        match r.u8() % 16 {
            0 => Message::Hello(Hello {
                version: PROTOCOL_VERSION,
                role: if r.one_in(2) {
                    Role::Supernode
                } else {
                    Role::Ordinary
                },
                id: if r.one_in(8) { self.id(r) } else { from_id },
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
            4 => Message::Leave(self.leave(from, r)),
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
            // A client's own claim most of the time, another's sometimes.
            11 => Message::Listed(Listed {
                listed: r.one_in(2),
                claim: r.one_in(2).then(|| {
                    let who = if r.one_in(4) { r.u8() } else { from };
                    self.claim(who, r)
                }),
            }),
            12 => Message::WhoQuery(WhoQuery {
                request_id: r.u64(),
            }),
            13 => Message::Listing(Listing {
                request_id: r.u64() % 64,
                peers: (0..r.u8() % 4)
                    .map(|_| ListedPeer {
                        node: self.id(r),
                        name: r.one_in(2).then(|| "alice".to_string()),
                    })
                    .collect(),
            }),
            _ => Message::Routed(Packet {
                dst: self.id(r),
                src: if r.one_in(4) { self.id(r) } else { from_id },
                id: MsgId(r.u64() % 256),
                ttl: r.u8(),
                hops: r.u8() % 40,
                location: match r.u8() % 3 {
                    0 => LocationHop::Unused,
                    1 => LocationHop::Toward(self.id(r)),
                    _ => LocationHop::Used,
                },
                trace: (r.one_in(4)).then(|| Trace(vec![from_id])),
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
        // Only attached clients are listed.
        assert!(
            self.node.listed_count() <= s.clients.len(),
            "{} listed, {} clients",
            self.node.listed_count(),
            s.clients.len()
        );
        assert!(
            s.mailbox_chats <= cfg.mailbox.max_chats,
            "mailbox chats {}",
            s.mailbox_chats
        );
        assert!(
            s.mailbox_bytes <= cfg.mailbox.max_bytes,
            "mailbox bytes {}",
            s.mailbox_bytes
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
        mailbox: MailboxConfig {
            max_bytes: 2 * 4_608,
            max_chats: 4,
            per_recipient_bytes: 4_608,
            per_recipient_chats: 2,
            awaiting: 2,
            ..MailboxConfig::default()
        },
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
    drive_seeing(data, |_| {});
}

/// [`drive`], showing `seen` each message before the node is handed it
/// (what the tests count kinds by).
fn drive_seeing(data: &[u8], mut seen: impl FnMut(&Message)) {
    let mut r = Bytes { data };
    let supernode = r.one_in(2);
    let cast = cast();
    let node = Node::new(
        config(supernode),
        cast.node.clone(),
        r.u64(),
        0,
        Arc::default(),
    )
    .expect("the fuzz configuration is valid");
    let mut w = World { node, cast, now: 0 };
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
                let msg = w.message(peer_byte, &mut r);
                // Only what the wire can deliver.
                let frame = codec::encode(&msg).expect("the fuzz builds encodable messages");
                if let Ok(msg) = codec::decode_frame(&frame) {
                    seen(&msg);
                    w.node.handle_message(w.now, peer, msg);
                }
            }
            5 => {
                let len = usize::from(r.u8());
                if let Ok(msg) = codec::decode_body(r.take(len)) {
                    seen(&msg);
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
mod tests;
