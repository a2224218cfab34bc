//! Behaviour tests of the public API against real SQLite files in temporary directories.
//! Config, audit and listing tests live at the bottom of `reads.rs`, batching and
//! writer-failure tests at the bottom of `writer.rs`.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use serde_json::{Map, Value};

use super::*;

static DIRS: AtomicUsize = AtomicUsize::new(0);

/// A unique directory under the system temp dir, removed on drop. Declare it before the
/// registry so the registry is dropped (and its files closed) first.
pub(super) struct Scratch(pub(super) PathBuf);

impl Scratch {
    pub(super) fn new(tag: &str) -> Scratch {
        let n = DIRS.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("registry-test-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Options with a clock that starts at 1_000 ms and advances 1 ms per reading.
pub(super) fn ticking() -> RegistryOptions {
    let now = Arc::new(AtomicU64::new(1_000));
    RegistryOptions {
        clock: Arc::new(move || now.fetch_add(1, Ordering::Relaxed)),
        ..RegistryOptions::default()
    }
}

pub(super) async fn with_claim(dir: &Scratch, claim: &str) -> Registry {
    let reg = Registry::open(&dir.0, ticking()).unwrap();
    reg.create_claim(claim, "claim-secret", "default")
        .await
        .unwrap()
        .unwrap();
    reg
}

pub(super) fn accepted(outcome: ProvisionOutcome) -> (String, String, String, bool) {
    match outcome {
        ProvisionOutcome::Accepted {
            device_id,
            token,
            group,
            existed,
        } => (device_id, token, group, existed),
        ProvisionOutcome::Rejected { reason } => panic!("rejected: {}", reason.as_str()),
    }
}

fn rejected(outcome: ProvisionOutcome) -> RejectReason {
    match outcome {
        ProvisionOutcome::Rejected { reason } => reason,
        other => panic!("accepted: {other:?}"),
    }
}

pub(super) fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => panic!("not an object"),
    }
}

#[test]
fn registry_is_send_sync_and_clone() {
    fn check<T: Send + Sync + Clone + 'static>() {}
    check::<Registry>();
}

#[tokio::test]
async fn open_creates_files_and_reopen_keeps_key_and_data() {
    let dir = Scratch::new("reopen");
    let reg = with_claim(&dir, "factory").await;
    assert!(dir.0.join(KEY_FILE).is_file());
    assert!(dir.0.join(DB_FILE).is_file());
    let meta = ProvisionMeta {
        model: Some("m1".into()),
        firmware: Some("1.0".into()),
    };
    let (id, token, group, existed) = accepted(reg.provision("factory", "SN-1", meta).await.unwrap());
    assert_eq!((group.as_str(), existed), ("default", false));

    // Untrusted descriptive fields are cut at a character boundary.
    let long = ProvisionMeta {
        model: Some("é".repeat(100)),
        firmware: None,
    };
    let (long_id, ..) = accepted(reg.provision("factory", "SN-LONG", long).await.unwrap());
    let model = reg.device(&long_id).unwrap().unwrap().model.unwrap();
    assert_eq!((model.len(), model.chars().count()), (MAX_META_LEN, MAX_META_LEN / 2));
    let second = Registry::open(&dir.0, ticking()).unwrap_err();
    assert!(matches!(second, RegistryError::InUse { .. }), "{second}");
    reg.close().unwrap();

    let key_before = std::fs::read(dir.0.join(KEY_FILE)).unwrap();
    let reg = Registry::open(&dir.0, ticking()).unwrap();
    assert_eq!(std::fs::read(dir.0.join(KEY_FILE)).unwrap(), key_before);
    assert_eq!(
        reg.authenticate_device(&id, token.as_bytes()),
        DeviceAuth::Ok {
            group: "default".into()
        }
    );
    assert_eq!(reg.authenticate_claim("factory", b"claim-secret"), ClaimAuth::Ok);
    // Same key, so the retry re-derives the same token.
    let again = accepted(
        reg.provision("factory", "SN-1", ProvisionMeta::default())
            .await
            .unwrap(),
    );
    assert_eq!(again, (id.clone(), token, "default".into(), true));
    let rec = reg.device(&id).unwrap().unwrap();
    assert_eq!(
        (rec.model.as_deref(), rec.firmware.as_deref()),
        (Some("m1"), Some("1.0"))
    );
    assert_eq!(
        (rec.generation, rec.state, rec.claim.as_str()),
        (1, DeviceState::Active, "factory")
    );
}

#[tokio::test]
async fn provisioning_is_idempotent_per_claim_and_authenticates() {
    let dir = Scratch::new("provision");
    let reg = with_claim(&dir, "factory").await;
    reg.create_claim("other", "s2", "other-group").await.unwrap().unwrap();
    let first = accepted(
        reg.provision("factory", "SN-1", ProvisionMeta::default())
            .await
            .unwrap(),
    );
    let retry = accepted(
        reg.provision("factory", "SN-1", ProvisionMeta::default())
            .await
            .unwrap(),
    );
    assert_eq!((&retry.0, &retry.1, retry.3), (&first.0, &first.1, true));
    assert!(first.0.starts_with("d-") && first.0.len() == 22 && first.1.len() == 64);
    assert_eq!(reg.devices(None, None, 100).unwrap().len(), 1);
    let provisioned = reg
        .audit(0, 100)
        .unwrap()
        .iter()
        .filter(|e| e.action == "device.provisioned")
        .count();
    assert_eq!(provisioned, 1, "a retry adds no audit entry");

    let other = reg.provision("other", "SN-1", ProvisionMeta::default()).await.unwrap();
    assert_eq!(rejected(other), RejectReason::ProvisionedByOtherClaim);
    assert_eq!(
        rejected(reg.provision("nope", "SN-2", ProvisionMeta::default()).await.unwrap()),
        RejectReason::InvalidClaim
    );
    assert_eq!(
        rejected(
            reg.provision("Bad Name", "SN-2", ProvisionMeta::default())
                .await
                .unwrap()
        ),
        RejectReason::InvalidClaim
    );
    assert_eq!(
        rejected(
            reg.provision("factory", "bad serial", ProvisionMeta::default())
                .await
                .unwrap()
        ),
        RejectReason::InvalidSerial
    );
    assert_eq!(
        rejected(reg.provision("factory", "", ProvisionMeta::default()).await.unwrap()),
        RejectReason::InvalidSerial
    );
    reg.revoke_claim("other").await.unwrap().unwrap();
    assert_eq!(
        rejected(reg.provision("other", "SN-3", ProvisionMeta::default()).await.unwrap()),
        RejectReason::ClaimRevoked
    );
    assert_eq!(RejectReason::ClaimRevoked.as_str(), "claim_revoked");

    assert_eq!(
        reg.authenticate_device(&first.0, first.1.as_bytes()),
        DeviceAuth::Ok {
            group: "default".into()
        }
    );
    assert_eq!(reg.authenticate_device(&first.0, b"wrong"), DeviceAuth::WrongToken);
    assert_eq!(
        reg.authenticate_device("d-00000000000000000000", first.1.as_bytes()),
        DeviceAuth::Unknown
    );
    let counts = reg.counts();
    assert_eq!((counts.active, counts.claims, counts.revoked_claims), (1, 2, 1));
}

#[tokio::test]
async fn claims_refuse_bad_input_and_authenticate() {
    let dir = Scratch::new("claims");
    let reg = with_claim(&dir, "factory").await;
    assert_eq!(
        reg.create_claim("factory", "x", "g").await.unwrap(),
        Err(Refusal::AlreadyExists)
    );
    assert_eq!(
        reg.create_claim("-bad", "x", "g").await.unwrap(),
        Err(Refusal::InvalidName)
    );
    assert_eq!(
        reg.create_claim("ok", "x", "Bad_Group").await.unwrap(),
        Err(Refusal::InvalidName)
    );
    assert_eq!(
        reg.create_claim("ok", "", "g").await.unwrap(),
        Err(Refusal::InvalidSecret)
    );
    assert_eq!(reg.authenticate_claim("factory", b"claim-secret"), ClaimAuth::Ok);
    assert_eq!(reg.authenticate_claim("factory", b"guess"), ClaimAuth::WrongSecret);
    assert_eq!(reg.authenticate_claim("nobody", b"claim-secret"), ClaimAuth::Unknown);
    assert_eq!(reg.revoke_claim("nobody").await.unwrap(), Err(Refusal::NotFound));
    reg.revoke_claim("factory").await.unwrap().unwrap();
    assert_eq!(reg.revoke_claim("factory").await.unwrap(), Err(Refusal::AlreadyRevoked));
    assert_eq!(reg.authenticate_claim("factory", b"claim-secret"), ClaimAuth::Revoked);
    assert_eq!(reg.authenticate_claim("factory", b"guess"), ClaimAuth::WrongSecret);
}

#[tokio::test]
async fn decommission_blocks_serial_until_released_then_new_identity() {
    let dir = Scratch::new("decom");
    let reg = with_claim(&dir, "factory").await;
    let (id1, token1, ..) = accepted(
        reg.provision("factory", "SN-1", ProvisionMeta::default())
            .await
            .unwrap(),
    );
    accepted(
        reg.provision("factory", "SN-2", ProvisionMeta::default())
            .await
            .unwrap(),
    );
    assert_eq!(
        reg.release_serial("SN-2").await.unwrap(),
        Err(Refusal::NotDecommissioned)
    );
    assert_eq!(reg.release_serial("SN-9").await.unwrap(), Err(Refusal::NotFound));

    reg.decommission(&id1).await.unwrap().unwrap();
    assert_eq!(
        reg.decommission(&id1).await.unwrap(),
        Err(Refusal::AlreadyDecommissioned)
    );
    assert_eq!(
        reg.decommission("d-00000000000000000000").await.unwrap(),
        Err(Refusal::NotFound)
    );
    assert_eq!(
        reg.authenticate_device(&id1, token1.as_bytes()),
        DeviceAuth::Decommissioned
    );
    let again = reg
        .provision("factory", "SN-1", ProvisionMeta::default())
        .await
        .unwrap();
    assert_eq!(rejected(again), RejectReason::Decommissioned);
    let rec = reg.device(&id1).unwrap().unwrap();
    assert_eq!(
        (rec.state, rec.decommissioned_at.is_some()),
        (DeviceState::Decommissioned, true)
    );

    reg.release_serial("SN-1").await.unwrap().unwrap();
    let (id2, token2, _, existed) = accepted(
        reg.provision("factory", "SN-1", ProvisionMeta::default())
            .await
            .unwrap(),
    );
    assert!(!existed);
    assert_ne!((&id2, &token2), (&id1, &token1));
    assert_eq!(
        reg.authenticate_device(&id2, token2.as_bytes()),
        DeviceAuth::Ok {
            group: "default".into()
        }
    );
    assert_eq!(
        reg.authenticate_device(&id1, token1.as_bytes()),
        DeviceAuth::Decommissioned
    );
    let by_serial = reg.device_by_serial("SN-1").unwrap().unwrap();
    assert_eq!((by_serial.id.as_str(), by_serial.generation), (id2.as_str(), 2));
    assert_eq!(reg.device(&id1).unwrap().unwrap().state, DeviceState::Released);
    let counts = reg.counts();
    assert_eq!((counts.active, counts.decommissioned, counts.released), (2, 0, 1));
    drop(reg);
    // The retired id still answers Decommissioned after a restart, and the counts kept in
    // memory are the ones the database gives back.
    let reg = Registry::open(&dir.0, ticking()).unwrap();
    assert_eq!(
        reg.authenticate_device(&id1, token1.as_bytes()),
        DeviceAuth::Decommissioned
    );
    assert_eq!(reg.counts(), counts);
}

#[tokio::test]
async fn dropped_registry_keeps_every_acknowledged_provision() {
    const N: usize = 300;
    let dir = Scratch::new("durable");
    let reg = with_claim(&dir, "factory").await;
    let mut issued = Vec::new();
    for i in 0..N {
        issued.push(accepted(
            reg.provision("factory", &format!("SN-{i}"), ProvisionMeta::default())
                .await
                .unwrap(),
        ));
    }
    drop(reg);
    let reg = Registry::open(&dir.0, ticking()).unwrap();
    assert_eq!(reg.counts().active, N as u64);
    for (id, token, ..) in &issued {
        assert_eq!(
            reg.authenticate_device(id, token.as_bytes()),
            DeviceAuth::Ok {
                group: "default".into()
            }
        );
    }
}

#[tokio::test]
async fn certificates_are_revoked_on_a_retry_after_a_rotations_grace_and_at_decommission() {
    let dir = Scratch::new("certs");
    let now = Arc::new(AtomicU64::new(1_000));
    let clock = Arc::clone(&now);
    let options = RegistryOptions {
        clock: Arc::new(move || clock.load(Ordering::Relaxed)),
        ..RegistryOptions::default()
    };
    let reg = Registry::open(&dir.0, options.clone()).unwrap();
    reg.create_claim("factory", "claim-secret", "default")
        .await
        .unwrap()
        .unwrap();
    let (id, ..) = accepted(
        reg.provision("factory", "SN-1", ProvisionMeta::default())
            .await
            .unwrap(),
    );
    let cert = |serial: &str, at_provisioning| NewCertificate {
        serial: serial.to_owned(),
        not_after: 10_000_000,
        at_provisioning,
    };
    let ok = CertAuth::Ok {
        group: "default".to_owned(),
    };

    let first = reg.record_certificate(&id, cert("aa", true)).await.unwrap().unwrap();
    assert_eq!((first.reason, first.revoked), (IssueReason::Provision, 0));
    assert_eq!(reg.authenticate_certificate(&id, "aa"), ok);
    // A provisioning retry: the device never got (or lost) the first certificate.
    let retry = reg.record_certificate(&id, cert("bb", true)).await.unwrap().unwrap();
    assert_eq!((retry.reason, retry.revoked), (IssueReason::Provision, 1));
    assert_eq!(reg.authenticate_certificate(&id, "aa"), CertAuth::Revoked);
    assert_eq!(reg.authenticate_certificate(&id, "bb"), ok);
    // A request no rotation asked for renews: the old certificate lives on.
    let renewed = reg.record_certificate(&id, cert("cc", false)).await.unwrap().unwrap();
    assert_eq!(
        (renewed.reason, renewed.previous_revoke_at, renewed.revoked),
        (IssueReason::Renew, None, 0)
    );
    assert_eq!(reg.authenticate_certificate(&id, "bb"), ok);
    // A rotation: the old certificates last the grace, then stop.
    reg.request_rotation(&id, 5_000).await.unwrap().unwrap();
    now.store(2_000, Ordering::Relaxed);
    let rotated = reg.record_certificate(&id, cert("dd", false)).await.unwrap().unwrap();
    assert_eq!(
        (rotated.reason, rotated.previous_revoke_at, rotated.revoked),
        (IssueReason::Rotate, Some(7_000), 2)
    );
    now.store(6_999, Ordering::Relaxed);
    assert_eq!(reg.authenticate_certificate(&id, "bb"), ok, "within the grace");
    now.store(7_000, Ordering::Relaxed);
    for old in ["bb", "cc"] {
        assert_eq!(reg.authenticate_certificate(&id, old), CertAuth::Revoked, "{old}");
    }
    assert_eq!(reg.authenticate_certificate(&id, "dd"), ok);
    assert_eq!(
        reg.authenticate_certificate("d-00000000000000000000", "dd"),
        CertAuth::Unknown,
        "a certificate is its own device's only"
    );
    assert_eq!(reg.authenticate_certificate(&id, "ee"), CertAuth::Unknown);
    let states: Vec<(String, CertState)> = reg
        .certificates(&id)
        .unwrap()
        .into_iter()
        .map(|c| (c.serial, c.state))
        .collect();
    assert_eq!(
        states,
        [
            ("aa".to_owned(), CertState::Revoked),
            ("bb".to_owned(), CertState::Revoked),
            ("cc".to_owned(), CertState::Revoked),
            ("dd".to_owned(), CertState::Active),
        ]
    );

    // Decommissioning revokes what was still accepted, at once.
    assert_eq!(reg.decommission(&id).await.unwrap(), Ok(1));
    assert_eq!(reg.authenticate_certificate(&id, "dd"), CertAuth::Revoked);
    assert_eq!(
        reg.record_certificate(&id, cert("ff", false))
            .await
            .unwrap()
            .unwrap_err(),
        Refusal::NotFound
    );
    assert_eq!(reg.request_rotation(&id, 0).await.unwrap(), Err(Refusal::NotFound));

    // The verdicts survive a restart: the cache is loaded from the table.
    reg.close().unwrap();
    let reg = Registry::open(&dir.0, options).unwrap();
    assert_eq!(reg.authenticate_certificate(&id, "dd"), CertAuth::Revoked);
    assert_eq!(reg.authenticate_certificate(&id, "aa"), CertAuth::Revoked);
}
