//! Battery: a charge budget drained by sleep current and per-transmission
//! charge, with a low-battery mode that stretches the reporting interval.
//!
//! Charge is kept in mA·s. A device reporting every `T` seconds spends per
//! interval
//!
//! ```text
//! q(T) = tx_mas + sleep_ma * T            (sleep_ma = sleep_ua / 1000)
//! ```
//!
//! so at a steady interval a charge `Q` lasts `Q * T / q(T)` seconds. Below
//! `low_at` (a fraction of capacity) the device stretches its interval to
//! `T' = low_interval_factor * T`, which gives the analytic lifetime
//!
//! ```text
//! life = C (1 - low_at) T / q(T) + C low_at T' / q(T'),   C = capacity_mah * 3600
//! ```
//!
//! This is a fluid approximation: a real device spends charge in lumps (one
//! `tx_mas` per report), so a simulated lifetime differs from it by about one
//! reporting interval, and jitter on `T` does not change it because `q` is
//! linear in `T`.

use super::draw;
use std::time::Duration;

/// Milliampere-seconds per milliampere-hour.
const MAS_PER_MAH: f64 = 3600.0;

/// A device's battery and its low-battery policy (validated by the scenario
/// loader; functions here stay sane on odd values instead of panicking).
#[derive(Debug, Clone, PartialEq)]
pub struct Battery {
    /// Full capacity, in mAh.
    pub capacity_mah: f64,
    /// Current drawn while asleep between reports, in µA.
    pub sleep_ua: f64,
    /// Charge spent by one transmission (wake, radio, send), in mA·s.
    pub tx_mas: f64,
    /// Fraction of capacity below which the battery counts as low.
    pub low_at: f64,
    /// Terminal voltage full and empty, in volts: the level maps linearly between them.
    pub volts: (f64, f64),
    /// Factor the reporting interval is multiplied by while low (> 1 saves
    /// energy).
    pub low_interval_factor: f64,
}

/// The charge left in one device's battery: the small per-device state.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Charge {
    /// Remaining charge, in mA·s; never negative.
    pub remaining_mas: f64,
}

impl Battery {
    /// Full capacity in mA·s (zero for a non-positive or NaN capacity).
    pub fn capacity_mas(&self) -> f64 {
        (self.capacity_mah * MAS_PER_MAH).max(0.0)
    }

    /// Sleep current in mA (zero for a non-positive or NaN current).
    pub fn sleep_ma(&self) -> f64 {
        (self.sleep_ua / 1000.0).max(0.0)
    }

    /// A fully charged battery.
    pub fn full(&self) -> Charge {
        Charge {
            remaining_mas: self.capacity_mas(),
        }
    }

    /// Spends the sleep current over `asleep` plus `tx_mas` for each of
    /// `transmissions`; the charge stops at zero.
    pub fn drain(&self, charge: &mut Charge, asleep: Duration, transmissions: u32) {
        let used = self.sleep_ma() * asleep.as_secs_f64() + self.tx_mas.max(0.0) * f64::from(transmissions);
        // f64::max maps a NaN difference to 0 rather than poisoning the state.
        charge.remaining_mas = (charge.remaining_mas - used).max(0.0);
    }

    /// Remaining charge as a fraction of capacity, in [0, 1].
    pub fn level(&self, c: &Charge) -> f64 {
        let cap = self.capacity_mas();
        if cap > 0.0 {
            draw::clamp01(c.remaining_mas / cap)
        } else {
            0.0
        }
    }

    /// The terminal voltage at `level` (a fraction), in volts: linear from the empty voltage
    /// to the full one. A real cell's curve is flatter in the middle; a backend that alerts on
    /// voltage sees it fall steadily here.
    pub fn volts_at(&self, level: f64) -> f64 {
        let (full, empty) = self.volts;
        empty + (full - empty) * draw::clamp01(level)
    }

    /// Whether the level is below `low_at` (an empty battery is low too,
    /// unless `low_at` is 0).
    pub fn is_low(&self, c: &Charge) -> bool {
        self.level(c) < self.low_at
    }

    /// Whether the battery is empty: the device has stopped.
    pub fn is_dead(&self, c: &Charge) -> bool {
        c.remaining_mas.is_nan() || c.remaining_mas <= 0.0
    }

    /// How long the device can still sleep before the battery is empty
    /// (`Duration::MAX` when the sleep current is zero): lets the simulator
    /// schedule a death that falls between two reports.
    pub fn sleep_time_left(&self, c: &Charge) -> Duration {
        let ma = self.sleep_ma();
        if ma > 0.0 {
            draw::secs(c.remaining_mas / ma)
        } else {
            Duration::MAX
        }
    }

    /// The factor to multiply the reporting interval by: 1.0 normally,
    /// `low_interval_factor` while low (a non-finite or non-positive factor
    /// is ignored).
    pub fn interval_factor(&self, c: &Charge) -> f64 {
        if self.is_low(c) { self.low_factor() } else { 1.0 }
    }

    /// Mean current in mA at a steady reporting `interval`:
    /// `q(T) / T`; infinite for a zero interval with a non-zero `tx_mas`.
    pub fn mean_current_ma(&self, interval: Duration) -> f64 {
        let t = interval.as_secs_f64();
        let tx = self.tx_mas.max(0.0);
        if t > 0.0 {
            tx / t + self.sleep_ma()
        } else if tx > 0.0 {
            f64::INFINITY
        } else {
            self.sleep_ma()
        }
    }

    /// Analytic lifetime from full at a base reporting `interval`, stretched
    /// below `low_at` (see the module formula); `Duration::MAX` when nothing
    /// drains the battery.
    pub fn expected_lifetime(&self, interval: Duration) -> Duration {
        let c = self.capacity_mas();
        let low = draw::clamp01(self.low_at);
        let stretched = interval.as_secs_f64() * self.low_factor();
        let life = self.seconds_on(c * (1.0 - low), interval.as_secs_f64()) + self.seconds_on(c * low, stretched);
        draw::secs(life)
    }

    /// Seconds a charge lasts at a steady interval of `t` seconds:
    /// `charge * t / q(t)`.
    fn seconds_on(&self, charge_mas: f64, t: f64) -> f64 {
        if charge_mas <= 0.0 {
            // Guards 0 * inf when this segment would never drain.
            return 0.0;
        }
        let per_interval = self.tx_mas.max(0.0) + self.sleep_ma() * t;
        if per_interval > 0.0 {
            charge_mas * t / per_interval
        } else {
            f64::INFINITY
        }
    }

    fn low_factor(&self) -> f64 {
        let f = self.low_interval_factor;
        if f.is_finite() && f > 0.0 { f } else { 1.0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{StreamId, device_rng};

    fn cell() -> Battery {
        Battery {
            capacity_mah: 1.0,
            sleep_ua: 10.0,
            tx_mas: 1.0,
            low_at: 0.2,
            low_interval_factor: 4.0,
            volts: (4.2, 3.3),
        }
    }

    #[test]
    fn voltage_falls_linearly_from_full_to_empty() {
        let b = cell();
        assert_eq!(b.volts_at(1.0), 4.2);
        assert_eq!(b.volts_at(0.0), 3.3);
        assert!((b.volts_at(0.5) - 3.75).abs() < 1e-12);
        assert_eq!(b.volts_at(f64::NAN), 3.3, "a NaN level reads as empty");
    }

    #[test]
    fn drain_arithmetic_is_exact() {
        let b = cell();
        let mut c = b.full();
        assert_eq!(c.remaining_mas, 3600.0);
        // 100 s at 0.01 mA = 1 mA·s, plus 3 transmissions at 1 mA·s.
        b.drain(&mut c, Duration::from_secs(100), 3);
        assert_eq!(c.remaining_mas, 3596.0);
        b.drain(&mut c, Duration::ZERO, 0);
        assert_eq!(c.remaining_mas, 3596.0);
        b.drain(&mut c, Duration::ZERO, 10_000);
        assert_eq!(c.remaining_mas, 0.0);
        assert!(b.is_dead(&c));
        b.drain(&mut c, Duration::MAX, u32::MAX);
        assert_eq!(c.remaining_mas, 0.0);
    }

    #[test]
    fn low_and_dead_thresholds() {
        let b = cell();
        let at = |mas| Charge { remaining_mas: mas };
        // low_at 0.2 of 3600 mA·s is 720 mA·s.
        assert!(!b.is_low(&at(720.0)));
        assert!(b.is_low(&at(719.9)));
        assert_eq!(b.interval_factor(&at(720.0)), 1.0);
        assert_eq!(b.interval_factor(&at(719.9)), 4.0);
        assert!(!b.is_dead(&at(1e-9)));
        assert!(b.is_dead(&at(0.0)));
        assert_eq!(b.level(&at(1800.0)), 0.5);
        assert_eq!(b.sleep_time_left(&at(1.0)), Duration::from_secs(100));
        let never_low = Battery { low_at: 0.0, ..cell() };
        assert!(!never_low.is_low(&at(0.0)));
        let odd = Battery {
            capacity_mah: 0.0,
            low_interval_factor: f64::NAN,
            ..cell()
        };
        assert_eq!(odd.level(&odd.full()), 0.0);
        assert!(odd.is_dead(&odd.full()));
        assert_eq!(odd.interval_factor(&odd.full()), 1.0);
    }

    #[test]
    fn analytic_values() {
        let b = cell();
        let t = Duration::from_secs(60);
        // q(60) = 1 + 0.6 = 1.6; q(240) = 1 + 2.4 = 3.4.
        assert!((b.mean_current_ma(t) - 1.6 / 60.0).abs() < 1e-15);
        let want = 3600.0 * 0.8 * 60.0 / 1.6 + 3600.0 * 0.2 * 240.0 / 3.4;
        assert!((b.expected_lifetime(t).as_secs_f64() - want).abs() < 1e-6);
        let idle = Battery {
            sleep_ua: 0.0,
            tx_mas: 0.0,
            ..cell()
        };
        assert_eq!(idle.expected_lifetime(t), Duration::MAX);
        assert_eq!(b.expected_lifetime(Duration::ZERO), Duration::ZERO);
        assert_eq!(b.mean_current_ma(Duration::ZERO), f64::INFINITY);
    }

    /// Runs one device from full to empty: each cycle sleeps a 10%-jittered,
    /// possibly stretched interval, then transmits once.
    fn simulated_lifetime_s(b: &Battery, interval: Duration, seed: u64, i: u64) -> f64 {
        let mut rng = device_rng(seed, i, StreamId::BATTERY);
        let mut c = b.full();
        let mut t = 0.0;
        loop {
            let base = interval.mul_f64(b.interval_factor(&c));
            let asleep = draw::jittered(&mut rng, base, 0.1);
            if asleep >= b.sleep_time_left(&c) {
                return t + b.sleep_time_left(&c).as_secs_f64();
            }
            b.drain(&mut c, asleep, 1);
            t += asleep.as_secs_f64();
            if b.is_dead(&c) {
                return t;
            }
        }
    }

    #[test]
    fn simulated_lifetime_matches_analytic() {
        let b = cell();
        let interval = Duration::from_secs(60);
        let n = 200;
        let lives: Vec<f64> = (0..n).map(|i| simulated_lifetime_s(&b, interval, 0xBA77, i)).collect();
        let mean = lives.iter().sum::<f64>() / n as f64;
        let var = lives.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
        let se = (var / n as f64).sqrt();
        let want = b.expected_lifetime(interval).as_secs_f64();
        // The spec's 1% tolerance: with ~2,460 cycles per life the fluid
        // model is off by about one cycle (~0.05%), and the sample SE (from
        // the devices' spread) is far smaller still, which we check so the
        // 1% bound stays meaningful: 5 SE must fit well inside it.
        assert!(5.0 * se < 0.002 * want, "se {se}");
        assert!((mean - want).abs() < 0.01 * want, "{mean} vs {want}");
    }
}
