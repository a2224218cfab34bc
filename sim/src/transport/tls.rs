//! TLS over a device's TCP stream, on rustls with AWS-LC: the handshake, driven on the device's
//! own task, and then reads and writes that look to a session's codec like a plain socket's
//! (read what is there without waiting; write what the socket takes now), so MQTT runs over it
//! unchanged ([`super::stream::ByteStream::Tls`]).
//!
//! A refused handshake is classified by its reason ([`TlsFailure`]): a load tester that
//! counted "unknown CA" and "certificate expired" as one failure could not tell a broker that
//! refuses revoked devices from one that refuses everyone.

use std::io;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};

use rustls::client::UnbufferedClientConnection;
use rustls::client::{
    ClientSessionStore, ResolvesClientCert, Resumption, Tls12ClientSessionValue, Tls13ClientSessionValue,
};
use rustls::sign::CertifiedKey;
use rustls::unbuffered::{
    AppDataRecord, ConnectionState, EncodeError, EncryptError, InsufficientSizeError, UnbufferedStatus,
};
use rustls::{AlertDescription, ClientConfig, HandshakeKind, NamedGroup, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::AsyncWrite;
use tokio::net::TcpStream;

/// Why a TLS handshake (or the first read after it: under TLS 1.3 a server refuses a client's
/// certificate after the client has finished) failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TlsFailure {
    /// The server does not know the CA that issued the device's certificate.
    UnknownCa,
    /// The server found the device's certificate expired (or not yet valid).
    Expired,
    /// The server found the device's certificate revoked.
    Revoked,
    /// The server refused the device's certificate (or its lack of one) for another reason.
    BadCertificate,
    /// The device refused the server's certificate: an unknown issuer, a wrong name, expired.
    ServerUntrusted,
    /// Anything else: no common version or cipher suite, a malformed message.
    Handshake,
}

impl TlsFailure {
    /// The reason as a metric name's suffix.
    pub fn name(self) -> &'static str {
        match self {
            Self::UnknownCa => "unknown_ca",
            Self::Expired => "expired",
            Self::Revoked => "revoked",
            Self::BadCertificate => "bad_certificate",
            Self::ServerUntrusted => "server_untrusted",
            Self::Handshake => "handshake",
        }
    }

    /// The reason a rustls error gives.
    pub fn of(error: &rustls::Error) -> Self {
        match error {
            rustls::Error::AlertReceived(alert) => match alert {
                AlertDescription::UnknownCA => Self::UnknownCa,
                AlertDescription::CertificateExpired => Self::Expired,
                AlertDescription::CertificateRevoked => Self::Revoked,
                AlertDescription::BadCertificate
                | AlertDescription::CertificateUnknown
                | AlertDescription::UnsupportedCertificate
                | AlertDescription::CertificateRequired
                | AlertDescription::AccessDenied
                // OpenSSL's answer to a certificate whose issuer's name it trusts but whose
                // signature that issuer's key did not make.
                | AlertDescription::DecryptError => Self::BadCertificate,
                _ => Self::Handshake,
            },
            rustls::Error::InvalidCertificate(_) => Self::ServerUntrusted,
            _ => Self::Handshake,
        }
    }

    /// The reason an I/O error carries, when it is a TLS error.
    pub fn of_io(error: &io::Error) -> Option<Self> {
        error.get_ref()?.downcast_ref::<rustls::Error>().map(Self::of)
    }
}

/// How a handshake went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handshake {
    /// A full handshake: certificates sent and checked, keys agreed.
    Full,
    /// A session resumed from a ticket (or session id) the server gave before.
    Resumed,
}

/// What every device's TLS client shares: the server's trust anchors, the protocol versions,
/// and one client config for the whole fleet. A device's own part, its certificate and the
/// session it keeps to resume, is a [`DeviceSide`] ([`ClientTemplate::device`]); the fleet's
/// config finds it through the handshake being driven ([`Driving`]), so a connected device
/// holds no config of its own (about 600 bytes a device, with its resolver and store).
#[derive(Debug, Clone)]
pub struct ClientTemplate {
    /// Devices' handshakes: their certificates and sessions through [`DrivenDevice`].
    devices: Arc<ClientConfig>,
    /// Handshakes presenting no certificate, resuming nothing (a claim connection).
    anonymous: Arc<ClientConfig>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

/// The TLS versions a scenario may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// TLS 1.2.
    Tls12,
    /// TLS 1.3.
    Tls13,
}

impl ClientTemplate {
    /// Trusts the servers whose certificates chain to `roots`, offering `versions`; devices
    /// resume their sessions when `resume` says so.
    pub fn new(roots: RootCertStore, versions: &[Version], resume: bool) -> Result<Self, rustls::Error> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let versions: Vec<&'static rustls::SupportedProtocolVersion> = versions
            .iter()
            .map(|v| match v {
                Version::Tls12 => &rustls::version::TLS12,
                Version::Tls13 => &rustls::version::TLS13,
            })
            .collect();
        let mut anonymous = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&versions)?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut devices = anonymous.clone();
        anonymous.resumption = Resumption::disabled();
        let driven = Arc::new(DrivenDevice {
            provider: provider.clone(),
        });
        devices.client_auth_cert_resolver = driven.clone();
        devices.resumption = if resume {
            Resumption::store(driven)
        } else {
            Resumption::disabled()
        };
        Ok(Self {
            devices: Arc::new(devices),
            anonymous: Arc::new(anonymous),
            provider,
        })
    }

    /// A device's side of its handshakes: its certificate and key (none: it presents no
    /// certificate) and an empty session store of its own. Never shared between devices:
    /// under mutual TLS a resumed session carries the identity it was made with.
    pub fn device(&self, identity: Option<ClientIdentity>) -> Result<Arc<DeviceSide>, rustls::Error> {
        let credential = match identity {
            Some(ClientIdentity::Kept(cert, key)) => {
                let key = self.provider.key_provider.load_private_key(key)?;
                Some(Credential::Kept(Arc::new(CertifiedKey::new(vec![cert], key))))
            }
            Some(ClientIdentity::Derived(cert, key)) => Some(Credential::Derived(cert, key)),
            None => None,
        };
        Ok(Arc::new(DeviceSide {
            credential,
            session: Mutex::default(),
        }))
    }

    /// The fleet's config for devices' handshakes. A rustls connection made from it must be
    /// made and driven inside [`driving`], as [`TlsStream`] does: outside, it presents no
    /// certificate and resumes nothing.
    pub fn device_config(&self) -> Arc<ClientConfig> {
        self.devices.clone()
    }
}

/// Runs `f` with `device` as the device whose handshake is being driven: the fleet config's
/// certificate resolver and session store answer for it ([`ClientTemplate::device_config`]).
pub fn driving<T>(device: &Arc<DeviceSide>, f: impl FnOnce() -> T) -> T {
    let _driving = Driving::enter(Some(device));
    f()
}

/// One device's side of its TLS handshakes: its credential, and its server's newest TLS 1.3
/// ticket (or TLS 1.2 session) with the key-exchange group that server took. A device talks
/// to one server, and a ticket is used once, so one is enough; rustls's in-memory cache keeps
/// up to eight a server, in maps sized for many servers, about a kilobyte a device more.
#[derive(Debug)]
pub struct DeviceSide {
    credential: Option<Credential>,
    session: Mutex<Kept>,
}

/// How a device's certificate and key are had.
enum Credential {
    /// Loaded once and kept (a key that cannot be made again).
    Kept(Arc<CertifiedKey>),
    /// The key made again at each handshake that asks for it.
    Derived(CertificateDer<'static>, KeyMaker),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Kept(_) => f.write_str("Kept"),
            Self::Derived(cert, _) => f.debug_tuple("Derived").field(&cert.len()).finish(),
        }
    }
}

/// What a device keeps of its last session with its server; boxed, since most of the fleet
/// holds a TLS 1.3 ticket or nothing.
#[derive(Debug, Default)]
struct Kept {
    group: Option<NamedGroup>,
    tls12: Option<Box<Tls12ClientSessionValue>>,
    tls13: Option<Box<Tls13ClientSessionValue>>,
}

impl DeviceSide {
    fn kept<T>(&self, f: impl FnOnce(&mut Kept) -> T) -> T {
        // A poisoned lock means a panic mid-update; what is kept is still whole enough to try.
        f(&mut self.session.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }
}

thread_local! {
    /// The device whose handshake this thread is driving, while rustls runs
    /// ([`Driving::enter`]).
    static DRIVEN: std::cell::RefCell<Option<Arc<DeviceSide>>> = const { std::cell::RefCell::new(None) };
}

/// Marks a device's side as the one being driven while rustls processes its connection, so
/// the fleet's shared resolver and session store ([`DrivenDevice`]) answer for it. rustls
/// calls them only from within a connection's constructor and `process_tls_records`, which
/// run synchronously on the device's task: nothing else can run on the thread meanwhile.
struct Driving(Option<Arc<DeviceSide>>);

impl Driving {
    fn enter(device: Option<&Arc<DeviceSide>>) -> Self {
        Self(DRIVEN.with(|driven| driven.replace(device.cloned())))
    }
}

impl Drop for Driving {
    fn drop(&mut self) {
        let previous = self.0.take();
        DRIVEN.with(|driven| *driven.borrow_mut() = previous);
    }
}

/// Calls `f` with the device being driven, `None` when no device's handshake is (a
/// connection without one, which the fleet's config never makes).
fn with_driven<T>(f: impl FnOnce(Option<&DeviceSide>) -> T) -> T {
    DRIVEN.with(|driven| f(driven.borrow().as_deref()))
}

/// The fleet config's certificate resolver and session store: both answer for the device
/// whose handshake is being driven.
#[derive(Debug)]
struct DrivenDevice {
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ResolvesClientCert for DrivenDevice {
    fn resolve(&self, _issuers: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        with_driven(|device| match device?.credential.as_ref()? {
            Credential::Kept(certified) => Some(certified.clone()),
            Credential::Derived(cert, key) => {
                let key = self.provider.key_provider.load_private_key(key()?).ok()?;
                Some(Arc::new(CertifiedKey::new(vec![cert.clone()], key)))
            }
        })
    }

    fn has_certs(&self) -> bool {
        with_driven(|device| device.is_some_and(|d| d.credential.is_some()))
    }
}

impl ClientSessionStore for DrivenDevice {
    fn set_kx_hint(&self, _server: ServerName<'static>, group: NamedGroup) {
        with_driven(|device| device.map(|d| d.kept(|kept| kept.group = Some(group))));
    }

    fn kx_hint(&self, _server: &ServerName<'_>) -> Option<NamedGroup> {
        with_driven(|device| device?.kept(|kept| kept.group))
    }

    fn set_tls12_session(&self, _server: ServerName<'static>, value: Tls12ClientSessionValue) {
        with_driven(|device| device.map(|d| d.kept(|kept| kept.tls12 = Some(Box::new(value)))));
    }

    fn tls12_session(&self, _server: &ServerName<'_>) -> Option<Tls12ClientSessionValue> {
        with_driven(|device| device?.kept(|kept| kept.tls12.as_deref().cloned()))
    }

    fn remove_tls12_session(&self, _server: &ServerName<'static>) {
        with_driven(|device| device.map(|d| d.kept(|kept| kept.tls12 = None)));
    }

    fn insert_tls13_ticket(&self, _server: ServerName<'static>, value: Tls13ClientSessionValue) {
        with_driven(|device| device.map(|d| d.kept(|kept| kept.tls13 = Some(Box::new(value)))));
    }

    fn take_tls13_ticket(&self, _server: &ServerName<'static>) -> Option<Tls13ClientSessionValue> {
        with_driven(|device| device?.kept(|kept| kept.tls13.take().map(|ticket| *ticket)))
    }
}

/// A device's certificate and how its key is had.
pub enum ClientIdentity {
    /// The certificate and its key, kept for the device's next handshakes.
    Kept(CertificateDer<'static>, PrivateKeyDer<'static>),
    /// The certificate, and what makes its key again at each handshake: a key derived in tens
    /// of microseconds need not be kept in every connected device.
    Derived(CertificateDer<'static>, KeyMaker),
}

/// Makes a device's private key again.
pub type KeyMaker = Arc<dyn Fn() -> Option<PrivateKeyDer<'static>> + Send + Sync>;

/// A TLS client connection over TCP, on rustls's unbuffered API: the stream owns the only
/// buffers, and each exists only while it holds something. Ciphertext read is kept only while
/// a record is partly read (an idle connection holds none: rustls's buffered connection keeps
/// 4 KiB), and ciphertext to send only while the socket has not taken it.
pub struct TlsStream {
    tcp: TcpStream,
    /// Boxed apart from the rest: rustls's connection is 976 bytes, which with the stream's
    /// other fields would fill a 1,280-byte allocator class, on its own a 1,024-byte one.
    tls: Box<UnbufferedClientConnection>,
    /// The device whose connection this is (none: it presents no certificate), driven
    /// whenever rustls runs ([`Driving`]).
    device: Option<Arc<DeviceSide>>,
    /// Ciphertext read and not yet processed: part of a record between reads.
    incoming: Vec<u8>,
    /// Ciphertext made and not yet taken by the socket.
    outgoing: Vec<u8>,
    /// The server sent close_notify: nothing more will come.
    peer_closed: bool,
}

impl std::fmt::Debug for TlsStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsStream")
            .field("tcp", &self.tcp)
            .finish_non_exhaustive()
    }
}

/// Where the TLS state machine stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// It needs more from the server (mid-handshake, or a record partly read).
    Input,
    /// The handshake is done and nothing waits: application data may go both ways.
    Traffic,
    /// The server closed the connection cleanly.
    Closed,
}

/// Room for a record of `len` plaintext bytes, with its header and AEAD tag.
const RECORD_OVERHEAD: usize = 64;

impl TlsStream {
    /// Runs the handshake over `tcp` as a client of `server`: as `device` with its
    /// certificate and session, or (none) presenting no certificate; the stream and whether
    /// the session was resumed. An error whose reason is a TLS one carries it
    /// ([`TlsFailure::of_io`]).
    pub async fn handshake(
        tcp: TcpStream,
        template: &ClientTemplate,
        device: Option<Arc<DeviceSide>>,
        server: ServerName<'static>,
    ) -> io::Result<(Self, Handshake)> {
        let config = match device {
            Some(_) => template.devices.clone(),
            None => template.anonymous.clone(),
        };
        let tls = {
            // The ClientHello offers the device's kept session.
            let _driving = Driving::enter(device.as_ref());
            Box::new(UnbufferedClientConnection::new(config, server).map_err(io::Error::other)?)
        };
        let mut stream = Self {
            tcp,
            tls,
            device,
            incoming: Vec::new(),
            outgoing: Vec::new(),
            peer_closed: false,
        };
        loop {
            let stop = stream.process(&mut |_| {}, &mut None)?;
            std::future::poll_fn(|cx| stream.poll_send(cx)).await?;
            match stop {
                Stop::Traffic => break,
                Stop::Closed => return Err(io::ErrorKind::UnexpectedEof.into()),
                Stop::Input => {}
            }
            stream.tcp.readable().await?;
            match stream.read_socket() {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(_) => {}
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                Err(error) => return Err(error),
            }
        }
        let kind = match stream.tls.handshake_kind() {
            Some(HandshakeKind::Resumed) => Handshake::Resumed,
            _ => Handshake::Full,
        };
        Ok((stream, kind))
    }

    /// Runs the TLS state machine over the ciphertext read so far until it needs more input or
    /// has nothing left to do: application data goes to `plain`, handshake records and (once
    /// the handshake is done) `send`'s encryption to the outgoing buffer (`send` is then
    /// taken: still there, it could not be sent). A TLS error is an `InvalidData` I/O error
    /// carrying it.
    fn process(&mut self, plain: &mut dyn FnMut(&[u8]), send: &mut Option<&[u8]>) -> io::Result<Stop> {
        let Self {
            tls,
            device,
            incoming,
            outgoing,
            peer_closed,
            ..
        } = self;
        let _driving = Driving::enter(device.as_ref());
        loop {
            let UnbufferedStatus { mut discard, state } = tls.process_tls_records(incoming);
            let state = state.map_err(tls_error)?;
            let stop = match state {
                ConnectionState::ReadTraffic(mut records) => {
                    while let Some(record) = records.next_record() {
                        let AppDataRecord { discard: used, payload } = record.map_err(tls_error)?;
                        discard += used;
                        plain(payload);
                    }
                    None
                }
                ConnectionState::EncodeTlsData(mut records) => {
                    let mut room = 1024;
                    loop {
                        let start = outgoing.len();
                        outgoing.resize(start + room, 0);
                        match records.encode(&mut outgoing[start..]) {
                            Ok(written) => {
                                outgoing.truncate(start + written);
                                break;
                            }
                            Err(EncodeError::InsufficientSize(InsufficientSizeError { required_size })) => {
                                outgoing.truncate(start);
                                room = required_size;
                            }
                            Err(EncodeError::AlreadyEncoded) => {
                                outgoing.truncate(start);
                                break;
                            }
                        }
                    }
                    None
                }
                // What was encoded goes out with the next send; rustls only asks that it go
                // once, and in order.
                ConnectionState::TransmitTlsData(records) => {
                    records.done();
                    None
                }
                ConnectionState::BlockedHandshake => Some(Stop::Input),
                ConnectionState::WriteTraffic(mut traffic) => match send.take() {
                    Some(bytes) => {
                        let start = outgoing.len();
                        outgoing.resize(start + bytes.len() + RECORD_OVERHEAD, 0);
                        let written = match traffic.encrypt(bytes, &mut outgoing[start..]) {
                            Ok(written) => written,
                            Err(EncryptError::InsufficientSize(InsufficientSizeError { required_size })) => {
                                outgoing.resize(start + required_size, 0);
                                traffic
                                    .encrypt(bytes, &mut outgoing[start..])
                                    .map_err(|e| io::Error::other(e.to_string()))?
                            }
                            Err(error) => return Err(io::Error::other(error.to_string())),
                        };
                        outgoing.truncate(start + written);
                        None
                    }
                    None => Some(Stop::Traffic),
                },
                ConnectionState::PeerClosed => {
                    *peer_closed = true;
                    None
                }
                ConnectionState::Closed => Some(Stop::Closed),
                // Early data is the server's; a future state: nothing to do here.
                _ => Some(Stop::Traffic),
            };
            if discard > 0 {
                incoming.drain(..discard);
            }
            if let Some(stop) = stop {
                // Stopped for more input with nothing partly read: hold no read buffer.
                if incoming.is_empty() {
                    *incoming = Vec::new();
                }
                if *peer_closed && stop == Stop::Traffic {
                    return Ok(Stop::Closed);
                }
                return Ok(stop);
            }
        }
    }

    /// Reads the ciphertext the socket has into the incoming buffer: how many bytes (0: the
    /// server closed the connection), `WouldBlock` when none.
    fn read_socket(&mut self) -> io::Result<usize> {
        let start = self.incoming.len();
        self.incoming.resize(start + 4096, 0);
        let read = self.tcp.try_read(&mut self.incoming[start..]);
        self.incoming.truncate(start + *read.as_ref().unwrap_or(&0));
        if self.incoming.is_empty() {
            self.incoming = Vec::new();
        }
        read
    }

    /// Writes what waits to be sent as far as the socket takes it now: whether all went.
    fn send_now(&mut self) -> io::Result<bool> {
        while !self.outgoing.is_empty() {
            match self.tcp.try_write(&self.outgoing) {
                Ok(written) => {
                    self.outgoing.drain(..written);
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(error) => return Err(error),
            }
        }
        self.outgoing = Vec::new();
        Ok(true)
    }

    /// Writes everything waiting to be sent, waiting for the socket as needed.
    pub fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            if self.send_now()? {
                return Poll::Ready(Ok(()));
            }
            ready!(self.tcp.poll_write_ready(cx))?;
        }
    }

    /// Whether ciphertext waits for the socket.
    pub fn wants_send(&self) -> bool {
        !self.outgoing.is_empty()
    }

    /// Ready when the socket has something to read (or has closed).
    pub fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.tcp.poll_read_ready(cx)
    }

    /// Appends to `buf` the plaintext that has come, without waiting: how many bytes (0: the
    /// server closed the stream), `WouldBlock` when none has.
    pub fn try_read_buf(&mut self, buf: &mut bytes::BytesMut) -> io::Result<usize> {
        loop {
            if self.peer_closed {
                return Ok(0);
            }
            if self.read_socket()? == 0 {
                return Ok(0);
            }
            let mut got = 0;
            let stop = self.process(
                &mut |payload| {
                    buf.extend_from_slice(payload);
                    got += payload.len();
                },
                &mut None,
            )?;
            // Whatever TLS owes the server (a key update's answer) goes now, best effort; the
            // next write sends the rest.
            self.send_now()?;
            if got > 0 {
                return Ok(got);
            }
            if stop == Stop::Closed {
                return Ok(0);
            }
        }
    }

    /// Encrypts `bytes` into records and writes what the socket takes now; all of `bytes` is
    /// taken, and what the socket did not take is sent by [`TlsStream::poll_send`]. Takes
    /// nothing (`WouldBlock`) while earlier records wait for the socket.
    pub fn try_write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        if !self.send_now()? {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        // Nothing complete waits in `incoming` (reads process all they read), so the state
        // machine reaches its traffic state and encrypts.
        let mut send = Some(bytes);
        self.process(&mut |_| {}, &mut send)?;
        if send.is_some() {
            // Closed by both sides (or not yet in traffic): nothing can go.
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        self.send_now()?;
        Ok(bytes.len())
    }

    /// Sends close_notify and shuts the socket's write side.
    pub fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_close_notify(cx))?;
        std::pin::Pin::new(&mut self.tcp).poll_shutdown(cx)
    }

    /// Sends close_notify, TLS's goodbye, leaving the socket open (its close says the rest).
    pub fn poll_close_notify(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let discard = {
            let _driving = Driving::enter(self.device.as_ref());
            let UnbufferedStatus { discard, state } = self.tls.process_tls_records(&mut self.incoming);
            if let Ok(ConnectionState::WriteTraffic(mut traffic)) = state {
                let mut alert = [0u8; RECORD_OVERHEAD];
                if let Ok(written) = traffic.queue_close_notify(&mut alert) {
                    self.outgoing.extend_from_slice(&alert[..written]);
                }
            }
            discard
        };
        self.incoming.drain(..discard);
        self.poll_send(cx)
    }

    /// The socket.
    pub fn tcp(&self) -> &TcpStream {
        &self.tcp
    }
}

/// A rustls error as an I/O error that carries it.
fn tls_error(error: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::CertificateError;

    #[test]
    fn failures_are_told_apart_by_their_alert() {
        let alert = |a| TlsFailure::of(&rustls::Error::AlertReceived(a));
        assert_eq!(alert(AlertDescription::UnknownCA), TlsFailure::UnknownCa);
        assert_eq!(alert(AlertDescription::CertificateExpired), TlsFailure::Expired);
        assert_eq!(alert(AlertDescription::CertificateRevoked), TlsFailure::Revoked);
        assert_eq!(alert(AlertDescription::CertificateRequired), TlsFailure::BadCertificate);
        assert_eq!(alert(AlertDescription::DecryptError), TlsFailure::BadCertificate);
        assert_eq!(alert(AlertDescription::ProtocolVersion), TlsFailure::Handshake);
        let untrusted = rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer);
        assert_eq!(TlsFailure::of(&untrusted), TlsFailure::ServerUntrusted);
        let io = io::Error::new(io::ErrorKind::InvalidData, untrusted);
        assert_eq!(TlsFailure::of_io(&io), Some(TlsFailure::ServerUntrusted));
        assert_eq!(
            TlsFailure::of_io(&io::Error::from(io::ErrorKind::ConnectionReset)),
            None
        );
    }

    #[test]
    fn a_connection_fills_its_allocator_classes() {
        // mimalloc's classes here are 1,024 and 112 bytes: a connection of 1,025 would cost
        // 1,280, every connected device.
        assert!(std::mem::size_of::<UnbufferedClientConnection>() <= 1024);
        assert!(std::mem::size_of::<TlsStream>() <= 112);
    }

    #[test]
    fn the_fleet_config_answers_for_the_device_being_driven() {
        let template = ClientTemplate::new(RootCertStore::empty(), &[Version::Tls13], true).expect("template");
        let derived = |byte: u8| {
            let maker: KeyMaker = Arc::new(|| None);
            ClientIdentity::Derived(CertificateDer::from(vec![byte; 8]), maker)
        };
        let (a, b) = (
            template.device(Some(derived(1))).expect("a"),
            template.device(Some(derived(2))).expect("b"),
        );
        let anonymous = template.device(None).expect("no certificate");
        let driven = DrivenDevice {
            provider: template.provider.clone(),
        };
        let server = ServerName::try_from("localhost").expect("name");
        {
            let _driving = Driving::enter(Some(&a));
            driven.set_kx_hint(server.clone(), NamedGroup::X25519);
            assert!(driven.has_certs());
            {
                // Driving another device inside (never done; still told apart).
                let _inner = Driving::enter(Some(&b));
                assert_eq!(driven.kx_hint(&server), None, "b keeps nothing of a's");
            }
            assert_eq!(driven.kx_hint(&server), Some(NamedGroup::X25519), "a's own again");
        }
        assert_eq!(driven.kx_hint(&server), None, "no device driven: nothing answered");
        assert!(!driven.has_certs());
        let driving = Driving::enter(Some(&anonymous));
        assert!(!driven.has_certs(), "a device without a certificate presents none");
        drop(driving);
        // A derived key that cannot be made: no certificate offered rather than a panic.
        let _driving = Driving::enter(Some(&b));
        assert!(driven.resolve(&[], &[SignatureScheme::ECDSA_NISTP256_SHA256]).is_none());
    }
}
