//! The typed configuration, resolved from Hermes' own files so an existing `~/.hermes` works.
//!
//! Precedence, highest first: the process environment, `HERMES_HOME/.env`, `config.yaml`,
//! defaults. Every value remembers where it came from ([`Origin`]), because "I set it but it
//! does nothing" is usually a value set in one place and overridden in another.
//!
//! Resolution never stops at the first problem: every bad value becomes a [`Diagnostic`]
//! naming the key, the value, its origin and the accepted values, and the setting falls back
//! to its default so the remaining checks still run. Commands that act (the gateway) refuse to
//! start while any diagnostic is an error; `doctor` and `explain` show them all.

mod changes;
pub mod dotenv;
mod keys;
mod values;
pub mod yaml;

pub use changes::{Change, applies_live, changes};

use std::collections::BTreeMap;
use std::fmt;

use crate::allowlist::Allowlist;
use crate::identity::Jid;

pub use keys::{KNOWN_ENV_KEYS, nearest_name};
pub(crate) use values::parse_bool;
pub use values::{AgentChoice, ImageInputMode, Mode, Policy, Secret, SttProvider, UnauthorizedDm};

/// Where a resolved value came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The process environment.
    Env(String),
    /// `HERMES_HOME/.env`.
    DotEnv(String),
    /// `HERMES_HOME/config.yaml`, by dotted path and line.
    Yaml { path: String, line: usize },
    /// Nobody set it.
    Default,
}

impl Origin {
    /// The name of the key as the user wrote it (`WHATSAPP_MODE`, `whatsapp.mode`).
    pub fn key(&self) -> Option<&str> {
        match self {
            Origin::Env(k) | Origin::DotEnv(k) => Some(k),
            Origin::Yaml { path, .. } => Some(path),
            Origin::Default => None,
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Env(k) => write!(f, "environment variable {k}"),
            Origin::DotEnv(k) => write!(f, ".env {k}"),
            Origin::Yaml { path, line } => write!(f, "config.yaml {path} (line {line})"),
            Origin::Default => f.write_str("default"),
        }
    }
}

/// A value and where it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct Setting<T> {
    pub value: T,
    pub origin: Origin,
}

impl<T> Setting<T> {
    fn default_value(value: T) -> Self {
        Setting { value, origin: Origin::Default }
    }

    pub fn is_explicit(&self) -> bool {
        self.origin != Origin::Default
    }
}

/// The `whatsapp` part of the configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct WhatsAppConfig {
    pub enabled: Setting<bool>,
    pub mode: Setting<Mode>,
    pub allowed_users: Setting<Allowlist>,
    pub allow_all_users: Setting<bool>,
    pub gateway_allowed_users: Setting<Allowlist>,
    pub gateway_allow_all_users: Setting<bool>,
    pub dm_policy: Setting<Policy>,
    pub group_policy: Setting<Policy>,
    /// Group JIDs admitted under `group_policy: allowlist`.
    pub group_allowed: Setting<Vec<Jid>>,
    pub require_mention: Setting<bool>,
    /// Case-insensitive regexes, already checked to compile.
    pub mention_patterns: Setting<Vec<String>>,
    pub free_response_chats: Setting<Vec<String>>,
    pub reply_prefix: Setting<String>,
    /// `None` when nobody chose: the gateway then decides by whether an allowlist is set.
    pub unauthorized_dm_behavior: Setting<Option<UnauthorizedDm>>,
    pub send_read_receipts: Setting<bool>,
    pub home_channel: Setting<Option<String>>,
    pub debug: Setting<bool>,
    /// `platforms.whatsapp.extra.session_path`, as written.
    pub session_path: Setting<Option<String>>,
    pub text_batch_delay_seconds: Setting<f64>,
    /// Below this much free space (MiB) on the disk of the session or `state/`, the gateway
    /// stops receiving until there is room: nothing is acknowledged that cannot be kept.
    pub min_free_mb: Setting<u64>,
    /// The most characters of one message the model reads (0: no cap); longer ones are cut,
    /// with a note saying so.
    pub max_input_chars: Setting<u64>,
    /// The most characters of history sent with a message (0: no cap); older turns go first.
    pub max_history_chars: Setting<u64>,
    /// Days the gateway keeps handled messages, drops, sent replies, history and pairing codes
    /// (0: forever). Waiting messages, unsent replies and approvals are always kept.
    pub retention_days: Setting<u64>,
    /// Where to reach WhatsApp's servers; only the simulator build honours it.
    pub server_url: Setting<Option<String>>,
    /// `HERMES_GATEWAY_LISTEN` / `gateway.listen`: the HTTP listener's address (off when unset).
    pub listen: Setting<Option<std::net::SocketAddr>>,
    /// `HERMES_ALERT_WEBHOOK` / `alerts.webhook`: POSTed a JSON alert when the link needs a person.
    pub alert_webhook: Setting<Option<String>>,
    /// `HERMES_ALERT_COMMAND` / `alerts.command`: run with the JSON alert on stdin (no shell).
    pub alert_command: Setting<Option<String>>,
    /// `HERMES_ALERT_AFTER_MINUTES` / `alerts.after_minutes`: alert when the gateway has not
    /// been able to answer for this long (0: never).
    pub alert_after_minutes: Setting<u64>,
    /// `WHATSAPP_HANDOFF_MINUTES` / `whatsapp.handoff_minutes`: after the owner writes in a chat
    /// from the phone, the agent stays out of it this long (0: the owner's messages pause nothing).
    pub handoff_minutes: Setting<u64>,
    /// `WHATSAPP_SEND_PER_MINUTE` / `whatsapp.send_per_minute`: the most messages the account
    /// sends a minute, sustained (half of it may go at once; 0: no limit).
    pub send_per_minute: Setting<u64>,
    /// `WHATSAPP_CHAT_SEND_PER_MINUTE` / `whatsapp.chat_send_per_minute`: the same, to one chat.
    pub chat_send_per_minute: Setting<u64>,
    /// `WHATSAPP_OBSERVE_UNMENTIONED_GROUP_MESSAGES` / `whatsapp.observe_unmentioned_group_messages`:
    /// in admitted groups, what does not address the agent is kept as context for its next turn.
    pub observe_unmentioned: Setting<bool>,
    /// `whatsapp.group_context_messages`: the most such messages a turn carries.
    pub group_context_messages: Setting<u64>,
    /// `whatsapp.loop_turns` in `whatsapp.loop_minutes`: the agent answering that often in one
    /// chat trips the reply-loop breaker (0 turns: never).
    pub loop_turns: Setting<u64>,
    pub loop_minutes: Setting<u64>,
}

impl WhatsAppConfig {
    /// The reply-loop breaker's limit (`crate::handoff::LoopLimit`).
    pub fn loop_limit(&self) -> crate::handoff::LoopLimit {
        let n = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
        crate::handoff::LoopLimit { turns: n(self.loop_turns.value), minutes: n(self.loop_minutes.value) }
    }

    /// The outbound governor's limits (`crate::governor`): each burst is half the minute's rate.
    pub fn send_limits(&self) -> crate::governor::Limits {
        let rate = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
        let (account, chat) = (rate(self.send_per_minute.value), rate(self.chat_send_per_minute.value));
        crate::governor::Limits {
            chat_per_minute: chat,
            chat_burst: (chat / 2).max(1),
            account_per_minute: account,
            account_burst: (account / 2).max(1),
        }
    }
}

/// The `model:` block: which LLM answers.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelConfig {
    pub provider: Setting<Option<String>>,
    pub name: Setting<Option<String>>,
    pub base_url: Setting<Option<String>>,
    pub api_key: Setting<Option<Secret>>,
}

/// Media: speech-to-text (Hermes' `stt:` block and its variables), images to the model, and
/// the size cap on downloads.
#[derive(Clone, Debug, PartialEq)]
pub struct MediaConfig {
    /// `stt.enabled` (or top-level `stt_enabled`): off, voice notes are not transcribed.
    pub stt_enabled: Setting<bool>,
    /// `stt.provider`; unset, the first available of a local command, Groq, OpenAI.
    pub stt_provider: Setting<Option<SttProvider>>,
    pub stt_openai_model: Setting<String>,
    pub stt_openai_base_url: Setting<Option<String>>,
    pub stt_openai_api_key: Setting<Option<Secret>>,
    pub stt_groq_model: Setting<String>,
    pub stt_groq_base_url: Setting<String>,
    pub groq_api_key: Setting<Option<Secret>>,
    /// `HERMES_LOCAL_STT_COMMAND`: a command line with `{input_path}`, `{output_dir}`,
    /// `{language}` and `{model}` that writes a `.txt` transcript into `{output_dir}`.
    pub stt_local_command: Setting<Option<String>>,
    pub stt_local_model: Setting<String>,
    pub stt_language: Setting<Option<String>>,
    /// Each transcript is also sent back to the chat (`🎙️ "..."`), as Hermes does.
    pub stt_echo_transcripts: Setting<bool>,
    /// `agent.image_input_mode`: `auto`/`native` send images to the model, `text` does not.
    pub image_input_mode: Setting<ImageInputMode>,
    /// Media larger than this (MiB) is not downloaded; the agent is told what it was.
    pub max_media_mb: Setting<u64>,
    /// `HERMES_MEDIA_ALLOW_DIRS`: directories (besides `HERMES_HOME/cache`) the agent's
    /// `MEDIA:` files may be sent from, separated by `:` or `,`.
    pub media_allow_dirs: Setting<Option<String>>,
    /// `voice.auto_tts`: a voice note is answered with a voice note too (and the text).
    pub auto_tts: Setting<bool>,
    /// `tts.provider` (Hermes' default is `edge`, which hermes cannot speak: `openai` works
    /// with OpenAI and any server with `POST /audio/speech`).
    pub tts_provider: Setting<String>,
    pub tts_openai_model: Setting<String>,
    pub tts_openai_voice: Setting<String>,
    pub tts_openai_base_url: Setting<Option<String>>,
}

/// What answers: Hermes Agent's API server (read from Hermes' own `.env` names) or the
/// `model:` block, and how hermes talks to the agent.
#[derive(Clone, Debug, PartialEq)]
pub struct AgentConfig {
    /// `WHATSAPP_AGENT` / `whatsapp.agent`.
    pub choice: Setting<AgentChoice>,
    /// Hermes' `API_SERVER_ENABLED`.
    pub api_server_enabled: Setting<bool>,
    /// Hermes' `API_SERVER_KEY`: the bearer token of its API server (setting it alone enables
    /// the server in Hermes).
    pub api_server_key: Setting<Option<Secret>>,
    /// Hermes' `API_SERVER_HOST` (a wildcard address is reached on loopback).
    pub api_server_host: Setting<String>,
    /// Hermes' `API_SERVER_PORT`.
    pub api_server_port: Setting<u16>,
    /// `WHATSAPP_AGENT_URL` / `whatsapp.agent_url`: the API server's base URL (up to `/v1`),
    /// for one that host and port do not describe (another machine, a proxy).
    pub url: Setting<Option<String>>,
    /// `group_sessions_per_user` (Hermes' key): each member of a group has their own session.
    pub group_sessions_per_user: Setting<bool>,
    /// `whatsapp.agent_notice_seconds`: a turn still running after this long gets one short
    /// "still working" note (0: never).
    pub notice_seconds: Setting<u64>,
    /// `whatsapp.reminders_poll_seconds`: how often the agent's scheduled jobs are looked at
    /// for output to deliver (0: never).
    pub reminders_poll_seconds: Setting<u64>,
}

/// Which agent answers, as the settings decide it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Brain {
    /// Hermes Agent's API server at `base_url` (up to `/v1`).
    Hermes { base_url: String, key: Secret },
    /// The `model:` block (which may itself be unset).
    Model,
}

impl AgentConfig {
    /// The agent these settings name, and why when Hermes' API server was meant but cannot be
    /// used (the reason says what to set).
    pub fn brain(&self) -> (Brain, Option<String>) {
        let wanted = match self.choice.value {
            AgentChoice::Model => return (Brain::Model, None),
            AgentChoice::Hermes => true,
            AgentChoice::Auto => {
                self.api_server_enabled.value || self.api_server_key.value.is_some() || self.url.value.is_some()
            }
        };
        if !wanted {
            return (Brain::Model, None);
        }
        let Some(key) = self.api_server_key.value.clone() else {
            let why = "Hermes' API server needs API_SERVER_KEY (in HERMES_HOME/.env, the same key Hermes reads): \
                       without one it refuses to start and hermes cannot call it"
                .to_owned();
            return (Brain::Model, Some(why));
        };
        (Brain::Hermes { base_url: self.base_url(), key }, None)
    }

    /// The API server's base URL: `url` when set, else `http://host:port/v1` (a wildcard
    /// listening address is reached on loopback).
    pub fn base_url(&self) -> String {
        if let Some(url) = &self.url.value {
            return url.trim_end_matches('/').to_owned();
        }
        let host = match self.api_server_host.value.trim() {
            "" | "0.0.0.0" | "localhost" => "127.0.0.1".to_owned(),
            "::" | "[::]" => "[::1]".to_owned(),
            h if h.contains(':') && !h.starts_with('[') => format!("[{h}]"),
            h => h.to_owned(),
        };
        format!("http://{host}:{}/v1", self.api_server_port.value)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub whatsapp: WhatsAppConfig,
    pub model: ModelConfig,
    pub media: MediaConfig,
    pub agent: AgentConfig,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Warning,
    Error,
}

/// One thing wrong with the configuration, said so that the user can fix it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    /// The key as the user wrote it.
    pub key: String,
    pub origin: Option<Origin>,
    /// What is wrong, naming the value.
    pub message: String,
    /// What to do about it.
    pub fix: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.origin {
            Some(o) => write!(f, "{} ({o}): {}; {}", self.key, self.message, self.fix),
            None => write!(f, "{}: {}; {}", self.key, self.message, self.fix),
        }
    }
}

/// What resolution reads: the three sources, already read by the caller.
#[derive(Clone, Debug, Default)]
pub struct Inputs<'a> {
    pub env: BTreeMap<String, String>,
    pub dotenv: BTreeMap<String, String>,
    pub yaml: Option<&'a str>,
}

/// The configuration and everything that was wrong with it.
#[derive(Clone, Debug)]
pub struct Resolved {
    pub config: Config,
    pub diagnostics: Vec<Diagnostic>,
}

impl Resolved {
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics.iter().filter(|d| d.severity == Severity::Error)
    }

    pub fn has_errors(&self) -> bool {
        self.errors().next().is_some()
    }
}

/// Resolves the configuration from its sources. Never fails: problems are diagnostics.
pub fn resolve(inputs: &Inputs<'_>) -> Resolved {
    let mut diagnostics = Vec::new();
    let root = match inputs.yaml.map(yaml::parse) {
        Some(Ok(root)) => Some(root),
        Some(Err(e)) => {
            diagnostics.push(Diagnostic {
                severity: Severity::Error,
                key: "config.yaml".to_owned(),
                origin: None,
                message: format!("cannot be parsed: {e}"),
                fix: "fix the YAML syntax at that line (indent with spaces, quote values that contain ':' or '#')"
                    .to_owned(),
            });
            None
        }
        None => None,
    };
    let mut r = keys::Resolver::new(inputs, root.as_ref(), &mut diagnostics);
    let config = r.resolve_all();
    keys::warn_unknown_keys(inputs, root.as_ref(), &mut diagnostics);
    Resolved { config, diagnostics }
}

#[cfg(test)]
mod tests;

/// One line of "where each setting came from".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SettingLine {
    pub key: &'static str,
    pub value: String,
    pub origin: Origin,
}

impl Config {
    /// Every setting, its value as the user would write it, and its origin.
    pub fn summary(&self) -> Vec<SettingLine> {
        fn line<T>(key: &'static str, s: &Setting<T>, show: impl FnOnce(&T) -> String) -> SettingLine {
            SettingLine { key, value: show(&s.value), origin: s.origin.clone() }
        }
        let list = |l: &Allowlist| {
            let shown: Vec<String> =
                l.entries().iter().map(|e| e.normalized().unwrap_or_else(|| format!("{}(invalid)", e.raw))).collect();
            shown.join(",")
        };
        let opt = |v: &Option<String>| v.clone().unwrap_or_default();
        // A URL may carry a key (in its query or user part): shown without it.
        let url = |v: &Option<String>| v.as_deref().map(crate::redact::redact_url).unwrap_or_default();
        let w = &self.whatsapp;
        let m = &self.model;
        let media = &self.media;
        let a = &self.agent;
        let secret = |v: &Option<Secret>| v.as_ref().map_or_else(String::new, ToString::to_string);
        vec![
            line("WHATSAPP_ENABLED", &w.enabled, ToString::to_string),
            line("WHATSAPP_MODE", &w.mode, |v| v.as_str().to_owned()),
            line("WHATSAPP_ALLOWED_USERS", &w.allowed_users, list),
            line("WHATSAPP_ALLOW_ALL_USERS", &w.allow_all_users, ToString::to_string),
            line("GATEWAY_ALLOWED_USERS", &w.gateway_allowed_users, list),
            line("GATEWAY_ALLOW_ALL_USERS", &w.gateway_allow_all_users, ToString::to_string),
            line("WHATSAPP_DM_POLICY", &w.dm_policy, |v| v.as_str().to_owned()),
            line("WHATSAPP_GROUP_POLICY", &w.group_policy, |v| v.as_str().to_owned()),
            line("WHATSAPP_GROUP_ALLOWED_USERS", &w.group_allowed, |v| {
                v.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")
            }),
            line("WHATSAPP_REQUIRE_MENTION", &w.require_mention, ToString::to_string),
            line("WHATSAPP_MENTION_PATTERNS", &w.mention_patterns, |v| v.join(", ")),
            line("WHATSAPP_FREE_RESPONSE_CHATS", &w.free_response_chats, |v| v.join(",")),
            line("WHATSAPP_REPLY_PREFIX", &w.reply_prefix, |v| v.replace('\n', "\\n")),
            line("unauthorized_dm_behavior", &w.unauthorized_dm_behavior, |v| {
                v.map_or("(decided by the allowlist)", |b| b.as_str()).to_owned()
            }),
            line("WHATSAPP_SEND_READ_RECEIPTS", &w.send_read_receipts, ToString::to_string),
            line("WHATSAPP_HOME_CHANNEL", &w.home_channel, opt),
            line("WHATSAPP_DEBUG", &w.debug, ToString::to_string),
            line("session_path", &w.session_path, opt),
            line("text_batch_delay_seconds", &w.text_batch_delay_seconds, ToString::to_string),
            line("WHATSAPP_MIN_FREE_MB", &w.min_free_mb, ToString::to_string),
            line("WHATSAPP_MAX_INPUT_CHARS", &w.max_input_chars, ToString::to_string),
            line("WHATSAPP_MAX_HISTORY_CHARS", &w.max_history_chars, ToString::to_string),
            line("WHATSAPP_RETENTION_DAYS", &w.retention_days, ToString::to_string),
            line("HERMES_GATEWAY_LISTEN", &w.listen, |v| v.map(|a| a.to_string()).unwrap_or_default()),
            line("HERMES_ALERT_WEBHOOK", &w.alert_webhook, |v| {
                v.as_deref().map(crate::redact::redact_url).unwrap_or_default()
            }),
            // Its arguments may carry a token: the program alone.
            line("HERMES_ALERT_COMMAND", &w.alert_command, |v| {
                v.as_deref()
                    .map(|c| match c.split_once(char::is_whitespace) {
                        Some((program, _)) => format!("{program} ..."),
                        None => c.to_owned(),
                    })
                    .unwrap_or_default()
            }),
            line("HERMES_ALERT_AFTER_MINUTES", &w.alert_after_minutes, ToString::to_string),
            line("WHATSAPP_HANDOFF_MINUTES", &w.handoff_minutes, ToString::to_string),
            line("WHATSAPP_SEND_PER_MINUTE", &w.send_per_minute, ToString::to_string),
            line("WHATSAPP_CHAT_SEND_PER_MINUTE", &w.chat_send_per_minute, ToString::to_string),
            line("WHATSAPP_OBSERVE_UNMENTIONED_GROUP_MESSAGES", &w.observe_unmentioned, ToString::to_string),
            line("whatsapp.group_context_messages", &w.group_context_messages, ToString::to_string),
            line("whatsapp.loop_turns", &w.loop_turns, ToString::to_string),
            line("whatsapp.loop_minutes", &w.loop_minutes, ToString::to_string),
            line("model.provider", &m.provider, opt),
            line("model.default", &m.name, opt),
            line("model.base_url", &m.base_url, url),
            line("model.api_key", &m.api_key, secret),
            line("stt.enabled", &media.stt_enabled, ToString::to_string),
            line("stt.provider", &media.stt_provider, |v| {
                v.map_or("(first available)", SttProvider::as_str).to_owned()
            }),
            line("stt.openai.model", &media.stt_openai_model, Clone::clone),
            line("stt.openai.base_url", &media.stt_openai_base_url, url),
            line("stt.openai.api_key", &media.stt_openai_api_key, secret),
            line("stt.groq.model", &media.stt_groq_model, Clone::clone),
            line("GROQ_API_KEY", &media.groq_api_key, secret),
            line("HERMES_LOCAL_STT_COMMAND", &media.stt_local_command, opt),
            line("stt.language", &media.stt_language, opt),
            line("stt.echo_transcripts", &media.stt_echo_transcripts, ToString::to_string),
            line("agent.image_input_mode", &media.image_input_mode, |v| v.as_str().to_owned()),
            line("WHATSAPP_MAX_MEDIA_MB", &media.max_media_mb, ToString::to_string),
            line("HERMES_MEDIA_ALLOW_DIRS", &media.media_allow_dirs, opt),
            line("voice.auto_tts", &media.auto_tts, ToString::to_string),
            line("tts.provider", &media.tts_provider, Clone::clone),
            line("tts.openai.model", &media.tts_openai_model, Clone::clone),
            line("tts.openai.voice", &media.tts_openai_voice, Clone::clone),
            line("tts.openai.base_url", &media.tts_openai_base_url, url),
            line("WHATSAPP_AGENT", &a.choice, |v| v.as_str().to_owned()),
            line("API_SERVER_ENABLED", &a.api_server_enabled, ToString::to_string),
            line("API_SERVER_KEY", &a.api_server_key, secret),
            line("API_SERVER_HOST", &a.api_server_host, Clone::clone),
            line("API_SERVER_PORT", &a.api_server_port, ToString::to_string),
            line("WHATSAPP_AGENT_URL", &a.url, url),
            line("group_sessions_per_user", &a.group_sessions_per_user, ToString::to_string),
            line("WHATSAPP_AGENT_NOTICE_SECONDS", &a.notice_seconds, ToString::to_string),
            line("WHATSAPP_REMINDERS_POLL_SECONDS", &a.reminders_poll_seconds, ToString::to_string),
        ]
    }
}
