//! Retention: nothing the gateway keeps grows forever.
//!
//! Every message, refused ones included, used to stay in the journal with its text, and the
//! ledger, the outbox (with `hermes send` bodies), the history and pairing codes grew without
//! end. [`Store::prune`] removes what is older than the cutoff, in batches. Nothing
//! that still matters goes: messages waiting for an answer, replies not sent yet, and
//! approvals (a decision of the owner's, revoked only by the owner) are kept whatever their age.

use rusqlite::params;

use crate::{Store, StoreError};

/// What one prune removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pruned {
    pub messages: usize,
    pub drops: usize,
    pub replies: usize,
    pub history: usize,
    pub codes: usize,
    /// The agent's closed turns (their request bodies) and delivered reminder runs.
    pub turns: usize,
}

impl Pruned {
    pub fn total(&self) -> usize {
        self.messages + self.drops + self.replies + self.history + self.codes + self.turns
    }
}

/// Rows deleted per transaction: a first prune of a large, old database must not hold the
/// write lock long enough to make the journal wait (its busy timeout is 5 s).
const BATCH: i64 = 5_000;

impl Store {
    /// Removes what is older than `cutoff` (unix seconds): handled and parked messages, drops,
    /// sent (or given up) replies, history, pairing codes. Waiting messages and unsent replies
    /// stay, however old. Works in batches of a few thousand rows, each its own transaction.
    pub fn prune(&mut self, cutoff: i64) -> Result<Pruned, StoreError> {
        Ok(Pruned {
            messages: self.prune_table("inbox", "seq", "ts < ?1 AND state != 'waiting'", cutoff)?,
            drops: self.prune_table("drops", "seq", "at < ?1", cutoff)?,
            replies: self.prune_table("outbox", "seq", "created_at < ?1 AND state != 'queued'", cutoff)?,
            history: self.prune_table("history", "seq", "at < ?1", cutoff)?,
            codes: self.prune_table("pairing_codes", "code", "created_at < ?1", cutoff)?,
            turns: self.prune_table("agent_turns", "id", "opened_at < ?1 AND state != 'asking'", cutoff)?
                + self.prune_table("reminder_deliveries", "rowid", "at < ?1", cutoff)?,
        })
    }

    fn prune_table(&mut self, table: &str, key: &str, old: &str, cutoff: i64) -> Result<usize, StoreError> {
        let sql = format!("DELETE FROM {table} WHERE {key} IN (SELECT {key} FROM {table} WHERE {old} LIMIT ?2)");
        let mut total = 0;
        loop {
            let tx = self.conn.transaction()?;
            let n = tx.execute(&sql, params![cutoff, BATCH])?;
            tx.commit()?;
            total += n;
            if n < usize::try_from(BATCH).unwrap_or(usize::MAX) {
                return Ok(total);
            }
        }
    }
}
