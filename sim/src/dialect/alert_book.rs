//! The alerts a run expects the backend to raise, and what it raised: how `alert.latency`
//! and the `alerts.*` counts are measured.
//!
//! Design: an `alert` phase sets a rule on the backend and writes it here. From then on the
//! devices say here when a rule's condition became true for them: a battery rule at the
//! intended send time of the first report under its level (the earliest moment any backend
//! could know), an offline rule when the device's link dropped plus the rule's time (a device
//! back before that is no longer expected), an error-codes rule at the send time of the report
//! with codes that makes `at_least` within its window (again once the device has been quiet
//! for the window, when the backend clears it), a sensor-stuck rule at the send time of the
//! report that repeats a reading for the rule's count (again after the reading changed). The
//! last two follow the reports from when the rule was set, as the backend does. The operator's watcher reads what the backend
//! raised and matches each alert to its expectation: the latency runs from when the alert
//! became due to when the backend says it raised it (both wall-clock Unix milliseconds, so
//! the backend's clock and the harness's must agree: one machine, or NTP). An alert that
//! matches nothing expected, for a rule this run set, was raised without cause (a run of
//! one process drives every device its rules watch); an
//! expectation still open at the end (past a grace for the backend's own sweep) was missed.
//! The per-report check is one atomic load while no rule is set; a battery or offline rule
//! is written a few times per device, an error-codes or sensor-stuck rule at every report
//! (one lock of a map, during the alert phases of a run that measures them).

use std::collections::{HashMap, VecDeque};
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
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Expected {
    /// An alert is due since this Unix millisecond and not seen yet.
    due_ms: Option<u64>,
    /// Alerts seen (and expected) so far.
    met: u32,
    /// A sensor-stuck rule: the last reading's bits and how many reports in a row carried it.
    reading: Option<(u64, u32)>,
    /// An error-codes rule: the send times of the newest reports with codes.
    errors: VecDeque<u64>,
    /// An error-codes rule: an alert is in force (due or raised), until the device is quiet
    /// for the window.
    erring: bool,
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

    /// Device `device_id` of `group` sent a report meant to go at `intended`, its battery at
    /// `battery` as its backend reads it, its sensor reading `value`, with error codes or not
    /// (`erred`): what the rules it crossed call for ([`AlertBook::battery`],
    /// [`AlertBook::reading`]), due from when the report was meant to go, the first moment a
    /// backend could know. Nothing when no rule is set.
    pub fn reported(
        &self,
        device_id: &str,
        group: &str,
        intended: tokio::time::Instant,
        battery: Option<f64>,
        (value, erred): (f64, bool),
    ) {
        if !self.watching() {
            return;
        }
        let late_ms = u64::try_from(intended.elapsed().as_millis()).unwrap_or(u64::MAX);
        let sent_ms = unix_ms_now().saturating_sub(late_ms);
        if let Some(level) = battery {
            self.battery(device_id, group, level, sent_ms);
        }
        self.reading(device_id, group, sent_ms, value, erred);
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

    /// Device `device_id` of `group` sent a report at `sent_ms` reading `value`, with error
    /// codes or not (`erred`): the error-codes and sensor-stuck rules of its group it crossed
    /// become due.
    pub fn reading(&self, device_id: &str, group: &str, sent_ms: u64, value: f64, erred: bool) {
        let rules = self.rules.read().unwrap_or_else(PoisonError::into_inner);
        for (index, mark) in rules.iter().enumerate() {
            if !applies(mark, group) {
                continue;
            }
            match mark.rule {
                AlertRule::SensorStuck(reports) => {
                    let mut expected = lock(&self.expected);
                    let entry = expected.entry((index, device_id.into())).or_default();
                    let bits = value.to_bits();
                    let run = match entry.reading {
                        Some((last, run)) if last == bits => run.saturating_add(1),
                        _ => 1,
                    };
                    entry.reading = Some((bits, run));
                    // The backend raises when the run reaches the count (once: it stays
                    // raised until the reading changes, which starts a new run).
                    if run == reports && entry.due_ms.is_none() {
                        entry.due_ms = Some(sent_ms);
                    }
                }
                AlertRule::ErrorCodes { at_least, within } if erred => {
                    let mut expected = lock(&self.expected);
                    let entry = expected.entry((index, device_id.into())).or_default();
                    let window = millis(within);
                    // Quiet for the window since the last: the backend has cleared.
                    if entry
                        .errors
                        .back()
                        .is_some_and(|&last| sent_ms.saturating_sub(last) > window)
                    {
                        entry.erring = false;
                    }
                    entry.errors.push_back(sent_ms);
                    let since = sent_ms.saturating_sub(window);
                    while entry.errors.len() > at_least as usize || entry.errors.front().is_some_and(|&t| t < since) {
                        entry.errors.pop_front();
                    }
                    if !entry.erring && entry.errors.len() >= at_least as usize {
                        entry.erring = true;
                        if entry.due_ms.is_none() {
                            entry.due_ms = Some(sent_ms);
                        }
                    }
                }
                _ => {}
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

    #[test]
    fn a_stuck_sensor_is_due_when_its_run_reaches_the_count_and_again_after_a_change() {
        let book = AlertBook::default();
        book.set(RuleMark {
            id: "r-1".into(),
            rule: AlertRule::SensorStuck(3),
            group: None,
        });
        for (t, value) in [(1_000, 20.0), (2_000, 21.0), (3_000, 21.0)] {
            book.reading("d-1", "g", t, value, false);
        }
        assert_eq!(book.raised("r-1", "d-1", 3_100), Matched::WithoutCause, "two in a row");
        book.reading("d-1", "g", 4_000, 21.0, false);
        book.reading("d-1", "g", 5_000, 21.0, false);
        assert_eq!(
            book.raised("r-1", "d-1", 4_030),
            Matched::Expected(Duration::from_millis(30)),
            "due at the third in a row, once"
        );
        for (t, value) in [(6_000, 22.0), (7_000, 22.0), (8_000, 22.0)] {
            book.reading("d-1", "g", t, value, false);
        }
        assert_eq!(
            book.raised("r-1", "d-1", 8_020),
            Matched::Expected(Duration::from_millis(20)),
            "a new run after the reading changed"
        );
        assert_eq!(book.tally(20_000), (2, 0, 0));
    }

    #[test]
    fn error_codes_are_due_at_the_count_within_the_window_and_again_after_a_quiet_window() {
        let book = AlertBook::default();
        book.set(RuleMark {
            id: "r-1".into(),
            rule: AlertRule::ErrorCodes {
                at_least: 2,
                within: Duration::from_secs(3),
            },
            group: Some("sensors".into()),
        });
        book.reading("d-1", "sensors", 1_000, 20.0, true);
        book.reading("d-1", "sensors", 5_000, 20.0, true);
        assert_eq!(book.tally(10_000), (0, 0, 0), "4 s apart: never two within 3 s");
        book.reading("d-1", "sensors", 6_000, 20.0, false);
        book.reading("d-1", "sensors", 7_000, 20.0, true);
        assert_eq!(
            book.raised("r-1", "d-1", 7_050),
            Matched::Expected(Duration::from_millis(50))
        );
        // Still erring: the alert stands, nothing new is due.
        book.reading("d-1", "sensors", 8_000, 20.0, true);
        book.reading("d-1", "sensors", 9_000, 20.0, true);
        assert_eq!(book.tally(20_000), (1, 0, 0));
        // Quiet past the window (the backend cleared), then a burst again.
        book.reading("d-1", "sensors", 13_000, 20.0, true);
        book.reading("d-1", "sensors", 14_000, 20.0, true);
        assert_eq!(
            book.raised("r-1", "d-1", 14_010),
            Matched::Expected(Duration::from_millis(10))
        );
        book.reading("d-2", "meters", 14_000, 20.0, true);
        book.reading("d-2", "meters", 14_500, 20.0, true);
        assert_eq!(book.tally(30_000), (2, 0, 0), "another group's device is not watched");
    }
}
