//! Mass outages as devices live them: a phase cuts a share of the fleet off the network for a
//! while (a cell tower, a regional ISP, a firewall change). More of the device core.
//!
//! Design: the outages are known when the run is planned, so each device works out for itself,
//! from its own random stream for that phase, whether an outage hits it: no message has to
//! reach it, and one shard or many cut exactly the same devices. A hit device that was
//! connected drops its connection; until the outage ends every attempt to provision or connect
//! fails at once (nothing leaves a dead network) and the device backs off with full jitter, so
//! when the network returns the devices come back as a reconnect storm spread by their
//! backoff, and each reports its recovery time when it connects again.

use super::core::{Ctx, Device, SimTime};
use super::events::{Action, Actions};
use super::state::State;
use crate::model::{StreamId, device_rng, draw};

/// A mass outage, in the devices' simulated time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outage {
    /// When it starts.
    pub start: SimTime,
    /// When it ends.
    pub end: SimTime,
    /// The share of the devices it hits, a fraction.
    pub share: f64,
    /// The random stream that decides which devices (the phase's own).
    pub stream: StreamId,
}

impl Outage {
    /// Whether the outage hits device `index`: one draw from the device's stream for the phase.
    pub fn hits(&self, seed: u64, index: u64) -> bool {
        draw::chance(&mut device_rng(seed, index, self.stream), self.share)
    }
}

impl Device {
    /// Applies the outages whose start has come.
    pub(super) fn pass_outages(&mut self, now: SimTime, ctx: Ctx<'_>, out: &mut Actions) {
        while let Some(outage) = ctx.outages.get(usize::from(self.next_outage)) {
            if now < outage.start {
                return;
            }
            self.next_outage = self.next_outage.saturating_add(1);
            if now >= outage.end || !outage.hits(ctx.seed, self.index) {
                continue;
            }
            self.outage_until = self.outage_until.max(outage.end);
            if matches!(self.state, State::Online | State::Connecting) {
                out.push(Action::Disconnect);
                self.state = State::Offline;
                self.recovering = outage.end;
                self.back_off(now, ctx);
            }
        }
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
