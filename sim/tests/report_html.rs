//! `report.html` as a person sees it: a real run's report rendered by headless Chromium
//! (Debian's, installed by scripts/test). The rendered page must open with the run at a
//! glance (the headline figures, read back against summary.json), then show the gate table,
//! every chart with its legend and the campaigns' table of waves, and a screenshot is kept
//! beside the report for a human to look at.

use std::path::Path;
use std::process::Command;

#[path = "support/binary.rs"]
mod binary;
use binary::{assert_exit, errors_total, fleetsim, scratch};

fn chromium(args: &[&str], page: &Path) -> std::process::Output {
    Command::new("chromium")
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"])
        .args(args)
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("Debian's chromium is needed; scripts/test installs it")
}

#[test]
fn chromium_renders_the_headline_the_gates_every_chart_and_the_campaign_table() {
    let out = scratch("report-html");
    let ran = fleetsim(&[
        "run".as_ref(),
        "sim/tests/fixtures/run/phases.toml".as_ref(),
        "--out".as_ref(),
        out.as_os_str(),
    ]);
    assert_exit(&ran, 0);
    let page = out.join("report.html");

    // The DOM after Chromium parsed and laid out the page.
    let dom = chromium(&["--dump-dom"], &page);
    assert!(dom.status.success(), "{}", String::from_utf8_lossy(&dom.stderr));
    let dom = String::from_utf8_lossy(&dom.stdout);
    assert!(dom.contains("<h1>fleetsim report: phases</h1>"), "{dom}");
    assert_eq!(dom.matches("<tr class=\"pass\">").count(), 4, "four gates, all green");
    for chart in [
        "Devices per state",
        "Rates",
        "Latency over time",
        "Latency distribution of each operation",
        "OTA campaigns",
        "Reconnect storm recovery",
    ] {
        assert!(dom.contains(&format!("<h2>{chart}")), "{chart}");
    }
    assert_eq!(
        dom.matches("<svg ").count(),
        5,
        "a chart in every section but the campaigns'"
    );
    assert_eq!(
        dom.matches("<ul class=\"legend\">").count(),
        5,
        "each chart with its legend"
    );

    // The headline, first, with summary.json's figures.
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).expect("summary.json"))
            .expect("summary.json is JSON");
    let headline = dom.find("<div class=\"headline\">").expect("a headline");
    assert!(headline < dom.find("<h2>").expect("sections"), "before the charts");
    let value = |id: &str| {
        let at = dom
            .find(&format!("id=\"{id}\""))
            .unwrap_or_else(|| panic!("{id} missing: {dom}"));
        let value = &dom[at..].split("<div class=\"value\">").nth(1).expect("a value");
        value[..value.find("</div>").expect("closed")].to_owned()
    };
    assert_eq!(value("figure-devices").replace(',', ""), summary["devices"].to_string());
    assert_eq!(value("figure-gates"), "4 of 4 passed");
    assert_eq!(
        value("figure-errors").replace(',', ""),
        errors_total(&summary).to_string()
    );
    assert!(value("figure-provisions").ends_with("/s"), "{dom}");

    // The campaigns' table: a row per campaign, then one per wave it started.
    let campaigns = summary["campaigns"].as_array().expect("campaigns");
    assert_eq!(campaigns.len(), 2, "{summary}");
    let waves: usize = campaigns
        .iter()
        .map(|c| c["waves"].as_array().map_or(1, |w| w.len().max(1)))
        .sum();
    assert_eq!(dom.matches("<tr class=\"campaign\">").count(), 2, "{dom}");
    assert_eq!(dom.matches("<tr class=\"wave\">").count(), waves, "{dom}");
    assert!(
        dom.contains("campaign 2 on group gateways"),
        "the halted campaign is described"
    );
    assert!(
        dom.contains("<td class=\"halted\">halted here</td>"),
        "the halt is marked"
    );
    assert!(!dom.contains(".0\n</text>"), "no tick like 2000.0");

    let screenshot = out.join("report.png");
    let shot = chromium(
        &[
            "--window-size=1280,3000",
            &format!("--screenshot={}", screenshot.display()),
        ],
        &page,
    );
    assert!(shot.status.success(), "{}", String::from_utf8_lossy(&shot.stderr));
    let size = std::fs::metadata(&screenshot).map(|m| m.len()).unwrap_or(0);
    assert!(size > 50_000, "a screenshot with content: {size} bytes");
    // Passed: the report and its screenshot go (a failure keeps them to look at).
}
