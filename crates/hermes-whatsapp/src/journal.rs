//! The inbound durability hook: every message is in the journal before WhatsApp is told it
//! arrived. A crash before the commit leaves it unacknowledged, so WhatsApp delivers it again;
//! a redelivery of a kept message is a no-op (the journal's key is (chat, sender, id)).

use std::sync::Arc;

use hermes_core::identity::{Jid as CoreJid, MessageId};
use hermes_store::{Db, Inbound, Journaled, StoreError};
use tokio::sync::{mpsc, oneshot};
use whatsapp_rust::prelude::*;

/// Journals each decrypted batch into the store, in one transaction, before it is acked.
#[derive(Clone)]
pub struct JournalHook {
    db: Db,
    /// The committer's queue, started with the first batch (inside the client's runtime).
    commits: Arc<std::sync::OnceLock<mpsc::UnboundedSender<Waiting>>>,
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
        JournalHook { db, commits: Arc::default(), wake, trouble, counter: None }
    }

    /// Also tells `counter` how many new messages each batch kept.
    pub fn counting(mut self, counter: impl Fn(u64) + Send + Sync + 'static) -> JournalHook {
        self.counter = Some(Arc::new(counter));
        self
    }
}

/// What became of a group's commit, shared by the batches in it.
type Outcome = Result<Vec<Journaled>, Arc<StoreError>>;

/// A batch waiting for its commit.
struct Waiting {
    records: Vec<Inbound>,
    answer: oneshot::Sender<Outcome>,
}

impl JournalHook {
    /// Journals `records` and says what became of each, once they are committed.
    ///
    /// Group commit: after the offline backlog, whatsapp-rust hands live messages over as
    /// batches of one, from up to 64 chats at once, and each paid for its own transaction
    /// and fsync, one after another on the one connection. One committer task takes every
    /// batch that waited during a commit into the next one, and answers each after it: the
    /// same durability (nothing acknowledged before its commit), one fsync per wait instead
    /// of per message. A caller that gives up (its future dropped) leaves its batch to be
    /// committed anyway, unacknowledged, so WhatsApp's redelivery finds it kept.
    async fn commit(&self, records: Vec<Inbound>) -> anyhow::Result<Vec<Journaled>> {
        let queue = self.commits.get_or_init(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(committer(self.db.clone(), rx));
            tx
        });
        let (answer, answered) = oneshot::channel();
        queue.send(Waiting { records, answer }).map_err(|_| anyhow::anyhow!("the journal's committer has stopped"))?;
        match answered.await {
            Ok(outcome) => outcome.map_err(|e| anyhow::anyhow!("{e}")),
            Err(_) => Err(anyhow::anyhow!("the journal's committer stopped before this batch was committed")),
        }
    }
}

/// Commits what waits, all of it in one transaction, until every hook is gone.
async fn committer(db: Db, mut queue: mpsc::UnboundedReceiver<Waiting>) {
    while let Some(first) = queue.recv().await {
        let mut group = vec![first];
        while let Ok(next) = queue.try_recv() {
            group.push(next);
        }
        let sizes: Vec<usize> = group.iter().map(|w| w.records.len()).collect();
        let (records, answers): (Vec<Vec<Inbound>>, Vec<_>) = group.into_iter().map(|w| (w.records, w.answer)).unzip();
        let records: Vec<Inbound> = records.into_iter().flatten().collect();
        tracing::trace!(batches = sizes.len(), messages = records.len(), "group commit");
        let outcome = db.call(move |store| store.journal(&records)).await.map_err(Arc::new);
        let mut rest = outcome.as_deref().unwrap_or_default();
        for (answer, n) in answers.into_iter().zip(sizes) {
            let own = match &outcome {
                Ok(_) => {
                    let (own, after) = rest.split_at(n);
                    rest = after;
                    Ok(own.to_vec())
                }
                Err(e) => Err(Arc::clone(e)),
            };
            // A caller that gave up is not told: its batch is kept, and not acknowledged.
            let _ = answer.send(own);
        }
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
    // Mentions and quotes ride on the context of an extended text message.
    let context =
        m.message.get_base_message().extended_text_message.as_option().and_then(|e| e.context_info.as_option());
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
        media: crate::body::media(&m.message),
        change: change(&m.message),
    }
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
        let committed = self.commit(records).await.map(|outcome| {
            let new = outcome.iter().filter(|o| matches!(o, Journaled::New(_))).count();
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

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn message(id: &str) -> Inbound {
        let jid = CoreJid::parse("15551234567@s.whatsapp.net").expect("a JID");
        Inbound {
            chat: jid.clone(),
            sender: jid,
            id: MessageId::new(id),
            sender_alt: None,
            timestamp: 1_795_000_000,
            text: Some(format!("text of {id}")),
            from_me: false,
            unreadable: false,
            mentions: Vec::new(),
            quoted: None,
            media: None,
            change: None,
        }
    }

    /// Batches committed together are each answered with their own messages' outcomes, in
    /// their order, and a redelivery in a later batch is told it was kept already.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_batches_are_committed_and_each_answered_for_itself() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Db::new(hermes_store::Store::open(&dir.path().join("hermes.db")).expect("store"));
        let notify = || Arc::new(tokio::sync::Notify::new());
        let hook = JournalHook::new(db.clone(), notify(), notify());
        // Batches of one to three messages, as the live lanes and the offline drain give them.
        let batches: Vec<Vec<String>> = (0..60).map(|b| (0..=b % 3).map(|i| format!("m{b}-{i}")).collect()).collect();
        // All started before any is awaited: they queue while the first commits.
        let calls: Vec<_> = batches
            .iter()
            .map(|ids| {
                let hook = hook.clone();
                let records = ids.iter().map(|id| message(id)).collect();
                tokio::spawn(async move { hook.commit(records).await })
            })
            .collect();
        let mut outcomes = Vec::new();
        for call in calls {
            outcomes.push(call.await);
        }
        let seqs: HashMap<i64, String> = db
            .call(|s| s.pending(10_000))
            .await
            .expect("pending")
            .into_iter()
            .map(|(seq, m)| (seq, m.id.as_str().to_owned()))
            .collect();
        assert_eq!(seqs.len(), batches.iter().map(Vec::len).sum::<usize>());
        for (ids, outcome) in batches.iter().zip(outcomes) {
            let outcome = outcome.expect("task").expect("committed");
            let got: Vec<&str> = outcome
                .iter()
                .map(|o| match o {
                    Journaled::New(seq) => seqs[seq].as_str(),
                    Journaled::Duplicate => "duplicate",
                })
                .collect();
            assert_eq!(got, ids.iter().map(String::as_str).collect::<Vec<_>>());
        }

        let again = hook.commit(vec![message("m7-0"), message("later")]).await.expect("committed");
        assert!(matches!(again[..], [Journaled::Duplicate, Journaled::New(_)]), "{again:?}");
    }
}
