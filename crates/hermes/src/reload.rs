//! Live reload: `.env`, `config.yaml` and `SOUL.md` edited while the gateway runs are read
//! again (on a file change, or on SIGHUP) and what changed is put in force at once, logged as
//! a diff with where each new value comes from. A file with an error keeps the settings in
//! force and says what is wrong and how to fix it; what only a restart applies is said too.
//! A file another user could have written is refused alike (`hermes_core::doctor::settings_files`).
//! `state/settings.json` records which files the settings in force were read from, for
//! `doctor` and `status`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hermes_core::config::{Change, Config};
use serde::{Deserialize, Serialize};

use crate::load::{self, Loaded};

/// Files the gateway's settings are read from, in HERMES_HOME.
pub const FILES: [&str; 3] = [".env", "config.yaml", "SOUL.md"];

/// Edits come in bursts (an editor writes, renames, changes modes): read once they settle.
const SETTLE: Duration = Duration::from_millis(300);

/// What `state/settings.json` says about the settings in force.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InForce {
    /// The gateway that holds them.
    pub pid: u32,
    /// When they were put in force (unix seconds).
    pub since: i64,
    /// What the files were then ([`fingerprint`]).
    pub fingerprint: String,
    /// The last reload refused, if the files still have the error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected: Option<Rejected>,
    /// Settings changed in the files that apply only at the next start.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub restart: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejected {
    pub at: i64,
    pub fingerprint: String,
    pub errors: Vec<String>,
}

pub fn record_path(home: &Path) -> PathBuf {
    home.join("state").join("settings.json")
}

/// What the settings files hold now: one digest of their bytes (absent files count as such).
pub fn fingerprint(home: &Path) -> String {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    for name in FILES {
        match std::fs::read(home.join(name)) {
            Ok(bytes) => {
                h.update(b"1");
                h.update(u64::try_from(bytes.len()).unwrap_or(u64::MAX).to_le_bytes());
                h.update(&bytes);
            }
            Err(_) => h.update(b"0"),
        }
    }
    hex::encode(&h.finalize()[..16])
}

fn read_record(home: &Path) -> Option<InForce> {
    serde_json::from_slice(&std::fs::read(record_path(home)).ok()?).ok()
}

fn write_record(home: &Path, record: &InForce) {
    let written = serde_json::to_vec_pretty(record)
        .map_err(std::io::Error::from)
        .and_then(|bytes| hermes_store::files::write_private(&record_path(home), &bytes));
    if let Err(e) = written {
        tracing::warn!(error = %e, "cannot record the settings in force in state/settings.json");
    }
}

/// Records the settings the gateway starts with; `before` is the files' fingerprint taken
/// before they were read, so that an edit made meanwhile is read again.
pub fn started(loaded: &Loaded, before: Option<String>) -> InForce {
    let record = InForce {
        pid: std::process::id(),
        since: hermes_store::clock::now(),
        fingerprint: before.unwrap_or_default(),
        rejected: None,
        restart: Vec::new(),
    };
    write_record(&loaded.home.path, &record);
    record
}

/// Watches the settings files and SIGHUP for as long as it runs; `apply` gets each valid new
/// configuration that changed something.
pub async fn watch(
    profile: Option<String>,
    home: PathBuf,
    mut config: Config,
    mut record: InForce,
    apply: impl Fn(&Loaded),
) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    // A settings file that is a symbolic link changes where it points: its folder is watched too.
    let targets: Vec<PathBuf> = FILES
        .iter()
        .filter_map(|f| std::fs::canonicalize(home.join(f)).ok())
        .filter(|t| t.parent() != Some(home.as_path()))
        .collect();
    // Watching the folder, not the files: editors replace a file by renaming a new one over it.
    let watcher = {
        let tx = tx.clone();
        let (home_for_filter, targets_for_filter) = (home.clone(), targets.clone());
        notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            let ours = event.is_ok_and(|e| {
                e.paths.iter().any(|p| {
                    targets_for_filter.contains(p)
                        || (p.parent() == Some(home_for_filter.as_path())
                            && p.file_name().is_some_and(|n| FILES.iter().any(|f| n == *f)))
                })
            });
            if ours {
                let _ = tx.send(());
            }
        })
        .and_then(|mut w| {
            use notify::Watcher as _;
            w.watch(&home, notify::RecursiveMode::NonRecursive)?;
            for dir in targets.iter().filter_map(|t| t.parent()) {
                w.watch(dir, notify::RecursiveMode::NonRecursive)?;
            }
            Ok(w)
        })
    };
    let _watcher = match watcher {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(error = %e, home = %home.display(), "cannot watch the settings files; send SIGHUP to reload them");
            None
        }
    };
    // What changed between the first read and now is read at once.
    let _ = tx.send(());
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut soul = soul(&home);
    let mut present: Vec<&str> = FILES.iter().copied().filter(|f| home.join(f).exists()).collect();
    let mut restart: Vec<String> = Vec::new();
    loop {
        let asked = tokio::select! {
            r = rx.recv() => if r.is_none() { return } else { false },
            Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => {
                tracing::info!("SIGHUP: reading the settings again");
                true
            }
        };
        // Let the burst settle, then read once.
        tokio::time::sleep(SETTLE).await;
        while rx.try_recv().is_ok() {}
        // A save that removes the file before it writes the new one: wait for the new one
        // rather than read "no file" (an empty allowlist) meanwhile.
        if present.iter().any(|f| !home.join(f).exists()) {
            tokio::time::sleep(SETTLE * 3).await;
        }
        let now_fingerprint = fingerprint(&home);
        // A file another user can write may hold their settings (their allowlist, their model
        // URL, which would be sent the API key): none of it is applied. Said at once, even
        // when only its mode changed, since the next edit would not be the owner's.
        let untrusted = load::untrusted_settings(&home);
        if !untrusted.is_empty() {
            refuse(&home, &mut record, now_fingerprint, untrusted.iter().map(ToString::to_string).collect());
            continue;
        }
        if now_fingerprint == record.fingerprint && record.rejected.is_none() {
            if asked {
                tracing::info!("settings read again: nothing changed");
            }
            continue;
        }
        let loaded = match load::load(profile.as_deref()) {
            Ok(l) => l,
            Err(e) => {
                refuse(&home, &mut record, now_fingerprint, vec![format!("{e:#}")]);
                continue;
            }
        };
        if loaded.resolved.has_errors() {
            let errors = loaded.resolved.errors().map(ToString::to_string).collect();
            refuse(&home, &mut record, now_fingerprint, errors);
            continue;
        }
        let changes = hermes_core::config::changes(&config, &loaded.resolved.config);
        let new_soul = self::soul(&home);
        log_changes(&changes, new_soul != soul);
        if changes.iter().any(|c| c.live) || new_soul != soul {
            apply(&loaded);
        }
        config = loaded.resolved.config.clone();
        soul = new_soul;
        present = FILES.iter().copied().filter(|f| home.join(f).exists()).collect();
        for c in changes.iter().filter(|c| !c.live) {
            if !restart.iter().any(|k| k == c.key) {
                restart.push(c.key.to_owned());
            }
        }
        record = InForce {
            pid: std::process::id(),
            since: hermes_store::clock::now(),
            fingerprint: now_fingerprint,
            rejected: None,
            restart: restart.clone(),
        };
        write_record(&home, &record);
    }
}

fn soul(home: &Path) -> Option<String> {
    std::fs::read_to_string(home.join("SOUL.md")).ok()
}

fn refuse(home: &Path, record: &mut InForce, fingerprint: String, errors: Vec<String>) {
    if record.rejected.as_ref().is_some_and(|r| r.fingerprint == fingerprint && r.errors == errors) {
        return;
    }
    for e in &errors {
        tracing::error!("the settings were not reloaded: {e}");
    }
    tracing::error!("the gateway keeps the settings in force; fix the file and save it again (or send SIGHUP)");
    record.rejected = Some(Rejected { at: hermes_store::clock::now(), fingerprint, errors });
    write_record(home, record);
}

fn log_changes(changes: &[Change], soul: bool) {
    if changes.is_empty() && !soul {
        tracing::info!("settings read again: nothing changed");
    }
    for c in changes {
        let before = if c.before.is_empty() { "(none)" } else { c.before.as_str() };
        let after = if c.after.is_empty() { "(none)" } else { c.after.as_str() };
        if c.live {
            tracing::info!(key = c.key, before, after, origin = %c.origin, "setting changed, in force now");
        } else {
            tracing::warn!(key = c.key, before, after, origin = %c.origin, "setting changed; it applies at the next restart");
        }
    }
    if soul {
        tracing::info!("SOUL.md changed: the agent's persona is in force now");
    }
}

/// The gateway running for `home`, by its control file.
fn running_gateway(home: &Path) -> Option<u32> {
    let info = hermes_gateway::ControlInfo::read(&home.join("state"))?;
    hermes_whatsapp::lock::process_alive(info.pid).then_some(info.pid)
}

/// Why the gateway does not start on the settings files, when another user can change one of
/// them: what `status` says when no gateway runs.
pub fn refused_at_start(home: &Path) -> Option<(bool, String)> {
    let untrusted: Vec<String> = load::untrusted_settings(home).iter().map(ToString::to_string).collect();
    if untrusted.is_empty() {
        return None;
    }
    Some((false, format!("the gateway does not start on these files: {}", untrusted.join("; "))))
}

/// The settings in force, as `doctor` and `status` show them, when a gateway runs here:
/// whether they are what the files say, and in words.
pub fn describe(home: &Path) -> Option<(bool, String)> {
    let running = running_gateway(home)?;
    let record = read_record(home).filter(|r| r.pid == running)?;
    let now = fingerprint(home);
    let untrusted: Vec<String> = load::untrusted_settings(home).iter().map(ToString::to_string).collect();
    Some(if !untrusted.is_empty() {
        (
            false,
            format!(
                "the running gateway (PID {}) keeps the settings it read at {} (unix time) and applies no edit to the \
                 files: {}",
                record.pid,
                record.since,
                untrusted.join("; ")
            ),
        )
    } else if now == record.fingerprint && !record.restart.is_empty() {
        (
            false,
            format!(
                "the running gateway (PID {}) uses these settings but {}, which apply at its next restart",
                record.pid,
                record.restart.join(", ")
            ),
        )
    } else if now == record.fingerprint {
        (
            true,
            format!(
                "the running gateway (PID {}) uses these settings, read at {} (unix time)",
                record.pid, record.since
            ),
        )
    } else if let Some(r) = record.rejected.as_ref().filter(|r| r.fingerprint == now) {
        (
            false,
            format!(
                "the running gateway keeps the settings it read at {}: the files now have an error: {}",
                record.since,
                r.errors.join("; ")
            ),
        )
    } else {
        (
            false,
            format!(
                "the files changed after the running gateway read them (at {}); it reads them again a moment after \
                 each save, or on SIGHUP (kill -HUP {})",
                record.since, record.pid
            ),
        )
    })
}
