//! Shard-local recording of the figures ARCHITECTURE section 8 names: latencies in HDR
//! histograms (microseconds, 3 significant digits, fixed memory whatever the run's length) and
//! event counters.
//!
//! Design: each shard owns one [`Recorder`] and records into it with plain `&mut` access, no
//! lock and no atomic on the per-message path. Once a second the shard swaps it for an empty
//! one ([`Recorder::take`]) and hands the [`Snapshot`] to the aggregator, which merges
//! snapshots exactly ([`Snapshot::merge`]): HDR histograms with equal bounds add without loss,
//! so percentiles over shards equal percentiles over one recorder fed everything.

use std::cell::RefCell;
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::time::Instant;

/// The smallest latency a histogram resolves, in microseconds.
const LOWEST_US: u64 = 1;
/// The largest latency a histogram holds, in microseconds (ten minutes); larger values are
/// recorded as this, and counted by the caller as timeouts long before.
pub(super) const HIGHEST_US: u64 = 600_000_000;
/// Significant decimal digits kept: 0.1% relative error.
pub(super) const SIGNIFICANT_DIGITS: u8 = 3;

// Each variant's doc comment is also its meaning at run time (`meaning()`), so the metrics
// reference (docs/metrics.md) is rendered from the same words.
macro_rules! names {
    ($(#[$doc:meta])* $ty:ident { $($(#[doc = $vdoc:literal])* $variant:ident => $name:literal,)* }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $ty {
            $($(#[doc = $vdoc])* $variant,)*
        }

        impl $ty {
            /// Every value, in table order.
            pub const ALL: &'static [$ty] = &[$($ty::$variant,)*];

            /// The stable metric name.
            pub fn name(self) -> &'static str {
                match self {
                    $($ty::$variant => $name,)*
                }
            }

            /// What it measures: the variant's doc comment, on one line.
            pub fn meaning(self) -> &'static str {
                match self {
                    $($ty::$variant => concat!($($vdoc),*).trim_ascii(),)*
                }
            }

            fn index(self) -> usize {
                self as usize
            }
        }
    };
}

names!(
    /// The latencies kept as histograms.
    Latency {
        /// Intended start -> credentials received.
        Provision => "provision.latency",
        /// Intended connect start (arrival, end of a backoff) -> CONNACK.
        Connect => "connect.latency",
        /// QoS 1 publish -> PUBACK.
        Publish => "publish.latency",
        /// Operator sent -> device result received.
        Command => "command.latency",
        /// Desired set -> device reported that version.
        Config => "config.latency",
        /// The operator sent a `read` command -> the LwM2M device served the server's Read of
        /// the path it names.
        Read => "read.latency",
        /// Job received -> final state.
        OtaDuration => "ota.duration",
        /// Outage end -> the device connected again; `reconnect.recovery` is the time by which
        /// 99% of the cut-off devices had.
        Recovery => "reconnect.recovery",
        /// A polling device's intended poll time -> the server's answer (hawkBit DDI).
        Poll => "poll.latency",
        /// Update feedback sent -> the server's answer (hawkBit DDI).
        Feedback => "feedback.latency",
        /// The operator started the rollout -> the device took its deployment action.
        OtaTake => "ota.take.latency",
        /// TCP connected -> TLS handshake done (the device's side).
        TlsHandshake => "tls.handshake.latency",
        /// The operator asked a device to rotate -> it connected on its new certificate.
        Rotate => "rotate.latency",
        /// LwM2M Register sent (the connect's start) -> the server's 2.01 Created.
        Register => "register.latency",
        /// LwM2M Bootstrap-Request sent -> the bootstrap server's Bootstrap-Finish.
        Bootstrap => "bootstrap.latency",
        /// LwM2M registration Update sent (its intended time) -> the server's 2.04 Changed.
        Update => "update.latency",
        /// A phase retired an LwM2M device (its intended time) -> the server's 2.02 Deleted
        /// of its De-register.
        Deregister => "deregister.latency",
        /// A device's state crossed an alert rule (a report under the battery level, the link
        /// down for the rule's time) -> the backend raised the alert.
        Alert => "alert.latency",
    }
);

names!(
    /// The events counted.
    Counter {
        /// Devices that received credentials.
        Provisioned => "provisioned",
        /// Successful connects.
        Connected => "connected",
        /// Messages published.
        Published => "published",
        /// Messages received from the backend on the device's subscriptions.
        Received => "received",
        /// Reports sent more than 5 ms after their intended instant: the harness (or the machine
        /// under it) fell behind its schedule.
        LateSends => "late_sends",
        /// Late sends whose shard thread was asleep at their intended instant and ran again
        /// later after it than it then took to send them, or that went out while the thread
        /// worked through what such a late wake left (for as long again as the wake was late):
        /// the machine did not run the harness in time (other work on its cores, a virtual
        /// machine's host running other work). The rest of `late_sends` found the thread awake:
        /// the harness's own load, unless the machine took its core while it ran (which a
        /// virtual machine cannot see).
        LateSendsWokenLate => "late_sends.woken_late",
        /// QoS 1 messages not sent because as many as the server's Receive Maximum (MQTT 5)
        /// still awaited their PUBACK: the device holds to the server's limit.
        HeldBack => "held_back",
        /// Connections refused by the server, reset, or lost.
        ErrorsRefused => "errors.refused",
        /// Sockets this machine could not open: out of open files, local ports or memory.
        /// The harness's own limit, not the backend's.
        ErrorsLocal => "errors.local",
        /// Operations that timed out.
        ErrorsTimeout => "errors.timeout",
        /// Protocol errors.
        ErrorsProtocol => "errors.protocol",
        /// Authentication failures: credentials refused (an MQTT CONNACK's not authorized or
        /// bad user name or password).
        ErrorsAuth => "errors.auth",
        /// Connects an MQTT server refused as unavailable or busy (MQTT 5 0x88, 0x89; 3.1.1's
        /// server unavailable).
        ErrorsBusy => "errors.busy",
        /// Connects and messages an MQTT 5 server refused for a quota or the connection rate
        /// (0x97, 0x9F).
        ErrorsQuota => "errors.quota",
        /// Connects an MQTT 5 server refused as banned (0x8A).
        ErrorsBanned => "errors.banned",
        /// Messages an MQTT 5 server refused in its PUBACK (a reason code of 0x80 or more:
        /// not authorized for the topic, a bad topic, a payload format).
        ErrorsPublishRefused => "errors.publish_refused",
        /// Subscriptions an MQTT server refused in its SUBACK (3.1.1's 0x80, MQTT 5's 0x80 and
        /// up: most often not authorized for the topic). The device stays connected and hears
        /// nothing on that topic: a broker whose access rules refuse a device's command topic
        /// shows here, not in a gate on commands that never came.
        ErrorsSubscribeRefused => "errors.subscribe_refused",
        /// Connections an MQTT 5 server ended with a DISCONNECT because another took over the
        /// session (0x8E).
        DisconnectsTakenOver => "disconnects.session_taken_over",
        /// Connections an MQTT 5 server ended with a DISCONNECT because it was shutting down
        /// (0x8B).
        DisconnectsShuttingDown => "disconnects.server_shutting_down",
        /// Connections an MQTT 5 server ended with a DISCONNECT for want of a packet within 1.5
        /// keep-alives (0x8D).
        DisconnectsKeepAlive => "disconnects.keep_alive_timeout",
        /// Connections an MQTT 5 server ended with a DISCONNECT for any other reason.
        DisconnectsOther => "disconnects.other",
        /// Firmware update jobs taken.
        OtaJobs => "ota.jobs",
        /// Download attempts resumed with a Range request after a cut.
        OtaResumes => "ota.resumes",
        /// Updates that installed and booted the new image.
        OtaInstalled => "ota.installed",
        /// Updates whose download was rejected (corrupt).
        OtaFailed => "ota.failed",
        /// Updates given up because the server said the image is not there (HTTP 404 or
        /// 410, CoAP 4.04).
        OtaUnavailable => "ota.unavailable",
        /// Updates whose boot failed and fell back to the old slot.
        OtaRolledBack => "ota.rolled_back",
        /// Updates that bricked the device.
        OtaBricked => "ota.bricked",
        /// Desired config versions applied and reported.
        ConfigReported => "config.reported",
        /// Commands answered.
        CommandsAnswered => "commands.answered",
        /// Devices cut off by a mass outage while connected.
        OutageAffected => "outage.affected",
        /// Of those, devices connected again.
        OutageRecovered => "outage.recovered",
        /// Of those, devices their own link, battery or the operator took away before they
        /// could connect again: left out of `reconnect.recovery`.
        OutageExcused => "outage.excused",
        /// Devices whose credentials the backend refused after provisioning (decommissioned).
        Decommissioned => "decommissioned",
        /// Polls answered (hawkBit DDI).
        Polls => "polls",
        /// Requests made again after the last one failed: polls after a failed poll, update
        /// feedback sent again.
        Retries => "retries",
        /// Firmware bytes downloaded.
        OtaDownloadedBytes => "ota.downloaded_bytes",
        /// Time spent downloading firmware, milliseconds over all attempts.
        OtaDownloadMs => "ota.download_ms",
        /// HTTP answers 401 Unauthorized.
        ErrorsHttp401 => "errors.http_401",
        /// HTTP answers 403 Forbidden.
        ErrorsHttp403 => "errors.http_403",
        /// HTTP answers 404 Not Found.
        ErrorsHttp404 => "errors.http_404",
        /// HTTP answers 409 Conflict.
        ErrorsHttp409 => "errors.http_409",
        /// HTTP answers 429 Too Many Requests.
        ErrorsHttp429 => "errors.http_429",
        /// Other HTTP 4xx answers.
        ErrorsHttp4xx => "errors.http_4xx",
        /// HTTP answers 500 Internal Server Error.
        ErrorsHttp500 => "errors.http_500",
        /// HTTP answers 502 Bad Gateway.
        ErrorsHttp502 => "errors.http_502",
        /// HTTP answers 503 Service Unavailable.
        ErrorsHttp503 => "errors.http_503",
        /// HTTP answers 504 Gateway Timeout.
        ErrorsHttp504 => "errors.http_504",
        /// Other HTTP 5xx answers, and statuses outside 4xx and 5xx where success was expected.
        ErrorsHttp5xx => "errors.http_5xx",
        /// Full TLS handshakes: certificates sent and checked.
        TlsFull => "tls.handshakes.full",
        /// TLS handshakes that resumed an earlier session.
        TlsResumed => "tls.handshakes.resumed",
        /// TLS refused: the server does not know the CA of the device's certificate.
        ErrorsTlsUnknownCa => "errors.tls_unknown_ca",
        /// TLS refused: the server found the device's certificate expired.
        ErrorsTlsExpired => "errors.tls_expired",
        /// TLS refused: the server found the device's certificate revoked.
        ErrorsTlsRevoked => "errors.tls_revoked",
        /// TLS refused: the server refused the device's certificate for another reason.
        ErrorsTlsBadCertificate => "errors.tls_bad_certificate",
        /// TLS refused by the device: the server's certificate is not trusted.
        ErrorsTlsServerUntrusted => "errors.tls_server_untrusted",
        /// TLS failed otherwise: no common version or cipher suite, a malformed message.
        ErrorsTlsHandshake => "errors.tls_handshake",
        /// Certificate signing requests the backend refused.
        ErrorsCsr => "errors.csr",
        /// Certificates devices received from the backend's CA.
        CertsIssued => "certs.issued",
        /// Devices connected on the certificate a rotation gave them.
        CertsRotated => "certs.rotated",
        /// Devices connected on a certificate they renewed before the old one expired.
        CertsRenewed => "certs.renewed",
        /// Device certificates the backend said it revoked.
        CertsRevoked => "certs.revoked",
        /// Connects by devices the operator had decommissioned.
        RevokedTried => "revoked.tried",
        /// Of those, connects the backend refused.
        RevokedRefused => "revoked.refused",
        /// Confirmable CoAP messages sent again because no acknowledgement came in time.
        CoapRetransmissions => "coap.retransmissions",
        /// LwM2M registrations the server accepted (Register answered 2.01 Created).
        Lwm2mRegistrations => "lwm2m.registrations",
        /// LwM2M bootstraps that finished with a server the device could use.
        Lwm2mBootstraps => "lwm2m.bootstraps",
        /// LwM2M registration Updates the server accepted.
        Lwm2mUpdates => "lwm2m.updates",
        /// LwM2M De-registers the server accepted (2.02 Deleted), of devices a phase retired.
        Lwm2mDeregistrations => "lwm2m.deregistrations",
        /// LwM2M Reads (and Discovers) devices answered.
        Lwm2mReads => "lwm2m.reads",
        /// LwM2M Writes (and Write-Attributes) devices applied.
        Lwm2mWrites => "lwm2m.writes",
        /// LwM2M Executes devices carried out.
        Lwm2mExecutes => "lwm2m.executes",
        /// LwM2M Observes devices took (observations started).
        Lwm2mObserves => "lwm2m.observes",
        /// Observe notifications devices sent.
        Lwm2mNotifications => "lwm2m.notifications",
        /// LwM2M requests devices refused: an unknown object or resource, a method it does not
        /// allow, a content format it does not speak.
        Lwm2mRefused => "lwm2m.refused",
        /// Alerts the alert rules called for (raised or missed).
        AlertsExpected => "alerts.expected",
        /// Of those, alerts the backend raised.
        AlertsRaised => "alerts.raised",
        /// Of those, alerts the backend did not raise by the end of the run.
        AlertsMissed => "alerts.missed",
        /// Alerts the backend raised that nothing called for.
        AlertsUnexpected => "alerts.unexpected",
        /// Reports made in a fault: a stuck or out-of-range sensor, an error burst.
        FaultReports => "faults.reports",
        /// Watchdog resets devices went through.
        WatchdogResets => "faults.resets",
    }
);

impl Counter {
    /// The unit it counts in: most count events or devices.
    pub fn unit(self) -> &'static str {
        match self {
            Self::OtaDownloadedBytes => "bytes",
            Self::OtaDownloadMs => "milliseconds",
            _ => "count",
        }
    }

    /// The counter of an HTTP error status.
    pub fn for_http_status(status: u16) -> Self {
        match status {
            401 => Self::ErrorsHttp401,
            403 => Self::ErrorsHttp403,
            404 => Self::ErrorsHttp404,
            409 => Self::ErrorsHttp409,
            429 => Self::ErrorsHttp429,
            400..=499 => Self::ErrorsHttp4xx,
            500 => Self::ErrorsHttp500,
            502 => Self::ErrorsHttp502,
            503 => Self::ErrorsHttp503,
            504 => Self::ErrorsHttp504,
            _ => Self::ErrorsHttp5xx,
        }
    }
}

fn histogram() -> Histogram<u64> {
    // The bounds are constants that satisfy the constructor's rules (low >= 1, high >= 2 * low,
    // digits <= 5), so it cannot fail.
    Histogram::new_with_bounds(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS).unwrap_or_else(|_| unreachable!())
}

fn micros(latency: Duration) -> u64 {
    u64::try_from(latency.as_micros())
        .unwrap_or(u64::MAX)
        .clamp(LOWEST_US, HIGHEST_US)
}

/// Figures recorded over an interval, or merged over shards and intervals. A histogram is
/// allocated on its first value (about 160 KiB each): most intervals record a few latencies.
#[derive(Debug, Clone)]
pub struct Snapshot {
    histograms: Vec<Option<Histogram<u64>>>,
    counters: Vec<u64>,
}

impl Default for Snapshot {
    fn default() -> Self {
        Self {
            histograms: Latency::ALL.iter().map(|_| None).collect(),
            counters: vec![0; Counter::ALL.len()],
        }
    }
}

impl Snapshot {
    /// Adds `other` into this snapshot, exactly.
    pub fn merge(&mut self, other: &Snapshot) {
        for (mine, theirs) in self.histograms.iter_mut().zip(&other.histograms) {
            if let Some(theirs) = theirs {
                // Equal bounds (every histogram here comes from `histogram()`) make `add`
                // exact and infallible.
                let _ = mine.get_or_insert_with(histogram).add(theirs);
            }
        }
        for (mine, theirs) in self.counters.iter_mut().zip(&other.counters) {
            *mine = mine.saturating_add(*theirs);
        }
    }

    /// The latency at quantile `q` (0.0 to 1.0); `None` when nothing was recorded.
    pub fn quantile(&self, latency: Latency, q: f64) -> Option<Duration> {
        let histogram = self.recorded(latency)?;
        Some(Duration::from_micros(histogram.value_at_quantile(q)))
    }

    /// The largest latency recorded.
    pub fn max(&self, latency: Latency) -> Option<Duration> {
        Some(Duration::from_micros(self.recorded(latency)?.max()))
    }

    /// The histogram of `latency`, if it holds a value.
    fn recorded(&self, latency: Latency) -> Option<&Histogram<u64>> {
        self.histograms[latency.index()].as_ref().filter(|h| !h.is_empty())
    }

    /// The smallest latency recorded.
    pub fn min(&self, latency: Latency) -> Option<Duration> {
        Some(Duration::from_micros(self.recorded(latency)?.min()))
    }

    /// The mean latency.
    pub fn mean(&self, latency: Latency) -> Option<Duration> {
        Some(Duration::from_secs_f64(self.recorded(latency)?.mean() / 1e6))
    }

    /// How many latencies were recorded.
    pub fn samples(&self, latency: Latency) -> u64 {
        self.histograms[latency.index()].as_ref().map_or(0, Histogram::len)
    }

    /// A counter's value.
    pub fn count(&self, counter: Counter) -> u64 {
        self.counters[counter.index()]
    }

    /// The histogram of one latency (`None` if nothing was recorded), for reports that
    /// write histogram logs.
    pub fn histogram(&self, latency: Latency) -> Option<&Histogram<u64>> {
        self.histograms[latency.index()].as_ref()
    }

    /// The counters, in `Counter::ALL` order.
    pub fn counters(&self) -> &[u64] {
        &self.counters
    }

    /// A snapshot of counters (in `Counter::ALL` order; missing ones are zero, extra ones
    /// ignored) and histograms by latency, as a worker process sends them.
    pub fn from_parts(counters: &[u64], histograms: Vec<(Latency, Histogram<u64>)>) -> Self {
        let mut snapshot = Snapshot::default();
        for (mine, theirs) in snapshot.counters.iter_mut().zip(counters) {
            *mine = *theirs;
        }
        for (latency, theirs) in histograms {
            // Histograms decoded from another process may have other bounds: `add` then
            // fails only for values outside ours, which no fleetsim process records.
            let _ = snapshot.histograms[latency.index()]
                .get_or_insert_with(histogram)
                .add(&theirs);
        }
        snapshot
    }
}

/// One shard's recorder.
#[derive(Debug, Clone, Default)]
pub struct Recorder {
    current: Snapshot,
}

impl Recorder {
    /// Records a latency, measured from the operation's intended start.
    pub fn record(&mut self, latency: Latency, value: Duration) {
        self.current.histograms[latency.index()]
            .get_or_insert_with(histogram)
            .saturating_record(micros(value));
    }

    /// Adds `n` to a counter.
    pub fn count(&mut self, counter: Counter, n: u64) {
        let slot = &mut self.current.counters[counter.index()];
        *slot = slot.saturating_add(n);
    }

    /// Everything recorded since the last call, leaving the recorder empty. Called once a
    /// second per shard, so the fresh histograms it allocates (a few hundred KiB) cost
    /// nothing per message.
    pub fn take(&mut self) -> Snapshot {
        std::mem::take(&mut self.current)
    }
}

/// A shard's recorder as its devices share it: a shard runs on one thread, so recording
/// borrows a `RefCell` and never takes a lock.
#[derive(Debug, Default)]
pub struct Meter(RefCell<Recorder>);

impl Meter {
    /// Records a latency measured from `since`, the operation's intended start.
    pub fn record(&self, latency: Latency, since: Instant) {
        self.0.borrow_mut().record(latency, since.elapsed());
    }

    /// Counts one event.
    pub fn count(&self, counter: Counter) {
        self.add(counter, 1);
    }

    /// Adds `n` to a counter.
    pub fn add(&self, counter: Counter, n: u64) {
        self.0.borrow_mut().count(counter, n);
    }

    /// Everything recorded since the last call (see [`Recorder::take`]).
    pub fn take(&self) -> Snapshot {
        self.0.borrow_mut().take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::names::{self, MetricKind};

    #[test]
    fn every_latency_is_a_known_histogram_metric() {
        for latency in Latency::ALL {
            let metric = names::METRICS
                .iter()
                .find(|m| m.name == latency.name())
                .expect("in the name table");
            // reconnect.recovery is one duration read off its histogram of per-device times.
            let kind = if *latency == Latency::Recovery {
                MetricKind::Duration
            } else {
                MetricKind::Histogram
            };
            assert_eq!(metric.kind, kind, "{}", latency.name());
        }
        for counter in Counter::ALL.iter().filter(|c| c.name().starts_with("errors.")) {
            assert!(names::resolve(counter.name()).is_ok(), "{}", counter.name());
        }
    }

    #[test]
    fn percentiles_follow_the_recorded_values() {
        let mut recorder = Recorder::default();
        for ms in 1..=1000 {
            recorder.record(Latency::Publish, Duration::from_millis(ms));
        }
        recorder.count(Counter::Published, 1000);
        let snapshot = recorder.take();
        let p50 = snapshot.quantile(Latency::Publish, 0.5).expect("recorded");
        let p99 = snapshot.quantile(Latency::Publish, 0.99).expect("recorded");
        // Three significant digits: within 0.1% of the exact order statistic.
        assert!((p50.as_secs_f64() - 0.500).abs() <= 0.0005 + 1e-9, "{p50:?}");
        assert!((p99.as_secs_f64() - 0.990).abs() <= 0.001 + 1e-9, "{p99:?}");
        assert_eq!(snapshot.count(Counter::Published), 1000);
        assert_eq!(snapshot.quantile(Latency::Connect, 0.5), None, "nothing recorded");
        let empty = recorder.take();
        assert_eq!(empty.samples(Latency::Publish), 0, "take leaves the recorder empty");
    }

    #[test]
    fn merged_shards_equal_one_recorder_fed_everything() {
        let (mut shard_a, mut shard_b, mut whole) = (Recorder::default(), Recorder::default(), Recorder::default());
        for i in 0..5000u64 {
            // A skewed spread from 100 us to about 2 s.
            let value = Duration::from_micros(100 + (i * i) % 2_000_000);
            if i % 3 == 0 {
                shard_a.record(Latency::Connect, value)
            } else {
                shard_b.record(Latency::Connect, value)
            }
            whole.record(Latency::Connect, value);
        }
        let mut merged = shard_a.take();
        merged.merge(&shard_b.take());
        let whole = whole.take();
        for q in [0.5, 0.9, 0.99, 0.999, 1.0] {
            assert_eq!(
                merged.quantile(Latency::Connect, q),
                whole.quantile(Latency::Connect, q),
                "q = {q}"
            );
        }
        assert_eq!(merged.samples(Latency::Connect), 5000);
    }

    #[test]
    fn out_of_range_values_are_clamped_not_lost() {
        let mut recorder = Recorder::default();
        recorder.record(Latency::Provision, Duration::ZERO);
        recorder.record(Latency::Provision, Duration::from_secs(3600));
        let snapshot = recorder.take();
        assert_eq!(snapshot.samples(Latency::Provision), 2);
        let max = snapshot.max(Latency::Provision).expect("recorded");
        assert!(max >= Duration::from_secs(599), "{max:?}");
    }
}
