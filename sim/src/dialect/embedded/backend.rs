//! The reference backend a run drives: started in this process (the newcomer's default, on
//! its own runtime and thread, as it would run on its own machine), or running elsewhere
//! (`fleetsim backend`, found by its API URL).
//!
//! Either way the run creates one claim per scenario group through the operator API
//! (`fleetsim-{group}`, so devices land in their groups); the secret comes from the
//! scenario's `token_env` variable when it names one, else from the seed. The backend started
//! in process takes its secret key, and so its device ids, from the seed too: the same
//! scenario and seed give the same ids, and so the same campaign waves, in every run.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use fleetsim_backend::gateway::Limits;
use fleetsim_backend::gateway::stream::GatewayTls;
use fleetsim_backend::registry::{KEY_LEN, PskRoot, RegistryOptions};
use fleetsim_backend::{Backend, Listeners};
use serde_json::json;
use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;

use super::{Embedded, claim_name};
use crate::dialect::tls::DeviceTls;
use crate::dialect::{Hosted, StartError, Started, url_addr};
use crate::pki;
use crate::scenario::Scenario;
use crate::scenario::file::{BackendKind, TlsSection};
use crate::transport::http::{Method, request_json};

/// How a person runs the reference backend in a process of its own.
const OWN_PROCESS: &str = "`fleetsim backend`, then --backend http://...";

/// Starts the reference backend in this process, or finds the one the scenario names, and
/// creates the run's claims.
pub fn start(scenario: &Scenario, out: &Path) -> Result<Started<Embedded>, StartError> {
    let backend = &scenario.backend;
    let failed = |why: String| StartError::Backend(format!("embedded backend: {why}"));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| failed(e.to_string()))?;
    let (hosted, api, mqtt, lwm2m, tls, lwm2m_dtls) = match &backend.api {
        Some(api_url) => {
            let api = url_addr(api_url, "http://").ok_or_else(|| {
                StartError::Unsupported(format!(
                    "{api_url}: fleetsim run needs an IP address and port in an http:// api url so far"
                ))
            })?;
            // An LwM2M fleet's url names the backend's LwM2M front (its DTLS listener, with
            // [backend.psk]); an MQTT fleet's its gateway.
            let scheme = match (backend.kind, backend.tls.is_some(), backend.psk.is_some()) {
                (BackendKind::Lwm2m, _, false) => "coap://",
                (BackendKind::Lwm2m, _, true) => "coaps://",
                (_, true, _) => "mqtts://",
                (_, false, _) => "mqtt://",
            };
            let given = match backend.url.as_deref() {
                Some(url) => Some(
                    url_addr(url, scheme)
                        .ok_or_else(|| StartError::Unsupported(format!("{url}: expected {scheme}IP:PORT")))?,
                ),
                None => None,
            };
            let (mqtt, lwm2m, lwm2m_dtls) = match (backend.kind, given) {
                (BackendKind::Lwm2m, given) => {
                    let served = runtime.block_on(gateway_of(api))?;
                    match backend.psk {
                        Some(_) => (served.mqtt, served.lwm2m, given.or(served.lwm2m_dtls)),
                        None => (served.mqtt, given.or(served.lwm2m), None),
                    }
                }
                (_, Some(mqtt)) => (mqtt, None, None),
                (_, None) => {
                    let served = runtime.block_on(gateway_of(api))?;
                    (served.mqtt, served.lwm2m, None)
                }
            };
            let tls = match &backend.tls {
                Some(section) => Some(Arc::new(DeviceTls::new(section, &mqtt.ip().to_string())?)),
                None => None,
            };
            (None, api, mqtt, lwm2m, tls, lwm2m_dtls)
        }
        None => {
            let psk_root = match &backend.psk {
                Some(_) => Some(in_process_psk_root(scenario)?),
                None => None,
            };
            let started = start_in_process(runtime, out, scenario.seed, backend.tls.as_ref(), psk_root)?;
            (
                Some(started.hosted),
                started.api,
                started.mqtt,
                Some(started.lwm2m),
                started.tls,
                started.lwm2m_dtls,
            )
        }
    };
    let secret = claim_secret(scenario)?;
    let groups: Vec<&str> = scenario.fleet.mix.iter().map(|m| m.group.as_str()).collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| failed(e.to_string()))?;
    if let Err(e) = rt.block_on(ensure_claims(api, &groups, &secret)) {
        if let Some(hosted) = hosted {
            hosted.stop();
        }
        return Err(e);
    }
    Ok(Started {
        dialect: Embedded {
            mqtt,
            lwm2m,
            lwm2m_dtls,
            api,
            claim_secret: secret,
            tls,
        },
        hosted,
    })
}

/// A backend started in this process, and how the run reaches it.
struct InProcess {
    hosted: Hosted,
    api: SocketAddr,
    /// The gateway: its TLS listener when the scenario has `[backend.tls]`.
    mqtt: SocketAddr,
    lwm2m: SocketAddr,
    /// The LwM2M front's DTLS listener, when the scenario has `[backend.psk]`.
    lwm2m_dtls: Option<SocketAddr>,
    tls: Option<Arc<DeviceTls>>,
}

/// Starts the backend on loopback ports of its own: its API, its gateway (its TLS listener,
/// and how devices speak TLS to it, when the scenario has `[backend.tls]`: the run makes the
/// backend's CA and server certificate in its data folder) and its LwM2M front.
fn start_in_process(
    runtime: tokio::runtime::Runtime,
    out: &Path,
    seed: u64,
    tls: Option<&TlsSection>,
    psk_root: Option<PskRoot>,
) -> Result<InProcess, StartError> {
    let failed = |why: String| StartError::Backend(format!("embedded backend: {why}"));
    // Each run starts the in-process backend empty: a report folder used again must not
    // bring back the last run's devices (its decommissioned serials could not provision).
    let data = out.join("backend-data");
    match std::fs::remove_dir_all(&data) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(failed(format!("{}: {e}", data.display()))),
    }
    let options = RegistryOptions {
        new_key: Some(backend_key(seed)),
        ..RegistryOptions::default()
    };
    let backend = Backend::open_with(&data, Limits::default(), options).map_err(|e| failed(e.to_string()))?;
    let (mqtt, http, lwm2m) = runtime
        .block_on(async {
            let mqtt = TcpListener::bind("127.0.0.1:0").await?;
            let http = TcpListener::bind("127.0.0.1:0").await?;
            let lwm2m = UdpSocket::bind("127.0.0.1:0").await?;
            Ok::<_, std::io::Error>((mqtt, http, lwm2m))
        })
        .map_err(|e| failed(e.to_string()))?;
    let addrs = (mqtt.local_addr(), http.local_addr(), lwm2m.local_addr());
    let (Ok(mut mqtt_addr), Ok(api), Ok(lwm2m_addr)) = addrs else {
        return Err(failed("the listeners have no address".to_owned()));
    };
    let (mqtts, device_tls) = match tls {
        Some(section) => {
            let (config, ca) = gateway_tls(&data).map_err(failed)?;
            let listener = runtime
                .block_on(TcpListener::bind("127.0.0.1:0"))
                .map_err(|e| failed(e.to_string()))?;
            mqtt_addr = listener.local_addr().map_err(|e| failed(e.to_string()))?;
            let section = TlsSection {
                ca: Some(ca.display().to_string()),
                ..section.clone()
            };
            let device_tls = DeviceTls::new(&section, &mqtt_addr.ip().to_string())?;
            (Some((listener, config)), Some(Arc::new(device_tls)))
        }
        None => (None, None),
    };
    let lwm2m_dtls = match psk_root {
        Some(root) => {
            let socket = runtime
                .block_on(UdpSocket::bind("127.0.0.1:0"))
                .map_err(|e| failed(e.to_string()))?;
            Some((socket, Some(root)))
        }
        None => None,
    };
    let lwm2m_dtls_addr = match &lwm2m_dtls {
        Some((socket, _)) => Some(socket.local_addr().map_err(|e| failed(e.to_string()))?),
        None => None,
    };
    let stop = CancellationToken::new();
    let (serving, token) = (backend.clone(), stop.clone());
    let listeners = Listeners {
        mqtt,
        mqtts,
        lwm2m: Some(lwm2m),
        lwm2m_dtls,
        http,
    };
    let server = runtime.spawn(async move { serving.serve_on(listeners, token).await });
    let hosted = Hosted::new(format!("http://{api}"), OWN_PROCESS, move || {
        // The registry keeps its counts in memory: read before it closes.
        let active = backend.registry.counts().active;
        stop.cancel();
        let _ = runtime.block_on(server);
        drop(backend);
        Some(active)
    });
    Ok(InProcess {
        hosted,
        api,
        mqtt: mqtt_addr,
        lwm2m: lwm2m_addr,
        lwm2m_dtls: lwm2m_dtls_addr,
        tls: device_tls,
    })
}

/// The root of the in-process backend's LwM2M keys: the secret `[backend.psk] secret_env`
/// names, or, without one, the one the backend's own key (from the seed) gives. The devices
/// make their keys from the same root ([`super::super::lwm2m`]).
pub fn in_process_psk_root(scenario: &Scenario) -> Result<PskRoot, StartError> {
    match scenario.backend.psk.as_ref().and_then(|psk| psk.secret_env.as_deref()) {
        Some(name) => psk_secret(name).map(|secret| PskRoot::from_secret(secret.as_bytes())),
        None => Ok(PskRoot::from_registry_key(&backend_key(scenario.seed))),
    }
}

/// The value of environment variable `name`, which holds a PSK secret or key.
pub fn psk_secret(name: &str) -> Result<String, StartError> {
    std::env::var(name).map_err(|_| {
        StartError::Backend(format!(
            "[backend.psk]: environment variable {name} is not set; set it to the secret the server's keys come from"
        ))
    })
}

/// The in-process backend's secret key for a scenario's `seed`: SHA-256 of a domain tag and
/// the seed, so it is the same in every run and unlike any other key fleetsim derives.
fn backend_key(seed: u64) -> [u8; KEY_LEN] {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    hash.update(b"fleetsim in-process backend key\0");
    hash.update(seed.to_le_bytes());
    hash.finalize().into()
}

/// The TLS settings of the gateway's TLS listener, from the backend's `data/tls` folder
/// (written as `fleetsim ca` writes one, for localhost and 127.0.0.1, when it holds no server
/// certificate), and the CA devices trust for the server: `server-ca.pem`, or `ca.pem` in a
/// folder written before fleetsim kept the two apart (its server certificate is the fleet
/// CA's). The in-process backend's and `fleetsim backend --mqtts`'s.
pub fn gateway_tls(data: &Path) -> Result<(GatewayTls, PathBuf), String> {
    let folder = data.join("tls");
    if !folder.join(pki::SERVER_CERT).exists() {
        let names = ["localhost".to_owned(), "127.0.0.1".to_owned()];
        pki::write_ca_folder(&folder, &names, pki::DEFAULT_CA_DAYS).map_err(|e| e.to_string())?;
    }
    let (ca_cert, ca_key) = (folder.join(pki::CA_CERT), folder.join(pki::CA_KEY));
    let tls = GatewayTls::load(
        &folder.join(pki::SERVER_CERT),
        &folder.join(pki::SERVER_KEY),
        Some((&ca_cert, &ca_key)),
    )?;
    let server_ca = folder.join(pki::SERVER_CA_CERT);
    Ok((tls, if server_ca.exists() { server_ca } else { ca_cert }))
}

/// Where a reference backend serves devices, as its `/healthz` says.
struct Served {
    mqtt: SocketAddr,
    lwm2m: Option<SocketAddr>,
    lwm2m_dtls: Option<SocketAddr>,
}

/// Asks a reference backend's API where its device gateway listens, and its LwM2M front
/// (and that front's DTLS listener) when it serves one.
async fn gateway_of(api: SocketAddr) -> Result<Served, StartError> {
    let unreachable = |why: String| StartError::Backend(format!("embedded backend: http://{api}/healthz: {why}"));
    match request_json(api, Method::GET, "/healthz", None).await {
        Ok((200, health)) => {
            let lwm2m = health["lwm2m"].as_str().and_then(|a| a.parse().ok());
            let lwm2m_dtls = health["lwm2m_dtls"].as_str().and_then(|a| a.parse().ok());
            health["mqtt"]
                .as_str()
                .and_then(|a| a.parse().ok())
                .map(|mqtt| Served {
                    mqtt,
                    lwm2m,
                    lwm2m_dtls,
                })
                .ok_or_else(|| unreachable(format!("no gateway address in {health}; is this a fleetsim backend?")))
        }
        Ok((status, answer)) => Err(unreachable(format!("{status} {answer}"))),
        Err(e) => Err(unreachable(format!("{e}; is `fleetsim backend` running there?"))),
    }
}

/// Creates the run's claims, one per group; claims already there (a second run) are kept.
async fn ensure_claims(api: SocketAddr, groups: &[&str], secret: &str) -> Result<(), StartError> {
    for group in groups {
        let body = json!({ "name": claim_name(group), "secret": secret, "default_group": group });
        match request_json(api, Method::POST, "/api/v1/claims", Some(&body)).await {
            Ok((201 | 409, _)) => {}
            Ok((status, answer)) => {
                return Err(StartError::Backend(format!(
                    "embedded backend: creating claim {}: {status} {}",
                    claim_name(group),
                    answer["message"]
                )));
            }
            Err(e) => {
                return Err(StartError::Backend(format!(
                    "embedded backend: http://{api}/api/v1/claims: {e}"
                )));
            }
        }
    }
    Ok(())
}

/// The claims' secret: the `token_env` variable's value, or one drawn from the seed.
fn claim_secret(scenario: &Scenario) -> Result<String, StartError> {
    match &scenario.backend.token_env {
        Some(var) => std::env::var(var).map_err(|_| {
            StartError::Backend(format!(
                "embedded backend: {}: backend.token_env names {var}, which is not set; export {var}=<claim secret>",
                scenario.file.display()
            ))
        }),
        None => Ok(format!("run-{:016x}", scenario.seed ^ 0x5EC2_E7F1_EE75_1A00)),
    }
}
