//! Linking from the pairing page, for a gateway nobody watches at a terminal: while the link
//! needs a person, the page's requests (a QR code, a pairing code for a number) each start a
//! linking attempt, whose codes the page shows; a new request replaces the running attempt.
//! The session is replaced exactly as `hermes whatsapp repair` does it: linked beside the old
//! one, and installed (the old one moved to a backup) only once WhatsApp accepted the device.

use std::time::Duration;

use hermes_gateway::service::{PairRequest, Pairing, ServiceState};
use hermes_whatsapp::linking::{self, LinkError, LinkOptions, LinkProgress};
use tokio::sync::mpsc::UnboundedReceiver;

use crate::load::Loaded;

/// How long one attempt may wait for the phone (WhatsApp stops rotating QR codes before).
const ATTEMPT: Duration = Duration::from_secs(300);

pub enum Outcome {
    Linked,
    /// The gateway is stopping.
    Stopped,
}

/// Waits for a link through the page; `stop` ending (a shutdown) ends the wait.
pub async fn wait_for_link(
    loaded: &Loaded,
    requests: &mut UnboundedReceiver<PairRequest>,
    service: &ServiceState,
    alerts: &crate::alerts::Alerts,
    stop: impl std::future::Future<Output = ()>,
) -> anyhow::Result<Outcome> {
    tokio::pin!(stop);
    // A page open when the link ended may have asked already: its last request is the one
    // to answer. Otherwise Idle, and the next page load asks.
    let mut next = None;
    while let Ok(r) = requests.try_recv() {
        next = Some(r);
    }
    if next.is_none() {
        service.set_pairing(Pairing::Idle);
    }
    let session_dir = loaded.session_dir().path;
    tracing::info!("waiting for a link through the pairing page");
    loop {
        let request = match next.take() {
            Some(r) => r,
            None => tokio::select! {
                r = requests.recv() => match r {
                    Some(r) => r,
                    None => return Ok(Outcome::Stopped),
                },
                () = &mut stop => return Ok(Outcome::Stopped),
            },
        };
        service.set_pairing(Pairing::Starting);
        let phone = match &request {
            PairRequest::Qr => None,
            PairRequest::Code { phone } => Some(phone.clone()),
        };
        let opts = LinkOptions {
            session_dir: session_dir.clone(),
            pair_code_phone: phone.clone(),
            timeout: ATTEMPT,
            server_url: loaded.resolved.config.whatsapp.server_url.value.clone(),
            push_name: linking::PUSH_NAME.to_owned(),
        };
        // Once the phone accepted, a new request from the page must not throw the link away.
        let paired = std::cell::Cell::new(false);
        let progress = |p: LinkProgress| match p {
            LinkProgress::Qr { code, expires_in } => {
                service.set_pairing(Pairing::Qr { code, expires_at: deadline(expires_in) });
            }
            LinkProgress::PairCode { code, expires_in } => service.set_pairing(Pairing::Code {
                code,
                phone: phone.clone().unwrap_or_default(),
                expires_at: deadline(expires_in),
            }),
            LinkProgress::Paired { .. } => {
                paired.set(true);
                service.set_pairing(Pairing::Paired);
            }
            _ => {}
        };
        let mut stopping = false;
        // A new request from the page replaces this attempt; a shutdown ends it.
        let cancel = async {
            loop {
                tokio::select! {
                    r = requests.recv() => {
                        if paired.get() {
                            continue;
                        }
                        next = r;
                    }
                    () = &mut stop => stopping = true,
                }
                break;
            }
        };
        match linking::link(&opts, progress, cancel, hermes_store::clock::now()).await {
            Ok(linked) => {
                for w in &linked.warnings {
                    tracing::warn!("{w}");
                }
                // hermes owns the device now: Hermes Agent, run from this folder, must not start
                // its own bridge on it (hermes itself does not read the variable).
                if let Err(e) = crate::whatsapp::save_env(loaded, &[("WHATSAPP_ENABLED", "false")]) {
                    tracing::warn!(error = %format!("{e:#}"), "linked, but WHATSAPP_ENABLED=false (for Hermes Agent) could not be saved to .env");
                }
                hermes_whatsapp::status::forget_record(&loaded.home.path.join("state"));
                if let Some(b) = &linked.backup {
                    tracing::info!(backup = %b.display(), "the previous session was kept as a backup");
                }
                tracing::info!(phone = %linked.account.phone, "linked through the pairing page");
                // The page stays at "logging in" until the link reports its next state.
                return Ok(Outcome::Linked);
            }
            Err(LinkError::Interrupted) if stopping => return Ok(Outcome::Stopped),
            Err(LinkError::Interrupted) => {}
            Err(e @ LinkError::PasskeyRequired) => {
                let fix = e.to_string();
                tracing::warn!("{fix}");
                // The link's state first: a page reloading for the message sees both.
                service.set_passkey_required(&fix, hermes_store::clock::now());
                service.set_pairing(Pairing::Failed { why: fix.clone() });
                alerts.passkey_required(&fix, hermes_store::clock::now());
            }
            Err(e) => {
                tracing::warn!(error = %e, "linking through the pairing page did not finish");
                service.set_pairing(Pairing::Failed { why: page_reason(&e) });
            }
        }
    }
}

/// When a code shown now for `expires_in` expires, in unix milliseconds.
fn deadline(expires_in: Duration) -> i64 {
    hermes_store::clock::now_millis().saturating_add(i64::try_from(expires_in.as_millis()).unwrap_or(i64::MAX))
}

/// Why an attempt ended, in the page's words (the terminal's say "run the command again").
fn page_reason(e: &LinkError) -> String {
    match e {
        LinkError::Timeout(_) | LinkError::QrExpired => {
            "nobody scanned a code in time; ask for a new one when the phone is at hand".to_owned()
        }
        LinkError::Refused(why) => format!("WhatsApp refused the link ({why}); try again, or with the other way below"),
        other => other.to_string(),
    }
}
