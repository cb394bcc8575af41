//! Whether a running gateway is ready, for `GET /readyz`: linked, connected, able to keep what
//! arrives, and sending what it answers. "Running" (`/healthz`) is only that the process
//! answers; ready is what a user means by "it works", so a load balancer, Docker or a person
//! reading the answer knows which of the two failures it is.

/// An outbox row queued this long while connected means sending is stuck.
pub const STUCK_AFTER_SECS: i64 = 120;

/// What readiness is judged from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Facts<'a> {
    /// The link state's name (`connected`, `reconnecting`, ...), as `status` shows it.
    pub state: &'a str,
    /// The link state's fix, when it has one.
    pub fix: Option<&'a str>,
    /// A client is connected right now.
    pub connected: bool,
    /// The journal took a write just now.
    pub journal_writable: bool,
    /// Age of the oldest reply still waiting to be sent, in seconds.
    pub oldest_unsent_secs: Option<i64>,
}

/// Why the gateway is not ready, in the words `status` uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotReady {
    pub state: String,
    pub reason: String,
    pub fix: String,
}

pub fn readiness(f: &Facts<'_>) -> Result<(), NotReady> {
    let not = |reason: &str, fix: &str| {
        Err(NotReady { state: f.state.to_owned(), reason: reason.to_owned(), fix: fix.to_owned() })
    };
    if f.state != "connected" {
        let fix = f.fix.unwrap_or("wait: the gateway reconnects by itself; `hermes whatsapp status` shows the retries");
        return not(&format!("the WhatsApp link is {}", f.state.replace('_', " ")), fix);
    }
    if !f.connected {
        return not(
            "the link is being re-established",
            "wait: the gateway reconnects by itself; `hermes whatsapp status` shows the retries",
        );
    }
    if !f.journal_writable {
        return not(
            "messages cannot be kept: the journal (state/hermes.db) refuses writes",
            "free disk space under HERMES_HOME and check that state/ is writable; `hermes doctor` says which",
        );
    }
    if f.oldest_unsent_secs.is_some_and(|age| age > STUCK_AFTER_SECS) {
        return not(
            "replies are not going out: one has waited to be sent for over two minutes while connected",
            "see the gateway's log for why WhatsApp refuses it; `hermes whatsapp status` shows the outbox",
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready() -> Facts<'static> {
        Facts { state: "connected", fix: None, connected: true, journal_writable: true, oldest_unsent_secs: Some(3) }
    }

    #[test]
    fn ready_only_when_linked_connected_writable_and_sending() {
        assert_eq!(readiness(&ready()), Ok(()));
        let out = readiness(&Facts { state: "device_removed", fix: Some("re-link with `hermes whatsapp`"), ..ready() })
            .expect_err("terminal");
        assert_eq!((out.state.as_str(), out.fix.as_str()), ("device_removed", "re-link with `hermes whatsapp`"));
        assert!(out.reason.contains("device removed"), "{out:?}");
        assert!(readiness(&Facts { state: "reconnecting", ..ready() }).expect_err("down").fix.contains("reconnects"));
        assert!(readiness(&Facts { connected: false, ..ready() }).is_err());
        assert!(readiness(&Facts { journal_writable: false, ..ready() }).expect_err("full").fix.contains("disk"));
        assert!(readiness(&Facts { oldest_unsent_secs: Some(STUCK_AFTER_SECS + 1), ..ready() }).is_err());
        assert!(readiness(&Facts { oldest_unsent_secs: None, ..ready() }).is_ok());
    }
}
