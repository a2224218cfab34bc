//! Any MQTT broker as a backend: devices need no provisioning (the client id is the serial),
//! connect without credentials, subscribe to their command topic and publish telemetry to a
//! topic template ([`device`]). There is no operator side: a broker has no device-management
//! API, so only outages (which devices play themselves) run against one ([`keys`]).

pub mod device;
pub mod keys;
pub mod topic;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

pub use topic::Topic;

use super::tls::DeviceTls;
use super::{BackendView, Dialect, Operator, PhaseCx, Played, StartError, Started, Summary, ViewCx, url_addr};
use crate::scenario::Scenario;
use crate::scenario::file::BackendKind;

/// The telemetry topic template when a scenario names none.
pub const DEFAULT_TELEMETRY_TOPIC: &str = "fleetsim/{group}/{serial}/telemetry";
/// The command topic template when a scenario names none.
pub const DEFAULT_COMMAND_TOPIC: &str = "fleetsim/{group}/{serial}/commands";

/// A broker and the topics devices use.
#[derive(Debug, Clone)]
pub struct Broker {
    /// The broker's address.
    pub addr: SocketAddr,
    /// The cluster's other nodes; devices spread over `addr` and these by a stable hash of
    /// their serial (the same node for a device in every run and whatever the shard count).
    pub cluster: Vec<SocketAddr>,
    /// Telemetry topic template (`{serial}`, `{index}`, `{model}`, `{group}`).
    pub telemetry_topic: Topic,
    /// Command topic template, subscribed to at each connect.
    pub command_topic: Topic,
    /// How devices speak TLS, for an `mqtts://` broker.
    pub tls: Option<Arc<DeviceTls>>,
}

impl Dialect for Broker {
    const KIND: BackendKind = BackendKind::Mqtt;

    fn start(scenario: &Scenario, _out: &Path) -> Result<Started<Self>, StartError> {
        let backend = &scenario.backend;
        let url = backend.url.as_deref().unwrap_or_default();
        let scheme = if url.starts_with("mqtts://") {
            "mqtts://"
        } else {
            "mqtt://"
        };
        let addr_of = |url: &str| {
            url_addr(url, scheme).ok_or_else(|| {
                StartError::Unsupported(format!(
                    "{url}: fleetsim run needs an IP address and port in an {scheme} url so far"
                ))
            })
        };
        let addr = addr_of(url)?;
        let tls = match &backend.tls {
            Some(section) => Some(Arc::new(DeviceTls::new(section, &addr.ip().to_string())?)),
            None => None,
        };
        let cluster = backend
            .cluster
            .iter()
            .flatten()
            .map(|node| addr_of(node))
            .collect::<Result<Vec<_>, _>>()?;
        let topic = |set: &Option<String>, default: &str| Topic::from(set.as_deref().unwrap_or(default));
        Ok(Started {
            dialect: Broker {
                addr,
                cluster,
                telemetry_topic: topic(&backend.telemetry_topic, DEFAULT_TELEMETRY_TOPIC),
                command_topic: topic(&backend.command_topic, DEFAULT_COMMAND_TOPIC),
                tls,
            },
            hosted: None,
        })
    }
}

/// A broker has no operator API: the run starts no operator against it ([`keys`] refuses
/// the phases that would need one).
impl Operator for Broker {
    fn operates(&self) -> bool {
        false
    }

    async fn play(&self, _cx: PhaseCx<'_>) -> Played {
        Played {
            errors: vec!["an MQTT broker has no operator API".to_owned()],
            ..Played::default()
        }
    }
}

/// A broker keeps no record of devices to read back at the end.
impl Summary for Broker {
    async fn view(&self, _cx: ViewCx<'_>) -> BackendView {
        BackendView::default()
    }
}
