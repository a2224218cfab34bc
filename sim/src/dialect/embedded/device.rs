//! The reference backend's device side: provisioning by claim over MQTT
//! (`fleet/v1/provision/{serial}`), then the device's own connection with the id and token it
//! was issued, telemetry on `fleet/v1/d/{id}/telemetry`, the subscriptions that bring it
//! desired config, commands and update jobs, and its answers on its own topics
//! (docs/backend-api.md, "Device topics").
//!
//! Groups: the backend puts a device in its claim's default group, so each scenario group has
//! its own claim, `fleetsim-{group}` ([`claim_name`]), all with the run's one secret.
//! An always-connected device's session is persistent (clean session off), so commands and
//! jobs sent while it is offline reach it when it is back, as the backend promises. A
//! duty-cycled device opens a clean session at each wake, reports and leaves.

use std::fmt::Write as _;
use std::net::SocketAddr;

use rumqttc::mqttbytes::QoS;
use tokio::time::Instant;

use super::Embedded;
use super::diary::{Diary, Pending};
use crate::device::{Action, Actions, CommandKind, Event, OtaReport, SimTime, State};
use crate::dialect::alert_book::unix_ms_now;
use crate::dialect::firmware::{Attempt, ImageHash, Job, Update};
use crate::dialect::link::Awaited;
use crate::dialect::tls::{DeviceTls, Issued, mqtt_session};
use crate::dialect::{Answer, Arrival, DeviceCx, Devices, Fault, Inbox, Link, Provisioned, Report, Session};
use crate::metrics::recorder::{Counter, Latency};
use crate::transport::mqtt::{
    ConnectParams, Greeting, Incoming, MqttConn, Reason, TransportError, V5Connect, answer_properties,
};
use crate::transport::tls::TlsFailure;

/// What a device holds after provisioning (boxed strings: kept for the whole run by every
/// device).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The device id, also its client id and username.
    pub device_id: Box<str>,
    /// The token, its password.
    pub token: Token,
}

/// A device's password. The reference backend's tokens are 64 lowercase hex digits, kept as
/// their 32 bytes (every device holds one for the whole run); anything else as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    /// 64 lowercase hex digits, decoded.
    Hex([u8; 32]),
    /// Any other password.
    Text(Box<str>),
}

impl Token {
    /// The token as the backend issued it.
    pub fn new(text: &str) -> Self {
        let digit = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        };
        let bytes = text.as_bytes();
        if bytes.len() == 64 {
            let mut out = [0u8; 32];
            let decoded =
                out.iter_mut()
                    .zip(bytes.chunks_exact(2))
                    .all(|(slot, pair)| match (digit(pair[0]), digit(pair[1])) {
                        (Some(hi), Some(lo)) => {
                            *slot = hi << 4 | lo;
                            true
                        }
                        _ => false,
                    });
            if decoded {
                return Self::Hex(out);
            }
        }
        Self::Text(text.into())
    }

    /// The token as the password to send.
    pub fn text(&self) -> String {
        match self {
            Self::Hex(bytes) => bytes.iter().map(|b| format!("{b:02x}")).collect(),
            Self::Text(text) => text.to_string(),
        }
    }
}

/// A reference-backend device's state while awake.
#[derive(Debug, Default)]
pub struct Device {
    /// Its credentials, once provisioned.
    credentials: Option<Credentials>,
    /// What it keeps of its own life while connected (its log, the command being answered,
    /// its settings), once it has something to keep.
    diary: Option<Box<Diary>>,
    /// The update in progress, or the last one (so a redelivered job is not taken twice).
    update: Option<Box<Update>>,
}

/// The claim devices of `group` provision with.
pub fn claim_name(group: &str) -> String {
    format!("fleetsim-{group}")
}

/// Why provisioning failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// The connection failed.
    Transport(TransportError),
    /// The backend answered `rejected`, or an answer that is not the documented JSON.
    Rejected,
}

impl From<TransportError> for Refusal {
    fn from(error: TransportError) -> Self {
        Self::Transport(error)
    }
}

impl Embedded {
    /// How devices speak TLS, when they log in with certificates the backend's CA signs.
    fn certified(&self) -> Option<&DeviceTls> {
        self.tls.as_deref().filter(|tls| tls.certified())
    }

    /// Provisions the device by claim and returns its credentials.
    async fn claim(&self, cx: &DeviceCx<'_>) -> Result<Credentials, Refusal> {
        let serial = cx.serial();
        let user = format!("claim:{}", claim_name(cx.group));
        let client_id = format!("prov-{serial}");
        let speech = &cx.model.mqtt;
        let params = ConnectParams {
            client_id: &client_id,
            login: Some((&user, &self.claim_secret)),
            keep_alive_s: 30,
            clean_session: true,
            // In the MQTT its model speaks, as the device's own connections.
            v5: speech.v5.then_some(V5Connect {
                session_expiry_s: 0,
                user_properties: &speech.user_properties,
                topic_alias: false,
            }),
            subscribe: None,
        };
        let certified = self.certified();
        let mut request = serde_json::json!({ "model": cx.model.name, "firmware": cx.model.firmware });
        let (mut conn, _) = match certified {
            // A certified device's claim connection presents no certificate: it has none yet.
            Some(tls) => {
                tls.add_certificate_request(cx, &mut request)?;
                MqttConn::open(tls.connect_anonymous(cx, self.mqtt).await?, params).await?
            }
            None => mqtt_session(self.tls.as_deref(), cx, self.mqtt, params).await?,
        };
        conn.subscribe(&[(&format!("fleet/v1/provision/{serial}/+"), QoS::AtLeastOnce)])
            .await?;
        let request = request.to_string();
        conn.publish(
            &format!("fleet/v1/provision/{serial}"),
            request.as_bytes(),
            QoS::AtLeastOnce,
        )
        .await?;
        loop {
            // Read as the connection's MQTT version reads it.
            match conn.incoming().await? {
                Some(Incoming::Publish(reply) | Incoming::Request(reply, _)) => {
                    if reply.pkid != 0 {
                        conn.ack(reply.pkid).await?;
                    }
                    let _ = conn.disconnect().await;
                    if !reply.topic.ends_with("/accepted") {
                        return Err(Refusal::Rejected);
                    }
                    let body: serde_json::Value =
                        serde_json::from_slice(&reply.payload).map_err(|_| Refusal::Rejected)?;
                    let field = |key: &str| body[key].as_str().map(str::to_owned).ok_or(Refusal::Rejected);
                    if let Some(tls) = certified {
                        let pem = body["certificate"]["certificate"].as_str().ok_or(Refusal::Rejected)?;
                        tls.install(cx, pem, Issued::Provisioned)?;
                        cx.count(Counter::CertsIssued);
                    }
                    return Ok(Credentials {
                        device_id: field("device_id")?.into_boxed_str(),
                        token: Token::new(&field("token")?),
                    });
                }
                Some(Incoming::Disconnected(_)) | None => return Err(Refusal::Transport(TransportError::Closed)),
                Some(_) => {}
            }
        }
    }

    /// Publishes an answer at QoS 1 on the device's own `suffix` topic; a lost connection
    /// goes to the inbox.
    async fn publish_answer(
        &self,
        cx: &DeviceCx<'_>,
        (device_id, link): (&str, &mut Link),
        (suffix, body): (&str, &[u8]),
        measured: Option<(Instant, Awaited)>,
        inbox: &mut Inbox,
    ) {
        let topic = format!("fleet/v1/d/{device_id}/{suffix}");
        let (since, awaited) = measured.unwrap_or((Instant::now(), Awaited::Nothing));
        let sent = link
            .publish(&cx.shared.meter, &topic, body, QoS::AtLeastOnce, awaited, since)
            .await;
        if sent.is_err() {
            inbox.push(Event::ConnectionLost);
        }
    }
}

impl Devices for Embedded {
    type Kept = Credentials;
    type Device = Device;

    fn device_addr(&self) -> SocketAddr {
        self.mqtt
    }

    fn wake(&self, kept: Option<Credentials>) -> Device {
        Device {
            credentials: kept,
            ..Device::default()
        }
    }

    fn keep(&self, device: Device) -> Option<Credentials> {
        device.credentials
    }

    async fn provision(&self, cx: &DeviceCx<'_>, device: &mut Device) -> Result<Provisioned, Fault> {
        match self.claim(cx).await {
            Ok(credentials) => {
                device.credentials = Some(credentials);
                Ok(Provisioned::Exchanged)
            }
            Err(Refusal::Transport(error)) => Err(error.into()),
            // Rejected by the backend (claim revoked, serial decommissioned, ...).
            Err(Refusal::Rejected) => Err(Fault::Auth),
        }
    }

    /// A persistent session subscribes to the device's config, commands and jobs unless the
    /// backend kept the session (and so its subscriptions); a duty-cycled wake opens a clean
    /// session that subscribes to nothing.
    async fn connect(&self, cx: &DeviceCx<'_>, device: &mut Device, session: Session) -> Result<Link, Fault> {
        // Connect only ever follows Provisioned.
        let Some(credentials) = &device.credentials else {
            return Err(Fault::Protocol);
        };
        let id = &credentials.device_id;
        let certified = self.certified();
        // A certified device's certificate is its login.
        let token = certified.is_none().then(|| credentials.token.text());
        let speech = &cx.model.mqtt;
        let clean_session = session == Session::DutyCycle;
        let params = ConnectParams {
            client_id: id,
            login: token.as_deref().map(|token| (&**id, token)),
            keep_alive_s: speech.keep_alive_s,
            clean_session,
            // Over MQTT 5 a persistent session is one that outlives the connection: the
            // model's expiry, or a day.
            v5: speech.v5.then_some(V5Connect {
                session_expiry_s: if clean_session {
                    0
                } else {
                    speech.session_expiry_s.max(86_400)
                },
                user_properties: &speech.user_properties,
                topic_alias: speech.topic_alias,
            }),
            subscribe: None,
        };
        // A device whose credentials the operator revoked must be refused, every time.
        let revoked = cx.shared.marks.is_revoked(id);
        if revoked {
            cx.count(Counter::RevokedTried);
        }
        let connected = mqtt_session(self.tls.as_deref(), cx, self.mqtt, params).await;
        if revoked
            && matches!(
                connected,
                Err(TransportError::Refused(Reason::NotAuthorized)
                    | TransportError::Tls(TlsFailure::Revoked | TlsFailure::BadCertificate))
            )
        {
            cx.count(Counter::RevokedRefused);
        }
        let (mut conn, Greeting { session_present, .. }) = match connected {
            Ok(connected) => connected,
            // The backend no longer knows these credentials: the operator retired the device.
            Err(TransportError::Refused(Reason::NotAuthorized)) => return Err(Fault::Retired),
            Err(error) => return Err(error.into()),
        };
        match certified.and_then(|tls| tls.took_new_certificate(cx)) {
            Some(Issued::Rotated) => {
                if let Some(asked) = cx.shared.marks.rotation_asked_at(id) {
                    cx.record(Latency::Rotate, asked);
                }
                cx.count(Counter::CertsRotated);
            }
            Some(Issued::Renewed) => cx.count(Counter::CertsRenewed),
            Some(Issued::Provisioned) | None => {}
        }
        if !session_present && session == Session::Persistent {
            let (config, commands, jobs, certs) = (
                format!("fleet/v1/d/{id}/config/desired"),
                format!("fleet/v1/d/{id}/cmd/+"),
                format!("fleet/v1/d/{id}/ota/job"),
                format!("fleet/v1/d/{id}/cert/+"),
            );
            let mut topics = vec![
                (config.as_str(), QoS::AtLeastOnce),
                (&commands, QoS::AtLeastOnce),
                (&jobs, QoS::AtLeastOnce),
            ];
            if certified.is_some() {
                topics.push((&certs, QoS::AtLeastOnce));
            }
            // The SUBACK comes back through the device's reads, which ignore it.
            conn.subscribe(&topics).await?;
        }
        Ok(Link::stream(conn))
    }

    fn report<'a>(
        &'a self,
        cx: &DeviceCx<'a>,
        device: &'a mut Device,
        link: &'a mut Link,
        report: Report<'_>,
        inbox: &'a mut Inbox,
    ) -> impl Future<Output = ()> + use<'a> {
        let sending = device.credentials.as_ref().map(|credentials| {
            let reading = report.reading;
            cx.shared.marks.alerts.reported(
                &credentials.device_id,
                cx.group,
                report.intended,
                reading.battery,
                (reading.value, !reading.errors.is_empty()),
            );
            let write_topic = |topic: &mut String| {
                // Writing into a String cannot fail.
                let _ = write!(topic, "fleet/v1/d/{}/telemetry", credentials.device_id);
            };
            let properties = &cx.model.mqtt.telemetry_properties;
            link.publish_report(&cx.shared.meter, &write_topic, report, properties, inbox)
        });
        async move {
            if let Some(sending) = sending {
                sending.await;
            }
        }
    }

    async fn answer(&self, cx: &DeviceCx<'_>, device: &mut Device, link: &mut Link, answer: Answer, inbox: &mut Inbox) {
        let Some(credentials) = &device.credentials else { return };
        let id = &*credentials.device_id;
        match answer {
            Answer::Config { version, since } => {
                let body = match &device.diary {
                    Some(diary) => diary.reported().to_string(),
                    None => format!("{{\"version\":{version}}}"),
                };
                let measured = since.map(|since| (since, Awaited::Config));
                self.publish_answer(cx, (id, link), ("config/reported", body.as_bytes()), measured, inbox)
                    .await;
            }
            Answer::Command(health) => {
                let Some(diary) = device.diary.as_deref_mut() else {
                    return;
                };
                let Some(command) = diary.command.take() else { return };
                let answered = diary.answer(&command, &health, &cx.model.firmware);
                let since = cx.shared.marks.command_sent_at(id);
                let body = answered.result.to_string();
                let measured = since.map(|since| (since, Awaited::Command));
                match &command.reply {
                    // MQTT 5's request and response: answered on the response topic, with its
                    // correlation data.
                    Some(reply) => {
                        let properties = answer_properties(reply);
                        let (since, awaited) = measured.unwrap_or((Instant::now(), Awaited::Nothing));
                        let message = (reply.topic.as_str(), body.as_bytes(), properties.as_slice());
                        let sent = link.publish_with(&cx.shared.meter, message, QoS::AtLeastOnce, awaited, since);
                        if sent.await.is_err() {
                            inbox.push(Event::ConnectionLost);
                        }
                    }
                    None => {
                        let suffix = format!("cmd/{}/result", command.id);
                        self.publish_answer(cx, (id, link), (&suffix, body.as_bytes()), measured, inbox)
                            .await;
                    }
                }
                if answered.settings_changed {
                    // Settings are part of what the device reports as applied.
                    let reported = diary.reported().to_string();
                    self.publish_answer(cx, (id, link), ("config/reported", reported.as_bytes()), None, inbox)
                        .await;
                }
            }
            Answer::Certificate => {
                let Some(tls) = self.certified() else {
                    return;
                };
                let mut body = serde_json::json!({});
                if tls.add_certificate_request(cx, &mut body).is_err() {
                    cx.count(Counter::ErrorsLocal);
                    return;
                }
                let body = body.to_string();
                self.publish_answer(cx, (id, link), ("cert/csr", body.as_bytes()), None, inbox)
                    .await;
            }
            Answer::Ota(report) => {
                let campaign = device.update.as_ref().map_or(0, |update| update.job.campaign);
                // The reference backend's states: an image given up is a failed job.
                let state = match report {
                    OtaReport::Unavailable => OtaReport::Failed.name(),
                    report => report.name(),
                };
                let body = format!("{{\"campaign\":{campaign},\"state\":\"{state}\"}}");
                self.publish_answer(cx, (id, link), ("ota/status", body.as_bytes()), None, inbox)
                    .await;
            }
        }
    }

    async fn download(&self, cx: &DeviceCx<'_>, device: &mut Device, from: u64, to: u64) -> Attempt {
        match device.update.as_mut() {
            Some(update) => update.download(cx, None, from, to).await,
            None => Attempt::Held(from),
        }
    }

    /// The version an update installed, once one did.
    fn firmware<'a>(&self, cx: &DeviceCx<'a>, device: &'a Device) -> &'a str {
        match device.diary.as_deref().and_then(|diary| diary.firmware.as_deref()) {
            Some(installed) => installed,
            None => &cx.model.firmware,
        }
    }

    /// An always-connected device keeps a journal of what it lived through (and the firmware
    /// and config it runs), for the `logs` and `diagnose` commands; a duty-cycled one, which
    /// takes no commands, keeps nothing.
    fn note(
        &self,
        cx: &DeviceCx<'_>,
        device: &mut Device,
        now: SimTime,
        event: Event,
        moved: (State, State),
        actions: &Actions,
    ) {
        let book = &cx.shared.marks.alerts;
        if book.watching()
            && let Some(credentials) = &device.credentials
        {
            // What the backend sees of the device coming and going: any way it leaves (a
            // drop, a reboot, a dead battery), not a decommissioning, which retires it.
            let (from, to) = moved;
            let id = &*credentials.device_id;
            if from == State::Online && !matches!(to, State::Online | State::Decommissioned) {
                book.lost(id, cx.group, unix_ms_now());
            } else if (event == Event::Connected && from == State::Connecting && to == State::Online)
                || to == State::Decommissioned
            {
                book.connected(id, unix_ms_now());
            }
        }
        if Session::of(cx.model) != Session::Persistent {
            return;
        }
        let diary = device.diary.get_or_insert_default();
        diary.note(now, event, moved, actions);
        if actions
            .iter()
            .any(|action| action == Action::OtaStatus(OtaReport::Succeeded))
        {
            diary.firmware = device.update.as_ref().map(|update| update.job.version.as_str().into());
        }
    }

    fn read(&self, cx: &DeviceCx<'_>, device: &mut Device, _link: &Link, arrival: Arrival<'_>) -> Option<Event> {
        let Arrival::Message { topic, payload, reply } = arrival else {
            cx.count(Counter::ErrorsProtocol);
            return None;
        };
        match Inbound::parse(topic, payload) {
            Some(Inbound::Config { version }) => Some(Event::ConfigDesired { version }),
            Some(Inbound::Rotate) => Some(Event::RotateCertificate),
            Some(Inbound::Certificate { pem, why }) => {
                let tls = self.tls.as_deref()?;
                if tls.install(cx, &pem, why).is_err() {
                    cx.count(Counter::ErrorsProtocol);
                    return None;
                }
                cx.count(Counter::CertsIssued);
                if why == Issued::Rotated {
                    // The backend revokes the old certificate once the grace has passed.
                    cx.count(Counter::CertsRevoked);
                }
                Some(Event::CredentialsChanged)
            }
            Some(Inbound::CertificateRefused) => {
                cx.count(Counter::ErrorsCsr);
                None
            }
            Some(Inbound::Command { id, kind, args }) => {
                let diary = device.diary.get_or_insert_default();
                diary.command = Some(Box::new(Pending {
                    id: id.into_boxed_str(),
                    kind,
                    args,
                    reply: reply.cloned(),
                }));
                Some(Event::Command(kind))
            }
            Some(Inbound::Job(job)) => {
                if device
                    .update
                    .as_ref()
                    .is_some_and(|held| held.job.campaign == job.campaign)
                {
                    // A redelivered job of the campaign already taken.
                    return None;
                }
                let image = cx.image_for(&job.version, job.size);
                device.update = Some(Update::new(job));
                cx.count(Counter::OtaJobs);
                Some(Event::OtaJob(image))
            }
            None => {
                cx.count(Counter::ErrorsProtocol);
                None
            }
        }
    }
}

/// A message the backend sends devices.
#[derive(Debug)]
enum Inbound {
    Config {
        version: u32,
    },
    /// The operator asks for a new certificate.
    Rotate,
    /// A certificate issued for the device's request, PEM, and why: a rotation the operator
    /// asked for, or the device's own renewal.
    Certificate {
        pem: String,
        why: Issued,
    },
    /// The device's certificate request was refused.
    CertificateRefused,
    Command {
        id: String,
        kind: CommandKind,
        args: serde_json::Value,
    },
    Job(Job),
}

impl Inbound {
    /// Parses a message on the device's topics (docs/backend-api.md, "Device topics").
    fn parse(topic: &str, payload: &[u8]) -> Option<Self> {
        let body: serde_json::Value = serde_json::from_slice(payload).ok()?;
        if topic.ends_with("/config/desired") {
            let version = u32::try_from(body["version"].as_u64()?).ok()?;
            return Some(Self::Config { version });
        }
        if topic.ends_with("/cert/rotate") {
            return Some(Self::Rotate);
        }
        if topic.ends_with("/cert/accepted") {
            return Some(Self::Certificate {
                pem: body["certificate"].as_str()?.to_owned(),
                why: if body["reason"] == "rotate" {
                    Issued::Rotated
                } else {
                    Issued::Renewed
                },
            });
        }
        if topic.ends_with("/cert/rejected") {
            return Some(Self::CertificateRefused);
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
            args: body.get("args").cloned().unwrap_or_default(),
        })
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
        assert!(matches!(command, Some(Inbound::Command { ref id, kind: CommandKind::Reboot, .. }) if id == "c-9"));
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
    }

    #[test]
    fn hex_tokens_are_kept_as_bytes_and_given_back_the_same() {
        let hex = "4770c9744b5ffc107d3547804cbcde09250891c1bfa999d3b4007a593fb71bfd";
        let token = Token::new(hex);
        assert!(matches!(token, Token::Hex(_)));
        assert_eq!(token.text(), hex);
        for other in ["s3cret", "", &hex.to_uppercase(), &hex[..62]] {
            assert_eq!(Token::new(other), Token::Text(other.into()));
            assert_eq!(Token::new(other).text(), other);
        }
    }
}
