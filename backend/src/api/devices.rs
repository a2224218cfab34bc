//! `/api/v1/devices`: the registry's devices, and their decommissioning.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;

use super::ApiState;
use super::error::{ApiError, SERIAL_RULE};
use crate::registry::Refusal;

/// Largest page `GET /api/v1/devices` returns.
const MAX_PAGE: usize = 1000;

/// `GET /api/v1/devices` query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    group: Option<String>,
    after: Option<String>,
    limit: Option<usize>,
}

/// Lists devices by id, a page at a time (`after` is the last id of the previous page).
pub async fn list(
    State(state): State<ApiState>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Query(query) = query?;
    let limit = super::page_limit(query.limit, MAX_PAGE)?;
    let registry = state.registry.clone();
    let devices =
        tokio::task::spawn_blocking(move || registry.devices(query.group.as_deref(), query.after.as_deref(), limit))
            .await??;
    let next = (devices.len() == limit)
        .then(|| devices.last().map(|d| d.id.clone()))
        .flatten();
    Ok(Json(serde_json::json!({ "devices": devices, "next_after": next })))
}

/// One device, with its effective desired config and what it reported applying (the version,
/// its settings), whether it is connected now, when it was last seen and its last status
/// report (battery, firmware, uptime, link quality).
pub async fn show(State(state): State<ApiState>, Path(id): Path<String>) -> Result<Json<serde_json::Value>, ApiError> {
    let registry = state.registry.clone();
    let lookup = id.clone();
    let (device, config, reported) = tokio::task::spawn_blocking(move || {
        Ok::<_, crate::registry::RegistryError>((
            registry.device(&lookup)?,
            registry.effective_config(&lookup)?,
            registry.reported_config(&lookup)?,
        ))
    })
    .await??;
    let device = device.ok_or_else(|| ApiError::not_found(format!("no device \"{id}\"")))?;
    let online = state.gateway.sessions().is_live(&id);
    let presence = state.gateway.sessions().presence(&id).unwrap_or_default();
    Ok(Json(serde_json::json!({
        "device": device,
        "online": online,
        "last_seen_ms": presence.last_seen_ms,
        "status": presence.status,
        // Named as on MQTT (`config/desired` carries `{"version", "desired"}`).
        "config": config.as_ref().map(crate::gateway::topics::desired_config_body),
        // What the device last reported applying: the version and the settings it holds.
        "reported": reported,
    })))
}

/// Decommissions a device: credentials revoked, live session closed, desired config
/// deleted, recorded in the audit log. Its serial cannot provision again until released.
pub async fn decommission(State(state): State<ApiState>, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    let revoked = state
        .registry
        .decommission(&id)
        .await?
        .map_err(|refusal| ApiError::refused(refusal, &id))?;
    state
        .gateway
        .stats()
        .certs_revoked
        .fetch_add(revoked, std::sync::atomic::Ordering::Relaxed);
    state.gateway.sessions().evict(&id);
    state.gateway.monitor().forget(&id);
    Ok(StatusCode::NO_CONTENT)
}

/// Lets a decommissioned device's serial provision again (as a new identity).
pub async fn release(State(state): State<ApiState>, Path(serial): Path<String>) -> Result<StatusCode, ApiError> {
    state
        .registry
        .release_serial(&serial)
        .await?
        .map_err(|refusal| match refusal {
            // A serial's syntax is not a claim or group name's.
            Refusal::InvalidName => {
                ApiError::refused_with(refusal, format!("\"{serial}\" is not a valid serial: {SERIAL_RULE}"))
            }
            other => ApiError::refused(other, &serial),
        })?;
    Ok(StatusCode::NO_CONTENT)
}
