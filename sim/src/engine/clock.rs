//! The run's clock: maps the devices' simulated time to real time with the scenario's time
//! scale (`time_scale` simulated seconds per real second), from one start instant.

use std::time::Duration;

use tokio::time::Instant;

use crate::device::SimTime;

/// The start of a run and its time scale.
#[derive(Debug, Clone, Copy)]
pub struct RunClock {
    start: Instant,
    time_scale: f64,
}

impl RunClock {
    /// A clock starting at `start`.
    pub fn new(start: Instant, time_scale: f64) -> Self {
        Self {
            start,
            time_scale: if time_scale.is_finite() && time_scale > 0.0 {
                time_scale
            } else {
                1.0
            },
        }
    }

    /// The real instant simulated time `at` falls on.
    pub fn real(&self, at: SimTime) -> Instant {
        let real = Duration::from_secs_f64(at.0 as f64 / 1e6 / self.time_scale);
        self.start
            .checked_add(real)
            .unwrap_or_else(|| self.start + Duration::from_secs(86_400 * 365))
    }

    /// Simulated time at the real instant `at`.
    pub fn sim(&self, at: Instant) -> SimTime {
        let real = at.saturating_duration_since(self.start).as_secs_f64();
        SimTime((real * self.time_scale * 1e6) as u64)
    }

    /// Simulated seconds per real second.
    pub fn time_scale(&self) -> f64 {
        self.time_scale
    }

    /// The real start of the run.
    pub fn start(&self) -> Instant {
        self.start
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sim_and_real_time_map_both_ways() {
        let start = Instant::now();
        let clock = RunClock::new(start, 60.0);
        // Five simulated minutes pass in five real seconds.
        assert_eq!(clock.real(SimTime(300_000_000)), start + Duration::from_secs(5));
        assert_eq!(clock.sim(start + Duration::from_secs(5)), SimTime(300_000_000));
        assert_eq!(clock.sim(start), SimTime(0));
    }
}
