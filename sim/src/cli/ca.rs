//! `fleetsim ca DIR`: writes a fleet CA, which issues each of fleetsim's devices its own
//! certificate at its first connect, and a server certificate from a server CA of its own, so
//! a broker can trust the fleet's devices and present a certificate they trust.

use std::io::Write;
use std::path::Path;

use crate::pki::{self, CA_CERT, SERVER_CA_CERT, SERVER_CERT, SERVER_KEY};

use super::{CliError, Exit};

/// Writes the CA folder and says how to use it.
pub fn ca(dir: &Path, server_names: &[String], days: u32, out: &mut dyn Write) -> Result<Exit, CliError> {
    if days == 0 {
        return Err(CliError::Usage("--days: expected 1 or more".to_owned()));
    }
    let written = pki::write_ca_folder(dir, server_names, days).map_err(|e| CliError::Usage(e.to_string()))?;
    for file in &written.files {
        writeln!(out, "wrote {}", file.display())?;
    }
    let at = |name: &str| dir.join(name).display().to_string();
    writeln!(out, "\nA broker (Mosquitto) that knows each device by its certificate:")?;
    writeln!(out, "  listener 8883")?;
    writeln!(out, "  cafile {}", at(CA_CERT))?;
    writeln!(out, "  certfile {}", at(SERVER_CERT))?;
    writeln!(out, "  keyfile {}", at(SERVER_KEY))?;
    writeln!(out, "  require_certificate true")?;
    writeln!(out, "  use_identity_as_username true")?;
    writeln!(
        out,
        "  set_tcp_nodelay true   # else each answer after the handshake waits for a delayed ACK (40 ms)"
    )?;
    writeln!(out, "\nThe scenario's side:")?;
    writeln!(out, "  [backend]")?;
    writeln!(out, "  kind = \"mqtt\"")?;
    writeln!(out, "  url = \"mqtts://127.0.0.1:8883\"")?;
    writeln!(out, "  [backend.tls]")?;
    writeln!(out, "  ca = \"{}\"", at(SERVER_CA_CERT))?;
    writeln!(out, "  fleet_ca = \"{}\"", dir.display())?;
    Ok(Exit::Ok)
}
