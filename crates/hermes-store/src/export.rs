//! A chat's record as hermes kept it, for `hermes history export`: what arrived (its text and
//! media reference, and what became of it), what was sent, and what was not answered and why,
//! in time order. Read-only.

use hermes_core::identity::Jid;
use rusqlite::params;

use crate::{Store, StoreError};

/// One thing that happened in a chat.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Unix seconds.
    pub at: i64,
    pub chat: Jid,
    pub kind: EntryKind,
    /// Who wrote it (a message that arrived, a drop); `None` for what hermes sent.
    pub from: Option<Jid>,
    pub id: Option<String>,
    pub text: Option<String>,
    /// A media reference (JSON as kept).
    pub media: Option<String>,
    /// `waiting`, `handled`, `parked` (arrived); `queued`, `sent`, `abandoned` (sent); the rule (a drop).
    pub state: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    Received,
    Sent,
    Dropped,
}

impl EntryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Received => "received",
            EntryKind::Sent => "sent",
            EntryKind::Dropped => "dropped",
        }
    }
}

impl Store {
    /// Everything of `chat` (or of every chat) since `since`, oldest first.
    pub fn export(&self, chat: Option<&Jid>, since: i64) -> Result<Vec<Entry>, StoreError> {
        let chat = chat.map(Jid::to_string);
        let mut out = Vec::new();
        let mut q = self.conn.prepare(
            "SELECT ts, chat, sender, msg_id, text, media, state FROM inbox
             WHERE ts >= ?1 AND (?2 IS NULL OR chat = ?2) ORDER BY seq",
        )?;
        let rows = q.query_map(params![since, chat], |r| {
            Ok(Entry {
                at: r.get(0)?,
                chat: Jid::from_wire(&r.get::<_, String>(1)?),
                kind: EntryKind::Received,
                from: Some(Jid::from_wire(&r.get::<_, String>(2)?)),
                id: r.get(3)?,
                text: r.get(4)?,
                media: r.get(5)?,
                state: r.get(6)?,
            })
        })?;
        out.extend(rows.collect::<Result<Vec<_>, _>>()?);
        let mut q = self.conn.prepare(
            "SELECT coalesce(sent_at, created_at), chat, msg_id, text, media, state FROM outbox
             WHERE created_at >= ?1 AND (?2 IS NULL OR chat = ?2) ORDER BY seq",
        )?;
        let rows = q.query_map(params![since, chat], |r| {
            Ok(Entry {
                at: r.get(0)?,
                chat: Jid::from_wire(&r.get::<_, String>(1)?),
                kind: EntryKind::Sent,
                from: None,
                id: r.get(2)?,
                text: r.get(3)?,
                media: r.get(4)?,
                state: r.get(5)?,
            })
        })?;
        out.extend(rows.collect::<Result<Vec<_>, _>>()?);
        let drops = self.drops_since(since)?;
        out.extend(drops.into_iter().filter(|d| chat.as_deref().is_none_or(|c| d.chat.to_string() == c)).map(|d| {
            Entry {
                at: d.at,
                chat: d.chat,
                kind: EntryKind::Dropped,
                from: Some(d.sender),
                id: None,
                text: d.hint,
                media: None,
                state: d.rule.as_str().to_owned(),
            }
        }));
        // Stable: at one second, what arrived comes before what answered it.
        out.sort_by_key(|e| (e.at, e.kind != EntryKind::Received));
        Ok(out)
    }
}
