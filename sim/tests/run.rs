//! `fleetsim run` end to end, as a user runs it: the binary plans a small fleet, starts the
//! embedded backend, runs every device, prints progress and verdicts, writes summary.json,
//! and picks the exit code from the gates.

use std::process::Command;

#[path = "support/binary.rs"]
mod binary;
use binary::{fleetsim as run, repo, scratch, spawn_fleetsim};

fn out_dir(tag: &str) -> binary::Scratch {
    scratch(&format!("run-{tag}"))
}

#[test]
fn a_small_run_provisions_every_device_passes_its_gates_and_writes_a_summary() {
    let out = out_dir("small");
    let ran = run(&[
        "run",
        "sim/tests/fixtures/run/small.toml",
        "--out",
        out.to_str().expect("utf-8 path"),
    ]);
    let stdout = String::from_utf8_lossy(&ran.stdout);
    assert_eq!(
        ran.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&ran.stderr)
    );
    assert!(
        stdout.starts_with("fleetsim run: scenario small (seed 5), 40 devices for 3s"),
        "{stdout}"
    );
    assert!(
        stdout.lines().any(|l| l.starts_with("[1s] ")),
        "a progress line a second: {stdout}"
    );
    assert!(
        stdout.contains("pass  provision.latency.p99 <= 2s: measured"),
        "{stdout}"
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).expect("summary.json")).expect("JSON");
    assert_eq!(summary["scenario"], "small");
    assert!(summary["machine"]["cpus"].as_u64().is_some_and(|n| n >= 1), "{summary}");
    assert!(summary["machine"]["os"].is_string());
    assert_eq!(summary["metrics"]["counters"]["provisioned"], 40);
    assert_eq!(summary["metrics"]["devices.lost"], 0);
    assert_eq!(summary["backend"]["devices_active"], 40);
    assert_eq!(summary["metrics"]["histograms"]["provision.latency"]["count"], 40);
    assert!(
        summary["metrics"]["counters"]["published"]
            .as_u64()
            .is_some_and(|n| n >= 40),
        "{summary}"
    );
    assert!(
        summary["gates"]
            .as_array()
            .is_some_and(|g| g.len() == 3 && g.iter().all(|v| v["passed"] == true))
    );
    let junit = std::fs::read_to_string(out.join("junit.xml")).expect("junit.xml");
    assert!(
        junit.contains("<testsuite name=\"small\" tests=\"3\" failures=\"0\""),
        "{junit}"
    );
    assert_eq!(junit.matches("<testcase ").count(), 3);
    // The interval log holds every latency recorded, second by second: added up, the same
    // counts and percentiles as the summary.
    let totals = fleetsim::report::hlog::read_totals(&out.join("histograms.hlog")).expect("histograms.hlog");
    for (name, histogram) in &totals {
        let figures = &summary["metrics"]["histograms"][name.as_str()];
        assert_eq!(Some(histogram.len()), figures["count"].as_u64(), "{name}");
        let p99_ms = histogram.value_at_quantile(0.99) as f64 / 1e3;
        assert_eq!(Some(p99_ms), figures["p99_ms"].as_f64(), "{name}");
    }
    assert!(totals.contains_key("provision.latency") && totals.contains_key("publish.latency"));
    let html = std::fs::read_to_string(out.join("report.html")).expect("report.html");
    assert!(html.contains("<table class=\"gates\">"), "the gates head the report");
    assert!(html.matches("<svg ").count() >= 4, "devices, rates and latency charts");
    let csv = std::fs::read_to_string(out.join("timeseries.csv")).expect("timeseries.csv");
    let rows: Vec<&str> = csv.lines().collect();
    assert!(rows[0].starts_with("elapsed_s,devices.unprovisioned,"), "{csv}");
    assert!(rows.len() >= 3, "a row a second of a 3 s run: {csv}");
}

#[test]
fn a_failed_gate_exits_1_and_says_by_how_much() {
    let out = out_dir("failing");
    let ran = run(&[
        "run",
        "sim/tests/fixtures/run/failing-gate.toml",
        "--out",
        out.to_str().expect("utf-8 path"),
    ]);
    let stdout = String::from_utf8_lossy(&ran.stdout);
    assert_eq!(ran.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("FAIL  provision.latency.p99 <= 1us: measured"),
        "{stdout}"
    );
    assert!(stdout.contains("1 of 3 gates failed"), "{stdout}");
    let junit = std::fs::read_to_string(out.join("junit.xml")).expect("junit.xml");
    assert!(junit.contains("failures=\"1\""), "{junit}");
    assert!(
        junit.contains("<failure message=\"FAIL  provision.latency.p99 &lt;= 1us: measured"),
        "{junit}"
    );
}

#[test]
fn overrides_resize_and_reseed_the_run() {
    let out = out_dir("override");
    let ran = run(&[
        "run",
        "sim/tests/fixtures/run/small.toml",
        "--devices",
        "12",
        "--seed",
        "99",
        "--duration",
        "2s",
        "--out",
        out.to_str().expect("utf-8 path"),
    ]);
    let stdout = String::from_utf8_lossy(&ran.stdout);
    assert_eq!(ran.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.starts_with("fleetsim run: scenario small (seed 99), 12 devices for 2s"),
        "{stdout}"
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).expect("summary.json")).expect("JSON");
    assert_eq!(
        (summary["devices"].as_u64(), summary["seed"].as_u64()),
        (Some(12), Some(99))
    );
    let _ = std::fs::remove_dir_all(&out);
    let too_short = run(&["run", "sim/tests/fixtures/run/small.toml", "--duration", "500ms"]);
    assert_eq!(too_short.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&too_short.stderr).contains("give fewer --devices or a longer --duration"));
}

/// A --duration that cuts the quickstart's timeline short is refused before the run, naming
/// the phase it cuts off: its outage (at 1m10s) at one minute; its campaign's last wave (four
/// waves from 40s, 5s of soak each: 55s) at 50 s.
#[test]
fn a_duration_that_cuts_phases_off_is_refused_before_the_run() {
    let cases = [
        ("60s", "phase \"outage\" at 1m10s comes at or after the run's end at 1m"),
        (
            "50s",
            "phase \"ota\" at 40s would start its last wave at 55s, after the run's end at 50s",
        ),
    ];
    for (duration, why) in cases {
        let cut = run(&["run", "scenarios/quickstart.toml", "--headless", "--duration", duration]);
        let stderr = String::from_utf8_lossy(&cut.stderr);
        assert_eq!(cut.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains(why) && stderr.contains("give a longer --duration"),
            "{stderr}"
        );
        assert!(
            cut.stdout.is_empty(),
            "nothing ran: {}",
            String::from_utf8_lossy(&cut.stdout)
        );
    }
}

/// `read` is an LwM2M Read: sent to the reference backend's MQTT devices it is refused before
/// the run, pointing at `diagnose`; a read without an LwM2M path is refused at its line.
#[test]
fn a_read_for_mqtt_devices_or_without_a_path_is_refused() {
    let dir = scratch("run-read-refused");
    std::fs::create_dir_all(&dir).expect("dir");
    let small = std::fs::read_to_string(repo().join("sim/tests/fixtures/run/small.toml")).expect("small.toml");
    let models = format!("models = \"{}\"", repo().join("device-models").display());
    let small = small.replace("models = \"../../../../device-models\"", &models);
    let with_read = |path: &str| {
        let text = small.replace(
            "[gates]",
            &format!(
                "[[phase]]\nat = \"2s\"\naction = \"command\"\ngroup = \"sensors\"\ncommand = \"read\"\nargs = {{ path = \"{path}\" }}\n\n[gates]"
            ),
        );
        let file = dir.join("read.toml");
        std::fs::write(&file, text).expect("write");
        file
    };
    let ran = run(&["run", &with_read("/3/0/9").to_string_lossy(), "--headless"]);
    let stderr = String::from_utf8_lossy(&ran.stderr);
    assert_eq!(ran.status.code(), Some(2), "{stderr}");
    assert!(ran.stdout.is_empty(), "nothing runs");
    assert!(
        stderr.contains("sends \"read\", an LwM2M Read of a resource, and these devices speak MQTT")
            && stderr.contains("\"diagnose\" answers"),
        "{stderr}"
    );
    for bad in ["3/0/9", "/3/00/9", "/3/0/70000", "/3/0/9/1"] {
        let checked = run(&["validate", &with_read(bad).to_string_lossy()]);
        let stderr = String::from_utf8_lossy(&checked.stderr);
        assert_eq!(checked.status.code(), Some(2), "{bad}: {stderr}");
        assert!(
            stderr.contains("read.toml:20:8: phase[0].args: a read command needs args.path"),
            "{bad}: {stderr}"
        );
    }
}

#[test]
fn operator_phases_against_a_plain_broker_are_refused_naming_why() {
    let ran = run(&["run", "sim/tests/fixtures/run/broker-config.toml"]);
    assert_eq!(ran.status.code(), Some(2));
    assert!(ran.stdout.is_empty(), "nothing runs");
    let stderr = String::from_utf8_lossy(&ran.stderr);
    assert!(
        stderr.contains("phase \"config\" at 2s needs an operator, and an MQTT broker has no operator API"),
        "{stderr}"
    );
}

/// `--backend` can point a scenario at a backend that cannot give what its gates read: the
/// LwM2M quickstart, aimed at an LwM2M server by url rather than the reference backend, has
/// no operator to time config pushes and commands. Refused before anything runs.
#[test]
fn gates_the_backend_named_on_the_command_line_cannot_give_are_refused() {
    let ran = run(&[
        "run",
        "scenarios/lwm2m-quickstart.toml",
        "--headless",
        "--backend",
        "coap://127.0.0.1:9",
    ]);
    let stderr = String::from_utf8_lossy(&ran.stderr);
    assert_eq!(ran.status.code(), Some(2), "{stderr}");
    assert!(ran.stdout.is_empty(), "nothing runs");
    assert!(
        stderr.contains("gate \"command.latency.p99\" cannot be judged against a backend of kind \"lwm2m\""),
        "{stderr}"
    );
}

#[test]
fn backend_urls_must_fit_the_dialect() {
    let ran = run(&[
        "run",
        "sim/tests/fixtures/run/small.toml",
        "--backend",
        "mqtt://127.0.0.1:1883",
    ]);
    assert_eq!(ran.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&ran.stderr);
    assert!(
        stderr.contains("--backend mqtt://127.0.0.1:1883: a embedded scenario takes http://IP:PORT"),
        "{stderr}"
    );
}

#[test]
fn sigterm_stops_the_run_and_the_summary_still_comes_marked_incomplete() {
    let out = out_dir("sigterm");
    let child = spawn_fleetsim(&[
        "run".as_ref(),
        "sim/tests/fixtures/run/small.toml".as_ref(),
        "--duration".as_ref(),
        "60s".as_ref(),
        "--out".as_ref(),
        out.as_os_str(),
    ]);
    std::thread::sleep(std::time::Duration::from_secs(2));
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let ran = child.wait_with_output().expect("run ends");
    let stdout = String::from_utf8_lossy(&ran.stdout);
    assert_eq!(
        ran.status.code(),
        Some(1),
        "{stdout}\n{}",
        String::from_utf8_lossy(&ran.stderr)
    );
    assert!(
        stdout.contains("stopped early: the summary is marked incomplete"),
        "{stdout}"
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).expect("summary.json")).expect("JSON");
    assert_eq!(summary["completed"], false);
    let junit = std::fs::read_to_string(out.join("junit.xml")).expect("junit.xml");
    assert!(
        junit.contains("name=\"run completed\""),
        "a partial run is a failed case: {junit}"
    );
    assert!(
        summary["elapsed_s"].as_f64().is_some_and(|s| s < 30.0),
        "stopped well before 60 s: {summary}"
    );
    assert_eq!(
        summary["metrics"]["counters"]["provisioned"], 40,
        "devices that arrived are in the figures"
    );
    assert!(
        summary["gates"]
            .as_array()
            .is_some_and(|g| g.iter().all(|v| v["passed"] == false))
    );
}

#[test]
fn shards_without_a_shared_backend_are_refused() {
    let ran = run(&["run", "sim/tests/fixtures/run/small.toml", "--shard", "1/2"]);
    assert_eq!(ran.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&ran.stderr);
    assert!(
        stderr.contains("--shard 1/2: the shards of one run must share a backend"),
        "{stderr}"
    );
}
