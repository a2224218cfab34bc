//! A device taking a firmware update: the steps of `ARCHITECTURE` section 3's `Updating`
//! state, as more of the device core (sans-IO, simulated time).
//!
//! Design: a job starts a download. Each attempt asks the driver for a byte range
//! (`Action::Download`); the model decides up front whether the attempt is cut and where, so
//! the driver really fetches `from..to` and a cut really resumes with an HTTP Range request.
//! The bytes move as fast as the network allows; the model's transfer time (the image at the
//! model's `download_kbps`) is then waited out in simulated time. A cut attempt pauses for a
//! backoff before resuming. With every byte held the device verifies (the model draws the
//! outcome: corrupt, or a boot that works, rolls back or bricks), installs and reboots,
//! disconnecting for [`BOOT`]. It reports the outcome when it is connected again; a bricked
//! device never comes back.

use super::core::{BOOT, Ctx, Device, SimTime, short_words};
use super::events::{Action, Actions};
use super::state::State;
use crate::model::{Image, Outcome, StreamId};
use crate::scenario::file::ProtocolKind;

/// Where an update is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtaStage {
    /// No update running.
    Idle,
    /// A download attempt is in flight (the driver answers with `Event::Downloaded`).
    Fetching,
    /// The last attempt was cut; the next resumes at `ota_step`.
    Pausing,
    /// Every byte arrived; the modelled transfer ends at `ota_step`.
    Transferring,
    /// Verified and held until the server orders the install (an LwM2M server executes
    /// object 5's Update); installing will end in this outcome.
    Held(Outcome),
    /// Installed and rebooting until `ota_step`, with this outcome.
    Rebooting(Outcome),
    /// Rebooted; waiting to connect to report this outcome.
    Reporting(Outcome),
}

/// The progress a device reports on `ota/status` (the reference backend's states).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtaReport {
    /// Fetching the image.
    Downloading,
    /// Checking the image.
    Verifying,
    /// Writing the image to the other slot.
    Installing,
    /// Booting the new image.
    Rebooting,
    /// The new image runs.
    Succeeded,
    /// The image was rejected; the old one runs.
    Failed,
    /// The new image failed to boot; the old slot runs again.
    RolledBack,
    /// Verified and held until the server orders the install (object 5's Downloaded).
    Downloaded,
    /// Given up: the server said the image is not there (object 5's Invalid URI).
    Unavailable,
}

impl OtaReport {
    /// Every state, in declaration order (`report as usize` is its place).
    pub const ALL: [OtaReport; 9] = [
        Self::Downloading,
        Self::Verifying,
        Self::Installing,
        Self::Rebooting,
        Self::Succeeded,
        Self::Failed,
        Self::RolledBack,
        Self::Downloaded,
        Self::Unavailable,
    ];

    /// The state's name on the wire.
    pub fn name(self) -> &'static str {
        match self {
            Self::Downloading => "downloading",
            Self::Verifying => "verifying",
            Self::Installing => "installing",
            Self::Rebooting => "rebooting",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::RolledBack => "rolled_back",
            Self::Downloaded => "downloaded",
            Self::Unavailable => "unavailable",
        }
    }

    /// Whether the update ended in failure this way (the old firmware runs).
    pub fn failed(self) -> bool {
        matches!(self, Self::Failed | Self::RolledBack | Self::Unavailable)
    }
}

impl Device {
    /// When the running update's job arrived.
    pub fn update_started(&self) -> SimTime {
        self.ota_started
    }

    /// A job arrived while online and idle.
    pub(super) fn start_update(&mut self, now: SimTime, image: Image, ctx: Ctx<'_>, out: &mut Actions) {
        if ctx.model.ota.is_none() {
            // A model without `[ota]` cannot update: it refuses the job.
            out.push(Action::OtaStatus(OtaReport::Failed));
            return;
        }
        self.image = image;
        self.ota_bytes = 0;
        self.ota_started = now;
        out.push(Action::OtaStatus(OtaReport::Downloading));
        self.fetch(ctx, out);
    }

    /// A server pushed the whole image while online and idle: verify it at once (the
    /// transfer took the time it took on the network, not the model's).
    pub(super) fn received_update(&mut self, now: SimTime, image: Image, ctx: Ctx<'_>, out: &mut Actions) {
        if ctx.model.ota.is_none() {
            out.push(Action::OtaStatus(OtaReport::Failed));
            return;
        }
        self.image = image;
        self.ota_bytes = image.size_bytes;
        self.ota_started = now;
        self.ota_step = SimTime::NEVER;
        self.verify_and_install(now, ctx, out);
    }

    /// Starts a download attempt from the bytes held, cut where the model says.
    fn fetch(&mut self, ctx: Ctx<'_>, out: &mut Actions) {
        let Some(ota) = &ctx.model.ota else { return };
        let (from, size) = (self.ota_bytes, self.image.size_bytes);
        let mut rng = self.rng(ctx, StreamId::OTA, u64::from(self.ota_words));
        let to = match ota.draw_interruption(&mut rng) {
            Some(fraction) => from + ((size - from) as f64 * fraction) as u64,
            None => size,
        };
        self.ota_words = short_words(&rng);
        self.ota = OtaStage::Fetching;
        self.ota_step = SimTime::NEVER;
        out.push(Action::Download { from, to: to.min(size) });
    }

    /// An attempt ended holding `reached` bytes: wait out the modelled transfer (and a
    /// backoff if the attempt was cut short).
    pub(super) fn downloaded(&mut self, now: SimTime, reached: u64, ctx: Ctx<'_>) {
        let Some(ota) = &ctx.model.ota else { return };
        let from = self.ota_bytes;
        self.ota_bytes = reached.clamp(from, self.image.size_bytes);
        let transfer = ota.download_time(self.ota_bytes - from);
        if self.ota_bytes < self.image.size_bytes {
            let mut rng = self.rng(ctx, StreamId::OTA, u64::from(self.ota_words));
            let pause = ctx.model.link.reconnect.delay(0, &mut rng);
            self.ota_words = short_words(&rng);
            self.ota = OtaStage::Pausing;
            self.ota_step = now.after(transfer).after(pause);
        } else {
            self.ota = OtaStage::Transferring;
            self.ota_step = now.after(transfer);
        }
    }

    /// The download found the image gone: the update is given up, with nothing installed.
    pub(super) fn image_gone(&mut self, out: &mut Actions) {
        out.push(Action::OtaStatus(OtaReport::Unavailable));
        self.ota = OtaStage::Idle;
        self.ota_step = SimTime::NEVER;
    }

    /// The update's timed step is due.
    pub(super) fn update_step(&mut self, now: SimTime, ctx: Ctx<'_>, out: &mut Actions) {
        self.ota_step = SimTime::NEVER;
        match self.ota {
            OtaStage::Pausing if self.link_up() && now >= self.outage_until => self.fetch(ctx, out),
            // No network: try again when the link or the outage says it is back.
            OtaStage::Pausing => {
                self.ota_step = if now < self.outage_until {
                    self.outage_until
                } else {
                    self.next_link_change()
                }
            }
            OtaStage::Transferring => self.verify_and_install(now, ctx, out),
            OtaStage::Rebooting(outcome) => self.rebooted(now, outcome, ctx, out),
            _ => {}
        }
    }

    fn verify_and_install(&mut self, now: SimTime, ctx: Ctx<'_>, out: &mut Actions) {
        let Some(ota) = &ctx.model.ota else { return };
        let mut rng = self.rng(ctx, StreamId::OTA, u64::from(self.ota_words));
        let outcome = ota.draw_outcome(&mut rng, &self.image);
        self.ota_words = short_words(&rng);
        out.push(Action::OtaStatus(OtaReport::Verifying));
        if outcome == Outcome::Corrupt {
            out.push(Action::OtaDone(Outcome::Corrupt));
            out.push(Action::OtaStatus(OtaReport::Failed));
            self.ota = OtaStage::Idle;
            return;
        }
        if ctx.model.protocol == ProtocolKind::Coap {
            // An LwM2M device holds the verified image (object 5's Downloaded) until its
            // server executes Update.
            out.push(Action::OtaStatus(OtaReport::Downloaded));
            self.ota = OtaStage::Held(outcome);
            return;
        }
        self.install(now, outcome, out);
    }

    /// The server ordered the held image installed: install it and reboot into it.
    pub(super) fn install_ordered(&mut self, now: SimTime, out: &mut Actions) {
        if let OtaStage::Held(outcome) = self.ota {
            self.install(now, outcome, out);
        }
    }

    /// Installs the verified image and reboots, disconnecting for [`BOOT`].
    fn install(&mut self, now: SimTime, outcome: Outcome, out: &mut Actions) {
        out.push(Action::OtaStatus(OtaReport::Installing));
        out.push(Action::OtaStatus(OtaReport::Rebooting));
        if matches!(self.state, State::Online | State::Connecting) {
            out.push(Action::Leave);
        }
        self.state = State::Offline;
        self.retry_at_never();
        self.ota = OtaStage::Rebooting(outcome);
        self.ota_step = now.after(BOOT);
    }

    /// The reboot is over: a bricked device is gone; the others connect to report.
    fn rebooted(&mut self, now: SimTime, outcome: Outcome, ctx: Ctx<'_>, out: &mut Actions) {
        if outcome == Outcome::Bricked {
            self.ota = OtaStage::Idle;
            self.recovering = SimTime::NEVER;
            self.state = State::Bricked;
            out.push(Action::OtaDone(Outcome::Bricked));
            out.push(Action::Stop);
            return;
        }
        self.ota = OtaStage::Reporting(outcome);
        self.attempt = 0;
        if self.link_up() {
            self.connect(now, ctx, out);
        }
    }

    /// Connected: report the outcome of an update that rebooted.
    pub(super) fn report_update(&mut self, out: &mut Actions) {
        let OtaStage::Reporting(outcome) = self.ota else { return };
        let report = match outcome {
            Outcome::RolledBack => OtaReport::RolledBack,
            _ => OtaReport::Succeeded,
        };
        // The outcome is the device's the moment it knows it; telling the backend may take a
        // while (or a run's end may cut it short), so the figures count it first.
        out.push(Action::OtaDone(outcome));
        out.push(Action::OtaStatus(report));
        self.set(super::core::ROLLED_BACK, outcome == Outcome::RolledBack);
        self.ota = OtaStage::Idle;
    }
}
