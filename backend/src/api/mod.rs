//! The operator HTTP API (JSON): claims, devices, desired config and drift, remote commands,
//! firmware and OTA campaigns (and the firmware download devices use), decommissioning,
//! the audit log, `/healthz` and `/metrics`. Documented in `docs/backend-api.md`.

mod alerts;
mod campaigns;
mod certificates;
mod claims;
mod commands;
mod config;
mod devices;
pub mod error;
mod firmware;
mod ops;

use std::fmt;
use std::io;
use std::marker::PhantomData;

use axum::Router;
use axum::http::{Method, Uri};
use axum::routing::{delete, get, post, put};
use serde::de::value::MapAccessDeserializer;
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use error::ApiError;

use axum::extract::DefaultBodyLimit;

use crate::gateway::Gateway;
use crate::ota::campaign::CampaignRunner;
use crate::ota::firmware::{FirmwareStore, MAX_IMAGE_BYTES};
use crate::registry::Registry;

/// What every handler needs.
#[derive(Debug, Clone)]
pub struct ApiState {
    /// The device registry.
    pub registry: Registry,
    /// The gateway, to reach live devices.
    pub gateway: Gateway,
    /// Firmware images.
    pub firmware: FirmwareStore,
    /// Runs OTA campaigns.
    pub campaigns: CampaignRunner,
    /// Where devices download images from: `http://HOST:PORT/firmware`.
    pub download_base: String,
    /// Where devices connect (the gateway's bound address), for `/healthz`.
    pub mqtt_addr: String,
    /// Where devices connect over TLS, when the gateway has a TLS listener.
    pub mqtts_addr: Option<String>,
    /// Where LwM2M devices reach the backend, when it serves them.
    pub lwm2m_addr: Option<String>,
    /// Where LwM2M devices reach it over DTLS, if it serves them so.
    pub lwm2m_dtls_addr: Option<String>,
}

/// A listing's page size: 100 when not given, else 1 to `max`.
fn page_limit(limit: Option<usize>, max: usize) -> Result<usize, ApiError> {
    let limit = limit.unwrap_or(100);
    if (1..=max).contains(&limit) {
        Ok(limit)
    } else {
        Err(ApiError::bad_request(format!(
            "limit must be 1 to {max}, found {limit}"
        )))
    }
}

/// The API's routes.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/metrics", get(ops::metrics))
        .route("/api/v1/audit", get(ops::audit))
        .route("/api/v1/alert-rules", post(alerts::create).get(alerts::list))
        .route("/api/v1/alert-rules/{id}", delete(alerts::delete))
        .route("/api/v1/alerts", get(alerts::alerts))
        .route("/api/v1/claims", post(claims::create))
        .route("/api/v1/claims/{name}", delete(claims::revoke))
        .route("/api/v1/devices", get(devices::list))
        .route("/api/v1/devices/{id}", get(devices::show))
        .route("/api/v1/devices/{id}/decommission", post(devices::decommission))
        .route("/api/v1/devices/{id}/commands", post(commands::send))
        .route("/api/v1/devices/{id}/certificates", get(certificates::list))
        .route("/api/v1/devices/{id}/certificates/rotate", post(certificates::rotate))
        .route("/api/v1/commands/{id}", get(commands::show))
        .route("/api/v1/serials/{serial}/release", post(devices::release))
        .route("/api/v1/groups/{group}/config", put(config::set_group))
        .route("/api/v1/devices/{id}/config", put(config::set_device))
        .route("/api/v1/config/drift", get(config::drift))
        .route("/api/v1/firmware", get(firmware::list))
        .route(
            "/api/v1/firmware/{version}",
            put(firmware::upload).layer(DefaultBodyLimit::max(MAX_IMAGE_BYTES)),
        )
        .route("/firmware/{version}", get(firmware::download))
        .route("/api/v1/campaigns", post(campaigns::create))
        .route("/api/v1/campaigns/{id}", get(campaigns::show))
        .route("/api/v1/campaigns/{id}/halt", post(campaigns::halt))
        // Unknown paths and methods answer in the same JSON error format as everything else.
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method)
        .with_state(state)
}

async fn no_route(method: Method, uri: Uri) -> ApiError {
    ApiError::not_found(format!("no route for {method} {}", uri.path()))
}

async fn wrong_method(method: Method, uri: Uri) -> ApiError {
    ApiError::method_not_allowed(format!("{} does not accept {method}", uri.path()))
}

/// Serves the API on `listener` until `shutdown`.
pub async fn serve(listener: TcpListener, state: ApiState, shutdown: CancellationToken) -> io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

/// A request body that must be a JSON object. Derived `Deserialize` also accepts a struct's
/// fields as a positional array (`["lab", "s3cret"]`), which an API with named, optional and
/// defaulted fields should refuse as the wrong shape rather than guess at.
#[derive(Debug)]
pub struct Object<T>(pub T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor<T>(PhantomData<T>);

        impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectVisitor<T> {
            type Value = T;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map))
            }
        }

        deserializer.deserialize_map(ObjectVisitor(PhantomData)).map(Object)
    }
}
