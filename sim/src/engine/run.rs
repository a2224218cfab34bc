//! A whole run: start or find the backend (its dialect's [`Dialect::start`]), run the fleet as
//! one shard per core (each on its own thread) while the operator plays the phases on
//! another, aggregate the shards' figures once a second into a progress line, read the
//! backend's own view at the end, and write the report folder: `summary.json`,
//! `histograms.hlog`, `timeseries.csv`, `junit.xml` and `report.html`.
//!
//! The run is generic over the dialect: [`run`] asks the registry ([`crate::dialect::visit`])
//! for the scenario's kind once, and everything after is that dialect's instance. A scenario
//! its backend cannot run (a kind no dialect runs yet, operator phases against a plain
//! broker) is refused up front with a message naming what is missing, rather than run without
//! it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::Duration;

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::exporter::Exporter;
use super::live::{Live, Update};
use super::open_files::OpenFiles;
use super::operator::{Operator, OperatorReport};
use super::process_stats::{machine_facts, rss_bytes};
use super::progress::{Aggregate, Outputs, aggregate};
use super::shard::{ShardOptions, TICK_QUEUE, Tick, run_shard};
use super::watch::{watch, watch_alerts, watch_campaigns};
use crate::dialect::{self, Dialect, OperatorLog, StartError, Started, ViewCx, Visit};
use crate::metrics::recorder::{Counter, Latency, Snapshot};
use crate::plan::{Plan, Shard};
use crate::report::figures::Figures;
use crate::report::gates::{self, Verdict};
use crate::report::hlog::HistogramLog;
use crate::report::{html, junit, timeseries};
use crate::scenario::Loaded;

/// Operator event lines waiting for the aggregator to print them.
const EVENT_QUEUE: usize = 256;

/// Why a run could not start or finish.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The scenario asks for something this version does not run yet.
    #[error("{0}")]
    Unsupported(String),
    /// The backend could not start, be reached or logged in to, or a secret is missing.
    #[error("{0}")]
    Backend(String),
    /// A file the scenario names is not what it should be.
    #[error("{0}")]
    BadFile(String),
    /// Writing the summary or the progress failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl From<StartError> for RunError {
    fn from(error: StartError) -> Self {
        match error {
            StartError::Unsupported(why) => Self::Unsupported(why),
            StartError::Backend(why) => Self::Backend(why),
            StartError::BadFile(why) => Self::BadFile(why),
        }
    }
}

/// Where a run writes, and how it reports progress.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The report folder; `reports/<scenario>-<utc timestamp>` when `None`.
    pub out: Option<PathBuf>,
    /// Cancel to stop the run early (Ctrl-C, SIGTERM): devices disconnect, the summary is
    /// written and marked incomplete.
    pub stop: CancellationToken,
    /// Command-line overrides applied to the scenario, by option name, recorded in the
    /// summary so a report says what was changed.
    pub overrides: Vec<(&'static str, String)>,
    /// The part of the fleet this process runs (`--shard K/N`); shard 0 also plays the
    /// operator. The shards of one run share a backend, and their reports merge.
    pub shard: Shard,
    /// A worker of a `--workers` run: progress goes to the parent as wire lines.
    pub worker: bool,
    /// Where the dashboard reads the run, if one watches: a frame a second and the
    /// campaigns, instead of progress lines.
    pub live: Option<mpsc::SyncSender<Update>>,
    /// While set, no new device arrives (the dashboard's pause).
    pub paused: Arc<AtomicBool>,
    /// Where the live figures are served for Prometheus (`--metrics-addr`), if anywhere.
    pub metrics: Option<Arc<Exporter>>,
}

/// What a run produced.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    /// The report folder.
    pub out: PathBuf,
    /// The summary written to `summary.json`.
    pub summary: Value,
    /// The scenario's gates, checked.
    pub verdicts: Vec<Verdict>,
    /// False when the run was stopped before its duration.
    pub completed: bool,
}

/// Runs a loaded scenario; progress lines go to `progress`.
pub fn run(loaded: &Loaded, options: &RunOptions, progress: &mut dyn Write) -> Result<RunOutcome, RunError> {
    refuse_unsupported(loaded)?;
    let scenario = &loaded.scenario;
    let out = options.out.clone().unwrap_or_else(|| default_out(&scenario.name));
    std::fs::create_dir_all(&out)?;
    let open_files = super::open_files::raise();
    let fleet = Fleet {
        loaded,
        options,
        progress,
        out,
        open_files,
    };
    let kind = scenario.backend.kind;
    dialect::visit(kind, fleet).unwrap_or_else(|| Err(RunError::Unsupported(dialect::not_running(kind))))
}

/// A run about to start, waiting for its dialect.
struct Fleet<'a> {
    loaded: &'a Loaded,
    options: &'a RunOptions,
    progress: &'a mut dyn Write,
    out: PathBuf,
    open_files: OpenFiles,
}

impl Visit for Fleet<'_> {
    type Output = Result<RunOutcome, RunError>;

    fn visit<D: Dialect>(self) -> Self::Output {
        run_with::<D>(self)
    }
}

/// Runs the fleet against dialect `D`'s backend.
fn run_with<D: Dialect>(fleet: Fleet<'_>) -> Result<RunOutcome, RunError> {
    let Fleet {
        loaded,
        options,
        progress,
        out,
        open_files,
    } = fleet;
    let scenario = &loaded.scenario;
    let Started { dialect, hosted } = D::start(scenario, &out)?;
    let fleet_shard = options.shard;
    let hosted = match hosted {
        Some(hosted) if fleet_shard.count > 1 => {
            let message = format!(
                "--shard {}/{}: the shards of one run must share a backend; run one in its own \
                 process ({}) and give every shard its URL",
                fleet_shard.index, fleet_shard.count, hosted.own_process
            );
            hosted.stop();
            return Err(RunError::Unsupported(message));
        }
        hosted => hosted,
    };
    let backend_in_process = hosted.is_some();
    let devices = devices_in(loaded, fleet_shard);
    let mut hlog = match HistogramLog::create(&out.join("histograms.hlog"), std::time::SystemTime::now()) {
        Ok(log) => Some(log),
        Err(e) => {
            writeln!(progress, "warning: histograms.hlog: {e}; the run goes on without it")?;
            None
        }
    };
    // A backend in this process holds the other end of every device's connection.
    let sockets_per_device = if backend_in_process { 2 } else { 1 };
    let sockets = always_connected(loaded, devices).saturating_mul(sockets_per_device);
    if let Some(message) = open_files.shortfall(sockets) {
        let standalone = match &hosted {
            Some(hosted) => format!(", or run the backend in its own process ({})", hosted.own_process),
            None => String::new(),
        };
        writeln!(progress, "warning: {message}{standalone}")?;
    }
    // Before the clock starts: growing the table mid-run stalls the thread that opens a socket.
    // A table that will not grow now grows as sockets open, as it always did.
    let _ = open_files.reserve(sockets);
    let rss_before = rss_bytes();
    let shards = shard_threads(
        thread::available_parallelism().map_or(1, |n| n.get()),
        options.worker.then_some(fleet_shard.count),
    );
    let start = tokio::time::Instant::now();
    let stop = options.stop.clone();
    let log = Arc::new(OperatorLog::default());
    let (tx, rx) = mpsc::sync_channel::<(u32, Tick)>(TICK_QUEUE * shards as usize);
    // A phase a second at most, in practice a handful a run.
    let (events_tx, events_rx) = mpsc::sync_channel::<String>(EVENT_QUEUE);
    // One operator per run: shard 0's.
    let operator = (fleet_shard.index == 0 && dialect.operates()).then(|| Operator {
        dialect: dialect.clone(),
        log: Arc::clone(&log),
        events: Some(events_tx),
    });
    let plan = Plan::new(loaded);
    // Cancelled when the devices are done (or on a signal): ends the operator and the watch.
    let run_over = stop.child_token();
    let (aggregate, (report, outages)) = thread::scope(|scope| {
        let played = operator.as_ref().map(|operator| {
            let run_over = run_over.clone();
            scope.spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
                Ok::<_, std::io::Error>(runtime.block_on(async {
                    let (report, outages, (), alerts) = tokio::join!(
                        operator.play(scenario, start, &run_over),
                        watch(&operator.dialect, start, &run_over, operator.events.as_ref()),
                        watch_campaigns(&operator.dialect, &operator.log, &run_over, options.live.as_ref()),
                        watch_alerts(&operator.dialect, &operator.log, &run_over, options.live.as_ref()),
                    );
                    (report, outages, alerts)
                }))
            })
        });
        let mut handles = Vec::new();
        for index in 0..shards {
            let (plan, dialect, stop, tx) = (&plan, dialect.clone(), stop.clone(), tx.clone());
            let log = Arc::clone(&log);
            handles.push(scope.spawn(move || {
                let (ticks_tx, ticks_rx) = mpsc::sync_channel::<Tick>(TICK_QUEUE);
                let forward = thread::spawn(move || {
                    while let Ok(tick) = ticks_rx.recv() {
                        if tx.send((index, tick)).is_err() {
                            break;
                        }
                    }
                });
                let options = ShardOptions {
                    ticks: Some(ticks_tx),
                    record_transitions: false,
                    operator: log,
                    paused: Arc::clone(&options.paused),
                };
                // Thread `index` of this process's shard: the devices i with
                // i mod (N * threads) == K + N * index, so shards of shards stay disjoint.
                let thread_shard = Shard {
                    index: fleet_shard.index + fleet_shard.count * index,
                    count: fleet_shard.count * shards,
                };
                let result = run_shard(plan, thread_shard, dialect, start, stop, options);
                let _ = forward.join();
                result
            }));
        }
        drop(tx);
        let mut live = options
            .live
            .clone()
            .map(|tx| Live::new(tx, &scenario.gates, devices, rss_before));
        let outputs = Outputs {
            progress: &mut *progress,
            hlog: hlog.as_mut(),
            live: live.as_mut(),
            wire: options.worker,
            metrics: options.metrics.as_deref(),
        };
        let mut aggregate = aggregate(&rx, &events_rx, shards, devices, outputs);
        let mut rest = Snapshot::default();
        for handle in handles {
            // A shard thread that panicked is a bug; its figures are lost, the run still ends.
            if let Ok(Ok(result)) = handle.join() {
                rest.merge(&result.snapshot);
            }
        }
        run_over.cancel();
        let (report, outages, alerts) = played
            .and_then(|handle| handle.join().ok())
            .and_then(Result::ok)
            .unwrap_or_default();
        // What the operator's watch measured of the backend's alerts joins what the shards
        // recorded after their last tick: the log's last, partial interval, so that the log
        // adds up to the summary.
        rest.merge(&alerts);
        aggregate.total.merge(&rest);
        let ticked = Duration::from_secs(aggregate.seconds.len() as u64 + 1);
        if let Some(log) = hlog.as_mut() {
            let _ = log.interval(ticked, start.elapsed().saturating_sub(ticked), &rest);
        }
        (aggregate, (report, outages))
    });
    let Aggregate {
        total: snapshot,
        states,
        seconds,
    } = aggregate;
    let groups: Vec<&str> = scenario.fleet.mix.iter().map(|m| m.group.as_str()).collect();
    let view_cx = ViewCx {
        groups: &groups,
        campaigns: &report.campaigns,
        operated: operator.is_some(),
        snapshot: &snapshot,
    };
    let view = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(dialect.view(view_cx));
    for note in &view.notes {
        writeln!(progress, "{note}")?;
    }
    if let Some(log) = hlog {
        log.finish()?;
    }
    if let Some(hosted) = hosted {
        hosted.stop();
    }
    let window = scenario
        .fleet
        .arrival
        .window(scenario.fleet.devices)
        .as_secs_f64()
        .max(1e-3);
    let provisioned = snapshot.count(Counter::Provisioned);
    let backend_active = view.devices_active;
    let figures = Figures {
        provision_rate: provisioned as f64 / window,
        // One shard's devices against the whole backend's count says nothing: lost devices are
        // counted by runs of the whole fleet.
        lost: backend_active
            .filter(|_| fleet_shard.count == 1)
            .map(|active| provisioned.saturating_sub(report.decommissioned).saturating_sub(active)),
        states,
        campaigns: view.campaigns,
        first_failure_ms: log.first_failure_ms(),
        backend_outages: outages,
        seconds,
        rss_before,
        snapshot,
    };
    let completed = !stop.is_cancelled();
    let mut verdicts = gates::evaluate(&scenario.gates, &figures);
    if !completed {
        // Figures of a run cut short are not the scenario's figures: no gate passes on them.
        verdicts.iter_mut().for_each(|v| v.passed = false);
    }
    let mut summary = summary(
        loaded,
        options,
        &figures,
        &report,
        &verdicts,
        start.elapsed(),
        completed,
        backend_active,
    );
    if summary["harness"].is_object() {
        summary["harness"]["backend_in_process"] = json!(backend_in_process);
    }
    if let Some(section) = view.section {
        summary[D::KIND.name()] = section;
    }
    write_report(&out, scenario.name.as_str(), &summary, &figures, &verdicts, completed)?;
    Ok(RunOutcome {
        out,
        summary,
        verdicts,
        completed,
    })
}

/// Writes the report folder's files: `summary.json`, `timeseries.csv`, `report.html` and
/// `junit.xml` (`histograms.hlog` is written as the run goes).
fn write_report(
    out: &Path,
    name: &str,
    summary: &Value,
    figures: &Figures,
    verdicts: &[Verdict],
    completed: bool,
) -> Result<(), RunError> {
    // Serializing a tree of JSON values cannot fail.
    std::fs::write(
        out.join("summary.json"),
        serde_json::to_string_pretty(summary).unwrap_or_default(),
    )?;
    let series = timeseries::render(&figures.seconds);
    std::fs::write(out.join("timeseries.csv"), &series)?;
    let histograms = Latency::ALL
        .iter()
        .filter_map(|l| Some((l.name().to_owned(), figures.snapshot.histogram(*l)?.clone())))
        .collect();
    std::fs::write(out.join("report.html"), html::render(summary, &series, &histograms))?;
    let elapsed_s = summary["elapsed_s"].as_f64().unwrap_or(0.0);
    std::fs::write(
        out.join("junit.xml"),
        junit::render(name, verdicts, completed, elapsed_s),
    )?;
    Ok(())
}

/// Refuses what this version does not run, naming it: a kind no dialect runs, a phase its
/// backend cannot play.
pub fn refuse_unsupported(loaded: &Loaded) -> Result<(), RunError> {
    dialect::refuse(&loaded.scenario).map_err(RunError::Unsupported)
}

/// How many of `devices`, this process's share of the fleet, hold a connection for the whole
/// run: duty-cycled ones hold one only for a moment at each report.
fn always_connected(loaded: &Loaded, devices: u64) -> u64 {
    let fleet = &loaded.scenario.fleet;
    let share: f64 = fleet
        .mix
        .iter()
        .filter(|m| {
            loaded
                .models
                .get(&m.model)
                .is_none_or(|model| !model.telemetry.duty_cycle)
        })
        .map(|m| m.share)
        .sum();
    (devices as f64 * share.min(1.0)).ceil() as u64
}

/// How many shard threads a process runs on a machine of `cores`: one a core (eight at most),
/// shared out among a `--workers` run's sibling processes when it is one of `workers`. More
/// threads than cores only take turns, and each wakes for its own few devices at every step
/// of the wake grid: 100,000 busy devices as six workers of two threads each on two cores
/// cost 8.0% of a core per 1,000 messages a second, as six of one thread 6.3% and 6.4%
/// (docs/scale.md).
fn shard_threads(cores: usize, workers: Option<u32>) -> u32 {
    let cores = u32::try_from(cores.clamp(1, 8)).unwrap_or(8);
    (cores / workers.unwrap_or(1).max(1)).max(1)
}

/// The devices of the fleet that `shard` runs.
pub(super) fn devices_in(loaded: &Loaded, shard: Shard) -> u64 {
    let (n, k, count) = (
        loaded.scenario.fleet.devices,
        u64::from(shard.index),
        u64::from(shard.count),
    );
    (n + count - 1 - k) / count
}

/// `summary.json`: the scenario, the run, every metric, the phases and campaigns, the gates.
#[allow(clippy::too_many_arguments)]
fn summary(
    loaded: &Loaded,
    options: &RunOptions,
    figures: &Figures,
    report: &OperatorReport,
    verdicts: &[Verdict],
    elapsed: Duration,
    completed: bool,
    backend_active: Option<u64>,
) -> Value {
    let scenario = &loaded.scenario;
    let (metrics, campaigns) = figures.to_json();
    let phases: Vec<Value> = report
        .phases
        .iter()
        .map(|p| json!({ "at_s": p.at_s, "action": p.action, "groups": p.groups, "detail": p.detail, "errors": p.errors }))
        .collect();
    json!({
        "scenario": scenario.name,
        "seed": scenario.seed,
        "devices": devices_in(loaded, options.shard),
        "shard": format!("{}/{}", options.shard.index, options.shard.count),
        "duration_s": scenario.duration.as_secs_f64(),
        "time_scale": scenario.time_scale,
        "elapsed_s": (elapsed.as_secs_f64() * 1e3).round() / 1e3,
        "version": env!("CARGO_PKG_VERSION"),
        "machine": machine_facts(),
        "completed": completed,
        "overrides": options.overrides.iter().map(|(k, v)| ((*k).to_owned(), json!(v))).collect::<serde_json::Map<_, _>>(),
        "metrics": metrics,
        "phases": phases,
        "campaigns": campaigns,
        "backend_outages": figures.outages_json(),
        "harness": figures.harness_json(),
        "backend": { "devices_active": backend_active, "decommissioned_by_operator": report.decommissioned },
        "gates": verdicts.iter().map(|v| json!({ "gate": v.gate.to_string(), "measured": v.measured, "passed": v.passed, "verdict": v.to_string() })).collect::<Vec<_>>(),
    })
}

/// `reports/<scenario>-<UTC timestamp>`.
pub(super) fn default_out(name: &str) -> PathBuf {
    Path::new("reports").join(format!("{name}-{}", utc_stamp(std::time::SystemTime::now())))
}

/// `YYYYMMDDTHHMMSSZ` for a system time (civil calendar from days since 1970).
fn utc_stamp(at: std::time::SystemTime) -> String {
    let secs = at.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's days-to-civil algorithm.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_share_the_cores_out_and_keep_a_thread_each() {
        assert_eq!(shard_threads(2, None), 2);
        assert_eq!(shard_threads(64, None), 8);
        assert_eq!(shard_threads(2, Some(6)), 1, "six workers on two cores");
        assert_eq!(shard_threads(8, Some(2)), 4);
        assert_eq!(shard_threads(0, Some(0)), 1);
    }

    #[test]
    fn utc_stamps_follow_the_calendar() {
        let at = |secs| std::time::UNIX_EPOCH + Duration::from_secs(secs);
        assert_eq!(utc_stamp(at(0)), "19700101T000000Z");
        assert_eq!(utc_stamp(at(951_782_400)), "20000229T000000Z");
        assert_eq!(utc_stamp(at(1_795_392_000 + 3_723)), "20261123T010203Z");
    }
}
