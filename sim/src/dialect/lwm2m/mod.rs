//! Any LwM2M server as a backend (`kind = "lwm2m"`, `url = "coap://IP:PORT"`): devices speak
//! LwM2M 1.0 over CoAP on UDP, each from its own socket. A device needs no provisioning (its
//! endpoint name is its serial), registers with its objects, updates its registration as its
//! lifetime runs out and after every reconnect (from its new port), and answers the server's
//! Read, Write, Execute, Discover, Write-Attributes and Observe; its reports become the
//! notifications of what the server observes ([`device`]). The objects it exposes are in
//! [`objects`], the content formats it speaks in [`formats`].
//!
//! There is no operator side yet: a server of this kind is driven through its own API (the
//! tests drive lwm2m-node-lib through a small Node wrapper), so only outages, which devices
//! play themselves, run against one ([`keys`]).

pub mod device;
pub mod formats;
pub mod keys;
pub mod objects;

use std::net::SocketAddr;
use std::path::Path;

use super::{BackendView, Dialect, Operator, PhaseCx, Played, StartError, Started, Summary, ViewCx, url_addr};
use crate::scenario::Scenario;
use crate::scenario::file::BackendKind;

/// An LwM2M server.
#[derive(Debug, Clone)]
pub struct Lwm2m {
    /// The server's address.
    pub addr: SocketAddr,
}

impl Dialect for Lwm2m {
    const KIND: BackendKind = BackendKind::Lwm2m;

    fn start(scenario: &Scenario, _out: &Path) -> Result<Started<Self>, StartError> {
        let url = scenario.backend.url.as_deref().unwrap_or_default();
        let addr = url_addr(url, "coap://").ok_or_else(|| {
            StartError::Unsupported(format!(
                "{url}: fleetsim run needs an IP address and port in a coap:// url so far"
            ))
        })?;
        Ok(Started {
            dialect: Lwm2m { addr },
            hosted: None,
        })
    }
}

/// No operator API yet: the run starts no operator against an LwM2M server ([`keys`] refuses
/// the phases that would need one).
impl Operator for Lwm2m {
    fn operates(&self) -> bool {
        false
    }

    async fn play(&self, _cx: PhaseCx<'_>) -> Played {
        Played {
            errors: vec!["fleetsim has no operator for an LwM2M server yet".to_owned()],
            ..Played::default()
        }
    }
}

/// Nothing is read back from the server at the end.
impl Summary for Lwm2m {
    async fn view(&self, _cx: ViewCx<'_>) -> BackendView {
        BackendView::default()
    }
}
