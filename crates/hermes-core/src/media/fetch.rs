//! Fetching a message's media, in the words both sides of the fetch share: which message's
//! media the pipeline asks for, and why a fetch failed, told apart as the pipeline must act
//! on it (wait for a connection, refuse it as too large, say it expired or arrived damaged,
//! try again later). The WhatsApp edge answers in these types and the gateway reads them, so
//! neither crate needs the other's.

use super::MediaRef;
use crate::identity::{Jid, MessageId};

/// Which message's media to fetch.
#[derive(Clone, Copy, Debug)]
pub struct Fetch<'a> {
    pub media: &'a MediaRef,
    pub chat: &'a Jid,
    pub sender: &'a Jid,
    pub id: &'a MessageId,
    pub from_me: bool,
}

/// Why media was not fetched.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MediaError {
    /// There is no connection right now; try again when there is.
    #[error("not connected to WhatsApp")]
    NotConnected,
    /// Larger than the cap (bytes): declared so, or found so while streaming.
    #[error("the media is larger than the {cap} byte limit")]
    TooLarge { size: u64, cap: u64 },
    /// The CDN no longer has it and the sender's phone did not upload it again.
    #[error("the media has expired from WhatsApp's servers and the sender's phone did not upload it again: {0}")]
    Gone(String),
    /// The bytes did not verify (MAC or hash mismatch): damaged or not what the message said.
    #[error("the downloaded media failed its integrity check: {0}")]
    Corrupt(String),
    /// Anything else on the way (the CDN, the network): worth another try.
    #[error("the media could not be downloaded: {0}")]
    Failed(String),
    /// The file it was going into could not be written.
    #[error("the media could not be written to {path}: {error}")]
    Io { path: String, error: std::io::Error },
}
