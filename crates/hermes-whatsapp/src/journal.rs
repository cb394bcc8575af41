//! The inbound durability hook: every message is in the journal before WhatsApp is told it
//! arrived. A crash before the commit leaves it unacknowledged, so WhatsApp delivers it again;
//! a redelivery of a kept message is a no-op (the journal's key is (chat, sender, id)).

use std::sync::Arc;

use hermes_core::identity::{Jid as CoreJid, MessageId};
use hermes_store::{Db, Inbound};
use whatsapp_rust::prelude::*;

/// Journals each decrypted batch into the store, in one transaction, before it is acked.
#[derive(Clone)]
pub struct JournalHook {
    db: Db,
    /// Woken when a batch brought something new, for the pipeline to take it.
    wake: Arc<tokio::sync::Notify>,
    /// Woken when a batch could not be kept, for the supervisor to stop receiving.
    trouble: Arc<tokio::sync::Notify>,
    /// Told how many new messages each batch kept (the gateway's metrics).
    counter: Option<Arc<dyn Fn(u64) + Send + Sync>>,
}

impl std::fmt::Debug for JournalHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JournalHook").finish_non_exhaustive()
    }
}

impl JournalHook {
    pub fn new(db: Db, wake: Arc<tokio::sync::Notify>, trouble: Arc<tokio::sync::Notify>) -> JournalHook {
        JournalHook { db, wake, trouble, counter: None }
    }

    /// Also tells `counter` how many new messages each batch kept.
    pub fn counting(mut self, counter: impl Fn(u64) + Send + Sync + 'static) -> JournalHook {
        self.counter = Some(Arc::new(counter));
        self
    }
}

/// Marks the stand-in for a message whose text another client of the device took
/// ([`unreadable_stand_in`]); no message a person sends can carry a NUL.
const UNREADABLE: &str = "\u{0}hermes:unreadable";

/// The message journaled in place of one another client of this device already read.
pub(crate) fn unreadable_stand_in() -> Vec<u8> {
    use buffa::Message as _;
    whatsapp_rust::waproto::whatsapp::Message { conversation: Some(UNREADABLE.to_owned()), ..Default::default() }
        .encode_to_vec()
}

impl JournalHook {
    /// Whether the journal holds this message (addresses as whatsapp-rust writes them).
    pub(crate) async fn is_journaled(&self, chat: &str, sender: &str, id: &str) -> anyhow::Result<bool> {
        let (chat, sender) = (CoreJid::from_wire(chat).to_non_device(), CoreJid::from_wire(sender).to_non_device());
        let id = MessageId::new(id);
        Ok(self.db.call(move |s| s.is_journaled(&chat, &sender, &id)).await?)
    }
}

/// The protocol's address, typed once for everything after the journal.
fn typed(jid: &Jid) -> CoreJid {
    CoreJid::from_wire(&jid.to_non_ad().to_string())
}

fn record(m: &InboundMessage) -> Inbound {
    let s = &m.info.source;
    // Mentions and quotes ride on the message's context: of its text, or of its media.
    let context = context_of(m.message.get_base_message());
    Inbound {
        chat: typed(&s.chat),
        sender: typed(&s.sender),
        id: MessageId::new(m.info.id.to_string()),
        sender_alt: s.sender_alt.as_ref().map(typed),
        timestamp: m.info.timestamp.timestamp(),
        text: crate::body::body(&m.message).filter(|t| t != UNREADABLE).or_else(|| edited(&m.message)),
        unreadable: m.message.text_content() == Some(UNREADABLE),
        from_me: s.is_from_me,
        mentions: context.map(|c| c.mentioned_jid.iter().map(|j| CoreJid::from_wire(j)).collect()).unwrap_or_default(),
        quoted: context.and_then(|c| c.participant.as_deref().map(CoreJid::from_wire)),
        quote: context.and_then(|c| {
            Some(hermes_store::Quote {
                id: MessageId::new(c.stanza_id.clone().filter(|id| !id.is_empty())?),
                text: c.quoted_message.as_option().and_then(crate::body::body),
            })
        }),
        media: crate::body::media(&m.message),
        change: change(&m.message),
    }
}

/// The context (mentions, the quoted message) of a text, or of a media message's caption.
fn context_of(m: &whatsapp_rust::waproto::whatsapp::Message) -> Option<&whatsapp_rust::waproto::whatsapp::ContextInfo> {
    let text = m.extended_text_message.as_option().and_then(|e| e.context_info.as_option());
    text.or_else(|| m.image_message.as_option().and_then(|i| i.context_info.as_option()))
        .or_else(|| m.video_message.as_option().and_then(|v| v.context_info.as_option()))
        .or_else(|| m.audio_message.as_option().and_then(|a| a.context_info.as_option()))
        .or_else(|| m.document_message.as_option().and_then(|d| d.context_info.as_option()))
        .or_else(|| m.sticker_message.as_option().and_then(|s| s.context_info.as_option()))
}

/// What an edit says when its message was answered already.
fn edited(message: &whatsapp_rust::waproto::whatsapp::Message) -> Option<String> {
    match change(message)? {
        hermes_store::Change::Edit { text, .. } => {
            Some(format!("[The user edited an earlier message; it now says: \"{text}\"]"))
        }
        hermes_store::Change::Revoke { .. } => None,
    }
}

/// An edit or a delete of an earlier message, as whatsapp-rust hands them over (a newer
/// client's encrypted edit is already unwrapped into this legacy shape).
fn change(message: &whatsapp_rust::waproto::whatsapp::Message) -> Option<hermes_store::Change> {
    use whatsapp_rust::waproto::whatsapp::message::protocol_message::Type;
    let pm = message.get_base_message().protocol_message.as_option()?;
    let of = MessageId::new(pm.key.as_option()?.id.clone()?);
    if pm.r#type == Some(Type::REVOKE) {
        return Some(hermes_store::Change::Revoke { of });
    }
    if pm.r#type == Some(Type::MESSAGE_EDIT) {
        let text = crate::body::body(pm.edited_message.as_option()?)?;
        return Some(hermes_store::Change::Edit { of, text });
    }
    None
}

#[async_trait::async_trait]
impl whatsapp_rust::InboundDurabilityHook for JournalHook {
    async fn on_messages(&self, _client: Arc<Client>, batch: &[InboundMessage]) -> anyhow::Result<()> {
        let records: Vec<Inbound> = batch.iter().map(record).collect();
        let committed = self.db.call(move |store| store.journal(&records)).await.map(|outcome| {
            let new = outcome.iter().filter(|o| matches!(o, hermes_store::Journaled::New(_))).count();
            tracing::debug!(new, redelivered = outcome.len() - new, "inbound batch journaled");
            new
        });
        // Not kept, so not acknowledged: WhatsApp redelivers it, but only to a new connection,
        // which the supervisor makes once the journal can be written again.
        let new = committed.inspect_err(|e| {
            tracing::error!(error = %format!("{e:#}"), "cannot journal an inbound message; it is not acknowledged");
            self.trouble.notify_one();
        })?;
        // Kept, not yet acknowledged: a crash here must not lose the message.
        hermes_store::crash::point("journaled");
        if new > 0 {
            if let Some(count) = &self.counter {
                count(new as u64);
            }
            self.wake.notify_one();
        }
        Ok(())
    }
}
