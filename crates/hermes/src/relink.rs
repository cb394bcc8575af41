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
    stop: impl std::future::Future<Output = ()>,
) -> anyhow::Result<Outcome> {
    tokio::pin!(stop);
    // What was asked before this wait (another state, an older page) is not an answer to it;
    // Idle makes open pages reload and ask again.
    while requests.try_recv().is_ok() {}
    service.set_pairing(Pairing::Idle);
    let session_dir = loaded.session_dir().path;
    tracing::info!("waiting for a link through the pairing page");
    let mut next = None;
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
        let progress = |p: LinkProgress| match p {
            LinkProgress::Qr { code, expires_in } => {
                service.set_pairing(Pairing::Qr { code, expires_at: deadline(expires_in) });
            }
            LinkProgress::PairCode { code, expires_in } => service.set_pairing(Pairing::Code {
                code,
                phone: phone.clone().unwrap_or_default(),
                expires_at: deadline(expires_in),
            }),
            LinkProgress::Paired { .. } => service.set_pairing(Pairing::Paired),
            _ => {}
        };
        let mut stopping = false;
        // A new request from the page replaces this attempt; a shutdown ends it.
        let cancel = async {
            tokio::select! {
                r = requests.recv() => next = r,
                () = &mut stop => stopping = true,
            }
        };
        match linking::link(&opts, progress, cancel, hermes_store::clock::now()).await {
            Ok(linked) => {
                for w in &linked.warnings {
                    tracing::warn!("{w}");
                }
                crate::whatsapp::save_env(loaded, &[("WHATSAPP_ENABLED", "true")])?;
                hermes_whatsapp::status::forget_record(&loaded.home.path.join("state"));
                if let Some(b) = &linked.backup {
                    tracing::info!(backup = %b.display(), "the previous session was kept as a backup");
                }
                tracing::info!(phone = %linked.account.phone, "linked through the pairing page");
                service.set_pairing(Pairing::Idle);
                return Ok(Outcome::Linked);
            }
            Err(LinkError::Interrupted) if stopping => return Ok(Outcome::Stopped),
            Err(LinkError::Interrupted) => {}
            Err(e) => {
                tracing::warn!(error = %e, "linking through the pairing page did not finish");
                service.set_pairing(Pairing::Failed { why: e.to_string() });
            }
        }
    }
}

/// When a code shown now for `expires_in` expires, in unix milliseconds.
fn deadline(expires_in: Duration) -> i64 {
    hermes_store::clock::now_millis().saturating_add(i64::try_from(expires_in.as_millis()).unwrap_or(i64::MAX))
}
