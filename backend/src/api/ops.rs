//! Health, Prometheus metrics and the audit log.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::IntoResponse;
use serde::Deserialize;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use super::ApiState;
use super::error::ApiError;

/// Largest page of audit entries.
const MAX_AUDIT_PAGE: usize = 1000;

/// `GET /healthz`: 200 while the API serves, with the active device count and the device
/// gateway's address (so a client given only the API's URL finds where devices connect). The
/// count comes from memory: a check every half second must not scan a registry of millions.
pub async fn healthz(State(state): State<ApiState>) -> Json<serde_json::Value> {
    let counts = state.registry.counts();
    Json(serde_json::json!({
        "status": "ok",
        "devices_active": counts.active,
        "mqtt": state.mqtt_addr,
        "mqtts": state.mqtts_addr,
        "lwm2m": state.lwm2m_addr,
        "lwm2m_dtls": state.lwm2m_dtls_addr,
    }))
}

/// `GET /metrics`: gateway counters and registry counts, Prometheus text format.
pub async fn metrics(State(state): State<ApiState>) -> impl IntoResponse {
    let counts = state.registry.counts();
    let writer = state.registry.stats();
    let mut text = state.gateway.stats().prometheus();
    // The writer's tallies only grow: counters (their `_total` names say so), not gauges.
    let samples = [
        (
            "registry_devices_active",
            "devices that may connect",
            "gauge",
            counts.active,
        ),
        (
            "registry_devices_decommissioned",
            "decommissioned devices",
            "gauge",
            counts.decommissioned,
        ),
        (
            "registry_claims",
            "claims, revoked ones included",
            "gauge",
            counts.claims,
        ),
        (
            "gateway_alerts_raised_total",
            "alerts raised by the alert rules",
            "counter",
            state.gateway.monitor().raised.load(Ordering::Relaxed),
        ),
        (
            "gateway_alerts_cleared_total",
            "alerts cleared (the condition passed, the rule was deleted, the device retired)",
            "counter",
            state.gateway.monitor().cleared.load(Ordering::Relaxed),
        ),
        (
            "gateway_alerts_active",
            "alerts in force",
            "gauge",
            state.gateway.monitor().active_count() as u64,
        ),
        (
            "registry_write_batches_total",
            "group commits",
            "counter",
            writer.batches,
        ),
        (
            "registry_write_jobs_total",
            "writes committed in those batches",
            "counter",
            writer.jobs,
        ),
    ];
    for (name, help, kind, value) in samples {
        // Writing to a String cannot fail.
        let _ = writeln!(
            text,
            "# HELP fleetsim_{name} {help}\n# TYPE fleetsim_{name} {kind}\nfleetsim_{name} {value}"
        );
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}

/// `GET /api/v1/audit` query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    after: Option<i64>,
    limit: Option<usize>,
    /// Only the entries of this action (`alert.raised`, `command.sent`, ...).
    action: Option<String>,
}

/// Audit entries after an id, oldest first.
pub async fn audit(
    State(state): State<ApiState>,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Query(query) = query?;
    let limit = super::page_limit(query.limit, MAX_AUDIT_PAGE)?;
    let registry = state.registry.clone();
    let entries = tokio::task::spawn_blocking(move || {
        registry.audit_of(query.after.unwrap_or(0), limit, query.action.as_deref())
    })
    .await??;
    Ok(Json(serde_json::json!({ "entries": entries })))
}
