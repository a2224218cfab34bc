//! `report.html` as a person sees it: a real run's report rendered by headless Chromium
//! (Debian's, installed by scripts/test). The rendered page must show the gate table and
//! every chart, and a screenshot is kept beside the report for a human to look at.

use std::path::Path;
use std::process::Command;

#[path = "support/binary.rs"]
mod binary;
use binary::{assert_exit, fleetsim, scratch};

fn chromium(args: &[&str], page: &Path) -> std::process::Output {
    Command::new("chromium")
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"])
        .args(args)
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("Debian's chromium is needed; scripts/test installs it")
}

#[test]
fn chromium_renders_the_gates_and_every_chart() {
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
    assert_eq!(dom.matches("<svg ").count(), 6, "a chart in every section");
    assert!(
        dom.contains("campaign 2 on group gateways"),
        "the halted campaign is described"
    );

    let screenshot = out.join("report.png");
    let shot = chromium(
        &[
            "--window-size=1000,3000",
            &format!("--screenshot={}", screenshot.display()),
        ],
        &page,
    );
    assert!(shot.status.success(), "{}", String::from_utf8_lossy(&shot.stderr));
    let size = std::fs::metadata(&screenshot).map(|m| m.len()).unwrap_or(0);
    assert!(size > 50_000, "a screenshot with content: {size} bytes");
    // Passed: the report and its screenshot go (a failure keeps them to look at).
    let _ = std::fs::remove_dir_all(&out);
}
