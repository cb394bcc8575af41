//! Baileys (the version Hermes' WhatsApp bridge pins), a WhatsApp client nobody here wrote,
//! as a client of the simulator: what whatsapp-rust and wa-sim might wrongly agree on, Baileys
//! does not. Also the source of real Baileys sessions for hermes' import tests.
//!
//! The client runs in Node (`tests/baileys/harness.mjs`, its packages installed pinned by
//! `package-lock.json` the first time it is needed), driven over its stdin and stdout, one
//! JSON object per line. Only with the `baileys` feature, for tests.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;

use crate::Sim;

/// Linking includes a reconnection (515) and the first login's initial sync.
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// The harness, with its packages installed (`npm ci`, once per test run, pinned by
/// `package-lock.json`) when they are not yet: the test command alone works on a fresh machine.
pub fn harness_dir() -> PathBuf {
    static INSTALLED: OnceLock<Result<(), String>> = OnceLock::new();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("baileys");
    let installed = INSTALLED.get_or_init(|| npm_ci(&dir));
    if let Err(e) = installed {
        panic!("cannot install Baileys in {}: {e}", dir.display());
    }
    dir
}

/// Installs the npm packages of a test harness in `dir` (`npm ci`, pinned by its
/// `package-lock.json`) unless what is installed came from the same lock file.
pub fn npm_ci(dir: &Path) -> Result<(), String> {
    let stamp = dir.join("node_modules").join(".installed-from.json");
    let lock = std::fs::read(dir.join("package-lock.json")).map_err(|e| e.to_string())?;
    if std::fs::read(&stamp).is_ok_and(|s| s == lock) {
        return Ok(());
    }
    let out = std::process::Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(dir)
        .output()
        .map_err(|e| format!("npm: {e} (the test harnesses need Node.js 20 or later, with npm)"))?;
    if !out.status.success() {
        return Err(format!("npm ci failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    std::fs::write(&stamp, lock).map_err(|e| e.to_string())
}

/// A running Baileys client.
impl std::fmt::Debug for Baileys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Baileys").field("pid", &self.child.id()).finish_non_exhaustive()
    }
}

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
        let deadline = tokio::time::Instant::now() + TIMEOUT;
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
    /// Stops the client, its session kept on disk; returns every event it reported that no
    /// `wait` took (the messages it received last, say).
    pub async fn quit(mut self) -> Vec<Value> {
        let _ = self.stdin.write_all(b"{\"cmd\":\"quit\"}\n").await;
        let status = tokio::time::timeout(TIMEOUT, self.child.wait()).await.expect("Baileys stops").expect("wait");
        assert!(status.success(), "Baileys exited with {status}");
        // Its stdout is closed now: the reader ends after the last line.
        while let Some(v) = self.events.recv().await {
            self.seen.push(v);
        }
        self.seen
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
