//! What changed between the settings in force and a configuration read again, and which of
//! the changes a running gateway applies at once (the rest at its next start).

use super::{Config, Origin};

/// One setting whose value changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub key: &'static str,
    pub before: String,
    pub after: String,
    /// Where the new value comes from.
    pub origin: Origin,
    /// Applied without a restart.
    pub live: bool,
}

/// What the running gateway applies at once: who is let in and how, how replies look, and
/// the model. The rest (the session, the listener, storage, speech) is built at start.
const LIVE: &[&str] = &[
    "WHATSAPP_MODE",
    "WHATSAPP_ALLOWED_USERS",
    "WHATSAPP_ALLOW_ALL_USERS",
    "GATEWAY_ALLOWED_USERS",
    "GATEWAY_ALLOW_ALL_USERS",
    "WHATSAPP_DM_POLICY",
    "WHATSAPP_GROUP_POLICY",
    "WHATSAPP_GROUP_ALLOWED_USERS",
    "WHATSAPP_REQUIRE_MENTION",
    "WHATSAPP_MENTION_PATTERNS",
    "WHATSAPP_FREE_RESPONSE_CHATS",
    "WHATSAPP_REPLY_PREFIX",
    "unauthorized_dm_behavior",
    "WHATSAPP_SEND_READ_RECEIPTS",
    "text_batch_delay_seconds",
    "WHATSAPP_MAX_INPUT_CHARS",
    "WHATSAPP_MAX_HISTORY_CHARS",
    "model.provider",
    "model.default",
    "model.base_url",
    "model.api_key",
];

/// Whether a running gateway applies `key` without a restart.
pub fn applies_live(key: &str) -> bool {
    LIVE.contains(&key)
}

/// The secrets, by the key `summary` shows them under (hidden there, compared here: a key
/// replaced by another of the same length is a change, and so is a URL whose hidden token or
/// password changed).
fn secrets(c: &Config) -> [(&'static str, Option<&str>); 7] {
    [
        ("model.api_key", c.model.api_key.value.as_ref().map(super::Secret::expose)),
        ("stt.openai.api_key", c.media.stt_openai_api_key.value.as_ref().map(super::Secret::expose)),
        ("GROQ_API_KEY", c.media.groq_api_key.value.as_ref().map(super::Secret::expose)),
        ("model.base_url", c.model.base_url.value.as_deref()),
        ("stt.openai.base_url", c.media.stt_openai_base_url.value.as_deref()),
        ("tts.openai.base_url", c.media.tts_openai_base_url.value.as_deref()),
        ("HERMES_ALERT_WEBHOOK", c.whatsapp.alert_webhook.value.as_deref()),
    ]
}

/// The settings whose value differs, in the order `summary` lists them.
pub fn changes(before: &Config, after: &Config) -> Vec<Change> {
    let old = before.summary();
    let (old_secrets, new_secrets) = (secrets(before), secrets(after));
    after
        .summary()
        .into_iter()
        .filter_map(|new| {
            let was = old.iter().find(|o| o.key == new.key)?;
            let secret_changed = old_secrets.iter().zip(&new_secrets).any(|(a, b)| a.0 == new.key && a.1 != b.1);
            let after = if was.value == new.value && secret_changed {
                format!("{} (another value)", new.value)
            } else {
                new.value
            };
            (was.value != after).then(|| Change {
                key: new.key,
                before: was.value.clone(),
                after,
                origin: new.origin,
                live: applies_live(new.key),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Inputs, resolve};

    fn config(dotenv: &str, yaml: &str) -> Config {
        let (dotenv, errors) = crate::config::dotenv::parse(dotenv, &std::collections::BTreeMap::new());
        assert!(errors.is_empty(), "{errors:?}");
        let resolved = resolve(&Inputs { dotenv, yaml: Some(yaml), ..Inputs::default() });
        assert!(!resolved.has_errors(), "{:?}", resolved.diagnostics);
        resolved.config
    }

    #[test]
    fn an_edited_allowlist_applies_at_once_and_the_retention_at_the_next_start() {
        let before = config("WHATSAPP_ALLOWED_USERS=15551234567\n", "");
        let after = config("WHATSAPP_ALLOWED_USERS=15551234567,4915100001111\n", "whatsapp:\n  retention_days: 60\n");
        let c = changes(&before, &after);
        let keys: Vec<(&str, bool)> = c.iter().map(|c| (c.key, c.live)).collect();
        assert_eq!(keys, [("WHATSAPP_ALLOWED_USERS", true), ("WHATSAPP_RETENTION_DAYS", false)]);
        assert_eq!((c[0].before.as_str(), c[0].after.as_str()), ("15551234567", "15551234567,4915100001111"));
        assert!(matches!(c[0].origin, Origin::DotEnv(_)), "{:?}", c[0].origin);
        assert!(changes(&after, &after).is_empty());
    }

    #[test]
    fn a_key_replaced_by_one_of_the_same_length_is_a_change_and_stays_hidden() {
        let before = config("OPENAI_API_KEY=sk-aaaaaaaaaaaa\n", "");
        let after = config("OPENAI_API_KEY=sk-bbbbbbbbbbbb\n", "");
        let c = changes(&before, &after);
        // OPENAI_API_KEY is the model's key and, unless set apart, speech to text's.
        let keys: Vec<(&str, bool)> = c.iter().map(|c| (c.key, c.live)).collect();
        assert_eq!(keys, [("model.api_key", true), ("stt.openai.api_key", false)]);
        assert!(!c[0].after.contains("bbbb") && c[0].after.contains("another value"), "{c:?}");
    }

    /// Issue 25: with webhook tokens hidden, an edited token looked like no change at all, and a
    /// live one (the model's URL) was not put in force.
    #[test]
    fn issue_25_a_token_in_a_url_replaced_is_a_change_and_stays_hidden() {
        let url = |token: &str| format!("model:\n  base_url: https://proxy.example/{token}/v1\n");
        let hook = |token: &str| format!("HERMES_ALERT_WEBHOOK=https://hooks.slack.com/services/T0/B0/{token}\n");
        let before = config(&hook("oldSECRET"), &url("9f86d081884c7d659a2feaa0c55ad015"));
        let after = config(&hook("newSECRET"), &url("0e5751c026e543b2e8ab2eb06099daa1"));
        let c = changes(&before, &after);
        let keys: Vec<(&str, bool)> = c.iter().map(|c| (c.key, c.live)).collect();
        assert_eq!(keys, [("HERMES_ALERT_WEBHOOK", false), ("model.base_url", true)]);
        for change in &c {
            assert!(!format!("{change:?}").contains("SECRET") && change.after.contains("another value"), "{c:?}");
            assert!(!format!("{change:?}").contains("daa1"), "{c:?}");
        }
    }

    #[test]
    fn every_live_key_is_a_setting() {
        let keys: Vec<&str> = config("", "").summary().iter().map(|l| l.key).collect();
        for key in LIVE {
            assert!(keys.contains(key), "{key}");
        }
    }
}
