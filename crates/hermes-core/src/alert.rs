//! Alerts that reach a person: when the link enters a state only a person can end (logged
//! out, device removed, client outdated, taken over again and again, banned, disk full, not
//! linked), once per state change, never a storm. Delivering them (a webhook, a command) is
//! the binary's; deciding when, and what they say, is here.

use crate::link::{LinkState, StateName};

/// What an alert says; sent as JSON `{state, reason, fix, account, since}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Alert {
    pub state: &'static str,
    pub reason: &'static str,
    pub fix: &'static str,
}

/// Remembers the last state, so each change alerts once.
#[derive(Clone, Debug, Default)]
pub struct Alerter {
    last: Option<StateName>,
}

impl Alerter {
    /// The alert for entering `state`, if it needs a person and was not the state before.
    pub fn on_state(&mut self, state: &LinkState) -> Option<Alert> {
        let kind = state.kind();
        let changed = self.last != Some(kind);
        self.last = Some(kind);
        if !changed {
            return None;
        }
        let reason = match kind {
            StateName::NotLinked => "WhatsApp is not linked to this gateway",
            StateName::LoggedOut => "WhatsApp logged this device out",
            StateName::DeviceRemoved => "this device was removed from the phone's Linked Devices",
            StateName::ClientOutdated => "WhatsApp refuses this version of hermes",
            StateName::Stopped => "another client kept taking this session over",
            StateName::TemporarilyBanned => "WhatsApp banned this number for a while",
            StateName::StoragePaused => "the disk under HERMES_HOME is full: messages are not being received",
            StateName::Connecting | StateName::Connected | StateName::Reconnecting | StateName::Replaced => {
                return None;
            }
        };
        Some(Alert { state: kind.as_str(), reason, fix: state.fix()? })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::{LogoutReason, StopReason};

    #[test]
    fn a_state_that_needs_a_person_alerts_once_per_change() {
        let mut a = Alerter::default();
        assert_eq!(a.on_state(&LinkState::Connected { since: 1 }), None);
        let removed = a.on_state(&LinkState::DeviceRemoved { at: 2 }).expect("alert");
        assert_eq!(removed.state, "device_removed");
        assert!(removed.fix.contains("hermes whatsapp repair"), "{removed:?}");
        assert_eq!(a.on_state(&LinkState::DeviceRemoved { at: 3 }), None, "no storm");
        assert!(a.on_state(&LinkState::LoggedOut { reason: LogoutReason::LoggedOut, at: 4 }).is_some());
        assert_eq!(a.on_state(&LinkState::Stopped { why: StopReason::Requested }), None, "a stop on request");
        assert_eq!(
            a.on_state(&LinkState::Reconnecting { attempt: 1, at: 5, cause: crate::link::Transient::Network }),
            None
        );
        assert!(a.on_state(&LinkState::StoragePaused { since: 6, then: crate::link::Resume::Connect }).is_some());
    }
}
