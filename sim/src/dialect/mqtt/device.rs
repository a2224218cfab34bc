//! A broker's devices: no provisioning (the client id is the serial), a clean session with
//! no login, a subscription to the device's command topic (whatever arrives there is received
//! and counted, nothing more: a broker's messages mean nothing to a device), and telemetry on
//! its topic template.

use std::net::SocketAddr;

use rumqttc::mqttbytes::QoS;

use super::Broker;
use crate::device::Event;
use crate::dialect::firmware::Attempt;
use crate::dialect::tls::mqtt_session;
use crate::dialect::{Answer, Arrival, DeviceCx, Devices, Fault, Inbox, Link, Provisioned, Report, Session};
use crate::transport::mqtt::{ConnectParams, V5Connect};

impl Broker {
    /// Writes device `cx`'s telemetry topic to `out`: the template filled in, the serial
    /// written straight into it. Written at each publish (into a scratch buffer) rather than
    /// kept, so an idle device holds no topic. What a report publishes on (and what
    /// `benches/mqtt_codec.rs` measures).
    pub fn write_device_telemetry_topic(&self, cx: &DeviceCx<'_>, out: &mut String) {
        self.telemetry_topic.write(cx, out);
    }

    /// Device `cx`'s command topic.
    pub fn command_topic(&self, cx: &DeviceCx<'_>) -> String {
        let mut topic = String::new();
        self.command_topic.write(cx, &mut topic);
        topic
    }
}

/// A broker's devices hold nothing of their own: their identity is their serial, computed
/// again when needed.
impl Devices for Broker {
    type Kept = ();
    type Device = ();

    fn device_addr(&self) -> SocketAddr {
        self.addr
    }

    fn wake(&self, _kept: Option<()>) {}

    fn keep(&self, _device: ()) -> Option<()> {
        Some(())
    }

    async fn provision(&self, _cx: &DeviceCx<'_>, _device: &mut ()) -> Result<Provisioned, Fault> {
        Ok(Provisioned::Given)
    }

    /// Connects as the device (no login; a clean session, unless an MQTT 5 model's broker keeps
    /// it), in the MQTT its model speaks; an always-connected device also subscribes to its
    /// command topic, in the CONNECT's write (its SUBACK comes back through the device's
    /// reads, which ignore it).
    async fn connect(&self, cx: &DeviceCx<'_>, _device: &mut (), session: Session) -> Result<Link, Fault> {
        let serial = cx.serial();
        let speech = &cx.model.mqtt;
        let command_topic = (session == Session::Persistent).then(|| self.command_topic(cx));
        let params = ConnectParams {
            // An empty client id asks an MQTT 5 broker to assign one.
            client_id: if speech.assigned_client_id { "" } else { &serial },
            login: None,
            keep_alive_s: speech.keep_alive_s,
            // An MQTT 5 device whose broker keeps its session resumes it (clean start off).
            clean_session: !(speech.v5 && speech.session_expiry_s > 0),
            v5: speech.v5.then_some(V5Connect {
                session_expiry_s: speech.session_expiry_s,
                user_properties: &speech.user_properties,
                topic_alias: speech.topic_alias,
            }),
            subscribe: command_topic.as_deref().map(|topic| (topic, QoS::AtLeastOnce)),
        };
        let (conn, _) = mqtt_session(self.tls.as_deref(), cx, self.node_for(&serial), params).await?;
        Ok(Link::stream(conn))
    }

    fn report<'a>(
        &'a self,
        cx: &DeviceCx<'a>,
        _device: &'a mut (),
        link: &'a mut Link,
        report: Report<'_>,
        inbox: &'a mut Inbox,
    ) -> impl Future<Output = ()> + use<'a> {
        let write_topic = |topic: &mut String| self.write_device_telemetry_topic(cx, topic);
        let properties = &cx.model.mqtt.telemetry_properties;
        link.publish_report(&cx.shared.meter, &write_topic, report, properties, inbox)
    }

    /// Nothing a broker sends asks for an answer.
    async fn answer(
        &self,
        _cx: &DeviceCx<'_>,
        _device: &mut (),
        _link: &mut Link,
        _answer: Answer,
        _inbox: &mut Inbox,
    ) {
    }

    /// A broker offers no updates.
    async fn download(&self, _cx: &DeviceCx<'_>, _device: &mut (), from: u64, _to: u64) -> Attempt {
        Attempt::Held(from)
    }

    /// A message on the command topic is received and counted (by the link), nothing more.
    fn read(&self, _cx: &DeviceCx<'_>, _device: &mut (), _link: &Link, _arrival: Arrival<'_>) -> Option<Event> {
        None
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_spread_over_a_cluster_by_their_serial() {
        let node = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
        let broker = Broker {
            addr: node(1),
            telemetry_topic: "t".into(),
            command_topic: "c".into(),
            cluster: vec![node(2), node(3)],
            tls: None,
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
