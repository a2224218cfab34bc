//! Faults as a device lives them (the model's `[faults]` and the operator's `fault` phases,
//! `crate::model::faults`): the faults a report is made in, and a watchdog reset. More of the
//! device core.

use std::time::Duration;

use super::core::{BOOT, Ctx, Device, SimTime};
use super::events::{Action, Actions};
use super::incident::IncidentKind;
use super::ota::OtaStage;
use super::state::State;
use crate::model::{FaultKind, FaultSet};

impl Device {
    /// The faults the device's report at `now` is made in: its model's recurring ones, and
    /// those of the `fault` phases in force that hit it.
    pub(super) fn faults_at(&self, now: SimTime, ctx: Ctx<'_>) -> FaultSet {
        let mut set = ctx
            .model
            .faults
            .spells_at(ctx.seed, self.index, Duration::from_micros(now.0));
        for incident in ctx.incidents {
            if let IncidentKind::Fault(kind) = incident.kind
                && kind != FaultKind::WatchdogReset
                && !set.has(kind)
                && incident.covers(now)
                && incident.hits(ctx.seed, self.index)
            {
                set = set.with(kind);
            }
        }
        set
    }

    /// The watchdog fires: a connected device drops its connection without a goodbye (what
    /// it had in flight is lost), boots for [`BOOT`] and connects again; its uptime starts
    /// over. A device not connected, or in the middle of an update (whose own reboot the
    /// update's model plays), carries on. Whether it reset.
    pub(super) fn watchdog_reset(&mut self, now: SimTime, out: &mut Actions) -> bool {
        if self.state != State::Online || self.ota != OtaStage::Idle {
            return false;
        }
        out.push(Action::Disconnect);
        out.push(Action::Reset);
        self.state = State::Offline;
        self.attempt = 0;
        self.retry_at = now.after(BOOT);
        self.booted_at(now.after(BOOT));
        true
    }
}
