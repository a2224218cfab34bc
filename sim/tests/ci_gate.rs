//! The nightly gate's path, at a small size on every test run: the ci-gate scenario runs with
//! its phases and gates, every gate is measured and judged, a complete report folder is
//! written, and `fleetsim compare` reads it against itself and against the committed
//! baseline. A broken gate path fails here first. (Whether latencies meet their thresholds is
//! the nightly's question, on a quiet machine, not this test's.)

#[path = "support/binary.rs"]
mod binary;
use binary::{REPORT_FILES, fleetsim, scratch};

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
    // Latency gates depend on how busy the machine is (other tests run beside this one), so
    // this test does not time anything. It checks the gate path: every gate was measured and
    // judged, the exit code follows the verdicts, and the figures that do not depend on speed
    // hold.
    let passed = stdout.matches("\npass  ").count();
    let failed = stdout.matches("\nFAIL  ").count();
    assert_eq!(passed + failed, 8, "every gate judged: {stdout}");
    assert!(!stdout.contains("not measured"), "every gate measured: {stdout}");
    assert_eq!(ran.status.code(), Some(i32::from(failed > 0)), "{stdout}");
    for gate in ["devices.lost == 0", "errors.total == 0"] {
        assert!(stdout.contains(&format!("pass  {gate}")), "{gate}: {stdout}");
    }
    for file in REPORT_FILES {
        assert!(out.join(file).is_file(), "{file}");
    }
    let junit = std::fs::read_to_string(out.join("junit.xml")).expect("junit.xml");
    assert!(junit.contains(&format!("tests=\"8\" failures=\"{failed}\"")), "{junit}");

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
}
