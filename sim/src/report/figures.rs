//! A run's figures: the merged device snapshot, the run second by second ([`Second`]), the
//! backend's view of its campaigns and its outages, and the derived metrics of ARCHITECTURE
//! section 8 (`ota.exposed`, `ota.halt.latency`, `ota.rollback.success`, `reconnect.recovery`,
//! `devices.lost`), as gates read them and as `summary.json` carries them. The engine fills
//! these in; the report formats, the merge and the dashboard read them.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::{Value, json};

use super::gates::Measured;
use crate::device::StateCounts;
use crate::metrics::names::{MetricKind, Stat};
use crate::metrics::recorder::{Counter, Latency, Snapshot};

/// A run's late sends, as `summary.json` counts them: what the end of a run and `report.html`
/// tell the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LateSends {
    /// Reports sent more than 5 ms after their intended instant.
    pub late: u64,
    /// Of those, the ones whose shard thread was asleep at the instant and woke late: the
    /// machine did not run the harness in time (`None` in a summary from before the count).
    pub woken_late: Option<u64>,
    /// Reports published in all.
    pub published: u64,
}

impl LateSends {
    /// Why the reports were late, for a sentence after "... after their intended instant":
    /// the machine for those whose thread it woke late (or that went out in what such a wake
    /// left), the harness's load for the rest unless the machine took the thread's core while
    /// it ran (which no count can see), or both in their shares.
    pub fn why(&self) -> String {
        const MACHINE: &str = "the harness's thread was asleep at the instant and the machine ran it again only \
                               after it, or it was still working through what such a late wake left (other work \
                               on its cores, or a virtual machine's host running other work)";
        const AWAKE: &str = "the harness's thread was awake, busy with other devices' work: the harness's own load, \
                             unless the machine took its core while it ran (which a virtual machine cannot see)";
        // One late send is "it", not "all of them".
        let all = if self.late == 1 { "" } else { "for all of them " };
        match self.woken_late {
            None => "the harness or its machine fell behind its schedule".to_owned(),
            Some(woken) if woken >= self.late => format!("{all}{MACHINE}"),
            Some(0) => format!("{all}{AWAKE}"),
            Some(woken) => format!(
                "for {woken} of them {MACHINE}; for the other {} {AWAKE}",
                self.late - woken
            ),
        }
    }
}

/// A run's late sends from `summary.json`, for a run that sent any late (`None` for one that
/// kept its schedule, or a summary from before the counter).
pub fn late_sends(summary: &Value) -> Option<LateSends> {
    let counters = &summary["metrics"]["counters"];
    let late = counters[Counter::LateSends.name()].as_u64().filter(|&n| n > 0)?;
    Some(LateSends {
        late,
        woken_late: counters[Counter::LateSendsWokenLate.name()].as_u64(),
        published: counters[Counter::Published.name()].as_u64().unwrap_or(0),
    })
}

/// The share of cut-off devices whose return `reconnect.recovery` waits for.
const RECOVERED_SHARE: f64 = 0.99;

/// The time by which 99% of `affected` devices had come back, read off `recovery`, the
/// histogram of each recovered device's time (microseconds); `None` if fewer came back.
/// Runs and merged reports compute `reconnect.recovery` with it.
pub fn time_to_recover(recovery: Option<&Histogram<u64>>, affected: u64) -> Option<Duration> {
    let recovery = recovery?;
    let needed = (affected as f64 * RECOVERED_SHARE).ceil();
    if affected == 0 || (recovery.len() as f64) < needed {
        return None;
    }
    Some(Duration::from_micros(
        recovery.value_at_quantile(needed / recovery.len() as f64),
    ))
}

/// One second of a run, as the aggregator saw it at the second's end.
#[derive(Debug, Clone, Default)]
pub struct Second {
    /// Devices per lifecycle state.
    pub states: StateCounts,
    /// Devices connected (online or rolled back).
    pub connected: u64,
    /// Devices asleep between reports (duty-cycled), holding no task and no socket.
    pub sleeping: u64,
    /// Device tasks alive: devices awake.
    pub tasks: u64,
    /// Devices provisioned in the second.
    pub provisions: u64,
    /// Connects completed in the second.
    pub connects: u64,
    /// Messages published in the second.
    pub published: u64,
    /// Messages received in the second.
    pub received: u64,
    /// Errors of every kind in the second.
    pub errors: u64,
    /// Reports sent more than 5 ms after their intended instant in the second: the harness (or
    /// the machine under it) behind its schedule.
    pub late_sends: u64,
    /// p50 and p99 of each latency recorded in the second, in `Latency::ALL` order.
    pub latencies: Vec<[Option<Duration>; 2]>,
    /// The harness's resident memory, bytes (0 where unknown).
    pub rss_bytes: u64,
    /// CPU time the harness has used since it started.
    pub cpu: Duration,
}

/// A stretch of time the backend did not answer.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendOutage {
    /// When the first unanswered check was sent, from the start of the run.
    pub down_at: Duration,
    /// When it answered again (`None`: not before the run ended).
    pub up_at: Option<Duration>,
    /// Why the first check failed.
    pub why: String,
}

/// One campaign as the backend reports it (during the run for the dashboard, at the end for
/// the report).
#[derive(Debug, Clone, Default)]
pub struct CampaignView {
    /// The backend's id.
    pub id: u64,
    /// The group.
    pub group: String,
    /// Active devices in the group at its start.
    pub targeted: u64,
    /// `running`, `halted` or `completed`.
    pub state: String,
    /// Why it ended.
    pub end_reason: Option<String>,
    /// When it ended, Unix milliseconds.
    pub ended_at_ms: Option<u64>,
    /// Jobs summed over its started waves: targeted, then per state (sent, in_progress,
    /// succeeded, failed, rolled_back).
    pub jobs: [u64; 6],
    /// Waves started.
    pub waves_started: u64,
    /// Each started wave as the backend reported it (`targeted`, `sent`, `in_progress`,
    /// `succeeded`, `failed`, `rolled_back`).
    pub waves: Vec<Value>,
}

impl CampaignView {
    /// Job state names, in `jobs` order.
    pub const JOB_STATES: [&'static str; 6] = ["targeted", "sent", "in_progress", "succeeded", "failed", "rolled_back"];

    fn job(&self, name: &str) -> u64 {
        Self::JOB_STATES
            .iter()
            .position(|n| *n == name)
            .map_or(0, |i| self.jobs[i])
    }
}

/// What a finished run measured.
#[derive(Debug, Default)]
pub struct Figures {
    /// Latencies and counts, merged over shards.
    pub snapshot: Snapshot,
    /// Devices per state at the end.
    pub states: StateCounts,
    /// Devices provisioned per second over the arrival window.
    pub provision_rate: f64,
    /// Devices told `accepted` that the backend does not hold as active at the end.
    pub lost: Option<u64>,
    /// The campaigns, as the backend saw them.
    pub campaigns: Vec<CampaignView>,
    /// The first failure a device reported, Unix milliseconds.
    pub first_failure_ms: Option<u64>,
    /// Times the backend did not answer.
    pub backend_outages: Vec<BackendOutage>,
    /// The run second by second.
    pub seconds: Vec<Second>,
    /// The harness's resident memory before the first device, bytes.
    pub rss_before: Option<u64>,
}

/// What the harness cost, for the scale figures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HarnessFigures {
    /// The most devices connected at a second's end.
    pub peak_connected: u64,
    /// Resident memory before the first device, bytes.
    pub rss_before: u64,
    /// Resident memory at the first second with the peak connected, bytes.
    pub rss_at_peak: u64,
    /// The most connects completed in one second.
    pub connect_peak_per_s: u64,
    /// Messages published per second, on average from the peak to the end.
    pub publish_per_s: f64,
    /// Cores the harness kept busy from the peak to the end (1.0 is one core).
    pub cores: f64,
    /// The most devices asleep at a second's end (duty-cycled devices between reports).
    pub peak_sleeping: u64,
    /// Harness memory per sleeping device, bytes: the most of any second with at least 90%
    /// of the peak asleep.
    pub bytes_per_sleeping: Option<f64>,
    /// The most device tasks alive at a second's end.
    pub peak_tasks: u64,
}

impl HarnessFigures {
    /// Harness memory per connected device, bytes.
    pub fn bytes_per_device(&self) -> Option<f64> {
        // A handful connected (duty-cycled devices awake for a moment) says nothing per device.
        (self.peak_connected >= 100)
            .then(|| self.rss_at_peak.saturating_sub(self.rss_before) as f64 / self.peak_connected as f64)
    }

    /// Share of a core per 1,000 messages a second published (0.1 is a tenth of a core).
    pub fn cores_per_1k_msg_per_s(&self) -> Option<f64> {
        // Below a few hundred messages a second, fixed costs (pings, ticks) would dominate.
        (self.publish_per_s >= 500.0).then(|| self.cores / (self.publish_per_s / 1000.0))
    }
}

impl Figures {
    /// Devices that installed a campaign's image / devices its campaigns targeted.
    pub fn ota_exposed(&self) -> Option<f64> {
        let targeted: u64 = self.campaigns.iter().map(|c| c.targeted).sum();
        (targeted > 0).then(|| self.snapshot.count(Counter::OtaInstalled) as f64 / targeted as f64)
    }

    /// Rolled back / (rolled back + bricked).
    pub fn rollback_success(&self) -> Option<f64> {
        let rolled = self.snapshot.count(Counter::OtaRolledBack);
        let failed_boots = rolled + self.snapshot.count(Counter::OtaBricked);
        (failed_boots > 0).then(|| rolled as f64 / failed_boots as f64)
    }

    /// Connects the backend refused / connects tried, by devices whose credentials the
    /// operator had revoked.
    pub fn revoked_refused_share(&self) -> Option<f64> {
        let tried = self.snapshot.count(Counter::RevokedTried);
        (tried > 0).then(|| self.snapshot.count(Counter::RevokedRefused) as f64 / tried as f64)
    }

    /// First failure report -> the first campaign halted.
    pub fn halt_latency(&self) -> Option<Duration> {
        let first = self.first_failure_ms?;
        self.campaigns
            .iter()
            .filter(|c| c.state == "halted")
            .filter_map(|c| c.ended_at_ms)
            .min()
            .map(|halted| Duration::from_millis(halted.saturating_sub(first)))
    }

    /// Outage end -> 99% of the devices it cut off connected again: the time by which that
    /// many had recovered; `None` if fewer ever did (or none was cut off). Devices whose own
    /// link, battery or the operator took them away before they could come back are not
    /// counted (`outage.excused`).
    pub fn reconnect_recovery(&self) -> Option<Duration> {
        let affected = self
            .snapshot
            .count(Counter::OutageAffected)
            .saturating_sub(self.snapshot.count(Counter::OutageExcused));
        time_to_recover(self.snapshot.histogram(Latency::Recovery), affected)
    }

    /// How long after a backend outage ended the fleet was connected again: the first second
    /// from its return at which at least 99% of the devices connected just before it went
    /// away were connected again (`None` if that never happened, or it never came back).
    /// Read from the one-second series, so to within a second.
    pub fn backend_recovery(&self, outage: &BackendOutage) -> Option<Duration> {
        let up_at = outage.up_at?;
        // seconds[k] is the state at the end of second k + 1.
        let before = usize::try_from(outage.down_at.as_secs()).ok()?.checked_sub(1)?;
        let baseline = self.seconds.get(before)?.connected as f64;
        let from = usize::try_from(up_at.as_secs()).ok()?;
        let back = self
            .seconds
            .iter()
            .enumerate()
            .skip(from)
            .find(|(_, s)| s.connected as f64 >= baseline * RECOVERED_SHARE)?;
        Some(Duration::from_secs(back.0 as u64 + 1).saturating_sub(up_at))
    }

    /// `summary.json`'s `metrics` and `campaigns`.
    pub fn to_json(&self) -> (Value, Value) {
        let snapshot = &self.snapshot;
        let ms = |d: Option<Duration>| d.map(|d| (d.as_secs_f64() * 1e6).round() / 1e3);
        let histograms: serde_json::Map<String, Value> = Latency::ALL
            .iter()
            .map(|l| {
                let q = |p| ms(snapshot.quantile(*l, p));
                let figures = json!({
                    "count": snapshot.samples(*l),
                    "p50_ms": q(0.5), "p90_ms": q(0.9), "p99_ms": q(0.99), "p99_9_ms": q(0.999),
                    "max_ms": ms(snapshot.max(*l)),
                });
                (l.name().to_owned(), figures)
            })
            .collect();
        let counters: serde_json::Map<String, Value> = Counter::ALL
            .iter()
            .map(|c| (c.name().to_owned(), json!(snapshot.count(*c))))
            .collect();
        let gauges: serde_json::Map<String, Value> = self
            .states
            .iter()
            .map(|(s, n)| (format!("devices.{}", s.name()), json!(n)))
            .collect();
        let metrics = json!({
            "histograms": histograms,
            "counters": counters,
            "gauges": gauges,
            "provision.rate": self.provision_rate,
            "devices.lost": self.lost,
            "ota.exposed": self.ota_exposed(),
            "ota.rollback.success": self.rollback_success(),
            "revoked.refused_share": self.revoked_refused_share(),
            "ota.halt.latency_ms": ms(self.halt_latency()),
            "reconnect.recovery_ms": ms(self.reconnect_recovery()),
        });
        let campaigns: Vec<Value> = self
            .campaigns
            .iter()
            .map(|c| {
                let jobs: serde_json::Map<String, Value> = CampaignView::JOB_STATES
                    .iter()
                    .map(|name| ((*name).to_owned(), json!(c.job(name))))
                    .collect();
                json!({
                    "id": c.id, "group": c.group, "targeted": c.targeted, "state": c.state,
                    "end_reason": c.end_reason, "waves_started": c.waves_started, "backend_jobs": jobs,
                    "waves": c.waves,
                })
            })
            .collect();
        (metrics, json!(campaigns))
    }

    /// The harness's cost: memory per connected device, connect and publish rates.
    pub fn harness(&self) -> Option<HarnessFigures> {
        let rss_before = self.rss_before?;
        let peak_sleeping = self.seconds.iter().map(|s| s.sleeping).max()?;
        // The largest cost over the seconds with at least 90% of the peak asleep (the few
        // awake then are charged to the sleepers, so this errs high).
        let bytes_per_sleeping = self
            .seconds
            .iter()
            .filter(|s| peak_sleeping > 0 && s.sleeping * 10 >= peak_sleeping * 9 && s.rss_bytes > 0)
            .map(|s| s.rss_bytes.saturating_sub(rss_before) as f64 / s.sleeping as f64)
            .reduce(f64::max);
        let peak = self.seconds.iter().map(|s| s.connected).max()?;
        let at = self.seconds.iter().position(|s| s.connected == peak)?;
        let after = &self.seconds[at..];
        let first = &self.seconds[at.saturating_sub(1)];
        let last = after.last()?;
        let wall = (after.len() - usize::from(at == 0)).max(1) as f64;
        Some(HarnessFigures {
            cores: last.cpu.saturating_sub(first.cpu).as_secs_f64() / wall,
            peak_connected: peak,
            rss_before,
            rss_at_peak: self.seconds[at].rss_bytes,
            connect_peak_per_s: self.seconds.iter().map(|s| s.connects).max().unwrap_or(0),
            publish_per_s: after.iter().map(|s| s.published).sum::<u64>() as f64 / after.len() as f64,
            peak_sleeping,
            bytes_per_sleeping,
            peak_tasks: self.seconds.iter().map(|s| s.tasks).max().unwrap_or(0),
        })
    }

    /// `summary.json`'s `harness`.
    pub fn harness_json(&self) -> Value {
        let Some(h) = self.harness() else { return Value::Null };
        json!({
            "peak_connected": h.peak_connected,
            "rss_before_bytes": h.rss_before,
            "rss_at_peak_bytes": h.rss_at_peak,
            "bytes_per_connected_device": h.bytes_per_device().map(f64::round),
            "connect_peak_per_s": h.connect_peak_per_s,
            "publish_per_s": (h.publish_per_s * 10.0).round() / 10.0,
            "cores": (h.cores * 1000.0).round() / 1000.0,
            "cores_per_1k_msg_per_s": h.cores_per_1k_msg_per_s().map(|c| (c * 1000.0).round() / 1000.0),
            "peak_sleeping": h.peak_sleeping,
            "bytes_per_sleeping_device": h.bytes_per_sleeping.map(f64::round),
            "peak_device_tasks": h.peak_tasks,
            "seconds": self.seconds.iter().map(|s| json!([s.connected, s.sleeping, s.tasks, s.connects, s.published, s.rss_bytes, s.cpu.as_secs_f64()])).collect::<Vec<_>>(),
            "seconds_columns": ["connected", "sleeping", "tasks", "connects", "published", "rss_bytes", "cpu_s"],
        })
    }

    /// `summary.json`'s `backend_outages`.
    pub fn outages_json(&self) -> Value {
        let outages: Vec<Value> = self
            .backend_outages
            .iter()
            .map(|o| {
                json!({
                    "down_at_s": o.down_at.as_secs_f64(),
                    "up_at_s": o.up_at.map(|d| d.as_secs_f64()),
                    "why": o.why,
                    "fleet_recovered_after_s": self.backend_recovery(o).map(|d| d.as_secs_f64()),
                })
            })
            .collect();
        json!(outages)
    }
}

impl Measured for Figures {
    fn value(&self, name: &str, _kind: MetricKind, stat: Option<Stat>) -> Option<f64> {
        let secs = |d: Option<Duration>| d.map(|d| d.as_secs_f64());
        match name {
            "provision.rate" => return Some(self.provision_rate),
            "devices.lost" => return self.lost.map(|n| n as f64),
            "ota.exposed" => return self.ota_exposed(),
            "ota.rollback.success" => return self.rollback_success(),
            "revoked.refused_share" => return self.revoked_refused_share(),
            "ota.halt.latency" => return secs(self.halt_latency()),
            "reconnect.recovery" => return secs(self.reconnect_recovery()),
            _ => {}
        }
        recorded_value(&self.snapshot, &self.states, name, stat)
    }
}

/// The counters a summed error figure adds up, by their names' prefix: `errors.total` all
/// errors, `errors.tls` the TLS failures of every reason.
pub fn error_sum_family(name: &str) -> Option<&'static str> {
    match name {
        "errors.total" => Some("errors."),
        "errors.tls" => Some("errors.tls_"),
        _ => None,
    }
}

/// A gate's value among what the shards record: `errors.total`, a latency statistic, devices
/// in a state, or a counter. `None` for anything else. Shared by the run's figures and the
/// dashboard's figures so far.
pub fn recorded_value(snapshot: &Snapshot, states: &StateCounts, name: &str, stat: Option<Stat>) -> Option<f64> {
    let secs = |d: Option<Duration>| d.map(|d| d.as_secs_f64());
    if let Some(family) = error_sum_family(name) {
        let errors = Counter::ALL.iter().filter(|c| c.name().starts_with(family));
        return Some(errors.map(|c| snapshot.count(*c)).sum::<u64>() as f64);
    }
    if let Some(latency) = Latency::ALL.iter().find(|l| name.starts_with(l.name())) {
        return match stat? {
            Stat::Percentile(p) => secs(snapshot.quantile(*latency, p / 100.0)),
            Stat::Min => secs(snapshot.min(*latency)),
            Stat::Max => secs(snapshot.max(*latency)),
            Stat::Mean => secs(snapshot.mean(*latency)),
            Stat::Count => Some(snapshot.samples(*latency) as f64),
        };
    }
    if let Some(state) = name.strip_prefix("devices.") {
        let (_, n) = states.iter().find(|(s, _)| s.name() == state)?;
        return Some(n as f64);
    }
    Counter::ALL
        .iter()
        .find(|c| c.name() == name)
        .map(|c| snapshot.count(*c) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::recorder::Recorder;

    fn figures(snapshot: Snapshot) -> Figures {
        Figures {
            snapshot,
            states: StateCounts::default(),
            provision_rate: 0.0,
            lost: None,
            campaigns: Vec::new(),
            first_failure_ms: None,
            backend_outages: Vec::new(),
            seconds: Vec::new(),
            rss_before: None,
        }
    }

    #[test]
    fn late_sends_say_how_many_the_machine_made_late_and_how_many_the_harness_load() {
        let counted = |late, woken: Option<u64>| {
            let mut counters = json!({ "late_sends": late, "published": 1000 });
            if let Some(woken) = woken {
                counters["late_sends.woken_late"] = json!(woken);
            }
            late_sends(&json!({ "metrics": { "counters": counters } }))
        };
        assert_eq!(counted(0, Some(0)), None, "none late");
        let why = |late, woken| counted(late, woken).expect("some late").why();
        assert_eq!(why(7, None), "the harness or its machine fell behind its schedule");
        assert!(why(7, Some(7)).starts_with("for all of them the harness's thread was asleep"));
        assert!(why(7, Some(0)).starts_with("for all of them the harness's thread was awake, busy"));
        assert!(
            why(7, Some(0)).contains("unless the machine took its core"),
            "an awake thread's lateness is not sure to be the harness's"
        );
        assert!(
            why(1, Some(0)).starts_with("the harness's thread was awake, busy"),
            "one, not all"
        );
        let both = why(7, Some(5));
        assert!(
            both.starts_with("for 5 of them the harness's thread was asleep")
                && both.contains("; for the other 2 the harness's thread was awake, busy"),
            "{both}"
        );
    }
    #[test]
    fn tls_errors_sum_their_reasons_and_count_in_the_total() {
        let mut recorder = Recorder::default();
        recorder.count(Counter::ErrorsTlsUnknownCa, 3);
        recorder.count(Counter::ErrorsTlsExpired, 2);
        recorder.count(Counter::ErrorsTimeout, 1);
        let snapshot = recorder.take();
        let states = StateCounts::default();
        let value = |name| recorded_value(&snapshot, &states, name, None);
        assert_eq!(value("errors.tls"), Some(5.0));
        assert_eq!(value("errors.tls_expired"), Some(2.0));
        assert_eq!(value("errors.total"), Some(6.0));
    }

    #[test]
    fn recovery_is_the_time_by_which_99_percent_came_back() {
        let mut recorder = Recorder::default();
        recorder.count(Counter::OutageAffected, 200);
        for s in 1..=198u64 {
            recorder.record(Latency::Recovery, Duration::from_secs(s));
        }
        // 198 of 200 is exactly 99%: the last of them marks the recovery.
        let recovery = figures(recorder.take()).reconnect_recovery().expect("recovered");
        assert!((recovery.as_secs_f64() - 198.0).abs() < 0.2, "{recovery:?}");

        let mut recorder = Recorder::default();
        recorder.count(Counter::OutageAffected, 200);
        for s in 1..=197u64 {
            recorder.record(Latency::Recovery, Duration::from_secs(s));
        }
        assert_eq!(
            figures(recorder.take()).reconnect_recovery(),
            None,
            "98.5% is not recovered"
        );

        // Three of them lost their own link before they could come back: 197 of 197 counted.
        let mut recorder = Recorder::default();
        recorder.count(Counter::OutageAffected, 200);
        recorder.count(Counter::OutageExcused, 3);
        for s in 1..=197u64 {
            recorder.record(Latency::Recovery, Duration::from_secs(s));
        }
        let recovery = figures(recorder.take()).reconnect_recovery().expect("recovered");
        assert!((recovery.as_secs_f64() - 196.0).abs() < 0.2, "{recovery:?}");
    }

    #[test]
    fn the_fleet_recovers_when_99_percent_of_the_connected_are_back() {
        let mut f = figures(Snapshot::default());
        // Seconds 1..=3: 100 connected; the backend goes at 3.2 s and is back at 6.4 s.
        f.seconds = [100, 100, 100, 40, 0, 0, 10, 80, 99, 100]
            .into_iter()
            .map(|connected| Second {
                connected,
                ..Second::default()
            })
            .collect();
        let outage = BackendOutage {
            down_at: Duration::from_millis(3200),
            up_at: Some(Duration::from_millis(6400)),
            why: "refused".into(),
        };
        // 99 connected at the end of second 9: 2.6 s after the return.
        assert_eq!(f.backend_recovery(&outage), Some(Duration::from_millis(2600)));
        let never = BackendOutage {
            up_at: None,
            ..outage.clone()
        };
        assert_eq!(f.backend_recovery(&never), None);
        f.seconds.truncate(8);
        assert_eq!(f.backend_recovery(&outage), None, "not back by the end");
    }

    #[test]
    fn campaign_figures_come_from_devices_and_backend() {
        let mut recorder = Recorder::default();
        recorder.count(Counter::OtaInstalled, 30);
        recorder.count(Counter::OtaRolledBack, 9);
        recorder.count(Counter::OtaBricked, 1);
        let mut f = figures(recorder.take());
        assert_eq!(f.ota_exposed(), None, "no campaign, no exposure");
        f.campaigns.push(CampaignView {
            targeted: 300,
            state: "halted".into(),
            ended_at_ms: Some(10_500),
            ..CampaignView::default()
        });
        f.first_failure_ms = Some(10_000);
        assert_eq!(f.ota_exposed(), Some(0.1));
        assert_eq!(f.rollback_success(), Some(0.9));
        assert_eq!(f.halt_latency(), Some(Duration::from_millis(500)));
    }
}
