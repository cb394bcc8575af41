//! `hermes whatsapp` links against wa-sim, the real protocol on loopback (simulator build).

use std::io::{BufRead as _, BufReader};
use std::os::unix::fs::PermissionsExt as _;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;
use wa_sim::Sim;

use crate::support::{Home, run_output};

const T: Duration = Duration::from_secs(60);
const SESSION: &str = "platforms/whatsapp/session";

/// A running `hermes whatsapp ... --json`, its JSON lines on a channel.
struct Linking {
    child: Child,
    lines: mpsc::Receiver<Value>,
}

impl Linking {
    fn start(home: &Home, sim: &Sim, args: &[&str]) -> Linking {
        // A subcommand (repair, unlink) goes right after `whatsapp`, flags after it.
        let (sub, rest) = match args.first() {
            Some(s) if !s.starts_with('-') => (Some(*s), &args[1..]),
            _ => (None, args),
        };
        let mut all = vec!["whatsapp"];
        all.extend(sub);
        all.extend(["--no-input", "--json"]);
        all.extend_from_slice(rest);
        let mut child = home
            .command(&all)
            .env("WHATSAPP_SERVER_URL", sim.ws_url())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start hermes whatsapp");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
                if tx.send(v).is_err() {
                    return;
                }
            }
        });
        Linking { child, lines }
    }

    /// The next event, which must be `kind`.
    fn expect(&self, kind: &str) -> Value {
        let v = self.lines.recv_timeout(T).unwrap_or_else(|e| panic!("no '{kind}' event: {e}"));
        assert_eq!(v["event"], kind, "{v}");
        v
    }

    fn wait(mut self) -> i32 {
        self.child.wait().expect("wait").code().unwrap_or(-1)
    }
}

impl Drop for Linking {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).expect("metadata").permissions().mode() & 0o777
}

pub fn status(home: &Home) -> (i32, Value) {
    let run = home.run(&["whatsapp", "status", "--json"]);
    (run.code, serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("status JSON ({e}): {run:?}")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_by_qr_through_json_events_then_status_and_no_silent_replace() {
    let sim = Sim::start().await.expect("sim");
    sim.add_phone("15557654321");
    let home = Home::new();
    let linking = Linking::start(&home, &sim, &["--mode", "bot", "--allow", "+1 (555) 000-1234, 4915112345678"]);
    let qr = linking.expect("qr");
    let png = qr["png"].as_str().expect("png path");
    assert!(std::fs::read(png).expect("QR image written").starts_with(b"\x89PNG"));
    assert!(qr["expires_in"].as_u64().is_some_and(|s| s > 0 && s <= 60), "{qr}");
    sim.link_qr("15557654321", qr["qr"].as_str().expect("qr data")).expect("phone scans");
    linking.expect("paired");
    let connected = linking.expect("connected");
    assert_eq!(connected["phone"], "15557654321");
    assert!(connected["lid"].as_str().is_some(), "{connected}");
    assert_eq!(linking.wait(), 0);

    let session = home.path.join(SESSION);
    assert_eq!(mode(&session), 0o700);
    for f in std::fs::read_dir(&session).expect("session dir").flatten() {
        assert_eq!(mode(&f.path()), 0o600, "{}", f.path().display());
    }
    assert!(!std::path::Path::new(png).exists(), "the QR image is removed once linked");
    let env = std::fs::read_to_string(home.path.join(".env")).expect(".env");
    assert!(env.contains("WHATSAPP_MODE=bot\n"), "{env}");
    assert!(env.contains("WHATSAPP_ALLOWED_USERS=15550001234,4915112345678\n"), "{env}");
    // For Hermes Agent, run from the same folder: its own bridge stays off (hermes owns the device).
    assert!(env.contains("WHATSAPP_ENABLED=false\n"), "{env}");
    assert_eq!(mode(&home.path.join(".env")), 0o600);

    let (code, st) = status(&home);
    assert_eq!((code, st["state"].as_str(), st["linked"].as_bool()), (0, Some("linked"), Some(true)), "{st}");
    assert_eq!(st["account"]["phone"], "15557654321");
    let doctor: Value = serde_json::from_str(&home.run(&["doctor", "--json"]).stdout).expect("doctor JSON");
    let link =
        doctor["checks"].as_array().expect("checks").iter().find(|c| c["name"] == "whatsapp_link").expect("link check");
    assert_eq!(
        (link["status"].as_str(), link["message"].as_str()),
        (Some("ok"), Some("linked to +15557654321 (device 1)"))
    );

    // Running it again never replaces a valid session silently.
    let again = Linking::start(&home, &sim, &[]);
    let err = again.expect("error");
    assert_eq!(err["kind"], "already_linked", "{err}");
    assert_eq!(again.wait(), 1);
    assert_eq!(sim.devices("15557654321").len(), 1, "no second device was linked");
    assert_eq!(status(&home).1["state"], "linked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_by_pairing_code() {
    let sim = Sim::start().await.expect("sim");
    sim.add_phone("4915112345678");
    let home = Home::new();
    let linking = Linking::start(&home, &sim, &["--pair-code", "+49 151 12345678"]);
    let code = linking.expect("pair_code");
    let code = code["code"].as_str().expect("code");
    assert_eq!(code.len(), 8, "{code}");
    sim.link_code("4915112345678", code).expect("typed on the phone");
    linking.expect("paired");
    assert_eq!(linking.expect("connected")["phone"], "4915112345678");
    assert_eq!(linking.wait(), 0);

    // Self-chat mode (the default) now knows whose chat is "Message yourself".
    let own = home.run(&["whatsapp", "explain", "+49 151 12345678", "--json"]);
    let v: Value = serde_json::from_str(&own.stdout).expect("json");
    assert_eq!((own.code, v["rule"].as_str()), (0, Some("self_chat")), "{v}");
    let stranger = home.run(&["whatsapp", "explain", "+1 555 123 4567", "--json"]);
    let v: Value = serde_json::from_str(&stranger.stdout).expect("json");
    assert_eq!((stranger.code, v["rule"].as_str()), (1, Some("self_chat_only")), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_on_the_session_fails_naming_the_first() {
    let sim = Sim::start().await.expect("sim");
    let home = Home::new();
    let first = Linking::start(&home, &sim, &[]);
    first.expect("qr");
    let second = Linking::start(&home, &sim, &[]);
    let err = second.expect("error");
    assert_eq!(err["kind"], "session_in_use");
    let pid = first.child.id().to_string();
    assert!(err["message"].as_str().is_some_and(|m| m.contains(&format!("PID {pid}"))), "{err}");
    assert_eq!(second.wait(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_while_linking_leaves_nothing_half_linked() {
    let sim = Sim::start().await.expect("sim");
    sim.add_phone("15550009999");
    let home = Home::new();
    let mut first = Linking::start(&home, &sim, &[]);
    first.expect("qr");
    first.child.kill().expect("kill -9");
    let _ = first.child.wait();
    let (code, st) = status(&home);
    assert_eq!((code, st["linked"].as_bool()), (1, Some(false)), "{st}");
    assert!(!home.path.join(SESSION).exists(), "no session directory from an unfinished link");

    // The next run starts clean and links.
    let again = Linking::start(&home, &sim, &[]);
    let qr = again.expect("qr");
    let leftovers: Vec<_> = std::fs::read_dir(home.path.join("platforms/whatsapp"))
        .expect("dir")
        .flatten()
        .filter(|e| {
            e.file_name().to_string_lossy().starts_with("session.linking-")
                && !e.file_name().to_string_lossy().starts_with(&format!("session.linking-{}-", again.child.id()))
        })
        .collect();
    assert!(leftovers.is_empty(), "the killed run's directory was cleaned up");
    sim.link_qr("15550009999", qr["qr"].as_str().expect("qr")).expect("scan");
    again.expect("paired");
    again.expect("connected");
    assert_eq!(again.wait(), 0);
}

#[test]
fn corrupt_or_empty_stores_are_reported_as_such() {
    let home = Home::new();
    let session = home.path.join(SESSION);
    std::fs::create_dir_all(&session).expect("mkdir");
    std::fs::write(session.join("whatsapp.db"), b"").expect("write");
    let (code, st) = status(&home);
    assert_eq!((code, st["state"].as_str()), (1, Some("empty")), "{st}");
    std::fs::write(session.join("whatsapp.db"), b"this is not a database at all, just text").expect("write");
    let (code, st) = status(&home);
    assert_eq!((code, st["state"].as_str(), st["linked"].as_bool()), (1, Some("corrupt"), Some(false)), "{st}");
    assert!(st["fix"].as_str().is_some_and(|f| f.contains("hermes whatsapp repair")), "{st}");
}

#[test]
fn a_non_loopback_server_url_is_refused() {
    let home = Home::new();
    let run = run_output(
        home.command(&["whatsapp", "--no-input", "--json"])
            .env("WHATSAPP_SERVER_URL", "ws://203.0.113.7:443/ws/chat")
            .output()
            .expect("run"),
    );
    assert_eq!(run.code, 2, "{run:?}");
    let v: Value = serde_json::from_str(run.stdout.lines().next().expect("one line")).expect("json");
    assert_eq!(v["kind"], "config");
    assert!(v["message"].as_str().is_some_and(|m| m.contains("only a loopback address")), "{v}");
}

/// Links `phone` through `hermes whatsapp`, to completion.
pub fn link_phone(home: &Home, sim: &Sim, phone: &str) {
    link_phone_with(home, sim, phone, &[]);
}

/// [`link_phone`] with more arguments for `hermes whatsapp`.
fn link_phone_with(home: &Home, sim: &Sim, phone: &str, args: &[&str]) {
    let linking = Linking::start(home, sim, args);
    let qr = linking.expect("qr");
    sim.link_qr(phone, qr["qr"].as_str().expect("qr")).expect("scan");
    linking.expect("paired");
    linking.expect("connected");
    assert_eq!(linking.wait(), 0);
}

fn backups(home: &Home) -> usize {
    std::fs::read_dir(home.path.join("platforms/whatsapp/session.bak")).map_or(0, |d| d.count())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repair_leaves_a_valid_session_alone_and_relinks_a_removed_one() {
    let sim = Sim::start().await.expect("sim");
    sim.add_phone("15551110000");
    let home = Home::new();
    link_phone(&home, &sim, "15551110000");

    let repair = Linking::start(&home, &sim, &["repair"]);
    let probe = repair.expect("probe");
    assert_eq!(probe["result"], "valid", "{probe}");
    assert_eq!(repair.wait(), 0);
    assert_eq!(sim.devices("15551110000"), vec![1], "a valid session is left as it is");
    assert_eq!(backups(&home), 0);

    // The user removes the device on the phone while the gateway is off.
    sim.inject(wa_sim::Fault::DeviceRemoved { phone: "15551110000".into(), device: 1 }).expect("unlink on the phone");
    let repair = Linking::start(&home, &sim, &["repair"]);
    let probe = repair.expect("probe");
    assert_eq!(probe["result"], "invalid", "{probe}");
    let qr = repair.expect("qr");
    sim.link_qr("15551110000", qr["qr"].as_str().expect("qr")).expect("scan");
    repair.expect("paired");
    repair.expect("connected");
    assert_eq!(repair.wait(), 0);
    assert_eq!(sim.devices("15551110000"), vec![2]);
    assert_eq!(backups(&home), 1, "the dead session was kept as a backup");
    assert_eq!(status(&home).1["state"], "linked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repair_changes_nothing_when_whatsapp_cannot_be_reached() {
    let sim = Sim::start().await.expect("sim");
    sim.add_phone("15552220000");
    let home = Home::new();
    link_phone(&home, &sim, "15552220000");
    sim.inject(wa_sim::Fault::RefuseConnections(u32::MAX)).expect("network down");
    let repair = Linking::start(&home, &sim, &["repair", "--timeout", "3"]);
    let err = repair.expect("error");
    assert_eq!(err["kind"], "unreachable", "{err}");
    assert!(err["message"].as_str().is_some_and(|m| m.contains("nothing was changed")), "{err}");
    assert_eq!(repair.wait(), 1);
    assert_eq!(backups(&home), 0);
    sim.clear_faults();
    assert_eq!(status(&home).1["state"], "linked", "still the same session");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unlink_logs_out_on_whatsapp_and_keeps_a_backup() {
    let sim = Sim::start().await.expect("sim");
    sim.add_phone("15553330000");
    let home = Home::new();
    link_phone(&home, &sim, "15553330000");
    let unlink = Linking::start(&home, &sim, &["unlink"]);
    let done = unlink.expect("unlinked");
    assert_eq!(unlink.wait(), 0);
    let backup = std::path::PathBuf::from(done["backup"].as_str().expect("backup path"));
    assert!(backup.join("whatsapp.db").exists(), "{}", backup.display());
    assert!(sim.devices("15553330000").is_empty(), "the device left the phone's Linked Devices");
    assert!(sim.events().iter().any(|e| matches!(e, wa_sim::SimEvent::DeviceUnlinked { .. })));
    assert_eq!(status(&home).1["state"], "not_linked");
    let env = std::fs::read_to_string(home.path.join(".env")).expect(".env");
    assert!(env.contains("WHATSAPP_ENABLED=false\n"), "{env}");
}

/// On a terminal the QR code is drawn in place and its last line counts down the seconds left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_terminal_the_qr_code_counts_down() {
    use std::io::Read as _;
    let sim = Sim::start().await.expect("sim");
    let home = Home::new();
    // `script` gives the wizard a pseudo-terminal, as a person's shell would.
    let command = format!("{} whatsapp --mode bot --allow 15551234567", env!("CARGO_BIN_EXE_hermes"));
    let mut child = home
        .command(&[])
        .env("WHATSAPP_SERVER_URL", sim.ws_url())
        .env("TERM", "xterm")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn_script(&command);
    let mut stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel::<u64>();
    std::thread::spawn(move || {
        let mut seen = String::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                return;
            }
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
            while let Some(i) = seen.find("expires in") {
                let rest = &seen[i + "expires in".len()..];
                if let Some(end) = rest.find(" s;") {
                    if let Ok(secs) = rest[..end].trim().parse() {
                        let _ = tx.send(secs);
                    }
                    seen = rest[end..].to_owned();
                } else {
                    break;
                }
            }
        }
    });
    let first = rx.recv_timeout(T).expect("a QR code with its expiry");
    let later = loop {
        let s = rx.recv_timeout(T).expect("the countdown ticks");
        if s < first {
            break s;
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(later < first && first <= 60, "{first} then {later}");
}

trait SpawnScript {
    fn spawn_script(&mut self, command: &str) -> Child;
}

impl SpawnScript for std::process::Command {
    /// Runs `command` under `script`, in a pseudo-terminal, with this command's environment.
    fn spawn_script(&mut self, command: &str) -> Child {
        let mut script = std::process::Command::new("script");
        // (When `script` is killed, the terminal closes and hermes gets its hangup.)
        script.args(["-qfec", command, "/dev/null"]).env_clear();
        for (k, v) in self.get_envs() {
            if let Some(v) = v {
                script.env(k, v);
            }
        }
        script.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().expect("script")
    }
}

/// Issue 11: a stray file among the backups made rotation fail after the old session was moved
/// away, leaving the new, accepted session in `session.linking-<pid>` for the next run to delete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_11_a_relink_installs_the_new_session_whatever_the_backups_hold() {
    let sim = Sim::start().await.expect("sim");
    sim.add_phone("15553330000");
    let home = Home::new();
    link_phone(&home, &sim, "15553330000");
    let bak = home.path.join("platforms/whatsapp/session.bak");
    for n in 1..=3 {
        std::fs::create_dir_all(bak.join(format!("00000000000{n}"))).expect("old backup");
    }
    std::fs::write(bak.join(".DS_Store"), "finder was here").expect("stray file");
    std::fs::create_dir(bak.join("keep-me")).expect("a directory of the user's");

    link_phone_with(&home, &sim, "15553330000", &["--force"]);
    let (code, st) = status(&home);
    assert_eq!((code, st["state"].as_str()), (0, Some("linked")), "the accepted session is installed: {st}");
    assert_eq!(sim.devices("15553330000"), vec![1, 2]);
    let mut names: Vec<String> = std::fs::read_dir(&bak)
        .expect("backups")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names.len(), 5, "three backups of hermes' own plus what it did not name: {names:?}");
    assert!(names.contains(&".DS_Store".to_owned()) && names.contains(&"keep-me".to_owned()), "{names:?}");
    assert!(!names.contains(&"000000000001".to_owned()), "the oldest of hermes' backups was rotated out: {names:?}");
    let leftovers: Vec<_> = std::fs::read_dir(home.path.join("platforms/whatsapp"))
        .expect("dir")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".linking-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// Issue 11: a leftover `.linking-*` that holds a linked device may be the only copy of a link
/// WhatsApp accepted; it is kept as a backup, never deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_11_an_interrupted_link_that_holds_a_device_becomes_a_backup() {
    let sim = Sim::start().await.expect("sim");
    sim.add_phone("15553331111");
    let home = Home::new();
    link_phone(&home, &sim, "15553331111");
    let dir = home.path.join("platforms/whatsapp");
    // As a link killed between WhatsApp's acceptance and the install would leave it.
    std::fs::rename(dir.join("session"), dir.join("session.linking-4242")).expect("leftover");
    let relink = Linking::start(&home, &sim, &[]);
    let qr = relink.expect("qr");
    drop(relink);
    assert!(qr["qr"].is_string());
    assert!(!dir.join("session.linking-4242").exists());
    let kept: Vec<_> = std::fs::read_dir(dir.join("session.bak")).expect("backups").flatten().collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert!(kept[0].path().join("whatsapp.db").exists());
}

/// Issue 11: a session_path under a shared directory (1777) must not take its sticky bit away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_11_linking_leaves_an_existing_parent_directory_as_it_was() {
    let sim = Sim::start().await.expect("sim");
    sim.add_phone("15553332222");
    let home = Home::new();
    let shared = home.path.parent().expect("parent").join("shared");
    std::fs::create_dir(&shared).expect("shared dir");
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).expect("chmod 1777");
    let session = shared.join("wa-session");
    let home =
        home.with_yaml(&format!("platforms:\n  whatsapp:\n    extra:\n      session_path: {}\n", session.display()));
    link_phone(&home, &sim, "15553332222");
    let mode = std::fs::metadata(&shared).expect("meta").permissions().mode() & 0o7777;
    assert_eq!(mode, 0o1777, "the shared parent keeps its mode and sticky bit");
    assert_eq!(std::fs::metadata(&session).expect("session").permissions().mode() & 0o777, 0o700);
}

/// Every file under `dir`, with its size, modification time and contents.
fn tree(dir: &std::path::Path) -> Vec<(String, u64, std::time::SystemTime, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir").flatten() {
            let meta = e.metadata().expect("metadata");
            if meta.is_dir() {
                stack.push(e.path());
            } else {
                let bytes = std::fs::read(e.path()).unwrap_or_default();
                out.push((e.path().display().to_string(), meta.len(), meta.modified().expect("mtime"), bytes));
            }
        }
    }
    out.sort();
    out
}

/// Issue 11: `status`, `drops`, `explain` and `doctor` opened hermes.db read-write (a WAL
/// switch, migrations) and the session through code that may migrate it. They change nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_11_looking_changes_nothing_on_disk() {
    let sim = Sim::start().await.expect("sim");
    sim.add_phone("15554440000");
    let home = Home::new().with_env("WHATSAPP_MODE=bot\nWHATSAPP_ALLOWED_USERS=15551234567\n");
    link_phone(&home, &sim, "15554440000");
    // The state database exists once anything wrote it.
    assert_eq!(home.run(&["pairing", "list"]).code, 0);
    let before = tree(&home.path);
    for args in [
        &["whatsapp", "status", "--json"][..],
        &["whatsapp", "drops", "--json"],
        &["whatsapp", "explain", "15551234567"],
        &["doctor", "--json"],
    ] {
        let run = home.run(args);
        assert!(run.code <= 1, "{args:?}: {run:?}");
    }
    let after = tree(&home.path);
    // A `-shm` file is SQLite's shared-memory index of a WAL, mapped by every reader; a
    // reader takes its read marks there. It holds no data, so it is the one file left out.
    let data = |t: Vec<(String, u64, std::time::SystemTime, Vec<u8>)>| {
        t.into_iter().filter(|f| !f.0.ends_with("-shm")).collect::<Vec<_>>()
    };
    let (before, after) = (data(before), data(after));
    let names = |t: &[(String, u64, std::time::SystemTime, Vec<u8>)]| t.iter().map(|f| f.0.clone()).collect::<Vec<_>>();
    assert_eq!(names(&before), names(&after), "no file created or removed");
    let changed: Vec<&String> = before.iter().zip(&after).filter(|(b, a)| b != a).map(|(b, _)| &b.0).collect();
    assert!(changed.is_empty(), "no file changed: {changed:?}");
    assert_eq!(status(&home).1["state"], "linked", "and the session still reads as linked");
}

/// Found in the review of issue 11: `repair` connects with the session; a message WhatsApp
/// delivered then was acknowledged and never reached the journal. It is journaled now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_delivered_during_repair_is_journaled_not_lost() {
    let sim = Sim::start().await.expect("sim");
    sim.add_phone("15556660000");
    sim.add_phone("15556661111");
    let home = Home::new();
    link_phone(&home, &sim, "15556660000");
    let id = sim.send_text("15556661111", "15556660000", "sent while nothing runs", false).await.expect("send");
    let repair = Linking::start(&home, &sim, &["repair"]);
    let probe = repair.expect("probe");
    assert_eq!(probe["result"], "valid", "{probe}");
    assert_eq!(repair.wait(), 0);
    let store = hermes_store::Store::open_read_only(&home.path.join("state/hermes.db")).expect("open").expect("exists");
    let who = &hermes_core::identity::Jid::parse("15556661111@s.whatsapp.net").expect("a JID");
    assert!(
        store.is_journaled(who, who, &hermes_core::identity::MessageId::new(id.as_str())).expect("query"),
        "the message waits in the journal for the gateway"
    );
}

/// Issue 15: WhatsApp asks some accounts for a passkey before it links a device. A gateway
/// cannot present one: linking says so at once, with the way around it, instead of waiting
/// until the codes run out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passkey_request_while_linking_is_said_at_once_with_the_way_around_it() {
    let sim = Sim::start().await.expect("sim");
    sim.add_phone("15551110077");
    let home = Home::new();
    let linking = Linking::start(&home, &sim, &[]);
    let qr = linking.expect("qr");
    sim.ask_passkey(qr["qr"].as_str().expect("qr")).expect("ask for the passkey");
    let error = linking.expect("error");
    assert_eq!(error["kind"], "passkey_required", "{error}");
    assert!(error["message"].as_str().is_some_and(|m| m.contains("--pair-code") && m.contains("Passkeys")), "{error}");
    assert_eq!(linking.wait(), 1);
    assert_eq!(status(&home).1["state"], "not_linked");
    assert!(sim.devices("15551110077").is_empty(), "nothing was linked");
}
