//! The gateway's own state, in one SQLite file (`HERMES_HOME/state/hermes.db`, WAL).
//!
//! What must survive a crash lives here: every inbound message is journaled before WhatsApp
//! is told it arrived, keyed by (chat, sender, id) so a redelivery is a no-op; every message
//! the gateway did not answer leaves a row in the drop ledger saying why. Each write that
//! matters is one transaction. Schema changes are numbered migrations, applied in order.

mod agent;
pub mod clock;
pub mod crash;
mod db;
mod export;
pub mod files;
mod inbox;
mod migrations;
mod outbox;
mod pairing;
mod retention;

pub use agent::{AgentSession, KnownSession, NewTurn, Turn, TurnEnd};
pub use db::Db;
pub use export::{Entry, EntryKind};
/// The schema version this hermes writes (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i64 = migrations::LATEST;
pub use inbox::{Current, Facts, Offered, Outcome, PREVIEW_CHARS, Settlement};
pub use outbox::{Delivery, Outgoing, Reply, Role};
pub use pairing::{Approval, Code};
pub use retention::Pruned;

use std::path::Path;

use hermes_core::admission::DropRule;
use hermes_core::identity::{Jid, MessageId};
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
    /// A message was to be decided or answered, but it is no longer waiting: another handling
    /// got there first. The transaction changed nothing, so the message is answered once.
    #[error("journaled message {0} was already handled")]
    NotWaiting(i64),
}

/// One inbound message, as journaled. Addresses are typed once, where the protocol hands
/// them over ([`Jid::from_wire`] keeps whatever arrives), and stay typed to the sender.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inbound {
    pub chat: Jid,
    pub sender: Jid,
    pub id: MessageId,
    /// The sender's other form (its phone JID for a LID, or the reverse), when known.
    pub sender_alt: Option<Jid>,
    /// The message's own timestamp, unix seconds.
    pub timestamp: i64,
    pub text: Option<String>,
    /// Sent by the linked account itself (typed on the phone, or our own echo).
    pub from_me: bool,
    /// WhatsApp delivered it again, but another client of this device (Hermes' bridge, before
    /// an import) had already decrypted it and its text went with that client: the sender is
    /// asked to send it again rather than left unanswered.
    pub unreadable: bool,
    /// JIDs the message mentions.
    pub mentions: Vec<Jid>,
    /// The author of the message it quotes, if it quotes one.
    pub quoted: Option<Jid>,
    /// The message it quotes (a reply), as WhatsApp says it: its id, and the text of the copy
    /// WhatsApp embeds (what it was, for a message hermes no longer keeps).
    pub quote: Option<Quote>,
    /// Its media, to be downloaded when it is handled (never before it is acknowledged).
    pub media: Option<hermes_core::media::MediaRef>,
    /// It edits or deletes an earlier message of the same sender in the same chat.
    pub change: Option<Change>,
}

impl Inbound {
    /// A plain text message of `sender` in `chat`, nothing else about it known (no other form,
    /// no mention, quote or media).
    pub fn text(chat: Jid, sender: Jid, id: MessageId, timestamp: i64, text: &str) -> Inbound {
        Inbound {
            chat,
            sender,
            id,
            sender_alt: None,
            timestamp,
            text: Some(text.to_owned()),
            from_me: false,
            unreadable: false,
            mentions: Vec::new(),
            quoted: None,
            quote: None,
            media: None,
            change: None,
        }
    }
}

/// The message a reply quotes, as the reply carries it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Quote {
    pub id: MessageId,
    /// The embedded copy's text (or the description of what is not text).
    pub text: Option<String>,
}

/// A quoted message as hermes kept it: one of the chat's messages, or one of its replies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Quoted {
    /// Written by the linked account (a reply of the agent's, or the owner's own message).
    pub ours: bool,
    /// What the agent read of it: a voice note's transcript, a document's text; else its text.
    pub text: Option<String>,
    pub media: Option<hermes_core::media::MediaRef>,
}

/// What a message does to an earlier one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// The sender edited message `of` to say `text`: what the agent reads if it has not
    /// answered yet. The edit's own text says what changed, for when it has.
    Edit { of: MessageId, text: String },
    /// The sender deleted message `of` for everyone: not answered if it is still waiting.
    Revoke { of: MessageId },
}

/// Whether a journaled message is new or a redelivery of one already kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Journaled {
    New(i64),
    Duplicate,
}

/// A message the gateway did not answer, and why: a row of the drop ledger.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dropped {
    /// Unix seconds.
    pub at: i64,
    pub chat: Jid,
    pub sender: Jid,
    /// Every known form of the sender, the one it wrote from first.
    pub sender_forms: Vec<Jid>,
    pub rule: DropRule,
    pub nearest: Option<String>,
    pub hint: Option<String>,
}

/// Where a journaled message is: stored as the words, so a reader of the file sees them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MessageState {
    /// Not decided yet, or asked about again after a failure.
    Waiting,
    /// Answered, dropped with a ledger row, or not for anyone.
    Handled,
    /// A LID sender refused only for want of its phone number; learning it makes the
    /// message waiting again.
    Parked,
}

impl MessageState {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            MessageState::Waiting => "waiting",
            MessageState::Handled => "handled",
            MessageState::Parked => "parked",
        }
    }
}

/// A JID column as written.
pub(crate) fn jid_at(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Jid> {
    Ok(Jid::from_wire(&r.get::<_, String>(i)?))
}

/// A list of JIDs in one column, comma-separated (no JID holds a comma).
pub(crate) fn jids(s: Option<String>) -> Vec<Jid> {
    s.map(|s| s.split(',').filter(|j| !j.is_empty()).map(Jid::from_wire).collect()).unwrap_or_default()
}

pub(crate) fn join_jids(list: &[Jid]) -> Option<String> {
    (!list.is_empty()).then(|| list.iter().map(Jid::to_string).collect::<Vec<_>>().join(","))
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
        keep_plans(&conn)?;
        migrations::apply(&mut conn)?;
        Ok(Store { conn })
    }

    /// A second connection to a database [`Store::open`] has opened and migrated, for the
    /// running gateway's reads ([`Db::read`]): WAL lets it read beside the writer's commits
    /// without waiting for them. It refuses writes (`query_only`), so nothing can slip past
    /// the one writer.
    pub(crate) fn open_reader(path: &Path) -> Result<Store, StoreError> {
        let conn = Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.pragma_update(None, "query_only", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        keep_plans(&conn)?;
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

/// Prepared statements kept per connection (each is a few KiB).
const STATEMENT_CACHE: usize = 128;

/// Every statement of the message path is prepared once and kept.
///
/// The cache must hold them all: rusqlite's default of 16 is smaller than the statements one
/// message goes through (journal, facts, decision, history, reply, outbox). And SQLite must
/// not throw a cached statement's plan away: it does so each time a parameter that could
/// change the plan is bound again, and it counts `LIMIT ?` among those, so the history, the
/// dispatcher's and the outbox's reads were parsed and planned again on every use (a backlog
/// drain's profile: 5 % of the gateway's time in `sqlite3Reprepare`, about 2 % of it in these
/// connections and the rest in whatsapp-rust's, see `.cargo/config.toml`). With the query planner
/// stability guarantee a plan is made once; a `LIMIT` is read when the statement runs.
fn keep_plans(conn: &Connection) -> Result<(), StoreError> {
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    Ok(())
}

#[cfg(test)]
mod tests;
