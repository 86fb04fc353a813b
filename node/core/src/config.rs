//! A node's tunables, with the defaults DESIGN.md gives and their checks.

use serde::{Deserialize, Serialize};
use skyhop_protocol::{NodeId, Role, MAX_RECORD_LIFETIME_S};

use super::{SimTime, MILLIS, SECS};

/// A node to contact first: by id (the simulator), by address (the real
/// runtime), or both.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootstrapPeer {
    /// The node's id, when known.
    pub id: Option<NodeId>,
    /// Addresses to dial.
    pub addrs: Vec<String>,
}

/// Everything a [`super::Node`] can be tuned by. Times are in microseconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// Supernode or ordinary node.
    pub role: Role,
    /// Ordinary nodes a supernode serves before it redirects (Skype: several hundred).
    pub max_clients: usize,
    /// Where this node listens, as advertised to others.
    pub listen_addrs: Vec<String>,
    /// Nodes to contact when the host cache is empty or exhausted.
    pub bootstrap: Vec<BootstrapPeer>,
    /// Entries per k-bucket.
    pub bucket_size: usize,
    /// Supernodes kept in the leaf set (the closest known).
    pub leaf_set_size: usize,
    /// Home supernodes that store each location record.
    pub replicas: usize,
    /// Backup supernodes an ordinary node keeps linked besides its primary.
    pub backups: usize,
    /// Supernodes kept in the host cache (Skype kept 200).
    pub host_cache_size: usize,
    /// Interval of heartbeats on idle links.
    pub heartbeat_interval: SimTime,
    /// Interval of heartbeats on idle links between two supernodes (checked
    /// at `heartbeat_interval` ticks). Clients keep `heartbeat_interval`, so
    /// they still notice a dead supernode fast; a longer value here saves
    /// maintenance traffic where supernode links are many (flat mode) at
    /// the price of slower routing around a dead supernode.
    pub supernode_heartbeat_interval: SimTime,
    /// Heartbeat intervals of silence after which a link is dead.
    pub dead_after_missed: u32,
    /// How long a location record lives at a home supernode after arrival.
    pub record_lifetime_s: u32,
    /// How often a supernode republishes its clients' records.
    pub record_refresh: SimTime,
    /// How long a location-cache entry is trusted.
    pub location_cache_ttl: SimTime,
    /// Location-cache entries kept.
    pub location_cache_size: usize,
    /// How long a supernode holds a client's packet to an unknown location
    /// while it looks the location up, so that the packet can go straight to
    /// the recipient's supernode (Skype's search-then-connect); 0 forwards at
    /// once toward the home supernodes instead.
    pub lookup_hold: SimTime,
    /// Records a home supernode keeps at most.
    pub max_records: usize,
    /// Packet ids remembered against duplicates.
    pub dedup_window: usize,
    /// Give up on a chat message this long after it was sent.
    pub chat_deadline: SimTime,
    /// First retry delay of a chat message; doubles up to `chat_retry_max`.
    pub chat_retry_initial: SimTime,
    /// Longest retry delay of a chat message.
    pub chat_retry_max: SimTime,
    /// Chat messages awaiting an ack at most.
    pub max_pending_chats: usize,
    /// First delay before retrying to attach; doubles, with jitter, up to
    /// `attach_backoff_max`.
    pub attach_backoff_initial: SimTime,
    /// Longest delay between attach attempts.
    pub attach_backoff_max: SimTime,
    /// How long to wait for an `Accept` or a dial before trying elsewhere.
    pub join_timeout: SimTime,
    /// How often a supernode looks up random ids to keep its buckets full.
    pub table_refresh: SimTime,
    /// Dials in flight at most.
    pub max_pending_dials: usize,
    /// Time-to-live given to packets this node originates.
    pub ttl: u8,
}

impl Default for NodeConfig {
    fn default() -> NodeConfig {
        NodeConfig {
            role: Role::Ordinary,
            max_clients: 256,
            listen_addrs: Vec::new(),
            bootstrap: Vec::new(),
            bucket_size: 20,
            leaf_set_size: 8,
            replicas: 3,
            backups: 2,
            host_cache_size: 200,
            heartbeat_interval: 2 * SECS,
            supernode_heartbeat_interval: 2 * SECS,
            dead_after_missed: 3,
            record_lifetime_s: 90,
            record_refresh: 30 * SECS,
            location_cache_ttl: 600 * SECS,
            location_cache_size: 4096,
            lookup_hold: SECS,
            max_records: 200_000,
            dedup_window: 8192,
            chat_deadline: 30 * SECS,
            chat_retry_initial: SECS,
            chat_retry_max: 8 * SECS,
            max_pending_chats: 1024,
            attach_backoff_initial: 500 * MILLIS,
            attach_backoff_max: 30 * SECS,
            join_timeout: 3 * SECS,
            table_refresh: 60 * SECS,
            max_pending_dials: 16,
            ttl: skyhop_protocol::DEFAULT_TTL,
        }
    }
}

/// A configuration value that cannot work.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A field that must be positive is zero.
    #[error("{field} must be greater than zero")]
    Zero {
        /// The field's name.
        field: &'static str,
    },
    /// A field is over its bound.
    #[error("{field} is {value}, above the limit of {limit}")]
    TooLarge {
        /// The field's name.
        field: &'static str,
        /// Its value.
        value: u64,
        /// The largest accepted value.
        limit: u64,
    },
}

impl NodeConfig {
    /// The defaults for a supernode.
    pub fn supernode() -> NodeConfig {
        NodeConfig {
            role: Role::Supernode,
            ..NodeConfig::default()
        }
    }

    /// Checks that the values can work together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let positive: [(&'static str, u64); 13] = [
            ("max_clients", self.max_clients as u64),
            ("bucket_size", self.bucket_size as u64),
            ("replicas", self.replicas as u64),
            ("heartbeat_interval", self.heartbeat_interval),
            (
                "supernode_heartbeat_interval",
                self.supernode_heartbeat_interval,
            ),
            ("dead_after_missed", u64::from(self.dead_after_missed)),
            ("record_lifetime_s", u64::from(self.record_lifetime_s)),
            ("record_refresh", self.record_refresh),
            ("dedup_window", self.dedup_window as u64),
            ("chat_deadline", self.chat_deadline),
            ("chat_retry_initial", self.chat_retry_initial),
            ("max_pending_chats", self.max_pending_chats as u64),
            ("ttl", u64::from(self.ttl)),
        ];
        if let Some((field, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(ConfigError::Zero { field });
        }
        let bounded: [(&'static str, u64, u64); 4] = [
            (
                "record_lifetime_s",
                u64::from(self.record_lifetime_s),
                u64::from(MAX_RECORD_LIFETIME_S),
            ),
            ("max_clients", self.max_clients as u64, u64::from(u16::MAX)),
            ("bucket_size", self.bucket_size as u64, 64),
            ("replicas", self.replicas as u64, 16),
        ];
        if let Some((field, value, limit)) = bounded.iter().find(|(_, v, l)| v > l) {
            return Err(ConfigError::TooLarge {
                field,
                value: *value,
                limit: *limit,
            });
        }
        Ok(())
    }
}
