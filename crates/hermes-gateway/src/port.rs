//! What the pipeline needs from the outside world, as traits: the WhatsApp connection and the
//! model. The traits speak the gateway's own and core's types, never a WhatsApp crate's: the
//! binary plugs in the connection (hermes-whatsapp's, in its `messenger` module) and this crate
//! the chat-completions client; the pipeline's own tests plug in fakes and run with paused time.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use hermes_agent::hermes_api::{CallError, Job, TurnAnswer, TurnRequest};
use hermes_agent::{AgentError, Message};
use hermes_core::hermes_api::TranscriptRow;
use hermes_core::identity::{Account, Jid, MessageId};
pub use hermes_core::media::fetch::{Fetch, MediaError};
use hermes_core::media::outbound::{OutMedia, Uploaded};
use tokio::sync::watch;

/// Why a send did not happen.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// There is no connection right now; try again when there is.
    #[error("not connected to WhatsApp")]
    NotConnected,
    /// WhatsApp or the client refused the message.
    #[error("{0}")]
    Failed(String),
}

/// The live connection, as far as the pipeline uses it.
#[async_trait]
pub trait Messenger: Send + Sync + 'static {
    /// Sends `text` to `chat` under `id` (chosen before and kept in the outbox, so a resend is
    /// the same message).
    async fn send_text(&self, chat: &Jid, text: &str, id: &MessageId) -> Result<(), SendError>;
    /// "typing..." on or off. Best effort.
    async fn typing(&self, chat: &Jid, on: bool);
    /// Blue ticks for messages of `sender` in `chat`. Best effort.
    async fn mark_read(&self, chat: &Jid, sender: &Jid, ids: &[MessageId]);
    /// The phone JID WhatsApp told the client for a LID, if it did.
    async fn phone_of(&self, lid: &Jid) -> Option<Jid>;
    /// The linked account, once known.
    fn account(&self) -> Option<Account>;
    /// Follows whether a connection is up.
    fn connected(&self) -> watch::Receiver<bool>;
    /// A new message id in the protocol's shape.
    fn new_message_id(&self) -> MessageId;
    /// Downloads a message's media to `to`, at most `cap` bytes; its size.
    async fn download(&self, fetch: &Fetch<'_>, to: &Path, cap: u64) -> Result<u64, MediaError>;
    /// Uploads a file to send; what its message carries.
    async fn upload(&self, media: &OutMedia) -> Result<Uploaded, SendError>;
    /// Sends an uploaded file under `id`.
    async fn send_media(&self, chat: &Jid, media: &OutMedia, id: &MessageId) -> Result<(), SendError>;
}

/// Speech to text, as the pipeline uses it.
#[async_trait]
pub trait Transcribe: Send + Sync + 'static {
    /// The words in the audio file at `path`.
    async fn transcribe(&self, path: &Path, mime: &str) -> Result<String, String>;
}

#[async_trait]
impl Transcribe for hermes_agent::speech::Transcriber {
    async fn transcribe(&self, path: &Path, mime: &str) -> Result<String, String> {
        hermes_agent::speech::Transcriber::transcribe(self, path, mime).await.map_err(|e| e.to_string())
    }
}

/// Text to speech, for spoken replies.
#[async_trait]
pub trait Speak: Send + Sync + 'static {
    /// `text` spoken, as an Ogg Opus file.
    async fn speak(&self, text: &str) -> Result<Vec<u8>, String>;
}

#[async_trait]
impl Speak for hermes_agent::speech::Synthesizer {
    async fn speak(&self, text: &str) -> Result<Vec<u8>, String> {
        hermes_agent::speech::Synthesizer::speak(self, text).await.map_err(|e| e.to_string())
    }
}

/// Whether voice notes can be transcribed.
#[derive(Clone)]
pub enum Speech {
    /// `stt.enabled: false`: the agent is told a voice note arrived, and where it is.
    Off,
    /// Nothing to transcribe with: why, and how to fix it.
    Unavailable(String),
    Ready(Arc<dyn Transcribe>),
}

impl std::fmt::Debug for Speech {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Speech::Off => f.write_str("Off"),
            Speech::Unavailable(why) => f.debug_tuple("Unavailable").field(why).finish(),
            Speech::Ready(_) => f.write_str("Ready"),
        }
    }
}

/// The agent's model.
#[async_trait]
pub trait Model: Send + Sync + 'static {
    async fn complete(&self, messages: &[Message]) -> Result<String, AgentError>;
}

#[async_trait]
impl Model for hermes_agent::Agent {
    async fn complete(&self, messages: &[Message]) -> Result<String, AgentError> {
        hermes_agent::Agent::complete(self, messages).await
    }
}

/// Hermes Agent's API server: the real agent, which keeps each chat's session itself.
#[async_trait]
pub trait HermesAgent: Send + Sync + 'static {
    /// Sends a turn once (the caller sends it again, unchanged, when that is safe).
    async fn turn(&self, t: &TurnRequest<'_>) -> Result<TurnAnswer, CallError>;
    /// A session's transcript (empty when Hermes has no such session).
    async fn transcript(&self, session_id: &str) -> Result<Vec<TranscriptRow>, CallError>;
    /// Marks a session ended (`/new`). Best effort.
    async fn end_session(&self, session_id: &str) -> Result<(), CallError>;
    /// The agent's scheduled jobs.
    async fn jobs(&self) -> Result<Vec<Job>, CallError>;
    /// The sessions of scheduled runs that ended, newest first.
    async fn cron_runs(&self) -> Result<Vec<String>, CallError>;
}

#[async_trait]
impl HermesAgent for hermes_agent::HermesApi {
    async fn turn(&self, t: &TurnRequest<'_>) -> Result<TurnAnswer, CallError> {
        hermes_agent::HermesApi::turn(self, t).await
    }
    async fn transcript(&self, session_id: &str) -> Result<Vec<TranscriptRow>, CallError> {
        hermes_agent::HermesApi::transcript(self, session_id).await
    }
    async fn end_session(&self, session_id: &str) -> Result<(), CallError> {
        hermes_agent::HermesApi::end_session(self, session_id).await
    }
    async fn jobs(&self) -> Result<Vec<Job>, CallError> {
        hermes_agent::HermesApi::jobs(self).await
    }
    async fn cron_runs(&self) -> Result<Vec<String>, CallError> {
        hermes_agent::HermesApi::cron_runs(self).await
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    /// The WhatsApp crates, as a manifest and as source name them; spelled in halves so that
    /// this file does not name them itself.
    const WHATSAPP: [(&str, &str); 4] = [
        (concat!("hermes", "-whatsapp"), concat!("hermes", "_whatsapp")),
        (concat!("whatsapp", "-rust"), concat!("whatsapp", "_rust")),
        (concat!("wa", "core"), concat!("wa", "core")),
        (concat!("wa", "proto"), concat!("wa", "proto")),
    ];

    /// The traits speak the gateway's own and core's types and the binary plugs the connection
    /// in, so the pipeline, its tests included, builds without any WhatsApp crate.
    #[test]
    fn the_pipeline_depends_on_no_whatsapp_crate() {
        let manifest = include_str!("../Cargo.toml");
        for line in manifest.lines().filter(|l| !l.trim_start().starts_with('#')) {
            for (name, _) in WHATSAPP {
                assert!(
                    !line.contains(name),
                    "hermes-gateway's Cargo.toml names {name} (`{line}`): the pipeline reaches WhatsApp only through \
                     its Messenger trait; implement it in the binary (hermes/src/messenger.rs)"
                );
            }
        }
        let files = sources(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
        assert!(files.iter().any(|f| f.ends_with("port.rs")), "the gateway's sources are found: {files:?}");
        for file in files {
            let text = std::fs::read_to_string(&file).expect("read a source file");
            for (_, path) in WHATSAPP {
                assert!(
                    !text.contains(path),
                    "{} names {path}: the pipeline speaks its own and core's types; convert in the binary \
                     (hermes/src/messenger.rs)",
                    file.display()
                );
            }
        }
    }

    fn sources(dir: &Path) -> Vec<PathBuf> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir(dir).expect("list the sources") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                found.extend(sources(&path));
            } else if path.extension().is_some_and(|e| e == "rs") {
                found.push(path);
            }
        }
        found
    }
}
