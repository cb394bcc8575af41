//! Faults on demand: the ways a WhatsApp connection goes wrong, so a client's handling of
//! each can be tested against the real protocol instead of a guess.

use std::time::Duration;

/// One fault to inject with [`crate::Sim::inject`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// Drop every open connection at once, without a close frame or stream error: what a
    /// network failure looks like to the client.
    DropConnections,
    /// Refuse the next `n` connection attempts (accepted and closed before the handshake).
    RefuseConnections(u32),
    /// Delay every stanza the server sends by this much (zero clears it).
    SlowResponses(Duration),
    /// `<stream:error><conflict type="replaced"/>` to every connection of a phone's devices:
    /// another client took the session.
    Replaced { phone: String },
    /// The phone unlinked the device: it is removed, and its connection gets
    /// `<stream:error><conflict type="device_removed"/>`.
    DeviceRemoved { phone: String, device: u16 },
    /// Refuse every login with `<failure reason="N">` until cleared: 401 logged out,
    /// 403 locked, 405 client outdated, 503 service unavailable, ...
    FailLogins { reason: u16 },
    /// Refuse every login with a temporary ban (`402`), its code and the seconds until it lifts.
    TemporaryBan { code: u16, expire: Duration },
    /// A `<stream:error code="N"/>` to every connection, then close (515 = restart required).
    StreamError { code: u16 },
    /// Deliver an already sent message (by id) `times` more times to the devices it went to,
    /// acknowledged or not: the server-side hiccup that made Hermes answer one message 40 times.
    RedeliveryStorm { id: String, times: u32 },
    /// The phone has not been online for `days`. As WhatsApp does, its linked devices keep
    /// working for up to [`COMPANION_LOGOUT_DAYS`]; from then on they are logged out (removed,
    /// `conflict type="device_removed"` on a live connection, 401 at the next login).
    PhoneOffline { phone: String, days: u32 },
    /// The media a contact sent as message `id` (or every object, with `None`) leaves the CDN:
    /// downloads get 410 Gone. With `reupload`, the sender's phone uploads it again when a
    /// device asks (`mediaretry`); without, it answers that it no longer has it.
    ExpireMedia { id: Option<String>, reupload: bool },
    /// The CDN serves the media of message `id` (or every object) with a flipped byte, so the
    /// client's MAC check fails.
    CorruptMedia { id: Option<String> },
}

/// How long WhatsApp keeps a phone's linked devices while the phone itself stays offline.
pub const COMPANION_LOGOUT_DAYS: u32 = 14;

/// The faults in force.
#[derive(Clone, Debug, Default)]
pub(crate) struct Faults {
    pub refuse: u32,
    pub delay: Duration,
    /// (reason, code, expire seconds) for every login.
    pub login_failure: Option<(u16, Option<u16>, Option<u64>)>,
}
