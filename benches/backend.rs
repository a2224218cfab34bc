//! The reference backend under load, run as its own process (`fleetsim backend`), driven over
//! loopback by lean raw-socket MQTT clients built on rumqttc's packet codec:
//!
//! 1. provisioning round trips per second with durable (group-committed) registry writes,
//!    from many concurrent claim connections, with latency percentiles;
//! 2. server memory per idle connected device (RSS of the backend process before and after).
//!
//! Run: `cargo bench -p fleetsim --bench backend` (release). Under `cargo test --benches` it
//! runs a small size once, so it cannot rot.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use fleetsim::cli::backend::Standalone;
use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::{Connect, ConnectReturnCode, Packet, Publish, Subscribe};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sizes of one run.
struct Sizes {
    /// Concurrent provisioning connections.
    connections: usize,
    /// Devices each connection provisions, one after another.
    per_connection: usize,
    /// Idle device connections held for the memory figure.
    idle: usize,
}

const BENCH: Sizes = Sizes {
    connections: 200,
    per_connection: 100,
    idle: 9_000,
};
const SMOKE: Sizes = Sizes {
    connections: 10,
    per_connection: 10,
    idle: 50,
};

/// A minimal MQTT 3.1.1 client: one socket, one buffer, rumqttc's codec.
struct RawClient {
    stream: TcpStream,
    buf: BytesMut,
}

impl RawClient {
    async fn connect(addr: SocketAddr, client_id: &str, user: &str, password: &str) -> Result<Self, String> {
        let stream = TcpStream::connect(addr).await.map_err(|e| format!("tcp: {e}"))?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        let mut client = Self {
            stream,
            buf: BytesMut::with_capacity(512),
        };
        let mut connect = Connect::new(client_id);
        connect.keep_alive = 600;
        connect.set_login(user, password);
        client.send(&Packet::Connect(connect)).await?;
        match client.read().await? {
            Packet::ConnAck(ack) if ack.code == ConnectReturnCode::Success => Ok(client),
            other => Err(format!("connect refused: {other:?}")),
        }
    }

    async fn send(&mut self, packet: &Packet) -> Result<(), String> {
        let mut out = BytesMut::new();
        packet.write(&mut out, usize::MAX).map_err(|e| e.to_string())?;
        self.stream.write_all(&out).await.map_err(|e| e.to_string())
    }

    async fn read(&mut self) -> Result<Packet, String> {
        loop {
            match Packet::read(&mut self.buf, 1 << 20) {
                Ok(packet) => return Ok(packet),
                Err(rumqttc::mqttbytes::Error::InsufficientBytes(n)) => {
                    self.buf.reserve(n);
                    if self.stream.read_buf(&mut self.buf).await.map_err(|e| e.to_string())? == 0 {
                        return Err("closed".to_owned());
                    }
                }
                Err(e) => return Err(e.to_string()),
            }
        }
    }

    /// Provisions `serial` and returns (device id, token).
    async fn provision(&mut self, serial: &str, pkid: u16) -> Result<(String, String), String> {
        let subscribe = Subscribe::new(format!("fleet/v1/provision/{serial}/+"), QoS::AtMostOnce);
        self.send(&Packet::Subscribe(Subscribe { pkid, ..subscribe })).await?;
        let mut request = Publish::new(format!("fleet/v1/provision/{serial}"), QoS::AtMostOnce, b"{}".to_vec());
        request.pkid = 0;
        self.send(&Packet::Publish(request)).await?;
        loop {
            if let Packet::Publish(reply) = self.read().await? {
                let body: serde_json::Value = serde_json::from_slice(&reply.payload).map_err(|e| e.to_string())?;
                let field = |k: &str| {
                    body[k]
                        .as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| format!("rejected: {body}"))
                };
                return Ok((field("device_id")?, field("token")?));
            }
        }
    }
}

/// Resident memory of a process, in KiB, from /proc.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

async fn run(sizes: &Sizes) {
    let data = std::env::temp_dir().join(format!("fleetsim-bench-backend-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let mut server = Standalone::spawn(
        std::path::Path::new(env!("CARGO_BIN_EXE_fleetsim")),
        &data,
        &["bench:s3cret:bench"],
    )
    .expect("fleetsim backend starts");
    let addr = server.ready.mqtt;
    let pid = server.child.id();

    // 1. Provisioning throughput: every connection provisions its serials back to back.
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..sizes.connections {
        let per = sizes.per_connection;
        tasks.push(tokio::spawn(async move {
            let mut client = RawClient::connect(addr, &format!("bench-prov-{c}"), "claim:bench", "s3cret").await?;
            let mut out = Vec::with_capacity(per);
            for k in 0..per {
                let t0 = Instant::now();
                let identity = client
                    .provision(&format!("SN-{c:04}-{k:05}"), (k % 60_000 + 1) as u16)
                    .await?;
                out.push((t0.elapsed(), identity));
            }
            Ok::<_, String>(out)
        }));
    }
    let mut latencies = Vec::new();
    let mut devices = Vec::new();
    for task in tasks {
        for (latency, identity) in task.await.expect("task").expect("provisioning works") {
            latencies.push(latency);
            devices.push(identity);
        }
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let total = latencies.len();
    println!(
        "provisioning: {total} devices over {} connections in {:.2} s = {:.0} provisions/s; latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        sizes.connections,
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64(),
        percentile(&latencies, 50.0).as_secs_f64() * 1e3,
        percentile(&latencies, 99.0).as_secs_f64() * 1e3,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );

    // 2. Memory per idle device connection, measured on the backend process.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss_kib(pid);
    let mut idle = Vec::with_capacity(sizes.idle);
    for (id, token) in devices.iter().take(sizes.idle) {
        idle.push(RawClient::connect(addr, id, id, token).await.expect("device connects"));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss_kib(pid);
    let held = idle.len();
    println!(
        "idle connections: {held} devices held; backend RSS {before} KiB -> {after} KiB = {:.2} KiB per connection (kernel socket buffers not included)",
        after.saturating_sub(before) as f64 / held.max(1) as f64
    );
    drop(idle);
    let _ = server.kill();
    let _ = std::fs::remove_dir_all(&data);
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` does not, and gets a quick smoke run.
    let full = std::env::args().any(|a| a == "--bench");
    let sizes = if full { &BENCH } else { &SMOKE };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run(sizes));
}
