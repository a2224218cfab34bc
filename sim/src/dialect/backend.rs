//! What starting a backend gives the engine, and what the summary's view of it at the end
//! is given and gives back; the helpers the dialects' `start`s share.

use std::net::SocketAddr;

use serde_json::Value;

use super::StartedCampaign;
use crate::metrics::recorder::Snapshot;
use crate::report::figures::CampaignView;
use crate::scenario::Scenario;

/// A started backend, ready for the run.
pub struct Started<D> {
    /// How the run reaches it.
    pub dialect: D,
    /// The backend, when it runs in this process.
    pub hosted: Option<Hosted>,
}

/// A backend running in this process for the length of a run.
pub struct Hosted {
    /// What the run's command line names it by (`--backend`), for workers and shards.
    pub url: String,
    /// How to run it in a process of its own instead, for a person to read.
    pub own_process: &'static str,
    /// Stops it; `devices_active` is its count of active devices, read just before.
    stop: Box<dyn FnOnce() -> Option<u64> + Send>,
}

impl Hosted {
    /// A backend at `url`, stopped by `stop` (which returns its active devices first).
    pub fn new(url: String, own_process: &'static str, stop: impl FnOnce() -> Option<u64> + Send + 'static) -> Self {
        Self {
            url,
            own_process,
            stop: Box::new(stop),
        }
    }

    /// Stops the backend; returns the devices it held as active.
    pub fn stop(self) -> Option<u64> {
        (self.stop)()
    }
}

/// Why a backend could not be started or readied.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The scenario asks for something this version does not run.
    #[error("{0}")]
    Unsupported(String),
    /// The backend could not start, be reached or logged in to, or a secret is missing.
    #[error("{0}")]
    Backend(String),
    /// A file the scenario names (a CA certificate, a key) is not what it should be.
    #[error("{0}")]
    BadFile(String),
}

/// What the summary's view is given.
#[derive(Debug, Clone, Copy)]
pub struct ViewCx<'a> {
    /// The scenario's groups.
    pub groups: &'a [&'a str],
    /// The campaigns the operator started.
    pub campaigns: &'a [StartedCampaign],
    /// Whether this process played the operator (one shard of a sharded run does).
    pub operated: bool,
    /// What the devices measured, merged.
    pub snapshot: &'a Snapshot,
}

/// The backend's view at the end of a run.
#[derive(Debug, Default)]
pub struct BackendView {
    /// The campaigns the operator started, as the backend saw them.
    pub campaigns: Vec<CampaignView>,
    /// The devices the backend holds as active (for `devices.lost`).
    pub devices_active: Option<u64>,
    /// The dialect's section of `summary.json`, written under its kind's name.
    pub section: Option<Value>,
    /// Lines worth a person's attention (where the server and the devices disagree).
    pub notes: Vec<String>,
}

/// `SCHEME://IP:PORT[/...]` to a socket address: fleetsim runs take addresses, not names.
pub fn url_addr(url: &str, scheme: &str) -> Option<SocketAddr> {
    url.strip_prefix(scheme)?.split('/').next()?.parse().ok()
}

/// The value of the environment variable the scenario's `backend.<key>` names.
pub fn env_value(scenario: &Scenario, key: &str, var: Option<&str>) -> Result<String, StartError> {
    let file = scenario.file.display();
    let Some(var) = var else {
        return Err(StartError::Backend(format!(
            "backend: {file}: backend.{key} is missing: name the environment variable that holds it"
        )));
    };
    match std::env::var(var) {
        Ok(value) if !value.is_empty() => Ok(value),
        _ => Err(StartError::Backend(format!(
            "backend: {file}: backend.{key} names {var}, which is not set; export {var}=... before the run"
        ))),
    }
}
