//! The bookkeeping of Hermes Agent's sessions and turns (see `hermes_core::hermes_api`).
//!
//! A *conversation* (a chat, or a group member's own) has a generation (`/new` starts the next)
//! and the transcript id Hermes knows it by. A *turn* is one request to the agent, kept before
//! it is sent (its exact body and idempotency key) and closed in the transaction that commits
//! its answer: a crash in between leaves an open turn, which is sent again unchanged (or its
//! answer read back from the transcript), never asked anew.

use hermes_core::hermes_api;
use hermes_core::identity::{Jid, MessageId};
use rusqlite::{OptionalExtension as _, Transaction, params};

use crate::{Store, StoreError};

/// A conversation's current session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentSession {
    pub generation: u32,
    pub session_id: String,
}

/// A turn to open: everything needed to send it again, unchanged, after a crash.
#[derive(Clone, Debug)]
pub struct NewTurn<'a> {
    pub chat: &'a Jid,
    /// `hermes_core::hermes_api::Conversation::key`.
    pub conversation: &'a str,
    pub memory_key: &'a str,
    pub idempotency_key: &'a str,
    /// The request body, exactly as sent.
    pub body: &'a str,
    /// The user's words, to find the turn in the transcript.
    pub asked: &'a str,
    /// The journaled messages it answers.
    pub answers: &'a [i64],
    /// Unix seconds.
    pub at: i64,
}

/// An open turn, as kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Turn {
    pub id: i64,
    pub chat: Jid,
    pub conversation: String,
    pub memory_key: String,
    pub session_id: String,
    pub idempotency_key: String,
    pub body: String,
    pub asked: String,
    pub answers: Vec<i64>,
    pub opened_at: i64,
    /// How many times it was taken up again after the process that opened it stopped.
    pub resumed: u32,
    /// Its "still working" note was queued.
    pub noted: bool,
}

/// How a turn ended, committed with its reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TurnEnd {
    /// The agent answered; `session_id` is the transcript id it answered under (Hermes
    /// rotates it when it compresses a conversation), adopted for the next turn.
    Answered { turn: i64, session_id: Option<String> },
    /// The agent could not answer; the user is told once.
    Failed { turn: i64 },
}

impl TurnEnd {
    /// The turn it closes.
    pub fn turn(&self) -> i64 {
        match self {
            TurnEnd::Answered { turn, .. } | TurnEnd::Failed { turn } => *turn,
        }
    }

    fn state(&self) -> &'static str {
        match self {
            TurnEnd::Answered { .. } => "answered",
            TurnEnd::Failed { .. } => "failed",
        }
    }
}

/// A transcript id hermes has sent, and the chat it belongs to (reminders find their chat by it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KnownSession {
    pub session_id: String,
    pub chat: Jid,
}

impl Store {
    /// The conversation's session now: the one kept, or generation 1's.
    pub fn agent_session(&self, conversation: &str) -> Result<AgentSession, StoreError> {
        current(&self.conn, conversation)
    }

    /// Starts the conversation's next generation (`/new`): a new transcript id, the memory
    /// scope unchanged. Returns the session left and the new one.
    pub fn next_agent_session(
        &mut self,
        conversation: &str,
        chat: &Jid,
        at: i64,
    ) -> Result<(AgentSession, AgentSession), StoreError> {
        let tx = self.conn.transaction()?;
        let old = current(&tx, conversation)?;
        let generation = old.generation + 1;
        let new = AgentSession { generation, session_id: hermes_api::session_id(conversation, generation) };
        keep_session(&tx, conversation, chat, &new, at)?;
        tx.commit()?;
        Ok((old, new))
    }

    /// Opens a turn under the conversation's current session: kept, with its body and key,
    /// before it is sent. Fails with [`StoreError::NotWaiting`] when one of its messages was
    /// handled meanwhile.
    pub fn open_turn(&mut self, t: &NewTurn<'_>) -> Result<Turn, StoreError> {
        let tx = self.conn.transaction()?;
        {
            let mut waiting = tx.prepare_cached("SELECT state = 'waiting' FROM inbox WHERE seq = ?1")?;
            for seq in t.answers {
                let w: Option<bool> = waiting.query_row([seq], |r| r.get(0)).optional()?;
                if w != Some(true) {
                    return Err(StoreError::NotWaiting(*seq));
                }
            }
        }
        let session = current(&tx, t.conversation)?;
        keep_session(&tx, t.conversation, t.chat, &session, t.at)?;
        let answers = serde_json::to_string(t.answers).unwrap_or_default();
        tx.execute(
            "INSERT INTO agent_turns (chat, conversation, memory_key, session_id, idempotency_key, body, asked, \
             answers, opened_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                t.chat.to_string(),
                t.conversation,
                t.memory_key,
                session.session_id,
                t.idempotency_key,
                t.body,
                t.asked,
                answers,
                t.at
            ],
        )?;
        let id = tx.last_insert_rowid();
        tx.commit()?;
        Ok(Turn {
            id,
            chat: t.chat.clone(),
            conversation: t.conversation.to_owned(),
            memory_key: t.memory_key.to_owned(),
            session_id: session.session_id,
            idempotency_key: t.idempotency_key.to_owned(),
            body: t.body.to_owned(),
            asked: t.asked.to_owned(),
            answers: t.answers.to_vec(),
            opened_at: t.at,
            resumed: 0,
            noted: false,
        })
    }

    /// The chat's open turn (at most one: a chat's worker opens the next only after closing it).
    pub fn open_turn_of(&self, chat: &Jid) -> Result<Option<Turn>, StoreError> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT id, chat, conversation, memory_key, session_id, idempotency_key, body, asked, answers, \
                 opened_at, resumed, noted FROM agent_turns WHERE chat = ?1 AND state = 'asking' ORDER BY id LIMIT 1",
            )?
            .query_row([chat.to_string()], |r| {
                let answers: String = r.get(8)?;
                Ok(Turn {
                    id: r.get(0)?,
                    chat: Jid::from_wire(&r.get::<_, String>(1)?),
                    conversation: r.get(2)?,
                    memory_key: r.get(3)?,
                    session_id: r.get(4)?,
                    idempotency_key: r.get(5)?,
                    body: r.get(6)?,
                    asked: r.get(7)?,
                    answers: serde_json::from_str(&answers).unwrap_or_default(),
                    opened_at: r.get(9)?,
                    resumed: r.get(10)?,
                    noted: r.get::<_, i64>(11)? != 0,
                })
            })
            .optional()?)
    }

    /// Counts taking an open turn up again; how many times it was, this one included.
    pub fn resume_turn(&mut self, turn: i64) -> Result<u32, StoreError> {
        Ok(self.conn.query_row(
            "UPDATE agent_turns SET resumed = resumed + 1 WHERE id = ?1 RETURNING resumed",
            [turn],
            |r| r.get(0),
        )?)
    }

    /// Closes a turn without an answer: its messages are handled another way (given up,
    /// deleted) and it is not sent again.
    pub fn abandon_turn(&mut self, turn: i64) -> Result<(), StoreError> {
        self.conn.execute("UPDATE agent_turns SET state = 'abandoned' WHERE id = ?1 AND state = 'asking'", [turn])?;
        Ok(())
    }

    /// Queues a turn's one "still working" note, unless it has one already: `false` then.
    pub fn note_turn(
        &mut self,
        turn: i64,
        chat: &Jid,
        note: &(MessageId, String),
        at: i64,
    ) -> Result<bool, StoreError> {
        let tx = self.conn.transaction()?;
        if tx.execute("UPDATE agent_turns SET noted = 1 WHERE id = ?1 AND noted = 0 AND state = 'asking'", [turn])? == 0
        {
            return Ok(false);
        }
        crate::outbox::enqueue(&tx, chat, std::slice::from_ref(note), at)?;
        tx.commit()?;
        Ok(true)
    }

    /// Every transcript id hermes has sent, with its chat.
    pub fn known_sessions(&self) -> Result<Vec<KnownSession>, StoreError> {
        let mut q = self.conn.prepare_cached("SELECT session_id, chat FROM agent_session_ids")?;
        let rows = q.query_map([], |r| {
            Ok(KnownSession { session_id: r.get(0)?, chat: Jid::from_wire(&r.get::<_, String>(1)?) })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Remembers a scheduled job made in one of hermes' sessions, and its chat: a one-shot job
    /// leaves Hermes' job list when it runs, and its run must still find the chat.
    /// `true` when it was not known yet.
    pub fn remember_job(&mut self, job: &str, chat: &Jid, name: Option<&str>, at: i64) -> Result<bool, StoreError> {
        let new = self
            .conn
            .prepare_cached(
                "INSERT OR IGNORE INTO reminder_jobs (job_id, chat, name, seen_at) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![job, chat.to_string(), name, at])?;
        if new == 0 {
            self.conn
                .prepare_cached("UPDATE reminder_jobs SET name = ?2 WHERE job_id = ?1")?
                .execute(params![job, name])?;
        }
        Ok(new > 0)
    }

    /// A remembered job's chat and name.
    pub fn job_chat(&self, job: &str) -> Result<Option<(Jid, Option<String>)>, StoreError> {
        Ok(self
            .conn
            .prepare_cached("SELECT chat, name FROM reminder_jobs WHERE job_id = ?1")?
            .query_row([job], |r| Ok((Jid::from_wire(&r.get::<_, String>(0)?), r.get(1)?)))
            .optional()?)
    }

    /// Whether a job's run was delivered already.
    pub fn reminder_delivered(&self, job: &str, run: &str) -> Result<bool, StoreError> {
        Ok(self
            .conn
            .prepare_cached("SELECT 1 FROM reminder_deliveries WHERE job_id = ?1 AND run = ?2")?
            .query_row([job, run], |_| Ok(()))
            .optional()?
            .is_some())
    }

    /// Queues a job run's output for its chat and records it delivered, at once: each run
    /// reaches the chat once, across restarts. `false` when it was delivered already.
    pub fn commit_reminder(
        &mut self,
        job: &str,
        run: &str,
        chat: &Jid,
        messages: &[(MessageId, String)],
        at: i64,
    ) -> Result<bool, StoreError> {
        let tx = self.conn.transaction()?;
        let new = tx.execute(
            "INSERT OR IGNORE INTO reminder_deliveries (job_id, run, chat, at) VALUES (?1, ?2, ?3, ?4)",
            params![job, run, chat.to_string(), at],
        )?;
        if new == 0 {
            return Ok(false);
        }
        crate::outbox::enqueue(&tx, chat, messages, at)?;
        tx.commit()?;
        Ok(true)
    }
}

/// The conversation's session: the one kept, or generation 1's.
fn current(conn: &rusqlite::Connection, conversation: &str) -> Result<AgentSession, StoreError> {
    let kept = conn
        .prepare_cached("SELECT generation, session_id FROM agent_sessions WHERE conversation = ?1")?
        .query_row([conversation], |r| Ok(AgentSession { generation: r.get(0)?, session_id: r.get(1)? }))
        .optional()?;
    Ok(kept.unwrap_or_else(|| AgentSession { generation: 1, session_id: hermes_api::session_id(conversation, 1) }))
}

fn keep_session(
    tx: &Transaction<'_>,
    conversation: &str,
    chat: &Jid,
    s: &AgentSession,
    at: i64,
) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO agent_sessions (conversation, chat, generation, session_id, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (conversation) DO UPDATE SET generation = ?3, session_id = ?4, updated_at = ?5",
    )?
    .execute(params![conversation, chat.to_string(), s.generation, s.session_id, at])?;
    tx.prepare_cached("INSERT OR IGNORE INTO agent_session_ids (session_id, chat, first_at) VALUES (?1, ?2, ?3)")?
        .execute(params![s.session_id, chat.to_string(), at])?;
    Ok(())
}

/// Closes a turn in the transaction that commits its reply; an answer under another
/// transcript id moves the conversation to it, unless `/new` started another generation since.
pub(crate) fn end_turn(tx: &Transaction<'_>, end: &TurnEnd, at: i64) -> Result<(), StoreError> {
    let turn = end.turn();
    let (conversation, chat, sent_under): (String, String, String) = tx
        .prepare_cached("SELECT conversation, chat, session_id FROM agent_turns WHERE id = ?1")?
        .query_row([turn], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    tx.prepare_cached("UPDATE agent_turns SET state = ?2 WHERE id = ?1")?.execute(params![turn, end.state()])?;
    if let TurnEnd::Answered { session_id: Some(new), .. } = end
        && *new != sent_under
        && hermes_api::header_safe(new)
    {
        let now = current(tx, &conversation)?;
        if now.session_id == sent_under {
            let moved = AgentSession { generation: now.generation, session_id: new.clone() };
            keep_session(tx, &conversation, &Jid::from_wire(&chat), &moved, at)?;
        }
    }
    Ok(())
}
