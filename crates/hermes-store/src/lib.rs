//! The gateway's own state, in one SQLite file (`HERMES_HOME/state/hermes.db`, WAL).
//!
//! What must survive a crash lives here: every inbound message is journaled before WhatsApp
//! is told it arrived, keyed by (chat, sender, id) so a redelivery is a no-op; every message
//! the gateway did not answer leaves a row in the drop ledger saying why. Each write that
//! matters is one transaction. Schema changes are numbered migrations, applied in order.

mod migrations;

use std::path::Path;

use rusqlite::{Connection, OptionalExtension as _, params};

/// What can go wrong with the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// SQLite failed (disk full, corrupt file, permissions...).
    #[error("state database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The file was written by a newer hermes; opening it could lose data.
    #[error(
        "the state database is at schema version {found}, newer than this hermes understands ({known}); update hermes"
    )]
    TooNew { found: i64, known: i64 },
}

/// One inbound message, as journaled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inbound {
    pub chat: String,
    pub sender: String,
    pub id: String,
    /// The sender's other form (its phone JID for a LID, or the reverse), when known.
    pub sender_alt: Option<String>,
    /// The message's own timestamp, unix seconds.
    pub timestamp: i64,
    pub text: Option<String>,
}

/// Whether a journaled message is new or a redelivery of one already kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Journaled {
    New(i64),
    Duplicate,
}

/// A message the gateway did not answer, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Drop {
    /// Unix seconds.
    pub at: i64,
    pub chat: String,
    pub sender: String,
    /// Every known form of the sender, comma-separated.
    pub sender_forms: String,
    /// The access rule that decided (`hermes_core::access::Rule::as_str`).
    pub rule: String,
    pub nearest: Option<String>,
    pub hint: Option<String>,
}

pub struct Store {
    conn: Connection,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating if needed) and migrates the database.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let mut conn = Connection::open(path)?;
        // WAL for concurrent readers (status, drops) beside the gateway; FULL so a commit
        // survives power loss, not just a crash: the journal is the promise behind every ack.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        migrations::apply(&mut conn)?;
        Ok(Store { conn })
    }

    /// The schema version in the file.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        Ok(self.conn.pragma_query_value(None, "user_version", |r| r.get(0))?)
    }

    /// Journals a batch in one transaction: all of it is kept, or none (and the caller must
    /// not acknowledge it). A message already journaled is reported as a duplicate.
    pub fn journal(&mut self, batch: &[Inbound]) -> Result<Vec<Journaled>, StoreError> {
        let tx = self.conn.transaction()?;
        let mut out = Vec::with_capacity(batch.len());
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO inbox (chat, sender, msg_id, sender_alt, ts, text) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (chat, sender, msg_id) DO NOTHING",
            )?;
            for m in batch {
                let n = insert.execute(params![m.chat, m.sender, m.id, m.sender_alt, m.timestamp, m.text])?;
                out.push(if n == 1 { Journaled::New(tx.last_insert_rowid()) } else { Journaled::Duplicate });
            }
        }
        tx.commit()?;
        Ok(out)
    }

    /// Journaled messages not yet marked done, oldest first, with their journal sequence number.
    pub fn pending(&self, limit: usize) -> Result<Vec<(i64, Inbound)>, StoreError> {
        let mut q = self.conn.prepare_cached(
            "SELECT seq, chat, sender, msg_id, sender_alt, ts, text FROM inbox WHERE done = 0 ORDER BY seq LIMIT ?1",
        )?;
        let rows = q.query_map([i64::try_from(limit).unwrap_or(i64::MAX)], |r| {
            Ok((
                r.get(0)?,
                Inbound {
                    chat: r.get(1)?,
                    sender: r.get(2)?,
                    id: r.get(3)?,
                    sender_alt: r.get(4)?,
                    timestamp: r.get(5)?,
                    text: r.get(6)?,
                },
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Marks a journaled message handled (answered, or dropped with a ledger row).
    pub fn mark_done(&mut self, seq: i64) -> Result<(), StoreError> {
        self.conn.execute("UPDATE inbox SET done = 1 WHERE seq = ?1", [seq])?;
        Ok(())
    }

    /// Records a drop and marks its message done, in one transaction.
    pub fn record_drop(&mut self, seq: Option<i64>, d: &Drop) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT INTO drops (at, chat, sender, sender_forms, rule, nearest, hint) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![d.at, d.chat, d.sender, d.sender_forms, d.rule, d.nearest, d.hint],
        )?;
        if let Some(seq) = seq {
            tx.execute("UPDATE inbox SET done = 1 WHERE seq = ?1", [seq])?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Drops at or after `since` (unix seconds), oldest first.
    pub fn drops_since(&self, since: i64) -> Result<Vec<Drop>, StoreError> {
        let mut q = self.conn.prepare_cached(
            "SELECT at, chat, sender, sender_forms, rule, nearest, hint FROM drops WHERE at >= ?1 ORDER BY at, seq",
        )?;
        let rows = q.query_map([since], |r| {
            Ok(Drop {
                at: r.get(0)?,
                chat: r.get(1)?,
                sender: r.get(2)?,
                sender_forms: r.get(3)?,
                rule: r.get(4)?,
                nearest: r.get(5)?,
                hint: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Whether a message is already journaled.
    pub fn is_journaled(&self, chat: &str, sender: &str, id: &str) -> Result<bool, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT 1 FROM inbox WHERE chat = ?1 AND sender = ?2 AND msg_id = ?3",
                [chat, sender, id],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }
}

#[cfg(test)]
mod tests;
