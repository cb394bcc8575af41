//! The pipeline that joins the gateway's parts: journal -> access decision -> debounce ->
//! agent -> outbox -> send.
//!
//! Inbound messages are already in the journal (the durability hook put them there before
//! WhatsApp was acked). The dispatcher hands each waiting row to its chat's worker, so a chat
//! is answered in order while chats proceed in parallel (agent calls bounded). A worker
//! decides access, records drops, debounces text, asks the agent and commits the reply to the
//! outbox in the same transaction that marks the inbound messages handled. The sender sends
//! the outbox in order under ids chosen before sending. A crash anywhere leaves either a
//! waiting journal row (asked again) or an unsent outbox row (sent again, same id): every
//! message is answered, once.

mod control;
mod db;
mod inbound;
mod outbound;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hermes_agent::Agent;
use hermes_core::config::WhatsAppConfig;
use hermes_store::{Store, StoreError};
use hermes_whatsapp::messenger::Messenger;
use tokio::sync::Notify;
use tokio::task::JoinSet;

pub use control::{ControlInfo, control_file};

/// What the pipeline needs.
#[derive(Debug)]
pub struct Options {
    pub config: WhatsAppConfig,
    /// `None` when no model is configured: allowed senders get an honest message saying so.
    pub agent: Option<Agent>,
    pub system_prompt: String,
    /// How `/status` names the model.
    pub model_label: String,
    /// `HERMES_HOME/state/hermes.db`.
    pub db_path: PathBuf,
    /// `HERMES_HOME/state`: where the control endpoint's address and token are written.
    pub state_dir: PathBuf,
    pub messenger: Messenger,
    /// Woken by the journal when new messages arrive.
    pub wake: Arc<Notify>,
    /// How many earlier messages of a chat the agent sees.
    pub history_window: usize,
    /// Agent calls at once, across chats.
    pub max_parallel: usize,
    /// Before each further chunk of a long reply.
    pub chunk_gap: Duration,
}

/// Why the pipeline could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GatewayError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The control endpoint (for `hermes send`) could not be set up.
    #[error("control endpoint: {0}")]
    Control(#[from] std::io::Error),
}

/// The running pipeline; dropping it stops every task. Nothing is lost by that: what was not
/// committed is still waiting in the journal or the outbox.
#[derive(Debug)]
pub struct Pipeline {
    tasks: JoinSet<()>,
    control: ControlInfo,
}

impl Pipeline {
    pub async fn start(opts: Options) -> Result<Pipeline, GatewayError> {
        let store = Store::open(&opts.db_path)?;
        let db = db::Db::new(store);
        let outbox_wake = Arc::new(Notify::new());
        let shared = Arc::new(inbound::Shared::new(&opts, db.clone(), outbox_wake.clone()));
        let mut tasks = JoinSet::new();
        tasks.spawn(inbound::dispatch(shared.clone(), opts.wake.clone()));
        tasks.spawn(outbound::send_loop(db.clone(), opts.messenger.clone(), outbox_wake.clone(), opts.chunk_gap));
        tasks.spawn(retention(db.clone(), opts.config.retention_days.value));
        let (control, server) = control::start(&opts, db, outbox_wake).await?;
        tasks.spawn(server);
        Ok(Pipeline { tasks, control })
    }

    /// Where `hermes send` reaches this gateway.
    pub fn control(&self) -> &ControlInfo {
        &self.control
    }

    pub async fn stop(mut self) {
        self.tasks.shutdown().await;
        control::remove(&self.control);
    }
}

/// Prunes what is older than the retention, at start and every hour after.
async fn retention(db: db::Db, days: u64) {
    if days == 0 {
        return;
    }
    let keep = i64::try_from(days.saturating_mul(86_400)).unwrap_or(i64::MAX);
    let mut every = tokio::time::interval(Duration::from_secs(3600));
    loop {
        every.tick().await;
        let cutoff = now_secs().saturating_sub(keep);
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
    }
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
