//! The LwM2M front: devices speak LwM2M over CoAP on UDP to the same process, the same
//! registry and the same operator API as the MQTT gateway's.
//!
//! - A device provisions by claim (`POST /provision?ep=SERIAL&claim=NAME`, the secret in a
//!   JSON payload), as an MQTT device does on its provisioning topic; its endpoint name is
//!   its serial from then on.
//! - It may bootstrap (`POST /bs`, LwM2M section 5.2.7): the front writes its Security and
//!   Server objects, naming itself and the device's key ([`bootstrap`]).
//! - It pulls its campaign's package from the front, block-wise (`GET /fw/VERSION`,
//!   [`packages`]), when it says it speaks CoAP for that (object 5's resource 8).
//! - It registers (`POST /rd`), updates and de-registers (LwM2M section 5.3); only an active
//!   device of the registry may register, so a decommissioned one is refused (4.03).
//! - A registration holds its device's place in the gateway's session table, as a
//!   connection does: what the operator API routes to the device (desired config, commands)
//!   reaches the registration's task, which asks the device in LwM2M ([`downlink`]): a Write,
//!   an Execute. Decommissioning closes it as it closes a connection.
//! - The front observes the device's battery, signal and sensor; their notifications are its
//!   status and presence in the device view. While an error-codes alert rule is in force it
//!   observes the error codes too (/3/0/11), which the rule counts.
//!
//! The receive loop reads every datagram; requests that need the registry run as tasks of
//! their own, so a slow write never holds up the socket. Nothing a device sends can panic
//! the front: what does not decode is counted and dropped, what is refused is answered with
//! a reason.

pub mod block;
mod bootstrap;
pub mod downlink;
mod dtls;
pub mod exchanges;
mod packages;
pub mod registrations;
pub mod tlv;
pub mod uplink;

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, ResponseType};
use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::Publish;
use tokio::net::UdpSocket;
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::gateway::sessions::{Live, OUTBOUND_CHANNEL, Outbound};
use crate::gateway::stats::bump;
use crate::gateway::topics::DEVICE_PREFIX;
use crate::gateway::{Gateway, Shared};
use crate::ota::firmware::FirmwareStore;
use crate::registry::PskRoot;
use crate::registry::{ClaimAuth, DeviceState, ProvisionMeta, ProvisionOutcome, system_clock_ms};
use dtls::Secured;
use exchanges::{Exchanges, Matched, token_of};
use registrations::{Changes, Registration, Table};
use uplink::{Refused, Uplink};

/// The largest datagram read; a bigger one is refused (4.13), as a device's requests here
/// are small and block-wise transfer is for what is not.
pub const MAX_DATAGRAM: usize = 2048;

/// The LwM2M front: cheap to clone.
#[derive(Debug, Clone)]
pub struct Lwm2mFront {
    front: Arc<Front>,
}

/// What the receive loop and the registrations' tasks share.
#[derive(Debug)]
pub(crate) struct Front {
    /// The gateway's state: registry, session table, counters, limits.
    gateway: Arc<Shared>,
    socket: UdpSocket,
    table: Mutex<Table>,
    /// Device ids by serial, as provisioning gave them or the registry answered: a Register
    /// of a known serial costs a map lookup and the registry's in-memory check that the id is
    /// active, not a database read.
    serials: Mutex<HashMap<Box<str>, Box<str>>>,
    exchanges: Exchanges,
    /// The registrations' tasks, waited for at shutdown.
    tasks: TaskTracker,
    /// Room for requests being served ([`Limits::lwm2m_in_flight`](crate::gateway::Limits)).
    in_flight: Arc<Semaphore>,
    /// The images, for the devices that take them pushed.
    firmware: FirmwareStore,
    /// The DTLS listener and its sessions, when devices may come over DTLS.
    secured: Option<Secured>,
    /// The campaign whose update each device is taking, by device id, from the Write of its
    /// package until its result: a device that registers afresh (it rebooted into the image)
    /// is observed again for it.
    updates: Mutex<HashMap<Box<str>, u64>>,
    /// What the operator sent queue-mode devices while they slept, by device id, until their
    /// next update or registration ([`downlink::MAX_HELD`] at most each).
    held: Mutex<HashMap<Box<str>, VecDeque<Outbound>>>,
}

impl Front {
    fn table(&self) -> MutexGuard<'_, Table> {
        // Every update is a single insert, change or remove: a panicking holder leaves the
        // table whole.
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Holds `publish` for queue-mode device `device_id`; false when it holds as many as it
    /// may for it.
    fn hold(&self, device_id: &str, publish: Outbound) -> bool {
        // Single inserts and removes.
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        let queue = held.entry(device_id.into()).or_default();
        if queue.len() >= downlink::MAX_HELD {
            return false;
        }
        queue.push_back(publish);
        true
    }

    /// What was held for device `device_id`, in order; it is held no more.
    fn take_held(&self, device_id: &str) -> VecDeque<Outbound> {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        held.remove(device_id).unwrap_or_default()
    }

    fn updates(&self) -> MutexGuard<'_, HashMap<Box<str>, u64>> {
        // Single inserts, reads and removes.
        self.updates.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn serials(&self) -> MutexGuard<'_, HashMap<Box<str>, Box<str>>> {
        // Single inserts and reads only.
        self.serials.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The active device whose serial is `endpoint`: from what the front knows when that id is
    /// still active, else from the registry. `Ok(None)` for no active device.
    async fn active_device(&self, endpoint: &str) -> Result<Option<String>, ()> {
        let known = self.serials().get(endpoint).map(|id| id.to_string());
        if let Some(id) = known
            && self.gateway.registry.is_active(&id)
        {
            return Ok(Some(id));
        }
        // Unknown here, or no longer active (decommissioned, perhaps provisioned again since
        // under a new id elsewhere): the registry says.
        let registry = self.gateway.registry.clone();
        let serial = endpoint.to_owned();
        match tokio::task::spawn_blocking(move || registry.device_by_serial(&serial)).await {
            Ok(Ok(Some(device))) if device.state == DeviceState::Active => {
                self.serials().insert(endpoint.into(), device.id.as_str().into());
                Ok(Some(device.id))
            }
            Ok(Ok(_)) => Ok(None),
            _ => Err(()),
        }
    }

    /// Whether `endpoint` may `verb` (register, bootstrap) from `peer`: the id of its active
    /// device, or the refusal to answer with. Over DTLS only under its own identity; a device
    /// that is not active (never provisioned, decommissioned) is refused, counted as
    /// `lwm2m_refused`; a registry that does not answer is 5.03.
    async fn admit(&self, endpoint: &str, peer: SocketAddr, verb: &str) -> Result<String, Refused> {
        let forbidden = |why: String| {
            bump(&self.gateway.stats.lwm2m_refused);
            Refused {
                code: ResponseType::Forbidden,
                why,
            }
        };
        if let Some(identity) = self.dtls_identity(peer)
            && identity.as_deref() != Some(endpoint)
        {
            return Err(forbidden(format!(
                "endpoint {endpoint} over DTLS with the key of {}: {verb} under the PSK identity",
                identity.as_deref().unwrap_or("no identity")
            )));
        }
        match self.active_device(endpoint).await {
            Ok(Some(id)) => Ok(id),
            Ok(None) => Err(forbidden(format!(
                "endpoint {endpoint} is no active device: provision it first (POST /provision), or it was decommissioned"
            ))),
            Err(()) => Err(Refused {
                code: ResponseType::ServiceUnavailable,
                why: format!("the registry is not answering; {verb} again later"),
            }),
        }
    }

    /// Sends `bytes` to `addr`; a failed send is the device's loss, counted by whoever waits.
    async fn send(&self, bytes: &[u8], addr: SocketAddr) {
        if let Some(secured) = self.secured.as_ref().filter(|s| s.holds(addr)) {
            for record in secured.seal(addr, bytes) {
                let _ = secured.socket.send_to(&record, addr).await;
            }
            return;
        }
        let _ = self.socket.send_to(bytes, addr).await;
    }

    /// The PSK identity `peer` came over DTLS with; `None` for a peer in the clear.
    fn dtls_identity(&self, peer: SocketAddr) -> Option<Option<Box<str>>> {
        let secured = self.secured.as_ref().filter(|s| s.holds(peer))?;
        Some(secured.identity(peer))
    }

    /// Sends `packet`; one that cannot be encoded is dropped (the front builds only small
    /// ones).
    async fn send_packet(&self, packet: &Packet, addr: SocketAddr) {
        if let Ok(bytes) = packet.to_bytes() {
            self.send(&bytes, addr).await;
        }
    }
}

impl Lwm2mFront {
    /// A front serving devices on `socket` for `gateway`'s registry and session table.
    pub fn new(
        gateway: &Gateway,
        socket: UdpSocket,
        firmware: FirmwareStore,
        dtls: Option<(UdpSocket, Option<PskRoot>)>,
    ) -> Result<Self, String> {
        let secured = match dtls {
            Some((socket, root)) => {
                let root = root.unwrap_or_else(|| gateway.shared.registry.psk_root().clone());
                Some(Secured::new(socket, root)?)
            }
            None => None,
        };
        let mut seed = [0u8; 8];
        // A fixed start only makes tokens predictable, which nothing here relies on them not
        // being.
        let _ = getrandom::fill(&mut seed);
        let front = Front {
            gateway: Arc::clone(&gateway.shared),
            socket,
            table: Mutex::new(Table::default()),
            serials: Mutex::new(HashMap::new()),
            exchanges: Exchanges::new(u64::from_le_bytes(seed)),
            tasks: TaskTracker::new(),
            in_flight: Arc::new(Semaphore::new(gateway.shared.limits.lwm2m_in_flight)),
            firmware,
            secured,
            updates: Mutex::new(HashMap::new()),
            held: Mutex::new(HashMap::new()),
        };
        Ok(Self { front: Arc::new(front) })
    }

    /// Where devices reach it over DTLS, if it serves them so.
    pub fn dtls_addr(&self) -> Option<io::Result<SocketAddr>> {
        self.front.secured.as_ref().map(|s| s.socket.local_addr())
    }

    /// Where devices reach it.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.front.socket.local_addr()
    }

    /// Serves until `shutdown`, then ends every registration's task (they hold no state the
    /// registry lacks: a device registers again with a restarted backend).
    pub async fn serve(&self, shutdown: CancellationToken) -> io::Result<()> {
        let front = &self.front;
        let mut buf = vec![0u8; MAX_DATAGRAM + 1];
        let mut secured_buf = vec![0u8; MAX_DATAGRAM + 64];
        let mut errors = front.gateway.monitor.errors_watched();
        let mut errors_live = true;
        loop {
            let (received, over_dtls) = tokio::select! {
                received = front.socket.recv_from(&mut buf) => (received, false),
                received = recv_secured(front.secured.as_ref(), &mut secured_buf) => (received, true),
                changed = errors.changed(), if errors_live => {
                    match changed {
                        Ok(()) if *errors.borrow_and_update() => self.observe_errors_everywhere(),
                        Ok(()) => {}
                        // The monitor is gone (it lives as long as the gateway): nothing more comes.
                        Err(_) => errors_live = false,
                    }
                    continue;
                }
                () = shutdown.cancelled() => break,
            };
            // An error is an ICMP error for an earlier send (a device gone), or the socket's:
            // the loop serves on.
            match received {
                Ok((len, peer)) if over_dtls => self.on_secured(&secured_buf[..len], peer, &shutdown).await,
                Ok((len, peer)) => self.on_datagram(&buf[..len], peer, &shutdown).await,
                Err(_) => {}
            }
        }
        front.tasks.close();
        let drain = front.gateway.limits.drain_timeout;
        let _ = tokio::time::timeout(drain, front.tasks.wait()).await;
        Ok(())
    }

    /// An error-codes alert rule came into force: every registration's task observes its
    /// device's error codes, as a new registration's does from now on (a sleeping queue-mode
    /// device's at its next update).
    fn observe_errors_everywhere(&self) {
        let devices = self.front.table().device_ids();
        for id in devices {
            let topic = format!("{DEVICE_PREFIX}{id}/{}", downlink::OBSERVE_ERRORS);
            let _ = self
                .front
                .gateway
                .sessions
                .deliver(&id, Publish::new(topic, QoS::AtMostOnce, Vec::new()));
        }
    }

    /// A datagram on the DTLS listener: handshake records answered, the plaintext of
    /// application records served as a datagram from `peer`.
    async fn on_secured(&self, bytes: &[u8], peer: SocketAddr, shutdown: &CancellationToken) {
        let Some(secured) = self.front.secured.as_ref() else {
            return;
        };
        let stats = &self.front.gateway.stats;
        let opened = secured.open(peer, bytes);
        for record in &opened.send {
            let _ = secured.socket.send_to(record, peer).await;
        }
        if opened.connected {
            bump(&stats.lwm2m_dtls_handshakes);
        }
        if opened.failed {
            bump(&stats.lwm2m_dtls_failed);
        }
        for plaintext in opened.plaintext {
            self.on_datagram(&plaintext, peer, shutdown).await;
        }
    }

    async fn on_datagram(&self, bytes: &[u8], peer: SocketAddr, shutdown: &CancellationToken) {
        let front = &self.front;
        let stats = &front.gateway.stats;
        let Some(packet) = decode(bytes) else {
            bump(&stats.lwm2m_bad_datagrams);
            return;
        };
        let kind = packet.header.get_type();
        match packet.header.code {
            MessageClass::Empty => match kind {
                // For a request of the front's; one it no longer waits on is stale.
                MessageType::Acknowledgement | MessageType::Reset => {
                    let reset = kind == MessageType::Reset;
                    front.exchanges.on_empty(peer, packet.header.message_id, reset);
                }
                // A ping (an empty confirmable message) is answered with a Reset (RFC 7252,
                // section 4.3).
                MessageType::Confirmable => {
                    front.send(&reset(packet.header.message_id), peer).await;
                }
                MessageType::NonConfirmable => bump(&stats.lwm2m_bad_datagrams),
            },
            MessageClass::Request(_) if matches!(kind, MessageType::Confirmable | MessageType::NonConfirmable) => {
                if bytes.len() > MAX_DATAGRAM {
                    bump(&stats.lwm2m_bad_datagrams);
                    let refused = Refused {
                        code: ResponseType::RequestEntityTooLarge,
                        why: format!("requests here are at most {MAX_DATAGRAM} bytes"),
                    };
                    front.send_packet(&refusal(&packet, &refused), peer).await;
                    return;
                }
                self.on_request(packet, peer, shutdown).await;
            }
            MessageClass::Response(_) => self.on_response(packet, peer).await,
            // A request in an acknowledgement or Reset, or a reserved class: not CoAP.
            _ => bump(&stats.lwm2m_bad_datagrams),
        }
    }

    /// A response: to a request of the front's, a notification, or nothing asked for.
    async fn on_response(&self, packet: Packet, peer: SocketAddr) {
        let front = &self.front;
        let confirmable = packet.header.get_type() == MessageType::Confirmable;
        let message_id = packet.header.message_id;
        let matched = match token_of(&packet) {
            Some(token) => front.exchanges.on_response(token, &packet),
            None => Matched::Unknown,
        };
        let notified = match matched {
            Matched::Answer(observation) => observation,
            Matched::Notification(observation) => Some(observation),
            Matched::Unknown => {
                // RFC 7641, section 3.6: an unknown notification is rejected with a Reset,
                // and so the device stops sending it.
                bump(&front.gateway.stats.lwm2m_unexpected);
                if packet.header.get_type() != MessageType::Acknowledgement {
                    front.send(&reset(message_id), peer).await;
                }
                return;
            }
        };
        if confirmable {
            front.send(&empty_ack(message_id), peer).await;
        }
        if let Some(observation) = notified {
            downlink::on_notification(front, &observation, &packet);
        }
    }

    /// A device's request, served by a task of its own (a Register or a provisioning waits on
    /// the registry) while there is room; without room, answered 5.03 at once.
    async fn on_request(&self, packet: Packet, peer: SocketAddr, shutdown: &CancellationToken) {
        let Ok(room) = Arc::clone(&self.front.in_flight).try_acquire_owned() else {
            bump(&self.front.gateway.stats.lwm2m_busy);
            let busy = Refused {
                code: ResponseType::ServiceUnavailable,
                why: "busy: try again in a second".to_owned(),
            };
            let mut answer = refusal(&packet, &busy);
            // Max-Age: when to try again, in seconds (RFC 7252, section 5.9.3.4).
            answer.add_option(CoapOption::MaxAge, vec![1]);
            self.front.send_packet(&answer, peer).await;
            return;
        };
        let front = Arc::clone(&self.front);
        let shutdown = shutdown.clone();
        let tasks = front.tasks.clone();
        tasks.spawn(async move {
            let _room = room;
            let answer = match uplink::read(&packet) {
                Ok(uplink) => serve_request(&front, uplink, &packet, peer, &shutdown).await,
                Err(refused) => {
                    bump(&front.gateway.stats.lwm2m_bad_requests);
                    refusal(&packet, &refused)
                }
            };
            front.send_packet(&answer, peer).await;
        });
    }
}

/// The next datagram on the DTLS listener; never, without one.
async fn recv_secured(secured: Option<&Secured>, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
    match secured {
        Some(secured) => secured.socket.recv_from(buf).await,
        None => std::future::pending().await,
    }
}

/// Acts on `uplink` from `peer` and answers `request`.
async fn serve_request(
    front: &Arc<Front>,
    uplink: Uplink,
    request: &Packet,
    peer: SocketAddr,
    shutdown: &CancellationToken,
) -> Packet {
    let stats = &front.gateway.stats;
    match uplink {
        Uplink::Provision {
            serial,
            claim,
            secret,
            model,
            firmware,
        } => {
            provision(
                front,
                request,
                &serial,
                &claim,
                &secret,
                ProvisionMeta { model, firmware },
            )
            .await
        }
        Uplink::Package { version, block } => match packages::answer(&front.firmware, request, &version, block) {
            Ok(answer) => {
                bump(&stats.lwm2m_package_blocks);
                answer
            }
            Err(refused) => refusal(request, &refused),
        },
        Uplink::Bootstrap { endpoint } => {
            if let Err(refused) = front.admit(&endpoint, peer, "bootstrap").await {
                return refusal(request, &refused);
            }
            // Its requests follow this answer; a device takes them in either order.
            front
                .tasks
                .spawn(bootstrap::configure(Arc::clone(front), endpoint, peer));
            answer(request, ResponseType::Changed)
        }
        Uplink::Register {
            endpoint,
            lifetime_s,
            binding,
            links,
        } => {
            let device_id = match front.admit(&endpoint, peer, "register").await {
                Ok(id) => id,
                Err(refused) => return refusal(request, &refused),
            };
            let registration = Registration {
                device_id,
                endpoint,
                addr: peer,
                lifetime_s,
                binding,
                links,
                expires_at: Instant::now(),
                conn_id: front.gateway.next_conn_id.fetch_add(1, Ordering::Relaxed),
                kill: shutdown.child_token(),
            };
            let location = register(front, registration);
            bump(&stats.lwm2m_registrations);
            let mut answer = answer(request, ResponseType::Created);
            answer.add_option(CoapOption::LocationPath, b"rd".to_vec());
            answer.add_option(CoapOption::LocationPath, location.to_string().into_bytes());
            answer
        }
        Uplink::Update {
            location,
            lifetime_s,
            binding,
            links,
        } => {
            let changes = Changes {
                lifetime_s,
                binding,
                links,
            };
            let updated = front
                .table()
                .update(location, peer, changes, Instant::now())
                .map(|r| (r.device_id.clone(), r.binding.contains('Q')));
            match updated {
                Some((device_id, queued)) => {
                    bump(&stats.lwm2m_updates);
                    front.gateway.sessions.record_seen(&device_id, system_clock_ms(), None);
                    if queued {
                        // Awake: its registration's task sends what it held.
                        let topic = format!("{DEVICE_PREFIX}{device_id}/{}", downlink::AWAKE);
                        front
                            .gateway
                            .sessions
                            .deliver(&device_id, Publish::new(topic, QoS::AtMostOnce, Vec::new()));
                    }
                    answer(request, ResponseType::Changed)
                }
                None => {
                    bump(&stats.lwm2m_refused);
                    let why = format!("no registration at /rd/{location}: register again");
                    refusal(
                        request,
                        &Refused {
                            code: ResponseType::NotFound,
                            why,
                        },
                    )
                }
            }
        }
        Uplink::Deregister { location } => match front.table().remove(location, None) {
            Some(registration) => {
                bump(&stats.lwm2m_deregistrations);
                // Its task sees the kill, leaves the session table and forgets its observations.
                registration.kill.cancel();
                answer(request, ResponseType::Deleted)
            }
            None => {
                let why = format!("no registration at /rd/{location}");
                refusal(
                    request,
                    &Refused {
                        code: ResponseType::NotFound,
                        why,
                    },
                )
            }
        },
    }
}

/// `addr` as a device can reach it, for the URIs the front writes to devices: a listener bound
/// to every address is written as the loopback address of its family (a device elsewhere
/// needs the front bound to a routable address).
fn reachable(addr: SocketAddr) -> SocketAddr {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port()),
        IpAddr::V6(ip) if ip.is_unspecified() => SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), addr.port()),
        _ => addr,
    }
}

/// Enters `registration` in the table and the session table, and starts its task; returns
/// its location.
fn register(front: &Arc<Front>, registration: Registration) -> u64 {
    let (tx, rx) = mpsc::channel(OUTBOUND_CHANNEL);
    let live = Live {
        conn_id: registration.conn_id,
        tx,
        kill: registration.kill.clone(),
    };
    let (device_id, conn_id, kill) = (
        registration.device_id.clone(),
        registration.conn_id,
        registration.kill.clone(),
    );
    let (location, replaced) = front.table().register(registration, Instant::now());
    // A newer registration of the same device takes its place, as a newer connection does.
    let (_, took_over) = front.gateway.sessions.attach(&device_id, live, true);
    if let Some(replaced) = replaced {
        replaced.kill.cancel();
    }
    if took_over {
        bump(&front.gateway.stats.takeovers);
    }
    front.gateway.sessions.record_seen(&device_id, system_clock_ms(), None);
    front.gateway.stats.lwm2m_registered.fetch_add(1, Ordering::Relaxed);
    let task = downlink::Task {
        front: Arc::clone(front),
        location,
        device_id,
        conn_id,
        kill,
        errors_observed: AtomicBool::new(false),
    };
    front.tasks.spawn(task.run(rx));
    location
}

/// Provisioning by claim, answered as the MQTT gateway answers on the provisioning topic.
async fn provision(
    front: &Front,
    request: &Packet,
    serial: &str,
    claim: &str,
    secret: &str,
    meta: ProvisionMeta,
) -> Packet {
    let stats = &front.gateway.stats;
    let registry = &front.gateway.registry;
    if registry.authenticate_claim(claim, secret.as_bytes()) != ClaimAuth::Ok {
        bump(&stats.provision_rejected);
        let why = format!("claim {claim}: unknown, revoked, or the secret does not match");
        return refusal(
            request,
            &Refused {
                code: ResponseType::Unauthorized,
                why,
            },
        );
    }
    let (code, body) = match registry.provision(claim, serial, meta).await {
        Ok(ProvisionOutcome::Accepted {
            device_id,
            token,
            group,
            ..
        }) => {
            bump(&stats.provision_accepted);
            front.serials().insert(serial.into(), device_id.as_str().into());
            let mut body = serde_json::json!({ "device_id": device_id, "token": token, "group": group });
            if let Some(secured) = &front.secured {
                // The device's DTLS key (its identity: its serial), for the DTLS listener.
                body["psk"] = secured.key(serial).into();
            }
            (ResponseType::Created, body)
        }
        Ok(ProvisionOutcome::Rejected { reason }) => {
            bump(&stats.provision_rejected);
            let body = serde_json::json!({ "reason": reason.as_str(), "message": reason.message() });
            (ResponseType::Forbidden, body)
        }
        Err(e) => {
            bump(&stats.provision_rejected);
            let body = serde_json::json!({ "reason": "unavailable", "message": e.to_string() });
            (ResponseType::ServiceUnavailable, body)
        }
    };
    let mut answer = answer(request, code);
    // application/json (RFC 7252, section 12.3).
    answer.add_option(CoapOption::ContentFormat, vec![50]);
    answer.payload = body.to_string().into_bytes();
    answer
}

/// The CoAP message `bytes` hold: `None` for what does not decode, and for another version
/// than 1 (RFC 7252, section 3: silently ignored).
pub fn decode(bytes: &[u8]) -> Option<Packet> {
    Packet::from_bytes(bytes).ok().filter(|p| p.header.get_version() == 1)
}

/// What the front makes of a device's datagram, short of acting on it: the request it reads
/// (or why it refuses it, as the answer it would send), or `None` for what is not a request.
/// The fuzz target `lwm2m_front`'s entry.
pub fn read_datagram(bytes: &[u8]) -> Option<Result<Uplink, Vec<u8>>> {
    let packet = decode(bytes)?;
    if !matches!(packet.header.code, MessageClass::Request(_)) {
        let _ = token_of(&packet);
        return None;
    }
    Some(uplink::read(&packet).map_err(|refused| refusal(&packet, &refused).to_bytes().unwrap_or_default()))
}

/// The answer to `request` with `code`: piggybacked on its acknowledgement when it is
/// confirmable; a non-confirmable message with the same message id otherwise (the front
/// keeps no counter for answers, and a device matches them by token).
fn answer(request: &Packet, code: ResponseType) -> Packet {
    let mut answer = Packet::new();
    let kind = match request.header.get_type() {
        MessageType::Confirmable => MessageType::Acknowledgement,
        _ => MessageType::NonConfirmable,
    };
    answer.header.set_type(kind);
    answer.header.message_id = request.header.message_id;
    answer.header.code = MessageClass::Response(code);
    answer.set_token(request.get_token().to_vec());
    answer
}

/// A refusal of `request`, with its reason as the diagnostic payload.
fn refusal(request: &Packet, refused: &Refused) -> Packet {
    let mut packet = answer(request, refused.code);
    packet.payload = refused.why.clone().into_bytes();
    packet
}

/// An empty acknowledgement of message `id`.
fn empty_ack(id: u16) -> Vec<u8> {
    let [high, low] = id.to_be_bytes();
    // Version 1, type ACK, no token; code 0.00.
    vec![0x60, 0x00, high, low]
}

/// A Reset of message `id`.
fn reset(id: u16) -> Vec<u8> {
    let [high, low] = id.to_be_bytes();
    // Version 1, type RST, no token; code 0.00.
    vec![0x70, 0x00, high, low]
}
