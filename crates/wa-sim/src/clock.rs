//! The simulator's wall clock, in unix seconds. It is the crate's lowest module: the world
//! (`state`) and the media CDN it holds both read the time, so it can live in neither of them
//! without an import cycle.

/// Now, in unix seconds; a clock set before 1970 reads as 0.
pub(crate) fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
