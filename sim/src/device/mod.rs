//! Virtual devices: their lifecycle states ([`state`]), the sans-IO core that decides what
//! each does and when ([`core`], with firmware updates in [`ota`], what phases do to a share
//! of the fleet in [`incident`] and faults in [`faults`]), what passes between a device and its driver ([`events`]), and the log a device keeps of
//! what it lived through ([`journal`]). The driver that
//! performs those decisions over a transport is `engine::driver`.

pub mod core;
pub mod events;
pub mod faults;
pub mod incident;
pub mod journal;
pub mod ota;
pub mod state;

pub use core::{BOOT, Ctx, Device, SimTime};
pub use events::{Action, Actions, BatteryLevel, CommandKind, Event};
pub use incident::{Incident, IncidentKind};
pub use journal::{ErrorCounts, Journal, Logged};
pub use ota::{OtaReport, OtaStage};
pub use state::{State, StateCounts};
