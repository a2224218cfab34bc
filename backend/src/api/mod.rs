//! The operator HTTP API (JSON): claims, devices, desired config and drift, remote commands,
//! decommissioning,
//! the audit log, `/healthz` and `/metrics`. Documented in `docs/backend-api.md`.

mod claims;
mod commands;
mod config;
mod devices;
pub mod error;
mod ops;

use std::io;

use axum::Router;
use axum::routing::{delete, get, post, put};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::gateway::Gateway;
use crate::registry::Registry;

/// What every handler needs.
#[derive(Debug, Clone)]
pub struct ApiState {
    /// The device registry.
    pub registry: Registry,
    /// The gateway, to reach live devices.
    pub gateway: Gateway,
}

/// The API's routes.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/metrics", get(ops::metrics))
        .route("/api/v1/audit", get(ops::audit))
        .route("/api/v1/claims", post(claims::create))
        .route("/api/v1/claims/{name}", delete(claims::revoke))
        .route("/api/v1/devices", get(devices::list))
        .route("/api/v1/devices/{id}", get(devices::show))
        .route("/api/v1/devices/{id}/decommission", post(devices::decommission))
        .route("/api/v1/devices/{id}/commands", post(commands::send))
        .route("/api/v1/commands/{id}", get(commands::show))
        .route("/api/v1/serials/{serial}/release", post(devices::release))
        .route("/api/v1/groups/{group}/config", put(config::set_group))
        .route("/api/v1/devices/{id}/config", put(config::set_device))
        .route("/api/v1/config/drift", get(config::drift))
        .with_state(state)
}

/// Serves the API on `listener` until `shutdown`.
pub async fn serve(listener: TcpListener, state: ApiState, shutdown: CancellationToken) -> io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}
