//! Names in the history database: the contact list pins a name to the key
//! it resolved to at first contact (trust on first use), and remembers a
//! different key the name later resolved to until the user re-pins.
//!
//! A child of [`super`] (declared there), so that it shares its connection.

use std::collections::BTreeMap;

use rusqlite::{params, OptionalExtension};
use skyhop_core::SimTime;
use skyhop_protocol::NodeId;

use super::{ms, DbError, History};

/// Name conflicts kept at most (the oldest noticed go first).
pub const MAX_NAME_CONFLICTS: i64 = 10_000;

impl History {
    /// The contact `name` is pinned to.
    pub fn pinned(&self, name: &str) -> Result<Option<NodeId>, DbError> {
        let id: Option<String> = self
            .conn
            .query_row(
                "SELECT id FROM contacts WHERE name = ?1 LIMIT 1",
                params![name],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.fail(e))?;
        Ok(id.and_then(|id| id.parse().ok()))
    }

    /// Pins `name` to `id` (making `id` a contact if it is not one), and
    /// forgets any conflict noticed for `name`.
    pub fn pin(&mut self, name: &str, id: NodeId, now: SimTime) -> Result<(), DbError> {
        let at = ms(now);
        let id = id.to_hex();
        let run = |conn: &rusqlite::Connection| -> Result<(), rusqlite::Error> {
            let tx = conn.unchecked_transaction()?;
            tx.execute(
                "UPDATE contacts SET name = NULL WHERE name = ?1 AND id != ?2",
                params![name, id],
            )?;
            tx.execute(
                "INSERT INTO contacts (id, name, first_seen_ms, last_seen_ms)
                 VALUES (?2, ?1, ?3, ?3)
                 ON CONFLICT (id) DO UPDATE SET name = excluded.name",
                params![name, id, at],
            )?;
            tx.execute("DELETE FROM name_conflicts WHERE name = ?1", params![name])?;
            tx.commit()
        };
        run(&self.conn).map_err(|e| self.fail(e))
    }

    /// Remembers that `name`, pinned to another key, now resolves to `other`.
    pub fn note_conflict(
        &mut self,
        name: &str,
        other: NodeId,
        now: SimTime,
    ) -> Result<(), DbError> {
        let run = |conn: &rusqlite::Connection| -> Result<(), rusqlite::Error> {
            conn.execute(
                "INSERT INTO name_conflicts (name, other, noticed_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT (name) DO UPDATE SET other = excluded.other,
                 noticed_ms = excluded.noticed_ms",
                params![name, other.to_hex(), ms(now)],
            )?;
            conn.execute(
                "DELETE FROM name_conflicts WHERE name IN (SELECT name FROM name_conflicts
                 ORDER BY noticed_ms DESC LIMIT -1 OFFSET ?1)",
                params![MAX_NAME_CONFLICTS],
            )?;
            Ok(())
        };
        run(&self.conn).map_err(|e| self.fail(e))
    }

    /// Every name that resolves to another key than its pin: name -> that key.
    pub fn name_conflicts(&self) -> Result<BTreeMap<String, NodeId>, DbError> {
        let read = || -> Result<BTreeMap<String, NodeId>, rusqlite::Error> {
            let mut stmt = self
                .conn
                .prepare_cached("SELECT name, other FROM name_conflicts")?;
            let rows =
                stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
            let mut out = BTreeMap::new();
            for row in rows {
                let (name, other) = row?;
                if let Ok(other) = other.parse() {
                    out.insert(name, other);
                }
            }
            Ok(out)
        };
        read().map_err(|e| self.fail(e))
    }

    /// The user trusts the key `name` now resolves to: pins it instead of
    /// the old one. The new key, or `None` if no conflict was noticed.
    pub fn repin(&mut self, name: &str, now: SimTime) -> Result<Option<NodeId>, DbError> {
        let Some(other) = self.name_conflicts()?.get(name).copied() else {
            return Ok(None);
        };
        self.pin(name, other, now)?;
        Ok(Some(other))
    }
}

#[cfg(test)]
mod tests {
    use super::super::{History, HistoryLimits};
    use skyhop_protocol::NodeId;

    #[test]
    fn a_pin_holds_until_the_user_repins_the_name() {
        let dir = std::env::temp_dir().join(format!("skyhop-db-names-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut h = History::open(&dir, HistoryLimits::default(), 1_000_000).expect("opens");
        let (old, new) = (NodeId([1; 32]), NodeId([2; 32]));
        assert_eq!(h.pinned("alice").expect("reads"), None);
        h.pin("alice", old, 2_000_000).expect("pins");
        h.note_conflict("alice", new, 3_000_000).expect("notes");
        assert_eq!(
            h.pinned("alice").expect("reads"),
            Some(old),
            "the pin holds"
        );
        let listed = h.contacts(4_000_000, |_| false).expect("lists");
        assert_eq!(listed[0].name.as_deref(), Some("alice"));
        assert_eq!(listed[0].name_conflict, Some(new), "the conflict is shown");
        assert_eq!(h.repin("alice", 5_000_000).expect("repins"), Some(new));
        assert_eq!(h.pinned("alice").expect("reads"), Some(new));
        assert!(h.name_conflicts().expect("reads").is_empty());
        assert_eq!(
            h.repin("alice", 6_000_000).expect("repins"),
            None,
            "nothing to repin"
        );
        drop(h);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
