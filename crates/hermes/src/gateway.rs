//! `hermes gateway`: keeps the WhatsApp link up in the foreground.
//!
//! Today it runs the link supervisor only; the message pipeline (journal, access, agent,
//! outbox) joins it next. Every state change is recorded in `HERMES_HOME/state/link.json`,
//! which `hermes whatsapp status` reads.

use std::io::{IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use hermes_core::link::{LinkState, RetryPolicy};
use hermes_whatsapp::lock::{LockError, SessionLock};
use hermes_whatsapp::supervisor::{self, SupervisorOptions};
use serde::{Deserialize, Serialize};

use crate::exit;
use crate::load;

/// What `state/link.json` holds: the last link state the gateway recorded.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct LinkRecord {
    pub pid: u32,
    pub state: String,
    /// Unix seconds when this state began.
    pub since: u64,
    pub fix: Option<String>,
    pub last_connected: Option<u64>,
    /// Unix seconds of reconnections, the last hour's only.
    pub reconnects: Vec<u64>,
}

pub fn record_path(home: &Path) -> PathBuf {
    home.join("state").join("link.json")
}

pub fn read_record(home: &Path) -> Option<LinkRecord> {
    serde_json::from_slice(&std::fs::read(record_path(home)).ok()?).ok()
}

fn write_record(home: &Path, record: &LinkRecord) -> anyhow::Result<()> {
    let path = record_path(home);
    std::fs::create_dir_all(path.parent().expect("has a parent"))?;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    serde_json::to_writer(&mut f, record)?;
    f.sync_all()?;
    std::fs::rename(&tmp, &path).with_context(|| format!("write {}", path.display()))?;
    Ok(())
}

fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

pub fn run(profile: Option<&str>) -> anyhow::Result<u8> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,whatsapp_rust=warn".into()),
        )
        .with_writer(std::io::stderr)
        // Colour for a person at a terminal; plain text for log files and service managers.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let loaded = load::load(profile)?;
    if loaded.resolved.has_errors() {
        for d in loaded.resolved.errors() {
            eprintln!("hermes: configuration error: {d}");
        }
        return Ok(exit::USAGE);
    }
    let server_url = loaded.resolved.config.whatsapp.server_url.value.clone();
    if let Some(url) = &server_url
        && let Err(e) = hermes_whatsapp::linking::check_server_url(url)
    {
        eprintln!("hermes: {e}");
        return Ok(exit::USAGE);
    }
    let session_dir = loaded.session_dir().path;
    let _lock = match SessionLock::acquire(&session_dir) {
        Ok(l) => l,
        Err(e @ LockError::Held { .. }) => {
            eprintln!("hermes: {e}");
            return Ok(exit::PROBLEM);
        }
        Err(e) => return Err(e.into()),
    };
    let home = loaded.home.path.clone();
    let mut record = LinkRecord { pid: std::process::id(), ..read_record(&home).unwrap_or_default() };
    // Every inbound message is journaled before WhatsApp is told it arrived.
    let db = home.join("state").join("hermes.db");
    std::fs::create_dir_all(db.parent().expect("has a parent"))?;
    let store = hermes_store::Store::open(&db).with_context(|| format!("open {}", db.display()))?;
    let journal = hermes_whatsapp::journal::JournalHook::new(std::sync::Arc::new(std::sync::Mutex::new(store)));
    let opts = SupervisorOptions { session_dir, server_url, policy: RetryPolicy::default(), journal: Some(journal) };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let last = runtime.block_on(async {
        let on_state = |state: &LinkState| {
            let now = now_secs();
            if state.name() == "connected" {
                if record.last_connected.is_some() {
                    record.reconnects.push(now);
                }
                record.last_connected = Some(now);
            }
            record.reconnects.retain(|t| now.saturating_sub(*t) < 3600);
            record.state = state.name().to_owned();
            record.since = now;
            record.fix = state.fix().map(str::to_owned);
            if let Err(e) = write_record(&home, &record) {
                tracing::warn!(error = %format!("{e:#}"), "cannot record the link state");
            }
        };
        supervisor::supervise(&opts, on_state, shutdown()).await
    });
    let last = last.map_err(anyhow::Error::msg)?;
    let mut stderr = std::io::stderr().lock();
    match (last.is_terminal(), last.fix()) {
        // A stop on request has no fix; every other terminal state does, and is a failure.
        (true, Some(fix)) => {
            writeln!(stderr, "hermes: the WhatsApp link stopped ({}): {fix}", last.name())?;
            Ok(exit::PROBLEM)
        }
        _ => Ok(exit::OK),
    }
}

/// Ctrl-C or SIGTERM.
async fn shutdown() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
