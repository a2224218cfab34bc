//! `fleetsim run --workers N`: the fleet as worker processes of one run. The parent shows the
//! whole fleet live and merges the workers' reports into one whose counts are the workers'
//! counts added up; a worker killed mid-run is reported, its devices count as lost, and the
//! others finish the run, or, with `fleet.on_worker_loss = "stop"`, are stopped cleanly and the
//! run ends incomplete with the reason.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

#[path = "support/binary.rs"]
mod binary;
use binary::{counter, repo, scratch, spawn_fleetsim, summary};

const DEVICES: u64 = 300;

/// 300 always-connected meters against the reference backend, which the parent starts;
/// `on_loss` is the fleet's rule for a dead worker (`None`: the default).
fn scenario(dir: &std::path::Path, duration: &str, on_loss: Option<&str>) -> std::path::PathBuf {
    let file = dir.join("workers.toml");
    std::fs::create_dir_all(dir).expect("dir");
    std::fs::write(
        &file,
        format!(
            "[scenario]\nname = \"workers\"\nseed = 8\nduration = \"{duration}\"\ntime_scale = 300\nmodels = \"{}\"\n\
             [fleet]\ndevices = {DEVICES}\narrival = {{ ramp = \"1s\" }}\n{}\
             mix = [ {{ model = \"mains-meter\", share = 1.0, group = \"meters\" }} ]\n\
             [gates]\n\"devices.lost\" = \"== 0\"\n\"errors.total\" = \"== 0\"\n",
            repo().join("device-models").display(),
            on_loss.map_or(String::new(), |rule| format!("on_worker_loss = \"{rule}\"\n"))
        ),
    )
    .expect("scenario");
    file
}

#[test]
fn workers_merge_into_one_run_shown_live() {
    let dir = scratch("run-workers");
    let file = scenario(&dir, "6s", None);
    let out = dir.join("report");
    let output = binary::fleetsim(&[
        "run".as_ref(),
        file.as_os_str(),
        "--workers".as_ref(),
        "3".as_ref(),
        "--out".as_ref(),
        out.as_os_str(),
    ]);
    binary::assert_exit(&output, 0);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout
            .lines()
            .any(|l| l.contains(&format!("online {DEVICES}/{DEVICES}"))),
        "the parent's progress lines show the whole fleet:\n{stdout}"
    );
    let merged = summary(&out);
    let parts: Vec<Value> = (0..3)
        .map(|k| summary(&out.join("workers").join(k.to_string())))
        .collect();
    assert_eq!(
        parts.iter().map(|p| p["devices"].as_u64().unwrap_or(0)).sum::<u64>(),
        DEVICES
    );
    for name in ["provisioned", "connected", "published"] {
        let sum: u64 = parts.iter().map(|p| counter(p, name)).sum();
        assert_eq!(counter(&merged, name), sum, "{name} adds up over the workers");
    }
    assert_eq!(counter(&merged, "provisioned"), DEVICES);
    assert_eq!(merged["backend"]["devices_active"].as_u64(), Some(DEVICES));
    assert_eq!(merged["metrics"]["devices.lost"].as_u64(), Some(0));
    assert_eq!(merged["devices"].as_u64(), Some(DEVICES));
    let workers = merged["workers"].as_array().expect("workers");
    assert!(workers.iter().all(|w| w["reported"] == true), "{workers:?}");
    // Latencies merge exactly: the merged histogram holds every worker's samples. (Not one per
    // publish: a PUBACK still on its way when the run ends is never timed.)
    let timed = |s: &Value| {
        s["metrics"]["histograms"]["publish.latency"]["count"]
            .as_u64()
            .unwrap_or(0)
    };
    let workers_timed: u64 = parts.iter().map(timed).sum();
    assert!(workers_timed > 0);
    assert_eq!(timed(&merged), workers_timed);
    assert!(
        merged["harness"]["peak_connected"].as_u64() >= Some(DEVICES - 3),
        "{}",
        merged["harness"]
    );
}

#[test]
fn a_killed_worker_is_reported_and_its_devices_count_as_lost() {
    let dir = scratch("run-workers-killed");
    let file = scenario(&dir, "8s", None);
    let out = dir.join("report");
    let output = run_killing_worker_1(&file, &out, 2);
    let stdout = String::from_utf8_lossy(&output.stdout);
    // The devices.lost gate fails: the run says so with exit code 1, and still reports.
    binary::assert_exit(&output, 1);
    assert!(stdout.contains("worker 1 died"), "{stdout}");
    let merged = summary(&out);
    let workers = merged["workers"].as_array().expect("workers");
    assert_eq!(workers[1]["reported"], false, "{workers:?}");
    assert_eq!(workers[0]["reported"], true, "{workers:?}");
    assert_eq!(merged["metrics"]["devices.lost"].as_u64(), Some(DEVICES / 2));
    assert_eq!(merged["completed"], true, "the other worker finished the run");
    assert!(
        merged["gates"]
            .as_array()
            .expect("gates")
            .iter()
            .any(|g| g["gate"] == "devices.lost == 0" && g["passed"] == false)
    );
    assert!(counter(&merged, "published") > 0);
}

#[test]
fn with_on_worker_loss_stop_a_killed_worker_stops_the_others_and_the_run() {
    let dir = scratch("run-workers-stop");
    // Long enough that only the rule can end it while the test looks.
    let file = scenario(&dir, "60s", Some("stop"));
    let out = dir.join("report");
    let output = run_killing_worker_1(&file, &out, 3);
    let stdout = String::from_utf8_lossy(&output.stdout);
    binary::assert_exit(&output, 1);
    assert!(
        stdout.contains("stopping the other workers (fleet.on_worker_loss = \"stop\")"),
        "{stdout}"
    );
    assert!(stdout.contains("stopped early (worker 1 died"), "{stdout}");
    let merged = summary(&out);
    assert_eq!(merged["completed"], false);
    let reason = merged["stopped"]["reason"].as_str().unwrap_or_default();
    assert!(reason.starts_with("worker 1 died"), "{reason}");
    assert_eq!(merged["stopped"]["rule"], "fleet.on_worker_loss = \"stop\"");
    let workers = merged["workers"].as_array().expect("workers");
    let reported: Vec<bool> = workers.iter().map(|w| w["reported"] == true).collect();
    assert_eq!(reported, [true, false, true], "{workers:?}");
    // The others were stopped, not left to finish: each wrote a report marked incomplete.
    for k in [0, 2] {
        let own = summary(&out.join("workers").join(k.to_string()));
        assert_eq!(own["completed"], false, "worker {k}");
    }
    assert_eq!(merged["metrics"]["devices.lost"].as_u64(), Some(DEVICES / 3));
    assert!(
        merged["gates"]
            .as_array()
            .expect("gates")
            .iter()
            .all(|g| g["passed"] == false),
        "no gate passes on a stopped run"
    );
    let html = std::fs::read_to_string(out.join("report.html")).expect("report.html");
    assert!(html.contains("stopped early</b>: worker 1 died"), "the report says why");
}

/// Runs `file` as `workers` worker processes and SIGKILLs worker 1 (found by its report
/// folder on its command line) 3 s into the run; returns the parent's output.
fn run_killing_worker_1(file: &std::path::Path, out: &std::path::Path, workers: u32) -> std::process::Output {
    let workers = workers.to_string();
    let parent = spawn_fleetsim(&[
        "run".as_ref(),
        file.as_os_str(),
        "--workers".as_ref(),
        workers.as_ref(),
        "--out".as_ref(),
        out.as_os_str(),
    ]);
    let marker = out.join("workers").join("1");
    let deadline = Instant::now() + Duration::from_secs(10);
    let victim = loop {
        std::thread::sleep(Duration::from_millis(100));
        let found = std::fs::read_dir("/proc").expect("/proc").flatten().find_map(|entry| {
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            (text.contains("--worker ") && text.contains(&*marker.to_string_lossy()))
                .then(|| entry.file_name().to_string_lossy().into_owned())
        });
        if let Some(pid) = found {
            break pid;
        }
        assert!(Instant::now() < deadline, "worker 1 never started");
    };
    std::thread::sleep(Duration::from_secs(3));
    let killed = Command::new("kill").args(["-KILL", &victim]).status().expect("kill");
    assert!(killed.success());
    parent.wait_with_output().expect("the run ends")
}
