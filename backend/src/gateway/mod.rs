//! The MQTT device gateway: devices connect here with the credentials the registry issued,
//! provision by claim, report telemetry, status and applied config, and receive their desired
//! config (retained). It terminates device connections itself, tied directly to the
//! registry, as ThingsBoard's MQTT transport and AWS IoT Core do, rather than running a
//! general-purpose broker with the service as one more client.

pub mod auth;
pub mod certify;
pub mod conn;
pub mod packet_io;
pub mod payloads;
pub mod sessions;
pub mod stats;
pub mod stream;
pub mod topics;

use std::io;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::certs::CertAuthority;
use crate::monitor::Monitor;
use crate::registry::Registry;
use sessions::SessionTable;
use stats::GatewayStats;
use stream::{DeviceStream, GatewayTls};

/// Bounds on what one connection may do.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest packet accepted; bigger ones close the connection (and are counted).
    pub max_packet_bytes: usize,
    /// How long a new connection may take to send CONNECT.
    pub connect_timeout: Duration,
    /// How long shutdown waits for connections to close before giving up on them.
    pub drain_timeout: Duration,
    /// LwM2M requests the front serves at once (provisioning and registrations waiting on the
    /// registry); past this a request is answered 5.03 with Max-Age 1, so a flood of datagrams
    /// cannot grow the backend's memory without end.
    pub lwm2m_in_flight: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_packet_bytes: 256 * 1024,
            connect_timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(5),
            lwm2m_in_flight: 4096,
        }
    }
}

/// State every connection shares.
#[derive(Debug)]
pub struct Shared {
    /// The device registry.
    pub registry: Registry,
    /// Who holds each client id.
    pub sessions: SessionTable,
    /// Counters.
    pub stats: GatewayStats,
    /// Per-connection bounds.
    pub limits: Limits,
    /// Source of connection ids.
    pub next_conn_id: AtomicU64,
    /// The CA that signs devices' certificate requests, once a TLS listener holding its key
    /// serves.
    pub authority: OnceLock<Arc<CertAuthority>>,
    /// The alert rules and the alerts in force.
    pub monitor: Monitor,
}

/// The gateway: cheap to clone, shared by the accept loop and the operator API.
#[derive(Debug, Clone)]
pub struct Gateway {
    pub(crate) shared: Arc<Shared>,
}

impl Gateway {
    /// A gateway over `registry`.
    pub fn new(registry: Registry, limits: Limits) -> Self {
        let shared = Shared {
            monitor: Monitor::new(registry.clone()),
            registry,
            sessions: SessionTable::default(),
            stats: GatewayStats::default(),
            limits,
            next_conn_id: AtomicU64::new(1),
            authority: OnceLock::new(),
        };
        Self {
            shared: Arc::new(shared),
        }
    }

    /// The alert rules and the alerts in force.
    pub fn monitor(&self) -> &Monitor {
        &self.shared.monitor
    }

    /// Counters, for `/metrics`.
    pub fn stats(&self) -> &GatewayStats {
        &self.shared.stats
    }

    /// The session table, for routing operator messages to devices.
    pub fn sessions(&self) -> &SessionTable {
        &self.shared.sessions
    }

    /// Accepts connections on `listener` until `shutdown`, then waits (up to the drain
    /// timeout) for open connections to close.
    pub async fn serve(&self, listener: TcpListener, shutdown: CancellationToken) -> io::Result<()> {
        self.accept(listener, None, shutdown).await
    }

    /// As [`Gateway::serve`], over TLS: a device that has not finished its handshake within
    /// the connect timeout is dropped, and handshakes are counted, done and failed. With a CA,
    /// devices get certificates from it and log in with them.
    pub async fn serve_tls(
        &self,
        listener: TcpListener,
        tls: GatewayTls,
        shutdown: CancellationToken,
    ) -> io::Result<()> {
        if let Some(authority) = tls.authority {
            // A second TLS listener brings the same data folder's CA; the first one stays.
            let _ = self.shared.authority.set(authority);
        }
        self.accept(listener, Some(TlsAcceptor::from(tls.config)), shutdown)
            .await
    }

    async fn accept(
        &self,
        listener: TcpListener,
        tls: Option<TlsAcceptor>,
        shutdown: CancellationToken,
    ) -> io::Result<()> {
        let tracker = TaskTracker::new();
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = shutdown.cancelled() => break,
            };
            match accepted {
                Ok((stream, _peer)) => {
                    stats::bump(&self.shared.stats.connections);
                    // Small messages dominate; waiting to coalesce them would only add latency.
                    let _ = stream.set_nodelay(true);
                    let shared = Arc::clone(&self.shared);
                    let shutdown = shutdown.clone();
                    match &tls {
                        None => {
                            tracker.spawn(conn::serve(DeviceStream::Tcp(stream), shared, shutdown));
                        }
                        Some(acceptor) => {
                            let accepting = acceptor.accept(stream);
                            tracker.spawn(async move {
                                let limit = shared.limits.connect_timeout;
                                match tokio::time::timeout(limit, accepting).await {
                                    Ok(Ok(stream)) => {
                                        stats::bump(&shared.stats.tls_handshakes);
                                        let stream = DeviceStream::Tls(Box::new(stream));
                                        conn::serve(stream, shared, shutdown).await;
                                    }
                                    // Not TLS, a certificate refused, or silence: the client
                                    // has its alert (or the closed socket), the gateway its count.
                                    _ => stats::bump(&shared.stats.tls_failed),
                                }
                            });
                        }
                    }
                }
                // Out of file descriptors or a connection reset before accept: back off
                // briefly instead of spinning, and keep serving the connections we have.
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        tracker.close();
        let _ = tokio::time::timeout(self.shared.limits.drain_timeout, tracker.wait()).await;
        Ok(())
    }
}
