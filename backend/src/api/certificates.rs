//! `/api/v1/devices/{id}/certificates`: the certificates the backend's CA issued a device, and
//! `.../certificates/rotate`, which asks the device for a new one.

use std::time::Duration;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::Publish;
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::ApiError;
use super::{ApiState, Object};
use crate::gateway::topics;
use crate::registry::Refusal;

/// Grace period of a rotation that names none.
const DEFAULT_GRACE: Duration = Duration::from_secs(60);

/// Longest grace period: a rotation that never revokes the old certificate is none.
const MAX_GRACE: Duration = Duration::from_secs(30 * 86_400);

/// `POST /api/v1/devices/{id}/certificates/rotate` body.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rotation {
    #[serde(default)]
    grace_s: Option<u64>,
}

/// The device's certificates, oldest first, each with its state now (`active` or `revoked`).
pub async fn list(State(state): State<ApiState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let registry = state.registry.clone();
    let lookup = id.clone();
    let (device, certificates) = tokio::task::spawn_blocking(move || {
        Ok::<_, crate::registry::RegistryError>((registry.device(&lookup)?, registry.certificates(&lookup)?))
    })
    .await??;
    if device.is_none() {
        return Err(ApiError::not_found(format!("no device \"{id}\"")));
    }
    Ok(Json(json!({ "certificates": certificates })))
}

/// Asks an active device to rotate: recorded (audit `certificate.rotation_requested`), then
/// sent on `fleet/v1/d/{id}/cert/rotate` (queued while it is offline). Its next certificate
/// request replaces its certificates, which stop being accepted `grace_s` after the new one
/// is issued. 202 with how it was delivered.
pub async fn rotate(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    body: Result<Json<Object<Rotation>>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Json(Object(rotation)) = body?;
    let grace = rotation.grace_s.map_or(DEFAULT_GRACE, Duration::from_secs);
    if grace > MAX_GRACE {
        return Err(ApiError::bad_request(format!(
            "grace_s must be 0 to {}, found {}",
            MAX_GRACE.as_secs(),
            grace.as_secs()
        )));
    }
    let grace_ms = u64::try_from(grace.as_millis()).unwrap_or(u64::MAX);
    state
        .registry
        .request_rotation(&id, grace_ms)
        .await?
        .map_err(|refusal| match refusal {
            Refusal::NotFound => ApiError::not_found(format!("no active device \"{id}\"")),
            other => ApiError::refused(other, &id),
        })?;
    let message = json!({ "grace_s": grace.as_secs() });
    let publish = Publish::new(
        topics::cert_rotate(&id),
        QoS::AtLeastOnce,
        message.to_string().into_bytes(),
    );
    let (delivery, _) = state.gateway.sessions().deliver(&id, publish);
    let delivery = delivery.as_str();
    let body = json!({ "device": id, "grace_s": grace.as_secs(), "delivery": delivery });
    Ok((StatusCode::ACCEPTED, Json(body)))
}
