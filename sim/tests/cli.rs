//! The `fleetsim` binary end to end: exit codes, output of each command, and the determinism
//! of `plan` (same bytes every run; shards together equal the whole plan).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs the binary from the repository root.
fn fleetsim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fleetsim"))
        .args(args)
        .current_dir(repo())
        .output()
        .expect("the fleetsim binary runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("utf-8 output")
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).expect("utf-8 output")
}

/// The device rows of a `plan` table, without `#` comment and header lines.
fn plan_rows(output: &Output) -> Vec<String> {
    stdout(output)
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with("index"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_shipped_scenario_and_model_validates() {
    let out = fleetsim(&["validate", "scenarios", "device-models"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    for name in [
        "quickstart",
        "provisioning-storm",
        "ota-rollback",
        "reconnect-storm",
        "ci-gate",
        "mqtt5-broker",
    ] {
        assert!(
            text.contains(&format!("ok  scenarios/{name}.toml: scenario \"{name}\"")),
            "{text}"
        );
    }
    let models = text.lines().filter(|l| l.contains(": device model ")).count();
    assert!(models >= 5, "at least five device models ship: {text}");
}

/// The peers benchmark's fleets (benches/peers.sh), and the outage and decommission beside
/// them (docs/scale.md), stay valid as the formats change: a broken benchmark would otherwise
/// be found only by whoever runs it next.
#[test]
fn the_peers_benchmark_scenarios_validate() {
    let out = fleetsim(&["validate", "benches/peers", "benches/peers/models"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    for name in ["peers-qos0", "peers-qos1", "peers-idle", "outage", "decommission"] {
        assert!(text.contains(&format!("scenario \"{name}\"")), "{text}");
    }
}

#[test]
fn a_bad_file_exits_2_with_one_located_message() {
    let out = fleetsim(&[
        "validate",
        "--models",
        "sim/tests/fixtures/device-models",
        "sim/tests/fixtures/good.toml",
        "sim/tests/fixtures/bad/bad-duration.toml",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        "error: sim/tests/fixtures/bad/bad-duration.toml:8:20: fleet.arrival.ramp: expected a duration like \
         \"30s\", \"250ms\", \"5m\", \"6h\" or \"3d\", found \"thirty\"\n1 of 2 files invalid\n"
    );
    assert!(stdout(&out).starts_with("ok  sim/tests/fixtures/good.toml: scenario \"fixture\""));
}

#[test]
fn a_missing_file_is_bad_input() {
    let out = fleetsim(&["validate", "scenarios/no-such-file.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).starts_with("error: scenarios/no-such-file.toml: cannot read:"),
        "{}",
        stderr(&out)
    );
    let out = fleetsim(&["plan", "scenarios/no-such-file.toml"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn usage_errors_exit_2_and_help_exits_0() {
    assert_eq!(fleetsim(&["frobnicate"]).status.code(), Some(2));
    assert_eq!(
        fleetsim(&["plan", "scenarios/quickstart.toml", "--shard", "4/4"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        fleetsim(&["plan", "scenarios/quickstart.toml", "--devices", "9..2"])
            .status
            .code(),
        Some(2)
    );
    for command in ["validate", "schema", "models", "plan", "backend", "run"] {
        let out = fleetsim(&[command, "--help"]);
        assert_eq!(out.status.code(), Some(0), "{command} --help");
        assert!(stdout(&out).contains("Usage: fleetsim"), "{command} --help");
    }
    let help = stdout(&fleetsim(&["--help"]));
    for command in ["validate", "schema", "models", "plan", "backend", "run"] {
        assert!(help.contains(command), "top-level help lists {command}");
    }
    assert!(help.contains("Exit codes: 0 ok, 1 a failed gate or check, 2 bad input or usage"));
}

#[test]
fn schemas_are_json() {
    for kind in ["scenario", "device-model"] {
        let out = fleetsim(&["schema", kind]);
        assert_eq!(out.status.code(), Some(0));
        let schema: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("schema is JSON");
        assert_eq!(schema["type"], "object", "{kind}");
    }
}

#[test]
fn models_lists_every_model_with_derived_figures() {
    let out = fleetsim(&["models"]);
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    assert!(text.starts_with("model "), "{text}");
    let sensor = text
        .lines()
        .find(|l| l.starts_with("temp-sensor "))
        .expect("temp-sensor row");
    assert!(
        sensor.contains("battery 2400mAh") && sensor.contains("years"),
        "{sensor}"
    );
    let meter = text
        .lines()
        .find(|l| l.starts_with("smart-meter "))
        .expect("smart-meter row");
    assert!(meter.contains("mains"), "{meter}");
}

#[test]
fn plan_is_byte_identical_across_runs() {
    let args = ["plan", "scenarios/provisioning-storm.toml", "--devices", "0..3000"];
    let first = fleetsim(&args);
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    let second = fleetsim(&args);
    assert_eq!(first.stdout, second.stdout);
    assert_eq!(plan_rows(&first).len(), 3000);
}

#[test]
fn shards_together_equal_the_whole_plan() {
    let whole = plan_rows(&fleetsim(&["plan", "scenarios/quickstart.toml"]));
    assert_eq!(whole.len(), 2000);
    for count in [2, 3, 7] {
        let mut joined: Vec<String> = (0..count)
            .flat_map(|k| {
                plan_rows(&fleetsim(&[
                    "plan",
                    "scenarios/quickstart.toml",
                    "--shard",
                    &format!("{k}/{count}"),
                ]))
            })
            .collect();
        joined.sort_by_key(|row| row.split_whitespace().next().and_then(|i| i.parse::<u64>().ok()));
        assert_eq!(joined, whole, "{count} shards");
    }
}

#[test]
fn a_device_range_is_a_slice_of_the_whole_plan() {
    let whole = plan_rows(&fleetsim(&["plan", "scenarios/quickstart.toml"]));
    let slice = plan_rows(&fleetsim(&[
        "plan",
        "scenarios/quickstart.toml",
        "--devices",
        "100..250",
        "--shard",
        "1/3",
    ]));
    let expected: Vec<String> = whole[100..250]
        .iter()
        .filter(|row| {
            row.split_whitespace()
                .next()
                .and_then(|i| i.parse::<u64>().ok())
                .is_some_and(|i| i % 3 == 1)
        })
        .cloned()
        .collect();
    assert_eq!(slice, expected);
}

#[test]
fn jsonl_plan_matches_the_table() {
    let table = plan_rows(&fleetsim(&["plan", "scenarios/ci-gate.toml", "--devices", "0..50"]));
    let jsonl = stdout(&fleetsim(&[
        "plan",
        "scenarios/ci-gate.toml",
        "--devices",
        "0..50",
        "--format",
        "jsonl",
    ]));
    let rows: Vec<serde_json::Value> = jsonl
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(rows.len(), 50);
    for (row, line) in rows.iter().zip(&table) {
        let cells: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(row["index"].to_string(), cells[0]);
        assert_eq!(row["serial"], cells[1]);
        assert_eq!(row["model"], cells[2]);
        assert_eq!(row["group"], cells[3]);
    }
}

#[test]
fn backend_refuses_an_address_in_use_with_exit_2() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let data = std::env::temp_dir().join(format!("fleetsim-cli-backend-{}", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_fleetsim"))
        .args(["backend", "--mqtt", &addr, "--http", "127.0.0.1:0", "--data"])
        .arg(&data)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    let expected = format!("error: cannot listen for MQTT on {addr}:");
    assert!(err.lines().any(|line| line.starts_with(&expected)), "{err}");
    let _ = std::fs::remove_dir_all(&data);
}

#[test]
fn compare_passes_the_same_run_and_fails_a_regression_naming_it() {
    let dir = "sim/tests/fixtures/compare";
    let same = fleetsim(&[
        "compare",
        &format!("{dir}/baseline.json"),
        &format!("{dir}/baseline.json"),
    ]);
    assert_eq!(same.status.code(), Some(0), "{}", String::from_utf8_lossy(&same.stderr));
    let stdout = String::from_utf8_lossy(&same.stdout);
    assert!(stdout.starts_with("metric "), "{stdout}");
    assert!(
        stdout.contains("0 worse, 0 missing (allowed regression 10%)"),
        "{stdout}"
    );

    let worse = fleetsim(&["compare", &format!("{dir}/baseline.json"), &format!("{dir}/worse.json")]);
    assert_eq!(worse.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&worse.stdout);
    let line = |metric: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(metric))
            .unwrap_or_else(|| panic!("{metric} in {stdout}"))
            .to_owned()
    };
    assert!(line("publish.latency.p99_ms ").ends_with("1.50  WORSE"), "{stdout}");
    assert!(line("errors.timeout ").ends_with("inf  WORSE"), "{stdout}");
    assert!(stdout.contains("2 worse"), "{stdout}");

    let lenient = fleetsim(&[
        "compare",
        &format!("{dir}/baseline.json"),
        &format!("{dir}/worse.json"),
        "--max-regression",
        "60%",
    ]);
    assert_eq!(
        lenient.status.code(),
        Some(1),
        "errors from none are worse at any limit"
    );

    let missing = fleetsim(&["compare", &format!("{dir}/baseline.json"), "no/such/report"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no/such/report: "));
    let not_summary = fleetsim(&["compare", &format!("{dir}/baseline.json"), "Cargo.toml"]);
    assert_eq!(not_summary.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&not_summary.stderr).contains("not a fleetsim summary"));
}
