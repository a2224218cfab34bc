//! A whole run: start or find the backend ([`super::target`]), run the fleet as one shard
//! per core (each on its own thread) while the operator plays the phases on another,
//! aggregate the shards' figures once a second into a progress line, read the backend's own
//! view at the end, and write the report folder: `summary.json`, `histograms.hlog`,
//! `timeseries.csv`, `junit.xml` and `report.html`.
//!
//! A scenario this version cannot run (another dialect, operator phases against a plain
//! broker) is refused up front with a message naming what is missing, rather than run
//! without it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::Duration;

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::campaign_watch::watch_campaigns;
use super::figures::{CampaignView, Figures};
use super::live::{Live, Update};
use super::operator::{Operator, OperatorReport};
use super::operator_log::OperatorLog;
use super::process_stats::{machine_facts, rss_bytes};
use super::progress::{Aggregate, Outputs, aggregate};
use super::shard::{ShardOptions, TICK_QUEUE, Tick, run_shard};
use super::target::Target;
use super::watch::watch;
use crate::metrics::recorder::{Counter, Latency, Snapshot};
use crate::plan::{Plan, Shard};
use crate::report::gates::{self, Verdict};
use crate::report::hlog::HistogramLog;
use crate::report::{html, junit, timeseries};
use crate::scenario::Loaded;
use crate::scenario::file::BackendKind;
use crate::scenario::typed::Action;
use crate::transport::http::{Method, request_json};

/// Operator event lines waiting for the aggregator to print them.
const EVENT_QUEUE: usize = 256;

/// Why a run could not start or finish.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The scenario asks for something this version does not run yet.
    #[error("{0}")]
    Unsupported(String),
    /// The embedded backend could not start.
    #[error("embedded backend: {0}")]
    Backend(String),
    /// A third-party backend could not be reached or logged in to, or a secret is missing.
    #[error("backend: {0}")]
    Target(String),
    /// Writing the summary or the progress failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
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
    let target = Target::start(scenario, &out)?;
    let fleet_shard = options.shard;
    if fleet_shard.count > 1 && target.in_process() {
        target.stop();
        return Err(RunError::Unsupported(format!(
            "--shard {}/{}: the shards of one run must share a backend; start one \
             (`fleetsim backend`) and give every shard --backend http://...",
            fleet_shard.index, fleet_shard.count
        )));
    }
    let devices = devices_in(loaded, fleet_shard);
    let mut hlog = match HistogramLog::create(&out.join("histograms.hlog"), std::time::SystemTime::now()) {
        Ok(log) => Some(log),
        Err(e) => {
            writeln!(progress, "warning: histograms.hlog: {e}; the run goes on without it")?;
            None
        }
    };
    // A backend in this process holds the other end of every device's connection.
    let sockets_per_device = if target.in_process() { 2 } else { 1 };
    if let Some(message) = open_files.shortfall(always_connected(loaded).saturating_mul(sockets_per_device)) {
        let standalone = if target.in_process() {
            ", or run the backend in its own process (`fleetsim backend`, then --backend http://...)"
        } else {
            ""
        };
        writeln!(progress, "warning: {message}{standalone}")?;
    }
    let rss_before = rss_bytes();
    let shards = thread::available_parallelism().map_or(1, |n| n.get()).min(8) as u32;
    let start = tokio::time::Instant::now();
    let stop = options.stop.clone();
    let log = Arc::new(OperatorLog::default());
    let (tx, rx) = mpsc::sync_channel::<(u32, Tick)>(TICK_QUEUE * shards as usize);
    // A phase a second at most, in practice a handful a run.
    let (events_tx, events_rx) = mpsc::sync_channel::<String>(EVENT_QUEUE);
    // One operator per run: shard 0's.
    let operator = target.api.filter(|_| fleet_shard.index == 0).map(|api| Operator {
        api,
        log: Arc::clone(&log),
        events: Some(events_tx),
        ddi: target.dialect.ddi().and_then(|ddi| ddi.management.clone()),
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
                    // A hawkBit server has no health resource and no campaigns to follow: its
                    // devices' failed polls show it gone.
                    let reference = operator.ddi.is_none();
                    let (report, outages, ()) = tokio::join!(
                        operator.play(scenario, start, &run_over),
                        async {
                            match reference {
                                true => watch(operator.api, start, &run_over, operator.events.as_ref()).await,
                                false => Vec::new(),
                            }
                        },
                        async {
                            if reference {
                                watch_campaigns(operator, &run_over, options.live.as_ref()).await;
                            }
                        },
                    );
                    (report, outages)
                }))
            })
        });
        let mut handles = Vec::new();
        for index in 0..shards {
            let (plan, dialect, stop, tx) = (&plan, target.dialect.clone(), stop.clone(), tx.clone());
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
            progress,
            hlog: hlog.as_mut(),
            live: live.as_mut(),
            wire: options.worker,
        };
        let mut aggregate = aggregate(&rx, &events_rx, shards, devices, outputs);
        let mut rest = Snapshot::default();
        for handle in handles {
            // A shard thread that panicked is a bug; its figures are lost, the run still ends.
            if let Ok(Ok(result)) = handle.join() {
                rest.merge(&result.snapshot);
            }
        }
        aggregate.total.merge(&rest);
        // What the shards recorded after their last tick: the log's last, partial interval.
        let ticked = Duration::from_secs(aggregate.seconds.len() as u64 + 1);
        if let Some(log) = hlog.as_mut() {
            let _ = log.interval(ticked, start.elapsed().saturating_sub(ticked), &rest);
        }
        run_over.cancel();
        let played = played
            .and_then(|handle| handle.join().ok())
            .and_then(Result::ok)
            .unwrap_or_default();
        (aggregate, played)
    });
    let Aggregate {
        total: snapshot,
        states,
        seconds,
    } = aggregate;
    let (campaigns, mut backend_active) = match &operator {
        Some(operator) if operator.ddi.is_none() => backend_view(operator, &report)?,
        _ => (Vec::new(), None),
    };
    let ddi_view = match target.dialect.ddi() {
        Some(ddi) => {
            let groups: Vec<&str> = scenario.fleet.mix.iter().map(|m| m.group.as_str()).collect();
            let mut view = ddi_view(ddi, operator.as_ref().and(ddi.management.as_ref()), &groups)?;
            view["agreement"] = crate::report::hawkbit::agreement(&view["server"], &|c| snapshot.count(c));
            if let Some(line) = crate::report::hawkbit::disagreement(&view["agreement"]) {
                writeln!(progress, "{line}")?;
            }
            // The devices the server holds in the run's groups (the view counts only those).
            backend_active = view["server"]["devices"]["count"].as_u64();
            Some(view)
        }
        None => None,
    };
    if let Some(log) = hlog {
        log.finish()?;
    }
    let backend_in_process = target.in_process();
    target.stop();
    let window = scenario
        .fleet
        .arrival
        .window(scenario.fleet.devices)
        .as_secs_f64()
        .max(1e-3);
    let provisioned = snapshot.count(Counter::Provisioned);
    let figures = Figures {
        provision_rate: provisioned as f64 / window,
        // One shard's devices against the whole backend's count says nothing: lost devices are
        // counted by runs of the whole fleet.
        lost: backend_active
            .filter(|_| fleet_shard.count == 1)
            .map(|active| provisioned.saturating_sub(report.decommissioned).saturating_sub(active)),
        states,
        campaigns,
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
    if let Some(view) = ddi_view {
        summary["hawkbit"] = view;
    }
    // Serializing a tree of JSON values cannot fail.
    std::fs::write(
        out.join("summary.json"),
        serde_json::to_string_pretty(&summary).unwrap_or_default(),
    )?;
    let series = timeseries::render(&figures.seconds);
    std::fs::write(out.join("timeseries.csv"), &series)?;
    let histograms = Latency::ALL
        .iter()
        .filter_map(|l| Some((l.name().to_owned(), figures.snapshot.histogram(*l)?.clone())))
        .collect();
    std::fs::write(out.join("report.html"), html::render(&summary, &series, &histograms))?;
    let elapsed_s = summary["elapsed_s"].as_f64().unwrap_or(0.0);
    std::fs::write(
        out.join("junit.xml"),
        junit::render(&scenario.name, &verdicts, completed, elapsed_s),
    )?;
    Ok(RunOutcome {
        out,
        summary,
        verdicts,
        completed,
    })
}

/// The backend's view at the end: its campaigns, and the devices it holds as active.
fn backend_view(operator: &Operator, report: &OperatorReport) -> Result<(Vec<CampaignView>, Option<u64>), RunError> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    Ok(runtime.block_on(async {
        let mut campaigns = Vec::new();
        for started in &report.campaigns {
            if let Ok(answer) = operator.campaign(started.id).await {
                campaigns.push(CampaignView::from_answer(
                    started.id,
                    &started.group,
                    started.targeted,
                    &answer,
                ));
            }
        }
        let active = match request_json(operator.api, Method::GET, "/healthz", None).await {
            Ok((200, health)) => health["devices_active"].as_u64(),
            _ => None,
        };
        (campaigns, active)
    }))
}

/// What a hawkBit run learned about the server: the polling intervals it imposed, how devices
/// authenticated, and (with its management API) what it recorded.
fn ddi_view(
    ddi: &crate::dialect::hawkbit::Hawkbit,
    management: Option<&crate::dialect::hawkbit::Management>,
    groups: &[&str],
) -> Result<Value, RunError> {
    let imposed = ddi
        .imposed
        .range()
        .map(|(shortest, longest)| json!({ "shortest_s": shortest.as_secs_f64(), "longest_s": longest.as_secs_f64() }));
    let auth = match ddi.auth {
        crate::dialect::hawkbit::DdiAuth::TargetToken(_) => "target-token",
        crate::dialect::hawkbit::DdiAuth::GatewayToken(_) => "gateway-token",
        crate::dialect::hawkbit::DdiAuth::None => "none",
    };
    let server = match management {
        Some(management) => {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            match runtime.block_on(super::operator_ddi::server_view_patiently(management, groups)) {
                Ok(view) => view,
                Err(e) => json!({ "error": e }),
            }
        }
        None => Value::Null,
    };
    Ok(json!({ "tenant": &*ddi.tenant, "device_auth": auth, "poll_interval": imposed, "server": server }))
}

/// Refuses what this version does not run yet, naming it.
pub fn refuse_unsupported(loaded: &Loaded) -> Result<(), RunError> {
    let scenario = &loaded.scenario;
    match scenario.backend.kind {
        BackendKind::Embedded => {}
        BackendKind::Mqtt => {
            // A broker has no operator API: only phases devices live by themselves run.
            if let Some(phase) = scenario
                .phases
                .iter()
                .find(|p| !matches!(p.action, Action::Outage { .. }))
            {
                return Err(RunError::Unsupported(format!(
                    "{}: phase \"{}\" at {} needs an operator API, and an MQTT broker has none; \
                     against a broker only \"outage\" phases run",
                    scenario.file.display(),
                    phase.action.name(),
                    crate::scenario::units::DisplayDuration(phase.at)
                )));
            }
        }
        BackendKind::Hawkbit => {
            // DDI has no config push and no commands. Rollouts and retiring devices need the
            // management API.
            let has_api = scenario.backend.api.is_some();
            if let Some(phase) = scenario.phases.iter().find(|p| match p.action {
                Action::Outage { .. } => false,
                Action::Ota(_) | Action::Decommission { .. } => !has_api,
                _ => true,
            }) {
                return Err(RunError::Unsupported(format!(
                    "{}: phase \"{}\" at {}: against a hawkBit server fleetsim runs \"ota\" and \"decommission\" \
                     phases (with backend.api set) and \"outage\" phases; DDI has no config push or commands",
                    scenario.file.display(),
                    phase.action.name(),
                    crate::scenario::units::DisplayDuration(phase.at)
                )));
            }
        }
        kind => {
            return Err(RunError::Unsupported(format!(
                "{}: fleetsim run drives the embedded reference backend, MQTT brokers and hawkBit servers so far; backend kind \"{}\" is not run yet",
                scenario.file.display(),
                kind.name(),
            )));
        }
    }
    Ok(())
}

/// The fleet's devices that hold a connection for the whole run: duty-cycled ones hold one only
/// for a moment at each report.
fn always_connected(loaded: &Loaded) -> u64 {
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
    (fleet.devices as f64 * share.min(1.0)).ceil() as u64
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
    fn utc_stamps_follow_the_calendar() {
        let at = |secs| std::time::UNIX_EPOCH + Duration::from_secs(secs);
        assert_eq!(utc_stamp(at(0)), "19700101T000000Z");
        assert_eq!(utc_stamp(at(951_782_400)), "20000229T000000Z");
        assert_eq!(utc_stamp(at(1_795_392_000 + 3_723)), "20261123T010203Z");
    }
}
