//! Identities for a fleet: a fleet CA (made by `fleetsim ca`, or one a user brings), the server
//! certificate a broker presents to the fleet, and each device's own key and certificate.
//!
//! Design: a device's ECDSA P-256 key is derived from the scenario's key and the device's
//! serial (HMAC-SHA-256, the scalar then checked against the curve's order), so the same
//! scenario and seed give every device the same key in every run, and a million planned
//! devices cost no key until each connects. RSA-2048 keys cannot be derived so cheaply (a prime
//! search); they are generated when the device first needs one. A device's certificate names
//! its serial as the subject's common name (a broker with `use_identity_as_username` sees the
//! serial as the user) and carries a serial number derived like the key.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair};
use hmac::{Hmac, KeyInit, Mac};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PKCS_RSA_SHA256, RsaKeySize, SanType, SerialNumber,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::Sha256;

/// The fleet CA's certificate in a CA folder.
pub const CA_CERT: &str = "ca.pem";
/// The fleet CA's private key in a CA folder.
pub const CA_KEY: &str = "ca.key";
/// The certificate of the CA that issued the server's certificate, in a CA folder: the one
/// devices trust for the server (`[backend.tls] ca`). Its key is not kept.
pub const SERVER_CA_CERT: &str = "server-ca.pem";
/// The server certificate `fleetsim ca` issues, in a CA folder.
pub const SERVER_CERT: &str = "server.pem";
/// Its private key.
pub const SERVER_KEY: &str = "server.key";

/// How long the CA and server certificates `fleetsim ca` writes are valid by default.
pub const DEFAULT_CA_DAYS: u32 = 3650;
/// How long a device certificate is valid by default.
const DEVICE_CERT_DAYS: u64 = 365;
/// How far back a certificate's validity starts: a server whose clock runs a little behind
/// still accepts a certificate made a moment ago.
const BACKDATE: Duration = Duration::from_secs(3600);

/// A device key's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyType {
    /// ECDSA on P-256 with SHA-256: derived from the seed.
    #[default]
    EcdsaP256,
    /// RSA, 2048 bits, PKCS#1 v1.5 with SHA-256: generated at the device's first connect.
    Rsa2048,
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::EcdsaP256 => "ecdsa-p256",
            Self::Rsa2048 => "rsa-2048",
        })
    }
}

/// Why a CA folder or an identity could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: io::Error,
    },
    /// A file held no certificate or key in PEM, or one that cannot be used.
    #[error("{path}: {what}")]
    Bad {
        /// The file.
        path: PathBuf,
        /// What is wrong and what is expected.
        what: String,
    },
    /// The folder already holds a CA: writing over its key would lose it.
    #[error("{0} already holds a fleet CA ({CA_KEY}); pick another folder, or remove it first")]
    Exists(PathBuf),
    /// Making a key or certificate failed.
    #[error("cannot make {what}: {source}")]
    Make {
        /// What was being made.
        what: &'static str,
        /// The library's reason.
        source: rcgen::Error,
    },
}

/// A CA that issues device (or server) certificates: its certificate and its signing key.
pub struct FleetCa {
    /// Its certificate, DER.
    pub cert: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

impl fmt::Debug for FleetCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FleetCa").field("cert_bytes", &self.cert.len()).finish()
    }
}

impl FleetCa {
    /// Reads the CA of `folder` (`ca.pem` and `ca.key`, as `fleetsim ca` writes them).
    pub fn load(folder: &Path) -> Result<Self, PkiError> {
        let cert_path = folder.join(CA_CERT);
        let key_path = folder.join(CA_KEY);
        let cert = CertificateDer::from_pem_file(&cert_path).map_err(|e| PkiError::Bad {
            path: cert_path.clone(),
            what: format!("expected a CA certificate in PEM ({e})"),
        })?;
        let key_pem = fs::read_to_string(&key_path).map_err(|source| PkiError::Io {
            path: key_path.clone(),
            source,
        })?;
        let key = KeyPair::from_pem(&key_pem).map_err(|e| PkiError::Bad {
            path: key_path,
            what: format!("expected the CA's private key in PEM, PKCS#8 ({e})"),
        })?;
        let issuer = Issuer::from_ca_cert_der(&cert, key).map_err(|e| PkiError::Bad {
            path: cert_path,
            what: format!("cannot sign with this CA certificate ({e})"),
        })?;
        Ok(Self { cert, issuer })
    }

    /// A new self-signed CA named `name`, valid for `days` from an hour ago; with its
    /// certificate and key in PEM, to write.
    fn create(name: &str, days: u32) -> Result<(Self, Pem), PkiError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|source| PkiError::Make {
            what: "the CA's key",
            source,
        })?;
        let mut params = CertificateParams::default();
        params.distinguished_name = name_of(name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        (params.not_before, params.not_after) = validity(days_span(u64::from(days)));
        let cert = params.self_signed(&key).map_err(|source| PkiError::Make {
            what: "the CA certificate",
            source,
        })?;
        let pem = Pem {
            cert: cert.pem(),
            key: key.serialize_pem(),
        };
        let issuer = Issuer::new(params, key);
        Ok((
            Self {
                cert: cert.der().clone(),
                issuer,
            },
            pem,
        ))
    }

    /// A server certificate for `names` (DNS names or IP addresses), valid for `days`, and
    /// its new key, in PEM.
    fn issue_server(&self, names: &[String], days: u32) -> Result<Pem, PkiError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|source| PkiError::Make {
            what: "the server's key",
            source,
        })?;
        let mut params = CertificateParams::default();
        params.distinguished_name = name_of(names.first().map_or("fleetsim server", String::as_str));
        params.subject_alt_names = names
            .iter()
            .map(|name| match name.parse() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => name.clone().try_into().map(SanType::DnsName),
            })
            .collect::<Result<_, _>>()
            .map_err(|source| PkiError::Make {
                what: "the server certificate's names",
                source,
            })?;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        (params.not_before, params.not_after) = validity(days_span(u64::from(days)));
        let cert = params.signed_by(&key, &self.issuer).map_err(|source| PkiError::Make {
            what: "the server certificate",
            source,
        })?;
        Ok(Pem {
            cert: cert.pem(),
            key: key.serialize_pem(),
        })
    }

    /// Device `serial`'s certificate for `key`, valid until `not_after` (a year when `None`).
    pub fn issue_device(
        &self,
        serial: &str,
        key: &KeyPair,
        serial_number: [u8; 16],
        not_after: Option<SystemTime>,
    ) -> Result<CertificateDer<'static>, rcgen::Error> {
        let mut params = CertificateParams::default();
        params.distinguished_name = name_of(serial);
        params.serial_number = Some(SerialNumber::from_slice(&serial_number));
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let (not_before, default_end) = validity(days_span(DEVICE_CERT_DAYS));
        params.not_before = not_before;
        params.not_after = not_after.map_or(default_end, time::OffsetDateTime::from);
        Ok(params.signed_by(key, &self.issuer)?.der().clone())
    }
}

/// A certificate and its key in PEM, as `fleetsim ca` writes them.
struct Pem {
    cert: String,
    key: String,
}

/// A device's key and certificate, as its TLS client presents them.
#[derive(Debug)]
pub struct DeviceIdentity {
    /// Its certificate, DER.
    pub cert: CertificateDer<'static>,
    /// Its private key, PKCS#8 DER.
    pub key: PrivateKeyDer<'static>,
}

/// Makes device `serial`'s identity from `ca`: its key (derived from `secret` and the serial
/// for ECDSA, generated for RSA) and its certificate.
pub fn device_identity(
    ca: &FleetCa,
    secret: u64,
    serial: &str,
    key_type: KeyType,
    not_after: Option<SystemTime>,
) -> Result<DeviceIdentity, rcgen::Error> {
    let key = match key_type {
        KeyType::EcdsaP256 => derived_p256_key(secret, serial)?,
        KeyType::Rsa2048 => KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_2048)?,
    };
    let mut serial_number = [0u8; 16];
    serial_number.copy_from_slice(&derive(secret, b"fleetsim cert serial", serial, 0)[..16]);
    // Positive and without a leading zero byte: an INTEGER of exactly 16 bytes.
    serial_number[0] = (serial_number[0] & 0x7f) | 0x40;
    let cert = ca.issue_device(serial, &key, serial_number, not_after)?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    Ok(DeviceIdentity { cert, key })
}

/// A device's key for a certificate signing request: the `generation`th key of `serial`
/// (derived from `secret`, so the same device asks with the same key in every run; each
/// rotation a new one) for ECDSA, generated for RSA. With its PKCS#8 DER, to present later.
pub fn request_key(
    secret: u64,
    serial: &str,
    generation: u32,
    key_type: KeyType,
) -> Result<(KeyPair, PrivateKeyDer<'static>), rcgen::Error> {
    let key = match key_type {
        KeyType::EcdsaP256 => derived_p256_key(secret, &generation_name(serial, generation))?,
        KeyType::Rsa2048 => KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_2048)?,
    };
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    Ok((key, der))
}

/// A kept RSA key (see [`request_key`]) again, to sign a request with.
pub fn kept_rsa_key(der: &PrivateKeyDer<'_>) -> Result<KeyPair, rcgen::Error> {
    KeyPair::from_der_and_sign_algo(der, &PKCS_RSA_SHA256)
}

/// The name a device's `generation`th key is derived under: the serial itself first (the key
/// a fleet CA's certificate carries), then `serial#2`, `serial#3`, ...
pub fn generation_name(serial: &str, generation: u32) -> String {
    if generation <= 1 {
        serial.to_owned()
    } else {
        format!("{serial}#{generation}")
    }
}

/// A PKCS#10 certificate signing request, PEM, for `key` with subject `CN=serial`: what a
/// device of the reference backend sends to be issued a certificate.
pub fn certificate_request(key: &KeyPair, serial: &str) -> Result<String, rcgen::Error> {
    let mut params = CertificateParams::default();
    params.distinguished_name = name_of(serial);
    params.serialize_request(key)?.pem()
}

/// The P-256 key of device `serial`, for signing its certificate.
fn derived_p256_key(secret: u64, serial: &str) -> Result<KeyPair, rcgen::Error> {
    let der = derived_p256_pkcs8(secret, serial).ok_or(rcgen::Error::KeyGenerationUnavailable)?;
    KeyPair::from_pkcs8_der_and_sign_algo(&der, &PKCS_ECDSA_P256_SHA256)
}

/// The P-256 key of device `serial`, PKCS#8: the scalar is HMAC-SHA-256 of the serial under
/// the scenario's secret, drawn again with a counter in the (2^-32) case that it is not below
/// the curve's order. Cheap enough (tens of microseconds) to make again at each handshake
/// rather than keep in every connected device.
pub fn derived_p256_pkcs8(secret: u64, serial: &str) -> Option<PrivatePkcs8KeyDer<'static>> {
    (0..8u8).find_map(|counter| {
        let scalar = derive(secret, b"fleetsim device key", serial, counter);
        let pair = EcdsaKeyPair::from_private_key_der(&ECDSA_P256_SHA256_ASN1_SIGNING, &rfc5915(&scalar)).ok()?;
        let pkcs8 = pair.to_pkcs8v1().ok()?;
        Some(PrivatePkcs8KeyDer::from(pkcs8.as_ref().to_vec()))
    })
}

/// An RFC 5915 ECPrivateKey for P-256 holding `scalar` and no public key (AWS-LC computes it).
fn rfc5915(scalar: &[u8; 32]) -> Vec<u8> {
    // SEQUENCE { INTEGER 1, OCTET STRING scalar, [0] { OID prime256v1 } }
    let mut der = vec![0x30, 0x31, 0x02, 0x01, 0x01, 0x04, 0x20];
    der.extend_from_slice(scalar);
    der.extend_from_slice(&[0xa0, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07]);
    der
}

/// HMAC-SHA-256 under `secret` of a purpose, a serial and a counter.
fn derive(secret: u64, purpose: &[u8], serial: &str, counter: u8) -> [u8; 32] {
    // HMAC takes a key of any length.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&secret.to_be_bytes()).unwrap_or_else(|_| unreachable!());
    mac.update(purpose);
    mac.update(&[0]);
    mac.update(serial.as_bytes());
    mac.update(&[counter]);
    mac.finalize().into_bytes().into()
}

fn name_of(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    name
}

fn days_span(days: u64) -> Duration {
    Duration::from_secs(days * 86_400)
}

/// From an hour ago to `span` from now.
fn validity(span: Duration) -> (time::OffsetDateTime, time::OffsetDateTime) {
    let now = SystemTime::now();
    let start = now.checked_sub(BACKDATE).unwrap_or(now);
    let end = now.checked_add(span).unwrap_or(now);
    (start.into(), end.into())
}

/// What `fleetsim ca` wrote.
#[derive(Debug)]
pub struct CaFolder {
    /// The files, in the order written.
    pub files: Vec<PathBuf>,
}

/// Writes a new fleet CA and a server certificate for `server_names` into `folder` (made if
/// missing): `ca.pem`, `ca.key`, `server-ca.pem`, `server.pem`, `server.key`. Refuses a
/// folder that holds a CA.
///
/// The server's certificate comes from a CA of its own (`server-ca.pem`, its key dropped once
/// it has signed), not from the fleet CA, as in production fleets (AWS IoT's devices trust
/// Amazon's roots, and the account's CA issues their certificates). A broker that checks
/// devices against the fleet CA then finds no issuer of its own certificate there, and sends
/// that certificate alone: OpenSSL (Mosquitto) builds the chain it sends from the CA file it
/// checks clients with, and would send the fleet CA's certificate after its own, which every
/// device's TLS connection and resumable session then keeps a copy of.
pub fn write_ca_folder(folder: &Path, server_names: &[String], days: u32) -> Result<CaFolder, PkiError> {
    if folder.join(CA_KEY).exists() {
        return Err(PkiError::Exists(folder.to_owned()));
    }
    fs::create_dir_all(folder).map_err(|source| PkiError::Io {
        path: folder.to_owned(),
        source,
    })?;
    // A name of its own: a server that trusts another fleetsim CA finds no issuer of this
    // name (and says "unknown CA") rather than one whose signature does not match.
    let mut tag = [0u8; 4];
    getrandom::fill(&mut tag).map_err(|e| PkiError::Io {
        path: folder.to_owned(),
        source: io::Error::other(e.to_string()),
    })?;
    let tag = u32::from_be_bytes(tag);
    let (_, ca_pem) = FleetCa::create(&format!("fleetsim fleet CA {tag:08x}"), days)?;
    let (server_ca, server_ca_pem) = FleetCa::create(&format!("fleetsim server CA {tag:08x}"), days)?;
    let server_pem = server_ca.issue_server(server_names, days)?;
    // Keys readable by their owner only; certificates by anyone (a broker that drops its
    // privileges reads its CA file as another user).
    let files = [
        (CA_CERT, ca_pem.cert, 0o644),
        (CA_KEY, ca_pem.key, 0o600),
        (SERVER_CA_CERT, server_ca_pem.cert, 0o644),
        (SERVER_CERT, server_pem.cert, 0o644),
        (SERVER_KEY, server_pem.key, 0o600),
    ];
    let mut written = Vec::with_capacity(files.len());
    for (name, text, mode) in files {
        let path = folder.join(name);
        write_file(&path, &text, mode).map_err(|source| PkiError::Io {
            path: path.clone(),
            source,
        })?;
        written.push(path);
    }
    Ok(CaFolder { files: written })
}

/// Writes a file with permissions `mode`.
fn write_file(path: &Path, text: &str, mode: u32) -> io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)?;
    file.write_all(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_key_is_the_same_for_the_same_seed_and_serial_and_differs_otherwise() {
        let key = |secret, serial| derived_p256_key(secret, serial).expect("key").public_key_raw().to_vec();
        assert_eq!(key(7, "SN-1"), key(7, "SN-1"));
        assert_ne!(key(7, "SN-1"), key(7, "SN-2"));
        assert_ne!(key(7, "SN-1"), key(8, "SN-1"));
    }

    #[test]
    fn a_ca_folder_issues_device_certificates_that_load_back() {
        let dir = std::env::temp_dir().join(format!("fleetsim-pki-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let written = write_ca_folder(&dir, &["localhost".into(), "127.0.0.1".into()], 30).expect("written");
        assert_eq!(written.files.len(), 5);
        let mode = |name: &str| {
            use std::os::unix::fs::PermissionsExt as _;
            fs::metadata(dir.join(name)).expect("written").permissions().mode() & 0o777
        };
        assert_eq!(
            (mode(CA_KEY), mode(SERVER_KEY)),
            (0o600, 0o600),
            "keys: their owner's only"
        );
        assert_eq!(
            (mode(CA_CERT), mode(SERVER_CA_CERT), mode(SERVER_CERT)),
            (0o644, 0o644, 0o644),
            "certificates: anyone's"
        );
        let again = write_ca_folder(&dir, &["localhost".into()], 30).expect_err("a CA is never overwritten");
        assert!(again.to_string().contains("already holds a fleet CA"), "{again}");
        let ca = FleetCa::load(&dir).expect("loads");
        let one = device_identity(&ca, 7, "SN-1", KeyType::EcdsaP256, None).expect("identity");
        let two = device_identity(&ca, 7, "SN-1", KeyType::EcdsaP256, None).expect("identity");
        assert_eq!(
            one.key.secret_der(),
            two.key.secret_der(),
            "the key comes from the seed"
        );
        assert!(one.cert.len() > 200);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_server_certificate_chains_to_the_server_ca_and_not_to_the_fleet_ca() {
        use rustls::client::WebPkiServerVerifier;
        use rustls::client::danger::ServerCertVerifier as _;
        use rustls_pki_types::{ServerName, UnixTime};
        use std::sync::Arc;
        let dir = std::env::temp_dir().join(format!("fleetsim-pki-server-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        write_ca_folder(&dir, &["localhost".into()], 30).expect("written");
        let server = CertificateDer::from_pem_file(dir.join(SERVER_CERT)).expect("server certificate");
        let verify = |root: &str| {
            let mut roots = rustls::RootCertStore::empty();
            roots
                .add(CertificateDer::from_pem_file(dir.join(root)).expect("root"))
                .expect("a CA certificate");
            let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .expect("verifier");
            let name = ServerName::try_from("localhost").expect("a DNS name");
            verifier.verify_server_cert(&server, &[], &name, &[], UnixTime::now())
        };
        assert!(verify(SERVER_CA_CERT).is_ok(), "devices trust server-ca.pem");
        assert_eq!(
            verify(CA_CERT).map(|_| ()),
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer
            )),
            "the fleet CA issues devices only: a broker checking devices with it sends no CA of its own"
        );
        let _ = fs::remove_dir_all(&dir);
    }
}
