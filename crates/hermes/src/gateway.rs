//! `hermes gateway`: the WhatsApp link and the message pipeline, in the foreground.
//!
//! The link supervisor keeps the connection; the pipeline (hermes-gateway) answers what the
//! journal holds. Every link state change is recorded in `HERMES_HOME/state/link.json`,
//! which `hermes whatsapp status` reads. Ctrl-C or SIGTERM stops both; what was not answered
//! yet is in the journal and is answered at the next start.

use std::io::{IsTerminal as _, Write as _};
use std::path::Path;

use anyhow::Context as _;
use hermes_core::link::{LinkState, RetryPolicy};
use hermes_whatsapp::lock::{LockError, SessionLock};
use hermes_whatsapp::status::Recorder;
use hermes_whatsapp::supervisor::{self, SupervisorOptions};

use crate::exit;
use crate::load;

pub async fn run(profile: Option<&str>, listen: Option<&str>, ephemeral: bool) -> anyhow::Result<u8> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,whatsapp_rust=warn".into()),
        )
        .with_writer(crate::program::LogWriter)
        // Colour for a person at a terminal; plain text for log files and service managers.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let home_path = load::home_path(profile);
    // A settings file another user can change holds their settings (their allowlist, their
    // model URL, which would be sent the API key): the gateway does not start on it.
    let untrusted = home_path.as_deref().map(load::untrusted_settings).unwrap_or_default();
    if !untrusted.is_empty() {
        for u in &untrusted {
            eprintln!("hermes: {u}");
        }
        return Ok(exit::USAGE);
    }
    // Before the files are read: an edit made while they are is read again at once.
    let settings_before = home_path.map(|h| crate::reload::fingerprint(&h));
    let loaded = load::load(profile)?;
    #[cfg(feature = "simulator")]
    if let Some(point) = load::crash_at() {
        hermes_store::crash::arm(&point);
    }
    if loaded.resolved.has_errors() {
        for d in loaded.resolved.errors() {
            eprintln!("hermes: configuration error: {d}");
        }
        return Ok(exit::USAGE);
    }
    match loaded.hermes_bridge() {
        hermes_core::coexist::Bridge::Starts { why, connects: true } => tracing::error!(
            "Hermes Agent, started from this folder, would start its own WhatsApp bridge on this linked device \
             ({why}): two clients on one device replace each other. Fix: {}",
            hermes_core::coexist::FIX
        ),
        hermes_core::coexist::Bridge::Starts { why, connects: false } => tracing::warn!(
            "Hermes Agent, started from this folder, would try to start its own WhatsApp bridge ({why}). Fix: {}",
            hermes_core::coexist::FIX
        ),
        hermes_core::coexist::Bridge::Off(_) => {}
    }
    let listen = match listen {
        Some(a) => match a.parse::<std::net::SocketAddr>() {
            Ok(addr) => Some(addr),
            Err(_) => {
                eprintln!("hermes: --listen '{a}': write an address and port, e.g. 127.0.0.1:8080 (port 0 picks one)");
                return Ok(exit::USAGE);
            }
        },
        None => loaded.resolved.config.whatsapp.listen.value,
    };
    let server_url = loaded.resolved.config.whatsapp.server_url.value.clone();
    if let Some(url) = &server_url
        && let Err(e) = hermes_whatsapp::linking::check_server_url(url)
    {
        eprintln!("hermes: {e}");
        return Ok(exit::USAGE);
    }
    let session_dir = loaded.session_dir().path;
    if !ephemeral && let Some(refusal) = on_container_layer(&loaded, &session_dir) {
        eprintln!("hermes: {refusal}");
        return Ok(exit::USAGE);
    }
    // Switching from Hermes: its bridge's session is here and hermes has none yet.
    if hermes_whatsapp::import::bridge_session(&session_dir)
        && !hermes_whatsapp::store::inspect_read_only(&session_dir).await.is_linked()
    {
        eprintln!("hermes: WhatsApp is not linked for hermes yet; {}", hermes_whatsapp::import::IMPORT_FIX);
        return Ok(exit::PROBLEM);
    }
    let _lock = match SessionLock::acquire(&session_dir) {
        Ok(l) => l,
        Err(e @ LockError::Held { .. }) => {
            eprintln!("hermes: {e}");
            return Ok(exit::PROBLEM);
        }
        Err(e) => return Err(e.into()),
    };
    raise_descriptor_limit();
    let home = loaded.home.path.clone();
    private_state_dir(&home.join("state"))?;
    let mut recorder = Recorder::resume(&home.join("state"), std::process::id());
    // Every inbound message is journaled before WhatsApp is told it arrived. One owner of
    // the database: the journal hook, the pipeline and `hermes send`'s endpoint share it.
    let db = open_db(&home)?;
    let wake = std::sync::Arc::new(tokio::sync::Notify::new());
    let trouble = std::sync::Arc::new(tokio::sync::Notify::new());
    let service = std::sync::Arc::new(hermes_gateway::service::ServiceState::new());
    let counted = service.clone();
    let journal =
        hermes_whatsapp::journal::JournalHook::new(db.clone(), wake.clone(), trouble.clone()).counting(move |n| {
            counted.metrics.received.inc_by(n);
        });
    let storage = hermes_whatsapp::supervisor::StorageGuard {
        watch: vec![session_dir.clone(), home.join("state")],
        probe_dir: Some(home.join("state")),
        min_free_bytes: loaded.resolved.config.whatsapp.min_free_mb.value.saturating_mul(1024 * 1024),
        every: std::time::Duration::from_secs(2),
        trouble,
    };
    let messenger = hermes_whatsapp::messenger::Messenger::new();
    let policy = time_scale().map_or_else(RetryPolicy::default, |f| RetryPolicy::default().scaled(f));
    let opts = SupervisorOptions {
        session_dir,
        server_url,
        policy,
        journal: Some(journal),
        messenger: Some(messenger.clone()),
        storage,
    };
    let account_of = messenger.clone();
    let cfg = &loaded.resolved.config.whatsapp;
    let alerts = match crate::alerts::Alerts::new(cfg.alert_webhook.value.clone(), cfg.alert_command.value.as_deref()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("hermes: {e}");
            return Ok(exit::USAGE);
        }
    };
    let watched_db = db.clone();
    let mut pipeline_opts = pipeline_options(&loaded, db, messenger, wake, service.clone());
    if let Some(addr) = listen {
        let bound = hermes_gateway::service::bind(addr).await.with_context(|| format!("listen on {addr}"))?;
        // The address with its token is shown to the person at the terminal; a log (a
        // service's stderr, read by more people than the owner) only says where to find it.
        if std::io::stderr().is_terminal() {
            eprintln!("hermes: listening; the status and pairing page is {}", with_token(&bound));
        }
        tracing::info!(
            url = %format!("http://{}/", bound.addr),
            "health, metrics and status page; the page and /metrics need the token `hermes whatsapp status` prints"
        );
        let page = page_url(&bound);
        service.set_page_url(page.clone());
        alerts.set_page_url(page);
        pipeline_opts.listen = Some(bound);
    }
    // With a listener, a link that needs a person waits for one on the pairing page.
    let mut page_requests = pipeline_opts.listen.is_some().then(|| service.take_pair_requests()).flatten();
    let mut pipeline = hermes_gateway::Pipeline::start(pipeline_opts).await.context("start the pipeline")?;
    // Edits to .env, config.yaml and SOUL.md are put in force while it runs.
    let reloader = {
        let handle = pipeline.settings_handle();
        let record = crate::reload::started(&loaded, settings_before);
        tokio::spawn(crate::reload::watch(
            profile.map(str::to_owned),
            loaded.home.path.clone(),
            loaded.resolved.config.clone(),
            record,
            move |new: &load::Loaded| handle.replace(settings(new)),
        ))
    };
    let watchdog = tokio::spawn(watchdog(
        alerts.clone(),
        service.clone(),
        account_of.clone(),
        watched_db,
        cfg.alert_after_minutes.value,
        time_scale().unwrap_or(1.0),
    ));
    // One listener for Ctrl-C and SIGTERM for the whole run: a signal that comes between two
    // waits (a supervisor ending, a link being installed) is not lost.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown().await;
        let _ = stop_tx.send(true);
    });
    let requested = || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    };
    let mut failure = None;
    // Ended by a request or a failure, not by WhatsApp.
    let mut stopping = false;
    // Stayed up in a state that needs a person; a stop then is a stop on request.
    let mut waited = false;
    let last = loop {
        let last = {
            // Each state goes to state/link.json, for `hermes whatsapp status`.
            let on_state = |state: &LinkState| {
                // A pause for want of space: its fix depends on the volume's size (on one smaller
                // than the reserve, freeing space cannot help), which the state does not carry.
                let better_fix = match state {
                    LinkState::StoragePaused { .. } => opts.storage.shortage().and_then(|s| s.fix),
                    _ => None,
                };
                service.set_link_with_fix(state, hermes_store::clock::now(), better_fix.clone());
                let account = account_of.account().and_then(|a| a.phone).map(|p| p.to_string());
                alerts.on_state(state, hermes_store::clock::now(), account, better_fix.as_deref());
                if let Err(e) = recorder.record(state, hermes_store::clock::now()) {
                    tracing::warn!(error = %e, "cannot record the link state");
                }
            };
            // A pipeline that stopped answering stops the gateway: journaling on while answering
            // nothing would be the silent failure this must never be.
            let stop = async {
                tokio::select! {
                    () = requested() => {}
                    why = pipeline.failed() => failure = Some(why),
                }
                stopping = true;
            };
            supervisor::supervise(&opts, on_state, stop).await
        };
        let state = match &last {
            Ok(state) if !stopping && state.is_terminal() => state,
            _ => break last,
        };
        let Some(requests) = page_requests.as_mut() else { break last };
        // Staying up: /readyz says what is wrong, the alert is on its way, and the page offers
        // a new link when one helps; otherwise this waits for the person's restart.
        waited = true;
        let stop = async {
            tokio::select! {
                () = requested() => {}
                why = pipeline.failed() => failure = Some(why),
            }
        };
        if !state.kind().needs_link() {
            tracing::error!(
                state = state.name(),
                fix = state.fix().unwrap_or_default(),
                "the WhatsApp link stopped; the listener stays up"
            );
            stop.await;
            break last;
        }
        tracing::warn!(state = state.name(), "the WhatsApp link needs a person: link it on the listener's page");
        match crate::relink::wait_for_link(&loaded, requests, &service, &alerts, stop).await? {
            crate::relink::Outcome::Linked => {
                // A new account's history starts here.
                recorder = Recorder::resume(&home.join("state"), std::process::id());
            }
            crate::relink::Outcome::Stopped => break last,
        }
    };
    reloader.abort();
    watchdog.abort();
    pipeline.stop().await;
    alerts.flush().await;
    if let Some(why) = failure {
        tracing::error!("{why}");
        anyhow::bail!("{why}; the gateway stopped (a bug: please report it with the log above)");
    }
    if waited {
        // The person was told (page, /readyz, alert) and stopped it: a stop on request.
        return Ok(exit::OK);
    }
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

/// Where a person opens the listener's page, in the words of a fix. The fix is shown to
/// anyone who asks `/readyz`, so it names where the token is, never the token.
fn page_url(bound: &hermes_gateway::service::Bound) -> String {
    let token = " with its token (`hermes whatsapp status` prints the whole address)";
    if bound.addr.ip().is_unspecified() {
        format!("http://127.0.0.1:{}/ or this machine's address,{token}", bound.addr.port())
    } else {
        format!("http://{}/{token}", bound.addr)
    }
}

/// The page's address with its token, for the owner's eyes only.
fn with_token(bound: &hermes_gateway::service::Bound) -> String {
    let host = if bound.addr.ip().is_unspecified() {
        format!("127.0.0.1:{}", bound.addr.port())
    } else {
        bound.addr.to_string()
    };
    format!("http://{host}/?token={}", bound.token)
}

/// The retry delays' and the watchdog's time scale: none but in tests of the simulator build.
fn time_scale() -> Option<f64> {
    #[cfg(feature = "simulator")]
    return load::time_scale();
    #[cfg(not(feature = "simulator"))]
    None
}

/// Alerts when the gateway has not been able to answer for `minutes` (0: never): WhatsApp
/// unreachable while it retries, a message unanswered or a reply unsent for that long.
async fn watchdog(
    alerts: crate::alerts::Alerts,
    service: std::sync::Arc<hermes_gateway::service::ServiceState>,
    messenger: hermes_whatsapp::messenger::Messenger,
    db: hermes_store::Db,
    minutes: u64,
    scale: f64,
) {
    if minutes == 0 {
        return;
    }
    let after = (minutes as f64 * 60.0 * scale).max(1.0) as i64;
    let mut dog = hermes_core::alert::Watchdog::new(after);
    let mut tick = tokio::time::interval(std::time::Duration::from_secs_f64((15.0 * scale).max(0.05)));
    let mut down_since = None;
    // The first message waiting, and since when it has been first: the time it waits here,
    // not its own timestamp (a backlog delivered after an outage is old, and moving).
    let mut head: Option<(i64, i64)> = None;
    loop {
        tick.tick().await;
        let now = hermes_store::clock::now();
        // Down while it retries by itself; a state that needs a person alerts on its own, and
        // then what waits to be sent is not stuck either.
        let retrying = matches!(service.link().state.as_str(), "connecting" | "reconnecting" | "replaced");
        let connected = messenger.is_connected();
        down_since = if connected || !retrying { None } else { Some(down_since.unwrap_or(now)) };
        let Ok((first, oldest_unsent)) = db.call(|s| Ok((s.first_waiting()?, s.oldest_unsent()?))).await else {
            continue;
        };
        head = first.map(|seq| match head {
            Some((was, since)) if was == seq => (seq, since),
            _ => (seq, now),
        });
        let progress = hermes_core::alert::Progress {
            now,
            down_since,
            oldest_waiting: head.map(|(_, since)| since),
            oldest_unsent: oldest_unsent.filter(|_| connected || retrying),
        };
        if let Some(stuck) = dog.check(&progress) {
            let account = messenger.account().and_then(|a| a.phone).map(|p| p.to_string());
            alerts.not_answering(&stuck, now, account);
        }
    }
}

/// Why the gateway must not start on a container's writable layer, if HERMES_HOME or the
/// session is there: the session would be gone when the container is re-created (an update,
/// `docker compose up` after a pull) and WhatsApp would ask for a new scan, the first
/// complaint of Hermes' users in containers.
fn on_container_layer(loaded: &load::Loaded, session_dir: &Path) -> Option<String> {
    use hermes_core::storage::Persistence;
    let table = load::mountinfo();
    [("HERMES_HOME", loaded.home.path.as_path()), ("the WhatsApp session", session_dir)].into_iter().find_map(
        |(what, dir)| match hermes_whatsapp::session_dir::persistence(
            dir,
            loaded.container_var.clone(),
            table.as_deref(),
        ) {
            Persistence::AnonymousVolume { runtime } => Some(format!(
                "{what} ({}) is on an anonymous {runtime} volume (the image declares one and none was named): a new \
                 `docker run` gets a new, empty one, and the phone would have to scan a QR code again. Name it (e.g. \
                 `-v hermes-data:/data`), or start with `hermes gateway --ephemeral` if losing it is what you want",
                dir.display()
            )),
            Persistence::ContainerLayer { runtime } => Some(format!(
                "{what} ({}) is on this {runtime} container's writable layer: the session would be lost when the \
                 container is re-created, and the phone would have to scan a QR code again. Mount a volume there \
                 (e.g. `-v hermes-data:/data` with HERMES_HOME=/data), or start with `hermes gateway --ephemeral` if \
                 losing it is what you want",
                dir.display()
            )),
            _ => None,
        },
    )
}

/// The gateway's database, `HERMES_HOME/state/hermes.db`, opened (created, migrated) for
/// writing.
pub fn open_db(home: &Path) -> anyhow::Result<hermes_store::Db> {
    let state = home.join("state");
    hermes_store::files::create_private_dir_all(&state).with_context(|| format!("create {}", state.display()))?;
    let path = state.join("hermes.db");
    hermes_store::Db::open(&path).with_context(|| format!("open {}", path.display()))
}

/// A gateway holds a socket per connection (WhatsApp, the model, media): let it use what the
/// administrator allows (the hard limit) rather than the often small default soft limit.
fn raise_descriptor_limit() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if let (Some(current), Some(maximum)) = (limit.current, limit.maximum)
        && current < maximum
        && let Err(e) = setrlimit(Resource::Nofile, Rlimit { current: Some(maximum), maximum: Some(maximum) })
    {
        tracing::warn!(current, maximum, error = %e, "cannot raise the open-file limit");
    }
}

/// `state/` holds the control token and the journal: this user's only. Hermes owns it, so a
/// wider mode left by an older version or a copy is narrowed, and said.
fn private_state_dir(state: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    hermes_store::files::create_private_dir_all(state).with_context(|| format!("create {}", state.display()))?;
    // Through no symlink: a state/ that is a link is left as it is (its target is not ours).
    let meta = std::fs::symlink_metadata(state)?;
    let mode = meta.permissions().mode() & 0o777;
    if meta.is_dir() && mode & 0o077 != 0 {
        std::fs::set_permissions(state, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("chmod 0700 {}", state.display()))?;
        tracing::info!(path = %state.display(), was = format!("{mode:o}"), "state directory made private (0700)");
    }
    Ok(())
}

/// What a reload may change: the WhatsApp settings the decisions read, and the model.
pub fn settings(loaded: &load::Loaded) -> hermes_gateway::Settings {
    let config = &loaded.resolved.config;
    let hermes = hermes_agent_settings(&config.agent);
    let (agent, model_label) = match &hermes {
        Some(_) => (None, format!("Hermes Agent at {}", hermes_agent::redact_url(&config.agent.base_url()))),
        None => agent(&config.model),
    };
    // As in Hermes, SOUL.md in HERMES_HOME is the agent's persona (Hermes Agent reads it itself).
    let soul = std::fs::read_to_string(loaded.home.path.join("SOUL.md")).ok();
    hermes_gateway::Settings {
        config: config.whatsapp.clone(),
        model: agent.map(|a| std::sync::Arc::new(a) as std::sync::Arc<dyn hermes_gateway::Model>),
        system_prompt: hermes_agent::system_prompt(soul.as_deref()),
        model_label,
        hermes,
    }
}

/// Hermes Agent's API server as the agent, when the settings name it (see
/// `hermes_core::config::AgentConfig::brain`).
fn hermes_agent_settings(a: &hermes_core::config::AgentConfig) -> Option<hermes_gateway::HermesSettings> {
    use hermes_core::config::Brain;
    let (brain, why_not) = a.brain();
    if let Some(why) = why_not {
        tracing::warn!("the model block answers, not Hermes Agent: {why}");
    }
    let Brain::Hermes { base_url, key } = brain else { return None };
    tracing::info!(url = %hermes_agent::redact_url(&base_url), "Hermes Agent's API server answers (one session per chat)");
    let secs = |v: u64| (v > 0).then(|| std::time::Duration::from_secs(v));
    Some(hermes_gateway::HermesSettings {
        agent: std::sync::Arc::new(hermes_agent::HermesApi::new(&base_url, key.expose())),
        per_user_in_groups: a.group_sessions_per_user.value,
        notice_after: secs(a.notice_seconds.value),
        reminders_every: secs(a.reminders_poll_seconds.value),
    })
}

/// The pipeline's settings from the configuration: the model, the system prompt, the limits.
fn pipeline_options(
    loaded: &load::Loaded,
    db: hermes_store::Db,
    messenger: hermes_whatsapp::messenger::Messenger,
    wake: std::sync::Arc<tokio::sync::Notify>,
    service: std::sync::Arc<hermes_gateway::service::ServiceState>,
) -> hermes_gateway::Options {
    let home = &loaded.home.path;
    let live = settings(loaded);
    hermes_gateway::Options {
        config: live.config,
        model: live.model,
        system_prompt: live.system_prompt,
        model_label: live.model_label,
        hermes: live.hermes,
        db,
        state_dir: home.join("state"),
        messenger: std::sync::Arc::new(crate::messenger::WhatsApp(messenger)),
        wake,
        history_window: 40,
        max_parallel: 8,
        chunk_gap: std::time::Duration::from_millis(300),
        media: loaded.resolved.config.media.clone(),
        speech: speech(&loaded.resolved.config.media),
        voice: voice(&loaded.resolved.config.media),
        home: home.clone(),
        user_home: loaded.home_dir.clone(),
        parser: load::parser(),
        listen: None,
        service,
    }
}

/// Spoken replies to voice notes, when `voice.auto_tts` is on and a provider is set.
fn voice(media: &hermes_core::config::MediaConfig) -> Option<std::sync::Arc<dyn hermes_gateway::Speak>> {
    use hermes_core::media::{TtsChoice, choose_tts};
    let choice = choose_tts(media);
    if let TtsChoice::Unavailable(why) = &choice {
        tracing::warn!("voice notes are answered in text only: {why}");
    }
    let s = hermes_agent::speech::Synthesizer::new(&choice)?;
    tracing::info!(voice = %s.describe(), "voice notes are answered by voice too");
    Some(std::sync::Arc::new(s))
}

/// Speech to text as configured, said once at start so a user knows what voice notes get.
fn speech(media: &hermes_core::config::MediaConfig) -> hermes_gateway::Speech {
    use hermes_core::media::{SttChoice, choose_stt};
    let choice = choose_stt(media);
    match (&choice, hermes_agent::speech::Transcriber::new(&choice)) {
        (SttChoice::Off, _) => {
            tracing::info!("speech to text is off (stt.enabled: false): the agent is told a voice message arrived");
            hermes_gateway::Speech::Off
        }
        (_, Some(t)) => {
            tracing::info!(transcriber = %t.describe(), "voice messages are transcribed");
            hermes_gateway::Speech::Ready(std::sync::Arc::new(t))
        }
        (SttChoice::Unavailable(why), None) => {
            tracing::warn!("voice messages cannot be transcribed: {why}");
            hermes_gateway::Speech::Unavailable(why.clone())
        }
        (_, None) => hermes_gateway::Speech::Unavailable("no transcriber".to_owned()),
    }
}

/// The chat-completions client for the configured model, or why there is none.
fn agent(model: &hermes_core::config::ModelConfig) -> (Option<hermes_agent::Agent>, String) {
    let provider = model.provider.value.as_deref();
    let base_url =
        model.base_url.value.clone().or_else(|| hermes_agent::Endpoint::provider_base_url(provider).map(str::to_owned));
    match (&model.name.value, base_url) {
        (Some(name), Some(base_url)) => {
            let endpoint = hermes_agent::Endpoint {
                base_url,
                model: name.clone(),
                api_key: model.api_key.value.as_ref().map(|k| k.expose().to_owned()),
            };
            tracing::info!(model = %name, base_url = %hermes_agent::redact_url(&endpoint.base_url), "agent model");
            (Some(hermes_agent::Agent::new(endpoint, hermes_agent::Retry::default())), name.clone())
        }
        (None, _) => {
            tracing::warn!(
                "no model configured (`model:` in config.yaml): allowed senders will be told the agent cannot answer"
            );
            (None, "none configured".to_owned())
        }
        (Some(name), None) => {
            tracing::warn!(
                provider = provider.unwrap_or_default(),
                "model {name}: unknown provider and no base_url; set model.base_url in config.yaml"
            );
            (None, format!("{name} (no base_url)"))
        }
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
