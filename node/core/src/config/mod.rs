//! A node's tunables, with the defaults DESIGN.md gives and their checks.

use serde::{Deserialize, Serialize};
use skyhop_protocol::{NodeId, Role};

use super::budget::BudgetConfig;
use super::mailbox::MailboxConfig;
use super::role::AutoRoleConfig;
use super::{SimTime, MILLIS, SECS};

mod validate;
pub use validate::{ConfigError, Unit};

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
    /// Nodes to contact: an ordinary node dials the first of those its
    /// host cache does not hold within its first round of attach dials,
    /// and one its host cache holds at these addresses before the cached
    /// ones.
    pub bootstrap: Vec<BootstrapPeer>,
    /// Entries per k-bucket.
    pub bucket_size: usize,
    /// Supernodes kept in the leaf set (the closest known).
    pub leaf_set_size: usize,
    /// Home supernodes that store each location record.
    pub replicas: usize,
    /// Backup supernodes an ordinary node keeps linked besides its primary.
    pub backups: usize,
    /// How often an ordinary node checks that its primary relays, by
    /// sending a chat-class packet to itself through it; one that twice
    /// does not come back makes the node move to another supernode.
    pub primary_probe_interval: SimTime,
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
    /// How far an author's clock may differ from ours: a chat sent more
    /// than `chat_deadline + chat_clock_skew` ago, or more than
    /// `chat_clock_skew` ahead, is refused as a replay.
    pub chat_clock_skew: SimTime,
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
    /// What each linked peer may send, per message class.
    pub budget: BudgetConfig,
    /// Whether a missing ack makes a neighbor suspect at once (DESIGN:
    /// failure detection that does not wait for heartbeats): a packet
    /// forwarded on a link silent for `probe_quiet` carries a probe along,
    /// and a probe (this one or a heartbeat) unanswered for
    /// `probe_ack_timeout` (at least three RTTs) closes the link, so that
    /// routing goes around the neighbor at once. Off by default in the
    /// core so that older simulations stay byte-identical; the runtime
    /// turns it on. (These three are left out of the serialized config at
    /// their defaults, so that older outputs stay the same.)
    #[serde(skip_serializing_if = "is_false")]
    pub suspect_on_missing_ack: bool,
    /// How long a link must have been silent for a forwarded packet to
    /// carry a probe along.
    #[serde(skip_serializing_if = "is_default_probe_time")]
    pub probe_quiet: SimTime,
    /// The least time an unanswered probe waits before its peer is dead.
    #[serde(skip_serializing_if = "is_default_probe_time")]
    pub probe_ack_timeout: SimTime,
    /// Whether and how the node picks its role itself (left out of the
    /// serialized config while off, so that older outputs stay the same).
    #[serde(skip_serializing_if = "AutoRoleConfig::is_off")]
    pub auto_role: AutoRoleConfig,
    /// What a home supernode keeps for offline recipients (left out of the
    /// serialized config at its defaults).
    #[serde(skip_serializing_if = "MailboxConfig::is_default")]
    pub mailbox: MailboxConfig,
    /// The user name this node claims (see `names`), if any. (This and the
    /// two below are left out of the serialized config at their defaults,
    /// so that older outputs stay the same.)
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Seconds a name claim lives at its home supernodes unless its owner
    /// refreshes it (the owner refreshes every `name_lifetime_s / 4`, at
    /// most every 10 minutes).
    #[serde(skip_serializing_if = "is_default_name_lifetime")]
    pub name_lifetime_s: u32,
    /// Name claims a supernode holds at most.
    #[serde(skip_serializing_if = "is_default_max_names")]
    pub max_names: usize,
    /// Whether this node asks its supernode to list it among the nodes
    /// attached there (left out of the serialized config while off).
    #[serde(skip_serializing_if = "is_false")]
    pub listed: bool,
}

/// The default of `name_lifetime_s`: 7 days.
pub const DEFAULT_NAME_LIFETIME_S: u32 = 7 * 24 * 3600;
/// The default of `max_names`.
pub const DEFAULT_MAX_NAMES: usize = 100_000;

fn is_default_name_lifetime(s: &u32) -> bool {
    *s == DEFAULT_NAME_LIFETIME_S
}

fn is_default_max_names(n: &usize) -> bool {
    *n == DEFAULT_MAX_NAMES
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
            primary_probe_interval: 30 * SECS,
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
            chat_clock_skew: 300 * SECS,
            chat_retry_initial: SECS,
            chat_retry_max: 8 * SECS,
            max_pending_chats: 1024,
            attach_backoff_initial: 500 * MILLIS,
            attach_backoff_max: 30 * SECS,
            join_timeout: 3 * SECS,
            table_refresh: 60 * SECS,
            max_pending_dials: 16,
            ttl: skyhop_protocol::DEFAULT_TTL,
            budget: BudgetConfig::default(),
            suspect_on_missing_ack: false,
            probe_quiet: DEFAULT_PROBE_TIME,
            probe_ack_timeout: DEFAULT_PROBE_TIME,
            auto_role: AutoRoleConfig::default(),
            name: None,
            name_lifetime_s: DEFAULT_NAME_LIFETIME_S,
            max_names: DEFAULT_MAX_NAMES,
            listed: false,
            mailbox: MailboxConfig::default(),
        }
    }
}

/// The default of `probe_quiet` and `probe_ack_timeout`.
const DEFAULT_PROBE_TIME: SimTime = 500 * MILLIS;

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_default_probe_time(t: &SimTime) -> bool {
    *t == DEFAULT_PROBE_TIME
}

impl NodeConfig {
    /// The defaults for a supernode.
    pub fn supernode() -> NodeConfig {
        NodeConfig {
            role: Role::Supernode,
            ..NodeConfig::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_supernode_defaults_are_valid() {
        assert_eq!(NodeConfig::default().validate(), Ok(()));
        assert_eq!(NodeConfig::supernode().validate(), Ok(()));
    }

    #[test]
    fn zero_table_refresh_is_refused_naming_the_field_and_the_fix() {
        let cfg = NodeConfig {
            table_refresh: 0,
            ..NodeConfig::supernode()
        };
        let err = cfg.validate().unwrap_err();
        assert!(matches!(
            err,
            ConfigError::OutOfRange {
                field: "table_refresh",
                value: 0,
                ..
            }
        ));
        assert_eq!(
            err.to_string(),
            "table_refresh is 0 µs, which cannot work: set table_refresh between 1000000 µs and 86400000000 µs"
        );
    }

    #[test]
    fn every_zero_or_absurd_count_and_time_is_refused_by_name() {
        let d = NodeConfig::default;
        let cases: Vec<(&str, NodeConfig)> = vec![
            (
                "max_clients",
                NodeConfig {
                    max_clients: 0,
                    ..d()
                },
            ),
            (
                "max_clients",
                NodeConfig {
                    max_clients: 1 << 20,
                    ..d()
                },
            ),
            (
                "bucket_size",
                NodeConfig {
                    bucket_size: 0,
                    ..d()
                },
            ),
            (
                "leaf_set_size",
                NodeConfig {
                    leaf_set_size: 0,
                    ..d()
                },
            ),
            ("replicas", NodeConfig { replicas: 0, ..d() }),
            (
                "backups",
                NodeConfig {
                    backups: 1000,
                    ..d()
                },
            ),
            (
                "host_cache_size",
                NodeConfig {
                    host_cache_size: 0,
                    ..d()
                },
            ),
            (
                "heartbeat_interval",
                NodeConfig {
                    heartbeat_interval: 0,
                    ..d()
                },
            ),
            (
                "dead_after_missed",
                NodeConfig {
                    dead_after_missed: 0,
                    ..d()
                },
            ),
            (
                "record_lifetime_s",
                NodeConfig {
                    record_lifetime_s: 0,
                    ..d()
                },
            ),
            (
                "record_lifetime_s",
                NodeConfig {
                    record_lifetime_s: u32::MAX,
                    ..d()
                },
            ),
            (
                "record_refresh",
                NodeConfig {
                    record_refresh: 0,
                    ..d()
                },
            ),
            (
                "location_cache_ttl",
                NodeConfig {
                    location_cache_ttl: 0,
                    ..d()
                },
            ),
            (
                "location_cache_size",
                NodeConfig {
                    location_cache_size: 0,
                    ..d()
                },
            ),
            (
                "lookup_hold",
                NodeConfig {
                    lookup_hold: u64::MAX,
                    ..d()
                },
            ),
            (
                "max_records",
                NodeConfig {
                    max_records: 0,
                    ..d()
                },
            ),
            (
                "max_records",
                NodeConfig {
                    max_records: usize::MAX,
                    ..d()
                },
            ),
            (
                "dedup_window",
                NodeConfig {
                    dedup_window: 0,
                    ..d()
                },
            ),
            (
                "chat_deadline",
                NodeConfig {
                    chat_deadline: 0,
                    ..d()
                },
            ),
            (
                "chat_retry_initial",
                NodeConfig {
                    chat_retry_initial: 0,
                    ..d()
                },
            ),
            (
                "max_pending_chats",
                NodeConfig {
                    max_pending_chats: 0,
                    ..d()
                },
            ),
            (
                "attach_backoff_initial",
                NodeConfig {
                    attach_backoff_initial: 0,
                    ..d()
                },
            ),
            (
                "join_timeout",
                NodeConfig {
                    join_timeout: 0,
                    ..d()
                },
            ),
            (
                "max_pending_dials",
                NodeConfig {
                    max_pending_dials: 0,
                    ..d()
                },
            ),
            ("ttl", NodeConfig { ttl: 0, ..d() }),
        ];
        for (field, cfg) in cases {
            let err = cfg.validate().expect_err(field);
            let text = err.to_string();
            assert!(text.starts_with(field), "{field}: {text}");
            assert!(text.contains(&format!("set {field} between")), "{text}");
        }
    }

    #[test]
    fn the_benchmark_budget_is_within_range() {
        let mut cfg = NodeConfig::supernode();
        cfg.budget = BudgetConfig::benchmark();
        assert_eq!(cfg.validate(), Ok(()));
    }

    #[test]
    fn a_zero_budget_is_refused_naming_the_nested_field() {
        let mut cfg = NodeConfig::supernode();
        cfg.budget.location_query.per_s = 0;
        let text = cfg.validate().unwrap_err().to_string();
        assert!(
            text.starts_with("budget.location_query.per_s is 0, which cannot work: set budget.location_query.per_s between 1 and"),
            "{text}"
        );
        let mut cfg = NodeConfig::supernode();
        cfg.budget.tolerance = 0;
        assert!(cfg
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("budget.tolerance is 0"));
        let mut cfg = NodeConfig::supernode();
        cfg.budget.first_burst_percent = 101;
        let text = cfg.validate().unwrap_err().to_string();
        assert!(
            text.starts_with("budget.first_burst_percent is 101"),
            "{text}"
        );
    }

    #[test]
    fn fields_that_must_not_be_below_another_say_which_and_how_to_fix() {
        let cfg = NodeConfig {
            chat_retry_initial: 10 * SECS,
            chat_retry_max: SECS,
            ..NodeConfig::default()
        };
        assert_eq!(
            cfg.validate().unwrap_err().to_string(),
            "chat_retry_max is 1000000 µs, below chat_retry_initial (10000000 µs): \
             raise chat_retry_max to at least 10000000 µs or lower chat_retry_initial"
        );
        let cfg = NodeConfig {
            record_refresh: 90 * SECS,
            ..NodeConfig::default()
        };
        assert!(matches!(
            cfg.validate(),
            Err(ConfigError::RefreshTooSlow {
                record_lifetime_s: 90,
                ..
            })
        ));
    }
}
