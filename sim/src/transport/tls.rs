//! TLS over a device's TCP stream, on rustls with AWS-LC: the handshake, driven on the device's
//! own task, and then reads and writes that look to a session's codec like a plain socket's
//! (read what is there without waiting; write what the socket takes now), so MQTT runs over it
//! unchanged ([`super::stream::ByteStream::Tls`]).
//!
//! A refused handshake is classified by its reason ([`TlsFailure`]): a load tester that
//! counted "unknown CA" and "certificate expired" as one failure could not tell a broker that
//! refuses revoked devices from one that refuses everyone.

use std::io::{self, Read, Write};
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use rustls::client::danger::ServerCertVerifier;
use rustls::client::{ResolvesClientCert, Resumption};
use rustls::sign::CertifiedKey;
use rustls::{AlertDescription, ClientConfig, ClientConnection, HandshakeKind, RootCertStore, SignatureScheme};
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
    /// Every reason, in the order reports list them.
    pub const ALL: [Self; 6] = [
        Self::UnknownCa,
        Self::Expired,
        Self::Revoked,
        Self::BadCertificate,
        Self::ServerUntrusted,
        Self::Handshake,
    ];

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
        let verifier: Arc<dyn ServerCertVerifier> =
            rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(|e| rustls::Error::General(e.to_string()))?;
        let config = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&versions)?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        Ok(Self { config })
    }

    /// A device's config: its certificate and key (none: it presents no certificate) and,
    /// when it resumes sessions, a session store of its own. Never shared between devices:
    /// under mutual TLS a resumed session carries the identity it was made with.
    pub fn for_device(
        &self,
        identity: Option<(CertificateDer<'static>, PrivateKeyDer<'static>)>,
        resume: bool,
    ) -> Result<Arc<ClientConfig>, rustls::Error> {
        let mut config = self.config.clone();
        if let Some((cert, key)) = identity {
            let key = config.crypto_provider().key_provider.load_private_key(key)?;
            config.client_auth_cert_resolver = Arc::new(DeviceCert(Arc::new(CertifiedKey::new(vec![cert], key))));
        }
        config.resumption = if resume {
            // One server per device: a store of one server's tickets.
            Resumption::in_memory_sessions(1)
        } else {
            Resumption::disabled()
        };
        Ok(Arc::new(config))
    }
}

/// A device's one certificate, whatever the server asks.
#[derive(Debug)]
struct DeviceCert(Arc<CertifiedKey>);

impl ResolvesClientCert for DeviceCert {
    fn resolve(&self, _issuers: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// A TLS client connection over TCP.
pub struct TlsStream {
    tcp: TcpStream,
    tls: ClientConnection,
}

impl std::fmt::Debug for TlsStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsStream")
            .field("tcp", &self.tcp)
            .finish_non_exhaustive()
    }
}

impl TlsStream {
    /// Runs the handshake over `tcp` as a client of `server` with `config`; the stream and
    /// whether the session was resumed. An error whose reason is a TLS one carries it
    /// ([`TlsFailure::of_io`]).
    pub async fn handshake(
        tcp: TcpStream,
        config: Arc<ClientConfig>,
        server: ServerName<'static>,
    ) -> io::Result<(Self, Handshake)> {
        let tls = ClientConnection::new(config, server).map_err(io::Error::other)?;
        let mut stream = Self { tcp, tls };
        while stream.tls.is_handshaking() {
            std::future::poll_fn(|cx| stream.poll_send(cx)).await?;
            if !stream.tls.is_handshaking() {
                break;
            }
            stream.tcp.readable().await?;
            match stream.receive() {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(_) => {}
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                Err(error) => return Err(error),
            }
        }
        // The client's Finished (and, under TLS 1.3, its certificate) go out now.
        std::future::poll_fn(|cx| stream.poll_send(cx)).await?;
        let kind = match stream.tls.handshake_kind() {
            Some(HandshakeKind::Resumed) => Handshake::Resumed,
            _ => Handshake::Full,
        };
        Ok((stream, kind))
    }

    /// Reads the ciphertext the socket has and processes it: how many bytes came (0: the
    /// server closed the connection), `WouldBlock` when none. A TLS error is sent to the
    /// server as its alert, best effort, and returned.
    fn receive(&mut self) -> io::Result<usize> {
        let read = self.tls.read_tls(&mut SocketNow(&self.tcp))?;
        if read == 0 {
            return Ok(0);
        }
        if let Err(error) = self.tls.process_new_packets() {
            let _ = self.send_now();
            return Err(io::Error::new(io::ErrorKind::InvalidData, error));
        }
        Ok(read)
    }

    /// Writes what TLS has to send as far as the socket takes it now: whether all went.
    fn send_now(&mut self) -> io::Result<bool> {
        while self.tls.wants_write() {
            match self.tls.write_tls(&mut SocketNow(&self.tcp)) {
                Ok(_) => {}
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(error) => return Err(error),
            }
        }
        Ok(true)
    }

    /// Writes everything TLS has to send, waiting for the socket as needed.
    pub fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            if self.send_now()? {
                return Poll::Ready(Ok(()));
            }
            ready!(self.tcp.poll_write_ready(cx))?;
        }
    }

    /// Whether TLS holds bytes the socket has not taken yet.
    pub fn wants_send(&self) -> bool {
        self.tls.wants_write()
    }

    /// Ready when the socket has something to read (or has closed).
    pub fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.tcp.poll_read_ready(cx)
    }

    /// Appends to `buf` the plaintext that has come, without waiting: how many bytes (0: the
    /// server closed the stream), `WouldBlock` when none has.
    pub fn try_read_buf(&mut self, buf: &mut bytes::BytesMut) -> io::Result<usize> {
        loop {
            let mut chunk = [0u8; 1024];
            let mut got = 0;
            loop {
                match self.tls.reader().read(&mut chunk) {
                    Ok(0) => break,
                    Ok(n) => {
                        buf.extend_from_slice(&chunk[..n]);
                        got += n;
                    }
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                    // Closed without close_notify: the server went away.
                    Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => break,
                    Err(error) => return Err(error),
                }
            }
            if got > 0 {
                return Ok(got);
            }
            if self.receive()? == 0 {
                return Ok(0);
            }
        }
    }

    /// Encrypts `bytes` and writes what the socket takes now. Takes nothing (`WouldBlock`)
    /// while earlier records wait for the socket; what it takes is sent, now or by
    /// [`TlsStream::poll_send`].
    pub fn try_write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        if !self.send_now()? {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let taken = self.tls.writer().write(bytes)?;
        self.send_now()?;
        Ok(taken)
    }

    /// Sends close_notify and shuts the socket's write side.
    pub fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.tls.send_close_notify();
        ready!(self.poll_send(cx))?;
        std::pin::Pin::new(&mut self.tcp).poll_shutdown(cx)
    }

    /// The socket.
    pub fn tcp(&self) -> &TcpStream {
        &self.tcp
    }
}

/// The socket as `Read` and `Write` that never wait (`WouldBlock` instead), for rustls.
struct SocketNow<'a>(&'a TcpStream);

impl Read for SocketNow<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.try_read(buf)
    }
}

impl Write for SocketNow<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write(buf)
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        self.0.try_write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
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
