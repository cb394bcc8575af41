//! Mention gating in groups: with `require_mention`, a group message reaches the agent only
//! when it is addressed to it. The rules are Hermes': the chat is a free-response chat, the
//! text is a command (`/...`), it quotes one of the agent's messages, it mentions the linked
//! account (by phone number or LID, as a mention or written `@number`), or it matches one of
//! `mention_patterns` (case-insensitive regular expressions).

use regex::RegexBuilder;

use crate::config::WhatsAppConfig;
use crate::identity::{Account, Jid};

/// What a group message says about whom it addresses.
#[derive(Clone, Copy, Debug)]
pub struct Addressing<'a> {
    pub chat: &'a Jid,
    pub text: &'a str,
    /// JIDs the message mentions (WhatsApp's mention list).
    pub mentioned: &'a [Jid],
    /// The author of the message this one quotes, if it quotes one.
    pub quoted: Option<&'a Jid>,
}

/// Why a group message passes the gate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pass {
    /// `require_mention` is off.
    NotRequired,
    FreeResponseChat,
    Command,
    QuotesTheAgent,
    Mentioned,
    Pattern,
}

/// `Ok` with the reason it passes, or `Err` with the hint for the drop ledger.
pub fn gate(cfg: &WhatsAppConfig, own: Option<&Account>, m: &Addressing<'_>) -> Result<Pass, String> {
    if !cfg.require_mention.value {
        return Ok(Pass::NotRequired);
    }
    let chat = m.chat.to_non_device().to_string();
    let chat_user = m.chat.user();
    if cfg.free_response_chats.value.iter().any(|c| c.trim() == chat || c.trim() == chat_user) {
        return Ok(Pass::FreeResponseChat);
    }
    // Only a command this gateway knows: any text that merely starts with `/` would let
    // every group member past the gate to the agent.
    if crate::command::parse(m.text).is_some_and(|c| !matches!(c, crate::command::Command::Unknown(_))) {
        return Ok(Pass::Command);
    }
    let is_own = |j: &Jid| own.is_some_and(|a| j.user_id().is_some_and(|u| a.is(&u)));
    if m.quoted.is_some_and(is_own) {
        return Ok(Pass::QuotesTheAgent);
    }
    if m.mentioned.iter().any(is_own) {
        return Ok(Pass::Mentioned);
    }
    if let Some(a) = own {
        let ids = a.phone.iter().map(|p| p.as_str()).chain(a.lid.iter().map(|l| l.as_str()));
        for id in ids {
            if m.text.contains(&format!("@{id}")) {
                return Ok(Pass::Mentioned);
            }
        }
    }
    let matched = cfg
        .mention_patterns
        .value
        .iter()
        .any(|p| RegexBuilder::new(p).case_insensitive(true).build().is_ok_and(|re| re.is_match(m.text)));
    if matched {
        return Ok(Pass::Pattern);
    }
    Err(format!(
        "require_mention is on and this group message does not address the agent (mention it, reply to it, \
         start with /, or add the group to free_response_chats: {chat})"
    ))
}

/// The text without the mention of the agent at its start (`@15551234567, hi` -> `hi`);
/// the text as it was when nothing would be left.
pub fn strip_own_mention(text: &str, own: Option<&Account>) -> String {
    let Some(a) = own else { return text.to_owned() };
    let ids = a.phone.iter().map(|p| p.as_str()).chain(a.lid.iter().map(|l| l.as_str()));
    for id in ids {
        let tag = format!("@{id}");
        if let Some(rest) = text.trim_start().strip_prefix(&tag) {
            let rest = rest.trim_start_matches([',', ':', '-']).trim();
            if !rest.is_empty() {
                return rest.to_owned();
            }
        }
    }
    text.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Inputs, resolve};
    use crate::identity::{Lid, PhoneNumber};

    fn config(yaml: &str) -> WhatsAppConfig {
        let r = resolve(&Inputs { yaml: Some(yaml), ..Inputs::default() });
        assert!(!r.has_errors(), "{:?}", r.diagnostics);
        r.config.whatsapp
    }

    fn own() -> Account {
        Account { phone: PhoneNumber::from_digits("15551234567").ok(), lid: Lid::from_digits("98765432101234") }
    }

    #[track_caller]
    fn check(yaml: &str, text: &str, mentioned: &[&str], quoted: Option<&str>, expected: Result<Pass, ()>) {
        let cfg = config(yaml);
        let chat = Jid::parse("120363000000000001@g.us").expect("jid");
        let mentioned: Vec<Jid> = mentioned.iter().map(|m| Jid::parse(m).expect("jid")).collect();
        let quoted = quoted.map(|q| Jid::parse(q).expect("jid"));
        let m = Addressing { chat: &chat, text, mentioned: &mentioned, quoted: quoted.as_ref() };
        assert_eq!(gate(&cfg, Some(&own()), &m).map_err(|_| ()), expected, "{yaml:?} {text:?}");
    }

    const ON: &str = "whatsapp:\n  require_mention: true\n";

    #[test]
    fn gating() {
        check("", "anything", &[], None, Ok(Pass::NotRequired));
        check(ON, "anything", &[], None, Err(()));
        check(ON, "/status", &[], None, Ok(Pass::Command));
        // Issue 11: not any text that starts with a slash.
        check(ON, "/imagine a poem about the group", &[], None, Err(()));
        check(ON, "/etc/passwd, summarise it", &[], None, Err(()));
        check(ON, "hi @15551234567", &[], None, Ok(Pass::Mentioned));
        check(ON, "hi there", &["15551234567@s.whatsapp.net"], None, Ok(Pass::Mentioned));
        check(ON, "hi there", &["98765432101234@lid"], None, Ok(Pass::Mentioned));
        check(ON, "hi there", &["4915100000000@s.whatsapp.net"], None, Err(()));
        check(ON, "yes, that", &[], Some("15551234567:3@s.whatsapp.net"), Ok(Pass::QuotesTheAgent));
        check(ON, "yes, that", &[], Some("4915100000000@s.whatsapp.net"), Err(()));
        let patterns = "whatsapp:\n  require_mention: true\n  mention_patterns: ['^hermes\\b', 'bot,']\n";
        check(patterns, "Hermes, what time is it?", &[], None, Ok(Pass::Pattern));
        check(patterns, "ask the hermes", &[], None, Err(()));
        let free = "whatsapp:\n  require_mention: true\n  free_response_chats: ['120363000000000001@g.us']\n";
        check(free, "anything", &[], None, Ok(Pass::FreeResponseChat));
    }

    #[test]
    fn the_leading_mention_is_stripped() {
        assert_eq!(strip_own_mention("@15551234567, what's up?", Some(&own())), "what's up?");
        assert_eq!(strip_own_mention("@98765432101234: hi", Some(&own())), "hi");
        assert_eq!(strip_own_mention("@15551234567", Some(&own())), "@15551234567");
        assert_eq!(strip_own_mention("hey @15551234567", Some(&own())), "hey @15551234567");
    }
}
