//! Devices over TLS, for a dialect whose devices hold a byte stream: the scenario's
//! `[backend.tls]` made into what connects them ([`DeviceTls`]): the server's trust anchors and
//! name, the fleet CA that issues each device its certificate, and each device's side of its
//! handshakes once made.
//!
//! Design: a device's certificate and its session store are made at its first connect and
//! kept (shard-shared, behind a lock taken once a connect) so that a device reconnects as
//! itself and, with resumption on, resumes its own session. A planned device that never
//! connects costs nothing. An ECDSA key is derived again at each full handshake rather than
//! kept; an RSA key, which cannot be derived, is kept. docs/tls.md says what each costs.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::time::Instant;

use super::{DeviceCx, StartError};
use crate::metrics::recorder::{Counter, Latency};
use crate::pki::{self, FleetCa, KeyType};
use crate::scenario::file::{CredentialKind, DeviceKeyType, Switch, TlsSection, TlsVersion};
use crate::scenario::validate::parse_day;
use crate::transport::mqtt::{ConnectParams, Greeting, MqttConn, TransportError};
use crate::transport::stream::ByteStream;
use crate::transport::tls::{ClientIdentity, ClientTemplate, DeviceSide, Handshake, KeyMaker, TlsStream, Version};

/// How a dialect's devices speak TLS.
#[derive(Debug)]
pub struct DeviceTls {
    template: ClientTemplate,
    server: ServerName<'static>,
    fleet_ca: Option<FleetCa>,
    key_type: KeyType,
    not_after: Option<SystemTime>,
    /// Devices log in with a certificate the reference backend's CA signed from their own
    /// request (`credentials = "certificate"`).
    certified: bool,
    /// Each device's side of its handshakes, by index, once it first connected (or, certified, once
    /// it was issued a certificate).
    devices: Mutex<HashMap<u64, Held>>,
    /// Certificate requests sent and not yet answered, by index: the key generation asked
    /// for, and an RSA key (which cannot be derived again) to present once issued.
    requests: Mutex<HashMap<u64, (u32, Option<PrivateKeyDer<'static>>)>>,
}

/// What [`DeviceTls`] keeps of one device.
#[derive(Debug)]
struct Held {
    side: Arc<DeviceSide>,
    /// The generation of the key its certificate holds (0: no certificate of its own).
    generation: u32,
    /// Why it holds a certificate it has not logged in with yet, if a rotation or a renewal
    /// gave it one.
    fresh: Option<Issued>,
}

/// Why the backend issued a device a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Issued {
    /// With its provisioning request.
    Provisioned,
    /// The operator asked it to rotate.
    Rotated,
    /// It renewed its own, before it expired.
    Renewed,
}

impl DeviceTls {
    /// Reads `[backend.tls]` (its paths already made relative to the scenario's folder by
    /// validation); `host` is the url's host, the server's name when `server_name` is not set.
    pub fn new(section: &TlsSection, host: &str) -> Result<Self, StartError> {
        let bad = |what: String| StartError::BadFile(format!("backend.tls: {what}"));
        let ca = section
            .ca
            .as_deref()
            .ok_or_else(|| bad("ca: missing: name the PEM file of the CA the server's certificate chains to".into()))?;
        let mut roots = RootCertStore::empty();
        let certs = CertificateDer::pem_file_iter(ca)
            .map_err(|e| bad(format!("{ca}: cannot read CA certificates in PEM ({e})")))?;
        for cert in certs {
            let cert = cert.map_err(|e| bad(format!("{ca}: expected CA certificates in PEM ({e})")))?;
            roots
                .add(cert)
                .map_err(|e| bad(format!("{ca}: not a CA certificate rustls accepts ({e})")))?;
        }
        if roots.is_empty() {
            return Err(bad(format!(
                "{ca}: expected the CA certificates the server's chains to, in PEM; found none"
            )));
        }
        let versions: Vec<Version> = section
            .versions
            .as_deref()
            .unwrap_or(&[TlsVersion::Tls12, TlsVersion::Tls13])
            .iter()
            .map(|v| match v {
                TlsVersion::Tls12 => Version::Tls12,
                TlsVersion::Tls13 => Version::Tls13,
            })
            .collect();
        let resume = section.resumption != Some(Switch::Off);
        let template = ClientTemplate::new(roots, &versions, resume).map_err(|e| bad(e.to_string()))?;
        let name = section.server_name.as_deref().unwrap_or(host);
        let server = ServerName::try_from(name.to_owned()).map_err(|_| {
            bad(format!(
                "server_name: expected a DNS name or an IP address, found \"{name}\""
            ))
        })?;
        let fleet_ca = match &section.fleet_ca {
            Some(folder) => Some(FleetCa::load(Path::new(folder)).map_err(|e| bad(e.to_string()))?),
            None => None,
        };
        let key_type = match section.device_key {
            Some(DeviceKeyType::Rsa2048) => KeyType::Rsa2048,
            Some(DeviceKeyType::EcdsaP256) | None => KeyType::EcdsaP256,
        };
        let not_after = match &section.device_cert_not_after {
            Some(day) => {
                let day = parse_day(day).ok_or_else(|| bad(format!("device_cert_not_after: \"{day}\"")))?;
                let end = day.with_hms(23, 59, 59).unwrap_or(day.midnight()).assume_utc();
                Some(SystemTime::from(end))
            }
            None => None,
        };
        // One identity made now, so a CA that cannot issue (a key of a kind it cannot sign
        // with) stops the run before it starts rather than failing every device's connect.
        if let (Some(ca), Some(folder)) = (&fleet_ca, &section.fleet_ca) {
            pki::device_identity(ca, 0, "fleetsim-probe", key_type, not_after)
                .map_err(|e| bad(format!("fleet_ca: {folder}: cannot issue a device certificate ({e})")))?;
        }
        Ok(Self {
            template,
            server,
            fleet_ca,
            key_type,
            not_after,
            certified: section.credentials == Some(CredentialKind::Certificate),
            devices: Mutex::new(HashMap::new()),
            requests: Mutex::new(HashMap::new()),
        })
    }

    /// Whether devices log in with a certificate the backend's CA signed from their request.
    pub fn certified(&self) -> bool {
        self.certified
    }

    /// A certificate signing request for device `cx`'s next key (`CN` = its serial), PEM; the
    /// request is remembered until [`DeviceTls::install`] takes its certificate. A request
    /// still unanswered is asked again with the same key, so whichever answer comes fits the
    /// key the device holds.
    pub fn certificate_request(&self, cx: &DeviceCx<'_>) -> Result<String, TransportError> {
        let pending = lock(&self.requests)
            .get(&cx.index)
            .map(|(generation, kept)| (*generation, kept.as_ref().map(PrivateKeyDer::clone_key)));
        let generation = match &pending {
            Some((generation, _)) => *generation,
            None => lock(&self.devices).get(&cx.index).map_or(0, |held| held.generation) + 1,
        };
        let serial = cx.serial();
        let (key, kept) = match pending.and_then(|(_, kept)| kept) {
            Some(der) => (pki::kept_rsa_key(&der).map_err(|_| TransportError::Local)?, Some(der)),
            None => {
                let (key, der) = pki::request_key(cx.shared.serial_key, &serial, generation, self.key_type)
                    .map_err(|_| TransportError::Local)?;
                (key, (self.key_type == KeyType::Rsa2048).then_some(der))
            }
        };
        let csr = pki::certificate_request(&key, &serial).map_err(|_| TransportError::Local)?;
        lock(&self.requests).insert(cx.index, (generation, kept));
        Ok(csr)
    }

    /// Adds device `cx`'s certificate request to a message `body`: its CSR
    /// ([`DeviceTls::certificate_request`]) and, when its model gives certificates a short
    /// life, the validity it asks for (`validity_s`, [`requested_validity_s`]).
    pub fn add_certificate_request(
        &self,
        cx: &DeviceCx<'_>,
        body: &mut serde_json::Value,
    ) -> Result<(), TransportError> {
        body["csr"] = self.certificate_request(cx)?.into();
        if let Some(validity_s) = requested_validity_s(cx) {
            body["validity_s"] = validity_s.into();
        }
        Ok(())
    }

    /// Takes the certificate (PEM) issued for device `cx`'s last request: from now on the
    /// device presents it, with the request's key, and starts a new session (a session
    /// resumed would carry the old identity). Why it was issued, when a rotation or a
    /// renewal, is kept until [`DeviceTls::took_new_certificate`].
    pub fn install(&self, cx: &DeviceCx<'_>, cert_pem: &str, why: Issued) -> Result<(), TransportError> {
        let Some((generation, kept)) = lock(&self.requests).remove(&cx.index) else {
            // An answer to no request of ours (a duplicate): nothing to take.
            return Err(TransportError::Protocol);
        };
        let cert = CertificateDer::from_pem_slice(cert_pem.as_bytes()).map_err(|_| TransportError::Protocol)?;
        let identity = match kept {
            Some(key) => ClientIdentity::Kept(cert, key),
            None => {
                let (secret, name) = (cx.shared.serial_key, pki::generation_name(&cx.serial(), generation));
                let maker: KeyMaker =
                    Arc::new(move || pki::derived_p256_pkcs8(secret, &name).map(PrivateKeyDer::Pkcs8));
                ClientIdentity::Derived(cert, maker)
            }
        };
        let side = self
            .template
            .device(Some(identity))
            .map_err(|_| TransportError::Local)?;
        let held = Held {
            side,
            generation,
            fresh: (why != Issued::Provisioned).then_some(why),
        };
        lock(&self.devices).insert(cx.index, held);
        Ok(())
    }

    /// Why device `cx`, which has just logged in, was issued the certificate it logged in
    /// with, if that is its first login on a certificate a rotation or a renewal gave it
    /// (said once).
    pub fn took_new_certificate(&self, cx: &DeviceCx<'_>) -> Option<Issued> {
        lock(&self.devices)
            .get_mut(&cx.index)
            .and_then(|held| held.fresh.take())
    }

    /// Connects device `cx` to `target` presenting no certificate (a claim connection of a
    /// certified device), with no resumption.
    pub async fn connect_anonymous(&self, cx: &DeviceCx<'_>, target: SocketAddr) -> Result<ByteStream, TransportError> {
        self.handshake(cx, target, None).await
    }

    /// Connects device `cx` to `target` over TCP and runs the TLS handshake:
    /// `tls.handshake.latency` from the TCP connection to the handshake's end, the handshake
    /// counted as full or resumed. A refused handshake is a [`TransportError::Tls`] with its
    /// reason.
    pub async fn connect(&self, cx: &DeviceCx<'_>, target: SocketAddr) -> Result<ByteStream, TransportError> {
        let side = self.side_for(cx)?;
        self.handshake(cx, target, Some(side)).await
    }

    async fn handshake(
        &self,
        cx: &DeviceCx<'_>,
        target: SocketAddr,
        side: Option<Arc<DeviceSide>>,
    ) -> Result<ByteStream, TransportError> {
        let tcp = ByteStream::tcp_socket(target, cx.source).await?;
        let started = Instant::now();
        let (stream, kind) = TlsStream::handshake(tcp, &self.template, side, self.server.clone()).await?;
        cx.record(Latency::TlsHandshake, started);
        cx.count(match kind {
            Handshake::Full => Counter::TlsFull,
            Handshake::Resumed => Counter::TlsResumed,
        });
        Ok(ByteStream::Tls(Box::new(stream)))
    }

    /// Device `cx`'s side of its handshakes: kept from its first connect (or its
    /// certificate's issue), or made now (its serial computed only then, for its certificate).
    fn side_for(&self, cx: &DeviceCx<'_>) -> Result<Arc<DeviceSide>, TransportError> {
        if let Some(held) = lock(&self.devices).get(&cx.index) {
            return Ok(held.side.clone());
        }
        if self.certified {
            // A certified device connects as itself only once issued a certificate.
            return Err(TransportError::Local);
        }
        let secret = cx.shared.serial_key;
        let identity = match &self.fleet_ca {
            Some(ca) => {
                let serial = cx.serial();
                let made = pki::device_identity(ca, secret, &serial, self.key_type, self.not_after)
                    .map_err(|_| TransportError::Local)?;
                Some(match self.key_type {
                    // Derived again at each handshake (tens of microseconds) rather than kept
                    // in every connected device (about a kilobyte, most of it AWS-LC's).
                    KeyType::EcdsaP256 => {
                        let maker: KeyMaker =
                            Arc::new(move || pki::derived_p256_pkcs8(secret, &serial).map(PrivateKeyDer::Pkcs8));
                        ClientIdentity::Derived(made.cert, maker)
                    }
                    KeyType::Rsa2048 => ClientIdentity::Kept(made.cert, made.key),
                })
            }
            None => None,
        };
        let side = self.template.device(identity).map_err(|_| TransportError::Local)?;
        let held = Held {
            side: side.clone(),
            generation: 1,
            fresh: None,
        };
        lock(&self.devices).insert(cx.index, held);
        Ok(side)
    }
}

/// The validity device `cx` asks for in a certificate request, in real seconds (its model's,
/// simulated, over the time scale; at least one second); `None` when its model does not
/// say, for the CA's longest.
fn requested_validity_s(cx: &DeviceCx<'_>) -> Option<u64> {
    let renewal = cx.model.certificate.as_ref()?;
    let real = renewal.validity.as_secs_f64() / cx.shared.time_scale;
    // A model's validity is at most 397 days and the time scale at least 0.001: far inside u64.
    Some((real.ceil() as u64).max(1))
}

/// Locks one of the maps. A poisoned lock means another shard panicked mid-insert; the map is
/// still whole.
fn lock<T>(map: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    map.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Opens device `cx`'s MQTT session with `target`: over TLS when the dialect's devices speak
/// it (`tls`), else over TCP from the device's source address. The one place a dialect's
/// MQTT devices choose between the two, and where a subscription refused in the connect's
/// SUBACK is counted.
pub async fn mqtt_session(
    tls: Option<&DeviceTls>,
    cx: &DeviceCx<'_>,
    target: SocketAddr,
    params: ConnectParams<'_>,
) -> Result<(MqttConn, Greeting), TransportError> {
    let (conn, greeting) = match tls {
        Some(tls) => MqttConn::open(tls.connect(cx, target).await?, params).await?,
        None => MqttConn::connect(target, cx.source, params).await?,
    };
    if greeting.subscription_refused {
        cx.count(Counter::ErrorsSubscribeRefused);
    }
    Ok((conn, greeting))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialect::device_io::Shared;

    /// A certified fleet's TLS with `device_key`, trusting a CA written to a scratch folder.
    fn certified(device_key: DeviceKeyType) -> (DeviceTls, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("fleetsim-dialect-tls-{}-{device_key:?}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        pki::write_ca_folder(&dir, &["localhost".to_owned()], 1).expect("CA folder");
        let section = TlsSection {
            ca: Some(dir.join(pki::SERVER_CA_CERT).display().to_string()),
            server_name: None,
            fleet_ca: None,
            device_key: Some(device_key),
            resumption: None,
            versions: None,
            device_cert_not_after: None,
            credentials: Some(CredentialKind::Certificate),
        };
        (DeviceTls::new(&section, "localhost").expect("tls"), dir)
    }

    #[test]
    fn a_request_asked_again_before_its_answer_keeps_its_key() {
        let model = crate::scenario::parse_model(
            Path::new("m.toml"),
            "name = \"m\"\nprotocol = \"mqtt\"\nfirmware = \"1\"\n[telemetry]\ninterval = \"1m\"\npayload_bytes = 8\n",
        )
        .expect("model");
        let shared = Shared {
            meter: Default::default(),
            marks: Default::default(),
            images: Vec::new(),
            time_scale: 1.0,
            serial_key: 7,
            ..Shared::default()
        };
        let cx = DeviceCx {
            shared: &shared,
            index: 3,
            model: &model,
            group: "g",
            source: None,
        };
        // RSA keys are generated, not derived: a second key for the same request would not
        // match the certificate the first request brings. PKCS#1 v1.5 signatures are
        // deterministic, so the same key gives the same request.
        let (tls, dir) = certified(DeviceKeyType::Rsa2048);
        let first = tls.certificate_request(&cx).expect("a request");
        let again = tls.certificate_request(&cx).expect("asked again");
        assert_eq!(first, again, "the same RSA key, asked again");
        let _ = std::fs::remove_dir_all(dir);
        // A derived ECDSA key is the same for the same generation; its signatures are not.
        let (tls, dir) = certified(DeviceKeyType::EcdsaP256);
        let first = tls.certificate_request(&cx).expect("a request");
        let again = tls.certificate_request(&cx).expect("asked again");
        let key_of = |pem: &str| {
            use rcgen::PublicKeyData;
            rcgen::CertificateSigningRequestParams::from_pem(pem)
                .expect("a CSR")
                .public_key
                .der_bytes()
                .to_vec()
        };
        assert_eq!(key_of(&first), key_of(&again));
        assert_eq!(lock(&tls.requests).get(&3).map(|(generation, _)| *generation), Some(1));
        let _ = std::fs::remove_dir_all(dir);
    }
}
