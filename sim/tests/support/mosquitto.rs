//! Mosquitto, Debian's MQTT broker, started on a free loopback port for one test and stopped
//! when dropped. `scripts/test` installs it; a missing broker fails the test, never skips it.

#![allow(dead_code)] // Each test file uses a different part.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fleetsim::transport::mqtt::{ConnectParams, MqttConn, TransportError};
use rumqttc::mqttbytes::QoS;

/// Mosquitto on a free loopback port, stopped when dropped.
pub struct Mosquitto {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    dir: PathBuf,
}

impl Mosquitto {
    /// Starts a broker that allows anonymous clients.
    pub fn start() -> Self {
        Self::start_with("")
    }

    /// Starts a broker that speaks only TLS, presents `ca_dir`'s server certificate
    /// (`fleetsim ca` wrote the folder), requires each client's certificate from that CA and
    /// takes its subject's common name as the user name. It logs connections to
    /// [`Mosquitto::log`].
    pub fn start_tls(ca_dir: &std::path::Path) -> Self {
        let at = |name: &str| ca_dir.join(name).display().to_string();
        // As root, Mosquitto would drop to its own user, which may read neither the server's
        // key nor the log's folder. Without TCP_NODELAY its answers after the handshake (its
        // session tickets first) wait for the device's delayed ACK: 40 ms an exchange.
        Self::start_with(&format!(
            "user root\nset_tcp_nodelay true\nlog_dest file {{log}}\nlog_type error\nlog_type warning\nlog_type notice\n\
             log_type information\nconnection_messages true\ncafile {}\ncertfile {}\nkeyfile {}\n\
             require_certificate true\nuse_identity_as_username true\n",
            at("ca.pem"),
            at("server.pem"),
            at("server.key"),
        ))
    }

    /// What the broker logged (a broker started by [`Mosquitto::start_tls`] logs connections).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("mosquitto.log")).unwrap_or_default()
    }

    /// Starts a broker that allows anonymous clients, with more lines of configuration
    /// (`{log}` in them is the log file's path).
    pub fn start_with(extra_config: &str) -> Self {
        let binary = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect("Debian's mosquitto broker is needed; scripts/test installs it");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("free port")
            .local_addr()
            .expect("addr")
            .port();
        let dir = std::env::temp_dir().join(format!("fleetsim-mosquitto-{port}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let config = dir.join("mosquitto.conf");
        let extra_config = extra_config.replace("{log}", &dir.join("mosquitto.log").display().to_string());
        std::fs::write(
            &config,
            format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n{extra_config}"),
        )
        .expect("config");
        let child = Command::new(binary)
            .arg("-c")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto starts");
        Self {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            dir,
        }
    }
}

impl Mosquitto {
    /// A client of its own subscribed to `filter` at QoS 1, once the broker listens (it needs
    /// a moment after starting).
    pub async fn watcher(&self, filter: &str) -> MqttConn {
        let params = ConnectParams {
            client_id: "watcher",
            login: None,
            keep_alive_s: 30,
            clean_session: true,
            v5: None,
            subscribe: None,
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let mut conn = loop {
            match MqttConn::connect(self.addr, None, params).await {
                Ok((conn, _)) => break conn,
                Err(TransportError::Io(_)) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(other) => panic!("mosquitto refused the watcher: {other}"),
            }
        };
        conn.subscribe(&[(filter, QoS::AtLeastOnce)]).await.expect("subscribe");
        conn
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
