//! Certificate requests at the gateway: a CSR sent with a provisioning request, or on a
//! device's own connection (`fleet/v1/d/{id}/cert/csr`, a rotation or a renewal), checked
//! against the serial it must name, signed by the backend's CA, recorded in the registry, and
//! answered. A refused CSR is counted and audited (`csr.rejected`, with its reason).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

use super::Shared;
use super::payloads::CsrAsk;
use super::stats::bump;
use crate::certs::{self, CertAuthority, CheckedCsr, CsrRefusal};
use crate::registry::{NewCertificate, Recorded};

/// A CSR that passed its checks, with the CA to sign it and the validity it asked for.
pub(super) struct Signable {
    authority: Arc<CertAuthority>,
    csr: CheckedCsr,
    validity: Duration,
}

/// Checks `ask` for device `serial`; a refusal is counted and audited under `subject` (the
/// device id, or `serial:{serial}` before the device exists).
pub(super) async fn check(shared: &Shared, ask: &CsrAsk, serial: &str, subject: &str) -> Result<Signable, CsrRefusal> {
    let checked = match shared.authority.get() {
        None => Err(CsrRefusal::NoAuthority),
        Some(authority) => certs::check_csr(&ask.csr, serial).map(|csr| Signable {
            authority: Arc::clone(authority),
            csr,
            validity: ask.validity_s.map_or(certs::MAX_VALIDITY, Duration::from_secs),
        }),
    };
    if let Err(refusal) = &checked {
        bump(&shared.stats.csr_rejected);
        // The refusal stands whether or not its audit entry commits.
        let _ = shared
            .registry
            .record_lifecycle(
                subject,
                "csr.rejected",
                json!({ "serial": serial, "reason": refusal.as_str() }),
            )
            .await;
    }
    checked
}

/// Signs a checked CSR into a certificate for `device_id` and records it (`at_provisioning`
/// revokes the device's earlier certificates at once; otherwise a pending rotation revokes
/// them after its grace). Returns what the device is told: the certificate, its serial, when
/// it expires, why it was issued and when the earlier ones stop being accepted.
pub(super) async fn issue(
    shared: &Shared,
    signable: Signable,
    device_id: &str,
    at_provisioning: bool,
) -> Result<Value, &'static str> {
    let issued = signable
        .authority
        .issue(&signable.csr, device_id, signable.validity, SystemTime::now())
        .map_err(|_| "the CA could not sign; retry later")?;
    let cert = NewCertificate {
        serial: issued.serial.clone(),
        not_after: issued.not_after_ms,
        at_provisioning,
    };
    let Recorded {
        reason,
        previous_revoke_at,
        revoked,
    } = match shared.registry.record_certificate(device_id, cert).await {
        Ok(Ok(recorded)) => recorded,
        Ok(Err(_)) => return Err("the device is not active"),
        Err(_) => return Err("the registry could not commit; retry later"),
    };
    bump(&shared.stats.certs_issued);
    shared
        .stats
        .certs_revoked
        .fetch_add(revoked, std::sync::atomic::Ordering::Relaxed);
    Ok(json!({
        "certificate": issued.pem,
        "serial": issued.serial,
        "not_after_ms": issued.not_after_ms,
        "reason": reason,
        "previous_revoke_at_ms": previous_revoke_at,
    }))
}
