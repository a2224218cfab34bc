//! The device core: a virtual device's decisions, without I/O and without a clock.
//!
//! Design: `Device::on_event(now, event)` takes what happened (the driver's connect came
//! back, the time the device asked to wake at has come) and returns what to do (provision,
//! connect, publish, disconnect, wake at a time, stop). Time is simulated time, in
//! microseconds since the run started; the driver maps it to real time with the scenario's
//! time scale. Everything random comes from the device's own ChaCha8 streams, whose positions
//! the device keeps (8 bytes each) instead of the generators (hundreds of bytes each), so a
//! device is a small struct and the same device behaves the same whatever else runs beside
//! it, in whatever order.
//!
//! Covered here: arrival and provisioning, connecting and reconnecting with backoff and full
//! jitter, the two-state link model, telemetry on the model's schedule with battery drain and
//! the low-battery stretch, death by battery, decommissioning, desired config and commands,
//! and renewing its certificate when its model gives certificates a short life.
//! Firmware updates live in [`super::ota`], mass outages in [`super::outage`]: both are more
//! `impl Device` blocks over the same state.

use std::time::Duration;

use super::events::{Action, Actions, BatteryLevel, CommandKind, Event};
use super::incident::Incident;
use super::ota::OtaStage;
use super::state::State;
use crate::model::{BlockStream, FaultKind, Image, StreamId};
use crate::scenario::DeviceModel;

/// Simulated time since the run started, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct SimTime(pub u64);

impl SimTime {
    /// The time `duration` later (saturating: "never" stays never).
    pub fn after(self, duration: Duration) -> SimTime {
        SimTime(
            self.0
                .saturating_add(u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)),
        )
    }

    /// Time since `earlier` (zero if `earlier` is later).
    pub fn since(self, earlier: SimTime) -> Duration {
        Duration::from_micros(self.0.saturating_sub(earlier.0))
    }

    /// A time that never comes.
    pub const NEVER: SimTime = SimTime(u64::MAX);
}

/// What the core needs from outside on each call; nothing of it is stored per device.
#[derive(Debug, Clone, Copy)]
pub struct Ctx<'a> {
    /// The scenario seed.
    pub seed: u64,
    /// The device's model.
    pub model: &'a DeviceModel,
    /// What the scenario's phases do to the device's group (outages, faults), in time order
    /// (see [`Incident`]).
    pub incidents: &'a [Incident],
}

impl<'a> Ctx<'a> {
    /// A context without outages.
    pub fn new(seed: u64, model: &'a DeviceModel) -> Self {
        Self {
            seed,
            model,
            incidents: &[],
        }
    }
}

/// `Device::timer_s` when nothing is timed.
const NO_TIMER: u32 = u32::MAX;

/// How long a device takes to reboot (after an update, or when told to), in simulated time.
pub const BOOT: Duration = Duration::from_secs(20);

/// One virtual device's state (kept small: see `size_of` in the tests).
#[derive(Debug, Clone, PartialEq)]
pub struct Device {
    /// Index in the fleet.
    pub index: u64,
    /// Battery charge left in mA·s (infinite for mains power).
    charge_mas: f64,
    /// When the battery was last drained to.
    drained_to: SimTime,
    /// When the next telemetry report is due.
    next_report: SimTime,
    /// When the link changes state next.
    pub(super) link_flip: SimTime,
    /// When to try connecting again (NEVER when not waiting to).
    pub(super) retry_at: SimTime,
    /// Word positions of the device's telemetry, link and OTA streams (an update draws a
    /// few words, so four bytes hold a device's life of them).
    telemetry_words: u64,
    link_words: u64,
    pub(super) ota_words: u32,
    /// The image being updated to, and how much of it the device holds.
    pub(super) image: Image,
    pub(super) ota_bytes: u64,
    /// When the update's current step ends (NEVER when none is timed).
    pub(super) ota_step: SimTime,
    /// When the current update's job arrived.
    pub(super) ota_started: SimTime,
    /// The end of the mass outage cutting the device off now (0 when none).
    pub(super) outage_until: SimTime,
    /// The end of the outage the device was cut off by while connected, until it connects
    /// again (NEVER otherwise).
    pub(super) recovering: SimTime,
    /// Telemetry messages published.
    seq: u32,
    /// The report interval the backend imposes, simulated milliseconds (0: the model's).
    report_every_ms: u32,
    /// The desired config version applied.
    config_version: u32,
    /// When it last booted after a reset or a reboot, in whole simulated seconds since the
    /// run started (0: it has run since it arrived).
    booted_s: u32,
    /// The device's timer of whole simulated seconds, rounded up ([`NO_TIMER`] when nothing is
    /// timed): for an always-connected device, when it asks for a new certificate; for a
    /// duty-cycled one staying awake after its report (its model's `awake`), when it sleeps.
    /// No model is both (`[certificate]` is refused beside `duty_cycle`), so one field serves:
    /// four bytes that fit beside the other small fields, where a `SimTime`, or a second
    /// field, would grow every device's task past its allocation class.
    timer_s: u32,
    /// Failed attempts since the last success (connect or provision), saturating: the
    /// backoff's ceiling reaches its maximum long before 255. One byte, so that the fields
    /// below it fit in three words.
    pub(super) attempt: u8,
    pub(super) ota: OtaStage,
    pub(super) state: State,
    /// [`LINK_UP`], [`PROVISIONED`] and [`ROLLED_BACK`], one bit each.
    flags: u8,
    /// The next outage of `Ctx::outages` not yet passed.
    pub(super) next_incident: u8,
    /// The sensor's last reading in hundredths ([`NO_READING`] before the first): the
    /// telemetry model's random walk goes on from it.
    reading_centi: u16,
}

/// `Device::flags`: its own link is up.
const LINK_UP: u8 = 1;
/// `Device::flags`: it has been provisioned.
const PROVISIONED: u8 = 2;
/// `Device::flags`: the last update failed to boot and the old slot runs.
pub(super) const ROLLED_BACK: u8 = 4;
/// `Device::reading_centi` before the first report.
const NO_READING: u16 = u16::MAX;

impl Device {
    /// A planned device that will arrive at `arrival`: its battery full and its link in a
    /// random phase of its two-state process (the process's stationary distribution).
    pub fn new(index: u64, ctx: Ctx<'_>, arrival: SimTime) -> Self {
        let mut link_rng = BlockStream::new(ctx.seed, index, StreamId::LINK, 0);
        let phase = ctx.model.link.start(&mut link_rng);
        Device {
            index,
            charge_mas: ctx
                .model
                .battery
                .as_ref()
                .map_or(f64::INFINITY, |b| b.full().remaining_mas),
            drained_to: arrival,
            next_report: SimTime::NEVER,
            link_flip: arrival.after(phase.remaining),
            retry_at: SimTime::NEVER,
            telemetry_words: 0,
            link_words: link_rng.word_pos(),
            ota_words: 0,
            image: Image {
                size_bytes: 0,
                corrupt: 0.0,
                boot_fail: 0.0,
            },
            ota_bytes: 0,
            ota_step: SimTime::NEVER,
            ota_started: SimTime(0),
            outage_until: SimTime(0),
            recovering: SimTime::NEVER,
            seq: 0,
            report_every_ms: 0,
            config_version: 0,
            booted_s: 0,
            timer_s: NO_TIMER,
            attempt: 0,
            ota: OtaStage::Idle,
            state: State::Unprovisioned,
            flags: if phase.online { LINK_UP } else { 0 },
            next_incident: 0,
            reading_centi: NO_READING,
        }
    }

    /// The lifecycle state: where it is in its life, updating while an update runs, rolled
    /// back while online on its old slot after a failed update.
    pub fn state(&self) -> State {
        match self.state {
            State::Offline | State::Connecting | State::Online if self.ota != OtaStage::Idle => State::Updating,
            State::Online if self.has(ROLLED_BACK) => State::RolledBack,
            state => state,
        }
    }

    /// The lifecycle state without the update's and the rollback's overlays of
    /// [`Device::state`]: whether it is provisioning, connecting, online or offline.
    pub fn base_state(&self) -> State {
        self.state
    }

    /// Whether a mass outage cut the device off while connected and it has not connected
    /// since (and its own link, battery or the operator has not taken it away meanwhile).
    pub fn awaiting_recovery(&self) -> bool {
        self.recovering != SimTime::NEVER
    }

    /// Telemetry messages published so far.
    pub fn published(&self) -> u32 {
        self.seq
    }

    /// When it last booted after a reset or a reboot (a whole simulated second; `None`: it
    /// has run since it arrived). Its uptime counts from then.
    pub fn booted(&self) -> Option<SimTime> {
        (self.booted_s > 0).then(|| SimTime(u64::from(self.booted_s) * 1_000_000))
    }

    /// Notes that it boots at `at` (rounded up to a whole second).
    pub(super) fn booted_at(&mut self, at: SimTime) {
        self.booted_s = u32::try_from(at.0.div_ceil(1_000_000)).unwrap_or(u32::MAX).max(1);
    }

    /// Whether its own link is up.
    pub(super) fn link_up(&self) -> bool {
        self.has(LINK_UP)
    }

    /// Whether `flag` is set.
    fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    /// Sets or clears `flag`.
    pub(super) fn set(&mut self, flag: u8, on: bool) {
        if on {
            self.flags |= flag;
        } else {
            self.flags &= !flag;
        }
    }

    /// Handles one event at `now` and says what to do.
    pub fn on_event(&mut self, now: SimTime, event: Event, ctx: Ctx<'_>) -> Actions {
        let mut out = Actions::default();
        if self.state.is_final() {
            return out;
        }
        self.drain(now, ctx, 0);
        self.pass_incidents(now, ctx, &mut out);
        if self.state.is_final() {
            // Retired by a phase: nothing else happens to it.
            return out;
        }
        match event {
            Event::Decommissioned => {
                if self.state == State::Online {
                    out.push(Action::Disconnect);
                }
                self.recovering = SimTime::NEVER;
                self.state = State::Decommissioned;
                out.push(Action::Stop);
                return out;
            }
            Event::Arrive if self.state == State::Unprovisioned && ctx.model.telemetry.duty_cycle => {
                self.fall_asleep(now, ctx);
            }
            Event::Arrive if self.state == State::Unprovisioned => self.provision(now, ctx, &mut out),
            Event::Provisioned if self.state == State::Provisioning => {
                self.set(PROVISIONED, true);
                self.certificate_issued(now, ctx);
                self.attempt = 0;
                self.state = State::Offline;
                if self.link_up() {
                    self.connect(now, ctx, &mut out);
                }
            }
            Event::ProvisionFailed if self.state == State::Provisioning => {
                self.state = State::Unprovisioned;
                self.back_off(now, ctx);
            }
            Event::Connected if self.state == State::Connecting => {
                self.attempt = 0;
                if ctx.model.telemetry.duty_cycle {
                    self.timer_s = NO_TIMER;
                }
                self.state = State::Online;
                // A device reports as soon as it is (re)connected, then on its schedule.
                self.next_report = self.next_report.min(now);
                if self.recovering != SimTime::NEVER {
                    out.push(Action::Recovered {
                        outage_end: self.recovering,
                    });
                    self.recovering = SimTime::NEVER;
                }
                self.report_update(&mut out);
            }
            Event::ConnectFailed if self.state == State::Connecting => {
                self.state = State::Offline;
                self.back_off(now, ctx);
            }
            Event::ConnectionLost if self.state == State::Online => {
                self.state = State::Offline;
                self.back_off(now, ctx);
            }
            Event::Wake => self.wake(now, ctx, &mut out),
            Event::ConfigDesired { version } if self.state == State::Online && version > self.config_version => {
                self.config_version = version;
                out.push(Action::ReportConfig { version });
            }
            Event::Command(kind) if self.state == State::Online => {
                out.push(Action::CommandResult {
                    battery: self.battery(ctx),
                    reading_centi: self.reading_centi,
                    seq: self.seq,
                });
                if kind == CommandKind::Reboot {
                    out.push(Action::Leave);
                    self.state = State::Offline;
                    self.attempt = 0;
                    self.retry_at = now.after(BOOT);
                    self.booted_at(now.after(BOOT));
                }
            }
            Event::RotateCertificate if self.state == State::Online => out.push(Action::RequestCertificate),
            Event::CredentialsChanged if self.state == State::Online => {
                self.certificate_issued(now, ctx);
                // Leave cleanly and log in again at once with the new credentials.
                out.push(Action::Leave);
                self.state = State::Offline;
                self.attempt = 0;
                self.connect(now, ctx, &mut out);
            }
            Event::OtaJob(image) if self.state == State::Online && self.ota == OtaStage::Idle => {
                self.start_update(now, image, ctx, &mut out);
            }
            Event::OtaReceived(image) if self.state == State::Online && self.ota == OtaStage::Idle => {
                self.received_update(now, image, ctx, &mut out);
            }
            Event::Downloaded { reached } if self.ota == OtaStage::Fetching => self.downloaded(now, reached, ctx),
            Event::ImageGone if self.ota == OtaStage::Fetching => self.image_gone(&mut out),
            Event::InstallOrdered if self.state == State::Online => self.install_ordered(now, &mut out),
            Event::ReportEvery { ms } => {
                // The backend's answer to the report just made: the next one comes after the
                // interval it asks for (a poll's reply is instantaneous in simulated time).
                self.report_every_ms = ms;
                if ms > 0 && self.state == State::Online {
                    self.next_report = now.after(Duration::from_millis(u64::from(ms)));
                }
            }
            // An event that does not fit the state (a late reply after the link dropped) is
            // stale: nothing to do.
            _ => {}
        }
        if self.charge_mas <= 0.0 {
            self.die(&mut out);
            return out;
        }
        if self.state.is_final() {
            // Bricked by an update just now: nothing more to wake for.
            return out;
        }
        // Never ask to wake in the past or at this very instant: a driver that hands back a
        // time a rounding step early must not spin on a wake that finds nothing due.
        out.push(Action::WakeAt(
            self.next_wake(ctx).max(now.after(Duration::from_micros(1))),
        ));
        out
    }

    /// Asks for credentials, unless an outage cuts the device off: then the attempt fails at
    /// once, as it would against a dead network, and the device backs off.
    fn provision(&mut self, now: SimTime, ctx: Ctx<'_>, out: &mut Actions) {
        if now < self.outage_until {
            self.back_off(now, ctx);
            return;
        }
        self.state = State::Provisioning;
        out.push(Action::Provision);
    }

    /// Connects, unless an outage cuts the device off (see `provision`).
    pub(super) fn connect(&mut self, now: SimTime, ctx: Ctx<'_>, out: &mut Actions) {
        self.retry_at = SimTime::NEVER;
        if now < self.outage_until {
            self.state = State::Offline;
            self.back_off(now, ctx);
            return;
        }
        self.state = State::Connecting;
        out.push(Action::Connect);
    }

    /// Waits a full-jitter backoff before the next attempt.
    pub(super) fn back_off(&mut self, now: SimTime, ctx: Ctx<'_>) {
        let mut rng = self.rng(ctx, StreamId::LINK, self.link_words);
        let delay = ctx.model.link.reconnect.delay(u32::from(self.attempt), &mut rng);
        self.link_words = rng.word_pos();
        self.attempt = self.attempt.saturating_add(1);
        self.retry_at = now.after(delay);
    }

    fn wake(&mut self, now: SimTime, ctx: Ctx<'_>, out: &mut Actions) {
        if now >= self.link_flip {
            self.flip_link(now, ctx, out);
        }
        if now >= self.retry_at && self.link_up() {
            self.retry_at = SimTime::NEVER;
            match self.state {
                State::Unprovisioned => self.provision(now, ctx, out),
                State::Offline => self.connect(now, ctx, out),
                _ => {}
            }
        }
        if self.state == State::Sleeping && now >= self.next_report && self.link_up() {
            // A duty-cycled device's report is due: provision first if it never has.
            self.attempt = 0;
            if self.has(PROVISIONED) {
                self.connect(now, ctx, out);
            } else {
                self.provision(now, ctx, out);
            }
        }
        if self.state == State::Online && now >= self.next_report {
            self.report(now, ctx, out);
        }
        if self.state == State::Online && !ctx.model.telemetry.duty_cycle && now >= self.timer() {
            self.renew(now, ctx, out);
        }
        if self.state == State::Online && ctx.model.telemetry.duty_cycle && self.ota == OtaStage::Idle {
            self.sleep_when_done(now, ctx, out);
        }
        if now >= self.ota_step {
            self.update_step(now, ctx, out);
        }
    }

    /// A duty-cycled device has reported: it stays awake for its model's `awake` (taking what
    /// its server held for it), then says goodbye once what it sent is acknowledged, and
    /// sleeps.
    fn sleep_when_done(&mut self, now: SimTime, ctx: Ctx<'_>, out: &mut Actions) {
        let awake = ctx.model.telemetry.awake;
        if !awake.is_zero() {
            if self.timer_s == NO_TIMER {
                self.set_timer(now.after(awake));
                return;
            }
            if now < self.timer() {
                return;
            }
        }
        self.timer_s = NO_TIMER;
        out.push(Action::Leave);
        self.state = State::Sleeping;
    }

    /// A duty-cycled device arrives asleep, as a deployed one is between reports: its first
    /// report comes at a random point of its interval, so a fleet's reports spread evenly.
    fn fall_asleep(&mut self, now: SimTime, ctx: Ctx<'_>) {
        let mut rng = self.rng(ctx, StreamId::TELEMETRY, self.telemetry_words);
        let phase = crate::model::draw::uniform(&mut rng, Duration::ZERO, ctx.model.telemetry.interval);
        self.telemetry_words = rng.word_pos();
        self.state = State::Sleeping;
        self.next_report = now.after(phase);
    }

    /// The link changes state: down drops the connection, up starts connecting again.
    fn flip_link(&mut self, now: SimTime, ctx: Ctx<'_>, out: &mut Actions) {
        let mut rng = self.rng(ctx, StreamId::LINK, self.link_words);
        let link = &ctx.model.link;
        self.set(LINK_UP, !self.link_up());
        let sojourn = if self.link_up() {
            link.draw_online(&mut rng)
        } else {
            link.draw_offline(&mut rng)
        };
        self.link_words = rng.word_pos();
        self.link_flip = now.after(sojourn);
        if self.link_up() {
            if self.state == State::Offline {
                self.attempt = 0;
                self.connect(now, ctx, out);
            }
        } else {
            // The device's own link went down: it is out of the outage's recovery count (it
            // would not be back whatever the backend did), as a device that dies or is
            // retired is.
            self.recovering = SimTime::NEVER;
            if matches!(self.state, State::Online | State::Connecting) {
                out.push(Action::Disconnect);
                self.state = State::Offline;
            }
        }
    }

    /// A certificate came (at provisioning, a rotation, a renewal): the next renewal is due
    /// after the model's share of its life.
    fn certificate_issued(&mut self, now: SimTime, ctx: Ctx<'_>) {
        if let Some(renewal) = &ctx.model.certificate {
            self.set_timer(now.after(renewal.renew_after()));
        }
    }

    /// When the device's timer is due: it asks for its next certificate, or sleeps.
    fn timer(&self) -> SimTime {
        match self.timer_s {
            NO_TIMER => SimTime::NEVER,
            s => SimTime(u64::from(s) * 1_000_000),
        }
    }

    /// Sets the timer to `at`, rounded up to a whole second (a run of 136 simulated years or
    /// more never gets there).
    fn set_timer(&mut self, at: SimTime) {
        self.timer_s = u32::try_from(at.0.div_ceil(1_000_000)).unwrap_or(NO_TIMER);
    }

    /// Asks for the next certificate, and asks again later if none comes (the answer
    /// resets the time through `certificate_issued`). A device offline when its renewal
    /// came due asks once it is connected again.
    fn renew(&mut self, now: SimTime, ctx: Ctx<'_>, out: &mut Actions) {
        let Some(renewal) = &ctx.model.certificate else {
            self.timer_s = NO_TIMER;
            return;
        };
        out.push(Action::RequestCertificate);
        self.set_timer(now.after(renewal.retry_after()));
    }

    /// The battery's level as a report carries it (`None` for mains power).
    fn battery(&self, ctx: Ctx<'_>) -> Option<BatteryLevel> {
        let charge = crate::model::Charge {
            remaining_mas: self.charge_mas,
        };
        ctx.model.battery.as_ref().map(|b| BatteryLevel {
            // A level in [0, 1]: at most 1000.
            permille: (b.level(&charge) * 1000.0).round() as u16,
            low: b.is_low(&charge),
        })
    }

    /// Publishes one report and schedules the next, stretched when the battery is low.
    fn report(&mut self, now: SimTime, ctx: Ctx<'_>, out: &mut Actions) {
        let telemetry = &ctx.model.telemetry;
        self.drain(now, ctx, 1);
        let charge = crate::model::Charge {
            remaining_mas: self.charge_mas,
        };
        let battery = self.battery(ctx);
        // The sensor's next reading, then the next interval, from the telemetry stream.
        let mut rng = self.rng(ctx, StreamId::TELEMETRY, self.telemetry_words);
        let reading = match self.reading_centi {
            NO_READING => telemetry.initial_value(&mut rng),
            centi => telemetry.draw_value(&mut rng, f64::from(centi) / 100.0),
        };
        let faults = self.faults_at(now, ctx);
        // A stuck sensor repeats its last reading (the walk's draw is still made, so the
        // stream stays where it would be).
        if !faults.has(FaultKind::StuckSensor) || self.reading_centi == NO_READING {
            // A reading in [0, 100]: at most 10,000 hundredths.
            self.reading_centi = (reading * 100.0).round() as u16;
        }
        let interval = if self.report_every_ms > 0 {
            // The backend sets the pace (a hawkBit server's polling interval), exactly.
            Duration::from_millis(u64::from(self.report_every_ms))
        } else {
            let factor = ctx.model.battery.as_ref().map_or(1.0, |b| b.interval_factor(&charge));
            // A clock that runs fast counts an interval out early.
            let drift = ctx.model.faults.drift(ctx.seed, self.index);
            telemetry.next_interval(&mut rng, factor / (1.0 + drift))
        };
        // The report's place in the telemetry stream keys the watchdog's draw: one a report.
        let fires = ctx
            .model
            .faults
            .watchdog_fires(ctx.seed, self.index, self.telemetry_words, interval);
        self.telemetry_words = rng.word_pos();
        self.next_report = now.after(interval);
        // A device that carries on (mid-update) still reports.
        if fires && self.watchdog_reset(now, out) {
            return;
        }
        out.push(Action::Publish {
            seq: self.seq,
            payload_bytes: telemetry.payload_bytes,
            battery,
            reading_centi: self.reading_centi,
            faults,
        });
        self.seq = self.seq.wrapping_add(1);
    }

    /// Spends sleep current up to `now`, and `transmissions` transmissions.
    fn drain(&mut self, now: SimTime, ctx: Ctx<'_>, transmissions: u32) {
        let Some(battery) = &ctx.model.battery else { return };
        let mut charge = crate::model::Charge {
            remaining_mas: self.charge_mas,
        };
        battery.drain(&mut charge, now.since(self.drained_to), transmissions);
        self.charge_mas = charge.remaining_mas;
        self.drained_to = self.drained_to.max(now);
    }

    pub(super) fn die(&mut self, out: &mut Actions) {
        if matches!(self.state, State::Online | State::Connecting) {
            out.push(Action::Disconnect);
        }
        self.recovering = SimTime::NEVER;
        self.state = State::Dead;
        out.push(Action::Stop);
    }

    /// The earliest time something is due: a report, a link change, a retry, a certificate
    /// renewal, or the battery running out while asleep.
    fn next_wake(&self, ctx: Ctx<'_>) -> SimTime {
        let mut next = self.link_flip;
        // A sleeping device whose report is due while its link is down waits for the link.
        if self.state == State::Online || (self.state == State::Sleeping && self.link_up()) {
            next = next.min(self.next_report);
        }
        if self.state == State::Online {
            next = next.min(self.timer());
        }
        if self.link_up() {
            next = next.min(self.retry_at);
        }
        next = next.min(self.ota_step);
        if let Some(outage) = ctx.incidents.get(usize::from(self.next_incident)) {
            next = next.min(outage.start);
        }
        if let Some(battery) = &ctx.model.battery {
            let left = battery.sleep_time_left(&crate::model::Charge {
                remaining_mas: self.charge_mas,
            });
            // One microsecond past the exact moment, so the drain at that wake empties the
            // battery rather than leaving a rounding crumb that asks for another wake.
            next = next.min(self.drained_to.after(left).after(Duration::from_micros(1)));
        }
        next
    }

    /// The device's stream `stream` at position `words`, read a block at a time.
    pub(super) fn rng(&self, ctx: Ctx<'_>, stream: StreamId, words: u64) -> BlockStream {
        BlockStream::new(ctx.seed, self.index, stream, words)
    }
}

/// A stream's position in 32-bit words, for a stream that draws a few words an event (a
/// device's updates: four billion words are hundreds of millions of them).
pub(super) fn short_words(rng: &BlockStream) -> u32 {
    u32::try_from(rng.word_pos()).unwrap_or(u32::MAX)
}
