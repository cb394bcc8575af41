//! Reminders: what the agent scheduled during a WhatsApp turn reaches that chat.
//!
//! Hermes' API server cannot deliver a job's output itself (its jobs made in an API turn have
//! `origin = {platform: api_server, chat_id: <the session id hermes sent>}`, and that platform
//! does not send). So hermes looks: the job list names each job's origin (a one-shot job
//! leaves the list once it ran, so jobs are remembered with their chat as soon as they are
//! seen, right after each turn and on every poll), and each run of a job is a session of its
//! own (`cron_<job>_<time>`) whose last answer is the output. Each run is delivered once
//! (`reminder_deliveries`, committed with its outbox rows); a run that says `[SILENT]` is not.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use hermes_core::hermes_api;

use crate::HermesAgent;
use crate::worker::Shared;

/// While Hermes Agent is not the agent, how often the settings are looked at again.
const IDLE: Duration = Duration::from_secs(30);

/// Delivers the agent's scheduled runs, every `reminders_every` and after each turn.
pub(crate) async fn poll(shared: Arc<Shared>) {
    loop {
        let hermes = shared.live().hermes.clone();
        let Some((agent, every)) = hermes.and_then(|h| h.reminders_every.map(|e| (h.agent, e))) else {
            tokio::time::sleep(IDLE).await;
            continue;
        };
        if let Err(e) = round(&shared, agent.as_ref()).await {
            tracing::debug!("cannot look at the agent's scheduled jobs now: {e}");
        }
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = shared.turn_done.notified() => {}
        }
    }
}

/// One look: new jobs remembered with their chats, new runs delivered.
async fn round(shared: &Shared, agent: &dyn HermesAgent) -> Result<(), String> {
    let jobs = agent.jobs().await.map_err(|e| e.error.to_string())?;
    let ours: HashMap<String, hermes_core::identity::Jid> = shared
        .db
        .read(|s| s.known_sessions())
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|k| (k.session_id, k.chat))
        .collect();
    for job in jobs {
        let Some(chat) = job.chat_id.as_ref().and_then(|c| ours.get(c)).cloned() else { continue };
        if job.platform.as_deref().is_some_and(|p| p != "api_server") {
            continue;
        }
        let (id, name) = (job.id.clone(), job.name.clone());
        let new = shared
            .db
            .call(move |s| s.remember_job(&id, &chat, name.as_deref(), hermes_store::clock::now()))
            .await
            .map_err(|e| e.to_string())?;
        if new {
            tracing::info!(job = %job.id, "following a job the agent scheduled in a chat; its runs are delivered there");
        }
    }
    let runs = agent.cron_runs().await.map_err(|e| e.error.to_string())?;
    for run in runs {
        let Some(job) = hermes_api::cron_run_job(&run).map(str::to_owned) else { continue };
        let Some((chat, name)) = shared.db.read(|s| s.job_chat(&job)).map_err(|e| e.to_string())? else { continue };
        if shared.db.read(|s| s.reminder_delivered(&job, &run)).map_err(|e| e.to_string())? {
            continue;
        }
        let rows = agent.transcript(&run).await.map_err(|e| e.error.to_string())?;
        let Some(answer) = rows.iter().rev().find(|r| r.role == "assistant" && !r.content.trim().is_empty()) else {
            continue;
        };
        let text = if hermes_api::is_cron_silence(&answer.content) {
            None
        } else {
            Some(hermes_api::cron_delivery(name.as_deref(), &job, &answer.content))
        };
        let messages: Vec<_> = text
            .iter()
            .flat_map(|t| {
                hermes_core::format::chunk(&hermes_core::format::to_whatsapp(t), hermes_core::format::budget(""))
            })
            .map(|part| (shared.messenger.new_message_id(), part))
            .collect();
        let delivered = shared
            .db
            .call(move |s| s.commit_reminder(&job, &run, &chat, &messages, hermes_store::clock::now()))
            .await
            .map_err(|e| e.to_string())?;
        if delivered {
            tracing::info!("delivered a run of a job the agent scheduled");
            shared.outbox_wake.notify_one();
        }
    }
    Ok(())
}
