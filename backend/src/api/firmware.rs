//! Firmware: `PUT /api/v1/firmware/{version}` uploads an image (the raw bytes as the body),
//! `GET /api/v1/firmware` lists images, and `GET /firmware/{version}` is where devices
//! download from, with single-range `Range` requests so an interrupted download resumes.

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::ApiState;
use super::error::ApiError;
use crate::ota::firmware::FirmwareError;

/// Stores an image under a version; 201 when new, 200 when the same bytes were there.
pub async fn upload(
    State(state): State<ApiState>,
    Path(version): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let store = state.firmware.clone();
    let stored = tokio::task::spawn_blocking(move || store.store(&version, body)).await?;
    let (firmware, new) = stored.map_err(|e| match e {
        FirmwareError::Conflict(_) => ApiError::conflict("already_exists", e.to_string()),
        FirmwareError::Io { .. } => ApiError::unavailable(e.to_string()),
        other => ApiError::bad_request(other.to_string()),
    })?;
    let status = if new { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(serde_json::json!({ "firmware": firmware }))))
}

/// Every stored image (version, size, sha256).
pub async fn list(State(state): State<ApiState>) -> Json<Value> {
    Json(serde_json::json!({ "firmware": state.firmware.list() }))
}

/// Serves an image to a device, whole or one byte range.
pub async fn download(State(state): State<ApiState>, Path(version): Path<String>, headers: HeaderMap) -> Response {
    let Some(firmware) = state.firmware.get(&version) else {
        return ApiError::not_found(format!("no firmware \"{version}\"")).into_response();
    };
    let total = firmware.bytes.len();
    let etag = HeaderValue::from_str(&format!("\"{}\"", firmware.sha256)).ok();
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let (status, body, content_range) = match range.map(|r| parse_range(r, total)) {
        None => (StatusCode::OK, firmware.bytes, None),
        Some(Some((start, end))) => {
            let content_range = format!("bytes {start}-{}/{total}", end - 1);
            (
                StatusCode::PARTIAL_CONTENT,
                firmware.bytes.slice(start..end),
                Some(content_range),
            )
        }
        Some(None) => {
            let mut response = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
            if let Ok(value) = HeaderValue::from_str(&format!("bytes */{total}")) {
                response.headers_mut().insert(header::CONTENT_RANGE, value);
            }
            return response;
        }
    };
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Some(etag) = etag {
        headers.insert(header::ETAG, etag);
    }
    if let Some(value) = content_range.and_then(|c| HeaderValue::from_str(&c).ok()) {
        headers.insert(header::CONTENT_RANGE, value);
    }
    response
}

/// Parses a single `bytes=a-b`, `bytes=a-` or `bytes=-n` range against `total` bytes into a
/// half-open `[start, end)`; `None` when it cannot be satisfied (or is not a single range).
fn parse_range(header: &str, total: usize) -> Option<(usize, usize)> {
    let spec = header.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        // Multipart ranges are not offered; a resuming download asks for one range.
        return None;
    }
    let (first, last) = spec.split_once('-')?;
    let (start, end) = match (first.trim(), last.trim()) {
        ("", suffix) => {
            let n: usize = suffix.parse().ok()?;
            (total.checked_sub(n.min(total))?, total)
        }
        (first, "") => (first.parse().ok()?, total),
        (first, last) => {
            let last: usize = last.parse().ok()?;
            (first.parse().ok()?, last.checked_add(1)?.min(total))
        }
    };
    (start < end && start < total).then_some((start, end))
}

#[cfg(test)]
mod tests {
    use super::parse_range;

    #[test]
    fn ranges_follow_rfc_9110() {
        assert_eq!(parse_range("bytes=0-99", 1000), Some((0, 100)));
        assert_eq!(parse_range("bytes=500-", 1000), Some((500, 1000)));
        assert_eq!(parse_range("bytes=-100", 1000), Some((900, 1000)));
        assert_eq!(
            parse_range("bytes=900-2000", 1000),
            Some((900, 1000)),
            "the end is clamped"
        );
        assert_eq!(parse_range("bytes=1000-", 1000), None, "starts past the end");
        assert_eq!(parse_range("bytes=5-2", 1000), None);
        assert_eq!(parse_range("bytes=0-1,5-6", 1000), None);
        assert_eq!(parse_range("items=0-1", 1000), None);
    }
}
