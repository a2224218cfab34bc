//! Running the `fleetsim` binary from a test, as a user would: from the repository root, with
//! scratch folders of its own, reading back what it wrote.
#![allow(dead_code)] // Each test file uses a different part.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// The files every report folder holds.
pub const REPORT_FILES: [&str; 5] = [
    "summary.json",
    "histograms.hlog",
    "timeseries.csv",
    "junit.xml",
    "report.html",
];

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `fleetsim ARGS...`, to run from the repository root.
fn command<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_fleetsim"));
    command.args(args).current_dir(repo());
    command
}

/// Runs `fleetsim ARGS...` from the repository root.
pub fn fleetsim<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Output {
    command(args).output().expect("the fleetsim binary runs")
}

/// Runs `fleetsim ARGS...` from the repository root with more environment variables.
pub fn fleetsim_env<S: AsRef<std::ffi::OsStr>>(args: &[S], env: &[(String, String)]) -> Output {
    command(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("the fleetsim binary runs")
}

/// Starts `fleetsim ARGS...` from the repository root, its output piped, for a test that acts
/// on the process while it runs (signals it, kills its workers); `wait_with_output` ends it.
pub fn spawn_fleetsim<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> std::process::Child {
    command(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the fleetsim binary runs")
}

/// Runs `fleetsim run SCENARIO --out OUT --headless` from the repository root.
pub fn run_headless(scenario: &Path, out: &Path) -> Output {
    fleetsim(&[
        Path::new("run"),
        scenario,
        Path::new("--out"),
        out,
        Path::new("--headless"),
    ])
}

/// Runs `fleetsim run SCENARIO --backend http://API --out OUT --headless` from the repository
/// root: a run against a backend already serving its operator API at `api` (`IP:PORT`).
pub fn run_against(api: &str, scenario: &Path, out: &Path) -> Output {
    fleetsim(&[
        "run".as_ref(),
        scenario.as_os_str(),
        "--backend".as_ref(),
        format!("http://{api}").as_ref(),
        "--out".as_ref(),
        out.as_os_str(),
        "--headless".as_ref(),
    ])
}

/// An empty scratch folder for this test process, named after `tag` (created by whoever
/// writes into it), removed when the test passes: see [`Scratch`].
pub fn scratch(tag: &str) -> Scratch {
    let dir = std::env::temp_dir().join(format!("fleetsim-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    Scratch(dir)
}

/// A test's scratch folder, removed when dropped unless the test is failing (its thread
/// panicking): a failed test's reports and databases stay in the temporary folder for a look,
/// a passing one leaves nothing (a suite's run left about 30 MB behind).
#[derive(Debug)]
pub struct Scratch(PathBuf);

impl std::ops::Deref for Scratch {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for Scratch {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<std::ffi::OsStr> for Scratch {
    fn as_ref(&self) -> &std::ffi::OsStr {
        self.0.as_os_str()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// The `summary.json` of a report folder.
pub fn summary(dir: &Path) -> Value {
    let text = std::fs::read_to_string(dir.join("summary.json")).expect("summary.json");
    serde_json::from_str(&text).expect("summary.json is JSON")
}

/// Writes `scenario` (its text) to `dir/NAME.toml`, runs it headless into `dir/NAME-report`,
/// asserts the run passed (exit 0), and returns its summary.
pub fn run_passing(dir: &Path, name: &str, scenario: &str) -> Value {
    let file = dir.join(format!("{name}.toml"));
    std::fs::write(&file, scenario).expect("scenario written");
    let out = dir.join(format!("{name}-report"));
    assert_exit(&run_headless(&file, &out), 0);
    summary(&out)
}

/// Counter `name` of a summary (0 when absent).
pub fn counter(summary: &Value, name: &str) -> u64 {
    summary["metrics"]["counters"][name].as_u64().unwrap_or(0)
}

/// All the errors a summary counts: its `errors.*` counters added up.
pub fn errors_total(summary: &Value) -> u64 {
    summary["metrics"]["counters"]
        .as_object()
        .expect("counters")
        .iter()
        .filter(|(name, _)| name.starts_with("errors."))
        .filter_map(|(_, n)| n.as_u64())
        .sum()
}

/// Asserts the process exited with `code`, showing its output otherwise.
pub fn assert_exit(output: &Output, code: i32) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
