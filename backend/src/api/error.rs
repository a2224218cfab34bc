//! JSON errors: every refusal says what was wrong, as `{"error": code, "message": text}` with
//! a fitting status.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::registry::{Refusal, RegistryError};

/// Claim and group name syntax, as the registry checks it.
pub const NAME_RULE: &str = "use 1-64 of a-z, 0-9 and '-', not starting with '-'";

/// Serial syntax, as the registry checks it.
pub const SERIAL_RULE: &str = "use 1-64 of A-Z, a-z, 0-9, '.', '_' and '-'";

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

    /// A 405: the path exists, but not with this method.
    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::METHOD_NOT_ALLOWED,
            code: "method_not_allowed",
            message: message.into(),
        }
    }

    /// A 409 with a machine code.
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::CONFLICT,
            code,
            message: message.into(),
        }
    }

    /// A 503: storage failed.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "unavailable",
            message: message.into(),
        }
    }

    /// A refusal from the registry: the request was understood but does not apply.
    pub fn refused(refusal: Refusal, subject: &str) -> Self {
        let message = match refusal {
            Refusal::InvalidName => format!("\"{subject}\" is not a valid name: {NAME_RULE}"),
            Refusal::InvalidSecret => "the secret must be 1 to 256 bytes".to_owned(),
            Refusal::AlreadyExists => format!("\"{subject}\" already exists"),
            Refusal::NotFound => format!("\"{subject}\" was not found"),
            Refusal::AlreadyRevoked => format!("\"{subject}\" is already revoked"),
            Refusal::AlreadyDecommissioned => format!("\"{subject}\" is already decommissioned"),
            Refusal::NotDecommissioned => format!("\"{subject}\" has an active device: decommission it first"),
            Refusal::OutOfRange => format!("{subject}: out of range"),
        };
        Self::refused_with(refusal, message)
    }

    /// A refusal from the registry, with a message that says more than [`Self::refused`]
    /// can from one subject (which field was wrong, which syntax applies).
    pub fn refused_with(refusal: Refusal, message: impl Into<String>) -> Self {
        let status = match refusal {
            Refusal::InvalidName | Refusal::InvalidSecret | Refusal::OutOfRange => StatusCode::BAD_REQUEST,
            Refusal::NotFound => StatusCode::NOT_FOUND,
            Refusal::AlreadyExists
            | Refusal::AlreadyRevoked
            | Refusal::AlreadyDecommissioned
            | Refusal::NotDecommissioned => StatusCode::CONFLICT,
        };
        Self {
            status,
            code: refusal.as_str(),
            message: message.into(),
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

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        Self::bad_request(format!("path: {}", rejection.body_text()))
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
