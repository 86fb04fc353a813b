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
//! - The log is copied back into the file by a thread of its own
//!   ([`checkpoint`]), so that no commit waits for a checkpoint.
//! - Errors name the file and the fix: a full disk, a corrupt or foreign
//!   file, a file that cannot be opened.

use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OptionalExtension};

mod checkpoint;
mod mailbox;
mod names;
mod rows;
#[cfg(test)]
mod tests;
mod write;
pub use mailbox::MAX_AWAITED;
pub use names::MAX_NAME_CONFLICTS;
pub use rows::{
    ChatState, Contact, DbError, Direction, HistoryLimits, HistoryPage, LimitsError, Presence,
    SaidBy, StoredChat, Write,
};
use skyhop_core::{ReplayMark, SimTime};
use skyhop_protocol::{MsgId, NodeId};
use write::{apply_one, bound_replay_marks, delete_oldest};

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
    /// Copies the log into the file off the node task; None until the
    /// schema is set up.
    checkpointer: Option<checkpoint::Checkpointer>,
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
            checkpointer: None,
        };
        history.set_up().map_err(|e| history.fail(e))?;
        let checkpointer = checkpoint::Checkpointer::start(&history.path, BUSY_TIMEOUT)
            .map_err(|e| history.fail(e))?;
        history.checkpointer = Some(checkpointer);
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
        // Checkpoints run in a thread of their own (see `checkpoint`).
        self.conn.execute_batch(&format!(
            "PRAGMA wal_autocheckpoint = {};",
            checkpoint::WRITER_CHECKPOINT_PAGES
        ))?;
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
