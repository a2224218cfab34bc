//! Device certificates at the reference backend, driven only by independent tools: keys and
//! CSRs made by the `openssl` command line, MQTT over TLS by Debian's `mosquitto_rr` and
//! `mosquitto_pub`, the API by `curl`. It proves that:
//!
//! - a device provisioning by claim with a CSR (`"csr"` in its request) gets a certificate the
//!   backend's CA signed over the very key openssl made (the private key never left), naming
//!   the device id it was given, that `openssl verify` accepts as a TLS client certificate;
//! - that certificate alone logs the device in (mutual TLS, no username or password) as that
//!   device only; one the CA signed but the registry never recorded logs in nobody; one from
//!   another CA, or expired, fails the handshake (counted by the gateway);
//! - an operator's rotation gets a new certificate over the device's own connection (reason
//!   "rotate"), the old one keeps working through the grace period and is refused at CONNECT,
//!   every time, after it, while the new one works;
//! - bad CSRs (garbage, another serial's subject, a P-384 or RSA-3072 key) are refused with
//!   their reason, counted and audited, and create no device; the backend serves on after them;
//! - decommissioning a device revokes its certificates at once: every CONNECT with them is
//!   refused and counted.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

#[path = "support/binary.rs"]
mod binary;
#[path = "support/standalone.rs"]
mod standalone;
use binary::scratch;
use standalone::{Standalone, standalone};

impl Standalone {
    fn host_port(&self) -> (&str, &str) {
        self.mqtts.split_once(':').expect("host:port")
    }

    /// A counter of `/metrics` (`fleetsim_gateway_{name}`).
    fn counted(&self, name: &str) -> u64 {
        let metrics = tool(Command::new("curl").args(["-sf", &format!("http://{}/metrics", self.http)]));
        let text = ok(&metrics, "curl /metrics");
        text.lines()
            .find_map(|line| line.strip_prefix(&format!("fleetsim_gateway_{name} ")))
            .and_then(|n| n.trim().parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no counter fleetsim_gateway_{name} in /metrics:\n{text}"))
    }

    /// `curl -X METHOD` on the API; the status code and the body as JSON (null when empty).
    fn api(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let mut curl = Command::new("curl");
        curl.args(["-s", "-m", "10", "-X", method, "-w", "\n%{http_code}"])
            .arg(format!("http://{}{path}", self.http));
        if let Some(body) = body {
            curl.args(["-H", "content-type: application/json", "-d", &body.to_string()]);
        }
        let out = tool(&mut curl);
        let text = ok(&out, &format!("curl -X {method} {path}"));
        let (body, status) = text.trim_end().rsplit_once('\n').unwrap_or(("", text.trim()));
        let status = status
            .parse()
            .unwrap_or_else(|_| panic!("{method} {path}: no status in {text:?}"));
        let json = if body.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(body).unwrap_or_else(|e| panic!("{method} {path}: {e}: {body}"))
        };
        (status, json)
    }

    fn get(&self, path: &str) -> Value {
        let (status, body) = self.api("GET", path, None);
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    /// The device's certificates, serial number → state (`active` / `revoked`).
    fn cert_states(&self, device_id: &str) -> Vec<(String, String)> {
        let listed = self.get(&format!("/api/v1/devices/{device_id}/certificates"));
        listed["certificates"]
            .as_array()
            .unwrap_or_else(|| panic!("{listed}"))
            .iter()
            .map(|c| {
                (
                    c["serial"].as_str().expect("serial").to_owned(),
                    c["state"].as_str().expect("state").to_owned(),
                )
            })
            .collect()
    }

    fn device_count(&self) -> usize {
        let listed = self.get("/api/v1/devices?limit=1000");
        listed["devices"]
            .as_array()
            .map_or_else(|| panic!("{listed}"), Vec::len)
    }

    /// The audit log's entries with `action`.
    fn audited(&self, action: &str) -> Vec<Value> {
        let log = self.get("/api/v1/audit?limit=1000");
        log["entries"]
            .as_array()
            .unwrap_or_else(|| panic!("{log}"))
            .iter()
            .filter(|e| e["action"] == action)
            .cloned()
            .collect()
    }

    /// `mosquitto_rr` as a claim holder: sends `request` on `fleet/v1/provision/{serial}` and
    /// prints the reply on `.../{outcome}` (`accepted` or `rejected`; `mosquitto_rr` takes no
    /// wildcard) as `TOPIC PAYLOAD`, or times out after 10 s.
    fn provision(&self, serial: &str, request: &Value, outcome: &str) -> Output {
        let (host, port) = self.host_port();
        tool(
            Command::new("mosquitto_rr")
                .args(["-V", "mqttv311", "-h", host, "-p", port, "--cafile", &self.ca])
                .args(["-i", &format!("rr-{serial}"), "-u", "claim:factory", "-P", "s3cret"])
                .args(["-t", &format!("fleet/v1/provision/{serial}")])
                .args(["-e", &format!("fleet/v1/provision/{serial}/{outcome}")])
                .args(["-m", &request.to_string(), "-q", "1", "-v", "-W", "10"]),
        )
    }

    /// `mosquitto_rr` as device `id` logged in by its certificate alone: sends `{"csr": PEM}`
    /// on `fleet/v1/d/{id}/cert/csr` and waits for the reply on `cert/{outcome}`.
    fn cert_request(&self, device: &Device, id: &str, csr_pem: &str, outcome: &str) -> Output {
        let (host, port) = self.host_port();
        let request = json!({ "csr": csr_pem, "validity_s": 3600 });
        tool(
            Command::new("mosquitto_rr")
                .args(["-V", "mqttv311", "-h", host, "-p", port, "--cafile", &self.ca])
                .arg("--cert")
                .arg(&device.cert)
                .arg("--key")
                .arg(&device.key)
                .args(["-i", id, "-t", &format!("fleet/v1/d/{id}/cert/csr")])
                .args(["-e", &format!("fleet/v1/d/{id}/cert/{outcome}")])
                .args(["-m", &request.to_string(), "-q", "1", "-v", "-W", "10"]),
        )
    }

    /// `mosquitto_pub` of one telemetry message (QoS 1, so it waits for the PUBACK) by client
    /// `client_id` presenting `device`'s certificate and no username or password.
    fn login(&self, device: &Device, client_id: &str) -> Output {
        let (host, port) = self.host_port();
        tool(
            Command::new("timeout")
                .args([
                    "-k",
                    "5",
                    "20",
                    "mosquitto_pub",
                    "-V",
                    "mqttv311",
                    "-h",
                    host,
                    "-p",
                    port,
                ])
                .args(["--cafile", &self.ca])
                .arg("--cert")
                .arg(&device.cert)
                .arg("--key")
                .arg(&device.key)
                .args(["-i", client_id, "-t", &format!("fleet/v1/d/{client_id}/telemetry")])
                .args(["-m", "x", "-q", "1"]),
        )
    }

    fn assert_logs_in(&self, device: &Device, client_id: &str, what: &str) {
        let out = self.login(device, client_id);
        assert!(
            out.status.success(),
            "{what}: the login should succeed\n{}",
            shown(&out)
        );
    }

    /// Asserts the login is refused by the gateway at CONNECT (CONNACK "not authorized"),
    /// not by a failed handshake or a time-out.
    fn assert_refused(&self, device: &Device, client_id: &str, what: &str) {
        let out = self.login(device, client_id);
        let said = shown(&out);
        assert!(!out.status.success(), "{what}: the login should be refused\n{said}");
        assert!(
            said.contains("not authori"),
            "{what}: the refusal should be CONNACK \"not authorized\"\n{said}"
        );
    }
}

/// A key and the certificate issued for it, as files.
struct Device {
    key: PathBuf,
    cert: PathBuf,
}

/// Runs a tool, with a clear message when it is missing.
fn tool(command: &mut Command) -> Output {
    command.output().unwrap_or_else(|e| {
        panic!(
            "{:?} runs (scripts/test installs openssl, curl and mosquitto-clients): {e}",
            command.get_program()
        )
    })
}

/// Exit status, stdout and stderr of a tool, for failure messages.
fn shown(out: &Output) -> String {
    format!(
        "exit: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Asserts the tool succeeded; its stdout.
fn ok(out: &Output, what: &str) -> String {
    assert!(out.status.success(), "{what} failed\n{}", shown(out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `openssl ARGS...`, asserted to succeed; its stdout.
fn openssl(args: &[&str]) -> String {
    ok(&tool(Command::new("openssl").args(args)), &format!("openssl {args:?}"))
}

fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

/// A key made by openssl: `kind` is `p256` (with `ecparam`, SEC1), `p256-pkcs8`, `p384` or
/// `rsa3072` (with `genpkey`, PKCS#8).
fn key(dir: &Path, name: &str, kind: &str) -> PathBuf {
    let file = dir.join(format!("{name}.key"));
    let out = path(&file);
    match kind {
        "p256" => openssl(&["ecparam", "-genkey", "-name", "prime256v1", "-noout", "-out", out]),
        "p256-pkcs8" => openssl(&[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            out,
        ]),
        "p384" => openssl(&[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-384",
            "-out",
            out,
        ]),
        "rsa3072" => openssl(&[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:3072",
            "-out",
            out,
        ]),
        other => panic!("no key kind {other}"),
    };
    file
}

/// A CSR for `key` with subject `/CN={cn}`, PEM.
fn csr(key: &Path, cn: &str) -> String {
    let out = key.with_extension("csr");
    openssl(&[
        "req",
        "-new",
        "-key",
        path(key),
        "-subj",
        &format!("/CN={cn}"),
        "-out",
        path(&out),
    ]);
    std::fs::read_to_string(&out).expect("the CSR openssl wrote")
}

/// A new P-256 key and a client certificate for `cn` that openssl signs with `ca` (its
/// certificate and key), valid for `days` (negative: already expired), bypassing the
/// backend's registry. The CSR is left beside the key, as `csr` leaves it.
fn signed_by(dir: &Path, name: &str, cn: &str, ca: (&Path, &Path), days: &str) -> Device {
    let key = key(dir, name, "p256-pkcs8");
    csr(&key, cn);
    let request = key.with_extension("csr");
    let ext = dir.join("client.ext");
    std::fs::write(&ext, "extendedKeyUsage = clientAuth\nkeyUsage = digitalSignature\n").expect("ext");
    let cert = dir.join(format!("{name}.pem"));
    openssl(&[
        "x509",
        "-req",
        "-in",
        path(&request),
        "-CA",
        path(ca.0),
        "-CAkey",
        path(ca.1),
        "-CAcreateserial",
        "-days",
        days,
        "-extfile",
        path(&ext),
        "-out",
        path(&cert),
    ]);
    Device { key, cert }
}

/// The `TOPIC PAYLOAD` line `mosquitto_rr -v` printed: the topic and the payload as JSON.
fn reply(out: &Output, what: &str) -> (String, Value) {
    let said = ok(out, what);
    let (topic, payload) = said
        .trim_end()
        .split_once(' ')
        .unwrap_or_else(|| panic!("{what}: expected TOPIC PAYLOAD\n{}", shown(out)));
    let payload =
        serde_json::from_str(payload).unwrap_or_else(|e| panic!("{what}: the reply is not JSON ({e})\n{}", shown(out)));
    (topic.to_owned(), payload)
}

/// Writes the certificate of an `accepted` reply next to `key` and checks it with openssl:
/// it names `device_id`, chains to the backend's CA as a TLS client certificate, carries
/// exactly `key`'s public key, and has the serial number the reply says.
fn certificate(backend: &Standalone, key: &Path, issued: &Value, device_id: &str) -> Device {
    let pem = issued["certificate"]
        .as_str()
        .unwrap_or_else(|| panic!("a certificate in {issued}"));
    let cert = key.with_extension("pem");
    std::fs::write(&cert, pem).expect("write the certificate");
    let subject = openssl(&["x509", "-in", path(&cert), "-noout", "-subject", "-nameopt", "RFC2253"]);
    assert_eq!(
        subject.trim(),
        format!("subject=CN={device_id}"),
        "the certificate names the device id, not the serial it asked for"
    );
    let verified = openssl(&[
        "verify",
        "-CAfile",
        &backend.fleet_ca,
        "-purpose",
        "sslclient",
        path(&cert),
    ]);
    assert_eq!(verified.trim(), format!("{}: OK", path(&cert)));
    let ours = openssl(&["pkey", "-in", path(key), "-pubout"]);
    let signed = openssl(&["x509", "-in", path(&cert), "-pubkey", "-noout"]);
    assert_eq!(ours, signed, "the certificate carries the key openssl made");
    let serial = openssl(&["x509", "-in", path(&cert), "-serial", "-noout"]);
    assert_eq!(
        serial.trim().to_ascii_lowercase(),
        format!("serial={}", issued["serial"].as_str().expect("serial")),
        "{issued}"
    );
    Device {
        key: key.to_owned(),
        cert,
    }
}

fn now_ms() -> u64 {
    let since = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).expect("clock");
    u64::try_from(since.as_millis()).expect("ms")
}

#[test]
fn devices_provision_log_in_rotate_and_are_revoked_by_certificate() {
    let dir = scratch("backend-mtls");
    std::fs::create_dir_all(&dir).expect("dir");
    let data = dir.join("data");
    let backend = standalone(&data);
    assert!(
        data.join("tls/ca.key").is_file(),
        "the CA key next to {}",
        backend.fleet_ca
    );

    // 1. Provisioning by CSR: the key is made here, only its CSR travels.
    let serial = "SN-MTLS-1";
    let first_key = key(&dir, "first", "p256");
    let request = json!({ "model": "m", "csr": csr(&first_key, serial), "validity_s": 86_400 });
    let provisioned = backend.provision(serial, &request, "accepted");
    let (topic, accepted) = reply(&provisioned, "provisioning with a CSR");
    assert_eq!(topic, format!("fleet/v1/provision/{serial}/accepted"), "{accepted}");
    let id = accepted["device_id"]
        .as_str()
        .unwrap_or_else(|| panic!("{accepted}"))
        .to_owned();
    let issued = &accepted["certificate"];
    assert_eq!(issued["reason"], "provision", "{accepted}");
    let lasts = issued["not_after_ms"].as_u64().expect("not_after_ms") as i64 - now_ms() as i64;
    assert!(
        (86_340_000..=86_400_000).contains(&lasts),
        "validity_s 86400 asked: {issued}"
    );
    let first = certificate(&backend, &first_key, issued, &id);
    let first_serial = issued["serial"].as_str().expect("serial").to_owned();

    // 2. Mutual TLS: the certificate is the credential, for its own device id only.
    backend.assert_logs_in(&first, &id, "the provisioned certificate");
    backend.assert_refused(&first, "d-someone-else", "the certificate under another client id");
    assert!(backend.counted("connects_certificate_total") >= 1);
    // A certificate the CA signed (with its key, by openssl) for this very device id, but
    // that the registry never recorded, is no credential.
    let ca_key = data.join("tls/ca.key");
    let forged = signed_by(&dir, "forged", &id, (Path::new(&backend.fleet_ca), &ca_key), "1");
    backend.assert_refused(&forged, &id, "a CA-signed certificate the registry never issued");
    // One from another CA, and one from the backend's CA but expired, fail the handshake
    // itself: no CONNACK, and the gateway counts a failed handshake for each.
    let stranger_key = key(&dir, "stranger-ca", "p256-pkcs8");
    let stranger_ca = dir.join("stranger-ca.pem");
    openssl(&[
        "req",
        "-x509",
        "-new",
        "-key",
        path(&stranger_key),
        "-subj",
        "/CN=stranger CA",
        "-days",
        "2",
        "-out",
        path(&stranger_ca),
    ]);
    let strangers = signed_by(&dir, "strangers", &id, (&stranger_ca, &stranger_key), "1");
    // `-days -1`: valid until yesterday.
    let expired = signed_by(&dir, "expired", &id, (Path::new(&backend.fleet_ca), &ca_key), "-1");
    for (device, what) in [
        (&strangers, "a certificate from another CA"),
        (&expired, "an expired certificate"),
    ] {
        let failed_before = backend.counted("tls_failed_total");
        let out = backend.login(device, &id);
        let said = shown(&out);
        assert!(!out.status.success(), "{what}: the login should fail\n{said}");
        assert!(
            !said.contains("not authori"),
            "{what}: refused at the handshake, not at CONNECT\n{said}"
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while backend.counted("tls_failed_total") == failed_before && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(
            backend.counted("tls_failed_total"),
            failed_before + 1,
            "{what}: the gateway counts the failed handshake"
        );
    }

    // 3. Rotation: the operator asks, the device sends a new CSR over its current
    // certificate's connection, the old certificate lasts the grace period.
    let (status, body) = backend.api(
        "POST",
        &format!("/api/v1/devices/{id}/certificates/rotate"),
        Some(&json!({ "grace_s": 2 })),
    );
    assert_eq!(status, 202, "{body}");
    let second_key = key(&dir, "second", "p256-pkcs8");
    let rotated = backend.cert_request(&first, &id, &csr(&second_key, serial), "accepted");
    let (topic, issued) = reply(&rotated, "the rotation's CSR");
    assert_eq!(topic, format!("fleet/v1/d/{id}/cert/accepted"));
    assert_eq!(issued["reason"], "rotate", "{issued}");
    let revoke_at = issued["previous_revoke_at_ms"]
        .as_u64()
        .unwrap_or_else(|| panic!("a rotation revokes the old certificate later: {issued}"));
    // First, while the grace period runs: the old certificate still logs in.
    let still = backend.login(&first, &id);
    let done = now_ms();
    assert!(
        done < revoke_at,
        "the old certificate's login ended {} ms after its grace period: the machine is too slow \
         to check the grace period\n{}",
        done - revoke_at,
        shown(&still)
    );
    assert!(
        still.status.success(),
        "the old certificate logs in within the grace period\n{}",
        shown(&still)
    );
    let second = certificate(&backend, &second_key, &issued, &id);
    let second_serial = issued["serial"].as_str().expect("serial").to_owned();
    backend.assert_logs_in(&second, &id, "the rotated certificate");
    let wait = (revoke_at + 1_000).saturating_sub(now_ms());
    std::thread::sleep(Duration::from_millis(wait));
    let refused_before = backend.counted("certificates_revoked_refused_total");
    for attempt in 1..=3 {
        backend.assert_refused(
            &first,
            &id,
            &format!("the old certificate after its grace, try {attempt}"),
        );
        backend.assert_logs_in(&second, &id, &format!("the new certificate, try {attempt}"));
    }
    assert_eq!(
        backend.counted("certificates_revoked_refused_total"),
        refused_before + 3,
        "each refusal of the revoked certificate is counted"
    );
    let mut states = backend.cert_states(&id);
    states.sort();
    let mut expected = vec![
        (first_serial.clone(), "revoked".to_owned()),
        (second_serial.clone(), "active".to_owned()),
    ];
    expected.sort();
    assert_eq!(states, expected);
    assert_eq!(backend.counted("certs_issued_total"), 2);
    assert_eq!(backend.counted("certs_revoked_total"), 1, "the old certificate");
    assert_eq!(backend.audited("certificate.issued").len(), 2);
    assert_eq!(backend.audited("certificate.rotation_requested").len(), 1);

    // 4. Bad CSRs: refused with their reason, counted, audited, and no device is made.
    let devices = backend.device_count();
    let bad = "SN-MTLS-BAD";
    let p384 = key(&dir, "p384", "p384");
    let rsa3072 = key(&dir, "rsa3072", "rsa3072");
    let cases = [
        (
            "garbage",
            "this is not a certificate request".to_owned(),
            "csr_malformed",
        ),
        ("another serial's subject", csr(&second_key, serial), "csr_subject"),
        ("a P-384 key", csr(&p384, bad), "csr_key_type"),
        ("an RSA-3072 key", csr(&rsa3072, bad), "csr_key_type"),
    ];
    for (what, pem, reason) in &cases {
        let out = backend.provision(bad, &json!({ "model": "m", "csr": pem }), "rejected");
        let (topic, body) = reply(&out, what);
        assert_eq!(topic, format!("fleet/v1/provision/{bad}/rejected"), "{what}: {body}");
        assert_eq!(body["reason"], *reason, "{what}: {body}");
        assert!(body["message"].is_string(), "{what}: {body}");
    }
    let other_key = key(&dir, "other", "p256");
    let out = backend.cert_request(&second, &id, &csr(&other_key, "SN-MTLS-2"), "rejected");
    let (topic, body) = reply(&out, "a device's CSR naming another serial");
    assert_eq!(topic, format!("fleet/v1/d/{id}/cert/rejected"));
    assert_eq!(body["reason"], "csr_subject", "{body}");
    assert_eq!(backend.counted("csr_rejected_total"), 5);
    let audited = backend.audited("csr.rejected");
    let mut seen: Vec<(String, String)> = audited
        .iter()
        .map(|e| {
            (
                e["subject"].as_str().unwrap_or_default().to_owned(),
                e["detail"]["reason"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    seen.sort();
    let subject = format!("serial:{bad}");
    let mut expected: Vec<(String, String)> = cases
        .iter()
        .map(|(_, _, reason)| (subject.clone(), (*reason).to_owned()))
        .chain([(id.clone(), "csr_subject".to_owned())])
        .collect();
    expected.sort();
    assert_eq!(seen, expected, "{audited:?}");
    assert_eq!(backend.device_count(), devices, "a refused CSR makes no device");
    let listed = backend.get("/api/v1/devices?limit=1000");
    assert!(!listed.to_string().contains(bad), "{listed}");
    assert_eq!(backend.counted("certs_issued_total"), 2, "nothing signed");
    backend.assert_logs_in(&second, &id, "a good login after the bad CSRs");

    // 5. Decommissioning revokes every certificate of the device at once.
    let (status, body) = backend.api("POST", &format!("/api/v1/devices/{id}/decommission"), None);
    assert_eq!(status, 204, "{body}");
    let refused_before = backend.counted("certificates_revoked_refused_total");
    for attempt in 1..=3 {
        backend.assert_refused(
            &second,
            &id,
            &format!("the decommissioned device's certificate, try {attempt}"),
        );
    }
    assert_eq!(
        backend.counted("certificates_revoked_refused_total"),
        refused_before + 3,
        "each refusal of a decommissioned device's certificate is counted"
    );
    let states = backend.cert_states(&id);
    assert_eq!(states.len(), 2, "{states:?}");
    assert!(states.iter().all(|(_, state)| state == "revoked"), "{states:?}");
    assert_eq!(
        backend.counted("certs_revoked_total"),
        2,
        "the rotated-out certificate, then the decommissioned device's"
    );
    assert!(
        backend
            .audited("certificate.revoked")
            .iter()
            .any(|e| e["subject"] == id.as_str() && e["detail"]["serials"] == json!([second_serial])),
        "decommissioning audits the revocation"
    );

    drop(backend);
}
