//! The outbox and the conversation history: how a reply is sent exactly once.
//!
//! A reply is committed in one transaction with everything that makes it final: its chunks
//! in the outbox under message ids chosen before sending, the exchange in the chat's history,
//! and the inbound messages it answers marked handled. A crash before that commit means the
//! messages are asked about again; after it, the sender resends unsent rows with the same ids,
//! which WhatsApp and the recipient treat as one message.

use rusqlite::{OptionalExtension as _, Transaction, params};

use hermes_core::identity::{Jid, MessageId};
use hermes_core::media::outbound::OutMedia;

use crate::{Store, StoreError, jid_at};

/// `outbox.state`, as written in the file.
const QUEUED: &str = "queued";
const SENT: &str = "sent";
const ABANDONED: &str = "abandoned";

/// What became of a message the gateway sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// In the outbox, not sent yet (WhatsApp not connected, or sending).
    Queued,
    /// WhatsApp took it at `at` (unix seconds).
    Sent { at: i64 },
    /// Refused too often; kept in the outbox, marked, never sent.
    Abandoned,
}

/// A message waiting in (or sent from) the outbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outgoing {
    pub seq: i64,
    pub chat: Jid,
    pub id: MessageId,
    pub text: String,
    /// Its place among the chunks of one reply, from 0.
    pub part: i64,
    /// Send attempts that failed so far.
    pub attempts: i64,
    /// A file to send, with `text` as its caption.
    pub media: Option<OutMedia>,
    /// The row names a file, but its reference cannot be read (written by a newer version, or
    /// damaged): it must not go out as its caption alone.
    pub media_unreadable: bool,
}

/// Who said something in a chat's history.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    User,
    Assistant,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

/// An answer to one or more inbound messages of one chat.
#[derive(Clone, Debug)]
pub struct Reply<'a> {
    pub chat: &'a Jid,
    /// The inbound messages answered (marked handled).
    pub answers: &'a [i64],
    /// The exchange to keep in the history: what the user said and what the agent answered.
    /// `None` for replies that are not part of the conversation (commands, errors).
    pub exchange: Option<(&'a str, &'a str)>,
    /// The messages to send: (id chosen now, text).
    pub messages: &'a [(MessageId, String)],
    /// Files to send after them (`MEDIA:` lines, a spoken reply).
    pub files: &'a [(MessageId, OutMedia)],
    /// Unix seconds.
    pub at: i64,
    /// The agent's turn this reply closes, if it came from Hermes Agent.
    pub turn: Option<crate::TurnEnd>,
}

impl Store {
    /// Commits a reply: outbox rows, history and the answered messages, all or nothing.
    pub fn commit_reply(&mut self, r: &Reply<'_>) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        if let Some((user, assistant)) = r.exchange {
            let mut q = tx.prepare_cached("INSERT INTO history (chat, role, content, at) VALUES (?1, ?2, ?3, ?4)")?;
            let chat = r.chat.to_string();
            q.execute(params![chat, Role::User.as_str(), user, r.at])?;
            q.execute(params![chat, Role::Assistant.as_str(), assistant, r.at])?;
        }
        enqueue(&tx, r.chat, r.messages, r.at)?;
        enqueue_files(&tx, r.chat, r.files, r.at)?;
        crate::inbox::mark_handled(&tx, r.answers)?;
        // The group context this turn carried is not carried again (append-only).
        if let Some(first) = r.answers.iter().min().filter(|_| r.chat.is_group()) {
            tx.prepare_cached("UPDATE inbox SET context = 2 WHERE chat = ?1 AND context = 1 AND seq < ?2")?
                .execute(params![r.chat.to_string(), first])?;
        }
        if let Some(end) = &r.turn {
            crate::agent::end_turn(&tx, end, r.at)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Queues messages that answer nothing (a pairing code, `hermes send`).
    pub fn enqueue(&mut self, chat: &Jid, messages: &[(MessageId, String)], at: i64) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        enqueue(&tx, chat, messages, at)?;
        tx.commit()?;
        Ok(())
    }

    /// Queues files that answer nothing (`hermes send --file`).
    pub fn enqueue_files(&mut self, chat: &Jid, files: &[(MessageId, OutMedia)], at: i64) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        enqueue_files(&tx, chat, files, at)?;
        tx.commit()?;
        Ok(())
    }

    /// Keeps a file's upload with its outbox row, before the message that carries it is sent.
    pub fn set_uploaded(&mut self, seq: i64, media: &OutMedia) -> Result<(), StoreError> {
        let json = serde_json::to_string(media).unwrap_or_default();
        self.conn.execute("UPDATE outbox SET media = ?2 WHERE seq = ?1", params![seq, json])?;
        Ok(())
    }

    /// Unsent messages, oldest first.
    pub fn unsent(&self, limit: usize) -> Result<Vec<Outgoing>, StoreError> {
        let mut q = self.conn.prepare_cached(
            "SELECT seq, chat, msg_id, text, part, attempts, media FROM outbox WHERE state = ?2 ORDER BY seq LIMIT ?1",
        )?;
        let rows = q.query_map(params![i64::try_from(limit).unwrap_or(i64::MAX), QUEUED], |r| {
            let media = r.get::<_, Option<String>>(6)?.map(|j| serde_json::from_str::<OutMedia>(&j));
            Ok(Outgoing {
                seq: r.get(0)?,
                chat: jid_at(r, 1)?,
                id: MessageId::new(r.get::<_, String>(2)?),
                text: r.get(3)?,
                part: r.get(4)?,
                attempts: r.get(5)?,
                media_unreadable: media.as_ref().is_some_and(Result::is_err),
                media: media.and_then(Result::ok),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// When the oldest message still to be sent was queued (unix seconds).
    pub fn oldest_unsent(&self) -> Result<Option<i64>, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT created_at FROM outbox WHERE state = ?1 ORDER BY seq LIMIT 1", [QUEUED], |r| r.get(0))
            .optional()?)
    }

    /// How many replies (their first parts) hermes queued in `chat` since `since` (unix seconds):
    /// the reply-loop breaker's count.
    pub fn answers_since(&self, chat: &Jid, since: i64) -> Result<u32, StoreError> {
        let n: i64 = self
            .conn
            .prepare_cached("SELECT count(*) FROM outbox WHERE chat = ?1 AND part = 0 AND created_at >= ?2")?
            .query_row(params![chat.to_string(), since], |r| r.get(0))?;
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    pub fn unsent_count(&self) -> Result<i64, StoreError> {
        Ok(self.conn.query_row("SELECT count(*) FROM outbox WHERE state = ?1", [QUEUED], |r| r.get(0))?)
    }

    pub fn mark_sent(&mut self, seq: i64, at: i64) -> Result<(), StoreError> {
        self.conn
            .prepare_cached("UPDATE outbox SET state = ?3, sent_at = ?2 WHERE seq = ?1")?
            .execute(params![seq, at, SENT])?;
        Ok(())
    }

    /// Counts a failed attempt; the row stays unsent.
    pub fn send_failed(&mut self, seq: i64, error: &str) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE outbox SET attempts = attempts + 1, last_error = ?2 WHERE seq = ?1",
            params![seq, error],
        )?;
        Ok(())
    }

    /// What became of a message id of ours; `None` when the id is not ours.
    pub fn delivery(&self, id: &MessageId) -> Result<Option<Delivery>, StoreError> {
        let row: Option<(String, Option<i64>)> = self
            .conn
            .prepare_cached("SELECT state, sent_at FROM outbox WHERE msg_id = ?1")?
            .query_row([id.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        Ok(row.map(|(state, at)| match (state.as_str(), at) {
            (SENT, Some(at)) => Delivery::Sent { at },
            (ABANDONED, _) => Delivery::Abandoned,
            _ => Delivery::Queued,
        }))
    }

    /// The last `limit` turns of a chat's conversation, oldest first.
    pub fn history(&self, chat: &Jid, limit: usize) -> Result<Vec<(Role, String)>, StoreError> {
        let mut q = self.conn.prepare_cached(
            "SELECT role, content FROM (SELECT seq, role, content FROM history WHERE chat = ?1 ORDER BY seq DESC LIMIT ?2)
             ORDER BY seq",
        )?;
        let rows = q.query_map(params![chat.to_string(), i64::try_from(limit).unwrap_or(i64::MAX)], |r| {
            let role: String = r.get(0)?;
            Ok((if role == "user" { Role::User } else { Role::Assistant }, r.get(1)?))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// `/reset`: forgets a chat's conversation. Returns how many turns were forgotten.
    pub fn forget(&mut self, chat: &Jid) -> Result<usize, StoreError> {
        Ok(self.conn.execute("DELETE FROM history WHERE chat = ?1", [chat.to_string()])?)
    }
}

pub(crate) fn enqueue(
    tx: &Transaction<'_>,
    chat: &Jid,
    messages: &[(MessageId, String)],
    at: i64,
) -> Result<(), StoreError> {
    let mut q =
        tx.prepare_cached("INSERT INTO outbox (chat, msg_id, text, part, created_at) VALUES (?1, ?2, ?3, ?4, ?5)")?;
    for (part, (id, text)) in messages.iter().enumerate() {
        q.execute(params![chat.to_string(), id.as_str(), text, i64::try_from(part).unwrap_or(i64::MAX), at])?;
    }
    Ok(())
}

pub(crate) fn enqueue_files(
    tx: &Transaction<'_>,
    chat: &Jid,
    files: &[(MessageId, OutMedia)],
    at: i64,
) -> Result<(), StoreError> {
    let mut q = tx.prepare_cached(
        "INSERT INTO outbox (chat, msg_id, text, part, created_at, media) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    for (part, (id, media)) in files.iter().enumerate() {
        let caption = media.caption.clone().unwrap_or_default();
        let json = serde_json::to_string(media).unwrap_or_default();
        q.execute(params![chat.to_string(), id.as_str(), caption, i64::try_from(part).unwrap_or(i64::MAX), at, json])?;
    }
    Ok(())
}

impl Store {
    /// Gives up on a message that failed too often; it stays in the outbox, marked.
    pub fn abandon(&mut self, seq: i64, error: &str) -> Result<(), StoreError> {
        self.conn
            .execute("UPDATE outbox SET state = ?3, last_error = ?2 WHERE seq = ?1", params![seq, error, ABANDONED])?;
        Ok(())
    }
}
