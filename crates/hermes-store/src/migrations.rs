//! Numbered schema migrations, applied in order inside one transaction each.
//!
//! Never edit a released migration: add the next one. `PRAGMA user_version` records the last
//! applied; a file from a newer hermes is refused rather than half-understood.

use rusqlite::Connection;

use crate::StoreError;

/// Migration N is `MIGRATIONS[N - 1]`.
const MIGRATIONS: &[&str] = &[
    // 1: the inbound journal and the drop ledger.
    "CREATE TABLE inbox (
        seq INTEGER PRIMARY KEY,
        chat TEXT NOT NULL,
        sender TEXT NOT NULL,
        msg_id TEXT NOT NULL CHECK (length(msg_id) > 0),
        sender_alt TEXT,
        ts INTEGER NOT NULL,
        text TEXT,
        done INTEGER NOT NULL DEFAULT 0,
        UNIQUE (chat, sender, msg_id)
    );
    CREATE INDEX inbox_pending ON inbox (done, seq);
    CREATE TABLE drops (
        seq INTEGER PRIMARY KEY,
        at INTEGER NOT NULL,
        chat TEXT NOT NULL,
        sender TEXT NOT NULL,
        sender_forms TEXT NOT NULL,
        rule TEXT NOT NULL,
        nearest TEXT,
        hint TEXT
    );
    CREATE INDEX drops_at ON drops (at);",
];

pub(crate) const LATEST: i64 = MIGRATIONS.len() as i64;

pub(crate) fn apply(conn: &mut Connection) -> Result<(), StoreError> {
    let current: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if current > LATEST {
        return Err(StoreError::TooNew { found: current, known: LATEST });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(usize::try_from(current).unwrap_or(0)) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i64::try_from(i + 1).unwrap_or(i64::MAX))?;
        tx.commit()?;
    }
    Ok(())
}
