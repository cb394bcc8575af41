//! The WhatsApp link as a state machine: what to do after each thing the connection reports.
//!
//! "It asks me to scan again" often means a gateway treated a network blip as the end of the
//! session, or the end of the session as a blip (retrying a logged-out device forever). Here
//! every cause is classified once: transient causes back off with full jitter and never lead
//! to a QR code; terminal ones stop for good, keep their reason and say the one command that
//! fixes them; a temporary ban waits for its expiry; a session taken over by another client
//! backs off longer and stops when it keeps happening. The gateway never re-links on its own.
//!
//! Pure: the caller passes the time (`now`, milliseconds on any monotonic clock) and a random
//! number for jitter, and carries out the returned [`Action`]s.

mod classify;

use std::time::Duration;

pub use classify::classify_failure;

/// Why a connection ended that is worth retrying.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transient {
    /// The socket closed or could not be opened (network down, DNS, refused).
    Network,
    /// No answer in time.
    Timeout,
    /// A stream error the server expects us to recover from (503, 429, ...).
    StreamError(u16),
    /// A login refused with a server-side error (500, 503).
    ServerError(u16),
    /// 515: the server asks for an immediate reconnect, as after linking.
    Restart,
}

/// Why WhatsApp ended the session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogoutReason {
    /// 401: logged out (from the phone, or the session expired).
    LoggedOut,
    /// 403: the account or device is locked.
    Locked,
    /// Another logout code.
    Other(u16),
}

/// Why the link stopped without WhatsApp ending the session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// We were asked to stop (shutdown).
    Requested,
    /// Another client kept taking the session over.
    ReplacedRepeatedly,
}

/// Where the link is. Times are the caller's milliseconds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkState {
    /// No linked session: nothing to connect.
    NotLinked,
    /// A connection attempt is under way; `attempt` counts consecutive failures before it.
    Connecting {
        attempt: u32,
    },
    Connected {
        since: u64,
    },
    /// Waiting to retry at `at` after a transient failure.
    Reconnecting {
        attempt: u32,
        at: u64,
        cause: Transient,
    },
    /// Another client took the session; retrying at `at`. `count` replacements recently.
    Replaced {
        count: u32,
        at: u64,
    },
    /// WhatsApp banned the number until `until`; retrying then.
    TemporarilyBanned {
        until: u64,
    },
    /// Not receiving since `since`: the disk under HERMES_HOME is full (or below the free-space
    /// threshold), so a message could not be kept. Resumes by itself when there is room, into
    /// what it interrupted (`then`): a ban or a replacement wait still runs its course.
    StoragePaused {
        since: u64,
        then: Resume,
    },
    /// Terminal: WhatsApp ended the session.
    LoggedOut {
        reason: LogoutReason,
        at: u64,
    },
    /// Terminal: the device was removed from Linked Devices on the phone.
    DeviceRemoved {
        at: u64,
    },
    /// Terminal until hermes is updated: WhatsApp refuses this client version.
    ClientOutdated {
        at: u64,
    },
    /// Terminal: stopped on request, or because another client kept taking over.
    Stopped {
        why: StopReason,
    },
}

impl LinkState {
    /// Over for good: only the user (repair, update, a restart) gets it going again.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            LinkState::NotLinked
                | LinkState::LoggedOut { .. }
                | LinkState::DeviceRemoved { .. }
                | LinkState::ClientOutdated { .. }
                | LinkState::Stopped { .. }
        )
    }

    /// Which state this is, without its data: what is recorded and compared.
    pub fn kind(&self) -> StateName {
        match self {
            LinkState::NotLinked => StateName::NotLinked,
            LinkState::Connecting { .. } => StateName::Connecting,
            LinkState::Connected { .. } => StateName::Connected,
            LinkState::Reconnecting { .. } => StateName::Reconnecting,
            LinkState::Replaced { .. } => StateName::Replaced,
            LinkState::TemporarilyBanned { .. } => StateName::TemporarilyBanned,
            LinkState::StoragePaused { .. } => StateName::StoragePaused,
            LinkState::LoggedOut { .. } => StateName::LoggedOut,
            LinkState::DeviceRemoved { .. } => StateName::DeviceRemoved,
            LinkState::ClientOutdated { .. } => StateName::ClientOutdated,
            LinkState::Stopped { .. } => StateName::Stopped,
        }
    }

    /// The stable name for status output and the link-event record.
    pub fn name(&self) -> &'static str {
        self.kind().as_str()
    }

    /// What the user should do, when there is something to do.
    pub fn fix(&self) -> Option<&'static str> {
        match self {
            LinkState::NotLinked => Some("run `hermes whatsapp` to link this gateway to your WhatsApp"),
            LinkState::LoggedOut { reason: LogoutReason::Locked, .. } => Some(
                "WhatsApp locked this account or device: open WhatsApp on the phone and follow its instructions, \
                 then run `hermes whatsapp repair`",
            ),
            LinkState::LoggedOut { .. } => {
                Some("WhatsApp logged this device out: run `hermes whatsapp repair` to link it again")
            }
            LinkState::DeviceRemoved { .. } => Some(
                "this device was removed from Linked Devices (on the phone, or by WhatsApp after the phone was offline \
                 for 14 days): open WhatsApp on the phone, then run `hermes whatsapp repair` to link it again",
            ),
            LinkState::ClientOutdated { .. } => Some(
                "WhatsApp refuses this version of hermes: update hermes and restart it; your session is fine, \
                 do not re-link",
            ),
            LinkState::Stopped { why: StopReason::ReplacedRepeatedly } => Some(
                "another client is using this session (a second gateway or hermes process on the same session): \
                 stop it, then restart hermes",
            ),
            LinkState::TemporarilyBanned { .. } => {
                Some("WhatsApp banned this number for a while; hermes reconnects by itself when the ban ends")
            }
            // Where the volume's size is known, `hermes_core::reserve` words a better fix (a
            // volume smaller than the reserve cannot be cured by freeing space).
            LinkState::StoragePaused { .. } => Some(
                "the disk that holds HERMES_HOME is full (or below WHATSAPP_MIN_FREE_MB): free some space, or set \
                 WHATSAPP_MIN_FREE_MB lower if the volume is not much bigger than it (`hermes doctor` says which); \
                 hermes resumes receiving by itself, and WhatsApp keeps the messages until then",
            ),
            LinkState::Connecting { .. }
            | LinkState::Connected { .. }
            | LinkState::Reconnecting { .. }
            | LinkState::Replaced { .. }
            | LinkState::Stopped { why: StopReason::Requested } => None,
        }
    }
}

/// The fix of a state that [needs a link](StateName::needs_link) when the gateway stays up with
/// its pairing page at `url`: `hermes whatsapp repair` cannot run beside it (the session is in
/// use), the page is where it is done.
pub fn relink_on_page(url: &str) -> String {
    format!("open {url} to link WhatsApp again (or stop the gateway and run `hermes whatsapp repair`)")
}

/// The name of a [`LinkState`] without its data: what `state/link.json` records and
/// `hermes whatsapp status` shows. Compare these, never the strings; the strings are the
/// stable form written to files and JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StateName {
    NotLinked,
    Connecting,
    Connected,
    Reconnecting,
    Replaced,
    TemporarilyBanned,
    StoragePaused,
    LoggedOut,
    DeviceRemoved,
    ClientOutdated,
    Stopped,
}

impl StateName {
    /// Every name, in the order of [`LinkState`]'s variants.
    pub const ALL: [StateName; 11] = [
        StateName::NotLinked,
        StateName::Connecting,
        StateName::Connected,
        StateName::Reconnecting,
        StateName::Replaced,
        StateName::TemporarilyBanned,
        StateName::StoragePaused,
        StateName::LoggedOut,
        StateName::DeviceRemoved,
        StateName::ClientOutdated,
        StateName::Stopped,
    ];

    /// The stable written form (`connected`, `logged_out`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            StateName::NotLinked => "not_linked",
            StateName::Connecting => "connecting",
            StateName::Connected => "connected",
            StateName::Reconnecting => "reconnecting",
            StateName::Replaced => "replaced",
            StateName::TemporarilyBanned => "temporarily_banned",
            StateName::StoragePaused => "storage_paused",
            StateName::LoggedOut => "logged_out",
            StateName::DeviceRemoved => "device_removed",
            StateName::ClientOutdated => "client_outdated",
            StateName::Stopped => "stopped",
        }
    }

    /// Whether only a new link (a QR code or a pairing code) gets the gateway going again:
    /// there is no session, or WhatsApp ended it. An outdated client or a second client on
    /// the session is not fixed by linking, and re-linking them would cost a device for nothing.
    pub fn needs_link(self) -> bool {
        matches!(self, StateName::NotLinked | StateName::LoggedOut | StateName::DeviceRemoved)
    }

    /// Reads the written form back; `None` for a name this version does not know.
    pub fn parse(s: &str) -> Option<StateName> {
        StateName::ALL.into_iter().find(|n| n.as_str() == s)
    }
}

/// Where a storage pause goes when there is room again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resume {
    /// Connect at once.
    Connect,
    /// Back to the ban, which ends at `until`.
    Banned { until: u64 },
    /// Back to waiting out a replacement until `at`.
    Replaced { count: u32, at: u64 },
}

/// What the connection reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkEvent {
    /// The supervisor starts; `linked` says whether a valid session exists.
    Start {
        linked: bool,
    },
    Connected,
    Disconnected(Transient),
    LoggedOut(LogoutReason),
    DeviceRemoved,
    TemporaryBan {
        lasts: Duration,
    },
    ClientOutdated,
    Replaced,
    /// The time of an [`Action::ConnectAt`] has come.
    RetryDue,
    /// A message or the session could not be written (disk full, below the threshold): stop
    /// receiving, so nothing is acknowledged that is not kept.
    StorageFull,
    /// There is room again.
    StorageReady,
    Stop,
}

/// What the supervisor must do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Open a connection now.
    Connect,
    /// Open a connection at this time: feed [`LinkEvent::RetryDue`] then.
    ConnectAt(u64),
    /// Close the connection and do not reconnect.
    Disconnect,
}

/// Backoff policy, as data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The ceiling of the first retry's delay; each failure doubles it.
    pub base: Duration,
    pub cap: Duration,
    /// Connected this long, a connection counts as healthy and the backoff starts over.
    pub reset_after: Duration,
    /// Delay after a replacement, times the number of recent replacements.
    pub replaced_base: Duration,
    /// This many replacements within `replaced_window` stop the link.
    pub replaced_limit: u32,
    pub replaced_window: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(60),
            reset_after: Duration::from_secs(60),
            replaced_base: Duration::from_secs(30),
            replaced_limit: 3,
            replaced_window: Duration::from_secs(600),
        }
    }
}

impl RetryPolicy {
    /// Every duration multiplied by `factor` (the counts unchanged): the same behaviour on a
    /// faster clock, for end-to-end tests of minutes-long sequences.
    pub fn scaled(&self, factor: f64) -> RetryPolicy {
        let f = |d: Duration| d.mul_f64(factor.max(0.0));
        RetryPolicy {
            base: f(self.base),
            cap: f(self.cap),
            reset_after: f(self.reset_after),
            replaced_base: f(self.replaced_base),
            replaced_limit: self.replaced_limit,
            replaced_window: f(self.replaced_window),
        }
    }

    /// The reconnection backoff ([`crate::backoff`]): `unit` is in `[0, 1)`.
    pub fn delay(&self, failures: u32, unit: f64) -> Duration {
        crate::backoff::Backoff { base: self.base, cap: self.cap }.delay(failures, unit)
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The machine: the state and what it remembers across states.
#[derive(Clone, Debug)]
pub struct Link {
    state: LinkState,
    policy: RetryPolicy,
    /// Consecutive failed or short-lived connections.
    failures: u32,
    /// When recent replacements happened.
    replaced_at: Vec<u64>,
}

impl Link {
    pub fn new(policy: RetryPolicy) -> Link {
        Link { state: LinkState::NotLinked, policy, failures: 0, replaced_at: Vec::new() }
    }

    pub fn state(&self) -> &LinkState {
        &self.state
    }

    /// Feeds one event. `now` is in milliseconds; `unit` is a random number in `[0, 1)`.
    pub fn step(&mut self, event: LinkEvent, now: u64, unit: f64) -> Vec<Action> {
        use LinkEvent as E;
        use LinkState as S;
        let (next, actions) = match (&self.state, event) {
            (_, E::Stop) => (S::Stopped { why: StopReason::Requested }, vec![Action::Disconnect]),
            // Only a start (a new process, or a repair) moves a terminal state.
            (s, E::Start { linked }) if s.is_terminal() || matches!(s, S::NotLinked) => {
                self.failures = 0;
                self.replaced_at.clear();
                if linked { (S::Connecting { attempt: 0 }, vec![Action::Connect]) } else { (S::NotLinked, vec![]) }
            }
            (s, _) if s.is_terminal() => return vec![],
            // A start while running changes nothing.
            (_, E::Start { .. }) => return vec![],

            // WhatsApp ended the session: stop for good, never retry, never re-link.
            (_, E::LoggedOut(reason)) => (S::LoggedOut { reason, at: now }, vec![Action::Disconnect]),
            (_, E::DeviceRemoved) => (S::DeviceRemoved { at: now }, vec![Action::Disconnect]),
            (_, E::ClientOutdated) => (S::ClientOutdated { at: now }, vec![Action::Disconnect]),
            (_, E::TemporaryBan { lasts }) => {
                let until = now.saturating_add(ms(lasts));
                (S::TemporarilyBanned { until }, vec![Action::Disconnect, Action::ConnectAt(until)])
            }
            (_, E::Replaced) => {
                let window = ms(self.policy.replaced_window);
                self.replaced_at.retain(|t| now.saturating_sub(*t) < window);
                self.replaced_at.push(now);
                let count = u32::try_from(self.replaced_at.len()).unwrap_or(u32::MAX);
                if count >= self.policy.replaced_limit {
                    (S::Stopped { why: StopReason::ReplacedRepeatedly }, vec![Action::Disconnect])
                } else {
                    // Longer than a blip: the other client may be a one-off, or may be here to stay.
                    let wait =
                        self.policy.replaced_base.saturating_mul(count).mul_f64(0.5 + unit.clamp(0.0, 1.0) / 2.0);
                    let at = now.saturating_add(ms(wait));
                    (S::Replaced { count, at }, vec![Action::ConnectAt(at)])
                }
            }

            // Storage before everything else that merely retries: no connection while nothing can be kept.
            (S::StoragePaused { .. }, E::StorageFull) => return vec![],
            (s, E::StorageFull) => {
                let then = match s {
                    S::TemporarilyBanned { until } => Resume::Banned { until: *until },
                    S::Replaced { count, at } => Resume::Replaced { count: *count, at: *at },
                    _ => Resume::Connect,
                };
                (S::StoragePaused { since: now, then }, vec![Action::Disconnect])
            }
            (S::StoragePaused { then, .. }, E::StorageReady) => match *then {
                Resume::Banned { until } if until > now => {
                    (S::TemporarilyBanned { until }, vec![Action::ConnectAt(until)])
                }
                Resume::Replaced { count, at } if at > now => (S::Replaced { count, at }, vec![Action::ConnectAt(at)]),
                _ => (S::Connecting { attempt: self.failures }, vec![Action::Connect]),
            },
            (_, E::StorageReady) => return vec![],
            // Reports from the connection that was dropped for the pause.
            (S::StoragePaused { .. }, E::Connected | E::Disconnected(_) | E::RetryDue) => return vec![],

            (S::Connecting { .. } | S::Reconnecting { .. }, E::Connected) => (S::Connected { since: now }, vec![]),
            // A late or duplicate report of a connection we already have.
            (S::Connected { .. }, E::Connected) => return vec![],
            (S::Replaced { .. } | S::TemporarilyBanned { .. }, E::Connected) => (S::Connected { since: now }, vec![]),

            (S::Connected { since }, E::Disconnected(Transient::Restart)) => {
                // A restart request is not a failure; a healthy connection keeps a clean slate.
                if now.saturating_sub(*since) >= ms(self.policy.reset_after) {
                    self.failures = 0;
                }
                (S::Connecting { attempt: self.failures }, vec![Action::Connect])
            }
            (S::Connected { since }, E::Disconnected(cause)) => {
                if now.saturating_sub(*since) >= ms(self.policy.reset_after) {
                    self.failures = 0;
                }
                self.backoff(now, unit, cause)
            }
            (S::Connecting { .. }, E::Disconnected(cause)) => self.backoff(now, unit, cause),
            // Already waiting to retry: the report adds nothing.
            (S::Reconnecting { .. } | S::Replaced { .. } | S::TemporarilyBanned { .. }, E::Disconnected(_)) => {
                return vec![];
            }

            (S::Reconnecting { attempt, .. }, E::RetryDue) => {
                (S::Connecting { attempt: *attempt }, vec![Action::Connect])
            }
            (S::Replaced { .. } | S::TemporarilyBanned { .. }, E::RetryDue) => {
                (S::Connecting { attempt: self.failures }, vec![Action::Connect])
            }
            // A timer from a state we already left.
            (S::Connecting { .. } | S::Connected { .. }, E::RetryDue) => return vec![],

            (
                S::NotLinked
                | S::LoggedOut { .. }
                | S::DeviceRemoved { .. }
                | S::ClientOutdated { .. }
                | S::Stopped { .. },
                _,
            ) => unreachable!("terminal states are handled above"),
        };
        self.state = next;
        actions
    }

    fn backoff(&mut self, now: u64, unit: f64, cause: Transient) -> (LinkState, Vec<Action>) {
        let delay = self.policy.delay(self.failures, unit);
        self.failures = self.failures.saturating_add(1);
        let at = now.saturating_add(ms(delay));
        (LinkState::Reconnecting { attempt: self.failures, at, cause }, vec![Action::ConnectAt(at)])
    }
}

#[cfg(test)]
mod tests;
