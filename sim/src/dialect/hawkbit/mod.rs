//! A hawkBit DDI server (tested against goosebit, a real one) as a dialect. Devices poll at
//! the server's pace and hold no connection ([`device`], speaking [`ddi`]); with the server's
//! management API the operator registers devices, uploads each campaign's image as a SWUpdate
//! bundle ([`swu`]), starts rollouts and retires devices ([`operator`]); at the end the run
//! reads back what the server recorded and checks it against what the devices reported
//! (`summary.hawkbit`, [`summary`]). Its `[backend]` keys are checked in [`keys`].
//!
//! Design: a polling device holds no connection. Its "connect" opens nothing; each report is
//! a poll (`GET /{tenant}/controller/v1/{id}`), whose answer says how long to sleep and links
//! what the server wants: `configData` (the device must describe itself before it is offered
//! updates) and `deploymentBase/{action}` (an update).

pub mod ddi;
pub mod device;
pub mod keys;
pub mod operator;
pub mod summary;
pub mod swu;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

pub use ddi::{DdiAuth, ImposedSleep, Management};

use super::{Dialect, StartError, Started, env_value, url_addr};
use crate::scenario::Scenario;
use crate::scenario::file::{BackendKind, DeviceAuth};

/// The tenant of a scenario that names none.
pub const DEFAULT_TENANT: &str = "DEFAULT";

/// A hawkBit DDI server.
#[derive(Debug, Clone)]
pub struct Hawkbit {
    /// Where devices poll.
    pub addr: SocketAddr,
    /// The tenant in every DDI path.
    pub tenant: Arc<str>,
    /// How devices authenticate.
    pub auth: DdiAuth,
    /// The management API, when the run registers its targets there (each device's token
    /// and its group as the server's feed) and plays phases through it.
    pub management: Option<Management>,
    /// The polling intervals the server asked for, for the report.
    pub imposed: Arc<ImposedSleep>,
}

impl Dialect for Hawkbit {
    const KIND: BackendKind = BackendKind::Hawkbit;

    /// Device tokens from the scenario's secret, and with a management API, the operator
    /// logged in to it.
    fn start(scenario: &Scenario, _out: &Path) -> Result<Started<Self>, StartError> {
        let backend = &scenario.backend;
        let file = scenario.file.display();
        let addr_of = |url: &str| {
            url_addr(url, "http://").ok_or_else(|| {
                StartError::Unsupported(format!(
                    "{file}: {url}: fleetsim run needs an IP address and port in an http:// url so far"
                ))
            })
        };
        let addr = addr_of(backend.url.as_deref().unwrap_or_default())?;
        let secret = || env_value(scenario, "token_env", backend.token_env.as_deref());
        let auth = match backend.device_auth.unwrap_or(DeviceAuth::TargetToken) {
            DeviceAuth::TargetToken => DdiAuth::TargetToken(secret()?.into_bytes().into()),
            DeviceAuth::GatewayToken => DdiAuth::GatewayToken(secret()?.into()),
            DeviceAuth::None => DdiAuth::None,
        };
        let management = match &backend.api {
            Some(api_url) => {
                let api = addr_of(api_url)?;
                let user = env_value(scenario, "user_env", backend.user_env.as_deref())?;
                let password = env_value(scenario, "password_env", backend.password_env.as_deref())?;
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| StartError::Backend(format!("backend: {e}")))?;
                let authorization = rt
                    .block_on(operator::login(api, &user, &password))
                    .map_err(|e| StartError::Backend(format!("backend: {e}")))?;
                Some(Management {
                    addr: api,
                    authorization: authorization.into(),
                })
            }
            None => None,
        };
        Ok(Started {
            dialect: Hawkbit {
                addr,
                tenant: backend.tenant.as_deref().unwrap_or(DEFAULT_TENANT).into(),
                auth,
                management,
                imposed: Arc::default(),
            },
            hosted: None,
        })
    }
}
