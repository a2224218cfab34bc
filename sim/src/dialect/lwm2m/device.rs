//! An LwM2M device (OMA LwM2M 1.0, the registration and device-management interfaces) over
//! CoAP: it registers with its objects (`POST /rd?ep=..&lt=..&lwm2m=1.0&b=U`, link format)
//! and keeps where the server put the registration; it updates the registration after every
//! reconnect (from its new port: the server learns the new address), registers afresh after a
//! restart (a reboot, an installed update, the watchdog: its observations are gone too) and,
//! when it reports, once 90% of the lifetime has passed or the server executed /1/0/8; a
//! server that no longer knows the registration (4.04) gets a new one. It answers the
//! server's requests as they come, on the acknowledgement of each: Read (text, TLV, LwM2M
//! JSON or SenML JSON, as the server's Accept asks), Discover, Write (the lifetime; the reference backend's config
//! document), Write-Attributes (`pmin`, `pmax`, `gt`, `lt`, `st`, passed down from objects and
//! instances), Execute (Reboot goes to the device core as a reboot command; /1/0/8 updates the
//! registration) and Observe and its cancel. Its reports become notifications of what is
//! observed, as the attributes allow: confirmable for a model with `qos = 1` (`publish.latency`
//! to the acknowledgement), non-confirmable for `qos = 0`.
//!
//! Against the reference backend a device provisions by claim over CoAP first, and retires
//! when its Register is refused (decommissioned).
//!
//! A duty-cycled device registers in queue mode (binding `UQ`), updates its registration at
//! each wake and holds no socket asleep; what the server observes is kept through its sleep,
//! so each wake's report notifies its observers (from the new port, under the old tokens).
//!
//! A device that retires (a `decommission` phase against a server fleetsim has no operator
//! for) De-registers; one retired by the reference backend learns it when refused.
//!
//! A device whose model takes updates exposes object 5, both ways. It pulls: a Package URI
//! written (`http://` or `coap://`, with the image's `size` and `sha256` in its query) starts
//! the download the model paces and cuts. It takes a push: the package written to /5/0/0
//! block-wise (Block1, RFC 7959), block after block, its version read from its first line
//! (`fleetsim-image VERSION`). Either way the verified image is held (Downloaded) until the
//! server executes Update, and the reboot ends in the Update Result the model drew (success,
//! or the old firmware kept), or integrity failure for a corrupt image. State and result
//! changes notify their observers.
//!
//! A device may register over DTLS with a pre-shared key (`[backend.psk]`), and may bootstrap
//! first (`bootstrap = true`): its bootstrap server writes the server it registers with and
//! the key it opens its DTLS session with ([`super::bootstrap`]).

use std::time::Duration;

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType, ResponseType};
use tokio::time::Instant;

use super::Lwm2m;
use super::bootstrap::{self as bs, Server};
use super::formats::{self, Format};
use super::objects::{self, FirmwareUpdate, Path, Refusal, State, fw, ids};
use crate::device::{Actions, CommandKind, Event, OtaReport, SimTime, State as CoreState};
use crate::dialect::embedded::claim_name;
use crate::dialect::embedded::diary::{Diary, Pending};
use crate::dialect::firmware::{self, Attempt, ImageHash, Job, Update};
use crate::dialect::{Answer, Arrival, DeviceCx, Devices, Fault, Inbox, Link, Provisioned, Report, Session};
use crate::metrics::recorder::{Counter, Latency};
use crate::model::draw::keyed_unit;
use crate::model::ota::Delivery;
use crate::transport::blockwise::{self, Block, BlockwiseError};
use crate::transport::coap;
use crate::transport::datagram::Datagram;
use crate::transport::dtls::DtlsError;
use crate::transport::exhausted_here;
use crate::transport::tls::TlsFailure;
use fleetsim_backend::lwm2m::block;

impl Lwm2m {
    /// A refusal of a provisioned device by the reference backend is its decommissioning.
    fn retired(&self, fault: Fault) -> Fault {
        match fault {
            Fault::Auth if self.reference.is_some() => Fault::Retired,
            other => other,
        }
    }
}

impl Lwm2m {
    /// Opens the device's socket to its server (the one its bootstrap named, else the
    /// dialect's): over DTLS, with its own key, for a secured server (the handshake timed as
    /// `tls.handshake.latency`, counted as a full handshake; one that fails is
    /// `errors.tls_handshake`, one unanswered `errors.timeout`).
    async fn open_server(&self, cx: &DeviceCx<'_>, device: &Device) -> Result<Datagram, Fault> {
        let (addr, psk) = match (&device.server, &self.secured) {
            (Some(server), _) => (server.addr, server.psk.clone()),
            (None, Some(secured)) => (secured.addr, Some(secured.psk(&cx.serial()))),
            (None, None) => (self.addr, None),
        };
        let Some(psk) = psk else {
            return open(addr, cx).await;
        };
        let started = Instant::now();
        match Datagram::open_secured(addr, cx.source, &psk, started + cx.model.link.connect_timeout).await {
            Ok(endpoint) => {
                cx.record(Latency::TlsHandshake, started);
                cx.count(Counter::TlsFull);
                Ok(endpoint)
            }
            Err(DtlsError::Timeout) => Err(Fault::Timeout),
            Err(DtlsError::Io(kind)) if exhausted_here(&std::io::Error::from(kind)) => Err(Fault::Local),
            Err(DtlsError::Io(_)) => Err(Fault::Refused),
            Err(DtlsError::Handshake(_)) => Err(Fault::Tls(TlsFailure::Handshake)),
        }
    }
}

/// Opens a socket of the device's own to `addr`.
async fn open(addr: std::net::SocketAddr, cx: &DeviceCx<'_>) -> Result<Datagram, Fault> {
    Datagram::open(addr, cx.source).await.map_err(|e| {
        if exhausted_here(&e) {
            Fault::Local
        } else {
            Fault::Refused
        }
    })
}

/// Where device `cx`'s message ids start: where the run's key and the device put them (RFC
/// 7252, section 4.4, asks for a random start). Devices that all started at 1 would send a
/// server the same ids in turn, and a server takes an id it has just seen for a
/// retransmission.
fn first_id(cx: &DeviceCx<'_>) -> u16 {
    (draw(cx, 0) * f64::from(u16::MAX)) as u16 | 1
}

/// The share of its lifetime after which a registration is updated.
const UPDATE_AT: f64 = 0.9;

/// The most paths a device keeps attributes for (it has fewer readable paths than this).
const MAX_ATTRIBUTES: usize = 32;

/// The most requests of the server's a device keeps to answer while it waits on its own.
const MAX_SERVED_WHILE_WAITING: usize = 16;

/// What a sleeping device keeps: where its registration is, the id the reference backend
/// gave it, the lifetime it holds, its next message id (a server takes a message id it has
/// just seen for a retransmission), and what the server set up on the registration: its
/// observations (LwM2M 1.1, section 6.4.2: a queue-mode client notifies what changed while it
/// slept when it next wakes), their next sequence number, attributes and object 5.
#[derive(Debug)]
pub struct Registration {
    location: Option<Box<str>>,
    device_id: Option<Box<str>>,
    server: Option<Box<Server>>,
    observations: Vec<Observation>,
    configured: Option<Box<Configured>>,
    lifetime_s: u32,
    observe_seq: u32,
    next_id: u16,
}

/// An awake LwM2M device's protocol state.
#[derive(Debug)]
pub struct Device {
    /// Where the server keeps the registration (`rd/5`), once registered.
    location: Option<Box<str>>,
    /// The id the reference backend gave the device at provisioning (what its operator's
    /// commands name it by).
    device_id: Option<Box<str>>,
    /// The server a bootstrap named, and its key: where the device registers (`None`: the
    /// dialect's).
    server: Option<Box<Server>>,
    /// When the server last accepted the registration or an update of it.
    renewed: Option<Instant>,
    /// The lifetime the registration holds, real seconds (0: the model's, not yet worked out).
    lifetime_s: u32,
    /// The next CoAP message id this device sends (0: not yet drawn).
    next_id: u16,
    /// The next Observe sequence number of a notification.
    observe_seq: u32,
    /// The server executed /1/0/8, or wrote the lifetime: update the registration now.
    update_asked: bool,
    /// The server wrote the lifetime: the next update tells it back (`lt=`), as the
    /// specification asks.
    lifetime_written: bool,
    /// The battery's level at the last report, percent.
    battery: Option<u8>,
    /// The sensor's last reading (NaN before the first: the resource reads as absent).
    reading: f64,
    /// The radio's signal strength at the last report, dBm, for a model that gives one.
    rssi: Option<i16>,
    /// The last report was made in an error burst: object 3 reads its model's error codes.
    erring: bool,
    /// The message id of the last confirmable request served: a retransmission of it is
    /// answered again but not applied again (a reboot executed once).
    last_request: Option<u16>,
    /// What the server observes.
    observations: Vec<Observation>,
    /// What the server set up beyond the registration, once it did: boxed, since most
    /// devices never hold any.
    configured: Option<Box<Configured>>,
    /// What an always-connected device of the reference backend keeps of its life, for the
    /// commands that ask (`logs`, `diagnose`, `set`); made at its first noted event.
    diary: Option<Box<Diary>>,
}

/// What a server set up on a device beyond its registration.
#[derive(Debug, Default)]
struct Configured {
    /// The notification attributes set by Write-Attributes, by path.
    attributes: Vec<(Path, Attributes)>,
    /// Object 5, once a Package URI was written.
    firmware: Option<Object5>,
    /// The token of the command Execute being carried out, for its separate response.
    command_token: Option<Box<[u8]>>,
}

/// A device's object 5 once a server wrote a Package URI or a package's first block: the
/// update taken (its job and download), where it is as the object reads, and the version the
/// last update installed.
#[derive(Debug, Default)]
struct Object5 {
    uri: Box<str>,
    update: Option<Box<Update>>,
    state: u8,
    result: u8,
    installed: Option<Box<str>>,
    /// While a package is being pushed: the number of the block the device takes next (the
    /// bytes held are the job's size so far).
    next_block: Option<u32>,
}

/// Notification attributes (Write-Attributes): periods in seconds, thresholds in the
/// resource's unit.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Attributes {
    /// No notification sooner than this after the last.
    pmin: Option<u32>,
    /// A notification at least this often, report or not.
    pmax: Option<u32>,
    /// Greater Than: notify when the value crosses it, either way.
    gt: Option<f64>,
    /// Less Than: notify when the value crosses it, either way.
    lt: Option<f64>,
    /// Step: notify when the value moved at least this far from the last one notified.
    st: Option<f64>,
}

impl Attributes {
    /// These, with what `own` sets in their place (an instance's over its object's, a
    /// resource's over its instance's).
    fn under(self, own: Attributes) -> Attributes {
        Attributes {
            pmin: own.pmin.or(self.pmin),
            pmax: own.pmax.or(self.pmax),
            gt: own.gt.or(self.gt),
            lt: own.lt.or(self.lt),
            st: own.st.or(self.st),
        }
    }

    /// Whether a report's new reading `value` makes a notification go, given the last one
    /// notified (NaN before the first): always without gt, lt and st; with them, when it
    /// crossed gt or lt, or moved by st (LwM2M 1.0, section 5.1.2).
    fn moved(&self, last: f64, value: f64) -> bool {
        if (self.gt.is_none() && self.lt.is_none() && self.st.is_none()) || last.is_nan() || value.is_nan() {
            return true;
        }
        let crossed = |threshold: f64| (last > threshold) != (value > threshold);
        self.gt.is_some_and(crossed)
            || self.lt.is_some_and(crossed)
            || self.st.is_some_and(|st| (value - last).abs() >= st)
    }
}

/// `s` seconds.
fn secs(s: u32) -> Duration {
    Duration::from_secs(u64::from(s))
}

/// A CoAP token (at most 8 bytes, RFC 7252 section 5.3.1; coap-lite refuses longer), held
/// inline: an observation on the heap holds no second allocation for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Token {
    len: u8,
    bytes: [u8; 8],
}

impl Token {
    /// `token`'s first 8 bytes (all of it from a decoded packet).
    fn of(token: &[u8]) -> Token {
        let len = token.len().min(8);
        let mut bytes = [0; 8];
        bytes[..len].copy_from_slice(&token[..len]);
        Token { len: len as u8, bytes }
    }

    fn to_vec(self) -> Vec<u8> {
        self.bytes[..usize::from(self.len)].to_vec()
    }
}

/// One observation the server holds on the device.
#[derive(Debug)]
struct Observation {
    token: Token,
    path: Path,
    format: Format,
    /// The content-format number the server asked by.
    asked: Option<u16>,
    /// When the last notification went.
    last: Instant,
    /// The value it carried, for a single numeric resource (NaN otherwise, and before the
    /// first).
    last_value: f64,
}

impl Devices for Lwm2m {
    type Kept = Registration;
    type Device = Device;

    fn device_addr(&self) -> std::net::SocketAddr {
        self.addr
    }

    fn wake(&self, kept: Option<Registration>) -> Device {
        let kept = kept.unwrap_or(Registration {
            location: None,
            device_id: None,
            server: None,
            observations: Vec::new(),
            configured: None,
            lifetime_s: 0,
            observe_seq: 2,
            next_id: 0,
        });
        Device {
            location: kept.location,
            device_id: kept.device_id,
            server: kept.server,
            renewed: None,
            lifetime_s: kept.lifetime_s,
            next_id: kept.next_id,
            observe_seq: kept.observe_seq,
            update_asked: false,
            lifetime_written: false,
            battery: None,
            reading: f64::NAN,
            rssi: None,
            erring: false,
            last_request: None,
            observations: kept.observations,
            configured: kept.configured,
            diary: None,
        }
    }

    fn keep(&self, device: Device) -> Option<Registration> {
        if device.location.is_none() && device.device_id.is_none() && device.server.is_none() {
            return None;
        }
        Some(Registration {
            location: device.location,
            device_id: device.device_id,
            server: device.server,
            observations: device.observations,
            configured: device.configured,
            lifetime_s: device.lifetime_s,
            observe_seq: device.observe_seq,
            next_id: device.next_id,
        })
    }

    /// An LwM2M device is who its endpoint name (its serial) says; the reference backend's
    /// devices provision by claim first, over CoAP, from a socket of their own. A device that
    /// bootstraps then asks its bootstrap server, on the same socket, where to register.
    async fn provision(&self, cx: &DeviceCx<'_>, device: &mut Device) -> Result<Provisioned, Fault> {
        if self.reference.is_none() && !self.bootstrap {
            return Ok(Provisioned::Given);
        }
        let endpoint = open(self.addr, cx).await?;
        if device.next_id == 0 {
            device.next_id = first_id(cx);
        }
        if let Some(reference) = &self.reference {
            provision_by_claim(cx, device, &endpoint, &reference.claim_secret).await?;
        }
        if self.bootstrap {
            let server = bootstrap(cx, device, &endpoint).await?;
            if let Some(lifetime_s) = server.lifetime_s {
                device.lifetime_s = lifetime_s;
            }
            device.server = Some(Box::new(server));
        }
        Ok(Provisioned::Exchanged)
    }

    /// Opens the device's socket and registers, or updates the registration it holds (a
    /// server that no longer knows it gets a new one).
    async fn connect(&self, cx: &DeviceCx<'_>, device: &mut Device, session: Session) -> Result<Link, Fault> {
        let endpoint = self.open_server(cx, device).await?;
        if device.lifetime_s == 0 {
            device.lifetime_s = lifetime_s(cx);
        }
        if device.next_id == 0 {
            device.next_id = first_id(cx);
        }
        if device.location.is_some() {
            match update(cx, device, &endpoint, Instant::now(), &mut Vec::new()).await {
                Ok(()) => return Ok(Link::Datagram(endpoint)),
                Err(Fault::Status(404)) => device.location = None,
                Err(fault) => return Err(fault),
            }
        }
        let registered = register(cx, device, &endpoint, session, self.reference.is_some()).await;
        registered.map_err(|fault| self.retired(fault))?;
        Ok(Link::Datagram(endpoint))
    }

    /// Notifies what the server observes.
    fn report<'a>(
        &'a self,
        cx: &DeviceCx<'a>,
        device: &'a mut Device,
        link: &'a mut Link,
        report: Report<'_>,
        inbox: &'a mut Inbox,
    ) -> impl Future<Output = ()> + use<'a> {
        device.battery = report.reading.battery.map(|b| (b * 100.0).round() as u8);
        device.reading = report.reading.value;
        device.rssi = report.reading.rssi;
        device.erring = !report.reading.errors.is_empty();
        if let Some(id) = &device.device_id {
            // The reference backend's alert rules read what it observes: the battery in whole
            // percent (/3/0/9), the sensor's value.
            cx.shared.marks.alerts.reported(
                id,
                cx.group,
                report.intended,
                device.battery.map(|percent| f64::from(percent) / 100.0),
                (report.reading.value, device.erring),
            );
        }
        let (cx, why) = (*cx, (report.qos, report.intended, Why::Report));
        async move { notify_on(&cx, device, link, why, inbox).await }
    }

    /// A registered, connected device updates its registration at [`UPDATE_AT`] of its
    /// lifetime, whenever it reports, and at once when the server asked for it (executed
    /// /1/0/8, wrote the lifetime). A duty-cycled device does at each wake instead ([`connect`]).
    /// So is a notification of an observation whose `pmax` passes before a report comes.
    fn due(&self, device: &Device) -> Option<Instant> {
        let update = device.update_at()?;
        Some(device.pmax_due().map_or(update, |pmax| pmax.min(update)))
    }

    /// Notifies what `pmax` asks for, then updates the registration if that is due (a server
    /// that no longer knows it gets a new one); an update that fails loses the link, and the
    /// device connects again as after any loss.
    async fn on_due(&self, cx: &DeviceCx<'_>, device: &mut Device, link: &mut Link, inbox: &mut Inbox) {
        let now = Instant::now();
        let Link::Datagram(endpoint) = link else {
            // Nothing is due again before a connect registers.
            device.renewed = None;
            return;
        };
        let mut events = Vec::new();
        let mut lost = false;
        if let Some(pmax) = device.pmax_due()
            && pmax <= now
        {
            let why = (cx.model.telemetry.qos, pmax, Why::Pmax);
            lost = notify(cx, device, endpoint, why, &mut events).await;
        }
        if !lost && let Some(since) = device.update_at().filter(|at| *at <= now) {
            // Nothing is due again before an update succeeds (or a connect registers).
            device.renewed = None;
            let updated = match update(cx, device, endpoint, since, &mut events).await {
                Err(Fault::Status(404)) => {
                    device.location = None;
                    let fleetsim = self.reference.is_some();
                    register(cx, device, endpoint, Session::of(cx.model), fleetsim).await
                }
                other => other,
            };
            match updated.map_err(|fault| self.retired(fault)) {
                Ok(()) => {}
                // Counted when the connect that follows is refused the same way.
                Err(Fault::Retired) => lost = true,
                Err(fault) => {
                    cx.count(fault.counter());
                    lost = true;
                }
            }
        }
        for event in events {
            inbox.push(event);
        }
        if lost {
            device.renewed = None;
            link.drop_conn();
            inbox.push(Event::ConnectionLost);
        }
    }

    /// Answers went on the acknowledgement of each request, as it came ([`Devices::read`]):
    /// what is left is to measure the operator's config push and command, to now, and to
    /// notify the observers of object 5 of an update's progress.
    async fn answer(&self, cx: &DeviceCx<'_>, device: &mut Device, link: &mut Link, answer: Answer, inbox: &mut Inbox) {
        match answer {
            Answer::Ota(report) => {
                if !device.firmware_mut().is_some_and(|object| object.moved(report)) {
                    return;
                }
                let why = (cx.model.telemetry.qos, Instant::now(), Why::Firmware);
                notify_on(cx, device, link, why, inbox).await;
            }
            Answer::Config { since: Some(since), .. } => cx.record(Latency::Config, since),
            Answer::Command(health) => {
                let sent = device
                    .device_id
                    .as_deref()
                    .and_then(|id| cx.shared.marks.command_sent_at(id));
                let pending = device.diary.as_deref_mut().and_then(|diary| diary.command.take());
                let token = device.configured.as_deref_mut().and_then(|c| c.command_token.take());
                let (Some(command), Some(token)) = (pending, token) else {
                    // A reboot (an Execute of /3/0/4, answered as it came): carried out now.
                    if let Some(since) = sent {
                        cx.record(Latency::Command, since);
                    }
                    return;
                };
                let firmware = device.installed().unwrap_or(&cx.model.firmware).to_owned();
                let Some(diary) = device.diary.as_deref_mut() else {
                    return;
                };
                let answered = diary.answer(&command, &health, &firmware);
                // The separate response to the Execute, confirmable (RFC 7252, section 5.2.2).
                let mut response = Packet::new();
                response.header.set_type(MessageType::Confirmable);
                response.header.code = MessageClass::Response(ResponseType::Changed);
                response.header.message_id = device.id();
                response.set_token(token.into_vec());
                response.set_content_format_number(50);
                response.payload = answered.result.to_string().into_bytes();
                let Link::Datagram(endpoint) = link else { return };
                let mut events = Vec::new();
                match ask(cx, device, endpoint, &response, &mut events).await {
                    Ok(_) => {
                        if let Some(since) = sent {
                            cx.record(Latency::Command, since);
                        }
                    }
                    Err(fault) => cx.count(fault.counter()),
                }
                for event in events {
                    inbox.push(event);
                }
            }
            Answer::Config { since: None, .. } | Answer::Certificate => {}
        }
    }

    /// De-registers a registered device (`DELETE` of its registration), from its socket or,
    /// asleep, from a new one: the server forgets it now rather than when its lifetime runs
    /// out. `deregister.latency` runs from the phase's time to the server's 2.02 Deleted.
    async fn retire(&self, cx: &DeviceCx<'_>, device: &mut Device, link: &mut Link, intended: Instant) {
        let Some(location) = device.location.take() else {
            link.drop_conn();
            return;
        };
        let endpoint = match std::mem::take(link) {
            Link::Datagram(endpoint) => endpoint,
            _ => match self.open_server(cx, device).await {
                Ok(endpoint) => endpoint,
                Err(fault) => {
                    cx.count(fault.counter());
                    return;
                }
            },
        };
        let segments: Vec<&str> = location.split('/').collect();
        let packet = request(device, RequestType::Delete, &segments);
        match ask(cx, device, &endpoint, &packet, &mut Vec::new()).await {
            Ok(answer) if answer.header.code == MessageClass::Response(ResponseType::Deleted) => {
                cx.record(Latency::Deregister, intended);
                cx.count(Counter::Lwm2mDeregistrations);
            }
            Ok(answer) => cx.count(refusal(answer.header.code).counter()),
            Err(fault) => cx.count(fault.counter()),
        }
    }

    /// Fetches bytes of the package a Package URI named: over HTTP (a Range request when
    /// resuming), or block-wise over CoAP for a `coap://` one (from the block that holds the
    /// next byte).
    async fn download(&self, cx: &DeviceCx<'_>, device: &mut Device, from: u64, to: u64) -> Attempt {
        let Some(mut update) = device.firmware_mut().and_then(|object| object.update.take()) else {
            return Attempt::Held(from);
        };
        let attempt = if update.job.url.starts_with("coap://") {
            Box::pin(pull_over_coap(cx, device, &mut update, (from, to))).await
        } else {
            update.download(cx, None, from, to).await
        };
        if let Some(object) = device.firmware_mut() {
            object.update = Some(update);
        }
        attempt
    }

    /// The version the last update installed, or the model's.
    fn firmware<'a>(&self, cx: &DeviceCx<'a>, device: &'a Device) -> &'a str {
        device.installed().unwrap_or(&cx.model.firmware)
    }

    /// An always-connected device of the reference backend keeps a journal of what it lived
    /// through (and the config version it applied), for the commands that ask; others keep
    /// nothing.
    fn note(
        &self,
        cx: &DeviceCx<'_>,
        device: &mut Device,
        now: SimTime,
        event: Event,
        moved: (CoreState, CoreState),
        actions: &Actions,
    ) {
        if actions.restart(event) {
            device.restarted();
        }
        if self.reference.is_none() || Session::of(cx.model) != Session::Persistent {
            return;
        }
        device.diary.get_or_insert_default().note(now, event, moved, actions);
    }

    /// Serves a request of the server's (answered at once, on `link`); a Reset of a
    /// notification cancels its observation; anything else that does not decode is counted.
    fn read(&self, cx: &DeviceCx<'_>, device: &mut Device, link: &Link, arrival: Arrival<'_>) -> Option<Event> {
        let Arrival::Datagram(bytes) = arrival else {
            cx.count(Counter::ErrorsProtocol);
            return None;
        };
        let (answer, event) = answer(cx, device, bytes)?;
        // A lost answer is asked for again by the server's retransmission.
        let _ = link.try_send(&answer);
        event
    }
}

/// What device `cx` answers a datagram from its server with, and the event it means to the
/// device: the whole of what [`Devices::read`] does but the send (the fuzz target's entry).
/// What does not decode is counted (`errors.protocol`) and answers nothing.
pub fn answer(cx: &DeviceCx<'_>, device: &mut Device, bytes: &[u8]) -> Option<(Vec<u8>, Option<Event>)> {
    let Some(packet) = coap::decode(bytes) else {
        cx.count(Counter::ErrorsProtocol);
        return None;
    };
    serve(cx, device, &packet)
}

impl Device {
    /// What the server set up, made the first time it sets something.
    fn configured(&mut self) -> &mut Configured {
        self.configured.get_or_insert_default()
    }

    /// The notification attributes the server set, by path.
    fn attributes(&self) -> &[(Path, Attributes)] {
        self.configured.as_ref().map_or(&[], |c| &c.attributes)
    }

    /// Object 5, once a Package URI was written.
    fn firmware_mut(&mut self) -> Option<&mut Object5> {
        self.configured.as_mut()?.firmware.as_mut()
    }

    /// The attributes the server set on `path` itself.
    fn own_attributes(&self, path: Path) -> Attributes {
        self.attributes()
            .iter()
            .find(|(p, _)| *p == path)
            .map_or_else(Attributes::default, |(_, a)| *a)
    }

    /// The attributes that hold for `path`: its object's, under its instance's, under its own.
    fn attributes_of(&self, path: Path) -> Attributes {
        let object = Path {
            object: path.object,
            instance: None,
            resource: None,
        };
        let mut held = self.own_attributes(object);
        if let Some(instance) = path.instance {
            let instance = Path {
                instance: Some(instance),
                ..object
            };
            held = held.under(self.own_attributes(instance));
            if path.resource.is_some() {
                held = held.under(self.own_attributes(path));
            }
        }
        held
    }

    /// When the registration is to be updated: at [`UPDATE_AT`] of its lifetime, or at once
    /// when the server asked; `None` while it holds none.
    fn update_at(&self) -> Option<Instant> {
        let renewed = self.renewed?;
        Some(if self.update_asked {
            renewed
        } else {
            renewed + secs(self.lifetime_s).mul_f64(UPDATE_AT)
        })
    }

    /// The device restarts: what a client holds in memory is gone, its registration among it:
    /// it registers afresh when it is back (a client registers after it boots), and the new
    /// registration starts with nothing observed ([`register`]). What it sends before it
    /// goes (an update's last notifications) still reaches its observers. Object 5's state
    /// and result, and what it installed, stay (they live in flash), as do its endpoint,
    /// identity and keys.
    fn restarted(&mut self) {
        self.location = None;
        self.renewed = None;
        self.update_asked = false;
        self.lifetime_written = false;
    }

    /// A new registration: the server holds no observation or attribute of the device's
    /// from before (RFC 7641's observations live with the registration that made them).
    fn registering(&mut self) {
        self.observations.clear();
        self.last_request = None;
        if let Some(configured) = self.configured.as_deref_mut() {
            configured.attributes.clear();
        }
    }

    /// When the next observation's `pmax` passes, if any has one.
    fn pmax_due(&self) -> Option<Instant> {
        self.observations
            .iter()
            .filter_map(|o| Some(o.last + secs(self.attributes_of(o.path).pmax?)))
            .min()
    }

    /// A fresh message id.
    fn id(&mut self) -> u16 {
        let id = self.next_id;
        // 0 means "not yet drawn": skipped.
        self.next_id = self.next_id.wrapping_add(1).max(1);
        id
    }

    /// The version the last update installed, if one did.
    fn installed(&self) -> Option<&str> {
        self.configured.as_ref()?.firmware.as_ref()?.installed.as_deref()
    }

    /// What the device's objects read now.
    fn state<'a>(&'a self, cx: &'a DeviceCx<'_>, serial: &'a str) -> State<'a> {
        let firmware_update =
            cx.model
                .ota
                .as_ref()
                .map(|ota| match self.configured.as_ref().and_then(|c| c.firmware.as_ref()) {
                    Some(object) => FirmwareUpdate {
                        state: object.state,
                        result: object.result,
                        uri: &object.uri,
                        version: object.update.as_ref().map_or("", |update| &update.job.version),
                        delivery: ota.delivery.resource(),
                    },
                    None => FirmwareUpdate {
                        delivery: ota.delivery.resource(),
                        ..FirmwareUpdate::default()
                    },
                });
        State {
            serial,
            model: &cx.model.name,
            firmware: self.installed().unwrap_or(&cx.model.firmware),
            battery: self.battery,
            reading: self.reading,
            rssi: self.rssi,
            lifetime_s: self.lifetime_s,
            binding: binding(cx),
            errors: if self.erring { cx.model.faults.codes() } else { &[] },
            firmware_update,
            reported: self.diary.as_deref().map(|diary| diary.reported().to_string()),
        }
    }
}

/// The registration lifetime device `cx` asks for: its model's, in real seconds.
fn lifetime_s(cx: &DeviceCx<'_>) -> u32 {
    let real = cx.model.lifetime.as_secs_f64() / cx.shared.time_scale;
    real.ceil().clamp(1.0, f64::from(u32::MAX)) as u32
}

/// `UQ` (queue mode) for a duty-cycled device, `U` otherwise.
fn binding(cx: &DeviceCx<'_>) -> &'static str {
    if cx.model.telemetry.duty_cycle { "UQ" } else { "U" }
}

/// Where the first retransmission timeout of message `id` falls within CoAP's random factor:
/// from the run's key, the device and the message, so a run's retransmissions follow its seed.
fn jitter(cx: &DeviceCx<'_>, id: u16) -> f64 {
    draw(cx, u64::from(id) + 1)
}

/// A draw in [0, 1) from the run's key, the device and `what`, apart from the device's
/// other keyed draws (its radio's).
fn draw(cx: &DeviceCx<'_>, what: u64) -> f64 {
    const COAP: u64 = 0xC0A9_0000_0000_0000;
    keyed_unit(cx.shared.serial_key, cx.index, COAP ^ what)
}

/// A confirmable request of the device's: `method` on the Uri-Path segments `path`.
fn request(device: &mut Device, method: RequestType, path: &[&str]) -> Packet {
    let mut packet = Packet::new();
    packet.header.set_type(MessageType::Confirmable);
    packet.header.code = MessageClass::Request(method);
    packet.header.message_id = device.id();
    let token = device.next_id.wrapping_mul(0x9E37) ^ 0x5A5A;
    packet.set_token(token.to_be_bytes().to_vec());
    for segment in path {
        packet.add_option(CoapOption::UriPath, segment.as_bytes().to_vec());
    }
    packet
}

/// Sends `request` and waits for its answer, serving what the server asks meanwhile (its
/// events go to `events`).
async fn ask(
    cx: &DeviceCx<'_>,
    device: &mut Device,
    endpoint: &Datagram,
    request: &Packet,
    events: &mut Vec<Event>,
) -> Result<Packet, Fault> {
    let jitter = jitter(cx, request.header.message_id);
    let mut served = Vec::new();
    let answer = coap::exchange(endpoint, request, jitter, &cx.shared.meter, |other| {
        // A server that floods a waiting device is answered for the first few; it sends the
        // others again.
        if served.len() < MAX_SERVED_WHILE_WAITING {
            served.push(other);
        }
    })
    .await;
    // Requests that came while waiting are served after the wait (in order), which a server
    // sees as a slow answer, never a lost one: it sends a request again until answered.
    for packet in served {
        if let Some((bytes, event)) = serve(cx, device, &packet) {
            let _ = endpoint.try_send(&bytes);
            events.extend(event);
        }
    }
    answer.map_err(Fault::from)
}

/// A response's code as a fault: a refusal of the device (4.01, 4.03) is an authentication
/// failure, a server that no longer knows the registration is `Status(404)` (register again),
/// a server too busy to serve (5.03) `Status(503)`, anything else a protocol error.
fn refusal(code: MessageClass) -> Fault {
    match code {
        MessageClass::Response(ResponseType::Unauthorized | ResponseType::Forbidden) => Fault::Auth,
        MessageClass::Response(ResponseType::NotFound) => Fault::Status(404),
        MessageClass::Response(ResponseType::ServiceUnavailable) => Fault::Status(503),
        _ => Fault::Protocol,
    }
}

/// Provisions by claim with the reference backend (`POST /provision?ep=SERIAL&claim=NAME`,
/// the claim's secret and what the device is in a JSON payload): keeps the device id the
/// answer gives.
async fn provision_by_claim(
    cx: &DeviceCx<'_>,
    device: &mut Device,
    endpoint: &Datagram,
    claim_secret: &str,
) -> Result<(), Fault> {
    let mut packet = request(device, RequestType::Post, &["provision"]);
    for query in [format!("ep={}", cx.serial()), format!("claim={}", claim_name(cx.group))] {
        packet.add_option(CoapOption::UriQuery, query.into_bytes());
    }
    let body = serde_json::json!({
        "secret": claim_secret,
        "model": cx.model.name,
        "firmware": cx.model.firmware,
    });
    packet.payload = body.to_string().into_bytes();
    let answer = ask(cx, device, endpoint, &packet, &mut Vec::new()).await?;
    if answer.header.code != MessageClass::Response(ResponseType::Created) {
        return Err(refusal(answer.header.code));
    }
    let granted: serde_json::Value = serde_json::from_slice(&answer.payload).map_err(|_| Fault::Protocol)?;
    let id = granted["device_id"].as_str().ok_or(Fault::Protocol)?;
    device.device_id = Some(id.into());
    Ok(())
}

/// How long a device waits for its bootstrap server's next request, real time, before its
/// bootstrap has failed (timed out).
const BOOTSTRAP_WAIT: Duration = Duration::from_secs(30);

/// Bootstraps (LwM2M 1.0, section 5.2.7): a Bootstrap-Request (`POST /bs?ep=SERIAL`), then
/// the server's Deletes and Writes until Bootstrap-Finish, which must name a server the
/// device can reach ([`bs::serve`]). `bootstrap.latency` runs from the request to the
/// finish, counted as `lwm2m.bootstraps`; a server that goes quiet for [`BOOTSTRAP_WAIT`] is
/// `errors.timeout`, a finish with nothing usable `errors.protocol`.
async fn bootstrap(cx: &DeviceCx<'_>, device: &mut Device, endpoint: &Datagram) -> Result<Server, Fault> {
    let started = Instant::now();
    let mut packet = request(device, RequestType::Post, &["bs"]);
    packet.add_option(CoapOption::UriQuery, format!("ep={}", cx.serial()).into_bytes());
    let jitter = jitter(cx, packet.header.message_id);
    let mut waiting = std::collections::VecDeque::new();
    // The server's requests may come before its answer: kept, and taken after it.
    let answer = coap::exchange(endpoint, &packet, jitter, &cx.shared.meter, |early| {
        if waiting.len() < MAX_SERVED_WHILE_WAITING {
            waiting.push_back(early);
        }
    })
    .await
    .map_err(Fault::from)?;
    if answer.header.code != MessageClass::Response(ResponseType::Changed) {
        return Err(refusal(answer.header.code));
    }
    let mut written = bs::Written::default();
    let mut deadline = Instant::now() + BOOTSTRAP_WAIT;
    loop {
        let request = match waiting.pop_front() {
            Some(request) => request,
            None => {
                let datagram = tokio::time::timeout_at(deadline, endpoint.receive())
                    .await
                    .map_err(|_| Fault::Timeout)?
                    .map_err(|_| Fault::Refused)?;
                let Some(request) = coap::decode(&datagram) else {
                    cx.count(Counter::ErrorsProtocol);
                    continue;
                };
                request
            }
        };
        let id = device.id();
        let Some((answer, step)) = bs::serve(&mut written, &request, id) else {
            continue;
        };
        if let Ok(bytes) = answer.to_bytes() {
            // A lost answer is asked for again by the server's retransmission.
            let _ = endpoint.try_send(&bytes);
        }
        deadline = Instant::now() + BOOTSTRAP_WAIT;
        match step {
            bs::Step::Going => {}
            bs::Step::Finished(server) => {
                cx.record(Latency::Bootstrap, started);
                cx.count(Counter::Lwm2mBootstraps);
                return Ok(server);
            }
            bs::Step::Unusable => return Err(Fault::Protocol),
        }
    }
}

/// Registers: endpoint name, lifetime, version and binding in the query, the object links
/// as the payload; keeps the Location-Path the server answers 2.01 Created with.
/// `fleetsim` adds fleetsim's object, for the reference backend.
async fn register(
    cx: &DeviceCx<'_>,
    device: &mut Device,
    endpoint: &Datagram,
    session: Session,
    fleetsim: bool,
) -> Result<(), Fault> {
    let started = Instant::now();
    device.registering();
    let mut packet = request(device, RequestType::Post, &["rd"]);
    let serial = cx.serial();
    let binding = if session == Session::DutyCycle {
        "UQ"
    } else {
        binding(cx)
    };
    for query in [
        format!("ep={serial}"),
        format!("lt={}", device.lifetime_s),
        "lwm2m=1.0".to_owned(),
        format!("b={binding}"),
    ] {
        packet.add_option(CoapOption::UriQuery, query.into_bytes());
    }
    packet.add_option(CoapOption::ContentFormat, vec![40]);
    packet.payload = objects::links(cx.model.link.signal.is_some(), cx.model.ota.is_some(), fleetsim).into_bytes();
    let answer = ask(cx, device, endpoint, &packet, &mut Vec::new()).await?;
    if answer.header.code != MessageClass::Response(ResponseType::Created) {
        return Err(refusal(answer.header.code));
    }
    let location: Vec<String> = answer
        .get_option(CoapOption::LocationPath)
        .into_iter()
        .flatten()
        .map(|segment| String::from_utf8_lossy(segment).into_owned())
        .collect();
    if location.is_empty() {
        return Err(Fault::Protocol);
    }
    device.location = Some(location.join("/").into_boxed_str());
    device.renewed = Some(Instant::now());
    device.update_asked = false;
    cx.record(Latency::Register, started);
    cx.count(Counter::Lwm2mRegistrations);
    Ok(())
}

/// Updates the registration (no parameters: the server learns the device's address from the
/// datagram); `update.latency` from `since`.
async fn update(
    cx: &DeviceCx<'_>,
    device: &mut Device,
    endpoint: &Datagram,
    since: Instant,
    events: &mut Vec<Event>,
) -> Result<(), Fault> {
    let Some(location) = device.location.clone() else {
        return Err(Fault::Status(404));
    };
    let segments: Vec<&str> = location.split('/').collect();
    let mut packet = request(device, RequestType::Post, &segments);
    if device.lifetime_written {
        packet.add_option(CoapOption::UriQuery, format!("lt={}", device.lifetime_s).into_bytes());
    }
    let answer = ask(cx, device, endpoint, &packet, events).await?;
    if answer.header.code != MessageClass::Response(ResponseType::Changed) {
        return Err(refusal(answer.header.code));
    }
    device.renewed = Some(Instant::now());
    device.update_asked = false;
    device.lifetime_written = false;
    cx.record(Latency::Update, since);
    cx.count(Counter::Lwm2mUpdates);
    Ok(())
}

/// The number a single numeric resource's reading holds (NaN for anything else).
fn values_number(values: &[(u16, u16, objects::Value)]) -> f64 {
    match values {
        [(_, _, objects::Value::Float(v))] => *v,
        #[allow(clippy::cast_precision_loss, reason = "a reading, compared with thresholds")]
        [(_, _, objects::Value::Integer(v))] => *v as f64,
        _ => f64::NAN,
    }
}

/// What makes a notification go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Why {
    /// A report: a new reading, sent once `pmin` has passed since the last notification.
    Report,
    /// `pmax` passed since the last notification, with no report: the last reading again.
    Pmax,
    /// An update moved on: object 5's observers hear its state and result.
    Firmware,
}

/// Notifies on the device's link what `why` makes go ([`notify`]), passes on what the server
/// asked meanwhile, and drops the link when its socket failed.
async fn notify_on(
    cx: &DeviceCx<'_>,
    device: &mut Device,
    link: &mut Link,
    why: (u8, Instant, Why),
    inbox: &mut Inbox,
) {
    let Link::Datagram(endpoint) = link else { return };
    let mut events = Vec::new();
    let lost = notify(cx, device, endpoint, why, &mut events).await;
    for event in events {
        inbox.push(event);
    }
    if lost {
        link.drop_conn();
        inbox.push(Event::ConnectionLost);
    }
}

/// Sends a notification for each observation `why` makes go, as confirmable messages for
/// `qos` 1 (`publish.latency` from `intended` to the acknowledgement); `true` when the socket
/// failed (the link is lost).
async fn notify(
    cx: &DeviceCx<'_>,
    device: &mut Device,
    endpoint: &Datagram,
    (qos, intended, why): (u8, Instant, Why),
    events: &mut Vec<Event>,
) -> bool {
    let serial = cx.serial();
    let now = Instant::now();
    let mut k = 0;
    while k < device.observations.len() {
        let (path, format, asked, last) = {
            let o = &device.observations[k];
            (o.path, o.format, o.asked, o.last)
        };
        k += 1;
        let read = device.state(cx, &serial).read(path);
        let goes = {
            let attributes = device.attributes_of(path);
            match why {
                Why::Report => {
                    now >= last + secs(attributes.pmin.unwrap_or(0))
                        && read.as_ref().map_or(true, |values| {
                            attributes.moved(device.observations[k - 1].last_value, values_number(values))
                        })
                }
                Why::Pmax => attributes.pmax.is_some_and(|pmax| now >= last + secs(pmax)),
                Why::Firmware => path.object == ids::FIRMWARE,
            }
        };
        if !goes {
            continue;
        }
        // Its period is spent, sent or not (a value that cannot be read now is not sent), so
        // a pmax never comes due again at once.
        device.observations[k - 1].last = now;
        let Ok(values) = read else {
            continue;
        };
        device.observations[k - 1].last_value = values_number(&values);
        let Some(payload) = formats::encode(format, path, &values) else {
            continue;
        };
        let mut packet = Packet::new();
        let confirmable = qos > 0;
        packet.header.set_type(if confirmable {
            MessageType::Confirmable
        } else {
            MessageType::NonConfirmable
        });
        packet.header.code = MessageClass::Response(ResponseType::Content);
        packet.set_token(device.observations[k - 1].token.to_vec());
        packet.set_observe_value(device.observe_seq & 0xFF_FFFF);
        packet.set_content_format_number(format.number(asked));
        packet.payload = payload;
        device.observe_seq = device.observe_seq.wrapping_add(1);
        packet.header.message_id = device.id();
        if confirmable {
            match ask(cx, device, endpoint, &packet, events).await {
                Ok(answer) if answer.header.get_type() == MessageType::Reset => {}
                Ok(_) => cx.record(Latency::Publish, intended),
                // A server that reset the notification observes no more; one that never
                // acknowledged it is no longer an observer (RFC 7641, section 4.5). The
                // registration's updates find out whether the server is gone.
                Err(fault @ (Fault::Refused | Fault::Timeout)) => {
                    cx.count(fault.counter());
                    device.observations.remove(k - 1);
                    k -= 1;
                    continue;
                }
                Err(_) => return true,
            }
        } else if endpoint.send(&packet.to_bytes().unwrap_or_default()).await.is_err() {
            return true;
        }
        cx.count(Counter::Published);
        cx.count(Counter::Lwm2mNotifications);
    }
    false
}

/// Sets a packet's content format by its number (coap-lite's own setter takes only the formats
/// it names, and neither LwM2M's TLV nor its JSON is among them).
trait ContentFormatNumber {
    fn set_content_format_number(&mut self, number: u16);
}

impl ContentFormatNumber for Packet {
    fn set_content_format_number(&mut self, number: u16) {
        self.clear_option(CoapOption::ContentFormat);
        self.add_option(CoapOption::ContentFormat, block::uint(u64::from(number)));
    }
}

/// A CoAP uint option's value; `None` past four bytes.
fn uint_of(bytes: &[u8]) -> Option<u32> {
    if bytes.len() > 4 {
        return None;
    }
    Some(bytes.iter().fold(0u32, |acc, b| acc << 8 | u32::from(*b)))
}

/// The server's request `packet`, served: the answer's bytes and the event it means to the
/// device; `None` for what is not a request (a stray acknowledgement, a Reset of a
/// notification, which cancels its observation).
fn serve(cx: &DeviceCx<'_>, device: &mut Device, packet: &Packet) -> Option<(Vec<u8>, Option<Event>)> {
    let MessageClass::Request(method) = packet.header.code else {
        if packet.header.get_type() == MessageType::Reset {
            // RFC 7641, section 3.6: a Reset of a notification cancels its observation. A
            // Reset names the message, not the token: forget the observations whose last
            // notification may have been it (the server that reset it observes nothing).
            device.observations.clear();
        }
        return None;
    };
    let repeated =
        packet.header.get_type() == MessageType::Confirmable && device.last_request == Some(packet.header.message_id);
    if packet.header.get_type() == MessageType::Confirmable {
        device.last_request = Some(packet.header.message_id);
    }
    let id = device.id();
    let mut answer = coap::answer_to(packet, id);
    let (code, event) = if let Some(option) = unknown_critical_option(packet) {
        // RFC 7252, section 5.4.1: a request with a critical option the device does not
        // understand (Block1 anywhere but a package's Write, Block2 on a request) is refused
        // whole.
        answer.payload = format!("option {option} not supported").into_bytes();
        (ResponseType::BadOption, None)
    } else {
        match Path::parse(
            packet
                .get_option(CoapOption::UriPath)
                .into_iter()
                .flatten()
                .map(Vec::as_slice),
        ) {
            None => (ResponseType::NotFound, None),
            Some(path) => match method {
                RequestType::Get => (read(cx, device, (packet, repeated), path, &mut answer), None),
                RequestType::Put if is_package_write(cx, packet, path) => {
                    write_package(cx, device, (packet, repeated), &mut answer)
                }
                RequestType::Put => write(cx, device, packet, path, repeated),
                RequestType::Post if objects::is_command(path) => {
                    return take_command(cx, device, packet, repeated, answer);
                }
                RequestType::Post => execute(device, path, repeated),
                _ => (ResponseType::MethodNotAllowed, None),
            },
        }
    };
    answer.header.code = MessageClass::Response(code);
    let counter = match (code, method) {
        (ResponseType::Content, _) => Counter::Lwm2mReads,
        (ResponseType::Changed | ResponseType::Continue, RequestType::Put) => Counter::Lwm2mWrites,
        (ResponseType::Changed, _) => Counter::Lwm2mExecutes,
        _ => Counter::Lwm2mRefused,
    };
    if !repeated {
        cx.count(counter);
    }
    let bytes = answer.to_bytes().ok()?;
    Some((bytes, event))
}

/// The first critical option (an odd number) of `packet` a device does not understand:
/// Block1 only in a PUT of object 5's package.
fn unknown_critical_option(packet: &Packet) -> Option<u16> {
    // Uri-Host, Uri-Port, Uri-Path, Uri-Query, Accept.
    const UNDERSTOOD: [u16; 5] = [3, 7, 11, 15, 17];
    const BLOCK1: u16 = 27;
    let package = packet.header.code == MessageClass::Request(RequestType::Put)
        && packet
            .get_option(CoapOption::UriPath)
            .is_some_and(|segments| segments.iter().map(Vec::as_slice).eq([&b"5"[..], b"0", b"0"]));
    packet
        .options()
        .map(|(number, _)| *number)
        .find(|number| number % 2 == 1 && !UNDERSTOOD.contains(number) && !(package && *number == BLOCK1))
}

/// A Read, Discover or Observe (start or cancel) of `path`, answered into `answer`.
/// A request sent again (`repeated`) is answered again and counted once.
fn read(
    cx: &DeviceCx<'_>,
    device: &mut Device,
    (request, repeated): (&Packet, bool),
    path: Path,
    answer: &mut Packet,
) -> ResponseType {
    let serial = cx.serial();
    let state = device.state(cx, &serial);
    let accept = match request.get_first_option(CoapOption::Accept) {
        Some(bytes) => match uint_of(bytes).and_then(|n| u16::try_from(n).ok()) {
            Some(number) => Some(number),
            None => return ResponseType::BadOption,
        },
        None => None,
    };
    let format = match accept {
        Some(number) => match Format::of(number) {
            Some(format) => format,
            None => return ResponseType::NotAcceptable,
        },
        // One single-instance resource as text; anything larger as TLV.
        None if path.resource.is_some() => Format::Text,
        None => Format::Tlv,
    };
    if format == Format::LinkFormat {
        return match state.discover(path) {
            Ok(links) => {
                answer.set_content_format_number(40);
                answer.payload = links.into_bytes();
                ResponseType::Content
            }
            Err(_) => ResponseType::NotFound,
        };
    }
    let values = match state.read(path) {
        Ok(values) => values,
        Err(Refusal::NotAllowed) => return ResponseType::MethodNotAllowed,
        Err(_) => return ResponseType::NotFound,
    };
    let Some(payload) = formats::encode(format, path, &values) else {
        return ResponseType::NotAcceptable;
    };
    let token = Token::of(request.get_token());
    match request.get_first_option(CoapOption::Observe).and_then(|v| uint_of(v)) {
        Some(0) => {
            device.observations.retain(|o| o.token != token && o.path != path);
            // One more at a time: a server observes a few paths, and a vector grown by
            // doubling would hold room for four from the first.
            device.observations.reserve_exact(1);
            device.observations.push(Observation {
                token,
                path,
                format,
                asked: accept,
                last: Instant::now(),
                last_value: values_number(&values),
            });
            if !repeated {
                cx.count(Counter::Lwm2mObserves);
            }
            answer.set_observe_value(device.observe_seq & 0xFF_FFFF);
            device.observe_seq = device.observe_seq.wrapping_add(1);
        }
        Some(1) => device.observations.retain(|o| o.token != token),
        // A Read: the operator's `read` command, when it asked for this path, is timed to now.
        None if !repeated => {
            if let Some(since) = device
                .device_id
                .as_deref()
                .and_then(|id| cx.shared.marks.read_taken(id, &path.to_string()))
            {
                cx.record(Latency::Read, since);
            }
        }
        _ => {}
    }
    answer.set_content_format_number(format.number(accept));
    answer.payload = payload;
    ResponseType::Content
}

/// A Write of the lifetime or of the config document, or Write-Attributes of any path the
/// device holds; nothing else on the device is writable.
fn write(
    cx: &DeviceCx<'_>,
    device: &mut Device,
    request: &Packet,
    path: Path,
    repeated: bool,
) -> (ResponseType, Option<Event>) {
    if objects::is_config(path) {
        return write_config(request, repeated);
    }
    if path.object == ids::FIRMWARE && cx.model.ota.is_some() && request.get_option(CoapOption::UriQuery).is_none() {
        return match (path.instance, path.resource) {
            (Some(0), Some(ids::PACKAGE_URI)) => write_package_uri(cx, device, request, repeated),
            (Some(0), Some(_)) | (Some(0), None) | (None, _) => (ResponseType::MethodNotAllowed, None),
            _ => (ResponseType::NotFound, None),
        };
    }
    (write_resource(cx, device, request, path, repeated), None)
}

/// A Write of object 5's Package URI: an `http://` URI with the image's size (and, to check
/// it, its SHA-256) in its query, `?size=N&sha256=HEX`, as the reference backend writes it,
/// starts the download; an empty one resets the object. A URI the device cannot use is taken
/// (2.04) and ends at once in the Update Result that says why: 9 for another protocol, 7 for
/// one without a size. Not while an update is under way, nor to a model that takes only
/// pushes (4.05).
fn write_package_uri(
    cx: &DeviceCx<'_>,
    device: &mut Device,
    request: &Packet,
    repeated: bool,
) -> (ResponseType, Option<Event>) {
    let format = request.get_first_option(CoapOption::ContentFormat).map(|v| uint_of(v));
    // text/plain or opaque.
    if !matches!(format, None | Some(Some(0 | 42))) {
        return (ResponseType::UnsupportedContentFormat, None);
    }
    let Ok(uri) = std::str::from_utf8(&request.payload) else {
        return (ResponseType::BadRequest, None);
    };
    if repeated {
        return (ResponseType::Changed, None);
    }
    if cx.model.ota.as_ref().is_some_and(|ota| ota.delivery == Delivery::Push) {
        return (ResponseType::MethodNotAllowed, None);
    }
    let object = device.configured().firmware.get_or_insert_default();
    if object.state != fw::IDLE {
        return (ResponseType::MethodNotAllowed, None);
    }
    object.uri = uri.into();
    object.result = fw::INITIAL;
    object.update = None;
    if uri.is_empty() {
        return (ResponseType::Changed, None);
    }
    match package_job(uri) {
        Ok(job) => {
            let image = cx.image_for(&job.version, job.size);
            // Downloading once the core starts (its report notifies the observers).
            object.update = Some(Update::new(job));
            cx.count(Counter::OtaJobs);
            (ResponseType::Changed, Some(Event::OtaJob(image)))
        }
        Err(result) => {
            object.result = result;
            (ResponseType::Changed, None)
        }
    }
}

/// The update a Package URI names (`http://` or `coap://`, its version the last path
/// segment), or the Update Result that says why the device cannot take it.
fn package_job(uri: &str) -> Result<Job, u8> {
    let (location, query) = uri.split_once('?').unwrap_or((uri, ""));
    let addressed = if location.starts_with("http://") {
        firmware::split_url(location, "http").is_some()
    } else if location.starts_with("coap://") {
        firmware::split_url(location, "coap").is_some()
    } else {
        let spoken_elsewhere = ["https://", "coaps://", "coap+tcp://", "coaps+tcp://"];
        return Err(if spoken_elsewhere.iter().any(|scheme| location.starts_with(scheme)) {
            fw::UNSUPPORTED_PROTOCOL
        } else {
            fw::INVALID_URI
        });
    };
    let version = location
        .rsplit('/')
        .next()
        .filter(|v| !v.is_empty() && !v.contains(':'));
    let (Some(version), true) = (version, addressed) else {
        return Err(fw::INVALID_URI);
    };
    let (mut size, mut hash, mut campaign) = (None, ImageHash::Unannounced, 0);
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some(("size", v)) => size = v.parse::<u64>().ok().filter(|size| *size > 0),
            Some(("sha256", v)) if v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()) => {
                hash = ImageHash::Sha256(v.to_ascii_lowercase());
            }
            Some(("campaign", v)) => campaign = v.parse().unwrap_or(0),
            _ => {}
        }
    }
    Ok(Job {
        campaign,
        url: location.to_owned(),
        hash,
        size: size.ok_or(fw::INVALID_URI)?,
        version: version.to_owned(),
    })
}

/// Fetches bytes `from..to` of the package a `coap://` URI names, block-wise from a socket of
/// the device's own, hashing them as they come; returns how many bytes of the image the
/// device holds afterwards. Counted as an HTTP download is (`ota.downloaded_bytes`,
/// `ota.download_ms`); a transfer cut short by the server is counted by its reason.
async fn pull_over_coap(
    cx: &DeviceCx<'_>,
    device: &mut Device,
    update: &mut Update,
    (from, to): (u64, u64),
) -> Attempt {
    // The hash below borrows the update; the URL is read from a copy.
    let url = update.job.url.clone();
    let Some((addr, path)) = firmware::split_url(&url, "coap") else {
        cx.count(Counter::ErrorsProtocol);
        return Attempt::Gone;
    };
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let endpoint = match open(addr, cx).await {
        Ok(endpoint) => endpoint,
        Err(fault) => {
            cx.count(fault.counter());
            return Attempt::Held(from);
        }
    };
    let started = std::time::Instant::now();
    let jitter = jitter(cx, device.next_id);
    let hasher = update.hashing(from);
    let mut ids = || device.id();
    let (taken, ended) = blockwise::get_blocks(
        &endpoint,
        &segments,
        (from, to),
        (&mut ids, jitter),
        &cx.shared.meter,
        &mut |bytes| hasher.update(bytes),
    )
    .await;
    if let Err(error) = ended {
        cx.count(match error {
            BlockwiseError::Exchange(error) => Fault::from(error).counter(),
            BlockwiseError::Refused(code) => refusal(code).counter(),
            BlockwiseError::Malformed => Counter::ErrorsProtocol,
        });
    }
    firmware::count_download(cx, taken, started);
    if matches!(
        ended,
        Err(BlockwiseError::Refused(MessageClass::Response(ResponseType::NotFound)))
    ) {
        return Attempt::Gone;
    }
    let held = from + taken;
    update.held(cx, held);
    Attempt::Held(held)
}

/// Whether `request` (a PUT of `path`) writes object 5's package: a device whose model takes
/// updates, no Write-Attributes query.
fn is_package_write(cx: &DeviceCx<'_>, request: &Packet, path: Path) -> bool {
    path.object == ids::FIRMWARE
        && path.instance == Some(0)
        && path.resource == Some(ids::PACKAGE)
        && cx.model.ota.is_some()
        && request.get_option(CoapOption::UriQuery).is_none()
}

/// The first line a fleetsim package starts with, before its version.
const PACKAGE_HEADER: &[u8] = b"fleetsim-image ";

/// The version a package's first block names (`fleetsim-image VERSION` and a newline), if it
/// names one: at most 64 printable characters.
fn package_version(first: &[u8]) -> Option<&str> {
    let rest = first.strip_prefix(PACKAGE_HEADER)?;
    let end = rest.iter().take(65).position(|b| *b == b'\n')?;
    let version = std::str::from_utf8(&rest[..end]).ok()?;
    (!version.is_empty() && version.bytes().all(|b| b.is_ascii_graphic())).then_some(version)
}

/// A Write of object 5's package (/5/0/0), block-wise (Block1, RFC 7959) or whole in one
/// request. Block 0 starts a transfer (the object idle, or a transfer under way started
/// again); each next block in order adds its bytes (2.31 Continue); the last one (no more
/// to follow) ends it (2.04): the device verifies the package, as after a pull, and holds it
/// until the server executes Update. A package without fleetsim's first line is taken and
/// ends in Update Result 6 (unsupported package type). A block out of order is refused with
/// 4.08 (the transfer so far kept), a full block of the wrong size with 4.00, any block
/// while an update is past its download with 4.05. An empty package without Block1 resets
/// the object. A retransmission is answered again and taken once.
fn write_package(
    cx: &DeviceCx<'_>,
    device: &mut Device,
    (request, repeated): (&Packet, bool),
    answer: &mut Packet,
) -> (ResponseType, Option<Event>) {
    let block = match request.get_first_option(CoapOption::Block1) {
        Some(bytes) => match Block::decode(bytes) {
            Some(block) => Some(block),
            None => return (ResponseType::BadRequest, None),
        },
        None => None,
    };
    if cx.model.ota.as_ref().is_some_and(|ota| ota.delivery == Delivery::Pull) {
        return (ResponseType::MethodNotAllowed, None);
    }
    let (num, more) = block.map_or((0, false), |b| (b.num, b.more));
    let confirm = |answer: &mut Packet, more: bool| {
        if let Some(block) = block {
            answer.add_option(CoapOption::Block1, Block { more, ..block }.encode());
        }
    };
    let object = device.configured().firmware.get_or_insert_default();
    if repeated {
        confirm(answer, more);
        return (
            if more {
                ResponseType::Continue
            } else {
                ResponseType::Changed
            },
            None,
        );
    }
    let pushing = object.next_block.is_some();
    if object.state != fw::IDLE && !pushing {
        return (ResponseType::MethodNotAllowed, None);
    }
    if block.is_none() && request.payload.is_empty() {
        *object = Object5 {
            installed: object.installed.take(),
            ..Object5::default()
        };
        return (ResponseType::Changed, None);
    }
    if num == 0 {
        object.uri = "".into();
        object.result = fw::INITIAL;
        object.state = fw::DOWNLOADING;
        object.update = Some(Update::new(Job {
            campaign: 0,
            url: String::new(),
            hash: ImageHash::Unannounced,
            size: 0,
            version: package_version(&request.payload).unwrap_or_default().to_owned(),
        }));
        cx.count(Counter::OtaJobs);
    } else if object.next_block != Some(num) {
        return (ResponseType::RequestEntityIncomplete, None);
    }
    if let Some(block) = block
        && more
        && request.payload.len() as u64 != block.size()
    {
        return (ResponseType::BadRequest, None);
    }
    let Some(update) = object.update.as_mut() else {
        return (ResponseType::InternalServerError, None);
    };
    update.job.size += request.payload.len() as u64;
    cx.shared
        .meter
        .add(Counter::OtaDownloadedBytes, request.payload.len() as u64);
    confirm(answer, more);
    if more {
        object.next_block = Some(num + 1);
        return (ResponseType::Continue, None);
    }
    object.next_block = None;
    let (size, version) = (update.job.size, update.job.version.clone());
    if version.is_empty() {
        (object.state, object.result) = (fw::IDLE, fw::UNSUPPORTED_PACKAGE);
        return (ResponseType::Changed, None);
    }
    (
        ResponseType::Changed,
        Some(Event::OtaReceived(cx.image_for(&version, size))),
    )
}

impl Object5 {
    /// Takes an update's progress as the object reads it; whether its state or result moved.
    fn moved(&mut self, report: OtaReport) -> bool {
        let (state, result) = match report {
            OtaReport::Downloading | OtaReport::Verifying => (fw::DOWNLOADING, fw::INITIAL),
            OtaReport::Downloaded => (fw::DOWNLOADED, fw::INITIAL),
            OtaReport::Installing | OtaReport::Rebooting => (fw::UPDATING, fw::INITIAL),
            OtaReport::Succeeded => (fw::IDLE, fw::SUCCESS),
            OtaReport::Failed => (fw::IDLE, fw::INTEGRITY_FAILURE),
            OtaReport::Unavailable => (fw::IDLE, fw::INVALID_URI),
            OtaReport::RolledBack => (fw::IDLE, fw::UPDATE_FAILED),
        };
        if report == OtaReport::Succeeded {
            self.installed = self.update.as_ref().map(|update| update.job.version.as_str().into());
        }
        let moved = (state, result) != (self.state, self.result);
        (self.state, self.result) = (state, result);
        moved
    }
}

/// An Execute of fleetsim's command resource (/32769/0/1) by the reference backend, its
/// payload `{"id", "command", "args"}` as JSON: acknowledged at once, empty, and answered by
/// a separate response with the command's result once the device core carried it out
/// ([`Devices::answer`]). One command at a time (5.03 while one is pending); a device that
/// keeps no diary (duty-cycled, or not the reference backend's) refuses it (4.05). A
/// retransmission is acknowledged again, not taken again.
fn take_command(
    cx: &DeviceCx<'_>,
    device: &mut Device,
    request: &Packet,
    repeated: bool,
    answer: Packet,
) -> Option<(Vec<u8>, Option<Event>)> {
    let refused = |mut answer: Packet, code, why: &str| {
        answer.header.code = MessageClass::Response(code);
        answer.payload = why.as_bytes().to_vec();
        cx.count(Counter::Lwm2mRefused);
        Some((answer.to_bytes().ok()?, None))
    };
    if request.header.get_type() != MessageType::Confirmable {
        return refused(answer, ResponseType::BadRequest, "a command is a confirmable Execute");
    }
    let taken = |mut answer: Packet| {
        // An empty acknowledgement: no code, no token, no payload.
        answer.header.code = MessageClass::Empty;
        answer.set_token(Vec::new());
        answer.to_bytes().ok()
    };
    if repeated {
        return Some((taken(answer)?, None));
    }
    let Some(diary) = device.diary.as_deref_mut() else {
        return refused(answer, ResponseType::MethodNotAllowed, "this device takes no commands");
    };
    if diary.command.is_some() {
        return refused(
            answer,
            ResponseType::ServiceUnavailable,
            "a command is being carried out",
        );
    }
    let parsed = serde_json::from_slice::<serde_json::Value>(&request.payload)
        .ok()
        .and_then(|doc| {
            let kind = CommandKind::parse(doc["command"].as_str()?)?;
            Some((Box::<str>::from(doc["id"].as_str()?), kind, doc["args"].clone()))
        });
    let Some((id, kind, args)) = parsed else {
        return refused(
            answer,
            ResponseType::BadRequest,
            "expected {\"id\": ID, \"command\": \"set\"|\"logs\"|\"diagnose\"|\"reboot\", \"args\": ...}",
        );
    };
    diary.command = Some(Box::new(Pending {
        id,
        kind,
        args,
        reply: None,
    }));
    device.configured().command_token = Some(request.get_token().into());
    cx.count(Counter::Lwm2mExecutes);
    Some((taken(answer)?, Some(Event::Command(kind))))
}

/// A Write of the config document (/32769/0/0): JSON text with its `version`, which the
/// device core applies.
fn write_config(request: &Packet, repeated: bool) -> (ResponseType, Option<Event>) {
    let format = request.get_first_option(CoapOption::ContentFormat).map(|v| uint_of(v));
    // text/plain or application/json.
    if !matches!(format, None | Some(Some(0 | 50))) {
        return (ResponseType::UnsupportedContentFormat, None);
    }
    let version = serde_json::from_slice::<serde_json::Value>(&request.payload)
        .ok()
        .and_then(|doc| doc["version"].as_u64())
        .and_then(|v| u32::try_from(v).ok());
    match version {
        Some(_) if repeated => (ResponseType::Changed, None),
        Some(version) => (ResponseType::Changed, Some(Event::ConfigDesired { version })),
        None => (ResponseType::BadRequest, None),
    }
}

/// A Write of the lifetime, or Write-Attributes.
fn write_resource(
    cx: &DeviceCx<'_>,
    device: &mut Device,
    request: &Packet,
    path: Path,
    repeated: bool,
) -> ResponseType {
    let queries: Vec<&[u8]> = request
        .get_option(CoapOption::UriQuery)
        .into_iter()
        .flatten()
        .map(Vec::as_slice)
        .collect();
    if !queries.is_empty() && request.payload.is_empty() {
        // Attributes of what the device holds only: a server cannot grow the device's memory
        // by naming paths that do not exist.
        let serial = cx.serial();
        if device.state(cx, &serial).read(path).is_err() {
            return ResponseType::NotFound;
        }
        // Attributes named change; the path's others stay. A name without a value takes the
        // attribute away.
        let mut set = device.own_attributes(path);
        for query in queries {
            let Ok(query) = std::str::from_utf8(query) else {
                return ResponseType::BadRequest;
            };
            let (name, value) = query.split_once('=').map_or((query, None), |(n, v)| (n, Some(v)));
            let seconds = || value.map(str::parse::<u32>).transpose().map_err(|_| ());
            let number = || {
                value.map(str::parse::<f64>).transpose().map_err(|_| ()).and_then(|v| {
                    if v.is_some_and(|v| !v.is_finite()) {
                        Err(())
                    } else {
                        Ok(v)
                    }
                })
            };
            let parsed = match name {
                "pmin" => seconds().map(|s| set.pmin = s),
                // pmax 0 sets none: a notification every instant is no period.
                "pmax" => seconds().map(|s| set.pmax = s.filter(|s| *s > 0)),
                "gt" => number().map(|v| set.gt = v),
                "lt" => number().map(|v| set.lt = v),
                // A step is a distance: not below 0.
                "st" => number()
                    .and_then(|v| if v.is_some_and(|st| st < 0.0) { Err(()) } else { Ok(v) })
                    .map(|v| set.st = v),
                // Another attribute (LwM2M 1.1's epmin, edge ...) is not spoken: ignored.
                _ => Ok(()),
            };
            if parsed.is_err() {
                return ResponseType::BadRequest;
            }
        }
        // LwM2M 1.0, section 5.1.2: pmax not below pmin; lt below gt, by more than two steps.
        let held = device.attributes_of(path).under(set);
        if let (Some(pmin), Some(pmax)) = (held.pmin, held.pmax)
            && pmax < pmin
        {
            return ResponseType::BadRequest;
        }
        if let (Some(lt), Some(gt)) = (held.lt, held.gt)
            && lt + 2.0 * held.st.unwrap_or(0.0) >= gt
        {
            return ResponseType::BadRequest;
        }
        let attributes = &mut device.configured().attributes;
        attributes.retain(|(p, _)| *p != path);
        if attributes.len() >= MAX_ATTRIBUTES {
            return ResponseType::RequestEntityTooLarge;
        }
        attributes.push((path, set));
        return ResponseType::Changed;
    }
    if !objects::is_lifetime(path) {
        return if objects::is_executable(path) || path.object == ids::SERVER || path.object == ids::DEVICE {
            ResponseType::MethodNotAllowed
        } else {
            ResponseType::NotFound
        };
    }
    let format = request
        .get_first_option(CoapOption::ContentFormat)
        .and_then(|v| uint_of(v))
        .and_then(|n| u16::try_from(n).ok())
        .map_or(Some(Format::Text), Format::of);
    let Some(format) = format else {
        return ResponseType::UnsupportedContentFormat;
    };
    match formats::decode_integer(format, &request.payload).and_then(|v| u32::try_from(v).ok()) {
        Some(lifetime) if lifetime > 0 => {
            if !repeated {
                device.lifetime_s = lifetime;
                device.lifetime_written = true;
                device.update_asked = true;
            }
            ResponseType::Changed
        }
        _ => ResponseType::BadRequest,
    }
}

/// An Execute: Reboot goes to the device core, the registration update trigger updates the
/// registration at the next report.
fn execute(device: &mut Device, path: Path, repeated: bool) -> (ResponseType, Option<Event>) {
    if !objects::is_executable(path) {
        return (ResponseType::MethodNotAllowed, None);
    }
    if repeated {
        return (ResponseType::Changed, None);
    }
    match (path.object, path.resource) {
        (ids::DEVICE, Some(ids::REBOOT)) => (ResponseType::Changed, Some(Event::Command(CommandKind::Reboot))),
        (ids::FIRMWARE, Some(ids::UPDATE)) => match device.firmware_mut() {
            // Updating once the core installs (its report notifies the observers).
            Some(object) if object.state == fw::DOWNLOADED => (ResponseType::Changed, Some(Event::InstallOrdered)),
            // Nothing held to install.
            _ => (ResponseType::MethodNotAllowed, None),
        },
        _ => {
            device.update_asked = true;
            (ResponseType::Changed, None)
        }
    }
}

#[cfg(test)]
mod tests {
    use rand_chacha::rand_core::SeedableRng;

    use super::*;
    use crate::dialect::Shared;
    use crate::model::{ChaCha8Rng, Rng};
    use crate::scenario::{DeviceModel, parse_model};

    /// Requests lwm2m-node-lib sent a device (read, read as LwM2M JSON, observe, write,
    /// execute, discover), as captured on the wire.
    const SEEDS: [&str; 6] = [
        "44010f4d5a7aa468b13301300139",
        "4401d0c786ce7788b1330130622d17",
        "440199e7f65dbedc60543333303301300435373030",
        "4403ddf7392af6a2b131013001311100ff313230",
        "440273b37cc54568b13301300134",
        "4401dcc43c51fb22b13301306128",
    ];

    fn hex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
            .collect()
    }

    /// A coap model, and what a shard's devices share.
    fn world() -> (DeviceModel, Shared) {
        let model = parse_model(
            std::path::Path::new("m.toml"),
            "name = \"m\"\nprotocol = \"coap\"\nfirmware = \"1.0\"\n[telemetry]\ninterval = \"1m\"\npayload_bytes = 8\n\
             [ota]\ndownload_kbps = 100\ninterrupt = \"0%\"\ncorrupt = \"0%\"\nboot_fail = \"0%\"\nbrick = \"0%\"\n",
        )
        .expect("model");
        (model, Shared::default())
    }

    /// A Write of a Package URI and an Execute of Update, as a server sends them.
    fn object_5_requests() -> Vec<Vec<u8>> {
        let to = |method, id, segments: [&str; 3], payload: &[u8]| {
            let mut packet = Packet::new();
            packet.header.set_type(MessageType::Confirmable);
            packet.header.code = MessageClass::Request(method);
            packet.header.message_id = id;
            packet.set_token(vec![7, id as u8]);
            for segment in segments {
                packet.add_option(CoapOption::UriPath, segment.as_bytes().to_vec());
            }
            packet.payload = payload.to_vec();
            packet.to_bytes().expect("encodes")
        };
        vec![
            to(
                RequestType::Put,
                0x7001,
                ["5", "0", "1"],
                b"http://127.0.0.1:9/2.0?size=100",
            ),
            to(RequestType::Post, 0x7002, ["5", "0", "2"], b""),
        ]
    }

    fn cx<'a>(model: &'a DeviceModel, shared: &'a Shared) -> DeviceCx<'a> {
        DeviceCx {
            shared,
            index: 3,
            model,
            group: "g",
            source: None,
        }
    }

    /// A device that has reported (its sensor has a reading).
    fn measured_device() -> Device {
        let mut device = Lwm2m {
            addr: ([127, 0, 0, 1], 5683).into(),
            reference: None,
            secured: None,
            bootstrap: false,
        }
        .wake(None);
        device.reading = 21.5;
        device
    }

    /// A Write-Attributes of `path` with `queries`, as a server sends it; the answer's code.
    fn write_attributes(cx: &DeviceCx<'_>, device: &mut Device, path: &str, queries: &[&str]) -> ResponseType {
        let segments: Vec<&str> = path.split('/').skip(1).collect();
        // Built as the device builds its own requests: a fresh message id each time.
        let mut packet = request(device, RequestType::Put, &segments);
        for query in queries {
            packet.add_option(CoapOption::UriQuery, query.as_bytes().to_vec());
        }
        let (bytes, _) = answer(cx, device, &packet.to_bytes().expect("encodes")).expect("answered");
        match coap::decode(&bytes).expect("decodes").header.code {
            MessageClass::Response(code) => code,
            other => panic!("not a response: {other:?}"),
        }
    }

    fn path(text: &str) -> Path {
        Path::parse(text.split('/').skip(1).map(str::as_bytes)).expect("a path")
    }

    /// Attributes set on an object or instance hold for what is under it, unless set there;
    /// gt, lt and st are taken, checked and taken away.
    #[test]
    fn attributes_pass_down_and_thresholds_are_checked() {
        let (model, shared) = world();
        let cx = cx(&model, &shared);
        let mut device = measured_device();
        assert_eq!(
            write_attributes(&cx, &mut device, "/3303", &["pmin=5", "pmax=60"]),
            ResponseType::Changed
        );
        assert_eq!(
            write_attributes(&cx, &mut device, "/3303/0/5700", &["pmin=2", "st=0.5"]),
            ResponseType::Changed
        );
        let held = device.attributes_of(path("/3303/0/5700"));
        assert_eq!(
            (held.pmin, held.pmax, held.st),
            (Some(2), Some(60), Some(0.5)),
            "its own pmin, the object's pmax"
        );
        assert_eq!(
            device.attributes_of(path("/3303/0")).pmin,
            Some(5),
            "the instance inherits"
        );
        // lt must sit below gt by more than two steps (st 0.5 is inherited by nothing here,
        // but set on the resource).
        assert_eq!(
            write_attributes(&cx, &mut device, "/3303/0/5700", &["lt=20", "gt=20.5"]),
            ResponseType::BadRequest
        );
        assert_eq!(
            write_attributes(&cx, &mut device, "/3303/0/5700", &["lt=10", "gt=30"]),
            ResponseType::Changed
        );
        for bad in ["gt=warm", "st=-1", "pmin=-1", "lt=inf"] {
            assert_eq!(
                write_attributes(&cx, &mut device, "/3303/0/5700", &[bad]),
                ResponseType::BadRequest,
                "{bad}"
            );
        }
        // A name without a value takes it away: the object's pmin shows through again.
        assert_eq!(
            write_attributes(&cx, &mut device, "/3303/0/5700", &["pmin", "st"]),
            ResponseType::Changed
        );
        let held = device.attributes_of(path("/3303/0/5700"));
        assert_eq!((held.pmin, held.st, held.gt), (Some(5), None, Some(30.0)));
    }

    /// gt and lt notify a crossing either way, st a move of at least its size; without them,
    /// every new reading goes.
    #[test]
    fn thresholds_decide_whether_a_reading_is_notified() {
        let plain = Attributes::default();
        assert!(plain.moved(21.0, 21.0), "no thresholds: every report");
        let step = Attributes {
            st: Some(1.0),
            ..Attributes::default()
        };
        assert!(!step.moved(21.0, 21.9));
        assert!(step.moved(21.0, 22.0));
        assert!(step.moved(21.0, 19.5), "either way");
        assert!(step.moved(f64::NAN, 21.0), "the first always");
        let band = Attributes {
            gt: Some(25.0),
            lt: Some(10.0),
            ..Attributes::default()
        };
        assert!(!band.moved(20.0, 24.0));
        assert!(band.moved(24.0, 26.0), "up through gt");
        assert!(band.moved(26.0, 24.0), "down through gt");
        assert!(band.moved(11.0, 9.0), "down through lt");
        assert!(!band.moved(26.0, 30.0), "still above");
    }

    /// A server's refusal is the fault the device acts on: who it is refused (4.01, 4.03),
    /// its registration gone (4.04: register again), a server too busy (5.03: back off and
    /// connect again, counted as `errors.http_503`), and anything else a protocol error.
    #[test]
    fn package_uris_name_their_job_or_the_result_that_refuses_them() {
        let hash = "ab".repeat(32);
        let job = package_job(&format!(
            "http://127.0.0.1:8080/fw/2.1.0?size=1000&sha256={hash}&campaign=4"
        ))
        .expect("a job");
        assert_eq!(
            (job.url.as_str(), job.size, job.version.as_str(), job.campaign),
            ("http://127.0.0.1:8080/fw/2.1.0", 1000, "2.1.0", 4)
        );
        assert_eq!(job.hash, ImageHash::Sha256(hash));
        let pulled = package_job("coap://127.0.0.1:5683/fw/3.0?size=7").expect("a CoAP pull");
        assert_eq!(
            (pulled.url.as_str(), pulled.version.as_str()),
            ("coap://127.0.0.1:5683/fw/3.0", "3.0")
        );
        assert_eq!(
            package_job("http://127.0.0.1:8080/2.0?size=5&sha256=xyz").map(|job| job.hash),
            Ok(ImageHash::Unannounced),
            "a hash that is not one is not announced"
        );
        for (uri, result) in [
            ("coaps://127.0.0.1:5684/fw?size=5", fw::UNSUPPORTED_PROTOCOL),
            ("coap://127.0.0.1/fw?size=5", fw::INVALID_URI),
            ("https://127.0.0.1:443/fw?size=5", fw::UNSUPPORTED_PROTOCOL),
            ("http://127.0.0.1:8080/fw", fw::INVALID_URI),
            ("http://127.0.0.1:8080/fw?size=0", fw::INVALID_URI),
            ("http://127.0.0.1:8080/fw?size=-1", fw::INVALID_URI),
            ("http://example.com/fw?size=5", fw::INVALID_URI),
            ("http://127.0.0.1:8080/?size=5", fw::INVALID_URI),
            ("ftp://127.0.0.1/fw?size=5", fw::INVALID_URI),
            ("?size=5", fw::INVALID_URI),
        ] {
            assert_eq!(package_job(uri).map(|job| job.size), Err(result), "{uri}");
        }
    }

    /// A block of a package Write (Block1 `num`, 1,024-byte blocks) with `payload`, as a server
    /// sends it: the answer's code, its Block1 and the event for the core.
    fn push_block(
        cx: &DeviceCx<'_>,
        device: &mut Device,
        (id, num, more): (u16, u32, bool),
        payload: &[u8],
    ) -> (ResponseType, Option<Block>, Option<Event>) {
        let mut packet = Packet::new();
        packet.header.set_type(MessageType::Confirmable);
        packet.header.code = MessageClass::Request(RequestType::Put);
        packet.header.message_id = id;
        packet.set_token(vec![9]);
        for segment in ["5", "0", "0"] {
            packet.add_option(CoapOption::UriPath, segment.as_bytes().to_vec());
        }
        packet.add_option(CoapOption::ContentFormat, vec![42]);
        packet.add_option(CoapOption::Block1, Block { num, more, szx: 6 }.encode());
        packet.payload = payload.to_vec();
        let (bytes, event) = answer(cx, device, &packet.to_bytes().expect("encodes")).expect("answered");
        let answered = coap::decode(&bytes).expect("decodes");
        let MessageClass::Response(code) = answered.header.code else {
            panic!("not a response: {answered:?}");
        };
        let block = answered
            .get_first_option(CoapOption::Block1)
            .and_then(|b| Block::decode(b));
        (code, block, event)
    }

    #[test]
    fn a_pushed_package_is_taken_block_by_block_and_verified_whole() {
        let (model, shared) = world();
        let cx = cx(&model, &shared);
        let mut device = measured_device();
        let mut package = b"fleetsim-image 2.5.0\n".to_vec();
        package.resize(2 * 1024 + 500, 0xA5);
        let blocks: Vec<&[u8]> = package.chunks(1024).collect();
        let reads = |device: &Device| {
            let serial = cx.serial();
            let state = device.state(&cx, &serial);
            let update = state.firmware_update.expect("object 5");
            (update.state, update.result, update.version.to_owned())
        };

        let (code, block, event) = push_block(&cx, &mut device, (1, 0, true), blocks[0]);
        assert_eq!(
            (code, block.map(|b| (b.num, b.more)), event),
            (ResponseType::Continue, Some((0, true)), None)
        );
        assert_eq!(reads(&device), (fw::DOWNLOADING, fw::INITIAL, "2.5.0".to_owned()));
        // Out of order: refused, the transfer so far kept.
        let (code, ..) = push_block(&cx, &mut device, (2, 2, false), blocks[2]);
        assert_eq!(code, ResponseType::RequestEntityIncomplete);
        // A full block of another size than its option says: refused.
        let (code, ..) = push_block(&cx, &mut device, (3, 1, true), &blocks[1][..1000]);
        assert_eq!(code, ResponseType::BadRequest);
        let (code, ..) = push_block(&cx, &mut device, (4, 1, true), blocks[1]);
        assert_eq!(code, ResponseType::Continue);
        // A retransmission (same message id) is answered again and taken once.
        let (code, ..) = push_block(&cx, &mut device, (4, 1, true), blocks[1]);
        assert_eq!(code, ResponseType::Continue);
        let (code, block, event) = push_block(&cx, &mut device, (5, 2, false), blocks[2]);
        assert_eq!(
            (code, block.map(|b| (b.num, b.more))),
            (ResponseType::Changed, Some((2, false)))
        );
        match event {
            Some(Event::OtaReceived(image)) => assert_eq!(image.size_bytes, package.len() as u64),
            other => panic!("the whole package goes to the core: {other:?}"),
        }
        assert_eq!(
            shared.meter.take().count(Counter::OtaDownloadedBytes),
            package.len() as u64
        );
        // Under way (the core verifies): another package is refused.
        let (code, ..) = push_block(&cx, &mut device, (6, 0, true), blocks[0]);
        assert_eq!(code, ResponseType::MethodNotAllowed);

        // A package without fleetsim's first line is no package this device takes.
        let mut other = measured_device();
        let (code, _, event) = push_block(&cx, &mut other, (1, 0, false), b"#!/bin/sh\n");
        assert_eq!((code, event.is_none()), (ResponseType::Changed, true));
        assert_eq!(reads(&other), (fw::IDLE, fw::UNSUPPORTED_PACKAGE, String::new()));
        assert_eq!(package_version(b"fleetsim-image \n"), None);
        assert_eq!(package_version(b"fleetsim-image 1.0"), None, "no end of line");
    }

    #[test]
    fn a_refusal_is_the_fault_it_means() {
        let of = |code| refusal(MessageClass::Response(code));
        assert_eq!(of(ResponseType::Unauthorized), Fault::Auth);
        assert_eq!(of(ResponseType::Forbidden), Fault::Auth);
        assert_eq!(of(ResponseType::NotFound), Fault::Status(404));
        assert_eq!(of(ResponseType::ServiceUnavailable), Fault::Status(503));
        assert_eq!(Fault::Status(503).counter().name(), "errors.http_503");
        assert_eq!(of(ResponseType::BadRequest), Fault::Protocol);
    }

    /// RFC 7641, section 3.6: a Reset of a notification ends the observation; a Reset is not
    /// a request, so it is answered with nothing.
    #[test]
    fn a_reset_of_a_notification_ends_the_observation() {
        let (model, shared) = world();
        let cx = cx(&model, &shared);
        let mut device = measured_device();
        let observe = hex(SEEDS[2]);
        let (bytes, _) = answer(&cx, &mut device, &observe).expect("observed");
        let answered = coap::decode(&bytes).expect("decodes");
        assert_eq!(answered.get_observe_value(), Some(Ok(2)), "a first sequence number");
        assert_eq!(device.observations.len(), 1);
        assert!(
            answer(&cx, &mut device, &[0x70, 0x00, 0x12, 0x34]).is_none(),
            "no answer"
        );
        assert!(device.observations.is_empty(), "the Reset ended it");
    }

    /// The deterministic cousin of the `lwm2m_device` fuzz target: seeded mutations of real
    /// requests (bytes flipped, inserted, cut) all go through what a device does with a
    /// datagram, one device living through all of them; nothing panics, and what the server
    /// leaves behind on the device stays bounded.
    #[test]
    fn mutated_requests_never_panic_and_leave_bounded_state() {
        let (model, shared) = world();
        let cx = cx(&model, &shared);
        let mut device = measured_device();
        let mut seeds: Vec<Vec<u8>> = SEEDS.iter().map(|s| hex(s)).collect();
        seeds.extend(object_5_requests());
        for seed in &seeds {
            let (bytes, _) = answer(&cx, &mut device, seed).expect("a real request is answered");
            let answered = coap::decode(&bytes).expect("the answer decodes");
            assert_eq!(answered.header.get_type(), MessageType::Acknowledgement);
        }
        let mut rng = ChaCha8Rng::seed_from_u64(42);
        let mut answered = 0;
        for _ in 0..20_000 {
            let mut bytes = seeds[(rng.next_u32() as usize) % seeds.len()].clone();
            for _ in 0..1 + rng.next_u32() % 4 {
                let at = (rng.next_u32() as usize) % (bytes.len() + 1);
                match rng.next_u32() % 3 {
                    0 if at < bytes.len() => bytes[at] = rng.next_u32() as u8,
                    1 => bytes.insert(at, rng.next_u32() as u8),
                    _ => bytes.truncate(at),
                }
            }
            if answer(&cx, &mut device, &bytes).is_some() {
                answered += 1;
            }
        }
        assert!(
            answered > 1_000,
            "mutations still reach the request handling: {answered}"
        );
        assert!(device.observations.len() <= 32 && device.attributes().len() <= MAX_ATTRIBUTES);
    }
}
