//! lwm2m-node-lib 1.4.0 (npm), a real LwM2M 1.0 server nobody here wrote, through the small
//! Node wrapper in `sim/tests/lwm2m-node/server.js`: started on a free UDP port for one test,
//! driven over JSON lines (its events and answers on stdout, commands on stdin), stopped when
//! dropped. `scripts/test` installs the library into `target/test-deps/lwm2m-node`; a missing
//! library fails the test, never skips it.

#![allow(dead_code)] // Each test file uses a different part.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// Where `scripts/test` installs the library.
pub fn modules() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-deps/lwm2m-node/node_modules")
}

/// The wrapper, on a free port, stopped when dropped.
pub struct NodeServer {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<Value>,
    /// Events (lines with an `event`) read so far.
    pub events: Vec<Value>,
    next_id: u64,
    /// The UDP port it listens on.
    pub port: u16,
}

impl NodeServer {
    /// Starts the wrapper and waits for it to listen.
    pub fn start() -> Self {
        let modules = modules();
        assert!(
            modules.join("lwm2m-node-lib").exists(),
            "lwm2m-node-lib is needed in {}; scripts/test installs it (npm ci)",
            modules.display()
        );
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lwm2m-node/server.js");
        let mut child = Command::new("node")
            .arg(&script)
            .args(["--port", "0", "--timeout-ms", "5000"])
            .env("NODE_PATH", &modules)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node runs (scripts/test installs nodejs)");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let value = serde_json::from_str(&line).unwrap_or_else(|_| json!({"event": "garbage", "line": line}));
                if tx.send(value).is_err() {
                    break;
                }
            }
        });
        let mut server = Self {
            child,
            stdin,
            lines,
            events: Vec::new(),
            next_id: 1,
            port: 0,
        };
        let listening = server.wait_event(Duration::from_secs(20), |e| e["event"] == "listening");
        server.port = u16::try_from(listening["port"].as_u64().expect("a port")).expect("a port");
        server
    }

    /// Reads lines until one event matches `found`, keeping every event; panics after `limit`.
    pub fn wait_event(&mut self, limit: Duration, found: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + limit;
        if let Some(event) = self.events.iter().find(|e| found(e)) {
            return event.clone();
        }
        loop {
            let line = self.next_line(deadline);
            assert!(line.get("event").is_some(), "an answer nobody waits for: {line}");
            assert_ne!(line["event"], "error", "the wrapper failed: {line}");
            self.events.push(line.clone());
            if found(&line) {
                return line;
            }
        }
    }

    /// Reads lines until `n` events named `name` have come; panics after `limit`.
    pub fn wait_count(&mut self, name: &str, n: usize, limit: Duration) {
        let deadline = Instant::now() + limit;
        while self.count(name) < n {
            let line = self.next_line(deadline);
            assert!(line.get("event").is_some(), "an answer nobody waits for: {line}");
            assert_ne!(line["event"], "error", "the wrapper failed: {line}");
            self.events.push(line);
        }
    }

    /// Reads what came until `limit` passes, keeping the events.
    pub fn drain(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            match self
                .lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(line) => {
                    assert_ne!(line["event"], "error", "the wrapper failed: {line}");
                    self.events.push(line);
                }
                Err(RecvTimeoutError::Timeout) => return,
                Err(RecvTimeoutError::Disconnected) => panic!("the wrapper exited"),
            }
        }
    }

    /// Sends a command (its `id` added) and waits for its answer: `Ok(value)` or the error.
    pub fn ask(&mut self, mut command: Value) -> Result<Value, String> {
        let id = self.next_id;
        self.next_id += 1;
        command["id"] = json!(id);
        writeln!(self.stdin, "{command}").expect("the wrapper reads its stdin");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let line = self.next_line(deadline);
            if line.get("event").is_none() && line["id"] == json!(id) {
                return if line["ok"] == json!(true) {
                    Ok(line["value"].clone())
                } else {
                    Err(line["error"].to_string())
                };
            }
            assert_ne!(line["event"], "error", "the wrapper failed: {line}");
            self.events.push(line);
        }
    }

    /// The events named `name` read so far.
    pub fn count(&self, name: &str) -> usize {
        self.events.iter().filter(|e| e["event"] == name).count()
    }

    fn next_line(&mut self, deadline: Instant) -> Value {
        match self
            .lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => {
                panic!("the wrapper said nothing in time; events so far: {:?}", self.events)
            }
            Err(RecvTimeoutError::Disconnected) => panic!("the wrapper exited; events so far: {:?}", self.events),
        }
    }
}

impl Drop for NodeServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
