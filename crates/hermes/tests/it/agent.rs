//! hermes in front of the real Hermes Agent: `hermes-agent` 0.19.0 from PyPI (pinned with
//! hashes in `.ci/hermes-agent/requirements.txt`, installed into a virtualenv once per test
//! run), its API server started by each test from the same `HERMES_HOME` as the gateway, on a
//! free loopback port with a generated key, and its model the loopback chat-completions server
//! (which streams, as Hermes asks it to). Contacts write through wa-sim; what the model is
//! asked shows what Hermes kept (history, sessions, images), and what the contacts receive
//! shows that every turn is answered once, whichever side is killed mid-turn.

use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use hermes_agent::Speaker;
use hermes_agent::loopback::real::{self, RealHermes};
use wa_sim::{Media, MediaKind};

use crate::gateway::T;
use crate::pipeline::Setup;

const ACCOUNT: &str = "15550007000";
const FRIEND: &str = "4915100007777";
const OTHER: &str = "4915100008888";

/// The virtualenv with Hermes Agent, made once per test run (and kept while the lock file is
/// unchanged).
fn venv() -> &'static Path {
    static MADE: OnceLock<Result<std::path::PathBuf, String>> = OnceLock::new();
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("hermes-agent-venv");
    match MADE.get_or_init(|| real::venv(&dir)) {
        Ok(dir) => dir,
        Err(e) => panic!(
            "cannot install Hermes Agent for these tests: {e}\n(they need Python 3.11 to 3.13 with its venv module, \
             e.g. apt-get install python3-venv, and PyPI)"
        ),
    }
}

fn start_hermes(home: &Path, port: u16) -> RealHermes {
    RealHermes::start(venv(), home, port, T).unwrap_or_else(|e| panic!("{e}"))
}

/// A linked gateway and Hermes Agent beside it, in one `HERMES_HOME`, the agent found from
/// Hermes' own `.env` lines (no hermes setting names it).
struct Both {
    s: Setup,
    agent: Option<RealHermes>,
    port: u16,
}

impl Both {
    async fn start() -> Both {
        let port = real::free_port();
        let key = format!("test-key-{:016x}", rand_u64());
        let env = format!(
            "WHATSAPP_ALLOWED_USERS={FRIEND},{OTHER}\nAPI_SERVER_ENABLED=true\nAPI_SERVER_KEY={key}\n\
             API_SERVER_HOST=127.0.0.1\nAPI_SERVER_PORT={port}\nWHATSAPP_ENABLED=false\n\
             WHATSAPP_REMINDERS_POLL_SECONDS=1\n"
        );
        let s = Setup::with_top(ACCOUNT, &format!("WHATSAPP_MODE=bot\n{env}"), real::QUIET_CONFIG, "").await;
        s.contact(FRIEND);
        s.contact(OTHER);
        // Hermes reads the model block too: the loopback server, as a custom provider that
        // takes images.
        let yaml_path = s.home.path.join("config.yaml");
        let yaml = std::fs::read_to_string(&yaml_path).expect("config.yaml");
        let yaml = yaml.replacen("model:\n", &format!("model:\n{}", real::MODEL_LINES), 1);
        std::fs::write(&yaml_path, yaml).expect("config.yaml");
        let agent = start_hermes(&s.home.path, port);
        Both { s, agent: Some(agent), port }
    }

    fn restart_agent(&mut self) {
        self.agent = Some(start_hermes(&self.s.home.path, self.port));
    }

    /// The user messages of the model's requests for WhatsApp turns (not Hermes' side calls).
    fn turns_asked(&self) -> Vec<Vec<String>> {
        self.s
            .llm
            .requests()
            .into_iter()
            .filter(|r| r.iter().any(|m| m.role == Speaker::System && m.content.contains("over WhatsApp")))
            .map(|r| r.into_iter().filter(|m| m.role == Speaker::User).map(|m| m.content).collect())
            .collect()
    }
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher as _, Hasher as _};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos());
    h.finish()
}

/// Two turns of one chat reach the agent in one session (the second request to the model
/// carries the first turn: Hermes kept it, hermes sent only the new one), `/new` starts
/// another, and two chats never share one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_chat_is_one_hermes_session_and_new_starts_another() {
    let b = Both::start().await;
    let s = &b.s;
    let first = s.ask(FRIEND, "hello agent").await;
    assert!(first.contains("You wrote: \"hello agent\" (message 1 of this conversation)"), "{first}");
    let second = s.ask(FRIEND, "and again").await;
    assert!(second.contains("(message 2 of this conversation)"), "{second}");
    assert_eq!(b.turns_asked().last().expect("asked"), &["hello agent".to_owned(), "and again".to_owned()]);
    // The context says WhatsApp, and who writes.
    let system: Vec<String> = s
        .llm
        .requests()
        .last()
        .expect("asked")
        .iter()
        .filter(|m| m.role == Speaker::System)
        .map(|m| m.content.clone())
        .collect();
    assert!(system.iter().any(|c| c.contains(&format!("a direct chat with +{FRIEND}"))), "{system:?}");
    // Another chat: a session of its own.
    let other = s.ask(OTHER, "who am I").await;
    assert!(other.contains("(message 1 of this conversation)"), "{other}");
    // `/new`: the next session, empty.
    let reset = s.ask(FRIEND, "/new").await;
    assert!(reset.contains("Started a new conversation"), "{reset}");
    let fresh = s.ask(FRIEND, "fresh start").await;
    assert!(fresh.contains("You wrote: \"fresh start\" (message 1 of this conversation)"), "{fresh}");
    // And the other chat's session went on undisturbed.
    let other = s.ask(OTHER, "still me").await;
    assert!(other.contains("(message 2 of this conversation)"), "{other}");
    // `doctor` says which agent answers, and that Hermes' own WhatsApp stays off.
    let report = s.json(&["doctor", "--json"]);
    let checks = report["checks"].as_array().expect("checks");
    let named = |n: &str| checks.iter().find(|c| c["name"] == n).cloned().unwrap_or_default();
    let agent = named("agent");
    assert_eq!(agent["status"], "ok", "{agent}");
    let message = agent["message"].as_str().unwrap_or_default();
    assert!(message.contains(&format!("Hermes Agent 0.19.0 at http://127.0.0.1:{}/v1", b.port)), "{message}");
    assert!(message.contains("accepts the key"), "{message}");
    assert_eq!(named("hermes_whatsapp")["status"], "ok", "{}", named("hermes_whatsapp"));
    // So does `whatsapp status`.
    let status = s.json(&["whatsapp", "status", "--json"]);
    assert_eq!(status["agent"]["status"], "ok", "{status}");
    assert!(status["agent"]["message"].as_str().is_some_and(|m| m.contains("Hermes Agent 0.19.0")), "{status}");
}

/// A photo reaches the model as an image; a reply naming a file with `MEDIA:` reaches the
/// contact as an image (Hermes inlines it, hermes sends it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_photo_reaches_the_agent_and_an_image_it_names_reaches_the_contact() {
    let b = Both::start().await;
    let s = &b.s;
    let png = crate::media::PNG.to_vec();
    let cursor = s.sim.cursor();
    let photo = Media {
        mime: "image/png".into(),
        data: png.clone(),
        caption: Some("what is this".into()),
        ..Default::default()
    };
    s.sim.send_media(FRIEND, ACCOUNT, MediaKind::Image, &photo).await.expect("send photo");
    s.reply_containing(cursor, FRIEND, "You wrote").await;
    let asked = s
        .llm
        .requests()
        .into_iter()
        .rev()
        .find(|r| r.iter().any(|m| !m.images.is_empty()))
        .expect("an image reached the model");
    let image = asked.iter().find(|m| !m.images.is_empty()).expect("image");
    assert!(image.content.contains("what is this"), "{image:?}");
    assert!(image.images[0].starts_with("data:image/"), "{:?}", &image.images[0][..30]);
    // The agent answers with a file of its own.
    let chart = s.home.path.join("cache/chart.png");
    std::fs::create_dir_all(chart.parent().expect("dir")).expect("dir");
    std::fs::write(&chart, &png).expect("chart");
    s.llm.answer_when("send me the chart", &format!("Here is the chart.\nMEDIA:{}", chart.display()));
    let cursor = s.sim.cursor();
    let text = s.ask(FRIEND, "send me the chart").await;
    assert_eq!(text, "Here is the chart.");
    let deadline = Instant::now() + T;
    let got = loop {
        let got = s.sim.received_media(FRIEND);
        if !got.is_empty() {
            break got;
        }
        assert!(Instant::now() < deadline, "no image arrived");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].kind, MediaKind::Image);
    let _ = cursor;
}

/// hermes killed while Hermes runs a turn: after the restart the turn is taken up again
/// (its transcript read, then sent again under its key, which Hermes answers from the turn
/// still running), and the contact gets one answer; the model was asked once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hermes_killed_mid_turn_answers_once() {
    let mut b = Both::start().await;
    b.s.ask(FRIEND, "warm up").await;
    let before = b.turns_asked().len();
    b.s.llm.hold(true);
    let cursor = b.s.sim.cursor();
    b.s.say(FRIEND, "a long question").await;
    assert!(b.s.llm.wait_for_requests(b.s.llm.requests().len() + 1, T).await, "the turn reached the model");
    let gw = b.s.gw.take().expect("running");
    let pid = rustix::process::Pid::from_raw(gw.pid() as i32).expect("pid");
    rustix::process::kill_process(pid, rustix::process::Signal::KILL).expect("SIGKILL");
    let _ = gw.exit();
    b.s.start(&[]);
    b.s.gw().wait_log("taking up a turn of the agent left open");
    b.s.llm.hold(false);
    let answer = b.s.reply_containing(cursor, FRIEND, "a long question").await;
    assert!(answer.contains("(message 2 of this conversation)"), "{answer}");
    // Once more, to see nothing else arrives for it.
    b.s.ask(FRIEND, "flush").await;
    let answers = b.s.replies(FRIEND).iter().filter(|r| r.contains("a long question")).count();
    assert_eq!(answers, 1, "{:#?}", b.s.replies(FRIEND));
    let asked: Vec<_> = b.turns_asked()[before..]
        .iter()
        .filter(|u| u.last().is_some_and(|t| t == "a long question"))
        .cloned()
        .collect();
    assert_eq!(asked.len(), 1, "the model was asked the turn once: {asked:#?}");
}

/// Hermes killed while it runs a turn: hermes rides it out, and when Hermes is back the turn
/// (its message already in the transcript, without an answer) is sent again and answered once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hermes_agent_killed_mid_turn_answers_once() {
    let mut b = Both::start().await;
    b.s.ask(FRIEND, "warm up").await;
    b.s.llm.hold(true);
    let cursor = b.s.sim.cursor();
    b.s.say(FRIEND, "while you crash").await;
    assert!(b.s.llm.wait_for_requests(b.s.llm.requests().len() + 1, T).await, "the turn reached the model");
    b.agent.take().expect("running").kill();
    b.s.gw().wait_log("Hermes Agent did not answer; trying again");
    b.s.llm.hold(false);
    b.restart_agent();
    let answer = b.s.reply_containing(cursor, FRIEND, "while you crash").await;
    // Hermes kept the turn's message when it began; sent again to a Hermes that forgot the
    // turn, it is in the transcript twice (Hermes joins the two): the cost of running it again.
    assert!(answer.contains("You wrote: \"while you crash"), "{answer}");
    b.s.ask(FRIEND, "flush").await;
    let answers = b.s.replies(FRIEND).iter().filter(|r| r.contains("while you crash")).count();
    assert_eq!(answers, 1, "{:#?}", b.s.replies(FRIEND));
}

/// A reminder the agent schedules in a WhatsApp turn (its `cronjob` tool, called by the model)
/// arrives in that chat when it runs, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reminder_scheduled_in_a_chat_arrives_there_once() {
    let b = Both::start().await;
    let s = &b.s;
    s.llm.call_tool_when(
        "remind me",
        "cronjob",
        serde_json::json!({"action": "create", "schedule": "1m", "name": "water", "prompt": "Remind the user to drink water."}),
    );
    let done = s.ask(FRIEND, "remind me to drink water in a minute").await;
    assert!(done.contains("Done:"), "{done}");
    let seen = s.gw().wait_log("following a job the agent scheduled in a chat");
    let line = seen.last().expect("line");
    let job = line
        .split("job=")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .expect("job id")
        .trim_matches('"')
        .to_owned();
    // Run it now (Hermes' own `cron run` makes it due; `cron tick` runs what is due).
    let hermes = venv().join("bin/hermes");
    for args in [vec!["cron", "run", job.as_str()], vec!["cron", "tick"]] {
        let out = Command::new(&hermes)
            .args(&args)
            .env_clear()
            .env("PATH", format!("{}:/usr/bin:/bin", venv().join("bin").display()))
            .env("HOME", s.home.path.parent().expect("parent"))
            .env("HERMES_HOME", &s.home.path)
            .env("LANG", "C.UTF-8")
            .output()
            .expect("hermes cron");
        assert!(out.status.success(), "hermes {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let cursor = 0;
    let reminder = s.reply_containing(cursor, FRIEND, "Cronjob Response: water").await;
    assert!(reminder.contains("drink water"), "{reminder}");
    s.ask(FRIEND, "flush").await;
    assert_eq!(s.replies(FRIEND).iter().filter(|r| r.contains("Cronjob Response")).count(), 1);
}
