//! The WhatsApp edge of hermes: the only crate that knows `whatsapp-rust` types.
//!
//! The session directory (inspection for `doctor`, the lock, what the store holds), linking a
//! device by QR code or pairing code, and backups before anything destructive.

pub mod backup;
pub mod body;
mod classify;
mod client;
pub mod fence;
pub mod import;
pub mod journal;
pub mod linking;
pub mod lock;
pub mod media;
pub mod messenger;
pub mod probe;
pub mod session_dir;
pub mod status;
pub mod store;
pub mod supervisor;
mod tracked;
pub mod transport;
