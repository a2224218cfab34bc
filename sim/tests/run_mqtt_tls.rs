//! `fleetsim ca` and `fleetsim run` against Debian's Mosquitto over mutual TLS: the broker
//! presents the server certificate `fleetsim ca` wrote, requires every client's certificate
//! from the fleet CA and takes its common name as the user name. Every device connects with a
//! certificate of its own and the broker sees its serial as its user; after an outage devices
//! resume their own sessions (or, with resumption off, do not), over TLS 1.3 and over 1.2; RSA
//! keys connect as ECDSA ones do. A certificate from another CA,
//! an expired one and a server CA the fleet does not trust are each refused, counted under
//! `errors.tls_*` by reason, and the run still ends cleanly with its report.

use std::path::Path;

#[path = "support/binary.rs"]
mod binary;
#[path = "support/mosquitto.rs"]
mod mosquitto;
use binary::{assert_exit, errors_total, fleetsim, repo, run_headless, scratch, summary};
use mosquitto::Mosquitto;

fn fleetsim_ca(dir: &Path) {
    let made = fleetsim(&[Path::new("ca"), dir]);
    assert_exit(&made, 0);
    let said = String::from_utf8_lossy(&made.stdout);
    assert!(said.contains("require_certificate true"), "{said}");
}

/// Runs a fleet of `devices` against `broker` with `tls` as its `[backend.tls]` and `extra`
/// after it; the summary.
fn run(dir: &Path, name: &str, broker: &Mosquitto, devices: u32, tls: &str, extra: &str) -> serde_json::Value {
    let scenario = dir.join(format!("{name}.toml"));
    std::fs::write(
        &scenario,
        format!(
            r#"
[scenario]
name = "{name}"
seed = 11
duration = "4s"
models = "{models}"

[backend]
kind = "mqtt"
url = "mqtts://{addr}"

[backend.tls]
{tls}

[fleet]
devices = {devices}
arrival = {{ ramp = "500ms" }}
mix = [ {{ model = "smart-meter", share = 1.0, group = "meters" }} ]
{extra}
"#,
            models = repo().join("device-models").display(),
            addr = broker.addr,
        ),
    )
    .expect("scenario");
    let out = dir.join(format!("{name}-report"));
    let finished = run_headless(&scenario, &out);
    assert!(!String::from_utf8_lossy(&finished.stderr).contains("panicked"));
    assert_exit(&finished, 0);
    summary(&out)
}

fn count(summary: &serde_json::Value, counter: &str) -> u64 {
    summary["metrics"]["counters"][counter].as_u64().unwrap_or(0)
}

#[test]
fn devices_connect_with_certificates_of_their_own_and_bad_ones_are_refused_by_reason() {
    let dir = scratch("run-mqtt-tls");
    std::fs::create_dir_all(&dir).expect("dir");
    let (fleet, other) = (dir.join("fleet-ca"), dir.join("other-ca"));
    fleetsim_ca(&fleet);
    fleetsim_ca(&other);
    let broker = Mosquitto::start_tls(&fleet);
    // The broker needs a moment to listen; the first run's ramp gives it that, and its
    // devices retry with backoff.
    std::thread::sleep(std::time::Duration::from_millis(300));

    let devices = 12;
    let outage = "[[phase]]\nat = \"1500ms\"\naction = \"outage\"\nshare = \"100%\"\nduration = \"500ms\"\n";
    let trusted = format!(
        "ca = \"{}\"\nfleet_ca = \"{}\"",
        fleet.join("server-ca.pem").display(),
        fleet.display()
    );
    let good = run(&dir, "good", &broker, devices, &trusted, outage);
    let connects = count(&good, "connected");
    assert_eq!(count(&good, "tls.handshakes.full"), u64::from(devices), "{good}");
    assert!(
        connects > u64::from(devices),
        "devices came back after the outage: {good}"
    );
    assert_eq!(
        count(&good, "tls.handshakes.resumed"),
        connects - u64::from(devices),
        "after the outage each device resumed its own session: {good}"
    );
    assert_eq!(
        good["metrics"]["histograms"]["tls.handshake.latency"]["count"].as_u64(),
        Some(connects)
    );
    assert_eq!(errors_total(&good), 0, "{good}");
    // Mosquitto logs "New client connected from ... as <client id> (..., u'<user name>')":
    // every device's client id is its serial, and its certificate made that its user name.
    let log = broker.log();
    let connected: Vec<&str> = log.lines().filter(|l| l.contains("New client connected")).collect();
    assert_eq!(connected.len() as u64, connects, "{log}");
    for line in connected {
        let client = line
            .split(" as ")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .expect("client id");
        assert!(client.starts_with("SM-"), "{line}");
        assert!(
            line.contains(&format!("u'{client}'")),
            "the broker's user is the serial: {line}"
        );
    }

    let no_resumption = format!("{trusted}\nresumption = \"off\"");
    let full = run(&dir, "full", &broker, devices, &no_resumption, outage);
    assert!(count(&full, "connected") > u64::from(devices), "{full}");
    assert_eq!(count(&full, "tls.handshakes.full"), count(&full, "connected"), "{full}");
    assert_eq!(count(&full, "tls.handshakes.resumed"), 0, "{full}");

    // TLS 1.2 too: its own handshake, and resumption by the session the server gave.
    let tls12 = run(
        &dir,
        "tls12",
        &broker,
        devices,
        &format!("{trusted}\nversions = [\"1.2\"]"),
        outage,
    );
    let connects = count(&tls12, "connected");
    assert!(connects > u64::from(devices), "{tls12}");
    assert_eq!(count(&tls12, "tls.handshakes.full"), u64::from(devices), "{tls12}");
    assert_eq!(
        count(&tls12, "tls.handshakes.resumed"),
        connects - u64::from(devices),
        "{tls12}"
    );

    // RSA-2048 device keys: generated at each device's first connect, accepted the same.
    // Then all three leave, each saying DISCONNECT over TLS before its socket closes, which
    // Mosquitto logs as "Client <id> disconnected." (a close without it: "closed its
    // connection").
    let goodbyes = || broker.log().lines().filter(|l| l.ends_with(" disconnected.")).count();
    let before = goodbyes();
    let rsa = run(
        &dir,
        "rsa",
        &broker,
        3,
        &format!("{trusted}\ndevice_key = \"rsa-2048\""),
        "[[phase]]\nat = \"2s\"\naction = \"decommission\"\nshare = \"100%\"\n",
    );
    assert_eq!(count(&rsa, "connected"), 3, "{rsa}");
    assert_eq!(count(&rsa, "tls.handshakes.full"), 3, "{rsa}");
    assert_eq!(goodbyes() - before, 3, "each device said goodbye: {}", broker.log());

    let refusals = [
        (
            "stranger",
            format!(
                "ca = \"{}\"\nfleet_ca = \"{}\"",
                fleet.join("server-ca.pem").display(),
                other.display()
            ),
            "errors.tls_unknown_ca",
        ),
        (
            "expired",
            format!("{trusted}\ndevice_cert_not_after = \"2020-01-01\""),
            "errors.tls_expired",
        ),
        (
            "untrusted",
            format!(
                "ca = \"{}\"\nfleet_ca = \"{}\"",
                other.join("server-ca.pem").display(),
                fleet.display()
            ),
            "errors.tls_server_untrusted",
        ),
    ];
    for (name, tls, reason) in refusals {
        let summary = run(&dir, name, &broker, 3, &tls, "");
        assert_eq!(count(&summary, "connected"), 0, "{name}: {summary}");
        assert!(
            count(&summary, reason) >= 3,
            "{name}: every device refused as {reason}: {summary}"
        );
    }
    drop(broker);
}

#[test]
fn a_ca_file_that_holds_no_certificate_stops_the_run_before_it_starts() {
    let dir = scratch("run-mqtt-tls-bad");
    std::fs::create_dir_all(dir.join("certs")).expect("dir");
    std::fs::write(dir.join("certs/ca.pem"), "not a certificate\n").expect("ca.pem");
    std::fs::write(dir.join("certs/ca.key"), "nor a key\n").expect("ca.key");
    let scenario = dir.join("bad.toml");
    std::fs::write(
        &scenario,
        format!(
            "[scenario]\nname = \"bad\"\nseed = 1\nduration = \"2s\"\nmodels = \"{}\"\n\
             [backend]\nkind = \"mqtt\"\nurl = \"mqtts://127.0.0.1:9\"\n\
             [backend.tls]\nca = \"certs/ca.pem\"\nfleet_ca = \"certs\"\n\
             [fleet]\ndevices = 1\narrival = {{ ramp = \"1s\" }}\n\
             mix = [ {{ model = \"smart-meter\", share = 1.0, group = \"g\" }} ]\n",
            repo().join("device-models").display()
        ),
    )
    .expect("scenario");
    let out = dir.join("report");
    let finished = run_headless(&scenario, &out);
    assert_exit(&finished, 2);
    let stderr = String::from_utf8_lossy(&finished.stderr);
    assert!(
        stderr.contains("certs/ca.pem: expected the CA certificates the server's chains to, in PEM"),
        "names the file and what it should hold: {stderr}"
    );
}
