//! The nightly gate's path, at a small size on every test run: the ci-gate scenario runs with
//! its phases and gates, writes a complete report folder, and `fleetsim compare` reads it
//! against itself and against the committed baseline. A broken gate path fails here first.

#[path = "support/binary.rs"]
mod binary;
use binary::{fleetsim, scratch};

#[test]
fn ci_gate_runs_small_and_compares() {
    let out = scratch("ci-gate");
    let out_arg = out.to_str().expect("utf-8");
    // 200 devices arrive in 1 s at 200/s; the scenario's whole 60 s plays every phase and
    // leaves the reconnect storm after the outage at 40 s time to settle.
    let ran = fleetsim(&[
        "run",
        "scenarios/ci-gate.toml",
        "--devices",
        "200",
        "--headless",
        "--out",
        out_arg,
    ]);
    let stdout = String::from_utf8_lossy(&ran.stdout);
    assert_eq!(
        ran.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&ran.stderr)
    );
    assert_eq!(
        stdout.matches("\npass  ").count(),
        8,
        "every gate measured and passed: {stdout}"
    );
    for file in ["summary.json", "histograms.hlog", "timeseries.csv", "junit.xml"] {
        assert!(out.join(file).is_file(), "{file}");
    }
    let junit = std::fs::read_to_string(out.join("junit.xml")).expect("junit.xml");
    assert!(junit.contains("tests=\"8\" failures=\"0\""), "{junit}");

    let same = fleetsim(&["compare", out_arg, out_arg]);
    assert_eq!(same.status.code(), Some(0), "{}", String::from_utf8_lossy(&same.stdout));
    // Against the committed baseline (1,000 devices for 60 s) the figures differ; what matters
    // here is that the baseline is a summary compare reads (exit 0 or 1, not 2).
    let baseline = fleetsim(&["compare", "reports/baselines/ci-gate", out_arg]);
    assert!(
        matches!(baseline.status.code(), Some(0 | 1)),
        "{}",
        String::from_utf8_lossy(&baseline.stderr)
    );
    let _ = std::fs::remove_dir_all(&out);
}
