//! The value types of settings and how each is read from text.
//!
//! Parsers return the accepted spellings in their error, so a diagnostic can always say what
//! would have worked.

use std::fmt;

/// `WHATSAPP_MODE`: whose number the gateway runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// A separate number for the agent; other people write to it.
    Bot,
    /// The user's own number; only their "Message yourself" chat talks to the agent.
    SelfChat,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Bot => "bot",
            Mode::SelfChat => "self-chat",
        }
    }

    /// Reads `WHATSAPP_MODE` (any case, surrounding spaces ignored); the error lists the
    /// accepted values.
    pub fn parse(s: &str) -> Result<Mode, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "bot" => Ok(Mode::Bot),
            "self-chat" | "self_chat" | "selfchat" | "self" => Ok(Mode::SelfChat),
            _ => Err("accepted values: bot, self-chat".to_owned()),
        }
    }
}

/// `stt.provider`: who transcribes voice notes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SttProvider {
    /// Hermes' local faster-whisper; hermes runs `HERMES_LOCAL_STT_COMMAND` in its place.
    Local,
    /// `HERMES_LOCAL_STT_COMMAND`.
    LocalCommand,
    /// Groq's OpenAI-compatible Whisper (`GROQ_API_KEY`).
    Groq,
    /// OpenAI, or any server with `POST /audio/transcriptions` at `stt.openai.base_url`.
    OpenAi,
}

impl SttProvider {
    pub fn as_str(self) -> &'static str {
        match self {
            SttProvider::Local => "local",
            SttProvider::LocalCommand => "local_command",
            SttProvider::Groq => "groq",
            SttProvider::OpenAi => "openai",
        }
    }

    pub fn parse(s: &str) -> Result<SttProvider, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "local" => Ok(SttProvider::Local),
            "local_command" | "local-command" => Ok(SttProvider::LocalCommand),
            "groq" => Ok(SttProvider::Groq),
            // Hermes routes `nous` through an OpenAI-compatible endpoint too.
            "openai" | "nous" => Ok(SttProvider::OpenAi),
            "mistral" | "xai" | "elevenlabs" | "deepinfra" => Err(format!(
                "'{}' is a Hermes provider hermes does not speak; accepted values: local, local_command, groq, \
                 openai (any OpenAI-compatible server: set stt.openai.base_url to it)",
                s.trim()
            )),
            _ => Err("accepted values: local, local_command, groq, openai".to_owned()),
        }
    }
}

/// `agent.image_input_mode`: whether images go to the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageInputMode {
    /// Images go to the model; one that refuses them is asked again without.
    Auto,
    /// Images always go to the model.
    Native,
    /// Images never go to the model: it reads that one was sent.
    Text,
}

impl ImageInputMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ImageInputMode::Auto => "auto",
            ImageInputMode::Native => "native",
            ImageInputMode::Text => "text",
        }
    }

    pub fn parse(s: &str) -> Result<ImageInputMode, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(ImageInputMode::Auto),
            "native" => Ok(ImageInputMode::Native),
            "text" => Ok(ImageInputMode::Text),
            _ => Err("accepted values: auto, native, text".to_owned()),
        }
    }
}

/// `WHATSAPP_DM_POLICY` / `WHATSAPP_GROUP_POLICY`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// Everyone (DMs need `WHATSAPP_ALLOW_ALL_USERS` as well, as in Hermes).
    Open,
    /// Only what the allowlist names.
    Allowlist,
    /// The allowlist plus approved pairing codes; strangers may be offered a code in DMs.
    Pairing,
    /// Nothing gets through.
    Disabled,
}

impl Policy {
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Open => "open",
            Policy::Allowlist => "allowlist",
            Policy::Pairing => "pairing",
            Policy::Disabled => "disabled",
        }
    }

    pub(crate) fn parse(s: &str) -> Result<Policy, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "open" => Ok(Policy::Open),
            "allowlist" => Ok(Policy::Allowlist),
            "pairing" => Ok(Policy::Pairing),
            "disabled" => Ok(Policy::Disabled),
            _ => Err("accepted values: open, allowlist, pairing, disabled".to_owned()),
        }
    }
}

/// `unauthorized_dm_behavior`: what a stranger's DM gets under the pairing policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnauthorizedDm {
    /// Reply once with an approval code.
    Pair,
    /// Say nothing.
    Ignore,
}

impl UnauthorizedDm {
    pub fn as_str(self) -> &'static str {
        match self {
            UnauthorizedDm::Pair => "pair",
            UnauthorizedDm::Ignore => "ignore",
        }
    }

    pub(crate) fn parse(s: &str) -> Result<UnauthorizedDm, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "pair" => Ok(UnauthorizedDm::Pair),
            "ignore" => Ok(UnauthorizedDm::Ignore),
            _ => Err("accepted values: pair, ignore".to_owned()),
        }
    }
}

/// A secret (API key). Its `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "set ({} characters, hidden)", self.0.chars().count())
    }
}

pub(crate) fn parse_bool(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" | "" => Ok(false),
        _ => Err("accepted values: true, false (also 1/0, yes/no, on/off)".to_owned()),
    }
}

pub(crate) fn parse_seconds(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && (0.0..=60.0).contains(&v) => Ok(v),
        _ => Err("accepted values: a number of seconds from 0 to 60, e.g. 0.3".to_owned()),
    }
}

/// Hermes writes newlines in `WHATSAPP_REPLY_PREFIX` as `\n`.
pub(crate) fn expand_escapes(s: &str) -> String {
    s.replace("\\n", "\n").replace("\\t", "\t")
}

/// A list given as one string: a JSON array, else one item per line, else comma-separated.
pub(crate) fn split_list(s: &str) -> Vec<String> {
    let t = s.trim();
    if t.starts_with('[')
        && let Some(items) = parse_json_string_array(t)
    {
        return items;
    }
    let sep: &[char] = if t.contains('\n') { &['\n'] } else { &[','] };
    t.split(sep).map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

/// Just enough JSON for `["a", "b\\d"]`, the form Hermes documents for mention patterns.
fn parse_json_string_array(s: &str) -> Option<Vec<String>> {
    let inner = s.strip_prefix('[')?.strip_suffix(']')?;
    let mut out = Vec::new();
    let mut chars = inner.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace() || *c == ',').is_some() {}
        match chars.next() {
            None => return Some(out),
            Some('"') => {
                let mut item = String::new();
                loop {
                    match chars.next()? {
                        '"' => break,
                        '\\' => match chars.next()? {
                            'n' => item.push('\n'),
                            't' => item.push('\t'),
                            c => item.push(c),
                        },
                        c => item.push(c),
                    }
                }
                out.push(item);
            }
            Some(_) => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_in_every_documented_form() {
        assert_eq!(split_list(r#"["^hermes\\b", "hey bot"]"#), vec![r"^hermes\b", "hey bot"]);
        assert_eq!(split_list("a, b,,c"), vec!["a", "b", "c"]);
        assert_eq!(split_list("a,b\nc"), vec!["a,b", "c"]);
        assert_eq!(split_list("[not json"), vec!["[not json"]);
    }

    #[test]
    fn booleans() {
        for t in ["true", "TRUE", "1", "yes", "On"] {
            assert_eq!(parse_bool(t), Ok(true));
        }
        for f in ["false", "0", "no", "off", ""] {
            assert_eq!(parse_bool(f), Ok(false));
        }
        assert!(parse_bool("ja").is_err());
    }

    #[test]
    fn secrets_do_not_print() {
        let s = Secret::new("sk-very-secret");
        assert_eq!(format!("{s:?}"), "Secret(..)");
        assert!(!s.to_string().contains("secret"));
    }
}

/// `WHATSAPP_AGENT` / `whatsapp.agent`: what answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AgentChoice {
    /// Hermes Agent's API server when `.env` enables it (`API_SERVER_ENABLED` or
    /// `API_SERVER_KEY`), the `model:` block otherwise.
    Auto,
    /// Hermes Agent's API server.
    Hermes,
    /// The `model:` block's chat-completions model, with hermes keeping the history.
    Model,
}

impl AgentChoice {
    pub fn as_str(self) -> &'static str {
        match self {
            AgentChoice::Auto => "auto",
            AgentChoice::Hermes => "hermes",
            AgentChoice::Model => "model",
        }
    }

    pub(crate) fn parse(s: &str) -> Result<AgentChoice, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(AgentChoice::Auto),
            "hermes" | "hermes-agent" | "api_server" | "api-server" => Ok(AgentChoice::Hermes),
            "model" => Ok(AgentChoice::Model),
            _ => Err("accepted values: auto, hermes, model".to_owned()),
        }
    }
}
