//! What a run drives: the reference backend started in this process, a reference backend
//! running elsewhere (`fleetsim backend`, found by its API URL), or any MQTT broker.
//!
//! For the reference backend, in process or not, the run creates one claim per scenario group
//! through the operator API (`fleetsim-{group}`, so devices land in their groups); the secret
//! comes from the scenario's `token_env` variable when it names one, else from the seed.

use std::net::SocketAddr;
use std::path::Path;

use fleetsim_backend::Backend;
use fleetsim_backend::gateway::Limits;
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::run::RunError;
use crate::dialect::Dialect;
use crate::dialect::embedded::{Embedded, claim_name};
use crate::dialect::hawkbit::{DdiAuth, Hawkbit, Management};
use crate::dialect::mqtt::{Broker, DEFAULT_COMMAND_TOPIC, DEFAULT_TELEMETRY_TOPIC};
use crate::scenario::Scenario;
use crate::scenario::file::BackendKind;
use crate::scenario::file::DeviceAuth;
use crate::transport::http::{Method, request_json};

/// The backend of a run.
pub struct Target {
    /// How devices reach it.
    pub dialect: Dialect,
    /// The operator API, when the backend has one.
    pub api: Option<SocketAddr>,
    embedded: Option<InProcess>,
}

/// The in-process reference backend, on its own runtime and thread, as it would run on its
/// own machine.
struct InProcess {
    runtime: tokio::runtime::Runtime,
    backend: Backend,
    stop: CancellationToken,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Target {
    /// Starts or finds the scenario's backend and prepares it (claims).
    pub fn start(scenario: &Scenario, out: &Path) -> Result<Self, RunError> {
        let backend = &scenario.backend;
        if backend.kind == BackendKind::Hawkbit {
            return Self::hawkbit(scenario);
        }
        if backend.kind == BackendKind::Mqtt {
            let url = backend.url.as_deref().unwrap_or_default();
            let addr = url_addr(url, "mqtt://").ok_or_else(|| {
                RunError::Unsupported(format!(
                    "{url}: fleetsim run needs an IP address and port in an mqtt:// url so far"
                ))
            })?;
            let cluster = backend
                .cluster
                .iter()
                .map(|node| {
                    url_addr(node, "mqtt://").ok_or_else(|| {
                        RunError::Unsupported(format!(
                            "{node}: fleetsim run needs an IP address and port in an mqtt:// url so far"
                        ))
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let telemetry_topic = backend
                .telemetry_topic
                .clone()
                .unwrap_or_else(|| DEFAULT_TELEMETRY_TOPIC.to_owned());
            return Ok(Self {
                dialect: Dialect::Mqtt(Broker {
                    addr,
                    cluster,
                    telemetry_topic,
                    command_topic: backend
                        .command_topic
                        .clone()
                        .unwrap_or_else(|| DEFAULT_COMMAND_TOPIC.to_owned()),
                }),
                api: None,
                embedded: None,
            });
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(|e| RunError::Backend(e.to_string()))?;
        let (embedded, api, mqtt) = match &backend.api {
            Some(api_url) => {
                let api = url_addr(api_url, "http://").ok_or_else(|| {
                    RunError::Unsupported(format!(
                        "{api_url}: fleetsim run needs an IP address and port in an http:// api url so far"
                    ))
                })?;
                let mqtt = match backend.url.as_deref() {
                    Some(url) => url_addr(url, "mqtt://")
                        .ok_or_else(|| RunError::Unsupported(format!("{url}: expected mqtt://IP:PORT")))?,
                    None => runtime.block_on(gateway_of(api))?,
                };
                (None, api, mqtt)
            }
            None => {
                let started = start_in_process(runtime, out)?;
                let (api, mqtt) = (started.1, started.2);
                (Some(started.0), api, mqtt)
            }
        };
        let secret = claim_secret(scenario)?;
        let groups: Vec<&str> = scenario.fleet.mix.iter().map(|m| m.group.as_str()).collect();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| RunError::Backend(e.to_string()))?;
        rt.block_on(ensure_claims(api, &groups, &secret))?;
        Ok(Self {
            dialect: Dialect::Embedded(Embedded {
                mqtt,
                api,
                claim_secret: secret,
            }),
            api: Some(api),
            embedded,
        })
    }

    /// A hawkBit DDI server: device tokens from the scenario's secret, and with a management
    /// API, the operator logged in to it.
    fn hawkbit(scenario: &Scenario) -> Result<Self, RunError> {
        let backend = &scenario.backend;
        let file = scenario.file.display();
        let url = backend.url.as_deref().unwrap_or_default();
        let addr = url_addr(url, "http://").ok_or_else(|| {
            RunError::Unsupported(format!(
                "{file}: {url}: fleetsim run needs an IP address and port in an http:// url so far"
            ))
        })?;
        let settings = backend.ddi.clone().unwrap_or(crate::scenario::typed::DdiSettings {
            tenant: "DEFAULT".to_owned(),
            device_auth: DeviceAuth::None,
            user_env: None,
            password_env: None,
        });
        let auth = match settings.device_auth {
            DeviceAuth::TargetToken => DdiAuth::TargetToken(
                env_value(scenario, "token_env", backend.token_env.as_deref())?
                    .into_bytes()
                    .into(),
            ),
            DeviceAuth::GatewayToken => {
                DdiAuth::GatewayToken(env_value(scenario, "token_env", backend.token_env.as_deref())?.into())
            }
            DeviceAuth::None => DdiAuth::None,
        };
        let management = match &backend.api {
            Some(api_url) => {
                let api = url_addr(api_url, "http://").ok_or_else(|| {
                    RunError::Unsupported(format!(
                        "{file}: {api_url}: fleetsim run needs an IP address and port in an http:// api url so far"
                    ))
                })?;
                let user = env_value(scenario, "user_env", settings.user_env.as_deref())?;
                let password = env_value(scenario, "password_env", settings.password_env.as_deref())?;
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| RunError::Target(e.to_string()))?;
                let authorization = rt
                    .block_on(crate::engine::operator_ddi::login(api, &user, &password))
                    .map_err(RunError::Target)?;
                Some(Management {
                    addr: api,
                    authorization: authorization.into(),
                })
            }
            None => None,
        };
        let api = management.as_ref().map(|m| m.addr);
        Ok(Self {
            dialect: Dialect::Hawkbit(Hawkbit {
                addr,
                tenant: settings.tenant.into(),
                auth,
                management,
                imposed: Default::default(),
            }),
            api,
            embedded: None,
        })
    }

    /// Stops the in-process backend, if any.
    pub fn stop(self) {
        if let Some(embedded) = self.embedded {
            embedded.stop.cancel();
            let _ = embedded.runtime.block_on(embedded.server);
            drop(embedded.backend);
        }
    }

    /// Whether the backend runs in this process.
    pub fn in_process(&self) -> bool {
        self.embedded.is_some()
    }
}

fn start_in_process(
    runtime: tokio::runtime::Runtime,
    out: &Path,
) -> Result<(InProcess, SocketAddr, SocketAddr), RunError> {
    // Each run starts the in-process backend empty: a report folder used again must not
    // bring back the last run's devices (its decommissioned serials could not provision).
    let data = out.join("backend-data");
    match std::fs::remove_dir_all(&data) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(RunError::Backend(format!("{}: {e}", data.display()))),
    }
    let backend = Backend::open(&data, Limits::default()).map_err(|e| RunError::Backend(e.to_string()))?;
    let (mqtt, http) = runtime.block_on(async {
        let mqtt = TcpListener::bind("127.0.0.1:0").await?;
        let http = TcpListener::bind("127.0.0.1:0").await?;
        Ok::<_, std::io::Error>((mqtt, http))
    })?;
    let (mqtt_addr, api) = (mqtt.local_addr()?, http.local_addr()?);
    let stop = CancellationToken::new();
    let (serving, token) = (backend.clone(), stop.clone());
    let server = runtime.spawn(async move { serving.serve(mqtt, http, token).await });
    let embedded = InProcess {
        runtime,
        backend,
        stop,
        server,
    };
    Ok((embedded, api, mqtt_addr))
}

/// Asks a reference backend's API where its device gateway listens.
async fn gateway_of(api: SocketAddr) -> Result<SocketAddr, RunError> {
    let unreachable = |why: String| RunError::Backend(format!("http://{api}/healthz: {why}"));
    match request_json(api, Method::GET, "/healthz", None).await {
        Ok((200, health)) => health["mqtt"]
            .as_str()
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| unreachable(format!("no gateway address in {health}; is this a fleetsim backend?"))),
        Ok((status, answer)) => Err(unreachable(format!("{status} {answer}"))),
        Err(e) => Err(unreachable(format!("{e}; is `fleetsim backend` running there?"))),
    }
}

/// Creates the run's claims, one per group; claims already there (a second run) are kept.
async fn ensure_claims(api: SocketAddr, groups: &[&str], secret: &str) -> Result<(), RunError> {
    for group in groups {
        let body = json!({ "name": claim_name(group), "secret": secret, "default_group": group });
        match request_json(api, Method::POST, "/api/v1/claims", Some(&body)).await {
            Ok((201 | 409, _)) => {}
            Ok((status, answer)) => {
                return Err(RunError::Backend(format!(
                    "creating claim {}: {status} {}",
                    claim_name(group),
                    answer["message"]
                )));
            }
            Err(e) => return Err(RunError::Backend(format!("http://{api}/api/v1/claims: {e}"))),
        }
    }
    Ok(())
}

/// The claims' secret: the `token_env` variable's value, or one drawn from the seed.
fn claim_secret(scenario: &Scenario) -> Result<String, RunError> {
    match &scenario.backend.token_env {
        Some(var) => std::env::var(var).map_err(|_| {
            RunError::Backend(format!(
                "{}: backend.token_env names {var}, which is not set; export {var}=<claim secret>",
                scenario.file.display()
            ))
        }),
        None => Ok(format!("run-{:016x}", scenario.seed ^ 0x5EC2_E7F1_EE75_1A00)),
    }
}

/// The value of the environment variable the scenario's `backend.<key>` names.
fn env_value(scenario: &Scenario, key: &str, var: Option<&str>) -> Result<String, RunError> {
    let file = scenario.file.display();
    let Some(var) = var else {
        return Err(RunError::Target(format!(
            "{file}: backend.{key} is missing: name the environment variable that holds it"
        )));
    };
    match std::env::var(var) {
        Ok(value) if !value.is_empty() => Ok(value),
        _ => Err(RunError::Target(format!(
            "{file}: backend.{key} names {var}, which is not set; export {var}=... before the run"
        ))),
    }
}

/// `SCHEME://IP:PORT[/...]` to a socket address.
pub fn url_addr(url: &str, scheme: &str) -> Option<SocketAddr> {
    url.strip_prefix(scheme)?.split('/').next()?.parse().ok()
}
