//! What the pipeline may do on the live connection: send a text under a chosen id, show
//! typing, send read receipts, look up a LID's phone number, name the linked account.
//!
//! The supervisor attaches each client it starts and says when it is connected; the pipeline
//! holds a [`Messenger`] and never sees a whatsapp-rust type. Sending while disconnected is an
//! error the caller retries, never a silent loss.

use std::sync::{Arc, Mutex, PoisonError};

use hermes_core::identity::{Account, Jid as CoreJid, Lid, MessageId, PhoneNumber};
use tokio::sync::watch;
use whatsapp_rust::features::ChatStateType;
use whatsapp_rust::prelude::*;
use whatsapp_rust::send::SendOptions;

/// Why a send did not happen.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// There is no connection right now; try again when there is.
    #[error("not connected to WhatsApp")]
    NotConnected,
    /// The chat is not a WhatsApp address.
    #[error("'{0}' is not a WhatsApp chat address")]
    BadChat(CoreJid),
    /// WhatsApp or the client refused the message.
    #[error("{0}")]
    Failed(String),
}

/// A handle on the current connection. Cheap to clone.
#[derive(Clone, Default)]
pub struct Messenger {
    client: Arc<Mutex<Option<Arc<Client>>>>,
    connected: Arc<watch::Sender<bool>>,
}

impl std::fmt::Debug for Messenger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Messenger").field("connected", &*self.connected.borrow()).finish_non_exhaustive()
    }
}

impl Messenger {
    pub fn new() -> Messenger {
        Messenger::default()
    }

    pub(crate) fn attach(&self, client: Arc<Client>) {
        *self.client.lock().unwrap_or_else(PoisonError::into_inner) = Some(client);
    }

    /// Lets go of the client, which is being thrown away.
    pub(crate) fn detach(&self) {
        self.set_connected(false);
        *self.client.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }

    pub(crate) fn set_connected(&self, connected: bool) {
        self.connected.send_if_modified(|c| std::mem::replace(c, connected) != connected);
    }

    /// Whether a connection is up now.
    pub fn is_connected(&self) -> bool {
        *self.connected.borrow()
    }

    /// Follows the connection's ups and downs.
    pub fn watch_connected(&self) -> watch::Receiver<bool> {
        self.connected.subscribe()
    }

    /// The client, while connected.
    pub(crate) fn live_client(&self) -> Option<Arc<Client>> {
        self.client().ok()
    }

    fn client(&self) -> Result<Arc<Client>, SendError> {
        match (self.is_connected(), self.client.lock().unwrap_or_else(PoisonError::into_inner).clone()) {
            (true, Some(c)) => Ok(c),
            _ => Err(SendError::NotConnected),
        }
    }

    /// Sends `text` to `chat` under `id` (chosen by the caller and kept in the outbox): sent
    /// again after a crash, the same id makes it the same message for WhatsApp and the
    /// recipient.
    pub async fn send_text(&self, chat: &CoreJid, text: &str, id: &MessageId) -> Result<(), SendError> {
        let message =
            whatsapp_rust::waproto::whatsapp::Message { conversation: Some(text.to_owned()), ..Default::default() };
        self.send(chat, message, id).await
    }

    /// Sends a message under `id`.
    pub(crate) async fn send(
        &self,
        chat: &CoreJid,
        message: whatsapp_rust::waproto::whatsapp::Message,
        id: &MessageId,
    ) -> Result<(), SendError> {
        let client = self.client()?;
        let to = wire(chat).ok_or_else(|| SendError::BadChat(chat.clone()))?;
        match client.send_message_with_options(to, message, SendOptions::default().with_message_id(id.as_str())).await {
            Ok(_) => Ok(()),
            Err(_) if !client.is_connected() => Err(SendError::NotConnected),
            Err(e) => Err(SendError::Failed(e.to_string())),
        }
    }

    /// Shows (or stops showing) "typing..." in a chat. Best effort: a lost indicator is harmless.
    pub async fn typing(&self, chat: &CoreJid, on: bool) {
        let (Ok(client), Some(to)) = (self.client(), wire(chat)) else { return };
        let state = if on { ChatStateType::Composing } else { ChatStateType::Paused };
        if let Err(e) = client.chatstate().send(&to, state).await {
            tracing::debug!(error = %e, "typing indicator not sent");
        }
    }

    /// Blue ticks for messages of `sender` in `chat`. Best effort.
    pub async fn mark_read(&self, chat: &CoreJid, sender: &CoreJid, ids: &[MessageId]) {
        let (Ok(client), Some(chat_jid), Some(sender_jid)) = (self.client(), wire(chat), wire(sender)) else {
            return;
        };
        let sender = chat.is_group().then_some(&sender_jid);
        let ids: Vec<&str> = ids.iter().map(MessageId::as_str).collect();
        if let Err(e) = client.mark_as_read(&chat_jid, sender, &ids).await {
            tracing::debug!(error = %e, "read receipt not sent");
        }
    }

    /// The phone JID WhatsApp told this client for a LID JID, if it did.
    pub async fn phone_of(&self, lid: &CoreJid) -> Option<CoreJid> {
        let client = self.client.lock().unwrap_or_else(PoisonError::into_inner).clone()?;
        let entry = client.get_lid_pn_entry(&wire(lid)?).await.ok().flatten()?;
        Some(CoreJid::phone(&PhoneNumber::from_digits(&entry.phone_number).ok()?))
    }

    /// The linked account (phone number and LID), once a client is attached.
    pub fn account(&self) -> Option<Account> {
        let client = self.client.lock().unwrap_or_else(PoisonError::into_inner).clone()?;
        let device = client.persistence_manager().get_device_snapshot();
        let phone = device.pn.as_ref().and_then(|j| PhoneNumber::from_digits(&j.user).ok());
        let lid = device.lid.as_ref().and_then(|j| Lid::from_digits(&j.user));
        (phone.is_some() || lid.is_some()).then_some(Account { phone, lid })
    }
}

/// The protocol's form of an address: the one place the gateway's typed JID becomes
/// whatsapp-rust's.
fn wire(jid: &CoreJid) -> Option<Jid> {
    jid.to_string().parse().ok()
}

/// A new message id in WhatsApp's own shape (`3EB0` and 18 hex digits), chosen before a
/// message is sent so that the outbox can send it again under the same id.
pub fn new_message_id() -> MessageId {
    MessageId::new(format!("3EB0{:018X}", rand::random::<u128>() & ((1u128 << 72) - 1)))
}
