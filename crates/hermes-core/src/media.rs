//! Media in messages, without I/O: what a message's media is, where its copy goes in the
//! cache, and the words the agent reads about it, in Hermes' own phrasing (its gateway and
//! WhatsApp bridge), so an agent moved from Hermes reads what it is used to.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::config::{MediaConfig, Secret, SttProvider};

pub mod fetch;
pub mod ogg;
pub mod outbound;

/// What kind of media a message carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MediaKind {
    Image,
    Video,
    /// A video that plays as a GIF.
    Gif,
    /// An audio file.
    Audio,
    /// A voice note (push-to-talk).
    Voice,
    Document,
    Sticker,
}

impl MediaKind {
    /// The word Hermes' bridge uses in `[… received]` and `[… could not be downloaded]`.
    pub fn word(self) -> &'static str {
        match self {
            MediaKind::Image => "image",
            MediaKind::Video => "video",
            MediaKind::Gif => "gif",
            MediaKind::Audio => "audio",
            MediaKind::Voice => "ptt",
            MediaKind::Document => "document",
            MediaKind::Sticker => "sticker",
        }
    }

    /// Whether the agent reads a transcript of it (Hermes sends every WhatsApp audio to STT).
    pub fn is_speech(self) -> bool {
        matches!(self, MediaKind::Voice | MediaKind::Audio)
    }

    /// Whether the model is shown it as a picture.
    pub fn is_picture(self) -> bool {
        matches!(self, MediaKind::Image | MediaKind::Sticker)
    }
}

/// Everything needed to fetch a message's media again, kept in the journal with the message
/// (never the bytes: the message is acknowledged before they are downloaded).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaRef {
    pub kind: MediaKind,
    #[serde(default)]
    pub mime: String,
    pub direct_path: String,
    #[serde(with = "hex_bytes")]
    pub media_key: Vec<u8>,
    #[serde(with = "hex_bytes")]
    pub file_sha256: Vec<u8>,
    #[serde(with = "hex_bytes")]
    pub file_enc_sha256: Vec<u8>,
    /// Size of the plaintext, as the sender declared it.
    pub file_length: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds: Option<u32>,
}

pub(crate) mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&bytes.iter().map(|b| format!("{b:02x}")).collect::<String>())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        if !text.is_ascii() || text.len() % 2 != 0 {
            return Err(serde::de::Error::custom("not an even number of hex digits"));
        }
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).map_err(serde::de::Error::custom))
            .collect()
    }
}

/// The cache directories under `HERMES_HOME`, Hermes' current names first and its older ones
/// (`image_cache`, ...) second: the older one is used where it already exists.
pub fn cache_dirs(kind: MediaKind) -> (&'static str, &'static str) {
    match kind {
        MediaKind::Image | MediaKind::Sticker => ("cache/images", "image_cache"),
        MediaKind::Audio | MediaKind::Voice => ("cache/audio", "audio_cache"),
        MediaKind::Video | MediaKind::Gif => ("cache/videos", "video_cache"),
        MediaKind::Document => ("cache/documents", "document_cache"),
    }
}

/// The file name of a cached copy, as Hermes' bridge names them: `img_<12hex>.<ext>`,
/// `aud_<12hex>.<ext>`, `vid_<12hex>.<ext>`, `doc_<12hex>_<sanitized name>`. `tag` is twelve
/// hex digits that identify the message.
pub fn cache_file_name(m: &MediaRef, tag: &str) -> String {
    let ext = extension_for(&m.mime, m.kind);
    match m.kind {
        MediaKind::Image | MediaKind::Sticker => format!("img_{tag}.{ext}"),
        MediaKind::Audio | MediaKind::Voice => format!("aud_{tag}.{ext}"),
        MediaKind::Video | MediaKind::Gif => format!("vid_{tag}.{ext}"),
        MediaKind::Document => {
            let name = m.file_name.as_deref().map(sanitize_file_name).filter(|n| !n.is_empty());
            format!("doc_{tag}_{}", name.unwrap_or_else(|| format!("document.{ext}")))
        }
    }
}

/// Twelve hex digits from a message id, stable across redeliveries.
pub fn cache_tag(message_id: &str) -> String {
    // FNV-1a: no crypto needed, only a short stable name without the id's characters.
    let hash =
        message_id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    format!("{:012x}", hash & 0xffff_ffff_ffff)
}

/// A file name with everything but letters, digits, `.`, `_` and `-` replaced by `_`, as
/// Hermes' bridge does; never a path, never hidden.
pub fn sanitize_file_name(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let clean: String =
        base.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '_' }).collect();
    let clean = clean.trim_start_matches('.').to_owned();
    clean.chars().take(120).collect()
}

/// The extension for a MIME type (what WhatsApp sends), with a default per kind.
pub fn extension_for(mime: &str, kind: MediaKind) -> &'static str {
    let essence = mime.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    match essence.as_str() {
        "image/jpeg" | "image/jpg" => "jpg",
        "image/png" => "png",
        "image/webp" => "webp",
        "image/gif" => "gif",
        "audio/ogg" | "audio/opus" => "ogg",
        "audio/mpeg" | "audio/mp3" => "mp3",
        "audio/mp4" | "audio/m4a" | "audio/x-m4a" | "audio/aac" => "m4a",
        "audio/wav" | "audio/x-wav" | "audio/wave" => "wav",
        "audio/flac" => "flac",
        "video/mp4" => "mp4",
        "video/3gpp" => "3gp",
        "video/quicktime" => "mov",
        "video/webm" => "webm",
        "application/pdf" => "pdf",
        "text/plain" => "txt",
        "text/markdown" => "md",
        "text/csv" => "csv",
        "application/json" => "json",
        _ => match kind {
            MediaKind::Image => "jpg",
            MediaKind::Sticker => "webp",
            MediaKind::Audio | MediaKind::Voice => "ogg",
            MediaKind::Video | MediaKind::Gif => "mp4",
            MediaKind::Document => "bin",
        },
    }
}

/// Text documents Hermes inlines (by extension), up to [`MAX_INLINE_BYTES`].
const TEXT_EXTENSIONS: &[&str] =
    &["txt", "md", "csv", "json", "xml", "yaml", "yml", "log", "py", "js", "ts", "html", "css"];

/// Hermes' `MAX_TEXT_INJECT_BYTES`: larger text documents are not inlined.
pub const MAX_INLINE_BYTES: u64 = 100 * 1024;

/// How the agent is given a document.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DocumentKind {
    /// Text to inline as it is.
    Text,
    /// A PDF, whose extracted text is inlined.
    Pdf,
    /// Anything else: described, kept in the cache.
    Other,
}

pub fn document_kind(file_name: Option<&str>, mime: &str) -> DocumentKind {
    let ext = file_name.and_then(|n| Path::new(n).extension()).and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    let essence = mime.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    if ext.as_deref() == Some("pdf") || essence == "application/pdf" {
        DocumentKind::Pdf
    } else if ext.as_deref().is_some_and(|e| TEXT_EXTENSIONS.contains(&e)) || essence.starts_with("text/") {
        DocumentKind::Text
    } else {
        DocumentKind::Other
    }
}

/// What the agent reads about a message's media, put before the message's own body (Hermes'
/// order: notes first, then the text).
pub fn compose(notes: &[String], body: &str) -> String {
    let mut parts: Vec<&str> = notes.iter().map(String::as_str).filter(|n| !n.is_empty()).collect();
    if !body.trim().is_empty() {
        parts.push(body);
    }
    parts.join("\n\n")
}

/// A transcribed voice note, marked as one.
pub fn voice_transcript(transcript: &str) -> String {
    format!("[The user sent a voice message~ Here's what they said: \"{}\"]", transcript.trim())
}

pub fn voice_empty() -> &'static str {
    "[The user sent a voice message but it came through empty or inaudible — speech-to-text returned no words. \
     Do not guess at the content; ask the user to resend or type it out.]"
}

pub fn voice_failed(path: &Path) -> String {
    format!("[voice message could not be transcribed automatically; the audio is available at: {}]", path.display())
}

pub fn voice_without_stt() -> &'static str {
    "[The user sent a voice message but I can't listen to it right now — no STT provider is configured. \
     A direct message has already been sent to the user about it.]"
}

/// `stt.enabled: false`: the agent is told where the audio is and how long it lasts.
pub fn voice_stt_off(path: &Path, seconds: Option<u32>) -> String {
    match seconds {
        Some(s) => format!("[The user sent a voice message: {} (duration: {})]", path.display(), duration(s)),
        None => format!("[The user sent a voice message: {}]", path.display()),
    }
}

/// The one sentence a sender gets when their voice note cannot be listened to.
pub fn no_stt_reply() -> &'static str {
    "🎤 I received your voice message but can't transcribe it: no speech-to-text provider is configured on this \
     gateway. Please type your message instead."
}

/// A transcript sent back to the chat, so the sender sees what was understood.
pub fn echo(transcript: &str) -> String {
    format!("🎙️ \"{}\"", transcript.trim())
}

fn duration(seconds: u32) -> String {
    let (h, m, s) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    if h > 0 { format!("{h}:{m:02}:{s:02}") } else { format!("{m}:{s:02}") }
}

pub fn text_document_note(name: &str, path: &Path) -> String {
    format!(
        "[The user sent a text document: '{name}'. Its content has been included below. The file is also saved at: {}]",
        path.display()
    )
}

pub fn pdf_note(name: &str, path: &Path) -> String {
    format!(
        "[The user sent a PDF document: '{name}'. Its text was extracted and is included below. The file is also saved at: {}]",
        path.display()
    )
}

/// `[Content of NAME]:` and the text, as Hermes inlines documents.
pub fn content_of(name: &str, text: &str) -> String {
    format!("[Content of {name}]:\n{text}")
}

pub fn document_not_inlined(name: &str, path: &Path, mime: &str, size: u64) -> String {
    let mime = if mime.is_empty() { "unknown type" } else { mime };
    format!(
        "[The user sent a document: '{name}' ({mime}, {}). It is saved at: {}. Its content is not inlined here.]",
        human_size(size),
        path.display()
    )
}

pub fn video_note(name: &str, path: &Path) -> String {
    format!(
        "[The user sent a video attachment: '{name}'. It is saved at: {}. Its content is not inlined here.]",
        path.display()
    )
}

/// An image the model is not shown (`agent.image_input_mode: text`, or a model that refused it).
pub fn image_not_shown(path: &Path) -> String {
    format!(
        "[The user sent an image, but it cannot be shown to you here. It is saved at: {}. Do not guess what it shows; \
         ask the user to describe it if it matters.]",
        path.display()
    )
}

/// Hermes' bridge: `[<type> could not be downloaded]`.
pub fn not_downloaded(kind: MediaKind) -> String {
    format!("[{} could not be downloaded]", kind.word())
}

pub fn too_large(kind: MediaKind, size: u64, cap_mb: u64) -> String {
    format!(
        "[{} could not be downloaded: it is {}, over this gateway's {cap_mb} MB limit (WHATSAPP_MAX_MEDIA_MB)]",
        kind.word(),
        human_size(size)
    )
}

pub fn human_size(bytes: u64) -> String {
    const KB: f64 = 1024.0;
    let b = bytes as f64;
    if b < KB {
        format!("{bytes} B")
    } else if b < KB * KB {
        format!("{:.1} KB", b / KB)
    } else {
        format!("{:.1} MB", b / KB / KB)
    }
}

/// Who transcribes voice notes, decided from the configuration alone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SttChoice {
    /// `stt.enabled: false`.
    Off,
    /// Nothing can transcribe: why, and how to fix it.
    Unavailable(String),
    /// `POST {base_url}/audio/transcriptions`, OpenAI's API (OpenAI, Groq, a local server).
    Api { provider: &'static str, base_url: String, api_key: Option<Secret>, model: String },
    /// `HERMES_LOCAL_STT_COMMAND`.
    Command { template: String, model: String, language: String },
}

const NO_PROVIDER: &str = "no speech-to-text provider is available: set HERMES_LOCAL_STT_COMMAND (for example \
    `whisper {input_path} --model {model} --output_format txt --output_dir {output_dir} --language {language}`), or \
    GROQ_API_KEY for Groq's Whisper, or VOICE_TOOLS_OPENAI_KEY/OPENAI_API_KEY (or stt.openai.base_url pointing at a \
    local OpenAI-compatible server) for OpenAI's";

/// Hermes' provider selection: an explicit `stt.provider` is honoured without falling back to
/// another (a cloud provider the user did not pick gets none of their audio); unset, the
/// first available of a local command, Groq, OpenAI.
pub fn choose_stt(c: &MediaConfig) -> SttChoice {
    if !c.stt_enabled.value {
        return SttChoice::Off;
    }
    let command = || {
        c.stt_local_command.value.clone().map(|template| SttChoice::Command {
            template,
            // A cloud model name means nothing to a local whisper.
            model: Some(c.stt_local_model.value.clone())
                .filter(|m| !m.starts_with("whisper-"))
                .unwrap_or_else(|| "base".into()),
            language: c.stt_language.value.clone().unwrap_or_else(|| "en".to_owned()),
        })
    };
    let groq = || {
        c.groq_api_key.value.clone().map(|key| SttChoice::Api {
            provider: "groq",
            base_url: c.stt_groq_base_url.value.clone(),
            api_key: Some(key),
            // Groq serves its own Whisper names; an OpenAI one is swapped, as Hermes does.
            model: Some(c.stt_groq_model.value.clone())
                .filter(|m| m != "whisper-1" && !m.contains("transcribe"))
                .unwrap_or_else(|| "whisper-large-v3-turbo".into()),
        })
    };
    let openai = || {
        let base_url = c.stt_openai_base_url.value.clone().unwrap_or_else(|| "https://api.openai.com/v1".to_owned());
        let key = c.stt_openai_api_key.value.clone();
        // A server on this machine or the local network needs no key (Hermes sends none).
        (key.is_some() || is_private_url(&base_url)).then(|| SttChoice::Api {
            provider: "openai",
            base_url,
            api_key: key,
            model: c.stt_openai_model.value.clone(),
        })
    };
    let unavailable = |why: &str| SttChoice::Unavailable(why.to_owned());
    match c.stt_provider.value {
        Some(SttProvider::Local | SttProvider::LocalCommand) => command().unwrap_or_else(|| {
            unavailable(
                "stt.provider is local, but hermes cannot run Hermes' Python faster-whisper: set \
                 HERMES_LOCAL_STT_COMMAND to a local whisper command line, or choose stt.provider: groq or openai",
            )
        }),
        Some(SttProvider::Groq) => {
            groq().unwrap_or_else(|| unavailable("stt.provider is groq, but GROQ_API_KEY is not set"))
        }
        Some(SttProvider::OpenAi) => openai().unwrap_or_else(|| {
            unavailable(
                "stt.provider is openai, but neither stt.openai.api_key in config nor \
                 VOICE_TOOLS_OPENAI_KEY/OPENAI_API_KEY is set",
            )
        }),
        None => command().or_else(groq).or_else(openai).unwrap_or_else(|| unavailable(NO_PROVIDER)),
    }
}

/// How spoken replies are made: `None` with the reason when `voice.auto_tts` is on but no
/// provider hermes speaks is configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TtsChoice {
    /// `voice.auto_tts` is off (Hermes' default).
    Off,
    Unavailable(String),
    /// `POST {base_url}/audio/speech`.
    Api {
        base_url: String,
        api_key: Option<Secret>,
        model: String,
        voice: String,
    },
}

pub fn choose_tts(c: &MediaConfig) -> TtsChoice {
    if !c.auto_tts.value {
        return TtsChoice::Off;
    }
    if c.tts_provider.value != "openai" {
        return TtsChoice::Unavailable(format!(
            "voice.auto_tts is on, but tts.provider is '{}', which hermes does not speak: set tts.provider: openai \
             (OpenAI, or any server with POST /audio/speech at tts.openai.base_url)",
            c.tts_provider.value
        ));
    }
    let base_url = c.tts_openai_base_url.value.clone().unwrap_or_else(|| "https://api.openai.com/v1".to_owned());
    let api_key = c.stt_openai_api_key.value.clone();
    if api_key.is_none() && !is_private_url(&base_url) {
        return TtsChoice::Unavailable(
            "voice.auto_tts is on, but neither VOICE_TOOLS_OPENAI_KEY nor OPENAI_API_KEY is set for tts.provider: openai"
                .to_owned(),
        );
    }
    TtsChoice::Api {
        base_url,
        api_key,
        model: c.tts_openai_model.value.clone(),
        voice: c.tts_openai_voice.value.clone(),
    }
}

/// Whether a URL points at this machine or a private network.
pub fn is_private_url(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(v6) = host.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default()
    } else {
        host.split(':').next().unwrap_or_default()
    };
    if host.eq_ignore_ascii_case("localhost") || host.ends_with(".localhost") {
        return true;
    }
    match host.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(ip)) => ip.is_loopback() || ip.is_private() || ip.is_link_local(),
        Ok(std::net::IpAddr::V6(ip)) => ip.is_loopback() || (ip.segments()[0] & 0xfe00) == 0xfc00,
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(name: Option<&str>, mime: &str) -> MediaRef {
        MediaRef {
            kind: MediaKind::Document,
            mime: mime.to_owned(),
            direct_path: "/v/x".into(),
            media_key: vec![1, 2, 255],
            file_sha256: vec![],
            file_enc_sha256: vec![0xab],
            file_length: 10,
            file_name: name.map(str::to_owned),
            seconds: None,
        }
    }

    #[test]
    fn cached_names_follow_hermes_bridge_and_cannot_escape_the_directory() {
        let tag = cache_tag("3EB0ABC");
        assert_eq!(tag.len(), 12);
        assert_eq!(tag, cache_tag("3EB0ABC"), "stable across redeliveries");
        assert_eq!(cache_file_name(&doc(Some("../../etc/passwd"), "text/plain"), &tag), format!("doc_{tag}_passwd"));
        assert_eq!(cache_file_name(&doc(Some("my report (v2).pdf"), ""), "t"), "doc_t_my_report__v2_.pdf");
        assert_eq!(cache_file_name(&doc(Some(".hidden"), ""), "t"), "doc_t_hidden");
        assert_eq!(cache_file_name(&doc(None, "application/pdf"), "t"), "doc_t_document.pdf");
        let voice = MediaRef { kind: MediaKind::Voice, mime: "audio/ogg; codecs=opus".into(), ..doc(None, "") };
        assert_eq!(cache_file_name(&voice, "t"), "aud_t.ogg");
    }

    #[test]
    fn documents_are_inlined_pdf_extracted_or_described() {
        assert_eq!(document_kind(Some("notes.md"), "application/octet-stream"), DocumentKind::Text);
        assert_eq!(document_kind(Some("a.bin"), "text/csv"), DocumentKind::Text);
        assert_eq!(document_kind(Some("paper.PDF"), ""), DocumentKind::Pdf);
        assert_eq!(document_kind(None, "application/pdf"), DocumentKind::Pdf);
        assert_eq!(document_kind(Some("sheet.xlsx"), "application/vnd.ms-excel"), DocumentKind::Other);
    }

    #[test]
    fn the_reference_round_trips_through_json() {
        let m = doc(Some("a.txt"), "text/plain");
        let json = serde_json::to_string(&m).expect("serialize");
        assert!(json.contains("\"media_key\":\"0102ff\""), "{json}");
        assert_eq!(serde_json::from_str::<MediaRef>(&json).expect("parse"), m);
        assert!(serde_json::from_str::<MediaRef>(&json.replace("0102ff", "0102f")).is_err());
    }

    fn config(f: impl FnOnce(&mut crate::config::Inputs<'_>)) -> MediaConfig {
        let mut inputs = crate::config::Inputs::default();
        f(&mut inputs);
        crate::config::resolve(&inputs).config.media
    }

    #[test]
    fn speech_to_text_is_chosen_as_hermes_chooses() {
        assert!(
            matches!(choose_stt(&config(|_| {})), SttChoice::Unavailable(why) if why.contains("HERMES_LOCAL_STT_COMMAND"))
        );
        let with = |k: &str, v: &str| {
            let (k, v) = (k.to_owned(), v.to_owned());
            config(move |i| {
                i.env.insert(k, v);
            })
        };
        assert!(
            matches!(choose_stt(&with("OPENAI_API_KEY", "sk-x")), SttChoice::Api { provider: "openai", model, .. } if model == "whisper-1")
        );
        assert!(
            matches!(choose_stt(&with("GROQ_API_KEY", "g")), SttChoice::Api { provider: "groq", model, .. } if model == "whisper-large-v3-turbo")
        );
        assert!(matches!(
            choose_stt(&with("STT_OPENAI_BASE_URL", "http://127.0.0.1:9000/v1")),
            SttChoice::Api { provider: "openai", api_key: None, .. }
        ));
        assert!(matches!(
            choose_stt(&with("HERMES_LOCAL_STT_COMMAND", "whisper {input_path}")),
            SttChoice::Command { model, language, .. } if model == "base" && language == "en"
        ));
        let yaml = "stt:\n  enabled: false\n";
        assert_eq!(choose_stt(&config(|i| i.yaml = Some(yaml))), SttChoice::Off);
        // An explicit provider gets no silent fallback to another.
        let yaml = "stt:\n  provider: groq\n";
        let c = config(|i| {
            i.yaml = Some(yaml);
            i.env.insert("OPENAI_API_KEY".into(), "sk".into());
        });
        assert!(matches!(choose_stt(&c), SttChoice::Unavailable(why) if why.contains("GROQ_API_KEY")));
    }

    #[test]
    fn private_urls_are_told_from_public_ones() {
        for private in [
            "http://127.0.0.1:8000/v1",
            "http://localhost/v1",
            "http://[::1]:9/v1",
            "http://192.168.1.5",
            "http://u:p@10.0.0.2:1",
        ] {
            assert!(is_private_url(private), "{private}");
        }
        for public in ["https://api.openai.com/v1", "https://8.8.8.8/", "https://localhost.evil.com/"] {
            assert!(!is_private_url(public), "{public}");
        }
    }

    #[test]
    fn notes_go_before_the_body_and_durations_read_like_a_clock() {
        assert_eq!(compose(&["[a]".into(), String::new()], "[ptt received]"), "[a]\n\n[ptt received]");
        assert_eq!(compose(&["[a]".into()], "  "), "[a]");
        assert_eq!(
            voice_stt_off(Path::new("/x.ogg"), Some(75)),
            "[The user sent a voice message: /x.ogg (duration: 1:15)]"
        );
        assert_eq!(duration(3725), "1:02:05");
        assert_eq!(human_size(1536), "1.5 KB");
    }
}
