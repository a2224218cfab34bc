//! The figures a backend cannot give. A gate on one would fail at the end of every run as
//! "not measured" (or pass on a count of nothing), so it is refused before the run instead:
//! `fleetsim validate` and `fleetsim run` name the gate, the backend's kind and why. Each
//! dialect says what it cannot give ([`super::Keys::ungiven`]), from its `[backend]` section
//! (an LwM2M server by url is not the reference backend's front; a hawkBit server without
//! `api` has no rollouts of fleetsim's); the metrics reference (docs/metrics.md) is rendered
//! from the same lists, so the page and the check cannot disagree. Figures the devices measure
//! whatever the backend (connects, publishes, outages, faults, errors, device states) are
//! given by every backend.

/// Figures a backend cannot give, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ungiven {
    /// The metrics, as gates name them (a histogram without its statistic).
    pub metrics: &'static [&'static str],
    /// Why, for the refusal: what the backend lacks.
    pub why: &'static str,
}

/// Provisioning: timed only where a device exchanges something for its credentials.
pub const PROVISIONING: &[&str] = &["provision.latency", "provision.rate"];
/// What the operator's config pushes and commands measure.
pub const OPERATOR: &[&str] = &["config.latency", "command.latency", "read.latency"];
/// What the backend's campaigns say: their exposure and halts.
pub const CAMPAIGN_VIEW: &[&str] = &["ota.exposed", "ota.halt.latency"];
/// What devices measure of the updates they take.
pub const UPDATES: &[&str] = &["ota.duration", "ota.rollback.success"];
/// Devices the backend says it holds as active at the end.
pub const HELD: &[&str] = &["devices.lost"];
/// hawkBit's DDI: polls, feedback, deployments taken.
pub const HAWKBIT: &[&str] = &["poll.latency", "feedback.latency", "ota.take.latency"];
/// LwM2M's registrations, bootstraps and requests.
pub const LWM2M: &[&str] = &[
    "register.latency",
    "read.latency",
    "bootstrap.latency",
    "update.latency",
    "deregister.latency",
    "coap.retransmissions",
    "lwm2m.registrations",
    "lwm2m.bootstraps",
    "lwm2m.updates",
    "lwm2m.deregistrations",
    "lwm2m.reads",
    "lwm2m.writes",
    "lwm2m.executes",
    "lwm2m.observes",
    "lwm2m.notifications",
    "lwm2m.refused",
];
/// Certificates the backend's CA issues, rotates and revokes.
pub const CERTIFICATES: &[&str] = &[
    "rotate.latency",
    "certs.issued",
    "certs.rotated",
    "certs.renewed",
    "certs.revoked",
];
/// Decommissioned devices that try to connect again.
pub const REVOKED: &[&str] = &["revoked.tried", "revoked.refused", "revoked.refused_share"];
/// Alert rules and the alerts the backend raises.
pub const ALERTS: &[&str] = &[
    "alert.latency",
    "alerts.expected",
    "alerts.raised",
    "alerts.missed",
    "alerts.unexpected",
];

/// Why `metric` (a gate's metric without its statistic) is not given, if `ungiven` says so.
pub fn why(ungiven: &[Ungiven], metric: &str) -> Option<&'static str> {
    ungiven.iter().find(|u| u.metrics.contains(&metric)).map(|u| u.why)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::names::{self, METRICS};

    #[test]
    fn every_metric_named_is_one_gates_take() {
        let groups = [
            PROVISIONING,
            OPERATOR,
            CAMPAIGN_VIEW,
            UPDATES,
            HELD,
            HAWKBIT,
            LWM2M,
            CERTIFICATES,
            REVOKED,
            ALERTS,
        ];
        for metric in groups.iter().flat_map(|g| g.iter()) {
            assert!(
                METRICS.iter().any(|m| m.name == *metric),
                "{metric} is no gate's metric"
            );
            assert!(names::resolve(metric).is_ok() || names::resolve(&format!("{metric}.p99")).is_ok());
        }
    }

    #[test]
    fn the_first_list_naming_a_metric_says_why() {
        let lists = [
            Ungiven {
                metrics: HAWKBIT,
                why: "polls are hawkBit's",
            },
            Ungiven {
                metrics: LWM2M,
                why: "LwM2M's",
            },
        ];
        assert_eq!(why(&lists, "poll.latency"), Some("polls are hawkBit's"));
        assert_eq!(why(&lists, "update.latency"), Some("LwM2M's"));
        assert_eq!(why(&lists, "connect.latency"), None);
    }
}
