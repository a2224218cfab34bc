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

/// What every device's TLS client shares: the server's trust anchors and the protocol
/// versions. A device's own config adds its certificate and its session store
/// ([`ClientTemplate::for_device`]).
#[derive(Debug, Clone)]
pub struct ClientTemplate {
    config: ClientConfig,
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
    /// Trusts the servers whose certificates chain to `roots`, offering `versions`.
    pub fn new(roots: RootCertStore, versions: &[Version]) -> Result<Self, rustls::Error> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let versions: Vec<&'static rustls::SupportedProtocolVersion> = versions
            .iter()
            .map(|v| match v {
                Version::Tls12 => &rustls::version::TLS12,
                Version::Tls13 => &rustls::version::TLS13,
            })
            .collect();
        let config = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&versions)?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self { config })
    }

    /// A device's config: its certificate and key (none: it presents no certificate) and,
    /// when it resumes sessions, a session store of its own. Never shared between devices:
    /// under mutual TLS a resumed session carries the identity it was made with.
    pub fn for_device(
        &self,
        identity: Option<ClientIdentity>,
        resume: bool,
    ) -> Result<Arc<ClientConfig>, rustls::Error> {
        let mut config = self.config.clone();
        let provider = config.crypto_provider().clone();
        match identity {
            Some(ClientIdentity::Kept(cert, key)) => {
                let key = provider.key_provider.load_private_key(key)?;
                config.client_auth_cert_resolver = Arc::new(DeviceCert(Arc::new(CertifiedKey::new(vec![cert], key))));
            }
            Some(ClientIdentity::Derived(cert, key)) => {
                config.client_auth_cert_resolver = Arc::new(DerivedCert { cert, key, provider });
            }
            None => {}
        }
        config.resumption = if resume {
            Resumption::store(Arc::new(DeviceSessions::default()))
        } else {
            Resumption::disabled()
        };
        Ok(Arc::new(config))
    }
}

/// A device's session store: its server's newest TLS 1.3 ticket (or TLS 1.2 session) and the
/// key-exchange group that server took. A device talks to one server, and a ticket is used
/// once, so one is enough; rustls's in-memory cache keeps up to eight a server, in maps sized
/// for many servers, about a kilobyte a device more.
#[derive(Debug, Default)]
struct DeviceSessions(Mutex<Option<Kept>>);

/// What a device keeps of its last session with its server.
#[derive(Debug)]
struct Kept {
    server: ServerName<'static>,
    group: Option<NamedGroup>,
    tls12: Option<Tls12ClientSessionValue>,
    tls13: Option<Tls13ClientSessionValue>,
}

impl DeviceSessions {
    /// The kept session with `server` (a session with another server is forgotten).
    fn with<T>(&self, server: &ServerName<'_>, f: impl FnOnce(&mut Kept) -> T) -> T {
        // A poisoned lock means a panic mid-update; what is kept is still whole enough to try.
        let mut kept = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if kept.as_ref().is_none_or(|k| k.server != *server) {
            *kept = Some(Kept {
                server: server.to_owned(),
                group: None,
                tls12: None,
                tls13: None,
            });
        }
        match kept.as_mut() {
            Some(kept) => f(kept),
            // Set just above.
            None => unreachable!(),
        }
    }
}

impl ClientSessionStore for DeviceSessions {
    fn set_kx_hint(&self, server: ServerName<'static>, group: NamedGroup) {
        self.with(&server, |kept| kept.group = Some(group));
    }

    fn kx_hint(&self, server: &ServerName<'_>) -> Option<NamedGroup> {
        self.with(server, |kept| kept.group)
    }

    fn set_tls12_session(&self, server: ServerName<'static>, value: Tls12ClientSessionValue) {
        self.with(&server, |kept| kept.tls12 = Some(value));
    }

    fn tls12_session(&self, server: &ServerName<'_>) -> Option<Tls12ClientSessionValue> {
        self.with(server, |kept| kept.tls12.clone())
    }

    fn remove_tls12_session(&self, server: &ServerName<'static>) {
        self.with(server, |kept| kept.tls12 = None);
    }

    fn insert_tls13_ticket(&self, server: ServerName<'static>, value: Tls13ClientSessionValue) {
        self.with(&server, |kept| kept.tls13 = Some(value));
    }

    fn take_tls13_ticket(&self, server: &ServerName<'static>) -> Option<Tls13ClientSessionValue> {
        self.with(server, |kept| kept.tls13.take())
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

/// A device's one certificate, whatever the server asks.
#[derive(Debug)]
struct DeviceCert(Arc<CertifiedKey>);

/// A device's certificate whose key is made at each handshake that asks for it.
struct DerivedCert {
    cert: CertificateDer<'static>,
    key: KeyMaker,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl std::fmt::Debug for DerivedCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DerivedCert")
            .field("cert_bytes", &self.cert.len())
            .finish()
    }
}

impl ResolvesClientCert for DerivedCert {
    fn resolve(&self, _issuers: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        let key = self.provider.key_provider.load_private_key((self.key)()?).ok()?;
        Some(Arc::new(CertifiedKey::new(vec![self.cert.clone()], key)))
    }

    fn has_certs(&self) -> bool {
        true
    }
}

impl ResolvesClientCert for DeviceCert {
    fn resolve(&self, _issuers: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// A TLS client connection over TCP, on rustls's unbuffered API: the stream owns the only
/// buffers, and each exists only while it holds something. Ciphertext read is kept only while
/// a record is partly read (an idle connection holds none: rustls's buffered connection keeps
/// 4 KiB), and ciphertext to send only while the socket has not taken it.
pub struct TlsStream {
    tcp: TcpStream,
    tls: UnbufferedClientConnection,
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
    /// Runs the handshake over `tcp` as a client of `server` with `config`; the stream and
    /// whether the session was resumed. An error whose reason is a TLS one carries it
    /// ([`TlsFailure::of_io`]).
    pub async fn handshake(
        tcp: TcpStream,
        config: Arc<ClientConfig>,
        server: ServerName<'static>,
    ) -> io::Result<(Self, Handshake)> {
        let tls = UnbufferedClientConnection::new(config, server).map_err(io::Error::other)?;
        let mut stream = Self {
            tcp,
            tls,
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
            incoming,
            outgoing,
            peer_closed,
            ..
        } = self;
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
        let UnbufferedStatus { discard, state } = self.tls.process_tls_records(&mut self.incoming);
        if let Ok(ConnectionState::WriteTraffic(mut traffic)) = state {
            let mut alert = [0u8; RECORD_OVERHEAD];
            if let Ok(written) = traffic.queue_close_notify(&mut alert) {
                self.outgoing.extend_from_slice(&alert[..written]);
            }
        }
        self.incoming.drain(..discard);
        ready!(self.poll_send(cx))?;
        std::pin::Pin::new(&mut self.tcp).poll_shutdown(cx)
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
}
