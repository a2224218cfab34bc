//! The operator: plays the scenario's phases at their times through the dialect's operator
//! side (pushing config, sending commands, starting campaigns, decommissioning devices, each
//! through the backend's own API). Outages need no API: devices cut themselves off (see
//! `device::outage`), and the operator only notes them.
//!
//! Design: one task on its own thread, asleep until each phase's time (wall-clock, from the
//! run's start). The dialect writes into the [`OperatorLog`] before it calls the backend, so
//! devices answering the backend measure from the operator's action. Every phase leaves a
//! record (what it targeted, what the backend answered, or the error) for the summary.

use std::sync::Arc;
use std::sync::mpsc::SyncSender;

use serde_json::{Value, json};
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

use crate::dialect::{Dialect, OperatorLog, PhaseCx, StartedCampaign};
use crate::scenario::units::DisplayDuration;
use crate::scenario::{Action, Phase, Scenario};

/// What one phase did.
#[derive(Debug, Clone)]
pub struct PhaseRecord {
    /// The phase's time, seconds from the start.
    pub at_s: f64,
    /// Its action.
    pub action: &'static str,
    /// The groups it targeted.
    pub groups: Vec<String>,
    /// What the backend answered, in short.
    pub detail: Value,
    /// Calls that failed, with why.
    pub errors: Vec<String>,
}

/// Everything the operator did.
#[derive(Debug, Clone, Default)]
pub struct OperatorReport {
    /// Phase by phase.
    pub phases: Vec<PhaseRecord>,
    /// Campaigns started.
    pub campaigns: Vec<StartedCampaign>,
    /// Devices decommissioned.
    pub decommissioned: u64,
}

/// The operator of one run.
#[derive(Debug)]
pub struct Operator<D> {
    /// The backend, whose operator side plays the phases.
    pub dialect: D,
    /// What it did and when, shared with the devices.
    pub log: Arc<OperatorLog>,
    /// Where to say what happened, one line per phase (progress output).
    pub events: Option<SyncSender<String>>,
}

impl<D: Dialect> Operator<D> {
    /// Plays `scenario`'s phases from `start` until done or `stop`.
    pub async fn play(&self, scenario: &Scenario, start: Instant, stop: &CancellationToken) -> OperatorReport {
        let mut report = OperatorReport::default();
        let all_groups = dedup(scenario.fleet.mix.iter().map(|m| m.group.clone()));
        for (index, phase) in scenario.phases.iter().enumerate() {
            tokio::select! {
                () = sleep_until(start + phase.at) => {}
                () = stop.cancelled() => break,
            }
            let groups = match &phase.group {
                Some(group) => vec![group.clone()],
                None => all_groups.clone(),
            };
            let mut record = PhaseRecord {
                at_s: phase.at.as_secs_f64(),
                action: phase.action.name(),
                groups: groups.clone(),
                detail: Value::Null,
                errors: Vec::new(),
            };
            if let Action::Outage { share, duration } = phase.action {
                record.detail = json!({ "share": share, "duration_s": duration.as_secs_f64() });
            } else if let Action::Fault { kind, share, duration } = phase.action {
                record.detail = json!({ "fault": kind.name(), "share": share, "duration_s": duration.as_secs_f64() });
            } else {
                let cx = PhaseCx {
                    scenario,
                    index,
                    phase,
                    groups: &groups,
                    log: &self.log,
                };
                let played = self.dialect.play(cx).await;
                record.detail = played.detail;
                record.errors = played.errors;
                report.campaigns.extend(played.campaigns);
                report.decommissioned += played.decommissioned;
            }
            self.say(phase, &record);
            report.phases.push(record);
        }
        report
    }

    fn say(&self, phase: &Phase, record: &PhaseRecord) {
        let Some(events) = &self.events else { return };
        let errors = match record.errors.len() {
            0 => String::new(),
            n => format!(" ({n} errors, first: {})", record.errors[0]),
        };
        let line = format!(
            "[{}] phase {} {}: {}{errors}",
            DisplayDuration(phase.at),
            record.action,
            record.groups.join(","),
            record.detail
        );
        // The queue is bounded; an event line that finds it full is dropped, never waited for.
        let _ = events.try_send(line);
    }
}

/// The groups in their first order, each once.
fn dedup(groups: impl Iterator<Item = String>) -> Vec<String> {
    let mut unique: Vec<String> = Vec::new();
    for group in groups {
        if !unique.contains(&group) {
            unique.push(group);
        }
    }
    unique
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_are_played_once_in_their_first_order() {
        let groups = ["meters", "sensors", "meters"].map(String::from);
        assert_eq!(dedup(groups.into_iter()), ["meters", "sensors"]);
    }
}
