//! A broker's devices: no provisioning (the client id is the serial), a clean session with
//! no login, a subscription to the device's command topic (whatever arrives there is received
//! and counted, nothing more: a broker's messages mean nothing to a device), and telemetry on
//! its topic template.

use std::fmt::Write as _;
use std::net::SocketAddr;

use rumqttc::mqttbytes::QoS;

use super::Broker;
use crate::device::Event;
use crate::dialect::firmware::Attempt;
use crate::dialect::tls::mqtt_session;
use crate::dialect::{Answer, Arrival, DeviceCx, Devices, Fault, Inbox, Link, Provisioned, Report, Session};
use crate::scratch;
use crate::transport::mqtt::{ConnectParams, V5Connect};

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
    /// Writes the device's telemetry topic to `out`: the template filled in. Written at each
    /// publish (into a scratch buffer) rather than kept, so an idle device holds no topic.
    pub fn write_telemetry_topic(&self, identity: Identity<'_>, out: &mut String) {
        fill(&self.telemetry_topic, identity, out);
    }

    /// Writes device `cx`'s telemetry topic to `out`: the hot path, its serial written into a
    /// scratch buffer, nothing allocated. What a report publishes on (and what
    /// `benches/mqtt_codec.rs` measures).
    pub fn write_device_telemetry_topic(&self, cx: &DeviceCx<'_>, out: &mut String) {
        let mut serial = scratch::string();
        cx.write_serial(&mut serial);
        self.write_telemetry_topic(identity(cx, &serial), out);
        scratch::give_string(serial);
    }

    /// The device's command topic.
    pub fn command_topic(&self, identity: Identity<'_>) -> String {
        let mut topic = String::new();
        fill(&self.command_topic, identity, &mut topic);
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
        let command_topic = (session == Session::Persistent).then(|| self.command_topic(identity(cx, &serial)));
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

    async fn report(
        &self,
        cx: &DeviceCx<'_>,
        _device: &mut (),
        link: &mut Link,
        report: Report<'_>,
        inbox: &mut Inbox,
    ) {
        let write_topic = |topic: &mut String| self.write_device_telemetry_topic(cx, topic);
        let properties = &cx.model.mqtt.telemetry_properties;
        link.publish_report(&cx.shared.meter, write_topic, report, properties, inbox)
            .await;
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

/// What fills the topic templates of device `cx`, whose serial is `serial`.
fn identity<'a>(cx: &'a DeviceCx<'_>, serial: &'a str) -> Identity<'a> {
    Identity {
        serial,
        index: cx.index,
        model: &cx.model.name,
        group: cx.group,
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

/// Writes a topic template with a device's placeholders filled in to `out`; a brace that
/// opens no placeholder is written as it is.
fn fill(template: &str, identity: Identity<'_>, out: &mut String) {
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let (before, from) = rest.split_at(open);
        out.push_str(before);
        rest = if let Some(after) = from.strip_prefix("{serial}") {
            out.push_str(identity.serial);
            after
        } else if let Some(after) = from.strip_prefix("{index}") {
            // Writing into a String cannot fail.
            let _ = write!(out, "{}", identity.index);
            after
        } else if let Some(after) = from.strip_prefix("{model}") {
            out.push_str(identity.model);
            after
        } else if let Some(after) = from.strip_prefix("{group}") {
            out.push_str(identity.group);
            after
        } else {
            out.push('{');
            &from[1..]
        };
    }
    out.push_str(rest);
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
            tls: None,
        };
        let identity = Identity {
            serial: "TS-1",
            index: 7,
            model: "temp-sensor",
            group: "sensors",
        };
        let mut telemetry = String::new();
        broker.write_telemetry_topic(identity, &mut telemetry);
        assert_eq!(telemetry, "t/sensors/temp-sensor/7/TS-1");
        assert_eq!(broker.command_topic(identity), "c/TS-1");
        let mut out = String::new();
        fill("{a}/{serial}{{index}}/{", identity, &mut out);
        assert_eq!(out, "{a}/TS-1{7}/{", "braces that open no placeholder stay");
    }

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
