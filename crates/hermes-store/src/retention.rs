//! Retention: nothing the gateway keeps grows forever.
//!
//! Every message, refused ones included, used to stay in the journal with its text, and the
//! ledger, the outbox (with `hermes send` bodies), the history and pairing codes grew without
//! end. [`Store::prune`] removes what is older than the cutoff, in one transaction. Nothing
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
}

impl Pruned {
    pub fn total(&self) -> usize {
        self.messages + self.drops + self.replies + self.history + self.codes
    }
}

impl Store {
    /// Removes what is older than `cutoff` (unix seconds): handled and parked messages, drops,
    /// sent (or given up) replies, history, pairing codes. Waiting messages and unsent replies
    /// stay, however old.
    pub fn prune(&mut self, cutoff: i64) -> Result<Pruned, StoreError> {
        let tx = self.conn.transaction()?;
        let pruned = Pruned {
            messages: tx.execute("DELETE FROM inbox WHERE ts < ?1 AND done != 0", params![cutoff])?,
            drops: tx.execute("DELETE FROM drops WHERE at < ?1", params![cutoff])?,
            replies: tx.execute("DELETE FROM outbox WHERE created_at < ?1 AND sent_at IS NOT NULL", params![cutoff])?,
            history: tx.execute("DELETE FROM history WHERE at < ?1", params![cutoff])?,
            codes: tx.execute("DELETE FROM pairing_codes WHERE created_at < ?1", params![cutoff])?,
        };
        tx.commit()?;
        Ok(pruned)
    }
}
