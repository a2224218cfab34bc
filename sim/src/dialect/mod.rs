//! Backends as devices see them: one file per backend (`embedded`, `mqtt`; `hawkbit`,
//! `lwm2m`, `thingsboard` and `aws-iot` follow), each mapping the device's intents
//! (provision, connect, report) to that backend's protocol. [`Dialect`] is the closed set the
//! engine drives.

pub mod embedded;
pub mod mqtt;

use std::net::{IpAddr, SocketAddr};

use embedded::{Credentials, Embedded, KEEP_ALIVE_S, ProvisionError, Request};
use mqtt::{Broker, Identity};

use crate::transport::mqtt::{MqttConn, TransportError};

/// What a device's connection is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Session {
    /// An always-connected device: a session the backend keeps, subscribed to what the
    /// backend sends it (config, commands, update jobs).
    Persistent,
    /// A duty-cycled device's wake: a clean session that only reports, then leaves.
    DutyCycle,
}

impl Session {
    /// The session a device of `model` opens.
    pub fn of(model: &crate::scenario::DeviceModel) -> Self {
        if model.telemetry.duty_cycle {
            Self::DutyCycle
        } else {
            Self::Persistent
        }
    }
}

/// The backend a run drives.
#[derive(Debug, Clone)]
pub enum Dialect {
    /// fleetsim's reference backend.
    Embedded(Embedded),
    /// Any MQTT broker.
    Mqtt(Broker),
}

impl Dialect {
    /// Where devices connect.
    pub fn device_addr(&self) -> SocketAddr {
        match self {
            Self::Embedded(embedded) => embedded.mqtt,
            Self::Mqtt(broker) => broker.addr,
        }
    }

    /// Gets a device its credentials: by claim from the reference backend, at once from a
    /// broker.
    pub async fn provision(
        &self,
        identity: Identity<'_>,
        firmware: &str,
        source: Option<IpAddr>,
    ) -> Result<Credentials, ProvisionError> {
        match self {
            Self::Embedded(embedded) => {
                let request = Request {
                    serial: identity.serial,
                    group: identity.group,
                    model: identity.model,
                    firmware,
                };
                embedded.provision(request, source).await
            }
            Self::Mqtt(broker) => Ok(broker.identify(identity)),
        }
    }

    /// Connects as the device, for a `session` of that kind.
    pub async fn connect(
        &self,
        credentials: &Credentials,
        identity: Identity<'_>,
        source: Option<IpAddr>,
        session: Session,
    ) -> Result<MqttConn, TransportError> {
        match self {
            Self::Embedded(embedded) => embedded.connect(credentials, source, session).await,
            Self::Mqtt(broker) => {
                broker
                    .connect(credentials, identity, source, KEEP_ALIVE_S, session)
                    .await
            }
        }
    }

    /// Where the device publishes telemetry.
    pub fn telemetry_topic(&self, credentials: &Credentials, identity: Identity<'_>) -> String {
        match self {
            Self::Embedded(_) => format!("fleet/v1/d/{}/telemetry", credentials.device_id),
            Self::Mqtt(broker) => broker.telemetry_topic(identity),
        }
    }

    /// Whether provisioning goes over the network (and so has a latency worth recording).
    pub fn provisions(&self) -> bool {
        matches!(self, Self::Embedded(_))
    }
}
