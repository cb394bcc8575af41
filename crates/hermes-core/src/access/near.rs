//! Entries that were probably meant for a refused sender, and the hint built from them.
//!
//! Most refused senders that matter are near misses: a number written without its country
//! code, with a national `0`, or with one digit off. Finding them is what turns "not allowed"
//! into "entry #2 has no country code; write 15551234567".

use super::EntryRef;
use crate::allowlist::{AllowEntry, EntryProblem};
use crate::config::WhatsAppConfig;
use crate::identity::{PhoneProblem, UserId};

/// How an entry nearly matched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NearReason {
    /// The entry is the sender's number without its country code.
    MissingCountryCode { write: String },
    /// The entry is the sender's number with a national `0` instead of the country code.
    NationalZero { write: String },
    /// The entry differs from the sender by a few digits.
    Typo { distance: usize },
    /// The entry resembles the sender but admits no one at all.
    Invalid { problem: String },
}

impl NearReason {
    /// The entry can be replaced by the sender's number with confidence: it admits no one as
    /// written (a national `0` is never the start of an international number). An entry
    /// without a country code might still be someone's full number, so it is kept.
    pub fn is_correction(&self) -> bool {
        matches!(self, NearReason::NationalZero { .. })
    }

    fn rank(&self) -> usize {
        match self {
            NearReason::MissingCountryCode { .. } | NearReason::NationalZero { .. } => 0,
            NearReason::Typo { distance } => *distance,
            NearReason::Invalid { .. } => 3,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NearMiss {
    pub entry: EntryRef,
    pub reason: NearReason,
}

const MAX_TYPO: usize = 2;
const MAX_SHOWN: usize = 3;

fn digits_of(s: &str) -> String {
    s.chars().filter(char::is_ascii_digit).collect()
}

/// The sender's number with the entry as its tail: the country code was left out.
fn is_tail(sender: &str, entry_digits: &str) -> bool {
    entry_digits.len() >= 6 && sender.len() > entry_digits.len() && sender.ends_with(entry_digits)
}

/// Digits this many or more already make a full international number almost everywhere
/// (North America 11, most of Europe 11 to 13), while national numbers without their trunk
/// prefix are 10 or fewer. An allowlist entry this long is someone else's number, however
/// its tail matches: `15551234567` is a US number, not `4915551234567` missing its `49`.
const INTERNATIONAL_DIGITS: usize = 11;

fn compare(sender: &UserId, outcome: &Result<AllowEntry, EntryProblem>, raw: &str) -> Option<NearReason> {
    match (sender, outcome) {
        (UserId::Phone(s), Ok(AllowEntry::User(UserId::Phone(e)))) => {
            let (s, e) = (s.as_str(), e.as_str());
            if is_tail(s, e) {
                // A full number that is the tail of the sender's is another person's number.
                return (e.len() < INTERNATIONAL_DIGITS)
                    .then(|| NearReason::MissingCountryCode { write: s.to_owned() });
            }
            let d = strsim::levenshtein(s, e);
            (d <= MAX_TYPO).then_some(NearReason::Typo { distance: d })
        }
        (UserId::Lid(s), Ok(AllowEntry::User(UserId::Lid(e)))) => {
            let d = strsim::levenshtein(s.as_str(), e.as_str());
            (d <= MAX_TYPO).then_some(NearReason::Typo { distance: d })
        }
        (UserId::Phone(s), Err(problem)) => {
            let s = s.as_str();
            if let EntryProblem::Phone { digits, problem: PhoneProblem::NationalZero } = problem
                && is_tail(s, digits.trim_start_matches('0'))
            {
                return Some(NearReason::NationalZero { write: s.to_owned() });
            }
            let digits = digits_of(raw);
            let close = is_tail(s, &digits) || strsim::levenshtein(s, &digits) <= MAX_TYPO + 1;
            close.then(|| NearReason::Invalid { problem: problem.describe() })
        }
        _ => None,
    }
}

/// Entries of both allowlists that look meant for this sender, closest first.
pub(super) fn nearest(cfg: &WhatsAppConfig, forms: &[UserId]) -> Vec<NearMiss> {
    let lists = [("WHATSAPP_ALLOWED_USERS", &cfg.allowed_users), ("GATEWAY_ALLOWED_USERS", &cfg.gateway_allowed_users)];
    let mut out: Vec<NearMiss> = Vec::new();
    for (name, setting) in lists {
        for entry in setting.value.entries() {
            let best = forms.iter().filter_map(|f| compare(f, &entry.outcome, &entry.raw)).min_by_key(NearReason::rank);
            if let Some(reason) = best {
                out.push(NearMiss { entry: EntryRef::new(name, setting, entry), reason });
            }
        }
    }
    out.sort_by_key(|n| n.reason.rank());
    out.truncate(MAX_SHOWN);
    out
}

/// One sentence that says why the sender was not admitted and what to write instead.
pub(super) fn hint(cfg: &WhatsAppConfig, forms: &[UserId], nearest: &[NearMiss]) -> String {
    let sender = forms.first().map(ToString::to_string).unwrap_or_default();
    if let Some(n) = nearest.first() {
        let e = &n.entry;
        let at = format!("entry '{}' (#{} in {})", e.raw, e.position, e.list);
        return match &n.reason {
            NearReason::MissingCountryCode { write } => format!("{at} has no country code; write {write}"),
            NearReason::NationalZero { write } => {
                format!("{at} starts with a national 0 instead of the country code; write {write}")
            }
            NearReason::Typo { distance } => {
                let digits = if *distance == 1 { "digit" } else { "digits" };
                format!("{at} differs from the sender {sender} by {distance} {digits}; check it for a typo")
            }
            NearReason::Invalid { problem } => format!("{at} admits no one: it {problem}"),
        };
    }
    let only_lid = forms.iter().all(|f| f.phone().is_none());
    if only_lid {
        return format!(
            "the sender is known only by its LID {sender}, and its phone number has not been learned yet; \
             add {sender} to WHATSAPP_ALLOWED_USERS, or wait until WhatsApp reveals the number"
        );
    }
    if cfg.allowed_users.value.is_unset() && cfg.gateway_allowed_users.value.is_unset() {
        return "WHATSAPP_ALLOWED_USERS is empty, and an empty allowlist admits no one".to_owned();
    }
    format!("no entry in WHATSAPP_ALLOWED_USERS or GATEWAY_ALLOWED_USERS names {sender}")
}
