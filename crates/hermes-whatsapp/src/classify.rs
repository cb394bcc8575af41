//! The one translation of whatsapp-rust's events into the link state machine's: the
//! supervisor drives the link with it, and `probe` judges a session by it, so the two can
//! never disagree about what ended a session.

use std::time::Duration;

use hermes_core::link::{LinkEvent, LogoutReason, Transient, classify_failure};
use whatsapp_rust::types::events::{ConnectFailureReason, Event};

/// Translates a client event into what the link state machine understands.
pub(crate) fn link_event(event: &Event) -> Option<LinkEvent> {
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
