//! A standalone `fleetsim backend` serving devices over TCP and TLS, started on free ports
//! for a test and killed when dropped; shared by the tests of its TLS listener.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A `fleetsim backend` process, killed when dropped.
pub struct Standalone {
    child: Child,
    /// The TLS listener, `IP:PORT`.
    pub mqtts: String,
    /// The operator API, `IP:PORT`.
    pub http: String,
    /// The backend CA's certificate, PEM.
    pub ca: String,
}

impl Drop for Standalone {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `fleetsim backend` on `data` with a claim `factory` (secret `s3cret`, group
/// `sensors`), and reads where it listens from its first two lines.
pub fn standalone(data: &Path) -> Standalone {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fleetsim"))
        .args([
            "backend",
            "--mqtt",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--mqtts",
            "127.0.0.1:0",
        ])
        .args(["--claim", "factory:s3cret:sensors", "--data"])
        .arg(data)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("fleetsim backend starts");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let first = lines.next().expect("a line").expect("text");
    let second = lines.next().expect("a second line").expect("text");
    let http = first
        .split(", http ")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .expect("http");
    let rest = second.strip_prefix("fleetsim backend: mqtts ").expect("the mqtts line");
    let (mqtts, ca) = rest.split_once(", ca ").expect("mqtts ADDR, ca PATH");
    Standalone {
        mqtts: mqtts.to_owned(),
        http: http.to_owned(),
        ca: ca.to_owned(),
        child,
    }
}
