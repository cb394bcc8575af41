//! The pipeline that joins the gateway's parts: journal -> admission -> debounce -> agent ->
//! outbox -> send.
//!
//! Inbound messages are already in the journal (the durability hook put them there before
//! WhatsApp was acked). The dispatcher ([`dispatch`]) hands each waiting row to its chat's
//! worker ([`worker`]), so a chat is answered in order while chats proceed in parallel (agent
//! calls bounded). A worker has each message decided by `hermes_core::admission` and carries
//! the decision out ([`admit`]), debounces text, and has it answered ([`answer`]): the reply
//! is committed to the outbox in the same transaction that marks the messages handled. The
//! sender ([`outbound`]) sends the outbox in order under ids chosen before sending. A crash
//! anywhere leaves either a waiting journal row (asked again) or an unsent outbox row (sent
//! again, same id): every message is answered, once.
//!
//! The connection and the model are traits ([`Messenger`], [`Model`]), so all of this runs
//! in-process against fakes in the tests, with tokio's paused clock.

mod admit;
mod agent_turn;
mod answer;
mod control;
mod dispatch;
mod media;
pub mod metrics;
mod outbound;
pub mod outgoing;
pub mod parse;
mod port;
mod quote;
mod reminders;
pub mod service;
mod voice;
mod worker;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hermes_core::config::{MediaConfig, WhatsAppConfig};
use hermes_store::Db;
use tokio::sync::Notify;
use tokio::task::JoinSet;

pub use control::{ControlInfo, control_file};
pub use port::{Fetch, HermesAgent, MediaError, Messenger, Model, SendError, Speak, Speech, Transcribe};

/// What the pipeline needs.
pub struct Options {
    pub config: WhatsAppConfig,
    /// `None` when no model is configured: allowed senders get an honest message saying so.
    pub model: Option<Arc<dyn Model>>,
    pub system_prompt: String,
    /// How `/status` names the model.
    pub model_label: String,
    /// Hermes Agent's API server, when it answers instead of `model`.
    pub hermes: Option<HermesSettings>,
    /// `HERMES_HOME/state/hermes.db`, shared with the journal hook.
    pub db: Db,
    /// `HERMES_HOME/state`: where the control endpoint's address and token are written.
    pub state_dir: PathBuf,
    pub messenger: Arc<dyn Messenger>,
    /// Woken by the journal when new messages arrive.
    pub wake: Arc<Notify>,
    /// How many earlier messages of a chat the agent sees.
    pub history_window: usize,
    /// Agent calls at once, across chats.
    pub max_parallel: usize,
    /// Before each further chunk of a long reply.
    pub chunk_gap: Duration,
    /// Speech to text, images, the media size cap.
    pub media: MediaConfig,
    pub speech: Speech,
    /// Spoken replies to voice notes (`voice.auto_tts`), when a provider is configured.
    pub voice: Option<Arc<dyn Speak>>,
    /// `HERMES_HOME`: media is cached under it, where Hermes keeps it.
    pub home: PathBuf,
    /// The user's home directory, for the agent's `MEDIA:~/...` paths (the binary reads it).
    pub user_home: Option<PathBuf>,
    /// How files from outside are parsed: in a child process with limits ([`parse`]).
    pub parser: parse::Parser,
    /// The HTTP listener (health, metrics, status page), already bound, when asked for.
    pub listen: Option<service::Bound>,
    /// The link state and the metrics, shared with whoever reports them.
    pub service: Arc<service::ServiceState>,
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("model_label", &self.model_label)
            .field("state_dir", &self.state_dir)
            .field("history_window", &self.history_window)
            .field("max_parallel", &self.max_parallel)
            .finish_non_exhaustive()
    }
}

/// What a running gateway changes without a restart ([`SettingsHandle::replace`]): who is let in
/// and how (the WhatsApp settings the decisions read), and which model answers, as what.
pub struct Settings {
    pub config: WhatsAppConfig,
    pub model: Option<Arc<dyn Model>>,
    pub system_prompt: String,
    pub model_label: String,
    pub hermes: Option<HermesSettings>,
}

/// Hermes Agent's API server as the agent, and how hermes uses it.
#[derive(Clone)]
pub struct HermesSettings {
    pub agent: Arc<dyn HermesAgent>,
    /// Each member of a group has a session of their own (`group_sessions_per_user`).
    pub per_user_in_groups: bool,
    /// A turn still running after this long gets one "still working" note (`None`: never).
    pub notice_after: Option<Duration>,
    /// How often scheduled jobs are looked at for output to deliver (`None`: never).
    pub reminders_every: Option<Duration>,
}

impl std::fmt::Debug for HermesSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HermesSettings")
            .field("per_user_in_groups", &self.per_user_in_groups)
            .field("notice_after", &self.notice_after)
            .field("reminders_every", &self.reminders_every)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings").field("model_label", &self.model_label).finish_non_exhaustive()
    }
}

/// Puts new [`Settings`] in force in a running pipeline.
#[derive(Clone)]
pub struct SettingsHandle(Arc<worker::Shared>);

impl std::fmt::Debug for SettingsHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SettingsHandle").finish_non_exhaustive()
    }
}

impl SettingsHandle {
    /// The next message is decided and answered with `settings`; one being answered now
    /// finishes with those it started with.
    pub fn replace(&self, settings: Settings) {
        self.0.replace(settings);
    }
}

/// Why the pipeline could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GatewayError {
    /// The control endpoint (for `hermes send`) could not be set up.
    #[error("control endpoint: {0}")]
    Control(#[from] std::io::Error),
}

/// The running pipeline; dropping it stops every task, chat workers included. Nothing is lost
/// by that: what was not committed is still waiting in the journal or the outbox.
pub struct Pipeline {
    tasks: JoinSet<()>,
    control: ControlInfo,
    shared: Arc<worker::Shared>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline").field("control", &self.control).finish_non_exhaustive()
    }
}

impl Pipeline {
    pub async fn start(mut opts: Options) -> Result<Pipeline, GatewayError> {
        let outbox_wake = Arc::new(Notify::new());
        let shared = Arc::new(worker::Shared::new(&opts, outbox_wake.clone()));
        for dir in outgoing::writable_by_others(&opts.home, opts.media.media_allow_dirs.value.as_deref()) {
            tracing::warn!(
                dir = %dir.display(),
                "a folder files may be sent from (HERMES_MEDIA_ALLOW_DIRS) can be written by other users: they could \
                 put a file there for the agent to send; make it yours alone (chmod go-w, or a folder of your own)"
            );
        }
        let mut tasks = JoinSet::new();
        tasks.spawn(dispatch::dispatch(shared.clone(), opts.wake.clone()));
        tasks.spawn(outbound::send_loop(
            opts.db.clone(),
            opts.messenger.clone(),
            outbox_wake.clone(),
            opts.chunk_gap,
            opts.config.send_limits(),
            opts.service.clone(),
        ));
        tasks.spawn(retention(opts.db.clone(), opts.config.retention_days.value, opts.home.clone()));
        tasks.spawn(reminders::poll(shared.clone()));
        let http = opts.listen.as_ref().map(|b| (format!("http://{}", b.addr), b.token.clone()));
        if let Some(bound) = opts.listen.take() {
            tasks.spawn(service::serve(bound, opts.db.clone(), opts.messenger.clone(), opts.service.clone()));
        }
        let (control, server) = control::start(&opts, outbox_wake, http).await?;
        tasks.spawn(server);
        Ok(Pipeline { tasks, control, shared })
    }

    /// What puts new settings in force while the pipeline runs.
    pub fn settings_handle(&self) -> SettingsHandle {
        SettingsHandle(self.shared.clone())
    }

    /// Where `hermes send` reaches this gateway.
    pub fn control(&self) -> &ControlInfo {
        &self.control
    }

    /// Resolves if one of the pipeline's loops ends, which only a bug makes happen (each
    /// loop runs until stopped): the gateway would go on journaling and answer nothing, so
    /// the caller must stop, say so, and exit non-zero rather than carry on silently.
    pub async fn failed(&mut self) -> String {
        match self.tasks.join_next().await {
            Some(Err(e)) if e.is_panic() => format!("a pipeline task panicked: {}", panic_message(e.into_panic())),
            Some(Err(e)) => format!("a pipeline task was cancelled: {e}"),
            Some(Ok(())) => "a pipeline task ended".to_owned(),
            None => std::future::pending().await,
        }
    }

    pub async fn stop(mut self) {
        self.tasks.shutdown().await;
        // What was being handled was interrupted by the stop, not by the message: its attempt
        // is taken back (a crash keeps it, and a message that keeps crashing is given up).
        self.shared.end_all_attempts().await;
        control::remove(&self.control);
    }
}

/// What a panic said, for the log.
pub(crate) fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_owned())
}

/// Prunes what is older than the retention, at start and every hour after.
async fn retention(db: Db, days: u64, home: PathBuf) {
    if days == 0 {
        return std::future::pending().await;
    }
    let keep = i64::try_from(days.saturating_mul(86_400)).unwrap_or(i64::MAX);
    let mut every = tokio::time::interval(Duration::from_secs(3600));
    loop {
        every.tick().await;
        let cutoff = hermes_store::clock::now().saturating_sub(keep);
        match db.call(move |s| s.prune(cutoff)).await {
            Ok(p) if p.total() > 0 => tracing::info!(
                messages = p.messages,
                drops = p.drops,
                replies = p.replies,
                history = p.history,
                codes = p.codes,
                days,
                "pruned what is older than the retention"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot prune old rows; will try again in an hour"),
        }
        let home = home.clone();
        let files =
            tokio::task::spawn_blocking(move || prune_cache(&home, std::time::Duration::from_secs(keep as u64)))
                .await
                .unwrap_or(0);
        if files > 0 {
            tracing::info!(files, days, "removed cached media older than the retention");
        }
    }
}

/// Removes cached media (downloads, copies of files sent, spoken replies) older than `age`.
fn prune_cache(home: &std::path::Path, age: Duration) -> usize {
    let dirs = [
        "cache/images",
        "cache/audio",
        "cache/videos",
        "cache/documents",
        "cache/outgoing",
        // Hermes' older names, used when they exist.
        "image_cache",
        "audio_cache",
        "video_cache",
        "document_cache",
    ];
    let now = std::time::SystemTime::now();
    let mut removed = 0;
    for dir in dirs.iter().map(|d| home.join(d)) {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let old = entry
                .metadata()
                .ok()
                .filter(std::fs::Metadata::is_file)
                .and_then(|m| m.modified().ok())
                .and_then(|t| now.duration_since(t).ok())
                .is_some_and(|a| a > age);
            if old && std::fs::remove_file(entry.path()).is_ok() {
                removed += 1;
            }
        }
    }
    removed
}

#[cfg(test)]
mod agent_tests;
#[cfg(test)]
mod tests;
