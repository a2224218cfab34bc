//! Remote commands: `POST /api/v1/devices/{id}/commands` sends one, `GET
//! /api/v1/commands/{id}` shows where it stands (pending, succeeded, failed, timed_out).

use std::time::Duration;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::Publish;
use serde::Deserialize;
use serde_json::Value;

use super::error::ApiError;
use super::{ApiState, Object};
use crate::gateway::topics;
use crate::lwm2m::downlink::resource_path;
use crate::registry::{COMMAND_NAMES, Refusal};

/// Timeout of a command that does not set one.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest timeout accepted: a command older than this is history, not an operation.
const MAX_TIMEOUT: Duration = Duration::from_secs(3600);

/// `POST /api/v1/devices/{id}/commands` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewCommand {
    command: String,
    #[serde(default)]
    args: serde_json::Map<String, Value>,
    #[serde(default)]
    timeout_s: Option<u64>,
}

/// Records a command and hands it to the device (live, or queued in its persistent session).
pub async fn send(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    body: Result<Json<Object<NewCommand>>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Json(Object(body)) = body?;
    if !COMMAND_NAMES.contains(&body.command.as_str()) {
        return Err(ApiError::bad_request(format!(
            "command must be one of {}, found \"{}\"",
            COMMAND_NAMES.join(", "),
            body.command
        )));
    }
    if body.command == "read"
        && body
            .args
            .get("path")
            .and_then(Value::as_str)
            .and_then(resource_path)
            .is_none()
    {
        return Err(ApiError::bad_request(
            "a read names the LwM2M resource it reads: args.path, an object, instance and resource like \"/3/0/9\" (or \"/3/0\", \"/3\"), each 0 to 65535",
        ));
    }
    let timeout = body.timeout_s.map_or(DEFAULT_TIMEOUT, Duration::from_secs);
    if timeout.is_zero() || timeout > MAX_TIMEOUT {
        return Err(ApiError::bad_request(format!(
            "timeout_s must be 1 to {}, found {}",
            MAX_TIMEOUT.as_secs(),
            timeout.as_secs()
        )));
    }
    let args = Value::Object(body.args);
    let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
    let record = state
        .registry
        .send_command(&id, &body.command, args.clone(), timeout_ms)
        .await?
        .map_err(|refusal| match refusal {
            Refusal::NotFound => ApiError::not_found(format!("no active device \"{id}\"")),
            other => ApiError::refused(other, &id),
        })?;
    let message = serde_json::json!({ "id": record.id, "command": record.name, "args": args });
    let publish = Publish::new(
        topics::command(&id, &record.id),
        QoS::AtLeastOnce,
        message.to_string().into_bytes(),
    );
    let (delivery, _) = state.gateway.sessions().deliver(&id, publish);
    let delivery = delivery.as_str();
    let body = serde_json::json!({ "command": record, "delivery": delivery });
    Ok((StatusCode::ACCEPTED, Json(body)))
}

/// One command and, once answered, the device's result.
pub async fn show(State(state): State<ApiState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let registry = state.registry.clone();
    let lookup = id.clone();
    let record = tokio::task::spawn_blocking(move || registry.command(&lookup)).await??;
    let record = record.ok_or_else(|| ApiError::not_found(format!("no command \"{id}\"")))?;
    Ok(Json(serde_json::json!({ "command": record })))
}
