//! `fleetsim run --workers N`: the fleet as worker processes of one run. The parent shows the
//! whole fleet live and merges the workers' reports into one whose counts are the workers'
//! counts added up; a worker killed mid-run is reported, its devices count as lost, and the
//! others finish the run.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

#[path = "support/binary.rs"]
mod binary;
use binary::{repo, scratch, summary};

const DEVICES: u64 = 300;

/// 300 always-connected meters against the reference backend, which the parent starts.
fn scenario(dir: &std::path::Path, duration: &str) -> std::path::PathBuf {
    let file = dir.join("workers.toml");
    std::fs::create_dir_all(dir).expect("dir");
    std::fs::write(
        &file,
        format!(
            "[scenario]\nname = \"workers\"\nseed = 8\nduration = \"{duration}\"\ntime_scale = 300\nmodels = \"{}\"\n\
             [fleet]\ndevices = {DEVICES}\narrival = {{ ramp = \"1s\" }}\n\
             mix = [ {{ model = \"mains-meter\", share = 1.0, group = \"meters\" }} ]\n\
             [gates]\n\"devices.lost\" = \"== 0\"\n\"errors.total\" = \"== 0\"\n",
            repo().join("device-models").display()
        ),
    )
    .expect("scenario");
    file
}

fn counter(summary: &Value, name: &str) -> u64 {
    summary["metrics"]["counters"][name].as_u64().unwrap_or(0)
}

#[test]
fn workers_merge_into_one_run_shown_live() {
    let dir = scratch("run-workers");
    let file = scenario(&dir, "6s");
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
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_killed_worker_is_reported_and_its_devices_count_as_lost() {
    let dir = scratch("run-workers-killed");
    let file = scenario(&dir, "8s");
    let out = dir.join("report");
    let parent = Command::new(env!("CARGO_BIN_EXE_fleetsim"))
        .arg("run")
        .arg(&file)
        .args(["--workers", "2", "--out"])
        .arg(&out)
        .current_dir(repo())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("fleetsim runs");
    // Worker 1, found by its report folder on its command line, killed 3 s into the run.
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
    let output = parent.wait_with_output().expect("the run ends");
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
    let _ = std::fs::remove_dir_all(&dir);
}
