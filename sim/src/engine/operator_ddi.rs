//! The operator of a hawkBit DDI server, through goosebit's management API: logs in, uploads
//! each OTA phase's image as a real SWUpdate bundle, starts a rollout per group (the group is
//! the server's feed), and at the end reads back what the server recorded (its rollouts'
//! success and failure counts, its devices by state and version) for the report. A
//! decommission phase deletes the picked devices from the server.
//!
//! goosebit's rollouts have no waves and no automatic halt: a scenario's `waves` and
//! `halt_above` cannot be played, so the phase's record says so, and the report shows the
//! exposure that results.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde_json::{Value, json};
use tokio::time::Instant;

use super::operator::firmware_image;
use super::operator_log::OperatorLog;
use crate::dialect::hawkbit::{HW_REVISION, Management};
use crate::scenario::Scenario;
use crate::scenario::typed::Campaign;
use crate::transport::http::{Method, post_form, put_multipart};

/// Logs in to the management API; the answer is the `Authorization` header to use.
pub async fn login(api: SocketAddr, user: &str, password: &str) -> Result<String, String> {
    match post_form(api, "/login", &[("username", user), ("password", password)]).await {
        Ok((200, answer)) => match answer["access_token"].as_str() {
            Some(token) => Ok(format!("Bearer {token}")),
            None => Err(format!("POST /login: no access_token in {answer}")),
        },
        Ok((status, answer)) => Err(format!(
            "POST /login: {status} {}: check the user and password the scenario's user_env and password_env name",
            answer["detail"]
        )),
        Err(e) => Err(format!("POST /login at http://{api}: {e}: is the server running?")),
    }
}

/// Uploads phase `k`'s image and starts a rollout of it to each of `groups`.
pub async fn start_rollouts(
    management: &Management,
    log: &OperatorLog,
    scenario: &Scenario,
    k: usize,
    groups: &[String],
    campaign: &Campaign,
    errors: &mut Vec<String>,
) -> Value {
    let mut boards: Vec<&str> = scenario
        .fleet
        .mix
        .iter()
        .filter(|m| groups.contains(&m.group))
        .map(|m| m.model.as_str())
        .collect();
    boards.sort_unstable();
    boards.dedup();
    let payload = firmware_image(scenario.seed, k, campaign.size_bytes);
    let bundle = swu(&campaign.version, &boards, &payload);
    let filename = format!("fleetsim-{}.swu", campaign.version);
    let uploaded = put_multipart(
        management.addr,
        "/api/v1/software",
        Some(&management.authorization),
        "file",
        &filename,
        &bundle,
    )
    .await;
    let software = match uploaded {
        Ok((200 | 201, answer)) => answer["id"].as_u64(),
        // The same version for the same boards is there already (an earlier run): reuse it.
        Ok((409, _)) => software_id(management, &campaign.version).await,
        Ok((status, answer)) => {
            errors.push(format!("PUT /api/v1/software: {status} {}", answer["detail"]));
            return Value::Null;
        }
        Err(e) => {
            errors.push(format!("PUT /api/v1/software: {e}"));
            return Value::Null;
        }
    };
    let Some(software) = software else {
        errors.push(format!("PUT /api/v1/software: no software id for {}", campaign.version));
        return Value::Null;
    };
    if campaign.waves.len() > 1 || campaign.halt_above.is_some() {
        errors.push(
            "goosebit's rollouts have no waves and no halt: the image goes to every device of the group at once"
                .to_owned(),
        );
    }
    let mut rollouts = Vec::new();
    for group in groups {
        log.rollout_started(group, Instant::now());
        let body = json!({
            "name": format!("{}-{}-{}", scenario.name, group, campaign.version),
            "feed": group,
            "software_id": software,
        });
        match call(management, Method::PUT, "/api/v1/rollouts", Some(&body)).await {
            Ok(answer) => rollouts.push(json!({ "group": group, "rollout": answer["id"], "software": software })),
            Err(e) => errors.push(e),
        }
    }
    json!({ "version": campaign.version, "bundle_bytes": bundle.len(), "rollouts": rollouts })
}

/// The id of the software with `version`, if the server holds it.
async fn software_id(management: &Management, version: &str) -> Option<u64> {
    let answer = call(management, Method::GET, "/api/v1/software", None).await.ok()?;
    answer["software"]
        .as_array()?
        .iter()
        .find(|s| s["version"] == version)
        .and_then(|s| s["id"].as_u64())
}

/// The ids of the server's devices in `group` (its feed).
pub async fn devices_of(management: &Management, group: &str) -> Result<Vec<String>, String> {
    let answer = call(management, Method::GET, "/api/v1/devices", None).await?;
    Ok(answer["devices"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|d| d["feed"] == group)
        .filter_map(|d| d["id"].as_str().map(str::to_owned))
        .collect())
}

/// Deletes `ids` from the server, as an operator retiring devices does: their tokens go with
/// them, so their next poll is refused. Returns how many were deleted.
pub async fn delete_devices(management: &Management, ids: &[String], errors: &mut Vec<String>) -> u64 {
    if ids.is_empty() {
        return 0;
    }
    match call(
        management,
        Method::DELETE,
        "/api/v1/devices",
        Some(&json!({ "devices": ids })),
    )
    .await
    {
        Ok(_) => ids.len() as u64,
        Err(e) => {
            errors.push(e);
            0
        }
    }
}

/// How long the view at the end waits for a server still working through the run's backlog.
const VIEW_PATIENCE: std::time::Duration = std::time::Duration::from_secs(90);

/// [`server_view`], asked again every two seconds for up to [`VIEW_PATIENCE`]: when the devices
/// stop, a saturated server still has their requests queued, and answers once it is through.
pub async fn server_view_patiently(management: &Management, groups: &[&str]) -> Result<Value, String> {
    let deadline = Instant::now() + VIEW_PATIENCE;
    loop {
        match server_view(management, groups).await {
            Ok(view) => return Ok(view),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => tokio::time::sleep(std::time::Duration::from_secs(2)).await,
        }
    }
}

/// What the server recorded for the run's `groups` (its feeds): their rollouts with their
/// counts, and their devices by update state and version (never their tokens).
pub async fn server_view(management: &Management, groups: &[&str]) -> Result<Value, String> {
    let rollouts = call(management, Method::GET, "/api/v1/rollouts", None).await?;
    let devices = call(management, Method::GET, "/api/v1/devices", None).await?;
    let rollouts: Vec<Value> = rollouts["rollouts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["feed"].as_str().is_some_and(|feed| groups.contains(&feed)))
        .map(|r| {
            json!({
                "id": r["id"], "name": r["name"], "feed": r["feed"], "version": r["software"]["version"],
                "paused": r["paused"], "success_count": r["success_count"], "failure_count": r["failure_count"],
            })
        })
        .collect();
    let (mut by_state, mut by_version) = (BTreeMap::<String, u64>::new(), BTreeMap::<String, u64>::new());
    let mut by_feed = BTreeMap::<String, u64>::new();
    let list: Vec<Value> = devices["devices"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|d| d["feed"].as_str().is_some_and(|feed| groups.contains(&feed)))
        .cloned()
        .collect();
    for device in &list {
        let feed = device["feed"].as_str().unwrap_or("none").to_owned();
        *by_feed.entry(feed).or_default() += 1;
        let state = device["last_state"].as_str().unwrap_or("unknown").to_owned();
        *by_state.entry(state).or_default() += 1;
        let version = device["sw_version"].as_str().unwrap_or("unknown").to_owned();
        *by_version.entry(version).or_default() += 1;
    }
    Ok(json!({
        "rollouts": rollouts,
        "devices": { "count": list.len(), "by_state": by_state, "by_version": by_version, "by_feed": by_feed },
    }))
}

async fn call(management: &Management, method: Method, path: &str, body: Option<&Value>) -> Result<Value, String> {
    let what = format!("{method} {path}");
    match management.request(None, method, path, body).await {
        Ok((200..=299, answer)) => Ok(answer),
        Ok((status, answer)) => Err(format!("{what}: {status} {}", answer["detail"])),
        Err(e) => Err(format!("{what}: {e}")),
    }
}

/// A SWUpdate bundle: a cpio "newc" archive whose first member is `sw-description` (the
/// version, and the boards and revision it is compatible with), then the image, then the
/// trailer.
pub fn swu(version: &str, boards: &[&str], image: &[u8]) -> Vec<u8> {
    let compatible: Vec<String> = boards
        .iter()
        .map(|board| format!("  {board} = {{ hardware-compatibility = [ \"{HW_REVISION}\" ]; }};\n"))
        .collect();
    let description = format!(
        "software =\n{{\n  version = \"{version}\";\n{}  images: ( {{ filename = \"image.bin\"; type = \"raw\"; device = \"/dev/null\"; }} );\n}};\n",
        compatible.concat()
    );
    let mut archive = Vec::with_capacity(image.len() + 1024);
    cpio_member(&mut archive, 1, "sw-description", description.as_bytes());
    cpio_member(&mut archive, 2, "image.bin", image);
    cpio_member(&mut archive, 0, "TRAILER!!!", &[]);
    archive
}

/// One member of a cpio "newc" archive: the 110-byte header, the name and its NUL, the data,
/// each padded to four bytes.
fn cpio_member(out: &mut Vec<u8>, inode: u32, name: &str, data: &[u8]) {
    let mode = if data.is_empty() && inode == 0 { 0 } else { 0o100_644 };
    let fields = [
        inode,
        mode,
        0,
        0,
        1,
        0,
        u32::try_from(data.len()).unwrap_or(u32::MAX),
        0,
        0,
        0,
        0,
        u32::try_from(name.len() + 1).unwrap_or(u32::MAX),
        0,
    ];
    out.extend_from_slice(b"070701");
    for field in fields {
        out.extend_from_slice(format!("{field:08X}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    pad4(out);
    out.extend_from_slice(data);
    pad4(out);
}

fn pad4(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bundle_is_a_cpio_archive_led_by_its_description() {
        let bundle = swu("2.0.0", &["temp-sensor", "gateway"], &[7u8; 1000]);
        assert_eq!(&bundle[..6], b"070701", "newc magic");
        // The header's name size field, then the name: sw-description comes first.
        let name_size = usize::from_str_radix(std::str::from_utf8(&bundle[94..102]).expect("hex"), 16).expect("hex");
        assert_eq!(&bundle[110..110 + name_size - 1], b"sw-description");
        let data_size = usize::from_str_radix(std::str::from_utf8(&bundle[54..62]).expect("hex"), 16).expect("hex");
        let start = (110 + name_size).next_multiple_of(4);
        let description = std::str::from_utf8(&bundle[start..start + data_size]).expect("text");
        assert!(description.contains("version = \"2.0.0\""));
        assert!(description.contains("temp-sensor = { hardware-compatibility = [ \"1.0\" ]; };"));
        assert!(bundle.len().is_multiple_of(4) && bundle.len() > 1000);
        assert!(bundle.windows(10).any(|w| w == b"TRAILER!!!"));
    }
}
