//! The operator: plays the scenario's phases at their times through the backend's operator API
//! (the reference backend's HTTP API): pushes desired config, sends commands, uploads firmware
//! and starts campaigns, decommissions devices. Outages need no API: devices cut themselves
//! off (see `device::outage`), and the operator only notes them.
//!
//! Design: one task on its own thread, asleep until each phase's time (wall-clock, from the
//! run's start). Before each call it writes the time into the [`OperatorLog`], so devices
//! answering the backend measure from the operator's action. Which devices a command or a
//! decommission picks depends on the seed, the phase and the serial only. Every phase leaves
//! a record (what it targeted, what the backend answered, or the error) for the summary.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::mpsc::SyncSender;

use serde_json::{Value, json};
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

use super::operator_log::OperatorLog;
use crate::model::{Rng, StreamId, device_rng};
use crate::scenario::Scenario;
use crate::scenario::typed::{Action, Campaign, Phase};
use crate::scenario::units::DisplayDuration;
use crate::transport::http::{Method, put_bytes, request_json};

/// Devices asked for per page when listing a group.
const PAGE: usize = 1000;

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

/// A campaign the operator started.
#[derive(Debug, Clone)]
pub struct StartedCampaign {
    /// The backend's id.
    pub id: u64,
    /// Its group.
    pub group: String,
    /// Active devices in the group when it started: the campaign's population.
    pub targeted: u64,
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
pub struct Operator {
    /// The operator API.
    pub api: SocketAddr,
    /// What it did and when, shared with the devices.
    pub log: Arc<OperatorLog>,
    /// Where to say what happened, one line per phase (progress output).
    pub events: Option<SyncSender<String>>,
    /// A hawkBit server's management API, which `api` then names: OTA phases become rollouts
    /// there (`super::operator_ddi`).
    pub ddi: Option<crate::dialect::hawkbit::Management>,
}

impl Operator {
    /// Plays `scenario`'s phases from `start` until done or `stop`.
    pub async fn play(&self, scenario: &Scenario, start: Instant, stop: &CancellationToken) -> OperatorReport {
        let mut report = OperatorReport::default();
        let all_groups: Vec<String> = scenario.fleet.mix.iter().map(|m| m.group.clone()).collect();
        for (k, phase) in scenario.phases.iter().enumerate() {
            tokio::select! {
                () = sleep_until(start + phase.at) => {}
                () = stop.cancelled() => break,
            }
            let groups = match &phase.group {
                Some(group) => vec![group.clone()],
                None => dedup(&all_groups),
            };
            let mut record = PhaseRecord {
                at_s: phase.at.as_secs_f64(),
                action: phase.action.name(),
                groups: groups.clone(),
                detail: Value::Null,
                errors: Vec::new(),
            };
            record.detail = match &phase.action {
                Action::Config { set } => self.push_config(&groups, set, &mut record.errors).await,
                Action::Command { command, args, share } => {
                    let picked = self.pick(scenario.seed, k, &groups, *share, &mut record.errors).await;
                    self.send_commands(&picked, command, args, &mut record.errors).await
                }
                Action::Ota(campaign) if self.ddi.is_some() => {
                    let Some(management) = &self.ddi else { continue };
                    super::operator_ddi::start_rollouts(
                        management,
                        &self.log,
                        scenario,
                        k,
                        &groups,
                        campaign,
                        &mut record.errors,
                    )
                    .await
                }
                Action::Ota(campaign) => {
                    let started = self
                        .start_campaigns(scenario.seed, k, &groups, campaign, &mut record.errors)
                        .await;
                    let detail = json!(
                        started
                            .iter()
                            .map(|c| json!({"campaign": c.id, "group": c.group, "targeted": c.targeted}))
                            .collect::<Vec<_>>()
                    );
                    report.campaigns.extend(started);
                    detail
                }
                Action::Outage { share, duration } => {
                    json!({ "share": share, "duration_s": duration.as_secs_f64() })
                }
                Action::Decommission { share } if self.ddi.is_some() => {
                    let Some(management) = &self.ddi else { continue };
                    let mut candidates = Vec::new();
                    for group in &groups {
                        match super::operator_ddi::devices_of(management, group).await {
                            Ok(ids) => candidates.extend(ids.into_iter().map(|id| (id.clone(), id))),
                            Err(e) => record.errors.push(e),
                        }
                    }
                    let picked = pick_from(candidates, scenario.seed, k, *share);
                    let done = super::operator_ddi::delete_devices(management, &picked, &mut record.errors).await;
                    report.decommissioned += done;
                    json!({ "picked": picked.len(), "decommissioned": done })
                }
                Action::Decommission { share } => {
                    let picked = self.pick(scenario.seed, k, &groups, *share, &mut record.errors).await;
                    let done = self.decommission(&picked, &mut record.errors).await;
                    report.decommissioned += done;
                    json!({ "picked": picked.len(), "decommissioned": done })
                }
            };
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

    async fn push_config(
        &self,
        groups: &[String],
        set: &std::collections::BTreeMap<String, Value>,
        errors: &mut Vec<String>,
    ) -> Value {
        let mut pushed = Vec::new();
        for group in groups {
            self.log.config_set(group, Instant::now());
            let body = json!({ "desired": set });
            match self
                .call(Method::PUT, &format!("/api/v1/groups/{group}/config"), Some(&body))
                .await
            {
                Ok(answer) => {
                    pushed.push(json!({"group": group, "pushed": answer["pushed"], "version": answer["version"]}))
                }
                Err(e) => errors.push(e),
            }
        }
        json!(pushed)
    }

    async fn send_commands(
        &self,
        devices: &[String],
        command: &str,
        args: &std::collections::BTreeMap<String, Value>,
        errors: &mut Vec<String>,
    ) -> Value {
        let (mut sent, mut queued, mut undelivered) = (0u64, 0u64, 0u64);
        for id in devices {
            self.log.command_sent(id, Instant::now());
            let body = json!({ "command": command, "args": args, "timeout_s": 60 });
            match self
                .call(Method::POST, &format!("/api/v1/devices/{id}/commands"), Some(&body))
                .await
            {
                Ok(answer) => match answer["delivery"].as_str() {
                    Some("sent") => sent += 1,
                    Some("queued") => queued += 1,
                    _ => undelivered += 1,
                },
                Err(e) => errors.push(e),
            }
        }
        json!({ "command": command, "picked": devices.len(), "sent": sent, "queued": queued, "undelivered": undelivered })
    }

    async fn start_campaigns(
        &self,
        seed: u64,
        k: usize,
        groups: &[String],
        campaign: &Campaign,
        errors: &mut Vec<String>,
    ) -> Vec<StartedCampaign> {
        let image = firmware_image(seed, k, campaign.size_bytes);
        match put_bytes(self.api, &format!("/api/v1/firmware/{}", campaign.version), image).await {
            Ok((200 | 201, _)) => {}
            Ok((status, answer)) => {
                errors.push(format!("firmware upload: {status} {answer}"));
                return Vec::new();
            }
            Err(e) => {
                errors.push(format!("firmware upload: {e}"));
                return Vec::new();
            }
        }
        let mut started = Vec::new();
        for group in groups {
            let targeted = match self.active_devices(group).await {
                Ok(devices) => devices.len() as u64,
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            };
            let body = json!({
                "group": group,
                "version": campaign.version,
                "waves": campaign.waves,
                "soak_s": campaign.soak.as_secs_f64().ceil() as u64,
                // Without a threshold the campaign never halts: 100% is the backend's "never".
                "halt_above": campaign.halt_above.unwrap_or(1.0),
            });
            match self.call(Method::POST, "/api/v1/campaigns", Some(&body)).await {
                Ok(answer) => match answer["campaign"]["id"].as_u64() {
                    Some(id) => {
                        // Told first, so the dashboard follows it from its first wave.
                        self.log.campaign_started(id, group, targeted);
                        started.push(StartedCampaign {
                            id,
                            group: group.clone(),
                            targeted,
                        });
                    }
                    None => errors.push(format!("campaign: no id in {answer}")),
                },
                Err(e) => errors.push(e),
            }
        }
        started
    }

    async fn decommission(&self, devices: &[String], errors: &mut Vec<String>) -> u64 {
        let mut done = 0;
        for id in devices {
            match self
                .call(Method::POST, &format!("/api/v1/devices/{id}/decommission"), None)
                .await
            {
                Ok(_) => done += 1,
                Err(e) => errors.push(e),
            }
        }
        done
    }

    /// Picks `share` of the active devices of `groups`, the same ones for the same seed,
    /// phase and serials: the devices ranked by a keyed hash of their serial, the first taken.
    async fn pick(&self, seed: u64, k: usize, groups: &[String], share: f64, errors: &mut Vec<String>) -> Vec<String> {
        let mut candidates = Vec::new();
        for group in groups {
            match self.active_devices(group).await {
                Ok(devices) => candidates.extend(devices),
                Err(e) => errors.push(e),
            }
        }
        pick_from(candidates, seed, k, share)
    }

    /// The active devices of `group`: (id, serial).
    pub async fn active_devices(&self, group: &str) -> Result<Vec<(String, String)>, String> {
        let mut devices = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let mut path = format!("/api/v1/devices?group={group}&limit={PAGE}");
            if let Some(after) = &after {
                path.push_str(&format!("&after={after}"));
            }
            let page = self.call(Method::GET, &path, None).await?;
            for device in page["devices"].as_array().into_iter().flatten() {
                if device["state"] == "active"
                    && let (Some(id), Some(serial)) = (device["id"].as_str(), device["serial"].as_str())
                {
                    devices.push((id.to_owned(), serial.to_owned()));
                }
            }
            match page["next_after"].as_str() {
                Some(next) => after = Some(next.to_owned()),
                None => return Ok(devices),
            }
        }
    }

    /// A campaign as the backend sees it.
    pub async fn campaign(&self, id: u64) -> Result<Value, String> {
        self.call(Method::GET, &format!("/api/v1/campaigns/{id}"), None).await
    }

    /// One API call; a non-2xx answer is an error naming the call and the backend's message.
    async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Value, String> {
        let what = format!("{method} {path}");
        match request_json(self.api, method, path, body).await {
            Ok((status, answer)) if (200..300).contains(&status) => Ok(answer),
            Ok((status, answer)) => Err(format!("{what}: {status} {}", answer["message"])),
            Err(e) => Err(format!("{what}: {e}")),
        }
    }
}

/// Picks `share` of `candidates` (id, serial) for phase `k`: ranked by a keyed hash of the
/// serial, the first taken.
fn pick_from(mut candidates: Vec<(String, String)>, seed: u64, k: usize, share: f64) -> Vec<String> {
    let key = seed ^ (k as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    candidates.sort_by_key(|(_, serial)| rank(key, serial));
    let take = (share * candidates.len() as f64).ceil() as usize;
    candidates.into_iter().take(take).map(|(id, _)| id).collect()
}

fn dedup(groups: &[String]) -> Vec<String> {
    let mut unique: Vec<String> = Vec::new();
    for group in groups {
        if !unique.contains(group) {
            unique.push(group.clone());
        }
    }
    unique
}

/// A keyed hash of a serial (FNV-1a, then a splitmix finish), to rank devices.
fn rank(key: u64, serial: &str) -> u64 {
    let mut h = 0xCBF2_9CE4_8422_2325 ^ key;
    for byte in serial.bytes() {
        h = (h ^ u64::from(byte)).wrapping_mul(0x0100_0000_01B3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94D0_49BB_1331_11EB);
    h ^ (h >> 31)
}

/// The image a campaign uploads: `size` bytes drawn from the seed and the phase, so the same
/// scenario uploads the same image (and a second run finds it already stored).
pub fn firmware_image(seed: u64, k: usize, size: u64) -> Vec<u8> {
    let mut image = vec![0u8; usize::try_from(size).unwrap_or(0)];
    let mut rng = device_rng(seed, u64::MAX, StreamId::phase(u32::try_from(k).unwrap_or(u32::MAX)));
    rng.fill_bytes(&mut image);
    image
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_depend_on_the_key_and_serial_only() {
        assert_eq!(rank(1, "SN-1"), rank(1, "SN-1"));
        assert_ne!(rank(1, "SN-1"), rank(2, "SN-1"));
        assert_ne!(rank(1, "SN-1"), rank(1, "SN-2"));
    }

    #[test]
    fn the_same_phase_uploads_the_same_image() {
        assert_eq!(firmware_image(7, 2, 1000), firmware_image(7, 2, 1000));
        assert_ne!(firmware_image(7, 2, 1000), firmware_image(7, 3, 1000));
        assert_eq!(firmware_image(7, 2, 1000).len(), 1000);
    }
}
