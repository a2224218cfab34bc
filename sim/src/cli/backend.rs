//! `fleetsim backend`: runs the reference backend standalone until Ctrl-C or SIGTERM.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::str::FromStr;

use fleetsim_backend::gateway::Limits;
use fleetsim_backend::registry::Refusal;
use fleetsim_backend::{Backend, Listeners};
use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;

use super::{CliError, Exit};
use crate::dialect::embedded::backend::gateway_tls;

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
    /// MQTT over TLS listen address, if devices may connect over TLS.
    pub mqtts: Option<SocketAddr>,
    /// LwM2M (CoAP over UDP) listen address, if LwM2M devices may register.
    pub lwm2m: Option<SocketAddr>,
    /// LwM2M over DTLS with a pre-shared key, if devices may come so (with `lwm2m`).
    pub lwm2m_dtls: Option<SocketAddr>,
    /// The secret devices' keys are made from (the registry's key's when `None`).
    pub lwm2m_psk_secret: Option<&'a str>,
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
    // Every device connection is a descriptor: take all the process may have, and say how
    // many connections that allows.
    let open_files = crate::engine::open_files::raise();
    if let (Some(connections), Some(soft)) = (open_files.connections(), open_files.soft) {
        eprintln!("fleetsim backend: room for about {connections} connections (open-file limit {soft})");
    }
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
    let mqtts = match args.mqtts {
        Some(addr) => {
            let (config, ca) = gateway_tls(args.data).map_err(CliError::Backend)?;
            Some((bind(addr, "MQTT over TLS").await?, config, ca))
        }
        None => None,
    };
    let lwm2m = match args.lwm2m {
        Some(addr) => Some(
            UdpSocket::bind(addr)
                .await
                .map_err(|e| CliError::Backend(format!("cannot listen for LwM2M on {addr}: {e}")))?,
        ),
        None => None,
    };
    let lwm2m_dtls = match (args.lwm2m_dtls, &lwm2m) {
        (Some(addr), Some(_)) => Some((
            UdpSocket::bind(addr)
                .await
                .map_err(|e| CliError::Backend(format!("cannot listen for LwM2M over DTLS on {addr}: {e}")))?,
            args.lwm2m_psk_secret
                .map(|secret| fleetsim_backend::registry::PskRoot::from_secret(secret.as_bytes())),
        )),
        (Some(_), None) => {
            return Err(CliError::Usage(
                "--lwm2m-dtls serves the LwM2M front over DTLS: give --lwm2m as well".to_owned(),
            ));
        }
        (None, _) => None,
    };
    let (mqtt_addr, http_addr) = (mqtt.local_addr()?, http.local_addr()?);
    writeln!(
        out,
        "fleetsim backend: mqtt {mqtt_addr}, http {http_addr}, data {}",
        args.data.display()
    )?;
    if let Some((listener, _, ca)) = &mqtts {
        writeln!(
            out,
            "fleetsim backend: mqtts {}, ca {}",
            listener.local_addr()?,
            ca.display()
        )?;
    }
    if let Some(socket) = &lwm2m {
        writeln!(out, "fleetsim backend: lwm2m {}", socket.local_addr()?)?;
    }
    if let Some((socket, _)) = &lwm2m_dtls {
        writeln!(out, "fleetsim backend: lwm2m over DTLS {}", socket.local_addr()?)?;
    }
    out.flush()?;

    let shutdown = CancellationToken::new();
    let signal = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        signal.cancel();
    });
    let mqtts = mqtts.map(|(listener, config, _)| (listener, config));
    let listeners = Listeners {
        mqtt,
        mqtts,
        lwm2m,
        lwm2m_dtls,
        http,
    };
    backend.serve_on(listeners, shutdown).await?;
    Ok(Exit::Ok)
}

/// The line `fleetsim backend` prints once it serves: the addresses it bound, so tools (and
/// tests) that start it on port 0 learn where it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ready {
    /// Where devices connect.
    pub mqtt: SocketAddr,
    /// Where the operator API listens.
    pub http: SocketAddr,
}

impl Ready {
    /// `fleetsim backend: mqtt ADDR, http ADDR, data DIR`.
    pub fn line(&self, data: &Path) -> String {
        format!(
            "fleetsim backend: mqtt {}, http {}, data {}",
            self.mqtt,
            self.http,
            data.display()
        )
    }

    /// Reads the addresses back from [`Ready::line`]'s output.
    pub fn parse(line: &str) -> Option<Self> {
        let rest = line.trim().strip_prefix("fleetsim backend: mqtt ")?;
        let (mqtt, rest) = rest.split_once(", http ")?;
        let (http, _) = rest.split_once(", data ")?;
        Some(Self {
            mqtt: mqtt.parse().ok()?,
            http: http.parse().ok()?,
        })
    }
}

/// A standalone backend running as a child process (`fleetsim backend` on free loopback
/// ports), for benchmarks and tests that must kill it or measure it apart from themselves.
#[derive(Debug)]
pub struct Standalone {
    /// The process; `kill` sends SIGKILL.
    pub child: std::process::Child,
    /// Where it listens.
    pub ready: Ready,
}

impl Standalone {
    /// Starts `exe backend` over `data` with `claims` (`NAME:SECRET[:GROUP]`) on free
    /// loopback ports and waits for its ready line.
    pub fn spawn(exe: &Path, data: &Path, claims: &[&str]) -> std::io::Result<Self> {
        let any = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        Self::spawn_on(exe, data, claims, any, any)
    }

    /// Starts `exe backend` listening on `mqtt` and `http` (to start one again where it was).
    pub fn spawn_on(
        exe: &Path,
        data: &Path,
        claims: &[&str],
        mqtt: std::net::SocketAddr,
        http: std::net::SocketAddr,
    ) -> std::io::Result<Self> {
        use std::io::BufRead as _;
        let mut command = std::process::Command::new(exe);
        command
            .arg("backend")
            .arg("--mqtt")
            .arg(mqtt.to_string())
            .arg("--http")
            .arg(http.to_string())
            .arg("--data")
            .arg(data);
        for claim in claims {
            command.args(["--claim", claim]);
        }
        let mut child = command.stdout(std::process::Stdio::piped()).spawn()?;
        let stdout = child.stdout.take().ok_or_else(|| std::io::Error::other("no stdout"))?;
        let mut line = String::new();
        std::io::BufReader::new(stdout).read_line(&mut line)?;
        match Ready::parse(&line) {
            Some(ready) => Ok(Self { child, ready }),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                Err(std::io::Error::other(format!(
                    "fleetsim backend did not start: {line:?}"
                )))
            }
        }
    }

    /// Stops it with SIGKILL (no shutdown path runs) and reaps it.
    pub fn kill(&mut self) -> std::io::Result<()> {
        self.child.kill()?;
        self.child.wait().map(|_| ())
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ready_line_round_trips() {
        let ready = Ready {
            mqtt: "127.0.0.1:1883".parse().expect("addr"),
            http: "127.0.0.1:8080".parse().expect("addr"),
        };
        let line = ready.line(Path::new("/tmp/a, data b"));
        assert_eq!(
            line,
            "fleetsim backend: mqtt 127.0.0.1:1883, http 127.0.0.1:8080, data /tmp/a, data b"
        );
        assert_eq!(Ready::parse(&line), Some(ready));
        assert_eq!(Ready::parse("something else"), None);
    }

    #[test]
    fn claims_parse_with_an_optional_group() {
        let claim: ClaimArg = "factory:s3cret".parse().expect("valid");
        assert_eq!(claim.group, "default");
        let claim: ClaimArg = "factory:s3:cret:x".parse().expect("valid");
        assert_eq!((claim.secret.as_str(), claim.group.as_str()), ("s3", "cret:x"));
        assert!("factory".parse::<ClaimArg>().is_err());
        assert!(":s3cret".parse::<ClaimArg>().is_err());
    }
}
