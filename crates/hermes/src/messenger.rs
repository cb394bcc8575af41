//! The WhatsApp connection as the pipeline sees it: `hermes_gateway::Messenger` over
//! `hermes_whatsapp::messenger::Messenger`. The two meet here, in the binary, so that the
//! pipeline depends on no WhatsApp crate (it names only its own and core's types, and its
//! tests run on fakes) and the WhatsApp edge on no pipeline. Only the send errors differ and
//! are converted; everything else is already in core's words.

use std::path::Path;

use async_trait::async_trait;
use hermes_core::identity::{Account, Jid, MessageId};
use hermes_core::media::fetch::{Fetch, MediaError};
use hermes_core::media::outbound::{OutMedia, Uploaded};
use hermes_gateway::SendError;
use hermes_whatsapp::messenger as wa;
use tokio::sync::watch;

/// The live connection, handed to the pipeline.
#[derive(Clone, Debug)]
pub struct WhatsApp(pub wa::Messenger);

#[async_trait]
impl hermes_gateway::Messenger for WhatsApp {
    async fn send_text(&self, chat: &Jid, text: &str, id: &MessageId) -> Result<(), SendError> {
        self.0.send_text(chat, text, id).await.map_err(send_error)
    }

    async fn typing(&self, chat: &Jid, on: bool) {
        self.0.typing(chat, on).await;
    }

    async fn mark_read(&self, chat: &Jid, sender: &Jid, ids: &[MessageId]) {
        self.0.mark_read(chat, sender, ids).await;
    }

    async fn phone_of(&self, lid: &Jid) -> Option<Jid> {
        self.0.phone_of(lid).await
    }

    fn account(&self) -> Option<Account> {
        self.0.account()
    }

    fn connected(&self) -> watch::Receiver<bool> {
        self.0.watch_connected()
    }

    fn new_message_id(&self) -> MessageId {
        wa::new_message_id()
    }

    async fn download(&self, fetch: &Fetch<'_>, to: &Path, cap: u64) -> Result<u64, MediaError> {
        self.0.download(fetch, to, cap).await
    }

    async fn upload(&self, media: &OutMedia) -> Result<Uploaded, SendError> {
        self.0.upload(media).await.map_err(send_error)
    }

    async fn send_media(&self, chat: &Jid, media: &OutMedia, id: &MessageId) -> Result<(), SendError> {
        self.0.send_media(chat, media, id).await.map_err(send_error)
    }
}

/// The pipeline waits for a connection on `NotConnected` and counts anything else as a
/// refusal, so only the edge's own `NotConnected` may become it.
fn send_error(e: wa::SendError) -> SendError {
    match e {
        wa::SendError::NotConnected => SendError::NotConnected,
        other => SendError::Failed(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use hermes_gateway::Messenger as _;

    use super::*;

    fn chat() -> Jid {
        Jid::parse("15551234567@s.whatsapp.net").expect("a phone JID")
    }

    /// Without a connection a send is `NotConnected` to the pipeline, which then waits for one,
    /// not a refusal it would count towards giving the reply up.
    #[tokio::test]
    async fn a_send_without_a_connection_waits_for_one() {
        let whatsapp = WhatsApp(wa::Messenger::new());
        assert!(!*whatsapp.connected().borrow(), "a new messenger has no connection");
        let sent = whatsapp.send_text(&chat(), "hi", &whatsapp.new_message_id()).await;
        assert!(matches!(sent, Err(SendError::NotConnected)), "{sent:?}");
    }

    #[test]
    fn a_refusal_keeps_what_whatsapp_said() {
        let refused = send_error(wa::SendError::BadChat(chat()));
        assert!(matches!(&refused, SendError::Failed(why) if why.contains("15551234567")), "{refused:?}");
    }
}
