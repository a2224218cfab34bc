//! A server that takes a device's connection and never answers (no CONNACK, no TLS
//! handshake) does not leave the device waiting for the rest of the run: its connect times out
//! after the model's `link.connect_timeout`, counts as `errors.timeout`, and the device backs
//! off and tries again; the run ends on time with its report. A server slow to answer is
//! timed as a slow connect, not as a late first report; a connect the harness starts late is
//! timed from when it was meant to start; and a model's keep-alive is what its devices ask
//! for and ping on.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::rc::Rc;
use std::time::Duration;

use fleetsim::device::{Event, SimTime};
use fleetsim::dialect::mqtt::Broker;
use fleetsim::dialect::precise_timer::Timer;
use fleetsim::dialect::{Inbox, Shared};
use fleetsim::engine::clock::RunClock;
use fleetsim::engine::context::{Life, Member, ShardCtx};
use fleetsim::engine::driver::{Running, awake};
use fleetsim::metrics::recorder::{Counter, Latency};
use fleetsim::scenario::parse_model;
use tokio::time::Instant;

#[path = "support/binary.rs"]
mod binary;
use binary::{assert_exit, fleetsim, run_headless, scratch, summary};

/// Accepts every connection and holds it without a word until the process ends.
fn silent_server() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    addr
}

/// An MQTT 3.1.1 server that answers each CONNECT after `delay`, and every SUBSCRIBE and QoS 1
/// PUBLISH at once.
fn slow_connack_server(delay: Duration) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || serve_slowly(stream, delay));
        }
    });
    addr
}

/// One connection of [`slow_connack_server`], until the device goes.
fn serve_slowly(mut stream: TcpStream, delay: Duration) -> Option<()> {
    stream.set_nodelay(true).ok()?;
    loop {
        let (header, body) = read_packet(&mut stream)?;
        match header >> 4 {
            1 => {
                std::thread::sleep(delay);
                stream.write_all(&[0x20, 2, 0, 0]).ok()?;
            }
            3 if header & 0x06 == 0x02 => {
                // The topic's length and name, then the packet id.
                let topic_len = usize::from(u16::from_be_bytes([*body.first()?, *body.get(1)?]));
                let pkid = body.get(2 + topic_len..4 + topic_len)?;
                stream.write_all(&[0x40, 2, pkid[0], pkid[1]]).ok()?;
            }
            8 => stream.write_all(&granted(&body)?).ok()?,
            12 => stream.write_all(&[0xD0, 0]).ok()?,
            _ => {}
        }
    }
}

/// Per connection: the keep-alive its CONNECT asked for, and how many PINGREQs followed.
type KeepAlives = std::sync::Arc<std::sync::Mutex<Vec<(u16, usize)>>>;

/// An MQTT 3.1.1 server that answers each CONNECT (and SUBSCRIBE) at once and keeps, per
/// connection, the keep-alive its CONNECT asked for and how many PINGREQs followed (each
/// answered).
fn keep_alive_server() -> (std::net::SocketAddr, KeepAlives) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = std::sync::Arc::clone(&seen);
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let record = std::sync::Arc::clone(&record);
            std::thread::spawn(move || -> Option<()> {
                let (header, body) = read_packet(&mut stream)?;
                // After the protocol name and level and the flags: the keep-alive.
                let keep_alive = u16::from_be_bytes([*body.get(8)?, *body.get(9)?]);
                let at = {
                    let mut seen = record.lock().ok()?;
                    seen.push((keep_alive, 0));
                    seen.len() - 1
                };
                (header >> 4 == 1).then_some(())?;
                stream.write_all(&[0x20, 2, 0, 0]).ok()?;
                loop {
                    let (header, body) = read_packet(&mut stream)?;
                    match header >> 4 {
                        8 => stream.write_all(&granted(&body)?).ok()?,
                        12 => {
                            record.lock().ok()?[at].1 += 1;
                            stream.write_all(&[0xD0, 0]).ok()?;
                        }
                        _ => {}
                    }
                }
            });
        }
    });
    (addr, seen)
}

/// The SUBACK granting (QoS 1) a SUBSCRIBE whose body is `body`: a device's command topic,
/// sent with its CONNECT.
fn granted(body: &[u8]) -> Option<[u8; 5]> {
    Some([0x90, 3, *body.first()?, *body.get(1)?, 1])
}

/// One MQTT packet: its first byte and its body.
fn read_packet(stream: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    let mut byte = [0u8; 1];
    stream.read_exact(&mut byte).ok()?;
    let header = byte[0];
    let (mut len, mut shift) = (0usize, 0);
    loop {
        stream.read_exact(&mut byte).ok()?;
        len |= usize::from(byte[0] & 0x7F) << shift;
        shift += 7;
        if byte[0] & 0x80 == 0 {
            break;
        }
    }
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).ok()?;
    Some((header, body))
}

/// Writes `models/patient.toml` in `dir`: an MQTT meter that stays online, with these lines of
/// `[telemetry]` and of `[link]`.
fn write_patient(dir: &Path, telemetry: &str, link: &str) {
    std::fs::create_dir_all(dir.join("models")).expect("dir");
    std::fs::write(
        dir.join("models/patient.toml"),
        format!(
            "name = \"patient\"\nprotocol = \"mqtt\"\nfirmware = \"1.0\"\n[telemetry]\n{telemetry}\
             [link]\nmean_online = \"30d\"\nmean_offline = \"1s\"\n{link}"
        ),
    )
    .expect("model");
}

fn run(dir: &Path, name: &str, backend: &str) -> serde_json::Value {
    let scenario = dir.join(format!("{name}.toml"));
    std::fs::write(
        &scenario,
        format!(
            r#"
[scenario]
name = "{name}"
seed = 5
duration = "3s"
models = "{models}"

{backend}

[fleet]
devices = 3
arrival = {{ ramp = "100ms" }}
mix = [ {{ model = "patient", share = 1.0, group = "g" }} ]
"#,
            models = dir.join("models").display(),
        ),
    )
    .expect("scenario");
    let out = dir.join(format!("{name}-report"));
    let started = std::time::Instant::now();
    assert_exit(&run_headless(&scenario, &out), 0);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{name}: the run ends on time, whatever its devices wait for"
    );
    summary(&out)
}

#[test]
fn a_server_that_never_answers_times_connects_out() {
    let dir = scratch("connect-timeout");
    write_patient(
        &dir,
        "interval = \"1s\"\npayload_bytes = 16\n",
        "connect_timeout = \"400ms\"\n\
         reconnect = { initial = \"100ms\", max = \"200ms\", multiplier = 2.0 }\n",
    );
    let ca = dir.join("ca");
    assert_exit(&fleetsim(&[Path::new("ca"), &ca]), 0);
    let server = silent_server();

    let plain = run(
        &dir,
        "plain",
        &format!("[backend]\nkind = \"mqtt\"\nurl = \"mqtt://{server}\""),
    );
    let tls = run(
        &dir,
        "tls",
        &format!(
            "[backend]\nkind = \"mqtt\"\nurl = \"mqtts://{server}\"\n[backend.tls]\nca = \"{}\"\n",
            dir.join("ca/server-ca.pem").display()
        ),
    );
    for (name, summary) in [("no CONNACK", plain), ("no TLS handshake", tls)] {
        let counters = &summary["metrics"]["counters"];
        assert_eq!(counters["connected"].as_u64(), Some(0), "{name}: {summary}");
        // 3 s of 400 ms attempts and backoffs: several timeouts a device.
        let timeouts = counters["errors.timeout"].as_u64().unwrap_or(0);
        assert!(
            timeouts >= 6,
            "{name}: every device timed out, more than once: {summary}"
        );
    }
}

/// A device reports as soon as it is connected. A server that takes 300 ms to answer the
/// CONNECT makes a slow connect (`connect.latency`), not a late report: the first report's
/// latency runs from the moment the connection was up, and it is no late send.
#[test]
fn a_slow_connack_is_a_slow_connect_not_a_late_report() {
    let dir = scratch("slow-connack");
    write_patient(&dir, "interval = \"1h\"\npayload_bytes = 16\nqos = 1\n", "");
    let server = slow_connack_server(Duration::from_millis(300));
    let summary = run(
        &dir,
        "slow",
        &format!("[backend]\nkind = \"mqtt\"\nurl = \"mqtt://{server}\""),
    );
    let metrics = &summary["metrics"];
    let counters = &metrics["counters"];
    assert_eq!(counters["connected"].as_u64(), Some(3), "{summary}");
    assert_eq!(counters["published"].as_u64(), Some(3), "one report each: {summary}");
    let connect_p50 = metrics["histograms"]["connect.latency"]["p50_ms"]
        .as_f64()
        .unwrap_or(0.0);
    assert!(connect_p50 >= 300.0, "the wait is the connect's: {summary}");
    let publish_max = metrics["histograms"]["publish.latency"]["max_ms"]
        .as_f64()
        .unwrap_or(f64::MAX);
    assert!(publish_max < 250.0, "not the report's: {summary}");
    // Timed from the arrival, all three reports were late sends. The devices arrive 33 ms
    // apart, so a stall of the machine under the run (a few ms, now and then) can make one.
    let late = counters["late_sends"].as_u64().unwrap_or(u64::MAX);
    assert!(late <= 1, "the reports are not late for the connect's wait: {summary}");
}

/// A model's `[mqtt] keep_alive` is what its devices ask for in their CONNECT, and they ping
/// when they have sent nothing for that long: a 1 s keep-alive over a 3 s run pings.
#[test]
fn a_models_keep_alive_is_asked_for_and_pinged_on() {
    let dir = scratch("keep-alive");
    write_patient(&dir, "interval = \"1h\"\npayload_bytes = 16\n", "");
    let model = dir.join("models/patient.toml");
    let text = std::fs::read_to_string(&model).expect("model");
    std::fs::write(&model, format!("{text}[mqtt]\nkeep_alive = \"1s\"\n")).expect("model");
    let (server, seen) = keep_alive_server();
    let summary = run(
        &dir,
        "keep",
        &format!("[backend]\nkind = \"mqtt\"\nurl = \"mqtt://{server}\""),
    );
    assert_eq!(
        summary["metrics"]["counters"]["connected"].as_u64(),
        Some(3),
        "{summary}"
    );
    let seen = seen.lock().expect("record").clone();
    assert_eq!(seen.len(), 3, "one connection a device: {seen:?}");
    for (keep_alive, pings) in seen {
        assert_eq!(keep_alive, 1, "the model's keep-alive in the CONNECT");
        assert!(pings >= 1, "a device quiet for its keep-alive pings: {pings} pings");
    }
}

/// `connect.latency` runs from the connect's intended start, not from when the harness got to
/// it: a device the harness takes up 300 ms after its planned arrival (a shard behind its
/// schedule) shows those 300 ms, though the server answers at once.
#[test]
fn a_connect_the_harness_started_late_is_timed_from_the_arrival() {
    let server = slow_connack_server(Duration::ZERO);
    let late = Duration::from_millis(300);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let snapshot = tokio::task::LocalSet::new().block_on(&runtime, async move {
        let arrival = Instant::now() - late;
        let dialect = Broker {
            addr: server,
            telemetry_topic: "t/{serial}".into(),
            command_topic: "c/{serial}".into(),
            cluster: Vec::new(),
            tls: None,
        };
        let clock = RunClock::new(arrival, 1.0, Duration::ZERO);
        let shard = Rc::new(ShardCtx::new(1, clock, dialect, Shared::default(), None, false));
        let text = "name = \"m\"\nprotocol = \"mqtt\"\nfirmware = \"1.0\"\n\
                    [telemetry]\ninterval = \"1h\"\npayload_bytes = 8\n";
        let member = Rc::new(Member {
            model: parse_model(Path::new("m.toml"), text).expect("valid model"),
            group: "g".into(),
            incidents: Vec::new(),
        });
        let life = Life::new(1, &member, 0, SimTime(0));
        let mut inbox = Inbox::default();
        inbox.push_at(Event::Arrive, arrival);
        let device = tokio::task::spawn_local(awake(Running::new(Rc::clone(&shard), member, life, None, inbox)));
        let meter = &shard.shared.meter;
        let mut seen = fleetsim::metrics::recorder::Snapshot::default();
        let timer = Timer::precise();
        tokio::select! {
            () = shard.shared.calendar.ring(&timer) => unreachable!("the calendar rings for ever"),
            () = async {
                while seen.count(Counter::Connected) == 0 {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    seen.merge(&meter.take());
                }
            } => {}
            () = tokio::time::sleep(Duration::from_secs(10)) => {}
        }
        device.abort();
        seen
    });
    assert_eq!(snapshot.count(Counter::Connected), 1, "the device connected");
    let connect = snapshot.min(Latency::Connect).unwrap_or_default();
    assert!(
        connect >= late,
        "connect.latency runs from the planned arrival, {late:?} before the harness got to it: {connect:?}"
    );
}
