//! LwM2M servers as a backend (`kind = "lwm2m"`): devices speak LwM2M 1.0 over CoAP on UDP,
//! each from its own socket. A device registers with its objects, updates its registration
//! as its lifetime runs out and after every reconnect (from its new port), and answers the
//! server's Read, Write, Execute, Discover, Write-Attributes and Observe; its reports become
//! the notifications of what the server observes ([`device`]). The objects it exposes are in
//! [`objects`], the content formats it speaks in [`formats`].
//!
//! Two kinds of server ([`keys`]):
//! - **Any LwM2M server** (`url = "coap://IP:PORT"`): a device needs no provisioning (its
//!   endpoint name is its serial). Such a server is driven through its own API (the tests
//!   drive lwm2m-node-lib through a small Node wrapper), so only outages, which devices play
//!   themselves, run against one.
//! - **The reference backend's LwM2M front** (no url: started in this process; or `api`, a
//!   running `fleetsim backend --lwm2m`): a device provisions by claim over CoAP first, and
//!   the run's operator plays config pushes (Writes), reboots (Executes) and decommissioning
//!   through the backend's operator API, as it does for MQTT devices ([`Embedded`]'s).
//!
//! With `bootstrap = true` a device asks the server first where to register and with what
//! key (LwM2M's client-initiated bootstrap, [`bootstrap`]), after its provisioning by claim
//! against the reference backend, and registers where it was told.

pub mod bootstrap;
pub mod device;
pub mod formats;
pub mod keys;
pub mod objects;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use fleetsim_backend::registry::PskRoot;

use super::embedded::backend::{in_process_psk_root, psk_secret};
use super::embedded::{self, Embedded};
use super::{
    BackendView, Dialect, Hosted, Operator, PhaseCx, Played, RaisedAlert, StartError, Started, StartedCampaign,
    Summary, ViewCx, url_addr,
};
use crate::report::figures::CampaignView;
use crate::scenario::Scenario;
use crate::scenario::file::BackendKind;
use crate::transport::dtls::Psk;

/// An LwM2M server.
#[derive(Debug, Clone)]
pub struct Lwm2m {
    /// The server's address (the reference backend's: where devices provision, and register
    /// unless `secured`).
    pub addr: SocketAddr,
    /// The reference backend whose LwM2M front `addr` is, and whose operator API plays the
    /// phases; `None` for any other server.
    pub reference: Option<Embedded>,
    /// Where and with what keys devices register over DTLS (`[backend.psk]`).
    pub secured: Option<SecuredServer>,
    /// Devices bootstrap first (`bootstrap = true`): `addr` is their bootstrap server, which
    /// tells each where to register and with what key ([`bootstrap`]).
    pub bootstrap: bool,
}

/// A server devices register with over DTLS with pre-shared keys.
#[derive(Debug, Clone)]
pub struct SecuredServer {
    /// Its DTLS address.
    pub addr: SocketAddr,
    keys: FleetKeys,
}

/// Where a fleet's pre-shared keys come from.
#[derive(Clone)]
enum FleetKeys {
    /// Each device its own, made from a secret and its serial (as the reference backend
    /// makes them).
    Each(PskRoot),
    /// One key for every device.
    Shared(Arc<[u8]>),
}

impl std::fmt::Debug for FleetKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never a key.
        f.write_str(match self {
            Self::Each(_) => "FleetKeys::Each",
            Self::Shared(_) => "FleetKeys::Shared",
        })
    }
}

impl SecuredServer {
    /// Device `serial`'s identity and key.
    pub fn psk(&self, serial: &str) -> Psk {
        Psk {
            identity: serial.as_bytes().to_vec(),
            key: match &self.keys {
                FleetKeys::Each(root) => root.key(serial).into_bytes(),
                FleetKeys::Shared(key) => key.to_vec(),
            },
        }
    }
}

impl Lwm2m {
    /// Whether a scenario's devices speak to the reference backend's LwM2M front: no url (the
    /// backend in this process) or an operator api (a running one).
    pub fn is_reference(scenario: &Scenario) -> bool {
        scenario.backend.url.is_none() || scenario.backend.api.is_some()
    }
}

impl Dialect for Lwm2m {
    const KIND: BackendKind = BackendKind::Lwm2m;

    fn start(scenario: &Scenario, out: &Path) -> Result<Started<Self>, StartError> {
        if Self::is_reference(scenario) {
            let Started { dialect, hosted } = embedded::backend::start(scenario, out)?;
            let Some(addr) = dialect.lwm2m else {
                if let Some(hosted) = hosted {
                    hosted.stop();
                }
                return Err(StartError::Backend(format!(
                    "{}: the backend at {} serves no LwM2M front; start it with `fleetsim backend --lwm2m ADDR`",
                    scenario.file.display(),
                    scenario.backend.api.as_deref().unwrap_or("the api url"),
                )));
            };
            let secured = match &scenario.backend.psk {
                Some(psk) => {
                    let Some(dtls) = dialect.lwm2m_dtls else {
                        if let Some(hosted) = hosted {
                            hosted.stop();
                        }
                        return Err(StartError::Backend(format!(
                            "{}: the backend serves LwM2M without DTLS; start it with `fleetsim backend --lwm2m ADDR --lwm2m-dtls ADDR --lwm2m-psk-secret SECRET`",
                            scenario.file.display()
                        )));
                    };
                    let root = match (&psk.secret_env, scenario.backend.api.is_some()) {
                        (Some(name), true) => PskRoot::from_secret(psk_secret(name)?.as_bytes()),
                        _ => in_process_psk_root(scenario)?,
                    };
                    Some(SecuredServer {
                        addr: dtls,
                        keys: FleetKeys::Each(root),
                    })
                }
                None => None,
            };
            return Ok(Started {
                dialect: Lwm2m {
                    addr,
                    reference: Some(dialect),
                    secured,
                    bootstrap: scenario.backend.bootstrap == Some(true),
                },
                hosted,
            });
        }
        let url = scenario.backend.url.as_deref().unwrap_or_default();
        let scheme = if url.starts_with("coaps://") {
            "coaps://"
        } else {
            "coap://"
        };
        let addr = url_addr(url, scheme).ok_or_else(|| {
            StartError::Unsupported(format!(
                "{url}: fleetsim run needs an IP address and port in a {scheme} url so far"
            ))
        })?;
        let secured = match &scenario.backend.psk {
            Some(psk) => {
                let keys = match (&psk.secret_env, &psk.key_env) {
                    (Some(name), _) => FleetKeys::Each(PskRoot::from_secret(psk_secret(name)?.as_bytes())),
                    (None, Some(name)) => FleetKeys::Shared(psk_secret(name)?.into_bytes().into()),
                    (None, None) => {
                        return Err(StartError::Backend(
                            "[backend.psk]: name secret_env or key_env".to_owned(),
                        ));
                    }
                };
                Some(SecuredServer { addr, keys })
            }
            None => None,
        };
        Ok(Started {
            dialect: Lwm2m {
                addr,
                reference: None,
                secured,
                bootstrap: scenario.backend.bootstrap == Some(true),
            },
            hosted: None,
        })
    }

    /// A scenario that names no server gets the reference backend in the parent process,
    /// which every worker then drives, as for MQTT devices.
    fn host(scenario: &Scenario, out: &Path) -> Result<Option<Hosted>, StartError> {
        if scenario.backend.url.is_some() || scenario.backend.api.is_some() {
            return Ok(None);
        }
        Ok(embedded::backend::start(scenario, out)?.hosted)
    }
}

/// The reference backend's operator API plays the phases; another server has no operator here
/// ([`keys`] refuses the phases that would need one).
impl Operator for Lwm2m {
    fn operates(&self) -> bool {
        self.reference.is_some()
    }

    async fn play(&self, cx: PhaseCx<'_>) -> Played {
        match &self.reference {
            Some(reference) => reference.play(cx).await,
            None => Played {
                errors: vec!["fleetsim has no operator for this LwM2M server".to_owned()],
                ..Played::default()
            },
        }
    }

    fn watched(&self) -> bool {
        self.reference.is_some()
    }

    async fn raised_alerts(&self, after: i64) -> Result<(Vec<RaisedAlert>, i64), String> {
        match &self.reference {
            Some(reference) => reference.raised_alerts(after).await,
            None => Ok((Vec::new(), after)),
        }
    }

    async fn health(&self) -> Result<(), String> {
        match &self.reference {
            Some(reference) => reference.health().await,
            None => Ok(()),
        }
    }

    async fn campaigns(&self, started: &[StartedCampaign]) -> Vec<CampaignView> {
        match &self.reference {
            Some(reference) => reference.campaigns(started).await,
            None => Vec::new(),
        }
    }
}

/// The reference backend's view; nothing is read back from another server.
impl Summary for Lwm2m {
    async fn view(&self, cx: ViewCx<'_>) -> BackendView {
        match &self.reference {
            Some(reference) => reference.view(cx).await,
            None => BackendView::default(),
        }
    }
}
