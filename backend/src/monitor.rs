//! Monitoring: the operator's alert rules, checked against what devices report and how they
//! come and go, and the alerts they raise (`GET /api/v1/alerts`).
//!
//! Design: the rules in force are cached here (the registry keeps them; the API reloads the
//! cache when it changes them). A battery rule is checked when a device reports its battery
//! (a status report, a telemetry message that carries one, an LwM2M notification); an offline
//! rule by a sweep every [`SWEEP_EVERY`] over the devices that disconnected, each checked
//! against the session table before it is raised (a device that came back in between is
//! not offline); an error-codes rule when a telemetry message carries codes; a sensor-stuck
//! rule at every telemetry reading, while one is in force. An alert is raised once per rule
//! and device and cleared when the condition no longer holds (the battery reported at or
//! above the level, the device connected again, no codes for the rule's window (by the
//! sweep), the reading changed, the device decommissioned). Each raise and clear is audited through the registry's group
//! commit, off the device's path, and counted for `/metrics`.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use serde::Serialize;
use serde_json::json;
use tokio::sync::watch;

use crate::registry::{AlertRule, Registry, RuleKind};

/// How often devices that disconnected are checked against the offline rules: an offline
/// alert comes at most this late.
pub const SWEEP_EVERY: Duration = Duration::from_millis(250);

/// An alert in force.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alert {
    /// The rule that raised it (`r-N`).
    pub rule: String,
    /// The rule's kind.
    pub kind: &'static str,
    /// The device.
    pub device_id: String,
    /// When it was raised, unix ms.
    pub raised_at_ms: u64,
    /// The rule's number, for matching without its text.
    #[serde(skip)]
    number: i64,
    /// What crossed the rule: the battery reported, since when the device is offline, the
    /// reports with codes in the window, or the reading repeated.
    pub cause: serde_json::Value,
}

/// The rules, the alerts in force and their counts.
#[derive(Debug)]
pub struct Monitor {
    registry: Registry,
    rules: RwLock<Arc<[AlertRule]>>,
    /// Alerts in force, by device: looked up by a borrowed id on every report that carries a
    /// battery, so without allocating.
    active: Mutex<HashMap<String, Vec<Alert>>>,
    /// Devices that disconnected, since when (unix ms); forgotten when they connect again.
    offline_since: Mutex<HashMap<String, u64>>,
    /// Each device's newest reports with error codes (unix ms), while an error-codes rule
    /// is in force: as many as the largest count asks, within the widest window.
    error_times: Mutex<HashMap<String, VecDeque<u64>>>,
    /// Each device's last reading (its bits) and how many reports in a row carried it, while
    /// a sensor-stuck rule is in force.
    values: Mutex<HashMap<String, (u64, u32)>>,
    /// A sensor-stuck rule is in force.
    watch_values: AtomicBool,
    /// An error-codes rule is in force: the LwM2M front observes devices' error codes only
    /// then, and starts to when one comes ([`Monitor::errors_watched`]).
    watch_errors: watch::Sender<bool>,
    /// Each device's group, looked up once a group's rule needs it.
    groups: Mutex<HashMap<String, Option<Arc<str>>>>,
    /// Alerts raised since the backend started.
    pub raised: AtomicU64,
    /// Alerts cleared since the backend started.
    pub cleared: AtomicU64,
}

impl Monitor {
    /// A monitor over `registry`'s rules as they stand (none if they cannot be read now: the
    /// next change through the API loads them again).
    pub fn new(registry: Registry) -> Self {
        let rules = registry.alert_rules().unwrap_or_default();
        let watch_values = AtomicBool::new(watches_values(&rules));
        let (watch_errors, _) = watch::channel(watches_errors(&rules));
        Self {
            registry,
            rules: RwLock::new(rules.into()),
            active: Mutex::new(HashMap::new()),
            offline_since: Mutex::new(HashMap::new()),
            error_times: Mutex::new(HashMap::new()),
            values: Mutex::new(HashMap::new()),
            watch_values,
            watch_errors,
            groups: Mutex::new(HashMap::new()),
            raised: AtomicU64::new(0),
            cleared: AtomicU64::new(0),
        }
    }

    /// Reads the rules in force again (after the API changed them); alerts of a rule no
    /// longer in force are cleared.
    pub fn reload(&self) -> Result<(), crate::registry::RegistryError> {
        let rules: Arc<[AlertRule]> = self.registry.alert_rules()?.into();
        let numbers: Vec<i64> = rules.iter().map(AlertRule::number).collect();
        // What the rules no longer in force watched is forgotten.
        let watch_errors = watches_errors(&rules);
        if !watch_errors {
            lock(&self.error_times).clear();
        }
        self.watch_errors.send_if_modified(|watched| {
            let changed = *watched != watch_errors;
            *watched = watch_errors;
            changed
        });
        let watch_values = watches_values(&rules);
        self.watch_values.store(watch_values, Ordering::Relaxed);
        if !watch_values {
            lock(&self.values).clear();
        }
        *self.rules.write().unwrap_or_else(PoisonError::into_inner) = rules;
        let gone = self.take_where(|alert| !numbers.contains(&alert.number));
        for alert in gone {
            self.cleared_one(&alert, "rule deleted");
        }
        Ok(())
    }

    /// The rules in force.
    fn rules(&self) -> Arc<[AlertRule]> {
        Arc::clone(&self.rules.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// The alerts in force, by device id then rule.
    pub fn alerts(&self) -> Vec<Alert> {
        let mut alerts: Vec<Alert> = lock(&self.active).values().flatten().cloned().collect();
        alerts.sort_by(|a, b| (&a.device_id, &a.rule).cmp(&(&b.device_id, &b.rule)));
        alerts
    }

    /// How many alerts are in force.
    pub fn active_count(&self) -> usize {
        lock(&self.active).values().map(Vec::len).sum()
    }

    /// Whether rule `number` has an alert in force for `device_id`.
    fn is_raised(&self, number: i64, device_id: &str) -> bool {
        lock(&self.active)
            .get(device_id)
            .is_some_and(|alerts| alerts.iter().any(|a| a.number == number))
    }

    /// Takes the alerts in force that `gone` picks out.
    fn take_where(&self, gone: impl Fn(&Alert) -> bool) -> Vec<Alert> {
        let mut active = lock(&self.active);
        let mut taken = Vec::new();
        active.retain(|_, alerts| {
            let (out, kept): (Vec<Alert>, Vec<Alert>) = std::mem::take(alerts).into_iter().partition(|a| gone(a));
            taken.extend(out);
            *alerts = kept;
            !alerts.is_empty()
        });
        taken
    }

    /// Device `device_id` reported its battery at `level` (a fraction) at `at_ms`.
    pub async fn battery(&self, device_id: &str, level: f64, at_ms: u64) {
        let rules = self.rules();
        for rule in rules.iter() {
            let RuleKind::BatteryBelow { below } = rule.kind else {
                continue;
            };
            let raised = self.is_raised(rule.number(), device_id);
            if level < below && !raised {
                if !self.in_group(rule, device_id).await {
                    continue;
                }
                let cause = json!({ "battery": level, "below": below });
                self.raise(rule, device_id, at_ms, cause);
            } else if level >= below && raised {
                self.clear(rule.number(), device_id, "battery at or above the level");
            }
        }
    }

    /// Whether a rule watches sensor readings: a device's reading is passed on only then (one
    /// atomic load a telemetry message).
    pub fn watches_values(&self) -> bool {
        self.watch_values.load(Ordering::Relaxed)
    }

    /// Whether an error-codes rule is in force.
    pub fn watches_errors(&self) -> bool {
        *self.watch_errors.borrow()
    }

    /// Changes to whether an error-codes rule is in force, from now on.
    pub fn errors_watched(&self) -> watch::Receiver<bool> {
        self.watch_errors.subscribe()
    }

    /// Device `device_id` reported a telemetry message that carried error codes at `at_ms`:
    /// an error-codes rule whose count it reaches within its window raises.
    pub async fn errors(&self, device_id: &str, at_ms: u64) {
        let rules = self.rules();
        let watched: Vec<(&AlertRule, u32, f64)> = rules
            .iter()
            .filter_map(|rule| match rule.kind {
                RuleKind::ErrorCodes { at_least, within_s } => Some((rule, at_least, within_s)),
                _ => None,
            })
            .collect();
        let (Some(keep), Some(widest)) = (
            watched.iter().map(|(_, n, _)| *n).max(),
            watched.iter().map(|(_, _, w)| *w).reduce(f64::max),
        ) else {
            return;
        };
        let recent: Vec<u64> = {
            let mut times = lock(&self.error_times);
            let times = match times.get_mut(device_id) {
                Some(times) => times,
                None => times.entry(device_id.to_owned()).or_default(),
            };
            times.push_back(at_ms);
            // Only the newest reports within the widest window can count.
            let oldest = at_ms.saturating_sub(secs_ms(widest));
            while times.len() > keep as usize || times.front().is_some_and(|&t| t < oldest) {
                times.pop_front();
            }
            times.iter().copied().collect()
        };
        for (rule, at_least, within_s) in watched {
            let since = at_ms.saturating_sub(secs_ms(within_s));
            let within = recent.iter().filter(|&&t| t >= since).count();
            if within >= at_least as usize
                && !self.is_raised(rule.number(), device_id)
                && self.in_group(rule, device_id).await
            {
                let cause = json!({ "reports": within, "within_s": within_s });
                self.raise(rule, device_id, at_ms, cause);
            }
        }
    }

    /// Device `device_id`'s sensor read `value` at `at_ms`: a sensor-stuck rule whose count of
    /// the same reading in a row it reaches raises; a reading that changed clears.
    pub async fn value(&self, device_id: &str, value: f64, at_ms: u64) {
        let run = {
            let mut values = lock(&self.values);
            let bits = value.to_bits();
            match values.get_mut(device_id) {
                Some((last, run)) if *last == bits => {
                    *run = run.saturating_add(1);
                    *run
                }
                Some(entry) => {
                    *entry = (bits, 1);
                    1
                }
                None => {
                    values.insert(device_id.to_owned(), (bits, 1));
                    1
                }
            }
        };
        for rule in self.rules().iter() {
            let RuleKind::SensorStuck { reports } = rule.kind else {
                continue;
            };
            let raised = self.is_raised(rule.number(), device_id);
            if run >= reports && !raised && self.in_group(rule, device_id).await {
                let cause = json!({ "value": value, "reports": run });
                self.raise(rule, device_id, at_ms, cause);
            } else if run == 1 && raised {
                self.clear(rule.number(), device_id, "the reading changed");
            }
        }
    }

    /// Clears the error-codes alerts of devices that reported no error codes for the rule's
    /// window by `now_ms`.
    fn clear_quiet_errors(&self, rules: &[AlertRule], now_ms: u64) {
        for rule in rules {
            let RuleKind::ErrorCodes { within_s, .. } = rule.kind else {
                continue;
            };
            let quiet: Vec<String> = {
                let active = lock(&self.active);
                let times = lock(&self.error_times);
                active
                    .iter()
                    .filter(|(_, alerts)| alerts.iter().any(|a| a.number == rule.number()))
                    .filter(|(device, _)| {
                        let last = times.get(device.as_str()).and_then(|t| t.back().copied());
                        last.is_none_or(|last| now_ms.saturating_sub(last) > secs_ms(within_s))
                    })
                    .map(|(device, _)| device.clone())
                    .collect()
            };
            for device_id in quiet {
                self.clear(rule.number(), &device_id, "no error codes within the window");
            }
        }
    }

    /// Device `device_id` connected: it is not offline, and its offline alerts clear.
    pub fn connected(&self, device_id: &str) {
        let was_offline = lock(&self.offline_since).remove(device_id).is_some();
        if !was_offline {
            return;
        }
        for rule in self.rules().iter() {
            if matches!(rule.kind, RuleKind::OfflineFor { .. }) {
                self.clear(rule.number(), device_id, "connected");
            }
        }
    }

    /// Device `device_id` disconnected at `at_ms` (and no other connection holds it).
    pub fn disconnected(&self, device_id: &str, at_ms: u64) {
        let watched = self
            .rules()
            .iter()
            .any(|rule| matches!(rule.kind, RuleKind::OfflineFor { .. }));
        if watched {
            lock(&self.offline_since).insert(device_id.to_owned(), at_ms);
        }
    }

    /// The device was decommissioned: its alerts clear and it is watched no more.
    pub fn forget(&self, device_id: &str) {
        lock(&self.offline_since).remove(device_id);
        lock(&self.error_times).remove(device_id);
        lock(&self.values).remove(device_id);
        lock(&self.groups).remove(device_id);
        let alerts = lock(&self.active).remove(device_id).unwrap_or_default();
        for alert in alerts {
            self.cleared_one(&alert, "decommissioned");
        }
    }

    /// Raises the offline alerts due at `now_ms`; `live` says whether a device is connected
    /// now (one that is has come back since it was noted offline).
    pub async fn sweep(&self, now_ms: u64, live: impl Fn(&str) -> bool) {
        let rules = self.rules();
        self.clear_quiet_errors(&rules, now_ms);
        let offline_rules: Vec<&AlertRule> = rules
            .iter()
            .filter(|rule| matches!(rule.kind, RuleKind::OfflineFor { .. }))
            .collect();
        if offline_rules.is_empty() {
            return;
        }
        let candidates: Vec<(String, u64)> = lock(&self.offline_since)
            .iter()
            .map(|(device, since)| (device.clone(), *since))
            .collect();
        for (device_id, since) in candidates {
            if live(&device_id) {
                lock(&self.offline_since).remove(&device_id);
                continue;
            }
            for rule in &offline_rules {
                let RuleKind::OfflineFor { after_s } = rule.kind else {
                    continue;
                };
                let due = since.saturating_add((after_s * 1000.0) as u64);
                if now_ms < due || self.is_raised(rule.number(), &device_id) {
                    continue;
                }
                if self.in_group(rule, &device_id).await {
                    let cause = json!({ "offline_since_ms": since, "after_s": after_s });
                    self.raise(rule, &device_id, now_ms, cause);
                }
            }
        }
    }

    /// Whether `device_id` is in `rule`'s group (every device is, for a rule of no group).
    async fn in_group(&self, rule: &AlertRule, device_id: &str) -> bool {
        let Some(group) = &rule.group else {
            return true;
        };
        let known = lock(&self.groups).get(device_id).cloned();
        let found = match known {
            Some(found) => found,
            None => {
                let registry = self.registry.clone();
                let id = device_id.to_owned();
                let looked_up = tokio::task::spawn_blocking(move || registry.device(&id)).await;
                let found: Option<Arc<str>> = match looked_up {
                    Ok(Ok(Some(device))) => Some(device.group.into()),
                    // Not known: in no group. A failed lookup is asked again next time.
                    Ok(Ok(None)) => None,
                    Ok(Err(_)) | Err(_) => return false,
                };
                lock(&self.groups).insert(device_id.to_owned(), found.clone());
                found
            }
        };
        found.is_some_and(|g| *g == **group)
    }

    fn raise(&self, rule: &AlertRule, device_id: &str, at_ms: u64, cause: serde_json::Value) {
        let alert = Alert {
            rule: rule.id.clone(),
            kind: rule.kind.name(),
            device_id: device_id.to_owned(),
            raised_at_ms: at_ms,
            cause,
            number: rule.number(),
        };
        {
            let mut active = lock(&self.active);
            let alerts = active.entry(device_id.to_owned()).or_default();
            if alerts.iter().any(|a| a.number == alert.number) {
                return;
            }
            alerts.push(alert.clone());
        }
        self.raised.fetch_add(1, Ordering::Relaxed);
        let mut detail = alert.cause.clone();
        detail["raised_at_ms"] = json!(at_ms);
        self.audit(true, &alert, detail);
    }

    fn clear(&self, number: i64, device_id: &str, why: &str) {
        let removed = {
            let mut active = lock(&self.active);
            let Some(alerts) = active.get_mut(device_id) else {
                return;
            };
            let removed = alerts
                .iter()
                .position(|a| a.number == number)
                .map(|at| alerts.swap_remove(at));
            if alerts.is_empty() {
                active.remove(device_id);
            }
            removed
        };
        if let Some(alert) = removed {
            self.cleared_one(&alert, why);
        }
    }

    fn cleared_one(&self, alert: &Alert, why: &str) {
        self.cleared.fetch_add(1, Ordering::Relaxed);
        self.audit(false, alert, json!({ "why": why, "raised_at_ms": alert.raised_at_ms }));
    }

    /// Audits a raise or a clear on its own task: the registry's group commit takes a storm
    /// of them in a few transactions, and the device's path never waits on a disk.
    fn audit(&self, raised: bool, alert: &Alert, detail: serde_json::Value) {
        let registry = self.registry.clone();
        let (rule, device) = (alert.rule.clone(), alert.device_id.clone());
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                // A registry closing at shutdown loses the entry; the alert itself stood.
                let _ = registry.record_alert(raised, &rule, &device, detail).await;
            });
        }
    }
}

/// Whether `rules` hold an error-codes rule.
fn watches_errors(rules: &[AlertRule]) -> bool {
    rules
        .iter()
        .any(|rule| matches!(rule.kind, RuleKind::ErrorCodes { .. }))
}

/// Whether `rules` hold a sensor-stuck rule.
fn watches_values(rules: &[AlertRule]) -> bool {
    rules
        .iter()
        .any(|rule| matches!(rule.kind, RuleKind::SensorStuck { .. }))
}

/// `s` seconds in whole milliseconds.
fn secs_ms(s: f64) -> u64 {
    // Windows are at most a day: far inside u64.
    (s * 1000.0) as u64
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every update of these maps is a single insert or remove: a panicking holder leaves
    // them whole.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
