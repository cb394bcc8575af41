//! Speech to text for voice notes: OpenAI's `POST {base_url}/audio/transcriptions` (OpenAI,
//! Groq, or any compatible server such as a local whisper), or Hermes' local command
//! (`HERMES_LOCAL_STT_COMMAND`, run without a shell, its transcript read from the `.txt` it
//! writes). Which one is decided by [`hermes_core::media::choose_stt`].

use std::path::Path;
use std::time::Duration;

use hermes_core::config::Secret;
use hermes_core::media::SttChoice;

/// Hermes' limits: 30 s for an API call, 300 s for a local command.
const API_TIMEOUT: Duration = Duration::from_secs(30);
const COMMAND_TIMEOUT: Duration = Duration::from_secs(300);
/// OpenAI's upload limit, which Hermes applies to every cloud provider.
pub const MAX_API_BYTES: u64 = 25 * 1024 * 1024;

/// Why there is no transcript.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpeechError {
    #[error("the transcription server answered {status}: {body}")]
    Status { status: u16, body: String },
    #[error("cannot reach the transcription server: {0}")]
    Unreachable(String),
    #[error("the audio is {0} bytes, over the 25 MB a transcription API accepts")]
    TooLarge(u64),
    #[error("HERMES_LOCAL_STT_COMMAND failed: {0}")]
    Command(String),
    #[error("cannot read the audio: {0}")]
    Io(#[from] std::io::Error),
}

enum How {
    Api { url: String, key: Option<Secret>, model: String, provider: &'static str },
    Command { template: String, model: String, language: String },
}

/// A configured transcriber. Cheap to clone.
#[derive(Clone)]
pub struct Transcriber {
    how: std::sync::Arc<How>,
    http: reqwest::Client,
}

impl std::fmt::Debug for Transcriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl Transcriber {
    /// The transcriber for a choice; `None` for `Off` and `Unavailable`.
    pub fn new(choice: &SttChoice) -> Option<Transcriber> {
        let how = match choice.clone() {
            SttChoice::Off | SttChoice::Unavailable(_) => return None,
            SttChoice::Api { provider, base_url, api_key, model } => How::Api {
                url: format!("{}/audio/transcriptions", base_url.trim_end_matches('/')),
                key: api_key,
                model,
                provider,
            },
            SttChoice::Command { template, model, language } => How::Command { template, model, language },
        };
        let http = reqwest::Client::builder()
            .user_agent(concat!("hermes/", env!("CARGO_PKG_VERSION")))
            .timeout(API_TIMEOUT)
            .build()
            .unwrap_or_default();
        Some(Transcriber { how: std::sync::Arc::new(how), http })
    }

    /// What it is, for the log (no key, no credentials in the URL).
    pub fn describe(&self) -> String {
        match &*self.how {
            How::Api { url, model, provider, .. } => format!("{provider} ({model} at {})", crate::redact_url(url)),
            How::Command { model, .. } => format!("HERMES_LOCAL_STT_COMMAND (model {model})"),
        }
    }

    /// The words spoken in the audio file at `path` (possibly empty).
    pub async fn transcribe(&self, path: &Path, mime: &str) -> Result<String, SpeechError> {
        match &*self.how {
            How::Api { url, key, model, .. } => self.api(url, key.as_ref(), model, path, mime).await,
            How::Command { template, model, language } => command(template, model, language, path).await,
        }
    }

    async fn api(
        &self,
        url: &str,
        key: Option<&Secret>,
        model: &str,
        path: &Path,
        mime: &str,
    ) -> Result<String, SpeechError> {
        let size = tokio::fs::metadata(path).await?.len();
        if size > MAX_API_BYTES {
            return Err(SpeechError::TooLarge(size));
        }
        let bytes = tokio::fs::read(path).await?;
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("audio.ogg").to_owned();
        let mime = mime.split(';').next().unwrap_or_default().trim();
        let part = reqwest::multipart::Part::bytes(bytes)
            .file_name(name)
            .mime_str(if mime.is_empty() { "application/octet-stream" } else { mime })
            .map_err(|e| SpeechError::Unreachable(e.to_string()))?;
        // Hermes asks whisper-1 for plain text and newer models for JSON.
        let format = if model == "whisper-1" { "text" } else { "json" };
        let form = reqwest::multipart::Form::new()
            .text("model", model.to_owned())
            .text("response_format", format)
            .part("file", part);
        let mut request = self.http.post(url).multipart(form);
        if let Some(key) = key {
            request = request.bearer_auth(key.expose());
        }
        let response = request.send().await.map_err(|e| SpeechError::Unreachable(e.without_url().to_string()))?;
        let status = response.status();
        let body = response.text().await.map_err(|e| SpeechError::Unreachable(e.without_url().to_string()))?;
        if !status.is_success() {
            return Err(SpeechError::Status { status: status.as_u16(), body: body.chars().take(300).collect() });
        }
        // `{"text": ...}` for JSON; the body itself for plain text.
        let text = match serde_json::from_str::<serde_json::Value>(&body) {
            Ok(serde_json::Value::Object(o)) => o.get("text").and_then(|t| t.as_str()).unwrap_or_default().to_owned(),
            _ => body,
        };
        Ok(text.trim().to_owned())
    }
}

/// Spoken replies: OpenAI's `POST {base_url}/audio/speech`, asked for Ogg Opus, which is
/// what a WhatsApp voice note is.
#[derive(Clone)]
pub struct Synthesizer {
    url: String,
    key: Option<Secret>,
    model: String,
    voice: String,
    http: reqwest::Client,
}

impl std::fmt::Debug for Synthesizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

/// OpenAI's input limit for one request.
const MAX_SPEECH_CHARS: usize = 4096;

impl Synthesizer {
    pub fn new(choice: &hermes_core::media::TtsChoice) -> Option<Synthesizer> {
        let hermes_core::media::TtsChoice::Api { base_url, api_key, model, voice } = choice.clone() else {
            return None;
        };
        let http = reqwest::Client::builder()
            .user_agent(concat!("hermes/", env!("CARGO_PKG_VERSION")))
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap_or_default();
        Some(Synthesizer {
            url: format!("{}/audio/speech", base_url.trim_end_matches('/')),
            key: api_key,
            model,
            voice,
            http,
        })
    }

    pub fn describe(&self) -> String {
        format!("{} voice {} at {}", self.model, self.voice, crate::redact_url(&self.url))
    }

    /// `text` spoken, as an Ogg Opus file's bytes.
    pub async fn speak(&self, text: &str) -> Result<Vec<u8>, SpeechError> {
        let input: String = text.chars().take(MAX_SPEECH_CHARS).collect();
        let body = serde_json::json!({
            "model": self.model, "input": input, "voice": self.voice, "response_format": "opus",
        });
        let mut request = self.http.post(&self.url).json(&body);
        if let Some(key) = &self.key {
            request = request.bearer_auth(key.expose());
        }
        let response = request.send().await.map_err(|e| SpeechError::Unreachable(e.without_url().to_string()))?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| SpeechError::Unreachable(e.without_url().to_string()))?;
        if !status.is_success() {
            let body = String::from_utf8_lossy(&bytes).chars().take(300).collect();
            return Err(SpeechError::Status { status: status.as_u16(), body });
        }
        Ok(bytes.to_vec())
    }
}

/// The command line of a template, split like a shell would but run without one, with the
/// four placeholders Hermes defines filled in; any other `{name}` is refused as Hermes does.
pub fn render(
    template: &str,
    input: &Path,
    output_dir: &Path,
    language: &str,
    model: &str,
) -> Result<Vec<String>, String> {
    let words = shell_words::split(template).map_err(|e| format!("cannot be split into words: {e}"))?;
    if words.is_empty() {
        return Err("is empty".to_owned());
    }
    let fill = |word: &str| -> Result<String, String> {
        let mut out = String::new();
        let mut rest = word;
        while let Some(start) = rest.find('{') {
            out.push_str(&rest[..start]);
            let end = rest[start..].find('}').ok_or_else(|| format!("has an unclosed '{{' in '{word}'"))? + start;
            let value = match &rest[start + 1..end] {
                "input_path" => input.display().to_string(),
                "output_dir" => output_dir.display().to_string(),
                "language" => language.to_owned(),
                "model" => model.to_owned(),
                other => {
                    return Err(format!(
                        "has an unknown placeholder '{{{other}}}' (known: {{input_path}}, {{output_dir}}, {{language}}, {{model}})"
                    ));
                }
            };
            out.push_str(&value);
            rest = &rest[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    };
    words.iter().map(|w| fill(w)).collect()
}

async fn command(template: &str, model: &str, language: &str, path: &Path) -> Result<String, SpeechError> {
    let out = tempfile::tempdir()?;
    let argv = render(template, path, out.path(), language, model).map_err(SpeechError::Command)?;
    let mut cmd = tokio::process::Command::new(&argv[0]);
    cmd.args(&argv[1..]).kill_on_drop(true).stdin(std::process::Stdio::null());
    let run = tokio::time::timeout(COMMAND_TIMEOUT, cmd.output())
        .await
        .map_err(|_| SpeechError::Command(format!("did not finish within {} s", COMMAND_TIMEOUT.as_secs())))?
        .map_err(|e| SpeechError::Command(format!("cannot run '{}': {e}", argv[0])))?;
    if !run.status.success() {
        let stderr = String::from_utf8_lossy(&run.stderr);
        let last = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or_default();
        return Err(SpeechError::Command(format!("exited with {}: {last}", run.status)));
    }
    let mut transcripts: Vec<_> = std::fs::read_dir(out.path())?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    transcripts.sort();
    let first = transcripts
        .first()
        .ok_or_else(|| SpeechError::Command("completed but did not produce a .txt transcript".to_owned()))?;
    Ok(std::fs::read_to_string(first)?.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_template_is_filled_word_by_word_and_unknown_placeholders_refused() {
        let argv = render(
            "whisper {input_path} --model {model} --output_dir {output_dir} --language={language}",
            Path::new("/tmp/a b.ogg"),
            Path::new("/out"),
            "en",
            "base",
        )
        .expect("renders");
        assert_eq!(argv, ["whisper", "/tmp/a b.ogg", "--model", "base", "--output_dir", "/out", "--language=en"]);
        let err =
            render("whisper {input} {output_dir}", Path::new("a"), Path::new("b"), "en", "m").expect_err("unknown");
        assert!(err.contains("{input}"), "{err}");
        assert!(render("  ", Path::new("a"), Path::new("b"), "en", "m").is_err());
    }

    #[tokio::test]
    async fn a_local_command_writes_the_transcript_it_is_read_from() {
        let dir = tempfile::tempdir().expect("tempdir");
        let audio = dir.path().join("note.ogg");
        std::fs::write(&audio, b"OggS").expect("write");
        let choice = SttChoice::Command {
            template: "sh -c 'printf \" hello from {model} \" > \"$0/x.txt\"' {output_dir}".to_owned(),
            model: "base".to_owned(),
            language: "en".to_owned(),
        };
        let t = Transcriber::new(&choice).expect("a transcriber");
        assert_eq!(t.transcribe(&audio, "audio/ogg").await.expect("transcribed"), "hello from base");
        let failing =
            SttChoice::Command { template: "sh -c 'exit 3'".into(), model: "m".into(), language: "en".into() };
        let err = Transcriber::new(&failing).expect("t").transcribe(&audio, "audio/ogg").await.expect_err("fails");
        assert!(err.to_string().contains("exited"), "{err}");
    }
}
