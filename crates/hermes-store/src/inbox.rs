//! The inbound journal, the drop ledger and the LID<->phone map.
//!
//! A row is journaled before WhatsApp is acked and is never deleted: it is waiting, handled
//! (answered, or dropped with a ledger row) or parked (a LID sender refused only because its
//! phone number was unknown; learning the number puts it back in the queue).

use rusqlite::{OptionalExtension as _, Transaction, params};

use crate::{Drop, Inbound, Journaled, Store, StoreError};

const WAITING: i64 = 0;
const HANDLED: i64 = 1;
const PARKED: i64 = 2;

impl Store {
    /// Journals a batch in one transaction: all of it is kept, or none (and the caller must
    /// not acknowledge it). A message already journaled is reported as a duplicate. A sender
    /// that arrives with its other form teaches the LID<->phone map, in the same transaction.
    pub fn journal(&mut self, batch: &[Inbound]) -> Result<Vec<Journaled>, StoreError> {
        let tx = self.conn.transaction()?;
        let mut out = Vec::with_capacity(batch.len());
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO inbox (chat, sender, msg_id, sender_alt, ts, text, from_me, mentions, quoted)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                 ON CONFLICT (chat, sender, msg_id) DO NOTHING",
            )?;
            for m in batch {
                let mentions = (!m.mentions.is_empty()).then(|| m.mentions.join(","));
                let n = insert.execute(params![
                    m.chat,
                    m.sender,
                    m.id,
                    m.sender_alt,
                    m.timestamp,
                    m.text,
                    m.from_me,
                    mentions,
                    m.quoted
                ])?;
                out.push(if n == 1 { Journaled::New(tx.last_insert_rowid()) } else { Journaled::Duplicate });
            }
        }
        for m in batch {
            if let Some(alt) = &m.sender_alt {
                learn(&tx, &m.sender, alt, m.timestamp)?;
            }
        }
        tx.commit()?;
        Ok(out)
    }

    /// Journaled messages waiting to be handled, oldest first, with their sequence number.
    pub fn pending(&self, limit: usize) -> Result<Vec<(i64, Inbound)>, StoreError> {
        let mut q = self.conn.prepare_cached(
            "SELECT seq, chat, sender, msg_id, sender_alt, ts, text, from_me, mentions, quoted
             FROM inbox WHERE done = 0 ORDER BY seq LIMIT ?1",
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
                    from_me: r.get(7)?,
                    mentions: r
                        .get::<_, Option<String>>(8)?
                        .map(|m| m.split(',').map(str::to_owned).collect())
                        .unwrap_or_default(),
                    quoted: r.get(9)?,
                },
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// When the last message from someone else arrived (its own timestamp, unix seconds).
    pub fn last_received(&self) -> Result<Option<i64>, StoreError> {
        Ok(self.conn.query_row("SELECT max(ts) FROM inbox WHERE from_me = 0", [], |r| r.get(0))?)
    }

    /// How many messages wait to be handled.
    pub fn pending_count(&self) -> Result<i64, StoreError> {
        Ok(self.conn.query_row("SELECT count(*) FROM inbox WHERE done = 0", [], |r| r.get(0))?)
    }

    /// Marks journaled messages handled without a reply (a command answered inline, an empty
    /// message, a message of our own).
    pub fn mark_done(&mut self, seqs: &[i64]) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        mark(&tx, seqs, HANDLED)?;
        tx.commit()?;
        Ok(())
    }

    /// Records a drop and marks its message handled, in one transaction.
    pub fn record_drop(&mut self, seq: Option<i64>, d: &Drop) -> Result<(), StoreError> {
        self.drop_as(seq, d, HANDLED)
    }

    /// Records a drop for a LID sender whose phone number is unknown, and parks its message:
    /// learning the number puts it back in the queue to be decided again.
    pub fn park(&mut self, seq: i64, d: &Drop) -> Result<(), StoreError> {
        self.drop_as(Some(seq), d, PARKED)
    }

    fn drop_as(&mut self, seq: Option<i64>, d: &Drop, state: i64) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        insert_drop(&tx, d)?;
        match seq {
            Some(seq) if state == HANDLED => refused(&tx, seq)?,
            Some(seq) => mark(&tx, &[seq], state)?,
            None => {}
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

    /// Records that a LID and a phone JID are one person (either order), and puts that LID's
    /// parked messages back in the queue. Returns how many were unparked.
    pub fn learn_alias(&mut self, a: &str, b: &str, at: i64) -> Result<usize, StoreError> {
        let tx = self.conn.transaction()?;
        let n = learn(&tx, a, b, at)?;
        tx.commit()?;
        Ok(n)
    }

    /// The other form of a sender (the phone JID of a LID, or the LID of a phone JID).
    pub fn alias_of(&self, jid: &str) -> Result<Option<String>, StoreError> {
        let sql = if jid.ends_with("@lid") {
            "SELECT phone FROM aliases WHERE lid = ?1"
        } else {
            "SELECT lid FROM aliases WHERE phone = ?1 ORDER BY learned_at DESC LIMIT 1"
        };
        Ok(self.conn.query_row(sql, [jid], |r| r.get(0)).optional()?)
    }
}

/// Adds a row to the drop ledger, inside the caller's transaction.
pub(crate) fn insert_drop(tx: &Transaction<'_>, d: &Drop) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO drops (at, chat, sender, sender_forms, rule, nearest, hint) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![d.at, d.chat, d.sender, d.sender_forms, d.rule, d.nearest, d.hint],
    )?;
    Ok(())
}

/// How much of a refused message is kept: enough to recognise it in `drops`, no more. The
/// text of someone who was not let in is not ours to keep.
pub const PREVIEW_CHARS: i64 = 80;

/// Marks a refused message handled and cuts its text to a preview, inside the caller's
/// transaction.
pub(crate) fn refused(tx: &Transaction<'_>, seq: i64) -> Result<(), StoreError> {
    mark(tx, &[seq], HANDLED)?;
    tx.prepare_cached("UPDATE inbox SET text = substr(text, 1, ?2) || '…' WHERE seq = ?1 AND length(text) > ?2")?
        .execute([seq, PREVIEW_CHARS])?;
    Ok(())
}

/// Marks journaled messages handled, inside the caller's transaction.
pub(crate) fn mark_handled(tx: &Transaction<'_>, seqs: &[i64]) -> Result<(), StoreError> {
    mark(tx, seqs, HANDLED)
}

fn mark(tx: &Transaction<'_>, seqs: &[i64], state: i64) -> Result<(), StoreError> {
    let mut q = tx.prepare_cached("UPDATE inbox SET done = ?2 WHERE seq = ?1")?;
    for seq in seqs {
        q.execute([*seq, state])?;
    }
    Ok(())
}

fn learn(tx: &Transaction<'_>, a: &str, b: &str, at: i64) -> Result<usize, StoreError> {
    let (lid, phone) = match (a.ends_with("@lid"), b.ends_with("@lid")) {
        (true, false) => (a, b),
        (false, true) => (b, a),
        // Two LIDs or two phone numbers are not a mapping.
        _ => return Ok(0),
    };
    tx.execute(
        "INSERT INTO aliases (lid, phone, learned_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (lid) DO UPDATE SET phone = excluded.phone, learned_at = excluded.learned_at",
        params![lid, phone, at],
    )?;
    Ok(tx.execute("UPDATE inbox SET done = ?2 WHERE sender = ?1 AND done = ?3", params![lid, WAITING, PARKED])?)
}
