//! The device core driven in virtual time by a tiny event loop standing in for the network
//! (every request answered at once, as scripted): its size, its determinism whatever company
//! it keeps, and its behaviour against the models' analytic values (battery life, time
//! online) and the backoff rules.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::path::Path;
use std::time::Duration;

use fleetsim::device::{Action, Ctx, Device, Event, SimTime, State};
use fleetsim::scenario::{DeviceModel, parse_model};

fn model(name: &str, body: &str) -> DeviceModel {
    let text = format!("name = \"{name}\"\nprotocol = \"mqtt\"\nfirmware = \"1.0\"\n{body}");
    parse_model(Path::new(&format!("{name}.toml")), &text).expect("valid model")
}

/// How the stand-in network answers a device's connect attempts.
type ConnectScript = fn(index: u64, attempt: u32) -> bool;

/// A virtual-time run of some devices of one model.
struct Sim<'a> {
    ctx: Ctx<'a>,
    devices: Vec<Device>,
    /// (time, device slot, event); the order field keeps equal times in push order.
    queue: BinaryHeap<Reverse<(SimTime, u64, usize, u8)>>,
    /// The wake each device last asked for; older wakes still queued are stale.
    wake: Vec<SimTime>,
    /// Each device's state changes, with their times.
    log: Vec<Vec<(SimTime, State)>>,
    connects: Vec<u32>,
    /// Clean goodbyes said, per device.
    leaves: Vec<u32>,
    script: ConnectScript,
    pushed: u64,
}

const EVENTS: [Event; 6] = [
    Event::Arrive,
    Event::Provisioned,
    Event::Connected,
    Event::ConnectFailed,
    Event::Wake,
    Event::Decommissioned,
];

impl<'a> Sim<'a> {
    fn new(ctx: Ctx<'a>, indices: &[u64], script: ConnectScript) -> Self {
        let mut sim = Sim {
            ctx,
            devices: indices.iter().map(|i| Device::new(*i, ctx, SimTime(0))).collect(),
            queue: BinaryHeap::new(),
            wake: vec![SimTime::NEVER; indices.len()],
            log: vec![vec![(SimTime(0), State::Unprovisioned)]; indices.len()],
            connects: vec![0; indices.len()],
            leaves: vec![0; indices.len()],
            script,
            pushed: 0,
        };
        for slot in 0..indices.len() {
            sim.push(SimTime(0), slot, Event::Arrive);
        }
        sim
    }

    fn push(&mut self, at: SimTime, slot: usize, event: Event) {
        let code = EVENTS.iter().position(|e| *e == event).unwrap_or(0) as u8;
        self.pushed += 1;
        self.queue.push(Reverse((at, self.pushed, slot, code)));
    }

    /// Runs until `end` or until every device stopped.
    fn run(&mut self, end: SimTime) {
        while let Some(Reverse((now, _, slot, code))) = self.queue.pop() {
            if now > end {
                break;
            }
            let event = EVENTS[usize::from(code)];
            if event == Event::Wake && self.wake[slot] != now {
                continue;
            }
            let actions = self.devices[slot].on_event(now, event, self.ctx);
            let state = self.devices[slot].state();
            if self.log[slot].last().map(|(_, s)| *s) != Some(state) {
                self.log[slot].push((now, state));
            }
            for action in actions.iter() {
                match action {
                    Action::Provision => self.push(now, slot, Event::Provisioned),
                    Action::Connect => {
                        let index = self.devices[slot].index;
                        let ok = (self.script)(index, self.connects[slot]);
                        self.connects[slot] += 1;
                        self.push(now, slot, if ok { Event::Connected } else { Event::ConnectFailed });
                    }
                    Action::WakeAt(at) => {
                        self.wake[slot] = at;
                        self.push(at, slot, Event::Wake);
                    }
                    Action::Leave => self.leaves[slot] += 1,
                    _ => {}
                }
            }
        }
    }

    /// How long device `slot` spent Online before `end`.
    fn time_online(&self, slot: usize, end: SimTime) -> Duration {
        self.time_in(State::Online, slot, end)
    }

    /// How long device `slot` spent in `state` before `end`.
    fn time_in(&self, state: State, slot: usize, end: SimTime) -> Duration {
        let log = &self.log[slot];
        log.iter()
            .enumerate()
            .filter(|(_, (_, s))| *s == state)
            .map(|(i, (from, _))| log.get(i + 1).map_or(end, |(to, _)| *to).since(*from))
            .sum()
    }
}

fn always(_: u64, _: u32) -> bool {
    true
}

const DAY: Duration = Duration::from_secs(86_400);

/// The wake-up `actions` end with: every event's actions do.
fn wake_of(actions: fleetsim::device::Actions) -> SimTime {
    actions
        .iter()
        .find_map(|a| match a {
            Action::WakeAt(at) => Some(at),
            _ => None,
        })
        .expect("every event ends with a wake-up")
}

#[test]
fn a_device_is_small() {
    let size = std::mem::size_of::<Device>();
    println!("size_of::<Device>() = {size}");
    assert!(size <= 256, "a device's state grew to {size} bytes");
}

#[test]
fn a_device_behaves_the_same_alone_or_in_company() {
    let m = model(
        "mixed",
        "[telemetry]\ninterval = \"5m\"\njitter = \"20%\"\npayload_bytes = 64\n\
         [battery]\ncapacity_mah = 50\nsleep_ua = 10\ntx_mas = 30\n\
         [link]\nmean_online = \"3h\"\nmean_offline = \"10m\"\n",
    );
    let ctx = Ctx::new(42, &m);
    let flaky: ConnectScript = |index, attempt| (index + u64::from(attempt)) % 3 != 0;
    let end = SimTime(0).after(DAY * 3);
    let mut together = Sim::new(ctx, &[0, 1, 2, 3, 4, 5, 6, 7], flaky);
    together.run(end);
    for slot in [1usize, 6] {
        let mut alone = Sim::new(ctx, &[slot as u64], flaky);
        alone.run(end);
        assert_eq!(alone.log[0], together.log[slot], "device {slot}");
        assert_eq!(alone.devices[0], together.devices[slot]);
    }
    let mut again = Sim::new(ctx, &[0, 1, 2, 3, 4, 5, 6, 7], flaky);
    again.run(end);
    assert_eq!(again.log, together.log, "same seed, same lives");
    let other_seed = Ctx::new(43, &m);
    let mut reseeded = Sim::new(other_seed, &[0, 1, 2, 3, 4, 5, 6, 7], flaky);
    reseeded.run(end);
    assert_ne!(reseeded.log, together.log, "another seed, other lives");
}

#[test]
fn a_battery_device_dies_when_its_model_says() {
    let m = model(
        "coin-cell",
        "[telemetry]\ninterval = \"1m\"\npayload_bytes = 16\n\
         [battery]\ncapacity_mah = 20\nsleep_ua = 5\ntx_mas = 40\nlow_at = \"20%\"\nlow_interval_factor = 3.0\n",
    );
    let expected = m
        .battery
        .as_ref()
        .expect("battery")
        .expected_lifetime(m.telemetry.interval);
    let ctx = Ctx::new(1, &m);
    let mut sim = Sim::new(ctx, &[0], always);
    sim.run(SimTime::NEVER);
    let (died_at, state) = *sim.log[0].last().expect("a log");
    assert_eq!(state, State::Dead);
    let lived = died_at.0 as f64 / 1e6;
    let analytic = expected.as_secs_f64();
    // The model charges a whole transmission at each report, the analytic figure spreads it
    // evenly: they differ by at most one (stretched) interval.
    assert!(
        (lived - analytic).abs() <= 3.0 * 60.0,
        "lived {lived:.0} s, expected {analytic:.0} s"
    );
}

#[test]
fn time_online_follows_the_link_model() {
    let m = model(
        "flaky",
        "[telemetry]\ninterval = \"10m\"\npayload_bytes = 16\n\
         [link]\nmean_online = \"1h\"\nmean_offline = \"20m\"\nreconnect = { initial = \"1s\", max = \"10s\", multiplier = 2.0 }\n",
    );
    let ctx = Ctx::new(7, &m);
    let indices: Vec<u64> = (0..40).collect();
    let end = SimTime(0).after(DAY * 20);
    let mut sim = Sim::new(ctx, &indices, always);
    sim.run(end);
    let online: f64 = (0..indices.len())
        .map(|slot| sim.time_online(slot, end).as_secs_f64())
        .sum();
    let fraction = online / (indices.len() as f64 * (DAY * 20).as_secs_f64());
    let expected = m.link.online_fraction();
    // 40 devices x 20 days is about 23,000 on/off cycles: the standard error of the fraction
    // is about 0.2 percentage points; connecting is instant here.
    assert!(
        (fraction - expected).abs() < 0.015,
        "online {fraction:.4}, model {expected:.4}"
    );
    assert!(
        sim.devices.iter().all(|d| d.published() > 1000),
        "devices report while online"
    );
}

#[test]
fn failed_connects_back_off_with_full_jitter_then_reset() {
    let m = model(
        "stubborn",
        "[telemetry]\ninterval = \"1h\"\npayload_bytes = 16\n\
         [link]\nmean_online = \"3650d\"\nmean_offline = \"1s\"\nreconnect = { initial = \"2s\", max = \"60s\", multiplier = 2.0 }\n",
    );
    let ctx = Ctx::new(3, &m);
    // The first eight attempts fail, then every one succeeds.
    let mut sim = Sim::new(ctx, &[0], |_, attempt| attempt >= 8);
    sim.run(SimTime(0).after(Duration::from_secs(3600)));
    let connecting: Vec<SimTime> = sim.log[0]
        .iter()
        .filter(|(_, s)| *s == State::Connecting)
        .map(|(t, _)| *t)
        .collect();
    assert_eq!(sim.connects[0], 9, "eight failures, then a success");
    for (attempt, pair) in connecting.windows(2).enumerate() {
        let gap = pair[1].since(pair[0]);
        let ceiling = m.link.reconnect.ceiling(attempt as u32);
        assert!(gap <= ceiling, "attempt {attempt}: waited {gap:?}, ceiling {ceiling:?}");
    }
    assert_eq!(sim.devices[0].state(), State::Online);
}

#[test]
fn a_decommissioned_device_stops_for_good() {
    let m = model("plain", "[telemetry]\ninterval = \"1m\"\npayload_bytes = 16\n");
    let ctx = Ctx::new(9, &m);
    let mut device = Device::new(0, ctx, SimTime(0));
    let now = SimTime(0);
    let _ = device.on_event(now, Event::Arrive, ctx);
    let _ = device.on_event(now, Event::Provisioned, ctx);
    let _ = device.on_event(now, Event::Connected, ctx);
    let actions: Vec<Action> = device.on_event(now, Event::Decommissioned, ctx).iter().collect();
    assert_eq!(actions, vec![Action::Disconnect, Action::Stop]);
    assert_eq!(device.state(), State::Decommissioned);
    assert_eq!(
        device.on_event(now.after(DAY), Event::Wake, ctx).iter().count(),
        0,
        "no life after"
    );
}

/// A duty-cycled device sleeps between reports: it arrives asleep, and at each report it
/// wakes, connects, publishes once and leaves, so connects, reports and goodbyes all match the
/// reporting schedule and nearly all its life is spent asleep.
#[test]
fn a_duty_cycled_device_connects_only_to_report() {
    let m = model(
        "sleepy",
        "[telemetry]\ninterval = \"15m\"\njitter = \"10%\"\npayload_bytes = 32\nduty_cycle = true\n\
         [link]\nmean_online = \"1000d\"\nmean_offline = \"1s\"\n",
    );
    let ctx = Ctx::new(7, &m);
    let indices: Vec<u64> = (0..200).collect();
    let mut sim = Sim::new(ctx, &indices, always);
    let end = SimTime(0).after(DAY);
    sim.run(end);
    let mut first_states = Vec::new();
    for (slot, device) in sim.devices.iter().enumerate() {
        let reports = device.published();
        // 96 intervals of 15 minutes in a day, the first at a random point of the first one.
        assert!((94..=98).contains(&reports), "device {slot} reported {reports} times");
        assert_eq!(sim.connects[slot], reports, "device {slot}: one connect per report");
        assert_eq!(sim.leaves[slot], reports, "device {slot}: one goodbye per report");
        assert_eq!(device.state(), State::Sleeping);
        let asleep = sim.time_in(State::Sleeping, slot, end).as_secs_f64();
        assert!(
            asleep > 0.99 * DAY.as_secs_f64(),
            "device {slot} slept {asleep} s of a day"
        );
        first_states.push(sim.log[slot][1]);
    }
    // Arrival puts a device to sleep at once; the first reports spread over the interval.
    assert!(
        first_states
            .iter()
            .all(|(at, state)| *at == SimTime(0) && *state == State::Sleeping)
    );
    let first_connects: Vec<f64> = sim
        .log
        .iter()
        .filter_map(|log| log.iter().find(|(_, s)| *s == State::Online))
        .map(|(at, _)| at.0 as f64 / 1e6)
        .collect();
    let mean = first_connects.iter().sum::<f64>() / first_connects.len() as f64;
    assert!(
        (350.0..550.0).contains(&mean),
        "first reports average {mean} s, not mid-interval"
    );
}

/// A duty-cycled device whose model says `awake` stays connected that long after each report
/// (rounded up to a whole second), then leaves: its server's queue mode has it listening.
#[test]
fn a_duty_cycled_device_stays_awake_after_its_report_when_its_model_says() {
    let m = model(
        "listener",
        "[telemetry]\ninterval = \"15m\"\njitter = \"10%\"\npayload_bytes = 32\nduty_cycle = true\nawake = \"1m\"\n\
         [link]\nmean_online = \"1000d\"\nmean_offline = \"1s\"\n",
    );
    let ctx = Ctx::new(7, &m);
    let indices: Vec<u64> = (0..50).collect();
    let mut sim = Sim::new(ctx, &indices, always);
    let end = SimTime(0).after(DAY);
    sim.run(end);
    for (slot, device) in sim.devices.iter().enumerate() {
        let reports = device.published();
        assert!((94..=98).contains(&reports), "device {slot} reported {reports} times");
        // The day may end while a device is still awake after its last report.
        let leaves = sim.leaves[slot];
        assert!(
            leaves == reports || leaves + 1 == reports,
            "device {slot}: one goodbye per report"
        );
        let log = &sim.log[slot];
        let mut spells = 0;
        for pair in log.windows(2) {
            if let [(online, State::Online), (asleep, State::Sleeping)] = pair {
                let awake = asleep.0 - online.0;
                assert!(
                    (60_000_000..=61_000_001).contains(&awake),
                    "device {slot} stayed {awake} us after connecting"
                );
                spells += 1;
            }
        }
        assert_eq!(spells, leaves, "device {slot}: one awake spell per report");
    }
}

/// A duty-cycled device whose report falls due while its link is down waits for the link to
/// come back, without asking to wake again and again meanwhile, then reports at once.
#[test]
fn a_sleeping_device_with_its_link_down_waits_for_the_link() {
    let m = model(
        "sleepy",
        "[telemetry]\ninterval = \"15m\"\npayload_bytes = 32\nduty_cycle = true\n\
         [link]\nmean_online = \"2h\"\nmean_offline = \"2h\"\n",
    );
    let ctx = Ctx::new(5, &m);
    let mut checked = 0;
    for index in 0..200 {
        let mut device = Device::new(index, ctx, SimTime(0));
        let mut wake = match device.on_event(SimTime(0), Event::Arrive, ctx).iter().last() {
            Some(Action::WakeAt(at)) => at,
            other => panic!("asleep after arriving, asking to wake: {other:?}"),
        };
        let mut wakes = 0;
        while wake < SimTime(0).after(DAY) && wakes < 10_000 {
            let before = device.state();
            let actions = device.on_event(wake, Event::Wake, ctx);
            wakes += 1;
            if actions.iter().any(|a| a == Action::Provision) {
                checked += 1;
                break;
            }
            assert_eq!(before, State::Sleeping);
            wake = match actions.iter().last() {
                Some(Action::WakeAt(at)) => at,
                other => panic!("device {index} asked for nothing after a wake: {other:?}"),
            };
        }
        // Each wake is a report coming due or a link change: a handful before the first report.
        assert!(wakes <= 20, "device {index} woke {wakes} times before its first report");
    }
    assert!(checked > 150, "{checked} devices reported within the day");
}

/// A hawkBit server sets how often its devices poll: after the device hears the interval, its
/// reports (polls) come exactly that far apart, whatever its model's schedule and jitter say;
/// an interval of 0 gives the schedule back to the model.
#[test]
fn the_backend_sets_the_report_interval_when_it_asks() {
    let m = model(
        "poller",
        "[telemetry]\ninterval = \"10m\"\njitter = \"20%\"\npayload_bytes = 8\n[link]\nmean_online = \"1000d\"\nmean_offline = \"1s\"\n",
    );
    let ctx = Ctx::new(7, &m);
    let mut device = Device::new(0, ctx, SimTime(0));
    let publishes =
        |actions: fleetsim::device::Actions| actions.iter().filter(|a| matches!(a, Action::Publish { .. })).count();
    device.on_event(SimTime(0), Event::Arrive, ctx);
    device.on_event(SimTime(0), Event::Provisioned, ctx);
    let connected = device.on_event(SimTime(0), Event::Connected, ctx);
    // Connected: the first report goes at once, the next on the model's schedule (minutes).
    let start = wake_of(connected);
    let first = device.on_event(start, Event::Wake, ctx);
    assert_eq!(publishes(first), 1);
    assert!(wake_of(first).since(start) > Duration::from_secs(60));
    let told = device.on_event(start, Event::ReportEvery { ms: 5_000 }, ctx);
    assert_eq!(
        wake_of(told),
        start.after(Duration::from_secs(5)),
        "the next poll waits the server's interval"
    );
    let mut now = wake_of(told);
    for k in 1..=20u64 {
        let actions = device.on_event(now, Event::Wake, ctx);
        assert_eq!(publishes(actions), 1, "poll {k}");
        assert_eq!(
            wake_of(actions),
            now.after(Duration::from_secs(5)),
            "poll {k} keeps the pace"
        );
        now = wake_of(actions);
    }
    let released = device.on_event(now, Event::ReportEvery { ms: 0 }, ctx);
    let actions = device.on_event(wake_of(released), Event::Wake, ctx);
    assert!(
        wake_of(actions).since(wake_of(released)) > Duration::from_secs(60),
        "back on the model's schedule"
    );
}

#[test]
fn a_device_renews_its_certificate_before_it_expires_and_asks_again_when_unanswered() {
    let m = model(
        "renewer",
        "[telemetry]\ninterval = \"15m\"\npayload_bytes = 8\n[link]\nmean_online = \"1000d\"\nmean_offline = \"1s\"\n\
         [certificate]\nvalidity = \"1h\"\nrenew_at = \"50%\"\n",
    );
    let ctx = Ctx::new(7, &m);
    let mut device = Device::new(0, ctx, SimTime(0));
    let minutes = |m: f64| SimTime((m * 60e6) as u64);
    device.on_event(SimTime(0), Event::Arrive, ctx);
    device.on_event(SimTime(0), Event::Provisioned, ctx);
    let connected = device.on_event(SimTime(0), Event::Connected, ctx);
    // Follows the device's wakes until `end`, answering (a new certificate, then the
    // reconnect it makes) the requests `answer` picks; the times it asked.
    let mut asked = Vec::new();
    let mut run =
        |device: &mut Device, mut actions: fleetsim::device::Actions, end: SimTime, answer: &dyn Fn(usize) -> bool| {
            loop {
                let now = wake_of(actions);
                if now > end {
                    return actions;
                }
                actions = device.on_event(now, Event::Wake, ctx);
                if actions.iter().any(|a| a == Action::RequestCertificate) {
                    asked.push(now);
                    if answer(asked.len()) {
                        let changed = device.on_event(now, Event::CredentialsChanged, ctx);
                        assert!(changed.iter().any(|a| a == Action::Leave), "it logs in again");
                        assert!(changed.iter().any(|a| a == Action::Connect));
                        actions = device.on_event(now, Event::Connected, ctx);
                    }
                }
            }
        };
    // The first request at half the validity is answered; the second is not, and is asked
    // again a quarter of the time left later; that one is answered.
    run(&mut device, connected, minutes(100.0), &|n| n != 2);
    let expected = [30.0, 60.0, 67.5, 97.5].map(minutes);
    assert_eq!(
        asked, expected,
        "renewals at 50% of each certificate's life, a retry 7.5 minutes on"
    );

    // Offline when the next renewal is due (at 127.5 minutes): it asks once connected again.
    let lost = device.on_event(minutes(120.0), Event::ConnectionLost, ctx);
    assert!(lost.iter().all(|a| a != Action::RequestCertificate));
    let mut now = minutes(120.0);
    let mut actions = lost;
    while device.state() != State::Connecting {
        now = wake_of(actions);
        assert!(now < minutes(150.0), "it reconnects after its backoff");
        actions = device.on_event(now, Event::Wake, ctx);
    }
    let back = minutes(140.0).max(now);
    let connected = device.on_event(back, Event::Connected, ctx);
    let at = wake_of(connected);
    assert!(
        at.since(back) < Duration::from_millis(1),
        "the overdue renewal comes at once"
    );
    let renewal = device.on_event(at, Event::Wake, ctx);
    assert!(renewal.iter().any(|a| a == Action::RequestCertificate));
}

#[test]
fn a_device_whose_model_gives_no_validity_never_renews() {
    let m = model(
        "keeper",
        "[telemetry]\ninterval = \"15m\"\npayload_bytes = 8\n[link]\nmean_online = \"1000d\"\nmean_offline = \"1s\"\n",
    );
    let ctx = Ctx::new(7, &m);
    let mut device = Device::new(0, ctx, SimTime(0));
    device.on_event(SimTime(0), Event::Arrive, ctx);
    device.on_event(SimTime(0), Event::Provisioned, ctx);
    let mut actions = device.on_event(SimTime(0), Event::Connected, ctx);
    for _ in 0..500 {
        let now = wake_of(actions);
        actions = device.on_event(now, Event::Wake, ctx);
        assert!(actions.iter().all(|a| a != Action::RequestCertificate), "at {now:?}");
    }
}

#[test]
fn reports_carry_the_battery_as_it_drains_and_say_when_it_is_low() {
    let m = model(
        "drainer",
        "[telemetry]\ninterval = \"5m\"\npayload_bytes = 8\n\
         [battery]\ncapacity_mah = 20\nsleep_ua = 10\ntx_mas = 30\nlow_at = \"50%\"\n\
         [link]\nmean_online = \"1000d\"\nmean_offline = \"1s\"\n",
    );
    let ctx = Ctx::new(11, &m);
    let mut device = Device::new(0, ctx, SimTime(0));
    device.on_event(SimTime(0), Event::Arrive, ctx);
    device.on_event(SimTime(0), Event::Provisioned, ctx);
    let mut actions = device.on_event(SimTime(0), Event::Connected, ctx);
    let mut levels = Vec::new();
    while device.state() != State::Dead && levels.len() < 100_000 {
        actions = device.on_event(wake_of(actions), Event::Wake, ctx);
        levels.extend(actions.iter().filter_map(|a| match a {
            Action::Publish { battery, .. } => Some(battery.expect("a battery device says its level")),
            _ => None,
        }));
    }
    assert!(levels.len() > 100, "{} reports", levels.len());
    assert!(levels[0].permille > 990 && !levels[0].low, "{:?}", levels[0]);
    assert!(
        levels.windows(2).all(|w| w[1].permille <= w[0].permille),
        "the level only falls"
    );
    assert!(levels.last().is_some_and(|l| l.permille < 50 && l.low));
    for level in &levels {
        assert_eq!(
            level.low,
            level.permille < 500 || (level.permille == 500 && level.low),
            "{level:?}"
        );
    }
    assert!(levels.iter().any(|l| l.low) && levels.iter().any(|l| !l.low));

    let mains = model("mains", "[telemetry]\ninterval = \"5m\"\npayload_bytes = 8\n");
    let ctx = Ctx::new(11, &mains);
    let mut device = Device::new(0, ctx, SimTime(0));
    device.on_event(SimTime(0), Event::Arrive, ctx);
    device.on_event(SimTime(0), Event::Provisioned, ctx);
    let connected = device.on_event(SimTime(0), Event::Connected, ctx);
    let first = device.on_event(wake_of(connected), Event::Wake, ctx);
    assert!(
        first.iter().any(|a| matches!(a, Action::Publish { battery: None, .. })),
        "a mains device says no level"
    );
}

#[test]
fn reports_carry_the_sensor_reading_as_a_bounded_random_walk() {
    let m = model(
        "walker",
        "[telemetry]\ninterval = \"1m\"\npayload_bytes = 8\n[link]\nmean_online = \"1000d\"\nmean_offline = \"1s\"\n",
    );
    let readings = |seed: u64| {
        let ctx = Ctx::new(seed, &m);
        let mut device = Device::new(3, ctx, SimTime(0));
        device.on_event(SimTime(0), Event::Arrive, ctx);
        device.on_event(SimTime(0), Event::Provisioned, ctx);
        let mut actions = device.on_event(SimTime(0), Event::Connected, ctx);
        let mut readings = Vec::new();
        while readings.len() < 2_000 {
            actions = device.on_event(wake_of(actions), Event::Wake, ctx);
            readings.extend(actions.iter().filter_map(|a| match a {
                Action::Publish { reading_centi, .. } => Some(reading_centi),
                _ => None,
            }));
        }
        readings
    };
    let walk = readings(5);
    assert_eq!(walk, readings(5), "the same seed, the same readings");
    assert_ne!(walk, readings(6));
    assert!(walk.iter().all(|r| *r <= 10_000), "within 0 to 100");
    // A step is at most 1.0, plus the hundredths' rounding on each side.
    assert!(walk.windows(2).all(|w| w[0].abs_diff(w[1]) <= 101), "small steps");
    let (low, high) = (walk.iter().min(), walk.iter().max());
    assert!(
        high.zip(low).is_some_and(|(h, l)| h - l > 1_000),
        "it wanders: {low:?} to {high:?}"
    );
}
