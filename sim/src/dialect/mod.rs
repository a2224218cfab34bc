//! Backends as devices see them: one file per backend (`embedded`, `mqtt`; `hawkbit`,
//! `lwm2m`, `thingsboard` and `aws-iot` follow), each mapping the device's intents
//! (provision, connect, report) to that backend's protocol. [`Dialect`] is the closed set the
//! engine drives.

pub mod embedded;
pub mod hawkbit;
pub mod mqtt;

use std::net::{IpAddr, SocketAddr};

use embedded::{Credentials, Embedded, KEEP_ALIVE_S, ProvisionError, Request};
use hawkbit::Hawkbit;
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
    /// A hawkBit DDI server: devices poll over HTTP and hold no connection.
    Hawkbit(Hawkbit),
}

impl Dialect {
    /// Where devices connect.
    pub fn device_addr(&self) -> SocketAddr {
        match self {
            Self::Embedded(embedded) => embedded.mqtt,
            Self::Mqtt(broker) => broker.addr,
            Self::Hawkbit(ddi) => ddi.addr,
        }
    }

    /// The hawkBit server, when devices poll one instead of holding a connection.
    pub fn ddi(&self) -> Option<&Hawkbit> {
        match self {
            Self::Hawkbit(ddi) => Some(ddi),
            _ => None,
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
            Self::Hawkbit(ddi) => ddi.provision(identity, source).await,
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
            // Polling devices hold no connection; the driver never asks for one.
            Self::Hawkbit(_) => Err(TransportError::Protocol),
        }
    }

    /// Where the device publishes telemetry.
    pub fn telemetry_topic(&self, credentials: &Credentials, identity: Identity<'_>) -> String {
        match self {
            Self::Embedded(_) => format!("fleet/v1/d/{}/telemetry", credentials.device_id),
            Self::Mqtt(broker) => broker.telemetry_topic(identity),
            Self::Hawkbit(_) => String::new(),
        }
    }

    /// Whether provisioning goes over the network (and so has a latency worth recording).
    pub fn provisions(&self) -> bool {
        match self {
            Self::Embedded(_) => true,
            Self::Mqtt(_) => false,
            Self::Hawkbit(ddi) => ddi.management.is_some(),
        }
    }
}
