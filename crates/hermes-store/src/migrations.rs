//! Numbered schema migrations, applied in order inside one transaction each.
//!
//! Never edit a released migration: add the next one. `PRAGMA user_version` records the last
//! applied; a file from a newer hermes is refused rather than half-understood.
//!
//! Compatibility: migration 4 renames state columns, so a hermes older than it cannot read a
//! migrated file. Only the gateway migrates while another process may hold the file; the
//! other commands that write (`pairing`) refuse to migrate while an older gateway runs.

use rusqlite::Connection;

use crate::StoreError;

/// Migration N is `MIGRATIONS[N - 1]`.
pub(crate) const MIGRATIONS: &[&str] = &[
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
    // 2: what the pipeline needs to answer exactly once. `inbox.done`: 0 waiting, 1 handled,
    // 2 parked (a LID sender refused for want of its phone number, re-decided when it is learned).
    "ALTER TABLE inbox ADD COLUMN from_me INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE inbox ADD COLUMN mentions TEXT;
    ALTER TABLE inbox ADD COLUMN quoted TEXT;
    CREATE INDEX inbox_sender ON inbox (sender, done);
    CREATE TABLE aliases (
        lid TEXT PRIMARY KEY,
        phone TEXT NOT NULL,
        learned_at INTEGER NOT NULL
    );
    CREATE INDEX aliases_phone ON aliases (phone);
    CREATE TABLE outbox (
        seq INTEGER PRIMARY KEY,
        chat TEXT NOT NULL,
        msg_id TEXT NOT NULL UNIQUE CHECK (length(msg_id) > 0),
        text TEXT NOT NULL,
        part INTEGER NOT NULL DEFAULT 0,
        created_at INTEGER NOT NULL,
        sent_at INTEGER,
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT
    );
    CREATE INDEX outbox_unsent ON outbox (sent_at, seq);
    CREATE TABLE history (
        seq INTEGER PRIMARY KEY,
        chat TEXT NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('user', 'assistant')),
        content TEXT NOT NULL,
        at INTEGER NOT NULL
    );
    CREATE INDEX history_chat ON history (chat, seq);
    CREATE TABLE pairing_codes (
        code TEXT PRIMARY KEY,
        sender TEXT NOT NULL,
        chat TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        approved_at INTEGER
    );
    CREATE TABLE approvals (
        sender TEXT PRIMARY KEY,
        approved_at INTEGER NOT NULL,
        code TEXT
    );",
    // 3: retention: what is pruned is found by its age without a scan.
    "CREATE INDEX inbox_ts ON inbox (ts);
    CREATE INDEX outbox_created ON outbox (created_at);
    CREATE INDEX history_at ON history (at);
    CREATE INDEX pairing_codes_created ON pairing_codes (created_at);",
    // 4: states in words. `inbox.done` (0 waiting, 1 handled, 2 parked) becomes `inbox.state`;
    // `outbox.sent_at = -1` (given up) becomes `outbox.state = 'abandoned'`, so that no
    // reader can take a marker for a time.
    "ALTER TABLE inbox ADD COLUMN state TEXT NOT NULL DEFAULT 'waiting'
        CHECK (state IN ('waiting', 'handled', 'parked'));
    UPDATE inbox SET state = CASE done WHEN 1 THEN 'handled' WHEN 2 THEN 'parked' ELSE 'waiting' END;
    DROP INDEX inbox_pending;
    DROP INDEX inbox_sender;
    ALTER TABLE inbox DROP COLUMN done;
    CREATE INDEX inbox_pending ON inbox (state, seq);
    CREATE INDEX inbox_sender ON inbox (sender, state);
    ALTER TABLE outbox ADD COLUMN state TEXT NOT NULL DEFAULT 'queued'
        CHECK (state IN ('queued', 'sent', 'abandoned'));
    UPDATE outbox SET state = CASE WHEN sent_at IS NULL THEN 'queued' WHEN sent_at = -1 THEN 'abandoned' ELSE 'sent' END;
    UPDATE outbox SET sent_at = NULL WHERE sent_at = -1;
    DROP INDEX outbox_unsent;
    CREATE INDEX outbox_unsent ON outbox (state, seq);",
    // 5: a message whose text another client of the device took (see `Inbound::unreadable`).
    "ALTER TABLE inbox ADD COLUMN unreadable INTEGER NOT NULL DEFAULT 0;",
    // 6: a message's media reference (JSON), fetched when the message is handled; and the
    // edit whose text a waiting message took (the edit is then answered with it).
    "ALTER TABLE inbox ADD COLUMN media TEXT;
    ALTER TABLE inbox ADD COLUMN absorbed_by INTEGER;",
    // 7: a file to send (JSON: where it is, and its upload once done); `text` is its caption.
    "ALTER TABLE outbox ADD COLUMN media TEXT;",
    // 8: how many times handling a waiting message started without ending (the process died
    // on it: a crash, an abort, the OOM killer): a poison message is given up after a few.
    "ALTER TABLE inbox ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;",
    // 9: Hermes Agent's sessions and turns (`agent.rs`): each conversation's generation and
    // transcript id, every id sent (reminders find their chat by it), each turn kept before
    // it is sent, and the scheduled jobs' runs delivered.
    "CREATE TABLE agent_sessions (
        conversation TEXT PRIMARY KEY,
        chat TEXT NOT NULL,
        generation INTEGER NOT NULL,
        session_id TEXT NOT NULL,
        updated_at INTEGER NOT NULL
    );
    CREATE TABLE agent_session_ids (
        session_id TEXT PRIMARY KEY,
        chat TEXT NOT NULL,
        first_at INTEGER NOT NULL
    );
    CREATE TABLE agent_turns (
        id INTEGER PRIMARY KEY,
        chat TEXT NOT NULL,
        conversation TEXT NOT NULL,
        memory_key TEXT NOT NULL,
        session_id TEXT NOT NULL,
        idempotency_key TEXT NOT NULL,
        body TEXT NOT NULL,
        asked TEXT NOT NULL,
        answers TEXT NOT NULL,
        opened_at INTEGER NOT NULL,
        resumed INTEGER NOT NULL DEFAULT 0,
        noted INTEGER NOT NULL DEFAULT 0,
        state TEXT NOT NULL DEFAULT 'asking' CHECK (state IN ('asking', 'answered', 'failed', 'abandoned'))
    );
    CREATE INDEX agent_turns_open ON agent_turns (chat, state);
    CREATE INDEX agent_turns_opened ON agent_turns (opened_at);
    CREATE TABLE reminder_jobs (
        job_id TEXT PRIMARY KEY,
        chat TEXT NOT NULL,
        name TEXT,
        seen_at INTEGER NOT NULL
    );
    CREATE TABLE reminder_deliveries (
        job_id TEXT NOT NULL,
        run TEXT NOT NULL,
        chat TEXT NOT NULL,
        at INTEGER NOT NULL,
        PRIMARY KEY (job_id, run)
    );",
    // 10: replies: the quoted message's id and the text of the copy WhatsApp embeds; what the
    // agent read of a media message (a transcript, a document's text), for a later quote of
    // it; and the lookup of a chat's message by its id.
    "ALTER TABLE inbox ADD COLUMN quoted_id TEXT;
    ALTER TABLE inbox ADD COLUMN quoted_text TEXT;
    ALTER TABLE inbox ADD COLUMN read_as TEXT;
    CREATE INDEX inbox_msg ON inbox (chat, msg_id);
    CREATE INDEX outbox_chat_msg ON outbox (chat, msg_id);",
    // 11: chats a person took over (`hermes_core::handoff`): the agent does not answer them
    // until `until` (NULL: until resumed).
    "CREATE TABLE paused_chats (
        chat TEXT PRIMARY KEY,
        since INTEGER NOT NULL,
        until INTEGER,
        by TEXT NOT NULL
    );",
    // 12: group chatter kept as context for the agent's next turn in the group (handled,
    // never answered on its own; its text is kept, not cut to a preview): 1 kept, 2 carried
    // by a turn already.
    "ALTER TABLE inbox ADD COLUMN context INTEGER NOT NULL DEFAULT 0;",
    // 13: the reply-loop breaker counts a chat's recent replies on every message's path: a
    // range of the index, not a scan of the chat's whole outbox.
    "CREATE INDEX outbox_chat_created ON outbox (chat, created_at);",
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
