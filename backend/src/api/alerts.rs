//! Alert rules and alerts: `POST /api/v1/alert-rules` sets a rule, `GET` lists them,
//! `DELETE /api/v1/alert-rules/{id}` removes one (its alerts clear), and `GET
//! /api/v1/alerts` lists the alerts in force (`crate::monitor` raises and clears them).

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::ApiError;
use super::{ApiState, Object};
use crate::registry::RuleKind;

/// `POST /api/v1/alert-rules` body: `{"kind": "battery_below", "below": 0.2}`,
/// `{"kind": "offline_for", "after_s": 120}`, `{"kind": "error_codes", "at_least": 3,
/// "within_s": 600}` or `{"kind": "sensor_stuck", "reports": 5}`, each with an optional
/// `group`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewRule {
    kind: String,
    #[serde(default)]
    below: Option<f64>,
    #[serde(default)]
    after_s: Option<f64>,
    #[serde(default)]
    at_least: Option<u32>,
    #[serde(default)]
    within_s: Option<f64>,
    #[serde(default)]
    reports: Option<u32>,
    #[serde(default)]
    group: Option<String>,
}

impl NewRule {
    /// The rule asked for, or what is wrong with the request.
    fn kind(&self) -> Result<RuleKind, String> {
        let (kind, takes): (Option<RuleKind>, &[&str]) = match self.kind.as_str() {
            "battery_below" => (self.below.map(|below| RuleKind::BatteryBelow { below }), &["below"]),
            "offline_for" => (
                self.after_s.map(|after_s| RuleKind::OfflineFor { after_s }),
                &["after_s"],
            ),
            "error_codes" => (
                self.at_least
                    .zip(self.within_s)
                    .map(|(at_least, within_s)| RuleKind::ErrorCodes { at_least, within_s }),
                &["at_least", "within_s"],
            ),
            "sensor_stuck" => (
                self.reports.map(|reports| RuleKind::SensorStuck { reports }),
                &["reports"],
            ),
            other => {
                return Err(format!(
                    "kind must be one of {}, found \"{other}\"",
                    RuleKind::NAMES.map(|n| format!("\"{n}\"")).join(", ")
                ));
            }
        };
        let given = [
            ("below", self.below.is_some()),
            ("after_s", self.after_s.is_some()),
            ("at_least", self.at_least.is_some()),
            ("within_s", self.within_s.is_some()),
            ("reports", self.reports.is_some()),
        ];
        let foreign = given.iter().any(|(key, set)| *set && !takes.contains(key));
        match kind {
            Some(kind) if !foreign => Ok(kind),
            _ => Err(format!(
                "a {} rule takes {} and no other parameter",
                self.kind,
                takes
                    .iter()
                    .map(|k| format!("\"{k}\""))
                    .collect::<Vec<_>>()
                    .join(" and ")
            )),
        }
    }
}

/// Sets a rule; 201 with it.
pub async fn create(
    State(state): State<ApiState>,
    body: Result<Json<Object<NewRule>>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Json(Object(body)) = body?;
    let kind = body.kind().map_err(ApiError::bad_request)?;
    let rule = state
        .registry
        .create_alert_rule(kind, body.group.clone())
        .await?
        .map_err(|refusal| {
            let subject = match kind {
                RuleKind::BatteryBelow { below } => format!("below {below}: expected a level above 0, at most 1"),
                RuleKind::OfflineFor { after_s } => format!("after_s {after_s}: expected 0 to 86400"),
                RuleKind::ErrorCodes { at_least, within_s } => format!(
                    "at_least {at_least}, within_s {within_s}: expected 1 to 1000 reports within 0 to 86400 seconds"
                ),
                RuleKind::SensorStuck { reports } => format!("reports {reports}: expected 2 to 1000"),
            };
            match refusal {
                crate::registry::Refusal::InvalidName => {
                    ApiError::refused(refusal, body.group.as_deref().unwrap_or_default())
                }
                _ => ApiError::refused(refusal, &subject),
            }
        })?;
    state.gateway.monitor().reload()?;
    Ok((StatusCode::CREATED, Json(json!({ "rule": rule }))))
}

/// The rules in force, oldest first.
pub async fn list(State(state): State<ApiState>) -> Result<Json<Value>, ApiError> {
    let registry = state.registry.clone();
    let rules = tokio::task::spawn_blocking(move || registry.alert_rules()).await??;
    Ok(Json(json!({ "rules": rules })))
}

/// Deletes a rule; its alerts clear. 204; 404 when there is no such rule in force.
pub async fn delete(State(state): State<ApiState>, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    state
        .registry
        .delete_alert_rule(&id)
        .await?
        .map_err(|refusal| ApiError::refused(refusal, &id))?;
    state.gateway.monitor().reload()?;
    Ok(StatusCode::NO_CONTENT)
}

/// The alerts in force, by device then rule.
pub async fn alerts(State(state): State<ApiState>) -> Json<Value> {
    Json(json!({ "alerts": state.gateway.monitor().alerts() }))
}
