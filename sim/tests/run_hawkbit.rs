//! `fleetsim run scenarios/hawkbit-rollout.toml` against goosebit, a real hawkBit DDI server:
//! 300 devices are registered with their own target tokens (strict authentication) and poll at
//! the server's pace; the operator retires 2% of them; the rest take a rollout of a bad image
//! (30% of boots fail), download it with Range resume, check its SHA-1, and send feedback. What the server recorded must match what the
//! devices reported, device for device.

#[path = "support/binary.rs"]
mod binary;
#[path = "support/goosebit.rs"]
mod goosebit;

use binary::{repo, scratch, summary};
use goosebit::{Goosebit, PASSWORD, USER};

#[test]
fn a_rollout_with_a_bad_image_through_goosebit_matches_device_for_device() {
    let server = Goosebit::start("00:00:15");
    let out = scratch("run-hawkbit");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_fleetsim"))
        .current_dir(repo())
        .args(["run", "scenarios/hawkbit-rollout.toml", "--headless", "--backend"])
        .arg(format!("http://{}", server.addr))
        .arg("--out")
        .arg(&out)
        .env("FLEETSIM_DDI_SECRET", "a-secret-the-test-chose")
        .env("FLEETSIM_DDI_USER", USER)
        .env("FLEETSIM_DDI_PASSWORD", PASSWORD)
        .output()
        .expect("fleetsim runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let s = summary(&out);
    assert_eq!(s["completed"], true, "stdout:\n{stdout}\nstderr:\n{stderr}");
    let counters = &s["metrics"]["counters"];
    let count = |name: &str| counters[name].as_u64().unwrap_or_else(|| panic!("counter {name}"));

    // Every device registered with its token. The operator deleted 2% (6) before the rollout:
    // their next poll was refused and they retired; the server holds every other one.
    assert_eq!(count("provisioned"), 300, "stdout:\n{stdout}");
    assert_eq!(s["backend"]["decommissioned_by_operator"], 6);
    assert_eq!(
        count("decommissioned"),
        6,
        "the retired devices heard it at their next poll"
    );
    assert_eq!(s["metrics"]["gauges"]["devices.decommissioned"], 6);
    let devices = server.api("/api/v1/devices");
    let devices = devices["devices"].as_array().expect("devices");
    assert_eq!(devices.len(), 294, "the server holds every device it did not retire");
    assert_eq!(s["hawkbit"]["server"]["devices"]["count"], 294);
    assert_eq!(s["metrics"]["devices.lost"], 0);

    // Every device took the action; each update ended one way or the other, or was still
    // running when the run ended.
    assert_eq!(
        count("ota.jobs"),
        294,
        "every remaining device took the deployment action"
    );
    let (installed, failed, rolled_back, bricked) = (
        count("ota.installed"),
        count("ota.failed"),
        count("ota.rolled_back"),
        count("ota.bricked"),
    );
    let updating = s["metrics"]["gauges"]["devices.updating"].as_u64().unwrap_or(0);
    assert_eq!(
        installed + failed + rolled_back + bricked + updating,
        294,
        "stdout:\n{stdout}"
    );
    assert!(
        rolled_back > 0 && installed > 0,
        "a bad image: some boots fail, most work"
    );

    // The server's record of each device, read with an independent client, equals what the
    // devices reported: finished with the new version, or in error on the old one; a device
    // still updating, or bricked (it never reports), is running on the server.
    let state = |name: &str| devices.iter().filter(|d| d["last_state"] == name).count() as u64;
    let version = |v: &str| devices.iter().filter(|d| d["sw_version"] == v).count() as u64;
    assert_eq!(
        state("Finished"),
        installed,
        "finished on the server = installed on devices"
    );
    assert_eq!(
        state("Error"),
        failed + rolled_back,
        "error on the server = failed + rolled back"
    );
    assert_eq!(state("Running"), bricked + updating);
    assert_eq!(version("2.0.0"), installed);
    assert_eq!(version("1.0.0"), 294 - installed);
    // The server keeps each device's feedback details: rolled back and rejected apart.
    let operator = server.login();
    let (mut logged_rollbacks, mut logged_rejections) = (0, 0);
    for device in devices.iter().filter(|d| d["last_state"] == "Error") {
        let id = device["id"].as_str().expect("id");
        let log = server.api_as(&operator, &format!("/api/v1/devices/{id}/log"));
        let log = log["log"].as_str().unwrap_or_default();
        if log.contains("rolled back to the previous slot") {
            logged_rollbacks += 1;
        } else if log.contains("verification failed") {
            logged_rejections += 1;
        }
    }
    assert_eq!(
        logged_rollbacks, rolled_back,
        "rolled back: the server's logs = the devices"
    );
    assert_eq!(
        logged_rejections, failed,
        "rejected images: the server's logs = the devices"
    );
    let agreement = &s["hawkbit"]["agreement"];
    assert_eq!(agreement["server_finished"], installed);
    assert_eq!(agreement["server_error"], failed + rolled_back);

    // What the run learned about the server: the intervals it imposed (10 s at registration,
    // 15 s after), downloads resumed with Range after cuts, and the measured exchanges.
    assert_eq!(s["hawkbit"]["poll_interval"]["shortest_s"], 10.0);
    assert_eq!(s["hawkbit"]["poll_interval"]["longest_s"], 15.0);
    assert!(count("ota.resumes") > 0, "3% of downloads are cut and resumed");
    assert!(count("ota.downloaded_bytes") >= (installed + failed + rolled_back) * 65_536);
    assert!(count("polls") >= 300 * 3, "every device polled through the run");
    for latency in [
        "poll.latency",
        "feedback.latency",
        "ota.take.latency",
        "provision.latency",
    ] {
        assert!(
            s["metrics"]["histograms"][latency]["count"].as_u64().unwrap_or(0) > 0,
            "{latency} recorded"
        );
    }
    assert_eq!(count("errors.http_401"), 0, "every token was accepted");
    // Secrets stay out of the report.
    let text = std::fs::read_to_string(out.join("summary.json")).expect("summary");
    assert!(!text.contains("a-secret-the-test-chose") && !text.contains(PASSWORD));
    assert!(!text.contains("auth_token"));
    // Kept only when the test fails, for a look.
}
