//! Any MQTT broker as a backend: devices need no provisioning (the client id is the serial),
//! connect without credentials, and publish telemetry to a topic template. There is no
//! operator side: a broker has no device-management API.

use std::net::{IpAddr, SocketAddr};

use super::embedded::{Credentials, Token};
use crate::transport::mqtt::{ConnectParams, MqttConn, TransportError};

/// The topic template when a scenario names none.
pub const DEFAULT_TELEMETRY_TOPIC: &str = "fleetsim/{group}/{serial}/telemetry";

/// A broker and the topic devices publish to.
#[derive(Debug, Clone)]
pub struct Broker {
    /// The broker's address.
    pub addr: SocketAddr,
    /// Telemetry topic template (`{serial}`, `{index}`, `{model}`, `{group}`).
    pub telemetry_topic: String,
}

/// What fills a topic template's placeholders for one device.
#[derive(Debug, Clone, Copy)]
pub struct Identity<'a> {
    /// The device's serial.
    pub serial: &'a str,
    /// Its index in the fleet.
    pub index: u64,
    /// Its model's name.
    pub model: &'a str,
    /// Its group.
    pub group: &'a str,
}

impl Broker {
    /// The device's "credentials": its serial as client id, no password.
    pub fn identify(&self, identity: Identity<'_>) -> Credentials {
        Credentials {
            device_id: identity.serial.into(),
            token: Token::Text("".into()),
        }
    }

    /// The device's telemetry topic: the template filled in. Built at each publish rather
    /// than kept, so an idle device holds no topic.
    pub fn telemetry_topic(&self, identity: Identity<'_>) -> String {
        self.telemetry_topic
            .replace("{serial}", identity.serial)
            .replace("{index}", &identity.index.to_string())
            .replace("{model}", identity.model)
            .replace("{group}", identity.group)
    }

    /// Connects as the device (no login).
    pub async fn connect(
        &self,
        credentials: &Credentials,
        source: Option<IpAddr>,
        keep_alive_s: u16,
    ) -> Result<MqttConn, TransportError> {
        let params = ConnectParams {
            client_id: &credentials.device_id,
            login: None,
            keep_alive_s,
            clean_session: true,
        };
        MqttConn::connect(self.addr, source, params).await.map(|(conn, _)| conn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_fill_every_placeholder() {
        let broker = Broker {
            addr: "127.0.0.1:1883".parse().expect("addr"),
            telemetry_topic: "t/{group}/{model}/{index}/{serial}".into(),
        };
        let identity = Identity {
            serial: "TS-1",
            index: 7,
            model: "temp-sensor",
            group: "sensors",
        };
        assert_eq!(broker.telemetry_topic(identity), "t/sensors/temp-sensor/7/TS-1");
        assert_eq!(&*broker.identify(identity).device_id, "TS-1");
    }
}
