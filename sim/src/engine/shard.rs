//! A shard: the devices one thread runs. It owns a current-thread runtime and a `LocalSet`, so
//! its device tasks share the shard's recorder without locks, and it runs until the scenario's
//! duration is over (or shutdown), then lets its devices disconnect.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use tokio::task::LocalSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::clock::RunClock;
use super::driver::{ShardCtx, Transition, drive};
use crate::device::State;
use crate::dialect::Dialect;
use crate::metrics::recorder::{Recorder, Snapshot};
use crate::plan::{Plan, Shard};
use crate::transport::source::SourceAddrs;

/// How long devices get to disconnect after the run's end.
const DRAIN: Duration = Duration::from_secs(5);
/// How often a shard hands its figures to the aggregator.
pub const TICK: Duration = Duration::from_secs(1);
/// Ticks the channel to the aggregator holds per shard: a minute's worth.
pub const TICK_QUEUE: usize = 60;

/// What a shard sends the aggregator each second: the interval's figures and its devices per
/// state now.
#[derive(Debug, Clone)]
pub struct Tick {
    /// Latencies and counts recorded during the interval.
    pub snapshot: Snapshot,
    /// Devices per lifecycle state, in `State::ALL` order.
    pub states: [u64; 11],
}

/// What a shard measured.
#[derive(Debug, Clone)]
pub struct ShardResult {
    /// Latencies and counts.
    pub snapshot: Snapshot,
    /// Devices per lifecycle state at the end.
    pub states: BTreeMap<&'static str, u64>,
    /// Every state change, when the options asked for them.
    pub transitions: Vec<Transition>,
}

/// How a shard reports.
#[derive(Debug, Default)]
pub struct ShardOptions {
    /// Where to send a tick each second, if anywhere.
    pub ticks: Option<std::sync::mpsc::SyncSender<Tick>>,
    /// Keep every device's state changes (for tests of determinism).
    pub record_transitions: bool,
}

/// Runs the devices of `shard` against `dialect` from `start` for the scenario's duration.
/// Blocks the calling thread (each shard is a thread).
pub fn run_shard(
    plan: &Plan<'_>,
    shard: Shard,
    dialect: Dialect,
    start: Instant,
    stop: CancellationToken,
    options: ShardOptions,
) -> std::io::Result<ShardResult> {
    let ShardOptions {
        ticks,
        record_transitions,
    } = options;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let scenario = plan.scenario();
    let target = dialect.device_addr().ip();
    let ctx = Rc::new(ShardCtx {
        seed: scenario.seed,
        clock: RunClock::new(start, scenario.time_scale),
        dialect,
        sources: SourceAddrs::for_target(scenario.fleet.source_addrs, target),
        recorder: RefCell::new(Recorder::default()),
        states: RefCell::new([0; 11]),
        shutdown: stop.child_token(),
        transitions: record_transitions.then(|| RefCell::new(Vec::new())),
    });
    let models: Vec<_> = scenario
        .fleet
        .mix
        .iter()
        .map(|m| plan_model(plan, &m.model).map(|model| (model, Rc::<str>::from(m.group.as_str()))))
        .collect();
    let local = LocalSet::new();
    let end = start + scenario.duration;
    local.block_on(&runtime, async {
        for planned in plan.iter(0..plan.devices(), shard) {
            let Some((model, group)) = models.get(planned.mix).cloned().flatten() else {
                continue;
            };
            tokio::task::spawn_local(drive(Rc::clone(&ctx), model, group, planned));
        }
        let mut second = tokio::time::interval_at(start + TICK, TICK);
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(end) => break,
                () = stop.cancelled() => break,
                _ = second.tick() => {
                    if let Some(ticks) = &ticks {
                        let tick = Tick { snapshot: ctx.recorder.borrow_mut().take(), states: *ctx.states.borrow() };
                        // The channel holds a minute of ticks (TICK_QUEUE); only an aggregator
                        // that far behind makes this wait. A closed channel ends the run.
                        if ticks.send(tick).is_err() {
                            break;
                        }
                    }
                }
            }
        }
        ctx.shutdown.cancel();
    });
    // Let every device task see the shutdown and disconnect, within the drain time.
    runtime.block_on(async {
        let _ = tokio::time::timeout(DRAIN, local).await;
    });
    let snapshot = ctx.recorder.borrow_mut().take();
    let states = State::ALL
        .iter()
        .zip(ctx.states.borrow().iter())
        .map(|(s, n)| (s.name(), *n))
        .collect();
    let transitions = ctx.transitions.as_ref().map(|t| t.take()).unwrap_or_default();
    Ok(ShardResult {
        snapshot,
        states,
        transitions,
    })
}

fn plan_model(plan: &Plan<'_>, name: &str) -> Option<Rc<crate::scenario::DeviceModel>> {
    plan.model_named(name).map(|m| Rc::new(m.clone()))
}
