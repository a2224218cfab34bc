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

    /// The state's place in [`State::ALL`] (the enum is declared in that order).
    fn slot(self) -> usize {
        self as usize
    }
}

/// Devices per lifecycle state: the `devices.<state>` gauges, of one shard, one process or a
/// whole fleet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StateCounts([u64; State::ALL.len()]);

impl StateCounts {
    /// Counts in [`State::ALL`] order, as a worker's wire line carries them.
    pub fn from_slots(slots: [u64; State::ALL.len()]) -> Self {
        Self(slots)
    }

    /// The counts in [`State::ALL`] order.
    pub fn slots(&self) -> &[u64; State::ALL.len()] {
        &self.0
    }

    /// Devices in `state`.
    pub fn get(&self, state: State) -> u64 {
        self.0[state.slot()]
    }

    /// Counts `n` more devices in `state`.
    pub fn add(&mut self, state: State, n: u64) {
        self.0[state.slot()] += n;
    }

    /// Moves one device from `from` to `to`.
    pub fn moved(&mut self, from: State, to: State) {
        self.0[from.slot()] = self.0[from.slot()].saturating_sub(1);
        self.0[to.slot()] += 1;
    }

    /// Each state with its count, in [`State::ALL`] order.
    pub fn iter(&self) -> impl Iterator<Item = (State, u64)> + '_ {
        State::ALL.iter().copied().zip(self.0.iter().copied())
    }

    /// Devices holding a connection: online, or online again on the old firmware after a
    /// rollback.
    pub fn connected(&self) -> u64 {
        self.get(State::Online) + self.get(State::RolledBack)
    }
}

impl std::ops::AddAssign<&StateCounts> for StateCounts {
    fn add_assign(&mut self, other: &StateCounts) {
        for (mine, theirs) in self.0.iter_mut().zip(other.0) {
            *mine += theirs;
        }
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
        for (k, state) in State::ALL.iter().enumerate() {
            assert_eq!(state.slot(), k, "{state:?} counts in its own slot");
        }
    }

    #[test]
    fn counts_follow_moves_and_add_up() {
        let mut shard = StateCounts::default();
        shard.add(State::Unprovisioned, 3);
        shard.moved(State::Unprovisioned, State::Online);
        shard.moved(State::Unprovisioned, State::RolledBack);
        assert_eq!(shard.get(State::Unprovisioned), 1);
        assert_eq!(shard.connected(), 2);
        let mut fleet = StateCounts::from_slots(*shard.slots());
        fleet += &shard;
        assert_eq!(fleet.get(State::Online), 2);
        assert_eq!(fleet.iter().map(|(_, n)| n).sum::<u64>(), 6);
    }
}
