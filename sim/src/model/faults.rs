//! Device faults: what goes wrong inside a device on its own, at the rates its model's
//! `[faults]` sets, and what an operator's `fault` phase injects (a stuck sensor, a sensor
//! out of its range, a burst of error codes, a watchdog reset); and the drift of its clock.
//!
//! Design: faults keep no state in the device. A recurring fault (`every`, `lasts`) is decided
//! per slot of `lasts` on the device's own fault stream: in each slot the device is in the
//! fault with chance `lasts / every`, so it spends that share of its time in it and a fault
//! starts about once every `every`; slots are offset per device, so a fleet's faults do not
//! start in step. Whether a device is in a fault at a time is then one draw at a position the
//! time gives, with no history, the same in one shard or many. A watchdog reset is decided the
//! same way, per report: it fires at a report with chance `interval / every`.

use std::time::Duration;

use super::{ChaCha8Rng, Rng, StreamId, device_rng, draw};

/// A fault a device can be in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultKind {
    /// The sensor repeats its last reading.
    StuckSensor,
    /// The sensor reads a value outside its range (a disconnected probe).
    OutOfRange,
    /// Reports carry error codes.
    ErrorBurst,
    /// The device resets: its connection drops without a goodbye, and it boots again.
    WatchdogReset,
}

impl FaultKind {
    /// Every kind, in declaration order (`kind as usize` is its place).
    pub const ALL: [FaultKind; 4] = [
        Self::StuckSensor,
        Self::OutOfRange,
        Self::ErrorBurst,
        Self::WatchdogReset,
    ];

    /// The kind as files and reports name it.
    pub fn name(self) -> &'static str {
        match self {
            Self::StuckSensor => "stuck_sensor",
            Self::OutOfRange => "out_of_range",
            Self::ErrorBurst => "error_burst",
            Self::WatchdogReset => "watchdog_reset",
        }
    }

    /// The kind by its name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.name() == name)
    }

    /// This fault's bit in a [`FaultSet`].
    fn bit(self) -> u8 {
        1 << self as u8
    }

    /// The random stream that decides this fault for a device (the clock's drift is drawn
    /// from the first one's start).
    fn stream(self) -> StreamId {
        StreamId(StreamId::FAULTS.0 + self as u64)
    }
}

/// The faults a report is made in, one bit each.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultSet(u8);

impl FaultSet {
    /// No fault.
    pub const NONE: FaultSet = FaultSet(0);

    /// Whether `kind` is in the set.
    pub fn has(self, kind: FaultKind) -> bool {
        self.0 & kind.bit() != 0
    }

    /// The set with `kind` added.
    pub fn with(self, kind: FaultKind) -> Self {
        Self(self.0 | kind.bit())
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

/// A fault that comes back: on average once every `every`, for `lasts` each time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spell {
    /// Mean time between the fault's starts.
    pub every: Duration,
    /// How long it lasts (the slot it is decided in).
    pub lasts: Duration,
}

impl Spell {
    /// Whether device `index` is in this fault `at` (simulated time since the run started):
    /// one draw from the fault's stream at the position of the slot `at` falls in.
    fn covers(&self, kind: FaultKind, seed: u64, index: u64, at: Duration) -> bool {
        let slot = micros(self.lasts).max(1);
        let mut rng = device_rng(seed, index, kind.stream());
        // The device's own offset, so that slots do not start in step across a fleet.
        let offset = rng.next_u64() % slot;
        let n = (micros(at).saturating_add(offset)) / slot;
        seek(&mut rng, n);
        draw::chance(&mut rng, self.share())
    }

    /// The share of the time the device spends in the fault.
    fn share(&self) -> f64 {
        (self.lasts.as_secs_f64() / self.every.as_secs_f64()).clamp(0.0, 1.0)
    }
}

/// What a model's `[faults]` says.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Faults {
    /// The sensor gets stuck.
    pub stuck_sensor: Option<Spell>,
    /// The sensor reads out of its range.
    pub out_of_range: Option<Spell>,
    /// What an out-of-range sensor reads.
    pub out_of_range_value: f64,
    /// Bursts of error codes.
    pub error_burst: Option<Spell>,
    /// The codes a burst reports (also those an injected burst reports).
    pub error_codes: Vec<u16>,
    /// Mean time between watchdog resets.
    pub watchdog_every: Option<Duration>,
    /// The largest drift of a device's clock, in parts per million: each device's clock runs
    /// fast or slow by its own share of it.
    pub clock_drift_ppm: f64,
}

/// What an out-of-range sensor reads when its model does not say: a DS18B20 temperature
/// probe's reading with its wire cut.
pub const DEFAULT_OUT_OF_RANGE: f64 = -127.0;

/// The codes an injected error burst reports when the model names none.
pub const DEFAULT_ERROR_CODES: [u16; 1] = [1];

impl Faults {
    /// The recurring faults device `index` is in `at`, by its model alone.
    pub fn spells_at(&self, seed: u64, index: u64, at: Duration) -> FaultSet {
        let mut set = FaultSet::NONE;
        for (kind, spell) in [
            (FaultKind::StuckSensor, &self.stuck_sensor),
            (FaultKind::OutOfRange, &self.out_of_range),
            (FaultKind::ErrorBurst, &self.error_burst),
        ] {
            if spell.is_some_and(|spell| spell.covers(kind, seed, index, at)) {
                set = set.with(kind);
            }
        }
        set
    }

    /// Whether device `index`'s watchdog fires at its report number `report` (any number
    /// that is new at each report), `interval` before the next.
    pub fn watchdog_fires(&self, seed: u64, index: u64, report: u64, interval: Duration) -> bool {
        let Some(every) = self.watchdog_every else { return false };
        let mut rng = device_rng(seed, index, FaultKind::WatchdogReset.stream());
        seek(&mut rng, report);
        draw::chance(&mut rng, interval.as_secs_f64() / every.as_secs_f64())
    }

    /// Device `index`'s clock drift, a fraction (positive: its clock runs fast), uniform on
    /// plus or minus the model's `clock_drift_ppm`.
    pub fn drift(&self, seed: u64, index: u64) -> f64 {
        if self.clock_drift_ppm == 0.0 {
            return 0.0;
        }
        let mut rng = device_rng(seed, index, StreamId::CLOCK);
        (2.0 * draw::unit(&mut rng) - 1.0) * self.clock_drift_ppm * 1e-6
    }

    /// The codes an error burst reports.
    pub fn codes(&self) -> &[u16] {
        if self.error_codes.is_empty() {
            &DEFAULT_ERROR_CODES
        } else {
            &self.error_codes
        }
    }
}

/// Moves `rng` to the draw for slot (or report) `n`: two 32-bit words a draw, past the first
/// draw (the offset).
fn seek(rng: &mut ChaCha8Rng, n: u64) {
    rng.set_word_pos(u128::from(n) * 2 + 2);
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3_600);

    fn stuck(every: Duration, lasts: Duration) -> Faults {
        Faults {
            stuck_sensor: Some(Spell { every, lasts }),
            ..Faults::default()
        }
    }

    #[test]
    fn a_device_spends_the_share_lasts_over_every_in_a_fault_in_spells_of_lasts() {
        let faults = stuck(HOUR * 24, HOUR);
        let (mut inside, mut starts, mut was) = (0u32, 0u32, false);
        // Every 5 minutes over 100 days.
        let samples = 12 * 24 * 100;
        for m in 0..samples {
            let now = faults
                .spells_at(7, 3, Duration::from_secs(300 * m))
                .has(FaultKind::StuckSensor);
            inside += u32::from(now);
            starts += u32::from(now && !was);
            was = now;
        }
        let share = f64::from(inside) / f64::from(samples as u32);
        assert!((0.025..0.06).contains(&share), "1 h in 24: {share}");
        // A fault starts about once a day, less the slots that follow one (1 - 1/24).
        assert!((65..130).contains(&starts), "{starts} starts in 100 days");
    }

    #[test]
    fn a_fault_is_the_same_whenever_asked_and_differs_between_devices() {
        let faults = stuck(HOUR * 2, HOUR / 2);
        let at = |index, s| faults.spells_at(7, index, Duration::from_secs(s));
        let one: Vec<FaultSet> = (0..500).map(|m| at(1, m * 60)).collect();
        let again: Vec<FaultSet> = (0..500).rev().map(|m| at(1, m * 60)).rev().collect();
        assert_eq!(one, again, "no history: asked in any order, the same answer");
        let two: Vec<FaultSet> = (0..500).map(|m| at(2, m * 60)).collect();
        assert_ne!(one, two);
        assert!(Faults::default().spells_at(7, 1, HOUR).is_empty());
    }

    #[test]
    fn the_watchdog_fires_about_once_every_every_and_clocks_drift_within_their_bound() {
        let faults = Faults {
            watchdog_every: Some(HOUR * 24),
            clock_drift_ppm: 50.0,
            ..Faults::default()
        };
        let interval = Duration::from_secs(300);
        let fired = (0..288 * 50)
            .filter(|&report| faults.watchdog_fires(7, 5, report, interval))
            .count();
        assert!((30..75).contains(&fired), "{fired} resets in 50 days");
        let drifts: Vec<f64> = (0..1000).map(|i| faults.drift(7, i)).collect();
        assert!(drifts.iter().all(|d| d.abs() <= 50e-6));
        assert!(drifts.iter().any(|&d| d > 40e-6) && drifts.iter().any(|&d| d < -40e-6));
        assert_eq!(faults.drift(7, 3), faults.drift(7, 3));
        assert_eq!(Faults::default().drift(7, 3), 0.0);
    }

    #[test]
    fn kinds_and_sets_round_trip() {
        for kind in FaultKind::ALL {
            assert_eq!(FaultKind::parse(kind.name()), Some(kind));
            assert!(FaultSet::NONE.with(kind).has(kind));
        }
        assert!(!FaultSet::NONE.with(FaultKind::StuckSensor).has(FaultKind::ErrorBurst));
        assert_eq!(Faults::default().codes(), &DEFAULT_ERROR_CODES);
    }
}
