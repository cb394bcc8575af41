//! The protocol-free core of hermes: what the gateway decides, with no I/O.
//!
//! Nothing in this crate touches the filesystem, the network, the clock, the environment or a
//! random number generator; callers read those and pass the facts in. That is what lets every
//! decision here be tested exhaustively, and what keeps the gateway, the wizard and `doctor`
//! from ever disagreeing: they all call the same functions.

pub mod access;
pub mod admission;
pub mod alert;
pub mod allowlist;
pub mod backoff;
pub mod budget;
pub mod coexist;
pub mod command;
pub mod config;
pub mod doctor;
pub mod format;
pub mod governor;
pub mod handoff;
pub mod health;
pub mod hermes_api;
pub mod identity;
pub mod link;
pub mod media;
pub mod mention;
pub mod pairing;
pub mod paths;
pub mod quote;
pub mod redact;
pub mod reserve;
pub mod service_unit;
pub mod storage;

#[cfg(test)]
mod outside_input;
#[cfg(test)]
mod testing;
