//! Virtual devices: their lifecycle states ([`state`]) and the sans-IO core that decides what
//! each does and when ([`core`]). The driver that performs those decisions over a transport
//! comes with `fleetsim run`.

pub mod core;
pub mod state;

pub use core::{Action, Actions, Ctx, Device, Event, SimTime};
pub use state::State;
