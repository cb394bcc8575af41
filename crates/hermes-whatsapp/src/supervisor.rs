//! The link's one owner: keeps the connection up, and gives up only when WhatsApp says so.
//!
//! whatsapp-rust would reconnect by itself, on its own schedule and after any failure. Here its
//! auto-reconnect is off: each connection is one run of the client, and what happens after it
//! ends is decided by `hermes_core::link`, fed with the client's events. Transient trouble backs
//! off with jitter and never asks for a QR code; a logout, a removal, a lock or an outdated
//! client stops for good with the reason; a ban waits for its end.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use hermes_core::link::{Action, Link, LinkEvent, LinkState, LogoutReason, RetryPolicy, Transient, classify_failure};
use whatsapp_rust::prelude::*;
use whatsapp_rust::types::events::ConnectFailureReason;

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
}

/// Translates a client event into what the link state machine understands.
fn link_event(event: &Event) -> Option<LinkEvent> {
    Some(match event {
        Event::Connected(_) => LinkEvent::Connected,
        Event::Disconnected(_) => LinkEvent::Disconnected(Transient::Network),
        Event::LoggedOut(l) => match l.reason {
            ConnectFailureReason::AccountLocked => LinkEvent::LoggedOut(LogoutReason::Locked),
            // Refused at login: the session is over. On a live connection, a logout is the
            // phone removing this device (`conflict type=device_removed`).
            ConnectFailureReason::LoggedOut if l.on_connect => LinkEvent::LoggedOut(LogoutReason::LoggedOut),
            ConnectFailureReason::LoggedOut => LinkEvent::DeviceRemoved,
            other => LinkEvent::LoggedOut(LogoutReason::Other(u16::try_from(other.code()).unwrap_or(0))),
        },
        Event::StreamReplaced(_) => LinkEvent::Replaced,
        Event::TemporaryBan(b) => {
            LinkEvent::TemporaryBan { lasts: Duration::from_secs(u64::try_from(b.expire.num_seconds()).unwrap_or(0)) }
        }
        Event::ClientOutdated(_) => LinkEvent::ClientOutdated,
        Event::ConnectFailure(f) => classify_failure(u16::try_from(f.reason.code()).unwrap_or(0), None),
        _ => return None,
    })
}

type RunFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

fn run_once(client: &Arc<Client>) -> RunFuture {
    let client = client.clone();
    Box::pin(async move {
        let _ = tokio::spawn(async move { client.run().await }).await;
    })
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
    let running =
        client::start(&opts.session_dir, opts.server_url.as_deref(), "Hermes Agent", None, false, opts.journal.clone())
            .await?;
    let (client, mut events) = (running.client, running.events);
    if let Some(m) = &opts.messenger {
        m.attach(client.clone());
    }
    // The client's first run starts with it; `Action::Connect` for the first attempt is that run.
    let mut run: Option<RunFuture> = Some(Box::pin(running.handle));
    let mut retry_at: Option<tokio::time::Instant> = None;
    tokio::pin!(cancel);
    loop {
        for action in actions.drain(..) {
            match action {
                Action::Connect if run.is_none() => run = Some(run_once(&client)),
                Action::Connect => {}
                Action::ConnectAt(at) => retry_at = Some(clock + Duration::from_millis(at)),
                Action::Disconnect => retry_at = None,
            }
        }
        if link.state().is_terminal() {
            break;
        }
        let event = tokio::select! {
            () = &mut cancel => LinkEvent::Stop,
            e = events.recv() => match e.as_deref().map(link_event) {
                Some(Some(event)) => event,
                Some(None) => continue,
                None => LinkEvent::Stop,
            },
            // The connection's run ended: if nothing said why, it was the network.
            () = async { run.as_mut().expect("guarded").await }, if run.is_some() => {
                run = None;
                LinkEvent::Disconnected(Transient::Network)
            }
            () = async { tokio::time::sleep_until(retry_at.expect("guarded")).await }, if retry_at.is_some() => {
                retry_at = None;
                LinkEvent::RetryDue
            }
        };
        let before = link.state().clone();
        actions = link.step(event, now(), rand_unit());
        if *link.state() != before {
            if let Some(m) = &opts.messenger {
                m.set_connected(link.state().name() == "connected");
            }
            tracing::info!(state = link.state().name(), "whatsapp link");
            on_state(link.state());
        }
    }
    if let Some(m) = &opts.messenger {
        m.set_connected(false);
    }
    client.disconnect().await;
    if let Some(r) = run {
        let _ = tokio::time::timeout(Duration::from_secs(10), r).await;
    }
    Ok(link.state().clone())
}

fn rand_unit() -> f64 {
    rand::random::<f64>()
}
