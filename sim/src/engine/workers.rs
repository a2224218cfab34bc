//! `fleetsim run --workers N`: the fleet as N local worker processes, each a shard
//! (`fleetsim run --shard K/N --worker`), so a run can hold more connections than one process
//! may open files and use every core without sharing a recorder.
//!
//! Design: the parent owns what a person and CI see. Each worker writes its own report folder
//! (`<out>/workers/K`) and streams a wire line a second on stdout ([`super::wire`]: counts and
//! serialized histogram deltas); the parent feeds those to the same aggregator the threads of
//! one process use, so the progress lines and the dashboard show the whole fleet live. At the
//! end the parent merges the workers' folders exactly (`report::merge`) into the run's folder
//! and checks the gates there. Worker 0 plays the operator, as shard 0 does across machines.
//!
//! A worker that dies (killed, crashed) is an event: the parent says so, and its devices count
//! as lost load (`devices.lost`, and `workers` in `summary.json` names it). Then the scenario's
//! rule (`fleet.on_worker_loss`) decides: `continue` (the default) lets the others finish the
//! run; `stop` stops them as Ctrl-C would, merges what they wrote, and marks the run incomplete
//! with the reason (`stopped` in `summary.json`). Stopping the parent (Ctrl-C, SIGTERM, `q`)
//! stops every worker cleanly, and each still writes its folder.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, OnceLock, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::live::Live;
use super::process_stats::{ProcessStats, rss_bytes};
use super::progress::{Outputs, aggregate};
use super::run::{RunError, RunOptions, RunOutcome, default_out, devices_in, refuse_unsupported};
use super::shard::{TICK, TICK_QUEUE, Tick};
use super::wire::{self, Line};
use crate::device::StateCounts;
use crate::dialect;
use crate::metrics::recorder::Snapshot;
use crate::plan::Shard;
use crate::report::figures::Figures;
use crate::report::merge::merge;
use crate::scenario::Loaded;
use crate::scenario::file::WorkerLoss;

/// Event lines waiting for the aggregator (the operator's phases and worker news).
const EVENT_QUEUE: usize = 256;
/// How long past the scenario's duration a worker may take to write its report.
const WRAP_UP: Duration = Duration::from_secs(30);

/// How the parent starts its workers.
#[derive(Debug, Clone)]
pub struct Workers {
    /// How many.
    pub count: u32,
    /// Arguments every worker gets after `run`: the scenario file and the overrides.
    pub args: Vec<OsString>,
}

/// A worker process as its parent follows it.
struct Worker {
    index: u32,
    /// Its report folder.
    dir: PathBuf,
    /// The devices it runs.
    devices: u64,
    child: Child,
}

/// What the parent does when a worker dies: the scenario's rule, and what it needs to apply it.
struct OnLoss<'a> {
    rule: WorkerLoss,
    /// The run's stop, which the `stop` rule pulls.
    stop: &'a CancellationToken,
    /// Why a rule stopped the run (the first dead worker's news).
    reason: &'a OnceLock<String>,
    /// Workers that have ended (and been waited for): never signalled again, since their
    /// process ids may already belong to someone else.
    ended: &'a [AtomicBool],
}

/// What became of one worker.
#[derive(Debug)]
struct WorkerEnd {
    index: u32,
    dir: PathBuf,
    devices: u64,
    /// How it exited, as a person reads it.
    status: String,
    /// It wrote its report folder.
    reported: bool,
}

/// Runs `loaded` as `workers.count` worker processes and merges their reports.
pub fn run_workers(
    loaded: &Loaded,
    options: &RunOptions,
    workers: &Workers,
    progress: &mut dyn Write,
) -> Result<RunOutcome, RunError> {
    refuse_unsupported(loaded)?;
    let scenario = &loaded.scenario;
    let count = workers.count.max(1);
    let out = options.out.clone().unwrap_or_else(|| default_out(&scenario.name));
    std::fs::create_dir_all(out.join("workers"))?;
    let rss_before = rss_bytes();
    // A backend the scenario does not name but its dialect can start runs here, and every
    // worker uses it.
    let hosted = dialect::host(scenario, &out)?;
    let exe = std::env::current_exe()?;
    let mut children = Vec::new();
    for index in 0..count {
        let dir = out.join("workers").join(index.to_string());
        let mut command = Command::new(&exe);
        command
            .arg("run")
            .args(&workers.args)
            .args([
                "--shard",
                &format!("{index}/{count}"),
                "--worker",
                "--headless",
                "--out",
            ])
            .arg(&dir);
        if let Some(hosted) = &hosted {
            command.arg("--backend").arg(&hosted.url);
        }
        let child = command.stdout(Stdio::piped()).stdin(Stdio::null()).spawn();
        match child {
            Ok(child) => children.push((index, dir, child)),
            Err(e) => {
                children.iter_mut().for_each(|(_, _, c): &mut (u32, PathBuf, Child)| {
                    let _ = c.kill();
                });
                return Err(RunError::Io(std::io::Error::new(
                    e.kind(),
                    format!("starting worker {index} ({}): {e}", exe.display()),
                )));
            }
        }
    }
    writeln!(
        progress,
        "{count} workers started: reports in {}",
        out.join("workers").display()
    )?;
    let deadline = Instant::now() + scenario.duration + WRAP_UP;
    let pids: Vec<i32> = children.iter().map(|(_, _, c)| c.id() as i32).collect();
    let (tx, rx) = mpsc::sync_channel::<(u32, Tick)>(TICK_QUEUE * count as usize);
    let (events_tx, events_rx) = mpsc::sync_channel::<String>(EVENT_QUEUE);
    let done = Arc::new(AtomicBool::new(false));
    // Workers still running: a dead worker's empty seconds last as long as the others do.
    let running = AtomicU32::new(count);
    let stop_reason = OnceLock::new();
    let ended: Vec<AtomicBool> = (0..count).map(|_| AtomicBool::new(false)).collect();
    let on_loss = OnLoss {
        rule: scenario.fleet.on_worker_loss,
        stop: &options.stop,
        reason: &stop_reason,
        ended: &ended,
    };
    let (aggregate, ends) = thread::scope(|scope| {
        let forward_stop = {
            let (stop, done, ended) = (options.stop.clone(), Arc::clone(&done), &ended);
            scope.spawn(move || {
                while !done.load(Ordering::Relaxed) {
                    if stop.is_cancelled() {
                        for (pid, ended) in pids.iter().zip(ended) {
                            if !ended.load(Ordering::Relaxed) {
                                terminate(*pid);
                            }
                        }
                        return;
                    }
                    thread::sleep(Duration::from_millis(100));
                }
            })
        };
        let readers: Vec<_> = children
            .into_iter()
            .map(|(index, dir, child)| {
                let devices = devices_in(loaded, Shard { index, count });
                let (tx, events, running, on_loss) = (tx.clone(), events_tx.clone(), &running, &on_loss);
                let worker = Worker {
                    index,
                    dir,
                    devices,
                    child,
                };
                scope.spawn(move || follow(worker, &tx, &events, running, on_loss, deadline))
            })
            .collect();
        drop((tx, events_tx));
        let mut live = options
            .live
            .clone()
            .map(|tx| Live::new(tx, &scenario.gates, scenario.fleet.devices, rss_before));
        let outputs = Outputs {
            progress: &mut *progress,
            hlog: None,
            live: live.as_mut(),
            wire: false,
            metrics: options.metrics.as_deref(),
        };
        let aggregate = aggregate(&rx, &events_rx, count, scenario.fleet.devices, outputs);
        let ends: Vec<WorkerEnd> = readers.into_iter().filter_map(|r| r.join().ok()).collect();
        done.store(true, Ordering::Relaxed);
        let _ = forward_stop.join();
        (aggregate, ends)
    });
    let backend_active = hosted.and_then(dialect::Hosted::stop);
    for end in ends.iter().filter(|e| !e.reported) {
        writeln!(
            progress,
            "worker {} died ({}): its {} devices count as lost",
            end.index, end.status, end.devices
        )?;
    }
    if let Some(reason) = stop_reason.get() {
        writeln!(progress, "the run stopped: {reason}")?;
    }
    let dirs: Vec<PathBuf> = ends.iter().filter(|e| e.reported).map(|e| e.dir.clone()).collect();
    if dirs.is_empty() {
        return Err(RunError::Unsupported(
            "every worker died before writing its report: see the lines above".to_owned(),
        ));
    }
    let workers_before: u64 = dirs
        .iter()
        .filter_map(|dir| std::fs::read_to_string(dir.join("summary.json")).ok())
        .filter_map(|text| serde_json::from_str::<Value>(&text).ok())
        .filter_map(|s| s["harness"]["rss_before_bytes"].as_u64())
        .sum();
    let harness = Figures {
        seconds: aggregate.seconds,
        rss_before: rss_before.map(|own| own + workers_before),
        states: aggregate.states,
        snapshot: Snapshot::default(),
        ..Figures::default()
    }
    .harness_json();
    let lost_with_workers: u64 = ends.iter().filter(|e| !e.reported).map(|e| e.devices).sum();
    let stopped = options.stop.is_cancelled();
    let adjust = |summary: &mut Value, parts: &[&Value]| {
        dialect::merge_sections(summary, parts);
        summary["devices"] = json!(scenario.fleet.devices);
        summary["shard"] = json!(format!("{}/{}", options.shard.index, options.shard.count));
        summary["harness"] = harness.clone();
        summary["workers"] = json!(
            ends.iter()
                .map(|e| json!({
                    "worker": e.index, "devices": e.devices, "exit": e.status, "reported": e.reported,
                }))
                .collect::<Vec<_>>()
        );
        let provisioned = summary["metrics"]["counters"]["provisioned"].as_u64().unwrap_or(0);
        let retired = summary["backend"]["decommissioned_by_operator"].as_u64().unwrap_or(0);
        // As a single process counts it: provisioned devices the backend no longer holds,
        // plus the dead workers' devices, whose fate nobody recorded.
        let lost = match backend_active {
            Some(active) => Some(provisioned.saturating_sub(retired).saturating_sub(active) + lost_with_workers),
            None => (lost_with_workers > 0).then_some(lost_with_workers),
        };
        summary["metrics"]["devices.lost"] = json!(lost);
        summary["backend"]["devices_active"] = json!(backend_active);
        if stopped {
            summary["completed"] = json!(false);
        }
        if let Some(reason) = stop_reason.get() {
            summary["stopped"] = json!({ "reason": reason, "rule": "fleet.on_worker_loss = \"stop\"" });
        }
    };
    let merged = merge(&dirs, &out, &adjust).map_err(RunError::Unsupported)?;
    let completed = merged.summary["completed"] == true;
    Ok(RunOutcome {
        out,
        summary: merged.summary,
        verdicts: merged.verdicts,
        completed,
    })
}

/// Reads worker `index`'s lines until it ends: ticks to the aggregator, events to the log.
/// A worker that ends without its report is dead: the scenario's rule may stop the run, and
/// from then on it sends empty seconds until the run's deadline, so the others' seconds still
/// complete.
fn follow(
    worker: Worker,
    ticks: &mpsc::SyncSender<(u32, Tick)>,
    events: &mpsc::SyncSender<String>,
    running: &AtomicU32,
    on_loss: &OnLoss<'_>,
    deadline: Instant,
) -> WorkerEnd {
    let Worker {
        index,
        dir,
        devices,
        mut child,
    } = worker;
    if let Some(stdout) = child.stdout.take() {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            match wire::parse(&line) {
                Line::Tick(tick) => {
                    if ticks.send((index, *tick)).is_err() {
                        break;
                    }
                }
                Line::Event(text) => {
                    let _ = events.send(text);
                }
                Line::Other => {}
            }
        }
    }
    let status = child.wait().map_or_else(|e| format!("unknown: {e}"), |s| s.to_string());
    if let Some(ended) = on_loss.ended.get(index as usize) {
        ended.store(true, Ordering::Relaxed);
    }
    running.fetch_sub(1, Ordering::Relaxed);
    let reported = dir.join("summary.json").exists();
    if !reported {
        let news = format!("worker {index} died ({status}): its {devices} devices count as lost");
        let next = match on_loss.rule {
            WorkerLoss::Continue => "the run goes on (fleet.on_worker_loss = \"continue\")",
            WorkerLoss::Stop if on_loss.stop.is_cancelled() => "the run is already stopping",
            WorkerLoss::Stop => {
                let _ = on_loss.reason.set(format!("{news} (fleet.on_worker_loss = \"stop\")"));
                on_loss.stop.cancel();
                "stopping the other workers (fleet.on_worker_loss = \"stop\")"
            }
        };
        let _ = events.send(format!("{news}; {next}"));
        let empty = Tick {
            snapshot: Snapshot::default(),
            states: StateCounts::default(),
            tasks: 0,
            process: Some(ProcessStats::default()),
        };
        while running.load(Ordering::Relaxed) > 0 && Instant::now() < deadline {
            if ticks.send((index, empty.clone())).is_err() {
                break;
            }
            thread::sleep(TICK);
        }
    }
    WorkerEnd {
        index,
        dir,
        devices,
        status,
        reported,
    }
}

/// Asks a worker to stop cleanly, as Ctrl-C would.
fn terminate(pid: i32) {
    if let Some(pid) = rustix::process::Pid::from_raw(pid) {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }
}
