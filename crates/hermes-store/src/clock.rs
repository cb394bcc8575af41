//! The one wall clock of hermes: unix seconds, as every table and file records time.
//!
//! hermes-core never reads the clock (callers pass the time in); everything above it reads it
//! here, so there is one definition of "now" and one type for it.

/// Now, in unix seconds. A clock set before 1970 reads as 0.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Now, in unix milliseconds: for deadlines a page counts down to.
pub fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
