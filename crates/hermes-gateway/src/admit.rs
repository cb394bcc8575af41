//! Carrying out admission: read what is known about the sender (one store call, and the
//! client for a LID's number), let `hermes_core::admission` decide, write the outcome (one
//! store call), log what a person may need to act on.

use std::time::Duration;

use hermes_core::admission::{self, Admission, DropRule, Refusal};
use hermes_core::command::Command;
use hermes_core::identity::{Jid, Server, UserId};
use hermes_core::pairing;
use hermes_store::{Code, Dropped, Inbound, Offered, Outcome, Settlement, StoreError};

use crate::worker::Shared;

/// How long a warning about one sender stays quiet after it was logged.
const WARN_EVERY: Duration = Duration::from_secs(600);

/// What a worker does with an admitted message.
pub(crate) enum Admitted {
    Text(String),
    Command(Command),
    /// Its text is gone (see `Inbound::unreadable`): the sender is asked to resend it.
    Unreadable,
}

/// Decides one message: `Some` when the agent (or a command) should answer it; `None` when
/// it is handled already (dropped with a ledger row, parked, or not for anyone).
pub(crate) async fn admit(shared: &Shared, seq: i64, row: &Inbound) -> Result<Option<Admitted>, StoreError> {
    let now = hermes_store::clock::now();
    let facts = shared.db.read(|s| s.facts(row, now - pairing::CODE_TTL_SECS))?;
    let mut aliases: Vec<Jid> = row.sender_alt.iter().chain(&facts.alias).cloned().collect();
    // A LID whose number the journal does not know yet: the client may know it. Asked only
    // for a message someone may answer (not a receipt, a reaction or our own echo).
    let mut learned = None;
    let says_something = row.text.as_deref().is_some_and(|t| !t.trim().is_empty()) && !facts.ours;
    if aliases.is_empty()
        && says_something
        && *row.sender.server() == Server::Lid
        && let Some(phone) = shared.messenger.phone_of(&row.sender).await
    {
        learned = Some((row.sender.to_non_device(), phone.clone()));
        aliases.push(phone);
    }
    let alias_ids: Vec<UserId> = aliases.iter().filter_map(Jid::user_id).collect();
    let approvals: Vec<UserId> = facts.approved();
    let offers: Vec<pairing::Pending> = facts.pending_offers();
    let own = shared.messenger.account();
    let live = shared.live();
    // Counted only when the reply-loop breaker is on: it is a read on every message's path.
    let loop_limit = live.config.loop_limit();
    let recent_answers = if loop_limit.turns == 0 {
        0
    } else {
        let window = i64::from(loop_limit.minutes).saturating_mul(60);
        shared.db.read(|s| s.answers_since(&row.chat, now - window))?
    };
    let message = admission::Inbound {
        chat: &row.chat,
        sender: &row.sender,
        text: row.text.as_deref(),
        from_me: row.from_me,
        mentions: &row.mentions,
        quoted: row.quoted.as_ref(),
        unreadable: row.unreadable,
    };
    let known = admission::Known {
        config: &live.config,
        own: own.as_ref(),
        aliases: &alias_ids,
        approvals: &approvals,
        ours: facts.ours,
        offers: &offers,
        pause: facts.pause.as_ref(),
        recent_answers,
        now,
        random: rand::random(),
    };
    let decided = admission::admit(&message, &known);
    let dropped = |r: &Refusal| Dropped {
        at: now,
        chat: row.chat.clone(),
        sender: row.sender.clone(),
        sender_forms: std::iter::once(row.sender.clone()).chain(alias_ids.iter().map(UserId::to_jid)).collect(),
        rule: r.rule,
        nearest: r.nearest.clone(),
        hint: Some(r.hint.clone()),
    };
    // Logged once the outcome is written: whoever reads the warning finds the drop.
    // The refusal, and what the warning says instead of its hint (a pairing code stays out).
    let mut log: Option<(Refusal, Option<&str>)> = None;
    let (outcome, admitted) = match decided {
        Admission::Ignore => {
            tracing::debug!("journaled message without text for the agent");
            (Outcome::Ignored, None)
        }
        Admission::Answer { text, mark_read } => {
            read_receipt(shared, row, mark_read).await;
            (Outcome::Admitted, Some(Admitted::Text(text)))
        }
        Admission::Command { command, mark_read } => {
            read_receipt(shared, row, mark_read).await;
            (Outcome::Admitted, Some(Admitted::Command(command)))
        }
        Admission::Unreadable { mark_read } => {
            read_receipt(shared, row, mark_read).await;
            (Outcome::Admitted, Some(Admitted::Unreadable))
        }
        Admission::Drop(r) => {
            let outcome = Outcome::Dropped(dropped(&r));
            log = Some((r, None));
            (outcome, None)
        }
        Admission::Park(r) => {
            let outcome = Outcome::Parked(dropped(&r));
            log = Some((r, None));
            (outcome, None)
        }
        Admission::Pause { until, by } => {
            use hermes_core::handoff::PausedBy;
            let pause = hermes_core::handoff::Pause { since: now, until, by };
            let dropped = (by == PausedBy::LoopBreaker).then(|| {
                let r = Refusal { rule: DropRule::Paused, hint: pause.hint(), nearest: None, warn: true };
                tracing::error!(
                    chat = %row.chat,
                    "reply loop: the agent answered here more often than a person writes; the chat is paused \
                     (`hermes resume CHAT`, or /resume from the phone, to go on)"
                );
                shared.service.metrics.drop(r.rule.as_str());
                dropped(&r)
            });
            match (by, until) {
                (PausedBy::LoopBreaker, _) => {}
                (_, Some(t)) => tracing::info!(
                    chat = %row.chat,
                    until = t,
                    "a person took this chat over; the agent stays out of it until then"
                ),
                (_, None) => tracing::info!(chat = %row.chat, "the chat is paused until /resume"),
            }
            // The owner's own words are the conversation too; a /pause is not.
            let said = (by == PausedBy::OwnerMessage).then(|| row.text.clone()).flatten();
            (Outcome::HandedOff { pause, said, dropped }, None)
        }
        Admission::Observe => {
            tracing::debug!("group chatter kept as context for the agent's next turn");
            (Outcome::Observed, None)
        }
        Admission::Resume => {
            tracing::info!(chat = %row.chat, "the chat is resumed: the agent answers in it again");
            (Outcome::Resumed, None)
        }
        Admission::OfferCode { code, message, refusal } => {
            // The code itself is for `hermes pairing list`, never for a log others may read.
            let says = "sent a pairing code; see it with `hermes pairing list`, admit with `hermes pairing approve whatsapp CODE`";
            let code =
                Code { code, sender: row.sender.clone(), chat: row.chat.clone(), created_at: now, approved_at: None };
            let message = (shared.messenger.new_message_id(), message);
            let outcome = Outcome::Offered(Box::new(Offered { code, dropped: dropped(&refusal), message }));
            log = Some((refusal, Some(says)));
            (outcome, None)
        }
    };
    let parked = matches!(outcome, Outcome::Parked(_));
    let offered = matches!(outcome, Outcome::Offered(_));
    if learned.is_some() || !matches!(outcome, Outcome::Admitted) {
        let settlement = Settlement { learned, outcome };
        shared.db.call(move |s| s.settle(seq, &settlement)).await?;
    }
    if let Some((refusal, says)) = &log {
        shared.service.metrics.drop(refusal.rule.as_str());
        log_refusal(shared, &row.sender, refusal, says.unwrap_or(&refusal.hint));
    }
    if parked {
        // A parked row comes back as waiting when its number is learned, maybe before any
        // journal read sees it parked: the dispatcher must be free to hand it out again.
        shared.release(&[seq]);
    }
    if offered {
        shared.outbox_wake.notify_one();
    }
    Ok(admitted)
}

async fn read_receipt(shared: &Shared, row: &Inbound, on: bool) {
    if on {
        shared.messenger.mark_read(&row.chat, &row.sender, std::slice::from_ref(&row.id)).await;
    }
}

/// A warning a person can act on, once per sender per ten minutes: enough to be found, not
/// enough to flood. Refusals nobody needs to act on stay at debug.
fn log_refusal(shared: &Shared, sender: &Jid, r: &Refusal, says: &str) {
    let rule = r.rule.as_str();
    if !r.warn {
        tracing::debug!(rule, "message not for the agent");
        return;
    }
    let now = std::time::Instant::now();
    let mut warned = shared.warned.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if warned.get(sender).is_some_and(|t| now.duration_since(*t) < WARN_EVERY) {
        return;
    }
    if warned.len() > 10_000 {
        warned.retain(|_, t| now.duration_since(*t) < WARN_EVERY);
    }
    warned.insert(sender.clone(), now);
    tracing::warn!(sender = %sender, rule, "message dropped: {says} (all drops: hermes whatsapp drops)");
}
