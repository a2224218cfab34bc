//! The operator of a hawkBit DDI server, through goosebit's management API: logs in, uploads
//! each OTA phase's image as a real SWUpdate bundle, starts a rollout per group (the group is
//! the server's feed). A decommission phase deletes the picked devices from the server.
//!
//! goosebit's rollouts have no waves and no automatic halt: a scenario's `waves` and
//! `halt_above` cannot be played, so the phase's record says so, and the report shows the
//! exposure that results.

use std::net::SocketAddr;

use serde_json::{Value, json};
use tokio::time::Instant;

use super::swu::swu;
use super::{Hawkbit, Management};
use crate::dialect::phase::{firmware_image, pick};
use crate::dialect::{Operator, PhaseCx, Played};
use crate::scenario::{Action, Campaign};
use crate::transport::http::{Method, post_form, put_multipart};

impl Operator for Hawkbit {
    /// Rollouts and retiring devices need the management API.
    fn operates(&self) -> bool {
        self.management.is_some()
    }

    async fn play(&self, cx: PhaseCx<'_>) -> Played {
        let mut played = Played::default();
        let Some(management) = &self.management else {
            played
                .errors
                .push("no management API (backend.api) to play phases through".to_owned());
            return played;
        };
        played.detail = match &cx.phase.action {
            Action::Ota(campaign) => start_rollouts(management, &cx, campaign, &mut played.errors).await,
            Action::Decommission { share } => {
                let mut candidates = Vec::new();
                for group in cx.groups {
                    match devices_of(management, group).await {
                        Ok(ids) => candidates.extend(ids.into_iter().map(|id| (id.clone(), id))),
                        Err(e) => played.errors.push(e),
                    }
                }
                let picked = pick(candidates, cx.scenario.seed, cx.index, *share);
                let done = delete_devices(management, &picked, &mut played.errors).await;
                played.decommissioned = done;
                json!({ "picked": picked.len(), "decommissioned": done })
            }
            // Refused before the run (`keys`): DDI has no config push, commands or
            // certificates, and devices cut themselves off (and fall into faults) on their own.
            Action::Config { .. }
            | Action::Command { .. }
            | Action::Rotate { .. }
            | Action::Alert(_)
            | Action::Outage { .. }
            | Action::Fault { .. } => Value::Null,
        };
        played
    }
}

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

/// Uploads the phase's image and starts a rollout of it to each of its groups.
async fn start_rollouts(
    management: &Management,
    cx: &PhaseCx<'_>,
    campaign: &Campaign,
    errors: &mut Vec<String>,
) -> Value {
    let scenario = cx.scenario;
    let mut boards: Vec<&str> = scenario
        .fleet
        .mix
        .iter()
        .filter(|m| cx.groups.contains(&m.group))
        .map(|m| m.model.as_str())
        .collect();
    boards.sort_unstable();
    boards.dedup();
    let payload = firmware_image(scenario.seed, cx.index, &campaign.version, campaign.size_bytes);
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
    for group in cx.groups {
        cx.log.rollout_started(group, Instant::now());
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
async fn devices_of(management: &Management, group: &str) -> Result<Vec<String>, String> {
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
async fn delete_devices(management: &Management, ids: &[String], errors: &mut Vec<String>) -> u64 {
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

pub(super) async fn call(
    management: &Management,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> Result<Value, String> {
    let what = format!("{method} {path}");
    match management.request(None, method, path, body).await {
        Ok((200..=299, answer)) => Ok(answer),
        Ok((status, answer)) => Err(format!("{what}: {status} {}", answer["detail"])),
        Err(e) => Err(format!("{what}: {e}")),
    }
}
