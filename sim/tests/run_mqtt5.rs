//! MQTT 5 devices against a real MQTT 5 broker, Debian's Mosquitto 2, read back by an
//! independent MQTT 5 client (`mosquitto_sub -V mqttv5`): what the devices publish under a
//! topic alias arrives under its full topic with its message expiry and user property; a
//! refused CONNECT is counted by its CONNACK's reason, and a refused subscription (3.1.1's
//! and 5's, Mosquitto's dynamic-security plugin denying it) by its SUBACK; and, against a
//! hand-written MQTT 5 server, a DISCONNECT by its reason and the server's Receive Maximum
//! honoured.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{
    Disconnect, DisconnectReasonCode, Packet, PingResp, PubAck, SubAck, SubscribeReasonCode,
};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[path = "support/mosquitto.rs"]
mod mosquitto;
use mosquitto::Mosquitto;

#[path = "support/binary.rs"]
mod binary;
use binary::{assert_exit, counter, errors_total, fleetsim, repo, run_against, summary};

#[path = "support/standalone.rs"]
mod standalone;

/// An empty folder of this test process's, named after `name`.
fn scratch(name: &str) -> binary::Scratch {
    let dir = binary::scratch(name);
    std::fs::create_dir_all(&dir).expect("dir");
    dir
}

/// Waits until the broker takes connections (it needs a moment after starting).
fn wait_for(broker: &Mosquitto) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(broker.addr).is_err() {
        assert!(Instant::now() < deadline, "mosquitto never listened");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `mosquitto_sub -V mqttv5` on the broker with `args`, its output to `out`.
fn mosquitto_sub(broker: &Mosquitto, args: &[&str], out: &Path) -> std::process::Child {
    Command::new("mosquitto_sub")
        .args(["-V", "mqttv5", "-h", "127.0.0.1", "-p", &broker.addr.port().to_string()])
        .args(args)
        .stdout(std::fs::File::create(out).expect("output file"))
        .stderr(Stdio::null())
        .spawn()
        .expect("mosquitto_sub (mosquitto-clients) runs; scripts/test installs it")
}

/// `fleetsim run SCENARIO` against the broker at `addr` for `duration`, into `out`, with the
/// models of `models` (the shipped ones when `None`).
fn run_against_broker(scenario: &Path, addr: SocketAddr, duration: &str, models: Option<&Path>, out: &Path) -> Output {
    let models = models.map_or_else(|| repo().join("device-models"), Path::to_owned);
    let backend = format!("mqtt://{addr}");
    fleetsim(&[
        "run".as_ref(),
        scenario.as_os_str(),
        "--headless".as_ref(),
        "--duration".as_ref(),
        duration.as_ref(),
        "--models".as_ref(),
        models.as_os_str(),
        "--backend".as_ref(),
        backend.as_ref(),
        "--out".as_ref(),
        out.as_os_str(),
    ])
}

/// `scenarios/mqtt5-broker.toml` against `broker` for `duration`, into `out`.
fn run_mqtt5_scenario(broker: &Mosquitto, duration: &str, out: &Path) -> Output {
    run_against_broker(
        Path::new("scenarios/mqtt5-broker.toml"),
        broker.addr,
        duration,
        None,
        out,
    )
}

/// Every report the run counted reaches an independent MQTT 5 subscriber under its full topic
/// (the broker resolved the alias the devices sent after their first message), with the
/// model's message expiry counting down from ten minutes and its user property.
#[test]
fn mqtt5_reports_arrive_with_their_topic_expiry_and_user_property() {
    let broker = Mosquitto::start();
    wait_for(&broker);
    let dir = scratch("run-mqtt5-properties");
    let heard = dir.join("heard.txt");
    let mut sub = mosquitto_sub(&broker, &["-t", "mqtt5/+/+/t", "-q", "1", "-F", "%t|%E|%P"], &heard);
    std::thread::sleep(Duration::from_millis(500));
    let out = dir.join("report");
    let ran = run_mqtt5_scenario(&broker, "8s", &out);
    std::thread::sleep(Duration::from_millis(500));
    let _ = sub.kill();
    let _ = sub.wait();
    assert_exit(&ran, 0);
    let summary = summary(&out);
    let published = counter(&summary, "published");
    // 200 meters reporting every simulated minute (a second at 60x) for about 6 seconds.
    assert!(published >= 800, "{summary}");
    let heard = std::fs::read_to_string(&heard).expect("heard");
    let lines: Vec<&str> = heard.lines().collect();
    assert_eq!(lines.len() as u64, published, "every report the run counted arrived");
    let mut devices = std::collections::BTreeSet::new();
    for line in &lines {
        let mut fields = line.split('|');
        let (topic, expiry, properties) = (fields.next(), fields.next(), fields.next());
        let serial = topic
            .and_then(|t| t.strip_prefix("mqtt5/meters/"))
            .and_then(|t| t.strip_suffix("/t"))
            .unwrap_or_else(|| panic!("a full topic, alias resolved: {line}"));
        assert!(serial.starts_with("M5-"), "{line}");
        devices.insert(serial.to_owned());
        let expiry: u32 = expiry
            .and_then(|e| e.parse().ok())
            .unwrap_or_else(|| panic!("expiry: {line}"));
        assert!((590..=600).contains(&expiry), "ten minutes, counting down: {line}");
        assert_eq!(properties, Some("site:lab-3"), "{line}");
    }
    assert_eq!(devices.len(), 200, "every meter reported");
    assert_eq!(counter(&summary, "errors.publish_refused"), 0);
}

/// What the hand-written MQTT 5 server saw.
#[derive(Default)]
struct Seen {
    connections: AtomicU64,
    /// The most reports one connection sent.
    most_reports: AtomicU64,
}

/// A hand-written MQTT 5 server on rumqttc's codec, for what Mosquitto 2.0.11 does not do
/// (it closes the socket on a takeover or a shutdown without the DISCONNECT reaching the
/// client): it accepts every CONNECT, advertising `receive_max` if given, and grants every
/// SUBSCRIBE; acknowledges each QoS 1 report unless `receive_max` is given (then it
/// acknowledges none); and after a connection's `disconnect_after`th report sends DISCONNECT
/// 0x8B, shutting down.
async fn v5_server(receive_max: Option<u16>, disconnect_after: Option<u64>) -> (SocketAddr, Arc<Seen>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen = Arc::new(Seen::default());
    let counted = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            counted.connections.fetch_add(1, Ordering::Relaxed);
            let seen = Arc::clone(&counted);
            tokio::spawn(async move {
                let mut buf = BytesMut::new();
                let mut reports = 0;
                loop {
                    let reply = match Packet::read(&mut buf, None) {
                        Ok(Packet::Connect(..)) => {
                            // CONNACK, success; with a Receive Maximum (0x21) when given.
                            let ack: Vec<u8> = match receive_max {
                                Some(max) => [&[0x20, 0x06, 0x00, 0x00, 0x03, 0x21][..], &max.to_be_bytes()].concat(),
                                None => vec![0x20, 0x03, 0x00, 0x00, 0x00],
                            };
                            if socket.write_all(&ack).await.is_err() {
                                return;
                            }
                            continue;
                        }
                        Ok(Packet::Publish(publish)) => {
                            reports += 1;
                            seen.most_reports.fetch_max(reports, Ordering::Relaxed);
                            if Some(reports) == disconnect_after {
                                Packet::Disconnect(Disconnect::new(DisconnectReasonCode::ServerShuttingDown))
                            } else if receive_max.is_some() {
                                continue;
                            } else {
                                Packet::PubAck(PubAck::new(publish.pkid, None))
                            }
                        }
                        Ok(Packet::Subscribe(subscribe)) => Packet::SubAck(SubAck {
                            pkid: subscribe.pkid,
                            return_codes: vec![SubscribeReasonCode::Success(QoS::AtLeastOnce)],
                            properties: None,
                        }),
                        Ok(Packet::PingReq(_)) => Packet::PingResp(PingResp),
                        Ok(_) => continue,
                        Err(rumqttc::v5::mqttbytes::Error::InsufficientBytes(_)) => {
                            match socket.read_buf(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(_) => continue,
                            }
                        }
                        Err(_) => return,
                    };
                    let ended = matches!(reply, Packet::Disconnect(_));
                    let mut out = BytesMut::new();
                    reply.write(&mut out, None).expect("encodes");
                    if socket.write_all(&out).await.is_err() || ended {
                        return;
                    }
                }
            });
        }
    });
    (addr, seen)
}

/// `scenarios/mqtt5-broker.toml` with `devices` meters (no online gate) against the server at
/// `addr` for 8 s; its summary.
async fn run_small_fleet(name: &str, devices: u32, addr: SocketAddr) -> (Output, Value) {
    let dir = scratch(name);
    let scenario = dir.join("small.toml");
    let text = std::fs::read_to_string(repo().join("scenarios/mqtt5-broker.toml")).expect("scenario");
    let text = text
        .replace("devices = 200", &format!("devices = {devices}"))
        .replace("\"devices.online\" = \">= 198\"", "\"devices.online\" = \">= 0\"")
        .replace("\"publish.latency.p99\" = \"<= 250ms\"", "");
    std::fs::write(&scenario, text).expect("scenario");
    let out = dir.join("report");
    let report = out.clone();
    let ran = tokio::task::spawn_blocking(move || run_against_broker(&scenario, addr, "8s", None, &report))
        .await
        .expect("run task");
    let summary = summary(&out);
    let _ = std::fs::remove_dir_all(&dir);
    (ran, summary)
}

/// A server that ends connections with a DISCONNECT and a reason: the run counts them by it
/// (here 0x8B, shutting down), and the meters connect again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_disconnect_is_counted_by_its_reason() {
    let (addr, seen) = v5_server(None, Some(3)).await;
    let (ran, summary) = run_small_fleet("run-mqtt5-disconnect", 5, addr).await;
    let stdout = String::from_utf8_lossy(&ran.stdout);
    // Five meters reporting every second for about seven seconds: each ended at least twice.
    let ended = counter(&summary, "disconnects.server_shutting_down");
    assert!(ended >= 10, "{stdout}\n{summary}");
    assert_eq!(counter(&summary, "disconnects.other"), 0, "{summary}");
    assert!(
        seen.connections.load(Ordering::Relaxed) > ended,
        "the meters connected again after each"
    );
}

/// A server whose Receive Maximum is 2 and that acknowledges nothing: each meter sends two
/// QoS 1 reports and holds back the rest (`held_back`), never more unacknowledged than the
/// server takes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_servers_receive_maximum_is_honoured() {
    let (addr, seen) = v5_server(Some(2), None).await;
    let (ran, summary) = run_small_fleet("run-mqtt5-receive-maximum", 3, addr).await;
    let stdout = String::from_utf8_lossy(&ran.stdout);
    assert_eq!(seen.most_reports.load(Ordering::Relaxed), 2, "{stdout}\n{summary}");
    assert_eq!(counter(&summary, "published"), 3 * 2, "{summary}");
    // About seven reports a meter in the run; five of each held back.
    assert!(counter(&summary, "held_back") >= 3 * 4, "{summary}");
}

/// Meters that leave their client id to the broker (`assigned_client_id = true`): Mosquitto
/// assigns each one (its log names them `auto-...`) in its CONNACK, and they report under it.
#[test]
fn the_broker_assigns_client_ids_to_meters_that_ask() {
    // As root, Mosquitto would drop to its own user, which may not write the log's folder.
    let broker = Mosquitto::start_with(
        "user root\nlog_dest file {log}\nlog_type notice\nlog_type information\nconnection_messages true\n",
    );
    wait_for(&broker);
    let dir = scratch("run-mqtt5-assigned");
    let models = dir.join("models");
    std::fs::create_dir_all(&models).expect("models");
    let meter = std::fs::read_to_string(repo().join("device-models/mqtt5-meter.toml")).expect("model");
    let meter = meter
        .lines()
        .filter(|line| !line.starts_with("session_expiry"))
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(
        models.join("mqtt5-meter.toml"),
        format!("{meter}\nassigned_client_id = true\n"),
    )
    .expect("model");
    let out = dir.join("report");
    let scenario = Path::new("scenarios/mqtt5-broker.toml");
    let ran = run_against_broker(scenario, broker.addr, "4s", Some(&models), &out);
    assert_exit(&ran, 0);
    let summary = summary(&out);
    assert!(counter(&summary, "published") >= 200, "{summary}");
    let log = broker.log();
    let assigned = log.lines().filter(|line| line.contains(" as auto-")).count();
    assert_eq!(assigned, 200, "every meter under an id the broker assigned:\n{log}");
}

/// MQTT 5 meters against a standalone reference backend, which speaks 5 and 3.1.1 side by
/// side: they provision by claim over MQTT 5, connect with a session that outlives a drop,
/// report, take a config push and a reboot, as its 3.1.1 devices do; each reboot came as a
/// request, and its answer went to the response topic echoing the correlation data (the
/// gateway counts the answers that did).
#[test]
fn mqtt5_devices_are_operated_through_the_reference_backend() {
    let dir = scratch("run-mqtt5-reference");
    let scenario = dir.join("reference.toml");
    std::fs::write(
        &scenario,
        format!(
            "[scenario]\nname = \"mqtt5-reference\"\nseed = 9\nduration = \"8s\"\ntime_scale = 60\nmodels = \"{}\"\n\n\
             [fleet]\ndevices = 50\narrival = {{ ramp = \"1s\" }}\n\
             mix = [ {{ model = \"mqtt5-meter\", share = 1.0, group = \"meters\" }} ]\n\n\
             [[phase]]\nat = \"3s\"\naction = \"config\"\ngroup = \"meters\"\nset = {{ tariff = \"night\" }}\n\n\
             [[phase]]\nat = \"5s\"\naction = \"command\"\ngroup = \"meters\"\ncommand = \"reboot\"\nshare = \"50%\"\n\n\
             [gates]\n\"devices.lost\" = \"== 0\"\n\"config.latency.p99\" = \"<= 1s\"\n\"errors.total\" = \"== 0\"\n",
            repo().join("device-models").display()
        ),
    )
    .expect("scenario");
    let out = dir.join("report");
    let backend = standalone::process(&dir.join("data"), &[], 1);
    let ran = run_against(&backend.http, &scenario, &out);
    assert_exit(&ran, 0);
    let summary = summary(&out);
    assert_eq!(counter(&summary, "provisioned"), 50, "{summary}");
    assert_eq!(counter(&summary, "config.reported"), 50, "{summary}");
    assert_eq!(counter(&summary, "commands.answered"), 25, "{summary}");
    let metrics = std::process::Command::new("curl")
        .args(["-sf", &format!("http://{}/metrics", backend.http)])
        .output()
        .expect("curl /metrics");
    let metrics = String::from_utf8_lossy(&metrics.stdout);
    assert!(
        metrics
            .lines()
            .any(|l| l == "fleetsim_gateway_command_results_correlated_total 25"),
        "every answer echoed its correlation data:\n{metrics}"
    );
    drop(backend);
    assert!(counter(&summary, "published") >= 150, "{summary}");
}

/// A broker that allows no anonymous clients refuses every meter's CONNECT with reason 0x87,
/// not authorized: counted as `errors.auth`, shown among the errors, and nothing published.
#[test]
fn a_refused_mqtt5_connect_is_counted_by_its_reason() {
    let broker = Mosquitto::start_with("allow_anonymous false\n");
    wait_for(&broker);
    let dir = scratch("run-mqtt5-refused");
    let out = dir.join("report");
    let ran = run_mqtt5_scenario(&broker, "3s", &out);
    assert_eq!(ran.status.code(), Some(1), "the online gate fails");
    let summary = summary(&out);
    assert!(counter(&summary, "errors.auth") >= 200, "{summary}");
    assert_eq!(counter(&summary, "published"), 0);
    for other in [
        "errors.refused",
        "errors.protocol",
        "errors.busy",
        "errors.quota",
        "errors.banned",
    ] {
        assert_eq!(counter(&summary, other), 0, "{other}: {summary}");
    }
}

/// Mosquitto's dynamic-security plugin, which Debian ships with the broker.
fn dynamic_security_plugin() -> PathBuf {
    std::fs::read_dir("/usr/lib")
        .expect("/usr/lib")
        .filter_map(Result::ok)
        .map(|entry| entry.path().join("mosquitto_dynamic_security.so"))
        .find(|path| path.exists())
        .expect("mosquitto's dynamic-security plugin (Debian's mosquitto package; scripts/test installs it)")
}

/// A broker whose access rules refuse every subscription (the dynamic-security plugin with
/// `subscribe` denied by default: Mosquitto's `acl_file` would grant the SUBSCRIBE and only
/// hold back the messages) answers each device's command-topic SUBSCRIBE with a failure, 0x80
/// to an MQTT 3.1.1 meter and 0x87 (not authorized) to an MQTT 5 one. Each is counted as
/// `errors.subscribe_refused`, once a connect, and the devices stay connected and report.
#[test]
fn a_refused_subscription_is_counted_and_the_device_stays_connected() {
    let dir = scratch("run-mqtt-subscribe-refused");
    let rules = dir.join("dynamic-security.json");
    std::fs::write(
        &rules,
        r#"{"defaultACLAccess": {"publishClientSend": true, "publishClientReceive": true, "subscribe": false, "unsubscribe": true}, "clients": [], "groups": [], "roles": []}"#,
    )
    .expect("rules");
    // As root, Mosquitto would drop to its own user, which may not write the plugin's file.
    let broker = Mosquitto::start_with(&format!(
        "user root\nplugin {}\nplugin_opt_config_file {}\n",
        dynamic_security_plugin().display(),
        rules.display()
    ));
    wait_for(&broker);
    let scenario = dir.join("refused.toml");
    std::fs::write(
        &scenario,
        r#"
[scenario]
name = "subscribe-refused"
seed = 9
duration = "4s"
time_scale = 600

[backend]
kind = "mqtt"
url = "mqtt://127.0.0.1:1883"
telemetry_topic = "plant/{group}/{serial}/t"
command_topic = "plant/{group}/{serial}/cmd"

[fleet]
devices = 20
arrival = { ramp = "1s" }
mix = [ { model = "smart-meter", share = 0.5, group = "meters" },
        { model = "mqtt5-meter", share = 0.5, group = "meters5" } ]

[gates]
"devices.online" = "== 20"
"errors.subscribe_refused" = ">= 20"
"#,
    )
    .expect("scenario");
    let out = dir.join("report");
    let ran = run_against_broker(&scenario, broker.addr, "4s", None, &out);
    assert_exit(&ran, 0);
    let summary = summary(&out);
    // A meter whose link model drops it reconnects and is refused again.
    let refused = counter(&summary, "errors.subscribe_refused");
    assert_eq!(
        refused,
        counter(&summary, "connected"),
        "one refusal a connect: {summary}"
    );
    assert_eq!(errors_total(&summary), refused, "nothing else went wrong: {summary}");
    assert!(counter(&summary, "published") >= 20, "{summary}");
}
