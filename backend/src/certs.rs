//! The backend's certificate authority: it signs the certificate signing requests devices send
//! (when they provision by claim, and when they rotate or renew their certificate), and reads
//! which device a client certificate names.
//!
//! Design: a CSR is checked in one pure function ([`check_csr`], driven by the fuzzer) before
//! anything is signed: it must parse, its signature must verify with the key it carries, the
//! key must be ECDSA P-256 or RSA-2048, and its subject's common name must be the serial it
//! asks for. The certificate then issued carries nothing the device asked for but its public
//! key: the backend writes the subject (common name = the device id, so a certificate names its
//! device), the validity, the serial number and the usage (TLS client only, never a CA).

use std::fmt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use rcgen::{
    CertificateParams, CertificateSigningRequestParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SerialNumber,
};
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateSigningRequestDer};
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::oid_registry::{OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY};
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;

/// Longest CSR accepted, in bytes of PEM: an RSA-2048 request is about 1 KB.
pub const MAX_CSR_BYTES: usize = 8 * 1024;

/// Shortest validity a device may ask for.
pub const MIN_VALIDITY: Duration = Duration::from_secs(60);

/// Longest validity a device may ask for, and what it gets when it asks for none: 397 days,
/// the most a public TLS certificate may have.
pub const MAX_VALIDITY: Duration = Duration::from_secs(397 * 86_400);

/// How far before "now" an issued certificate starts, so a device whose clock runs a little
/// behind the backend's accepts it.
const BACKDATE: Duration = Duration::from_secs(300);

/// Why a CSR was refused; the reason a device reads in its `rejected` reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CsrRefusal {
    /// Not a PEM certificate request, or one that does not parse, or with an extension the
    /// backend does not read.
    Malformed,
    /// Its signature does not verify with the key it carries (the sender does not hold it).
    Signature,
    /// A key other than ECDSA P-256 or RSA-2048.
    KeyType,
    /// Its subject's common name is not the serial asked for (another device's, or none).
    Subject,
    /// The backend serves TLS without a CA key, so it issues no certificates.
    NoAuthority,
}

impl CsrRefusal {
    /// The reason as devices read it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Malformed => "csr_malformed",
            Self::Signature => "csr_signature",
            Self::KeyType => "csr_key_type",
            Self::Subject => "csr_subject",
            Self::NoAuthority => "no_authority",
        }
    }

    /// What the device should do about it.
    pub fn message(self) -> &'static str {
        match self {
            Self::Malformed => {
                "csr must be one PEM CERTIFICATE REQUEST (PKCS#10) with no extensions but key usage, extended key usage and subject alternative names"
            }
            Self::Signature => "the CSR's signature does not verify with its own public key",
            Self::KeyType => "the CSR's key must be ECDSA P-256 or RSA-2048",
            Self::Subject => "the CSR's subject must be exactly one common name: the device's serial",
            Self::NoAuthority => {
                "this gateway issues no certificates: serve it over TLS with its CA key (fleetsim backend --mqtts)"
            }
        }
    }
}

impl fmt::Display for CsrRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A CSR that passed [`check_csr`]: its public key, ready to be signed.
#[derive(Debug)]
pub struct CheckedCsr {
    request: CertificateSigningRequestParams,
}

/// Checks a CSR in PEM for device `serial`: it parses, its signature verifies, its key is
/// ECDSA P-256 or RSA-2048, and its subject is exactly `CN=serial`. Pure; never panics on any
/// input.
pub fn check_csr(pem: &str, serial: &str) -> Result<CheckedCsr, CsrRefusal> {
    if pem.len() > MAX_CSR_BYTES {
        return Err(CsrRefusal::Malformed);
    }
    let der = CertificateSigningRequestDer::from_pem_slice(pem.as_bytes()).map_err(|_| CsrRefusal::Malformed)?;
    check_csr_der(der.as_ref(), serial)
}

/// [`check_csr`] on the request's DER, past its PEM armour (what the fuzzer drives).
pub fn check_csr_der(der: &[u8], serial: &str) -> Result<CheckedCsr, CsrRefusal> {
    if der.len() > MAX_CSR_BYTES {
        return Err(CsrRefusal::Malformed);
    }
    let (rest, parsed) = X509CertificationRequest::from_der(der).map_err(|_| CsrRefusal::Malformed)?;
    if !rest.is_empty() {
        return Err(CsrRefusal::Malformed);
    }
    // The signature first: nothing else a request says means anything unless its sender holds
    // the key.
    let request = match CertificateSigningRequestParams::from_der(&der.into()) {
        Ok(request) => request,
        Err(rcgen::Error::InvalidCertificationRequestSignature) => return Err(CsrRefusal::Signature),
        Err(_) => return Err(CsrRefusal::Malformed),
    };
    let info = &parsed.certification_request_info;
    let spki = &info.subject_pki;
    let supported = match spki.parsed() {
        Ok(PublicKey::EC(_)) => {
            spki.algorithm.algorithm == OID_KEY_TYPE_EC_PUBLIC_KEY
                && spki
                    .algorithm
                    .parameters
                    .as_ref()
                    .and_then(|p| p.as_oid().ok())
                    .is_some_and(|curve| curve == OID_EC_P256)
        }
        Ok(PublicKey::RSA(rsa)) => rsa.key_size() == 2048,
        _ => false,
    };
    if !supported {
        return Err(CsrRefusal::KeyType);
    }
    let mut attributes = info.subject.iter_attributes();
    let only_cn = match (attributes.next(), attributes.next()) {
        (Some(cn), None) => cn.attr_type() == &x509_parser::oid_registry::OID_X509_COMMON_NAME,
        _ => false,
    };
    let named = info
        .subject
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .is_some_and(|cn| cn == serial);
    if !(only_cn && named) {
        return Err(CsrRefusal::Subject);
    }
    Ok(CheckedCsr { request })
}

/// A certificate the authority issued.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The certificate, PEM.
    pub pem: String,
    /// Its serial number, lowercase hex.
    pub serial: String,
    /// When it expires, unix ms.
    pub not_after_ms: u64,
}

/// Who a client certificate names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCert {
    /// The subject's common name: the device id.
    pub device_id: String,
    /// The serial number, lowercase hex.
    pub serial: String,
}

/// Reads the device id and serial number of a client certificate (DER, already verified by
/// the TLS handshake); `None` when it has no common name.
pub fn peer_cert(der: &[u8]) -> Option<PeerCert> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let device_id = cert.subject().iter_common_name().next()?.as_str().ok()?.to_owned();
    Some(PeerCert {
        device_id,
        serial: hex(cert.raw_serial()),
    })
}

/// The backend's CA: its certificate (the trust anchor client certificates chain to) and the
/// key it signs with.
pub struct CertAuthority {
    cert: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

impl fmt::Debug for CertAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CertAuthority(..)")
    }
}

impl CertAuthority {
    /// Reads the CA certificate and its private key (PEM, the key PKCS#8).
    pub fn load(cert: &Path, key: &Path) -> Result<Self, String> {
        let der = CertificateDer::from_pem_file(cert)
            .map_err(|e| format!("{}: expected the CA certificate in PEM ({e})", cert.display()))?;
        let key_pem = std::fs::read_to_string(key).map_err(|e| format!("{}: {e}", key.display()))?;
        let signer = KeyPair::from_pem(&key_pem)
            .map_err(|e| format!("{}: expected the CA's private key in PEM, PKCS#8 ({e})", key.display()))?;
        let issuer = Issuer::from_ca_cert_der(&der, signer)
            .map_err(|e| format!("{}: cannot sign with this CA certificate ({e})", cert.display()))?;
        Ok(Self { cert: der, issuer })
    }

    /// The trust anchors client certificates must chain to: this CA.
    pub fn roots(&self) -> Result<RootCertStore, String> {
        let mut roots = RootCertStore::empty();
        roots
            .add(self.cert.clone())
            .map_err(|e| format!("the CA certificate is not one rustls accepts ({e})"))?;
        Ok(roots)
    }

    /// Signs `csr`'s key into a certificate for `device_id`, valid from a few minutes before
    /// `now` for `validity` (clamped to [`MIN_VALIDITY`]..=[`MAX_VALIDITY`]).
    pub fn issue(
        &self,
        csr: &CheckedCsr,
        device_id: &str,
        validity: Duration,
        now: SystemTime,
    ) -> Result<Issued, String> {
        let validity = validity.clamp(MIN_VALIDITY, MAX_VALIDITY);
        let mut serial = [0u8; 16];
        getrandom::fill(&mut serial).map_err(|e| format!("no randomness for a serial number: {e}"))?;
        // A positive INTEGER of exactly 16 bytes: no sign bit, no leading zero byte.
        serial[0] = (serial[0] & 0x7f) | 0x01;
        let not_after = now + validity;
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, device_id);
        params.distinguished_name = name;
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        params.not_before = (now - BACKDATE).into();
        params.not_after = not_after.into();
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        let request = CertificateSigningRequestParams {
            params,
            public_key: csr.request.public_key.clone(),
        };
        let cert = request
            .signed_by(&self.issuer)
            .map_err(|e| format!("cannot sign the certificate: {e}"))?;
        let not_after_ms = not_after
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        Ok(Issued {
            pem: cert.pem(),
            serial: hex(&serial),
            not_after_ms,
        })
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384, PKCS_RSA_SHA256, RsaKeySize};

    fn csr(key: &KeyPair, names: &[(DnType, &str)]) -> String {
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        for (kind, value) in names {
            name.push(kind.clone(), *value);
        }
        params.distinguished_name = name;
        params.serialize_request(key).unwrap().pem().unwrap()
    }

    fn authority() -> CertAuthority {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, "test CA");
        params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        let cert = params.self_signed(&key).unwrap();
        let issuer = Issuer::from_ca_cert_der(cert.der(), key).unwrap();
        CertAuthority {
            cert: cert.der().clone(),
            issuer,
        }
    }

    #[test]
    fn a_csr_for_its_own_serial_is_signed_with_the_device_id_and_our_terms() {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let checked = check_csr(&csr(&key, &[(DnType::CommonName, "SN-1")]), "SN-1").unwrap();
        let now = SystemTime::now();
        let issued = authority()
            .issue(&checked, "d-abc", Duration::from_secs(3600), now)
            .unwrap();
        let der = CertificateDer::from_pem_slice(issued.pem.as_bytes()).unwrap();
        let peer = peer_cert(&der).unwrap();
        assert_eq!(
            peer.device_id, "d-abc",
            "the certificate names the device, not what it asked"
        );
        assert_eq!(peer.serial, issued.serial);
        assert_eq!(issued.serial.len(), 32);
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        assert!(!cert.is_ca());
        assert_eq!(
            cert.public_key().subject_public_key.data.as_ref(),
            key.public_key_raw(),
            "the device's own key, which never left it"
        );
        let lasts = cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp();
        assert_eq!(lasts, 3600 + 300);
    }

    #[test]
    fn the_validity_asked_for_is_held_within_its_bounds() {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let checked = check_csr(&csr(&key, &[(DnType::CommonName, "SN-1")]), "SN-1").unwrap();
        let ca = authority();
        for (asked, lasts) in [
            (Duration::from_secs(1), MIN_VALIDITY),
            (Duration::from_secs(3650 * 86_400), MAX_VALIDITY),
        ] {
            let issued = ca.issue(&checked, "d-abc", asked, SystemTime::now()).unwrap();
            let der = CertificateDer::from_pem_slice(issued.pem.as_bytes()).unwrap();
            let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
            let span = cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp();
            assert_eq!(span, (lasts + BACKDATE).as_secs() as i64, "asked {asked:?}");
        }
    }

    #[test]
    fn a_request_for_a_ca_gets_a_plain_client_certificate() {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, "SN-1");
        params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let pem = params.serialize_request(&key).unwrap().pem().unwrap();
        let checked = check_csr(&pem, "SN-1").unwrap();
        let issued = authority()
            .issue(&checked, "d-abc", Duration::from_secs(3600), SystemTime::now())
            .unwrap();
        let der = CertificateDer::from_pem_slice(issued.pem.as_bytes()).unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        assert!(!cert.is_ca());
    }

    #[test]
    fn bad_requests_are_refused_with_their_reason() {
        let p256 = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let p384 = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).unwrap();
        let good = csr(&p256, &[(DnType::CommonName, "SN-1")]);
        assert_eq!(
            check_csr(&good, "SN-2").unwrap_err(),
            CsrRefusal::Subject,
            "another serial"
        );
        let no_cn = csr(&p256, &[(DnType::OrganizationName, "SN-1")]);
        assert_eq!(check_csr(&no_cn, "SN-1").unwrap_err(), CsrRefusal::Subject);
        let extra = csr(&p256, &[(DnType::CommonName, "SN-1"), (DnType::OrganizationName, "x")]);
        assert_eq!(check_csr(&extra, "SN-1").unwrap_err(), CsrRefusal::Subject);
        let wrong_curve = csr(&p384, &[(DnType::CommonName, "SN-1")]);
        assert_eq!(check_csr(&wrong_curve, "SN-1").unwrap_err(), CsrRefusal::KeyType);
        assert_eq!(check_csr("not a csr", "SN-1").unwrap_err(), CsrRefusal::Malformed);
        assert_eq!(check_csr("", "SN-1").unwrap_err(), CsrRefusal::Malformed);
        let huge = format!("{good}{}", " ".repeat(MAX_CSR_BYTES));
        assert_eq!(check_csr(&huge, "SN-1").unwrap_err(), CsrRefusal::Malformed);
        // One bit of the signature flipped: the sender does not hold the key.
        let mut der = CertificateSigningRequestDer::from_pem_slice(good.as_bytes())
            .unwrap()
            .as_ref()
            .to_vec();
        let last = der.len() - 1;
        der[last] ^= 1;
        let forged = pem_of(&der);
        assert_eq!(check_csr(&forged, "SN-1").unwrap_err(), CsrRefusal::Signature);
    }

    #[test]
    fn rsa_2048_is_accepted_and_other_sizes_are_not() {
        let rsa2048 = KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_2048).unwrap();
        assert!(check_csr(&csr(&rsa2048, &[(DnType::CommonName, "SN-1")]), "SN-1").is_ok());
        let rsa3072 = KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_3072).unwrap();
        let refused = check_csr(&csr(&rsa3072, &[(DnType::CommonName, "SN-1")]), "SN-1");
        assert_eq!(refused.unwrap_err(), CsrRefusal::KeyType);
    }

    fn pem_of(der: &[u8]) -> String {
        use std::fmt::Write as _;
        const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut text = String::new();
        for chunk in der.chunks(3) {
            let n = chunk.iter().fold(0u32, |n, b| n << 8 | u32::from(*b)) << (8 * (3 - chunk.len()));
            for i in 0..4 {
                if i <= chunk.len() {
                    text.push(char::from(B64[(n >> (18 - 6 * i) & 63) as usize]));
                } else {
                    text.push('=');
                }
            }
        }
        let mut pem = String::from("-----BEGIN CERTIFICATE REQUEST-----\n");
        for line in text.as_bytes().chunks(64) {
            let _ = writeln!(pem, "{}", String::from_utf8_lossy(line));
        }
        pem.push_str("-----END CERTIFICATE REQUEST-----\n");
        pem
    }
}
