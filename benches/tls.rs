//! What a device's TLS costs the harness: making its identity (key and certificate from the
//! fleet CA) at its first connect, and the device's side of a mutual-TLS handshake, full and
//! resumed, against a rustls server in memory (the server's CPU is not counted: only the time
//! spent in the client's calls); and the reference backend's side of a certificate request
//! (checking a device's CSR, signing its certificate), which bounds how fast it provisions by
//! CSR and rotates. Run: `cargo bench -p fleetsim --bench tls`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use fleetsim::pki::{self, FleetCa, KeyType};
use fleetsim::transport::tls::{ClientIdentity, ClientTemplate, DeviceSide, KeyMaker, Version, driving};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, ClientConnection, HandshakeKind, RootCertStore, ServerConfig, ServerConnection};
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};

fn ca() -> (FleetCa, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("fleetsim-bench-tls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    pki::write_ca_folder(&dir, &["localhost".to_owned()], 30).expect("CA folder");
    (FleetCa::load(&dir).expect("CA"), dir)
}

fn identities(c: &mut Criterion) {
    let (ca, dir) = ca();
    let mut group = c.benchmark_group("device_identity");
    let mut n = 0u64;
    group.bench_function("ecdsa-p256", |b| {
        b.iter(|| {
            n += 1;
            black_box(pki::device_identity(&ca, 7, &format!("SN-{n}"), KeyType::EcdsaP256, None).expect("identity"))
        });
    });
    group.sample_size(10);
    group.bench_function("rsa-2048", |b| {
        b.iter(|| {
            n += 1;
            black_box(pki::device_identity(&ca, 7, &format!("SN-{n}"), KeyType::Rsa2048, None).expect("identity"))
        });
    });
    group.finish();
    let _ = std::fs::remove_dir_all(dir);
}

/// A server that requires client certificates from `ca`, with the certificate in `dir`.
fn server(ca: &FleetCa, dir: &std::path::Path) -> Arc<ServerConfig> {
    use rustls_pki_types::pem::PemObject;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = RootCertStore::empty();
    roots.add(ca.cert.clone()).expect("root");
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .expect("verifier");
    let cert = rustls_pki_types::CertificateDer::from_pem_file(dir.join(pki::SERVER_CERT)).expect("server cert");
    let key = PrivateKeyDer::from_pem_file(dir.join(pki::SERVER_KEY)).expect("server key");
    Arc::new(
        ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_client_cert_verifier(verifier)
            .with_single_cert(vec![cert], key)
            .expect("server config"),
    )
}

/// Runs one handshake of `device` in memory (the fleet's config `client_config`), checks that
/// it resumed (or not) as `resumed` says; the time spent in the client's calls.
fn handshake(
    client_config: &Arc<ClientConfig>,
    device: &Arc<DeviceSide>,
    server_config: &Arc<ServerConfig>,
    resumed: bool,
) -> Duration {
    driving(device, || handshake_driven(client_config, server_config, resumed))
}

fn handshake_driven(client_config: &Arc<ClientConfig>, server_config: &Arc<ServerConfig>, resumed: bool) -> Duration {
    let name = ServerName::try_from("localhost").expect("name");
    let mut client_time = Duration::ZERO;
    let started = Instant::now();
    let mut client = ClientConnection::new(client_config.clone(), name).expect("client");
    client_time += started.elapsed();
    let mut server = ServerConnection::new(server_config.clone()).expect("server");
    let mut wire = Vec::new();
    for _ in 0..8 {
        wire.clear();
        let started = Instant::now();
        while client.wants_write() {
            client.write_tls(&mut wire).expect("client writes");
        }
        client_time += started.elapsed();
        let mut read = &wire[..];
        while !read.is_empty() {
            server.read_tls(&mut read).expect("server reads");
        }
        server.process_new_packets().expect("server accepts");
        wire.clear();
        while server.wants_write() {
            server.write_tls(&mut wire).expect("server writes");
        }
        let started = Instant::now();
        let mut read = &wire[..];
        while !read.is_empty() {
            client.read_tls(&mut read).expect("client reads");
        }
        client.process_new_packets().expect("client accepts");
        client_time += started.elapsed();
        if !client.is_handshaking() && !server.is_handshaking() && !client.wants_write() {
            break;
        }
    }
    assert!(!client.is_handshaking(), "the handshake finished");
    assert_eq!(client.handshake_kind() == Some(HandshakeKind::Resumed), resumed);
    client_time
}

fn handshakes(c: &mut Criterion) {
    let (ca, dir) = ca();
    let server_config = server(&ca, &dir);
    let mut roots = RootCertStore::empty();
    use rustls_pki_types::pem::PemObject;
    let server_ca = rustls_pki_types::CertificateDer::from_pem_file(dir.join(pki::SERVER_CA_CERT)).expect("server CA");
    roots.add(server_ca).expect("root");
    let versions = [Version::Tls12, Version::Tls13];
    let fresh = ClientTemplate::new(roots.clone(), &versions, false).expect("template");
    let resuming = ClientTemplate::new(roots, &versions, true).expect("template");
    let (fresh_config, resuming_config) = (fresh.device_config(), resuming.device_config());
    let mut group = c.benchmark_group("device_handshake");
    for (label, key_type) in [("ecdsa-p256", KeyType::EcdsaP256), ("rsa-2048", KeyType::Rsa2048)] {
        let made = pki::device_identity(&ca, 7, "SN-1", key_type, None).expect("identity");
        let key = match &made.key {
            PrivateKeyDer::Pkcs8(der) => {
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(der.secret_pkcs8_der().to_vec()))
            }
            other => other.clone_key(),
        };
        let full = fresh
            .device(Some(ClientIdentity::Kept(made.cert.clone(), made.key)))
            .expect("device");
        group.bench_function(format!("full/{label}"), |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| handshake(&fresh_config, &full, &server_config, false))
                    .sum()
            })
        });
        let resumed = resuming
            .device(Some(ClientIdentity::Kept(made.cert, key)))
            .expect("device");
        // The first connect is full; it leaves the ticket every later one resumes with.
        handshake(&resuming_config, &resumed, &server_config, false);
        group.bench_function(format!("resumed/{label}"), |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| handshake(&resuming_config, &resumed, &server_config, true))
                    .sum()
            })
        });
    }
    // As fleetsim's ECDSA devices run: the key derived again at each full handshake.
    let made = pki::device_identity(&ca, 7, "SN-1", KeyType::EcdsaP256, None).expect("identity");
    let maker: KeyMaker = Arc::new(|| pki::derived_p256_pkcs8(7, "SN-1").map(PrivateKeyDer::Pkcs8));
    let derived = fresh
        .device(Some(ClientIdentity::Derived(made.cert, maker)))
        .expect("device");
    group.bench_function("full/ecdsa-p256-derived-key", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| handshake(&fresh_config, &derived, &server_config, false))
                .sum()
        })
    });
    group.finish();
    let _ = std::fs::remove_dir_all(dir);
}

/// The gateway's work for one certificate request: the CSR checked (parsed, its signature
/// verified, its key and subject checked), then a certificate signed by the backend's CA (an
/// ECDSA P-256 CA, as `fleetsim ca` and the backend make), for a device key of each type.
fn gateway_csr(c: &mut Criterion) {
    use fleetsim_backend::certs::{CertAuthority, check_csr};
    let (_, dir) = ca();
    let authority = CertAuthority::load(&dir.join(pki::CA_CERT), &dir.join(pki::CA_KEY)).expect("CA");
    let mut group = c.benchmark_group("gateway_csr");
    for (label, key_type) in [("ecdsa-p256", KeyType::EcdsaP256), ("rsa-2048", KeyType::Rsa2048)] {
        let (key, _) = pki::request_key(7, "SN-1", 2, key_type).expect("key");
        let csr = pki::certificate_request(&key, "SN-1").expect("CSR");
        group.bench_function(format!("check/{label}"), |b| {
            b.iter(|| black_box(check_csr(&csr, "SN-1").expect("a good CSR")));
        });
        let checked = check_csr(&csr, "SN-1").expect("a good CSR");
        group.bench_function(format!("sign/{label}"), |b| {
            b.iter(|| {
                black_box(
                    authority
                        .issue(
                            &checked,
                            "d-1",
                            Duration::from_secs(86_400),
                            std::time::SystemTime::now(),
                        )
                        .expect("issued"),
                )
            });
        });
    }
    group.finish();
    let _ = std::fs::remove_dir_all(dir);
}

criterion_group!(benches, identities, handshakes, gateway_csr);
criterion_main!(benches);
