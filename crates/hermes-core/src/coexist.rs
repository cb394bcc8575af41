//! hermes beside Hermes Agent in one `HERMES_HOME`: who owns the linked device.
//!
//! Hermes runs its API server (the agent hermes asks) from the same folder, and starts its own
//! WhatsApp adapter (a Node bridge on the same linked device) by its own rules, read from the
//! same `.env` and `config.yaml`. Two clients on one device replace each other, so exactly one
//! may own it. hermes does not need `WHATSAPP_ENABLED` (a linked session is enough): the
//! variable is Hermes', and hermes writes `WHATSAPP_ENABLED=false` for it when it links.
//! [`hermes_bridge`] says whether Hermes 0.19 would start its bridge all the same, by its rules
//! (`gateway/config.py`):
//! - `HERMES_HOME/.env` beats the process environment (Hermes loads it with `override=True`);
//! - `WHATSAPP_ENABLED` true (`true`, `1`, `yes`, `on`) starts it whatever `config.yaml` says;
//!   false (`false`, `0`, `no`) stops it, unless
//! - `config.yaml` has a `whatsapp:` block (or `platforms.whatsapp.extra`) with settings but no
//!   explicit `enabled:`, and Node is installed: Hermes then takes the block for "configured"
//!   and starts the bridge anyway;
//! - the top-level `whatsapp.enabled` beats `platforms.whatsapp.enabled`.
//!
//! The bridge only connects when Hermes' session folder holds a Baileys `creds.json`: without
//! one it stops at once ("not paired"), harmless but noisy.

use std::collections::BTreeMap;

use crate::config::yaml::{self, Node};

/// What decides whether Hermes starts its WhatsApp bridge, as read from the settings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BridgeSwitch {
    /// `WHATSAPP_ENABLED` as Hermes sees it (`.env` first) and where from.
    pub enabled_var: Option<(String, &'static str)>,
    /// `whatsapp.enabled` or else `platforms.whatsapp.enabled` in `config.yaml`, as written.
    pub yaml_enabled: Option<(bool, &'static str)>,
    /// A `whatsapp:` block or `platforms.whatsapp.extra` with settings in it.
    pub yaml_settings: bool,
    /// `node` is on the PATH.
    pub node: bool,
    /// A Baileys session (`creds.json`) is where Hermes' bridge looks.
    pub bridge_session: bool,
}

impl BridgeSwitch {
    /// Reads the switch from the settings' sources (`node` and `bridge_session` are the
    /// caller's to fill in).
    pub fn read(env: &BTreeMap<String, String>, dotenv: &BTreeMap<String, String>, yaml_text: Option<&str>) -> Self {
        let enabled_var = dotenv
            .get("WHATSAPP_ENABLED")
            .map(|v| (v.clone(), ".env"))
            .or_else(|| env.get("WHATSAPP_ENABLED").map(|v| (v.clone(), "the environment")));
        let root = yaml_text.and_then(|t| yaml::parse(t).ok());
        let at = |path: &str| {
            let mut node = root.as_ref()?;
            for part in path.split('.') {
                node = node.get(part)?;
            }
            Some(node)
        };
        let flag = |n: &Node| match n {
            Node::Scalar { text, .. } => crate::config::parse_bool(text).ok(),
            _ => None,
        };
        let yaml_enabled =
            at("whatsapp.enabled").and_then(flag).map(|b| (b, "config.yaml whatsapp.enabled")).or_else(|| {
                at("platforms.whatsapp.enabled").and_then(flag).map(|b| (b, "config.yaml platforms.whatsapp.enabled"))
            });
        let has_settings = |n: Option<&Node>| n.is_some_and(|n| n.entries().iter().any(|(k, _)| k != "enabled"));
        let yaml_settings = has_settings(at("whatsapp")) || has_settings(at("platforms.whatsapp.extra"));
        BridgeSwitch { enabled_var, yaml_enabled, yaml_settings, node: false, bridge_session: false }
    }
}

/// Whether Hermes would start its own WhatsApp bridge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Bridge {
    /// It stays off; why.
    Off(String),
    /// It would start: why, and whether it would connect (a Baileys session and Node are
    /// there) and so replace hermes on the device.
    Starts { why: String, connects: bool },
}

/// The fix that keeps Hermes' bridge off, for every message that finds it on.
pub const FIX: &str = "hermes owns WhatsApp and does not need WHATSAPP_ENABLED: set WHATSAPP_ENABLED=false in \
                       HERMES_HOME/.env, and `enabled: false` under `whatsapp:` (or `platforms: whatsapp:`) in \
                       config.yaml so that Hermes Agent does not start its own WhatsApp bridge";

/// Hermes 0.19's decision (see the module's documentation).
pub fn hermes_bridge(s: &BridgeSwitch) -> Bridge {
    let var = s.enabled_var.as_ref().map(|(v, from)| (v.trim().to_ascii_lowercase(), *from));
    let starts = |why: String| Bridge::Starts { why, connects: s.node && s.bridge_session };
    match var.as_ref().map(|(v, from)| (v.as_str(), *from)) {
        Some(("true" | "1" | "yes" | "on", from)) => return starts(format!("WHATSAPP_ENABLED is true in {from}")),
        Some(("false" | "0" | "no", from)) => {
            return match s.yaml_enabled {
                Some((true, at)) => Bridge::Off(format!("WHATSAPP_ENABLED=false in {from} overrides {at}")),
                None if s.yaml_settings && s.node => starts(format!(
                    "config.yaml has WhatsApp settings without `enabled: false`, which Hermes takes for \"configured\" \
                     despite WHATSAPP_ENABLED=false in {from}"
                )),
                _ => Bridge::Off(format!("WHATSAPP_ENABLED=false in {from}")),
            };
        }
        _ => {}
    }
    match s.yaml_enabled {
        Some((true, at)) => starts(format!("{at} is true")),
        Some((false, at)) => Bridge::Off(format!("{at} is false")),
        None if s.yaml_settings && s.node => starts(
            "config.yaml has WhatsApp settings without `enabled: false`, which Hermes takes for \"configured\""
                .to_owned(),
        ),
        None => Bridge::Off("nothing enables it".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn switch(dotenv: &[(&str, &str)], env: &[(&str, &str)], yaml: Option<&str>) -> BridgeSwitch {
        let map = |v: &[(&str, &str)]| v.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        BridgeSwitch { node: true, bridge_session: true, ..BridgeSwitch::read(&map(env), &map(dotenv), yaml) }
    }

    #[test]
    fn dotenv_beats_the_environment_and_true_beats_yaml() {
        let on = switch(
            &[("WHATSAPP_ENABLED", "true")],
            &[("WHATSAPP_ENABLED", "false")],
            Some("platforms:\n  whatsapp:\n    enabled: false\n"),
        );
        assert!(matches!(hermes_bridge(&on), Bridge::Starts { connects: true, .. }));
        let off = switch(
            &[("WHATSAPP_ENABLED", "false")],
            &[("WHATSAPP_ENABLED", "true")],
            Some("platforms:\n  whatsapp:\n    enabled: true\n"),
        );
        assert!(matches!(hermes_bridge(&off), Bridge::Off(_)), "{:?}", hermes_bridge(&off));
    }

    #[test]
    fn a_whatsapp_block_without_enabled_starts_it_despite_false_when_node_is_there() {
        let yaml = "whatsapp:\n  dm_policy: allowlist\n";
        let s = switch(&[("WHATSAPP_ENABLED", "false")], &[], Some(yaml));
        assert!(matches!(hermes_bridge(&s), Bridge::Starts { .. }), "{:?}", hermes_bridge(&s));
        let without_node = BridgeSwitch { node: false, ..s.clone() };
        assert!(matches!(hermes_bridge(&without_node), Bridge::Off(_)));
        let explicit = switch(
            &[("WHATSAPP_ENABLED", "false")],
            &[],
            Some("whatsapp:\n  enabled: false\n  dm_policy: allowlist\n"),
        );
        assert!(matches!(hermes_bridge(&explicit), Bridge::Off(_)));
        // Nothing set at all but the block: Hermes takes it for configured.
        let unset = switch(&[], &[], Some(yaml));
        assert!(matches!(hermes_bridge(&unset), Bridge::Starts { .. }));
    }

    #[test]
    fn without_a_baileys_session_it_would_start_but_not_connect() {
        let s = BridgeSwitch { bridge_session: false, ..switch(&[("WHATSAPP_ENABLED", "true")], &[], None) };
        assert!(matches!(hermes_bridge(&s), Bridge::Starts { connects: false, .. }));
        assert!(matches!(hermes_bridge(&switch(&[], &[], None)), Bridge::Off(_)));
        let top = switch(&[], &[], Some("whatsapp:\n  enabled: true\nplatforms:\n  whatsapp:\n    enabled: false\n"));
        assert!(matches!(hermes_bridge(&top), Bridge::Starts { .. }), "the top-level block wins");
    }
}
