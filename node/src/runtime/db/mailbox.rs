//! Offline delivery in the data directory's database, both ends of it:
//!
//! - `awaited`: a sender's chats kept by their recipient's home
//!   supernodes, whose receipt it still awaits. Saved on the first
//!   "stored" notice, forgotten when the chat is delivered or fails, and
//!   given back to the core at start, so that a restarted sender still
//!   takes the receipt (and its history then says delivered).
//! - `mailbox`: what a home supernode keeps for nodes that are away
//!   (sealed chats and signed receipts), mirrored from the core's mailbox
//!   journal in the transaction of the batch that changed it, so that a
//!   chat is on disk before the "stored" notice that promises it leaves,
//!   and a restarted home still hands it over.
//!
//! Both are bounded by the core's own bounds (what it awaits, what its
//! mailbox keeps), which the rows mirror; expired rows are deleted when
//! the file is opened and not given back.
//!
//! A child of [`super`] (declared there), so that it shares its connection.

use rusqlite::{params, Transaction};
use skyhop_core::chat::AwaitedChat;
use skyhop_core::mailbox::{Change, Held};
use skyhop_core::SimTime;
use skyhop_protocol::{ChatReceipt, KeptChat, MsgId, NodeId, SealedChat, Signature};

use super::{sql_u64, DbError, History};

/// The tables, created with the others.
pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS awaited (
    msg_id     INTEGER PRIMARY KEY,
    peer       TEXT NOT NULL,
    seq        INTEGER NOT NULL,
    first_sent INTEGER NOT NULL,
    expires    INTEGER NOT NULL,
    stored_by  TEXT
);
CREATE INDEX IF NOT EXISTS awaited_by_expiry ON awaited (expires);
CREATE TABLE IF NOT EXISTS mailbox (
    node       TEXT NOT NULL,
    other      TEXT NOT NULL,
    msg_id     INTEGER NOT NULL,
    expires    INTEGER NOT NULL,
    sealed     BLOB,
    public_key BLOB,
    seq        INTEGER,
    hops       INTEGER,
    signature  BLOB,
    PRIMARY KEY (node, other, msg_id)
);
CREATE INDEX IF NOT EXISTS mailbox_by_expiry ON mailbox (expires);
";

/// Awaited chats kept at most: the core's largest `mailbox.awaiting`.
pub const MAX_AWAITED: i64 = 1_000_000;

/// Saves `chat` (or its newer state) as awaited.
pub(super) fn save_awaited(tx: &Transaction<'_>, chat: &AwaitedChat) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO awaited (msg_id, peer, seq, first_sent, expires, stored_by)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (msg_id) DO UPDATE SET expires = excluded.expires",
        params![
            sql_u64(chat.msg_id.0),
            chat.to.to_hex(),
            sql_u64(chat.seq),
            sql_u64(chat.first_sent),
            sql_u64(chat.expires),
            chat.stored_by.map(|b| b.to_hex()),
        ],
    )?;
    tx.execute(
        "DELETE FROM awaited WHERE msg_id IN
         (SELECT msg_id FROM awaited ORDER BY expires DESC LIMIT -1 OFFSET ?1)",
        params![MAX_AWAITED],
    )?;
    Ok(())
}

/// Chat `msg_id` is delivered or failed: no longer awaited.
pub(super) fn forget_awaited(tx: &Transaction<'_>, msg_id: MsgId) -> rusqlite::Result<()> {
    tx.execute(
        "DELETE FROM awaited WHERE msg_id = ?1",
        params![sql_u64(msg_id.0)],
    )?;
    Ok(())
}

/// Mirrors one change of the core's mailbox.
pub(super) fn apply_change(tx: &Transaction<'_>, change: &Change) -> rusqlite::Result<()> {
    match change {
        Change::Kept(held, expires) => {
            let (node, other, msg_id) = held.key();
            let expires = sql_u64(*expires);
            let key = (node.to_hex(), other.to_hex(), sql_u64(msg_id.0));
            match held {
                Held::Chat(k) => tx.execute(
                    "INSERT OR REPLACE INTO mailbox (node, other, msg_id, expires, sealed)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![key.0, key.1, key.2, expires, k.sealed.0],
                )?,
                Held::Receipt(r) => tx.execute(
                    "INSERT OR REPLACE INTO mailbox
                     (node, other, msg_id, expires, public_key, seq, hops, signature)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    params![
                        key.0,
                        key.1,
                        key.2,
                        expires,
                        &r.public_key[..],
                        sql_u64(r.seq),
                        r.hops,
                        &r.signature.0[..]
                    ],
                )?,
            };
        }
        Change::Dropped((node, other, msg_id)) => {
            tx.execute(
                "DELETE FROM mailbox WHERE node = ?1 AND other = ?2 AND msg_id = ?3",
                params![node.to_hex(), other.to_hex(), sql_u64(msg_id.0)],
            )?;
        }
    }
    Ok(())
}

/// One `mailbox` row as what it holds; `None` for a row this code cannot
/// read (it is skipped, not fatal).
fn read_held(r: &rusqlite::Row<'_>) -> rusqlite::Result<Option<(Held, SimTime)>> {
    let node: String = r.get(0)?;
    let other: String = r.get(1)?;
    let msg_id = MsgId(r.get::<_, i64>(2)? as u64);
    let expires = r.get::<_, i64>(3)? as u64;
    let sealed: Option<Vec<u8>> = r.get(4)?;
    let public_key: Option<Vec<u8>> = r.get(5)?;
    let seq: Option<i64> = r.get(6)?;
    let hops: Option<u8> = r.get(7)?;
    let signature: Option<Vec<u8>> = r.get(8)?;
    let (Ok(node), Ok(other)) = (node.parse::<NodeId>(), other.parse::<NodeId>()) else {
        return Ok(None);
    };
    let held = match (sealed, public_key, seq, hops, signature) {
        (Some(sealed), ..) => Held::Chat(KeptChat {
            author: other,
            node,
            msg_id,
            sealed: SealedChat(sealed),
        }),
        (None, Some(pk), Some(seq), Some(hops), Some(sig)) => {
            let (Ok(public_key), Ok(signature)) = (pk.try_into(), <[u8; 64]>::try_from(sig)) else {
                return Ok(None);
            };
            Held::Receipt(ChatReceipt {
                recipient: other,
                public_key,
                author: node,
                msg_id,
                seq: seq as u64,
                hops,
                signature: Signature(signature),
            })
        }
        _ => return Ok(None),
    };
    Ok(Some((held, expires)))
}

impl History {
    /// The chats whose receipt this node awaited when it stopped, not yet
    /// past their expiry at `now`.
    pub fn awaited(&self, now: SimTime) -> Result<Vec<AwaitedChat>, DbError> {
        let read = || -> rusqlite::Result<Vec<AwaitedChat>> {
            let mut stmt = self.conn.prepare_cached(
                "SELECT msg_id, peer, seq, first_sent, expires, stored_by FROM awaited
                 WHERE expires > ?1 ORDER BY expires",
            )?;
            let rows = stmt.query_map(params![sql_u64(now)], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, Option<String>>(5)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (msg_id, peer, seq, first_sent, expires, by) = row?;
                let Ok(to) = peer.parse() else { continue };
                out.push(AwaitedChat {
                    to,
                    msg_id: MsgId(msg_id as u64),
                    seq: seq as u64,
                    first_sent: first_sent as u64,
                    expires: expires as u64,
                    stored_by: by.and_then(|b| b.parse().ok()),
                });
            }
            Ok(out)
        };
        read().map_err(|e| self.fail(e))
    }

    /// What this node's mailbox kept when it stopped, not yet expired at
    /// `now` (expired rows are deleted), soonest to expire first.
    pub fn mailbox(&self, now: SimTime) -> Result<Vec<(Held, SimTime)>, DbError> {
        let read = || -> rusqlite::Result<Vec<(Held, SimTime)>> {
            self.conn.execute(
                "DELETE FROM mailbox WHERE expires <= ?1",
                params![sql_u64(now)],
            )?;
            let mut stmt = self.conn.prepare_cached(
                "SELECT node, other, msg_id, expires, sealed, public_key, seq, hops, signature
                 FROM mailbox ORDER BY expires",
            )?;
            let rows = stmt.query_map([], read_held)?;
            let mut out = Vec::new();
            for row in rows {
                out.extend(row?);
            }
            Ok(out)
        };
        read().map_err(|e| self.fail(e))
    }
}

#[cfg(test)]
mod tests {
    use super::super::{History, HistoryLimits, Write};
    use super::*;

    #[test]
    fn awaited_chats_and_kept_items_are_there_after_reopening_until_they_expire() {
        let dir = std::env::temp_dir().join(format!("skyhop-db-mailbox-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let (alice, bob, home) = (NodeId([1; 32]), NodeId([2; 32]), NodeId([3; 32]));
        let chat = AwaitedChat {
            to: bob,
            msg_id: MsgId(u64::MAX - 1),
            seq: 4,
            first_sent: 1_000_000,
            expires: 9_000_000,
            stored_by: Some(home),
        };
        let kept = Held::Chat(KeptChat {
            author: alice,
            node: bob,
            msg_id: MsgId(5),
            sealed: SealedChat(vec![1, 2, 3]),
        });
        let receipt = Held::Receipt(ChatReceipt {
            recipient: bob,
            public_key: [7; 32],
            author: alice,
            msg_id: MsgId(6),
            seq: 2,
            hops: 3,
            signature: Signature([8; 64]),
        });
        let gone = Held::Chat(KeptChat {
            author: alice,
            node: bob,
            msg_id: MsgId(7),
            sealed: SealedChat(vec![9]),
        });
        {
            let mut h = History::open(&dir, HistoryLimits::default(), 1_000_000).expect("opens");
            let writes = vec![
                Write::Awaited(chat.clone()),
                Write::Mailbox(Change::Kept(kept.clone(), 8_000_000)),
                Write::Mailbox(Change::Kept(receipt.clone(), 9_000_000)),
                Write::Mailbox(Change::Kept(gone.clone(), 9_000_000)),
                Write::Mailbox(Change::Dropped(gone.key())),
            ];
            h.apply(&writes, 2_000_000, |_| None).expect("applies");
        }
        let h = History::open(&dir, HistoryLimits::default(), 3_000_000).expect("reopens");
        assert_eq!(h.awaited(3_000_000).expect("reads"), vec![chat.clone()]);
        assert_eq!(
            h.mailbox(3_000_000).expect("reads"),
            vec![(kept, 8_000_000), (receipt.clone(), 9_000_000)],
            "what was kept and not dropped, bytes and signature intact"
        );
        assert_eq!(
            h.mailbox(8_500_000).expect("reads"),
            vec![(receipt, 9_000_000)],
            "the expired chat is gone"
        );
        assert!(h.awaited(9_000_000).expect("reads").is_empty());
        drop(h);
        let mut h = History::open(&dir, HistoryLimits::default(), 3_000_000).expect("reopens");
        let done = vec![Write::Delivered {
            to: bob,
            msg_id: chat.msg_id,
            hops: 2,
        }];
        h.apply(&done, 4_000_000, |_| None).expect("applies");
        assert!(
            h.awaited(4_000_000).expect("reads").is_empty(),
            "a delivered chat is awaited no more"
        );
        drop(h);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
