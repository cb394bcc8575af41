//! From WhatsApp's codes to link events: the one place that decides what is terminal.

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

/// A `<stream:error>` with its `code` and the `type` of a `<conflict>` child.
pub fn classify_stream_error(code: Option<u16>, conflict: Option<&str>) -> LinkEvent {
    match (conflict, code) {
        (Some("replaced"), _) | (None, Some(409)) => LinkEvent::Replaced,
        (Some(_), _) | (None, Some(516)) => LinkEvent::DeviceRemoved,
        (None, Some(401)) => LinkEvent::LoggedOut(LogoutReason::LoggedOut),
        (None, Some(515)) => LinkEvent::Disconnected(Transient::Restart),
        (None, Some(other)) => LinkEvent::Disconnected(Transient::StreamError(other)),
        (None, None) => LinkEvent::Disconnected(Transient::Network),
    }
}
