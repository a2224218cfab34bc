//! The reference backend started in this test process on loopback port 0, with the claims
//! `fleetsim run` would create for groups `fleet`, `sensors` and `meters` (`fleetsim-{group}`,
//! secret `run-secret`), and `factory` / `s3cret` (group `sensors`).
#![allow(dead_code)] // Each test file uses a different part.

use std::net::SocketAddr;
use std::path::PathBuf;

use fleetsim::dialect::embedded::Embedded;
use fleetsim_backend::Backend;
use fleetsim_backend::gateway::Limits;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A serving backend and its scratch data folder.
pub struct InProcess {
    /// Its parts, for reading counters and the registry.
    pub backend: Backend,
    /// Where devices connect.
    pub mqtt: SocketAddr,
    /// Where the operator API and firmware downloads are served.
    pub http: SocketAddr,
    stop: CancellationToken,
    server: JoinHandle<std::io::Result<()>>,
    dir: PathBuf,
}

impl InProcess {
    /// Starts a backend over a fresh folder named after `tag`.
    pub async fn start(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("fleetsim-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let backend = Backend::open(&dir, Limits::default()).expect("backend opens");
        let claims = [
            ("fleetsim-fleet", "run-secret", "fleet"),
            ("fleetsim-sensors", "run-secret", "sensors"),
            ("fleetsim-meters", "run-secret", "meters"),
            ("factory", "s3cret", "sensors"),
        ];
        for (claim, secret, group) in claims {
            backend
                .registry
                .create_claim(claim, secret, group)
                .await
                .expect("registry writes")
                .expect("claim is new");
        }
        let mqtt = TcpListener::bind("127.0.0.1:0").await.expect("bind mqtt");
        let http = TcpListener::bind("127.0.0.1:0").await.expect("bind http");
        let addr = mqtt.local_addr().expect("addr");
        let http_addr = http.local_addr().expect("http addr");
        let stop = CancellationToken::new();
        let (serving, token) = (backend.clone(), stop.clone());
        let server = tokio::spawn(async move { serving.serve(mqtt, http, token).await });
        Self {
            backend,
            mqtt: addr,
            http: http_addr,
            stop,
            server,
            dir,
        }
    }

    /// The embedded dialect with the run's claims (`fleetsim-{group}`), as a run uses it.
    pub fn dialect(&self) -> Embedded {
        Embedded {
            mqtt: self.mqtt,
            lwm2m: None,
            lwm2m_dtls: None,
            api: self.http,
            claim_secret: "run-secret".into(),
            tls: None,
        }
    }

    /// Stops serving and removes the data folder.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.server.await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
