//! Every operator phase end to end against the embedded backend, as `fleetsim run` performs
//! them: a config push, a reboot command, an OTA campaign whose downloads are cut and resumed
//! with Range and whose images fail in every way, a mass outage and a decommission. The run's
//! own figures are checked against each other and against the backend's view of the campaign.

use serde_json::Value;

#[path = "support/binary.rs"]
mod binary;
use binary::{assert_exit, fleetsim, scratch, summary};

fn count(summary: &Value, name: &str) -> u64 {
    summary["metrics"]["counters"][name]
        .as_u64()
        .unwrap_or_else(|| panic!("counter {name} in {summary}"))
}

fn samples(summary: &Value, name: &str) -> u64 {
    summary["metrics"]["histograms"][name]["count"].as_u64().unwrap_or(0)
}

#[test]
fn every_phase_runs_and_devices_and_backend_agree() {
    let out = scratch("run-phases");
    let ran = fleetsim(&[
        "run".as_ref(),
        "sim/tests/fixtures/run/phases.toml".as_ref(),
        "--out".as_ref(),
        out.as_os_str(),
    ]);
    assert_exit(&ran, 0);
    let stdout = String::from_utf8_lossy(&ran.stdout);
    for line in [
        "[2s] phase config sensors",
        "[2.5s] phase command gateways",
        "[3s] phase ota sensors",
        "[4s] phase ota gateways",
        "[7s] phase outage",
        "[9.5s] phase decommission gateways",
    ] {
        assert!(stdout.contains(line), "{line} in {stdout}");
    }
    let summary = summary(&out);
    let phases = summary["phases"].as_array().expect("phases");
    assert!(
        phases.iter().all(|p| p["errors"] == serde_json::json!([])),
        "{phases:?}"
    );

    // Config: every sensor applied the pushed version and reported it, each with a latency.
    let pushed = phases[0]["detail"][0]["pushed"].as_u64().expect("pushed");
    assert!(pushed > 20, "{phases:?}");
    assert_eq!(count(&summary, "config.reported"), pushed);
    assert_eq!(samples(&summary, "config.latency"), pushed);

    // Commands: every rebooted gateway answered first, and the answer's latency was measured.
    let picked = phases[1]["detail"]["picked"].as_u64().expect("picked");
    assert!(picked > 10, "{phases:?}");
    assert_eq!(count(&summary, "commands.answered"), picked);
    assert_eq!(samples(&summary, "command.latency"), picked);

    // OTA: the good campaign reached every sensor; the bad one halted after its first wave.
    // Each job ended one way, and the backend's campaign views match the devices' own reports
    // outcome by outcome.
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
    // Every sensor, and the bad campaign's first wave: a quarter of the gateways.
    let jobs = backend("targeted");
    let quarter = bad["targeted"].as_f64().expect("targeted") / 4.0;
    assert!(
        jobs as f64 - good["targeted"].as_f64().expect("targeted") - quarter < 1.0,
        "{campaigns:?}"
    );
    let (installed, failed, rolled_back, bricked) = (
        count(&summary, "ota.installed"),
        count(&summary, "ota.failed"),
        count(&summary, "ota.rolled_back"),
        count(&summary, "ota.bricked"),
    );
    assert_eq!(count(&summary, "ota.jobs"), jobs);
    assert_eq!(installed + failed + rolled_back + bricked, jobs);
    assert!(failed > 0 && rolled_back > 0 && bricked > 0, "every outcome: {summary}");
    assert_eq!(backend("succeeded"), installed, "{campaigns:?}");
    assert_eq!(backend("failed"), failed, "{campaigns:?}");
    assert_eq!(backend("rolled_back"), rolled_back, "{campaigns:?}");
    assert_eq!(
        backend("in_progress"),
        bricked,
        "a bricked device never reports: {campaigns:?}"
    );
    assert_eq!(backend("sent"), 0, "every job was taken: {campaigns:?}");
    assert!(count(&summary, "ota.resumes") > 0, "cut downloads resumed with Range");
    assert_eq!(count(&summary, "errors.protocol"), 0, "every image matched its hash");
    assert_eq!(samples(&summary, "ota.duration"), jobs);
    let metrics = &summary["metrics"];
    let targeted: u64 = campaigns
        .iter()
        .map(|c| c["targeted"].as_u64().expect("targeted"))
        .sum();
    assert_eq!(
        metrics["ota.exposed"].as_f64(),
        Some(installed as f64 / targeted as f64)
    );
    let halt_ms = metrics["ota.halt.latency_ms"]
        .as_f64()
        .expect("the bad campaign halted");
    assert!(
        halt_ms < 3000.0,
        "halted within its soak of the first failure: {halt_ms} ms"
    );
    assert_eq!(
        metrics["ota.rollback.success"].as_f64(),
        Some(rolled_back as f64 / (rolled_back + bricked) as f64)
    );
    assert_eq!(metrics["gauges"]["devices.bricked"], bricked);

    // Outage: about half the fleet was cut off, and all of it came back.
    let affected = count(&summary, "outage.affected");
    assert!((20..=60).contains(&affected), "{affected}");
    assert_eq!(count(&summary, "outage.recovered"), affected);
    assert!(metrics["reconnect.recovery_ms"].as_f64().is_some(), "{metrics}");

    // Decommission: the picked devices are gone on both sides, and no other device is missing.
    let decommissioned = phases[5]["detail"]["decommissioned"].as_u64().expect("decommissioned");
    assert!(decommissioned > 0);
    // A decommissioned device learns it when its credentials are refused; a bricked one the
    // operator picked never comes back to learn it.
    let learned = count(&summary, "decommissioned");
    assert!(
        learned <= decommissioned && learned + bricked >= decommissioned,
        "{learned} of {decommissioned}"
    );
    assert_eq!(metrics["gauges"]["devices.decommissioned"], learned);
    assert_eq!(summary["backend"]["devices_active"], 80 - decommissioned);
    assert_eq!(metrics["devices.lost"], 0);
}
