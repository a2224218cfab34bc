//! The LwM2M front's DTLS listener: devices over DTLS 1.2 with a pre-shared key (RFC 6347,
//! TLS_PSK_WITH_AES_128_CCM_8, LwM2M's mandatory suite), on dimpl's sans-IO state machine.
//!
//! A device's PSK identity is its serial (its endpoint name); its key comes from the
//! registry's ([`PskRoot`]), the same every time, and reaches the device in its provisioning
//! answer. One session per peer address: what a session opens goes to the front as a datagram
//! from that peer, and what the front sends that peer is sealed by its session. A Register over
//! DTLS must name the session's identity as its endpoint.
//!
//! Bounds: at most [`MAX_SESSIONS`] sessions; when full, sessions idle for
//! [`IDLE_EVICTION`] make room, else a new peer's handshake is dropped (counted).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use dimpl::{Config, Dtls, Output, PskResolver};
use tokio::net::UdpSocket;

use crate::registry::PskRoot;

/// The most DTLS sessions held at once.
pub const MAX_SESSIONS: usize = 200_000;
/// A session this long without a datagram may be dropped to make room.
pub const IDLE_EVICTION: Duration = Duration::from_secs(600);
/// The longest datagram read or written.
const MAX_RECORD: usize = 2048;

/// The server's keys: a device's by its identity (its serial); notes the identity asked for,
/// so the session it completes is known by it.
struct Keys {
    root: PskRoot,
    asked: Mutex<Option<Box<str>>>,
}

impl PskResolver for Keys {
    fn resolve(&self, identity: &[u8]) -> Option<Vec<u8>> {
        let serial = std::str::from_utf8(identity)
            .ok()
            .filter(|s| !s.is_empty() && s.len() <= 64)?;
        *self.asked.lock().unwrap_or_else(PoisonError::into_inner) = Some(serial.into());
        Some(self.root.key(serial).into_bytes())
    }
}

struct Peer {
    dtls: Dtls,
    /// The PSK identity its handshake gave, once it completed.
    identity: Option<Box<str>>,
    last_seen: Instant,
}

/// The DTLS listener: its socket and its sessions.
pub(crate) struct Secured {
    pub(crate) socket: UdpSocket,
    config: Arc<Config>,
    keys: Arc<Keys>,
    sessions: Mutex<HashMap<SocketAddr, Peer>>,
}

impl std::fmt::Debug for Secured {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secured")
            .field("socket", &self.socket)
            .field("sessions", &self.sessions().len())
            .finish_non_exhaustive()
    }
}

/// What a datagram from a peer gave.
#[derive(Debug, Default)]
pub(crate) struct Opened {
    /// Records to send the peer (handshake flights, alerts).
    pub send: Vec<Vec<u8>>,
    /// Plaintext datagrams for the front.
    pub plaintext: Vec<Vec<u8>>,
    /// A handshake completed.
    pub connected: bool,
    /// The session failed (or none could be made): dropped.
    pub failed: bool,
}

impl Secured {
    /// A listener on `socket` whose keys come from `root`.
    pub(crate) fn new(socket: UdpSocket, root: PskRoot) -> Result<Self, String> {
        let keys = Arc::new(Keys {
            root,
            asked: Mutex::new(None),
        });
        let resolver: Arc<dyn PskResolver> = keys.clone();
        let config = Config::builder()
            .with_psk_server(None, resolver)
            .build()
            .map_err(|e| format!("DTLS configuration: {e:?}"))?;
        Ok(Self {
            socket,
            config: Arc::new(config),
            keys,
            sessions: Mutex::new(HashMap::new()),
        })
    }

    fn sessions(&self) -> MutexGuard<'_, HashMap<SocketAddr, Peer>> {
        // Each use is one lookup, insert or removal: a panicking holder leaves the map whole.
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Serial `serial`'s key, as its provisioning answer gives it.
    pub(crate) fn key(&self, serial: &str) -> String {
        self.keys.root.key(serial)
    }

    /// Whether `peer` speaks to the front through a session.
    pub(crate) fn holds(&self, peer: SocketAddr) -> bool {
        self.sessions().contains_key(&peer)
    }

    /// The PSK identity `peer`'s session was made with.
    pub(crate) fn identity(&self, peer: SocketAddr) -> Option<Box<str>> {
        self.sessions().get(&peer).and_then(|p| p.identity.clone())
    }

    /// Takes a datagram from `peer`: a new peer starts a session (a handshake), a known one's
    /// records are opened.
    pub(crate) fn open(&self, peer: SocketAddr, datagram: &[u8]) -> Opened {
        let now = Instant::now();
        let mut sessions = self.sessions();
        if !sessions.contains_key(&peer) {
            if sessions.len() >= MAX_SESSIONS {
                sessions.retain(|_, p| now.duration_since(p.last_seen) < IDLE_EVICTION);
            }
            if sessions.len() >= MAX_SESSIONS {
                return Opened {
                    failed: true,
                    ..Opened::default()
                };
            }
            let mut dtls = Dtls::new_12_psk(Arc::clone(&self.config), now);
            dtls.set_active(false);
            sessions.insert(
                peer,
                Peer {
                    dtls,
                    identity: None,
                    last_seen: now,
                },
            );
        }
        let mut opened = Opened::default();
        let Some(session) = sessions.get_mut(&peer) else {
            return opened;
        };
        session.last_seen = now;
        let handled = session
            .dtls
            .handle_packet(datagram)
            .and_then(|()| session.dtls.handle_timeout(now));
        let asked = self.keys.asked.lock().unwrap_or_else(PoisonError::into_inner).take();
        if handled.is_err() {
            sessions.remove(&peer);
            opened.failed = true;
            return opened;
        }
        drain(&mut session.dtls, &mut opened);
        if opened.connected {
            session.identity = asked;
        }
        if opened.failed {
            // The peer closed the session (close_notify).
            sessions.remove(&peer);
        }
        opened
    }

    /// The records that carry `plaintext` to `peer`; none when it holds no session.
    pub(crate) fn seal(&self, peer: SocketAddr, plaintext: &[u8]) -> Vec<Vec<u8>> {
        let mut sessions = self.sessions();
        let Some(session) = sessions.get_mut(&peer) else {
            return Vec::new();
        };
        if session.dtls.send_application_data(plaintext).is_err() {
            sessions.remove(&peer);
            return Vec::new();
        }
        let mut opened = Opened::default();
        drain(&mut session.dtls, &mut opened);
        opened.send
    }
}

/// Everything the session has to give now.
fn drain(dtls: &mut Dtls, opened: &mut Opened) {
    let mut buf = vec![0; MAX_RECORD];
    loop {
        match dtls.poll_output(&mut buf) {
            Output::Packet(record) => opened.send.push(record.to_vec()),
            Output::BufferTooSmall { needed } => buf.resize(needed, 0),
            Output::Timeout(_) => return,
            Output::Connected => opened.connected = true,
            Output::ApplicationData(data) => opened.plaintext.push(data.to_vec()),
            Output::CloseNotify => opened.failed = true,
            _ => {}
        }
    }
}
