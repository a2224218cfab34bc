//! The gateway with MQTT clients that share no code with it or with the other tests: Debian's
//! `mosquitto-clients` (`mosquitto_rr`, `mosquitto_pub`, `mosquitto_sub`, on libmosquitto),
//! run as child processes against a real backend on loopback. `scripts/test` installs them;
//! without them these tests fail, never skip.
//!
//! Children run on the blocking pool (the tests' runtime keeps serving the backend) and are
//! killed if they overrun, besides the `-W` timeout of the clients that have one.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{PATIENCE, TestBackend};
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// The `-W` timeout given to clients that wait for a message, in seconds; the kill deadline
/// is a little longer, so a client that hangs past its own timeout is still stopped.
const CLIENT_WAIT_S: u64 = 10;
const KILL_AFTER: Duration = Duration::from_secs(CLIENT_WAIT_S + 5);

/// A child process that is killed (and reaped) when dropped, so a failing test leaves no
/// client behind.
struct Client {
    child: Child,
    what: String,
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How a client run ended.
#[derive(Debug)]
struct Ran {
    /// Exit code; `None` if a signal ended it.
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Starts `program` with `args`, stdout and stderr piped. Fails the test, saying how to get
/// the clients, when `program` is not installed.
fn start(program: &str, args: &[String]) -> Client {
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                panic!(
                    "{program} is not on PATH: these interop tests need Debian's mosquitto-clients; \
                     run scripts/test, which installs them"
                )
            }
            panic!("cannot start {program}: {e}")
        });
    Client {
        child,
        what: format!("{program} {}", args.join(" ")),
    }
}

/// Waits for `client` to exit and collects its output; kills it and fails the test if it
/// runs past [`KILL_AFTER`].
async fn finish(mut client: Client) -> Ran {
    let outcome = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + KILL_AFTER;
        loop {
            match client.child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() >= deadline => {
                    return Err(format!("{} still running after {KILL_AFTER:?}: killed", client.what));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                Err(e) => return Err(format!("{}: {e}", client.what)),
            }
        }
        let code = client.child.wait().map_err(|e| e.to_string())?.code();
        let (mut stdout, mut stderr) = (String::new(), String::new());
        if let Some(pipe) = client.child.stdout.as_mut() {
            let _ = pipe.read_to_string(&mut stdout);
        }
        if let Some(pipe) = client.child.stderr.as_mut() {
            let _ = pipe.read_to_string(&mut stderr);
        }
        Ok(Ran { code, stdout, stderr })
    })
    .await
    .expect("client task");
    outcome.unwrap_or_else(|message| panic!("{message}"))
}

/// Runs `program` to completion.
async fn run(program: &str, args: &[String]) -> Ran {
    finish(start(program, args)).await
}

/// Arguments every client takes: MQTT 3.1.1, this backend, these credentials and client id.
fn connection(t: &TestBackend, client_id: &str, user: &str, password: &str) -> Vec<String> {
    connection_as("mqttv311", t, client_id, user, password)
}

/// As [`connection`], speaking `version` (`mqttv311`, `mqttv5`).
fn connection_as(version: &str, t: &TestBackend, client_id: &str, user: &str, password: &str) -> Vec<String> {
    [
        "-V",
        version,
        "-h",
        &t.mqtt.ip().to_string(),
        "-p",
        &t.mqtt.port().to_string(),
        "-i",
        client_id,
        "-u",
        user,
        "-P",
        password,
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect()
}

/// `args` plus more.
fn with(mut args: Vec<String>, more: &[&str]) -> Vec<String> {
    args.extend(more.iter().map(|s| (*s).to_owned()));
    args
}

/// Provisions `serial` with `mosquitto_rr`, which subscribes to the reply topic and then
/// publishes the request on one connection. Returns the `-v` output line's topic and body.
async fn provision_with_rr(t: &TestBackend, serial: &str, request: &str) -> (String, Value) {
    let request_topic = format!("fleet/v1/provision/{serial}");
    let reply_topic = format!("{request_topic}/accepted");
    let wait = CLIENT_WAIT_S.to_string();
    let args = with(
        connection(t, &format!("rr-{serial}"), "claim:factory", "s3cret"),
        &[
            "-t",
            &request_topic,
            "-e",
            &reply_topic,
            "-m",
            request,
            "-q",
            "1",
            "-v",
            "-W",
            &wait,
        ],
    );
    let ran = run("mosquitto_rr", &args).await;
    assert_eq!(ran.code, Some(0), "{ran:?}");
    let line = ran.stdout.trim_end();
    let (topic, body) = line
        .split_once(' ')
        .unwrap_or_else(|| panic!("expected `topic body`: {ran:?}"));
    let body = serde_json::from_str(body).unwrap_or_else(|e| panic!("reply is not JSON ({e}): {ran:?}"));
    (topic.to_owned(), body)
}

/// The next line a client printed, read as it comes.
async fn next_line(lines: &mut mpsc::UnboundedReceiver<String>) -> String {
    tokio::time::timeout(PATIENCE, lines.recv())
        .await
        .expect("the client prints in time")
        .expect("the client printed a line before it exited")
}

/// Provisions `serial` and returns the device id and token.
async fn provisioned(t: &TestBackend, serial: &str) -> (String, String) {
    let (_, body) = provision_with_rr(t, serial, r#"{"model": "m"}"#).await;
    let id = body["device_id"].as_str().expect("device_id").to_owned();
    let token = body["token"].as_str().expect("token").to_owned();
    (id, token)
}

#[tokio::test]
async fn mosquitto_rr_provisions_a_serial_with_the_fleet_claim() {
    let t = TestBackend::start().await;
    let (topic, body) = provision_with_rr(&t, "SN-M1", r#"{"model": "m"}"#).await;
    assert_eq!(topic, "fleet/v1/provision/SN-M1/accepted");
    let id = body["device_id"].as_str().expect("device_id");
    let token = body["token"].as_str().expect("token");
    assert!(id.starts_with("d-") && id.len() == 22, "{body}");
    assert_eq!(token.len(), 64, "{body}");
    assert_eq!(body["group"], "sensors");
    assert_eq!(body["config"], json!({ "version": 0, "desired": {} }));
    let stats = t.backend.gateway.stats();
    assert_eq!(stats.connects_claim.load(Ordering::Relaxed), 1);
    assert_eq!(stats.provision_accepted.load(Ordering::Relaxed), 1);
    let record = t.backend.registry.device(id).expect("read").expect("device row");
    assert_eq!((record.serial.as_str(), record.model.as_deref()), ("SN-M1", Some("m")));
    t.stop().await;
}

/// A provisioning reply carries the device's token, so the gateway sends it only on the
/// connection that asked, never to another subscriber, not even one holding the same claim
/// (a broker would forward it to every subscriber). An independent `mosquitto_sub` waits on
/// the reply topics while a separate `mosquitto_pub` provisions: the sub must hear nothing.
#[tokio::test]
async fn a_provisioning_reply_never_reaches_another_connection() {
    let t = TestBackend::start().await;
    let sub = start(
        "mosquitto_sub",
        &with(
            connection(&t, "sub-SN-M1", "claim:factory", "s3cret"),
            &["-t", "fleet/v1/provision/SN-M1/+", "-C", "1", "-v", "-W", "2"],
        ),
    );
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while t.backend.gateway.stats().connects_claim.load(Ordering::Relaxed) < 1 {
        assert!(tokio::time::Instant::now() < deadline, "mosquitto_sub never connected");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // CONNACK precedes SUBSCRIBE by a round trip; the gateway exposes no subscription count.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let publish = run(
        "mosquitto_pub",
        &with(
            connection(&t, "pub-SN-M1", "claim:factory", "s3cret"),
            &["-t", "fleet/v1/provision/SN-M1", "-m", r#"{"model":"m"}"#, "-q", "1"],
        ),
    )
    .await;
    assert_eq!(publish.code, Some(0), "{publish:?}");
    assert_eq!(t.backend.gateway.stats().provision_accepted.load(Ordering::Relaxed), 1);
    let ran = finish(sub).await;
    assert_ne!(
        ran.code,
        Some(0),
        "mosquitto_sub must time out without a message: {ran:?}"
    );
    assert!(
        ran.stdout.is_empty(),
        "the token leaked to another connection: {}",
        ran.stdout
    );
    t.stop().await;
}

#[tokio::test]
async fn mosquitto_pub_sends_telemetry_as_the_provisioned_device() {
    let t = TestBackend::start().await;
    let (id, token) = provisioned(&t, "SN-M2").await;
    let stats = t.backend.gateway.stats();
    assert_eq!(stats.telemetry.load(Ordering::Relaxed), 0);
    let topic = format!("fleet/v1/d/{id}/telemetry");
    let ran = run(
        "mosquitto_pub",
        &with(
            connection(&t, &id, &id, &token),
            &["-t", &topic, "-m", r#"{"t": 21.5}"#, "-q", "1"],
        ),
    )
    .await;
    assert_eq!(ran.code, Some(0), "{ran:?}");
    // At QoS 1 mosquitto_pub exits after the PUBACK, which follows the count.
    assert_eq!(stats.telemetry.load(Ordering::Relaxed), 1);
    assert_eq!(stats.connects_device.load(Ordering::Relaxed), 1);
    let status_topic = format!("fleet/v1/d/{id}/status");
    let status = r#"{"battery": 0.93, "firmware": "1.0.0", "uptime_s": 3600, "rssi_dbm": -67}"#;
    let ran = run(
        "mosquitto_pub",
        &with(
            connection(&t, &id, &id, &token),
            &["-t", &status_topic, "-m", status, "-q", "1"],
        ),
    )
    .await;
    assert_eq!(ran.code, Some(0), "{ran:?}");
    assert_eq!(stats.status.load(Ordering::Relaxed), 1);
    assert_eq!(stats.bad_payloads.load(Ordering::Relaxed), 0);
    t.stop().await;
}

#[tokio::test]
async fn mosquitto_sub_as_the_device_gets_the_desired_config_retained_then_live() {
    desired_config_retained_then_live("mqttv311", "SN-M3").await;
}

/// The same over MQTT 5: the gateway speaks both, per connection.
#[tokio::test]
async fn mosquitto_sub_over_mqtt5_gets_the_desired_config_retained_then_live() {
    desired_config_retained_then_live("mqttv5", "SN-M5").await;
}

async fn desired_config_retained_then_live(version: &str, serial: &str) {
    let t = TestBackend::start().await;
    let (id, token) = provisioned(&t, serial).await;
    let (status, reply) = t
        .http(
            "PUT",
            "/api/v1/groups/sensors/config",
            Some(r#"{"desired": {"mode": "eco"}}"#),
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    let first: Value = serde_json::from_str(&reply).expect("JSON");
    assert_eq!(first["pushed"], 0, "the device is not connected yet: {reply}");
    let topic = format!("fleet/v1/d/{id}/config/desired");
    let wait = CLIENT_WAIT_S.to_string();
    let mut sub = start(
        "mosquitto_sub",
        &with(
            connection_as(version, &t, &id, &id, &token),
            // Two messages, each printed as `RETAIN-FLAG TOPIC PAYLOAD`.
            &["-t", &topic, "-q", "1", "-C", "2", "-W", &wait, "-F", "%r %t %p"],
        ),
    );
    // Read lines as they come: the second message depends on what the first one shows.
    let stdout = sub.child.stdout.take().expect("piped stdout");
    let (tx, mut lines) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let expect = |line: String, retain: &str, version: &Value, mode: &str| {
        let mut parts = line.splitn(3, ' ');
        assert_eq!(parts.next(), Some(retain), "{line}");
        assert_eq!(parts.next(), Some(topic.as_str()), "{line}");
        let body: Value = serde_json::from_str(parts.next().unwrap_or_default()).expect("JSON payload");
        assert_eq!(body, json!({ "version": version, "desired": { "mode": mode } }));
    };
    // On subscribe: the config set while the device was away, flagged retained.
    expect(next_line(&mut lines).await, "1", &first["version"], "eco");
    let (status, reply) = t
        .http(
            "PUT",
            "/api/v1/groups/sensors/config",
            Some(r#"{"desired": {"mode": "turbo"}}"#),
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    let second: Value = serde_json::from_str(&reply).expect("JSON");
    assert_eq!(second["pushed"], 1, "{reply}");
    // While subscribed: the update, not flagged retained (MQTT-3.3.1-9).
    expect(next_line(&mut lines).await, "0", &second["version"], "turbo");
    let ran = finish(sub).await;
    assert_eq!(ran.code, Some(0), "{ran:?}");
    t.stop().await;
}

#[tokio::test]
async fn mosquitto_pub_with_a_wrong_token_is_not_authorized() {
    let t = TestBackend::start().await;
    let (id, _token) = provisioned(&t, "SN-M4").await;
    let stats = t.backend.gateway.stats();
    assert_eq!(stats.connects_refused.load(Ordering::Relaxed), 0);
    let topic = format!("fleet/v1/d/{id}/telemetry");
    let ran = run(
        "mosquitto_pub",
        &with(
            connection(&t, &id, &id, &"0".repeat(64)),
            &["-t", &topic, "-m", "{}", "-q", "1"],
        ),
    )
    .await;
    assert_ne!(ran.code, Some(0), "{ran:?}");
    assert!(ran.stderr.contains("not authorised"), "{ran:?}");
    assert_eq!(stats.connects_refused.load(Ordering::Relaxed), 1);
    assert_eq!(stats.telemetry.load(Ordering::Relaxed), 0);
    t.stop().await;
}

/// `mosquitto_pub -V mqttv5`, an MQTT 5 client on libmosquitto, as the provisioned device: its
/// telemetry (with a user property, which the gateway reads past) is counted and acknowledged;
/// with a wrong token it is refused with reason 0x87, not authorized.
#[tokio::test]
async fn mosquitto_pub_over_mqtt5_sends_telemetry_and_is_refused_a_wrong_token() {
    let t = TestBackend::start().await;
    let (id, token) = provisioned(&t, "SN-M6").await;
    let stats = t.backend.gateway.stats();
    let topic = format!("fleet/v1/d/{id}/telemetry");
    let ran = run(
        "mosquitto_pub",
        &with(
            connection_as("mqttv5", &t, &id, &id, &token),
            &[
                "-t",
                &topic,
                "-m",
                r#"{"t": 21.5}"#,
                "-q",
                "1",
                "-D",
                "publish",
                "user-property",
                "site",
                "lab-3",
            ],
        ),
    )
    .await;
    assert_eq!(ran.code, Some(0), "{ran:?}");
    assert_eq!(stats.telemetry.load(Ordering::Relaxed), 1);
    assert_eq!(stats.bad_payloads.load(Ordering::Relaxed), 0);
    assert_eq!(stats.connects_mqtt5.load(Ordering::Relaxed), 1);
    let ran = run(
        "mosquitto_pub",
        &with(
            connection_as("mqttv5", &t, &id, &id, &"0".repeat(64)),
            &["-t", &topic, "-m", "{}", "-q", "1", "-d"],
        ),
    )
    .await;
    assert_ne!(ran.code, Some(0), "{ran:?}");
    assert!(ran.stdout.contains("received CONNACK (135)"), "{ran:?}");
    assert_eq!(stats.connects_refused.load(Ordering::Relaxed), 1);
    assert_eq!(stats.telemetry.load(Ordering::Relaxed), 1);
    t.stop().await;
}

/// Commands as MQTT 5's request and response: `mosquitto_sub -V mqttv5` as the device hears a
/// command with its response topic (`.../cmd/ID/result`) and its id as correlation data, and
/// `mosquitto_pub -V mqttv5` answering on that response topic completes the command.
#[tokio::test]
async fn an_mqtt5_device_is_sent_commands_as_requests_and_answers_on_the_response_topic() {
    let t = TestBackend::start().await;
    let (id, token) = provisioned(&t, "SN-M7").await;
    let wait = CLIENT_WAIT_S.to_string();
    let sub = start(
        "mosquitto_sub",
        &with(
            connection_as("mqttv5", &t, &id, &id, &token),
            &[
                "-t",
                &format!("fleet/v1/d/{id}/cmd/+"),
                "-q",
                "1",
                "-C",
                "1",
                "-W",
                &wait,
                "-F",
                "%t|%R|%D",
            ],
        ),
    );
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while t.backend.gateway.stats().connects_mqtt5.load(Ordering::Relaxed) < 1 {
        assert!(tokio::time::Instant::now() < deadline, "mosquitto_sub never connected");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // CONNACK precedes SUBSCRIBE by a round trip; the gateway exposes no subscription count.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, reply) = t
        .http(
            "POST",
            &format!("/api/v1/devices/{id}/commands"),
            Some(r#"{"command": "reboot"}"#),
        )
        .await;
    assert_eq!(status, 202, "{reply}");
    let command: Value = serde_json::from_str(&reply).expect("JSON");
    let cmd_id = command["command"]["id"].as_str().expect("command id").to_owned();
    let ran = finish(sub).await;
    assert_eq!(ran.code, Some(0), "{ran:?}");
    let heard = ran.stdout.trim();
    let response_topic = format!("fleet/v1/d/{id}/cmd/{cmd_id}/result");
    assert_eq!(heard, format!("fleet/v1/d/{id}/cmd/{cmd_id}|{response_topic}|{cmd_id}"));
    let answered = run(
        "mosquitto_pub",
        &with(
            connection_as("mqttv5", &t, &id, &id, &token),
            &[
                "-t",
                &response_topic,
                "-m",
                r#"{"status": "ok", "output": "rebooting"}"#,
                "-q",
                "1",
            ],
        ),
    )
    .await;
    assert_eq!(answered.code, Some(0), "{answered:?}");
    let (status, reply) = t.http("GET", &format!("/api/v1/commands/{cmd_id}"), None).await;
    assert_eq!(status, 200, "{reply}");
    let record: Value = serde_json::from_str(&reply).expect("JSON");
    assert_eq!(record["command"]["state"], "succeeded", "{reply}");
    t.stop().await;
}

/// MQTT 5's session expiry honoured as an interval: `mosquitto_sub -V mqttv5 -c -x 2` as the
/// device subscribes to its commands and leaves. Within its two seconds a command is queued in
/// its session; after them the session is gone and a command has nowhere to go. With an
/// expiry of 0 (`-x 0`) the session ends with the connection.
#[tokio::test]
async fn an_mqtt5_session_outlives_its_connection_by_its_expiry_interval() {
    let t = TestBackend::start().await;
    let (id, token) = provisioned(&t, "SN-M8").await;
    let ran = subscribe_and_leave(&t, &id, &token, "2").await;
    assert_eq!(ran.code, Some(0), "{ran:?}");
    let left = tokio::time::Instant::now();
    assert_eq!(reboot(&t, &id).await, "queued", "kept within its interval");
    tokio::time::sleep_until(left + Duration::from_millis(2_300)).await;
    assert_eq!(reboot(&t, &id).await, "undelivered", "gone after it");

    let ran = subscribe_and_leave(&t, &id, &token, "0").await;
    assert_eq!(ran.code, Some(0), "{ran:?}");
    assert_eq!(
        reboot(&t, &id).await,
        "undelivered",
        "an expiry of 0: the session ended with the connection"
    );
    t.stop().await;
}

/// Sends device `id` a reboot; how the gateway delivered it.
async fn reboot(t: &TestBackend, id: &str) -> String {
    let path = format!("/api/v1/devices/{id}/commands");
    let (status, reply) = t.http("POST", &path, Some(r#"{"command": "reboot"}"#)).await;
    assert_eq!(status, 202, "{reply}");
    let body: Value = serde_json::from_str(&reply).expect("JSON");
    body["delivery"].as_str().expect("delivery").to_owned()
}

/// `mosquitto_sub -V mqttv5 -c` as device `id` subscribes to its commands and leaves, with
/// the session expiry interval `expiry` (`-x`); returns once the gateway has let it go.
async fn subscribe_and_leave(t: &TestBackend, id: &str, token: &str, expiry: &str) -> Ran {
    let filter = format!("fleet/v1/d/{id}/cmd/+");
    let more = ["-c", "-E", "-q", "1", "-t", filter.as_str(), "-x", expiry];
    let ran = run("mosquitto_sub", &with(connection_as("mqttv5", t, id, id, token), &more)).await;
    // The client has gone; the gateway stores the session once its connection ends.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while t.backend.gateway.sessions().is_live(id) {
        assert!(tokio::time::Instant::now() < deadline, "the connection never ended");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    ran
}

/// Desired config as a retained message with a message expiry (MQTT 5): set with `expiry_s`,
/// it reaches `mosquitto_sub -V mqttv5` on subscribe flagged retained, with what is left of
/// its interval; once the interval has passed, a device that subscribes gets nothing, over 5
/// or 3.1.1, as from a broker whose retained message expired. An expiry out of range is 400.
#[tokio::test]
async fn a_desired_config_with_an_expiry_is_retained_until_it_expires() {
    let t = TestBackend::start().await;
    let (id, token) = provisioned(&t, "SN-M9").await;
    let (status, reply) = t
        .http(
            "PUT",
            "/api/v1/groups/sensors/config",
            Some(r#"{"desired": {"mode": "eco"}, "expiry_s": 3}"#),
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    let set = tokio::time::Instant::now();
    let version = serde_json::from_str::<Value>(&reply).expect("JSON")["version"].clone();
    let topic = format!("fleet/v1/d/{id}/config/desired");
    let wait = CLIENT_WAIT_S.to_string();
    let ran = run(
        "mosquitto_sub",
        &with(
            connection_as("mqttv5", &t, &id, &id, &token),
            &["-t", &topic, "-q", "1", "-C", "1", "-W", &wait, "-F", "%r|%E|%p"],
        ),
    )
    .await;
    assert_eq!(ran.code, Some(0), "{ran:?}");
    let line = ran.stdout.trim().to_owned();
    let parts: Vec<&str> = line.splitn(3, '|').collect();
    assert_eq!(parts.first(), Some(&"1"), "retained: {line}");
    let left: u32 = parts.get(1).and_then(|s| s.parse().ok()).expect("an expiry interval");
    assert!((1..=3).contains(&left), "what is left of 3 s: {line}");
    let body: Value = serde_json::from_str(parts.get(2).copied().unwrap_or_default()).expect("JSON payload");
    assert_eq!(body, json!({ "version": version, "desired": { "mode": "eco" } }));

    tokio::time::sleep_until(set + Duration::from_millis(3_300)).await;
    for protocol in ["mqttv5", "mqttv311"] {
        let ran = run(
            "mosquitto_sub",
            &with(
                connection_as(protocol, &t, &id, &id, &token),
                &["-t", &topic, "-q", "1", "-C", "1", "-W", "1"],
            ),
        )
        .await;
        assert!(
            ran.stdout.trim().is_empty(),
            "{protocol}: expired, not delivered: {ran:?}"
        );
    }
    let (_, metrics) = t.http("GET", "/metrics", None).await;
    assert!(
        metrics
            .lines()
            .any(|l| l == "fleetsim_gateway_messages_expired_total 2"),
        "{metrics}"
    );
    let (status, reply) = t
        .http(
            "PUT",
            "/api/v1/groups/sensors/config",
            Some(r#"{"desired": {"mode": "eco"}, "expiry_s": 0}"#),
        )
        .await;
    assert_eq!(status, 400, "{reply}");
    assert!(reply.contains("expiry_s must be 1 to"), "{reply}");
    t.stop().await;
}
