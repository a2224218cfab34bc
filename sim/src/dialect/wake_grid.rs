//! The real-time grid a shard's wake-ups fall on (the scenario's `wake_grid`, 4 ms unless it
//! says otherwise): the run's clock rounds every device's wake-up and arrival down to it, and a
//! link does its own duties on it too (an MQTT session's keep-alive ping), so the shard's
//! thread wakes once a step for all of them rather than once for each. Each sleep and wake of the thread
//! costs about 11 µs of CPU on the 2-core machine (docs/scale.md).

use std::time::Duration;

use tokio::time::Instant;

/// Instants a step apart from a start.
#[derive(Debug, Clone, Copy)]
pub struct WakeGrid {
    start: Instant,
    /// The step, microseconds (at least 1: no grid).
    step_us: u64,
}

impl WakeGrid {
    /// A grid of `step` from `start` (a zero step: every microsecond is its own).
    pub fn new(start: Instant, step: Duration) -> Self {
        Self {
            start,
            step_us: u64::try_from(step.as_micros()).unwrap_or(u64::MAX).max(1),
        }
    }

    /// Where the grid starts.
    pub fn start(&self) -> Instant {
        self.start
    }

    /// The instant `micros` after the start, rounded down to the grid; a year on for one
    /// past what an instant can hold.
    pub fn after(&self, micros: u64) -> Instant {
        let on = Duration::from_micros(micros - micros % self.step_us);
        self.start
            .checked_add(on)
            .unwrap_or_else(|| self.start + Duration::from_secs(86_400 * 365))
    }

    /// The grid's instant at or before `at` (`at` itself, for an instant before the start).
    /// Never later than `at`: a duty done on the grid is done early, by less than a step.
    pub fn floor(&self, at: Instant) -> Instant {
        let since = at.saturating_duration_since(self.start);
        self.after(u64::try_from(since.as_micros()).unwrap_or(u64::MAX)).min(at)
    }

    /// The earlier of `limit` and [`WakeGrid::floor`] of `at`: `limit` without rounding `at`
    /// when `at` is a whole step or more after it (the grid's instant at or before `at` is
    /// less than a step before it, so after `limit`). A device's wait asks this of its
    /// keep-alive, nearly always a whole step or more after its next report.
    pub fn floor_min(&self, at: Instant, limit: Instant) -> Instant {
        match at.checked_duration_since(limit) {
            Some(ahead) if ahead >= Duration::from_micros(self.step_us) => limit,
            _ => self.floor(at).min(limit),
        }
    }
}

/// No grid, from now: what a shard's parts built alone (in tests) wake on.
impl Default for WakeGrid {
    fn default() -> Self {
        Self::new(Instant::now(), Duration::ZERO)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_round_down_to_the_step_and_never_later() {
        let start = Instant::now();
        let grid = WakeGrid::new(start, Duration::from_millis(4));
        let ms = |ms: u64| start + Duration::from_millis(ms);
        assert_eq!(grid.floor(ms(30_000) + Duration::from_micros(1_300)), ms(30_000));
        assert_eq!(grid.floor(ms(7)), ms(4));
        assert_eq!(grid.floor(ms(8)), ms(8));
        for micros in (0..40_000).step_by(53) {
            let at = start + Duration::from_micros(micros);
            let on = grid.floor(at);
            assert!(on <= at && at < on + Duration::from_millis(4), "{micros} us");
            assert_eq!(on.duration_since(start).as_micros() % 4_000, 0, "{micros} us");
        }
        let none = WakeGrid::new(start, Duration::ZERO);
        assert_eq!(
            none.floor(ms(7) + Duration::from_micros(3)),
            ms(7) + Duration::from_micros(3)
        );
    }

    /// The shortcut gives what rounding and taking the earlier gives, for instants on and off
    /// the grid, on either side of the limit, a step or less apart and more, and before the
    /// grid's start.
    #[test]
    fn the_shortcut_to_the_earlier_of_a_limit_and_a_rounded_instant_changes_nothing() {
        let start = Instant::now() + Duration::from_secs(1);
        for step in [Duration::from_millis(4), Duration::from_micros(1), Duration::ZERO] {
            let grid = WakeGrid::new(start, step);
            for limit_us in [0u64, 1, 3_999, 4_000, 4_001, 10_333] {
                let limit = start + Duration::from_micros(limit_us);
                for at_us in (0..20_000u64)
                    .step_by(37)
                    .chain([limit_us + 3_999, limit_us + 4_000, limit_us + 4_001])
                {
                    let at = start + Duration::from_micros(at_us) + Duration::from_nanos(at_us % 3 * 300);
                    assert_eq!(
                        grid.floor_min(at, limit),
                        grid.floor(at).min(limit),
                        "{step:?} {limit_us} {at_us}"
                    );
                }
                let before = start - Duration::from_millis(9);
                assert_eq!(grid.floor_min(before, limit), grid.floor(before).min(limit));
                assert_eq!(grid.floor_min(limit, before), grid.floor(limit).min(before));
            }
        }
    }
}
