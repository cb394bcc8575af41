//! The sender: the outbox, in order, one message at a time, under the ids chosen before.
//!
//! Serialized for the whole account (WhatsApp frowns on bursts), with a small gap before each
//! further chunk of a long reply, as Hermes does. A send that fails for want of a connection
//! waits for the connection; one that WhatsApp refuses is retried with hermes' backoff, and
//! given up (and logged, and left in the outbox) after `GIVE_UP_AFTER` attempts, so one bad
//! row cannot block the queue forever.

use std::sync::Arc;
use std::time::Duration;

use hermes_core::backoff::Backoff;
use hermes_core::governor::{Governor, Limits};
use hermes_core::identity::{Jid, MessageId};
use hermes_core::media::outbound::OutMedia;
use hermes_store::{Db, crash};
use tokio::sync::Notify;

use crate::{Messenger, SendError};

const GIVE_UP_AFTER: i64 = 8;
const BACKOFF: Backoff = Backoff { base: Duration::from_millis(500), cap: Duration::from_secs(60) };
/// Safety net: the outbox is looked at this often even without a wake-up.
const POLL: Duration = Duration::from_secs(5);
/// A send that takes longer is counted as failed and tried again (under the same id).
const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// Uploads of large files take longer than a message.
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(300);

pub(crate) async fn send_loop(
    db: Db,
    messenger: Arc<dyn Messenger>,
    wake: Arc<Notify>,
    gap: Duration,
    limits: Limits,
    service: Arc<crate::service::ServiceState>,
) {
    let mut connected = messenger.connected();
    let mut last_chat: Option<Jid> = None;
    let mut governor = Governor::new(limits);
    let start = tokio::time::Instant::now();
    // Whether the last pass held something back (to say so once, not for every message).
    let mut holding = false;
    loop {
        if !*connected.borrow_and_update() {
            last_chat = None;
            if connected.wait_for(|c| *c).await.is_err() {
                // The connection's owner is gone for good: nothing will ever be sent.
                return std::future::pending().await;
            }
        }
        let rows = match db.read(|s| s.unsent(64)) {
            Ok(rows) => rows,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the outbox");
                tokio::time::sleep(POLL).await;
                continue;
            }
        };
        if rows.is_empty() {
            tokio::select! {
                () = wake.notified() => {}
                _ = connected.changed() => {}
                () = tokio::time::sleep(POLL) => {}
            }
            continue;
        }
        // Chats held back in this pass: their later rows wait too (a chat's order is kept), the
        // other chats go on.
        let mut held: Vec<Jid> = Vec::new();
        let mut soonest: Option<Duration> = None;
        let mut sent_any = false;
        for row in rows {
            if held.contains(&row.chat) {
                continue;
            }
            if let Err((limit, wait)) = governor.admit(&row.chat.to_string(), start.elapsed().as_secs_f64()) {
                service
                    .metrics
                    .sends_held
                    .get_or_create(&crate::metrics::Kind { kind: limit.as_str().to_owned() })
                    .inc();
                if !holding {
                    let l = governor.limits();
                    tracing::info!(
                        limit = limit.as_str(),
                        wait_ms = wait.as_millis() as u64,
                        "holding messages back to stay within WhatsApp's pace ({} a minute per chat, {} in all); \
                         they wait in the outbox",
                        l.chat_per_minute,
                        l.account_per_minute
                    );
                }
                held.push(row.chat.clone());
                soonest = Some(soonest.map_or(wait, |s| s.min(wait)));
                continue;
            }
            sent_any = true;
            if row.media_unreadable {
                let seq = row.seq;
                tracing::error!(
                    "an outbox row names a file whose reference cannot be read; it is given up, not sent as text"
                );
                let _ = db.call(move |s| s.abandon(seq, "unreadable file reference")).await;
                continue;
            }
            if row.part > 0 && last_chat.as_ref() == Some(&row.chat) {
                tokio::time::sleep(gap).await;
            }
            let sent = match &row.media {
                None => tokio::time::timeout(SEND_TIMEOUT, messenger.send_text(&row.chat, &row.text, &row.id)).await,
                Some(media) => send_file(&db, &*messenger, row.seq, &row.chat, media, &row.id).await,
            };
            let sent = sent.unwrap_or_else(|_| Err(SendError::Failed("no answer from WhatsApp in time".to_owned())));
            match sent {
                Ok(()) => {
                    crash::point("sent");
                    service.metrics.sent.inc();
                    let seq = row.seq;
                    if let Err(e) = db.call(move |s| s.mark_sent(seq, hermes_store::clock::now())).await {
                        // Sent but not marked: it will be sent again under the same id,
                        // which the recipient sees as the same message.
                        tracing::error!(error = %e, "cannot mark a sent message");
                    }
                    tracing::debug!(parts = 1, "reply sent");
                    last_chat = Some(row.chat);
                }
                Err(SendError::NotConnected) => break,
                Err(e) => {
                    service.metrics.send_failures.inc();
                    let (seq, why) = (row.seq, e.to_string());
                    let attempts = row.attempts + 1;
                    if attempts >= GIVE_UP_AFTER {
                        tracing::error!(error = %why, attempts, "giving up on a reply WhatsApp keeps refusing");
                        let _ = db.call(move |s| s.abandon(seq, &why)).await;
                        continue;
                    }
                    tracing::warn!(error = %why, attempts, "a reply was not sent; retrying");
                    let _ = db.call(move |s| s.send_failed(seq, &why)).await;
                    let failures = u32::try_from(attempts - 1).unwrap_or(u32::MAX);
                    tokio::time::sleep(BACKOFF.delay(failures, rand::random::<f64>())).await;
                    break;
                }
            }
        }
        holding = soonest.is_some();
        if let (false, Some(wait)) = (sent_any, soonest) {
            // A new reply (maybe to a chat not held) is looked at at once.
            tokio::select! {
                () = tokio::time::sleep(hermes_core::governor::jittered(wait, rand::random::<f64>())) => {}
                () = wake.notified() => {}
                _ = connected.changed() => {}
            }
        }
    }
}

/// Uploads a file once (the upload is kept with its row before the message is sent, so a
/// crash after it does not upload again), then sends the message under its chosen id.
async fn send_file(
    db: &Db,
    messenger: &dyn Messenger,
    seq: i64,
    chat: &Jid,
    media: &OutMedia,
    id: &MessageId,
) -> Result<Result<(), SendError>, tokio::time::error::Elapsed> {
    let mut media = media.clone();
    if media.uploaded.is_none() {
        let uploaded = match tokio::time::timeout(UPLOAD_TIMEOUT, messenger.upload(&media)).await? {
            Ok(u) => u,
            Err(e) => return Ok(Err(e)),
        };
        media.uploaded = Some(uploaded);
        let kept = media.clone();
        if let Err(e) = db.call(move |s| s.set_uploaded(seq, &kept)).await {
            // Not kept: after a crash it is uploaded again, which costs only bandwidth.
            tracing::warn!(error = %e, "cannot keep a file's upload with its outbox row");
        }
        crash::point("uploaded");
    }
    tokio::time::timeout(SEND_TIMEOUT, messenger.send_media(chat, &media, id)).await
}
