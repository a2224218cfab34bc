//! A whole run: start the embedded reference backend in process, run the fleet as one shard
//! per core (each on its own thread), aggregate their figures once a second into a progress
//! line, and write `summary.json` when the run ends.
//!
//! What runs today: scenarios against the embedded backend without operator phases. A
//! scenario that asks for more is refused up front with a message naming what is missing,
//! rather than run without it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use fleetsim_backend::Backend;
use fleetsim_backend::gateway::Limits;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::shard::{ShardOptions, TICK_QUEUE, Tick, run_shard};
use crate::device::State;
use crate::dialect::Dialect;
use crate::dialect::embedded::Embedded;
use crate::dialect::mqtt::{Broker, DEFAULT_TELEMETRY_TOPIC};
use crate::metrics::names::{MetricKind, Stat};
use crate::metrics::recorder::{Counter, Latency, Snapshot};
use crate::plan::{Plan, Shard};
use crate::report::gates::{self, Measured, Verdict};
use crate::scenario::Loaded;
use crate::scenario::file::BackendKind;

/// Why a run could not start or finish.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The scenario asks for something this version does not run yet.
    #[error("{0}")]
    Unsupported(String),
    /// The embedded backend could not start.
    #[error("embedded backend: {0}")]
    Backend(String),
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

/// What a finished run measured, as gates read it.
struct Figures<'a> {
    snapshot: &'a Snapshot,
    states: &'a [u64; 11],
    provision_rate: f64,
    /// Devices told `accepted` that the backend does not hold as active at the end.
    lost: Option<u64>,
}

impl Measured for Figures<'_> {
    fn value(&self, name: &str, _kind: MetricKind, stat: Option<Stat>) -> Option<f64> {
        if let Some(latency) = Latency::ALL.iter().find(|l| name.starts_with(l.name())) {
            let secs = |d: Option<Duration>| d.map(|d| d.as_secs_f64());
            return match stat? {
                Stat::Percentile(p) => secs(self.snapshot.quantile(*latency, p / 100.0)),
                Stat::Min => secs(self.snapshot.min(*latency)),
                Stat::Max => secs(self.snapshot.max(*latency)),
                Stat::Mean => secs(self.snapshot.mean(*latency)),
                Stat::Count => Some(self.snapshot.samples(*latency) as f64),
            };
        }
        if let Some(state) = name.strip_prefix("devices.") {
            if state == "lost" {
                return self.lost.map(|n| n as f64);
            }
            let index = State::ALL.iter().position(|s| s.name() == state)?;
            return Some(self.states[index] as f64);
        }
        if name == "provision.rate" {
            return Some(self.provision_rate);
        }
        if name == "errors.total" {
            let errors = Counter::ALL.iter().filter(|c| c.name().starts_with("errors."));
            return Some(errors.map(|c| self.snapshot.count(*c)).sum::<u64>() as f64);
        }
        Counter::ALL
            .iter()
            .find(|c| c.name() == name)
            .map(|c| self.snapshot.count(*c) as f64)
    }
}

/// Runs a loaded scenario; progress lines go to `progress`.
pub fn run(loaded: &Loaded, options: &RunOptions, progress: &mut dyn Write) -> Result<RunOutcome, RunError> {
    refuse_unsupported(loaded)?;
    let scenario = &loaded.scenario;
    let out = options.out.clone().unwrap_or_else(|| default_out(&scenario.name));
    std::fs::create_dir_all(&out)?;
    let open_files = super::open_files::raise();
    if let Some(message) = open_files.shortfall(scenario.fleet.devices.saturating_mul(2)) {
        writeln!(progress, "warning: {message}")?;
    }

    let target = Target::start(loaded, &out)?;
    let dialect = target.dialect.clone();

    let shards = thread::available_parallelism().map_or(1, |n| n.get()).min(8) as u32;
    let start = tokio::time::Instant::now();
    let stop = options.stop.clone();
    let (tx, rx) = mpsc::sync_channel::<(u32, Tick)>(TICK_QUEUE * shards as usize);
    let plan = Plan::new(loaded);
    let total = thread::scope(|scope| {
        let mut handles = Vec::new();
        for index in 0..shards {
            let (plan, dialect, stop, tx) = (&plan, dialect.clone(), stop.clone(), tx.clone());
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
                };
                let result = run_shard(plan, Shard { index, count: shards }, dialect, start, stop, options);
                let _ = forward.join();
                result
            }));
        }
        drop(tx);
        let total = aggregate(&rx, shards, scenario.fleet.devices, progress);
        let mut finals = Snapshot::default();
        for handle in handles {
            // A shard thread that panicked is a bug; its figures are lost, the run still ends.
            if let Ok(Ok(result)) = handle.join() {
                finals.merge(&result.snapshot);
            }
        }
        total.map(|(mut total, states)| {
            total.merge(&finals);
            (total, states)
        })
    })?;
    let backend_active = target.stop();
    let (snapshot, states) = total;
    let window = scenario
        .fleet
        .arrival
        .window(scenario.fleet.devices)
        .as_secs_f64()
        .max(1e-3);
    let figures = Figures {
        snapshot: &snapshot,
        states: &states,
        provision_rate: snapshot.count(Counter::Provisioned) as f64 / window,
        lost: backend_active.map(|active| snapshot.count(Counter::Provisioned).saturating_sub(active)),
    };
    let completed = !stop.is_cancelled();
    let mut verdicts = gates::evaluate(&scenario.gates, &figures);
    if !completed {
        // Figures of a run cut short are not the scenario's figures: no gate passes on them.
        verdicts.iter_mut().for_each(|v| v.passed = false);
    }
    let mut summary = summary(loaded, &figures, start.elapsed(), backend_active);
    summary["completed"] = json!(completed);
    summary["overrides"] = options
        .overrides
        .iter()
        .map(|(k, v)| ((*k).to_owned(), json!(v)))
        .collect();
    summary["gates"] = verdicts
        .iter()
        .map(|v| json!({ "gate": v.gate.to_string(), "measured": v.measured, "passed": v.passed }))
        .collect();
    // Serializing a tree of JSON values cannot fail.
    std::fs::write(
        out.join("summary.json"),
        serde_json::to_string_pretty(&summary).unwrap_or_default(),
    )?;
    Ok(RunOutcome {
        out,
        summary,
        verdicts,
        completed,
    })
}

/// What the run drives: the embedded backend started here, or a broker that runs elsewhere.
struct Target {
    dialect: Dialect,
    embedded: Option<EmbeddedBackend>,
}

/// The in-process reference backend, on its own runtime and thread, as it would run on its
/// own machine.
struct EmbeddedBackend {
    runtime: tokio::runtime::Runtime,
    backend: Backend,
    stop: CancellationToken,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Target {
    fn start(loaded: &Loaded, out: &Path) -> Result<Self, RunError> {
        let scenario = &loaded.scenario;
        if scenario.backend.kind == BackendKind::Mqtt {
            let url = scenario.backend.url.as_deref().unwrap_or_default();
            let addr = broker_addr(url).ok_or_else(|| {
                RunError::Unsupported(format!(
                    "{url}: fleetsim run needs an IP address and port in an mqtt:// url so far"
                ))
            })?;
            let telemetry_topic = scenario
                .backend
                .telemetry_topic
                .clone()
                .unwrap_or_else(|| DEFAULT_TELEMETRY_TOPIC.to_owned());
            return Ok(Self {
                dialect: Dialect::Mqtt(Broker { addr, telemetry_topic }),
                embedded: None,
            });
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(|e| RunError::Backend(e.to_string()))?;
        let backend = Backend::open(&out.join("backend-data"), Limits::default())
            .map_err(|e| RunError::Backend(e.to_string()))?;
        let secret = format!("run-{:016x}", scenario.seed ^ 0x5EC2_E7F1_EE75_1A00);
        let (mqtt, http) = runtime.block_on(async {
            if let Err(e) = backend.registry.create_claim("fleetsim", &secret, "fleet").await {
                return Err(RunError::Backend(e.to_string()));
            }
            let mqtt = TcpListener::bind("127.0.0.1:0").await?;
            let http = TcpListener::bind("127.0.0.1:0").await?;
            Ok::<_, RunError>((mqtt, http))
        })?;
        let dialect = Dialect::Embedded(Embedded {
            mqtt: mqtt.local_addr()?,
            claim: "fleetsim".to_owned(),
            claim_secret: secret,
        });
        let stop = CancellationToken::new();
        let (serving, token) = (backend.clone(), stop.clone());
        let server = runtime.spawn(async move { serving.serve(mqtt, http, token).await });
        Ok(Self {
            dialect,
            embedded: Some(EmbeddedBackend {
                runtime,
                backend,
                stop,
                server,
            }),
        })
    }

    /// Stops the embedded backend, if any, and returns how many devices it holds as active.
    fn stop(self) -> Option<u64> {
        let embedded = self.embedded?;
        embedded.stop.cancel();
        let _ = embedded.runtime.block_on(embedded.server);
        embedded.backend.registry.counts().ok().map(|c| c.active)
    }
}

/// `mqtt://IP:PORT` to a socket address.
fn broker_addr(url: &str) -> Option<std::net::SocketAddr> {
    url.strip_prefix("mqtt://")?.split('/').next()?.parse().ok()
}

/// Refuses what this version does not run yet, naming it.
pub fn refuse_unsupported(loaded: &Loaded) -> Result<(), RunError> {
    let scenario = &loaded.scenario;
    let runnable = match scenario.backend.kind {
        BackendKind::Embedded => scenario.backend.url.is_none(),
        BackendKind::Mqtt => true,
        _ => false,
    };
    if !runnable {
        return Err(RunError::Unsupported(format!(
            "{}: fleetsim run drives the in-process embedded backend and MQTT brokers so far; backend kind \"{}\"{} is not run yet",
            scenario.file.display(),
            scenario.backend.kind.name(),
            if scenario.backend.url.is_some() {
                " with a url"
            } else {
                ""
            }
        )));
    }
    if let Some(phase) = scenario.phases.first() {
        return Err(RunError::Unsupported(format!(
            "{}: fleetsim run does not perform operator phases yet (the first is \"{}\" at {}); \
             run a scenario without [[phase]] tables, such as scenarios/provisioning-storm.toml",
            scenario.file.display(),
            phase.action.name(),
            crate::scenario::units::DisplayDuration(phase.at)
        )));
    }
    Ok(())
}

/// Merges shard ticks until every shard has stopped, printing one progress line a second.
fn aggregate(
    rx: &mpsc::Receiver<(u32, Tick)>,
    shards: u32,
    devices: u64,
    progress: &mut dyn Write,
) -> Result<(Snapshot, [u64; 11]), RunError> {
    let mut total = Snapshot::default();
    let mut states = vec![[0u64; 11]; shards as usize];
    let mut second = Snapshot::default();
    let mut seen = 0u32;
    let mut elapsed = 0u64;
    let mut printing = true;
    while let Ok((shard, tick)) = rx.recv() {
        second.merge(&tick.snapshot);
        total.merge(&tick.snapshot);
        if let Some(slot) = states.get_mut(shard as usize) {
            *slot = tick.states;
        }
        seen += 1;
        if seen == shards {
            elapsed += 1;
            seen = 0;
            if printing {
                let line = progress_line(elapsed, devices, &summed(&states), &second);
                // Progress is for a person watching; if nobody reads it any more (a closed
                // pipe), the run goes on and still writes its summary.
                printing = writeln!(progress, "{line}").and_then(|()| progress.flush()).is_ok();
            }
            second = Snapshot::default();
        }
    }
    Ok((total, summed(&states)))
}

fn summed(states: &[[u64; 11]]) -> [u64; 11] {
    let mut sum = [0u64; 11];
    for shard in states {
        for (total, n) in sum.iter_mut().zip(shard) {
            *total += n;
        }
    }
    sum
}

fn ms(value: Option<Duration>) -> String {
    value.map_or("-".to_owned(), |d| format!("{:.1}ms", d.as_secs_f64() * 1e3))
}

/// `[12s] online 1834/2000 provisioning 12 offline 4 | prov 210/s pub 3120/s | connect p50 1.2ms p99 8.0ms | publish p50 0.9ms p99 4.1ms`
fn progress_line(elapsed: u64, devices: u64, states: &[u64; 11], second: &Snapshot) -> String {
    let mut line = format!("[{elapsed}s]");
    for (state, count) in State::ALL.iter().zip(states) {
        if *count > 0 {
            let shown = if *state == State::Online {
                format!(" online {count}/{devices}")
            } else {
                format!(" {} {count}", state.name())
            };
            line.push_str(&shown);
        }
    }
    line.push_str(&format!(
        " | prov {}/s conn {}/s pub {}/s",
        second.count(Counter::Provisioned),
        second.count(Counter::Connected),
        second.count(Counter::Published)
    ));
    for latency in [Latency::Provision, Latency::Connect, Latency::Publish] {
        if second.samples(latency) > 0 {
            line.push_str(&format!(
                " | {} p50 {} p99 {}",
                latency.name().trim_end_matches(".latency"),
                ms(second.quantile(latency, 0.5)),
                ms(second.quantile(latency, 0.99))
            ));
        }
    }
    line
}

/// `summary.json`: the scenario, and every metric recorded with its percentiles and counts.
fn summary(loaded: &Loaded, figures: &Figures<'_>, elapsed: Duration, backend_active: Option<u64>) -> Value {
    let scenario = &loaded.scenario;
    let (snapshot, states) = (figures.snapshot, figures.states);
    let latency_ms = |d: Option<Duration>| d.map(|d| (d.as_secs_f64() * 1e6).round() / 1e3);
    let histograms: serde_json::Map<String, Value> = Latency::ALL
        .iter()
        .map(|l| {
            let q = |p| latency_ms(snapshot.quantile(*l, p));
            let figures = json!({
                "count": snapshot.samples(*l),
                "p50_ms": q(0.5), "p90_ms": q(0.9), "p99_ms": q(0.99), "p99_9_ms": q(0.999),
                "max_ms": latency_ms(snapshot.max(*l)),
            });
            (l.name().to_owned(), figures)
        })
        .collect();
    let counters: serde_json::Map<String, Value> = Counter::ALL
        .iter()
        .map(|c| (c.name().to_owned(), json!(snapshot.count(*c))))
        .collect();
    let states: serde_json::Map<String, Value> = State::ALL
        .iter()
        .zip(states)
        .map(|(s, n)| (format!("devices.{}", s.name()), json!(n)))
        .collect();
    json!({
        "scenario": scenario.name,
        "seed": scenario.seed,
        "devices": scenario.fleet.devices,
        "duration_s": scenario.duration.as_secs_f64(),
        "time_scale": scenario.time_scale,
        "elapsed_s": (elapsed.as_secs_f64() * 1e3).round() / 1e3,
        "version": env!("CARGO_PKG_VERSION"),
        "completed": true,
        "metrics": {
            "histograms": histograms,
            "counters": counters,
            "gauges": states,
            "provision.rate": figures.provision_rate,
            "devices.lost": figures.lost,
        },
        "backend": { "devices_active": backend_active },
    })
}

/// `reports/<scenario>-<UTC timestamp>`.
fn default_out(name: &str) -> PathBuf {
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
