//! Slash commands a user can send in a chat instead of a message for the agent.
//!
//! The names are Hermes': `/new` and `/reset` forget the conversation, `/help` lists the
//! commands, `/status` says how the gateway is doing. A message that only looks like a path
//! (`/etc/hosts is missing`) is not a command: a command is a single word, alone or followed
//! by arguments, and unknown ones are answered with the list rather than sent to the agent.

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// `/new` or `/reset`: forget this chat's history.
    Reset,
    Help,
    Status,
    /// A `/word` this gateway does not know.
    Unknown(String),
}

/// The command in `text`, if it is one.
pub fn parse(text: &str) -> Option<Command> {
    let text = text.trim();
    let word = text.strip_prefix('/')?.split_whitespace().next()?;
    // `/usr/bin` or `/2` are not commands; a command is a short word of letters.
    let name = word.split('@').next().unwrap_or(word);
    if name.is_empty() || name.len() > 32 || !name.chars().all(|c| c.is_ascii_alphabetic() || c == '_') {
        return None;
    }
    Some(match name.to_ascii_lowercase().as_str() {
        "new" | "reset" => Command::Reset,
        "help" | "start" => Command::Help,
        "status" => Command::Status,
        other => Command::Unknown(other.to_owned()),
    })
}

/// What `/help` answers.
pub fn help() -> &'static str {
    "Commands:\n/new or /reset: start a new conversation (forgets this chat's history)\n\
     /status: the gateway's link, model and queue\n/help: this list\n\
     Anything else is sent to the agent."
}

/// What `/reset` answers.
pub fn reset_done() -> &'static str {
    "Started a new conversation: earlier messages in this chat are forgotten."
}

/// The answer to an unknown command.
pub fn unknown(name: &str) -> String {
    format!("Unknown command /{name}.\n{}", help())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(text: &str, expected: Option<Command>) {
        assert_eq!(parse(text), expected, "input: {text:?}");
    }

    #[test]
    fn commands() {
        check("/new", Some(Command::Reset));
        check("  /RESET  ", Some(Command::Reset));
        check("/help me", Some(Command::Help));
        check("/status", Some(Command::Status));
        check("/status@hermes", Some(Command::Status));
        check("/weather berlin", Some(Command::Unknown("weather".into())));
        check("/usr/bin/env is missing", None);
        check("/2 is a fraction", None);
        check("/", None);
        check("hello /new", None);
        check("new", None);
    }
}
