//! An LwM2M server's `[backend]` keys: a `coap://` url for any server, or a `coaps://` one with
//! `[backend.psk]` (devices register over DTLS with pre-shared keys); none for the reference
//! backend started in this process (`[backend.psk]`: over its DTLS listener); `api` (with an
//! optional url) for a running `fleetsim backend --lwm2m`. Against any server only the phases devices live by themselves
//! run (outages, faults, and decommissioning, in which the devices picked De-register);
//! against the reference backend, every phase its LwM2M front has a form for.

use super::Lwm2m;
use crate::dialect::Keys;
use crate::dialect::keys::{check_url, devices_only};
use crate::dialect::ungiven::{self, Ungiven};
use crate::scenario::typed::AlertRule;
use crate::scenario::units::DisplayDuration;
use crate::scenario::{Action, Backend, KeyError, Scenario};

impl Keys for Lwm2m {
    const KEYS: &'static [&'static str] = &["psk", "bootstrap"];

    fn check_keys(section: &Backend) -> Result<(), KeyError> {
        let in_process = section.url.is_none() && section.api.is_none();
        if section.bootstrap == Some(true) {
            if section.url.as_deref().is_some_and(|url| url.starts_with("coaps://")) {
                return Err(KeyError::new(
                    "url",
                    "bootstrap = true asks the bootstrap server in the clear: give its coap:// url (it names the server, coaps:// or not, that devices register with)",
                ));
            }
            if section.psk.is_some() && !in_process {
                return Err(KeyError::new(
                    "psk",
                    "with bootstrap = true the bootstrap server gives each device its server and key: leave out [backend.psk]",
                ));
            }
        }
        if let Some(url) = &section.url {
            check_url(url, &["coap", "coaps"]).map_err(|m| KeyError::new("url", m))?;
            let secured = url.starts_with("coaps://");
            if secured != section.psk.is_some() {
                return Err(KeyError::new(
                    "url",
                    "a coaps:// url goes with [backend.psk] (the devices' keys), a coap:// url with none",
                ));
            }
        }
        if let Some(api) = &section.api {
            check_url(api, &["http", "https"]).map_err(|m| KeyError::new("api", m))?;
        }
        if let Some(psk) = &section.psk {
            match (&psk.secret_env, &psk.key_env) {
                (Some(_), Some(_)) => {
                    return Err(KeyError::new(
                        "psk",
                        "secret_env (a key for each device) or key_env (one key for all), not both",
                    ));
                }
                (None, None) if !in_process => {
                    return Err(KeyError::new(
                        "psk",
                        "missing: secret_env (each device's key made from the secret the server was given) or key_env (one key for every device)",
                    ));
                }
                (None, Some(_)) if section.api.is_some() || in_process => {
                    return Err(KeyError::new(
                        "psk",
                        "key_env: the reference backend gives each device a key of its own; name its secret with secret_env (fleetsim backend --lwm2m-psk-secret), or leave both out for the backend in this process",
                    ));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// An LwM2M server by url gives what its devices measure (their updates too, when it
    /// writes object 5); the reference backend's front (no url, or `api`) the operator's
    /// figures too, but not certificates.
    fn ungiven(backend: &Backend) -> Vec<Ungiven> {
        let reference = backend.url.is_none() || backend.api.is_some();
        let mut ungiven = Vec::new();
        if !reference {
            ungiven.extend([
                Ungiven {
                    metrics: ungiven::OPERATOR,
                    why: "fleetsim has no operator for an LwM2M server other than its reference backend: no config pushes or commands to time",
                },
                Ungiven {
                    metrics: ungiven::CAMPAIGN_VIEW,
                    why: "a campaign's exposure and halt are the reference backend's figures: an LwM2M server by url may update devices through object 5 (their own update figures are measured), but says nothing of its campaigns",
                },
                Ungiven {
                    metrics: ungiven::HELD,
                    why: "an LwM2M server by url does not say which devices it holds as active",
                },
                Ungiven {
                    metrics: ungiven::ALERTS,
                    why: "fleetsim sets alert rules only on its reference backend",
                },
            ]);
            if !backend.bootstrap.unwrap_or(false) {
                ungiven.push(Ungiven {
                    metrics: ungiven::PROVISIONING,
                    why: "devices register with an LwM2M server under their endpoint name, with nothing to provision first (bootstrap = true times the bootstrap as provisioning)",
                });
            }
        }
        ungiven.extend([
            Ungiven {
                metrics: ungiven::CERTIFICATES,
                why: "LwM2M devices hold no certificates here (DTLS with pre-shared keys)",
            },
            Ungiven {
                metrics: ungiven::REVOKED,
                why: "a decommissioned LwM2M device is refused at its next registration and retires: it tries no more",
            },
            Ungiven {
                metrics: ungiven::HAWKBIT,
                why: "polls and deployment feedback are hawkBit's DDI",
            },
        ]);
        ungiven
    }

    /// Any server: only the phases devices live by themselves. The reference backend: not
    /// the phases its LwM2M front has no form for yet.
    fn refuse(scenario: &Scenario) -> Result<(), String> {
        if !Lwm2m::is_reference(scenario) {
            return devices_only(
                scenario,
                "fleetsim has none for an LwM2M server other than its reference backend",
                "an LwM2M server",
            );
        }
        let unserved = scenario.phases.iter().find_map(|phase| {
            let why = match &phase.action {
                Action::Rotate { .. } => "LwM2M devices hold no certificates here",
                Action::Alert(AlertRule::OfflineFor(_)) => "an LwM2M server learns that a device is gone only when its registration's lifetime runs out, not when its link drops; battery_below, sensor_stuck and error_codes rules run, from the front's observations",
                _ => return None,
            };
            Some((phase, why))
        });
        match unserved {
            Some((phase, why)) => Err(format!(
                "{}: phase \"{}\" at {} cannot run against LwM2M devices: {why}",
                scenario.file.display(),
                phase.action.name(),
                DisplayDuration(phase.at)
            )),
            None => Ok(()),
        }
    }

    /// A `coap://` URL is an LwM2M server; an `http://` one a running reference backend's
    /// operator API (its devices register where its `/healthz` says).
    fn aim(backend: &mut Backend, url: &str) -> Result<(), String> {
        match url.split_once("://").map(|(scheme, _)| scheme) {
            Some("coap" | "coaps") => {
                backend.url = Some(url.to_owned());
                backend.api = None;
                Ok(())
            }
            Some("http") => {
                backend.api = Some(url.to_owned());
                backend.url = None;
                Ok(())
            }
            _ => Err(
                "coap://IP:PORT, an LwM2M server, or http://IP:PORT, the operator API of a running `fleetsim backend --lwm2m`"
                    .to_owned(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::file::{BackendKind, PskSection};

    #[test]
    fn a_server_is_a_coap_url_and_the_reference_backend_an_api_or_nothing() {
        let mut section = Backend::of(BackendKind::Lwm2m);
        assert_eq!(Lwm2m::check_keys(&section), Ok(()), "the backend in process");
        section.url = Some("coaps://127.0.0.1:5684".into());
        assert_eq!(
            Lwm2m::check_keys(&section).map_err(|e| e.key),
            Err("url"),
            "coaps without keys"
        );
        let psk = |secret: Option<&str>, key: Option<&str>| PskSection {
            secret_env: secret.map(str::to_owned),
            key_env: key.map(str::to_owned),
        };
        section.psk = Some(psk(None, None));
        assert_eq!(
            Lwm2m::check_keys(&section).map_err(|e| e.key),
            Err("psk"),
            "no keys named"
        );
        section.psk = Some(psk(Some("S"), Some("K")));
        assert_eq!(Lwm2m::check_keys(&section).map_err(|e| e.key), Err("psk"), "both");
        section.psk = Some(psk(None, Some("K")));
        assert_eq!(Lwm2m::check_keys(&section), Ok(()), "one key for every device");
        section.url = None;
        assert_eq!(
            Lwm2m::check_keys(&section).map_err(|e| e.key),
            Err("psk"),
            "the reference backend gives each device its own key"
        );
        section.psk = Some(psk(None, None));
        assert_eq!(Lwm2m::check_keys(&section), Ok(()), "in process: keys from the seed");
        section.psk = None;
        section.url = Some("coap://127.0.0.1:5683".into());
        assert_eq!(Lwm2m::check_keys(&section), Ok(()));
        section.api = Some("mqtt://127.0.0.1:8080".into());
        assert_eq!(Lwm2m::check_keys(&section).map_err(|e| e.key), Err("api"));
        section.api = Some("http://127.0.0.1:8080".into());
        assert_eq!(Lwm2m::check_keys(&section), Ok(()));
    }

    #[test]
    fn a_bootstrapping_fleet_takes_its_keys_from_the_bootstrap_server() {
        let mut section = Backend::of(BackendKind::Lwm2m);
        section.bootstrap = Some(true);
        assert_eq!(Lwm2m::check_keys(&section), Ok(()), "the backend in process");
        section.psk = Some(PskSection {
            secret_env: None,
            key_env: None,
        });
        assert_eq!(
            Lwm2m::check_keys(&section),
            Ok(()),
            "in process, over its DTLS listener"
        );
        section.api = Some("http://127.0.0.1:8080".into());
        assert_eq!(
            Lwm2m::check_keys(&section).map_err(|e| e.key),
            Err("psk"),
            "keys come from the bootstrap"
        );
        section.psk = None;
        assert_eq!(Lwm2m::check_keys(&section), Ok(()), "a running backend");
        section.api = None;
        section.url = Some("coaps://127.0.0.1:5684".into());
        assert_eq!(
            Lwm2m::check_keys(&section).map_err(|e| e.key),
            Err("url"),
            "bootstrap in the clear"
        );
        section.url = Some("coap://127.0.0.1:5683".into());
        assert_eq!(Lwm2m::check_keys(&section), Ok(()), "any bootstrap server");
    }

    #[test]
    fn aiming_takes_a_server_or_a_running_backend() {
        let mut section = Backend::of(BackendKind::Lwm2m);
        assert!(Lwm2m::aim(&mut section, "http://127.0.0.1:8080").is_ok());
        assert_eq!(section.api.as_deref(), Some("http://127.0.0.1:8080"));
        assert!(Lwm2m::aim(&mut section, "coap://127.0.0.1:5683").is_ok());
        assert_eq!(
            (section.url.as_deref(), section.api.as_deref()),
            (Some("coap://127.0.0.1:5683"), None)
        );
        assert!(Lwm2m::aim(&mut section, "mqtt://127.0.0.1:1883").is_err());
    }
}
