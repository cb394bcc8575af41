//! What the agent reads before a reply: the message it quotes, worded as Hermes words it
//! (`[Replying to: "..."]`, `[Replying to your previous message: "..."]` for one of the
//! agent's own), outermost, so that the agent answers the question the person pointed at.

/// Where the quoted message was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Quoted {
    /// One the linked account wrote (the agent's reply, or the owner's own message).
    Ours(String),
    /// One the chat's people wrote, as hermes kept it (a voice note's transcript, a document's
    /// text), or the copy WhatsApp embeds in the reply.
    Theirs(String),
    /// Neither hermes nor the reply has it any more: said, not guessed.
    Gone,
}

/// Hermes shows at most this much of the quoted message.
const MAX_CHARS: usize = 500;

/// The line before a reply's text.
pub fn prefix(q: &Quoted) -> String {
    match q {
        Quoted::Ours(text) => format!("[Replying to your previous message: \"{}\"]", clip(text)),
        Quoted::Theirs(text) => format!("[Replying to: \"{}\"]", clip(text)),
        Quoted::Gone => "[Replying to a message that is no longer available]".to_owned(),
    }
}

/// A reply's text with its quote before it.
pub fn with_prefix(prefix: Option<&str>, text: &str) -> String {
    match prefix {
        Some(p) => format!("{p}\n\n{text}"),
        None => text.to_owned(),
    }
}

fn clip(text: &str) -> String {
    let text = text.trim();
    if text.chars().count() <= MAX_CHARS {
        return text.to_owned();
    }
    let cut: String = text.chars().take(MAX_CHARS).collect();
    format!("{}…", cut.trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quote_is_worded_as_hermes_words_it_and_clipped() {
        assert_eq!(prefix(&Quoted::Ours("Paris.".into())), "[Replying to your previous message: \"Paris.\"]");
        assert_eq!(prefix(&Quoted::Theirs(" what time? ".into())), "[Replying to: \"what time?\"]");
        assert_eq!(prefix(&Quoted::Gone), "[Replying to a message that is no longer available]");
        let long = prefix(&Quoted::Theirs("x".repeat(600)));
        assert!(long.ends_with("…\"]") && long.chars().count() < 540, "{long}");
        assert_eq!(with_prefix(Some("[Replying to: \"a\"]"), "b"), "[Replying to: \"a\"]\n\nb");
        assert_eq!(with_prefix(None, "b"), "b");
    }
}
