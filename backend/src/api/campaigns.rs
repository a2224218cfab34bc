//! OTA campaigns: `POST /api/v1/campaigns` starts one, `GET /api/v1/campaigns/{id}` shows it
//! with its jobs counted per wave, `POST /api/v1/campaigns/{id}/halt` stops it.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::Value;

use super::error::ApiError;
use super::{ApiState, Object};
use crate::registry::Refusal;

/// The longest soak accepted: a day.
const MAX_SOAK_S: u64 = 86_400;

/// `POST /api/v1/campaigns` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewCampaign {
    group: String,
    version: String,
    /// Cumulative shares of the group after each wave, e.g. `[0.01, 0.1, 0.5, 1.0]`.
    waves: Vec<f64>,
    #[serde(default = "default_soak")]
    soak_s: u64,
    /// Halt when a wave's failed-or-rolled-back share passes this fraction.
    halt_above: f64,
}

fn default_soak() -> u64 {
    60
}

/// Starts a campaign.
pub async fn create(
    State(state): State<ApiState>,
    body: Result<Json<Object<NewCampaign>>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Json(Object(body)) = body?;
    if state.firmware.get(&body.version).is_none() {
        return Err(ApiError::not_found(format!(
            "no firmware \"{}\"; upload it first",
            body.version
        )));
    }
    let mut previous = 0.0;
    for wave in &body.waves {
        if !(*wave > previous && *wave <= 1.0) {
            return Err(ApiError::bad_request(format!(
                "waves must grow, each above the one before and at most 1, found {wave} after {previous}"
            )));
        }
        previous = *wave;
    }
    if body.waves.is_empty() {
        return Err(ApiError::bad_request(
            "waves must list at least one share, like [0.1, 1.0]",
        ));
    }
    if !(body.halt_above > 0.0 && body.halt_above <= 1.0) {
        return Err(ApiError::bad_request(format!(
            "halt_above must be above 0 and at most 1, found {}",
            body.halt_above
        )));
    }
    if body.soak_s > MAX_SOAK_S {
        return Err(ApiError::bad_request(format!(
            "soak_s must be at most {MAX_SOAK_S}, found {}",
            body.soak_s
        )));
    }
    let campaign = state
        .registry
        .start_campaign(
            &body.group,
            &body.version,
            body.waves,
            body.soak_s * 1000,
            body.halt_above,
        )
        .await?
        .map_err(|refusal| match refusal {
            Refusal::InvalidName => ApiError::refused_with(
                Refusal::InvalidName,
                format!(
                    "group \"{}\" is not a valid name: use 1-64 of a-z, 0-9 and '-'",
                    body.group
                ),
            ),
            other => ApiError::refused(other, &body.group),
        })?;
    state.campaigns.spawn(campaign.clone(), &state.download_base);
    Ok((StatusCode::CREATED, Json(serde_json::json!({ "campaign": campaign }))))
}

/// A campaign with its jobs per wave.
pub async fn show(
    State(state): State<ApiState>,
    id: Result<Path<u64>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path(id) = id?;
    let registry = state.registry.clone();
    let (campaign, waves) = tokio::task::spawn_blocking(move || {
        Ok::<_, crate::registry::RegistryError>((registry.campaign(id)?, registry.wave_counts(id)?))
    })
    .await??;
    let campaign = campaign.ok_or_else(|| ApiError::not_found(format!("no campaign {id}")))?;
    Ok(Json(serde_json::json!({ "campaign": campaign, "waves": waves })))
}

/// Halts a running campaign; devices already updating finish, no new wave starts.
pub async fn halt(State(state): State<ApiState>, id: Result<Path<u64>, PathRejection>) -> Result<StatusCode, ApiError> {
    let Path(id) = id?;
    if state
        .registry
        .end_campaign(id, true, "halted by an operator", true)
        .await?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::conflict(
            "not_running",
            format!("campaign {id} is not running"),
        ))
    }
}
