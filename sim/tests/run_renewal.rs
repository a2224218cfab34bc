//! Certificates with a short life that renew themselves: a fleet whose model asks for
//! certificates valid one simulated hour (one real minute at `time_scale = 60`) and renews at
//! 10% of their life runs against a standalone reference backend over mutual TLS. Each device
//! renews twice in the run, logging in on each new certificate, and the backend's registry
//! shows what it was asked for: each certificate valid one real minute, issued about six
//! seconds after the one before, none revoked (a renewal leaves the old certificate to expire).

use serde_json::Value;

#[path = "support/binary.rs"]
mod binary;
#[path = "support/standalone.rs"]
mod standalone;
use binary::{counter, run_passing, scratch};
use standalone::{get, standalone};

#[test]
fn short_lived_certificates_renew_themselves_before_they_expire() {
    let dir = scratch("run-renewal");
    std::fs::create_dir_all(dir.join("models")).expect("dir");
    let backend = standalone(&dir.join("data"));
    std::fs::write(
        dir.join("models/short-cert-meter.toml"),
        "name = \"short-cert-meter\"\nprotocol = \"mqtt\"\nfirmware = \"1.0.0\"\n\
         [telemetry]\ninterval = \"15m\"\npayload_bytes = 64\n\
         [certificate]\nvalidity = \"1h\"\nrenew_at = \"10%\"\n",
    )
    .expect("model");
    let summary = run_passing(
        &dir,
        "renewal",
        &format!(
            "[scenario]\nname = \"renewal\"\nseed = 16\nduration = \"15s\"\ntime_scale = 60\nmodels = \"models\"\n\
             [backend]\nkind = \"embedded\"\nurl = \"mqtts://{}\"\napi = \"http://{}\"\n\
             [backend.tls]\nca = \"{}\"\ncredentials = \"certificate\"\n\
             [fleet]\ndevices = 10\narrival = {{ ramp = \"1s\" }}\n\
             mix = [ {{ model = \"short-cert-meter\", share = 1.0, group = \"meters\" }} ]\n\
             [gates]\n\"errors.total\" = \"== 0\"\n\"devices.lost\" = \"== 0\"\n",
            backend.mqtts, backend.http, backend.ca
        ),
    );
    let counters = &summary["metrics"]["counters"];
    let count = |name: &str| counter(&summary, name);
    // Renewals at 6 s and 12 s after each device's certificate came (arrivals within 1 s);
    // the third would come at 18 s, after the run.
    assert_eq!(count("certs.renewed"), 20, "two renewals each: {counters}");
    assert_eq!(count("certs.issued"), 30, "{counters}");
    assert_eq!(count("certs.revoked"), 0, "a renewal revokes nothing: {counters}");
    assert_eq!(count("certs.rotated"), 0, "{counters}");

    let devices = get(&backend.http, "/api/v1/devices?group=meters&limit=100");
    let devices = devices["devices"].as_array().expect("devices");
    assert_eq!(devices.len(), 10);
    for device in devices {
        let id = device["id"].as_str().expect("id");
        let listed = get(&backend.http, &format!("/api/v1/devices/{id}/certificates"));
        let certs = listed["certificates"].as_array().expect("certificates");
        let reasons: Vec<&str> = certs.iter().filter_map(|c| c["reason"].as_str()).collect();
        assert_eq!(reasons, ["provision", "renew", "renew"], "{id}: {listed}");
        let ms = |cert: &Value, key: &str| cert[key].as_i64().expect("a time in ms");
        for cert in certs {
            assert_eq!(cert["state"], "active", "{id}: {listed}");
            let life = ms(cert, "not_after") - ms(cert, "issued_at");
            assert!(
                (59_000..=61_000).contains(&life),
                "{id}: asked for one simulated hour, a real minute: {life} ms: {listed}"
            );
        }
        for pair in certs.windows(2) {
            let gap = ms(&pair[1], "issued_at") - ms(&pair[0], "issued_at");
            assert!(
                (5_000..=7_500).contains(&gap),
                "{id}: renewed at 10% of a minute's life: {gap} ms apart: {listed}"
            );
        }
    }
    drop(backend);
}
