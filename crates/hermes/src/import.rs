//! `hermes whatsapp import`: take over the session of Hermes' Node bridge (Baileys), so that
//! switching to hermes needs no new QR code.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hermes_whatsapp::import::{self, ImportError, Imported, baileys};
use hermes_whatsapp::lock::{LockError, SessionLock};
use hermes_whatsapp::store::{self, StoreState};
use serde_json::json;

use crate::{exit, load};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The Baileys auth directory (default: the session directory hermes uses, which is where
    /// Hermes' bridge keeps its session). It is only read, never changed.
    #[arg(long, value_name = "DIR")]
    from: Option<PathBuf>,
    /// Build and verify the store, report what it would take over, install nothing.
    #[arg(long)]
    dry_run: bool,
    /// Replace a session hermes already has (it is kept as a backup).
    #[arg(long)]
    force: bool,
    /// Print one JSON object: {"event":"imported",...} or {"event":"error","kind","message"}.
    #[arg(long)]
    json: bool,
}

struct Out {
    json: bool,
}

impl Out {
    fn error(&self, kind: &str, message: &str) -> u8 {
        if self.json {
            println!("{}", json!({"event": "error", "kind": kind, "message": message}));
        } else {
            eprintln!("hermes: {message}");
        }
        exit::PROBLEM
    }
}

pub async fn run(profile: Option<&str>, args: &Args) -> anyhow::Result<u8> {
    let loaded = load::load(profile)?;
    let out = Out { json: args.json };
    let session_dir = loaded.session_dir().path;
    let from = args.from.clone().unwrap_or_else(|| session_dir.clone());
    // Two processes on one session would both advance its keys: hold the lock throughout.
    let _lock = match SessionLock::acquire(&session_dir) {
        Ok(l) => l,
        Err(e @ LockError::Held { .. }) => return Ok(out.error("session_in_use", &e.to_string())),
        Err(e) => return Err(e.into()),
    };
    take_over(&from, &session_dir, args.dry_run, args.force, args.json).await
}

/// The import itself, for `import` and the wizard. The caller holds the session lock.
pub async fn take_over(from: &Path, session_dir: &Path, dry_run: bool, force: bool, json: bool) -> anyhow::Result<u8> {
    let out = Out { json };
    if let Some(why) = bridge_running(from, session_dir).await {
        return Ok(out.error("bridge_running", &why));
    }
    let state = match baileys::read(from) {
        Ok(s) => s,
        Err(e) => return Ok(out.error(e.kind(), &e.to_string())),
    };
    if !dry_run
        && !force
        && let StoreState::Linked(a) = store::inspect(session_dir).await
    {
        let message = format!(
            "hermes is already linked here (+{}, device {}); `hermes whatsapp import --force` replaces that session with \
             the Baileys one (the current one is kept as a backup)",
            a.phone, a.device
        );
        return Ok(out.error("already_linked", &message));
    }
    let staging = import::staging_dir(session_dir);
    if staging.exists() {
        std::fs::remove_dir_all(&staging)?;
    }
    hermes_store::files::create_private_dir_all(&staging)?;
    let started = std::time::Instant::now();
    let built = import::build(&state, &staging).await;
    let imported = match built {
        Ok(i) => i,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging);
            return match e {
                ImportError::Store(_) => Err(anyhow::anyhow!("{e}")),
                other => Ok(out.error(other.kind(), &other.to_string())),
            };
        }
    };
    let took = started.elapsed();
    let (backup, warnings) = if dry_run {
        std::fs::remove_dir_all(&staging)?;
        (None, Vec::new())
    } else {
        import::install(&staging, session_dir, hermes_store::clock::now()).map_err(|e| anyhow::anyhow!("{e}"))?
    };
    report(&out, &imported, from, session_dir, dry_run, backup.as_deref(), &warnings, took)?;
    Ok(exit::OK)
}

/// Why the bridge still seems to run on this session, if it does: its pid file names a live
/// process, or its port answers `/health` as the bridge does.
async fn bridge_running(from: &Path, session_dir: &Path) -> Option<String> {
    let stop = "stop it first (stop `hermes gateway` of Hermes, or the bridge's `node bridge.js`): two clients on one \
                session make WhatsApp replace one with the other";
    for dir in [from, session_dir] {
        let pid = small_file(&dir.join("bridge.pid"));
        if let Some(pid) = pid.as_deref().and_then(|p| p.lines().next()?.trim().parse::<u32>().ok())
            && hermes_whatsapp::lock::process_alive(pid)
        {
            return Some(format!("Hermes' WhatsApp bridge (PID {pid}) is running on {}: {stop}", dir.display()));
        }
    }
    // Hermes keeps a non-default port in platforms/whatsapp/bridge_port; 3000 otherwise.
    let port = session_dir
        .parent()
        .and_then(|p| small_file(&p.join("bridge_port")))
        .and_then(|p| p.trim().parse::<u16>().ok())
        .unwrap_or(3000);
    let client = reqwest::Client::builder().timeout(Duration::from_secs(2)).no_proxy().build().ok()?;
    let health = client.get(format!("http://127.0.0.1:{port}/health")).send().await.ok()?;
    let body: serde_json::Value = health.json().await.ok()?;
    // Only the bridge's own shape counts: another service on the port is not a bridge.
    let is_bridge = body.get("queueLength").is_some() && body.get("status").is_some();
    is_bridge.then(|| format!("Hermes' WhatsApp bridge answers on 127.0.0.1:{port}: {stop}"))
}

/// A PID or a port number is a line: anything longer is not the bridge's.
const SMALL_FILE_BYTES: u64 = 4096;

/// The text of a small file the bridge writes, or `None`: read as the session's files are (no
/// link followed, no FIFO waited on while the session lock is held, nothing past the cap).
fn small_file(path: &Path) -> Option<String> {
    let bytes = hermes_store::files::read_regular_capped(path, SMALL_FILE_BYTES).ok()?;
    String::from_utf8(bytes).ok()
}

#[allow(clippy::too_many_arguments, reason = "one report, printed two ways")]
fn report(
    out: &Out,
    i: &Imported,
    from: &Path,
    session_dir: &Path,
    dry_run: bool,
    backup: Option<&Path>,
    warnings: &[String],
    took: Duration,
) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    let mut warnings: Vec<String> = warnings.to_vec();
    warnings.extend(i.warnings.iter().cloned());
    if out.json {
        let value = json!({
            "event": if dry_run { "checked" } else { "imported" },
            "phone": i.account.phone,
            "lid": i.account.lid,
            "device": i.account.device,
            "sessions": i.sessions,
            "prekeys": i.pre_keys,
            "identities": i.identities,
            "sender_keys": i.sender_keys,
            "app_state_keys": i.app_state_keys,
            "lid_mappings": i.lid_mappings,
            "skipped": i.skipped,
            "from": from.display().to_string(),
            "session": session_dir.display().to_string(),
            "backup": backup.map(|b| b.display().to_string()),
            "warnings": warnings,
            "millis": u64::try_from(took.as_millis()).unwrap_or(u64::MAX),
        });
        writeln!(stdout, "{value}")?;
        return Ok(());
    }
    let verb = if dry_run { "Would take over" } else { "Took over" };
    writeln!(
        stdout,
        "{verb} the Hermes session of +{} (device {}) from {}:",
        i.account.phone,
        i.account.device,
        from.display()
    )?;
    writeln!(
        stdout,
        "  {} Signal sessions, {} pre-keys, {} identities, {} group sender keys, {} app-state keys, {} LID mappings",
        i.sessions, i.pre_keys, i.identities, i.sender_keys, i.app_state_keys, i.lid_mappings
    )?;
    if !i.skipped.is_empty() {
        let kinds: Vec<String> = i.skipped.iter().map(|(k, n)| format!("{n} {k}")).collect();
        writeln!(stdout, "  not needed (rebuilt by hermes from WhatsApp): {}", kinds.join(", "))?;
    }
    for w in &warnings {
        writeln!(stdout, "  warning: {w}")?;
    }
    if let Some(b) = backup {
        writeln!(stdout, "  the session hermes had is kept in {}", b.display())?;
    }
    if dry_run {
        writeln!(stdout, "Nothing was installed (--dry-run).")?;
    } else {
        writeln!(
            stdout,
            "hermes now uses this device: start it with `hermes gateway` (no QR code). Do not start Hermes' bridge \
             on {} again: two clients on one session would replace each other.",
            from.display()
        )?;
    }
    Ok(())
}
