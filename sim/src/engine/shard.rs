//! A shard: the devices one thread runs. It owns a current-thread runtime and a `LocalSet`, so
//! its device tasks share the shard's recorder without locks, and it runs until the scenario's
//! duration is over (or the run is stopped), then drops its device tasks, closing their
//! connections.
//!
//! A device costs a task only from its arrival: the shard keeps the planned arrivals as a
//! sorted list of (time, index) and spawns each device's task when its time comes.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use tokio::task::LocalSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::clock::RunClock;
use super::context::{Life, Member, ShardCtx, Sleeper, Transition};
use super::driver::wake;
use super::pause::ArrivalPause;
use super::process_stats::ProcessStats;
use crate::device::{Event, Incident, IncidentKind, StateCounts};
use crate::dialect::calendar::Calendar;
use crate::dialect::precise_timer::Timer;
use crate::dialect::{Dialect, OperatorLog, Shared};
use crate::metrics::recorder::Snapshot;
use crate::model::{Image, StreamId};
use crate::plan::{Plan, Shard};
use crate::scenario::Scenario;
use crate::scenario::typed::Action;
use crate::transport::source::SourceAddrs;

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
    /// Devices per lifecycle state.
    pub states: StateCounts,
    /// Device tasks alive now (sleeping devices hold none).
    pub tasks: u64,
    /// The memory and CPU of the process the tick comes from, when that is not this one (a
    /// worker's).
    pub process: Option<ProcessStats>,
}

/// What a shard measured.
#[derive(Debug, Clone)]
pub struct ShardResult {
    /// Latencies and counts.
    pub snapshot: Snapshot,
    /// Devices per lifecycle state at the end, by state name.
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
    /// What the operator does during the run (shared with it).
    pub operator: std::sync::Arc<OperatorLog>,
    /// While set, no new device arrives (see [`ArrivalPause`]).
    pub paused: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// Runs the devices of `shard` against `dialect` from `start` for the scenario's duration.
/// Blocks the calling thread (each shard is a thread).
pub fn run_shard<D: Dialect>(
    plan: &Plan<'_>,
    shard: Shard,
    dialect: D,
    start: Instant,
    stop: CancellationToken,
    options: ShardOptions,
) -> std::io::Result<ShardResult> {
    let ShardOptions {
        ticks,
        record_transitions,
        operator,
        paused,
    } = options;
    let mut pause = ArrivalPause::new(paused);
    // The park hooks note each sleep of the thread, so a late send can say whether the thread
    // woke late or was busy (`park`).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .on_thread_park(super::park::parking)
        .on_thread_unpark(super::park::unparked)
        .build()?;
    let scenario = plan.scenario();
    let target = dialect.device_addr().ip();
    let clock = RunClock::new(start, scenario.time_scale, scenario.wake_grid);
    let shared = Shared {
        meter: Default::default(),
        marks: operator,
        images: images(scenario),
        time_scale: clock.time_scale(),
        grid: clock.grid(),
        calendar: Calendar::default(),
        serial_key: plan.serial_key(),
    };
    let sources = SourceAddrs::for_target(scenario.fleet.source_addrs, target);
    let retire = !dialect.operates();
    let ctx = Rc::new(ShardCtx::new(
        scenario.seed,
        clock,
        dialect,
        shared,
        sources,
        record_transitions,
    ));
    let members: Vec<_> = scenario
        .fleet
        .mix
        .iter()
        .map(|m| {
            plan_model(plan, &m.model).map(|model| {
                Rc::new(Member {
                    model,
                    group: m.group.clone(),
                    incidents: incidents(scenario, &clock, &m.group, retire),
                })
            })
        })
        .collect();
    // (arrival, index), latest first so the next is popped off the end: 16 bytes a device
    // until it arrives.
    let mut arrivals: Vec<(Duration, u64)> = (shard.first_from(0)..plan.devices())
        .step_by(shard.count as usize)
        .map(|index| (plan.first_wakeup(index), index))
        .collect();
    arrivals.sort_unstable_by(|a, b| b.cmp(a));
    for _ in &arrivals {
        ctx.planned();
    }
    let local = LocalSet::new();
    let end = start + scenario.duration;
    // The last instant the run holds: nothing due at the end or after it is woken for.
    let last = end.checked_sub(Duration::from_nanos(1)).unwrap_or(end);
    let far = end + Duration::from_secs(86_400);
    local.block_on(&runtime, async {
        // The waiting devices' wake-ups, rung on one timer; dropped with the local set. It and
        // the arrivals and sleepers below sleep on timerfds: an intended instant is when the
        // thread wakes, not tokio's next millisecond (a latency runs from that instant).
        let ringer = Rc::clone(&ctx);
        ctx.shared.calendar.close_at(end);
        tokio::task::spawn_local(async move { ringer.shared.calendar.ring(&Timer::precise()).await });
        let (arrival_timer, sleeper_timer) = (Timer::precise(), Timer::precise());
        let mut second = tokio::time::interval_at(start + TICK, TICK);
        loop {
            let held = pause.observe(Instant::now());
            // Arrival times count from the start, shifted by the time arrivals were paused. A
            // device arrives on the wake grid, as it wakes (rounded down: never late), so the
            // arrivals due in one step connect in one turn of the thread; its model time is
            // the exact arrival's.
            let schedule = start + pause.shift();
            let arrival_due = |at: Duration| clock.grid().floor(schedule + at);
            // The end's timer, tokio's, may fire a moment after these.
            let before_end = |at: Instant| if at <= last { at } else { far };
            let next_arrival = arrivals.last().map_or(far, |(at, _)| before_end(arrival_due(*at)));
            let next_sleeper = ctx
                .sleepers
                .borrow()
                .next_at()
                .map_or(far, |at| before_end(clock.real(at)));
            tokio::select! {
                () = tokio::time::sleep_until(end) => break,
                () = stop.cancelled() => break,
                () = sleeper_timer.sleep_until(next_sleeper) => {
                    let now = Instant::now();
                    loop {
                        // The borrow ends before the device is handled: it may fall asleep again.
                        let due = ctx.sleepers.borrow_mut().pop_if(|at| clock.real(at) <= now.min(last));
                        let Some((at, sleeper)) = due else { break };
                        wake(&ctx, *sleeper, Event::Wake, clock.real(at));
                    }
                    ctx.sleepers.borrow_mut().shrink();
                }
                () = ctx.sleepers_changed.notified() => {}
                () = arrival_timer.sleep_until(next_arrival), if arrivals.capacity() > 0 && !held => {
                    let now = Instant::now();
                    while let Some((at, index)) = arrivals.last().copied() && arrival_due(at) <= now.min(last) {
                        arrivals.pop();
                        let mix = plan.mix_of(index);
                        if let Some(member) = members.get(mix).cloned().flatten() {
                            let arrival = schedule + at;
                            let life = Life::new(ctx.seed, &member, index, clock.sim(arrival));
                            let device: Sleeper<D> = Sleeper { life, kept: None, member };
                            wake(&ctx, device, Event::Arrive, arrival_due(at));
                        }
                    }
                    if arrivals.is_empty() {
                        // Every device has arrived: give the list's memory back.
                        arrivals = Vec::new();
                    }
                }
                _ = second.tick() => {
                    if let Some(ticks) = &ticks {
                        let tick = Tick {
                            snapshot: ctx.shared.meter.take(),
                            states: *ctx.states.borrow(),
                            tasks: ctx.tasks.get(),
                            process: None,
                        };
                        // The channel holds a minute of ticks (TICK_QUEUE); only an aggregator
                        // that far behind makes this wait. A closed channel ends the run.
                        if ticks.send(tick).is_err() {
                            break;
                        }
                    }
                }
            }
        }
    });
    // The run is over: dropping the device tasks closes every device's socket (no MQTT
    // DISCONNECT: a device waiting holds nothing that listens for the end, which keeps it small).
    {
        let _runtime = runtime.enter();
        drop(local);
    }
    let snapshot = ctx.shared.meter.take();
    let states = ctx.states.borrow().iter().map(|(s, n)| (s.name(), n)).collect();
    let transitions = ctx.transitions.as_ref().map(|t| t.take()).unwrap_or_default();
    Ok(ShardResult {
        snapshot,
        states,
        transitions,
    })
}

fn plan_model(plan: &Plan<'_>, name: &str) -> Option<crate::scenario::DeviceModel> {
    plan.model_named(name).cloned()
}

/// What the scenario's outage and fault phases do to `group`, in simulated time and in time
/// order, each deciding its devices from the phase's own random stream. With `retire` (the
/// backend has no operator: an MQTT broker, an LwM2M server), so are its `decommission`
/// phases: the devices picked leave of their own accord.
pub fn incidents(scenario: &Scenario, clock: &RunClock, group: &str, retire: bool) -> Vec<Incident> {
    let start = clock.start();
    scenario
        .phases
        .iter()
        .enumerate()
        .filter(|(_, phase)| phase.group.as_deref().is_none_or(|g| g == group))
        .filter_map(|(k, phase)| match phase.action {
            Action::Outage { share, duration } => Some(Incident {
                start: clock.sim(start + phase.at),
                end: clock.sim(start + phase.at + duration),
                share,
                stream: StreamId::phase(u32::try_from(k).unwrap_or(u32::MAX)),
                kind: IncidentKind::Outage,
            }),
            Action::Fault { kind, share, duration } => {
                let begins = clock.sim(start + phase.at);
                Some(Incident {
                    start: begins,
                    // An instant fault is in force for a microsecond: the wake at its start.
                    end: clock
                        .sim(start + phase.at + duration)
                        .max(begins.after(Duration::from_micros(1))),
                    share,
                    stream: StreamId::phase(u32::try_from(k).unwrap_or(u32::MAX)),
                    kind: IncidentKind::Fault(kind),
                })
            }
            Action::Decommission { share } if retire => {
                let begins = clock.sim(start + phase.at);
                Some(Incident {
                    start: begins,
                    // In force for a microsecond, as an instant fault: the devices present
                    // then leave; one that arrives later does not.
                    end: begins.after(Duration::from_micros(1)),
                    share,
                    stream: StreamId::phase(u32::try_from(k).unwrap_or(u32::MAX)),
                    kind: IncidentKind::Retire,
                })
            }
            _ => None,
        })
        .collect()
}

/// The images the scenario's campaigns roll out, by version.
fn images(scenario: &Scenario) -> Vec<(String, Image)> {
    scenario
        .phases
        .iter()
        .filter_map(|phase| match &phase.action {
            Action::Ota(campaign) => Some((
                campaign.version.clone(),
                Image {
                    size_bytes: campaign.size_bytes,
                    corrupt: campaign.corrupt,
                    boot_fail: campaign.boot_fail,
                },
            )),
            _ => None,
        })
        .collect()
}
