//! What a running node reports about itself: who it is ([`NodeInfo`]) and
//! a status snapshot with the runtime's own facts ([`StatusReport`]). Shared
//! by the handle that asks, the node task that answers, the control API and
//! the metrics that print it, so none of them imports another for it.

use libp2p::PeerId;
use skyhop_core::Status;
use skyhop_protocol::{NodeId, Role};

/// Who a running node is.
#[derive(Clone, Debug)]
pub struct NodeInfo {
    /// Its overlay id.
    pub node_id: NodeId,
    /// Its libp2p peer id.
    pub peer_id: PeerId,
    /// Where it listens (each ending in `/p2p/<peer id>`).
    pub listen_addrs: Vec<String>,
    /// Its role.
    pub role: Role,
}

/// A status snapshot with the runtime's own facts.
#[derive(Clone, Debug)]
pub struct StatusReport {
    /// The core's status.
    pub status: Status,
    /// Who the node is.
    pub info: NodeInfo,
    /// Frames dropped because a neighbor's queue was full.
    pub dropped_frames: u64,
    /// Links closed and connections refused.
    pub abuse: AbuseCounts,
    /// Connected libp2p peers.
    pub connected_peers: usize,
    /// How the node picks its role, and what came of it.
    pub role: RoleReport,
}

/// Auto role as status shows it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RoleReport {
    /// Whether the node picks its role itself (`--role auto`).
    pub auto: bool,
    /// What the dial-back check found: "unknown", "reachable" or
    /// "unreachable".
    pub reachability: &'static str,
    /// Times it promoted itself to supernode.
    pub promotions: u64,
    /// Times it demoted itself to ordinary node.
    pub demotions: u64,
    /// Dial-backs asked for and served.
    pub dial_backs: super::reachability::ReachabilityCounts,
}

/// What the runtime counts of links ending and connections refused (the
/// core counts frames over budget and peers banned).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AbuseCounts {
    /// Links this node closed: the core decided (a peer banned for
    /// flooding or misbehaving, a dead link, a primary left).
    pub links_closed: u64,
    /// Links the peer or the transport ended (a writer timeout included).
    pub links_lost: u64,
    /// Inbound connections refused by the connection limits, the per-IP
    /// cap or a refused address, before the handshake.
    pub connections_refused: u64,
    /// Routed frames from a relay whose body did not decode: dropped, the
    /// link kept (the relay forwarded bytes it cannot check).
    pub bad_bodies_relayed: u64,
}
