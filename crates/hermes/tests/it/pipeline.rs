//! The whole path, end to end: a contact on wa-sim writes, `hermes gateway` (the real binary)
//! journals, decides, asks a chat-completions server on 127.0.0.1 and answers; strangers are
//! dropped with a findable reason. Every message is answered once, across redeliveries,
//! commands, LLM failures and crashes at each step.

use hermes_agent::loopback::{Failure, LoopbackLlm};
use hermes_agent::{Message, Speaker};
use serde_json::Value;
use wa_sim::{Addressing, Fault, Sim, SimEvent};

use crate::gateway::{Gateway, T};
use crate::link::link_phone;
use crate::support::Home;

/// No outbound pacing (`.env` lines).
pub(crate) const UNPACED: &str = "WHATSAPP_SEND_PER_MINUTE=0\nWHATSAPP_CHAT_SEND_PER_MINUTE=0\n";

/// A linked gateway with a model on loopback and `env` in its `.env`.
pub(crate) struct Setup {
    pub(crate) sim: Sim,
    pub(crate) home: Home,
    pub(crate) llm: LoopbackLlm,
    pub(crate) gw: Option<Gateway>,
    account: String,
}

impl Setup {
    /// Bot mode, with `env` in `.env`.
    pub(crate) async fn new(account: &str, env: &str) -> Setup {
        Setup::with(account, &format!("WHATSAPP_MODE=bot\n{env}"), "").await
    }

    /// `.env` and extra `whatsapp:` settings for config.yaml as given.
    pub(crate) async fn with(account: &str, env: &str, whatsapp_yaml: &str) -> Setup {
        Setup::with_top(account, env, "", whatsapp_yaml).await
    }

    /// With top-level config.yaml blocks too; `{llm}` in them is the loopback server's URL.
    pub(crate) async fn with_top(account: &str, env: &str, top_yaml: &str, whatsapp_yaml: &str) -> Setup {
        let sim = Sim::start().await.expect("sim");
        sim.add_phone(account);
        let llm = LoopbackLlm::start(0).await.expect("llm");
        let top = top_yaml.replace("{llm}", &llm.base_url());
        // Backlogs and storms answer one contact many times a minute: not a reply loop here.
        let unlooped = if whatsapp_yaml.contains("loop_turns") { "" } else { "  loop_turns: 0\n" };
        let yaml = format!(
            "model:\n  default: test-model\n  base_url: {}\n{top}whatsapp:\n{whatsapp_yaml}{unlooped}",
            llm.base_url()
        );
        // The outbound governor paces a real account; these tests pace themselves (the
        // governor's own test sets its limits).
        let paced = if env.contains("SEND_PER_MINUTE") { String::new() } else { UNPACED.to_owned() };
        let home = Home::new().with_env(&format!("{env}\n{paced}")).with_yaml(&yaml);
        link_phone(&home, &sim, account);
        let mut s = Setup { sim, home, llm, gw: None, account: account.to_owned() };
        s.start(&[]);
        s
    }

    /// A gateway started without a session (bot mode, `env` in `.env`): it waits for a link.
    pub(crate) async fn unlinked(account: &str, env: &str) -> Setup {
        let sim = Sim::start().await.expect("sim");
        sim.add_phone(account);
        let llm = LoopbackLlm::start(0).await.expect("llm");
        let yaml = format!("model:\n  default: test-model\n  base_url: {}\n", llm.base_url());
        let home = Home::new().with_env(&format!("WHATSAPP_MODE=bot\n{env}")).with_yaml(&yaml);
        let gw = Gateway::start(&home, &sim);
        gw.wait_state("not_linked");
        Setup { sim, home, llm, gw: Some(gw), account: account.to_owned() }
    }

    pub(crate) fn start(&mut self, env: &[(&str, &str)]) {
        let gw = Gateway::start_with(&self.home, &self.sim, env);
        gw.wait_state("connected");
        self.gw = Some(gw);
    }

    pub(crate) fn gw(&self) -> &Gateway {
        self.gw.as_ref().expect("running")
    }

    pub(crate) fn contact(&self, phone: &str) {
        self.sim.add_phone(phone);
    }

    pub(crate) async fn say(&self, from: &str, text: &str) -> String {
        self.sim.send_text(from, &self.account, text, false).await.expect("send")
    }

    /// Waits for the next message `contact` receives after `cursor`; returns its text.
    pub(crate) async fn reply(&self, cursor: usize, contact: &str) -> String {
        match self
            .sim
            .wait_for(cursor, T, |e| matches!(e, SimEvent::MessageReceived { contact: c, .. } if c == contact))
            .await
        {
            Ok(SimEvent::MessageReceived { text, .. }) => text,
            other => panic!(
                "no reply for {contact}: {other:?}\ngateway log: {:#?}",
                self.gw.as_ref().map(Gateway::drain_log)
            ),
        }
    }

    /// Waits for a message to `contact` after `cursor` that contains `needle`.
    pub(crate) async fn reply_containing(&self, cursor: usize, contact: &str, needle: &str) -> String {
        let found = self
            .sim
            .wait_for(cursor, T, |e| {
                matches!(e, SimEvent::MessageReceived { contact: c, text, .. } if c == contact && text.contains(needle))
            })
            .await;
        match found {
            Ok(SimEvent::MessageReceived { text, .. }) => text,
            other => panic!("no reply with '{needle}' for {contact}: {other:?}"),
        }
    }

    /// Stops the gateway with SIGTERM and waits for it.
    pub(crate) fn stop(&mut self) {
        let gw = self.gw.take().expect("running");
        gw.terminate();
        let (code, log) = gw.exit();
        assert_eq!(code, 0, "{log}");
    }

    /// Says `text` and waits for the answer.
    pub(crate) async fn ask(&self, from: &str, text: &str) -> String {
        let cursor = self.sim.cursor();
        self.say(from, text).await;
        self.reply(cursor, from).await
    }

    pub(crate) fn replies(&self, contact: &str) -> Vec<String> {
        self.sim.inbox(contact).into_iter().map(|(_, _, text)| text).collect()
    }

    /// Waits until `drops` lists `n` drops of `sender`; returns that sender's entry.
    pub(crate) fn wait_drops(&self, sender: &str, n: u64) -> Value {
        let deadline = std::time::Instant::now() + T;
        loop {
            let drops = self.json(&["whatsapp", "drops", "--json"]);
            let entry = drops["senders"].as_array().and_then(|s| s.iter().find(|e| e["sender"] == sender).cloned());
            if let Some(e) = entry.filter(|e| e["count"].as_u64() >= Some(n)) {
                return e;
            }
            assert!(std::time::Instant::now() < deadline, "no {n} drops of {sender}: {drops}");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    pub(crate) fn json(&self, args: &[&str]) -> Value {
        let run = self.home.run(args);
        serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("JSON ({e}): {run:?}"))
    }
}

const ACCOUNT: &str = "15550001000";
const FRIEND: &str = "4915100001111";
const STRANGER: &str = "4915100002222";

fn user_texts(request: &[Message]) -> Vec<&str> {
    request.iter().filter(|m| m.role == Speaker::User).map(|m| m.content.as_str()).collect()
}

/// Issue 14 (first slice): a message without text was dropped at debug level, unanswered and
/// untraced. A location, a photo, a contact card now reach the agent in Hermes' words.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_14_a_location_or_a_photo_is_answered_not_ignored() {
    use waproto::whatsapp as wa;
    let s = Setup::new(ACCOUNT, &format!("WHATSAPP_ALLOWED_USERS={FRIEND}\n")).await;
    s.contact(FRIEND);
    let location = wa::Message {
        location_message: buffa::MessageField::some(wa::message::LocationMessage {
            degrees_latitude: Some(48.8584),
            degrees_longitude: Some(2.2945),
            name: Some("Eiffel Tower".into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let cursor = s.sim.cursor();
    s.sim.send_message(FRIEND, ACCOUNT, location).await.expect("send");
    let answer = s.reply(cursor, FRIEND).await;
    assert!(answer.contains("[Location: Eiffel Tower 48.8584,2.2945]"), "{answer}");
    let photo = wa::Message {
        image_message: buffa::MessageField::some(wa::message::ImageMessage {
            caption: Some("what is this?".into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let cursor = s.sim.cursor();
    s.sim.send_message(FRIEND, ACCOUNT, photo).await.expect("send");
    let answer = s.reply(cursor, FRIEND).await;
    assert!(answer.contains("[image received] what is this?"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allowed_contact_is_answered_and_a_stranger_is_dropped_with_the_fix() {
    let s = Setup::new(ACCOUNT, "WHATSAPP_ALLOWED_USERS=+49 151 0000 1111\n").await;
    s.contact(FRIEND);
    s.contact(STRANGER);

    let answer = s.ask(FRIEND, "hello agent").await;
    assert!(answer.contains("You wrote: \"hello agent\""), "{answer}");
    let status = s.json(&["whatsapp", "status", "--json"]);
    assert!(status["last_message_received"].as_i64().is_some_and(|t| t > 1_700_000_000), "{status}");
    let request = &s.llm.requests()[0];
    assert_eq!(request[0].role, Speaker::System, "a system prompt comes first");
    assert_eq!(user_texts(request), ["hello agent"]);

    s.say(STRANGER, "let me in").await;
    let log = s.gw().wait_log("message dropped");
    let warning = log.last().expect("a line");
    assert!(warning.contains(STRANGER) && warning.contains("WHATSAPP_ALLOWED_USERS="), "{warning}");

    let drops = s.json(&["whatsapp", "drops", "--json"]);
    let senders = drops["senders"].as_array().expect("senders");
    assert_eq!(senders.len(), 1, "{drops}");
    assert_eq!(senders[0]["sender"], format!("{STRANGER}@s.whatsapp.net"));
    assert_eq!(senders[0]["rules"][0], "not_allowlisted");
    let hint = senders[0]["hint"].as_str().expect("hint");
    assert!(hint.contains(&format!("WHATSAPP_ALLOWED_USERS={FRIEND},{STRANGER}")), "{hint}");
    let text = s.home.run(&["whatsapp", "drops"]);
    assert!(text.stdout.contains(&format!("details: hermes whatsapp explain {STRANGER}")), "{text:?}");

    // Replies are sent in order: once the friend's next answer is in, anything for the
    // stranger would have been too. There is none, and the model never saw the stranger.
    s.ask(FRIEND, "still there?").await;
    assert!(s.replies(STRANGER).is_empty(), "{:?}", s.replies(STRANGER));
    assert!(s.llm.requests().iter().all(|r| !user_texts(r).contains(&"let me in")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lid_sender_whose_phone_is_allowed_is_answered() {
    let s = Setup::new(ACCOUNT, &format!("WHATSAPP_ALLOWED_USERS={FRIEND}\n")).await;
    s.contact(FRIEND);
    let cursor = s.sim.cursor();
    s.sim.send_text(FRIEND, ACCOUNT, "from my LID", true).await.expect("send");
    let answer = s.reply(cursor, FRIEND).await;
    assert!(answer.contains("from my LID"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivery_storm_is_answered_once() {
    let s = Setup::new(ACCOUNT, &format!("WHATSAPP_ALLOWED_USERS={FRIEND}\n")).await;
    s.contact(FRIEND);
    let cursor = s.sim.cursor();
    let id = s.say(FRIEND, "only once please").await;
    s.reply(cursor, FRIEND).await;
    s.sim.inject(Fault::RedeliveryStorm { id, times: 10 }).expect("storm");
    s.ask(FRIEND, "and this one").await;
    assert_eq!(s.replies(FRIEND).len(), 2, "{:?}", s.replies(FRIEND));
    assert_eq!(s.llm.requests().len(), 2, "the model was asked once per message");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_is_kept_per_chat_and_reset_forgets_it() {
    let s = Setup::new(ACCOUNT, &format!("WHATSAPP_ALLOWED_USERS={FRIEND}\n")).await;
    s.contact(FRIEND);
    s.ask(FRIEND, "my colour is blue").await;
    s.ask(FRIEND, "what is my colour?").await;
    let second = &s.llm.requests()[1];
    assert_eq!(user_texts(second), ["my colour is blue", "what is my colour?"], "the agent sees the history");
    assert_eq!(second.iter().filter(|m| m.role == Speaker::Assistant).count(), 1);

    let reset = s.ask(FRIEND, "/reset").await;
    assert!(reset.contains("new conversation"), "{reset}");
    let help = s.ask(FRIEND, "/help").await;
    assert!(help.contains("/status"), "{help}");
    let status = s.ask(FRIEND, "/status").await;
    assert!(status.contains("WhatsApp link: connected") && status.contains("test-model"), "{status}");
    assert_eq!(s.llm.requests().len(), 2, "commands are answered by the gateway, not the model");

    s.ask(FRIEND, "who am I?").await;
    assert_eq!(user_texts(&s.llm.requests()[2]), ["who am I?"], "forgotten after /reset");
}

/// Issue 11: a 300 KB message went to the model whole, and the history had no size cap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_11_what_the_model_reads_is_bounded_and_says_when_it_was_cut() {
    let env =
        format!("WHATSAPP_ALLOWED_USERS={FRIEND}\nWHATSAPP_MAX_INPUT_CHARS=1000\nWHATSAPP_MAX_HISTORY_CHARS=1500\n");
    let s = Setup::new(ACCOUNT, &env).await;
    s.contact(FRIEND);
    s.ask(FRIEND, &"a".repeat(300_000)).await;
    let first = &s.llm.requests()[0];
    let text = user_texts(first)[0];
    assert!(text.starts_with(&"a".repeat(1000)) && !text.starts_with(&"a".repeat(1001)), "cut at the cap");
    assert!(
        text.ends_with("[The message was cut: only its first 1000 of 300000 characters are shown.]"),
        "{}",
        &text[1000..]
    );
    s.ask(FRIEND, &"b".repeat(900)).await;
    s.ask(FRIEND, "and now?").await;
    // History of 1,500 characters at most: the newest turns that fit, never the 300 KB one.
    let third = &s.llm.requests()[2];
    let history: usize = third[1..third.len() - 1].iter().map(|m| m.content.chars().count()).sum();
    assert!(history <= 1500, "history of {history} characters");
    assert!(user_texts(third).iter().all(|t| !t.starts_with("aaaa")), "the oldest turn went first");
    assert_eq!(user_texts(third).last(), Some(&"and now?"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_failures_are_retried_then_told_honestly() {
    let s = Setup::new(ACCOUNT, &format!("WHATSAPP_ALLOWED_USERS={FRIEND}\n")).await;
    s.contact(FRIEND);
    s.llm.fail_next(Failure::Status(500));
    s.llm.fail_next(Failure::Status(503));
    let answer = s.ask(FRIEND, "first").await;
    assert!(answer.contains("You wrote: \"first\""), "retried until it worked: {answer}");
    assert_eq!(s.llm.requests().len(), 3);

    for _ in 0..4 {
        s.llm.fail_next(Failure::Status(500));
    }
    let answer = s.ask(FRIEND, "second").await;
    assert!(answer.starts_with("Sorry, I can't answer right now"), "{answer}");
    assert_eq!(s.llm.requests().len(), 7, "four attempts, then the honest message");
    s.gw().wait_log("the model did not answer");

    let answer = s.ask(FRIEND, "third").await;
    assert!(answer.contains("You wrote: \"third\""), "{answer}");
    assert_eq!(s.replies(FRIEND).len(), 3, "one message per question, failures included");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_get_one_pairing_code_and_an_approval_admits_them_at_once() {
    // No allowlist: the pairing policy offers codes (Hermes' default).
    let s = Setup::new(ACCOUNT, "").await;
    s.contact(STRANGER);
    let message = s.ask(STRANGER, "hi, can I talk to the agent?").await;
    let code = message.split("pairing code: ").nth(1).and_then(|r| r.split_whitespace().next()).expect("a code");
    assert_eq!(code.len(), 8, "{message}");
    s.say(STRANGER, "hello?").await;
    let dropped = s.wait_drops(&format!("{STRANGER}@s.whatsapp.net"), 2);
    assert!(
        dropped["hint"].as_str().is_some_and(|h| h.contains("a pairing code was sent to this sender within the hour")),
        "{dropped}"
    );

    let list = s.json(&["pairing", "list", "--json"]);
    assert_eq!(list["pending"][0]["code"], code, "{list}");
    let bad = s.home.run(&["pairing", "approve", "whatsapp", "AAAAAAAA"]);
    assert_eq!(bad.code, 1, "{bad:?}");
    let ok = s.home.run(&["pairing", "approve", "whatsapp", &code.to_lowercase()]);
    assert_eq!(ok.code, 0, "{ok:?}");

    let answer = s.ask(STRANGER, "approved now?").await;
    assert!(answer.contains("You wrote: \"approved now?\""), "no restart needed: {answer}");
    assert_eq!(s.replies(STRANGER).len(), 2, "the code, then the answer: {:?}", s.replies(STRANGER));

    let revoke = s.home.run(&["pairing", "revoke", "whatsapp", STRANGER]);
    assert_eq!(revoke.code, 0, "{revoke:?}");
    s.say(STRANGER, "still there?").await;
    s.wait_drops(&format!("{STRANGER}@s.whatsapp.net"), 3);
    assert_eq!(s.llm.requests().len(), 1);
    assert_eq!(s.replies(STRANGER).len(), 2, "no second code within the hour");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hermes_send_reaches_the_home_channel() {
    let s = Setup::new(ACCOUNT, &format!("WHATSAPP_ALLOWED_USERS={FRIEND}\nWHATSAPP_HOME_CHANNEL={FRIEND}\n")).await;
    s.contact(FRIEND);
    let cursor = s.sim.cursor();
    let run = tokio::task::block_in_place(|| s.home.run(&["send", "the", "nightly", "report", "is", "ready"]));
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains(&format!("Sent to {FRIEND}@s.whatsapp.net")), "{run:?}");
    assert_eq!(s.reply(cursor, FRIEND).await, "the nightly report is ready");

    let stopped = Home::new().run(&["send", "hello"]);
    assert_eq!(stopped.code, 1, "{stopped:?}");
    assert!(stopped.stderr.contains("start it with `hermes gateway`"), "{stopped:?}");
}

/// The crash points, in the order a message passes them.
const CRASH_POINTS: [&str; 4] = ["journaled", "answered", "committed", "sent"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_at_any_step_loses_nothing_and_answers_once() {
    let mut s = Setup::new(ACCOUNT, &format!("WHATSAPP_ALLOWED_USERS={FRIEND}\n")).await;
    s.contact(FRIEND);
    s.stop();
    for round in 0..2 {
        for point in CRASH_POINTS {
            s.start(&[("HERMES_CRASH_AT", point)]);
            let text = format!("round {round} crash at {point}");
            s.say(FRIEND, &text).await;
            let (code, log) = s.gw.take().expect("running").exit();
            assert_eq!(code, -1, "killed at {point}: {log}");
            s.start(&[]);
            // The flush message is answered after the crashed one (one chat, in order).
            let cursor = s.sim.cursor();
            let flush = format!("flush {round} {point}");
            s.say(FRIEND, &flush).await;
            s.reply_containing(cursor, FRIEND, &flush).await;
            // (The two may be answered together: text sent within the debounce is one question.)
            let replies = s.replies(FRIEND);
            let answered = replies.iter().filter(|r| r.contains(&text)).count();
            assert_eq!(answered, 1, "crash at {point}: {replies:#?}");
            s.stop();
        }
    }
    let replies = s.replies(FRIEND);
    for round in 0..2 {
        for point in CRASH_POINTS {
            for text in [format!("round {round} crash at {point}"), format!("flush {round} {point}")] {
                let n = replies
                    .iter()
                    .filter(|r| r.contains(&format!("{text}\"")) || r.contains(&format!("{text}\n")))
                    .count();
                assert_eq!(n, 1, "'{text}' answered once: {replies:#?}");
            }
        }
    }
}

/// Issue 25, hole 6: the count of failed attempts was kept in memory and counted only
/// panics, so a message that aborted the process (an allocation refused, the OOM killer) was
/// tried again at every start, for ever, and nothing behind it was answered. Now the attempt is
/// counted in the journal before the work starts: after three aborts it is given up, with a
/// ledger row and a note to its sender, and every other message is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_that_aborts_the_gateway_is_given_up_after_three_and_the_rest_answered() {
    const OTHER: &str = "4915100003333";
    let mut s = Setup::new(ACCOUNT, &format!("WHATSAPP_ALLOWED_USERS={FRIEND},{OTHER}\n")).await;
    s.contact(FRIEND);
    s.contact(OTHER);
    s.stop();
    let poison = [("HERMES_CRASH_AT", "asking:POISON")];
    s.start(&poison);
    s.say(FRIEND, "a POISON pill").await;
    for abort in 1..=3 {
        let (code, log) = s.gw.take().expect("running").exit();
        assert_eq!(code, -1, "abort {abort}: the process died on the message: {log}");
        s.start(&poison);
    }
    // The fourth start gives it up (it never reaches the model again) and goes on.
    let cursor = s.sim.cursor();
    s.say(OTHER, "anyone there?").await;
    s.reply_containing(cursor, OTHER, "anyone there?").await;
    let told = s.reply_containing(cursor, FRIEND, "could not handle your last message").await;
    assert!(told.contains("send it again"), "{told}");
    let drops = s.wait_drops(&format!("{FRIEND}@s.whatsapp.net"), 1);
    assert!(drops.to_string().contains("failed"), "{drops}");
    assert!(drops.to_string().contains("ended the gateway 3 times"), "{drops}");
    // The sender is answered again afterwards, and was told once.
    s.say(FRIEND, "hello again").await;
    s.reply_containing(cursor, FRIEND, "hello again").await;
    let notes = s.replies(FRIEND).iter().filter(|r| r.contains("could not handle")).count();
    assert_eq!(notes, 1, "{:#?}", s.replies(FRIEND));
    assert!(s.llm.requests().iter().all(|r| !format!("{r:?}").contains("POISON")), "the model never saw it");
    s.stop();
}

/// Inbound stanzas (client to server) whose XML contains every one of `needles`.
fn stanzas(sim: &Sim, needles: &[&str]) -> usize {
    sim.events()
        .iter()
        .filter(|e| matches!(e, SimEvent::Stanza { inbound: true, xml, .. } if needles.iter().all(|n| xml.contains(n))))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quick_messages_are_one_question_with_typing_and_read_receipts() {
    let env =
        format!("WHATSAPP_MODE=bot\nWHATSAPP_ALLOWED_USERS={FRIEND},{STRANGER}\nWHATSAPP_SEND_READ_RECEIPTS=true\n");
    // The longest debounce there is, so that the two sends below surely fall inside it.
    let s = Setup::with(ACCOUNT, &env, "  text_batch_delay_seconds: 2\n").await;
    s.contact(FRIEND);
    let cursor = s.sim.cursor();
    let first = s.say(FRIEND, "first line").await;
    let second = s.say(FRIEND, "second line").await;
    let answer = s.reply(cursor, FRIEND).await;
    assert!(answer.contains("You wrote: \"first line\nsecond line\""), "one question: {answer}");
    assert_eq!(s.llm.requests().len(), 1);
    assert!(stanzas(&s.sim, &["<chatstate", "composing"]) >= 1, "typing was shown");
    assert!(stanzas(&s.sim, &["<chatstate", "paused"]) >= 1, "and stopped");
    for id in [&first, &second] {
        assert_eq!(stanzas(&s.sim, &["<receipt", "type=\"read\"", id.as_str()]), 1, "blue ticks for {id}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_chat_mode_answers_only_the_own_chat_with_the_prefix_and_never_itself() {
    // Self-chat mode and no allowlist: no one else is answered, and no one gets a code.
    let s = Setup::with(ACCOUNT, "WHATSAPP_MODE=self-chat\n", "").await;
    s.contact(FRIEND);
    let own_chat = format!("{ACCOUNT}@s.whatsapp.net");
    let cursor = s.sim.cursor();
    s.sim.send_from_phone(ACCOUNT, &own_chat, "note to self: buy milk").await.expect("note");
    let reply = s.reply(cursor, ACCOUNT).await;
    assert!(reply.starts_with("⚕ *Hermes Agent*\n────────────\n"), "{reply}");
    assert!(reply.contains("buy milk"), "{reply}");

    // A reply of ours synced back from the phone is not a question.
    s.sim.send_from_phone(ACCOUNT, &own_chat, &reply).await.expect("echo");
    s.say(FRIEND, "hello?").await;
    let dropped = s.wait_drops(&format!("{FRIEND}@s.whatsapp.net"), 1);
    assert_eq!(dropped["rules"][0], "self_chat_only", "{dropped}");
    let cursor = s.sim.cursor();
    s.sim.send_from_phone(ACCOUNT, &own_chat, "second note").await.expect("note");
    s.reply_containing(cursor, ACCOUNT, "second note").await;
    assert_eq!(s.llm.requests().len(), 2, "the notes, not the echo: {:?}", s.llm.requests());
    assert!(s.replies(FRIEND).is_empty(), "no pairing code in self-chat mode");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lid_sender_without_a_known_number_is_parked_and_answered_once_the_number_is_known() {
    let s = Setup::new(ACCOUNT, &format!("WHATSAPP_ALLOWED_USERS={FRIEND}\n")).await;
    let lid = format!("{}@lid", s.sim.add_phone(FRIEND).lid);
    s.sim.send_text_addressed(FRIEND, ACCOUNT, "who am I?", Addressing::LidOnly).await.expect("send");
    let parked = s.wait_drops(&lid, 1);
    assert_eq!(parked["rules"][0], "lid_without_phone", "{parked}");
    assert!(parked["hint"].as_str().is_some_and(|h| h.contains("decided again")), "{parked}");

    // The next message carries the number: the parked one is decided again, and both are
    // answered, in order.
    let cursor = s.sim.cursor();
    s.sim.send_text_addressed(FRIEND, ACCOUNT, "it is me", Addressing::Lid).await.expect("send");
    s.reply_containing(cursor, FRIEND, "it is me").await;
    let replies = s.replies(FRIEND);
    assert!(replies.iter().any(|r| r.contains("who am I?")), "{replies:?}");
    assert!(replies.iter().all(|r| r.contains("who am I?") || r.contains("it is me")), "{replies:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_group_only_messages_addressed_to_the_agent_from_allowed_senders_are_answered() {
    let env = format!(
        "WHATSAPP_MODE=bot\nWHATSAPP_ALLOWED_USERS={FRIEND}\nWHATSAPP_GROUP_POLICY=open\nWHATSAPP_REQUIRE_MENTION=true\n"
    );
    let s = Setup::with(ACCOUNT, &env, "").await;
    s.contact(FRIEND);
    s.contact(STRANGER);
    let group = s.sim.create_group("Team", &[FRIEND, ACCOUNT, STRANGER]).expect("group");

    // Chatter that does not address the agent: in the ledger, unanswered.
    s.sim.send_group_text(FRIEND, &group, "lunch at noon?").await.expect("send");
    let chatter = s.wait_drops(&format!("{FRIEND}@s.whatsapp.net"), 1);
    assert_eq!(chatter["rules"][0], "not_mentioned", "{chatter}");
    assert_eq!(chatter["chats"][0], group, "{chatter}");

    // Addressed to it: answered in the group (the mention stripped), seen by every member.
    let cursor = s.sim.cursor();
    s.sim.send_group_text(FRIEND, &group, &format!("@{ACCOUNT} what is 2+2?")).await.expect("send");
    let reply = s.reply_containing(cursor, FRIEND, "what is 2+2?").await;
    assert!(reply.contains("You wrote: \"what is 2+2?\""), "{reply}");
    s.reply_containing(cursor, STRANGER, "what is 2+2?").await;

    // A member the allowlist does not name is not answered, mention or not.
    s.sim.send_group_text(STRANGER, &group, &format!("@{ACCOUNT} me too")).await.expect("send");
    let refused = s.wait_drops(&format!("{STRANGER}@s.whatsapp.net"), 1);
    assert_eq!(refused["rules"][0], "not_allowlisted", "{refused}");
    assert_eq!(s.llm.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_from_many_chats_is_answered_exactly_once() {
    // No debounce: one answer per message, so that every message can be counted.
    let s =
        Setup::with(ACCOUNT, "WHATSAPP_MODE=bot\nWHATSAPP_ALLOWED_USERS=*\n", "  text_batch_delay_seconds: 0\n").await;
    let contacts: Vec<String> = (0..10).map(|i| format!("49151000030{i:02}")).collect();
    for c in &contacts {
        s.contact(c);
    }
    let mut s = s;
    s.stop();
    // Queued while the gateway is down, then delivered at once when it is back: the
    // dispatcher reads the journal while workers commit, the race this test keeps closed.
    let n = 200;
    for k in 0..n {
        s.sim.send_text(&contacts[k % 10], ACCOUNT, &format!("backlog {k}."), false).await.expect("send");
    }
    let cursor = s.sim.cursor();
    s.start(&[]);
    let answered = s
        .sim
        .wait_count(cursor, n, T, |e| matches!(e, SimEvent::MessageReceived { text, .. } if text.contains("backlog ")))
        .await;
    if let Err(e) = answered {
        let have = s.sim.events_since(cursor).iter().filter(|e| matches!(e, SimEvent::MessageReceived { .. })).count();
        panic!("{have} of {n} answered ({e}); gateway log: {:#?}", s.gw().drain_log());
    }
    // Everything sent so far has been answered; a final round trip flushes any extra answer.
    s.ask(&contacts[0], "flush").await;
    let mut counts = vec![0; n];
    for e in s.sim.events_since(cursor) {
        if let SimEvent::MessageReceived { text, .. } = e
            && let Some(k) =
                text.split("backlog ").nth(1).and_then(|r| r.split('.').next()).and_then(|k| k.parse::<usize>().ok())
        {
            counts[k] += 1;
        }
    }
    let wrong: Vec<(usize, i32)> = counts.iter().enumerate().filter(|(_, c)| **c != 1).map(|(k, c)| (k, *c)).collect();
    assert!(wrong.is_empty(), "messages not answered exactly once (message, answers): {wrong:?}");
    assert_eq!(s.llm.requests().len(), n + 1);
}

/// Issue 11: nothing was ever pruned; the gateway now prunes at start (and hourly) what is
/// older than WHATSAPP_RETENTION_DAYS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_11_the_gateway_prunes_what_is_older_than_the_retention() {
    let sim = Sim::start().await.expect("sim");
    sim.add_phone(ACCOUNT);
    let home = Home::new()
        .with_env(&format!("WHATSAPP_MODE=bot\nWHATSAPP_ALLOWED_USERS={FRIEND}\nWHATSAPP_RETENTION_DAYS=7\n"));
    link_phone(&home, &sim, ACCOUNT);
    let db = home.path.join("state").join("hermes.db");
    std::fs::create_dir_all(db.parent().expect("state")).expect("state dir");
    let now =
        i64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs())
            .expect("secs");
    {
        let mut store = hermes_store::Store::open(&db).expect("open");
        for (at, sender) in [(now - 30 * 86_400, "4915100000001@s.whatsapp.net"), (now, "4915100000002@s.whatsapp.net")]
        {
            let jid = hermes_core::identity::Jid::parse(sender).expect("a JID");
            let d = hermes_store::Dropped {
                at,
                chat: jid.clone(),
                sender: jid.clone(),
                sender_forms: vec![jid],
                rule: hermes_core::admission::DropRule::Access(hermes_core::access::Rule::NotAllowlisted),
                nearest: None,
                hint: None,
            };
            store.record_drop(None, &d).expect("drop");
        }
    }
    let gw = Gateway::start(&home, &sim);
    let lines = gw.wait_log("pruned what is older than the retention");
    assert!(lines.last().is_some_and(|l| l.contains("drops=1")), "{lines:#?}");
    let drops: Value =
        serde_json::from_str(&home.run(&["whatsapp", "drops", "--since", "3650d", "--json"]).stdout).expect("json");
    let senders: Vec<&str> =
        drops["senders"].as_array().expect("senders").iter().filter_map(|s| s["sender"].as_str()).collect();
    assert_eq!(senders, ["4915100000002@s.whatsapp.net"], "{drops}");
}

/// Issue 27: a reply shows the agent the message it quotes, found where hermes kept it (one of
/// the agent's replies, or the contact's own message), else in the copy WhatsApp embeds, else
/// said to be gone; never guessed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_shows_the_agent_the_message_it_quotes() {
    let s = Setup::new(ACCOUNT, &format!("WHATSAPP_ALLOWED_USERS={FRIEND}\n")).await;
    s.contact(FRIEND);
    let last_user = |s: &Setup| -> String {
        let asked = s.llm.requests().last().cloned().expect("asked");
        user_texts(&asked).last().map(|t| (*t).to_owned()).expect("a user message")
    };
    // One of the agent's own replies.
    let answer = s.ask(FRIEND, "what is the capital of France?").await;
    let ours = s.sim.inbox(FRIEND).last().map(|(_, id, _)| id.clone()).expect("our reply");
    quoting(&s, "are you sure?", &ours, None).await;
    let asked = last_user(&s);
    let expected = format!("[Replying to your previous message: \"{}", &answer[..40]);
    assert!(asked.starts_with(&expected), "{asked}");
    assert!(asked.ends_with("\"]\n\nare you sure?"), "{asked}");
    // The contact's own earlier message, from the journal (the copy is not what it said).
    let cursor = s.sim.cursor();
    let mine = s.say(FRIEND, "remember the number 42").await;
    s.reply_containing(cursor, FRIEND, "remember the number 42").await;
    quoting(&s, "which number?", &mine, Some("a copy that differs")).await;
    assert_eq!(last_user(&s), "[Replying to: \"remember the number 42\"]\n\nwhich number?");
    // A message hermes never had: the copy WhatsApp embeds.
    quoting(&s, "and this?", "3EB0OLDMESSAGE", Some("an old message")).await;
    assert_eq!(last_user(&s), "[Replying to: \"an old message\"]\n\nand this?");
    // Neither: said, not guessed.
    quoting(&s, "and that?", "3EB0GONE", None).await;
    assert_eq!(last_user(&s), "[Replying to a message that is no longer available]\n\nand that?");
}

/// `FRIEND` replies with `text`, quoting `quote` (with `copy` as the embedded copy); the answer.
async fn quoting(s: &Setup, text: &str, quote: &str, copy: Option<&str>) -> String {
    let cursor = s.sim.cursor();
    s.sim.send_reply(FRIEND, ACCOUNT, text, quote, copy).await.expect("reply");
    s.reply_containing(cursor, FRIEND, text).await
}

/// Issue 27: the owner writing in a contact's chat from the phone hands the chat to a person:
/// the agent stays out of it (what the contact writes meanwhile is kept, as a `paused` drop),
/// `/resume` from the phone or `hermes resume` gives it back, and `hermes pause` does the same
/// as the phone; the owner's words become part of the conversation the agent reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_owner_writing_in_a_chat_pauses_the_agent_there() {
    let s = Setup::new(ACCOUNT, &format!("WHATSAPP_ALLOWED_USERS={FRIEND}\n")).await;
    s.contact(FRIEND);
    let friend = format!("{FRIEND}@s.whatsapp.net");
    s.ask(FRIEND, "hello").await;
    s.sim.send_from_phone(ACCOUNT, &friend, "Hi, it's Sam himself: I'll take it from here").await.expect("owner");
    s.gw().wait_log("a person took this chat over");
    s.say(FRIEND, "can you help me?").await;
    let dropped = s.wait_drops(&friend, 1);
    assert_eq!(dropped["rules"][0], "paused", "{dropped}");
    assert!(dropped["hint"].as_str().is_some_and(|h| h.contains("/resume")), "{dropped}");
    let status = s.json(&["whatsapp", "status", "--json"]);
    assert_eq!(status["paused_chats"][0]["chat"], friend.as_str(), "{status}");
    assert_eq!(status["paused_chats"][0]["by"], "owner_message", "{status}");
    // The owner hands it back from the phone.
    s.sim.send_from_phone(ACCOUNT, &friend, "/resume").await.expect("owner");
    s.gw().wait_log("the chat is resumed");
    let back = s.ask(FRIEND, "are you back?").await;
    assert!(back.contains("are you back?"), "{back}");
    // What the owner said is part of the conversation; /resume is not; nothing was answered
    // while the chat was paused.
    let asked = s.llm.requests().last().cloned().expect("asked");
    let said: Vec<&str> = asked.iter().filter(|m| m.role == Speaker::Assistant).map(|m| m.content.as_str()).collect();
    assert!(said.contains(&"Hi, it's Sam himself: I'll take it from here"), "{said:?}");
    assert!(!user_texts(&asked).contains(&"can you help me?"), "{:?}", user_texts(&asked));
    assert!(s.replies(FRIEND).iter().all(|r| !r.contains("can you help me?")));
    // `hermes pause` and `hermes resume` on the command line.
    let run = s.home.run(&["pause", FRIEND]);
    assert_eq!(run.code, 0, "{run:?}");
    s.say(FRIEND, "paused by hand?").await;
    s.wait_drops(&friend, 2);
    let run = s.home.run(&["resume", FRIEND]);
    assert!(run.code == 0 && run.stdout.contains("answers there again"), "{run:?}");
    let back = s.ask(FRIEND, "and now?").await;
    assert!(back.contains("and now?"), "{back}");
}

/// Issue 27: the first-contact rule: `hermes send` does not start a conversation with a number
/// that never wrote to the account and that no allowlist names (WhatsApp takes that for
/// spam); once it has written, it may be written to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hermes_send_does_not_write_first_to_a_stranger() {
    let s = Setup::new(ACCOUNT, "WHATSAPP_DM_POLICY=open\nWHATSAPP_ALLOW_ALL_USERS=true\n").await;
    s.contact(STRANGER);
    let refused =
        tokio::task::block_in_place(|| s.home.run(&["send", "--to", &format!("whatsapp:{STRANGER}"), "hello"]));
    assert_ne!(refused.code, 0, "{refused:?}");
    assert!(
        refused.stderr.contains("never wrote to this account") && refused.stderr.contains("WHATSAPP_ALLOWED_USERS"),
        "{refused:?}"
    );
    assert!(s.replies(STRANGER).is_empty());
    // Once they wrote (and were answered: the wildcard lets everyone in), they may be written to.
    s.ask(STRANGER, "hi there").await;
    let cursor = s.sim.cursor();
    let run =
        tokio::task::block_in_place(|| s.home.run(&["send", "--to", &format!("whatsapp:{STRANGER}"), "a follow-up"]));
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(s.reply(cursor, STRANGER).await, "a follow-up");
}

/// Issue 27: the outbound governor paces a chat that goes faster than its limit: the replies
/// over the burst wait in the outbox (said once in the log), and all arrive, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_over_a_chats_pace_wait_and_all_arrive() {
    // Six a minute to one chat: three at once, then one every ten seconds.
    let s = Setup::new(
        ACCOUNT,
        &format!("WHATSAPP_ALLOWED_USERS={FRIEND}\nWHATSAPP_CHAT_SEND_PER_MINUTE=6\nWHATSAPP_SEND_PER_MINUTE=0\n"),
    )
    .await;
    s.contact(FRIEND);
    let started = std::time::Instant::now();
    for i in 0..4 {
        let answer = s.ask(FRIEND, &format!("question {i}")).await;
        assert!(answer.contains(&format!("question {i}")), "{answer}");
    }
    assert!(started.elapsed() >= std::time::Duration::from_secs(8), "the fourth was held: {:?}", started.elapsed());
    s.gw().wait_log("holding messages back to stay within WhatsApp's pace");
}

/// Issue 27: `hermes history export` prints a chat's record from the journal (what arrived,
/// what was sent, what was dropped and why), read-only, as JSON lines or text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_export_prints_a_chats_record() {
    let s = Setup::new(ACCOUNT, &format!("WHATSAPP_ALLOWED_USERS={FRIEND}\n")).await;
    s.contact(FRIEND);
    s.contact(STRANGER);
    let answer = s.ask(FRIEND, "remember the milk").await;
    s.say(STRANGER, "let me in").await;
    s.wait_drops(&format!("{STRANGER}@s.whatsapp.net"), 1);
    let run = s.home.run(&["history", "export", "--chat", FRIEND]);
    assert_eq!(run.code, 0, "{run:?}");
    let lines: Vec<Value> = run.stdout.lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect();
    let kinds: Vec<(&str, &str)> =
        lines.iter().map(|l| (l["kind"].as_str().unwrap_or(""), l["text"].as_str().unwrap_or(""))).collect();
    assert_eq!(kinds, [("received", "remember the milk"), ("sent", answer.as_str())], "{}", run.stdout);
    assert!(lines.iter().all(|l| l["chat"] == format!("{FRIEND}@s.whatsapp.net")));
    // Every chat: the stranger's drop is there, with its rule.
    let all = s.home.run(&["history", "export", "--since", "1h", "--format", "txt"]);
    assert!(all.stdout.contains(&format!("{STRANGER}@s.whatsapp.net dropped")), "{}", all.stdout);
    assert!(all.stdout.contains("remember the milk"), "{}", all.stdout);
}

/// Issue 27: with `WHATSAPP_OBSERVE_UNMENTIONED_GROUP_MESSAGES`, group chatter that does not
/// address the agent is kept (never answered on its own) and the next turn that addresses it
/// carries it, attributed, once; a member the group refuses is not observed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_chatter_becomes_context_for_the_next_turn() {
    let other = "4915100004444";
    let env = format!(
        "WHATSAPP_MODE=bot\nWHATSAPP_ALLOWED_USERS={FRIEND},{other}\nWHATSAPP_GROUP_POLICY=open\n\
         WHATSAPP_REQUIRE_MENTION=true\nWHATSAPP_OBSERVE_UNMENTIONED_GROUP_MESSAGES=true\n"
    );
    let s = Setup::with(ACCOUNT, &env, "").await;
    for c in [FRIEND, other, STRANGER] {
        s.contact(c);
    }
    let group = s.sim.create_group("Team", &[FRIEND, ACCOUNT, other, STRANGER]).expect("group");
    s.sim.send_group_text(other, &group, "the meeting moved to 5pm").await.expect("send");
    s.sim.send_group_text(STRANGER, &group, "buy my stuff").await.expect("send");
    s.wait_drops(&format!("{STRANGER}@s.whatsapp.net"), 1);
    let cursor = s.sim.cursor();
    s.sim.send_group_text(FRIEND, &group, &format!("@{ACCOUNT} when is the meeting?")).await.expect("send");
    s.reply_containing(cursor, FRIEND, "when is the meeting?").await;
    let asked = s.llm.requests().last().cloned().expect("asked");
    let user = user_texts(&asked).last().map(|t| (*t).to_owned()).expect("user");
    assert_eq!(
        user,
        format!(
            "[Earlier in this group, not addressed to you (context only):]\n[+{other}] the meeting moved to 5pm\n\nwhen is the meeting?"
        )
    );
    assert_eq!(s.llm.requests().len(), 1, "chatter is never answered on its own");
    // The next turn carries only what came after this one.
    s.sim.send_group_text(other, &group, "and bring snacks").await.expect("send");
    let cursor = s.sim.cursor();
    s.sim.send_group_text(FRIEND, &group, &format!("@{ACCOUNT} anything else?")).await.expect("send");
    s.reply_containing(cursor, FRIEND, "anything else?").await;
    let asked = s.llm.requests().last().cloned().expect("asked");
    let user = user_texts(&asked).last().map(|t| (*t).to_owned()).expect("user");
    assert!(user.contains(&format!("[+{other}] and bring snacks")) && !user.contains("5pm"), "{user}");
}
