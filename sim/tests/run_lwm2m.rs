//! `fleetsim run` against a real LwM2M server nobody here wrote: lwm2m-node-lib 1.4.0 through
//! its Node wrapper. Devices register with their objects and update their registrations as
//! their lifetime runs out; the server reads their Device object (as text and as LwM2M JSON),
//! discovers it, writes a lifetime, executes a reboot (the device comes back from a new port
//! and registers afresh from there) and observes a temperature, whose notifications
//! follow the devices' reports. What each side counted agrees.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

#[path = "support/binary.rs"]
mod binary;
#[path = "support/lwm2m_node.rs"]
mod lwm2m_node;

use binary::{counter, run_headless, scratch, summary};
use lwm2m_node::NodeServer;

const DEVICES: usize = 10;

#[test]
fn devices_register_update_and_answer_a_third_party_lwm2m_server() {
    let mut server = NodeServer::start();
    let (_scratch, scenario, out) = fleet(
        "run-lwm2m",
        (
            "lwm2m-meter",
            r#"
name = "lwm2m-meter"
protocol = "coap"
firmware = "2.1.0"
serial_prefix = "LM"

[telemetry]
interval = "1m"
payload_bytes = 32
qos = 0

[battery]
capacity_mah = 2000
sleep_ua = 10
tx_mas = 100

[link]
mean_online = "30d"
mean_offline = "30s"
signal = { mean = -90, spread = 10 }

[lwm2m]
lifetime = "5m"
"#,
        ),
        // 60 simulated seconds a second: a report a second, a 5 s lifetime (updated at 90%).
        |models| {
            let url = format!("coap://127.0.0.1:{}", server.port);
            let gates = "\"register.latency.p99\" = \"<= 1s\"\n\"errors.total\" = \"== 0\"";
            scenario(
                models,
                ("lwm2m", 17, "16s"),
                &url,
                (DEVICES, "lwm2m-meter", "meters"),
                gates,
            )
        },
    );
    let run = run_behind(&scenario, &out);

    server.wait_count("registration", DEVICES, Duration::from_secs(20));
    let registrations: Vec<Value> = server
        .events
        .iter()
        .filter(|e| e["event"] == "registration")
        .cloned()
        .collect();
    assert_eq!(registrations.len(), DEVICES, "{registrations:?}");
    let first = &registrations[0];
    let ep = first["ep"].as_str().expect("an endpoint name").to_owned();
    assert!(ep.starts_with("LM-"), "the serial is the endpoint name: {first}");
    assert_eq!(first["lifetime"], json!(5), "5 simulated minutes at 60x: {first}");
    assert_eq!(first["binding"], json!("U"), "{first}");
    for object in ["</1/0>", "</3/0>", "</4/0>", "</3303/0>"] {
        assert!(
            first["objects"].to_string().contains(&object[1..object.len() - 1]),
            "{object} in {first}"
        );
    }

    // The Device object, resource by resource and whole.
    let serial = server
        .ask(json!({"op": "read", "ep": ep, "path": "/3/0/2", "accept": "text/plain"}))
        .expect("serial read");
    assert_eq!(serial, json!(ep));
    let device = server
        .ask(json!({"op": "read", "ep": ep, "path": "/3/0", "accept": "application/vnd.oma.lwm2m+json"}))
        .expect("device object read");
    let device: Value = serde_json::from_str(device.as_str().expect("text")).expect("LwM2M JSON");
    let entries = device["e"].as_array().expect("entries");
    let entry = |n: &str| entries.iter().find(|e| e["n"] == n).cloned().unwrap_or(Value::Null);
    assert_eq!(entry("3")["sv"], json!("2.1.0"), "firmware: {device}");
    assert_eq!(entry("1")["sv"], json!("lwm2m-meter"), "model: {device}");
    let battery = entry("9")["v"].as_i64().expect("a battery level");
    assert!((90..=100).contains(&battery), "a fresh battery: {device}");
    // The radio's signal strength, from the link model: within 12 dB of -90 dBm.
    let rssi = server
        .ask(json!({"op": "read", "ep": ep, "path": "/4/0/2", "accept": "text/plain"}))
        .expect("signal read");
    let rssi: i32 = rssi.as_str().expect("text").parse().expect("whole dBm");
    assert!((-102..=-78).contains(&rssi), "{rssi}");
    let links = server
        .ask(json!({"op": "discover", "ep": ep, "path": "/3/0"}))
        .expect("discover");
    assert!(
        links.as_str().expect("text").contains("</3/0/4>"),
        "reboot listed: {links}"
    );
    // A write the device takes (its lifetime) and one it refuses (its serial).
    server
        .ask(json!({"op": "write", "ep": ep, "path": "/1/0/1", "value": "7"}))
        .expect("lifetime write");
    let refused = server.ask(json!({"op": "write", "ep": ep, "path": "/3/0/2", "value": "x"}));
    assert!(refused.is_err(), "a serial is not writable: {refused:?}");
    let lifetime = server
        .ask(json!({"op": "read", "ep": ep, "path": "/1/0/1", "accept": "text/plain"}))
        .expect("lifetime read");
    assert_eq!(lifetime, json!("7"));
    // The device tells the server its new lifetime in its next update, as LwM2M asks.
    server.wait_event(Duration::from_secs(5), |e| {
        e["event"] == "update" && e["ep"] == json!(ep) && e["lifetime"] == json!(7)
    });

    // A temperature observed: notifications follow the reports.
    let first_value = server
        .ask(json!({"op": "observe", "ep": ep, "path": "/3303/0/5700", "accept": "text/plain"}))
        .expect("observe");
    let celsius: f64 = first_value.as_str().expect("text").parse().expect("a number");
    assert!((0.0..=100.0).contains(&celsius), "{celsius}");
    server.wait_event(Duration::from_secs(10), |e| e["event"] == "notify");

    // A reboot: the device comes back from a new port and registers afresh (its observations
    // went with the restart).
    let rebooted = registrations[1]["ep"].as_str().expect("ep").to_owned();
    let before = registrations[1]["address"].clone();
    server
        .ask(json!({"op": "execute", "ep": rebooted, "path": "/3/0/4"}))
        .expect("reboot");
    let back = server.wait_event(Duration::from_secs(15), |e| {
        e["event"] == "registration" && e["ep"] == json!(rebooted) && e["address"] != before
    });
    assert_ne!(back["address"], before);

    let output = run.join().expect("run thread");
    assert!(
        output.status.success(),
        "the run passes its gates: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    server.drain(Duration::from_millis(500));
    let stats = server.ask(json!({"op": "stats"})).expect("stats");
    let summary = summary(&out);
    let count = |name: &str| counter(&summary, name);
    // Each device once, and the rebooted one again.
    assert_eq!(count("lwm2m.registrations"), DEVICES as u64 + 1, "{stats}");
    assert_eq!(stats["registrations"], json!(DEVICES + 1), "{stats}");
    assert_eq!(
        json!(count("lwm2m.updates")),
        stats["updates"],
        "updates agree: {stats}"
    );
    assert!(
        count("lwm2m.updates") >= DEVICES as u64 * 2,
        "every device updated as its lifetime ran out: {stats}"
    );
    assert_eq!(
        json!(count("lwm2m.notifications")),
        json!(server.count("notify")),
        "notifications agree"
    );
    assert!(count("lwm2m.notifications") >= 5, "a notification a report: {stats}");
    assert_eq!(count("published"), count("lwm2m.notifications"));
    // Read: serial, device object, signal, lifetime, the observe's first value; discover too.
    assert_eq!(count("lwm2m.reads"), 6);
    assert_eq!(count("lwm2m.observes"), 1);
    assert_eq!(count("lwm2m.writes"), 1);
    assert_eq!(count("lwm2m.executes"), 1);
    assert_eq!(count("lwm2m.refused"), 1, "the serial's write");
    assert_eq!(count("commands.answered"), 1, "the reboot, as a command");
    assert_eq!(count("errors.protocol"), 0);
    let html = std::fs::read_to_string(out.join("report.html")).expect("report.html");
    assert!(
        html.contains(&format!(
            "<tr><td>registrations the server accepted</td><td>{}</td></tr>",
            DEVICES + 1
        )),
        "the report shows the LwM2M figures"
    );
}

/// A server of the test's own, on a real socket, that registers one device and then sends it
/// what a broken or hostile server might: datagrams that do not decode (garbage, a truncated
/// header, another CoAP version, a 9-byte token, an option longer than the datagram) and
/// requests the device must refuse (an unknown content format asked for, an unknown path, an
/// unsupported critical option with a huge block number, a truncated TLV write, a write in an
/// unknown format, a DELETE, a path that is not numbers, attributes of a path it does not hold). The device answers each refusal with
/// its code, answers nothing it cannot decode, counts both, and still answers a good Read.
#[test]
fn malformed_and_refused_requests_are_counted_and_answered_by_code() {
    use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType, ResponseType};
    use std::net::{SocketAddr, UdpSocket};

    let server = UdpSocket::bind("127.0.0.1:0").expect("bind");
    server
        .set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    let (_scratch, scenario, out) = fleet(
        "run-lwm2m-bad",
        (
            "lwm2m-meter",
            "name = \"lwm2m-meter\"\nprotocol = \"coap\"\nfirmware = \"1.0.0\"\nserial_prefix = \"LM\"\n\n\
         [telemetry]\ninterval = \"1m\"\npayload_bytes = 16\n\n[lwm2m]\nlifetime = \"5m\"\n",
        ),
        |models| {
            let url = format!("coap://{}", server.local_addr().expect("addr"));
            scenario(models, ("bad", 5, "15s"), &url, (1, "lwm2m-meter", "g"), "")
        },
    );
    let run = run_behind(&scenario, &out);

    // Answers the device's own requests (its Register, then its Updates) as they come; gives
    // back the first other message, if any comes within the read timeout.
    let mut buf = [0u8; 2048];
    let mut device: Option<SocketAddr> = None;
    let mut next = |server: &UdpSocket, device: &mut Option<SocketAddr>| -> Option<Packet> {
        for _ in 0..2 {
            let Ok((len, from)) = server.recv_from(&mut buf) else {
                continue;
            };
            let packet = Packet::from_bytes(&buf[..len]).expect("the device sends CoAP");
            if let MessageClass::Request(RequestType::Post) = packet.header.code {
                let mut answer = Packet::new();
                answer.header.set_type(MessageType::Acknowledgement);
                answer.header.message_id = packet.header.message_id;
                answer.set_token(packet.get_token().to_vec());
                let register = packet.get_option(CoapOption::UriQuery).is_some();
                answer.header.code = MessageClass::Response(if register {
                    answer.add_option(CoapOption::LocationPath, b"rd".to_vec());
                    answer.add_option(CoapOption::LocationPath, b"9".to_vec());
                    ResponseType::Created
                } else {
                    ResponseType::Changed
                });
                server
                    .send_to(&answer.to_bytes().expect("encodes"), from)
                    .expect("send");
                *device = Some(from);
                continue;
            }
            return Some(packet);
        }
        None
    };
    let waiting = std::time::Instant::now();
    while device.is_none() {
        assert!(
            waiting.elapsed() < Duration::from_secs(20) && !run.is_finished(),
            "no registration came"
        );
        assert!(
            next(&server, &mut device).is_none(),
            "only the registration comes first"
        );
    }
    let at = device.expect("registered");
    let mut mid = 100u16;
    let mut request = |method: RequestType, path: &str, options: &[(CoapOption, Vec<u8>)], payload: &[u8]| {
        mid += 1;
        let mut packet = Packet::new();
        packet.header.set_type(MessageType::Confirmable);
        packet.header.code = MessageClass::Request(method);
        packet.header.message_id = mid;
        packet.set_token(vec![7, 7, mid as u8]);
        for segment in path.split('/').skip(1) {
            packet.add_option(CoapOption::UriPath, segment.as_bytes().to_vec());
        }
        for (option, value) in options {
            packet.add_option(*option, value.clone());
        }
        packet.payload = payload.to_vec();
        packet.to_bytes().expect("encodes")
    };

    let undecodable: Vec<Vec<u8>> = vec![
        vec![0xFF, 0x00],
        vec![0x40, 0x01, 0x00],
        vec![0x80, 0x01, 0x00, 0x01],                   // version 2
        vec![0x49, 0x01, 0x00, 0x01, 1, 2, 3, 4, 5, 6], // a 9-byte token
        vec![0x40, 0x01, 0x00, 0x02, 0xB5, b'3'],       // a 5-byte Uri-Path holding 1
    ];
    for bytes in &undecodable {
        server.send_to(bytes, at).expect("send");
        assert!(next(&server, &mut Some(at)).is_none(), "no answer to {bytes:?}");
    }
    let refused = [
        (
            request(RequestType::Get, "/3/0/2", &[(CoapOption::Accept, vec![60])], b""),
            ResponseType::NotAcceptable,
        ),
        (request(RequestType::Get, "/9/9/9", &[], b""), ResponseType::NotFound),
        (
            request(
                RequestType::Get,
                "/3303/0/5700",
                &[(CoapOption::Block2, vec![0xFF, 0xFF, 0xF6])],
                b"",
            ),
            ResponseType::BadOption,
        ),
        (
            request(
                RequestType::Put,
                "/1/0/1",
                &[(CoapOption::ContentFormat, vec![0x2D, 0x16])],
                &[0xC2, 0x01],
            ),
            ResponseType::BadRequest,
        ),
        (
            request(
                RequestType::Put,
                "/1/0/1",
                &[(CoapOption::ContentFormat, vec![0x27, 0x0F])],
                b"60",
            ),
            ResponseType::UnsupportedContentFormat,
        ),
        (
            request(RequestType::Delete, "/3/0", &[], b""),
            ResponseType::MethodNotAllowed,
        ),
        (request(RequestType::Get, "/3/zero", &[], b""), ResponseType::NotFound),
        (
            request(
                RequestType::Put,
                "/9/9",
                &[(CoapOption::UriQuery, b"pmin=1".to_vec())],
                b"",
            ),
            ResponseType::NotFound,
        ),
    ];
    for (k, (bytes, code)) in refused.iter().enumerate() {
        server.send_to(bytes, at).expect("send");
        let answer = next(&server, &mut Some(at)).unwrap_or_else(|| panic!("an answer to request {k}, {code:?}"));
        assert_eq!(answer.header.code, MessageClass::Response(*code), "{bytes:?}");
        assert_eq!(answer.header.get_type(), MessageType::Acknowledgement, "piggybacked");
    }
    // Neither an empty acknowledgement nor a Reset is a request: nothing comes back.
    server.send_to(&[0x60, 0x00, 0x12, 0x34], at).expect("send");
    server.send_to(&[0x70, 0x00, 0x12, 0x35], at).expect("send");
    assert!(next(&server, &mut Some(at)).is_none());
    // Still answering.
    server
        .send_to(&request(RequestType::Get, "/3/0/2", &[], b""), at)
        .expect("send");
    let good = next(&server, &mut Some(at)).expect("an answer");
    assert_eq!(good.header.code, MessageClass::Response(ResponseType::Content));
    assert!(String::from_utf8_lossy(&good.payload).starts_with("LM-"));

    let output = run.join().expect("run thread");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let summary = summary(&out);
    assert_eq!(counter(&summary, "errors.protocol"), undecodable.len() as u64);
    assert_eq!(counter(&summary, "lwm2m.refused"), refused.len() as u64);
    assert_eq!(counter(&summary, "lwm2m.reads"), 1);
}

/// Duty-cycled devices register in queue mode (binding UQ), hold no socket asleep, and at
/// each wake update their registration from a new port, so the server always knows where to
/// reach them; nothing in between expires.
#[test]
fn sleepy_devices_register_in_queue_mode_and_update_at_each_wake_from_a_new_port() {
    let mut server = NodeServer::start();
    let (_scratch, scenario, out) = fleet(
        "run-lwm2m-sleepy",
        (
            "lwm2m-sleepy",
            "name = \"lwm2m-sleepy\"\nprotocol = \"coap\"\nfirmware = \"1.0.0\"\nserial_prefix = \"LS\"\n\n\
         [telemetry]\ninterval = \"2m\"\npayload_bytes = 16\nduty_cycle = true\n\n[lwm2m]\nlifetime = \"10m\"\n",
        ),
        // At 60x: a wake every 2 s, a 10 s lifetime.
        |models| {
            let url = format!("coap://127.0.0.1:{}", server.port);
            let gates = "\"errors.total\" = \"== 0\"";
            scenario(
                models,
                ("sleepy", 8, "12s"),
                &url,
                (5, "lwm2m-sleepy", "sensors"),
                gates,
            )
        },
    );
    let output = run_headless(&scenario, &out);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    server.drain(Duration::from_millis(300));
    let summary = summary(&out);
    let stats = server.ask(json!({"op": "stats"})).expect("stats");
    assert_eq!(stats["registrations"], json!(5), "{stats}");
    assert_eq!(stats["expirations"], json!(0), "{stats}");
    assert_eq!(json!(counter(&summary, "lwm2m.updates")), stats["updates"]);
    assert!(
        counter(&summary, "lwm2m.updates") >= 5 * 3,
        "a wake every 2 s for 10 s: {stats}"
    );
    for registration in server.events.iter().filter(|e| e["event"] == "registration") {
        assert_eq!(registration["binding"], json!("UQ"), "{registration}");
        let ep = &registration["ep"];
        let mut addresses: Vec<&Value> = server
            .events
            .iter()
            .filter(|e| e["event"] == "update" && &e["ep"] == ep)
            .map(|e| &e["address"])
            .collect();
        let updates = addresses.len();
        addresses.sort_by_key(|a| a.to_string());
        addresses.dedup();
        assert_eq!(addresses.len(), updates, "each wake from a new port: {ep}");
    }
}

/// A `decommission` phase against a server fleetsim has no operator for: the devices it picks
/// De-register (the server forgets them at once) and stop; the others stay registered. The
/// same scenario picks the same devices again. Both the always-connected and the sleeping
/// (queue-mode, no socket held) kinds.
#[test]
fn a_decommission_phase_deregisters_the_devices_it_picks() {
    for (tag, (name, model)) in [
        (
            "run-lwm2m-retire",
            (
                "lwm2m-hourly",
                "name = \"lwm2m-hourly\"\nprotocol = \"coap\"\nfirmware = \"1.0.0\"\nserial_prefix = \"LR\"\n\n\
                 [telemetry]\ninterval = \"1h\"\npayload_bytes = 16\nqos = 0\n",
            ),
        ),
        (
            "run-lwm2m-retire-sleepy",
            (
                "lwm2m-sleepy",
                "name = \"lwm2m-sleepy\"\nprotocol = \"coap\"\nfirmware = \"1.0.0\"\nserial_prefix = \"LQ\"\n\n\
                 [telemetry]\ninterval = \"2m\"\npayload_bytes = 16\nduty_cycle = true\n\n[lwm2m]\nlifetime = \"10m\"\n",
            ),
        ),
    ] {
        let mut picked = Vec::new();
        for _ in 0..2 {
            let mut server = NodeServer::start();
            let (_scratch, scenario, out) = fleet(tag, (name, model), |models| {
                let url = format!("coap://127.0.0.1:{}", server.port);
                let text = scenario(
                    models,
                    ("retire", 31, "8s"),
                    &url,
                    (12, name, "meters"),
                    "\"errors.total\" = \"== 0\"",
                );
                format!(
                    "{text}\n[[phase]]\nat = \"4s\"\naction = \"decommission\"\ngroup = \"meters\"\nshare = \"50%\"\n"
                )
            });
            let output = run_headless(&scenario, &out);
            assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
            server.drain(Duration::from_millis(300));
            let summary = summary(&out);
            let stats = server.ask(json!({"op": "stats"})).expect("stats");
            let retired = summary["metrics"]["gauges"]["devices.decommissioned"]
                .as_u64()
                .expect("gauge");
            assert!((2..=10).contains(&retired), "about half of 12: {retired}");
            assert_eq!(counter(&summary, "lwm2m.deregistrations"), retired, "{stats}");
            assert_eq!(stats["unregistrations"], json!(retired), "{stats}");
            assert_eq!(stats["registered"], json!(12 - retired), "the others stay: {stats}");
            assert_eq!(stats["expirations"], json!(0), "{stats}");
            let latency = &summary["metrics"]["histograms"]["deregister.latency"];
            assert_eq!(latency["count"], json!(retired), "{latency}");
            let mut gone: Vec<String> = server
                .events
                .iter()
                .filter(|e| e["event"] == "unregistration")
                .map(|e| e["ep"].as_str().expect("ep").to_owned())
                .collect();
            gone.sort();
            picked.push(gone);
        }
        assert_eq!(picked[0], picked[1], "the same seed picks the same devices");
    }
}

/// Python's `http.server` serving a folder on a free port, killed when dropped: an HTTP
/// server nobody here wrote, for the images a Package URI names.
struct ImageServer {
    child: std::process::Child,
    port: u16,
}

impl ImageServer {
    fn start(folder: &Path) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = std::process::Command::new("python3")
            .args([
                "-m",
                "http.server",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--directory",
            ])
            .arg(folder)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("python3 runs (scripts/test installs it)");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "http.server listens");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child, port }
    }
}

impl Drop for ImageServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads `path` of `ep` as text until it reads `want`; panics after ten seconds.
fn read_until(server: &mut NodeServer, ep: &Value, path: &str, want: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let read = server.ask(json!({"op": "read", "ep": ep, "path": path, "accept": "text/plain"}));
        if read.as_ref().is_ok_and(|v| v == want) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{path} of {ep} never read {want}: {read:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Object 5 against a server nobody here wrote: lwm2m-node-lib writes a Package URI naming an
/// image on Python's `http.server`, watches the state, executes Update once the device holds
/// the image, and reads the result after the reboot. A meter whose image boots runs it
/// (result 1, /3/0/3 the new version); one whose model fails every boot keeps its old firmware
/// (result 8). An image the HTTP server does not have (404) is given up at once (7), a
/// `coaps://` URI is a protocol the device does not speak (9), one without the image's size
/// invalid (7), and Update with nothing held is refused.
#[test]
fn a_server_updates_firmware_through_object_5() {
    let dir = scratch("run-lwm2m-fw");
    let images = dir.join("images");
    std::fs::create_dir_all(&images).expect("dir");
    let image: Vec<u8> = (0..200_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    std::fs::write(images.join("2.0.0"), &image).expect("image");
    let sha256: String = {
        use sha2::Digest;
        sha2::Sha256::digest(&image)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    let http = ImageServer::start(&images);
    let mut server = NodeServer::start();
    let models = dir.join("models");
    std::fs::create_dir_all(&models).expect("dir");
    for (name, prefix, boot_fail) in [("lwm2m-fw", "LF", "0%"), ("lwm2m-fw-bad", "LB", "100%")] {
        std::fs::write(
            models.join(format!("{name}.toml")),
            format!(
                "name = \"{name}\"\nprotocol = \"coap\"\nfirmware = \"1.0.0\"\nserial_prefix = \"{prefix}\"\n\n\
                 [telemetry]\ninterval = \"1h\"\npayload_bytes = 16\nqos = 0\n\n\
                 [ota]\ndownload_kbps = 8000\ninterrupt = \"50%\"\ncorrupt = \"0%\"\nboot_fail = \"{boot_fail}\"\nbrick = \"0%\"\n"
            ),
        )
        .expect("model");
    }
    let scenario = dir.join("scenario.toml");
    std::fs::write(
        &scenario,
        format!(
            "[scenario]\nname = \"fw\"\nseed = 8\nduration = \"25s\"\ntime_scale = 60\nmodels = \"{}\"\n\n\
             [backend]\nkind = \"lwm2m\"\nurl = \"coap://127.0.0.1:{}\"\n\n\
             [fleet]\ndevices = 2\narrival = {{ ramp = \"1s\" }}\n\
             mix = [ {{ model = \"lwm2m-fw\", share = 0.5, group = \"good\" }}, {{ model = \"lwm2m-fw-bad\", share = 0.5, group = \"bad\" }} ]\n",
            models.display(),
            server.port
        ),
    )
    .expect("scenario");
    let out = dir.join("report");
    let run = run_behind(&scenario, &out);
    server.wait_count("registration", 2, Duration::from_secs(10));
    let registered: Vec<Value> = server
        .events
        .iter()
        .filter(|e| e["event"] == "registration")
        .cloned()
        .collect();
    let uri = format!(
        "http://127.0.0.1:{}/2.0.0?size={}&sha256={sha256}",
        http.port,
        image.len()
    );
    for registration in &registered {
        let ep = &registration["ep"];
        let good = ep.as_str().expect("ep").starts_with("LF");
        assert!(
            registration["objects"].to_string().contains("/5/0"),
            "object 5 registered: {registration}"
        );
        assert!(
            server
                .ask(json!({"op": "execute", "ep": ep, "path": "/5/0/2"}))
                .is_err(),
            "nothing held to install"
        );
        server
            .ask(json!({"op": "observe", "ep": ep, "path": "/5/0/3", "accept": "text/plain"}))
            .expect("observe the state");
        server
            .ask(json!({"op": "write", "ep": ep, "path": "/5/0/1", "value": uri}))
            .expect("write the Package URI");
        read_until(&mut server, ep, "/5/0/3", "2");
        let registrations_before = server
            .events
            .iter()
            .filter(|e| e["event"] == "registration" && &e["ep"] == ep)
            .count();
        server
            .ask(json!({"op": "execute", "ep": ep, "path": "/5/0/2"}))
            .expect("execute Update");
        // The reboot: the device comes back and registers afresh from a new port.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while server
            .events
            .iter()
            .filter(|e| e["event"] == "registration" && &e["ep"] == ep)
            .count()
            == registrations_before
        {
            assert!(std::time::Instant::now() < deadline, "{ep} came back from its reboot");
            server.drain(Duration::from_millis(100));
        }
        read_until(&mut server, ep, "/5/0/5", if good { "1" } else { "8" });
        read_until(&mut server, ep, "/5/0/3", "0");
        read_until(&mut server, ep, "/3/0/3", if good { "2.0.0" } else { "1.0.0" });
        let states: Vec<&Value> = server
            .events
            .iter()
            .filter(|e| e["event"] == "notify" && &e["ep"] == ep)
            .map(|e| &e["value"])
            .collect();
        for state in ["1", "2", "3"] {
            assert!(
                states.contains(&&json!(state)),
                "{ep}: state {state} notified: {states:?}"
            );
        }
    }
    let ep = &registered[0]["ep"];
    for (uri, result) in [
        // An image the server does not have (404): given up at the first attempt.
        (
            format!("http://127.0.0.1:{}/9.9.9?size=100&sha256={sha256}", http.port),
            "7",
        ),
        ("coaps://127.0.0.1:5684/2.0.0?size=9".to_owned(), "9"),
        (format!("http://127.0.0.1:{}/2.0.0", http.port), "7"),
    ] {
        server
            .ask(json!({"op": "write", "ep": ep, "path": "/5/0/1", "value": uri}))
            .expect("a URI is taken");
        read_until(&mut server, ep, "/5/0/5", result);
    }
    let output = run.join().expect("run thread");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let summary = summary(&out);
    assert_eq!(counter(&summary, "ota.jobs"), 3, "two updates and the missing image");
    assert_eq!(
        (
            counter(&summary, "ota.unavailable"),
            counter(&summary, "errors.http_404")
        ),
        (1, 1),
        "the missing image is asked for once, then given up"
    );
    assert_eq!(counter(&summary, "ota.installed"), 1);
    assert_eq!(counter(&summary, "ota.rolled_back"), 1);
    assert_eq!(counter(&summary, "ota.downloaded_bytes"), 2 * image.len() as u64);
    assert!(
        counter(&summary, "ota.resumes") > 0,
        "half the attempts are cut: {summary}"
    );
    assert_eq!(counter(&summary, "errors.protocol"), 0, "every image matched its hash");
}

/// An always-connected device whose registration lifetime is shorter than its report
/// interval updates the registration on its own timer, between reports: none expires. And a
/// server that sets pmax on what it observes is notified that often, reports or not.
#[test]
fn registrations_and_pmax_are_kept_between_reports() {
    let mut server = NodeServer::start();
    let (_scratch, scenario, out) = fleet(
        "run-lwm2m-short",
        (
            "lwm2m-hourly",
            "name = \"lwm2m-hourly\"\nprotocol = \"coap\"\nfirmware = \"1.0.0\"\nserial_prefix = \"LH\"\n\n\
             [telemetry]\ninterval = \"1h\"\npayload_bytes = 16\nqos = 0\n\n[lwm2m]\nlifetime = \"2m\"\n",
        ),
        // At 60x: a report a minute, a 2 s lifetime, updated every 1.8 s.
        |models| {
            let url = format!("coap://127.0.0.1:{}", server.port);
            let gates = "\"errors.total\" = \"== 0\"";
            scenario(models, ("short", 9, "9s"), &url, (4, "lwm2m-hourly", "meters"), gates)
        },
    );
    let run = run_behind(&scenario, &out);
    // A temperature observed with pmax 1 s: notified every second though it reports hourly.
    server.wait_count("registration", 4, Duration::from_secs(10));
    let ep = server
        .events
        .iter()
        .find(|e| e["event"] == "registration")
        .expect("one")["ep"]
        .clone();
    server
        .ask(json!({"op": "write-attributes", "ep": ep, "path": "/3303/0/5700", "attributes": {"pmax": 1}}))
        .expect("attributes");
    server
        .ask(json!({"op": "observe", "ep": ep, "path": "/3303/0/5700", "accept": "text/plain"}))
        .expect("observe");
    let output = run.join().expect("run thread");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    server.drain(Duration::from_millis(300));
    let stats = server.ask(json!({"op": "stats"})).expect("stats");
    assert_eq!(stats["registrations"], json!(4), "{stats}");
    assert_eq!(stats["expirations"], json!(0), "none lapsed: {stats}");
    let notified = server.count("notify");
    assert!(notified >= 4, "about one a second for 7 s: {notified}");
    assert_eq!(counter(&summary(&out), "lwm2m.notifications"), notified as u64);
    let summary = summary(&out);
    assert_eq!(json!(counter(&summary, "lwm2m.updates")), stats["updates"]);
    assert!(
        counter(&summary, "lwm2m.updates") >= 4 * 3,
        "every 1.8 s for 7 s: {stats}"
    );
    // From each Update's intended time, not from the registration before it (1.8 s back):
    // well under a second, though a loaded machine makes it tens of ms (195 ms seen).
    let latency = &summary["metrics"]["histograms"]["update.latency"];
    assert!(
        latency["p99_ms"].as_f64().is_some_and(|ms| ms < 1_000.0),
        "from the intended time: {latency}"
    );
}

/// A small scenario's text at 60x model time: `name`, `seed` and `duration`, `devices` of one
/// `model` in one `group` arriving within a second, against the LwM2M server at `url`, with
/// `gates` (TOML lines under `[gates]`, or none).
fn scenario(
    models: &Path,
    (name, seed, duration): (&str, u64, &str),
    url: &str,
    (devices, model, group): (usize, &str, &str),
    gates: &str,
) -> String {
    format!(
        "[scenario]\nname = \"{name}\"\nseed = {seed}\nduration = \"{duration}\"\ntime_scale = 60\n\
         models = \"{}\"\n\n[backend]\nkind = \"lwm2m\"\nurl = \"{url}\"\n\n\
         [fleet]\ndevices = {devices}\narrival = {{ ramp = \"1s\" }}\n\
         mix = [ {{ model = \"{model}\", share = 1.0, group = \"{group}\" }} ]\n\n[gates]\n{gates}\n",
        models.display()
    )
}

/// Runs `scenario` headless into `out` on a thread of its own, while the test plays the
/// server.
fn run_behind(scenario: &Path, out: &Path) -> std::thread::JoinHandle<std::process::Output> {
    let (scenario, out) = (scenario.to_owned(), out.to_owned());
    std::thread::spawn(move || run_headless(&scenario, &out))
}

/// Writes a test's model (`name`, its text) into a scratch folder of `tag`'s and its scenario,
/// which `scenario` writes given the models' folder; the folder (kept while it is held), the
/// scenario's path and its report folder.
fn fleet(
    tag: &str,
    (name, model): (&str, &str),
    scenario: impl FnOnce(&Path) -> String,
) -> (binary::Scratch, PathBuf, PathBuf) {
    let dir = scratch(tag);
    let models = dir.join("models");
    std::fs::create_dir_all(&models).expect("dir");
    std::fs::write(models.join(format!("{name}.toml")), model).expect("model");
    let file = dir.join("scenario.toml");
    std::fs::write(&file, scenario(&models)).expect("scenario");
    let out = dir.join("report");
    (dir, file, out)
}

/// Confirmable notifications (a model with `qos = 1`) against a server of the test's own that
/// acknowledges them, as lwm2m-node-lib never does: each acknowledgement ends its exchange at
/// once and records `publish.latency`; none is sent again. The server observes the moment the
/// device registers, and gets a reading: a device reports as it connects, before it reads.
#[test]
fn confirmable_notifications_end_at_their_acknowledgement() {
    use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType, ResponseType};
    use std::net::UdpSocket;

    let server = UdpSocket::bind("127.0.0.1:0").expect("bind");
    server
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let addr = server.local_addr().expect("addr");
    let (_scratch, scenario, out) = fleet(
        "run-lwm2m-con",
        (
            "lwm2m-con",
            "name = \"lwm2m-con\"\nprotocol = \"coap\"\nfirmware = \"1.0.0\"\n\n\
             [telemetry]\ninterval = \"1m\"\npayload_bytes = 16\nqos = 1\n",
        ),
        // At 60x: a report, and so a notification, a second.
        |models| {
            scenario(
                models,
                ("con", 6, "7s"),
                &format!("coap://{addr}"),
                (1, "lwm2m-con", "g"),
                "",
            )
        },
    );
    let run = run_behind(&scenario, &out);
    let mut buf = [0u8; 2048];
    let mut observing = false;
    let mut first = None;
    let (mut notifications, mut ids) = (0, Vec::new());
    let started = std::time::Instant::now();
    while !run.is_finished() && started.elapsed() < Duration::from_secs(20) {
        let Ok((len, from)) = server.recv_from(&mut buf) else {
            continue;
        };
        let packet = Packet::from_bytes(&buf[..len]).expect("the device sends CoAP");
        let mut answer = Packet::new();
        answer.header.set_type(MessageType::Acknowledgement);
        answer.header.message_id = packet.header.message_id;
        match packet.header.code {
            MessageClass::Request(RequestType::Post) => {
                // Its Register (or an Update): taken.
                answer.set_token(packet.get_token().to_vec());
                answer.header.code = MessageClass::Response(if packet.get_option(CoapOption::UriQuery).is_some() {
                    answer.add_option(CoapOption::LocationPath, b"rd".to_vec());
                    answer.add_option(CoapOption::LocationPath, b"1".to_vec());
                    ResponseType::Created
                } else {
                    ResponseType::Changed
                });
            }
            // The observation's first answer, right after the registration: a reading, for the
            // device reported as it connected.
            MessageClass::Response(code) if packet.header.message_id == 500 => {
                first = Some(code);
                continue;
            }
            MessageClass::Response(ResponseType::Content) if packet.header.get_type() == MessageType::Confirmable => {
                // A notification: acknowledged, empty.
                notifications += 1;
                ids.push(packet.header.message_id);
                answer.header.code = MessageClass::Empty;
            }
            _ => continue,
        }
        server
            .send_to(&answer.to_bytes().expect("encodes"), from)
            .expect("send");
        if !observing {
            let mut observe = Packet::new();
            observe.header.set_type(MessageType::Confirmable);
            observe.header.code = MessageClass::Request(RequestType::Get);
            observe.header.message_id = 500;
            observe.set_token(vec![4, 2]);
            observe.set_observe_value(0);
            for segment in ["3303", "0", "5700"] {
                observe.add_option(CoapOption::UriPath, segment.as_bytes().to_vec());
            }
            server
                .send_to(&observe.to_bytes().expect("encodes"), from)
                .expect("send");
            observing = true;
        }
    }
    let output = run.join().expect("run thread");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let summary = summary(&out);
    assert_eq!(
        first,
        Some(ResponseType::Content),
        "observed at once, answered with a reading"
    );
    assert!(notifications >= 3, "a notification a report: {notifications}");
    let mut distinct = ids.clone();
    distinct.dedup();
    assert_eq!(distinct, ids, "none sent again: each was acknowledged at once");
    assert_eq!(counter(&summary, "lwm2m.notifications"), notifications);
    assert_eq!(counter(&summary, "coap.retransmissions"), 0);
    let publish = &summary["metrics"]["histograms"]["publish.latency"];
    assert_eq!(publish["count"].as_u64(), Some(notifications), "{publish}");
}

/// A step attribute (`st`) larger than the sensor's whole range holds back every notification
/// after the first reading, while a device observed without one notifies each report: the
/// device honours what lwm2m-node-lib's Write-Attributes set.
#[test]
fn a_step_attribute_holds_back_notifications_that_did_not_move_enough() {
    let mut server = NodeServer::start();
    let (_scratch, scenario, out) = fleet(
        "run-lwm2m-step",
        (
            "lwm2m-step",
            "name = \"lwm2m-step\"\nprotocol = \"coap\"\nfirmware = \"1.0.0\"\nserial_prefix = \"LS\"\n\n\
             [telemetry]\ninterval = \"1m\"\npayload_bytes = 16\nqos = 0\n",
        ),
        // At 60x: a report a second.
        |models| {
            let url = format!("coap://127.0.0.1:{}", server.port);
            scenario(
                models,
                ("step", 12, "8s"),
                &url,
                (2, "lwm2m-step", "g"),
                "\"errors.total\" = \"== 0\"",
            )
        },
    );
    let run = run_behind(&scenario, &out);
    server.wait_count("registration", 2, Duration::from_secs(10));
    let eps: Vec<String> = server
        .events
        .iter()
        .filter(|e| e["event"] == "registration")
        .filter_map(|e| e["ep"].as_str().map(str::to_owned))
        .collect();
    let (stepped, plain) = (&eps[0], &eps[1]);
    // The reading walks within 0 to 100: a step of 200 is never taken.
    server
        .ask(json!({"op": "write-attributes", "ep": stepped, "path": "/3303/0/5700", "attributes": {"st": 200}}))
        .expect("attributes");
    for ep in [stepped, plain] {
        server
            .ask(json!({"op": "observe", "ep": ep, "path": "/3303/0/5700", "accept": "text/plain"}))
            .expect("observe");
    }
    let output = run.join().expect("run thread");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    server.drain(Duration::from_millis(300));
    let notified = |ep: &str| {
        server
            .events
            .iter()
            .filter(|e| e["event"] == "notify" && e["ep"] == ep)
            .count()
    };
    assert_eq!(notified(stepped), 0, "held back by st");
    assert!(notified(plain) >= 4, "a notification a report: {}", notified(plain));
    assert_eq!(
        counter(&summary(&out), "lwm2m.notifications"),
        (notified(stepped) + notified(plain)) as u64
    );
}

/// libcoap's `coap-server` (Debian's libcoap3-bin), a CoAP server nobody here wrote, on a free
/// port, holding what is PUT to it (`-d`): the test stores an image there block-wise with
/// libcoap's `coap-client`. Killed when dropped.
struct CoapServer {
    child: std::process::Child,
    port: u16,
}

impl CoapServer {
    fn start() -> Self {
        let port = std::net::UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .expect("a free port")
            .port();
        let child = std::process::Command::new("coap-server-notls")
            .args(["-A", "127.0.0.1", "-p", &port.to_string(), "-d", "4", "-L", "1"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("coap-server-notls runs (scripts/test installs libcoap3-bin)");
        Self { child, port }
    }

    /// PUTs `file` to `path`, block-wise in 1,024-byte blocks, until a GET reads it back
    /// whole (the server needs a moment to start, and `coap-client` exits 0 unanswered).
    fn put(&self, path: &str, file: &Path) {
        let url = format!("coap://127.0.0.1:{}{path}", self.port);
        let back = file.with_extension("back");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            for args in [
                &["-m", "put", "-b", "1024", "-B", "2", "-f"][..],
                &["-m", "get", "-b", "1024", "-B", "2", "-o"],
            ] {
                std::process::Command::new("coap-client-notls")
                    .args(args)
                    .arg(if args[1] == "put" { file } else { &back })
                    .arg(&url)
                    .status()
                    .expect("coap-client-notls runs");
            }
            if std::fs::read(&back).ok() == std::fs::read(file).ok() {
                return;
            }
            assert!(std::time::Instant::now() < deadline, "coap-server took the image");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for CoapServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Object 5 pulling over CoAP: the package a `coap://` Package URI names is fetched block-wise
/// (Block2, 1,024 bytes) from libcoap's server, cut attempts resuming at the block that holds
/// their next byte; the image checks out against its SHA-256 and the update installs.
#[test]
fn a_package_is_pulled_block_wise_over_coap() {
    let dir = scratch("run-lwm2m-fw-coap");
    std::fs::create_dir_all(&dir).expect("dir");
    let image: Vec<u8> = (0..150_000u32)
        .map(|i| (i.wrapping_mul(2_246_822_519) >> 24) as u8)
        .collect();
    let file = dir.join("image.bin");
    std::fs::write(&file, &image).expect("image");
    let sha256: String = {
        use sha2::Digest;
        sha2::Sha256::digest(&image)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    let coap = CoapServer::start();
    coap.put("/fw/2.0.0", &file);
    let mut server = NodeServer::start();
    let (_scratch, scenario, out) = fleet(
        "run-lwm2m-fw-coap",
        (
            "lwm2m-fw",
            "name = \"lwm2m-fw\"\nprotocol = \"coap\"\nfirmware = \"1.0.0\"\nserial_prefix = \"LC\"\n\n\
             [telemetry]\ninterval = \"1h\"\npayload_bytes = 16\nqos = 0\n\n\
             [ota]\ndownload_kbps = 8000\ninterrupt = \"50%\"\ncorrupt = \"0%\"\nboot_fail = \"0%\"\nbrick = \"0%\"\n",
        ),
        |models| {
            let url = format!("coap://127.0.0.1:{}", server.port);
            scenario(
                models,
                ("fw-coap", 8, "20s"),
                &url,
                (1, "lwm2m-fw", "meters"),
                "\"errors.total\" = \"== 0\"",
            )
        },
    );
    let run = run_behind(&scenario, &out);
    let registration = server.wait_event(Duration::from_secs(10), |e| e["event"] == "registration");
    let ep = &registration["ep"];
    let uri = format!(
        "coap://127.0.0.1:{}/fw/2.0.0?size={}&sha256={sha256}",
        coap.port,
        image.len()
    );
    server
        .ask(json!({"op": "write", "ep": ep, "path": "/5/0/1", "value": uri}))
        .expect("write the Package URI");
    read_until(&mut server, ep, "/5/0/3", "2");
    server
        .ask(json!({"op": "execute", "ep": ep, "path": "/5/0/2"}))
        .expect("execute Update");
    read_until(&mut server, ep, "/5/0/5", "1");
    read_until(&mut server, ep, "/3/0/3", "2.0.0");
    let output = run.join().expect("run thread");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let summary = summary(&out);
    assert_eq!(counter(&summary, "ota.installed"), 1);
    assert_eq!(counter(&summary, "ota.downloaded_bytes"), image.len() as u64);
    assert!(
        counter(&summary, "ota.resumes") > 0,
        "half the attempts are cut: {summary}"
    );
    assert_eq!(counter(&summary, "errors.protocol"), 0, "the image matched its hash");
}
