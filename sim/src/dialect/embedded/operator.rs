//! The reference backend's operator API as the run's operator uses it: pushes desired config,
//! sends commands, uploads firmware and starts campaigns, decommissions devices; and, while
//! the run goes on, asks `/healthz` and follows the campaigns it started.
//!
//! Before each call the operator notes the time in the operator log, so devices answering the
//! backend measure from the operator's action.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use tokio::time::Instant;

use super::Embedded;
use super::summary::campaign_view;
use crate::dialect::alert_book::RuleMark;
use crate::dialect::phase::{firmware_image, pick};
use crate::dialect::{Operator, PhaseCx, Played, RaisedAlert, StartedCampaign};
use crate::report::figures::CampaignView;
use crate::scenario::typed::AlertRule;
use crate::scenario::{Action, Campaign};
use crate::transport::http::{Method, put_bytes, request_json};

/// Devices asked for per page when listing a group.
const PAGE: usize = 1000;

impl Operator for Embedded {
    fn operates(&self) -> bool {
        true
    }

    async fn play(&self, cx: PhaseCx<'_>) -> Played {
        let mut played = Played::default();
        let errors = &mut played.errors;
        played.detail = match &cx.phase.action {
            Action::Config { set } => self.push_config(&cx, set, errors).await,
            Action::Command { command, args, share } => {
                let picked = self.pick(&cx, *share, errors).await;
                self.send_commands(&cx, &picked, command, args, errors).await
            }
            Action::Ota(campaign) => {
                let started = self.start_campaigns(&cx, campaign, errors).await;
                let detail = json!(
                    started
                        .iter()
                        .map(|c| json!({"campaign": c.id, "group": c.group, "targeted": c.targeted}))
                        .collect::<Vec<_>>()
                );
                played.campaigns = started;
                detail
            }
            Action::Decommission { share } => {
                let picked = self.pick(&cx, *share, errors).await;
                let done = self.decommission(&cx, &picked, errors).await;
                played.decommissioned = done;
                json!({ "picked": picked.len(), "decommissioned": done })
            }
            Action::Rotate { share, grace } => {
                let picked = self.pick(&cx, *share, errors).await;
                let asked = self.rotate(&cx, &picked, *grace, errors).await;
                json!({ "picked": picked.len(), "asked": asked, "grace_s": grace.as_secs_f64() })
            }
            Action::Alert(rule) => self.set_alert_rule(&cx, *rule, errors).await,
            // Devices cut themselves off, and fall into faults, on their own; the engine
            // never asks.
            Action::Outage { .. } | Action::Fault { .. } => Value::Null,
        };
        played
    }

    /// The alerts the backend raised since audit entry `after`: from its audit log, which
    /// keeps every raise (a listing of the alerts in force would miss one cleared between
    /// two looks).
    async fn raised_alerts(&self, after: i64) -> Result<(Vec<RaisedAlert>, i64), String> {
        let path = format!("/api/v1/audit?after={after}&limit=1000&action=alert.raised");
        let answer = self.call(Method::GET, &path, None).await?;
        let mut last = after;
        let mut raised = Vec::new();
        for entry in answer["entries"].as_array().into_iter().flatten() {
            last = last.max(entry["id"].as_i64().unwrap_or(last));
            let (Some(rule), Some(device), Some(at_ms)) = (
                entry["detail"]["rule"].as_str(),
                entry["subject"].as_str(),
                entry["detail"]["raised_at_ms"].as_u64(),
            ) else {
                continue;
            };
            raised.push(RaisedAlert {
                rule: rule.to_owned(),
                device_id: device.to_owned(),
                at_ms,
            });
        }
        Ok((raised, last))
    }

    fn watched(&self) -> bool {
        true
    }

    async fn health(&self) -> Result<(), String> {
        match request_json(self.api, Method::GET, "/healthz", None).await {
            Ok((200, _)) => Ok(()),
            Ok((status, _)) => Err(format!("/healthz answered {status}")),
            Err(e) => Err(e.to_string()),
        }
    }

    async fn campaigns(&self, started: &[StartedCampaign]) -> Vec<CampaignView> {
        let mut views = Vec::with_capacity(started.len());
        for campaign in started {
            if let Ok(answer) = self.campaign(campaign.id).await {
                views.push(campaign_view(campaign, &answer));
            }
        }
        views
    }
}

impl Embedded {
    /// Sets the alert rule on the backend (for the phase's group, or every device) and notes
    /// it, so that devices say when it calls for an alert.
    async fn set_alert_rule(&self, cx: &PhaseCx<'_>, rule: AlertRule, errors: &mut Vec<String>) -> Value {
        let mut body = json!({ "kind": rule.kind() });
        match rule {
            AlertRule::BatteryBelow(below) => body["below"] = json!(below),
            AlertRule::OfflineFor(after) => body["after_s"] = json!(after.as_secs_f64()),
            AlertRule::ErrorCodes { at_least, within } => {
                body["at_least"] = json!(at_least);
                body["within_s"] = json!(within.as_secs_f64());
            }
            AlertRule::SensorStuck(reports) => body["reports"] = json!(reports),
        }
        if let Some(group) = &cx.phase.group {
            body["group"] = json!(group);
        }
        match self.call(Method::POST, "/api/v1/alert-rules", Some(&body)).await {
            Ok(answer) => {
                let id = answer["rule"]["id"].as_str().unwrap_or_default().to_owned();
                cx.log.alerts.set(RuleMark {
                    id: id.clone(),
                    rule,
                    group: cx.phase.group.clone(),
                });
                body["rule"] = json!(id);
                body
            }
            Err(e) => {
                errors.push(e);
                Value::Null
            }
        }
    }

    async fn push_config(&self, cx: &PhaseCx<'_>, set: &BTreeMap<String, Value>, errors: &mut Vec<String>) -> Value {
        let mut pushed = Vec::new();
        for group in cx.groups {
            cx.log.config_set(group, Instant::now());
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
        cx: &PhaseCx<'_>,
        devices: &[String],
        command: &str,
        args: &BTreeMap<String, Value>,
        errors: &mut Vec<String>,
    ) -> Value {
        let (mut sent, mut queued, mut undelivered) = (0u64, 0u64, 0u64);
        let read = (command == "read")
            .then(|| args.get("path").and_then(Value::as_str))
            .flatten();
        for id in devices {
            match read {
                Some(path) => cx.log.read_sent(id, path, Instant::now()),
                None => cx.log.command_sent(id, Instant::now()),
            }
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
        cx: &PhaseCx<'_>,
        campaign: &Campaign,
        errors: &mut Vec<String>,
    ) -> Vec<StartedCampaign> {
        let image = firmware_image(cx.scenario.seed, cx.index, &campaign.version, campaign.size_bytes);
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
        for group in cx.groups {
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
                        let campaign = StartedCampaign {
                            id,
                            group: group.clone(),
                            targeted,
                        };
                        // Told first, so the dashboard follows it from its first wave.
                        cx.log.campaign_started(campaign.clone());
                        started.push(campaign);
                    }
                    None => errors.push(format!("campaign: no id in {answer}")),
                },
                Err(e) => errors.push(e),
            }
        }
        started
    }

    async fn decommission(&self, cx: &PhaseCx<'_>, devices: &[String], errors: &mut Vec<String>) -> u64 {
        let mut done = 0;
        for id in devices {
            // Its next connect is a revoked device trying (`revoked.tried`).
            cx.log.revoked(id);
            match self
                .call(Method::POST, &format!("/api/v1/devices/{id}/decommission"), None)
                .await
            {
                Ok(_) => done += 1,
                Err(e) => {
                    cx.log.not_revoked(id);
                    errors.push(e);
                }
            }
        }
        done
    }

    /// Asks each device to rotate its certificate, the old one accepted for `grace` after the
    /// new one is issued; the time of each request noted first, for `rotate.latency`.
    async fn rotate(
        &self,
        cx: &PhaseCx<'_>,
        devices: &[String],
        grace: std::time::Duration,
        errors: &mut Vec<String>,
    ) -> u64 {
        let mut asked = 0;
        let body = json!({ "grace_s": grace.as_secs() });
        for id in devices {
            cx.log.rotation_asked(id, Instant::now());
            match self
                .call(
                    Method::POST,
                    &format!("/api/v1/devices/{id}/certificates/rotate"),
                    Some(&body),
                )
                .await
            {
                Ok(_) => asked += 1,
                Err(e) => errors.push(e),
            }
        }
        asked
    }

    /// Picks `share` of the active devices of the phase's groups, the same ones for the same
    /// seed, phase and serials.
    async fn pick(&self, cx: &PhaseCx<'_>, share: f64, errors: &mut Vec<String>) -> Vec<String> {
        let mut candidates = Vec::new();
        for group in cx.groups {
            match self.active_devices(group).await {
                Ok(devices) => candidates.extend(devices),
                Err(e) => errors.push(e),
            }
        }
        pick(candidates, cx.scenario.seed, cx.index, share)
    }

    /// The active devices of `group`: (id, serial).
    async fn active_devices(&self, group: &str) -> Result<Vec<(String, String)>, String> {
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
    pub(super) async fn campaign(&self, id: u64) -> Result<Value, String> {
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
