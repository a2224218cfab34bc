//! The device core's answers to the operator's phases, driven in virtual time by a tiny loop
//! standing in for an always-willing network: firmware updates (cut downloads resumed,
//! outcomes in the model's proportions, reports in the backend's order), mass outages (who is
//! cut off, nothing leaves a dead network, recovery reported), commands and desired config.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::path::Path;
use std::time::Duration;

use fleetsim::device::{
    Action, BOOT, CommandKind, Ctx, Device, Event, Incident, IncidentKind, OtaReport, SimTime, State,
};
use fleetsim::model::{FaultKind, FaultSet, Image, Outcome, StreamId};
use fleetsim::scenario::{DeviceModel, parse_model};

fn model(body: &str) -> DeviceModel {
    let text = format!("name = \"m\"\nprotocol = \"mqtt\"\nfirmware = \"1.0\"\n{body}");
    parse_model(Path::new("m.toml"), &text).expect("valid model")
}

/// A steady mains device with a risky update path.
fn updater() -> DeviceModel {
    model(
        "[telemetry]\ninterval = \"10m\"\npayload_bytes = 16\n\
         [link]\nmean_online = \"10000d\"\nmean_offline = \"1s\"\nreconnect = { initial = \"1s\", max = \"1m\", multiplier = 2.0 }\n\
         [ota]\ndownload_kbps = 100\ninterrupt = \"40%\"\ncorrupt = \"10%\"\nboot_fail = \"20%\"\nbrick = \"25%\"\n",
    )
}

/// One device against a network that answers every request at once.
struct Life<'a> {
    ctx: Ctx<'a>,
    device: Device,
    queue: BinaryHeap<Reverse<(SimTime, u64, usize)>>,
    events: Vec<Event>,
    wake: SimTime,
    /// Every action with its time.
    actions: Vec<(SimTime, Action)>,
    pushed: u64,
    /// The server has no image: every download finds it gone.
    no_image: bool,
}

impl<'a> Life<'a> {
    fn new(ctx: Ctx<'a>, index: u64) -> Self {
        let mut life = Self {
            ctx,
            device: Device::new(index, ctx, SimTime(0)),
            queue: BinaryHeap::new(),
            events: Vec::new(),
            wake: SimTime::NEVER,
            actions: Vec::new(),
            pushed: 0,
            no_image: false,
        };
        life.push(SimTime(0), Event::Arrive);
        life
    }

    fn push(&mut self, at: SimTime, event: Event) {
        self.events.push(event);
        self.pushed += 1;
        self.queue.push(Reverse((at, self.pushed, self.events.len() - 1)));
    }

    /// Runs until `end`.
    fn run(&mut self, end: SimTime) {
        while let Some(Reverse((now, _, slot))) = self.queue.peek().copied() {
            if now > end {
                break;
            }
            self.queue.pop();
            let event = self.events[slot];
            if event == Event::Wake && self.wake != now {
                continue;
            }
            for action in self.device.on_event(now, event, self.ctx).iter() {
                self.actions.push((now, action));
                match action {
                    Action::Provision => self.push(now, Event::Provisioned),
                    Action::Connect => self.push(now, Event::Connected),
                    Action::Download { .. } if self.no_image => self.push(now, Event::ImageGone),
                    Action::Download { to, .. } => self.push(now, Event::Downloaded { reached: to }),
                    Action::WakeAt(at) => {
                        self.wake = at;
                        self.push(at, Event::Wake);
                    }
                    _ => {}
                }
            }
        }
    }

    fn reports(&self) -> Vec<OtaReport> {
        self.actions
            .iter()
            .filter_map(|(_, a)| match a {
                Action::OtaStatus(r) => Some(*r),
                _ => None,
            })
            .collect()
    }

    fn outcome(&self) -> Option<Outcome> {
        self.actions.iter().find_map(|(_, a)| match a {
            Action::OtaDone(o) => Some(*o),
            _ => None,
        })
    }
}

const MINUTE: Duration = Duration::from_secs(60);

#[test]
fn updates_end_in_the_models_proportions_with_reports_in_the_backends_order() {
    let m = updater();
    let ctx = Ctx::new(5, &m);
    let image = Image {
        size_bytes: 500_000,
        corrupt: 0.0,
        boot_fail: 0.1,
    };
    let n = 4000;
    let mut counts = [0u64; 4];
    let mut cut_attempts = 0u64;
    for index in 0..n {
        let mut life = Life::new(ctx, index);
        life.push(SimTime(0).after(MINUTE), Event::OtaJob(image));
        life.run(SimTime(0).after(MINUTE * 60));
        let outcome = life.outcome().expect("every update ends");
        counts[outcome.index()] += 1;
        use OtaReport::*;
        let expected: &[OtaReport] = match outcome {
            Outcome::Installed => &[Downloading, Verifying, Installing, Rebooting, Succeeded],
            Outcome::Corrupt => &[Downloading, Verifying, Failed],
            Outcome::RolledBack => &[Downloading, Verifying, Installing, Rebooting, RolledBack],
            Outcome::Bricked => &[Downloading, Verifying, Installing, Rebooting],
        };
        assert_eq!(life.reports(), expected, "device {index}");
        // Downloads: each attempt starts where the last one stopped; the last reaches the end.
        let ranges: Vec<(u64, u64)> = life
            .actions
            .iter()
            .filter_map(|(_, a)| match a {
                Action::Download { from, to } => Some((*from, *to)),
                _ => None,
            })
            .collect();
        assert_eq!(ranges[0].0, 0);
        assert!(ranges.windows(2).all(|w| w[1].0 == w[0].1), "{ranges:?}");
        assert_eq!(ranges.last().map(|r| r.1), Some(image.size_bytes));
        cut_attempts += ranges.len() as u64 - 1;
        let end_state = life.device.state();
        match outcome {
            Outcome::Bricked => assert_eq!(end_state, State::Bricked),
            Outcome::RolledBack => assert_eq!(end_state, State::RolledBack),
            _ => assert_eq!(end_state, State::Online),
        }
    }
    let ota = m.ota.as_ref().expect("ota");
    let p = ota.outcome_probabilities(&image);
    for (k, &c) in counts.iter().enumerate() {
        // Binomial(n, p_k): tolerance 5 standard errors.
        let (n, pk) = (n as f64, p[k]);
        let se = (n * pk * (1.0 - pk)).sqrt();
        assert!((c as f64 - n * pk).abs() < 5.0 * se, "{counts:?} vs {p:?}");
    }
    // Cuts per update are geometric: mean interrupt / (1 - interrupt) = 2/3, sd sqrt(0.4)/0.6.
    let mean_cuts = cut_attempts as f64 / n as f64;
    let se = 0.4f64.sqrt() / 0.6 / (n as f64).sqrt();
    assert!((mean_cuts - 0.4 / 0.6).abs() < 5.0 * se, "{mean_cuts}");
}

#[test]
fn an_update_waits_out_the_modelled_transfer_and_the_reboot() {
    let m = model(
        "[telemetry]\ninterval = \"10m\"\npayload_bytes = 16\n\
         [ota]\ndownload_kbps = 80\ninterrupt = \"0%\"\ncorrupt = \"0%\"\nboot_fail = \"0%\"\nbrick = \"0%\"\n",
    );
    let ctx = Ctx::new(1, &m);
    let mut life = Life::new(ctx, 0);
    let job_at = SimTime(0).after(MINUTE);
    // 100 kB at 80 kbit/s: 10 s of transfer.
    let image = Image {
        size_bytes: 100_000,
        corrupt: 0.0,
        boot_fail: 0.0,
    };
    life.push(job_at, Event::OtaJob(image));
    life.run(SimTime(0).after(MINUTE * 10));
    let at = |wanted: OtaReport| {
        life.actions
            .iter()
            .find(|(_, a)| *a == Action::OtaStatus(wanted))
            .map(|(t, _)| *t)
            .expect("reported")
    };
    assert_eq!(at(OtaReport::Downloading), job_at);
    assert_eq!(at(OtaReport::Verifying), job_at.after(Duration::from_secs(10)));
    assert_eq!(
        at(OtaReport::Succeeded),
        job_at.after(Duration::from_secs(10)).after(BOOT)
    );
    assert_eq!(life.device.update_started(), job_at);
}

#[test]
fn an_outage_cuts_off_its_share_and_they_come_back_after_it() {
    let m = updater();
    let outage = Incident {
        start: SimTime(0).after(MINUTE * 10),
        end: SimTime(0).after(MINUTE * 15),
        share: 0.3,
        stream: StreamId::phase(2),
        kind: IncidentKind::Outage,
    };
    let outages = [outage];
    let ctx = Ctx {
        seed: 9,
        model: &m,
        incidents: &outages,
    };
    let n = 2000;
    let mut hit = 0;
    for index in 0..n {
        let mut life = Life::new(ctx, index);
        life.run(SimTime(0).after(MINUTE * 60));
        let hits = outage.hits(9, index);
        let dropped = life
            .actions
            .iter()
            .any(|(t, a)| *t == outage.start && *a == Action::Disconnect);
        assert_eq!(dropped, hits, "device {index}");
        if !hits {
            continue;
        }
        hit += 1;
        // Nothing leaves a dead network: no connect attempt during the outage.
        assert!(
            !life
                .actions
                .iter()
                .any(|(t, a)| *t >= outage.start && *t < outage.end && *a == Action::Connect),
            "device {index}"
        );
        let recovered = life.actions.iter().find_map(|(t, a)| match a {
            Action::Recovered { outage_end } => Some((*t, *outage_end)),
            _ => None,
        });
        let (at, end) = recovered.expect("recovered");
        assert_eq!(end, outage.end);
        // Backing off since the outage started: at most the backoff ceiling after its end.
        assert!(at >= outage.end && at <= outage.end.after(MINUTE), "{at:?}");
        assert_eq!(life.device.state(), State::Online);
    }
    let (n, p) = (n as f64, 0.3);
    assert!((hit as f64 - n * p).abs() < 5.0 * (n * p * (1.0 - p)).sqrt(), "{hit}");
}

#[test]
fn commands_are_answered_and_reboot_comes_back_after_boot() {
    let m = updater();
    let ctx = Ctx::new(3, &m);
    let mut life = Life::new(ctx, 0);
    let at = SimTime(0).after(MINUTE);
    life.push(at, Event::Command(CommandKind::Logs));
    life.push(at.after(MINUTE), Event::Command(CommandKind::Reboot));
    life.run(SimTime(0).after(MINUTE * 5));
    let at_times = |wanted: Action| -> Vec<SimTime> {
        life.actions
            .iter()
            .filter(|(_, a)| *a == wanted)
            .map(|(t, _)| *t)
            .collect()
    };
    let answers: Vec<(SimTime, Action)> = life
        .actions
        .iter()
        .filter(|(_, a)| matches!(a, Action::CommandResult { .. }))
        .copied()
        .collect();
    assert_eq!(
        answers.iter().map(|(t, _)| *t).collect::<Vec<_>>(),
        [at, at.after(MINUTE)]
    );
    // Each answer says how the device stands: no battery (mains power), its reports so far.
    for (_, answer) in &answers {
        let Action::CommandResult { battery, seq, .. } = answer else {
            unreachable!()
        };
        assert_eq!(*battery, None, "{answer:?}");
        assert!(*seq >= 1, "it reported when it connected: {answer:?}");
    }
    assert_eq!(at_times(Action::Leave), [at.after(MINUTE)]);
    let connects = at_times(Action::Connect);
    assert_eq!(connects.last(), Some(&at.after(MINUTE).after(BOOT)), "{connects:?}");
    assert_eq!(
        life.device.booted(),
        Some(at.after(MINUTE).after(BOOT)),
        "its uptime counts from the boot"
    );
}

#[test]
fn desired_config_is_reported_once_per_newer_version() {
    let m = updater();
    let ctx = Ctx::new(3, &m);
    let mut life = Life::new(ctx, 0);
    let at = SimTime(0).after(MINUTE);
    for (k, version) in [3, 3, 2, 5].into_iter().enumerate() {
        life.push(
            at.after(Duration::from_secs(k as u64)),
            Event::ConfigDesired { version },
        );
    }
    life.run(SimTime(0).after(MINUTE * 5));
    let reported: Vec<u32> = life
        .actions
        .iter()
        .filter_map(|(_, a)| match a {
            Action::ReportConfig { version } => Some(*version),
            _ => None,
        })
        .collect();
    assert_eq!(reported, [3, 5]);
}

/// A steady mains device reporting every 10 minutes, with the `[faults]` given.
fn faulty(faults: &str) -> DeviceModel {
    model(&format!(
        "[telemetry]\ninterval = \"10m\"\npayload_bytes = 16\n\
         [link]\nmean_online = \"10000d\"\nmean_offline = \"1s\"\n\
         [faults]\n{faults}"
    ))
}

/// The reports of a life: time, reading and faults.
fn publishes(life: &Life<'_>) -> Vec<(SimTime, u16, FaultSet)> {
    life.actions
        .iter()
        .filter_map(|(t, a)| match a {
            Action::Publish {
                reading_centi, faults, ..
            } => Some((*t, *reading_centi, *faults)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_stuck_sensor_repeats_its_reading_for_its_spell_and_moves_again_after() {
    let m = faulty("stuck_sensor = { every = \"1d\", lasts = \"2h\" }\n");
    let ctx = Ctx::new(3, &m);
    let (mut stuck, mut moving) = (0, 0);
    for index in 0..20 {
        let mut life = Life::new(ctx, index);
        life.run(SimTime(0).after(MINUTE * 60 * 24 * 10));
        let reports = publishes(&life);
        assert!(reports.len() > 1000, "{}", reports.len());
        for pair in reports.windows(2) {
            let ((_, before, _), (_, after, faults)) = (pair[0], pair[1]);
            if faults.has(FaultKind::StuckSensor) {
                assert_eq!(after, before, "device {index}: a stuck sensor repeats itself");
                stuck += 1;
            } else {
                moving += u32::from(after != before);
            }
        }
    }
    // 2 h in 24: about 8% of reports.
    let share = f64::from(stuck) / f64::from(stuck + moving);
    assert!((0.04..0.14).contains(&share), "{share}");
}

#[test]
fn a_fault_phase_puts_its_share_in_the_fault_for_its_time_and_no_longer() {
    let m = faulty("");
    let burst = Incident {
        start: SimTime(0).after(MINUTE * 60),
        end: SimTime(0).after(MINUTE * 120),
        share: 0.5,
        stream: StreamId::phase(1),
        kind: IncidentKind::Fault(FaultKind::ErrorBurst),
    };
    let incidents = [burst];
    let ctx = Ctx {
        seed: 4,
        model: &m,
        incidents: &incidents,
    };
    let mut hit = 0;
    for index in 0..200 {
        let mut life = Life::new(ctx, index);
        life.run(SimTime(0).after(MINUTE * 240));
        let hits = burst.hits(4, index);
        hit += u32::from(hits);
        for (at, _, faults) in publishes(&life) {
            let inside = burst.covers(at);
            assert_eq!(
                faults.has(FaultKind::ErrorBurst),
                inside && hits,
                "device {index} at {at:?}"
            );
            assert!(!faults.has(FaultKind::StuckSensor));
        }
    }
    assert!((70..130).contains(&hit), "{hit} of 200 hit at 50%");
}

#[test]
fn a_watchdog_reset_drops_the_connection_and_the_device_boots_and_comes_back() {
    let m = faulty("");
    let reset = Incident {
        start: SimTime(0).after(MINUTE * 30),
        end: SimTime(0).after(MINUTE * 30).after(Duration::from_micros(1)),
        share: 1.0,
        stream: StreamId::phase(0),
        kind: IncidentKind::Fault(FaultKind::WatchdogReset),
    };
    let incidents = [reset];
    let ctx = Ctx {
        seed: 4,
        model: &m,
        incidents: &incidents,
    };
    let mut life = Life::new(ctx, 7);
    life.run(SimTime(0).after(MINUTE * 60));
    let at_reset: Vec<Action> = life
        .actions
        .iter()
        .filter(|(t, _)| *t == reset.start)
        .map(|(_, a)| *a)
        .collect();
    assert_eq!(at_reset[..2], [Action::Disconnect, Action::Reset], "{at_reset:?}");
    let back = reset.start.after(BOOT);
    assert!(
        life.actions.iter().any(|(t, a)| *t == back && *a == Action::Connect),
        "connects again once booted: {:?}",
        life.actions
    );
    assert_eq!(life.device.booted(), Some(back), "its uptime counts from the boot");
    assert_eq!(life.device.state(), State::Online);

    // The model's own watchdog: about once a day over 20 days.
    let m = faulty("watchdog_reset = { every = \"1d\" }\n");
    let ctx = Ctx::new(4, &m);
    let mut life = Life::new(ctx, 7);
    life.run(SimTime(0).after(MINUTE * 60 * 24 * 20));
    let resets = life.actions.iter().filter(|(_, a)| *a == Action::Reset).count();
    assert!((8..40).contains(&resets), "{resets} resets in 20 days");
}

#[test]
fn a_watchdog_that_fires_mid_update_leaves_the_report_to_go() {
    // Half the reports fire the watchdog; a 50 MB image at 100 kbit/s takes over an hour.
    let m = model(
        "[telemetry]\ninterval = \"10m\"\npayload_bytes = 16\n\
         [link]\nmean_online = \"10000d\"\nmean_offline = \"1s\"\n\
         [ota]\ndownload_kbps = 100\ninterrupt = \"0%\"\ncorrupt = \"0%\"\nboot_fail = \"0%\"\nbrick = \"0%\"\n\
         [faults]\nwatchdog_reset = { every = \"20m\" }\n",
    );
    let ctx = Ctx::new(6, &m);
    let image = Image {
        size_bytes: 50_000_000,
        corrupt: 0.0,
        boot_fail: 0.0,
    };
    let mut updating = 0;
    for index in 0..40 {
        let mut life = Life::new(ctx, index);
        life.push(SimTime(0).after(MINUTE * 5), Event::OtaJob(image));
        life.run(SimTime(0).after(MINUTE * 180));
        let Some(started) = life
            .actions
            .iter()
            .find(|(_, a)| *a == Action::OtaStatus(OtaReport::Downloading))
            .map(|(t, _)| *t)
        else {
            // Booting after a reset when the job came: it never saw it.
            continue;
        };
        let Some(done) = life
            .actions
            .iter()
            .find_map(|(t, a)| matches!(a, Action::OtaDone(_)).then_some(*t))
        else {
            continue;
        };
        updating += 1;
        let during = |wanted: fn(&Action) -> bool| {
            life.actions
                .iter()
                .filter(|(t, a)| *t > started && *t < done && wanted(a))
                .count()
        };
        assert!(
            during(|a| matches!(a, Action::Publish { .. })) >= 5,
            "device {index}: every report of the update went: {:?}",
            life.actions
        );
        assert_eq!(during(|a| *a == Action::Reset), 0, "device {index}");
    }
    assert!(updating >= 5, "{updating} devices took the update");
}

#[test]
fn a_retiring_phase_retires_its_share_with_a_goodbye_unless_cut_off() {
    let m = faulty("");
    let at = SimTime(0).after(MINUTE * 30);
    let retire = Incident {
        start: at,
        end: at.after(Duration::from_micros(1)),
        share: 0.4,
        stream: StreamId::phase(1),
        kind: IncidentKind::Retire,
    };
    // The same phase, with an earlier outage over every device still in force at its time.
    let outage = Incident {
        start: SimTime(0).after(MINUTE * 20),
        end: SimTime(0).after(MINUTE * 40),
        share: 1.0,
        stream: StreamId::phase(0),
        kind: IncidentKind::Outage,
    };
    for (incidents, goodbye) in [(vec![retire], true), (vec![outage, retire], false)] {
        let ctx = Ctx {
            seed: 4,
            model: &m,
            incidents: &incidents,
        };
        let mut hit = 0;
        for index in 0..200 {
            let mut life = Life::new(ctx, index);
            life.run(SimTime(0).after(MINUTE * 120));
            let hits = retire.hits(4, index);
            hit += u32::from(hits);
            let at_phase: Vec<Action> = life.actions.iter().filter(|(t, _)| *t == at).map(|(_, a)| *a).collect();
            if hits {
                let expected: &[Action] = if goodbye {
                    &[Action::Retire, Action::Stop]
                } else {
                    &[Action::Stop]
                };
                assert_eq!(at_phase, expected, "device {index}");
                assert_eq!(life.device.state(), State::Decommissioned, "device {index}");
                assert!(
                    life.actions.iter().all(|(t, _)| *t <= at),
                    "nothing after it retired: device {index}"
                );
            } else {
                assert!(!at_phase.contains(&Action::Retire), "device {index}");
                assert_ne!(life.device.state(), State::Decommissioned, "device {index}");
            }
        }
        assert!((50..110).contains(&hit), "{hit} of 200 hit at 40%");
    }
}

#[test]
fn an_lwm2m_device_holds_a_verified_image_until_its_server_orders_the_install() {
    let text = "name = \"m\"\nprotocol = \"coap\"\nfirmware = \"1.0\"\n\
                [telemetry]\ninterval = \"10m\"\npayload_bytes = 16\n\
                [ota]\ndownload_kbps = 80\ninterrupt = \"0%\"\ncorrupt = \"0%\"\nboot_fail = \"0%\"\nbrick = \"0%\"\n";
    let m = parse_model(Path::new("m.toml"), text).expect("valid model");
    let image = Image {
        size_bytes: 100_000,
        corrupt: 0.0,
        boot_fail: 0.0,
    };
    let job_at = SimTime(0).after(MINUTE);
    let ordered_at = SimTime(0).after(MINUTE * 5);
    let mut life = Life::new(Ctx::new(1, &m), 0);
    life.push(job_at, Event::OtaJob(image));
    life.push(ordered_at, Event::InstallOrdered);
    life.run(SimTime(0).after(MINUTE * 10));
    let at = |wanted: OtaReport| {
        life.actions
            .iter()
            .find(|(_, a)| *a == Action::OtaStatus(wanted))
            .map(|(t, _)| *t)
            .expect("reported")
    };
    // 100 kB at 80 kbit/s: held, verified, 10 s after the job.
    assert_eq!(at(OtaReport::Downloaded), job_at.after(Duration::from_secs(10)));
    assert!(
        !life
            .actions
            .iter()
            .any(|(t, a)| *t < ordered_at && matches!(a, Action::Leave | Action::OtaStatus(OtaReport::Installing))),
        "nothing installs, and the device stays connected, until the order: {:?}",
        life.actions
    );
    assert_eq!(at(OtaReport::Installing), ordered_at);
    assert_eq!(at(OtaReport::Succeeded), ordered_at.after(BOOT));

    // An order with nothing held does nothing.
    let mut life = Life::new(Ctx::new(1, &m), 0);
    life.push(job_at, Event::InstallOrdered);
    life.run(SimTime(0).after(MINUTE * 10));
    assert!(
        !life
            .actions
            .iter()
            .any(|(_, a)| matches!(a, Action::OtaStatus(_) | Action::Leave)),
        "{:?}",
        life.actions
    );
}

/// An image the server does not have (HTTP 404, CoAP 4.04) is given up at the first attempt:
/// one download, the update reported unavailable, nothing installed, and the device takes the
/// next job.
#[test]
fn an_update_whose_image_is_gone_is_given_up_at_once() {
    let m = updater();
    let ctx = Ctx::new(5, &m);
    let image = Image {
        size_bytes: 500_000,
        corrupt: 0.0,
        boot_fail: 0.0,
    };
    let mut life = Life::new(ctx, 3);
    life.no_image = true;
    life.push(SimTime(0).after(MINUTE), Event::OtaJob(image));
    life.run(SimTime(0).after(MINUTE * 30));
    assert_eq!(life.reports(), [OtaReport::Downloading, OtaReport::Unavailable]);
    let downloads = life
        .actions
        .iter()
        .filter(|(_, a)| matches!(a, Action::Download { .. }))
        .count();
    assert_eq!(downloads, 1, "never asked again");
    assert_eq!(life.outcome(), None, "nothing installed");
    assert_eq!(life.device.state(), State::Online, "the device carries on");
    // The next job is taken.
    life.no_image = false;
    life.push(SimTime(0).after(MINUTE * 31), Event::OtaJob(image));
    life.run(SimTime(0).after(MINUTE * 90));
    assert!(life.outcome().is_some(), "the next update runs to its end");
}
