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

/// What was said in a group since the agent's last turn there, not addressed to it (who, what),
/// as the agent reads it before the message that addresses it: attributed, in order, each cut
/// to a few hundred characters. `None` when there is none.
pub fn group_context(lines: &[(String, String)]) -> Option<String> {
    if lines.is_empty() {
        return None;
    }
    let mut s = "[Earlier in this group, not addressed to you (context only):]".to_owned();
    for (who, text) in lines {
        s.push_str(&format!("\n[{who}] {}", clip_to(text, CONTEXT_CHARS)));
    }
    Some(s)
}

/// Each message of group context shows at most this much.
const CONTEXT_CHARS: usize = 300;

/// A reply's text with its quote before it.
pub fn with_prefix(prefix: Option<&str>, text: &str) -> String {
    match prefix {
        Some(p) => format!("{p}\n\n{text}"),
        None => text.to_owned(),
    }
}

fn clip(text: &str) -> String {
    clip_to(text, MAX_CHARS)
}

fn clip_to(text: &str, max: usize) -> String {
    let text = text.trim();
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let cut: String = text.chars().take(max).collect();
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

    #[test]
    fn group_context_is_attributed_and_bounded() {
        assert_eq!(group_context(&[]), None);
        let lines = [
            ("+4915100001111".to_owned(), "lunch at noon?".to_owned()),
            ("+4915100002222".to_owned(), "y".repeat(400)),
        ];
        let c = group_context(&lines).expect("context");
        assert!(c.starts_with(
            "[Earlier in this group, not addressed to you (context only):]\n[+4915100001111] lunch at noon?\n"
        ));
        assert!(c.ends_with("…") && c.chars().count() < 450, "{c}");
    }
}
