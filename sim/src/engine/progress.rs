//! The aggregator: merges the shards' one-second ticks into the run's totals and prints one
//! progress line a second, with the operator's phase lines as they happen.

use std::io::Write;
use std::sync::mpsc;
use std::time::Duration;

use super::exporter::Exporter;
use super::live::Live;
use super::process_stats::{ProcessStats, cpu_time, rss_bytes};
use super::shard::{TICK, Tick};
use super::wire;
use crate::device::{State, StateCounts};
use crate::metrics::recorder::{Counter, Latency, Snapshot};
use crate::report::figures::Second;
use crate::report::hlog::HistogramLog;
use crate::report::prometheus;

/// Where the aggregator writes.
pub struct Outputs<'a> {
    /// Progress and event lines (or, for a worker, its wire lines).
    pub progress: &'a mut dyn Write,
    /// The run's interval log, if it could be created.
    pub hlog: Option<&'a mut HistogramLog>,
    /// The dashboard's view, which then takes the seconds and event lines instead.
    pub live: Option<&'a mut Live>,
    /// A worker process: each second goes to the parent as a wire line ([`wire`]).
    pub wire: bool,
    /// The Prometheus endpoint, given the run so far each second.
    pub metrics: Option<&'a Exporter>,
}

/// What the aggregator kept.
#[derive(Debug)]
pub struct Aggregate {
    /// Every tick merged.
    pub total: Snapshot,
    /// Devices per state at the last tick.
    pub states: StateCounts,
    /// One row a second: what the harness and its devices were doing.
    pub seconds: Vec<Second>,
}

/// Merges shard ticks until every shard has stopped, printing one progress line a second and
/// every operator event line.
/// Each second's histograms also go to `hlog`, the run's interval log; a log that cannot be
/// written is reported once and the run goes on. With a `live` view (the dashboard), each
/// second and event line goes to it instead of the progress lines.
pub fn aggregate(
    rx: &mpsc::Receiver<(u32, Tick)>,
    events: &mpsc::Receiver<String>,
    shards: u32,
    devices: u64,
    outputs: Outputs<'_>,
) -> Aggregate {
    let Outputs {
        progress,
        mut hlog,
        mut live,
        wire,
        metrics,
    } = outputs;
    let mut processes: Vec<Option<ProcessStats>> = vec![None; shards as usize];
    let mut seconds = Vec::new();
    let mut total = Snapshot::default();
    let mut states = vec![StateCounts::default(); shards as usize];
    let mut tasks = vec![0u64; shards as usize];
    let mut second = Snapshot::default();
    let mut seen = 0u32;
    let mut elapsed = 0u64;
    let mut printing = live.is_none();
    while let Ok((shard, tick)) = rx.recv() {
        second.merge(&tick.snapshot);
        total.merge(&tick.snapshot);
        if let Some(slot) = states.get_mut(shard as usize) {
            *slot = tick.states;
        }
        if let Some(slot) = tasks.get_mut(shard as usize) {
            *slot = tick.tasks;
        }
        if let Some(slot) = processes.get_mut(shard as usize)
            && tick.process.is_some()
        {
            *slot = tick.process;
        }
        seen += 1;
        if seen == shards {
            elapsed += 1;
            seen = 0;
            let now = summed(&states);
            seconds.push(Second {
                states: now,
                connected: now.connected(),
                sleeping: now.get(State::Sleeping),
                tasks: tasks.iter().sum(),
                provisions: second.count(Counter::Provisioned),
                connects: second.count(Counter::Connected),
                published: second.count(Counter::Published),
                received: second.count(Counter::Received),
                late_sends: second.count(Counter::LateSends),
                errors: Counter::ALL
                    .iter()
                    .filter(|c| c.name().starts_with("errors."))
                    .map(|c| second.count(*c))
                    .sum(),
                latencies: Latency::ALL
                    .iter()
                    .map(|l| [second.quantile(*l, 0.5), second.quantile(*l, 0.99)])
                    .collect(),
                // This process's cost and its workers' (each as of its last tick).
                rss_bytes: rss_bytes().unwrap_or(0) + processes.iter().flatten().map(|p| p.rss_bytes).sum::<u64>(),
                cpu: cpu_time() + processes.iter().flatten().map(|p| p.cpu).sum::<Duration>(),
            });
            // Progress is for a person watching; if nobody reads it any more (a closed
            // pipe), the run goes on and still writes its summary.
            while let Ok(line) = events.try_recv() {
                if let Some(live) = live.as_deref_mut() {
                    live.event(&line);
                }
                if printing {
                    let line = if wire { wire::event_line(&line) } else { line };
                    printing = writeln!(progress, "{line}").is_ok();
                }
            }
            if let (Some(live), Some(row)) = (live.as_deref_mut(), seconds.last()) {
                live.second(elapsed, &second, &total, row);
            }
            if let (Some(exporter), Some(row)) = (metrics, seconds.last()) {
                exporter.publish(prometheus::exposition(&total, row, devices, elapsed));
            }
            if printing && wire {
                let tick = Tick {
                    snapshot: second.clone(),
                    states: summed(&states),
                    tasks: tasks.iter().sum(),
                    process: None,
                };
                let line = wire::tick_line(&tick, ProcessStats::now());
                printing = writeln!(progress, "{line}").and_then(|()| progress.flush()).is_ok();
            } else if printing {
                let line = progress_line(elapsed, devices, &summed(&states), &second);
                printing = writeln!(progress, "{line}").and_then(|()| progress.flush()).is_ok();
            }
            if let Some(log) = hlog.as_deref_mut()
                && let Err(e) = log.interval(Duration::from_secs(elapsed - 1), TICK, &second)
            {
                let _ = writeln!(progress, "warning: histograms.hlog: {e}; the log stops here");
                hlog = None;
            }
            second = Snapshot::default();
        }
    }
    // Lines after the last second: with a dashboard, for the output once it has closed.
    printing |= live.is_some();
    while let Ok(line) = events.try_recv() {
        if printing {
            printing = writeln!(progress, "{line}").is_ok();
        }
    }
    // Ticks of a last second not every shard reached: in the totals, and in the log.
    if let Some(log) = hlog {
        let _ = log.interval(Duration::from_secs(elapsed), TICK, &second);
    }
    Aggregate {
        total,
        states: summed(&states),
        seconds,
    }
}

fn summed(states: &[StateCounts]) -> StateCounts {
    let mut sum = StateCounts::default();
    for shard in states {
        sum += shard;
    }
    sum
}

fn ms(value: Option<Duration>) -> String {
    value.map_or("-".to_owned(), |d| format!("{:.1}ms", d.as_secs_f64() * 1e3))
}

/// `[12s] online 1834/2000 provisioning 12 offline 4 | prov 210/s conn 200/s pub 3120/s | connect p50 1.2ms p99 8.0ms | ...`,
/// with `| late sends 40` after the rates in a second some reports went out more than 5 ms late.
pub fn progress_line(elapsed: u64, devices: u64, states: &StateCounts, second: &Snapshot) -> String {
    let mut line = format!("[{elapsed}s]");
    for (state, count) in states.iter() {
        if count > 0 {
            let shown = if state == State::Online {
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
    let polls = second.count(Counter::Polls);
    if polls > 0 {
        // Polling devices report by polling, not publishing.
        line.push_str(&format!(" poll {polls}/s"));
    }
    let late = second.count(Counter::LateSends);
    if late > 0 {
        // The harness (or its machine) behind its schedule: said where the rates are read.
        line.push_str(&format!(" | late sends {late}"));
        let woken = second.count(Counter::LateSendsWokenLate);
        if woken > 0 {
            // How many the machine made late, not the harness's load (`engine::park`).
            line.push_str(&format!(" ({woken} woke late)"));
        }
    }
    for latency in Latency::ALL {
        if second.samples(*latency) > 0 {
            line.push_str(&format!(
                " | {} p50 {} p99 {}",
                latency.name().trim_end_matches(".latency"),
                ms(second.quantile(*latency, 0.5)),
                ms(second.quantile(*latency, 0.99))
            ));
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::recorder::Recorder;

    fn second_with(late: u64) -> Snapshot {
        let mut recorder = Recorder::default();
        recorder.count(Counter::Published, 3120);
        recorder.count(Counter::LateSends, late);
        recorder.take()
    }

    #[test]
    fn a_second_with_late_sends_says_so_after_the_rates() {
        let mut states = StateCounts::default();
        states.add(State::Online, 1834);
        let line = progress_line(12, 2000, &states, &second_with(40));
        assert_eq!(
            line,
            "[12s] online 1834/2000 | prov 0/s conn 0/s pub 3120/s | late sends 40"
        );
        let line = progress_line(12, 2000, &states, &second_with(0));
        assert!(!line.contains("late"), "{line}");
        let mut recorder = Recorder::default();
        recorder.count(Counter::LateSends, 40);
        recorder.count(Counter::LateSendsWokenLate, 31);
        let line = progress_line(12, 2000, &states, &recorder.take());
        assert!(line.ends_with("| late sends 40 (31 woke late)"), "{line}");
    }
}
