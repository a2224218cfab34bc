//! The gateway's topic grammar and access rules. A device may touch only its own subtree,
//! `fleet/v1/d/{its id}/...`; a connection authenticated with a fleet claim may touch only
//! provisioning topics, `fleet/v1/provision/{serial}[/accepted|/rejected]`.
//!
//! Topics a device publishes:
//! - `fleet/v1/d/{id}/telemetry`, `.../status` (battery, firmware, uptime, link quality)
//! - `fleet/v1/d/{id}/config/reported` (`{"version": N}`)
//! - `fleet/v1/d/{id}/cmd/{cmd_id}/result` (`{"status": "ok"|"error", "output": ...}`)
//! - `fleet/v1/d/{id}/ota/status` (`{"campaign": N, "state": "downloading"|...|"rolled_back"}`)
//! - `fleet/v1/provision/{serial}` (claim connections only)
//!
//! Topics the backend publishes: `fleet/v1/d/{id}/config/desired` (retained),
//! `fleet/v1/d/{id}/cmd/{cmd_id}`, `fleet/v1/d/{id}/ota/job` and
//! `fleet/v1/provision/{serial}/accepted|rejected`.

/// Prefix of every device topic.
pub const DEVICE_PREFIX: &str = "fleet/v1/d/";
/// Prefix of provisioning topics.
pub const PROVISION_PREFIX: &str = "fleet/v1/provision/";

/// Who a connection is, which decides what it may touch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// A provisioned device, by id.
    Device(String),
    /// A connection holding a fleet claim, by claim name; it may only provision.
    Claim(String),
}

/// A publish a device may make, parsed from its topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound<'a> {
    /// Telemetry readings.
    Telemetry,
    /// Device status: battery, firmware, uptime, link quality.
    Status,
    /// The config version the device applied.
    ConfigReported,
    /// Progress of the device's OTA job.
    OtaStatus,
    /// The device's answer to command `cmd_id`.
    CommandResult {
        /// The command answered, `c-N`.
        cmd_id: &'a str,
    },
    /// `fleet/v1/d/{id}/cert/csr`: a certificate signing request (rotation or renewal).
    CertRequest,
    /// A provisioning request for `serial`.
    Provision {
        /// The serial to provision.
        serial: &'a str,
    },
}

/// Why a topic was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Outside the connection's own subtree.
    NotOwn,
    /// Inside it, but not a topic the backend knows.
    Unknown,
    /// Wildcards in a topic name, or a malformed filter.
    Malformed,
}

/// Classifies a publish by `principal` to `topic`.
pub fn inbound<'a>(principal: &Principal, topic: &'a str) -> Result<Inbound<'a>, Refused> {
    if topic.contains(['+', '#', '\0']) {
        return Err(Refused::Malformed);
    }
    match principal {
        Principal::Claim(_) => {
            let serial = topic.strip_prefix(PROVISION_PREFIX).ok_or(Refused::NotOwn)?;
            if serial.is_empty() || serial.contains('/') {
                return Err(Refused::Unknown);
            }
            Ok(Inbound::Provision { serial })
        }
        Principal::Device(id) => {
            let rest = own_subtree(id, topic).ok_or(Refused::NotOwn)?;
            match rest.split('/').collect::<Vec<_>>().as_slice() {
                ["telemetry"] => Ok(Inbound::Telemetry),
                ["status"] => Ok(Inbound::Status),
                ["config", "reported"] => Ok(Inbound::ConfigReported),
                ["ota", "status"] => Ok(Inbound::OtaStatus),
                ["cert", "csr"] => Ok(Inbound::CertRequest),
                ["cmd", _, "result"] => {
                    let cmd_id = rest.trim_start_matches("cmd/").trim_end_matches("/result");
                    if cmd_id.is_empty() {
                        Err(Refused::Unknown)
                    } else {
                        Ok(Inbound::CommandResult { cmd_id })
                    }
                }
                _ => Err(Refused::Unknown),
            }
        }
    }
}

/// Checks a subscription filter: a device may subscribe anywhere in its own subtree (with
/// wildcards), a claim connection to the replies for one serial.
pub fn may_subscribe(principal: &Principal, filter: &str) -> Result<(), Refused> {
    if !valid_filter(filter) {
        return Err(Refused::Malformed);
    }
    match principal {
        Principal::Device(id) => {
            let rest = own_subtree(id, filter).ok_or(Refused::NotOwn)?;
            if rest.is_empty() {
                Err(Refused::Malformed)
            } else {
                Ok(())
            }
        }
        Principal::Claim(_) => {
            let rest = filter.strip_prefix(PROVISION_PREFIX).ok_or(Refused::NotOwn)?;
            match rest.split_once('/') {
                // A serial must be named: `fleet/v1/provision/+/accepted` would let one claim
                // holder read the credentials issued to every other device.
                Some((serial, reply)) if !serial.is_empty() && !serial.contains(['+', '#']) => {
                    if matches!(reply, "accepted" | "rejected" | "+" | "#") {
                        Ok(())
                    } else {
                        Err(Refused::Unknown)
                    }
                }
                _ => Err(Refused::NotOwn),
            }
        }
    }
}

/// What follows `fleet/v1/d/{id}/` in `topic`, if the topic lies in `id`'s subtree.
fn own_subtree<'a>(id: &str, topic: &'a str) -> Option<&'a str> {
    topic.strip_prefix(DEVICE_PREFIX)?.strip_prefix(id)?.strip_prefix('/')
}

/// MQTT filter syntax: `#` only as the whole last level, `+` only as a whole level.
fn valid_filter(filter: &str) -> bool {
    if filter.is_empty() || filter.contains('\0') {
        return false;
    }
    let levels: Vec<&str> = filter.split('/').collect();
    levels.iter().enumerate().all(|(i, level)| match *level {
        "#" => i == levels.len() - 1,
        "+" => true,
        other => !other.contains(['+', '#']),
    })
}

/// Whether `topic` matches subscription `filter` (MQTT 3.1.1 section 4.7).
pub fn matches(filter: &str, topic: &str) -> bool {
    let mut topic_levels = topic.split('/');
    for level in filter.split('/') {
        match level {
            "#" => return true,
            "+" => {
                if topic_levels.next().is_none() {
                    return false;
                }
            }
            literal => {
                if topic_levels.next() != Some(literal) {
                    return false;
                }
            }
        }
    }
    topic_levels.next().is_none()
}

/// The topic a device's desired config is retained on.
pub fn config_desired(device_id: &str) -> String {
    format!("{DEVICE_PREFIX}{device_id}/config/desired")
}

/// The body of a desired-config message, `{"version": N, "desired": {...}}`: what a device
/// receives on `config/desired`, in a provisioning reply, and what the device view shows.
pub fn desired_config_body(config: &crate::registry::EffectiveConfig) -> serde_json::Value {
    serde_json::json!({ "version": config.version, "desired": config.doc })
}

/// The topic a command is delivered on.
pub fn command(device_id: &str, cmd_id: &str) -> String {
    format!("{DEVICE_PREFIX}{device_id}/cmd/{cmd_id}")
}

/// The command id of a command's delivery topic ([`command`]), if `topic` is one.
pub fn command_id(topic: &str) -> Option<&str> {
    let rest = topic.strip_prefix(DEVICE_PREFIX)?;
    let (_device, cmd_id) = rest.split_once("/cmd/")?;
    (!cmd_id.is_empty() && !cmd_id.contains('/')).then_some(cmd_id)
}

/// The command id of a command's result topic (`.../cmd/{cmd_id}/result`), if `topic` is one.
pub fn result_command_id(topic: &str) -> Option<&str> {
    command_id(topic.strip_suffix("/result")?)
}

/// The topic an OTA job is delivered on.
pub fn ota_job(device_id: &str) -> String {
    format!("{DEVICE_PREFIX}{device_id}/ota/job")
}

/// `fleet/v1/d/{id}/cert/accepted` or `/rejected`: the answer to a certificate request.
pub fn cert_reply(device_id: &str, accepted: bool) -> String {
    let outcome = if accepted { "accepted" } else { "rejected" };
    format!("{DEVICE_PREFIX}{device_id}/cert/{outcome}")
}

/// `fleet/v1/d/{id}/cert/rotate`: the operator asks the device for a new certificate.
pub fn cert_rotate(device_id: &str) -> String {
    format!("{DEVICE_PREFIX}{device_id}/cert/rotate")
}

/// The topic a provisioning reply goes to.
pub fn provision_reply(serial: &str, accepted: bool) -> String {
    let outcome = if accepted { "accepted" } else { "rejected" };
    format!("{PROVISION_PREFIX}{serial}/{outcome}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device() -> Principal {
        Principal::Device("d-abc".to_owned())
    }

    #[test]
    fn devices_publish_only_under_their_own_id() {
        assert_eq!(inbound(&device(), "fleet/v1/d/d-abc/telemetry"), Ok(Inbound::Telemetry));
        assert_eq!(
            inbound(&device(), "fleet/v1/d/d-abc/config/reported"),
            Ok(Inbound::ConfigReported)
        );
        assert_eq!(
            inbound(&device(), "fleet/v1/d/d-abc/cmd/c-7/result"),
            Ok(Inbound::CommandResult { cmd_id: "c-7" })
        );
        assert_eq!(
            inbound(&device(), "fleet/v1/d/d-abc/cmd//result"),
            Err(Refused::Unknown)
        );
        assert_eq!(inbound(&device(), "fleet/v1/d/d-abcd/telemetry"), Err(Refused::NotOwn));
        assert_eq!(inbound(&device(), "fleet/v1/d/d-other/telemetry"), Err(Refused::NotOwn));
        assert_eq!(inbound(&device(), "fleet/v1/d/d-abc/secrets"), Err(Refused::Unknown));
        assert_eq!(inbound(&device(), "fleet/v1/d/d-abc/+"), Err(Refused::Malformed));
        assert_eq!(inbound(&device(), "fleet/v1/provision/SN1"), Err(Refused::NotOwn));
    }

    #[test]
    fn claims_may_only_provision() {
        let claim = Principal::Claim("factory".to_owned());
        assert_eq!(
            inbound(&claim, "fleet/v1/provision/SN-1"),
            Ok(Inbound::Provision { serial: "SN-1" })
        );
        assert_eq!(inbound(&claim, "fleet/v1/d/d-abc/telemetry"), Err(Refused::NotOwn));
        assert_eq!(may_subscribe(&claim, "fleet/v1/provision/SN-1/+"), Ok(()));
        assert_eq!(may_subscribe(&claim, "fleet/v1/provision/SN-1/accepted"), Ok(()));
        assert_eq!(
            may_subscribe(&claim, "fleet/v1/provision/+/accepted"),
            Err(Refused::NotOwn)
        );
        assert_eq!(may_subscribe(&claim, "fleet/v1/provision/#"), Err(Refused::NotOwn));
    }

    #[test]
    fn device_subscriptions_stay_in_the_subtree() {
        assert_eq!(may_subscribe(&device(), "fleet/v1/d/d-abc/#"), Ok(()));
        assert_eq!(may_subscribe(&device(), "fleet/v1/d/d-abc/cmd/+"), Ok(()));
        assert_eq!(may_subscribe(&device(), "fleet/v1/d/+/cmd/+"), Err(Refused::NotOwn));
        assert_eq!(may_subscribe(&device(), "#"), Err(Refused::NotOwn));
        assert_eq!(
            may_subscribe(&device(), "fleet/v1/d/d-abc/#/x"),
            Err(Refused::Malformed)
        );
        assert_eq!(
            may_subscribe(&device(), "fleet/v1/d/d-abc/cm+"),
            Err(Refused::Malformed)
        );
    }

    #[test]
    fn filters_match_like_mqtt() {
        assert!(matches("fleet/v1/d/x/#", "fleet/v1/d/x/config/desired"));
        assert!(matches("fleet/v1/d/x/cmd/+", "fleet/v1/d/x/cmd/c1"));
        assert!(!matches("fleet/v1/d/x/cmd/+", "fleet/v1/d/x/cmd/c1/result"));
        assert!(matches("a/b", "a/b"));
        assert!(!matches("a/b", "a/b/c"));
        assert!(!matches("a/b/c", "a/b"));
        assert!(matches("a/#", "a"), "'#' also matches the parent level");
    }

    #[test]
    fn a_command_topic_names_its_command() {
        assert_eq!(command_id(&command("d-abc", "c-7")), Some("c-7"));
        assert_eq!(command_id("fleet/v1/d/d-abc/cmd/c-7/result"), None);
        assert_eq!(command_id("fleet/v1/d/d-abc/config/desired"), None);
        assert_eq!(command_id("fleet/v1/d/d-abc/cmd/"), None);
    }
}
