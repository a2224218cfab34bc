//! The operator HTTP API through a real HTTP client (ureq) against a real backend on
//! loopback: claims, device listing and lookup, decommissioning and serial release, desired
//! config and drift, the audit log, `/metrics`, `/healthz` and the JSON error format.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{PATIENCE, TestBackend, next_publish, sample, wait_closed, wait_for};
use rumqttc::{ConnectReturnCode, Packet, QoS};
use serde_json::{Value, json};

/// Parses a response body that must be JSON.
fn parse(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body:?}"))
}

/// Checks an error response: its status, its `error` code, and that its `message` holds
/// every one of `mentions`.
fn assert_error(response: (u16, String), status: u16, code: &str, mentions: &[&str]) {
    let (got, body) = response;
    assert_eq!(got, status, "{body}");
    let body = parse(&body);
    assert_eq!(body["error"], code, "{body}");
    let message = body["message"].as_str().unwrap_or_else(|| panic!("no message: {body}"));
    for mention in mentions {
        assert!(
            message.contains(mention),
            "message should mention {mention:?}: {message}"
        );
    }
}

/// `GET path`, which must answer 200 with JSON.
async fn get_ok(t: &TestBackend, path: &str) -> Value {
    let (status, body) = t.http("GET", path, None).await;
    assert_eq!(status, 200, "GET {path}: {body}");
    parse(&body)
}

/// Subscribes a device to its desired-config topic and waits for the SUBACK.
async fn subscribe_config(client: &rumqttc::AsyncClient, eventloop: &mut rumqttc::EventLoop, id: &str) {
    client
        .subscribe(format!("fleet/v1/d/{id}/config/desired"), QoS::AtLeastOnce)
        .await
        .expect("queue subscribe");
    wait_for(eventloop, |p| matches!(p, Packet::SubAck(_))).await;
}

#[tokio::test]
async fn creating_a_claim_returns_201_and_the_claim_provisions_into_its_group() {
    let t = TestBackend::start().await;
    let (status, body) = t
        .http(
            "POST",
            "/api/v1/claims",
            Some(r#"{"name": "lab", "secret": "l4b", "default_group": "lab"}"#),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(parse(&body), json!({ "name": "lab", "default_group": "lab" }));
    let (status, body) = t
        .http("POST", "/api/v1/claims", Some(r#"{"name": "plain", "secret": "p"}"#))
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        parse(&body),
        json!({ "name": "plain", "default_group": "default" }),
        "the group defaults to \"default\""
    );
    let (outcome, reply) = t.provision("SN-LAB", "claim:lab", "l4b").await;
    assert_eq!(outcome, "accepted", "{reply}");
    assert_eq!(reply["group"], "lab");
    t.stop().await;
}

#[tokio::test]
async fn a_duplicate_claim_is_409_already_exists() {
    let t = TestBackend::start().await;
    let response = t
        .http(
            "POST",
            "/api/v1/claims",
            Some(r#"{"name": "factory", "secret": "other"}"#),
        )
        .await;
    assert_error(response, 409, "already_exists", &["\"factory\""]);
    t.stop().await;
}

#[tokio::test]
async fn a_malformed_claim_body_is_400_naming_the_parse_error() {
    let t = TestBackend::start().await;
    let response = t.http("POST", "/api/v1/claims", Some(r#"{"name": "lab","#)).await;
    assert_error(
        response,
        400,
        "bad_request",
        &["request body", "JSON", "EOF while parsing", "line 1 column 15"],
    );
    t.stop().await;
}

#[tokio::test]
async fn a_claim_body_of_the_wrong_shape_is_400_naming_the_field() {
    let t = TestBackend::start().await;
    let cases = [
        (
            r#"{"name": "lab", "secret": "s", "colour": "red"}"#,
            "unknown field `colour`",
        ),
        (r#"{"name": "lab"}"#, "missing field `secret`"),
        (r#"{"name": 7, "secret": "s"}"#, "name: invalid type: integer `7`"),
        // Not the struct's fields in order: a body is an object or nothing.
        (r#"["lab", "s"]"#, "invalid type: sequence, expected a JSON object"),
    ];
    for (body, mention) in cases {
        let response = t.http("POST", "/api/v1/claims", Some(body)).await;
        assert_error(response, 400, "bad_request", &["request body", mention]);
    }
    assert_eq!(t.backend.registry.counts().claims, 1, "nothing was created");
    t.stop().await;
}

#[tokio::test]
async fn an_invalid_claim_or_group_name_is_400_naming_the_field() {
    let t = TestBackend::start().await;
    let response = t
        .http("POST", "/api/v1/claims", Some(r#"{"name": "Lab Two", "secret": "s"}"#))
        .await;
    assert_error(response, 400, "invalid_name", &["name \"Lab Two\"", "a-z, 0-9 and '-'"]);
    let response = t
        .http(
            "POST",
            "/api/v1/claims",
            Some(r#"{"name": "lab", "secret": "s", "default_group": "Lab_Group"}"#),
        )
        .await;
    assert_error(response, 400, "invalid_name", &["default_group \"Lab_Group\""]);
    let (_, body) = t
        .http(
            "POST",
            "/api/v1/claims",
            Some(r#"{"name": "lab", "secret": "s", "default_group": "Lab_Group"}"#),
        )
        .await;
    assert!(
        !parse(&body)["message"].as_str().unwrap_or_default().contains("\"lab\""),
        "the valid name is not blamed: {body}"
    );
    let response = t
        .http("POST", "/api/v1/claims", Some(r#"{"name": "lab", "secret": ""}"#))
        .await;
    assert_error(response, 400, "invalid_secret", &["1 to 256 bytes"]);
    t.stop().await;
}

#[tokio::test]
async fn a_revoked_claim_is_refused_at_connect() {
    let t = TestBackend::start().await;
    let (status, body) = t.http("DELETE", "/api/v1/claims/factory", None).await;
    assert_eq!((status, body.as_str()), (204, ""));
    let refused = t.connect(t.options("p-after-revoke", "claim:factory", "s3cret")).await;
    assert_eq!(refused.err(), Some(ConnectReturnCode::NotAuthorized));
    assert_eq!(t.backend.gateway.stats().connects_refused.load(Ordering::Relaxed), 1);
    let again = t.http("DELETE", "/api/v1/claims/factory", None).await;
    assert_error(again, 409, "already_revoked", &["\"factory\""]);
    t.stop().await;
}

#[tokio::test]
async fn revoking_an_unknown_claim_is_404() {
    let t = TestBackend::start().await;
    let response = t.http("DELETE", "/api/v1/claims/nosuch", None).await;
    assert_error(response, 404, "not_found", &["\"nosuch\""]);
    t.stop().await;
}

#[tokio::test]
async fn devices_are_listed_in_id_order_a_page_at_a_time() {
    let t = TestBackend::start().await;
    let mut provisioned = Vec::new();
    for i in 0..5 {
        let (outcome, body) = t.provision(&format!("SN-PAGE-{i}"), "claim:factory", "s3cret").await;
        assert_eq!(outcome, "accepted", "{body}");
        provisioned.push(body["device_id"].as_str().expect("id").to_owned());
    }
    provisioned.sort();
    let mut seen = Vec::new();
    let mut pages = Vec::new();
    let mut path = "/api/v1/devices?limit=2".to_owned();
    loop {
        let page = get_ok(&t, &path).await;
        let devices = page["devices"].as_array().expect("devices array").clone();
        pages.push(devices.len());
        for device in &devices {
            assert_eq!(device["state"], "active", "{device}");
            assert_eq!(device["group"], "sensors", "{device}");
            assert!(device["serial"].as_str().is_some_and(|s| s.starts_with("SN-PAGE-")));
            seen.push(device["id"].as_str().expect("id").to_owned());
        }
        match page["next_after"].as_str() {
            Some(after) => {
                assert_eq!(
                    Some(after),
                    seen.last().map(String::as_str),
                    "next_after is the last id"
                );
                path = format!("/api/v1/devices?limit=2&after={after}");
            }
            None => break,
        }
    }
    assert_eq!(pages, vec![2, 2, 1]);
    assert_eq!(seen, provisioned, "every device once, in id order");
    let all = get_ok(&t, "/api/v1/devices").await;
    assert_eq!(all["devices"].as_array().map(Vec::len), Some(5));
    assert_eq!(all["next_after"], Value::Null, "a short page has no next page");
    t.stop().await;
}

#[tokio::test]
async fn devices_can_be_filtered_by_group() {
    let t = TestBackend::start().await;
    let (status, body) = t
        .http(
            "POST",
            "/api/v1/claims",
            Some(r#"{"name": "lab", "secret": "l4b", "default_group": "lab"}"#),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (_, lab) = t.provision("SN-LAB-1", "claim:lab", "l4b").await;
    t.provision("SN-SENS-1", "claim:factory", "s3cret").await;
    t.provision("SN-SENS-2", "claim:factory", "s3cret").await;
    let page = get_ok(&t, "/api/v1/devices?group=lab").await;
    let devices = page["devices"].as_array().expect("devices");
    assert_eq!(devices.len(), 1, "{page}");
    assert_eq!(devices[0]["id"], lab["device_id"]);
    assert_eq!(devices[0]["group"], "lab");
    let page = get_ok(&t, "/api/v1/devices?group=sensors").await;
    let groups: Vec<&Value> = page["devices"]
        .as_array()
        .expect("devices")
        .iter()
        .map(|d| &d["group"])
        .collect();
    assert_eq!(groups, vec!["sensors", "sensors"], "{page}");
    let page = get_ok(&t, "/api/v1/devices?group=nosuch").await;
    assert_eq!(page, json!({ "devices": [], "next_after": null }));
    t.stop().await;
}

#[tokio::test]
async fn a_device_page_limit_outside_1_to_1000_is_400() {
    let t = TestBackend::start().await;
    let response = t.http("GET", "/api/v1/devices?limit=0", None).await;
    assert_error(response, 400, "bad_request", &["limit must be 1 to 1000, found 0"]);
    let response = t.http("GET", "/api/v1/devices?limit=1001", None).await;
    assert_error(response, 400, "bad_request", &["found 1001"]);
    let response = t.http("GET", "/api/v1/devices?limit=ten", None).await;
    assert_error(response, 400, "bad_request", &["query string", "limit"]);
    t.stop().await;
}

#[tokio::test]
async fn an_unknown_query_key_is_400() {
    let t = TestBackend::start().await;
    let response = t.http("GET", "/api/v1/devices?page=2", None).await;
    assert_error(response, 400, "bad_request", &["query string", "unknown field `page`"]);
    let response = t.http("GET", "/api/v1/config/drift?groups=sensors", None).await;
    assert_error(response, 400, "bad_request", &["unknown field `groups`"]);
    t.stop().await;
}

#[tokio::test]
async fn a_device_is_online_while_connected_and_offline_after_it_disconnects() {
    let t = TestBackend::start().await;
    let (client, mut eventloop, id) = t.device("SN-ONLINE").await;
    let path = format!("/api/v1/devices/{id}");
    let shown = get_ok(&t, &path).await;
    assert_eq!(shown["online"], true, "{shown}");
    assert_eq!(shown["device"]["id"], id.as_str());
    assert_eq!(shown["device"]["serial"], "SN-ONLINE");
    assert_eq!(shown["device"]["claim"], "factory");
    assert_eq!(shown["device"]["model"], "temp-sensor");
    assert_eq!(shown["device"]["state"], "active");
    assert_eq!(shown["config"], json!({ "version": 0, "desired": {} }));
    client.disconnect().await.expect("queue disconnect");
    wait_closed(&mut eventloop).await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let shown = get_ok(&t, &path).await;
        if shown["online"] == false {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "still online: {shown}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    t.stop().await;
}

#[tokio::test]
async fn an_unknown_device_is_404() {
    let t = TestBackend::start().await;
    let response = t.http("GET", "/api/v1/devices/d-00000000000000000000", None).await;
    assert_error(response, 404, "not_found", &["d-00000000000000000000"]);
    let response = t.http("GET", "/api/v1/devices/not-an-id", None).await;
    assert_error(response, 404, "not_found", &["not-an-id"]);
    t.stop().await;
}

#[tokio::test]
async fn decommissioning_twice_is_204_then_409() {
    let t = TestBackend::start().await;
    let (_, body) = t.provision("SN-DECOM", "claim:factory", "s3cret").await;
    let id = body["device_id"].as_str().expect("id");
    let path = format!("/api/v1/devices/{id}/decommission");
    let (status, reply) = t.http("POST", &path, None).await;
    assert_eq!((status, reply.as_str()), (204, ""));
    let again = t.http("POST", &path, None).await;
    assert_error(again, 409, "already_decommissioned", &[id]);
    let shown = get_ok(&t, &format!("/api/v1/devices/{id}")).await;
    assert_eq!(shown["device"]["state"], "decommissioned");
    assert!(shown["device"]["decommissioned_at"].is_u64(), "{shown}");
    let unknown = t
        .http("POST", "/api/v1/devices/d-00000000000000000000/decommission", None)
        .await;
    assert_error(unknown, 404, "not_found", &["d-00000000000000000000"]);
    t.stop().await;
}

#[tokio::test]
async fn a_serial_is_released_only_after_decommission_and_then_provisions_as_a_new_device() {
    let t = TestBackend::start().await;
    let (_, first) = t.provision("SN-AGAIN", "claim:factory", "s3cret").await;
    let old_id = first["device_id"].as_str().expect("id").to_owned();
    let release = "/api/v1/serials/SN-AGAIN/release";
    let early = t.http("POST", release, None).await;
    assert_error(early, 409, "not_decommissioned", &["SN-AGAIN", "decommission it first"]);
    let (status, body) = t
        .http("POST", &format!("/api/v1/devices/{old_id}/decommission"), None)
        .await;
    assert_eq!(status, 204, "{body}");
    let (status, body) = t.http("POST", release, None).await;
    assert_eq!((status, body.as_str()), (204, ""));
    let (outcome, second) = t.provision("SN-AGAIN", "claim:factory", "s3cret").await;
    assert_eq!(outcome, "accepted", "{second}");
    let new_id = second["device_id"].as_str().expect("id");
    assert_ne!(new_id, old_id, "a released serial comes back as a new identity");
    assert_ne!(second["token"], first["token"]);
    let old = get_ok(&t, &format!("/api/v1/devices/{old_id}")).await;
    assert_eq!(old["device"]["state"], "released");
    let new = get_ok(&t, &format!("/api/v1/devices/{new_id}")).await;
    assert_eq!(
        (&new["device"]["state"], &new["device"]["generation"]),
        (&json!("active"), &json!(2))
    );
    let twice = t.http("POST", release, None).await;
    assert_error(twice, 409, "not_decommissioned", &["SN-AGAIN"]);
    let unknown = t.http("POST", "/api/v1/serials/SN-NEVER/release", None).await;
    assert_error(unknown, 404, "not_found", &["SN-NEVER"]);
    let invalid = t.http("POST", "/api/v1/serials/SN%20BAD/release", None).await;
    assert_error(
        invalid,
        400,
        "invalid_name",
        &["\"SN BAD\" is not a valid serial", "A-Z"],
    );
    t.stop().await;
}

#[tokio::test]
async fn a_group_config_gets_increasing_versions_and_reaches_the_groups_connected_devices() {
    let t = TestBackend::start().await;
    let (status, body) = t
        .http(
            "POST",
            "/api/v1/claims",
            Some(r#"{"name": "lab", "secret": "l4b", "default_group": "lab"}"#),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (client_a, mut loop_a, a) = t.device("SN-GRP-A").await;
    let (client_b, mut loop_b, b) = t.device("SN-GRP-B").await;
    subscribe_config(&client_a, &mut loop_a, &a).await;
    subscribe_config(&client_b, &mut loop_b, &b).await;
    // An offline device of the group and a connected device of another group are not pushed to.
    t.provision("SN-GRP-OFF", "claim:factory", "s3cret").await;
    let (lab_outcome, lab) = t.provision("SN-GRP-LAB", "claim:lab", "l4b").await;
    assert_eq!(lab_outcome, "accepted", "{lab}");
    let lab_id = lab["device_id"].as_str().expect("id");
    let lab_token = lab["token"].as_str().expect("token");
    let (_lab_client, _lab_loop, _) = t
        .connect(t.options(lab_id, lab_id, lab_token))
        .await
        .expect("lab connects");

    let mut last_version = 0;
    for mode in ["eco", "turbo"] {
        let body = json!({ "desired": { "mode": mode, "interval_s": 60 } }).to_string();
        let (status, reply) = t.http("PUT", "/api/v1/groups/sensors/config", Some(&body)).await;
        assert_eq!(status, 200, "{reply}");
        let reply = parse(&reply);
        assert_eq!(reply["group"], "sensors");
        assert_eq!(reply["pushed"], 2, "the two connected devices of the group: {reply}");
        let version = reply["version"].as_u64().expect("version");
        assert!(
            version > last_version,
            "versions increase: {version} after {last_version}"
        );
        last_version = version;
        for (eventloop, id) in [(&mut loop_a, &a), (&mut loop_b, &b)] {
            let publish = next_publish(eventloop).await;
            assert_eq!(publish.topic, format!("fleet/v1/d/{id}/config/desired"));
            assert_eq!(publish.qos, QoS::AtLeastOnce);
            assert!(
                !publish.retain,
                "a live delivery to a subscriber has RETAIN 0 (MQTT-3.3.1-9)"
            );
            let config: Value = serde_json::from_slice(&publish.payload).expect("JSON");
            assert_eq!(
                config,
                json!({ "version": version, "desired": { "mode": mode, "interval_s": 60 } })
            );
        }
    }
    let shown = get_ok(&t, &format!("/api/v1/devices/{a}")).await;
    assert_eq!(shown["config"]["version"], last_version);
    assert_eq!(shown["config"]["desired"]["mode"], "turbo");
    t.stop().await;
}

#[tokio::test]
async fn a_device_config_for_an_unknown_device_is_404() {
    let t = TestBackend::start().await;
    let response = t
        .http(
            "PUT",
            "/api/v1/devices/d-00000000000000000000/config",
            Some(r#"{"desired": {"mode": "eco"}}"#),
        )
        .await;
    assert_error(response, 404, "not_found", &["d-00000000000000000000"]);
    let response = t
        .http("PUT", "/api/v1/groups/sensors/config", Some(r#"{"desired": ["mode"]}"#))
        .await;
    assert_error(response, 400, "bad_request", &["desired: invalid type: sequence"]);
    t.stop().await;
}

#[tokio::test]
async fn drift_lists_a_device_until_it_reports_the_desired_version() {
    let t = TestBackend::start().await;
    let (client, mut eventloop, id) = t.device("SN-DRIFT").await;
    assert_eq!(
        get_ok(&t, "/api/v1/config/drift").await,
        json!({ "drift": [] }),
        "nothing desired, nothing to drift from"
    );
    let (status, reply) = t
        .http(
            "PUT",
            "/api/v1/groups/sensors/config",
            Some(r#"{"desired": {"mode": "eco"}}"#),
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    let version = parse(&reply)["version"].as_u64().expect("version");
    let expected = json!({ "drift": [{ "device_id": id, "desired_version": version, "reported_version": null }] });
    assert_eq!(get_ok(&t, "/api/v1/config/drift").await, expected);
    assert_eq!(get_ok(&t, "/api/v1/config/drift?group=sensors").await, expected);
    assert_eq!(
        get_ok(&t, "/api/v1/config/drift?group=lab").await,
        json!({ "drift": [] })
    );
    client
        .publish(
            format!("fleet/v1/d/{id}/config/reported"),
            QoS::AtLeastOnce,
            false,
            json!({ "version": version }).to_string(),
        )
        .await
        .expect("queue");
    // The gateway acknowledges a report once it is committed.
    wait_for(&mut eventloop, |p| matches!(p, Packet::PubAck(_))).await;
    assert_eq!(get_ok(&t, "/api/v1/config/drift").await, json!({ "drift": [] }));
    t.stop().await;
}

#[tokio::test]
async fn the_audit_log_lists_actions_in_order_with_increasing_ids() {
    let t = TestBackend::start().await;
    let (_, body) = t.provision("SN-AUDIT", "claim:factory", "s3cret").await;
    let id = body["device_id"].as_str().expect("id");
    let (status, reply) = t
        .http(
            "PUT",
            "/api/v1/groups/sensors/config",
            Some(r#"{"desired": {"k": "v"}}"#),
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    let (status, reply) = t
        .http("POST", &format!("/api/v1/devices/{id}/decommission"), None)
        .await;
    assert_eq!(status, 204, "{reply}");
    let log = get_ok(&t, "/api/v1/audit").await;
    let entries = log["entries"].as_array().expect("entries");
    let got: Vec<(&str, &str, &str)> = entries
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap_or_default(),
                e["actor"].as_str().unwrap_or_default(),
                e["subject"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("claim.created", "operator", "factory"),
            ("device.provisioned", "device", id),
            ("config.desired_set", "operator", "group:sensors"),
            ("device.decommissioned", "operator", id),
        ]
    );
    let ids: Vec<i64> = entries.iter().map(|e| e["id"].as_i64().expect("id")).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids increase: {ids:?}");
    assert_eq!(entries[1]["detail"]["serial"], "SN-AUDIT");
    assert_eq!(entries[2]["detail"]["doc"], json!({ "k": "v" }));
    let tail = get_ok(&t, &format!("/api/v1/audit?after={}&limit=1", ids[1])).await;
    let tail = tail["entries"].as_array().expect("entries");
    assert_eq!(tail.len(), 1);
    assert_eq!(tail[0]["id"], ids[2]);
    let response = t.http("GET", "/api/v1/audit?limit=0", None).await;
    assert_error(response, 400, "bad_request", &["limit must be 1 to 1000"]);
    t.stop().await;
}

/// `GET path` returning the status and one response header (the harness returns bodies only).
async fn get_header(t: &TestBackend, path: &str, header: &'static str) -> (u16, Option<String>) {
    let url = format!("http://{}{path}", t.http);
    tokio::task::spawn_blocking(move || {
        let response = ureq::get(&url).call().expect("HTTP round trip");
        let value = response
            .headers()
            .get(header)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        (response.status().as_u16(), value)
    })
    .await
    .expect("HTTP task")
}

#[tokio::test]
async fn metrics_are_prometheus_text_with_gateway_and_registry_values() {
    let t = TestBackend::start().await;
    let (_a, _la, _) = t.device("SN-MET-A").await;
    let (_b, _lb, _) = t.device("SN-MET-B").await;
    let refused = t.connect(t.options("p-bad", "claim:factory", "wrong")).await;
    assert_eq!(refused.err(), Some(ConnectReturnCode::NotAuthorized));
    let (status, text) = t.http("GET", "/metrics", None).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(
        get_header(&t, "/metrics", "content-type").await,
        (200, Some("text/plain; version=0.0.4".to_owned()))
    );
    for line in text.lines() {
        if let Some(comment) = line.strip_prefix("# ") {
            assert!(
                comment.starts_with("HELP fleetsim_") || comment.starts_with("TYPE fleetsim_"),
                "{line}"
            );
        } else {
            let (name, value) = line.split_once(' ').unwrap_or_else(|| panic!("not a sample: {line:?}"));
            assert!(name.starts_with("fleetsim_"), "{line}");
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
    }
    for line in text.lines() {
        if let Some(declared) = line.strip_prefix("# TYPE ") {
            let (name, kind) = declared.split_once(' ').unwrap_or_else(|| panic!("{line}"));
            if name.ends_with("_total") {
                assert_eq!(kind, "counter", "a `_total` name is a counter: {line}");
            }
        }
    }
    assert!(text.contains("# TYPE fleetsim_gateway_connects_device_total counter\n"));
    assert_eq!(sample(&text, "fleetsim_gateway_connects_device_total"), Some(2.0));
    assert_eq!(
        sample(&text, "fleetsim_gateway_connects_claim_total"),
        Some(2.0),
        "one per provisioning"
    );
    assert_eq!(sample(&text, "fleetsim_gateway_connects_refused_total"), Some(1.0));
    assert_eq!(sample(&text, "fleetsim_gateway_provision_accepted_total"), Some(2.0));
    assert!(text.contains("# TYPE fleetsim_registry_devices_active gauge\n"));
    assert_eq!(sample(&text, "fleetsim_registry_devices_active"), Some(2.0));
    assert_eq!(sample(&text, "fleetsim_registry_claims"), Some(1.0));
    t.stop().await;
}

#[tokio::test]
async fn healthz_is_200_ok_with_the_active_device_count_and_the_gateway_address() {
    let t = TestBackend::start().await;
    let (mqtt, lwm2m, dtls) = (t.mqtt.to_string(), t.lwm2m.to_string(), t.lwm2m_dtls.to_string());
    assert_eq!(
        get_ok(&t, "/healthz").await,
        json!({ "status": "ok", "devices_active": 0, "mqtt": mqtt, "mqtts": null, "lwm2m": lwm2m, "lwm2m_dtls": dtls })
    );
    t.provision("SN-HEALTH", "claim:factory", "s3cret").await;
    assert_eq!(
        get_ok(&t, "/healthz").await,
        json!({ "status": "ok", "devices_active": 1, "mqtt": mqtt, "mqtts": null, "lwm2m": lwm2m, "lwm2m_dtls": dtls })
    );
    t.stop().await;
}

#[tokio::test]
async fn an_unknown_path_is_404_and_a_wrong_method_405_in_the_json_error_format() {
    let t = TestBackend::start().await;
    let response = t.http("GET", "/api/v1/nothing-here", None).await;
    assert_error(response, 404, "not_found", &["GET /api/v1/nothing-here"]);
    let response = t.http("GET", "/api/v2/devices", None).await;
    assert_error(response, 404, "not_found", &["/api/v2/devices"]);
    let response = t.http("DELETE", "/api/v1/devices", None).await;
    assert_error(response, 405, "method_not_allowed", &["/api/v1/devices", "DELETE"]);
    t.stop().await;
}

#[tokio::test]
async fn command_and_campaign_bodies_must_be_objects_and_campaign_ids_numbers() {
    let t = TestBackend::start().await;
    let (_, body) = t.provision("SN-SHAPES", "claim:factory", "s3cret").await;
    let id = body["device_id"].as_str().expect("id");
    let commands = format!("/api/v1/devices/{id}/commands");
    let response = t.http("POST", &commands, Some(r#"["reboot"]"#)).await;
    assert_error(response, 400, "bad_request", &["expected a JSON object"]);
    let response = t
        .http(
            "POST",
            "/api/v1/campaigns",
            Some(r#"["sensors", "1.0", [1.0], 60, 0.5]"#),
        )
        .await;
    assert_error(response, 400, "bad_request", &["expected a JSON object"]);
    let response = t.http("GET", "/api/v1/campaigns/latest", None).await;
    assert_error(response, 400, "bad_request", &["path", "latest"]);
    let response = t.http("POST", "/api/v1/campaigns/latest/halt", None).await;
    assert_error(response, 400, "bad_request", &["path", "latest"]);
    t.stop().await;
}
