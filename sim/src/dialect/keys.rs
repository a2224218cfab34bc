//! What the dialects' checks of their `[backend]` keys share: the form of a URL, and the
//! refusal of phases a backend with no operator cannot play.

use crate::scenario::units::DisplayDuration;
use crate::scenario::{Action, KeyError, Scenario};

/// Checks `scheme://host:port[/path]` with one of `schemes`.
pub fn check_url(url: &str, schemes: &[&str]) -> Result<(), String> {
    let expected = || {
        format!(
            "expected a URL like \"{}://127.0.0.1:PORT\", found \"{url}\"",
            schemes.first().copied().unwrap_or("http")
        )
    };
    let (scheme, rest) = url.split_once("://").ok_or_else(expected)?;
    if !schemes.contains(&scheme) {
        return Err(format!(
            "expected a URL with scheme {}, found \"{url}\"",
            schemes.join(" or ")
        ));
    }
    let authority = rest.split('/').next().unwrap_or_default();
    let (host, port) = authority.rsplit_once(':').ok_or_else(expected)?;
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(expected());
    }
    Ok(())
}

/// The url a backend needs, checked: missing, it is asked for by an example.
pub fn require_url(url: Option<&str>, schemes: &[&str]) -> Result<(), KeyError> {
    match url {
        None => Err(KeyError::new(
            "url",
            format!(
                "missing: this backend needs a url like \"{}://127.0.0.1:PORT\"",
                schemes.first().copied().unwrap_or("http")
            ),
        )),
        Some(url) => check_url(url, schemes).map_err(|m| KeyError::new("url", m)),
    }
}

/// Refuses the first phase of `scenario` that devices cannot play by themselves (outages,
/// faults, and decommissioning, which without an operator the devices picked live by
/// leaving: every other phase needs an operator), saying why: `lacking` is what the backend
/// lacks ("an MQTT broker has none"), `against` what it is ("a broker").
pub fn devices_only(scenario: &Scenario, lacking: &str, against: &str) -> Result<(), String> {
    match scenario.phases.iter().find(|p| {
        !matches!(
            p.action,
            Action::Outage { .. } | Action::Fault { .. } | Action::Decommission { .. }
        )
    }) {
        Some(phase) => Err(format!(
            "{}: phase \"{}\" at {} needs an operator, and {lacking}; against {against} only \"outage\", \"fault\" and \"decommission\" (the devices leave by themselves) phases run",
            scenario.file.display(),
            phase.action.name(),
            DisplayDuration(phase.at)
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_need_a_known_scheme_a_host_and_a_port() {
        assert_eq!(check_url("mqtt://127.0.0.1:1883", &["mqtt", "mqtts"]), Ok(()));
        assert_eq!(check_url("http://10.0.0.1:80/api", &["http"]), Ok(()));
        assert_eq!(
            check_url("http://127.0.0.1:80", &["mqtt", "mqtts"]),
            Err("expected a URL with scheme mqtt or mqtts, found \"http://127.0.0.1:80\"".to_owned())
        );
        for bad in ["127.0.0.1:1883", "mqtt://127.0.0.1", "mqtt://:1883", "mqtt://h:99999"] {
            assert!(check_url(bad, &["mqtt"]).is_err(), "{bad}");
        }
        assert!(require_url(None, &["coap"]).is_err_and(|e| e.key == "url" && e.message.contains("coap://")));
    }
}
