//! Random draws: the only place raw generator output becomes values.
//!
//! Every value a device model needs (a uniform fraction, a coin flip, an
//! exponential sojourn, a jittered interval, a bounded integer) is built here
//! from `next_u64()` with a fixed, documented recipe, so device behaviour for a
//! given seed cannot change when some distribution crate changes its
//! algorithm.
//!
//! The maths:
//! - `unit`: `u = (x >> 11) * 2^-53`, uniform on the 2^53 grid in [0, 1);
//!   mean 1/2, variance 1/12.
//! - `exponential`: inversion, `X = -mean * ln(1 - u)`; `E[X] = mean`,
//!   `sd(X) = mean`.
//! - `uniform`: `lo + floor(span * (x >> 11) / 2^53)` in integer nanoseconds,
//!   so the result is exactly in [lo, hi) with no float rounding up to `hi`.
//! - `jittered`: `base * (1 + j * (2u - 1))`, uniform on [base(1-j), base(1+j));
//!   mean `base`, sd `base * j / sqrt(3)`.
//! - `below`: Lemire's multiply-shift with rejection, `floor(x * n / 2^64)`
//!   retried while the low word falls in the biased zone; exactly uniform.
//!
//! Each drawing function consumes exactly one `next_u64()` word, whatever its
//! arguments (including the degenerate ones: p = 0, mean 0, hi <= lo), so a
//! parameter change in one draw does not shift every later draw of the stream.
//! The one exception is `below`, which redraws on its (rare) rejection.

use rand_chacha::rand_core::Rng;
use std::time::Duration;

/// 2^-53: the spacing of the grid `unit` draws from.
const UNIT_STEP: f64 = 1.0 / (1u64 << 53) as f64;

/// The top 53 bits of one generator word: a uniform integer in [0, 2^53).
fn bits53(rng: &mut impl Rng) -> u64 {
    rng.next_u64() >> 11
}

/// A uniform fraction in [0, 1), from the top 53 bits of one `next_u64()`.
pub fn unit(rng: &mut impl Rng) -> f64 {
    bits53(rng) as f64 * UNIT_STEP
}

/// A uniform fraction in [0, 1) from a run's key, a device's index and `what`, with no
/// generator: a hash (SplitMix64's finalizer), for what a device draws out of its core's
/// streams (its radio's spot, its CoAP timings), the same whatever the shard count.
pub fn keyed_unit(key: u64, index: u64, what: u64) -> f64 {
    let mut x = key ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ what.rotate_left(29);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 31;
    (x >> 11) as f64 * UNIT_STEP
}

/// A uniform fraction in the open interval (0, 1): the midpoints of the
/// `unit` grid, for callers that must never see an exact 0.
pub fn open_unit(rng: &mut impl Rng) -> f64 {
    (bits53(rng) as f64 + 0.5) * UNIT_STEP
}

/// A Bernoulli(p) coin: true with probability `p`; exactly false for
/// `p <= 0` (and NaN), exactly true for `p >= 1`.
pub fn chance(rng: &mut impl Rng, p: f64) -> bool {
    // Drawn even at the edges so the stream position does not depend on p.
    let u = unit(rng);
    if p >= 1.0 {
        true
    } else if p > 0.0 {
        u < p
    } else {
        false
    }
}

/// An exponentially distributed duration with the given mean (inversion
/// method); a zero mean gives zero.
pub fn exponential(rng: &mut impl Rng, mean: Duration) -> Duration {
    let u = unit(rng);
    // -ln(1 - u) via ln_1p keeps precision for small u; 1 - u is never 0.
    let e = -(-u).ln_1p();
    secs(mean.as_secs_f64() * e)
}

/// A uniform duration in [lo, hi); `lo` when `hi <= lo`.
pub fn uniform(rng: &mut impl Rng, lo: Duration, hi: Duration) -> Duration {
    let b = bits53(rng);
    match hi.checked_sub(lo) {
        Some(span) if !span.is_zero() => lo.saturating_add(scale(span, b)),
        _ => lo,
    }
}

/// `base` scaled by a uniform factor in [1 - jitter, 1 + jitter); `jitter`
/// is clamped to [0, 1] so the result is never negative.
pub fn jittered(rng: &mut impl Rng, base: Duration, jitter: f64) -> Duration {
    let u = unit(rng);
    let j = clamp01(jitter);
    if j == 0.0 {
        // Returned as is: a float round trip could move a large base by a ns.
        return base;
    }
    secs(base.as_secs_f64() * (1.0 + j * (2.0 * u - 1.0)))
}

/// A uniform integer in [0, n) without modulo bias (Lemire's method); 0 when
/// `n` is 0.
pub fn below(rng: &mut impl Rng, n: u64) -> u64 {
    let mut m = u128::from(rng.next_u64()) * u128::from(n);
    if n == 0 {
        return 0;
    }
    if (m as u64) < n {
        // 2^64 mod n: low words below it belong to an over-represented value.
        let threshold = n.wrapping_neg() % n;
        while (m as u64) < threshold {
            m = u128::from(rng.next_u64()) * u128::from(n);
        }
    }
    (m >> 64) as u64
}

/// Seconds as a `Duration`, saturating: NaN and negatives give zero, values
/// too large (or infinite) give `Duration::MAX`.
pub fn secs(s: f64) -> Duration {
    match Duration::try_from_secs_f64(s) {
        Ok(d) => d,
        Err(_) if s > 0.0 => Duration::MAX,
        Err(_) => Duration::ZERO,
    }
}

/// A probability clamped to [0, 1], NaN read as 0.
pub fn clamp01(p: f64) -> f64 {
    if p >= 1.0 {
        1.0
    } else if p > 0.0 {
        p
    } else {
        0.0
    }
}

/// floor(span * b / 2^53) for b < 2^53, exact in integer nanoseconds.
fn scale(span: Duration, b: u64) -> Duration {
    let nanos = span.as_nanos();
    // span can reach ~2^95 ns; split it so neither product overflows u128.
    let (hi, lo) = (nanos >> 53, nanos & ((1u128 << 53) - 1));
    let scaled = hi * u128::from(b) + ((lo * u128::from(b)) >> 53);
    let secs = (scaled / 1_000_000_000) as u64;
    Duration::new(secs, (scaled % 1_000_000_000) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{StreamId, device_rng};

    const N: usize = 100_000;

    fn rng(k: u64) -> rand_chacha::ChaCha8Rng {
        device_rng(0xD4A3, k, StreamId::MODEL)
    }

    #[test]
    fn unit_mean_and_variance() {
        let mut r = rng(1);
        let xs: Vec<f64> = (0..N).map(|_| unit(&mut r)).collect();
        assert!(xs.iter().all(|&x| (0.0..1.0).contains(&x)));
        let n = N as f64;
        let mean = xs.iter().sum::<f64>() / n;
        // SE of the mean of U(0,1): sqrt(1/12 / n); tolerance 5 SE.
        assert!((mean - 0.5).abs() < 5.0 * (1.0 / 12.0 / n).sqrt(), "{mean}");
        let var = xs.iter().map(|x| (x - 0.5).powi(2)).sum::<f64>() / n;
        // Var((U - 1/2)^2) = 1/80 - 1/144 = 1/180; tolerance 5 SE.
        assert!((var - 1.0 / 12.0).abs() < 5.0 * (1.0 / 180.0 / n).sqrt(), "{var}");
    }

    #[test]
    fn open_unit_is_open() {
        let mut r = rng(2);
        assert!((0..N).map(|_| open_unit(&mut r)).all(|x| x > 0.0 && x < 1.0));
    }

    #[test]
    fn chance_frequency_and_edges() {
        let mut r = rng(3);
        let p = 0.3;
        let hits = (0..N).filter(|_| chance(&mut r, p)).count() as f64;
        // Binomial SE sqrt(n p (1-p)); tolerance 5 SE.
        let se = (N as f64 * p * (1.0 - p)).sqrt();
        assert!((hits - N as f64 * p).abs() < 5.0 * se, "{hits}");
        for _ in 0..1000 {
            assert!(!chance(&mut r, 0.0));
            assert!(!chance(&mut r, -1.0));
            assert!(!chance(&mut r, f64::NAN));
            assert!(chance(&mut r, 1.0));
            assert!(chance(&mut r, 7.0));
        }
    }

    #[test]
    fn every_draw_consumes_one_word() {
        let (mut a, mut b) = (rng(4), rng(4));
        chance(&mut a, 0.0);
        exponential(&mut a, Duration::ZERO);
        uniform(&mut a, Duration::from_secs(5), Duration::from_secs(1));
        jittered(&mut a, Duration::from_secs(5), 0.0);
        for _ in 0..4 {
            b.next_u64();
        }
        assert_eq!(a.next_u64(), b.next_u64());
    }

    #[test]
    fn exponential_mean() {
        let mut r = rng(5);
        let mean = Duration::from_secs(30);
        let sum: f64 = (0..N).map(|_| exponential(&mut r, mean).as_secs_f64()).sum();
        let got = sum / N as f64;
        // Exponential sd equals its mean, so SE = 30 / sqrt(n); tolerance 5 SE.
        assert!((got - 30.0).abs() < 5.0 * 30.0 / (N as f64).sqrt(), "{got}");
        assert_eq!(exponential(&mut r, Duration::ZERO), Duration::ZERO);
        // A mean too large to scale saturates instead of panicking.
        let _ = exponential(&mut r, Duration::MAX);
    }

    #[test]
    fn uniform_bounds_mean_and_edges() {
        let mut r = rng(6);
        let (lo, hi) = (Duration::from_secs(10), Duration::from_secs(20));
        let mut sum = 0.0;
        for _ in 0..N {
            let d = uniform(&mut r, lo, hi);
            assert!(d >= lo && d < hi);
            sum += d.as_secs_f64();
        }
        // U(10, 20) has sd 10 / sqrt(12); tolerance 5 SE.
        let se = 10.0 / 12f64.sqrt() / (N as f64).sqrt();
        assert!((sum / N as f64 - 15.0).abs() < 5.0 * se);
        assert_eq!(uniform(&mut r, hi, lo), hi);
        assert_eq!(uniform(&mut r, lo, lo), lo);
        let tiny = Duration::from_nanos(1);
        assert_eq!(uniform(&mut r, Duration::ZERO, tiny), Duration::ZERO);
        assert!(uniform(&mut r, Duration::ZERO, Duration::MAX) < Duration::MAX);
    }

    #[test]
    fn jittered_bounds_and_edges() {
        let mut r = rng(7);
        let base = Duration::from_secs(60);
        for _ in 0..10_000 {
            let d = jittered(&mut r, base, 0.25);
            assert!(d >= base.mul_f64(0.75) && d <= base.mul_f64(1.25));
        }
        let odd = Duration::new(123_456_789, 987_654_321);
        assert_eq!(jittered(&mut r, odd, 0.0), odd);
        assert_eq!(jittered(&mut r, odd, f64::NAN), odd);
        for _ in 0..1000 {
            assert!(jittered(&mut r, base, 5.0) < base * 2);
        }
        let _ = jittered(&mut r, Duration::MAX, 1.0);
    }

    #[test]
    fn below_buckets_and_bias() {
        let mut r = rng(8);
        let mut counts = [0u32; 10];
        for _ in 0..N {
            counts[below(&mut r, 10) as usize] += 1;
        }
        // Each bucket is Binomial(n, 1/10): SE sqrt(n * 0.1 * 0.9); 5 SE.
        let se = (N as f64 * 0.1 * 0.9).sqrt();
        for c in counts {
            assert!((f64::from(c) - N as f64 / 10.0).abs() < 5.0 * se, "{counts:?}");
        }
        // With n = 3 * 2^62, `x % n` would put half the draws below 2^62
        // instead of a third: the bias test Lemire's rejection must pass.
        let n = 3u64 << 62;
        let low = (0..N).filter(|_| below(&mut r, n) < 1 << 62).count() as f64;
        let se = (N as f64 * (1.0 / 3.0) * (2.0 / 3.0)).sqrt();
        assert!((low - N as f64 / 3.0).abs() < 5.0 * se, "{low}");
        assert_eq!(below(&mut r, 0), 0);
        assert_eq!(below(&mut r, 1), 0);
        assert!(below(&mut r, u64::MAX) < u64::MAX);
    }

    #[test]
    fn secs_saturates() {
        assert_eq!(secs(f64::NAN), Duration::ZERO);
        assert_eq!(secs(-1.0), Duration::ZERO);
        assert_eq!(secs(f64::INFINITY), Duration::MAX);
        assert_eq!(secs(1e300), Duration::MAX);
        assert_eq!(secs(1.5), Duration::from_millis(1500));
        assert_eq!(clamp01(f64::NAN), 0.0);
        assert_eq!(clamp01(2.0), 1.0);
        assert_eq!(clamp01(0.25), 0.25);
    }
}
