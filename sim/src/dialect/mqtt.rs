//! Any MQTT broker as a backend: devices need no provisioning (the client id is the serial),
//! connect without credentials, subscribe to their command topic and publish telemetry to a
//! topic template. There is no operator side: a broker has no device-management API.

use std::net::{IpAddr, SocketAddr};

use super::Session;
use super::embedded::{Credentials, Token};
use rumqttc::mqttbytes::QoS;

use crate::transport::mqtt::{ConnectParams, MqttConn, TransportError};

/// The telemetry topic template when a scenario names none.
pub const DEFAULT_TELEMETRY_TOPIC: &str = "fleetsim/{group}/{serial}/telemetry";
/// The command topic template when a scenario names none.
pub const DEFAULT_COMMAND_TOPIC: &str = "fleetsim/{group}/{serial}/commands";

/// A broker and the topic devices publish to.
#[derive(Debug, Clone)]
pub struct Broker {
    /// The broker's address.
    pub addr: SocketAddr,
    /// The cluster's other nodes; devices spread over `addr` and these by a stable hash of
    /// their serial (the same node for a device in every run and whatever the shard count).
    pub cluster: Vec<SocketAddr>,
    /// Telemetry topic template (`{serial}`, `{index}`, `{model}`, `{group}`).
    pub telemetry_topic: String,
    /// Command topic template, subscribed to at each connect.
    pub command_topic: String,
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
        fill(&self.telemetry_topic, identity)
    }

    /// The device's command topic.
    pub fn command_topic(&self, identity: Identity<'_>) -> String {
        fill(&self.command_topic, identity)
    }

    /// Connects as the device (no login, clean session); an always-connected device also
    /// subscribes to its command topic.
    pub async fn connect(
        &self,
        credentials: &Credentials,
        identity: Identity<'_>,
        source: Option<IpAddr>,
        keep_alive_s: u16,
        session: Session,
    ) -> Result<MqttConn, TransportError> {
        let params = ConnectParams {
            client_id: &credentials.device_id,
            login: None,
            keep_alive_s,
            clean_session: true,
        };
        let (mut conn, _) = MqttConn::connect(self.node_for(identity.serial), source, params).await?;
        if session == Session::Persistent {
            // The SUBACK comes back through the device's reads, which ignore it.
            conn.subscribe(&[(&self.command_topic(identity), QoS::AtLeastOnce)])
                .await?;
        }
        Ok(conn)
    }
}

impl Broker {
    /// The cluster node device `serial` connects to: FNV-1a of the serial over the nodes.
    pub fn node_for(&self, serial: &str) -> SocketAddr {
        if self.cluster.is_empty() {
            return self.addr;
        }
        let hash = serial.bytes().fold(0xCBF2_9CE4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01B3)
        });
        let node = hash % (self.cluster.len() as u64 + 1);
        match node.checked_sub(1) {
            Some(k) => self.cluster.get(k as usize).copied().unwrap_or(self.addr),
            None => self.addr,
        }
    }
}

/// A topic template with a device's placeholders filled in.
fn fill(template: &str, identity: Identity<'_>) -> String {
    template
        .replace("{serial}", identity.serial)
        .replace("{index}", &identity.index.to_string())
        .replace("{model}", identity.model)
        .replace("{group}", identity.group)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_fill_every_placeholder() {
        let broker = Broker {
            addr: "127.0.0.1:1883".parse().expect("addr"),
            telemetry_topic: "t/{group}/{model}/{index}/{serial}".into(),
            command_topic: "c/{serial}".into(),
            cluster: Vec::new(),
        };
        let identity = Identity {
            serial: "TS-1",
            index: 7,
            model: "temp-sensor",
            group: "sensors",
        };
        assert_eq!(broker.telemetry_topic(identity), "t/sensors/temp-sensor/7/TS-1");
        assert_eq!(broker.command_topic(identity), "c/TS-1");
        assert_eq!(&*broker.identify(identity).device_id, "TS-1");
    }

    #[test]
    fn devices_spread_over_a_cluster_by_their_serial() {
        let node = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
        let broker = Broker {
            addr: node(1),
            telemetry_topic: "t".into(),
            command_topic: "c".into(),
            cluster: vec![node(2), node(3)],
        };
        let mut per_node = [0u32; 3];
        for i in 0..3000 {
            let serial = format!("SN-{i:016X}");
            let chosen = broker.node_for(&serial);
            assert_eq!(chosen, broker.node_for(&serial), "stable");
            per_node[usize::from(chosen.port() - 1)] += 1;
        }
        // Binomial(3000, 1/3): sd about 26; every node within 5 sd of 1000.
        assert!(per_node.iter().all(|n| n.abs_diff(1000) < 130), "{per_node:?}");
        let single = Broker {
            cluster: Vec::new(),
            ..broker
        };
        assert_eq!(single.node_for("SN-1"), node(1));
    }
}
