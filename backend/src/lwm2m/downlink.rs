//! A registration's task: what the operator API routes to the device, asked of it in LwM2M,
//! one confirmable request at a time (RFC 7252's NSTART of 1), and the observations the
//! front holds on it. The task lives as long as the registration: until the device
//! de-registers, its lifetime runs out without an update, a newer registration or a
//! decommission closes it, or the backend shuts down.
//!
//! | routed to the device | asked in LwM2M | on success |
//! |---|---|---|
//! | desired config (`config/desired`) | Write (PUT) of the document, as text, to /32769/0/0 | the version is recorded as reported |
//! | command `reboot` | Execute (POST) of /3/0/4 | the command succeeded |
//! | command `read` (`args.path`, `/3/0/9`) | Read (GET) of the path, SenML JSON asked for | the command succeeded; its output is the path, the content format the device answered in and the value (SenML records as JSON, else text) |
//! | commands `set`, `logs`, `diagnose` | Execute (POST) of /32769/0/1, `{"id", "command", "args"}` as JSON; the device acknowledges and answers later, in a separate response carrying the result | the command's result is recorded as an MQTT device's |
//! | a campaign's update job (`ota/job`) | a Read of object 5's delivery method (/5/0/9); to a device that pulls (0 or 2), a Write (PUT) of the Package URI (/5/0/1): the front's own `coap://.../fw/VERSION` to a device whose /5/0/8 lists CoAP, else the image's HTTP URL, with its size, SHA-256 and campaign in the query; to one that only takes a push (1), the image written to /5/0/0 block-wise (Block1, 1,024-byte blocks, each acknowledged 2.31 Continue before the next, the last 2.04). Then Observes of the state (/5/0/3) and the result (/5/0/5), made again when the device registers afresh before the update ends (it rebooted into the image) | the notifications report the job's progress; at Downloaded (state 2) the front executes Update (/5/0/2); result 1 is `succeeded`, 8 `rolled_back`, 5, 6, 7 and 9 `failed` |
//! | a certificate request | nothing: not served over LwM2M yet | counted (`lwm2m_unmapped`) |
//! | decommissioning | the registration ends; a non-confirmable Execute of /1/0/8 makes the device update at once, and its Register is then refused | |

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType, ResponseType};
use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::Publish;
use serde_json::json;
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout_at};
use tokio_util::sync::CancellationToken;

use super::block::{Block, uint};
use super::exchanges::{Observation, Reply, Watched, token_bytes, token_of};
use super::packages;
use super::tlv;
use super::{Front, reachable};
use crate::gateway::Shared;
use crate::gateway::payloads::{self, Payload};
use crate::gateway::sessions::Outbound;
use crate::gateway::stats::bump;
use crate::gateway::topics::{DEVICE_PREFIX, Inbound};
use crate::registry::{Completion, OtaReport, system_clock_ms};

/// The fleetsim device-management object (in the range LwM2M leaves to private objects),
/// whose resource 0 holds the device's desired config document.
pub const CONFIG_OBJECT: &str = "32769";
/// Its resource 1: a command to carry out (executable, `{"id", "command", "args"}` as JSON),
/// answered by a separate response with the command's result.
pub const COMMAND_RESOURCE: &str = "1";
/// Its resource 2: what the device applied, `{"version", "settings"}` as JSON text
/// (readable): what an MQTT device publishes on `config/reported`.
pub const REPORTED_RESOURCE: &str = "2";

/// What the front routes to a registration's own task when a device holds an update's
/// image, verified (a notification of state 2): execute Update. Never an MQTT topic: only
/// the LwM2M front sends it, to its own registrations.
const INSTALL_ORDER: &str = "ota/install";

/// SenML JSON's content format (RFC 8428), in which the front asks for what the operator reads.
const SENML_JSON: u16 = 110;

/// What the front routes to a queue-mode registration's task when its device updated the
/// registration: it is awake now, so what was held for it goes ([`Task::run`]). Never an MQTT
/// topic, as [`INSTALL_ORDER`].
pub(super) const AWAKE: &str = "lwm2m/awake";

/// What the front routes to every registration's task when an error-codes alert rule comes
/// into force: observe the device's error codes (/3/0/11) from now on. Held for a sleeping
/// queue-mode device as the operator's requests are. Never an MQTT topic, as [`INSTALL_ORDER`].
pub(super) const OBSERVE_ERRORS: &str = "lwm2m/observe-errors";

/// The most requests held for a sleeping queue-mode device; more are dropped and counted
/// (`lwm2m_requests_failed`).
pub(super) const MAX_HELD: usize = 16;

/// How long a first acknowledgement is waited for (RFC 7252, section 4.8).
const ACK_TIMEOUT: Duration = Duration::from_secs(2);
/// How often a request is sent again before it is given up.
const MAX_RETRANSMIT: u32 = 4;
/// How long a separate response may take after an empty acknowledgement.
const MAX_TRANSMIT_WAIT: Duration = Duration::from_secs(93);

/// Why a request of the front's got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Failed {
    /// Nothing came back after every retransmission.
    Timeout,
    /// The device reset it.
    Reset,
    /// The registration is gone, or the request could not be encoded.
    Gone,
}

/// One registration's task.
#[derive(Debug)]
pub struct Task {
    pub(super) front: Arc<Front>,
    pub(super) location: u64,
    pub(super) device_id: String,
    pub(super) conn_id: u64,
    pub(super) kill: CancellationToken,
    /// The device's error codes are observed (or being asked to be).
    pub(super) errors_observed: AtomicBool,
}

impl Task {
    /// Observes the device, then serves what is routed to it on `rx` until the
    /// registration ends.
    pub async fn run(self, mut rx: mpsc::Receiver<Outbound>) {
        // Message ids start where the token counter is, which a restarted front draws anew.
        let mut message_id = self.front.exchanges.token() as u16;
        tokio::select! {
            () = self.kill.cancelled() => {}
            () = self.observe(&mut message_id) => {}
        }
        // A device that registers is awake: what was held for it (its registration before
        // this one was in queue mode; it restarted) goes now.
        self.send_held(&mut message_id).await;
        loop {
            let expires = {
                let table = self.front.table();
                match table.get(self.location) {
                    Some(r) if r.conn_id == self.conn_id => r.expires_at,
                    _ => break,
                }
            };
            tokio::select! {
                () = self.kill.cancelled() => break,
                () = tokio::time::sleep_until(expires) => {
                    // An update may have renewed it meanwhile.
                    let lapsed = self.front.table().get(self.location).is_some_and(|r| r.expires_at <= Instant::now());
                    if lapsed {
                        bump(&self.front.gateway.stats.lwm2m_expired);
                        break;
                    }
                }
                routed = rx.recv() => match routed {
                    // Awake: what was held goes now, in the order it came.
                    Some(publish) if self.is(&publish, AWAKE) => self.send_held(&mut message_id).await,
                    // Queue mode (binding `UQ`): the device sleeps between updates, so the
                    // operator's requests wait for the next one, held by the front for the
                    // device (a registration that replaces this one sends them). The install
                    // order answers a notification the device just sent: it is awake.
                    Some(publish) if self.queued() && !self.is(&publish, INSTALL_ORDER) => {
                        if self.front.hold(&self.device_id, publish) {
                            bump(&self.front.gateway.stats.lwm2m_held);
                        } else {
                            bump(&self.front.gateway.stats.lwm2m_requests_failed);
                        }
                    }
                    Some(publish) => tokio::select! {
                        () = self.kill.cancelled() => break,
                        () = self.deliver(&publish, &mut message_id) => {}
                    },
                    None => break,
                },
            }
        }
        let front = &self.front;
        let ended = front.table().remove(self.location, Some(self.conn_id));
        front.gateway.sessions.detach(&self.device_id, self.conn_id, None);
        if let Some(registration) = ended
            && self.kill.is_cancelled()
            && !front.gateway.registry.is_active(&self.device_id)
        {
            // Decommissioned: what was held for it goes nowhere.
            drop(front.take_held(&self.device_id));
            // LwM2M has no way for a server to end a registration at the
            // device; the registration update trigger makes the device update at once, find
            // its registration gone and register again, which is refused. Sent once,
            // non-confirmable: a device that misses it learns at its next update.
            let mut trigger = request(RequestType::Post, &["1", "0", "8"]);
            trigger.header.set_type(MessageType::NonConfirmable);
            message_id = message_id.wrapping_add(1);
            trigger.header.message_id = message_id;
            trigger.set_token(token_bytes(front.exchanges.token()));
            front.send_packet(&trigger, registration.addr).await;
        }
        front.exchanges.forget(self.conn_id);
        front.gateway.stats.lwm2m_registered.fetch_sub(1, Ordering::Relaxed);
    }

    /// Sends what the front held for the device, in the order it came, until the
    /// registration ends.
    async fn send_held(&self, message_id: &mut u16) {
        for publish in self.front.take_held(&self.device_id) {
            // A config whose expiry passed while the device slept is not written.
            if publish.expired(Instant::now()) {
                bump(&self.front.gateway.stats.expired);
                continue;
            }
            tokio::select! {
                () = self.kill.cancelled() => return,
                () = self.deliver(&publish, message_id) => {}
            }
        }
    }

    /// Observes what the device registered of [`Watched::ALL`].
    async fn observe(&self, message_id: &mut u16) {
        for watched in Watched::ALL {
            if self.registered(watched.instance()) {
                self.observe_one(watched, message_id).await;
            }
        }
        if self.front.gateway.monitor.watches_errors() {
            self.observe_errors(message_id).await;
        }
        // A device that registers afresh while taking an update (it rebooted into the new
        // image) has forgotten the observations of object 5: observed again, their first
        // answers carry how the update ended.
        let updating = self.front.updates().get(self.device_id.as_str()).copied();
        if let Some(campaign) = updating
            && self.registered("/5/0")
        {
            for watched in [Watched::UpdateState { campaign }, Watched::UpdateResult { campaign }] {
                self.observe_one(watched, message_id).await;
            }
        }
    }

    /// Observes the device's error codes, unless they are observed already.
    async fn observe_errors(&self, message_id: &mut u16) {
        if !self.registered(Watched::ErrorCodes.instance()) || self.errors_observed.swap(true, Ordering::Relaxed) {
            return;
        }
        if !self.observe_one(Watched::ErrorCodes, message_id).await {
            self.errors_observed.store(false, Ordering::Relaxed);
        }
    }

    /// Whether the registration is in queue mode (its binding has `Q`): its device sleeps
    /// between updates.
    fn queued(&self) -> bool {
        self.front
            .table()
            .get(self.location)
            .is_some_and(|r| r.binding.contains('Q'))
    }

    /// Whether `publish` is the front's own `suffix` message to this device.
    fn is(&self, publish: &Publish, suffix: &str) -> bool {
        publish
            .topic
            .strip_prefix(DEVICE_PREFIX)
            .and_then(|rest| rest.strip_prefix(self.device_id.as_str()))
            .and_then(|rest| rest.strip_prefix('/'))
            == Some(suffix)
    }

    /// Whether the device registered object instance `instance` (`/5/0`).
    fn registered(&self, instance: &str) -> bool {
        self.front.table().get(self.location).is_some_and(|r| r.has(instance))
    }

    /// Observes `watched`; false when the device would not.
    async fn observe_one(&self, watched: Watched, message_id: &mut u16) -> bool {
        let mut request = request(RequestType::Get, &watched.path());
        request.set_observe_value(0);
        if let Some(format) = watched.accept() {
            request.add_option(CoapOption::Accept, format.to_be_bytes().to_vec());
        }
        let token = self.front.exchanges.token();
        let observation = Observation {
            device_id: self.device_id.clone(),
            conn_id: self.conn_id,
            watched,
        };
        // Held before the request leaves: its answer is the first notification.
        self.front.exchanges.observe(token, observation);
        let observing = match self.exchange(request, token, message_id).await {
            Ok(answer) => {
                answer.header.code == MessageClass::Response(ResponseType::Content)
                    && answer.get_observe_value().is_some()
            }
            Err(_) => false,
        };
        if !observing {
            self.front.exchanges.cancel(token);
        }
        observing
    }

    /// Starts a campaign's update `job` (what an MQTT device gets on `ota/job`) through
    /// object 5: a Write of the Package URI, then Observes of the state and the result, whose
    /// notifications carry the update on ([`on_notification`]). The Observes come after the
    /// Write, which resets the result a past update left. A device without object 5, or one
    /// that refuses the URI, has failed the update; one that does not answer reports nothing,
    /// as an MQTT device that never got its job.
    async fn start_update(&self, job: &serde_json::Value, message_id: &mut u16) {
        let stats = &self.front.gateway.stats;
        let (Some(campaign), Some(url), Some(size), Some(sha256)) = (
            job["campaign"].as_u64(),
            job["url"].as_str(),
            job["size"].as_u64(),
            job["sha256"].as_str(),
        ) else {
            bump(&stats.lwm2m_unmapped);
            return;
        };
        let taken = self.registered("/5/0") && {
            let pushed_only = match self.read_text(&["5", "0", "9"], message_id).await {
                Ok(delivery) => delivery == "1",
                Err(_) => {
                    bump(&stats.lwm2m_requests_failed);
                    return;
                }
            };
            if pushed_only {
                self.push_package(job, message_id).await
            } else {
                // From the front over CoAP when the device speaks it for packages, else the
                // campaign's HTTP URL.
                let url = match job["version"].as_str() {
                    Some(version) if self.pulls_over_coap(message_id).await => {
                        let front = self.front.socket.local_addr().map(reachable);
                        front.map_or_else(
                            |_| url.to_owned(),
                            |addr| format!("coap://{addr}/{}/{version}", packages::PATH),
                        )
                    }
                    _ => url.to_owned(),
                };
                let mut write = request(RequestType::Put, &["5", "0", "1"]);
                // text/plain: the URI is the resource's string value.
                write.add_option(CoapOption::ContentFormat, Vec::new());
                write.payload = format!("{url}?size={size}&sha256={sha256}&campaign={campaign}").into_bytes();
                let token = self.front.exchanges.token();
                match self.exchange(write, token, message_id).await {
                    Ok(answer) => answer.header.code == MessageClass::Response(ResponseType::Changed),
                    Err(_) => {
                        bump(&stats.lwm2m_requests_failed);
                        return;
                    }
                }
            }
        };
        if !taken {
            bump(&stats.lwm2m_requests_failed);
            report_update(&self.front.gateway, &self.device_id, campaign, "failed").await;
            return;
        }
        self.front.updates().insert(self.device_id.as_str().into(), campaign);
        for watched in [Watched::UpdateState { campaign }, Watched::UpdateResult { campaign }] {
            if !self.observe_one(watched, message_id).await {
                bump(&stats.lwm2m_requests_failed);
            }
        }
    }

    /// Whether the device pulls packages over CoAP: object 5's Firmware Update Protocol
    /// Support (/5/0/8, read as TLV) lists 0. A device that does not say pulls over HTTP.
    async fn pulls_over_coap(&self, message_id: &mut u16) -> bool {
        let mut read = request(RequestType::Get, &["5", "0", "8"]);
        read.add_option(CoapOption::Accept, tlv::CONTENT_FORMAT.to_be_bytes().to_vec());
        let token = self.front.exchanges.token();
        let Ok(answer) = self.exchange(read, token, message_id).await else {
            return false;
        };
        if answer.header.code != MessageClass::Response(ResponseType::Content) {
            return false;
        }
        protocols(&answer.payload).contains(&0)
    }

    /// Reads one resource as text (`/5/0/9` reads `2`); `Err` when the device does not answer,
    /// an empty string when it refuses.
    async fn read_text(&self, path: &[&str], message_id: &mut u16) -> Result<String, Failed> {
        let mut read = request(RequestType::Get, path);
        // text/plain.
        read.add_option(CoapOption::Accept, Vec::new());
        let token = self.front.exchanges.token();
        let answer = self.exchange(read, token, message_id).await?;
        if answer.header.code != MessageClass::Response(ResponseType::Content) {
            return Ok(String::new());
        }
        Ok(String::from_utf8_lossy(&answer.payload).into_owned())
    }

    /// Reads `path` for the operator's `read` command, asking for SenML JSON: whether the
    /// device answered with the content, and the command's output (the path, the format the
    /// device answered in, the value: SenML records as JSON, anything else as text), or why
    /// it did not; `Err` when the device does not answer.
    async fn read_value(&self, path: &[&str], message_id: &mut u16) -> Result<(bool, serde_json::Value), Failed> {
        let mut read = request(RequestType::Get, path);
        read.add_option(CoapOption::Accept, uint(u64::from(SENML_JSON)));
        let token = self.front.exchanges.token();
        let answer = self.exchange(read, token, message_id).await?;
        let shown = format!("/{}", path.join("/"));
        if answer.header.code != MessageClass::Response(ResponseType::Content) {
            bump(&self.front.gateway.stats.lwm2m_requests_failed);
            let why = String::from_utf8_lossy(&answer.payload).into_owned();
            let output = format!("the device answered {} to Read {shown}: {why}", code_text(&answer));
            return Ok((false, output.into()));
        }
        let format = answer
            .get_first_option(CoapOption::ContentFormat)
            .map(|bytes| bytes.iter().fold(0u32, |n, b| n << 8 | u32::from(*b)));
        let value = match serde_json::from_slice::<serde_json::Value>(&answer.payload) {
            Ok(value) if format == Some(u32::from(SENML_JSON)) => value,
            _ => String::from_utf8_lossy(&answer.payload).into_owned().into(),
        };
        Ok((true, json!({ "path": shown, "format": format, "value": value })))
    }

    /// Reads what the device applied (/32769/0/2) and records it as its reported config, as
    /// an MQTT device's `config/reported` is: the settings a `set` applied become the device
    /// view's reported settings. A device that does not answer, or answers what does not read,
    /// leaves the record as it was (counted in `lwm2m_requests_failed`).
    async fn read_reported(&self, message_id: &mut u16) {
        let stats = &self.front.gateway.stats;
        let text = match self
            .read_text(&[CONFIG_OBJECT, "0", REPORTED_RESOURCE], message_id)
            .await
        {
            Ok(text) => text,
            Err(_) => {
                bump(&stats.lwm2m_requests_failed);
                return;
            }
        };
        let Ok(Payload::ConfigReported { version, settings }) =
            payloads::decode(&Inbound::ConfigReported, text.as_bytes())
        else {
            bump(&stats.lwm2m_requests_failed);
            return;
        };
        let registry = &self.front.gateway.registry;
        if registry.report_config(&self.device_id, version, settings).await.is_ok() {
            bump(&stats.config_reported);
        }
    }

    /// Writes the image `job` names to the device's /5/0/0, block-wise (RFC 7959's Block1,
    /// 1,024-byte blocks, the total in Size1 on the first), one block after the device took
    /// the one before (2.31 Continue), the last answered 2.04 Changed; whether it took them
    /// all. An image the store does not hold is not pushed.
    async fn push_package(&self, job: &serde_json::Value, message_id: &mut u16) -> bool {
        const SZX: u8 = 6;
        let Some(firmware) = job["version"].as_str().and_then(|v| self.front.firmware.get(v)) else {
            return false;
        };
        let blocks = firmware.bytes.chunks(1 << (SZX + 4));
        let last = blocks.len().saturating_sub(1);
        for (num, chunk) in blocks.enumerate() {
            let more = num < last;
            let mut write = request(RequestType::Put, &["5", "0", "0"]);
            // application/octet-stream.
            write.add_option(CoapOption::ContentFormat, vec![42]);
            let Ok(num) = u32::try_from(num) else {
                return false;
            };
            write.add_option(CoapOption::Block1, Block { num, more, szx: SZX }.encode());
            if num == 0 {
                write.add_option(CoapOption::Size1, uint(firmware.size));
            }
            write.payload = chunk.to_vec();
            let token = self.front.exchanges.token();
            let wanted = if more {
                ResponseType::Continue
            } else {
                ResponseType::Changed
            };
            match self.exchange(write, token, message_id).await {
                Ok(answer) if answer.header.code == MessageClass::Response(wanted) => {}
                _ => return false,
            }
        }
        true
    }

    /// Executes object 5's Update: the device holds the image, verified.
    async fn order_install(&self, message_id: &mut u16) {
        let token = self.front.exchanges.token();
        match self
            .exchange(request(RequestType::Post, &["5", "0", "2"]), token, message_id)
            .await
        {
            Ok(answer) if answer.header.code == MessageClass::Response(ResponseType::Changed) => {}
            _ => bump(&self.front.gateway.stats.lwm2m_requests_failed),
        }
    }

    /// Asks the device what `publish` means in LwM2M.
    async fn deliver(&self, publish: &Publish, message_id: &mut u16) {
        let stats = &self.front.gateway.stats;
        let suffix = publish
            .topic
            .strip_prefix(DEVICE_PREFIX)
            .and_then(|rest| rest.strip_prefix(self.device_id.as_str()))
            .and_then(|rest| rest.strip_prefix('/'))
            .unwrap_or_default();
        if suffix == OBSERVE_ERRORS {
            self.observe_errors(message_id).await;
            return;
        }
        let body: serde_json::Value = serde_json::from_slice(&publish.payload).unwrap_or_default();
        if suffix == "config/desired" {
            let Some(version) = body["version"].as_u64() else {
                return;
            };
            let mut write = request(RequestType::Put, &[CONFIG_OBJECT, "0", "0"]);
            // text/plain: the document is the resource's string value.
            write.add_option(CoapOption::ContentFormat, Vec::new());
            write.payload = publish.payload.to_vec();
            let token = self.front.exchanges.token();
            match self.exchange(write, token, message_id).await {
                Ok(answer) if answer.header.code == MessageClass::Response(ResponseType::Changed) => {
                    if self
                        .front
                        .gateway
                        .registry
                        .report_config(&self.device_id, version, None)
                        .await
                        .is_ok()
                    {
                        bump(&stats.config_reported);
                    }
                }
                _ => bump(&stats.lwm2m_requests_failed),
            }
        } else if let Some(cmd_id) = suffix.strip_prefix("cmd/") {
            let name = body["command"].as_str().unwrap_or_default();
            let (succeeded, output): (bool, serde_json::Value) = if name == "read" {
                match body["args"]["path"].as_str().and_then(resource_path) {
                    Some(path) => match self.read_value(&path, message_id).await {
                        Ok(read) => read,
                        // Unanswered: the command times out in the registry.
                        Err(_) => {
                            bump(&stats.lwm2m_requests_failed);
                            return;
                        }
                    },
                    // The API takes no read without a path; a command queued by hand might.
                    None => (
                        false,
                        "a read names the resource it reads: args.path, like \"/3/0/9\"".into(),
                    ),
                }
            } else if name == "reboot" {
                let token = self.front.exchanges.token();
                match self
                    .exchange(request(RequestType::Post, &["3", "0", "4"]), token, message_id)
                    .await
                {
                    Ok(answer) if answer.header.code == MessageClass::Response(ResponseType::Changed) => {
                        (true, "executed /3/0/4".into())
                    }
                    Ok(answer) => {
                        bump(&stats.lwm2m_requests_failed);
                        (
                            false,
                            format!("the device answered {} to Execute /3/0/4", code_text(&answer)).into(),
                        )
                    }
                    // Unanswered: the command times out in the registry, as an MQTT one does.
                    Err(_) => {
                        bump(&stats.lwm2m_requests_failed);
                        return;
                    }
                }
            } else {
                // set, logs, diagnose: an Execute of fleetsim's command resource, answered by
                // a separate response that carries the command's result.
                let mut execute = request(RequestType::Post, &[CONFIG_OBJECT, "0", COMMAND_RESOURCE]);
                execute.add_option(CoapOption::ContentFormat, vec![50]);
                execute.payload = json!({ "id": cmd_id, "command": name, "args": body["args"] })
                    .to_string()
                    .into_bytes();
                let token = self.front.exchanges.token();
                match self.exchange(execute, token, message_id).await {
                    Ok(answer) if answer.header.code == MessageClass::Response(ResponseType::Changed) => {
                        let result: serde_json::Value = serde_json::from_slice(&answer.payload).unwrap_or_default();
                        let output = result.get("output").cloned().unwrap_or(serde_json::Value::Null);
                        (result["status"] == "ok", output)
                    }
                    Ok(answer) => {
                        bump(&stats.lwm2m_requests_failed);
                        let why = String::from_utf8_lossy(&answer.payload).into_owned();
                        (
                            false,
                            format!(
                                "the device answered {} to Execute /{CONFIG_OBJECT}/0/{COMMAND_RESOURCE}: {why}",
                                code_text(&answer)
                            )
                            .into(),
                        )
                    }
                    Err(_) => {
                        bump(&stats.lwm2m_requests_failed);
                        return;
                    }
                }
            };
            let result = result_of(succeeded, output);
            match self
                .front
                .gateway
                .registry
                .complete_command(&self.device_id, cmd_id, succeeded, result)
                .await
            {
                Ok(Completion::Recorded) => bump(&stats.command_results),
                _ => bump(&stats.command_results_ignored),
            }
            if succeeded && name == "set" {
                self.read_reported(message_id).await;
            }
        } else if suffix == "ota/job" {
            self.start_update(&body, message_id).await;
        } else if suffix == INSTALL_ORDER {
            self.order_install(message_id).await;
        } else {
            bump(&stats.lwm2m_unmapped);
        }
    }

    /// Sends confirmable `request` with `token` and waits for its answer, sending it again
    /// as RFC 7252 says; the device's address is read from the registration at the start.
    async fn exchange(&self, request: Packet, token: u64, message_id: &mut u16) -> Result<Packet, Failed> {
        let Some(addr) = self.front.table().get(self.location).map(|r| r.addr) else {
            return Err(Failed::Gone);
        };
        exchange(&self.front, addr, request, token, message_id).await
    }
}

/// Sends `request` (confirmable, token `token`, the next of `message_id`) to the device at
/// `addr` and waits for its answer: sent again on CoAP's timeouts (RFC 7252, section 4.2),
/// a separate response waited for after an empty acknowledgement.
pub(super) async fn exchange(
    front: &Front,
    addr: std::net::SocketAddr,
    mut request: Packet,
    token: u64,
    message_id: &mut u16,
) -> Result<Packet, Failed> {
    *message_id = message_id.wrapping_add(1);
    request.header.message_id = *message_id;
    request.set_token(token_bytes(token));
    let bytes = request.to_bytes().map_err(|_| Failed::Gone)?;
    let mut replies = front.exchanges.expect(token, addr, *message_id);
    bump(&front.gateway.stats.lwm2m_requests);
    // The first wait stretched by up to 1.5, from the token's low bits.
    let jitter = f64::from((token & 0xFF) as u8) / 255.0;
    let mut wait = ACK_TIMEOUT.mul_f64(1.0 + 0.5 * jitter);
    let mut deadline = Instant::now() + wait;
    let mut sent_again = 0;
    let mut acknowledged = false;
    front.send(&bytes, addr).await;
    let outcome = loop {
        match timeout_at(deadline, replies.recv()).await {
            Ok(Some(Reply::Response(answer))) => break Ok(answer),
            Ok(Some(Reply::Acknowledged)) if !acknowledged => {
                acknowledged = true;
                deadline = Instant::now() + MAX_TRANSMIT_WAIT;
            }
            Ok(Some(Reply::Acknowledged)) => {}
            Ok(Some(Reply::Reset)) => break Err(Failed::Reset),
            Ok(None) => break Err(Failed::Gone),
            Err(_) if acknowledged || sent_again == MAX_RETRANSMIT => break Err(Failed::Timeout),
            Err(_) => {
                sent_again += 1;
                wait *= 2;
                deadline = Instant::now() + wait;
                bump(&front.gateway.stats.lwm2m_retransmissions);
                front.send(&bytes, addr).await;
            }
        }
    };
    front.exchanges.finish(token);
    outcome
}

/// A notification (or the first answer) of `observation`: the device's status and presence.
pub(super) fn on_notification(front: &Front, observation: &Observation, packet: &Packet) {
    let stats = &front.gateway.stats;
    if packet.header.code != MessageClass::Response(ResponseType::Content) {
        // The device ended the observation (4.04 once the resource is gone).
        if let Some(token) = token_of(packet) {
            front.exchanges.cancel(token);
        }
        return;
    }
    bump(&stats.lwm2m_notifications);
    let value = std::str::from_utf8(&packet.payload)
        .ok()
        .and_then(|text| text.trim().parse::<f64>().ok())
        .filter(|v| v.is_finite());
    let sessions = &front.gateway.sessions;
    let now = system_clock_ms();
    match observation.watched {
        Watched::Battery => {
            let level = value.map(|percent| (percent / 100.0).clamp(0.0, 1.0));
            sessions.record_seen_with(&observation.device_id, now, |status| status.battery = level);
            if let Some(level) = level {
                // On a task of its own: a rule of one group may look the device's group up.
                let (gateway, id) = (Arc::clone(&front.gateway), observation.device_id.clone());
                tokio::spawn(async move { gateway.monitor.battery(&id, level, now).await });
            }
        }
        Watched::Signal => sessions.record_seen_with(&observation.device_id, now, |status| {
            #[allow(
                clippy::cast_possible_truncation,
                reason = "clamped to the range of a dBm reading first"
            )]
            let dbm = value.map(|dbm| dbm.clamp(-200.0, 50.0).round() as i32);
            status.rssi_dbm = dbm;
        }),
        Watched::Sensor => {
            bump(&stats.telemetry);
            sessions.record_seen(&observation.device_id, now, None);
            if let Some(value) = value
                && front.gateway.monitor.watches_values()
            {
                // A sensor_stuck rule counts the readings in a row; on a task of its own, as
                // the battery's.
                let (gateway, id) = (Arc::clone(&front.gateway), observation.device_id.clone());
                tokio::spawn(async move { gateway.monitor.value(&id, value, now).await });
            }
        }
        Watched::ErrorCodes => {
            if error_codes(packet).is_some_and(|codes| codes.iter().any(|&code| code != 0)) {
                // Counted as an MQTT device's telemetry carrying codes; on a task of its own,
                // as the battery's.
                let (gateway, id) = (Arc::clone(&front.gateway), observation.device_id.clone());
                tokio::spawn(async move { gateway.monitor.errors(&id, now).await });
            }
        }
        Watched::UpdateState { campaign } => {
            let state = match value.map(|v| v as i64) {
                Some(1) => "downloading",
                Some(2) => {
                    // Verified and held: the front orders the install, from the
                    // registration's task (one request of the front's at a time).
                    let topic = format!("{DEVICE_PREFIX}{}/{INSTALL_ORDER}", observation.device_id);
                    let order = Publish::new(topic, QoS::AtMostOnce, Vec::new());
                    sessions.deliver(&observation.device_id, order);
                    "verifying"
                }
                Some(3) => "installing",
                // Idle: the result says how it ended.
                _ => return,
            };
            report_in_background(front, &observation.device_id, campaign, state);
        }
        Watched::UpdateResult { campaign } => {
            let state = match value.map(|v| v as i64) {
                Some(1) => "succeeded",
                Some(8) => "rolled_back",
                // Integrity check failure, a package type not taken, an invalid URI, a
                // protocol not spoken.
                Some(5..=7 | 9) => "failed",
                // None yet (the Write reset it), or one this front does not map.
                _ => return,
            };
            {
                let mut updates = front.updates();
                if updates.get(observation.device_id.as_str()) == Some(&campaign) {
                    updates.remove(observation.device_id.as_str());
                }
            }
            report_in_background(front, &observation.device_id, campaign, state);
        }
    }
}

/// The error codes a notification of /3/0/11 carries: TLV (a multiple resource, or its
/// instances at the top level) as its content format says, else one code as text; `None`
/// for what does not parse.
fn error_codes(packet: &Packet) -> Option<Vec<i64>> {
    // The option's raw bytes: coap-lite reads a number it has no name for as another format.
    let format = packet
        .get_first_option(CoapOption::ContentFormat)
        .map(|bytes| bytes.iter().fold(0u64, |acc, b| acc << 8 | u64::from(*b)));
    if format != Some(u64::from(tlv::CONTENT_FORMAT)) {
        let text = std::str::from_utf8(&packet.payload).ok()?;
        return Some(vec![text.trim().parse().ok()?]);
    }
    let mut codes = Vec::new();
    for entry in tlv::entries(&packet.payload)? {
        match entry.kind {
            tlv::Kind::MultipleResource => {
                for instance in tlv::entries(entry.value)? {
                    codes.push(tlv::integer(instance.value)?);
                }
            }
            tlv::Kind::ResourceInstance | tlv::Kind::Resource => codes.push(tlv::integer(entry.value)?),
            tlv::Kind::ObjectInstance => return None,
        }
    }
    Some(codes)
}

/// Records `state` of device `device_id`'s job in `campaign` on a task of its own (the
/// receive loop does not wait on the registry). A job's final state is never overwritten.
fn report_in_background(front: &Front, device_id: &str, campaign: u64, state: &'static str) {
    let (gateway, id) = (Arc::clone(&front.gateway), device_id.to_owned());
    tokio::spawn(async move { report_update(&gateway, &id, campaign, state).await });
}

/// Records `state` of device `device_id`'s job in `campaign`, counted as the gateway counts
/// an MQTT device's `ota/status`.
async fn report_update(gateway: &Shared, device_id: &str, campaign: u64, state: &str) {
    match gateway.registry.report_ota(device_id, campaign, state).await {
        Ok(OtaReport::Recorded) => bump(&gateway.stats.ota_reports),
        Ok(_) | Err(_) => bump(&gateway.stats.ota_reports_ignored),
    }
}

/// A command's result document, as an MQTT device's `cmd/{id}/result` carries it.
fn result_of(succeeded: bool, output: serde_json::Value) -> serde_json::Value {
    json!({ "status": if succeeded { "ok" } else { "error" }, "output": output })
}

/// A confirmable request of `method` to `path`.
/// The segments of an LwM2M path the operator names (`/3/0/9`: an object, an instance, a
/// resource, each 0 to 65535), or `None` for one that is not.
pub fn resource_path(text: &str) -> Option<Vec<&str>> {
    let segments: Vec<&str> = text.strip_prefix('/')?.split('/').collect();
    let numbers = segments
        .iter()
        .all(|s| !s.is_empty() && s.len() <= 5 && s.bytes().all(|b| b.is_ascii_digit()) && s.parse::<u16>().is_ok());
    (numbers && (1..=3).contains(&segments.len())).then_some(segments)
}

pub(super) fn request(method: RequestType, path: &[&str]) -> Packet {
    let mut packet = Packet::new();
    packet.header.set_type(MessageType::Confirmable);
    packet.header.code = MessageClass::Request(method);
    for segment in path {
        packet.add_option(CoapOption::UriPath, segment.as_bytes().to_vec());
    }
    packet
}

/// The integers of a multiple resource read as TLV (its resource instances), whether they
/// come inside the resource's entry or bare; none for what does not read.
fn protocols(payload: &[u8]) -> Vec<i64> {
    let Some(entries) = tlv::entries(payload) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in entries {
        match entry.kind {
            tlv::Kind::MultipleResource => {
                let inner = tlv::entries(entry.value).unwrap_or_default();
                out.extend(inner.iter().filter_map(|i| tlv::integer(i.value)));
            }
            tlv::Kind::ResourceInstance => out.extend(tlv::integer(entry.value)),
            _ => {}
        }
    }
    out
}

/// A response's code as CoAP writes it (`4.05`).
fn code_text(packet: &Packet) -> String {
    let code = u8::from(packet.header.code);
    format!("{}.{:02}", code >> 5, code & 0x1F)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notification(format: Option<u16>, payload: Vec<u8>) -> Packet {
        let mut packet = Packet::new();
        packet.header.code = MessageClass::Response(ResponseType::Content);
        if let Some(format) = format {
            packet.add_option(CoapOption::ContentFormat, format.to_be_bytes().to_vec());
        }
        packet.payload = payload;
        packet
    }

    #[test]
    fn error_codes_are_read_from_tlv_or_text() {
        // /3/0/11 as a multiple resource of two instances, as a device in an error burst sends.
        let mut instances = Vec::new();
        tlv::write(&mut instances, tlv::Kind::ResourceInstance, 0, &tlv::int_bytes(17));
        tlv::write(&mut instances, tlv::Kind::ResourceInstance, 1, &tlv::int_bytes(42));
        let mut resource = Vec::new();
        tlv::write(&mut resource, tlv::Kind::MultipleResource, 11, &instances);
        let tlv = Some(tlv::CONTENT_FORMAT);
        assert_eq!(error_codes(&notification(tlv, resource)), Some(vec![17, 42]));
        // The instances at the top level, as a Read of /3/0/11 may give them.
        assert_eq!(error_codes(&notification(tlv, instances)), Some(vec![17, 42]));
        // "No error": one instance of 0, in text.
        assert_eq!(error_codes(&notification(None, b"0".to_vec())), Some(vec![0]));
        // What does not parse is nothing, not a panic.
        assert_eq!(error_codes(&notification(tlv, vec![0xC8, 0x0B])), None);
        assert_eq!(error_codes(&notification(None, vec![0xFF, 0x00])), None);
        assert_eq!(error_codes(&notification(Some(0xFFFF), b"17,42".to_vec())), None);
    }
}
