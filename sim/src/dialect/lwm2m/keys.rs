//! An LwM2M server's `[backend]` keys: its `coap://` url, nothing else yet. It has no
//! operator here, so only outages run against one.

use super::Lwm2m;
use crate::dialect::Keys;
use crate::dialect::keys::{outages_only, require_url};
use crate::scenario::{Backend, KeyError, Scenario};

impl Keys for Lwm2m {
    const KEYS: &'static [&'static str] = &[];

    fn check_keys(section: &Backend) -> Result<(), KeyError> {
        require_url(section.url.as_deref(), &["coap"])?;
        if section.api.is_some() {
            return Err(KeyError::new(
                "api",
                "fleetsim has no operator for an LwM2M server yet; remove this key",
            ));
        }
        Ok(())
    }

    /// No operator: only phases devices live by themselves run.
    fn refuse(scenario: &Scenario) -> Result<(), String> {
        outages_only(scenario, "fleetsim has none for an LwM2M server yet", "an LwM2M server")
    }

    fn aim(backend: &mut Backend, url: &str) -> Result<(), String> {
        if url.starts_with("coap://") {
            backend.url = Some(url.to_owned());
            return Ok(());
        }
        Err("coap://IP:PORT, the LwM2M server".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::file::BackendKind;

    #[test]
    fn a_server_needs_its_coap_url_and_takes_no_api() {
        let mut section = Backend::of(BackendKind::Lwm2m);
        assert_eq!(Lwm2m::check_keys(&section).map_err(|e| e.key), Err("url"));
        section.url = Some("coaps://127.0.0.1:5684".into());
        assert_eq!(Lwm2m::check_keys(&section).map_err(|e| e.key), Err("url"));
        section.url = Some("coap://127.0.0.1:5683".into());
        assert_eq!(Lwm2m::check_keys(&section), Ok(()));
        section.api = Some("http://127.0.0.1:8080".into());
        assert_eq!(Lwm2m::check_keys(&section).map_err(|e| e.key), Err("api"));
    }
}
