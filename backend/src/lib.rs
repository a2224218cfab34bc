//! fleetsim's reference device-management backend: an MQTT device gateway tied to a durable
//! registry, with provisioning by claim, versioned desired config with drift, and
//! decommissioning, behind an operator HTTP API (ARCHITECTURE section 7). It is the system
//! under test that `fleetsim run` embeds by default, and a standalone server
//! (`fleetsim backend`).
//!
//! Entry points take already-bound listeners and a shutdown token, so tests and the embedding
//! harness run it in-process on port 0.

pub mod api;
pub mod certs;
pub mod gateway;
pub mod lwm2m;
pub mod monitor;
pub mod ota;
pub mod registry;

use std::io;
use std::path::Path;

use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;

use gateway::stream::GatewayTls;
use gateway::{Gateway, Limits};
use lwm2m::Lwm2mFront;
use ota::campaign::CampaignRunner;
use ota::firmware::{FirmwareError, FirmwareStore};
use registry::{PskRoot, Registry, RegistryError, RegistryOptions};

/// The backend's parts, opened on a data folder and not yet serving.
#[derive(Debug, Clone)]
pub struct Backend {
    /// The durable registry.
    pub registry: Registry,
    /// The device gateway.
    pub gateway: Gateway,
    /// Firmware images.
    pub firmware: FirmwareStore,
}

/// Why the backend could not open its data folder.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The registry could not open.
    #[error("registry: {0}")]
    Registry(#[from] RegistryError),
    /// The firmware store could not open.
    #[error("firmware store: {0}")]
    Firmware(#[from] FirmwareError),
}

impl Backend {
    /// Opens (or creates) the registry and the firmware store in `data_dir`.
    pub fn open(data_dir: &Path, limits: Limits) -> Result<Self, OpenError> {
        Self::open_with(data_dir, limits, RegistryOptions::default())
    }

    /// As [`Backend::open`], the registry opened with `options` (a new directory's key given,
    /// so that device ids are the same in every run).
    pub fn open_with(data_dir: &Path, limits: Limits, options: RegistryOptions) -> Result<Self, OpenError> {
        let registry = Registry::open(data_dir, options)?;
        let firmware = FirmwareStore::open(&data_dir.join("firmware"))?;
        let gateway = Gateway::new(registry.clone(), limits);
        Ok(Self {
            registry,
            gateway,
            firmware,
        })
    }

    /// Serves devices on `mqtt` and the operator API (and firmware downloads) on `http`
    /// until `shutdown`, resuming campaigns that were running; then lets connections drain.
    pub async fn serve(&self, mqtt: TcpListener, http: TcpListener, shutdown: CancellationToken) -> io::Result<()> {
        let listeners = Listeners {
            mqtt,
            mqtts: None,
            lwm2m: None,
            lwm2m_dtls: None,
            http,
        };
        self.serve_on(listeners, shutdown).await
    }

    /// As [`Backend::serve`], on every listener given: devices also over TLS (a listener and
    /// its TLS settings, with the CA that issues devices' certificates) and over LwM2M.
    pub async fn serve_on(&self, listeners: Listeners, shutdown: CancellationToken) -> io::Result<()> {
        let Listeners {
            mqtt,
            mqtts,
            lwm2m,
            lwm2m_dtls,
            http,
        } = listeners;
        let download_base = format!("http://{}/firmware", http.local_addr()?);
        let mqtt_addr = mqtt.local_addr()?.to_string();
        let mqtts_addr = match &mqtts {
            Some((listener, _)) => Some(listener.local_addr()?.to_string()),
            None => None,
        };
        let lwm2m = match lwm2m {
            Some(socket) => Some(
                Lwm2mFront::new(&self.gateway, socket, self.firmware.clone(), lwm2m_dtls).map_err(io::Error::other)?,
            ),
            None => None,
        };
        let lwm2m_addr = match &lwm2m {
            Some(front) => Some(front.local_addr()?.to_string()),
            None => None,
        };
        let lwm2m_dtls_addr = match &lwm2m {
            Some(front) => front.dtls_addr().transpose()?.map(|addr| addr.to_string()),
            None => None,
        };
        let campaigns = CampaignRunner::new(
            self.registry.clone(),
            self.gateway.clone(),
            self.firmware.clone(),
            shutdown.clone(),
        );
        let registry = self.registry.clone();
        // A registry that cannot list its campaigns now will fail loudly on the first request;
        // serving devices meanwhile is still right.
        if let Ok(Ok(running)) = tokio::task::spawn_blocking(move || registry.running_campaigns()).await {
            for campaign in running {
                campaigns.spawn(campaign, &download_base);
            }
        }
        let state = api::ApiState {
            registry: self.registry.clone(),
            gateway: self.gateway.clone(),
            firmware: self.firmware.clone(),
            campaigns: campaigns.clone(),
            download_base,
            mqtt_addr,
            mqtts_addr,
            lwm2m_addr,
            lwm2m_dtls_addr,
        };
        let lwm2m_front = async {
            match &lwm2m {
                Some(front) => front.serve(shutdown.clone()).await,
                None => Ok(()),
            }
        };
        let tls_gateway = async {
            match mqtts {
                Some((listener, tls)) => self.gateway.serve_tls(listener, tls, shutdown.clone()).await,
                None => Ok(()),
            }
        };
        let (gateway, tls_gateway, lwm2m_front, api, (), ()) = tokio::join!(
            self.gateway.serve(mqtt, shutdown.clone()),
            tls_gateway,
            lwm2m_front,
            api::serve(http, state, shutdown.clone()),
            expire_commands(self.registry.clone(), shutdown.clone()),
            watch_offline(self.gateway.clone(), shutdown.clone())
        );
        campaigns.wait().await;
        gateway.and(tls_gateway).and(lwm2m_front).and(api)
    }
}

/// The sockets a backend serves on.
#[derive(Debug)]
pub struct Listeners {
    /// MQTT devices, plaintext.
    pub mqtt: TcpListener,
    /// MQTT devices over TLS, with the TLS settings.
    pub mqtts: Option<(TcpListener, GatewayTls)>,
    /// LwM2M devices over CoAP.
    pub lwm2m: Option<UdpSocket>,
    /// LwM2M devices over CoAP over DTLS with a pre-shared key (with `lwm2m` only), and the
    /// root of the devices' keys (the registry's when `None`).
    pub lwm2m_dtls: Option<(UdpSocket, Option<PskRoot>)>,
    /// The operator API and firmware downloads.
    pub http: TcpListener,
}

/// Raises the offline alerts that come due, every [`monitor::SWEEP_EVERY`], until `shutdown`.
async fn watch_offline(gateway: Gateway, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(monitor::SWEEP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let sessions = gateway.sessions();
                gateway
                    .monitor()
                    .sweep(registry::system_clock_ms(), |id| sessions.is_live(id))
                    .await;
            }
            () = shutdown.cancelled() => return,
        }
    }
}

/// How often unanswered commands past their deadline are marked timed out.
const COMMAND_SWEEP: std::time::Duration = std::time::Duration::from_millis(500);

/// Times out unanswered commands until `shutdown`.
async fn expire_commands(registry: Registry, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(COMMAND_SWEEP);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                // A failed sweep (registry busy or closing) is retried on the next tick.
                let _ = registry.expire_commands().await;
            }
            () = shutdown.cancelled() => return,
        }
    }
}
