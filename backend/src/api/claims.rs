//! `/api/v1/claims`: fleet claim credentials devices provision with.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;

use super::error::{ApiError, NAME_RULE};
use super::{ApiState, Object};
use crate::registry::Refusal;

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
    body: Result<Json<Object<NewClaim>>, JsonRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let Json(Object(claim)) = body?;
    state
        .registry
        .create_claim(&claim.name, &claim.secret, &claim.default_group)
        .await?
        .map_err(|refusal| match refusal {
            // The registry checks both names and does not say which one failed.
            Refusal::InvalidName => invalid_names(&claim.name, &claim.default_group),
            other => ApiError::refused(other, &claim.name),
        })?;
    let body = serde_json::json!({ "name": claim.name, "default_group": claim.default_group });
    Ok((StatusCode::CREATED, Json(body)))
}

/// Names the field or fields that break the name syntax. The check here mirrors the
/// registry's, which decides; should the two ever disagree, both fields are named.
fn invalid_names(name: &str, group: &str) -> ApiError {
    let valid = |s: &str| {
        (1..=64).contains(&s.len())
            && !s.starts_with('-')
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    let fields = [("name", name), ("default_group", group)];
    let mut bad: Vec<String> = fields
        .iter()
        .filter(|(_, value)| !valid(value))
        .map(|(field, value)| format!("{field} \"{value}\""))
        .collect();
    if bad.is_empty() {
        bad = fields
            .iter()
            .map(|(field, value)| format!("{field} \"{value}\""))
            .collect();
    }
    let verb = if bad.len() == 1 {
        "is not a valid name"
    } else {
        "are not valid names"
    };
    ApiError::refused_with(
        Refusal::InvalidName,
        format!("{} {verb}: {NAME_RULE}", bad.join(" and ")),
    )
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
