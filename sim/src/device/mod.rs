//! Virtual devices: their lifecycle states ([`state`]), the sans-IO core that decides what
//! each does and when ([`core`], with firmware updates in [`ota`] and mass outages in
//! [`outage`]), what passes between a device and its driver ([`events`]), and the log a device keeps of
//! what it lived through ([`journal`]). The driver that
//! performs those decisions over a transport is `engine::driver`.

pub mod core;
pub mod events;
pub mod journal;
pub mod ota;
pub mod outage;
pub mod state;

pub use core::{BOOT, Ctx, Device, SimTime};
pub use events::{Action, Actions, BatteryLevel, CommandKind, Event};
pub use journal::{ErrorCounts, Journal, Logged};
pub use ota::{OtaReport, OtaStage};
pub use outage::Outage;
pub use state::{State, StateCounts};
