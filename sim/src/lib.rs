//! fleetsim: a fleet simulator and load-test harness for IoT device-management backends.
//!
//! A scenario file describes a fleet and a timeline; [`scenario`] loads and checks it, [`plan`]
//! turns it into a deterministic per-device plan, and [`model`] holds the pure device models
//! (battery, link, telemetry, OTA) every virtual device consults; [`transport`] is how devices
//! reach a backend; [`store`] copies report folders to and from an object store. [`cli`]
//! holds the commands the `fleetsim` binary exposes.

pub mod cli;
pub mod device;
pub mod dialect;
pub mod engine;
pub mod metrics;
pub mod model;
pub mod pki;
pub mod plan;
pub mod report;
pub mod scenario;
pub mod scratch;
pub mod store;
pub mod transport;
pub mod tui;
