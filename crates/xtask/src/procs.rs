//! The processes under measurement: `hermes gateway` and the echo bot, each a child process
//! with its own memory, read from `/proc`.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail};
use wa_sim::Sim;

/// A running child.
pub struct Proc {
    pub child: Child,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory, in KiB (`VmRSS`).
    pub fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }

    /// CPU time used so far (user + system), in clock ticks.
    pub fn cpu_ticks(&self) -> Option<u64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).ok()?;
        // The command name may hold spaces; fields are counted after its closing parenthesis.
        let rest = &stat[stat.rfind(')')? + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
    }

    /// SIGTERM, then wait (SIGKILL after 10 s).
    pub fn stop(mut self) {
        if let Some(pid) = i32::try_from(self.pid()).ok().and_then(rustix::process::Pid::from_raw) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        for _ in 0..100 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Clock ticks per second (`_SC_CLK_TCK`; 100 on every Linux this runs on).
pub const TICKS_PER_SEC: f64 = 100.0;

/// A HERMES_HOME for one benchmarked gateway, linked to `account` on the simulator.
pub struct HermesHome {
    pub path: PathBuf,
}

/// Builds `hermes` (release, simulator feature) and returns its path. It has a target
/// directory of its own: built beside xtask, the two feature sets would rebuild each other's
/// dependencies on every run.
pub fn build_hermes() -> anyhow::Result<PathBuf> {
    // An A/B of two builds alternates runs on binaries built beforehand.
    if let Some(bin) = std::env::var_os("HERMES_BENCH_BIN") {
        let bin = PathBuf::from(bin);
        anyhow::ensure!(bin.is_file(), "HERMES_BENCH_BIN={} is not a file", bin.display());
        return Ok(bin);
    }
    eprintln!("building hermes (release, simulator feature)...");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from).join("bench");
    let status = Command::new(cargo)
        .args(["build", "--release", "--features", "simulator", "-p", "hermes", "--target-dir"])
        .arg(&target)
        .current_dir(&root)
        .status()
        .context("run cargo build")?;
    anyhow::ensure!(status.success(), "cargo build of hermes failed");
    Ok(target.join("release").join("hermes"))
}

impl HermesHome {
    /// Creates the home and links it: `hermes whatsapp --no-input --json`, the simulated
    /// phone scanning the QR code it prints.
    pub fn link(hermes: &Path, dir: &Path, sim: &Sim, account: &str, llm_url: &str) -> anyhow::Result<HermesHome> {
        let path = dir.join(format!("hermes-{account}"));
        std::fs::create_dir_all(&path)?;
        std::fs::write(
            path.join("config.yaml"),
            // Unpaced: the benchmark measures the gateway, not the outbound governor's pacing.
            format!(
                "model:\n  default: bench\n  base_url: {llm_url}\nwhatsapp:\n  text_batch_delay_seconds: 0\n  \
                 send_per_minute: 0\n  chat_send_per_minute: 0\n  loop_turns: 0\n"
            ),
        )?;
        sim.add_phone(account);
        let mut child = Command::new(hermes)
            .args(["whatsapp", "--no-input", "--json", "--mode", "bot", "--allow", "*"])
            .env_clear()
            .env("HERMES_HOME", &path)
            .env("WHATSAPP_SERVER_URL", sim.ws_url())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let out = BufReader::new(child.stdout.take().context("stdout")?);
        for line in out.lines() {
            let v: serde_json::Value = serde_json::from_str(&line?).unwrap_or_default();
            match v["event"].as_str() {
                Some("qr") => sim.link_qr(account, v["qr"].as_str().unwrap_or_default())?,
                Some("connected") => break,
                Some("error") => bail!("linking failed: {v}"),
                _ => {}
            }
        }
        anyhow::ensure!(child.wait()?.success(), "hermes whatsapp failed");
        Ok(HermesHome { path })
    }

    pub fn gateway(&self, hermes: &Path, sim: &Sim) -> anyhow::Result<Proc> {
        let log = std::fs::File::create(self.path.join("gateway.log"))?;
        // HERMES_BENCH_WRAP runs the gateway under a tool (`heaptrack -o DIR/gw`, `perf record
        // -g -o FILE --`), split on spaces.
        let wrap = std::env::var("HERMES_BENCH_WRAP").unwrap_or_default();
        let mut argv = wrap.split_whitespace();
        let mut command = match argv.next() {
            Some(tool) => {
                let mut c = Command::new(tool);
                c.args(argv).arg(hermes);
                c
            }
            None => Command::new(hermes),
        };
        command
            .arg("gateway")
            .env_clear()
            .env("HERMES_HOME", &self.path)
            .env("WHATSAPP_SERVER_URL", sim.ws_url())
            // HERMES_BENCH_RUST_LOG looks inside a run (its log is HERMES_HOME/gateway.log).
            .env("RUST_LOG", std::env::var("HERMES_BENCH_RUST_LOG").unwrap_or_else(|_| "warn".to_owned()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        // The allocator's own knob passes through, for a look at what memory growth is.
        if let Some(arenas) = std::env::var_os("MALLOC_ARENA_MAX") {
            command.env("MALLOC_ARENA_MAX", arenas);
        }
        let child = command.spawn()?;
        Ok(Proc { child })
    }
}

/// The echo bot's session, linked to `account`.
pub struct EchoHome {
    pub db: PathBuf,
    /// On the library's own transport (no TCP_NODELAY).
    pub stock: bool,
}

impl EchoHome {
    /// `stock`: on the library's own transport (no TCP_NODELAY).
    pub fn link(dir: &Path, sim: &Sim, account: &str, stock: bool) -> anyhow::Result<(EchoHome, Proc)> {
        sim.add_phone(account);
        let home = EchoHome { db: dir.join(format!("echo-{account}.db")), stock };
        let mut proc = home.start(sim, true)?;
        let out = BufReader::new(proc.child.stdout.take().context("stdout")?);
        let mut lines = out.lines();
        for line in lines.by_ref() {
            let v: serde_json::Value = serde_json::from_str(&line?).unwrap_or_default();
            match v["event"].as_str() {
                Some("qr") => sim.link_qr(account, v["qr"].as_str().unwrap_or_default())?,
                Some("connected") => break,
                _ => {}
            }
        }
        // Keep draining its output so that it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Ok((home, proc))
    }

    /// Starts the bot; with `piped`, its JSON events are on the child's stdout.
    pub fn start(&self, sim: &Sim, piped: bool) -> anyhow::Result<Proc> {
        let child = Command::new(std::env::current_exe()?)
            .args(["echo-bot", "--db"])
            .arg(&self.db)
            .args(["--server", &sim.ws_url()])
            .args(self.stock.then_some("--stock-transport"))
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(if piped { Stdio::piped() } else { Stdio::null() })
            .stderr(std::fs::OpenOptions::new().create(true).append(true).open(self.log())?)
            .spawn()?;
        Ok(Proc { child })
    }

    /// Where its warnings and errors go, beside its database.
    fn log(&self) -> PathBuf {
        self.db.with_extension("log")
    }

    /// What its log says of the replies it could not send: how many, and the first reason.
    pub fn failed_sends(&self) -> String {
        let log = std::fs::read_to_string(self.log()).unwrap_or_default();
        let failed: Vec<&str> = log.lines().filter(|l| l.contains("echo bot: send failed")).collect();
        match failed.first() {
            Some(first) => format!("; {} sends failed, the first: {}", failed.len(), first.trim()),
            None => "; its log names no failed send".to_owned(),
        }
    }
}
