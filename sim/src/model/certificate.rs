//! Certificates a device holds from its backend's CA: how long each one lasts and when the
//! device asks for the next, in simulated time like the rest of a model.
//!
//! A device renews when `renew_at` of its certificate's validity has passed (two thirds by
//! default, as cert-manager and most device SDKs do), and asks again a quarter of the time
//! left later if no certificate came, so it asks up to four times before the old one expires.

use std::time::Duration;

/// A device's certificate lifetime and renewal policy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Renewal {
    /// How long each certificate it asks for lasts.
    pub validity: Duration,
    /// The share of `validity` after which it asks for the next, in (0, 1).
    pub renew_at: f64,
}

impl Renewal {
    /// The share of a certificate's life after which a device renews when its model does not
    /// say.
    pub const DEFAULT_RENEW_AT: f64 = 2.0 / 3.0;

    /// How long after a certificate is issued the device asks for the next.
    pub fn renew_after(&self) -> Duration {
        self.validity.mul_f64(self.renew_at)
    }

    /// How long it waits to ask again when a request brought no certificate.
    pub fn retry_after(&self) -> Duration {
        (self.validity.saturating_sub(self.renew_after()) / 4).max(Duration::from_micros(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_renews_after_its_share_and_retries_four_times_before_expiry() {
        let r = Renewal {
            validity: Duration::from_secs(3_600),
            renew_at: 0.75,
        };
        assert_eq!(r.renew_after(), Duration::from_secs(2_700));
        assert_eq!(r.retry_after(), Duration::from_secs(225));
        assert!(r.renew_after() + r.retry_after() * 3 < r.validity);
        let late = Renewal {
            validity: Duration::from_micros(1),
            renew_at: 0.99,
        };
        assert!(late.retry_after() > Duration::ZERO, "never a retry at the same instant");
    }
}
