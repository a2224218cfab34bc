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

pub mod device;
pub mod formats;
pub mod keys;
pub mod objects;

use std::net::SocketAddr;
use std::path::Path;

use super::embedded::{self, Embedded};
use super::{
    BackendView, Dialect, Hosted, Operator, PhaseCx, Played, StartError, Started, StartedCampaign, Summary, ViewCx,
    url_addr,
};
use crate::report::figures::CampaignView;
use crate::scenario::Scenario;
use crate::scenario::file::BackendKind;

/// An LwM2M server.
#[derive(Debug, Clone)]
pub struct Lwm2m {
    /// The server's address.
    pub addr: SocketAddr,
    /// The reference backend whose LwM2M front `addr` is, and whose operator API plays the
    /// phases; `None` for any other server.
    pub reference: Option<Embedded>,
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
            return Ok(Started {
                dialect: Lwm2m {
                    addr,
                    reference: Some(dialect),
                },
                hosted,
            });
        }
        let url = scenario.backend.url.as_deref().unwrap_or_default();
        let addr = url_addr(url, "coap://").ok_or_else(|| {
            StartError::Unsupported(format!(
                "{url}: fleetsim run needs an IP address and port in a coap:// url so far"
            ))
        })?;
        Ok(Started {
            dialect: Lwm2m { addr, reference: None },
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
