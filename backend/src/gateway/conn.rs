//! One MQTT connection, from CONNECT to close.
//!
//! Design: the task reads packets, handles each in order (a provisioning request awaits its
//! durable commit before the next packet is read, so a device's messages keep their order),
//! and between packets writes messages the gateway routes to it. It closes on DISCONNECT,
//! on silence past 1.5 x keep-alive, on a protocol error, when a newer connection takes its
//! client id, when its device is decommissioned, or at shutdown. What a persistent session
//! must keep (subscriptions, unacknowledged and undelivered QoS 1 messages) goes back to the
//! session table when it closes.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::stream::DeviceStream;
use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::{ConnAck, ConnectReturnCode, Packet, Publish, Subscribe, UnsubAck};
use rumqttc::v5::mqttbytes::v5::{DisconnectReasonCode, PubAckReason};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

use super::Shared;
use super::auth::{Accepted, handshake};
use super::certify;
use super::packet_io::{Granted, PacketError, PacketIo};
use super::payloads::{self, CsrAsk, Payload};
use super::sessions::{Live, OUTBOUND_CHANNEL, Outbound, Outgoing, Stored, Subscription, expiry_instant};
use super::stats::bump;
use super::topics::{self, Inbound, Principal};
use crate::registry::{Completion, OtaReport, ProvisionMeta, ProvisionOutcome};

/// QoS 1 messages sent to a device and not yet acknowledged; past this, further messages
/// wait in the channel (and beyond it are dropped), which bounds per-connection memory.
const INFLIGHT_LIMIT: usize = 16;

/// Subscriptions a session may hold: a device needs a handful, and each is kept for the life
/// of its session, so more are refused (MQTT 5: 0x97, quota exceeded), not grown without end.
pub const MAX_SUBSCRIPTIONS: usize = 32;

/// Serves one accepted connection until it closes.
pub async fn serve(stream: DeviceStream, shared: Arc<Shared>, shutdown: CancellationToken) {
    // Boxed, like every transient step below: the task of an idle connection then holds only
    // the state it needs between packets (measured by `idle_task_is_small`).
    let Some(accepted) = Box::pin(handshake(stream, &shared)).await else {
        return;
    };
    let Accepted {
        conn_id,
        io,
        principal,
        client_id,
        clean_start,
        keep_alive,
    } = accepted;
    let (tx, rx) = mpsc::channel(OUTBOUND_CHANNEL);
    // A child of the shutdown token: one future in the connection's select waits for both a
    // takeover (this token) and shutdown (its parent).
    let kill = shutdown.child_token();
    let live = Live {
        conn_id,
        tx,
        kill: kill.clone(),
    };
    let (stored, took_over) = shared.sessions.attach(&client_id, live, clean_start);
    if let Principal::Device(id) = &principal {
        // A decommissioning that committed after the credential check but before this attach
        // found no session to close; checking again now closes that window.
        if !shared.registry.is_active(id) {
            bump(&shared.stats.connects_refused);
            shared.sessions.detach(&client_id, conn_id, None);
            return;
        }
        shared.sessions.record_seen(id, now_ms(), None);
        shared.monitor.connected(id);
    }
    if took_over {
        bump(&shared.stats.takeovers);
    }
    shared.stats.sessions_open.fetch_add(1, Ordering::Relaxed);
    let mut conn = Conn {
        shared: Arc::clone(&shared),
        io,
        principal,
        subscriptions: Vec::new(),
        inflight: VecDeque::new(),
        next_pkid: 0,
    };
    let result = conn.run(stored, keep_alive, rx, &kill, &shutdown).await;
    // Read at the end: an MQTT 5 DISCONNECT may have changed it.
    let expiry = conn.io.session_expiry();
    shared.stats.sessions_open.fetch_sub(1, Ordering::Relaxed);
    let device_id = match &conn.principal {
        Principal::Device(id) => {
            shared.sessions.record_seen(id, now_ms(), None);
            Some(id.clone())
        }
        _ => None,
    };
    let stored = (expiry != 0).then(|| {
        let mut stored = conn.into_stored(result);
        stored.expires_at = (expiry != u32::MAX).then(|| Instant::now() + Duration::from_secs(u64::from(expiry)));
        stored
    });
    shared.sessions.detach(&client_id, conn_id, stored);
    // A device whose connection a newer one took over is not offline.
    if let Some(id) = device_id
        && !shared.sessions.is_live(&client_id)
    {
        shared.monitor.disconnected(&id, now_ms());
    }
}

/// How a connection ended, which decides what a persistent session keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Closed {
    /// DISCONNECT, peer close, keep-alive, error or shutdown.
    Normally,
    /// A newer connection took the client id: it already holds the session.
    Replaced,
}

struct Conn {
    shared: Arc<Shared>,
    io: PacketIo,
    principal: Principal,
    subscriptions: Vec<Subscription>,
    /// QoS 1 messages written and awaiting PUBACK, oldest first.
    inflight: VecDeque<(u16, Outgoing)>,
    next_pkid: u16,
}

/// Work a wake-up calls for, boxed: `Ok(false)` ends the connection cleanly.
type Work<'a> = Pin<Box<dyn Future<Output = Result<bool, PacketError>> + Send + 'a>>;

/// What woke the connection's loop.
enum Wake {
    Packet(Result<Option<Packet>, PacketError>),
    Outbound(Option<Outbound>),
    KeepAliveExpired,
    Killed,
    Shutdown,
}

impl Conn {
    async fn run(
        &mut self,
        stored: Option<Stored>,
        keep_alive: Duration,
        mut rx: mpsc::Receiver<Outbound>,
        kill: &CancellationToken,
        shutdown: &CancellationToken,
    ) -> (Closed, mpsc::Receiver<Outbound>) {
        if Box::pin(self.resume(stored)).await.is_err() {
            return (Closed::Normally, rx);
        }
        // MQTT 3.1.1 section 3.1.2.10: the server closes after one and a half keep-alives of
        // silence; zero turns the check off.
        let grace = keep_alive.mul_f64(1.5);
        let far_future = Duration::from_secs(86_400 * 365);
        let deadline = |from: Instant| from + if keep_alive.is_zero() { far_future } else { grace };
        let keep_alive_timer = sleep_until(deadline(Instant::now()));
        tokio::pin!(keep_alive_timer);
        loop {
            // Every branch is cancel-safe: `read` keeps partial bytes in its buffer, `recv`
            // and the timers lose nothing when another branch wins.
            // The wake-up and its payload live only inside this block, and the work it calls
            // for is boxed, so neither takes room in the task between packets.
            let work: Work<'_> = {
                let wake = tokio::select! {
                    packet = self.io.read() => Wake::Packet(packet),
                    message = rx.recv(), if self.inflight.len() < self.inflight_limit() => Wake::Outbound(message),
                    () = &mut keep_alive_timer => Wake::KeepAliveExpired,
                    () = kill.cancelled() => if shutdown.is_cancelled() { Wake::Shutdown } else { Wake::Killed },
                };
                match wake {
                    Wake::Packet(Ok(Some(packet))) => {
                        keep_alive_timer.as_mut().reset(deadline(Instant::now()));
                        Box::pin(self.handle(packet))
                    }
                    Wake::Outbound(Some(publish)) => {
                        let this = &mut *self;
                        Box::pin(async move { this.send(*publish).await.map(|()| true) })
                    }
                    Wake::Packet(Ok(None)) => return (Closed::Normally, rx),
                    Wake::Packet(Err(error)) => {
                        self.count_error(&error);
                        Box::pin(self.io.goodbye(reason_for(&error))).await;
                        return (Closed::Normally, rx);
                    }
                    // The session table dropped our sender: it no longer routes to us (a newer
                    // connection took the client id, or the device retired).
                    Wake::Outbound(None) => {
                        Box::pin(self.io.goodbye(self.ousted_reason())).await;
                        return (Closed::Normally, rx);
                    }
                    Wake::KeepAliveExpired => {
                        bump(&self.shared.stats.keepalive_timeouts);
                        Box::pin(self.io.goodbye(DisconnectReasonCode::KeepAliveTimeout)).await;
                        return (Closed::Normally, rx);
                    }
                    Wake::Killed => {
                        Box::pin(self.io.goodbye(self.ousted_reason())).await;
                        return (Closed::Replaced, rx);
                    }
                    Wake::Shutdown => {
                        Box::pin(self.io.goodbye(DisconnectReasonCode::ServerShuttingDown)).await;
                        return (Closed::Normally, rx);
                    }
                }
            };
            match work.await {
                Ok(true) => {}
                Ok(false) => return (Closed::Normally, rx),
                Err(error) => {
                    self.count_error(&error);
                    Box::pin(self.io.goodbye(reason_for(&error))).await;
                    return (Closed::Normally, rx);
                }
            }
        }
    }

    /// Why the connection is being closed from outside (MQTT 5's DISCONNECT reason): its
    /// device retired (not authorized any more), else a newer connection of its client id
    /// took the session over.
    fn ousted_reason(&self) -> DisconnectReasonCode {
        match &self.principal {
            Principal::Device(id) if !self.shared.registry.is_active(id) => DisconnectReasonCode::NotAuthorized,
            _ => DisconnectReasonCode::SessionTakenOver,
        }
    }

    /// How many QoS 1 messages may be in flight to the client: the gateway's bound, or the
    /// client's Receive Maximum (MQTT 5) when lower.
    fn inflight_limit(&self) -> usize {
        INFLIGHT_LIMIT.min(usize::from(self.io.receive_max()))
    }

    /// Counts why a connection is closing: a bad packet or an oversized one (a socket error
    /// is the peer's business and not counted).
    fn count_error(&self, error: &PacketError) {
        match error {
            PacketError::TooLarge(_) => bump(&self.shared.stats.oversized_packets),
            PacketError::Malformed(_) | PacketError::Protocol(_) => bump(&self.shared.stats.protocol_errors),
            PacketError::Io(_) => {}
        }
    }

    /// Acknowledges CONNECT and resumes a stored session: its subscriptions, then the
    /// messages it kept while the device was away.
    async fn resume(&mut self, stored: Option<Stored>) -> Result<(), PacketError> {
        let ack = Packet::ConnAck(ConnAck::new(ConnectReturnCode::Success, stored.is_some()));
        self.io.write(&ack).await?;
        if let Some(stored) = stored {
            self.subscriptions = stored.subscriptions;
            for publish in stored.queue {
                self.send(publish).await?;
            }
        }
        Ok(())
    }

    /// Handles one packet; `Ok(false)` ends the connection cleanly.
    async fn handle(&mut self, packet: Packet) -> Result<bool, PacketError> {
        match packet {
            Packet::Publish(publish) => self.on_publish(publish).await?,
            Packet::PubAck(ack) => self.inflight.retain(|(pkid, _)| *pkid != ack.pkid),
            Packet::Subscribe(subscribe) => self.on_subscribe(subscribe).await?,
            Packet::Unsubscribe(unsubscribe) => {
                self.subscriptions
                    .retain(|(filter, _)| !unsubscribe.topics.contains(filter));
                self.io
                    .write(&Packet::UnsubAck(UnsubAck::new(unsubscribe.pkid)))
                    .await?;
            }
            Packet::PingReq => self.io.write(&Packet::PingResp).await?,
            Packet::Disconnect => return Ok(false),
            // A second CONNECT, QoS 2 flows and server-bound packets are protocol violations.
            other => return Err(PacketError::Malformed(unexpected(&other))),
        }
        Ok(true)
    }

    async fn on_publish(&mut self, publish: Publish) -> Result<(), PacketError> {
        if publish.qos == QoS::ExactlyOnce {
            // QoS 2 is not offered: a device fleet gains nothing from it over QoS 1.
            return Err(PacketError::Malformed(rumqttc::mqttbytes::Error::InvalidQoS(2)));
        }
        let stats = &self.shared.stats;
        // Refused publishes are acknowledged and dropped (MQTT 3.1.1 lets a server do either
        // that or close; MQTT 5's PUBACK says why), so a misbehaving device is counted, not
        // disconnected.
        let mut refused = None;
        match topics::inbound(&self.principal, &publish.topic) {
            Err(_) => {
                bump(&stats.publish_refused);
                refused = Some(PubAckReason::NotAuthorized);
            }
            Ok(inbound) => match (payloads::decode(&inbound, &publish.payload), inbound) {
                (Ok(payload), Inbound::Provision { serial }) => {
                    let serial = serial.to_owned();
                    self.on_provision(&serial, payload).await?;
                }
                (Err(_), Inbound::Provision { serial }) => {
                    let serial = serial.to_owned();
                    bump(&stats.bad_payloads);
                    bump(&stats.provision_rejected);
                    let body = rejected(
                        "bad_request",
                        "the request payload must be a JSON object like {\"model\": \"m\", \"firmware\": \"1.0\"} or empty",
                    );
                    self.reply(topics::provision_reply(&serial, false), body).await?;
                }
                (Ok(Payload::CertRequest(ask)), _) => self.on_cert_request(&ask).await?,
                (Ok(payload), Inbound::CommandResult { cmd_id }) => match self.io.take_echoed() {
                    // MQTT 5: a result whose correlation data names another command is not
                    // this one's answer.
                    Some(false) => {
                        bump(&stats.command_results_ignored);
                        refused = Some(PubAckReason::ImplementationSpecificError);
                    }
                    echoed => {
                        if echoed == Some(true) {
                            bump(&stats.command_results_correlated);
                        }
                        let cmd_id = cmd_id.to_owned();
                        self.on_device_payload(Some(&cmd_id), payload).await;
                    }
                },
                (Ok(payload), _) => self.on_device_payload(None, payload).await,
                (Err(_), _) => bump(&stats.bad_payloads),
            },
        }
        if publish.qos == QoS::AtLeastOnce {
            self.io.acknowledge(publish.pkid, refused).await?;
        }
        Ok(())
    }

    /// Acts on a checked payload from a device.
    async fn on_device_payload(&mut self, cmd_id: Option<&str>, payload: Payload) {
        let Principal::Device(device_id) = &self.principal else {
            return;
        };
        let stats = &self.shared.stats;
        match payload {
            Payload::Telemetry(reading) => {
                bump(&stats.telemetry);
                if let Some(reading) = reading {
                    let now = now_ms();
                    let (level, value, erred) = (reading.battery, reading.value, reading.errors.is_some());
                    if reading.says_status() {
                        self.shared.sessions.record_seen_with(device_id, now, |status| {
                            status.battery = reading.battery.or(status.battery);
                            status.rssi_dbm = reading.rssi.or(status.rssi_dbm);
                            if let Some(codes) = reading.errors {
                                status.error_reports += 1;
                                status.last_errors = codes;
                            }
                        });
                    }
                    let monitor = &self.shared.monitor;
                    if let Some(level) = level {
                        monitor.battery(device_id, level, now).await;
                    }
                    if erred {
                        monitor.errors(device_id, now).await;
                    }
                    if let Some(value) = value
                        && monitor.watches_values()
                    {
                        monitor.value(device_id, value, now).await;
                    }
                }
            }
            Payload::Status(status) => {
                bump(&stats.status);
                let (now, level) = (now_ms(), status.battery);
                self.shared.sessions.record_seen(device_id, now, Some(status));
                if let Some(level) = level {
                    self.shared.monitor.battery(device_id, level, now).await;
                }
            }
            Payload::ConfigReported { version, settings } => {
                if self
                    .shared
                    .registry
                    .report_config(device_id, version, settings)
                    .await
                    .is_ok()
                {
                    bump(&stats.config_reported);
                }
            }
            Payload::CommandResult { succeeded, result } => {
                let cmd_id = cmd_id.unwrap_or_default();
                match self
                    .shared
                    .registry
                    .complete_command(device_id, cmd_id, succeeded, result)
                    .await
                {
                    Ok(Completion::Recorded) => bump(&stats.command_results),
                    // Late, duplicate or unknown; or the registry could not commit, and the
                    // command will time out.
                    Ok(_) | Err(_) => bump(&stats.command_results_ignored),
                }
            }
            Payload::OtaStatus { campaign, state } => {
                match self.shared.registry.report_ota(device_id, campaign, &state).await {
                    Ok(OtaReport::Recorded) => bump(&stats.ota_reports),
                    Ok(_) | Err(_) => bump(&stats.ota_reports_ignored),
                }
            }
            // Topics only a claim may use never classify as a device's; certificate requests
            // are answered by `on_cert_request`.
            Payload::Provision { .. } | Payload::CertRequest(_) => bump(&stats.publish_refused),
        }
    }

    async fn on_provision(&mut self, serial: &str, payload: Payload) -> Result<(), PacketError> {
        let Principal::Claim(claim) = &self.principal else {
            return Ok(());
        };
        let Payload::Provision { model, firmware, csr } = payload else {
            return Ok(());
        };
        let stats = &self.shared.stats;
        // A bad CSR is refused before the device exists, so it leaves nothing behind.
        let signable = match &csr {
            Some(ask) => match certify::check(&self.shared, ask, serial, &format!("serial:{serial}")).await {
                Ok(signable) => Some(signable),
                Err(refusal) => {
                    bump(&stats.provision_rejected);
                    let body = rejected(refusal.as_str(), refusal.message());
                    return self.reply(topics::provision_reply(serial, false), body).await;
                }
            },
            None => None,
        };
        let meta = ProvisionMeta { model, firmware };
        let (accepted, body) = match self.shared.registry.provision(claim, serial, meta).await {
            Ok(ProvisionOutcome::Accepted {
                device_id,
                token,
                group,
                ..
            }) => {
                // An expired config is not given, as it is not delivered.
                let config = match self.effective_config(&device_id).await {
                    Some(config) if !config.expired(now_ms()) => topics::desired_config_body(&config),
                    _ => serde_json::json!({ "version": 0, "desired": {} }),
                };
                let mut body =
                    serde_json::json!({ "device_id": device_id, "token": token, "group": group, "config": config });
                let certified = match signable {
                    Some(signable) => certify::issue(&self.shared, signable, &device_id, true)
                        .await
                        .map(|cert| body["certificate"] = cert),
                    None => Ok(()),
                };
                match certified {
                    Ok(()) => {
                        bump(&stats.provision_accepted);
                        (true, body)
                    }
                    Err(why) => {
                        bump(&stats.provision_rejected);
                        (false, rejected("unavailable", why))
                    }
                }
            }
            Ok(ProvisionOutcome::Rejected { reason }) => {
                bump(&stats.provision_rejected);
                (false, rejected(reason.as_str(), reason.message()))
            }
            Err(_) => {
                bump(&stats.provision_rejected);
                (
                    false,
                    rejected("unavailable", "the registry could not commit; retry later"),
                )
            }
        };
        self.reply(topics::provision_reply(serial, accepted), body).await
    }

    /// Answers a device's certificate request on its own connection (a rotation when the
    /// operator asked for one, else a renewal): `cert/accepted` with the certificate, or
    /// `cert/rejected` with why.
    async fn on_cert_request(&mut self, ask: &CsrAsk) -> Result<(), PacketError> {
        let Principal::Device(device_id) = &self.principal else {
            return Ok(());
        };
        let device_id = device_id.clone();
        let registry = self.shared.registry.clone();
        let id = device_id.clone();
        let serial = match tokio::task::spawn_blocking(move || registry.device(&id)).await {
            Ok(Ok(Some(device))) => device.serial,
            _ => {
                let body = rejected("unavailable", "the registry could not be read; retry later");
                return self.reply(topics::cert_reply(&device_id, false), body).await;
            }
        };
        let (accepted, body) = match certify::check(&self.shared, ask, &serial, &device_id).await {
            Err(refusal) => (false, rejected(refusal.as_str(), refusal.message())),
            Ok(signable) => match certify::issue(&self.shared, signable, &device_id, false).await {
                Ok(cert) => (true, cert),
                Err(why) => (false, rejected("unavailable", why)),
            },
        };
        self.reply(topics::cert_reply(&device_id, accepted), body).await
    }

    /// Answers a request (provisioning, a certificate) with JSON `body` on `topic`, at QoS 1.
    async fn reply(&mut self, topic: String, body: serde_json::Value) -> Result<(), PacketError> {
        self.send(Outgoing::new(Publish::new(
            topic,
            QoS::AtLeastOnce,
            body.to_string().into_bytes(),
        )))
        .await
    }

    async fn on_subscribe(&mut self, subscribe: Subscribe) -> Result<(), PacketError> {
        let mut codes = Vec::with_capacity(subscribe.filters.len());
        for filter in &subscribe.filters {
            let renewed = self.subscriptions.iter().any(|(existing, _)| *existing == filter.path);
            if topics::may_subscribe(&self.principal, &filter.path).is_err() {
                bump(&self.shared.stats.subscribe_refused);
                codes.push(Granted::NotAuthorized);
            } else if !renewed && self.subscriptions.len() >= MAX_SUBSCRIPTIONS {
                bump(&self.shared.stats.subscribe_refused);
                codes.push(Granted::QuotaExceeded);
            } else {
                // QoS 2 is not offered; grant at most QoS 1.
                let granted = if filter.qos == QoS::AtMostOnce {
                    QoS::AtMostOnce
                } else {
                    QoS::AtLeastOnce
                };
                self.subscriptions.retain(|(existing, _)| *existing != filter.path);
                self.subscriptions.push((filter.path.clone(), granted));
                codes.push(Granted::Qos(granted));
            }
        }
        self.io.suback(subscribe.pkid, &codes).await?;
        // Retained desired config goes out on subscribe, as a broker delivers retained
        // messages.
        if let Principal::Device(device_id) = &self.principal {
            let topic = topics::config_desired(device_id);
            let wants_config = subscribe
                .filters
                .iter()
                .any(|f| topics::matches(&f.path, &topic) && self.granted_qos(&topic).is_some());
            if wants_config
                && let Some(config) = self.effective_config(device_id).await
                && config.version > 0
            {
                // An expired config is gone, as an expired retained message is from a broker.
                let body = topics::desired_config_body(&config);
                let mut publish = Publish::new(topic, QoS::AtLeastOnce, body.to_string().into_bytes());
                publish.retain = true;
                let expires_at = expiry_instant(config.expires_at);
                self.send(Outgoing { publish, expires_at }).await?;
            }
        }
        Ok(())
    }

    /// The device's effective desired config, if the registry has one.
    async fn effective_config(&self, device_id: &str) -> Option<crate::registry::EffectiveConfig> {
        let registry = self.shared.registry.clone();
        let id = device_id.to_owned();
        match tokio::task::spawn_blocking(move || registry.effective_config(&id)).await {
            Ok(Ok(config)) => config,
            _ => None,
        }
    }

    /// The highest QoS any subscription grants for `topic`.
    fn granted_qos(&self, topic: &str) -> Option<QoS> {
        self.subscriptions
            .iter()
            .filter(|(filter, _)| topics::matches(filter, topic))
            .map(|(_, qos)| *qos)
            .max_by_key(|qos| *qos as u8)
    }

    /// Writes a message the connection subscribed to, at the lower of its QoS and the
    /// subscription's; unsubscribed messages are dropped and counted.
    async fn send(&mut self, outgoing: Outgoing) -> Result<(), PacketError> {
        let now = Instant::now();
        if outgoing.expired(now) {
            bump(&self.shared.stats.expired);
            return Ok(());
        }
        let expiry = outgoing.expiry_left(now);
        let Outgoing {
            mut publish,
            expires_at,
        } = outgoing;
        let Some(granted) = self.granted_qos(&publish.topic) else {
            bump(&self.shared.stats.undeliverable);
            return Ok(());
        };
        if granted == QoS::AtMostOnce || publish.qos == QoS::AtMostOnce {
            publish.qos = QoS::AtMostOnce;
            publish.pkid = 0;
        } else {
            publish.qos = QoS::AtLeastOnce;
            publish.pkid = self.take_pkid();
            let kept = Outgoing {
                publish: publish.clone(),
                expires_at,
            };
            self.inflight.push_back((publish.pkid, kept));
        }
        self.io.write_publish(publish, expiry).await
    }

    /// The next packet id, never 0 and never one still in flight.
    fn take_pkid(&mut self) -> u16 {
        loop {
            self.next_pkid = self.next_pkid.wrapping_add(1);
            if self.next_pkid != 0 && !self.inflight.iter().any(|(pkid, _)| *pkid == self.next_pkid) {
                return self.next_pkid;
            }
        }
    }

    /// What a persistent session keeps: subscriptions, then unacknowledged messages (to be
    /// resent as duplicates) and messages still waiting in the channel.
    fn into_stored(self, (closed, mut rx): (Closed, mpsc::Receiver<Outbound>)) -> Stored {
        let mut queue: VecDeque<Outgoing> = VecDeque::new();
        if closed == Closed::Normally {
            for (_, mut outgoing) in self.inflight {
                outgoing.publish.dup = true;
                queue.push_back(outgoing);
            }
            while let Ok(publish) = rx.try_recv() {
                if publish.qos == QoS::AtLeastOnce {
                    queue.push_back(*publish);
                }
            }
        }
        Stored {
            subscriptions: self.subscriptions,
            queue,
            expires_at: None,
        }
    }
}

/// The reason an MQTT 5 client is told when its bytes end the connection.
fn reason_for(error: &PacketError) -> DisconnectReasonCode {
    match error {
        PacketError::TooLarge(_) => DisconnectReasonCode::PacketTooLarge,
        // QoS 2 is not offered.
        PacketError::Malformed(rumqttc::mqttbytes::Error::InvalidQoS(_)) => DisconnectReasonCode::QoSNotSupported,
        PacketError::Malformed(rumqttc::mqttbytes::Error::UnexpectedConnect) | PacketError::Protocol(_) => {
            DisconnectReasonCode::ProtocolError
        }
        PacketError::Malformed(_) => DisconnectReasonCode::MalformedPacket,
        PacketError::Io(_) => DisconnectReasonCode::UnspecifiedError,
    }
}

fn unexpected(packet: &Packet) -> rumqttc::mqttbytes::Error {
    match packet {
        Packet::Connect(_) => rumqttc::mqttbytes::Error::UnexpectedConnect,
        _ => rumqttc::mqttbytes::Error::IncorrectPacketFormat,
    }
}

fn rejected(reason: &str, message: &str) -> serde_json::Value {
    serde_json::json!({ "reason": reason, "message": message })
}

/// Wall-clock unix milliseconds, for last-seen times shown to operators.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::Gateway;

    /// The task of every connected device is this future; its size is most of the gateway's
    /// memory per idle connection, so it is pinned down here (transient work is boxed).
    #[tokio::test]
    async fn idle_task_is_small() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let _client = tokio::net::TcpStream::connect(listener.local_addr().expect("addr"))
            .await
            .expect("connect");
        let (stream, _) = listener.accept().await.expect("accept");
        let dir = std::env::temp_dir().join(format!("fleetsim-conn-size-{}", std::process::id()));
        let registry = crate::registry::Registry::open(&dir, Default::default()).expect("registry");
        let gateway = Gateway::new(registry, Default::default());
        let task = serve(
            DeviceStream::Tcp(stream),
            Arc::clone(&gateway.shared),
            CancellationToken::new(),
        );
        let size = std::mem::size_of_val(&task);
        // 1,192 bytes measured with rustc 1.95; unboxing the per-packet work takes it past 1,800.
        assert!(size <= 1536, "a connection's task grew to {size} bytes");
        drop(task);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
