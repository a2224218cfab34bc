//! OTA: a firmware update on one device, from download to the first boot of
//! the new image.
//!
//! Order of events: download (possibly interrupted and resumed) -> verify
//! -> install and reboot.
//!
//! - **Download.** Each attempt (the first and every resumed one) is cut
//!   with probability `interrupt`, after a uniform fraction of the bytes
//!   still missing; the device resumes with an HTTP Range request. Attempts
//!   are therefore geometric: `E[attempts] = 1 / (1 - interrupt)`. Resuming
//!   loses no bytes, so the transfer time proper is always
//!   `size * 8 / (download_kbps * 1000)` s; only reconnect waits add up.
//! - **Verify.** The device's and the image's corruption rates are
//!   independent causes: p_c = 1 - (1 - ota.corrupt)(1 - image.corrupt).
//!   A corrupt download is rejected (`Corrupt`); the old firmware keeps
//!   running.
//! - **Boot.** Likewise p_b = 1 - (1 - ota.boot_fail)(1 - image.boot_fail)
//!   (a bad image carries a high `boot_fail`). A failed boot falls back to
//!   the A/B slot holding the old firmware (`RolledBack`), and that fallback
//!   itself fails with probability `brick` (`Bricked`).
//!
//! Hence the outcome probabilities, in `Outcome::ALL` order:
//!
//! ```text
//! installed   = (1 - p_c)(1 - p_b)
//! corrupt     = p_c
//! rolled_back = (1 - p_c) p_b (1 - brick)
//! bricked     = (1 - p_c) p_b brick
//! ```

use super::draw::{self, clamp01};
use rand_chacha::rand_core::Rng;
use std::time::Duration;

/// A device's behaviour during firmware updates.
#[derive(Debug, Clone, PartialEq)]
pub struct Ota {
    /// Download throughput, in kbit/s (1 kbit = 1000 bits).
    pub download_kbps: f64,
    /// Probability that one download attempt is cut off.
    pub interrupt: f64,
    /// Probability that the device corrupts a download (flash, memory).
    pub corrupt: f64,
    /// Probability that the device fails to boot a good image.
    pub boot_fail: f64,
    /// Probability that the A/B fallback also fails after a failed boot.
    pub brick: f64,
    /// How an LwM2M device takes a package (object 5's delivery method).
    pub delivery: Delivery,
}

/// How an LwM2M device takes a firmware package: object 5's Firmware Update Delivery Method
/// (/5/0/9), which a server reads to choose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Delivery {
    /// It fetches the package a Package URI names (0).
    Pull,
    /// The server writes the package to /5/0/0 (1).
    Push,
    /// Either (2).
    #[default]
    Both,
}

impl Delivery {
    /// The delivery method's value in object 5.
    pub fn resource(self) -> i64 {
        match self {
            Self::Pull => 0,
            Self::Push => 1,
            Self::Both => 2,
        }
    }
}

/// The firmware image a campaign rolls out, with its own risks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Image {
    /// Size of the image, in bytes.
    pub size_bytes: u64,
    /// Probability that the image fails verification (bad build, bad
    /// signature).
    pub corrupt: f64,
    /// Probability that the image does not boot (high for a bad image).
    pub boot_fail: f64,
}

/// How one update attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    /// The new firmware booted and runs.
    Installed,
    /// Verification rejected the download; the old firmware runs.
    Corrupt,
    /// The new firmware failed to boot; the device fell back to the old.
    RolledBack,
    /// The boot and the fallback both failed; the device is lost.
    Bricked,
}

impl Outcome {
    /// Every outcome, in the order of `Ota::outcome_probabilities`.
    pub const ALL: [Outcome; 4] = [
        Outcome::Installed,
        Outcome::Corrupt,
        Outcome::RolledBack,
        Outcome::Bricked,
    ];

    /// The outcome's name in reports and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Installed => "installed",
            Outcome::Corrupt => "corrupt",
            Outcome::RolledBack => "rolled_back",
            Outcome::Bricked => "bricked",
        }
    }

    /// The outcome's position in `ALL` (and in the probability array).
    pub fn index(self) -> usize {
        self as usize
    }
}

/// The probability that at least one of two independent causes strikes.
fn either(a: f64, b: f64) -> f64 {
    1.0 - (1.0 - clamp01(a)) * (1.0 - clamp01(b))
}

impl Ota {
    /// Time to transfer `bytes` at `download_kbps`; `Duration::MAX` when
    /// the rate is not positive (the download never completes), zero for
    /// zero bytes.
    pub fn download_time(&self, bytes: u64) -> Duration {
        if bytes == 0 {
            return Duration::ZERO;
        }
        let bits_per_s = self.download_kbps * 1000.0;
        if bits_per_s > 0.0 {
            draw::secs(bytes as f64 * 8.0 / bits_per_s)
        } else {
            Duration::MAX
        }
    }

    /// Whether the current download attempt is cut off: with probability
    /// `interrupt`, `Some(fraction)` of the bytes still missing that arrived
    /// before the drop, uniform in the open interval (0, 1); `None` when the
    /// attempt completes. Call once per attempt, resumed ones included.
    pub fn draw_interruption(&self, rng: &mut impl Rng) -> Option<f64> {
        if draw::chance(rng, self.interrupt) {
            Some(draw::open_unit(rng))
        } else {
            None
        }
    }

    /// Verification and boot of a completed download of `image`.
    pub fn draw_outcome(&self, rng: &mut impl Rng, image: &Image) -> Outcome {
        if draw::chance(rng, either(self.corrupt, image.corrupt)) {
            Outcome::Corrupt
        } else if !draw::chance(rng, either(self.boot_fail, image.boot_fail)) {
            Outcome::Installed
        } else if draw::chance(rng, self.brick) {
            Outcome::Bricked
        } else {
            Outcome::RolledBack
        }
    }

    /// Analytic probability of each outcome for `image`, in `Outcome::ALL`
    /// order (see the module formulas); they sum to 1.
    pub fn outcome_probabilities(&self, image: &Image) -> [f64; 4] {
        let p_c = either(self.corrupt, image.corrupt);
        let p_b = either(self.boot_fail, image.boot_fail);
        let brick = clamp01(self.brick);
        let verified = 1.0 - p_c;
        [
            verified * (1.0 - p_b),
            p_c,
            verified * p_b * (1.0 - brick),
            verified * p_b * brick,
        ]
    }

    /// Expected number of download attempts, 1 / (1 - interrupt); infinite
    /// when every attempt is cut (callers must cap their retries).
    pub fn expected_attempts(&self) -> f64 {
        let i = clamp01(self.interrupt);
        if i < 1.0 { 1.0 / (1.0 - i) } else { f64::INFINITY }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{StreamId, device_rng};

    const N: usize = 100_000;

    fn rates(interrupt: f64, corrupt: f64, boot_fail: f64, brick: f64) -> Ota {
        Ota {
            download_kbps: 256.0,
            interrupt,
            corrupt,
            boot_fail,
            brick,
            delivery: Delivery::Both,
        }
    }

    fn image_with(corrupt: f64, boot_fail: f64) -> Image {
        Image {
            size_bytes: 2_000_000,
            corrupt,
            boot_fail,
        }
    }

    fn ota() -> Ota {
        rates(0.3, 0.02, 0.01, 0.1)
    }

    #[test]
    fn names_and_order() {
        let names: Vec<_> = Outcome::ALL.iter().map(|o| o.name()).collect();
        assert_eq!(names, ["installed", "corrupt", "rolled_back", "bricked"]);
        for (i, o) in Outcome::ALL.iter().enumerate() {
            assert_eq!(o.index(), i);
        }
    }

    #[test]
    fn download_time_edges() {
        let o = ota();
        // 2 MB = 16 Mbit at 256 kbit/s = 62.5 s.
        assert_eq!(o.download_time(2_000_000), Duration::from_millis(62_500));
        assert_eq!(o.download_time(0), Duration::ZERO);
        let stalled = Ota {
            download_kbps: 0.0,
            ..o
        };
        assert_eq!(stalled.download_time(1), Duration::MAX);
        assert_eq!(stalled.download_time(0), Duration::ZERO);
    }

    #[test]
    fn outcome_frequencies() {
        let (o, img) = (ota(), image_with(0.03, 0.2));
        let p = o.outcome_probabilities(&img);
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        let mut rng = device_rng(11, 0, StreamId::OTA);
        let mut counts = [0usize; 4];
        for _ in 0..N {
            counts[o.draw_outcome(&mut rng, &img).index()] += 1;
        }
        let n = N as f64;
        for (k, &c) in counts.iter().enumerate() {
            // Each count is Binomial(n, p_k): SE sqrt(n p (1-p)); 5 SE.
            let se = (n * p[k] * (1.0 - p[k])).sqrt();
            assert!((c as f64 - n * p[k]).abs() < 5.0 * se, "{counts:?} vs {p:?}");
        }
    }

    #[test]
    fn attempts_are_geometric() {
        let o = ota();
        let mut rng = device_rng(11, 1, StreamId::OTA);
        let (mut attempts, mut cuts, mut fraction_sum) = (0u64, 0u64, 0.0);
        for _ in 0..N {
            loop {
                attempts += 1;
                match o.draw_interruption(&mut rng) {
                    Some(f) => {
                        assert!(f > 0.0 && f < 1.0);
                        cuts += 1;
                        fraction_sum += f;
                    }
                    None => break,
                }
            }
        }
        let (n, i) = (N as f64, 0.3_f64);
        // Geometric attempts: sd sqrt(i) / (1 - i); tolerance 5 SE.
        let se = i.sqrt() / (1.0 - i) / n.sqrt();
        let mean = attempts as f64 / n;
        assert!((mean - o.expected_attempts()).abs() < 5.0 * se, "{mean}");
        // Cut fractions are U(0,1): sd 1 / sqrt(12); tolerance 5 SE.
        let cuts = cuts as f64;
        assert!((fraction_sum / cuts - 0.5).abs() < 5.0 / (12.0 * cuts).sqrt());
    }

    #[test]
    fn probability_edges() {
        let mut rng = device_rng(11, 2, StreamId::OTA);
        let safe = rates(0.0, 0.0, 0.0, 0.0);
        let clean = image_with(0.0, 0.0);
        assert_eq!(safe.outcome_probabilities(&clean), [1.0, 0.0, 0.0, 0.0]);
        assert_eq!(safe.expected_attempts(), 1.0);
        let always_cut = rates(1.0, 0.0, 0.0, 0.0);
        assert_eq!(always_cut.expected_attempts(), f64::INFINITY);
        let (broken, dud) = (image_with(1.0, 0.0), image_with(0.0, 1.0));
        let fragile = rates(0.0, 0.0, 0.0, 1.0);
        assert_eq!(safe.outcome_probabilities(&broken), [0.0, 1.0, 0.0, 0.0]);
        assert_eq!(safe.outcome_probabilities(&dud), [0.0, 0.0, 1.0, 0.0]);
        assert_eq!(fragile.outcome_probabilities(&dud), [0.0, 0.0, 0.0, 1.0]);
        for _ in 0..1000 {
            assert_eq!(safe.draw_interruption(&mut rng), None);
            assert!(always_cut.draw_interruption(&mut rng).is_some());
            assert_eq!(safe.draw_outcome(&mut rng, &clean), Outcome::Installed);
            assert_eq!(safe.draw_outcome(&mut rng, &broken), Outcome::Corrupt);
            assert_eq!(safe.draw_outcome(&mut rng, &dud), Outcome::RolledBack);
            assert_eq!(fragile.draw_outcome(&mut rng, &dud), Outcome::Bricked);
        }
        // Out-of-range rates are clamped, so the probabilities still sum to 1.
        let wild = rates(0.0, -3.0, 7.0, f64::NAN);
        assert_eq!(wild.outcome_probabilities(&clean), [0.0, 0.0, 1.0, 0.0]);
    }
}
