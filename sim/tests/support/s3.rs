//! s3s-fs, an S3 server that keeps objects as files (the `s3s-fs` crate, built on the `s3s`
//! S3 protocol crate, checking AWS Signature V4), started on a free loopback port for one test
//! and stopped when dropped. `scripts/test` installs it; a missing server fails the test,
//! never skips it.

#![allow(dead_code)] // Each test file uses a different part.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The bucket every test server holds.
pub const BUCKET: &str = "reports";

/// An S3 server on a free loopback port, its data in a scratch folder, stopped when dropped.
pub struct S3Server {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its data folder: bucket `b`, key `k` is the file `root/b/k`.
    pub root: PathBuf,
    /// The secret key requests are signed with (never to be found in a report).
    pub secret: String,
}

/// The s3s-fs binary: on PATH, or where `cargo install` puts it.
fn binary() -> PathBuf {
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cargo")));
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .chain(cargo_home.map(|home| home.join("bin")))
        .map(|dir| dir.join("s3s-fs"))
        .find(|path| path.is_file())
        .expect("the s3s-fs S3 server is needed; scripts/test installs it (cargo install s3s-fs --features binary)")
}

impl S3Server {
    /// Starts a server with one bucket, [`BUCKET`], that accepts requests signed with its keys.
    pub fn start() -> Self {
        let binary = binary();
        let root = std::env::temp_dir().join(format!(
            "fleetsim-s3-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ));
        std::fs::create_dir_all(root.join(BUCKET)).expect("bucket folder");
        let secret = format!("secret-{}", std::process::id());
        let mut child = Command::new(binary)
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--access-key",
                "fleetsim-test",
                "--secret-key",
            ])
            .arg(&secret)
            .arg(&root)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("s3s-fs starts");
        // It logs its bound address once listening; port 0 leaves no race for a port.
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some((_, addr)) = line.split_once("server is running at http://") {
                    let _ = tx.send(addr.trim().to_owned());
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("s3s-fs says where it listens")
            .parse()
            .expect("an address");
        Self {
            child,
            addr,
            root,
            secret,
        }
    }

    /// The environment a fleetsim process needs to reach this server.
    pub fn env(&self) -> Vec<(String, String)> {
        env_for(&format!("http://{}", self.addr), &self.secret)
    }

    /// The file that holds object `key` of [`BUCKET`].
    pub fn object(&self, key: &str) -> PathBuf {
        self.root.join(BUCKET).join(key)
    }
}

/// The standard AWS variables for an S3-compatible store at `endpoint`.
pub fn env_for(endpoint: &str, secret: &str) -> Vec<(String, String)> {
    [
        ("AWS_ACCESS_KEY_ID", "fleetsim-test"),
        ("AWS_SECRET_ACCESS_KEY", secret),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ENDPOINT_URL", endpoint),
        ("AWS_ALLOW_HTTP", "true"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}
