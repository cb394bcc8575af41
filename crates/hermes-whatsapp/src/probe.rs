//! Asking WhatsApp whether a stored session is still valid, and ending it on request.
//!
//! `repair` must never re-link a session that only lost its network: so it connects once and
//! believes only WhatsApp's own answer. A timeout is "cannot tell", not "invalid".

use std::path::Path;
use std::time::Duration;

use hermes_core::link::{LinkEvent, LogoutReason};
use whatsapp_rust::prelude::*;

use crate::classify::link_event;

use crate::client;
use crate::store::LinkedAccount;

/// WhatsApp's answer about a session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Probe {
    /// It logged in: the session is fine.
    Valid,
    /// WhatsApp ended it: logged out, locked or removed from the phone. Re-linking is the fix.
    Invalid(String),
    /// WhatsApp refuses this version of hermes; the session itself may be fine.
    ClientOutdated,
    /// The number is banned for this many seconds; the session itself is fine.
    Banned(i64),
    /// No answer in time: the network, not the session.
    Unreachable,
}

/// Connects once with the stored session and reports what WhatsApp says. Messages WhatsApp
/// delivers meanwhile go to `journal` before they are acknowledged, as the gateway's would:
/// without it, a probe would acknowledge them and they would never be answered.
pub async fn probe(
    session_dir: &Path,
    server_url: Option<&str>,
    timeout: Duration,
    journal: Option<crate::journal::JournalHook>,
) -> Result<Probe, String> {
    let mut running = client::start(client::Start { journal, ..client::Start::new(session_dir, server_url) }).await?;
    let verdict = tokio::time::timeout(timeout, async {
        while let Some(event) = running.events.recv().await {
            // A fresh, unlinked store asks for a QR code: there is no session to speak of.
            if matches!(&*event, Event::PairingQrCode(_)) {
                return Probe::Invalid("the store holds no linked device".to_owned());
            }
            // Judged as the gateway's supervisor judges it; anything passing is waited out.
            match link_event(&event) {
                Some(LinkEvent::Connected) => return Probe::Valid,
                Some(LinkEvent::LoggedOut(LogoutReason::Locked)) => {
                    return Probe::Invalid("the account or device is locked".to_owned());
                }
                Some(LinkEvent::LoggedOut(LogoutReason::LoggedOut)) => {
                    return Probe::Invalid("WhatsApp logged this device out".to_owned());
                }
                Some(LinkEvent::LoggedOut(LogoutReason::Other(code))) => {
                    return Probe::Invalid(format!("WhatsApp ended the session (code {code})"));
                }
                Some(LinkEvent::DeviceRemoved) => {
                    return Probe::Invalid("this device was removed from the phone's Linked Devices".to_owned());
                }
                Some(LinkEvent::ClientOutdated) => return Probe::ClientOutdated,
                Some(LinkEvent::TemporaryBan { lasts }) => {
                    return Probe::Banned(i64::try_from(lasts.as_secs()).unwrap_or(i64::MAX));
                }
                _ => {}
            }
        }
        Probe::Unreachable
    })
    .await
    .unwrap_or(Probe::Unreachable);
    // WhatsApp delivers what waited while nothing was connected right after the login: let it
    // reach the journal before leaving, rather than leave it for later (a few seconds at most).
    if verdict == Probe::Valid {
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            while let Some(event) = running.events.recv().await {
                if matches!(&*event, Event::OfflineSyncCompleted(_)) {
                    return;
                }
            }
        })
        .await;
    }
    running.stop().await;
    Ok(verdict)
}

/// Logs the device out on WhatsApp's side (it disappears from the phone's Linked Devices).
/// Errors when WhatsApp could not be reached or did not confirm. Messages delivered meanwhile
/// go to `journal` first, so they leave a trace.
pub async fn logout(
    session_dir: &Path,
    account: &LinkedAccount,
    server_url: Option<&str>,
    timeout: Duration,
    journal: Option<crate::journal::JournalHook>,
) -> Result<(), String> {
    let mut running = client::start(client::Start { journal, ..client::Start::new(session_dir, server_url) }).await?;
    let connected = tokio::time::timeout(timeout, async {
        while let Some(event) = running.events.recv().await {
            match &*event {
                Event::Connected(_) => return Ok(()),
                // Already logged out on WhatsApp's side: nothing left to end there.
                Event::LoggedOut(_) => return Err(None),
                _ => {}
            }
        }
        Err(Some("the connection ended".to_owned()))
    })
    .await
    .unwrap_or(Err(Some("WhatsApp could not be reached".to_owned())));
    let result = match connected {
        Ok(()) => {
            let jid: Jid = format!("{}:{}@s.whatsapp.net", account.phone, account.device)
                .parse()
                .map_err(|e| format!("bad account id: {e:?}"))?;
            let removed = running.client.execute(wacore::iq::devices::RemoveCompanionDeviceSpec::new(&jid)).await;
            running.client.logout().await;
            removed.map_err(|e| format!("WhatsApp did not confirm the logout: {e}"))
        }
        Err(None) => Ok(()),
        Err(Some(why)) => Err(why),
    };
    running.stop().await;
    result
}
