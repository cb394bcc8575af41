//! Switching from Hermes without a new scan: Baileys (what Hermes' bridge runs) links to wa-sim
//! and talks, stops; `hermes whatsapp import` takes its session over; the gateway logs in as the
//! same device and goes on with the same Signal sessions, checked at the simulator.

use std::collections::BTreeMap;
use std::path::Path;

use hermes_agent::loopback::LoopbackLlm;
use serde_json::Value;
use wa_sim::baileys::Baileys;
use wa_sim::{Sim, SimEvent};

use crate::gateway::{Gateway, T};
use crate::support::Home;

const ACCOUNT: &str = "15550009999";
const FRIEND: &str = "4915100009999";
/// Never talked to the bridge: writes first after the import, on a pre-key.
const NEWCOMER: &str = "33612349999";
const SESSION: &str = "platforms/whatsapp/session";

/// Every file of a directory and its bytes: what "never modified" is checked against.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .expect("read dir")
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).expect("read")))
        .collect()
}

/// A Hermes user's home: Baileys linked in the session directory hermes resolves, a
/// conversation with `FRIEND` both ways, then the bridge stopped.
async fn hermes_user(sim: &Sim, home: &Home) {
    let session = home.path.join(SESSION);
    std::fs::create_dir_all(&session).expect("session dir");
    let mut b = Baileys::linked(sim, ACCOUNT, &session).await;
    sim.send_text(FRIEND, ACCOUNT, "hi Hermes", false).await.expect("send");
    b.wait("the friend's message", |v| (v["event"] == "message" && v["text"] == "hi Hermes").then_some(())).await;
    let cursor = sim.cursor();
    b.send(&format!("{FRIEND}@s.whatsapp.net"), "hello from the bridge").await;
    sim.wait_for(cursor, T, |e| matches!(e, SimEvent::MessageReceived { contact, .. } if contact == FRIEND))
        .await
        .expect("the friend reads the bridge's answer");
    b.quit().await;
}

/// The simulator with the account and a friend, a model on loopback, and a home in bot mode
/// that lets the friend in.
async fn world() -> (Sim, LoopbackLlm, Home) {
    let sim = Sim::start().await.expect("sim");
    sim.add_phone(ACCOUNT);
    sim.add_phone(FRIEND);
    sim.add_phone(NEWCOMER);
    let llm = LoopbackLlm::start(0).await.expect("llm");
    let home = Home::new()
        .with_env(&format!("WHATSAPP_MODE=bot\nWHATSAPP_ALLOWED_USERS={FRIEND},{NEWCOMER}\n"))
        .with_yaml(&format!("model:\n  default: test-model\n  base_url: {}\n", llm.base_url()));
    (sim, llm, home)
}

fn imported(run: &crate::support::Run) -> Value {
    assert_eq!(run.code, 0, "{run:?}");
    serde_json::from_str(run.stdout.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {run:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hermes_session_is_taken_over_and_the_gateway_goes_on_as_the_same_device() {
    let (sim, _llm, home) = world().await;
    hermes_user(&sim, &home).await;
    let session = home.path.join(SESSION);
    let devices = sim.devices(ACCOUNT);
    assert_eq!(devices.len(), 1);
    let before = snapshot(&session);

    // Everything that looks at the link names the way out, and nothing links a new device.
    let doctor = home.run(&["doctor"]);
    assert!(doctor.stdout.contains("hermes whatsapp import"), "{doctor:?}");
    let status = home.run(&["whatsapp", "status", "--json"]);
    assert!(status.stdout.contains("hermes whatsapp import"), "{status:?}");
    let gateway = home.run(&["gateway"]);
    assert_eq!(gateway.code, 1, "{gateway:?}");
    assert!(gateway.stderr.contains("hermes whatsapp import"), "{gateway:?}");
    let wizard = home.run(&["whatsapp", "--no-input", "--json"]);
    assert_eq!(wizard.code, 1, "{wizard:?}");
    assert!(wizard.stdout.contains("bridge_session"), "{wizard:?}");

    let report = imported(&home.run(&["whatsapp", "import", "--json"]));
    assert_eq!(report["event"], "imported", "{report}");
    assert_eq!(report["phone"], ACCOUNT);
    assert_eq!(report["device"], u64::from(devices[0]));
    assert!(report["sessions"].as_u64().is_some_and(|n| n >= 1), "{report}");
    assert!(report["prekeys"].as_u64().is_some_and(|n| n >= 1), "{report}");
    // The Baileys files are as they were; the store is beside them.
    let after = snapshot(&session);
    for (name, bytes) in &before {
        assert_eq!(after.get(name), Some(bytes), "{name} changed");
    }
    assert!(after.contains_key("whatsapp.db"), "{:?}", after.keys());

    // The gateway logs in as that device: no QR, no new device.
    let linked = sim.cursor();
    let gw = Gateway::start_with(&home, &sim, &[]);
    gw.wait_state("connected");
    assert_eq!(sim.devices(ACCOUNT), devices, "the phone's linked devices did not change");
    assert!(!sim.events_since(linked).iter().any(|e| matches!(e, SimEvent::DeviceLinked { .. })), "nothing was linked");

    // The friend's next message rides the session the bridge had: a `msg`, not a `pkmsg`.
    let cursor = sim.cursor();
    let id = sim.send_text(FRIEND, ACCOUNT, "are you still there?", false).await.expect("send");
    let reply =
        sim.wait_for(cursor, T, |e| matches!(e, SimEvent::MessageReceived { contact, .. } if contact == FRIEND)).await;
    let Ok(SimEvent::MessageReceived { text, .. }) = reply else {
        panic!("no answer after the import: {reply:?}\n{:#?}", gw.drain_log())
    };
    assert!(text.contains("are you still there?"), "the agent answered the message: {text}");
    // Decrypted with the imported session: sent once, as a `msg`, and never asked for again (a
    // device without the session would send a retry receipt and get a new `pkmsg`).
    let events = sim.events_since(cursor);
    let kinds: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            SimEvent::Stanza { inbound: false, xml, .. } if xml.starts_with("<message") && xml.contains(&id) => {
                Some(if xml.contains("type=\"pkmsg\"") {
                    "pkmsg"
                } else if xml.contains("type=\"msg\"") {
                    "msg"
                } else {
                    "other"
                })
            }
            _ => None,
        })
        .collect();
    assert_eq!(kinds, ["msg"], "the friend's message, on the bridge's session");
    let retries = events
        .iter()
        .filter(|e| matches!(e, SimEvent::Stanza { inbound: true, xml, .. } if xml.contains("type=\"retry\"")))
        .count();
    assert_eq!(retries, 0, "hermes decrypted it without asking again");

    // Someone new writes first, on a pre-key the bridge published: answered too.
    let cursor = sim.cursor();
    sim.send_text(NEWCOMER, ACCOUNT, "first time here", false).await.expect("send");
    let reply = sim
        .wait_for(cursor, T, |e| matches!(e, SimEvent::MessageReceived { contact, .. } if contact == NEWCOMER))
        .await;
    assert!(
        matches!(&reply, Ok(SimEvent::MessageReceived { text, .. }) if text.contains("first time here")),
        "{reply:?}\n{:#?}",
        gw.drain_log()
    );
    gw.terminate();
    assert_eq!(gw.exit().0, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_session_is_replaced_only_with_force_and_kept() {
    let sim = Sim::start().await.expect("sim");
    sim.add_phone(ACCOUNT);
    sim.add_phone(FRIEND);
    let home = Home::new();
    hermes_user(&sim, &home).await;
    imported(&home.run(&["whatsapp", "import", "--json"]));
    let again = home.run(&["whatsapp", "import", "--json"]);
    assert_eq!(again.code, 1, "{again:?}");
    assert!(again.stdout.contains("already_linked"), "{again:?}");
    let forced = imported(&home.run(&["whatsapp", "import", "--force", "--json"]));
    let backup = forced["backup"].as_str().expect("a backup of the replaced store");
    assert!(Path::new(backup).join("whatsapp.db").exists(), "{forced}");
    // A dry run changes nothing.
    let dry = imported(&home.run(&["whatsapp", "import", "--dry-run", "--force", "--json"]));
    assert_eq!(dry["event"], "checked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_taken_over_while_the_bridge_runs() {
    let (sim, _llm, home) = world().await;
    hermes_user(&sim, &home).await;
    // Hermes' adapter writes the bridge's PID beside its session: a live one refuses.
    let pid_file = home.path.join(SESSION).join("bridge.pid");
    std::fs::write(&pid_file, format!("{}\n", std::process::id())).expect("pid");
    let run = home.run(&["whatsapp", "import", "--json"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stdout.contains("bridge_running") && run.stdout.contains("stop it first"), "{run:?}");
    assert!(!home.path.join(SESSION).join("whatsapp.db").exists());
    // A PID file left by a bridge that is gone does not stand in the way.
    std::fs::write(&pid_file, "4194303\n").expect("pid");
    imported(&home.run(&["whatsapp", "import", "--json"]));
}

#[test]
fn a_damaged_directory_is_refused_and_nothing_is_written() {
    let home = Home::new();
    let session = home.path.join(SESSION);
    std::fs::create_dir_all(&session).expect("mkdir");
    // No creds.json at all.
    let run = home.run(&["whatsapp", "import", "--json"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stdout.contains("\"no_session\""), "{run:?}");
    // A bridge that never linked.
    std::fs::write(session.join("creds.json"), r#"{"noiseKey":{"private":{"type":"Buffer","data":""}}}"#)
        .expect("write");
    let run = home.run(&["whatsapp", "import", "--json"]);
    assert!(run.stdout.contains("\"not_linked\""), "{run:?}");
    // Truncated JSON.
    std::fs::write(session.join("creds.json"), r#"{"me":{"id":"1555"#).expect("write");
    let run = home.run(&["whatsapp", "import", "--json"]);
    assert!(run.stdout.contains("\"corrupt\"") && run.stdout.contains("creds.json"), "{run:?}");
    assert!(!session.join("whatsapp.db").exists());
    let leftovers: Vec<_> = std::fs::read_dir(home.path.join("platforms/whatsapp"))
        .expect("dir")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(
        leftovers.iter().all(|n| n == "session" || n == "session.lock"),
        "nothing beside the session: {leftovers:?}"
    );
}

/// A friend writes steadily while the bridge stops, the session is imported and the gateway
/// starts: every message reaches the bridge before the switch or the gateway after it, or (one
/// the bridge decrypted in its last moment, unacknowledged) its sender is asked to resend it.
/// `HERMES_SWITCH_MESSAGES` sets how many (60 by default); the closing measurements used more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_sent_across_the_switch_are_all_received() {
    let n: usize = std::env::var("HERMES_SWITCH_MESSAGES").ok().and_then(|v| v.parse().ok()).unwrap_or(60);
    let (sim, _llm, home) = world().await;
    let sim = std::sync::Arc::new(sim);
    let session = home.path.join(SESSION);
    std::fs::create_dir_all(&session).expect("session dir");
    let b = Baileys::linked(&sim, ACCOUNT, &session).await;

    let text = |i: usize| format!("switch-{i:04}-end");
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let ids = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let writer = {
        let (sim, sent, ids) = (sim.clone(), sent.clone(), ids.clone());
        tokio::spawn(async move {
            for i in 0..n {
                let id = sim.send_text(FRIEND, ACCOUNT, &text(i), false).await.expect("send");
                ids.lock().expect("ids").push(id);
                sent.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        })
    };
    while sent.load(std::sync::atomic::Ordering::SeqCst) < n / 3 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    // The switch, while the friend goes on writing.
    let seen = b.quit().await;
    let by_bridge: std::collections::BTreeSet<String> =
        seen.iter().filter(|v| v["event"] == "message").filter_map(|v| v["text"].as_str().map(str::to_owned)).collect();
    let import = {
        let mut cmd = home.command(&["whatsapp", "import", "--json"]);
        tokio::task::spawn_blocking(move || crate::support::run_output(cmd.output().expect("run")))
    }
    .await
    .expect("import");
    imported(&import);
    let gw = Gateway::start_with(&home, &sim, &[]);
    writer.await.expect("writer");

    // Every message not read by the bridge is answered by the gateway (answers quote it).
    let answered =
        |sim: &Sim| -> String { sim.inbox(FRIEND).into_iter().map(|(_, _, t)| t).collect::<Vec<_>>().join("\n") };
    let deadline = tokio::time::Instant::now() + T;
    let lost = loop {
        let all = answered(&sim);
        let lost: Vec<String> =
            (0..n).map(text).filter(|t| !by_bridge.contains(t) && !all.contains(t.as_str())).collect();
        let told = all.matches("could not read your last message").count();
        if lost.len() <= told || tokio::time::Instant::now() > deadline {
            break lost;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let all = answered(&sim);
    let twice = by_bridge.iter().filter(|t| all.contains(t.as_str())).count();
    // A message the bridge decrypted in its last moment without acknowledging it comes again,
    // undecryptable: its sender is told to send it again (never silence).
    let told = sim.inbox(FRIEND).iter().filter(|(_, _, t)| t.contains("could not read your last message")).count();
    eprintln!(
        "across the switch: {n} sent, {} read by the bridge, {} answered by hermes, {} unreadable (sender told: {told}), \
         {twice} both",
        by_bridge.len(),
        (0..n).map(text).filter(|t| all.contains(t.as_str())).count(),
        lost.len()
    );
    if lost.len() > told {
        let db = rusqlite::Connection::open(home.path.join("state/hermes.db")).expect("db");
        let mut q = db.prepare("SELECT msg_id, coalesce(text, '-'), unreadable, state, sender FROM inbox").expect("q");
        let rows: Vec<String> = q
            .query_map([], |r| {
                Ok(format!(
                    "{} {} {} {} {}",
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?
                ))
            })
            .expect("rows")
            .flatten()
            .collect();
        let ids = ids.lock().expect("ids").clone();
        let lost_ids: Vec<&String> =
            lost.iter().filter_map(|t| t[7..11].parse::<usize>().ok()).map(|i| &ids[i]).collect();
        let trail: Vec<String> = sim
            .events()
            .iter()
            .filter(|e| match e {
                SimEvent::Stanza { xml, .. } => lost_ids.iter().any(|id| xml.contains(id.as_str())),
                SimEvent::MessageDelivered { id, .. } => lost_ids.contains(&id),
                _ => false,
            })
            .map(|e| format!("{e:?}").chars().take(300).collect())
            .collect();
        panic!(
            "lost without a word across the switch: {lost:?} {lost_ids:?}\ntrail: {trail:#?}\njournal: {rows:#?}\n{:#?}",
            gw.drain_log()
        );
    }
    gw.terminate();
    assert_eq!(gw.exit().0, 0);
}
