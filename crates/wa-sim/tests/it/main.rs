//! The plain whatsapp-rust client (not hermes) against wa-sim, driven by events with timeouts.

mod baileys;
mod client;
mod faults;
mod groups;
mod link;
mod media;
mod messages;
mod serve;
