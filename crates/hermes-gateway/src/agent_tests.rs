//! The session bookkeeping of Hermes Agent turns, in-process: a fake API server that records
//! what each turn carried (headers and body), holds, fails or rotates on demand, and keeps a
//! transcript as Hermes does; tokio's paused clock.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use hermes_agent::AgentError;
use hermes_agent::hermes_api::{CallError, Job, TurnAnswer, TurnRequest};
use hermes_core::hermes_api::TranscriptRow;
use tokio::sync::watch;

use crate::tests::{ALICE, Harness, j};
use crate::{HermesAgent, HermesSettings};

/// One turn as the fake received it.
#[derive(Clone, Debug)]
struct Asked {
    session_id: String,
    memory_key: String,
    idempotency_key: String,
    body: String,
    /// The new user message's text.
    text: String,
}

#[derive(Default)]
struct FakeHermes {
    turns: Mutex<Vec<Asked>>,
    transcript: Mutex<Vec<(String, TranscriptRow)>>,
    transcript_reads: AtomicUsize,
    /// Calls that fail as if Hermes were down, before one goes through.
    unreachable: AtomicUsize,
    /// The next answer comes back under this session id (Hermes compressed the conversation).
    rotate_to: Mutex<Option<String>>,
    /// While true, turns wait.
    held: Mutex<Option<watch::Receiver<bool>>>,
}

impl FakeHermes {
    fn turns(&self) -> Vec<Asked> {
        self.turns.lock().expect("not poisoned").clone()
    }
}

fn user_text(body: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body).expect("a JSON body");
    let last = &v["messages"].as_array().expect("messages")[1];
    last["content"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| last["content"][0]["text"].as_str().unwrap_or_default().to_owned())
}

#[async_trait]
impl HermesAgent for FakeHermes {
    async fn turn(&self, t: &TurnRequest<'_>) -> Result<TurnAnswer, CallError> {
        let text = user_text(t.body);
        self.turns.lock().expect("not poisoned").push(Asked {
            session_id: t.session_id.to_owned(),
            memory_key: t.memory_key.to_owned(),
            idempotency_key: t.idempotency_key.to_owned(),
            body: t.body.to_owned(),
            text: text.clone(),
        });
        if self.unreachable.load(Ordering::SeqCst) > 0 {
            self.unreachable.fetch_sub(1, Ordering::SeqCst);
            return Err(AgentError::Unreachable("connection refused".into()).into());
        }
        let held = self.held.lock().expect("not poisoned").clone();
        if let Some(mut held) = held {
            let _ = held.wait_for(|h| !*h).await;
        }
        let answer = format!("re: {text}");
        let mut transcript = self.transcript.lock().expect("not poisoned");
        for (role, content) in [("user", text.as_str()), ("assistant", answer.as_str())] {
            transcript.push((
                t.session_id.to_owned(),
                TranscriptRow { role: role.into(), content: content.into(), timestamp: None },
            ));
        }
        let session_id = self.rotate_to.lock().expect("not poisoned").take().unwrap_or_else(|| t.session_id.to_owned());
        Ok(TurnAnswer { content: answer, session_id: Some(session_id) })
    }

    async fn transcript(&self, session_id: &str) -> Result<Vec<TranscriptRow>, CallError> {
        self.transcript_reads.fetch_add(1, Ordering::SeqCst);
        let rows = self.transcript.lock().expect("not poisoned");
        Ok(rows.iter().filter(|(s, _)| s == session_id).map(|(_, r)| r.clone()).collect())
    }

    async fn end_session(&self, _session_id: &str) -> Result<(), CallError> {
        Ok(())
    }

    async fn jobs(&self) -> Result<Vec<Job>, CallError> {
        Ok(Vec::new())
    }

    async fn cron_runs(&self) -> Result<Vec<String>, CallError> {
        Ok(Vec::new())
    }
}

fn settings(agent: Arc<FakeHermes>) -> HermesSettings {
    HermesSettings { agent, per_user_in_groups: true, notice_after: None, reminders_every: None }
}

#[tokio::test(start_paused = true)]
async fn messages_arriving_during_a_turn_join_the_next_and_a_rotated_session_is_adopted() {
    let hermes = Arc::new(FakeHermes::default());
    let (hold, held) = watch::channel(true);
    *hermes.held.lock().expect("not poisoned") = Some(held);
    *hermes.rotate_to.lock().expect("not poisoned") = Some("wa-compressed-1".into());
    let h = Harness::with_hermes("", settings(hermes.clone())).await;
    h.receive(ALICE, "A1", "first").await;
    // The first turn is running: what arrives now waits for it.
    tokio::time::timeout(Duration::from_secs(60), async {
        while hermes.turns().is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the first turn was sent");
    h.receive(ALICE, "A2", "second").await;
    h.receive(ALICE, "A3", "third").await;
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(hermes.turns().len(), 1, "one turn at a time per chat");
    hold.send_replace(false);
    let sent = h.messenger.wait_sent(2).await;
    assert_eq!(sent[0].text, "re: first");
    assert_eq!(sent[1].text, "re: second\nthird");
    let turns = hermes.turns();
    assert_eq!(turns.len(), 2);
    let first_id = hermes_core::hermes_api::session_id(ALICE, 1);
    assert_eq!(turns[0].session_id, first_id);
    assert_eq!(turns[1].session_id, "wa-compressed-1", "the rotated id is sent back");
    assert_eq!((turns[0].text.as_str(), turns[1].text.as_str()), ("first", "second\nthird"));
    assert!(turns.iter().all(|t| t.memory_key == "agent:main:whatsapp:dm:15551234567"));
    assert_ne!(turns[0].idempotency_key, turns[1].idempotency_key);
    // Only the new turn goes: the context and one user message.
    let body: serde_json::Value = serde_json::from_str(&turns[1].body).expect("JSON");
    assert_eq!(body["messages"].as_array().map(Vec::len), Some(2));
    assert_eq!(body["stream"], false);
    h.pipeline.stop().await;
}

#[tokio::test(start_paused = true)]
async fn new_starts_the_next_generation_with_the_same_memory_scope() {
    let hermes = Arc::new(FakeHermes::default());
    let h = Harness::with_hermes("", settings(hermes.clone())).await;
    h.receive(ALICE, "A1", "hi").await;
    h.messenger.wait_sent(1).await;
    h.receive(ALICE, "A2", "/new").await;
    assert!(h.messenger.wait_sent(2).await[1].text.contains("Started a new conversation"));
    h.receive(ALICE, "A3", "again").await;
    h.messenger.wait_sent(3).await;
    let turns = hermes.turns();
    assert_eq!(turns.len(), 2, "/new is hermes' own: {turns:?}");
    assert_eq!(turns[0].session_id, hermes_core::hermes_api::session_id(ALICE, 1));
    assert_eq!(turns[1].session_id, hermes_core::hermes_api::session_id(ALICE, 2));
    assert_eq!(turns[0].memory_key, turns[1].memory_key);
    // A command hermes does not know is the agent's (its skills have commands of their own).
    h.receive(ALICE, "A4", "/weather berlin").await;
    assert_eq!(h.messenger.wait_sent(4).await[3].text, "re: /weather berlin");
    h.pipeline.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_turn_that_got_no_answer_is_sent_again_unchanged_after_reading_the_transcript() {
    let hermes = Arc::new(FakeHermes::default());
    hermes.unreachable.store(3, Ordering::SeqCst);
    let h = Harness::with_hermes("", settings(hermes.clone())).await;
    h.receive(ALICE, "A1", "are you up?").await;
    let sent = h.messenger.wait_sent(1).await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].text, "re: are you up?");
    let turns = hermes.turns();
    assert_eq!(turns.len(), 4);
    assert!(turns.windows(2).all(|w| w[0].idempotency_key == w[1].idempotency_key && w[0].body == w[1].body));
    assert!(hermes.transcript_reads.load(Ordering::SeqCst) >= 3, "the transcript is read before each resend");
    h.pipeline.stop().await;
}

/// A turn left open by a process that died: its answer, already in the transcript, is
/// delivered, and the agent is not asked again.
#[tokio::test(start_paused = true)]
async fn an_answer_already_in_the_transcript_is_delivered_not_asked_for_again() {
    let hermes = Arc::new(FakeHermes::default());
    let session = hermes_core::hermes_api::session_id(ALICE, 1);
    for (role, content) in [("user", "what did you say?"), ("assistant", "I said hello.")] {
        hermes
            .transcript
            .lock()
            .expect("not poisoned")
            .push((session.clone(), TranscriptRow { role: role.into(), content: content.into(), timestamp: None }));
    }
    // As the dead process left it: the message journaled, its turn kept, Hermes answered.
    let h = Harness::with_hermes_after("", settings(hermes.clone()), move |s| {
        let mut m = crate::tests::inbound(ALICE, "A1", "what did you say?");
        m.timestamp = 1;
        s.journal(&[m])?;
        let pending = s.pending_count()?;
        assert_eq!(pending, 1);
        let chat = j(ALICE);
        s.open_turn(&hermes_store::NewTurn {
            chat: &chat,
            conversation: ALICE,
            memory_key: "agent:main:whatsapp:dm:15551234567",
            idempotency_key: "hermes-wa-dead",
            body: "{\"messages\":[{},{\"content\":\"what did you say?\"}]}",
            asked: "what did you say?",
            answers: &[1],
            at: 0,
        })?;
        Ok(())
    })
    .await;
    h.wake.notify_one();
    let sent = h.messenger.wait_sent(1).await;
    assert_eq!(sent[0].text, "I said hello.");
    assert!(hermes.turns().is_empty(), "not asked again: {:?}", hermes.turns());
    h.pipeline.stop().await;
}

/// A long turn: typing stays up, and after the notice delay one short note goes, never more.
#[tokio::test(start_paused = true)]
async fn a_long_turn_gets_one_still_working_note() {
    let hermes = Arc::new(FakeHermes::default());
    let (hold, held) = watch::channel(true);
    *hermes.held.lock().expect("not poisoned") = Some(held);
    let h = Harness::with_hermes(
        "",
        HermesSettings { notice_after: Some(Duration::from_secs(60)), ..settings(hermes.clone()) },
    )
    .await;
    h.receive(ALICE, "A1", "think hard").await;
    let note = h.messenger.wait_sent(1).await;
    assert_eq!(note[0].text, crate::agent_turn::STILL_WORKING);
    // Ten more minutes of work: no second note.
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert_eq!(h.messenger.sent().len(), 1);
    hold.send_replace(false);
    let sent = h.messenger.wait_sent(2).await;
    assert_eq!(sent[1].text, "re: think hard");
    h.pipeline.stop().await;
}
