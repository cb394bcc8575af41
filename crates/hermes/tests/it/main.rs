//! End-to-end tests of the `hermes` binary: real processes, real files in temporary homes.

#[cfg(feature = "simulator")]
mod agent;
#[cfg(feature = "simulator")]
mod demo;
#[cfg(feature = "simulator")]
mod disk;
mod doctor;
mod explain;
#[cfg(feature = "simulator")]
mod gateway;
mod hostile;
#[cfg(feature = "simulator")]
mod import;
mod install;
#[cfg(feature = "simulator")]
mod link;
#[cfg(feature = "simulator")]
mod media;
#[cfg(feature = "simulator")]
mod pipeline;
#[cfg(feature = "simulator")]
mod reload;
mod send;
#[cfg(feature = "simulator")]
mod service;
mod support;
mod usage;
