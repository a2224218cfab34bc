//! A device's connection as its driver holds it: the lean MQTT connection, the credentials,
//! the QoS 1 publishes awaiting their PUBACK, and what the backend sent that the device must
//! act on (a desired config, a command, an update job).
//!
//! Design: [`Link::wait`] is the device's only blocking point between events. It answers
//! pings and acknowledgements itself (a PUBACK records its latency and wakes nobody) and
//! returns only what the device core must hear: its wake-up time came, the connection dropped,
//! or the backend sent something. Messages the core acts on are parsed here into small events;
//! what their answers need later (the command id, the job's URL and hash) stays in the link.

use std::collections::VecDeque;
use std::time::Duration;

use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::Publish;
use tokio::time::{Instant, sleep_until};

use super::download::Fetched;
use super::driver::ShardCtx;
use crate::device::{CommandKind, Event};
use crate::dialect::embedded::{Credentials, KEEP_ALIVE_S};
use crate::metrics::recorder::{Counter, Latency};
use crate::model::Image;
use crate::transport::mqtt::{Incoming, MqttConn, TransportError};

/// QoS 1 publishes awaiting their PUBACK, per device; past this the oldest is forgotten (its
/// latency lost, counted as a timeout) so a silent server cannot grow memory.
const INFLIGHT_LIMIT: usize = 8;

/// A connected device pings when it has sent nothing for half its keep-alive.
const PING_AFTER: Duration = Duration::from_secs(KEEP_ALIVE_S as u64 / 2);

/// The next packet on the connection; without one, never.
async fn next_incoming(conn: &mut Option<MqttConn>) -> Result<Option<Incoming>, TransportError> {
    match conn {
        Some(conn) => conn.incoming().await,
        None => std::future::pending().await,
    }
}

/// What a QoS 1 publish measures when its PUBACK comes.
#[derive(Debug, Clone, Copy)]
pub enum Awaited {
    /// Telemetry: `publish.latency` from the intended send time.
    Telemetry,
    /// A config report: `config.latency` from when the operator set it.
    Config,
    /// A command's answer: `command.latency` from when the operator sent it.
    Command,
    /// Anything else (OTA progress): nothing to record.
    Nothing,
}

/// An update job the backend sent.
#[derive(Debug, Clone)]
pub struct Job {
    /// The campaign it belongs to.
    pub campaign: u64,
    /// Where the image is.
    pub url: String,
    /// The image's hash, as the backend announced it.
    pub hash: ImageHash,
    /// Its size in bytes.
    pub size: u64,
    /// The firmware version.
    pub version: String,
}

/// An image's hash as a backend announces it, lowercase hex.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageHash {
    /// SHA-256 (the reference backend).
    Sha256(String),
    /// SHA-1 (hawkBit DDI servers such as goosebit).
    Sha1(String),
}

/// A device's connection and what it waits for on it.
#[derive(Debug)]
pub struct Link {
    /// The open connection, if any.
    pub conn: Option<MqttConn>,
    /// The credentials, once provisioned.
    pub credentials: Option<Credentials>,
    /// QoS 1 publishes: packet id, the time to measure from, what to record.
    inflight: VecDeque<(u16, Instant, Awaited)>,
    /// When anything was last sent (keep-alive pings go after half the keep-alive).
    last_sent: Instant,
    /// The command being answered: its id.
    pub command: Option<String>,
    /// The update in progress, or the last one (so a redelivered job is not taken twice).
    pub job: Option<Box<Job>>,
    /// When the device was provisioned: config set before it existed is not its latency.
    pub provisioned_at: Option<Instant>,
    /// The running download's hash state (boxed: only updating devices hold one).
    pub fetched: Option<Box<Fetched>>,
    /// A polling (hawkBit DDI) device's state between exchanges.
    pub ddi: Option<Box<super::ddi::DdiState>>,
}

impl Link {
    /// A device's link before it has credentials.
    pub fn new() -> Self {
        Self {
            conn: None,
            credentials: None,
            inflight: VecDeque::new(),
            last_sent: Instant::now(),
            command: None,
            job: None,
            provisioned_at: None,
            fetched: None,
            ddi: None,
        }
    }

    /// Adopts a fresh connection.
    pub fn connected(&mut self, conn: MqttConn) {
        self.conn = Some(conn);
        self.last_sent = Instant::now();
    }

    /// Publishes on `topic`; a QoS 1 publish records `awaited` from `since` at its PUBACK.
    /// Nothing happens without a connection. `Err` means the connection just dropped.
    pub async fn publish(
        &mut self,
        shard: &ShardCtx,
        topic: &str,
        payload: &[u8],
        qos: QoS,
        awaited: Awaited,
        since: Instant,
    ) -> Result<(), Event> {
        let Some(conn) = self.conn.as_mut() else { return Ok(()) };
        match conn.publish(topic, payload, qos).await {
            Ok(pkid) => {
                if matches!(awaited, Awaited::Telemetry) {
                    shard.count(Counter::Published);
                }
                self.last_sent = Instant::now();
                if qos == QoS::AtLeastOnce {
                    if self.inflight.len() >= INFLIGHT_LIMIT {
                        self.inflight.pop_front();
                        shard.count(Counter::ErrorsTimeout);
                    }
                    self.inflight.push_back((pkid, since, awaited));
                }
                Ok(())
            }
            Err(_) => {
                self.drop_conn();
                Err(Event::ConnectionLost)
            }
        }
    }

    /// Waits up to `limit` for the PUBACKs of what is in flight (recording their latencies),
    /// before a clean goodbye. Other packets are dropped: the device is leaving.
    pub async fn flush(&mut self, shard: &ShardCtx, limit: Duration) {
        let deadline = Instant::now() + limit;
        while !self.inflight.is_empty() {
            let Some(conn) = self.conn.as_mut() else { return };
            match tokio::time::timeout_at(deadline, conn.incoming()).await {
                Ok(Ok(Some(Incoming::PubAck(pkid)))) => self.acknowledged(shard, pkid),
                Ok(Ok(Some(_))) => {}
                Ok(Ok(None) | Err(_)) => return self.drop_conn(),
                Err(_) => {
                    shard.count(Counter::ErrorsTimeout);
                    return;
                }
            }
        }
    }

    /// Forgets the connection (it failed) and what waited on it.
    pub fn drop_conn(&mut self) {
        self.conn = None;
        self.inflight.clear();
    }

    /// Waits for the next event: the wake-up at `wake_at`, a lost connection, or a message the
    /// device acts on. Acknowledgements and pings are handled here without waking the core.
    ///
    /// Nothing here listens for the end of the run: the shard drops its device tasks then,
    /// which closes their sockets. An idle device's task holds this future for the whole run,
    /// so it holds one timer and the read, nothing more.
    pub async fn wait(&mut self, shard: &ShardCtx, wake_at: Instant) -> (Event, Instant) {
        loop {
            // One timer for both the wake and the keep-alive ping.
            let ping = self.conn.is_some() && self.last_sent + PING_AFTER < wake_at;
            let due = if ping { self.last_sent + PING_AFTER } else { wake_at };
            // Both branches are cancel-safe: `incoming` keeps partial bytes, sleeps lose nothing.
            let packet = tokio::select! {
                () = sleep_until(due) => None,
                packet = next_incoming(&mut self.conn) => Some(packet),
            };
            let Some(packet) = packet else {
                if !ping {
                    return (Event::Wake, wake_at);
                }
                // Boxed, as the acknowledgement below: rare next to waiting, so an idle
                // device's task does not hold their futures.
                let pinged = match self.conn.as_mut() {
                    Some(conn) => Box::pin(conn.ping()).await.is_ok(),
                    None => true,
                };
                if !pinged {
                    self.drop_conn();
                    return (Event::ConnectionLost, Instant::now());
                }
                self.last_sent = Instant::now();
                continue;
            };
            match packet {
                Ok(Some(Incoming::PubAck(pkid))) => self.acknowledged(shard, pkid),
                Ok(Some(Incoming::Publish(message))) => {
                    let (qos, pkid) = (message.qos, message.pkid);
                    let event = self.inbound(shard, &message);
                    drop(message);
                    if qos == QoS::AtLeastOnce
                        && let Some(conn) = self.conn.as_mut()
                        && Box::pin(conn.ack(pkid)).await.is_err()
                    {
                        self.drop_conn();
                        return (Event::ConnectionLost, Instant::now());
                    }
                    if let Some(event) = event {
                        return (event, Instant::now());
                    }
                }
                Ok(Some(Incoming::Other)) => {}
                Ok(None) | Err(_) => {
                    self.drop_conn();
                    return (Event::ConnectionLost, Instant::now());
                }
            }
        }
    }

    fn acknowledged(&mut self, shard: &ShardCtx, pkid: u16) {
        let Some(slot) = self.inflight.iter().position(|(id, _, _)| *id == pkid) else {
            return;
        };
        let Some((_, since, awaited)) = self.inflight.remove(slot) else {
            return;
        };
        if self.inflight.is_empty() {
            // An idle device keeps no buffer for publishes in flight.
            self.inflight = VecDeque::new();
        }
        let latency = match awaited {
            Awaited::Telemetry => Latency::Publish,
            Awaited::Config => Latency::Config,
            Awaited::Command => Latency::Command,
            Awaited::Nothing => return,
        };
        shard.record(latency, since);
    }

    /// A message from the backend, as an event for the core (`None` if it needs no action or
    /// does not parse; the latter is counted as a protocol error).
    fn inbound(&mut self, shard: &ShardCtx, message: &Publish) -> Option<Event> {
        let topic = message.topic.as_str();
        shard.count(Counter::Received);
        if !Inbound::acts_on(topic) {
            // A message on a topic the device subscribed to but has no behaviour for (a plain
            // broker's command topic): received and counted, nothing more.
            return None;
        }
        match Inbound::parse(topic, &message.payload) {
            Some(Inbound::Config { version }) => Some(Event::ConfigDesired { version }),
            Some(Inbound::Command { id, kind }) => {
                self.command = Some(id);
                Some(Event::Command(kind))
            }
            Some(Inbound::Job(job)) => {
                if self.job.as_ref().is_some_and(|held| held.campaign == job.campaign) {
                    // A redelivered job of the campaign already taken.
                    return None;
                }
                let image = shard.image_for(&job);
                self.job = Some(Box::new(job));
                shard.count(Counter::OtaJobs);
                Some(Event::OtaJob(image))
            }
            None => {
                shard.count(Counter::ErrorsProtocol);
                None
            }
        }
    }
}

impl Default for Link {
    fn default() -> Self {
        Self::new()
    }
}

/// A message the backend sends devices.
#[derive(Debug)]
enum Inbound {
    Config { version: u32 },
    Command { id: String, kind: CommandKind },
    Job(Job),
}

impl Inbound {
    /// Parses a message on the device's topics (docs/backend-api.md, "Device topics").
    /// Whether `topic` is one the device acts on (the reference backend's device topics).
    fn acts_on(topic: &str) -> bool {
        topic.ends_with("/config/desired") || topic.ends_with("/ota/job") || topic.contains("/cmd/")
    }

    fn parse(topic: &str, payload: &[u8]) -> Option<Self> {
        let body: serde_json::Value = serde_json::from_slice(payload).ok()?;
        if topic.ends_with("/config/desired") {
            let version = u32::try_from(body["version"].as_u64()?).ok()?;
            return Some(Self::Config { version });
        }
        if topic.ends_with("/ota/job") {
            return Some(Self::Job(Job {
                campaign: body["campaign"].as_u64()?,
                url: body["url"].as_str()?.to_owned(),
                hash: ImageHash::Sha256(body["sha256"].as_str()?.to_owned()),
                size: body["size"].as_u64()?,
                version: body["version"].as_str()?.to_owned(),
            }));
        }
        let (_, id) = topic.rsplit_once("/cmd/")?;
        let kind = CommandKind::parse(body["command"].as_str()?)?;
        Some(Self::Command {
            id: id.to_owned(),
            kind,
        })
    }
}

/// An image the scenario did not describe: the job's size, no risks of its own.
pub fn plain_image(size: u64) -> Image {
    Image {
        size_bytes: size,
        corrupt: 0.0,
        boot_fail: 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_messages_parse_into_events() {
        let config = Inbound::parse("fleet/v1/d/d-1/config/desired", br#"{"desired":{"a":1},"version":7}"#);
        assert!(matches!(config, Some(Inbound::Config { version: 7 })));
        let command = Inbound::parse(
            "fleet/v1/d/d-1/cmd/c-9",
            br#"{"args":{},"command":"reboot","id":"c-9"}"#,
        );
        assert!(matches!(command, Some(Inbound::Command { ref id, kind: CommandKind::Reboot }) if id == "c-9"));
        let job = Inbound::parse(
            "fleet/v1/d/d-1/ota/job",
            br#"{"campaign":3,"sha256":"ab","size":4096,"url":"http://127.0.0.1:9/firmware/2.0","version":"2.0"}"#,
        );
        assert!(matches!(
            job,
            Some(Inbound::Job(Job {
                campaign: 3,
                size: 4096,
                ..
            }))
        ));
        assert!(Inbound::parse("fleet/v1/d/d-1/cmd/c-1", br#"{"command":"dance"}"#).is_none());
        assert!(Inbound::parse("fleet/v1/d/d-1/config/desired", b"not json").is_none());
        assert!(Inbound::acts_on("fleet/v1/d/d-1/cmd/c-1"));
        assert!(!Inbound::acts_on("plant/meters/SM-1/commands"));
    }
}
