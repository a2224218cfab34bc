//! A hawkBit run's check of the server against its devices: the updates' outcomes as the
//! devices reported them beside what the server recorded (its devices' states `Finished`,
//! `Error` and `Running`, and its rollouts' counters). Written by a run, and again by a merge
//! from the merged counters.

use serde_json::{Value, json};

use crate::metrics::recorder::Counter;

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
