//! A server that takes a device's connection and never answers (no CONNACK, no TLS
//! handshake) does not leave the device waiting for the rest of the run: its connect times out
//! after the model's `link.connect_timeout`, counts as `errors.timeout`, and the device backs
//! off and tries again; the run ends on time with its report.

use std::net::TcpListener;
use std::path::Path;
use std::time::Duration;

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
    std::fs::create_dir_all(dir.join("models")).expect("dir");
    std::fs::write(
        dir.join("models/patient.toml"),
        "name = \"patient\"\nprotocol = \"mqtt\"\nfirmware = \"1.0\"\n\
         [telemetry]\ninterval = \"1s\"\npayload_bytes = 16\n\
         [link]\nmean_online = \"30d\"\nmean_offline = \"1s\"\nconnect_timeout = \"400ms\"\n\
         reconnect = { initial = \"100ms\", max = \"200ms\", multiplier = 2.0 }\n",
    )
    .expect("model");
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
    let _ = std::fs::remove_dir_all(&dir);
}
