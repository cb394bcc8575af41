//! What the pipeline needs from the outside world, as traits: the WhatsApp connection and the
//! model. The running gateway plugs in whatsapp-rust (through `hermes_whatsapp`) and the
//! chat-completions client; the pipeline's own tests plug in fakes and run with paused time.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use hermes_agent::{AgentError, Message};
use hermes_core::identity::{Account, Jid, MessageId};
use hermes_core::media::outbound::{OutMedia, Uploaded};
pub use hermes_whatsapp::media::{Fetch, MediaError};
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

fn wa_error(e: hermes_whatsapp::messenger::SendError) -> SendError {
    match e {
        hermes_whatsapp::messenger::SendError::NotConnected => SendError::NotConnected,
        other => SendError::Failed(other.to_string()),
    }
}

#[async_trait]
impl Messenger for hermes_whatsapp::messenger::Messenger {
    async fn send_text(&self, chat: &Jid, text: &str, id: &MessageId) -> Result<(), SendError> {
        hermes_whatsapp::messenger::Messenger::send_text(self, chat, text, id).await.map_err(wa_error)
    }

    async fn typing(&self, chat: &Jid, on: bool) {
        hermes_whatsapp::messenger::Messenger::typing(self, chat, on).await;
    }

    async fn mark_read(&self, chat: &Jid, sender: &Jid, ids: &[MessageId]) {
        hermes_whatsapp::messenger::Messenger::mark_read(self, chat, sender, ids).await;
    }

    async fn phone_of(&self, lid: &Jid) -> Option<Jid> {
        hermes_whatsapp::messenger::Messenger::phone_of(self, lid).await
    }

    fn account(&self) -> Option<Account> {
        hermes_whatsapp::messenger::Messenger::account(self)
    }

    fn connected(&self) -> watch::Receiver<bool> {
        self.watch_connected()
    }

    fn new_message_id(&self) -> MessageId {
        hermes_whatsapp::messenger::new_message_id()
    }

    async fn download(&self, fetch: &Fetch<'_>, to: &Path, cap: u64) -> Result<u64, MediaError> {
        hermes_whatsapp::messenger::Messenger::download(self, fetch, to, cap).await
    }

    async fn upload(&self, media: &OutMedia) -> Result<Uploaded, SendError> {
        hermes_whatsapp::messenger::Messenger::upload(self, media).await.map_err(wa_error)
    }

    async fn send_media(&self, chat: &Jid, media: &OutMedia, id: &MessageId) -> Result<(), SendError> {
        hermes_whatsapp::messenger::Messenger::send_media(self, chat, media, id).await.map_err(wa_error)
    }
}
