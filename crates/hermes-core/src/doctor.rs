//! `hermes doctor`'s judgement: facts in, checks out.
//!
//! The binary gathers facts (file modes, a write probe, the mount table); this module decides
//! what they mean and what the user should do. Each check is one finding with a status, a
//! message and, unless it is fine, the fix.

use std::path::{Path, PathBuf};

use crate::allowlist::{AllowEntry, Allowlist};
use crate::config::{Diagnostic, Mode, ModelConfig, Policy, Setting, Severity, UnauthorizedDm, WhatsAppConfig};
use crate::paths::{HermesHome, HomeOrigin, SessionDir, SessionDirReason};
use crate::storage::Persistence;

pub mod settings_files;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    Ok,
    Warn,
    Error,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Error => "error",
        }
    }
}

/// One finding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    /// A stable, snake_case name (JSON consumers key on it).
    pub name: &'static str,
    pub status: Status,
    pub message: String,
    pub fix: Option<String>,
}

impl Check {
    fn ok(name: &'static str, message: impl Into<String>) -> Check {
        Check { name, status: Status::Ok, message: message.into(), fix: None }
    }

    fn bad(name: &'static str, status: Status, message: impl Into<String>, fix: impl Into<String>) -> Check {
        Check { name, status, message: message.into(), fix: Some(fix.into()) }
    }
}

/// Why writing into a directory failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteFailure {
    ReadOnlyFilesystem,
    PermissionDenied,
    NoSpace,
    /// The process (EMFILE) or the system (ENFILE) has no file descriptor left: nothing to do
    /// with the disk. A flood of connections once made this read as a full disk.
    NoDescriptors,
    Other(String),
}

impl WriteFailure {
    /// What went wrong, as the end of a sentence that starts with the directory.
    pub fn describe(&self) -> String {
        match self {
            WriteFailure::ReadOnlyFilesystem => "is on a read-only filesystem".to_owned(),
            WriteFailure::PermissionDenied => "is not writable by this user".to_owned(),
            WriteFailure::NoSpace => "is on a full disk".to_owned(),
            WriteFailure::NoDescriptors => {
                "cannot be written now: the process has no file descriptor left (too many open files or \
                 connections; the disk is not the problem)"
                    .to_owned()
            }
            WriteFailure::Other(e) => format!("cannot be written: {e}"),
        }
    }

    fn fix(&self, dir: &Path) -> String {
        match self {
            WriteFailure::ReadOnlyFilesystem => format!(
                "mount {} read-write (in a container, mount a writable volume there), or set \
                 platforms.whatsapp.extra.session_path to a writable directory",
                dir.display()
            ),
            WriteFailure::PermissionDenied => {
                format!("run hermes as the owner of {0}, or fix ownership: chown -R $(id -u) {0}", dir.display())
            }
            WriteFailure::NoSpace => "free some disk space".to_owned(),
            WriteFailure::NoDescriptors => {
                "find what holds the connections or files open (ls /proc/PID/fd), or raise the limit \
                 (LimitNOFILE= in the service, ulimit -n)"
                    .to_owned()
            }
            WriteFailure::Other(_) => "check the directory and the filesystem under it".to_owned(),
        }
    }
}

/// Folders files may be sent from (`HERMES_MEDIA_ALLOW_DIRS`, `HERMES_HOME/cache`) that other
/// users can write to: a file put there can be one the agent sends. Only said when there is one.
pub fn check_media_folders(writable_by_others: &[PathBuf]) -> Option<Check> {
    let first = writable_by_others.first()?;
    let all = writable_by_others.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", ");
    Some(Check {
        name: "media_folders",
        status: Status::Warn,
        message: format!(
            "other users can write to a folder files may be sent from ({all}): a file they put there can be one the \
             agent sends"
        ),
        fix: Some(format!(
            "make it yours alone (chmod go-w {}), or name a folder of your own in HERMES_MEDIA_ALLOW_DIRS",
            first.display()
        )),
    })
}

/// What the binary found at the session directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DirState {
    /// Not there yet; `ancestor` is the nearest existing parent, probed for writing.
    Missing {
        ancestor: PathBuf,
        write: Result<(), WriteFailure>,
    },
    /// Something else is at that path.
    NotADirectory {
        kind: String,
    },
    Directory {
        mode: u32,
        write: Result<(), WriteFailure>,
    },
    /// It could not even be looked at.
    Inaccessible {
        error: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionDirFacts {
    pub state: DirState,
    pub persistence: Persistence,
}

pub fn check_home(home: &HermesHome, exists: bool) -> Check {
    let from = match (&home.origin, &home.profile) {
        (HomeOrigin::Env, None) => "from HERMES_HOME".to_owned(),
        (HomeOrigin::Default, None) => "the default".to_owned(),
        (HomeOrigin::Env, Some(p)) => format!("profile '{p}' under HERMES_HOME"),
        (HomeOrigin::Default, Some(p)) => format!("profile '{p}' under ~/.hermes"),
    };
    if exists {
        Check::ok("hermes_home", format!("{} ({from})", home.path.display()))
    } else {
        Check::bad(
            "hermes_home",
            Status::Warn,
            format!("{} ({from}) does not exist yet, so no .env or config.yaml was read", home.path.display()),
            "run `hermes whatsapp` to set up, or point HERMES_HOME at your existing Hermes folder",
        )
    }
}

/// The configuration's problems, one check each, or one ok check naming the files read.
pub fn check_config(diagnostics: &[Diagnostic], files_read: &[PathBuf]) -> Vec<Check> {
    if diagnostics.is_empty() {
        let read = if files_read.is_empty() {
            "no .env or config.yaml found; using the environment and defaults".to_owned()
        } else {
            let names: Vec<String> = files_read.iter().map(|p| p.display().to_string()).collect();
            format!("read {}", names.join(" and "))
        };
        return vec![Check::ok("config", read)];
    }
    diagnostics
        .iter()
        .map(|d| {
            let status = if d.severity == Severity::Error { Status::Error } else { Status::Warn };
            let at = d.origin.as_ref().map(|o| format!(" ({o})")).unwrap_or_default();
            Check::bad("config", status, format!("{}{at}: {}", d.key, d.message), d.fix.clone())
        })
        .collect()
}

pub fn check_session_dir(home: &Path, dir: &SessionDir, facts: &SessionDirFacts) -> Vec<Check> {
    let path = dir.path.display().to_string();
    let why = match &dir.reason {
        SessionDirReason::Configured(origin) => format!("set by {origin}"),
        SessionDirReason::Legacy => "Hermes' legacy layout, used because it exists".to_owned(),
        SessionDirReason::Default => "the default layout".to_owned(),
    };
    let mut out = vec![match &dir.shadowed {
        None => Check::ok("session_dir", format!("{path} ({why})")),
        Some(other) => Check::bad(
            "session_dir",
            Status::Warn,
            format!("{path} ({why}); {} exists too and is NOT used", other.display()),
            format!(
                "if your linked session is in {}, move it to {path} (or set platforms.whatsapp.extra.session_path); \
                 otherwise delete the unused one to avoid confusion",
                other.display()
            ),
        ),
    }];
    out.push(match &facts.state {
        DirState::Missing { ancestor, write: Ok(()) } => Check::ok(
            "session_dir_writable",
            format!(
                "does not exist yet; it will be created when you link (checked {} is writable)",
                ancestor.display()
            ),
        ),
        DirState::Missing { ancestor, write: Err(e) } => Check::bad(
            "session_dir_writable",
            Status::Error,
            format!("does not exist and cannot be created: {} {}", ancestor.display(), e.describe()),
            e.fix(ancestor),
        ),
        DirState::NotADirectory { kind } => Check::bad(
            "session_dir_writable",
            Status::Error,
            format!("{path} is a {kind}, not a directory"),
            format!("move it away (mv {path} {path}.old) so the session directory can be created"),
        ),
        DirState::Directory { write: Ok(()), .. } => Check::ok(
            "session_dir_writable",
            "exists and is writable (created, synced, renamed and removed a probe file)",
        ),
        DirState::Directory { write: Err(e), .. } => Check::bad(
            "session_dir_writable",
            Status::Error,
            format!(
                "{path} {}: the linked session cannot be saved, so every start would ask for a new scan",
                e.describe()
            ),
            e.fix(&dir.path),
        ),
        DirState::Inaccessible { error } => Check::bad(
            "session_dir_writable",
            Status::Error,
            format!("{path} cannot be inspected: {error}"),
            "check the permissions of its parent directories",
        ),
    });
    if let DirState::Directory { mode, .. } = facts.state {
        let perms = mode & 0o777;
        out.push(if perms & 0o077 == 0 {
            Check::ok("session_dir_permissions", format!("{perms:04o}"))
        } else {
            Check::bad(
                "session_dir_permissions",
                Status::Warn,
                format!("{perms:04o}: other users can read the session keys, which let anyone act as this device"),
                format!("chmod 700 {path}"),
            )
        });
    }
    out.push(match &facts.persistence {
        Persistence::Persistent => Check::ok("session_dir_persistence", "on a persistent filesystem"),
        Persistence::Volatile { fs_type, mount_point } => Check::bad(
            "session_dir_persistence",
            Status::Error,
            format!(
                "on {fs_type} ({}), which lives in memory: the session is lost at the next reboot and WhatsApp must be scanned again",
                mount_point.display()
            ),
            "set HERMES_HOME (or platforms.whatsapp.extra.session_path) to a directory on disk",
        ),
        Persistence::ContainerLayer { runtime } => Check::bad(
            "session_dir_persistence",
            Status::Warn,
            format!(
                "inside a {runtime} container's own writable layer, with no volume mounted: the session survives a restart \
                 but not re-creating the container (an update), which will ask for a new scan"
            ),
            {
                // Mounting all of HERMES_HOME keeps .env and the gateway's state too.
                let target = if dir.path.starts_with(home) { home } else { dir.path.as_path() };
                format!("mount a volume at {0}, e.g. docker run -v hermes-data:{0} ...", target.display())
            },
        ),
        Persistence::AnonymousVolume { runtime } => Check::bad(
            "session_dir_persistence",
            Status::Warn,
            format!(
                "on an anonymous {runtime} volume (the image declares one and none was named): the session survives a \
                 restart of this container, but a new `docker run` gets a new, empty volume and asks for a new scan"
            ),
            "name the volume, e.g. docker run -v hermes-data:/data ...",
        ),
        Persistence::Unknown => Check::ok("session_dir_persistence", "could not read the mount table; not checked"),
    });
    out
}

/// Every allowlist entry with its normalised form, and each problem with its fix.
pub fn check_allowlists(cfg: &WhatsAppConfig) -> Vec<Check> {
    let lists: [(&str, &Setting<Allowlist>); 2] =
        [("WHATSAPP_ALLOWED_USERS", &cfg.allowed_users), ("GATEWAY_ALLOWED_USERS", &cfg.gateway_allowed_users)];
    let mut out = Vec::new();
    for (name, setting) in lists {
        let list = &setting.value;
        if list.is_unset() {
            if name == "WHATSAPP_ALLOWED_USERS" && cfg.mode.value == Mode::Bot {
                out.push(Check::bad(
                    "allowlist",
                    Status::Warn,
                    format!("{name} is empty: no one is admitted by the allowlist"),
                    format!("add numbers with their country code, e.g. {name}=15551234567 (or * for everyone)"),
                ));
            }
            continue;
        }
        let mut shown = Vec::new();
        for e in list.entries() {
            let line = match (&e.outcome, e.duplicate_of) {
                (Ok(_), Some(first)) => format!("#{} '{}' -> duplicate of #{first}", e.position, e.raw),
                (Ok(AllowEntry::Everyone), _) => format!("#{} '*' -> everyone", e.position),
                (Ok(_), None) => format!("#{} '{}' -> {}", e.position, e.raw, e.normalized().unwrap_or_default()),
                (Err(p), _) => format!("#{} '{}' -> INVALID: {}", e.position, e.raw, p.describe()),
            };
            shown.push(line);
        }
        let message = format!("{name} (from {}): {}", setting.origin, shown.join("; "));
        let problems: Vec<String> =
            list.problems().map(|(e, p)| format!("#{} '{}': {}", e.position, e.raw, p.fix(name))).collect();
        out.push(if problems.is_empty() {
            Check::ok("allowlist", message)
        } else {
            Check::bad("allowlist", Status::Error, message, problems.join("; "))
        });
    }
    out
}

/// Who can reach the agent, in one sentence.
pub fn check_reach(cfg: &WhatsAppConfig) -> Check {
    if cfg.mode.value == Mode::SelfChat {
        return Check::ok(
            "access",
            "only you, in your own \"Message yourself\" chat (WHATSAPP_MODE=self-chat); nobody else can reach the agent",
        );
    }
    let allow_all = cfg.allow_all_users.value || cfg.gateway_allow_all_users.value;
    let lists = [&cfg.allowed_users.value, &cfg.gateway_allowed_users.value];
    let wildcard = lists.iter().any(|l| l.has_wildcard());
    let mut listed: Vec<_> = lists.iter().flat_map(|l| l.valid_users()).collect();
    listed.sort();
    listed.dedup();
    let senders = if allow_all || wildcard {
        "everyone".to_owned()
    } else if listed.is_empty() {
        "no one".to_owned()
    } else {
        format!("{} allowlisted sender{}", listed.len(), if listed.len() == 1 { "" } else { "s" })
    };
    let dms = match cfg.dm_policy.value {
        Policy::Disabled => "nobody (dm_policy disabled)".to_owned(),
        Policy::Open if !allow_all => {
            format!("{senders} (dm_policy open admits strangers only with WHATSAPP_ALLOW_ALL_USERS=true)")
        }
        Policy::Open | Policy::Allowlist => senders.clone(),
        Policy::Pairing => {
            let lists_set = lists.iter().any(|l| !l.is_unset());
            let codes = match cfg.unauthorized_dm_behavior.value {
                Some(UnauthorizedDm::Pair) => true,
                Some(UnauthorizedDm::Ignore) => false,
                None => !lists_set,
            };
            if allow_all || wildcard {
                senders.clone()
            } else if codes {
                format!("{senders}, plus strangers you approve (they are sent a pairing code)")
            } else {
                format!("{senders}, plus senders you approve with `hermes pairing approve` (strangers are ignored)")
            }
        }
    };
    let groups = match cfg.group_policy.value {
        Policy::Disabled => "none (group_policy disabled)".to_owned(),
        Policy::Pairing => "none (group_policy pairing keeps groups closed)".to_owned(),
        Policy::Open => format!("every group, for {senders}"),
        Policy::Allowlist => {
            let n = cfg.group_allowed.value.len();
            format!("{n} listed group{}, for {senders}", if n == 1 { "" } else { "s" })
        }
    };
    let message = format!("direct messages: {dms}; groups: {groups}");
    let nobody = senders == "no one" && !matches!(cfg.dm_policy.value, Policy::Pairing);
    if nobody
        || cfg.dm_policy.value == Policy::Disabled
            && !matches!(cfg.group_policy.value, Policy::Open | Policy::Allowlist)
    {
        return Check::bad(
            "access",
            Status::Warn,
            format!("{message}: nobody can reach the agent"),
            "add senders to WHATSAPP_ALLOWED_USERS (country code, no +), e.g. WHATSAPP_ALLOWED_USERS=15551234567",
        );
    }
    Check::ok("access", message)
}

/// What Hermes Agent's API server said when asked (`/health`, `/v1/capabilities`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AgentSeen {
    pub reachable: bool,
    pub version: Option<String>,
    /// `None` when it could not be asked.
    pub key_accepted: Option<bool>,
    pub problem: Option<String>,
}

/// Which agent answers, and for Hermes Agent whether it is there and takes the key.
pub fn check_agent(agent: &crate::config::AgentConfig, seen: Option<&AgentSeen>) -> Check {
    use crate::config::Brain;
    let (brain, why_not) = agent.brain();
    let url = crate::redact::redact_url(&agent.base_url());
    match (brain, seen) {
        (Brain::Model, _) => match why_not {
            Some(why) => Check::bad(
                "agent",
                Status::Warn,
                format!("Hermes Agent's API server is named, but the model block answers: {why}"),
                "set API_SERVER_KEY in .env to the key Hermes' API server uses (or WHATSAPP_AGENT=model to silence this)",
            ),
            None => Check::ok(
                "agent",
                "the model block answers (a chat-completions model; hermes keeps each chat's history). For Hermes \
                 Agent itself, with its tools, memory and reminders: API_SERVER_ENABLED=true and API_SERVER_KEY in .env",
            ),
        },
        (Brain::Hermes { .. }, None) => Check::ok("agent", format!("Hermes Agent's API server at {url} answers")),
        (Brain::Hermes { .. }, Some(seen)) if !seen.reachable => Check::bad(
            "agent",
            Status::Warn,
            format!(
                "Hermes Agent's API server at {url} answers, but is not reachable now: {}",
                seen.problem.as_deref().unwrap_or("no answer")
            ),
            "start Hermes Agent from this folder (Hermes Agent's own gateway command, with API_SERVER_ENABLED=true in .env); \
             messages wait until it answers",
        ),
        (Brain::Hermes { .. }, Some(seen)) if seen.key_accepted == Some(false) => Check::bad(
            "agent",
            Status::Error,
            format!("Hermes Agent's API server at {url} refuses the key (API_SERVER_KEY)"),
            "set API_SERVER_KEY in .env to the key Hermes' API server was started with, then restart both",
        ),
        (Brain::Hermes { .. }, Some(seen)) => Check::ok(
            "agent",
            format!(
                "Hermes Agent {}at {url} answers, one Hermes session per chat; it accepts the key",
                seen.version.as_deref().map(|v| format!("{v} ")).unwrap_or_default()
            ),
        ),
    }
}

/// Whether Hermes Agent, run from the same `HERMES_HOME`, would start its own WhatsApp bridge
/// on the device hermes owns (`crate::coexist`).
pub fn check_hermes_bridge(bridge: &crate::coexist::Bridge) -> Check {
    use crate::coexist::{Bridge, FIX};
    match bridge {
        Bridge::Off(why) => {
            Check::ok("hermes_whatsapp", format!("Hermes Agent's own WhatsApp bridge stays off ({why})"))
        }
        Bridge::Starts { why, connects: true } => Check::bad(
            "hermes_whatsapp",
            Status::Error,
            format!(
                "Hermes Agent, started from this folder, would start its own WhatsApp bridge on this linked device \
                 ({why}): two clients on one device replace each other"
            ),
            FIX,
        ),
        Bridge::Starts { why, connects: false } => Check::bad(
            "hermes_whatsapp",
            Status::Warn,
            format!(
                "Hermes Agent, started from this folder, would try to start its own WhatsApp bridge ({why}); without \
                 a Baileys session or Node it stops at once, with errors in its log"
            ),
            FIX,
        ),
    }
}

/// `.env` holds the model's API key: nobody else may read it. `mode` is the file's permission
/// bits, `None` when there is no `.env`.
pub fn check_env_file(mode: Option<u32>, model: &ModelConfig) -> Option<Check> {
    let mode = mode?;
    let holds_key = matches!(model.api_key.origin, crate::config::Origin::DotEnv(_));
    if !holds_key {
        return None;
    }
    Some(if mode & 0o077 == 0 {
        Check::ok("env_file", "readable by you only (it holds the API key)")
    } else {
        Check::bad(
            "env_file",
            Status::Warn,
            format!("holds the API key and others can read it (mode {:o})", mode & 0o777),
            "chmod 600 .env in HERMES_HOME",
        )
    })
}

/// Free space on the filesystems of the session and `state/`, each `(where, its space)`,
/// against the reserve below which the gateway stops receiving ([`crate::reserve`] judges; a
/// volume too small for the reserve says so, since freeing space there cannot help).
pub fn check_free_space(places: &[(PathBuf, crate::reserve::Space)], reserve_bytes: u64) -> Check {
    use crate::reserve::Room;
    const MIB: u64 = 1024 * 1024;
    let status = |room: Room| match room {
        Room::Plenty => Status::Ok,
        Room::Low | Room::VolumeTooSmall { pauses: false, .. } => Status::Warn,
        Room::BelowReserve | Room::VolumeTooSmall { pauses: true, .. } => Status::Error,
    };
    // The worst place, and of those alike the tightest; of those the first (the session's):
    // `max_by_key` keeps the last of equals, so the places are walked from the end.
    let worst = places
        .iter()
        .rev()
        .map(|(dir, space)| (crate::reserve::judge(dir, *space, reserve_bytes), dir, space.free))
        .max_by_key(|(verdict, _, free)| (status(verdict.room), std::cmp::Reverse(*free)));
    match worst {
        None => Check::ok("free_space", "nothing to check yet"),
        Some((verdict, dir, free)) => match (status(verdict.room), verdict.fix) {
            (Status::Ok, _) | (_, None) => Check::ok(
                "free_space",
                format!("{} MiB free where the session and state live (the tightest: {})", free / MIB, dir.display()),
            ),
            (status, Some(fix)) => Check::bad("free_space", status, verdict.problem, fix),
        },
    }
}

pub fn check_model(model: &ModelConfig) -> Check {
    let name = model.name.value.as_deref().unwrap_or("(provider default)");
    let base =
        model.base_url.value.as_deref().map_or_else(|| "(provider default)".to_owned(), crate::redact::redact_url);
    match &model.api_key.value {
        Some(key) => Check::ok("model", format!("model {name} at {base}; API key {key} from {}", model.api_key.origin)),
        None if model.base_url.value.is_some() => {
            Check::ok("model", format!("model {name} at {base}; no API key (fine for local servers such as Ollama)"))
        }
        None => Check::bad(
            "model",
            Status::Warn,
            format!("no LLM API key found for model {name}"),
            "set OPENAI_API_KEY or OPENROUTER_API_KEY in .env, or model.base_url in config.yaml for a local server",
        ),
    }
}

#[cfg(test)]
mod tests;

/// What the session store holds, as the WhatsApp edge found it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreFacts {
    Missing,
    Empty,
    NotLinked,
    Corrupt(String),
    Linked { phone: String, device: u16 },
}

/// Is the gateway linked, and is anyone using the session right now.
pub fn check_link(store: &StoreFacts, in_use_by: Option<u32>, node_bridge_creds: Option<&Path>) -> Vec<Check> {
    let mut out = vec![match store {
        StoreFacts::Linked { phone, device } => {
            Check::ok("whatsapp_link", format!("linked to +{phone} (device {device})"))
        }
        StoreFacts::Missing => Check::bad(
            "whatsapp_link",
            Status::Warn,
            "not linked yet",
            "run `hermes whatsapp` and scan the QR code (or use --pair-code PHONE)",
        ),
        StoreFacts::Empty | StoreFacts::NotLinked => Check::bad(
            "whatsapp_link",
            Status::Warn,
            "a session store exists but holds no linked device (an interrupted link)",
            "run `hermes whatsapp` to link",
        ),
        StoreFacts::Corrupt(why) => Check::bad(
            "whatsapp_link",
            Status::Error,
            format!("the session store cannot be read: {why}"),
            "run `hermes whatsapp repair` to link again (the damaged store is kept as a backup)",
        ),
    }];
    if let Some(pid) = in_use_by {
        out.push(Check::ok("session_lock", format!("in use by PID {pid} (a running gateway or wizard)")));
    }
    if let Some(creds) = node_bridge_creds {
        let linked_here = matches!(store, StoreFacts::Linked { .. });
        out.push(Check::bad(
            "node_bridge_session",
            if linked_here { Status::Ok } else { Status::Warn },
            if linked_here {
                format!("{} is a session of Hermes' Node bridge (Baileys), and hermes has its own session", creds.display())
            } else {
                format!(
                    "{} is a session of Hermes' Node bridge (Baileys), not taken over yet: hermes can go on as that same \
                     linked device, with no new QR code",
                    creds.display()
                )
            },
            if linked_here {
                "do not start Hermes' bridge on this session again: two clients on one device replace each other".to_owned()
            } else {
                "stop Hermes' bridge, then run `hermes whatsapp import`".to_owned()
            },
        ));
    }
    out
}
