//! The real Hermes Agent, for the tests and the benchmark that put hermes in front of it:
//! `hermes-agent` from PyPI, pinned with hashes in `.ci/hermes-agent/requirements.txt`,
//! installed into a virtualenv (once while the lock file is unchanged), its gateway started
//! from a `HERMES_HOME` with only its API server on, on loopback.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The lock file the virtualenv is made from.
pub fn lock_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.ci/hermes-agent/requirements.txt")
}

/// A virtualenv in `dir` with Hermes Agent: made with `python3 -m venv` and
/// `pip install --require-hashes` unless it was made from the same lock file.
pub fn venv(dir: &Path) -> Result<PathBuf, String> {
    let lock = lock_file();
    let stamp = dir.join(".installed-from.txt");
    let wanted = std::fs::read(&lock).map_err(|e| format!("{}: {e}", lock.display()))?;
    if std::fs::read(&stamp).is_ok_and(|s| s == wanted) {
        return Ok(dir.to_owned());
    }
    let _ = std::fs::remove_dir_all(dir);
    let run = |cmd: &mut Command| -> Result<(), String> {
        let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr)))
        }
    };
    run(Command::new("python3").args(["-m", "venv"]).arg(dir))?;
    run(Command::new(dir.join("bin/pip"))
        .args(["install", "--quiet", "--disable-pip-version-check", "--no-deps", "--require-hashes", "-r"])
        .arg(&lock))?;
    std::fs::write(&stamp, wanted).map_err(|e| e.to_string())?;
    Ok(dir.to_owned())
}

/// `config.yaml` blocks Hermes needs to run on loopback alone: no background downloads or
/// installs, no review calls to the model beside the turns, its own WhatsApp off.
pub const QUIET_CONFIG: &str = "security:\n  tirith_enabled: false\n  allow_lazy_installs: false\napprovals:\n  mode: \
                                manual\nmemory:\n  nudge_interval: 0\nskills:\n  creation_nudge_interval: 0\nplatforms:\n  \
                                whatsapp:\n    enabled: false\n";

/// The lines of Hermes' `model:` block that make a chat-completions server on loopback its
/// model (a custom provider that takes images), to put under `model:` beside `base_url`.
pub const MODEL_LINES: &str =
    "  provider: custom\n  api_key: loopback\n  context_length: 131072\n  supports_vision: true\n";

/// A free port on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(0)
}

/// Hermes Agent's gateway (`hermes gateway run`) serving its API server.
pub struct RealHermes {
    child: Child,
    port: u16,
    log: Arc<Mutex<Vec<String>>>,
}

impl std::fmt::Debug for RealHermes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RealHermes").field("port", &self.port).finish_non_exhaustive()
    }
}

impl RealHermes {
    /// Starts it from `home` (its `.env` enables the API server on `port`) with `HOME` the
    /// folder above, and waits until `/health` answers (within `timeout`).
    pub fn start(venv: &Path, home: &Path, port: u16, timeout: Duration) -> Result<RealHermes, String> {
        let child = Command::new(venv.join("bin/hermes"))
            .args(["gateway", "run"])
            .env_clear()
            .env("PATH", format!("{}:/usr/bin:/bin", venv.join("bin").display()))
            .env("HOME", home.parent().unwrap_or(home))
            .env("HERMES_HOME", home)
            .env("LANG", "C.UTF-8")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start Hermes Agent: {e}"))?;
        let mut agent = RealHermes { child, port, log: Arc::new(Mutex::new(Vec::new())) };
        let outputs: [Option<Box<dyn std::io::Read + Send>>; 2] = [
            agent.child.stdout.take().map(|o| Box::new(o) as Box<dyn std::io::Read + Send>),
            agent.child.stderr.take().map(|e| Box::new(e) as Box<dyn std::io::Read + Send>),
        ];
        for out in outputs.into_iter().flatten() {
            let log = agent.log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    log.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(line);
                }
            });
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = agent.child.try_wait() {
                return Err(format!("Hermes Agent exited ({status}): {}", agent.log().join("\n")));
            }
            if get(port, "/health").is_some_and(|r| r.starts_with("HTTP/1.1 200") || r.starts_with("HTTP/1.0 200")) {
                return Ok(agent);
            }
            if Instant::now() > deadline {
                return Err(format!("Hermes Agent's API server did not come up: {}", agent.log().join("\n")));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// What it printed so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// SIGKILL, as a crash or the OOM killer would, and waited for.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RealHermes {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain GET on loopback; the whole response, or `None` when nothing listens.
fn get(port: u16, path: &str) -> Option<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}
