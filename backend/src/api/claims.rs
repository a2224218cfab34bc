//! `/api/v1/claims`: fleet claim credentials devices provision with.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;

use super::ApiState;
use super::error::ApiError;

/// `POST /api/v1/claims` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewClaim {
    name: String,
    secret: String,
    #[serde(default = "default_group")]
    default_group: String,
}

fn default_group() -> String {
    "default".to_owned()
}

/// Creates a claim; devices holding it may provision into its default group.
pub async fn create(
    State(state): State<ApiState>,
    body: Result<Json<NewClaim>, JsonRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let Json(claim) = body?;
    state
        .registry
        .create_claim(&claim.name, &claim.secret, &claim.default_group)
        .await?
        .map_err(|refusal| ApiError::refused(refusal, &claim.name))?;
    let body = serde_json::json!({ "name": claim.name, "default_group": claim.default_group });
    Ok((StatusCode::CREATED, Json(body)))
}

/// Revokes a claim: no new device can provision with it (devices already provisioned keep
/// their own credentials).
pub async fn revoke(State(state): State<ApiState>, Path(name): Path<String>) -> Result<StatusCode, ApiError> {
    state
        .registry
        .revoke_claim(&name)
        .await?
        .map_err(|refusal| ApiError::refused(refusal, &name))?;
    Ok(StatusCode::NO_CONTENT)
}
