//! DTLS 1.2 with a pre-shared key (RFC 6347; LwM2M's mandatory TLS_PSK_WITH_AES_128_CCM_8),
//! as a device speaks it over its datagram endpoint ([`super::datagram`]): dimpl's sans-IO
//! state machine, driven by the device's own socket and task.
//!
//! Design: [`handshake`] runs the handshake to the end on the socket (flights sent again on
//! dimpl's timers, up to a deadline). Afterwards a [`Session`] only seals what the device sends
//! and opens what arrives: no task or timer of its own, so an idle secured endpoint costs its
//! socket and the session's state.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::Instant as StdInstant;

use dimpl::{Config, Dtls, Output, PskResolver};
use tokio::net::UdpSocket;
use tokio::time::{Instant, timeout_at};

use super::datagram::MAX_DATAGRAM_BYTES;

/// A device's pre-shared key and the identity it gives with it.
#[derive(Clone, PartialEq, Eq)]
pub struct Psk {
    /// The PSK identity (RFC 4279), as the server looks the key up.
    pub identity: Vec<u8>,
    /// The key.
    pub key: Vec<u8>,
}

impl fmt::Debug for Psk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key.
        f.debug_struct("Psk")
            .field("identity", &String::from_utf8_lossy(&self.identity))
            .finish_non_exhaustive()
    }
}

/// Why a DTLS handshake or record failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DtlsError {
    /// No handshake completed before the deadline (nothing answered, or nothing usable).
    Timeout,
    /// The handshake failed: the server refused it (a wrong key or identity ends in a fatal
    /// alert) or sent what does not check out; dimpl's reason.
    Handshake(String),
    /// The socket failed.
    Io(std::io::ErrorKind),
}

impl fmt::Display for DtlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Timeout => write!(f, "no DTLS handshake before the deadline"),
            Self::Handshake(why) => write!(f, "DTLS handshake failed: {why}"),
            Self::Io(kind) => write!(f, "DTLS: {kind}"),
        }
    }
}

/// The client's key: whatever hint the server gave, the device's own.
struct OwnKey(Vec<u8>);

impl PskResolver for OwnKey {
    fn resolve(&self, _hint: &[u8]) -> Option<Vec<u8>> {
        Some(self.0.clone())
    }
}

/// A DTLS session past its handshake.
pub struct Session {
    dtls: Dtls,
    /// Plaintext that arrived with another record of the same datagram, for the next read.
    pending: VecDeque<Vec<u8>>,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

/// What one datagram that arrived gave: the plaintext it held, and records to send back
/// (a flight the server asked again for, an alert).
#[derive(Debug, Default)]
pub struct Opened {
    /// The application data, if any.
    pub plaintext: Option<Vec<u8>>,
    /// Records to send.
    pub send: Vec<Vec<u8>>,
}

/// Runs a DTLS 1.2 PSK handshake on `socket` (connected to the server) until it completes
/// or `deadline` passes.
pub async fn handshake(socket: &UdpSocket, psk: &Psk, deadline: Instant) -> Result<Session, DtlsError> {
    let config = Config::builder()
        .with_psk_client(psk.identity.clone(), Arc::new(OwnKey(psk.key.clone())))
        .build()
        .map_err(|e| DtlsError::Handshake(format!("{e:?}")))?;
    let mut dtls = Dtls::new_12_psk(Arc::new(config), StdInstant::now());
    dtls.set_active(true);
    let mut pending = VecDeque::new();
    let mut datagram = vec![0; MAX_DATAGRAM_BYTES];
    loop {
        let now = StdInstant::now();
        dtls.handle_timeout(now).map_err(refused)?;
        let (send, next, connected) = drain(&mut dtls, &mut pending);
        for record in &send {
            socket.send(record).await.map_err(|e| DtlsError::Io(e.kind()))?;
        }
        if connected {
            return Ok(Session { dtls, pending });
        }
        let wake = next.map_or(deadline, |at| {
            deadline.min(Instant::now() + at.saturating_duration_since(now))
        });
        match timeout_at(wake, socket.recv(&mut datagram)).await {
            Ok(Ok(len)) => dtls.handle_packet(&datagram[..len]).map_err(refused)?,
            // A refused port (ICMP) or another error: the server is not there yet.
            Ok(Err(e)) if Instant::now() >= deadline => return Err(DtlsError::Io(e.kind())),
            Ok(Err(_)) => tokio::time::sleep_until(wake).await,
            Err(_) if Instant::now() >= deadline => return Err(DtlsError::Timeout),
            Err(_) => {}
        }
    }
}

impl Session {
    /// The records that carry `plaintext`.
    pub fn seal(&mut self, plaintext: &[u8]) -> Result<Vec<Vec<u8>>, DtlsError> {
        self.dtls.send_application_data(plaintext).map_err(refused)?;
        let (send, ..) = drain(&mut self.dtls, &mut self.pending);
        Ok(send)
    }

    /// Takes a datagram that arrived: the oldest plaintext not yet read (what came before
    /// first). Records that do not check out (replays, garbage) are dropped by dimpl and give
    /// nothing; an error means the session is over.
    pub fn open(&mut self, datagram: &[u8]) -> Result<Opened, DtlsError> {
        self.dtls.handle_packet(datagram).map_err(refused)?;
        self.dtls.handle_timeout(StdInstant::now()).map_err(refused)?;
        let (send, ..) = drain(&mut self.dtls, &mut self.pending);
        Ok(Opened {
            plaintext: self.pending.pop_front(),
            send,
        })
    }

    /// Plaintext that arrived earlier beside other plaintext, not yet read.
    pub fn take_pending(&mut self) -> Option<Vec<u8>> {
        self.pending.pop_front()
    }
}

/// Everything dimpl has to give now: records to send, when it next wants its timer, whether
/// the handshake completed; plaintext goes to `pending`.
fn drain(dtls: &mut Dtls, pending: &mut VecDeque<Vec<u8>>) -> (Vec<Vec<u8>>, Option<StdInstant>, bool) {
    let mut buf = vec![0; MAX_DATAGRAM_BYTES];
    let (mut send, mut connected) = (Vec::new(), false);
    loop {
        match dtls.poll_output(&mut buf) {
            Output::Packet(record) => send.push(record.to_vec()),
            Output::BufferTooSmall { needed } => buf.resize(needed, 0),
            Output::Timeout(at) => return (send, Some(at), connected),
            Output::Connected => connected = true,
            Output::ApplicationData(data) => pending.push_back(data.to_vec()),
            // Certificates, SRTP keys: not in a PSK session. The peer's close_notify: what
            // comes next fails, and the device connects again.
            _ => {}
        }
    }
}

fn refused(error: dimpl::Error) -> DtlsError {
    DtlsError::Handshake(format!("{error:?}"))
}
