//! The inbound journal, the drop ledger and the LID<->phone map.
//!
//! A row is journaled before WhatsApp is acked and is never deleted: it is waiting, handled
//! (answered, or dropped with a ledger row) or parked (a LID sender refused only because its
//! phone number was unknown; learning the number puts it back in the queue).

use hermes_core::admission::DropRule;
use hermes_core::identity::{Jid, MessageId};
use rusqlite::{OptionalExtension as _, Transaction, params};

use crate::MessageState::{Handled, Parked, Waiting};
use crate::{Change, Code, Dropped, Inbound, Journaled, MessageState, Store, StoreError, jid_at, jids, join_jids};

/// What the store knows about a message's sender, read in one call before deciding.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Facts {
    /// The message's id is one of ours (an outbox row): our own reply, echoed back.
    pub ours: bool,
    /// The sender's other form, learned earlier.
    pub alias: Option<Jid>,
    /// Senders admitted with `hermes pairing approve`.
    pub approvals: Vec<Jid>,
    /// Pairing codes offered since the time asked for.
    pub offers: Vec<Code>,
    /// The chat's pause, if it has one.
    pub pause: Option<hermes_core::handoff::Pause>,
}

impl Facts {
    /// The approvals as admission reads them.
    pub fn approved(&self) -> Vec<hermes_core::identity::UserId> {
        self.approvals.iter().filter_map(Jid::user_id).collect()
    }

    /// The codes offered as admission reads them (the gateway and `explain` alike).
    pub fn pending_offers(&self) -> Vec<hermes_core::pairing::Pending> {
        self.offers
            .iter()
            .map(|c| hermes_core::pairing::Pending {
                code: c.code.clone(),
                sender: c.sender.to_string(),
                created_at: c.created_at,
                approved: c.approved_at.is_some(),
            })
            .collect()
    }
}

/// A journaled message as it is now (see [`Store::current`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Current {
    pub seq: i64,
    pub text: Option<String>,
    /// Not deleted (or otherwise settled) meanwhile.
    pub waiting: bool,
    /// The edit whose text it took.
    pub absorbed_by: Option<i64>,
}

/// What becomes of a decided message, written in one transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settlement {
    /// A LID and phone JID learned from the client while deciding: (lid, phone).
    pub learned: Option<(Jid, Jid)>,
    pub outcome: Outcome,
}

/// The message's side of a settlement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Still to be answered (the answer commits it later): nothing to write but what was learned.
    Admitted,
    /// Handled without a reply and without a ledger row.
    Ignored,
    /// Refused: a ledger row, and the message handled (its text cut to a preview).
    Dropped(Dropped),
    /// Refused for now: a ledger row, and the message parked.
    Parked(Dropped),
    /// Refused, and a pairing code sent: the code kept, its message queued, a ledger row.
    Offered(Box<Offered>),
    /// Given up: handling it ended the process too often. A ledger row, and a note to the
    /// sender when it was someone the agent answers (id chosen now, text).
    GivenUp { dropped: Dropped, note: Option<(MessageId, String)> },
    /// The owner wrote in the chat: paused, and the owner's words kept in the chat's history
    /// (what the agent reads later), the message handled.
    /// With `dropped`, the message that paused it is also a ledger row (the reply-loop breaker
    /// paused the chat on a contact's message, which is not answered).
    HandedOff { pause: hermes_core::handoff::Pause, said: Option<String>, dropped: Option<Dropped> },
    /// The owner resumed the chat: the pause gone, the message handled.
    Resumed,
    /// Group chatter kept as context for the agent's next turn in the group: handled, its
    /// text kept.
    Observed,
}

/// A pairing code offered to a refused sender.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Offered {
    pub code: Code,
    pub dropped: Dropped,
    /// The message carrying the code: (id chosen now, text).
    pub message: (MessageId, String),
}

/// An edit replaces the text of a message still waiting (the edit itself then says nothing
/// more); a delete settles it unanswered. A message answered already is not touched: the
/// edit reaches the agent as its own message.
fn apply_change(tx: &Transaction<'_>, m: &Inbound, seq: i64, change: &Change) -> Result<(), StoreError> {
    let target = (m.chat.to_string(), m.sender.to_string());
    match change {
        // The edit keeps its own text: if the agent reads the old one after all (it was
        // being answered already), the edit reaches it as a note; if it reads the new one,
        // the edit is settled with that answer (see `Store::current`).
        Change::Edit { of, text } => {
            // A second edit replaces the first: the first is settled, never read as a note.
            let earlier: Option<Option<i64>> = tx
                .query_row(
                    "SELECT absorbed_by FROM inbox WHERE chat = ?1 AND sender = ?2 AND msg_id = ?3 AND state = ?4",
                    params![target.0, target.1, of.as_str(), Waiting.as_str()],
                    |r| r.get(0),
                )
                .optional()?;
            let Some(earlier) = earlier else { return Ok(()) };
            tx.execute(
                "UPDATE inbox SET text = ?4, absorbed_by = ?6
                 WHERE chat = ?1 AND sender = ?2 AND msg_id = ?3 AND state = ?5",
                params![target.0, target.1, of.as_str(), text, Waiting.as_str(), seq],
            )?;
            settle_edit(tx, earlier)?;
            tracing::info!("a message was edited before it was answered; the agent reads the new text");
        }
        Change::Revoke { of } => {
            let absorbed: Option<Option<i64>> = tx
                .query_row(
                    "UPDATE inbox SET state = ?4 WHERE chat = ?1 AND sender = ?2 AND msg_id = ?3 AND state = ?5
                     RETURNING absorbed_by",
                    params![target.0, target.1, of.as_str(), Handled.as_str(), Waiting.as_str()],
                    |r| r.get(0),
                )
                .optional()?;
            if let Some(edit) = absorbed {
                // Its edit carried the deleted words too.
                settle_edit(tx, edit)?;
                tracing::info!("a message was deleted by its sender before it was answered; it is not answered");
            }
        }
    }
    Ok(())
}

/// Settles an edit whose text a message took, if it is still waiting.
fn settle_edit(tx: &Transaction<'_>, edit: Option<i64>) -> Result<(), StoreError> {
    if let Some(edit) = edit {
        tx.execute(
            "UPDATE inbox SET state = ?2 WHERE seq = ?1 AND state = ?3",
            params![edit, Handled.as_str(), Waiting.as_str()],
        )?;
    }
    Ok(())
}

fn media_json(m: &hermes_core::media::MediaRef) -> String {
    serde_json::to_string(m).unwrap_or_default()
}

/// A reference written by this version reads back; one that does not (a newer or damaged
/// row) is logged, and the message goes on as its text alone.
fn media_from_json(json: &str) -> Option<hermes_core::media::MediaRef> {
    serde_json::from_str(json)
        .inspect_err(|e| tracing::warn!(error = %e, "a journaled media reference cannot be read; the message goes on without it"))
        .ok()
}

impl Store {
    /// Journals a batch in one transaction: all of it is kept, or none (and the caller must
    /// not acknowledge it). A message already journaled is reported as a duplicate, except that
    /// its readable copy replaces an unreadable stand-in not handled yet (two copies of one
    /// message can meet in one batch, in either order). A sender
    /// that arrives with its other form teaches the LID<->phone map, in the same transaction.
    pub fn journal(&mut self, batch: &[Inbound]) -> Result<Vec<Journaled>, StoreError> {
        let tx = self.conn.transaction()?;
        let mut out = Vec::with_capacity(batch.len());
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO inbox (chat, sender, msg_id, sender_alt, ts, text, from_me, mentions, quoted, unreadable, media,
                                    quoted_id, quoted_text)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
                 ON CONFLICT (chat, sender, msg_id) DO UPDATE SET text = excluded.text, media = excluded.media, unreadable = 0
                 WHERE inbox.unreadable = 1 AND excluded.unreadable = 0 AND inbox.state = 'waiting'
                 RETURNING seq",
            )?;
            for m in batch {
                let seq: Option<i64> = insert
                    .query_row(
                        params![
                            m.chat.to_string(),
                            m.sender.to_string(),
                            m.id.as_str(),
                            m.sender_alt.as_ref().map(Jid::to_string),
                            m.timestamp,
                            m.text,
                            m.from_me,
                            join_jids(&m.mentions),
                            m.quoted.as_ref().map(Jid::to_string),
                            m.unreadable,
                            m.media.as_ref().map(media_json),
                            m.quote.as_ref().map(|q| q.id.as_str().to_owned()),
                            m.quote.as_ref().and_then(|q| q.text.clone())
                        ],
                        |r| r.get(0),
                    )
                    .optional()?;
                out.push(seq.map_or(Journaled::Duplicate, Journaled::New));
            }
        }
        for m in batch {
            if let Some(alt) = &m.sender_alt {
                learn(&tx, &m.sender, alt, m.timestamp)?;
            }
        }
        for (m, kept) in batch.iter().zip(&out) {
            if let (Some(change), Journaled::New(seq)) = (&m.change, kept) {
                apply_change(&tx, m, *seq, change)?;
            }
        }
        tx.commit()?;
        Ok(out)
    }

    /// Journaled messages waiting to be handled, oldest first, with their sequence number. For
    /// tests: the gateway reads [`Store::waiting`], then [`Store::inbound`] of what is new.
    #[cfg(test)]
    pub(crate) fn pending(&self, limit: usize) -> Result<Vec<(i64, Inbound)>, StoreError> {
        let waiting = self.waiting(limit)?;
        self.inbound(&waiting)
    }

    /// The sequence numbers of the messages waiting to be handled, oldest first: what the
    /// dispatcher reads on every wake-up. Read from the index alone; the rows themselves are
    /// read only for those it has not handed out yet ([`Store::inbound`]), not again for each
    /// of a backlog's thousand on every commit (the profile of a backlog drain had that read
    /// at 8 % of the gateway's time).
    pub fn waiting(&self, limit: usize) -> Result<Vec<i64>, StoreError> {
        let mut q = self.conn.prepare_cached("SELECT seq FROM inbox WHERE state = ?2 ORDER BY seq LIMIT ?1")?;
        let seqs = q.query_map(params![i64::try_from(limit).unwrap_or(i64::MAX), Waiting.as_str()], |r| r.get(0))?;
        Ok(seqs.collect::<Result<_, _>>()?)
    }

    /// The messages `seqs` name that are still waiting, in that order.
    pub fn inbound(&self, seqs: &[i64]) -> Result<Vec<(i64, Inbound)>, StoreError> {
        let mut q = self.conn.prepare_cached(
            "SELECT chat, sender, msg_id, sender_alt, ts, text, from_me, mentions, quoted, unreadable, media,
                    quoted_id, quoted_text
             FROM inbox WHERE seq = ?1 AND state = ?2",
        )?;
        let mut out = Vec::with_capacity(seqs.len());
        for &seq in seqs {
            let row = q
                .query_row(params![seq, Waiting.as_str()], |r| {
                    Ok(Inbound {
                        chat: jid_at(r, 0)?,
                        sender: jid_at(r, 1)?,
                        id: MessageId::new(r.get::<_, String>(2)?),
                        sender_alt: r.get::<_, Option<String>>(3)?.map(|j| Jid::from_wire(&j)),
                        timestamp: r.get(4)?,
                        text: r.get(5)?,
                        from_me: r.get(6)?,
                        mentions: jids(r.get(7)?),
                        quoted: r.get::<_, Option<String>>(8)?.map(|j| Jid::from_wire(&j)),
                        unreadable: r.get(9)?,
                        media: r.get::<_, Option<String>>(10)?.as_deref().and_then(media_from_json),
                        quote: r
                            .get::<_, Option<String>>(11)?
                            .map(|id| crate::Quote { id: MessageId::new(id), text: r.get(12).ok().flatten() }),
                        change: None,
                    })
                })
                .optional()?;
            out.extend(row.map(|m| (seq, m)));
        }
        Ok(out)
    }

    /// The message of `chat` whose id is `id`, as hermes kept it: one it received, else one of
    /// its replies. Only within the chat: a quote names an id, and another chat's message is
    /// not the sender's to read.
    pub fn quoted(&self, chat: &Jid, id: &MessageId) -> Result<Option<crate::Quoted>, StoreError> {
        let chat = chat.to_string();
        let received = self
            .conn
            .prepare_cached(
                "SELECT from_me, coalesce(read_as, text), media FROM inbox WHERE chat = ?1 AND msg_id = ?2 LIMIT 1",
            )?
            .query_row(params![chat, id.as_str()], |r| {
                Ok(crate::Quoted {
                    ours: r.get(0)?,
                    text: r.get(1)?,
                    media: r.get::<_, Option<String>>(2)?.as_deref().and_then(media_from_json),
                })
            })
            .optional()?;
        if received.is_some() {
            return Ok(received);
        }
        Ok(self
            .conn
            .prepare_cached("SELECT text FROM outbox WHERE chat = ?1 AND msg_id = ?2 LIMIT 1")?
            .query_row(params![chat, id.as_str()], |r| Ok(crate::Quoted { ours: true, text: r.get(0)?, media: None }))
            .optional()?)
    }

    /// The group chatter kept as context in `chat` before `before` and not carried by a turn
    /// yet (at most `limit`, the latest), oldest first: (sender, its other form, text).
    pub fn group_context(
        &self,
        chat: &Jid,
        before: i64,
        limit: usize,
    ) -> Result<Vec<(Jid, Option<Jid>, String)>, StoreError> {
        let mut q = self.conn.prepare_cached(
            "SELECT sender, sender_alt, text FROM inbox
             WHERE chat = ?1 AND context = 1 AND seq < ?2 AND text IS NOT NULL
             ORDER BY seq DESC LIMIT ?3",
        )?;
        let rows = q.query_map(params![chat.to_string(), before, i64::try_from(limit).unwrap_or(i64::MAX)], |r| {
            Ok((
                Jid::from_wire(&r.get::<_, String>(0)?),
                r.get::<_, Option<String>>(1)?.map(|j| Jid::from_wire(&j)),
                r.get::<_, String>(2)?,
            ))
        })?;
        let mut out: Vec<_> = rows.collect::<Result<_, _>>()?;
        out.reverse();
        Ok(out)
    }

    /// Whether anyone but the account wrote in `chat` (within the retention).
    pub fn has_written(&self, chat: &Jid) -> Result<bool, StoreError> {
        Ok(self
            .conn
            .prepare_cached("SELECT 1 FROM inbox WHERE chat = ?1 AND from_me = 0 LIMIT 1")?
            .query_row([chat.to_string()], |_| Ok(()))
            .optional()?
            .is_some())
    }

    /// Keeps what the agent read of a media message (a transcript, a document's text), for a
    /// later reply that quotes it.
    pub fn set_read_as(&mut self, seq: i64, text: &str) -> Result<(), StoreError> {
        self.conn.prepare_cached("UPDATE inbox SET read_as = ?2 WHERE seq = ?1")?.execute(params![seq, text])?;
        Ok(())
    }

    /// The messages of a batch as they are now, just before the agent is asked: edits and
    /// deletes that arrived since they were read.
    pub fn current(&self, seqs: &[i64]) -> Result<Vec<Current>, StoreError> {
        let mut q = self.conn.prepare_cached("SELECT text, state, absorbed_by FROM inbox WHERE seq = ?1")?;
        let mut out = Vec::with_capacity(seqs.len());
        for &seq in seqs {
            let row: Option<(Option<String>, String, Option<i64>)> =
                q.query_row([seq], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).optional()?;
            if let Some((text, state, absorbed_by)) = row {
                out.push(Current { seq, text, waiting: state == Waiting.as_str(), absorbed_by });
            }
        }
        Ok(out)
    }

    /// The own timestamp of the oldest message still waiting (unix seconds).
    pub fn oldest_waiting(&self) -> Result<Option<i64>, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT ts FROM inbox WHERE state = ?1 ORDER BY seq LIMIT 1", [Waiting.as_str()], |r| r.get(0))
            .optional()?)
    }

    /// The first message waiting to be handled (its `seq`): a watchdog that sees the same one
    /// for long knows nothing moves, however old the message itself is (a backlog after an
    /// outage is old, and moving).
    pub fn first_waiting(&self) -> Result<Option<i64>, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT seq FROM inbox WHERE state = ?1 ORDER BY seq LIMIT 1", [Waiting.as_str()], |r| r.get(0))
            .optional()?)
    }

    /// When the last message from someone else arrived (its own timestamp, unix seconds).
    pub fn last_received(&self) -> Result<Option<i64>, StoreError> {
        Ok(self.conn.query_row("SELECT max(ts) FROM inbox WHERE from_me = 0", [], |r| r.get(0))?)
    }

    /// How many messages wait to be handled.
    pub fn pending_count(&self) -> Result<i64, StoreError> {
        Ok(self.conn.query_row("SELECT count(*) FROM inbox WHERE state = ?1", [Waiting.as_str()], |r| r.get(0))?)
    }

    /// Records a drop that belongs to no journaled message (or to `seq`, then handled).
    pub fn record_drop(&mut self, seq: Option<i64>, d: &Dropped) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        insert_drop(&tx, d)?;
        if let Some(seq) = seq {
            refused(&tx, seq)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// What is known about a message's sender, for deciding it: one read.
    pub fn facts(&self, m: &Inbound, offers_since: i64) -> Result<Facts, StoreError> {
        Ok(Facts {
            ours: self.delivery(&m.id)?.is_some(),
            alias: self.alias_of(&m.sender)?,
            approvals: self.approvals()?.into_iter().map(|a| a.sender).collect(),
            offers: self.codes_since(offers_since)?,
            pause: self.pause_of(&m.chat)?,
        })
    }

    /// The chat's pause, if it has one (in force or not).
    pub fn pause_of(&self, chat: &Jid) -> Result<Option<hermes_core::handoff::Pause>, StoreError> {
        Ok(self
            .conn
            .prepare_cached("SELECT since, until, by FROM paused_chats WHERE chat = ?1")?
            .query_row([chat.to_string()], |r| pause_at(r, 0))
            .optional()?)
    }

    /// The chats paused now (at `now`), with their pauses.
    pub fn paused(&self, now: i64) -> Result<Vec<(Jid, hermes_core::handoff::Pause)>, StoreError> {
        let mut q = self.conn.prepare_cached("SELECT chat, since, until, by FROM paused_chats ORDER BY since")?;
        let rows = q.query_map([], |r| Ok((Jid::from_wire(&r.get::<_, String>(0)?), pause_at(r, 1)?)))?;
        let all: Vec<_> = rows.collect::<Result<_, _>>()?;
        Ok(all.into_iter().filter(|(_, p)| p.active(now)).collect())
    }

    /// Pauses a chat (`hermes pause`, or the owner taking it over).
    pub fn pause(&mut self, chat: &Jid, pause: &hermes_core::handoff::Pause) -> Result<(), StoreError> {
        pause_chat(&self.conn, chat, pause)
    }

    /// Resumes a chat: `false` when it was not paused.
    pub fn resume(&mut self, chat: &Jid) -> Result<bool, StoreError> {
        resume_chat(&self.conn, chat)
    }

    /// Writes what became of a decided message, all of it or nothing.
    pub fn settle(&mut self, seq: i64, s: &Settlement) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        if let Some((lid, phone)) = &s.learned {
            learn(&tx, lid, phone, crate::clock::now())?;
        }
        match &s.outcome {
            Outcome::Admitted => {}
            Outcome::Ignored => mark(&tx, &[seq], Handled)?,
            Outcome::Dropped(d) => {
                insert_drop(&tx, d)?;
                refused(&tx, seq)?;
            }
            Outcome::Parked(d) => {
                insert_drop(&tx, d)?;
                mark(&tx, &[seq], Parked)?;
                // Deciding it ended well: it comes back with no attempt against it.
                tx.prepare_cached("UPDATE inbox SET attempts = 0 WHERE seq = ?1")?.execute([seq])?;
            }
            Outcome::Offered(o) => {
                let Offered { code, dropped, message } = &**o;
                crate::pairing::insert_code(&tx, code)?;
                crate::outbox::enqueue(&tx, &code.chat, std::slice::from_ref(message), code.created_at)?;
                insert_drop(&tx, dropped)?;
                refused(&tx, seq)?;
            }
            Outcome::HandedOff { pause, said, dropped } => {
                let chat = chat_of(&tx, seq)?;
                pause_chat(&tx, &chat, pause)?;
                if let Some(said) = said {
                    tx.prepare_cached(
                        "INSERT INTO history (chat, role, content, at) VALUES (?1, 'assistant', ?2, ?3)",
                    )?
                    .execute(params![chat.to_string(), said, pause.since])?;
                }
                match dropped {
                    Some(d) => {
                        insert_drop(&tx, d)?;
                        refused(&tx, seq)?;
                    }
                    None => mark(&tx, &[seq], Handled)?,
                }
            }
            Outcome::Observed => {
                mark(&tx, &[seq], Handled)?;
                tx.prepare_cached("UPDATE inbox SET context = 1 WHERE seq = ?1")?.execute([seq])?;
            }
            Outcome::Resumed => {
                resume_chat(&tx, &chat_of(&tx, seq)?)?;
                mark(&tx, &[seq], Handled)?;
            }
            Outcome::GivenUp { dropped, note } => {
                if let Some(note) = note {
                    crate::outbox::enqueue(&tx, &dropped.chat, std::slice::from_ref(note), dropped.at)?;
                }
                insert_drop(&tx, dropped)?;
                refused(&tx, seq)?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Counts an attempt at handling a waiting message, taken before the work starts; returns
    /// how many earlier attempts never ended (see [`Store::end_attempts`]): the times the
    /// process died while handling it. A message that is not waiting is `NotWaiting`.
    ///
    /// Written without waiting for the disk (`synchronous=NORMAL` for this one statement): a
    /// crash of the process keeps it (it is in the OS's cache), a power cut may lose it, which
    /// only gives the message one more try; and the message path pays no fsync for it.
    pub fn begin_attempt(&mut self, seq: i64) -> Result<u32, StoreError> {
        self.conn.pragma_update(None, "synchronous", "NORMAL")?;
        let before = self
            .conn
            .prepare_cached(
                "UPDATE inbox SET attempts = attempts + 1 WHERE seq = ?1 AND state = ?2 RETURNING attempts - 1",
            )
            .and_then(|mut q| q.query_row(params![seq, Waiting.as_str()], |r| r.get::<_, i64>(0)).optional());
        let restored = self.conn.pragma_update(None, "synchronous", "FULL");
        let before = before?;
        restored?;
        let before = before.ok_or(StoreError::NotWaiting(seq))?;
        Ok(u32::try_from(before).unwrap_or(u32::MAX))
    }

    /// Takes back attempts that ended without harm (the message waits to be tried again for a
    /// reason of its own: the model unreachable, the gateway stopping); messages no longer
    /// waiting are left alone.
    pub fn end_attempts(&mut self, seqs: &[i64]) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        {
            let mut q = tx.prepare_cached(
                "UPDATE inbox SET attempts = attempts - 1 WHERE seq = ?1 AND state = ?2 AND attempts > 0",
            )?;
            for seq in seqs {
                q.execute(params![*seq, Waiting.as_str()])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Drops at or after `since` (unix seconds), oldest first.
    pub fn drops_since(&self, since: i64) -> Result<Vec<Dropped>, StoreError> {
        let mut q = self.conn.prepare_cached(
            "SELECT at, chat, sender, sender_forms, rule, nearest, hint FROM drops WHERE at >= ?1 ORDER BY at, seq",
        )?;
        let rows = q.query_map([since], |r| {
            let rule: String = r.get(4)?;
            // Only hermes writes this column; a rule it does not know is a newer hermes' (after
            // a downgrade): that row is skipped and counted, the rest still shown.
            let Some(rule) = DropRule::parse(&rule) else { return Ok(None) };
            Ok(Some(Dropped {
                at: r.get(0)?,
                chat: jid_at(r, 1)?,
                sender: jid_at(r, 2)?,
                sender_forms: jids(r.get(3)?),
                rule,
                nearest: r.get(5)?,
                hint: r.get(6)?,
            }))
        })?;
        let rows: Vec<Option<Dropped>> = rows.collect::<Result<_, _>>()?;
        let unknown = rows.iter().filter(|r| r.is_none()).count();
        if unknown > 0 {
            tracing::warn!(
                unknown,
                "drops recorded by a newer hermes, with rules this one does not know, are left out"
            );
        }
        Ok(rows.into_iter().flatten().collect())
    }

    /// Whether a message is already journaled.
    pub fn is_journaled(&self, chat: &Jid, sender: &Jid, id: &MessageId) -> Result<bool, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT 1 FROM inbox WHERE chat = ?1 AND sender = ?2 AND msg_id = ?3",
                params![chat.to_string(), sender.to_string(), id.as_str()],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    /// The other form of a sender (the phone JID of a LID, or the LID of a phone JID).
    pub fn alias_of(&self, jid: &Jid) -> Result<Option<Jid>, StoreError> {
        let sql = if is_lid(jid) {
            "SELECT phone FROM aliases WHERE lid = ?1"
        } else {
            "SELECT lid FROM aliases WHERE phone = ?1 ORDER BY learned_at DESC LIMIT 1"
        };
        Ok(self.conn.prepare_cached(sql)?.query_row([jid.to_string()], |r| jid_at(r, 0)).optional()?)
    }
}

/// Adds a row to the drop ledger, inside the caller's transaction.
fn insert_drop(tx: &Transaction<'_>, d: &Dropped) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO drops (at, chat, sender, sender_forms, rule, nearest, hint) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            d.at,
            d.chat.to_string(),
            d.sender.to_string(),
            join_jids(&d.sender_forms).unwrap_or_default(),
            d.rule.as_str(),
            d.nearest,
            d.hint
        ],
    )?;
    Ok(())
}

/// How much of a refused message is kept: enough to recognise it in `drops`, no more. The
/// text of someone who was not let in is not ours to keep.
pub const PREVIEW_CHARS: i64 = 80;

/// Marks a refused message handled and cuts its text to a preview, inside the caller's
/// transaction.
fn refused(tx: &Transaction<'_>, seq: i64) -> Result<(), StoreError> {
    mark(tx, &[seq], Handled)?;
    tx.prepare_cached("UPDATE inbox SET text = substr(text, 1, ?2) || '…' WHERE seq = ?1 AND length(text) > ?2")?
        .execute([seq, PREVIEW_CHARS])?;
    Ok(())
}

/// Marks journaled messages handled, inside the caller's transaction.
fn chat_of(tx: &Transaction<'_>, seq: i64) -> Result<Jid, StoreError> {
    let chat: String = tx.prepare_cached("SELECT chat FROM inbox WHERE seq = ?1")?.query_row([seq], |r| r.get(0))?;
    Ok(Jid::from_wire(&chat))
}

/// A pause from `since, until, by` columns starting at `first` (an unknown `by`, from a newer
/// hermes, reads as a pause by hand).
fn pause_at(r: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<hermes_core::handoff::Pause> {
    use hermes_core::handoff::{Pause, PausedBy};
    Ok(Pause {
        since: r.get(first)?,
        until: r.get(first + 1)?,
        by: PausedBy::parse(&r.get::<_, String>(first + 2)?).unwrap_or(PausedBy::Cli),
    })
}

/// Ends a chat's pause: `false` when it had none.
fn resume_chat(conn: &rusqlite::Connection, chat: &Jid) -> Result<bool, StoreError> {
    Ok(conn.execute("DELETE FROM paused_chats WHERE chat = ?1", [chat.to_string()])? > 0)
}

fn pause_chat(conn: &rusqlite::Connection, chat: &Jid, p: &hermes_core::handoff::Pause) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO paused_chats (chat, since, until, by) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (chat) DO UPDATE SET since = ?2, until = ?3, by = ?4",
    )?
    .execute(params![chat.to_string(), p.since, p.until, p.by.as_str()])?;
    Ok(())
}

pub(crate) fn mark_handled(tx: &Transaction<'_>, seqs: &[i64]) -> Result<(), StoreError> {
    mark(tx, seqs, Handled)
}

/// Moves waiting messages to `state`. A message that is not waiting fails the caller's
/// transaction: it was decided or answered already, and doing it again would answer it twice.
fn mark(tx: &Transaction<'_>, seqs: &[i64], state: MessageState) -> Result<(), StoreError> {
    let mut q = tx.prepare_cached("UPDATE inbox SET state = ?2 WHERE seq = ?1 AND state = ?3")?;
    for seq in seqs {
        if q.execute(params![*seq, state.as_str(), Waiting.as_str()])? == 0 {
            return Err(StoreError::NotWaiting(*seq));
        }
    }
    Ok(())
}

fn is_lid(jid: &Jid) -> bool {
    *jid.server() == hermes_core::identity::Server::Lid
}

fn learn(tx: &Transaction<'_>, a: &Jid, b: &Jid, at: i64) -> Result<usize, StoreError> {
    let (lid, phone) = match (is_lid(a), is_lid(b)) {
        (true, false) => (a, b),
        (false, true) => (b, a),
        // Two LIDs or two phone numbers are not a mapping.
        _ => return Ok(0),
    };
    // Cached: every message that arrives with its sender's other form comes here.
    tx.prepare_cached(
        "INSERT INTO aliases (lid, phone, learned_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (lid) DO UPDATE SET phone = excluded.phone, learned_at = excluded.learned_at",
    )?
    .execute(params![lid.to_string(), phone.to_string(), at])?;
    Ok(tx.prepare_cached("UPDATE inbox SET state = ?2 WHERE sender = ?1 AND state = ?3")?.execute(params![
        lid.to_string(),
        Waiting.as_str(),
        Parked.as_str()
    ])?)
}
