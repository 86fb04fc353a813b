//! The node's chat history, inbox and contacts: one SQLite file
//! (`<data-dir>/history.db`, SQLite compiled into the binary through
//! rusqlite's `bundled` feature) that the node task alone writes.
//!
//! - Every chat received, with who sent it, its text, when and its hops.
//! - Every chat sent, with its state: `sent`, then `delivered` (the
//!   recipient's receipt) or `failed` with the reason and who said so (the
//!   recipient's home supernodes, or this node at the deadline); a chat
//!   still `sent` when the node stopped is `interrupted` at the next start.
//! - Contacts: every node id this node has chatted with, pinned at first
//!   contact (trust on first use: a node id is the hash of its public key,
//!   so the id pins the key), with when it was first seen, last heard and
//!   last reported offline; a name column waits for names.
//!
//! Retention is bounded in rows and in age ([`HistoryLimits`]); rows past
//! either bound are deleted, oldest first, and counted.
//!
//! # Implementation notes
//! - "Delivered" means stored by the recipient. The node task hands every
//!   batch of core outputs to [`History::apply`] *before* it acts on any of
//!   them, so a received chat is committed before the receipt the same
//!   input produced reaches a link writer (see `NodeTask::drain`).
//! - WAL journal with `synchronous=FULL`: a commit has reached the disk
//!   when [`History::apply`] returns, so the chat survives `kill -9` and a
//!   power cut alike. One transaction per batch (the row bound kept inside
//!   it), so a burst of chats costs one sync. The node task waits for it:
//!   0.3 to 5.7 ms per one-chat commit on the 2-core test machine's shared
//!   disk, 30 to 80 us per chat in a batch of 500; `synchronous=NORMAL`
//!   would cost about 0.2 ms and still survive `kill -9`, not a power cut.
//! - The row bound is kept on every write with the row count held in
//!   memory: deleting the `k` oldest rows is an index range on the integer
//!   primary key, O(k log n). The age bound is applied at open and on the
//!   node's housekeeping tick. The bound is for all conversations together:
//!   a stranger who floods this node with chats (within the core's per-peer
//!   budgets) pushes older chats out; a per-conversation share is not done.
//! - Errors name the file and the fix: a full disk, a corrupt or foreign
//!   file, a file that cannot be opened.

use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OptionalExtension};

#[path = "db_mailbox.rs"]
mod mailbox;
#[path = "db_names.rs"]
mod names;
pub use mailbox::MAX_AWAITED;
pub use names::MAX_NAME_CONFLICTS;
use serde::{Deserialize, Serialize};
use skyhop_core::{ChatFailure, ReplayMark, SimTime};
use skyhop_protocol::{MsgId, NodeId};

/// File name of the history database in the data directory.
pub const HISTORY_FILE: &str = "history.db";
/// Default bound on the rows kept.
pub const DEFAULT_MAX_ROWS: u64 = 100_000;
/// Default bound on the age of a row, in days.
pub const DEFAULT_MAX_AGE_DAYS: u64 = 365;
/// Largest row bound accepted (about 40 GB of 4 KB chats at worst).
pub const MAX_ROWS_LIMIT: u64 = 10_000_000;
/// Largest age bound accepted, in days (a century).
pub const MAX_AGE_DAYS_LIMIT: u64 = 36_500;
/// Contacts kept at most; past it the one heard from longest ago goes.
pub const MAX_CONTACTS: u64 = 10_000;
/// Messages one history page holds at most.
pub const MAX_PAGE: u32 = 1_000;
/// A contact heard from this recently (and not reported offline since) is
/// shown online.
pub const PRESENCE_FRESH: SimTime = 5 * 60 * skyhop_core::SECS;
/// The schema this code writes (`PRAGMA user_version`).
const SCHEMA_VERSION: i64 = 1;
/// How long a write may wait for a lock (another process opened the file).
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

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
    fn max_age(&self) -> SimTime {
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
    fn classify(path: &Path, source: rusqlite::Error) -> DbError {
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
    fn parse(s: &str) -> Option<ChatState> {
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
    fn as_str(self) -> &'static str {
        match self {
            SaidBy::Recipient => "recipient",
            SaidBy::HomeSupernode => "home_supernode",
            SaidBy::ThisNode => "this_node",
        }
    }

    fn parse(s: &str) -> Option<SaidBy> {
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
    #[serde(with = "super::api::id_string")]
    pub row: u64,
    /// The other end of the conversation.
    pub peer: NodeId,
    /// Which way it went.
    pub direction: Direction,
    /// The chat's id.
    #[serde(with = "super::api::msg_id_string")]
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
    /// Linked to this node, or heard from in the last [`PRESENCE_FRESH`].
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

/// The history database; the node task owns it.
pub struct History {
    /// The connection.
    conn: Connection,
    /// The file, for errors.
    path: PathBuf,
    /// The bounds.
    limits: HistoryLimits,
    /// Rows in `messages`.
    rows: u64,
    /// Rows deleted by the bounds since open.
    evicted: u64,
}

impl std::fmt::Debug for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "History({}, {} rows)", self.path.display(), self.rows)
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS messages (
    row        INTEGER PRIMARY KEY AUTOINCREMENT,
    peer       TEXT NOT NULL,
    outgoing   INTEGER NOT NULL,
    msg_id     INTEGER NOT NULL,
    body       TEXT NOT NULL,
    at_ms      INTEGER NOT NULL,
    state      TEXT NOT NULL,
    reason     TEXT,
    said_by    TEXT,
    hops       INTEGER,
    UNIQUE (outgoing, peer, msg_id)
);
CREATE INDEX IF NOT EXISTS messages_by_peer ON messages (peer, row);
CREATE INDEX IF NOT EXISTS messages_by_age ON messages (at_ms);
CREATE TABLE IF NOT EXISTS contacts (
    id              TEXT PRIMARY KEY,
    peer_id         TEXT,
    name            TEXT,
    first_seen_ms   INTEGER NOT NULL,
    last_heard_ms   INTEGER,
    last_offline_ms INTEGER,
    last_seen_ms    INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS contacts_by_last_seen ON contacts (last_seen_ms);
CREATE TABLE IF NOT EXISTS replay_marks (
    author         TEXT PRIMARY KEY,
    seq            INTEGER NOT NULL,
    epoch          INTEGER NOT NULL,
    latest_sent_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS replay_marks_by_age ON replay_marks (latest_sent_at);
CREATE INDEX IF NOT EXISTS contacts_by_name ON contacts (name);
CREATE TABLE IF NOT EXISTS name_conflicts (
    name       TEXT PRIMARY KEY,
    other      TEXT NOT NULL,
    noticed_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS replay_floor (
    id               INTEGER PRIMARY KEY CHECK (id = 0),
    forgotten_before INTEGER NOT NULL
);
";

/// Replay marks kept at most: as many as the core keeps.
pub const MAX_REPLAY_MARKS: u64 = skyhop_core::inbox::MAX_SENDERS as u64;

/// Microseconds as milliseconds, for the rows.
fn ms(now: SimTime) -> i64 {
    i64::try_from(now / 1000).unwrap_or(i64::MAX)
}

/// The SQL image of a `u64` (SQLite integers are signed; ids keep their bits).
fn sql_u64(v: u64) -> i64 {
    v as i64
}

impl History {
    /// Opens (or creates) `<dir>/history.db`, marks chats left `sent` by a
    /// stopped node `interrupted`, and applies the bounds at `now`.
    pub fn open(dir: &Path, limits: HistoryLimits, now: SimTime) -> Result<History, DbError> {
        let path = dir.join(HISTORY_FILE);
        let open_err = |source| DbError::Open {
            path: path.clone(),
            source,
        };
        let conn = Connection::open(&path).map_err(open_err)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(open_err)?;
        let mut history = History {
            conn,
            path,
            limits,
            rows: 0,
            evicted: 0,
        };
        history.set_up().map_err(|e| history.fail(e))?;
        history.rows = history
            .conn
            .query_row("SELECT COUNT(*) FROM messages", [], |r| r.get::<_, i64>(0))
            .map_err(|e| history.fail(e))? as u64;
        history
            .conn
            .execute(
                "UPDATE messages SET state = 'interrupted', said_by = 'this_node',
                 reason = 'the node stopped before the outcome arrived; the recipient may have it'
                 WHERE state = 'sent'",
                [],
            )
            .map_err(|e| history.fail(e))?;
        history.prune_age(now)?;
        history.prune_rows()?;
        Ok(history)
    }

    /// Pragmas, schema and its version.
    fn set_up(&self) -> Result<(), rusqlite::Error> {
        // A file that is not SQLite fails here, on the first read.
        let version: i64 = self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version > SCHEMA_VERSION {
            return Err(rusqlite::Error::ToSqlConversionFailure(Box::new(
                NewerSchema(version),
            )));
        }
        self.conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0))?;
        self.conn.execute_batch("PRAGMA synchronous = FULL;")?;
        self.conn.execute_batch(SCHEMA)?;
        self.conn.execute_batch(mailbox::SCHEMA)?;
        self.conn
            .execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION};"))?;
        Ok(())
    }

    /// The typed error of `e` on this file.
    fn fail(&self, e: rusqlite::Error) -> DbError {
        if let rusqlite::Error::ToSqlConversionFailure(inner) = &e {
            if let Some(NewerSchema(found)) = inner.downcast_ref::<NewerSchema>() {
                return DbError::NewerSchema {
                    path: self.path.clone(),
                    found: *found,
                };
            }
        }
        DbError::classify(&self.path, e)
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Rows kept.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Rows deleted by the bounds since open.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Applies `writes` at `now` in one transaction (committed to disk when
    /// this returns), learning peer ids from `peer_id_of`, then keeps the
    /// row bound. Nothing is written if it fails.
    pub fn apply(
        &mut self,
        writes: &[Write],
        now: SimTime,
        peer_id_of: impl Fn(&NodeId) -> Option<String>,
    ) -> Result<(), DbError> {
        if writes.is_empty() {
            return Ok(());
        }
        let at = ms(now);
        let tx = self
            .conn
            .transaction()
            .map_err(|e| DbError::classify(&self.path, e))?;
        let mut added = 0u64;
        for w in writes {
            added +=
                apply_one(&tx, w, at, &peer_id_of).map_err(|e| DbError::classify(&self.path, e))?;
        }
        // The bounds are kept in the same transaction: one sync, not two.
        if writes.iter().any(|w| matches!(w, Write::ReplayMark { .. })) {
            bound_replay_marks(&tx).map_err(|e| DbError::classify(&self.path, e))?;
        }
        let excess = (self.rows + added).saturating_sub(self.limits.max_rows);
        let gone = delete_oldest(&tx, excess).map_err(|e| DbError::classify(&self.path, e))?;
        tx.commit().map_err(|e| DbError::classify(&self.path, e))?;
        self.rows = self.rows + added - gone;
        self.evicted += gone;
        Ok(())
    }

    /// Deletes the oldest rows past the row bound (at open: the bound may
    /// have been lowered since).
    fn prune_rows(&mut self) -> Result<(), DbError> {
        let excess = self.rows.saturating_sub(self.limits.max_rows);
        let gone =
            delete_oldest(&self.conn, excess).map_err(|e| DbError::classify(&self.path, e))?;
        self.rows -= gone;
        self.evicted += gone;
        Ok(())
    }

    /// Deletes rows older than the age bound at `now`.
    pub fn prune_age(&mut self, now: SimTime) -> Result<(), DbError> {
        let oldest_kept = ms(now.saturating_sub(self.limits.max_age()));
        let gone = self
            .conn
            .execute(
                "DELETE FROM messages WHERE at_ms < ?1",
                params![oldest_kept],
            )
            .map_err(|e| DbError::classify(&self.path, e))? as u64;
        self.rows = self.rows.saturating_sub(gone);
        self.evicted += gone;
        Ok(())
    }

    /// The newest `limit` chats (at most [`MAX_PAGE`]) with `peer`, or with
    /// everyone, oldest first.
    pub fn page(&self, peer: Option<NodeId>, limit: u32) -> Result<HistoryPage, DbError> {
        let limit = limit.clamp(1, MAX_PAGE);
        let fail = |e| DbError::classify(&self.path, e);
        let columns = "row, peer, outgoing, msg_id, body, at_ms, state, reason, said_by, hops";
        let mut messages = match peer {
            Some(p) => {
                let mut stmt = self
                    .conn
                    .prepare_cached(&format!(
                        "SELECT {columns} FROM messages WHERE peer = ?1 ORDER BY row DESC LIMIT ?2"
                    ))
                    .map_err(fail)?;
                let rows = stmt
                    .query_map(params![p.to_hex(), limit], read_chat)
                    .map_err(fail)?;
                rows.collect::<Result<Vec<_>, _>>().map_err(fail)?
            }
            None => {
                let mut stmt = self
                    .conn
                    .prepare_cached(&format!(
                        "SELECT {columns} FROM messages ORDER BY row DESC LIMIT ?1"
                    ))
                    .map_err(fail)?;
                let rows = stmt.query_map(params![limit], read_chat).map_err(fail)?;
                rows.collect::<Result<Vec<_>, _>>().map_err(fail)?
            }
        };
        messages.reverse();
        Ok(HistoryPage {
            peer,
            messages: messages.into_iter().flatten().collect(),
            rows: self.rows,
            evicted: self.evicted,
            limits: self.limits,
        })
    }

    /// Every contact, most recently seen first, with its presence at `now`
    /// (`linked`: whether this node has a link to it now).
    pub fn contacts(
        &self,
        now: SimTime,
        linked: impl Fn(&NodeId) -> bool,
    ) -> Result<Vec<Contact>, DbError> {
        let fail = |e| DbError::classify(&self.path, e);
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, peer_id, name, first_seen_ms, last_heard_ms, last_offline_ms
                 FROM contacts ORDER BY last_seen_ms DESC",
            )
            .map_err(fail)?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, Option<String>>(1)?,
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, Option<i64>>(4)?,
                    r.get::<_, Option<i64>>(5)?,
                ))
            })
            .map_err(fail)?;
        let conflicts = self.name_conflicts()?;
        let mut out = Vec::new();
        for row in rows {
            let (id, peer_id, name, first, heard, offline) = row.map_err(fail)?;
            // A row this code did not write is skipped, not trusted.
            let Ok(id) = id.parse::<NodeId>() else {
                continue;
            };
            let (heard, offline) = (heard.map(|v| v as u64), offline.map(|v| v as u64));
            out.push(Contact {
                presence: presence(now / 1000, linked(&id), heard, offline),
                id,
                peer_id,
                name_conflict: name.as_ref().and_then(|n| conflicts.get(n).copied()),
                name,
                first_seen_ms: first as u64,
                last_heard_ms: heard,
                last_offline_ms: offline,
            });
        }
        Ok(out)
    }

    /// The replay marks saved, and the floor for authors without one (see
    /// [`skyhop_core::Node::restore_replay_marks`]). Rows that do not parse
    /// are skipped.
    pub fn replay_marks(&self) -> Result<(Vec<(NodeId, ReplayMark)>, u64), DbError> {
        let read = || -> Result<(Vec<(NodeId, ReplayMark)>, u64), rusqlite::Error> {
            let mut stmt = self
                .conn
                .prepare("SELECT author, seq, epoch, latest_sent_at FROM replay_marks")?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    ReplayMark {
                        seq: r.get::<_, i64>(1)? as u64,
                        epoch: r.get::<_, i64>(2)? as u64,
                        latest_sent_at: r.get::<_, i64>(3)? as u64,
                    },
                ))
            })?;
            let mut marks = Vec::new();
            for row in rows {
                let (author, mark) = row?;
                if let Ok(author) = author.parse::<NodeId>() {
                    marks.push((author, mark));
                }
            }
            let floor = self
                .conn
                .query_row(
                    "SELECT forgotten_before FROM replay_floor WHERE id = 0",
                    [],
                    |r| r.get::<_, i64>(0),
                )
                .optional()?
                .map_or(0, |f| f as u64);
            Ok((marks, floor))
        };
        read().map_err(|e| self.fail(e))
    }

    /// Contact ids, for prefix resolution.
    pub fn contact_ids(&self) -> Result<Vec<NodeId>, DbError> {
        Ok(self
            .contacts(0, |_| false)?
            .into_iter()
            .map(|c| c.id)
            .collect())
    }
}

/// The marker of a schema newer than this code's.
#[derive(Debug)]
struct NewerSchema(i64);

impl std::fmt::Display for NewerSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "schema {}", self.0)
    }
}

impl std::error::Error for NewerSchema {}

/// Online if linked, or heard from within [`PRESENCE_FRESH`] and not
/// reported offline since; offline if the last word was offline; else
/// unknown. Times in ms.
pub fn presence(
    now_ms: u64,
    linked: bool,
    last_heard: Option<u64>,
    last_offline: Option<u64>,
) -> Presence {
    if linked {
        return Presence::Online;
    }
    let fresh = PRESENCE_FRESH / 1000;
    match (last_heard, last_offline) {
        (Some(h), off) if off.is_none_or(|o| h >= o) && now_ms.saturating_sub(h) <= fresh => {
            Presence::Online
        }
        (h, Some(o)) if h.is_none_or(|h| o > h) => Presence::Offline,
        _ => Presence::Unknown,
    }
}

/// Deletes the `excess` oldest rows; returns how many went.
fn delete_oldest(conn: &Connection, excess: u64) -> Result<u64, rusqlite::Error> {
    if excess == 0 {
        return Ok(0);
    }
    let gone = conn.execute(
        "DELETE FROM messages WHERE row IN (SELECT row FROM messages ORDER BY row LIMIT ?1)",
        params![sql_u64(excess)],
    )?;
    Ok(gone as u64)
}

/// One write inside the batch's transaction; returns the rows it added.
fn apply_one(
    tx: &rusqlite::Transaction<'_>,
    w: &Write,
    at: i64,
    peer_id_of: &impl Fn(&NodeId) -> Option<String>,
) -> Result<u64, rusqlite::Error> {
    match w {
        Write::Received {
            from,
            msg_id,
            body,
            hops,
        } => {
            touch_contact(tx, from, at, peer_id_of(from), true, false)?;
            // A duplicate (the sender's retry after our restart) is kept once.
            let added = tx.execute(
                "INSERT OR IGNORE INTO messages (peer, outgoing, msg_id, body, at_ms, state, hops)
                 VALUES (?1, 0, ?2, ?3, ?4, 'received', ?5)",
                params![from.to_hex(), sql_u64(msg_id.0), body, at, hops],
            )?;
            Ok(added as u64)
        }
        Write::Sent { to, msg_id, body } => {
            touch_contact(tx, to, at, peer_id_of(to), false, false)?;
            let added = tx.execute(
                "INSERT OR IGNORE INTO messages (peer, outgoing, msg_id, body, at_ms, state)
                 VALUES (?1, 1, ?2, ?3, ?4, 'sent')",
                params![to.to_hex(), sql_u64(msg_id.0), body, at],
            )?;
            Ok(added as u64)
        }
        Write::Stored {
            to,
            msg_id,
            copies,
            by,
        } => {
            touch_contact(tx, to, at, peer_id_of(to), false, true)?;
            let reason = format!(
                "recipient offline: stored on {copies} of 3 home supernodes (said by {})",
                by.short()
            );
            tx.execute(
                "UPDATE messages SET state = 'stored', said_by = 'home_supernode', reason = ?3
                 WHERE outgoing = 1 AND peer = ?1 AND msg_id = ?2 AND state IN ('sent', 'stored')",
                params![to.to_hex(), sql_u64(msg_id.0), reason],
            )?;
            Ok(0)
        }
        Write::Delivered { to, msg_id, hops } => {
            touch_contact(tx, to, at, peer_id_of(to), true, false)?;
            mailbox::forget_awaited(tx, *msg_id)?;
            tx.execute(
                "UPDATE messages SET state = 'delivered', said_by = 'recipient', hops = ?3,
                 reason = NULL WHERE outgoing = 1 AND peer = ?1 AND msg_id = ?2",
                params![to.to_hex(), sql_u64(msg_id.0), hops],
            )?;
            Ok(0)
        }
        Write::Failed {
            to,
            msg_id,
            body,
            reason,
            said_by,
            offline,
        } => {
            touch_contact(tx, to, at, peer_id_of(to), false, *offline)?;
            match (msg_id, body) {
                (Some(id), _) => {
                    mailbox::forget_awaited(tx, *id)?;
                    tx.execute(
                        "UPDATE messages SET state = 'failed', reason = ?3, said_by = ?4
                         WHERE outgoing = 1 AND peer = ?1 AND msg_id = ?2",
                        params![to.to_hex(), sql_u64(id.0), reason, said_by.as_str()],
                    )?;
                    Ok(0)
                }
                (None, Some(body)) => {
                    // Refused before it got an id: the row's own place is its id.
                    tx.execute(
                        "INSERT INTO messages (peer, outgoing, msg_id, body, at_ms, state, reason, said_by)
                         VALUES (?1, 1, -(SELECT IFNULL(MAX(row), 0) + 1 FROM messages), ?2, ?3,
                                 'failed', ?4, ?5)",
                        params![to.to_hex(), body, at, reason, said_by.as_str()],
                    )?;
                    Ok(1)
                }
                (None, None) => Ok(0),
            }
        }
        Write::ReplayMark {
            author,
            mark,
            forgotten_before,
        } => {
            tx.execute(
                "INSERT INTO replay_marks (author, seq, epoch, latest_sent_at)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (author) DO UPDATE SET seq = ?2, epoch = ?3, latest_sent_at = ?4",
                params![
                    author.to_hex(),
                    sql_u64(mark.seq),
                    sql_u64(mark.epoch),
                    sql_u64(mark.latest_sent_at)
                ],
            )?;
            raise_floor(tx, *forgotten_before)?;
            Ok(0)
        }
        Write::Awaited(chat) => {
            mailbox::save_awaited(tx, chat)?;
            Ok(0)
        }
        Write::Mailbox(change) => {
            mailbox::apply_change(tx, change)?;
            Ok(0)
        }
        Write::Presence { id, online } => {
            let column = if *online {
                "last_heard_ms"
            } else {
                "last_offline_ms"
            };
            tx.execute(
                &format!("UPDATE contacts SET {column} = ?2 WHERE id = ?1"),
                params![id.to_hex(), at],
            )?;
            Ok(0)
        }
    }
}

/// Raises the replay floor to `to` (it never goes down).
fn raise_floor(tx: &rusqlite::Transaction<'_>, to: u64) -> Result<(), rusqlite::Error> {
    tx.execute(
        "INSERT INTO replay_floor (id, forgotten_before) VALUES (0, ?1)
         ON CONFLICT (id) DO UPDATE SET forgotten_before = MAX(forgotten_before, ?1)",
        params![sql_u64(to)],
    )?;
    Ok(())
}

/// Keeps at most [`MAX_REPLAY_MARKS`] marks: the ones with the oldest
/// `latest_sent_at` go, and the floor rises past them, as in the core.
fn bound_replay_marks(tx: &rusqlite::Transaction<'_>) -> Result<(), rusqlite::Error> {
    let count: i64 = tx.query_row("SELECT COUNT(*) FROM replay_marks", [], |r| r.get(0))?;
    let excess = (count as u64).saturating_sub(MAX_REPLAY_MARKS);
    if excess == 0 {
        return Ok(());
    }
    let latest: Option<i64> = tx.query_row(
        "SELECT MAX(latest_sent_at) FROM (SELECT latest_sent_at FROM replay_marks
         ORDER BY latest_sent_at LIMIT ?1)",
        params![excess as i64],
        |r| r.get(0),
    )?;
    tx.execute(
        "DELETE FROM replay_marks WHERE author IN (SELECT author FROM replay_marks
         ORDER BY latest_sent_at LIMIT ?1)",
        params![excess as i64],
    )?;
    if let Some(latest) = latest {
        raise_floor(tx, (latest as u64).saturating_add(1))?;
    }
    Ok(())
}

/// Pins `id` at first contact and notes what was just learned of it.
fn touch_contact(
    tx: &rusqlite::Transaction<'_>,
    id: &NodeId,
    at: i64,
    peer_id: Option<String>,
    heard: bool,
    offline: bool,
) -> Result<(), rusqlite::Error> {
    let hex = id.to_hex();
    let known: Option<i64> = tx
        .query_row("SELECT 1 FROM contacts WHERE id = ?1", params![hex], |r| {
            r.get(0)
        })
        .optional()?;
    if known.is_none() {
        let count: i64 = tx.query_row("SELECT COUNT(*) FROM contacts", [], |r| r.get(0))?;
        if count as u64 >= MAX_CONTACTS {
            tx.execute(
                "DELETE FROM contacts WHERE id =
                 (SELECT id FROM contacts ORDER BY last_seen_ms LIMIT 1)",
                [],
            )?;
        }
        tx.execute(
            "INSERT INTO contacts (id, first_seen_ms, last_seen_ms) VALUES (?1, ?2, ?2)",
            params![hex, at],
        )?;
    }
    tx.execute(
        "UPDATE contacts SET last_seen_ms = ?2,
         peer_id = COALESCE(peer_id, ?3),
         last_heard_ms = CASE WHEN ?4 THEN ?2 ELSE last_heard_ms END,
         last_offline_ms = CASE WHEN ?5 THEN ?2 ELSE last_offline_ms END
         WHERE id = ?1",
        params![hex, at, peer_id, heard, offline],
    )?;
    Ok(())
}

/// A `messages` row; `None` for a row this code did not write.
fn read_chat(r: &rusqlite::Row<'_>) -> Result<Option<StoredChat>, rusqlite::Error> {
    let peer: String = r.get(1)?;
    let state: String = r.get(6)?;
    let said_by: Option<String> = r.get(8)?;
    let hops: Option<i64> = r.get(9)?;
    let (Ok(peer), Some(state)) = (peer.parse::<NodeId>(), ChatState::parse(&state)) else {
        return Ok(None);
    };
    Ok(Some(StoredChat {
        row: r.get::<_, i64>(0)? as u64,
        peer,
        direction: if r.get::<_, i64>(2)? != 0 {
            Direction::Out
        } else {
            Direction::In
        },
        msg_id: MsgId(r.get::<_, i64>(3)? as u64),
        body: r.get(4)?,
        at_ms: r.get::<_, i64>(5)? as u64,
        state,
        reason: r.get(7)?,
        said_by: said_by.as_deref().and_then(SaidBy::parse),
        hops: hops.and_then(|h| u8::try_from(h).ok()),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(label: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("skyhop-db-{label}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("temp dir");
        d
    }

    fn id(n: u8) -> NodeId {
        NodeId([n; 32])
    }

    const T0: SimTime = 1_800_000_000 * skyhop_core::SECS;

    #[test]
    fn a_received_chat_and_a_sent_chats_outcome_are_there_after_reopening() {
        let d = dir("reopen");
        let mut h = History::open(&d, HistoryLimits::default(), T0).expect("open");
        let writes = [
            Write::Received {
                from: id(1),
                msg_id: MsgId(7),
                body: "hi".into(),
                hops: 2,
            },
            Write::Sent {
                to: id(1),
                msg_id: MsgId(u64::MAX),
                body: "hello".into(),
            },
            Write::Sent {
                to: id(2),
                msg_id: MsgId(9),
                body: "anyone?".into(),
            },
            Write::Sent {
                to: id(3),
                msg_id: MsgId(10),
                body: "pending".into(),
            },
        ];
        h.apply(&writes, T0, |_| None).expect("apply");
        let outcomes = [
            Write::Delivered {
                to: id(1),
                msg_id: MsgId(u64::MAX),
                hops: 3,
            },
            Write::Failed {
                to: id(2),
                msg_id: Some(MsgId(9)),
                body: None,
                reason: "recipient is offline".into(),
                said_by: SaidBy::HomeSupernode,
                offline: true,
            },
        ];
        h.apply(&outcomes, T0 + 1_000_000, |_| None).expect("apply");
        drop(h);
        let h = History::open(&d, HistoryLimits::default(), T0 + 2_000_000).expect("reopen");
        let all = h.page(None, 100).expect("page").messages;
        assert_eq!(all.len(), 4);
        assert_eq!(
            (all[0].direction, all[0].state, all[0].body.as_str()),
            (Direction::In, ChatState::Received, "hi")
        );
        assert_eq!(all[1].msg_id, MsgId(u64::MAX), "u64 ids keep their bits");
        assert_eq!(
            (all[1].state, all[1].said_by, all[1].hops),
            (ChatState::Delivered, Some(SaidBy::Recipient), Some(3))
        );
        assert_eq!(
            (all[2].state, all[2].said_by),
            (ChatState::Failed, Some(SaidBy::HomeSupernode))
        );
        assert_eq!(
            all[3].state,
            ChatState::Interrupted,
            "a chat still pending when the node stopped"
        );
        let with_1 = h.page(Some(id(1)), 100).expect("page").messages;
        assert_eq!(with_1.len(), 2);
        let contacts = h
            .contacts(T0 / 1000 * 1000 + 2_000_000, |_| false)
            .expect("c");
        assert_eq!(contacts.len(), 3);
        let c2 = contacts.iter().find(|c| c.id == id(2)).expect("contact 2");
        assert_eq!(c2.presence, Presence::Offline);
        let c1 = contacts.iter().find(|c| c.id == id(1)).expect("contact 1");
        assert_eq!(c1.presence, Presence::Online);
        assert_eq!(c1.first_seen_ms, T0 / 1000, "pinned at first contact");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn the_row_bound_deletes_the_oldest_and_counts_them() {
        let d = dir("bound");
        let limits = HistoryLimits {
            max_rows: 5,
            max_age_days: 1,
        };
        let mut h = History::open(&d, limits, T0).expect("open");
        for n in 0..8u64 {
            let w = Write::Received {
                from: id(1),
                msg_id: MsgId(n),
                body: format!("m{n}"),
                hops: 1,
            };
            h.apply(&[w], T0, |_| None).expect("apply");
        }
        let page = h.page(None, 100).expect("page");
        let bodies: Vec<&str> = page.messages.iter().map(|m| m.body.as_str()).collect();
        assert_eq!(bodies, ["m3", "m4", "m5", "m6", "m7"]);
        assert_eq!((page.rows, page.evicted), (5, 3));
        // Two days later every row is past the age bound.
        h.prune_age(T0 + 2 * 24 * 3600 * skyhop_core::SECS)
            .expect("prune");
        assert_eq!((h.rows(), h.evicted()), (0, 8));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_file_that_is_not_a_history_names_itself_and_the_fix() {
        let d = dir("corrupt");
        std::fs::write(d.join(HISTORY_FILE), vec![0x42u8; 8192]).expect("write");
        let e = History::open(&d, HistoryLimits::default(), T0)
            .expect_err("garbage is refused")
            .to_string();
        assert!(
            e.contains(HISTORY_FILE) && e.contains("corrupt") && e.contains("move it away"),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn limits_out_of_range_are_refused() {
        let bad_rows = HistoryLimits {
            max_rows: 0,
            max_age_days: 1,
        };
        assert_eq!(bad_rows.validate(), Err(LimitsError::Rows(0)));
        let bad_days = HistoryLimits {
            max_rows: 1,
            max_age_days: MAX_AGE_DAYS_LIMIT + 1,
        };
        assert!(bad_days.validate().is_err());
        assert!(HistoryLimits::default().validate().is_ok());
    }

    #[test]
    fn presence_follows_the_latest_word() {
        let min = 60_000;
        assert_eq!(presence(10 * min, true, None, None), Presence::Online);
        assert_eq!(
            presence(10 * min, false, Some(9 * min), None),
            Presence::Online
        );
        assert_eq!(
            presence(10 * min, false, Some(9 * min), Some(9 * min + 1)),
            Presence::Offline
        );
        assert_eq!(
            presence(100 * min, false, Some(9 * min), None),
            Presence::Unknown
        );
        assert_eq!(presence(10 * min, false, None, None), Presence::Unknown);
    }

    #[test]
    fn replay_marks_are_there_after_reopening_and_bounded() {
        let d = dir("marks");
        let mut h = History::open(&d, HistoryLimits::default(), T0).expect("open");
        let mark = |n: u64| ReplayMark {
            seq: u64::MAX - n,
            epoch: n,
            latest_sent_at: 1_000 + n,
        };
        let author = |n: u64| {
            let mut b = [0u8; 32];
            b[..8].copy_from_slice(&n.to_be_bytes());
            NodeId(b)
        };
        h.apply(
            &[Write::ReplayMark {
                author: author(0),
                mark: mark(0),
                forgotten_before: 5,
            }],
            T0,
            |_| None,
        )
        .expect("apply");
        // A later mark of the same author replaces it; the floor never drops.
        h.apply(
            &[Write::ReplayMark {
                author: author(0),
                mark: mark(1),
                forgotten_before: 0,
            }],
            T0,
            |_| None,
        )
        .expect("apply");
        drop(h);
        let h = History::open(&d, HistoryLimits::default(), T0).expect("reopen");
        assert_eq!(
            h.replay_marks().expect("read"),
            (vec![(author(0), mark(1))], 5)
        );
        drop(h);
        // Past the bound, the oldest go and the floor rises past them.
        let mut h = History::open(&d, HistoryLimits::default(), T0).expect("reopen");
        let writes: Vec<Write> = (1..=MAX_REPLAY_MARKS + 1)
            .map(|n| Write::ReplayMark {
                author: author(n),
                mark: mark(n),
                forgotten_before: 0,
            })
            .collect();
        h.apply(&writes, T0, |_| None).expect("apply");
        let (marks, floor) = h.replay_marks().expect("read");
        assert_eq!(marks.len() as u64, MAX_REPLAY_MARKS);
        assert!(!marks
            .iter()
            .any(|(a, _)| *a == author(0) || *a == author(1)));
        assert_eq!(floor, mark(1).latest_sent_at + 1);
    }
}
