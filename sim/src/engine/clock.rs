//! The run's clock: maps the devices' simulated time to real time with the scenario's time
//! scale (`time_scale` simulated seconds per real second), from one start instant.
//!
//! Real instants fall on a grid from the start (the scenario's `wake_grid`, 4 ms unless it says
//! otherwise): the devices whose times fall in one step of it wake together, in one turn of
//! their shard's thread, rather than one or two at a time. Each time the thread sleeps and wakes costs about 11 µs of CPU on the 2-core
//! machine, and each message sent to a broker that went to sleep meanwhile wakes it too; with
//! devices spread over every millisecond that was half of the CPU a message cost (docs/scale.md).
//! Intended times are the instants on the grid, so latencies and late sends are measured from
//! what the harness meant to do; simulated time, and so every device's behaviour, is unchanged.

use std::time::Duration;

use tokio::time::Instant;

use crate::device::SimTime;
use crate::dialect::wake_grid::WakeGrid;

/// The start of a run and its time scale.
#[derive(Debug, Clone, Copy)]
pub struct RunClock {
    /// Real instants: the run's start, and the step they are rounded down to.
    grid: WakeGrid,
    time_scale: f64,
}

impl RunClock {
    /// A clock starting at `start`, its real instants on a grid of `grid` (zero: none).
    pub fn new(start: Instant, time_scale: f64, grid: Duration) -> Self {
        Self {
            grid: WakeGrid::new(start, grid),
            time_scale: if time_scale.is_finite() && time_scale > 0.0 {
                time_scale
            } else {
                1.0
            },
        }
    }

    /// The real instant simulated time `at` falls on, rounded down to the grid.
    pub fn real(&self, at: SimTime) -> Instant {
        // Saturating: a time past the far future is the far future (`WakeGrid::after`).
        self.grid.after((at.0 as f64 / self.time_scale) as u64)
    }

    /// Simulated time at the real instant `at`.
    pub fn sim(&self, at: Instant) -> SimTime {
        let real = at.saturating_duration_since(self.start()).as_secs_f64();
        SimTime((real * self.time_scale * 1e6) as u64)
    }

    /// Simulated seconds per real second.
    pub fn time_scale(&self) -> f64 {
        self.time_scale
    }

    /// The real start of the run.
    pub fn start(&self) -> Instant {
        self.grid.start()
    }

    /// The grid real instants fall on.
    pub fn grid(&self) -> WakeGrid {
        self.grid
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sim_and_real_time_map_both_ways() {
        let start = Instant::now();
        let clock = RunClock::new(start, 60.0, Duration::ZERO);
        // Five simulated minutes pass in five real seconds.
        assert_eq!(clock.real(SimTime(300_000_000)), start + Duration::from_secs(5));
        assert_eq!(clock.sim(start + Duration::from_secs(5)), SimTime(300_000_000));
        assert_eq!(clock.sim(start), SimTime(0));
    }

    #[test]
    fn real_instants_fall_on_the_wake_grid() {
        let start = Instant::now();
        let grid = Duration::from_millis(2);
        let clock = RunClock::new(start, 1.0, grid);
        let on = |ms: u64| start + Duration::from_millis(ms);
        // 1.0, 1.999 and 0 ms share the step from 0; 2 ms starts the next.
        assert_eq!(clock.real(SimTime(1_000)), on(0));
        assert_eq!(clock.real(SimTime(1_999)), on(0));
        assert_eq!(clock.real(SimTime(2_000)), on(2));
        assert_eq!(clock.real(SimTime(5_300)), on(4));
        // At 300x, 2 simulated seconds are 6.67 real ms: the step from 6 ms.
        let fast = RunClock::new(start, 300.0, grid);
        assert_eq!(fast.real(SimTime(2_000_000)), on(6));
        // Never after the time itself: no wake-up is later for the grid.
        for sim in (0..50_000).step_by(37) {
            let real = clock.real(SimTime(sim));
            let exact = start + Duration::from_micros(sim);
            assert!(real <= exact && exact < real + grid, "{sim} us");
        }
        // No grid: every microsecond is its own.
        let exact = RunClock::new(start, 1.0, Duration::ZERO);
        assert_eq!(exact.real(SimTime(1_999)), start + Duration::from_micros(1_999));
    }
}
