//! Watching the backend while the run goes on, through the dialect's operator side: its
//! health check twice a second, so a backend that vanishes mid-run (a crash, a restart, a
//! network cut) is recorded as an event with its times, and the run can say how long the fleet
//! took to come back once the backend did; and, when a dashboard watches, the campaigns the
//! operator started, once a second (the report reads them once, at the end); and, once an
//! `alert` phase set a rule, the alerts the backend raised, matched to those the devices'
//! states called for.

use std::sync::mpsc::SyncSender;
use std::time::Duration;

use tokio::time::{Instant, sleep_until, timeout};
use tokio_util::sync::CancellationToken;

use super::live::{AlertFigures, Update};
use crate::dialect::alert_book::{Matched, unix_ms_now};
use crate::dialect::{Dialect, OperatorLog};
use crate::metrics::recorder::{Counter, Latency, Recorder, Snapshot};
use crate::report::figures::BackendOutage;
use crate::scenario::units::DisplayDuration;

/// How often the backend's health is asked.
const PERIOD: Duration = Duration::from_millis(500);
/// How often the campaigns are asked for.
const CAMPAIGN_PERIOD: Duration = Duration::from_secs(1);
/// An answer slower than this counts as none (a campaign view: skipped until the next turn).
const PATIENCE: Duration = Duration::from_secs(1);

/// Checks the backend's health from `start` until `stop`, saying when it goes away and comes
/// back; returns at once for a backend that has no health check.
pub async fn watch<D: Dialect>(
    dialect: &D,
    start: Instant,
    stop: &CancellationToken,
    events: Option<&SyncSender<String>>,
) -> Vec<BackendOutage> {
    let mut outages: Vec<BackendOutage> = Vec::new();
    if !dialect.watched() {
        return outages;
    }
    let mut next = Instant::now();
    loop {
        tokio::select! {
            () = sleep_until(next) => {}
            () = stop.cancelled() => return outages,
        }
        let asked = Instant::now();
        next = asked + PERIOD;
        let since_start = asked.saturating_duration_since(start);
        let answer = match timeout(PATIENCE, dialect.health()).await {
            Ok(answer) => answer,
            Err(_) => Err(format!("no answer within {}", DisplayDuration(PATIENCE))),
        };
        let down = outages.last().is_some_and(|o| o.up_at.is_none());
        let line = match (answer, down) {
            (Err(why), false) => {
                let line = format!("[{}] backend unreachable: {why}", DisplayDuration(round(since_start)));
                outages.push(BackendOutage {
                    down_at: since_start,
                    up_at: None,
                    why,
                });
                line
            }
            (Ok(()), true) => {
                let Some(outage) = outages.last_mut() else { continue };
                outage.up_at = Some(since_start);
                format!(
                    "[{}] backend back after {}",
                    DisplayDuration(round(since_start)),
                    DisplayDuration(round(since_start.saturating_sub(outage.down_at)))
                )
            }
            _ => continue,
        };
        if let Some(events) = events {
            // Bounded queue; a line that finds it full is dropped, never waited for.
            let _ = events.try_send(line);
        }
    }
}

/// Offers the started campaigns, as the backend reports them, on `live` every
/// [`CAMPAIGN_PERIOD`] until `stop`; returns at once without a dashboard.
pub async fn watch_campaigns<D: Dialect>(
    dialect: &D,
    log: &OperatorLog,
    stop: &CancellationToken,
    live: Option<&SyncSender<Update>>,
) {
    let Some(live) = live else { return };
    let mut next = Instant::now() + CAMPAIGN_PERIOD;
    loop {
        tokio::select! {
            () = sleep_until(next) => {}
            () = stop.cancelled() => return,
        }
        next += CAMPAIGN_PERIOD;
        let started = log.campaigns();
        if started.is_empty() {
            continue;
        }
        let Ok(views) = timeout(PATIENCE * started.len() as u32, dialect.campaigns(&started)).await else {
            continue;
        };
        // Bounded queue; an update that finds it full is dropped, the next one says more.
        let _ = live.try_send(Update::Campaigns(views));
    }
}

/// How often the alerts the backend raised are read, once an alert rule is set.
const ALERT_PERIOD: Duration = Duration::from_millis(250);

/// Matches the alerts the backend raises against those the run's alert rules call for
/// ([`crate::dialect::alert_book`]) until `stop`, then once more, and says what it measured:
/// `alert.latency` and the `alerts.*` counts, for the run's figures. The dashboard (`live`)
/// is told the figures so far after each look.
pub async fn watch_alerts<D: Dialect>(
    dialect: &D,
    log: &OperatorLog,
    stop: &CancellationToken,
    live: Option<&SyncSender<Update>>,
) -> Snapshot {
    let mut recorder = Recorder::default();
    if !dialect.operates() {
        return recorder.take();
    }
    let mut so_far = Snapshot::default();
    let book = &log.alerts;
    let mut after = 0;
    loop {
        let stopped = tokio::select! {
            () = tokio::time::sleep(ALERT_PERIOD) => false,
            () = stop.cancelled() => true,
        };
        if book.watching() {
            // A page at a time until the backend has no more; a backend that does not answer
            // is asked again next time.
            loop {
                let Ok(Ok((raised, next))) = timeout(PATIENCE, dialect.raised_alerts(after)).await else {
                    break;
                };
                for alert in &raised {
                    match book.raised(&alert.rule, &alert.device_id, alert.at_ms) {
                        Matched::Expected(latency) => {
                            recorder.record(Latency::Alert, latency);
                            recorder.count(Counter::AlertsRaised, 1);
                        }
                        Matched::WithoutCause => recorder.count(Counter::AlertsUnexpected, 1),
                        Matched::Foreign => {}
                    }
                }
                if next == after {
                    break;
                }
                after = next;
            }
            so_far.merge(&recorder.take());
            if let Some(live) = live {
                let (met, overdue, pending) = book.tally(unix_ms_now());
                let figures = AlertFigures {
                    due: met + overdue + pending,
                    raised: so_far.count(Counter::AlertsRaised),
                    overdue,
                    unexpected: so_far.count(Counter::AlertsUnexpected),
                    p50: so_far.quantile(Latency::Alert, 0.5),
                    p99: so_far.quantile(Latency::Alert, 0.99),
                };
                // Bounded queue; an update that finds it full is dropped, the next one says more.
                let _ = live.try_send(Update::Alerts(figures));
            }
        }
        if stopped {
            break;
        }
    }
    if book.watching() {
        let (met, missed, _too_late_to_judge) = book.tally(unix_ms_now());
        recorder.count(Counter::AlertsExpected, met + missed);
        recorder.count(Counter::AlertsMissed, missed);
    }
    so_far.merge(&recorder.take());
    so_far
}

/// To the millisecond, for messages.
fn round(d: Duration) -> Duration {
    Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
