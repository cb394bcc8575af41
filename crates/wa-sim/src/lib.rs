//! wa-sim: a WhatsApp server on loopback that the unmodified `whatsapp-rust` client links to
//! and talks with, over the real protocol (WebSocket, Noise, binary nodes, ADV pairing).
//!
//! It exists because no machine here can reach WhatsApp, and a mocked trait would prove
//! nothing about the protocol: linking once, logging in again from a stored session, and
//! telling a logged-out session from a network blip all happen on a live connection.
//!
//! Start one with [`Sim::start`], point a client at [`Sim::ws_url`], create phones with
//! [`Sim::add_phone`], link with [`Sim::link_qr`], and wait on [`SimEvent`]s with
//! [`Sim::wait_for`] instead of sleeping.

#[cfg(feature = "baileys")]
pub mod baileys;
pub mod cert;
mod clock;
mod conn;
mod contacts;
pub mod control;
mod events;
mod faults;
pub mod http;
mod keys;
mod link;
mod media;
mod messages;
pub mod pairing;
mod router;
mod sim;
mod state;
mod usync;

pub use events::{SimEvent, WaitTimeout};
pub use faults::{COMPANION_LOGOUT_DAYS, Fault};
pub use media::{Media, MediaKind, ReceivedMedia};
pub use sim::{PhoneInfo, Sim};
pub use state::Addressing;
