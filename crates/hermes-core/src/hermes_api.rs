//! What hermes sends Hermes Agent's API server, and what it makes of the answers, with no I/O:
//! which session a chat's turn belongs to, the context it is given, and whether an answer
//! lost in a crash is already in the session's transcript.
//!
//! Hermes keeps the conversation when a request carries `X-Hermes-Session-Id`: hermes sends
//! only the new turn. Each chat has a *generation* (`/new` starts the next one); its
//! transcript id is derived from the chat and the generation until Hermes hands back another
//! (it rotates the id when it compresses a long conversation). The memory scope,
//! `X-Hermes-Session-Key`, is the key Hermes' own WhatsApp adapter used for the chat, so
//! memories made before the switch are found again.

use sha2::{Digest, Sha256};

use crate::identity::Jid;

/// The namespace of Hermes' session keys (its default profile).
const NAMESPACE: &str = "agent:main";

/// The longest `X-Hermes-Session-Id` and `-Key` Hermes accepts.
pub const MAX_HEADER_CHARS: usize = 256;

/// Whom a chat's turns are kept for: the chat, and in a group whose members each have their
/// own session (`group_sessions_per_user`, Hermes' default), the member.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Conversation {
    /// `chat` for a direct chat or a shared group session; `chat|member` for a member's own.
    pub key: String,
    /// Hermes' `X-Hermes-Session-Key` for it.
    pub memory_key: String,
}

/// Hermes' canonical identity of a WhatsApp user: of the forms it is known by (phone number,
/// LID), the shortest, then the smallest, as digits (`canonical_whatsapp_identifier`).
pub fn canonical_user(forms: &[&Jid]) -> Option<String> {
    forms
        .iter()
        .map(|j| j.user().split(':').next().unwrap_or_default().to_owned())
        .filter(|u| !u.is_empty())
        .min_by(|a, b| (a.len(), a).cmp(&(b.len(), b)))
}

/// The conversation a message from `sender` (known by `sender_forms`) in `chat` belongs to.
pub fn conversation(chat: &Jid, sender_forms: &[&Jid], per_user_in_groups: bool) -> Conversation {
    if chat.is_group() {
        let group = chat.to_non_device().to_string();
        let member = canonical_user(sender_forms).filter(|_| per_user_in_groups);
        match member {
            Some(m) => Conversation {
                key: format!("{group}|{m}"),
                memory_key: format!("{NAMESPACE}:whatsapp:group:{group}:{m}"),
            },
            None => Conversation { key: group.clone(), memory_key: format!("{NAMESPACE}:whatsapp:group:{group}") },
        }
    } else {
        let mut forms = vec![chat];
        forms.extend(sender_forms.iter().copied().filter(|j| !j.is_group()));
        let user = canonical_user(&forms).unwrap_or_else(|| chat.user().to_owned());
        Conversation { key: chat.to_non_device().to_string(), memory_key: format!("{NAMESPACE}:whatsapp:dm:{user}") }
    }
}

/// The transcript id of a conversation's generation before Hermes hands back another:
/// `wa-<24 hex digits of the conversation's hash>-<generation>`. Nothing in it reads as a
/// phone number, and it passes Hermes' header checks (no `/`, `\`, `..`, under 256 chars).
pub fn session_id(conversation_key: &str, generation: u32) -> String {
    let digest = Sha256::digest(conversation_key.as_bytes());
    let hex: String = digest.iter().take(12).map(|b| format!("{b:02x}")).collect();
    format!("wa-{hex}-{generation}")
}

/// Whether Hermes would take `value` as a session header (`_is_path_unsafe` and the length
/// check): what hermes adopts from an answer must be sendable again.
pub fn header_safe(value: &str) -> bool {
    let bytes = value.as_bytes();
    let drive = bytes.len() >= 2 && bytes[1] == b':' && bytes[0].is_ascii_alphabetic();
    let unsafe_chars = value.contains(['\r', '\n', '\0', '/', '\\']) || value.contains("..");
    !value.is_empty() && value.chars().count() <= MAX_HEADER_CHARS && !unsafe_chars && !drive
}

/// Who writes in a chat, as the agent's context names them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Context<'a> {
    /// The sender's phone number (digits), when known.
    pub phone: Option<&'a str>,
    /// The group's JID, for a group.
    pub group: Option<&'a str>,
    /// Each member of the group has a session of their own.
    pub per_user: bool,
}

/// The system message of every turn: that this is WhatsApp, who writes, a direct chat or a
/// group. Hermes layers it over its own prompt (tools, memory, skills and persona stay) and
/// does not keep it, so it is sent with every turn; it names nothing that changes between
/// turns, so the provider's prompt cache keeps hitting.
pub fn system_context(c: &Context<'_>) -> String {
    let who = match c.phone {
        Some(p) => format!("+{p}"),
        None => "a WhatsApp user".to_owned(),
    };
    let chat = match (c.group, c.per_user) {
        (None, _) => format!("This is a direct chat with {who}."),
        (Some(g), true) => format!(
            "This is a WhatsApp group ({g}); this conversation is with one member, {who}, whose messages you see \
             here."
        ),
        (Some(g), false) => format!(
            "This is a WhatsApp group ({g}) whose members share this conversation; each message starts with its \
             sender in brackets."
        ),
    };
    format!(
        "You are talking over WhatsApp, through the hermes WhatsApp gateway. {chat} Replies are read on a phone: keep \
         them short, and use plain text or simple Markdown (it is shown as WhatsApp formatting). To send an image or \
         file, put `MEDIA:/absolute/path` on a line of its own."
    )
}

/// One row of a session's transcript (`GET /api/sessions/{id}/messages`).
#[derive(Clone, Debug, PartialEq)]
pub struct TranscriptRow {
    pub role: String,
    pub content: String,
    /// Unix seconds, when Hermes gives it.
    pub timestamp: Option<f64>,
}

/// What a transcript says about a turn hermes asked and did not hear back from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Recovered {
    /// The turn ran to the end: its answer, to deliver instead of asking again.
    Answered(String),
    /// The turn began (its message is there) and has no answer yet: still running, or cut
    /// short by a restart of Hermes.
    Begun,
    /// The turn's message is not there: Hermes never got it.
    Absent,
}

/// How far Hermes' clock may be behind the moment hermes opened the turn (same host, usually).
const CLOCK_SLACK_SECS: f64 = 120.0;

/// Finds the turn that asked `asked` at `opened_at` (unix seconds) in a transcript.
///
/// The turn's message is the last user row with that text, written no earlier than the turn
/// was opened (the same words sent in an earlier turn are not it); its answer is the last
/// assistant row with text before the next user row (tool calls in between have none).
pub fn recover(rows: &[TranscriptRow], asked: &str, opened_at: f64) -> Recovered {
    let asked = squash(asked);
    let is_ours = |r: &TranscriptRow| {
        r.role == "user"
            && r.timestamp.is_none_or(|t| t + CLOCK_SLACK_SECS >= opened_at)
            && (squash(&r.content) == asked || (!asked.is_empty() && squash(&r.content).contains(&asked)))
    };
    let Some(at) = rows.iter().rposition(is_ours) else {
        return Recovered::Absent;
    };
    let after = &rows[at + 1..];
    let until = after.iter().position(|r| r.role == "user").unwrap_or(after.len());
    after[..until]
        .iter()
        .rev()
        .find(|r| r.role == "assistant" && !r.content.trim().is_empty())
        .map_or(Recovered::Begun, |r| Recovered::Answered(r.content.clone()))
}

/// The job a cron run's session belongs to: Hermes names them `cron_<job id>_<date>_<time>`.
pub fn cron_run_job(session_id: &str) -> Option<&str> {
    let rest = session_id.strip_prefix("cron_")?;
    let mut parts = rest.rsplitn(3, '_');
    let (time, date, job) = (parts.next()?, parts.next()?, parts.next()?);
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    (digits(time, 6) && digits(date, 8) && !job.is_empty()).then_some(job)
}

/// Whether a scheduled run's answer says there is nothing to deliver (Hermes'
/// `_is_cron_silence_response`: `[SILENT]`, `SILENT`, `NO_REPLY` alone, on the first or last
/// line, or `[SILENT]` leading the text).
pub fn is_cron_silence(text: &str) -> bool {
    let token = |line: &str| {
        let l = line.split_whitespace().collect::<Vec<_>>().join(" ").to_uppercase();
        matches!(l.as_str(), "[SILENT]" | "SILENT" | "NO_REPLY" | "NO REPLY")
    };
    let stripped = text.trim();
    if stripped.is_empty() {
        return false;
    }
    let lines: Vec<&str> = stripped.lines().filter(|l| !l.trim().is_empty()).collect();
    token(stripped)
        || lines.first().is_some_and(|l| token(l))
        || lines.last().is_some_and(|l| token(l))
        || stripped.to_uppercase().starts_with("[SILENT]")
}

/// A scheduled run's answer as the chat gets it: under a header naming the job, as Hermes
/// delivers it (`cron.wrap_response`).
pub fn cron_delivery(name: Option<&str>, job: &str, content: &str) -> String {
    let name = name.unwrap_or(job);
    format!(
        "Cronjob Response: {name}\n(job_id: {job})\n-------------\n\n{}\n\nTo stop or manage this job, send me a new \
         message (e.g. \"stop reminder {name}\").",
        content.trim()
    )
}

fn squash(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jid(s: &str) -> Jid {
        Jid::parse(s).expect("a JID")
    }

    #[test]
    fn a_direct_chat_is_keyed_as_hermes_keys_it() {
        let chat = jid("15551234567@s.whatsapp.net");
        let c = conversation(&chat, &[&chat], true);
        assert_eq!(c.memory_key, "agent:main:whatsapp:dm:15551234567");
        assert_eq!(c.key, "15551234567@s.whatsapp.net");
        // A LID chat whose phone number is known: the shorter form, as Hermes picks.
        let lid = jid("123456789012345@lid");
        let c = conversation(&lid, &[&lid, &chat], true);
        assert_eq!(c.memory_key, "agent:main:whatsapp:dm:15551234567");
    }

    #[test]
    fn a_group_member_has_a_session_of_their_own_unless_shared() {
        let group = jid("120363001234567890@g.us");
        let member = jid("15551234567@s.whatsapp.net");
        let own = conversation(&group, &[&member], true);
        assert_eq!(own.memory_key, "agent:main:whatsapp:group:120363001234567890@g.us:15551234567");
        let shared = conversation(&group, &[&member], false);
        assert_eq!(shared.memory_key, "agent:main:whatsapp:group:120363001234567890@g.us");
        assert_ne!(own.key, shared.key);
        assert_ne!(session_id(&own.key, 1), session_id(&shared.key, 1));
    }

    #[test]
    fn session_ids_differ_by_chat_and_generation_and_pass_hermes_checks() {
        let a = session_id("15551234567@s.whatsapp.net", 1);
        assert_eq!(a, session_id("15551234567@s.whatsapp.net", 1));
        assert_ne!(a, session_id("15551234567@s.whatsapp.net", 2));
        assert_ne!(a, session_id("15557654321@s.whatsapp.net", 1));
        assert!(!a.contains("1555"));
        assert!(header_safe(&a));
        for bad in ["", "a/b", "a\\b", "..", "C:x", "a\nb", &"x".repeat(257)] {
            assert!(!header_safe(bad), "{bad:?}");
        }
    }

    #[test]
    fn the_context_is_the_same_every_turn() {
        let c = Context { phone: Some("15551234567"), group: None, per_user: true };
        assert_eq!(system_context(&c), system_context(&c.clone()));
        assert!(system_context(&c).contains("direct chat with +15551234567"));
        let g = Context { phone: Some("15551234567"), group: Some("120363001234567890@g.us"), per_user: false };
        assert!(system_context(&g).contains("share this conversation"));
    }

    fn row(role: &str, content: &str, at: f64) -> TranscriptRow {
        TranscriptRow { role: role.into(), content: content.into(), timestamp: Some(at) }
    }

    #[test]
    fn an_answer_in_the_transcript_is_found() {
        let rows = [
            row("user", "hi", 100.0),
            row("assistant", "hello", 101.0),
            row("user", "what time is it", 200.0),
            row("assistant", "", 201.0),
            row("tool", "12:00", 202.0),
            row("assistant", "It is noon.", 203.0),
        ];
        assert_eq!(recover(&rows, "what time is it", 199.0), Recovered::Answered("It is noon.".into()));
        assert_eq!(recover(&rows[..5], "what time is it", 199.0), Recovered::Begun);
        assert_eq!(recover(&rows[..2], "what time is it", 199.0), Recovered::Absent);
    }

    #[test]
    fn the_same_words_in_an_earlier_turn_are_not_this_turn() {
        let rows = [row("user", "ok", 100.0), row("assistant", "Fine.", 101.0)];
        // Opened an hour after that "ok": that one was another turn.
        assert_eq!(recover(&rows, "ok", 3700.0), Recovered::Absent);
        // Without timestamps the last such row is taken.
        let bare: Vec<TranscriptRow> = rows.iter().map(|r| TranscriptRow { timestamp: None, ..r.clone() }).collect();
        assert_eq!(recover(&bare, "ok", 3700.0), Recovered::Answered("Fine.".into()));
    }

    #[test]
    fn cron_runs_are_told_apart_and_silence_is_kept() {
        assert_eq!(cron_run_job("cron_9e743e70af38_20261208_000043"), Some("9e743e70af38"));
        assert_eq!(cron_run_job("cron_a_b_20261208_000043"), Some("a_b"));
        assert_eq!(cron_run_job("wa-abc-1"), None);
        assert_eq!(cron_run_job("cron_x_2026_00"), None);
        for silent in ["[SILENT]", " silent ", "NO_REPLY", "2 deals filtered\n\n[SILENT]", "[SILENT] nothing new"] {
            assert!(is_cron_silence(silent), "{silent:?}");
        }
        for said in ["Silent retry succeeded", "Drink water.", ""] {
            assert!(!is_cron_silence(said), "{said:?}");
        }
        let d = cron_delivery(Some("water"), "j1", "Drink water.\n");
        assert!(d.starts_with("Cronjob Response: water\n(job_id: j1)"));
        assert!(d.contains("\n\nDrink water.\n\n"));
    }

    #[test]
    fn whitespace_and_added_parts_do_not_hide_the_turn() {
        let rows = [row("user", "look at\n this  [image attached]", 100.0), row("assistant", "A cat.", 101.0)];
        assert_eq!(recover(&rows, "look at this", 99.0), Recovered::Answered("A cat.".into()));
    }
}
