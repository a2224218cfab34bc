//! A virtual device's lifecycle states (ARCHITECTURE section 3). Their names are the
//! `devices.<state>` gauges of the metric table.

/// Where a device is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum State {
    /// Planned, not arrived yet.
    Unprovisioned,
    /// Asking the backend for credentials.
    Provisioning,
    /// Has credentials, not connected (link down, or between reconnect attempts).
    Offline,
    /// Connecting.
    Connecting,
    /// Connected and reporting.
    Online,
    /// Duty-cycled and asleep between reports, holding no connection.
    Sleeping,
    /// Taking a firmware update.
    Updating,
    /// A failed boot fell back to the previous firmware slot.
    RolledBack,
    /// Update and fallback both failed: the device is lost.
    Bricked,
    /// Retired by the operator.
    Decommissioned,
    /// Its battery ran out.
    Dead,
}

impl State {
    /// Every state, in gauge order.
    pub const ALL: [State; 11] = [
        State::Unprovisioned,
        State::Provisioning,
        State::Offline,
        State::Connecting,
        State::Online,
        State::Sleeping,
        State::Updating,
        State::RolledBack,
        State::Bricked,
        State::Decommissioned,
        State::Dead,
    ];

    /// The gauge name, `devices.<name>`.
    pub fn name(self) -> &'static str {
        match self {
            State::Unprovisioned => "unprovisioned",
            State::Provisioning => "provisioning",
            State::Offline => "offline",
            State::Connecting => "connecting",
            State::Online => "online",
            State::Sleeping => "sleeping",
            State::Updating => "updating",
            State::RolledBack => "rolled_back",
            State::Bricked => "bricked",
            State::Decommissioned => "decommissioned",
            State::Dead => "dead",
        }
    }

    /// States a device never leaves.
    pub fn is_final(self) -> bool {
        matches!(self, State::Bricked | State::Decommissioned | State::Dead)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::names::DEVICE_STATES;

    #[test]
    fn states_are_the_gauges_of_the_metric_table() {
        let names: Vec<&str> = State::ALL.iter().map(|s| s.name()).collect();
        assert_eq!(names, DEVICE_STATES);
    }
}
