//! A standalone `fleetsim backend` started on free ports for a test and killed when dropped:
//! serving devices over TCP and TLS for the tests of its TLS listener ([`standalone`]), or on
//! whatever listeners a test asks for ([`process`]).
#![allow(dead_code)] // Each test file uses a different part.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A `fleetsim backend` process, killed when dropped.
pub struct Process {
    child: Child,
    /// The operator API, `IP:PORT`.
    pub http: String,
    /// The lines it printed once serving, the first (`mqtt ..., http ..., data ...`) included.
    pub lines: Vec<String>,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `fleetsim backend` on `data` with MQTT and HTTP on free ports and `args` besides,
/// and reads the first `lines` lines it prints once serving (where it listens).
pub fn process(data: &Path, args: &[&str], lines: usize) -> Process {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fleetsim"))
        .args(["backend", "--mqtt", "127.0.0.1:0", "--http", "127.0.0.1:0"])
        .args(args)
        .arg("--data")
        .arg(data)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("fleetsim backend starts");
    let stdout = child.stdout.take().expect("stdout");
    // Killed on drop from here, should a line not come.
    let mut process = Process {
        child,
        http: String::new(),
        lines: Vec::new(),
    };
    process.lines = BufReader::new(stdout)
        .lines()
        .take(lines)
        .map(|line| line.expect("text"))
        .collect();
    assert_eq!(process.lines.len(), lines, "the lines it prints once serving");
    process.http = process.lines[0]
        .split(", http ")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .expect("http")
        .to_owned();
    process
}

/// `curl` GET on a backend's operator API at `http` (`IP:PORT`), as JSON.
pub fn get(http: &str, path: &str) -> serde_json::Value {
    let out = Command::new("curl")
        .args(["-sf", "-m", "10", &format!("http://{http}{path}")])
        .output()
        .expect("curl runs (scripts/test installs it)");
    assert!(out.status.success(), "GET {path}: {out:?}");
    serde_json::from_slice(&out.stdout).expect("JSON")
}

/// A `fleetsim backend` serving devices over TLS too.
pub struct Standalone {
    /// The process, killed when dropped.
    process: Process,
    /// The TLS listener, `IP:PORT`.
    pub mqtts: String,
    /// The operator API, `IP:PORT`.
    pub http: String,
    /// The certificate of the CA devices trust for the server (`tls/server-ca.pem`), PEM.
    pub ca: String,
    /// The certificate of the CA that issues devices theirs (`tls/ca.pem`), PEM.
    pub fleet_ca: String,
}

/// Starts `fleetsim backend` on `data` with a TLS listener and a claim `factory` (secret
/// `s3cret`, group `sensors`), and reads where it listens from its first two lines.
pub fn standalone(data: &Path) -> Standalone {
    let process = process(
        data,
        &["--mqtts", "127.0.0.1:0", "--claim", "factory:s3cret:sensors"],
        2,
    );
    let rest = process.lines[1]
        .strip_prefix("fleetsim backend: mqtts ")
        .expect("the mqtts line");
    let (mqtts, ca) = rest.split_once(", ca ").expect("mqtts ADDR, ca PATH");
    Standalone {
        mqtts: mqtts.to_owned(),
        http: process.http.clone(),
        ca: ca.to_owned(),
        fleet_ca: data.join("tls/ca.pem").display().to_string(),
        process,
    }
}
