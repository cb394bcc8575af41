//! The gateway's own state, in one SQLite file (`HERMES_HOME/state/hermes.db`, WAL).
//!
//! What must survive a crash lives here: every inbound message is journaled before WhatsApp
//! is told it arrived, keyed by (chat, sender, id) so a redelivery is a no-op; every message
//! the gateway did not answer leaves a row in the drop ledger saying why. Each write that
//! matters is one transaction. Schema changes are numbered migrations, applied in order.

pub mod files;
mod inbox;
mod migrations;
mod outbox;
mod pairing;
mod retention;

pub use inbox::PREVIEW_CHARS;
pub use outbox::{Delivery, Outgoing, Reply, Role};
pub use pairing::{Approval, Code};
pub use retention::Pruned;

use std::path::Path;

use rusqlite::Connection;

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
    /// Sent by the linked account itself (typed on the phone, or our own echo).
    pub from_me: bool,
    /// JIDs the message mentions.
    pub mentions: Vec<String>,
    /// The author of the message it quotes, if it quotes one.
    pub quoted: Option<String>,
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

    /// Opens for reading only, for commands that look and change nothing (`status`, `drops`):
    /// no WAL switch, no migration, no file created. `None` when there is no database yet.
    /// A file from a newer hermes is refused; an older one is read as it is.
    pub fn open_read_only(path: &Path) -> Result<Option<Store>, StoreError> {
        if !path.exists() {
            return Ok(None);
        }
        let conn = files::open_sqlite_read_only(path)?;
        let found: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if found > migrations::LATEST {
            return Err(StoreError::TooNew { found, known: migrations::LATEST });
        }
        Ok(Some(Store { conn }))
    }

    /// The schema version in the file.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        Ok(self.conn.pragma_query_value(None, "user_version", |r| r.get(0))?)
    }
}

#[cfg(test)]
mod tests;
