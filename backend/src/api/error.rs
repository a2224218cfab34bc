//! JSON errors: every refusal says what was wrong, as `{"error": code, "message": text}` with
//! a fitting status.

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::registry::{Refusal, RegistryError};

/// An API failure, rendered as JSON.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    /// A 400 with a message naming the bad input.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            code: "bad_request",
            message: message.into(),
        }
    }

    /// A 404 naming what was not found.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            code: "not_found",
            message: message.into(),
        }
    }

    /// A refusal from the registry: the request was understood but does not apply.
    pub fn refused(refusal: Refusal, subject: &str) -> Self {
        let (status, message) = match refusal {
            Refusal::InvalidName => (
                StatusCode::BAD_REQUEST,
                format!("\"{subject}\" is not a valid name: use 1-64 of a-z, 0-9 and '-'"),
            ),
            Refusal::InvalidSecret => (StatusCode::BAD_REQUEST, "the secret must be 1 to 256 bytes".to_owned()),
            Refusal::AlreadyExists => (StatusCode::CONFLICT, format!("\"{subject}\" already exists")),
            Refusal::NotFound => (StatusCode::NOT_FOUND, format!("\"{subject}\" was not found")),
            Refusal::AlreadyRevoked => (StatusCode::CONFLICT, format!("\"{subject}\" is already revoked")),
            Refusal::AlreadyDecommissioned => {
                (StatusCode::CONFLICT, format!("\"{subject}\" is already decommissioned"))
            }
            Refusal::NotDecommissioned => (
                StatusCode::CONFLICT,
                format!("\"{subject}\" has an active device: decommission it first"),
            ),
        };
        Self {
            status,
            code: refusal.as_str(),
            message,
        }
    }
}

impl From<RegistryError> for ApiError {
    fn from(error: RegistryError) -> Self {
        Self {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "registry_unavailable",
            message: error.to_string(),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        Self::bad_request(format!("request body: {}", rejection.body_text()))
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::bad_request(format!("query string: {}", rejection.body_text()))
    }
}

impl From<tokio::task::JoinError> for ApiError {
    fn from(error: tokio::task::JoinError) -> Self {
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "internal",
            message: error.to_string(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.code, "message": self.message });
        (self.status, Json(body)).into_response()
    }
}
