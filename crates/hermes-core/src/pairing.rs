//! Approval codes for strangers, under the `pairing` DM policy.
//!
//! A sender the allowlist does not name gets one message with an 8-character code; the owner
//! approves it with `hermes pairing approve whatsapp CODE`. The limits are those of Hermes and
//! its peers, and they exist because a gateway that messages strangers gets accounts banned:
//! a code lives one hour, one sender gets at most one code an hour, and at most three codes
//! wait at any time. This module decides; the caller supplies the time and the randomness.

/// Characters of a code: no 0/O or 1/I, so a code read aloud or retyped survives.
const ALPHABET: &[u8; 32] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
pub const CODE_LEN: usize = 8;
/// How long a code can be approved, and how long a sender waits for another one.
pub const CODE_TTL_SECS: i64 = 3600;
pub const MAX_PENDING: usize = 3;

/// A code from 40 random bits.
pub fn code_from(random: u64) -> String {
    (0..CODE_LEN).map(|i| char::from(ALPHABET[usize::try_from((random >> (5 * i)) & 31).unwrap_or(0)])).collect()
}

/// A code as a user typed it (any case, spaces or dashes), or why it is not one.
pub fn parse_code(input: &str) -> Result<String, String> {
    let code: String =
        input.chars().filter(|c| !c.is_whitespace() && *c != '-').map(|c| c.to_ascii_uppercase()).collect();
    if code.chars().count() != CODE_LEN {
        return Err(format!("'{input}' is not a pairing code: codes have {CODE_LEN} characters, like E33NGAST"));
    }
    match code.chars().find(|c| !ALPHABET.contains(&u8::try_from(u32::from(*c)).unwrap_or(0))) {
        Some(bad) => Err(format!("'{input}' is not a pairing code: '{bad}' never appears in one")),
        None => Ok(code),
    }
}

/// A code waiting for approval.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pending {
    pub code: String,
    pub sender: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Approved already: no longer counts against [`MAX_PENDING`].
    pub approved: bool,
}

impl Pending {
    pub fn expired(&self, now: i64) -> bool {
        now - self.created_at >= CODE_TTL_SECS
    }
}

/// What to do for a stranger who wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Offer {
    /// Send this code (and keep it pending).
    Send(String),
    /// This sender was sent a code less than an hour ago: send nothing.
    AlreadyOffered,
    /// Three codes are already waiting: send nothing until one is approved or expires.
    TooManyPending,
}

/// Decides whether a sender, known by all its `forms` (LID and phone), gets a code. `offers`
/// are the codes created in the last hour (approved or not: one code per sender per hour
/// either way); `pending` counts those still waiting; `random` makes the code.
pub fn offer(offers: &[Pending], pending: usize, forms: &[&str], now: i64, random: u64) -> Offer {
    if offers.iter().any(|p| forms.contains(&p.sender.as_str()) && !p.expired(now)) {
        return Offer::AlreadyOffered;
    }
    if pending >= MAX_PENDING {
        return Offer::TooManyPending;
    }
    Offer::Send(code_from(random))
}

/// The message a stranger receives.
pub fn message(code: &str) -> String {
    format!(
        "Hi! I don't recognize you yet, so I can't answer. If you know the owner of this number, \
         send them this pairing code: {code}\nIt expires in one hour."
    )
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn pending(sender: &str, at: i64) -> Pending {
        Pending { code: "ABCDEFGH".into(), sender: sender.into(), created_at: at, approved: false }
    }

    #[test]
    fn offers() {
        let now = 10_000;
        assert!(matches!(offer(&[], 0, &["a"], now, 7), Offer::Send(_)));
        assert_eq!(offer(&[pending("a", now - 10)], 1, &["a"], now, 7), Offer::AlreadyOffered);
        assert!(matches!(offer(&[pending("a", now - CODE_TTL_SECS)], 0, &["a"], now, 7), Offer::Send(_)));
        assert_eq!(offer(&[], 3, &["b"], now, 7), Offer::TooManyPending);
        assert!(matches!(offer(&[pending("a", now)], 2, &["b"], now, 7), Offer::Send(_)));
        // Known by its LID and its phone number: one code for the person, not one per form.
        assert_eq!(offer(&[pending("a@lid", now)], 1, &["a@s.whatsapp.net", "a@lid"], now, 7), Offer::AlreadyOffered);
    }

    #[test]
    fn typed_codes() {
        assert_eq!(parse_code("e33n-gast"), Ok("E33NGAST".into()));
        assert_eq!(parse_code(" E33N GAST "), Ok("E33NGAST".into()));
        assert!(parse_code("E33NGAS").expect_err("short").contains("8 characters"));
        assert!(parse_code("E33NGAS0").expect_err("bad char").contains("'0' never appears"));
    }

    proptest! {
        #[test]
        fn generated_codes_parse_back(random: u64) {
            let code = code_from(random);
            prop_assert_eq!(code.len(), CODE_LEN);
            prop_assert_eq!(parse_code(&code), Ok(code.clone()));
        }
    }
}
