//! `fleetsim backend`: runs the reference backend standalone until Ctrl-C or SIGTERM.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::str::FromStr;

use fleetsim_backend::Backend;
use fleetsim_backend::gateway::Limits;
use fleetsim_backend::registry::Refusal;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::{CliError, Exit};

/// A claim to create at start: `NAME:SECRET[:GROUP]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimArg {
    /// Claim name.
    pub name: String,
    /// Claim secret.
    pub secret: String,
    /// Group its devices join.
    pub group: String,
}

impl FromStr for ClaimArg {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let mut parts = text.splitn(3, ':');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(name), Some(secret), group) if !name.is_empty() && !secret.is_empty() => Ok(Self {
                name: name.to_owned(),
                secret: secret.to_owned(),
                group: group.unwrap_or("default").to_owned(),
            }),
            _ => Err(format!("expected NAME:SECRET or NAME:SECRET:GROUP, found \"{text}\"")),
        }
    }
}

/// Where the backend listens and keeps its data.
#[derive(Debug, Clone)]
pub struct BackendArgs<'a> {
    /// Data folder (registry, secret key).
    pub data: &'a Path,
    /// MQTT listen address.
    pub mqtt: SocketAddr,
    /// HTTP listen address.
    pub http: SocketAddr,
    /// Claims to create if missing.
    pub claims: &'a [ClaimArg],
}

/// Runs the backend; prints one line with the bound addresses once it is serving.
pub fn backend(args: &BackendArgs<'_>, out: &mut dyn Write) -> Result<Exit, CliError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Backend(format!("cannot start the runtime: {e}")))?;
    runtime.block_on(run(args, out))
}

async fn run(args: &BackendArgs<'_>, out: &mut dyn Write) -> Result<Exit, CliError> {
    let backend = Backend::open(args.data, Limits::default())
        .map_err(|e| CliError::Backend(format!("{}: {e}", args.data.display())))?;
    for claim in args.claims {
        match backend
            .registry
            .create_claim(&claim.name, &claim.secret, &claim.group)
            .await
        {
            Ok(Ok(())) | Ok(Err(Refusal::AlreadyExists)) => {}
            Ok(Err(refusal)) => return Err(CliError::Backend(format!("claim \"{}\": {refusal}", claim.name))),
            Err(e) => return Err(CliError::Backend(format!("claim \"{}\": {e}", claim.name))),
        }
    }
    let bind = |addr: SocketAddr, what: &'static str| async move {
        TcpListener::bind(addr)
            .await
            .map_err(|e| CliError::Backend(format!("cannot listen for {what} on {addr}: {e}")))
    };
    let mqtt = bind(args.mqtt, "MQTT").await?;
    let http = bind(args.http, "HTTP").await?;
    let (mqtt_addr, http_addr) = (mqtt.local_addr()?, http.local_addr()?);
    writeln!(
        out,
        "fleetsim backend: mqtt {mqtt_addr}, http {http_addr}, data {}",
        args.data.display()
    )?;
    out.flush()?;

    let shutdown = CancellationToken::new();
    let signal = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        signal.cancel();
    });
    backend.serve(mqtt, http, shutdown).await?;
    Ok(Exit::Ok)
}

/// Ctrl-C or SIGTERM.
async fn wait_for_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        // Without a SIGTERM handler Ctrl-C still stops the server.
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
