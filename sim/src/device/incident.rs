//! What the operator's timeline does to a share of the fleet at a time, as devices live it:
//! mass outages (a phase cuts a share off the network for a while: a cell tower, a regional
//! ISP, a firewall change) and injected faults (a phase puts a share in a fault). More of the
//! device core.
//!
//! Design: incidents are known when the run is planned, so each device works out for itself,
//! from its own random stream for that phase, whether one hits it: no message has to reach
//! it, and one shard or many hit exactly the same devices. A device hit by an outage that was
//! connected drops its connection; until the outage ends every attempt to provision or connect
//! fails at once (nothing leaves a dead network) and the device backs off with full jitter, so
//! when the network returns the devices come back as a reconnect storm spread by their
//! backoff, and each reports its recovery time when it connects again. A device hit by a
//! watchdog reset resets at the phase's time; one hit by another fault makes its reports in it
//! until the fault ends (`super::faults`).

use super::core::{Ctx, Device, SimTime};
use super::events::{Action, Actions};
use super::state::State;
use crate::model::{FaultKind, StreamId, device_rng, draw};

/// Something a phase does to a share of the devices, in their simulated time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Incident {
    /// When it starts.
    pub start: SimTime,
    /// When it ends (an instant fault: a microsecond after it starts).
    pub end: SimTime,
    /// The share of the devices it hits, a fraction.
    pub share: f64,
    /// The random stream that decides which devices (the phase's own).
    pub stream: StreamId,
    /// What it does.
    pub kind: IncidentKind,
}

/// What an incident does to the devices it hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncidentKind {
    /// Cuts them off the network.
    Outage,
    /// Puts them in a fault.
    Fault(FaultKind),
    /// Retires them for good (a `decommission` phase against a server fleetsim has no
    /// operator for: the devices leave of their own accord, saying goodbye as their protocol
    /// allows).
    Retire,
}

impl Incident {
    /// Whether the incident hits device `index`: one draw from the device's stream for the
    /// phase.
    pub fn hits(&self, seed: u64, index: u64) -> bool {
        draw::chance(&mut device_rng(seed, index, self.stream), self.share)
    }

    /// Whether it is in force at `now`.
    pub fn covers(&self, now: SimTime) -> bool {
        self.start <= now && now < self.end
    }
}

impl Device {
    /// Applies the incidents whose start has come: outages cut the device off, watchdog
    /// resets reset it (other faults act on its reports while they last).
    pub(super) fn pass_incidents(&mut self, now: SimTime, ctx: Ctx<'_>, out: &mut Actions) {
        while let Some(incident) = ctx.incidents.get(usize::from(self.next_incident)) {
            if now < incident.start {
                return;
            }
            self.next_incident = self.next_incident.saturating_add(1);
            if now >= incident.end || !incident.hits(ctx.seed, self.index) {
                continue;
            }
            match incident.kind {
                IncidentKind::Outage => {
                    self.outage_until = self.outage_until.max(incident.end);
                    if matches!(self.state, State::Online | State::Connecting) {
                        out.push(Action::Disconnect);
                        self.state = State::Offline;
                        self.recovering = incident.end;
                        self.back_off(now, ctx);
                    }
                }
                IncidentKind::Fault(FaultKind::WatchdogReset) => {
                    self.watchdog_reset(now, out);
                }
                IncidentKind::Fault(_) => {}
                IncidentKind::Retire => {
                    self.retire(now, out);
                    return;
                }
            }
        }
    }

    /// Leaves for good: says goodbye if it has a network (connected or asleep: an LwM2M
    /// device de-registers from a socket of its own) and stops.
    fn retire(&mut self, now: SimTime, out: &mut Actions) {
        if self.link_up() && now >= self.outage_until {
            out.push(Action::Retire);
        }
        out.push(Action::Stop);
        self.ota = super::ota::OtaStage::Idle;
        self.recovering = SimTime::NEVER;
        self.state = State::Decommissioned;
    }

    /// When the link next changes state.
    pub(super) fn next_link_change(&self) -> SimTime {
        self.link_flip
    }

    /// No retry pending.
    pub(super) fn retry_at_never(&mut self) {
        self.retry_at = SimTime::NEVER;
    }
}
