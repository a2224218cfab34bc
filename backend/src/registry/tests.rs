//! Behaviour tests of the public API against real SQLite files in temporary directories.
//! Batching and writer-failure tests live at the bottom of `writer.rs`.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use serde_json::{Map, Value, json};

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

fn obj(v: Value) -> Map<String, Value> {
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
    let counts = reg.counts().unwrap();
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
    let counts = reg.counts().unwrap();
    assert_eq!((counts.active, counts.decommissioned, counts.released), (2, 0, 1));
    drop(reg);
    // The retired id still answers Decommissioned after a restart.
    let reg = Registry::open(&dir.0, ticking()).unwrap();
    assert_eq!(
        reg.authenticate_device(&id1, token1.as_bytes()),
        DeviceAuth::Decommissioned
    );
}

#[tokio::test]
async fn desired_config_overlays_and_drift_follows_reports() {
    let dir = Scratch::new("config");
    let reg = with_claim(&dir, "factory").await;
    reg.create_claim("lab", "s", "lab").await.unwrap().unwrap();
    let (a, ..) = accepted(reg.provision("factory", "A", ProvisionMeta::default()).await.unwrap());
    let (b, ..) = accepted(reg.provision("factory", "B", ProvisionMeta::default()).await.unwrap());
    let (c, ..) = accepted(reg.provision("lab", "C", ProvisionMeta::default()).await.unwrap());
    let none = reg.effective_config(&c).unwrap().unwrap();
    assert_eq!((none.version, none.doc.len()), (0, 0));
    assert_eq!(reg.effective_config("d-00000000000000000000").unwrap(), None);
    assert!(reg.config_drift(None).unwrap().is_empty());

    let v1 = reg
        .set_desired(ConfigScope::Group("default".into()), obj(json!({"a": 1, "b": 1})))
        .await
        .unwrap();
    let v2 = reg
        .set_desired(ConfigScope::Device(a.clone()), obj(json!({"b": 2, "c": 2})))
        .await
        .unwrap();
    assert_eq!((v1, v2), (Ok(1), Ok(2)));
    let ea = reg.effective_config(&a).unwrap().unwrap();
    assert_eq!(
        (ea.version, Value::Object(ea.doc)),
        (2, json!({"a": 1, "b": 2, "c": 2}))
    );
    let eb = reg.effective_config(&b).unwrap().unwrap();
    assert_eq!((eb.version, Value::Object(eb.doc)), (1, json!({"a": 1, "b": 1})));
    let v3 = reg
        .set_desired(ConfigScope::Group("default".into()), obj(json!({"a": 3})))
        .await
        .unwrap();
    assert_eq!(v3, Ok(3));
    assert_eq!(reg.effective_config(&a).unwrap().unwrap().version, 3);
    let bad = reg
        .set_desired(ConfigScope::Device("d-00000000000000000000".into()), Map::new())
        .await
        .unwrap();
    assert_eq!(bad, Err(Refusal::NotFound));
    let bad = reg
        .set_desired(ConfigScope::Group("Bad".into()), Map::new())
        .await
        .unwrap();
    assert_eq!(bad, Err(Refusal::InvalidName));

    let drift = reg.config_drift(None).unwrap();
    let expected = |id: &str, reported| Drift {
        device_id: id.to_owned(),
        desired_version: 3,
        reported_version: reported,
    };
    let mut want = vec![expected(&a, None), expected(&b, None)];
    want.sort_by(|x, y| x.device_id.cmp(&y.device_id));
    assert_eq!(drift, want);
    reg.report_config(&a, 3).await.unwrap();
    reg.report_config(&b, 1).await.unwrap();
    reg.report_config("d-00000000000000000000", 1).await.unwrap();
    assert_eq!(reg.config_drift(Some("default")).unwrap(), vec![expected(&b, Some(1))]);
    assert!(reg.config_drift(Some("lab")).unwrap().is_empty());
    assert!(matches!(
        reg.report_config(&a, u64::MAX).await,
        Err(RegistryError::OutOfRange { .. })
    ));

    // Decommissioning drops the device document; the group's still applies.
    reg.decommission(&a).await.unwrap().unwrap();
    let ea = reg.effective_config(&a).unwrap().unwrap();
    assert_eq!((ea.version, Value::Object(ea.doc)), (3, json!({"a": 3})));
    assert_eq!(reg.config_drift(None).unwrap(), vec![expected(&b, Some(1))]);
}

#[tokio::test]
async fn audit_records_operator_actions_in_order() {
    let dir = Scratch::new("audit");
    let reg = with_claim(&dir, "factory").await;
    let (id, ..) = accepted(
        reg.provision("factory", "SN-1", ProvisionMeta::default())
            .await
            .unwrap(),
    );
    reg.set_desired(ConfigScope::Group("default".into()), obj(json!({"k": "v"})))
        .await
        .unwrap()
        .unwrap();
    reg.record_lifecycle(&id, "device.factory_reset", json!({"reason": "button"}))
        .await
        .unwrap();
    reg.decommission(&id).await.unwrap().unwrap();
    reg.release_serial("SN-1").await.unwrap().unwrap();
    reg.revoke_claim("factory").await.unwrap().unwrap();
    let log = reg.audit(0, 100).unwrap();
    let got: Vec<(Actor, &str, &str)> = log
        .iter()
        .map(|e| (e.actor, e.action.as_str(), e.subject.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            (Actor::Operator, "claim.created", "factory"),
            (Actor::Device, "device.provisioned", id.as_str()),
            (Actor::Operator, "config.desired_set", "group:default"),
            (Actor::Device, "device.factory_reset", id.as_str()),
            (Actor::Operator, "device.decommissioned", id.as_str()),
            (Actor::Operator, "serial.released", "SN-1"),
            (Actor::Operator, "claim.revoked", "factory"),
        ]
    );
    assert!(
        log.windows(2).all(|w| w[0].id < w[1].id && w[0].at < w[1].at),
        "ids and injected clock increase"
    );
    assert_eq!(log[2].detail, json!({"version": 1, "doc": {"k": "v"}}));
    let tail = reg.audit(log[4].id, 100).unwrap();
    assert_eq!(tail.len(), 2);
    assert_eq!(reg.audit(0, 3).unwrap().len(), 3);
}

#[tokio::test]
async fn device_listing_pages_by_id_and_group() {
    let dir = Scratch::new("pages");
    let reg = with_claim(&dir, "factory").await;
    reg.create_claim("lab", "s", "lab").await.unwrap().unwrap();
    for i in 0..7 {
        let claim = if i % 2 == 0 { "factory" } else { "lab" };
        accepted(
            reg.provision(claim, &format!("SN-{i}"), ProvisionMeta::default())
                .await
                .unwrap(),
        );
    }
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = reg.devices(Some("default"), after.as_deref(), 2).unwrap();
        let Some(last) = page.last() else { break };
        after = Some(last.id.clone());
        seen.extend(page.into_iter().map(|d| d.id));
    }
    assert_eq!(seen.len(), 4);
    assert!(seen.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(reg.devices(None, None, usize::MAX).unwrap().len(), 7);
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
    assert_eq!(reg.counts().unwrap().active, N as u64);
    for (id, token, ..) in &issued {
        assert_eq!(
            reg.authenticate_device(id, token.as_bytes()),
            DeviceAuth::Ok {
                group: "default".into()
            }
        );
    }
}
