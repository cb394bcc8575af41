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

/// What the gateway's progress looks like now, for [`Watchdog`]. Times are unix seconds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    pub now: i64,
    /// Since when the link has been trying to connect without success (only while it retries
    /// by itself: a state that needs a person has its own alert).
    pub down_since: Option<i64>,
    /// Since when the first message waiting to be answered has been first (not its own
    /// timestamp: a backlog delivered after an outage is old, and moving).
    pub oldest_waiting: Option<i64>,
    /// The oldest reply still waiting to be sent.
    pub oldest_unsent: Option<i64>,
}

/// The gateway has not answered for too long, and why, in a person's words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stuck {
    pub reason: String,
    pub fix: &'static str,
}

/// Alerts once when the gateway cannot answer for `after` seconds: WhatsApp unreachable,
/// a message unanswered or a reply unsent for that long. Quiet again once all is moving, and
/// armed for the next time.
#[derive(Clone, Debug)]
pub struct Watchdog {
    after: i64,
    alerted: bool,
}

impl Watchdog {
    pub fn new(after_secs: i64) -> Watchdog {
        Watchdog { after: after_secs.max(1), alerted: false }
    }

    pub fn check(&mut self, p: &Progress) -> Option<Stuck> {
        let age = |t: Option<i64>| t.map(|t| p.now - t).filter(|a| *a >= self.after);
        let stuck = if let Some(a) = age(p.down_since) {
            Some(Stuck {
                reason: format!("WhatsApp has not been reachable for {}", minutes(a)),
                fix: "check this machine's network (and `hermes whatsapp status`); the gateway keeps retrying by \
                      itself, and WhatsApp keeps the messages until then",
            })
        } else if let Some(a) = age(p.oldest_waiting) {
            Some(Stuck {
                reason: format!("a message has waited {} for an answer", minutes(a)),
                fix: "check the model: `hermes doctor`, and the gateway's log for model errors; what waits is \
                      answered when it answers",
            })
        } else {
            age(p.oldest_unsent).map(|a| Stuck {
                reason: format!("a reply has waited {} to be sent", minutes(a)),
                fix: "see the gateway's log for why WhatsApp does not take it; `hermes whatsapp status` shows the link",
            })
        };
        match stuck {
            Some(s) if !self.alerted => {
                self.alerted = true;
                Some(s)
            }
            Some(_) => None,
            None => {
                self.alerted = false;
                None
            }
        }
    }
}

fn minutes(secs: i64) -> String {
    match secs / 60 {
        0 => format!("{secs} seconds"),
        1 => "1 minute".to_owned(),
        m => format!("{m} minutes"),
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

    #[test]
    fn a_gateway_that_cannot_answer_alerts_once_per_episode() {
        let mut w = Watchdog::new(600);
        let at = |now: i64| Progress { now, ..Progress::default() };
        assert_eq!(w.check(&Progress { down_since: Some(1000), ..at(1500) }), None, "not long enough yet");
        let down = w.check(&Progress { down_since: Some(1000), ..at(1700) }).expect("alert");
        assert!(down.reason.contains("11 minutes") && down.fix.contains("network"), "{down:?}");
        assert_eq!(w.check(&Progress { down_since: Some(1000), ..at(2000) }), None, "once");
        assert_eq!(w.check(&at(2100)), None, "moving again");
        let waiting = w.check(&Progress { oldest_waiting: Some(2000), ..at(2700) }).expect("alert again");
        assert!(waiting.reason.contains("waited 11 minutes for an answer"), "{waiting:?}");
        let mut w = Watchdog::new(60);
        let unsent = w.check(&Progress { oldest_unsent: Some(0), ..at(61) }).expect("alert");
        assert!(unsent.reason.contains("1 minute to be sent"), "{unsent:?}");
    }
}
