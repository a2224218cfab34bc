//! The alerts a run expects the backend to raise, and what it raised: how `alert.latency`
//! and the `alerts.*` counts are measured.
//!
//! Design: an `alert` phase sets a rule on the backend and writes it here. From then on the
//! devices say here when a rule's condition became true for them: a battery rule at the
//! intended send time of the first report under its level (the earliest moment any backend
//! could know), an offline rule when the device's link dropped plus the rule's time (a device
//! back before that is no longer expected). The operator's watcher reads what the backend
//! raised and matches each alert to its expectation: the latency runs from when the alert
//! became due to when the backend says it raised it (both wall-clock Unix milliseconds, so
//! the backend's clock and the harness's must agree: one machine, or NTP). An alert that
//! matches nothing expected, for a rule this run set, was raised without cause (a run of
//! one process drives every device its rules watch); an
//! expectation still open at the end (past a grace for the backend's own sweep) was missed.
//! Written a few times per device at most; the per-report check is one atomic load while no
//! rule is set.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::scenario::typed::AlertRule;

/// How long after an alert became due the backend may still raise it before the end of the
/// run without being counted missed: its offline sweep (250 ms for the reference backend),
/// its audit write and the watcher's poll.
pub const GRACE: Duration = Duration::from_secs(2);

/// A rule the operator set.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleMark {
    /// The backend's id for it.
    pub id: String,
    /// What it watches.
    pub rule: AlertRule,
    /// The group it watches (`None`: every device).
    pub group: Option<String>,
}

/// Where one rule stands for one device.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Expected {
    /// An alert is due since this Unix millisecond and not seen yet.
    due_ms: Option<u64>,
    /// Alerts seen (and expected) so far.
    met: u32,
}

/// How an alert the backend raised matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Matched {
    /// It was expected: raised this long after it became due.
    Expected(Duration),
    /// It was raised by a rule this run set, and nothing made it due.
    WithoutCause,
    /// Of a rule this run did not set.
    Foreign,
}

/// What the run expects and what was seen.
#[derive(Debug, Default)]
pub struct AlertBook {
    watching: AtomicBool,
    rules: RwLock<Vec<RuleMark>>,
    expected: Mutex<HashMap<(usize, Box<str>), Expected>>,
}

/// Now, in Unix milliseconds.
pub fn unix_ms_now() -> u64 {
    unix_ms(SystemTime::now())
}

/// `at` in Unix milliseconds.
pub fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl AlertBook {
    /// Whether any rule is set: the devices' cheap check before anything else.
    pub fn watching(&self) -> bool {
        self.watching.load(Ordering::Relaxed)
    }

    /// The operator set `mark` on the backend.
    pub fn set(&self, mark: RuleMark) {
        self.rules.write().unwrap_or_else(PoisonError::into_inner).push(mark);
        self.watching.store(true, Ordering::Relaxed);
    }

    /// The rules set, in order.
    pub fn rules(&self) -> Vec<RuleMark> {
        self.rules.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Device `device_id` of `group` sent a report at `sent_ms` with its battery at `level`:
    /// each battery rule of its group it is under for the first time becomes due.
    pub fn battery(&self, device_id: &str, group: &str, level: f64, sent_ms: u64) {
        let rules = self.rules.read().unwrap_or_else(PoisonError::into_inner);
        for (index, mark) in rules.iter().enumerate() {
            let AlertRule::BatteryBelow(below) = mark.rule else {
                continue;
            };
            if level >= below || !applies(mark, group) {
                continue;
            }
            let mut expected = lock(&self.expected);
            let entry = expected.entry((index, device_id.into())).or_default();
            // The backend alerts once, on the first report under the level.
            if entry.due_ms.is_none() && entry.met == 0 {
                entry.due_ms = Some(sent_ms);
            }
        }
    }

    /// Device `device_id` of `group` lost its connection at `at_ms`: each offline rule of its
    /// group becomes due its time later.
    pub fn lost(&self, device_id: &str, group: &str, at_ms: u64) {
        let rules = self.rules.read().unwrap_or_else(PoisonError::into_inner);
        for (index, mark) in rules.iter().enumerate() {
            let AlertRule::OfflineFor(after) = mark.rule else {
                continue;
            };
            if !applies(mark, group) {
                continue;
            }
            let mut expected = lock(&self.expected);
            let entry = expected.entry((index, device_id.into())).or_default();
            if entry.due_ms.is_none() {
                entry.due_ms = Some(at_ms.saturating_add(millis(after)));
            }
        }
    }

    /// Device `device_id` connected at `at_ms`, or was decommissioned then (the backend
    /// forgets a retired device): an offline alert not yet due is expected no more (one
    /// already due stays expected: the backend should have raised it).
    pub fn connected(&self, device_id: &str, at_ms: u64) {
        let rules = self.rules.read().unwrap_or_else(PoisonError::into_inner);
        let mut expected = lock(&self.expected);
        for (index, mark) in rules.iter().enumerate() {
            if !matches!(mark.rule, AlertRule::OfflineFor(_)) {
                continue;
            }
            if let Some(entry) = expected.get_mut(&(index, Box::from(device_id)))
                && entry.due_ms.is_some_and(|due| at_ms < due)
            {
                entry.due_ms = None;
            }
        }
    }

    /// The backend raised an alert of rule `rule_id` for `device_id` at `raised_ms`.
    pub fn raised(&self, rule_id: &str, device_id: &str, raised_ms: u64) -> Matched {
        let rules = self.rules.read().unwrap_or_else(PoisonError::into_inner);
        let Some(index) = rules.iter().position(|mark| mark.id == rule_id) else {
            return Matched::Foreign;
        };
        let mut expected = lock(&self.expected);
        match expected.get_mut(&(index, Box::from(device_id))) {
            Some(entry) if entry.due_ms.is_some() => {
                let due = entry.due_ms.take().unwrap_or(raised_ms);
                entry.met += 1;
                Matched::Expected(Duration::from_millis(raised_ms.saturating_sub(due)))
            }
            _ => Matched::WithoutCause,
        }
    }

    /// At the end (`now_ms`): alerts met, alerts missed (due before the grace), and alerts
    /// due too late to judge.
    pub fn tally(&self, now_ms: u64) -> (u64, u64, u64) {
        let expected = lock(&self.expected);
        let (mut met, mut missed, mut pending) = (0, 0, 0);
        for entry in expected.values() {
            met += u64::from(entry.met);
            match entry.due_ms {
                Some(due) if due.saturating_add(millis(GRACE)) <= now_ms => missed += 1,
                Some(_) => pending += 1,
                None => {}
            }
        }
        (met, missed, pending)
    }
}

/// Whether `mark` watches devices of `group`.
fn applies(mark: &RuleMark, group: &str) -> bool {
    mark.group.as_deref().is_none_or(|g| g == group)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every update is a single insert or field write: a panicking holder leaves it whole.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn book() -> AlertBook {
        let book = AlertBook::default();
        assert!(!book.watching());
        book.set(RuleMark {
            id: "r-1".into(),
            rule: AlertRule::BatteryBelow(0.2),
            group: Some("sensors".into()),
        });
        book.set(RuleMark {
            id: "r-2".into(),
            rule: AlertRule::OfflineFor(Duration::from_secs(2)),
            group: None,
        });
        assert!(book.watching());
        book
    }

    #[test]
    fn a_battery_alert_is_due_at_the_first_low_report_and_once() {
        let book = book();
        book.battery("d-1", "sensors", 0.5, 1_000);
        book.battery("d-1", "sensors", 0.19, 2_000);
        book.battery("d-1", "sensors", 0.18, 3_000);
        book.battery("d-2", "meters", 0.1, 2_000);
        assert_eq!(
            book.raised("r-1", "d-1", 2_040),
            Matched::Expected(Duration::from_millis(40))
        );
        book.battery("d-1", "sensors", 0.17, 4_000);
        assert_eq!(book.raised("r-1", "d-1", 4_010), Matched::WithoutCause, "alerted twice");
        assert_eq!(
            book.raised("r-1", "d-2", 2_010),
            Matched::WithoutCause,
            "not its group: nothing called for it"
        );
        assert_eq!(
            book.raised("r-9", "d-1", 2_010),
            Matched::Foreign,
            "not a rule of the run"
        );
        assert_eq!(book.tally(10_000), (1, 0, 0));
    }

    #[test]
    fn an_offline_alert_is_due_its_time_after_the_drop_unless_the_device_is_back() {
        let book = book();
        book.lost("d-1", "meters", 10_000);
        book.connected("d-1", 11_000);
        assert_eq!(book.tally(20_000), (0, 0, 0), "back before it was due");
        book.lost("d-1", "meters", 20_000);
        assert_eq!(
            book.raised("r-2", "d-1", 22_300),
            Matched::Expected(Duration::from_millis(300))
        );
        book.connected("d-1", 23_000);
        book.lost("d-1", "meters", 30_000);
        // Due at 32,000 and never raised: missed once the grace has passed, pending before.
        assert_eq!(book.tally(33_000), (1, 0, 1));
        assert_eq!(book.tally(34_000), (1, 1, 0));
    }
}
