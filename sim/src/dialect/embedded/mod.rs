//! fleetsim's reference backend (`backend/`) as a dialect: started in this process or found
//! running elsewhere ([`backend`]); its devices provision by claim over MQTT and take their
//! config, commands and update jobs on their own topics ([`device`]) and answer commands from
//! what they keep of their own life ([`diary`]); its operator API plays
//! every phase ([`operator`]); at the end the run reads its campaigns and its count of active
//! devices ([`summary`]); and its `[backend]` keys are checked in [`keys`].

pub mod backend;
pub mod device;
pub mod diary;
pub mod keys;
pub mod operator;
pub mod summary;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

pub use device::{Credentials, Token, claim_name};

use super::tls::DeviceTls;
use super::{Dialect, Hosted, StartError, Started};
use crate::scenario::Scenario;
use crate::scenario::file::BackendKind;

/// The reference backend, as a run reaches it.
#[derive(Debug, Clone)]
pub struct Embedded {
    /// The device gateway's address.
    pub mqtt: SocketAddr,
    /// Its LwM2M front's address, when it serves one.
    pub lwm2m: Option<SocketAddr>,
    /// That front's DTLS listener, when the scenario's devices register over DTLS.
    pub lwm2m_dtls: Option<SocketAddr>,
    /// The operator API's address.
    pub api: SocketAddr,
    /// The secret of the run's claims.
    pub claim_secret: String,
    /// How devices speak TLS to the gateway, when it serves them over TLS (`mqtt` is then
    /// its TLS listener).
    pub tls: Option<Arc<DeviceTls>>,
}

impl Dialect for Embedded {
    const KIND: BackendKind = BackendKind::Embedded;

    fn start(scenario: &Scenario, out: &Path) -> Result<Started<Self>, StartError> {
        backend::start(scenario, out)
    }

    /// A scenario that names no backend gets one in the parent process, which every worker
    /// then drives (the shards of one run must share a backend).
    fn host(scenario: &Scenario, out: &Path) -> Result<Option<Hosted>, StartError> {
        if scenario.backend.api.is_some() {
            return Ok(None);
        }
        Ok(backend::start(scenario, out)?.hosted)
    }
}
