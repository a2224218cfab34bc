//! The LwM2M front with a CoAP client that shares no code with it: libcoap's `coap-client`
//! (Debian's libcoap3-bin, the build without DTLS), run as a child process against a real
//! backend on loopback. It provisions, registers, updates and de-registers as a device would,
//! and sends what a device must not; `scripts/test` installs it, and without it these tests
//! fail, never skip.

mod common;

use std::process::{Command, Stdio};

use common::TestBackend;
use serde_json::Value;

/// libcoap's client, without DTLS.
const COAP_CLIENT: &str = "coap-client-notls";

/// What a `coap-client` run printed.
#[derive(Debug)]
struct Ran {
    stdout: String,
    stderr: String,
}

/// libcoap's client with DTLS (OpenSSL's).
const COAPS_CLIENT: &str = "coap-client-openssl";

/// Runs `coap-client-notls` with `args` (on the blocking pool: the runtime keeps serving the
/// backend), bounded by its own `-B` wait.
async fn coap_client(args: &[String]) -> Ran {
    run_client(COAP_CLIENT, args).await
}

/// Runs `client` with `args`, as [`coap_client`].
async fn run_client(client: &'static str, args: &[String]) -> Ran {
    let mut all = vec!["-B".to_owned(), "10".to_owned()];
    all.extend_from_slice(args);
    let output = tokio::task::spawn_blocking(move || {
        Command::new(client)
            .args(&all)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| {
                panic!("{client} could not run ({e}): these tests need Debian's libcoap3-bin; scripts/test installs it")
            })
    })
    .await
    .expect("client task");
    Ran {
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

/// Provisions `serial` by the test backend's claim through `coap-client`; the answer.
async fn provision(base: &str, serial: &str) -> Value {
    let provisioned = coap_client(&args(&[
        "-m",
        "post",
        "-e",
        r#"{"secret": "s3cret", "model": "coap-client", "firmware": "4.3.1"}"#,
        &format!("{base}/provision?ep={serial}&claim=factory"),
    ]))
    .await;
    serde_json::from_str(provisioned.stdout.trim()).unwrap_or_else(|_| panic!("{provisioned:?}"))
}

#[tokio::test]
async fn libcoap_provisions_registers_updates_and_deregisters() {
    let t = TestBackend::start().await;
    let base = format!("coap://{}", t.lwm2m);

    let identity = provision(&base, "SN-LIBCOAP").await;
    let id = identity["device_id"].as_str().expect("an id").to_owned();
    assert_eq!(identity["group"], "sensors");

    // -v 6 prints the messages: the Register's answer carries its location.
    let registered = coap_client(&args(&[
        "-v",
        "6",
        "-m",
        "post",
        "-t",
        "40",
        "-e",
        "</1/0>,</3/0>",
        &format!("{base}/rd?ep=SN-LIBCOAP&lt=120&lwm2m=1.1&b=U"),
    ]))
    .await;
    let log = format!("{}{}", registered.stdout, registered.stderr);
    assert!(
        log.contains("c:2.01") && log.contains("Location-Path:rd, Location-Path:1"),
        "{log}"
    );
    let (status, view) = t.http("GET", &format!("/api/v1/devices/{id}"), None).await;
    assert_eq!(status, 200);
    let view: Value = serde_json::from_str(&view).expect("JSON");
    assert_eq!(view["online"], true, "{view}");

    let updated = coap_client(&args(&["-v", "6", "-m", "post", &format!("{base}/rd/1?lt=300")])).await;
    let log = format!("{}{}", updated.stdout, updated.stderr);
    assert!(log.contains("c:2.04"), "{log}");

    let deleted = coap_client(&args(&["-v", "6", "-m", "delete", &format!("{base}/rd/1")])).await;
    let log = format!("{}{}", deleted.stdout, deleted.stderr);
    assert!(log.contains("c:2.02"), "{log}");
    let gone = coap_client(&args(&["-m", "delete", &format!("{base}/rd/1")])).await;
    assert!(gone.stderr.contains("4.04"), "{gone:?}");

    let (_, metrics) = t.http("GET", "/metrics", None).await;
    for line in [
        "fleetsim_gateway_provision_accepted_total 1",
        "fleetsim_gateway_lwm2m_registrations_total 1",
        "fleetsim_gateway_lwm2m_updates_total 1",
        "fleetsim_gateway_lwm2m_deregistrations_total 1",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in\n{metrics}");
    }
    t.stop().await;
}

#[tokio::test]
async fn libcoap_gets_a_reason_for_what_is_refused() {
    let t = TestBackend::start().await;
    let base = format!("coap://{}", t.lwm2m);
    let cases = [
        // No endpoint name.
        (
            args(&["-m", "post", &format!("{base}/rd?lt=60")]),
            "4.00 Register needs ep=ENDPOINT",
        ),
        // Never provisioned.
        (
            args(&["-m", "post", &format!("{base}/rd?ep=SN-STRANGER")]),
            "4.03 endpoint SN-STRANGER is no active device",
        ),
        // A wrong claim secret.
        (
            args(&[
                "-m",
                "post",
                "-e",
                r#"{"secret": "guess"}"#,
                &format!("{base}/provision?ep=SN-X&claim=factory"),
            ]),
            "4.01 claim factory",
        ),
        // A block-wise Register (Block1, a critical option the front does not speak).
        (
            args(&[
                "-m",
                "post",
                "-b",
                "16",
                "-e",
                "</1/0>,</3/0>,</3303/0>,</4/0>",
                &format!("{base}/rd?ep=SN-X"),
            ]),
            "4.02 option 27",
        ),
        (args(&["-m", "get", &format!("{base}/rd")]), "4.05"),
        (args(&["-m", "post", &format!("{base}/dp?ep=SN-X")]), "4.04"),
        (
            args(&["-m", "post", &format!("{base}/bs?ep=SN-X")]),
            "4.03 endpoint SN-X is no active device",
        ),
    ];
    for (args, want) in cases {
        let ran = coap_client(&args).await;
        assert!(ran.stderr.contains(want), "{args:?}: wanted {want:?} in {ran:?}");
    }
    // The front still serves.
    let ran = coap_client(&args(&["-m", "post", &format!("{base}/rd/99")])).await;
    assert!(ran.stderr.contains("4.04"), "{ran:?}");
    t.stop().await;
}

/// Over DTLS: libcoap's OpenSSL client registers with the identity and key its provisioning
/// answer gave (`psk`), and the registration is the device's; a wrong key gets no session, an
/// endpoint other than the PSK identity is refused (4.03).
#[tokio::test]
async fn libcoap_registers_over_dtls_with_the_key_it_was_provisioned() {
    let t = TestBackend::start().await;
    let (plain, secured) = (format!("coap://{}", t.lwm2m), format!("coaps://{}", t.lwm2m_dtls));
    let identity = provision(&plain, "SN-DTLS").await;
    let id = identity["device_id"].as_str().expect("an id").to_owned();
    let psk = identity["psk"].as_str().expect("a DTLS key").to_owned();
    assert_eq!(psk.len(), 32, "{psk}");

    let register = |key: &str, ep: &str| {
        args(&[
            "-v",
            "6",
            "-u",
            "SN-DTLS",
            "-k",
            key,
            "-m",
            "post",
            "-t",
            "40",
            "-e",
            "</1/0>,</3/0>",
            &format!("{secured}/rd?ep={ep}&lt=120&lwm2m=1.1&b=U"),
        ])
    };
    let registered = run_client(COAPS_CLIENT, &register(&psk, "SN-DTLS")).await;
    let log = format!("{}{}", registered.stdout, registered.stderr);
    assert!(log.contains("c:2.01"), "{log}");
    let (_, view) = t.http("GET", &format!("/api/v1/devices/{id}"), None).await;
    let view: Value = serde_json::from_str(&view).expect("JSON");
    assert_eq!(view["online"], true, "{view}");

    let wrong = run_client(COAPS_CLIENT, &register("0123456789abcdef0123456789abcdef", "SN-DTLS")).await;
    let log = format!("{}{}", wrong.stdout, wrong.stderr);
    assert!(!log.contains("c:2.01"), "a wrong key registers nothing: {log}");

    let other = run_client(COAPS_CLIENT, &register(&psk, "SN-SOMEONE-ELSE")).await;
    let log = format!("{}{}", other.stdout, other.stderr);
    assert!(log.contains("4.03"), "{log}");

    let (_, metrics) = t.http("GET", "/metrics", None).await;
    let count = |name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("fleetsim_gateway_{name} ")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} in\n{metrics}"))
    };
    assert_eq!(count("lwm2m_dtls_handshakes_total"), 2, "the right key twice");
    assert_eq!(count("lwm2m_registrations_total"), 1);
    t.stop().await;
}
