//! The history's public types: its bounds, its errors, and what a row and
//! a write are.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use skyhop_core::{ChatFailure, ReplayMark, SimTime};
use skyhop_protocol::{MsgId, NodeId};

use super::{
    DEFAULT_MAX_AGE_DAYS, DEFAULT_MAX_ROWS, MAX_AGE_DAYS_LIMIT, MAX_ROWS_LIMIT, SCHEMA_VERSION,
};

/// How much history is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryLimits {
    /// Rows (chats, either way) kept at most.
    pub max_rows: u64,
    /// Days a row is kept at most.
    pub max_age_days: u64,
}

impl Default for HistoryLimits {
    fn default() -> HistoryLimits {
        HistoryLimits {
            max_rows: DEFAULT_MAX_ROWS,
            max_age_days: DEFAULT_MAX_AGE_DAYS,
        }
    }
}

/// A retention bound out of range.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LimitsError {
    /// The row bound is 0 or above [`MAX_ROWS_LIMIT`].
    #[error("history_rows {0}: expected 1 to {MAX_ROWS_LIMIT}")]
    Rows(u64),
    /// The age bound is 0 or above [`MAX_AGE_DAYS_LIMIT`].
    #[error("history_days {0}: expected 1 to {MAX_AGE_DAYS_LIMIT}")]
    Days(u64),
}

impl HistoryLimits {
    /// Checks both bounds.
    pub fn validate(&self) -> Result<(), LimitsError> {
        if !(1..=MAX_ROWS_LIMIT).contains(&self.max_rows) {
            return Err(LimitsError::Rows(self.max_rows));
        }
        if !(1..=MAX_AGE_DAYS_LIMIT).contains(&self.max_age_days) {
            return Err(LimitsError::Days(self.max_age_days));
        }
        Ok(())
    }

    /// The age bound in microseconds.
    pub(super) fn max_age(&self) -> SimTime {
        self.max_age_days
            .saturating_mul(24 * 3600)
            .saturating_mul(skyhop_core::SECS)
    }
}

/// Why the history could not be opened, read or written.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The file could not be opened or set up.
    #[error("cannot open chat history {}: {source}; check the data dir's permissions, or move the file away to start an empty history", path.display())]
    Open {
        /// The database file.
        path: PathBuf,
        /// Why.
        source: rusqlite::Error,
    },
    /// The file is not a history database, or is damaged.
    #[error("chat history {} is corrupt or not a skyhop history ({source}); move it away (e.g. to {}.bad) and restart: the node starts an empty history", path.display(), path.display())]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// What SQLite said.
        source: rusqlite::Error,
    },
    /// The file was written by a newer skyhop.
    #[error("chat history {} has schema {found}, this skyhop knows {SCHEMA_VERSION}; run a newer skyhop or move the file away", path.display())]
    NewerSchema {
        /// The database file.
        path: PathBuf,
        /// The schema found.
        found: i64,
    },
    /// The disk is full.
    #[error("cannot write chat history {}: the disk is full; free space, or lower --history-rows", path.display())]
    DiskFull {
        /// The database file.
        path: PathBuf,
    },
    /// Any other failure to read or write.
    #[error("chat history {}: {source}", path.display())]
    Io {
        /// The database file.
        path: PathBuf,
        /// What SQLite said.
        source: rusqlite::Error,
    },
}

impl DbError {
    /// Sorts a SQLite error on `path` into full, corrupt or other.
    pub(super) fn classify(path: &Path, source: rusqlite::Error) -> DbError {
        use rusqlite::ErrorCode as C;
        let path = path.to_path_buf();
        match source.sqlite_error_code() {
            Some(C::DiskFull) => DbError::DiskFull { path },
            Some(C::DatabaseCorrupt | C::NotADatabase) => DbError::Corrupt { path, source },
            _ => DbError::Io { path, source },
        }
    }
}

/// Which way a chat went.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Received from the peer.
    In,
    /// Sent to the peer.
    Out,
}

/// Where a chat stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChatState {
    /// Received and stored.
    Received,
    /// Sent, no outcome yet.
    Sent,
    /// The recipient is offline; its home supernodes keep the chat (see
    /// `reason` for how many and who said so) until it comes back.
    Stored,
    /// The recipient's receipt came back.
    Delivered,
    /// Not delivered; see `reason` and `said_by`.
    Failed,
    /// The node stopped before the outcome arrived; the recipient may have it.
    Interrupted,
}

impl ChatState {
    pub(super) fn parse(s: &str) -> Option<ChatState> {
        Some(match s {
            "received" => ChatState::Received,
            "sent" => ChatState::Sent,
            "stored" => ChatState::Stored,
            "delivered" => ChatState::Delivered,
            "failed" => ChatState::Failed,
            "interrupted" => ChatState::Interrupted,
            _ => return None,
        })
    }
}

/// Who said what became of a sent chat.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SaidBy {
    /// The recipient (its receipt).
    Recipient,
    /// The recipient's home supernodes (offline, or no record).
    HomeSupernode,
    /// This node (a refusal, the deadline, or a stop).
    ThisNode,
}

impl SaidBy {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            SaidBy::Recipient => "recipient",
            SaidBy::HomeSupernode => "home_supernode",
            SaidBy::ThisNode => "this_node",
        }
    }

    pub(super) fn parse(s: &str) -> Option<SaidBy> {
        Some(match s {
            "recipient" => SaidBy::Recipient,
            "home_supernode" => SaidBy::HomeSupernode,
            "this_node" => SaidBy::ThisNode,
            _ => return None,
        })
    }

    /// Who reports a core failure: the home supernodes answer offline,
    /// not found or unreachable; a deadline is this node's own conclusion.
    pub fn of_failure(reason: ChatFailure) -> SaidBy {
        match reason {
            ChatFailure::Offline | ChatFailure::NotFound | ChatFailure::Unreachable => {
                SaidBy::HomeSupernode
            }
            ChatFailure::TimedOut => SaidBy::ThisNode,
        }
    }
}

/// One stored chat, as `/history` returns it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredChat {
    /// The row's place in the history (grows with time).
    #[serde(with = "crate::runtime::api::id_string")]
    pub row: u64,
    /// The other end of the conversation.
    pub peer: NodeId,
    /// Which way it went.
    pub direction: Direction,
    /// The chat's id.
    #[serde(with = "crate::runtime::api::msg_id_string")]
    pub msg_id: MsgId,
    /// The text.
    pub body: String,
    /// When it was sent or received (this node's clock), in ms since 1970.
    pub at_ms: u64,
    /// Where it stands.
    pub state: ChatState,
    /// Why it failed, if it did.
    pub reason: Option<String>,
    /// Who said it was delivered or failed, once someone has.
    pub said_by: Option<SaidBy>,
    /// Hops it took, once known.
    pub hops: Option<u8>,
}

/// Whether a contact is reachable, from what this node has learned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Presence {
    /// Linked to this node, or heard from in the last [`PRESENCE_FRESH`](super::PRESENCE_FRESH).
    Online,
    /// Last reported offline by its home supernodes.
    Offline,
    /// Nothing recent either way.
    Unknown,
}

/// One contact, as `/contacts` returns it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    /// Its node id, pinned at first contact.
    pub id: NodeId,
    /// Its libp2p peer id (which holds its public key), when this node has
    /// been linked to it.
    pub peer_id: Option<String>,
    /// The name pinned to it at first contact (trust on first use).
    pub name: Option<String>,
    /// Another key that `name` resolved to since: a warning, until the
    /// user re-pins (`skyhop repin NAME`).
    #[serde(default)]
    pub name_conflict: Option<NodeId>,
    /// First contact, in ms since 1970.
    pub first_seen_ms: u64,
    /// Last time it was heard from (a chat or a receipt), in ms.
    pub last_heard_ms: Option<u64>,
    /// Last time it was reported offline, in ms.
    pub last_offline_ms: Option<u64>,
    /// Online, offline or unknown now.
    pub presence: Presence,
}

/// A page of history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryPage {
    /// The conversation asked for, or `None` for all.
    pub peer: Option<NodeId>,
    /// The newest `limit` chats, oldest first.
    pub messages: Vec<StoredChat>,
    /// Rows kept in all.
    pub rows: u64,
    /// Rows deleted by the retention bounds since the node started.
    pub evicted: u64,
    /// The bounds.
    pub limits: HistoryLimits,
}

/// One change to the history, made from a core event or a command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Write {
    /// A chat arrived.
    Received {
        /// Its author.
        from: NodeId,
        /// Its id.
        msg_id: MsgId,
        /// Its text.
        body: String,
        /// Hops it took.
        hops: u8,
    },
    /// A chat went out.
    Sent {
        /// Its recipient.
        to: NodeId,
        /// Its id.
        msg_id: MsgId,
        /// Its text.
        body: String,
    },
    /// `copies` of the offline recipient's home supernodes keep a sent
    /// chat; `by` signed last.
    Stored {
        /// Its recipient.
        to: NodeId,
        /// Its id.
        msg_id: MsgId,
        /// Home supernodes that keep it.
        copies: u8,
        /// The one that signed last.
        by: NodeId,
    },
    /// A sent chat's receipt came back.
    Delivered {
        /// Its recipient.
        to: NodeId,
        /// Its id.
        msg_id: MsgId,
        /// Hops it took.
        hops: u8,
    },
    /// A sent chat will not be delivered (or was refused before it left:
    /// then no `Sent` precedes it and the row is made here).
    Failed {
        /// Its recipient.
        to: NodeId,
        /// Its id, if it got one.
        msg_id: Option<MsgId>,
        /// Its text, for a chat refused before it left.
        body: Option<String>,
        /// Why.
        reason: String,
        /// Who said so.
        said_by: SaidBy,
        /// Whether the failure says the recipient is offline.
        offline: bool,
    },
    /// A chat author's replay mark after the chats of this batch, and the
    /// core's floor for authors without one; written with the chats, so
    /// that after a restart nothing stored is handed out again.
    ReplayMark {
        /// The author.
        author: NodeId,
        /// Its mark.
        mark: ReplayMark,
        /// Chats of authors without a mark sent before this are refused.
        forgotten_before: u64,
    },
    /// A location lookup for a contact was answered (a trace came back:
    /// online) or refused by its home supernodes (offline). A node that is
    /// not a contact is not made one.
    Presence {
        /// The node looked up.
        id: NodeId,
        /// Whether it answered.
        online: bool,
    },
    /// A sent chat is kept by its recipient's homes: its receipt is
    /// awaited, also after a restart (until delivered or failed).
    Awaited(skyhop_core::chat::AwaitedChat),
    /// This supernode's mailbox kept or dropped an item.
    Mailbox(skyhop_core::mailbox::Change),
}
