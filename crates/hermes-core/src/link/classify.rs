//! From WhatsApp's codes to link events: the one place that decides what is terminal.
//!
//! Stream errors need no table here: whatsapp-rust turns them into typed events (replaced,
//! device removed, logged out) that `hermes_whatsapp`'s one event classifier maps.

use std::time::Duration;

use super::{LinkEvent, LogoutReason, Transient};

/// A `<failure reason=N>` at login. `expire` is a temporary ban's duration in seconds.
pub fn classify_failure(reason: u16, expire: Option<u64>) -> LinkEvent {
    match reason {
        401 => LinkEvent::LoggedOut(LogoutReason::LoggedOut),
        403 => LinkEvent::LoggedOut(LogoutReason::Locked),
        406 => LinkEvent::LoggedOut(LogoutReason::Other(406)),
        // Without an expiry a ban still ends; an hour is what WhatsApp's own clients wait.
        402 => LinkEvent::TemporaryBan { lasts: Duration::from_secs(expire.unwrap_or(3600)) },
        // The server rejects this client build: updating fixes it, re-linking never does.
        405 | 409 => LinkEvent::ClientOutdated,
        // Anything else is the server's trouble: retry with backoff rather than give up on a
        // session that may be perfectly valid.
        other => LinkEvent::Disconnected(Transient::ServerError(other)),
    }
}
