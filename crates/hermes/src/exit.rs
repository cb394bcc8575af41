//! Exit statuses, documented in the README and in each command's help, and the one place that
//! tells a usage or configuration error from an internal one.
//!
//! A command returns `Ok(status)` for what it checked (0 or 1, or 2 for a usage error it
//! reported itself) and `Err` when it could not finish. An `Err` is a usage or configuration
//! error only when a [`UsageError`] is in its chain, created where the bad value was found;
//! everything else (I/O, SQLite, a bug) is [`INTERNAL`], so a script can tell "fix your
//! command line" from "something broke".

use std::fmt;

/// Everything is fine / the sender is admitted.
pub const OK: u8 = 0;
/// Checked and found a problem / the sender is refused.
pub const PROBLEM: u8 = 1;
/// Usage or configuration error.
pub const USAGE: u8 = 2;
/// Internal error: a file or the state database could not be read or written, or a bug
/// (`EX_SOFTWARE` in sysexits.h).
pub const INTERNAL: u8 = 70;

/// A usage or configuration error found while running a command: a flag's value, the
/// environment or a configuration file that hermes refuses. Its message says what to change.
#[derive(Debug)]
pub struct UsageError(String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// An error that exits [`USAGE`] with `message`.
pub fn usage(message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(UsageError(message.into()))
}

/// The status a command that failed with `e` exits with.
pub fn status_of(e: &anyhow::Error) -> u8 {
    if e.chain().any(|cause| cause.is::<UsageError>()) { USAGE } else { INTERNAL }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_usage_error_in_the_chain_is_a_usage_error() {
        assert_eq!(status_of(&usage("--mode 'x' is not valid")), USAGE);
        assert_eq!(status_of(&usage("bad").context("reading the configuration")), USAGE);
        let io = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "denied");
        assert_eq!(status_of(&anyhow::Error::new(io).context("open state/hermes.db")), INTERNAL);
        assert_eq!(status_of(&anyhow::anyhow!("a bug")), INTERNAL);
    }
}
