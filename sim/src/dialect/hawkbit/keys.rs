//! A hawkBit server's `[backend]` keys: its DDI `url`, its management `api` (optional: with it
//! the run registers devices, starts rollouts and retires devices), the `tenant`, how devices
//! authenticate (`device_auth`, with the secret in the variable `token_env` names) and the
//! variables holding the management login (`user_env`, `password_env`). Secrets are named,
//! never held in the file.

use super::{DEFAULT_TENANT, Hawkbit};
use crate::dialect::Keys;
use crate::dialect::keys::{check_url, require_url};
use crate::dialect::ungiven::{self, Ungiven};
use crate::scenario::file::DeviceAuth;
use crate::scenario::units::DisplayDuration;
use crate::scenario::{Action, Backend, KeyError, Scenario};

const SCHEMES: [&str; 2] = ["http", "https"];

impl Keys for Hawkbit {
    const KEYS: &'static [&'static str] = &["tenant", "device_auth", "user_env", "password_env"];

    fn check_keys(section: &Backend) -> Result<(), KeyError> {
        require_url(section.url.as_deref(), &SCHEMES)?;
        if let Some(api) = &section.api {
            check_url(api, &SCHEMES).map_err(|m| KeyError::new("api", m))?;
        }
        let tenant = section.tenant.as_deref().unwrap_or(DEFAULT_TENANT);
        if tenant.is_empty()
            || !tenant
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(KeyError::new(
                "tenant",
                format!("expected a tenant name of letters, digits, '-' and '_', found \"{tenant}\""),
            ));
        }
        let device_auth = section.device_auth.unwrap_or(DeviceAuth::TargetToken);
        if device_auth != DeviceAuth::None && section.token_env.is_none() {
            return Err(KeyError::new(
                "token_env",
                "missing: hawkBit device tokens need a secret; name the environment variable holding it, \
                 like token_env = \"FLEETSIM_DDI_SECRET\" (or set device_auth = \"none\")",
            ));
        }
        if section.api.is_some() {
            for (key, var) in [("user_env", &section.user_env), ("password_env", &section.password_env)] {
                if var.is_none() {
                    return Err(KeyError::new(
                        key,
                        "missing: the management API needs a login; name the environment variables holding it, \
                         like user_env = \"FLEETSIM_DDI_USER\" and password_env = \"FLEETSIM_DDI_PASSWORD\"",
                    ));
                }
            }
        }
        Ok(())
    }

    /// A hawkBit server: polls and deployments; with `api`, registrations and rollouts too.
    fn ungiven(backend: &Backend) -> Vec<Ungiven> {
        let mut ungiven = Vec::new();
        if backend.api.is_none() {
            ungiven.extend([
                Ungiven {
                    metrics: ungiven::PROVISIONING,
                    why: "without `api` devices are not registered: the server must know them already",
                },
                Ungiven {
                    metrics: ungiven::HELD,
                    why: "without `api` the run cannot ask the server which devices it holds",
                },
            ]);
        }
        ungiven.extend([
            Ungiven {
                metrics: ungiven::OPERATOR,
                why: "DDI has no config pushes or commands",
            },
            Ungiven {
                metrics: ungiven::CAMPAIGN_VIEW,
                why: "a rollout's exposure and halt are the reference backend's campaigns' figures: the run reads no rollout's progress from hawkBit",
            },
            Ungiven {
                metrics: ungiven::CERTIFICATES,
                why: "devices hold target tokens here, not certificates",
            },
            Ungiven {
                metrics: ungiven::REVOKED,
                why: "retired targets are not tried again",
            },
            Ungiven {
                metrics: ungiven::ALERTS,
                why: "DDI has no alert rules",
            },
            Ungiven {
                metrics: ungiven::LWM2M,
                why: "its devices poll DDI over HTTP: LwM2M figures come from a fleet of kind \"lwm2m\"",
            },
        ]);
        ungiven
    }

    /// DDI has no config push and no commands. Rollouts and retiring devices need the
    /// management API.
    fn refuse(scenario: &Scenario) -> Result<(), String> {
        let has_api = scenario.backend.api.is_some();
        match scenario.phases.iter().find(|p| match p.action {
            Action::Outage { .. } | Action::Fault { .. } => false,
            Action::Ota(_) | Action::Decommission { .. } => !has_api,
            Action::Config { .. } | Action::Command { .. } | Action::Rotate { .. } | Action::Alert(_) => true,
        }) {
            Some(phase) => Err(format!(
                "{}: phase \"{}\" at {}: against a hawkBit server fleetsim runs \"ota\" and \"decommission\" \
                 phases (with backend.api set), \"outage\" and \"fault\" phases; DDI has no config push, commands, certificates or alert rules",
                scenario.file.display(),
                phase.action.name(),
                DisplayDuration(phase.at)
            )),
            None => Ok(()),
        }
    }

    /// The server serves DDI and its management API (when the scenario has one) at one
    /// address.
    fn aim(backend: &mut Backend, url: &str) -> Result<(), String> {
        if !url.starts_with("http://") {
            return Err("http://IP:PORT, the DDI server".to_owned());
        }
        backend.url = Some(url.to_owned());
        if backend.api.is_some() {
            backend.api = Some(url.to_owned());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::file::BackendKind;

    fn section() -> Backend {
        Backend {
            url: Some("http://127.0.0.1:60053".into()),
            token_env: Some("FLEETSIM_DDI_SECRET".into()),
            ..Backend::of(BackendKind::Hawkbit)
        }
    }

    #[test]
    fn tokens_need_a_secret_and_the_management_api_a_login() {
        assert_eq!(Hawkbit::check_keys(&section()), Ok(()));
        let no_secret = Backend {
            token_env: None,
            ..section()
        };
        assert_eq!(Hawkbit::check_keys(&no_secret).map_err(|e| e.key), Err("token_env"));
        let open = Backend {
            device_auth: Some(DeviceAuth::None),
            ..no_secret
        };
        assert_eq!(Hawkbit::check_keys(&open), Ok(()), "no tokens, no secret");
        let api = Backend {
            api: Some("http://127.0.0.1:60053".into()),
            user_env: Some("U".into()),
            ..section()
        };
        assert_eq!(Hawkbit::check_keys(&api).map_err(|e| e.key), Err("password_env"));
        let tenant = Backend {
            tenant: Some("a b".into()),
            ..section()
        };
        assert_eq!(Hawkbit::check_keys(&tenant).map_err(|e| e.key), Err("tenant"));
    }
}
