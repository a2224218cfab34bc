//! `fleetsim run SCENARIO`: runs the fleet against the scenario's backend (the embedded
//! reference backend by default), shows the live dashboard (or prints a progress line a
//! second), prints the gate verdicts, writes `summary.json`, and exits 1 when a gate fails.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, mpsc};
use std::time::Duration;

use crate::engine::exporter::Exporter;
use crate::engine::live::LIVE_QUEUE;
use crate::engine::run::{RunOptions, run as run_scenario};
use crate::engine::workers::{Workers, run_workers};
use crate::metrics::recorder::Snapshot;
use crate::report::figures::Second;
use crate::report::prometheus;
use crate::scenario::units::DisplayDuration;
use crate::scenario::{Action, Loaded};
use crate::store::{self, Location, ObjectUrl};
use crate::tui::Dashboard;
use crate::tui::model::Outline;

use super::{CliError, Exit};

/// Command-line overrides of a scenario, recorded in the summary.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// Fleet size.
    pub devices: Option<u64>,
    /// Run length.
    pub duration: Option<Duration>,
    /// Seed.
    pub seed: Option<u64>,
    /// Simulated seconds per real second.
    pub time_scale: Option<f64>,
    /// The backend's URL: `http://` for a reference backend's API, `mqtt://` for a broker.
    pub backend: Option<String>,
    /// The part of the fleet to run, `K/N`.
    pub shard: Option<crate::plan::Shard>,
    /// Run as this many worker processes.
    pub workers: Option<u32>,
    /// Run as a worker of a `--workers` run.
    pub worker: bool,
    /// Serve the live figures for Prometheus here (not a change to the scenario: not
    /// recorded, and a `--workers` run's parent serves them for all its workers).
    pub metrics_addr: Option<std::net::SocketAddr>,
}

/// Runs `loaded` with `overrides`; the report goes to `to` (or `reports/...`); a URL's report
/// is written to a staging folder and uploaded at the end. The run is shown on the live
/// dashboard when stdout is a terminal and `headless` is false, else as a progress line a
/// second.
pub fn run(
    mut loaded: Loaded,
    overrides: &Overrides,
    to: Option<Location>,
    headless: bool,
    out: &mut dyn Write,
) -> Result<Exit, CliError> {
    let scenario = &mut loaded.scenario;
    if let Some(url) = &overrides.backend {
        aim(scenario, url)?;
    }
    crate::engine::run::refuse_unsupported(&loaded)?;
    let scenario = &mut loaded.scenario;
    if let Some(devices) = overrides.devices {
        scenario.fleet.devices = devices;
    }
    if let Some(duration) = overrides.duration {
        scenario.duration = duration;
    }
    if let Some(seed) = overrides.seed {
        scenario.seed = seed;
    }
    if let Some(scale) = overrides.time_scale {
        if !(scale.is_finite() && scale > 0.0) {
            return Err(CliError::Usage(format!(
                "--time-scale {scale}: expected a number above 0 (simulated seconds per real second)"
            )));
        }
        scenario.time_scale = scale;
    }
    let alert_phase = scenario.phases.iter().find(|p| matches!(p.action, Action::Alert(_)));
    let split = overrides.workers.is_some_and(|n| n > 1) || overrides.shard.is_some_and(|s| s.count > 1);
    if let (Some(phase), true) = (alert_phase, split) {
        return Err(CliError::Usage(format!(
            "phase \"alert\" at {}: the alerts a rule calls for are matched within one process for now \
             (the devices note what they crossed where the operator reads what the backend raised); \
             run this scenario without --workers and --shard",
            DisplayDuration(phase.at)
        )));
    }
    if overrides.duration.is_some()
        && let Some(problem) = scenario.timeline_problem()
    {
        return Err(CliError::Usage(format!(
            "--duration {}: {problem}; give a longer --duration",
            DisplayDuration(scenario.duration)
        )));
    }
    let window = scenario.fleet.arrival.window(scenario.fleet.devices);
    if scenario.fleet.devices == 0 || window >= scenario.duration {
        return Err(CliError::Usage(format!(
            "with {} devices arrivals take {}, but the run lasts {}: give fewer --devices or a longer --duration",
            scenario.fleet.devices,
            DisplayDuration(window),
            DisplayDuration(scenario.duration)
        )));
    }
    let backend = match (&scenario.backend.api, &scenario.backend.url) {
        (Some(api), _) => format!("{} backend at {api}", scenario.backend.kind.name()),
        (None, Some(url)) => format!("{} backend at {url}", scenario.backend.kind.name()),
        (None, None) => "embedded backend in process".to_owned(),
    };
    writeln!(
        out,
        "fleetsim run: scenario {} (seed {}), {} devices for {}, {backend}",
        scenario.name,
        scenario.seed,
        scenario.fleet.devices,
        DisplayDuration(scenario.duration)
    )?;
    let mut recorded = Vec::new();
    if let Some(devices) = overrides.devices {
        recorded.push(("devices", devices.to_string()));
    }
    if let Some(duration) = overrides.duration {
        recorded.push(("duration", DisplayDuration(duration).to_string()));
    }
    if let Some(seed) = overrides.seed {
        recorded.push(("seed", seed.to_string()));
    }
    if let Some(scale) = overrides.time_scale {
        recorded.push(("time_scale", scale.to_string()));
    }
    if let Some(url) = &overrides.backend {
        recorded.push(("backend", url.clone()));
    }
    if let Some(shard) = overrides.shard {
        recorded.push(("shard", format!("{}/{}", shard.index, shard.count)));
    }
    let (out_dir, upload_to) = destination(to, &loaded.scenario.name)?;
    let stop = tokio_util::sync::CancellationToken::new();
    let _signals = stop_on_signal(stop.clone());
    let paused = Arc::new(AtomicBool::new(false));
    let metrics = match overrides.metrics_addr {
        Some(addr) => {
            let empty = prometheus::exposition(
                &Snapshot::default(),
                &Second::default(),
                loaded.scenario.fleet.devices,
                0,
            );
            let exporter = Exporter::bind(addr, empty).map_err(|e| {
                CliError::Usage(format!(
                    "--metrics-addr {addr}: cannot listen there ({e}); name a free port, or port 0 for any"
                ))
            })?;
            writeln!(out, "metrics: http://{}/metrics", exporter.local_addr())?;
            Some(Arc::new(exporter))
        }
        None => None,
    };
    let (live, updates) = mpsc::sync_channel(LIVE_QUEUE);
    let dashboard = if !headless && std::io::stdout().is_terminal() {
        out.flush()?;
        let outline = Outline::of(&loaded.scenario, &backend);
        match Dashboard::start(outline, updates, stop.clone(), Arc::clone(&paused)) {
            Ok(dashboard) => Some(dashboard),
            Err(e) => {
                writeln!(out, "warning: no dashboard ({e}): progress lines instead")?;
                None
            }
        }
    } else {
        None
    };
    let options = RunOptions {
        out: out_dir.clone(),
        stop,
        overrides: recorded,
        shard: overrides.shard.unwrap_or(crate::plan::Shard::WHOLE),
        live: dashboard.is_some().then_some(live),
        paused,
        worker: overrides.worker,
        metrics,
    };
    let workers = overrides.workers.filter(|n| *n > 1).map(|count| Workers {
        count,
        args: worker_args(&loaded, overrides),
    });
    // What the run writes while the dashboard has the screen (warnings), for afterwards.
    let mut held = Vec::new();
    let progress: &mut dyn Write = if dashboard.is_some() { &mut held } else { &mut *out };
    let result = match &workers {
        Some(workers) => run_workers(&loaded, &options, workers, progress),
        None => run_scenario(&loaded, &options, progress),
    };
    drop(options);
    // The terminal is given back before anything else is said, an error included. A
    // dashboard that failed mid-run (its drawing, or a panic) costs the run nothing else.
    let cost = match dashboard.map(Dashboard::finish) {
        Some(Ok(cost)) => Some(cost),
        Some(Err(e)) => {
            writeln!(out, "warning: dashboard: {e}")?;
            None
        }
        None => None,
    };
    out.write_all(&held)?;
    let outcome = match result {
        Ok(outcome) => outcome,
        Err(e) => {
            // A run that could not finish wrote no report: its staging folder holds nothing to
            // upload or keep.
            if let (Some(_), Some(staging)) = (&upload_to, &out_dir) {
                let _ = std::fs::remove_dir_all(staging);
            }
            return Err(e.into());
        }
    };
    if let Some(cost) = cost {
        writeln!(out, "{cost}")?;
    }
    if !outcome.completed {
        let why = outcome.summary["stopped"]["reason"]
            .as_str()
            .map_or(String::new(), |reason| format!(" ({reason})"));
        writeln!(
            out,
            "stopped early{why}: the summary is marked incomplete, and no gate passes on a partial run"
        )?;
    }
    if let Some(line) = harness_line(&outcome.summary["harness"]) {
        writeln!(out, "{line}")?;
    }
    if let Some(line) = late_line(&outcome.summary) {
        writeln!(out, "{line}")?;
    }
    for verdict in &outcome.verdicts {
        writeln!(out, "{verdict}")?;
    }
    match &upload_to {
        Some(url) => {
            let sent = store::upload(&outcome.out, url)?;
            writeln!(out, "report: {} uploaded to {url}", super::merge::size(sent))?;
            writeln!(out, "summary: {url}/summary.json")?;
            let _ = std::fs::remove_dir_all(&outcome.out);
        }
        None => writeln!(out, "summary: {}", outcome.out.join("summary.json").display())?,
    }
    let failed = outcome.verdicts.iter().filter(|v| !v.passed).count();
    if !outcome.completed {
        return Ok(Exit::Failed);
    }
    if failed > 0 {
        writeln!(out, "{failed} of {} gates failed", outcome.verdicts.len())?;
        return Ok(Exit::Failed);
    }
    Ok(Exit::Ok)
}

/// Where the run writes its folder, and the URL it goes to afterwards: an object store's
/// report is written to a staging folder first. A URL this binary cannot reach is refused here,
/// before the run rather than after it.
fn destination(to: Option<Location>, scenario: &str) -> Result<(Option<PathBuf>, Option<ObjectUrl>), CliError> {
    Ok(match to {
        None => (None, None),
        Some(Location::Folder(dir)) => (Some(dir), None),
        Some(Location::Url(url)) => {
            store::check_built(&url)?;
            (Some(store::staging(scenario)?), Some(url))
        }
    })
}

/// What every worker of a `--workers` run is given after `run`: the scenario, its models
/// folder and this run's overrides (each worker adds its shard, its folder and the backend).
fn worker_args(loaded: &Loaded, overrides: &Overrides) -> Vec<std::ffi::OsString> {
    let scenario = &loaded.scenario;
    let mut args: Vec<std::ffi::OsString> = vec![
        scenario.file.clone().into(),
        "--models".into(),
        scenario.models_dir.clone().into(),
    ];
    if let Some(devices) = overrides.devices {
        args.extend(["--devices".into(), devices.to_string().into()]);
    }
    if let Some(duration) = overrides.duration {
        args.extend(["--duration".into(), DisplayDuration(duration).to_string().into()]);
    }
    if let Some(seed) = overrides.seed {
        args.extend(["--seed".into(), seed.to_string().into()]);
    }
    if let Some(scale) = overrides.time_scale {
        args.extend(["--time-scale".into(), scale.to_string().into()]);
    }
    if let Some(url) = &overrides.backend {
        args.extend(["--backend".into(), url.into()]);
    }
    args
}

/// `harness: peak 19000 connected, RSS +29.4 MiB (1622 B a device), connects peak 2000/s, publish 21.3/s, cpu 4% of a core`
fn harness_line(harness: &serde_json::Value) -> Option<String> {
    let peak = harness["peak_connected"].as_u64()?;
    let grown = harness["rss_at_peak_bytes"]
        .as_u64()?
        .saturating_sub(harness["rss_before_bytes"].as_u64()?);
    let per_device = harness["bytes_per_connected_device"]
        .as_f64()
        .map_or("-".to_owned(), |b| format!("{b:.0} B a device"));
    let mut line = format!(
        "harness: peak {peak} connected, RSS +{:.1} MiB ({per_device}), connects peak {}/s, publish {}/s, cpu {:.0}% of a core",
        grown as f64 / (1u64 << 20) as f64,
        harness["connect_peak_per_s"],
        harness["publish_per_s"],
        harness["cores"].as_f64().unwrap_or(0.0) * 100.0
    );
    if let Some(per_1k) = harness["cores_per_1k_msg_per_s"].as_f64() {
        line.push_str(&format!(" ({:.1}% of a core per 1,000 msg/s)", per_1k * 100.0));
    }
    if let (Some(asleep @ 1..), Some(bytes)) = (
        harness["peak_sleeping"].as_u64(),
        harness["bytes_per_sleeping_device"].as_f64(),
    ) {
        line.push_str(&format!(
            "; peak {asleep} asleep ({bytes:.0} B a sleeping device), at most {} device tasks",
            harness["peak_device_tasks"]
        ));
    }
    if harness["backend_in_process"] == true {
        line.push_str(" (the backend runs in this process: its memory and CPU are included)");
    }
    Some(line)
}

/// `late sends: 35 of 425500 reports went out more than 5 ms after their intended instant: ...`,
/// for a run whose harness fell behind its schedule, and why; `None` for one that kept it.
fn late_line(summary: &serde_json::Value) -> Option<String> {
    let late = crate::report::figures::late_sends(summary)?;
    Some(format!(
        "late sends: {} of {} reports went out more than 5 ms after their intended instant: {}. The latencies \
         include that delay (late_sends_per_s in timeseries.csv says when)",
        late.late,
        late.published,
        late.why()
    ))
}

/// Points the scenario at `url`, as its dialect takes one (an `http://` URL is a reference
/// backend's operator API, an `mqtt://` URL a broker, ...).
fn aim(scenario: &mut crate::scenario::Scenario, url: &str) -> Result<(), CliError> {
    let backend = &mut scenario.backend;
    let kind = backend.kind;
    crate::dialect::aim(backend, url)
        .map_err(|takes| CliError::Usage(format!("--backend {url}: a {} scenario takes {takes}", kind.name())))
}

/// Cancels `stop` on Ctrl-C or SIGTERM, from a small runtime on its own thread (the run's
/// threads are busy with devices). The thread ends with the process.
fn stop_on_signal(stop: tokio_util::sync::CancellationToken) -> std::io::Result<std::thread::JoinHandle<()>> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    std::thread::Builder::new().name("signals".to_owned()).spawn(move || {
        runtime.block_on(async {
            let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) else {
                let _ = tokio::signal::ctrl_c().await;
                stop.cancel();
                return;
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            stop.cancel();
        });
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_behind_its_schedule_says_how_far_and_one_on_time_says_nothing() {
        let summary = |counters| serde_json::json!({ "metrics": { "counters": counters } });
        let late = summary(serde_json::json!({ "late_sends": 35, "published": 425_500 }));
        let line = late_line(&late).expect("a line");
        assert!(
            line.starts_with("late sends: 35 of 425500 reports went out more than 5 ms after"),
            "{line}"
        );
        assert!(
            line.contains("the harness or its machine fell behind"),
            "a summary without the split: {line}"
        );
        let split = summary(serde_json::json!({ "late_sends": 35, "late_sends.woken_late": 30, "published": 9 }));
        let line = late_line(&split).expect("a line");
        assert!(
            line.contains("for 30 of them the harness's thread was asleep")
                && line.contains("for the other 5 the harness's thread was awake, busy"),
            "{line}"
        );
        assert_eq!(
            late_line(&summary(serde_json::json!({ "late_sends": 0, "published": 9 }))),
            None
        );
        assert_eq!(
            late_line(&summary(serde_json::json!({}))),
            None,
            "a summary from before the counter"
        );
    }
}
