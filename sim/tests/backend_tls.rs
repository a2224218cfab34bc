//! The reference backend's TLS listener. `fleetsim backend --mqtts` serves devices over TLS
//! with a server certificate from its own CA (DATA/tls, made on first start): an independent
//! client (`mosquitto_rr`, on libmosquitto and OpenSSL) provisions through it trusting that
//! CA, and is refused when it trusts another; garbage and a cut TLS record at its port are
//! closed and counted; a fleet runs against it over `mqtts://`, with tokens and then with
//! certificates its CA signs from the devices' requests; and a scenario with `[backend.tls]`
//! runs its in-process backend over TLS with no set-up.

use std::path::Path;
use std::process::Command;

#[path = "support/binary.rs"]
mod binary;
#[path = "support/standalone.rs"]
mod standalone;
use binary::{assert_exit, fleetsim, repo, run_passing, scratch};
use standalone::{Standalone, standalone};

/// `mosquitto_rr` provisioning `serial` over TLS, trusting `ca`.
fn provision(backend: &Standalone, ca: &str, serial: &str) -> std::process::Output {
    let (host, port) = backend.mqtts.split_once(':').expect("host:port");
    Command::new("mosquitto_rr")
        .args(["-V", "mqttv311", "-h", host, "-p", port, "--cafile", ca])
        .args(["-i", &format!("rr-{serial}"), "-u", "claim:factory", "-P", "s3cret"])
        .args(["-t", &format!("fleet/v1/provision/{serial}")])
        .args(["-e", &format!("fleet/v1/provision/{serial}/accepted")])
        .args(["-m", r#"{"model": "m"}"#, "-q", "1", "-v", "-W", "10"])
        .output()
        .expect("mosquitto_rr runs (scripts/test installs mosquitto-clients)")
}

fn run(dir: &Path, name: &str, backend: &str) -> serde_json::Value {
    run_passing(
        dir,
        name,
        &format!(
            "[scenario]\nname = \"{name}\"\nseed = 9\nduration = \"4s\"\nmodels = \"{}\"\n{backend}\n\
             [fleet]\ndevices = 10\narrival = {{ ramp = \"500ms\" }}\n\
             mix = [ {{ model = \"smart-meter\", share = 1.0, group = \"meters\" }} ]\n\
             [gates]\n\"errors.total\" = \"== 0\"\n\"devices.online\" = \">= 10\"\n",
            repo().join("device-models").display()
        ),
    )
}

#[test]
fn the_gateway_serves_devices_over_tls_standalone_and_in_process() {
    let dir = scratch("backend-tls");
    std::fs::create_dir_all(&dir).expect("dir");
    let backend = standalone(&dir.join("data"));
    assert!(
        Path::new(&backend.ca).is_file(),
        "the backend made its CA: {}",
        backend.ca
    );

    let provisioned = provision(&backend, &backend.ca, "SN-TLS-1");
    assert!(provisioned.status.success(), "{provisioned:?}");
    let said = String::from_utf8_lossy(&provisioned.stdout);
    assert!(
        said.starts_with("fleet/v1/provision/SN-TLS-1/accepted ") && said.contains("\"device_id\""),
        "{said}"
    );
    let stranger = dir.join("stranger");
    assert_exit(&fleetsim(&[Path::new("ca"), &stranger]), 0);
    let refused = provision(
        &backend,
        &stranger.join("server-ca.pem").display().to_string(),
        "SN-TLS-2",
    );
    assert!(
        !refused.status.success(),
        "a client that trusts another CA is refused: {refused:?}"
    );
    // Garbage, and a TLS record cut short, at the TLS port: each connection is closed and
    // counted, and the gateway goes on serving (the fleets below connect after them).
    let handshake_header = [0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03];
    for bytes in [&b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..], &handshake_header[..]] {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(&backend.mqtts).expect("connect");
        stream.write_all(bytes).expect("write");
        stream.shutdown(std::net::Shutdown::Write).expect("half close");
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .expect("timeout");
        // An alert, or nothing; then the gateway closes.
        let _ = stream.read_to_end(&mut Vec::new());
    }
    // The gateway counts a failed handshake just after it closes the connection: ask until
    // the counts settle.
    let counted = |name: &str| {
        let metrics = Command::new("curl")
            .args(["-sf", &format!("http://{}/metrics", backend.http)])
            .output()
            .expect("curl runs (scripts/test installs it)");
        String::from_utf8_lossy(&metrics.stdout)
            .lines()
            .find_map(|line| line.strip_prefix(&format!("fleetsim_gateway_{name} ")))
            .and_then(|n| n.trim().parse::<u64>().ok())
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while counted("tls_failed_total") != Some(3) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(counted("tls_handshakes_total"), Some(1), "mosquitto_rr's handshake");
    assert_eq!(
        counted("tls_failed_total"),
        Some(3),
        "the refused handshake, the garbage and the cut record are counted"
    );

    // The standalone backend as a scenario names it, with more `[backend.tls]` keys.
    let standalone_backend = |more_tls: &str| {
        format!(
            "[backend]\nkind = \"embedded\"\nurl = \"mqtts://{}\"\napi = \"http://{}\"\n[backend.tls]\nca = \"{}\"\n{more_tls}",
            backend.mqtts, backend.http, backend.ca
        )
    };
    let standalone_run = run(&dir, "standalone", &standalone_backend(""));
    let in_process = run(&dir, "in-process", "[backend]\nkind = \"embedded\"\n[backend.tls]\n");
    for (name, summary) in [("standalone", standalone_run), ("in process", in_process)] {
        let counters = &summary["metrics"]["counters"];
        assert_eq!(counters["provisioned"].as_u64(), Some(10), "{name}: {summary}");
        assert_eq!(counters["connected"].as_u64(), Some(10), "{name}: {summary}");
        // The claim's connection is a full handshake; the device's own resumes its session.
        assert_eq!(counters["tls.handshakes.full"].as_u64(), Some(10), "{name}: {summary}");
        assert_eq!(
            counters["tls.handshakes.resumed"].as_u64(),
            Some(10),
            "{name}: {summary}"
        );
    }
    // The same fleet logging in with certificates the standalone backend's CA signs from its
    // devices' requests.
    let certified = run(
        &dir,
        "standalone-certified",
        &standalone_backend("credentials = \"certificate\"\n"),
    );
    let counters = &certified["metrics"]["counters"];
    assert_eq!(counters["connected"].as_u64(), Some(10), "{certified}");
    assert_eq!(counters["certs.issued"].as_u64(), Some(10), "{certified}");
    assert_eq!(
        counters["tls.handshakes.full"].as_u64(),
        Some(20),
        "the claim's, then the certificate's: {certified}"
    );
    assert_eq!(
        counted("connects_certificate_total"),
        Some(10),
        "the gateway knew each by its certificate"
    );
    drop(backend);
}
