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

/// The settings whose value differs, in the order `summary` lists them.
pub fn changes(before: &Config, after: &Config) -> Vec<Change> {
    let old = before.summary();
    after
        .summary()
        .into_iter()
        .filter_map(|new| {
            let was = old.iter().find(|o| o.key == new.key)?;
            (was.value != new.value).then(|| Change {
                key: new.key,
                before: was.value.clone(),
                after: new.value,
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
    fn every_live_key_is_a_setting() {
        let keys: Vec<&str> = config("", "").summary().iter().map(|l| l.key).collect();
        for key in LIVE {
            assert!(keys.contains(key), "{key}");
        }
    }
}
