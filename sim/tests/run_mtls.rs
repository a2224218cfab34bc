//! A fleet with real identities against the reference backend run in process, over mutual
//! TLS with no set-up: every device provisions by CSR and logs in with its certificate, the
//! operator rotates half the fleet mid-run (each rotated device connects on its new
//! certificate, timed by `rotate.latency`), then decommissions a share, whose certificates
//! the backend must refuse every time they try again (`revoked.refused_share`). The shipped
//! `scenarios/mtls-rotation.toml` is the same story at ten times the size.

#[path = "support/binary.rs"]
mod binary;
use binary::{counter, repo, run_passing, scratch};

/// Runs `devices` smart meters in process with `credentials = "certificate"` and `tls` more
/// `[backend.tls]` keys, for `duration`, with `phases`; gated on no errors. The summary.
fn run(name: &str, devices: u32, duration: &str, tls: &str, phases: &str) -> (binary::Scratch, serde_json::Value) {
    let dir = scratch(name);
    std::fs::create_dir_all(&dir).expect("dir");
    let summary = run_passing(
        &dir,
        "mtls",
        &format!(
            r#"[scenario]
name = "mtls"
seed = 16
duration = "{duration}"
time_scale = 60
models = "{}"

[backend]
kind = "embedded"

[backend.tls]
credentials = "certificate"
{tls}

[fleet]
devices = {devices}
arrival = {{ ramp = "3s" }}
mix = [ {{ model = "smart-meter", share = 1.0, group = "meters" }} ]

{phases}

[gates]
"errors.total" = "== 0"
"#,
            repo().join("device-models").display()
        ),
    );
    (dir, summary)
}

#[test]
fn devices_provision_by_csr_rotate_and_stay_out_once_revoked() {
    let phases = r#"[[phase]]
at = "7s"
action = "rotate"
share = "50%"
grace = "2s"

[[phase]]
at = "13s"
action = "decommission"
share = "10%""#;
    let (_scratch, summary) = run("run-mtls", 100, "20s", "", phases);
    let metrics = &summary["metrics"];
    let count = |name: &str| counter(&summary, name);
    assert_eq!(count("provisioned"), 100, "{metrics}");
    assert_eq!(
        count("certs.rotated"),
        50,
        "half the fleet connected on its rotated certificate: {metrics}"
    );
    assert_eq!(
        count("certs.issued"),
        150,
        "one certificate each at provisioning, one more each rotated: {metrics}"
    );
    assert_eq!(
        count("certs.revoked"),
        50,
        "each rotated device's old certificate: {metrics}"
    );
    assert_eq!(
        metrics["histograms"]["rotate.latency"]["count"].as_u64(),
        Some(50),
        "{metrics}"
    );
    assert!(
        metrics["histograms"]["rotate.latency"]["p99_ms"].as_f64() > Some(0.0),
        "{metrics}"
    );
    // Every decommissioned device tried once more (the backend closed its connection), and
    // each was refused.
    assert_eq!(count("revoked.tried"), 10, "{metrics}");
    assert_eq!(count("revoked.refused"), 10, "{metrics}");
    assert_eq!(metrics["revoked.refused_share"].as_f64(), Some(1.0), "{metrics}");
    assert!(
        count("tls.handshakes.full") >= 100 + 100 + 50,
        "a claim connection and a device connection each, and one more on each rotated certificate: {metrics}"
    );
}

#[test]
fn rsa_devices_provision_and_rotate_with_keys_they_keep_until_issued() {
    // RSA keys cannot be derived: each request's key is generated and held until its
    // certificate comes.
    let phases = r#"[[phase]]
at = "5s"
action = "rotate"
grace = "1s""#;
    let (_scratch, summary) = run("run-mtls-rsa", 4, "9s", "device_key = \"rsa-2048\"", phases);
    let metrics = &summary["metrics"];
    let count = |name: &str| counter(&summary, name);
    assert_eq!(count("provisioned"), 4, "{metrics}");
    assert_eq!(count("certs.issued"), 8, "{metrics}");
    assert_eq!(count("certs.rotated"), 4, "{metrics}");
}
