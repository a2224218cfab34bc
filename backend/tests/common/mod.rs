//! The harness every backend test shares: a real backend on loopback port 0 over a scratch
//! data folder, real MQTT clients (rumqttc's own event loop, independent of the gateway's
//! code) and a real HTTP client (ureq).
#![allow(dead_code)] // Each test file uses a different part of the harness.

pub mod coap_device;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use fleetsim_backend::gateway::Limits;
use fleetsim_backend::{Backend, Listeners};
use rumqttc::{AsyncClient, ConnectReturnCode, Event, EventLoop, MqttOptions, Packet, QoS};
use serde_json::Value;
use tokio::net::{TcpListener, UdpSocket};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long a test waits for something the backend should do at once; a wait that runs out
/// fails the test with a message rather than hanging it.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// A backend serving on loopback for one test.
pub struct TestBackend {
    /// Device endpoint.
    pub mqtt: SocketAddr,
    /// Operator API endpoint.
    pub http: SocketAddr,
    /// The LwM2M front (CoAP over UDP).
    pub lwm2m: SocketAddr,
    /// The LwM2M front over DTLS with a pre-shared key.
    pub lwm2m_dtls: SocketAddr,
    /// The backend's parts, for looking at counters directly.
    pub backend: Backend,
    /// Its data folder.
    pub dir: PathBuf,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

/// A fresh scratch folder under the system temp dir.
pub fn scratch_dir(tag: &str) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "fleetsim-{tag}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

impl TestBackend {
    /// Starts a backend with default limits and one claim, `factory` / `s3cret`, whose
    /// devices join group `sensors`.
    pub async fn start() -> Self {
        Self::start_with(Limits::default()).await
    }

    /// Starts a backend with the given limits.
    pub async fn start_with(limits: Limits) -> Self {
        let dir = scratch_dir("backend");
        let backend = Backend::open(&dir, limits).expect("backend opens on a scratch folder");
        backend
            .registry
            .create_claim("factory", "s3cret", "sensors")
            .await
            .expect("registry writes")
            .expect("claim is new");
        let mqtt = TcpListener::bind("127.0.0.1:0").await.expect("bind mqtt");
        let http = TcpListener::bind("127.0.0.1:0").await.expect("bind http");
        let lwm2m = UdpSocket::bind("127.0.0.1:0").await.expect("bind lwm2m");
        let (mqtt_addr, http_addr) = (mqtt.local_addr().expect("addr"), http.local_addr().expect("addr"));
        let lwm2m_addr = lwm2m.local_addr().expect("addr");
        let lwm2m_dtls = UdpSocket::bind("127.0.0.1:0").await.expect("bind lwm2m over DTLS");
        let lwm2m_dtls_addr = lwm2m_dtls.local_addr().expect("addr");
        let shutdown = CancellationToken::new();
        let serving = backend.clone();
        let token = shutdown.clone();
        let listeners = Listeners {
            mqtt,
            mqtts: None,
            lwm2m: Some(lwm2m),
            lwm2m_dtls: Some((lwm2m_dtls, None)),
            http,
        };
        let task = tokio::spawn(async move {
            serving.serve_on(listeners, token).await.expect("backend serves");
        });
        Self {
            mqtt: mqtt_addr,
            http: http_addr,
            lwm2m: lwm2m_addr,
            lwm2m_dtls: lwm2m_dtls_addr,
            backend,
            dir,
            shutdown,
            task,
        }
    }

    /// Stops serving and removes the data folder.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.task.await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }

    /// MQTT options for this backend.
    pub fn options(&self, client_id: &str, username: &str, password: &str) -> MqttOptions {
        let mut options = MqttOptions::new(client_id, self.mqtt.ip().to_string(), self.mqtt.port());
        options.set_credentials(username, password);
        options.set_keep_alive(Duration::from_secs(30));
        options
    }

    /// Connects and waits for CONNACK: the client, its event loop and the CONNACK's
    /// session-present flag, or the refusal code.
    pub async fn connect(&self, options: MqttOptions) -> Result<(AsyncClient, EventLoop, bool), ConnectReturnCode> {
        let (client, mut eventloop) = AsyncClient::new(options, 16);
        loop {
            let event = tokio::time::timeout(PATIENCE, eventloop.poll())
                .await
                .expect("CONNACK in time");
            match event {
                Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                    return if ack.code == ConnectReturnCode::Success {
                        Ok((client, eventloop, ack.session_present))
                    } else {
                        Err(ack.code)
                    };
                }
                Ok(_) => {}
                Err(rumqttc::ConnectionError::ConnectionRefused(code)) => return Err(code),
                Err(other) => panic!("connect failed: {other}"),
            }
        }
    }

    /// Provisions `serial` with the `factory` claim over MQTT and returns the reply topic
    /// suffix (`accepted` or `rejected`) and its JSON body.
    pub async fn provision(&self, serial: &str, claim_user: &str, secret: &str) -> (String, Value) {
        let request = serde_json::json!({ "model": "temp-sensor", "firmware": "1.0.0" });
        self.provision_with(serial, claim_user, secret, &request).await
    }

    /// As [`TestBackend::provision`], with `request` as the request's payload.
    pub async fn provision_with(
        &self,
        serial: &str,
        claim_user: &str,
        secret: &str,
        request: &Value,
    ) -> (String, Value) {
        let options = self.options(&format!("prov-{serial}"), claim_user, secret);
        let (client, mut eventloop, _) = self.connect(options).await.expect("claim connects");
        let replies = format!("fleet/v1/provision/{serial}/+");
        client
            .subscribe(&replies, QoS::AtLeastOnce)
            .await
            .expect("queue subscribe");
        wait_for(&mut eventloop, |p| matches!(p, Packet::SubAck(_))).await;
        client
            .publish(
                format!("fleet/v1/provision/{serial}"),
                QoS::AtLeastOnce,
                false,
                request.to_string(),
            )
            .await
            .expect("queue publish");
        let publish = next_publish(&mut eventloop).await;
        let outcome = publish.topic.rsplit('/').next().unwrap_or_default().to_owned();
        let body = serde_json::from_slice(&publish.payload).expect("JSON reply");
        let _ = client.disconnect().await;
        (outcome, body)
    }

    /// Provisions `serial` and connects as the new device: client, event loop, device id.
    pub async fn device(&self, serial: &str) -> (AsyncClient, EventLoop, String) {
        let (outcome, body) = self.provision(serial, "claim:factory", "s3cret").await;
        assert_eq!(outcome, "accepted", "{body}");
        let id = body["device_id"].as_str().expect("device_id").to_owned();
        let token = body["token"].as_str().expect("token").to_owned();
        let (client, eventloop, _) = self
            .connect(self.options(&id, &id, &token))
            .await
            .expect("device connects");
        (client, eventloop, id)
    }

    /// Provisions `serial` and returns MQTT options for it with a persistent session
    /// (`clean_session = false`), and its id.
    pub async fn persistent_device(&self, serial: &str) -> (MqttOptions, String) {
        let (outcome, body) = self.provision(serial, "claim:factory", "s3cret").await;
        assert_eq!(outcome, "accepted", "{body}");
        let id = body["device_id"].as_str().expect("device_id").to_owned();
        let token = body["token"].as_str().expect("token");
        let mut options = self.options(&id, &id, token);
        options.set_clean_session(false);
        (options, id)
    }

    /// Waits until the gateway has let `device_id`'s session go (after its client left).
    pub async fn wait_offline(&self, device_id: &str) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while self.backend.gateway.sessions().is_live(device_id) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the session of {device_id} never closed"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// `METHOD path` with an optional JSON body against the operator API: status and body.
    /// The client blocks, so it runs on tokio's blocking pool, off the runtime that serves.
    pub async fn http(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        let url = format!("http://{}{path}", self.http);
        let (method, body) = (method.to_owned(), body.map(str::to_owned));
        tokio::task::spawn_blocking(move || http_blocking(&method, &url, body.as_deref()))
            .await
            .expect("HTTP task")
    }
}

fn http_blocking(method: &str, url: &str, body: Option<&str>) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let response = match (method, body) {
        ("GET", _) => agent.get(url).call(),
        ("DELETE", _) => agent.delete(url).call(),
        ("POST", Some(body)) => agent.post(url).content_type("application/json").send(body),
        ("POST", None) => agent.post(url).send_empty(),
        ("PUT", Some(body)) => agent.put(url).content_type("application/json").send(body),
        _ => panic!("unsupported request {method} {url}"),
    };
    let mut response = response.expect("HTTP round trip");
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().expect("UTF-8 body");
    (status, text)
}

/// The value of an unlabelled Prometheus sample.
pub fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| match line.split_once(' ') {
            Some((n, value)) if n == name => value.trim().parse().ok(),
            _ => None,
        })
}

/// Polls until a packet matches; panics after [`PATIENCE`].
pub async fn wait_for(eventloop: &mut EventLoop, mut wanted: impl FnMut(&Packet) -> bool) -> Packet {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let event = tokio::time::timeout_at(deadline, eventloop.poll())
            .await
            .expect("expected packet in time");
        if let Ok(Event::Incoming(packet)) = event
            && wanted(&packet)
        {
            return packet;
        }
    }
}

/// The next PUBLISH the client receives.
pub async fn next_publish(eventloop: &mut EventLoop) -> rumqttc::Publish {
    match wait_for(eventloop, |p| matches!(p, Packet::Publish(_))).await {
        Packet::Publish(publish) => publish,
        _ => unreachable!("wait_for returned the packet it matched"),
    }
}

/// Polls until the connection ends (the server closed it); panics if it stays up past
/// [`PATIENCE`].
pub async fn wait_closed(eventloop: &mut EventLoop) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let event = tokio::time::timeout_at(deadline, eventloop.poll())
            .await
            .expect("server closes in time");
        if event.is_err() {
            return;
        }
    }
}
