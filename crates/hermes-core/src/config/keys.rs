//! Which keys exist, where each is looked up, and what unknown keys get told.

use super::values::{self, AgentChoice, ImageInputMode, Mode, Policy, Secret, SttProvider, UnauthorizedDm};
use super::yaml::Node;
use super::{
    AgentConfig, Config, Diagnostic, Inputs, MediaConfig, ModelConfig, Origin, Setting, Severity, WhatsAppConfig,
};
use crate::allowlist::Allowlist;
use crate::identity::Jid;

/// Every `WHATSAPP_*` (and related) variable hermes reads.
pub const KNOWN_ENV_KEYS: &[&str] = &[
    "WHATSAPP_ENABLED",
    "WHATSAPP_MODE",
    "WHATSAPP_ALLOWED_USERS",
    "WHATSAPP_ALLOW_FROM",
    "WHATSAPP_ALLOW_ALL_USERS",
    "GATEWAY_ALLOWED_USERS",
    "GATEWAY_ALLOW_ALL_USERS",
    "WHATSAPP_DM_POLICY",
    "WHATSAPP_GROUP_POLICY",
    "WHATSAPP_GROUP_ALLOWED_USERS",
    "WHATSAPP_GROUP_ALLOW_FROM",
    "WHATSAPP_REQUIRE_MENTION",
    "WHATSAPP_MENTION_PATTERNS",
    "WHATSAPP_FREE_RESPONSE_CHATS",
    "WHATSAPP_REPLY_PREFIX",
    "WHATSAPP_HOME_CHANNEL",
    "WHATSAPP_SEND_READ_RECEIPTS",
    "WHATSAPP_DEBUG",
    "WHATSAPP_SERVER_URL",
    "WHATSAPP_MIN_FREE_MB",
    "WHATSAPP_MAX_INPUT_CHARS",
    "WHATSAPP_MAX_HISTORY_CHARS",
    "WHATSAPP_RETENTION_DAYS",
    "WHATSAPP_MAX_MEDIA_MB",
    "WHATSAPP_AGENT",
    "WHATSAPP_AGENT_URL",
    "WHATSAPP_AGENT_NOTICE_SECONDS",
    "WHATSAPP_HANDOFF_MINUTES",
    "WHATSAPP_REMINDERS_POLL_SECONDS",
];

/// Hermes variables that only its Node bridge or other platforms read. They are recognised so
/// that a Hermes user's `.env` does not light up with "unknown key", and reported once each so
/// nobody believes they still do something.
const HERMES_ONLY_ENV_KEYS: &[(&str, &str)] = &[
    ("WHATSAPP_MAX_MESSAGE_LENGTH", "hermes always splits replies at WhatsApp's 4096 characters"),
    ("WHATSAPP_CHUNK_DELAY_MS", "it configured Hermes' Node bridge, which hermes does not have"),
    ("WHATSAPP_SEND_TIMEOUT_MS", "it configured Hermes' Node bridge, which hermes does not have"),
    ("WHATSAPP_NPM_INSTALL_TIMEOUT", "hermes has no Node bridge to install"),
    ("WHATSAPP_FORWARD_OWNER_MESSAGES", "forwarding owner-typed messages is not supported yet"),
    ("WHATSAPP_HOME_CHANNEL_NAME", "hermes names the home channel by WHATSAPP_HOME_CHANNEL alone"),
    ("WHATSAPP_HOME_CHANNEL_THREAD_ID", "WhatsApp chats have no threads"),
];

const WHATSAPP_YAML_KEYS: &[&str] = &[
    "dm_policy",
    "group_policy",
    "allow_from",
    "group_allow_from",
    "require_mention",
    "mention_patterns",
    "free_response_chats",
    "reply_prefix",
    "unauthorized_dm_behavior",
    "send_read_receipts",
    "mode",
    "home_channel",
    "text_batch_delay_seconds",
    "min_free_mb",
    "max_input_chars",
    "max_history_chars",
    "retention_days",
    "max_media_mb",
    "agent",
    "agent_url",
    "agent_notice_seconds",
    "reminders_poll_seconds",
    "handoff_minutes",
    "send_per_minute",
    "chat_send_per_minute",
    "observe_unmentioned_group_messages",
    "group_context_messages",
    "loop_turns",
    "loop_minutes",
];

const EXTRA_YAML_KEYS: &[&str] = &[
    "session_path",
    "reply_prefix",
    "dm_policy",
    "allow_from",
    "allowFrom",
    "group_policy",
    "group_allow_from",
    "groupAllowFrom",
    "require_mention",
    "mention_patterns",
    "free_response_chats",
    "send_read_receipts",
    "text_batch_delay_seconds",
    "group_sessions_per_user",
];

const HERMES_ONLY_EXTRA_KEYS: &[(&str, &str)] = &[
    ("bridge_port", "hermes has no Node bridge"),
    ("bridge_script", "hermes has no Node bridge"),
    ("text_batch_split_delay_seconds", "hermes batches with text_batch_delay_seconds alone"),
    ("thread_sessions_per_user", "WhatsApp chats have no threads"),
];

const PLATFORM_YAML_KEYS: &[&str] = &["enabled", "extra", "home_channel", "reply_to_mode"];

/// The known name closest to `name`, if any is close enough to be what was meant.
pub fn nearest_name<'a>(name: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let lower = name.to_ascii_lowercase();
    known
        .into_iter()
        .map(|k| (strsim::levenshtein(&lower, &k.to_ascii_lowercase()), k))
        .filter(|(d, k)| *d <= (k.len() / 3).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

enum Raw<'a> {
    Text(&'a str),
    Yaml(&'a Node),
}

pub(super) struct Resolver<'a, 'd> {
    inputs: &'a Inputs<'a>,
    root: Option<&'a Node>,
    diagnostics: &'d mut Vec<Diagnostic>,
}

fn yaml_at<'n>(root: &'n Node, path: &str) -> Option<&'n Node> {
    path.split('.').try_fold(root, |node, key| node.get(key))
}

fn scalar_text<'n>(raw: &Raw<'n>) -> Result<&'n str, String> {
    match raw {
        Raw::Text(t) => Ok(t),
        Raw::Yaml(Node::Scalar { text, .. }) => Ok(text),
        Raw::Yaml(other) => Err(format!("expected a single value, found {}", other.kind())),
    }
}

fn list_items(raw: &Raw<'_>) -> Result<Vec<String>, String> {
    match raw {
        Raw::Yaml(Node::Seq { items, .. }) => items
            .iter()
            .map(|i| match i {
                Node::Scalar { text, .. } => Ok(text.clone()),
                other => Err(format!("list items must be values, found {}", other.kind())),
            })
            .collect(),
        _ => scalar_text(raw).map(values::split_list),
    }
}

fn display_raw(raw: &Raw<'_>) -> String {
    match raw {
        Raw::Text(t) => format!("'{t}'"),
        Raw::Yaml(Node::Scalar { text, .. }) => format!("'{text}'"),
        Raw::Yaml(other) => other.kind().to_owned(),
    }
}

impl<'a, 'd> Resolver<'a, 'd> {
    pub(super) fn new(inputs: &'a Inputs<'a>, root: Option<&'a Node>, diagnostics: &'d mut Vec<Diagnostic>) -> Self {
        Resolver { inputs, root, diagnostics }
    }

    fn lookup(&self, env: &[&str], yaml: &[&str]) -> Option<(Raw<'a>, Origin)> {
        let inputs = self.inputs;
        for name in env {
            if let Some(v) = inputs.env.get(*name) {
                return Some((Raw::Text(v), Origin::Env((*name).to_owned())));
            }
        }
        for name in env {
            if let Some(v) = inputs.dotenv.get(*name) {
                return Some((Raw::Text(v), Origin::DotEnv((*name).to_owned())));
            }
        }
        let root = self.root?;
        yaml.iter().find_map(|path| {
            let node = yaml_at(root, path).filter(|n| !n.is_null())?;
            Some((Raw::Yaml(node), Origin::Yaml { path: (*path).to_owned(), line: node.line() }))
        })
    }

    /// Looks a setting up and parses it; a bad value is reported and the default kept.
    fn get<T>(
        &mut self,
        env: &[&str],
        yaml: &[&str],
        default: T,
        parse: impl FnOnce(&Raw<'a>) -> Result<T, String>,
    ) -> Setting<T> {
        let Some((raw, origin)) = self.lookup(env, yaml) else {
            return Setting::default_value(default);
        };
        match parse(&raw) {
            Ok(value) => Setting { value, origin },
            Err(accepted) => {
                self.error(&origin, format!("{} is not valid", display_raw(&raw)), accepted);
                Setting::default_value(default)
            }
        }
    }

    fn error(&mut self, origin: &Origin, message: String, fix: String) {
        self.diagnostics.push(Diagnostic {
            severity: Severity::Error,
            key: origin.key().unwrap_or_default().to_owned(),
            origin: Some(origin.clone()),
            message,
            fix,
        });
    }

    fn bool(&mut self, env: &[&str], yaml: &[&str], default: bool) -> Setting<bool> {
        self.get(env, yaml, default, |r| scalar_text(r).and_then(values::parse_bool))
    }

    fn text(&mut self, env: &[&str], yaml: &[&str]) -> Setting<Option<String>> {
        self.get(env, yaml, None, |r| scalar_text(r).map(|t| Some(t.trim().to_owned()).filter(|t| !t.is_empty())))
    }

    fn allowlist(&mut self, env: &[&str], yaml: &[&str]) -> Setting<Allowlist> {
        self.get(env, yaml, Allowlist::default(), |r| match r {
            Raw::Yaml(Node::Seq { .. }) => {
                list_items(r).map(|items| Allowlist::from_items(items.iter().map(String::as_str)))
            }
            _ => scalar_text(r).map(Allowlist::parse),
        })
    }

    pub(super) fn resolve_all(&mut self) -> Config {
        let whatsapp = WhatsAppConfig {
            enabled: self.bool(&["WHATSAPP_ENABLED"], &["platforms.whatsapp.enabled"], false),
            mode: self
                .get(&["WHATSAPP_MODE"], &["whatsapp.mode"], Mode::SelfChat, |r| scalar_text(r).and_then(Mode::parse)),
            allowed_users: self.allowlist(
                &["WHATSAPP_ALLOWED_USERS", "WHATSAPP_ALLOW_FROM"],
                &["whatsapp.allow_from", "platforms.whatsapp.extra.allow_from", "platforms.whatsapp.extra.allowFrom"],
            ),
            allow_all_users: self.bool(&["WHATSAPP_ALLOW_ALL_USERS"], &[], false),
            gateway_allowed_users: self.allowlist(&["GATEWAY_ALLOWED_USERS"], &[]),
            gateway_allow_all_users: self.bool(&["GATEWAY_ALLOW_ALL_USERS"], &[], false),
            dm_policy: self.policy("WHATSAPP_DM_POLICY", "dm_policy"),
            group_policy: self.policy("WHATSAPP_GROUP_POLICY", "group_policy"),
            group_allowed: self.group_allowed(),
            require_mention: self.bool(
                &["WHATSAPP_REQUIRE_MENTION"],
                &["whatsapp.require_mention", "platforms.whatsapp.extra.require_mention"],
                false,
            ),
            mention_patterns: self.mention_patterns(),
            free_response_chats: self.get(
                &["WHATSAPP_FREE_RESPONSE_CHATS"],
                &["whatsapp.free_response_chats", "platforms.whatsapp.extra.free_response_chats"],
                Vec::new(),
                list_items,
            ),
            reply_prefix: self.get(
                &["WHATSAPP_REPLY_PREFIX"],
                &["whatsapp.reply_prefix", "platforms.whatsapp.extra.reply_prefix"],
                "⚕ *Hermes Agent*\n────────────\n".to_owned(),
                |r| scalar_text(r).map(values::expand_escapes),
            ),
            unauthorized_dm_behavior: self.get(
                &[],
                &["whatsapp.unauthorized_dm_behavior", "unauthorized_dm_behavior"],
                None,
                |r| scalar_text(r).and_then(UnauthorizedDm::parse).map(Some),
            ),
            send_read_receipts: self.bool(
                &["WHATSAPP_SEND_READ_RECEIPTS"],
                &["whatsapp.send_read_receipts", "platforms.whatsapp.extra.send_read_receipts"],
                false,
            ),
            home_channel: self.text(
                &["WHATSAPP_HOME_CHANNEL"],
                &[
                    "whatsapp.home_channel",
                    "platforms.whatsapp.home_channel.chat_id",
                    "platforms.whatsapp.home_channel",
                ],
            ),
            debug: self.bool(&["WHATSAPP_DEBUG"], &[], false),
            session_path: self.text(&[], &["platforms.whatsapp.extra.session_path"]),
            text_batch_delay_seconds: self.get(
                &[],
                &["whatsapp.text_batch_delay_seconds", "platforms.whatsapp.extra.text_batch_delay_seconds"],
                0.3,
                |r| scalar_text(r).and_then(values::parse_seconds),
            ),
            min_free_mb: self.count(
                "WHATSAPP_MIN_FREE_MB",
                "min_free_mb",
                64,
                "MiB, e.g. 64 (0 turns the reserve off)",
            ),
            max_input_chars: self.count(
                "WHATSAPP_MAX_INPUT_CHARS",
                "max_input_chars",
                16_000,
                "characters, e.g. 16000 (0: no cap)",
            ),
            max_history_chars: self.count(
                "WHATSAPP_MAX_HISTORY_CHARS",
                "max_history_chars",
                60_000,
                "characters, e.g. 60000 (0: no cap)",
            ),
            retention_days: self.count(
                "WHATSAPP_RETENTION_DAYS",
                "retention_days",
                30,
                "days, e.g. 30 (0: keep forever)",
            ),
            server_url: self.text(&["WHATSAPP_SERVER_URL"], &[]),
            alert_webhook: self.text(&["HERMES_ALERT_WEBHOOK"], &["alerts.webhook"]),
            alert_command: self.text(&["HERMES_ALERT_COMMAND"], &["alerts.command"]),
            alert_after_minutes: self.get(&["HERMES_ALERT_AFTER_MINUTES"], &["alerts.after_minutes"], 10, |r| {
                scalar_text(r).and_then(|t| {
                    t.trim()
                        .parse::<u64>()
                        .map_err(|_| "accepted values: a whole number of minutes, e.g. 10 (0: off)".to_owned())
                })
            }),
            handoff_minutes: self.count(
                "WHATSAPP_HANDOFF_MINUTES",
                "handoff_minutes",
                30,
                "minutes, e.g. 30 (0: the owner's messages pause nothing)",
            ),
            send_per_minute: self.count(
                "WHATSAPP_SEND_PER_MINUTE",
                "send_per_minute",
                60,
                "messages a minute, e.g. 60 (0: no limit)",
            ),
            chat_send_per_minute: self.count(
                "WHATSAPP_CHAT_SEND_PER_MINUTE",
                "chat_send_per_minute",
                20,
                "messages a minute, e.g. 20 (0: no limit)",
            ),
            observe_unmentioned: self.bool(
                &["WHATSAPP_OBSERVE_UNMENTIONED_GROUP_MESSAGES"],
                &["whatsapp.observe_unmentioned_group_messages"],
                false,
            ),
            group_context_messages: self.get(&[], &["whatsapp.group_context_messages"], 20, |r| {
                scalar_text(r).and_then(|t| {
                    t.trim()
                        .parse::<u64>()
                        .map_err(|_| "accepted values: a whole number of messages, e.g. 20".to_owned())
                })
            }),
            loop_turns: self.get(&[], &["whatsapp.loop_turns"], 20, |r| {
                scalar_text(r).and_then(|t| {
                    t.trim()
                        .parse::<u64>()
                        .map_err(|_| "accepted values: a whole number of answers, e.g. 20 (0: never)".to_owned())
                })
            }),
            loop_minutes: self.get(&[], &["whatsapp.loop_minutes"], 5, |r| {
                scalar_text(r).and_then(|t| {
                    t.trim().parse::<u64>().map_err(|_| "accepted values: a whole number of minutes, e.g. 5".to_owned())
                })
            }),
            listen: self.get(&["HERMES_GATEWAY_LISTEN"], &["gateway.listen"], None, |r| {
                scalar_text(r).and_then(|t| {
                    t.trim().parse::<std::net::SocketAddr>().map(Some).map_err(|_| {
                        "accepted values: an address and port, e.g. 127.0.0.1:8080 (port 0 picks one)".to_owned()
                    })
                })
            }),
        };
        Config { whatsapp, model: self.model(), media: self.media(), agent: self.agent() }
    }

    /// Hermes' own API server settings (its `.env` names) and how hermes uses the agent.
    fn agent(&mut self) -> AgentConfig {
        AgentConfig {
            choice: self.get(&["WHATSAPP_AGENT"], &["whatsapp.agent"], AgentChoice::Auto, |r| {
                scalar_text(r).and_then(AgentChoice::parse)
            }),
            api_server_enabled: self.bool(&["API_SERVER_ENABLED"], &["platforms.api_server.enabled"], false),
            api_server_key: self.secret(&["API_SERVER_KEY"], &["platforms.api_server.extra.key"]),
            api_server_host: self.text_or(&["API_SERVER_HOST"], &["platforms.api_server.extra.host"], "127.0.0.1"),
            api_server_port: self.get(&["API_SERVER_PORT"], &["platforms.api_server.extra.port"], 8642, |r| {
                scalar_text(r).and_then(|t| {
                    t.trim().parse::<u16>().map_err(|_| "accepted values: a port number, e.g. 8642".to_owned())
                })
            }),
            url: self.get(&["WHATSAPP_AGENT_URL"], &["whatsapp.agent_url"], None, |r| {
                scalar_text(r).and_then(|t| {
                    let t = t.trim();
                    if t.starts_with("http://") || t.starts_with("https://") {
                        Ok(Some(t.to_owned()))
                    } else {
                        Err("accepted values: the API server's URL up to /v1, e.g. http://127.0.0.1:8642/v1".to_owned())
                    }
                })
            }),
            group_sessions_per_user: self.bool(
                &[],
                &[
                    "platforms.whatsapp.extra.group_sessions_per_user",
                    "group_sessions_per_user",
                    "gateway.group_sessions_per_user",
                ],
                true,
            ),
            notice_seconds: self.count(
                "WHATSAPP_AGENT_NOTICE_SECONDS",
                "agent_notice_seconds",
                120,
                "seconds, e.g. 120 (0: never)",
            ),
            reminders_poll_seconds: self.count(
                "WHATSAPP_REMINDERS_POLL_SECONDS",
                "reminders_poll_seconds",
                30,
                "seconds, e.g. 30 (0: never)",
            ),
        }
    }

    fn secret(&mut self, env: &[&str], yaml: &[&str]) -> Setting<Option<Secret>> {
        self.get(env, yaml, None, |r| scalar_text(r).map(|t| Some(t.trim()).filter(|t| !t.is_empty()).map(Secret::new)))
    }

    fn text_or(&mut self, env: &[&str], yaml: &[&str], default: &str) -> Setting<String> {
        let s = self.text(env, yaml);
        Setting { value: s.value.unwrap_or_else(|| default.to_owned()), origin: s.origin }
    }

    /// Hermes' `stt:` block and variables, `agent.image_input_mode`, and the media size cap.
    fn media(&mut self) -> MediaConfig {
        MediaConfig {
            stt_enabled: self.bool(&[], &["stt_enabled", "stt.enabled"], true),
            stt_provider: self
                .get(&[], &["stt.provider"], None, |r| scalar_text(r).and_then(SttProvider::parse).map(Some)),
            stt_openai_model: self.text_or(&["STT_OPENAI_MODEL"], &["stt.openai.model"], "whisper-1"),
            stt_openai_base_url: self.text(&["STT_OPENAI_BASE_URL"], &["stt.openai.base_url"]),
            stt_openai_api_key: self.secret(&["VOICE_TOOLS_OPENAI_KEY", "OPENAI_API_KEY"], &["stt.openai.api_key"]),
            stt_groq_model: self.text_or(&["STT_GROQ_MODEL"], &["stt.groq.model"], "whisper-large-v3-turbo"),
            stt_groq_base_url: self.text_or(&["GROQ_BASE_URL"], &[], "https://api.groq.com/openai/v1"),
            groq_api_key: self.secret(&["GROQ_API_KEY"], &[]),
            stt_local_command: self.text(&["HERMES_LOCAL_STT_COMMAND"], &[]),
            stt_local_model: self.text_or(&[], &["stt.local.model"], "base"),
            stt_language: self.text(&["HERMES_LOCAL_STT_LANGUAGE"], &["stt.local.language", "stt.language"]),
            stt_echo_transcripts: self.bool(&[], &["stt_echo_transcripts", "stt.echo_transcripts"], true),
            image_input_mode: self.get(&[], &["agent.image_input_mode"], ImageInputMode::Auto, |r| {
                scalar_text(r).and_then(ImageInputMode::parse)
            }),
            max_media_mb: self.count("WHATSAPP_MAX_MEDIA_MB", "max_media_mb", 100, "MiB, e.g. 100"),
            media_allow_dirs: self.text(&["HERMES_MEDIA_ALLOW_DIRS"], &[]),
            auto_tts: self.bool(&[], &["voice.auto_tts"], false),
            tts_provider: self.text_or(&[], &["tts.provider"], "edge"),
            tts_openai_model: self.text_or(&[], &["tts.openai.model"], "gpt-4o-mini-tts"),
            tts_openai_voice: self.text_or(&[], &["tts.openai.voice"], "alloy"),
            tts_openai_base_url: self.text(&[], &["tts.openai.base_url"]),
        }
    }

    /// A whole number from the environment or `whatsapp.<key>`; `unit` completes "a whole number of ...".
    fn count(&mut self, env: &str, key: &str, default: u64, unit: &str) -> Setting<u64> {
        let yaml = format!("whatsapp.{key}");
        self.get(&[env], &[yaml.as_str()], default, |r| {
            scalar_text(r)
                .and_then(|t| t.trim().parse::<u64>().map_err(|_| format!("accepted values: a whole number of {unit}")))
        })
    }

    fn policy(&mut self, env: &str, key: &str) -> Setting<Policy> {
        let yaml = [format!("whatsapp.{key}"), format!("platforms.whatsapp.extra.{key}")];
        let yaml: Vec<&str> = yaml.iter().map(String::as_str).collect();
        self.get(&[env], &yaml, Policy::Pairing, |r| scalar_text(r).and_then(Policy::parse))
    }

    fn group_allowed(&mut self) -> Setting<Vec<Jid>> {
        let list = self.get(
            &["WHATSAPP_GROUP_ALLOWED_USERS", "WHATSAPP_GROUP_ALLOW_FROM"],
            &[
                "whatsapp.group_allow_from",
                "platforms.whatsapp.extra.group_allow_from",
                "platforms.whatsapp.extra.groupAllowFrom",
            ],
            Vec::new(),
            list_items,
        );
        let mut groups = Vec::new();
        for (i, item) in list.value.iter().enumerate() {
            // Hermes treats a bare id of more than 15 digits as a group.
            let parsed = if item.contains('@') {
                Jid::parse(item).ok()
            } else if item.len() > 15 && item.bytes().all(|b| b.is_ascii_digit() || b == b'-') {
                Jid::parse(&format!("{item}@g.us")).ok()
            } else {
                None
            };
            match parsed.filter(Jid::is_group) {
                Some(jid) => groups.push(jid.to_non_device()),
                None => self.error(
                    &list.origin,
                    format!("entry #{} '{item}' is not a group JID", i + 1),
                    "write group JIDs like 120363001234567890@g.us; people belong in WHATSAPP_ALLOWED_USERS".to_owned(),
                ),
            }
        }
        Setting { value: groups, origin: list.origin }
    }

    fn mention_patterns(&mut self) -> Setting<Vec<String>> {
        let patterns = self.get(
            &["WHATSAPP_MENTION_PATTERNS"],
            &["whatsapp.mention_patterns", "platforms.whatsapp.extra.mention_patterns"],
            Vec::new(),
            list_items,
        );
        let mut good = Vec::new();
        for p in &patterns.value {
            match regex::RegexBuilder::new(p).case_insensitive(true).build() {
                Ok(_) => good.push(p.clone()),
                Err(e) => {
                    let why = e.to_string().lines().last().unwrap_or_default().trim().to_owned();
                    self.error(
                        &patterns.origin,
                        format!("pattern '{p}' is not a valid regular expression ({why})"),
                        "fix the pattern, or escape special characters with a backslash".to_owned(),
                    );
                }
            }
        }
        Setting { value: good, origin: patterns.origin }
    }

    fn model(&mut self) -> ModelConfig {
        // `model:` is either the model's name or a mapping.
        let name_paths: &[&str] = match self.root.and_then(|r| r.get("model")) {
            Some(Node::Scalar { .. }) => &["model"],
            _ => &["model.default", "model.name"],
        };
        let name = self.text(&[], name_paths);
        let provider = self.text(&[], &["model.provider"]);
        let base_url = self.text(&["OPENAI_BASE_URL"], &["model.base_url"]);
        let key_env: &[&str] = match provider.value.as_deref() {
            Some("openrouter") => &["OPENROUTER_API_KEY", "OPENAI_API_KEY"],
            _ => &["OPENAI_API_KEY", "OPENROUTER_API_KEY"],
        };
        let api_key = self.secret(key_env, &["model.api_key"]);
        ModelConfig { provider, name, base_url, api_key }
    }
}

/// A YAML block, the keys hermes reads in it, and the Hermes keys it recognises but ignores.
type YamlBlock = (&'static str, &'static [&'static str], &'static [(&'static str, &'static str)]);

pub(super) fn warn_unknown_keys(inputs: &Inputs<'_>, root: Option<&Node>, diagnostics: &mut Vec<Diagnostic>) {
    let mut warn = |key: &str, origin: Origin, message: String, fix: String| {
        diagnostics.push(Diagnostic {
            severity: Severity::Warning,
            key: key.to_owned(),
            origin: Some(origin),
            message,
            fix,
        });
    };
    let env_sources = [(&inputs.env, true), (&inputs.dotenv, false)];
    for (vars, is_env) in env_sources {
        for key in vars.keys().filter(|k| k.starts_with("WHATSAPP_")) {
            let origin = if is_env { Origin::Env(key.clone()) } else { Origin::DotEnv(key.clone()) };
            if KNOWN_ENV_KEYS.contains(&key.as_str()) {
                continue;
            }
            if let Some((_, why)) = HERMES_ONLY_ENV_KEYS.iter().find(|(k, _)| k == key) {
                warn(
                    key,
                    origin,
                    format!("has no effect in hermes: {why}"),
                    "remove it to silence this warning".to_owned(),
                );
                continue;
            }
            let fix = match nearest_name(key, KNOWN_ENV_KEYS.iter().copied()) {
                Some(near) => format!("did you mean {near}?"),
                None => "remove it, or see `hermes doctor` for the settings hermes reads".to_owned(),
            };
            warn(key, origin, "is not a setting hermes knows".to_owned(), fix);
        }
    }
    let Some(root) = root else { return };
    let blocks: [YamlBlock; 3] = [
        ("whatsapp", WHATSAPP_YAML_KEYS, &[]),
        ("platforms.whatsapp", PLATFORM_YAML_KEYS, &[]),
        ("platforms.whatsapp.extra", EXTRA_YAML_KEYS, HERMES_ONLY_EXTRA_KEYS),
    ];
    for (block, known, hermes_only) in blocks {
        let Some(node) = yaml_at(root, block) else { continue };
        for (key, value) in node.entries() {
            let path = format!("{block}.{key}");
            let origin = Origin::Yaml { path: path.clone(), line: value.line() };
            if known.contains(&key.as_str()) {
                continue;
            }
            if let Some((_, why)) = hermes_only.iter().find(|(k, _)| k == key) {
                warn(
                    &path,
                    origin,
                    format!("has no effect in hermes: {why}"),
                    "remove it to silence this warning".to_owned(),
                );
                continue;
            }
            let fix = match nearest_name(key, known.iter().copied()) {
                Some(near) => format!("did you mean {block}.{near}?"),
                None => format!("remove it; {block} knows: {}", known.join(", ")),
            };
            warn(&path, origin, "is not a setting hermes knows".to_owned(), fix);
        }
    }
}
