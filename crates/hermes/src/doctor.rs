//! `hermes doctor`: gathers the facts, lets `hermes_core::doctor` judge them, prints.

use std::io::Write;

use hermes_core::config::Origin;
use hermes_core::doctor::{self, Check, Status};
use serde::Serialize;

use crate::exit;
use crate::load;

pub async fn run(profile: Option<&str>, json: bool) -> anyhow::Result<u8> {
    let loaded = load::load(profile)?;
    let cfg = &loaded.resolved.config;
    let session = loaded.session_dir();
    let facts = hermes_whatsapp::session_dir::inspect(&session.path, loaded.container_var.clone());

    let mut checks = vec![doctor::check_home(&loaded.home, loaded.home_exists)];
    checks.extend(doctor::check_config(&loaded.resolved.diagnostics, &loaded.files_read));
    checks.push(settings_check(&loaded));
    if let Some((current, message)) = crate::reload::describe(&loaded.home.path) {
        let (status, fix) = if current {
            (Status::Ok, None)
        } else {
            (Status::Warn, Some("fix and save the file; the gateway reads it again by itself".to_owned()))
        };
        checks.push(Check { name: "settings_in_force", status, message, fix });
    }
    checks.extend(doctor::settings_files::check(&load::settings_files(&loaded.home.path), load::me()));
    checks.push(doctor::check_hermes_bridge(&loaded.hermes_bridge()));
    checks.extend(doctor::check_session_dir(&loaded.home.path, &session, &facts));
    checks.extend(link_checks(&loaded, &session.path).await);
    checks.extend(doctor::check_allowlists(&cfg.whatsapp));
    checks.push(doctor::check_reach(&cfg.whatsapp));
    let seen = agent_seen(&cfg.agent).await;
    checks.push(doctor::check_agent(&cfg.agent, seen.as_ref()));
    if matches!(cfg.agent.brain().0, hermes_core::config::Brain::Model) {
        checks.push(doctor::check_model(&cfg.model));
    }
    checks.extend(doctor::check_env_file(env_mode(&loaded), &cfg.model));
    let reserve = cfg.whatsapp.min_free_mb.value.saturating_mul(1024 * 1024);
    let free = hermes_whatsapp::status::free_space(&session.path, &loaded.home.path.join("state"));
    checks.push(doctor::check_free_space(&free, reserve));
    let allow = cfg.media.media_allow_dirs.value.as_deref();
    checks.extend(doctor::check_media_folders(&hermes_gateway::outgoing::writable_by_others(&loaded.home.path, allow)));

    let ok = checks.iter().all(|c| c.status != Status::Error);
    let mut out = std::io::stdout().lock();
    let written = if json {
        let report = JsonReport { ok, checks: checks.iter().map(JsonCheck::from).collect() };
        let text = serde_json::to_string_pretty(&report).map_err(std::io::Error::from)?;
        writeln!(out, "{text}")
    } else {
        out.write_all(crate::program::fix(&render(&checks)).as_bytes())
    };
    if let Err(e) = written
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        return Err(e.into());
    }
    Ok(if ok { exit::OK } else { exit::PROBLEM })
}

/// Asks Hermes Agent's API server, when it is the agent, whether it is there and takes the key.
pub(crate) async fn agent_seen(agent: &hermes_core::config::AgentConfig) -> Option<doctor::AgentSeen> {
    let hermes_core::config::Brain::Hermes { base_url, key } = agent.brain().0 else { return None };
    let probe = hermes_agent::HermesApi::new(&base_url, key.expose()).probe().await;
    Some(doctor::AgentSeen {
        reachable: probe.reachable,
        version: probe.version,
        key_accepted: probe.key_accepted,
        problem: probe.problem,
    })
}

fn env_mode(loaded: &load::Loaded) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(loaded.env_file()).ok().map(|m| m.permissions().mode())
}

/// The link: what the store holds, who holds the lock, and a Node-bridge session left by Hermes.
async fn link_checks(loaded: &load::Loaded, session_dir: &std::path::Path) -> Vec<Check> {
    use hermes_whatsapp::store::StoreState;
    // Read from a snapshot: nothing in the session changes.
    let facts = match hermes_whatsapp::store::inspect_read_only(session_dir).await {
        StoreState::Missing => doctor::StoreFacts::Missing,
        StoreState::Empty => doctor::StoreFacts::Empty,
        StoreState::NotLinked => doctor::StoreFacts::NotLinked,
        StoreState::Corrupt(why) => doctor::StoreFacts::Corrupt(why),
        StoreState::Linked(a) => doctor::StoreFacts::Linked { phone: a.phone, device: a.device },
    };
    let holder = hermes_whatsapp::lock::SessionLock::holder(session_dir);
    doctor::check_link(&facts, holder, loaded.bridge_creds().as_deref())
}

/// Where each setting came from: the answer to "I set it, why does nothing change?". Settings
/// left at their defaults are counted, not listed, to keep the report readable.
fn settings_check(loaded: &load::Loaded) -> Check {
    let summary = loaded.resolved.config.summary();
    let mut lines: Vec<String> = summary
        .iter()
        .filter(|l| l.origin != Origin::Default)
        .map(|l| format!("{}={} ({})", l.key, l.value, l.origin))
        .collect();
    let defaults = summary.iter().filter(|l| l.origin == Origin::Default).count();
    lines.push(format!("{defaults} other settings at their defaults"));
    Check { name: "settings", status: Status::Ok, message: lines.join("\n"), fix: None }
}

fn render(checks: &[Check]) -> String {
    let mut s = String::new();
    for c in checks {
        let mut lines = c.message.lines();
        s += &format!("{:<5} {:<24} {}\n", c.status.as_str(), c.name, lines.next().unwrap_or_default());
        for l in lines {
            s += &format!("{:<30} {l}\n", "");
        }
        if let Some(fix) = &c.fix {
            s += &format!("{:<30} fix: {fix}\n", "");
        }
    }
    let count = |st| checks.iter().filter(|c| c.status == st).count();
    let (errors, warnings) = (count(Status::Error), count(Status::Warn));
    s += &format!("\n{errors} error(s), {warnings} warning(s)\n");
    s
}

#[derive(Serialize)]
struct JsonCheck {
    name: &'static str,
    status: &'static str,
    message: String,
    fix: Option<String>,
}

impl From<&Check> for JsonCheck {
    fn from(c: &Check) -> JsonCheck {
        JsonCheck { name: c.name, status: c.status.as_str(), message: c.message.clone(), fix: c.fix.clone() }
    }
}

#[derive(Serialize)]
struct JsonReport {
    ok: bool,
    checks: Vec<JsonCheck>,
}
