//! Virtual devices: their lifecycle states ([`state`]) and the sans-IO core that decides what
//! each does and when ([`core`]). The driver that performs those decisions over a transport
//! comes with `fleetsim run`.

pub mod core;
pub mod ota;
pub mod outage;
pub mod state;

pub use core::{Action, Actions, BOOT, CommandKind, Ctx, Device, Event, SimTime};
pub use ota::{OtaReport, OtaStage};
pub use outage::Outage;
pub use state::State;
