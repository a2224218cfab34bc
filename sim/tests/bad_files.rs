//! Every bad file under tests/fixtures gets exactly one error naming file, line, column, key
//! and what was expected. The messages are asserted in full: a change of wording or position is
//! a change users see, and should show up here.

use std::path::{Path, PathBuf};

use fleetsim::dialect::Registry;
use fleetsim::scenario::{self, LoadError};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Parses fixture `name` (a path under tests/fixtures) the way `fleetsim validate` does, with
/// the file named relative to the fixtures folder so messages are stable on every machine.
fn error_of(name: &str) -> String {
    let text = std::fs::read_to_string(fixtures().join(name)).expect("fixture exists");
    let display = Path::new(name);
    let result = if name.starts_with("bad-models/") {
        scenario::parse_model(display, &text).map(|_| ())
    } else {
        let models_dir = fixtures().join("device-models");
        let models = scenario::load_models(&models_dir).expect("fixture models load");
        scenario::parse_scenario(display, &text, models_dir, &models, &Registry).map(|_| ())
    };
    match result {
        Ok(()) => panic!("{name} should be rejected"),
        Err(e) => e.to_string(),
    }
}

macro_rules! bad_file {
    ($test:ident, $file:expr, $message:expr) => {
        #[test]
        fn $test() {
            assert_eq!(error_of($file), $message);
        }
    };
}

bad_file!(
    alert_rule_kind,
    "bad/alert-rule-kind.toml",
    "bad/alert-rule-kind.toml:17:8: phase[0].rule: expected one of \"battery_below\", \"offline_for\", \"error_codes\", \"sensor_stuck\", found \"battery_low\""
);

bad_file!(
    alert_rule_level,
    "bad/alert-rule-level.toml",
    "bad/alert-rule-level.toml:19:9: phase[0].below: expected above 0% and at most 100%, found 120%"
);

bad_file!(
    gate_a_broker_cannot_give,
    "bad/gate-ungiven-broker.toml",
    "bad/gate-ungiven-broker.toml:17:18: gates.\"devices.lost\": gate \"devices.lost\" cannot be judged against a backend of kind \"mqtt\": a broker does not say which devices it holds as active; remove the gate, or gate on a figure this backend gives (docs/metrics.md)"
);

bad_file!(
    gate_an_lwm2m_server_cannot_give,
    "bad/gate-ungiven-lwm2m-server.toml",
    "bad/gate-ungiven-lwm2m-server.toml:17:27: gates.\"provision.latency.p99\": gate \"provision.latency.p99\" cannot be judged against a backend of kind \"lwm2m\": devices register with an LwM2M server under their endpoint name, with nothing to provision first (bootstrap = true times the bootstrap as provisioning); remove the gate, or gate on a figure this backend gives (docs/metrics.md)"
);

bad_file!(
    gate_the_reference_backend_cannot_give,
    "bad/gate-ungiven-reference.toml",
    "bad/gate-ungiven-reference.toml:12:22: gates.\"poll.latency.p99\": gate \"poll.latency.p99\" cannot be judged against a backend of kind \"embedded\": polls and deployment feedback are hawkBit's DDI: the reference backend's devices hold a connection and are sent their jobs; remove the gate, or gate on a figure this backend gives (docs/metrics.md)"
);

bad_file!(
    bad_duration,
    "bad/bad-duration.toml",
    "bad/bad-duration.toml:8:20: fleet.arrival.ramp: expected a duration like \"30s\", \"250ms\", \"5m\", \"6h\" or \"3d\", found \"thirty\""
);

bad_file!(
    bad_size,
    "bad/bad-size.toml",
    "bad/bad-size.toml:18:40: phase[0].firmware.size: expected a size like \"512KiB\", \"2MB\" or \"64B\", found \"512 kilobytes\""
);

bad_file!(
    gate_wrong_unit,
    "bad/gate-wrong-unit.toml",
    "bad/gate-wrong-unit.toml:28:27: gates.\"provision.latency.p99\": expected a comparison like \"<= 250ms\" (provision.latency.p99 takes a duration like \"250ms\"), found \"<= 5%\""
);

bad_file!(
    histogram_without_stat,
    "bad/histogram-without-stat.toml",
    "bad/histogram-without-stat.toml:28:23: gates.\"provision.latency\": provision.latency is a histogram; name a statistic, e.g. provision.latency.p99 (one of p50, p90, p99, p99.9, p99.99, min, max, mean, count)"
);

bad_file!(
    foreign_key,
    "bad/foreign-key.toml",
    "bad/foreign-key.toml:10:10: backend.tenant: only a backend of kind \"hawkbit\" takes this key"
);
bad_file!(
    kind_not_run,
    "bad/kind-not-run.toml",
    "bad/kind-not-run.toml:8:8: backend.kind: backend kind \"thingsboard\" does not run yet; expected one of \"embedded\", \"mqtt\", \"hawkbit\", \"lwm2m\""
);
bad_file!(
    missing_action,
    "bad/missing-action.toml",
    "bad/missing-action.toml:21:1: phase[1]: missing key \"action\"; expected one of \"config\", \"command\", \"ota\", \"outage\", \"decommission\", \"rotate\", \"alert\", \"fault\""
);

bad_file!(
    missing_seed,
    "bad/missing-seed.toml",
    "bad/missing-seed.toml:1:1: scenario: missing key \"seed\""
);

bad_file!(
    ota_without_ota,
    "bad/ota-without-ota.toml",
    "bad/ota-without-ota.toml:17:9: phase[0].group: model \"meter\" in this target has no [ota] section, so it cannot take a campaign"
);

bad_file!(
    outage_past_run,
    "bad/outage-past-run.toml",
    "bad/outage-past-run.toml:25:12: phase[1].duration: the outage would end at 4m, after the run ends at 3m"
);

bad_file!(
    phase_after_run,
    "bad/phase-after-run.toml",
    "bad/phase-after-run.toml:22:6: phase[1].at: expected a time before the end of the run (3m), found \"5m\""
);

bad_file!(
    phase_unknown_key,
    "bad/phase-unknown-key.toml",
    "bad/phase-unknown-key.toml:25:1: phase[1].firmware: unknown key; expected one of at, group, share, duration"
);

bad_file!(
    protocol_mismatch,
    "bad/protocol-mismatch.toml",
    "bad/protocol-mismatch.toml:11:13: fleet.mix[1].model: model \"probe\" speaks coap, but backend kind \"embedded\" takes mqtt devices"
);

bad_file!(
    ramp_and_rate,
    "bad/ramp-and-rate.toml",
    "bad/ramp-and-rate.toml:8:11: fleet.arrival: expected exactly one of ramp or rate, like { ramp = \"30s\" } or { rate = \"500/s\" }"
);

bad_file!(
    ramp_past_run,
    "bad/ramp-past-run.toml",
    "bad/ramp-past-run.toml:8:20: fleet.arrival.ramp: devices would still be arriving at the end of the run: arrivals take 5m, the run lasts 3m"
);

bad_file!(
    seed_as_string,
    "bad/seed-as-string.toml",
    "bad/seed-as-string.toml:3:8: scenario.seed: expected a whole number, found \"one\""
);

bad_file!(
    share_not_percent,
    "bad/share-not-percent.toml",
    "bad/share-not-percent.toml:24:9: phase[1].share: expected a percentage like \"2%\" or \"0.01%\", found 0.3"
);

bad_file!(
    shares_sum,
    "bad/shares-sum.toml",
    "bad/shares-sum.toml:9:7: fleet.mix: shares sum to 0.9; they must sum to 1"
);

bad_file!(
    syntax_error,
    "bad/syntax-error.toml",
    "bad/syntax-error.toml:2:16: invalid TOML: invalid basic string, expected `\"`"
);

bad_file!(
    topic_wildcard,
    "bad/topic-wildcard.toml",
    "bad/topic-wildcard.toml:9:19: backend.telemetry_topic: expected a topic like \"devices/{serial}/telemetry\" (no wildcards or empty levels; placeholders {serial}, {index}, {model}, {group}), found \"plant/+/{serial}\""
);

bad_file!(
    unknown_action,
    "bad/unknown-action.toml",
    "bad/unknown-action.toml:23:10: phase[1].action: expected one of \"config\", \"command\", \"ota\", \"outage\", \"decommission\", \"rotate\", \"alert\", \"fault\", found \"blackout\""
);

bad_file!(
    unknown_group,
    "bad/unknown-group.toml",
    "bad/unknown-group.toml:17:9: phase[0].group: no group \"sensor\" in fleet.mix; groups: meters, sensors"
);

bad_file!(
    unknown_key,
    "bad/unknown-key.toml",
    "bad/unknown-key.toml:7:1: fleet.devcies: unknown key; expected one of devices, arrival, source_addrs, mix, on_worker_loss"
);

bad_file!(
    unknown_metric,
    "bad/unknown-metric.toml",
    "bad/unknown-metric.toml:29:21: gates.\"provision.speed\": unknown metric; expected one of provision.latency, provision.rate, connect.latency, publish.latency, command.latency, config.latency, read.latency, ota.duration, ota.exposed, ota.halt.latency, ota.rollback.success, reconnect.recovery, devices.lost, poll.latency, feedback.latency, ota.take.latency, tls.handshake.latency, tls.handshakes.full, tls.handshakes.resumed, rotate.latency, certs.issued, certs.rotated, certs.renewed, certs.revoked, revoked.tried, revoked.refused, revoked.refused_share, register.latency, bootstrap.latency, update.latency, deregister.latency, coap.retransmissions, lwm2m.registrations, lwm2m.bootstraps, lwm2m.updates, lwm2m.deregistrations, lwm2m.reads, lwm2m.writes, lwm2m.executes, lwm2m.observes, lwm2m.notifications, lwm2m.refused, alert.latency, alerts.expected, alerts.raised, alerts.missed, alerts.unexpected, devices.<state>, errors.<kind>"
);

bad_file!(
    unknown_model,
    "bad/unknown-model.toml",
    "bad/unknown-model.toml:11:13: fleet.mix[1].model: no device model \"metre\"; known models: meter, probe, renewer, sensor"
);

bad_file!(
    waves_shrink,
    "bad/waves-shrink.toml",
    "bad/waves-shrink.toml:19:35: phase[0].rollout.waves[2]: expected waves to grow, each above the one before and at most 100%, found 10%"
);

bad_file!(
    worker_loss,
    "bad/worker-loss.toml",
    "bad/worker-loss.toml:9:18: fleet.on_worker_loss: expected \"continue\" or \"stop\", found \"halt\""
);

bad_file!(
    model_backoff,
    "bad-models/backoff.toml",
    "bad-models/backoff.toml:12:37: link.reconnect.max: expected a duration at least as long as initial (1s), found \"500ms\""
);

bad_file!(
    model_name_mismatch,
    "bad-models/name-mismatch.toml",
    "bad-models/name-mismatch.toml:1:8: name: \"sensor\" must match the file name \"name-mismatch.toml\": scenarios find models by file name"
);

bad_file!(
    model_payload,
    "bad-models/payload.toml",
    "bad-models/payload.toml:7:17: telemetry.payload_bytes: expected 1 to 262144 bytes, found 0"
);

bad_file!(
    model_probability,
    "bad-models/probability.toml",
    "bad-models/probability.toml:18:13: ota.boot_fail: expected 0% to 100%, found 150%"
);

bad_file!(
    model_unknown_protocol,
    "bad-models/unknown-protocol.toml",
    "bad-models/unknown-protocol.toml:2:12: protocol: expected one of \"mqtt\", \"coap\", \"http\", found \"zigbee\""
);

bad_file!(
    renewal_with_tokens,
    "bad/renewal-with-tokens.toml",
    "bad/renewal-with-tokens.toml:17:13: fleet.mix[1].model: model \"renewer\" renews its certificates (its [certificate]), and these devices are issued none; its devices need the reference backend with credentials = \"certificate\" in [backend.tls]"
);

bad_file!(
    model_renew_at,
    "bad-models/renew-at.toml",
    "bad-models/renew-at.toml:11:12: certificate.renew_at: expected 1% to 95% of the validity (time left to ask again before expiry), found 100%"
);

bad_file!(
    model_duty_cycle_certificate,
    "bad-models/duty-cycle-certificate.toml",
    "bad-models/duty-cycle-certificate.toml:10:1: certificate: a duty-cycled device holds no session to be sent its renewed certificate on; remove [certificate] or set duty_cycle = false"
);

bad_file!(
    model_signal,
    "bad-models/signal.toml",
    "bad-models/signal.toml:13:19: link.signal.mean: expected a signal strength from -140 to -20 (dBm), found -5"
);

bad_file!(
    model_mqtt_version,
    "bad-models/mqtt-version.toml",
    "bad-models/mqtt-version.toml:11:11: mqtt.version: expected 3 (MQTT 3.1.1) or 5, found 4"
);

bad_file!(
    model_mqtt_keep_alive,
    "bad-models/mqtt-keep-alive.toml",
    "bad-models/mqtt-keep-alive.toml:11:14: mqtt.keep_alive: expected whole seconds from \"0s\" (none) to \"18h12m15s\" (MQTT's largest keep-alive), found \"20h\""
);

bad_file!(
    model_mqtt5_assigned_with_session,
    "bad-models/mqtt5-assigned-with-session.toml",
    "bad-models/mqtt5-assigned-with-session.toml:13:22: mqtt.assigned_client_id: a device whose broker assigns its client id cannot resume a session under it: remove session_expiry, or assigned_client_id"
);

bad_file!(
    model_mqtt5_key_on_311,
    "bad-models/mqtt5-key-on-311.toml",
    "bad-models/mqtt5-key-on-311.toml:11:15: mqtt.topic_alias: an MQTT 5 property: set version = 5, or remove it"
);

bad_file!(
    model_lwm2m_on_mqtt,
    "bad-models/lwm2m-on-mqtt.toml",
    "bad-models/lwm2m-on-mqtt.toml:10:1: lwm2m: [lwm2m] is for devices that speak coap; this model speaks mqtt"
);

bad_file!(
    model_lwm2m_lifetime,
    "bad-models/lwm2m-lifetime.toml",
    "bad-models/lwm2m-lifetime.toml:13:12: lwm2m.lifetime: expected at least twice the longest gap between two reports (2h12m), found \"2h\": a duty-cycled device updates its registration when it wakes to report"
);

#[test]
fn the_good_fixture_is_valid() {
    let models_dir = fixtures().join("device-models");
    let models = scenario::load_models(&models_dir).expect("fixture models load");
    let text = std::fs::read_to_string(fixtures().join("good.toml")).expect("fixture exists");
    let loaded = scenario::parse_scenario(Path::new("good.toml"), &text, models_dir, &models, &Registry);
    assert!(loaded.is_ok(), "{:?}", loaded.err());
}

#[test]
fn every_bad_fixture_has_a_test() {
    let source = include_str!("bad_files.rs");
    for dir in ["bad", "bad-models"] {
        for entry in std::fs::read_dir(fixtures().join(dir)).expect("fixture folder") {
            let name = entry.expect("entry").file_name().to_string_lossy().into_owned();
            let quoted = format!("\"{dir}/{name}\"");
            assert!(source.contains(&quoted), "{dir}/{name} has no bad_file! test");
        }
    }
}

#[test]
fn a_missing_models_folder_names_the_folder_and_the_fix() {
    let err = scenario::load_scenario(
        &fixtures().join("good.toml"),
        Some(Path::new("/nonexistent/models")),
        &Registry,
    )
    .expect_err("no such folder");
    assert!(matches!(err, LoadError::ModelsDir { .. }));
    let text = err.to_string();
    assert!(
        text.starts_with("/nonexistent/models: cannot list device models:"),
        "{text}"
    );
    assert!(text.ends_with("pass --models DIR or set scenario.models"), "{text}");
}

bad_file!(
    mqtts_without_tls,
    "bad/mqtts-without-tls.toml",
    "bad/mqtts-without-tls.toml:8:7: backend.url: an mqtts:// url needs [backend.tls] with `ca`, the CA the broker's certificate chains to"
);

bad_file!(
    tls_missing_ca,
    "bad/tls-missing-ca.toml",
    "bad/tls-missing-ca.toml:11:6: backend.tls.ca: expected a PEM file of the server's CA certificates, found no file at bad/certs/ca.pem"
);

bad_file!(
    tls_bad_day,
    "bad/tls-bad-day.toml",
    "bad/tls-bad-day.toml:12:25: backend.tls.device_cert_not_after: expected a day as YYYY-MM-DD, found \"2021-02-30\""
);

bad_file!(
    tls_unknown_version,
    "bad/tls-unknown-version.toml",
    "bad/tls-unknown-version.toml:12:20: backend.tls.versions[1]: expected \"1.2\" or \"1.3\", found \"1.1\""
);

bad_file!(
    zero_connect_timeout,
    "bad-models/zero-connect-timeout.toml",
    "bad-models/zero-connect-timeout.toml:12:19: link.connect_timeout: expected a duration from 1ms to 10m, found \"0s\""
);

bad_file!(
    fault_spell,
    "bad-models/fault-spell.toml",
    "bad-models/fault-spell.toml:11:26: faults.stuck_sensor.every: expected longer than lasts (2h), found \"1h\": it is the mean time between the fault's starts"
);

bad_file!(
    fault_in_range,
    "bad-models/fault-in-range.toml",
    "bad-models/fault-in-range.toml:12:22: faults.out_of_range_value: expected a number outside the sensor's range 0 to 100, found 42"
);

bad_file!(
    fault_code,
    "bad-models/fault-code.toml",
    "bad-models/fault-code.toml:12:15: faults.error_codes: expected codes from 1 to 65535, found 70000"
);

bad_file!(
    fault_without_duration,
    "bad/fault-without-duration.toml",
    "bad/fault-without-duration.toml:14:1: phase[0].duration: missing: how long the stuck_sensor lasts, e.g. \"5m\""
);

bad_file!(
    fault_kind,
    "bad/fault-kind.toml",
    "bad/fault-kind.toml:18:9: phase[0].fault: expected one of \"stuck_sensor\", \"out_of_range\", \"error_burst\", \"watchdog_reset\", found \"brownout\""
);

bad_file!(
    alert_rule_key,
    "bad/alert-rule-key.toml",
    "bad/alert-rule-key.toml:18:9: phase[0].below: a sensor_stuck rule takes `reports`, not `below`"
);

bad_file!(
    alert_rule_window,
    "bad/alert-rule-window.toml",
    "bad/alert-rule-window.toml:14:1: phase[0].within: missing: how many reports with error codes (at_least) within how long (within), e.g. 3 and \"1m\""
);

bad_file!(
    model_awake_always_on,
    "bad-models/awake-always-on.toml",
    "bad-models/awake-always-on.toml:8:9: telemetry.awake: awake is how long a duty-cycled device stays connected after it reports; set duty_cycle = true or remove awake"
);

bad_file!(
    model_awake_interval,
    "bad-models/awake-interval.toml",
    "bad-models/awake-interval.toml:9:9: telemetry.awake: expected less than the interval (10m), found 10m"
);

bad_file!(
    wake_grid_too_coarse,
    "bad/wake-grid.toml",
    "bad/wake-grid.toml:5:13: scenario.wake_grid: expected a duration from 0s to 100ms, found \"1s\""
);
