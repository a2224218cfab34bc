//! A device's connection to the gateway: plain TCP, or TLS over it (the `mqtts` listener).
//! The gateway reads and writes packets the same way over either; over TLS a device may
//! present a certificate the backend's CA issued, which is then who it is.

use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use crate::certs::{CertAuthority, PeerCert, peer_cert};

/// An accepted device connection.
#[derive(Debug)]
pub enum DeviceStream {
    /// Plain TCP.
    Tcp(TcpStream),
    /// TLS over TCP; boxed, so a plain connection stays a socket's size.
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for DeviceStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(stream) => Pin::new(stream).poll_read(cx, buf),
            Self::Tls(stream) => Pin::new(stream.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for DeviceStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Tcp(stream) => Pin::new(stream).poll_write(cx, buf),
            Self::Tls(stream) => Pin::new(stream.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(stream) => Pin::new(stream).poll_flush(cx),
            Self::Tls(stream) => Pin::new(stream.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(stream) => Pin::new(stream).poll_shutdown(cx),
            Self::Tls(stream) => Pin::new(stream.as_mut()).poll_shutdown(cx),
        }
    }
}

impl DeviceStream {
    /// Who the client certificate the device presented names, when it presented one (the
    /// handshake already checked that the backend's CA issued it and that it is in date).
    pub fn peer_cert(&self) -> Option<PeerCert> {
        match self {
            Self::Tcp(_) => None,
            Self::Tls(stream) => {
                let leaf = stream.get_ref().1.peer_certificates()?.first()?;
                peer_cert(leaf)
            }
        }
    }
}

/// The gateway's TLS listener: the server's settings, and the CA that signs devices'
/// certificate requests (whose certificates the listener then accepts as identities).
#[derive(Debug, Clone)]
pub struct GatewayTls {
    /// The TLS server settings.
    pub config: Arc<rustls::ServerConfig>,
    /// The CA devices' certificates come from, when the backend holds its key.
    pub authority: Option<Arc<CertAuthority>>,
}

impl GatewayTls {
    /// Reads the server's certificate chain and key (PEM) and, when given, the CA's
    /// certificate and key: with a CA, a device may present a certificate it issued (one
    /// without is still served, and logs in with a claim or a token). TLS 1.2 and 1.3, on
    /// AWS-LC.
    pub fn load(cert: &Path, key: &Path, ca: Option<(&Path, &Path)>) -> Result<Self, String> {
        let chain = CertificateDer::pem_file_iter(cert)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| {
                format!(
                    "{}: expected the server's certificate chain in PEM ({e})",
                    cert.display()
                )
            })?;
        if chain.is_empty() {
            return Err(format!("{}: holds no certificate", cert.display()));
        }
        let key = PrivateKeyDer::from_pem_file(key)
            .map_err(|e| format!("{}: expected the server's private key in PEM ({e})", key.display()))?;
        let authority = match ca {
            Some((ca_cert, ca_key)) => Some(Arc::new(CertAuthority::load(ca_cert, ca_key)?)),
            None => None,
        };
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS12, &rustls::version::TLS13])
            .map_err(|e| e.to_string())?;
        let builder = match &authority {
            Some(authority) => {
                let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(authority.roots()?), provider)
                    .allow_unauthenticated()
                    .build()
                    .map_err(|e| format!("client certificate verifier: {e}"))?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let config = builder
            .with_single_cert(chain, key)
            .map_err(|e| format!("{}: {e}", cert.display()))?;
        Ok(Self {
            config: Arc::new(config),
            authority,
        })
    }
}
