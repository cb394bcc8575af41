//! The link's one owner: keeps the connection up, and gives up only when WhatsApp says so.
//!
//! whatsapp-rust would reconnect by itself, on its own schedule and after any failure. Here its
//! auto-reconnect is off: each connection is one run of the client, and what happens after it
//! ends is decided by `hermes_core::link`, fed with the client's events. Transient trouble backs
//! off with jitter and never asks for a QR code; a logout, a removal, a lock or an outdated
//! client stops for good with the reason; a ban waits for its end.
//!
//! Storage is watched too: a message must never be acknowledged unless it is kept. When the
//! client's store or the journal cannot be written, or free space falls below the threshold,
//! the client is fenced (see [`crate::fence`]) and thrown away without its unsaved state, the
//! link pauses, and a new client is built from what is on disk once there is room again;
//! WhatsApp redelivers what was not acknowledged.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use hermes_core::backoff::Backoff;
use hermes_core::link::{Action, Link, LinkEvent, LinkState, RetryPolicy, Transient};
use whatsapp_rust::prelude::*;

use crate::classify::link_event;
use crate::client;
use crate::store;

#[derive(Clone, Debug)]
pub struct SupervisorOptions {
    pub session_dir: PathBuf,
    /// The WhatsApp server; `None` is WhatsApp itself (checked by the caller).
    pub server_url: Option<String>,
    pub policy: RetryPolicy,
    /// Where inbound messages are journaled before they are acknowledged.
    pub journal: Option<crate::journal::JournalHook>,
    /// Given each client, and told when it is connected, for the pipeline to send with.
    pub messenger: Option<crate::messenger::Messenger>,
    pub storage: StorageGuard,
}

/// When there is room to keep what arrives.
#[derive(Clone, Debug)]
pub struct StorageGuard {
    /// Directories whose filesystems must have room: the session's and `state/`.
    pub watch: Vec<PathBuf>,
    /// Where a probe file is written (and removed) to prove writes go through: `state/`.
    pub probe_dir: Option<PathBuf>,
    /// Below this many free bytes on any watched filesystem, receiving pauses.
    pub min_free_bytes: u64,
    /// How often it is checked while connected (and while paused).
    pub every: Duration,
    /// Woken by the journal hook when it could not commit, and by a tripped fence.
    pub trouble: Arc<tokio::sync::Notify>,
}

impl StorageGuard {
    /// `Err` says which filesystem is short and by how much, or which write failed. Blocks
    /// (statvfs, a write and an fsync): call it from a blocking thread.
    pub fn check(&self) -> Result<(), String> {
        if let Some(short) = self.shortage() {
            return Err(short.to_string());
        }
        if let Some(dir) = &self.probe_dir {
            match crate::session_dir::probe_write(dir) {
                Ok(()) => {}
                // No descriptor left is not a full disk: pausing would not help and its fix
                // ("free some space") would mislead. What cannot be kept meanwhile fails the
                // journal's own commit, which pauses receiving as it should.
                Err(e @ hermes_core::doctor::WriteFailure::NoDescriptors) => {
                    tracing::warn!(dir = %dir.display(), "{}; fix: {}", e.describe(), "find what holds files or connections open, or raise LimitNOFILE");
                }
                Err(e) => return Err(format!("{} {}", dir.display(), e.describe())),
            }
        }
        Ok(())
    }

    /// The first watched filesystem with less free space than the reserve, judged by
    /// `hermes_core::reserve` (its fix says whether freeing space can help, or only a lower
    /// reserve or a bigger volume). Blocks for a statvfs per directory.
    pub fn shortage(&self) -> Option<hermes_core::reserve::Verdict> {
        crate::status::shortage(&self.watch, self.min_free_bytes)
    }

    async fn check_off_runtime(&self) -> Result<(), String> {
        let guard = self.clone();
        tokio::task::spawn_blocking(move || guard.check()).await.unwrap_or_else(|e| Err(e.to_string()))
    }
}

/// Resuming after pauses backs off with hermes' one backoff, at its ceiling: one process waits
/// for its own disk, so there are no other clients' retries to spread out with jitter.
const RESUME: Backoff = Backoff { base: Duration::from_secs(2), cap: Duration::from_secs(60) };

/// After the `n`th pause in a row, the earliest a passing check may resume receiving. A write
/// that failed for a passing reason (the store busy under load) resumes at the next check; one
/// that keeps failing although there is room is retried ever more slowly (up to a minute),
/// not every two seconds forever.
fn resume_delay(n: u32) -> Duration {
    match n.saturating_sub(3) {
        0 => Duration::ZERO,
        k => RESUME.ceiling(k - 1),
    }
}

type RunFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

fn run_once(client: &Arc<Client>) -> RunFuture {
    let client = client.clone();
    Box::pin(async move {
        let _ = tokio::spawn(async move { client.run().await }).await;
    })
}

/// One client, from its start to its teardown.
struct Conn {
    client: Arc<Client>,
    fence: Arc<crate::fence::Fence>,
}

/// Keeps the link until WhatsApp ends it or `cancel` completes. Every state change is passed to
/// `on_state` (to record and show it). Returns the final state.
pub async fn supervise(
    opts: &SupervisorOptions,
    mut on_state: impl FnMut(&LinkState),
    cancel: impl Future<Output = ()>,
) -> Result<LinkState, String> {
    let clock = tokio::time::Instant::now();
    let now = move || u64::try_from(clock.elapsed().as_millis()).unwrap_or(u64::MAX);
    let mut link = Link::new(opts.policy);
    let linked = store::inspect(&opts.session_dir).await.is_linked();
    let mut actions = link.step(LinkEvent::Start { linked }, now(), rand_unit());
    on_state(link.state());
    if !linked {
        return Ok(link.state().clone());
    }
    let guard = &opts.storage;
    // Pauses in a row, and when the last one began: resuming backs off with them.
    let mut pauses: u32 = 0;
    let mut paused_at = tokio::time::Instant::now();
    // Never connect while what arrives could not be kept.
    if let Err(why) = guard.check_off_runtime().await {
        tracing::error!(why, "not receiving: no room to keep messages; waiting for space");
        actions = link.step(LinkEvent::StorageFull, now(), rand_unit());
        on_state(link.state());
    }
    let mut conn: Option<Conn> = None;
    let mut events: Option<tokio::sync::mpsc::UnboundedReceiver<Arc<Event>>> = None;
    let mut run: Option<RunFuture> = None;
    let mut retry_at: Option<tokio::time::Instant> = None;
    let mut tick = tokio::time::interval(guard.every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(cancel);
    'link: loop {
        let due = std::mem::take(&mut actions);
        for action in due {
            match action {
                Action::Connect => match &conn {
                    Some(c) if run.is_none() => run = Some(run_once(&c.client)),
                    Some(_) => {}
                    None => {
                        // Reports about the clients before this one are answered by this one:
                        // a wake-up they left behind must not pause it.
                        let _ = tokio::time::timeout(Duration::ZERO, guard.trouble.notified()).await;
                        // A new client, from what is on disk; its first run starts with it.
                        let fence = crate::fence::Fence::new(guard.trouble.clone());
                        let started = client::start(client::Start {
                            auto_reconnect: false,
                            journal: opts.journal.clone(),
                            fence: Some(fence.clone()),
                            ..client::Start::new(&opts.session_dir, opts.server_url.as_deref())
                        })
                        .await;
                        let running = match started {
                            Ok(r) => r,
                            // Building the client writes to its store: a disk that filled up
                            // meanwhile is a pause, not the end of the gateway.
                            Err(e) if fence.is_tripped() || guard.check_off_runtime().await.is_err() => {
                                tracing::error!(error = %e, "not receiving: the session store cannot be opened for want of space");
                                pauses = pauses.saturating_add(1);
                                paused_at = tokio::time::Instant::now();
                                actions = link.step(LinkEvent::StorageFull, now(), rand_unit());
                                on_state(link.state());
                                continue 'link;
                            }
                            Err(e) => return Err(e),
                        };
                        if let Some(m) = &opts.messenger {
                            m.attach(running.client.clone());
                        }
                        events = Some(running.events);
                        run = Some(Box::pin(running.handle));
                        conn = Some(Conn { client: running.client, fence });
                    }
                },
                Action::ConnectAt(at) => retry_at = Some(clock + Duration::from_millis(at)),
                Action::Disconnect => retry_at = None,
            }
        }
        if link.state().is_terminal() {
            break;
        }
        let paused = matches!(link.state(), LinkState::StoragePaused { .. });
        let event = tokio::select! {
            () = &mut cancel => LinkEvent::Stop,
            e = async { events.as_mut().expect("guarded").recv().await }, if events.is_some() => {
                if let Some(Event::UndecryptableMessage(u)) = e.as_deref() {
                    // Not lost yet: the client asked the sender's phone to send it again, and
                    // its readable copy is journaled when it comes. Said, so that one that never
                    // comes leaves a trace.
                    tracing::warn!(
                        id = %u.info.id,
                        group = u.info.source.is_group,
                        "a message could not be decrypted; WhatsApp was asked to have the sender's phone send it again"
                    );
                }
                match e.as_deref().map(link_event) {
                    Some(Some(event)) => event,
                    Some(None) => continue,
                    None => {
                        events = None;
                        continue;
                    }
                }
            }
            // The connection's run ended: if nothing said why, it was the network.
            () = async { run.as_mut().expect("guarded").await }, if run.is_some() => {
                run = None;
                LinkEvent::Disconnected(Transient::Network)
            }
            () = async { tokio::time::sleep_until(retry_at.expect("guarded")).await }, if retry_at.is_some() => {
                retry_at = None;
                LinkEvent::RetryDue
            }
            // A journal commit or a store write failed: stop before anything is acknowledged.
            () = guard.trouble.notified(), if !paused => {
                let why = conn.as_ref().and_then(|c| c.fence.why()).unwrap_or_else(|| "the journal could not be written".into());
                tracing::error!(why, "not receiving: a message could not be kept; waiting for space, nothing is acknowledged");
                if let Some(c) = &conn {
                    c.fence.trip(why);
                }
                LinkEvent::StorageFull
            }
            _ = tick.tick() => match (guard.check_off_runtime().await, paused) {
                (Err(why), false) => {
                    tracing::error!(why, "not receiving: too little room to keep messages; waiting for space");
                    LinkEvent::StorageFull
                }
                (Ok(()), true) if paused_at.elapsed() >= resume_delay(pauses) => {
                    tracing::info!("room to keep messages again; receiving resumes");
                    LinkEvent::StorageReady
                }
                // Connected and healthy for a while: the next pause starts the backoff over.
                (Ok(()), false) => {
                    if paused_at.elapsed() > Duration::from_secs(30) {
                        pauses = 0;
                    }
                    continue;
                }
                _ => continue,
            },
        };
        let before = link.state().clone();
        actions = link.step(event, now(), rand_unit());
        if event == LinkEvent::StorageFull {
            pauses = pauses.saturating_add(1);
            paused_at = tokio::time::Instant::now();
            if let Some(c) = conn.take() {
                // Fenced first, so the teardown's flush cannot write what this client holds in
                // memory; the next client starts from the disk.
                c.fence.trip("receiving paused for want of storage");
                if let Some(m) = &opts.messenger {
                    m.detach();
                }
                c.client.disconnect().await;
                if let Some(r) = run.take() {
                    let _ = tokio::time::timeout(Duration::from_secs(10), r).await;
                }
                events = None;
            }
        }
        if *link.state() != before {
            if let Some(m) = &opts.messenger {
                m.set_connected(matches!(link.state(), LinkState::Connected { .. }));
            }
            tracing::info!(state = link.state().name(), "whatsapp link");
            on_state(link.state());
        }
    }
    if let Some(m) = &opts.messenger {
        m.detach();
    }
    if let Some(c) = conn {
        c.client.disconnect().await;
    }
    if let Some(r) = run {
        let _ = tokio::time::timeout(Duration::from_secs(10), r).await;
    }
    Ok(link.state().clone())
}

fn rand_unit() -> f64 {
    rand::random::<f64>()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue #25: the delays are hermes_core's backoff now, and the same as the hand-rolled
    /// doubling they replace: three pauses in a row resume at the next passing check, then 2 s,
    /// doubling, up to a minute.
    #[test]
    fn resuming_after_pauses_backs_off_from_two_seconds_to_a_minute() {
        let delays: Vec<u64> = (0..=10).map(|n| resume_delay(n).as_secs()).collect();
        assert_eq!(delays, [0, 0, 0, 0, 2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(resume_delay(u32::MAX), Duration::from_secs(60));
    }
}
