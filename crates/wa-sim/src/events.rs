//! What happened in the simulator, recorded so tests can wait on it without sleeping.

use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;

/// One thing the simulator saw or did. Tests wait for these with [`crate::Sim::wait_for`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SimEvent {
    /// A client finished the Noise handshake. `login` is `None` for a device that is not
    /// linked yet (it came to register).
    Connected { conn: u64, login: Option<(String, u16)>, used_ik: bool },
    /// A connection was refused before the handshake (a `refuse connections` fault).
    Refused { conn: u64 },
    /// A new companion asked to be linked; it was given pairing refs for its QR code.
    PairingStarted { conn: u64 },
    /// A companion asked to link to `phone` (a JID) by code.
    PairingCodeRequested { conn: u64, phone: String },
    /// The code typed on the phone was not the companion's: linking stopped.
    PairingCodeRejected { conn: u64, reason: String },
    /// The phone linked a device: it is now `phone:device`.
    DeviceLinked { phone: String, device: u16 },
    /// A device logged itself out (`remove-companion-device`).
    DeviceUnlinked { phone: String, device: u16 },
    /// A linked device logged in.
    LoggedIn { phone: String, device: u16 },
    /// A login was refused with a failure reason (401 logged out, 403 locked, ...).
    LoginRefused { phone: String, device: u16, reason: u16 },
    /// The device left passive mode and was told its offline queue is drained: from here on
    /// it is a fully connected client.
    Active { phone: String, device: u16 },
    /// A contact sent a message (to every linked device of `to`).
    MessageSent { from: String, to: String, id: String },
    /// A contact received and decrypted a text from a linked device.
    MessageReceived { contact: String, from: String, id: String, text: String },
    /// A contact received media from a linked device, fetched from the CDN and checked
    /// (`text` of a [`SimEvent::MessageReceived`] is not enough to say what a file was).
    MediaReceived { contact: String, media: crate::media::ReceivedMedia },
    /// A contact got a media message it could not fetch or check: what was wrong.
    MediaRejected { contact: String, from: String, id: String, reason: String },
    /// A device acknowledged a message (receipt or ack): it will not be redelivered.
    MessageDelivered { phone: String, device: u16, id: String },
    /// A connection ended, from either side.
    Disconnected { conn: u64 },
    /// The phone went (or was found) offline for this many days; at 14 its devices are logged out.
    PhoneOffline { phone: String, days: u32 },
    /// A stanza crossed the wire. `inbound` is client-to-server.
    Stanza { conn: u64, inbound: bool, xml: String },
}

/// An append-only log with a wake-up for waiters.
#[derive(Debug, Default)]
pub(crate) struct EventLog {
    events: Mutex<Vec<SimEvent>>,
    notify: Notify,
    /// Off: stanzas are not recorded (benchmarks, where formatting every stanza would be the
    /// simulator's cost, not the client's).
    skip_stanzas: std::sync::atomic::AtomicBool,
}

/// Waiting ran out of time; carries what was seen, to make the failure readable.
#[derive(Debug, thiserror::Error)]
#[error("timed out after {waited:?} waiting for a simulator event; last events: {recent:#?}")]
pub struct WaitTimeout {
    pub waited: Duration,
    pub recent: Vec<SimEvent>,
}

impl EventLog {
    pub fn push(&self, e: SimEvent) {
        self.events.lock().expect("event log poisoned").push(e);
        self.notify.notify_waiters();
    }

    pub fn records_stanzas(&self) -> bool {
        !self.skip_stanzas.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn set_record_stanzas(&self, on: bool) {
        self.skip_stanzas.store(!on, std::sync::atomic::Ordering::Relaxed);
    }

    /// The events at and after `from`.
    pub fn since(&self, from: usize) -> Vec<SimEvent> {
        self.events.lock().expect("event log poisoned").get(from..).map(<[SimEvent]>::to_vec).unwrap_or_default()
    }

    /// Waits until `n` events at or after `from` match; returns the position after the last.
    pub async fn wait_count(
        &self,
        from: usize,
        n: usize,
        timeout: Duration,
        pred: impl Fn(&SimEvent) -> bool,
    ) -> Result<usize, WaitTimeout> {
        let deadline = tokio::time::Instant::now() + timeout;
        let (mut seen, mut found) = (from, 0);
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let events = self.events.lock().expect("event log poisoned");
                for e in events.get(seen..).unwrap_or_default() {
                    seen += 1;
                    if pred(e) {
                        found += 1;
                        if found >= n {
                            return Ok(seen);
                        }
                    }
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                let recent = self.since(seen.saturating_sub(12));
                return Err(WaitTimeout { waited: timeout, recent });
            }
        }
    }

    pub fn len(&self) -> usize {
        self.events.lock().expect("event log poisoned").len()
    }

    pub fn snapshot(&self) -> Vec<SimEvent> {
        self.events.lock().expect("event log poisoned").clone()
    }

    /// The first event at or after `from` that matches, waiting up to `timeout`.
    pub async fn wait_for(
        &self,
        from: usize,
        timeout: Duration,
        pred: impl Fn(&SimEvent) -> bool,
    ) -> Result<SimEvent, WaitTimeout> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut seen = from;
        loop {
            // Registered before looking, so a push between the look and the wait still wakes us.
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            // The predicate runs without the lock held, so it may call back into the simulator.
            let fresh: Vec<SimEvent> = {
                let events = self.events.lock().expect("event log poisoned");
                events.get(seen..).map(<[SimEvent]>::to_vec).unwrap_or_default()
            };
            seen += fresh.len();
            if let Some(e) = fresh.into_iter().find(|e| pred(e)) {
                return Ok(e);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                let events = self.snapshot();
                let recent =
                    events.iter().rev().filter(|e| !matches!(e, SimEvent::Stanza { .. })).take(12).cloned().collect();
                return Err(WaitTimeout { waited: timeout, recent });
            }
        }
    }
}
