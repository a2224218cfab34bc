//! Link: connectivity as a two-state (online/offline) continuous-time Markov
//! process, Gilbert–Elliott style, plus the reconnect backoff a device uses
//! while its connection attempts fail.
//!
//! Sojourns are exponential: online for `Exp(mean_online)`, then offline for
//! `Exp(mean_offline)`, alternating. By the renewal-reward theorem the
//! long-run fraction of time online is
//!
//! ```text
//! pi_on = mean_online / (mean_online + mean_offline)
//! ```
//!
//! and because exponential sojourns are memoryless, a device dropped into
//! the process at a random time is online with probability `pi_on` and its
//! remaining time in the current state is again exponential with that
//! state's mean: that is the stationary start (`Link::start`), which avoids
//! every device of a fleet starting its first outage in lockstep.
//!
//! Reconnect backoff is capped exponential with full jitter: attempt `k`
//! (0-based) waits `U[0, c_k)` with `c_k = min(max, initial * multiplier^k)`,
//! so its mean wait is `c_k / 2`.

use super::draw;
use rand_chacha::rand_core::Rng;
use std::time::Duration;

/// A device's connectivity pattern and its reconnect policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Link {
    /// Mean length of an online period.
    pub mean_online: Duration,
    /// Mean length of an offline period (outage).
    pub mean_offline: Duration,
    /// Delay policy between failed connection attempts.
    pub reconnect: Backoff,
    /// How long a connect may take before it fails as timed out (wall-clock time).
    pub connect_timeout: Duration,
    /// The radio's signal strength, if the model gives one.
    pub signal: Option<Signal>,
}

/// A radio's signal strength over a fleet: each device placed once within `spread` of `mean`
/// (its spot, from the run's key and its index, so the same whatever the shard count), and
/// each report within [`Signal::JITTER_DB`] of that.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Signal {
    /// The fleet's mean, dBm.
    pub mean_dbm: f64,
    /// How far a device's own strength lies from the mean at most, dB.
    pub spread_db: f64,
}

impl Signal {
    /// How far one report's strength lies from the device's own at most, dB.
    pub const JITTER_DB: f64 = 2.0;

    /// The strength device `index` reports in its report `seq`, in whole dBm, under run key
    /// `key`.
    pub fn dbm(&self, key: u64, index: u64, seq: u64) -> i16 {
        let spot = self.mean_dbm + self.spread_db * (2.0 * draw::keyed_unit(key, index, u64::MAX) - 1.0);
        let now = spot + Self::JITTER_DB * (2.0 * draw::keyed_unit(key, index, seq) - 1.0);
        now.round().clamp(-200.0, 0.0) as i16
    }
}

/// The connect timeout of a model that names none.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Capped exponential backoff with full jitter.
#[derive(Debug, Clone, PartialEq)]
pub struct Backoff {
    /// Ceiling of the first retry's delay (attempt 0).
    pub initial: Duration,
    /// Largest ceiling, whatever the attempt.
    pub max: Duration,
    /// Growth of the ceiling per attempt (2.0 doubles it).
    pub multiplier: f64,
}

/// Where a device stands in its link process: the current state and how long
/// it lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkPhase {
    /// Whether the link is up.
    pub online: bool,
    /// Time left before the state flips.
    pub remaining: Duration,
}

impl Link {
    /// Long-run fraction of time online; 1.0 when `mean_offline` is zero
    /// (including when both means are zero: a link with no outages).
    pub fn online_fraction(&self) -> f64 {
        let off = self.mean_offline.as_secs_f64();
        if off <= 0.0 {
            return 1.0;
        }
        let on = self.mean_online.as_secs_f64();
        on / (on + off)
    }

    /// Length of one online period: exponential with mean `mean_online`.
    pub fn draw_online(&self, rng: &mut impl Rng) -> Duration {
        draw::exponential(rng, self.mean_online)
    }

    /// Length of one offline period: exponential with mean `mean_offline`.
    pub fn draw_offline(&self, rng: &mut impl Rng) -> Duration {
        draw::exponential(rng, self.mean_offline)
    }

    /// A stationary start: online with probability `online_fraction`, with
    /// an exponential remaining time in that state (memorylessness makes
    /// the residual sojourn distributed like a whole one).
    pub fn start(&self, rng: &mut impl Rng) -> LinkPhase {
        let online = draw::chance(rng, self.online_fraction());
        let remaining = if online {
            self.draw_online(rng)
        } else {
            self.draw_offline(rng)
        };
        LinkPhase { online, remaining }
    }

    /// The phase after `phase` ends: the other state, with a fresh sojourn.
    pub fn next(&self, phase: LinkPhase, rng: &mut impl Rng) -> LinkPhase {
        let online = !phase.online;
        let remaining = if online {
            self.draw_online(rng)
        } else {
            self.draw_offline(rng)
        };
        LinkPhase { online, remaining }
    }
}

impl Backoff {
    /// Ceiling of the delay before retry `attempt` (0-based):
    /// `min(max, initial * multiplier^attempt)`, saturating instead of
    /// overflowing for any attempt.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        // NaN would poison every ceiling; read it as "no growth".
        let m = if self.multiplier.is_nan() {
            1.0
        } else {
            self.multiplier.max(0.0)
        };
        if attempt == 0 || m == 1.0 {
            // No float round trip, so the configured value comes back exactly.
            return self.initial.min(self.max);
        }
        // powi saturates to inf (or 0) for huge exponents: no overflow.
        let exponent = i32::try_from(attempt).unwrap_or(i32::MAX);
        let grown = self.initial.as_secs_f64() * m.powi(exponent);
        // 0 * inf is NaN, which secs() reads as zero: a zero initial stays 0.
        draw::secs(grown).min(self.max)
    }

    /// Delay before retry `attempt`, with full jitter: uniform in
    /// [0, ceiling(attempt)), zero when the ceiling is zero.
    pub fn delay(&self, attempt: u32, rng: &mut impl Rng) -> Duration {
        draw::uniform(rng, Duration::ZERO, self.ceiling(attempt))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{StreamId, device_rng};

    const N: usize = 100_000;

    fn link() -> Link {
        Link {
            mean_online: Duration::from_secs(30 * 60),
            mean_offline: Duration::from_secs(10 * 60),
            reconnect: Backoff {
                initial: Duration::from_secs(1),
                max: Duration::from_secs(300),
                multiplier: 2.0,
            },
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            signal: None,
        }
    }

    #[test]
    fn a_devices_signal_stays_near_its_spot_and_the_same_for_the_same_key() {
        let signal = Signal {
            mean_dbm: -90.0,
            spread_db: 10.0,
        };
        let mut spots = Vec::new();
        for index in 0..2_000u64 {
            let reports: Vec<i16> = (0..20).map(|seq| signal.dbm(7, index, seq)).collect();
            let (low, high) = (reports.iter().min().copied(), reports.iter().max().copied());
            assert!(
                high.zip(low).is_some_and(|(h, l)| h - l <= 5),
                "within 2 dB of its spot (and rounding): {reports:?}"
            );
            assert!(reports.iter().all(|r| (-102..=-78).contains(r)), "{reports:?}");
            assert_eq!(signal.dbm(7, index, 3), reports[3], "the same for the same key");
            spots.push(f64::from(reports.iter().map(|r| i32::from(*r)).sum::<i32>()) / 20.0);
        }
        let mean = spots.iter().sum::<f64>() / spots.len() as f64;
        assert!((mean + 90.0).abs() < 1.0, "the fleet's mean: {mean}");
        assert!(
            spots.iter().any(|s| *s < -97.0) && spots.iter().any(|s| *s > -83.0),
            "spread out"
        );
        let moved = (0..2_000u64)
            .filter(|i| signal.dbm(7, *i, 0) != signal.dbm(8, *i, 0))
            .count();
        assert!(moved > 1_500, "another run's key places devices elsewhere: {moved}");
    }

    #[test]
    fn online_fraction_edges() {
        assert_eq!(link().online_fraction(), 0.75);
        let never_off = Link {
            mean_offline: Duration::ZERO,
            ..link()
        };
        assert_eq!(never_off.online_fraction(), 1.0);
        let both_zero = Link {
            mean_online: Duration::ZERO,
            ..never_off
        };
        assert_eq!(both_zero.online_fraction(), 1.0);
        let never_on = Link {
            mean_online: Duration::ZERO,
            ..link()
        };
        assert_eq!(never_on.online_fraction(), 0.0);
    }

    #[test]
    fn long_path_time_weighted_fraction() {
        let l = link();
        let mut rng = device_rng(7, 0, StreamId::LINK);
        let mut phase = LinkPhase {
            online: true,
            remaining: l.draw_online(&mut rng),
        };
        let (mut on, mut total) = (0.0, 0.0);
        for _ in 0..2 * N {
            let s = phase.remaining.as_secs_f64();
            if phase.online {
                on += s;
            }
            total += s;
            phase = l.next(phase, &mut rng);
        }
        let (p, m_on, m_off): (f64, f64, f64) = (0.75, 1800.0, 600.0);
        let got = on / total;
        // Delta method for R = S_on / (S_on + S_off) over n cycles:
        // Var R ~ ((1-p)^2 m_on^2 + p^2 m_off^2) / (n (m_on + m_off)^2).
        let n = N as f64;
        let se = (((1.0 - p) * m_on).powi(2) + (p * m_off).powi(2)).sqrt() / (m_on + m_off) / n.sqrt();
        assert!((got - p).abs() < 5.0 * se, "{got}");
        // The spec's 1% relative bound; 5 SE (~0.6%) is the tighter one.
        assert!((got - p).abs() < 0.01 * p);
    }

    #[test]
    fn stationary_start() {
        let l = link();
        let mut rng = device_rng(7, 1, StreamId::LINK);
        let (mut ups, mut up_sum, mut down_sum) = (0usize, 0.0, 0.0);
        for _ in 0..N {
            let ph = l.start(&mut rng);
            if ph.online {
                ups += 1;
                up_sum += ph.remaining.as_secs_f64();
            } else {
                down_sum += ph.remaining.as_secs_f64();
            }
        }
        let (n, p) = (N as f64, 0.75);
        // Binomial SE sqrt(n p (1-p)); tolerance 5 SE.
        let se = (n * p * (1.0 - p)).sqrt();
        assert!((ups as f64 - n * p).abs() < 5.0 * se, "{ups}");
        // Residual sojourns: exponential, SE = mean / sqrt(count); 5 SE.
        let ups = ups as f64;
        let downs = n - ups;
        assert!((up_sum / ups - 1800.0).abs() < 5.0 * 1800.0 / ups.sqrt());
        assert!((down_sum / downs - 600.0).abs() < 5.0 * 600.0 / downs.sqrt());
        let always = Link {
            mean_offline: Duration::ZERO,
            ..l
        };
        assert!((0..1000).all(|_| always.start(&mut rng).online));
    }

    #[test]
    fn backoff_ceilings_exact() {
        let b = link().reconnect;
        let want = [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300];
        for (k, s) in want.iter().enumerate() {
            assert_eq!(b.ceiling(k as u32), Duration::from_secs(*s), "attempt {k}");
        }
        assert_eq!(b.ceiling(1000), Duration::from_secs(300));
        assert_eq!(b.ceiling(u32::MAX), Duration::from_secs(300));
        let flat = Backoff {
            multiplier: 1.0,
            ..b.clone()
        };
        assert_eq!(flat.ceiling(u32::MAX), Duration::from_secs(1));
        let odd = Backoff {
            multiplier: f64::NAN,
            ..b.clone()
        };
        assert_eq!(odd.ceiling(50), Duration::from_secs(1));
        let zero = Backoff {
            initial: Duration::ZERO,
            multiplier: f64::INFINITY,
            ..b.clone()
        };
        assert_eq!(zero.ceiling(3), Duration::ZERO);
        let unbounded = Backoff {
            max: Duration::MAX,
            ..b
        };
        assert_eq!(unbounded.ceiling(u32::MAX), Duration::MAX);
    }

    #[test]
    fn backoff_delay_full_jitter() {
        let b = link().reconnect;
        let mut rng = device_rng(7, 2, StreamId::LINK);
        for attempt in [0, 3, 1000] {
            let c = b.ceiling(attempt);
            let mut sum = 0.0;
            for _ in 0..N {
                let d = b.delay(attempt, &mut rng);
                assert!(d < c);
                sum += d.as_secs_f64();
            }
            // U[0, c) has sd c / sqrt(12); tolerance 5 SE around c / 2.
            let c = c.as_secs_f64();
            let se = c / 12f64.sqrt() / (N as f64).sqrt();
            assert!((sum / N as f64 - c / 2.0).abs() < 5.0 * se, "attempt {attempt}");
        }
        let zero = Backoff {
            initial: Duration::ZERO,
            ..b
        };
        assert_eq!(zero.delay(5, &mut rng), Duration::ZERO);
    }
}
