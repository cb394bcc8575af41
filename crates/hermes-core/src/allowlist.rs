//! Allowlists as people write them: `WHATSAPP_ALLOWED_USERS` and its kin.
//!
//! "It's connected but nothing arrives" is most often an allowlist entry that was written the
//! way humans write phone numbers (`+1 (555) 123-4567`, `0151 2345678`, a number pasted from a
//! contact card) rather than the way WhatsApp names accounts (`15551234567`). So every ordinary
//! spelling is normalised, and every entry that still is not a plausible number is kept, with
//! its position and a suggested fix, so it can be reported loudly instead of silently matching
//! no one.

use crate::identity::{Jid, JidError, Lid, PhoneNumber, PhoneProblem, Server, UserId};

/// One entry after normalisation.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum AllowEntry {
    /// `*`: everyone.
    Everyone,
    /// A person, by phone number or LID.
    User(UserId),
}

/// What is wrong with an entry that admits no one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryProblem {
    /// Something other than digits remains after removing formatting.
    NotANumber { offending: char },
    /// The digits do not form a plausible international number.
    Phone { digits: String, problem: PhoneProblem },
    /// A group JID, which belongs in the group allowlist.
    GroupJid,
    /// A broadcast or newsletter JID, which never sends as a person.
    NotAPerson,
    /// A JID whose user part is not digits, or whose server is unknown.
    BadJid { reason: String },
}

impl EntryProblem {
    /// A sentence saying what is wrong, for the user.
    pub fn describe(&self) -> String {
        match self {
            EntryProblem::NotANumber { offending } => {
                format!("contains '{offending}', which is not part of a phone number")
            }
            EntryProblem::Phone { digits, problem } => match problem {
                PhoneProblem::TooShort { digits: n } => {
                    format!(
                        "has only {n} digits; a number with its country code has at least {}",
                        PhoneNumber::MIN_DIGITS
                    )
                }
                PhoneProblem::TooLong { digits: n } => {
                    format!("has {n} digits; a phone number has at most {}", PhoneNumber::MAX_DIGITS)
                }
                PhoneProblem::NationalZero => {
                    format!("'{digits}' starts with 0, a national prefix: the country code is missing")
                }
            },
            EntryProblem::GroupJid => "is a group, not a person".to_owned(),
            EntryProblem::NotAPerson => "is a broadcast or channel address, never a sender".to_owned(),
            EntryProblem::BadJid { reason } => reason.clone(),
        }
    }

    /// How to fix it, as an instruction.
    pub fn fix(&self, list_key: &str) -> String {
        match self {
            EntryProblem::NotANumber { .. } => {
                "write the number with its country code and digits only, e.g. 15551234567".to_owned()
            }
            EntryProblem::Phone { problem: PhoneProblem::TooShort { .. }, .. } => {
                "write the full number with its country code, e.g. 15551234567".to_owned()
            }
            EntryProblem::Phone { problem: PhoneProblem::TooLong { .. }, .. } => {
                "separate entries with commas, and write each number once with its country code".to_owned()
            }
            EntryProblem::Phone { digits, problem: PhoneProblem::NationalZero } => format!(
                "replace the leading 0 with the country code, e.g. a German {digits} becomes 49{}",
                digits.trim_start_matches('0')
            ),
            EntryProblem::GroupJid => format!(
                "move it from {list_key} to WHATSAPP_GROUP_ALLOWED_USERS and set WHATSAPP_GROUP_POLICY=allowlist"
            ),
            EntryProblem::NotAPerson => format!("remove it from {list_key}"),
            EntryProblem::BadJid { .. } => {
                "write a phone number (15551234567), a phone JID (15551234567@s.whatsapp.net) or a LID (123456789012345@lid)"
                    .to_owned()
            }
        }
    }
}

/// One entry as written, with where it stands and what it became.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryReport {
    /// 1-based position in the list, as the user counts.
    pub position: usize,
    /// The entry as written (trimmed).
    pub raw: String,
    pub outcome: Result<AllowEntry, EntryProblem>,
    /// Position of an earlier entry that normalises to the same thing.
    pub duplicate_of: Option<usize>,
}

impl EntryReport {
    /// The normalised form, as it would be written back into `.env`.
    pub fn normalized(&self) -> Option<String> {
        match &self.outcome {
            Ok(AllowEntry::Everyone) => Some("*".to_owned()),
            Ok(AllowEntry::User(u)) => Some(u.to_string()),
            Err(_) => None,
        }
    }

    pub fn admits(&self, id: &UserId) -> bool {
        match &self.outcome {
            Ok(AllowEntry::Everyone) => true,
            Ok(AllowEntry::User(u)) => u == id,
            Err(_) => false,
        }
    }
}

/// A parsed allowlist: every entry, valid or not, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Allowlist {
    entries: Vec<EntryReport>,
}

impl Allowlist {
    /// Parses a comma- or newline-separated list, as found in `.env`.
    pub fn parse(text: &str) -> Allowlist {
        Self::from_items(text.split([',', '\n', '\r']))
    }

    /// Parses items that are already separate (a YAML sequence). An item may itself hold a
    /// comma-separated list, as people write in YAML too.
    pub fn from_items<'a>(items: impl IntoIterator<Item = &'a str>) -> Allowlist {
        let mut entries: Vec<EntryReport> = Vec::new();
        // The first position of each entry: a map, so a 100,000-entry list is not a quadratic pass.
        let mut first: std::collections::HashMap<AllowEntry, usize> = std::collections::HashMap::new();
        for item in items.into_iter().flat_map(|i| i.split([',', '\n', '\r'])) {
            let raw = trim_entry(item);
            if raw.is_empty() {
                continue;
            }
            let outcome = parse_entry(raw);
            let position = entries.len() + 1;
            let duplicate_of = match &outcome {
                Ok(e) => match first.entry(e.clone()) {
                    std::collections::hash_map::Entry::Occupied(o) => Some(*o.get()),
                    std::collections::hash_map::Entry::Vacant(v) => {
                        v.insert(position);
                        None
                    }
                },
                Err(_) => None,
            };
            entries.push(EntryReport { position, raw: raw.to_owned(), outcome, duplicate_of });
        }
        Allowlist { entries }
    }

    pub fn entries(&self) -> &[EntryReport] {
        &self.entries
    }

    /// No entry was written at all (invalid entries count as written).
    pub fn is_unset(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn has_wildcard(&self) -> bool {
        self.entries.iter().any(|e| e.outcome == Ok(AllowEntry::Everyone))
    }

    pub fn valid_users(&self) -> impl Iterator<Item = &UserId> {
        self.entries.iter().filter_map(|e| match &e.outcome {
            Ok(AllowEntry::User(u)) => Some(u),
            _ => None,
        })
    }

    pub fn problems(&self) -> impl Iterator<Item = (&EntryReport, &EntryProblem)> {
        self.entries.iter().filter_map(|e| e.outcome.as_ref().err().map(|p| (e, p)))
    }

    /// The first entry that admits any of the given forms of one person.
    pub fn find_match<'a>(&'a self, forms: &[UserId]) -> Option<(&'a EntryReport, Option<&'a UserId>)> {
        // A concrete entry is a better answer than `*`, so look for one first.
        for entry in &self.entries {
            if let Ok(AllowEntry::User(u)) = &entry.outcome
                && forms.contains(u)
            {
                return Some((entry, Some(u)));
            }
        }
        self.entries.iter().find(|e| e.outcome == Ok(AllowEntry::Everyone)).map(|e| (e, None))
    }
}

/// Characters that carry no meaning in a written number: every Unicode space, the invisible
/// marks that copy-paste from chat apps and contact cards brings along, dashes of all widths,
/// dots, slashes and parentheses.
fn is_number_formatting(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '\u{200B}'..='\u{200F}'       // zero-width space/joiners, LRM, RLM
                | '\u{202A}'..='\u{202E}' // bidi embeddings and overrides
                | '\u{2060}'..='\u{2064}' // word joiner, invisible operators
                | '\u{2066}'..='\u{2069}' // bidi isolates
                | '\u{061C}' | '\u{180E}' | '\u{FEFF}'
                | '-' | '\u{2010}'..='\u{2015}' | '\u{2212}' | '\u{FE58}' | '\u{FE63}' | '\u{FF0D}'
                | '.' | '/' | '(' | ')' | '[' | ']'
        )
}

/// Maps a decimal digit of any common script (ASCII, fullwidth, Arabic-Indic, Persian,
/// Devanagari) to ASCII.
fn ascii_digit(c: char) -> Option<char> {
    let zero = match c {
        '0'..='9' => return Some(c),
        '\u{FF10}'..='\u{FF19}' => 0xFF10,
        '\u{0660}'..='\u{0669}' => 0x0660,
        '\u{06F0}'..='\u{06F9}' => 0x06F0,
        '\u{0966}'..='\u{096F}' => 0x0966,
        _ => return None,
    };
    char::from_digit(c as u32 - zero, 10)
}

fn trim_entry(s: &str) -> &str {
    let s = s.trim_matches(|c: char| is_number_formatting(c) && c != '(' && c != '[' && c != '+');
    // Quotes around single entries, as in `'15551234567', '4915112345678'`.
    s.trim_matches(|c| c == '"' || c == '\'').trim_matches(char::is_whitespace)
}

/// Strips the wrappers numbers come in when copied from elsewhere: `tel:` URIs, vCard `TEL`
/// lines and `wa.me` links.
fn unwrap_number(s: &str) -> &str {
    let lower = s.to_ascii_lowercase();
    if let Some(i) = lower.find("wa.me/") {
        let rest = &s[i + "wa.me/".len()..];
        return rest.split(['?', '/', '#']).next().unwrap_or(rest);
    }
    if lower.starts_with("tel:") {
        return &s[4..];
    }
    // vCard: `TEL;TYPE=CELL:+1 555 123 4567`, Apple's `item1.TEL;type=pref:...`.
    let vcard_tel = lower.starts_with("tel;")
        || lower
            .strip_prefix("item")
            .is_some_and(|r| r.trim_start_matches(|c: char| c.is_ascii_digit()).starts_with(".tel"));
    if vcard_tel && let Some((_, number)) = s.rsplit_once(':') {
        return number;
    }
    s
}

fn parse_entry(raw: &str) -> Result<AllowEntry, EntryProblem> {
    if raw == "*" {
        return Ok(AllowEntry::Everyone);
    }
    if raw.contains('@') {
        return parse_jid_entry(raw);
    }
    let unwrapped = unwrap_number(raw);
    // `+44 (0)20 ...`: the bracketed trunk zero is dialled only inside the country.
    let s = &unwrapped.replace("(0)", "");
    let mut digits = String::with_capacity(s.len());
    let mut seen_plus = false;
    for c in s.chars() {
        if let Some(d) = ascii_digit(c) {
            digits.push(d);
        } else if (c == '+' || c == '\u{FF0B}') && digits.is_empty() && !seen_plus {
            seen_plus = true;
        } else if !is_number_formatting(c) {
            return Err(EntryProblem::NotANumber { offending: c });
        }
    }
    // `00` is the international dialling prefix in most of the world: `0049...` is `49...`.
    let digits = match digits.strip_prefix("00") {
        Some(rest) if !seen_plus => rest.to_owned(),
        _ => digits,
    };
    PhoneNumber::from_digits(&digits)
        .map(|p| AllowEntry::User(UserId::Phone(p)))
        .map_err(|problem| EntryProblem::Phone { digits, problem })
}

fn parse_jid_entry(raw: &str) -> Result<AllowEntry, EntryProblem> {
    let jid = Jid::parse(raw).map_err(|e| EntryProblem::BadJid { reason: e.to_string() })?;
    match jid.server() {
        Server::Phone => {
            let user = jid.user().trim_start_matches('+');
            if !user.bytes().all(|b| b.is_ascii_digit()) {
                return Err(EntryProblem::BadJid { reason: format!("the part before '@' in '{raw}' is not a number") });
            }
            PhoneNumber::from_digits(user)
                .map(|p| AllowEntry::User(UserId::Phone(p)))
                .map_err(|problem| EntryProblem::Phone { digits: user.to_owned(), problem })
        }
        Server::Lid => Lid::from_digits(jid.user())
            .map(|l| AllowEntry::User(UserId::Lid(l)))
            .ok_or_else(|| EntryProblem::BadJid { reason: format!("the LID in '{raw}' is not a number") }),
        Server::Group => Err(EntryProblem::GroupJid),
        Server::Broadcast | Server::Newsletter => Err(EntryProblem::NotAPerson),
        Server::Other(s) => Err(EntryProblem::BadJid { reason: format!("'@{s}' is not a WhatsApp user address") }),
    }
}

/// Parses one identity the way an allowlist entry is parsed; `*` is not an identity.
pub fn parse_user(s: &str) -> Result<UserId, EntryProblem> {
    match parse_entry(trim_entry(s))? {
        AllowEntry::User(u) => Ok(u),
        AllowEntry::Everyone => Err(EntryProblem::NotANumber { offending: '*' }),
    }
}

/// Why the text given as a chat names no chat.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChatProblem {
    /// Written as an address (with `@`) that is not a well-formed JID.
    Jid(JidError),
    /// Written as a person, and not one: what the allowlist would say about the entry.
    Person(EntryProblem),
}

/// The chat a message arrives in, as a person writes it when asking about access: a group or
/// other address as a JID, Hermes' bare group id (longer than any phone number), or a person
/// in any form an allowlist entry takes (the device dropped).
pub fn parse_chat(s: &str) -> Result<Jid, ChatProblem> {
    let trimmed = s.trim();
    // Hermes treats a bare id longer than a phone number as a group.
    if !trimmed.contains('@') && trimmed.len() > 15 && trimmed.bytes().all(|b| b.is_ascii_digit() || b == b'-') {
        return Jid::parse(&format!("{trimmed}@g.us")).map_err(ChatProblem::Jid);
    }
    if trimmed.contains('@') && !trimmed.ends_with("@s.whatsapp.net") && !trimmed.ends_with("@lid") {
        return Jid::parse(trimmed).map_err(ChatProblem::Jid);
    }
    parse_user(trimmed).map(|id| id.to_jid()).map_err(ChatProblem::Person)
}

#[cfg(test)]
mod tests;
