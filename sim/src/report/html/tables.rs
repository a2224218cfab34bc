//! The page's tables for what only some runs have: TLS handshakes and refusals, device
//! certificates, LwM2M registrations and the server's requests. Each is `None` for a run
//! without it, so the page leaves its section out.

use std::fmt::Write as _;

use serde_json::Value;

use super::super::escape;

/// When devices spoke TLS: handshakes full and resumed with their latency, and refusals by
/// reason. `None` for a run without TLS.
pub fn tls_table(summary: &Value) -> Option<String> {
    let metrics = &summary["metrics"];
    let counters = metrics["counters"].as_object()?;
    let count = |name: &str| counters.get(name).and_then(Value::as_u64).unwrap_or(0);
    let refused: Vec<(&str, u64)> = counters
        .iter()
        .filter_map(|(name, n)| Some((name.strip_prefix("errors.tls_")?, n.as_u64()?)))
        .filter(|(_, n)| *n > 0)
        .collect();
    let (full, resumed) = (count("tls.handshakes.full"), count("tls.handshakes.resumed"));
    if full + resumed == 0 && refused.is_empty() {
        return None;
    }
    let mut out = String::from("<table class=\"tls\"><tr><th>handshakes</th><th>count</th></tr>\n");
    let _ = writeln!(out, "<tr><td>full</td><td>{full}</td></tr>");
    let _ = writeln!(out, "<tr><td>resumed</td><td>{resumed}</td></tr>");
    let _ = writeln!(
        out,
        "<tr><td>latency p50 / p99 / max</td><td>{}</td></tr>",
        percentiles(&metrics["histograms"]["tls.handshake.latency"])
    );
    for (reason, n) in refused {
        let _ = writeln!(out, "<tr><td>refused: {}</td><td>{n}</td></tr>", escape(reason));
    }
    out.push_str("</table>");
    Some(out)
}

/// `2.3 ms / 4.0 ms / 4.1 ms`: a histogram's p50, p99 and max from summary.json (`-` for one
/// not measured).
fn percentiles(histogram: &Value) -> String {
    let ms = |key: &str| {
        histogram[key]
            .as_f64()
            .map_or_else(|| "-".to_owned(), |v| format!("{v:.1} ms"))
    };
    format!("{} / {} / {}", ms("p50_ms"), ms("p99_ms"), ms("max_ms"))
}

/// When the backend issued devices certificates: what was issued, rotated (with
/// `rotate.latency`), renewed and revoked, and decommissioned devices refused of those that
/// tried (green when all were, red otherwise). `None` for a run without certificates.
pub fn certificates_table(summary: &Value) -> Option<String> {
    let metrics = &summary["metrics"];
    let counters = metrics["counters"].as_object()?;
    let count = |name: &str| counters.get(name).and_then(Value::as_u64).unwrap_or(0);
    let (issued, tried, csr) = (count("certs.issued"), count("revoked.tried"), count("errors.csr"));
    if issued + csr == 0 {
        return None;
    }
    let mut out = String::from("<table class=\"certs\"><tr><th>certificates</th><th>count</th></tr>\n");
    for (label, name) in [
        ("issued by the backend's CA", "certs.issued"),
        ("rotated (device connected on its new one)", "certs.rotated"),
        ("renewed by the device before expiry", "certs.renewed"),
        ("revoked after a rotation's grace", "certs.revoked"),
        ("requests refused", "errors.csr"),
    ] {
        let _ = writeln!(out, "<tr><td>{label}</td><td>{}</td></tr>", count(name));
    }
    let _ = writeln!(
        out,
        "<tr><td>rotation latency p50 / p99 / max</td><td>{}</td></tr>",
        percentiles(&metrics["histograms"]["rotate.latency"])
    );
    if tried > 0 {
        let refused = count("revoked.refused");
        let class = if refused < tried { "breached" } else { "held" };
        let _ = writeln!(
            out,
            "<tr class=\"{class}\"><td>decommissioned devices refused</td><td class=\"verdict\">{refused} of {tried} tries ({:.1}%)</td></tr>",
            refused as f64 / tried as f64 * 100.0
        );
    }
    out.push_str("</table>");
    Some(out)
}

/// When devices spoke LwM2M: their registrations and updates (with their latencies), the
/// server's requests they served and refused, the notifications they sent, and CoAP's
/// retransmissions. `None` for a run without LwM2M.
pub fn lwm2m_table(summary: &Value) -> Option<String> {
    let metrics = &summary["metrics"];
    let counters = metrics["counters"].as_object()?;
    let count = |name: &str| counters.get(name).and_then(Value::as_u64).unwrap_or(0);
    if count("lwm2m.registrations") + count("lwm2m.updates") == 0 {
        return None;
    }
    // Bootstrap rows only for a fleet that bootstrapped.
    let bootstrapped = count("lwm2m.bootstraps") > 0;
    let mut out = String::from("<table class=\"lwm2m\"><tr><th>LwM2M</th><th>count</th></tr>\n");
    if bootstrapped {
        let _ = writeln!(
            out,
            "<tr><td>bootstraps finished</td><td>{}</td></tr>",
            count("lwm2m.bootstraps")
        );
    }
    for (label, name) in [
        ("registrations the server accepted", "lwm2m.registrations"),
        ("registration updates the server accepted", "lwm2m.updates"),
        ("reads (observes and discovers among them) answered", "lwm2m.reads"),
        ("writes and write-attributes applied", "lwm2m.writes"),
        ("executes carried out", "lwm2m.executes"),
        ("observations started", "lwm2m.observes"),
        ("notifications sent", "lwm2m.notifications"),
        ("requests refused", "lwm2m.refused"),
        ("CoAP retransmissions", "coap.retransmissions"),
    ] {
        let _ = writeln!(out, "<tr><td>{label}</td><td>{}</td></tr>", count(name));
    }
    let latencies = [
        ("bootstrap latency p50 / p99 / max", "bootstrap.latency"),
        ("register latency p50 / p99 / max", "register.latency"),
        ("update latency p50 / p99 / max", "update.latency"),
    ];
    for (label, name) in latencies.into_iter().skip(usize::from(!bootstrapped)) {
        let _ = writeln!(
            out,
            "<tr><td>{label}</td><td>{}</td></tr>",
            percentiles(&metrics["histograms"][name])
        );
    }
    out.push_str("</table>");
    Some(out)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::super::render;

    #[test]
    fn a_tls_run_shows_its_handshakes_and_refusals_by_reason() {
        let summary = json!({ "scenario": "tls", "gates": [], "metrics": {
            "counters": { "tls.handshakes.full": 12, "tls.handshakes.resumed": 9,
                          "errors.tls_expired": 3, "errors.tls_unknown_ca": 0 },
            "histograms": { "tls.handshake.latency": { "p50_ms": 2.31, "p99_ms": 4.0, "max_ms": 4.06 } } } });
        let page = render(&summary, "elapsed_s,devices.online\n1,3\n", &BTreeMap::new());
        assert!(page.contains("<h2>TLS handshakes and refusals</h2>"), "{page}");
        assert!(page.contains("<tr><td>full</td><td>12</td></tr>"));
        assert!(page.contains("<tr><td>resumed</td><td>9</td></tr>"));
        assert!(page.contains("2.3 ms / 4.0 ms / 4.1 ms"), "{page}");
        assert!(page.contains("<tr><td>refused: expired</td><td>3</td></tr>"));
        assert!(
            !page.contains("refused: unknown_ca"),
            "a reason that never happened is left out"
        );
        assert!(!page.contains("Device certificates"), "none issued, none revoked");
    }

    #[test]
    fn a_run_with_lwm2m_devices_shows_their_registrations_and_requests() {
        let summary = json!({ "scenario": "lwm2m", "gates": [], "metrics": {
            "counters": { "lwm2m.registrations": 10, "lwm2m.updates": 31, "lwm2m.reads": 6,
                          "lwm2m.refused": 1, "coap.retransmissions": 2 },
            "histograms": { "register.latency": { "p50_ms": 0.8, "p99_ms": 2.04, "max_ms": 3.0 } } } });
        let page = render(&summary, "elapsed_s,devices.online\n1,3\n", &BTreeMap::new());
        assert!(
            page.contains("<h2>LwM2M: registrations and the server's requests</h2>"),
            "{page}"
        );
        for row in [
            "<tr><td>registrations the server accepted</td><td>10</td></tr>",
            "<tr><td>registration updates the server accepted</td><td>31</td></tr>",
            "<tr><td>requests refused</td><td>1</td></tr>",
            "<tr><td>CoAP retransmissions</td><td>2</td></tr>",
            "<tr><td>register latency p50 / p99 / max</td><td>0.8 ms / 2.0 ms / 3.0 ms</td></tr>",
            "<tr><td>update latency p50 / p99 / max</td><td>- / - / -</td></tr>",
        ] {
            assert!(page.contains(row), "{row} missing from {page}");
        }
        let mqtt = json!({ "scenario": "m", "gates": [], "metrics": { "counters": { "published": 5 } } });
        let page = render(&mqtt, "elapsed_s,devices.online\n1,3\n", &BTreeMap::new());
        assert!(!page.contains("LwM2M"), "no LwM2M section without LwM2M devices");
    }

    #[test]
    fn a_run_with_certificates_shows_them_and_a_revoked_device_let_in_is_red() {
        let summary = json!({ "scenario": "mtls", "gates": [], "metrics": {
            "counters": { "tls.handshakes.full": 30, "certs.issued": 150, "certs.rotated": 50,
                          "certs.renewed": 20, "certs.revoked": 50, "revoked.tried": 10, "revoked.refused": 9 },
            "histograms": { "rotate.latency": { "p50_ms": 3.0, "p99_ms": 9.96, "max_ms": 12.0 } } } });
        let page = render(&summary, "elapsed_s,devices.online\n1,3\n", &BTreeMap::new());
        assert!(
            page.contains("<h2>Device certificates: issued, rotated, renewed, revoked</h2>"),
            "{page}"
        );
        for row in [
            "<tr><td>issued by the backend's CA</td><td>150</td></tr>",
            "<tr><td>rotated (device connected on its new one)</td><td>50</td></tr>",
            "<tr><td>renewed by the device before expiry</td><td>20</td></tr>",
            "<tr><td>revoked after a rotation's grace</td><td>50</td></tr>",
            "<tr><td>rotation latency p50 / p99 / max</td><td>3.0 ms / 10.0 ms / 12.0 ms</td></tr>",
            "<tr class=\"breached\"><td>decommissioned devices refused</td><td class=\"verdict\">9 of 10 tries (90.0%)</td></tr>",
        ] {
            assert!(page.contains(row), "{row} missing from {page}");
        }
    }
}
