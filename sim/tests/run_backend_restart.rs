//! A backend that vanishes mid-run: `fleetsim run --backend` drives a standalone reference
//! backend, the test kills it with SIGKILL and starts it again on the same ports and data.
//! The run must record the outage and the fleet's recovery, lose no device, and end at its
//! duration with a complete summary.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use fleetsim::cli::backend::Standalone;
#[path = "support/binary.rs"]
mod binary;
use binary::{assert_exit, repo, scratch, summary};

#[test]
fn a_killed_and_restarted_backend_is_an_outage_the_fleet_recovers_from() {
    let exe = Path::new(env!("CARGO_BIN_EXE_fleetsim"));
    let (data, out) = (scratch("data"), scratch("out"));
    let mut backend = Standalone::spawn(exe, &data, &[]).expect("fleetsim backend starts");
    let ready = backend.ready;
    let run = std::thread::spawn({
        let out = out.to_path_buf();
        let api = format!("http://{}", ready.http);
        move || {
            Command::new(env!("CARGO_BIN_EXE_fleetsim"))
                .args(["run", "sim/tests/fixtures/run/restart.toml", "--backend", &api, "--out"])
                .arg(&out)
                .current_dir(repo())
                .output()
                .expect("fleetsim runs")
        }
    });
    std::thread::sleep(Duration::from_secs(3));
    backend.kill().expect("kill the backend");
    std::thread::sleep(Duration::from_secs(2));
    let mut backend = Standalone::spawn_on(exe, &data, &[], ready.mqtt, ready.http).expect("restarts on its ports");
    let ran = run.join().expect("the run thread");
    backend.kill().expect("stop the backend");

    assert_exit(&ran, 0);
    let stdout = String::from_utf8_lossy(&ran.stdout);
    assert!(stdout.contains("backend unreachable"), "{stdout}");
    assert!(stdout.contains("backend back after"), "{stdout}");
    let summary = summary(&out);
    assert_eq!(summary["completed"], true);
    let outages = summary["backend_outages"].as_array().expect("outages");
    println!("{stdout}\n{outages:?}");
    assert_eq!(outages.len(), 1, "{outages:?}");
    let down = outages[0]["down_at_s"].as_f64().expect("down");
    let up = outages[0]["up_at_s"].as_f64().expect("back up");
    assert!((2.5..4.5).contains(&down) && up > down + 1.0, "{outages:?}");
    let recovered = outages[0]["fleet_recovered_after_s"]
        .as_f64()
        .expect("the fleet came back");
    assert!(recovered < 4.0, "{outages:?}");

    let counters = &summary["metrics"]["counters"];
    let count = |name: &str| counters[name].as_u64().unwrap_or(0);
    assert_eq!(count("provisioned"), 60);
    assert!(count("connected") >= 120, "every device connected again: {counters}");
    assert!(
        count("errors.refused") > 0,
        "attempts during the outage failed: {counters}"
    );
    assert_eq!(summary["metrics"]["devices.lost"], 0);
    assert_eq!(summary["metrics"]["gauges"]["devices.online"], 60, "{summary}");
}
