//! End-to-end tests of the `hermes` binary: real processes, real files in temporary homes.

#[cfg(feature = "simulator")]
mod demo;
mod doctor;
mod explain;
#[cfg(feature = "simulator")]
mod gateway;
#[cfg(feature = "simulator")]
mod link;
#[cfg(feature = "simulator")]
mod pipeline;
mod send;
mod support;
