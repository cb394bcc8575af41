//! Answering through Hermes Agent's API server, exactly once.
//!
//! A turn is kept (its body and idempotency key, `hermes_store::NewTurn`) before it is sent,
//! and closed in the transaction that commits its answer. Whatever stops it in between (this
//! process killed, Hermes restarted, a timeout), the open turn is taken up again by the chat's
//! worker before anything else of the chat: its session's transcript is read first (an answer
//! already there is delivered, not asked for again), and otherwise the same body goes again
//! under the same key, which Hermes answers once while it remembers the key. One turn is open
//! per chat at a time; what arrives meanwhile waits in the worker and makes the next turn.

use std::sync::Arc;
use std::time::Duration;

use hermes_agent::hermes_api::{CallError, TurnAnswer, TurnRequest};
use hermes_agent::{AgentError, HermesApi, Message, Speaker};
use hermes_core::hermes_api::{self, Conversation, Recovered};
use hermes_core::identity::{Jid, Server};
use hermes_store::{NewTurn, Turn, TurnEnd, crash};

use crate::answer::{Answer, commit};
use crate::worker::{Batch, RETRY_AFTER_ERROR, Shared};
use crate::{HermesAgent, HermesSettings};

/// How long Hermes may stay unreachable (down, restarting) before the sender is told.
const UNREACHABLE_FOR: Duration = Duration::from_secs(10 * 60);
/// The longest wait between two tries.
const MAX_WAIT: Duration = Duration::from_secs(30);
/// WhatsApp drops "typing..." after about 25 seconds: it is said again before that.
const TYPING_EVERY: Duration = Duration::from_secs(20);
/// Taking up one turn again more often than this means it is what stops the process: it is
/// given up (its messages go on through the journal, where a poison message is given up too).
const MAX_RESUMES: u32 = crate::dispatch::MAX_FAILURES;

/// What the "still working" note says, once per turn.
pub(crate) const STILL_WORKING: &str = "Still working on it…";

/// Answers a batch through Hermes: the chat's open turn first, if one was left, then a new one.
pub(crate) async fn answer(shared: &Shared, batch: &Batch, hermes: &HermesSettings) {
    let chat = &batch.chat;
    match shared.db.read(|s| s.open_turn_of(chat)) {
        Ok(Some(turn)) => resume(shared, hermes, turn).await,
        Ok(None) => {}
        Err(e) => {
            tracing::error!(error = %e, "cannot read the chat's open turn; its messages will be tried again");
            tokio::time::sleep(RETRY_AFTER_ERROR).await;
            shared.retry_later(&batch.seqs).await;
            return;
        }
    }
    let Some((text, seqs)) = crate::answer::fresh(shared, batch).await else { return };
    let forms: Vec<&Jid> = batch.sender.iter().chain(batch.sender_alt.iter()).collect();
    let conversation = hermes_api::conversation(chat, &forms, hermes.per_user_in_groups);
    let phone = forms.iter().find(|j| *j.server() == Server::Phone).map(|j| j.user().to_owned());
    let group = chat.is_group().then(|| chat.to_non_device().to_string());
    let context =
        hermes_api::Context { phone: phone.as_deref(), group: group.as_deref(), per_user: hermes.per_user_in_groups };
    let cap = usize::try_from(shared.live().config.max_input_chars.value).unwrap_or(usize::MAX);
    let mut asked = hermes_core::budget::cap_message(&text, cap);
    if chat.is_group() && !hermes.per_user_in_groups {
        asked = format!("[{}] {asked}", phone.as_deref().map_or_else(|| "someone".to_owned(), |p| format!("+{p}")));
    }
    let body = HermesApi::turn_body(
        &hermes_api::system_context(&context),
        &Message::with_images(Speaker::User, &asked, batch.images.clone()),
    );
    let Some(turn) = open(shared, chat, &conversation, &asked, &body, &seqs).await else { return };
    run(shared, hermes, turn, false).await;
}

/// Keeps a new turn; `None` when its messages were handled meanwhile (or it cannot be kept:
/// then they are tried again later).
async fn open(
    shared: &Shared,
    chat: &Jid,
    conversation: &Conversation,
    asked: &str,
    body: &str,
    seqs: &[i64],
) -> Option<Turn> {
    let key = format!("hermes-wa-{}", shared.messenger.new_message_id().as_str());
    let (chat2, conv, asked2, body2, seqs2) =
        (chat.clone(), conversation.clone(), asked.to_owned(), body.to_owned(), seqs.to_vec());
    let opened = shared
        .db
        .call(move |s| {
            s.open_turn(&NewTurn {
                chat: &chat2,
                conversation: &conv.key,
                memory_key: &conv.memory_key,
                idempotency_key: &key,
                body: &body2,
                asked: &asked2,
                answers: &seqs2,
                at: hermes_store::clock::now(),
            })
        })
        .await;
    match opened {
        Ok(turn) => Some(turn),
        Err(hermes_store::StoreError::NotWaiting(_)) => None,
        Err(e) => {
            tracing::error!(error = %e, "cannot keep a turn for the agent; its messages will be tried again");
            tokio::time::sleep(RETRY_AFTER_ERROR).await;
            shared.retry_later(seqs).await;
            None
        }
    }
}

/// Takes up a turn a stopped process (or a passing shortage) left open.
async fn resume(shared: &Shared, hermes: &HermesSettings, turn: Turn) {
    let id = turn.id;
    let resumed = shared.db.call(move |s| s.resume_turn(id)).await.unwrap_or(u32::MAX);
    let waiting = shared.db.read(|s| s.current(&turn.answers)).map(|c| c.iter().all(|c| c.waiting)).unwrap_or(false);
    if resumed > MAX_RESUMES || !waiting {
        if waiting {
            tracing::error!(resumed, "gave up a turn of the agent that keeps ending the gateway");
        }
        let _ = shared.db.call(move |s| s.abandon_turn(id)).await;
        return;
    }
    tracing::info!(resumed, "taking up a turn of the agent left open (its transcript is read before asking again)");
    run(shared, hermes, turn, true).await;
}

/// Gets a turn's answer, typing shown meanwhile, and commits it with the turn.
async fn run(shared: &Shared, hermes: &HermesSettings, turn: Turn, resumed: bool) {
    let permit = shared.permits.acquire().await.expect("never closed");
    crash::point_for("asking", &turn.asked);
    let chat = turn.chat.clone();
    let keepalive = keep_alive(shared, hermes, &turn);
    let asked = tokio::time::Instant::now();
    let outcome = tokio::select! {
        o = ask(hermes.agent.as_ref(), &turn, resumed) => o,
        () = keepalive => unreachable!("keeps the chat company until the answer"),
    };
    shared.messenger.typing(&chat, false).await;
    shared.service.metrics.model_latency.observe(asked.elapsed().as_secs_f64());
    crash::point("answered");
    match outcome {
        Ok(answer) => {
            let (said, files) = crate::media::attachments(shared, &answer.content).await;
            let a = Answer {
                answers: &turn.answers,
                notices: &[],
                reply: &said,
                files: &files,
                exchange: Some((turn.asked.clone(), answer.content.clone())),
                turn: Some(TurnEnd::Answered { turn: turn.id, session_id: answer.session_id }),
            };
            commit(shared, &chat, a).await;
            // It may have scheduled a job: seen now, before a one-shot one runs and leaves the list.
            shared.turn_done.notify_one();
        }
        Err(Unanswered::Tell(e)) => {
            shared
                .service
                .metrics
                .model_errors
                .get_or_create(&crate::metrics::Kind { kind: e.kind().to_owned() })
                .inc();
            tracing::error!(error = %e, "Hermes Agent did not answer a turn; the sender is told");
            let a =
                Answer { turn: Some(TurnEnd::Failed { turn: turn.id }), ..Answer::said(&turn.answers, for_user(&e)) };
            commit(shared, &chat, a).await;
        }
        Err(Unanswered::Later(e)) => {
            // The turn stays open and is taken up again when its messages come back.
            tracing::warn!(error = %e, "cannot ask Hermes Agent now; the turn is taken up again later");
            drop(permit);
            tokio::time::sleep(RETRY_AFTER_ERROR).await;
            shared.retry_later(&turn.answers).await;
        }
    }
}

/// Typing shown for as long as the turn runs, and after `notice_after` one short note, once
/// per turn (kept with the turn, so a restart does not say it again). Never ends by itself.
async fn keep_alive(shared: &Shared, hermes: &HermesSettings, turn: &Turn) {
    let started = tokio::time::Instant::now();
    let mut noted = turn.noted;
    loop {
        shared.messenger.typing(&turn.chat, true).await;
        let next = started.elapsed() + TYPING_EVERY;
        let note_at = hermes.notice_after.filter(|_| !noted);
        match note_at {
            Some(at) if at <= next => {
                tokio::time::sleep_until(started + at).await;
                noted = true;
                let (id, chat) = (turn.id, turn.chat.clone());
                let note = (shared.messenger.new_message_id(), STILL_WORKING.to_owned());
                let queued = shared
                    .db
                    .call(move |s| s.note_turn(id, &chat, &note, hermes_store::clock::now()))
                    .await
                    .unwrap_or(false);
                if queued {
                    shared.outbox_wake.notify_one();
                }
            }
            _ => tokio::time::sleep_until(started + next).await,
        }
    }
}

/// Why a turn has no answer.
enum Unanswered {
    /// Said to the sender, once (the turn is closed as failed).
    Tell(AgentError),
    /// This machine could not ask: the turn stays open.
    Later(AgentError),
}

/// The turn's answer: from the transcript when a turn taken up again finished already, else
/// from sending it (again), riding out Hermes restarting and asking to wait.
async fn ask(agent: &dyn HermesAgent, turn: &Turn, resumed: bool) -> Result<TurnAnswer, Unanswered> {
    let request = TurnRequest {
        session_id: &turn.session_id,
        memory_key: &turn.memory_key,
        idempotency_key: &turn.idempotency_key,
        body: &turn.body,
    };
    let started = tokio::time::Instant::now();
    let mut look_first = resumed;
    let mut tries = 0_u32;
    loop {
        if look_first {
            match agent.transcript(&turn.session_id).await {
                Ok(rows) => match hermes_api::recover(&rows, &turn.asked, turn.opened_at as f64) {
                    Recovered::Answered(content) => {
                        tracing::info!("the turn's answer was in its transcript; delivered, not asked again");
                        return Ok(TurnAnswer { content, session_id: None });
                    }
                    Recovered::Begun => tracing::info!(
                        "the turn began and has no answer yet; sending it again under its idempotency key"
                    ),
                    Recovered::Absent => {}
                },
                Err(e) => tracing::debug!(error = %e.error, "cannot read the turn's transcript"),
            }
        }
        let CallError { error, retry_after } = match agent.turn(&request).await {
            Ok(answer) => return Ok(answer),
            Err(e) => e,
        };
        if error.is_local() {
            return Err(Unanswered::Later(error));
        }
        let (again, lost) = match &error {
            // Busy or draining: nothing ran; Hermes says when to come back.
            AgentError::Status { status: 429 | 503, .. } => (true, false),
            // Gone or too slow: the turn may have run, or be running.
            AgentError::Unreachable(_) | AgentError::Timeout(_) => (true, true),
            AgentError::Status { status: 502 | 504, .. } => (true, true),
            _ => (false, false),
        };
        if !again || started.elapsed() > UNREACHABLE_FOR {
            return Err(Unanswered::Tell(error));
        }
        tries += 1;
        let wait = retry_after.unwrap_or_else(|| {
            hermes_core::backoff::Backoff { base: Duration::from_millis(500), cap: MAX_WAIT }
                .delay(tries - 1, rand::random::<f64>())
        });
        tracing::warn!(tries, error = %error, wait_ms = wait.as_millis() as u64, "Hermes Agent did not answer; trying again");
        tokio::time::sleep(wait.min(MAX_WAIT)).await;
        look_first = lost;
    }
}

/// One short, honest sentence for the sender.
fn for_user(e: &AgentError) -> &'static str {
    match e {
        AgentError::Status { status: 401 | 403, .. } => {
            "Sorry, I can't answer right now: the agent refused this gateway's key. The owner has been told in the log."
        }
        AgentError::Timeout(_) | AgentError::Unreachable(_) | AgentError::Local(_) => {
            "Sorry, I can't answer right now: the agent is not reachable. Please try again later."
        }
        _ => "Sorry, I can't answer right now: the agent ran into an error. Please try again later.",
    }
}

/// `/new` and `/reset`: the conversation's next session (Hermes keeps the old transcript,
/// marked ended); the memory scope stays.
pub(crate) async fn new_session(shared: &Shared, hermes: &HermesSettings, row: &hermes_store::Inbound) -> String {
    let forms: Vec<&Jid> = std::iter::once(&row.sender).chain(row.sender_alt.iter()).collect();
    let conversation = hermes_api::conversation(&row.chat, &forms, hermes.per_user_in_groups);
    let chat = row.chat.clone();
    let key = conversation.key.clone();
    match shared.db.call(move |s| s.next_agent_session(&key, &chat, hermes_store::clock::now())).await {
        Ok((old, _)) => {
            let agent: Arc<dyn HermesAgent> = hermes.agent.clone();
            // Best effort, and not waited for: the next turn goes to the new session anyway.
            tokio::spawn(async move {
                if let Err(e) = agent.end_session(&old.session_id).await {
                    tracing::debug!(error = %e.error, "cannot mark the old session ended in Hermes");
                }
            });
            hermes_core::command::reset_done().to_owned()
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot start a new session of the agent");
            "Sorry, I could not start a new conversation; please try again.".to_owned()
        }
    }
}
