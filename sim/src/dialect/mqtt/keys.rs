//! A broker's `[backend]` keys: its `url`, more nodes of its cluster (`cluster`), and the
//! topic templates devices publish to and listen on (`telemetry_topic`, `command_topic`). It
//! has no operator API, so only outages run against it.

use super::Broker;
use crate::dialect::Keys;
use crate::dialect::keys::{check_url, devices_only, require_url};
use crate::dialect::ungiven::{self, Ungiven};
use crate::scenario::file::TlsSection;
use crate::scenario::{Backend, KeyError, Scenario};

/// The placeholders a topic template may use.
pub const TOPIC_PLACEHOLDERS: [&str; 4] = ["{serial}", "{index}", "{model}", "{group}"];

const SCHEMES: [&str; 2] = ["mqtt", "mqtts"];

impl Keys for Broker {
    const KEYS: &'static [&'static str] = &["cluster", "telemetry_topic", "command_topic", "tls"];

    fn check_keys(section: &Backend) -> Result<(), KeyError> {
        require_url(section.url.as_deref(), &SCHEMES)?;
        let tls = section.url.as_deref().is_some_and(|url| url.starts_with("mqtts://"));
        let scheme = if tls { "mqtts" } else { "mqtt" };
        for (k, endpoint) in section.cluster.iter().flatten().enumerate() {
            check_url(endpoint, &[scheme]).map_err(|m| KeyError::at("cluster", k, m))?;
        }
        match (tls, &section.tls) {
            (true, None) | (true, Some(TlsSection { ca: None, .. })) => {
                return Err(KeyError::new(
                    "url",
                    "an mqtts:// url needs [backend.tls] with `ca`, the CA the broker's certificate chains to",
                ));
            }
            (
                true,
                Some(TlsSection {
                    credentials: Some(_), ..
                }),
            ) => {
                return Err(KeyError::new(
                    "tls",
                    "credentials is for the reference backend (kind = \"embedded\"); a broker's devices get certificates from fleet_ca",
                ));
            }
            (false, Some(_)) => {
                return Err(KeyError::new(
                    "tls",
                    "[backend.tls] is for an mqtts:// url; this url is mqtt://",
                ));
            }
            _ => {}
        }
        if section.api.is_some() {
            return Err(KeyError::new(
                "api",
                "the mqtt backend has no operator API; remove this key",
            ));
        }
        for (key, template) in [
            ("telemetry_topic", &section.telemetry_topic),
            ("command_topic", &section.command_topic),
        ] {
            if let Some(topic) = template {
                check_topic_template(topic).map_err(|m| KeyError::new(key, m))?;
            }
        }
        Ok(())
    }

    /// A broker only carries the devices' messages: nothing of an operator, nor of a registry.
    fn ungiven(_backend: &Backend) -> Vec<Ungiven> {
        vec![
            Ungiven {
                metrics: ungiven::PROVISIONING,
                why: "devices do not provision against a broker: each connects under its serial",
            },
            Ungiven {
                metrics: ungiven::OPERATOR,
                why: "a broker has no operator API: no config pushes or commands to time",
            },
            Ungiven {
                metrics: ungiven::CAMPAIGN_VIEW,
                why: "a broker runs no firmware campaigns",
            },
            Ungiven {
                metrics: ungiven::UPDATES,
                why: "a broker runs no firmware campaigns",
            },
            Ungiven {
                metrics: ungiven::HELD,
                why: "a broker does not say which devices it holds as active",
            },
            Ungiven {
                metrics: ungiven::CERTIFICATES,
                why: "a broker issues no certificates: devices bring theirs (fleet_ca)",
            },
            Ungiven {
                metrics: ungiven::REVOKED,
                why: "a broker revokes no device: retired devices leave by themselves",
            },
            Ungiven {
                metrics: ungiven::ALERTS,
                why: "a broker has no alert rules",
            },
            Ungiven {
                metrics: ungiven::HAWKBIT,
                why: "polls and deployment feedback are hawkBit's DDI",
            },
            Ungiven {
                metrics: ungiven::LWM2M,
                why: "its devices speak MQTT: LwM2M figures come from a fleet of kind \"lwm2m\"",
            },
        ]
    }

    /// A broker has no operator API: only phases devices live by themselves run.
    fn refuse(scenario: &Scenario) -> Result<(), String> {
        devices_only(scenario, "an MQTT broker has no operator API", "a broker")
    }

    fn aim(backend: &mut Backend, url: &str) -> Result<(), String> {
        let tls = backend.tls.is_some();
        if url.starts_with(if tls { "mqtts://" } else { "mqtt://" }) {
            backend.url = Some(url.to_owned());
            return Ok(());
        }
        Err(if tls {
            "mqtts://IP:PORT, the broker ([backend.tls] is set)".to_owned()
        } else {
            "mqtt://IP:PORT, the broker".to_owned()
        })
    }
}

/// A topic template: no wildcards, no empty levels, known placeholders only.
fn check_topic_template(topic: &str) -> Result<(), String> {
    let mut rest = topic.to_owned();
    for placeholder in TOPIC_PLACEHOLDERS {
        rest = rest.replace(placeholder, "x");
    }
    if topic.is_empty() || rest.contains(['+', '#', '{', '}']) || rest.split('/').any(str::is_empty) {
        return Err(format!(
            "expected a topic like \"devices/{{serial}}/telemetry\" (no wildcards or empty levels; placeholders {}), found \"{topic}\"",
            TOPIC_PLACEHOLDERS.join(", ")
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::file::BackendKind;

    #[test]
    fn a_broker_needs_its_url_takes_no_api_and_checks_its_templates() {
        let mut section = Backend::of(BackendKind::Mqtt);
        assert_eq!(Broker::check_keys(&section).map_err(|e| e.key), Err("url"));
        section.url = Some("mqtt://127.0.0.1:1883".into());
        assert_eq!(Broker::check_keys(&section), Ok(()));
        section.cluster = Some(vec!["mqtt://127.0.0.2:1883".into(), "http://127.0.0.3:1".into()]);
        let error = Broker::check_keys(&section).expect_err("an http node");
        assert_eq!((error.key, error.index), ("cluster", Some(1)));
        section.cluster = None;
        section.command_topic = Some("devices/{serial}/#".into());
        assert_eq!(Broker::check_keys(&section).map_err(|e| e.key), Err("command_topic"));
        section.command_topic = Some("devices/{serial}/{group}/cmd".into());
        assert_eq!(Broker::check_keys(&section), Ok(()));
        section.api = Some("http://127.0.0.1:8080".into());
        assert_eq!(Broker::check_keys(&section).map_err(|e| e.key), Err("api"));
    }

    #[test]
    fn topic_templates_take_known_placeholders_and_no_wildcards() {
        for good in ["t/{serial}", "plant/{group}/{model}/{index}/{serial}/up"] {
            assert_eq!(check_topic_template(good), Ok(()), "{good}");
        }
        for bad in ["", "t/+/x", "t/#", "t//x", "t/{name}", "/t"] {
            assert!(check_topic_template(bad).is_err(), "{bad}");
        }
    }
}
