//! Desired config per group and per device: versioned, pushed to connected devices (and
//! kept in the registry, so a device that subscribes later gets it then, as a retained
//! message), and the drift between what devices should run and what they reported.

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::Publish;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::error::ApiError;
use super::{ApiState, Object};
use crate::gateway::sessions::expiry_instant;
use crate::gateway::topics;
use crate::registry::ConfigScope;

/// Devices read per page while pushing a group's config.
const PUSH_PAGE: usize = 1000;

/// The longest message expiry a desired config takes: a year.
const MAX_EXPIRY_S: u64 = 365 * 86_400;

/// `PUT .../config` body: the desired keys, and optionally how long the config is delivered
/// (MQTT 5's message expiry: past it, a device that was offline or subscribes later no
/// longer gets it).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DesiredBody {
    desired: Map<String, Value>,
    #[serde(default)]
    expiry_s: Option<u64>,
}

impl DesiredBody {
    /// The expiry in milliseconds, checked.
    fn expiry_ms(&self) -> Result<Option<u64>, ApiError> {
        match self.expiry_s {
            None => Ok(None),
            Some(s) if (1..=MAX_EXPIRY_S).contains(&s) => Ok(Some(s * 1000)),
            Some(s) => Err(ApiError::bad_request(format!(
                "expiry_s must be 1 to {MAX_EXPIRY_S} (a year), found {s}"
            ))),
        }
    }
}

/// Sets a group's desired config and pushes it to the group's devices.
pub async fn set_group(
    State(state): State<ApiState>,
    Path(group): Path<String>,
    body: Result<Json<Object<DesiredBody>>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(Object(body)) = body?;
    let expiry_ms = body.expiry_ms()?;
    let version = state
        .registry
        .set_desired_expiring(ConfigScope::Group(group.clone()), body.desired, expiry_ms)
        .await?
        .map_err(|refusal| ApiError::refused(refusal, &group))?;
    let mut pushed = 0u64;
    let mut after: Option<String> = None;
    loop {
        let registry = state.registry.clone();
        let (g, a) = (group.clone(), after.clone());
        let page = tokio::task::spawn_blocking(move || registry.devices(Some(&g), a.as_deref(), PUSH_PAGE)).await??;
        for device in &page {
            if push(&state, &device.id).await? {
                pushed += 1;
            }
        }
        if page.len() < PUSH_PAGE {
            break;
        }
        after = page.last().map(|d| d.id.clone());
    }
    Ok(Json(
        serde_json::json!({ "group": group, "version": version, "pushed": pushed }),
    ))
}

/// Sets one device's desired config (its keys override its group's) and pushes it.
pub async fn set_device(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    body: Result<Json<Object<DesiredBody>>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(Object(body)) = body?;
    let expiry_ms = body.expiry_ms()?;
    let version = state
        .registry
        .set_desired_expiring(ConfigScope::Device(id.clone()), body.desired, expiry_ms)
        .await?
        .map_err(|refusal| ApiError::refused(refusal, &id))?;
    let pushed = push(&state, &id).await?;
    Ok(Json(
        serde_json::json!({ "device": id, "version": version, "pushed": pushed }),
    ))
}

/// Sends a device its effective config if it is connected or has a persistent session;
/// true when it was handed over or queued.
async fn push(state: &ApiState, device_id: &str) -> Result<bool, ApiError> {
    let registry = state.registry.clone();
    let id = device_id.to_owned();
    let Some(config) = tokio::task::spawn_blocking(move || registry.effective_config(&id)).await?? else {
        return Ok(false);
    };
    let body = topics::desired_config_body(&config);
    // RETAIN stays 0: MQTT 3.1.1 section 3.3.1.3 sets it on a delivery only when a new
    // subscription caused it (the gateway does that on subscribe), never when forwarding to
    // an established one; devices that skip retained messages as stale still get updates.
    let publish = Publish::new(
        topics::config_desired(device_id),
        QoS::AtLeastOnce,
        body.to_string().into_bytes(),
    );
    let expires_at = expiry_instant(config.expires_at);
    let (delivery, _) = state
        .gateway
        .sessions()
        .deliver_expiring(device_id, publish, expires_at);
    Ok(delivery != crate::gateway::sessions::Delivery::Dropped)
}

/// `GET /api/v1/config/drift` query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DriftQuery {
    group: Option<String>,
}

/// Active devices whose reported config version differs from the desired one.
pub async fn drift(
    State(state): State<ApiState>,
    query: Result<Query<DriftQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) = query?;
    let registry = state.registry.clone();
    let drift = tokio::task::spawn_blocking(move || registry.config_drift(query.group.as_deref())).await??;
    Ok(Json(serde_json::json!({ "drift": drift })))
}
