//! `summary.hawkbit`: what a run learned about the server (the polling intervals it imposed,
//! how devices authenticated) and, with its management API, what it recorded (its rollouts'
//! success and failure counts, its devices by state and version), checked against what the
//! devices reported: the updates' outcomes beside the server's devices in `Finished`, `Error`
//! and `Running`, and its rollouts' counters. Written by a run, and again by a merge from the
//! merged counters.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use tokio::time::Instant;

use super::Hawkbit;
use super::operator::call;
use crate::dialect::{BackendView, Summary, ViewCx};
use crate::metrics::recorder::Counter;
use crate::transport::http::Method;

impl Summary for Hawkbit {
    /// The server's records are read by the process that played the operator, which holds the
    /// management login.
    async fn view(&self, cx: ViewCx<'_>) -> BackendView {
        let imposed = self.imposed.range().map(
            |(shortest, longest)| json!({ "shortest_s": shortest.as_secs_f64(), "longest_s": longest.as_secs_f64() }),
        );
        let server = match (&self.management, cx.operated) {
            (Some(management), true) => match server_view_patiently(management, cx.groups).await {
                Ok(view) => view,
                Err(e) => json!({ "error": e }),
            },
            _ => Value::Null,
        };
        let mut section = json!({
            "tenant": &*self.tenant, "device_auth": self.auth.name(), "poll_interval": imposed, "server": server,
        });
        section["agreement"] = agreement(&section["server"], &|c| cx.snapshot.count(c));
        BackendView {
            campaigns: Vec::new(),
            // The devices the server holds in the run's groups (the view counts only those).
            devices_active: section["server"]["devices"]["count"].as_u64(),
            notes: disagreement(&section["agreement"]).into_iter().collect(),
            section: Some(section),
        }
    }

    fn merge_section(sections: &[&Value], count: &dyn Fn(Counter) -> u64) -> Value {
        merged(sections, count)
    }
}

/// How long the view at the end waits for a server still working through the run's backlog.
const VIEW_PATIENCE: std::time::Duration = std::time::Duration::from_secs(90);

/// [`server_view`], asked again every two seconds for up to [`VIEW_PATIENCE`]: when the devices
/// stop, a saturated server still has their requests queued, and answers once it is through.
async fn server_view_patiently(management: &super::Management, groups: &[&str]) -> Result<Value, String> {
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
async fn server_view(management: &super::Management, groups: &[&str]) -> Result<Value, String> {
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

/// The agreement table, from the server's view (`summary.hawkbit.server`) and the devices'
/// counters; `Null` when the server could not be read.
pub fn agreement(server: &Value, count: &dyn Fn(Counter) -> u64) -> Value {
    if !server["devices"].is_object() {
        return Value::Null;
    }
    let state = |name: &str| server["devices"]["by_state"][name].as_u64().unwrap_or(0);
    let rollouts = server["rollouts"].as_array().cloned().unwrap_or_default();
    let sum = |key: &str| rollouts.iter().filter_map(|r| r[key].as_u64()).sum::<u64>();
    json!({
        "devices_installed": count(Counter::OtaInstalled),
        "devices_failed": count(Counter::OtaFailed) + count(Counter::OtaRolledBack),
        "devices_bricked": count(Counter::OtaBricked),
        "server_finished": state("Finished"),
        "server_error": state("Error"),
        "server_running": state("Running"),
        "rollout_success_count": sum("success_count"),
        "rollout_failure_count": sum("failure_count"),
    })
}

/// A line saying where the server's records and the devices' reports disagree, if they do.
pub fn disagreement(agreement: &Value) -> Option<String> {
    if agreement.is_null() {
        return None;
    }
    let n = |key: &str| agreement[key].as_u64().unwrap_or(0);
    let mut lines = Vec::new();
    if n("server_finished") != n("devices_installed") || n("server_error") != n("devices_failed") {
        lines.push(format!(
            "the server's devices: {} finished and {} in error, but devices reported {} installed and {} failed",
            n("server_finished"),
            n("server_error"),
            n("devices_installed"),
            n("devices_failed")
        ));
    }
    if n("rollout_success_count") != n("devices_installed") || n("rollout_failure_count") != n("devices_failed") {
        lines.push(format!(
            "the server's rollout counters: {} successes and {} failures, but devices reported {} installed and {} failed",
            n("rollout_success_count"),
            n("rollout_failure_count"),
            n("devices_installed"),
            n("devices_failed")
        ));
    }
    (!lines.is_empty()).then(|| format!("hawkbit: {}", lines.join("; ")))
}

/// The `hawkbit` section of merged parts: the server's view from the part that read it (the
/// operator's shard), the polling intervals over all parts, and the agreement again from the
/// merged counters.
pub fn merged(sections: &[&Value], count: &dyn Fn(Counter) -> u64) -> Value {
    let Some(first) = sections.iter().find(|s| s.is_object()) else {
        return Value::Null;
    };
    let mut merged = (*first).clone();
    if let Some(with_server) = sections.iter().find(|s| s["server"]["devices"].is_object()) {
        merged["server"] = with_server["server"].clone();
    }
    let pick = |key: &'static str| sections.iter().filter_map(move |s| s["poll_interval"][key].as_f64());
    merged["poll_interval"] = match (pick("shortest_s").reduce(f64::min), pick("longest_s").reduce(f64::max)) {
        (Some(shortest), Some(longest)) => json!({ "shortest_s": shortest, "longest_s": longest }),
        _ => Value::Null,
    };
    merged["agreement"] = agreement(&merged["server"], count);
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(finished: u64, error: u64) -> Value {
        json!({
            "devices": { "by_state": { "Finished": finished, "Error": error } },
            "rollouts": [ { "success_count": 3, "failure_count": 1 } ],
        })
    }

    #[test]
    fn a_server_that_agrees_says_nothing_and_one_that_does_not_is_named() {
        let count = |c: Counter| match c {
            Counter::OtaInstalled => 10,
            Counter::OtaRolledBack => 4,
            Counter::OtaFailed => 1,
            _ => 0,
        };
        let agrees = agreement(&server(10, 5), &count);
        let line = disagreement(&agrees).expect("the counters differ");
        assert!(line.contains("rollout counters: 3 successes") && !line.contains("server's devices"));
        let differs = agreement(&server(9, 5), &count);
        assert!(disagreement(&differs).expect("differs").contains("9 finished"));
        assert_eq!(agreement(&Value::Null, &count), Value::Null);
    }

    #[test]
    fn merged_parts_keep_the_servers_view_and_the_widest_intervals() {
        let a = json!({ "poll_interval": { "shortest_s": 10.0, "longest_s": 10.0 }, "server": null });
        let b = json!({ "poll_interval": { "shortest_s": 5.0, "longest_s": 10.0 }, "server": server(2, 1) });
        let merged = merged(&[&a, &b], &|_| 0);
        assert_eq!(merged["poll_interval"]["shortest_s"], 5.0);
        assert_eq!(merged["server"]["devices"]["by_state"]["Finished"], 2);
        assert_eq!(merged["agreement"]["server_finished"], 2);
    }
}
