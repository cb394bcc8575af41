//! `hermes whatsapp` (link this gateway to WhatsApp) and `hermes whatsapp status`.

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use hermes_core::allowlist::{Allowlist, parse_user};
use hermes_core::config::{Mode, Origin, dotenv};
use hermes_whatsapp::linking::{self, LinkOptions, LinkProgress};
use hermes_whatsapp::lock::{LockError, SessionLock};
use hermes_whatsapp::probe::{self, Probe};
use hermes_whatsapp::store::{self, StoreState};
use serde_json::json;

use crate::exit;
use crate::load::{self, Loaded};
use crate::qr;

#[derive(Debug, Default, clap::Args)]
pub struct LinkArgs {
    /// Link with a pairing code for this phone number (with country code) instead of a QR code.
    #[arg(long, value_name = "PHONE")]
    pair_code: Option<String>,
    /// Never prompt; without a terminal this is the default.
    #[arg(long)]
    no_input: bool,
    /// Print one JSON object per event: qr, pair_code, paired, connected, error.
    #[arg(long)]
    json: bool,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 300, value_name = "SECS")]
    timeout: u64,
    /// Replace a session that is still linked (a backup is kept).
    #[arg(long)]
    force: bool,
    /// bot (a separate number for the agent) or self-chat (your own number); saved to .env.
    #[arg(long, value_name = "MODE")]
    mode: Option<String>,
    /// Who may talk to the agent: numbers with country code, comma-separated, or *; saved to .env.
    #[arg(long, value_name = "LIST")]
    allow: Option<String>,
}

/// Prints progress as JSON lines or as text for a person.
struct Out {
    json: bool,
}

impl Out {
    fn event(&self, value: serde_json::Value, text: impl FnOnce() -> String) {
        let mut stdout = std::io::stdout().lock();
        let _ = if self.json { writeln!(stdout, "{value}") } else { writeln!(stdout, "{}", text()) };
        let _ = stdout.flush();
    }

    fn error(&self, kind: &str, message: &str) {
        if self.json {
            self.event(json!({ "event": "error", "kind": kind, "message": message }), String::new);
        } else {
            eprintln!("hermes: {message}");
        }
    }
}

fn countdown_line(secs: u64) -> String {
    format!("This code expires in {secs:>2} s; a new one replaces it automatically. Ctrl-C cancels.")
}

/// Rewrites the QR screen's last line every second with the time left.
async fn countdown(deadline: std::sync::Arc<std::sync::Mutex<Option<std::time::Instant>>>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let Some(at) = *deadline.lock().expect("not poisoned") else { continue };
        let left = at.saturating_duration_since(std::time::Instant::now()).as_secs();
        let mut stdout = std::io::stdout().lock();
        let _ = write!(stdout, "\r\x1b[2K{}", countdown_line(left));
        let _ = stdout.flush();
    }
}

fn prompt(question: &str) -> anyhow::Result<String> {
    eprint!("{question} ");
    std::io::stderr().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim().to_owned())
}

/// Writes settings to `HERMES_HOME/.env`, keeping everything else in it; the file is 0600.
pub(crate) fn save_env(loaded: &Loaded, updates: &[(&str, &str)]) -> anyhow::Result<()> {
    hermes_store::files::create_private_dir_all(&loaded.home.path)
        .with_context(|| format!("create {}", loaded.home.path.display()))?;
    let path = loaded.env_file();
    let before = match std::fs::read_to_string(&path) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("read {}", path.display())),
    };
    let after = dotenv::set_vars(&before, updates);
    hermes_store::files::write_private(&path, after.as_bytes()).with_context(|| format!("write {}", path.display()))?;
    Ok(())
}

/// Mode and allowlist: from the flags, else asked for on a terminal when not set yet.
fn settings(
    loaded: &Loaded,
    args: &LinkArgs,
    interactive: bool,
    out: &Out,
) -> anyhow::Result<Option<Vec<(&'static str, String)>>> {
    let cfg = &loaded.resolved.config.whatsapp;
    let mut updates = Vec::new();
    let mode = match &args.mode {
        Some(m) => Some(m.clone()),
        None if interactive && !cfg.mode.is_explicit() => {
            let answer = prompt("Mode: 1) a separate bot number (recommended)  2) your own number (self-chat) [1]:")?;
            Some(if answer == "2" { "self-chat".to_owned() } else { "bot".to_owned() })
        }
        None => None,
    };
    if let Some(m) = mode {
        // Read as WHATSAPP_MODE is read: one parser, the same spellings.
        let mode = match Mode::parse(&m) {
            Ok(mode) => mode,
            Err(accepted) => {
                out.error("usage", &format!("--mode '{}' is not valid; {accepted}", m.trim().to_ascii_lowercase()));
                return Ok(None);
            }
        };
        updates.push(("WHATSAPP_MODE", mode.as_str().to_owned()));
    }
    let problems_of = |list: &Allowlist| -> Vec<String> {
        list.problems()
            .map(|(e, p)| {
                format!("entry #{} '{}' {}; {}", e.position, e.raw, p.describe(), p.fix("WHATSAPP_ALLOWED_USERS"))
            })
            .collect()
    };
    let list = match &args.allow {
        Some(a) => Some(Allowlist::parse(a)),
        // On a terminal, ask until the answer is a valid list.
        None if interactive && cfg.allowed_users.value.is_unset() => loop {
            let answer = prompt(
                "Who may talk to the agent? Phone numbers with country code, comma-separated, or * for anyone:",
            )?;
            let list = Allowlist::parse(&answer);
            let problems = problems_of(&list);
            if problems.is_empty() {
                break Some(list);
            }
            for p in problems {
                eprintln!("  {p}");
            }
        },
        None => None,
    };
    if let Some(list) = list {
        let problems = problems_of(&list);
        if !problems.is_empty() {
            out.error("usage", &format!("the allowed users are not valid: {}", problems.join("; ")));
            return Ok(None);
        }
        let normalized: Vec<String> = list.entries().iter().filter_map(|e| e.normalized()).collect();
        updates.push(("WHATSAPP_ALLOWED_USERS", normalized.join(",")));
    }
    Ok(Some(updates))
}

/// What every session command does first: configuration, then the session lock.
struct Prepared {
    loaded: Loaded,
    out: Out,
    interactive: bool,
    session_dir: std::path::PathBuf,
    pair_code_phone: Option<String>,
    /// `WHATSAPP_SERVER_URL`, already checked against this build.
    server_url: Option<String>,
    _lock: SessionLock,
}

/// Loads the configuration and takes the session lock; `Err(code)` when the command must end.
fn prepare(profile: Option<&str>, args: &LinkArgs) -> anyhow::Result<Result<Prepared, u8>> {
    let out = Out { json: args.json };
    let loaded = load::load(profile)?;
    if loaded.resolved.has_errors() {
        for d in loaded.resolved.errors() {
            out.error("config", &format!("configuration error: {d}"));
        }
        return Ok(Err(exit::USAGE));
    }
    let interactive = !args.no_input && !args.json && std::io::stdin().is_terminal();
    let pair_code_phone = match &args.pair_code {
        None => None,
        Some(p) => match parse_user(p).ok().and_then(|u| u.phone().cloned()) {
            Some(phone) => Some(phone.as_str().to_owned()),
            None => {
                out.error(
                    "usage",
                    &format!("--pair-code '{p}' is not a phone number with its country code, e.g. 15551234567"),
                );
                return Ok(Err(exit::USAGE));
            }
        },
    };
    let server_url = loaded.resolved.config.whatsapp.server_url.value.clone();
    if let Some(url) = &server_url
        && let Err(e) = linking::check_server_url(url)
    {
        out.error("config", &e);
        return Ok(Err(exit::USAGE));
    }
    let session_dir = loaded.session_dir().path;
    let lock = match SessionLock::acquire(&session_dir) {
        Ok(l) => l,
        Err(e @ LockError::Held { .. }) => {
            out.error("session_in_use", &e.to_string());
            return Ok(Err(exit::PROBLEM));
        }
        Err(e) => return Err(e.into()),
    };
    Ok(Ok(Prepared { loaded, out, interactive, session_dir, pair_code_phone, server_url, _lock: lock }))
}

pub async fn link(profile: Option<&str>, args: &LinkArgs) -> anyhow::Result<u8> {
    let p = match prepare(profile, args)? {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    let Some(updates) = settings(&p.loaded, args, p.interactive, &p.out)? else { return Ok(exit::USAGE) };
    if !updates.is_empty() {
        let pairs: Vec<(&str, &str)> = updates.iter().map(|(k, v)| (*k, v.as_str())).collect();
        save_env(&p.loaded, &pairs)?;
    }
    link_async(&p.loaded, args, &p.out, p.interactive, &p.session_dir, p.pair_code_phone.clone()).await
}

/// How long `repair` and `unlink` wait for WhatsApp's answer at most.
const PROBE_TIMEOUT: Duration = Duration::from_secs(30);

/// `hermes whatsapp repair`: re-links only a session WhatsApp really ended (or `--force`).
pub async fn repair(profile: Option<&str>, args: &LinkArgs) -> anyhow::Result<u8> {
    let p = match prepare(profile, args)? {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    let server_url = p.server_url.clone();
    let out = &p.out;
    let why = match store::inspect(&p.session_dir).await {
        StoreState::Linked(account) => {
            let timeout = PROBE_TIMEOUT.min(Duration::from_secs(args.timeout));
            match probe::probe(&p.session_dir, server_url.as_deref(), timeout, Some(journal(&p.loaded)?))
                .await
                .map_err(anyhow::Error::msg)?
            {
                Probe::Valid if !args.force => {
                    out.event(json!({ "event": "probe", "result": "valid", "phone": account.phone }), || {
                        format!("Your session is fine (linked to +{}); nothing was changed.", account.phone)
                    });
                    return Ok(exit::OK);
                }
                Probe::Valid => "--force: re-linking a valid session".to_owned(),
                Probe::Invalid(why) => why,
                Probe::ClientOutdated => {
                    out.error(
                        "client_outdated",
                        "WhatsApp refuses this version of hermes: update hermes; the session was not changed and needs no re-link",
                    );
                    return Ok(exit::PROBLEM);
                }
                Probe::Banned(secs) => {
                    out.error(
                        "temporarily_banned",
                        &format!(
                            "WhatsApp banned this number for {secs} s; the session is fine and nothing was changed"
                        ),
                    );
                    return Ok(exit::PROBLEM);
                }
                Probe::Unreachable => {
                    out.error(
                        "unreachable",
                        "cannot tell whether the session is valid: WhatsApp could not be reached (network); nothing was changed",
                    );
                    return Ok(exit::PROBLEM);
                }
            }
        }
        StoreState::Missing => "there is no session yet".to_owned(),
        StoreState::Empty => "the session store is empty".to_owned(),
        StoreState::NotLinked => "linking never finished".to_owned(),
        StoreState::Corrupt(e) => format!("the session store cannot be read ({e})"),
    };
    out.event(json!({ "event": "probe", "result": "invalid", "reason": why }), || {
        format!("The session needs a new link: {why}. The old one is kept as a backup once the new link works.")
    });
    run_linking(&p.loaded, args, out, p.interactive, &p.session_dir, p.pair_code_phone.clone()).await
}

/// `hermes whatsapp unlink`: logs the device out on WhatsApp, then moves the session to a backup.
pub async fn unlink(profile: Option<&str>, args: &LinkArgs) -> anyhow::Result<u8> {
    let p = match prepare(profile, args)? {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    let server_url = p.server_url.clone();
    let out = &p.out;
    if let StoreState::Linked(account) = store::inspect(&p.session_dir).await
        && let Err(why) =
            probe::logout(&p.session_dir, &account, server_url.as_deref(), PROBE_TIMEOUT, Some(journal(&p.loaded)?))
                .await
        && !args.force
    {
        out.error(
            "logout_failed",
            &format!(
                "could not log out on WhatsApp ({why}); nothing was changed. Run `hermes whatsapp unlink --force` to remove the \
                 session here anyway, then remove the device under Linked Devices on the phone"
            ),
        );
        return Ok(exit::PROBLEM);
    }
    let moved = hermes_whatsapp::backup::move_to_backup(&p.session_dir, &p.session_dir, hermes_store::clock::now())?;
    for w in hermes_whatsapp::backup::rotate(&p.session_dir) {
        eprintln!("hermes: warning: {w}");
    }
    match moved {
        Some(b) => out.event(json!({ "event": "unlinked", "backup": b.display().to_string() }), || {
            format!("Unlinked. The session was moved to {} (the last three backups are kept).", b.display())
        }),
        None => {
            out.event(json!({ "event": "unlinked", "backup": null }), || "There was no session to unlink.".to_owned())
        }
    }
    save_env(&p.loaded, &[("WHATSAPP_ENABLED", "false")])?;
    Ok(exit::OK)
}

async fn link_async(
    loaded: &Loaded,
    args: &LinkArgs,
    out: &Out,
    interactive: bool,
    session_dir: &Path,
    pair_code_phone: Option<String>,
) -> anyhow::Result<u8> {
    if let StoreState::Linked(account) = store::inspect(session_dir).await
        && !args.force
    {
        let question =
            format!("This gateway is already linked to +{}. Replace that link? A backup is kept. [y/N]", account.phone);
        if !interactive || !matches!(prompt(&question)?.to_ascii_lowercase().as_str(), "y" | "yes") {
            out.error(
                "already_linked",
                &format!(
                    "already linked to +{} and nothing was changed; run `hermes whatsapp --force` to link again (a backup is kept)",
                    account.phone
                ),
            );
            return Ok(exit::PROBLEM);
        }
    }
    // Switching from Hermes: its bridge's linked session is here. Taking it over needs no QR
    // code and keeps the phone's Linked Devices as they are; a new link would add a device.
    if !args.force && hermes_whatsapp::import::bridge_session(session_dir) {
        let question = "Hermes' WhatsApp bridge has a linked session here. Take it over (no QR code, the same linked \
                        device)? Stop the bridge first. [Y/n]";
        if !interactive {
            out.error(
                "bridge_session",
                "the session of Hermes' WhatsApp bridge is here: stop the bridge and run `hermes whatsapp import` to take \
                 it over (no QR code), or `hermes whatsapp --force` to link a new device instead",
            );
            return Ok(exit::PROBLEM);
        }
        if !matches!(prompt(question)?.to_ascii_lowercase().as_str(), "n" | "no") {
            return crate::import::take_over(session_dir, session_dir, false, false, args.json).await;
        }
    }
    run_linking(loaded, args, out, interactive, session_dir, pair_code_phone).await
}

/// The linking flow proper: progress, install, `.env`; the caller decided it should run.
async fn run_linking(
    loaded: &Loaded,
    args: &LinkArgs,
    out: &Out,
    interactive: bool,
    session_dir: &Path,
    pair_code_phone: Option<String>,
) -> anyhow::Result<u8> {
    let opts = LinkOptions {
        session_dir: session_dir.to_path_buf(),
        pair_code_phone,
        timeout: Duration::from_secs(args.timeout),
        server_url: loaded.resolved.config.whatsapp.server_url.value.clone(),
        push_name: hermes_whatsapp::linking::PUSH_NAME.to_owned(),
    };
    let png = session_dir.with_file_name("qr.png");
    // When the QR code on screen expires; a ticker counts down to it on its last line.
    let deadline = std::sync::Arc::new(std::sync::Mutex::new(None::<std::time::Instant>));
    let ticker = interactive.then(|| tokio::spawn(countdown(deadline.clone())));
    let progress = |p: LinkProgress| match p {
        LinkProgress::Qr { code, expires_in } => {
            let secs = expires_in.as_secs();
            if interactive {
                let shown = qr::terminal(&code).unwrap_or_default();
                // Redrawn in place: a rotated code replaces the old one on screen.
                let mut stdout = std::io::stdout().lock();
                let _ = write!(
                    stdout,
                    "\x1b[2J\x1b[HOpen WhatsApp on the phone > Settings > Linked Devices > Link a Device, and scan:\n\n{shown}\n{}",
                    countdown_line(secs)
                );
                let _ = stdout.flush();
                *deadline.lock().expect("not poisoned") = Some(std::time::Instant::now() + expires_in);
            } else {
                let written = qr::write_png(&code, &png).map(|()| png.display().to_string());
                let path = written.as_ref().ok().cloned();
                out.event(json!({ "event": "qr", "qr": code, "expires_in": secs, "png": path }), || match &written {
                    Ok(p) => format!("Scan the QR code in {p} with WhatsApp (Linked Devices > Link a Device); it expires in {secs} s."),
                    Err(e) => format!("could not write the QR code image: {e:#}; QR data: {code}"),
                });
            }
        }
        LinkProgress::PairCode { code, expires_in } => {
            let shown = if code.len() == 8 { format!("{}-{}", &code[..4], &code[4..]) } else { code.clone() };
            out.event(json!({ "event": "pair_code", "code": code, "expires_in": expires_in.as_secs() }), || {
                format!(
                    "On the phone: WhatsApp > Settings > Linked Devices > Link a Device > Link with phone number instead, and enter:\n\n    {shown}\n"
                )
            });
        }
        LinkProgress::Paired { phone } => {
            *deadline.lock().expect("not poisoned") = None;
            out.event(json!({ "event": "paired", "phone": phone }), || {
                "\nThe phone accepted this device; logging in...".to_owned()
            });
        }
        _ => {}
    };
    let cancel = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let result = linking::link(&opts, progress, cancel, hermes_store::clock::now()).await;
    if let Some(t) = ticker {
        t.abort();
        println!();
    }
    let _ = std::fs::remove_file(&png);
    match result {
        Ok(linked) => {
            for w in &linked.warnings {
                eprintln!("hermes: warning: {w}");
            }
            // hermes owns the device now: Hermes Agent, run from this folder, must not start its
            // own bridge on it (hermes itself does not read the variable).
            save_env(loaded, &[("WHATSAPP_ENABLED", "false")])?;
            // What the gateway recorded about the previous session is history now.
            hermes_whatsapp::status::forget_record(&loaded.home.path.join("state"));
            let a = &linked.account;
            out.event(
                json!({ "event": "connected", "phone": a.phone, "lid": a.lid, "name": a.name, "session": session_dir.display().to_string() }),
                || {
                    let mut s = format!("Linked to +{} (device {}). The session is kept in {}.", a.phone, a.device, session_dir.display());
                    if let Some(b) = &linked.backup {
                        s += &format!("\nThe previous session was moved to {}.", b.display());
                    }
                    s + "\nStart the gateway with: hermes gateway"
                },
            );
            Ok(exit::OK)
        }
        Err(e) => {
            let (kind, status) = match e {
                linking::LinkError::Timeout(_) => ("timeout", exit::PROBLEM),
                linking::LinkError::QrExpired => ("qr_expired", exit::PROBLEM),
                linking::LinkError::Interrupted => ("interrupted", exit::PROBLEM),
                linking::LinkError::Refused(_) => ("refused", exit::PROBLEM),
                linking::LinkError::PasskeyRequired => ("passkey_required", exit::PROBLEM),
                linking::LinkError::ServerUrl(_) => ("config", exit::USAGE),
                // The session or a file could not be written: not the user's doing.
                _ => ("io", exit::INTERNAL),
            };
            out.error(kind, &e.to_string());
            Ok(status)
        }
    }
}

/// The gateway's journal, for a command that connects with the session (`repair`, `unlink`):
/// what WhatsApp delivers while it is connected is kept, and answered by the next gateway.
fn journal(loaded: &Loaded) -> anyhow::Result<hermes_whatsapp::journal::JournalHook> {
    let db = crate::gateway::open_db(&loaded.home.path)?;
    let notify = || std::sync::Arc::new(tokio::sync::Notify::new());
    Ok(hermes_whatsapp::journal::JournalHook::new(db, notify(), notify()))
}

pub async fn status(profile: Option<&str>, json: bool) -> anyhow::Result<u8> {
    let loaded = load::load(profile)?;
    let session = loaded.session_dir();
    let reserve = loaded.resolved.config.whatsapp.min_free_mb.value.saturating_mul(1024 * 1024);
    let st = hermes_whatsapp::status::status(&session.path, &loaded.home.path.join("state"), reserve).await;
    let from = match &session.reason {
        hermes_core::paths::SessionDirReason::Configured(Origin::Default)
        | hermes_core::paths::SessionDirReason::Default => None,
        hermes_core::paths::SessionDirReason::Legacy => Some("Hermes' legacy layout".to_owned()),
        hermes_core::paths::SessionDirReason::Configured(o) => Some(o.to_string()),
    };
    let account = match &st.store {
        StoreState::Linked(a) => json!({ "phone": a.phone, "lid": a.lid, "name": a.name, "device": a.device }),
        _ => serde_json::Value::Null,
    };
    let record = st.record.as_ref();
    let name = st.state.as_str();
    let settings =
        crate::reload::describe(&loaded.home.path).or_else(|| crate::reload::refused_at_start(&loaded.home.path));
    // The listener's page with its token: this command is the owner's (state/ is 0700), and
    // the page is where a headless gateway is linked again.
    let page = st
        .gateway_running
        .then(|| hermes_gateway::ControlInfo::read(&loaded.home.path.join("state")))
        .flatten()
        .and_then(|i| Some(page_address(&i.http_url?, &i.http_token?)));
    let agent_check = hermes_core::doctor::check_agent(
        &loaded.resolved.config.agent,
        crate::doctor::agent_seen(&loaded.resolved.config.agent).await.as_ref(),
    );
    let agent =
        json!({ "status": agent_check.status.as_str(), "message": agent_check.message, "fix": agent_check.fix });
    // Chats a person took over: the agent does not answer them now.
    let now = hermes_store::clock::now();
    let paused = hermes_store::Store::open_read_only(&loaded.home.path.join("state/hermes.db"))
        .ok()
        .flatten()
        .and_then(|s| s.paused(now).ok())
        .unwrap_or_default();
    let mut stdout = std::io::stdout().lock();
    if json {
        let v = json!({
            "agent": agent,
            "paused_chats": paused
                .iter()
                .map(|(chat, p)| json!({ "chat": chat.to_string(), "since": p.since, "until": p.until, "by": p.by.as_str() }))
                .collect::<Vec<_>>(),
            "last_message_received": st.last_message_received,
            "state": name,
            "linked": st.linked,
            "account": account,
            "session_path": session.path.display().to_string(),
            "in_use_by_pid": st.in_use_by_pid,
            "gateway_running": st.gateway_running,
            "since": record.map(|r| r.since),
            "last_connected": record.and_then(|r| r.last_connected),
            "reconnects_last_hour": record.map_or(0, |r| r.reconnects.len()),
            "fix": st.fix,
            "settings": settings.as_ref().map(|(current, message)| json!({ "current": current, "message": message })),
            "page": page,
        });
        writeln!(stdout, "{v}")?;
    } else {
        writeln!(stdout, "state      {name}{}", if st.gateway_running { " (gateway running)" } else { "" })?;
        if let StoreState::Linked(a) = &st.store {
            writeln!(
                stdout,
                "account    +{} (device {}{}{})",
                a.phone,
                a.device,
                a.lid.as_ref().map(|l| format!(", LID {l}")).unwrap_or_default(),
                a.name.as_ref().map(|n| format!(", {n}")).unwrap_or_default()
            )?;
        }
        if let Some(r) = record
            && let Some(t) = r.last_connected
        {
            writeln!(stdout, "connected  last at {t} (unix time); {} reconnects in the last hour", r.reconnects.len())?;
        }
        if let Some(t) = st.last_message_received {
            writeln!(stdout, "messages   last received at {t} (unix time)")?;
        }
        writeln!(stdout, "agent      {}", agent_check.message)?;
        for (chat, p) in &paused {
            let until =
                p.until.map_or_else(|| "until `hermes resume`".to_owned(), |t| format!("until {t} (unix time)"));
            writeln!(stdout, "paused     {chat} ({}, {until})", p.by.as_str())?;
        }
        if let Some(f) = &agent_check.fix {
            writeln!(stdout, "           fix: {f}")?;
        }
        writeln!(
            stdout,
            "session    {}{}",
            session.path.display(),
            from.map(|f| format!(" ({f})")).unwrap_or_default()
        )?;
        if let Some(pid) = st.in_use_by_pid {
            writeln!(stdout, "in use by  PID {pid}")?;
        }
        if let Some(page) = &page {
            writeln!(stdout, "page       {page}")?;
        }
        if let Some((_, message)) = &settings {
            writeln!(stdout, "settings   {message}")?;
        }
        if let Some(f) = &st.fix {
            writeln!(stdout, "fix        {f}")?;
        }
    }
    Ok(if st.usable { exit::OK } else { exit::PROBLEM })
}

/// The listener's page as a person opens it: a listener on every interface on loopback, with
/// the token.
fn page_address(http_url: &str, token: &str) -> String {
    let base = http_url.replace("://0.0.0.0:", "://127.0.0.1:").replace("://[::]:", "://127.0.0.1:");
    format!("{}/?token={token}", base.trim_end_matches('/'))
}
