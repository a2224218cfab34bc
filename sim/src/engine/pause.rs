//! Pausing arrivals: while the run's pause flag is set (the dashboard's `p`), a shard spawns no
//! new device; devices already running go on. The arrival schedule shifts by the time spent
//! paused, so devices arrive afterwards at the planned pace rather than all at once, and their
//! latencies are measured from their shifted arrival, not from a time the harness held them.
//!
//! Design: the flag is one atomic the dashboard writes and each shard reads once per turn of
//! its loop (at least once a second), never on the per-message path.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// One shard's view of the pause flag, and the time its arrivals have been held so far.
#[derive(Debug, Default)]
pub struct ArrivalPause {
    flag: Arc<AtomicBool>,
    since: Option<Instant>,
    held: Duration,
}

impl ArrivalPause {
    /// Follows `flag`.
    pub fn new(flag: Arc<AtomicBool>) -> Self {
        Self {
            flag,
            since: None,
            held: Duration::ZERO,
        }
    }

    /// Reads the flag at `now`: whether arrivals are held.
    pub fn observe(&mut self, now: Instant) -> bool {
        let paused = self.flag.load(Ordering::Relaxed);
        match (paused, self.since) {
            (true, None) => self.since = Some(now),
            (false, Some(since)) => {
                self.held += now.saturating_duration_since(since);
                self.since = None;
            }
            _ => {}
        }
        paused
    }

    /// How far arrivals are shifted: the time spent paused before the current pause.
    pub fn shift(&self) -> Duration {
        self.held
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_shifts_by_the_time_spent_paused() {
        let flag = Arc::new(AtomicBool::new(false));
        let mut pause = ArrivalPause::new(Arc::clone(&flag));
        let t0 = Instant::now();
        assert!(!pause.observe(t0));
        flag.store(true, Ordering::Relaxed);
        assert!(pause.observe(t0 + Duration::from_secs(1)));
        assert!(pause.observe(t0 + Duration::from_secs(2)));
        assert_eq!(pause.shift(), Duration::ZERO, "shifted once the pause ends");
        flag.store(false, Ordering::Relaxed);
        assert!(!pause.observe(t0 + Duration::from_secs(4)));
        assert_eq!(pause.shift(), Duration::from_secs(3));
        flag.store(true, Ordering::Relaxed);
        pause.observe(t0 + Duration::from_secs(5));
        flag.store(false, Ordering::Relaxed);
        pause.observe(t0 + Duration::from_millis(5500));
        assert_eq!(pause.shift(), Duration::from_millis(3500), "pauses add up");
    }
}
