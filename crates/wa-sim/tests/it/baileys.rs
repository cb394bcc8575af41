//! Baileys (7.0.0-rc13, what Hermes' bridge pins), a WhatsApp client nobody here wrote,
//! against wa-sim: what whatsapp-rust and wa-sim might wrongly agree on, Baileys does not.
//!
//! The client runs in Node (`tests/baileys/harness.mjs`, its packages installed by `.ci/run`
//! with `npm ci`), driven over its stdin and stdout, one JSON object per line.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;
use wa_sim::{Sim, SimEvent};

use crate::client::init_logs;

/// Linking includes a reconnection (515) and the first login's initial sync.
const T: Duration = Duration::from_secs(60);
const ME: &str = "15550008888";
const CONTACT: &str = "4915100008888";

/// The harness, with its packages installed (`npm ci`, once per test run, pinned by
/// `package-lock.json`) when they are not yet: the test command alone works on a fresh machine.
fn harness_dir() -> PathBuf {
    static INSTALLED: OnceLock<Result<(), String>> = OnceLock::new();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("baileys");
    let installed = INSTALLED.get_or_init(|| {
        let stamp = dir.join("node_modules").join(".installed-from.json");
        let lock = std::fs::read(dir.join("package-lock.json")).map_err(|e| e.to_string())?;
        if std::fs::read(&stamp).is_ok_and(|s| s == lock) {
            return Ok(());
        }
        let out = std::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&dir)
            .output()
            .map_err(|e| format!("npm: {e} (Baileys needs Node.js 20 or later, with npm)"))?;
        if !out.status.success() {
            return Err(format!("npm ci failed: {}", String::from_utf8_lossy(&out.stderr)));
        }
        std::fs::write(&stamp, lock).map_err(|e| e.to_string())
    });
    if let Err(e) = installed {
        panic!("cannot install Baileys in {}: {e}", dir.display());
    }
    dir
}

/// A running Baileys client.
pub struct Baileys {
    child: Child,
    stdin: ChildStdin,
    events: mpsc::UnboundedReceiver<Value>,
    seen: Vec<Value>,
    /// What Baileys logged (warnings and errors, on its stderr), shown when a test fails.
    log: Arc<Mutex<Vec<String>>>,
}

impl Baileys {
    /// Starts Baileys on the multi-file auth state in `auth` (created if missing), linking by
    /// pairing code for `pair_phone` when there is no session yet and one is given.
    pub fn start(sim: &Sim, auth: &Path, pair_phone: Option<&str>) -> Baileys {
        let dir = harness_dir();
        let mut cmd = Command::new("node");
        cmd.arg(dir.join("harness.mjs"))
            .current_dir(&dir)
            .env("SIM_URL", sim.ws_url())
            .env("SIM_ROOT_KEY", hex::encode(sim.root_public_key()))
            .env("AUTH_DIR", auth)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(phone) = pair_phone {
            cmd.env("PAIR_PHONE", phone);
        }
        let mut child = cmd.spawn().expect("node runs (Node.js 20 or later)");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let keep = log.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                keep.lock().expect("not poisoned").push(line);
            }
        });
        let (tx, events) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                match serde_json::from_str::<Value>(&line) {
                    Ok(v) => {
                        let _ = tx.send(v);
                    }
                    Err(_) => eprintln!("Baileys harness: {line}"),
                }
            }
        });
        Baileys { child, stdin, events, seen: Vec::new(), log }
    }

    /// The first event (after those already taken) that `pick` maps to `Some`.
    pub async fn wait<R>(&mut self, what: &str, pick: impl Fn(&Value) -> Option<R>) -> R {
        let deadline = tokio::time::Instant::now() + T;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(v)) => {
                    if let Some(r) = pick(&v) {
                        return r;
                    }
                    self.seen.push(v);
                }
                Ok(None) => panic!("Baileys exited while waiting for {what}; it said {:#?}\n{}", self.seen, self.log()),
                Err(_) => panic!("timed out waiting for {what}; Baileys said {:#?}\n{}", self.seen, self.log()),
            }
        }
    }

    fn log(&self) -> String {
        self.log.lock().expect("not poisoned").join("\n")
    }

    pub async fn event(&mut self, name: &str) -> Value {
        self.wait(name, |v| (v["event"] == name).then(|| v.clone())).await
    }

    /// Sends a text and returns its id once Baileys has sent it.
    pub async fn send(&mut self, to: &str, text: &str) -> String {
        let line = format!("{}\n", json!({"cmd": "send", "to": to, "text": text}));
        self.stdin.write_all(line.as_bytes()).await.expect("write to Baileys");
        self.wait("sent", |v| match v["event"].as_str() {
            Some("sent") => Some(v["id"].as_str().unwrap_or_default().to_owned()),
            Some("error") => panic!("Baileys could not send: {v}"),
            _ => None,
        })
        .await
    }

    /// Stops the client, its session kept on disk.
    pub async fn quit(mut self) {
        let _ = self.stdin.write_all(b"{\"cmd\":\"quit\"}\n").await;
        let status = tokio::time::timeout(T, self.child.wait()).await.expect("Baileys stops").expect("wait");
        assert!(status.success(), "Baileys exited with {status}");
    }

    /// Links by QR code: the phone scans what Baileys shows.
    pub async fn linked(sim: &Sim, phone: &str, auth: &Path) -> Baileys {
        let mut b = Baileys::start(sim, auth, None);
        let qr =
            b.wait("a QR code", |v| (v["event"] == "qr").then(|| v["qr"].as_str().map(str::to_owned)).flatten()).await;
        sim.link_qr(phone, &qr).expect("the phone scans Baileys' QR code");
        b.event("open").await;
        b
    }
}

async fn setup() -> (Sim, tempfile::TempDir) {
    init_logs();
    let sim = Sim::start().await.expect("sim");
    sim.add_phone(ME);
    sim.add_phone(CONTACT);
    (sim, tempfile::tempdir().expect("tempdir"))
}

/// A text from Baileys reaches the contact's phone, decrypted.
async fn contact_receives(sim: &Sim, cursor: usize, text: &str) {
    let want = text.to_owned();
    sim.wait_for(
        cursor,
        T,
        move |e| matches!(e, SimEvent::MessageReceived { contact, text, .. } if contact == CONTACT && *text == want),
    )
    .await
    .unwrap_or_else(|_| panic!("the contact never read {text:?}; it read {:?}", sim.inbox(CONTACT)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baileys_links_by_qr_talks_both_ways_and_restarts_without_a_qr() {
    let (sim, dir) = setup().await;
    let auth = dir.path().join("auth");
    let mut b = Baileys::linked(&sim, ME, &auth).await;
    assert_eq!(sim.devices(ME).len(), 1, "one linked device");

    let id = sim.send_text(CONTACT, ME, "hello Baileys", false).await.expect("send");
    let got = b
        .wait("the contact's message", |v| (v["event"] == "message" && v["text"] == "hello Baileys").then(|| v.clone()))
        .await;
    assert_eq!(got["id"], id.as_str());
    assert!(got["sender"].as_str().is_some_and(|s| s.starts_with(CONTACT)), "{got}");

    let cursor = sim.cursor();
    b.send(&format!("{CONTACT}@s.whatsapp.net"), "hello contact").await;
    contact_receives(&sim, cursor, "hello contact").await;
    b.quit().await;

    // A restart on the kept session: no QR code, the same device, and the session goes on.
    let logins = sim.cursor();
    let mut b = Baileys::start(&sim, &auth, None);
    let opened = b
        .wait("open", |v| match v["event"].as_str() {
            Some("qr") => panic!("Baileys asked for a QR code again: {v}"),
            Some("open") => Some(v.clone()),
            _ => None,
        })
        .await;
    assert!(opened["id"].as_str().is_some_and(|id| id.starts_with(ME)), "{opened}");
    sim.wait_for(logins, T, |e| matches!(e, SimEvent::LoggedIn { phone, .. } if phone == ME)).await.expect("logged in");
    assert_eq!(sim.devices(ME).len(), 1, "no new device");
    sim.send_text(CONTACT, ME, "after the restart", false).await.expect("send");
    b.wait("the message after the restart", |v| {
        (v["event"] == "message" && v["text"] == "after the restart").then_some(())
    })
    .await;
    let cursor = sim.cursor();
    b.send(&format!("{CONTACT}@s.whatsapp.net"), "still here").await;
    contact_receives(&sim, cursor, "still here").await;
    b.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baileys_links_by_pairing_code() {
    let (sim, dir) = setup().await;
    let mut b = Baileys::start(&sim, &dir.path().join("auth"), Some(ME));
    let code = b
        .wait("a pairing code", |v| {
            (v["event"] == "pair_code").then(|| v["code"].as_str().map(str::to_owned)).flatten()
        })
        .await;
    assert_eq!(code.chars().filter(char::is_ascii_alphanumeric).count(), 8, "{code}");
    sim.link_code(ME, &code).expect("the owner types the code on the phone");
    b.event("open").await;
    assert_eq!(sim.devices(ME).len(), 1);
    b.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baileys_talks_in_a_group() {
    let (sim, dir) = setup().await;
    let group = sim.create_group("friends", &[ME, CONTACT]).expect("group");
    let mut b = Baileys::linked(&sim, ME, &dir.path().join("auth")).await;
    sim.send_group_text(CONTACT, &group, "hi all").await.expect("send");
    let got =
        b.wait("the group message", |v| (v["event"] == "message" && v["text"] == "hi all").then(|| v.clone())).await;
    assert_eq!(got["chat"], group.as_str());
    let cursor = sim.cursor();
    b.send(&group, "hi from Baileys").await;
    contact_receives(&sim, cursor, "hi from Baileys").await;
    b.quit().await;
}
