//! The live view of a run, for the dashboard: once a second the aggregator hands [`Live`] the
//! second it just merged and the run's totals so far; [`Live`] turns them into a [`Frame`]
//! (devices per state, the second's rates, latency percentiles so far, the gates judged on
//! the figures so far, outage recovery, harness cost, new event lines) and offers it on a
//! bounded channel. The campaign watcher offers the backend's campaigns on the same channel.
//!
//! Design: the frame is built on the aggregator's thread from the same one-second aggregates
//! the report reads, so the dashboard never touches a shard's recorder. Sending never waits:
//! a frame that finds the queue full is dropped (its event lines are kept for the next one).

use std::sync::mpsc::{SyncSender, TrySendError};
use std::time::Duration;

use crate::device::StateCounts;
use crate::metrics::names::{MetricKind, Stat};
use crate::metrics::recorder::{Counter, Latency, Snapshot};
use crate::report::figures::{CampaignView, Second, recorded_value, time_to_recover};
use crate::report::gates::{self, Measured};
use crate::scenario::Gate;

/// Updates waiting for the dashboard: a few seconds' worth, so a dashboard busy drawing
/// loses nothing, and one that stopped reading costs the run at most this many frames.
pub const LIVE_QUEUE: usize = 8;
/// Event lines kept for a frame that could not be sent; older ones are dropped first.
const PENDING_EVENTS: usize = 256;
/// Seconds between two event lines about errors, so a storm of them does not flood the log.
const ERROR_NOTE_EVERY_S: u64 = 10;

/// What the dashboard is told.
#[derive(Debug, Clone)]
pub enum Update {
    /// A second of the run, from the aggregator.
    Second(Box<Frame>),
    /// The campaigns as the backend reports them now.
    Campaigns(Vec<CampaignView>),
    /// The alerts the backend raised so far, against those the run's rules call for.
    Alerts(AlertFigures),
}

/// The monitoring path so far: what the operator's watch matched of the backend's alerts.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct AlertFigures {
    /// Alerts the rules called for so far (raised, overdue or still within their grace).
    pub due: u64,
    /// Of those, raised.
    pub raised: u64,
    /// Of those, not raised past their grace: missed unless the backend is only late.
    pub overdue: u64,
    /// Alerts raised that nothing called for.
    pub unexpected: u64,
    /// `alert.latency` so far.
    pub p50: Option<Duration>,
    /// `alert.latency` so far.
    pub p99: Option<Duration>,
}

/// One second of a run as the dashboard shows it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Frame {
    /// Seconds since the start.
    pub elapsed_s: u64,
    /// Devices this process runs.
    pub devices: u64,
    /// Devices per lifecycle state.
    pub states: StateCounts,
    /// Devices provisioned in the second.
    pub provisions: u64,
    /// Connects completed in the second.
    pub connects: u64,
    /// Messages published in the second.
    pub published: u64,
    /// Errors of every kind in the second.
    pub errors: u64,
    /// Each latency over the run so far, in `Latency::ALL` order.
    pub latencies: Vec<LatencyRow>,
    /// The scenario's gates, judged on the figures so far.
    pub gates: Vec<GateLight>,
    /// The mass outages' reconnect storm so far.
    pub recovery: Recovery,
    /// TLS handshakes and device certificates so far.
    pub identities: Identities,
    /// Reports made in a fault, and watchdog resets, so far.
    pub faults: (u64, u64),
    /// Reports sent more than 5 ms after their intended instant, so far: the harness (or its
    /// machine) behind its schedule, which the latencies then include.
    pub late_sends: u64,
    /// Of those, the ones whose shard thread was asleep at their instant and woke late: the
    /// machine, not the harness's load.
    pub late_sends_woken_late: u64,
    /// The harness's resident memory now and before the first device, bytes (0: unknown).
    pub rss_bytes: u64,
    /// Resident memory before the first device, bytes (0: unknown).
    pub rss_before_bytes: u64,
    /// CPU time the harness has used since it started.
    pub cpu: Duration,
    /// Event lines since the last frame (phases, backend outages, gate changes, errors).
    pub events: Vec<String>,
}

/// One latency's percentiles over the run so far.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LatencyRow {
    /// Metric name, e.g. `connect.latency`.
    pub name: &'static str,
    /// Samples recorded.
    pub count: u64,
    /// Median.
    pub p50: Option<Duration>,
    /// 99th percentile.
    pub p99: Option<Duration>,
    /// 99.9th percentile.
    pub p99_9: Option<Duration>,
    /// Largest.
    pub max: Option<Duration>,
}

/// A gate judged on the figures so far.
#[derive(Debug, Clone, PartialEq)]
pub struct GateLight {
    /// The metric as the gate names it, e.g. `provision.latency.p99`.
    pub metric: String,
    /// The verdict line, e.g. `FAIL  provision.latency.p99 <= 250ms: measured 310ms`.
    pub verdict: String,
    /// `None` while the run has not measured the figure yet.
    pub failing: Option<bool>,
}

/// Devices cut off by mass outages, and their return.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Recovery {
    /// Devices cut off while connected.
    pub affected: u64,
    /// Of those, connected again.
    pub recovered: u64,
    /// Of those, taken away by their own link, battery or the operator before they could.
    pub excused: u64,
    /// Time by which 99% of the counted devices were back, once they are.
    pub recovered_99: Option<Duration>,
}

/// TLS handshakes and device certificates over the run so far.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Identities {
    /// Full handshakes.
    pub full: u64,
    /// Resumed handshakes.
    pub resumed: u64,
    /// Certificates the backend's CA issued devices.
    pub issued: u64,
    /// Devices connected on a rotated certificate.
    pub rotated: u64,
    /// Devices connected on a certificate they renewed.
    pub renewed: u64,
    /// Old certificates revoked after a rotation.
    pub revoked: u64,
    /// Connects by decommissioned devices.
    pub revoked_tried: u64,
    /// Of those, refused.
    pub revoked_refused: u64,
    /// TLS and certificate-request errors by metric name, those that happened.
    pub errors: Vec<(&'static str, u64)>,
}

impl Identities {
    /// Whether the run has spoken no TLS and issued no certificate so far.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// Builds a [`Frame`] a second and offers it to the dashboard.
#[derive(Debug)]
pub struct Live {
    tx: SyncSender<Update>,
    gates: Vec<Gate>,
    devices: u64,
    rss_before_bytes: u64,
    /// Each gate's state at the last second (`None`: not measured).
    failing: Vec<Option<bool>>,
    pending: Vec<String>,
    last_error_note_s: Option<u64>,
}

impl Live {
    /// A live view of a run of `devices` judged by `gates`, sent on `tx`.
    pub fn new(tx: SyncSender<Update>, gates: &[Gate], devices: u64, rss_before: Option<u64>) -> Self {
        Self {
            tx,
            gates: gates.to_vec(),
            devices,
            rss_before_bytes: rss_before.unwrap_or(0),
            failing: vec![None; gates.len()],
            pending: Vec::new(),
            last_error_note_s: None,
        }
    }

    /// Notes an event line for the next frame.
    pub fn event(&mut self, line: &str) {
        if self.pending.len() >= PENDING_EVENTS {
            self.pending.remove(0);
        }
        self.pending.push(line.to_owned());
    }

    /// Builds and offers the frame of second `elapsed_s`: `second` is what the shards recorded
    /// in it, `total` everything so far, `row` the aggregator's row for it.
    pub fn second(&mut self, elapsed_s: u64, second: &Snapshot, total: &Snapshot, row: &Second) {
        let so_far = SoFar {
            total,
            states: &row.states,
        };
        let verdicts = gates::evaluate(&self.gates, &so_far);
        let mut lights = Vec::with_capacity(verdicts.len());
        for (verdict, was) in verdicts.iter().zip(self.failing.iter_mut()) {
            let now = verdict.measured.map(|_| !verdict.passed);
            match (*was, now) {
                (Some(false) | None, Some(true)) => {
                    self.pending.push(format!("[{elapsed_s}s] gate failing: {verdict}"))
                }
                (Some(true), Some(false)) => self.pending.push(format!("[{elapsed_s}s] gate holds again: {verdict}")),
                _ => {}
            }
            *was = now;
            lights.push(GateLight {
                metric: verdict.gate.metric.name.clone(),
                verdict: verdict.to_string(),
                failing: now,
            });
        }
        if row.errors > 0
            && self
                .last_error_note_s
                .is_none_or(|at| elapsed_s >= at + ERROR_NOTE_EVERY_S)
        {
            self.last_error_note_s = Some(elapsed_s);
            self.pending.push(error_note(elapsed_s, second));
        }
        let frame = Frame {
            elapsed_s,
            devices: self.devices,
            states: row.states,
            provisions: row.provisions,
            connects: row.connects,
            published: row.published,
            errors: row.errors,
            latencies: Latency::ALL.iter().map(|l| latency_row(total, *l)).collect(),
            gates: lights,
            recovery: recovery(total),
            identities: identities(total),
            faults: (total.count(Counter::FaultReports), total.count(Counter::WatchdogResets)),
            late_sends: total.count(Counter::LateSends),
            late_sends_woken_late: total.count(Counter::LateSendsWokenLate),
            rss_bytes: row.rss_bytes,
            rss_before_bytes: self.rss_before_bytes,
            cpu: row.cpu,
            events: std::mem::take(&mut self.pending),
        };
        // Never waits: a dashboard behind by LIVE_QUEUE frames misses this one, not its events.
        if let Err(TrySendError::Full(Update::Second(frame))) = self.tx.try_send(Update::Second(Box::new(frame))) {
            self.pending = frame.events;
        }
    }
}

/// `[12s] errors: errors.refused 3, errors.timeout 1 in the last second`.
fn error_note(elapsed_s: u64, second: &Snapshot) -> String {
    let kinds: Vec<String> = Counter::ALL
        .iter()
        .filter(|c| c.name().starts_with("errors.") && second.count(**c) > 0)
        .map(|c| format!("{} {}", c.name(), second.count(*c)))
        .collect();
    format!("[{elapsed_s}s] errors: {} in the last second", kinds.join(", "))
}

fn latency_row(total: &Snapshot, latency: Latency) -> LatencyRow {
    LatencyRow {
        name: latency.name(),
        count: total.samples(latency),
        p50: total.quantile(latency, 0.5),
        p99: total.quantile(latency, 0.99),
        p99_9: total.quantile(latency, 0.999),
        max: total.max(latency),
    }
}

fn recovery(total: &Snapshot) -> Recovery {
    let affected = total.count(Counter::OutageAffected);
    let excused = total.count(Counter::OutageExcused);
    Recovery {
        affected,
        recovered: total.count(Counter::OutageRecovered),
        excused,
        recovered_99: time_to_recover(total.histogram(Latency::Recovery), affected.saturating_sub(excused)),
    }
}

fn identities(total: &Snapshot) -> Identities {
    Identities {
        full: total.count(Counter::TlsFull),
        resumed: total.count(Counter::TlsResumed),
        issued: total.count(Counter::CertsIssued),
        rotated: total.count(Counter::CertsRotated),
        renewed: total.count(Counter::CertsRenewed),
        revoked: total.count(Counter::CertsRevoked),
        revoked_tried: total.count(Counter::RevokedTried),
        revoked_refused: total.count(Counter::RevokedRefused),
        errors: Counter::ALL
            .iter()
            .filter(|c| c.name().starts_with("errors.tls_") || **c == Counter::ErrorsCsr)
            .map(|c| (c.name(), total.count(*c)))
            .filter(|(_, n)| *n > 0)
            .collect(),
    }
}

/// The figures a gate can read while the run goes on: latencies, counters, devices per
/// state and errors. Figures known only at the end (rates over the arrival window, OTA
/// exposure, lost devices, recovery) are not measured yet.
struct SoFar<'a> {
    total: &'a Snapshot,
    states: &'a StateCounts,
}

impl Measured for SoFar<'_> {
    fn value(&self, name: &str, _kind: MetricKind, stat: Option<Stat>) -> Option<f64> {
        // The recovery figure is judged at the end, on devices that have all come back.
        if name.starts_with(Latency::Recovery.name()) {
            return None;
        }
        recorded_value(self.total, self.states, name, stat)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::recorder::Recorder;
    use crate::scenario::gate::parse_gate;
    use std::sync::mpsc::{Receiver, sync_channel};

    fn live(gates: &[Gate]) -> (Live, Receiver<Update>) {
        let (tx, rx) = sync_channel(LIVE_QUEUE);
        (Live::new(tx, gates, 100, Some(1 << 20)), rx)
    }

    fn frame(rx: &Receiver<Update>) -> Frame {
        match rx.try_recv() {
            Ok(Update::Second(frame)) => *frame,
            other => panic!("expected a frame, got {other:?}"),
        }
    }

    #[test]
    fn gates_light_up_as_the_figures_cross_them_and_say_so_once() {
        let gates = [
            parse_gate("connect.latency.p99", "<= 100ms").expect("gate"),
            parse_gate("ota.exposed", "<= 3%").expect("gate"),
        ];
        let (mut live, rx) = live(&gates);
        let mut recorder = Recorder::default();
        recorder.record(Latency::Connect, Duration::from_millis(20));
        let mut total = recorder.take();
        live.second(1, &Snapshot::default(), &total, &Second::default());
        let first = frame(&rx);
        assert_eq!(first.gates[0].failing, Some(false));
        assert_eq!(first.gates[1].failing, None, "exposure is known at the end only");
        assert!(first.events.is_empty());

        for _ in 0..10 {
            recorder.record(Latency::Connect, Duration::from_millis(300));
        }
        total.merge(&recorder.take());
        live.second(2, &Snapshot::default(), &total, &Second::default());
        live.second(3, &Snapshot::default(), &total, &Second::default());
        let breached = frame(&rx);
        assert_eq!(breached.gates[0].failing, Some(true));
        assert_eq!(breached.latencies[1].name, "connect.latency");
        assert_eq!(breached.latencies[1].count, 11);
        assert_eq!(breached.events.len(), 1, "{:?}", breached.events);
        assert!(
            breached.events[0].starts_with("[2s] gate failing: FAIL  connect.latency.p99 <= 100ms"),
            "{}",
            breached.events[0]
        );
        assert!(frame(&rx).events.is_empty(), "said once");
    }

    #[test]
    fn a_frame_counts_the_late_sends_of_the_run_so_far() {
        let (mut live, rx) = live(&[]);
        let mut recorder = Recorder::default();
        recorder.count(Counter::LateSends, 35);
        recorder.count(Counter::LateSendsWokenLate, 30);
        let second = recorder.take();
        let mut total = second.clone();
        total.merge(&second);
        live.second(2, &second, &total, &Second::default());
        let frame = frame(&rx);
        assert_eq!(frame.late_sends, 70, "the total's, not the second's");
        assert_eq!(frame.late_sends_woken_late, 60);
    }

    #[test]
    fn errors_are_noted_at_most_every_ten_seconds() {
        let (mut live, rx) = live(&[]);
        let mut recorder = Recorder::default();
        recorder.count(Counter::ErrorsRefused, 3);
        let second = recorder.take();
        let row = Second {
            errors: 3,
            ..Second::default()
        };
        let mut events = Vec::new();
        for s in 1..=11 {
            live.event(&format!("[{s}s] phase"));
            live.second(s, &second, &second, &row);
            events.extend(frame(&rx).events);
        }
        let notes: Vec<&String> = events.iter().filter(|e| e.contains("errors:")).collect();
        assert_eq!(
            notes,
            [
                "[1s] errors: errors.refused 3 in the last second",
                "[11s] errors: errors.refused 3 in the last second"
            ]
        );
        assert_eq!(events.len(), 13, "every phase line, in order: {events:?}");
    }

    #[test]
    fn a_full_queue_keeps_the_event_lines_for_the_next_frame() {
        let (tx, rx) = sync_channel(1);
        let mut live = Live::new(tx, &[], 10, None);
        live.second(1, &Snapshot::default(), &Snapshot::default(), &Second::default());
        live.event("[1s] phase ota");
        live.second(2, &Snapshot::default(), &Snapshot::default(), &Second::default());
        assert_eq!(frame(&rx).elapsed_s, 1);
        live.second(3, &Snapshot::default(), &Snapshot::default(), &Second::default());
        let third = frame(&rx);
        assert_eq!(
            (third.elapsed_s, third.events.as_slice()),
            (3, &["[1s] phase ota".to_owned()][..])
        );
    }
}
