//! goosebit, a real hawkBit DDI update server (PyPI), started on a free loopback port with a
//! scratch SQLite database for one test and stopped when dropped. `scripts/test` installs it
//! into `target/test-deps/goosebit`; a missing server fails the test, never skips it.

#![allow(dead_code)] // Each test file uses a different part.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The management API's user the server is set up with.
pub const USER: &str = "fleetsim@example.invalid";
/// Its password.
pub const PASSWORD: &str = "fleetsim-test-password";

/// goosebit on a free loopback port, stopped when dropped.
pub struct Goosebit {
    child: Child,
    /// Where it listens (DDI and management API alike).
    pub addr: SocketAddr,
    /// Its scratch folder: settings, database, artifacts, log.
    pub dir: PathBuf,
}

/// The virtual environment `scripts/test` installs goosebit into.
pub fn venv() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-deps/goosebit")
}

impl Goosebit {
    /// Starts goosebit in strict device authentication (every device must be registered with
    /// its token through the management API), polling every `poll` ("HH:MM:SS"), with its
    /// first user set up.
    pub fn start(poll: &str) -> Self {
        let venv = venv();
        let python = venv.join("bin/python");
        assert!(
            python.exists(),
            "goosebit is needed in {}; scripts/test installs it (python3 -m venv, pip install goosebit)",
            venv.display()
        );
        let package = Command::new(&python)
            .args(["-c", "import goosebit, os; print(os.path.dirname(goosebit.__file__))"])
            .output()
            .expect("the venv's python runs");
        let package = String::from_utf8_lossy(&package.stdout).trim().to_owned();
        assert!(
            !package.is_empty(),
            "goosebit is not importable from {}",
            venv.display()
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("free port")
            .local_addr()
            .expect("addr")
            .port();
        let dir = std::env::temp_dir().join(format!("fleetsim-goosebit-{port}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let db = dir.join("db.sqlite3");
        // goosebit does not create its tables: its migrations run through aerich, which reads
        // this from the working folder.
        std::fs::write(
            dir.join("pyproject.toml"),
            format!(
                "[tool.aerich]\ntortoise_orm = \"goosebit.db.config.TORTOISE_CONF\"\nlocation = \"{package}/db/migrations\"\nsrc_folder = \"./.\"\n"
            ),
        )
        .expect("pyproject.toml");
        let settings = dir.join("settings.yaml");
        std::fs::write(
            &settings,
            format!(
                "secret_key: \"fleetsim-test-secret-key-0123456789abcdef\"\ndb_uri: \"sqlite:///{db}\"\nartifacts_dir: \"{artifacts}\"\n\
                 poll_time: \"{poll}\"\ntrack_device_ip: false\ndevice_auth:\n  enable: true\n  mode: strict\n",
                db = db.display(),
                artifacts = dir.join("artifacts").display(),
            ),
        )
        .expect("settings");
        let migrated = Command::new(venv.join("bin/aerich"))
            .arg("upgrade")
            .current_dir(&dir)
            .env("GOOSEBIT_SETTINGS", &settings)
            .env("GOOSEBIT_DB_URI", format!("sqlite:///{}", db.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("aerich runs");
        assert!(migrated.success(), "goosebit's migrations failed in {}", dir.display());
        let log = std::fs::File::create(dir.join("server.log")).expect("log");
        let child = Command::new(venv.join("bin/uvicorn"))
            .args([
                "goosebit:app",
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--no-access-log",
            ])
            .current_dir(&dir)
            .env("GOOSEBIT_SETTINGS", &settings)
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("uvicorn starts");
        let server = Self {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            dir,
        };
        server.set_up();
        server
    }

    /// Waits for the server, then creates its first user.
    fn set_up(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let answer = self.post_credentials("/setup", &["-o", "/dev/null", "-w", "%{http_code}"]);
            if answer == "200" {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "goosebit did not come up at {} (last answer {answer:?}); see {}",
                self.addr,
                self.dir.join("server.log").display()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// A management API resource, as JSON, read with the operator's login.
    pub fn api(&self, path: &str) -> serde_json::Value {
        self.api_as(&self.login(), path)
    }

    /// The operator's `Authorization` header (a login costs the server a password hash: log in
    /// once for many reads).
    pub fn login(&self) -> String {
        let login = self.post_credentials("/login", &[]);
        let login: serde_json::Value = serde_json::from_str(&login).expect("login answer");
        format!("Bearer {}", login["access_token"].as_str().expect("access token"))
    }

    /// Posts the operator's user and password as a form to `path` (with more curl arguments).
    fn post_credentials(&self, path: &str, extra: &[&str]) -> String {
        let (user, password) = (format!("username={USER}"), format!("password={PASSWORD}"));
        let url = format!("http://{}{path}", self.addr);
        let mut args = vec!["-s"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&[
            "-X",
            "POST",
            "--data-urlencode",
            &user,
            "--data-urlencode",
            &password,
            &url,
        ]);
        curl(&args)
    }

    /// A management API resource, as JSON, read with `authorization`.
    pub fn api_as(&self, authorization: &str, path: &str) -> serde_json::Value {
        let answer = curl(&[
            "-s",
            "-H",
            &format!("Authorization: {authorization}"),
            &format!("http://{}{path}", self.addr),
        ]);
        serde_json::from_str(&answer).unwrap_or_else(|e| panic!("{path}: {e}: {answer}"))
    }
}

/// curl's output (an independent HTTP client, so the test's own view does not go through
/// fleetsim's).
fn curl(args: &[&str]) -> String {
    let out = Command::new("curl").args(args).output().expect("curl runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Drop for Goosebit {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
