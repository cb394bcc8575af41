//! Answering: the agent asked about a batch (or a command run), the reply formatted, chunked
//! and committed with the messages it answers.

use hermes_agent::{Message, Speaker};
use hermes_core::budget;
use hermes_core::command::{self, Command};
use hermes_core::config::Mode;
use hermes_core::format;
use hermes_core::identity::{Jid, MessageId};
use hermes_core::media::outbound::OutMedia;
use hermes_store::{Reply, Role, crash};

use crate::worker::{Batch, RETRY_AFTER_ERROR, Shared};

/// Asks the agent about a batch and commits the answer.
pub(crate) async fn answer(shared: &Shared, batch: &Batch) {
    if let Some(hermes) = shared.live().hermes.clone() {
        return crate::agent_turn::answer(shared, batch, &hermes).await;
    }
    let Some((text, seqs)) = fresh(shared, batch).await else { return };
    let chat = &batch.chat;
    let permit = shared.permits.acquire().await.expect("never closed");
    crash::point_for("asking", &text);
    shared.messenger.typing(chat, true).await;
    let outcome = match ask(shared, chat, &text, &batch.images).await {
        // A model that cannot look at images reads that one was sent instead, as in Hermes.
        Err(Unanswered::RefusedImages) => {
            tracing::warn!(
                "the model refused an image; asking again without it (agent.image_input_mode: text stops sending images)"
            );
            // A text batch whose images are quoted ones reads its own text without them.
            let without = if batch.without_images.is_empty() { &text } else { &batch.without_images };
            ask(shared, chat, without, &[]).await
        }
        other => other,
    };
    shared.messenger.typing(chat, false).await;
    crash::point("answered");
    let mut files = Vec::new();
    let (reply, exchange) = match outcome {
        Ok(answer) => {
            // Files the agent attached (`MEDIA:` lines) go after the text.
            let (said, attached) = crate::media::attachments(shared, &answer).await;
            files = attached;
            // A voice note is answered by voice too when it is on, as in Hermes (not when the
            // agent sent files of its own).
            if batch.spoken && files.is_empty() {
                files.extend(crate::media::spoken_reply(shared, &said).await);
            }
            (said, Some((text.clone(), answer)))
        }
        Err(Unanswered::Tell(why)) => (why, None),
        Err(Unanswered::RefusedImages) => (hermes_agent::AgentError::refused_images_reply().to_owned(), None),
        // Nothing is committed: the messages stay waiting and are asked about again, so a
        // passing shortage here never becomes a final "the model is not reachable".
        Err(Unanswered::Later) => {
            // Other chats may ask meanwhile.
            drop(permit);
            tokio::time::sleep(RETRY_AFTER_ERROR).await;
            shared.retry_later(&seqs).await;
            return;
        }
    };
    let a = Answer { answers: &seqs, notices: &batch.notices, reply: &reply, files: &files, exchange, turn: None };
    commit(shared, chat, a).await;
}

/// The batch as the journal has it now: messages deleted meanwhile left out, edits in, and an
/// edit whose text one of them took settled with it. `None` when nothing is left to answer.
pub(crate) async fn fresh(shared: &Shared, batch: &Batch) -> Option<(String, Vec<i64>)> {
    // Each text after the message it quotes, if it quotes one.
    let quoted =
        |i: usize, text: &str| hermes_core::quote::with_prefix(batch.quotes.get(i).and_then(Option::as_deref), text);
    // A group's context since the agent's last turn there goes first.
    let with_context = |text: String| hermes_core::quote::with_prefix(batch.context.as_deref(), &text);
    let as_read = || {
        let texts: Vec<String> = batch.texts.iter().enumerate().map(|(i, t)| quoted(i, t)).collect();
        Some((with_context(texts.join("\n")), batch.seqs.clone()))
    };
    if !batch.refresh {
        return as_read();
    }
    let now = match shared.db.read(|s| s.current(&batch.seqs)) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read a batch again before answering; answering it as first read");
            return as_read();
        }
    };
    let taken_by_batch = |seq: i64| now.iter().any(|t| t.waiting && t.absorbed_by == Some(seq));
    let mut seqs: Vec<i64> = now.iter().filter(|c| c.waiting).map(|c| c.seq).collect();
    let own = shared.messenger.account();
    let mut texts = Vec::new();
    for (i, seq) in batch.seqs.iter().enumerate() {
        let Some(c) = now.iter().find(|c| c.seq == *seq).filter(|c| c.waiting && !taken_by_batch(c.seq)) else {
            continue;
        };
        // Unchanged: what admission made of it; edited: the new text, made the same way.
        let text = if batch.raw.get(i) == Some(&c.text) {
            batch.texts.get(i).cloned()
        } else {
            c.text.as_deref().map(str::trim).filter(|t| !t.is_empty()).map(|t| {
                if batch.chat.is_group() {
                    hermes_core::mention::strip_own_mention(t, own.as_ref())
                } else {
                    t.to_owned()
                }
            })
        };
        texts.extend(text.map(|t| quoted(i, &t)));
    }
    // Edits taken by these messages that are not in the batch: settled with this answer.
    let extra: Vec<i64> =
        now.iter().filter(|c| c.waiting).filter_map(|c| c.absorbed_by).filter(|e| !seqs.contains(e)).collect();
    if !extra.is_empty()
        && let Ok(edits) = shared.db.read(|s| s.current(&extra))
    {
        seqs.extend(edits.iter().filter(|e| e.waiting).map(|e| e.seq));
    }
    if texts.is_empty() {
        // All deleted meanwhile, or edits of them: nothing to say.
        for seq in seqs {
            let settled = hermes_store::Settlement { learned: None, outcome: hermes_store::Outcome::Ignored };
            let _ = shared.db.call(move |s| s.settle(seq, &settled)).await;
        }
        return None;
    }
    Some((with_context(texts.join("\n")), seqs))
}

/// Why there is no answer from the agent.
enum Unanswered {
    /// The sentence the user gets instead (the log says why).
    Tell(String),
    /// This machine could not ask (out of descriptors, memory): try again later, tell no one.
    Later,
    /// The model does not take images (an HTTP 4xx naming them).
    RefusedImages,
}

/// The agent's answer, or why there is none.
async fn ask(shared: &Shared, chat: &Jid, text: &str, images: &[String]) -> Result<String, Unanswered> {
    let live = shared.live();
    let Some(model) = &live.model else {
        tracing::error!("no AI model is configured: set `model:` in config.yaml (and its API key in .env)");
        return Err(Unanswered::Tell(
            "Sorry, I can't answer: no AI model is configured for this gateway yet.".to_owned(),
        ));
    };
    let history = shared.db.read(|s| s.history(chat, shared.history_window)).unwrap_or_default();
    // Bounded input: one message, each turn of history, and the history as a whole.
    let cfg = &live.config;
    let cap = |t: &str| budget::cap_message(t, usize::try_from(cfg.max_input_chars.value).unwrap_or(usize::MAX));
    let history: Vec<(Role, String)> = history.into_iter().map(|(role, content)| (role, cap(&content))).collect();
    let sizes: Vec<usize> = history.iter().map(|(_, content)| content.chars().count()).collect();
    let fit = budget::history_fits(&sizes, usize::try_from(cfg.max_history_chars.value).unwrap_or(usize::MAX));
    let mut messages = vec![Message::new(Speaker::System, live.system_prompt.clone())];
    messages.extend(history.into_iter().skip(sizes.len() - fit).map(|(role, content)| {
        Message::new(if role == Role::User { Speaker::User } else { Speaker::Assistant }, content)
    }));
    messages.push(Message::with_images(Speaker::User, cap(text), images.to_vec()));
    let asked = tokio::time::Instant::now();
    let answer = model.complete(&messages).await;
    let metrics = &shared.service.metrics;
    metrics.model_latency.observe(asked.elapsed().as_secs_f64());
    answer.map_err(|e| {
        metrics.model_errors.get_or_create(&crate::metrics::Kind { kind: e.kind().to_owned() }).inc();
        if !images.is_empty() && e.refuses_images() {
            return Unanswered::RefusedImages;
        }
        if e.is_local() {
            tracing::warn!(error = %e, "cannot ask the model now; the messages wait and are asked about again");
            return Unanswered::Later;
        }
        tracing::error!(error = %e, "the model did not answer; the sender is told");
        Unanswered::Tell(e.for_user().to_owned())
    })
}

pub(crate) async fn run_command(shared: &Shared, seq: i64, row: &hermes_store::Inbound, cmd: Command) {
    let chat = &row.chat;
    let hermes = shared.live().hermes.clone();
    let reply = match cmd {
        Command::Reset if let Some(h) = &hermes => crate::agent_turn::new_session(shared, h, row).await,
        Command::Reset => {
            let c = chat.clone();
            match shared.db.call(move |s| s.forget(&c)).await {
                Ok(_) => command::reset_done().to_owned(),
                Err(e) => {
                    tracing::error!(error = %e, "cannot forget a chat's history");
                    "Sorry, I could not forget this conversation; please try again.".to_owned()
                }
            }
        }
        Command::Help => command::help().to_owned(),
        Command::Status => status(shared).await,
        Command::Unknown(name) => command::unknown(&name),
    };
    commit(shared, chat, Answer::said(&[seq], &reply)).await;
}

/// Answers a message with a fixed sentence, not the agent's.
pub(crate) async fn tell(shared: &Shared, seq: i64, chat: &Jid, text: &str) {
    commit(shared, chat, Answer::said(&[seq], text)).await;
}

async fn status(shared: &Shared) -> String {
    let (waiting, unsent) = shared.db.call(|s| Ok((s.pending_count()?, s.unsent_count()?))).await.unwrap_or((-1, -1));
    let link = if *shared.messenger.connected().borrow() { "connected" } else { "reconnecting" };
    format!(
        "WhatsApp link: {link}\nModel: {}\nQueue: {} message(s) waiting, {} reply part(s) to send",
        shared.live().model_label,
        waiting.saturating_sub(1).max(0),
        unsent
    )
}

/// A reply to commit with the messages it answers.
pub(crate) struct Answer<'a> {
    pub(crate) answers: &'a [i64],
    /// Sent before the reply.
    pub(crate) notices: &'a [String],
    pub(crate) reply: &'a str,
    pub(crate) files: &'a [OutMedia],
    /// What the user said and the agent answered, for the history.
    pub(crate) exchange: Option<(String, String)>,
    /// The agent's turn it closes.
    pub(crate) turn: Option<hermes_store::TurnEnd>,
}

impl<'a> Answer<'a> {
    /// A fixed sentence, not the agent's.
    pub(crate) fn said(answers: &'a [i64], reply: &'a str) -> Answer<'a> {
        Answer { answers, notices: &[], reply, files: &[], exchange: None, turn: None }
    }
}

/// Formats, chunks and commits a reply (after its notices) with the messages it answers.
pub(crate) async fn commit(shared: &Shared, chat: &Jid, a: Answer<'_>) {
    let Answer { answers, notices, reply, files, exchange, turn } = a;
    let live = shared.live();
    let prefix = match live.config.mode.value {
        Mode::SelfChat => live.config.reply_prefix.value.clone(),
        Mode::Bot => String::new(),
    };
    let formatted = format::to_whatsapp(reply);
    let messages: Vec<(MessageId, String)> = notices
        .iter()
        .flat_map(|n| format::chunk(n, format::budget(&prefix)))
        .chain(format::chunk(&formatted, format::budget(&prefix)))
        .map(|part| (shared.messenger.new_message_id(), format!("{prefix}{part}")))
        .collect();
    let files: Vec<(MessageId, OutMedia)> =
        files.iter().map(|f| (shared.messenger.new_message_id(), f.clone())).collect();
    let (c, seqs) = (chat.clone(), answers.to_vec());
    let open_turn = turn.as_ref().map(|t| t.turn());
    let result = shared
        .db
        .call(move |s| {
            let exchange = exchange.as_ref().map(|(u, a)| (u.as_str(), a.as_str()));
            let at = hermes_store::clock::now();
            s.commit_reply(&Reply { chat: &c, answers: &seqs, exchange, messages: &messages, files: &files, at, turn })
        })
        .await;
    match result {
        Ok(()) => {
            crash::point("committed");
            shared.service.metrics.answered.inc_by(answers.len() as u64);
            shared.outbox_wake.notify_one();
        }
        // One of the messages was settled meanwhile (answered by another handling, or deleted
        // by its sender while the agent was asked): this answer is not sent, and the others,
        // still waiting, are released to be asked about again.
        Err(hermes_store::StoreError::NotWaiting(seq)) => {
            tracing::warn!(seq, "an answer was not sent: one of its messages was settled meanwhile");
            // Its turn is not sent again: what is still waiting makes a turn of its own.
            if let Some(t) = open_turn {
                let _ = shared.db.call(move |s| s.abandon_turn(t)).await;
            }
            shared.retry_later(answers).await;
        }
        // Not committed: the messages are still waiting and will be asked about again.
        Err(e) => {
            tracing::error!(error = %e, "cannot commit a reply; it will be tried again");
            shared.retry_later(answers).await;
        }
    }
}
