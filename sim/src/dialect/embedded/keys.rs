//! The reference backend's `[backend]` keys: none of its own. Without `url` and `api` the run
//! starts the backend in its own process; a standalone one (`fleetsim backend`) is named by
//! both, its device gateway and its operator API. It plays every phase.

use super::Embedded;
use crate::dialect::Keys;
use crate::dialect::keys::check_url;
use crate::dialect::ungiven::{self, Ungiven};
use crate::scenario::file::CredentialKind;
use crate::scenario::units::DisplayDuration;
use crate::scenario::{Action, Backend, KeyError, Scenario};

impl Keys for Embedded {
    const KEYS: &'static [&'static str] = &["tls"];

    fn check_keys(section: &Backend) -> Result<(), KeyError> {
        let missing = "missing: a standalone embedded backend needs both url and api";
        if let Some(tls) = &section.tls
            && (tls.fleet_ca.is_some() || tls.device_cert_not_after.is_some())
        {
            return Err(KeyError::new(
                "tls",
                "fleet_ca and device_cert_not_after are for a broker: the reference backend's own CA issues device certificates; set credentials = \"certificate\"",
            ));
        }
        let tls_ca = section.tls.as_ref().map(|tls| tls.ca.is_some());
        match (&section.url, tls_ca) {
            // In process: the run makes the backend's CA.
            (None, Some(true)) => {
                return Err(KeyError::new(
                    "tls",
                    "ca: the run makes the CA of the backend it starts in process; remove ca (a standalone backend's url and api take it)",
                ));
            }
            (Some(url), tls_ca) => {
                let over_tls = url.starts_with("mqtts://");
                if over_tls != (tls_ca == Some(true)) {
                    return Err(KeyError::new(
                        "url",
                        "an mqtts:// url goes with [backend.tls] and its ca (the backend's, in DATA/tls/server-ca.pem); an mqtt:// url with neither",
                    ));
                }
            }
            _ => {}
        }
        match (&section.url, &section.api) {
            (None, None) => Ok(()),
            (None, Some(_)) => Err(KeyError::new("url", missing)),
            (Some(url), api) => {
                check_url(url, &["mqtt", "mqtts"]).map_err(|m| KeyError::new("url", m))?;
                let Some(api) = api else {
                    return Err(KeyError::new("api", missing));
                };
                check_url(api, &["http", "https"]).map_err(|m| KeyError::new("api", m))
            }
        }
    }

    /// The reference backend gives every figure of its MQTT devices; polls are hawkBit's.
    fn ungiven(_backend: &Backend) -> Vec<Ungiven> {
        vec![
            Ungiven {
                metrics: ungiven::HAWKBIT,
                why: "polls and deployment feedback are hawkBit's DDI: the reference backend's devices hold a connection and are sent their jobs",
            },
            Ungiven {
                metrics: ungiven::LWM2M,
                why: "its devices speak MQTT: LwM2M figures come from a fleet of kind \"lwm2m\" (without a url, the reference backend's LwM2M front)",
            },
        ]
    }

    /// A rotation needs devices that hold certificates; a read, devices that hold LwM2M
    /// resources.
    fn refuse(scenario: &Scenario) -> Result<(), String> {
        if let Some(phase) = scenario
            .phases
            .iter()
            .find(|p| matches!(&p.action, Action::Command { command, .. } if command == "read"))
        {
            return Err(format!(
                "{}: phase \"command\" at {} sends \"read\", an LwM2M Read of a resource, and these devices speak MQTT; \
                 \"diagnose\" answers with an MQTT device's health (a fleet of kind \"lwm2m\" takes reads)",
                scenario.file.display(),
                DisplayDuration(phase.at)
            ));
        }
        let certified = scenario
            .backend
            .tls
            .as_ref()
            .is_some_and(|tls| tls.credentials == Some(CredentialKind::Certificate));
        match scenario
            .phases
            .iter()
            .find(|p| matches!(p.action, Action::Rotate { .. }))
        {
            Some(phase) if !certified => Err(format!(
                "{}: phase \"rotate\" at {} rotates device certificates, and these devices log in with tokens; \
                 set credentials = \"certificate\" in [backend.tls]",
                scenario.file.display(),
                DisplayDuration(phase.at)
            )),
            _ => Ok(()),
        }
    }

    /// An `http://` URL is a running backend's operator API (devices connect where it says);
    /// an `mqtt://` URL moves the gateway of a standalone backend the scenario names.
    fn aim(backend: &mut Backend, url: &str) -> Result<(), String> {
        match url.split_once("://").map(|(scheme, _)| scheme) {
            Some("http") => {
                backend.api = Some(url.to_owned());
                backend.url = None;
                Ok(())
            }
            Some("mqtt" | "mqtts") if backend.api.is_some() => {
                backend.url = Some(url.to_owned());
                Ok(())
            }
            _ => Err("http://IP:PORT, the operator API of a running `fleetsim backend`".to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::file::BackendKind;

    #[test]
    fn a_standalone_backend_is_named_by_both_its_addresses() {
        let mut section = Backend::of(BackendKind::Embedded);
        assert_eq!(Embedded::check_keys(&section), Ok(()), "in process");
        section.api = Some("http://127.0.0.1:8080".into());
        assert_eq!(Embedded::check_keys(&section).map_err(|e| e.key), Err("url"));
        section.url = Some("mqtt://127.0.0.1:1883".into());
        assert_eq!(Embedded::check_keys(&section), Ok(()));
        section.api = None;
        assert_eq!(Embedded::check_keys(&section).map_err(|e| e.key), Err("api"));
    }

    #[test]
    fn tls_goes_with_an_mqtts_url_and_its_ca_or_with_the_backend_in_process() {
        let tls = |ca: Option<&str>| crate::scenario::file::TlsSection {
            ca: ca.map(str::to_owned),
            server_name: None,
            fleet_ca: None,
            device_key: None,
            resumption: None,
            versions: None,
            device_cert_not_after: None,
            credentials: None,
        };
        let mut section = Backend::of(BackendKind::Embedded);
        section.tls = Some(tls(None));
        assert_eq!(
            Embedded::check_keys(&section),
            Ok(()),
            "in process: the run makes the CA"
        );
        section.tls = Some(tls(Some("ca.pem")));
        assert_eq!(Embedded::check_keys(&section).map_err(|e| e.key), Err("tls"));
        section.api = Some("http://127.0.0.1:8080".into());
        section.url = Some("mqtts://127.0.0.1:8883".into());
        assert_eq!(Embedded::check_keys(&section), Ok(()), "standalone over TLS");
        section.url = Some("mqtt://127.0.0.1:1883".into());
        assert_eq!(Embedded::check_keys(&section).map_err(|e| e.key), Err("url"));
        section.tls = None;
        section.url = Some("mqtts://127.0.0.1:8883".into());
        assert_eq!(Embedded::check_keys(&section).map_err(|e| e.key), Err("url"));
    }

    #[test]
    fn backend_takes_an_operator_api_url() {
        let mut backend = Backend::of(BackendKind::Embedded);
        assert!(
            Embedded::aim(&mut backend, "mqtt://127.0.0.1:1883").is_err(),
            "no api to go with it"
        );
        Embedded::aim(&mut backend, "http://127.0.0.1:8080").expect("an api");
        assert_eq!(backend.api.as_deref(), Some("http://127.0.0.1:8080"));
        Embedded::aim(&mut backend, "mqtt://127.0.0.1:1883").expect("its gateway");
        assert_eq!(backend.url.as_deref(), Some("mqtt://127.0.0.1:1883"));
    }
}
