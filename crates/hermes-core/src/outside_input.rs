//! Every parser of outside input, fed whatever proptest makes up: it returns (an error that
//! says what is wrong, or a value), it never panics, and it always ends. The inputs are what
//! users, their editors and other people's phones write: `.env` and `config.yaml` text,
//! allowlist entries, JIDs, chat names for `hermes send`, the text of a message.

use std::collections::BTreeMap;

use proptest::prelude::*;

use crate::allowlist::{Allowlist, parse_chat, parse_user};
use crate::config::{self, Inputs};
use crate::identity::Jid;
use crate::{command, format, mention};

/// Arbitrary Unicode, plus the characters that matter to these parsers, often.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\PC{0,200}",
        "[-+0-9 ()@:.,*#=\"'\\\\/\\n\\r\\t\u{feff}\u{200e}a-z]{0,200}",
        "[0-9@:.]{0,40}(s\\.whatsapp\\.net|lid|g\\.us|broadcast|newsletter)?",
    ]
}

fn yaml() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\PC{0,300}",
        "(whatsapp:\n|  [a-z_]{1,20}: |- |\\[|\\]|\\{|\\}|&a |\\*a |\"|'|[0-9+ ]{1,12}|\n|  ){0,60}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn allowlists_jids_chats_and_commands_never_panic(s in text()) {
        let list = Allowlist::parse(&s);
        for entry in list.entries() {
            // A refused entry always says why and what to write instead.
            if let Err(problem) = &entry.outcome {
                prop_assert!(!problem.describe().is_empty());
            }
        }
        let _ = parse_user(&s);
        let _ = Jid::parse(&s);
        let _ = Jid::parse_chat(&s);
        let _ = parse_chat(&s);
        let _ = command::parse(&s);
        let formatted = format::to_whatsapp(&s);
        for part in format::chunk(&formatted, format::MAX_MESSAGE_CHARS) {
            prop_assert!(part.chars().count() <= format::MAX_MESSAGE_CHARS);
        }
    }

    #[test]
    fn any_configuration_resolves_to_settings_or_diagnostics(yaml in yaml(), value in text(), key in "(WHATSAPP_[A-Z_]{1,20}|OPENAI_API_KEY|HERMES_HOME)") {
        let env = BTreeMap::from([(key.clone(), value.clone())]);
        let dotenv = BTreeMap::from([("WHATSAPP_ALLOWED_USERS".to_owned(), value)]);
        let resolved = config::resolve(&Inputs { env, dotenv, yaml: Some(&yaml) });
        for d in &resolved.diagnostics {
            prop_assert!(!d.message.is_empty() && !d.fix.is_empty(), "{:?}", d);
        }
        let _ = config::yaml::parse(&yaml);
    }

    #[test]
    fn the_mention_gate_takes_any_text(s in text()) {
        let resolved = config::resolve(&Inputs {
            env: BTreeMap::new(),
            dotenv: BTreeMap::from([("WHATSAPP_REQUIRE_MENTION".to_owned(), "true".to_owned())]),
            yaml: None,
        });
        let chat = Jid::parse("120363001234567890@g.us").expect("group");
        let m = mention::Addressing { chat: &chat, text: &s, mentioned: &[], quoted: None };
        let _ = mention::gate(&resolved.config.whatsapp, None, &m);
    }
}
