//! The writes of one batch, inside its transaction.

use rusqlite::{params, Connection, OptionalExtension};
use skyhop_protocol::NodeId;

use super::{mailbox, sql_u64, Write, MAX_CONTACTS, MAX_REPLAY_MARKS};

/// Deletes the `excess` oldest rows; returns how many went.
pub(super) fn delete_oldest(conn: &Connection, excess: u64) -> Result<u64, rusqlite::Error> {
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
pub(super) fn apply_one(
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
pub(super) fn raise_floor(tx: &rusqlite::Transaction<'_>, to: u64) -> Result<(), rusqlite::Error> {
    tx.execute(
        "INSERT INTO replay_floor (id, forgotten_before) VALUES (0, ?1)
         ON CONFLICT (id) DO UPDATE SET forgotten_before = MAX(forgotten_before, ?1)",
        params![sql_u64(to)],
    )?;
    Ok(())
}

/// Keeps at most [`MAX_REPLAY_MARKS`] marks: the ones with the oldest
/// `latest_sent_at` go, and the floor rises past them, as in the core.
pub(super) fn bound_replay_marks(tx: &rusqlite::Transaction<'_>) -> Result<(), rusqlite::Error> {
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
pub(super) fn touch_contact(
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
