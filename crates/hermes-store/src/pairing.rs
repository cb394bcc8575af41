//! Pairing codes offered to strangers and the approvals that admit them.
//!
//! The gateway reads approvals for every decision, so `hermes pairing approve` (another
//! process, same file) takes effect on the next message without a restart.

use rusqlite::{OptionalExtension as _, params};

use hermes_core::identity::Jid;

use crate::{Store, StoreError, jid_at};

/// A code offered to a sender.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Code {
    pub code: String,
    pub sender: Jid,
    pub chat: Jid,
    /// Unix seconds.
    pub created_at: i64,
    pub approved_at: Option<i64>,
}

/// A sender admitted by an approval.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Approval {
    pub sender: Jid,
    pub approved_at: i64,
    pub code: Option<String>,
}

impl Store {
    pub fn add_code(&mut self, code: &Code) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        insert_code(&tx, code)?;
        tx.commit()?;
        Ok(())
    }

    /// Codes offered at or after `since`, oldest first.
    pub fn codes_since(&self, since: i64) -> Result<Vec<Code>, StoreError> {
        let mut q = self.conn.prepare_cached(
            "SELECT code, sender, chat, created_at, approved_at FROM pairing_codes WHERE created_at >= ?1 ORDER BY created_at",
        )?;
        let rows = q.query_map([since], |r| {
            Ok(Code {
                code: r.get(0)?,
                sender: jid_at(r, 1)?,
                chat: jid_at(r, 2)?,
                created_at: r.get(3)?,
                approved_at: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Approves a code offered at or after `since` (i.e. not expired). Returns the code's
    /// sender, or `None` when no such code waits.
    pub fn approve(&mut self, code: &str, since: i64, at: i64) -> Result<Option<Jid>, StoreError> {
        let tx = self.conn.transaction()?;
        let sender: Option<String> = tx
            .query_row(
                "SELECT sender FROM pairing_codes WHERE code = ?1 AND created_at >= ?2 AND approved_at IS NULL",
                params![code, since],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(sender) = &sender {
            tx.execute("UPDATE pairing_codes SET approved_at = ?2 WHERE code = ?1", params![code, at])?;
            tx.execute(
                "INSERT INTO approvals (sender, approved_at, code) VALUES (?1, ?2, ?3)
                 ON CONFLICT (sender) DO UPDATE SET approved_at = excluded.approved_at, code = excluded.code",
                params![sender, at, code],
            )?;
        }
        tx.commit()?;
        Ok(sender.map(|s| Jid::from_wire(&s)))
    }

    /// Withdraws an approval. Returns whether there was one.
    pub fn revoke(&mut self, sender: &Jid) -> Result<bool, StoreError> {
        Ok(self.conn.execute("DELETE FROM approvals WHERE sender = ?1", [sender.to_string()])? > 0)
    }

    pub fn approvals(&self) -> Result<Vec<Approval>, StoreError> {
        let mut q = self.conn.prepare_cached("SELECT sender, approved_at, code FROM approvals ORDER BY approved_at")?;
        let rows =
            q.query_map([], |r| Ok(Approval { sender: jid_at(r, 0)?, approved_at: r.get(1)?, code: r.get(2)? }))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

pub(crate) fn insert_code(tx: &rusqlite::Transaction<'_>, code: &Code) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO pairing_codes (code, sender, chat, created_at) VALUES (?1, ?2, ?3, ?4)",
        params![code.code, code.sender.to_string(), code.chat.to_string(), code.created_at],
    )?;
    Ok(())
}
