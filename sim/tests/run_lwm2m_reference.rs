//! `fleetsim run` of LwM2M devices against the reference backend's LwM2M front, with no set-up
//! (`kind = "lwm2m"` and no url): devices provision by claim over CoAP and register; the run's
//! operator pushes config (Writes), reboots (Executes), runs campaigns (object 5) and
//! decommissions through the backend's operator API, as it does MQTT devices; and what the
//! devices measured agrees with what the backend holds. Also as worker processes sharing the backend the parent starts, against a
//! standalone `fleetsim backend --lwm2m`, and what the front cannot do yet is refused before a
//! run.

use std::path::{Path, PathBuf};

use serde_json::Value;

#[path = "support/binary.rs"]
mod binary;
#[path = "support/standalone.rs"]
mod standalone;

use binary::{assert_exit, counter, fleetsim, repo, run_against, scratch, summary};

const DEVICES: u64 = 50;

/// A fleet of `DEVICES` mains-powered LwM2M meters (a report every 15 s at 60x) with the
/// `phases` given; its file in `dir`.
fn scenario(dir: &Path, phases: &str) -> PathBuf {
    scenario_of(dir, &repo().join("device-models"), phases)
}

/// As [`scenario`], the meter's model from the folder `models`.
fn scenario_of(dir: &Path, models: &Path, phases: &str) -> PathBuf {
    std::fs::create_dir_all(dir).expect("dir");
    let file = dir.join("lwm2m-reference.toml");
    let text = format!(
        "[scenario]\nname = \"lwm2m-reference\"\nseed = 5\nduration = \"20s\"\ntime_scale = 60\nmodels = \"{}\"\n\n\
         [backend]\nkind = \"lwm2m\"\n\n\
         [fleet]\ndevices = {DEVICES}\narrival = {{ ramp = \"2s\" }}\n\
         mix = [ {{ model = \"lwm2m-meter\", share = 1.0, group = \"meters\" }} ]\n\n{phases}\n\
         [gates]\n\"devices.lost\" = \"== 0\"\n\"config.latency.p99\" = \"<= 2s\"\n\"errors.total\" = \"== 0\"\n",
        models.display()
    );
    std::fs::write(&file, text).expect("scenario");
    file
}

/// A folder `dir/models` holding `models` (each its name and its text); its path.
fn models_in(dir: &Path, models: &[(&str, &str)]) -> PathBuf {
    let folder = dir.join("models");
    std::fs::create_dir_all(&folder).expect("dir");
    for (name, text) in models {
        std::fs::write(folder.join(format!("{name}.toml")), text).expect("model");
    }
    folder
}

/// The reference meter's model (`device-models/lwm2m-meter.toml`) with `extra` after it.
fn meter_with(extra: &str) -> String {
    let meter = std::fs::read_to_string(repo().join("device-models/lwm2m-meter.toml")).expect("model");
    format!("{meter}\n{extra}")
}

/// A config push, reboots of a fifth of the meters and the decommissioning of a tenth.
const PHASES: &str = "[[phase]]\nat = \"6s\"\naction = \"config\"\ngroup = \"meters\"\nset = { tariff = \"night\" }\n\n\
    [[phase]]\nat = \"9s\"\naction = \"command\"\ngroup = \"meters\"\ncommand = \"reboot\"\nshare = \"20%\"\n\n\
    [[phase]]\nat = \"13s\"\naction = \"decommission\"\nshare = \"10%\"\n";

/// What every run of the scenario must show, merged or not.
fn check(summary: &Value) {
    assert_eq!(
        counter(summary, "provisioned"),
        DEVICES,
        "provisioned by claim over CoAP"
    );
    assert!(counter(summary, "lwm2m.registrations") >= DEVICES);
    assert_eq!(
        counter(summary, "config.reported"),
        DEVICES,
        "every meter applied the config"
    );
    assert_eq!(counter(summary, "commands.answered"), DEVICES / 5, "a fifth rebooted");
    assert_eq!(counter(summary, "decommissioned"), DEVICES / 10, "a tenth retired");
    // Reboots and, for the decommissioned, the registration update trigger.
    assert_eq!(counter(summary, "lwm2m.executes"), DEVICES / 5 + DEVICES / 10);
    // Every meter is observed (its signal and sensor; a mains meter has no battery to read),
    // and a rebooted one again: it registered afresh, its observations gone with the restart.
    assert_eq!(
        counter(summary, "lwm2m.observes"),
        2 * (DEVICES + DEVICES / 5),
        "{}",
        summary["metrics"]["counters"]
    );
    assert_eq!(
        summary["backend"]["devices_active"].as_u64(),
        Some(DEVICES - DEVICES / 10),
        "the backend holds the rest active"
    );
    for latency in [
        "provision.latency",
        "register.latency",
        "config.latency",
        "command.latency",
    ] {
        assert!(
            summary["metrics"]["histograms"][latency]["count"].as_u64() > Some(0),
            "{latency} measured"
        );
    }
}

#[test]
fn lwm2m_devices_are_operated_through_the_reference_backend() {
    let dir = scratch("run-lwm2m-reference");
    let file = scenario(&dir, PHASES);
    let out = dir.join("report");
    assert_exit(&binary::run_headless(&file, &out), 0);
    check(&summary(&out));
}

/// The same fleet registering over DTLS with pre-shared keys (`[backend.psk]`): each meter
/// provisions in the clear, then registers with the backend's DTLS listener under its serial
/// with the key its provisioning answer gave (the run makes the keys' root from the seed, as
/// the backend it starts does), and the config push, the reboots and the decommissioning
/// reach it through its DTLS session.
#[test]
fn lwm2m_devices_register_over_dtls_with_pre_shared_keys() {
    let dir = scratch("run-lwm2m-reference-dtls");
    let file = scenario(&dir, PHASES);
    secured(&file);
    let out = dir.join("report");
    assert_exit(&binary::run_headless(&file, &out), 0);
    let summary = summary(&out);
    check(&summary);
    assert!(
        counter(&summary, "tls.handshakes.full") >= DEVICES,
        "a DTLS handshake at least per meter: {}",
        summary["metrics"]["counters"]
    );
    assert_eq!(counter(&summary, "errors.tls_handshake"), 0);
}

/// The same against a standalone backend serving DTLS with keys from a secret the scenario
/// names through an environment variable (`secret_env`).
#[test]
fn a_standalone_backend_serves_dtls_with_keys_from_a_shared_secret() {
    let dir = scratch("run-lwm2m-reference-dtls-standalone");
    let backend = dtls_backend(&dir, "fleet-secret-7");
    assert!(
        backend.lines[2].starts_with("fleetsim backend: lwm2m over DTLS 127.0.0.1:"),
        "{}",
        backend.lines[2]
    );
    let file = scenario(&dir, PHASES);
    secured(&file);
    rewrite(
        &file,
        "[backend.psk]\n",
        "[backend.psk]\nsecret_env = \"FLEET_PSK_SECRET\"\n",
    );
    let out = dir.join("report");
    let api = format!("http://{}", backend.http);
    let args = [
        "run".as_ref(),
        file.as_os_str(),
        "--backend".as_ref(),
        api.as_ref(),
        "--out".as_ref(),
        out.as_os_str(),
        "--headless".as_ref(),
    ];
    let output = binary::fleetsim_env(&args, &[("FLEET_PSK_SECRET".to_owned(), "fleet-secret-7".to_owned())]);
    drop(backend);
    assert_exit(&output, 0);
    let summary = summary(&out);
    check(&summary);
    assert!(counter(&summary, "tls.handshakes.full") >= DEVICES);
}

/// The same fleet bootstrapping (`bootstrap = true`) against the backend in this process
/// with its DTLS listener (`[backend.psk]`): each meter provisions by claim, asks the front's
/// bootstrap interface where to register, is written the DTLS listener's `coaps://` URI and
/// its key, and registers there; the phases reach it through its DTLS session.
#[test]
fn lwm2m_devices_bootstrap_to_the_server_and_key_they_are_given() {
    let dir = scratch("run-lwm2m-reference-bootstrap");
    let file = scenario(&dir, PHASES);
    secured(&file);
    bootstrapping(&file);
    let out = dir.join("report");
    assert_exit(&binary::run_headless(&file, &out), 0);
    let summary = summary(&out);
    check(&summary);
    assert_bootstrapped(&summary);
    assert!(
        counter(&summary, "tls.handshakes.full") >= DEVICES,
        "registered over DTLS: {}",
        summary["metrics"]["counters"]
    );
}

/// Against a standalone backend whose PSK secret the scenario does not know: bootstrap is
/// how each meter learns its key, and it registers over DTLS with it.
#[test]
fn a_standalone_backend_bootstraps_devices_onto_its_dtls_listener() {
    let dir = scratch("run-lwm2m-reference-bootstrap-standalone");
    let backend = dtls_backend(&dir, "known-only-to-the-backend");
    let file = scenario(&dir, PHASES);
    bootstrapping(&file);
    let out = dir.join("report");
    let output = run_against(&backend.http, &file, &out);
    let metrics = gateway_metrics(&backend.http);
    drop(backend);
    assert_exit(&output, 0);
    let summary = summary(&out);
    check(&summary);
    assert_bootstrapped(&summary);
    assert!(counter(&summary, "tls.handshakes.full") >= DEVICES);
    assert!(
        metrics.contains(&format!("fleetsim_gateway_lwm2m_bootstraps_total {DEVICES}\n"))
            && metrics.contains("fleetsim_gateway_lwm2m_bootstraps_failed_total 0\n"),
        "{metrics}"
    );
}

/// Sets `bootstrap = true` in the scenario in `file`.
fn bootstrapping(file: &Path) {
    rewrite(file, "kind = \"lwm2m\"\n", "kind = \"lwm2m\"\nbootstrap = true\n");
}

/// Replaces `from`, which the scenario in `file` must hold, with `to`.
fn rewrite(file: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(file).expect("scenario");
    assert!(text.contains(from), "{from:?} in {text}");
    std::fs::write(file, text.replace(from, to)).expect("scenario");
}

/// A standalone backend serving LwM2M in the clear and over DTLS, its keys made from
/// `secret`.
fn dtls_backend(dir: &Path, secret: &str) -> standalone::Process {
    standalone::process(
        &dir.join("data"),
        &[
            "--lwm2m",
            "127.0.0.1:0",
            "--lwm2m-dtls",
            "127.0.0.1:0",
            "--lwm2m-psk-secret",
            secret,
        ],
        3,
    )
}

/// Every meter bootstrapped once, timed.
fn assert_bootstrapped(summary: &Value) {
    assert_eq!(
        counter(summary, "lwm2m.bootstraps"),
        DEVICES,
        "{}",
        summary["metrics"]["counters"]
    );
    assert_eq!(
        summary["metrics"]["histograms"]["bootstrap.latency"]["count"].as_u64(),
        Some(DEVICES)
    );
}

/// Adds `[backend.psk]` to the scenario in `file`.
fn secured(file: &Path) {
    rewrite(file, "kind = \"lwm2m\"\n", "kind = \"lwm2m\"\n[backend.psk]\n");
}

/// A `fleetsim backend --lwm2m` of its own, named by its operator API's URL: the run finds
/// where the LwM2M front listens from `/healthz`, and everything adds up as in process.
#[test]
fn a_standalone_backend_is_found_by_its_api() {
    let dir = scratch("run-lwm2m-reference-standalone");
    let backend = standalone::process(&dir.join("data"), &["--lwm2m", "127.0.0.1:0"], 2);
    assert!(
        backend.lines[1].starts_with("fleetsim backend: lwm2m 127.0.0.1:"),
        "{}",
        backend.lines[1]
    );
    let file = scenario(&dir, PHASES);
    let out = dir.join("report");
    let output = run_against(&backend.http, &file, &out);
    drop(backend);
    assert_exit(&output, 0);
    check(&summary(&out));
}

#[test]
fn workers_share_the_backend_the_parent_starts() {
    let dir = scratch("run-lwm2m-reference-workers");
    let file = scenario(&dir, PHASES);
    let out = dir.join("report");
    let output = fleetsim(&[
        "run".as_ref(),
        file.as_os_str(),
        "--workers".as_ref(),
        "2".as_ref(),
        "--out".as_ref(),
        out.as_os_str(),
    ]);
    assert_exit(&output, 0);
    let merged = summary(&out);
    check(&merged);
    let parts: Vec<Value> = (0..2)
        .map(|k| summary(&out.join("workers").join(k.to_string())))
        .collect();
    assert!(
        parts.iter().all(|p| counter(p, "provisioned") > 0),
        "both workers' devices provisioned"
    );
}

#[test]
fn phases_the_front_has_no_form_for_are_refused_before_the_run_starts() {
    let dir = scratch("run-lwm2m-reference-refused");
    // The meter, able to take an update (the phases refused are refused whatever the model).
    let meter = meter_with(
        "[ota]\ndownload_kbps = 256\ninterrupt = \"0%\"\ncorrupt = \"0%\"\nboot_fail = \"0%\"\nbrick = \"0%\"\n",
    );
    let models = models_in(&dir, &[("lwm2m-meter", &meter)]);
    let cases = [
        (
            "[[phase]]\nat = \"5s\"\naction = \"alert\"\nrule = \"offline_for\"\nafter = \"2s\"\n",
            "only when its registration's lifetime runs out",
        ),
        (
            "[[phase]]\nat = \"5s\"\naction = \"rotate\"\nshare = \"50%\"\ngrace = \"1s\"\n",
            "no certificates",
        ),
    ];
    for (phases, why) in cases {
        let file = scenario_of(&dir, &models, phases);
        let output = binary::run_headless(&file, &dir.join("report"));
        assert_exit(&output, 2);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(why), "{why} in {stderr}");
    }
}

/// Campaigns through object 5: the backend writes each targeted meter's Package URI, executes
/// Update once the meter holds the image, and takes the outcome from its notifications, so
/// waves, soak and auto-halt run as for MQTT devices. A good image reaches every meter; a bad
/// one (every boot fails) halts after its first wave; the backend's job states match the
/// devices' own outcomes, job for job. The meters say they pull over CoAP (/5/0/8), so the
/// Package URI is the front's own `coap://.../fw/VERSION`, served block-wise.
#[test]
fn campaigns_update_lwm2m_devices_through_object_5() {
    let (summary, metrics) = campaigns_through_object_5("run-lwm2m-reference-ota", "both");
    assert!(
        counter(&summary, "ota.resumes") > 0,
        "cut downloads resumed from their block"
    );
    assert_eq!(counter(&summary, "errors.protocol"), 0, "every image matched its hash");
    let blocks = gateway_counter(&metrics, "lwm2m_package_blocks_total");
    assert!(
        blocks >= counter(&summary, "ota.jobs") * 64,
        "every job's 64 blocks at least came from the front over CoAP: {blocks}"
    );
}

/// A standalone backend's `/metrics`, as text.
fn gateway_metrics(http: &str) -> String {
    let metrics = std::process::Command::new("curl")
        .args(["-sf", &format!("http://{http}/metrics")])
        .output()
        .expect("curl /metrics");
    String::from_utf8_lossy(&metrics.stdout).into_owned()
}

/// A gateway counter from `/metrics` text.
fn gateway_counter(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&format!("fleetsim_gateway_{name} ")))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{name} in {metrics}"))
}

/// The same campaigns to meters that take only a push (`delivery = "push"`): the front reads
/// their delivery method and writes each image to /5/0/0 block-wise; the outcomes are the
/// same, every byte counted once.
#[test]
fn campaigns_push_packages_to_lwm2m_devices_that_take_only_pushes() {
    let (summary, metrics) = campaigns_through_object_5("run-lwm2m-reference-push", "push");
    assert_eq!(counter(&summary, "ota.resumes"), 0, "nothing pulled");
    assert_eq!(
        gateway_counter(&metrics, "lwm2m_package_blocks_total"),
        0,
        "nothing pulled"
    );
    let jobs = counter(&summary, "ota.jobs");
    assert_eq!(counter(&summary, "ota.downloaded_bytes"), jobs * 64 * 1024);
}

/// Two campaigns to `DEVICES` meters whose model takes packages by `delivery`, against a
/// standalone backend: one that completes, one with a bad image that halts after its first
/// wave. Checks both; the summary and the backend's `/metrics`.
fn campaigns_through_object_5(tag: &str, delivery: &str) -> (Value, String) {
    let dir = scratch(tag);
    let backend = standalone::process(&dir.join("data"), &["--lwm2m", "127.0.0.1:0"], 2);
    let meter = meter_with(&format!(
        "[ota]\ndownload_kbps = 256\ninterrupt = \"30%\"\ncorrupt = \"0%\"\nboot_fail = \"0%\"\nbrick = \"0%\"\ndelivery = \"{delivery}\"\n"
    ));
    let models = models_in(&dir, &[("lwm2m-meter", &meter)]);
    let file = dir.join("ota.toml");
    std::fs::write(
        &file,
        format!(
            "[scenario]\nname = \"lwm2m-ota\"\nseed = 5\nduration = \"20s\"\ntime_scale = 60\nmodels = \"{}\"\n\n\
             [backend]\nkind = \"lwm2m\"\n\n\
             [fleet]\ndevices = {DEVICES}\narrival = {{ ramp = \"2s\" }}\n\
             mix = [ {{ model = \"lwm2m-meter\", share = 1.0, group = \"meters\" }} ]\n\n\
             [[phase]]\nat = \"4s\"\naction = \"ota\"\ngroup = \"meters\"\nfirmware = {{ version = \"2.0.0\", size = \"64KiB\" }}\n\
             rollout = {{ waves = [\"50%\", \"100%\"], soak = \"2s\" }}\n\n\
             [[phase]]\nat = \"11s\"\naction = \"ota\"\ngroup = \"meters\"\nfirmware = {{ version = \"3.0.0\", size = \"64KiB\", boot_fail = \"100%\" }}\n\
             rollout = {{ waves = [\"10%\", \"100%\"], halt_above = \"5%\", soak = \"2s\" }}\n\n\
             [gates]\n\"errors.total\" = \"== 0\"\n",
            models.display()
        ),
    )
    .expect("scenario");
    let out = dir.join("report");
    let output = run_against(&backend.http, &file, &out);
    let metrics = gateway_metrics(&backend.http);
    drop(backend);
    assert_exit(&output, 0);
    let summary = summary(&out);
    let campaigns = summary["campaigns"].as_array().expect("campaigns");
    assert_eq!(campaigns.len(), 2, "{campaigns:?}");
    let (good, bad) = (&campaigns[0], &campaigns[1]);
    assert_eq!(good["state"], "completed", "{good}");
    assert_eq!(bad["state"], "halted", "{bad}");
    assert_eq!(bad["waves_started"], 1, "{bad}");
    let backend = |state: &str| -> u64 {
        campaigns
            .iter()
            .map(|c| c["backend_jobs"][state].as_u64().expect("a count"))
            .sum()
    };
    // Every meter, and the first tenth of them again.
    assert_eq!(backend("targeted"), DEVICES + DEVICES / 10, "{campaigns:?}");
    assert_eq!(counter(&summary, "ota.jobs"), backend("targeted"));
    assert_eq!(counter(&summary, "ota.installed"), DEVICES);
    assert_eq!(counter(&summary, "ota.rolled_back"), DEVICES / 10);
    assert_eq!(
        backend("succeeded"),
        counter(&summary, "ota.installed"),
        "{campaigns:?}"
    );
    assert_eq!(
        backend("rolled_back"),
        counter(&summary, "ota.rolled_back"),
        "{campaigns:?}"
    );
    assert_eq!(
        backend("in_progress") + backend("sent") + backend("failed"),
        0,
        "{campaigns:?}"
    );
    (summary, metrics)
}

/// `set`, `diagnose` and `logs` reach LwM2M meters as Executes of fleetsim's command resource,
/// answered later in separate responses, and `read` as a Read of the path it names: against a
/// standalone backend, every command the operator sent succeeded, and its recorded result is
/// what the meter holds (the settings applied, its health, its own log in time order with the
/// config push and the commands, the firmware version read); each read is timed.
#[test]
fn commands_reach_lwm2m_devices_as_executes_answered_later() {
    let dir = scratch("run-lwm2m-reference-commands");
    let backend = standalone::process(&dir.join("data"), &["--lwm2m", "127.0.0.1:0"], 2);
    let phases = "[[phase]]\nat = \"4s\"\naction = \"config\"\ngroup = \"meters\"\nset = { tariff = \"night\" }\n\n\
        [[phase]]\nat = \"6s\"\naction = \"command\"\ngroup = \"meters\"\ncommand = \"set\"\nargs = { led = \"on\", sample_s = 30 }\nshare = \"20%\"\n\n\
        [[phase]]\nat = \"9s\"\naction = \"command\"\ngroup = \"meters\"\ncommand = \"diagnose\"\nshare = \"20%\"\n\n\
        [[phase]]\nat = \"12s\"\naction = \"command\"\ngroup = \"meters\"\ncommand = \"logs\"\nshare = \"20%\"\n\n\
        [[phase]]\nat = \"14s\"\naction = \"command\"\ngroup = \"meters\"\ncommand = \"read\"\nargs = { path = \"/3/0/3\" }\nshare = \"20%\"\n";
    let file = scenario(&dir, phases);
    let out = dir.join("report");
    let output = run_against(&backend.http, &file, &out);
    assert_exit(&output, 0);
    let summary = summary(&out);
    let audit = standalone::get(&backend.http, "/api/v1/audit?limit=1000");
    let mut names = Vec::new();
    for entry in audit["entries"].as_array().expect("entries") {
        if entry["action"] != "command.sent" {
            continue;
        }
        let id = entry["detail"]["command"].as_str().expect("command id");
        let record = standalone::get(&backend.http, &format!("/api/v1/commands/{id}"))["command"].clone();
        assert_eq!(record["state"], "succeeded", "{record}");
        let output = &record["result"]["output"];
        match record["name"].as_str().expect("name") {
            "set" => {
                assert_eq!(output, &serde_json::json!({"applied": {"led": "on", "sample_s": 30}}));
                // The settings applied, read back from /32769/0/2 as the device's reported
                // config, as an MQTT device's `config/reported` is.
                let device = record["device_id"].as_str().expect("device");
                let view = standalone::get(&backend.http, &format!("/api/v1/devices/{device}"));
                assert_eq!(
                    view["reported"]["settings"],
                    serde_json::json!({"led": "on", "sample_s": 30}),
                    "{view}"
                );
                assert_eq!(view["reported"]["version"], 1, "{view}");
            }
            "diagnose" => {
                assert_eq!(output["firmware"], "1.6.0", "{output}");
                assert_eq!(output["config_version"], 1, "{output}");
                assert!(output["uptime_s"].as_f64().is_some_and(|s| s > 60.0), "{output}");
                assert!(output["rssi"].is_i64(), "{output}");
            }
            "logs" => {
                let events = output["events"].as_array().expect("events");
                let times: Vec<f64> = events.iter().map(|e| e["at_s"].as_f64().expect("at_s")).collect();
                assert!(times.windows(2).all(|w| w[0] <= w[1]), "in time order: {output}");
                assert!(events.iter().any(|e| e["event"] == "config_applied"), "{output}");
                assert!(events.iter().any(|e| e["event"] == "connected"), "{output}");
                let commands: Vec<&Value> = events
                    .iter()
                    .filter(|e| e["event"] == "command")
                    .map(|e| &e["command"])
                    .collect();
                assert_eq!(commands.last(), Some(&&Value::from("logs")), "{output}");
            }
            "read" => {
                assert_eq!(output["path"], "/3/0/3", "{output}");
                assert_eq!(output["format"], 110, "SenML JSON, as asked: {output}");
                let records = output["value"].as_array().expect("SenML records");
                assert_eq!(records.len(), 1, "{output}");
                assert_eq!(records[0]["vs"], "1.6.0", "the firmware version: {output}");
            }
            other => panic!("unexpected command {other}"),
        }
        names.push(record["name"].as_str().expect("name").to_owned());
    }
    assert_eq!(names.len() as u64, 4 * DEVICES / 5, "{names:?}");
    assert_eq!(counter(&summary, "commands.answered"), 3 * DEVICES / 5);
    let latency = &summary["metrics"]["histograms"]["command.latency"];
    assert_eq!(latency["count"], 3 * DEVICES / 5, "{latency}");
    let read = &summary["metrics"]["histograms"]["read.latency"];
    assert_eq!(read["count"], DEVICES / 5, "a read timed per meter read: {read}");
}

/// Queue mode on both sides: battery sensors that sleep between reports (binding `UQ`, no
/// socket asleep) and stay awake a model minute after each (`awake`). The backend holds the
/// config push and the reboots for each until its next registration update, then sends them;
/// every sensor applies the config and half of them reboot, with nothing lost or timed out.
#[test]
fn queue_mode_devices_get_what_was_held_for_them_at_their_next_update() {
    let dir = scratch("run-lwm2m-reference-queue");
    let models = models_in(
        &dir,
        &[(
            "lwm2m-meter",
            "name = \"lwm2m-meter\"\nprotocol = \"coap\"\nfirmware = \"1.0.0\"\nserial_prefix = \"LQ\"\n\n\
             [telemetry]\ninterval = \"4m\"\njitter = \"10%\"\npayload_bytes = 24\nqos = 0\nduty_cycle = true\nawake = \"1m\"\n\n\
             [lwm2m]\nlifetime = \"30m\"\n",
        )],
    );
    let phases = "[[phase]]\nat = \"8s\"\naction = \"config\"\ngroup = \"meters\"\nset = { tariff = \"night\" }\n\n\
                  [[phase]]\nat = \"9s\"\naction = \"command\"\ngroup = \"meters\"\ncommand = \"reboot\"\nshare = \"50%\"\n";
    let file = scenario_of(&dir, &models, phases);
    // Reports every 4 s real; the config waits for each sensor's next wake.
    rewrite(&file, "\"config.latency.p99\" = \"<= 2s\"\n", "");
    let backend = standalone::process(&dir.join("data"), &["--lwm2m", "127.0.0.1:0"], 2);
    let out = dir.join("report");
    let output = run_against(&backend.http, &file, &out);
    let metrics = gateway_metrics(&backend.http);
    drop(backend);
    assert_exit(&output, 0);
    let summary = summary(&out);
    let counters = &summary["metrics"]["counters"];
    assert_eq!(counter(&summary, "config.reported"), DEVICES, "{counters}");
    assert_eq!(counter(&summary, "commands.answered"), DEVICES / 2, "{counters}");
    let held = gateway_counter(&metrics, "lwm2m_held_total");
    assert_eq!(
        held,
        DEVICES + DEVICES / 2,
        "each config and reboot held for a wake: {metrics}"
    );
    assert!(
        metrics.contains("fleetsim_gateway_lwm2m_requests_failed_total 0\n"),
        "nothing sent to a sleeping sensor: {metrics}"
    );
    // Observations live with the registration, not the socket: each wake's report notifies the
    // front's observers from the sensor's new port, under the tokens of its Register.
    let sent = counter(&summary, "lwm2m.notifications");
    assert!(
        sent >= 3 * DEVICES,
        "about five wakes a sensor, each notified: {counters}"
    );
    let heard = gateway_counter(&metrics, "lwm2m_notifications_total");
    assert!(
        heard >= sent,
        "the front heard every one (and counts each Observe's first answer too): {heard}; {counters}"
    );
    assert_eq!(
        gateway_counter(&metrics, "lwm2m_unexpected_total"),
        0,
        "no notification the front did not know: {metrics}"
    );
}

/// Alert rules against LwM2M devices, from the front's observations: coin cells whose batteries
/// drain within seconds (their /3/0/9 notifications cross a `battery_below` rule), meters a
/// `fault` phase leaves with a stuck sensor (their /3303/0/5700 notifications repeat a reading
/// past a `sensor_stuck` rule), and gauges an `error_burst` leaves reporting error codes (their
/// /3/0/11 notifications, observed once the `error_codes` rule comes in force after they
/// registered, make its count). Every alert the rules call for is raised and timed from the
/// report that crossed the rule, none without cause.
#[test]
fn battery_stuck_sensor_and_error_code_alerts_come_from_lwm2m_notifications() {
    let dir = scratch("run-lwm2m-reference-alerts");
    let models = models_in(
        &dir,
        &[
            (
                "lwm2m-cell",
                "name = \"lwm2m-cell\"\nprotocol = \"coap\"\nfirmware = \"1.0.0\"\nserial_prefix = \"LC\"\n\n\
                 [telemetry]\ninterval = \"10s\"\njitter = \"10%\"\npayload_bytes = 24\nqos = 0\n\n\
                 [battery]\ncapacity_mah = 0.25\nsleep_ua = 5\ntx_mas = 60\nlow_at = \"20%\"\nlow_interval_factor = 1.0\n\n\
                 [lwm2m]\nlifetime = \"1d\"\n",
            ),
            (
                "lwm2m-probe",
                "name = \"lwm2m-probe\"\nprotocol = \"coap\"\nfirmware = \"1.0.0\"\nserial_prefix = \"LP\"\n\n\
                 [telemetry]\ninterval = \"20s\"\npayload_bytes = 24\nqos = 0\n\n\
                 [lwm2m]\nlifetime = \"1d\"\n",
            ),
            (
                "lwm2m-gauge",
                "name = \"lwm2m-gauge\"\nprotocol = \"coap\"\nfirmware = \"1.0.0\"\nserial_prefix = \"LG\"\n\n\
                 [telemetry]\ninterval = \"10s\"\npayload_bytes = 24\nqos = 0\n\n\
                 [faults]\nerror_codes = [17, 42]\n\n\
                 [lwm2m]\nlifetime = \"1d\"\n",
            ),
        ],
    );
    let file = dir.join("alerts.toml");
    std::fs::write(
        &file,
        format!(
            "[scenario]\nname = \"lwm2m-alerts\"\nseed = 23\nduration = \"12s\"\ntime_scale = 60\nmodels = \"{}\"\n\n\
             [backend]\nkind = \"lwm2m\"\n\n\
             [fleet]\ndevices = 30\narrival = {{ ramp = \"500ms\" }}\n\
             mix = [ {{ model = \"lwm2m-cell\", share = 0.34, group = \"cells\" }}, {{ model = \"lwm2m-probe\", share = 0.33, group = \"probes\" }}, \
             {{ model = \"lwm2m-gauge\", share = 0.33, group = \"gauges\" }} ]\n\n\
             [[phase]]\nat = \"500ms\"\naction = \"alert\"\ngroup = \"cells\"\nrule = \"battery_below\"\nbelow = \"50%\"\n\n\
             [[phase]]\nat = \"1s\"\naction = \"alert\"\ngroup = \"probes\"\nrule = \"sensor_stuck\"\nreports = 3\n\n\
             [[phase]]\nat = \"3s\"\naction = \"fault\"\ngroup = \"probes\"\nfault = \"stuck_sensor\"\nshare = \"50%\"\nduration = \"4s\"\n\n\
             [[phase]]\nat = \"1500ms\"\naction = \"alert\"\ngroup = \"gauges\"\nrule = \"error_codes\"\nat_least = 3\nwithin = \"1m\"\n\n\
             [[phase]]\nat = \"3s\"\naction = \"fault\"\ngroup = \"gauges\"\nfault = \"error_burst\"\nshare = \"100%\"\nduration = \"4s\"\n\n\
             [gates]\n\"alerts.missed\" = \"== 0\"\n\"alerts.unexpected\" = \"== 0\"\n\"alert.latency.p99\" = \"<= 1s\"\n",
            models.display()
        ),
    )
    .expect("scenario");
    let out = dir.join("report");
    let output = binary::run_headless(&file, &out);
    let summary = summary(&out);
    assert_exit(&output, 0);
    let expected = counter(&summary, "alerts.expected");
    // The cells' battery alerts and the stuck probes' make 14 with this seed; the gauges' error
    // codes add one a gauge (8 of the 30 devices), each in a burst all through the fault.
    assert!(
        expected >= 20,
        "the cells' battery alerts, the stuck probes' and the erring gauges': {summary}"
    );
    assert_eq!(counter(&summary, "alerts.raised"), expected, "{summary}");
    assert_eq!(
        summary["metrics"]["histograms"]["alert.latency"]["count"].as_u64(),
        Some(expected)
    );
}
