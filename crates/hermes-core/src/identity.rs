//! WhatsApp identities: JIDs as they arrive on the wire, and the person behind them.
//!
//! A sender reaches us as `user[:device]@server`. The same person can show up under a phone
//! JID (`15551234567@s.whatsapp.net`) or a LID (`123456789012345@lid`), from any of their
//! devices. Access decisions are about the person, so everything below reduces a JID to a
//! [`UserId`] with the device dropped.

use std::fmt;

/// The server part of a JID, which says what kind of thing it names.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Server {
    /// `s.whatsapp.net` (and the legacy `c.us`): a phone-number account.
    Phone,
    /// `lid`: a privacy-preserving "linked identity" that hides the phone number.
    Lid,
    /// `g.us`: a group.
    Group,
    /// `broadcast`: status updates and broadcast lists.
    Broadcast,
    /// `newsletter`: channels.
    Newsletter,
    /// Anything else (bots, hosted devices, ...), kept verbatim.
    Other(String),
}

impl Server {
    fn parse(s: &str) -> Server {
        match s {
            "s.whatsapp.net" | "c.us" => Server::Phone,
            "lid" => Server::Lid,
            "g.us" => Server::Group,
            "broadcast" => Server::Broadcast,
            "newsletter" => Server::Newsletter,
            other => Server::Other(other.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Server::Phone => "s.whatsapp.net",
            Server::Lid => "lid",
            Server::Group => "g.us",
            Server::Broadcast => "broadcast",
            Server::Newsletter => "newsletter",
            Server::Other(s) => s,
        }
    }
}

/// A parsed JID. Construct with [`Jid::parse`] or the `Jid::phone`/`Jid::lid` helpers.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Jid {
    user: String,
    device: Option<u16>,
    server: Server,
}

/// Why a string is not a JID.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JidError {
    /// There is no `@server` part.
    #[error("'{0}' is not a JID: it has no '@server' part")]
    NoServer(String),
    /// The part before `@` is empty.
    #[error("'{0}' is not a JID: the part before '@' is empty")]
    EmptyUser(String),
    /// The `:device` suffix is not a number.
    #[error("'{0}' is not a JID: the device after ':' is not a number")]
    BadDevice(String),
}

impl Jid {
    /// Parses `user[.agent][:device]@server`.
    pub fn parse(s: &str) -> Result<Jid, JidError> {
        let s = s.trim();
        let (user_part, server) = s.rsplit_once('@').ok_or_else(|| JidError::NoServer(s.to_owned()))?;
        let (user, device) = match user_part.split_once(':') {
            Some((user, dev)) => {
                let dev: u16 = dev.parse().map_err(|_| JidError::BadDevice(s.to_owned()))?;
                (user, Some(dev))
            }
            None => (user_part, None),
        };
        // whatsmeow's AD JIDs carry an agent as `user.agent`; the person is `user`.
        let user = match user.split_once('.') {
            Some((u, agent)) if !u.is_empty() && agent.bytes().all(|b| b.is_ascii_digit()) => u,
            _ => user,
        };
        if user.is_empty() {
            return Err(JidError::EmptyUser(s.to_owned()));
        }
        Ok(Jid { user: user.to_owned(), device, server: Server::parse(server) })
    }

    /// A JID as the protocol handed it over: never refused, so that whatever WhatsApp delivers
    /// can be journaled (and refused, with a reason) rather than lost. A well-formed JID reads
    /// as [`Jid::parse`] reads it; anything else keeps its text, and names no person.
    pub fn from_wire(s: &str) -> Jid {
        if let Ok(jid) = Jid::parse(s) {
            return jid;
        }
        match s.rsplit_once('@') {
            // An empty user or a device that is not a number: the whole left part is the user.
            Some((user, server)) => Jid { user: user.to_owned(), device: None, server: Server::parse(server) },
            // A bare server (`s.whatsapp.net`), as WhatsApp writes its own address.
            None => Jid { user: String::new(), device: None, server: Server::parse(s) },
        }
    }

    /// A chat to send to, as people write it (Hermes' `whatsapp:<id>` targets): a JID as is
    /// (groups, LIDs, phone JIDs, device stripped), or a phone number in any usual spelling.
    pub fn parse_chat(s: &str) -> Result<Jid, String> {
        let s = s.trim();
        if s.contains('@') {
            return Jid::parse(s).map(|j| j.to_non_device()).map_err(|e| e.to_string());
        }
        // As Hermes does: a bare id longer than any phone number is a group.
        if s.len() > 15 && s.bytes().all(|b| b.is_ascii_digit() || b == b'-') {
            return Jid::parse(&format!("{s}@g.us")).map_err(|e| e.to_string());
        }
        let digits: String = s.chars().filter(char::is_ascii_digit).collect();
        let junk = s.chars().any(|c| !(c.is_ascii_digit() || " +-().".contains(c)));
        match PhoneNumber::from_digits(&digits) {
            Ok(p) if !junk => Ok(Jid::phone(&p)),
            _ => Err(format!(
                "'{s}' is not a chat: write a phone number with its country code (e.g. 15551234567) or a JID \
                 (e.g. 120363012345678901@g.us)"
            )),
        }
    }

    pub fn phone(number: &PhoneNumber) -> Jid {
        Jid { user: number.0.clone(), device: None, server: Server::Phone }
    }

    pub fn lid(lid: &Lid) -> Jid {
        Jid { user: lid.0.clone(), device: None, server: Server::Lid }
    }

    pub fn user(&self) -> &str {
        &self.user
    }

    pub fn device(&self) -> Option<u16> {
        self.device
    }

    pub fn server(&self) -> &Server {
        &self.server
    }

    /// The same JID without its device, i.e. the account rather than one of its devices.
    pub fn to_non_device(&self) -> Jid {
        Jid { device: None, ..self.clone() }
    }

    /// The person this JID belongs to, when it names a person at all.
    pub fn user_id(&self) -> Option<UserId> {
        match self.server {
            Server::Phone => PhoneNumber::from_digits(&self.user).ok().map(UserId::Phone),
            Server::Lid => Lid::from_digits(&self.user).map(UserId::Lid),
            _ => None,
        }
    }

    /// Status, broadcast lists and channels: never a conversation with a person.
    pub fn is_broadcast_like(&self) -> bool {
        matches!(self.server, Server::Broadcast | Server::Newsletter)
    }

    pub fn is_group(&self) -> bool {
        self.server == Server::Group
    }
}

impl fmt::Display for Jid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.device {
            None if self.user.is_empty() => f.write_str(self.server.as_str()),
            Some(d) => write!(f, "{}:{}@{}", self.user, d, self.server.as_str()),
            None => write!(f, "{}@{}", self.user, self.server.as_str()),
        }
    }
}

/// A message's id, as WhatsApp knows it: chosen by its sender (for the gateway's replies,
/// before sending, so that a resend is the same message). Kept as it came.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(String);

impl MessageId {
    pub fn new(id: impl Into<String>) -> MessageId {
        MessageId(id.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl PartialEq<&str> for MessageId {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

/// An international phone number: country code and number, digits only, no `+`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PhoneNumber(String);

/// Why a digit string is not a plausible international phone number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PhoneProblem {
    /// Fewer than 7 digits: no country has numbers that short.
    TooShort { digits: usize },
    /// More than 15 digits: E.164 allows at most 15.
    TooLong { digits: usize },
    /// Starts with `0`: a national (trunk) prefix, so the country code is missing.
    NationalZero,
}

impl PhoneNumber {
    pub const MIN_DIGITS: usize = 7;
    pub const MAX_DIGITS: usize = 15;

    /// Checks an ASCII digit string. The caller has already removed formatting.
    pub fn from_digits(digits: &str) -> Result<PhoneNumber, PhoneProblem> {
        debug_assert!(digits.bytes().all(|b| b.is_ascii_digit()));
        let n = digits.len();
        if n < Self::MIN_DIGITS {
            return Err(PhoneProblem::TooShort { digits: n });
        }
        if n > Self::MAX_DIGITS {
            return Err(PhoneProblem::TooLong { digits: n });
        }
        if digits.starts_with('0') {
            return Err(PhoneProblem::NationalZero);
        }
        Ok(PhoneNumber(digits.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A WhatsApp LID: an opaque number that stands for an account without revealing its phone.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Lid(String);

impl Lid {
    pub fn from_digits(digits: &str) -> Option<Lid> {
        (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())).then(|| Lid(digits.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Lid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@lid", self.0)
    }
}

/// A person, by one of the two names WhatsApp gives them.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum UserId {
    Phone(PhoneNumber),
    Lid(Lid),
}

impl UserId {
    pub fn to_jid(&self) -> Jid {
        match self {
            UserId::Phone(p) => Jid::phone(p),
            UserId::Lid(l) => Jid::lid(l),
        }
    }

    pub fn phone(&self) -> Option<&PhoneNumber> {
        match self {
            UserId::Phone(p) => Some(p),
            UserId::Lid(_) => None,
        }
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UserId::Phone(p) => p.fmt(f),
            UserId::Lid(l) => l.fmt(f),
        }
    }
}

/// The linked account itself, as far as it is known.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Account {
    pub phone: Option<PhoneNumber>,
    pub lid: Option<Lid>,
}

impl Account {
    pub fn is(&self, id: &UserId) -> bool {
        match id {
            UserId::Phone(p) => self.phone.as_ref() == Some(p),
            UserId::Lid(l) => self.lid.as_ref() == Some(l),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(input: &str, expected: &str, user_id: Option<&str>) {
        let jid = Jid::parse(input).expect("valid jid");
        assert_eq!(jid.to_string(), expected);
        assert_eq!(jid.user_id().map(|u| u.to_string()).as_deref(), user_id);
    }

    #[test]
    fn parses_jids() {
        check("15551234567@s.whatsapp.net", "15551234567@s.whatsapp.net", Some("15551234567"));
        check("15551234567:12@s.whatsapp.net", "15551234567:12@s.whatsapp.net", Some("15551234567"));
        check("15551234567.0:3@s.whatsapp.net", "15551234567:3@s.whatsapp.net", Some("15551234567"));
        check("15551234567@c.us", "15551234567@s.whatsapp.net", Some("15551234567"));
        check("123456789012345@lid", "123456789012345@lid", Some("123456789012345@lid"));
        check("123456789012345:4@lid", "123456789012345:4@lid", Some("123456789012345@lid"));
        check("120363001234567890@g.us", "120363001234567890@g.us", None);
        check("status@broadcast", "status@broadcast", None);
        check("1234@newsletter", "1234@newsletter", None);
    }

    #[test]
    fn rejects_non_jids() {
        assert_eq!(Jid::parse("15551234567"), Err(JidError::NoServer("15551234567".into())));
        assert_eq!(Jid::parse("@lid"), Err(JidError::EmptyUser("@lid".into())));
        assert_eq!(Jid::parse("1:x@lid"), Err(JidError::BadDevice("1:x@lid".into())));
    }

    #[test]
    fn what_the_wire_gives_is_kept_as_it_was() {
        for s in ["15551234567:3@s.whatsapp.net", "s.whatsapp.net", "1:x@lid", "x@weird.server", "status@broadcast"] {
            assert_eq!(Jid::from_wire(s).to_string(), s);
        }
        assert_eq!(Jid::from_wire("1:x@lid").user_id(), None);
        assert_eq!(Jid::from_wire("s.whatsapp.net").user_id(), None);
    }

    #[test]
    fn phone_number_bounds() {
        assert_eq!(PhoneNumber::from_digits("123456"), Err(PhoneProblem::TooShort { digits: 6 }));
        assert!(PhoneNumber::from_digits("1234567").is_ok());
        assert!(PhoneNumber::from_digits("123456789012345").is_ok());
        assert_eq!(PhoneNumber::from_digits("1234567890123456"), Err(PhoneProblem::TooLong { digits: 16 }));
        assert_eq!(PhoneNumber::from_digits("01511234567"), Err(PhoneProblem::NationalZero));
    }
}
