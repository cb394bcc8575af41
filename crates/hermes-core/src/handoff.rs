//! A person takes over a chat: when the account's owner writes in it from the phone, the agent
//! stops answering there for a while (`WHATSAPP_HANDOFF_MINUTES`), so that the two do not talk
//! over each other; `/pause` and `/resume`, sent by the owner in the chat (or `hermes pause` and
//! `hermes resume`), do it by hand. What arrives meanwhile is kept and traced (a `paused` drop),
//! never answered by the agent. Nothing hermes sends counts as the owner writing: its messages
//! are in the outbox, and come back marked as its own.

/// A chat the agent does not answer for now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pause {
    /// Unix seconds.
    pub since: i64,
    /// Until when (unix seconds); `None`: until resumed.
    pub until: Option<i64>,
    /// What paused it.
    pub by: PausedBy,
}

/// What paused a chat.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PausedBy {
    /// The owner wrote in the chat from the phone.
    OwnerMessage,
    /// The owner sent `/pause` in the chat.
    OwnerCommand,
    /// `hermes pause` on the command line.
    Cli,
    /// The reply-loop breaker: the agent answered too often in too short a time there (another
    /// bot answering it, most likely).
    LoopBreaker,
}

impl PausedBy {
    pub fn as_str(self) -> &'static str {
        match self {
            PausedBy::OwnerMessage => "owner_message",
            PausedBy::OwnerCommand => "owner_command",
            PausedBy::Cli => "cli",
            PausedBy::LoopBreaker => "loop_breaker",
        }
    }

    pub fn parse(s: &str) -> Option<PausedBy> {
        Some(match s {
            "owner_message" => PausedBy::OwnerMessage,
            "owner_command" => PausedBy::OwnerCommand,
            "cli" => PausedBy::Cli,
            "loop_breaker" => PausedBy::LoopBreaker,
            _ => return None,
        })
    }
}

impl Pause {
    /// In force at `now`.
    pub fn active(&self, now: i64) -> bool {
        self.until.is_none_or(|u| now < u)
    }

    /// Why a message in the paused chat is not answered, and how to change it.
    pub fn hint(&self) -> String {
        let why = match self.by {
            PausedBy::OwnerMessage => "the account's owner wrote in this chat from the phone",
            PausedBy::OwnerCommand => "the account's owner sent /pause in this chat",
            PausedBy::Cli => "`hermes pause` paused this chat",
            PausedBy::LoopBreaker => {
                "the agent answered here more often than a person writes (whatsapp.loop_turns in whatsapp.loop_minutes): \
                 another bot answering it, most likely"
            }
        };
        let until = match self.until {
            Some(t) => format!("the agent answers again from {t} (unix time), or"),
            None => "the agent answers again".to_owned(),
        };
        format!(
            "{why}, so the agent leaves it to a person; {until} when the owner sends /resume in the chat (or runs \
             `hermes resume CHAT`)"
        )
    }
}

/// The reply-loop breaker: a chat where the agent answered `turns` times within the window
/// trips it (two bots answering each other would go on for ever, and get the number banned).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoopLimit {
    /// Answers in the window that trip it (0: never).
    pub turns: u32,
    pub minutes: u32,
}

impl LoopLimit {
    pub fn tripped(&self, recent_answers: u32) -> bool {
        self.turns > 0 && recent_answers >= self.turns
    }
}

/// What the owner typed in a chat, as far as the agent is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OwnerSays {
    /// `/pause`: the agent stays out of this chat until `/resume`.
    Pause,
    /// `/resume`: the agent answers here again.
    Resume,
    /// Anything else: a person is talking; the agent pauses for the handoff time.
    Talk,
}

/// Reads the owner's message.
pub fn owner_says(text: &str) -> OwnerSays {
    match text.trim().to_ascii_lowercase().as_str() {
        "/pause" => OwnerSays::Pause,
        "/resume" => OwnerSays::Resume,
        _ => OwnerSays::Talk,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pause_lasts_until_its_end_or_for_ever() {
        let p = Pause { since: 100, until: Some(200), by: PausedBy::OwnerMessage };
        assert!(p.active(150) && !p.active(200));
        let held = Pause { until: None, by: PausedBy::OwnerCommand, ..p };
        assert!(held.active(i64::MAX));
        assert!(held.hint().contains("/resume") && held.hint().contains("sent /pause"));
        assert_eq!(PausedBy::parse(PausedBy::Cli.as_str()), Some(PausedBy::Cli));
    }

    #[test]
    fn the_loop_breaker_trips_at_its_count() {
        let l = LoopLimit { turns: 20, minutes: 5 };
        assert!(!l.tripped(19) && l.tripped(20));
        assert!(!LoopLimit { turns: 0, minutes: 5 }.tripped(1000));
        let p = Pause { since: 0, until: Some(1), by: PausedBy::LoopBreaker };
        assert!(p.hint().contains("another bot"));
    }

    #[test]
    fn the_owner_pauses_resumes_or_talks() {
        assert_eq!(owner_says(" /PAUSE "), OwnerSays::Pause);
        assert_eq!(owner_says("/resume"), OwnerSays::Resume);
        assert_eq!(owner_says("hi, it's me, the human"), OwnerSays::Talk);
        assert_eq!(owner_says("/pause now please"), OwnerSays::Talk);
    }
}
