//! Checking a [`NodeConfig`]: every field's range, and the errors that name
//! the field and the value that would work.

use skyhop_protocol::MAX_RECORD_LIFETIME_S;

use super::NodeConfig;
use crate::budget::MessageClass;
use crate::{SimTime, MILLIS, SECS};

/// How a field's value is measured, for error messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// A count of things.
    Count,
    /// Microseconds (every `SimTime` field).
    Micros,
    /// Seconds.
    Seconds,
}

impl std::fmt::Display for Unit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Unit::Count => "",
            Unit::Micros => " µs",
            Unit::Seconds => " s",
        })
    }
}

/// A configuration value that cannot work; the message names the field and
/// the value that would.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A field is outside the range it can work in.
    #[error("{field} is {value}{unit}, which cannot work: set {field} between {min}{unit} and {max}{unit}")]
    OutOfRange {
        /// The field's name.
        field: &'static str,
        /// Its value.
        value: u64,
        /// The smallest accepted value.
        min: u64,
        /// The largest accepted value.
        max: u64,
        /// What the numbers count.
        unit: Unit,
    },
    /// A field must not be below another field.
    #[error("{field} is {value} µs, below {floor_field} ({floor} µs): raise {field} to at least {floor} µs or lower {floor_field}")]
    BelowOther {
        /// The field's name.
        field: &'static str,
        /// Its value.
        value: u64,
        /// The field it must not be below.
        floor_field: &'static str,
        /// That field's value.
        floor: u64,
    },
    /// Records would expire at their homes before they are refreshed.
    #[error("record_refresh is {record_refresh} µs, not shorter than record_lifetime_s ({record_lifetime_s} s), so records expire between refreshes: set record_refresh below {lifetime} µs or raise record_lifetime_s")]
    RefreshTooSlow {
        /// `record_refresh`.
        record_refresh: SimTime,
        /// `record_lifetime_s`.
        record_lifetime_s: u32,
        /// `record_lifetime_s` in µs.
        lifetime: SimTime,
    },
    /// `name` is not a valid user name.
    #[error("name: {0}")]
    BadName(String),
}

/// One field's accepted range, checked by [`NodeConfig::validate`].
struct Range {
    field: &'static str,
    value: u64,
    min: u64,
    max: u64,
    unit: Unit,
}

impl Range {
    fn count(field: &'static str, value: usize, min: u64, max: u64) -> Range {
        Range {
            field,
            value: u64::try_from(value).unwrap_or(u64::MAX),
            min,
            max,
            unit: Unit::Count,
        }
    }

    fn time(field: &'static str, value: SimTime, min: SimTime, max: SimTime) -> Range {
        Range {
            field,
            value,
            min,
            max,
            unit: Unit::Micros,
        }
    }

    fn check(self) -> Result<(), ConfigError> {
        if (self.min..=self.max).contains(&self.value) {
            return Ok(());
        }
        Err(ConfigError::OutOfRange {
            field: self.field,
            value: self.value,
            min: self.min,
            max: self.max,
            unit: self.unit,
        })
    }
}

/// One minute of [`SimTime`].
const MINUTES: SimTime = 60 * SECS;
/// One hour of [`SimTime`].
const HOURS: SimTime = 60 * MINUTES;

impl NodeConfig {
    /// Checks that every field is within the range it can work in and
    /// that related fields agree; the error names the field and the fix.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let c = &self;
        let ranges = [
            // The heartbeat ack reports the client count as a u16.
            Range::count("max_clients", c.max_clients, 1, u64::from(u16::MAX)),
            Range::count("bootstrap", c.bootstrap.len(), 0, 1024),
            Range::count("bucket_size", c.bucket_size, 1, 64),
            Range::count("leaf_set_size", c.leaf_set_size, 1, 64),
            Range::count("replicas", c.replicas, 1, 16),
            Range::count("backups", c.backups, 0, 8),
            Range::time(
                "primary_probe_interval",
                c.primary_probe_interval,
                SECS,
                24 * HOURS,
            ),
            Range::count("host_cache_size", c.host_cache_size, 1, 10_000),
            Range::time(
                "heartbeat_interval",
                c.heartbeat_interval,
                100 * MILLIS,
                10 * MINUTES,
            ),
            Range::time(
                "supernode_heartbeat_interval",
                c.supernode_heartbeat_interval,
                100 * MILLIS,
                10 * MINUTES,
            ),
            Range::count("dead_after_missed", c.dead_after_missed as usize, 1, 100),
            Range {
                field: "record_lifetime_s",
                value: u64::from(c.record_lifetime_s),
                min: 1,
                max: u64::from(MAX_RECORD_LIFETIME_S),
                unit: Unit::Seconds,
            },
            Range::time("record_refresh", c.record_refresh, SECS, HOURS),
            Range::time("location_cache_ttl", c.location_cache_ttl, SECS, 24 * HOURS),
            Range::count("location_cache_size", c.location_cache_size, 1, 1_000_000),
            Range::time("lookup_hold", c.lookup_hold, 0, 30 * SECS),
            Range::count("max_records", c.max_records, 1, 10_000_000),
            Range::count("dedup_window", c.dedup_window, 1, 1_000_000),
            Range::time("chat_deadline", c.chat_deadline, 100 * MILLIS, 24 * HOURS),
            Range::time("chat_clock_skew", c.chat_clock_skew, 0, HOURS),
            Range::time(
                "chat_retry_initial",
                c.chat_retry_initial,
                10 * MILLIS,
                HOURS,
            ),
            Range::time("chat_retry_max", c.chat_retry_max, 10 * MILLIS, HOURS),
            Range::count("max_pending_chats", c.max_pending_chats, 1, 1_000_000),
            Range::time(
                "attach_backoff_initial",
                c.attach_backoff_initial,
                10 * MILLIS,
                MINUTES,
            ),
            Range::time(
                "attach_backoff_max",
                c.attach_backoff_max,
                10 * MILLIS,
                HOURS,
            ),
            Range::time("join_timeout", c.join_timeout, 100 * MILLIS, 5 * MINUTES),
            // Zero would make a supernode refresh in a busy loop.
            Range::time("table_refresh", c.table_refresh, SECS, 24 * HOURS),
            Range::count("max_pending_dials", c.max_pending_dials, 1, 1024),
            Range::count("ttl", usize::from(c.ttl), 1, u64::from(u8::MAX)),
            Range::time("probe_quiet", c.probe_quiet, 10 * MILLIS, MINUTES),
            Range::time(
                "probe_ack_timeout",
                c.probe_ack_timeout,
                10 * MILLIS,
                MINUTES,
            ),
            Range::time(
                "auto_role.check_interval",
                c.auto_role.check_interval,
                100 * MILLIS,
                HOURS,
            ),
            Range::count(
                "auto_role.promote_per_mille",
                c.auto_role.promote_per_mille as usize,
                1,
                1000,
            ),
            Range::count(
                "auto_role.high_watermark_pct",
                c.auto_role.high_watermark_pct as usize,
                1,
                100,
            ),
            Range::count(
                "auto_role.low_watermark_pct",
                c.auto_role.low_watermark_pct as usize,
                0,
                u64::from(c.auto_role.high_watermark_pct),
            ),
            Range::time("auto_role.drain", c.auto_role.drain, 0, HOURS),
            Range {
                field: "name_lifetime_s",
                value: u64::from(c.name_lifetime_s),
                min: 60,
                max: u64::from(skyhop_protocol::MAX_NAME_LIFETIME_S),
                unit: Unit::Seconds,
            },
            Range::count("max_names", c.max_names, 1, 10_000_000),
        ];
        for range in ranges {
            range.check()?;
        }
        self.validate_budget()?;
        if let Some(name) = &c.name {
            skyhop_protocol::check_name(name).map_err(|e| ConfigError::BadName(e.to_string()))?;
        }
        self.mailbox.validate()?;
        let ordered = [
            // Supernode links are probed at heartbeat ticks, so a shorter
            // interval would not be honoured.
            (
                "supernode_heartbeat_interval",
                c.supernode_heartbeat_interval,
                "heartbeat_interval",
                c.heartbeat_interval,
            ),
            (
                "chat_retry_max",
                c.chat_retry_max,
                "chat_retry_initial",
                c.chat_retry_initial,
            ),
            (
                "attach_backoff_max",
                c.attach_backoff_max,
                "attach_backoff_initial",
                c.attach_backoff_initial,
            ),
        ];
        for (field, value, floor_field, floor) in ordered {
            if value < floor {
                return Err(ConfigError::BelowOther {
                    field,
                    value,
                    floor_field,
                    floor,
                });
            }
        }
        let lifetime = u64::from(c.record_lifetime_s) * SECS;
        if c.record_refresh >= lifetime {
            return Err(ConfigError::RefreshTooSlow {
                record_refresh: c.record_refresh,
                record_lifetime_s: c.record_lifetime_s,
                lifetime,
            });
        }
        Ok(())
    }

    fn validate_budget(&self) -> Result<(), ConfigError> {
        let b = &self.budget;
        for class in MessageClass::ALL {
            let rate = b.rate(class);
            let (per_s, burst) = budget_field_names(class);
            Range::count(per_s, rate.per_s as usize, 1, 1_000_000).check()?;
            Range::count(burst, rate.burst as usize, 1, 1_000_000).check()?;
        }
        Range::count(
            "budget.supernode_factor",
            b.supernode_factor as usize,
            1,
            1024,
        )
        .check()?;
        Range::count("budget.tolerance", b.tolerance as usize, 1, 1_000_000).check()?;
        Range::count(
            "budget.first_burst_percent",
            b.first_burst_percent as usize,
            1,
            100,
        )
        .check()
    }
}

/// The config names of a class's rate and burst, for errors.
fn budget_field_names(class: MessageClass) -> (&'static str, &'static str) {
    match class {
        MessageClass::Chat => ("budget.chat.per_s", "budget.chat.burst"),
        MessageClass::Control => ("budget.control.per_s", "budget.control.burst"),
        MessageClass::Join => ("budget.join.per_s", "budget.join.burst"),
        MessageClass::Mailbox => ("budget.mailbox.per_s", "budget.mailbox.burst"),
        MessageClass::LocationQuery => {
            ("budget.location_query.per_s", "budget.location_query.burst")
        }
        MessageClass::Publish => ("budget.publish.per_s", "budget.publish.burst"),
        MessageClass::Trace => ("budget.trace.per_s", "budget.trace.burst"),
    }
}
